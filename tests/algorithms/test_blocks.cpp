// The building blocks (algorithms/blocks/) and the collectives beyond allreduce: every planner for every
// collective it declares, on world sizes 1..16 and counts 0, 1, prime and large, proven by the verifier;
// uneven block layouts; composition of sub-plans (groups side by side, reduce then broadcast); the
// verifier's rejection of broken reduce-scatter, allgather and block declarations; weighted partitions.

#include <doctest/doctest.h>

#include <dssync/algorithms/binomial_tree.hpp>
#include <dssync/algorithms/blocks.hpp>
#include <dssync/algorithms/chain.hpp>
#include <dssync/algorithms/registry.hpp>
#include <dssync/algorithms/ring.hpp>
#include <dssync/core/verifier.hpp>
#include <dssync/topology/full_mesh.hpp>

#include <numeric>
#include <string>
#include <vector>

namespace alg = dssync::algorithms;
namespace blk = dssync::algorithms::blocks;
using dssync::plan_request;
using dssync::range;
using dssync::schedule;
using dssync::semantics;
using dssync::step_kind;
using dssync::topology::full_mesh;

namespace {

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

void require_ok(const schedule& s, const std::string& what) {
  const auto v = dssync::verify(s);
  INFO(what << "\n" << dssync::to_string(s));
  REQUIRE_MESSAGE(v.ok, v.message);
}

const int world_sizes[] = {1, 2, 3, 5, 8, 16};
const std::size_t counts[] = {0, 1, 7, 1000};

}  // namespace

TEST_CASE("every registered policy plans every collective it declares, proven for many world sizes") {
  for (auto name : alg::policy_names()) {
    const auto& e = alg::registry().at(name);
    if (name == alg::bcube::name) continue;  // needs a BCube topology (test_bcube.cpp)
    for (semantics c : e.collectives) {
      if (c == semantics::group_allreduce) continue;  // gossip: test_baselines.cpp
      for (int n : world_sizes)
        for (std::size_t count : counts) {
          const int root = n > 1 ? n - 1 : 0;
          const auto s = e.plan(full_mesh(n), plan_request{count, 0, c, root});
          CHECK(s.kind == c);
          CHECK(s.count == count);
          require_ok(s, std::string(name) + " " + to_string(c) + " n=" + std::to_string(n) + " count=" +
                            std::to_string(count));
        }
    }
  }
}

TEST_CASE("ring reduce-scatter and allgather: rank r owns block r, sends (N-1)/N of the data") {
  for (int n : {2, 3, 5, 8}) {
    const std::size_t count = 1000;
    for (semantics c : {semantics::reduce_scatter, semantics::allgather}) {
      const auto s = alg::ring{}.plan(full_mesh(n), plan_request{count, 0, c});
      REQUIRE(s.blocks.size() == static_cast<std::size_t>(n));
      for (int r = 0; r < n; ++r) CHECK(s.block(r) == dssync::chunk(count, static_cast<std::size_t>(n), static_cast<std::size_t>(r)));
      const auto v = dssync::verify(s);
      REQUIRE(v.ok);
      CHECK(v.messages == static_cast<std::size_t>(n * (n - 1)));
      CHECK(v.elements_moved == static_cast<std::size_t>(n - 1) * count);  // N ranks × (N-1)/N of count
      // Half of the allreduce's steps, and the allgather copies only.
      for (const auto& rp : s.ranks)
        for (const auto& ch : rp.channels)
          for (const auto& st : ch.steps)
            CHECK(st.kind != (c == semantics::allgather ? step_kind::recv_reduce : step_kind::recv_copy));
    }
  }
}

