// DS-Sync (seed 000): the shuffles (rack rotation of Fig. 4, digit grouping, random pairs, a fixed
// sequence), the contention adjustment of Fig. 5 and 6, and the ds_sync policy: every iteration of a
// period verified for many world sizes, cached per period and state, planned per rank, and run end to end
// on the in-process and simulated transports, each member ending with its group's average, and no group
// waiting for another.

#include <doctest/doctest.h>

#include <dssync/algorithms/ds_sync.hpp>
#include <dssync/algorithms/grouping.hpp>
#include <dssync/algorithms/registry.hpp>
#include <dssync/core/verifier.hpp>
#include <dssync/ops/ops.hpp>
#include <dssync/synchronize.hpp>
#include <dssync/topology/full_mesh.hpp>
#include <dssync/topology/racks.hpp>
#include <dssync/transport/inproc.hpp>
#include <dssync/transport/sim.hpp>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <latch>
#include <set>
#include <string>
#include <vector>

#include "test_support.hpp"

namespace alg = dssync::algorithms;
using dssync::network_state;
using dssync::plan_request;
using dssync::schedule;
using dssync::semantics;
using dssync::topology::full_mesh;
using dssync::topology::leaf_spine;
using dssync_test::describe_errors;

namespace {

/// C racks of G consecutive ranks.
alg::rack_list even_racks(int C, int G) {
  alg::rack_list r(static_cast<std::size_t>(C));
  for (int c = 0; c < C; ++c)
    for (int g = 0; g < G; ++g) r[static_cast<std::size_t>(c)].push_back(c * G + g);
  return r;
}

/// A topology with the given racks.
struct rack_topo {
  alg::rack_list groups;
  int n = 0;
  explicit rack_topo(alg::rack_list g) : groups(std::move(g)) { n = alg::rank_count(groups); }
  [[nodiscard]] int workers() const { return n; }
  [[nodiscard]] std::string name() const { return "test_racks(" + alg::to_string(groups) + ")"; }
  void validate(int world) const {
    if (world != n) throw dssync::invalid_argument("rack_topo: wrong world size " + std::to_string(world));
  }
  [[nodiscard]] alg::rack_list racks() const { return groups; }
};

/// Racks of uneven sizes 1, 2, ..., covering n ranks (the last one shorter).
alg::rack_list uneven_racks(int n) {
  alg::rack_list r;
  int next = 0;
  for (int size = 1; next < n; ++size) {
    auto& rack = r.emplace_back();
    for (int i = 0; i < size && next < n; ++i) rack.push_back(next++);
  }
  return r;
}

void require_verified(const schedule& s, const std::string& what) {
  const auto rep = dssync::verify(s);
  REQUIRE_MESSAGE(rep.ok, what << ": " << rep.message);
}

std::set<int> as_set(const std::vector<int>& v) { return {v.begin(), v.end()}; }

}  // namespace

TEST_SUITE_BEGIN("ds_sync");

TEST_CASE("ds_sync models the policy concept, observes the network, keys by topology and is registered") {
  static_assert(dssync::concepts::policy<alg::ds_sync, leaf_spine>);
  static_assert(dssync::concepts::policy<alg::ds_sync, full_mesh>);
  static_assert(dssync::concepts::observing_policy<alg::ds_sync>);
  static_assert(dssync::concepts::topology_keyed_policy<alg::ds_sync, leaf_spine>);
  static_assert(dssync::is_cacheable_policy<alg::ds_sync>);
  static_assert(dssync::plans_per_rank<alg::ds_sync>);
  static_assert(dssync::promised_semantics<alg::ds_sync> == semantics::group_allreduce);
  static_assert(dssync::concepts::shuffle<alg::rack_rotation> && dssync::concepts::shuffle<alg::digit_grouping> &&
                dssync::concepts::shuffle<alg::random_pairs> && dssync::concepts::shuffle<alg::fixed_sequence>);
  const auto& e = alg::registry().at("ds_sync");
  CHECK(e.promises == semantics::group_allreduce);
  CHECK(e.per_rank);
  CHECK(e.cacheable);
  REQUIRE(e.cache_key);
  // The registry's key sees the model: on racks the iteration is taken modulo the period (16 here).
  const leaf_spine t(4, 4);
  CHECK(e.key(t, plan_request{100, 1}) == e.key(t, plan_request{100, 17}));
  CHECK(e.key(t, plan_request{100, 1}) != e.key(t, plan_request{100, 2}));
  const auto s = e.plan(t, plan_request{100, 3});
  CHECK(s.kind == semantics::group_allreduce);
  CHECK(s.groups == alg::ds_sync{}.groups(t, 3));
}

