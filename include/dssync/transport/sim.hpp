#pragma once
/// \file
/// `transport::sim`: the simulated transport. A `world` of N ranks in one process, one worker thread
/// each (as `transport::inproc`), whose messages move for real (zero copy, so results are exact) while a
/// shared flow-level network model (`sim::flow_engine` on the world's topology) decides *when* each
/// message arrives. One run gives both the correct result and the simulated time, `communicator::now()`.
///
/// Virtual time (a conservative discrete-event scheme):
///  - The clock advances only when every running rank is blocked in `wait_progress` (or `sleep_until`)
///    or has finished. Code between transport calls takes no virtual time; a rank that computes holds
///    the clock still, and `sleep_for(s)` models `s` seconds of computation.
///  - `isend` at virtual time t starts a flow from the sender to the receiver on the shortest route
///    (ECMP keyed by the message's channel, as `sim::simulate` does) at t. Flows share links max-min
///    fairly with every other flow, background flows of the scenario included. The message becomes
///    consumable when it has *arrived*: transmission end plus the route's latency (see `flow_engine`).
///  - When the last running rank blocks, it advances the engine to the next event (a transmission end,
///    an arrival, a scenario action, a timer), applies it and wakes the ranks it concerns, repeating until
///    some blocked rank is woken.
///  - Connections: by default (`world_options::fifo_connections`) the messages from one rank to another
///    on one channel form a connection that transmits one message at a time, in order (as one TCP
///    stream or one RDMA queue pair does). So the executor's segments of a step follow each other and
///    pipeline: a receiver can forward segment 1 while segment 2 is on the wire. `sim::simulate`
///    models connections the same way. Without it every message is an independent flow; segments of one
///    step then share the route fairly and all arrive together at the end.
///  - Messages between a pair under one key are consumed in FIFO order: a message that arrives before
///    an earlier one (possible only without FIFO connections) waits for it.
///  - A send completes when its receiver has consumed it (zero copy, as in process).
///  - Ranks must wait only through the transport (`wait_progress`, as the executor and every dssync
///    collective do, or `sleep_until`). A rank that spins on `try_consume` without waiting, or waits for
///    another rank outside the transport (a thread barrier), holds the clock still.
///  - Outside `run`, `comm(r)` works from any thread ("free mode"): each `wait_progress` advances the clock
///    until that rank (or another waiting one) has something, and `advance`/`settle` step it by hand.
///    Timings are exact only inside `run`, where every rank is accounted for.
///
/// Failures: as `inproc` (fault injection, finished ranks are marked failed). A rank sees a peer as
/// failed (`peer_failed`) once the peer is marked failed *and* none of the peer's messages to it is still
/// on the wire, so data sent before a failure is still delivered at its virtual arrival time.
/// Deadlock: when every running rank waits and nothing is pending (no flow that can finish, no arrival,
/// no scenario action, no timer), nothing can ever happen. If that lasts `world_options::deadlock_after`
/// of real time, every waiting rank raises `timeout_error` describing what each rank waits for. The
/// ordinary deadlines (`options::timeout`) apply too.
///
/// What it does not model: the time of local reductions and copies (see `sim_options::reduce_bytes_per_s`
/// for the offline simulator), packet loss, and CPU contention.
///
/// ```
/// dssync::transport::sim::world w(dssync::topology::leaf_spine(4, 8));
/// w.run([&](auto& comm) {
///   const double t0 = comm.now();
///   dssync::synchronize<dssync::algorithms::ring>(comm, topo, grads);
///   times[comm.rank()] = comm.now() - t0;  // simulated seconds
/// });
/// ```

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <concepts>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <queue>
#include <span>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "dssync/core/error.hpp"
#include "dssync/core/transport.hpp"
#include "dssync/sim/flow_engine.hpp"
#include "dssync/sim/routing.hpp"
#include "dssync/sim/scenario.hpp"
#include "dssync/topology/network.hpp"

