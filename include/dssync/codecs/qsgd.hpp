#pragma once
/// \file
/// `codecs::qsgd`: QSGD (Alistarh et al., "QSGD: communication-efficient SGD via gradient quantization and
/// encoding", NeurIPS 2017). Each bucket of `bucket` elements v is sent as its L2 norm and, per element,
/// sign(v_i) and a level l_i in 0..s: with x = |v_i| / ||v|| * s, l_i is floor(x) + 1 with probability
/// x - floor(x) and floor(x) otherwise, so that E[Q(v)] = v (unbiased; no error feedback needed). The
/// levels are entropy-coded as in the paper, with an Elias gamma code: most levels are 0.
///
/// A bucket whose norm is not finite (a NaN or an infinity in it) is sent as its norm with all levels 0.
///
/// Randomness is counter-based and reproducible: element i of step t draws splitmix64(seed, t, i). The
/// state (`qsgd_state`: seed and step) is checkpointable; a loaded state gives bitwise the same next step.
///
/// Payload (after the header, whose parameter is s): the bucket size as a little-endian uint32, the
/// norm of each bucket as little-endian float32, then a bit stream (least significant bit of each byte
/// first) with one symbol per element: `0` for level 0, or `1`, the sign (1: negative) and the level in
/// Elias gamma (floor(log2 l) zeros, then l's binary digits from the most significant); the unused high
/// bits of the last byte are zero.

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

#include "dssync/codecs/wire.hpp"
#include "dssync/core/codec.hpp"
#include "dssync/core/error.hpp"

namespace dssync::codecs {

/// QSGD's per-tensor state: where its random stream is.
struct qsgd_state {
  static constexpr std::uint8_t version = 1;
  std::uint64_t seed = 0;  ///< set it per rank or per tensor for independent streams
  std::uint64_t step = 0;  ///< steps encoded so far

  void save(std::vector<std::byte>& out) const {
    write_header(out, {codec_id::qsgd_state, version, 0, 0, 16});
    write_value(out, seed);
    write_value(out, step);
  }
  /// \throws malformed_payload if `w` is not a saved QSGD state.
  void load(std::span<const std::byte> w) {
    (void)read_header(w, codec_id::qsgd_state, version, 0);
    reader rd(w.subspan(header_bytes), "codecs::qsgd_state");
    const auto s = rd.value<std::uint64_t>();
    const auto t = rd.value<std::uint64_t>();
    rd.expect_end();
    seed = s;
    step = t;
  }
};

template <class T = float>
struct qsgd {
  static_assert(std::is_floating_point_v<T>, "codecs::qsgd encodes floating-point elements");
  static constexpr std::string_view name = "qsgd";
  static constexpr bool is_linear = false;
  static constexpr std::uint8_t version = 1;
  static constexpr std::uint32_t max_levels = 1u << 16;

  std::uint32_t levels = 16;  ///< s, in 1..65536
  std::size_t bucket = 1024;  ///< elements per norm
  qsgd_state state;

  qsgd() = default;
  /// s = `s_levels`, buckets of `bucket_size`.
  explicit qsgd(std::uint32_t s_levels, std::size_t bucket_size = 1024) : levels(s_levels), bucket(bucket_size) {}

  /// \throws invalid_argument if s is not in 1..65536 or the bucket not in 1..2^32-1.
  void encode(std::span<const T> in, std::vector<std::byte>& out) {
    check();
    const std::size_t n = in.size();
    const auto at = out.size();
    write_header(out, {codec_id::qsgd, version, levels, n, 0});
    write_value(out, static_cast<std::uint32_t>(bucket));
    const std::size_t nb = (n + bucket - 1) / bucket;
    const auto norms_at = out.size();
    out.resize(norms_at + 4 * nb);
    bit_writer bw{out};
    const double s = levels;
    const std::uint64_t stream = mix(state.seed ^ 0x51534744ull, state.step);  // "QSGD"
    for (std::size_t b = 0; b < nb; ++b) {
      const std::size_t b0 = b * bucket, len = std::min(bucket, n - b0);
      double sq = 0;
      for (std::size_t i = 0; i < len; ++i) sq += static_cast<double>(in[b0 + i]) * static_cast<double>(in[b0 + i]);
      const float norm = static_cast<float>(std::sqrt(sq));
      std::memcpy(out.data() + norms_at + 4 * b, &norm, 4);
      for (std::size_t i = 0; i < len; ++i) {
        const T v = in[b0 + i];
        std::uint32_t l = 0;
        if (norm > 0 && std::isfinite(norm)) {
          const double x = std::fabs(static_cast<double>(v)) / static_cast<double>(norm) * s;
          const double f = std::floor(x);
          l = static_cast<std::uint32_t>(f);
          if (uniform(mix(stream, b0 + i)) < x - f) ++l;
          if (l > levels) l = levels;
        }
        if (l == 0) {
          bw.put(0, 1);
        } else {
          bw.put(1, 1);
          bw.put(std::signbit(v) ? 1 : 0, 1);
          const int k = std::bit_width(l) - 1;  // Elias gamma: k zeros, then the k + 1 digits of l
          bw.put(0, k);
          for (int d = k; d >= 0; --d) bw.put((l >> d) & 1u, 1);
        }
      }
    }
    bw.flush();
    patch_payload_length(out, at, out.size() - at - header_bytes);
    ++state.step;
  }

