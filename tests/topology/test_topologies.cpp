// Topology models: star, racks (leaf_spine), fat_tree, bcube, dgx1, user graphs, DOT input/output and specs.

#include <doctest/doctest.h>

#include <dssync/topology/graphviz.hpp>

#include <boost/graph/adjacency_list.hpp>
#include <boost/graph/graphviz.hpp>
#include <boost/property_map/function_property_map.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <limits>
#include <map>
#include <numeric>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include <unistd.h>

#include "test_support.hpp"

namespace topo = dssync::topology;
using dssync_test::contains;
using dssync_test::has_number;

namespace {

using dssync_test::error_of;

#define CHECK_ERROR_HAS(expr, ...)                                                    \
  do {                                                                                \
    const std::string msg_ = error_of([&] { (void)(expr); });                         \
    for (const char* part_ : {__VA_ARGS__}) CHECK_MESSAGE(contains(msg_, part_), msg_); \
  } while (0)

std::size_t count_kind(const topo::network& g, topo::node_kind k) {
  std::size_t n = 0;
  for (auto v : boost::make_iterator_range(boost::vertices(g))) n += g[v].kind == k;
  return n;
}

/// Whether `t`'s network is well formed: it passes validate_network; vertices 0..W-1 are the workers in rank
/// order; the rest are switches of rank -1; every directed link has its reverse with the same properties
/// (all built-in cables are full duplex); racks() partitions the ranks.
template <class T>
void check_model(const T& t) {
  CAPTURE(t.name());
  const topo::network g = t.graph();
  const int w = t.workers();
  CHECK(topo::validate_network(g) == w);
  REQUIRE(boost::num_vertices(g) >= static_cast<std::size_t>(w));
  for (std::size_t v = 0; v < boost::num_vertices(g); ++v) {
    if (v < static_cast<std::size_t>(w)) {
      CHECK(g[v].kind == topo::node_kind::worker);
      CHECK(g[v].rank == static_cast<int>(v));
    } else {
      CHECK(g[v].kind == topo::node_kind::switch_);
      CHECK(g[v].rank == -1);
    }
    CHECK(!g[v].label.empty());
  }
  for (auto e : boost::make_iterator_range(boost::edges(g))) {
    const auto [back, ok] = boost::edge(boost::target(e, g), boost::source(e, g), g);
    REQUIRE(ok);
    CHECK(g[back].bandwidth == g[e].bandwidth);
    CHECK(g[back].latency == g[e].latency);
  }
  std::vector<int> seen;
  for (const auto& rack : t.racks()) {
    CHECK(!rack.empty());
    seen.insert(seen.end(), rack.begin(), rack.end());
  }
  std::sort(seen.begin(), seen.end());
  std::vector<int> all(static_cast<std::size_t>(w));
  std::iota(all.begin(), all.end(), 0);
  CHECK(seen == all);
  CHECK_NOTHROW(t.validate(w));
  const std::string msg = error_of([&] { t.validate(w + 1); });
  CHECK_MESSAGE(has_number(msg, w), msg);
  CHECK_MESSAGE(has_number(msg, w + 1), msg);
}

/// Edges as (source label, target label, bandwidth, latency), sorted: compares networks up to vertex order.
std::vector<std::tuple<std::string, std::string, double, double, int>> labelled_edges(const topo::network& g) {
  std::vector<std::tuple<std::string, std::string, double, double, int>> out;
  for (auto e : boost::make_iterator_range(boost::edges(g)))
    out.emplace_back(g[boost::source(e, g)].label, g[boost::target(e, g)].label, g[e].bandwidth, g[e].latency,
                     static_cast<int>(g[e].cls));
  std::sort(out.begin(), out.end());
  return out;
}

/// Vertices as (label, kind, rank), sorted.
std::vector<std::tuple<std::string, int, int>> labelled_vertices(const topo::network& g) {
  std::vector<std::tuple<std::string, int, int>> out;
  for (auto v : boost::make_iterator_range(boost::vertices(g)))
    out.emplace_back(g[v].label, static_cast<int>(g[v].kind), g[v].rank);
  std::sort(out.begin(), out.end());
  return out;
}

topo::user_graph dot(const std::string& text) {
  std::istringstream in(text);
  return topo::read_dot(in);
}

/// A small valid network: workers a (rank 0), b (rank 1), c (rank 2) on switch s.
topo::network small_star() {
  topo::network g;
  boost::add_vertex(topo::node{topo::node_kind::worker, 0, "a"}, g);
  boost::add_vertex(topo::node{topo::node_kind::worker, 1, "b"}, g);
  boost::add_vertex(topo::node{topo::node_kind::worker, 2, "c"}, g);
  const auto s = topo::add_switch(g, "s");
  for (std::size_t v = 0; v < 3; ++v) topo::add_cable(g, v, s, topo::link{});
  return g;
}

std::vector<topo::any_topology> all_models() {
  return {topo::ring(1),          topo::ring(5),          topo::full_mesh(4),
          topo::star(1),          topo::star(7),          topo::leaf_spine(1, 1),
          topo::leaf_spine(4, 4), topo::leaf_spine(3, 5), topo::fat_tree(2),
          topo::fat_tree(4),      topo::fat_tree(6),      topo::bcube(1, 1),
          topo::bcube(3, 2),      topo::bcube(2, 3),      topo::bcube(4, 2),
          topo::bcube(5, 1),      topo::dgx1(),           topo::dgx1({0, 1, 2, 5}),
          topo::dgx1({3}),        topo::dgx1({7, 0}),     topo::dgx1({0, 1, 2, 5}).nvlink_only(),
          topo::user_graph(small_star())};
}

}  // namespace

