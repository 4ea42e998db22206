#pragma once
/// \file
/// `sim::scenario`: a script of timed changes to the simulated network (background flows that start
/// and stop, NIC caps, link bandwidths), its text form, and `scenario_player`, which applies it to a
/// `flow_engine` at the right virtual times.

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <numeric>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "dssync/core/error.hpp"
#include "dssync/sim/flow_engine.hpp"
#include "dssync/sim/routing.hpp"

namespace dssync::sim {

/// What a scenario action does.
enum class action_kind : std::uint8_t {
  background_start,  ///< start a long-lived flow from rank `src` to rank `dst`, capped at `rate`
  background_stop,   ///< stop the background flow `id`
  nic_cap,           ///< cap rank `src`'s NIC: its outgoing and incoming worker links, at `rate`
  nic_clear,         ///< remove rank `src`'s NIC cap
  link_bandwidth,    ///< set the bandwidth of link `from`->`to` (and back when `both_directions`) to `rate`
};

[[nodiscard]] constexpr const char* to_string(action_kind k) noexcept {
  switch (k) {
    case action_kind::background_start: return "background";
    case action_kind::background_stop: return "stop";
    case action_kind::nic_cap: return "nic cap";
    case action_kind::nic_clear: return "nic clear";
    case action_kind::link_bandwidth: return "link";
  }
  return "?";
}

/// One timed action of a scenario.
struct action {
  double time = 0;  ///< virtual seconds
  action_kind kind = action_kind::background_start;
  std::string id;   ///< background flow name (start, stop)
  int src = -1;     ///< background source rank; the rank of nic_cap / nic_clear
  int dst = -1;     ///< background destination rank
  double rate = flow_engine::unlimited;  ///< bytes/s: background cap, NIC cap, link bandwidth
  std::string from, to;  ///< link endpoints: vertex indices ("12") or labels ("tor0")
  bool both_directions = false;
};

namespace detail {

/// "5Gbps", "5Gb/s" (bits/s), "1.25GB/s", "1GiB/s" (bytes/s), or a plain number of bytes/s.
inline std::optional<double> parse_rate(std::string_view s) {
  double v = 0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc{} || !std::isfinite(v)) return std::nullopt;
  std::string_view unit(r.ptr, static_cast<std::size_t>(s.data() + s.size() - r.ptr));
  if (unit.empty()) return v;
  double mult = 1;
  const char p = unit.front();
  std::size_t skip = 1;
  const bool binary = unit.size() > 1 && unit[1] == 'i';
  switch (p) {
    case 'k': case 'K': mult = binary ? 1024.0 : 1e3; break;
    case 'M': mult = binary ? 1048576.0 : 1e6; break;
    case 'G': mult = binary ? 1073741824.0 : 1e9; break;
    case 'T': mult = binary ? 1099511627776.0 : 1e12; break;
    default: skip = 0;
  }
  if (binary) ++skip;
  unit.remove_prefix(skip);
  if (unit == "bps" || unit == "b/s" || unit == "bit/s") {
    if (binary) return std::nullopt;
    return v * mult / 8;
  }
  if (unit == "B/s" || unit == "Bps") return v * mult;
  return std::nullopt;
}

/// "0.5", "0.5s", "500ms", "20us", "100ns".
inline std::optional<double> parse_time(std::string_view s) {
  double v = 0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc{} || !std::isfinite(v)) return std::nullopt;
  const std::string_view unit(r.ptr, static_cast<std::size_t>(s.data() + s.size() - r.ptr));
  if (unit.empty() || unit == "s") return v;
  if (unit == "ms") return v * 1e-3;
  if (unit == "us") return v * 1e-6;
  if (unit == "ns") return v * 1e-9;
  return std::nullopt;
}

/// A rank written as "7" or "w7".
inline std::optional<int> parse_rank(std::string_view s) {
  if (!s.empty() && s.front() == 'w') s.remove_prefix(1);
  int v = 0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || r.ec != std::errc{} || r.ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

inline std::string format_number(double x) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, x);
  return std::string(buf, r.ptr);
}

}  // namespace detail

