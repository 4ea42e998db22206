#pragma once
/// \file
/// `sim::router`: the links of a `topology::network` as dense arrays, and shortest-path routes between
/// its vertices with ECMP (equal-cost multi-path) spreading.

#include <boost/graph/breadth_first_search.hpp>
#include <boost/graph/filtered_graph.hpp>
#include <boost/graph/visitors.hpp>
#include <boost/property_map/property_map.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "dssync/core/error.hpp"
#include "dssync/topology/network.hpp"

namespace dssync::sim {

/// A directed link of a network, numbered densely 0..E-1 by `router` (vertex by vertex, out-edges in the
/// order Boost.Graph lists them).
using edge_id = std::uint32_t;

namespace detail {

/// splitmix64's finalizer: a cheap, well-mixed 64-bit hash.
[[nodiscard]] constexpr std::uint64_t mix64(std::uint64_t x) noexcept {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

[[nodiscard]] constexpr std::uint64_t mix64(std::uint64_t a, std::uint64_t b) noexcept { return mix64(mix64(a) ^ b); }

/// FNV-1a of a string, for ECMP keys named by text (background flow ids).
[[nodiscard]] constexpr std::uint64_t hash_text(std::string_view s) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ULL;
  return h;
}

}  // namespace detail

/// Routes of a `topology::network`: every flow from one vertex to another takes a shortest path by hop
/// count. Where several shortest paths exist (ECMP), the path is chosen deterministically by a hash of
/// (source, destination, flow key), hop by hop, so different keys spread over the equal paths while one
/// key always takes the same path (as a switch hashing a connection's 5-tuple does).
///
/// The router copies the network's links into dense arrays indexed by `edge_id` (bandwidth, latency,
/// endpoints, in/out adjacency), so that the simulator's hot loop never walks Boost.Graph properties.
/// Hop distances come from Boost.Graph's `breadth_first_search`, run lazily once per source vertex and
/// cached (two bytes per vertex per source). Routes are cached per (source, destination, key); the spans
/// `route` returns stay valid as long as the router lives.
///
/// Workers must be vertices 0..W-1 with `rank` equal to the vertex index (as `topology::add_workers`
/// makes them); switches follow. Routes may pass through workers (BCube servers relay).
class router {
 public:
  /// Reads `g`. \throws invalid_argument if the workers are not vertices 0..W-1 in rank order, or a link
  /// has a negative or non-finite bandwidth or latency.
  explicit router(const topology::network& g) : g_(g) {
    const std::size_t nv = boost::num_vertices(g_);
    if (nv >= std::numeric_limits<std::uint32_t>::max())
      throw invalid_argument("sim::router: " + std::to_string(nv) + " vertices are too many");
    // Workers: a prefix of the vertices, in rank order.
    std::size_t w = 0;
    while (w < nv && g_[w].kind == topology::node_kind::worker) ++w;
    for (std::size_t v = 0; v < nv; ++v) {
      const auto& n = g_[v];
      if (n.kind == topology::node_kind::worker && (v >= w || n.rank != static_cast<int>(v)))
        throw invalid_argument("sim::router: vertex " + std::to_string(v) + " (" + n.label + ") is worker rank " +
                               std::to_string(n.rank) +
                               ", but workers must be vertices 0..W-1 with rank equal to the vertex index");
    }
    workers_ = static_cast<int>(w);
    // Dense edges, vertex by vertex.
    out_off_.assign(nv + 1, 0);
    in_off_.assign(nv + 1, 0);
    for (std::size_t v = 0; v < nv; ++v) {
      for (auto [it, end] = boost::out_edges(v, g_); it != end; ++it) {
        const auto& l = g_[*it];
        if (!(l.bandwidth >= 0) || !std::isfinite(l.bandwidth) || !(l.latency >= 0) || !std::isfinite(l.latency))
          throw invalid_argument("sim::router: link " + g_[v].label + "->" + g_[boost::target(*it, g_)].label +
                                 " has bandwidth " + std::to_string(l.bandwidth) + " B/s and latency " +
                                 std::to_string(l.latency) + " s; both must be finite and non-negative");
        src_.push_back(static_cast<std::uint32_t>(v));
        dst_.push_back(static_cast<std::uint32_t>(boost::target(*it, g_)));
        bw_.push_back(l.bandwidth);
        lat_.push_back(l.latency);
        cls_.push_back(l.cls);
        ++in_off_[dst_.back() + 1];
      }
      out_off_[v + 1] = static_cast<std::uint32_t>(src_.size());
    }
    if (src_.size() >= std::numeric_limits<edge_id>::max())
      throw invalid_argument("sim::router: " + std::to_string(src_.size()) + " links are too many");
    for (std::size_t v = 0; v < nv; ++v) in_off_[v + 1] += in_off_[v];
    out_ids_.resize(src_.size());
    for (edge_id e = 0; e < out_ids_.size(); ++e) out_ids_[e] = e;  // edges are numbered vertex by vertex
    in_ids_.resize(src_.size());
    std::vector<std::uint32_t> fill(in_off_.begin(), in_off_.end() - 1);
    for (edge_id e = 0; e < src_.size(); ++e) in_ids_[fill[dst_[e]]++] = e;
    dist_.resize(nv);
  }

