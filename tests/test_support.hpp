#pragma once
// Shared helpers of dssync's unit tests: a sequential oracle for allreduce, random data generators,
// message checks and a small harness around the in-process world.

#include <dssync/dssync.hpp>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace dssync_test {

/// Sets (or, for nullptr, unsets) the environment variable `name` for the lifetime of the object, then
/// restores what it was.
class scoped_env {
 public:
  scoped_env(const char* name, const char* value) : name_(name) {
    if (const char* o = std::getenv(name)) old_ = o;
    if (value) ::setenv(name, value, 1);
    else ::unsetenv(name);
  }
  ~scoped_env() {
    if (old_) ::setenv(name_.c_str(), old_->c_str(), 1);
    else ::unsetenv(name_.c_str());
  }
  scoped_env(const scoped_env&) = delete;
  scoped_env& operator=(const scoped_env&) = delete;

 private:
  std::string name_;
  std::optional<std::string> old_;
};

/// DSSYNC_ALGO set (or unset) for the lifetime of the object.
struct scoped_algo : scoped_env {
  explicit scoped_algo(const char* v) : scoped_env("DSSYNC_ALGO", v) {}
};

// ---------------------------------------------------------------------------------------------------
// Test scale
// ---------------------------------------------------------------------------------------------------

/// DSSYNC_TEST_SCALE (default 1.0): sanitizer runs set it below 1 to shrink the property tests.
inline double scale() {
  static const double s = [] {
    const char* v = std::getenv("DSSYNC_TEST_SCALE");
    if (v == nullptr || *v == '\0') return 1.0;
    char* end = nullptr;
    const double x = std::strtod(v, &end);
    return (end != v && x > 0 && x <= 1000) ? x : 1.0;
  }();
  return s;
}

/// `n` scaled by `scale()`, at least `at_least`.
inline std::size_t scaled(std::size_t n, std::size_t at_least = 1) {
  const auto x = static_cast<std::size_t>(std::llround(static_cast<double>(n) * scale()));
  return std::max(x, at_least);
}

// ---------------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------------

/// `n` floats drawn from N(0, scale²) by a seeded mt19937: a gradient-like test input, the same on every
/// platform's libstdc++ run.
inline std::vector<float> gaussian(std::size_t n, unsigned seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

inline bool contains(std::string_view s, std::string_view sub) { return s.find(sub) != std::string_view::npos; }

/// Whether `msg` contains the number `x` as a whole number (not as part of a longer one).
inline bool has_number(std::string_view msg, long long x) {
  const std::string n = std::to_string(x);
  for (std::size_t at = msg.find(n); at != std::string_view::npos; at = msg.find(n, at + 1)) {
    const bool left_ok = at == 0 || !(std::isdigit(static_cast<unsigned char>(msg[at - 1])) || msg[at - 1] == '-');
    const std::size_t e = at + n.size();
    const bool right_ok = e >= msg.size() || !std::isdigit(static_cast<unsigned char>(msg[e]));
    if (left_ok && right_ok) return true;
  }
  return false;
}

/// Whether `msg` names rank `r` ("rank 3" not followed by another digit).
inline bool names_rank(std::string_view msg, int r) {
  const std::string n = "rank " + std::to_string(r);
  for (std::size_t at = msg.find(n); at != std::string_view::npos; at = msg.find(n, at + 1)) {
    const std::size_t e = at + n.size();
    if (e >= msg.size() || !std::isdigit(static_cast<unsigned char>(msg[e]))) return true;
  }
  return false;
}

/// The what() of the dssync::invalid_argument `f` throws, or a marker that fails every check.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const dssync::invalid_argument& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("<not invalid_argument> ") + e.what();
  }
  return "<nothing thrown>";
}

/// The what() of an exception_ptr ("" if null, "<non-std exception>" otherwise).
inline std::string what(const std::exception_ptr& e) {
  if (!e) return {};
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  } catch (...) {
    return "<non-std exception>";
  }
}

/// Whether `e` holds an exception of type `E` (or derived).
template <class E>
bool holds(const std::exception_ptr& e) {
  if (!e) return false;
  try {
    std::rethrow_exception(e);
  } catch (const E&) {
    return true;
  } catch (...) {
    return false;
  }
}

/// The first non-null error as "rank r: what" lines, or "" if all ranks succeeded.
inline std::string describe_errors(const std::vector<std::exception_ptr>& errs) {
  std::string out;
  for (std::size_t r = 0; r < errs.size(); ++r)
    if (errs[r]) out += "rank " + std::to_string(r) + ": " + what(errs[r]) + "\n";
  return out;
}

