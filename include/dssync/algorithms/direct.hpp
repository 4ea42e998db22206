#pragma once
/// \file
/// `algorithms::direct`: reduce-scatter by direct reads, then all-gather — the shape that fits shared
/// memory, where every rank reaches every other rank's buffer at the same cost.

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

/// Direct reduce-scatter + all-gather. Rank r owns chunk r of N. Every rank first sends each peer p the
/// peer's chunk p; rank r reduces its chunk straight from all peers (peers r+1, r+2, ... in turn, so
/// that no two ranks read the same peer at once); then every rank sends its reduced chunk to all peers,
/// who copy it. 2(N-1) messages per rank but only two dependent phases (latency 2α instead of
/// 2(N-1)α); each rank moves 2(N-1)/N of its buffer, like ring. On the in-process transport the
/// receiver reads its peers' buffers in place, so no data is staged. Results are bitwise identical on
/// all ranks: each chunk is reduced by its owner only.
struct direct {
  static constexpr std::string_view name = "direct";

  /// Builds the schedule for `t.workers()` ranks and `q.count` elements.
  template <concepts::topology Topo>
  [[nodiscard]] schedule plan(const Topo& t, plan_request q) const {
    return build(t.workers(), q.count);
  }

  /// The plan for the survivors of the ranks `failed` of `t` (see `ring::plan_without`).
  /// \throws invalid_argument naming a bad failed rank.
  template <concepts::topology Topo>
  [[nodiscard]] schedule plan_without(const Topo& t, std::span<const int> failed, plan_request q) const {
    auto alive = surviving_ranks(t.workers(), failed, "algorithms::direct::plan_without");
    const int m = static_cast<int>(alive.size());
    return on_survivors(build(m, q.count), std::move(alive));
  }

  /// The schedule for `n` ranks and `count` elements. \throws invalid_argument if `n < 1`.
  [[nodiscard]] static schedule build(int n, std::size_t count) {
    if (n < 1) throw invalid_argument("algorithms::direct: world size " + std::to_string(n) + " must be at least 1");
    schedule s;
    s.policy = std::string(name);
    s.world_size = n;
    s.count = count;
    s.kind = semantics::allreduce;
    s.ranks.resize(static_cast<std::size_t>(n));
    if (n == 1) return s;
    const auto parts = partition(count, static_cast<std::size_t>(n));
    for (int r = 0; r < n; ++r) {
      auto& steps = s.ranks[static_cast<std::size_t>(r)].channels.emplace_back().steps;
      steps.reserve(4 * static_cast<std::size_t>(n - 1));
      // Peers in the order r-1, r-2, ...: rank p reads from p+1 first, so sends to p go early.
      for (int k = 1; k < n; ++k) {
        const int p = (r - k + n) % n;
        steps.push_back({step_kind::send, p, parts[static_cast<std::size_t>(p)]});
      }
      for (int k = 1; k < n; ++k)
        steps.push_back({step_kind::recv_reduce, (r + k) % n, parts[static_cast<std::size_t>(r)]});
      for (int k = 1; k < n; ++k)
        steps.push_back({step_kind::send, (r - k + n) % n, parts[static_cast<std::size_t>(r)]});
      for (int k = 1; k < n; ++k) {
        const int p = (r + k) % n;
        steps.push_back({step_kind::recv_copy, p, parts[static_cast<std::size_t>(p)]});
      }
    }
    s.drop_empty();
    return s;
  }
};

}  // namespace dssync::algorithms
