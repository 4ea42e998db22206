#pragma once
/// \file
/// The in-process transport, dssync's embedded default: a `world` of N ranks in one process, one worker
/// thread each, exchanging messages through shared memory.
///
/// Sends are zero copy: a send posts a descriptor of the sender's bytes, and the receiver reduces or
/// copies straight from the sender's buffer; the send completes when the receiver has consumed it.
/// Every wait has a deadline. A rank that stops (fault injection, or its worker function ended) is marked
/// failed, and peers waiting on it raise `peer_failure` at once.
///
/// Recovery follows ULFM, the MPI Forum's User-Level Failure Mitigation proposal (W. Bland, A. Bouteiller,
/// T. Herault, G. Bosilca, J. Dongarra, "Post-failure recovery of MPI communication capability: Design and
/// rationale", IJHPCA 27(3), 2013), with three in-process counterparts of its primitives:
///  - `communicator::revoke()` (MPIX_Comm_revoke): every pending and future wait of every rank of the
///    world fails fast with `peer_failure` naming the rank whose failure caused the revocation;
///  - `communicator::agree(flag)` (MPIX_Comm_agree): a fault-tolerant AND over the ranks not marked failed,
///    which works on a revoked world;
///  - `communicator::shrink()` (MPIX_Comm_shrink): a new child world of the survivors, in increasing rank
///    order, owned by this world.
/// A failure is a failure of the rank's thread (its "process"): marking a rank failed in one world marks
/// it in the outermost world and in every world shrunk from it that contains it.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "dssync/core/error.hpp"
#include "dssync/core/options.hpp"
#include "dssync/core/transport.hpp"

namespace dssync::transport::inproc {

class world;

namespace detail {

struct send_op {
  enum : int { queued = 0, consuming = 1, done = 2, cancelled = 3 };
  const std::byte* data = nullptr;
  std::size_t size = 0;
  std::atomic<int> state{queued};
};

struct box_key {
  int src;
  message_key key;
  friend bool operator==(const box_key&, const box_key&) = default;
};

struct box_key_hash {
  std::size_t operator()(const box_key& k) const noexcept {
    std::uint64_t h = static_cast<std::uint32_t>(k.src);
    h = h * 0x9E3779B97F4A7C15ull ^ k.key.call;
    h = h * 0x9E3779B97F4A7C15ull ^ k.key.channel;
    h = h * 0x9E3779B97F4A7C15ull ^ k.key.ordinal;
    return static_cast<std::size_t>(h ^ (h >> 29));
  }
};

struct rank_state {
  // Progress notification: bumped whenever something this rank may wait for happens.
  mutable std::mutex wake_mtx;
  std::condition_variable wake_cv;
  std::atomic<std::uint64_t> epoch{0};
  // Messages addressed to this rank, FIFO per (sender, key).
  std::mutex box_mtx;
  std::unordered_map<box_key, std::deque<std::shared_ptr<send_op>>, box_key_hash> box;
  // Failure state.
  std::atomic<bool> failed{false};
  std::atomic<std::size_t> fail_at_step{std::numeric_limits<std::size_t>::max()};
  std::string failure;  // written before `failed` is set
  int root = -1;        // the rank whose failure caused this one (itself if it failed first)
};

/// One `agree` or `shrink` call of a world (guarded by the world's ULFM mutex).
struct ulfm_round {
  std::vector<char> arrived;  // per rank
  bool value = true;          // AND of the arrived ranks' flags (agree)
  bool decided = false;
  bool result = true;         // agree's decision
  world* child = nullptr;     // shrink's decision
  int arrivals = 0;
  int departed = 0;
};

}  // namespace detail

/// One rank's handle on a `world`; models `dssync::concepts::transport`. Use it from one thread.
class communicator {
 public:
  /// A pending zero-copy send.
  struct send_request {
    std::shared_ptr<detail::send_op> op;
    int peer = -1;
    message_key key{};
  };
  /// A pending receive.
  struct recv_request {
    int peer = -1;
    message_key key{};
    std::size_t bytes = 0;
  };
  using token = std::uint64_t;

