// The allreduce lower bound by cuts (algorithms/bounds.hpp): the NIC bound on a star, the rack uplinks on
// oversubscribed racks, the pods of an oversubscribed fat tree, subsets of participants, groups, and the
// bound against simulated times of real schedules.

#include <doctest/doctest.h>

#include <dssync/algorithms/bounds.hpp>
#include <dssync/algorithms/direct.hpp>
#include <dssync/algorithms/hierarchical.hpp>
#include <dssync/algorithms/ring.hpp>
#include <dssync/core/error.hpp>
#include <dssync/core/verifier.hpp>
#include <dssync/sim/simulator.hpp>
#include <dssync/topology/fat_tree.hpp>
#include <dssync/topology/racks.hpp>
#include <dssync/topology/ring.hpp>
#include <dssync/topology/star.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace {

namespace alg = dssync::algorithms;
namespace topo = dssync::topology;

constexpr double B = 12.5e9;      // 100 Gbit/s, the default link
constexpr double B_up = 3.125e9;  // 25 Gbit/s
constexpr double MiB = 1024.0 * 1024.0;

topo::link gbit(double g) { return topo::link{g * 1e9 / 8, 1e-6}; }

std::vector<int> iota_ranks(int n) {
  std::vector<int> r(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) r[static_cast<std::size_t>(i)] = i;
  return r;
}

/// The simulated time of policy `p` on `t` for `bytes` per rank (floats), after verifying the plan.
template <class Policy, class Topo>
double sim_time(Policy p, const Topo& t, double bytes) {
  const auto s = p.plan(t, dssync::plan_request{static_cast<std::size_t>(bytes / 4), 0});
  const auto v = dssync::verify(s);
  INFO(v.message);
  REQUIRE(v.ok);
  return dssync::sim::simulate(s, t).completion_time;
}

}  // namespace

