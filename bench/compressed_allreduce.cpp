// Compressed allreduce benchmark, nccl-tests style, in process.
//
// For each world size N and buffer size S (bytes of float per rank), N worker threads of one
// dssync::transport::inproc::world all-reduce Gaussian gradients, first uncompressed with the ring
//   dssync::synchronize<dssync::algorithms::ring>(comm, full_mesh(N), buf)
// and then through each codec, inside the plan (identity and fp16: the encoded ring, a reduce-scatter and
// allgather of encoded parts; the others: encode, allgather of payloads of run-time length, ordered
// decodes):
//   dssync::synchronize(comm, buf, codec)
// side by side in one run. The time of one iteration runs from the moment a std::barrier across the N
// workers opens to the moment the last rank returns (the max over ranks); the reported time is the
// median. Every rank refills its buffer from its gradient before each iteration, outside the timed window.
//
// Columns: time, algbw = S / time, busbw = algbw * 2(N-1)/N (the ring's convention, so that rows
// compare), wire = the bytes a rank receives (the ring: 2(N-1)/N * S; an elementwise codec: 2(N-1)/N of
// its payload; another codec: the N-1 payloads of the others, measured by encoding the same data), ratio = ring's wire / codec's wire, vs_ring = ring's time /
// codec's time (above 1: faster than the uncompressed ring), and the peak resident memory of the config.
// In process the "network" is memory, so compression pays only where the codec's compute costs less
// than the bytes it saves at memory speed: a finding, reported as measured.

#include <algorithm>
#include <barrier>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <functional>
#include <iostream>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <Eigen/Core>  // codecs/half.hpp needs Eigen (this include tags the benchmark for CMake)
#include <dssync/codecs/half.hpp>
#include <dssync/codecs/identity.hpp>
#include <dssync/codecs/onebit.hpp>
#include <dssync/codecs/qsgd.hpp>
#include <dssync/codecs/topk.hpp>
#include <dssync/dssync.hpp>

#include "common.hpp"