  [[nodiscard]] int rank() const noexcept { return rank_; }
  [[nodiscard]] int size() const noexcept;
  [[nodiscard]] std::uint32_t next_call() noexcept { return calls_++; }
  [[nodiscard]] world& owner() const noexcept { return *world_; }

  send_request isend(int peer, message_key key, std::span<const std::byte> bytes);
  bool test(send_request& r) const noexcept {
    return !r.op || r.op->state.load(std::memory_order_acquire) >= detail::send_op::done;
  }
  recv_request post_recv(int peer, message_key key, std::size_t bytes) const noexcept { return {peer, key, bytes}; }
  template <class F>
  bool try_consume(recv_request& r, F&& f);
  /// Consumes the longest prefix of `reqs` whose messages have all arrived and calls
  /// `f(std::span<const std::span<const std::byte>>)` once with their bytes (in place, in the senders'
  /// buffers). Returns how many were consumed (0: `f` is not called). Lets the executor reduce several
  /// peers' data in one pass.
  template <class F>
  std::size_t consume_run(std::span<recv_request* const> reqs, F&& f);
  void cancel(send_request& r);
  void cancel(recv_request&) const noexcept {}
  [[nodiscard]] token progress_token() const noexcept;
  void wait_progress(token t, deadline_t deadline) const;
  [[nodiscard]] bool peer_failed(int peer) const noexcept;
  /// Why `peer` failed, for error messages.
  [[nodiscard]] std::string peer_failure_reason(int peer) const;
  /// The rank where `peer`'s failure started (-1 if `peer` has not failed).
  [[nodiscard]] int peer_failure_root(int peer) const;
  /// Both of the above, read consistently: (root, reason). A peer may fail between two separate calls
  /// (from "lost to a revocation" to "failed itself"); the executor uses this one.
  [[nodiscard]] std::pair<int, std::string> peer_failure_info(int peer) const;
  /// Fault injection hook: throws `injected_fault` (and marks this rank failed) at the configured step.
  void fault_point(std::size_t step);

  // --- ULFM-style recovery (see the file comment) -------------------------------------------------

  /// MPIX_Comm_revoke: revokes this rank's world. From now on `peer_failed(p)` is true for every `p`, so
  /// every pending or future wait of every rank of the world fails fast with `peer_failure`;
  /// `peer_failure_root(p)` and `peer_failure_reason(p)` name `cause`, the rank whose failure made this
  /// rank revoke (typically the `peer()` of the `peer_failure` it caught), or this rank when `cause` is -1.
  /// Idempotent: the first revocation's revoker and cause stay. `world::reset()` clears it.
  void revoke(int cause = -1);
  /// Whether this rank's world is revoked.
  [[nodiscard]] bool revoked() const noexcept;
  /// MPIX_Comm_agree: a collective over the ranks of this world that are not marked failed; returns the
  /// AND of their `flag`s, the same value on every rank. It completes once every rank not marked failed has
  /// called it (a rank failing meanwhile is dropped from the wait) and works on a revoked world. Calls
  /// are numbered per rank, so successive agreements never mix.
  /// \throws timeout_error naming the ranks that did not call it within `timeout`. After a timeout this
  ///   world's agreement state is undefined: treat it like a failure.
  bool agree(bool flag, std::chrono::milliseconds timeout);
  /// `agree(flag, timeout)` with DSSYNC_TIMEOUT (default 120 s).
  bool agree(bool flag) { return agree(flag, options::from_env().timeout); }
  /// MPIX_Comm_shrink: a collective over the ranks of this world that are not marked failed. Returns this
  /// rank's handle in a new child world whose ranks are those survivors in increasing rank order
  /// (`owner().members()` lists their ranks here). Every survivor gets the same child, whenever it calls.
  /// The child is owned by this world (references stay valid until `reset()`), is not revoked, and starts
  /// with fresh call numbers.
  /// \throws timeout_error naming the ranks that did not call it within `timeout`; peer_failure if this
  ///   rank was marked failed before the survivors were fixed (it is not in the child).
  communicator& shrink(std::chrono::milliseconds timeout);
  /// `shrink(timeout)` with DSSYNC_TIMEOUT (default 120 s).
  communicator& shrink() { return shrink(options::from_env().timeout); }
  /// The rank, in the outermost world (the one this world was shrunk from, transitively), of rank `r` of
  /// this world. The identity on a world that was not shrunk from another.
  [[nodiscard]] int origin(int r) const;
  /// The size of the outermost world.
  [[nodiscard]] int origin_size() const noexcept;

