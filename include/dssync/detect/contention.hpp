#pragma once
/// \file
/// `detect::contention_detector`: passive contention detection from the collectives' own timings (no
/// probe traffic). The seed (000) measures bandwidth with iPerf or DPDK; the active probe
/// (`topology::probe`) sends its own messages. This detector reads what the groups' synchronizations
/// cost anyway, and names the contended NICs (seed Fig. 6) and rack uplinks (Fig. 5) as a
/// `network_state`, which a policy with `observe` (DS-Sync) plans around. `to_network_state` turns the
/// active probe's report into the same state, so a policy takes either source.
///
/// Model. A group of g members that all-reduces S bytes per member with a ring moves 2(g-1)/g·S per
/// member in 2(g-1) steps, so its *rate* r = 2(g-1)/g·S / (T - 2(g-1)·α) is the bandwidth it got,
/// independent of its size (α: the per-step latency of the group's route, `detector_options::latency` and
/// `inter_latency`). Each link class has a
/// reference rate, the best seen for it: groups inside one rack (NIC-bound) and groups that span racks
/// (uplink-bound). A group is *slow* when r < `slow_ratio`·reference. So a larger group is never slow for
/// being larger.
///
/// Attribution, over the last `window` iterations. The candidate explanations are workers (a NIC: every
/// group with the worker is slow) and racks (an uplink: every rack-spanning group with a member of the
/// rack is slow). A candidate qualifies when at least `min_fraction` of its observations were slow (and it
/// has at least `min_observations`). Greedily, the qualified candidate that explains the most slow
/// observations is flagged, together with every candidate indistinguishable from it (the same slow
/// observations); the observations it explains are removed, and the search repeats. Indistinguishable
/// candidates are typical before any adjustment: with one inter-rack group of all racks' representatives,
/// a slow uplink slows the whole group, and every rack looks the same (and a pair that never changes cannot
/// tell its two NICs from its two uplinks). All are then flagged; DS-Sync pairs
/// them (`split_bottlenecks`), with pairs that change every iteration, and the next window sees only the
/// pairs with the contended rack slow, which leaves it alone flagged. A flag clears when its candidate no
/// longer qualifies, which undoes the adjustment once the contention ends.
///
/// All ranks must feed the same timings (every group's time: an allgather of each rank's own time, W
/// doubles per window, or a simulator's view) so that all plan from the same state.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "dssync/algorithms/grouping.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/network_state.hpp"
#include "dssync/topology/probe.hpp"

namespace dssync::detect {

/// One group's synchronization in one iteration.
struct group_timing {
  std::vector<int> members;  ///< the group's ranks
  double seconds = 0;        ///< its synchronize time (the slowest member's)
  double bytes = 0;          ///< bytes per member
};

/// Tuning of the detector.
struct detector_options {
  /// Iterations over which a contention must last to be flagged (and to clear once it is gone).
  std::size_t window = 8;
  /// A group is slow when its rate is below this fraction of its class's reference rate.
  double slow_ratio = 0.5;
  /// The fraction of a candidate's observations in the window that must be slow to flag it.
  double min_fraction = 0.9;
  /// The fewest observations in the window a candidate needs to be flagged.
  std::size_t min_observations = 2;
  /// The per-step latency α of a group inside one rack, subtracted 2(g-1) times from its time (0: none).
  double latency = 0;
  /// The per-step latency of a group across racks (a longer route); negative: `latency`.
  double inter_latency = -1;
  /// The reference rates (bytes/s) of groups inside one rack and of groups across racks, when known
  /// (from the topology's link speeds, or from the active probe, `topology::probe`); 0: learnt, as the
  /// best rate seen. A learnt reference cannot see a contention that is there from the first iteration.
  double intra_reference = 0;
  double inter_reference = 0;
};

/// What the detector saw of one group in one iteration.
struct observation {
  std::uint64_t iteration = 0;
  std::vector<int> members;
  bool spans_racks = false;
  double rate = 0;   ///< bytes/s, as the model above
  bool slow = false;
};

/// Passive contention detection over the racks of a topology (see the file comment).
class contention_detector {
 public:
  /// \throws invalid_argument if the racks do not partition 0..N-1 or an option is out of range.
  explicit contention_detector(algorithms::rack_list racks, detector_options o = {})
      : racks_(std::move(racks)), opt_(o) {
    n_ = algorithms::rank_count(racks_);
    algorithms::check_grouping("detect::contention_detector: racks", n_, racks_);
    if (opt_.window < 1) throw invalid_argument("detect::contention_detector: window must be at least 1");
    if (!(opt_.slow_ratio > 0 && opt_.slow_ratio < 1))
      throw invalid_argument("detect::contention_detector: slow_ratio " + std::to_string(opt_.slow_ratio) +
                             " must be in (0, 1)");
    if (!(opt_.min_fraction > 0 && opt_.min_fraction <= 1))
      throw invalid_argument("detect::contention_detector: min_fraction " + std::to_string(opt_.min_fraction) +
                             " must be in (0, 1]");
    if (!(opt_.latency >= 0)) throw invalid_argument("detect::contention_detector: latency must not be negative");
    if (!(opt_.intra_reference >= 0) || !(opt_.inter_reference >= 0))
      throw invalid_argument("detect::contention_detector: reference rates must not be negative");
    reference_[0] = opt_.intra_reference;
    reference_[1] = opt_.inter_reference;
    fixed_[0] = opt_.intra_reference > 0;
    fixed_[1] = opt_.inter_reference > 0;
    rack_.assign(static_cast<std::size_t>(n_), -1);
    for (std::size_t k = 0; k < racks_.size(); ++k)
      for (int r : racks_[k]) rack_[static_cast<std::size_t>(r)] = static_cast<int>(k);
  }

