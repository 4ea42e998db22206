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

  [[nodiscard]] std::string cache_key(const plan_request&) const {
    return std::string("mode=") + trees::to_string(mode) + ",eps=" + std::to_string(epsilon) +
           ",piece=" + std::to_string(piece) + ",root=" + std::to_string(allreduce_root);
  }

  /// The packing a plan of `q` on `t` uses. Packings depend on the graph, the root, the direction and
  /// the mode only (not on the count), so they are cached per process (`packing_cache`): a plan per
  /// count, or the cost model asked per size, packs once.
  /// \throws invalid_argument for another collective, a root out of range, or a graph that does not
  ///   connect the root to every rank.
  template <concepts::topology Topo>
    requires requires(const Topo& t) { t.graph(); }
  [[nodiscard]] trees::packing packing_for(const Topo& t, const plan_request& q) const {
    const int n = t.workers();
    const int root = root_of(n, q);
    const auto d = trees::from_network(t.graph());
    const bool up = q.collective == semantics::reduce;
    return packing_cache::get(d, root, up, {.mode = mode, .epsilon = epsilon}, [&] {
      return trees::pack_broadcast(up ? trees::reversed(d) : d, root, {.mode = mode, .epsilon = epsilon});
    });
  }

  /// The plan of `q` on `t` along `t`'s packing.
  template <concepts::topology Topo>
    requires requires(const Topo& t) { t.graph(); }
  [[nodiscard]] schedule plan(const Topo& t, plan_request q) const {
    if (t.workers() == 1 || q.count == 0) return plan(t.workers(), q, trees::packing{});
    return plan(t.workers(), q, packing_for(t, q));
  }

  /// The plan of `q` on `n` ranks along the trees of `p` (a packing of `packing_for`, whose ranks are
  /// 0..n-1), for a caller that also reports the packing (dssync-sim) without packing twice.
  [[nodiscard]] schedule plan(int n, plan_request q, const trees::packing& p) const {
    const int root = root_of(n, q);
    auto s = blocks::empty_plan(std::string(name), n, q.count, q.collective, 1, q.rank);
    if (q.collective != semantics::allreduce) s.root = root;
    if (n == 1 || q.count == 0) return s;
    if (p.root != root || p.graph.compute != n)
      throw invalid_argument("algorithms::tree: the packing has root " + std::to_string(p.root) + " and " +
                             std::to_string(p.graph.compute) + " ranks, the plan needs root " + std::to_string(root) +
                             " and " + std::to_string(n));
    std::vector<double> rates;
    for (const auto& tr : p.trees) rates.push_back(tr.rate);
    const auto parts = blocks::weighted_partition(range{0, q.count}, rates);
    for (std::size_t i = 0; i < p.trees.size(); ++i) {
      const range part = parts[i];
      if (part.empty()) continue;
      const std::vector<int> parent(p.trees[i].parent.begin(), p.trees[i].parent.begin() + n);
      const std::size_t pieces =
          piece == 0 ? 1 : std::clamp<std::size_t>((part.length + piece - 1) / piece, 1, max_pieces);
      if (q.collective != semantics::broadcast) blocks::tree_pipeline(s, parent, semantics::reduce, part, pieces, i);
      if (q.collective != semantics::reduce) blocks::tree_pipeline(s, parent, semantics::broadcast, part, pieces, i);
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
