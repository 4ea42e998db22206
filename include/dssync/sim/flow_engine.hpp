#pragma once
/// \file
/// `sim::flow_engine`: an incremental, event-driven, flow-level model of a network. Flows share links
/// max-min fairly; each flow's bytes drain at its fair rate; the engine jumps from one transmission
/// completion to the next. It knows nothing of schedules, so the offline simulator and a live simulated
/// transport drive it alike.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "dssync/core/error.hpp"
#include "dssync/sim/routing.hpp"

namespace dssync::sim {

/// Handle of a flow of a `flow_engine`. Stays unique: a finished flow's slot is reused under a new
/// generation, so a stale handle is recognized.
struct flow_id {
  std::uint32_t index = std::numeric_limits<std::uint32_t>::max();
  std::uint32_t generation = 0;
  friend constexpr bool operator==(const flow_id&, const flow_id&) = default;
};

/// A flow whose last byte has left its source (`finish`), reported by `flow_engine::advance`.
struct completion {
  flow_id id;
  std::uint64_t tag = 0;  ///< the caller's tag given to add_flow
  double bytes = 0;       ///< bytes the flow carried
  double start = 0;       ///< when it was added
  double finish = 0;      ///< when its transmission completed (the engine's time now)
  double arrival = 0;     ///< finish + the sum of its route's link latencies: when the receiver has it all
};

/// Traffic through one link, integrated over time (see `flow_engine::counters`).
struct link_counters {
  double bytes = 0;          ///< bytes carried
  double busy_time = 0;      ///< seconds with at least one flow moving bytes through it
  double capacity_time = 0;  ///< integral of the capacity over time (bytes it could have carried)
};

/// A relative tolerance on times: events closer than this are simultaneous (one batch).
[[nodiscard]] inline double time_tolerance(double t) noexcept { return 1e-12 * std::abs(t) + 1e-18; }

/// The flow-level network model.
///
/// Model:
///  - A flow is a route (a sequence of links) and a number of bytes. From its start until its last byte
///    has left, it moves bytes at one rate on every link of its route (a fluid model: the first bit
///    enters every link at once, there is no store-and-forward).
///  - Rates are max-min fair (progressive filling): no flow can get more without taking from a flow that
///    has less on a shared bottleneck. A flow may have its own rate cap, which acts as a private link.
///  - Latency is a pure delay at the end: a flow of B bytes whose bottleneck rate stays b, on a route
///    whose link latencies sum to L, started at t, finishes transmitting at t + B/b (`completion::finish`)
///    and has arrived at the receiver at t + B/b + L (`completion::arrival`). A zero-byte flow arrives
///    after L. So consecutive dependent messages cost α + B/b each, with α = L, as the α-β model says.
///  - Link capacities and flow caps may change at any time; the change applies from `now()` on.
///
/// Cost: rates are recomputed lazily, on the next `next_completion`/`advance`, and only for the flows
/// connected (through shared links, transitively) to a link that changed since the last recomputation.
/// Everything that happens at one instant is therefore recomputed once. A recomputation is a
/// water-filling over that component with a heap of links keyed by fair share: O(H log H) for H
/// (flow, link) incidences in the component, with no heap at all for components of zero or one flow.
/// Bytes drain lazily (a flow's remaining bytes are settled only when its rate changes), so an event
/// costs nothing for flows it does not touch. Collectives on switched networks mostly make small
/// components (a ring's flows use disjoint directed links); all-to-all traffic through one switch makes
/// one component of all flows, and then each instant costs O(H log H) for all of them.
///
/// Not thread-safe: one thread drives an engine.
class flow_engine {
 public:
  /// No rate cap.
  static constexpr double unlimited = std::numeric_limits<double>::infinity();

