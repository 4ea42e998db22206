#pragma once
/// \file
/// Chain building blocks over a member list: a pipelined broadcast or reduce along
/// members[0], members[1], ..., members[m-1], the bandwidth-optimal shape for large messages when one
/// rank holds (or receives) all data (the pipelined chain of MPICH's and Open MPI's large-message
/// broadcast; Träff & Ripke 2008, "Optimal broadcast for fully connected processor-node networks").

#include <algorithm>
#include <cstddef>
#include <span>
#include <vector>

#include "dssync/algorithms/blocks/compose.hpp"
#include "dssync/core/chunking.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/schedule.hpp"

namespace dssync::algorithms::blocks {

/// Appends to channel `ch` a chain broadcast (`kind == semantics::broadcast`: members[0] to everyone) or
/// reduce (`semantics::reduce`: everyone into members[0]) of the elements `data`, in `pieces` contiguous
/// pieces. Data flows from the head (broadcast: members[0]; reduce: members[m-1]) to the sink; every
/// member between forwards piece j as soon as it has received (broadcast: copied; reduce: reduced into
/// its own) piece j, so the chain takes m-2+P piece times.
///
/// `window` > 0 bounds the pieces the head has in flight: its successor acknowledges each piece with its
/// first element, a one-element message the head may take (in a broadcast the root's own data back; in
/// a reduce the head is not the root and ends unspecified). A flow-level network (the simulator) would
/// otherwise carry all the head's pieces at once and nothing would pipeline; one piece in flight is
/// enough. Real transports pipeline without it: pass 0.
/// \throws invalid_argument if `kind` is neither broadcast nor reduce.
inline void chain(schedule& s, std::span<const int> members, semantics kind, range data, std::size_t pieces,
                  std::size_t window = 0, std::size_t ch = 0) {
  if (kind != semantics::broadcast && kind != semantics::reduce)
    throw invalid_argument(std::string("blocks::chain: a chain broadcasts or reduces, not ") + to_string(kind));
  const std::size_t m = members.size();
  if (m < 2 || data.empty()) return;
  pieces = std::clamp<std::size_t>(pieces, 1, data.length);
  std::vector<range> part;
  part.reserve(pieces);
  for (std::size_t j = 0; j < pieces; ++j) part.push_back(subchunk(data, pieces, j));
  // q[0] is the head, q[m-1] the sink.
  std::vector<int> q(members.begin(), members.end());
  if (kind == semantics::reduce) std::reverse(q.begin(), q.end());
  const step_kind recv = kind == semantics::reduce ? step_kind::recv_reduce : step_kind::recv_copy;
  const bool acks = window > 0 && pieces > window;
  auto first = [&](std::size_t j) { return range{part[j].offset, 1}; };
  for (std::size_t i = 0; i < m; ++i) {
    if (!s.plans(q[i])) continue;
    auto& steps = steps_of(s, q[i], ch);
    const int prev = i > 0 ? q[i - 1] : -1;
    const int next = i + 1 < m ? q[i + 1] : -1;
    if (i == 0) {
      for (std::size_t j = 0; j < pieces; ++j) {
        if (acks && j >= window) steps.push_back({step_kind::recv_copy, next, first(j - window)});
        steps.push_back({step_kind::send, next, part[j]});
      }
      if (acks)
        for (std::size_t j = pieces - window; j < pieces; ++j) steps.push_back({step_kind::recv_copy, next, first(j)});
      continue;
    }
    for (std::size_t j = 0; j < pieces; ++j) {
      steps.push_back({recv, prev, part[j]});
      if (acks && i == 1) steps.push_back({step_kind::send, prev, first(j)});
      if (next >= 0) steps.push_back({step_kind::send, next, part[j]});
    }
  }
}

}  // namespace dssync::algorithms::blocks
