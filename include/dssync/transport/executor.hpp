#pragma once
/// \file
/// The executor: runs one rank's part of any schedule over any transport.
///
/// Each channel keeps up to `options::window` consecutive steps in flight (sends that are fully posted
/// and wait only for their receiver do not count). Steps are cut into
/// segments of `options::segment_bytes`; a segment may go as soon as no earlier unfinished step of its
/// channel conflicts with it (read after write, write after read, write after write). So a chunk that is
/// received and then forwarded streams through segment by segment (pipelining), and a reduction
/// overlaps the transfer of the following segments. Sends never block. Receives reduce or copy straight
/// out of the transport's buffer (the sender's own buffer on the in-process transport).
///
/// Every wait has a deadline of `options::timeout` without progress. A timeout raises `timeout_error`
/// naming the rank, the step and the peer; a peer the transport knows to have failed raises
/// `peer_failure` at once. On any error, pending sends are withdrawn before the exception leaves, so no
/// peer reads a buffer the caller may free.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dssync/core/dtype.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/options.hpp"
#include "dssync/core/schedule.hpp"
#include "dssync/core/transport.hpp"
#include "dssync/ops/kernel.hpp"

namespace dssync {

namespace detail {

inline std::string seconds_string(std::chrono::milliseconds ms) {
  std::ostringstream os;
  os.setf(std::ios::fixed);
  os.precision(3);
  os << static_cast<double>(ms.count()) / 1000.0 << " s";
  return os.str();
}

/// The rank to blame for `peer`'s failure: where a cascade of failures started, if the transport knows.
template <class T>
int failure_root(const T& comm, int peer) {
  if constexpr (requires { comm.peer_failure_root(peer); }) {
    const int r = comm.peer_failure_root(peer);
    if (r >= 0) return r;
  }
  return peer;
}

template <class T>
std::string failure_reason(const T& comm, int peer) {
  if constexpr (requires { comm.peer_failure_reason(peer); }) {
    std::string r = comm.peer_failure_reason(peer);
    if (!r.empty()) return " (" + r + ")";
  }
  return {};
}

/// Why `peer` is gone, read consistently: (the rank to blame, " (reason)" or ""). A transport with
/// `peer_failure_info` answers both at once; a peer may fail between two separate questions.
template <class T>
std::pair<int, std::string> failure_of(const T& comm, int peer) {
  if constexpr (requires { comm.peer_failure_info(peer); }) {
    auto [root, why] = comm.peer_failure_info(peer);
    return {root >= 0 ? root : peer, why.empty() ? std::string() : " (" + why + ")"};
  } else {
    return {failure_root(comm, peer), failure_reason(comm, peer)};
  }
}

/// The message of a `peer_failure`: "peer rank P failed (...)" or, when P is gone because of another
/// rank's failure (a cascade, a revoked communicator), "peer rank P is lost (...)"; and that rank.
template <class T>
std::pair<std::string, int> describe_failure(const T& comm, int me, int peer) {
  auto [root, reason] = failure_of(comm, peer);
  return {"dssync: rank " + std::to_string(me) + ": peer rank " + std::to_string(peer) +
              (root == peer ? " failed" : " is lost") + reason,
          root};
}

/// The failure census. After a timeout, a transport that cannot see failures (`T::census`) asks every
/// peer "are you there?" and waits up to `grace` for answers. Ranks that are stalled too answer at once
/// (they run the same census); the ones that do not answer are dead, hung or not in this collective.
/// Returns them, sorted. The beacon is static, so a send the dead rank never takes dangles nowhere.
template <concepts::transport T>
std::vector<int> census(T& comm, std::uint32_t call, std::chrono::milliseconds grace) {
  static const std::uint32_t beacon = 0xD55Cu;
  const int n = comm.size(), me = comm.rank();
  const message_key key{call, census_channel, 0};
  std::vector<typename T::send_request> sends;
  std::vector<typename T::recv_request> recvs;
  std::vector<int> peers;
  for (int p = 0; p < n; ++p) {
    if (p == me) continue;
    sends.push_back(comm.isend(p, key, std::as_bytes(std::span<const std::uint32_t>(&beacon, 1))));
    recvs.push_back(comm.post_recv(p, key, sizeof beacon));
    peers.push_back(p);
  }
  std::vector<bool> answered(peers.size(), false);
  std::size_t missing = peers.size();
  const auto until = std::chrono::steady_clock::now() + grace;
  while (missing > 0 && std::chrono::steady_clock::now() < until) {
    const auto token = comm.progress_token();
    bool progress = false;
    for (std::size_t i = 0; i < peers.size(); ++i)
      if (!answered[i] && comm.try_consume(recvs[i], [](std::span<const std::byte>) {})) {
        answered[i] = true;
        --missing;
        progress = true;
      }
    if (!progress) comm.wait_progress(token, until);
  }
  std::vector<int> silent;
  for (std::size_t i = 0; i < peers.size(); ++i) {
    if (!answered[i]) {
      silent.push_back(peers[i]);
      comm.cancel(recvs[i]);
    }
    if (!comm.test(sends[i])) comm.cancel(sends[i]);
  }
  return silent;
}

/// The census clause of a timeout message, and the peer to blame (`fallback` if all answered).
template <concepts::transport T>
std::pair<std::string, int> census_clause(T& comm, std::uint32_t call, std::chrono::milliseconds timeout, int fallback) {
  if constexpr (requires { T::census; }) {
    if constexpr (T::census) {
      const auto grace = std::clamp(timeout / 2, std::chrono::milliseconds(100), std::chrono::milliseconds(10'000));
      const auto silent = census(comm, call, grace);
      if (silent.empty()) return {"; failure census: every rank answered (a peer is slow or stuck elsewhere)", fallback};
      std::string s = "; failure census: rank";
      s += silent.size() > 1 ? "s " : " ";
      for (std::size_t i = 0; i < silent.size(); ++i) s += (i ? ", " : "") + std::to_string(silent[i]);
      s += " did not answer within " + seconds_string(grace) + " (dead, hung, or not in this collective)";
      return {s, silent.front()};
    }
  }
  return {{}, fallback};
}

/// A condition the executor must meet before it takes in data, polled in its progress loop: the agreement
/// exchange of the call, overlapped with the collective (`agreement_exchange` in agreement.hpp). The
/// executor posts its sends at once, but it posts no receive until the gate is `open()`, and it returns
/// only once the gate is `done()`.
class call_gate {
 public:
  virtual ~call_gate() = default;
  /// Advances the gate; true if anything progressed. \throws what the gate finds (mismatch_error).
  virtual bool poll() = 0;
  /// Whether receives may be posted and data taken in.
  [[nodiscard]] virtual bool open() const = 0;
  /// Whether the gate needs nothing more (its own messages consumed too).
  [[nodiscard]] virtual bool done() const = 0;
  /// Whether the gate waits on a peer the transport knows to have failed.
  [[nodiscard]] virtual bool waits_on_failed_peer() const = 0;
  /// Raises the gate's `peer_failure` (a failed peer it waits on) or, without one, its `timeout_error`.
  [[noreturn]] virtual void raise_stall() const = 0;
};

/// Runs one rank's plan. Not reusable: construct, `run()`, destroy.
template <concepts::transport T, class E, class Op>
class rank_executor {
 public:
  rank_executor(T& comm, const schedule& s, std::span<E> data, const Op& op, const options& o, std::uint32_t call,
                call_gate* gate = nullptr)
      : comm_(comm), sched_(s), data_(data), op_(op), opt_(o), call_(call), gate_(gate), me_(comm.rank()),
        seg_(std::max<std::size_t>(1, o.segment_bytes / sizeof(E))) {
    const auto& plan = s.ranks.at(static_cast<std::size_t>(me_));
    chans_.resize(plan.channels.size());
    for (std::size_t c = 0; c < chans_.size(); ++c) {
      chans_[c].ch = &plan.channels[c];
      chans_[c].send_ord.assign(static_cast<std::size_t>(s.world_size), 0);
      chans_[c].recv_ord.assign(static_cast<std::size_t>(s.world_size), 0);
    }
  }
  rank_executor(const rank_executor&) = delete;
  rank_executor& operator=(const rank_executor&) = delete;

  ~rank_executor() {
    for (auto& ch : chans_)
      for (auto& a : ch.win) {
        for (auto& r : a.sends) {
          try { comm_.cancel(r); } catch (...) {}
        }
        for (auto& r : a.recvs) {
          try { comm_.cancel(r); } catch (...) {}
        }
      }
  }

  void run() {
    const std::size_t window = std::max<std::size_t>(1, opt_.window);
    auto last_progress = std::chrono::steady_clock::now();
    bool rechecked = false;
    while (true) {
      const auto token = comm_.progress_token();
      bool progress = false, finished = true;
      if (gate_ != nullptr && !gate_->done()) {
        progress |= gate_->poll();
        finished = gate_->done();
      }
      for (std::size_t c = 0; c < chans_.size(); ++c) {
        progress |= advance(c, window);
        finished &= chans_[c].finished();
      }
      if (finished) return;
      const auto now = std::chrono::steady_clock::now();
      if (progress) {
        last_progress = now;
        rechecked = false;
        continue;
      }
      const bool gated = gate_ != nullptr && !gate_->done();
      // Before the gate opens, only its own waits count: a data send waits then only because its receiver
      // has not agreed yet, so a receiver that gave up on the agreement is not the cause.
      const bool before_gate = gated && !gate_->open();
      if (before_gate ? gate_->waits_on_failed_peer()
                      : waits_on_failed_peer() || (gated && gate_->waits_on_failed_peer())) {
        // A failed peer's last actions (consuming our sends, sending) happened before it was marked
        // failed; look once more before blaming it.
        if (!rechecked) {
          rechecked = true;
          continue;
        }
        if (gated && gate_->waits_on_failed_peer()) gate_->raise_stall();
        throw_failed_peer();
      }
      const auto deadline = last_progress + opt_.timeout;
      if (now >= deadline) {
        // Stalled before the agreement: the peer did not call this collective (or is stuck before it).
        if (before_gate) gate_->raise_stall();
        throw_timeout();
      }
      comm_.wait_progress(token, deadline);
    }
  }

 private:
  struct active {
    std::size_t idx = 0;
    const step* st = nullptr;
    message_key key{};
    std::size_t nseg = 1;
    std::size_t issued = 0;  // segments posted (send) or consumed (recv)
    std::size_t done = 0;    // segments completed
    std::size_t posted = 0;  // receive segments announced to the transport
    std::deque<typename T::send_request> sends;
    std::deque<typename T::recv_request> recvs;
  };
  struct chan {
    const channel* ch = nullptr;
    std::size_t next = 0;
    std::deque<active> win;
    std::vector<std::uint32_t> send_ord, recv_ord;
    std::size_t outstanding = 0;  // receive segments announced and not yet consumed (staging in use)
    [[nodiscard]] bool finished() const { return next == ch->steps.size() && win.empty(); }
  };

  [[nodiscard]] range segment(const active& a, std::size_t i) const {
    const range& d = a.st->data;
    const std::size_t off = i * seg_;
    return {d.offset + off, std::min(seg_, d.length - std::min(off, d.length))};
  }
  [[nodiscard]] range unfinished(const active& a) const {
    const range& d = a.st->data;
    const std::size_t off = std::min(a.done * seg_, d.length);
    return {d.offset + off, d.length - off};
  }
  [[nodiscard]] bool blocked(const chan& ch, std::size_t k, const range& r, bool write) const {
    for (std::size_t j = 0; j < k; ++j) {
      const active& e = ch.win[j];
      if (e.done == e.nseg) continue;
      if ((write || e.st->is_recv()) && unfinished(e).overlaps(r)) return true;
    }
    return false;
  }
  std::span<const std::byte> bytes(const range& r) const {
    return std::as_bytes(std::span<const E>(data_.data() + r.offset, r.length));
  }

  bool advance(std::size_t c, std::size_t window) {
    chan& ch = chans_[c];
    bool progress = false;
    // The window bounds the steps still issuing; fully issued sends that wait for their receiver do not
    // count, so sends never block (schedule rule 1).
    std::size_t busy = 0;
    for (const auto& a : ch.win) busy += a.issued < a.nseg ? 1 : 0;
    while (busy < window && ch.next < ch.ch->steps.size()) {
      ++busy;
      if constexpr (requires { comm_.fault_point(std::size_t{}); }) comm_.fault_point(steps_entered_);
      ++steps_entered_;
      const step& st = ch.ch->steps[ch.next];
      active a;
      a.idx = ch.next++;
      a.st = &st;
      auto& ord = st.is_send() ? ch.send_ord : ch.recv_ord;
      a.key = message_key{call_, static_cast<std::uint32_t>(c), ord[static_cast<std::size_t>(st.peer)]++};
      a.nseg = st.data.length == 0 ? 1 : (st.data.length + seg_ - 1) / seg_;
      ch.win.push_back(std::move(a));
      progress = true;
    }
    for (std::size_t k = 0; k < ch.win.size(); ++k) {
      active& a = ch.win[k];
      if (a.st->is_send()) {
        while (!a.sends.empty() && comm_.test(a.sends.front())) {
          a.sends.pop_front();
          ++a.done;
          progress = true;
        }
        while (a.issued < a.nseg) {
          const range r = segment(a, a.issued);
          if (blocked(ch, k, r, false)) break;
          a.sends.push_back(comm_.isend(a.st->peer, a.key, bytes(r)));
          ++a.issued;
          progress = true;
        }
        while (!a.sends.empty() && comm_.test(a.sends.front())) {
          a.sends.pop_front();
          ++a.done;
        }
      } else {
        if (gate_ != nullptr && !gate_->open()) continue;  // no receive before the agreement
        const std::size_t depth = std::max<std::size_t>(1, opt_.recv_depth);
        // Every unfinished receive keeps one segment announced (so its message can always match); beyond
        // that, at most 2·depth segments per channel hold staging memory.
        if (a.posted == a.issued && a.issued < a.nseg) post_segment(ch, k, a);
        while (a.posted < a.nseg && a.posted - a.issued < depth && ch.outstanding < 2 * depth) post_segment(ch, k, a);
        while (a.issued < a.nseg) {
          const range r = segment(a, a.issued);
          if (blocked(ch, k, r, true)) break;
          const bool reduce = a.st->kind == step_kind::recv_reduce;
          E* dst = data_.data() + r.offset;
          if constexpr (requires(std::span<typename T::recv_request* const> q) {
                          comm_.consume_run(q, [](std::span<const std::span<const std::byte>>) {});
                        }) {
            if (reduce) {
              // Consecutive receive-reduces of the same segment from different peers (a direct
              // reduce-scatter) run as one pass over the destination.
              const std::size_t m = consume_gang(ch, k, r, dst);
              if (m == 0) break;
              progress = true;
              continue;
            }
          }
          const bool got = comm_.try_consume(a.recvs.front(), [&](std::span<const std::byte> b) {
            if (r.length == 0) return;
            if (reduce)
              ops::reduce_into(dst, reinterpret_cast<const E*>(b.data()), r.length, op_);
            else if (b.data() != reinterpret_cast<const std::byte*>(dst))  // not received in place
              std::memcpy(dst, b.data(), r.length * sizeof(E));
          });
          if (!got) break;
          --ch.outstanding;
          a.recvs.pop_front();
          ++a.issued;
          ++a.done;
          progress = true;
          if (a.posted < a.nseg && (a.posted == a.issued || ch.outstanding < 2 * depth)) post_segment(ch, k, a);
        }
      }
    }
    while (!ch.win.empty() && ch.win.front().done == ch.win.front().nseg) ch.win.pop_front();
    return progress;
  }

  // Consumes segment `r` of window step `k` together with the run of following steps that reduce the
  // same range from other peers and have their message for the same segment. Returns how many steps
  // advanced. The reduction order is step order, so the result is bitwise that of one step at a time.
  template <class Comm = T>
  std::size_t consume_gang(chan& ch, std::size_t k, const range& r, E* dst) {
    const active& a = ch.win[k];
    gang_reqs_.clear();
    gang_steps_.clear();
    for (std::size_t j = k; j < ch.win.size(); ++j) {
      active& b = ch.win[j];
      if (b.st->kind != step_kind::recv_reduce || !(b.st->data == a.st->data) || b.issued != a.issued ||
          b.recvs.empty())
        break;
      gang_reqs_.push_back(&b.recvs.front());
      gang_steps_.push_back(j);
    }
    const std::size_t m = comm_.consume_run(
        std::span<typename T::recv_request* const>(gang_reqs_), [&](std::span<const std::span<const std::byte>> srcs) {
          gang_srcs_.clear();
          for (const auto& b : srcs) gang_srcs_.push_back(reinterpret_cast<const E*>(b.data()));
          ops::reduce_into_many(dst, std::span<const E* const>(gang_srcs_), r.length, op_);
        });
    for (std::size_t i = 0; i < m; ++i) {
      active& b = ch.win[gang_steps_[i]];
      --ch.outstanding;
      b.recvs.pop_front();
      ++b.issued;
      ++b.done;
      if (b.posted < b.nseg && (b.posted == b.issued || ch.outstanding < 2 * std::max<std::size_t>(1, opt_.recv_depth)))
        post_segment(ch, gang_steps_[i], b);
    }
    return m;
  }

  // Announces the next receive segment of step `a` (window position `k`). A copy whose destination no
  // earlier step still uses is received in place when the transport can.
  void post_segment(chan& ch, std::size_t k, active& a) {
    ++ch.outstanding;
    const range r = segment(a, a.posted);
    if constexpr (requires { comm_.post_recv_into(0, message_key{}, std::span<std::byte>{}); }) {
      if (a.st->kind == step_kind::recv_copy && !blocked(ch, k, r, true)) {
        a.recvs.push_back(comm_.post_recv_into(
            a.st->peer, a.key, std::as_writable_bytes(std::span<E>(data_.data() + r.offset, r.length))));
        ++a.posted;
        return;
      }
    }
    a.recvs.push_back(comm_.post_recv(a.st->peer, a.key, r.length * sizeof(E)));
    ++a.posted;
  }

  [[nodiscard]] std::string where(std::size_t c, const active& a) const {
    std::ostringstream os;
    os << "channel " << c << " step " << a.idx << " (" << *a.st << ", segment " << a.done << " of " << a.nseg
       << ") in " << sched_.policy << ' ' << to_string(sched_.kind) << " call " << call_ << " of " << sched_.count
       << ' ' << to_string(dtype_of<E>) << " elements";
    return os.str();
  }

  [[nodiscard]] bool waits_on_failed_peer() const {
    for (const auto& ch : chans_)
      for (const auto& a : ch.win)
        if (a.done < a.nseg && comm_.peer_failed(a.st->peer)) return true;
    return false;
  }

  void throw_failed_peer() const {
    for (std::size_t c = 0; c < chans_.size(); ++c)
      for (const auto& a : chans_[c].win)
        if (a.done < a.nseg && comm_.peer_failed(a.st->peer)) {
          // The peer itself failed, or is lost because of another rank's failure (a cascade, or a
          // revoked communicator): then the message says so and peer() is where the failure started.
          auto [msg, root] = describe_failure(comm_, me_, a.st->peer);
          throw peer_failure(msg + " while rank " + std::to_string(me_) + " waits for it at " + where(c, a), me_,
                             root);
        }
  }

  [[noreturn]] void throw_timeout() const {
    for (std::size_t c = 0; c < chans_.size(); ++c)
      for (const auto& a : chans_[c].win)
        if (a.done < a.nseg) {
          std::string msg = "dssync: rank " + std::to_string(me_) + " timed out after " +
                            seconds_string(opt_.timeout) + " without progress, waiting for rank " +
                            std::to_string(a.st->peer) + (a.st->is_send() ? " to consume its send" : " to send") +
                            " at " + where(c, a);
          auto [clause, blame] = census_clause(comm_, call_, opt_.timeout, a.st->peer);
          throw timeout_error(msg + clause, me_, blame);
        }
    if (gate_ != nullptr && !gate_->done()) gate_->raise_stall();
    throw timeout_error("dssync: rank " + std::to_string(me_) + " timed out", me_, -1);
  }

  T& comm_;
  const schedule& sched_;
  std::span<E> data_;
  const Op& op_;
  const options& opt_;
  std::uint32_t call_;
  call_gate* gate_;
  int me_;
  std::size_t seg_;
  std::size_t steps_entered_ = 0;
  std::vector<chan> chans_;
  std::vector<typename T::recv_request*> gang_reqs_;
  std::vector<std::size_t> gang_steps_;
  std::vector<const E*> gang_srcs_;
};

}  // namespace detail

/// Runs rank `comm.rank()`'s part of `s` on `data` (which holds `s.count` elements), reducing with `op`.
/// It does not apply the op's `finalize`; `synchronize` does.
/// \throws timeout_error, peer_failure, malformed_payload, invalid_argument (data size or world size
/// differs from the schedule's).
///
/// With a `gate` (the call's agreement exchange), it posts no receive until the gate opens and returns
/// only when the gate is done, polling it in the same progress loop: the agreement overlaps the sends.
template <concepts::transport T, element E, class Op>
void execute(T& comm, const schedule& s, std::span<E> data, const Op& op, const options& opt, std::uint32_t call,
             detail::call_gate* gate = nullptr) {
  if (s.world_size != comm.size())
    throw invalid_argument("dssync::execute: rank " + std::to_string(comm.rank()) + ": schedule " + s.policy +
                               " is for " + std::to_string(s.world_size) + " ranks but the communicator has " +
                               std::to_string(comm.size()),
                           comm.rank());
  if (data.size() != s.count)
    throw invalid_argument("dssync::execute: rank " + std::to_string(comm.rank()) + ": buffer has " +
                               std::to_string(data.size()) + " elements but schedule " + s.policy + " is for " +
                               std::to_string(s.count),
                           comm.rank());
  detail::rank_executor<T, E, Op> ex(comm, s, data, op, opt, call, gate);
  ex.run();
}

}  // namespace dssync
