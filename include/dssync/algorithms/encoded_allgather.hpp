#pragma once
/// \file
/// `algorithms::encoded_allgather`: the allreduce of a codec's payloads by an allgather, for codecs whose
/// payloads cannot be summed on the wire (sparse and quantized ones: onebit, qsgd, terngrad, threshold,
/// topk, randomk, dgc). GRACE (Xu et al., ICDCS 2021) and Horovod's compression run it this way, in
/// a framework layer; here it is a plan of the spine (IR v2: a byte buffer of slots, local encode and
/// decode steps, messages of run-time length).
///
/// Each member encodes its data into its own slot once (so error feedback is applied exactly once per
/// call), the slots go around the ring as messages of run-time length (each carries the bytes its owner's
/// codec wrote, at most the slot's bound), and every member decodes all m payloads in member order: the
/// first overwriting its data, the others added. Every member therefore ends with bitwise the same sum of
/// the decoded payloads. A member receives m-1 payloads, so the traffic per member grows with m: this is
/// the allgather the issue names for non-linear codecs, not a reduce-scatter.

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dssync/algorithms/blocks/compose.hpp"
#include "dssync/algorithms/blocks/ring.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/schedule.hpp"

namespace dssync::algorithms {

namespace blocks {

/// Appends to channel `ch` of each member the allreduce of encoded payloads: declares a byte buffer of
/// one slot of `slot_bytes` per member, encodes the member's elements `[0, s.count)` into its slot, ring-
/// allgathers the slots (`expected` bytes each for the simulator; 0: the bound), and decodes every slot
/// in member order into `[0, s.count)`. \throws invalid_argument for a zero slot size.
inline void encoded_allreduce(schedule& s, std::span<const int> members, std::size_t slot_bytes,
                              std::size_t expected = 0, std::size_t ch = 0) {
  if (slot_bytes == 0) throw invalid_argument("blocks::encoded_allreduce: slots of 0 bytes cannot hold a payload");
  const std::size_t m = members.size();
  const std::uint8_t buf = s.add_buffer(buffer_kind::bytes, m * slot_bytes);
  std::vector<range> slots;
  slots.reserve(m);
  for (std::size_t i = 0; i < m; ++i) slots.push_back({i * slot_bytes, slot_bytes});
  const range all{0, s.count};
  for (std::size_t i = 0; i < m; ++i)
    if (s.plans(members[i])) steps_of(s, members[i], ch).push_back(local_step(step_kind::encode, buf, slots[i], user_buffer, all));
  ring_allgather_slots(s, members, slots, buf, expected, ch);
  for (std::size_t i = 0; i < m; ++i) {
    if (!s.plans(members[i])) continue;
    auto& steps = steps_of(s, members[i], ch);
    for (std::size_t j = 0; j < m; ++j)
      steps.push_back(local_step(j == 0 ? step_kind::decode : step_kind::decode_add, user_buffer, all, buf, slots[j]));
  }
}

}  // namespace blocks

/// The plans of `blocks::encoded_allreduce` over ranks 0..world-1 in order.
struct encoded_allgather {
  static constexpr std::string_view name = "encoded-allgather";

  /// The whole plan (or rank `rank`'s part) of an allreduce of `count` elements whose payloads take at
  /// most `slot_bytes` bytes (the codec's `max_encoded_bytes(count)`), `expected` bytes expected.
  /// `codec` names the codec in the plan's policy name, so that ranks with different codecs disagree.
  /// \throws invalid_argument for a world size below 1 or a zero slot size.
  [[nodiscard]] static schedule plan(int world, std::size_t count, std::size_t slot_bytes, std::string_view codec,
                                     std::size_t expected = 0, int rank = -1) {
    if (world < 1) throw invalid_argument("encoded_allgather: world size " + std::to_string(world) + " is not positive");
    schedule s;
    s.policy = std::string(name) + '(' + std::string(codec) + ')';
    s.world_size = world;
    s.count = count;
    s.kind = semantics::allreduce;
    s.ranks.resize(static_cast<std::size_t>(world));
    s.planned_rank = rank;
    std::vector<int> members(static_cast<std::size_t>(world));
    for (int r = 0; r < world; ++r) members[static_cast<std::size_t>(r)] = r;
    blocks::encoded_allreduce(s, members, slot_bytes, expected);
    return s;
  }
};

}  // namespace dssync::algorithms
