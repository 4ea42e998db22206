#pragma once
/// \file
/// `algorithms::gossip`: pairwise gossip averaging (seed 000, Table II, "Gossip"; Boyd et al., "Randomized
/// gossip algorithms", 2006; the pairwise exchange of D-PSGD/AD-PSGD): each iteration every worker
/// averages its parameters with one peer, and the pairing rotates from iteration to iteration. Also the
/// mixing matrices of those pairings and their spectral gap (plain loops, no Eigen).

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dssync/core/chunking.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/policy.hpp"
#include "dssync/core/schedule.hpp"

namespace dssync::algorithms {

/// A dense row-major matrix of doubles (mixing matrices).
using dense_matrix = std::vector<std::vector<double>>;

/// The product `a·b` of square matrices of equal size.
[[nodiscard]] inline dense_matrix mixing_product(const dense_matrix& a, const dense_matrix& b) {
  const std::size_t n = a.size();
  dense_matrix c(n, std::vector<double>(n, 0.0));
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t k = 0; k < n; ++k) {
      const double x = a[i][k];
      if (x == 0.0) continue;
      for (std::size_t j = 0; j < n; ++j) c[i][j] += x * b[k][j];
    }
  return c;
}

/// The spectral gap 1 - σ₂ of a doubly stochastic mixing matrix `w`, where σ₂ = ‖w - 11ᵀ/n‖₂ is the
/// factor by which one application of `w` at least contracts the disagreement x - mean(x) (Boyd et al.
/// 2006). 1 means exact averaging in one application; 0 means some disagreement is never reduced (e.g.
/// one gossip matching for n > 2, which leaves the pairs disconnected). σ₂ is found by power iteration on
/// (w-J)ᵀ(w-J), to about 1e-9; for n = 1 the gap is 1.
[[nodiscard]] inline double spectral_gap(const dense_matrix& w) {
  const std::size_t n = w.size();
  if (n <= 1) return 1.0;
  const double inv = 1.0 / static_cast<double>(n);
  dense_matrix m = w;
  for (auto& row : m)
    for (auto& x : row) x -= inv;
  std::vector<double> x(n), y(n), z(n);
  for (std::size_t i = 0; i < n; ++i) x[i] = std::sin(1.0 + 1.7 * static_cast<double>(i)) + 0.1;
  double lambda = 0.0;
  for (int it = 0; it < 20000; ++it) {
    double norm = 0;
    for (double v : x) norm += v * v;
    norm = std::sqrt(norm);
    if (norm < 1e-300) return 1.0;  // (w - J) annihilated the start vector: w averages exactly
    for (auto& v : x) v /= norm;
    for (std::size_t i = 0; i < n; ++i) {  // y = M x
      double s = 0;
      for (std::size_t j = 0; j < n; ++j) s += m[i][j] * x[j];
      y[i] = s;
    }
    for (std::size_t j = 0; j < n; ++j) {  // z = Mᵀ y
      double s = 0;
      for (std::size_t i = 0; i < n; ++i) s += m[i][j] * y[i];
      z[j] = s;
    }
    double next = 0;
    for (std::size_t i = 0; i < n; ++i) next += x[i] * z[i];  // Rayleigh quotient of MᵀM
    x.swap(z);
    if (it > 10 && std::fabs(next - lambda) <= 1e-15 + 1e-12 * std::fabs(next)) {
      lambda = next;
      break;
    }
    lambda = next;
  }
  return 1.0 - std::sqrt(std::max(0.0, lambda));
}

/// Pairwise gossip averaging.
///
/// Pairing of iteration t (`pairing`):
///  - N = 2^m: rank r pairs with r XOR 2^(t mod m) (a hypercube dimension per iteration). After any m
///    consecutive iterations every rank holds the exact mean (the product of the m mixing matrices is
///    11ᵀ/N).
///  - other N: the round-robin tournament (circle method) over N ranks, plus a dummy if N is odd, round
///    t mod (N-1) (N even) or t mod N (N odd); the rank paired with the dummy sits the iteration out.
///    Over one period every pair meets once.
///
/// Schedule of a pair a < b: the buffer is split in halves; a reduces the first half and b the second,
/// then each sends its reduced half back. Steps: a sends half 2 and reduces half 1 from b, sends half 1
/// and copies half 2 from b; b mirrors it. Two dependent steps (latency 2α), each moving S/2 each way
/// (transfer S·β per worker with full-duplex links; seed 000 bounds its gossip by 4S·β2). No rank
/// receives into a range it still has an unconsumed send of, so it cannot deadlock under rule 3. Both
/// members end bitwise identical; with `ops::average` they hold the pair's mean.
///
/// Semantics: `group_allreduce` with groups = the pairs and the singletons.
///
/// Iterations: the plan of a call uses iteration `q.iteration + calls`, and `calls` counts this
/// object's plans. So a policy object kept across training iterations and used through `synchronize`
/// (which asks for iteration 0) rotates its pairing every call; every rank must make the same calls.
/// Plans depend on the iteration, so they are not cached (`cacheable = false`).
struct gossip {
  static constexpr std::string_view name = "gossip";
  static constexpr bool cacheable = false;
  /// Each rank ends with its pair's average: a group allreduce, never a whole-world allreduce.
  static constexpr semantics promises = semantics::group_allreduce;

  /// Plans made so far by this object; added to the requested iteration.
  std::uint64_t calls = 0;

