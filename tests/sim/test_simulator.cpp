// The simulator: ring allreduce matches the alpha-beta formula on rings, stars and full meshes; the
// direct policy's phases; background flows, NIC caps and link changes from scenarios; rule 3; several
// channels; reduction cost; utilization; and errors for schedules that cannot finish.

#include <doctest/doctest.h>

#include <dssync/algorithms/direct.hpp>
#include <dssync/algorithms/ring.hpp>
#include <dssync/core/verifier.hpp>
#include <dssync/sim/simulator.hpp>
#include <dssync/topology/full_mesh.hpp>
#include <dssync/topology/network.hpp>
#include <dssync/topology/ring.hpp>

#include <cmath>
#include <vector>

#include "test_support.hpp"

using dssync::range;
using dssync::schedule;
using dssync::step;
using dssync::step_kind;
using dssync::sim::sim_options;
using dssync::sim::simulate;
namespace topo = dssync::topology;
namespace algo = dssync::algorithms;

namespace {

constexpr double B = 12.5e9;  // 100 Gbit/s
constexpr double lat = 1e-6;

/// n workers, each cabled to one switch (vertex n): worker -> switch -> worker routes, so the
/// per-message latency is two hops.
topo::network star(int n, topo::link l = {B, lat}) {
  topo::network g;
  topo::add_workers(g, n);
  const auto sw = topo::add_switch(g, "sw");
  for (int r = 0; r < n; ++r) topo::add_cable(g, static_cast<std::size_t>(r), sw, l);
  return g;
}

/// 2(N-1)α + 2(N-1)/N·S·β.
double ring_formula(int n, double bytes, double alpha, double bw) {
  return 2.0 * (n - 1) * alpha + 2.0 * (n - 1) / n * bytes / bw;
}

schedule hand(int n, std::size_t count, std::size_t channels = 1) {
  schedule s;
  s.policy = "hand";
  s.world_size = n;
  s.count = count;
  s.ranks.resize(static_cast<std::size_t>(n));
  for (auto& r : s.ranks) r.channels.resize(channels);
  return s;
}
std::vector<step>& steps(schedule& s, int r, std::size_t c = 0) {
  return s.ranks[static_cast<std::size_t>(r)].channels[c].steps;
}

}  // namespace

