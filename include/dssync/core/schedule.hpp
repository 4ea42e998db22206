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
};

[[nodiscard]] constexpr const char* to_string(step_kind k) noexcept {
  switch (k) {
    case step_kind::send: return "send";
    case step_kind::recv_reduce: return "recv-reduce";
    case step_kind::recv_copy: return "recv-copy";
  }
  return "?";
}

/// One step of one channel of one rank.
struct step {
  step_kind kind = step_kind::send;
  int peer = -1;
  range data{};  ///< elements of this rank's buffer that are read (send) or written (receive)
  /// The algorithm stage this step belongs to (BML's aggregation / auxiliary / broadcast stages). Only
  /// the simulator's lockstep mode reads it (a barrier between stages, as papers count stage by stage);
  /// executors and the verifier ignore it.
  std::uint32_t stage = 0;

  [[nodiscard]] constexpr bool is_send() const noexcept { return kind == step_kind::send; }
  [[nodiscard]] constexpr bool is_recv() const noexcept { return kind != step_kind::send; }
  friend constexpr bool operator==(const step&, const step&) = default;
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
           a.hosts == b.hosts && a.planned_rank == b.planned_rank && a.description == b.description;
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
      }
    }
  }
  return h;
}

/// Prints one step as `send [0,12) -> 3`.
inline std::ostream& operator<<(std::ostream& os, const step& s) {
  os << to_string(s.kind) << ' ' << s.data << (s.is_send() ? " -> " : " <- ") << s.peer;
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