  /// Records iteration `iteration`'s groups and updates `state()`. Groups of one member carry no
  /// information and are skipped. \throws invalid_argument naming a member that is not a rank, a
  /// negative time or size, or an iteration older than the last one.
  const network_state& record(std::uint64_t iteration, std::span<const group_timing> groups) {
    if (recorded_ && iteration < last_)
      throw invalid_argument("detect::contention_detector: iteration " + std::to_string(iteration) +
                             " recorded after iteration " + std::to_string(last_));
    recorded_ = true;
    last_ = iteration;
    for (const auto& g : groups) {
      if (!(g.seconds >= 0) || !(g.bytes >= 0))
        throw invalid_argument("detect::contention_detector: a group's time (" + std::to_string(g.seconds) +
                               " s) and size (" + std::to_string(g.bytes) + " B) must not be negative");
      for (int r : g.members)
        if (r < 0 || r >= n_)
          throw invalid_argument("detect::contention_detector: member " + std::to_string(r) + " is not a rank of " +
                                 std::to_string(n_));
      if (g.members.size() < 2 || g.bytes <= 0) continue;
      observation o;
      o.iteration = iteration;
      o.members = g.members;
      for (int r : g.members) o.spans_racks = o.spans_racks || rack_of(r) != rack_of(g.members.front());
      const double m = static_cast<double>(g.members.size());
      const double alpha = o.spans_racks && opt_.inter_latency >= 0 ? opt_.inter_latency : opt_.latency;
      const double busy = std::max(g.seconds - 2 * (m - 1) * alpha, 1e-15);
      o.rate = 2 * (m - 1) / m * g.bytes / busy;
      if (!fixed_[o.spans_racks ? 1 : 0]) {
        double& ref = reference_[o.spans_racks ? 1 : 0];
        ref = std::max(ref, o.rate);
      }
      window_.push_back(std::move(o));
    }
    while (!window_.empty() && window_.front().iteration + opt_.window <= iteration) window_.pop_front();
    for (auto& o : window_) o.slow = o.rate < opt_.slow_ratio * reference_[o.spans_racks ? 1 : 0];
    attribute();
    return state_;
  }

  /// As `record`, from every rank's own synchronize time (`seconds[r]`, the group's time being its
  /// slowest member's) and the iteration's groups.
  const network_state& record_ranks(std::uint64_t iteration, const algorithms::grouping& groups,
                                    std::span<const double> seconds, double bytes) {
    if (seconds.size() != static_cast<std::size_t>(n_))
      throw invalid_argument("detect::contention_detector: " + std::to_string(seconds.size()) + " times for " +
                             std::to_string(n_) + " ranks");
    std::vector<group_timing> t;
    t.reserve(groups.size());
    for (const auto& g : groups) {
      double s = 0;
      for (int r : g)
        if (r >= 0 && r < n_) s = std::max(s, seconds[static_cast<std::size_t>(r)]);
      t.push_back({g, s, bytes});
    }
    return record(iteration, t);
  }

