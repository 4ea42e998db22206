#pragma once
/// \file
/// Butterfly building blocks over a member list, for small and middle-sized allreduces (Thakur,
/// Rabenseifner & Gropp 2005, "Optimization of collective communication operations in MPICH", and
/// Rabenseifner 2004): recursive doubling of a whole range, recursive halving (a reduce-scatter) and its
/// mirror, recursive doubling of the halves (an allgather), and MPICH's fold of the members beyond the
/// largest power of two, which makes all three work for any member count.
///
/// Receive staging. In recursive doubling both partners send the same range and reduce into it. The
/// reduction may not overwrite the range while the rank's own send of it is in flight (rule 3 of the
/// verifier, which the executor and the simulator keep too), so a plain receive-reduce would leave each
/// partner waiting for the other's receive: a deadlock the verifier reports. The block therefore
/// receives into a scratch element buffer and reduces from it with a local step: a plain plan of IR v2,
/// with nothing special in the executor.

#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "dssync/algorithms/blocks/compose.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/schedule.hpp"

namespace dssync::algorithms::blocks {

/// MPICH's fold of m members onto the largest power of two p <= m: of the first 2·(m - p) members, each
/// even one hands its data to the odd one after it and sits out; the others are the p active members.
struct butterfly_fold {
  std::size_t m = 0;     ///< members
  std::size_t p = 0;     ///< active members: the largest power of two <= m (0 when m = 0)
  std::size_t rem = 0;   ///< m - p: the members that fold
  explicit butterfly_fold(std::size_t members) : m(members) {
    p = members == 0 ? 0 : 1;
    while (p * 2 <= members) p *= 2;
    rem = members - p;
  }
  /// The active index of member i, or -1 for a member that folds into member i + 1.
  [[nodiscard]] long active(std::size_t i) const noexcept {
    if (i < 2 * rem) return i % 2 == 0 ? -1 : static_cast<long>(i / 2);
    return static_cast<long>(i - rem);
  }
  /// The member of active index j.
  [[nodiscard]] std::size_t member(std::size_t j) const noexcept { return j < rem ? 2 * j + 1 : j + rem; }
};

namespace detail {

inline step in_buffer(step st, std::uint8_t buf) noexcept {
  st.buf = buf;
  return st;
}

/// The fold's first half: each folding member sends `r` to its odd neighbour, which reduces it in.
inline void fold_in(schedule& s, std::span<const int> members, const butterfly_fold& f, range r, std::size_t ch) {
  for (std::size_t i = 0; i < 2 * f.rem; i += 2) {
    const int even = members[i], odd = members[i + 1];
    if (s.plans(even)) steps_of(s, even, ch).push_back({step_kind::send, odd, r});
    if (s.plans(odd)) steps_of(s, odd, ch).push_back({step_kind::recv_reduce, even, r});
  }
}

/// The fold's second half: each odd neighbour sends the result back.
inline void fold_out(schedule& s, std::span<const int> members, const butterfly_fold& f, range r, std::size_t ch) {
  for (std::size_t i = 0; i < 2 * f.rem; i += 2) {
    const int even = members[i], odd = members[i + 1];
    if (s.plans(odd)) steps_of(s, odd, ch).push_back({step_kind::send, even, r});
    if (s.plans(even)) steps_of(s, even, ch).push_back({step_kind::recv_copy, odd, r});
  }
}

}  // namespace detail

/// Appends to channel `ch` of each member the allreduce of `r` by recursive doubling: after the fold,
/// active member j exchanges the whole of `r` with j XOR d for d = 1, 2, ..., p/2, receiving into a
/// scratch element buffer of r.length elements that this block declares and reducing from it; then the
/// fold hands the result back. log2 p exchanges (+2 with a fold) of the whole range: latency-optimal,
/// and since a + b = b + a exactly, partners hold bitwise the same sums after every round.
inline void recursive_doubling_allreduce(schedule& s, std::span<const int> members, range r, std::size_t ch = 0) {
  const butterfly_fold f(members.size());
  if (f.m < 2 || r.empty()) return;
  const std::uint8_t stage = s.add_buffer(buffer_kind::elements, r.length);
  const range staged{0, r.length};
  detail::fold_in(s, members, f, r, ch);
  for (std::size_t i = 0; i < f.m; ++i) {
    const long j = f.active(i);
    if (j < 0 || !s.plans(members[i])) continue;
    auto& steps = steps_of(s, members[i], ch);
    for (std::size_t d = 1; d < f.p; d *= 2) {
      const int partner = members[f.member(static_cast<std::size_t>(j) ^ d)];
      steps.push_back({step_kind::send, partner, r});
      steps.push_back(detail::in_buffer({step_kind::recv_copy, partner, staged}, stage));
      steps.push_back(local_step(step_kind::reduce, user_buffer, r, stage, staged));
    }
  }
  detail::fold_out(s, members, f, r, ch);
}

/// Appends to channel `ch` of each member Rabenseifner's allreduce of `r`: after the fold, a
/// reduce-scatter by recursive halving (for d = p/2, ..., 1 active member j keeps the half of its range
/// on its side of bit d, sends the other half to j XOR d and receive-reduces the partner's copy of the
/// half it keeps), then an allgather by recursive doubling (d = 1, ..., p/2: it sends what it holds and
/// copies the partner's sibling half); then the fold hands the result back. 2·log2 p rounds moving
/// 2(p-1)/p of the range per active member, the bandwidth bound; every element is reduced by one member
/// and copied, so all end bitwise equal. No staging: the halves a member sends and receives are disjoint.
inline void rabenseifner_allreduce(schedule& s, std::span<const int> members, range r, std::size_t ch = 0) {
  const butterfly_fold f(members.size());
  if (f.m < 2 || r.empty()) return;
  detail::fold_in(s, members, f, r, ch);
  for (std::size_t i = 0; i < f.m; ++i) {
    const long jl = f.active(i);
    if (jl < 0 || !s.plans(members[i])) continue;
    const auto j = static_cast<std::size_t>(jl);
    auto& steps = steps_of(s, members[i], ch);
    // The halving: `kept[k]` is the range held after the round of bit d_k = p/2, p/4, ..., 1.
    std::vector<range> kept, given;
    range cur = r;
    for (std::size_t d = f.p / 2; d >= 1; d /= 2) {
      const range lo{cur.offset, cur.length / 2}, hi{cur.offset + cur.length / 2, cur.length - cur.length / 2};
      const bool upper = (j & d) != 0;
      const range keep = upper ? hi : lo, give = upper ? lo : hi;
      const int partner = members[f.member(j ^ d)];
      if (!give.empty()) steps.push_back({step_kind::send, partner, give});
      if (!keep.empty()) steps.push_back({step_kind::recv_reduce, partner, keep});
      kept.push_back(keep);
      given.push_back(give);
      cur = keep;
      if (d == 1) break;
    }
    // The doubling, in the reverse order: send what is held, copy in the sibling half.
    for (std::size_t k = kept.size(); k-- > 0;) {
      const std::size_t d = f.p >> (k + 1);
      const int partner = members[f.member(j ^ d)];
      if (!kept[k].empty()) steps.push_back({step_kind::send, partner, kept[k]});
      if (!given[k].empty()) steps.push_back({step_kind::recv_copy, partner, given[k]});
    }
  }
  detail::fold_out(s, members, f, r, ch);
}

/// Appends to channel `ch` of each member the one-round allreduce of `r`: every member sends the whole of
/// `r` to every other and receives theirs into a scratch element buffer of (m-1)·r.length elements that
/// this block declares, then reduces locally in member order, ((x0 + x1) + x2) + ..., the same expression
/// on every member (up to the order of one sum's two operands, which IEEE addition ignores), so all end
/// bitwise equal. One dependent message round (latency α, where ring and `direct` take two or more), at
/// the price of (m-1)·S moved and staged per member: the shape for a few ranks and small buffers.
inline void one_shot_allreduce(schedule& s, std::span<const int> members, range r, std::size_t ch = 0) {
  const std::size_t m = members.size();
  if (m < 2 || r.empty()) return;
  const std::uint8_t stage = s.add_buffer(buffer_kind::elements, (m - 1) * r.length);
  for (std::size_t i = 0; i < m; ++i) {
    if (!s.plans(members[i])) continue;
    auto& steps = steps_of(s, members[i], ch);
    // Member q's data lands in slot q (q < i) or q - 1 (q > i).
    auto slot = [&](std::size_t q) { return range{(q < i ? q : q - 1) * r.length, r.length}; };
    for (std::size_t k = 1; k < m; ++k) steps.push_back({step_kind::send, members[(i + k) % m], r});
    for (std::size_t k = 1; k < m; ++k) {
      const std::size_t q = (i + m - k) % m;
      steps.push_back(detail::in_buffer({step_kind::recv_copy, members[q], slot(q)}, stage));
    }
    // The fold x0 + x1 + ... in member order: in slot 0 up to member i - 1, then into the user's range.
    if (i == 0) {
      for (std::size_t q = 1; q < m; ++q) steps.push_back(local_step(step_kind::reduce, user_buffer, r, stage, slot(q)));
      continue;
    }
    for (std::size_t q = 1; q < i; ++q) steps.push_back(local_step(step_kind::reduce, stage, slot(0), stage, slot(q)));
    steps.push_back(local_step(step_kind::reduce, user_buffer, r, stage, slot(0)));
    for (std::size_t q = i + 1; q < m; ++q) steps.push_back(local_step(step_kind::reduce, user_buffer, r, stage, slot(q)));
  }
}

}  // namespace dssync::algorithms::blocks
