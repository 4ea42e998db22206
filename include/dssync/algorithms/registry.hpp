#pragma once
/// \file
/// Run-time choice of a policy by name, for the short form of `synchronize` and for DSSYNC_ALGO.

#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "dssync/algorithms/direct.hpp"
#include "dssync/algorithms/ring.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/policy.hpp"

namespace dssync::algorithms {

/// Names of the policies `plan_by_name` knows.
[[nodiscard]] inline std::vector<std::string_view> policy_names() { return {ring::name, direct::name}; }

/// Calls `f(policy)` with a default-constructed policy named `name`.
/// \throws invalid_argument naming `name` and the known policies.
template <class F>
decltype(auto) visit_policy(std::string_view name, F&& f) {
  if (name == ring::name) return f(ring{});
  if (name == direct::name) return f(direct{});
  std::string known;
  for (auto n : policy_names()) known += (known.empty() ? "" : ", ") + std::string(n);
  throw invalid_argument("dssync: unknown policy \"" + std::string(name) + "\" (known: " + known + ")");
}

/// The plan of policy `name` on `t` for `q`.
template <concepts::topology Topo>
[[nodiscard]] schedule plan_by_name(std::string_view name, const Topo& t, plan_request q) {
  return visit_policy(name, [&](auto p) { return p.plan(t, q); });
}

/// The policy DSSYNC_ALGO names, or `fallback` if it is unset or empty.
[[nodiscard]] inline std::string_view policy_from_env(std::string_view fallback) {
  const char* v = std::getenv("DSSYNC_ALGO");
  if (v == nullptr || *v == '\0') return fallback;
  return v;
}

}  // namespace dssync::algorithms