TEST_CASE("uneven block layouts (allgatherv, reduce-scatterv), empty blocks included") {
  const std::vector<std::size_t> sizes = {0, 5, 1, 0, 9};
  const std::size_t total = std::accumulate(sizes.begin(), sizes.end(), std::size_t{0});
  for (semantics c : {semantics::reduce_scatter, semantics::allgather}) {
    plan_request q{total, 0, c};
    q.block_sizes = sizes;
    const auto s = alg::ring{}.plan(full_mesh(5), q);
    CHECK(s.block(0) == range{0, 0});
    CHECK(s.block(1) == range{0, 5});
    CHECK(s.block(2) == range{5, 1});
    CHECK(s.block(4) == range{6, 9});
    require_ok(s, "ring v-layout");
  }
  plan_request bad{10, 0, semantics::allgather};
  const std::vector<std::size_t> short_sizes = {3, 3};
  bad.block_sizes = short_sizes;
  try {
    (void)alg::ring{}.plan(full_mesh(3), bad);
    FAIL("2 block sizes for 3 ranks accepted");
  } catch (const dssync::invalid_argument& e) {
    CHECK(contains(e.what(), "2 block sizes for 3 ranks"));
  }
  const std::vector<std::size_t> wrong_sum = {3, 3, 3};
  bad.block_sizes = wrong_sum;
  try {
    (void)alg::ring{}.plan(full_mesh(3), bad);
    FAIL("block sizes summing to 9 accepted for 10 elements");
  } catch (const dssync::invalid_argument& e) {
    CHECK(contains(e.what(), "sum to 9"));
    CHECK(contains(e.what(), "10 elements"));
  }
}

TEST_CASE("planners refuse collectives they do not plan, and roots out of range, naming the value") {
  try {
    (void)alg::ring{}.plan(full_mesh(4), plan_request{10, 0, semantics::broadcast});
    FAIL("ring planned a broadcast");
  } catch (const dssync::invalid_argument& e) {
    CHECK(contains(e.what(), "not broadcast"));
  }
  try {
    (void)alg::chain{}.plan(full_mesh(4), plan_request{10, 0, semantics::allgather});
    FAIL("chain planned an allgather");
  } catch (const dssync::invalid_argument& e) {
    CHECK(contains(e.what(), "not allgather"));
  }
  try {
    (void)alg::binomial_tree{}.plan(full_mesh(4), plan_request{10, 0, semantics::reduce, 4});
    FAIL("root 4 accepted for 4 ranks");
  } catch (const dssync::invalid_argument& e) {
    CHECK(contains(e.what(), "root 4"));
  }
  CHECK(alg::registry().at("ring").plans(semantics::reduce_scatter));
  CHECK_FALSE(alg::registry().at("direct").plans(semantics::allgather));
  CHECK(alg::registry().at("chain").collective_list() == "broadcast, reduce");
  static_assert(dssync::plans_collective<alg::ring>(semantics::allgather));
  static_assert(!dssync::plans_collective<alg::chain>(semantics::allreduce));
  static_assert(dssync::plans_collective<alg::direct>(semantics::allreduce));
}

TEST_CASE("ring allreduce rewritten on blocks is the same plan as before (fingerprint pinned)") {
  CHECK(dssync::fingerprint(alg::ring::build(4, 100)) == 0xba3ff63e60436c01ull);
  // Plans without blocks hash as before; the blocks of a reduce-scatter are part of its fingerprint.
  auto a = alg::ring{}.plan(full_mesh(3), plan_request{9, 0, semantics::reduce_scatter});
  auto b = a;
  b.blocks[0].length = 2;
  b.blocks[1] = {2, 4};
  CHECK(dssync::fingerprint(a) != dssync::fingerprint(b));
  CHECK_FALSE(a == b);
}