namespace dssync::transport::sim {

/// How a simulated `world` models the network.
struct world_options {
  /// Timed changes to the network (background flows, NIC caps, link bandwidths), on the virtual clock.
  ::dssync::sim::scenario script;
  /// When set, every link's latency is this many seconds instead of the network's.
  std::optional<double> latency;
  /// Virtual time of the world's start. Scenario actions up to it are applied at construction.
  double start_time = 0;
  /// Messages from one rank to another on one channel are transmitted one at a time, in order (see the
  /// file comment). false: every message is an independent flow.
  bool fifo_connections = true;
  /// Real time a world may stay with every rank waiting and nothing pending before the waiting ranks
  /// raise `timeout_error` (a deadlock in virtual time). 0 disables it (only deadlines apply).
  std::chrono::milliseconds deadlock_after{2000};
};

class world;

namespace detail {

/// One message: the sender's bytes (read in place by the receiver) and where it is in the network.
struct message {
  enum : int { queued = 0, consuming = 1, done = 2, cancelled = 3 };  // consumption, as inproc's send_op
  enum class net : std::uint8_t { waiting, transmitting, propagating, arrived, withdrawn };
  const std::byte* data = nullptr;
  std::size_t size = 0;
  std::atomic<int> state{queued};
  // The fields below are guarded by the world's mutex.
  net phase = net::waiting;
  int src = -1, dst = -1;
  message_key key{};
  std::uint64_t tag = 0;
  ::dssync::sim::flow_id flow{};
  std::uint64_t conn = 0;
  double posted = 0, arrival = 0;
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
  std::condition_variable cv;
  std::atomic<std::uint64_t> epoch{0};
  bool blocked = false;  // inside wait_progress with nothing new for it
  std::unordered_map<box_key, std::deque<std::shared_ptr<message>>, box_key_hash> box;
  std::atomic<bool> failed{false};
  std::atomic<std::size_t> fail_at_step{std::numeric_limits<std::size_t>::max()};
  std::string failure;
  int root = -1;
  // What the rank last looked for in vain (for deadlock reports).
  bool looked = false;
  int looked_peer = -1;
  message_key looked_key{};
};

/// The messages of one connection (sender, receiver, channel) not yet on the wire.
struct connection {
  std::deque<std::shared_ptr<message>> waiting;
  bool busy = false;
};

struct timed {
  double time;
  std::uint64_t seq;
  std::uint64_t id;  // a message tag (arrivals) or a rank (timers)
  friend bool operator>(const timed& a, const timed& b) noexcept {
    return a.time != b.time ? a.time > b.time : a.seq > b.seq;
  }
};

inline std::string key_text(const message_key& k) {
  return "call " + std::to_string(k.call) + ", channel " + std::to_string(k.channel) + ", message " +
         std::to_string(k.ordinal);
}

}  // namespace detail

/// One rank's handle on a simulated `world`; models `dssync::concepts::transport`. Use it from one thread.
class communicator {
 public:
  /// A pending zero-copy send.
  struct send_request {
    std::shared_ptr<detail::message> op;
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

  /// The virtual clock, in seconds.
  [[nodiscard]] double now() const;
  /// Blocks this rank until the virtual clock reaches `t` (models computation; other ranks go on).
  void sleep_until(double t);
  /// As `sleep_until(now() + seconds)`.
  void sleep_for(double seconds);