  router(const router&) = delete;
  router& operator=(const router&) = delete;
  router(router&&) noexcept = default;
  router& operator=(router&&) noexcept = default;

  /// The network this router was built from.
  [[nodiscard]] const topology::network& graph() const noexcept { return g_; }
  /// Number of workers (vertices 0..workers()-1).
  [[nodiscard]] int workers() const noexcept { return workers_; }
  /// Number of vertices, workers and switches.
  [[nodiscard]] std::size_t vertices() const noexcept { return out_off_.size() - 1; }
  /// Number of directed links.
  [[nodiscard]] std::size_t edges() const noexcept { return src_.size(); }
  /// The vertex a link leaves.
  [[nodiscard]] std::size_t source(edge_id e) const { return src_.at(e); }
  /// The vertex a link enters.
  [[nodiscard]] std::size_t target(edge_id e) const { return dst_.at(e); }
  /// A link's bandwidth in bytes/s, as in the network.
  [[nodiscard]] double bandwidth(edge_id e) const { return bw_.at(e); }
  /// A link's latency in seconds, as in the network.
  [[nodiscard]] double latency(edge_id e) const { return lat_.at(e); }
  /// A link's class, as in the network.
  [[nodiscard]] topology::link_class link_class(edge_id e) const { return cls_.at(e); }
  /// All bandwidths, indexed by edge id.
  [[nodiscard]] const std::vector<double>& bandwidths() const noexcept { return bw_; }
  /// All latencies, indexed by edge id.
  [[nodiscard]] const std::vector<double>& latencies() const noexcept { return lat_; }
  /// A vertex's label ("w3", "tor0", ...); its index when the label is empty.
  [[nodiscard]] std::string label(std::size_t v) const {
    const auto& l = g_[v].label;
    return l.empty() ? std::to_string(v) : l;
  }
  /// Whether vertex `v` is a worker.
  [[nodiscard]] bool is_worker(std::size_t v) const noexcept { return v < static_cast<std::size_t>(workers_); }
  /// "w0->tor0".
  [[nodiscard]] std::string edge_label(edge_id e) const { return label(source(e)) + "->" + label(target(e)); }
  /// The links leaving `v`.
  [[nodiscard]] std::span<const edge_id> out_edges(std::size_t v) const {
    return {out_ids_.data() + out_off_.at(v), out_ids_.data() + out_off_.at(v + 1)};
  }
  /// The links entering `v`.
  [[nodiscard]] std::span<const edge_id> in_edges(std::size_t v) const {
    return {in_ids_.data() + in_off_.at(v), in_ids_.data() + in_off_.at(v + 1)};
  }
  /// The links from `u` to `v` (several when cables are parallel).
  [[nodiscard]] std::vector<edge_id> edges_between(std::size_t u, std::size_t v) const {
    std::vector<edge_id> out;
    for (edge_id e : out_edges(u))
      if (dst_[e] == v) out.push_back(e);
    return out;
  }
  /// The vertex named `name`: a vertex index ("12") or a label ("tor0", "w3"); nullopt if none.
  [[nodiscard]] std::optional<std::size_t> find_vertex(std::string_view name) const {
    if (!name.empty() && name.find_first_not_of("0123456789") == std::string_view::npos && name.size() < 10) {
      const std::size_t v = std::stoul(std::string(name));
      if (v < vertices()) return v;
      return std::nullopt;
    }
    for (std::size_t v = 0; v < vertices(); ++v)
      if (g_[v].label == name) return v;
    return std::nullopt;
  }

