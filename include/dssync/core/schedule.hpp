#pragma once
/// \file
/// The schedule: the spine that executors, the simulator, the cost model and the verifier share.
///
/// A schedule says, for every rank, an ordered list of steps on one or more channels. Channels are
/// independent streams (a BCube thread, a Blink tree, a DS-Sync group) that run concurrently; the steps
/// of one channel run in order. A step is "send range r to rank p", "receive range r from rank q and
/// reduce it into mine" or "receive range r from rank q and copy it over mine".
///
/// Execution rules every consumer shares (the verifier proves schedules against exactly these):
///  1. Sends are non-blocking. The i-th send from rank a to rank b on channel c matches the i-th receive
///     by b from a on channel c; both name ranges of the same length.
///  2. A receive blocks until its message has arrived.
///  3. A rank never overwrites elements it has an unfinished send of: a receive into a range waits until
///     every earlier send of an overlapping range has been consumed by its receiver. (So an executor may
///     let the receiver read straight from the sender's buffer: zero copy.)
///  4. On one rank, a range written by one channel is touched by no other channel.
///  5. A rank's part ends when all its channels reached their end and all its sends were consumed.
///
/// Buffers (IR v2). A step's range indexes a buffer: buffer 0 is the user's `count` elements, and the
/// plan may declare scratch buffers (`schedule::buffers`, numbered from 1) of elements or of bytes. Local
/// steps run on one rank without a peer: copy, reduce and scale between element ranges, and encode,
/// decode and decode-and-accumulate through the codec the caller gives the executor. Rules 3 and 4 hold
/// per buffer, for every step that reads or writes a range (a local step reads `src` and writes `data`).
///  6. A step of one channel waits for every earlier unfinished step of its channel whose ranges conflict
///     with its own (read after write, write after read, write after write); otherwise steps overlap.
///  7. Messages of run-time length (`step::variable`) carry an encoded slot of a byte buffer: `data` is
///     the slot and its length the upper bound. An encode writes the slot and the actual length; a
///     variable send sends the actual bytes; a variable receive (a copy, never a reduction) learns the
///     length from the message and refuses more than the bound. A decode reads the slot at exactly its
///     range. The verifier reasons with the bounds; the simulator charges `expected_bytes()`.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include "dssync/core/chunking.hpp"
#include "dssync/core/link_class.hpp"

namespace dssync {

/// What a step does.
enum class step_kind : std::uint8_t {
  send,         ///< send my range to `peer`
  recv_reduce,  ///< receive a range from `peer` and reduce it into mine with the op
  recv_copy,    ///< receive a range from `peer` and copy it over mine
  // Local steps (no peer; `src` is the range read, in buffer `src_buf`):
  copy,        ///< `data` = `src` (element buffers, equal lengths)
  reduce,      ///< `data` op= `src` (element buffers, equal lengths)
  scale,       ///< `data` /= `peer` (the divisor, at least 1), for averages and rescaled batches
  encode,      ///< byte slot `data` = the codec's payload of elements `src` (at most `data.length` bytes)
  decode,      ///< elements `data` = the codec's decoding of byte slot `src`
  decode_add,  ///< elements `data` op= the codec's decoding of byte slot `src`
};

[[nodiscard]] constexpr const char* to_string(step_kind k) noexcept {
  switch (k) {
    case step_kind::send: return "send";
    case step_kind::recv_reduce: return "recv-reduce";
    case step_kind::recv_copy: return "recv-copy";
    case step_kind::copy: return "copy";
    case step_kind::reduce: return "reduce";
    case step_kind::scale: return "scale";
    case step_kind::encode: return "encode";
    case step_kind::decode: return "decode";
    case step_kind::decode_add: return "decode-add";
  }
  return "?";
}

/// Whether a step of kind `k` runs on its rank alone (no peer, no message).
[[nodiscard]] constexpr bool is_local(step_kind k) noexcept { return k >= step_kind::copy; }

/// Whether a local step of kind `k` goes through the codec.
[[nodiscard]] constexpr bool uses_codec(step_kind k) noexcept {
  return k == step_kind::encode || k == step_kind::decode || k == step_kind::decode_add;
}

/// The buffer a plan names `0`: the user's `count` elements.
inline constexpr std::uint8_t user_buffer = 0;

/// One step of one channel of one rank.
struct step {
  step_kind kind = step_kind::send;
  /// The peer rank of a send or receive. For local steps it is the step's argument: `scale`'s divisor,
  /// and unused (0) otherwise.
  int peer = -1;
  range data{};  ///< what the step reads (send) or writes (everything else), in buffer `buf`
  /// The algorithm stage this step belongs to (BML's aggregation / auxiliary / broadcast stages). Only
  /// the simulator's lockstep mode reads it (a barrier between stages, as papers count stage by stage);
  /// executors and the verifier ignore it.
  std::uint32_t stage = 0;
  std::uint8_t buf = user_buffer;      ///< the buffer `data` indexes
  std::uint8_t src_buf = user_buffer;  ///< the buffer `src` indexes (local steps)
  bool variable = false;               ///< a message of run-time length (rule 7); `data` is its bound
  /// What a local step reads. For a variable send, `src.length` is the expected size in bytes, which the
  /// simulator and the cost charge when they play the plan without data (0: the bound).
  range src{};

