#pragma once
/// \file
/// `topology::full_mesh`: N workers, every pair cabled directly (shared memory, NVSwitch).

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "dssync/core/error.hpp"
#include "dssync/core/topology.hpp"
#include "dssync/topology/network.hpp"

namespace dssync::topology {

/// A full mesh of `n` workers.
class full_mesh {
 public:
  /// \throws invalid_argument if `n < 1`.
  explicit full_mesh(int n, link l = {}) : n_(n), link_(l) {
    if (n < 1) throw invalid_argument("topology::full_mesh: worker count " + std::to_string(n) + " must be at least 1");
  }
  [[nodiscard]] int workers() const noexcept { return n_; }
  /// "full_mesh(n)", or "full_mesh(n,link=25Gb/s@5us)" when the link is not the default one.
  [[nodiscard]] std::string name() const {
    std::string s = "full_mesh(" + std::to_string(n_);
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
  /// The Boost.Graph network: n workers, n(n-1)/2 cables.
  [[nodiscard]] network graph() const {
    network g;
    add_workers(g, n_);
    for (int a = 0; a < n_; ++a)
      for (int b = a + 1; b < n_; ++b) add_cable(g, static_cast<std::size_t>(a), static_cast<std::size_t>(b), link_);
    return g;
  }

 private:
  int n_;
  link link_;
};

static_assert(concepts::topology<full_mesh>);

}  // namespace dssync::topology
