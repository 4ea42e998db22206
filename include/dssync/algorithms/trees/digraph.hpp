#pragma once
/// \file
/// `trees::digraph`: the capacitated directed graph that tree packing works on, built from any topology's
/// Boost.Graph network, and `trees::flow_network`, Boost.Graph's push-relabel max-flow over it.
///
/// Vertices 0..compute-1 are the ranks (vertex r is rank r); switches follow. A full-duplex cable is two arcs.
/// Parallel arcs are merged (their capacities add), self-loops dropped. Capacities are integers in bytes/s,
/// so that cuts and flows are exact: Boost.Graph's push-relabel checks its flow with exact arithmetic, and
/// the exact packing must meet the bound to the last byte/s, not approach it (ALGORITHMS.md).

#include <boost/graph/adjacency_list.hpp>
#include <boost/graph/push_relabel_max_flow.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "dssync/core/error.hpp"
#include "dssync/topology/network.hpp"

namespace dssync::algorithms::trees {

/// Capacity in bytes/s, exact.
using capacity_t = std::int64_t;

/// A directed arc with its capacity.
struct arc {
  int from = 0, to = 0;
  capacity_t capacity = 0;
  friend bool operator==(const arc&, const arc&) = default;
};

/// A capacitated digraph: `compute` rank vertices first, then switch vertices.
struct digraph {
  int vertices = 0;
  int compute = 0;
  std::vector<arc> arcs;
  std::vector<std::string> labels;  ///< one per vertex

  [[nodiscard]] bool is_switch(int v) const noexcept { return v >= compute; }
  [[nodiscard]] int switches() const noexcept { return vertices - compute; }
  /// The arc index from `a` to `b`, or -1.
  [[nodiscard]] int find(int a, int b) const noexcept {
    for (std::size_t i = 0; i < arcs.size(); ++i)
      if (arcs[i].from == a && arcs[i].to == b) return static_cast<int>(i);
    return -1;
  }
  /// Adds `c` to the arc a->b (creating it). Self-loops and zero capacities are ignored.
  void add(int a, int b, capacity_t c) {
    if (a == b || c <= 0) return;
    if (const int i = find(a, b); i >= 0) {
      arcs[static_cast<std::size_t>(i)].capacity += c;
      return;
    }
    arcs.push_back({a, b, c});
  }
  /// Total capacity into `v` and out of `v`.
  [[nodiscard]] capacity_t in_capacity(int v) const noexcept {
    capacity_t s = 0;
    for (const auto& a : arcs)
      if (a.to == v) s += a.capacity;
    return s;
  }
  [[nodiscard]] capacity_t out_capacity(int v) const noexcept {
    capacity_t s = 0;
    for (const auto& a : arcs)
      if (a.from == v) s += a.capacity;
    return s;
  }
  [[nodiscard]] std::string label(int v) const {
    return v >= 0 && static_cast<std::size_t>(v) < labels.size() && !labels[static_cast<std::size_t>(v)].empty()
               ? labels[static_cast<std::size_t>(v)]
               : std::to_string(v);
  }
};

/// A bandwidth in bytes/s as an exact capacity (rounded to the nearest byte/s).
/// \throws invalid_argument if it is not finite and positive, or too large for 64 bits.
[[nodiscard]] inline capacity_t to_capacity(double bytes_per_second, const std::string& where) {
  if (!(bytes_per_second > 0) || !std::isfinite(bytes_per_second) || bytes_per_second > 1e17)
    throw invalid_argument("trees::digraph: " + where + " has bandwidth " + std::to_string(bytes_per_second) +
                           " bytes/s; tree packing needs a finite positive bandwidth below 1e17");
  return std::max<capacity_t>(1, static_cast<capacity_t>(std::llround(bytes_per_second)));
}

/// The digraph of a topology's network: ranks keep their numbers, switches follow in vertex order. With
/// `classes`, only the links of those classes give arcs (every vertex stays): NVLink and PCIe packed as
/// separate graphs, as Blink does.
/// \throws invalid_argument naming the vertex if the ranks are not 0..W-1 exactly once, or a link has no
///   usable bandwidth.
[[nodiscard]] inline digraph from_network(const topology::network& g, topology::link_classes classes = 0) {
  digraph d;
  const auto nv = static_cast<int>(boost::num_vertices(g));
  std::vector<int> id(static_cast<std::size_t>(nv), -1);
  int workers = 0;
  for (int v = 0; v < nv; ++v)
    if (g[static_cast<std::size_t>(v)].kind == topology::node_kind::worker) ++workers;
  d.compute = workers;
  d.vertices = nv;
  d.labels.assign(static_cast<std::size_t>(nv), "");
  std::vector<bool> seen(static_cast<std::size_t>(workers), false);
  int next_switch = workers;
  for (int v = 0; v < nv; ++v) {
    const auto& n = g[static_cast<std::size_t>(v)];
    if (n.kind == topology::node_kind::worker) {
      if (n.rank < 0 || n.rank >= workers || seen[static_cast<std::size_t>(n.rank)])
        throw invalid_argument("trees::digraph: vertex " + std::to_string(v) + " ('" + n.label + "') has rank " +
                               std::to_string(n.rank) + ", but the " + std::to_string(workers) +
                               " workers must have the ranks 0.." + std::to_string(workers - 1) + " once each");
      seen[static_cast<std::size_t>(n.rank)] = true;
      id[static_cast<std::size_t>(v)] = n.rank;
    } else {
      id[static_cast<std::size_t>(v)] = next_switch++;
    }
    d.labels[static_cast<std::size_t>(id[static_cast<std::size_t>(v)])] = n.label;
  }
  std::map<std::pair<int, int>, std::size_t> at;  // parallel arcs merge (digraph::add's search is linear)
  for (const auto e : boost::make_iterator_range(boost::edges(g))) {
    if (!topology::allows(classes, g[e].cls)) continue;
    const auto a = static_cast<int>(boost::source(e, g)), b = static_cast<int>(boost::target(e, g));
    const capacity_t c = to_capacity(g[e].bandwidth, "link '" + g[static_cast<std::size_t>(a)].label + "'->'" +
                                                         g[static_cast<std::size_t>(b)].label + "'");
    const int u = id[static_cast<std::size_t>(a)], v = id[static_cast<std::size_t>(b)];
    if (u == v) continue;
    const auto [it, fresh] = at.try_emplace({u, v}, d.arcs.size());
    if (fresh) d.arcs.push_back({u, v, c});
    else d.arcs[it->second].capacity += c;
  }
  return d;
}

/// Max-flow on a digraph with changing capacities: Boost.Graph's `push_relabel_max_flow` on a graph built
/// once, with a reverse arc of capacity 0 paired with every arc (as Boost.Graph requires).
class flow_network {
  using traits = boost::adjacency_list_traits<boost::vecS, boost::vecS, boost::directedS>;
  using graph = boost::adjacency_list<
      boost::vecS, boost::vecS, boost::directedS, boost::no_property,
      boost::property<boost::edge_capacity_t, capacity_t,
                      boost::property<boost::edge_residual_capacity_t, capacity_t,
                                      boost::property<boost::edge_reverse_t, traits::edge_descriptor>>>>;

