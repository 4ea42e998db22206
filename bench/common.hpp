#pragma once
/// \file
/// Shared helpers of dssync's benchmarks (in-process now, MPI later). No dependency beyond the C++20
/// standard library and POSIX:
///   - argument parsing (`cli`, `parse_bytes`, `parse_int_list`, `parse_list`),
///   - an nccl-tests style table printer that can also write CSV (`table`),
///   - process memory: current RSS (/proc/self/statm), peak RSS (VmHWM, else getrusage) and a sampler
///     thread that records the largest RSS seen (`rss_sampler`),
///   - this machine's streaming-add bandwidth, c[i] = a[i] + b[i] (`measure_stream_add`),
///   - timing helpers (`median`), a progress line (`progress`) and a dependency-free SVG line plot.

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

namespace dssync_bench {

using steady = std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------------------
// Sizes and lists
// ---------------------------------------------------------------------------------------------------

/// Parses "4096", "4K", "4KiB", "64M", "1G" (binary multiples). Throws std::invalid_argument.
inline std::size_t parse_bytes(std::string_view s) {
  const std::string orig(s);
  auto fail = [&] { throw std::invalid_argument("\"" + orig + "\" is not a size (e.g. 4096, 64K, 16M, 1G)"); };
  if (s.size() >= 3 && (s.substr(s.size() - 3) == "iB" || s.substr(s.size() - 3) == "ib")) s.remove_suffix(2);
  if (!s.empty() && (s.back() == 'B' || s.back() == 'b') && s.size() >= 2 &&
      !(s[s.size() - 2] >= '0' && s[s.size() - 2] <= '9'))
    fail();
  if (!s.empty() && (s.back() == 'B' || s.back() == 'b')) s.remove_suffix(1);
  std::size_t mult = 1;
  if (!s.empty()) {
    switch (s.back()) {
      case 'k': case 'K': mult = std::size_t{1} << 10; s.remove_suffix(1); break;
      case 'm': case 'M': mult = std::size_t{1} << 20; s.remove_suffix(1); break;
      case 'g': case 'G': mult = std::size_t{1} << 30; s.remove_suffix(1); break;
      default: break;
    }
  }
  if (s.empty()) fail();
  std::size_t x = 0;
  for (char c : s) {
    if (c < '0' || c > '9') fail();
    x = x * 10 + static_cast<std::size_t>(c - '0');
  }
  return x * mult;
}

/// Splits "a,b,c" into its non-empty parts.
inline std::vector<std::string> parse_list(std::string_view s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= s.size()) {
    const std::size_t end = std::min(s.find(',', start), s.size());
    if (end > start) out.emplace_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

/// Parses a positive integer. Throws std::invalid_argument.
inline long parse_long(std::string_view s, std::string_view what) {
  const std::string str(s);
  char* end = nullptr;
  const long v = std::strtol(str.c_str(), &end, 10);
  if (str.empty() || end == nullptr || *end != '\0')
    throw std::invalid_argument(std::string(what) + ": \"" + str + "\" is not an integer");
  return v;
}

/// Parses "2,4,8".
inline std::vector<int> parse_int_list(std::string_view s, std::string_view what) {
  std::vector<int> out;
  for (const auto& p : parse_list(s)) out.push_back(static_cast<int>(parse_long(p, what)));
  if (out.empty()) throw std::invalid_argument(std::string(what) + ": empty list");
  return out;
}

/// "1K", "256K", "64M", "1G", or the plain number of bytes when it is not a whole multiple.
inline std::string size_label(std::size_t b) {
  constexpr std::size_t K = 1024, M = K * K, G = M * K;
  if (b >= G && b % G == 0) return std::to_string(b / G) + "G";
  if (b >= M && b % M == 0) return std::to_string(b / M) + "M";
  if (b >= K && b % K == 0) return std::to_string(b / K) + "K";
  return std::to_string(b);
}

/// "64 MiB", "4 KiB", "100 B", "1.5 MiB".
inline std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024.0 && u < 4) {
    b /= 1024.0;
    ++u;
  }
  std::ostringstream os;
  if (std::fabs(b - std::round(b)) < 1e-9)
    os << static_cast<long long>(std::llround(b)) << ' ' << units[u];
  else
    os << std::fixed << std::setprecision(1) << b << ' ' << units[u];
  return os.str();
}

