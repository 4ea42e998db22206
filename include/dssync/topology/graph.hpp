#pragma once
/// \file
/// `topology::user_graph`: any user Boost.Graph graph as a topology, and `validate_network`, the check every
/// topology's network passes.

#include <boost/graph/breadth_first_search.hpp>
#include <boost/graph/graph_traits.hpp>
#include <boost/graph/reverse_graph.hpp>
#include <boost/property_map/property_map.hpp>
#include <boost/range/iterator_range.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "dssync/core/error.hpp"
#include "dssync/core/topology.hpp"
#include "dssync/topology/network.hpp"

namespace dssync::detail {

inline std::string network_vertex_text(const topology::network& g, topology::network::vertex_descriptor v) {
  std::string s = "vertex " + std::to_string(v);
  if (!g[v].label.empty()) s += " ('" + g[v].label + "')";
  return s;
}

inline std::string network_edge_text(const topology::network& g, topology::network::edge_descriptor e) {
  const auto a = boost::source(e, g), b = boost::target(e, g);
  std::string s = "link " + std::to_string(a) + "->" + std::to_string(b);
  if (!g[a].label.empty() || !g[b].label.empty()) s += " ('" + g[a].label + "'->'" + g[b].label + "')";
  return s;
}

inline std::string topology_general_number(double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%g", x);
  return buf;
}

/// Which vertices `s` reaches in `g` (a graph or a reverse_graph).
template <class G>
std::vector<boost::default_color_type> bfs_reached_from(const G& g, std::size_t s) {
  std::vector<boost::default_color_type> color(boost::num_vertices(g), boost::white_color);
  auto cmap = boost::make_iterator_property_map(color.begin(), boost::get(boost::vertex_index, g));
  boost::queue<typename boost::graph_traits<G>::vertex_descriptor> q;
  boost::breadth_first_visit(g, s, q, boost::default_bfs_visitor{}, cmap);
  return color;
}

/// FNV-1a, 64 bits, over the bytes of `x`.
template <class T>
void fnv1a64_mix(std::uint64_t& h, const T& x) {
  static_assert(std::is_trivially_copyable_v<T>);
  unsigned char b[sizeof(T)];
  std::memcpy(b, &x, sizeof(T));
  for (unsigned char c : b) h = (h ^ c) * 0x100000001b3ULL;
}

}  // namespace dssync::detail