TEST_CASE("rack rotation (seed Fig. 4): G-1 workers per rack together, one representative per rack across") {
  for (int C : {2, 3, 4}) {
    for (int G : {1, 2, 3, 4, 5}) {
      const auto racks = even_racks(C, G);
      const alg::rack_rotation rot;
      REQUIRE(rot.period(racks) == static_cast<std::uint64_t>(G * G));
      REQUIRE(alg::rack_rotation{.staggered = false}.period(racks) == static_cast<std::uint64_t>(G));
      std::vector<int> crossed(static_cast<std::size_t>(C * G), 0);
      for (std::uint64_t t = 0; t < rot.period(racks); ++t) {
        const auto g = rot.groups(racks, t);
        CAPTURE(C);
        CAPTURE(G);
        CAPTURE(t);
        CAPTURE(alg::to_string(g));
        alg::check_grouping("test", C * G, g);
        // The inter-rack group comes first: rack k's worker at position (t + k * floor(t/G)) mod G.
        REQUIRE(g.front().size() == static_cast<std::size_t>(C));
        const auto gg = static_cast<std::uint64_t>(G);
        for (int k = 0; k < C; ++k) {
          const int rep = k * G + static_cast<int>((t % gg + static_cast<std::uint64_t>(k % G) * ((t / gg) % gg)) % gg);
          CHECK(g.front()[static_cast<std::size_t>(k)] == rep);
          ++crossed[static_cast<std::size_t>(rep)];
        }
        // Then one intra-rack group of G-1 per rack (none for G = 1).
        CHECK(g.size() == 1 + (G > 1 ? static_cast<std::size_t>(C) : 0));
        for (std::size_t i = 1; i < g.size(); ++i) {
          CHECK(g[i].size() == static_cast<std::size_t>(G - 1));
          for (int r : g[i]) CHECK(r / G == g[i].front() / G);
        }
        // Within each block of G iterations every worker has crossed once.
        if ((t + 1) % gg == 0)
          for (int c : crossed) CHECK(c == static_cast<int>((t + 1) / gg));
      }
    }
  }
  // One rack: nobody to cross to, the rack is one group.
  CHECK(alg::rack_rotation{}.groups(even_racks(1, 4), 3) == alg::grouping{{0, 1, 2, 3}});
  CHECK(alg::rack_rotation{}.period(even_racks(1, 4)) == 1);
  // Uneven racks: the period is the lcm of the squared sizes.
  CHECK(alg::rack_rotation{}.period({{0, 1}, {2, 3, 4}}) == 36);
  CHECK(alg::rack_rotation{.staggered = false}.period({{0, 1}, {2, 3, 4}}) == 6);
}

TEST_CASE("digit grouping: groups of g differing in one digit; uneven N gives smaller groups") {
  const alg::digit_grouping d{.g = 2};
  const auto racks = even_racks(1, 8);
  REQUIRE(d.period(racks) == 3);
  CHECK(d.groups(racks, 0) == alg::grouping{{0, 1}, {2, 3}, {4, 5}, {6, 7}});
  CHECK(d.groups(racks, 1) == alg::grouping{{0, 2}, {1, 3}, {4, 6}, {5, 7}});
  CHECK(d.groups(racks, 2) == alg::grouping{{0, 4}, {1, 5}, {2, 6}, {3, 7}});
  CHECK(d.groups(racks, 3) == d.groups(racks, 0));
  const alg::digit_grouping d3{.g = 3};
  for (int n : {1, 2, 3, 5, 8, 9, 16, 27, 30}) {
    const auto r = even_racks(1, n);
    for (std::uint64_t t = 0; t < d3.period(r); ++t) {
      const auto g = d3.groups(r, t);
      alg::check_grouping("digit", n, g);
      for (const auto& x : g) CHECK(x.size() <= 3);
    }
  }
  CHECK_THROWS_AS((void)alg::digit_grouping{.g = 1}.groups(racks, 0), dssync::invalid_argument);
}