/// Geometric size sweep min, min*step, ... <= max.
inline std::vector<std::size_t> size_sweep(std::size_t min, std::size_t max, std::size_t step) {
  std::vector<std::size_t> out;
  if (min == 0 || step < 2) throw std::invalid_argument("size sweep: need min > 0 and step >= 2");
  for (std::size_t s = min; s <= max; s *= step) {
    out.push_back(s);
    if (s > std::numeric_limits<std::size_t>::max() / step) break;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------------

/// A small "--name value" / "--name=value" / "--flag" parser. Declare the options, then `parse`.
class cli {
 public:
  cli(std::string program, std::string summary) : program_(std::move(program)), summary_(std::move(summary)) {}

  /// Declares a flag without a value.
  cli& flag(std::string name, std::string help) {
    opts_.push_back({std::move(name), "", std::move(help), false});
    return *this;
  }
  /// Declares an option that takes a value.
  cli& option(std::string name, std::string metavar, std::string help) {
    opts_.push_back({std::move(name), std::move(metavar), std::move(help), true});
    return *this;
  }

  /// Parses argv. Returns false (after printing usage) for --help; throws std::invalid_argument on
  /// unknown options or missing values.
  bool parse(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "--help" || a == "-h") {
        usage(std::cout);
        return false;
      }
      std::optional<std::string> inline_value;
      if (auto eq = a.find('='); a.rfind("--", 0) == 0 && eq != std::string::npos) {
        inline_value = a.substr(eq + 1);
        a = a.substr(0, eq);
      }
      const spec* s = find(a);
      if (s == nullptr) throw std::invalid_argument("unknown argument \"" + a + "\" (see --help)");
      if (!s->takes_value) {
        if (inline_value) throw std::invalid_argument(a + " takes no value");
        values_[a] = "";
        continue;
      }
      if (inline_value) {
        values_[a] = *inline_value;
      } else {
        if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value (" + s->metavar + ")");
        values_[a] = argv[++i];
      }
    }
    return true;
  }

  [[nodiscard]] bool has(const std::string& name) const { return values_.count(name) != 0; }
  [[nodiscard]] std::optional<std::string> get(const std::string& name) const {
    auto it = values_.find(name);
    if (it == values_.end()) return std::nullopt;
    return it->second;
  }

  void usage(std::ostream& os) const {
    os << "usage: " << program_ << " [options]\n" << summary_ << "\n\noptions:\n";
    for (const auto& o : opts_) {
      std::string left = "  " + o.name + (o.takes_value ? " " + o.metavar : "");
      os << std::left << std::setw(28) << left << ' ' << o.help << '\n';
    }
    os << std::left << std::setw(28) << "  --help" << ' ' << "this text\n" << std::right;
  }

 private:
  struct spec {
    std::string name, metavar, help;
    bool takes_value = false;
  };
  [[nodiscard]] const spec* find(const std::string& n) const {
    for (const auto& o : opts_)
      if (o.name == n) return &o;
    return nullptr;
  }
  std::string program_, summary_;
  std::vector<spec> opts_;
  std::map<std::string, std::string> values_;
};

// ---------------------------------------------------------------------------------------------------
// Number formatting and statistics
// ---------------------------------------------------------------------------------------------------

inline std::string fixed(double v, int prec) {
  if (!std::isfinite(v)) return "n/a";
  std::ostringstream os;
  os << std::fixed << std::setprecision(prec) << v;
  return os.str();
}

