// The router: dense edge arrays, shortest paths by hop count, ECMP spreading across equal paths,
// determinism per key, and errors for unreachable vertices and misplaced workers.

#include <doctest/doctest.h>

#include <dssync/sim/routing.hpp>
#include <dssync/topology/full_mesh.hpp>
#include <dssync/topology/network.hpp>
#include <dssync/topology/ring.hpp>

#include <map>
#include <set>
#include <vector>

#include "test_support.hpp"

using dssync::sim::edge_id;
using dssync::sim::router;
namespace topo = dssync::topology;

namespace {

/// Workers 0 and 1 joined through two switches in parallel (two equal 2-hop paths), plus a 3-hop
/// detour through a chain of two more switches that shortest paths never take.
topo::network two_paths() {
  topo::network g;
  topo::add_workers(g, 2);
  const auto s1 = topo::add_switch(g, "s1"), s2 = topo::add_switch(g, "s2");
  const auto s3 = topo::add_switch(g, "s3"), s4 = topo::add_switch(g, "s4");
  topo::add_cable(g, 0, s1, {});
  topo::add_cable(g, s1, 1, {});
  topo::add_cable(g, 0, s2, {});
  topo::add_cable(g, s2, 1, {});
  topo::add_cable(g, 0, s3, {});
  topo::add_cable(g, s3, s4, {});
  topo::add_cable(g, s4, 1, {});
  return g;
}

}  // namespace

TEST_SUITE("sim") {

TEST_CASE("router: dense edges mirror the network") {
  topo::network g;
  topo::add_workers(g, 2);
  const auto sw = topo::add_switch(g, "sw");
  topo::add_cable(g, 0, sw, {1e9, 2e-6});
  topo::add_cable(g, 1, sw, {3e9, 4e-6});
  router r(g);
  CHECK(r.workers() == 2);
  CHECK(r.vertices() == 3);
  CHECK(r.edges() == 4);
  for (edge_id e = 0; e < r.edges(); ++e) {
    CHECK(r.out_edges(r.source(e)).size() >= 1);
    bool found = false;
    for (edge_id x : r.in_edges(r.target(e))) found = found || x == e;
    CHECK(found);
  }
  const auto up = r.edges_between(0, sw);
  REQUIRE(up.size() == 1);
  CHECK(r.bandwidth(up[0]) == 1e9);
  CHECK(r.latency(up[0]) == 2e-6);
  CHECK(r.edge_label(up[0]) == "w0->sw");
  CHECK(r.find_vertex("sw") == sw);
  CHECK(r.find_vertex("2") == sw);
  CHECK(r.find_vertex("w1") == 1u);
  CHECK_FALSE(r.find_vertex("nope").has_value());
  CHECK_FALSE(r.find_vertex("99").has_value());
  const auto route = r.route(0, 1);
  REQUIRE(route.size() == 2);
  CHECK(r.source(route[0]) == 0);
  CHECK(r.target(route[0]) == sw);
  CHECK(r.target(route[1]) == 1);
  CHECK(r.latency(route) == doctest::Approx(6e-6));
  CHECK(r.route(1, 1).empty());
}

TEST_CASE("router: ECMP spreads keys over equal paths and never takes a longer one") {
  router r(two_paths());
  CHECK(r.hops(0, 1) == 2);
  std::map<std::size_t, int> via;  // first switch -> count
  for (std::uint64_t key = 0; key < 200; ++key) {
    const auto route = r.route(0, 1, key);
    REQUIRE(route.size() == 2);
    CHECK(r.source(route[0]) == 0);
    CHECK(r.target(route[1]) == 1);
    CHECK(r.target(route[0]) == r.source(route[1]));
    ++via[r.target(route[0])];
  }
  REQUIRE(via.size() == 2);  // both s1 and s2, never s3
  CHECK(via.count(4) == 0);
  for (const auto& [sw, n] : via) CHECK(n >= 60);
  // A key always takes the same path, also in a fresh router.
  router r2(two_paths());
  for (std::uint64_t key = 0; key < 20; ++key) {
    const auto a = r.route(0, 1, key), b = r2.route(0, 1, key);
    CHECK(std::vector<edge_id>(a.begin(), a.end()) == std::vector<edge_id>(b.begin(), b.end()));
  }
}

TEST_CASE("router: shortest paths on rings go the short way, and both ways at the antipode") {
  router r(topo::ring(6).graph());
  CHECK(r.route(0, 1).size() == 1);
  CHECK(r.route(0, 2).size() == 2);
  CHECK(r.route(0, 5).size() == 1);
  CHECK(r.route(0, 4).size() == 2);
  std::set<std::size_t> first_hop;
  for (std::uint64_t key = 0; key < 64; ++key) first_hop.insert(r.target(r.route(0, 3, key)[0]));
  CHECK(first_hop == std::set<std::size_t>{1, 5});
  router m(topo::full_mesh(5).graph());
  for (int a = 0; a < 5; ++a)
    for (int b = 0; b < 5; ++b) CHECK(m.route(a, b).size() == (a == b ? 0u : 1u));
}

TEST_CASE("router: errors name the problem") {
  topo::network g;
  topo::add_workers(g, 3);
  topo::add_cable(g, 0, 1, {});
  router r(g);
  try {
    (void)r.route(0, 2);
    FAIL("expected an error");
  } catch (const dssync::invalid_argument& e) {
    CHECK(dssync_test::contains(e.what(), "unreachable"));
    CHECK(dssync_test::contains(e.what(), "w2"));
  }
  CHECK(r.hops(0, 2) == -1);
  CHECK_THROWS_AS((void)r.route(0, 3), dssync::invalid_argument);
  CHECK_THROWS_AS((void)r.route(-1, 0), dssync::invalid_argument);
  CHECK_THROWS_AS((void)r.route_between(0, 17), dssync::invalid_argument);

  // Workers must come first, in rank order.
  topo::network bad;
  topo::add_switch(bad, "sw");
  topo::add_workers(bad, 2);
  CHECK_THROWS_AS(router{bad}, dssync::invalid_argument);
  topo::network neg;
  topo::add_workers(neg, 2);
  topo::add_cable(neg, 0, 1, {-1.0, 1e-6});
  CHECK_THROWS_AS(router{neg}, dssync::invalid_argument);
}

}  // TEST_SUITE
