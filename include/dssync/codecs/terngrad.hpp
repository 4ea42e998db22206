#pragma once
/// \file
/// `codecs::terngrad`: ternary gradients (Wen et al., "TernGrad: ternary gradients to reduce communication
/// in distributed deep learning", NeurIPS 2017). Each bucket of `bucket` elements g is sent as a scale s
/// and, per element, a value in {-1, 0, +1}: element i becomes s * sign(g_i) with probability |g_i| / s,
/// and 0 otherwise, so that E[decode] = g (unbiased, no error feedback, as in the paper). The paper's
/// gradient clipping bounds s: with `clip` = c > 0, each element is first clipped to [-c sigma, c sigma],
/// sigma the bucket's standard deviation (c = 2.5 in the paper), which trades a small bias for much less
/// variance; `clip` = 0 turns it off (s = max |g|).
///
/// A bucket with a NaN or an infinity in it is sent with scale 0 (all zeros); a bucket of doubles whose
/// bound exceeds float's range is clipped to the largest float.
///
/// Randomness is counter-based and reproducible (`stochastic.hpp`); the state (`terngrad_state`) is
/// checkpointable.
///
/// Payload (after the header, whose parameter is the bucket size): the scale of each bucket as a
/// little-endian float32, then 2 bits per element, four elements per byte, element i in bits 2(i % 4) and
/// up of byte i / 4: 0 for 0, 1 for +s, 2 for -s (3 is malformed); the unused high bits of the last byte
/// are zero. 32-bit floats are compressed about 16x.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "dssync/codecs/stochastic.hpp"
#include "dssync/codecs/wire.hpp"
#include "dssync/core/codec.hpp"
#include "dssync/core/error.hpp"

namespace dssync::codecs {

/// TernGrad's per-tensor state: where its random stream is.
using terngrad_state = counter_rng_state<codec_id::terngrad_state>;

template <class T = float>
struct terngrad {
  static_assert(std::is_floating_point_v<T>, "codecs::terngrad encodes floating-point elements");
  static constexpr std::string_view name = "terngrad";
  static constexpr bool is_linear = false;
  static constexpr std::uint8_t version = 1;

  std::size_t bucket = 4096;  ///< elements per scale
  double clip = 2.5;          ///< c: clip to c standard deviations of the bucket; 0: no clipping
  terngrad_state state;

  terngrad() = default;
  /// Buckets of `bucket_size`, clipping at `clip_sigmas` standard deviations (0: none).
  explicit terngrad(std::size_t bucket_size, double clip_sigmas = 2.5) : bucket(bucket_size), clip(clip_sigmas) {}

  /// \throws invalid_argument for a bucket outside 1..2^32-1 or a negative or non-finite clip.
  void encode(std::span<const T> in, std::vector<std::byte>& out) {
    check();
    const std::size_t n = in.size();
    const std::size_t nb = (n + bucket - 1) / bucket;
    const std::size_t payload = 4 * nb + (n + 3) / 4;
    const auto at = out.size();
    write_header(out, {codec_id::terngrad, version, static_cast<std::uint32_t>(bucket), n, payload});
    out.resize(at + header_bytes + payload, std::byte{0});
    std::byte* scales = out.data() + at + header_bytes;
    std::byte* codes = scales + 4 * nb;
    const std::uint64_t stream = state.stream(0x5445524eull);  // "TERN"
    for (std::size_t b = 0; b < nb; ++b) {
      const std::size_t b0 = b * bucket, len = std::min(bucket, n - b0);
      // The bucket's largest |g| and, for clipping, its standard deviation (in double).
      double sum = 0, sq = 0, top = 0;
      for (std::size_t i = 0; i < len; ++i) {
        const double v = static_cast<double>(in[b0 + i]);
        sum += v;
        sq += v * v;
        top = std::max(top, std::fabs(v));
      }
      double bound = top;
      if (clip > 0) {
        const double mean = sum / static_cast<double>(len);
        const double sigma = std::sqrt(std::max(0.0, sq / static_cast<double>(len) - mean * mean));
        bound = std::min(top, clip * sigma);
      }
      // The scale is a float: a double bucket beyond float's range is clipped to its largest value.
      float scale = std::isfinite(bound) && std::isfinite(sq)
                        ? static_cast<float>(std::min(bound, static_cast<double>(std::numeric_limits<float>::max())))
                        : 0.0f;
      if (!(scale > 0)) scale = 0.0f;
      std::memcpy(scales + 4 * b, &scale, 4);
      if (scale == 0.0f) continue;  // zeros: the codes stay 0
      const double inv = 1.0 / static_cast<double>(scale);
      for (std::size_t i = 0; i < len; ++i) {
        const std::size_t e = b0 + i;
        const T v = in[e];
        const double p = std::min(1.0, std::fabs(static_cast<double>(v)) * inv);  // clipped to s
        const unsigned keep = uniform(mix(stream, e)) < p ? 1u : 0u;
        const unsigned code = keep << (std::signbit(v) ? 1 : 0);  // 1: +s, 2: -s, 0: zero
        codes[e / 4] |= static_cast<std::byte>(code << (2 * (e % 4)));
      }
    }
    ++state.step;
  }

