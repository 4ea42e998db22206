// Tree packing's graph layer and packings (algorithms/trees/): Chu-Liu/Edmonds against brute force, the
// Edmonds and ForestColl bounds against brute-force cuts, and broadcast packings on every NVLink-connected
// GPU subset of a DGX-1 from every root (exact mode meets the bound exactly, Blink mode within 5 %), on a
// DGX-1 with its PCIe switches and on switch fabrics (exact mode after edge splitting), and bad input.

#include <doctest/doctest.h>

#include <dssync/algorithms/trees/arborescence.hpp>
#include <dssync/algorithms/trees/digraph.hpp>
#include <dssync/algorithms/trees/packing.hpp>
#include <dssync/core/error.hpp>
#include <dssync/topology/dgx1.hpp>
#include <dssync/topology/fat_tree.hpp>
#include <dssync/topology/racks.hpp>
#include <dssync/topology/ring.hpp>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace {

namespace trees = dssync::algorithms::trees;
namespace topo = dssync::topology;

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

/// The cheapest arborescence by trying every choice of one entering arc per vertex.
std::optional<double> brute_arborescence(int n, int root, const std::vector<trees::costed_arc>& a) {
  std::vector<std::vector<int>> into(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i].to != root && a[i].from != a[i].to) into[static_cast<std::size_t>(a[i].to)].push_back(static_cast<int>(i));
  std::optional<double> best;
  std::vector<int> pick(static_cast<std::size_t>(n), 0);
  while (true) {
    bool valid = true;
    double cost = 0;
    std::vector<int> parent(static_cast<std::size_t>(n), -1);
    for (int v = 0; v < n && valid; ++v) {
      if (v == root) continue;
      if (into[static_cast<std::size_t>(v)].empty()) return std::nullopt;
      const auto& x = a[static_cast<std::size_t>(into[static_cast<std::size_t>(v)][static_cast<std::size_t>(pick[static_cast<std::size_t>(v)])])];
      parent[static_cast<std::size_t>(v)] = x.from;
      cost += x.cost;
    }
    for (int v = 0; v < n && valid; ++v) {  // every vertex reaches the root by parents
      int u = v, steps = 0;
      while (u != root && steps <= n) u = parent[static_cast<std::size_t>(u)], ++steps;
      valid = u == root;
    }
    if (valid && (!best || cost < *best)) best = cost;
    int v = 0;
    for (; v < n; ++v) {
      if (v == root) continue;
      if (++pick[static_cast<std::size_t>(v)] < static_cast<int>(into[static_cast<std::size_t>(v)].size())) break;
      pick[static_cast<std::size_t>(v)] = 0;
    }
    if (v == n) return best;
  }
}

/// min over vertex sets X without the root, holding at least one rank, of the capacity into X.
std::int64_t brute_bound(const trees::digraph& d, int root) {
  std::int64_t best = std::numeric_limits<std::int64_t>::max();
  for (unsigned mask = 1; mask < (1u << d.vertices); ++mask) {
    if (mask & (1u << root)) continue;
    bool has_rank = false;
    for (int v = 0; v < d.compute; ++v) has_rank = has_rank || ((mask >> v) & 1u);
    if (!has_rank) continue;
    std::int64_t in = 0;
    for (const auto& a : d.arcs)
      if (!((mask >> a.from) & 1u) && ((mask >> a.to) & 1u)) in += a.capacity;
    best = std::min(best, in);
  }
  return best;
}

/// max x with out(S) >= x·|S ∩ ranks| for every S holding some ranks but not all (floor).
std::int64_t brute_allgather(const trees::digraph& d) {
  double best = std::numeric_limits<double>::infinity();
  const unsigned all_ranks = (1u << d.compute) - 1;
  for (unsigned mask = 1; mask < (1u << d.vertices); ++mask) {
    const unsigned r = mask & all_ranks;
    if (r == 0 || r == all_ranks) continue;
    std::int64_t out = 0;
    for (const auto& a : d.arcs)
      if (((mask >> a.from) & 1u) && !((mask >> a.to) & 1u)) out += a.capacity;
    best = std::min(best, static_cast<double>(out) / __builtin_popcount(r));
  }
  return static_cast<std::int64_t>(best);
}

trees::digraph random_digraph(std::mt19937& gen, int ranks, int switches, double density) {
  trees::digraph d;
  d.compute = ranks;
  d.vertices = ranks + switches;
  d.labels.assign(static_cast<std::size_t>(d.vertices), "");
  std::uniform_real_distribution<double> u(0, 1);
  std::uniform_int_distribution<int> cap(1, 5);
  for (int a = 0; a < d.vertices; ++a)
    for (int b = a + 1; b < d.vertices; ++b)
      if (u(gen) < density || b == a + 1) {  // a path keeps it connected; links are full duplex
        const std::int64_t c = cap(gen) * 1000;
        d.add(a, b, c);
        d.add(b, a, c);
      }
  return d;
}