 private:
  friend class world;
  communicator(world* w, int r) : world_(w), rank_(r) {}
  world* world_;
  int rank_;
  std::uint32_t calls_ = 0;
  std::uint64_t agree_calls_ = 0;
  std::uint64_t shrink_calls_ = 0;
};

/// N ranks in one process. Create it, then `run` a function on every rank, each on its own thread.
///
/// ```
/// dssync::transport::inproc::world w(8);
/// w.run([](auto& comm) { std::vector<float> g(1000, 1.f); dssync::synchronize(comm, g); });
/// ```
class world {
 public:
  /// \throws invalid_argument if `n < 1`.
  explicit world(int n) : n_(n) {
    if (n < 1) throw invalid_argument("inproc::world: size " + std::to_string(n) + " must be at least 1");
    states_.reserve(static_cast<std::size_t>(n));
    comms_.reserve(static_cast<std::size_t>(n));
    members_.reserve(static_cast<std::size_t>(n));
    for (int r = 0; r < n; ++r) {
      states_.push_back(std::make_unique<detail::rank_state>());
      comms_.push_back(communicator(this, r));
      members_.push_back(r);
    }
  }
  world(const world&) = delete;
  world& operator=(const world&) = delete;

  [[nodiscard]] int size() const noexcept { return n_; }

  /// The world this one was shrunk from (`communicator::shrink`), or null.
  [[nodiscard]] world* parent() const noexcept { return parent_; }
  /// The rank in `parent()` of each rank of this world, increasing (0..size()-1 for a world with no parent).
  [[nodiscard]] const std::vector<int>& members() const noexcept { return members_; }
  /// The rank in the outermost world of rank `r` of this world.
  /// \throws invalid_argument if `r` is out of range.
  [[nodiscard]] int origin(int r) const {
    check_rank(r);
    return parent_ ? parent_->origin(members_[static_cast<std::size_t>(r)]) : r;
  }
  /// The outermost world: the one this world was shrunk from, transitively (itself if it has no parent).
  [[nodiscard]] world& outermost() noexcept { return parent_ ? parent_->outermost() : *this; }
  [[nodiscard]] const world& outermost() const noexcept { return parent_ ? parent_->outermost() : *this; }
  /// How many child worlds `shrink` made from this one since the last `reset()`.
  [[nodiscard]] std::size_t child_count() const {
    std::lock_guard g(ulfm_mtx_);
    return children_.size();
  }
  /// Whether the world is revoked (`communicator::revoke`).
  [[nodiscard]] bool revoked() const noexcept { return revoked_.load(std::memory_order_acquire); }
  /// The rank that revoked the world first (-1 if it is not revoked).
  [[nodiscard]] int revoked_by() const noexcept { return revoked() ? revoker_ : -1; }
  /// The rank whose failure the first revoker gave as the cause (-1 if none or not revoked).
  [[nodiscard]] int revoke_cause() const noexcept { return revoked() ? revoke_cause_ : -1; }
  /// The handle of rank `r`, for users that manage their own threads.
  [[nodiscard]] communicator& comm(int r) { return comms_.at(static_cast<std::size_t>(r)); }

