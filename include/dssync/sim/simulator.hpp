#pragma once
/// \file
/// `sim::simulate`: plays a schedule on a simulated network, message by message, and reports when every
/// rank finishes, how busy each link was, and (optionally) a timeline.

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <queue>
#include <span>
#include <sstream>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "dssync/core/error.hpp"
#include "dssync/core/schedule.hpp"
#include "dssync/core/verifier.hpp"
#include "dssync/sim/flow_engine.hpp"
#include "dssync/sim/routing.hpp"
#include "dssync/sim/scenario.hpp"
#include "dssync/sim/timeline.hpp"
#include "dssync/topology/network.hpp"

namespace dssync::sim {

/// How `simulate` models a run.
struct sim_options {
  /// Bytes per element of the schedule's ranges (4 for float).
  double bytes_per_element = 4;
  /// When set, every link's latency is this many seconds instead of the network's (the CLI's --latency).
  std::optional<double> latency;
  /// Timed changes to the network: background flows, NIC caps, link bandwidths. Their times are on the
  /// same clock as `start_time`.
  scenario script;
  /// Virtual time at which every rank starts the schedule. Scenario actions before it are applied first,
  /// so background traffic can be running when the collective starts.
  double start_time = 0;
  /// Record a `timeline` (one slice per step, one record per message) in the result.
  bool record_timeline = false;
  /// Local reduction rate in bytes/s: a recv-reduce of B bytes keeps its channel busy B/rate after the
  /// message is consumed. 0 (the default) makes reduction free.
  double reduce_bytes_per_s = 0;
  /// Codec rate in bytes/s: an encode, decode or decode-add step keeps its channel busy for the bytes it
  /// reads (elements, or its slot's bound) over this rate. 0 (the default) makes codec steps free. The
  /// other local steps (copy, scale; reduce, at `reduce_bytes_per_s`) are charged the same way.
  double codec_bytes_per_s = 0;
  /// ECMP: false (default) hashes (source, destination, channel), so a channel's messages between two
  /// ranks share one path, like one connection; true hashes every message separately (packet spraying
  /// over up to 64 path choices per channel).
  bool spread_messages = false;
  /// Lockstep: a step of stage s (`step::stage`) starts only when every step of every earlier stage, on
  /// every rank and channel, is done (sends consumed). This is how papers count a staged algorithm stage
  /// by stage (BML's 16·T_C); without it, ranks run ahead into the next stage as data allows.
  bool lockstep = false;
  /// A name for the timeline ("ring on racks(4x8)"); the schedule's policy when empty.
  std::string name;
};

/// One directed link's traffic during the run, from `sim_result::start` to `sim_result::finish`.
struct link_usage {
  edge_id edge = 0;
  std::size_t from = 0, to = 0;  ///< vertices
  std::string label;             ///< "w0->tor0"
  double capacity = 0;           ///< bytes/s at the end of the run
  double latency = 0;            ///< seconds
  double bytes = 0;              ///< bytes carried, background flows included
  double busy_time = 0;          ///< seconds with traffic
  /// bytes / (integral of the capacity over the run): bytes / (capacity · completion time) when the
  /// capacity does not change. 0 when the link had no capacity.
  double utilization = 0;
};

/// What `simulate` reports.
struct sim_result {
  double start = 0;            ///< virtual time the schedule started (sim_options::start_time)
  double finish = 0;           ///< virtual time the last rank finished
  double completion_time = 0;  ///< finish - start
  /// Virtual time each rank finished (rule 5: all its channels at their end, all its sends consumed).
  std::vector<double> rank_finish;
  std::vector<link_usage> links;   ///< every directed link, by edge id
  std::size_t flows = 0;            ///< messages (flows) of the schedule
  std::size_t background_flows = 0; ///< background flows started by the scenario
  std::size_t events = 0;           ///< events processed (message arrivals, wake-ups, completion batches, actions)
  std::size_t recomputations = 0;   ///< max-min recomputations (one per touched component per instant)
  std::size_t rate_updates = 0;     ///< flow rate changes
  timeline trace;                   ///< when sim_options::record_timeline

