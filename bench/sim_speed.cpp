// Simulator speed: wall time and peak memory of dssync::sim::simulate playing ring and hierarchical
// allreduce on racks (two-tier leaf/spine) of 64, 256, 1024 and 4096 workers.
//
// For each policy and N, the racks are C x G (G = the largest divisor of N not above sqrt(N)), worker
// links 100 Gbit/s, 1 us, ToR uplinks G x 100 Gbit/s / oversubscription (default 4), 1 us. The
// schedule is planned (timed separately, "plan(s)") and then simulated at message granularity
// ("wall(s)", and the process CPU time "cpu(s)", steadier on a shared machine): every send becomes a
// flow, flows share links max-min fairly. The target is N = 1024 in at most 5 s of wall time. The growth
// exponents between successive N are d log(cpu) / d log(N) and d log(cpu) / d log(flows); a simulator
// that is linear in the number of flows shows the latter near 1. Sizes below ~10 ms are too short to
// give meaningful exponents.
//
// Memory: peakRSS(MiB) is the peak resident set of the config (schedule + simulation), sim(MiB) the part
// the simulation adds on top of the planned schedule. Ring's schedule itself holds 4N(N-1) steps of 24
// bytes (1.6 GiB at N = 4096), which dominates the peak there.
//
// Options: --smoke (tiny: N = 16, 64; schedules verified; a few seconds; run by ctest), --max N
// (largest N, default 4096), --bytes S (per worker, default 64M), --oversub K, --policies ring,hierarchical,
// --csv FILE, --trace FILE (Chrome trace JSON of the first config, for Perfetto).

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <fstream>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include <malloc.h>
#include <time.h>

#include <dssync/algorithms/hierarchical.hpp>
#include <dssync/algorithms/ring.hpp>
#include <dssync/core/chunking.hpp>
#include <dssync/core/policy.hpp>
#include <dssync/core/schedule.hpp>
#include <dssync/core/verifier.hpp>
#include <dssync/sim/simulator.hpp>
#include <dssync/sim/timeline.hpp>
#include <dssync/topology/racks.hpp>

#include "common.hpp"