/// Median of `v` (copied; mean of the two middle values for even sizes). NaN when empty.
inline double median(std::vector<double> v) {
  if (v.empty()) return std::numeric_limits<double>::quiet_NaN();
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/// nccl-tests' bus bandwidth factor of allreduce on `n` ranks: 2(n-1)/n.
inline double allreduce_bus_factor(int n) { return n <= 1 ? 0.0 : 2.0 * (n - 1) / n; }

// ---------------------------------------------------------------------------------------------------
// Table printer (nccl-tests style) with CSV output
// ---------------------------------------------------------------------------------------------------

/// A fixed-width, right-aligned table. The header lines start with '#', as in nccl-tests, so the
/// output stays easy to grep and to plot. Rows are kept for `write_csv`.
class table {
 public:
  struct column {
    std::string name;
    int width;
  };
  explicit table(std::vector<column> cols) : cols_(std::move(cols)) {}

  void print_header(std::ostream& os) const {
    os << '#';
    for (std::size_t i = 0; i < cols_.size(); ++i)
      os << std::right << std::setw(cols_[i].width + (i == 0 ? -1 : 0)) << cols_[i].name << (i + 1 < cols_.size() ? " " : "");
    os << '\n';
  }

  /// Prints one row (cells in column order) and keeps it.
  void row(std::ostream& os, std::vector<std::string> cells) {
    cells.resize(cols_.size());
    for (std::size_t i = 0; i < cols_.size(); ++i)
      os << std::right << std::setw(cols_[i].width) << cells[i] << (i + 1 < cols_.size() ? " " : "");
    os << '\n' << std::flush;
    rows_.push_back(std::move(cells));
  }

  [[nodiscard]] const std::vector<std::vector<std::string>>& rows() const noexcept { return rows_; }

  /// Writes the header and all rows as CSV. Throws std::runtime_error when the file cannot be written.
  void write_csv(const std::string& path) const {
    std::ofstream f(path);
    if (!f) throw std::runtime_error("cannot write " + path);
    for (std::size_t i = 0; i < cols_.size(); ++i) f << (i ? "," : "") << csv_cell(cols_[i].name);
    f << '\n';
    for (const auto& r : rows_) {
      for (std::size_t i = 0; i < r.size(); ++i) f << (i ? "," : "") << csv_cell(r[i]);
      f << '\n';
    }
    if (!f) throw std::runtime_error("error writing " + path);
  }

 private:
  static std::string csv_cell(const std::string& s) {
    if (s.find_first_of(",\"\n") == std::string::npos) return s;
    std::string o = "\"";
    for (char c : s) o += c == '"' ? std::string("\"\"") : std::string(1, c);
    return o + "\"";
  }
  std::vector<column> cols_;
  std::vector<std::vector<std::string>> rows_;
};

// ---------------------------------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------------------------------

/// Resident set size now, in bytes (/proc/self/statm; 0 where unavailable).
inline std::size_t current_rss_bytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long long size = 0, resident = 0;
  const int n = std::fscanf(f, "%llu %llu", &size, &resident);
  std::fclose(f);
  if (n != 2) return 0;
  return static_cast<std::size_t>(resident) * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}

/// Peak resident set size of the process so far, in bytes: VmHWM from /proc/self/status, else
/// getrusage's ru_maxrss.
inline std::size_t peak_rss_bytes() {
  if (std::FILE* f = std::fopen("/proc/self/status", "r")) {
    char line[256];
    while (std::fgets(line, sizeof line, f) != nullptr) {
      unsigned long long kb = 0;
      if (std::sscanf(line, "VmHWM: %llu kB", &kb) == 1) {
        std::fclose(f);
        return static_cast<std::size_t>(kb) * 1024;
      }
    }
    std::fclose(f);
  }
  rusage ru{};
  if (getrusage(RUSAGE_SELF, &ru) == 0) return static_cast<std::size_t>(ru.ru_maxrss) * 1024;  // Linux: KiB
  return 0;
}

/// Resets the kernel's peak-RSS counter (VmHWM) to the current RSS by writing "5" to
/// /proc/self/clear_refs (Linux >= 4.0). Returns false where that is not possible; then use
/// `rss_sampler` to attribute peaks to a time window.
inline bool reset_peak_rss() {
  std::FILE* f = std::fopen("/proc/self/clear_refs", "w");
  if (f == nullptr) return false;
  const bool wrote = std::fputs("5", f) >= 0;
  const bool closed = std::fclose(f) == 0;
  return wrote && closed;
}

/// "0.52 0.61 0.70" from /proc/loadavg (1, 5, 15 minutes), or "n/a". Benchmarks print it: other
/// processes competing for the cores make timings noisy.
inline std::string load_average() {
  std::FILE* f = std::fopen("/proc/loadavg", "r");
  if (f == nullptr) return "n/a";
  double a = 0, b = 0, c = 0;
  const int n = std::fscanf(f, "%lf %lf %lf", &a, &b, &c);
  std::fclose(f);
  if (n != 3) return "n/a";
  return fixed(a, 2) + " " + fixed(b, 2) + " " + fixed(c, 2);
}