  /// Runs `f(communicator&)` on every rank, each on its own thread, and joins them. A rank whose function
  /// ends (by return or exception) is marked finished, so peers still waiting on it fail fast.
  /// Returns one `exception_ptr` per rank (null where the rank succeeded).
  template <class F>
  std::vector<std::exception_ptr> run_collect(F&& f) {
    reset();
    std::vector<std::exception_ptr> errors(static_cast<std::size_t>(n_));
    std::vector<std::thread> threads;
    threads.reserve(static_cast<std::size_t>(n_));
    for (int r = 0; r < n_; ++r)
      threads.emplace_back([this, r, &f, &errors] {
        try {
          f(comms_[static_cast<std::size_t>(r)]);
          mark_failed(r, "its worker function returned");
        } catch (const peer_failure& e) {
          // A cascade: name the rank where the failure started, so ranks further down the line do too.
          errors[static_cast<std::size_t>(r)] = std::current_exception();
          const int root = e.peer() >= 0 && e.peer() < n_ ? failure_root(e.peer()) : -1;
          mark_failed(r, "its worker function threw after losing rank " + std::to_string(root), root);
        } catch (const injected_fault&) {
          errors[static_cast<std::size_t>(r)] = std::current_exception();
        } catch (...) {
          errors[static_cast<std::size_t>(r)] = std::current_exception();
          mark_failed(r, "its worker function threw");
        }
      });
    for (auto& t : threads) t.join();
    return errors;
  }

  /// Like `run_collect`, but rethrows the error of the lowest failing rank.
  template <class F>
  void run(F&& f) {
    for (auto& e : run_collect(std::forward<F>(f)))
      if (e) std::rethrow_exception(e);
  }

  /// Fault injection: rank `r` stops when it reaches step `step` (counted over its channels) of its next
  /// collective, raising `injected_fault` there and marking itself failed. The fault belongs to the rank's
  /// thread: it fires in whichever world (this one, or one shrunk from it or that it was shrunk from) that
  /// thread next reaches the step in.
  void inject_fault(int r, std::size_t step) {
    check_rank(r);
    fault_state(r).fail_at_step.store(step);
  }

  /// Marks rank `r` failed now, with `why` in the peers' error messages. `root` is the rank whose failure
  /// caused this one (default: `r` itself). A failure is the failure of the rank's thread: it is marked in
  /// the outermost world and in every world shrunk from it that contains the rank, and wakes every wait
  /// (including `agree` and `shrink`) there.
  void mark_failed(int r, const std::string& why, int root = -1) {
    check_rank(r);
    const int rr = root >= 0 && root < n_ ? root : r;
    outermost().mark_tree(origin(r), why, origin(rr));
  }

  /// Whether rank `r` is marked failed.
  [[nodiscard]] bool failed(int r) const { return states_.at(static_cast<std::size_t>(r))->failed.load(std::memory_order_acquire); }

  /// Why rank `r` was marked failed ("" if it was not).
  [[nodiscard]] std::string failure_reason(int r) const {
    const auto& s = state(r);
    if (!s.failed.load(std::memory_order_acquire)) return {};
    std::lock_guard g(s.wake_mtx);
    return s.failure;
  }

  /// The rank where the failure of `r` started: `r` itself if it failed first, -1 if it has not failed.
  [[nodiscard]] int failure_root(int r) const {
    const auto& s = state(r);
    if (!s.failed.load(std::memory_order_acquire)) return -1;
    std::lock_guard g(s.wake_mtx);
    return s.root;
  }

  /// Clears all failure marks, pending messages, call counters and the revocation, and drops the worlds
  /// shrunk from this one (not the faults injected for the next run). `run_collect` calls it first, so a
  /// world can run many jobs. Do not call it while ranks run.
  void reset() {
    for (auto& s : states_) {
      std::lock_guard g(s->box_mtx);
      s->box.clear();
      std::lock_guard w(s->wake_mtx);
      s->failed.store(false);
      s->failure.clear();
      s->root = -1;
    }
    for (auto& c : comms_) {
      c.calls_ = 0;
      c.agree_calls_ = 0;
      c.shrink_calls_ = 0;
    }
    std::lock_guard g(ulfm_mtx_);
    revoked_.store(false);
    revoker_ = -1;
    revoke_cause_ = -1;
    agree_rounds_.clear();
    shrink_rounds_.clear();
    children_.clear();
  }

