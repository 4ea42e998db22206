#pragma once
/// \file
/// The libFuzzer harness shared by the codec targets in fuzz/ (one target per decoder, DSSYNC_BUILD_FUZZ).
///
/// An input that starts with the wire format's magic "DS" is a payload: it is decoded into a tensor whose
/// length is the header's element count (at most 65,536; larger counts are cut to their low 16 bits, so
/// that count mismatches are exercised too), for float and for double. The contract it checks:
/// - a decoder throws nothing but `malformed_payload`, and leaves its output bitwise untouched when it does;
/// - what `decode` accepts, `decode_add` accepts, and adds exactly the values `decode` wrote;
/// - decoding is deterministic.
/// Any other input drives the encoder: its first byte picks the codec's parameter (bucket, ratio, levels,
/// tau), the rest are the elements (NaN and infinities included). Two steps are encoded (the second one
/// with the residual of the first); each payload must fit `max_encoded_bytes` and decode. Parameters the
/// tensor cannot take may be refused with `invalid_argument` on the first step, before any output.
/// A broken contract aborts, which libFuzzer reports with the input that did it.

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

#include "dssync/codecs/wire.hpp"
#include "dssync/core/error.hpp"

namespace dssync_fuzz {

[[noreturn]] inline void fail(const char* what) {
  std::fprintf(stderr, "dssync fuzz: contract broken: %s\n", what);
  std::abort();
}

/// Bitwise equality, or both NaN (a NaN's payload may be quieted on the way).
template <class T>
[[nodiscard]] bool same(T a, T b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0 || (std::isnan(a) && std::isnan(b));
}

/// The tensor length a payload is decoded into: its header's count, cut to 16 bits above 65,536.
[[nodiscard]] inline std::size_t count_of(std::span<const std::byte> w) {
  if (w.size() < dssync::codecs::header_bytes) return w.size() % 17;
  std::uint64_t n = 0;
  std::memcpy(&n, w.data() + 8, 8);
  return static_cast<std::size_t>(n <= 65536 ? n : n & 0xffff);
}

/// The decoder's contract on one payload, for elements of T.
template <class Codec, class T>
void decode_one(const Codec& c, std::span<const std::byte> w) {
  const std::size_t n = count_of(w);
  std::vector<T> y(n), before;
  for (std::size_t i = 0; i < n; ++i) y[i] = static_cast<T>(0.25) * static_cast<T>(i % 13) - static_cast<T>(1);
  before = y;
  try {
    c.decode(w, std::span<T>(y));
  } catch (const dssync::malformed_payload&) {
    for (std::size_t i = 0; i < n; ++i)
      if (!same(y[i], before[i])) fail("decode threw malformed_payload but wrote its output");
    std::vector<T> z = before;
    try {
      c.decode_add(w, std::span<T>(z));
    } catch (const dssync::malformed_payload&) {
      for (std::size_t i = 0; i < n; ++i)
        if (!same(z[i], before[i])) fail("decode_add threw malformed_payload but wrote its output");
      return;
    }
    fail("decode rejected a payload that decode_add accepted");
  }
  std::vector<T> again(n, static_cast<T>(7));
  c.decode(w, std::span<T>(again));
  for (std::size_t i = 0; i < n; ++i)
    if (!same(again[i], y[i])) fail("decode is not deterministic");
  std::vector<T> sum = before;
  c.decode_add(w, std::span<T>(sum));
  for (std::size_t i = 0; i < n; ++i)
    if (!same(sum[i], static_cast<T>(before[i] + y[i]))) fail("decode_add did not add what decode wrote");
}

/// The encoder's contract on elements taken from `data`.
template <class Codec, class T, class Configure>
void encode_one(std::span<const std::byte> data, Configure&& configure) {
  if (data.empty()) return;
  Codec c;
  configure(c, static_cast<std::uint8_t>(data[0]));
  const std::size_t n = (data.size() - 1) / sizeof(T);
  std::vector<T> x(n);
  if (n != 0) std::memcpy(x.data(), data.data() + 1, n * sizeof(T));
  for (int step = 0; step < 2; ++step) {
    std::vector<std::byte> w;
    try {
      c.encode(std::span<const T>(x), w);
    } catch (const dssync::invalid_argument&) {
      if (step == 0 && w.empty()) return;  // parameters this tensor cannot take, refused before any output
      throw;
    }
    if (w.size() > c.max_encoded_bytes(n)) fail("a payload is longer than max_encoded_bytes");
    std::vector<T> y(n);
    try {
      c.decode(w, std::span<T>(y));
    } catch (const dssync::malformed_payload& e) {
      std::fprintf(stderr, "%s\n", e.what());
      fail("the decoder rejected the encoder's payload");
    }
  }
}

/// The whole target: a payload for float and double, or elements for the encoder.
template <template <class> class Codec, class Configure>
int run(const std::uint8_t* data, std::size_t size, Configure&& configure) {
  const std::span<const std::byte> in(reinterpret_cast<const std::byte*>(data), size);
  if (size >= 2 && data[0] == 0x44 && data[1] == 0x53) {
    decode_one<Codec<float>, float>(Codec<float>{}, in);
    decode_one<Codec<double>, double>(Codec<double>{}, in);
  } else {
    encode_one<Codec<float>, float>(in, configure);
    encode_one<Codec<double>, double>(in, configure);
  }
  return 0;
}

}  // namespace dssync_fuzz