TEST_SUITE("topology") {

TEST_CASE("every model satisfies the topology concept") {
  static_assert(dssync::concepts::topology<topo::star>);
  static_assert(dssync::concepts::topology<topo::leaf_spine>);
  static_assert(dssync::concepts::topology<topo::fat_tree>);
  static_assert(dssync::concepts::topology<topo::bcube>);
  static_assert(dssync::concepts::topology<topo::dgx1>);
  static_assert(dssync::concepts::topology<topo::user_graph>);
  static_assert(dssync::concepts::topology<topo::any_topology>);
  CHECK(true);
}

TEST_CASE("every built-in network is valid, rank-ordered, full duplex, and its racks partition the ranks") {
  std::set<std::string> names;
  for (const auto& t : all_models()) {
    check_model(t);
    CHECK_MESSAGE(names.insert(t.name()).second, "two models share the name " << t.name());
  }
}

TEST_CASE("ring and full_mesh: racks(), cable(), and names that include non-default links") {
  CHECK(topo::ring(8).name() == "ring(8)");
  CHECK(topo::ring(8, topo::link{3.125e9, 1e-6}).name() == "ring(8,link=25Gb/s)");
  CHECK(topo::ring(8, topo::link{12.5e9, 5e-6}).name() == "ring(8,link=100Gb/s@5us)");
  CHECK(topo::full_mesh(3, topo::link{25e9, 1e-6}).name() == "full_mesh(3,link=200Gb/s)");
  CHECK(topo::ring(4).racks() == std::vector<std::vector<int>>{{0, 1, 2, 3}});
  CHECK(topo::full_mesh(2).racks() == std::vector<std::vector<int>>{{0, 1}});
  CHECK(topo::ring(4, topo::link{1e9, 2e-6}).cable() == topo::link{1e9, 2e-6});
}

TEST_CASE("star(n): one switch, n cables") {
  for (int n : {1, 2, 4, 16}) {
    CAPTURE(n);
    const topo::star t(n);
    const auto g = t.graph();
    CHECK(t.workers() == n);
    CHECK(t.name() == "star(" + std::to_string(n) + ")");
    CHECK(boost::num_vertices(g) == static_cast<std::size_t>(n + 1));
    CHECK(count_kind(g, topo::node_kind::switch_) == 1);
    CHECK(boost::num_edges(g) == static_cast<std::size_t>(2 * n));
    CHECK(boost::out_degree(static_cast<std::size_t>(n), g) == static_cast<std::size_t>(n));
    CHECK(t.racks().size() == 1);
  }
  CHECK(topo::star(3, topo::link{1.25e9, 1e-6}).name() == "star(3,link=10Gb/s)");
  CHECK_ERROR_HAS(topo::star(0), "star", "0");
  CHECK_ERROR_HAS(topo::star(-3), "-3");
}

TEST_CASE("racks (leaf_spine): counts, tiers, oversubscription") {
  const topo::link intra{12.5e9, 1e-6}, uplink{3.125e9, 1e-6};
  const topo::leaf_spine t(4, 4, intra, uplink);
  CHECK(t.workers() == 16);
  CHECK(t.racks_count() == 4);
  CHECK(t.per_rack() == 4);
  CHECK(t.intra_bandwidth() == 12.5e9);
  CHECK(t.uplink_bandwidth() == 3.125e9);
  CHECK(t.oversubscription() == doctest::Approx(16.0));  // 4 x 100 Gb/s over one 25 Gb/s uplink
  CHECK(t.name() == "racks(4x4,intra=100Gb/s,uplink=25Gb/s)");
  CHECK(topo::leaf_spine(2, 8).oversubscription() == doctest::Approx(8.0));
  CHECK(topo::leaf_spine(2, 4, topo::link{}, topo::link{50e9, 1e-6}).oversubscription() == doctest::Approx(1.0));
  CHECK(topo::leaf_spine(2, 2, topo::link{12.5e9, 2e-6}).name() == "racks(2x2,intra=100Gb/s@2us,uplink=100Gb/s)");
  CHECK(t.racks() == std::vector<std::vector<int>>{{0, 1, 2, 3}, {4, 5, 6, 7}, {8, 9, 10, 11}, {12, 13, 14, 15}});
  CHECK(t.rack_of(0) == 0);
  CHECK(t.rack_of(7) == 1);
  CHECK(t.rack_of(15) == 3);
  CHECK_ERROR_HAS(t.rack_of(16), "16");

  const auto g = t.graph();
  CHECK(boost::num_vertices(g) == 16 + 4 + 1);
  CHECK(boost::num_edges(g) == 2 * (16 + 4));
  for (int r = 0; r < 16; ++r) {
    CAPTURE(r);
    REQUIRE(boost::out_degree(static_cast<std::size_t>(r), g) == 1);
    const auto e = *boost::out_edges(static_cast<std::size_t>(r), g).first;
    CHECK(boost::target(e, g) == t.tor_vertex(r / 4));
    CHECK(g[e] == intra);
  }
  for (int c = 0; c < 4; ++c) {
    const auto [e, ok] = boost::edge(t.tor_vertex(c), t.spine_vertex(), g);
    REQUIRE(ok);
    CHECK(g[e] == uplink);
    CHECK(g[t.tor_vertex(c)].label == "tor" + std::to_string(c));
  }
  CHECK(g[t.spine_vertex()].label == "spine");
  for (auto [c, n, v, e] : {std::tuple{1, 1, 3, 4}, std::tuple{3, 5, 19, 36}, std::tuple{8, 2, 25, 48}}) {
    const auto h = topo::leaf_spine(c, n).graph();
    CHECK(boost::num_vertices(h) == static_cast<std::size_t>(v));
    CHECK(boost::num_edges(h) == static_cast<std::size_t>(e));
  }
  CHECK_ERROR_HAS(topo::leaf_spine(0, 4), "rack count", "0");
  CHECK_ERROR_HAS(topo::leaf_spine(4, -2), "per rack", "-2");
  CHECK_ERROR_HAS(topo::leaf_spine(100000, 100000), "100000");
}

TEST_CASE("fat_tree(k): hosts, switches, cables, port counts") {
  for (int k : {2, 4, 6, 8}) {
    CAPTURE(k);
    const topo::fat_tree t(k);
    const auto g = t.graph();
    const int hosts = k * k * k / 4, switches = 5 * k * k / 4, cables = 3 * k * k * k / 4;
    CHECK(t.workers() == hosts);
    CHECK(t.k() == k);
    CHECK(t.pods() == k);
    CHECK(t.edge_switches() + t.aggregation_switches() + t.core_switches() == switches);
    CHECK(boost::num_vertices(g) == static_cast<std::size_t>(hosts + switches));
    CHECK(count_kind(g, topo::node_kind::switch_) == static_cast<std::size_t>(switches));
    CHECK(boost::num_edges(g) == static_cast<std::size_t>(2 * cables));
    for (std::size_t v = 0; v < boost::num_vertices(g); ++v)  // hosts have 1 port, switches k
      CHECK(boost::out_degree(v, g) == (v < static_cast<std::size_t>(hosts) ? 1u : static_cast<std::size_t>(k)));
    const auto racks = t.racks();
    CHECK(racks.size() == static_cast<std::size_t>(k * k / 2));
    for (const auto& r : racks) CHECK(r.size() == static_cast<std::size_t>(k / 2));
  }
  const topo::fat_tree t(4);
  CHECK(t.name() == "fat_tree(4)");
  const auto g = t.graph();
  CHECK(boost::num_vertices(g) == 36);  // 16 hosts, 20 switches
  CHECK(boost::num_edges(g) == 96);     // 48 cables
  CHECK(t.racks()[1] == std::vector<int>{2, 3});
  CHECK(t.pod_of(5) == 1);
  CHECK(t.edge_of(5) == 2);
  CHECK(boost::edge(5, t.edge_vertex(2), g).second);
  CHECK(boost::edge(t.edge_vertex(2), t.aggregation_vertex(1, 1), g).second);
  CHECK(boost::edge(t.aggregation_vertex(1, 1), t.core_vertex(2), g).second);
  CHECK(boost::edge(t.aggregation_vertex(1, 1), t.core_vertex(3), g).second);
  CHECK(!boost::edge(t.aggregation_vertex(1, 1), t.core_vertex(0), g).second);
  CHECK(g[t.core_vertex(3)].label == "core3");
  CHECK(topo::fat_tree(4, topo::link{1.25e9, 1e-6}).name() == "fat_tree(4,link=10Gb/s)");
  CHECK_ERROR_HAS(topo::fat_tree(3), "k = 3", "even");
  CHECK_ERROR_HAS(topo::fat_tree(0), "k = 0");
  CHECK_ERROR_HAS(topo::fat_tree(-4), "-4");
  CHECK_ERROR_HAS(topo::fat_tree(258), "258");
  CHECK_ERROR_HAS(t.pod_of(16), "16");
}

TEST_CASE("bcube(n,k): counts, port counts, addresses, groups") {
  struct expect {
    int n, k, servers, switches;
  };
  for (const expect x : {expect{3, 2, 9, 6}, expect{2, 3, 8, 12}, expect{4, 2, 16, 8}, expect{1, 1, 1, 1},
                         expect{5, 1, 5, 1}, expect{2, 4, 16, 32}, expect{3, 3, 27, 27}}) {
    CAPTURE(x.n);
    CAPTURE(x.k);
    const topo::bcube t(x.n, x.k);
    const auto g = t.graph();
    CHECK(t.workers() == x.servers);
    CHECK(t.n() == x.n);
    CHECK(t.k() == x.k);
    CHECK(t.switches_per_level() * x.k == x.switches);
    CHECK(boost::num_vertices(g) == static_cast<std::size_t>(x.servers + x.switches));
    CHECK(boost::num_edges(g) == static_cast<std::size_t>(2 * x.k * x.servers));  // k cables per server
    for (std::size_t v = 0; v < boost::num_vertices(g); ++v)
      CHECK(boost::out_degree(v, g) ==
            static_cast<std::size_t>(v < static_cast<std::size_t>(x.servers) ? x.k : x.n));
    for (int r = 0; r < x.servers; ++r) {
      const auto a = t.address(r);
      REQUIRE(a.size() == static_cast<std::size_t>(x.k));
      CHECK(t.rank_of(a) == r);  // round trip
      for (int level = 0; level < x.k; ++level) {
        const auto grp = t.group(level, r);
        REQUIRE(grp.size() == static_cast<std::size_t>(x.n));
        CHECK(grp[static_cast<std::size_t>(a[static_cast<std::size_t>(level)])] == r);
        const auto sw = t.switch_vertex(level, r);
        for (int j = 0; j < x.n; ++j) {
          auto b = t.address(grp[static_cast<std::size_t>(j)]);
          CHECK(b[static_cast<std::size_t>(level)] == j);  // ordered by the level's digit
          b[static_cast<std::size_t>(level)] = a[static_cast<std::size_t>(level)];
          CHECK(b == a);                                    // differs only in that digit
          CHECK(t.switch_vertex(level, grp[static_cast<std::size_t>(j)]) == sw);
          CHECK(boost::edge(static_cast<std::size_t>(grp[static_cast<std::size_t>(j)]), sw, g).second);
        }
      }
    }
    CHECK(t.racks() == t.groups(0));
    CHECK(t.groups(x.k - 1).size() == static_cast<std::size_t>(t.switches_per_level()));
  }
  const topo::bcube t(3, 2);
  CHECK(t.name() == "bcube(3,2)");
  CHECK(t.address(5) == std::vector<int>{2, 1});  // 5 = [v1 v0] = [1 2]
  CHECK(t.rank_of({2, 1}) == 5);
  CHECK(t.group(0, 4) == std::vector<int>{3, 4, 5});
  CHECK(t.group(1, 4) == std::vector<int>{1, 4, 7});
  CHECK(t.racks() == std::vector<std::vector<int>>{{0, 1, 2}, {3, 4, 5}, {6, 7, 8}});
  CHECK(t.groups(1) == std::vector<std::vector<int>>{{0, 3, 6}, {1, 4, 7}, {2, 5, 8}});
  CHECK(t.graph()[t.switch_vertex(1, 4)].label == "s1.1");
  CHECK(topo::bcube(3, 2, topo::link{1e9, 1e-6}).name() == "bcube(3,2,link=8Gb/s)");
  CHECK_ERROR_HAS(topo::bcube(0, 2), "n = 0");
  CHECK_ERROR_HAS(topo::bcube(3, 0), "k = 0");
  CHECK_ERROR_HAS(topo::bcube(-1, 2), "n = -1");
  CHECK_ERROR_HAS(topo::bcube(100, 5), "100^5");
  CHECK_ERROR_HAS(t.rank_of({1, 3}), "digit 1", "3");
  CHECK_ERROR_HAS(t.rank_of({1}), "2 digits", "1");
  CHECK_ERROR_HAS(t.address(9), "rank 9");
  CHECK_ERROR_HAS(t.group(2, 0), "level 2");
  CHECK_ERROR_HAS(t.groups(-1), "level -1");
}

TEST_CASE("dgx1: the hybrid cube-mesh's NVLink lanes") {
  // ALGORITHMS.md's list.
  const std::set<std::pair<int, int>> doubles{{0, 3}, {0, 4}, {1, 2}, {1, 5}, {2, 3}, {4, 7}, {5, 6}, {6, 7}};
  const std::set<std::pair<int, int>> singles{{0, 1}, {0, 2}, {1, 3}, {2, 6}, {3, 7}, {4, 5}, {4, 6}, {5, 7}};
  for (int a = 0; a < 8; ++a) {
    int lanes = 0;
    for (int b = 0; b < 8; ++b) {
      const auto p = std::pair{std::min(a, b), std::max(a, b)};
      const int expect = doubles.count(p) ? 2 : singles.count(p) ? 1 : 0;
      CHECK(topo::dgx1::physical_lanes(a, b) == expect);
      lanes += topo::dgx1::physical_lanes(a, b);
    }
    CHECK(lanes == 6);  // 6 NVLinks per GPU
  }
  const topo::dgx1 d;
  CHECK(d.workers() == 8);
  CHECK(d.name() == "dgx1");
  CHECK(d.gpus() == std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7});
  CHECK(d.nvlink_connected());
  const auto g = d.graph();
  // 8 GPUs, 4 PCIe switches, 2 CPUs; 16 NVLink cables, 8 GPU-PCIe, 4 PCIe-CPU, 1 QPI.
  CHECK(boost::num_vertices(g) == 14);
  CHECK(boost::num_edges(g) == 2 * (16 + 8 + 4 + 1));
  for (const auto& [a, b] : doubles) {
    const auto [e, ok] = boost::edge(static_cast<std::size_t>(a), static_cast<std::size_t>(b), g);
    REQUIRE(ok);
    CHECK(g[e].bandwidth == 50e9);  // a double link is one 50 GB/s cable
  }
  for (const auto& [a, b] : singles) {
    const auto [e, ok] = boost::edge(static_cast<std::size_t>(a), static_cast<std::size_t>(b), g);
    REQUIRE(ok);
    CHECK(g[e].bandwidth == 25e9);
  }
  std::map<std::string, std::size_t> by_label;
  for (auto v : boost::make_iterator_range(boost::vertices(g))) by_label[g[v].label] = v;
  for (const char* l : {"gpu0", "gpu7", "pcie0", "pcie3", "cpu0", "cpu1"}) CHECK(by_label.count(l) == 1);
  for (int gpu = 0; gpu < 8; ++gpu) {
    const auto [e, ok] = boost::edge(static_cast<std::size_t>(gpu), by_label["pcie" + std::to_string(gpu / 2)], g);
    REQUIRE(ok);
    CHECK(g[e].bandwidth == 12e9);
  }
  CHECK(boost::edge(by_label["pcie1"], by_label["cpu0"], g).second);
  CHECK(boost::edge(by_label["pcie2"], by_label["cpu1"], g).second);
  const auto [qpi, qpi_ok] = boost::edge(by_label["cpu0"], by_label["cpu1"], g);
  REQUIRE(qpi_ok);
  CHECK(g[qpi].bandwidth == topo::dgx1::default_qpi.bandwidth);

  const auto nv = d.nvlink_graph();
  CHECK(boost::num_vertices(nv) == 8);
  CHECK(boost::num_edges(nv) == 32);
  const auto pcie = d.pcie_graph();
  CHECK(boost::num_vertices(pcie) == 14);
  CHECK(boost::num_edges(pcie) == 26);
  CHECK(topo::validate_network(pcie) == 8);
}

