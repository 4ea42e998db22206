#pragma once
/// \file
/// `algorithms::ds_sync`: divide-and-shuffle synchronization (DS-Sync, seed 000). Workers are split into
/// disjoint groups that synchronize in parallel and independently; the groups are reshuffled every
/// iteration so that, over a period, every worker's information reaches every other (consensus); and
/// groups that hold a contended link are split, so a slow uplink or NIC stalls only a pair.
///
/// It is a composition of three policies: a shuffle (`rack_rotation`, the seed's Fig. 4, by default;
/// `digit_grouping`, `random_pairs`, `fixed_sequence`), the contention adjustment `split_bottlenecks`
/// (Fig. 5 and 6) driven by `observe(network_state)`, and an inner allreduce policy run inside each
/// group (`ring` by default; any policy that plans an allreduce on `topology::full_mesh(m)`), each group's
/// plan embedded on its members (`blocks::embed`). Groups are disjoint, so their plans run side by side
/// without touching each other's ranks; the agreement is scoped to the group (`schedule::groups`), so a
/// group never waits for another.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dssync/algorithms/blocks/compose.hpp"
#include "dssync/algorithms/blocks/embed.hpp"
#include "dssync/algorithms/grouping.hpp"
#include "dssync/algorithms/hierarchical.hpp"
#include "dssync/algorithms/ring.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/network_state.hpp"
#include "dssync/core/policy.hpp"
#include "dssync/core/schedule.hpp"
#include "dssync/topology/full_mesh.hpp"

namespace dssync::algorithms {

/// DS-Sync over shuffle `Shuffle`, with `Inner` inside each group.
///
/// Semantics: `group_allreduce` with `schedule::groups` = the iteration's groups; with `ops::average`
/// each member ends with its group's average (the seed's parameter averaging). Plans depend on the
/// iteration (through the shuffle), on the observed network state and on the parameters; `cache_key`
/// names all three, with the iteration taken modulo the shuffle's period, so a period's plans are cached
/// and reused. It plans per rank: a rank's part holds its own group's plan alone.
template <concepts::shuffle Shuffle = rack_rotation, class Inner = ring>
struct basic_ds_sync {
  static constexpr std::string_view name = "ds_sync";
  static constexpr semantics promises = semantics::group_allreduce;
  static constexpr bool per_rank = true;
  static constexpr bool cacheable = true;

  Shuffle shuffle{};
  Inner inner{};
  /// The contention it plans around (`observe`); empty: the shuffle's groups unchanged.
  network_state state{};

  /// Plans from now on around the contention in `s` (an empty state undoes the adjustment).
  void observe(const network_state& s) { state = s.normalized(); }

  /// The groups of iteration `iteration` on `t`: the shuffle's, split around `state`'s bottlenecks.
  /// \throws invalid_argument if the shuffle's groups do not partition the ranks.
  template <dssync::concepts::topology Topo>
  [[nodiscard]] grouping groups(const Topo& t, std::uint64_t iteration) const {
    const auto racks = detail::checked_racks(name, t.workers(), racks_of(t));
    const std::uint64_t p = period(t);
    auto g = split_bottlenecks(shuffle.groups(racks, iteration), racks, state, p == 0 ? iteration : iteration % p);
    check_grouping("algorithms::ds_sync (" + shuffle.key() + ", iteration " + std::to_string(iteration) + ")",
                   t.workers(), g);
    return g;
  }

  /// The number of iterations after which the groups repeat on `t` (0: never): the shuffle's period P,
  /// or, while contention is observed, P·N, over which the bottlenecks' peers (`split_bottlenecks`'s
  /// choice, the iteration modulo this period) take every value.
  template <dssync::concepts::topology Topo>
  [[nodiscard]] std::uint64_t period(const Topo& t) const {
    const std::uint64_t p = shuffle.period(racks_of(t));
    return state.empty() || p == 0 ? p : p * static_cast<std::uint64_t>(t.workers() > 0 ? t.workers() : 1);
  }

  /// What the plan of `q` on `t` depends on: the shuffle and its phase (the iteration modulo the period),
  /// the observed state and the inner policy.
  template <dssync::concepts::topology Topo>
  [[nodiscard]] std::string cache_key(const Topo& t, const plan_request& q) const {
    const std::uint64_t p = period(t);
    std::string k = shuffle.key() + "|t=" + std::to_string(p == 0 ? q.iteration : q.iteration % p);
    if (!state.empty()) k += "|" + state.key();
    k += "|in=" + std::string(Inner::name);
    if (auto ik = policy_cache_key(inner, q); !ik.empty()) k += "(" + ik + ")";
    return k;
  }

  /// The plan of iteration `q.iteration` on `t` for `q.count` elements (rank `q.rank`'s part when it is
  /// a rank). \throws invalid_argument if the groups do not partition the ranks, or if `Inner` does not
  /// plan an allreduce for a group.
  template <dssync::concepts::topology Topo>
  [[nodiscard]] schedule plan(const Topo& t, plan_request q) const {
    const int n = t.workers();
    auto s = blocks::empty_plan(std::string(name), n, q.count, semantics::group_allreduce, 1, q.rank);
    s.groups = groups(t, q.iteration);
    for (const auto& g : s.groups) {
      if (g.size() < 2) continue;
      int local = -1;
      if (q.rank >= 0) {
        for (std::size_t i = 0; i < g.size(); ++i)
          if (g[i] == q.rank) local = static_cast<int>(i);
        if (local < 0) continue;  // another group's plan: not this rank's part
      }
      plan_request sub{q.count, q.iteration};
      if constexpr (plans_per_rank<Inner>) sub.rank = local;
      Inner in = inner;
      const schedule part = in.plan(topology::full_mesh(static_cast<int>(g.size())), sub);
      if (part.kind != semantics::allreduce)
        throw invalid_argument("algorithms::ds_sync: inner policy " + std::string(Inner::name) + " planned a " +
                               to_string(part.kind) + ", not an allreduce, for a group of " +
                               std::to_string(g.size()));
      blocks::embed(s, part, g);
    }
    return s;
  }
};

/// DS-Sync as the seed builds it: rack rotation, ring inside each group.
using ds_sync = basic_ds_sync<>;

}  // namespace dssync::algorithms
