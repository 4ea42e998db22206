#pragma once
/// \file
/// `algorithms::hierarchical`: two-level allreduce over racks (seed 000, Table II, "Hierarchical"): ring
/// reduce-scatter inside each rack, ring allreduce across racks among the workers that own the same
/// chunk, ring all-gather inside each rack. Also `has_racks` / `racks_of`, the rack structure of any
/// topology, which the rack-aware policies share.

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dssync/core/chunking.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/policy.hpp"
#include "dssync/core/schedule.hpp"
#include "dssync/core/topology.hpp"

namespace dssync::algorithms {

/// Whether topology `T` tells which workers share a rack (top-of-rack switch): `t.racks()` returns the
/// groups of ranks, e.g. `std::vector<std::vector<int>>`.
template <class T>
concept has_racks = requires(const T& t) {
  { t.racks() } -> std::convertible_to<std::vector<std::vector<int>>>;
};

/// The racks of `t`: `t.racks()` where the topology has them, otherwise one rack of all workers.
template <concepts::topology Topo>
[[nodiscard]] std::vector<std::vector<int>> racks_of(const Topo& t) {
  if constexpr (has_racks<Topo>) {
    return t.racks();
  } else {
    std::vector<int> all(static_cast<std::size_t>(t.workers()));
    for (std::size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int>(i);
    return {std::move(all)};
  }
}

namespace detail {

/// Checks that `racks` partition the ranks 0..n-1 and returns them without empty racks.
/// \throws invalid_argument naming the offending rank.
inline std::vector<std::vector<int>> checked_racks(std::string_view who, int n, std::vector<std::vector<int>> racks) {
  std::vector<int> seen(static_cast<std::size_t>(n < 0 ? 0 : n), 0);
  std::vector<std::vector<int>> out;
  for (auto& g : racks) {
    for (int r : g) {
      if (r < 0 || r >= n)
        throw invalid_argument(std::string(who) + ": rack member " + std::to_string(r) + " out of range for " +
                               std::to_string(n) + " ranks");
      if (seen[static_cast<std::size_t>(r)]++)
        throw invalid_argument(std::string(who) + ": rank " + std::to_string(r) + " is in two racks");
    }
    if (!g.empty()) out.push_back(std::move(g));
  }
  for (int r = 0; r < n; ++r)
    if (!seen[static_cast<std::size_t>(r)])
      throw invalid_argument(std::string(who) + ": rank " + std::to_string(r) + " is in no rack");
  return out;
}

/// Appends ring reduce-scatter (`gather == false`) or all-gather steps among `members` over `parts`
/// (one per member) to `s`, on channel 0. Member i ends reduce-scatter owning parts[i] reduced over all
/// members, and all-gather starts from that ownership.
inline void ring_phase(schedule& s, const std::vector<int>& members, const std::vector<range>& parts, bool gather) {
  const int g = static_cast<int>(members.size());
  if (g < 2) return;
  auto part = [&](int i) { return parts[static_cast<std::size_t>(((i % g) + g) % g)]; };
  for (int i = 0; i < g; ++i) {
    auto& steps = s.ranks[static_cast<std::size_t>(members[static_cast<std::size_t>(i)])].channels[0].steps;
    const int next = members[static_cast<std::size_t>((i + 1) % g)];
    const int prev = members[static_cast<std::size_t>((i + g - 1) % g)];
    for (int k = 0; k < g - 1; ++k) {
      if (!gather) {
        // Step k: send the partial of part i-1-k, reduce part i-2-k; the last one reduced is part i.
        steps.push_back({step_kind::send, next, part(i - 1 - k)});
        steps.push_back({step_kind::recv_reduce, prev, part(i - 2 - k)});
      } else {
        steps.push_back({step_kind::send, next, part(i - k)});
        steps.push_back({step_kind::recv_copy, prev, part(i - 1 - k)});
      }
    }
  }
}

}  // namespace detail

/// Hierarchical allreduce (seed 000, Table II; the three-phase scheme of Horovod's hierarchical
/// allreduce and of Blink across servers). The topology's racks (`racks_of`) are C groups of workers.
///
/// Even racks (C racks of G workers): the buffer is split into G chunks and member i of every rack
/// owns chunk i.
///  1. Ring reduce-scatter inside each rack: member i ends with chunk i reduced over its rack.
///  2. Ring allreduce of chunk i across racks among the C members i (chunk i split into C pieces).
///  3. Ring all-gather inside each rack.
/// Latency 2(G+C-2)α; each worker sends 2(G-1)/G·S inside its rack and 2(C-1)/(CG)·S across racks,
/// so a rack uplink carries 2(C-1)/C·S each way: 2(G-1)/G·S·β1 + 2(C-1)/C·S·β2 (β2 per byte of the
/// uplink).
///
/// Uneven racks (sizes g_c, K = max g_c): the buffer is split into K chunks. In rack c, member
/// floor(j·g_c/K) owns chunk j, so each member owns a contiguous run of chunks (one chunk each in the
/// largest racks, about K/g_c in smaller ones). Phase 1 and 3 are rings over the members' runs; phase 2
/// runs one cross-rack ring per chunk j among its C owners, chunks in increasing order. This keeps the
/// phase count (2(K-1) + 2(C-1) dependent steps on the largest rack) and every rank's data reduced
/// exactly once; the members of small racks carry proportionally more cross-rack traffic.
///
/// Every element is reduced on one rank and copied everywhere else, so all ranks end bitwise identical.
/// One channel. With one rack it is ring allreduce; with racks of one worker, ring across racks.
struct hierarchical {
  static constexpr std::string_view name = "hierarchical";

  /// Builds the schedule for `t.workers()` ranks and `q.count` elements on the racks of `t`.
  /// \throws invalid_argument if the racks do not partition the ranks.
  template <concepts::topology Topo>
  [[nodiscard]] schedule plan(const Topo& t, plan_request q) const {
    return build(racks_of(t), q.count, t.workers());
  }

  /// The schedule for `racks` (a partition of 0..n-1; `n < 0` means the number of listed ranks) and
  /// `count` elements. Racks keep their order, and members their order within the rack.
  /// \throws invalid_argument if `racks` is not a partition of 0..n-1 or there are no ranks.
  [[nodiscard]] static schedule build(std::vector<std::vector<int>> racks, std::size_t count, int n = -1) {
    if (n < 0) {
      n = 0;
      for (const auto& g : racks) n += static_cast<int>(g.size());
    }
    if (n < 1)
      throw invalid_argument("algorithms::hierarchical: world size " + std::to_string(n) + " must be at least 1");
    racks = detail::checked_racks("algorithms::hierarchical", n, std::move(racks));
    schedule s;
    s.policy = std::string(name);
    s.world_size = n;
    s.count = count;
    s.kind = semantics::allreduce;
    s.ranks.resize(static_cast<std::size_t>(n));
    if (n == 1) return s;
    for (auto& r : s.ranks) r.channels.resize(1);

    const std::size_t C = racks.size();
    std::size_t K = 0;
    for (const auto& g : racks) K = std::max(K, g.size());
    const auto chunks = partition(count, K);
    // owner(c, j): the member of rack c that owns chunk j; run(c, i): the chunks member i of rack c owns.
    auto owner = [&](std::size_t c, std::size_t j) { return racks[c][j * racks[c].size() / K]; };
    auto run = [&](std::size_t c, std::size_t i) {
      const std::size_t g = racks[c].size();
      const std::size_t lo = (i * K + g - 1) / g, hi = ((i + 1) * K + g - 1) / g;  // j with floor(j·g/K) == i
      return range{chunks[lo].offset, hi > lo ? chunks[hi - 1].end() - chunks[lo].offset : 0};
    };

    // 1. Reduce-scatter inside each rack.
    for (std::size_t c = 0; c < C; ++c) {
      std::vector<range> parts;
      for (std::size_t i = 0; i < racks[c].size(); ++i) parts.push_back(run(c, i));
      detail::ring_phase(s, racks[c], parts, false);
    }
    // 2. Allreduce of each chunk across racks among its owners (chunks in increasing order on every rank).
    if (C > 1)
      for (std::size_t j = 0; j < K; ++j) {
        std::vector<int> owners;
        for (std::size_t c = 0; c < C; ++c) owners.push_back(owner(c, j));
        const auto pieces = partition(chunks[j].length, C);
        std::vector<range> parts;
        for (auto p : pieces) parts.push_back({p.offset + chunks[j].offset, p.length});
        detail::ring_phase(s, owners, parts, false);
        detail::ring_phase(s, owners, parts, true);
      }
    // 3. All-gather inside each rack.
    for (std::size_t c = 0; c < C; ++c) {
      std::vector<range> parts;
      for (std::size_t i = 0; i < racks[c].size(); ++i) parts.push_back(run(c, i));
      detail::ring_phase(s, racks[c], parts, true);
    }
    s.drop_empty();
    return s;
  }
};

}  // namespace dssync::algorithms