/// The NVLink-connected subsets of a DGX-1's GPUs with 2 to 8 GPUs.
std::vector<std::vector<int>> nvlink_subsets() {
  std::vector<std::vector<int>> out;
  for (unsigned mask = 1; mask < 256; ++mask) {
    std::vector<int> g;
    for (int i = 0; i < 8; ++i)
      if ((mask >> i) & 1u) g.push_back(i);
    if (g.size() < 2) continue;
    if (topo::dgx1(g).nvlink_connected()) out.push_back(g);
  }
  return out;
}

std::string text(const std::vector<int>& v) {
  std::string s;
  for (int x : v) s += (s.empty() ? "" : ",") + std::to_string(x);
  return s;
}

}  // namespace

TEST_SUITE_BEGIN("trees");

TEST_CASE("Chu-Liu/Edmonds finds the cheapest arborescence (brute force on random graphs, cycles included)") {
  std::mt19937 gen(7);
  std::uniform_real_distribution<double> cost(-2, 10);
  for (int trial = 0; trial < 300; ++trial) {
    const int n = 1 + trial % 6;
    std::vector<trees::costed_arc> arcs;
    std::uniform_real_distribution<double> u(0, 1);
    for (int a = 0; a < n; ++a)
      for (int b = 0; b < n; ++b)
        if (a != b && u(gen) < 0.55) arcs.push_back({a, b, std::round(cost(gen) * 4) / 4});  // ties too
    const int root = trial % n;
    const auto got = trees::min_arborescence(n, root, arcs);
    const auto want = brute_arborescence(n, root, arcs);
    INFO("trial " << trial << ", n " << n << ", root " << root);
    REQUIRE(got.has_value() == want.has_value());
    if (!got) continue;
    REQUIRE(got->size() == static_cast<std::size_t>(n - 1));
    double c = 0;
    std::vector<int> parent(static_cast<std::size_t>(n), -1);
    for (int i : *got) {
      c += arcs[static_cast<std::size_t>(i)].cost;
      REQUIRE(parent[static_cast<std::size_t>(arcs[static_cast<std::size_t>(i)].to)] == -1);  // one parent each
      parent[static_cast<std::size_t>(arcs[static_cast<std::size_t>(i)].to)] = arcs[static_cast<std::size_t>(i)].from;
    }
    for (int v = 0; v < n; ++v) {
      int x = v, steps = 0;
      while (x != root && steps <= n) x = parent[static_cast<std::size_t>(x)], ++steps;
      REQUIRE_MESSAGE(x == root, "vertex " << v << " does not reach the root");
    }
    CHECK(c == doctest::Approx(*want).epsilon(1e-12));
  }
}

