#pragma once
/// \file
/// The in-process transport, dssync's embedded default: a `world` of N ranks in one process, one worker
/// thread each, exchanging messages through shared memory.
///
/// Sends are zero copy: a send posts a descriptor of the sender's bytes, and the receiver reduces or
/// copies straight from the sender's buffer; the send completes when the receiver has consumed it.
/// Every wait has a deadline. A rank that stops (fault injection, or its worker function ended) is marked
/// failed, and peers waiting on it raise `peer_failure` at once.

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "dssync/core/error.hpp"
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
  /// Fault injection hook: throws `injected_fault` (and marks this rank failed) at the configured step.
  void fault_point(std::size_t step);

 private:
  friend class world;
  communicator(world* w, int r) : world_(w), rank_(r) {}
  world* world_;
  int rank_;
  std::uint32_t calls_ = 0;
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
    for (int r = 0; r < n; ++r) {
      states_.push_back(std::make_unique<detail::rank_state>());
      comms_.push_back(communicator(this, r));
    }
  }
  world(const world&) = delete;
  world& operator=(const world&) = delete;

  [[nodiscard]] int size() const noexcept { return n_; }
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
  /// collective, raising `injected_fault` there and marking itself failed.
  void inject_fault(int r, std::size_t step) {
    check_rank(r);
    states_[static_cast<std::size_t>(r)]->fail_at_step.store(step);
  }

  /// Marks rank `r` failed now, with `why` in the peers' error messages. `root` is the rank whose failure
  /// caused this one (default: `r` itself).
  void mark_failed(int r, const std::string& why, int root = -1) {
    check_rank(r);
    auto& s = *states_[static_cast<std::size_t>(r)];
    {
      std::lock_guard g(s.wake_mtx);
      if (!s.failed.load()) {
        s.failure = why;
        s.root = root >= 0 && root < n_ ? root : r;
        s.failed.store(true, std::memory_order_release);
      }
    }
    for (int p = 0; p < n_; ++p) wake(p);
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

  /// Clears all failure marks, pending messages and call counters (not the faults injected for the next
  /// run). `run_collect` calls it first, so a world can run many jobs. Do not call it while ranks run.
  void reset() {
    for (auto& s : states_) {
      std::lock_guard g(s->box_mtx);
      s->box.clear();
      std::lock_guard w(s->wake_mtx);
      s->failed.store(false);
      s->failure.clear();
      s->root = -1;
    }
    for (auto& c : comms_) c.calls_ = 0;
  }

 private:
  friend class communicator;
  void check_rank(int r) const {
    if (r < 0 || r >= n_)
      throw invalid_argument("inproc::world: rank " + std::to_string(r) + " out of range for size " + std::to_string(n_));
  }
  detail::rank_state& state(int r) { return *states_[static_cast<std::size_t>(r)]; }
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

inline bool communicator::peer_failed(int peer) const noexcept { return world_->failed(peer); }

inline std::string communicator::peer_failure_reason(int peer) const {
  std::string why = world_->failure_reason(peer);
  const int root = world_->failure_root(peer);
  if (root >= 0 && root != peer) {
    const std::string first = world_->failure_reason(root);
    why += "; the failure started at rank " + std::to_string(root) + (first.empty() ? "" : ", which " + first);
  }
  return why;
}

inline int communicator::peer_failure_root(int peer) const { return world_->failure_root(peer); }

inline void communicator::fault_point(std::size_t step) {
  auto& s = world_->state(rank_);
  if (s.fail_at_step.load(std::memory_order_relaxed) != step) return;
  s.fail_at_step.store(std::numeric_limits<std::size_t>::max());
  const std::string why = "stopped by fault injection at step " + std::to_string(step);
  world_->mark_failed(rank_, why);
  throw injected_fault("rank " + std::to_string(rank_) + " " + why, rank_);
}

static_assert(concepts::transport<communicator>);

}  // namespace dssync::transport::inproc
