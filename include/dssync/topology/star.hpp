#pragma once
/// \file
/// `topology::star`: N workers cabled to one switch.

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "dssync/core/error.hpp"
#include "dssync/core/topology.hpp"
#include "dssync/topology/network.hpp"

namespace dssync::topology {

/// `n` workers, each cabled to one central switch (vertex `n`, labelled "sw") by a cable of link `l`.
class star {
 public:
  /// \throws invalid_argument if `n < 1`.
  explicit star(int n, link l = {}) : n_(n), link_(l) {
    if (n < 1) throw invalid_argument("topology::star: worker count " + std::to_string(n) + " must be at least 1");
  }
  [[nodiscard]] int workers() const noexcept { return n_; }
  /// "star(n)", or "star(n,link=25Gb/s@5us)" when the link is not the default one.
  [[nodiscard]] std::string name() const {
    std::string s = "star(" + std::to_string(n_);
    if (link_ != link{}) s += ",link=" + detail::link_text(link_);
    return s + ")";
  }
  /// \throws invalid_argument unless `world == workers()`.
  void validate(int world) const { detail::check_topology_world(name(), n_, world); }
  /// The link of every cable.
  [[nodiscard]] const link& cable() const noexcept { return link_; }
  /// The rack structure: one group of all ranks (they share the switch).
  [[nodiscard]] std::vector<std::vector<int>> racks() const {
    std::vector<int> all(static_cast<std::size_t>(n_));
    for (int r = 0; r < n_; ++r) all[static_cast<std::size_t>(r)] = r;
    return {std::move(all)};
  }
  /// The Boost.Graph network: n workers, then the switch; n cables.
  [[nodiscard]] network graph() const {
    network g;
    add_workers(g, n_);
    const auto sw = add_switch(g, "sw");
    for (int r = 0; r < n_; ++r) add_cable(g, static_cast<std::size_t>(r), sw, link_);
    return g;
  }

 private:
  int n_;
  link link_;
};

static_assert(concepts::topology<star>);

}  // namespace dssync::topology
