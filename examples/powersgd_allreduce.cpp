// PowerSGD over an ordinary allreduce: 4 in-process workers compress a 256 x 192 gradient to rank 4
// (Vogels et al., NeurIPS 2019). PowerSGD's factors sum linearly, so each step is two ring allreduces,
// of P (256 x 4) and of Q (192 x 4), instead of one of the 49,152-element gradient:
//
//   codec.factor_p(grad, p);   synchronize<ring>(comm, ring(N), p, sum);   // P = sum of M_i Q
//   codec.factor_q(p, q);      synchronize<ring>(comm, ring(N), q, sum);   // Q = sum of M_i^T P^
//   codec.finish(p, q, N, update);                                         // P^ (Q / N)^T
//
// It checks that every worker ends each step with bitwise the same update, and that error feedback
// loses nothing: the updates applied so far plus the workers' mean residual equal the mean of all the
// gradients given (to float rounding). Exit status 0 when both hold.

#include <Eigen/Core>  // codecs/powersgd.hpp needs Eigen (this include tags the example for CMake)

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <iostream>
#include <random>
#include <vector>

#include <dssync/codecs/powersgd.hpp>
#include <dssync/dssync.hpp>

int main() {
  constexpr int workers = 4, steps = 30;
  constexpr std::size_t rows = 256, cols = 192, n = rows * cols, rank = 4;

  // Worker w's gradient at step t: a shared rank-2 signal, a worker's own rank-1 part, and noise.
  auto gradient = [&](int w, int t) {
    std::mt19937 rng(static_cast<unsigned>(1000 * w + t));
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> g(n);
    for (std::size_t i = 0; i < n; ++i) {
      const float r = static_cast<float>(i / cols) / rows, c = static_cast<float>(i % cols) / cols;
      g[i] = std::sin(3 * r + 0.1f * static_cast<float>(t)) * std::cos(2 * c) + 0.5f * r * c +
             0.2f * static_cast<float>(w + 1) * (r - 0.5f) * std::sin(5 * c) + 0.05f * nd(rng);
    }
    return g;
  };

  std::vector<dssync::codecs::powersgd<float>> codec(workers, dssync::codecs::powersgd<float>(rank, rows));
  for (auto& c : codec) c.state.seed = 2019;  // the same first Q on every worker
  std::vector<std::vector<float>> update(workers, std::vector<float>(n));
  std::vector<double> applied(n, 0.0), given(n, 0.0);
  std::size_t differing = 0;

  dssync::transport::inproc::world world(workers);
  try {
    for (int t = 0; t < steps; ++t) {
      world.run([&](dssync::transport::inproc::communicator& comm) {
        const int w = comm.rank();
        auto& c = codec[static_cast<std::size_t>(w)];
        const auto shape = c.shape_of(n);
        std::vector<float> p(shape.p_size()), q(shape.q_size());
        c.factor_p(gradient(w, t), p);
        dssync::synchronize<dssync::algorithms::ring>(comm, dssync::topology::ring(comm.size()), p, dssync::ops::sum{});
        c.factor_q(p, q);
        dssync::synchronize<dssync::algorithms::ring>(comm, dssync::topology::ring(comm.size()), q, dssync::ops::sum{});
        c.finish(p, q, static_cast<std::size_t>(comm.size()), update[static_cast<std::size_t>(w)]);
      });
      for (int w = 1; w < workers; ++w)
        if (std::memcmp(update[static_cast<std::size_t>(w)].data(), update[0].data(), n * sizeof(float)) != 0) ++differing;
      for (std::size_t i = 0; i < n; ++i) applied[i] += update[0][i];
      for (int w = 0; w < workers; ++w) {
        const auto g = gradient(w, t);
        for (std::size_t i = 0; i < n; ++i) given[i] += g[i] / workers;
      }
    }
  } catch (const std::exception& e) {
    std::cerr << "powersgd_allreduce: " << e.what() << '\n';
    return 1;
  }

  // Nothing lost: applied + mean residual = given.
  double worst = 0, scale = 0;
  for (std::size_t i = 0; i < n; ++i) {
    double residual = 0;
    for (const auto& c : codec) residual += c.state.residual[i] / workers;
    worst = std::max(worst, std::fabs(applied[i] + residual - given[i]));
    scale = std::max(scale, std::fabs(given[i]));
  }
  double kept = 0, total = 0;  // how much of the last step's mean gradient the update carries
  {
    std::vector<double> mean(n, 0.0);
    for (int w = 0; w < workers; ++w) {
      const auto g = gradient(w, steps - 1);
      for (std::size_t i = 0; i < n; ++i) mean[i] += g[i] / workers;
    }
    for (std::size_t i = 0; i < n; ++i) {
      kept += static_cast<double>(update[0][i]) * mean[i];
      total += mean[i] * mean[i];
    }
  }
  const auto shape = codec[0].shape_of(n);
  const double ratio = static_cast<double>(n) / static_cast<double>(shape.p_size() + shape.q_size());
  std::cout << "PowerSGD rank " << rank << ", " << workers << " workers, " << rows << " x " << cols << ", " << steps
            << " steps\n"
            << "  allreduced per step: " << shape.p_size() + shape.q_size() << " floats instead of " << n << " ("
            << ratio << "x less)\n"
            << "  last update along the mean gradient: " << kept / total << " of its squared norm\n"
            << "  error feedback: max |applied + mean residual - given| = " << worst << " (largest |given| " << scale
            << ")\n"
            << "  workers with a differing update: " << differing << '\n';
  const bool ok = differing == 0 && worst <= 1e-4 * (scale + 1);
  std::cout << (ok ? "OK\n" : "FAILED\n");
  return ok ? 0 : 1;
}