  /// An engine over links with these capacities (bytes/s) and latencies (s), indexed by edge id, with
  /// its clock at `start_time`. \throws invalid_argument if the sizes differ or a value is negative or
  /// not finite.
  flow_engine(std::vector<double> capacity, std::vector<double> latency, double start_time = 0) : now_(start_time) {
    if (capacity.size() != latency.size())
      throw invalid_argument("sim::flow_engine: " + std::to_string(capacity.size()) + " capacities but " +
                             std::to_string(latency.size()) + " latencies");
    if (!std::isfinite(start_time)) throw invalid_argument("sim::flow_engine: start time must be finite");
    links_.resize(capacity.size());
    for (std::size_t e = 0; e < capacity.size(); ++e) {
      check_capacity(static_cast<edge_id>(e), capacity[e]);
      if (!(latency[e] >= 0) || !std::isfinite(latency[e]))
        throw invalid_argument("sim::flow_engine: link " + std::to_string(e) + " has latency " +
                               std::to_string(latency[e]) + " s; it must be finite and non-negative");
      links_[e].capacity = capacity[e];
      links_[e].latency = latency[e];
      links_[e].t_stat = start_time;
    }
  }

  /// An engine over the links of `r`, with their bandwidths and latencies.
  explicit flow_engine(const router& r, double start_time = 0)
      : flow_engine(r.bandwidths(), r.latencies(), start_time) {}

  /// The engine's clock, in seconds.
  [[nodiscard]] double now() const noexcept { return now_; }
  /// Number of links.
  [[nodiscard]] std::size_t links() const noexcept { return links_.size(); }

  /// Starts a flow of `bytes` bytes on `route` at `now()`. `bytes` may be `unlimited` (a long-lived
  /// background flow that never completes; stop it with `remove_flow`) or 0 (it arrives after the
  /// route's latency). `rate_cap` bounds its rate in bytes/s. `tag` is returned in its completion.
  /// A flow on an empty route (source = destination) moves at its cap, instantly if it has none.
  /// \throws invalid_argument if `bytes` or `rate_cap` is negative or NaN, or an edge id is out of range.
  flow_id add_flow(std::span<const edge_id> route, double bytes, std::uint64_t tag = 0, double rate_cap = unlimited) {
    if (!(bytes >= 0)) throw invalid_argument("sim::flow_engine::add_flow: bytes " + std::to_string(bytes) + " must be non-negative");
    if (!(rate_cap >= 0))
      throw invalid_argument("sim::flow_engine::add_flow: rate cap " + std::to_string(rate_cap) + " must be non-negative");
    for (edge_id e : route)
      if (e >= links_.size())
        throw invalid_argument("sim::flow_engine::add_flow: edge " + std::to_string(e) + " out of range (" +
                               std::to_string(links_.size()) + " links)");
    const std::uint32_t i = allocate();
    flow& f = flows_[i];
    f.bytes = bytes;
    f.remaining = bytes;
    f.t_upd = now_;
    f.start = now_;
    f.cap = rate_cap;
    f.tag = tag;
    f.latency = 0;
    for (edge_id e : route) f.latency += links_[e].latency;
    f.hops.clear();
    ++added_;
    if (bytes == 0 || route.empty()) {
      // Not on any link: its rate is its cap.
      f.rate = bytes == 0 ? unlimited : rate_cap;
      schedule_completion(i);
      return {i, f.generation};
    }
    f.rate = -1;  // unset: the next recomputation assigns it and schedules its completion
    f.hops.reserve(route.size());
    for (edge_id e : route) {
      auto& users = links_[e].users;
      f.hops.push_back({e, static_cast<std::uint32_t>(users.size())});
      users.push_back({i, static_cast<std::uint32_t>(f.hops.size() - 1)});
      mark_dirty(e);
    }
    ++on_links_;
    return {i, f.generation};
  }

  /// Stops a flow now without reporting a completion (a background flow ends). Bytes it moved so far
  /// stay counted. \throws invalid_argument if `id` is not an active flow.
  void remove_flow(flow_id id) {
    const std::uint32_t i = checked(id, "remove_flow");
    detach(i);
    release(i);
  }