  /// \throws malformed_payload for a bad header or bucket, a bad scale (negative or not finite), a code
  ///   3, set padding bits, or a payload of the wrong length. `out` is untouched then.
  void decode(std::span<const std::byte> w, std::span<T> out) const {
    validate(w, out.size());
    walk(w, out.size(), T{}, [&](std::size_t i, T v) { out[i] = v; });
  }
  /// Adds the decoded values to `out` (decode-and-sum of an allgather of payloads).
  void decode_add(std::span<const std::byte> w, std::span<T> out) const {
    validate(w, out.size());
    walk(w, out.size(), -T{}, [&](std::size_t i, T v) { out[i] += v; });  // x + -0 is x, even for x = -0
  }

  [[nodiscard]] std::size_t max_encoded_bytes(std::size_t n) const noexcept {
    const std::size_t b = bucket == 0 ? 1 : bucket;
    return header_bytes + 4 * ((n + b - 1) / b) + (n + 3) / 4;
  }

 private:
  void check() const {
    if (bucket == 0 || bucket > 0xffffffffu)
      throw invalid_argument("codecs::terngrad: bucket " + std::to_string(bucket) + " is not in 1..4294967295");
    if (!(clip >= 0) || !std::isfinite(clip))
      throw invalid_argument("codecs::terngrad: clip " + std::to_string(clip) + " is not a finite number >= 0");
  }

  static void validate(std::span<const std::byte> w, std::size_t n) {
    walk(w, n, T{}, [](std::size_t, T) {});
  }

  /// Checks all of `w` and calls f(i, value) for every element (`zero` for code 0).
  template <class F>
  static void walk(std::span<const std::byte> w, std::size_t n, T zero, F&& f) {
    const header h = read_header(w, codec_id::terngrad, version, n);
    const std::size_t b = h.param;
    if (b == 0) throw malformed_payload("codecs::terngrad: bucket size 0 in the header");
    const std::size_t nb = n == 0 ? 0 : (n - 1) / b + 1;
    const std::size_t want = 4 * nb + (n + 3) / 4;
    if (h.payload != want)
      throw malformed_payload("codecs::terngrad: " + std::to_string(n) + " elements in buckets of " + std::to_string(b) +
                              " take " + std::to_string(want) + " bytes, the payload has " + std::to_string(h.payload));
    const std::byte* scales = w.data() + header_bytes;
    const std::byte* codes = scales + 4 * nb;
    for (std::size_t k = 0; k < nb; ++k) {
      float s;
      std::memcpy(&s, scales + 4 * k, 4);
      if (!(s >= 0) || !std::isfinite(s))
        throw malformed_payload("codecs::terngrad: bucket " + std::to_string(k) + " has scale " + std::to_string(s) +
                                " (a finite number >= 0)");
      const std::size_t b0 = k * b, end = std::min(n, b0 + b);
      const T pos = static_cast<T>(s), neg = -pos;
      for (std::size_t i = b0; i < end; ++i) {
        const unsigned code = (static_cast<unsigned>(codes[i / 4]) >> (2 * (i % 4))) & 3u;
        if (code == 3) throw malformed_payload("codecs::terngrad: element " + std::to_string(i) + " has code 3");
        f(i, code == 0 ? zero : code == 1 ? pos : neg);
      }
    }
    if (n % 4 != 0 && (static_cast<unsigned>(codes[n / 4]) >> (2 * (n % 4))) != 0)
      throw malformed_payload("codecs::terngrad: padding bits set after the last element");
  }
};

static_assert(concepts::codec<terngrad<float>, float>);

}  // namespace dssync::codecs