 public:
  /// The flow network of `d`'s arcs, with `d`'s capacities.
  explicit flow_network(const digraph& d) : g_(static_cast<std::size_t>(d.vertices)) {
    for (const auto& a : d.arcs) (void)add_arc(a.from, a.to, a.capacity);
  }
  /// Adds an arc `from`->`to` of capacity `c` (with its reverse arc) and returns its index, which follows
  /// the digraph's arcs.
  std::size_t add_arc(int from, int to, capacity_t c) {
    auto cap = boost::get(boost::edge_capacity, g_);
    auto rev = boost::get(boost::edge_reverse, g_);
    const auto e = boost::add_edge(static_cast<std::size_t>(from), static_cast<std::size_t>(to), g_).first;
    const auto r = boost::add_edge(static_cast<std::size_t>(to), static_cast<std::size_t>(from), g_).first;
    cap[e] = c;
    cap[r] = 0;
    rev[e] = r;
    rev[r] = e;
    forward_.push_back(e);
    return forward_.size() - 1;
  }
  /// Sets the capacity of arc `i` (an index into the digraph's arcs).
  void set(std::size_t i, capacity_t c) { boost::get(boost::edge_capacity, g_)[forward_[i]] = c; }
  /// Sets every arc's capacity from `caps` (one per arc).
  void set_all(const std::vector<capacity_t>& caps) {
    for (std::size_t i = 0; i < caps.size(); ++i) set(i, caps[i]);
  }
  /// The maximum s->t flow.
  [[nodiscard]] capacity_t max_flow(int s, int t) {
    if (s == t) return std::numeric_limits<capacity_t>::max();
    return boost::push_relabel_max_flow(g_, static_cast<std::size_t>(s), static_cast<std::size_t>(t));
  }
  /// min over compute vertices v != root of the root->v max-flow (+max for a single vertex).
  [[nodiscard]] capacity_t rooted_connectivity(int root, int compute) {
    capacity_t k = std::numeric_limits<capacity_t>::max();
    for (int v = 0; v < compute; ++v)
      if (v != root) k = std::min(k, max_flow(root, v));
    return k;
  }
  /// Whether every compute vertex v != root has a root->v max-flow of at least `k`: stops at the first
  /// that has not, and tries the last one that failed first (a split or a tree arc that breaks the bound
  /// usually breaks it at the same rank again).
  [[nodiscard]] bool connectivity_at_least(int root, int compute, capacity_t k) {
    if (last_short_ >= 0 && last_short_ < compute && last_short_ != root && max_flow(root, last_short_) < k) return false;
    for (int v = 0; v < compute; ++v)
      if (v != root && v != last_short_ && max_flow(root, v) < k) {
        last_short_ = v;
        return false;
      }
    return true;
  }

