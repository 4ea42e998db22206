// MPI benchmark of the session API's collectives beyond allreduce, nccl-tests style: dssync::communicator's
// reduce-scatter, allgather, broadcast and reduce over transport::mpi against MPI_Reduce_scatter_block,
// MPI_Allgather, MPI_Bcast and MPI_Reduce on the same buffers, in the same run.
//
//   mpiexec -n 4 ./collectives_mpi --sizes 4K:64M
//
// Columns: size (bytes per rank of the full buffer, as nccl-tests' reduce_scatter/all_gather count the
// total), collective, policy, time(us), algbw = size/time, busbw (nccl-tests: algbw*(N-1)/N for
// reduce-scatter and allgather, algbw for broadcast and reduce), the MPI call's time and busbw, the ratio
// ours/MPI (< 1 is faster), and peak RSS per rank.
#include <mpi.h>

#include <dssync/dssync.hpp>
#include <dssync/transport/mpi.hpp>

#include "common.hpp"
#include "mpi_timing.hpp"

#include <cstdio>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

namespace {

using namespace dssync_bench;

int iterations_for(std::size_t bytes, int forced) {
  if (forced > 0) return forced;
  if (bytes <= (std::size_t{1} << 20)) return 40;
  if (bytes <= (std::size_t{16} << 20)) return 8;
  return 3;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, n = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  std::vector<std::size_t> sizes;
  std::vector<std::string> collectives{"reduce_scatter", "allgather", "broadcast", "reduce"};
  int forced_iters = 0;
  std::string csv, svg;
  try {
    cli c("collectives_mpi", "dssync::communicator collectives over MPI vs the MPI calls (run under mpiexec)");
    c.flag("--smoke", "one small size, 2 iterations (a ctest smoke run)")
        .option("--sizes", "MIN:MAX", "byte sizes of the full buffer, x4 steps (default 4K:64M)")
        .option("--collectives", "LIST", "reduce_scatter,allgather,broadcast,reduce (default all)")
        .option("--iters", "K", "timed iterations per size (default by size)")
        .option("--csv", "FILE", "also write the table as CSV (rank 0)")
        .option("--svg", "FILE", "plot busbw vs size (rank 0)");
    if (!c.parse(argc, argv)) {
      MPI_Finalize();
      return 0;
    }
    std::size_t lo = 4 << 10, hi = std::size_t{64} << 20;
    if (auto s = c.get("--sizes")) std::tie(lo, hi) = parse_size_range(*s);
    if (c.has("--smoke")) lo = hi = 64 << 10;
    sizes = size_sweep(lo, hi, 4);
    if (auto p = c.get("--collectives")) collectives = parse_list(*p);
    for (const auto& x : collectives)
      if (x != "reduce_scatter" && x != "allgather" && x != "broadcast" && x != "reduce")
        throw std::invalid_argument("--collectives: unknown collective \"" + x + "\"");
    if (auto k = c.get("--iters")) forced_iters = static_cast<int>(parse_long(*k, "--iters"));
    if (c.has("--smoke")) forced_iters = 2;
    if (auto f = c.get("--csv")) csv = *f;
    if (auto f = c.get("--svg")) svg = *f;
  } catch (const std::exception& e) {
    if (rank == 0) std::cerr << "collectives_mpi: " << e.what() << '\n';
    MPI_Finalize();
    return 2;
  }

  int status = 0;
  {
    dssync::transport::mpi transport(MPI_COMM_WORLD);
    dssync::communicator comm(transport, dssync::options{});
    if (rank == 0)
      std::cout << "# dssync collectives_mpi: " << n << " ranks, float, root 0\n# load average " << load_average()
                << "\n";
    table t({{"size(B)", 11}, {"collective", 14}, {"policy", 13}, {"time(us)", 10}, {"algbw(GB/s)", 11},
             {"busbw(GB/s)", 11}, {"MPI(us)", 10}, {"MPI_busbw", 9}, {"ours/MPI", 8}, {"peakRSS(MiB)", 12}});
    if (rank == 0) t.print_header(std::cout);
    std::vector<series> plot;
    for (const auto& x : collectives) {
      plot.push_back({"dssync " + x, {}});
      plot.push_back({"MPI " + x, {}});
    }
    progress prog(sizes.size() * collectives.size(), rank == 0);
    std::size_t step = 0;
    for (std::size_t bytes : sizes) {
      const std::size_t count = bytes / sizeof(float) / static_cast<std::size_t>(n) * static_cast<std::size_t>(n);
      const std::size_t block = count / static_cast<std::size_t>(n);
      std::vector<float> full(count), part(block), out(count);
      const int iters = iterations_for(bytes, forced_iters);
      for (std::size_t ci = 0; ci < collectives.size(); ++ci) {
        const std::string& x = collectives[ci];
        prog.update(++step, x + " " + size_label(bytes));
        auto fill = [&] {
          for (std::size_t i = 0; i < count; ++i) full[i] = static_cast<float>(i % 7 + static_cast<std::size_t>(rank));
          for (std::size_t i = 0; i < block; ++i) part[i] = static_cast<float>(rank);
        };
        std::function<void()> ours, theirs;
        std::function<bool()> check;
        const auto fn = static_cast<float>(n), tri = static_cast<float>(n * (n - 1) / 2);
        std::string policy;
        double bus = 1;
        if (x == "reduce_scatter") {
          ours = [&] { comm.reduce_scatter(std::span<const float>(full), std::span(part)); };
          theirs = [&] { MPI_Reduce_scatter_block(full.data(), part.data(), static_cast<int>(block), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD); };
          check = [&] {
            const std::size_t off = block * static_cast<std::size_t>(rank);
            return block == 0 || part[0] == fn * static_cast<float>(off % 7) + tri;
          };
          policy = comm.policy(dssync::semantics::reduce_scatter).name;
          bus = n > 1 ? (n - 1.0) / n : 0;
        } else if (x == "allgather") {
          ours = [&] { comm.allgather(std::span<const float>(part), std::span(out)); };
          theirs = [&] { MPI_Allgather(part.data(), static_cast<int>(block), MPI_FLOAT, out.data(), static_cast<int>(block), MPI_FLOAT, MPI_COMM_WORLD); };
          check = [&] { return count == 0 || out[count - 1] == static_cast<float>(n - 1); };
          policy = comm.policy(dssync::semantics::allgather).name;
          bus = n > 1 ? (n - 1.0) / n : 0;
        } else if (x == "broadcast") {
          ours = [&] { comm.broadcast(std::span(full), 0); };
          theirs = [&] { MPI_Bcast(full.data(), static_cast<int>(count), MPI_FLOAT, 0, MPI_COMM_WORLD); };
          check = [&] { return count == 0 || full[count - 1] == static_cast<float>((count - 1) % 7); };
          policy = comm.policy(dssync::semantics::broadcast, count * sizeof(float)).name;
        } else {
          ours = [&] { comm.reduce(std::span<const float>(full), std::span(out), 0); };
          theirs = [&] { MPI_Reduce(full.data(), out.data(), static_cast<int>(count), MPI_FLOAT, MPI_SUM, 0, MPI_COMM_WORLD); };
          check = [&] { return rank != 0 || count == 0 || out[count - 1] == fn * static_cast<float>((count - 1) % 7) + tri; };
          policy = comm.policy(dssync::semantics::reduce, count * sizeof(float)).name;
        }
        std::vector<double> mine, mpi;
        bool ok = true;
        for (int it = -1; it < iters; ++it) {
          fill();
          const double a = timed(MPI_COMM_WORLD, theirs);
          fill();
          const double b = timed(MPI_COMM_WORLD, ours);
          ok = ok && check();
          if (it >= 0) {
            mpi.push_back(a);
            mine.push_back(b);
          }
        }
        int bad = ok ? 0 : 1, any = 0;
        MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        if (any) status = 1;
        const double tt = median(mine), tm = median(mpi);
        const double S = static_cast<double>(count * sizeof(float));
        double rss = static_cast<double>(peak_rss_bytes()), rss_max = 0;
        MPI_Allreduce(&rss, &rss_max, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        if (rank == 0) {
          prog.finish();
          t.row(std::cout, {std::to_string(count * sizeof(float)), x, policy, fixed(tt * 1e6, 1), fixed(S / tt / 1e9, 3),
                            fixed(S / tt / 1e9 * bus, 3), fixed(tm * 1e6, 1), fixed(S / tm / 1e9 * bus, 3),
                            fixed(tt / tm, 2) + (any ? " WRONG" : ""), fixed(rss_max / 1048576.0, 1)});
          plot[2 * ci].points.push_back({S, S / tt / 1e9 * bus});
          plot[2 * ci + 1].points.push_back({S, S / tm / 1e9 * bus});
        }
      }
    }
    if (rank == 0) {
      if (!csv.empty()) t.write_csv(csv);
      if (!svg.empty())
        write_svg_plot(svg, "collectives over MPI, N=" + std::to_string(n), "size (bytes)", "busbw (GB/s)", plot);
      std::cout << (status == 0 ? "# all results verified\n" : "# WRONG RESULTS\n");
    }
  }
  MPI_Finalize();
  return status;
}