namespace dssync::topology {

/// Checks that `g` is a usable topology network and returns its worker count W.
///
/// Requirements, each violation an `invalid_argument` naming the vertices, links and values involved:
///  1. at least one worker vertex;
///  2. the workers' ranks are 0..W-1, each exactly once; switches have rank -1;
///  3. no self-loops; every link's bandwidth is positive and finite and its latency finite and non-negative;
///  4. every worker reaches every other worker along directed links ("worker 3 cannot reach worker 5").
///
/// It does not require the workers to be vertices 0..W-1 (user_graph renumbers them).
inline int validate_network(const network& g) {
  const std::size_t nv = boost::num_vertices(g);
  std::size_t workers = 0;
  for (std::size_t v = 0; v < nv; ++v) workers += g[v].kind == node_kind::worker;
  if (workers == 0)
    throw invalid_argument("topology network: no worker vertex among its " + std::to_string(nv) + " vertices");
  const int w = static_cast<int>(workers);
  std::vector<std::size_t> vertex_of(workers, nv);  // rank -> vertex
  for (std::size_t v = 0; v < nv; ++v) {
    const int r = g[v].rank;
    if (g[v].kind != node_kind::worker) {
      if (r != -1)
        throw invalid_argument("topology network: switch " + detail::network_vertex_text(g, v) + " has rank " +
                               std::to_string(r) + "; switches must have rank -1");
      continue;
    }
    if (r < 0 || r >= w) {
      std::vector<bool> present(workers, false);
      for (std::size_t u = 0; u < nv; ++u)
        if (g[u].kind == node_kind::worker && g[u].rank >= 0 && g[u].rank < w)
          present[static_cast<std::size_t>(g[u].rank)] = true;
      const auto missing = std::find(present.begin(), present.end(), false) - present.begin();
      std::string msg = "topology network: worker " + detail::network_vertex_text(g, v) + " has rank " +
                        std::to_string(r) + ", but its " + std::to_string(w) + " workers need ranks 0.." +
                        std::to_string(w - 1);
      if (missing < w) msg += " (no worker has rank " + std::to_string(missing) + ")";
      throw invalid_argument(msg);
    }
    auto& slot = vertex_of[static_cast<std::size_t>(r)];
    if (slot != nv)
      throw invalid_argument("topology network: duplicate rank " + std::to_string(r) + ": worker " +
                             detail::network_vertex_text(g, slot) + " and worker " + detail::network_vertex_text(g, v) +
                             " both have it");
    slot = v;
  }
  for (auto e : boost::make_iterator_range(boost::edges(g))) {
    const auto a = boost::source(e, g), b = boost::target(e, g);
    if (a == b) throw invalid_argument("topology network: " + detail::network_edge_text(g, e) + " is a self-loop");
    const link& l = g[e];
    if (!(l.bandwidth > 0) || !std::isfinite(l.bandwidth))
      throw invalid_argument("topology network: " + detail::network_edge_text(g, e) + " has bandwidth " +
                             detail::topology_general_number(l.bandwidth) + " bytes/s; it must be positive and finite");
    if (!(l.latency >= 0) || !std::isfinite(l.latency))
      throw invalid_argument("topology network: " + detail::network_edge_text(g, e) + " has latency " +
                             detail::topology_general_number(l.latency) + " s; it must be finite and non-negative");
  }
  // Every worker reaches every other iff rank 0 reaches all of them and all of them reach rank 0.
  const auto name_pair = [&](int from, int to) {
    std::string msg = "topology network: worker " + std::to_string(from) + " cannot reach worker " + std::to_string(to);
    const auto& lf = g[vertex_of[static_cast<std::size_t>(from)]].label;
    const auto& lt = g[vertex_of[static_cast<std::size_t>(to)]].label;
    if (!lf.empty() && !lt.empty()) msg += " (no directed path from '" + lf + "' to '" + lt + "')";
    return msg;
  };
  const auto fwd = detail::bfs_reached_from(g, vertex_of[0]);
  for (int r = 1; r < w; ++r)
    if (fwd[vertex_of[static_cast<std::size_t>(r)]] == boost::white_color) throw invalid_argument(name_pair(0, r));
  const auto bwd = detail::bfs_reached_from(boost::make_reverse_graph(g), vertex_of[0]);
  for (int r = 1; r < w; ++r)
    if (bwd[vertex_of[static_cast<std::size_t>(r)]] == boost::white_color) throw invalid_argument(name_pair(r, 0));
  return w;
}

/// Any user network as a topology: workers, switches and directed links with bandwidth and latency.
///
/// The constructor validates the network (validate_network) and renumbers its vertices so that vertices
/// 0..W-1 are the workers in rank order, followed by the switches in their original order; edges keep
/// their order. Named `user_graph` because a member function cannot share its class's name, and every
/// topology has `graph()`.
class user_graph {
 public:
  /// \throws invalid_argument naming the problem if `g` fails validate_network.
  explicit user_graph(const network& g, std::string label = "graph") : label_(std::move(label)) {
    const int w = validate_network(g);
    const std::size_t nv = boost::num_vertices(g);
    std::vector<std::size_t> order(nv), new_id(nv);
    std::size_t next = static_cast<std::size_t>(w);
    for (std::size_t v = 0; v < nv; ++v)
      new_id[v] = g[v].kind == node_kind::worker ? static_cast<std::size_t>(g[v].rank) : next++;
    for (std::size_t v = 0; v < nv; ++v) order[new_id[v]] = v;
    for (std::size_t i = 0; i < nv; ++i) boost::add_vertex(g[order[i]], g_);
    for (auto e : boost::make_iterator_range(boost::edges(g)))
      boost::add_edge(new_id[boost::source(e, g)], new_id[boost::target(e, g)], g[e], g_);
    workers_ = w;
    std::uint64_t h = 0xcbf29ce484222325ULL;
    detail::fnv1a64_mix(h, nv);
    for (std::size_t v = 0; v < nv; ++v) detail::fnv1a64_mix(h, g_[v].kind == node_kind::worker ? g_[v].rank : -1);
    for (auto e : boost::make_iterator_range(boost::edges(g_))) {
      detail::fnv1a64_mix(h, boost::source(e, g_));
      detail::fnv1a64_mix(h, boost::target(e, g_));
      detail::fnv1a64_mix(h, g_[e].bandwidth);
      detail::fnv1a64_mix(h, g_[e].latency);
    }
    fingerprint_ = h;
  }

