#pragma once
/// \file
/// Composition of plans: the glue the building blocks and policies share. A block appends steps to
/// given channels of given ranks of a schedule; `then` puts a second plan after the first on the same
/// channels (phases in sequence), `beside` puts it on channels of its own (sub-plans side by side, as
/// BCube's threads, Blink's trees or DS-Sync's groups run).

#include <cstddef>
#include <string>
#include <vector>

#include "dssync/core/error.hpp"
#include "dssync/core/schedule.hpp"

namespace dssync::algorithms::blocks {

/// An empty plan of `kind` for `n` ranks and `count` elements, named `policy`, every rank with `channels`
/// empty channels; with `rank >= 0`, rank `rank`'s part only (`schedule::planned_rank`): every block then
/// emits that rank's steps alone, so a policy composed of blocks plans per rank by passing `q.rank` here.
/// \throws invalid_argument if `n < 1` or `rank` is not -1 or a rank.
[[nodiscard]] inline schedule empty_plan(std::string policy, int n, std::size_t count, semantics kind,
                                         std::size_t channels = 1, int rank = -1) {
  if (n < 1) throw invalid_argument(policy + ": world size " + std::to_string(n) + " must be at least 1");
  if (rank < -1 || rank >= n)
    throw invalid_argument(policy + ": rank " + std::to_string(rank) + " to plan is not a rank of " +
                           std::to_string(n) + " (or -1 for every rank)");
  schedule s;
  s.policy = std::move(policy);
  s.world_size = n;
  s.count = count;
  s.kind = kind;
  s.planned_rank = rank;
  s.ranks.resize(static_cast<std::size_t>(n));
  for (auto& r : s.ranks) r.channels.resize(channels);
  return s;
}

/// The members 0, 1, ..., n-1: the whole world as a member list.
[[nodiscard]] inline std::vector<int> iota_members(int n) {
  std::vector<int> m(static_cast<std::size_t>(n > 0 ? n : 0));
  for (int i = 0; i < n; ++i) m[static_cast<std::size_t>(i)] = i;
  return m;
}

/// The members root, root+1, ..., root+n-1 (mod n): a rooted collective's order, the root first.
/// \throws invalid_argument, naming `who` and the root, unless 0 <= root < n.
[[nodiscard]] inline std::vector<int> rooted_members(const char* who, int n, int root) {
  if (root < 0 || root >= n)
    throw invalid_argument(std::string(who) + ": root " + std::to_string(root) + " is not a rank of " +
                           std::to_string(n));
  std::vector<int> m(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) m[static_cast<std::size_t>(i)] = (root + i) % n;
  return m;
}

/// The steps of channel `ch` of `rank`, adding empty channels up to `ch` where the rank has fewer. Blocks
/// call it only for ranks the plan holds (`s.plans(rank)`).
[[nodiscard]] inline std::vector<step>& steps_of(schedule& s, int rank, std::size_t ch) {
  auto& chans = s.ranks[static_cast<std::size_t>(rank)].channels;
  if (chans.size() <= ch) chans.resize(ch + 1);
  return chans[ch].steps;
}

/// Declares the scratch buffers of `other` in `s`, after those `s` has, and returns the number by which
/// `other`'s buffer numbers shift (see `shift_buffers`). \throws invalid_argument past 255 buffers.
inline std::uint8_t merge_buffers(schedule& s, const schedule& other) {
  if (s.buffers.size() + other.buffers.size() > 255)
    throw invalid_argument("blocks: a plan holds at most 255 scratch buffers; composing one of " +
                           std::to_string(s.buffers.size()) + " with one of " + std::to_string(other.buffers.size()) +
                           " needs more");
  const auto shift = static_cast<std::uint8_t>(s.buffers.size());
  s.buffers.insert(s.buffers.end(), other.buffers.begin(), other.buffers.end());
  return shift;
}

/// A step of a plan merged by `merge_buffers`: its scratch buffers renumbered by `shift`.
[[nodiscard]] inline step shift_buffers(step st, std::uint8_t shift) noexcept {
  if (st.buf != user_buffer) st.buf = static_cast<std::uint8_t>(st.buf + shift);
  if (st.src_buf != user_buffer) st.src_buf = static_cast<std::uint8_t>(st.src_buf + shift);
  return st;
}

/// Appends every rank's steps of `next` after its steps of `s`, channel by channel: `next` runs as a
/// later phase on the same channels (FIFO matching per channel keeps its messages after those of `s`).
/// \throws invalid_argument if the world sizes or counts differ.
inline schedule& then(schedule& s, const schedule& next) {
  if (next.world_size != s.world_size || next.count != s.count)
    throw invalid_argument("blocks::then: cannot append a plan for " + std::to_string(next.world_size) + " ranks and " +
                           std::to_string(next.count) + " elements to one for " + std::to_string(s.world_size) +
                           " and " + std::to_string(s.count));
  const std::uint8_t shift = merge_buffers(s, next);
  for (int r = 0; r < s.world_size; ++r) {
    const auto& from = next.ranks[static_cast<std::size_t>(r)].channels;
    for (std::size_t c = 0; c < from.size(); ++c) {
      auto& to = steps_of(s, r, c);
      for (const step& st : from[c].steps) to.push_back(shift_buffers(st, shift));
    }
  }
  return s;
}

/// Puts the channels of `other` after all channels of `s` (the same channel numbers on every rank):
/// the two run concurrently. They must touch disjoint elements on each rank (rule 4 of schedule.hpp;
/// the verifier proves it). \throws invalid_argument if the world sizes or counts differ.
inline schedule& beside(schedule& s, const schedule& other) {
  if (other.world_size != s.world_size || other.count != s.count)
    throw invalid_argument("blocks::beside: cannot put a plan for " + std::to_string(other.world_size) +
                           " ranks and " + std::to_string(other.count) + " elements beside one for " +
                           std::to_string(s.world_size) + " and " + std::to_string(s.count));
  const std::size_t base = s.channel_count();
  const std::uint8_t shift = merge_buffers(s, other);
  for (int r = 0; r < s.world_size; ++r) {
    auto& chans = s.ranks[static_cast<std::size_t>(r)].channels;
    const auto& from = other.ranks[static_cast<std::size_t>(r)].channels;
    chans.resize(base);
    chans.insert(chans.end(), from.begin(), from.end());
    if (shift != 0)
      for (std::size_t c = base; c < chans.size(); ++c)
        for (step& st : chans[c].steps) st = shift_buffers(st, shift);
  }
  return s;
}

}  // namespace dssync::algorithms::blocks
