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
#include <cstddef>
#include <string>
#include <string_view>
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
  /// The most ranks the cost model packs trees for to cost this policy (exact packing takes up to 75 ms
  /// for 16 ranks: full_mesh(16), racks:4,4; 0.7 s behind one switch of 64, 1 s on racks:8,8); beyond
  /// it `try_predict` has no estimate for tree, so `best_policy` does not pick it.
  static constexpr int cost_model_max_ranks = 16;

  trees::pack_mode mode = trees::pack_mode::exact;
  double epsilon = 0.1;       ///< Blink mode's accuracy
  std::size_t piece = 16384;  ///< elements per pipelined piece (0: each tree's part whole)
  int allreduce_root = 0;     ///< the rank an allreduce reduces into and broadcasts from

  [[nodiscard]] std::string cache_key(const plan_request&) const {
    return std::string("mode=") + trees::to_string(mode) + ",eps=" + std::to_string(epsilon) +
           ",piece=" + std::to_string(piece) + ",root=" + std::to_string(allreduce_root);
  }

  /// The packing a plan of `q` on `t` uses.
  /// \throws invalid_argument for another collective, a root out of range, or a graph that does not
  ///   connect the root to every rank.
  template <concepts::topology Topo>
    requires requires(const Topo& t) { t.graph(); }
  [[nodiscard]] trees::packing packing_for(const Topo& t, const plan_request& q) const {
    const int n = t.workers();
    const int root = root_of(n, q);
    const auto d = trees::from_network(t.graph());
    return trees::pack_broadcast(q.collective == semantics::reduce ? trees::reversed(d) : d, root,
                                 {.mode = mode, .epsilon = epsilon});
  }

  template <concepts::topology Topo>
    requires requires(const Topo& t) { t.graph(); }
  [[nodiscard]] schedule plan(const Topo& t, plan_request q) const {
    const int n = t.workers();
    const int root = root_of(n, q);
    auto s = blocks::empty_plan(std::string(name), n, q.count, q.collective, 1, q.rank);
    if (q.collective != semantics::allreduce) s.root = root;
    if (n == 1 || q.count == 0) return s;
    const auto p = packing_for(t, q);
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
