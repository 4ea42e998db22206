// Topology detection (seed 000): the probe's rounds, its measurements on the simulated transport
// (configured bandwidths and latencies recovered, racks clustered), contention detection of a
// background flow on a rack uplink and of a capped NIC, attribution on synthetic matrices, and the
// probe over the in-process transport.

#include <doctest/doctest.h>

#include <dssync/sim/scenario.hpp>
#include <dssync/topology/probe.hpp>
#include <dssync/topology/racks.hpp>
#include <dssync/topology/star.hpp>
#include <dssync/transport/inproc.hpp>
#include <dssync/transport/sim.hpp>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "test_support.hpp"

namespace topo = dssync::topology;
namespace tsim = dssync::transport::sim;
using dssync::topology::traffic_direction;
using namespace std::chrono_literals;

namespace {

constexpr double intra_bw = 12.5e9;   // 100 Gbit/s
constexpr double uplink_bw = 3.125e9; // 25 Gbit/s
constexpr double intra_lat = 1e-6, uplink_lat = 2e-6;

topo::leaf_spine racks(int c, int g) { return topo::leaf_spine(c, g, {intra_bw, intra_lat}, {uplink_bw, uplink_lat}); }

topo::probe_options probe_opts(bool sequential, int repeats = 1) {
  topo::probe_options o;
  o.large_bytes = std::size_t{1} << 20;
  o.repeats = repeats;
  o.sequential = sequential;
  o.timeout = 30s;
  return o;
}

/// Runs `measure` on every rank of `w` `times` times, with `between(k, comm)` before probe k; returns
/// rank 0's matrices and checks that every rank got the same ones.
template <class Between>
std::vector<topo::probe_matrix> probe(tsim::world& w, int times, const topo::probe_options& o, Between&& between) {
  const int n = w.size();
  std::vector<std::vector<topo::probe_matrix>> got(static_cast<std::size_t>(n));
  w.run([&](tsim::communicator& c) {
    for (int k = 0; k < times; ++k) {
      between(k, c);
      got[static_cast<std::size_t>(c.rank())].push_back(topo::measure(c, o));
    }
  });
  for (int r = 1; r < n; ++r)
    for (int k = 0; k < times; ++k) {
      REQUIRE(got[static_cast<std::size_t>(r)][static_cast<std::size_t>(k)].bandwidth ==
              got[0][static_cast<std::size_t>(k)].bandwidth);
      REQUIRE(got[static_cast<std::size_t>(r)][static_cast<std::size_t>(k)].latency == got[0][static_cast<std::size_t>(k)].latency);
    }
  return got[0];
}

std::vector<topo::probe_matrix> probe(tsim::world& w, int times, const topo::probe_options& o) {
  return probe(w, times, o, [](int, tsim::communicator&) {});
}

/// A synthetic matrix: bandwidth `in` within racks of `g`, `across` between them, latency 1 us.
topo::probe_matrix synthetic(int n, int g, double in, double across) {
  topo::probe_matrix m(n);
  for (int a = 0; a < n; ++a)
    for (int b = 0; b < n; ++b)
      if (a != b) {
        m.bandwidth[m.index(a, b)] = a / g == b / g ? in : across;
        m.latency[m.index(a, b)] = 1e-6;
      }
  return m;
}

}  // namespace