  /// The busiest link by utilization (nullptr when there are no links).
  [[nodiscard]] const link_usage* busiest() const noexcept {
    const link_usage* b = nullptr;
    for (const auto& l : links)
      if (b == nullptr || l.utilization > b->utilization) b = &l;
    return b;
  }
};

namespace detail {

/// The sends of one rank that its receivers have not consumed yet, searchable by overlap (rule 3).
/// A plain vector while small; an offset-ordered multimap once many sends are outstanding (direct
/// policies post N-1 sends before their first receive).
class outstanding_sends {
 public:
  void add(const range& r, std::uint32_t msg) {
    if (r.empty()) return;
    max_len_ = std::max(max_len_, r.length);
    if (!big_ && small_.size() >= 32) {
      big_ = true;
      for (const auto& [rg, m] : small_) map_.emplace(rg.offset, std::pair{rg, m});
      small_.clear();
    }
    if (big_) map_.emplace(r.offset, std::pair{r, msg});
    else small_.emplace_back(r, msg);
  }
  void remove(const range& r, std::uint32_t msg) {
    if (r.empty()) return;
    if (!big_) {
      for (std::size_t i = 0; i < small_.size(); ++i)
        if (small_[i].second == msg) {
          small_[i] = small_.back();
          small_.pop_back();
          return;
        }
      return;
    }
    for (auto [it, end] = map_.equal_range(r.offset); it != end; ++it)
      if (it->second.second == msg) {
        map_.erase(it);
        return;
      }
  }
  /// A message whose range overlaps `r`, if any.
  [[nodiscard]] std::optional<std::uint32_t> overlapping(const range& r) const {
    if (r.empty()) return std::nullopt;
    if (!big_) {
      for (const auto& [rg, m] : small_)
        if (rg.overlaps(r)) return m;
      return std::nullopt;
    }
    const std::size_t lo = r.offset >= max_len_ ? r.offset - max_len_ + 1 : 0;
    for (auto it = map_.lower_bound(lo); it != map_.end() && it->first < r.end(); ++it)
      if (it->second.first.overlaps(r)) return it->second.second;
    return std::nullopt;
  }

 private:
  std::vector<std::pair<range, std::uint32_t>> small_;
  std::multimap<std::size_t, std::pair<range, std::uint32_t>> map_;
  std::size_t max_len_ = 0;
  bool big_ = false;
};

/// Plays one schedule; see `simulate`.
class schedule_player {
 public:
  schedule_player(const schedule& s, router& r, const sim_options& o) : s_(s), router_(r), opt_(o) {}

  sim_result run() {
    validate();
    flow_engine engine(router_.bandwidths(), router_.latencies(), 0.0);
    if (opt_.latency)
      for (edge_id e = 0; e < engine.links(); ++e) engine.set_latency(e, *opt_.latency);
    engine_ = &engine;
    scenario_player player(opt_.script, router_, engine);
    setup();

    // Scenario actions before the start: only background flows run then, and they never complete.
    const double t0 = opt_.start_time;
    while (player.next_time() < t0) {
      engine.advance_to(player.next_time());
      player.apply_until(engine.now());
      ++result_.events;
    }
    engine.advance_to(t0);
    std::vector<link_counters> at_start(engine.links());
    for (edge_id e = 0; e < engine.links(); ++e) at_start[e] = engine.counters(e);
    for (std::uint32_t c = 0; c < chans_.size(); ++c) push(t0, ev_wake, c);

    while (unfinished_channels_ > 0 || unconsumed_ > 0) {
      const double te = engine.next_completion();
      const double ta = player.next_time();
      const double tq = queue_.empty() ? flow_engine::unlimited : queue_.top().time;
      const double t = std::min({te, ta, tq});
      if (!std::isfinite(t)) stuck();
      if (te <= t) {
        const auto span = engine.advance(te);
        done_.assign(span.begin(), span.end());  // a copy: transmitted() adds flows
        for (const completion& c : done_) {
          msgs_[c.tag].transmitted = c.finish;
          push(c.arrival, ev_arrival, static_cast<std::uint32_t>(c.tag));
          transmitted(static_cast<std::uint32_t>(c.tag));
        }
        ++result_.events;
        continue;
      }
      engine.advance_to(t);
      if (ta <= t) {
        player.apply_until(t);
        ++result_.events;
        continue;
      }
      // Every queued event of this instant, in one batch: the engine recomputes rates once afterwards.
      const double until = t + time_tolerance(t);
      while (!queue_.empty() && queue_.top().time <= until) {
        const event ev = queue_.top();
        queue_.pop();
        ++result_.events;
        now_ = std::max(t, engine.now());
        switch (ev.kind) {
          case ev_wake: run_channel(ev.index); break;
          case ev_computed: finish_receive(ev.index); break;
          case ev_arrival: arrive(ev.index); break;
        }
      }
    }

    // Results.
    double finish = t0;
    for (double f : rank_finish_) finish = std::max(finish, f);
    result_.start = t0;
    result_.finish = finish;
    result_.completion_time = finish - t0;
    result_.rank_finish = rank_finish_;
    engine.advance_to(std::max(engine.now(), finish));
    result_.links.resize(engine.links());
    for (edge_id e = 0; e < engine.links(); ++e) {
      const link_counters c = engine.counters(e);
      auto& l = result_.links[e];
      l.edge = e;
      l.from = router_.source(e);
      l.to = router_.target(e);
      l.label = router_.edge_label(e);
      l.capacity = engine.capacity(e);
      l.latency = engine.latency(e);
      l.bytes = c.bytes - at_start[e].bytes;
      l.busy_time = c.busy_time - at_start[e].busy_time;
      const double cap = c.capacity_time - at_start[e].capacity_time;
      l.utilization = cap > 0 ? l.bytes / cap : 0;
    }
    result_.background_flows = player.started();
    result_.recomputations = engine.recomputations();
    result_.rate_updates = engine.rate_updates();
    engine_ = nullptr;
    return std::move(result_);
  }

