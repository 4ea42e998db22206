#pragma once
/// \file
/// `topology::ring`: N workers, each cabled to its two neighbours.

#include <string>

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
  [[nodiscard]] std::string name() const { return "ring(" + std::to_string(n_) + ")"; }
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