TEST_SUITE("algorithms") {

TEST_CASE("bounds: star(N) gives the NIC bound 2(N-1)/N*S/B") {
  const double S = 64 * MiB;
  for (int n : {2, 3, 4, 8, 16}) {
    INFO("N = " << n);
    const auto b = alg::allreduce_lower_bound(topo::star(n).graph(), S);
    CHECK(b.seconds == doctest::Approx(2.0 * (n - 1) / n * S / B));
    CHECK(b.capacity == doctest::Approx(B));
    CHECK(b.bytes == doctest::Approx(2.0 * (n - 1) / n * S));
    CHECK(b.parts == n);
    CHECK(b.part_sizes == std::vector<int>(static_cast<std::size_t>(n), 1));
    CHECK(b.partition.find("NICs") != std::string::npos);
    CHECK(b.seconds == doctest::Approx(b.bytes / b.capacity));
  }
  // A ring: two links per worker.
  const auto r = alg::allreduce_lower_bound(topo::ring(8).graph(), S);
  CHECK(r.seconds == doctest::Approx(2.0 * 7 / 8 * S / (2 * B)));
}

TEST_CASE("bounds: racks 4x4 with 25 Gbit/s uplinks are bound by the uplinks, 2*3/4*S/B_up") {
  const topo::leaf_spine t(4, 4, gbit(100), gbit(25));
  const double S = 64 * MiB;
  const auto b = alg::allreduce_lower_bound(t.graph(), S);
  CHECK(b.seconds == doctest::Approx(1.5 * S / B_up));
  CHECK(b.seconds == doctest::Approx(0.0322122547).epsilon(1e-6));  // the 32.2 ms
  CHECK(b.capacity == doctest::Approx(B_up));
  CHECK(b.parts == 4);
  CHECK(b.part_sizes == std::vector<int>{4, 4, 4, 4});
  CHECK(b.partition.find("switch height <= 1") != std::string::npos);
  // The NIC bound alone would be 2*15/16*S/B = 10.07 ms.
  CHECK(b.seconds > 3 * (2.0 * 15 / 16 * S / B));

  // Non-blocking uplinks (4 x 100 Gbit/s): the NICs bind again.
  const topo::leaf_spine fast(4, 4, gbit(100), gbit(400));
  const auto f = alg::allreduce_lower_bound(fast.graph(), S);
  CHECK(f.seconds == doctest::Approx(2.0 * 15 / 16 * S / B));
  CHECK(f.parts == 16);
}

TEST_CASE("bounds: two racks, C = 2: S/B_up") {
  const topo::leaf_spine t(2, 4, gbit(100), gbit(25));
  const double S = 16 * MiB;
  const auto b = alg::allreduce_lower_bound(t.graph(), S);
  CHECK(b.seconds == doctest::Approx(S / B_up));
  CHECK(b.parts == 2);
  CHECK(b.part_sizes == std::vector<int>{4, 4});
}

TEST_CASE("bounds: fat tree: the NICs on a full-bisection tree, the pods when the core is thin") {
  const double S = 64 * MiB;
  const topo::fat_tree ft(4);
  const auto full = alg::allreduce_lower_bound(ft.graph(), S);
  CHECK(full.seconds == doctest::Approx(2.0 * 15 / 16 * S / B));
  CHECK(full.parts == 16);

  // Aggregation-core cables at B/8: each pod (4 hosts) leaves through 4 of them, B/2 in all, and each
  // edge switch (2 hosts) through 2 full links. Pods: 2*3/4*S/(B/2) = 3 S/B, above the NICs' 1.875 S/B
  // and the edge groups' 2*7/8*S/(2B).
  auto g = ft.graph();
  for (auto [it, end] = boost::edges(g); it != end; ++it) {
    const auto& a = g[boost::source(*it, g)].label;
    const auto& c = g[boost::target(*it, g)].label;
    if (a.starts_with("core") || c.starts_with("core")) g[*it].bandwidth = B / 8;
  }
  const auto thin = alg::allreduce_lower_bound(g, S);
  CHECK(thin.seconds == doctest::Approx(3 * S / B));
  CHECK(thin.capacity == doctest::Approx(B / 2));
  CHECK(thin.parts == 4);
  CHECK(thin.part_sizes == std::vector<int>{4, 4, 4, 4});
  CHECK(thin.partition.find("switch height <= 2") != std::string::npos);
}

TEST_CASE("bounds: fewer than 2 participants give 0") {
  const auto g = topo::leaf_spine(4, 4, gbit(100), gbit(25)).graph();
  const std::vector<int> one{5};
  const auto b1 = alg::allreduce_lower_bound(g, 64 * MiB, one);
  CHECK(b1.seconds == 0);
  CHECK(b1.parts == 1);
  const auto b0 = alg::allreduce_lower_bound(g, 64 * MiB, std::vector<int>{});
  CHECK(b0.seconds == 0);
  CHECK(b0.parts == 0);
  CHECK(alg::allreduce_lower_bound(topo::star(1).graph(), 64 * MiB).seconds == 0);
  CHECK(alg::allreduce_lower_bound(g, 0).seconds == 0);
}

TEST_CASE("bounds: a subset of participants (failed ranks excluded)") {
  const auto g = topo::leaf_spine(4, 4, gbit(100), gbit(25)).graph();
  const double S = 64 * MiB;
  SUBCASE("rank 0 failed: still 4 racks, one of 3") {
    std::vector<int> alive;
    for (int r = 1; r < 16; ++r) alive.push_back(r);
    const auto b = alg::allreduce_lower_bound(g, S, alive);
    CHECK(b.seconds == doctest::Approx(1.5 * S / B_up));
    CHECK(b.part_sizes == std::vector<int>{3, 4, 4, 4});
  }
  SUBCASE("racks 2 and 3 all failed: 2 racks take part, their parts drop out") {
    const auto b = alg::allreduce_lower_bound(g, S, iota_ranks(8));
    CHECK(b.seconds == doctest::Approx(S / B_up));
    CHECK(b.parts == 2);
  }
  SUBCASE("two ranks of one rack: the rack is one part, so only the NICs count") {
    const auto b = alg::allreduce_lower_bound(g, S, std::vector<int>{4, 6});
    CHECK(b.seconds == doctest::Approx(S / B));
    CHECK(b.parts == 2);
    CHECK(b.partition.find("NICs") != std::string::npos);
  }
  SUBCASE("one rank in each of two racks") {
    const auto b = alg::allreduce_lower_bound(g, S, std::vector<int>{0, 15});
    CHECK(b.seconds == doctest::Approx(S / B_up));
  }
  SUBCASE("bad participants throw") {
    CHECK_THROWS_AS((void)alg::allreduce_lower_bound(g, S, std::vector<int>{0, 16}), dssync::invalid_argument);
    CHECK_THROWS_AS((void)alg::allreduce_lower_bound(g, S, std::vector<int>{3, 3}), dssync::invalid_argument);
    CHECK_THROWS_AS((void)alg::allreduce_lower_bound(g, S, std::vector<int>{-1, 2}), dssync::invalid_argument);
    CHECK_THROWS_AS((void)alg::allreduce_lower_bound(g, -1.0), dssync::invalid_argument);
  }
}

TEST_CASE("bounds: a group allreduce takes the worst group alone") {
  const auto g = topo::leaf_spine(2, 2, gbit(100), gbit(25)).graph();
  const double S = 16 * MiB;
  // Pairs within a rack: their NICs, S/B.
  const auto in_rack = alg::group_allreduce_lower_bound(g, S, {{0, 1}, {2, 3}});
  CHECK(in_rack.seconds == doctest::Approx(S / B));
  // Pairs across the racks: the uplinks, S/B_up.
  const auto across = alg::group_allreduce_lower_bound(g, S, {{0, 2}, {1, 3}});
  CHECK(across.seconds == doctest::Approx(S / B_up));
  CHECK(across.parts == 2);
  // Singleton groups move nothing.
  CHECK(alg::group_allreduce_lower_bound(g, S, {{0}, {1}, {2}, {3}}).seconds == 0);
}

TEST_CASE("bounds: unequal parts: a fast hub lets the others move S, not 2(N-1)/N*S") {
  // Star of 4 workers, worker 0 on a 10x link: the others could each send S and receive S (through the
  // hub's reductions), so the slowest NIC binds at S/B, not 1.5 S/B; the mean term 6S/(13B) is lower.
  topo::network g;
  topo::add_workers(g, 4);
  const auto sw = topo::add_switch(g, "sw");
  for (int r = 0; r < 4; ++r) {
    topo::link l;
    l.bandwidth = r == 0 ? 10 * B : B;
    topo::add_cable(g, static_cast<std::size_t>(r), sw, l);
  }
  const double S = 16 * MiB;
  const auto b = alg::allreduce_lower_bound(g, S);
  CHECK(b.seconds == doctest::Approx(S / B));
  CHECK(b.capacity == doctest::Approx(B));
  CHECK(b.bytes == doctest::Approx(S));
  CHECK(b.rule.find("least capacity") != std::string::npos);
}

TEST_CASE("bounds: never above the simulated time of a real schedule") {
  const double S = 16 * MiB;
  for (int n : {2, 4, 8}) {
    const topo::star st(n);
    const double sim = sim_time(alg::ring{}, st, S);
    const double bound = alg::allreduce_lower_bound(st.graph(), S).seconds;
    INFO("ring on star(" << n << "): sim " << sim << " s, bound " << bound << " s");
    CHECK(bound <= sim);
    CHECK(bound >= 0.98 * sim);  // the ring is bandwidth-optimal there: only latency separates them
  }
  const topo::leaf_spine racks(4, 4, gbit(100), gbit(25));
  const double bound = alg::allreduce_lower_bound(racks.graph(), S).seconds;
  const auto check = [&](auto p) {
    const double sim = sim_time(p, racks, S);
    INFO(decltype(p)::name << " on racks(4x4): sim " << sim << " s, bound " << bound << " s");
    CHECK(bound <= sim);
  };
  check(alg::ring{});
  check(alg::hierarchical{});
  check(alg::direct{});
  const topo::fat_tree ft(4);
  CHECK(alg::allreduce_lower_bound(ft.graph(), S).seconds <= sim_time(alg::ring{}, ft, S));
}

}  // TEST_SUITE