TEST_CASE("dgx1 subsets: ranks, lanes, graphs, NVLink-only variant") {
  const topo::dgx1 d({0, 1, 2, 5});
  CHECK(d.workers() == 4);
  CHECK(d.name() == "dgx1(0,1,2,5)");
  CHECK(d.gpus() == std::vector<int>{0, 1, 2, 5});
  CHECK(d.nvlink_lanes(0, 1) == 1);  // GPUs 0-1
  CHECK(d.nvlink_lanes(1, 2) == 2);  // GPUs 1-2
  CHECK(d.nvlink_lanes(1, 3) == 2);  // GPUs 1-5
  CHECK(d.nvlink_lanes(0, 3) == 0);  // GPUs 0-5
  CHECK(d.nvlink_lanes(0, 2) == 1);  // GPUs 0-2
  CHECK(d.racks() == std::vector<std::vector<int>>{{0, 1, 2, 3}});
  CHECK_ERROR_HAS(d.nvlink_lanes(0, 4), "rank 4");
  const auto g = d.graph();
  // GPUs, PCIe switches 0, 1, 2, CPUs 0, 1; NVLink 0-1, 0-2, 1-2, 1-5; 4 + 3 PCIe cables and QPI.
  CHECK(boost::num_vertices(g) == 9);
  CHECK(boost::num_edges(g) == 2 * (4 + 4 + 3 + 1));
  CHECK(g[3].label == "gpu5");
  const auto only = d.nvlink_only();
  CHECK(only.is_nvlink_only());
  CHECK(only.name() == "dgx1(0,1,2,5,nvlink_only)");
  CHECK(boost::num_vertices(only.graph()) == 4);
  CHECK(boost::num_edges(only.graph()) == 8);
  CHECK(topo::dgx1().nvlink_only().name() == "dgx1(nvlink_only)");

  // Rank order follows the list.
  const topo::dgx1 r({5, 1});
  CHECK(r.name() == "dgx1(5,1)");
  CHECK(r.nvlink_lanes(0, 1) == 2);
  CHECK(r.graph()[0].label == "gpu5");

  // GPUs 0 and 7 share no NVLink: PCIe and QPI still connect them.
  const topo::dgx1 far({0, 7});
  CHECK(!far.nvlink_connected());
  CHECK(topo::validate_network(far.graph()) == 2);
  CHECK(boost::num_vertices(far.graph()) == 2 + 2 + 2);
  CHECK_ERROR_HAS(far.nvlink_only(), "GPUs 0 and 7", "NVLink");
  CHECK_ERROR_HAS(topo::validate_network(far.nvlink_graph()), "worker 0 cannot reach worker 1");

  // Every one of the 255 subsets: graph() is valid; the NVLink-only variant exists iff NVLink connects it.
  int connected = 0;
  for (int mask = 1; mask < 256; ++mask) {
    std::vector<int> gpus;
    for (int i = 0; i < 8; ++i)
      if (mask & (1 << i)) gpus.push_back(i);
    const topo::dgx1 s(gpus);
    CAPTURE(s.name());
    CHECK(topo::validate_network(s.graph()) == s.workers());
    if (s.nvlink_connected()) {
      ++connected;
      CHECK(topo::validate_network(s.nvlink_only().graph()) == s.workers());
    } else {
      CHECK_THROWS_AS((void)s.nvlink_only(), dssync::invalid_argument);
    }
  }
  CHECK(connected > 100);

  // Links.
  const topo::dgx1 slow({0, 1}, topo::link{10e9, 2e-6}, topo::link{8e9, 1e-6}, topo::link{16e9, 1e-6});
  CHECK(slow.name() == "dgx1(0,1,nvlink=80Gb/s@2us,pcie=64Gb/s,qpi=128Gb/s)");
  const auto sg = slow.graph();
  const auto [e, ok] = boost::edge(0, 1, sg);
  REQUIRE(ok);
  CHECK(sg[e] == topo::link{10e9, 2e-6, topo::link_class::nvlink});

  CHECK_ERROR_HAS(topo::dgx1({0, 8}), "GPU id 8", "0..7");
  CHECK_ERROR_HAS(topo::dgx1({-1}), "GPU id -1");
  CHECK_ERROR_HAS(topo::dgx1({2, 3, 2}), "GPU 2", "twice");
  CHECK_ERROR_HAS(topo::dgx1(std::vector<int>{}), "empty");
  CHECK_ERROR_HAS(topo::dgx1::physical_lanes(0, 9), "GPU id 9");
}