  /// Hops on a shortest path from vertex `src` to vertex `dst`, or -1 if `dst` is unreachable.
  /// \throws invalid_argument if a vertex is out of range.
  [[nodiscard]] int hops(std::size_t src, std::size_t dst) {
    check_vertex(src, "source");
    check_vertex(dst, "destination");
    const auto& d = distances(src);
    return d[dst] == unreachable ? -1 : static_cast<int>(d[dst]);
  }

  /// The route of a flow from rank `src` to rank `dst` with ECMP key `key`: the links of a shortest path,
  /// in order. Empty when `src == dst`. The span stays valid as long as the router.
  /// \throws invalid_argument if a rank is not a worker or `dst` is unreachable from `src`.
  /// With `classes` (a route hint, `channel::links`), the path is a shortest one over links of those
  /// classes only.
  /// \throws invalid_argument if a rank is not a worker or `dst` is unreachable from `src` (over links of
  ///   `classes`, named).
  [[nodiscard]] std::span<const edge_id> route(int src, int dst, std::uint64_t key = 0,
                                               topology::link_classes classes = 0) {
    if (src < 0 || src >= workers_ || dst < 0 || dst >= workers_)
      throw invalid_argument("sim::router: route from rank " + std::to_string(src) + " to rank " + std::to_string(dst) +
                             ": ranks must be in 0.." + std::to_string(workers_ - 1));
    return route_between(static_cast<std::size_t>(src), static_cast<std::size_t>(dst), key, classes);
  }

  /// The route between any two vertices (see `route`).
  /// \throws invalid_argument if a vertex is out of range or `dst` is unreachable from `src`.
  [[nodiscard]] std::span<const edge_id> route_between(std::size_t src, std::size_t dst, std::uint64_t key = 0,
                                                       topology::link_classes classes = 0) {
    check_vertex(src, "source");
    check_vertex(dst, "destination");
    const cache_key ck{static_cast<std::uint32_t>(src), static_cast<std::uint32_t>(dst), key, classes};
    if (auto it = cache_.find(ck); it != cache_.end()) return it->second;
    const auto& d = distances(src, classes);
    if (d[dst] == unreachable)
      throw invalid_argument("sim::router: vertex " + label(dst) + " is unreachable from vertex " + label(src) +
                             (classes == 0 ? std::string(": the network is not connected")
                                           : " over links of class " + topology::to_string_classes(classes)));
    const std::size_t n = d[dst];
    edge_id* out = allocate(n);
    // Walk back from dst: at each vertex, choose among the in-links that come from one hop closer.
    std::size_t v = dst;
    const std::uint64_t h0 = detail::mix64(detail::mix64(src, dst), key);
    for (std::size_t h = n; h > 0; --h) {
      std::uint32_t candidates = 0;
      for (edge_id e : in_edges(v))
        if (d[src_[e]] == h - 1 && topology::allows(classes, cls_[e])) ++candidates;
      std::uint32_t pick = candidates > 1 ? static_cast<std::uint32_t>(detail::mix64(h0, v) % candidates) : 0;
      for (edge_id e : in_edges(v))
        if (d[src_[e]] == h - 1 && topology::allows(classes, cls_[e]) && pick-- == 0) {
          out[h - 1] = e;
          v = src_[e];
          break;
        }
    }
    std::span<const edge_id> r(out, n);
    cache_.emplace(ck, r);
    return r;
  }

