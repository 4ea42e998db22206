#pragma once
/// \file
/// Run-time options of a collective, with NCCL-style environment overrides:
///   DSSYNC_TIMEOUT        seconds a rank waits for a peer before raising timeout_error (default 120)
///   DSSYNC_SEGMENT_BYTES  pipeline segment size in bytes (default 1 MiB; suffixes K, M, G)
///   DSSYNC_CHECK          0 skips the agreement exchange before each collective (default 1)
///   DSSYNC_VERIFY         1 verifies every newly built plan before running it (default 0)
///   DSSYNC_DEBUG          WARN, INFO or TRACE: log to stderr (default off)
///   DSSYNC_ALGO           allreduce policy of the short form and of a communicator ("ring", "direct", ...,
///                         or "auto": per size, from the tuning table, else the cost model)
///   DSSYNC_TUNING_FILE    tuning table written by dssync-tune; when set (and DSSYNC_ALGO is not), the
///                         allreduce policy is "auto" (see algorithms/tuning.hpp)

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "dssync/core/error.hpp"

namespace dssync {

/// Logging levels of DSSYNC_DEBUG.
enum class log_level : int { off = 0, warn = 1, info = 2, trace = 3 };

namespace detail {

inline const char* getenv_or_null(const char* name) noexcept { return std::getenv(name); }

inline std::size_t parse_size(std::string_view name, std::string_view v) {
  std::size_t mult = 1;
  if (!v.empty()) {
    switch (v.back()) {
      case 'k': case 'K': mult = std::size_t{1} << 10; v.remove_suffix(1); break;
      case 'm': case 'M': mult = std::size_t{1} << 20; v.remove_suffix(1); break;
      case 'g': case 'G': mult = std::size_t{1} << 30; v.remove_suffix(1); break;
      default: break;
    }
  }
  std::size_t x = 0;
  if (v.empty()) throw invalid_argument(std::string(name) + ": empty value");
  constexpr std::size_t max = static_cast<std::size_t>(-1);
  for (char c : v) {
    if (c < '0' || c > '9') throw invalid_argument(std::string(name) + ": \"" + std::string(v) + "\" is not a size");
    const auto d = static_cast<std::size_t>(c - '0');
    if (x > (max - d) / 10) throw invalid_argument(std::string(name) + ": \"" + std::string(v) + "\" is too large");
    x = x * 10 + d;
  }
  if (x > max / mult) throw invalid_argument(std::string(name) + ": \"" + std::string(v) + "\" is too large");
  return x * mult;
}

inline log_level parse_level(std::string_view v) {
  if (v == "WARN" || v == "warn" || v == "1") return log_level::warn;
  if (v == "INFO" || v == "info" || v == "2") return log_level::info;
  if (v == "TRACE" || v == "trace" || v == "3") return log_level::trace;
  if (v.empty() || v == "0" || v == "OFF" || v == "off" || v == "NONE" || v == "none") return log_level::off;
  throw invalid_argument("DSSYNC_DEBUG: unknown level \"" + std::string(v) + "\" (use WARN, INFO or TRACE)");
}

}  // namespace detail

/// Options of one collective call. Default-constructed options take DSSYNC_* environment overrides.
struct options {
  /// How long a rank waits without progress before it raises `timeout_error`.
  std::chrono::milliseconds timeout{120'000};
  /// Pipeline segment size in bytes; large chunks are sent and reduced in segments of this size.
  std::size_t segment_bytes = std::size_t{1} << 20;
  /// Steps per channel the executor keeps in flight (pipelining across dependent steps).
  std::size_t window = 16;
  /// Receive segments a transport with staging buffers may pre-post per step.
  std::size_t recv_depth = 2;
  /// Exchange (count, type, op, policy) before the first byte moves, and raise `mismatch_error` on disagreement.
  bool check_agreement = true;
  /// Verify each newly built plan before running it.
  bool verify = false;
  /// Logging to stderr.
  log_level debug = log_level::off;
  /// Training iteration, passed to the policy's `plan` (DS-Sync and gossip change groups with it).
  std::uint64_t iteration = 0;
  /// The tuning table `auto` picks from (a file dssync-tune wrote); empty: none, the cost model picks.
  std::string tuning_file;

  /// Defaults with DSSYNC_* environment overrides applied (read once per process).
  static const options& from_env() {
    static const options o = [] {
      options x{0};
      if (const char* v = detail::getenv_or_null("DSSYNC_TIMEOUT")) {
        char* end = nullptr;
        const double s = std::strtod(v, &end);
        if (end == v || *end != '\0' || !(s > 0))
          throw invalid_argument(std::string("DSSYNC_TIMEOUT: \"") + v + "\" is not a positive number of seconds");
        x.timeout = std::chrono::milliseconds(static_cast<long long>(s * 1000.0));
      }
      if (const char* v = detail::getenv_or_null("DSSYNC_SEGMENT_BYTES")) {
        x.segment_bytes = detail::parse_size("DSSYNC_SEGMENT_BYTES", v);
        if (x.segment_bytes == 0) throw invalid_argument("DSSYNC_SEGMENT_BYTES: must be positive");
      }
      if (const char* v = detail::getenv_or_null("DSSYNC_CHECK")) x.check_agreement = std::string_view(v) != "0";
      if (const char* v = detail::getenv_or_null("DSSYNC_VERIFY")) x.verify = std::string_view(v) == "1";
      if (const char* v = detail::getenv_or_null("DSSYNC_DEBUG")) x.debug = detail::parse_level(v);
      if (const char* v = detail::getenv_or_null("DSSYNC_TUNING_FILE")) x.tuning_file = v;
      return x;
    }();
    return o;
  }

  options() : options(from_env()) {}

  /// Sets the timeout (fluent).
  options& with_timeout(std::chrono::milliseconds t) & { timeout = t; return *this; }
  options&& with_timeout(std::chrono::milliseconds t) && { timeout = t; return std::move(*this); }
  /// Sets the segment size in bytes (fluent).
  options& with_segment_bytes(std::size_t b) & { segment_bytes = b; return *this; }
  options&& with_segment_bytes(std::size_t b) && { segment_bytes = b; return std::move(*this); }

 private:
  explicit options(int) {}
};

}  // namespace dssync
