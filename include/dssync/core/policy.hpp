#pragma once
/// \file
/// The `policy` concept: which schedule runs.

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "dssync/core/schedule.hpp"
#include "dssync/core/topology.hpp"

namespace dssync {

/// What a policy is asked to plan. Grows as policies need more (observed network state for DS-Sync).
struct plan_request {
  std::size_t count = 0;        ///< elements per rank
  std::uint64_t iteration = 0;  ///< training iteration, for policies that change plans over time
};

/// `dssync::concepts::policy`: a policy `P` planning schedules on topology `Topo`.
///
/// Requirements, for `P& p`, `const Topo& t`, `plan_request q`:
///  1. `P::name` is a `std::string_view` naming the policy ("ring").
///  2. `p.plan(t, q)` returns a `schedule` for `t.workers()` ranks and `q.count` elements, or throws
///     `invalid_argument` naming the value it cannot serve (e.g. a world size).
///  3. The schedule obeys the execution rules of schedule.hpp; tests prove it with `verify`.
///  4. Optional: `P::cacheable` (`static constexpr bool`, default true). When true, the plan depends only
///     on (topology, count), and executors cache it; stateful policies set it false.
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

}  // namespace concepts

/// Whether executors may cache the plans of `P` by (topology, count).
template <class P>
inline constexpr bool is_cacheable_policy = [] {
  if constexpr (requires { P::cacheable; })
    return static_cast<bool>(P::cacheable);
  else
    return true;
}();

}  // namespace dssync