  [[nodiscard]] constexpr bool is_send() const noexcept { return kind == step_kind::send; }
  [[nodiscard]] constexpr bool is_recv() const noexcept {
    return kind == step_kind::recv_reduce || kind == step_kind::recv_copy;
  }
  [[nodiscard]] constexpr bool is_local() const noexcept { return dssync::is_local(kind); }
  /// Whether the step writes `data` (receives and local steps).
  [[nodiscard]] constexpr bool writes() const noexcept { return kind != step_kind::send; }
  /// Whether the step reads `src` (local steps other than scale, which reads what it writes).
  [[nodiscard]] constexpr bool reads_src() const noexcept { return is_local() && kind != step_kind::scale; }
  /// The bytes a variable send is expected to carry (the bound when the plan gives no expectation).
  [[nodiscard]] constexpr std::size_t expected_bytes() const noexcept {
    return src.length != 0 ? std::min(src.length, data.length) : data.length;
  }
  friend constexpr bool operator==(const step&, const step&) = default;
};

/// A local step: `kind` from `src` (in `src_buf`) to `data` (in `buf`).
[[nodiscard]] constexpr step local_step(step_kind kind, std::uint8_t buf, range data, std::uint8_t src_buf, range src,
                                        std::uint32_t stage = 0) noexcept {
  step s;
  s.kind = kind;
  s.peer = 0;
  s.data = data;
  s.stage = stage;
  s.buf = buf;
  s.src_buf = src_buf;
  s.src = src;
  return s;
}

/// A message of run-time length between byte slots: a send of slot `slot` of buffer `buf` to `peer`
/// (`expected` bytes expected, 0: the bound) or, with `kind` recv_copy, a receive into it.
[[nodiscard]] constexpr step variable_message(step_kind kind, int peer, std::uint8_t buf, range slot,
                                              std::size_t expected = 0, std::uint32_t stage = 0) noexcept {
  step s;
  s.kind = kind;
  s.peer = peer;
  s.data = slot;
  s.stage = stage;
  s.buf = buf;
  s.variable = true;
  if (kind == step_kind::send) s.src = range{0, expected};
  return s;
}

/// Range `r` of buffer `b` in one address space for all buffers (buffer b from b * 2^48): for consumers
/// that track the ranges of several buffers in one interval set.
[[nodiscard]] constexpr range placed(std::uint8_t b, range r) noexcept {
  return {r.offset + (static_cast<std::size_t>(b) << 48), r.length};
}

/// What a scratch buffer holds.
enum class buffer_kind : std::uint8_t {
  elements,  ///< elements of the collective's type
  bytes,     ///< bytes (encoded payloads)
};

/// A scratch buffer a plan declares: its kind and size (in elements or bytes). An element buffer starts
/// zeroed on every run; a byte buffer holds only what an encode or a receive wrote into its slots.
struct buffer_decl {
  buffer_kind kind = buffer_kind::elements;
  std::size_t size = 0;
  friend constexpr bool operator==(const buffer_decl&, const buffer_decl&) = default;
};

/// The ordered steps of one channel.
struct channel {
  std::vector<step> steps;
  /// Route hint: the link classes this channel's messages may cross (0: any). Only the simulator reads
  /// it, routing each message over links of these classes only (a Blink PCIe tree never touches NVLink);
  /// executors and the verifier ignore it, and it is not hashed (it changes no result).
  link_classes links = 0;
  friend bool operator==(const channel&, const channel&) = default;
};

/// Everything one rank does in one collective.
struct rank_plan {
  std::vector<channel> channels;

