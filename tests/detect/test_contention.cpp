// The passive contention detector (detect/contention.hpp): on synthetic timings (a larger group is never
// slow for being larger; bad input named), and closed loop with ds_sync on the simulated transport: the
// seed's two contention cases (Fig. 5, background flows on rack 0's uplink; Fig. 6, a worker's NIC capped)
// are detected and the groups adjusted within the window, and undone when the contention ends; with no
// contention, no false alarm in 1,000 iterations.

#include <doctest/doctest.h>

#include <dssync/algorithms/ds_sync.hpp>
#include <dssync/detect/contention.hpp>
#include <dssync/sim/scenario.hpp>
#include <dssync/ops/ops.hpp>
#include <dssync/synchronize.hpp>
#include <dssync/topology/racks.hpp>
#include <dssync/transport/sim.hpp>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "test_support.hpp"

namespace alg = dssync::algorithms;
namespace det = dssync::detect;
using dssync::network_state;
using dssync::topology::leaf_spine;
using dssync_test::describe_errors;

namespace {

constexpr double intra_bw = 12.5e9;   // 100 Gbit/s
constexpr double uplink_bw = 3.125e9;  // 25 Gbit/s

/// Ring-allreduce time of a group of g at bandwidth b for s bytes per member.
double ring_time(std::size_t g, double s, double b) { return 2.0 * (static_cast<double>(g) - 1) / static_cast<double>(g) * s / b; }

/// What a closed-loop run saw, per iteration.
struct trace {
  std::vector<double> start;            // virtual time at the iteration's start
  std::vector<network_state> state;     // the detector's state after the iteration
  std::vector<alg::grouping> groups;    // the groups the iteration ran
};

/// Runs `iterations` DS-Sync iterations of `bytes` per rank on racks 4x4 in the simulator under
/// `script`, feeding every rank's synchronize time to the detector and its state back to the policy.
trace closed_loop(const std::string& script, int iterations, std::size_t window, std::size_t bytes = 64 * 1024) {
  const leaf_spine t(4, 4, {intra_bw, 0.0}, {uplink_bw, 0.0});
  dssync::transport::sim::world_options wo;
  wo.script = dssync::sim::scenario::parse(script);
  dssync::transport::sim::world w(t, wo);
  alg::ds_sync pol;
  det::detector_options o;
  o.window = window;
  det::contention_detector d(t.racks(), o);
  trace tr;
  const int n = t.workers();
  for (int it = 0; it < iterations; ++it) {
    tr.start.push_back(w.now());
    tr.groups.push_back(pol.groups(t, static_cast<std::uint64_t>(it)));
    std::vector<double> seconds(static_cast<std::size_t>(n), 0.0);
    auto opt = dssync_test::test_options();
    opt.iteration = static_cast<std::uint64_t>(it);
    const auto errs = w.run_collect([&](auto& comm) {
      std::vector<float> x(bytes / sizeof(float), static_cast<float>(comm.rank()));
      const double t0 = comm.now();
      auto p = pol;
      dssync::synchronize(comm, t, p, x, dssync::ops::average{}, opt);
      seconds[static_cast<std::size_t>(comm.rank())] = comm.now() - t0;
    });
    REQUIRE_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
    pol.observe(d.record_ranks(static_cast<std::uint64_t>(it), tr.groups.back(), seconds, static_cast<double>(bytes)));
    tr.state.push_back(d.state());
  }
  return tr;
}

/// The first iteration at or after `from` after which the detector's state is `want`.
int first_state(const trace& tr, int from, const network_state& want) {
  for (std::size_t i = static_cast<std::size_t>(from); i < tr.state.size(); ++i)
    if (tr.state[i] == want) return static_cast<int>(i);
  return static_cast<int>(tr.state.size());
}

/// The first iteration starting at or after virtual time `t`.
int first_at(const trace& tr, double t) {
  for (std::size_t i = 0; i < tr.start.size(); ++i)
    if (tr.start[i] >= t) return static_cast<int>(i);
  return static_cast<int>(tr.start.size());
}

}  // namespace

TEST_SUITE_BEGIN("detect");

TEST_CASE("contention detector: a larger group is not slow for being larger; nothing flagged at full speed") {
  const auto racks = alg::rack_list{{0, 1, 2, 3, 4, 5, 6, 7}, {8, 9}, {10, 11, 12}};
  det::contention_detector d(racks, {.window = 16});
  std::mt19937 gen(3);
  std::uniform_real_distribution<double> noise(0.95, 1.05);
  const double S = 1 << 20;
  for (std::uint64_t it = 0; it < 1000; ++it) {
    // Groups of every size from 2 to 8 inside rack 0, and across racks, at the same bandwidth.
    std::vector<det::group_timing> g;
    const std::size_t size = 2 + it % 7;
    std::vector<int> inside(size), across{7, 8, 10};
    for (std::size_t i = 0; i < size; ++i) inside[i] = static_cast<int>(i);
    g.push_back({inside, ring_time(size, S, intra_bw) * noise(gen), S});
    g.push_back({across, ring_time(3, S, uplink_bw) * noise(gen), S});
    REQUIRE_MESSAGE(d.record(it, g).empty(), "false alarm at iteration " << it << ": " << d.state().key());
  }
  CHECK(d.reference_rate(false) == doctest::Approx(intra_bw).epsilon(0.06));
  CHECK(d.reference_rate(true) == doctest::Approx(uplink_bw).epsilon(0.06));
}

