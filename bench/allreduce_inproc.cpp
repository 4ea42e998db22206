// In-process allreduce benchmark, nccl-tests style.
//
// For each policy (ring, direct), world size N and buffer size S (bytes per rank), N worker threads of
// one dssync::transport::inproc::world all-reduce a float buffer with ops::sum through the canonical
//   dssync::synchronize<dssync::algorithms::X>(comm, full_mesh(N), buf, sum{}, opt)
// The time of one iteration runs from the moment a std::barrier across the N workers opens to the
// moment the last rank returns from synchronize (the max over ranks); the reported time is the median
// over the timed iterations. Each config is compared with a memory-bound lower time, 2*N*S bytes at
// this machine's streaming-add bandwidth (measured first), and its peak memory is measured.
//
// See bench/README.md for the columns and the definition of the bound.

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
  std::vector<std::size_t> sizes;
  std::vector<int> ranks{2, 4, 8};
  std::vector<std::string> policies{"ring", "direct"};
  int iters = -1;   // -1: by size
  int warmup = -1;  // -1: by iters
  bool smoke = false;
  bool pin = false;
  std::string csv, svg;
  dssync::options opt;  // DSSYNC_* environment applied, then --segment / --no-check
};

/// Timed iterations for S bytes on N ranks: enough to pass ~64 GiB of user buffers, 20 to 1000.
/// (Sizes <= 4 MiB get 1000: cheap, and the median needs many samples on a busy machine.)
int default_iters(std::size_t bytes, int n) {
  const double total = static_cast<double>(bytes) * n;
  const double k = std::round(64.0 * (1u << 30) / total);
  return static_cast<int>(std::clamp(k, 20.0, 1000.0));
}

struct measurement {
  double time_us = 0;            // median over timed iterations of (last rank done - barrier open)
  double min_us = 0, max_us = 0;
  int iters = 0, warmup = 0;
  std::size_t rss_before = 0;        // RSS before the buffers were allocated
  std::size_t rss_with_buffers = 0;  // RSS once every rank allocated and filled (first touched) its buffer
  std::size_t peak_run = 0;          // peak RSS from then until the end of the checked call
  std::size_t peak_config = 0;       // peak RSS over the whole config (buffers included)
};


// Timed iterations use a zero-sum pattern (rank r holds (i % 61) * (2r - (N-1)), integers, exact), so
// the first call leaves zeros everywhere and repeated in-place sums stay finite (no overflow to inf).
inline float timed_value(std::size_t i, int r, int n) {
  return static_cast<float>(static_cast<long>(i % 61) * (2L * r - (n - 1)));
}
// The checked call uses a pattern with a known, exactly representable sum.
inline float check_value(std::size_t i, int r) { return static_cast<float>((i * 7 + static_cast<std::size_t>(r) * 13) % 1024); }
inline float check_expected(std::size_t i, int n) {
  double s = 0;
  for (int r = 0; r < n; ++r) s += check_value(i, r);
  return static_cast<float>(s);
}

/// Indices to verify: everything for small buffers, else both ends of every rank chunk and of every
/// 1 MiB segment of the first chunk, and 64 pseudo-random positions.
std::vector<std::size_t> check_indices(std::size_t count, int n) {
  std::vector<std::size_t> idx;
  if (count <= (std::size_t{1} << 18)) {
    idx.resize(count);
    for (std::size_t i = 0; i < count; ++i) idx[i] = i;
    return idx;
  }
  for (const auto& c : dssync::partition(count, static_cast<std::size_t>(n))) {
    if (c.empty()) continue;
    idx.push_back(c.offset);
    idx.push_back(c.offset + 1);
    idx.push_back(c.end() - 2);
    idx.push_back(c.end() - 1);
    idx.push_back(c.offset + c.length / 2);
  }
  const std::size_t seg = (std::size_t{1} << 20) / sizeof(float);
  for (std::size_t o = seg; o < count / static_cast<std::size_t>(n); o += seg) {
    idx.push_back(o - 1);
    idx.push_back(o);
  }
  std::uint64_t x = 0x9E3779B97F4A7C15ull ^ count;
  for (int k = 0; k < 64; ++k) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    idx.push_back(static_cast<std::size_t>(x % count));
  }
  std::sort(idx.begin(), idx.end());
  idx.erase(std::unique(idx.begin(), idx.end()), idx.end());
  return idx;
}

