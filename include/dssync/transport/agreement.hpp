#pragma once
/// \file
/// The agreement exchange of every collective: ranks swap a small signature (world size, element count,
/// element type, op, policy, plan fingerprint) and every rank raises `mismatch_error` if any peer
/// differs, before a single data byte is taken in. It overlaps the collective's first messages: the
/// data sends go at once, the receives wait for the signatures, which travel beside them.

#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dssync/core/dtype.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/options.hpp"
#include "dssync/core/transport.hpp"
#include "dssync/transport/executor.hpp"

namespace dssync {

/// What ranks must agree on before a collective. Trivially copyable: it travels as raw bytes.
struct signature {
  std::uint64_t count = 0;
  std::int32_t world = 0;
  std::uint8_t type = 0;
  std::uint8_t element_size = 0;
  std::uint16_t reserved = 0;
  std::uint32_t op = 0;
  std::array<char, 24> op_name{};
  std::array<char, 24> policy{};
  /// `dssync::fingerprint` of the plan about to run (0: none given): ranks that planned different
  /// schedules from the same policy name (other parameters, topology or settings) disagree here.
  std::uint64_t plan = 0;

  static signature make(std::uint64_t count, int world, dtype t, std::size_t elem, std::uint32_t op_id,
                        std::string_view op_nm, std::string_view pol, std::uint64_t plan_fingerprint = 0) {
    signature s;
    s.plan = plan_fingerprint;
    s.count = count;
    s.world = world;
    s.type = static_cast<std::uint8_t>(t);
    s.element_size = static_cast<std::uint8_t>(elem);
    s.op = op_id;
    std::memcpy(s.op_name.data(), op_nm.data(), std::min(op_nm.size(), s.op_name.size() - 1));
    std::memcpy(s.policy.data(), pol.data(), std::min(pol.size(), s.policy.size() - 1));
    return s;
  }
};

namespace detail {

inline std::string hex(std::uint64_t v) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out = "0x";
  for (int i = 15; i >= 0; --i) out += digits[(v >> (4 * i)) & 0xf];
  return out;
}

inline std::string type_string(const signature& s) {
  const auto t = static_cast<dtype>(s.type);
  return std::string(to_string(t)) + (t == dtype::other ? "(" + std::to_string(s.element_size) + " bytes)" : "");
}

/// Compares two signatures; returns a description of the first difference, or "".
inline std::string compare(const signature& mine, int me, const signature& theirs, int peer) {
  const std::string a = "rank " + std::to_string(me), b = "rank " + std::to_string(peer);
  if (mine.world != theirs.world)
    return "world size: " + a + " has " + std::to_string(mine.world) + ", " + b + " has " + std::to_string(theirs.world);
  if (mine.count != theirs.count)
    return "element count: " + a + " has " + std::to_string(mine.count) + " elements, " + b + " has " +
           std::to_string(theirs.count);
  if (mine.type != theirs.type || mine.element_size != theirs.element_size)
    return "element type: " + a + " has " + type_string(mine) + ", " + b + " has " + type_string(theirs);
  if (mine.op != theirs.op)
    return "reduction op: " + a + " uses " + std::string(mine.op_name.data()) + ", " + b + " uses " +
           std::string(theirs.op_name.data());
  if (mine.policy != theirs.policy)
    return "policy: " + a + " runs " + std::string(mine.policy.data()) + ", " + b + " runs " +
           std::string(theirs.policy.data());
  if (mine.plan != theirs.plan)
    return "plan fingerprint: " + a + " has " + hex(mine.plan) + ", " + b + " has " + hex(theirs.plan) + " (same " +
           std::string(mine.policy.data()) +
           " policy, different schedules: its parameters or the topology differ)";
  return {};
}

}  // namespace detail

namespace detail {

/// The agreement exchange of one call as an object: construction posts `mine` to every rank of the
/// scope and a receive from each; `poll()` advances it. It is `open()` once every peer's signature has
/// arrived and all match, and `done()` once, besides, every peer has taken ours. On a mismatch it raises
/// `mismatch_error` as soon as every peer has taken our signature (so they raise it too), naming both
/// ranks and both values. `synchronize` runs it as the executor's gate, overlapped with the data: sends
/// go at once, receives wait for `open()`, so no rank takes in a byte before the ranks agree, and the
/// check costs no extra message round.
template <concepts::transport T>
class agreement_exchange final : public call_gate {
 public:
  agreement_exchange(T& comm, const signature& mine, const options& opt, std::uint32_t call,
                     std::span<const int> scope = {})
      : comm_(comm), mine_(mine), opt_(opt), call_(call), me_(comm.rank()) {
    const int n = comm.size();
    if (scope.empty()) {
      for (int p = 0; p < n; ++p)
        if (p != me_) peers_.push_back(p);
    } else {
      for (const int p : scope)
        if (p != me_) peers_.push_back(p);
    }
    theirs_.resize(peers_.size());
    const message_key key{call_, agreement_channel, 0};
    const auto bytes = std::as_bytes(std::span<const signature>(&mine_, 1));
    for (std::size_t i = 0; i < peers_.size(); ++i) {
      sends_.push_back({comm_.isend(peers_[i], key, bytes), peers_[i]});
      recvs_.push_back({comm_.post_recv(peers_[i], key, sizeof(signature)), i});
    }
    if (peers_.empty()) open_ = true;
  }
  agreement_exchange(const agreement_exchange&) = delete;
  agreement_exchange& operator=(const agreement_exchange&) = delete;
  ~agreement_exchange() override {
    for (auto& x : sends_) try { comm_.cancel(x.req); } catch (...) {}
    for (auto& x : recvs_) try { comm_.cancel(x.req); } catch (...) {}
  }

