#pragma once
/// \file
/// Consensus analysis of grouped averaging (DS-Sync, gossip), on Eigen and Boost.Graph (links
/// `dssync::eigen`). One iteration in which every group averages its members is the linear map x <- W x
/// with W[i][j] = 1/|G| for i, j in one group G (the *mixing matrix*: symmetric, doubly stochastic). A
/// sequence of groupings mixes as the product of its matrices. The disagreement x - mean(x) contracts
/// by at least σ₂ = ‖P - 11ᵀ/N‖₂ per application of a product P; `spectral_gap` is 1 - σ₂ (Boyd, Ghosh,
/// Prabhakar & Shah, "Randomized gossip algorithms", IEEE Trans. Inf. Theory 2006). A gap of 1 is exact
/// averaging; a gap of 0 means some disagreement never shrinks, which `require_consensus` turns into an
/// error naming the parts that never exchange information.

#include <Eigen/Dense>
#include <boost/graph/adjacency_list.hpp>
#include <boost/graph/connected_components.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "dssync/algorithms/grouping.hpp"
#include "dssync/core/error.hpp"

namespace dssync::algorithms::consensus {

/// The mixing matrix of one iteration of `g` over `n` ranks: W[i][j] = 1/|G| for i, j in group G.
/// \throws invalid_argument unless `g` partitions the ranks 0..n-1.
[[nodiscard]] inline Eigen::MatrixXd mixing_matrix(int n, const grouping& g) {
  check_grouping("consensus::mixing_matrix", n, g);
  Eigen::MatrixXd w = Eigen::MatrixXd::Zero(n, n);
  for (const auto& grp : g) {
    const double v = 1.0 / static_cast<double>(grp.size());
    for (int i : grp)
      for (int j : grp) w(i, j) = v;
  }
  return w;
}

/// The mixing of the sequence `seq` applied in order: W_{T-1} ··· W_1 W_0 (identity when empty).
[[nodiscard]] inline Eigen::MatrixXd product(int n, const std::vector<grouping>& seq) {
  Eigen::MatrixXd p = Eigen::MatrixXd::Identity(n, n);
  for (const auto& g : seq) p = mixing_matrix(n, g) * p;
  return p;
}

/// The spectral gap 1 - ‖w - 11ᵀ/n‖₂ of a doubly stochastic `w`: the least fraction of the disagreement
/// one application of `w` removes. 1 for n <= 1.
[[nodiscard]] inline double spectral_gap(const Eigen::MatrixXd& w) {
  const auto n = w.rows();
  if (n <= 1) return 1.0;
  const Eigen::MatrixXd d = w - Eigen::MatrixXd::Constant(n, n, 1.0 / static_cast<double>(n));
  const double sigma = Eigen::BDCSVD<Eigen::MatrixXd>(d).singularValues()(0);
  return std::max(0.0, 1.0 - sigma);
}

/// ‖x - mean(x)‖₂: how far the ranks' values (one per rank, or one row per rank) are from consensus.
[[nodiscard]] inline double disagreement(const Eigen::MatrixXd& x) {
  if (x.rows() == 0) return 0.0;
  const Eigen::RowVectorXd mean = x.colwise().mean();
  return (x.rowwise() - mean).norm();
}

/// The parts of ranks 0..n-1 that exchange information over `seq` (connected components of the union of
/// its groups), each sorted, in order of their lowest rank. One part means the sequence reaches consensus
/// when repeated (every product of a period has a gap > 0).
[[nodiscard]] inline std::vector<std::vector<int>> connected_parts(int n, const std::vector<grouping>& seq) {
  using graph = boost::adjacency_list<boost::vecS, boost::vecS, boost::undirectedS>;
  graph u(static_cast<std::size_t>(n > 0 ? n : 0));
  for (const auto& g : seq) {
    check_grouping("consensus::connected_parts", n, g);
    for (const auto& grp : g)
      for (std::size_t i = 1; i < grp.size(); ++i)
        boost::add_edge(static_cast<std::size_t>(grp[0]), static_cast<std::size_t>(grp[i]), u);
  }
  std::vector<int> comp(static_cast<std::size_t>(n > 0 ? n : 0));
  const int parts = n > 0 ? static_cast<int>(boost::connected_components(u, comp.data())) : 0;
  std::vector<std::vector<int>> out(static_cast<std::size_t>(parts));
  for (int r = 0; r < n; ++r) out[static_cast<std::size_t>(comp[static_cast<std::size_t>(r)])].push_back(r);
  std::sort(out.begin(), out.end());
  return out;
}

/// Checks that repeating `seq` brings ranks 0..n-1 to consensus: the union of its groups connects them.
/// \throws invalid_argument naming `who` and the parts that never exchange information.
inline void require_consensus(std::string_view who, int n, const std::vector<grouping>& seq) {
  const auto parts = connected_parts(n, seq);
  if (parts.size() <= 1) return;
  std::string msg = std::string(who) + ": the groupings never reach consensus over " + std::to_string(n) +
                    " ranks: their union is disconnected into " + std::to_string(parts.size()) + " parts";
  for (const auto& p : parts) msg += ' ' + to_string(grouping{p});
  throw invalid_argument(msg);
}

/// The groupings of iterations first, first+1, ..., first+count-1 of a policy with `groups(t, it)`
/// (`basic_ds_sync`, `gossip`-like policies with such a member).
template <class Policy, class Topo>
[[nodiscard]] std::vector<grouping> groupings(const Policy& p, const Topo& t, std::uint64_t first, std::uint64_t count) {
  std::vector<grouping> seq;
  seq.reserve(static_cast<std::size_t>(count));
  for (std::uint64_t i = 0; i < count; ++i) seq.push_back(p.groups(t, first + i));
  return seq;
}

/// The groupings of one period of `p` on `t` from iteration `first`, checked to reach consensus.
/// \throws invalid_argument if the policy is aperiodic (period 0) or its period never reaches consensus.
template <class Policy, class Topo>
[[nodiscard]] std::vector<grouping> period_groupings(const Policy& p, const Topo& t, std::uint64_t first = 0) {
  const std::uint64_t T = p.period(t);
  if (T == 0) throw invalid_argument("consensus::period_groupings: the policy's groupings have no period");
  auto seq = groupings(p, t, first, T);
  require_consensus("consensus::period_groupings", t.workers(), seq);
  return seq;
}

}  // namespace dssync::algorithms::consensus