/// Thrown inside rank functions when a check fails; the main thread reports it.
struct check_failed : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Throws `check_failed(msg)` unless `cond`. For use on worker threads (doctest asserts stay on the main
/// thread).
inline void ensure(bool cond, const std::string& msg) {
  if (!cond) throw check_failed(msg);
}

// ---------------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------------

/// Default options with a short timeout, so failing tests fail fast instead of waiting 120 s.
inline dssync::options test_options(std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
  dssync::options o;
  o.with_timeout(timeout);
  return o;
}

// ---------------------------------------------------------------------------------------------------
// Random data
// ---------------------------------------------------------------------------------------------------

/// What kind of values to generate.
enum class values {
  any,        ///< floats in [-1, 1); integers over their whole range (sums wrap)
  integral,   ///< integer values in [-1000, 1000] of any type: float sums of them are exact
  positive,   ///< integer values in [0, 1000]
};

template <class T>
std::vector<T> random_values(std::mt19937& g, std::size_t n, values kind = values::any) {
  std::vector<T> v(n);
  if (kind == values::integral || kind == values::positive) {
    std::uniform_int_distribution<int> d(kind == values::positive ? 0 : -1000, 1000);
    for (auto& x : v) x = static_cast<T>(d(g));
  } else if constexpr (std::is_floating_point_v<T>) {
    std::uniform_real_distribution<double> d(-1.0, 1.0);
    for (auto& x : v) x = static_cast<T>(d(g));
  } else {
    std::uniform_int_distribution<T> d(std::numeric_limits<T>::lowest(), std::numeric_limits<T>::max());
    for (auto& x : v) x = d(g);
  }
  return v;
}

/// One input buffer per rank.
template <class T>
std::vector<std::vector<T>> random_inputs(std::mt19937& g, int ranks, std::size_t n, values kind = values::any) {
  std::vector<std::vector<T>> in;
  in.reserve(static_cast<std::size_t>(ranks));
  for (int r = 0; r < ranks; ++r) in.push_back(random_values<T>(g, n, kind));
  return in;
}

// ---------------------------------------------------------------------------------------------------
// Sequential oracle
// ---------------------------------------------------------------------------------------------------

/// The built-in ops the oracle knows.
enum class op_kind { sum, average, min, max };

inline const char* to_string(op_kind k) {
  switch (k) {
    case op_kind::sum: return "sum";
    case op_kind::average: return "average";
    case op_kind::min: return "min";
    case op_kind::max: return "max";
  }
  return "?";
}

/// Calls `f(op)` with the dssync op object of kind `k`.
template <class F>
decltype(auto) with_op(op_kind k, F&& f) {
  switch (k) {
    case op_kind::sum: return f(dssync::ops::sum{});
    case op_kind::average: return f(dssync::ops::average{});
    case op_kind::min: return f(dssync::ops::min{});
    case op_kind::max: break;
  }
  return f(dssync::ops::max{});
}

/// Element `i` of the allreduce of `in` under `k`, computed sequentially.
///  - Integers: sums wrap modulo 2^bits (computed in unsigned arithmetic); average is the wrapped sum
///    divided by the number of ranks, truncating toward zero, as `ops::average` does.
///  - Floating point: computed in long double, returned as long double (compare with a tolerance, or
///    exactly for integer-valued inputs).
template <class T>
auto oracle_at(const std::vector<std::vector<T>>& in, op_kind k, std::size_t i) {
  const std::size_t n = in.size();
  if constexpr (std::is_integral_v<T>) {
    using U = std::make_unsigned_t<T>;
    T lo = in[0][i], hi = in[0][i];
    U s = 0;
    for (std::size_t r = 0; r < n; ++r) {
      s = static_cast<U>(s + static_cast<U>(in[r][i]));
      lo = std::min(lo, in[r][i]);
      hi = std::max(hi, in[r][i]);
    }
    const T sum = static_cast<T>(s);
    switch (k) {
      case op_kind::sum: return sum;
      case op_kind::average: return n > 1 ? static_cast<T>(sum / static_cast<T>(n)) : sum;
      case op_kind::min: return lo;
      case op_kind::max: return hi;
    }
    return sum;
  } else {
    long double s = 0, lo = in[0][i], hi = in[0][i];
    for (std::size_t r = 0; r < n; ++r) {
      s += in[r][i];
      lo = std::min<long double>(lo, in[r][i]);
      hi = std::max<long double>(hi, in[r][i]);
    }
    switch (k) {
      case op_kind::sum: return s;
      case op_kind::average: return s / static_cast<long double>(n);
      case op_kind::min: return lo;
      case op_kind::max: return hi;
    }
    return s;
  }
}

/// The sequential allreduce of `in` (one vector per rank) under `k`, in `T`. For floating point the
/// reference is rounded once from long double; use `check_against_oracle` for tolerant comparison.
template <class T>
std::vector<T> oracle(const std::vector<std::vector<T>>& in, op_kind k) {
  std::vector<T> out(in.empty() ? 0 : in[0].size());
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<T>(oracle_at(in, k, i));
  return out;
}

/// Compares `got` with the oracle of `in` under `k`. Integers, min and max compare exactly; so do
/// floating-point sums and averages when `exact` (integer-valued inputs, whose sums are exact; the
/// average is then the correctly rounded quotient, as `ops::average` computes it). Otherwise a
/// floating-point result may differ from the exact value by `rel * ranks * sum|x|` (rel = 1e-5 for float,
/// 1e-12 for double). Returns "" on success, else a description of the first mismatch.
template <class T>
std::string check_against_oracle(const std::vector<T>& got, const std::vector<std::vector<T>>& in, op_kind k,
                                 bool exact = false) {
  const std::size_t n = in.size();
  const std::size_t count = in.empty() ? 0 : in[0].size();
  if (got.size() != count)
    return "result has " + std::to_string(got.size()) + " elements, expected " + std::to_string(count);
  for (std::size_t i = 0; i < count; ++i) {
    const auto want = oracle_at(in, k, i);
    bool ok = false;
    if constexpr (std::is_integral_v<T>) {
      ok = got[i] == want;
    } else if (k == op_kind::min || k == op_kind::max) {
      ok = static_cast<long double>(got[i]) == want;
    } else if (exact) {
      T w;
      if (k == op_kind::sum) {
        w = static_cast<T>(want);
      } else {
        long double s = 0;
        for (std::size_t r = 0; r < n; ++r) s += in[r][i];
        w = n > 1 ? static_cast<T>(static_cast<T>(s) / static_cast<T>(n)) : static_cast<T>(s);
      }
      ok = got[i] == w;
    } else {
      long double mag = 0;
      for (std::size_t r = 0; r < n; ++r) mag += std::fabs(static_cast<long double>(in[r][i]));
      if (k == op_kind::average) mag /= static_cast<long double>(n);
      const long double rel = std::is_same_v<T, float> ? 1e-5L : 1e-12L;
      const long double tol = rel * static_cast<long double>(n) * std::max<long double>(mag, 1e-30L);
      ok = std::fabs(static_cast<long double>(got[i]) - want) <= tol;
    }
    if (!ok) {
      std::ostringstream os;
      os.precision(17);
      os << "element " << i << ": got " << +got[i] << ", oracle " << +want << " (" << to_string(k) << " over " << n
         << " ranks)";
      return os.str();
    }
  }
  return {};
}

/// Index of the first rank whose result differs bitwise from rank 0's, or -1.
template <class T>
int first_bitwise_difference(const std::vector<std::vector<T>>& results) {
  for (std::size_t r = 1; r < results.size(); ++r) {
    if (results[r].size() != results[0].size()) return static_cast<int>(r);
    if (!results[0].empty() && std::memcmp(results[r].data(), results[0].data(), results[0].size() * sizeof(T)) != 0)
      return static_cast<int>(r);
  }
  return -1;
}

// ---------------------------------------------------------------------------------------------------
// In-process worlds
// ---------------------------------------------------------------------------------------------------

/// Runs `f(comm)` on `n` fresh in-process ranks and returns each rank's error (null on success).
template <class F>
std::vector<std::exception_ptr> run_world(int n, F&& f) {
  dssync::transport::inproc::world w(n);
  return w.run_collect(std::forward<F>(f));
}

/// Polls `pred()` (which may consume messages) until it returns true or `limit` passes, sleeping on
/// the transport's progress notification in between. Returns the last value of `pred()`.
template <class Comm, class Pred>
bool wait_until(Comm& c, Pred&& pred, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (true) {
    const auto token = c.progress_token();
    if (pred()) return true;
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return pred();
    c.wait_progress(token, std::min(deadline, now + std::chrono::milliseconds(50)));
  }
}

}  // namespace dssync_test