TEST_CASE("validate_network names the problem") {
  using topo::node;
  using topo::node_kind;
  CHECK(topo::validate_network(small_star()) == 3);

  CHECK_ERROR_HAS(topo::validate_network(topo::network{}), "no worker");
  {
    topo::network g;
    topo::add_switch(g, "s");
    CHECK_ERROR_HAS(topo::validate_network(g), "no worker");
  }
  {  // disconnected: c is on its own
    topo::network g;
    topo::add_workers(g, 3);
    topo::add_cable(g, 0, 1, topo::link{});
    CHECK_ERROR_HAS(topo::validate_network(g), "worker 0 cannot reach worker 2");
  }
  {  // one-way: 0 -> 1 only
    topo::network g;
    topo::add_workers(g, 2);
    boost::add_edge(0, 1, topo::link{}, g);
    CHECK_ERROR_HAS(topo::validate_network(g), "worker 1 cannot reach worker 0", "'w1'", "'w0'");
  }
  {  // two racks whose spine is missing
    auto g = topo::leaf_spine(2, 2).graph();
    boost::clear_vertex(topo::leaf_spine(2, 2).spine_vertex(), g);
    CHECK_ERROR_HAS(topo::validate_network(g), "worker 0 cannot reach worker 2");
  }
  {
    auto g = small_star();
    g[*boost::edges(g).first].bandwidth = 0;
    CHECK_ERROR_HAS(topo::validate_network(g), "link 0->3", "bandwidth 0");
    g[*boost::edges(g).first].bandwidth = std::numeric_limits<double>::infinity();
    CHECK_ERROR_HAS(topo::validate_network(g), "link 0->3", "bandwidth inf");
    g[*boost::edges(g).first].bandwidth = -5;
    CHECK_ERROR_HAS(topo::validate_network(g), "bandwidth -5");
    g[*boost::edges(g).first].bandwidth = std::numeric_limits<double>::quiet_NaN();
    CHECK_ERROR_HAS(topo::validate_network(g), "bandwidth nan");
  }
  {
    auto g = small_star();
    g[*boost::edges(g).first].latency = -1e-6;
    CHECK_ERROR_HAS(topo::validate_network(g), "link 0->3", "latency -1e-06");
  }
  {
    auto g = small_star();
    g[2].rank = 1;
    CHECK_ERROR_HAS(topo::validate_network(g), "duplicate rank 1", "'b'", "'c'");
  }
  {
    auto g = small_star();
    g[2].rank = 3;  // ranks 0, 1, 3: rank 2 is missing
    CHECK_ERROR_HAS(topo::validate_network(g), "rank 3", "no worker has rank 2");
    g[2].rank = -1;
    CHECK_ERROR_HAS(topo::validate_network(g), "rank -1", "no worker has rank 2");
  }
  {
    auto g = small_star();
    g[3].rank = 0;
    CHECK_ERROR_HAS(topo::validate_network(g), "switch", "'s'", "rank 0");
  }
  {
    auto g = small_star();
    boost::add_edge(1, 1, topo::link{}, g);
    CHECK_ERROR_HAS(topo::validate_network(g), "link 1->1", "self-loop");
  }
}