 private:
  friend class communicator;
  struct child_tag {};

 public:
  /// A world shrunk from `parent` (use `communicator::shrink`); `members` are the parent's ranks.
  world(child_tag, world* parent, std::vector<int> members) : world(static_cast<int>(members.size())) {
    parent_ = parent;
    members_ = std::move(members);
  }

 private:
  // The rank of this world whose parent rank is `p`, or -1.
  [[nodiscard]] int index_of(int p) const noexcept {
    const auto it = std::lower_bound(members_.begin(), members_.end(), p);
    return it != members_.end() && *it == p ? static_cast<int>(it - members_.begin()) : -1;
  }
  // Marks rank `r` (root `root`, -1: itself) here and in the children that contain it.
  void mark_tree(int r, const std::string& why, int root) {
    mark_local(r, why, root);
    std::vector<world*> kids;
    {
      std::lock_guard g(ulfm_mtx_);
      for (const auto& c : children_) kids.push_back(c.get());
    }
    for (world* c : kids)
      if (const int i = c->index_of(r); i >= 0) c->mark_tree(i, why, root >= 0 ? c->index_of(root) : -1);
  }
  void mark_local(int r, const std::string& why, int root) {
    auto& s = state(r);
    {
      std::lock_guard g(s.wake_mtx);
      if (!s.failed.load()) {
        s.failure = why;
        s.root = root >= 0 && root < n_ ? root : r;
        s.failed.store(true, std::memory_order_release);
      }
    }
    wake_all();
  }
  // Wakes every wait of this world: transport waits and agree/shrink.
  void wake_all() {
    { std::lock_guard g(ulfm_mtx_); }  // a waiter checks its predicate under this mutex: no lost wake-up
    ulfm_cv_.notify_all();
    for (int p = 0; p < n_; ++p) wake(p);
  }
  void revoke(int by, int cause) {
    {
      std::lock_guard g(ulfm_mtx_);
      if (!revoked_.load()) {
        revoker_ = by;
        revoke_cause_ = cause >= 0 && cause < n_ ? cause : -1;
        revoked_.store(true, std::memory_order_release);
      }
    }
    wake_all();
  }
  // The rank a revocation blames: the failure root of its cause, or the revoker.
  [[nodiscard]] int revocation_root() const {
    const int cause = revoke_cause_;
    if (cause < 0) return revoker_;
    const int root = failure_root(cause);
    return root >= 0 ? root : cause;
  }
  [[nodiscard]] std::string revocation_reason() const {
    std::string why = "the communicator was revoked by rank " + std::to_string(revoker_);
    if (revoke_cause_ >= 0) {
      const int root = revocation_root();
      why += " after rank " + std::to_string(root) + " failed";
      const std::string first = failure_reason(root);
      if (!first.empty()) why += " (it " + first + ")";
    }
    return why;
  }
  // The error of a rank marked failed that calls agree or shrink: it takes no part.
  [[nodiscard]] peer_failure excluded(int me, const char* what) const {
    return peer_failure("inproc: rank " + std::to_string(me) + " is marked failed (" + failure_reason(me) +
                            "), so it takes no part in " + what + (std::string_view(what) == "shrink" ? " and is not in the shrunk world" : ""),
                        me, me);
  }
  static std::string millis(std::chrono::milliseconds t) { return std::to_string(t.count()) + " ms"; }
  // The agree/shrink collective: registers `me` in call `seq` of `rounds`, waits until every rank not
  // marked failed has arrived, and lets the first rank to see that decide (`decide(round)`). Returns a
  // copy of the decided round.
  template <class Decide>
  detail::ulfm_round ulfm_collective(const char* what, std::map<std::uint64_t, detail::ulfm_round>& rounds,
                                     int me, std::uint64_t seq, bool flag, std::chrono::milliseconds timeout,
                                     Decide&& decide) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    if (failed(me)) throw excluded(me, what);
    std::unique_lock lk(ulfm_mtx_);
    auto& rd = rounds[seq];
    if (rd.arrived.empty()) rd.arrived.assign(static_cast<std::size_t>(n_), 0);
    if (!rd.decided) {
      rd.arrived[static_cast<std::size_t>(me)] = 1;
      rd.value = rd.value && flag;
    }
    ++rd.arrivals;
    ulfm_cv_.notify_all();
    auto missing = [&] {
      std::vector<int> m;
      for (int p = 0; p < n_; ++p)
        if (!rd.arrived[static_cast<std::size_t>(p)] && !failed(p)) m.push_back(p);
      return m;
    };
    while (!rd.decided) {
      const auto miss = missing();
      if (miss.empty()) {
        decide(rd);
        rd.decided = true;
        ulfm_cv_.notify_all();
        break;
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        if (++rd.departed == rd.arrivals) rounds.erase(seq);
        std::string names;
        for (std::size_t i = 0; i < miss.size(); ++i) names += (i ? ", " : "") + std::to_string(miss[i]);
        throw timeout_error("inproc: rank " + std::to_string(me) + " timed out after " + millis(timeout) + " in " +
                                what + " #" + std::to_string(seq) + ", waiting for rank" +
                                (miss.size() > 1 ? "s " : " ") + names +
                                " (alive, but not in the call: slow, hung, or not calling it)",
                            me, miss.front());
      }
      ulfm_cv_.wait_until(lk, deadline);
    }
    detail::ulfm_round out = rd;
    if (++rd.departed == rd.arrivals) rounds.erase(seq);
    return out;
  }
  bool agree(int me, std::uint64_t seq, bool flag, std::chrono::milliseconds timeout) {
    return ulfm_collective("agree", agree_rounds_, me, seq, flag, timeout,
                           [](detail::ulfm_round& rd) { rd.result = rd.value; })
        .result;
  }
  communicator& shrink(int me, std::uint64_t seq, std::chrono::milliseconds timeout) {
    world* child = ulfm_collective("shrink", shrink_rounds_, me, seq, true, timeout, [&](detail::ulfm_round& rd) {
                     // Survivors: the ranks that arrived and are not marked failed now. A rank marked failed
                     // later finds this child in children_ (same mutex) and is marked in it too.
                     std::vector<int> members;
                     for (int p = 0; p < n_; ++p)
                       if (rd.arrived[static_cast<std::size_t>(p)] && !failed(p)) members.push_back(p);
                     if (members.empty()) return;  // only ranks marked failed called it
                     children_.push_back(std::make_unique<world>(child_tag{}, this, std::move(members)));
                     rd.child = children_.back().get();
                   }).child;
    const int i = child ? child->index_of(me) : -1;
    if (i < 0) throw excluded(me, "shrink");
    return child->comm(i);
  }

