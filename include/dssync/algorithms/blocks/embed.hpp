#pragma once
/// \file
/// `blocks::embed`: a plan for a group of m ranks, made by any policy, run by m members of a larger
/// world. DS-Sync's groups run whatever policy the user names inside each group this way.

#include <cstddef>
#include <span>
#include <string>

#include "dssync/algorithms/blocks/compose.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/schedule.hpp"

namespace dssync::algorithms::blocks {

/// Appends `sub`, a plan for `members.size()` ranks, to `s`: sub-plan rank i runs as `members[i]`, its
/// peers renamed the same way, its channel c as channel `first_channel + c` (after the steps the member
/// already has there). Ranks that `s` does not plan (`s.plans(r)`), and ranks that a per-rank `sub`
/// does not hold, get nothing. The members must be distinct ranks of `s`; `sub` must have `s.count`
/// elements. \throws invalid_argument naming the member or the sizes that do not fit.
inline schedule& embed(schedule& s, const schedule& sub, std::span<const int> members, std::size_t first_channel = 0) {
  if (sub.world_size != static_cast<int>(members.size()) || sub.count != s.count)
    throw invalid_argument("blocks::embed: a plan for " + std::to_string(sub.world_size) + " ranks and " +
                           std::to_string(sub.count) + " elements cannot run on " + std::to_string(members.size()) +
                           " members of a plan for " + std::to_string(s.count) + " elements");
  for (std::size_t i = 0; i < members.size(); ++i) {
    const int r = members[i];
    if (r < 0 || r >= s.world_size)
      throw invalid_argument("blocks::embed: member " + std::to_string(r) + " is not a rank of " +
                             std::to_string(s.world_size));
    for (std::size_t j = 0; j < i; ++j)
      if (members[j] == r) throw invalid_argument("blocks::embed: rank " + std::to_string(r) + " is a member twice");
  }
  // The sub-plan's scratch buffers are declared in `s`; an executor allocates only the buffers its own
  // steps name, so the members of other groups pay nothing for them.
  const std::uint8_t shift = merge_buffers(s, sub);
  for (std::size_t i = 0; i < members.size(); ++i) {
    const int r = members[i];
    if (!s.plans(r) || !sub.plans(static_cast<int>(i))) continue;
    const auto& from = sub.ranks[i].channels;
    for (std::size_t c = 0; c < from.size(); ++c) {
      auto& to = steps_of(s, r, first_channel + c);
      to.reserve(to.size() + from[c].steps.size());
      for (step st : from[c].steps) {
        if (!st.is_local()) st.peer = members[static_cast<std::size_t>(st.peer)];
        to.push_back(shift_buffers(st, shift));
      }
    }
  }
  return s;
}

}  // namespace dssync::algorithms::blocks
