#pragma once
/// \file
/// `algorithms::ring`: ring allreduce as in Baidu's and Horovod's implementation (seed 001; Patarasuk &
/// Yuan 2009): reduce-scatter over N-1 steps, then all-gather over N-1 steps.

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <utility>

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
struct ring {
  static constexpr std::string_view name = "ring";

  /// Builds the schedule for `t.workers()` ranks and `q.count` elements.
  template <concepts::topology Topo>
  [[nodiscard]] schedule plan(const Topo& t, plan_request q) const {
    return build(t.workers(), q.count);
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

  /// The schedule for `n` ranks and `count` elements. \throws invalid_argument if `n < 1`.
  [[nodiscard]] static schedule build(int n, std::size_t count) {
    if (n < 1) throw invalid_argument("algorithms::ring: world size " + std::to_string(n) + " must be at least 1");
    schedule s;
    s.policy = std::string(name);
    s.world_size = n;
    s.count = count;
    s.kind = semantics::allreduce;
    s.ranks.resize(static_cast<std::size_t>(n));
    if (n == 1) return s;
    const auto parts = partition(count, static_cast<std::size_t>(n));
    auto at = [&](long c) { return parts[static_cast<std::size_t>(((c % n) + n) % n)]; };
    for (int r = 0; r < n; ++r) {
      auto& steps = s.ranks[static_cast<std::size_t>(r)].channels.emplace_back().steps;
      steps.reserve(4 * static_cast<std::size_t>(n - 1));
      const int next = (r + 1) % n, prev = (r + n - 1) % n;
      for (int k = 0; k < n - 1; ++k) {
        steps.push_back({step_kind::send, next, at(r - k)});
        steps.push_back({step_kind::recv_reduce, prev, at(r - k - 1)});
      }
      for (int k = 0; k < n - 1; ++k) {
        steps.push_back({step_kind::send, next, at(r + 1 - k)});
        steps.push_back({step_kind::recv_copy, prev, at(r - k)});
      }
    }
    s.drop_empty();
    return s;
  }
};

}  // namespace dssync::algorithms