  send_request isend(int peer, message_key key, std::span<const std::byte> bytes);
  bool test(send_request& r) const noexcept {
    return !r.op || r.op->state.load(std::memory_order_acquire) >= detail::message::done;
  }
  recv_request post_recv(int peer, message_key key, std::size_t bytes) const noexcept { return {peer, key, bytes}; }
  template <class F>
  bool try_consume(recv_request& r, F&& f);
  /// As `inproc::communicator::consume_run`: consumes the longest prefix of `reqs` whose messages have
  /// all arrived and calls `f` once with their bytes. Returns how many were consumed.
  template <class F>
  std::size_t consume_run(std::span<recv_request* const> reqs, F&& f);
  void cancel(send_request& r);
  void cancel(recv_request&) const noexcept {}
  [[nodiscard]] token progress_token() const noexcept;
  /// Blocks until progress may have happened or `deadline` passes; advances the virtual clock when
  /// this is the last running rank to block. \throws timeout_error when the world is deadlocked (see
  /// `world_options::deadlock_after`).
  void wait_progress(token t, deadline_t deadline) const;
  [[nodiscard]] bool peer_failed(int peer) const noexcept;
  [[nodiscard]] std::string peer_failure_reason(int peer) const;
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

/// N simulated ranks (the workers of a network) in one process. Create it from a topology, then `run`
/// a function on every rank, each on its own thread. The virtual clock and the network state
/// (background flows, caps) persist from one run to the next; messages and failure marks do not.
class world {
 public:
  /// A world over the workers of network `g`. \throws invalid_argument if `g` has no worker, its workers
  /// are not vertices 0..W-1 in rank order, a link is invalid, or the options or scenario are invalid.
  explicit world(const topology::network& g, world_options o = {}) : opt_(std::move(o)), router_(g) {
    n_ = router_.workers();
    if (n_ < 1) throw invalid_argument("transport::sim::world: the network has no worker");
    if (opt_.latency && (!(*opt_.latency >= 0) || !std::isfinite(*opt_.latency)))
      throw invalid_argument("transport::sim::world: latency " + std::to_string(*opt_.latency) +
                             " s must be finite and non-negative");
    if (!(opt_.start_time >= 0) || !std::isfinite(opt_.start_time))
      throw invalid_argument("transport::sim::world: start time " + std::to_string(opt_.start_time) +
                             " must be finite and non-negative");
    engine_ = std::make_unique<::dssync::sim::flow_engine>(router_.bandwidths(), router_.latencies(), 0.0);
    if (opt_.latency)
      for (::dssync::sim::edge_id e = 0; e < engine_->links(); ++e) engine_->set_latency(e, *opt_.latency);
    player_ = std::make_unique<::dssync::sim::scenario_player>(opt_.script, router_, *engine_);
    while (player_->next_time() <= opt_.start_time) {
      engine_->advance_to(std::max(engine_->now(), player_->next_time()));
      player_->apply_until(engine_->now());
    }
    engine_->advance_to(opt_.start_time);
    states_.reserve(static_cast<std::size_t>(n_));
    comms_.reserve(static_cast<std::size_t>(n_));
    for (int r = 0; r < n_; ++r) {
      states_.push_back(std::make_unique<detail::rank_state>());
      comms_.push_back(communicator(this, r));
    }
    inflight_.assign(static_cast<std::size_t>(n_) * static_cast<std::size_t>(n_), 0);
  }

  /// A world over `t.graph()`, for any topology model with a graph.
  template <class Topology>
    requires requires(const Topology& t) {
      { t.graph() } -> std::convertible_to<topology::network>;
    }
  explicit world(const Topology& t, world_options o = {}) : world(topology::network(t.graph()), std::move(o)) {}

  world(const world&) = delete;
  world& operator=(const world&) = delete;

  [[nodiscard]] int size() const noexcept { return n_; }
  /// The handle of rank `r`, for users that manage their own threads (see `advance`).
  [[nodiscard]] communicator& comm(int r) { return comms_.at(static_cast<std::size_t>(r)); }
  /// The options the world was built with.
  [[nodiscard]] const world_options& settings() const noexcept { return opt_; }
  /// The router over the world's network (links, labels, routes).
  [[nodiscard]] const ::dssync::sim::router& network() const noexcept { return router_; }

  /// The virtual clock, in seconds.
  [[nodiscard]] double now() const {
    std::lock_guard g(mtx_);
    return engine_->now();
  }

  /// Traffic through link `e` from the world's start to now (background flows included).
  /// \throws invalid_argument if `e` is out of range.
  [[nodiscard]] ::dssync::sim::link_counters counters(::dssync::sim::edge_id e) const {
    std::lock_guard g(mtx_);
    return engine_->counters(e);
  }
  /// Messages sent so far.
  [[nodiscard]] std::size_t messages() const {
    std::lock_guard g(mtx_);
    return messages_;
  }

  /// Outside `run`: applies the next pending event (a transmission end, an arrival, a scenario action or
  /// a timer) and returns true, or returns false if none is pending. For single-threaded use of
  /// `comm(r)`; inside `run` the ranks advance the clock themselves.
  bool advance() {
    std::lock_guard g(mtx_);
    return process_instant();
  }
  /// Outside `run`: applies every pending event; returns the virtual time then.
  double settle() {
    std::lock_guard g(mtx_);
    while (process_instant()) {
    }
    return engine_->now();
  }