  /// \throws malformed_payload for a bad header, s or bucket, a level above s, a truncated or too long
  ///   bit stream, or set padding bits. `out` is untouched then.
  void decode(std::span<const std::byte> w, std::span<T> out) const {
    validate(w, out.size());
    std::fill(out.begin(), out.end(), T{});
    walk(w, out.size(), [&](std::size_t i, T v) { out[i] = v; });
  }
  /// Adds the decoded values to `out` (decode-and-sum of an allgather of payloads).
  void decode_add(std::span<const std::byte> w, std::span<T> out) const {
    validate(w, out.size());
    walk(w, out.size(), [&](std::size_t i, T v) { out[i] += v; });
  }

  [[nodiscard]] std::size_t max_encoded_bytes(std::size_t n) const noexcept {
    const std::size_t b = bucket == 0 ? 1 : bucket;
    const std::size_t bits = 3 + 2 * static_cast<std::size_t>(std::bit_width(levels));  // the longest symbol
    return header_bytes + 4 + 4 * ((n + b - 1) / b) + (n * bits + 7) / 8;
  }

 private:
  void check() const {
    if (levels < 1 || levels > max_levels)
      throw invalid_argument("codecs::qsgd: " + std::to_string(levels) + " levels are not in 1..65536");
    if (bucket == 0 || bucket > 0xffffffffu)
      throw invalid_argument("codecs::qsgd: bucket " + std::to_string(bucket) + " is not in 1..4294967295");
  }

  [[nodiscard]] static constexpr std::uint64_t mix(std::uint64_t a, std::uint64_t b) noexcept {
    std::uint64_t x = a ^ (b + 0x9e3779b97f4a7c15ULL + (a << 6) + (a >> 2));
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
  }
  /// A double in [0, 1) from the top 53 bits.
  [[nodiscard]] static constexpr double uniform(std::uint64_t x) noexcept {
    return static_cast<double>(x >> 11) * 0x1p-53;
  }

  struct bit_writer {
    std::vector<std::byte>& out;
    std::uint64_t acc = 0;
    int used = 0;
    void put(std::uint32_t v, int bits) {
      for (int i = 0; i < bits; ++i) {
        acc |= static_cast<std::uint64_t>((v >> i) & 1u) << used;
        if (++used == 64) spill();
      }
    }
    void spill() {
      for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::byte>(acc >> (8 * i)));
      acc = 0;
      used = 0;
    }
    void flush() {
      for (int i = 0; i < (used + 7) / 8; ++i) out.push_back(static_cast<std::byte>(acc >> (8 * i)));
      acc = 0;
      used = 0;
    }
  };

  struct bit_reader {
    std::span<const std::byte> in;
    std::size_t bit = 0;
    /// The next bit; \throws malformed_payload at the end of the stream.
    unsigned get() {
      if (bit >= 8 * in.size())
        throw malformed_payload("codecs::qsgd: the bit stream ends at bit " + std::to_string(bit) +
                                " before every element has its symbol");
      const unsigned b = (static_cast<unsigned>(in[bit / 8]) >> (bit % 8)) & 1u;
      ++bit;
      return b;
    }
  };

  /// Checks all of `w` for `n` elements without writing anything.
  static void validate(std::span<const std::byte> w, std::size_t n) {
    walk(w, n, [](std::size_t, T) {});
  }

  /// Reads the payload (fully checked) and calls f(i, value) for every element with a non-zero level.
  template <class F>
  static void walk(std::span<const std::byte> w, std::size_t n, F&& f) {
    const header h = read_header(w, codec_id::qsgd, version, n);
    const std::uint32_t s = h.param;
    if (s < 1 || s > max_levels)
      throw malformed_payload("codecs::qsgd: " + std::to_string(s) + " levels in the header (1..65536)");
    reader rd(w.subspan(header_bytes), "codecs::qsgd");
    const auto b = rd.value<std::uint32_t>();
    if (b == 0) throw malformed_payload("codecs::qsgd: bucket size 0 in the payload");
    const std::size_t nb = n == 0 ? 0 : (n - 1) / b + 1;
    if (nb > rd.left() / 4)
      throw malformed_payload("codecs::qsgd: " + std::to_string(nb) + " bucket norms do not fit in " +
                              std::to_string(rd.left()) + " bytes");
    const auto norms = rd.bytes(4 * nb);
    bit_reader br{rd.bytes(rd.left())};
    const int max_k = std::bit_width(s) - 1;
    for (std::size_t i = 0; i < n; ++i) {
      if (br.get() == 0) continue;
      const bool negative = br.get() != 0;
      int k = 0;
      while (br.get() == 0)
        if (++k > max_k)
          throw malformed_payload("codecs::qsgd: element " + std::to_string(i) + " has a level code longer than s = " +
                                  std::to_string(s) + " allows");
      std::uint32_t l = 1;
      for (int d = 0; d < k; ++d) l = (l << 1) | br.get();
      if (l > s)
        throw malformed_payload("codecs::qsgd: element " + std::to_string(i) + " has level " + std::to_string(l) +
                                " above s = " + std::to_string(s));
      float norm;
      std::memcpy(&norm, norms.data() + 4 * (i / b), 4);
      const double v = static_cast<double>(norm) * l / s;
      f(i, static_cast<T>(negative ? -v : v));
    }
    const std::size_t used_bytes = (br.bit + 7) / 8;
    if (used_bytes != br.in.size())
      throw malformed_payload("codecs::qsgd: " + std::to_string(br.in.size() - used_bytes) +
                              " stray bytes after the bit stream");
    if (br.bit % 8 != 0 && (static_cast<unsigned>(br.in[br.bit / 8]) >> (br.bit % 8)) != 0)
      throw malformed_payload("codecs::qsgd: padding bits set after the last symbol");
  }
};

static_assert(concepts::codec<qsgd<float>, float>);

}  // namespace dssync::codecs