/// A thread that samples the RSS every `period` and keeps the largest value since the last `reset`.
/// VmHWM cannot be reset, so this is how a benchmark attributes peak memory to one configuration.
class rss_sampler {
 public:
  explicit rss_sampler(std::chrono::microseconds period = std::chrono::milliseconds(1)) : period_(period) {
    max_.store(current_rss_bytes());
    thread_ = std::thread([this] {
      while (!stop_.load(std::memory_order_relaxed)) {
        sample();
        std::this_thread::sleep_for(period_);
      }
    });
  }
  rss_sampler(const rss_sampler&) = delete;
  rss_sampler& operator=(const rss_sampler&) = delete;
  ~rss_sampler() {
    stop_.store(true);
    thread_.join();
  }

  /// Starts a new window; returns the RSS now (also the window's first sample).
  std::size_t reset() {
    const std::size_t now = current_rss_bytes();
    max_.store(now);
    return now;
  }
  /// Takes one sample now (call at the end of a window so that short windows get at least two samples).
  void sample() {
    const std::size_t r = current_rss_bytes();
    std::size_t m = max_.load(std::memory_order_relaxed);
    while (r > m && !max_.compare_exchange_weak(m, r)) {
    }
  }
  /// The largest RSS sampled since `reset`.
  [[nodiscard]] std::size_t max() const { return max_.load(); }

 private:
  std::chrono::microseconds period_;
  std::atomic<std::size_t> max_{0};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

/// How the peak RSS of a window is measured: VmHWM reset through /proc/self/clear_refs where the
/// kernel allows it (exact), else a sampler thread reading /proc/self/statm every millisecond.
struct memory_probe {
  bool hwm_reset = reset_peak_rss();
  std::unique_ptr<rss_sampler> sampler = hwm_reset ? nullptr : std::make_unique<rss_sampler>();
  /// Starts a window; returns the RSS now.
  std::size_t start() {
    if (hwm_reset) {
      reset_peak_rss();
      return current_rss_bytes();
    }
    return sampler->reset();
  }
  /// The peak RSS since `start`.
  std::size_t peak() {
    if (hwm_reset) return std::max(peak_rss_bytes(), current_rss_bytes());
    sampler->sample();
    return sampler->max();
  }
};

// ---------------------------------------------------------------------------------------------------
// Threads
// ---------------------------------------------------------------------------------------------------

/// Pins the calling thread to the `index`-th CPU (modulo the CPUs this process may use). Returns false
/// where that is not possible. Without pinning, two communicating threads may share one core for a
/// while and every hand-off then costs a context switch, which makes small-message latency bimodal.
inline bool pin_to_cpu(int index) {
#if defined(__linux__)
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return false;
  const int count = CPU_COUNT(&allowed);
  if (count <= 0) return false;
  int want = index % count;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &allowed)) continue;
    if (want-- == 0) {
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(cpu, &one);
      return pthread_setaffinity_np(pthread_self(), sizeof one, &one) == 0;
    }
  }
  return false;
#else
  (void)index;
  return false;
#endif
}

// ---------------------------------------------------------------------------------------------------
// Streaming-add bandwidth
// ---------------------------------------------------------------------------------------------------

namespace detail {
// Kept out of line so that the compiler cannot fuse or drop repetitions.
[[gnu::noinline]] inline void stream_add(float* __restrict c, const float* __restrict a, const float* __restrict b,
                                         std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) c[i] = a[i] + b[i];
}
[[gnu::noinline]] inline void stream_inplace_add(float* __restrict c, const float* __restrict a, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) c[i] += a[i];
}
}  // namespace detail

/// The streaming kernels `stream_add_bandwidth` can time. Both count 3 streams of bytes per element.
enum class stream_kernel {
  add,          ///< c[i] = a[i] + b[i] (STREAM "Add"; the write-allocate read of c is real but not counted)
  inplace_add,  ///< c[i] += a[i] (the access pattern of a reduction into the user's buffer)
};