  void check_rank(int r) const {
    if (r < 0 || r >= n_)
      throw invalid_argument("inproc::world: rank " + std::to_string(r) + " out of range for size " + std::to_string(n_));
  }
  detail::rank_state& state(int r) { return *states_[static_cast<std::size_t>(r)]; }
  // Where rank r's injected fault lives: its state in the outermost world.
  detail::rank_state& fault_state(int r) { return outermost().state(origin(r)); }
  const detail::rank_state& state(int r) const { return *states_[static_cast<std::size_t>(r)]; }
  void wake(int r) {
    auto& s = state(r);
    {
      std::lock_guard g(s.wake_mtx);
      s.epoch.fetch_add(1, std::memory_order_release);
    }
    s.wake_cv.notify_all();
  }

  int n_;
  std::vector<std::unique_ptr<detail::rank_state>> states_;
  std::vector<communicator> comms_;
  world* parent_ = nullptr;
  std::vector<int> members_;
  // ULFM state: revocation, agree/shrink calls, shrunk children.
  mutable std::mutex ulfm_mtx_;
  std::condition_variable ulfm_cv_;
  std::atomic<bool> revoked_{false};
  int revoker_ = -1;       // written before revoked_ is set, read after it is seen set
  int revoke_cause_ = -1;
  std::map<std::uint64_t, detail::ulfm_round> agree_rounds_;
  std::map<std::uint64_t, detail::ulfm_round> shrink_rounds_;
  std::vector<std::unique_ptr<world>> children_;
};