measurement run_config(const dssync::algorithms::policy_entry& policy, int n, std::size_t count, int iters,
                       int warmup, const dssync::options& opt, memory_probe& mem, bool pin) {
  measurement m;
  m.rss_before = mem.start();
  dssync::transport::inproc::world w(n);
  std::vector<std::unique_ptr<float[]>> bufs(static_cast<std::size_t>(n));
  const int total_iters = warmup + iters;

  // Barrier phases: 0 after the fill, 1..total_iters before each iteration, then before the check
  // call, then at the end (buffers still alive). The completion step stamps the phase start; at
  // phase 0 it closes the allocation window and opens the run window of the memory probe, at the
  // last phase it reads the run window's peak.
  const std::size_t last_phase = static_cast<std::size_t>(total_iters) + 2;
  std::vector<steady::time_point> starts;
  starts.reserve(last_phase + 1);
  auto on_phase = [&]() noexcept {
    if (starts.empty()) {
      m.peak_config = mem.peak();
      m.rss_with_buffers = mem.start();
    } else if (starts.size() == last_phase) {
      m.peak_run = mem.peak();
      m.peak_config = std::max(m.peak_config, m.peak_run);
    }
    starts.push_back(steady::now());
  };
  std::barrier bar(n, on_phase);
  std::vector<std::vector<steady::time_point>> ends(static_cast<std::size_t>(total_iters),
                                                    std::vector<steady::time_point>(static_cast<std::size_t>(n)));

  auto rank_body = [&](dssync::transport::inproc::communicator& comm) {
    const int r = comm.rank();
    if (pin) pin_to_cpu(r);
    const auto ur = static_cast<std::size_t>(r);
    bufs[ur].reset(new float[count]);  // first touched below, by its own rank
    std::span<float> buf(bufs[ur].get(), count);
    for (std::size_t i = 0; i < count; ++i) buf[i] = timed_value(i, r, n);
    const dssync::topology::full_mesh topo(n);
    bar.arrive_and_wait();
    for (int it = 0; it < total_iters; ++it) {
      bar.arrive_and_wait();
      dssync::synchronize(comm, topo, policy, buf, dssync::ops::sum{}, opt);
      ends[static_cast<std::size_t>(it)][ur] = steady::now();
    }
    for (std::size_t i = 0; i < count; ++i) buf[i] = check_value(i, r);
    bar.arrive_and_wait();
    dssync::synchronize(comm, topo, policy, buf, dssync::ops::sum{}, opt);
    bar.arrive_and_wait();
  };
  w.run([&](dssync::transport::inproc::communicator& comm) {
    // A rank that fails would leave its peers waiting at the barrier forever: report and exit.
    try {
      rank_body(comm);
    } catch (const std::exception& e) {
      std::cerr << "\nallreduce_inproc: " << policy.name << " N=" << n << " " << count << " floats: rank "
                << comm.rank() << " failed: " << e.what() << std::endl;
      std::_Exit(1);
    }
  });

  m.iters = iters;
  m.warmup = warmup;
  std::vector<double> times;
  for (int it = warmup; it < total_iters; ++it) {
    const auto& e = ends[static_cast<std::size_t>(it)];
    const auto last = *std::max_element(e.begin(), e.end());
    times.push_back(std::chrono::duration<double, std::micro>(last - starts[static_cast<std::size_t>(it) + 1]).count());
  }
  m.time_us = median(times);
  m.min_us = times.empty() ? 0 : *std::min_element(times.begin(), times.end());
  m.max_us = times.empty() ? 0 : *std::max_element(times.begin(), times.end());

  // Verify the checked (last) call: every rank against the exact expected sum, and all ranks bitwise
  // identical at the checked positions.
  std::size_t wrong = 0;
  std::string first_wrong;
  for (std::size_t i : check_indices(count, n)) {
    const float want = check_expected(i, n);
    for (int r = 0; r < n; ++r) {
      const float got = bufs[static_cast<std::size_t>(r)][i];
      if (std::memcmp(&got, &want, sizeof got) != 0) {
        if (wrong++ == 0)
          first_wrong = "rank " + std::to_string(r) + " element " + std::to_string(i) + ": got " +
                        std::to_string(got) + ", expected " + std::to_string(want);
      }
    }
  }
  if (wrong != 0) {
    std::cerr << "\nallreduce_inproc: WRONG RESULT (" << policy.name << ", N=" << n << ", " << count
              << " floats): " << wrong << " mismatches; first: " << first_wrong << '\n';
    std::exit(3);
  }
  return m;
}

