#pragma once
/// \file
/// `algorithms::encoded_ring`: the compressed allreduce as a true ring reduce-scatter and allgather, for
/// elementwise codecs (`is_elementwise_codec`: identity, fp16, bf16), whose payload of a part of a tensor
/// is that part's payload and which keep no state. Summing such payloads needs no allgather: each hop
/// decodes the partial sum it receives, adds it to its own part in the element type (the wider
/// accumulator: float or double, never 16 bits), and encodes the new partial sum for the next hop. This
/// is the bandwidth-optimal ring of Patarasuk & Yuan (2009) with every message compressed, as NCCL and
/// Horovod's fp16 compression move halves, but accumulated wider than 16 bits, so that the rounding
/// error of a sum of m parts grows with m·2^-11 (fp16), not with the 16-bit sum's own cancellation.
/// A member sends 2(m-1)/m of the encoded tensor, whatever m: the traffic of `encoded_allgather` grows
/// with m, this does not (seed 004's survey; THC, NSDI 2024, for why summable payloads matter).
///
/// Bitwise agreement: the owner of each part encodes its final sum once, overwrites its own part with
/// the decoding of that payload, and the same bytes go around the ring; every member decodes them.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dssync/algorithms/blocks/compose.hpp"
#include "dssync/core/chunking.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/schedule.hpp"

namespace dssync::algorithms {

namespace blocks {

/// Appends to channel `ch` of each member the allreduce of `parts` (together the elements the members
/// reduce; member i owns `parts[i]`) with every message an encoded payload of at most `slot_bytes`
/// bytes (the codec's bound for the largest part; `expected` bytes for the simulator, 0: the bound):
///  1. reduce-scatter: in step k member i encodes part (i-k-1) mod m, sends it to its successor,
///     receives part (i-k-2) mod m from its predecessor and decode-adds it to its own copy;
///  2. the owner of part i encodes it, sends the payload and decodes it into its own part;
///  3. allgather: in step k member i decodes the payload of part (i-k-1) mod m it receives, and forwards
///     those very bytes (steps 0..m-3).
/// Empty parts send nothing. The byte buffer holds, on each member, a few rotating slots (two for the
/// reduce-scatter's sends, two for its receives, one for the owner's payload, three for the allgather):
/// the executor orders the reuse of a slot after the steps that read it (rule 6), and the verifier
/// proves it. \throws invalid_argument for a zero slot size, or if `parts` and `members` differ in size.
inline void encoded_ring_allreduce(schedule& s, std::span<const int> members, std::span<const range> parts,
                                   std::size_t slot_bytes, std::size_t expected = 0, std::size_t ch = 0) {
  if (slot_bytes == 0) throw invalid_argument("blocks::encoded_ring_allreduce: slots of 0 bytes cannot hold a payload");
  if (parts.size() != members.size())
    throw invalid_argument("blocks::encoded_ring_allreduce: " + std::to_string(parts.size()) + " parts for " +
                           std::to_string(members.size()) + " members (one part per member)");
  const long m = static_cast<long>(members.size());
  if (m < 2) return;  // one member: its data is the sum already
  const std::size_t hops = static_cast<std::size_t>(m - 1);
  const std::size_t out_slots = std::min<std::size_t>(2, hops), in_slots = std::min<std::size_t>(2, hops),
                    ag_slots = std::min<std::size_t>(3, hops);
  const std::uint8_t buf = s.add_buffer(buffer_kind::bytes, (out_slots + in_slots + 1 + ag_slots) * slot_bytes);
  auto slot = [slot_bytes](std::size_t index) { return range{index * slot_bytes, slot_bytes}; };
  auto rs_out = [&](long k) { return slot(static_cast<std::size_t>(k) % out_slots); };
  auto rs_in = [&](long k) { return slot(out_slots + static_cast<std::size_t>(k) % in_slots); };
  const range own = slot(out_slots + in_slots);
  auto ag_in = [&](long k) { return slot(out_slots + in_slots + 1 + static_cast<std::size_t>(k) % ag_slots); };
  auto part = [&](long i) { return parts[static_cast<std::size_t>(((i % m) + m) % m)]; };

  for (long i = 0; i < m; ++i) {
    if (!s.plans(members[static_cast<std::size_t>(i)])) continue;
    auto& steps = steps_of(s, members[static_cast<std::size_t>(i)], ch);
    steps.reserve(steps.size() + 8 * hops + 3);
    const int next = members[static_cast<std::size_t>((i + 1) % m)];
    const int prev = members[static_cast<std::size_t>((i + m - 1) % m)];
    for (long k = 0; k < m - 1; ++k) {  // 1. reduce-scatter
      if (const range p = part(i - k - 1); !p.empty()) {
        steps.push_back(local_step(step_kind::encode, buf, rs_out(k), user_buffer, p));
        steps.push_back(variable_message(step_kind::send, next, buf, rs_out(k), expected));
      }
      if (const range p = part(i - k - 2); !p.empty()) {
        steps.push_back(variable_message(step_kind::recv_copy, prev, buf, rs_in(k)));
        steps.push_back(local_step(step_kind::decode_add, user_buffer, p, buf, rs_in(k)));
      }
    }
    if (const range p = part(i); !p.empty()) {  // 2. the owner's payload
      steps.push_back(local_step(step_kind::encode, buf, own, user_buffer, p));
      steps.push_back(variable_message(step_kind::send, next, buf, own, expected));
      steps.push_back(local_step(step_kind::decode, user_buffer, p, buf, own));
    }
    for (long k = 0; k < m - 1; ++k) {  // 3. allgather of the owners' payloads
      const range p = part(i - k - 1);
      if (p.empty()) continue;
      steps.push_back(variable_message(step_kind::recv_copy, prev, buf, ag_in(k)));
      if (k + 1 < m - 1) steps.push_back(variable_message(step_kind::send, next, buf, ag_in(k), expected));
      steps.push_back(local_step(step_kind::decode, user_buffer, p, buf, ag_in(k)));
    }
  }
}

}  // namespace blocks

/// The plans of `blocks::encoded_ring_allreduce` over ranks 0..world-1 in order, rank r owning part
/// (r+1) mod world of `partition(count, world)`, as `algorithms::ring`: with the identity codec the
/// result is bitwise the ring's.
struct encoded_ring {
  static constexpr std::string_view name = "encoded-ring";

