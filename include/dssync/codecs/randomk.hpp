#pragma once
/// \file
/// `codecs::randomk`: random-k sparsification with error feedback (Stich et al., "Sparsified SGD with
/// memory", NeurIPS 2018). Each step sends k = ceil(ratio * n) entries of g + r chosen uniformly at
/// random without replacement; the residual r keeps the others. The indices are not sent: they follow
/// from a 64-bit key in the payload by Floyd's sampling, whose draws are counter-based
/// (`stochastic.hpp`): O(k) draws, so encoding and decoding cost about k, not n, random numbers. Ranks
/// that share the seed pick the same indices at each step, so their payloads can be reduced value by value.
///
/// Payload (after the header, whose parameter is k): the key as a little-endian uint64, then the k values
/// as little-endian T, in increasing index order. 32-bit floats are compressed about 1 / ratio times.

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "dssync/codecs/error_feedback.hpp"
#include "dssync/codecs/stochastic.hpp"
#include "dssync/codecs/wire.hpp"
#include "dssync/core/codec.hpp"
#include "dssync/core/error.hpp"

namespace dssync::codecs {

/// randomk's random stream (seed and step); its residual is an `error_feedback`.
using randomk_state = counter_rng_state<codec_id::randomk_state>;

template <class T = float>
struct randomk {
  static_assert(std::is_floating_point_v<T>, "codecs::randomk encodes floating-point elements");
  static constexpr std::string_view name = "randomk";
  static constexpr bool is_linear = false;
  static constexpr std::uint8_t version = 1;

  double ratio = 0.01;      ///< share of the entries sent, in (0, 1]
  error_feedback<T> state;  ///< this tensor's residual
  randomk_state rng;        ///< where the index stream is (the same seed on every rank: the same indices)

  randomk() = default;
  explicit randomk(double kept) : ratio(kept) {}

  /// Entries sent of a tensor of `n`.
  [[nodiscard]] std::size_t k_of(std::size_t n) const {
    if (!(ratio > 0 && ratio <= 1))
      throw invalid_argument("codecs::randomk: ratio " + std::to_string(ratio) + " is not in (0, 1]");
    if (n == 0) return 0;
    return std::clamp<std::size_t>(static_cast<std::size_t>(std::ceil(ratio * static_cast<double>(n))), 1, n);
  }

  /// A uniform draw in [0, bound) from the stream of `x`, unbiased: Lemire's multiply-and-reject ("Fast
  /// random integer generation in an interval", ACM TOMACS 29(1), 2019) on 32-bit halves, remixing `x`
  /// for the rare rejected draws.
  [[nodiscard]] static std::uint32_t below(std::uint64_t x, std::uint32_t bound) noexcept {
    const std::uint32_t floor = static_cast<std::uint32_t>(-bound) % bound;  // 2^32 mod bound
    for (std::uint64_t again = 1;; ++again, x = mix(x, again))
      for (int half = 0; half < 2; ++half) {
        const std::uint64_t m = (half == 0 ? x >> 32 : x & 0xffffffffu) * std::uint64_t{bound};
        if (static_cast<std::uint32_t>(m) >= floor) return static_cast<std::uint32_t>(m >> 32);
      }
  }

  /// The k indices of step key `key` out of n, increasing. Floyd's sampling (Bentley and Floyd, "A sample
  /// of brilliance", CACM 30(9), 1987): for j = n-k, ..., n-1 draw t uniform in [0, j] and keep t, or j if
  /// t is kept already; every set of k is equally likely. O(k) draws into a bitmap of n bits, which is
  /// then read in index order a word at a time.
  static void indices(std::uint64_t key, std::size_t k, std::size_t n, std::vector<std::uint32_t>& out,
                      std::vector<std::uint64_t>& bits) {
    out.clear();
    out.reserve(k);
    bits.assign((n + 63) / 64, 0);
    for (std::size_t j = n - k; j < n; ++j) {
      const auto t = static_cast<std::size_t>(below(mix(key, j), static_cast<std::uint32_t>(j + 1)));
      const std::size_t pick = (bits[t / 64] >> (t % 64) & 1u) ? j : t;
      bits[pick / 64] |= std::uint64_t{1} << (pick % 64);
    }
    for (std::size_t w = 0; w < bits.size(); ++w)
      for (std::uint64_t b = bits[w]; b != 0; b &= b - 1)
        out.push_back(static_cast<std::uint32_t>(w * 64 + static_cast<std::size_t>(std::countr_zero(b))));
  }

