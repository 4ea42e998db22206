#pragma once
/// \file
/// `topology::bcube`: BCube(n,k) as BML uses it (seed 003): n^k servers, k levels of n-port switches.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "dssync/core/error.hpp"
#include "dssync/core/topology.hpp"
#include "dssync/topology/network.hpp"

namespace dssync::topology {

/// BCube(n,k): n^k servers and k levels of n^(k-1) switches with n ports each. Every server has k ports,
/// one per level.
///
/// A server is addressed by base-n digits [v_{k-1} … v_0]; its rank is the address read as a base-n number,
/// so ranks are in address order. The level-i switch joins the n servers that differ only in digit i.
/// (The original BCube paper's BCube_k has k+1 levels; here, as in ALGORITHMS.md, k counts the levels.)
///
/// In graph(), the level-i switch of rank r is vertex n^k + i·n^(k-1) + s, where s is r's address with digit
/// i removed, read as a base-n number; it is labelled "s<i>.<s>". Every cable uses link `l`.
class bcube {
 public:
  /// \throws invalid_argument if `n < 1`, `k < 1` or n^k exceeds 2^24.
  bcube(int n, int k, link l = {}) : n_(n), k_(k), link_(l) {
    if (n < 1) throw invalid_argument("topology::bcube: n = " + std::to_string(n) + " must be at least 1");
    if (k < 1) throw invalid_argument("topology::bcube: k = " + std::to_string(k) + " must be at least 1");
    std::int64_t w = 1;
    for (int i = 0; i < k; ++i) {
      w *= n;
      if (w > (std::int64_t{1} << 24))
        throw invalid_argument("topology::bcube: n^k = " + std::to_string(n) + "^" + std::to_string(k) +
                               " servers exceed the supported 16777216");
    }
    workers_ = static_cast<int>(w);
  }
  /// n^k servers.
  [[nodiscard]] int workers() const noexcept { return workers_; }
  /// "bcube(n,k)", or "bcube(n,k,link=25Gb/s@5us)" when the link is not the default one.
  [[nodiscard]] std::string name() const {
    std::string s = "bcube(" + std::to_string(n_) + "," + std::to_string(k_);
    if (link_ != link{}) s += ",link=" + detail::link_text(link_);
    return s + ")";
  }
  /// \throws invalid_argument unless `world == workers()`.
  void validate(int world) const { detail::check_topology_world(name(), workers_, world); }

  /// Switch ports (servers per switch).
  [[nodiscard]] int n() const noexcept { return n_; }
  /// Levels (ports per server).
  [[nodiscard]] int k() const noexcept { return k_; }
  /// The link of every cable.
  [[nodiscard]] const link& cable() const noexcept { return link_; }
  /// n^(k-1) switches per level.
  [[nodiscard]] int switches_per_level() const noexcept { return workers_ / n_; }

  /// The address of `rank`: k digits, digit i (index i) is the level-i digit v_i.
  /// \throws invalid_argument if `rank` is not in 0..workers()-1.
  [[nodiscard]] std::vector<int> address(int rank) const {
    check_rank(rank);
    std::vector<int> d(static_cast<std::size_t>(k_));
    for (int i = 0; i < k_; ++i, rank /= n_) d[static_cast<std::size_t>(i)] = rank % n_;
    return d;
  }
  /// The rank of an address (digit i = level i).
  /// \throws invalid_argument if there are not k digits or a digit is not in 0..n-1.
  [[nodiscard]] int rank_of(const std::vector<int>& digits) const {
    if (digits.size() != static_cast<std::size_t>(k_))
      throw invalid_argument("topology " + name() + ": an address has " + std::to_string(k_) + " digits, not " +
                             std::to_string(digits.size()));
    int r = 0;
    for (int i = k_ - 1; i >= 0; --i) {
      const int d = digits[static_cast<std::size_t>(i)];
      if (d < 0 || d >= n_)
        throw invalid_argument("topology " + name() + ": address digit " + std::to_string(i) + " is " +
                               std::to_string(d) + ", not in 0.." + std::to_string(n_ - 1));
      r = r * n_ + d;
    }
    return r;
  }
  /// The n ranks on `rank`'s level-`level` switch, ordered by their digit `level` (so element j has digit j).
  /// \throws invalid_argument if `level` is not in 0..k-1 or `rank` not in 0..workers()-1.
  [[nodiscard]] std::vector<int> group(int level, int rank) const {
    check_level(level);
    check_rank(rank);
    const int stride = power(level);
    const int base = rank - ((rank / stride) % n_) * stride;
    std::vector<int> g(static_cast<std::size_t>(n_));
    for (int j = 0; j < n_; ++j) g[static_cast<std::size_t>(j)] = base + j * stride;
    return g;
  }
  /// All n^(k-1) groups of level `level`, ordered by their smallest rank.
  /// \throws invalid_argument if `level` is not in 0..k-1.
  [[nodiscard]] std::vector<std::vector<int>> groups(int level) const {
    check_level(level);
    std::vector<std::vector<int>> out;
    out.reserve(static_cast<std::size_t>(switches_per_level()));
    const int stride = power(level);
    for (int r = 0; r < workers_; ++r)
      if ((r / stride) % n_ == 0) out.push_back(group(level, r));
    return out;
  }
  /// The level-0 groups (n consecutive ranks on one level-0 switch).
  [[nodiscard]] std::vector<std::vector<int>> racks() const { return groups(0); }
  /// The index, within its level, of `rank`'s level-`level` switch (0..n^(k-1)-1).
  /// \throws invalid_argument if `level` is not in 0..k-1 or `rank` not in 0..workers()-1.
  [[nodiscard]] int switch_index(int level, int rank) const {
    check_level(level);
    check_rank(rank);
    const int stride = power(level);
    return (rank / (stride * n_)) * stride + rank % stride;
  }
  /// The vertex in graph() of `rank`'s level-`level` switch.
  [[nodiscard]] std::size_t switch_vertex(int level, int rank) const {
    return static_cast<std::size_t>(workers_) +
           static_cast<std::size_t>(level) * static_cast<std::size_t>(switches_per_level()) +
           static_cast<std::size_t>(switch_index(level, rank));
  }
  /// The Boost.Graph network: n^k servers, then the switches level by level; k·n^k cables, each server's
  /// cables in level order.
  [[nodiscard]] network graph() const {
    network g;
    add_workers(g, workers_);
    for (int i = 0; i < k_; ++i)
      for (int s = 0; s < switches_per_level(); ++s) add_switch(g, "s" + std::to_string(i) + "." + std::to_string(s));
    for (int r = 0; r < workers_; ++r)
      for (int i = 0; i < k_; ++i) add_cable(g, static_cast<std::size_t>(r), switch_vertex(i, r), link_);
    return g;
  }

 private:
  int power(int e) const noexcept {
    int p = 1;
    for (int i = 0; i < e; ++i) p *= n_;
    return p;
  }
  void check_rank(int rank) const {
    if (rank < 0 || rank >= workers_)
      throw invalid_argument("topology " + name() + ": rank " + std::to_string(rank) + " is not in 0.." +
                             std::to_string(workers_ - 1));
  }
  void check_level(int level) const {
    if (level < 0 || level >= k_)
      throw invalid_argument("topology " + name() + ": level " + std::to_string(level) + " is not in 0.." +
                             std::to_string(k_ - 1));
  }

  int n_;
  int k_;
  link link_;
  int workers_ = 1;
};

static_assert(concepts::topology<bcube>);

}  // namespace dssync::topology