TEST_CASE("chain and binomial tree: pieces, hops and the pipelining window") {
  const auto c = alg::chain{.pieces = 4}.plan(full_mesh(5), plan_request{100, 0, semantics::broadcast, 2});
  const auto v = dssync::verify(c);
  REQUIRE(v.ok);
  CHECK(v.messages == 4 * 4);  // 4 pieces over 4 hops, no acknowledgements with window 0
  const auto w = alg::chain{.pieces = 4, .window = 1}.plan(full_mesh(5), plan_request{100, 0, semantics::broadcast, 2});
  const auto vw = dssync::verify(w);
  REQUIRE(vw.ok);
  CHECK(vw.messages == 4 * 4 + 4);  // plus one acknowledgement per piece
  CHECK(alg::chain{}.pieces_for(1) == 1);
  CHECK(alg::chain{}.pieces_for(alg::chain::auto_piece * 3) == 3);
  CHECK(alg::chain{}.pieces_for(std::size_t{1} << 40) == alg::chain::max_pieces);
  CHECK(alg::chain{.pieces = 2}.cache_key({}) != alg::chain{.pieces = 3}.cache_key({}));
  // Binomial tree: N-1 whole-buffer messages; the root of a broadcast sends ceil(log2 N) of them.
  const auto t = alg::binomial_tree{}.plan(full_mesh(8), plan_request{10, 0, semantics::broadcast, 5});
  const auto vt = dssync::verify(t);
  REQUIRE(vt.ok);
  CHECK(vt.messages == 7);
  CHECK(t.ranks[5].step_count() == 3);
}

TEST_CASE("composition: rings side by side on disjoint groups, and reduce then broadcast") {
  // Two groups of a group allreduce, each a ring on its own channel (DS-Sync's shape).
  auto s = blk::empty_plan("groups", 7, 50, semantics::group_allreduce, 0);
  s.groups = {{0, 2, 4, 6}, {1, 3, 5}};
  for (const auto& g : s.groups) {
    auto part = blk::empty_plan("groups", 7, 50, semantics::group_allreduce, 0);
    blk::ring_allreduce(part, g, dssync::partition(50, g.size()));
    blk::beside(s, part);
  }
  CHECK(s.channel_count() == 2);
  require_ok(s, "two rings beside");
  // Channels that overlap on one rank race: the verifier says so.
  auto racing = blk::empty_plan("race", 3, 10, semantics::allreduce, 0);
  auto r1 = blk::empty_plan("race", 3, 10, semantics::allreduce, 0);
  blk::ring_allreduce(r1, blk::iota_members(3), dssync::partition(10, 3));
  blk::beside(racing, r1);
  blk::beside(racing, r1);
  const auto vr = dssync::verify(racing);
  CHECK_FALSE(vr.ok);
  CHECK(contains(vr.message, "another channel"));

  // Allreduce as a chain reduce into rank 0, then a binomial broadcast from it, as phases in sequence.
  for (int n : {2, 3, 5, 8}) {
    auto all = blk::empty_plan("reduce+bcast", n, 33, semantics::allreduce);
    auto red = blk::empty_plan("reduce+bcast", n, 33, semantics::allreduce);
    blk::chain(red, blk::iota_members(n), semantics::reduce, range{0, 33}, 3);
    auto bc = blk::empty_plan("reduce+bcast", n, 33, semantics::allreduce);
    blk::binomial_tree(bc, blk::iota_members(n), semantics::broadcast, range{0, 33});
    blk::then(blk::then(all, red), bc);
    require_ok(all, "reduce then broadcast, n=" + std::to_string(n));
  }
  auto x = blk::empty_plan("x", 3, 10, semantics::allreduce);
  try {
    blk::then(x, blk::empty_plan("y", 4, 10, semantics::allreduce));
    FAIL("then accepted plans of different world sizes");
  } catch (const dssync::invalid_argument& e) {
    CHECK(contains(e.what(), "4 ranks"));
  }
}