 private:
  graph g_;
  std::vector<traits::edge_descriptor> forward_;
  int last_short_ = -1;
};

/// `d` with every arc reversed (a reduce's data flows against the arcs of the broadcast trees it packs).
[[nodiscard]] inline digraph reversed(digraph d) {
  for (auto& a : d.arcs) std::swap(a.from, a.to);
  return d;
}

/// The capacities of `d`'s arcs, in arc order.
[[nodiscard]] inline std::vector<capacity_t> capacities(const digraph& d) {
  std::vector<capacity_t> c;
  c.reserve(d.arcs.size());
  for (const auto& a : d.arcs) c.push_back(a.capacity);
  return c;
}

/// The Edmonds bound on broadcast from `root` (bytes/s): by Edmonds' branching theorem (1973), the largest
/// total rate of spanning arborescences rooted at `root` that the capacities allow equals the minimum over
/// every other rank v of the root->v min cut. Switches relay but need not be reached. The same value bounds
/// reduce to `root` (on the reversed arcs, which have the same capacities on full-duplex links).
/// \throws invalid_argument naming the root if it is not a rank.
[[nodiscard]] inline capacity_t broadcast_bound(const digraph& d, int root) {
  if (root < 0 || root >= d.compute)
    throw invalid_argument("trees::broadcast_bound: root " + std::to_string(root) + " is not a rank of " +
                           std::to_string(d.compute));
  if (d.compute == 1) return std::numeric_limits<capacity_t>::max();
  flow_network f(d);
  return f.rooted_connectivity(root, d.compute);
}

/// The allgather (and reduce-scatter) bound of ForestColl (Zhao et al., arXiv 2402.06787), in bytes/s per
/// rank: the largest x such that every vertex set S that holds some ranks but not all can send x·|S ∩ ranks|
/// out of S (each rank's share must leave every set that holds it). Computed exactly with max-flow: a source
/// feeds every rank but v at x, and v must receive (W-1)·x; a cut of that network separating v is
/// x·(ranks outside S but v) + out(S), so the condition for every v is the condition for every S. The
/// largest x is found by bisection, to the byte/s below the exact (rational) optimum.
[[nodiscard]] inline capacity_t allgather_bound(const digraph& d) {
  const int w = d.compute;
  if (w <= 1) return std::numeric_limits<capacity_t>::max();
  digraph e = d;
  const int src = e.vertices++;
  e.labels.push_back("source");
  for (int u = 0; u < w; ++u) e.arcs.push_back({src, u, 1});
  flow_network f(e);
  const std::size_t first = d.arcs.size();
  auto feasible = [&](capacity_t x) {
    for (int u = 0; u < w; ++u) f.set(first + static_cast<std::size_t>(u), x);
    for (int v = 0; v < w; ++v) {
      f.set(first + static_cast<std::size_t>(v), 0);  // v's own share is already there
      const bool ok = f.max_flow(src, v) >= static_cast<capacity_t>(w - 1) * x;
      f.set(first + static_cast<std::size_t>(v), x);
      if (!ok) return false;
    }
    return true;
  };
  capacity_t lo = 0, hi = 1;
  for (const auto& a : d.arcs) hi = std::max(hi, a.capacity);
  hi = hi * static_cast<capacity_t>(w) + 1;
  while (hi - lo > 1) {
    const capacity_t mid = lo + (hi - lo) / 2;
    (feasible(mid) ? lo : hi) = mid;
  }
  return lo;
}

}  // namespace dssync::algorithms::trees
