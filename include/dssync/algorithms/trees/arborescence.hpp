#pragma once
/// \file
/// `trees::min_arborescence`: a minimum-cost spanning arborescence (directed spanning tree, every arc away
/// from the root) by the Chu-Liu/Edmonds algorithm (Chu & Liu 1965; Edmonds, "Optimum branchings", 1967).
/// Boost.Graph has no arborescence algorithm, so it is written here: pick each vertex's cheapest entering
/// arc; if the picks form no cycle they are the answer, else contract each cycle into one vertex, charge the
/// arcs entering it by the pick they would replace, solve the contracted graph, and expand. O(V·E).

#include <cstddef>
#include <optional>
#include <vector>

namespace dssync::algorithms::trees {

/// An arc with a cost, for `min_arborescence`.
struct costed_arc {
  int from = 0, to = 0;
  double cost = 0;
};

namespace detail {

/// Chu-Liu/Edmonds on vertices 0..n-1; returns the indices (into `a`) of the chosen arcs, or nullopt if
/// some vertex cannot be reached from `root`.
inline std::optional<std::vector<int>> chu_liu_edmonds(int n, int root, const std::vector<costed_arc>& a) {
  std::vector<int> in(static_cast<std::size_t>(n), -1);  // cheapest entering arc of each vertex
  for (std::size_t i = 0; i < a.size(); ++i) {
    const auto& x = a[i];
    if (x.to == root || x.from == x.to) continue;
    int& best = in[static_cast<std::size_t>(x.to)];
    if (best < 0 || x.cost < a[static_cast<std::size_t>(best)].cost) best = static_cast<int>(i);
  }
  for (int v = 0; v < n; ++v)
    if (v != root && in[static_cast<std::size_t>(v)] < 0) return std::nullopt;

  // Cycles of the picks: walk back from every vertex, marking the walk with its start.
  std::vector<int> comp(static_cast<std::size_t>(n), -1), mark(static_cast<std::size_t>(n), -1);
  std::vector<bool> on_cycle(static_cast<std::size_t>(n), false);
  int components = 0;
  for (int v = 0; v < n; ++v) {
    int u = v;
    while (u != root && mark[static_cast<std::size_t>(u)] < 0 && comp[static_cast<std::size_t>(u)] < 0) {
      mark[static_cast<std::size_t>(u)] = v;
      u = a[static_cast<std::size_t>(in[static_cast<std::size_t>(u)])].from;
    }
    if (u != root && comp[static_cast<std::size_t>(u)] < 0 && mark[static_cast<std::size_t>(u)] == v) {
      int w = u;
      do {
        comp[static_cast<std::size_t>(w)] = components;
        on_cycle[static_cast<std::size_t>(w)] = true;
        w = a[static_cast<std::size_t>(in[static_cast<std::size_t>(w)])].from;
      } while (w != u);
      ++components;
    }
  }
  if (components == 0) {  // no cycle: the picks are the arborescence
    std::vector<int> out;
    out.reserve(static_cast<std::size_t>(n > 0 ? n - 1 : 0));
    for (int v = 0; v < n; ++v)
      if (v != root) out.push_back(in[static_cast<std::size_t>(v)]);
    return out;
  }
  const int cycles = components;
  for (int v = 0; v < n; ++v)
    if (comp[static_cast<std::size_t>(v)] < 0) comp[static_cast<std::size_t>(v)] = components++;

  // The contracted graph: an arc entering a cycle vertex v costs what replacing v's pick adds.
  std::vector<costed_arc> b;
  std::vector<int> back;  // b's arc -> a's arc
  for (std::size_t i = 0; i < a.size(); ++i) {
    const auto& x = a[i];
    const int cu = comp[static_cast<std::size_t>(x.from)], cv = comp[static_cast<std::size_t>(x.to)];
    if (cu == cv) continue;
    double c = x.cost;
    if (on_cycle[static_cast<std::size_t>(x.to)]) c -= a[static_cast<std::size_t>(in[static_cast<std::size_t>(x.to)])].cost;
    b.push_back({cu, cv, c});
    back.push_back(static_cast<int>(i));
  }
  auto sub = chu_liu_edmonds(components, comp[static_cast<std::size_t>(root)], b);
  if (!sub) return std::nullopt;

  // Expand: the chosen arcs, and in each cycle every pick but that of the vertex the chosen arc enters.
  std::vector<int> out, enter(static_cast<std::size_t>(cycles), -1);
  out.reserve(static_cast<std::size_t>(n - 1));
  for (int j : *sub) {
    const int i = back[static_cast<std::size_t>(j)];
    out.push_back(i);
    const int c = comp[static_cast<std::size_t>(a[static_cast<std::size_t>(i)].to)];
    if (c < cycles) enter[static_cast<std::size_t>(c)] = a[static_cast<std::size_t>(i)].to;
  }
  for (int v = 0; v < n; ++v)
    if (on_cycle[static_cast<std::size_t>(v)] && enter[static_cast<std::size_t>(comp[static_cast<std::size_t>(v)])] != v)
      out.push_back(in[static_cast<std::size_t>(v)]);
  return out;
}

}  // namespace detail

/// The minimum-cost spanning arborescence rooted at `root` of the graph on vertices 0..n-1 with arcs
/// `arcs`: the indices of its n-1 arcs (in no particular order), or nullopt if some vertex is unreachable
/// from `root`. Costs may be any finite doubles; arcs into the root and self-loops are ignored.
[[nodiscard]] inline std::optional<std::vector<int>> min_arborescence(int n, int root,
                                                                      const std::vector<costed_arc>& arcs) {
  if (n <= 0 || root < 0 || root >= n) return std::nullopt;
  return detail::chu_liu_edmonds(n, root, arcs);
}

}  // namespace dssync::algorithms::trees