  bool poll() override {
    bool progress = false;
    for (std::size_t i = 0; i < recvs_.size();) {
      signature& slot = theirs_[recvs_[i].index];
      if (comm_.try_consume(recvs_[i].req,
                            [&](std::span<const std::byte> b) { std::memcpy(&slot, b.data(), sizeof(signature)); })) {
        recvs_.erase(recvs_.begin() + static_cast<std::ptrdiff_t>(i));
        progress = true;
      } else {
        ++i;
      }
    }
    for (std::size_t i = 0; i < sends_.size();) {
      if (comm_.test(sends_[i].req)) {
        sends_.erase(sends_.begin() + static_cast<std::ptrdiff_t>(i));
        progress = true;
      } else {
        ++i;
      }
    }
    if (recvs_.empty() && !compared_) {
      compared_ = true;
      for (std::size_t i = 0; i < peers_.size() && mismatch_.empty(); ++i)
        if (auto d = compare(mine_, me_, theirs_[i], peers_[i]); !d.empty()) {
          mismatch_ = "dssync: rank " + std::to_string(me_) + ": ranks disagree on the " + d + " (call " +
                      std::to_string(call_) + ")";
          mismatch_peer_ = peers_[i];
        }
      open_ = mismatch_.empty();
    }
    if (compared_ && !mismatch_.empty() && sends_.empty()) throw mismatch_error(mismatch_, me_, mismatch_peer_);
    return progress;
  }
  [[nodiscard]] bool open() const override { return open_; }
  [[nodiscard]] bool done() const override { return open_ && sends_.empty(); }

  [[nodiscard]] bool waits_on_failed_peer() const override {
    for (const auto& r : recvs_)
      if (comm_.peer_failed(peers_[r.index])) return true;
    for (const auto& x : sends_)
      if (comm_.peer_failed(x.peer)) return true;
    return false;
  }

  [[noreturn]] void raise_stall() const override {
    auto failed = [&](int p) {
      auto [msg, root] = describe_failure(comm_, me_, p);
      throw peer_failure(msg + " before the agreement exchange of call " + std::to_string(call_) + " completed", me_,
                         root);
    };
    for (const auto& r : recvs_)
      if (comm_.peer_failed(peers_[r.index])) failed(peers_[r.index]);
    for (const auto& x : sends_)
      if (comm_.peer_failed(x.peer)) failed(x.peer);
    const int p = !recvs_.empty() ? peers_[recvs_.front().index] : !sends_.empty() ? sends_.front().peer : -1;
    auto [clause, blame] = census_clause(comm_, call_, opt_.timeout, p);
    throw timeout_error("dssync: rank " + std::to_string(me_) + " timed out after " + seconds_string(opt_.timeout) +
                            " in the agreement exchange of call " + std::to_string(call_) + ", waiting for rank " +
                            std::to_string(p) + " (did it call the same collective?)" + clause,
                        me_, blame);
  }

  /// Runs the exchange alone to its end (what `agree` does).
  void finish() {
    auto last = std::chrono::steady_clock::now();
    bool rechecked = false;
    while (!done()) {
      const auto token = comm_.progress_token();
      if (poll()) {
        last = std::chrono::steady_clock::now();
        rechecked = false;
        continue;
      }
      if (done()) break;
      if (waits_on_failed_peer()) {
        // A failed peer's last actions happened before it was marked failed: look once more first.
        if (!rechecked) {
          rechecked = true;
          continue;
        }
        raise_stall();
      }
      if (std::chrono::steady_clock::now() >= last + opt_.timeout) raise_stall();
      comm_.wait_progress(token, last + opt_.timeout);
    }
  }

 private:
  struct pending_send {
    typename T::send_request req;
    int peer;
  };
  struct pending_recv {
    typename T::recv_request req;
    std::size_t index;
  };
  T& comm_;
  signature mine_;  // the bytes our sends carry: it outlives them (the destructor withdraws unfinished ones)
  const options& opt_;
  std::uint32_t call_;
  int me_;
  std::vector<int> peers_;
  std::vector<signature> theirs_;
  std::vector<pending_send> sends_;
  std::vector<pending_recv> recvs_;
  bool compared_ = false, open_ = false;
  std::string mismatch_;
  int mismatch_peer_ = -1;
};

}  // namespace detail

/// Exchanges `mine` with every rank of `scope` (every rank of the communicator when `scope` is empty)
/// and throws `mismatch_error` (on every rank of the scope) if any differs.
///
/// The scope is what the plan's semantics couple: the whole world for an allreduce, the rank's own group
/// for a group allreduce (gossip pairs, DS-Sync groups), so groups never wait for each other. Inside the
/// scope every pair compares, whatever the plan's edges, so a mismatch that changes the edges (a count
/// so small that a rank has no steps) is still named as a mismatch and not left to a deadline.
/// `synchronize` does not call it: it runs the same exchange overlapped with the data
/// (`detail::agreement_exchange` as the executor's gate).
/// \throws mismatch_error, timeout_error, peer_failure.
template <concepts::transport T>
void agree(T& comm, const signature& mine, const options& opt, std::uint32_t call, std::span<const int> scope = {}) {
  if (comm.size() == 1) return;
  detail::agreement_exchange<T> x(comm, mine, opt, call, scope);
  x.finish();
}

}  // namespace dssync
