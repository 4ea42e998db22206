// The flow engine: max-min fair sharing on hand-made link sets, caps, latency, capacity changes,
// background flows, counters, and a property test that the incremental recomputation always equals a
// from-scratch progressive filling.

#include <doctest/doctest.h>

#include <dssync/sim/flow_engine.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <vector>

#include "test_support.hpp"

using dssync::sim::completion;
using dssync::sim::edge_id;
using dssync::sim::flow_engine;
using dssync::sim::flow_id;

namespace {

constexpr double inf = flow_engine::unlimited;

flow_engine engine(std::vector<double> caps, double latency = 0) {
  std::vector<double> lat(caps.size(), latency);
  return flow_engine(std::move(caps), std::move(lat));
}

bool near(double a, double b, double rel = 1e-9) {
  if (std::isinf(a) || std::isinf(b)) return a == b;
  return std::abs(a - b) <= rel * std::max({1.0, std::abs(a), std::abs(b)});
}

/// Max-min fair rates by textbook progressive filling: raise every unfrozen flow's rate together until
/// a link saturates or a flow reaches its cap; freeze those flows; repeat. Independent of the engine's
/// heap-based water-filling.
struct ref_flow {
  std::vector<edge_id> route;
  double cap = inf;
};
std::vector<double> reference_rates(const std::vector<double>& caps, const std::vector<ref_flow>& flows) {
  const std::size_t n = flows.size();
  std::vector<double> rate(n, 0);
  std::vector<bool> frozen(n, false);
  for (std::size_t i = 0; i < n; ++i)
    if (flows[i].route.empty()) frozen[i] = true, rate[i] = flows[i].cap;
  double level = 0;
  while (std::find(frozen.begin(), frozen.end(), false) != frozen.end()) {
    std::vector<double> used(caps.size(), 0), k(caps.size(), 0);
    for (std::size_t i = 0; i < n; ++i)
      for (edge_id e : flows[i].route) (frozen[i] ? used[e] : k[e]) += frozen[i] ? rate[i] : 1;
    double delta = inf;
    for (std::size_t e = 0; e < caps.size(); ++e)
      if (k[e] > 0) delta = std::min(delta, std::max(0.0, (caps[e] - used[e] - k[e] * level) / k[e]));
    for (std::size_t i = 0; i < n; ++i)
      if (!frozen[i]) delta = std::min(delta, flows[i].cap - level);
    level += delta;
    bool any = false;
    for (std::size_t e = 0; e < caps.size(); ++e)
      if (k[e] > 0 && caps[e] - used[e] - k[e] * level <= 1e-9 * std::max(1.0, caps[e]))
        for (std::size_t i = 0; i < n; ++i)
          if (!frozen[i] && std::find(flows[i].route.begin(), flows[i].route.end(), e) != flows[i].route.end())
            frozen[i] = true, rate[i] = level, any = true;
    for (std::size_t i = 0; i < n; ++i)
      if (!frozen[i] && flows[i].cap - level <= 1e-12 * std::max(1.0, level)) frozen[i] = true, rate[i] = level, any = true;
    REQUIRE(any);
  }
  return rate;
}

}  // namespace

