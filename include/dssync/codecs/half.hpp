#pragma once
/// \file
/// `codecs::fp16` and `codecs::bf16`: elements rounded to IEEE half precision or to bfloat16 (round to
/// nearest even, Eigen's `Eigen::half` and `Eigen::bfloat16` conversions), framed by the wire header
/// (`codecs/wire.hpp`). Payload: `count` little-endian 16-bit values. Needs Eigen (`dssync::eigen`).
/// On x86-64 CPUs with F16C, float <-> fp16 runs in hardware (checked at run time), with the bits of
/// Eigen's conversion for every input but NaN, whose payload F16C keeps (still a NaN).
///
/// Both are linear: payloads may be summed on the wire, provided the sum is accumulated wider than 16 bits
/// (decode, add in T, re-encode), since summing in half precision loses the low bits of every partial sum.

#include <Eigen/Core>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#endif

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "dssync/codecs/wire.hpp"
#include "dssync/core/codec.hpp"
#include "dssync/core/error.hpp"

namespace dssync::codecs {

namespace detail {

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define DSSYNC_CODECS_F16C 1
/// Whether this CPU converts float <-> half in hardware (F16C, x86 since 2012) and the OS saves the AVX
/// registers it uses. CPUID leaf 1 and XGETBV, not `__builtin_cpu_supports`, whose "f16c" Clang rejects.
inline bool has_f16c() noexcept {
  static const bool yes = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (__get_cpuid(1, &a, &b, &c, &d) == 0) return false;
    if ((c & bit_OSXSAVE) == 0 || (c & bit_AVX) == 0 || (c & bit_F16C) == 0) return false;
    unsigned lo = 0, hi = 0;
    __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (lo & 0x6u) == 0x6u;  // XMM and YMM state enabled in XCR0
  }();
  return yes;
}
/// `n` floats to IEEE halves, 8 at a time with F16C (round to nearest even, as Eigen's software path:
/// equal bits for every non-NaN input); the tail through Eigen.
__attribute__((target("f16c,avx"))) inline void floats_to_halves_f16c(const float* in, std::byte* out,
                                                                       std::size_t n) noexcept {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 2 * i), h);
  }
  for (; i < n; ++i) {
    const std::uint16_t bits = Eigen::numext::bit_cast<std::uint16_t>(Eigen::half(in[i]));
    std::memcpy(out + 2 * i, &bits, 2);
  }
}
/// `n` halves to floats with F16C (exact: every half is a float).
__attribute__((target("f16c,avx"))) inline void halves_to_floats_f16c(const std::byte* in, float* out,
                                                                       std::size_t n) noexcept {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + 2 * i))));
  for (; i < n; ++i) {
    std::uint16_t bits;
    std::memcpy(&bits, in + 2 * i, 2);
    out[i] = static_cast<float>(Eigen::numext::bit_cast<Eigen::half>(bits));
  }
}
#endif

/// A 16-bit floating codec of `T` through the Eigen scalar `H`.
template <class T, class H, codec_id Id>
struct half_codec {
  static_assert(std::is_floating_point_v<T>, "codecs::fp16/bf16 encode floating-point elements");
  static constexpr bool is_linear = true;
  static constexpr bool is_elementwise = true;  // a part's payload is its own; no state
  static constexpr std::uint8_t version = 1;

  void encode(std::span<const T> in, std::vector<std::byte>& out) const {
    const auto at = out.size();
    write_header(out, {Id, version, 0, in.size(), in.size() * 2});
    out.resize(at + header_bytes + in.size() * 2);
    std::byte* p = out.data() + at + header_bytes;
#ifdef DSSYNC_CODECS_F16C
    if constexpr (std::is_same_v<T, float> && std::is_same_v<H, Eigen::half>)
      if (has_f16c()) return floats_to_halves_f16c(in.data(), p, in.size());
#endif
    for (std::size_t i = 0; i < in.size(); ++i) {
      const std::uint16_t bits = Eigen::numext::bit_cast<std::uint16_t>(H(static_cast<float>(in[i])));
      std::memcpy(p + 2 * i, &bits, 2);
    }
  }

  /// \throws malformed_payload if the header does not match or the payload is not 2 bytes per element.
  void decode(std::span<const std::byte> w, std::span<T> out) const {
#ifdef DSSYNC_CODECS_F16C
    if constexpr (std::is_same_v<T, float> && std::is_same_v<H, Eigen::half>)
      if (has_f16c()) {
        check(w, out.size());
        return halves_to_floats_f16c(w.data() + header_bytes, out.data(), out.size());
      }
#endif
    decode_with(w, out, [](T& o, T v) { o = v; });
  }
  /// Adds the decoded values to `out` (the wider accumulator of a reduction).
  void decode_add(std::span<const std::byte> w, std::span<T> out) const {
    decode_with(w, out, [](T& o, T v) { o += v; });
  }

  [[nodiscard]] constexpr std::size_t max_encoded_bytes(std::size_t n) const noexcept { return header_bytes + 2 * n; }

 private:
  static void check(std::span<const std::byte> w, std::size_t n) {
    const header h = read_header(w, Id, version, n);
    if (h.payload != 2 * static_cast<std::uint64_t>(n))
      throw malformed_payload(std::string("codecs::") + to_string(Id) + ": payload of " + std::to_string(h.payload) +
                              " bytes for " + std::to_string(n) + " elements (2 bytes each)");
  }

  template <class F>
  void decode_with(std::span<const std::byte> w, std::span<T> out, F&& f) const {
    check(w, out.size());
    const std::byte* p = w.data() + header_bytes;
    for (std::size_t i = 0; i < out.size(); ++i) {
      std::uint16_t bits;
      std::memcpy(&bits, p + 2 * i, 2);
      f(out[i], static_cast<T>(static_cast<float>(Eigen::numext::bit_cast<H>(bits))));
    }
  }
};

}  // namespace detail

/// IEEE 754 binary16: 11 significant bits, range ±65504 (larger values become ±inf).
template <class T = float>
struct fp16 : detail::half_codec<T, Eigen::half, codec_id::fp16> {
  static constexpr std::string_view name = "fp16";
};

/// bfloat16: float's 8-bit exponent and range, 8 significant bits.
template <class T = float>
struct bf16 : detail::half_codec<T, Eigen::bfloat16, codec_id::bf16> {
  static constexpr std::string_view name = "bf16";
};

static_assert(concepts::codec<fp16<float>, float>);
static_assert(concepts::codec<bf16<double>, double>);

}  // namespace dssync::codecs
