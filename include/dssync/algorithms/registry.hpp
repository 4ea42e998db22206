#pragma once
/// \file
/// Run-time choice of a policy by name, for the short form of `synchronize` and for DSSYNC_ALGO.

#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "dssync/algorithms/bcube.hpp"
#include "dssync/algorithms/direct.hpp"
#include "dssync/algorithms/double_binary_tree.hpp"
#include "dssync/algorithms/gossip.hpp"
#include "dssync/algorithms/hierarchical.hpp"
#include "dssync/algorithms/parameter_server.hpp"
#include "dssync/algorithms/ring.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/policy.hpp"

namespace dssync::algorithms {

/// Names of the policies `plan_by_name` knows. All but gossip are allreduces; gossip has group semantics.
[[nodiscard]] inline std::vector<std::string_view> policy_names() {
  return {ring::name,           direct::name, hierarchical::name, double_binary_tree::name, parameter_server::name,
          bcube::name, gossip::name};
}

/// Calls `f(policy)` with a default-constructed policy named `name`. Policies with parameters take
/// their defaults from the topology when they plan (hierarchical: its racks; double binary tree: the
/// pipeline depth from the count; parameter server: one server per rack, or every worker; gossip: the
/// pairing of the requested iteration; bcube: the topology's n and k, so it needs a `topology::bcube`).
/// \throws invalid_argument naming `name` and the known policies.
template <class F>
decltype(auto) visit_policy(std::string_view name, F&& f) {
  if (name == ring::name) return f(ring{});
  if (name == direct::name) return f(direct{});
  if (name == hierarchical::name) return f(hierarchical{});
  if (name == double_binary_tree::name) return f(double_binary_tree{});
  if (name == parameter_server::name) return f(parameter_server{});
  if (name == bcube::name) return f(bcube{});
  if (name == gossip::name) return f(gossip{});
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