measurement run_policy(const std::string& policy, int n, std::size_t count, int iters, int warmup,
                       const dssync::options& opt, memory_probe& mem, bool pin) {
  return run_config(dssync::algorithms::registry().at(policy), n, count, iters, warmup, opt, mem, pin);
}

struct row_result {
  std::string policy;
  int n;
  std::size_t bytes;
  double time_us, min_us, bound_us, ratio, busbw;
  double extra_mib, peak_mib, fresh_extra_mib;
};

int run(int argc, char** argv) {
  cli args("allreduce_inproc",
           "In-process allreduce benchmark (nccl-tests style): float sum through dssync::synchronize on an\n"
           "inproc::world of N worker threads, compared with a memory-bound lower time (see bench/README.md).");
  args.flag("--smoke", "one tiny size, N=2, both policies, 1 iteration (a quick ctest)")
      .option("--sizes", "MIN:MAX", "bytes per rank, x4 steps (default 1K:256M; K/M/G suffixes; one size: 16M)")
      .option("--step", "F", "size multiplier between steps (default 4)")
      .option("--ranks", "LIST", "world sizes (default 2,4,8)")
      .option("--policies", "LIST", "policies (default ring,direct)")
      .option("--iters", "K", "timed iterations per config (default: by size, 20..1000)")
      .option("--warmup", "K", "warm-up iterations per config (default: max(2, iters/10))")
      .option("--csv", "FILE", "also write the table as CSV")
      .option("--svg", "FILE", "write an SVG plot of busbw vs size per (policy, N)")
      .option("--segment", "BYTES", "options::segment_bytes (default 1M, or DSSYNC_SEGMENT_BYTES)")
      .flag("--no-check", "options::check_agreement = false (skip the agreement exchange)")
      .flag("--pin", "pin rank r's thread to CPU r mod (CPUs available)")
      .flag("--spread", "add columns min(us), max(us) over the timed iterations, and iters")
      .flag("--quiet", "no progress line on stderr");
  if (!args.parse(argc, argv)) return 0;

  settings s;
  s.smoke = args.has("--smoke");
  std::size_t min_b = 1024, max_b = std::size_t{256} << 20, step = 4;
  if (s.smoke) {
    min_b = max_b = 64 * 1024;
    s.ranks = {2};
    s.iters = 1;
    s.warmup = 0;
  }
  if (auto v = args.get("--sizes")) {
    std::tie(min_b, max_b) = parse_size_range(*v);
  }
  if (auto v = args.get("--step")) step = static_cast<std::size_t>(parse_long(*v, "--step"));
  if (min_b < sizeof(float) || max_b < min_b) throw std::invalid_argument("--sizes: need 4 <= MIN <= MAX");
  s.sizes = size_sweep(min_b, max_b, step);
  if (auto v = args.get("--ranks")) s.ranks = parse_int_list(*v, "--ranks");
  for (int n : s.ranks)
    if (n < 1 || n > 256) throw std::invalid_argument("--ranks: " + std::to_string(n) + " is not in 1..256");
  if (auto v = args.get("--policies")) s.policies = parse_list(*v);
  for (const auto& p : s.policies) {
    const auto names = dssync::algorithms::policy_names();
    if (std::find(names.begin(), names.end(), p) == names.end())
      throw std::invalid_argument("--policies: unknown policy \"" + p + "\" (known: ring, direct)");
  }
  if (s.policies.empty()) throw std::invalid_argument("--policies: empty list");
  if (auto v = args.get("--iters")) {
    s.iters = static_cast<int>(parse_long(*v, "--iters"));
    if (s.iters < 1) throw std::invalid_argument("--iters must be at least 1");
  }
  if (auto v = args.get("--warmup")) {
    s.warmup = static_cast<int>(parse_long(*v, "--warmup"));
    if (s.warmup < 0) throw std::invalid_argument("--warmup must be at least 0");
  }
  if (auto v = args.get("--csv")) s.csv = *v;
  if (auto v = args.get("--svg")) s.svg = *v;
  if (auto v = args.get("--segment")) {
    s.opt.segment_bytes = parse_bytes(*v);
    if (s.opt.segment_bytes == 0) throw std::invalid_argument("--segment must be positive");
  }
  if (args.has("--no-check")) s.opt.check_agreement = false;
  s.pin = args.has("--pin");

  // --- Machine: streaming-add bandwidth -------------------------------------------------------------
  const std::size_t stream_bytes = s.smoke ? std::size_t{16} << 20 : std::size_t{64} << 20;
  const stream_result sr = measure_stream_add(stream_bytes, s.smoke ? 2 : 10);
  const double bw = sr.best();

  std::cout << "# dssync " << DSSYNC_VERSION_MAJOR << '.' << DSSYNC_VERSION_MINOR << '.' << DSSYNC_VERSION_PATCH
            << " allreduce_inproc" << (s.smoke ? " --smoke" : "") << "\n";
  std::cout << "# hardware threads: " << std::thread::hardware_concurrency()
            << ", segment_bytes: " << s.opt.segment_bytes << " (" << human_bytes(static_cast<double>(s.opt.segment_bytes))
            << "), window: " << s.opt.window << ", check_agreement: " << (s.opt.check_agreement ? "on" : "off")
            << ", threads pinned: " << (s.pin ? "yes" : "no") << '\n';
  std::cout << "# streaming add c[i]=a[i]+b[i], 3 x " << human_bytes(static_cast<double>(sr.bytes_per_array))
            << ", 3 streams counted, best of " << sr.reps << ": 1 thread " << fixed(sr.bw_1thread / 1e9, 2) << " GB/s";
  if (sr.bw_multi > 0) std::cout << ", " << sr.threads_multi << " threads " << fixed(sr.bw_multi / 1e9, 2) << " GB/s";
  std::cout << " -> stream_bw = " << fixed(bw / 1e9, 2) << " GB/s\n";
  std::cout << "# for reference, in-place add c[i]+=a[i] (3 streams, no write-allocate): "
            << fixed(sr.bw_inplace / 1e9, 2) << " GB/s\n";
  std::cout << "# bound(us) = 2*N*S / stream_bw (every rank reads its input and writes its output once);"
               " bound/time: 1.0 = at the bound\n";
  std::cout << "# time = median over iterations of (last rank done - barrier open); algbw = S/time;"
               " busbw = algbw*2(N-1)/N\n";
  std::cout << "# peakRSS = process peak RSS during the config (buffers included); extra/rank = (peak RSS while"
               " running - RSS with the N buffers allocated and touched) / N\n";

  const bool spread = args.has("--spread");
  std::vector<table::column> cols{{"size(B)", 12},     {"count", 11},       {"type", 6},         {"redop", 5},
                                  {"policy", 7},       {"N", 3},            {"time(us)", 11},    {"algbw(GB/s)", 11},
                                  {"busbw(GB/s)", 11}, {"bound(us)", 11},   {"bound/time", 10},  {"peakRSS(MiB)", 12},
                                  {"extra/rank(MiB)", 15}};
  if (spread) {
    cols.push_back({"min(us)", 11});
    cols.push_back({"max(us)", 11});
    cols.push_back({"iters", 5});
  }
  table t(std::move(cols));

  // --- Configs ---------------------------------------------------------------------------------------
  const std::size_t total = s.sizes.size() * s.ranks.size() * s.policies.size();
  progress prog(total, !args.has("--quiet"));
  memory_probe mem;
  std::cout << "# peak RSS measured with " << (mem.hwm_reset ? "VmHWM, reset per window via /proc/self/clear_refs"
                                                             : "a 1 ms /proc/self/statm sampler (VmHWM reset unavailable)")
            << "; load average at start: " << load_average() << '\n';
  std::cout << "#\n";
  t.print_header(std::cout);
  std::vector<row_result> results;
  std::size_t index = 0;
  const auto t_start = steady::now();
  for (int n : s.ranks) {
    for (std::size_t bytes : s.sizes) {
      const std::size_t count = bytes / sizeof(float);
      const std::size_t sb = count * sizeof(float);
      for (const auto& policy : s.policies) {
        ++index;
        prog.update(index, policy + " N=" + std::to_string(n) + " " + human_bytes(static_cast<double>(sb)));
        const int iters = s.iters > 0 ? s.iters : default_iters(sb, n);
        const int warmup = s.warmup >= 0 ? s.warmup : std::max(2, iters / 10);
        const measurement m = run_policy(policy, n, count, iters, warmup, s.opt, mem, s.pin);
        prog.finish();
        const double algbw = static_cast<double>(sb) / (m.time_us * 1e-6) / 1e9;
        const double busbw = algbw * allreduce_bus_factor(n);
        const double bound_us = 2.0 * n * static_cast<double>(sb) / bw * 1e6;
        const double ratio = bound_us / m.time_us;
        const double extra = (static_cast<double>(m.peak_run) - static_cast<double>(m.rss_with_buffers)) / n;
        const double mib = 1024.0 * 1024.0;
        std::vector<std::string> cells{std::to_string(sb),     std::to_string(count), "float",
                                       "sum",                  policy,                std::to_string(n),
                                       fixed(m.time_us, 1),    fixed(algbw, 3),       fixed(busbw, 3),
                                       fixed(bound_us, 1),     fixed(ratio, 3),
                                       fixed(static_cast<double>(m.peak_config) / mib, 1), fixed(extra / mib, 3)};
        if (spread) {
          cells.push_back(fixed(m.min_us, 1));
          cells.push_back(fixed(m.max_us, 1));
          cells.push_back(std::to_string(m.iters));
        }
        t.row(std::cout, std::move(cells));
        const double fresh = (static_cast<double>(m.peak_config) - static_cast<double>(m.rss_before) -
                              static_cast<double>(n) * static_cast<double>(sb)) / n;
        results.push_back({policy, n, sb, m.time_us, m.min_us, bound_us, ratio, busbw, extra / mib,
                           static_cast<double>(m.peak_config) / mib, fresh / mib});
      }
    }
  }
  const double elapsed = std::chrono::duration<double>(steady::now() - t_start).count();

  // Streaming bandwidth again: on a shared machine the first measurement may have been depressed by
  // other load. The table keeps the first; the summary also reads the ratios against the better one.
  const stream_result sr_end = measure_stream_add(stream_bytes, s.smoke ? 2 : 10);
  const double bw_best = std::max(bw, sr_end.best());

  // --- Summary -------------------------------------------------------------------------------------
  const double target = 0.5;
  const std::size_t large = std::size_t{16} << 20;
  std::cout << "#\n# stream_bw re-measured at the end: " << fixed(sr_end.best() / 1e9, 2) << " GB/s (start "
            << fixed(bw / 1e9, 2) << " GB/s); in-place add " << fixed(sr_end.bw_inplace / 1e9, 2)
            << " GB/s (start " << fixed(sr.bw_inplace / 1e9, 2) << " GB/s). The table uses the start stream_bw.\n";
  const double bw_inplace = std::max(sr.bw_inplace, sr_end.bw_inplace);
  std::cout << "# summary: best policy's bound/time at each S >= 16 MiB; target >= " << fixed(target, 2)
            << " for N = 2 and 4 (median times, start stream_bw).\n"
            << "#   other readings of the worst ratio: min = from the fastest iteration instead of the median;"
               " maxbw = against max(start, end) stream_bw "
            << fixed(bw_best / 1e9, 2) << " GB/s; inplace = against the in-place-add bandwidth "
            << fixed(bw_inplace / 1e9, 2) << " GB/s\n";
  bool all_pass = true, any_targeted = false;
  for (int n : s.ranks) {
    std::string line;
    double worst = -1, worst_min = -1;
    for (std::size_t bytes : s.sizes) {
      if (bytes < large) continue;
      const row_result* best = nullptr;
      double best_min = -1;
      for (const auto& r : results) {
        if (r.n != n || r.bytes != bytes / sizeof(float) * sizeof(float)) continue;
        if (!best || r.ratio > best->ratio) best = &r;
        best_min = std::max(best_min, r.bound_us / r.min_us);
      }
      if (!best) continue;
      line += "  " + size_label(best->bytes) + ": " + best->policy + " " + fixed(best->ratio, 3);
      worst = worst < 0 ? best->ratio : std::min(worst, best->ratio);
      worst_min = worst_min < 0 ? best_min : std::min(worst_min, best_min);
    }
    std::cout << "#   N=" << n << ":";
    if (worst < 0) {
      std::cout << "  (no size >= 16 MiB in this run)\n";
      continue;
    }
    const bool targeted = n == 2 || n == 4;
    const bool pass = worst >= target;
    if (targeted) any_targeted = true;
    if (targeted && !pass) all_pass = false;
    std::cout << line << "  -> worst " << fixed(worst, 3) << (targeted ? (pass ? "  PASS" : "  MISS") : "  (no target)")
              << "  [min " << fixed(worst_min, 3) << ", maxbw " << fixed(worst * bw / bw_best, 3) << ", inplace "
              << fixed(worst * bw / bw_inplace, 3) << "]\n";
  }
  double max_extra = 0, max_peak = 0, max_fresh = -1;
  for (const auto& r : results) {
    max_extra = std::max(max_extra, r.extra_mib);
    max_peak = std::max(max_peak, r.peak_mib);
    if (r.bytes >= (std::size_t{64} << 20)) max_fresh = std::max(max_fresh, r.fresh_extra_mib);
  }
  const double seg_mib = static_cast<double>(s.opt.segment_bytes) / (1024.0 * 1024.0);
  std::cout << "# memory: max extra/rank " << fixed(max_extra, 3) << " MiB vs one segment " << fixed(seg_mib, 3)
            << " MiB -> " << (max_extra <= seg_mib ? "PASS" : "MISS") << "; largest peakRSS " << fixed(max_peak, 1)
            << " MiB\n";
  if (max_fresh > -1)
    std::cout << "#   cross-check at S >= 64 MiB (buffers freshly mmap'd): max (peakRSS - RSS before allocation - N*S)/N = "
              << fixed(max_fresh, 3) << " MiB\n";
  std::cout << "# load average at end: " << load_average() << '\n';
  std::cout << "# bandwidth target: " << (!any_targeted ? "n/a (needs N=2 or 4 at S >= 16 MiB)" : all_pass ? "PASS" : "MISS") << "; " << results.size() << " configs in "
            << fixed(elapsed, 1) << " s\n";

  if (!s.csv.empty()) {
    t.write_csv(s.csv);
    std::cout << "# wrote " << s.csv << '\n';
  }
  if (!s.svg.empty()) {
    std::vector<series> lines;
    for (const auto& p : s.policies)
      for (int n : s.ranks) {
        series se{p + " N=" + std::to_string(n), {}};
        for (const auto& r : results)
          if (r.policy == p && r.n == n) se.points.emplace_back(static_cast<double>(r.bytes), r.busbw);
        lines.push_back(std::move(se));
      }
    write_svg_plot(s.svg, "dssync in-process allreduce (float sum), busbw vs size", "bytes per rank",
                   "busbw (GB/s)", lines);
    std::cout << "# wrote " << s.svg << '\n';
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return guarded_main("allreduce_inproc", run, argc, argv); }