  [[nodiscard]] std::size_t step_count() const noexcept {
    std::size_t n = 0;
    for (const auto& c : channels) n += c.steps.size();
    return n;
  }
  friend bool operator==(const rank_plan&, const rank_plan&) = default;
};

/// What the collective promises each rank ends with.
enum class semantics : std::uint8_t {
  allreduce,        ///< every rank holds the reduction of all ranks' data
  group_allreduce,  ///< every rank holds the reduction of its group's data (DS-Sync, gossip)
  reduce,           ///< the root holds the reduction of all ranks' data; others are unspecified
  broadcast,        ///< every rank holds the root's data
  reduce_scatter,   ///< rank r holds, on its block `blocks[r]`, the reduction of all ranks' data there
  allgather,        ///< every rank holds on every block `blocks[j]` rank j's data there (copies, no op)
};

[[nodiscard]] constexpr const char* to_string(semantics s) noexcept {
  switch (s) {
    case semantics::allreduce: return "allreduce";
    case semantics::group_allreduce: return "group-allreduce";
    case semantics::reduce: return "reduce";
    case semantics::broadcast: return "broadcast";
    case semantics::reduce_scatter: return "reduce-scatter";
    case semantics::allgather: return "allgather";
  }
  return "?";
}

/// Whether collective `s` partitions the buffer into per-rank blocks (`schedule::blocks`).
[[nodiscard]] constexpr bool has_blocks(semantics s) noexcept {
  return s == semantics::reduce_scatter || s == semantics::allgather;
}

/// Whether collective `s` has a root (`schedule::root`).
[[nodiscard]] constexpr bool has_root(semantics s) noexcept {
  return s == semantics::reduce || s == semantics::broadcast;
}

/// A complete plan for all ranks: a plain value, built by a policy, consumed by executors, the simulator,
/// the cost model and the verifier.
struct schedule {
  std::string policy;              ///< name of the policy that built it
  int world_size = 0;              ///< number of ranks
  std::size_t count = 0;           ///< elements per rank
  semantics kind = semantics::allreduce;
  int root = 0;                    ///< for reduce and broadcast
  std::vector<std::vector<int>> groups;  ///< for group_allreduce: disjoint groups covering all ranks
  /// For reduce_scatter and allgather: the disjoint block of the buffer each rank owns (one per rank, in
  /// rank order; blocks may be empty). A reduce-scatter leaves rank r's result on `blocks[r]` (the rest of
  /// its buffer unspecified); an allgather starts from rank r's data on `blocks[r]` (the rest of its
  /// buffer is not read) and ends with every block everywhere. Both work in place on `count` elements.
  std::vector<range> blocks;
  std::vector<rank_plan> ranks;    ///< one per rank
  /// The topology rank (server) each schedule rank runs on. Empty means schedule rank r is topology rank r.
  /// A plan over a subset of a topology's servers (BML's re-plan around failed servers, `plan_without`)
  /// numbers the survivors 0..M-1, as a survivor communicator does, and records here where they sit; the
  /// simulator routes by it.
  std::vector<int> hosts;
  /// Scratch buffers, numbered from 1 (buffer 0 is the user's `count` elements). Every rank has them all.
  std::vector<buffer_decl> buffers;