namespace {

using namespace dssync_bench;
using steady = std::chrono::steady_clock;

struct result {
  double time_us = 0;
  double wire_bytes = 0;  // received per rank
  std::size_t peak = 0;
};

std::vector<float> gaussian(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

/// Runs `iters` timed allreduces (after `warmup`) of `count` floats on `n` ranks; `call(comm, buf, rank)`
/// is one allreduce. Returns the median time and the peak RSS.
template <class Call>
result run(int n, std::size_t count, int iters, int warmup, memory_probe& mem, Call&& call) {
  result res;
  mem.start();
  std::vector<std::vector<float>> grads(static_cast<std::size_t>(n));
  for (int r = 0; r < n; ++r) grads[static_cast<std::size_t>(r)] = gaussian(count, static_cast<unsigned>(r + 1));
  const int total = warmup + iters;
  std::vector<steady::time_point> starts;
  starts.reserve(static_cast<std::size_t>(total) + 1);
  std::barrier bar(n, [&]() noexcept { starts.push_back(steady::now()); });
  std::vector<std::vector<steady::time_point>> ends(static_cast<std::size_t>(total),
                                                    std::vector<steady::time_point>(static_cast<std::size_t>(n)));
  dssync::transport::inproc::world w(n);
  w.run([&](dssync::transport::inproc::communicator& comm) {
    const auto r = static_cast<std::size_t>(comm.rank());
    std::vector<float> buf(count);
    for (int it = 0; it < total; ++it) {
      std::copy(grads[r].begin(), grads[r].end(), buf.begin());
      bar.arrive_and_wait();
      call(comm, std::span<float>(buf), comm.rank());
      ends[static_cast<std::size_t>(it)][r] = steady::now();
    }
    bar.arrive_and_wait();
  });
  std::vector<double> t;
  for (int it = warmup; it < total; ++it) {
    const auto last = *std::max_element(ends[static_cast<std::size_t>(it)].begin(), ends[static_cast<std::size_t>(it)].end());
    t.push_back(std::chrono::duration<double, std::micro>(last - starts[static_cast<std::size_t>(it)]).count());
  }
  res.time_us = median(t);
  res.peak = mem.peak();
  return res;
}

/// The bytes a rank receives in the compressed allreduce: the other ranks' payloads of their first step
/// (the allgather), or 2(N-1)/N of one payload for an elementwise codec (the encoded ring's parts).
template <class Codec>
double payload_bytes(const Codec& proto, int n, std::size_t count) {
  if constexpr (dssync::is_elementwise_codec<Codec>) {
    Codec c = proto;
    const auto g = gaussian(count, 1);
    std::vector<std::byte> w;
    c.encode(std::span<const float>(g), w);
    return allreduce_bus_factor(n) * static_cast<double>(w.size());
  }
  double total = 0;
  for (int r = 1; r < n; ++r) {
    Codec c = proto;
    const auto g = gaussian(count, static_cast<unsigned>(r + 1));
    std::vector<std::byte> w;
    c.encode(std::span<const float>(g), w);
    total += static_cast<double>(w.size());
  }
  return total;
}

int bench_main(int argc, char** argv) {
  cli args("compressed_allreduce", "Compressed allreduce (codecs inside the plan) against the uncompressed ring, in process.");
  args.option("--sizes", "LO:HI", "bytes per rank, x4 steps (default 1M:16M; --smoke: 64K)")
      .option("--ranks", "LIST", "world sizes (default 2,4)")
      .option("--iters", "K", "timed iterations (default 20; --smoke: 2)")
      .option("--csv", "FILE", "also write the table as CSV")
      .flag("--smoke", "a tiny run, for ctest");
  if (!args.parse(argc, argv)) return 0;
  const bool smoke = args.has("--smoke");
  auto [lo, hi] = parse_size_range(args.get("--sizes").value_or(smoke ? "64K" : "1M:16M"));
  const auto ranks = parse_int_list(args.get("--ranks").value_or("2,4"), "--ranks");
  const int iters = static_cast<int>(parse_long(args.get("--iters").value_or(smoke ? "2" : "20"), "--iters"));
  const int warmup = smoke ? 1 : 3;
  dssync::options opt;
  opt.with_timeout(std::chrono::seconds(120));

  table tab({{"codec", 12}, {"N", 3}, {"size", 8}, {"time_us", 11}, {"algbw_GBps", 10}, {"busbw_GBps", 10},
             {"wire_B", 12}, {"ratio", 8}, {"vs_ring", 8}, {"peak_MiB", 9}});
  std::cout << "# compressed allreduce, in process (" << load_average() << ")\n";
  tab.print_header(std::cout);
  memory_probe mem;
  for (int n : ranks)
    for (std::size_t bytes : size_sweep(lo, hi, 4)) {
      const std::size_t count = bytes / sizeof(float);
      const dssync::topology::full_mesh topo(n);
      const auto ring = run(n, count, iters, warmup, mem, [&](auto& comm, std::span<float> b, int) {
        dssync::synchronize<dssync::algorithms::ring>(comm, topo, b, dssync::ops::sum{}, opt);
      });
      const double ring_wire = allreduce_bus_factor(n) * static_cast<double>(bytes);
      auto row = [&](const std::string& name, const result& r, double wire) {
        const double algbw = static_cast<double>(bytes) / (r.time_us * 1e-6) / 1e9;
        tab.row(std::cout, {name, std::to_string(n), size_label(bytes), fixed(r.time_us, 1), fixed(algbw, 3),
                            fixed(algbw * allreduce_bus_factor(n), 3), fixed(wire, 0),
                            wire > 0 ? fixed(ring_wire / wire, 2) : "n/a", fixed(ring.time_us / r.time_us, 3),
                            fixed(static_cast<double>(r.peak) / (1 << 20), 1)});
      };
      row("ring", ring, ring_wire);
      auto codec_row = [&](const std::string& name, auto proto) {
        using C = decltype(proto);
        const auto r = run(n, count, iters, warmup, mem, [&, codecs = std::vector<C>(static_cast<std::size_t>(n), proto)](
                                                             auto& comm, std::span<float> b, int rank) mutable {
          dssync::synchronize(comm, b, codecs[static_cast<std::size_t>(rank)], dssync::ops::sum{}, opt);
        });
        row(name, r, payload_bytes(proto, n, count));
      };
      codec_row("identity", dssync::codecs::identity<float>{});
      codec_row("fp16", dssync::codecs::fp16<float>{});
      codec_row("onebit", dssync::codecs::onebit<float>{});
      codec_row("qsgd16", dssync::codecs::qsgd<float>(16));
      codec_row("topk1%", dssync::codecs::topk<float>(0.01));
    }
  if (auto csv = args.get("--csv")) tab.write_csv(*csv);
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return guarded_main("compressed_allreduce", bench_main, argc, argv); }
