#pragma once
/// \file
/// `algorithms::tree`: broadcast, reduce and allreduce along spanning trees packed to the Edmonds bound of
/// the topology's network (see `trees::pack_broadcast`): ForestColl's exact packing by default (Zhao et al.,
/// arXiv 2402.06787), Blink's multiplicative-weights packing by option (Wang et al., MLSys 2020).
///
/// Each tree gets its own channel and a contiguous part of the data in proportion to its rate, so the
/// trees finish together; inside a tree the part is cut into pieces that pipeline down (broadcast) or up
/// (reduce). Reduce packs broadcast trees on the reversed arcs. Allreduce is a reduce into `root` then a
/// broadcast from it, on the same trees (Blink's form; the reduce runs against the trees' arcs, which have
/// the same capacity on full-duplex links).

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dssync/algorithms/blocks/compose.hpp"
#include "dssync/algorithms/blocks/partition.hpp"
#include "dssync/algorithms/blocks/tree.hpp"
#include "dssync/algorithms/trees/packing.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/policy.hpp"
#include "dssync/core/schedule.hpp"

namespace dssync::algorithms {

/// Tree-packing policy for topologies with a network graph (`t.graph()`).
struct tree {
  static constexpr std::string_view name = "tree";
  static constexpr std::array collectives = {semantics::allreduce, semantics::broadcast, semantics::reduce};
  /// Most pieces per tree.
  static constexpr std::size_t max_pieces = 64;
  /// The largest ranks x arcs of a network the cost model packs trees for to cost this policy, beyond
  /// which `try_predict` has no estimate for tree (so `best_policy` does not pick it) rather than stall
  /// on its first call. Exact packing measured (bench/tree_packing, this repository's 2-core machine):
  /// full_mesh(32) 31.7k, 0.24 s; racks:8,8 10k, 0.07 s; fat_tree(8) 98k, 1.3 s; full_mesh(64) 258k, 5 s.
  /// Packings are cached, so only the first call pays.
  static constexpr std::size_t cost_model_max_work = std::size_t{1} << 16;

  trees::pack_mode mode = trees::pack_mode::exact;
  double epsilon = 0.1;       ///< Blink mode's accuracy
  std::size_t piece = 16384;  ///< elements per pipelined piece (0: each tree's part whole)
  int allreduce_root = 0;     ///< the rank an allreduce reduces into and broadcasts from
  /// The link classes packed, one packing per set (Blink packs NVLink and PCIe as separate graphs,
  /// MLSys 2020 sec. 4): e.g. `{classes({nvlink}), classes({pcie, socket})}`. The data is split over all
  /// trees of all packings by rate, so that every class finishes together, and each tree's channel
  /// carries its set as route hint (`channel::links`), so the simulator keeps a PCIe tree off NVLink.
  /// Empty (the default): one packing of every link, channels unhinted.
  std::vector<topology::link_classes> link_sets{};

  [[nodiscard]] std::string cache_key(const plan_request&) const {
    std::string k = std::string("mode=") + trees::to_string(mode) + ",eps=" + std::to_string(epsilon) +
                    ",piece=" + std::to_string(piece) + ",root=" + std::to_string(allreduce_root);
    for (const auto m : link_sets) k += ",links=" + std::to_string(m);
    return k;
  }

  /// Blink's heterogeneous form: NVLink trees and PCIe trees (PCIe switches and the CPUs' socket link),
  /// packed apart.
  [[nodiscard]] static std::vector<topology::link_classes> nvlink_and_pcie() {
    using topology::link_class;
    return {topology::classes({link_class::nvlink}), topology::classes({link_class::pcie, link_class::socket})};
  }

  /// The packings a plan of `q` on `t` uses: one per link set (`link_sets`), or one of every link.
  /// Packings depend on the graph, the root, the direction and the mode only (not on the count), so they
  /// are cached per process (`packing_cache`): a plan per count, or the cost model asked per size, packs
  /// once.
  /// \throws invalid_argument for another collective, a root out of range, or a graph (of a link set)
  ///   that does not connect the root to every rank.
  template <concepts::topology Topo>
    requires requires(const Topo& t) { t.graph(); }
  [[nodiscard]] std::vector<trees::packing> packings_for(const Topo& t, const plan_request& q) const {
    const int n = t.workers();
    const int root = root_of(n, q);
    const bool up = q.collective == semantics::reduce;
    const auto g = t.graph();
    std::vector<trees::packing> out;
    const std::vector<topology::link_classes> sets = link_sets.empty() ? std::vector<topology::link_classes>{0} : link_sets;
    for (const auto m : sets) {
      const auto d = trees::from_network(g, m);
      try {
        out.push_back(packing_cache::get(d, root, up, {.mode = mode, .epsilon = epsilon}, [&] {
          return trees::pack_broadcast(up ? trees::reversed(d) : d, root, {.mode = mode, .epsilon = epsilon});
        }));
      } catch (const invalid_argument& e) {
        if (m == 0) throw;
        throw invalid_argument("algorithms::tree: links of class " + topology::to_string_classes(m) + ": " + e.what());
      }
      out.back().links = m;
    }
    return out;
  }

  /// The single packing of a plan without link sets (see `packings_for`).
  /// \throws invalid_argument as `packings_for`, or if `link_sets` holds more than one set.
  template <concepts::topology Topo>
    requires requires(const Topo& t) { t.graph(); }
  [[nodiscard]] trees::packing packing_for(const Topo& t, const plan_request& q) const {
    if (link_sets.size() > 1)
      throw invalid_argument("algorithms::tree::packing_for: " + std::to_string(link_sets.size()) +
                             " link sets give as many packings; use packings_for");
    return std::move(packings_for(t, q).front());
  }

