#pragma once
/// \file
/// `codecs::onebit`: 1-bit quantization with error feedback (Seide et al., Interspeech 2014). Each bucket
/// of `bucket` consecutive elements of g + r (the gradient plus the residual) is sent as one sign bit per
/// element and two reconstruction values: the mean of its non-negative entries and the mean of its
/// negative ones, which minimise the squared error of that bucket given the signs. The residual keeps what
/// the bits lost.
///
/// Payload (after the header, whose parameter is the bucket size): for each bucket in order, the
/// non-negative mean and the negative mean as little-endian float32 (each sum is taken in double, in four
/// partial sums of the elements i % 4, added as (s0 + s1) + (s2 + s3), then divided and rounded), then ceil(len/8) bytes of sign bits
/// (bit i%8 of byte i/8 is 1 when element i is non-negative), with the unused high bits of the last byte
/// zero. 32-bit floats are compressed about 32x (31.5x with buckets of 4096).

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "dssync/codecs/error_feedback.hpp"
#include "dssync/codecs/wire.hpp"
#include "dssync/core/codec.hpp"
#include "dssync/core/error.hpp"

namespace dssync::codecs {

template <class T = float>
struct onebit {
  static_assert(std::is_floating_point_v<T>, "codecs::onebit encodes floating-point elements");
  static constexpr std::string_view name = "onebit";
  static constexpr bool is_linear = false;
  static constexpr std::uint8_t version = 1;

  std::size_t bucket = 4096;  ///< elements per pair of reconstruction values
  error_feedback<T> state;    ///< this tensor's residual

  onebit() = default;
  /// Buckets of `bucket_size` elements.
  explicit onebit(std::size_t bucket_size) : bucket(bucket_size) {}

  /// Encodes `in` + the residual and updates the residual (once per call: one call per step).
  /// \throws invalid_argument if the bucket is 0 or above 2^32-1, or the tensor changed length.
  void encode(std::span<const T> in, std::vector<std::byte>& out) {
    check_bucket();
    const std::size_t n = in.size();
    state.prepare(n, "codecs::onebit");
    const auto at = out.size();
    const std::size_t payload = payload_bytes(n, bucket);
    write_header(out, {codec_id::onebit, version, static_cast<std::uint32_t>(bucket), n, payload});
    out.resize(at + header_bytes + payload, std::byte{0});
    std::byte* p = out.data() + at + header_bytes;
    T* r = state.residual.data();
    for (std::size_t b0 = 0; b0 < n; b0 += bucket) {
      const std::size_t len = std::min(bucket, n - b0);
      const T* g_in = in.data() + b0;
      T* rb = r + b0;
      // Branch-free (the signs of Gaussian gradients are coin flips, which a branch mispredicts), and in
      // `lanes` interleaved partial sums (element i into lane i % lanes, combined pairwise at the end) so
      // the additions do not wait on each other. Masks make each addend gd or +0, exact either way.
      double ps[lanes] = {}, ns[lanes] = {};
      std::size_t npos = 0;
      for (std::size_t i0 = 0; i0 < len; i0 += lanes) {
        const std::size_t m = std::min(lanes, len - i0);
        for (std::size_t j = 0; j < m; ++j) {
          const T g = g_in[i0 + j] + rb[i0 + j];
          rb[i0 + j] = g;  // the residual holds g + r until the bucket's means are known
          const auto bits = std::bit_cast<std::uint64_t>(static_cast<double>(g));
          const std::uint64_t mask = std::uint64_t{0} - static_cast<std::uint64_t>(g >= 0);
          ps[j] += std::bit_cast<double>(bits & mask);
          ns[j] += std::bit_cast<double>(bits & ~mask);
          npos += static_cast<std::size_t>(g >= 0);
        }
      }
      const double pos = combine(ps), neg = combine(ns);
      const float mp = npos ? static_cast<float>(pos / static_cast<double>(npos)) : 0.0f;
      const float mn = npos < len ? static_cast<float>(neg / static_cast<double>(len - npos)) : 0.0f;
      std::memcpy(p, &mp, 4);
      std::memcpy(p + 4, &mn, 4);
      std::byte* bits = p + 8;
      const T tp = static_cast<T>(mp), tn = static_cast<T>(mn);
      for (std::size_t i0 = 0; i0 < len; i0 += 8) {
        const std::size_t m = std::min<std::size_t>(8, len - i0);
        unsigned byte = 0;
        for (std::size_t j = 0; j < m; ++j) {
          const T g = rb[i0 + j];
          const bool nonneg = g >= 0;
          byte |= (nonneg ? 1u : 0u) << j;
          rb[i0 + j] = g - (nonneg ? tp : tn);
        }
        bits[i0 / 8] = static_cast<std::byte>(byte);
      }
      p += 8 + (len + 7) / 8;
    }
  }