 private:
  static constexpr std::uint32_t none = std::numeric_limits<std::uint32_t>::max();

  enum ev_kind : std::uint8_t { ev_wake, ev_computed, ev_arrival };
  struct event {
    double time;
    std::uint64_t seq;
    std::uint32_t index;
    ev_kind kind;
    friend bool operator>(const event& a, const event& b) noexcept {
      return a.time != b.time ? a.time > b.time : a.seq > b.seq;
    }
  };

  enum class wait : std::uint8_t { none, message, arrival, war, compute, stage, done };

  struct chan {
    const std::vector<step>* steps = nullptr;
    std::uint32_t pc = 0;
    int rank = 0;
    std::uint32_t channel = 0;
    topology::link_classes links = 0;  // the channel's route hint
    wait state = wait::none;
    double step_begin = 0;
    std::uint32_t busy_msg = none;  // message being reduced (wait::compute)
    // One-entry caches: consecutive steps mostly talk to the same peers.
    int send_peer = -1, recv_peer = -1, route_peer = -1;
    std::uint32_t send_pair = 0, recv_pair = 0;
    std::span<const edge_id> route;
  };
  struct pair_state {
    std::uint32_t head = none, tail = none;  // FIFO of posted, unreceived messages
    std::uint32_t waiter = none;             // receiving channel waiting for a message to be posted
    // Messages of one channel to one peer leave one after another, as on one connection: the one on
    // the wire, and the FIFO of posted ones waiting for it.
    bool transmitting = false;
    std::uint32_t tx_head = none, tx_tail = none;
  };
  struct message {
    std::uint32_t pair = 0, next = none, waiter = none, tx_next = none;
    std::span<const edge_id> route;
    std::uint32_t src_chan = 0, src_step = 0;
    int src = 0, dst = 0;
    range data{};
    double bytes = 0, post = 0, transmitted = 0, arrival = 0;
    bool arrived = false;
  };