/// Streaming-add bandwidth with `threads` threads: c[i] = a[i] + b[i] over three arrays of
/// `bytes_per_array` bytes each (make them much larger than the last-level cache), counting 3 streams of
/// bytes per element as STREAM does (the write-allocate read of c is not counted). Each thread works on
/// its own contiguous slice, first-touched by itself. Returns the best of `reps` runs, in bytes/s.
inline double stream_add_bandwidth(std::size_t bytes_per_array, int threads, int reps,
                                   stream_kernel kernel = stream_kernel::add) {
  threads = std::max(1, threads);
  const std::size_t n = std::max<std::size_t>(bytes_per_array / sizeof(float), static_cast<std::size_t>(threads));
  std::unique_ptr<float[]> a(new float[n]), b(new float[n]), c(new float[n]);  // not touched here
  double best = 0.0;
  steady::time_point start;
  std::vector<steady::time_point> end(static_cast<std::size_t>(threads));
  std::barrier sync(threads, [&]() noexcept { start = steady::now(); });
  std::vector<double> times;
  std::vector<std::thread> pool;
  std::barrier done(threads, [&]() noexcept {
    times.push_back(std::chrono::duration<double>(*std::max_element(end.begin(), end.end()) - start).count());
  });
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      const std::size_t lo = n * static_cast<std::size_t>(t) / static_cast<std::size_t>(threads);
      const std::size_t hi = n * static_cast<std::size_t>(t + 1) / static_cast<std::size_t>(threads);
      for (std::size_t i = lo; i < hi; ++i) {
        a[i] = static_cast<float>(i & 1023);
        b[i] = 1.0f;
        c[i] = 0.0f;
      }
      for (int r = 0; r < reps + 1; ++r) {  // one untimed-in-effect warm-up (dropped below)
        sync.arrive_and_wait();
        if (kernel == stream_kernel::add)
          detail::stream_add(c.get() + lo, a.get() + lo, b.get() + lo, hi - lo);
        else
          detail::stream_inplace_add(c.get() + lo, a.get() + lo, hi - lo);
        end[static_cast<std::size_t>(t)] = steady::now();
        done.arrive_and_wait();
      }
    });
  for (auto& th : pool) th.join();
  volatile float sink = c[n / 2] + c[n - 1];
  (void)sink;
  for (std::size_t i = 1; i < times.size(); ++i) best = std::max(best, 3.0 * static_cast<double>(n * sizeof(float)) / times[i]);
  return best;
}

/// The streaming-add measurement a benchmark prints: c[i] = a[i] + b[i] with 1 thread and with
/// min(2, hardware threads) threads (the best is the bandwidth of record), plus c[i] += a[i] for
/// reference (no write-allocate traffic, so usually faster).
struct stream_result {
  std::size_t bytes_per_array = 0;
  int reps = 0;
  double bw_1thread = 0;      ///< bytes/s
  int threads_multi = 1;
  double bw_multi = 0;        ///< bytes/s with `threads_multi` threads (0 if not measured)
  double bw_inplace = 0;      ///< bytes/s of c[i] += a[i], best over the same thread counts (informational)
  [[nodiscard]] double best() const { return std::max(bw_1thread, bw_multi); }
  [[nodiscard]] int best_threads() const { return bw_multi > bw_1thread ? threads_multi : 1; }
};

/// Measures `stream_result`. The default 3 x 64 MiB is well beyond any last-level cache of today's CPUs
/// (a quick run may use less).
inline stream_result measure_stream_add(std::size_t bytes_per_array = std::size_t{64} << 20, int reps = 5) {
  stream_result r;
  r.bytes_per_array = bytes_per_array;
  r.reps = reps;
  r.bw_1thread = stream_add_bandwidth(bytes_per_array, 1, reps);
  const unsigned hw = std::thread::hardware_concurrency();
  r.threads_multi = static_cast<int>(std::min(2u, hw == 0 ? 1u : hw));
  if (r.threads_multi > 1) r.bw_multi = stream_add_bandwidth(bytes_per_array, r.threads_multi, reps);
  r.bw_inplace = stream_add_bandwidth(bytes_per_array, 1, reps, stream_kernel::inplace_add);
  if (r.threads_multi > 1)
    r.bw_inplace = std::max(r.bw_inplace, stream_add_bandwidth(bytes_per_array, r.threads_multi, reps,
                                                               stream_kernel::inplace_add));
  return r;
}