  /// Per-rank planning (`plan_request::rank`): the rank whose part alone this plan holds, or -1 for the
  /// whole world. A part has `world_size` entries in `ranks`, all empty but `planned_rank`'s; executors
  /// run it (a rank reads only its own part), while the verifier, the simulator and the cost need the
  /// whole-world plan and refuse a part. `stage` and `hosts` stay annotations for those consumers.
  int planned_rank = -1;
  /// What the plan was planned from (policy and its parameters, topology, count, collective), set by
  /// `synchronize` and the communicator for policies that plan per rank. When set, `fingerprint` hashes
  /// it in place of the steps, so a rank's part and the whole plan of the same request agree.
  std::string description;

  /// `dssync::fingerprint(*this)` once computed by the planner that cached this plan (0: not computed). A
  /// cache, not part of the plan's value: `operator==` ignores it.
  std::uint64_t fingerprint_cache = 0;

  /// Whether this plan holds rank `r`'s part (a whole-world plan holds every rank's).
  [[nodiscard]] bool plans(int r) const noexcept { return planned_rank < 0 || planned_rank == r; }

  /// Plans are equal when everything they execute and annotate is (`fingerprint_cache` aside).
  friend bool operator==(const schedule& a, const schedule& b) {
    return a.policy == b.policy && a.world_size == b.world_size && a.count == b.count && a.kind == b.kind &&
           a.root == b.root && a.groups == b.groups && a.blocks == b.blocks && a.ranks == b.ranks &&
           a.hosts == b.hosts && a.buffers == b.buffers && a.planned_rank == b.planned_rank &&
           a.description == b.description;
  }

  /// Whether buffer `b` exists (0, or a declared scratch buffer).
  [[nodiscard]] bool has_buffer(std::uint8_t b) const noexcept { return b <= buffers.size(); }
  /// Whether buffer `b` holds bytes (a declared byte buffer).
  [[nodiscard]] bool is_byte_buffer(std::uint8_t b) const noexcept {
    return b != user_buffer && b <= buffers.size() && buffers[b - 1u].kind == buffer_kind::bytes;
  }
  /// The size of buffer `b` in its unit (elements, or bytes), 0 for an undeclared buffer.
  [[nodiscard]] std::size_t buffer_size(std::uint8_t b) const noexcept {
    if (b == user_buffer) return count;
    return b <= buffers.size() ? buffers[b - 1u].size : 0;
  }
  /// Declares a scratch buffer and returns its number. \throws invalid_argument past 255 buffers.
  std::uint8_t add_buffer(buffer_kind k, std::size_t size) {
    if (buffers.size() >= 255) throw invalid_argument("dssync::schedule: at most 255 scratch buffers");
    buffers.push_back({k, size});
    return static_cast<std::uint8_t>(buffers.size());
  }

  /// The topology rank that schedule rank `r` runs on.
  [[nodiscard]] int host(int r) const noexcept {
    return hosts.empty() ? r : hosts[static_cast<std::size_t>(r)];
  }

  /// The ranks whose contributions `rank` must end with (sorted). Empty means "unspecified".
  [[nodiscard]] std::vector<int> expected_contributors(int rank) const {
    std::vector<int> all(static_cast<std::size_t>(world_size));
    std::iota(all.begin(), all.end(), 0);
    switch (kind) {
      case semantics::allreduce: return all;
      case semantics::reduce: return rank == root ? all : std::vector<int>{};
      case semantics::broadcast: return {root};
      case semantics::reduce_scatter: return all;  // on the rank's own block only (see `result_range`)
      case semantics::allgather: return {};        // one contributor per block, not one set per rank
      case semantics::group_allreduce:
        for (const auto& g : groups)
          if (std::find(g.begin(), g.end(), rank) != g.end()) {
            auto s = g;
            std::sort(s.begin(), s.end());
            return s;
          }
        return {rank};
    }
    return all;
  }

  /// How many contributions `rank` ends with: the divisor of `average`. At least 1.
  [[nodiscard]] int contributors(int rank) const {
    const auto n = expected_contributors(rank).size();
    return n == 0 ? 1 : static_cast<int>(n);
  }

  /// The block rank `r` owns in a reduce_scatter or allgather (empty elsewhere, or when `blocks` lacks it).
  [[nodiscard]] range block(int r) const noexcept {
    return r >= 0 && static_cast<std::size_t>(r) < blocks.size() ? blocks[static_cast<std::size_t>(r)] : range{};
  }

