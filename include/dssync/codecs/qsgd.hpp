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
/// Payload (after the header, whose parameter is s), format version 2: the bucket size as a little-endian
/// uint32, the norm of each bucket as little-endian float32, then a bit stream (least significant bit of
/// each byte first) with one symbol per element: `0` for level 0, or `1`, the sign (1: negative) and the
/// level l in an Elias gamma code whose digits below the leading one come least significant first:
/// k = floor(log2 l) zeros, a one (l's leading digit), then l's k lower digits from the least significant
/// (the code lengths are Elias gamma's, 2k + 1 bits, and a decoder reads the digits with one shift and
/// mask instead of a bit reversal). The unused high bits of the last byte are zero. Version 1 wrote the
/// lower digits most significant first; this decoder refuses it.
///
/// Encoding and decoding work on 64-bit words, without a branch on the level: the randomness and the
/// data decide the levels, so a branch on them would be mispredicted often.

#include <algorithm>
#include <array>
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

#include "dssync/codecs/stochastic.hpp"
#include "dssync/codecs/wire.hpp"
#include "dssync/core/codec.hpp"
#include "dssync/core/error.hpp"

namespace dssync::codecs {

/// QSGD's per-tensor state: where its random stream is.
using qsgd_state = counter_rng_state<codec_id::qsgd_state>;

template <class T = float>
struct qsgd {
  static_assert(std::is_floating_point_v<T>, "codecs::qsgd encodes floating-point elements");
  static constexpr std::string_view name = "qsgd";
  static constexpr bool is_linear = false;
  static constexpr std::uint8_t version = 2;
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
    const std::uint32_t s_max = levels;  // a local: the writes to `out` would make the loop reload a member
    const std::uint64_t stream = state.stream(0x51534744ull);  // "QSGD"
    for (std::size_t b = 0; b < nb; ++b) {
      const std::size_t b0 = b * bucket, len = std::min(bucket, n - b0);
      double sq = 0;
      for (std::size_t i = 0; i < len; ++i) sq += static_cast<double>(in[b0 + i]) * static_cast<double>(in[b0 + i]);
      const float norm = static_cast<float>(std::sqrt(sq));
      std::memcpy(out.data() + norms_at + 4 * b, &norm, 4);
      const bool quantized = norm > 0 && std::isfinite(norm);
      const double scale = quantized ? s / static_cast<double>(norm) : 0.0;  // all levels 0 otherwise
      for (std::size_t i = 0; i < len; ++i) {
        const T v = in[b0 + i];
        // In [0, s] up to rounding; 0 in a bucket that is not quantized (a NaN or an infinity times 0 is
        // NaN, whose conversion to an integer below is undefined).
        const double x = quantized ? std::fabs(static_cast<double>(v)) * scale : 0.0;
        const auto f = static_cast<std::uint32_t>(x);                // floor: x >= 0
        std::uint32_t l = f + (uniform(mix(stream, b0 + i)) < x - f ? 1u : 0u);
        l = std::min(l, s_max);
        // '1', the sign, k zeros, a one, the k low digits of l: 2k + 3 bits, at most 35. Level 0 is '0'.
        // Masks, not a branch: whether l is 0 is a coin toss the predictor cannot learn.
        const int k = std::bit_width(l | 1u) - 1;
        const std::uint64_t nonzero = l != 0 ? 1u : 0u;
        const std::uint64_t sym = 1u | (std::signbit(v) ? 2u : 0u) | (std::uint64_t{1} << (2 + k)) |
                                  (static_cast<std::uint64_t>(l & ~(1u << k)) << (3 + k));
        bw.put(sym & (0 - nonzero), 1 + static_cast<int>(nonzero) * (2 * k + 2));
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
    walk(w, out.size(), T{}, [&](std::size_t i, T v) { out[i] = v; });
  }
  /// Adds the decoded values to `out` (decode-and-sum of an allgather of payloads).
  void decode_add(std::span<const std::byte> w, std::span<T> out) const {
    validate(w, out.size());
    walk(w, out.size(), -T{}, [&](std::size_t i, T v) { out[i] += v; });  // x + -0 is x, even for x = -0
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

  /// Appends bits to a byte vector a 64-bit word at a time, least significant bit first.
  struct bit_writer {
    std::vector<std::byte>& out;
    std::uint64_t acc = 0;
    int used = 0;  // bits of acc in use, below 64
    /// Appends the low `bits` (at most 63) bits of `v`, whose higher bits are zero.
    void put(std::uint64_t v, int bits) {
      acc |= v << used;
      if (used + bits < 64) {
        used += bits;
        return;
      }
      const auto at = out.size();
      out.resize(at + 8);
      std::memcpy(out.data() + at, &acc, 8);
      acc = used == 0 ? 0 : v >> (64 - used);
      used = used + bits - 64;
    }
    void flush() {
      for (int i = 0; i < (used + 7) / 8; ++i) out.push_back(static_cast<std::byte>(acc >> (8 * i)));
      acc = 0;
      used = 0;
    }
  };

  /// Reads a bit stream through 64-bit windows. Past the end, a window reads zeros; `skip` refuses to
  /// move past the end, so no symbol is taken from them.
  struct bit_reader {
    std::span<const std::byte> in;
    std::size_t bit = 0;
    /// The stream from `bit` on, least significant bit first: at least 57 bits (zeros past the end).
    [[nodiscard]] std::uint64_t window() const noexcept {
      const std::size_t byte = bit / 8;
      std::uint64_t w = 0;
      if (byte + 8 <= in.size()) {
        std::memcpy(&w, in.data() + byte, 8);
      } else {
        for (std::size_t j = 0; byte + j < in.size(); ++j) w |= static_cast<std::uint64_t>(in[byte + j]) << (8 * j);
      }
      return w >> (bit % 8);
    }
    /// Consumes `bits` bits. \throws malformed_payload if the stream has fewer.
    void skip(std::size_t bits) {
      if (bits > 8 * in.size() - bit)
        throw malformed_payload("codecs::qsgd: the bit stream ends at bit " + std::to_string(8 * in.size()) +
                                " before every element has its symbol");
      bit += bits;
    }
  };

  /// The decoding table of all 12-bit prefixes of a bit stream: entry p holds the symbols of level below 32
  /// (at most 12 bits each) that lie whole in p, up to 8 of them, as c (bits 0-3), the bits they take
  /// (bits 4-7), their largest level (bits 8-12), and per symbol j the sign (bit 16 + 6j) and the level
  /// (bits 17-21 + 6j); slots past c are level 0. c = 0 when the first symbol is longer than 12 bits.
  [[nodiscard]] static const std::array<std::uint64_t, 4096>& short_codes() {
    static const std::array<std::uint64_t, 4096> table = [] {
      std::array<std::uint64_t, 4096> t{};
      for (std::uint32_t p = 0; p < 4096; ++p) {
        std::uint64_t e = 0;
        std::uint32_t used = 0, top = 0, c = 0;
        while (c < 8) {
          const std::uint32_t rest = p >> used;
          const std::uint32_t bits = 12 - used;
          if (bits == 0) break;
          std::uint32_t len = 1, l = 0, sign = 0;
          if ((rest & 1u) != 0) {
            if (bits < 3) break;
            sign = (rest >> 1) & 1u;
            const std::uint32_t zeros = (rest >> 2) == 0 ? 32 : static_cast<std::uint32_t>(std::countr_zero(rest >> 2));
            len = 2 * zeros + 3;
            if (len > bits) break;
            l = (1u << zeros) | ((rest >> (zeros + 3)) & ((1u << zeros) - 1u));
          }
          e |= static_cast<std::uint64_t>(sign | (l << 1)) << (16 + 6 * c);
          top = std::max(top, l);
          used += len;
          ++c;
        }
        t[p] = e | c | (used << 4) | (static_cast<std::uint64_t>(top) << 8);
      }
      return t;
    }();
    return table;
  }

  /// Checks all of `w` for `n` elements without writing anything.
  static void validate(std::span<const std::byte> w, std::size_t n) {
    walk(w, n, T{}, [](std::size_t, T) {});
  }

  /// Reads the payload (fully checked) and calls f(i, value) for every element, with `zero` for level 0.
  template <class F>
  static void walk(std::span<const std::byte> w, std::size_t n, T zero, F&& f) {
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
    const std::size_t total_bits = 8 * br.in.size();
    const int max_k = std::bit_width(s) - 1;
    auto ends = [&] {
      return malformed_payload("codecs::qsgd: the bit stream ends at bit " + std::to_string(total_bits) +
                               " before every element has its symbol");
    };
    // Symbols are read from a 64-bit window held in a register, refilled when fewer than the longest
    // symbol's 35 bits remain. Each symbol's position depends on the last, so a symbol-at-a-time loop is
    // a serial chain with a branch the data decides; instead, the next 12 bits are looked up in a table
    // (`short_codes`) that decodes every whole symbol of level below 32 in them at once, up to 8. Longer
    // codes, bucket ends and the stream's end go one symbol at a time.
    const auto& table = short_codes();
    std::uint64_t win = br.window();
    int avail = 57;  // sure bits in win
    auto value = [&](double step, std::uint32_t l, bool negative) {
      const double v = step * static_cast<double>(l);
      return l == 0 ? zero : static_cast<T>(negative ? -v : v);
    };
    for (std::size_t b0 = 0; b0 < n; b0 += b) {
      const std::size_t end = std::min<std::size_t>(n, b0 + std::size_t{b});
      float norm;
      std::memcpy(&norm, norms.data() + 4 * (b0 / b), 4);
      const double step = static_cast<double>(norm) / s;
      for (std::size_t i = b0; i < end; ++i) {
        if (avail < 35) {
          if (br.bit > total_bits) throw ends();
          win = br.window();
          avail = 57;
        }
        const std::uint64_t e = table[win & 4095u];
        const auto c = static_cast<std::size_t>(e & 15u);
        if (c != 0 && c <= end - i && i + 8 <= n && ((e >> 8) & 31u) <= s) {
          // All 8 slots are written: those past the c symbols get level 0 (`zero`), and the elements they
          // fall on are written again by their own symbols later.
          for (std::size_t j = 0; j < 8; ++j) {
            const auto sym = static_cast<std::uint32_t>(e >> (16 + 6 * j)) & 63u;
            f(i + j, value(step, sym >> 1, (sym & 1u) != 0));
          }
          const int used = static_cast<int>((e >> 4) & 15u);
          i += c - 1;
          win >>= used;
          avail -= used;
          br.bit += static_cast<std::size_t>(used);
          continue;
        }
        if ((win & 1u) == 0) {  // level 0: '0'
          f(i, zero);
          win >>= 1;
          avail -= 1;
          br.bit += 1;
          continue;
        }
        const std::uint64_t r = win >> 2;  // the zeros of the gamma code
        const int k = std::countr_zero(r);
        if (k > max_k) {
          if (br.bit + static_cast<std::size_t>(2 * max_k + 4) > total_bits) throw ends();  // it ends in the zeros
          throw malformed_payload("codecs::qsgd: element " + std::to_string(i) + " has a level code longer than s = " +
                                  std::to_string(s) + " allows");
        }
        const std::uint32_t l = (1u << k) | (static_cast<std::uint32_t>(r >> (k + 1)) & ((1u << k) - 1u));
        const int len = 2 * k + 3;
        if (l > s)
          throw malformed_payload("codecs::qsgd: element " + std::to_string(i) + " has level " + std::to_string(l) +
                                  " above s = " + std::to_string(s));
        f(i, value(step, l, (win & 2u) != 0));
        win >>= len;
        avail -= len;
        br.bit += static_cast<std::size_t>(len);
      }
    }
    if (br.bit > total_bits) throw ends();
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