TEST_CASE("contention detector: a slow NIC and a slow uplink from synthetic timings, and known references") {
  const auto racks = alg::rack_list{{0, 1, 2}, {3, 4, 5}};
  const double S = 1 << 20;
  SUBCASE("worker 4's groups are all slow: its NIC") {
    det::contention_detector d(racks, {.window = 6, .intra_reference = intra_bw, .inter_reference = uplink_bw});
    for (std::uint64_t it = 0; it < 6; ++it) {
      const int rep1 = 3 + static_cast<int>(it % 3);  // rack 1's representative rotates
      std::vector<int> intra1;
      for (int r : {3, 4, 5})
        if (r != rep1) intra1.push_back(r);
      const bool four_intra = rep1 != 4;
      std::vector<det::group_timing> g{
          {{0, rep1}, ring_time(2, S, uplink_bw) * (four_intra ? 1.0 : 5.0), S},
          {{1, 2}, ring_time(2, S, intra_bw), S},
          {intra1, ring_time(2, S, intra_bw) * (four_intra ? 5.0 : 1.0), S}};
      d.record(it, g);
    }
    CHECK(d.state().slow_workers == std::vector<int>{4});
    CHECK(d.state().slow_racks.empty());
  }
  SUBCASE("one pair across racks is always slow: its NICs and uplinks are indistinguishable, all flagged") {
    det::contention_detector d(racks, {.window = 4, .intra_reference = intra_bw, .inter_reference = uplink_bw});
    for (std::uint64_t it = 0; it < 4; ++it)
      d.record(it, std::vector<det::group_timing>{{{0, 3}, ring_time(2, S, uplink_bw) * 3, S},
                                                  {{1, 2}, ring_time(2, S, intra_bw), S},
                                                  {{4, 5}, ring_time(2, S, intra_bw), S}});
    CHECK(d.state().slow_racks == std::vector<int>{0, 1});
    CHECK(d.state().slow_workers == std::vector<int>{0, 3});
  }
  SUBCASE("bad input is named") {
    CHECK_THROWS_WITH_AS(det::contention_detector(alg::rack_list{{0, 1}, {1, 2}}), doctest::Contains("rank 1"),
                         dssync::invalid_argument);
    CHECK_THROWS_AS(det::contention_detector(racks, {.window = 0}), dssync::invalid_argument);
    CHECK_THROWS_AS(det::contention_detector(racks, {.slow_ratio = 1.5}), dssync::invalid_argument);
    det::contention_detector d(racks);
    CHECK_THROWS_WITH_AS(d.record(0, std::vector<det::group_timing>{{{0, 9}, 1.0, S}}), doctest::Contains("member 9"),
                         dssync::invalid_argument);
    CHECK_THROWS_AS(d.record(0, std::vector<det::group_timing>{{{0, 1}, -1.0, S}}), dssync::invalid_argument);
    d.record(5, std::vector<det::group_timing>{});
    CHECK_THROWS_WITH_AS(d.record(4, std::vector<det::group_timing>{}), doctest::Contains("iteration 4"),
                         dssync::invalid_argument);
    const std::vector<double> three{1, 2, 3};
    CHECK_THROWS_WITH_AS(d.record_ranks(6, {{0, 1}}, three, S), doctest::Contains("3 times for 6 ranks"),
                         dssync::invalid_argument);
  }
}

TEST_CASE("the active probe's report becomes the same network_state, so ds_sync takes either source") {
  dssync::topology::contention_report r;
  r.nics.push_back({5, dssync::topology::traffic_direction::out, 0.1});
  r.uplinks.push_back({2, dssync::topology::traffic_direction::both, 0.4});
  r.uplinks.push_back({0, dssync::topology::traffic_direction::in, 0.4});
  const auto s = det::to_network_state(r);
  CHECK(s.slow_workers == std::vector<int>{5});
  CHECK(s.slow_racks == std::vector<int>{0, 2});
  alg::ds_sync p;
  p.observe(s);
  const auto g = p.groups(leaf_spine(4, 4), 0);
  CHECK(alg::group_of(g, 0).size() == 2);  // rack 0's representative, paired
  CHECK(det::to_network_state(dssync::topology::contention_report{}).empty());
}