/// A scenario: timed actions on the simulated network, applied in time order (actions at equal times
/// in the order given).
///
/// Text form (`parse`): statements separated by ';' or newlines, '#' starts a comment.
/// ```
/// at 0.5 background 0->7 rate 5Gbps id bg1   # a flow from rank 0 to rank 7, capped at 5 Gbit/s
/// at 0.5 background w2->w9 id bg2            # uncapped ("rate unlimited" says so explicitly)
/// at 1.0 stop bg1
/// at 0 nic 3 cap 10Gbps                      # rank 3's links in and out, at most 10 Gbit/s
/// at 2ms nic 3 clear
/// at 1 link tor0->spine bw 25Gb/s            # one direction; "tor0<->spine" sets both
/// ```
/// Times take s, ms, us or ns (seconds when bare). Rates take bps/b/s (bits: Kbps, Mbps, Gbps, Tbps,
/// Gb/s, ...) or B/s (bytes: KB/s, MB/s, GB/s, KiB/s, MiB/s, GiB/s, ...); a bare number is bytes/s.
/// Ranks are written "7" or "w7"; link endpoints are vertex indices or labels. A background flow without
/// an id is named "bg<n>" by its position among background statements.
struct scenario {
  std::vector<action> actions;

  [[nodiscard]] bool empty() const noexcept { return actions.empty(); }

  /// Starts a background flow from rank `src` to rank `dst` at time `t`, capped at `rate` bytes/s.
  scenario& background(double t, int src, int dst, std::string id, double rate = flow_engine::unlimited) {
    action a;
    a.time = t;
    a.kind = action_kind::background_start;
    a.src = src;
    a.dst = dst;
    a.rate = rate;
    a.id = std::move(id);
    actions.push_back(std::move(a));
    return *this;
  }
  /// Stops background flow `id` at time `t`.
  scenario& stop(double t, std::string id) {
    action a;
    a.time = t;
    a.kind = action_kind::background_stop;
    a.id = std::move(id);
    actions.push_back(std::move(a));
    return *this;
  }
  /// Caps rank `rank`'s NIC (its worker links, both directions) at `rate` bytes/s from time `t`.
  scenario& nic_cap(double t, int rank, double rate) {
    action a;
    a.time = t;
    a.kind = action_kind::nic_cap;
    a.src = rank;
    a.rate = rate;
    actions.push_back(std::move(a));
    return *this;
  }
  /// Removes rank `rank`'s NIC cap at time `t`.
  scenario& clear_nic_cap(double t, int rank) {
    action a;
    a.time = t;
    a.kind = action_kind::nic_clear;
    a.src = rank;
    actions.push_back(std::move(a));
    return *this;
  }
  /// Sets the bandwidth of link `from`->`to` (vertex indices or labels) to `rate` bytes/s at time `t`;
  /// of both directions when `both_directions`.
  scenario& link_bandwidth(double t, std::string from, std::string to, double rate, bool both_directions = false) {
    action a;
    a.time = t;
    a.kind = action_kind::link_bandwidth;
    a.from = std::move(from);
    a.to = std::move(to);
    a.rate = rate;
    a.both_directions = both_directions;
    actions.push_back(std::move(a));
    return *this;
  }