  /// Runs `f(communicator&)` on every rank, each on its own thread, and joins them. A rank whose function
  /// ends (by return or exception) is marked finished, so peers still waiting on it fail fast.
  /// Returns one `exception_ptr` per rank (null where the rank succeeded).
  template <class F>
  std::vector<std::exception_ptr> run_collect(F&& f) {
    reset();
    {
      std::lock_guard g(mtx_);
      running_ = n_;
    }
    std::vector<std::exception_ptr> errors(static_cast<std::size_t>(n_));
    std::vector<std::thread> threads;
    threads.reserve(static_cast<std::size_t>(n_));
    for (int r = 0; r < n_; ++r)
      threads.emplace_back([this, r, &f, &errors] {
        try {
          f(comms_[static_cast<std::size_t>(r)]);
          mark_failed(r, "its worker function returned");
        } catch (const peer_failure& e) {
          errors[static_cast<std::size_t>(r)] = std::current_exception();
          const int root = e.peer() >= 0 && e.peer() < n_ ? failure_root(e.peer()) : -1;
          mark_failed(r, "its worker function threw after losing rank " + std::to_string(root), root);
        } catch (const injected_fault&) {
          errors[static_cast<std::size_t>(r)] = std::current_exception();
        } catch (...) {
          errors[static_cast<std::size_t>(r)] = std::current_exception();
          mark_failed(r, "its worker function threw");
        }
        finish(r);
      });
    for (auto& t : threads) t.join();
    {
      std::lock_guard g(mtx_);
      running_ = 0;
    }
    return errors;
  }

  /// Like `run_collect`, but rethrows the error of the lowest failing rank.
  template <class F>
  void run(F&& f) {
    for (auto& e : run_collect(std::forward<F>(f)))
      if (e) std::rethrow_exception(e);
  }

  /// Fault injection: rank `r` stops when it reaches step `step` of its next collective.
  void inject_fault(int r, std::size_t step) {
    check_rank(r);
    states_[static_cast<std::size_t>(r)]->fail_at_step.store(step);
  }

  /// Marks rank `r` failed now, with `why` in the peers' error messages. `root` is the rank whose failure
  /// caused this one (default: `r` itself).
  void mark_failed(int r, const std::string& why, int root = -1) {
    check_rank(r);
    std::lock_guard g(mtx_);
    auto& s = state(r);
    if (!s.failed.load()) {
      s.failure = why;
      s.root = root >= 0 && root < n_ ? root : r;
      s.failed.store(true, std::memory_order_release);
    }
    for (int p = 0; p < n_; ++p) wake(p);
  }

  [[nodiscard]] bool failed(int r) const { return states_.at(static_cast<std::size_t>(r))->failed.load(std::memory_order_acquire); }

  [[nodiscard]] std::string failure_reason(int r) const {
    const auto& s = *states_.at(static_cast<std::size_t>(r));
    if (!s.failed.load(std::memory_order_acquire)) return {};
    std::lock_guard g(mtx_);
    return s.failure;
  }

  [[nodiscard]] int failure_root(int r) const {
    const auto& s = *states_.at(static_cast<std::size_t>(r));
    if (!s.failed.load(std::memory_order_acquire)) return -1;
    std::lock_guard g(mtx_);
    return s.root;
  }

  /// Clears failure marks, pending messages (their flows leave the network) and call counters; keeps
  /// the clock, the scenario's state and the faults injected for the next run. `run_collect` calls it
  /// first. Do not call it while ranks run.
  void reset() {
    std::lock_guard g(mtx_);
    for (auto& [tag, m] : flights_)
      if (m->phase == detail::message::net::transmitting && engine_->active(m->flow)) engine_->remove_flow(m->flow);
    flights_.clear();
    conns_.clear();
    arrivals_ = {};
    timers_ = {};
    std::fill(inflight_.begin(), inflight_.end(), 0);
    for (auto& s : states_) {
      s->box.clear();
      s->failed.store(false);
      s->failure.clear();
      s->root = -1;
      s->blocked = false;
      s->looked = false;
    }
    blocked_ = 0;
    stall_since_.reset();
    deadlocked_ = false;
    deadlock_what_.clear();
    for (auto& c : comms_) c.calls_ = 0;
  }