TEST_SUITE("topology") {

TEST_CASE("probe rounds: the tournament meets every pair once, no rank twice in a round; sequential is one pair a round") {
  for (int n = 2; n <= 9; ++n) {
    CAPTURE(n);
    for (bool sequential : {false, true}) {
      const auto rounds = dssync::detail::probe_rounds(n, sequential);
      CHECK(rounds.size() == static_cast<std::size_t>(sequential ? n * (n - 1) / 2 : (n % 2 == 0 ? n - 1 : n)));
      std::set<std::pair<int, int>> met;
      for (const auto& r : rounds) {
        int busy = 0;
        for (int a = 0; a < n; ++a) {
          const int b = r[static_cast<std::size_t>(a)];
          if (b < 0) continue;
          ++busy;
          REQUIRE(b != a);
          REQUIRE(r[static_cast<std::size_t>(b)] == a);
          if (a < b) CHECK(met.insert({a, b}).second);
        }
        if (sequential) CHECK(busy == 2);
        else CHECK(busy >= n - 1);
      }
      CHECK(met.size() == static_cast<std::size_t>(n * (n - 1) / 2));
    }
  }
}

TEST_CASE("probe on transport::sim recovers the configured bandwidths and latencies within 5 % and the racks exactly") {
  const int C = 3, G = 3, n = C * G;
  tsim::world w(racks(C, G));
  const auto ms = probe(w, 2, probe_opts(true, 3));  // sequential (every pair alone), then again
  const auto& m = ms[0];
  CHECK(m.size == n);
  CHECK(m.virtual_clock);
  CHECK(m.finish > m.start);
  for (int a = 0; a < n; ++a)
    for (int b = 0; b < n; ++b) {
      if (a == b) {
        CHECK(m.bw(a, b) == 0);
        continue;
      }
      const bool same = a / G == b / G;
      INFO("pair " << a << "->" << b);
      // Within a rack a pair crosses two worker links; across racks also two uplinks (the bottleneck).
      CHECK(m.bw(a, b) == doctest::Approx(same ? intra_bw : uplink_bw).epsilon(0.05));
      CHECK(m.lat(a, b) == doctest::Approx(same ? 2 * intra_lat : 2 * intra_lat + 2 * uplink_lat).epsilon(0.05));
    }
  for (std::size_t i = 0; i < m.bandwidth.size(); ++i)  // the same network measures the same (to rounding)
    CHECK(ms[1].bandwidth[i] == doctest::Approx(m.bandwidth[i]).epsilon(1e-6));
  const auto cl = topo::cluster_racks(m);
  CHECK(cl.racks == racks(C, G).racks());
  CHECK(cl.metric == "bandwidth");
  CHECK(cl.gap == doctest::Approx(intra_bw / uplink_bw).epsilon(0.05));
  for (int r = 0; r < n; ++r) CHECK(cl.rack_of[static_cast<std::size_t>(r)] == r / G);

  // The tournament measures pairs concurrently: pairs inside a rack share no link and measure their full
  // bandwidth; pairs across racks may share uplinks in a round and measure less. Racks come out the same.
  tsim::world w2(racks(C, G));
  const auto mc = probe(w2, 1, probe_opts(false))[0];
  for (int a = 0; a < n; ++a)
    for (int b = 0; b < n; ++b)
      if (a != b) {
        INFO("pair " << a << "->" << b);
        if (a / G == b / G) CHECK(mc.bw(a, b) == doctest::Approx(intra_bw).epsilon(0.05));
        else CHECK(mc.bw(a, b) <= uplink_bw * 1.05);
      }
  CHECK(topo::cluster_racks(mc).racks == racks(C, G).racks());
  CHECK(mc.finish - mc.start < m.finish - m.start);  // fewer rounds
}

TEST_CASE("cluster_racks: latency tiers when bandwidths are flat; one rack when nothing differs") {
  // A non-blocking leaf-spine (uplinks as fast as the rack's workers together): only latency tells racks apart.
  const topo::leaf_spine flat(2, 3, {intra_bw, intra_lat}, {3 * intra_bw, 5e-6});
  tsim::world w(flat);
  const auto m = probe(w, 1, probe_opts(true))[0];
  const auto cl = topo::cluster_racks(m);
  CHECK(cl.metric == "latency");
  CHECK(cl.racks == flat.racks());
  // A star: one tier.
  tsim::world s(topo::star(4, {intra_bw, intra_lat}));
  const auto one = topo::cluster_racks(probe(s, 1, probe_opts(false))[0]);
  CHECK(one.metric == "none");
  CHECK(one.racks == std::vector<std::vector<int>>{{0, 1, 2, 3}});
  // Synthetic: two tiers by bandwidth.
  const auto two = topo::cluster_racks(synthetic(6, 2, 10e9, 1e9));
  CHECK(two.racks == std::vector<std::vector<int>>{{0, 1}, {2, 3}, {4, 5}});
}

TEST_CASE("contention on transport::sim: a background flow on a rack uplink and a capped NIC are detected") {
  // leaf_spine(3, 3): racks {0,1,2}, {3,4,5}, {6,7,8}; 100 Gbit/s worker links, 25 Gbit/s uplinks.
  //  t in [0, 1): 3 baseline probes.
  //  t in [1, 2): a background flow 0 -> 3 at 12 Gbit/s: it shares rack 0's uplink (tor0 -> spine) and
  //               rack 1's downlink (spine -> tor1); pairs through them get 13 of 25 Gbit/s. It takes
  //               only 12 % of worker 0's and worker 3's NICs, above the detection threshold.
  //  t in [2, 3): worker 5's NIC is capped at 10 Gbit/s (another task shares it).
  //  t >= 3:      all clear.
  const int C = 3, G = 3;
  tsim::world_options o;
  o.script = dssync::sim::scenario::parse(
      "at 1 background 0->3 rate 12Gbps id tenant\n"
      "at 2 stop tenant\n"
      "at 2 nic 5 cap 10Gbps\n"
      "at 3 nic 5 clear\n");
  tsim::world w(racks(C, G), o);
  const double phase_start[] = {0, 0, 0, 1, 1, 2, 2, 3, 3};
  const auto ms = probe(w, 9, probe_opts(true), [&](int k, tsim::communicator& c) {
    c.sleep_until(phase_start[k]);
  });
  REQUIRE(ms.size() == 9);
  CHECK(ms[2].finish < 1.0);  // the baseline ends before the background flow starts
  CHECK(ms[4].finish < 2.0);
  CHECK(ms[6].finish < 3.0);

  topo::contention_options co;
  co.window = 2;
  topo::contention_detector d(topo::cluster_racks(ms[0]).racks, co);
  CHECK(d.racks() == racks(C, G).racks());
  for (int k = 0; k < 3; ++k) d.add(ms[static_cast<std::size_t>(k)]);
  CHECK(d.report().empty());
  CHECK(d.usual(0, 3) == doctest::Approx(uplink_bw).epsilon(0.01));

  // The background flow.
  d.add(ms[3]);
  CHECK_MESSAGE(d.report().empty(), "one slow probe is not yet a window: " << to_string(d.report()));
  d.add(ms[4]);
  auto r = d.report();
  INFO("background window: " << to_string(r));
  CHECK(r.uplink(0, traffic_direction::out));
  CHECK(r.uplink(1, traffic_direction::in));
  CHECK_FALSE(r.uplink(0, traffic_direction::in));
  CHECK_FALSE(r.uplink(1, traffic_direction::out));
  CHECK_FALSE(r.uplink(2));
  CHECK(r.uplinks.size() == 2);
  CHECK(r.nics.empty());
  CHECK(r.links.empty());
  for (const auto& p : r.pairs) {
    // Exactly the pairs that leave rack 0 or enter rack 1 across racks.
    CHECK(p.from / G != p.to / G);
    CHECK((p.from / G == 0 || p.to / G == 1));
    CHECK(p.ratio() == doctest::Approx(13.0 / 25).epsilon(0.05));
  }
  CHECK(r.pairs.size() == 3u * 6 + 3u * 3);  // 18 pairs out of rack 0, 9 more from rack 2 into rack 1

  // The NIC cap.
  d.add(ms[5]);
  d.add(ms[6]);
  r = d.report();
  INFO("NIC window: " << to_string(r));
  CHECK(r.nic(5, traffic_direction::out));
  CHECK(r.nic(5, traffic_direction::in));
  CHECK(r.nics.size() == 1);
  CHECK(r.uplinks.empty());
  CHECK(r.links.empty());
  for (const auto& p : r.pairs) CHECK((p.from == 5 || p.to == 5));
  CHECK(r.pairs.size() == 2u * 8);

  // All clear.
  d.add(ms[7]);
  d.add(ms[8]);
  CHECK_MESSAGE(d.report().empty(), to_string(d.report()));
  CHECK(d.probes() == 9);
}

TEST_CASE("contention_detector: attribution on synthetic matrices") {
  const int n = 8, g = 4;  // racks {0..3}, {4..7}
  const auto base = synthetic(n, g, 10e9, 2e9);
  topo::contention_options co;
  co.window = 1;
  auto detect = [&](const topo::probe_matrix& now) {
    topo::contention_detector d(base, co);
    d.add(now);
    return d.report();
  };
  SUBCASE("one slow directed pair is a link") {
    auto m = base;
    m.bandwidth[m.index(1, 2)] = 1e9;
    const auto r = detect(m);
    REQUIRE(r.links.size() == 1);
    CHECK(r.links[0].from == 1);
    CHECK(r.links[0].to == 2);
    CHECK(r.links[0].ratio() == doctest::Approx(0.1));
    CHECK(r.nics.empty());
    CHECK(r.uplinks.empty());
    CHECK(to_string(r) == "link 1->2 (0.1x)");
  }
  SUBCASE("a NIC slow on its transmit side only") {
    auto m = base;
    for (int b = 0; b < n; ++b)
      if (b != 6) m.bandwidth[m.index(6, b)] *= 0.3;
    const auto r = detect(m);
    CHECK(r.nic(6, traffic_direction::out));
    CHECK_FALSE(r.nic(6, traffic_direction::in));
    CHECK(r.uplinks.empty());
    CHECK(r.links.empty());
  }
  SUBCASE("a slow uplink does not make its workers' NICs look slow") {
    auto m = base;
    for (int a = 0; a < g; ++a)
      for (int b = g; b < n; ++b) m.bandwidth[m.index(a, b)] *= 0.5;
    const auto r = detect(m);
    CHECK(r.uplink(0, traffic_direction::out));
    CHECK(r.uplink(1, traffic_direction::in));  // with two racks, rack 0's uplink and rack 1's downlink carry the same pairs
    CHECK(r.nics.empty());
    CHECK(r.links.empty());
  }
  SUBCASE("no window yet, no report; bad arguments") {
    topo::contention_detector d(base, co);
    CHECK(d.report().empty());
    CHECK(std::isnan(d.usual(0, 1)));
    CHECK(to_string(d.report()) == "no contention");
    CHECK_THROWS_AS(d.add(topo::probe_matrix(3)), dssync::invalid_argument);
    CHECK_THROWS_AS(topo::contention_detector({{0, 1}, {1, 2}}), dssync::invalid_argument);
    topo::contention_options bad;
    bad.threshold = 1.5;
    CHECK_THROWS_AS(topo::contention_detector({{0, 1}}, bad), dssync::invalid_argument);
    CHECK_THROWS_AS((void)base.bw(0, 8), dssync::invalid_argument);
  }
}

TEST_CASE("probe over the in-process transport: a full matrix on every rank, steady clock; bad options") {
  dssync::transport::inproc::world w(3);
  std::vector<topo::probe_matrix> got(3);
  topo::probe_options o;
  o.large_bytes = 1 << 16;
  o.repeats = 1;
  w.run([&](auto& c) { got[static_cast<std::size_t>(c.rank())] = topo::measure(c, o); });
  for (int r = 0; r < 3; ++r) {
    const auto& m = got[static_cast<std::size_t>(r)];
    CHECK_FALSE(m.virtual_clock);
    CHECK(m.bandwidth == got[0].bandwidth);
    for (int a = 0; a < 3; ++a)
      for (int b = 0; b < 3; ++b)
        if (a != b) {
          CHECK(m.bw(a, b) > 0);  // +inf when the zero-copy transfer was too quick to time
          CHECK(m.lat(a, b) >= 0);
        }
  }
  auto errs = w.run_collect([&](auto& c) {
    topo::probe_options bad;
    bad.repeats = 0;
    (void)topo::measure(c, bad);
  });
  for (const auto& e : errs) CHECK(dssync_test::holds<dssync::invalid_argument>(e));
  // One rank: nothing to measure.
  dssync::transport::inproc::world one(1);
  int size = 0;
  one.run([&](auto& c) { size = topo::measure(c).size; });
  CHECK(size == 1);
}

}  // TEST_SUITE
