#pragma once
/// \file
/// `algorithms::ring`: ring allreduce as in Baidu's and Horovod's implementation (seed 001; Patarasuk &
/// Yuan 2009): reduce-scatter over N-1 steps, then all-gather over N-1 steps.

#include <algorithm>
#include <array>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "dssync/algorithms/blocks/compose.hpp"
#include "dssync/algorithms/blocks/partition.hpp"
#include "dssync/algorithms/blocks/ring.hpp"
#include "dssync/algorithms/replan.hpp"
#include "dssync/core/chunking.hpp"
#include "dssync/core/policy.hpp"
#include "dssync/core/schedule.hpp"

namespace dssync::algorithms {

/// Ring allreduce. The buffer is split into N chunks. In reduce-scatter step s, rank r sends chunk
/// (r-s) mod N to r+1 and reduces chunk (r-s-1) mod N received from r-1; after N-1 steps rank r holds
/// the full reduction of chunk (r+1) mod N. All-gather then circulates the reduced chunks, copying.
/// Each rank sends 2(N-1)/N of its buffer, the bandwidth lower bound. Every element is reduced on one
/// rank only and then copied, so all ranks end bitwise identical. Works on any topology: it uses the
/// logical ring 0 -> 1 -> ... -> N-1 -> 0. The executor pipelines each chunk in segments.
///
/// It also plans the halves alone (`q.collective`): reduce-scatter, rank r ending with its block r, and
/// allgather, rank r starting with its block r; blocks are `partition(count, N)` or `q.block_sizes`.
struct ring {
  static constexpr std::string_view name = "ring";
  static constexpr std::array collectives = {semantics::allreduce, semantics::reduce_scatter, semantics::allgather};
  static constexpr bool per_rank = true;

  /// Builds the schedule for `t.workers()` ranks and `q.count` elements.
  /// \throws invalid_argument for a collective other than the three, or block sizes that do not fit.
  template <concepts::topology Topo>
  [[nodiscard]] schedule plan(const Topo& t, plan_request q) const {
    const int n = t.workers();
    switch (q.collective) {
      case semantics::allreduce: return build(n, q.count, q.rank);
      case semantics::reduce_scatter:
      case semantics::allgather: {
        auto s = blocks::empty_plan(std::string(name), n, q.count, q.collective, 1, q.rank);
        s.blocks = blocks::block_layout(q.count, static_cast<std::size_t>(n), q.block_sizes);
        const auto members = blocks::iota_members(n);
        if (q.collective == semantics::reduce_scatter)
          blocks::ring_reduce_scatter(s, members, s.blocks);
        else
          blocks::ring_allgather(s, members, s.blocks);
        return s;
      }
      default: break;
    }
    throw invalid_argument(std::string("algorithms::ring plans allreduce, reduce-scatter and allgather, not ") +
                           to_string(q.collective));
  }

  /// The plan for the survivors of the ranks `failed` of `t`: the same algorithm over the survivors,
  /// numbered 0..M-1 in increasing topology rank (as a shrunk communicator numbers them), with
  /// `schedule::hosts` saying where each runs. \throws invalid_argument naming a bad failed rank.
  template <concepts::topology Topo>
  [[nodiscard]] schedule plan_without(const Topo& t, std::span<const int> failed, plan_request q) const {
    auto alive = surviving_ranks(t.workers(), failed, "algorithms::ring::plan_without");
    const int m = static_cast<int>(alive.size());
    return on_survivors(build(m, q.count), std::move(alive));
  }

  /// The allreduce schedule for `n` ranks and `count` elements: `blocks::ring_allreduce` with rank r
  /// reducing chunk (r+1) mod N; rank `only`'s part alone when `only >= 0`.
  /// \throws invalid_argument if `n < 1` or `only` is not -1 or a rank.
  [[nodiscard]] static schedule build(int n, std::size_t count, int only = -1) {
    auto s = blocks::empty_plan(std::string(name), n, count, semantics::allreduce, n > 1 ? 1 : 0, only);
    if (n == 1) return s;
    auto parts = partition(count, static_cast<std::size_t>(n));
    std::rotate(parts.begin(), parts.begin() + 1, parts.end());
    blocks::ring_allreduce(s, blocks::iota_members(n), parts);
    return s;
  }
};

}  // namespace dssync::algorithms