  /// \throws malformed_payload for a bad header, a bucket of 0, a payload of the wrong length, or set
  ///   padding bits.
  void decode(std::span<const std::byte> w, std::span<T> out) const {
    decode_with(w, out, [](T& o, T v) { o = v; });
  }
  /// Adds the decoded values to `out` (decode-and-sum of an allgather of payloads).
  void decode_add(std::span<const std::byte> w, std::span<T> out) const {
    decode_with(w, out, [](T& o, T v) { o += v; });
  }

  [[nodiscard]] std::size_t max_encoded_bytes(std::size_t n) const noexcept {
    return header_bytes + payload_bytes(n, std::max<std::size_t>(bucket, 1));
  }

  /// Partial sums per bucket (see encode): part of the format's definition of the means.
  static constexpr std::size_t lanes = 4;

  /// (s0 + s1) + (s2 + s3).
  [[nodiscard]] static double combine(const double (&s)[lanes]) noexcept { return (s[0] + s[1]) + (s[2] + s[3]); }

  /// Payload bytes for `n` elements in buckets of `b`.
  [[nodiscard]] static constexpr std::size_t payload_bytes(std::size_t n, std::size_t b) noexcept {
    const std::size_t full = n / b, rest = n % b;
    return full * (8 + (b + 7) / 8) + (rest ? 8 + (rest + 7) / 8 : 0);
  }

 private:
  void check_bucket() const {
    if (bucket == 0 || bucket > 0xffffffffu)
      throw invalid_argument("codecs::onebit: bucket " + std::to_string(bucket) + " is not in 1..4294967295");
  }

  template <class F>
  void decode_with(std::span<const std::byte> w, std::span<T> out, F&& f) const {
    const header h = read_header(w, codec_id::onebit, version, out.size());
    if (h.param == 0) throw malformed_payload("codecs::onebit: bucket size 0 in the header");
    const std::size_t n = out.size(), b = h.param;
    if (h.payload != payload_bytes(n, b))
      throw malformed_payload("codecs::onebit: payload of " + std::to_string(h.payload) + " bytes, " +
                              std::to_string(n) + " elements in buckets of " + std::to_string(b) + " take " +
                              std::to_string(payload_bytes(n, b)));
    // Every bucket's padding is checked before anything is written: a malformed payload leaves `out`
    // untouched (only buckets whose length is not a multiple of 8 have padding).
    const std::byte* p = w.data() + header_bytes;
    for (std::size_t b0 = 0; b0 < n; b0 += b) {
      const std::size_t len = std::min(b, n - b0);
      if (len % 8 != 0 && (static_cast<unsigned>(p[8 + len / 8]) >> (len % 8)) != 0)
        throw malformed_payload("codecs::onebit: padding bits set in the bucket at element " + std::to_string(b0));
      p += 8 + (len + 7) / 8;
    }
    p = w.data() + header_bytes;
    for (std::size_t b0 = 0; b0 < n; b0 += b) {
      const std::size_t len = std::min(b, n - b0);
      float mp, mn;
      std::memcpy(&mp, p, 4);
      std::memcpy(&mn, p + 4, 4);
      const std::byte* bits = p + 8;
      for (std::size_t i = 0; i < len; ++i) {
        const bool nonneg = ((static_cast<unsigned>(bits[i / 8]) >> (i % 8)) & 1u) != 0;
        f(out[b0 + i], static_cast<T>(nonneg ? mp : mn));
      }
      p += 8 + (len + 7) / 8;
    }
  }
};

static_assert(concepts::codec<onebit<float>, float>);

}  // namespace dssync::codecs