  /// The elements of `rank` that end holding a reduction, where a finalizing op (average) runs: the whole
  /// buffer for (group) allreduce, the root's buffer for reduce, the rank's block for reduce_scatter, and
  /// nothing for broadcast and allgather (which copy, and reduce nothing).
  [[nodiscard]] range result_range(int rank) const noexcept {
    switch (kind) {
      case semantics::allreduce:
      case semantics::group_allreduce: return {0, count};
      case semantics::reduce: return rank == root ? range{0, count} : range{};
      case semantics::reduce_scatter: return block(rank);
      case semantics::broadcast:
      case semantics::allgather: return {};
    }
    return {};
  }

  [[nodiscard]] std::size_t channel_count() const noexcept {
    std::size_t n = 0;
    for (const auto& r : ranks) n = std::max(n, r.channels.size());
    return n;
  }

  [[nodiscard]] std::size_t step_count() const noexcept {
    std::size_t n = 0;
    for (const auto& r : ranks) n += r.step_count();
    return n;
  }

  /// Removes steps with empty ranges. Both ends of a message have equal lengths, so the FIFO matching of
  /// the remaining messages is unchanged. Policies call it so that short buffers send no empty messages.
  schedule& drop_empty() {
    for (auto& r : ranks)
      for (auto& c : r.channels)
        c.steps.erase(std::remove_if(c.steps.begin(), c.steps.end(), [](const step& s) { return s.data.empty(); }),
                      c.steps.end());
    return *this;
  }
};

/// A stable 64-bit hash (FNV-1a over a fixed little-endian encoding) of everything in `s` that changes
/// execution: policy name, world size, count, semantics, root, groups, hosts, blocks, and every rank's channels and
/// steps (kind, peer, range). The simulator's stage annotation is left out. Equal plans hash equal on every
/// machine and build; ranks compare it in the agreement exchange, so ranks that planned different
/// schedules (other policy parameters, topology, count) fail with `mismatch_error` before data moves.
/// O(steps); `synchronize` computes it once per cached plan.
///
/// A plan with a `description` (what it was planned from), or a rank's part (`planned_rank`), hashes the
/// description and the header (policy, world size, count, semantics, root, groups, hosts, blocks) in
/// place of the steps: every rank's part has other steps, but all parts of one request hash equal.
[[nodiscard]] inline std::uint64_t fingerprint(const schedule& s) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ull;
  auto byte = [&h](std::uint8_t b) {
    h ^= b;
    h *= 0x100000001b3ull;
  };
  auto word = [&byte](std::uint64_t v) {
    for (int i = 0; i < 8; ++i) byte(static_cast<std::uint8_t>(v >> (8 * i)));
  };
  word(s.policy.size());
  for (char c : s.policy) byte(static_cast<std::uint8_t>(c));
  word(static_cast<std::uint64_t>(static_cast<std::int64_t>(s.world_size)));
  word(s.count);
  byte(static_cast<std::uint8_t>(s.kind));
  word(static_cast<std::uint64_t>(static_cast<std::int64_t>(s.root)));
  word(s.groups.size());
  for (const auto& g : s.groups) {
    word(g.size());
    for (int r : g) word(static_cast<std::uint64_t>(static_cast<std::int64_t>(r)));
  }
  word(s.hosts.size());
  for (int r : s.hosts) word(static_cast<std::uint64_t>(static_cast<std::int64_t>(r)));
  if (!s.blocks.empty()) {  // hashed only where present, so plans without blocks keep their fingerprints
    word(s.blocks.size());
    for (const auto& b : s.blocks) {
      word(b.offset);
      word(b.length);
    }
  }
  if (!s.buffers.empty()) {  // hashed only where present, as blocks
    word(0x4255464645525321ull);
    word(s.buffers.size());
    for (const auto& b : s.buffers) {
      byte(static_cast<std::uint8_t>(b.kind));
      word(b.size);
    }
  }
  if (!s.description.empty() || s.planned_rank >= 0) {
    word(0x5045522d52414e4bull);  // "PER-RANK": a described plan never hashes like a step-by-step one
    word(s.description.size());
    for (char c : s.description) byte(static_cast<std::uint8_t>(c));
    return h;
  }
  word(s.ranks.size());
  for (const auto& r : s.ranks) {
    word(r.channels.size());
    for (const auto& c : r.channels) {
      word(c.steps.size());
      for (const auto& st : c.steps) {
        byte(static_cast<std::uint8_t>(st.kind));
        word(static_cast<std::uint64_t>(static_cast<std::int64_t>(st.peer)));
        word(st.data.offset);
        word(st.data.length);
        if (st.buf != user_buffer || st.src_buf != user_buffer || st.variable || !st.src.empty()) {
          // IR v2 fields, hashed only where used, so plans of the user buffer keep their fingerprints
          byte(0xB2);
          byte(st.buf);
          byte(st.src_buf);
          byte(st.variable ? 1 : 0);
          word(st.src.offset);
          word(st.src.length);
        }
      }
    }
  }
  return h;
}

