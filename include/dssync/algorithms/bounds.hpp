#pragma once
/// \file
/// `algorithms::allreduce_lower_bound`: a lower bound on the time of any allreduce of S bytes per rank on a
/// topology's network graph, by cuts: each rank's NICs, and the parts of the switch hierarchy (racks, pods).

#include <boost/graph/breadth_first_search.hpp>
#include <boost/graph/connected_components.hpp>
#include <boost/graph/filtered_graph.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "dssync/core/error.hpp"
#include "dssync/topology/network.hpp"

namespace dssync::algorithms {

/// What `allreduce_lower_bound` found: the bound and the partition that gives it.
///
/// `seconds == bytes / capacity` whenever `parts >= 2`: the binding partition's parts each move `bytes`
/// through a cut of `capacity` bytes/s.
struct allreduce_bound {
  double seconds = 0;  ///< the lower bound; 0 with fewer than 2 participants, +inf if a part has no links
  double bytes = 0;    ///< bytes each part moves through its cut in the binding term: 2(C-1)/C·S, or S
  double capacity = std::numeric_limits<double>::infinity();  ///< bytes/s of that cut (see `rule`)
  int parts = 0;  ///< C: the binding partition's parts that hold participants (the participant count if < 2)
  std::vector<int> part_sizes;  ///< participants in each of those parts
  std::string partition;  ///< the binding partition: "16 ranks (each rank's NICs)", "4 parts (switch height <= 1)"
  std::string rule;       ///< the formula of the binding term
};

namespace detail {

inline constexpr double bound_inf = std::numeric_limits<double>::infinity();

/// The vertex of each rank of `g` (ranks without a vertex: npos).
inline std::vector<std::size_t> worker_vertices(const topology::network& g) {
  std::vector<std::size_t> at;
  for (auto [it, end] = boost::vertices(g); it != end; ++it) {
    const auto& v = g[*it];
    if (v.kind != topology::node_kind::worker || v.rank < 0) continue;
    const auto r = static_cast<std::size_t>(v.rank);
    if (r >= at.size()) at.resize(r + 1, static_cast<std::size_t>(-1));
    at[r] = *it;
  }
  return at;
}

/// A vertex filter (default-constructible, as filtered_graph's iterators need): height at most `d`.
struct height_at_most {
  const std::vector<int>* height = nullptr;
  int d = 0;
  bool operator()(std::size_t v) const { return (*height)[v] <= d; }
};

/// The bound of one partition. `part[v]` is vertex v's part (-1: in none; such vertices only forward).
/// `parts` is the number of part ids. Leaves `out.parts == 0` when fewer than 2 parts hold participants.
inline allreduce_bound partition_bound(const topology::network& g, double S, const std::vector<int>& part, int parts,
                                       std::span<const std::size_t> participant_vertices) {
  allreduce_bound out;
  std::vector<double> cap_out(static_cast<std::size_t>(parts), 0.0), cap_in(static_cast<std::size_t>(parts), 0.0);
  for (auto [it, end] = boost::edges(g); it != end; ++it) {
    const int a = part[boost::source(*it, g)];
    const int b = part[boost::target(*it, g)];
    if (a == b) continue;
    const double bw = g[*it].bandwidth;
    if (a >= 0) cap_out[static_cast<std::size_t>(a)] += bw;
    if (b >= 0) cap_in[static_cast<std::size_t>(b)] += bw;
  }
  std::vector<int> members(static_cast<std::size_t>(parts), 0);
  for (auto v : participant_vertices)
    if (part[v] >= 0) ++members[static_cast<std::size_t>(part[v])];
  double min_out = bound_inf, min_in = bound_inf, sum_out = 0, sum_in = 0;
  for (int p = 0; p < parts; ++p) {
    const auto i = static_cast<std::size_t>(p);
    if (members[i] == 0) continue;  // no participant: its vertices only forward
    out.part_sizes.push_back(members[i]);
    min_out = std::min(min_out, cap_out[i]);
    min_in = std::min(min_in, cap_in[i]);
    sum_out += cap_out[i];
    sum_in += cap_in[i];
  }
  const int C = static_cast<int>(out.part_sizes.size());
  if (C < 2) {
    out.part_sizes.clear();
    return out;
  }
  out.parts = C;
  // Aggregate terms first, so that they win ties (C = 2, or equal parts).
  const double moved = 2.0 * (C - 1) / C * S;
  const struct {
    double bytes, capacity;
    const char* rule;
  } terms[] = {
      {moved, sum_out / C, "each of C parts moves 2(C-1)/C*S through the links leaving it (their mean capacity)"},
      {moved, sum_in / C, "each of C parts moves 2(C-1)/C*S through the links entering it (their mean capacity)"},
      {S, min_out, "the part with the least capacity moves S through the links leaving it"},
      {S, min_in, "the part with the least capacity moves S through the links entering it"},
  };
  out.seconds = -1;
  for (const auto& t : terms) {
    const double s = t.capacity > 0 ? t.bytes / t.capacity : bound_inf;
    if (s > out.seconds) {
      out.seconds = s;
      out.bytes = t.bytes;
      out.capacity = t.capacity;
      out.rule = t.rule;
    }
  }
  return out;
}

}  // namespace detail

/// A lower bound on the time of any allreduce of `bytes` bytes per rank among the worker ranks
/// `participants` of network `g`: the largest of the cut bounds below, over the candidate partitions.
///
/// Why it holds. Patarasuk & Yuan (2009, "Bandwidth optimal all-reduce algorithms for clusters of
/// workstations") bound an allreduce among N nodes by its per-node traffic: 2(N-1)/N·S. Contract any
/// partition of the vertices into C parts that hold participants (and parts of mere forwarders) into
/// super-nodes. Switches and non-participants forward and never reduce, so any schedule on `g` is a
/// schedule on the contracted network, an allreduce among C super-nodes, whose traffic between parts
/// crosses the cut links: the links leaving a part's vertex set (cap_out) and entering it (cap_in).
/// Per element, every part must send something (its inputs) and receive something (the result), and the
/// C super-nodes need at least 2(C-1) messages in all (one-way gossip: C-1 to gather, C-1 to spread). So
///   time >= 2(C-1)·S / sum_p cap_out(p)  (the same with cap_in)  and  time >= S / min_p cap_out(p) (cap_in).
/// With equal parts the first is 2(C-1)/C·S / cap, Patarasuk & Yuan's bound on the contracted network.
/// (It is not "each part moves 2(C-1)/C·S": with one fast hub, the others need move only S.)
///
/// Candidate partitions:
/// - every participant alone (each rank's NICs: the links of its worker vertex);
/// - the switch hierarchy: a switch's height is its hop distance to the nearest worker (a breadth-first
///   search from all workers). For d = 1 .. the greatest height, the connected components of `g` without
///   the switches higher than d are the parts (racks under their ToRs at d = 1, pods at d = 2 on a fat
///   tree); the higher switches are in no part.
/// Partitions with fewer than 2 parts that hold participants are skipped; parts without participants
/// count as forwarders only, and C counts the parts with participants.
///
/// The bound assumes unicast messages and switches that do not reduce (no in-network reduction or
/// multicast). Latency is not counted.
///
/// \param g            the network (vertices: workers with ranks, switches; edges: directed links)
/// \param bytes        S, bytes per rank
/// \param participants the ranks taking part (e.g. all but the failed ones); fewer than 2 give 0
/// \throws invalid_argument if `bytes` is negative or not finite, or a participant is not a worker of
///         `g` or appears twice.
[[nodiscard]] inline allreduce_bound allreduce_lower_bound(const topology::network& g, double bytes,
                                                           std::span<const int> participants) {
  if (!(bytes >= 0) || !std::isfinite(bytes))
    throw invalid_argument("allreduce_lower_bound: bytes " + std::to_string(bytes) + " must be finite and >= 0");
  const auto at = detail::worker_vertices(g);
  const std::size_t V = boost::num_vertices(g);
  constexpr auto npos = static_cast<std::size_t>(-1);
  std::vector<std::size_t> pv;  // the participants' vertices
  std::vector<char> seen(at.size(), 0);
  for (int r : participants) {
    const auto i = static_cast<std::size_t>(r);
    if (r < 0 || i >= at.size() || at[i] == npos)
      throw invalid_argument("allreduce_lower_bound: participant " + std::to_string(r) +
                             " is not a worker rank of the network");
    if (seen[i]++) throw invalid_argument("allreduce_lower_bound: participant " + std::to_string(r) + " is listed twice");
    pv.push_back(at[i]);
  }

  allreduce_bound best;
  best.parts = static_cast<int>(pv.size());
  if (pv.size() < 2) {
    best.part_sizes.assign(pv.size(), 1);
    best.partition = std::to_string(pv.size()) + (pv.size() == 1 ? " rank" : " ranks");
    best.rule = "fewer than 2 participants: nothing moves";
    return best;
  }
  best.seconds = -1;
  auto consider = [&](allreduce_bound b, std::string partition) {
    if (b.parts >= 2 && b.seconds > best.seconds) {
      b.partition = std::move(partition);
      best = std::move(b);
    }
  };

  // Every participant alone: its NICs.
  {
    std::vector<int> part(V, -1);
    int k = 0;
    for (auto v : pv) part[v] = k++;
    consider(detail::partition_bound(g, bytes, part, k, pv),
             std::to_string(pv.size()) + " ranks (each rank's NICs)");
  }

  // The switch hierarchy. Heights on the undirected view: a link in either direction is a hop.
  using ugraph = boost::adjacency_list<boost::vecS, boost::vecS, boost::undirectedS>;
  ugraph u(V);
  for (auto [it, end] = boost::edges(g); it != end; ++it)
    boost::add_edge(boost::source(*it, g), boost::target(*it, g), u);
  constexpr int unreached = std::numeric_limits<int>::max();
  std::vector<int> height(V, unreached);
  std::vector<std::size_t> workers;
  for (auto [it, end] = boost::vertices(g); it != end; ++it)
    if (g[*it].kind == topology::node_kind::worker) {
      workers.push_back(*it);
      height[*it] = 0;
    }
  {
    boost::queue<std::size_t> q;
    std::vector<boost::default_color_type> color(V, boost::white_color);
    const auto cmap = boost::make_iterator_property_map(color.begin(), boost::get(boost::vertex_index, u));
    const auto hmap = boost::make_iterator_property_map(height.begin(), boost::get(boost::vertex_index, u));
    boost::breadth_first_search(u, workers.begin(), workers.end(), q,
                                boost::make_bfs_visitor(boost::record_distances(hmap, boost::on_tree_edge{})), cmap);
  }
  int top = 0;
  for (int h : height)
    if (h != unreached) top = std::max(top, h);
  for (int d = 1; d <= top; ++d) {
    const detail::height_at_most keep{&height, d};
    const boost::filtered_graph<ugraph, boost::keep_all, detail::height_at_most> f(u, boost::keep_all{}, keep);
    std::vector<int> comp(V, -1);
    const int k = static_cast<int>(boost::connected_components(
        f, boost::make_iterator_property_map(comp.begin(), boost::get(boost::vertex_index, u))));
    std::vector<int> part(V, -1);
    for (std::size_t v = 0; v < V; ++v)
      if (keep(v)) part[v] = comp[v];
    auto b = detail::partition_bound(g, bytes, part, k, pv);
    const std::string text = std::to_string(b.parts) + " parts (switch height <= " + std::to_string(d) + ")";
    consider(std::move(b), text);
  }
  return best;
}

/// `allreduce_lower_bound` with every worker of `g` taking part.
[[nodiscard]] inline allreduce_bound allreduce_lower_bound(const topology::network& g, double bytes) {
  std::vector<int> all;
  for (auto [it, end] = boost::vertices(g); it != end; ++it)
    if (g[*it].kind == topology::node_kind::worker && g[*it].rank >= 0) all.push_back(g[*it].rank);
  std::sort(all.begin(), all.end());
  return allreduce_lower_bound(g, bytes, all);
}

/// A lower bound on a group allreduce (every group allreduces `bytes` among its members, all groups at
/// once): the largest `allreduce_lower_bound` of one group alone, whose `rule` and `partition` it returns.
/// Groups of fewer than 2 members add nothing; with none larger the bound is 0.
/// \throws invalid_argument as `allreduce_lower_bound` for any group.
[[nodiscard]] inline allreduce_bound group_allreduce_lower_bound(const topology::network& g, double bytes,
                                                                 const std::vector<std::vector<int>>& groups) {
  allreduce_bound best;
  best.rule = "no group of 2 or more: nothing moves";
  for (const auto& grp : groups) {
    auto b = allreduce_lower_bound(g, bytes, grp);
    if (grp.size() >= 2 && (best.parts < 2 || b.seconds > best.seconds)) best = std::move(b);
  }
  return best;
}

}  // namespace dssync::algorithms
