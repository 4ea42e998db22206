#pragma once
/// \file
/// Tree building blocks over a member list: the binomial tree broadcast and reduce, the fewest hops
/// (ceil(log2 m)) for small messages (the binomial trees of MPICH's short-message broadcast and reduce;
/// Thakur, Rabenseifner & Gropp 2005, "Optimization of collective communication operations in MPICH");
/// and a pipelined broadcast or reduce along any given tree (the packed trees of Blink and ForestColl).

#include <algorithm>
#include <bit>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "dssync/algorithms/blocks/compose.hpp"
#include "dssync/core/chunking.hpp"
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

/// Appends to channel `ch` a broadcast (from the tree's root) or reduce (into it) of `data` along the tree
/// `parent` (per rank: its parent, -1 for the root; every rank in the tree), in `pieces` contiguous pieces
/// that pipeline down (broadcast: receive piece j from the parent, then send it to every child) or up
/// (reduce: receive-reduce piece j from every child, then send it to the parent).
/// \throws invalid_argument if `kind` is neither broadcast nor reduce, or `parent` is not one tree.
inline void tree_pipeline(schedule& s, std::span<const int> parent, semantics kind, range data, std::size_t pieces,
                          std::size_t ch = 0) {
  if (kind != semantics::broadcast && kind != semantics::reduce)
    throw invalid_argument(std::string("blocks::tree_pipeline: a tree broadcasts or reduces, not ") + to_string(kind));
  const std::size_t n = parent.size();
  std::vector<std::vector<int>> children(n);
  int roots = 0;
  for (std::size_t v = 0; v < n; ++v) {
    const int p = parent[v];
    if (p < 0) {
      ++roots;
      continue;
    }
    if (static_cast<std::size_t>(p) >= n || static_cast<std::size_t>(p) == v)
      throw invalid_argument("blocks::tree_pipeline: rank " + std::to_string(v) + " has parent " + std::to_string(p) +
                             ", not a rank of " + std::to_string(n));
    children[static_cast<std::size_t>(p)].push_back(static_cast<int>(v));
  }
  if (roots != 1)
    throw invalid_argument("blocks::tree_pipeline: the parents give " + std::to_string(roots) + " roots, not one");
  if (n < 2 || data.empty()) return;
  pieces = std::clamp<std::size_t>(pieces, 1, data.length);
  for (std::size_t v = 0; v < n; ++v) {
    const int me = static_cast<int>(v);
    if (!s.plans(me)) continue;
    auto& steps = steps_of(s, me, ch);
    for (std::size_t j = 0; j < pieces; ++j) {
      const range part = subchunk(data, pieces, j);
      if (part.empty()) continue;
      if (kind == semantics::broadcast) {
        if (parent[v] >= 0) steps.push_back({step_kind::recv_copy, parent[v], part});
        for (int c : children[v]) steps.push_back({step_kind::send, c, part});
      } else {
        for (int c : children[v]) steps.push_back({step_kind::recv_reduce, c, part});
        if (parent[v] >= 0) steps.push_back({step_kind::send, parent[v], part});
      }
    }
  }
}

}  // namespace dssync::algorithms::blocks