TEST_CASE("user_graph: renumbering, name, racks, errors") {
  // Workers given out of order, after a switch.
  topo::network g;
  const auto s = topo::add_switch(g, "s");
  boost::add_vertex(topo::node{topo::node_kind::worker, 2, "c"}, g);
  boost::add_vertex(topo::node{topo::node_kind::worker, 0, "a"}, g);
  boost::add_vertex(topo::node{topo::node_kind::worker, 1, "b"}, g);
  for (std::size_t v = 1; v <= 3; ++v) topo::add_cable(g, v, s, topo::link{});
  const topo::user_graph u(g, "mine");
  CHECK(u.workers() == 3);
  CHECK(u.switches() == 1);
  CHECK(u.label() == "mine");
  check_model(u);
  CHECK(u.view()[0].label == "a");
  CHECK(u.view()[2].label == "c");
  CHECK(u.view()[3].label == "s");
  CHECK(labelled_edges(u.graph()) == labelled_edges(g));
  CHECK(u.racks() == std::vector<std::vector<int>>{{0, 1, 2}});
  CHECK(contains(u.name(), "mine(3w,1s,6l,#"));
  CHECK(u.name() == topo::user_graph(g, "mine").name());
  // The name changes with any link property.
  auto faster = g;
  faster[*boost::edges(faster).first].bandwidth *= 2;
  CHECK(topo::user_graph(faster, "mine").name() != u.name());
  auto later = g;
  later[*boost::edges(later).first].latency *= 2;
  CHECK(topo::user_graph(later, "mine").name() != u.name());

  // Racks are inferred from the ToR each worker hangs off.
  CHECK(topo::user_graph(topo::leaf_spine(3, 4).graph()).racks() == topo::leaf_spine(3, 4).racks());
  CHECK(topo::user_graph(topo::bcube(3, 2).graph()).racks() == topo::bcube(3, 2).racks());
  CHECK(topo::user_graph(topo::ring(5).graph()).racks() == topo::ring(5).racks());
  CHECK(topo::user_graph(topo::fat_tree(4).graph()).racks() == topo::fat_tree(4).racks());

  // Every built-in network is a valid user graph, and keeps its edges.
  for (const auto& t : all_models()) {
    CAPTURE(t.name());
    const topo::user_graph x(t.graph());
    CHECK(labelled_edges(x.graph()) == labelled_edges(t.graph()));
  }

  topo::network bad;
  topo::add_workers(bad, 2);
  CHECK_ERROR_HAS(topo::user_graph(bad), "worker 0 cannot reach worker 1");
}

TEST_CASE("user_graph::from: any Boost.Graph graph with property maps") {
  // An undirected user graph with its own bundled properties: 0 - 1 - 2 (2 is a switch), 3 - 2.
  struct v_prop {
    int rank;
  };
  struct e_prop {
    double gbps, us;
  };
  using ugraph = boost::adjacency_list<boost::vecS, boost::vecS, boost::undirectedS, v_prop, e_prop>;
  ugraph ug(4);
  ug[0].rank = 1;
  ug[1].rank = 0;
  ug[2].rank = -1;
  ug[3].rank = 2;
  boost::add_edge(0, 1, e_prop{100, 1}, ug);
  boost::add_edge(1, 2, e_prop{200, 2}, ug);
  boost::add_edge(3, 2, e_prop{50, 1}, ug);
  const auto bytes = boost::make_function_property_map<ugraph::edge_descriptor>(
      [&](ugraph::edge_descriptor e) { return ug[e].gbps * 1e9 / 8; });
  const auto seconds = boost::make_function_property_map<ugraph::edge_descriptor>(
      [&](ugraph::edge_descriptor e) { return ug[e].us * 1e-6; });
  const auto u = topo::user_graph::from(ug, boost::get(&v_prop::rank, ug), bytes, seconds, "ug");
  CHECK(u.workers() == 3);
  CHECK(u.switches() == 1);
  CHECK(boost::num_edges(u.view()) == 6);  // undirected edges become cables
  check_model(u);
  const auto [e, ok] = boost::edge(0, 3, u.view());  // rank 0 (user vertex 1) to the switch
  REQUIRE(ok);
  CHECK(u.view()[e].bandwidth == doctest::Approx(25e9));
  CHECK(u.view()[e].latency == doctest::Approx(2e-6));

  // A directed graph stays directed: a one-way ring is valid, a one-way line is not.
  using dgraph = boost::adjacency_list<boost::vecS, boost::vecS, boost::directedS>;
  dgraph ring(3);
  boost::add_edge(0, 1, ring);
  boost::add_edge(1, 2, ring);
  const auto rank_of = boost::make_function_property_map<std::size_t>([](std::size_t v) { return static_cast<int>(v); });
  const auto one = boost::make_function_property_map<dgraph::edge_descriptor>([](dgraph::edge_descriptor) { return 1e9; });
  const auto zero = boost::make_function_property_map<dgraph::edge_descriptor>([](dgraph::edge_descriptor) { return 0.0; });
  CHECK_ERROR_HAS(topo::user_graph::from(ring, rank_of, one, zero), "worker 1 cannot reach worker 0");
  boost::add_edge(2, 0, ring);
  const auto r = topo::user_graph::from(ring, rank_of, one, zero);
  CHECK(boost::num_edges(r.view()) == 3);
  CHECK(r.workers() == 3);
}