  /// Parses the text form (see the class comment).
  /// \throws invalid_argument naming the statement (its number and text) and what was expected.
  [[nodiscard]] static scenario parse(std::string_view text) {
    scenario out;
    std::size_t number = 0, backgrounds = 0;
    std::size_t pos = 0;
    while (pos <= text.size()) {
      std::size_t end = text.find_first_of(";\n", pos);
      if (end == std::string_view::npos) end = text.size();
      std::string_view stmt = text.substr(pos, end - pos);
      pos = end + 1;
      if (auto h = stmt.find('#'); h != std::string_view::npos) stmt = stmt.substr(0, h);
      // Tokens, with "->" and "<->" split out.
      std::string norm;
      for (std::size_t i = 0; i < stmt.size(); ++i) {
        if (stmt.compare(i, 3, "<->") == 0) {
          norm += " <-> ";
          i += 2;
        } else if (stmt.compare(i, 2, "->") == 0) {
          norm += " -> ";
          i += 1;
        } else {
          norm += stmt[i];
        }
      }
      std::vector<std::string> tok;
      {
        std::istringstream is(norm);
        for (std::string w; is >> w;) tok.push_back(w);
      }
      if (tok.empty()) continue;
      ++number;
      std::string shown(stmt);
      while (!shown.empty() && std::isspace(static_cast<unsigned char>(shown.front()))) shown.erase(shown.begin());
      while (!shown.empty() && std::isspace(static_cast<unsigned char>(shown.back()))) shown.pop_back();
      auto fail = [&](const std::string& why) -> void {
        throw invalid_argument("sim::scenario: statement " + std::to_string(number) + " (\"" + shown + "\"): " + why);
      };
      std::size_t k = 0;
      auto next = [&](const char* expected) -> std::string {
        if (k >= tok.size()) fail(std::string("expected ") + expected + " at the end");
        return tok[k++];
      };
      auto expect = [&](const char* word) {
        const std::string w = next(("'" + std::string(word) + "'").c_str());
        if (w != word) fail("expected '" + std::string(word) + "', got '" + w + "'");
      };
      auto rate_of = [&](const std::string& w, bool allow_unlimited) -> double {
        if (allow_unlimited && (w == "unlimited" || w == "inf" || w == "none")) return flow_engine::unlimited;
        auto r = detail::parse_rate(w);
        if (!r || *r < 0)
          fail("expected a rate like 10Gbps, 25Gb/s, 1.25GB/s or a number of bytes/s" +
               std::string(allow_unlimited ? " or 'unlimited'" : "") + ", got '" + w + "'");
        return *r;
      };
      auto rank_of = [&](const std::string& w) -> int {
        auto r = detail::parse_rank(w);
        if (!r || *r < 0) fail("expected a rank like 7 or w7, got '" + w + "'");
        return *r;
      };

      expect("at");
      const std::string tw = next("a time");
      const auto t = detail::parse_time(tw);
      if (!t) fail("expected a time like 0.5, 0.5s, 500ms, 20us or 100ns after 'at', got '" + tw + "'");
      if (*t < 0) fail("time " + tw + " is negative");
      action a;
      a.time = *t;
      const std::string verb = next("an action (background, stop, nic or link)");
      if (verb == "background") {
        a.kind = action_kind::background_start;
        a.src = rank_of(next("a source rank"));
        expect("->");
        a.dst = rank_of(next("a destination rank"));
        ++backgrounds;
        bool have_rate = false, have_id = false;
        while (k < tok.size()) {
          const std::string key = tok[k++];
          if (key == "rate") {
            if (have_rate) fail("'rate' given twice");
            have_rate = true;
            a.rate = rate_of(next("a rate"), true);
          } else if (key == "id") {
            if (have_id) fail("'id' given twice");
            have_id = true;
            a.id = next("a name after 'id'");
          } else {
            fail("expected 'rate' or 'id', got '" + key + "'");
          }
        }
        if (!have_id) a.id = "bg" + std::to_string(backgrounds);
      } else if (verb == "stop") {
        a.kind = action_kind::background_stop;
        a.id = next("the id of a background flow");
      } else if (verb == "nic") {
        a.src = rank_of(next("a rank"));
        const std::string w = next("'cap' or 'clear'");
        if (w == "cap") {
          a.kind = action_kind::nic_cap;
          a.rate = rate_of(next("a rate"), false);
        } else if (w == "clear") {
          a.kind = action_kind::nic_clear;
        } else {
          fail("expected 'cap' or 'clear' after 'nic " + std::to_string(a.src) + "', got '" + w + "'");
        }
      } else if (verb == "link") {
        a.kind = action_kind::link_bandwidth;
        a.from = next("a vertex");
        const std::string arrow = next("'->' or '<->'");
        if (arrow == "<->") a.both_directions = true;
        else if (arrow != "->") fail("expected '->' or '<->' after '" + a.from + "', got '" + arrow + "'");
        a.to = next("a vertex");
        expect("bw");
        a.rate = rate_of(next("a bandwidth"), false);
      } else {
        fail("expected an action (background, stop, nic or link), got '" + verb + "'");
      }
      if (k != tok.size()) fail("unexpected '" + tok[k] + "' at the end");
      out.actions.push_back(std::move(a));
    }
    return out;
  }
};

