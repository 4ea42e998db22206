#pragma once
/// \file
/// `topology::leaf_spine`: racks of workers under top-of-rack switches, joined by one spine switch (two tiers,
/// oversubscribed uplinks). The spec string "racks:C,G" builds it.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "dssync/core/error.hpp"
#include "dssync/core/topology.hpp"
#include "dssync/topology/network.hpp"

namespace dssync::topology {

/// Two-tier racks: `racks` top-of-rack (ToR) switches with `per_rack` workers each, every ToR cabled to one
/// spine (core) switch.
///
/// Rank r lives in rack r / per_rack. Worker-ToR cables use link `intra`; ToR-spine cables use link `uplink`.
/// The oversubscription ratio is per_rack * intra.bandwidth / uplink.bandwidth (1 = non-blocking).
///
/// The class is not called `racks` because every topology has a `racks()` member (the rack groups), and C++
/// forbids a member function named after its class.
class leaf_spine {
 public:
  /// \throws invalid_argument if `racks < 1`, `per_rack < 1` or the worker count exceeds 2^24.
  leaf_spine(int racks, int per_rack, link intra = {}, link uplink = {})
      : racks_(racks), per_rack_(per_rack), intra_(intra), uplink_(uplink) {
    if (racks < 1)
      throw invalid_argument("topology::leaf_spine: rack count " + std::to_string(racks) + " must be at least 1");
    if (per_rack < 1)
      throw invalid_argument("topology::leaf_spine: workers per rack " + std::to_string(per_rack) + " must be at least 1");
    if (static_cast<std::int64_t>(racks) * per_rack > (std::int64_t{1} << 24))
      throw invalid_argument("topology::leaf_spine: " + std::to_string(racks) + " racks of " + std::to_string(per_rack) +
                             " workers exceed the supported 16777216 workers");
  }
  [[nodiscard]] int workers() const noexcept { return racks_ * per_rack_; }
  /// "racks(CxG,intra=100Gb/s,uplink=25Gb/s)"; a link's latency follows "@" when it is not the default.
  [[nodiscard]] std::string name() const {
    return "racks(" + std::to_string(racks_) + "x" + std::to_string(per_rack_) +
           ",intra=" + detail::link_text(intra_) + ",uplink=" + detail::link_text(uplink_) + ")";
  }
  /// \throws invalid_argument unless `world == workers()`.
  void validate(int world) const { detail::check_topology_world(name(), workers(), world); }

  /// Number of racks (C).
  [[nodiscard]] int racks_count() const noexcept { return racks_; }
  /// Workers per rack (G).
  [[nodiscard]] int per_rack() const noexcept { return per_rack_; }
  /// The worker-ToR link.
  [[nodiscard]] const link& intra() const noexcept { return intra_; }
  /// The ToR-spine link.
  [[nodiscard]] const link& uplink() const noexcept { return uplink_; }
  /// Worker-ToR bandwidth in bytes/s.
  [[nodiscard]] double intra_bandwidth() const noexcept { return intra_.bandwidth; }
  /// ToR-spine bandwidth in bytes/s.
  [[nodiscard]] double uplink_bandwidth() const noexcept { return uplink_.bandwidth; }
  /// per_rack * intra bandwidth / uplink bandwidth.
  [[nodiscard]] double oversubscription() const noexcept {
    return per_rack_ * intra_.bandwidth / uplink_.bandwidth;
  }
  /// The rack of `rank`. \throws invalid_argument if `rank` is not in 0..workers()-1.
  [[nodiscard]] int rack_of(int rank) const {
    if (rank < 0 || rank >= workers())
      throw invalid_argument("topology " + name() + ": rank " + std::to_string(rank) + " is not in 0.." +
                             std::to_string(workers() - 1));
    return rank / per_rack_;
  }
  /// The C racks, each the G consecutive ranks under one ToR.
  [[nodiscard]] std::vector<std::vector<int>> racks() const {
    std::vector<std::vector<int>> out(static_cast<std::size_t>(racks_));
    for (int c = 0; c < racks_; ++c)
      for (int g = 0; g < per_rack_; ++g) out[static_cast<std::size_t>(c)].push_back(c * per_rack_ + g);
    return out;
  }
  /// The vertex of rack `c`'s ToR switch in graph().
  [[nodiscard]] std::size_t tor_vertex(int c) const noexcept {
    return static_cast<std::size_t>(workers()) + static_cast<std::size_t>(c);
  }
  /// The vertex of the spine switch in graph().
  [[nodiscard]] std::size_t spine_vertex() const noexcept {
    return static_cast<std::size_t>(workers()) + static_cast<std::size_t>(racks_);
  }
  /// The Boost.Graph network: C·G workers, then C ToRs ("tor<c>"), then the spine ("spine");
  /// C·G + C cables.
  [[nodiscard]] network graph() const {
    network g;
    add_workers(g, workers());
    for (int c = 0; c < racks_; ++c) add_switch(g, "tor" + std::to_string(c));
    add_switch(g, "spine");
    for (int r = 0; r < workers(); ++r) add_cable(g, static_cast<std::size_t>(r), tor_vertex(r / per_rack_), intra_);
    for (int c = 0; c < racks_; ++c) add_cable(g, tor_vertex(c), spine_vertex(), uplink_);
    return g;
  }

 private:
  int racks_;
  int per_rack_;
  link intra_;
  link uplink_;
};

static_assert(concepts::topology<leaf_spine>);

}  // namespace dssync::topology
