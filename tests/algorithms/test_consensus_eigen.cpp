// Consensus analysis (algorithms/consensus.hpp, Eigen and Boost.Graph): mixing matrices of groupings,
// their products over a period and spectral gaps; disagreement shrinking at the rate the gap predicts for
// every shuffle; exact averaging for digit grouping and the public code's 4-worker alternation; a
// disconnected sequence rejected, naming its parts.

#include <doctest/doctest.h>

#include <Eigen/Dense>

#include <dssync/algorithms/consensus.hpp>
#include <dssync/algorithms/ds_sync.hpp>
#include <dssync/algorithms/gossip.hpp>
#include <dssync/topology/racks.hpp>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace alg = dssync::algorithms;
namespace cons = dssync::algorithms::consensus;
using dssync::topology::leaf_spine;

namespace {

/// Random values, one row per rank (dims columns).
Eigen::MatrixXd random_state(int n, int dims, unsigned seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<double> d(-1.0, 1.0);
  Eigen::MatrixXd x(n, dims);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < dims; ++j) x(i, j) = d(g);
  return x;
}

/// Applies one iteration's group averaging to x directly (not through the matrix).
Eigen::MatrixXd average_groups(const Eigen::MatrixXd& x, const alg::grouping& g) {
  Eigen::MatrixXd y = x;
  for (const auto& grp : g) {
    Eigen::RowVectorXd mean = Eigen::RowVectorXd::Zero(x.cols());
    for (int r : grp) mean += x.row(r);
    mean /= static_cast<double>(grp.size());
    for (int r : grp) y.row(r) = mean;
  }
  return y;
}

/// Runs `periods` periods of `seq` on random values; checks the disagreement after each period is at most
/// (1 - gap) times the one before, and that it shrinks geometrically overall.
void check_contraction(int n, const std::vector<alg::grouping>& seq, int periods, const std::string& what) {
  const Eigen::MatrixXd P = cons::product(n, seq);
  const double gap = cons::spectral_gap(P);
  CAPTURE(what);
  CAPTURE(gap);
  REQUIRE(gap > 0.0);
  REQUIRE(gap <= 1.0 + 1e-12);
  Eigen::MatrixXd x = random_state(n, 3, 42);
  const double d0 = cons::disagreement(x);
  double before = d0;
  for (int k = 0; k < periods; ++k) {
    for (const auto& g : seq) x = average_groups(x, g);
    const double after = cons::disagreement(x);
    CHECK(after <= (1.0 - gap) * before + 1e-12);
    before = after;
  }
  if (gap < 1.0 - 1e-9) CHECK(before <= std::pow(1.0 - gap, periods) * d0 + 1e-12);
}

}  // namespace

TEST_SUITE_BEGIN("consensus");

TEST_CASE("mixing matrices are symmetric and doubly stochastic; the product is the sequence applied") {
  const alg::grouping g{{0, 2}, {1, 3, 4}};
  const auto w = cons::mixing_matrix(5, g);
  CHECK((w - w.transpose()).norm() < 1e-15);
  CHECK((w.rowwise().sum() - Eigen::VectorXd::Ones(5)).norm() < 1e-15);
  CHECK(w(1, 4) == doctest::Approx(1.0 / 3));
  CHECK(w(0, 1) == 0.0);
  const std::vector<alg::grouping> seq{g, {{0, 1}, {2}, {3, 4}}};
  const Eigen::MatrixXd x = random_state(5, 2, 1);
  CHECK((cons::product(5, seq) * x - average_groups(average_groups(x, seq[0]), seq[1])).norm() < 1e-14);
  CHECK_THROWS_AS((void)cons::mixing_matrix(4, {{0, 1}, {2}}), dssync::invalid_argument);
}

TEST_CASE("exact averaging: digit grouping in log_g N iterations, the 4-worker alternation in 2") {
  for (auto [g, n] : {std::pair{2, 8}, std::pair{2, 16}, std::pair{3, 9}, std::pair{3, 27}, std::pair{4, 16}}) {
    const alg::basic_ds_sync<alg::digit_grouping> p{.shuffle = {.g = g}};
    const leaf_spine t(1, n);
    const auto seq = cons::period_groupings(p, t);
    REQUIRE(static_cast<double>(seq.size()) == doctest::Approx(std::log(n) / std::log(g)));
    const auto P = cons::product(n, seq);
    CHECK((P - Eigen::MatrixXd::Constant(n, n, 1.0 / n)).norm() < 1e-12);
    CHECK(cons::spectral_gap(P) == doctest::Approx(1.0));
    // One iteration short of the period is not exact.
    CHECK(cons::spectral_gap(cons::product(n, {seq.begin(), seq.end() - 1})) < 0.5);
  }
  const std::vector<alg::grouping> alternation{{{0, 1}, {2, 3}}, {{0, 3}, {1, 2}}};
  const auto P = cons::product(4, alternation);
  CHECK((P - Eigen::MatrixXd::Constant(4, 4, 0.25)).norm() < 1e-15);
  const alg::basic_ds_sync<alg::fixed_sequence> pub{.shuffle = {alternation}};
  CHECK(cons::period_groupings(pub, leaf_spine(1, 4)) == alternation);
}