  /// Sum of the latencies along a route.
  [[nodiscard]] double latency(std::span<const edge_id> route) const {
    double s = 0;
    for (edge_id e : route) s += lat_[e];
    return s;
  }

 private:
  static constexpr std::uint16_t unreachable = std::numeric_limits<std::uint16_t>::max();

  struct cache_key {
    std::uint32_t src, dst;
    std::uint64_t key;
    topology::link_classes classes = 0;
    friend bool operator==(const cache_key&, const cache_key&) = default;
  };
  struct cache_hash {
    std::size_t operator()(const cache_key& k) const noexcept {
      return static_cast<std::size_t>(detail::mix64(detail::mix64(detail::mix64(k.src, k.dst), k.key), k.classes));
    }
  };

  void check_vertex(std::size_t v, const char* what) const {
    if (v >= vertices())
      throw invalid_argument(std::string("sim::router: ") + what + " vertex " + std::to_string(v) +
                             " is out of range (the network has " + std::to_string(vertices()) + " vertices)");
  }

  /// The links of a set of classes (a filtered_graph predicate: default-constructible, as Boost requires).
  struct of_classes {
    const topology::network* g = nullptr;
    topology::link_classes classes = 0;
    bool operator()(const topology::network::edge_descriptor& e) const { return topology::allows(classes, (*g)[e].cls); }
  };

  /// Hop distances from `src`, by Boost.Graph BFS, computed once; over links of `classes` only (a
  /// Boost.Graph filtered_graph) when a set is given.
  const std::vector<std::uint16_t>& distances(std::size_t src, topology::link_classes classes = 0) {
    auto& d = classes == 0 ? dist_[src] : class_dist_[{classes, src}];
    if (!d.empty()) return d;
    d.assign(vertices(), unreachable);
    d[src] = 0;
    auto dmap = boost::make_iterator_property_map(d.begin(), boost::get(boost::vertex_index, g_));
    auto vis = boost::visitor(boost::make_bfs_visitor(boost::record_distances(dmap, boost::on_tree_edge())));
    if (classes == 0) {
      boost::breadth_first_search(g_, src, vis);
    } else {
      const boost::filtered_graph<topology::network, of_classes> fg(g_, of_classes{&g_, classes});
      boost::breadth_first_search(fg, src, vis);
    }
    for (std::size_t v = 0; v < d.size(); ++v)
      if (v != src && d[v] == 0) d[v] = unreachable;  // record_distances wrapped (a path of 65535 hops)
    return d;
  }

  /// Storage for `n` edge ids that never moves.
  edge_id* allocate(std::size_t n) {
    constexpr std::size_t block = 1 << 14;
    if (n == 0) return nullptr;
    if (blocks_.empty() || block_used_ + n > block_size_) {
      block_size_ = std::max(block, n);
      blocks_.push_back(std::make_unique<edge_id[]>(block_size_));
      block_used_ = 0;
    }
    edge_id* p = blocks_.back().get() + block_used_;
    block_used_ += n;
    return p;
  }

  topology::network g_;
  int workers_ = 0;
  std::vector<std::uint32_t> src_, dst_;
  std::vector<double> bw_, lat_;
  std::vector<topology::link_class> cls_;
  std::vector<std::uint32_t> out_off_, in_off_;
  std::vector<edge_id> out_ids_, in_ids_;
  std::vector<std::vector<std::uint16_t>> dist_;
  std::map<std::pair<topology::link_classes, std::size_t>, std::vector<std::uint16_t>> class_dist_;
  std::unordered_map<cache_key, std::span<const edge_id>, cache_hash> cache_;
  std::vector<std::unique_ptr<edge_id[]>> blocks_;
  std::size_t block_size_ = 0, block_used_ = 0;
};

}  // namespace dssync::sim