TEST_CASE("the verifier proves the new collectives' promises and rejects broken ones") {
  SUBCASE("an allgather that reduces a block in") {
    auto s = alg::ring{}.plan(full_mesh(3), plan_request{9, 0, semantics::allgather});
    for (auto& st : s.ranks[1].channels[0].steps)
      if (st.kind == step_kind::recv_copy) {
        st.kind = step_kind::recv_reduce;
        break;
      }
    const auto v = dssync::verify(s);
    CHECK_FALSE(v.ok);
    CHECK(contains(v.message, "rank 1"));
    CHECK(contains(v.message, "does not promise"));
  }
  SUBCASE("an allgather that never delivers a block") {
    auto s = blk::empty_plan("half", 3, 9, semantics::allgather);
    s.blocks = dssync::partition(9, 3);
    blk::ring_allgather(s, std::vector<int>{0, 1}, std::vector<range>{s.blocks[0], s.blocks[1]});
    const auto v = dssync::verify(s);
    CHECK_FALSE(v.ok);
    CHECK(contains(v.message, "allgather"));
  }
  SUBCASE("a reduce-scatter whose owner lacks a contribution") {
    auto s = blk::empty_plan("rs", 3, 9, semantics::reduce_scatter);
    s.blocks = dssync::partition(9, 3);
    // Members 0 and 1 only: rank 2's data never reaches the blocks of 0 and 1.
    blk::ring_reduce_scatter(s, std::vector<int>{0, 1}, std::vector<range>{s.blocks[0], s.blocks[1]});
    const auto v = dssync::verify(s);
    CHECK_FALSE(v.ok);
    CHECK(contains(v.message, "lacking the contribution of rank 2"));
  }
  SUBCASE("blocks that are missing, overlap or run past the buffer") {
    auto s = alg::ring{}.plan(full_mesh(3), plan_request{9, 0, semantics::reduce_scatter});
    auto missing = s;
    missing.blocks.pop_back();
    CHECK(contains(dssync::verify(missing).message, "one block per rank"));
    auto overlap = s;
    overlap.blocks[1] = {2, 3};
    CHECK(contains(dssync::verify(overlap).message, "blocks of ranks 0 and 1 overlap"));
    auto past = s;
    past.blocks[2] = {6, 4};
    CHECK(contains(dssync::verify(past).message, "ends past the buffer"));
  }
  SUBCASE("result ranges: where a finalizing op runs") {
    const auto rs = alg::ring{}.plan(full_mesh(3), plan_request{10, 0, semantics::reduce_scatter});
    CHECK(rs.result_range(1) == dssync::chunk(10, 3, 1));
    CHECK(rs.contributors(1) == 3);
    const auto ag = alg::ring{}.plan(full_mesh(3), plan_request{10, 0, semantics::allgather});
    CHECK(ag.result_range(0).empty());
    const auto red = alg::chain{}.plan(full_mesh(3), plan_request{10, 0, semantics::reduce, 2});
    CHECK(red.result_range(2) == range{0, 10});
    CHECK(red.result_range(0).empty());
  }
}

TEST_CASE("weighted partitions cover the range in order, each part within one element of its share") {
  const std::vector<double> w = {1, 2, 0, 5};
  const auto p = blk::weighted_partition(range{10, 80}, w);
  REQUIRE(p.size() == 4);
  CHECK(p[0] == range{10, 10});
  CHECK(p[1] == range{20, 20});
  CHECK(p[2] == range{40, 0});
  CHECK(p[3] == range{40, 50});
  for (std::size_t len : {0u, 1u, 7u, 1001u}) {
    const std::vector<double> w3 = {0.3, 0.3, 0.4};
    const auto q = blk::weighted_partition(range{0, len}, w3);
    std::size_t at = 0;
    for (std::size_t i = 0; i < q.size(); ++i) {
      CHECK(q[i].offset == at);
      at = q[i].end();
      CHECK(std::abs(static_cast<double>(q[i].length) - w3[i] * static_cast<double>(len)) <= 1.0);
    }
    CHECK(at == len);
  }
  const std::vector<double> neg = {1, -1};
  CHECK_THROWS_WITH_AS((void)blk::weighted_partition(range{0, 4}, neg), doctest::Contains("weight 1 is -1"),
                       dssync::invalid_argument);
  const std::vector<double> zero = {0, 0};
  CHECK_THROWS_WITH_AS((void)blk::weighted_partition(range{0, 4}, zero), doctest::Contains("sum to 0"),
                       dssync::invalid_argument);
}