  /// Changes a flow's rate cap from now on (`unlimited` removes it).
  /// \throws invalid_argument if `id` is not active or `cap` is negative or NaN.
  void set_rate_cap(flow_id id, double cap) {
    const std::uint32_t i = checked(id, "set_rate_cap");
    if (!(cap >= 0)) throw invalid_argument("sim::flow_engine::set_rate_cap: cap " + std::to_string(cap) + " must be non-negative");
    flow& f = flows_[i];
    f.cap = cap;
    if (f.hops.empty()) {
      if (f.bytes > 0) set_rate(i, cap);
      return;
    }
    for (const hop& h : f.hops) mark_dirty(h.edge);
  }

  /// Changes a link's capacity from now on. \throws invalid_argument if `e` is out of range or `bytes_per_s`
  /// is negative or not finite.
  void set_capacity(edge_id e, double bytes_per_s) {
    check_edge(e, "set_capacity");
    check_capacity(e, bytes_per_s);
    settle_link(e);
    links_[e].capacity = bytes_per_s;
    mark_dirty(e);
  }

  /// Changes a link's latency for flows added from now on. \throws invalid_argument on a bad value.
  void set_latency(edge_id e, double seconds) {
    check_edge(e, "set_latency");
    if (!(seconds >= 0) || !std::isfinite(seconds))
      throw invalid_argument("sim::flow_engine::set_latency: latency " + std::to_string(seconds) +
                             " s must be finite and non-negative");
    links_[e].latency = seconds;
  }

  [[nodiscard]] double capacity(edge_id e) const { return links_.at(e).capacity; }
  [[nodiscard]] double latency(edge_id e) const { return links_.at(e).latency; }

  /// Whether `id` is a flow that has neither completed nor been removed.
  [[nodiscard]] bool active(flow_id id) const noexcept {
    return id.index < flows_.size() && flows_[id.index].active && flows_[id.index].generation == id.generation;
  }
  /// A flow's current rate in bytes/s (recomputes pending changes first).
  /// \throws invalid_argument if `id` is not active.
  [[nodiscard]] double rate(flow_id id) {
    const std::uint32_t i = checked(id, "rate");
    flush();
    return flows_[i].rate;
  }
  /// A flow's bytes not yet transmitted at `now()`. \throws invalid_argument if `id` is not active.
  [[nodiscard]] double remaining(flow_id id) {
    const std::uint32_t i = checked(id, "remaining");
    flush();
    return remaining_at(flows_[i], now_);
  }
  /// A flow's caller tag. \throws invalid_argument if `id` is not active.
  [[nodiscard]] std::uint64_t tag(flow_id id) const { return flows_[checked(id, "tag")].tag; }
  /// Number of active flows.
  [[nodiscard]] std::size_t active_flows() const noexcept { return flows_.size() - free_.size(); }
  /// Active flows whose rate is shared with others on links.
  [[nodiscard]] std::size_t flows_on_links() const noexcept { return on_links_; }
  /// The active flows on link `e`.
  [[nodiscard]] std::vector<flow_id> flows_on(edge_id e) const {
    check_edge(e, "flows_on");
    std::vector<flow_id> out;
    for (const auto& u : links_[e].users) out.push_back({u.flow, flows_[u.flow].generation});
    return out;
  }

  /// When the next transmission completes (infinity if no flow will: none, or all stalled or endless).
  [[nodiscard]] double next_completion() {
    flush();
    drop_stale();
    return heap_.empty() ? unlimited : std::max(now_, heap_.front().time);
  }

  /// Moves the clock to the next transmission completion, if it is not later than `limit`, and returns
  /// every flow that completes then (all completions within `time_tolerance` of it form one batch);
  /// otherwise moves the clock to `limit` (when finite) and returns nothing. The span stays valid
  /// until the next call of a non-const member.
  std::span<const completion> advance(double limit = unlimited) {
    done_.clear();
    const double t = next_completion();
    if (t > limit || !std::isfinite(t)) {
      if (std::isfinite(limit)) now_ = std::max(now_, limit);
      return {};
    }
    now_ = t;
    const double until = t + time_tolerance(t);
    while (!heap_.empty() && heap_.front().time <= until) {
      const entry top = heap_.front();
      std::pop_heap(heap_.begin(), heap_.end(), std::greater<>{});
      heap_.pop_back();
      if (stale(top)) continue;
      flow& f = flows_[top.index];
      done_.push_back({{top.index, f.generation}, f.tag, f.bytes, f.start, now_, now_ + f.latency});
      detach(top.index);
      release(top.index);
      ++completed_;
    }
    return done_;
  }

