#pragma once
/// \file
/// `trees::pack_broadcast`: spanning arborescences rooted at a broadcast root, with rates, packed under the
/// arc capacities, against the Edmonds bound.
///
/// - **Blink mode** (Wang et al., "Blink: fast and generic collectives for distributed ML", MLSys 2020):
///   multiplicative weights (Garg & Könemann, "Faster and simpler algorithms for multicommodity flow",
///   FOCS 1998) over minimum-length arborescences (Chu-Liu/Edmonds), scaled to fit the capacities, and
///   stopped once within eps/4 of the bound (which max-flow gives exactly); then a
///   tree reduction (Blink uses an ILP): a basic solution by Carathéodory steps (at most one tree per arc,
///   no rate lost), then a local search that drops the lightest trees while re-filling keeps the rate.
///   Switches are split off first, as in exact mode (a tree that had to span every switch would lose most
///   of the rate: 22 % of the bound on a DGX-1 with its PCIe switches).
/// - **Exact mode** (after ForestColl, Zhao et al., arXiv 2402.06787): switches are removed by edge
///   splitting that keeps the bound (each split of u->s->t into u->t is the largest that keeps every rank's
///   min cut from the root), then arborescences are packed integrally by Lovász's constructive proof of
///   Edmonds' theorem ("On two minimax theorems in graph", 1976): grow a tree one arc at a time, taking an
///   arc only if the rest of the graph keeps root connectivity k-1 for every rank; give the finished tree
///   the largest weight w that leaves connectivity k-w. Every check is a Boost.Graph max-flow on exact
///   integer capacities, so the packed rate equals the bound exactly.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "dssync/algorithms/trees/arborescence.hpp"
#include "dssync/algorithms/trees/digraph.hpp"
#include "dssync/core/error.hpp"
#include "dssync/topology/graph.hpp"
#include "dssync/topology/network.hpp"

namespace dssync::algorithms::trees {

/// Which packing `pack_broadcast` runs.
enum class pack_mode { blink, exact };

[[nodiscard]] constexpr const char* to_string(pack_mode m) noexcept { return m == pack_mode::blink ? "blink" : "exact"; }

/// Parameters of the packing.
struct pack_options {
  pack_mode mode = pack_mode::blink;
  double epsilon = 0.1;         ///< Blink mode: the multiplicative-weights accuracy, in (0, 0.5]
  double keep = 0.99;           ///< Blink mode: the tree reduction drops trees while it keeps this share of the rate
  std::size_t max_trees = 256;  ///< exact mode: more trees than this is an error (it never happened in the tests)
};

/// One packed tree: an arborescence on the packing's graph, and the rate it carries.
struct weighted_tree {
  std::vector<int> arcs;    ///< indices into `packing::graph.arcs`, parents before children
  std::vector<int> parent;  ///< per vertex of `packing::graph`: the parent, -1 for the root and unspanned vertices
  double rate = 0;          ///< bytes/s
};

/// What `pack_broadcast` returns.
struct packing {
  pack_mode mode = pack_mode::blink;
  int root = 0;
  double rate = 0;   ///< the packed rate: the sum of the tree rates, bytes/s
  double bound = 0;  ///< the Edmonds bound of the original graph, bytes/s
  digraph graph;     ///< the graph the trees live on: the ranks only (switches split off)
  /// Per arc of `graph`: the vertices of the original graph it crosses, from its tail to its head (an arc
  /// made by splitting crosses the switches it replaced).
  std::vector<std::vector<int>> routes;
  std::vector<weighted_tree> trees;
  /// The link classes the graph was built from (`from_network`'s `classes`; 0: every link). Set by the
  /// caller that filtered the network; `pack_broadcast` leaves it 0.
  topology::link_classes links = 0;