 private:
  friend class communicator;
  using clock = std::chrono::steady_clock;
  using message = detail::message;
  using net = detail::message::net;
  static constexpr double inf = std::numeric_limits<double>::infinity();

  void check_rank(int r) const {
    if (r < 0 || r >= n_)
      throw invalid_argument("transport::sim::world: rank " + std::to_string(r) + " out of range for size " +
                             std::to_string(n_));
  }
  detail::rank_state& state(int r) { return *states_[static_cast<std::size_t>(r)]; }
  const detail::rank_state& state(int r) const { return *states_[static_cast<std::size_t>(r)]; }
  int& inflight(int src, int dst) {
    return inflight_[static_cast<std::size_t>(src) * static_cast<std::size_t>(n_) + static_cast<std::size_t>(dst)];
  }
  std::uint64_t conn_key(int src, int dst, std::uint32_t channel) const {
    return (static_cast<std::uint64_t>(src) * static_cast<std::uint64_t>(n_) + static_cast<std::uint64_t>(dst)) *
               0x1'0000'0000ull +
           channel;
  }

  // --- all below with mtx_ held ---

  /// Something rank `r` may wait for happened.
  void wake(int r) {
    auto& s = state(r);
    s.epoch.fetch_add(1, std::memory_order_release);
    if (s.blocked) {
      s.blocked = false;
      --blocked_;
      ++woken_;
    }
    stall_since_.reset();
    s.cv.notify_all();
  }

  /// Puts message `m` on the wire now.
  void transmit(const std::shared_ptr<message>& m) {
    const auto route = router_.route(m->src, m->dst, m->key.channel);
    m->phase = net::transmitting;
    m->flow = engine_->add_flow(route, static_cast<double>(m->size), m->tag);
  }

  void post(const std::shared_ptr<message>& m) {
    m->tag = next_tag_++;
    m->posted = engine_->now();
    flights_.emplace(m->tag, m);
    ++inflight(m->src, m->dst);
    ++messages_;
    if (!opt_.fifo_connections) {
      transmit(m);
      return;
    }
    m->conn = conn_key(m->src, m->dst, m->key.channel);
    auto& c = conns_[m->conn];
    if (c.busy) {
      m->phase = net::waiting;
      c.waiting.push_back(m);
    } else {
      c.busy = true;
      transmit(m);
    }
  }

  /// The connection of a message that left the wire: the next one goes.
  void next_on_connection(std::uint64_t key) {
    if (!opt_.fifo_connections) return;
    auto it = conns_.find(key);
    if (it == conns_.end()) return;
    auto& c = it->second;
    c.busy = false;
    if (!c.waiting.empty()) {
      auto m = std::move(c.waiting.front());
      c.waiting.pop_front();
      c.busy = true;
      transmit(m);
    } else {
      conns_.erase(it);
    }
  }

  /// Withdraws message `m` from the network (it was cancelled before consumption).
  void withdraw(const std::shared_ptr<message>& m) {
    switch (m->phase) {
      case net::waiting: {
        auto& q = conns_[m->conn].waiting;
        q.erase(std::remove(q.begin(), q.end(), m), q.end());
        break;
      }
      case net::transmitting:
        if (engine_->active(m->flow)) engine_->remove_flow(m->flow);
        next_on_connection(m->conn);
        break;
      case net::propagating:
      case net::arrived:
      case net::withdrawn: break;
    }
    if (m->phase != net::arrived && m->phase != net::withdrawn) --inflight(m->src, m->dst);
    m->phase = net::withdrawn;
    flights_.erase(m->tag);
  }

