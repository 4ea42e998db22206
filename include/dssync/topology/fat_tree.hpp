#pragma once
/// \file
/// `topology::fat_tree`: the k-ary fat tree (Al-Fares et al. 2008).

#include <cstddef>
#include <string>
#include <vector>

#include "dssync/core/error.hpp"
#include "dssync/core/topology.hpp"
#include "dssync/topology/network.hpp"

namespace dssync::topology {

/// The k-ary fat tree, k even: k pods, each with k/2 edge and k/2 aggregation switches; (k/2)^2 core switches;
/// k^3/4 hosts, k/2 under each edge switch. Every switch has k ports and every cable uses link `l`.
///
/// Ranks run pod by pod, edge switch by edge switch: host h is in pod h / (k^2/4), under edge switch
/// h / (k/2) (numbered globally). Aggregation switch a of every pod is cabled to core switches
/// a·k/2 … a·k/2 + k/2 − 1. graph() has 5k^2/4 switches and 3k^3/4 cables.
class fat_tree {
 public:
  /// \throws invalid_argument if `k` is odd, below 2 or above 256.
  explicit fat_tree(int k, link l = {}) : k_(k), link_(l) {
    if (k < 2 || k % 2 != 0)
      throw invalid_argument("topology::fat_tree: k = " + std::to_string(k) + " must be even and at least 2");
    if (k > 256)
      throw invalid_argument("topology::fat_tree: k = " + std::to_string(k) + " exceeds the supported 256");
  }
  /// k^3/4 hosts.
  [[nodiscard]] int workers() const noexcept { return k_ * k_ * k_ / 4; }
  /// "fat_tree(k)", or "fat_tree(k,link=25Gb/s@5us)" when the link is not the default one.
  [[nodiscard]] std::string name() const {
    std::string s = "fat_tree(" + std::to_string(k_);
    if (link_ != link{}) s += ",link=" + detail::link_text(link_);
    return s + ")";
  }
  /// \throws invalid_argument unless `world == workers()`.
  void validate(int world) const { detail::check_topology_world(name(), workers(), world); }

  /// The switch port count k.
  [[nodiscard]] int k() const noexcept { return k_; }
  /// The link of every cable.
  [[nodiscard]] const link& cable() const noexcept { return link_; }
  /// k pods.
  [[nodiscard]] int pods() const noexcept { return k_; }
  /// k^2/2 edge switches in all.
  [[nodiscard]] int edge_switches() const noexcept { return k_ * k_ / 2; }
  /// k^2/2 aggregation switches in all.
  [[nodiscard]] int aggregation_switches() const noexcept { return k_ * k_ / 2; }
  /// (k/2)^2 core switches.
  [[nodiscard]] int core_switches() const noexcept { return (k_ / 2) * (k_ / 2); }
  /// The pod of `rank`. \throws invalid_argument if `rank` is not in 0..workers()-1.
  [[nodiscard]] int pod_of(int rank) const { return check(rank) / (k_ * k_ / 4); }
  /// The (global) edge switch of `rank`. \throws invalid_argument if `rank` is not in 0..workers()-1.
  [[nodiscard]] int edge_of(int rank) const { return check(rank) / (k_ / 2); }
  /// One group per edge switch: its k/2 hosts.
  [[nodiscard]] std::vector<std::vector<int>> racks() const {
    const int h = k_ / 2;
    std::vector<std::vector<int>> out(static_cast<std::size_t>(edge_switches()));
    for (int r = 0; r < workers(); ++r) out[static_cast<std::size_t>(r / h)].push_back(r);
    return out;
  }
  /// The vertex of edge switch `e` (global index) in graph().
  [[nodiscard]] std::size_t edge_vertex(int e) const noexcept { return static_cast<std::size_t>(workers() + e); }
  /// The vertex of aggregation switch `a` of pod `p` in graph().
  [[nodiscard]] std::size_t aggregation_vertex(int p, int a) const noexcept {
    return static_cast<std::size_t>(workers() + edge_switches() + p * (k_ / 2) + a);
  }
  /// The vertex of core switch `c` in graph().
  [[nodiscard]] std::size_t core_vertex(int c) const noexcept {
    return static_cast<std::size_t>(workers() + edge_switches() + aggregation_switches() + c);
  }
  /// The Boost.Graph network: hosts, then edge ("edge<p>.<e>"), aggregation ("agg<p>.<a>") and core
  /// ("core<c>") switches.
  [[nodiscard]] network graph() const {
    const int h = k_ / 2;
    network g;
    add_workers(g, workers());
    for (int p = 0; p < k_; ++p)
      for (int e = 0; e < h; ++e) add_switch(g, "edge" + std::to_string(p) + "." + std::to_string(e));
    for (int p = 0; p < k_; ++p)
      for (int a = 0; a < h; ++a) add_switch(g, "agg" + std::to_string(p) + "." + std::to_string(a));
    for (int c = 0; c < core_switches(); ++c) add_switch(g, "core" + std::to_string(c));
    for (int r = 0; r < workers(); ++r) add_cable(g, static_cast<std::size_t>(r), edge_vertex(r / h), link_);
    for (int p = 0; p < k_; ++p)
      for (int e = 0; e < h; ++e)
        for (int a = 0; a < h; ++a) add_cable(g, edge_vertex(p * h + e), aggregation_vertex(p, a), link_);
    for (int p = 0; p < k_; ++p)
      for (int a = 0; a < h; ++a)
        for (int m = 0; m < h; ++m) add_cable(g, aggregation_vertex(p, a), core_vertex(a * h + m), link_);
    return g;
  }

 private:
  int check(int rank) const {
    if (rank < 0 || rank >= workers())
      throw invalid_argument("topology " + name() + ": rank " + std::to_string(rank) + " is not in 0.." +
                             std::to_string(workers() - 1));
    return rank;
  }

  int k_;
  link link_;
};

static_assert(concepts::topology<fat_tree>);

}  // namespace dssync::topology
