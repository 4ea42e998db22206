#pragma once
/// \file
/// Building blocks for `plan_without`: the survivors of failed ranks, and a plan over the survivors that
/// keeps where each one runs (`schedule::hosts`). A topology-oblivious policy re-plans by building its
/// plan for the survivor count and placing it on the survivors (`on_survivors`); BML does its own
/// (`algorithms::bcube::plan_without`), because its pieces follow the BCube's switches.

#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dssync/core/error.hpp"
#include "dssync/core/schedule.hpp"

namespace dssync::algorithms {

/// The ranks 0..n-1 not in `failed`, increasing: the survivors as a shrunk communicator numbers them
/// (survivor i is original rank `surviving_ranks(n, failed)[i]`). `who` names the caller in errors.
/// \throws invalid_argument naming the value if n < 1, a failed rank is out of range or listed twice, or
///   every rank failed.
[[nodiscard]] inline std::vector<int> surviving_ranks(int n, std::span<const int> failed, std::string_view who) {
  const std::string w(who);
  if (n < 1) throw invalid_argument(w + ": N = " + std::to_string(n) + " must be at least 1");
  std::vector<char> dead(static_cast<std::size_t>(n), 0);
  for (const int r : failed) {
    if (r < 0 || r >= n)
      throw invalid_argument(w + ": failed rank " + std::to_string(r) + " is not in 0.." + std::to_string(n - 1));
    if (dead[static_cast<std::size_t>(r)]) throw invalid_argument(w + ": failed rank " + std::to_string(r) + " is listed twice");
    dead[static_cast<std::size_t>(r)] = 1;
  }
  if (failed.size() == static_cast<std::size_t>(n))
    throw invalid_argument(w + ": all " + std::to_string(n) + " ranks failed; no survivor is left");
  std::vector<int> out;
  out.reserve(static_cast<std::size_t>(n) - failed.size());
  for (int r = 0; r < n; ++r)
    if (!dead[static_cast<std::size_t>(r)]) out.push_back(r);
  return out;
}

/// Places `s`, a plan for `survivors.size()` ranks, on the survivors: schedule rank i runs on topology
/// rank `survivors[i]` (`schedule::hosts`; empty when nobody failed).
[[nodiscard]] inline schedule on_survivors(schedule s, std::vector<int> survivors) {
  bool identity = true;
  for (std::size_t i = 0; i < survivors.size(); ++i) identity = identity && survivors[i] == static_cast<int>(i);
  if (!identity) s.hosts = std::move(survivors);
  return s;
}

}  // namespace dssync::algorithms