  /// Builds the schedule for `t.workers()` ranks, `q.count` elements, iteration `q.iteration + calls`,
  /// and advances `calls`.
  template <concepts::topology Topo>
  [[nodiscard]] schedule plan(const Topo& t, plan_request q) {
    return build(t.workers(), q.count, q.iteration + calls++);
  }

  /// Number of iterations after which the pairing repeats: log2 N for N = 2^m, N - 1 for other even N,
  /// N for odd N (1 for N ≤ 2).
  [[nodiscard]] static std::uint64_t period(int n) {
    check(n);
    if (n <= 2) return 1;
    if ((n & (n - 1)) == 0) {
      std::uint64_t m = 0;
      while ((1 << m) < n) ++m;
      return m;
    }
    return n % 2 == 0 ? static_cast<std::uint64_t>(n - 1) : static_cast<std::uint64_t>(n);
  }

  /// The partner of every rank in iteration `iteration`, -1 for a rank that sits out.
  /// \throws invalid_argument if `n < 1`.
  [[nodiscard]] static std::vector<int> pairing(int n, std::uint64_t iteration) {
    check(n);
    std::vector<int> partner(static_cast<std::size_t>(n), -1);
    if (n == 1) return partner;
    const std::uint64_t t = iteration % period(n);
    if ((n & (n - 1)) == 0) {
      for (int r = 0; r < n; ++r) partner[static_cast<std::size_t>(r)] = r ^ (1 << t);
      return partner;
    }
    const int m = n % 2 == 0 ? n : n + 1;  // participants; m-1 is fixed, the others rotate
    const int rot = m - 1;
    auto pair = [&](int a, int b) {
      if (a < n && b < n) {
        partner[static_cast<std::size_t>(a)] = b;
        partner[static_cast<std::size_t>(b)] = a;
      }
    };
    const int tt = static_cast<int>(t);
    pair(m - 1, tt);
    for (int k = 1; k < m / 2; ++k) pair((tt + k) % rot, (tt - k + rot) % rot);
    return partner;
  }

  /// The groups of iteration `iteration`: the pairs (lower rank first) and the singletons, by lowest rank.
  [[nodiscard]] static std::vector<std::vector<int>> groups(int n, std::uint64_t iteration) {
    const auto p = pairing(n, iteration);
    std::vector<std::vector<int>> g;
    for (int r = 0; r < n; ++r) {
      const int q = p[static_cast<std::size_t>(r)];
      if (q < 0) g.push_back({r});
      else if (r < q) g.push_back({r, q});
    }
    return g;
  }

  /// The mixing matrix W of iteration `iteration`: x ← W·x is what one gossip averaging does to the
  /// workers' values (W[a][b] = 1/2 within a pair, W[r][r] = 1 for a rank that sits out). Symmetric and
  /// doubly stochastic.
  [[nodiscard]] static dense_matrix mixing_matrix(int n, std::uint64_t iteration) {
    const auto p = pairing(n, iteration);
    dense_matrix w(static_cast<std::size_t>(n), std::vector<double>(static_cast<std::size_t>(n), 0.0));
    for (int r = 0; r < n; ++r) {
      const int q = p[static_cast<std::size_t>(r)];
      if (q < 0) {
        w[static_cast<std::size_t>(r)][static_cast<std::size_t>(r)] = 1.0;
      } else {
        w[static_cast<std::size_t>(r)][static_cast<std::size_t>(r)] = 0.5;
        w[static_cast<std::size_t>(r)][static_cast<std::size_t>(q)] = 0.5;
      }
    }
    return w;
  }

  /// The product W_{T-1}···W_0 over one period T = `period(n)` starting at iteration `first`: the mixing
  /// of one full rotation. Its `spectral_gap` is the contraction per period (1 for N = 2^m).
  [[nodiscard]] static dense_matrix period_mixing(int n, std::uint64_t first = 0) {
    dense_matrix p = mixing_matrix(n, first);
    for (std::uint64_t t = 1; t < period(n); ++t) p = mixing_product(mixing_matrix(n, first + t), p);
    return p;
  }

  /// The schedule for `n` ranks, `count` elements and iteration `iteration`.
  /// \throws invalid_argument if `n < 1`.
  [[nodiscard]] static schedule build(int n, std::size_t count, std::uint64_t iteration) {
    check(n);
    schedule s;
    s.policy = std::string(name);
    s.world_size = n;
    s.count = count;
    s.kind = semantics::group_allreduce;
    s.groups = groups(n, iteration);
    s.ranks.resize(static_cast<std::size_t>(n));
    const auto halves = partition(count, 2);
    for (const auto& g : s.groups) {
      if (g.size() != 2) continue;
      const int a = g[0], b = g[1];
      auto& sa = s.ranks[static_cast<std::size_t>(a)].channels.emplace_back().steps;
      auto& sb = s.ranks[static_cast<std::size_t>(b)].channels.emplace_back().steps;
      sa = {{step_kind::send, b, halves[1]},
            {step_kind::recv_reduce, b, halves[0]},
            {step_kind::send, b, halves[0]},
            {step_kind::recv_copy, b, halves[1]}};
      sb = {{step_kind::send, a, halves[0]},
            {step_kind::recv_reduce, a, halves[1]},
            {step_kind::send, a, halves[1]},
            {step_kind::recv_copy, a, halves[0]}};
    }
    s.drop_empty();
    return s;
  }

 private:
  static void check(int n) {
    if (n < 1) throw invalid_argument("algorithms::gossip: world size " + std::to_string(n) + " must be at least 1");
  }
};

}  // namespace dssync::algorithms