/// Prints one step as `send [0,12) -> 3`; a range of a scratch buffer as `b2[0,12)`, a message of
/// run-time length with `<=` before its bound, a local step as `decode-add [0,12) <- b1[0,96)`.
inline std::ostream& operator<<(std::ostream& os, const step& s) {
  auto at = [&os](std::uint8_t b, const range& r) {
    if (b != user_buffer) os << 'b' << static_cast<int>(b);
    os << r;
  };
  os << to_string(s.kind) << ' ' << (s.variable ? "<=" : "");
  at(s.buf, s.data);
  if (s.kind == step_kind::scale) return os << " / " << s.peer;
  if (s.is_local()) {
    os << " <- ";
    at(s.src_buf, s.src);
    return os;
  }
  os << (s.is_send() ? " -> " : " <- ") << s.peer;
  return os;
}

/// Prints the plan of `rank`, or of every rank when `rank < 0`, one line per step.
inline void print(std::ostream& os, const schedule& s, int rank = -1) {
  os << "schedule " << s.policy << ": " << to_string(s.kind) << ", " << s.world_size << " ranks, " << s.count
     << " elements, " << s.channel_count() << " channel(s), " << s.step_count() << " steps";
  if (s.planned_rank >= 0) os << " (rank " << s.planned_rank << "'s part only)";
  if (rank >= 0 && rank < s.world_size)
    os << " (rank " << rank << ": " << s.ranks[static_cast<std::size_t>(rank)].step_count() << ")";
  if (has_root(s.kind)) os << ", root " << s.root;
  if (!s.blocks.empty()) {
    os << ", blocks";
    for (const auto& b : s.blocks) os << ' ' << b;
  }
  for (std::size_t b = 0; b < s.buffers.size(); ++b)
    os << ", b" << b + 1 << ": " << s.buffers[b].size
       << (s.buffers[b].kind == buffer_kind::bytes ? " bytes" : " elements");
  if (s.kind == semantics::group_allreduce) {
    os << ", groups";
    for (const auto& g : s.groups) {
      os << " {";
      for (std::size_t i = 0; i < g.size(); ++i) os << (i ? "," : "") << g[i];
      os << '}';
    }
  }
  os << '\n';
  for (int r = 0; r < s.world_size; ++r) {
    if ((rank >= 0 && r != rank) || !s.plans(r)) continue;
    const auto& plan = s.ranks[static_cast<std::size_t>(r)];
    for (std::size_t c = 0; c < plan.channels.size(); ++c) {
      os << "  rank " << r << " channel " << c;
      if (plan.channels[c].links != 0) os << " (links " << to_string_classes(plan.channels[c].links) << ')';
      os << ":\n";
      const auto& steps = plan.channels[c].steps;
      for (std::size_t i = 0; i < steps.size(); ++i) os << "    " << i << ": " << steps[i] << '\n';
    }
  }
}

inline std::ostream& operator<<(std::ostream& os, const schedule& s) {
  print(os, s);
  return os;
}

/// The printed plan as a string (see `print`).
[[nodiscard]] inline std::string to_string(const schedule& s, int rank = -1) {
  std::ostringstream os;
  print(os, s, rank);
  return os.str();
}

}  // namespace dssync