TEST_CASE("random pairs: a perfect matching per iteration, the same for equal seeds, new for new iterations") {
  for (int n : {1, 2, 3, 5, 8, 16}) {
    const auto racks = even_racks(1, n);
    const alg::random_pairs p{.seed = 7};
    CHECK(p.period(racks) == 0);
    std::set<alg::grouping> seen;
    for (std::uint64_t t = 0; t < 20; ++t) {
      const auto g = p.groups(racks, t);
      alg::check_grouping("random_pairs", n, g);
      std::size_t singles = 0;
      for (const auto& x : g) {
        CHECK(x.size() <= 2);
        singles += x.size() == 1;
      }
      CHECK(singles == static_cast<std::size_t>(n % 2));
      CHECK(g == alg::random_pairs{.seed = 7}.groups(racks, t));
      seen.insert(g);
    }
    if (n >= 4) CHECK(seen.size() > 1);
  }
}

TEST_CASE("fixed sequence: the user's groupings in turn, each checked to partition the ranks") {
  const alg::fixed_sequence alt{{{{0, 1}, {2, 3}}, {{0, 3}, {1, 2}}}};
  const auto racks = even_racks(1, 4);
  CHECK(alt.period(racks) == 2);
  CHECK(alt.groups(racks, 3) == alg::grouping{{0, 3}, {1, 2}});
  const alg::fixed_sequence bad{{{{0, 1}, {1, 2, 3}}}};
  CHECK_THROWS_WITH_AS((void)bad.groups(racks, 0), doctest::Contains("rank 1 is in groups 0 and 1"),
                       dssync::invalid_argument);
  const alg::fixed_sequence missing{{{{0, 1}, {2}}}};
  CHECK_THROWS_WITH_AS((void)missing.groups(racks, 0), doctest::Contains("rank 3 is in no group"),
                       dssync::invalid_argument);
  CHECK_THROWS_AS((void)alg::fixed_sequence{}.groups(racks, 0), dssync::invalid_argument);
}

TEST_CASE("adjustment: a contended uplink (Fig. 5) or NIC (Fig. 6) goes in a pair; an empty state undoes it") {
  const leaf_spine t(5, 4);  // racks of 4: ranks 0-3, 4-7, ...
  alg::ds_sync p;
  const auto plain = p.groups(t, 0);
  REQUIRE(plain.front() == std::vector<int>{0, 4, 8, 12, 16});

  SUBCASE("Fig. 5: rack 0's uplink: its representative is alone with one peer, the rest stay together") {
    p.observe(network_state{.slow_racks = {0}});
    const auto g = p.groups(t, 0);
    CHECK(alg::group_of(g, 0) == std::vector<int>{0, 4});
    CHECK(alg::group_of(g, 8) == std::vector<int>{8, 12, 16});
    // Intra-rack groups do not cross the uplink: unchanged.
    CHECK(alg::group_of(g, 1) == alg::group_of(plain, 1));
    // The next iteration's representative of rack 0 (rank 1) is the one paired, with another peer: a
    // fixed peer would cut racks 0-1 off from the others for as long as the contention lasts.
    const auto g1 = p.groups(t, 1);
    CHECK(alg::group_of(g1, 1) == std::vector<int>{1, 9});
    CHECK(p.period(t) == 16 * 20);  // the shuffle's period times N while contended
    std::set<int> peers;
    for (std::uint64_t it = 0; it < p.period(t); ++it) {
      const auto g = p.groups(t, it);
      for (const auto& x : g)
        if (x.size() == 2 && x.front() / 4 == 0) peers.insert(x.back() / 4);  // rack 0's pair: the peer's rack
    }
    CHECK(peers == std::set<int>{1, 2, 3, 4});
  }
  SUBCASE("Fig. 6: worker 5's NIC: its intra-rack group splits, 5 with one peer") {
    p.observe(network_state{.slow_workers = {5}});
    const auto g = p.groups(t, 0);
    CHECK(alg::group_of(g, 5) == std::vector<int>{5, 6});
    CHECK(alg::group_of(g, 7) == std::vector<int>{7});
    CHECK(alg::group_of(g, 0) == plain.front());  // other groups untouched
    // When 5 is its rack's representative (iteration 1), the inter-rack group splits instead.
    const auto g1 = p.groups(t, 1);
    CHECK(alg::group_of(g1, 5).size() == 2);
    CHECK(alg::group_of(g1, 6) == std::vector<int>{6, 7, 4});
  }
  SUBCASE("two bottlenecks in one group each get a pair") {
    p.observe(network_state{.slow_racks = {0, 2}});
    const auto g = p.groups(t, 0);
    CHECK(alg::group_of(g, 0) == std::vector<int>{0, 4});
    CHECK(alg::group_of(g, 8) == std::vector<int>{8, 12});
    CHECK(alg::group_of(g, 16) == std::vector<int>{16});
  }
  SUBCASE("contention ends: the shuffle's groups come back") {
    p.observe(network_state{.slow_workers = {5}, .slow_racks = {1}});
    CHECK(p.groups(t, 0) != plain);
    p.observe(network_state{});
    CHECK(p.groups(t, 0) == plain);
  }
}