TEST_CASE("ds_sync with the passive detector in the simulator: no contention, no false alarm in 1,000 iterations") {
  const auto tr = closed_loop("", static_cast<int>(dssync_test::scaled(1000, 100)), 8);  // 100 under sanitizers
  for (std::size_t i = 0; i < tr.state.size(); ++i)
    REQUIRE_MESSAGE(tr.state[i].empty(), "false alarm at iteration " << i << ": " << tr.state[i].key());
}

TEST_CASE("ds_sync with the passive detector: seed Fig. 5, background flows on rack 0's uplink") {
  // Three flows from rack 0's workers to other racks, from 1 ms to 5 ms of virtual time: with the inter-rack
  // ring flow they split rack 0's uplink four ways. (An iteration takes about 31 us without contention.)
  const std::size_t W = 8;
  const auto tr = closed_loop("at 1ms background 1->5 id a; at 1ms background 2->9 id b; at 1ms background 3->13 id c;"
                              "at 5ms stop a; at 5ms stop b; at 5ms stop c",
                              150, W);
  const int on = first_at(tr, 1e-3), off = first_at(tr, 5e-3);
  INFO("on " << on << ", off " << off);
  REQUIRE(on > 0);
  REQUIRE(off > on + static_cast<int>(4 * W));
  REQUIRE(off + static_cast<int>(2 * W) < 150);
  for (int i = 0; i < on; ++i) REQUIRE_MESSAGE(tr.state[static_cast<std::size_t>(i)].empty(), "before, iteration " << i);
  // Within two windows (the first flags every rack of the slow inter-rack group; DS-Sync pairs them; the
  // second localizes) rack 0's uplink alone is flagged, and stays so while the flows run.
  // (Iteration off - 1 may straddle the end of the contention.)
  const int found = first_state(tr, on, network_state{.slow_racks = {0}});
  INFO("rack 0 flagged after iteration " << found);
  CHECK(found - on <= static_cast<int>(2 * W));
  const int by = on + static_cast<int>(2 * W) + 2;
  for (int i = by; i < off - 1; ++i) {
    const auto& s = tr.state[static_cast<std::size_t>(i)];
    REQUIRE_MESSAGE((s.slow_racks == std::vector<int>{0} && s.slow_workers.empty()), "iteration " << i << ": " << s.key());
  }
  // Then the groups are adjusted: rack 0's representative is alone with one peer; the others stay together.
  for (int i = by + 1; i < off - 1; ++i) {
    bool paired = false;  // a pair of rack 0's representative and one of another rack
    for (const auto& x : tr.groups[static_cast<std::size_t>(i)])
      if (x.size() == 2 && (x[0] < 4) != (x[1] < 4)) paired = true;
    REQUIRE_MESSAGE(paired, "iteration " << i << ": " << alg::to_string(tr.groups[static_cast<std::size_t>(i)]));
  }
  // Once the flows stop, the flag clears within a window and the seed's groups come back.
  for (int i = off + static_cast<int>(W) + 1; i < static_cast<int>(tr.state.size()); ++i)
    REQUIRE_MESSAGE(tr.state[static_cast<std::size_t>(i)].empty(), "after, iteration " << i << ": "
                                                                    << tr.state[static_cast<std::size_t>(i)].key());
  CHECK(tr.groups.back() == alg::ds_sync{}.groups(leaf_spine(4, 4), static_cast<std::uint64_t>(tr.groups.size() - 1)));
}

TEST_CASE("ds_sync with the passive detector: seed Fig. 6, worker 5's NIC capped") {
  const std::size_t W = 8;
  const auto tr = closed_loop("at 1ms nic 5 cap 10Gbps; at 5ms nic 5 clear", 160, W);
  const int on = first_at(tr, 1e-3), off = first_at(tr, 5e-3);
  INFO("on " << on << ", off " << off);
  REQUIRE(on > 0);
  REQUIRE(off > on + static_cast<int>(3 * W));
  REQUIRE(off + static_cast<int>(2 * W) < 160);
  for (int i = 0; i < on; ++i) REQUIRE_MESSAGE(tr.state[static_cast<std::size_t>(i)].empty(), "before, iteration " << i);
  const int found = first_state(tr, on, network_state{.slow_workers = {5}});
  INFO("worker 5 flagged after iteration " << found);
  CHECK(found - on <= static_cast<int>(W));
  for (int i = on + static_cast<int>(W) + 1; i < off - 1; ++i) {  // off - 1 may straddle the end
    const auto& s = tr.state[static_cast<std::size_t>(i)];
    REQUIRE_MESSAGE((s.slow_workers == std::vector<int>{5} && s.slow_racks.empty()), "iteration " << i << ": " << s.key());
    // The adjusted groups put worker 5 with one peer.
    CHECK(alg::group_of(tr.groups[static_cast<std::size_t>(i) + 1], 5).size() == 2);
  }
  for (int i = off + static_cast<int>(W) + 1; i < static_cast<int>(tr.state.size()); ++i)
    REQUIRE_MESSAGE(tr.state[static_cast<std::size_t>(i)].empty(), "after, iteration " << i);
}

TEST_SUITE_END();