  /// The largest part of `count` elements on `world` ranks: what `slot_bytes` must bound.
  [[nodiscard]] static constexpr std::size_t largest_part(std::size_t count, int world) noexcept {
    const auto n = static_cast<std::size_t>(world < 1 ? 1 : world);
    return count / n + (count % n != 0 ? 1 : 0);
  }

  /// The whole plan (or rank `rank`'s part) of an allreduce of `count` elements whose payloads for one
  /// part take at most `slot_bytes` bytes (the codec's `max_encoded_bytes(largest_part(count, world))`),
  /// `expected` bytes expected. `codec` names the codec in the plan's policy name.
  /// \throws invalid_argument for a world size below 1, a rank out of range or a zero slot size.
  [[nodiscard]] static schedule plan(int world, std::size_t count, std::size_t slot_bytes, std::string_view codec,
                                     std::size_t expected = 0, int rank = -1) {
    auto s = blocks::empty_plan(std::string(name) + '(' + std::string(codec) + ')', world, count, semantics::allreduce,
                                world > 1 ? 1 : 0, rank);
    auto parts = partition(count, static_cast<std::size_t>(world));
    std::rotate(parts.begin(), parts.begin() + 1, parts.end());  // as `ring`: the same chains, the same sums
    blocks::encoded_ring_allreduce(s, blocks::iota_members(world), parts, slot_bytes, expected);
    return s;
  }
};

}  // namespace dssync::algorithms