  /// Converts any Boost.Graph graph (VertexListGraph and EdgeListGraph with a vertex index): `rank[v]` is
  /// the worker rank of v or -1 for a switch; `bandwidth[e]` (bytes/s) and `latency[e]` (s) describe edge e.
  /// An undirected graph's edges become two directed links.
  /// \throws invalid_argument as the constructor does.
  template <class Graph, class RankMap, class BandwidthMap, class LatencyMap>
  [[nodiscard]] static user_graph from(const Graph& g, RankMap rank, BandwidthMap bandwidth, LatencyMap latency,
                                       std::string label = "graph") {
    network n;
    const auto index = boost::get(boost::vertex_index, g);
    std::map<std::size_t, std::size_t> id;
    for (auto v : boost::make_iterator_range(boost::vertices(g))) {
      const int r = static_cast<int>(boost::get(rank, v));
      const std::size_t i = static_cast<std::size_t>(boost::get(index, v));
      id[i] = boost::add_vertex(
          node{r >= 0 ? node_kind::worker : node_kind::switch_, r >= 0 ? r : -1,
               (r >= 0 ? "w" : "s") + std::to_string(i)},
          n);
    }
    for (auto e : boost::make_iterator_range(boost::edges(g))) {
      const link l{static_cast<double>(boost::get(bandwidth, e)), static_cast<double>(boost::get(latency, e))};
      const auto a = id.at(static_cast<std::size_t>(boost::get(index, boost::source(e, g))));
      const auto b = id.at(static_cast<std::size_t>(boost::get(index, boost::target(e, g))));
      if (boost::is_directed(g))
        boost::add_edge(a, b, l, n);
      else
        add_cable(n, a, b, l);
    }
    return user_graph(n, std::move(label));
  }

  [[nodiscard]] int workers() const noexcept { return workers_; }
  /// "<label>(W workers,S switches,E links,#<64-bit hex fingerprint of the structure, bandwidths and
  /// latencies>)", e.g. "graph(4w,1s,8l,#0123456789abcdef)". Vertex labels are not part of it.
  [[nodiscard]] std::string name() const {
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(fingerprint_));
    return label_ + "(" + std::to_string(workers_) + "w," + std::to_string(switches()) + "s," +
           std::to_string(boost::num_edges(g_)) + "l,#" + hex + ")";
  }
  /// \throws invalid_argument unless `world == workers()`.
  void validate(int world) const { detail::check_topology_world(name(), workers_, world); }
  /// The label given at construction.
  [[nodiscard]] const std::string& label() const noexcept { return label_; }
  /// Number of switch vertices.
  [[nodiscard]] int switches() const noexcept { return static_cast<int>(boost::num_vertices(g_)) - workers_; }
  /// The (renumbered) network, without copying.
  [[nodiscard]] const network& view() const noexcept { return g_; }
  /// The (renumbered) network.
  [[nodiscard]] network graph() const { return g_; }
  /// Rack groups, inferred: workers cabled to the same lowest-numbered adjacent switch (their "ToR") form a
  /// group; a worker adjacent to no switch is a group of its own, unless no worker is adjacent to a switch,
  /// when all ranks form one group. Groups are ordered by their smallest rank.
  [[nodiscard]] std::vector<std::vector<int>> racks() const {
    const std::size_t w = static_cast<std::size_t>(workers_), none = boost::num_vertices(g_);
    std::vector<std::size_t> tor(w, none);
    for (std::size_t r = 0; r < w; ++r) {
      for (auto e : boost::make_iterator_range(boost::out_edges(r, g_)))
        if (const auto t = boost::target(e, g_); g_[t].kind == node_kind::switch_) tor[r] = std::min(tor[r], t);
      for (auto e : boost::make_iterator_range(boost::in_edges(r, g_)))
        if (const auto s = boost::source(e, g_); g_[s].kind == node_kind::switch_) tor[r] = std::min(tor[r], s);
    }
    std::vector<std::vector<int>> out;
    if (std::all_of(tor.begin(), tor.end(), [&](std::size_t t) { return t == none; })) {
      out.emplace_back();
      for (std::size_t r = 0; r < w; ++r) out.back().push_back(static_cast<int>(r));
      return out;
    }
    std::map<std::size_t, std::size_t> group_of;  // ToR vertex -> group index
    for (std::size_t r = 0; r < w; ++r) {
      if (tor[r] == none) {
        out.push_back({static_cast<int>(r)});
        continue;
      }
      auto [it, fresh] = group_of.try_emplace(tor[r], out.size());
      if (fresh) out.emplace_back();
      out[it->second].push_back(static_cast<int>(r));
    }
    return out;
  }

 private:
  network g_;
  std::string label_;
  int workers_ = 0;
  std::uint64_t fingerprint_ = 0;
};

static_assert(concepts::topology<user_graph>);

}  // namespace dssync::topology
