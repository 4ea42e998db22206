// BML (algorithms::bcube) over MPI against MPI_Allreduce, nccl-tests style, in the same run.
//
//   mpiexec -n 4 --oversubscribe build/bench/bcube_mpi                        # BCube(2,2), shared memory
//   mpiexec -n 4 --oversubscribe --mca btl tcp,self build/bench/bcube_mpi     # TCP loopback
//
// The world of P ranks is seen as BCube(n,k) with n^k = P (4: (2,2); 8: (2,3); 9: (3,2); 2: (2,1); 3:
// (3,1)), or `--bcube NxK`. For each size the contenders, MPI_Allreduce(MPI_IN_PLACE, ...) and the dssync
// policies (default bml and ring), take turns on the same buffer: round j runs all of them once, in an
// order rotated by j, so drift in the machine's load hits all alike. Each timed call starts at an
// MPI_Barrier and its time is the max over ranks; the median over rounds is printed.
// x_MPI = time / MPI_Allreduce's time at the same size (< 1: faster than MPI).
//
// There is no BCube network here: the ranks share a machine (vader shared memory or TCP loopback), so
// BML's k parallel channels buy no extra ports. The comparison says what the BML schedule costs on
// ordinary hardware against a tuned MPI.
//
// Memory: peakRSS(MiB) is the max over ranks of the process peak RSS; staging(MiB) the max over ranks of
// the receive staging pool of that policy's own transport (each policy has its own transport::mpi), the
// memory dssync adds per rank beyond the user's buffer. Every dssync result is checked (exact integer
// valued floats) on every rank.
#include <mpi.h>

#include <dssync/dssync.hpp>
#include <dssync/transport/mpi.hpp>

#include "common.hpp"
#include "mpi_timing.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace {

using namespace dssync_bench;

struct config {
  std::vector<std::size_t> sizes;
  std::vector<std::string> policies{"bml", "ring"};
  int n = 0, k = 0;
  int iters = 0;  // 0: by size
  std::size_t segment = 0;
  bool check = true;
  std::string csv, svg;
};

int iterations_for(std::size_t bytes, int forced) {
  if (forced > 0) return forced;
  if (bytes <= (std::size_t{256} << 10)) return 60;
  if (bytes <= (std::size_t{4} << 20)) return 20;
  return 8;
}

/// n^k = p with k = 2 preferred, then 3, 4, ..., then 1. {0, 0} if none.
std::pair<int, int> shape_for(int p) {
  for (int k : {2, 3, 4, 5, 6, 1}) {
    const int n = static_cast<int>(std::lround(std::pow(static_cast<double>(p), 1.0 / k)));
    for (int c = std::max(2, n - 1); c <= n + 1; ++c) {
      long long w = 1;
      for (int i = 0; i < k; ++i) w *= c;
      if (w == p) return {c, k};
    }
  }
  return {0, 0};
}

void fill(std::vector<float>& v, int rank) {
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>((i % 7) + static_cast<std::size_t>(rank));
}

