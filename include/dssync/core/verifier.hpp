#pragma once
/// \file
/// The schedule verifier: executes a schedule symbolically and proves it correct.
///
/// For every element of every rank it tracks the set of ranks whose contributions the element holds. It
/// plays the schedule by the execution rules of `schedule.hpp` and proves that
///  - the structure is sound (peers and ranges in bounds, matched message lengths equal);
///  - no two channels of one rank race on a range (a channel never reads data another is still writing);
///  - every receive gets a message and every send is received;
///  - no cycle of waits exists (deadlock), including waits for one's own sends to be consumed;
///  - no reduction counts a contribution twice;
///  - every rank ends holding exactly the contributions its semantics promise, each exactly once.

#include <algorithm>
#include <cstdint>
#include <deque>
#include <map>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "dssync/core/error.hpp"
#include "dssync/core/schedule.hpp"

namespace dssync {

/// The verifier's verdict. Converts to `true` when the schedule is proven correct; otherwise `message`
/// names the first violation found.
struct verification {
  bool ok = true;
  std::string message;
  std::size_t messages = 0;  ///< messages exchanged in the symbolic run
  std::size_t elements_moved = 0;  ///< elements carried by the fixed-length messages
  std::size_t bytes_bound = 0;     ///< the bounds of the messages of run-time length, in bytes
  explicit operator bool() const noexcept { return ok; }
};

namespace detail {

using contribution_bits = std::vector<std::uint64_t>;

/// Piecewise-constant map from element offset to the set of contributions held there.
class contribution_map {
 public:
  struct piece {
    std::size_t rel = 0, len = 0;
    contribution_bits bits;
  };

  contribution_map(std::size_t count, contribution_bits initial) : count_(count) {
    if (count_ > 0) segs_.emplace(0, std::move(initial));
  }

  [[nodiscard]] std::vector<piece> extract(const range& r) {
    std::vector<piece> out;
    if (r.empty()) return out;
    split(r.offset);
    split(r.end());
    for (auto it = segs_.find(r.offset); it != segs_.end() && it->first < r.end(); ++it)
      out.push_back({it->first - r.offset, seg_end(it) - it->first, it->second});
    return out;
  }

  /// Applies `pieces` (relative to `r`) by copy or reduce. Returns the index of a doubly counted
  /// contribution, or -1.
  int apply(const range& r, const std::vector<piece>& pieces, bool reduce, std::size_t* where) {
    for (const auto& p : pieces) {
      const std::size_t lo = r.offset + p.rel, hi = lo + p.len;
      split(lo);
      split(hi);
      for (auto it = segs_.find(lo); it != segs_.end() && it->first < hi; ++it) {
        if (!reduce) {
          it->second = p.bits;
          continue;
        }
        for (std::size_t w = 0; w < p.bits.size(); ++w) {
          if (const auto dup = it->second[w] & p.bits[w]; dup != 0) {
            *where = it->first;
            return static_cast<int>(w * 64 + static_cast<std::size_t>(__builtin_ctzll(dup)));
          }
          it->second[w] |= p.bits[w];
        }
      }
    }
    return -1;
  }