  void validate() const {
    const int n = s_.world_size;
    if (n <= 0) throw invalid_argument("sim::simulate: world size " + std::to_string(n) + " is not positive");
    if (static_cast<int>(s_.ranks.size()) != n)
      throw invalid_argument("sim::simulate: schedule " + s_.policy + " has plans for " + std::to_string(s_.ranks.size()) +
                             " ranks but world size " + std::to_string(n));
    if (s_.hosts.empty()) {
      if (router_.workers() < n)
        throw invalid_argument("sim::simulate: schedule " + s_.policy + " has " + std::to_string(n) +
                               " ranks but the network has " + std::to_string(router_.workers()) + " workers");
    } else {
      if (static_cast<int>(s_.hosts.size()) != n)
        throw invalid_argument("sim::simulate: schedule " + s_.policy + " places " + std::to_string(s_.hosts.size()) +
                               " ranks on hosts but has " + std::to_string(n) + " ranks");
      std::vector<char> used(static_cast<std::size_t>(router_.workers()), 0);
      for (int r = 0; r < n; ++r) {
        const int h = s_.hosts[static_cast<std::size_t>(r)];
        if (h < 0 || h >= router_.workers())
          throw invalid_argument("sim::simulate: schedule " + s_.policy + " places rank " + std::to_string(r) +
                                 " on host " + std::to_string(h) + " but the network has " +
                                 std::to_string(router_.workers()) + " workers");
        if (used[static_cast<std::size_t>(h)]++)
          throw invalid_argument("sim::simulate: schedule " + s_.policy + " places two ranks on host " +
                                 std::to_string(h));
      }
    }
    if (!(opt_.bytes_per_element >= 0) || !std::isfinite(opt_.bytes_per_element))
      throw invalid_argument("sim::simulate: bytes per element " + std::to_string(opt_.bytes_per_element) +
                             " must be finite and non-negative");
    if (opt_.latency && (!(*opt_.latency >= 0) || !std::isfinite(*opt_.latency)))
      throw invalid_argument("sim::simulate: latency " + std::to_string(*opt_.latency) + " s must be finite and non-negative");
    if (!(opt_.start_time >= 0) || !std::isfinite(opt_.start_time))
      throw invalid_argument("sim::simulate: start time " + std::to_string(opt_.start_time) + " must be finite and non-negative");
    if (!(opt_.codec_bytes_per_s >= 0))
      throw invalid_argument("sim::simulate: codec rate " + std::to_string(opt_.codec_bytes_per_s) + " must be non-negative");
    if (!(opt_.reduce_bytes_per_s >= 0))
      throw invalid_argument("sim::simulate: reduce rate " + std::to_string(opt_.reduce_bytes_per_s) + " must be non-negative");
    for (int r = 0; r < n; ++r) {
      const auto& plan = s_.ranks[static_cast<std::size_t>(r)];
      for (std::size_t c = 0; c < plan.channels.size(); ++c)
        for (std::size_t i = 0; i < plan.channels[c].steps.size(); ++i) {
          const step& st = plan.channels[c].steps[i];
          if (auto why = dssync::detail::structure_error(s_, st); !why.empty())
            throw invalid_argument("sim::simulate: " + dssync::detail::describe(r, c, i, st) + ": " + why);
          if (!st.is_local() && (st.peer < 0 || st.peer >= n || st.peer == r))
            throw invalid_argument("sim::simulate: " + dssync::detail::describe(r, c, i, st) + ": peer " +
                                   std::to_string(st.peer) + " is invalid");
        }
    }
  }

  void setup() {
    const int n = s_.world_size;
    rank_finish_.assign(static_cast<std::size_t>(n), opt_.start_time);
    sends_.resize(static_cast<std::size_t>(n));
    war_waiters_.resize(static_cast<std::size_t>(n));
    unconsumed_of_.assign(static_cast<std::size_t>(n), 0);
    if (opt_.record_timeline) {
      result_.trace.name = opt_.name.empty() ? s_.policy : opt_.name;
      result_.trace.world_size = n;
      result_.trace.channels.resize(static_cast<std::size_t>(n));
    }
    for (int r = 0; r < n; ++r) {
      const auto& plan = s_.ranks[static_cast<std::size_t>(r)];
      if (opt_.record_timeline) result_.trace.channels[static_cast<std::size_t>(r)] = static_cast<std::uint32_t>(plan.channels.size());
      for (std::size_t c = 0; c < plan.channels.size(); ++c) {
        chan ch;
        ch.steps = &plan.channels[c].steps;
        ch.rank = r;
        ch.channel = static_cast<std::uint32_t>(c);
        ch.links = plan.channels[c].links;
        ch.step_begin = opt_.start_time;
        chans_.push_back(ch);
      }
    }
    unfinished_channels_ = chans_.size();
    pair_index_.reserve(chans_.size() * 2);
    if (opt_.lockstep) {
      for (const auto& ch : chans_)
        for (const auto& st : *ch.steps) {
          if (st.stage >= stage_pending_.size()) stage_pending_.resize(st.stage + 1, 0);
          ++stage_pending_[st.stage];
        }
      advance_stage();
    }
  }