  [[nodiscard]] std::size_t tree_count() const noexcept { return trees.size(); }
  /// rate / bound (1 for a single rank).
  [[nodiscard]] double efficiency() const noexcept { return bound > 0 && std::isfinite(bound) ? rate / bound : 1.0; }
};

namespace detail {

inline void check_root(const digraph& d, int root, const char* who) {
  if (root < 0 || root >= d.compute)
    throw invalid_argument(std::string("trees::") + who + ": root " + std::to_string(root) + " is not a rank of " +
                           std::to_string(d.compute));
}

/// Orders `arcs` (an arborescence rooted at `root`) parents first, and fills `parent`.
inline weighted_tree make_tree(const digraph& d, int root, const std::vector<int>& arcs, double rate) {
  weighted_tree t;
  t.rate = rate;
  t.parent.assign(static_cast<std::size_t>(d.vertices), -1);
  std::vector<bool> in(static_cast<std::size_t>(d.vertices), false);
  in[static_cast<std::size_t>(root)] = true;
  std::vector<int> left = arcs;
  while (!left.empty()) {
    const std::size_t before = left.size();
    for (auto it = left.begin(); it != left.end();) {
      const auto& a = d.arcs[static_cast<std::size_t>(*it)];
      if (in[static_cast<std::size_t>(a.from)]) {
        in[static_cast<std::size_t>(a.to)] = true;
        t.parent[static_cast<std::size_t>(a.to)] = a.from;
        t.arcs.push_back(*it);
        it = left.erase(it);
      } else {
        ++it;
      }
    }
    if (left.size() == before) throw error("trees: a packed tree is not an arborescence of the root");
  }
  return t;
}

/// Checks that `root` reaches every rank of `d` (Boost.Graph BFS); throws naming the first rank it does not.
inline void check_reachable(const digraph& d, int root) {
  boost::adjacency_list<boost::vecS, boost::vecS, boost::directedS> g(static_cast<std::size_t>(d.vertices));
  for (const auto& a : d.arcs) boost::add_edge(static_cast<std::size_t>(a.from), static_cast<std::size_t>(a.to), g);
  const auto color = dssync::detail::bfs_reached_from(g, static_cast<std::size_t>(root));
  for (int v = 0; v < d.compute; ++v)
    if (color[static_cast<std::size_t>(v)] == boost::white_color)
      throw invalid_argument("trees::pack_broadcast: rank " + std::to_string(v) + " ('" + d.label(v) +
                             "') cannot be reached from root " + std::to_string(root) + " ('" + d.label(root) + "')");
}

/// A non-zero z with sum_q z_q · incidence(trees[q]) = 0 over `m` arcs, or empty if the trees' incidence
/// vectors are linearly independent (Gaussian elimination with partial pivoting on the m x |trees| matrix).
inline std::vector<double> null_combination(const std::vector<std::pair<std::vector<int>, double>>& trees,
                                            std::size_t m) {
  const std::size_t s = trees.size();
  if (s == 0) return {};
  std::vector<std::vector<double>> a(m, std::vector<double>(s, 0.0));
  for (std::size_t q = 0; q < s; ++q)
    for (int i : trees[q].first) a[static_cast<std::size_t>(i)][q] = 1;
  std::vector<int> pivot_col;  // per pivot row
  std::size_t row = 0;
  std::vector<bool> is_pivot(s, false);
  for (std::size_t col = 0; col < s && row < m; ++col) {
    std::size_t best = row;
    for (std::size_t r = row; r < m; ++r)
      if (std::fabs(a[r][col]) > std::fabs(a[best][col])) best = r;
    if (std::fabs(a[best][col]) < 1e-9) continue;
    std::swap(a[row], a[best]);
    const double p = a[row][col];
    for (double& v : a[row]) v /= p;
    for (std::size_t r = 0; r < m; ++r)
      if (r != row && a[r][col] != 0) {
        const double f = a[r][col];
        for (std::size_t c = 0; c < s; ++c) a[r][c] -= f * a[row][c];
      }
    pivot_col.push_back(static_cast<int>(col));
    is_pivot[col] = true;
    ++row;
  }
  std::size_t free_col = s;
  for (std::size_t c = 0; c < s; ++c)
    if (!is_pivot[c]) {
      free_col = c;
      break;
    }
  if (free_col == s) return {};
  std::vector<double> z(s, 0.0);
  z[free_col] = 1;
  for (std::size_t r = 0; r < pivot_col.size(); ++r) z[static_cast<std::size_t>(pivot_col[r])] = -a[r][free_col];
  return z;
}

/// Blink mode on `full`, a graph of ranks only (switches split off) whose root reaches every rank.
inline std::vector<weighted_tree> pack_blink(const digraph& full, int root, double bound, const pack_options& o) {
  const int n = full.vertices;
  std::vector<costed_arc> sub;
  std::vector<double> cap;
  double cmax = 0;
  for (const auto& a : full.arcs) {
    sub.push_back({a.from, a.to, 0});
    cap.push_back(static_cast<double>(a.capacity));
    cmax = std::max(cmax, static_cast<double>(a.capacity));
  }
  const std::size_t m = sub.size();
  for (auto& c : cap) c /= cmax;  // capacities scaled to at most 1
  const double eps = o.epsilon;
  // Garg-Könemann: lengths start at delta / c; route along the shortest arborescence until its length is 1.
  const double delta = (1 + eps) * std::pow((1 + eps) * static_cast<double>(m), -1.0 / eps);
  std::vector<double> len(m);
  for (std::size_t i = 0; i < m; ++i) len[i] = delta / cap[i];
  std::map<std::vector<int>, double> flow;  // tree (sorted sub-arcs) -> rate
  const int rid = root;
  // The optimum is known (the Edmonds bound, by max-flow), so the iterations stop as soon as the packing
  // scaled to fit the capacities is within eps/4 of it, long before GK's own stopping rule in most graphs.
  std::vector<double> load(m, 0.0);
  double routed = 0;
  const double target = (1 - eps / 4) * bound / cmax;
  while (true) {
    for (std::size_t i = 0; i < m; ++i) sub[i].cost = len[i];
    auto t = min_arborescence(n, rid, sub);
    if (!t) throw error("trees::pack_broadcast: no arborescence although every vertex is reachable");
    double length = 0, f = std::numeric_limits<double>::infinity();
    for (int i : *t) {
      length += len[static_cast<std::size_t>(i)];
      f = std::min(f, cap[static_cast<std::size_t>(i)]);
    }
    if (length >= 1) break;
    std::sort(t->begin(), t->end());
    flow[*t] += f;
    routed += f;
    double worst = 0;
    for (int i : *t) {
      len[static_cast<std::size_t>(i)] *= 1 + eps * f / cap[static_cast<std::size_t>(i)];
      load[static_cast<std::size_t>(i)] += f;
    }
    for (std::size_t i = 0; i < m; ++i) worst = std::max(worst, load[i] / cap[i]);
    if (routed / worst >= target) break;
  }
  // Scale to fit every capacity exactly (the GK scale log_{1+eps}(1/delta), then the remaining congestion).
  auto congestion = [&](const std::vector<std::pair<std::vector<int>, double>>& ts) {
    std::vector<double> load(m, 0.0);
    for (const auto& [arcs, r] : ts)
      for (int i : arcs) load[static_cast<std::size_t>(i)] += r;
    double worst = 0;
    for (std::size_t i = 0; i < m; ++i) worst = std::max(worst, load[i] / cap[i]);
    return worst;
  };
  std::vector<std::pair<std::vector<int>, double>> ts(flow.begin(), flow.end());
  std::sort(ts.begin(), ts.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  double total = 0;
  for (const auto& x : ts) total += x.second;
  // Tree reduction, step 1 (Carathéodory): the packing LP has a basic optimal solution with at most one
  // tree per arc. Add the trees one at a time; whenever the kept trees' arc-incidence vectors become
  // linearly dependent (A z = 0), move the rates along z (which changes no arc's load and does not lower
  // the total) until a rate reaches zero, and drop that tree.
  std::vector<std::pair<std::vector<int>, double>> kept;
  {
    const double c = congestion(ts);
    for (auto& x : ts) x.second /= c;
  }
  for (const auto& x : ts) {
    kept.push_back(x);
    while (true) {
      auto z = null_combination(kept, m);
      if (z.empty()) break;
      double sz = 0;
      for (double v : z) sz += v;
      if (sz < 0)
        for (double& v : z) v = -v;
      double t = std::numeric_limits<double>::infinity();
      for (std::size_t q = 0; q < z.size(); ++q)
        if (z[q] < -1e-12) t = std::min(t, kept[q].second / -z[q]);
      if (!std::isfinite(t)) break;  // cannot happen for non-negative incidence vectors
      std::vector<std::pair<std::vector<int>, double>> next;
      for (std::size_t q = 0; q < z.size(); ++q) {
        const double r = kept[q].second + t * z[q];
        if (r > 1e-12 * total) next.push_back({kept[q].first, r});
      }
      if (next.size() == kept.size()) next.erase(next.begin() + static_cast<std::ptrdiff_t>(
                                                     std::min_element(next.begin(), next.end(), [](const auto& a, const auto& b) {
                                                       return a.second < b.second;
                                                     }) - next.begin()));
      kept = std::move(next);
    }
  }
  // Step 2 (local search): drop the lightest tree while re-filling the others with the capacity left
  // keeps `keep` of the rate.
  auto refill = [&](std::vector<std::pair<std::vector<int>, double>>& v) {
    std::vector<double> used(m, 0.0);
    for (const auto& [arcs, r] : v)
      for (int i : arcs) used[static_cast<std::size_t>(i)] += r;
    std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
    double sum = 0;
    for (auto& [arcs, r] : v) {
      double room = std::numeric_limits<double>::infinity();
      for (int i : arcs) room = std::min(room, cap[static_cast<std::size_t>(i)] - used[static_cast<std::size_t>(i)]);
      if (room > 0) {
        r += room;
        for (int i : arcs) used[static_cast<std::size_t>(i)] += room;
      }
      sum += r;
    }
    return sum;
  };
  const double base = refill(kept);
  while (kept.size() > 1) {
    auto trial = kept;
    trial.pop_back();  // the lightest (refill sorts heaviest first)
    if (refill(trial) < o.keep * base) break;
    kept = std::move(trial);
  }
  std::vector<weighted_tree> out;
  for (const auto& [arcs, r] : kept) {
    if (!(r > 0)) continue;
    // Never above capacity in bytes/s: round the rate down by a relative 1e-12.
    out.push_back(make_tree(full, root, arcs, r * cmax * (1 - 1e-12)));
  }
  return out;
}

/// Splits every switch off `d` (edge splitting), keeping min over ranks of the root->rank min cut >= k.
/// `routes` gets each resulting arc's path in the original graph. Every check runs on one flow network
/// whose arcs are the (tail, head) pairs met so far, with the summed capacity of the arcs between them
/// (parallel arcs keep their own routes here, the flow sees their sum); a trial split changes three
/// capacities and changes them back.
inline digraph split_switches(const digraph& d, int root, capacity_t k, std::vector<std::vector<int>>& routes) {
  struct parc {
    int from, to;
    capacity_t c;
    std::vector<int> route;
  };
  std::vector<parc> arcs;
  for (const auto& a : d.arcs) arcs.push_back({a.from, a.to, a.capacity, {a.from, a.to}});
  digraph none = d;
  none.arcs.clear();
  flow_network f(none);
  std::map<std::pair<int, int>, std::size_t> slot;  // (tail, head) -> arc of f
  std::vector<capacity_t> fcap;                     // per arc of f
  auto change = [&](int from, int to, capacity_t delta) {
    auto [it, fresh] = slot.try_emplace({from, to}, fcap.size());
    if (fresh) {
      (void)f.add_arc(from, to, 0);
      fcap.push_back(0);
    }
    fcap[it->second] += delta;
    f.set(it->second, fcap[it->second]);
  };
  for (const auto& a : arcs) change(a.from, a.to, a.c);
  auto connectivity_ok = [&] { return f.connectivity_at_least(root, d.compute, k); };
  for (int s = d.compute; s < d.vertices; ++s) {
    while (true) {  // passes over the pairs (u->s, s->t), each split as far as it keeps the bound
      bool split = false;
      for (std::size_t i = 0; i < arcs.size(); ++i) {
        if (arcs[i].to != s || arcs[i].c <= 0) continue;
        for (std::size_t j = 0; j < arcs.size() && arcs[i].c > 0; ++j) {
          if (arcs[j].from != s || arcs[j].c <= 0) continue;
          // The largest gamma that keeps the bound: the change of every cut is linear and non-increasing in
          // gamma, so bisection is exact.
          const int u = arcs[i].from, t = arcs[j].to;
          auto apply = [&](capacity_t g) {  // g < 0 undoes
            change(u, s, -g);
            change(s, t, -g);
            if (u != t) change(u, t, g);
          };
          auto ok_with = [&](capacity_t g) {
            apply(g);
            const bool ok = connectivity_ok();
            apply(-g);
            return ok;
          };
          const capacity_t most = std::min(arcs[i].c, arcs[j].c);
          capacity_t lo = 0, hi = most + 1;
          if (ok_with(most)) {
            lo = most;
          } else {
            while (hi - lo > 1) {
              const capacity_t mid = lo + (hi - lo) / 2;
              (ok_with(mid) ? lo : hi) = mid;
            }
          }
          if (lo > 0) {
            apply(lo);
            arcs[i].c -= lo;
            arcs[j].c -= lo;
            if (u != t) {
              auto r = arcs[i].route;
              r.insert(r.end(), arcs[j].route.begin() + 1, arcs[j].route.end());
              arcs.push_back({u, t, lo, std::move(r)});
            }
            split = true;
          }
        }
      }
      if (!split) break;
    }
    // Whatever is left at s cannot be split without losing the bound; dropping it must keep the bound.
    std::vector<parc> rest;
    capacity_t left = 0;
    for (auto& a : arcs) {
      if (a.from == s || a.to == s) {
        left += a.c;
        change(a.from, a.to, -a.c);
        continue;
      }
      rest.push_back(std::move(a));
    }
    if (left > 0 && !connectivity_ok())
      throw error("trees::pack_broadcast (exact): switch '" + d.label(s) + "' kept " + std::to_string(left) +
                        " bytes/s that no admissible splitting removes");
    arcs = std::move(rest);
  }
  // Merge arcs with the same ends and route.
  std::map<std::vector<int>, std::size_t> seen;
  std::vector<parc> merged;
  for (auto& a : arcs) {
    if (a.c <= 0) continue;
    if (auto it = seen.find(a.route); it != seen.end()) {
      merged[it->second].c += a.c;
      continue;
    }
    seen.emplace(a.route, merged.size());
    merged.push_back(std::move(a));
  }
  digraph g;
  g.vertices = d.compute;
  g.compute = d.compute;
  g.labels.assign(d.labels.begin(), d.labels.begin() + d.compute);
  routes.clear();
  for (auto& a : merged) {
    g.arcs.push_back({a.from, a.to, a.c});
    routes.push_back(std::move(a.route));
  }
  return g;
}

/// Exact mode on a graph of ranks only: Lovász's construction with weights.
inline std::vector<weighted_tree> pack_exact(const digraph& d, int root, capacity_t k, const pack_options& o) {
  std::vector<weighted_tree> out;
  std::vector<capacity_t> c = capacities(d);
  flow_network f(d);
  auto conn_at_least = [&](const std::vector<capacity_t>& caps, capacity_t at_least) {
    f.set_all(caps);
    return f.connectivity_at_least(root, d.compute, at_least);
  };
  while (k > 0) {
    if (out.size() >= o.max_trees)
      throw error("trees::pack_broadcast (exact): more than " + std::to_string(o.max_trees) +
                        " trees for root " + std::to_string(root) + "; raise pack_options::max_trees");
    std::vector<bool> in(static_cast<std::size_t>(d.vertices), false);
    in[static_cast<std::size_t>(root)] = true;
    std::vector<int> tree;
    for (int step = 1; step < d.compute; ++step) {
      bool grown = false;
      for (std::size_t i = 0; i < d.arcs.size() && !grown; ++i) {
        const auto& a = d.arcs[i];
        if (!in[static_cast<std::size_t>(a.from)] || in[static_cast<std::size_t>(a.to)] || c[i] < 1) continue;
        --c[i];
        if (conn_at_least(c, k - 1)) {
          in[static_cast<std::size_t>(a.to)] = true;
          tree.push_back(static_cast<int>(i));
          grown = true;
        } else {
          ++c[i];
        }
      }
      if (!grown)
        throw error("trees::pack_broadcast (exact): no arc extends the tree at connectivity " + std::to_string(k) +
                          " (Lovász's lemma says one exists: the flow computation is wrong)");
    }
    // The tree holds 1 byte/s; the largest weight w that leaves connectivity k - w (monotone in w).
    capacity_t most = std::numeric_limits<capacity_t>::max();
    for (int i : tree) most = std::min(most, c[static_cast<std::size_t>(i)] + 1);
    most = std::min(most, k);
    auto ok = [&](capacity_t w) {
      auto v = c;
      for (int i : tree) v[static_cast<std::size_t>(i)] -= w - 1;
      return conn_at_least(v, k - w);
    };
    capacity_t lo = 1, hi = most + 1;
    if (ok(most)) {
      lo = most;
    } else {
      while (hi - lo > 1) {
        const capacity_t mid = lo + (hi - lo) / 2;
        (ok(mid) ? lo : hi) = mid;
      }
    }
    for (int i : tree) c[static_cast<std::size_t>(i)] -= lo - 1;
    k -= lo;
    out.push_back(make_tree(d, root, tree, static_cast<double>(lo)));
  }
  return out;
}

}  // namespace detail

/// Packs broadcast trees from `root` on `d` (see the file comment). Both modes return the packed rate, the
/// Edmonds bound, the trees with their rates, and the graph and routes they live on. One rank: no trees,
/// rate and bound +inf.
/// \throws invalid_argument naming the root if it is not a rank, or the first rank it cannot reach.
[[nodiscard]] inline packing pack_broadcast(const digraph& d, int root, const pack_options& o = {}) {
  detail::check_root(d, root, "pack_broadcast");
  if (!(o.epsilon > 0 && o.epsilon <= 0.5))
    throw invalid_argument("trees::pack_broadcast: epsilon " + std::to_string(o.epsilon) + " is not in (0, 0.5]");
  if (!(o.keep > 0 && o.keep <= 1))
    throw invalid_argument("trees::pack_broadcast: keep " + std::to_string(o.keep) + " is not in (0, 1]");
  packing p;
  p.mode = o.mode;
  p.root = root;
  if (d.compute == 1) {
    p.rate = p.bound = std::numeric_limits<double>::infinity();
    p.graph = d;
    return p;
  }
  detail::check_reachable(d, root);
  const capacity_t k = broadcast_bound(d, root);
  p.bound = static_cast<double>(k);
  if (d.switches() > 0) {
    p.graph = detail::split_switches(d, root, k, p.routes);
  } else {
    p.graph = d;
    for (const auto& a : d.arcs) p.routes.push_back({a.from, a.to});
  }
  p.trees = o.mode == pack_mode::blink ? detail::pack_blink(p.graph, root, p.bound, o)
                                        : detail::pack_exact(p.graph, root, k, o);
  for (const auto& t : p.trees) p.rate += t.rate;
  return p;
}

/// `pack_broadcast` on a topology's network graph.
[[nodiscard]] inline packing pack_broadcast(const topology::network& g, int root, const pack_options& o = {}) {
  return pack_broadcast(from_network(g), root, o);
}

/// Whether `p`'s trees fit the capacities of its graph: the rates crossing each arc sum to at most its
/// capacity (relative slack `tolerance`), and every tree spans every rank from the root. Returns "" or
/// the first violation, named.
[[nodiscard]] inline std::string check_packing(const packing& p, double tolerance = 1e-12) {
  std::vector<double> load(p.graph.arcs.size(), 0.0);
  for (std::size_t t = 0; t < p.trees.size(); ++t) {
    const auto& tr = p.trees[t];
    if (!(tr.rate > 0)) return "tree " + std::to_string(t) + " has rate " + std::to_string(tr.rate);
    std::vector<bool> reached(static_cast<std::size_t>(p.graph.vertices), false);
    reached[static_cast<std::size_t>(p.root)] = true;
    for (int i : tr.arcs) {
      const auto& a = p.graph.arcs[static_cast<std::size_t>(i)];
      if (!reached[static_cast<std::size_t>(a.from)] || reached[static_cast<std::size_t>(a.to)])
        return "tree " + std::to_string(t) + ": arc " + std::to_string(a.from) + "->" + std::to_string(a.to) +
               " does not extend the tree";
      reached[static_cast<std::size_t>(a.to)] = true;
      load[static_cast<std::size_t>(i)] += tr.rate;
    }
    for (int v = 0; v < p.graph.compute; ++v)
      if (!reached[static_cast<std::size_t>(v)])
        return "tree " + std::to_string(t) + " does not reach rank " + std::to_string(v);
  }
  for (std::size_t i = 0; i < load.size(); ++i) {
    const auto c = static_cast<double>(p.graph.arcs[i].capacity);
    if (load[i] > c * (1 + tolerance))
      return "arc " + std::to_string(p.graph.arcs[i].from) + "->" + std::to_string(p.graph.arcs[i].to) + " carries " +
             std::to_string(load[i]) + " bytes/s over its capacity " + std::to_string(c);
  }
  return {};
}

}  // namespace dssync::algorithms::trees