inline int communicator::size() const noexcept { return world_->size(); }

inline communicator::send_request communicator::isend(int peer, message_key key, std::span<const std::byte> bytes) {
  auto op = std::make_shared<detail::send_op>();
  op->data = bytes.data();
  op->size = bytes.size();
  auto& dst = world_->state(peer);
  {
    std::lock_guard g(dst.box_mtx);
    dst.box[detail::box_key{rank_, key}].push_back(op);
  }
  world_->wake(peer);
  return {std::move(op), peer, key};
}

template <class F>
bool communicator::try_consume(recv_request& r, F&& f) {
  auto& me = world_->state(rank_);
  std::shared_ptr<detail::send_op> op;
  {
    std::lock_guard g(me.box_mtx);
    auto it = me.box.find(detail::box_key{r.peer, r.key});
    if (it == me.box.end() || it->second.empty()) return false;
    op = std::move(it->second.front());
    it->second.pop_front();
    if (it->second.empty()) me.box.erase(it);
    op->state.store(detail::send_op::consuming, std::memory_order_relaxed);
  }
  struct finish {
    communicator* c;
    detail::send_op* op;
    int peer;
    ~finish() {
      op->state.store(detail::send_op::done, std::memory_order_release);
      c->world_->wake(peer);
    }
  } fin{this, op.get(), r.peer};
  if (op->size != r.bytes)
    throw malformed_payload("inproc: rank " + std::to_string(rank_) + " expected " + std::to_string(r.bytes) +
                            " bytes from rank " + std::to_string(r.peer) + " (call " + std::to_string(r.key.call) +
                            ", channel " + std::to_string(r.key.channel) + ", message " +
                            std::to_string(r.key.ordinal) + ") but the message has " + std::to_string(op->size),
                            rank_);
  f(std::span<const std::byte>(op->data, op->size));
  return true;
}

template <class F>
std::size_t communicator::consume_run(std::span<recv_request* const> reqs, F&& f) {
  auto& me = world_->state(rank_);
  thread_local std::vector<std::shared_ptr<detail::send_op>> taken;
  thread_local std::vector<std::span<const std::byte>> spans;
  taken.clear();
  spans.clear();
  {
    std::lock_guard g(me.box_mtx);
    for (recv_request* r : reqs) {
      auto it = me.box.find(detail::box_key{r->peer, r->key});
      if (it == me.box.end() || it->second.empty()) break;
      taken.push_back(std::move(it->second.front()));
      it->second.pop_front();
      if (it->second.empty()) me.box.erase(it);
      taken.back()->state.store(detail::send_op::consuming, std::memory_order_relaxed);
    }
  }
  const std::size_t m = taken.size();
  if (m == 0) return 0;
  struct finish {
    communicator* c;
    std::span<recv_request* const> reqs;
    ~finish() {
      for (std::size_t i = 0; i < taken.size(); ++i) {
        taken[i]->state.store(detail::send_op::done, std::memory_order_release);
        c->world_->wake(reqs[i]->peer);
      }
      taken.clear();
    }
  } fin{this, reqs};
  for (std::size_t i = 0; i < m; ++i) {
    const recv_request& r = *reqs[i];
    if (taken[i]->size != r.bytes)
      throw malformed_payload("inproc: rank " + std::to_string(rank_) + " expected " + std::to_string(r.bytes) +
                                  " bytes from rank " + std::to_string(r.peer) + " (call " + std::to_string(r.key.call) +
                                  ", channel " + std::to_string(r.key.channel) + ", message " +
                                  std::to_string(r.key.ordinal) + ") but the message has " +
                                  std::to_string(taken[i]->size),
                              rank_);
    spans.emplace_back(taken[i]->data, taken[i]->size);
  }
  f(std::span<const std::span<const std::byte>>(spans.data(), m));
  return m;
}

