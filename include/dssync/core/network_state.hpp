#pragma once
/// \file
/// `dssync::network_state`: what the network looks like now, as a policy that re-plans from it
/// (`concepts::observing_policy`, DS-Sync's group adjustment) reads it. The active probe or the passive
/// detector fills it; a user can fill it by hand.

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace dssync {

/// The contended parts of the network, as DS-Sync's adjustment (seed 000, Fig. 5 and 6) needs them:
/// workers whose NIC is shared with another task, and racks whose uplink carries background flows.
/// A plain value: equal states plan equal schedules.
struct network_state {
  /// Ranks whose NIC is contended (seed Fig. 6: a worker's NIC shared with another task).
  std::vector<int> slow_workers{};
  /// Racks (indices into the topology's `racks()`) whose uplink is contended (seed Fig. 5).
  std::vector<int> slow_racks{};

  /// Whether nothing is contended.
  [[nodiscard]] bool empty() const noexcept { return slow_workers.empty() && slow_racks.empty(); }

  /// Whether rank `r`'s NIC is contended.
  [[nodiscard]] bool slow_worker(int r) const noexcept {
    return std::find(slow_workers.begin(), slow_workers.end(), r) != slow_workers.end();
  }
  /// Whether rack `k`'s uplink is contended.
  [[nodiscard]] bool slow_rack(int k) const noexcept {
    return std::find(slow_racks.begin(), slow_racks.end(), k) != slow_racks.end();
  }

  /// The state with both lists sorted and without duplicates (what `key` and `operator==` compare).
  [[nodiscard]] network_state normalized() const {
    network_state s = *this;
    for (auto* v : {&s.slow_workers, &s.slow_racks}) {
      std::sort(v->begin(), v->end());
      v->erase(std::unique(v->begin(), v->end()), v->end());
    }
    return s;
  }

  /// A short text naming the state, for cache keys and logs: "" when nothing is contended, else
  /// "nic:3,7;uplink:0".
  [[nodiscard]] std::string key() const {
    if (empty()) return {};
    const auto s = normalized();
    std::string out = "nic:";
    auto list = [&out](const std::vector<int>& v) {
      for (std::size_t i = 0; i < v.size(); ++i) {
        if (i) out += ',';
        out += std::to_string(v[i]);
      }
    };
    list(s.slow_workers);
    out += ";uplink:";
    list(s.slow_racks);
    return out;
  }

  friend bool operator==(const network_state& a, const network_state& b) {
    const auto x = a.normalized(), y = b.normalized();
    return x.slow_workers == y.slow_workers && x.slow_racks == y.slow_racks;
  }
};

}  // namespace dssync
