#pragma once
/// \file
/// Tree building blocks over a member list: the binomial tree broadcast and reduce, the fewest hops
/// (ceil(log2 m)) for small messages (the binomial trees of MPICH's short-message broadcast and reduce;
/// Thakur, Rabenseifner & Gropp 2005, "Optimization of collective communication operations in MPICH").

#include <bit>
#include <cstddef>
#include <span>
#include <vector>

#include "dssync/algorithms/blocks/compose.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/schedule.hpp"

namespace dssync::algorithms::blocks {

/// Appends to channel `ch` a binomial-tree broadcast (from members[0]) or reduce (into members[0]) of
/// the elements `data`, whole per message. Member v has children v + 2^i for 2^i > v (bit_floor(v) <
/// 2^i) and parent v - bit_floor(v). Broadcast: receive from the parent, then send to the children,
/// largest subtree first. Reduce: receive-reduce from the children, smallest subtree first, then send to
/// the parent. \throws invalid_argument if `kind` is neither broadcast nor reduce.
inline void binomial_tree(schedule& s, std::span<const int> members, semantics kind, range data,
                          std::size_t ch = 0) {
  if (kind != semantics::broadcast && kind != semantics::reduce)
    throw invalid_argument(std::string("blocks::binomial_tree: a tree broadcasts or reduces, not ") + to_string(kind));
  const std::size_t m = members.size();
  if (m < 2 || data.empty()) return;
  for (std::size_t v = 0; v < m; ++v) {
    if (!s.plans(members[v])) continue;
    auto& steps = steps_of(s, members[v], ch);
    const int parent = v == 0 ? -1 : members[v & ~std::bit_floor(v)];
    std::vector<int> children;  // smallest subtree first
    for (std::size_t b = v == 0 ? 1 : std::bit_floor(v) << 1; v + b < m; b <<= 1) children.push_back(members[v + b]);
    if (kind == semantics::broadcast) {
      if (parent >= 0) steps.push_back({step_kind::recv_copy, parent, data});
      for (auto it = children.rbegin(); it != children.rend(); ++it) steps.push_back({step_kind::send, *it, data});
    } else {
      for (int c : children) steps.push_back({step_kind::recv_reduce, c, data});
      if (parent >= 0) steps.push_back({step_kind::send, parent, data});
    }
  }
}

}  // namespace dssync::algorithms::blocks