  static void indices(std::uint64_t key, std::size_t k, std::size_t n, std::vector<std::uint32_t>& out) {
    std::vector<std::uint64_t> bits;
    indices(key, k, n, out, bits);
  }

  /// Adds `in` to the residual and sends k random entries of it (once per call: one call per step).
  /// \throws invalid_argument for a ratio outside (0, 1], a tensor of 2^32 elements or more, or one that
  ///   changed length.
  void encode(std::span<const T> in, std::vector<std::byte>& out) {
    const std::size_t n = in.size();
    if (n > 0xffffffffu)
      throw invalid_argument("codecs::randomk: a tensor of " + std::to_string(n) + " elements is too long (at most 2^32-1)");
    const std::size_t k = k_of(n);
    state.prepare(n, "codecs::randomk");
    T* r = state.residual.data();
    for (std::size_t i = 0; i < n; ++i) r[i] += in[i];
    const std::uint64_t key = rng.stream(0x524e444bull);  // "RNDK"
    indices(key, k, n, chosen_, bits_);
    write_header(out, {codec_id::randomk, version, static_cast<std::uint32_t>(k), n, 8 + k * sizeof(T)});
    write_value(out, key);
    const auto at = out.size();
    out.resize(at + k * sizeof(T));
    for (std::size_t j = 0; j < k; ++j) {
      std::memcpy(out.data() + at + j * sizeof(T), &r[chosen_[j]], sizeof(T));
      r[chosen_[j]] = T{};
    }
    ++rng.step;
  }

  /// \throws malformed_payload for a bad header, k above the element count, or a payload that is not
  ///   exactly the key and k values. `out` is untouched then.
  void decode(std::span<const std::byte> w, std::span<T> out) const {
    const parsed p = parse(w, out.size());
    std::fill(out.begin(), out.end(), T{});
    apply(p, out);
  }
  /// Adds the decoded entries to `out` (decode-and-sum of an allgather of payloads).
  void decode_add(std::span<const std::byte> w, std::span<T> out) const { apply(parse(w, out.size()), out); }

  [[nodiscard]] std::size_t max_encoded_bytes(std::size_t n) const { return header_bytes + 8 + k_of(n) * sizeof(T); }

 private:
  struct parsed {
    std::vector<std::uint32_t> index;
    std::span<const std::byte> values;
  };

  /// Checks `w` (its length is exact before anything is allocated) and regenerates its indices.
  [[nodiscard]] static parsed parse(std::span<const std::byte> w, std::size_t n) {
    const header h = read_header(w, codec_id::randomk, version, n);
    const std::size_t k = h.param;
    if (k > n)
      throw malformed_payload("codecs::randomk: " + std::to_string(k) + " entries in the header for " +
                              std::to_string(n) + " elements");
    if (h.payload != 8 + k * sizeof(T))
      throw malformed_payload("codecs::randomk: " + std::to_string(k) + " entries take " +
                              std::to_string(8 + k * sizeof(T)) + " bytes, the payload has " + std::to_string(h.payload));
    reader rd(w.subspan(header_bytes), "codecs::randomk");
    parsed p;
    std::vector<std::uint64_t> bits;
    indices(rd.value<std::uint64_t>(), k, n, p.index, bits);
    p.values = rd.bytes(k * sizeof(T));
    return p;
  }

  static void apply(const parsed& p, std::span<T> out) { scatter_add<T>(p.index, p.values, out); }

  std::vector<std::uint32_t> chosen_;  // scratch, kept between steps
  std::vector<std::uint64_t> bits_;
};

static_assert(concepts::codec<randomk<float>, float>);

}  // namespace dssync::codecs
