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
#include <map>
#include <memory>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dssync/core/codec.hpp"
#include "dssync/core/dtype.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/options.hpp"
#include "dssync/core/schedule.hpp"
#include "dssync/core/transport.hpp"
#include "dssync/core/verifier.hpp"
#include "dssync/ops/kernel.hpp"
#include "dssync/ops/sum.hpp"

namespace dssync {

namespace detail {

/// A step's queue of pending requests: a vector and the index of its front. It allocates nothing until
/// the first push (a step uses its sends or its receives, never both), where `std::deque` allocates
/// on construction; at 4 KiB those allocations were about a quarter of a call's time. A pointer to an
/// element stays valid until the next push.
template <class R>
class fifo {
 public:
  [[nodiscard]] bool empty() const noexcept { return head_ == v_.size(); }
  [[nodiscard]] std::size_t size() const noexcept { return v_.size() - head_; }
  [[nodiscard]] R& front() noexcept { return v_[head_]; }
  void push_back(R&& r) { v_.push_back(std::move(r)); }
  void pop_front() noexcept {
    v_[head_] = R{};  // what the request holds goes now, as with deque
    if (++head_ == v_.size()) {
      v_.clear();
      head_ = 0;
    }
  }
  [[nodiscard]] auto begin() noexcept { return v_.begin() + static_cast<std::ptrdiff_t>(head_); }
  [[nodiscard]] auto end() noexcept { return v_.end(); }

 private:
  std::vector<R> v_;
  std::size_t head_ = 0;
};

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
                call_gate* gate = nullptr, codec_hook<E>* codec = nullptr)
      : comm_(comm), sched_(s), data_(data), op_(op), opt_(o), call_(call), gate_(gate), codec_(codec),
        me_(comm.rank()), seg_(std::max<std::size_t>(1, o.segment_bytes / sizeof(E))),
        seg_bytes_(std::max<std::size_t>(1, o.segment_bytes)) {
    // Buffer 0 is the user's; the scratch buffers this rank's steps name live as long as the run, zeroed
    // (the others, which only other ranks use, are not allocated here).
    base_.push_back(std::as_writable_bytes(data_));
    unit_.push_back(sizeof(E));
    // Which scratch buffers this rank's steps name (a plan without any, the common case, allocates nothing
    // here); every step that uses the IR v2 fields is checked first.
    std::vector<bool> used;
    if (!s.buffers.empty()) used.assign(s.buffers.size() + 1, false);
    for (const auto& ch : s.ranks.at(static_cast<std::size_t>(me_)).channels)
      for (const auto& st : ch.steps) {
        if (st.buf != user_buffer || st.src_buf != user_buffer || st.variable || st.is_local())
          if (auto why = structure_error(s, st); !why.empty())  // never index a buffer the plan lacks
            throw invalid_argument("dssync::execute: rank " + std::to_string(me_) + ": step (" +
                                       [&] { std::ostringstream os; os << st; return os.str(); }() + ") of plan " +
                                       s.policy + ": " + why,
                                   me_);
        if (used.empty()) continue;
        if (st.buf < used.size()) used[st.buf] = true;
        if (st.reads_src() && st.src_buf < used.size()) used[st.src_buf] = true;
      }
    for (std::size_t i = 0; i < s.buffers.size(); ++i) {
      const auto& b = s.buffers[i];
      if (!used[i + 1]) {
        base_.emplace_back();
        unit_.push_back(b.kind == buffer_kind::elements ? sizeof(E) : 1);
        continue;
      }
      if (b.kind == buffer_kind::elements) {
        // Element buffers start zeroed; they come from this thread's arena too, so that a plan that
        // stages every call (recursive doubling, one-shot) neither allocates nor page-faults once warm.
        base_.push_back(std::as_writable_bytes(element_arena(elems_used_++, b.size)));
        unit_.push_back(sizeof(E));
      } else {
        // Byte slots are read only where an encode or a receive wrote them (`fill_`), so they need no
        // zeroing: they come from this thread's arena, kept from run to run (no allocation, no page
        // faults once warm).
        base_.push_back(byte_arena(bytes_used_++, b.size));
        unit_.push_back(1);
      }
    }
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
    /// Segments: a fixed message's ceil(length / segment); a message of run-time length's header (its
    /// length, 8 bytes) and then ceil(actual / segment) segments, known once the header is sent or read;
    /// 1 for a local step.
    std::size_t nseg = 1;
    std::size_t length = 0;    // units (elements or bytes) the step moves: the bound until the header is known
    std::uint64_t header = 0;  // a variable message's length, as sent or received
    std::size_t issued = 0;  // segments posted (send) or consumed (recv)
    std::size_t done = 0;    // segments completed
    std::size_t posted = 0;  // receive segments announced to the transport
    fifo<typename T::send_request> sends;
    fifo<typename T::recv_request> recvs;
  };
  struct chan {
    const channel* ch = nullptr;
    std::size_t next = 0;
    std::deque<active> win;
    std::vector<std::uint32_t> send_ord, recv_ord;
    std::size_t outstanding = 0;  // receive segments announced and not yet consumed (staging in use)
    [[nodiscard]] bool finished() const { return next == ch->steps.size() && win.empty(); }
  };