  void push(double t, ev_kind k, std::uint32_t index) { queue_.push({t, seq_++, index, k}); }

  /// The FIFO of messages from `src` to `dst` on channel `c`.
  std::uint32_t pair_of(int src, int dst, std::uint32_t c) {
    const std::uint64_t n = static_cast<std::uint64_t>(s_.world_size);
    const std::uint64_t key = (static_cast<std::uint64_t>(c) * n + static_cast<std::uint64_t>(src)) * n +
                              static_cast<std::uint64_t>(dst);
    auto [it, inserted] = pair_index_.try_emplace(key, static_cast<std::uint32_t>(pairs_.size()));
    if (inserted) pairs_.emplace_back();
    return it->second;
  }

  std::uint32_t new_message() {
    if (!free_msgs_.empty()) {
      const std::uint32_t m = free_msgs_.back();
      free_msgs_.pop_back();
      msgs_[m] = message{};
      return m;
    }
    msgs_.emplace_back();
    return static_cast<std::uint32_t>(msgs_.size() - 1);
  }

  void record_slice(const chan& ch, const step& st, double end) {
    if (!opt_.record_timeline) return;
    result_.trace.slices.push_back({ch.rank, ch.channel, ch.pc, st.kind, st.peer, st.data, bytes_of(st), ch.step_begin, end});
  }

  /// The bytes step `st` moves or, for a local step, reads.
  [[nodiscard]] double bytes_of(const step& st) const {
    if (st.variable) return static_cast<double>(st.expected_bytes());
    if (st.is_local()) {
      const range& r = st.kind == step_kind::scale ? st.data : st.src;
      const std::uint8_t b = st.kind == step_kind::scale ? st.buf : st.src_buf;
      return static_cast<double>(r.length) * (s_.is_byte_buffer(b) ? 1.0 : opt_.bytes_per_element);
    }
    return static_cast<double>(st.data.length) * opt_.bytes_per_element;
  }

  /// How long local step `st` keeps its channel busy.
  [[nodiscard]] double local_seconds(const step& st) const {
    const double rate = uses_codec(st.kind) ? opt_.codec_bytes_per_s
                        : st.kind == step_kind::reduce ? opt_.reduce_bytes_per_s
                                                      : 0.0;
    return rate > 0 ? bytes_of(st) / rate : 0.0;
  }

  /// Local step `st` of channel `ch` is done.
  void finish_local(chan& ch, const step& st) {
    record_slice(ch, st, now_);
    ++ch.pc;
    ch.step_begin = now_;
    if (opt_.lockstep) {
      --stage_pending_[st.stage];
      advance_stage();
    }
  }