TEST_CASE("read_dot: attributes, units, directed and undirected graphs") {
  const auto u = dot(R"(graph cluster {
    // two workers and a switch
    a [kind=worker, rank=0];
    b [rank=1, color=red];
    s [kind=switch];
    a -- s [bandwidth="100Gbps", latency="2us"];
    b -- s [bandwidth="12.5GB/s"];
  })");
  CHECK(u.workers() == 2);
  CHECK(u.switches() == 1);
  CHECK(u.label() == "dot");
  const auto& g = u.view();
  CHECK(g[0].label == "a");
  CHECK(g[1].label == "b");
  CHECK(g[2].label == "s");
  CHECK(g[2].kind == topo::node_kind::switch_);
  REQUIRE(boost::num_edges(g) == 4);
  for (auto [x, y] : {std::pair{0, 2}, std::pair{2, 0}}) {
    const auto [e, ok] = boost::edge(static_cast<std::size_t>(x), static_cast<std::size_t>(y), g);
    REQUIRE(ok);
    CHECK(g[e].bandwidth == doctest::Approx(12.5e9));
    CHECK(g[e].latency == doctest::Approx(2e-6));
  }
  const auto [e, ok] = boost::edge(1, 2, g);
  REQUIRE(ok);
  CHECK(g[e].bandwidth == doctest::Approx(12.5e9));
  CHECK(g[e].latency == doctest::Approx(topo::link{}.latency));  // default

  // Units of bandwidth (plain = bytes/s) and latency (plain = seconds).
  struct unit {
    const char* bandwidth;
    double bytes;
    const char* latency;
    double seconds;
  };
  for (const unit x : {unit{"100Gb/s", 12.5e9, "5e-6", 5e-6}, unit{"100Gbit/s", 12.5e9, "1us", 1e-6},
                       unit{"800Mbps", 1e8, "0.5ms", 5e-4}, unit{"2e9", 2e9, "100ns", 1e-7},
                       unit{"1 TB/s", 1e12, "0", 0.0}, unit{"10kB/s", 1e4, "3 s", 3.0},
                       unit{"25 GBps", 25e9, "1.5 us", 1.5e-6}}) {
    CAPTURE(x.bandwidth);
    CAPTURE(x.latency);
    const auto d = dot(std::string("digraph { a [rank=0]; b [rank=1]; a -> b [bandwidth=\"") + x.bandwidth +
                       "\", latency=\"" + x.latency + "\"]; b -> a; }");
    const auto [f, found] = boost::edge(0, 1, d.view());
    REQUIRE(found);
    CHECK(d.view()[f].bandwidth == doctest::Approx(x.bytes));
    CHECK(d.view()[f].latency == doctest::Approx(x.seconds));
  }

  // A digraph's edges are single directed links; default attributes apply.
  const auto d = dot("digraph { edge [bandwidth=\"10Gbps\"]; a [rank=0]; b [rank=1]; c [rank=2]; a -> b -> c -> a; }");
  CHECK(d.workers() == 3);
  CHECK(boost::num_edges(d.view()) == 3);
  for (auto f : boost::make_iterator_range(boost::edges(d.view())))
    CHECK(d.view()[f].bandwidth == doctest::Approx(1.25e9));
  CHECK(d.racks() == std::vector<std::vector<int>>{{0, 1, 2}});
}

TEST_CASE("read_dot: malformed DOT and bad attributes name the problem") {
  CHECK_ERROR_HAS(dot("digraph { a -> ; }"), "DOT", "malformed", "';'");
  CHECK_ERROR_HAS(dot("digraph { a [rank=0] "), "DOT", "malformed");
  CHECK_ERROR_HAS(dot("not a graph"), "DOT", "malformed");
  CHECK_ERROR_HAS(dot("digraph { a [rank=0]; b [rank=1]; a -> b [bandwidth=\"100Gbs\"]; b -> a; }"),
                  "edge 'a' -> 'b'", "bandwidth '100Gbs'");
  CHECK_ERROR_HAS(dot("graph { a [rank=0]; b [rank=1]; a -- b [bandwidth=0]; }"), "edge 'a' -- 'b'", "bandwidth '0'");
  CHECK_ERROR_HAS(dot("graph { a [rank=0]; b [rank=1]; a -- b [latency=\"-1us\"]; }"), "latency '-1us'");
  CHECK_ERROR_HAS(dot("graph { a [rank=0]; b [rank=1]; a -- b [latency=\"5 fortnights\"]; }"), "latency '5 fortnights'");
  CHECK_ERROR_HAS(dot("graph { a [rank=0]; b [kind=router]; a -- b; }"), "node 'b'", "kind 'router'");
  CHECK_ERROR_HAS(dot("graph { a [rank=0]; b [kind=worker]; a -- b; }"), "node 'b'", "rank");
  CHECK_ERROR_HAS(dot("graph { a [rank=0]; b [rank=one]; a -- b; }"), "node 'b'", "rank 'one'");
  CHECK_ERROR_HAS(dot("graph { a [rank=0]; s [kind=switch, rank=1]; a -- s; }"), "node 's'", "switch");
  CHECK_ERROR_HAS(dot("graph { a [rank=0]; b [rank=1]; c [rank=2]; a -- b; }"), "DOT",
                  "worker 0 cannot reach worker 2");
  CHECK_ERROR_HAS(dot("graph { a [rank=0]; b [rank=0]; a -- b; }"), "duplicate rank 0");
  CHECK_ERROR_HAS(dot("graph { a [rank=0]; b [rank=2]; a -- b; }"), "no worker has rank 1");
  CHECK_ERROR_HAS(dot("graph { s; t; s -- t; }"), "no worker");
  CHECK_ERROR_HAS(dot("graph { a [rank=0]; b [rank=1]; a -- b [class=infiniband]; }"), "edge 'a' -- 'b'",
                  "class 'infiniband' is not a link class");
}

TEST_CASE("read_dot: link classes") {
  std::istringstream in("graph { a [rank=0]; b [rank=1]; s; a -- b [class=nvlink]; a -- s [class=pcie]; b -- s; }");
  const auto u = topo::read_dot(in);
  std::map<std::string, topo::link_class> by_edge;
  const auto g = u.graph();
  for (auto e : boost::make_iterator_range(boost::edges(g)))
    by_edge[g[boost::source(e, g)].label + g[boost::target(e, g)].label] = g[e].cls;
  CHECK(by_edge.at("ab") == topo::link_class::nvlink);
  CHECK(by_edge.at("ba") == topo::link_class::nvlink);
  CHECK(by_edge.at("sa") == topo::link_class::pcie);
  CHECK(by_edge.at("bs") == topo::link_class::unspecified);
  // dgx1 tags its cables.
  std::map<topo::link_class, int> count;
  const auto d = topo::dgx1().graph();
  for (auto e : boost::make_iterator_range(boost::edges(d))) ++count[d[e].cls];
  CHECK(count[topo::link_class::nvlink] == 2 * 16);  // 16 GPU pairs are NVLinked (8 of them with two lanes)
  CHECK(count[topo::link_class::pcie] == 2 * (8 + 4));
  CHECK(count[topo::link_class::socket] == 2);
  CHECK(count[topo::link_class::unspecified] == 0);
}

TEST_CASE("parse_link_sets: sets by ',', classes by '+', errors name the word") {
  using topo::link_class;
  CHECK(dssync::parse_link_sets("nvlink") == std::vector<dssync::link_classes>{topo::classes({link_class::nvlink})});
  CHECK(dssync::parse_link_sets("nvlink,pcie+socket") ==
        std::vector<dssync::link_classes>{topo::classes({link_class::nvlink}),
                                          topo::classes({link_class::pcie, link_class::socket})});
  CHECK(dssync::parse_link_sets("network+network") ==
        std::vector<dssync::link_classes>{topo::classes({link_class::network})});
  CHECK(dssync::to_string_classes(dssync::parse_link_sets("socket+pcie").at(0)) == "pcie+socket");
  CHECK_ERROR_HAS(dssync::parse_link_sets("nvlink,infiniband"), "'nvlink,infiniband'",
                  "'infiniband' is not a link class");
  CHECK_ERROR_HAS(dssync::parse_link_sets(""), "'' is not a link class");
  CHECK_ERROR_HAS(dssync::parse_link_sets("nvlink,"), "'' is not a link class");
  CHECK_ERROR_HAS(dssync::parse_link_sets("pcie++socket"), "'' is not a link class");
  CHECK_THROWS_AS((void)dssync::parse_link_sets("NVLink"), dssync::invalid_argument);
}