  [[nodiscard]] std::size_t seg_of(const step& st) const { return st.variable ? seg_bytes_ : seg_; }
  /// Segment `i` of `a` in its buffer's units. A variable message's segment 0 is its header (no range).
  [[nodiscard]] range segment(const active& a, std::size_t i) const {
    const range& d = a.st->data;
    if (a.st->variable) {
      if (i == 0) return {d.offset, 0};
      --i;
    }
    const std::size_t seg = seg_of(*a.st), off = i * seg;
    return {d.offset + off, std::min(seg, a.length - std::min(off, a.length))};
  }
  /// What `a` may still read or write: its unfinished segments (the whole bound of a variable message
  /// or a local step until it is done).
  [[nodiscard]] range unfinished(const active& a) const {
    const range& d = a.st->data;
    if (a.st->variable || a.st->is_local()) return a.done == a.nseg ? range{d.offset, 0} : d;
    const std::size_t off = std::min(a.done * seg_, d.length);
    return {d.offset + off, d.length - off};
  }
  /// Whether an earlier unfinished step of the channel (window positions before `k`) conflicts with an
  /// access of `r` in buffer `buf` (rule 6): it writes there, or we write where it still reads.
  [[nodiscard]] bool blocked(const chan& ch, std::size_t k, std::uint8_t buf, const range& r, bool write) const {
    for (std::size_t j = 0; j < k; ++j) {
      const active& e = ch.win[j];
      if (e.done == e.nseg) continue;
      if (e.st->buf == buf && (write || e.st->writes()) && unfinished(e).overlaps(r)) return true;
      if (write && e.st->reads_src() && e.st->src_buf == buf && e.st->src.overlaps(r)) return true;
    }
    return false;
  }
  [[nodiscard]] std::span<std::byte> bytes_of(std::uint8_t buf, const range& r) const {
    const std::size_t u = unit_[buf];
    return base_[buf].subspan(r.offset * u, r.length * u);
  }
  [[nodiscard]] std::span<E> elems_of(std::uint8_t buf, const range& r) const {
    return std::span<E>(reinterpret_cast<E*>(base_[buf].data()) + r.offset, r.length);
  }
  std::span<const std::byte> bytes(const active& a, const range& r) const { return bytes_of(a.st->buf, r); }