TEST_CASE("every ds_sync iteration of a period verifies: world sizes, racks, shuffles, states, counts") {
  std::vector<rack_topo> topos;
  for (int n : {1, 2, 3, 5, 8, 16}) {
    topos.emplace_back(even_racks(1, n));
    topos.emplace_back(uneven_racks(n));
  }
  for (int C : {2, 3, 4})
    for (int G : {1, 2, 3, 4}) topos.emplace_back(even_racks(C, G));
  const std::vector<network_state> states = {{}, {.slow_workers = {1}}, {.slow_racks = {0}},
                                             {.slow_workers = {0, 2}, .slow_racks = {1}}};
  for (const auto& t : topos) {
    const int n = t.workers();
    for (const auto& st : states) {
      auto check = [&](auto policy, const char* what) {
        policy.observe(st);
        // Every iteration of a period (the shuffle's, at most 16 here); while contended the period is N
        // times longer, and its first 8 iterations are checked.
        const std::uint64_t T = std::max<std::uint64_t>(1, std::min<std::uint64_t>(policy.period(t), st.empty() ? 16 : 8));
        for (std::uint64_t it = 0; it < T; ++it)
          for (std::size_t count : {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{1000}}) {
            const auto s = policy.plan(t, plan_request{count, it});
            const std::string ctx = std::string(what) + " on " + t.name() + ", state " + st.key() + ", iteration " +
                                    std::to_string(it) + ", count " + std::to_string(count);
            require_verified(s, ctx);
            REQUIRE_MESSAGE(s.groups == policy.groups(t, it), ctx);
            // A group's members talk only to each other: the plan's edges stay inside the groups.
            for (int r = 0; r < n; ++r) {
              const auto mine = as_set(alg::group_of(s.groups, r));
              for (const auto& ch : s.ranks[static_cast<std::size_t>(r)].channels)
                for (const auto& stp : ch.steps) REQUIRE_MESSAGE(mine.count(stp.peer) == 1, ctx);
            }
          }
      };
      check(alg::ds_sync{}, "rack rotation");
      check(alg::basic_ds_sync<alg::digit_grouping>{.shuffle = {.g = 2}}, "digit 2");
      check(alg::basic_ds_sync<alg::digit_grouping>{.shuffle = {.g = 3}}, "digit 3");
      check(alg::basic_ds_sync<alg::random_pairs>{.shuffle = {.seed = 3}}, "random pairs");
    }
  }
}

