// algorithms::tree: broadcast, reduce and allreduce along packed trees (exact and Blink modes), proven by
// the verifier and run on the in-process and simulated transports against sequential oracles, on DGX-1
// subsets (1 to 8 GPUs, NVLink only and with PCIe switches), racks, a fat tree and a ring; bad input.

#include <doctest/doctest.h>

#include <dssync/algorithms/tree.hpp>
#include <dssync/core/verifier.hpp>
#include <dssync/sim/simulator.hpp>
#include <dssync/synchronize.hpp>
#include <dssync/topology/dgx1.hpp>
#include <dssync/topology/fat_tree.hpp>
#include <dssync/topology/racks.hpp>
#include <dssync/topology/ring.hpp>
#include <dssync/transport/sim.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "test_support.hpp"

namespace {

namespace alg = dssync::algorithms;
namespace topo = dssync::topology;
using dssync::semantics;

std::int64_t value(int rank, std::size_t i) { return static_cast<std::int64_t>(rank) * 1000003 + static_cast<std::int64_t>(i % 9973) - 17; }

/// Plans `c` with `p` on `t`, verifies it, runs it on an in-process world and checks the oracle.
template <class Topo>
void check_collective(const alg::tree& p, const Topo& t, semantics c, int root, std::size_t count) {
  const int n = t.workers();
  const auto plan = p.plan(t, dssync::plan_request{count, 0, c, root, {}});
  CHECK_MESSAGE(plan.kind == c, "planned " << dssync::to_string(plan.kind));
  dssync::verify_or_throw(plan);
  const auto errs = dssync_test::run_world(n, [&](auto& comm) {
    const int me = comm.rank();
    std::vector<std::int64_t> x(count);
    for (std::size_t i = 0; i < count; ++i) x[i] = value(me, i);
    dssync::synchronize(comm, plan, x, dssync::ops::sum{}, dssync_test::test_options());
    if (c == semantics::reduce && me != root) return;  // unspecified off the root
    for (std::size_t i = 0; i < count; ++i) {
      std::int64_t want = 0;
      if (c == semantics::broadcast) {
        want = value(root, i);
      } else {
        for (int r = 0; r < n; ++r) want += value(r, i);
      }
      dssync_test::ensure(x[i] == want, "rank " + std::to_string(me) + ": element " + std::to_string(i) + " is " +
                                            std::to_string(x[i]) + ", expected " + std::to_string(want));
    }
  });
  REQUIRE_MESSAGE(dssync_test::describe_errors(errs).empty(), dssync_test::describe_errors(errs));
}

std::string trees_mode(const alg::tree& p) { return alg::trees::to_string(p.mode); }

template <class Topo>
void check_all(const alg::tree& p, const Topo& t) {
  const int n = t.workers();
  for (semantics c : {semantics::broadcast, semantics::reduce, semantics::allreduce})
    for (int root : {0, n - 1})
      for (std::size_t count : {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{50000}}) {
        INFO(t.name() << ": " << dssync::to_string(c) << " from root " << root << ", " << count << " elements, "
                      << trees_mode(p));
        check_collective(p, t, c, root, count);
      }
}

}  // namespace

TEST_SUITE_BEGIN("trees");

TEST_CASE("tree policy on DGX-1 subsets of 1 to 8 GPUs: verified, and equal to the oracle") {
  const std::vector<std::vector<int>> subsets = {{4}, {0, 5}, {0, 1, 6}, {0, 1, 2, 5}, {1, 2, 3, 4, 7}, {0, 1, 2, 3, 4, 5, 6, 7}};
  for (const auto& g : subsets)
    for (auto mode : {alg::trees::pack_mode::exact, alg::trees::pack_mode::blink}) {
      alg::tree p;
      p.mode = mode;
      p.piece = 4096;
      check_all(p, topo::dgx1(g));
      if (topo::dgx1(g).nvlink_connected() && g.size() > 1) check_all(p, topo::dgx1(g).nvlink_only());
    }
}

TEST_CASE("tree policy on switch fabrics and a ring (3, 5 and 16 ranks)") {
  alg::tree p;
  check_all(p, topo::leaf_spine(1, 3));
  check_all(p, topo::ring(5));
  check_all(p, topo::fat_tree(4));
}