/// Sum over ranks of (i % 7 + r) = P (i % 7) + P(P-1)/2, exact in float. Every element up to 64K elements,
/// else a stride plus the last one.
bool check(const std::vector<float>& v, int p) {
  const std::size_t stride = v.size() <= (std::size_t{1} << 16) ? 1 : 61;
  auto ok = [&](std::size_t i) { return v[i] == static_cast<float>(p * static_cast<int>(i % 7) + p * (p - 1) / 2); };
  for (std::size_t i = 0; i < v.size(); i += stride)
    if (!ok(i)) return false;
  return v.empty() || ok(v.size() - 1);
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, p = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &p);
  config cfg;
  bool smoke = false;
  try {
    cli c("bcube_mpi", "BML (algorithms::bcube) and ring over MPI vs MPI_Allreduce (run under mpiexec; P = n^k ranks)");
    c.flag("--smoke", "one small size, 2 rounds (a ctest smoke run)")
        .option("--bcube", "NxK", "BCube shape; n^k must equal the world size (default: from the world size)")
        .option("--sizes", "MIN:MAX", "byte sizes, x4 steps (default 4K:64M)")
        .option("--policies", "LIST", "dssync policies: bml, ring (default both)")
        .option("--iters", "K", "timed rounds per size (default by size)")
        .option("--segment", "BYTES", "pipeline segment (options::segment_bytes)")
        .flag("--no-check", "skip the agreement exchange (options::check_agreement = false)")
        .option("--csv", "FILE", "also write the table as CSV (rank 0)")
        .option("--svg", "FILE", "plot busbw vs size (rank 0)");
    if (!c.parse(argc, argv)) {
      MPI_Finalize();
      return 0;
    }
    smoke = c.has("--smoke");
    std::tie(cfg.n, cfg.k) = shape_for(p);
    if (auto s = c.get("--bcube")) {
      const auto x = s->find('x');
      if (x == std::string::npos) throw std::invalid_argument("--bcube: \"" + *s + "\" is not NxK");
      cfg.n = static_cast<int>(parse_long(s->substr(0, x), "--bcube"));
      cfg.k = static_cast<int>(parse_long(s->substr(x + 1), "--bcube"));
    }
    long long w = cfg.n >= 2 && cfg.k >= 1 ? 1 : 0;
    for (int i = 0; i < cfg.k && w > 0 && w <= p; ++i) w *= cfg.n;
    if (w != p)
      throw std::invalid_argument("the world has " + std::to_string(p) + " ranks, which is no BCube(n,k) = n^k" +
                                  (cfg.n ? " (asked BCube(" + std::to_string(cfg.n) + "," + std::to_string(cfg.k) + "))" : ""));
    std::size_t lo = 4 << 10, hi = std::size_t{64} << 20;
    if (auto s = c.get("--sizes")) {
      std::tie(lo, hi) = parse_size_range(*s);
    }
    if (smoke) lo = hi = 64 << 10;
    cfg.sizes = size_sweep(lo, hi, 4);
    if (auto v = c.get("--policies")) cfg.policies = parse_list(*v);
    for (const auto& pol : cfg.policies)
      if (pol != "bml" && pol != "ring") throw std::invalid_argument("--policies: unknown \"" + pol + "\" (bml, ring)");
    if (auto k = c.get("--iters")) cfg.iters = static_cast<int>(parse_long(*k, "--iters"));
    if (smoke) cfg.iters = 2;
    if (auto s = c.get("--segment")) cfg.segment = parse_bytes(*s);
    cfg.check = !c.has("--no-check");
    if (auto f = c.get("--csv")) cfg.csv = *f;
    if (auto f = c.get("--svg")) cfg.svg = *f;
  } catch (const std::exception& e) {
    if (rank == 0) std::cerr << "bcube_mpi: " << e.what() << '\n';
    MPI_Finalize();
    return 2;
  }

  int status = 0;
  {
    // One transport per policy, so that each one's staging pool is its own.
    std::vector<std::unique_ptr<dssync::transport::mpi>> comms;
    for (std::size_t i = 0; i < cfg.policies.size(); ++i)
      comms.push_back(std::make_unique<dssync::transport::mpi>(MPI_COMM_WORLD));
    const dssync::topology::bcube bc(cfg.n, cfg.k);
    const dssync::topology::ring rg(p);
    dssync::options opt;
    if (cfg.segment) opt.segment_bytes = cfg.segment;
    opt.check_agreement = cfg.check;
    const char* btl = std::getenv("OMPI_MCA_btl");
    if (rank == 0) {
      std::cout << "# dssync bcube_mpi: " << p << " ranks as BCube(" << cfg.n << "," << cfg.k << "), float sum, segment "
                << human_bytes(static_cast<double>(opt.segment_bytes)) << ", agreement "
                << (opt.check_agreement ? "on" : "off") << ", btl " << (btl ? btl : "default (see mpiexec --mca)")
                << "\n# contenders take turns each round (order rotated per round); time = median over rounds of the "
                   "max over ranks; x_MPI = time / MPI_Allreduce time\n# load average "
                << load_average() << "\n";
    }
    table t({{"size(B)", 11}, {"count", 10}, {"type", 6}, {"redop", 5}, {"policy", 6}, {"time(us)", 10},
             {"algbw(GB/s)", 11}, {"busbw(GB/s)", 11}, {"MPI(us)", 10}, {"MPI_busbw", 9}, {"x_MPI", 6},
             {"peakRSS(MiB)", 12}, {"staging(MiB)", 12}});
    if (rank == 0) t.print_header(std::cout);
    std::vector<series> plot;
    for (const auto& pol : cfg.policies) plot.push_back({"dssync " + pol + " N=" + std::to_string(p), {}});
    plot.push_back({"MPI_Allreduce N=" + std::to_string(p), {}});
    progress prog(cfg.sizes.size(), rank == 0);
    std::size_t step = 0;
    const int contenders = static_cast<int>(cfg.policies.size()) + 1;  // index policies.size() = MPI
    for (std::size_t bytes : cfg.sizes) {
      prog.update(++step, size_label(bytes));
      const std::size_t count = bytes / sizeof(float);
      std::vector<float> buf(count);
      const int iters = iterations_for(bytes, cfg.iters);
      std::vector<std::vector<double>> times(static_cast<std::size_t>(contenders));
      std::vector<int> bad(cfg.policies.size(), 0);
      for (int round = -1; round < iters; ++round) {  // round -1: warm-up
        for (int o = 0; o < contenders; ++o) {
          const int c = (o + std::max(round, 0)) % contenders;
          fill(buf, rank);
          double s = 0;
          if (c == contenders - 1) {
            s = timed(MPI_COMM_WORLD, [&] {
              MPI_Allreduce(MPI_IN_PLACE, buf.data(), static_cast<int>(count), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
            });
          } else {
            auto& comm = *comms[static_cast<std::size_t>(c)];
            const bool is_bml = cfg.policies[static_cast<std::size_t>(c)] == "bml";
            s = timed(MPI_COMM_WORLD, [&] {
              if (is_bml)
                dssync::synchronize<dssync::algorithms::bcube>(comm, bc, buf, dssync::ops::sum{}, opt);
              else
                dssync::synchronize<dssync::algorithms::ring>(comm, rg, buf, dssync::ops::sum{}, opt);
            });
            if (!check(buf, p)) bad[static_cast<std::size_t>(c)] = 1;
          }
          if (round >= 0) times[static_cast<std::size_t>(c)].push_back(s);
        }
      }
      const double mpi_t = median(times.back());
      const double mpi_bus = static_cast<double>(bytes) / mpi_t / 1e9 * allreduce_bus_factor(p);
      double rss = static_cast<double>(peak_rss_bytes()), rss_max = 0;
      MPI_Allreduce(&rss, &rss_max, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
      if (rank == 0) prog.finish();
      for (std::size_t pi = 0; pi < cfg.policies.size(); ++pi) {
        int any = 0;
        MPI_Allreduce(&bad[pi], &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        if (any) status = 1;
        double stg = static_cast<double>(comms[pi]->staging_bytes()), stg_max = 0;
        MPI_Allreduce(&stg, &stg_max, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        const double tt = median(times[pi]);
        const double algbw = static_cast<double>(bytes) / tt / 1e9;
        const double busbw = algbw * allreduce_bus_factor(p);
        if (rank == 0) {
          t.row(std::cout, {std::to_string(bytes), std::to_string(count), "float", "sum", cfg.policies[pi],
                            fixed(tt * 1e6, 1), fixed(algbw, 3), fixed(busbw, 3), fixed(mpi_t * 1e6, 1),
                            fixed(mpi_bus, 3), fixed(tt / mpi_t, 2) + (any ? " WRONG" : ""),
                            fixed(rss_max / 1048576.0, 1), fixed(stg_max / 1048576.0, 2)});
          plot[pi].points.push_back({static_cast<double>(bytes), busbw});
        }
      }
      if (rank == 0) plot.back().points.push_back({static_cast<double>(bytes), mpi_bus});
    }
    if (rank == 0) {
      if (!cfg.csv.empty()) t.write_csv(cfg.csv);
      if (!cfg.svg.empty())
        write_svg_plot(cfg.svg, "BCube(" + std::to_string(cfg.n) + "," + std::to_string(cfg.k) + ") bml over MPI vs MPI_Allreduce",
                       "size (bytes)", "busbw (GB/s)", plot);
      std::cout << "# load average at end " << load_average() << "\n"
                << (status == 0 ? "# all results verified\n" : "# WRONG RESULTS\n");
    }
  }
  MPI_Finalize();
  return status;
}