  /// Runs channel `ci` from its current step as far as it can go at the current time.
  void run_channel(std::uint32_t ci) {
    chan& ch = chans_[ci];
    if (ch.state == wait::compute || ch.state == wait::done) return;
    ch.state = wait::none;
    const auto& steps = *ch.steps;
    while (ch.pc < steps.size()) {
      const step& st = steps[ch.pc];
      if (opt_.lockstep && st.stage > stage_) {
        stage_waiters_.push_back(ci);
        ch.state = wait::stage;
        return;
      }
      if (st.is_local()) {
        if (sends_[static_cast<std::size_t>(ch.rank)].overlapping(placed(st.buf, st.data))) {  // rule 3
          war_waiters_[static_cast<std::size_t>(ch.rank)].push_back(ci);
          ch.state = wait::war;
          return;
        }
        if (const double t = local_seconds(st); t > 0) {
          ch.state = wait::compute;
          ch.busy_msg = none;
          push(now_ + t, ev_computed, ci);
          return;
        }
        finish_local(ch, st);
        continue;
      }
      if (st.is_send()) {
        post(ch, st);
        record_slice(ch, st, now_);
        ++ch.pc;
        ch.step_begin = now_;
        continue;
      }
      if (ch.recv_peer != st.peer) {
        ch.recv_peer = st.peer;
        ch.recv_pair = pair_of(st.peer, ch.rank, ch.channel);
      }
      pair_state& p = pairs_[ch.recv_pair];
      if (p.head == none) {
        p.waiter = ci;
        ch.state = wait::message;
        return;
      }
      message& m = msgs_[p.head];
      if (!m.arrived) {
        m.waiter = ci;
        ch.state = wait::arrival;
        return;
      }
      if (sends_[static_cast<std::size_t>(ch.rank)].overlapping(placed(st.buf, st.data))) {  // rule 3
        war_waiters_[static_cast<std::size_t>(ch.rank)].push_back(ci);
        ch.state = wait::war;
        return;
      }
      if (m.data.length != st.data.length)
        throw invalid_argument(
            "sim::simulate: " + dssync::detail::describe(ch.rank, ch.channel, ch.pc, st) + " receives the message of " +
            dssync::detail::describe(m.src, m.src_chan, m.src_step,
                                     s_.ranks[static_cast<std::size_t>(m.src)].channels[m.src_chan].steps[m.src_step]) +
            ", but the lengths differ (" + std::to_string(st.data.length) + " vs " + std::to_string(m.data.length) + ")");
      const std::uint32_t mi = p.head;
      p.head = m.next;
      if (p.head == none) p.tail = none;
      const double reduce_s = st.kind == step_kind::recv_reduce && opt_.reduce_bytes_per_s > 0
                                  ? m.bytes / opt_.reduce_bytes_per_s
                                  : 0.0;
      if (reduce_s > 0) {
        ch.state = wait::compute;
        ch.busy_msg = mi;
        push(now_ + reduce_s, ev_computed, ci);
        return;
      }
      consume(mi, ch, st);
    }
    ch.state = wait::done;
    --unfinished_channels_;
    auto& f = rank_finish_[static_cast<std::size_t>(ch.rank)];
    f = std::max(f, now_);
  }

  /// The reduction of channel `ci`'s message is done: consume it and go on.
  void finish_receive(std::uint32_t ci) {
    chan& ch = chans_[ci];
    if (ch.state != wait::compute) return;
    const std::uint32_t mi = ch.busy_msg;
    ch.busy_msg = none;
    ch.state = wait::none;
    if (mi == none) finish_local(ch, (*ch.steps)[ch.pc]);  // a local step's compute
    else consume(mi, ch, (*ch.steps)[ch.pc]);
    run_channel(ci);
  }

  /// Channel `ch` has received message `mi` with step `st`: the sender's send is consumed now.
  void consume(std::uint32_t mi, chan& ch, const step& st) {
    message& m = msgs_[mi];
    const auto src = static_cast<std::size_t>(m.src);
    sends_[src].remove(placed(s_.ranks[src].channels[m.src_chan].steps[m.src_step].buf, m.data), mi);
    --unconsumed_of_[src];
    --unconsumed_;
    rank_finish_[src] = std::max(rank_finish_[src], now_);
    if (opt_.record_timeline)
      result_.trace.messages.push_back(
          {m.src, m.dst, m.src_chan, m.src_step, m.data, m.bytes, m.post, m.transmitted, m.arrival, now_});
    record_slice(ch, st, now_);
    ++ch.pc;
    ch.step_begin = now_;
    free_msgs_.push_back(mi);
    if (opt_.lockstep) {  // the send step and the receive step are done
      --stage_pending_[s_.ranks[src].channels[m.src_chan].steps[m.src_step].stage];
      --stage_pending_[st.stage];
      advance_stage();
    }
    // Rule 3: receives of the sender that waited for this send may go on.
    auto& w = war_waiters_[src];
    if (!w.empty()) {
      for (std::uint32_t c : w) push(now_, ev_wake, c);
      w.clear();
    }
  }

  /// Lockstep: moves to the first stage with unfinished steps and wakes the channels waiting for it.
  void advance_stage() {
    const std::size_t before = stage_;
    while (stage_ < stage_pending_.size() && stage_pending_[stage_] == 0) ++stage_;
    if (stage_ != before && !stage_waiters_.empty()) {
      for (std::uint32_t c : stage_waiters_) push(now_, ev_wake, c);
      stage_waiters_.clear();
    }
  }