TEST_CASE("tree policy: one channel per tree, data split by rate, and the packing behind it") {
  const topo::dgx1 t = topo::dgx1().nvlink_only();
  alg::tree p;
  const auto pk = p.packing_for(t, {1, 0, semantics::broadcast, 0, {}});
  CHECK(pk.rate == pk.bound);
  CHECK(pk.bound == 6 * 25e9);  // six NVLink lanes out of every GPU
  const auto plan = p.plan(t, dssync::plan_request{1'000'000, 0, semantics::broadcast, 0, {}});
  std::size_t channels = 0;
  for (const auto& r : plan.ranks) channels = std::max(channels, r.channels.size());
  CHECK(channels == pk.tree_count());
}

TEST_CASE("tree policy: packings are cached per graph, root, direction and mode; a plan from a given packing") {
  alg::tree p;
  // NVLink lanes of 23 GB/s, which no other test packs, so the first lookups below must miss.
  const topo::link lane{23e9, 1e-6};
  const topo::dgx1 a({0, 1, 2, 5}, lane), b({0, 1, 2, 3}, lane);
  const dssync::plan_request bq{1, 0, semantics::broadcast, 0, {}};
  const auto h0 = alg::tree::packing_cache::hits();
  const auto pa = p.packing_for(a, bq);
  CHECK(alg::tree::packing_cache::hits() == h0);
  const auto pa2 = p.packing_for(a, {12345, 0, semantics::broadcast, 0, {}});  // another count: the same packing
  CHECK(alg::tree::packing_cache::hits() == h0 + 1);
  CHECK(pa2.rate == pa.rate);
  CHECK(pa2.trees.size() == pa.trees.size());
  // Another graph, another root, the reduce direction and Blink mode each miss.
  const auto pb = p.packing_for(b, bq);
  (void)p.packing_for(a, {1, 0, semantics::broadcast, 3, {}});
  (void)p.packing_for(a, {1, 0, semantics::reduce, 0, {}});
  alg::tree blink{.mode = alg::trees::pack_mode::blink};
  const auto pbl = blink.packing_for(a, bq);
  CHECK(alg::tree::packing_cache::hits() == h0 + 1);
  CHECK(pbl.mode == alg::trees::pack_mode::blink);
  CHECK(pb.bound != pa.bound);  // GPU 0's NVLink lanes reach the others' min cut differently
  // plan(n, q, packing) is plan(t, q), and refuses a packing of another root or size.
  const dssync::plan_request q{5000, 0, semantics::broadcast, 0, {}};
  CHECK(p.plan(a.workers(), q, pa) == p.plan(a, q));
  CHECK_THROWS_WITH_AS((void)p.plan(a.workers(), {5000, 0, semantics::broadcast, 1, {}}, pa),
                       doctest::Contains("the packing has root 0 and 4 ranks, the plan needs root 1 and 4"),
                       dssync::invalid_argument);
  CHECK_THROWS_WITH_AS((void)p.plan(3, q, pa), doctest::Contains("the plan needs root 0 and 3"),
                       dssync::invalid_argument);
}

TEST_CASE("tree policy, Blink's NVLink and PCIe trees packed apart: verified, the oracle, hinted channels") {
  alg::tree p;
  p.link_sets = alg::tree::nvlink_and_pcie();
  for (const auto& gpus : {std::vector<int>{0, 1, 2, 5}, std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7},
                           std::vector<int>{0, 3}, std::vector<int>{4, 5, 7}}) {
    const topo::dgx1 t(gpus);
    INFO(t.name());
    const auto ps = p.packings_for(t, {1, 0, semantics::broadcast, 0, {}});
    REQUIRE(ps.size() == 2);
    CHECK(ps[0].links == p.link_sets[0]);
    CHECK(ps[1].links == p.link_sets[1]);
    CHECK(ps[0].rate == ps[0].bound);
    CHECK(ps[1].rate == ps[1].bound);
    CHECK(ps[1].bound == 12e9);  // one PCIe link out of every GPU
    const auto plan = p.plan(t, dssync::plan_request{100000, 0, semantics::broadcast, 0, {}});
    // One channel per tree: the NVLink trees' channels first, hinted with their set.
    const auto& r0 = plan.ranks[0].channels;
    REQUIRE(r0.size() == ps[0].tree_count() + ps[1].tree_count());
    for (std::size_t c = 0; c < r0.size(); ++c) CHECK(r0[c].links == (c < ps[0].tree_count() ? p.link_sets[0] : p.link_sets[1]));
    check_all(p, t);
  }
  // A set whose links do not connect the ranks is refused, naming the set.
  alg::tree nv;
  nv.link_sets = {topo::classes({topo::link_class::nvlink})};
  CHECK_THROWS_WITH_AS((void)nv.plan(topo::leaf_spine(2, 2), dssync::plan_request{8, 0, semantics::broadcast, 0, {}}),
                       doctest::Contains("links of class nvlink: trees::pack_broadcast: rank 1"),
                       dssync::invalid_argument);
  CHECK_THROWS_WITH_AS((void)p.packing_for(topo::dgx1(), {1, 0, semantics::broadcast, 0, {}}),
                       doctest::Contains("2 link sets give as many packings"), dssync::invalid_argument);
}