  /// Runs local step `a`. \throws invalid_argument (no codec for a codec step, a slot decoded before it
  ///   was written, scale on an element type without division), malformed_payload (from the codec).
  void run_local(const active& a, std::size_t c) {
    const step& st = *a.st;
    switch (st.kind) {
      case step_kind::copy: {
        const auto dst = bytes_of(st.buf, st.data), src = bytes_of(st.src_buf, st.src);
        if (!dst.empty() && dst.data() != src.data()) std::memmove(dst.data(), src.data(), dst.size());
        return;
      }
      case step_kind::reduce: {
        if (st.data.empty()) return;
        auto dst = elems_of(st.buf, st.data);
        auto src = elems_of(st.src_buf, st.src);
        if (src.data() + src.size() > dst.data() && dst.data() + dst.size() > src.data()) {  // overlap: stage
          local_tmp_.assign(src.begin(), src.end());
          ops::reduce_into(dst.data(), local_tmp_.data(), dst.size(), op_);
        } else {
          ops::reduce_into(dst.data(), src.data(), dst.size(), op_);
        }
        return;
      }
      case step_kind::scale: {
        if constexpr (requires(E x) { x = static_cast<E>(x / static_cast<E>(1)); }) {
          const E d = static_cast<E>(st.peer);
          for (E& x : elems_of(st.buf, st.data)) x = static_cast<E>(x / d);
          return;
        } else {
          throw invalid_argument("dssync: rank " + std::to_string(me_) + ": " + where_local(c, a) +
                                 ": the element type has no division");
        }
      }
      case step_kind::encode: {
        auto& codec = need_codec(c, a);
        const std::size_t len = codec.encode(std::span<const E>(elems_of(st.src_buf, st.src)), bytes_of(st.buf, st.data));
        fill_[{st.buf, st.data.offset}] = len;
        return;
      }
      case step_kind::decode:
      case step_kind::decode_add: {
        auto& codec = need_codec(c, a);
        const std::size_t len = filled(c, a, st.src_buf, st.src);
        const auto in = std::span<const std::byte>(bytes_of(st.src_buf, {st.src.offset, len}));
        auto out = elems_of(st.buf, st.data);
        if (st.kind == step_kind::decode) {
          codec.decode(in, out);
        } else if constexpr (std::is_base_of_v<ops::sum, Op>) {
          codec.decode_add(in, out);
        } else {  // another op: decode beside, then reduce with it
          local_tmp_.resize(out.size());
          codec.decode(in, std::span<E>(local_tmp_));
          ops::reduce_into(out.data(), local_tmp_.data(), out.size(), op_);
        }
        return;
      }
      default: return;
    }
  }
  /// This thread's element buffer `i`, `size` zeroed elements, kept from run to run (an executor runs
  /// to completion before the thread starts another, so one run's buffers are never another's).
  static std::span<E> element_arena(std::size_t i, std::size_t size) {
    thread_local std::vector<std::vector<E>> arena;
    if (arena.size() <= i) arena.resize(i + 1);
    if (arena[i].size() < size) arena[i].resize(size);
    const std::span<E> out(arena[i].data(), size);
    std::fill(out.begin(), out.end(), E{});
    return out;
  }
  /// The calling thread's `i`-th byte buffer, at least `size` bytes (uninitialized). One executor runs
  /// on a thread at a time (runs are blocking), so a run owns the thread's arena while it lasts.
  static std::span<std::byte> byte_arena(std::size_t i, std::size_t size) {
    struct block {
      std::unique_ptr<std::byte[]> p;
      std::size_t size = 0;
    };
    thread_local std::vector<block> arena;
    if (arena.size() <= i) arena.resize(i + 1);
    if (arena[i].size < size) {
      arena[i].p = std::make_unique_for_overwrite<std::byte[]>(size);
      arena[i].size = size;
    }
    return {arena[i].p.get(), size};
  }
  codec_hook<E>& need_codec(std::size_t c, const active& a) const {
    if (codec_ == nullptr)
      throw invalid_argument("dssync: rank " + std::to_string(me_) + ": " + where_local(c, a) +
                             " needs a codec, but none was given to execute");
    return *codec_;
  }
  /// The actual length of the byte slot `r` of `buf`, written by an encode or a variable receive.
  std::size_t filled(std::size_t c, const active& a, std::uint8_t buf, const range& r) const {
    auto it = fill_.find({buf, r.offset});
    if (it == fill_.end())
      throw invalid_argument("dssync: rank " + std::to_string(me_) + ": " + where_local(c, a) +
                             " reads a byte slot that nothing has written (the plan is wrong; verify it)");
    return std::min(it->second, r.length);
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
      if (!st.is_local()) {
        auto& ord = st.is_send() ? ch.send_ord : ch.recv_ord;
        a.key = message_key{call_, static_cast<std::uint32_t>(c), ord[static_cast<std::size_t>(st.peer)]++};
      }
      a.length = st.data.length;
      a.nseg = st.variable || st.is_local() || st.data.length == 0 ? 1 : (st.data.length + seg_ - 1) / seg_;
      ch.win.push_back(std::move(a));
      progress = true;
    }
    for (std::size_t k = 0; k < ch.win.size(); ++k) {
      active& a = ch.win[k];
      if (a.st->is_local()) {
        if (a.done == a.nseg) continue;
        // An encode advances the codec's state (its error-feedback residual): not before the agreement,
        // so that a call the ranks disagree on leaves the state as it was.
        if (a.st->kind == step_kind::encode && gate_ != nullptr && !gate_->open()) continue;
        if (blocked(ch, k, a.st->buf, a.st->data, true) ||
            (a.st->reads_src() && blocked(ch, k, a.st->src_buf, a.st->src, false)))
          continue;
        run_local(a, c);
        a.issued = a.done = 1;
        progress = true;
        continue;
      }
      if (a.st->is_send()) {
        while (!a.sends.empty() && comm_.test(a.sends.front())) {
          a.sends.pop_front();
          ++a.done;
          progress = true;
        }
        while (a.issued < a.nseg) {
          if (a.st->variable && a.issued == 0) {  // the header, once the slot is written
            if (blocked(ch, k, a.st->buf, a.st->data, false)) break;
            a.length = filled(c, a, a.st->buf, a.st->data);
            a.header = a.length;
            a.nseg = 1 + (a.length + seg_bytes_ - 1) / seg_bytes_;
            a.sends.push_back(comm_.isend(a.st->peer, a.key, std::as_bytes(std::span<const std::uint64_t>(&a.header, 1))));
            ++a.issued;
            progress = true;
            continue;
          }
          const range r = segment(a, a.issued);
          if (!a.st->variable && blocked(ch, k, a.st->buf, r, false)) break;
          a.sends.push_back(comm_.isend(a.st->peer, a.key, bytes(a, r)));
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
          if (a.st->variable && a.issued == 0) {  // the header: learn the length
            if (blocked(ch, k, a.st->buf, a.st->data, true)) break;
            if (!take_header(ch, k, a, c)) break;
            progress = true;
            continue;
          }
          const range r = segment(a, a.issued);
          if (!a.st->variable && blocked(ch, k, a.st->buf, r, true)) break;
          const bool reduce = a.st->kind == step_kind::recv_reduce;
          std::byte* dst_bytes = bytes_of(a.st->buf, r).data();
          E* dst = reinterpret_cast<E*>(dst_bytes);
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
          const std::size_t unit = unit_[a.st->buf];
          const bool got = comm_.try_consume(a.recvs.front(), [&](std::span<const std::byte> b) {
            if (r.length == 0) return;
            if (reduce)
              ops::reduce_into(dst, reinterpret_cast<const E*>(b.data()), r.length, op_);
            else if (b.data() != dst_bytes)  // not received in place
              std::memcpy(dst_bytes, b.data(), r.length * unit);
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
      if (b.st->kind != step_kind::recv_reduce || !(b.st->data == a.st->data) || b.st->buf != a.st->buf ||
          b.issued != a.issued || b.recvs.empty())
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
    if (a.st->variable && a.posted == 0) {  // the header
      a.recvs.push_back(comm_.post_recv(a.st->peer, a.key, sizeof(std::uint64_t)));
      ++a.posted;
      return;
    }
    const range r = segment(a, a.posted);
    if constexpr (requires { comm_.post_recv_into(0, message_key{}, std::span<std::byte>{}); }) {
      if (a.st->kind == step_kind::recv_copy && (a.st->variable || !blocked(ch, k, a.st->buf, r, true))) {
        a.recvs.push_back(comm_.post_recv_into(a.st->peer, a.key, bytes_of(a.st->buf, r)));
        ++a.posted;
        return;
      }
    }
    a.recvs.push_back(comm_.post_recv(a.st->peer, a.key, r.length * unit_[a.st->buf]));
    ++a.posted;
  }

  // Consumes the header of variable receive `a`: its length, checked against the bound. Then its
  // payload's segments are known. Returns false if the header has not arrived.
  bool take_header(chan& ch, std::size_t k, active& a, std::size_t c) {
    const bool got = comm_.try_consume(a.recvs.front(), [&](std::span<const std::byte> b) {
      std::memcpy(&a.header, b.data(), sizeof a.header);
    });
    if (!got) return false;
    --ch.outstanding;
    a.recvs.pop_front();
    if (a.header > a.st->data.length)
      throw malformed_payload("dssync: rank " + std::to_string(me_) + ": rank " + std::to_string(a.st->peer) +
                                  " sent a message of " + std::to_string(a.header) + " bytes, past its bound of " +
                                  std::to_string(a.st->data.length) + " bytes, at " + where(c, a),
                              me_);
    a.length = static_cast<std::size_t>(a.header);
    fill_[{a.st->buf, a.st->data.offset}] = a.length;
    a.nseg = 1 + (a.length + seg_bytes_ - 1) / seg_bytes_;
    ++a.issued;
    ++a.done;
    const std::size_t depth = std::max<std::size_t>(1, opt_.recv_depth);
    while (a.posted < a.nseg && a.posted - a.issued < depth && ch.outstanding < 2 * depth) post_segment(ch, k, a);
    if (a.posted == a.issued && a.issued < a.nseg) post_segment(ch, k, a);
    return true;
  }

  [[nodiscard]] std::string where_local(std::size_t c, const active& a) const {
    std::ostringstream os;
    os << "channel " << c << " step " << a.idx << " (" << *a.st << ") in " << sched_.policy << ' '
       << to_string(sched_.kind) << " call " << call_;
    return os.str();
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
        if (a.done < a.nseg && !a.st->is_local() && comm_.peer_failed(a.st->peer)) return true;
    return false;
  }

  void throw_failed_peer() const {
    for (std::size_t c = 0; c < chans_.size(); ++c)
      for (const auto& a : chans_[c].win)
        if (a.done < a.nseg && !a.st->is_local() && comm_.peer_failed(a.st->peer)) {
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
        if (a.done < a.nseg && !a.st->is_local()) {
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
  codec_hook<E>* codec_;
  int me_;
  std::size_t seg_;        // elements per segment of a fixed message
  std::size_t seg_bytes_;  // bytes per segment of a message of run-time length
  std::vector<std::span<std::byte>> base_;  // every buffer's bytes, by number
  std::vector<std::size_t> unit_;           // every buffer's unit: sizeof(E), or 1 for bytes
  std::size_t elems_used_ = 0;  // arena element buffers this run holds
  std::size_t bytes_used_ = 0;  // arena byte buffers this run holds
  std::map<std::pair<std::uint8_t, std::size_t>, std::size_t> fill_;  // byte slot -> actual length
  std::vector<E> local_tmp_;
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
             detail::call_gate* gate = nullptr, codec_hook<E>* codec = nullptr) {
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
  detail::rank_executor<T, E, Op> ex(comm, s, data, op, opt, call, gate, codec);
  ex.run();
}

}  // namespace dssync