/// One action in the text form `scenario::parse` reads ("at 0.5 background 0->7 rate 625000000B/s id bg1").
[[nodiscard]] inline std::string to_string(const action& a) {
  std::string s = "at " + detail::format_number(a.time) + " ";
  auto rate = [](double r) {
    return std::isfinite(r) ? detail::format_number(r) + "B/s" : std::string("unlimited");
  };
  switch (a.kind) {
    case action_kind::background_start:
      s += "background " + std::to_string(a.src) + "->" + std::to_string(a.dst) + " rate " + rate(a.rate) + " id " + a.id;
      break;
    case action_kind::background_stop: s += "stop " + a.id; break;
    case action_kind::nic_cap: s += "nic " + std::to_string(a.src) + " cap " + rate(a.rate); break;
    case action_kind::nic_clear: s += "nic " + std::to_string(a.src) + " clear"; break;
    case action_kind::link_bandwidth:
      s += "link " + a.from + (a.both_directions ? "<->" : "->") + a.to + " bw " + rate(a.rate);
      break;
  }
  return s;
}

/// The scenario as text, one statement per line (parses back to the same actions).
[[nodiscard]] inline std::string to_string(const scenario& s) {
  std::string out;
  for (const auto& a : s.actions) out += to_string(a) + "\n";
  return out;
}

/// Plays a scenario on a flow engine: call `apply_until(t)` whenever the engine's clock reaches
/// `next_time()`. Background flows get tags with the top bit set (`background_tag`), never complete,
/// and take ECMP key hash(id).
///
/// Capacities: a link's capacity is its bandwidth (the network's, or the last `link` action's), capped
/// by the NIC caps of the worker at either end.
class scenario_player {
 public:
  /// Tag bit of background flows in the engine.
  static constexpr std::uint64_t background_tag = std::uint64_t{1} << 63;

  /// Validates `s` against the network of `r` and prepares to play it on `e` (whose links must be the
  /// router's). \throws invalid_argument naming the action when a rank or vertex does not exist, a link
  /// does not exist, a background id is started twice or stopped while not running, a rate is invalid,
  /// or a time is negative or not finite.
  scenario_player(const scenario& s, router& r, flow_engine& e) : router_(&r), engine_(&e) {
    if (e.links() != r.edges())
      throw invalid_argument("sim::scenario_player: the engine has " + std::to_string(e.links()) +
                             " links but the router " + std::to_string(r.edges()));
    order_.resize(s.actions.size());
    std::iota(order_.begin(), order_.end(), std::size_t{0});
    std::stable_sort(order_.begin(), order_.end(),
                     [&](std::size_t a, std::size_t b) { return s.actions[a].time < s.actions[b].time; });
    actions_ = s.actions;
    base_.resize(r.edges());
    for (edge_id x = 0; x < r.edges(); ++x) base_[x] = e.capacity(x);
    nic_.assign(static_cast<std::size_t>(r.workers()), flow_engine::unlimited);
    links_of_.resize(actions_.size());
    // Validate in time order.
    std::map<std::string, bool> running;
    for (std::size_t k : order_) {
      const action& a = actions_[k];
      auto fail = [&](const std::string& why) {
        throw invalid_argument("sim::scenario: action " + std::to_string(k + 1) + " (" + to_string(a) + "): " + why);
      };
      auto check_rank = [&](int rank) {
        if (rank < 0 || rank >= r.workers())
          fail("rank " + std::to_string(rank) + " does not exist (the network has " + std::to_string(r.workers()) +
               " workers)");
      };
      if (!(a.time >= 0) || !std::isfinite(a.time)) fail("time must be finite and non-negative");
      switch (a.kind) {
        case action_kind::background_start: {
          check_rank(a.src);
          check_rank(a.dst);
          if (a.src == a.dst) fail("a background flow needs two different ranks");
          if (!(a.rate > 0)) fail("the rate must be positive (or unlimited)");
          if (running[a.id]) fail("background flow " + a.id + " is already running");
          running[a.id] = true;
          (void)r.route(a.src, a.dst, detail::hash_text(a.id));  // throws if unreachable
          break;
        }
        case action_kind::background_stop:
          if (!running[a.id]) fail("no background flow " + a.id + " is running then");
          running[a.id] = false;
          break;
        case action_kind::nic_cap:
          check_rank(a.src);
          if (!(a.rate >= 0) || !std::isfinite(a.rate)) fail("the cap must be finite and non-negative");
          break;
        case action_kind::nic_clear: check_rank(a.src); break;
        case action_kind::link_bandwidth: {
          const auto u = r.find_vertex(a.from), v = r.find_vertex(a.to);
          if (!u) fail("vertex " + a.from + " does not exist");
          if (!v) fail("vertex " + a.to + " does not exist");
          if (!(a.rate >= 0) || !std::isfinite(a.rate)) fail("the bandwidth must be finite and non-negative");
          auto& ls = links_of_[k];
          ls = r.edges_between(*u, *v);
          if (a.both_directions) {
            const auto back = r.edges_between(*v, *u);
            ls.insert(ls.end(), back.begin(), back.end());
          }
          if (ls.empty()) fail("there is no link " + a.from + "->" + a.to);
          if (a.both_directions && r.edges_between(*v, *u).empty()) fail("there is no link " + a.to + "->" + a.from);
          break;
        }
      }
    }
  }