TEST_CASE("write_dot and read_dot round-trip every built-in model") {
  for (const auto& t : all_models()) {
    CAPTURE(t.name());
    std::ostringstream out;
    topo::write_dot(out, t);
    CHECK(contains(out.str(), "digraph \"" + t.name() + "\""));
    std::istringstream in(out.str());
    const auto back = topo::read_dot(in);
    CHECK(back.workers() == t.workers());
    CHECK(labelled_vertices(back.view()) == labelled_vertices(t.graph()));
    CHECK(labelled_edges(back.view()) == labelled_edges(t.graph()));  // exact bandwidths and latencies
  }
  // Odd labels fall back to vertex numbers.
  auto g = small_star();
  g[1].label = "a";  // duplicate of vertex 0's
  std::ostringstream out;
  topo::write_dot(out, g);
  CHECK(contains(out.str(), "\"v1\""));
  std::istringstream in(out.str());
  CHECK(topo::read_dot(in).workers() == 3);
}

TEST_CASE("boost::write_graphviz_dp output of a model reads back") {
  const topo::leaf_spine t(2, 3, topo::link{12.5e9, 1e-6}, topo::link{3.125e9, 4e-6});
  auto g = t.graph();
  boost::dynamic_properties dp;
  dp.property("node_id", boost::get(&topo::node::label, g));
  dp.property("rank", boost::make_function_property_map<std::size_t>([&](std::size_t v) {
                return g[v].kind == topo::node_kind::worker ? std::to_string(g[v].rank) : std::string();
              }));
  dp.property("kind", boost::make_function_property_map<std::size_t>([&](std::size_t v) {
                return std::string(g[v].kind == topo::node_kind::worker ? "worker" : "switch");
              }));
  dp.property("bandwidth", boost::get(&topo::link::bandwidth, g));
  dp.property("latency", boost::get(&topo::link::latency, g));
  std::ostringstream out;
  boost::write_graphviz_dp(out, g, dp);
  std::istringstream in(out.str());
  const auto back = topo::read_dot(in);
  CHECK(back.workers() == 6);
  CHECK(labelled_edges(back.view()) == labelled_edges(g));
  CHECK(back.racks() == t.racks());
}

TEST_CASE("read_dot_file") {
  const std::string path = "dssync_test_topologies_" + std::to_string(::getpid()) + ".dot";
  {
    std::ofstream f(path);
    f << "graph { a [rank=0]; b [rank=1]; s; a -- s; b -- s; }\n";
  }
  const auto u = topo::read_dot_file(path);
  std::remove(path.c_str());
  CHECK(u.workers() == 2);
  CHECK(u.label() == "dot:" + path);
  CHECK(contains(u.name(), "dot:" + path + "(2w,1s,4l,#"));
  CHECK_ERROR_HAS(topo::read_dot_file(path), "DOT file", path.c_str(), "cannot be opened");
}

TEST_CASE("parse_spec: every form") {
  struct form {
    const char* spec;
    const char* name;
    int workers;
    const char* kind;
  };
  for (const form f : {
           form{"ring:8", "ring(8)", 8, "ring"},
           form{"ring:8,bw=25", "ring(8,link=25Gb/s)", 8, "ring"},
           form{" ring : 8 , bw = 25 ", "ring(8,link=25Gb/s)", 8, "ring"},
           form{"RING:3", "ring(3)", 3, "ring"},
           form{"star:16", "star(16)", 16, "star"},
           form{"star:4,lat=5e-6", "star(4,link=100Gb/s@5us)", 4, "star"},
           form{"mesh:4", "full_mesh(4)", 4, "mesh"},
           form{"full_mesh:2,bw=200", "full_mesh(2,link=200Gb/s)", 2, "mesh"},
           form{"racks:4,4", "racks(4x4,intra=100Gb/s,uplink=100Gb/s)", 16, "racks"},
           form{"racks:4,4,intra=100,uplink=25", "racks(4x4,intra=100Gb/s,uplink=25Gb/s)", 16, "racks"},
           form{"racks:2,8,bw=40,uplink=10,lat=2us", "racks(2x8,intra=40Gb/s@2us,uplink=10Gb/s@2us)", 16, "racks"},
           form{"fattree:4", "fat_tree(4)", 16, "fattree"},
           form{"fat_tree:6,bw=10", "fat_tree(6,link=10Gb/s)", 54, "fattree"},
           form{"bcube:3,2", "bcube(3,2)", 9, "bcube"},
           form{"bcube:3,2,bw=8", "bcube(3,2,link=8Gb/s)", 9, "bcube"},
           form{"bcube:2,3,bw=1.25GB/s", "bcube(2,3,link=10Gb/s)", 8, "bcube"},
           form{"dgx1", "dgx1", 8, "dgx1"},
           form{"dgx1:", "dgx1", 8, "dgx1"},
           form{"dgx1:0,1,2,5", "dgx1(0,1,2,5)", 4, "dgx1"},
           form{"dgx1:0,1,2,5,nvlink_only", "dgx1(0,1,2,5,nvlink_only)", 4, "dgx1"},
           form{"dgx1:nvlink=100,pcie=64", "dgx1(nvlink=100Gb/s,pcie=64Gb/s)", 8, "dgx1"},
           form{"dgx1:3,bw=80", "dgx1(3,nvlink=80Gb/s,pcie=80Gb/s,qpi=80Gb/s)", 1, "dgx1"},
       }) {
    CAPTURE(f.spec);
    const auto t = topo::parse_spec(f.spec);
    CHECK(t.name() == f.name);
    CHECK(t.workers() == f.workers);
    CHECK(t.kind() == f.kind);
    check_model(t);
  }
  // The models and their links.
  const auto r = topo::parse_spec("racks:4,4,intra=100,uplink=25,lat=3e-6");
  REQUIRE(r.get_if<topo::leaf_spine>() != nullptr);
  CHECK(r.get_if<topo::leaf_spine>()->intra() == topo::link{12.5e9, 3e-6});
  CHECK(r.get_if<topo::leaf_spine>()->uplink() == topo::link{3.125e9, 3e-6});
  CHECK(r.get_if<topo::leaf_spine>()->oversubscription() == doctest::Approx(16.0));  // 4 x 100 / 25
  CHECK(r.get_if<topo::ring>() == nullptr);
  CHECK(r.racks().size() == 4);
  const auto b = topo::parse_spec("bcube:3,2,bw=8");
  CHECK(std::get<topo::bcube>(b.model()).cable().bandwidth == 1e9);
  const auto d = topo::parse_spec("dgx1:0,1,2,5,nvlink=200,pcie=96");
  const auto& dd = std::get<topo::dgx1>(d.model());
  CHECK(dd.gpus() == std::vector<int>{0, 1, 2, 5});
  CHECK(dd.nvlink() == topo::dgx1::default_nvlink);
  CHECK(dd.pcie() == topo::dgx1::default_pcie);
  CHECK(topo::parse_spec("ring:8").get_if<topo::ring>()->cable() == topo::link{});

  // dot:FILE through the reader.
  const std::string path = "dssync_test_spec_" + std::to_string(::getpid()) + ".dot";
  {
    std::ofstream f(path);
    f << "graph { a [rank=0]; b [rank=1]; a -- b [bandwidth=\"10Gbps\"]; }\n";
  }
  const auto t = topo::parse_spec("dot:" + path, topo::read_dot_file);
  std::remove(path.c_str());
  CHECK(t.kind() == "dot");
  CHECK(t.workers() == 2);
  CHECK(contains(t.name(), "dot:" + path));
  check_model(t);

  // any_topology holds any model directly too.
  const topo::any_topology a = topo::fat_tree(2);
  CHECK(a.name() == "fat_tree(2)");
  CHECK(a.kind() == "fattree");
}

