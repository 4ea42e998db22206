// Plan memory and planning time per rank: ring allreduce on N = 64 ... 16384 ranks, the whole-world plan
// (what every rank built before per-rank planning, and what the verifier, simulator and print() still use)
// against a rank's own part (`plan_request::rank`, what synchronize and the communicator build when they
// do not verify). The targets of spine v2: a rank's plan at N = 1024 within 1 MiB, at N = 16384 within
// 16 MiB.
//
// "plan(MiB)" counts the bytes the schedule's vectors hold (capacities × element sizes, the schedule
// object included), the same on every machine; "time(ms)" is the planner's wall time (median of 3).
// Built against headers without per-rank planning (the previous main, in a git worktree) it measures
// the whole-world plan only, so the two builds run side by side:
//
//   build/bench/plan_memory --max 16384 --whole-max 1024
//   g++ -std=c++20 -O3 -I/work/old/include -Ibench bench/plan_memory.cpp -o /tmp/plan_memory_old
//
// A second table plans DS-Sync (rack rotation, ring inside each group) per rank on sqrt(N) racks of
// sqrt(N), as every iteration regroups: the planning time per iteration (the median over 16 iterations,
// for rank 0 and rank N-1) and the memory of a rank's part. Target (issue 10): within 1 ms at N = 1024.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <iostream>
#include <string>
#include <vector>

#include <dssync/algorithms/ring.hpp>
#include <dssync/core/policy.hpp>
#include <dssync/core/schedule.hpp>
#include <dssync/topology/full_mesh.hpp>
#include <dssync/topology/racks.hpp>

#include "common.hpp"

#if __has_include(<dssync/communicator.hpp>)
#define DSSYNC_BENCH_PER_RANK 1
#else
#define DSSYNC_BENCH_PER_RANK 0
#endif
#if __has_include(<dssync/algorithms/ds_sync.hpp>)
#include <dssync/algorithms/ds_sync.hpp>
#define DSSYNC_BENCH_DS_SYNC 1
#else
#define DSSYNC_BENCH_DS_SYNC 0
#endif

namespace {

using namespace dssync_bench;

std::size_t plan_bytes(const dssync::schedule& s) {
  std::size_t b = sizeof(s) + s.policy.capacity() + s.ranks.capacity() * sizeof(dssync::rank_plan) +
                  s.hosts.capacity() * sizeof(int) + s.groups.capacity() * sizeof(std::vector<int>);
  for (const auto& g : s.groups) b += g.capacity() * sizeof(int);
  for (const auto& r : s.ranks) {
    b += r.channels.capacity() * sizeof(dssync::channel);
    for (const auto& c : r.channels) b += c.steps.capacity() * sizeof(dssync::step);
  }
  return b;
}

template <class F>
double median_ms(F&& f) {
  std::vector<double> t;
  for (int i = 0; i < 3; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return median(t);
}

}  // namespace

int main(int argc, char** argv) {
  int max_n = 16384, whole_max = 1024;
  try {
    cli c("plan_memory", "plan memory and planning time per rank, ring allreduce");
    c.flag("--smoke", "N = 64 and 256 only (a ctest smoke run)")
        .option("--max", "N", "largest N (default 16384)")
        .option("--whole-max", "N", "largest N of the whole-world plan (default 1024: 4N(N-1) steps)");
    if (!c.parse(argc, argv)) return 0;
    if (auto v = c.get("--max")) max_n = static_cast<int>(parse_long(*v, "--max"));
    if (auto v = c.get("--whole-max")) whole_max = static_cast<int>(parse_long(*v, "--whole-max"));
    if (c.has("--smoke")) max_n = whole_max = 256;
  } catch (const std::exception& e) {
    std::cerr << "plan_memory: " << e.what() << '\n';
    return 2;
  }
  const std::size_t count = std::size_t{1} << 24;  // 64 MiB of float; memory does not depend on it
  std::cout << "# plan_memory: ring allreduce, " << count << " elements, per-rank planning "
            << (DSSYNC_BENCH_PER_RANK ? "available" : "not available (whole-world plans only)") << "\n";
  table t({{"N", 7}, {"plan", 9}, {"steps", 12}, {"plan(MiB)", 11}, {"time(ms)", 10}});
  t.print_header(std::cout);
  int status = 0;
  for (int n = 64; n <= max_n; n *= 4) {
    const dssync::topology::full_mesh topo(n);
    if (n <= whole_max) {
      dssync::schedule s;
      const double ms = median_ms([&] { s = dssync::algorithms::ring{}.plan(topo, dssync::plan_request{count, 0}); });
      t.row(std::cout, {std::to_string(n), "whole", std::to_string(s.step_count()),
                        fixed(static_cast<double>(plan_bytes(s)) / 1048576.0, 3), fixed(ms, 2)});
    }
#if DSSYNC_BENCH_PER_RANK
    for (int r : {0, n - 1}) {
      dssync::plan_request q{count, 0};
      q.rank = r;
      dssync::schedule s;
      const double ms = median_ms([&] { s = dssync::algorithms::ring{}.plan(topo, q); });
      if (s.planned_rank != r || s.ranks[static_cast<std::size_t>(r)].step_count() !=
                                     4 * static_cast<std::size_t>(n - 1)) {
        std::cerr << "plan_memory: rank " << r << "'s part of N = " << n << " is wrong\n";
        status = 1;
      }
      t.row(std::cout, {std::to_string(n), "rank " + std::to_string(r), std::to_string(s.step_count()),
                        fixed(static_cast<double>(plan_bytes(s)) / 1048576.0, 3), fixed(ms, 2)});
    }
#endif
  }
#if DSSYNC_BENCH_DS_SYNC
  std::cout << "\n# ds_sync per rank (rack rotation, ring in each group) on sqrt(N) racks of sqrt(N): planning time\n"
               "# per iteration, median over 16 iterations\n";
  table d({{"N", 7}, {"racks", 9}, {"plan", 9}, {"steps", 9}, {"plan(MiB)", 11}, {"time(ms)", 10}});
  d.print_header(std::cout);
  for (int side = 8; side * side <= max_n; side *= 2) {
    const int n = side * side;
    const dssync::topology::leaf_spine topo(side, side);
    const dssync::algorithms::ds_sync p;
    for (int r : {0, n - 1}) {
      std::vector<double> ms;
      dssync::schedule s;
      for (std::uint64_t it = 0; it < 16; ++it) {
        dssync::plan_request q{count, it};
        q.rank = r;
        const auto t0 = std::chrono::steady_clock::now();
        s = p.plan(topo, q);
        ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
        const auto& g = dssync::algorithms::group_of(s.groups, r);
        if (s.planned_rank != r || s.ranks[static_cast<std::size_t>(r)].step_count() != 4 * (g.size() - 1)) {
          std::cerr << "plan_memory: ds_sync rank " << r << "'s part of N = " << n << " is wrong\n";
          status = 1;
        }
      }
      d.row(std::cout, {std::to_string(n), std::to_string(side) + "x" + std::to_string(side), "rank " + std::to_string(r),
                        std::to_string(s.step_count()), fixed(static_cast<double>(plan_bytes(s)) / 1048576.0, 3),
                        fixed(median(ms), 3)});
    }
  }
#endif
  return status;
}