TEST_SUITE("sim") {

TEST_CASE("simulate: ring allreduce on topology::ring matches 2(N-1)a + 2(N-1)/N S b") {
  for (int n : {2, 3, 4, 8, 16, 33}) {
    for (double mib : {1.0 / 64, 1.0, 64.0}) {
      const auto count = static_cast<std::size_t>(mib * 1024 * 1024 / 4) / static_cast<std::size_t>(n) *
                         static_cast<std::size_t>(n);
      const double bytes = static_cast<double>(count) * 4;
      const auto s = algo::ring::build(n, count);
      const auto res = simulate(s, topo::ring(n, {B, lat}));
      const double want = ring_formula(n, bytes, lat, B);
      INFO("N = " << n << ", S = " << bytes);
      CHECK(res.completion_time == doctest::Approx(want).epsilon(1e-9));
      CHECK(res.flows == 2u * static_cast<std::size_t>(n) * static_cast<std::size_t>(n - 1));
      REQUIRE(res.rank_finish.size() == static_cast<std::size_t>(n));
      for (double f : res.rank_finish) CHECK(f <= res.finish);
    }
  }
}

TEST_CASE("simulate: ring allreduce on a star and a full mesh matches the formula (alpha = path latency)") {
  for (int n : {3, 5, 8, 24}) {
    for (double bytes : {4096.0 * 3 * 5 * 8, 48.0 * 1024 * 1024}) {
      const auto count = static_cast<std::size_t>(bytes / 4) / static_cast<std::size_t>(n) * static_cast<std::size_t>(n);
      const double S = static_cast<double>(count) * 4;
      const auto s = algo::ring::build(n, count);
      INFO("N = " << n << ", S = " << S);
      const auto on_star = simulate(s, star(n));
      CHECK(on_star.completion_time == doctest::Approx(ring_formula(n, S, 2 * lat, B)).epsilon(0.01));
      const auto on_mesh = simulate(s, topo::full_mesh(n, {B, lat}));
      CHECK(on_mesh.completion_time == doctest::Approx(ring_formula(n, S, lat, B)).epsilon(0.01));
    }
  }
}

TEST_CASE("simulate: the latency override replaces every link latency") {
  const int n = 6;
  const auto s = algo::ring::build(n, 6 * 1000);
  sim_options o;
  o.latency = 5e-6;
  const auto res = simulate(s, star(n), o);
  CHECK(res.completion_time == doctest::Approx(ring_formula(n, 6 * 1000 * 4, 2 * 5e-6, B)).epsilon(1e-9));
  for (const auto& l : res.links) CHECK(l.latency == 5e-6);
  o.latency = 0.0;
  const auto zero = simulate(s, star(n), o);
  CHECK(zero.completion_time == doctest::Approx(ring_formula(n, 6 * 1000 * 4, 0, B)).epsilon(1e-9));
}

TEST_CASE("simulate: direct allreduce costs two phases") {
  const int n = 8;
  const std::size_t count = 8 * 4096;
  const double S = count * 4.0;
  const auto s = algo::direct::build(n, count);
  // Full mesh: every message has its own link, so each phase is one chunk time plus one latency.
  const auto mesh = simulate(s, topo::full_mesh(n, {B, lat}));
  CHECK(mesh.completion_time == doctest::Approx(2 * (S / n / B + lat)).epsilon(1e-6));
  // Star: a rank's N-1 messages of a phase share its uplink (and the peers' downlinks) fairly.
  const auto st = simulate(s, star(n));
  CHECK(st.completion_time == doctest::Approx(2 * ((n - 1) * S / n / B + 2 * lat)).epsilon(1e-6));
}

TEST_CASE("simulate: background flows halve a ring's bandwidth on every contended link") {
  // On a star, background flows r -> r+2 put one extra flow on every uplink and every downlink, so each
  // ring message gets half its link: the formula with B/2.
  const int n = 6;
  const std::size_t count = 6 * 100000;
  const double S = count * 4.0;
  const auto s = algo::ring::build(n, count);
  sim_options o;
  for (int r = 0; r < n; ++r) o.script.background(0, r, (r + 2) % n, "bg" + std::to_string(r));
  const auto res = simulate(s, star(n), o);
  CHECK(res.background_flows == static_cast<std::size_t>(n));
  CHECK(res.completion_time == doctest::Approx(ring_formula(n, S, 2 * lat, B / 2)).epsilon(1e-6));
  // The links are fully used: half by the ring, half by the background.
  for (const auto& l : res.links) CHECK(l.utilization == doctest::Approx(1.0).epsilon(1e-6));
  // A single message behind one background flow takes twice as long; behind a capped one, 4/3.
  auto one = hand(2, 1000000);
  steps(one, 0).push_back({step_kind::send, 1, {0, 1000000}});
  steps(one, 1).push_back({step_kind::recv_copy, 0, {0, 1000000}});
  sim_options bg;
  bg.script.background(0, 0, 1, "x");
  CHECK(simulate(one, star(2), bg).completion_time == doctest::Approx(2 * 4e6 / B + 2 * lat).epsilon(1e-9));
  sim_options capped;
  capped.script.background(0, 0, 1, "x", B / 4);
  CHECK(simulate(one, star(2), capped).completion_time == doctest::Approx(4e6 / (0.75 * B) + 2 * lat).epsilon(1e-9));
}

TEST_CASE("simulate: scenario NIC caps and link changes act at their times") {
  const double S = 4e6;
  auto one = hand(3, 1000000);
  steps(one, 0).push_back({step_kind::send, 1, {0, 1000000}});
  steps(one, 1).push_back({step_kind::recv_copy, 0, {0, 1000000}});
  const double full = S / B;
  {
    sim_options o;
    o.script = dssync::sim::scenario::parse("at 0 nic 0 cap 25Gbps");
    CHECK(simulate(one, star(3), o).completion_time == doctest::Approx(S / (B / 4) + 2 * lat).epsilon(1e-9));
    // The receiver's NIC limits too.
    o.script = dssync::sim::scenario::parse("at 0 nic 1 cap 50Gbps");
    CHECK(simulate(one, star(3), o).completion_time == doctest::Approx(S / (B / 2) + 2 * lat).epsilon(1e-9));
    // A third rank's NIC does not.
    o.script = dssync::sim::scenario::parse("at 0 nic 2 cap 1Gbps");
    CHECK(simulate(one, star(3), o).completion_time == doctest::Approx(full + 2 * lat).epsilon(1e-9));
  }
  {
    // Capped to a quarter, cleared halfway through the nominal time: a quarter of the bytes moved at
    // B/4 during full/2... i.e. S/8 moved, the other 7S/8 at B.
    sim_options o;
    o.script.nic_cap(0, 0, B / 4).clear_nic_cap(full / 2, 0);
    CHECK(simulate(one, star(3), o).completion_time ==
          doctest::Approx(full / 2 + (S - S / 8) / B + 2 * lat).epsilon(1e-9));
  }
  {
    // The uplink drops to half its bandwidth halfway through.
    sim_options o;
    o.script.link_bandwidth(full / 2, "w0", "sw", B / 2);
    CHECK(simulate(one, star(3), o).completion_time == doctest::Approx(full / 2 + (S / 2) / (B / 2) + 2 * lat).epsilon(1e-9));
  }
  {
    // A background flow that stops halfway; the collective starts at t = 1 while it already runs.
    sim_options o;
    o.start_time = 1.0;
    o.script = dssync::sim::scenario::parse("at 0 background 0->1 id hog; at " + std::to_string(1.0 + full) + " stop hog");
    const auto res = simulate(one, star(3), o);
    CHECK(res.start == 1.0);
    // During `full` seconds at B/2 half the bytes move, the rest at B.
    CHECK(res.completion_time == doctest::Approx(full + (S / 2) / B + 2 * lat).epsilon(1e-6));
  }
}

TEST_CASE("simulate: rule 3 makes a receive wait until an overlapping send was consumed") {
  // Rank 0 sends [0,100) to rank 1 and then receives [0,100) from rank 2. Rank 1 receives rank 0's
  // message only after a long message from rank 2, so rank 0's receive must wait for that.
  auto s = hand(3, 1000000);
  steps(s, 0) = {{step_kind::send, 1, {0, 100}}, {step_kind::recv_copy, 2, {0, 100}}};
  steps(s, 2) = {{step_kind::send, 1, {0, 1000000}}, {step_kind::send, 0, {0, 100}}};
  steps(s, 1) = {{step_kind::recv_copy, 2, {0, 1000000}}, {step_kind::recv_copy, 0, {0, 100}}};
  sim_options o;
  o.record_timeline = true;
  const auto res = simulate(s, topo::full_mesh(3, {B, lat}), o);
  const double long_msg = 4e6 / B + lat;
  CHECK(res.rank_finish[1] == doctest::Approx(long_msg));
  CHECK(res.rank_finish[0] == doctest::Approx(long_msg));  // not 400/B + lat
  // Rank 0's finish includes the consumption of its send (rule 5) and its receive waited for it.
  bool seen = false;
  for (const auto& sl : res.trace.slices)
    if (sl.rank == 0 && sl.kind == step_kind::recv_copy) {
      CHECK(sl.end == doctest::Approx(long_msg));
      seen = true;
    }
  CHECK(seen);
}

TEST_CASE("simulate: a rank finishes when its sends are consumed (rule 5)") {
  auto s = hand(3, 1000);
  steps(s, 0) = {{step_kind::send, 1, {0, 10}}};
  steps(s, 2) = {{step_kind::send, 1, {0, 1000}}};
  steps(s, 1) = {{step_kind::recv_copy, 2, {0, 1000}}, {step_kind::recv_copy, 0, {10, 10}}};
  const auto res = simulate(s, topo::full_mesh(3, {1e6, 0}));
  CHECK(res.rank_finish[2] == doctest::Approx(4e-3));
  CHECK(res.rank_finish[0] == doctest::Approx(4e-3));  // its message is consumed after the long one
  CHECK(res.rank_finish[1] == doctest::Approx(4e-3));
}

TEST_CASE("simulate: channels run concurrently") {
  // Rank 0 sends to 1 on channel 0 and to 2 on channel 1: separate links, so the time is one message,
  // not two; on one channel with the receiver's ordering the same.
  auto s = hand(3, 2000, 2);
  steps(s, 0, 0) = {{step_kind::send, 1, {0, 1000}}};
  steps(s, 0, 1) = {{step_kind::send, 2, {1000, 1000}}};
  steps(s, 1, 0) = {{step_kind::recv_copy, 0, {0, 1000}}};
  steps(s, 2, 1) = {{step_kind::recv_copy, 0, {1000, 1000}}};
  const auto res = simulate(s, topo::full_mesh(3, {1e6, 0}));
  CHECK(res.completion_time == doctest::Approx(4e-3));
  // Through one uplink of a star they share it.
  const auto shared = simulate(s, star(3, {1e6, 0}));
  CHECK(shared.completion_time == doctest::Approx(8e-3));
}

TEST_CASE("simulate: local reduction at a finite rate delays each reduce-scatter step") {
  const int n = 4;
  const std::size_t count = 4 * 250000;
  const double S = count * 4.0, chunk = S / n;
  const auto s = algo::ring::build(n, count);
  sim_options o;
  o.reduce_bytes_per_s = 50e9;
  const auto res = simulate(s, topo::ring(n, {B, lat}), o);
  CHECK(res.completion_time == doctest::Approx(ring_formula(n, S, lat, B) + (n - 1) * chunk / 50e9).epsilon(1e-9));
}

TEST_CASE("simulate: link utilization and per-link bytes of a ring") {
  const int n = 5;
  const std::size_t count = 5 * 200000;
  const double S = count * 4.0;
  const auto s = algo::ring::build(n, count);
  const auto res = simulate(s, topo::ring(n, {B, lat}));
  REQUIRE(res.links.size() == 2u * n);
  std::size_t used = 0;
  for (const auto& l : res.links) {
    if (l.bytes == 0) {
      CHECK(l.utilization == 0);
      continue;
    }
    ++used;  // the forward direction r -> r+1
    CHECK(l.bytes == doctest::Approx(2.0 * (n - 1) / n * S));
    CHECK(l.utilization == doctest::Approx(l.bytes / (B * res.completion_time)));
    CHECK(l.busy_time == doctest::Approx(2.0 * (n - 1) * (S / n / B)));
    CHECK(l.label.find("->") != std::string::npos);
  }
  CHECK(used == static_cast<std::size_t>(n));
  REQUIRE(res.busiest() != nullptr);
  CHECK(res.busiest()->bytes > 0);
}

TEST_CASE("simulate: start time, timeline shape and spread ECMP") {
  const int n = 4;
  const auto s = algo::ring::build(n, 4000);
  sim_options o;
  o.start_time = 2.5;
  o.record_timeline = true;
  const auto res = simulate(s, star(n), o);
  CHECK(res.start == 2.5);
  CHECK(res.finish == doctest::Approx(2.5 + res.completion_time));
  CHECK(res.trace.slices.size() == s.step_count());
  CHECK(res.trace.messages.size() == res.flows);
  for (const auto& m : res.trace.messages) {
    CHECK(m.post >= 2.5);
    CHECK(m.transmitted >= m.post);
    CHECK(m.arrival >= m.transmitted);
    CHECK(m.consumed >= m.arrival);
  }
  for (const auto& sl : res.trace.slices) CHECK(sl.end >= sl.begin);
  // Per-message ECMP on two equal paths uses both.
  topo::network g;
  topo::add_workers(g, 2);
  const auto s1 = topo::add_switch(g, "s1"), s2 = topo::add_switch(g, "s2");
  for (auto sw : {s1, s2}) {
    topo::add_cable(g, 0, sw, {B, lat});
    topo::add_cable(g, 1, sw, {B, lat});
  }
  auto many = hand(2, 64);
  for (std::size_t i = 0; i < 64; ++i) {
    steps(many, 0).push_back({step_kind::send, 1, {i, 1}});
    steps(many, 1).push_back({step_kind::recv_copy, 0, {i, 1}});
  }
  sim_options spread;
  spread.spread_messages = true;
  const auto r = simulate(many, g, spread);
  int up_used = 0;
  for (const auto& l : r.links)
    if (l.from == 0 && l.bytes > 0) ++up_used;
  CHECK(up_used == 2);
  const auto single = simulate(many, g);
  up_used = 0;
  for (const auto& l : single.links)
    if (l.from == 0 && l.bytes > 0) ++up_used;
  CHECK(up_used == 1);
}

TEST_CASE("simulate: schedules that cannot finish raise errors naming the step") {
  SUBCASE("deadlock: both ranks receive first") {
    auto s = hand(2, 10);
    steps(s, 0) = {{step_kind::recv_copy, 1, {0, 5}}, {step_kind::send, 1, {5, 5}}};
    steps(s, 1) = {{step_kind::recv_copy, 0, {5, 5}}, {step_kind::send, 0, {0, 5}}};
    try {
      (void)simulate(s, topo::full_mesh(2));
      FAIL("expected an error");
    } catch (const dssync::invalid_argument& e) {
      CHECK(dssync_test::names_rank(e.what(), 0));
      CHECK(dssync_test::contains(e.what(), "channel 0 step 0"));
      CHECK(dssync_test::contains(e.what(), "never sent"));
    }
  }
  SUBCASE("unmatched send") {
    auto s = hand(2, 10);
    steps(s, 0) = {{step_kind::send, 1, {0, 5}}};
    try {
      (void)simulate(s, topo::full_mesh(2));
      FAIL("expected an error");
    } catch (const dssync::invalid_argument& e) {
      CHECK(dssync_test::contains(e.what(), "unmatched send"));
      CHECK(dssync_test::names_rank(e.what(), 0));
    }
  }
  SUBCASE("unequal lengths") {
    auto s = hand(2, 10);
    steps(s, 0) = {{step_kind::send, 1, {0, 5}}};
    steps(s, 1) = {{step_kind::recv_copy, 0, {0, 4}}};
    CHECK_THROWS_WITH_AS((void)simulate(s, topo::full_mesh(2)), doctest::Contains("lengths differ"),
                         dssync::invalid_argument);
  }
  SUBCASE("bad peer, too few workers, unreachable rank") {
    auto s = hand(2, 10);
    steps(s, 0) = {{step_kind::send, 0, {0, 5}}};
    CHECK_THROWS_AS((void)simulate(s, topo::full_mesh(2)), dssync::invalid_argument);
    const auto ring = algo::ring::build(4, 16);
    CHECK_THROWS_AS((void)simulate(ring, topo::full_mesh(3)), dssync::invalid_argument);
    topo::network g;
    topo::add_workers(g, 4);
    topo::add_cable(g, 0, 1, {});
    CHECK_THROWS_WITH_AS((void)simulate(ring, g), doctest::Contains("unreachable"), dssync::invalid_argument);
  }
  SUBCASE("a flow stuck at zero bandwidth") {
    auto s = hand(2, 10);
    steps(s, 0) = {{step_kind::send, 1, {0, 5}}};
    steps(s, 1) = {{step_kind::recv_copy, 0, {0, 5}}};
    sim_options o;
    o.script.link_bandwidth(0, "0", "1", 0);
    CHECK_THROWS_WITH_AS((void)simulate(s, topo::full_mesh(2), o), doctest::Contains("zero bandwidth"),
                         dssync::invalid_argument);
  }
}

TEST_CASE("simulate: every verified schedule of the built-in policies finishes, for many world sizes") {
  for (int n = 1; n <= 12; ++n)
    for (std::size_t count : {std::size_t{0}, std::size_t{5}, std::size_t{1000}}) {
      for (const auto& s : {algo::ring::build(n, count), algo::direct::build(n, count)}) {
        REQUIRE(dssync::verify(s));
        const auto res = simulate(s, star(n));
        CHECK(res.completion_time >= 0);
        CHECK(res.rank_finish.size() == static_cast<std::size_t>(n));
      }
    }
}

}  // TEST_SUITE