  /// The plan of `q` on `t` along `t`'s packings.
  template <concepts::topology Topo>
    requires requires(const Topo& t) { t.graph(); }
  [[nodiscard]] schedule plan(const Topo& t, plan_request q) const {
    if (t.workers() == 1 || q.count == 0) return plan(t.workers(), q, std::vector<trees::packing>{});
    return plan(t.workers(), q, packings_for(t, q));
  }

  /// The plan of `q` on `n` ranks along the trees of `p` (a packing of `packing_for`, whose ranks are
  /// 0..n-1), for a caller that also reports the packing (dssync-sim) without packing twice.
  [[nodiscard]] schedule plan(int n, plan_request q, const trees::packing& p) const {
    return plan(n, q, std::vector<trees::packing>{p});
  }

  /// The plan along the trees of every packing of `ps` (`packings_for`): the data split over all trees
  /// by rate, one channel per tree, hinted with its packing's link set.
  [[nodiscard]] schedule plan(int n, plan_request q, const std::vector<trees::packing>& ps) const {
    const int root = root_of(n, q);
    auto s = blocks::empty_plan(std::string(name), n, q.count, q.collective, 1, q.rank);
    if (q.collective != semantics::allreduce) s.root = root;
    if (n == 1 || q.count == 0) return s;
    std::vector<double> rates;
    std::vector<std::pair<const trees::weighted_tree*, topology::link_classes>> all;
    for (const auto& p : ps) {
      if (p.root != root || p.graph.compute != n)
        throw invalid_argument("algorithms::tree: the packing has root " + std::to_string(p.root) + " and " +
                               std::to_string(p.graph.compute) + " ranks, the plan needs root " +
                               std::to_string(root) + " and " + std::to_string(n));
      for (const auto& tr : p.trees) {
        rates.push_back(tr.rate);
        all.emplace_back(&tr, p.links);
      }
    }
    const auto parts = blocks::weighted_partition(range{0, q.count}, rates);
    for (std::size_t i = 0; i < all.size(); ++i) {
      const range part = parts[i];
      if (part.empty()) continue;
      const std::vector<int> parent(all[i].first->parent.begin(), all[i].first->parent.begin() + n);
      const std::size_t pieces =
          piece == 0 ? 1 : std::clamp<std::size_t>((part.length + piece - 1) / piece, 1, max_pieces);
      if (q.collective != semantics::broadcast) blocks::tree_pipeline(s, parent, semantics::reduce, part, pieces, i);
      if (q.collective != semantics::reduce) blocks::tree_pipeline(s, parent, semantics::broadcast, part, pieces, i);
      if (all[i].second != 0)
        for (auto& r : s.ranks)
          if (i < r.channels.size()) r.channels[i].links = all[i].second;
    }
    return s;
  }

  /// The process-wide cache of packings, keyed by the whole digraph (every arc and capacity), the root,
  /// the direction and the options; thread-safe, at most `capacity` entries (the oldest go first).
  struct packing_cache {
    static constexpr std::size_t capacity = 64;
    template <class Pack>
    [[nodiscard]] static trees::packing get(const trees::digraph& d, int root, bool up, const trees::pack_options& o,
                                            Pack&& pack) {
      std::vector<std::int64_t> key{d.vertices, d.compute, root, up ? 1 : 0, static_cast<std::int64_t>(o.mode),
                                    std::llround(o.epsilon * 1e12), std::llround(o.keep * 1e12),
                                    static_cast<std::int64_t>(o.max_trees)};
      for (const auto& a : d.arcs) key.insert(key.end(), {a.from, a.to, a.capacity});
      auto& st = state();
      {
        const std::lock_guard lock(st.mutex);
        if (const auto it = st.entries.find(key); it != st.entries.end()) {
          ++st.hits;
          return it->second;
        }
      }
      trees::packing p = std::forward<Pack>(pack)();  // outside the lock: packing can take seconds
      const std::lock_guard lock(st.mutex);
      if (st.entries.size() >= capacity) {
        st.entries.erase(st.order.front());
        st.order.erase(st.order.begin());
      }
      if (st.entries.emplace(key, p).second) st.order.push_back(std::move(key));
      return p;
    }
    /// How many lookups were served from the cache (for tests).
    [[nodiscard]] static std::size_t hits() {
      const std::lock_guard lock(state().mutex);
      return state().hits;
    }

   private:
    struct store {
      std::mutex mutex;
      std::map<std::vector<std::int64_t>, trees::packing> entries;
      std::vector<std::vector<std::int64_t>> order;
      std::size_t hits = 0;
    };
    static store& state() {
      static store s;
      return s;
    }
  };

 private:
  [[nodiscard]] int root_of(int n, const plan_request& q) const {
    if (q.collective != semantics::allreduce && q.collective != semantics::broadcast &&
        q.collective != semantics::reduce)
      throw invalid_argument(std::string("algorithms::tree plans allreduce, broadcast and reduce, not ") +
                             to_string(q.collective));
    const int root = q.collective == semantics::allreduce ? allreduce_root : q.root;
    (void)blocks::rooted_members("algorithms::tree", n, root);  // checks the root
    return root;
  }
};

}  // namespace dssync::algorithms
