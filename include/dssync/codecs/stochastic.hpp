#pragma once
/// \file
/// Counter-based, reproducible randomness for the stochastic codecs (qsgd, terngrad): element i of step t
/// of a stream draws `mix(mix(seed ^ salt, t), i)` (splitmix64's finalizer), so a draw depends on nothing
/// but the seed, the step and the index. The state (seed and step) is checkpointable in the wire format; a
/// loaded state gives bitwise the same next step.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "dssync/codecs/wire.hpp"
#include "dssync/core/error.hpp"

namespace dssync::codecs {

/// splitmix64's finalizer over a combination of `a` and `b`.
[[nodiscard]] constexpr std::uint64_t mix(std::uint64_t a, std::uint64_t b) noexcept {
  std::uint64_t x = a ^ (b + 0x9e3779b97f4a7c15ULL + (a << 6) + (a >> 2));
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

/// A double in [0, 1) from the top 53 bits of `x`.
[[nodiscard]] constexpr double uniform(std::uint64_t x) noexcept { return static_cast<double>(x >> 11) * 0x1p-53; }

/// Where a stochastic codec's random stream is: its seed and the steps encoded so far. `Id` names the
/// codec's saved state in the wire format.
template <codec_id Id>
struct counter_rng_state {
  static constexpr std::uint8_t version = 1;
  std::uint64_t seed = 0;  ///< set it per rank or per tensor for independent streams
  std::uint64_t step = 0;  ///< steps encoded so far

  /// The key of this step's stream, for a codec's `salt`.
  [[nodiscard]] constexpr std::uint64_t stream(std::uint64_t salt) const noexcept { return mix(seed ^ salt, step); }

  void save(std::vector<std::byte>& out) const {
    write_header(out, {Id, version, 0, 0, 16});
    write_value(out, seed);
    write_value(out, step);
  }
  /// \throws malformed_payload if `w` is not a saved state of this codec.
  void load(std::span<const std::byte> w) {
    const header h = read_header(w, Id, version, 0);
    if (h.param != 0)
      throw malformed_payload(std::string("codecs: random state with parameter ") + std::to_string(h.param) +
                              " in its header, expected 0");
    reader rd(w.subspan(header_bytes), "codecs: random state");
    const auto s = rd.value<std::uint64_t>();
    const auto t = rd.value<std::uint64_t>();
    rd.expect_end();
    seed = s;
    step = t;
  }
};

}  // namespace dssync::codecs