  /// Time of the next action not yet applied (infinity when none is left).
  [[nodiscard]] double next_time() const noexcept {
    return next_ < order_.size() ? actions_[order_[next_]].time : flow_engine::unlimited;
  }
  /// Whether actions remain.
  [[nodiscard]] bool pending() const noexcept { return next_ < order_.size(); }

  /// Applies every remaining action with time <= `t` (within `time_tolerance`), in order, at the
  /// engine's current time.
  void apply_until(double t) {
    const double until = t + time_tolerance(t);
    while (next_ < order_.size() && actions_[order_[next_]].time <= until) apply(order_[next_++]);
  }

  /// Background flows running now.
  [[nodiscard]] std::size_t running() const noexcept { return flows_.size(); }
  /// Background flows started so far.
  [[nodiscard]] std::size_t started() const noexcept { return started_; }
  /// The engine flow of background flow `id`, if it is running.
  [[nodiscard]] std::optional<flow_id> flow_of(const std::string& id) const {
    auto it = flows_.find(id);
    if (it == flows_.end()) return std::nullopt;
    return it->second;
  }

 private:
  void apply(std::size_t k) {
    const action& a = actions_[k];
    switch (a.kind) {
      case action_kind::background_start: {
        const auto route = router_->route(a.src, a.dst, detail::hash_text(a.id));
        flows_[a.id] = engine_->add_flow(route, flow_engine::unlimited, background_tag | started_, a.rate);
        ++started_;
        break;
      }
      case action_kind::background_stop: {
        auto it = flows_.find(a.id);
        engine_->remove_flow(it->second);
        flows_.erase(it);
        break;
      }
      case action_kind::nic_cap:
      case action_kind::nic_clear: {
        nic_[static_cast<std::size_t>(a.src)] = a.kind == action_kind::nic_cap ? a.rate : flow_engine::unlimited;
        const auto v = static_cast<std::size_t>(a.src);
        for (edge_id x : router_->out_edges(v)) refresh(x);
        for (edge_id x : router_->in_edges(v)) refresh(x);
        break;
      }
      case action_kind::link_bandwidth:
        for (edge_id x : links_of_[k]) {
          base_[x] = a.rate;
          refresh(x);
        }
        break;
    }
  }

  void refresh(edge_id x) {
    double c = base_[x];
    const std::size_t u = router_->source(x), v = router_->target(x);
    if (router_->is_worker(u)) c = std::min(c, nic_[u]);
    if (router_->is_worker(v)) c = std::min(c, nic_[v]);
    if (c != engine_->capacity(x)) engine_->set_capacity(x, c);
  }

  router* router_;
  flow_engine* engine_;
  std::vector<action> actions_;
  std::vector<std::size_t> order_;
  std::vector<std::vector<edge_id>> links_of_;
  std::size_t next_ = 0, started_ = 0;
  std::vector<double> base_, nic_;
  std::map<std::string, flow_id> flows_;
};

}  // namespace dssync::sim
