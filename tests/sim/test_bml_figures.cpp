// BML's figures (seed 003, ALGORITHMS.md "BML on BCube(n,k)") reproduced in the simulator, with latency
// 0 and every link at 8 Gbit/s (1 GB/s), so that T_F = S / (1 GB/s):
//  - BCube(3,2), 9 servers: aggregation 1 costs 6·T_C, aggregation 2 2·T_C, broadcast 1 2·T_C, broadcast
//    2 6·T_C, total 16·T_C = 8/9·T_F with T_C = T_F/18;
//  - Table II: BML 2(N-1)/(k·N)·T_F, for BCube(3,2), (2,3), (4,2) and (3,3); Fat-Tree (ring allreduce
//    over a fat tree) 2(N-1)/N·T_F, so BML / Fat-Tree = 1/k: on fat_tree(4) (16 hosts) against BCube(4,2)
//    (16 servers), and on a non-blocking switch (star, a fat tree's ideal) of N servers for every shape;
//  - BML reaches the allreduce bound with k NICs per server, 2(N-1)/N·S / (k·B).
//  - BCube(3,2) with server [0,0] failed: 8 survivors, 16 pieces, T_C = T_F/16; aggregation 6·T_C + 2·T_C,
//    the two auxiliary (relay) stages 1·T_C each, broadcast 2·T_C + 6·T_C: 18·T_C = 9/8·T_F. The seed
//    counts stage by stage, so this is the simulator's lockstep mode (a barrier between stages).
//    Free-running, the gated plan (bcube.hpp, `bml_replan::gate`) keeps the aggregation at 8·T_C and
//    takes 21.1·T_C = 1.32·T_F in all (1.44·T_F without the gates); the broadcast still runs ahead.
// Each within 1 %.

#include <doctest/doctest.h>

#include <dssync/algorithms/bcube.hpp>
#include <dssync/algorithms/cost_model.hpp>
#include <dssync/algorithms/ring.hpp>
#include <dssync/core/verifier.hpp>
#include <dssync/sim/simulator.hpp>
#include <dssync/topology/bcube.hpp>
#include <dssync/topology/fat_tree.hpp>
#include <dssync/topology/star.hpp>

#include <algorithm>
#include <cstddef>
#include <vector>

namespace {

namespace alg = dssync::algorithms;
namespace topo = dssync::topology;

constexpr double B = 1e9;                     // 8 Gbit/s in bytes/s
const topo::link link8{B, 0.0};               // every link: 8 Gbit/s, no latency
constexpr std::size_t count = 16 * 1024 * 1024;  // floats per server: S = 64 MiB
constexpr double S = 4.0 * count;
constexpr double T_F = S / B;

dssync::sim::sim_options no_latency(bool timeline = false) {
  dssync::sim::sim_options o;
  o.latency = 0.0;
  o.record_timeline = timeline;
  return o;
}

/// BML's simulated time on BCube(n,k) at 8 Gbit/s, latency 0.
double bml(int n, int k) {
  const topo::bcube t(n, k, link8);
  const auto s = alg::bcube{}.plan(t, {count, 0});
  const auto v = dssync::verify(s);
  INFO(v.message);
  REQUIRE(v.ok);
  return dssync::sim::simulate(s, t, no_latency()).completion_time;
}

/// Ring allreduce's simulated time on `t` at latency 0.
template <class Topo>
double ring_on(const Topo& t) {
  const auto s = alg::ring{}.plan(t, {count, 0});
  return dssync::sim::simulate(s, t, no_latency()).completion_time;
}

}  // namespace

