// BML (algorithms::bcube) against ring allreduce on the in-process transport, nccl-tests style.
//
// N = n^k worker threads of one dssync::transport::inproc::world (default BCube(3,2), 9 workers) all-reduce
// a float buffer with ops::sum, alternately through
//   dssync::synchronize<algorithms::bcube>(comm, bcube(n,k), buf, sum{}, opt)   // BML
//   dssync::synchronize<algorithms::ring>(comm, ring(N),    buf, sum{}, opt)   // the peer
// in the same world, on the same buffers, interleaved A B B A A B ... so that drift in the machine's load
// (2 shared cores here) hits both alike. One iteration's time runs from the moment a std::barrier across
// the N workers opens to the moment the last rank returns; the median over iterations is reported, and
// x_ring = time / ring's time at the same size (< 1: faster than ring).
//
// In-process there is no network: both policies move the same 2(N-1)/N·S per rank through memory, BML in
// 2k stages of n-1 messages on k channels, ring in 2(N-1) steps on one. So this measures dssync's
// overheads (steps, channels, thread hand-offs), not BCube's extra ports.
//
// Memory: after the timed iterations every rank refills its buffer with a checked pattern and runs one
// untimed call per policy; the peak RSS of each call's window (VmHWM reset through
// /proc/self/clear_refs, else a 1 ms sampler) minus the RSS with the buffers allocated, divided by N, is
// `extra/rank(MiB)`: what dssync adds per rank. The checked calls are verified exactly on every rank.
//
//   build/bench/bcube_inproc                         # 4K..64M, x4
//   build/bench/bcube_inproc --sizes 16M --iters 40 --csv x.csv

#include <algorithm>
#include <barrier>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <iostream>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <dssync/dssync.hpp>

#include "common.hpp"

