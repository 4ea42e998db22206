#pragma once
/// \file
/// `algorithms::binomial_tree`: binomial-tree broadcast and reduce, whole buffer per message, in
/// ceil(log2 N) levels, for small messages (see `blocks::binomial_tree`).

#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "dssync/algorithms/blocks/compose.hpp"
#include "dssync/algorithms/blocks/tree.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/policy.hpp"
#include "dssync/core/schedule.hpp"

namespace dssync::algorithms {

/// Binomial-tree broadcast (`q.collective == semantics::broadcast`) and reduce of `q.count` elements
/// rooted at `q.root`: rank v = (r - root) mod N is tree member v.
struct binomial_tree {
  static constexpr std::string_view name = "binomial_tree";
  static constexpr std::array collectives = {semantics::broadcast, semantics::reduce};
  static constexpr bool per_rank = true;

  /// \throws invalid_argument for another collective or a root out of range.
  template <concepts::topology Topo>
  [[nodiscard]] schedule plan(const Topo& t, plan_request q) const {
    const int n = t.workers();
    if (q.collective != semantics::broadcast && q.collective != semantics::reduce)
      throw invalid_argument(std::string("algorithms::binomial_tree plans broadcast and reduce, not ") +
                             to_string(q.collective));
    const auto order = blocks::rooted_members("algorithms::binomial_tree", n, q.root);
    auto s = blocks::empty_plan(std::string(name), n, q.count, q.collective, 1, q.rank);
    s.root = q.root;
    blocks::binomial_tree(s, order, q.collective, range{0, q.count});
    return s;
  }
};

}  // namespace dssync::algorithms