TEST_CASE("ds_sync: any inner policy, per-rank parts equal to the whole plan's, keys per period and state") {
  const leaf_spine t(4, 4);
  SUBCASE("inner double binary tree verifies") {
    alg::basic_ds_sync<alg::rack_rotation, alg::double_binary_tree> p;
    for (std::uint64_t it = 0; it < 4; ++it) require_verified(p.plan(t, plan_request{999, it}), "inner dbt");
  }
  SUBCASE("per rank") {
    const alg::ds_sync p;
    for (std::uint64_t it = 0; it < 4; ++it) {
      const auto whole = p.plan(t, plan_request{1000, it});
      for (int r = 0; r < t.workers(); ++r) {
        plan_request q{1000, it};
        q.rank = r;
        const auto part = p.plan(t, q);
        CHECK(part.planned_rank == r);
        CHECK(part.groups == whole.groups);
        CHECK(part.ranks[static_cast<std::size_t>(r)] == whole.ranks[static_cast<std::size_t>(r)]);
        for (int o = 0; o < t.workers(); ++o)
          if (o != r) CHECK(part.ranks[static_cast<std::size_t>(o)].step_count() == 0);
      }
    }
  }
  SUBCASE("cache keys") {
    alg::ds_sync p;
    const auto k0 = p.cache_key(t, plan_request{1, 0});
    CHECK(k0 == p.cache_key(t, plan_request{1, 16}));  // period 16
    CHECK(k0 != p.cache_key(t, plan_request{1, 1}));
    p.observe(network_state{.slow_racks = {2}});
    CHECK(k0 != p.cache_key(t, plan_request{1, 0}));
    p.observe(network_state{});
    CHECK(k0 == p.cache_key(t, plan_request{1, 0}));
    // Random pairs never repeat: the iteration itself is the key.
    const alg::basic_ds_sync<alg::random_pairs> r;
    CHECK(r.cache_key(t, plan_request{1, 3}) != r.cache_key(t, plan_request{1, 3 + 16}));
  }
}

TEST_CASE("ds_sync end to end in process: each member ends with its group's average, over many iterations") {
  std::mt19937 gen(11);
  for (const auto& t : {leaf_spine(4, 4), leaf_spine(3, 2), leaf_spine(1, 5), leaf_spine(5, 1)}) {
    const int n = t.workers();
    for (const auto& st : {network_state{}, network_state{.slow_workers = {1}, .slow_racks = {0}}}) {
      alg::ds_sync pol;
      pol.observe(st);
      for (std::uint64_t it : {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{5}}) {
        const auto in = dssync_test::random_inputs<double>(gen, n, 1001);
        std::vector<std::vector<double>> out(static_cast<std::size_t>(n));
        auto opt = dssync_test::test_options();
        opt.iteration = it;
        const auto errs = dssync_test::run_world(n, [&](auto& comm) {
          auto d = in[static_cast<std::size_t>(comm.rank())];
          auto p = pol;
          dssync::synchronize(comm, t, p, d, dssync::ops::average{}, opt);
          out[static_cast<std::size_t>(comm.rank())] = std::move(d);
        });
        REQUIRE_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
        for (const auto& g : pol.groups(t, it)) {
          std::vector<std::vector<double>> group_in;
          for (int r : g) group_in.push_back(in[static_cast<std::size_t>(r)]);
          for (int r : g) {
            CHECK(dssync_test::check_against_oracle(out[static_cast<std::size_t>(r)], group_in,
                                                    dssync_test::op_kind::average) == "");
            CHECK(out[static_cast<std::size_t>(r)] == out[static_cast<std::size_t>(g.front())]);  // bitwise
          }
        }
      }
    }
  }
  // Integer sums are exact: int32 through the registry entry, iteration 2 of racks 2x3.
  const leaf_spine t(2, 3);
  const auto& e = alg::registry().at("ds_sync");
  const auto in = dssync_test::random_inputs<std::int32_t>(gen, 6, 77);
  std::vector<std::vector<std::int32_t>> out(6);
  auto opt = dssync_test::test_options();
  opt.iteration = 2;
  const auto errs = dssync_test::run_world(6, [&](auto& comm) {
    auto d = in[static_cast<std::size_t>(comm.rank())];
    dssync::synchronize(comm, t, e, d, dssync::ops::sum{}, opt);
    out[static_cast<std::size_t>(comm.rank())] = std::move(d);
  });
  REQUIRE_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
  for (const auto& g : alg::ds_sync{}.groups(t, 2)) {
    std::vector<std::vector<std::int32_t>> group_in;
    for (int r : g) group_in.push_back(in[static_cast<std::size_t>(r)]);
    for (int r : g)
      CHECK(dssync_test::check_against_oracle(out[static_cast<std::size_t>(r)], group_in,
                                              dssync_test::op_kind::sum) == "");
  }
}