  /// As `record`, from every rank's entry into and exit from its synchronize (virtual or wall seconds on
  /// one clock): a group's time is from its last member's entry to its last member's exit, so a member
  /// that arrived late (its previous group was slower) does not make the group look slow.
  const network_state& record_spans(std::uint64_t iteration, const algorithms::grouping& groups,
                                    std::span<const double> entry, std::span<const double> exit, double bytes) {
    if (entry.size() != static_cast<std::size_t>(n_) || exit.size() != static_cast<std::size_t>(n_))
      throw invalid_argument("detect::contention_detector: " + std::to_string(entry.size()) + " entries and " +
                             std::to_string(exit.size()) + " exits for " + std::to_string(n_) + " ranks");
    std::vector<group_timing> t;
    t.reserve(groups.size());
    for (const auto& g : groups) {
      double in = -std::numeric_limits<double>::infinity(), out = in;
      for (int r : g)
        if (r >= 0 && r < n_) {
          in = std::max(in, entry[static_cast<std::size_t>(r)]);
          out = std::max(out, exit[static_cast<std::size_t>(r)]);
        }
      t.push_back({g, std::max(0.0, out - in), bytes});
    }
    return record(iteration, t);
  }

  /// The contention flagged now.
  [[nodiscard]] const network_state& state() const noexcept { return state_; }
  /// The observations in the window (oldest first).
  [[nodiscard]] const std::deque<observation>& observations() const noexcept { return window_; }
  /// The reference rate of groups inside one rack (`spans_racks = false`) or across racks.
  [[nodiscard]] double reference_rate(bool spans_racks) const noexcept { return reference_[spans_racks ? 1 : 0]; }
  [[nodiscard]] const detector_options& options() const noexcept { return opt_; }

 private:
  [[nodiscard]] int rack_of(int r) const { return rack_[static_cast<std::size_t>(r)]; }

  // A candidate: a worker (NIC) or a rack (uplink), and the observations it is in.
  struct candidate {
    bool rack = false;
    int id = 0;
    std::vector<std::size_t> in;  // indices into window_ of its observations
  };

  [[nodiscard]] bool touches(const candidate& c, const observation& o) const {
    if (!c.rack) return std::find(o.members.begin(), o.members.end(), c.id) != o.members.end();
    if (!o.spans_racks) return false;
    for (int r : o.members)
      if (rack_of(r) == c.id) return true;
    return false;
  }

  void attribute() {
    std::vector<candidate> cands;
    for (int w = 0; w < n_; ++w) cands.push_back({false, w, {}});
    for (int k = 0; k < static_cast<int>(racks_.size()); ++k) cands.push_back({true, k, {}});
    for (auto& c : cands)
      for (std::size_t i = 0; i < window_.size(); ++i)
        if (touches(c, window_[i])) c.in.push_back(i);
    std::vector<char> explained(window_.size(), 0);
    network_state next;
    std::vector<char> flagged(cands.size(), 0);
    while (true) {
      // The qualified candidate explaining the most unexplained slow observations.
      std::size_t best = cands.size(), best_cover = 0;
      std::vector<std::vector<std::size_t>> covers(cands.size());
      for (std::size_t c = 0; c < cands.size(); ++c) {
        if (flagged[c] || cands[c].in.size() < opt_.min_observations) continue;
        std::size_t slow = 0;
        for (std::size_t i : cands[c].in) slow += window_[i].slow;
        if (static_cast<double>(slow) < opt_.min_fraction * static_cast<double>(cands[c].in.size())) continue;
        for (std::size_t i : cands[c].in)
          if (window_[i].slow && !explained[i]) covers[c].push_back(i);
        if (covers[c].size() > best_cover) {
          best = c;
          best_cover = covers[c].size();
        }
      }
      if (best == cands.size()) break;
      for (std::size_t c = 0; c < cands.size(); ++c) {
        if (c != best && covers[c] != covers[best]) continue;
        flagged[c] = 1;
        (cands[c].rack ? next.slow_racks : next.slow_workers).push_back(cands[c].id);
        for (std::size_t i : covers[c]) explained[i] = 1;
      }
    }
    state_ = next.normalized();
  }

  algorithms::rack_list racks_;
  detector_options opt_;
  int n_ = 0;
  std::vector<int> rack_;
  std::deque<observation> window_;
  double reference_[2] = {0, 0};
  bool fixed_[2] = {false, false};
  network_state state_;
  std::uint64_t last_ = 0;
  bool recorded_ = false;
};

/// The contention the active probe found (`topology::contention_detector::report`), as the state a
/// policy observes: its NICs and rack uplinks, either direction. So `observe` takes either source.
[[nodiscard]] inline network_state to_network_state(const topology::contention_report& r) {
  network_state s;
  for (const auto& x : r.nics) s.slow_workers.push_back(x.id);
  for (const auto& x : r.uplinks) s.slow_racks.push_back(x.id);
  return s.normalized();
}

}  // namespace dssync::detect