// ---------------------------------------------------------------------------------------------------
// Progress line
// ---------------------------------------------------------------------------------------------------

/// "[12/60] ring N=4 64 MiB ..." on stderr: rewritten in place with '\r' on a terminal, one line per
/// update otherwise (logs stay readable).
class progress {
 public:
  explicit progress(std::size_t total, bool enabled = true)
      : total_(total), enabled_(enabled), tty_(isatty(STDERR_FILENO) != 0) {}
  void update(std::size_t index, const std::string& what) {
    if (!enabled_) return;
    std::ostringstream os;
    os << '[' << index << '/' << total_ << "] " << what << " ...";
    std::string s = os.str();
    if (tty_) {
      const std::size_t len = s.size();
      if (s.size() < last_len_) s.append(last_len_ - s.size(), ' ');
      last_len_ = len;
      std::cerr << '\r' << s << std::flush;
    } else {
      std::cerr << s << '\n' << std::flush;
    }
  }
  void finish() {
    if (enabled_ && tty_ && last_len_ > 0) std::cerr << '\r' << std::string(last_len_, ' ') << '\r' << std::flush;
    last_len_ = 0;
  }

 private:
  std::size_t total_;
  bool enabled_, tty_;
  std::size_t last_len_ = 0;
};

// ---------------------------------------------------------------------------------------------------
// SVG line plot
// ---------------------------------------------------------------------------------------------------

/// One line of a plot.
struct series {
  std::string label;
  std::vector<std::pair<double, double>> points;  ///< (x, y), x > 0
};