TEST_CASE("disagreement shrinks geometrically at the rate the spectral gap predicts, for every shuffle") {
  for (auto [C, G] : {std::pair{4, 4}, std::pair{3, 5}, std::pair{2, 3}, std::pair{8, 2}}) {
    const leaf_spine t(C, G);
    const int n = C * G;
    check_contraction(n, cons::period_groupings(alg::ds_sync{}, t), 12,
                      "rack rotation " + std::to_string(C) + "x" + std::to_string(G));
    alg::ds_sync adjusted;
    adjusted.observe({.slow_workers = {1}, .slow_racks = {0}});
    check_contraction(n, cons::period_groupings(adjusted, t), 12, "rack rotation, adjusted");
    const alg::basic_ds_sync<alg::digit_grouping> d3{.shuffle = {.g = 3}};
    check_contraction(n, cons::period_groupings(d3, t), 12, "digit 3 (uneven N)");
    // Random pairs have no period: take windows of 2 log2 N iterations.
    const alg::basic_ds_sync<alg::random_pairs> rp{.shuffle = {.seed = 9}};
    const auto window = static_cast<std::uint64_t>(2 * std::ceil(std::log2(n)));
    check_contraction(n, cons::groupings(rp, t, 0, window), 1, "random pairs window");
  }
  // Gossip's pairings (N = 6, period 5) through the same analysis, agreeing with gossip's own gap.
  std::vector<alg::grouping> seq;
  for (std::uint64_t it = 0; it < alg::gossip::period(6); ++it) seq.push_back(alg::gossip::groups(6, it));
  check_contraction(6, seq, 10, "gossip");
  CHECK(cons::spectral_gap(cons::product(6, seq)) ==
        doctest::Approx(alg::spectral_gap(alg::gossip::period_mixing(6))).epsilon(1e-6));
}

TEST_CASE("a grouping sequence whose union is disconnected is rejected, naming the parts") {
  const std::vector<alg::grouping> split{{{0, 1}, {2, 3}, {4}}, {{1, 0}, {3, 2}, {4}}};
  const auto parts = cons::connected_parts(5, split);
  CHECK(parts == std::vector<std::vector<int>>{{0, 1}, {2, 3}, {4}});
  CHECK(cons::spectral_gap(cons::product(5, split)) == doctest::Approx(0.0).epsilon(1e-9));
  CHECK_THROWS_WITH_AS(cons::require_consensus("test", 5, split),
                       doctest::Contains("disconnected into 3 parts {0,1} {2,3} {4}"), dssync::invalid_argument);
  const alg::basic_ds_sync<alg::fixed_sequence> p{.shuffle = {split}};
  CHECK_THROWS_WITH_AS((void)cons::period_groupings(p, leaf_spine(1, 5)), doctest::Contains("{2,3}"),
                       dssync::invalid_argument);
  CHECK_THROWS_AS((void)cons::period_groupings(alg::basic_ds_sync<alg::random_pairs>{}, leaf_spine(1, 4)),
                  dssync::invalid_argument);
  CHECK_NOTHROW(cons::require_consensus("test", 5, {{{0, 1, 2, 3, 4}}}));
}

TEST_CASE("rack rotation without the stagger never reaches consensus on racks of two; with it, it does") {
  const leaf_spine t(4, 2);
  const alg::basic_ds_sync<alg::rack_rotation> plain{.shuffle = {.staggered = false}};
  CHECK_THROWS_WITH_AS((void)cons::period_groupings(plain, t), doctest::Contains("2 parts {0,2,4,6} {1,3,5,7}"),
                       dssync::invalid_argument);
  CHECK(cons::spectral_gap(cons::product(8, cons::groupings(plain, t, 0, 2))) == doctest::Approx(0.0).epsilon(1e-9));
  const auto seq = cons::period_groupings(alg::ds_sync{}, t);
  CHECK(seq.size() == 4);
  CHECK(cons::spectral_gap(cons::product(8, seq)) > 0.1);
  // For racks of three or more the plain rotation connects too.
  CHECK_NOTHROW((void)cons::period_groupings(plain, leaf_spine(4, 3)));
}

TEST_SUITE_END();
