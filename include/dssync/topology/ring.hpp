#pragma once
/// \file
/// `topology::ring`: N workers, each cabled to its two neighbours.

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "dssync/core/error.hpp"
#include "dssync/core/topology.hpp"
#include "dssync/topology/network.hpp"

namespace dssync::topology {

/// A ring of `n` workers; worker r is cabled to r+1 (mod n).
class ring {
 public:
  /// \throws invalid_argument if `n < 1`.
  explicit ring(int n, link l = {}) : n_(n), link_(l) {
    if (n < 1) throw invalid_argument("topology::ring: worker count " + std::to_string(n) + " must be at least 1");
  }
  [[nodiscard]] int workers() const noexcept { return n_; }
  /// "ring(n)", or "ring(n,link=25Gb/s@5us)" when the link is not the default one.
  [[nodiscard]] std::string name() const {
    std::string s = "ring(" + std::to_string(n_);
    if (!(link_ == link{})) s += ",link=" + detail::link_text(link_);
    return s + ")";
  }
  /// The link of every cable.
  [[nodiscard]] const link& cable() const noexcept { return link_; }
  /// The rack structure: one group of all ranks (no switch tiers).
  [[nodiscard]] std::vector<std::vector<int>> racks() const {
    std::vector<int> all(static_cast<std::size_t>(n_));
    for (int r = 0; r < n_; ++r) all[static_cast<std::size_t>(r)] = r;
    return {std::move(all)};
  }
  /// \throws invalid_argument unless `world == workers()`.
  void validate(int world) const {
    if (world != n_)
      throw invalid_argument("topology " + name() + " has " + std::to_string(n_) + " workers but the world has " +
                             std::to_string(world) + " ranks");
  }
  /// The Boost.Graph network: n workers, n cables (one for n = 2, none for n = 1).
  [[nodiscard]] network graph() const {
    network g;
    add_workers(g, n_);
    if (n_ == 2) add_cable(g, 0, 1, link_);
    if (n_ > 2)
      for (int r = 0; r < n_; ++r) add_cable(g, static_cast<std::size_t>(r), static_cast<std::size_t>((r + 1) % n_), link_);
    return g;
  }

 private:
  int n_;
  link link_;
};

static_assert(concepts::topology<ring>);

}  // namespace dssync::topology