/// Writes a line plot with a log2 x axis (sizes) and a linear y axis. No dependencies: plain SVG.
inline void write_svg_plot(const std::string& path, const std::string& title, const std::string& xlabel,
                           const std::string& ylabel, const std::vector<series>& lines,
                           double hline = std::numeric_limits<double>::quiet_NaN(), const std::string& hline_label = "") {
  std::ofstream f(path);
  if (!f) throw std::runtime_error("cannot write " + path);
  const double W = 900, H = 540, L = 80, R = 220, T = 50, B = 60;
  const double pw = W - L - R, ph = H - T - B;
  double xmin = std::numeric_limits<double>::infinity(), xmax = 0, ymax = 0;
  for (const auto& s : lines)
    for (auto [x, y] : s.points) {
      if (!(x > 0) || !std::isfinite(y)) continue;
      xmin = std::min(xmin, x);
      xmax = std::max(xmax, x);
      ymax = std::max(ymax, y);
    }
  if (std::isfinite(hline)) ymax = std::max(ymax, hline);
  if (!std::isfinite(xmin)) xmin = 1, xmax = 2;
  if (xmax <= xmin) xmax = xmin * 2;
  if (!(ymax > 0)) ymax = 1;
  // A "nice" y range.
  const double mag = std::pow(10.0, std::floor(std::log10(ymax)));
  double ystep = mag;
  for (double m : {0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0})
    if (ymax / (m * mag) <= 8) {
      ystep = m * mag;
      break;
    }
  const double ytop = std::ceil(ymax / ystep) * ystep;
  const double lx0 = std::log2(xmin), lx1 = std::log2(xmax);
  auto X = [&](double x) { return L + (std::log2(x) - lx0) / (lx1 - lx0) * pw; };
  auto Y = [&](double y) { return T + ph - y / ytop * ph; };
  auto esc = [](const std::string& s) {
    std::string o;
    for (char c : s) {
      if (c == '<') o += "&lt;";
      else if (c == '>') o += "&gt;";
      else if (c == '&') o += "&amp;";
      else o += c;
    }
    return o;
  };
  const char* colors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                          "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
  f << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H
    << "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  f << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  f << "<text x=\"" << W / 2 << "\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">" << esc(title) << "</text>\n";
  // Grid and ticks.
  for (double y = 0; y <= ytop + ystep * 1e-9; y += ystep) {
    f << "<line x1=\"" << L << "\" x2=\"" << L + pw << "\" y1=\"" << Y(y) << "\" y2=\"" << Y(y)
      << "\" stroke=\"#ddd\"/>\n";
    f << "<text x=\"" << L - 6 << "\" y=\"" << Y(y) + 4 << "\" text-anchor=\"end\">" << fixed(y, ystep < 1 ? 2 : 1)
      << "</text>\n";
  }
  for (double lx = std::ceil(lx0); lx <= lx1 + 1e-9; lx += 1) {
    const double x = std::exp2(lx);
    const bool major = static_cast<long long>(lx) % 2 == 0;
    f << "<line x1=\"" << X(x) << "\" x2=\"" << X(x) << "\" y1=\"" << T << "\" y2=\"" << T + ph << "\" stroke=\""
      << (major ? "#ddd" : "#f2f2f2") << "\"/>\n";
    if (major)
      f << "<text x=\"" << X(x) << "\" y=\"" << T + ph + 18 << "\" text-anchor=\"middle\">"
        << size_label(static_cast<std::size_t>(x)) << "</text>\n";
  }
  f << "<rect x=\"" << L << "\" y=\"" << T << "\" width=\"" << pw << "\" height=\"" << ph
    << "\" fill=\"none\" stroke=\"black\"/>\n";
  f << "<text x=\"" << L + pw / 2 << "\" y=\"" << H - 15 << "\" text-anchor=\"middle\">" << esc(xlabel) << "</text>\n";
  f << "<text transform=\"translate(20," << T + ph / 2 << ") rotate(-90)\" text-anchor=\"middle\">" << esc(ylabel)
    << "</text>\n";
  if (std::isfinite(hline)) {
    f << "<line x1=\"" << L << "\" x2=\"" << L + pw << "\" y1=\"" << Y(hline) << "\" y2=\"" << Y(hline)
      << "\" stroke=\"black\" stroke-dasharray=\"6,4\"/>\n";
    f << "<text x=\"" << L + 6 << "\" y=\"" << Y(hline) - 5 << "\">" << esc(hline_label) << "</text>\n";
  }
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const char* col = colors[i % 10];
    f << "<polyline fill=\"none\" stroke=\"" << col << "\" stroke-width=\"2\" points=\"";
    for (auto [x, y] : lines[i].points)
      if (x > 0 && std::isfinite(y)) f << X(x) << ',' << Y(y) << ' ';
    f << "\"/>\n";
    for (auto [x, y] : lines[i].points)
      if (x > 0 && std::isfinite(y))
        f << "<circle cx=\"" << X(x) << "\" cy=\"" << Y(y) << "\" r=\"3\" fill=\"" << col << "\"/>\n";
    const double ly = T + 10 + 20.0 * static_cast<double>(i);
    f << "<line x1=\"" << L + pw + 15 << "\" x2=\"" << L + pw + 45 << "\" y1=\"" << ly << "\" y2=\"" << ly
      << "\" stroke=\"" << col << "\" stroke-width=\"2\"/>\n";
    f << "<text x=\"" << L + pw + 52 << "\" y=\"" << ly + 4 << "\">" << esc(lines[i].label) << "</text>\n";
  }
  f << "</svg>\n";
  if (!f) throw std::runtime_error("error writing " + path);
}

/// `--sizes` as "MIN:MAX" or one size "S": bytes with K/M/G suffixes (`parse_bytes`).
inline std::pair<std::size_t, std::size_t> parse_size_range(std::string_view spec) {
  const auto colon = spec.find(':');
  const std::size_t lo = parse_bytes(spec.substr(0, colon));
  const std::size_t hi = colon == std::string_view::npos ? lo : parse_bytes(spec.substr(colon + 1));
  return {lo, hi};
}

/// A benchmark's `main`: runs `run(argc, argv)`, and turns a bad option (`std::invalid_argument`) into
/// exit status 2 and any other error into 1, each with one line on stderr naming the program.
template <class Run>
int guarded_main(const char* program, Run&& run, int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::invalid_argument& e) {
    std::cerr << program << ": " << e.what() << '\n';
    return 2;
  } catch (const std::exception& e) {
    std::cerr << program << ": error: " << e.what() << '\n';
    return 1;
  }
}

}  // namespace dssync_bench