  /// Applies the events of the next instant. Returns false if nothing is pending.
  bool process_instant() {
    const double te = engine_->next_completion();
    const double ts = player_->next_time();
    const double ta = arrivals_.empty() ? inf : arrivals_.top().time;
    const double tt = timers_.empty() ? inf : timers_.top().time;
    const double t = std::min({te, ts, ta, tt});
    if (!std::isfinite(t)) return false;
    if (te <= t) {
      const auto batch = engine_->advance(te);
      done_.assign(batch.begin(), batch.end());  // the span dies with the next engine call
      for (const auto& c : done_) {
        if (c.tag & ::dssync::sim::scenario_player::background_tag) continue;
        auto it = flights_.find(c.tag);
        if (it == flights_.end()) continue;
        auto m = it->second;
        m->phase = net::propagating;
        m->arrival = c.arrival;
        arrivals_.push({c.arrival, seq_++, c.tag});
        next_on_connection(m->conn);
      }
      return true;
    }
    engine_->advance_to(t);
    if (ts <= t) {
      player_->apply_until(t);
      return true;
    }
    const double until = t + ::dssync::sim::time_tolerance(t);
    while (!arrivals_.empty() && arrivals_.top().time <= until) {
      const auto a = arrivals_.top();
      arrivals_.pop();
      auto it = flights_.find(a.id);
      if (it == flights_.end()) continue;  // cancelled on the way
      auto m = it->second;
      flights_.erase(it);
      m->phase = net::arrived;
      --inflight(m->src, m->dst);
      wake(m->dst);
    }
    while (!timers_.empty() && timers_.top().time <= until) {
      const auto a = timers_.top();
      timers_.pop();
      wake(static_cast<int>(a.id));
    }
    return true;
  }

  /// The last running rank blocked: advance virtual time until some blocked rank is woken, or note a
  /// stall when nothing is pending.
  void drive() {
    const std::uint64_t before = woken_;
    while (woken_ == before) {
      if (!process_instant()) {
        if (!stall_since_) {
          stall_since_ = clock::now();
          // Blocked ranks recompute how long they wait.
          for (auto& s : states_)
            if (s->blocked) s->cv.notify_all();
        }
        return;
      }
    }
  }

  /// Rank `r`'s thread ended.
  void finish(int) {
    std::lock_guard g(mtx_);
    --running_;
    if (running_ > 0 && blocked_ >= running_) drive();
  }

  /// What every rank waits for, for a deadlock report.
  std::string describe_waits() const {
    std::ostringstream os;
    for (int r = 0; r < n_; ++r) {
      const auto& s = state(r);
      os << "; rank " << r;
      if (s.failed.load()) {
        os << " has finished or failed (" << s.failure << ")";
        continue;
      }
      if (!s.blocked) {
        os << " is not waiting";
        continue;
      }
      os << " waits";
      if (s.looked) {
        os << ", last for the message (" << detail::key_text(s.looked_key) << ") from rank " << s.looked_peer;
        bool sent = false;
        auto it = s.box.find(detail::box_key{s.looked_peer, s.looked_key});
        if (it != s.box.end() && !it->second.empty()) sent = true;
        os << (sent ? ", which is stuck in the network (a link or NIC at zero bandwidth?)" : ", which was never sent");
      }
      std::size_t unconsumed = 0;
      for (int p = 0; p < n_; ++p) {
        if (p == r) continue;
        for (const auto& [k, q] : state(p).box)
          if (k.src == r) unconsumed += q.size();
      }
      if (unconsumed > 0) os << "; " << unconsumed << " of its sends are not consumed";
    }
    return os.str();
  }

  world_options opt_;
  ::dssync::sim::router router_;
  std::unique_ptr<::dssync::sim::flow_engine> engine_;
  std::unique_ptr<::dssync::sim::scenario_player> player_;
  int n_ = 0;
  std::vector<std::unique_ptr<detail::rank_state>> states_;
  std::vector<communicator> comms_;