  /// Moves the clock to `t` (no earlier than now). \throws invalid_argument if a flow completes before
  /// `t` (use `advance(t)`, which stops there) or `t` is earlier than `now()`.
  void advance_to(double t) {
    if (t < now_) {
      if (t >= now_ - time_tolerance(now_)) return;
      throw invalid_argument("sim::flow_engine::advance_to(" + std::to_string(t) + "): the clock is already at " +
                             std::to_string(now_));
    }
    const double next = next_completion();
    if (next < t - time_tolerance(t))
      throw invalid_argument("sim::flow_engine::advance_to(" + std::to_string(t) + "): a flow completes earlier, at " +
                             std::to_string(next) + "; call advance()");
    now_ = t;
  }

  /// Traffic through link `e` from the engine's start to `now()`.
  [[nodiscard]] link_counters counters(edge_id e) {
    check_edge(e, "counters");
    flush();
    settle_link(e);
    return links_[e].stats;
  }

  /// Component recomputations done so far (one per connected group of flows touched by an instant).
  [[nodiscard]] std::size_t recomputations() const noexcept { return recomputations_; }
  /// Flow rate changes applied so far.
  [[nodiscard]] std::size_t rate_updates() const noexcept { return rate_updates_; }
  /// Flows added so far.
  [[nodiscard]] std::size_t flows_added() const noexcept { return added_; }
  /// Flows completed so far.
  [[nodiscard]] std::size_t flows_completed() const noexcept { return completed_; }

 private:
  struct hop {
    edge_id edge;
    std::uint32_t slot;  // index in links_[edge].users
  };
  struct user {
    std::uint32_t flow;
    std::uint32_t hop;  // index in flows_[flow].hops
  };
  struct flow {
    double bytes = 0, remaining = 0, t_upd = 0, rate = 0, cap = unlimited, latency = 0, start = 0;
    std::uint64_t tag = 0;
    std::uint32_t generation = 0, version = 0, mark = 0;
    bool active = false, frozen = false;
    double new_rate = 0;
    std::vector<hop> hops;
  };
  struct link_state {
    double capacity = 0, latency = 0;
    std::vector<user> users;
    double load = 0, t_stat = 0;
    link_counters stats;
    // water-filling scratch
    double rem = 0, new_load = 0;
    std::uint32_t cnt = 0, version = 0, mark = 0;
    bool dirty = false, touched = false;
  };
  struct entry {  // completion heap (min by time)
    double time;
    std::uint32_t index, version;
    friend bool operator>(const entry& a, const entry& b) noexcept {
      return a.time != b.time ? a.time > b.time : a.index > b.index;
    }
  };
  struct share {  // water-filling heap (min by share)
    double value;
    std::uint32_t id, version;
    bool is_flow;
    friend bool operator>(const share& a, const share& b) noexcept { return a.value > b.value; }
  };

  void check_edge(edge_id e, const char* what) const {
    if (e >= links_.size())
      throw invalid_argument(std::string("sim::flow_engine::") + what + ": edge " + std::to_string(e) +
                             " out of range (" + std::to_string(links_.size()) + " links)");
  }
  static void check_capacity(edge_id e, double c) {
    if (!(c >= 0) || !std::isfinite(c))
      throw invalid_argument("sim::flow_engine: link " + std::to_string(e) + " capacity " + std::to_string(c) +
                             " B/s must be finite and non-negative");
  }
  std::uint32_t checked(flow_id id, const char* what) const {
    if (!active(id))
      throw invalid_argument(std::string("sim::flow_engine::") + what + ": flow " + std::to_string(id.index) + "/" +
                             std::to_string(id.generation) + " is not active (completed, removed or never added)");
    return id.index;
  }