  /// Posts the message of send step `st` of channel `ch` as a flow.
  void post(chan& ch, const step& st) {
    if (ch.send_peer != st.peer) {
      ch.send_peer = st.peer;
      ch.send_pair = pair_of(ch.rank, st.peer, ch.channel);
    }
    const std::uint32_t mi = new_message();
    message& m = msgs_[mi];
    m.pair = ch.send_pair;
    m.src = ch.rank;
    m.dst = st.peer;
    m.src_chan = ch.channel;
    m.src_step = ch.pc;
    m.data = st.data;
    m.bytes = bytes_of(st);
    m.post = now_;
    pair_state& p = pairs_[ch.send_pair];
    if (p.tail == none) p.head = mi;
    else msgs_[p.tail].next = mi;
    p.tail = mi;
    if (p.waiter != none) {  // the receiver waits for exactly this message (the FIFO was empty)
      m.waiter = p.waiter;
      chans_[p.waiter].state = wait::arrival;
      p.waiter = none;
    }
    sends_[static_cast<std::size_t>(ch.rank)].add(placed(st.buf, st.data), mi);
    ++unconsumed_of_[static_cast<std::size_t>(ch.rank)];
    ++unconsumed_;
    std::span<const edge_id> route;
    if (opt_.spread_messages) {
      route = router_.route(s_.host(ch.rank), s_.host(st.peer), detail::mix64(ch.channel, ++spread_) % 64 + 1,
                            ch.links);
    } else {
      if (ch.route_peer != st.peer) {
        ch.route_peer = st.peer;
        ch.route = router_.route(s_.host(ch.rank), s_.host(st.peer), ch.channel, ch.links);
      }
      route = ch.route;
    }
    m.route = route;
    if (p.transmitting) {
      if (p.tx_tail == none) p.tx_head = mi;
      else msgs_[p.tx_tail].tx_next = mi;
      p.tx_tail = mi;
    } else {
      p.transmitting = true;
      engine_->add_flow(route, m.bytes, mi);
    }
    ++result_.flows;
  }

  /// Message `mi` left its sender: the next message of its channel to the same peer goes on the wire.
  void transmitted(std::uint32_t mi) {
    pair_state& p = pairs_[msgs_[mi].pair];
    if (p.tx_head == none) {
      p.transmitting = false;
      return;
    }
    const std::uint32_t next = p.tx_head;
    p.tx_head = msgs_[next].tx_next;
    if (p.tx_head == none) p.tx_tail = none;
    msgs_[next].tx_next = none;
    engine_->add_flow(msgs_[next].route, msgs_[next].bytes, next);
  }

  void arrive(std::uint32_t mi) {
    message& m = msgs_[mi];
    m.arrived = true;
    m.arrival = now_;
    if (m.waiter != none) {
      const std::uint32_t w = m.waiter;
      m.waiter = none;
      run_channel(w);
    }
  }

  /// Nothing can happen any more but ranks are unfinished: name a blocked channel, or an unmatched send.
  [[noreturn]] void stuck() const {
    std::size_t blocked = 0;
    for (const auto& ch : chans_) blocked += ch.state != wait::done ? 1 : 0;
    for (const auto& ch : chans_) {
      if (ch.state == wait::done) continue;
      const step& st = (*ch.steps)[ch.pc];
      std::string why = "sim::simulate: schedule " + s_.policy + " cannot finish: " +
                        dssync::detail::describe(ch.rank, ch.channel, ch.pc, st);
      switch (ch.state) {
        case wait::message:
          why += " waits for a message from rank " + std::to_string(st.peer) + " that is never sent (deadlock or unmatched receive)";
          break;
        case wait::arrival:
          why += " waits for a message from rank " + std::to_string(st.peer) +
                 " whose flow makes no progress (a link or NIC at zero bandwidth)";
          break;
        case wait::stage:
          why += " waits for stage " + std::to_string(st.stage) + " (lockstep), but an earlier stage never finishes";
          break;
        case wait::war:
          if (auto o = sends_[static_cast<std::size_t>(ch.rank)].overlapping(placed(st.buf, st.data)))
            why += " waits for rank " + std::to_string(msgs_[*o].dst) +
                   " to consume its earlier send of overlapping elements (rule 3), which never happens";
          else
            why += " waits for its earlier sends of overlapping elements to be consumed (rule 3)";
          break;
        default: why += " is blocked"; break;
      }
      if (blocked > 1) why += "; " + std::to_string(blocked - 1) + " other channel(s) are blocked too";
      throw invalid_argument(why);
    }
    for (const auto& p : pairs_)
      if (p.head != none) {
        const message& m = msgs_[p.head];
        const step& st = s_.ranks[static_cast<std::size_t>(m.src)].channels[m.src_chan].steps[m.src_step];
        throw invalid_argument("sim::simulate: schedule " + s_.policy + ": " +
                               dssync::detail::describe(m.src, m.src_chan, m.src_step, st) +
                               " is never received: unmatched send");
      }
    throw invalid_argument("sim::simulate: schedule " + s_.policy + " cannot finish");
  }