namespace {

using namespace dssync_bench;

struct settings {
  int n = 3, k = 2;
  std::vector<std::size_t> sizes;
  int iters = -1;  // per policy; -1: by size
  int warmup = -1;
  bool smoke = false;
  std::string csv, svg;
  dssync::options opt;
};

int workers_of(int n, int k) {
  int w = 1;
  for (int i = 0; i < k; ++i) w *= n;
  return w;
}

/// Timed iterations per policy: enough to pass ~8 GiB of user buffers per policy, 10 to 300.
int default_iters(std::size_t bytes, int n) {
  const double k = std::round(8.0 * (1u << 30) / (static_cast<double>(bytes) * n));
  return static_cast<int>(std::clamp(k, 10.0, 300.0));
}

// Zero-sum pattern for timed iterations (sums stay 0, no overflow), exact check pattern for the last call.
inline float timed_value(std::size_t i, int r, int n) { return static_cast<float>(static_cast<long>(i % 61) * (2L * r - (n - 1))); }
inline float check_value(std::size_t i, int r) { return static_cast<float>((i * 7 + static_cast<std::size_t>(r) * 13) % 1024); }

enum policy_id { bml = 0, ring = 1 };
const char* const policy_names[] = {"bml", "ring"};

struct result {
  double median_us[2]{}, min_us[2]{};
  std::size_t extra[2]{};  // bytes per rank
  std::size_t peak = 0;    // whole config
  int iters = 0;
};

result run_size(const settings& s, std::size_t count, int iters, int warmup, memory_probe& mem) {
  const int n = workers_of(s.n, s.k);
  const dssync::topology::bcube bc(s.n, s.k);
  const dssync::topology::ring rg(n);
  result res;
  res.iters = iters;
  mem.start();
  dssync::transport::inproc::world w(n);
  std::vector<std::unique_ptr<float[]>> bufs(static_cast<std::size_t>(n));

  // Call j of the sequence: warm-ups then timed, in ABBA order.
  const int total = 2 * (warmup + iters);
  auto policy_of = [](int j) { return ((j / 2) % 2 == 0) == (j % 2 == 0) ? bml : ring; };  // A B B A A B B A
  std::vector<steady::time_point> starts;
  starts.reserve(static_cast<std::size_t>(total) + 8);
  std::size_t rss_buffers = 0, peak_check[2]{};
  // Phases: 0 after fill; 1..total before each call; then: check fill done (-> window bml), after bml
  // (-> read peak, refill) ... see rank body.
  int phase = 0;
  auto on_phase = [&]() noexcept {
    if (phase == 0) {
      res.peak = mem.peak();
      rss_buffers = current_rss_bytes();
    }
    if (phase == total + 1) mem.start();  // opens the window of the checked bml call
    if (phase == total + 2) {             // closes it, opens the checked ring call's
      peak_check[bml] = mem.peak();
      mem.start();
    }
    if (phase == total + 3) peak_check[ring] = mem.peak();
    starts.push_back(steady::now());
    ++phase;
  };
  std::barrier bar(n, on_phase);
  std::vector<std::vector<steady::time_point>> ends(static_cast<std::size_t>(total),
                                                    std::vector<steady::time_point>(static_cast<std::size_t>(n)));
  std::vector<int> wrong(static_cast<std::size_t>(n), 0);

  auto call = [&](dssync::transport::inproc::communicator& comm, std::span<float> buf, policy_id p) {
    if (p == bml)
      dssync::synchronize<dssync::algorithms::bcube>(comm, bc, buf, dssync::ops::sum{}, s.opt);
    else
      dssync::synchronize<dssync::algorithms::ring>(comm, rg, buf, dssync::ops::sum{}, s.opt);
  };
  auto verify = [&](std::span<const float> buf, int r) {
    int bad = 0;
    const std::size_t stride = count > (std::size_t{1} << 18) ? 97 : 1;  // every element of small buffers
    for (std::size_t i = 0; i < count; i += stride) {
      double want = 0;
      for (int q = 0; q < n; ++q) want += check_value(i, q);
      if (buf[i] != static_cast<float>(want)) ++bad;
    }
    if (count > 0) {
      double want = 0;
      for (int q = 0; q < n; ++q) want += check_value(count - 1, q);
      if (buf[count - 1] != static_cast<float>(want)) ++bad;
    }
    wrong[static_cast<std::size_t>(r)] += bad;
  };

  w.run([&](dssync::transport::inproc::communicator& comm) {
    try {
      const int r = comm.rank();
      const auto ur = static_cast<std::size_t>(r);
      bufs[ur].reset(new float[count]);
      std::span<float> buf(bufs[ur].get(), count);
      for (std::size_t i = 0; i < count; ++i) buf[i] = timed_value(i, r, n);
      bar.arrive_and_wait();
      for (int j = 0; j < total; ++j) {
        bar.arrive_and_wait();
        call(comm, buf, policy_of(j));
        ends[static_cast<std::size_t>(j)][ur] = steady::now();
      }
      for (std::size_t i = 0; i < count; ++i) buf[i] = check_value(i, r);
      bar.arrive_and_wait();
      call(comm, buf, bml);
      verify(buf, r);
      for (std::size_t i = 0; i < count; ++i) buf[i] = check_value(i, r);
      bar.arrive_and_wait();
      call(comm, buf, ring);
      verify(buf, r);
      bar.arrive_and_wait();
    } catch (const std::exception& e) {
      std::cerr << "\nbcube_inproc: rank " << comm.rank() << " failed: " << e.what() << std::endl;
      std::_Exit(1);
    }
  });
  for (int r = 0; r < n; ++r)
    if (wrong[static_cast<std::size_t>(r)] != 0) {
      std::cerr << "\nbcube_inproc: WRONG RESULT: rank " << r << ", " << count << " floats, "
                << wrong[static_cast<std::size_t>(r)] << " elements differ\n";
      std::exit(3);
    }
  std::vector<double> times[2];
  for (int j = 2 * warmup; j < total; ++j) {
    const auto& e = ends[static_cast<std::size_t>(j)];
    const auto last = *std::max_element(e.begin(), e.end());
    times[policy_of(j)].push_back(
        std::chrono::duration<double, std::micro>(last - starts[static_cast<std::size_t>(j) + 1]).count());
  }
  for (int p : {bml, ring}) {
    res.median_us[p] = median(times[p]);
    res.min_us[p] = times[p].empty() ? 0 : *std::min_element(times[p].begin(), times[p].end());
    res.extra[p] = peak_check[p] > rss_buffers ? (peak_check[p] - rss_buffers) / static_cast<std::size_t>(n) : 0;
    res.peak = std::max(res.peak, peak_check[p]);
  }
  return res;
}

int run(int argc, char** argv) {
  cli args("bcube_inproc",
           "BML (algorithms::bcube on topology::bcube) vs ring allreduce, N = n^k in-process workers, interleaved\n"
           "in one world (see bench/README.md).");
  args.flag("--smoke", "one small size, 2 iterations per policy (a quick ctest)")
      .option("--bcube", "NxK", "BCube shape (default 3x2: 9 workers)")
      .option("--sizes", "MIN:MAX", "bytes per rank, x4 steps (default 4K:64M)")
      .option("--iters", "K", "timed iterations per policy (default by size, 10..300)")
      .option("--warmup", "K", "warm-up iterations per policy (default max(2, iters/10))")
      .option("--segment", "BYTES", "options::segment_bytes (default 1M, or DSSYNC_SEGMENT_BYTES)")
      .flag("--no-check", "options::check_agreement = false")
      .option("--csv", "FILE", "also write the table as CSV")
      .option("--svg", "FILE", "plot busbw vs size for both policies");
  if (!args.parse(argc, argv)) return 0;
  settings s;
  s.smoke = args.has("--smoke");
  if (auto v = args.get("--bcube")) {
    const auto x = v->find('x');
    if (x == std::string::npos) throw std::invalid_argument("--bcube: \"" + *v + "\" is not NxK");
    s.n = static_cast<int>(parse_long(v->substr(0, x), "--bcube"));
    s.k = static_cast<int>(parse_long(v->substr(x + 1), "--bcube"));
    if (s.n < 2 || s.k < 1 || workers_of(s.n, s.k) > 64)
      throw std::invalid_argument("--bcube: need n >= 2, k >= 1, at most 64 workers");
  }
  std::size_t lo = 4 << 10, hi = std::size_t{64} << 20;
  if (auto v = args.get("--sizes")) {
    std::tie(lo, hi) = parse_size_range(*v);
  }
  if (s.smoke) lo = hi = 64 << 10;
  if (lo < 4 || hi < lo) throw std::invalid_argument("--sizes: need 4 <= MIN <= MAX");
  s.sizes = size_sweep(lo, hi, 4);
  if (auto v = args.get("--iters")) s.iters = static_cast<int>(parse_long(*v, "--iters"));
  if (auto v = args.get("--warmup")) s.warmup = static_cast<int>(parse_long(*v, "--warmup"));
  if (s.smoke) s.iters = 2, s.warmup = 1;
  if (auto v = args.get("--segment")) s.opt.segment_bytes = parse_bytes(*v);
  if (args.has("--no-check")) s.opt.check_agreement = false;
  if (auto v = args.get("--csv")) s.csv = *v;
  if (auto v = args.get("--svg")) s.svg = *v;
  const int n = workers_of(s.n, s.k);

  memory_probe mem;
  std::cout << "# bcube_inproc: BCube(" << s.n << "," << s.k << ") bml vs ring(" << n << "), " << n
            << " in-process workers, float sum; hardware threads " << std::thread::hardware_concurrency()
            << "; segment " << human_bytes(static_cast<double>(s.opt.segment_bytes)) << ", agreement "
            << (s.opt.check_agreement ? "on" : "off") << "\n"
            << "# time = median over iterations of (last rank done - barrier open), policies interleaved ABBA in one "
               "world; x_ring = time / ring time (< 1: faster than ring)\n"
            << "# extra/rank = (peak RSS of the policy's checked call - RSS with the buffers) / N; memory via "
            << (mem.hwm_reset ? "VmHWM reset" : "1 ms sampler") << "; load average at start " << load_average() << "\n";
  table t({{"size(B)", 11}, {"count", 10}, {"policy", 6}, {"N", 3}, {"time(us)", 11}, {"algbw(GB/s)", 11},
           {"busbw(GB/s)", 11}, {"x_ring", 6}, {"min(us)", 11}, {"iters", 5}, {"peakRSS(MiB)", 12},
           {"extra/rank(MiB)", 15}});
  t.print_header(std::cout);
  progress prog(s.sizes.size(), true);
  std::vector<series> plot{{"bml BCube(" + std::to_string(s.n) + "," + std::to_string(s.k) + ")", {}},
                           {"ring N=" + std::to_string(n), {}}};
  std::size_t idx = 0;
  for (std::size_t bytes : s.sizes) {
    const std::size_t count = bytes / sizeof(float);
    const std::size_t sb = count * sizeof(float);
    prog.update(++idx, human_bytes(static_cast<double>(sb)));
    const int iters = s.iters > 0 ? s.iters : default_iters(sb, n);
    const int warmup = s.warmup >= 0 ? s.warmup : std::max(2, iters / 10);
    const result r = run_size(s, count, iters, warmup, mem);
    prog.finish();
    for (int p : {bml, ring}) {
      const double algbw = static_cast<double>(sb) / (r.median_us[p] * 1e-6) / 1e9;
      const double busbw = algbw * allreduce_bus_factor(n);
      t.row(std::cout, {std::to_string(sb), std::to_string(count), policy_names[p], std::to_string(n),
                        fixed(r.median_us[p], 1), fixed(algbw, 3), fixed(busbw, 3),
                        fixed(r.median_us[p] / r.median_us[ring], 2), fixed(r.min_us[p], 1), std::to_string(iters),
                        fixed(static_cast<double>(r.peak) / 1048576.0, 1),
                        fixed(static_cast<double>(r.extra[p]) / 1048576.0, 3)});
      plot[static_cast<std::size_t>(p)].points.emplace_back(static_cast<double>(sb), busbw);
    }
  }
  std::cout << "# load average at end: " << load_average() << "; all results verified\n";
  if (!s.csv.empty()) t.write_csv(s.csv);
  if (!s.svg.empty())
    write_svg_plot(s.svg, "in-process allreduce, BCube(" + std::to_string(s.n) + "," + std::to_string(s.k) +
                              ") bml vs ring, N=" + std::to_string(n),
                   "bytes per rank", "busbw (GB/s)", plot);
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return guarded_main("bcube_inproc", run, argc, argv); }