TEST_CASE("parse_spec: errors name the spec and the token") {
  CHECK_ERROR_HAS(topo::parse_spec(""), "empty");
  CHECK_ERROR_HAS(topo::parse_spec("rung:8"), "'rung:8'", "unknown topology kind 'rung'");
  CHECK_ERROR_HAS(topo::parse_spec("ring"), "ring needs the worker count", "got 0");
  CHECK_ERROR_HAS(topo::parse_spec("ring:"), "ring needs the worker count");
  CHECK_ERROR_HAS(topo::parse_spec("ring:8,9"), "got 2 numbers", "'9'");
  CHECK_ERROR_HAS(topo::parse_spec("ring:x"), "worker count 'x' is not an integer");
  CHECK_ERROR_HAS(topo::parse_spec("ring:8x"), "'8x' is not an integer");
  CHECK_ERROR_HAS(topo::parse_spec("ring:99999999999"), "'99999999999' is out of range");
  CHECK_ERROR_HAS(topo::parse_spec("ring:0"), "ring", "0");
  CHECK_ERROR_HAS(topo::parse_spec("ring:8,,bw=1"), "empty item");
  CHECK_ERROR_HAS(topo::parse_spec("ring:8,foo=1"), "unknown option 'foo'", "bw, lat");
  CHECK_ERROR_HAS(topo::parse_spec("ring:8,intra=1"), "unknown option 'intra'");
  CHECK_ERROR_HAS(topo::parse_spec("ring:8,bw="), "option 'bw' has no value");
  CHECK_ERROR_HAS(topo::parse_spec("ring:8,=5"), "no name");
  CHECK_ERROR_HAS(topo::parse_spec("ring:8,bw=abc"), "bw=abc", "'abc' is not a positive bandwidth");
  CHECK_ERROR_HAS(topo::parse_spec("ring:8,bw=0"), "'0' is not a positive bandwidth");
  CHECK_ERROR_HAS(topo::parse_spec("ring:8,bw=-1"), "'-1'");
  CHECK_ERROR_HAS(topo::parse_spec("ring:8,bw=1,bw=2"), "'bw' is given twice");
  CHECK_ERROR_HAS(topo::parse_spec("ring:8,lat=soon"), "lat=soon", "'soon' is not a non-negative latency");
  CHECK_ERROR_HAS(topo::parse_spec("star:16,lat=-1"), "'-1'");
  CHECK_ERROR_HAS(topo::parse_spec("racks:4"), "racks needs the rack count and the workers per rack", "got 1");
  CHECK_ERROR_HAS(topo::parse_spec("racks:4,0"), "per rack", "0");
  CHECK_ERROR_HAS(topo::parse_spec("racks:4,4,uplink=fast"), "uplink=fast");
  CHECK_ERROR_HAS(topo::parse_spec("racks:4,4,nvlink=1"), "unknown option 'nvlink'", "intra, uplink");
  CHECK_ERROR_HAS(topo::parse_spec("fattree:3"), "'fattree:3'", "k = 3");
  CHECK_ERROR_HAS(topo::parse_spec("fattree"), "fattree needs k");
  CHECK_ERROR_HAS(topo::parse_spec("bcube:3"), "bcube needs n and k", "got 1");
  CHECK_ERROR_HAS(topo::parse_spec("bcube:0,2"), "n = 0");
  CHECK_ERROR_HAS(topo::parse_spec("bcube:3,0"), "k = 0");
  CHECK_ERROR_HAS(topo::parse_spec("dgx1:0,9"), "GPU id 9");
  CHECK_ERROR_HAS(topo::parse_spec("dgx1:1,1"), "GPU 1", "twice");
  CHECK_ERROR_HAS(topo::parse_spec("dgx1:a"), "GPU id 'a' is not an integer");
  CHECK_ERROR_HAS(topo::parse_spec("dgx1:0,1,2,3,4,5,6,7,0"), "at most 8");
  CHECK_ERROR_HAS(topo::parse_spec("dgx1:0,7,nvlink_only"), "GPUs 0 and 7");
  CHECK_ERROR_HAS(topo::parse_spec("dgx1:uplink=3"), "unknown option 'uplink'", "nvlink, pcie, qpi");
  CHECK_ERROR_HAS(topo::parse_spec("ring:8,nvlink_only"), "got 2 numbers", "'nvlink_only'");
  CHECK_ERROR_HAS(topo::parse_spec("dot:"), "dot needs a file name");
  CHECK_ERROR_HAS(topo::parse_spec("dot:net.dot"), "'dot:net.dot'", "read_dot_file");
  CHECK_ERROR_HAS(topo::parse_spec("dot:/nonexistent/net.dot", topo::read_dot_file), "/nonexistent/net.dot",
                  "cannot be opened");
}

TEST_CASE("bandwidth and latency text") {
  using dssync::detail::parse_bandwidth_text;
  using dssync::detail::parse_duration_text;
  CHECK(parse_bandwidth_text("100", 1e9 / 8) == doctest::Approx(12.5e9));
  CHECK(parse_bandwidth_text("100", 1.0) == doctest::Approx(100.0));
  CHECK(parse_bandwidth_text("100Gbps", 1.0) == doctest::Approx(12.5e9));
  CHECK(parse_bandwidth_text("100GBps", 1.0) == doctest::Approx(100e9));
  CHECK(parse_bandwidth_text("1Kb/s", 1.0) == doctest::Approx(125.0));
  CHECK(!parse_bandwidth_text("", 1.0));
  CHECK(!parse_bandwidth_text("Gbps", 1.0));
  CHECK(!parse_bandwidth_text("100G", 1.0));
  CHECK(!parse_bandwidth_text("100Xb/s", 1.0));
  CHECK(!parse_bandwidth_text("inf", 1.0));
  CHECK(!parse_bandwidth_text("nan", 1.0));
  CHECK(parse_duration_text("2ms") == doctest::Approx(2e-3));
  CHECK(parse_duration_text("2\xC2\xB5s") == doctest::Approx(2e-6));
  CHECK(!parse_duration_text("2 minutes"));
  CHECK(!parse_duration_text("-0.1"));
  CHECK(dssync::detail::link_bandwidth_text(19.2e9) == "153.6Gb/s");
  CHECK(dssync::detail::link_bandwidth_text(12e9) == "96Gb/s");
  CHECK(dssync::detail::link_latency_text(1e-6) == "1us");
  CHECK(dssync::detail::link_latency_text(2.5e-3) == "2.5ms");
  CHECK(dssync::detail::link_latency_text(5e-8) == "50ns");
  CHECK(dssync::detail::link_latency_text(0) == "0s");
  CHECK(dssync::detail::link_latency_text(2) == "2s");
}

}  // TEST_SUITE
