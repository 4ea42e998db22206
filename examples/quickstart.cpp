// dssync quickstart: all-reduce "gradients" across 8 in-process workers with the ring policy.
//
//   quickstart [--workers N] [--count ELEMENTS]
//
// Each worker is a thread with its own communicator on a dssync::transport::inproc::world. Every
// training step, each worker computes a gradient-like vector (sin(i*0.001) + rank + step) and calls
//
//   dssync::synchronize<dssync::algorithms::ring>(
//       comm, dssync::topology::ring(N), grads, dssync::ops::sum{});
//
// after which every worker holds the element-wise sum over all workers. The example checks each
// element against a sequential oracle, checks that all workers are bitwise identical, prints the
// plan rank 0 runs, and prints one nccl-tests style line. It exits non-zero on any mismatch.

#include <algorithm>
#include <barrier>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <iomanip>
#include <iostream>
#include <string>
#include <vector>

#include <dssync/dssync.hpp>

namespace {

long parse_positive(const char* flag, const char* text) {
  char* end = nullptr;
  const long v = std::strtol(text, &end, 10);
  if (end == text || *end != '\0' || v < 1) {
    std::cerr << "quickstart: " << flag << " needs a positive integer, got \"" << text << "\"\n";
    std::exit(2);
  }
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  int workers = 8;
  std::size_t count = std::size_t{4} << 20;  // 4 Mi floats = 16 MiB per worker
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if ((a == "--workers" || a == "--count") && i + 1 < argc) {
      const long v = parse_positive(argv[i], argv[i + 1]);
      ++i;
      if (a == "--workers")
        workers = static_cast<int>(std::min(v, 1024L));
      else
        count = static_cast<std::size_t>(v);
    } else if (a == "--help" || a == "-h") {
      std::cout << "usage: quickstart [--workers N] [--count ELEMENTS]   (defaults: 8 workers, 4194304 floats)\n";
      return 0;
    } else {
      std::cerr << "quickstart: unknown argument \"" << a << "\" (usage: quickstart [--workers N] [--count N])\n";
      return 2;
    }
  }

  constexpr int steps = 4;  // "training steps"; the first one also warms up (plan cache, page faults)
  const auto n = static_cast<std::size_t>(workers);

  // Gradient-like values: a smooth signal shared by all workers plus a rank- and step-dependent offset.
  std::vector<float> base(count);
  for (std::size_t i = 0; i < count; ++i) base[i] = std::sin(static_cast<float>(i) * 0.001f);
  auto gradient = [&](std::size_t i, int rank, int step) {
    return base[i] + static_cast<float>(rank) + static_cast<float>(step);
  };

  std::vector<std::vector<float>> grads(n);  // one buffer per worker, kept for checking afterwards
  std::vector<double> step_us(steps);
  std::chrono::steady_clock::time_point step_start;
  std::vector<std::chrono::steady_clock::time_point> step_end(n);
  std::size_t bad_elements = 0, bad_ranks = 0;
  int step_of_record = 0;

  // Workers meet at this barrier before each step; its completion stamps the step's start, so a step's
  // time runs from "everyone may start" to "the last worker returned".
  std::barrier sync_point(workers, [&]() noexcept { step_start = std::chrono::steady_clock::now(); });

  dssync::transport::inproc::world world(workers);
  try {
    for (int step = 0; step < steps; ++step) {
      world.run([&](dssync::transport::inproc::communicator& comm) {
        const int rank = comm.rank();
        auto& g = grads[static_cast<std::size_t>(rank)];
        g.resize(count);
        for (std::size_t i = 0; i < count; ++i) g[i] = gradient(i, rank, step);

        sync_point.arrive_and_wait();
        dssync::synchronize<dssync::algorithms::ring>(
            comm, dssync::topology::ring(comm.size()), g, dssync::ops::sum{});
        step_end[static_cast<std::size_t>(rank)] = std::chrono::steady_clock::now();
      });
      step_us[static_cast<std::size_t>(step)] =
          std::chrono::duration<double, std::micro>(*std::max_element(step_end.begin(), step_end.end()) - step_start)
              .count();

      // Check against a sequential oracle (float sum in rank order; the ring adds in another order, so
      // allow a few ulps of the magnitudes involved) and that all workers are bitwise identical.
      for (std::size_t i = 0; i < count; ++i) {
        float want = 0, magnitude = 0;
        for (int r = 0; r < workers; ++r) {
          want += gradient(i, r, step);
          magnitude += std::fabs(gradient(i, r, step));
        }
        const float got = grads[0][i];
        if (!(std::fabs(got - want) <= 4.0f * static_cast<float>(workers) * 1.2e-7f * magnitude + 1e-6f)) {
          if (bad_elements++ < 5)
            std::cerr << "quickstart: step " << step << " element " << i << ": got " << got << ", expected " << want
                      << '\n';
        }
      }
      for (std::size_t r = 1; r < n; ++r)
        if (std::memcmp(grads[r].data(), grads[0].data(), count * sizeof(float)) != 0) {
          if (bad_ranks++ < 5)
            std::cerr << "quickstart: step " << step << ": rank " << r << " differs from rank 0\n";
        }
      step_of_record = step;
    }
  } catch (const std::exception& e) {
    std::cerr << "quickstart: synchronize failed: " << e.what() << '\n';
    return 1;
  }

  // The plan rank 0 runs, shown for a 16-element buffer so that it fits on a screen.
  std::cout << "Plan of rank 0 (ring allreduce, " << workers << " workers, 16 elements):\n";
  dssync::print(std::cout, dssync::algorithms::ring::build(workers, 16), 0);
  std::cout << '\n';

  // One nccl-tests style line: the best of the steps after the first (warm-up) one.
  const double best_us = *std::min_element(step_us.begin() + 1, step_us.end());
  const double bytes = static_cast<double>(count * sizeof(float));
  const double algbw = bytes / (best_us * 1e-6) / 1e9;
  const double busbw = workers > 1 ? algbw * 2.0 * (workers - 1) / workers : 0.0;
  std::cout << "#" << std::setw(11) << "size" << std::setw(12) << "count" << std::setw(7) << "type" << std::setw(6)
            << "redop" << std::setw(4) << "N" << std::setw(12) << "time(us)" << std::setw(12) << "algbw(GB/s)"
            << std::setw(12) << "busbw(GB/s)" << '\n';
  std::cout << std::setw(12) << static_cast<std::size_t>(bytes) << std::setw(12) << count << std::setw(7) << "float"
            << std::setw(6) << "sum" << std::setw(4) << workers << std::fixed << std::setprecision(1) << std::setw(12)
            << best_us << std::setprecision(3) << std::setw(12) << algbw << std::setw(12) << busbw << '\n';
  std::cout << "(best of steps 1.." << step_of_record << "; busbw = algbw * 2(N-1)/N)\n";

  if (bad_elements != 0 || bad_ranks != 0) {
    std::cerr << "quickstart: FAILED: " << bad_elements << " wrong elements, " << bad_ranks
              << " rank buffers differing from rank 0\n";
    return 1;
  }
  std::cout << "quickstart: OK (" << workers << " workers, " << count << " floats, " << steps
            << " steps, every element checked against a sequential sum, all ranks bitwise identical)\n";
  return 0;
}