TEST_SUITE("sim") {

TEST_CASE("flow_engine: two flows sharing a link get half each") {
  auto e = engine({10.0});
  const edge_id l0 = 0;
  const flow_id a = e.add_flow(std::span(&l0, 1), 100);
  const flow_id b = e.add_flow(std::span(&l0, 1), 100);
  CHECK(e.rate(a) == doctest::Approx(5));
  CHECK(e.rate(b) == doctest::Approx(5));
  CHECK(e.flows_on(0).size() == 2);
  // Both finish together at 100 / 5 = 20 s, in one batch.
  const auto done = e.advance();
  CHECK(done.size() == 2);
  CHECK(e.now() == doctest::Approx(20));
  CHECK(e.active_flows() == 0);
}

TEST_CASE("flow_engine: the classic linear network gives the unconstrained flows the leftover") {
  // Links of capacity 1, 2, 3; flow 0 crosses all three, flows 1..3 one link each.
  auto e = engine({1.0, 2.0, 3.0});
  const std::vector<edge_id> all{0, 1, 2};
  const flow_id f0 = e.add_flow(all, 1e9);
  std::vector<flow_id> single;
  for (edge_id l = 0; l < 3; ++l) single.push_back(e.add_flow(std::span(&all[l], 1), 1e9));
  CHECK(e.rate(f0) == doctest::Approx(0.5));
  CHECK(e.rate(single[0]) == doctest::Approx(0.5));
  CHECK(e.rate(single[1]) == doctest::Approx(1.5));
  CHECK(e.rate(single[2]) == doctest::Approx(2.5));
}

TEST_CASE("flow_engine: a bottleneck elsewhere leaves the rest of a shared link to the other flow") {
  // Link A (10) carries flows 1 and 3; link B (4) carries flows 1 and 2. B is the bottleneck: 2 each;
  // flow 3 gets A's leftover 8.
  auto e = engine({10.0, 4.0});
  const flow_id f1 = e.add_flow(std::vector<edge_id>{0, 1}, 1e9);
  const flow_id f2 = e.add_flow(std::vector<edge_id>{1}, 1e9);
  const flow_id f3 = e.add_flow(std::vector<edge_id>{0}, 1e9);
  CHECK(e.rate(f1) == doctest::Approx(2));
  CHECK(e.rate(f2) == doctest::Approx(2));
  CHECK(e.rate(f3) == doctest::Approx(8));
}

TEST_CASE("flow_engine: a capped flow takes its cap and the other flow the rest") {
  auto e = engine({10.0});
  const std::vector<edge_id> r{0};
  const flow_id a = e.add_flow(r, 100, 0, 2.0);
  const flow_id b = e.add_flow(r, 100);
  CHECK(e.rate(a) == doctest::Approx(2));
  CHECK(e.rate(b) == doctest::Approx(8));
  e.set_rate_cap(a, inf);
  CHECK(e.rate(a) == doctest::Approx(5));
  e.set_rate_cap(b, 1.0);
  CHECK(e.rate(a) == doctest::Approx(9));
  CHECK(e.rate(b) == doctest::Approx(1));
}

TEST_CASE("flow_engine: a lone flow arrives at start + bytes/bandwidth + path latency") {
  std::vector<double> caps{1e9, 2e9, 1e9}, lat{1e-6, 2e-6, 3e-6};
  flow_engine e(caps, lat, 5.0);
  const flow_id f = e.add_flow(std::vector<edge_id>{0, 1, 2}, 1e6, 42);
  CHECK(e.next_completion() == doctest::Approx(5.0 + 1e-3));
  const auto done = e.advance();
  REQUIRE(done.size() == 1);
  CHECK(done[0].id == f);
  CHECK(done[0].tag == 42);
  CHECK(done[0].start == 5.0);
  CHECK(done[0].finish == doctest::Approx(5.0 + 1e-3));
  CHECK(done[0].arrival == doctest::Approx(5.0 + 1e-3 + 6e-6));
  CHECK(done[0].bytes == 1e6);
  CHECK_FALSE(e.active(f));
  CHECK_THROWS_AS((void)e.rate(f), dssync::invalid_argument);
}

TEST_CASE("flow_engine: zero-byte flows arrive after the latency only") {
  std::vector<double> caps{1e9}, lat{7e-6};
  flow_engine e(caps, lat);
  e.add_flow(std::vector<edge_id>{0}, 0, 1);
  const auto done = e.advance();
  REQUIRE(done.size() == 1);
  CHECK(done[0].finish == 0);
  CHECK(done[0].arrival == doctest::Approx(7e-6));
  // A flow on an empty route (source = destination) is instant unless capped.
  e.add_flow(std::span<const edge_id>{}, 100, 2);
  CHECK(e.advance().size() == 1);
  e.add_flow(std::span<const edge_id>{}, 100, 3, 50.0);
  const auto capped = e.advance();
  REQUIRE(capped.size() == 1);
  CHECK(capped[0].finish == doctest::Approx(2.0));
}

TEST_CASE("flow_engine: when one flow finishes the survivor speeds up") {
  auto e = engine({1e6});
  const std::vector<edge_id> r{0};
  e.add_flow(r, 1e6, 1);
  e.add_flow(r, 3e6, 2);
  auto d1 = e.advance();
  REQUIRE(d1.size() == 1);
  CHECK(d1[0].tag == 1);
  CHECK(d1[0].finish == doctest::Approx(2.0));
  auto d2 = e.advance();
  REQUIRE(d2.size() == 1);
  CHECK(d2[0].tag == 2);
  CHECK(d2[0].finish == doctest::Approx(4.0));
  CHECK(e.next_completion() == inf);
}

TEST_CASE("flow_engine: capacity changes apply from now on") {
  auto e = engine({1e6});
  const flow_id f = e.add_flow(std::vector<edge_id>{0}, 2e6);
  CHECK(e.advance(1.0).empty());
  CHECK(e.now() == 1.0);
  CHECK(e.remaining(f) == doctest::Approx(1e6));
  e.set_capacity(0, 0.5e6);
  const auto d = e.advance();
  REQUIRE(d.size() == 1);
  CHECK(d[0].finish == doctest::Approx(3.0));
  // Zero capacity stalls a flow; restoring it resumes it.
  const flow_id g = e.add_flow(std::vector<edge_id>{0}, 1e6);
  e.set_capacity(0, 0);
  CHECK(e.next_completion() == inf);
  CHECK(e.rate(g) == 0);
  e.advance_to(10.0);
  e.set_capacity(0, 1e6);
  CHECK(e.next_completion() == doctest::Approx(11.0));
}

TEST_CASE("flow_engine: a background flow halves a transfer and its removal restores it") {
  auto e = engine({1e6});
  const std::vector<edge_id> r{0};
  const flow_id bg = e.add_flow(r, inf, 99);
  const flow_id f = e.add_flow(r, 1e6, 1);
  CHECK(e.rate(f) == doctest::Approx(0.5e6));
  CHECK(e.advance(1.0).empty());
  CHECK(e.remaining(f) == doctest::Approx(0.5e6));
  e.remove_flow(bg);
  CHECK_FALSE(e.active(bg));
  const auto d = e.advance();
  REQUIRE(d.size() == 1);
  CHECK(d[0].finish == doctest::Approx(1.5));
  CHECK_THROWS_AS(e.remove_flow(bg), dssync::invalid_argument);
}

TEST_CASE("flow_engine: link counters integrate bytes, busy time and capacity") {
  auto e = engine({1e6, 2e6});
  e.add_flow(std::vector<edge_id>{0, 1}, 1e6);
  (void)e.advance();
  e.advance_to(4.0);
  const auto c0 = e.counters(0), c1 = e.counters(1);
  CHECK(c0.bytes == doctest::Approx(1e6));
  CHECK(c1.bytes == doctest::Approx(1e6));
  CHECK(c0.busy_time == doctest::Approx(1.0));
  CHECK(c0.capacity_time == doctest::Approx(4e6));
  CHECK(c1.capacity_time == doctest::Approx(8e6));
  CHECK(c0.bytes / c0.capacity_time == doctest::Approx(0.25));
}

TEST_CASE("flow_engine: simultaneous completions form one batch and one recomputation per instant") {
  auto e = engine({1e6, 1e6, 1e6});
  for (edge_id l = 0; l < 3; ++l) e.add_flow(std::vector<edge_id>{l}, 1e6 / 3.0 * 3.0);
  const auto before = e.recomputations();
  (void)e.next_completion();
  CHECK(e.recomputations() - before == 3);  // three separate components, one recomputation each
  CHECK(e.advance().size() == 3);
}

TEST_CASE("flow_engine: bad arguments are rejected") {
  auto e = engine({1e6});
  CHECK_THROWS_AS(e.add_flow(std::vector<edge_id>{1}, 10), dssync::invalid_argument);
  CHECK_THROWS_AS(e.add_flow(std::vector<edge_id>{0}, -1), dssync::invalid_argument);
  CHECK_THROWS_AS(e.add_flow(std::vector<edge_id>{0}, 1, 0, -1), dssync::invalid_argument);
  CHECK_THROWS_AS(e.set_capacity(0, -1), dssync::invalid_argument);
  CHECK_THROWS_AS(e.set_capacity(3, 1), dssync::invalid_argument);
  CHECK_THROWS_AS(flow_engine(std::vector<double>{1.0}, std::vector<double>{}), dssync::invalid_argument);
  e.add_flow(std::vector<edge_id>{0}, 1e6);
  CHECK_THROWS_AS(e.advance_to(5.0), dssync::invalid_argument);  // a completion comes first
  (void)e.advance();
  CHECK_THROWS_AS(e.advance_to(0.5), dssync::invalid_argument);  // the clock never goes back
}

TEST_CASE("flow_engine: incremental rates equal a from-scratch progressive filling (property)") {
  std::mt19937 g(20240611);
  const std::size_t cases = dssync_test::scaled(300, 20);
  for (std::size_t c = 0; c < cases; ++c) {
    const std::size_t nl = std::uniform_int_distribution<std::size_t>(1, 8)(g);
    std::vector<double> caps(nl);
    for (auto& x : caps) x = std::uniform_int_distribution<int>(1, 10)(g) * 1.0;
    flow_engine e(caps, std::vector<double>(nl, 0.0));
    struct live {
      flow_id id;
      ref_flow ref;
    };
    std::vector<live> flows;
    auto random_route = [&] {
      std::vector<edge_id> r;
      const std::size_t len = std::uniform_int_distribution<std::size_t>(1, std::min<std::size_t>(4, nl))(g);
      while (r.size() < len) {
        const auto l = static_cast<edge_id>(std::uniform_int_distribution<std::size_t>(0, nl - 1)(g));
        if (std::find(r.begin(), r.end(), l) == r.end()) r.push_back(l);
      }
      return r;
    };
    const int ops = 30;
    for (int op = 0; op < ops; ++op) {
      const int kind = std::uniform_int_distribution<int>(0, 9)(g);
      if (kind <= 3 || flows.empty()) {  // add
        ref_flow rf;
        rf.route = random_route();
        if (std::uniform_int_distribution<int>(0, 3)(g) == 0) rf.cap = std::uniform_int_distribution<int>(1, 6)(g) * 0.5;
        const double bytes = std::uniform_int_distribution<int>(0, 4)(g) == 0 ? inf
                                                                                : std::uniform_int_distribution<int>(1, 50)(g) * 1.0;
        flows.push_back({e.add_flow(rf.route, bytes, 0, rf.cap), rf});
      } else if (kind == 4) {  // remove
        const std::size_t i = std::uniform_int_distribution<std::size_t>(0, flows.size() - 1)(g);
        e.remove_flow(flows[i].id);
        flows.erase(flows.begin() + static_cast<std::ptrdiff_t>(i));
      } else if (kind == 5) {  // link capacity
        const auto l = static_cast<edge_id>(std::uniform_int_distribution<std::size_t>(0, nl - 1)(g));
        caps[l] = std::uniform_int_distribution<int>(0, 10)(g) * 1.0;
        e.set_capacity(l, caps[l]);
      } else if (kind == 6) {  // flow cap
        const std::size_t i = std::uniform_int_distribution<std::size_t>(0, flows.size() - 1)(g);
        flows[i].ref.cap = std::uniform_int_distribution<int>(0, 1)(g) ? inf : std::uniform_int_distribution<int>(1, 6)(g) * 0.5;
        e.set_rate_cap(flows[i].id, flows[i].ref.cap);
      } else {  // time passes: the next completion batch
        (void)e.advance();
        flows.erase(std::remove_if(flows.begin(), flows.end(), [&](const live& f) { return !e.active(f.id); }), flows.end());
      }
      std::vector<ref_flow> refs;
      for (const auto& f : flows) refs.push_back(f.ref);
      const auto want = reference_rates(caps, refs);
      for (std::size_t i = 0; i < flows.size(); ++i) {
        const double got = e.rate(flows[i].id);
        if (!near(got, want[i])) {
          INFO("case " << c << " op " << op << " flow " << i << " of " << flows.size());
          CHECK(got == doctest::Approx(want[i]));
        }
      }
      // Feasibility: no link over capacity.
      std::vector<double> load(nl, 0);
      for (std::size_t i = 0; i < flows.size(); ++i)
        for (edge_id l : flows[i].ref.route) load[l] += want[i];
      for (std::size_t l = 0; l < nl; ++l) CHECK(load[l] <= caps[l] * (1 + 1e-9) + 1e-12);
    }
  }
}

TEST_CASE("flow_engine: bytes are conserved through many rate changes (property)") {
  // Random flows on random links finish at times consistent with the bytes they carried: the sum over
  // links of counted bytes equals the sum over flows of bytes times route length.
  std::mt19937 g(7);
  const std::size_t cases = dssync_test::scaled(50, 5);
  for (std::size_t c = 0; c < cases; ++c) {
    const std::size_t nl = 6;
    std::vector<double> caps(nl);
    for (auto& x : caps) x = std::uniform_int_distribution<int>(1, 10)(g) * 1.0;
    flow_engine e(caps, std::vector<double>(nl, 0.5));
    double expected = 0;
    std::size_t added = 0, done = 0;
    for (int k = 0; k < 40; ++k) {
      if (std::uniform_int_distribution<int>(0, 1)(g)) {
        std::vector<edge_id> r;
        for (edge_id l = 0; l < nl; ++l)
          if (std::uniform_int_distribution<int>(0, 2)(g) == 0) r.push_back(l);
        if (r.empty()) r.push_back(0);
        const double b = std::uniform_int_distribution<int>(1, 30)(g);
        e.add_flow(r, b);
        expected += b * static_cast<double>(r.size());
        ++added;
      } else {
        for (const completion& d : e.advance()) {
          CHECK(d.arrival >= d.finish + 0.5);  // at least one link of latency 0.5
          ++done;
        }
      }
    }
    while (e.active_flows() > 0) done += e.advance().size();
    CHECK(done == added);
    double counted = 0;
    for (edge_id l = 0; l < nl; ++l) counted += e.counters(l).bytes;
    CHECK(counted == doctest::Approx(expected).epsilon(1e-9));
  }
}

}  // TEST_SUITE
