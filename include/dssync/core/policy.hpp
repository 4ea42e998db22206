#pragma once
/// \file
/// The `policy` concept: which schedule runs.

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include "dssync/core/network_state.hpp"
#include "dssync/core/schedule.hpp"
#include "dssync/core/topology.hpp"

namespace dssync {

/// What a policy is asked to plan. Grows as policies need more (observed network state for DS-Sync).
struct plan_request {
  std::size_t count = 0;        ///< elements per rank
  std::uint64_t iteration = 0;  ///< training iteration, for policies that change plans over time
  semantics collective = semantics::allreduce;  ///< which collective (a policy plans those it declares)
  int root = 0;                                 ///< root rank of a broadcast or reduce
  /// Block sizes of a reduce-scatter or allgather, one per rank, summing to `count` (an allgatherv's
  /// layout); empty: the balanced `partition(count, N)`. A view, valid during the `plan` call.
  std::span<const std::size_t> block_sizes{};
  /// Per-rank planning: the rank whose part alone to plan (`schedule::planned_rank`), or -1 for the whole
  /// world. Only policies with `P::per_rank` read it; others plan the whole world.
  int rank = -1;
};

/// `dssync::concepts::policy`: a policy `P` planning schedules on topology `Topo`.
///
/// Requirements, for `P& p`, `const Topo& t`, `plan_request q`:
///  1. `P::name` is a `std::string_view` naming the policy ("ring").
///  2. `p.plan(t, q)` returns a `schedule` for `t.workers()` ranks and `q.count` elements, or throws
///     `invalid_argument` naming the value it cannot serve (e.g. a world size).
///  3. The schedule obeys the execution rules of schedule.hpp; tests prove it with `verify`.
///  4. Optional capabilities, each a small concept below that a policy opts into:
///     - `p.cache_key(q)` (`concepts::keyed_policy`): a string naming everything besides (topology,
///       count) that its plan depends on (its parameters; for a plan that changes with the iteration, the
///       iteration modulo its period). Executors cache plans by (policy type, cache_key, topology, count).
///       A policy whose key needs the topology (DS-Sync's period depends on the rack sizes) offers
///       `p.cache_key(t, q)` instead (`concepts::topology_keyed_policy`).
///     - `P::cacheable` (`static constexpr bool`): false for stateful policies whose every plan must be
///       built anew (gossip's rotating pairing).
///     - `p.plan_without(t, failed, q)` (`concepts::replanning_policy`): the plan for the survivors of
///       the ranks `failed`, so that recovery and `dssync-sim --fail` work for it.
///     - `P::promises` (`static constexpr semantics`): what its plans promise when that is not an
///       allreduce (gossip: `semantics::group_allreduce`). The allreduce short form refuses others.
///     - `P::collectives` (a `static constexpr` array of `semantics`): the collectives it plans, chosen by
///       `q.collective` (ring: allreduce, reduce-scatter and allgather; chain: broadcast and reduce).
///       Without it, a policy plans only what it `promises` and ignores `q.collective`.
///     - `P::per_rank` (`static constexpr bool`): it plans only rank `q.rank`'s part when asked (`q.rank >=
///       0`), equal to that rank's part of its whole plan. Policies built on `algorithms/blocks/` get it
///       by passing `q.rank` to `blocks::empty_plan`. `synchronize` asks for parts when it does not verify.
///     - `p.observe(state)` (`concepts::observing_policy`): it re-plans from the observed `network_state`
///       (DS-Sync splits the groups of contended links); its `cache_key` names the state it observed.
///
/// Caching rule (`is_cacheable_policy`): a policy is cached when `P::cacheable` says so; without it, when
/// it is an empty type (no parameters) or says what its plans depend on with `cache_key`. A policy with
/// data members and no `cache_key` is planned anew on every call: never a stale plan for new parameters.
///
/// Minimal model: `struct solo { static constexpr std::string_view name = "solo"; template <class T>
/// schedule plan(const T& t, plan_request q) const { schedule s; s.policy = "solo"; s.world_size = 1;
/// s.count = q.count; s.ranks.resize(1); return s; } };`
namespace concepts {

template <class P, class Topo>
concept policy = topology<Topo> && requires(P& p, const Topo& t, plan_request q) {
  { P::name } -> std::convertible_to<std::string_view>;
  { p.plan(t, q) } -> std::same_as<schedule>;
};

/// `dssync::concepts::keyed_policy`: `p.cache_key(q)` names what the plan depends on besides (topology,
/// count).
template <class P>
concept keyed_policy = requires(const P& p, const plan_request& q) {
  { p.cache_key(q) } -> std::convertible_to<std::string>;
};

/// `dssync::concepts::topology_keyed_policy`: `p.cache_key(t, q)` names what the plan depends on besides
/// (topology, count), where saying it needs the topology (the period of a shuffle over its racks).
template <class P, class Topo>
concept topology_keyed_policy = requires(const P& p, const Topo& t, const plan_request& q) {
  { p.cache_key(t, q) } -> std::convertible_to<std::string>;
};

/// `dssync::concepts::observing_policy`: `p.observe(state)` tells the policy what the network looks like
/// now, and its next plans follow it.
template <class P>
concept observing_policy = requires(P& p, const network_state& s) { p.observe(s); };

/// `dssync::concepts::replanning_policy`: `p.plan_without(t, failed, q)` plans for the survivors of the
/// ranks `failed` of topology `t`.
template <class P, class Topo>
concept replanning_policy = requires(const P& p, const Topo& t, std::span<const int> failed, plan_request q) {
  { p.plan_without(t, failed, q) } -> std::same_as<schedule>;
};

}  // namespace concepts

/// Whether executors may cache the plans of `P` (see the caching rule above).
template <class P>
inline constexpr bool is_cacheable_policy = [] {
  if constexpr (requires { P::cacheable; })
    return static_cast<bool>(P::cacheable);
  else
    return std::is_empty_v<P> || concepts::keyed_policy<P>;
}();

/// What the plans of `P` promise: `P::promises`, or `semantics::allreduce`.
template <class P>
inline constexpr semantics promised_semantics = [] {
  if constexpr (requires { P::promises; })
    return static_cast<semantics>(P::promises);
  else
    return semantics::allreduce;
}();

/// Whether `P` plans collective `c` (`P::collectives`, else only `promised_semantics<P>`).
template <class P>
[[nodiscard]] constexpr bool plans_collective(semantics c) noexcept {
  if constexpr (requires { P::collectives; }) {
    for (semantics x : P::collectives)
      if (x == c) return true;
    return false;
  } else {
    return c == promised_semantics<P>;
  }
}

/// Whether `P` plans per rank (`P::per_rank`).
template <class P>
inline constexpr bool plans_per_rank = [] {
  if constexpr (requires { P::per_rank; })
    return static_cast<bool>(P::per_rank);
  else
    return false;
}();

/// `p.cache_key(q)`, or "" for a policy without one.
template <class P>
[[nodiscard]] std::string policy_cache_key(const P& p, const plan_request& q) {
  if constexpr (concepts::keyed_policy<P>)
    return std::string(p.cache_key(q));
  else
    return {};
}

/// `p.cache_key(t, q)` where the policy keys by topology, else `policy_cache_key(p, q)`.
template <class P, class Topo>
[[nodiscard]] std::string policy_cache_key(const P& p, const Topo& t, const plan_request& q) {
  if constexpr (concepts::topology_keyed_policy<P, Topo>)
    return std::string(p.cache_key(t, q));
  else
    return policy_cache_key(p, q);
}

}  // namespace dssync
