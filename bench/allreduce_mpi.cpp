// MPI allreduce benchmark, nccl-tests style: dssync's policies over transport::mpi and/or
// transport::mpi_shm (the MPI-3 shared window) against MPI_Allreduce on the same buffers, in the same run.
//
//   mpiexec -n 4 ./allreduce_mpi                       # shared memory (OpenMPI's default btl)
//   mpiexec -n 4 --mca btl tcp,self ./allreduce_mpi    # TCP loopback
//   mpiexec -n 2 ./allreduce_mpi --transport both --shm-buffers   # mpi and mpi_shm side by side
//
// Columns: size, count, type, redop, policy, time(us), algbw, busbw (nccl-tests definitions),
// MPI_Allreduce time, ratio ours/MPI (< 1 is faster), peak RSS and dssync's staging memory per rank.
#include <mpi.h>

#include <dssync/dssync.hpp>
#include <dssync/algorithms/tuning.hpp>
#include <dssync/transport/mpi.hpp>
#include <dssync/transport/mpi_shm.hpp>

#include "common.hpp"
#include "mpi_timing.hpp"

#include <algorithm>
#include <memory>
#include <span>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

namespace {

using namespace dssync_bench;

struct config {
  std::vector<std::size_t> sizes;
  std::vector<std::string> policies{"ring", "direct"};
  int iters = 0;  // 0: by size
  std::size_t segment = 0;
  bool check = true;
  std::vector<std::string> transports{"mpi"};
  bool shm_buffers = false;
  std::string csv, svg;
};

int iterations_for(std::size_t bytes, int forced) {
  if (forced > 0) return forced;
  if (bytes <= (std::size_t{1} << 20)) return 50;
  if (bytes <= (std::size_t{16} << 20)) return 10;
  return 4;
}

void fill(std::span<float> v, int rank) {
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>((i % 7) + static_cast<std::size_t>(rank));
}

bool check(std::span<const float> v, int n) {
  // sum over ranks of (i % 7 + r) = n (i % 7) + n(n-1)/2, exact in float for these magnitudes.
  const std::size_t probes[] = {0, v.size() / 3, v.size() / 2, v.size() > 0 ? v.size() - 1 : 0};
  for (std::size_t i : probes) {
    if (i >= v.size()) continue;
    const float want = static_cast<float>(n * static_cast<int>(i % 7) + n * (n - 1) / 2);
    if (v[i] != want) return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, n = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  config cfg;
  bool smoke = false;
  try {
    cli c("allreduce_mpi", "dssync allreduce over MPI vs MPI_Allreduce (run under mpiexec)");
    c.flag("--smoke", "one small size, 2 iterations (a ctest smoke run)")
        .option("--sizes", "MIN:MAX", "byte sizes, x4 steps (default 4K:256M)")
        .option("--policies", "LIST", "comma-separated policies (default ring,direct; auto: DSSYNC_TUNING_FILE's pick)")
        .option("--iters", "K", "timed iterations per size (default by size)")
        .option("--segment", "BYTES", "pipeline segment (options::segment_bytes)")
        .flag("--no-check", "skip the agreement exchange (options::check_agreement = false)")
        .option("--transport", "LIST", "mpi, shm (transport::mpi_shm) or both (default mpi)")
        .flag("--shm-buffers", "buffers in an mpi_shm window (allocate): on-node sends are read in place")
        .option("--csv", "FILE", "also write the table as CSV (rank 0)")
        .option("--svg", "FILE", "plot busbw vs size (rank 0)");
    if (!c.parse(argc, argv)) {
      MPI_Finalize();
      return 0;
    }
    smoke = c.has("--smoke");
    std::size_t lo = 4 << 10, hi = std::size_t{256} << 20;
    if (auto s = c.get("--sizes")) {
      std::tie(lo, hi) = parse_size_range(*s);
    }
    if (smoke) lo = hi = 64 << 10;
    cfg.sizes = size_sweep(lo, hi, 4);
    if (auto p = c.get("--policies")) cfg.policies = parse_list(*p);
    if (auto k = c.get("--iters")) cfg.iters = static_cast<int>(parse_long(*k, "--iters"));
    if (smoke) cfg.iters = 2;
    if (auto s = c.get("--segment")) cfg.segment = parse_bytes(*s);
    cfg.check = !c.has("--no-check");
    if (auto t = c.get("--transport")) {
      cfg.transports = *t == "both" ? std::vector<std::string>{"mpi", "shm"} : parse_list(*t);
      for (const auto& x : cfg.transports)
        if (x != "mpi" && x != "shm") throw std::runtime_error("--transport: \"" + x + "\" is not mpi, shm or both");
    }
    if (smoke) cfg.transports = {"mpi", "shm"};
    cfg.shm_buffers = c.has("--shm-buffers");
    if (auto f = c.get("--csv")) cfg.csv = *f;
    if (auto f = c.get("--svg")) cfg.svg = *f;
  } catch (const std::exception& e) {
    if (rank == 0) std::cerr << "allreduce_mpi: " << e.what() << '\n';
    MPI_Finalize();
    return 2;
  }

  int status = 0;
  {
    const bool use_shm = std::find(cfg.transports.begin(), cfg.transports.end(), "shm") != cfg.transports.end();
    std::unique_ptr<dssync::transport::mpi> mpi_comm;
    std::unique_ptr<dssync::transport::mpi_shm> shm_comm;
    if (std::find(cfg.transports.begin(), cfg.transports.end(), "mpi") != cfg.transports.end())
      mpi_comm = std::make_unique<dssync::transport::mpi>(MPI_COMM_WORLD);
    if (use_shm || cfg.shm_buffers) shm_comm = std::make_unique<dssync::transport::mpi_shm>(MPI_COMM_WORLD);
    dssync::options opt;
    if (cfg.segment) opt.segment_bytes = cfg.segment;
    opt.check_agreement = cfg.check;
    const char* btl = std::getenv("OMPI_MCA_btl");
    const std::size_t most = cfg.sizes.empty() ? 0 : *std::max_element(cfg.sizes.begin(), cfg.sizes.end()) / sizeof(float);
    // The buffers: ordinary memory, or (--shm-buffers) one window of mpi_shm, for every transport alike.
    std::vector<float> own(cfg.shm_buffers ? 0 : most);
    const std::span<float> mem = cfg.shm_buffers ? shm_comm->allocate<float>(most) : std::span<float>(own);
    if (rank == 0) {
      std::cout << "# dssync allreduce_mpi: " << n << " ranks, float sum, segment " << human_bytes(static_cast<double>(opt.segment_bytes))
                << ", agreement " << (opt.check_agreement ? "on" : "off") << ", btl " << (btl ? btl : "default (see mpiexec --mca)")
                << "\n# transports " << (cfg.transports.size() == 2 ? "mpi, shm" : cfg.transports[0]) << ", buffers "
                << (cfg.shm_buffers ? "in an mpi_shm window" : "std::vector");
      if (shm_comm)
        std::cout << ", shm: " << shm_comm->node_size() << " ranks on this node, arena "
                  << human_bytes(static_cast<double>(shm_comm->config().arena_bytes)) << ", " << shm_comm->config().slots
                  << " slots per pair";
      std::cout << "\n# load average " << load_average() << "\n";
    }
    table t({{"size(B)", 11}, {"count", 10}, {"type", 6}, {"redop", 5}, {"policy", 12}, {"time(us)", 10},
             {"algbw(GB/s)", 11}, {"busbw(GB/s)", 11}, {"MPI(us)", 10}, {"MPI_busbw", 9}, {"ours/MPI", 8},
             {"peakRSS(MiB)", 12}, {"staging(MiB)", 12}});
    if (rank == 0) t.print_header(std::cout);
    const bool label = cfg.transports.size() > 1;
    std::vector<series> plot;
    for (const auto& tr : cfg.transports)
      for (const auto& p : cfg.policies)
        plot.push_back({"dssync " + (label ? tr + ":" : std::string()) + p + " N=" + std::to_string(n), {}});
    plot.push_back({"MPI_Allreduce N=" + std::to_string(n), {}});
    progress prog(cfg.sizes.size() * cfg.policies.size() * cfg.transports.size(), rank == 0);
    std::size_t step = 0;
    for (std::size_t bytes : cfg.sizes) {
      const std::size_t count = bytes / sizeof(float);
      const std::span<float> buf = mem.first(count);
      const int iters = iterations_for(bytes, cfg.iters);
      // MPI_Allreduce on the same buffers, in place.
      std::vector<double> mpi_times;
      for (int it = -1; it < iters; ++it) {
        fill(buf, rank);
        const double s = timed(MPI_COMM_WORLD, [&] {
          MPI_Allreduce(MPI_IN_PLACE, buf.data(), static_cast<int>(count), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        });
        if (it >= 0) mpi_times.push_back(s);
      }
      const double mpi_t = median(mpi_times);
      std::size_t series_index = 0;
      for (const auto& tr : cfg.transports)
      for (std::size_t pi = 0; pi < cfg.policies.size(); ++pi, ++series_index) {
        std::string policy = cfg.policies[pi];
        const dssync::algorithms::policy_entry* chosen = nullptr;
        if (policy == dssync::algorithms::auto_policy) {  // what auto runs here: DSSYNC_TUNING_FILE's pick, else the cost model's
          const auto tab = opt.tuning_file.empty() ? nullptr : dssync::algorithms::tuning_from_file(opt.tuning_file);
          const auto c = dssync::algorithms::choose_allreduce(dssync::topology::full_mesh(n), bytes, sizeof(float), tab.get());
          chosen = &dssync::algorithms::registry().at(c.policy);
          policy = "auto:" + c.policy;
        }
        const auto& entry = chosen != nullptr ? *chosen : dssync::algorithms::registry().at(policy);
        if (label) policy = tr + ":" + policy;
        prog.update(++step, policy + " " + size_label(bytes));
        std::vector<double> times;
        bool ok = true;
        for (int it = -1; it < iters; ++it) {
          fill(buf, rank);
          const double s = timed(MPI_COMM_WORLD, [&] {
            if (tr == "shm")
              dssync::synchronize(*shm_comm, dssync::topology::full_mesh(n), entry, buf, dssync::ops::sum{}, opt);
            else
              dssync::synchronize(*mpi_comm, dssync::topology::full_mesh(n), entry, buf, dssync::ops::sum{}, opt);
          });
          if (it >= 0) times.push_back(s);
          ok = ok && check(buf, n);
        }
        int bad = ok ? 0 : 1, any = 0;
        MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        if (any) status = 1;
        const double tt = median(times);
        const double algbw = static_cast<double>(bytes) / tt / 1e9;
        const double busbw = algbw * allreduce_bus_factor(n);
        const double mpi_bus = static_cast<double>(bytes) / mpi_t / 1e9 * allreduce_bus_factor(n);
        double rss = static_cast<double>(peak_rss_bytes()), rss_max = 0;
        MPI_Allreduce(&rss, &rss_max, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        double stg = static_cast<double>(tr == "shm" ? shm_comm->staging_bytes() : mpi_comm->staging_bytes()), stg_max = 0;
        MPI_Allreduce(&stg, &stg_max, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        if (rank == 0) {
          prog.finish();
          t.row(std::cout, {std::to_string(bytes), std::to_string(count), "float", "sum", policy, fixed(tt * 1e6, 1),
                            fixed(algbw, 3), fixed(busbw, 3), fixed(mpi_t * 1e6, 1), fixed(mpi_bus, 3),
                            fixed(tt / mpi_t, 2) + (any ? " WRONG" : ""), fixed(rss_max / 1048576.0, 1),
                            fixed(stg_max / 1048576.0, 2)});
          plot[series_index].points.push_back({static_cast<double>(bytes), busbw});
          if (series_index == 0) plot.back().points.push_back({static_cast<double>(bytes), mpi_bus});
        }
      }
    }
    if (shm_comm) {
      const auto& c = shm_comm->counters();
      std::uint64_t mine[4] = {c.zero_copy, c.copied, c.overflow, c.off_node}, sum[4] = {};
      MPI_Allreduce(mine, sum, 4, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
      if (rank == 0 && use_shm)
        std::cout << "# shm sends: " << sum[0] << " read in place, " << sum[1] << " through the arena, " << sum[2]
                  << " overflowed to MPI, " << sum[3] << " off-node\n";
    }
    if (rank == 0) {
      if (!cfg.csv.empty()) t.write_csv(cfg.csv);
      if (!cfg.svg.empty())
        write_svg_plot(cfg.svg, "allreduce over MPI, N=" + std::to_string(n), "size (bytes)", "busbw (GB/s)", plot);
      std::cout << (status == 0 ? "# all results verified\n" : "# WRONG RESULTS\n");
    }
  }
  MPI_Finalize();
  return status;
}
