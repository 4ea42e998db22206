#pragma once
/// \file
/// Ring building blocks over a member list: reduce-scatter and allgather around the logical ring
/// members[0] -> members[1] -> ... -> members[m-1] -> members[0] (Patarasuk & Yuan 2009, "Bandwidth
/// optimal all-reduce algorithms for clusters of workstations"; the ring of Baidu and Horovod, seed 001).
/// Each takes m-1 steps in which every member sends one part to its successor and receives another from
/// its predecessor, so each member sends (m-1)/m of the data: the bandwidth bound of either collective.

#include <cstddef>
#include <span>
#include <string>

#include "dssync/algorithms/blocks/compose.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/schedule.hpp"

namespace dssync::algorithms::blocks {

namespace detail {

/// m-1 steps around the ring: in step k member i sends part (i-k-shift) mod m to its successor and
/// receives part (i-k-shift-1) mod m from its predecessor with `recv`: exactly the part the predecessor
/// sent in that step. \throws invalid_argument if `parts` and `members` differ in size.
inline void ring_pass(const char* who, schedule& s, std::span<const int> members, std::span<const range> parts,
                      std::size_t ch, long shift, step_kind recv, std::uint8_t buf = user_buffer,
                      std::size_t expected = 0) {
  if (parts.size() != members.size())
    throw invalid_argument(std::string("blocks::") + who + ": " + std::to_string(parts.size()) + " parts for " +
                           std::to_string(members.size()) + " members (one part per member)");
  const long m = static_cast<long>(members.size());
  if (m < 2) return;
  auto at = [&](long i) { return parts[static_cast<std::size_t>(((i % m) + m) % m)]; };
  for (long i = 0; i < m; ++i) {
    if (!s.plans(members[static_cast<std::size_t>(i)])) continue;
    auto& steps = steps_of(s, members[static_cast<std::size_t>(i)], ch);
    steps.reserve(steps.size() + 2 * static_cast<std::size_t>(m - 1));
    const int next = members[static_cast<std::size_t>((i + 1) % m)];
    const int prev = members[static_cast<std::size_t>((i + m - 1) % m)];
    for (long k = 0; k < m - 1; ++k) {
      if (buf != user_buffer) {  // byte slots: messages of run-time length
        steps.push_back(variable_message(step_kind::send, next, buf, at(i - k - shift), expected));
        steps.push_back(variable_message(recv, prev, buf, at(i - k - shift - 1)));
        continue;
      }
      if (const range r = at(i - k - shift); !r.empty()) steps.push_back({step_kind::send, next, r});
      if (const range r = at(i - k - shift - 1); !r.empty()) steps.push_back({recv, prev, r});
    }
  }
}

}  // namespace detail

/// Appends to channel `ch` of each member the ring reduce-scatter of `parts`: member i ends holding, on
/// `parts[i]`, the reduction over all members. In step k member i sends part (i-k-1) mod m and
/// receive-reduces part (i-k-2) mod m, the one its predecessor sent. Every element is reduced along one
/// chain, so its result is the same on every later copy. Empty parts send nothing.
/// \throws invalid_argument if `parts` and `members` differ in size.
inline void ring_reduce_scatter(schedule& s, std::span<const int> members, std::span<const range> parts,
                                std::size_t ch = 0) {
  detail::ring_pass("ring_reduce_scatter", s, members, parts, ch, 1, step_kind::recv_reduce);
}

/// Appends to channel `ch` of each member the ring allgather of `parts`: member i starts with its
/// `parts[i]` and every member ends with every part, copied. In step k member i sends part (i-k) mod m
/// and copies part (i-k-1) mod m from its predecessor. \throws invalid_argument as `ring_reduce_scatter`.
inline void ring_allgather(schedule& s, std::span<const int> members, std::span<const range> parts,
                           std::size_t ch = 0) {
  detail::ring_pass("ring_allgather", s, members, parts, ch, 0, step_kind::recv_copy);
}

/// Appends to channel `ch` of each member the ring allgather of the byte slots `slots` of byte buffer
/// `buf`, as messages of run-time length: member i starts with its slot `slots[i]` written (an encoded
/// payload) and every member ends with every slot, each carrying exactly the bytes its owner wrote.
/// `expected` is the size a slot is expected to carry (for the simulator and the cost; 0: the bound).
/// \throws invalid_argument as `ring_reduce_scatter`, or if `buf` is not a byte buffer of `s`.
inline void ring_allgather_slots(schedule& s, std::span<const int> members, std::span<const range> slots,
                                 std::uint8_t buf, std::size_t expected = 0, std::size_t ch = 0) {
  if (!s.is_byte_buffer(buf))
    throw invalid_argument("blocks::ring_allgather_slots: buffer " + std::to_string(buf) +
                           " is not a byte buffer of the plan");
  detail::ring_pass("ring_allgather_slots", s, members, slots, ch, 0, step_kind::recv_copy, buf, expected);
}

/// Ring allreduce of `parts` (together the members' whole data): reduce-scatter, then allgather, on
/// channel `ch`. Member i reduces `parts[i]`.
inline void ring_allreduce(schedule& s, std::span<const int> members, std::span<const range> parts,
                           std::size_t ch = 0) {
  ring_reduce_scatter(s, members, parts, ch);
  ring_allgather(s, members, parts, ch);
}

}  // namespace dssync::algorithms::blocks