  mutable std::mutex mtx_;
  int running_ = 0;  // ranks whose thread runs in run_collect (0 outside: free mode)
  int blocked_ = 0;  // ranks blocked in wait_progress
  std::uint64_t woken_ = 0;
  std::optional<clock::time_point> stall_since_;
  bool deadlocked_ = false;  // sticky until reset: every wait raises
  std::string deadlock_what_;
  std::unordered_map<std::uint64_t, std::shared_ptr<message>> flights_;  // by tag, until arrival
  std::unordered_map<std::uint64_t, detail::connection> conns_;
  std::priority_queue<detail::timed, std::vector<detail::timed>, std::greater<>> arrivals_, timers_;
  std::vector<int> inflight_;
  std::vector<::dssync::sim::completion> done_;
  std::uint64_t next_tag_ = 1, seq_ = 0;
  std::size_t messages_ = 0;
};

inline int communicator::size() const noexcept { return world_->size(); }

inline double communicator::now() const { return world_->now(); }

inline void communicator::sleep_until(double t) {
  if (!std::isfinite(t)) throw invalid_argument("transport::sim: sleep_until(" + std::to_string(t) + ") needs a finite time");
  {
    std::lock_guard g(world_->mtx_);
    if (world_->engine_->now() >= t) return;
    world_->timers_.push({t, world_->seq_++, static_cast<std::uint64_t>(rank_)});
  }
  while (now() < t) {
    const token tk = progress_token();
    if (now() >= t) break;
    wait_progress(tk, std::chrono::steady_clock::now() + std::chrono::hours(1));
  }
}

inline void communicator::sleep_for(double seconds) {
  if (!(seconds >= 0)) throw invalid_argument("transport::sim: sleep_for(" + std::to_string(seconds) + ") needs a non-negative time");
  sleep_until(now() + seconds);
}

inline communicator::send_request communicator::isend(int peer, message_key key, std::span<const std::byte> bytes) {
  world_->check_rank(peer);
  auto m = std::make_shared<detail::message>();
  m->data = bytes.data();
  m->size = bytes.size();
  m->src = rank_;
  m->dst = peer;
  m->key = key;
  std::lock_guard g(world_->mtx_);
  world_->state(peer).box[detail::box_key{rank_, key}].push_back(m);
  world_->post(m);
  return {std::move(m), peer, key};
}

template <class F>
bool communicator::try_consume(recv_request& r, F&& f) {
  std::shared_ptr<detail::message> op;
  {
    std::lock_guard g(world_->mtx_);
    auto& me = world_->state(rank_);
    auto it = me.box.find(detail::box_key{r.peer, r.key});
    if (it == me.box.end() || it->second.empty() || it->second.front()->phase != detail::message::net::arrived) {
      me.looked = true;
      me.looked_peer = r.peer;
      me.looked_key = r.key;
      return false;
    }
    me.looked = false;
    op = std::move(it->second.front());
    it->second.pop_front();
    if (it->second.empty()) me.box.erase(it);
    op->state.store(detail::message::consuming, std::memory_order_relaxed);
  }
  struct finish {
    world* w;
    detail::message* op;
    int peer;
    ~finish() {
      std::lock_guard g(w->mtx_);
      op->state.store(detail::message::done, std::memory_order_release);
      w->wake(peer);
    }
  } fin{world_, op.get(), r.peer};
  if (op->size != r.bytes)
    throw malformed_payload("transport::sim: rank " + std::to_string(rank_) + " expected " + std::to_string(r.bytes) +
                                " bytes from rank " + std::to_string(r.peer) + " (" + detail::key_text(r.key) +
                                ") but the message has " + std::to_string(op->size),
                            rank_);
  f(std::span<const std::byte>(op->data, op->size));
  return true;
}

template <class F>
std::size_t communicator::consume_run(std::span<recv_request* const> reqs, F&& f) {
  thread_local std::vector<std::shared_ptr<detail::message>> taken;
  thread_local std::vector<std::span<const std::byte>> spans;
  taken.clear();
  spans.clear();
  {
    std::lock_guard g(world_->mtx_);
    auto& me = world_->state(rank_);
    for (recv_request* r : reqs) {
      auto it = me.box.find(detail::box_key{r->peer, r->key});
      if (it == me.box.end() || it->second.empty() || it->second.front()->phase != detail::message::net::arrived) {
        if (taken.empty()) {
          me.looked = true;
          me.looked_peer = r->peer;
          me.looked_key = r->key;
        }
        break;
      }
      me.looked = false;
      taken.push_back(std::move(it->second.front()));
      it->second.pop_front();
      if (it->second.empty()) me.box.erase(it);
      taken.back()->state.store(detail::message::consuming, std::memory_order_relaxed);
    }
  }
  const std::size_t m = taken.size();
  if (m == 0) return 0;
  struct finish {
    world* w;
    std::span<recv_request* const> reqs;
    ~finish() {
      std::lock_guard g(w->mtx_);
      for (std::size_t i = 0; i < taken.size(); ++i) {
        taken[i]->state.store(detail::message::done, std::memory_order_release);
        w->wake(reqs[i]->peer);
      }
      taken.clear();
    }
  } fin{world_, reqs};
  for (std::size_t i = 0; i < m; ++i) {
    const recv_request& r = *reqs[i];
    if (taken[i]->size != r.bytes)
      throw malformed_payload("transport::sim: rank " + std::to_string(rank_) + " expected " +
                                  std::to_string(r.bytes) + " bytes from rank " + std::to_string(r.peer) + " (" +
                                  detail::key_text(r.key) + ") but the message has " + std::to_string(taken[i]->size),
                              rank_);
    spans.emplace_back(taken[i]->data, taken[i]->size);
  }
  f(std::span<const std::span<const std::byte>>(spans.data(), m));
  return m;
}

inline void communicator::cancel(send_request& r) {
  if (!r.op) return;
  {
    std::lock_guard g(world_->mtx_);
    auto& dst = world_->state(r.peer);
    auto it = dst.box.find(detail::box_key{rank_, r.key});
    if (it != dst.box.end()) {
      auto& q = it->second;
      for (auto qi = q.begin(); qi != q.end(); ++qi)
        if (qi->get() == r.op.get()) {
          q.erase(qi);
          world_->withdraw(r.op);
          r.op->state.store(detail::message::cancelled, std::memory_order_release);
          break;
        }
      if (q.empty()) dst.box.erase(it);
    }
  }
  // A receiver that already took the message finishes reading before we return.
  while (r.op->state.load(std::memory_order_acquire) == detail::message::consuming) std::this_thread::yield();
  r.op.reset();
}

inline communicator::token communicator::progress_token() const noexcept {
  return world_->state(rank_).epoch.load(std::memory_order_acquire);
}

inline void communicator::wait_progress(token t, deadline_t deadline) const {
  world& w = *world_;
  std::unique_lock lk(w.mtx_);
  auto& s = w.state(rank_);
  if (w.deadlocked_)
    throw timeout_error(w.deadlock_what_ + " (seen by rank " + std::to_string(rank_) + ")", rank_, -1);
  if (s.epoch.load(std::memory_order_acquire) != t) return;
  if (std::chrono::steady_clock::now() >= deadline) return;
  s.blocked = true;
  ++w.blocked_;
  struct unblock {
    world& w;
    detail::rank_state& s;
    ~unblock() {
      if (s.blocked) {
        s.blocked = false;
        --w.blocked_;
      }
    }
  } guard{w, s};
  if (w.blocked_ >= w.running_) w.drive();
  auto deadlock = [&] {
    return timeout_error(w.deadlock_what_ + " (seen by rank " + std::to_string(rank_) + ")", rank_,
                         s.looked ? s.looked_peer : -1);
  };
  while (s.epoch.load(std::memory_order_acquire) == t) {
    if (w.deadlocked_) throw deadlock();
    auto until = deadline;
    const bool watch = w.stall_since_ && w.opt_.deadlock_after.count() > 0;
    if (watch) until = std::min(until, *w.stall_since_ + w.opt_.deadlock_after);
    s.cv.wait_until(lk, until);
    if (s.epoch.load(std::memory_order_acquire) != t) break;
    const auto now = std::chrono::steady_clock::now();
    if (!w.deadlocked_ && w.stall_since_ && w.opt_.deadlock_after.count() > 0 &&
        now >= *w.stall_since_ + w.opt_.deadlock_after) {
      std::ostringstream os;
      os << "transport::sim: deadlock at virtual time " << w.engine_->now()
         << " s: every running rank waits and no message, scenario action or timer is pending";
      w.deadlock_what_ = os.str() + w.describe_waits();
      w.deadlocked_ = true;
      for (auto& o : w.states_) o->cv.notify_all();
      throw deadlock();
    }
    if (now >= deadline) break;
  }
}

inline bool communicator::peer_failed(int peer) const noexcept {
  if (!world_->failed(peer)) return false;
  std::lock_guard g(world_->mtx_);
  return world_->inflight(peer, rank_) == 0;
}

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

}  // namespace dssync::transport::sim