TEST_CASE("ds_sync: a group never waits for another (a held member, a member stopped by fault injection)") {
  // racks 2x4, iteration 0: groups {0,4}, {1,2,3}, {5,6,7}.
  const leaf_spine t(2, 4);
  const int n = t.workers();
  REQUIRE(alg::ds_sync{}.groups(t, 0) == alg::grouping{{0, 4}, {1, 2, 3}, {5, 6, 7}});
  SUBCASE("rank 5 calls only after the other groups' calls have returned") {
    std::latch others_done(5);  // ranks 0-4
    std::vector<std::vector<float>> out(static_cast<std::size_t>(n));
    const auto errs = dssync_test::run_world(n, [&](auto& comm) {
      std::vector<float> d(333, static_cast<float>(comm.rank()));
      if (comm.rank() == 5) others_done.wait();  // an event, not a clock: held until the others return
      dssync::synchronize<alg::ds_sync>(comm, t, d, dssync::ops::sum{}, dssync_test::test_options());
      if (comm.rank() < 5) others_done.count_down();
      out[static_cast<std::size_t>(comm.rank())] = std::move(d);
    });
    REQUIRE_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
    CHECK(out[0][0] == 4.0f);
    CHECK(out[2][332] == 6.0f);
    CHECK(out[7][0] == 18.0f);
  }
  SUBCASE("rank 6 stops at its first step: its group fails naming it, the other groups finish") {
    dssync::transport::inproc::world w(n);
    w.inject_fault(6, 0);
    std::vector<std::vector<float>> out(static_cast<std::size_t>(n));
    const auto errs = w.run_collect([&](auto& comm) {
      std::vector<float> d(333, static_cast<float>(comm.rank()));
      dssync::synchronize<alg::ds_sync>(comm, t, d, dssync::ops::sum{}, dssync_test::test_options());
      out[static_cast<std::size_t>(comm.rank())] = std::move(d);
    });
    for (int r : {0, 1, 2, 3, 4}) CHECK_MESSAGE(!errs[static_cast<std::size_t>(r)], describe_errors(errs));
    CHECK(out[0][0] == 4.0f);
    CHECK(out[1][0] == 6.0f);
    CHECK(errs[6]);
    for (int r : {5, 7}) {
      REQUIRE(errs[static_cast<std::size_t>(r)]);
      CHECK(dssync_test::names_rank(dssync_test::what(errs[static_cast<std::size_t>(r)]), 6));
    }
  }
}

TEST_CASE("ds_sync on the simulated transport: group averages, and a slow group does not delay the others") {
  const leaf_spine t(2, 4, {12.5e9, 1e-6}, {3.125e9, 2e-6});
  dssync::transport::sim::world w(t);
  std::vector<double> finished(8, 0.0);
  std::vector<std::vector<double>> out(8);
  const auto errs = w.run_collect([&](auto& comm) {
    std::vector<double> d(4096, static_cast<double>(comm.rank()));
    if (comm.rank() == 6) comm.sleep_for(1.0);  // one simulated second of compute on rank 6
    dssync::synchronize<alg::ds_sync>(comm, t, d, dssync::ops::average{}, dssync_test::test_options());
    finished[static_cast<std::size_t>(comm.rank())] = comm.now();
    out[static_cast<std::size_t>(comm.rank())] = std::move(d);
  });
  REQUIRE_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
  CHECK(out[0][0] == 2.0);  // {0,4}
  CHECK(out[3][4095] == 2.0);  // {1,2,3}
  CHECK(out[5][0] == 6.0);  // {5,6,7}
  for (int r : {0, 1, 2, 3, 4}) CHECK(finished[static_cast<std::size_t>(r)] < 0.01);
  for (int r : {5, 6, 7}) CHECK(finished[static_cast<std::size_t>(r)] >= 1.0);
}

TEST_SUITE_END();