  std::uint32_t allocate() {
    std::uint32_t i;
    if (!free_.empty()) {
      i = free_.back();
      free_.pop_back();
    } else {
      if (flows_.size() >= std::numeric_limits<std::uint32_t>::max() - 1)
        throw invalid_argument("sim::flow_engine: too many concurrent flows");
      i = static_cast<std::uint32_t>(flows_.size());
      flows_.emplace_back();
    }
    flows_[i].active = true;
    return i;
  }
  void release(std::uint32_t i) {
    flow& f = flows_[i];
    f.active = false;
    ++f.generation;
    ++f.version;
    free_.push_back(i);
  }

  /// Takes flow `i` off its links (they become dirty).
  void detach(std::uint32_t i) {
    flow& f = flows_[i];
    if (f.hops.empty()) return;
    for (const hop& h : f.hops) {
      auto& users = links_[h.edge].users;
      const user moved = users.back();
      users[h.slot] = moved;
      flows_[moved.flow].hops[moved.hop].slot = h.slot;
      users.pop_back();
      mark_dirty(h.edge);
    }
    f.hops.clear();
    --on_links_;
  }

  void mark_dirty(edge_id e) {
    if (!links_[e].dirty) {
      links_[e].dirty = true;
      dirty_.push_back(e);
    }
  }

  /// Integrates link `e`'s counters up to now.
  void settle_link(edge_id e) {
    link_state& l = links_[e];
    const double dt = now_ - l.t_stat;
    if (dt > 0) {
      l.stats.bytes += l.load * dt;
      if (l.load > 0) l.stats.busy_time += dt;
      l.stats.capacity_time += l.capacity * dt;
    }
    l.t_stat = now_;
  }

  static double remaining_at(const flow& f, double t) {
    if (!std::isfinite(f.remaining)) return f.remaining;
    if (f.rate <= 0) return f.remaining;
    if (!std::isfinite(f.rate)) return 0;
    return std::max(0.0, f.remaining - f.rate * (t - f.t_upd));
  }

  /// Gives flow `i` rate `r` from now on and (re)schedules its completion.
  void set_rate(std::uint32_t i, double r) {
    flow& f = flows_[i];
    if (f.rate >= 0) f.remaining = remaining_at(f, now_);
    f.t_upd = now_;
    f.rate = r;
    ++rate_updates_;
    schedule_completion(i);
  }

  void schedule_completion(std::uint32_t i) {
    flow& f = flows_[i];
    ++f.version;
    double t;
    if (f.remaining <= 0) t = now_;
    else if (!std::isfinite(f.remaining) || !(f.rate > 0)) return;  // endless or stalled
    else if (!std::isfinite(f.rate)) t = now_;
    else t = now_ + f.remaining / f.rate;
    heap_.push_back({t, i, f.version});
    std::push_heap(heap_.begin(), heap_.end(), std::greater<>{});
  }

  [[nodiscard]] bool stale(const entry& e) const noexcept {
    const flow& f = flows_[e.index];
    return !f.active || f.version != e.version;
  }
  void drop_stale() {
    while (!heap_.empty() && stale(heap_.front())) {
      std::pop_heap(heap_.begin(), heap_.end(), std::greater<>{});
      heap_.pop_back();
    }
  }

  /// Recomputes the rates of every component that holds a dirty link.
  void flush() {
    if (dirty_.empty()) return;
    ++epoch_;
    for (std::size_t k = 0; k < dirty_.size(); ++k) {
      const edge_id e = dirty_[k];
      if (links_[e].mark != epoch_) recompute_component(e);
    }
    for (edge_id e : dirty_) links_[e].dirty = false;
    dirty_.clear();
  }