TEST_CASE("the Edmonds bound and ForestColl's allgather bound equal brute-force cuts, switches included") {
  std::mt19937 gen(11);
  for (int trial = 0; trial < 60; ++trial) {
    const int ranks = 2 + trial % 5, switches = trial % 3;
    const auto d = random_digraph(gen, ranks, switches, 0.4);
    INFO("trial " << trial << ": " << ranks << " ranks, " << switches << " switches");
    for (int r = 0; r < ranks; ++r) CHECK(trees::broadcast_bound(d, r) == brute_bound(d, r));
    CHECK(trees::allgather_bound(d) == brute_allgather(d));
  }
  // A ring of n with links of c each way: the bound is 2c from any root; allgather 2c/(n-1) per rank.
  const auto ring = trees::from_network(topo::ring(5, {10e9, 1e-6}).graph());
  CHECK(trees::broadcast_bound(ring, 3) == 20'000'000'000);
  CHECK(trees::allgather_bound(ring) == 5'000'000'000);
}

TEST_CASE("every NVLink-connected DGX-1 subset, every root: exact mode meets the bound, Blink mode within 5 %") {
  std::size_t most_exact = 0, most_blink = 0, cases = 0;
  double worst_blink = 1;
  for (const auto& gpus : nvlink_subsets()) {
    const auto d = trees::from_network(topo::dgx1(gpus).nvlink_only().graph());
    for (int root = 0; root < d.compute; ++root) {
      INFO("GPUs {" << text(gpus) << "}, root " << root);
      const auto exact = trees::pack_broadcast(d, root, {.mode = trees::pack_mode::exact});
      REQUIRE(trees::check_packing(exact) == "");
      REQUIRE(exact.bound == static_cast<double>(trees::broadcast_bound(d, root)));
      CHECK(exact.rate == exact.bound);  // integral rates in bytes/s: exactly
      const auto blink = trees::pack_broadcast(d, root, {.mode = trees::pack_mode::blink});
      REQUIRE(trees::check_packing(blink) == "");
      CHECK(blink.rate <= blink.bound * (1 + 1e-12));
      CHECK(blink.efficiency() >= 0.95);
      most_exact = std::max(most_exact, exact.tree_count());
      most_blink = std::max(most_blink, blink.tree_count());
      worst_blink = std::min(worst_blink, blink.efficiency());
      ++cases;
    }
  }
  MESSAGE(cases << " (subset, root) cases; most trees: exact " << most_exact << ", blink " << most_blink
                << "; worst Blink efficiency " << worst_blink);
  CHECK(cases > 200);
}

TEST_CASE("the DGX-1 with its PCIe switches and CPUs: switches split off, exact mode meets the bound, Blink within 5 %") {
  for (const auto& gpus : std::vector<std::vector<int>>{{0, 1, 2, 3, 4, 5, 6, 7}, {0, 5}, {0, 1, 6}, {2, 3, 4, 5}}) {
    const auto d = trees::from_network(topo::dgx1(gpus).graph());
    REQUIRE(d.switches() > 0);
    INFO("GPUs {" << text(gpus) << "}");
    const auto exact = trees::pack_broadcast(d, 0, {.mode = trees::pack_mode::exact});
    CHECK(trees::check_packing(exact) == "");
    CHECK(exact.graph.switches() == 0);
    CHECK(exact.rate == exact.bound);
    CHECK(exact.routes.size() == exact.graph.arcs.size());
    for (std::size_t i = 0; i < exact.routes.size(); ++i) {  // every route runs from the arc's tail to its head
      CHECK(exact.routes[i].front() == exact.graph.arcs[i].from);
      CHECK(exact.routes[i].back() == exact.graph.arcs[i].to);
    }
    const auto blink = trees::pack_broadcast(d, 0);
    CHECK(trees::check_packing(blink) == "");
    CHECK(blink.efficiency() >= 0.95);
    MESSAGE("DGX-1 {" << text(gpus) << "} with PCIe: bound " << exact.bound / 1e9 << " GB/s, exact "
                      << exact.tree_count() << " trees, Blink " << blink.efficiency() << " of the bound with "
                      << blink.tree_count() << " trees");
  }
}

TEST_CASE("switch fabrics: racks and a fat tree, exact mode meets the bound after edge splitting") {
  const std::vector<std::pair<std::string, topo::network>> fabrics = {
      {"racks:2,2", topo::leaf_spine(2, 2).graph()},
      {"racks:2,3 oversubscribed", topo::leaf_spine(2, 3, {12.5e9, 1e-6}, {3.125e9, 1e-6}).graph()},
      {"racks:4,4", topo::leaf_spine(4, 4).graph()},
      {"fattree:4", topo::fat_tree(4).graph()},
  };
  for (const auto& fabric : fabrics) {
    const auto d = trees::from_network(fabric.second);
    INFO(fabric.first);
    for (int root : {0, d.compute - 1}) {
      const auto exact = trees::pack_broadcast(d, root, {.mode = trees::pack_mode::exact});
      CHECK(trees::check_packing(exact) == "");
      CHECK(exact.rate == exact.bound);
      if (d.vertices <= 20) CHECK(exact.bound == static_cast<double>(brute_bound(d, root)));
    }
  }
}

TEST_CASE("bad input is refused, naming the value") {
  const auto d = trees::from_network(topo::dgx1({0, 1, 2}).nvlink_only().graph());
  try {
    (void)trees::pack_broadcast(d, 3);
    FAIL("root 3 accepted");
  } catch (const dssync::invalid_argument& e) {
    CHECK(contains(e.what(), "root 3 is not a rank of 3"));
  }
  try {
    (void)trees::pack_broadcast(d, 0, {.epsilon = 0});
    FAIL("epsilon 0 accepted");
  } catch (const dssync::invalid_argument& e) {
    CHECK(contains(e.what(), "epsilon"));
  }
  trees::digraph cut;  // rank 2 has no way in
  cut.compute = cut.vertices = 3;
  cut.labels = {"a", "b", "c"};
  cut.add(0, 1, 5);
  cut.add(1, 0, 5);
  cut.add(2, 0, 5);
  try {
    (void)trees::pack_broadcast(cut, 0, {.mode = trees::pack_mode::exact});
    FAIL("an unreachable rank accepted");
  } catch (const dssync::invalid_argument& e) {
    CHECK(contains(e.what(), "rank 2 ('c') cannot be reached from root 0 ('a')"));
  }
  topo::network bad;
  topo::add_workers(bad, 2);
  boost::add_edge(0, 1, topo::link{0, 1e-6}, bad);
  try {
    (void)trees::from_network(bad);
    FAIL("a link without bandwidth accepted");
  } catch (const dssync::invalid_argument& e) {
    CHECK(contains(e.what(), "'w0'->'w1' has bandwidth 0"));
  }
  // One rank: nothing to send, no trees.
  const auto one = trees::pack_broadcast(trees::from_network(topo::dgx1({4}).graph()), 0);
  CHECK(one.tree_count() == 0);
  CHECK(one.efficiency() == 1.0);
}

TEST_SUITE_END();