inline void communicator::cancel(send_request& r) {
  if (!r.op) return;
  auto& dst = world_->state(r.peer);
  {
    std::lock_guard g(dst.box_mtx);
    auto it = dst.box.find(detail::box_key{rank_, r.key});
    if (it != dst.box.end()) {
      auto& q = it->second;
      for (auto qi = q.begin(); qi != q.end(); ++qi)
        if (qi->get() == r.op.get()) {
          q.erase(qi);
          r.op->state.store(detail::send_op::cancelled, std::memory_order_release);
          break;
        }
      if (q.empty()) dst.box.erase(it);
    }
  }
  // A receiver that already took the descriptor finishes reading before we return.
  while (r.op->state.load(std::memory_order_acquire) == detail::send_op::consuming) std::this_thread::yield();
  r.op.reset();
}

inline communicator::token communicator::progress_token() const noexcept {
  return world_->state(rank_).epoch.load(std::memory_order_acquire);
}

inline void communicator::wait_progress(token t, deadline_t deadline) const {
  auto& s = world_->state(rank_);
  for (int i = 0; i < 16; ++i) {
    if (s.epoch.load(std::memory_order_acquire) != t) return;
    std::this_thread::yield();
  }
  std::unique_lock lk(s.wake_mtx);
  s.wake_cv.wait_until(lk, deadline, [&] { return s.epoch.load(std::memory_order_acquire) != t; });
}

inline bool communicator::peer_failed(int peer) const noexcept { return world_->failed(peer) || world_->revoked(); }

inline std::string communicator::peer_failure_reason(int peer) const {
  if (!world_->failed(peer)) return world_->revoked() ? world_->revocation_reason() : std::string();
  std::string why = world_->failure_reason(peer);
  const int root = world_->failure_root(peer);
  if (root >= 0 && root != peer) {
    const std::string first = world_->failure_reason(root);
    why += "; the failure started at rank " + std::to_string(root) + (first.empty() ? "" : ", which " + first);
  }
  return why;
}

inline int communicator::peer_failure_root(int peer) const {
  if (world_->failed(peer)) return world_->failure_root(peer);
  return world_->revoked() ? world_->revocation_root() : -1;
}

inline std::pair<int, std::string> communicator::peer_failure_info(int peer) const {
  if (world_->failed(peer)) {
    std::string why = world_->failure_reason(peer);
    const int root = world_->failure_root(peer);
    if (root >= 0 && root != peer) {
      const std::string first = world_->failure_reason(root);
      why += "; the failure started at rank " + std::to_string(root) + (first.empty() ? "" : ", which " + first);
    }
    return {root, why};
  }
  if (world_->revoked()) return {world_->revocation_root(), world_->revocation_reason()};
  return {-1, {}};
}

inline void communicator::revoke(int cause) { world_->revoke(rank_, cause); }

inline bool communicator::revoked() const noexcept { return world_->revoked(); }

inline bool communicator::agree(bool flag, std::chrono::milliseconds timeout) {
  return world_->agree(rank_, agree_calls_++, flag, timeout);
}

inline communicator& communicator::shrink(std::chrono::milliseconds timeout) {
  return world_->shrink(rank_, shrink_calls_++, timeout);
}

inline int communicator::origin(int r) const { return world_->origin(r); }

inline int communicator::origin_size() const noexcept { return world_->outermost().size(); }

inline void communicator::fault_point(std::size_t step) {
  auto& s = world_->fault_state(rank_);
  if (s.fail_at_step.load(std::memory_order_relaxed) != step) return;
  s.fail_at_step.store(std::numeric_limits<std::size_t>::max());
  const std::string why = "stopped by fault injection at step " + std::to_string(step);
  world_->mark_failed(rank_, why);
  throw injected_fault("rank " + std::to_string(rank_) + " " + why, rank_);
}

static_assert(concepts::transport<communicator>);

}  // namespace dssync::transport::inproc