  void recompute_component(edge_id seed) {
    ++recomputations_;
    comp_links_.clear();
    comp_flows_.clear();
    stack_.clear();
    links_[seed].mark = epoch_;
    stack_.push_back(seed);
    while (!stack_.empty()) {
      const edge_id e = stack_.back();
      stack_.pop_back();
      comp_links_.push_back(e);
      for (const user& u : links_[e].users) {
        flow& f = flows_[u.flow];
        if (f.mark == epoch_) continue;
        f.mark = epoch_;
        comp_flows_.push_back(u.flow);
        for (const hop& h : f.hops)
          if (links_[h.edge].mark != epoch_) {
            links_[h.edge].mark = epoch_;
            stack_.push_back(h.edge);
          }
      }
    }

    // Fast paths: a component with no flow or with one flow (every link then carries only that flow)
    // needs no heap. They are the common case of collectives on switched networks.
    if (comp_flows_.size() <= 1) {
      double r = comp_flows_.empty() ? 0 : flows_[comp_flows_[0]].cap;
      for (edge_id e : comp_links_) {
        settle_link(e);
        const auto n = links_[e].users.size();
        if (n > 0) r = std::min(r, links_[e].capacity / static_cast<double>(n));
      }
      for (edge_id e : comp_links_) links_[e].load = r * static_cast<double>(links_[e].users.size());
      if (!comp_flows_.empty() && flows_[comp_flows_[0]].rate != r) set_rate(comp_flows_[0], r);
      return;
    }

    // Water-filling: repeatedly saturate the link (or flow cap) with the smallest fair share.
    shares_.clear();
    for (edge_id e : comp_links_) {
      link_state& l = links_[e];
      settle_link(e);
      l.rem = l.capacity;
      l.cnt = static_cast<std::uint32_t>(l.users.size());
      l.new_load = 0;
      ++l.version;
      if (l.cnt > 0) shares_.push_back({l.rem / l.cnt, e, l.version, false});
    }
    for (std::uint32_t i : comp_flows_) {
      flow& f = flows_[i];
      f.frozen = false;
      if (f.cap < unlimited) shares_.push_back({f.cap, i, 0, true});
    }
    std::make_heap(shares_.begin(), shares_.end(), std::greater<>{});
    while (!shares_.empty()) {
      const share s = shares_.front();
      std::pop_heap(shares_.begin(), shares_.end(), std::greater<>{});
      shares_.pop_back();
      if (s.is_flow) {
        if (!flows_[s.id].frozen) freeze(s.id, s.value);
      } else {
        link_state& l = links_[s.id];
        if (l.version != s.version || l.cnt == 0) continue;
        const double r = std::max(0.0, l.rem / l.cnt);
        for (const user& u : l.users)
          if (!flows_[u.flow].frozen) freeze(u.flow, r);
      }
      for (edge_id e : touched_) {
        link_state& l = links_[e];
        l.touched = false;
        if (l.cnt > 0) {
          shares_.push_back({std::max(0.0, l.rem) / l.cnt, e, ++l.version, false});
          std::push_heap(shares_.begin(), shares_.end(), std::greater<>{});
        }
      }
      touched_.clear();
    }

    for (edge_id e : comp_links_) links_[e].load = links_[e].new_load;
    for (std::uint32_t i : comp_flows_)
      if (flows_[i].new_rate != flows_[i].rate) set_rate(i, flows_[i].new_rate);
  }

  void freeze(std::uint32_t i, double r) {
    flow& f = flows_[i];
    f.frozen = true;
    f.new_rate = r;
    for (const hop& h : f.hops) {
      link_state& l = links_[h.edge];
      l.rem -= r;
      l.new_load += r;
      --l.cnt;
      if (!l.touched) {
        l.touched = true;
        touched_.push_back(h.edge);
      }
    }
  }

  double now_ = 0;
  std::vector<flow> flows_;
  std::vector<std::uint32_t> free_;
  std::vector<link_state> links_;
  std::vector<edge_id> dirty_;
  std::vector<entry> heap_;
  std::vector<completion> done_;
  // scratch
  std::vector<edge_id> comp_links_, stack_, touched_;
  std::vector<std::uint32_t> comp_flows_;
  std::vector<share> shares_;
  std::uint32_t epoch_ = 0;
  std::size_t on_links_ = 0, added_ = 0, completed_ = 0, recomputations_ = 0, rate_updates_ = 0;
};

}  // namespace dssync::sim