 private:
  using map_t = std::map<std::size_t, contribution_bits>;
  [[nodiscard]] std::size_t seg_end(map_t::const_iterator it) const {
    auto nx = std::next(it);
    return nx == segs_.end() ? count_ : nx->first;
  }
  void split(std::size_t x) {
    if (x == 0 || x >= count_) return;
    auto it = segs_.upper_bound(x);
    --it;
    if (it->first == x) return;
    segs_.emplace_hint(std::next(it), x, it->second);
  }
  std::size_t count_;
  map_t segs_;
};

/// What is wrong with the buffers, ranges and kind of `st` in plan `s` ("" if nothing).
inline std::string structure_error(const schedule& s, const step& st) {
  auto unit = [&s](std::uint8_t b) { return s.is_byte_buffer(b) ? " bytes" : " elements"; };
  auto name = [](std::uint8_t b) { return b == user_buffer ? std::string("the buffer") : "buffer " + std::to_string(b); };
  auto in_bounds = [&](std::uint8_t b, const range& r, const char* what) -> std::string {
    if (!s.has_buffer(b))
      return std::string(what) + " names buffer " + std::to_string(b) + ", but the plan declares " +
             std::to_string(s.buffers.size()) + " scratch buffer(s)";
    if (r.end() > s.buffer_size(b))
      return std::string(what) + " ends past " + name(b) + " of " + std::to_string(s.buffer_size(b)) + unit(b);
    return {};
  };
  if (auto e = in_bounds(st.buf, st.data, "range"); !e.empty()) return e;
  const bool bytes = s.is_byte_buffer(st.buf);
  if (!st.is_local()) {
    if (st.variable != bytes)
      return st.variable ? "a message of run-time length must name a byte buffer"
                         : "a fixed-length message cannot name a byte buffer (only messages of run-time length do)";
    if (st.variable && st.kind == step_kind::recv_reduce)
      return "a message of run-time length is received by copy, never reduced (decode-add it instead)";
    return {};
  }
  if (st.variable) return "a local step is not a message of run-time length";
  if (st.kind == step_kind::scale) {
    if (bytes) return "scale needs an element buffer";
    if (st.peer < 1) return "scale needs a divisor of at least 1, not " + std::to_string(st.peer);
    return {};
  }
  if (auto e = in_bounds(st.src_buf, st.src, "source"); !e.empty()) return e;
  const bool src_bytes = s.is_byte_buffer(st.src_buf);
  switch (st.kind) {
    case step_kind::copy:
    case step_kind::reduce:
      if (bytes || src_bytes) return std::string(to_string(st.kind)) + " needs element buffers";
      if (st.src.length != st.data.length)
        return "source and destination lengths differ (" + std::to_string(st.src.length) + " vs " +
               std::to_string(st.data.length) + ")";
      return {};
    case step_kind::encode:
      if (!bytes || src_bytes) return "encode reads elements and writes a byte slot";
      if (st.data.empty()) return "encode needs a non-empty byte slot";
      return {};
    case step_kind::decode:
    case step_kind::decode_add:
      if (bytes || !src_bytes) return std::string(to_string(st.kind)) + " reads a byte slot and writes elements";
      return {};
    default: return {};
  }
}

inline std::string describe(int rank, std::size_t ch, std::size_t idx, const step& s) {
  std::ostringstream os;
  os << "rank " << rank << " channel " << ch << " step " << idx << " (" << s << ")";
  return os.str();
}

}  // namespace detail

/// Proves `s` correct or names the first violation. Never throws for a bad schedule; it reports it.
[[nodiscard]] inline verification verify(const schedule& s) {
  verification v;
  auto fail = [&](const std::string& m) {
    v.ok = false;
    v.message = m;
    return v;
  };
  const int n = s.world_size;
  if (n <= 0) return fail("world size " + std::to_string(n) + " is not positive");
  if (s.planned_rank >= 0)
    return fail("the plan is rank " + std::to_string(s.planned_rank) +
                "'s part only (per-rank planning); the verifier needs the whole-world plan (plan_request::rank = -1)");
  if (static_cast<int>(s.ranks.size()) != n)
    return fail("schedule has plans for " + std::to_string(s.ranks.size()) + " ranks but world size " + std::to_string(n));
  if (has_root(s.kind) && (s.root < 0 || s.root >= n))
    return fail("root " + std::to_string(s.root) + " out of range for world size " + std::to_string(n));
  if (has_blocks(s.kind)) {
    if (static_cast<int>(s.blocks.size()) != n)
      return fail(std::string(to_string(s.kind)) + " needs one block per rank, but the plan has " +
                  std::to_string(s.blocks.size()) + " blocks for " + std::to_string(n) + " ranks");
    for (int r = 0; r < n; ++r) {
      const range& b = s.blocks[static_cast<std::size_t>(r)];
      if (b.end() > s.count) {
        std::ostringstream os;
        os << "block " << b << " of rank " << r << " ends past the buffer of " << s.count << " elements";
        return fail(os.str());
      }
      for (int q = 0; q < r; ++q)
        if (b.overlaps(s.blocks[static_cast<std::size_t>(q)])) {
          std::ostringstream os;
          os << "blocks of ranks " << q << " and " << r << " overlap (" << s.blocks[static_cast<std::size_t>(q)]
             << " and " << b << ")";
          return fail(os.str());
        }
    }
  }
  if (s.kind == semantics::group_allreduce) {
    std::vector<int> seen(static_cast<std::size_t>(n), 0);
    for (const auto& g : s.groups)
      for (int r : g) {
        if (r < 0 || r >= n) return fail("group member " + std::to_string(r) + " out of range");
        if (seen[static_cast<std::size_t>(r)]++) return fail("rank " + std::to_string(r) + " is in two groups");
      }
  }

  // 1. Structure.
  for (int r = 0; r < n; ++r) {
    const auto& plan = s.ranks[static_cast<std::size_t>(r)];
    for (std::size_t c = 0; c < plan.channels.size(); ++c)
      for (std::size_t i = 0; i < plan.channels[c].steps.size(); ++i) {
        const step& st = plan.channels[c].steps[i];
        if (auto why = detail::structure_error(s, st); !why.empty()) return fail(detail::describe(r, c, i, st) + ": " + why);
        if (!st.is_local() && (st.peer < 0 || st.peer >= n || st.peer == r))
          return fail(detail::describe(r, c, i, st) + ": peer " + std::to_string(st.peer) + " is invalid");
      }
  }

  // 2. Channels of one rank must not race: a range written by one channel is touched by no other.
  for (int r = 0; r < n; ++r) {
    const auto& plan = s.ranks[static_cast<std::size_t>(r)];
    if (plan.channels.size() < 2) continue;
    struct access {
      std::uint8_t buf;
      range data;
      std::size_t ch, idx;
      bool write;
    };
    std::vector<access> acc;
    for (std::size_t c = 0; c < plan.channels.size(); ++c)
      for (std::size_t i = 0; i < plan.channels[c].steps.size(); ++i) {
        const step& st = plan.channels[c].steps[i];
        if (!st.data.empty()) acc.push_back({st.buf, st.data, c, i, st.writes()});
        if (st.reads_src() && !st.src.empty()) acc.push_back({st.src_buf, st.src, c, i, false});
      }
    std::sort(acc.begin(), acc.end(), [](const access& a, const access& b) {
      return a.buf != b.buf ? a.buf < b.buf : a.data.offset < b.data.offset;
    });
    for (std::size_t a = 0; a < acc.size(); ++a)
      for (std::size_t b = a + 1; b < acc.size() && acc[b].buf == acc[a].buf && acc[b].data.offset < acc[a].data.end(); ++b)
        if (acc[a].ch != acc[b].ch && (acc[a].write || acc[b].write)) {
          const auto& w = acc[a].write ? acc[a] : acc[b];
          const auto& o = acc[a].write ? acc[b] : acc[a];
          const auto& ws = plan.channels[w.ch].steps[w.idx];
          const auto& os_ = plan.channels[o.ch].steps[o.idx];
          return fail(detail::describe(r, o.ch, o.idx, os_) + " touches elements that " +
                      detail::describe(r, w.ch, w.idx, ws) +
                      " writes on another channel: the channels are unordered, so it may read data that has not "
                      "arrived");
        }
  }

  // 3. Symbolic execution. Element buffers map elements to contribution sets (the user's buffer starts
  // with {r}, scratch element buffers empty); a byte slot holds what was encoded into it: the contribution
  // sets of the encoded elements. So a codec is treated as lossless here, and the plan is proven to move
  // and combine every contribution exactly once.
  const std::size_t words = (static_cast<std::size_t>(n) + 63) / 64;
  using pieces_t = std::vector<detail::contribution_map::piece>;
  struct slot {
    range bound;
    std::size_t elements = 0;
    pieces_t pieces;
  };
  struct rank_state {
    std::vector<detail::contribution_map> elements;  // per buffer (empty for a byte buffer: slots hold those)
    std::map<std::pair<std::uint8_t, std::size_t>, slot> slots;  // byte slots by (buffer, offset)
  };
  std::vector<rank_state> state(static_cast<std::size_t>(n));
  for (int r = 0; r < n; ++r) {
    auto& st = state[static_cast<std::size_t>(r)];
    detail::contribution_bits b(words, 0);
    b[static_cast<std::size_t>(r) / 64] |= std::uint64_t{1} << (r % 64);
    st.elements.emplace_back(s.count, std::move(b));
    for (const auto& d : s.buffers)
      st.elements.emplace_back(d.kind == buffer_kind::elements ? d.size : 0, detail::contribution_bits(words, 0));
  }
  struct message {
    int src;
    std::size_t ch, idx;
    range data;
    pieces_t payload;
    std::size_t send_id;
    bool variable;
    slot carried;
  };
  struct pending_send {
    std::uint8_t buf;
    range data;
    int dst;
    std::size_t ch, idx;
    bool consumed;
  };
  std::unordered_map<std::uint64_t, std::deque<message>> queues;
  auto qkey = [n](int src, int dst, std::size_t ch) {
    return (static_cast<std::uint64_t>(ch) * static_cast<std::uint64_t>(n) + static_cast<std::uint64_t>(src)) *
               static_cast<std::uint64_t>(n) +
           static_cast<std::uint64_t>(dst);
  };
  std::vector<std::vector<pending_send>> sends(static_cast<std::size_t>(n));
  std::vector<std::vector<std::size_t>> pc(static_cast<std::size_t>(n));
  for (int r = 0; r < n; ++r) pc[static_cast<std::size_t>(r)].assign(s.ranks[static_cast<std::size_t>(r)].channels.size(), 0);

  auto war_blocker = [&](int r, std::uint8_t buf, const range& d) -> const pending_send* {
    for (const auto& p : sends[static_cast<std::size_t>(r)])
      if (!p.consumed && p.buf == buf && p.data.overlaps(d)) return &p;
    return nullptr;
  };
  // Writes slot `sl` at (buf, sl.bound): the slots it overlaps are overwritten.
  auto put_slot = [](rank_state& rs, std::uint8_t buf, slot sl) {
    for (auto it = rs.slots.begin(); it != rs.slots.end();)
      if (it->first.first == buf && it->second.bound.overlaps(sl.bound)) it = rs.slots.erase(it);
      else ++it;
    rs.slots[{buf, sl.bound.offset}] = std::move(sl);
  };
  auto find_slot = [](rank_state& rs, std::uint8_t buf, const range& bound) -> slot* {
    auto it = rs.slots.find({buf, bound.offset});
    return it != rs.slots.end() && it->second.bound == bound ? &it->second : nullptr;
  };
  auto at = [](std::uint8_t b, const range& r) {
    std::ostringstream os;
    if (b != user_buffer) os << "buffer " << static_cast<int>(b) << ' ';
    os << r;
    return os.str();
  };

  for (bool progress = true; progress;) {
    progress = false;
    for (int r = 0; r < n; ++r) {
      const auto& plan = s.ranks[static_cast<std::size_t>(r)];
      auto& rs = state[static_cast<std::size_t>(r)];
      for (std::size_t c = 0; c < plan.channels.size(); ++c) {
        auto& i = pc[static_cast<std::size_t>(r)][c];
        const auto& steps = plan.channels[c].steps;
        while (i < steps.size()) {
          const step& st = steps[i];
          if (st.is_send()) {
            auto& mine = sends[static_cast<std::size_t>(r)];
            message m{r, c, i, st.data, {}, mine.size(), st.variable, {}};
            if (st.variable) {
              const slot* sl = find_slot(rs, st.buf, st.data);
              if (sl == nullptr)
                return fail(detail::describe(r, c, i, st) + " sends byte slot " + at(st.buf, st.data) +
                            ", which no encode or receive has written");
              m.carried = *sl;
            } else {
              m.payload = rs.elements[st.buf].extract(st.data);
            }
            queues[qkey(r, st.peer, c)].push_back(std::move(m));
            mine.push_back({st.buf, st.data, st.peer, c, i, false});
            ++i;
            progress = true;
            continue;
          }
          if (war_blocker(r, st.buf, st.data) != nullptr) break;  // rule 3, for every write
          if (st.is_local()) {
            std::size_t where = 0;
            int dup = -1;
            switch (st.kind) {
              case step_kind::copy:
              case step_kind::reduce:
                dup = rs.elements[st.buf].apply(st.data, rs.elements[st.src_buf].extract(st.src),
                                                st.kind == step_kind::reduce, &where);
                break;
              case step_kind::scale: break;
              case step_kind::encode:
                put_slot(rs, st.buf, slot{st.data, st.src.length, rs.elements[st.src_buf].extract(st.src)});
                break;
              case step_kind::decode:
              case step_kind::decode_add: {
                const slot* sl = find_slot(rs, st.src_buf, st.src);
                if (sl == nullptr)
                  return fail(detail::describe(r, c, i, st) + " decodes byte slot " + at(st.src_buf, st.src) +
                              ", which no encode or receive has written");
                if (sl->elements != st.data.length)
                  return fail(detail::describe(r, c, i, st) + " decodes a payload of " + std::to_string(sl->elements) +
                              " elements into " + std::to_string(st.data.length));
                const pieces_t pieces = sl->pieces;
                dup = rs.elements[st.buf].apply(st.data, pieces, st.kind == step_kind::decode_add, &where);
                break;
              }
              default: break;
            }
            if (dup >= 0)
              return fail(detail::describe(r, c, i, st) + " counts the contribution of rank " + std::to_string(dup) +
                          " twice at element " + std::to_string(where));
            ++i;
            progress = true;
            continue;
          }
          auto qit = queues.find(qkey(st.peer, r, c));
          if (qit == queues.end() || qit->second.empty()) break;
          message m = std::move(qit->second.front());
          qit->second.pop_front();
          const step& sent = s.ranks[static_cast<std::size_t>(m.src)].channels[m.ch].steps[m.idx];
          if (m.data.length != st.data.length)
            return fail(detail::describe(r, c, i, st) + " receives the message of " +
                        detail::describe(m.src, m.ch, m.idx, sent) + ", but the lengths differ (" +
                        std::to_string(st.data.length) + " vs " + std::to_string(m.data.length) + ")");
          if (m.variable != st.variable)
            return fail(detail::describe(r, c, i, st) + " receives the message of " +
                        detail::describe(m.src, m.ch, m.idx, sent) +
                        ", but one is of run-time length and the other is not");
          std::size_t where = 0;
          int dup = -1;
          if (st.variable) {
            m.carried.bound = st.data;
            put_slot(rs, st.buf, std::move(m.carried));
          } else {
            dup = rs.elements[st.buf].apply(st.data, m.payload, st.kind == step_kind::recv_reduce, &where);
          }
          if (dup >= 0)
            return fail(detail::describe(r, c, i, st) + " counts the contribution of rank " + std::to_string(dup) +
                        " twice at element " + std::to_string(where));
          sends[static_cast<std::size_t>(m.src)][m.send_id].consumed = true;
          ++v.messages;
          if (st.variable) v.bytes_bound += st.data.length;
          else v.elements_moved += st.data.length;
          ++i;
          progress = true;
        }
      }
    }
  }

  // 4. Everyone finished? Otherwise explain the wait.
  auto blocked_at = [&](int r) -> std::pair<std::size_t, bool> {
    const auto& plan = s.ranks[static_cast<std::size_t>(r)];
    for (std::size_t c = 0; c < plan.channels.size(); ++c)
      if (pc[static_cast<std::size_t>(r)][c] < plan.channels[c].steps.size()) return {c, true};
    return {0, false};
  };
  for (int r0 = 0; r0 < n; ++r0) {
    if (!blocked_at(r0).second) continue;
    std::vector<int> path;
    std::vector<std::string> why;
    std::vector<int> pos(static_cast<std::size_t>(n), -1);
    int r = r0;
    while (true) {
      if (pos[static_cast<std::size_t>(r)] >= 0) {
        std::string m = "deadlock: a cycle of waits:";
        for (std::size_t k = static_cast<std::size_t>(pos[static_cast<std::size_t>(r)]); k < path.size(); ++k)
          m += " " + why[k] + ";";
        return fail(m);
      }
      auto [c, blocked] = blocked_at(r);
      if (!blocked) {
        return fail(why.back() + ", but rank " + std::to_string(r) + " finished without sending it: unmatched receive");
      }
      const std::size_t i = pc[static_cast<std::size_t>(r)][c];
      const step& st = s.ranks[static_cast<std::size_t>(r)].channels[c].steps[i];
      pos[static_cast<std::size_t>(r)] = static_cast<int>(path.size());
      path.push_back(r);
      int next = st.peer;
      std::string w = detail::describe(r, c, i, st);
      auto qit = st.is_local() ? queues.end() : queues.find(qkey(st.peer, r, c));
      if (st.is_local() || (qit != queues.end() && !qit->second.empty())) {
        const pending_send* p = war_blocker(r, st.buf, st.data);
        next = p ? p->dst : st.peer;
        w += " waits for rank " + std::to_string(next) + " to consume its earlier send of overlapping elements";
      } else {
        w += " waits for a message from rank " + std::to_string(st.peer);
      }
      why.push_back(w);
      r = next;
    }
  }
  for (const auto& [key, q] : queues)
    if (!q.empty()) {
      const message& m = q.front();
      const step& st = s.ranks[static_cast<std::size_t>(m.src)].channels[m.ch].steps[m.idx];
      return fail(detail::describe(m.src, m.ch, m.idx, st) + " is never received: unmatched send");
    }

  // 5. Semantics (on the user's buffer): every rank holds exactly its expected contributions, on the ranges they are promised.
  // (An allgather starts as every other collective, rank r holding {r} everywhere: a block that should
  // hold rank j's data and was reduced into, or kept, or copied from a rank other than j, holds a
  // contribution other than {j} and fails.)
  struct promise {
    range where;
    std::vector<int> who;
  };
  auto promises_of = [&](int r) {
    std::vector<promise> out;
    switch (s.kind) {
      case semantics::reduce_scatter: out.push_back({s.block(r), s.expected_contributors(r)}); break;
      case semantics::allgather:
        for (int j = 0; j < n; ++j) out.push_back({s.block(j), {j}});
        break;
      default:
        if (auto e = s.expected_contributors(r); !e.empty()) out.push_back({range{0, s.count}, std::move(e)});
    }
    return out;
  };
  for (int r = 0; r < n; ++r) {
    for (const auto& pr : promises_of(r)) {
      if (pr.where.empty()) continue;
      detail::contribution_bits want(words, 0);
      for (int e : pr.who) want[static_cast<std::size_t>(e) / 64] |= std::uint64_t{1} << (e % 64);
      for (const auto& piece : state[static_cast<std::size_t>(r)].elements[user_buffer].extract(pr.where)) {
        const range rg{pr.where.offset + piece.rel, piece.len};
        const auto& have = piece.bits;
        for (std::size_t w = 0; w < words; ++w) {
          if (const auto miss = want[w] & ~have[w]; miss != 0) {
            std::ostringstream os;
            os << "rank " << r << " ends with elements " << rg << " lacking the contribution of rank "
               << w * 64 + static_cast<std::size_t>(__builtin_ctzll(miss)) << " (" << to_string(s.kind) << ")";
            return fail(os.str());
          }
          if (const auto extra = have[w] & ~want[w]; extra != 0) {
            std::ostringstream os;
            os << "rank " << r << " ends with elements " << rg << " holding the contribution of rank "
               << w * 64 + static_cast<std::size_t>(__builtin_ctzll(extra)) << ", which " << to_string(s.kind)
               << " does not promise it";
            return fail(os.str());
          }
        }
      }
    }
  }
  return v;
}

/// Verifies `s` and throws `invalid_argument` naming the violation if it is not correct.
inline void verify_or_throw(const schedule& s) {
  if (auto v = verify(s); !v) throw invalid_argument("schedule " + s.policy + " failed verification: " + v.message);
}

}  // namespace dssync