TEST_SUITE("sim") {

TEST_CASE("BML figures: BCube(3,2) takes 6+2+2+6 = 16 T_C = 8/9 T_F, stage by stage") {
  const topo::bcube t(3, 2, link8);
  const auto s = alg::bcube{}.plan(t, {count, 0});
  REQUIRE(dssync::verify(s).ok);
  const auto res = dssync::sim::simulate(s, t, no_latency(true));
  const double T_C = T_F / 18;
  CHECK(res.completion_time == doctest::Approx(16 * T_C).epsilon(0.01));
  CHECK(res.completion_time == doctest::Approx(8.0 / 9 * T_F).epsilon(0.01));
  // Each stage is n-1 = 2 sends and 2 receives per channel: steps 4j..4j+3 are stage j (aggregation 1,
  // aggregation 2, broadcast 1, broadcast 2). A stage ends when its last receive, on any server and
  // channel, is done.
  std::vector<double> stage_end(4, 0.0);
  for (const auto& sl : res.trace.slices) {
    const std::size_t stage = sl.step / 4;
    REQUIRE(stage < stage_end.size());
    stage_end[stage] = std::max(stage_end[stage], sl.end);
  }
  CHECK(stage_end[0] == doctest::Approx(6 * T_C).epsilon(0.01));   // aggregation 1: 6 T_C
  CHECK(stage_end[1] == doctest::Approx(8 * T_C).epsilon(0.01));   // aggregation 2: 2 T_C
  CHECK(stage_end[2] == doctest::Approx(10 * T_C).epsilon(0.01));  // broadcast 1: 2 T_C
  CHECK(stage_end[3] == doctest::Approx(16 * T_C).epsilon(0.01));  // broadcast 2: 6 T_C
  // Every server port carries 2(N-1)/(kN) S = 8/9 S and is busy the whole time.
  for (const auto& l : res.links) {
    INFO(l.label);
    CHECK(l.bytes == doctest::Approx(8.0 / 9 * S).epsilon(0.01));
    CHECK(l.utilization == doctest::Approx(1.0).epsilon(0.01));
  }
}

TEST_CASE("BML figures: Table II, BML = 2(N-1)/(kN) T_F on BCube(3,2), (2,3), (4,2), (3,3)") {
  struct shape {
    int n, k;
  };
  for (const shape sh : {shape{3, 2}, shape{2, 3}, shape{4, 2}, shape{3, 3}}) {
    const topo::bcube t(sh.n, sh.k, link8);
    const int N = t.workers();
    INFO("BCube(" << sh.n << "," << sh.k << "), N = " << N);
    const double time = bml(sh.n, sh.k);
    const double ratio = 2.0 * (N - 1) / (sh.k * N);
    CHECK(time / T_F == doctest::Approx(ratio).epsilon(0.01));
    // The cost model's closed form, and the allreduce bound with k NICs of B per server.
    CHECK(alg::bml_time(N, sh.k, S, alg::worker_link_params(t)) == doctest::Approx(time).epsilon(0.01));
    CHECK(2.0 * (N - 1) / N * S / (sh.k * B) == doctest::Approx(time).epsilon(0.01));
    // Table II's Fat-Tree on the same N servers and link speed: ring over a non-blocking switch.
    const double fat = ring_on(topo::star(N, link8));
    CHECK(fat / T_F == doctest::Approx(2.0 * (N - 1) / N).epsilon(0.01));
    CHECK(time / fat == doctest::Approx(1.0 / sh.k).epsilon(0.01));
    MESSAGE("BCube(" << sh.n << "," << sh.k << "): N = " << N << ", BML = " << time / T_F
                     << " T_F (2(N-1)/(kN) = " << ratio << "), Fat-Tree = " << fat / T_F
                     << " T_F, BML/Fat-Tree = " << time / fat);
  }
}

TEST_CASE("BML figures: Fat-Tree, ring over fat_tree(4) (16 hosts) = 2(N-1)/N T_F, BML on BCube(4,2) is 1/k of it") {
  const topo::fat_tree ft(4, link8);
  REQUIRE(ft.workers() == 16);
  const double fat = ring_on(ft);
  CHECK(fat / T_F == doctest::Approx(2.0 * 15 / 16).epsilon(0.01));
  const double time = bml(4, 2);
  CHECK(time / T_F == doctest::Approx(2.0 * 15 / (2 * 16)).epsilon(0.01));
  CHECK(time / fat == doctest::Approx(0.5).epsilon(0.01));
  MESSAGE("fat_tree(4): ring = " << fat / T_F << " T_F; BCube(4,2): BML = " << time / T_F
                                 << " T_F; BML/Fat-Tree = " << time / fat);
}

TEST_CASE("BML figures: BCube(3,2) with [0,0] failed takes 6+2+1+1+2+6 = 18 T_C = 9/8 T_F in lockstep") {
  const topo::bcube t(3, 2, link8);
  const std::vector<int> failed{0};
  const auto s = alg::bcube{}.plan_without(t, failed, {count, 0});
  REQUIRE(s.world_size == 8);
  const auto v = dssync::verify(s);
  INFO(v.message);
  REQUIRE(v.ok);
  auto o = no_latency(true);
  o.lockstep = true;
  const auto r = dssync::sim::simulate(s, t, o);
  const double T_C = T_F / 16;
  CHECK(r.completion_time == doctest::Approx(18 * T_C).epsilon(0.01));
  CHECK(r.completion_time == doctest::Approx(9.0 / 8.0 * T_F).epsilon(0.01));
  // Stage by stage: when the last message of each stage is consumed.
  std::vector<double> end(6, 0.0);
  for (const auto& m : r.trace.messages) {
    const auto st = s.ranks[static_cast<std::size_t>(m.src)].channels[m.channel].steps[m.step].stage;
    REQUIRE(st < 6);
    end[st] = std::max(end[st], m.consumed);
  }
  const double expect[6] = {6, 8, 9, 10, 12, 18};
  for (std::size_t i = 0; i < 6; ++i) {
    CAPTURE(i);
    CHECK(end[i] / T_C == doctest::Approx(expect[i]).epsilon(0.01));
  }
  // Free-running. The servers of the short groups ([0,1] and [0,2] on channel 0, [1,0] and [2,0] on
  // channel 1) finish aggregation 1 after 4·T_C; their aggregation-2 sends wait for a fragment of the
  // same piece from a full group's server, so they do not share ports with the full groups' last
  // aggregation-1 transfers: aggregation ends at 8·T_C as in lockstep (10·T_C without the gates).
  const auto f = dssync::sim::simulate(s, t, no_latency(true));
  std::vector<double> free_end(6, 0.0);
  for (const auto& m : f.trace.messages) {
    const auto st = s.ranks[static_cast<std::size_t>(m.src)].channels[m.channel].steps[m.step].stage;
    free_end[st] = std::max(free_end[st], m.consumed);
  }
  CHECK(free_end[1] / T_C == doctest::Approx(8).epsilon(0.01));
  // The broadcast still runs ahead: an owner whose piece needs no relay broadcasts it while the relays
  // run, and the short groups' servers start broadcast 2 early. No data dependency can hold a final
  // value back, so the plan cannot gate it (bench/README.md): 21.1·T_C = 1.32·T_F, against 23.1·T_C =
  // 1.44·T_F before the gates.
  const double free = f.completion_time;
  CHECK(free >= r.completion_time * 0.99);
  CHECK(free / T_F == doctest::Approx(1.3198).epsilon(0.01));
  CHECK(free / T_F < 1.35);
  MESSAGE("BCube(3,2) without [0,0]: lockstep " << r.completion_time / T_F << " T_F, free-running " << free / T_F
                                                 << " T_F");
}

TEST_CASE("BML figures: lockstep leaves the failure-free BCube(3,2) at 16 T_C") {
  const topo::bcube t(3, 2, link8);
  const auto s = alg::bcube{}.plan(t, {count, 0});
  auto o = no_latency();
  o.lockstep = true;
  CHECK(dssync::sim::simulate(s, t, o).completion_time == doctest::Approx(16 * T_F / 18).epsilon(0.01));
}

}  // TEST_SUITE