TEST_CASE("route hints: a channel restricted to PCIe on dgx1 never touches NVLink in the simulator") {
  const topo::dgx1 t;
  alg::tree pcie;
  pcie.link_sets = {topo::classes({topo::link_class::pcie, topo::link_class::socket})};
  for (semantics c : {semantics::broadcast, semantics::allreduce}) {
    INFO(dssync::to_string(c));
    auto plan = pcie.plan(t, dssync::plan_request{1 << 20, 0, c, 0, {}});
    dssync::verify_or_throw(plan);
    dssync::sim::router r(t.graph());
    const auto hinted = dssync::sim::simulate(plan, r);
    double nvlink = 0, pcie_bytes = 0;
    for (const auto& l : hinted.links)
      (r.link_class(l.edge) == topo::link_class::nvlink ? nvlink : pcie_bytes) += l.bytes;
    CHECK(nvlink == 0);
    CHECK(pcie_bytes > 0);
    // The same trees without their hints: shortest paths between NVLink neighbours take NVLink.
    for (auto& rk : plan.ranks)
      for (auto& ch : rk.channels) ch.links = 0;
    const auto free = dssync::sim::simulate(plan, r);
    double nvlink_free = 0;
    for (const auto& l : free.links)
      if (r.link_class(l.edge) == topo::link_class::nvlink) nvlink_free += l.bytes;
    CHECK(nvlink_free > 0);
  }
  // The router names the set a route cannot keep to.
  const topo::dgx1 nv = topo::dgx1({0, 1}).nvlink_only();
  dssync::sim::router r(nv.graph());
  CHECK(r.route(0, 1, 0, topo::classes({topo::link_class::nvlink})).size() == 1);
  CHECK_THROWS_WITH_AS((void)r.route(0, 1, 0, topo::classes({topo::link_class::pcie})),
                       doctest::Contains("is unreachable from vertex gpu0 over links of class pcie"),
                       dssync::invalid_argument);
}

TEST_CASE("tree policy on the simulated transport: a DGX-1 broadcast and allreduce equal the oracle") {
  const topo::dgx1 t({0, 1, 2, 3});
  alg::tree p;
  for (semantics c : {semantics::broadcast, semantics::allreduce}) {
    const std::size_t count = 20000;
    const auto plan = p.plan(t, dssync::plan_request{count, 0, c, 0, {}});
    dssync::transport::sim::world w{t};
    const auto errs = w.run_collect([&](auto& comm) {
      std::vector<std::int64_t> x(count);
      for (std::size_t i = 0; i < count; ++i) x[i] = value(comm.rank(), i);
      dssync::synchronize(comm, plan, x);
      for (std::size_t i = 0; i < count; i += 997) {
        const std::int64_t want = c == semantics::broadcast ? value(0, i) : value(0, i) + value(1, i) + value(2, i) + value(3, i);
        dssync_test::ensure(x[i] == want, "rank " + std::to_string(comm.rank()) + ": element " + std::to_string(i));
      }
    });
    REQUIRE_MESSAGE(dssync_test::describe_errors(errs).empty(), dssync_test::describe_errors(errs));
  }
}

TEST_CASE("tree policy: bad input is refused, naming the value") {
  alg::tree p;
  const topo::dgx1 t({0, 1, 2});
  CHECK_THROWS_WITH_AS((void)p.plan(t, dssync::plan_request{8, 0, semantics::broadcast, 3, {}}),
                       doctest::Contains("root 3 is not a rank of 3"), dssync::invalid_argument);
  CHECK_THROWS_WITH_AS((void)p.plan(t, dssync::plan_request{8, 0, semantics::allgather, 0, {}}),
                       doctest::Contains("not allgather"), dssync::invalid_argument);
}

TEST_SUITE_END();