namespace {

using namespace dssync_bench;


// The one-line switches to the real classes:
using racks_topology = dssync::topology::leaf_spine;  // include/dssync/topology/racks.hpp
using hierarchical_policy = dssync::algorithms::hierarchical;

using clock_type = std::chrono::steady_clock;
double seconds_since(clock_type::time_point t) { return std::chrono::duration<double>(clock_type::now() - t).count(); }
/// CPU time of the process so far: on a shared machine it is steadier than wall time.
double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

/// C x G with G the largest divisor of n not above sqrt(n).
std::pair<int, int> shape(int n) {
  int g = static_cast<int>(std::floor(std::sqrt(static_cast<double>(n))));
  while (g > 1 && n % g != 0) --g;
  return {n / g, g};
}

struct row {
  std::string policy;
  int n = 0;
  std::size_t flows = 0;
  double wall = 0, cpu = 0;
};

int run(int argc, char** argv) {
  cli args("sim_speed", "Wall time and peak RSS of the flow-level simulator: ring and hierarchical allreduce on racks.");
  args.flag("--smoke", "tiny run (N = 16, 64; schedules verified); a few seconds")
      .option("--max", "N", "largest world size (default 4096); sizes are 64, 256, 1024, 4096 up to it, plus N")
      .option("--bytes", "S", "bytes per worker (default 64M)")
      .option("--oversub", "K", "rack uplink oversubscription (default 4)")
      .option("--policies", "LIST", "ring,hierarchical (default both)")
      .option("--csv", "FILE", "also write the table as CSV")
      .option("--trace", "FILE", "write the Chrome trace JSON of the first config (open in Perfetto)");
  if (!args.parse(argc, argv)) return 0;
  const bool smoke = args.has("--smoke");
  std::vector<int> sizes = smoke ? std::vector<int>{16, 64} : std::vector<int>{64, 256, 1024, 4096};
  if (auto m = args.get("--max")) {
    const int max = static_cast<int>(parse_long(*m, "--max"));
    if (max < 2) throw std::invalid_argument("--max: need at least 2 workers");
    sizes.erase(std::remove_if(sizes.begin(), sizes.end(), [&](int n) { return n > max; }), sizes.end());
    if (std::find(sizes.begin(), sizes.end(), max) == sizes.end()) sizes.push_back(max);
  }
  const std::size_t bytes = args.has("--bytes") ? parse_bytes(*args.get("--bytes")) : (std::size_t{64} << 20);
  const double oversub = args.has("--oversub") ? std::stod(*args.get("--oversub")) : 4.0;
  if (!(oversub > 0)) throw std::invalid_argument("--oversub: must be positive");
  const auto policies = args.has("--policies") ? parse_list(*args.get("--policies"))
                                               : std::vector<std::string>{"ring", "hierarchical"};
  for (const auto& p : policies)
    if (p != "ring" && p != "hierarchical") throw std::invalid_argument("--policies: unknown policy \"" + p + "\"");
  const std::size_t count = bytes / 4;

  std::cout << "# sim_speed: flow-level simulation of allreduce on racks (C x G workers, ToR per rack, one spine)\n"
            << "# bytes per worker " << human_bytes(static_cast<double>(bytes)) << " (float), worker links 100Gb/s 1us, "
            << "uplinks G x 100Gb/s / " << oversub << ", 1us; load average " << load_average() << "\n";
  table t({{"policy", 12}, {"N", 5}, {"racks", 7}, {"flows", 9}, {"events", 9}, {"plan(s)", 8}, {"wall(s)", 8},
           {"cpu(s)", 8}, {"sim_time(s)", 11}, {"peakRSS(MiB)", 12}, {"sim(MiB)", 8}, {"exp(N)", 6}, {"exp(flows)", 10}});
  t.print_header(std::cout);
  std::vector<row> rows;
  bool traced = false;
  double wall_1024 = -1;
  for (const auto& pol : policies) {
    const row* prev = nullptr;
    for (int n : sizes) {
      const auto [C, G] = shape(n);
      malloc_trim(0);
      const bool window = reset_peak_rss();
      const std::size_t rss_before = current_rss_bytes();
      const racks_topology topo(C, G, {12.5e9, 1e-6}, {12.5e9 * G / oversub, 1e-6});
      auto t0 = clock_type::now();
      const dssync::schedule s = pol == "ring" ? dssync::algorithms::ring{}.plan(topo, {count, 0})
                                               : hierarchical_policy{}.plan(topo, {count, 0});
      const double plan_s = seconds_since(t0);
      if (smoke) dssync::verify_or_throw(s);
      const std::size_t rss_planned = current_rss_bytes();
      dssync::sim::router r(topo.graph());
      dssync::sim::sim_options o;
      o.record_timeline = args.has("--trace") && !traced;
      o.name = pol + " on " + topo.name();
      t0 = clock_type::now();
      const double c0 = cpu_seconds();
      const auto res = dssync::sim::simulate(s, r, o);
      const double wall = seconds_since(t0), cpu = cpu_seconds() - c0;
      const std::size_t peak = window ? peak_rss_bytes() : std::max(current_rss_bytes(), rss_before);
      if (o.record_timeline) {
        std::ofstream f(*args.get("--trace"));
        dssync::sim::write_chrome_trace(f, res.trace);
        if (!f) throw std::runtime_error("cannot write " + *args.get("--trace"));
        traced = true;
      }
      if (!(res.completion_time > 0)) throw std::runtime_error("simulated time is not positive");
      rows.push_back({pol, n, res.flows, wall, cpu});
      std::string e_n = "", e_f = "";
      if (prev != nullptr && prev->cpu > 0 && cpu > 0) {
        e_n = fixed(std::log(cpu / prev->cpu) / std::log(static_cast<double>(n) / prev->n), 2);
        e_f = fixed(std::log(cpu / prev->cpu) / std::log(static_cast<double>(res.flows) / static_cast<double>(prev->flows)), 2);
      }
      t.row(std::cout, {pol, std::to_string(n), std::to_string(C) + "x" + std::to_string(G), std::to_string(res.flows),
                        std::to_string(res.events), fixed(plan_s, 3), fixed(wall, 3), fixed(cpu, 3),
                        fixed(res.completion_time, 6),
                        fixed(static_cast<double>(peak) / (1 << 20), 1),
                        fixed(static_cast<double>(peak > rss_planned ? peak - rss_planned : 0) / (1 << 20), 1), e_n, e_f});
      if (n == 1024 && pol == "ring") wall_1024 = wall;
      prev = &rows.back();
    }
  }
  if (wall_1024 >= 0)
    std::cout << "# target: ring on 1024 workers in <= 5 s: " << fixed(wall_1024, 3) << " s "
              << (wall_1024 <= 5.0 ? "PASS" : "MISS") << "\n";
  if (auto csv = args.get("--csv")) t.write_csv(*csv);
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return guarded_main("sim_speed", run, argc, argv); }