  const schedule& s_;
  router& router_;
  const sim_options& opt_;
  flow_engine* engine_ = nullptr;
  sim_result result_;
  double now_ = 0;
  std::vector<chan> chans_;
  std::vector<pair_state> pairs_;
  std::unordered_map<std::uint64_t, std::uint32_t> pair_index_;
  std::vector<message> msgs_;
  std::vector<std::uint32_t> free_msgs_;
  std::vector<outstanding_sends> sends_;
  std::vector<std::vector<std::uint32_t>> war_waiters_;
  std::vector<completion> done_;
  std::vector<std::size_t> stage_pending_;  // lockstep: unfinished steps per stage
  std::size_t stage_ = 0;                   // lockstep: the stage running now
  std::vector<std::uint32_t> stage_waiters_;
  std::vector<std::size_t> unconsumed_of_;
  std::vector<double> rank_finish_;
  std::priority_queue<event, std::vector<event>, std::greater<>> queue_;
  std::uint64_t seq_ = 0, spread_ = 0;
  std::size_t unfinished_channels_ = 0, unconsumed_ = 0;
};

}  // namespace detail

/// Plays schedule `s` on the network of `r` by the execution rules of schedule.hpp, message by message:
///  - every channel of every rank starts at `opt.start_time` and runs its steps in order; channels run
///    concurrently;
///  - a send posts a flow of `length · bytes_per_element` bytes from its rank to the peer, routed on a
///    shortest path (ECMP by channel) and sharing links max-min fairly with all other flows, background
///    ones included (see `flow_engine` for how bandwidth and latency combine); the channel goes on at once;
///  - the i-th receive by b from a on channel c takes the i-th send from a to b on c; it waits until that
///    message has arrived and (rule 3) until every send of b overlapping its range was consumed;
///  - a receive consumes its message when it completes (after the reduction time, if modelled);
///  - a rank finishes when all its channels reached their end and all its sends were consumed (rule 5).
/// The router's route cache is reused across calls.
/// \throws invalid_argument if the schedule is malformed (bad peer, world larger than the network,
///   unequal message lengths) or cannot finish (deadlock, unmatched message, a flow stuck at zero
///   bandwidth), naming the rank, channel and step; if the options or scenario are invalid; or if `s` is
///   one rank's part of a plan (`schedule::planned_rank`).
[[nodiscard]] inline sim_result simulate(const schedule& s, router& r, const sim_options& opt = {}) {
  if (s.planned_rank >= 0)
    throw invalid_argument("sim::simulate: schedule " + s.policy + " is rank " + std::to_string(s.planned_rank) +
                           "'s part only (per-rank planning); the simulator plays the whole-world plan");
  return detail::schedule_player(s, r, opt).run();
}

/// Plays `s` on network `g` (see the router overload).
[[nodiscard]] inline sim_result simulate(const schedule& s, const topology::network& g, const sim_options& opt = {}) {
  router r(g);
  return simulate(s, r, opt);
}

/// Plays `s` on a topology model that exposes `graph()` (see the router overload).
template <class Topology>
  requires requires(const Topology& t) {
    { t.graph() } -> std::convertible_to<topology::network>;
  }
[[nodiscard]] sim_result simulate(const schedule& s, const Topology& t, const sim_options& opt = {}) {
  return simulate(s, topology::network(t.graph()), opt);
}

}  // namespace dssync::sim
