// codecs: fp16, bf16, onebit, topk and qsgd with their wire header. Round trips against oracles, error feedback
// (nothing lost, only delayed), exact top-k selection against a sort, compression ratios, checkpointed
// state that gives bitwise the same next step, and malformed payloads (every truncation, every header
// field, bad indices, varints and padding) rejected with malformed_payload.

#include <doctest/doctest.h>

#include <Eigen/Core>  // codecs/half.hpp needs Eigen (this include tags the test for CMake)
#include <dssync/codecs/dgc.hpp>
#include <dssync/codecs/error_feedback.hpp>
#include <dssync/codecs/half.hpp>
#include <dssync/codecs/onebit.hpp>
#include <dssync/codecs/powersgd.hpp>
#include <dssync/codecs/qsgd.hpp>
#include <dssync/codecs/randomk.hpp>
#include <dssync/codecs/terngrad.hpp>
#include <dssync/codecs/threshold.hpp>
#include <dssync/codecs/topk.hpp>
#include <dssync/codecs/wire.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <span>
#include <vector>

namespace {

namespace cd = dssync::codecs;

std::vector<float> gaussian(std::size_t n, unsigned seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

template <class C, class T>
std::vector<std::byte> encode(C& c, const std::vector<T>& x) {
  std::vector<std::byte> w;
  c.encode(std::span<const T>(x), w);
  return w;
}

/// Every proper prefix of `w`, and `w` with one stray byte, is refused with malformed_payload.
template <class Decode>
void check_truncations(const std::vector<std::byte>& w, Decode&& decode) {
  for (std::size_t len = 0; len < w.size(); ++len) {
    INFO("prefix of " << len << " of " << w.size() << " bytes");
    CHECK_THROWS_AS(decode(std::span<const std::byte>(w.data(), len)), dssync::malformed_payload);
  }
  auto longer = w;
  longer.push_back(std::byte{0});
  CHECK_THROWS_AS(decode(std::span<const std::byte>(longer)), dssync::malformed_payload);
}

/// Each header field changed is refused, naming it.
template <class Decode>
void check_header_fields(const std::vector<std::byte>& w, Decode&& decode) {
  auto bad = [&](std::size_t at, std::byte v, const char* says) {
    auto x = w;
    x[at] = v;
    CHECK_THROWS_WITH_AS(decode(std::span<const std::byte>(x)), doctest::Contains(says), dssync::malformed_payload);
  };
  bad(0, std::byte{0x45}, "bad magic");
  bad(2, std::byte{99}, "codec id 99");
  bad(3, std::byte{7}, "format version 7");
  bad(8, static_cast<std::byte>(static_cast<unsigned>(w[8]) ^ 1u), "elements, the output has");
  bad(16, static_cast<std::byte>(static_cast<unsigned>(w[16]) ^ 1u), "header says a payload of");
}

/// The top k of `g` by (magnitude desc, index asc), NaN first: the oracle of topk's selection.
std::vector<std::size_t> oracle_topk(const std::vector<float>& g, std::size_t k) {
  std::vector<std::size_t> idx(g.size());
  std::iota(idx.begin(), idx.end(), std::size_t{0});
  auto mag = [&](std::size_t i) {
    const float m = std::fabs(g[i]);
    return std::isnan(m) ? std::numeric_limits<float>::infinity() : m;
  };
  std::stable_sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) { return mag(a) > mag(b); });
  idx.resize(k);
  std::sort(idx.begin(), idx.end());
  return idx;
}

}  // namespace

TEST_SUITE_BEGIN("codecs");

TEST_CASE("fp16 and bf16: round to nearest, sizes, decode_add, double elements") {
  for (std::size_t n : {0u, 1u, 7u, 1000u}) {
    const auto x = gaussian(n, 1);
    cd::fp16<float> h;
    cd::bf16<float> b;
    const auto wh = encode(h, x), wb = encode(b, x);
    CHECK(wh.size() == cd::header_bytes + 2 * n);
    CHECK(wh.size() == h.max_encoded_bytes(n));
    CHECK(wb.size() == b.max_encoded_bytes(n));
    std::vector<float> yh(n), yb(n);
    h.decode(wh, yh);
    b.decode(wb, yb);
    for (std::size_t i = 0; i < n; ++i) {
      CHECK(yh[i] == static_cast<float>(Eigen::half(x[i])));
      CHECK(yb[i] == static_cast<float>(Eigen::bfloat16(x[i])));
      CHECK(std::fabs(yh[i] - x[i]) <= std::fabs(x[i]) * 0x1p-11f + 0x1p-24f);
      CHECK(std::fabs(yb[i] - x[i]) <= std::fabs(x[i]) * 0x1p-8f);
    }
    std::vector<float> acc(n, 1.0f);
    h.decode_add(wh, acc);
    for (std::size_t i = 0; i < n; ++i) CHECK(acc[i] == 1.0f + yh[i]);
  }
  // Exactly representable values survive; out-of-range ones saturate as IEEE says.
  const std::vector<double> d{0.0, -0.5, 1.0, 2048.0, 1e5, -1e30};
  cd::fp16<double> h;
  cd::bf16<double> b;
  std::vector<double> yh(d.size()), yb(d.size());
  h.decode(encode(h, d), yh);
  b.decode(encode(b, d), yb);
  CHECK(yh[1] == -0.5);
  CHECK(yh[3] == 2048.0);
  CHECK(std::isinf(yh[4]));
  CHECK(std::isfinite(yb[5]));
  CHECK(yb[5] < -9e29);
}

TEST_CASE("onebit: per-bucket means, error feedback loses nothing, ratio 31.5x") {
  for (std::size_t bucket : {1u, 3u, 64u, 4096u})
    for (std::size_t n : {0u, 1u, 7u, 1000u, 10000u}) {
      INFO("bucket " << bucket << ", " << n << " elements");
      cd::onebit<float> c(bucket);
      std::vector<double> sent(n, 0.0), given(n, 0.0);
      for (int step = 0; step < 5; ++step) {
        const auto g = gaussian(n, 10 + static_cast<unsigned>(step));
        const auto before = c.state.residual;
        const auto w = encode(c, g);
        CHECK(w.size() == c.max_encoded_bytes(n));
        std::vector<float> y(n);
        c.decode(w, y);
        // Signs of g + r, and the bucket's means of each sign.
        for (std::size_t b0 = 0; b0 < n; b0 += bucket) {
          const std::size_t len = std::min(bucket, n - b0);
          // The format's means: double sums in four lanes (element i into lane i % 4 of its bucket).
          double ps[4] = {}, ns[4] = {};
          std::size_t np = 0;
          for (std::size_t i = b0; i < b0 + len; ++i) {
            const float v = g[i] + (before.empty() ? 0.0f : before[i]);
            if (v >= 0) {
              ps[(i - b0) % 4] += v;
              ++np;
            } else {
              ns[(i - b0) % 4] += v;
            }
            CHECK((y[i] >= 0) == (v >= 0));
          }
          const double pos = (ps[0] + ps[1]) + (ps[2] + ps[3]), neg = (ns[0] + ns[1]) + (ns[2] + ns[3]);
          for (std::size_t i = b0; i < b0 + len; ++i) {
            const float v = g[i] + (before.empty() ? 0.0f : before[i]);
            const float want = v >= 0 ? static_cast<float>(pos / static_cast<double>(np))
                                      : static_cast<float>(neg / static_cast<double>(len - np));
            CHECK(y[i] == want);
            CHECK(c.state.residual[i] == v - want);  // the residual keeps what the bits lost
          }
        }
        for (std::size_t i = 0; i < n; ++i) {
          sent[i] += y[i];
          given[i] += g[i];
        }
      }
      // Error feedback: everything given was sent, or is still in the residual.
      for (std::size_t i = 0; i < n; ++i) CHECK(std::fabs(sent[i] + c.state.residual[i] - given[i]) < 1e-4);
    }
  const std::size_t n = std::size_t{1} << 20;
  cd::onebit<float> c;
  const auto w = encode(c, gaussian(n, 3));
  const double ratio = static_cast<double>(n * sizeof(float)) / static_cast<double>(w.size());
  CHECK(ratio > 31.4);
  CHECK(ratio < 32.0);
}

TEST_CASE("topk: the exact top k (ties by index, NaN first), error feedback, ratio at 1 %") {
  for (double ratio : {0.001, 0.01, 0.1, 0.5, 1.0})
    for (std::size_t n : {0u, 1u, 7u, 1000u, 100000u}) {
      INFO("ratio " << ratio << ", " << n << " elements");
      cd::topk<float> c(ratio);
      std::vector<float> r(n, 0.0f);
      for (int step = 0; step < 3; ++step) {
        auto g = gaussian(n, 20 + static_cast<unsigned>(step));
        if (n >= 7) {  // ties and a NaN
          g[1] = g[5] = 100.0f;
          g[3] = -100.0f;
          if (step == 2) g[6] = std::numeric_limits<float>::quiet_NaN();
        }
        std::vector<float> sum(n);
        for (std::size_t i = 0; i < n; ++i) sum[i] = g[i] + r[i];
        const std::size_t k = c.k_of(n);
        CHECK(k == (n == 0 ? 0 : std::max<std::size_t>(1, static_cast<std::size_t>(std::ceil(ratio * static_cast<double>(n))))));
        const auto want = oracle_topk(sum, k);
        const auto w = encode(c, g);
        CHECK(w.size() <= c.max_encoded_bytes(n));
        std::vector<float> y(n, 7.0f);
        c.decode(w, y);
        std::vector<std::size_t> got;
        for (std::size_t i = 0; i < n; ++i)
          if (std::memcmp(&y[i], &sum[i], sizeof(float)) == 0 && !(y[i] == 0 && sum[i] == 0)) got.push_back(i);
        std::size_t nonzero = 0;
        for (float v : y) nonzero += v != 0 ? 1 : 0;
        CHECK(got == std::vector<std::size_t>(want.begin(), want.end()));
        CHECK(nonzero <= k);
        // Nothing lost: decoded + residual is g + r, bitwise.
        for (std::size_t i = 0; i < n; ++i) {
          const float back = y[i] + c.state.residual[i];
          CHECK(std::memcmp(&back, &sum[i], sizeof(float)) == 0);
        }
        r = c.state.residual;
      }
    }
  const std::size_t n = std::size_t{1} << 20;
  cd::topk<float> c(0.01);
  const auto w = encode(c, gaussian(n, 4));
  const double ratio = static_cast<double>(n * sizeof(float)) / static_cast<double>(w.size());
  CHECK(ratio >= 50);  // indices included
  std::vector<float> acc(n, 0.0f), one(n);
  c.decode(w, one);
  c.decode_add(w, acc);
  c.decode_add(w, acc);
  for (std::size_t i = 0; i < n; i += 97) CHECK(acc[i] == 2 * one[i]);
}

TEST_CASE("qsgd: levels next to |v|/||v||*s, unbiased, QSGD's variance bound, ratio at s = 16") {
  for (std::uint32_t s : {1u, 4u, 16u, 255u})
    for (std::size_t n : {0u, 1u, 7u, 1000u}) {
      INFO("s = " << s << ", " << n << " elements");
      cd::qsgd<float> c(s, 256);
      const auto v = gaussian(n, 50);
      const int steps = 400;
      std::vector<double> mean(n, 0.0);
      double sq_err = 0, sq_norm = 0;
      for (float x : v) sq_norm += static_cast<double>(x) * x;
      for (int t = 0; t < steps; ++t) {
        const auto w = encode(c, v);
        CHECK(w.size() <= c.max_encoded_bytes(n));
        std::vector<float> y(n);
        c.decode(w, y);
        for (std::size_t b0 = 0; b0 < n; b0 += 256) {
          const std::size_t len = std::min<std::size_t>(256, n - b0);
          double q = 0;
          for (std::size_t i = b0; i < b0 + len; ++i) q += static_cast<double>(v[i]) * v[i];
          const double norm = static_cast<float>(std::sqrt(q));
          for (std::size_t i = b0; i < b0 + len; ++i) {
            // A level next to x = |v|/||v||*s, with v's sign (or zero).
            const double x = std::fabs(static_cast<double>(v[i])) / norm * s;
            const double l = std::fabs(static_cast<double>(y[i])) / norm * s;
            CHECK(std::fabs(l - std::round(l)) < 1e-3);
            CHECK(std::round(l) >= std::floor(x) - 1e-9);
            CHECK(std::round(l) <= std::ceil(x) + 1e-9);
            CHECK((y[i] == 0 || (y[i] < 0) == (v[i] < 0)));
          }
        }
        for (std::size_t i = 0; i < n; ++i) {
          mean[i] += y[i];
          sq_err += (static_cast<double>(y[i]) - v[i]) * (static_cast<double>(y[i]) - v[i]);
        }
      }
      // Unbiased: the mean of the steps approaches v (each level's spread is at most ||v||/s).
      for (std::size_t i = 0; i < n; ++i) {
        const double bucket_norm = std::sqrt(sq_norm);  // >= the bucket's norm
        CHECK(std::fabs(mean[i] / steps - v[i]) <= 5 * 0.5 * bucket_norm / s / std::sqrt(double(steps)) + 1e-6);
      }
      // QSGD Lemma 3.1: E||Q(v) - v||^2 <= min(d/s^2, sqrt(d)/s) ||v||^2 per bucket of d (with 10 % slack
      // for the sampling of 400 steps).
      const double d = std::min<double>(256, static_cast<double>(n));
      if (n > 0) CHECK(sq_err / steps <= 1.1 * std::min(d / (double(s) * s), std::sqrt(d) / s) * sq_norm + 1e-9);
      CHECK(c.state.step == static_cast<std::uint64_t>(steps));
    }
  const std::size_t n = std::size_t{1} << 20;
  cd::qsgd<float> c(16);
  const auto w = encode(c, gaussian(n, 5));
  CHECK(static_cast<double>(n * sizeof(float)) / static_cast<double>(w.size()) >= 6);
}

/// QSGD's payload read one bit at a time, straight from the format's description in qsgd.hpp: the
/// oracle of the word-at-a-time encoder and decoder. Returns the signed level of every element.
std::vector<long> qsgd_levels_bit_serial(const std::vector<std::byte>& w, std::size_t n, std::uint32_t& s) {
  std::memcpy(&s, w.data() + 4, 4);
  std::uint32_t b;
  std::memcpy(&b, w.data() + 24, 4);
  std::size_t bit = 8 * (24 + 4 + 4 * ((n + b - 1) / b));
  auto get = [&] {
    REQUIRE(bit < 8 * w.size());
    const unsigned x = (static_cast<unsigned>(w[bit / 8]) >> (bit % 8)) & 1u;
    ++bit;
    return x;
  };
  std::vector<long> out(n);
  for (auto& l : out) {
    if (get() == 0) continue;
    const bool negative = get() != 0;
    int k = 0;
    while (get() == 0) ++k;
    long v = 1L << k;  // the leading one, then the k low digits from the least significant (version 2)
    for (int d = 0; d < k; ++d) v |= static_cast<long>(get()) << d;
    l = negative ? -v : v;
  }
  CHECK((bit + 7) / 8 == w.size());
  return out;
}

TEST_CASE("qsgd: the word-at-a-time bit stream equals its bit-serial reading, for s up to 65536") {
  for (std::uint32_t s : {1u, 2u, 3u, 16u, 1000u, 65535u, 65536u})
    for (std::size_t n : {1u, 63u, 64u, 65u, 5000u}) {
      INFO("s = " << s << ", " << n << " elements");
      // Heavy tails put symbols of every length next to long runs of zeros.
      auto v = gaussian(n, 7 + s);
      for (std::size_t i = 0; i < n; i += 3) v[i] *= 1e-4f;
      if (n > 10) v[n / 2] = 1e3f;
      cd::qsgd<float> c(s, 128);
      const auto w = encode(c, v);
      CHECK(w.size() <= c.max_encoded_bytes(n));
      std::uint32_t s_read = 0;
      const auto levels = qsgd_levels_bit_serial(w, n, s_read);
      CHECK(s_read == s);
      std::vector<float> y(n, 9.0f), acc(n, 1.0f);
      c.decode(w, y);
      c.decode_add(w, acc);
      long nonzero = 0;
      for (std::size_t i = 0; i < n; ++i) {
        CHECK(std::labs(levels[i]) <= static_cast<long>(s));
        nonzero += levels[i] != 0;
        double q = 0;
        const std::size_t b0 = i / 128 * 128;
        for (std::size_t j = b0; j < std::min<std::size_t>(n, b0 + 128); ++j) q += static_cast<double>(v[j]) * v[j];
        const double norm = static_cast<float>(std::sqrt(q));
        CHECK(y[i] == static_cast<float>(norm * static_cast<double>(std::labs(levels[i])) / s * (levels[i] < 0 ? -1 : 1)));
        CHECK(acc[i] == 1.0f + y[i]);
      }
      CHECK(nonzero > 0);
    }
}

TEST_CASE("qsgd: reproducible steps, checkpointed state, malformed payloads and parameters") {
  const auto v = gaussian(3000, 60);
  cd::qsgd<float> a(16);
  a.state.seed = 42;
  (void)encode(a, v);
  std::vector<std::byte> saved;
  a.state.save(saved);
  const auto wa = encode(a, v);
  cd::qsgd<float> b(16);
  b.state.load(saved);
  CHECK(b.state.seed == 42);
  CHECK(encode(b, v) == wa);
  cd::qsgd<float> other(16);
  other.state.seed = 43;
  other.state.step = 1;
  CHECK(encode(other, v) != wa);  // another seed, another stream
  CHECK_THROWS_AS(b.state.load(std::span<const std::byte>(saved.data(), saved.size() - 1)), dssync::malformed_payload);
  // Malformed payloads.
  std::vector<float> y(v.size());
  auto dec = [&](std::span<const std::byte> p) { b.decode(p, y); };
  check_truncations(wa, dec);
  check_header_fields(wa, dec);
  auto make = [&](std::uint32_t s, std::vector<std::uint8_t> body) {
    std::vector<std::byte> p;
    cd::write_header(p, {cd::codec_id::qsgd, 2, s, 2, body.size()});
    for (auto x : body) p.push_back(static_cast<std::byte>(x));
    return p;
  };
  std::vector<float> two(2);
  auto dec2 = [&](const std::vector<std::byte>& p) { b.decode(p, two); };
  // bucket 4, norm 1.0f, then symbols: element 0 level 1 ("1","0","1" = bits 1,0,1), element 1 zero ("0").
  const std::vector<std::uint8_t> norm{0x00, 0x00, 0x80, 0x3f};
  auto body = [&](const std::vector<std::uint8_t>& bits) {
    std::vector<std::uint8_t> out{4, 0, 0, 0};  // push_back: GCC 12's -Warray-bounds misfires on insert here
    for (auto x : norm) out.push_back(x);
    for (auto x : bits) out.push_back(x);
    return out;
  };
  dec2(make(4, body({0b0101})));
  CHECK(two[0] == 0.25f);
  CHECK(two[1] == 0.0f);
  CHECK_THROWS_WITH_AS(dec2(make(0, body({0b0101}))), doctest::Contains("0 levels in the header"), dssync::malformed_payload);
  CHECK_THROWS_WITH_AS(dec2(make(4, {0, 0, 0, 0, 0, 0, 0x80, 0x3f, 0})), doctest::Contains("bucket size 0"),
                       dssync::malformed_payload);
  // Level 3 ("1", "0", zero, one, low digit 1), and level 2 (low digit 0): the low digits come least
  // significant first (version 2).
  dec2(make(4, body({0b00011001})));
  CHECK(two[0] == 0.75f);
  CHECK(two[1] == 0.0f);
  dec2(make(4, body({0b00001011})));
  CHECK(two[0] == -0.5f);
  // Level 5 (zeros 00, one, low digits 1, 0) with s = 4; a gamma code longer than s allows; padding bits;
  // stray bytes; no bits; a stream that ends in a code's zeros.
  CHECK_THROWS_WITH_AS(dec2(make(4, body({0b00110001, 0}))), doctest::Contains("level 5 above s = 4"),
                       dssync::malformed_payload);
  CHECK_THROWS_WITH_AS(dec2(make(65536, body({0b00000001}))), doctest::Contains("bit stream ends"), dssync::malformed_payload);
  // A version 1 payload (low digits most significant first) is refused by its version.
  auto v1 = make(4, body({0b0101}));
  v1[3] = std::byte{1};
  CHECK_THROWS_WITH_AS(dec2(v1), doctest::Contains("format version 1, this decoder reads version 2"),
                       dssync::malformed_payload);
  CHECK_THROWS_WITH_AS(dec2(make(4, body({0b00000001, 0}))), doctest::Contains("longer than s = 4 allows"),
                       dssync::malformed_payload);
  CHECK_THROWS_WITH_AS(dec2(make(4, body({0b10000101}))), doctest::Contains("padding bits set"), dssync::malformed_payload);
  CHECK_THROWS_WITH_AS(dec2(make(4, body({0b0101, 0}))), doctest::Contains("1 stray bytes"), dssync::malformed_payload);
  CHECK_THROWS_WITH_AS(dec2(make(4, body({}))), doctest::Contains("bit stream ends"), dssync::malformed_payload);
  CHECK_THROWS_WITH_AS(dec2(make(4, {4, 0, 0, 0, 0})), doctest::Contains("bucket norms do not fit"),
                       dssync::malformed_payload);
  // Parameters.
  std::vector<std::byte> w;
  cd::qsgd<float> zero(0), huge(70000), nob(16, 0);
  CHECK_THROWS_WITH_AS(zero.encode(v, w), doctest::Contains("0 levels are not in 1..65536"), dssync::invalid_argument);
  CHECK_THROWS_WITH_AS(huge.encode(v, w), doctest::Contains("70000 levels"), dssync::invalid_argument);
  CHECK_THROWS_WITH_AS(nob.encode(v, w), doctest::Contains("bucket 0 is not in"), dssync::invalid_argument);
}

TEST_CASE("codecs: bad parameters and a tensor that changes length are named") {
  cd::topk<float> t(0);
  std::vector<std::byte> w;
  const std::vector<float> x(10, 1.0f), y(11, 1.0f);
  CHECK_THROWS_WITH_AS(t.encode(x, w), doctest::Contains("ratio 0.000000 is not in (0, 1]"), dssync::invalid_argument);
  cd::onebit<float> o(0);
  CHECK_THROWS_WITH_AS(o.encode(x, w), doctest::Contains("bucket 0 is not in"), dssync::invalid_argument);
  cd::onebit<float> ok;
  ok.encode(x, w);
  CHECK_THROWS_WITH_AS(ok.encode(y, w), doctest::Contains("the tensor has 11 elements, its error-feedback residual 10"),
                       dssync::invalid_argument);
  ok.state.reset();
  ok.encode(y, w);  // a reset state starts over
}

TEST_CASE("codecs: saved state gives bitwise the same next step; a bad state is refused") {
  const std::size_t n = 5000;
  auto check = [&](auto codec) {
    auto a = codec;
    (void)encode(a, gaussian(n, 30));
    std::vector<std::byte> saved;
    a.state.save(saved);
    const auto next = gaussian(n, 31);
    const auto wa = encode(a, next);
    auto b = codec;
    b.state.load(saved);
    const auto wb = encode(b, next);
    CHECK(wa == wb);
    CHECK(a.state.residual == b.state.residual);
    // Truncated, or of another element size.
    for (std::size_t len : {std::size_t{0}, std::size_t{10}, cd::header_bytes, saved.size() - 1})
      CHECK_THROWS_AS(b.state.load(std::span<const std::byte>(saved.data(), len)), dssync::malformed_payload);
    cd::error_feedback<double> d;
    CHECK_THROWS_WITH_AS(d.load(saved), doctest::Contains("elements of 4 bytes, this codec's are 8"),
                         dssync::malformed_payload);
  };
  check(cd::onebit<float>(128));
  check(cd::topk<float>(0.02));
  cd::error_feedback<float> empty, back;
  std::vector<std::byte> w;
  empty.save(w);
  back.load(w);
  CHECK(back.residual.empty());
}

TEST_CASE("codecs: malformed payloads are refused, never read out of bounds") {
  const std::size_t n = 1000;
  const auto x = gaussian(n, 40);
  SUBCASE("fp16 and bf16") {
    cd::fp16<float> h;
    const auto w = encode(h, x);
    std::vector<float> y(n);
    auto dec = [&](std::span<const std::byte> p) { h.decode(p, y); };
    check_truncations(w, dec);
    check_header_fields(w, dec);
    cd::bf16<float> b;
    CHECK_THROWS_WITH_AS(b.decode(w, y), doctest::Contains("codec id 1 in the header, expected 2"),
                         dssync::malformed_payload);
    std::vector<float> shorter(n - 1);
    CHECK_THROWS_WITH_AS(h.decode(w, shorter), doctest::Contains("header says 1000 elements, the output has 999"),
                         dssync::malformed_payload);
  }
  SUBCASE("onebit") {
    cd::onebit<float> c(100);
    const auto w = encode(c, std::vector<float>(x.begin(), x.begin() + 997));  // 97 in the last bucket: padding bits
    std::vector<float> y(997);
    auto dec = [&](std::span<const std::byte> p) { c.decode(p, y); };
    check_truncations(w, dec);
    check_header_fields(w, dec);
    auto pad = w;
    pad.back() |= std::byte{0x80};
    CHECK_THROWS_WITH_AS(dec(pad), doctest::Contains("padding bits set"), dssync::malformed_payload);
    auto zero = w;
    std::memset(zero.data() + 4, 0, 4);
    CHECK_THROWS_WITH_AS(dec(zero), doctest::Contains("bucket size 0"), dssync::malformed_payload);
    auto other = w;
    other[4] = std::byte{99};  // bucket 99: another payload length
    CHECK_THROWS_WITH_AS(dec(other), doctest::Contains("in buckets of 99 take"), dssync::malformed_payload);
  }
  SUBCASE("topk") {
    cd::topk<float> c(0.05);
    const auto w = encode(c, x);
    std::vector<float> y(n, 3.0f);
    auto dec = [&](std::span<const std::byte> p) { c.decode(p, y); };
    check_truncations(w, dec);
    check_header_fields(w, dec);
    CHECK(std::all_of(y.begin(), y.end(), [](float v) { return v == 3.0f; }));  // refused payloads write nothing
    // Hand-made payloads: k above n, an index past the end, an overlong varint.
    auto make = [&](std::uint32_t k, std::vector<std::uint8_t> body) {
      std::vector<std::byte> p;
      cd::write_header(p, {cd::codec_id::topk, 1, k, 10, body.size()});
      for (auto b : body) p.push_back(static_cast<std::byte>(b));
      return p;
    };
    std::vector<float> ten(10);
    auto dec10 = [&](const std::vector<std::byte>& p) { c.decode(p, ten); };
    std::vector<std::uint8_t> ok_body{2, 0};  // indices 2 and 3
    for (int i = 0; i < 8; ++i) ok_body.push_back(0);
    dec10(make(2, ok_body));
    CHECK(ten[2] == 0.0f);
    // A header that claims more entries than its bytes can hold is refused before anything is allocated.
    std::vector<std::byte> big;
    cd::write_header(big, {cd::codec_id::topk, 1, 1000000, 1000000, 3});
    for (int i = 0; i < 3; ++i) big.push_back(std::byte{0});
    std::vector<float> million(1000000);
    CHECK_THROWS_WITH_AS(c.decode(big, million), doctest::Contains("1000000 entries need at least 5000000 bytes, 3 follow"),
                         dssync::malformed_payload);
    CHECK_THROWS_WITH_AS(dec10(make(11, {})), doctest::Contains("11 entries in the header for 10 elements"),
                         dssync::malformed_payload);
    CHECK_THROWS_WITH_AS(dec10(make(1, {10, 0, 0, 0, 0})), doctest::Contains("beyond the last element 9"),
                         dssync::malformed_payload);
    CHECK_THROWS_WITH_AS(dec10(make(2, {8, 1, 0, 0, 0, 0, 0, 0, 0, 0})), doctest::Contains("beyond the last element 9"),
                         dssync::malformed_payload);
    CHECK_THROWS_WITH_AS(dec10(make(1, {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01})),
                         doctest::Contains("longer than 10 bytes"), dssync::malformed_payload);
    CHECK_THROWS_WITH_AS(dec10(make(1, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f})),
                         doctest::Contains("overflows 64 bits"), dssync::malformed_payload);
    CHECK_THROWS_WITH_AS(dec10(make(1, {0x85, 0x80, 0x80, 0x80, 0x80})), doctest::Contains("truncated inside a varint"),
                         dssync::malformed_payload);
  }
  SUBCASE("random bytes never crash a decoder") {
    std::mt19937 rng(7);
    std::vector<float> y(64);
    std::size_t refused = 0;
    for (int trial = 0; trial < 3000; ++trial) {
      // A valid header for 64 elements with random fields flipped, then random bytes.
      std::vector<std::byte> p;
      const auto id = static_cast<cd::codec_id>(1 + trial % 8);
      const std::size_t body = rng() % 80;
      const std::uint8_t version = id == cd::codec_id::qsgd ? 2 : 1;
      cd::write_header(p, {id, version, static_cast<std::uint32_t>(rng() % 70), 64, body});
      for (std::size_t i = 0; i < body; ++i) p.push_back(static_cast<std::byte>(rng()));
      if (trial % 7 == 0) p[rng() % p.size()] = static_cast<std::byte>(rng());
      for (auto* dec : {+[](std::span<const std::byte> w, std::span<float> out) { cd::fp16<float>{}.decode(w, out); },
                        +[](std::span<const std::byte> w, std::span<float> out) { cd::onebit<float>{}.decode(w, out); },
                        +[](std::span<const std::byte> w, std::span<float> out) { cd::topk<float>{}.decode(w, out); },
                        +[](std::span<const std::byte> w, std::span<float> out) { cd::qsgd<float>{}.decode(w, out); },
                        +[](std::span<const std::byte> w, std::span<float> out) { cd::terngrad<float>{}.decode(w, out); },
                        +[](std::span<const std::byte> w, std::span<float> out) { cd::threshold<float>{}.decode(w, out); },
                        +[](std::span<const std::byte> w, std::span<float> out) { cd::randomk<float>{}.decode(w, out); }}) {
        try {
          dec(p, y);
        } catch (const dssync::malformed_payload&) {
          ++refused;
        }
      }
    }
    CHECK(refused > 0);
  }
}

TEST_CASE("terngrad: values in {-s, 0, s}, unbiased without clipping, clipping at c sigma, malformed payloads") {
  for (std::size_t n : {0u, 1u, 5u, 1000u, 4097u}) {
    INFO(n << " elements");
    const auto v = gaussian(n, 80);
    cd::terngrad<float> c(512, 0.0);
    const int steps = 300;
    std::vector<double> mean(n, 0.0);
    for (int t = 0; t < steps; ++t) {
      const auto w = encode(c, v);
      CHECK(w.size() == c.max_encoded_bytes(n));
      std::vector<float> y(n);
      c.decode(w, y);
      for (std::size_t b0 = 0; b0 < n; b0 += 512) {
        float top = 0;
        for (std::size_t i = b0; i < std::min<std::size_t>(n, b0 + 512); ++i) top = std::max(top, std::fabs(v[i]));
        for (std::size_t i = b0; i < std::min<std::size_t>(n, b0 + 512); ++i) {
          CHECK((y[i] == 0 || y[i] == (v[i] < 0 ? -top : top)));
          mean[i] += y[i];
        }
      }
    }
    for (std::size_t i = 0; i < n; ++i) {
      // Each draw is s or 0 with variance at most s^2 / 4: five standard errors (s <= 4.5 here).
      CHECK(std::fabs(mean[i] / steps - v[i]) <= 5 * 0.5 * 4.5 / std::sqrt(double(steps)));
    }
    CHECK(c.state.step == static_cast<std::uint64_t>(steps));
  }
  // Clipping: the scale is c sigma when an outlier is above it, and the outlier is sent as +-scale.
  std::vector<float> v = gaussian(4096, 81);
  v[7] = 100.0f;
  cd::terngrad<float> clipped(4096, 2.5);
  std::vector<float> y(v.size());
  clipped.decode(encode(clipped, v), y);
  double sum = 0, sq = 0;
  for (float x : v) {
    sum += x;
    sq += static_cast<double>(x) * x;
  }
  const double sigma = std::sqrt(sq / 4096 - (sum / 4096) * (sum / 4096));
  CHECK(y[7] == static_cast<float>(2.5 * sigma));  // |v| / s >= 1: always sent
  for (float x : y) CHECK(std::fabs(x) <= static_cast<float>(2.5 * sigma));
  // A NaN makes its bucket zero; decode_add adds; ratio about 16.
  auto nan = gaussian(100, 82);
  nan[3] = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> z(100, 1.0f);
  cd::terngrad<float> t(64);
  t.decode_add(encode(t, nan), z);
  for (std::size_t i = 0; i < 64; ++i) CHECK(z[i] == 1.0f);
  cd::terngrad<float> dflt;  // buckets of 4096: 2 bits and 1/128 of a scale per element
  const auto big = encode(dflt, gaussian(1 << 16, 83));
  CHECK(static_cast<double>((1 << 16) * sizeof(float)) / static_cast<double>(big.size()) >= 15);
  // Reproducible: a saved state gives the same next step.
  cd::terngrad<float> a(256), b(256);
  a.state.seed = 9;
  (void)encode(a, v);
  std::vector<std::byte> saved;
  a.state.save(saved);
  b.state.load(saved);
  CHECK(encode(a, v) == encode(b, v));
  // Malformed payloads.
  cd::terngrad<float> m(100);
  const auto w = encode(m, std::vector<float>(v.begin(), v.begin() + 997));
  std::vector<float> out(997, 3.0f);
  auto dec = [&](std::span<const std::byte> p) { m.decode(p, out); };
  check_truncations(w, dec);
  check_header_fields(w, dec);
  auto bad = w;
  bad[24 + 4 * 10] = std::byte{0x03};  // element 0: code 3
  CHECK_THROWS_WITH_AS(dec(bad), doctest::Contains("element 0 has code 3"), dssync::malformed_payload);
  bad = w;
  bad.back() |= std::byte{0x80};  // 997 % 4 = 1: bits 2-7 of the last byte are padding
  CHECK_THROWS_WITH_AS(dec(bad), doctest::Contains("padding bits set"), dssync::malformed_payload);
  bad = w;
  const float minus = -1.0f;
  std::memcpy(bad.data() + 24, &minus, 4);
  CHECK_THROWS_WITH_AS(dec(bad), doctest::Contains("bucket 0 has scale -1"), dssync::malformed_payload);
  bad = w;
  bad[4] = std::byte{99};  // another bucket size: another length
  CHECK_THROWS_WITH_AS(dec(bad), doctest::Contains("in buckets of 99 take"), dssync::malformed_payload);
  CHECK(std::all_of(out.begin(), out.end(), [](float x) { return x == 3.0f; }));
  std::vector<std::byte> sink;
  cd::terngrad<float> zero(0), neg(16, -1.0);
  CHECK_THROWS_WITH_AS(zero.encode(v, sink), doctest::Contains("bucket 0 is not in"), dssync::invalid_argument);
  CHECK_THROWS_WITH_AS(neg.encode(v, sink), doctest::Contains("clip -1"), dssync::invalid_argument);
}

TEST_CASE("threshold: +-tau where |g + r| >= tau, the residual keeps the rest, malformed payloads") {
  for (std::size_t n : {0u, 1u, 9u, 1000u}) {
    INFO(n << " elements");
    cd::threshold<float> c(0.5f);
    std::vector<double> r(n, 0.0), sent(n, 0.0), total(n, 0.0);
    for (int t = 0; t < 20; ++t) {
      const auto g = gaussian(n, 90 + static_cast<unsigned>(t), 0.3f);
      const auto w = encode(c, g);
      CHECK(w.size() <= c.max_encoded_bytes(n));
      std::vector<float> y(n, 7.0f);
      c.decode(w, y);
      for (std::size_t i = 0; i < n; ++i) {
        // Oracle in float, as the codec: r += g; send +-tau where |r| >= tau.
        float ri = static_cast<float>(r[i]) + g[i];
        float want = 0;
        if (std::fabs(ri) >= 0.5f) {
          want = ri < 0 ? -0.5f : 0.5f;
          ri -= want;
        }
        r[i] = ri;
        CHECK(y[i] == want);
        CHECK(c.state.residual[i] == ri);
        sent[i] += y[i];
        total[i] += g[i];
      }
    }
    // Nothing is lost: what was sent plus the residual is the sum of the gradients.
    for (std::size_t i = 0; i < n; ++i) CHECK(sent[i] + c.state.residual[i] == doctest::Approx(total[i]).epsilon(1e-5));
  }
  // Malformed payloads.
  cd::threshold<float> c(0.1f);
  const auto x = gaussian(1000, 95);
  const auto w = encode(c, x);
  std::vector<float> y(1000, 3.0f);
  auto dec = [&](std::span<const std::byte> p) { c.decode(p, y); };
  check_truncations(w, dec);
  check_header_fields(w, dec);
  CHECK(std::all_of(y.begin(), y.end(), [](float v) { return v == 3.0f; }));
  auto make = [&](std::uint32_t m, float tau, std::vector<std::uint8_t> body) {
    std::vector<std::byte> p;
    cd::write_header(p, {cd::codec_id::threshold, 1, m, 10, 4 + body.size()});
    cd::write_value(p, tau);
    for (auto b : body) p.push_back(static_cast<std::byte>(b));
    return p;
  };
  std::vector<float> ten(10);
  auto dec10 = [&](const std::vector<std::byte>& p) { c.decode(p, ten); };
  dec10(make(2, 0.25f, {1, 2, 0b10}));  // indices 1 and 4, the second negative
  CHECK(ten[1] == 0.25f);
  CHECK(ten[4] == -0.25f);
  CHECK_THROWS_WITH_AS(dec10(make(11, 0.25f, {})), doctest::Contains("11 entries in the header for 10 elements"),
                       dssync::malformed_payload);
  CHECK_THROWS_WITH_AS(dec10(make(1, -0.25f, {0, 0})), doctest::Contains("tau -0.25"), dssync::malformed_payload);
  CHECK_THROWS_WITH_AS(dec10(make(1, std::numeric_limits<float>::infinity(), {0, 0})), doctest::Contains("tau inf"),
                       dssync::malformed_payload);
  CHECK_THROWS_WITH_AS(dec10(make(1, 0.25f, {10, 0})), doctest::Contains("beyond the last element 9"),
                       dssync::malformed_payload);
  CHECK_THROWS_WITH_AS(dec10(make(1, 0.25f, {0, 0b10})), doctest::Contains("padding bits set"),
                       dssync::malformed_payload);
  CHECK_THROWS_WITH_AS(dec10(make(3, 0.25f, {0, 0})), doctest::Contains("3 entries need at least 3 index bytes, 2 are left"),
                       dssync::malformed_payload);
  std::vector<std::byte> sink;
  cd::threshold<float> zero(0.0f), inf(std::numeric_limits<float>::infinity());
  CHECK_THROWS_WITH_AS(zero.encode(x, sink), doctest::Contains("tau 0"), dssync::invalid_argument);
  CHECK_THROWS_WITH_AS(inf.encode(x, sink), doctest::Contains("tau inf"), dssync::invalid_argument);
}


TEST_CASE("randomk: k distinct indices from the key, uniform, shared by a shared seed, error feedback, malformed") {
  for (std::size_t n : {0u, 1u, 10u, 1000u})
    for (double ratio : {0.01, 0.3, 1.0}) {
      INFO(n << " elements, ratio " << ratio);
      cd::randomk<float> c(ratio), twin(ratio);
      c.rng.seed = twin.rng.seed = 77;
      const std::size_t k = c.k_of(n);
      std::vector<double> sent(n, 0.0), total(n, 0.0);
      std::vector<int> picked(n, 0);
      const int steps = 200;
      for (int t = 0; t < steps; ++t) {
        const auto g = gaussian(n, 100 + static_cast<unsigned>(t));
        const auto w = encode(c, g);
        CHECK(w.size() == c.max_encoded_bytes(n));
        CHECK(encode(twin, gaussian(n, 999)).size() == w.size());  // another rank, another gradient...
        std::vector<float> y(n, 5.0f);
        c.decode(w, y);
        std::size_t nonzero_slots = 0;
        for (std::size_t i = 0; i < n; ++i) {
          // ...the same indices: the residual is zero exactly where this step sent (a zero value aside).
          const bool sent_here = c.state.residual[i] == 0.0f;
          CHECK((twin.state.residual[i] == 0.0f) == sent_here);
          if (sent_here) ++picked[i], ++nonzero_slots;
          sent[i] += y[i];
          total[i] += g[i];
        }
        CHECK(nonzero_slots == k);
      }
      for (std::size_t i = 0; i < n; ++i)
        CHECK(sent[i] + c.state.residual[i] == doctest::Approx(total[i]).epsilon(1e-4).scale(1.0));
      // Each index is picked with probability k / n: within five standard deviations over the steps.
      if (n > 0) {
        const double p = static_cast<double>(k) / static_cast<double>(n);
        for (std::size_t i = 0; i < n; ++i)
          CHECK(std::fabs(picked[i] - steps * p) <= 5 * std::sqrt(steps * p * (1 - p)) + 1e-9);
      }
    }
  // The sampler keeps exactly k, increasing.
  std::vector<std::uint32_t> idx;
  for (std::size_t k : {0u, 1u, 7u, 100u}) {
    cd::randomk<float>::indices(12345, k, 100, idx);
    CHECK(idx.size() == k);
    CHECK(std::is_sorted(idx.begin(), idx.end()));
    CHECK(std::adjacent_find(idx.begin(), idx.end()) == idx.end());
  }
  // Every set is equally likely: the 10 sets of 2 out of 5 over 20,000 keys, each within five standard
  // deviations of 2,000.
  std::map<std::pair<std::uint32_t, std::uint32_t>, int> sets;
  for (std::uint64_t key = 0; key < 20000; ++key) {
    cd::randomk<float>::indices(cd::mix(key, 3), 2, 5, idx);
    REQUIRE(idx.size() == 2);
    ++sets[{idx[0], idx[1]}];
  }
  CHECK(sets.size() == 10);
  for (const auto& [set, count] : sets) CHECK(std::abs(count - 2000) <= 5 * std::sqrt(20000 * 0.1 * 0.9));
  // Checkpoint: the residual and the stream give bitwise the same next step.
  cd::randomk<float> a(0.1), b(0.1);
  const auto x = gaussian(500, 110);
  (void)encode(a, x);
  std::vector<std::byte> s1, s2;
  a.state.save(s1);
  a.rng.save(s2);
  b.state.load(s1);
  b.rng.load(s2);
  CHECK(encode(a, x) == encode(b, x));
  // Malformed payloads.
  const auto w = encode(a, x);
  std::vector<float> y(500, 3.0f);
  auto dec = [&](std::span<const std::byte> p) { a.decode(p, y); };
  check_truncations(w, dec);
  check_header_fields(w, dec);
  auto bad = w;
  bad[4] = std::byte{49};  // k = 49: another length
  CHECK_THROWS_WITH_AS(dec(bad), doctest::Contains("49 entries take 204 bytes, the payload has 208"),
                       dssync::malformed_payload);
  std::vector<float> few(10);
  std::vector<std::byte> over;
  cd::write_header(over, {cd::codec_id::randomk, 1, 11, 10, 8 + 44});
  over.resize(over.size() + 52);
  CHECK_THROWS_WITH_AS(a.decode(over, few), doctest::Contains("11 entries in the header for 10 elements"),
                       dssync::malformed_payload);
  CHECK(std::all_of(y.begin(), y.end(), [](float v) { return v == 3.0f; }));
  std::vector<std::byte> sink;
  cd::randomk<float> zero(0.0);
  CHECK_THROWS_WITH_AS(zero.encode(x, sink), doctest::Contains("ratio 0.000000 is not in (0, 1]"),
                       dssync::invalid_argument);
}


TEST_SUITE_END();

TEST_CASE("codecs: regressions found by the fuzz targets (fuzz/)") {
  SUBCASE("onebit checks every bucket's padding before it writes: a bad second bucket leaves out untouched") {
    cd::onebit<float> c(5);
    auto w = encode(c, gaussian(10, 3));
    w[cd::header_bytes + 2 * (8 + 1) - 1] |= std::byte{0x80};  // a padding bit of the second bucket
    std::vector<float> y(10, 4.0f);
    CHECK_THROWS_WITH_AS(c.decode(w, y), doctest::Contains("padding bits set in the bucket at element 5"),
                         dssync::malformed_payload);
    CHECK_THROWS_AS(c.decode_add(w, y), dssync::malformed_payload);
    CHECK(std::all_of(y.begin(), y.end(), [](float v) { return v == 4.0f; }));
  }
  SUBCASE("terngrad<double>: a bucket beyond float's range is clipped to the largest float, and decodes") {
    cd::terngrad<double> c(4, 0.0);
    const std::vector<double> x{1e300, -1e300, 0.0, 1e300, 1.0, 2.0, 3.0, 4.0};
    const auto w = encode(c, x);
    std::vector<double> y(8);
    c.decode(w, y);
    for (std::size_t i = 0; i < 4; ++i)
      CHECK((y[i] == 0.0 || std::fabs(y[i]) == static_cast<double>(std::numeric_limits<float>::max())));
    CHECK(y[2] == 0.0);
  }
  SUBCASE("qsgd: a bucket with a NaN or an infinity is sent with every level 0 (one bit each)") {
    for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
      cd::qsgd<float> c(16, 8);
      auto x = gaussian(16, 5);
      x[3] = bad;
      const auto w = encode(c, x);
      // The same tensor with a zero first bucket (norm 0: levels 0) codes the same bits; only the norm differs.
      auto zero = x;
      std::fill(zero.begin(), zero.begin() + 8, 0.0f);
      cd::qsgd<float> ref(16, 8);
      auto wz = encode(ref, zero);
      REQUIRE(wz.size() == w.size());
      std::copy(w.begin() + cd::header_bytes + 4, w.begin() + cd::header_bytes + 8, wz.begin() + cd::header_bytes + 4);
      CHECK(wz == w);
      std::vector<float> y(16);
      c.decode(w, y);
      for (std::size_t i = 0; i < 8; ++i) CHECK(y[i] == 0.0f);  // level 0 decodes to 0, whatever the norm
      for (std::size_t i = 8; i < 16; ++i) CHECK(std::isfinite(y[i]));
    }
  }
  SUBCASE("a saved random state with a parameter is refused (it would not save back to the same bytes)") {
    std::vector<std::byte> w;
    cd::randomk_state{7, 8}.save(w);
    w[5] = std::byte{0x10};
    cd::randomk_state s{1, 2};
    CHECK_THROWS_WITH_AS(s.load(w), doctest::Contains("parameter 4096 in its header, expected 0"),
                         dssync::malformed_payload);
    CHECK((s.seed == 1 && s.step == 2));
  }
}

namespace {

/// DGC as the paper writes it, on whole vectors with a full sort: the oracle of codecs::dgc.
struct dgc_oracle {
  double ratio, m, clip;
  std::uint64_t warmup;
  std::uint64_t step = 0;
  std::vector<float> u, v;

  std::vector<float> step_once(const std::vector<float>& g) {
    const std::size_t n = g.size();
    if (u.empty()) u.assign(n, 0.0f), v.assign(n, 0.0f);
    float scale = 1.0f;
    if (clip > 0) {
      double sq = 0;
      for (float x : g) sq += static_cast<double>(x) * static_cast<double>(x);
      if (std::sqrt(sq) > clip) scale = static_cast<float>(clip / std::sqrt(sq));
    }
    for (std::size_t i = 0; i < n; ++i) u[i] = static_cast<float>(m) * u[i] + scale * g[i];
    for (std::size_t i = 0; i < n; ++i) v[i] += u[i];
    double density = ratio;
    if (step < warmup && ratio < 0.25)
      density = std::max(ratio, 0.25 * std::pow(ratio / 0.25, static_cast<double>(step) / static_cast<double>(warmup)));
    const std::size_t k = n == 0 ? 0 : std::clamp<std::size_t>(static_cast<std::size_t>(std::ceil(density * static_cast<double>(n))), 1, n);
    std::vector<std::size_t> order(n);
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return std::fabs(v[a]) > std::fabs(v[b]); });
    std::vector<float> sent(n, 0.0f);
    for (std::size_t j = 0; j < k; ++j) {
      const std::size_t i = order[j];
      sent[i] = v[i];
      v[i] = 0.0f;  // the accumulation restarts where sent...
      u[i] = 0.0f;  // ...and so does the momentum (momentum factor masking)
    }
    ++step;
    return sent;
  }
};

}  // namespace

TEST_CASE("dgc: momentum correction, clipping, masking and warm-up, bitwise as the paper's algorithm") {
  for (std::size_t n : {0u, 1u, 7u, 100u, 3000u})
    for (double clip : {0.0, 5.0})
      for (std::uint64_t warmup : {0u, 6u}) {
        INFO(n << " elements, clip " << clip << ", warm-up " << warmup);
        cd::dgc<float> c(0.01, 0.9, clip, warmup);
        dgc_oracle o{0.01, 0.9, clip, warmup, 0, {}, {}};
        for (int t = 0; t < 12; ++t) {
          const auto g = gaussian(n, 200 + static_cast<unsigned>(t));
          const auto w = encode(c, g);
          CHECK(w.size() <= c.max_encoded_bytes(n));
          std::vector<float> y(n, 9.0f);
          c.decode(w, y);
          const auto want = o.step_once(g);
          CHECK(y == want);
          CHECK(c.state.momentum == o.u);
          CHECK(c.state.accumulated == o.v);
          // The payload is a topk payload of the step's density.
          std::size_t sent = 0;
          for (float x : y) sent += x != 0.0f;
          if (n > 0) CHECK(sent <= static_cast<std::size_t>(std::ceil(c.density(c.state.step - 1) * n)));
        }
        CHECK(c.state.step == 12);
      }
  // The warm-up: 25 % at step 0, falling geometrically, the final density from step warmup_steps on.
  cd::dgc<float> w(0.001, 0.9, 0, 4);
  CHECK(w.density(0) == doctest::Approx(0.25));
  CHECK(w.density(2) == doctest::Approx(std::sqrt(0.25 * 0.001)));
  CHECK(w.density(4) == 0.001);
  CHECK(w.density(100) == 0.001);
  for (std::uint64_t t = 0; t < 4; ++t) CHECK(w.density(t + 1) < w.density(t));
  // Clipping bounds what one step adds: with m = 0 and density 1, the payload is the clipped gradient.
  cd::dgc<float> clipped(1.0, 0.0, 1.0);
  const auto big = gaussian(1000, 3, 10.0f);
  const auto wb = encode(clipped, big);
  std::vector<float> y(1000);
  clipped.decode(wb, y);
  double sq = 0;
  for (float x : y) sq += static_cast<double>(x) * x;
  CHECK(std::sqrt(sq) == doctest::Approx(1.0).epsilon(1e-5));
}

TEST_CASE("dgc: checkpointed state gives bitwise the same next step; bad states, parameters and payloads") {
  cd::dgc<float> a(0.05, 0.9, 0, 3), b(0.05, 0.9, 0, 3);
  const auto x = gaussian(400, 7);
  (void)encode(a, x);
  (void)encode(a, gaussian(400, 8));
  std::vector<std::byte> saved;
  a.state.save(saved);
  b.state.load(saved);
  CHECK(b.state.step == 2);
  CHECK(encode(a, x) == encode(b, x));
  // Malformed states leave the state as it was.
  const auto before = b.state.momentum;
  auto load = [&](std::span<const std::byte> w) { b.state.load(w); };
  check_truncations(saved, load);
  auto bad = [&](std::size_t at, std::byte v, const char* says) {
    auto w = saved;
    w[at] = v;
    CHECK_THROWS_WITH_AS(load(w), doctest::Contains(says), dssync::malformed_payload);
  };
  bad(0, std::byte{0x45}, "bad magic");
  bad(2, std::byte{99}, "codec id 99");
  bad(3, std::byte{7}, "format version 7");
  bad(8, std::byte{0x91}, "401 elements in a state of 3208 bytes");
  bad(16, std::byte{0}, "header says a payload of");
  auto wrong_size = saved;
  wrong_size[4] = std::byte{8};  // elements of 8 bytes
  CHECK_THROWS_WITH_AS(load(wrong_size), doctest::Contains("elements of 8 bytes, this codec's are 4"), dssync::malformed_payload);
  CHECK(b.state.momentum == before);
  cd::dgc<double> d;
  CHECK_THROWS_WITH_AS(d.state.load(saved), doctest::Contains("elements of 4 bytes, this codec's are 8"),
                       dssync::malformed_payload);
  // Parameters out of range are named.
  std::vector<std::byte> sink;
  CHECK_THROWS_WITH_AS((cd::dgc<float>(0.0).encode(x, sink)), doctest::Contains("ratio 0.000000 is not in (0, 1]"),
                       dssync::invalid_argument);
  CHECK_THROWS_WITH_AS((cd::dgc<float>(0.01, 1.0).encode(x, sink)), doctest::Contains("momentum 1.000000 is not in [0, 1)"),
                       dssync::invalid_argument);
  CHECK_THROWS_WITH_AS((cd::dgc<float>(0.01, 0.9, -1.0).encode(x, sink)),
                       doctest::Contains("clip_norm -1.000000 is not a finite number >= 0"), dssync::invalid_argument);
  CHECK_THROWS_WITH_AS(a.encode(std::span<const float>(x.data(), 10), sink),
                       doctest::Contains("the tensor has 10 elements, its state 400"), dssync::invalid_argument);
  CHECK(sink.empty());
  // Its payload is topk's, validated by topk's decoder.
  const auto w = encode(a, x);
  std::vector<float> y(400);
  cd::topk<float> reader;
  std::vector<float> z(400);
  a.decode(w, y);
  reader.decode(w, z);
  CHECK(y == z);
  check_truncations(w, [&](std::span<const std::byte> p) { a.decode(p, y); });
}

namespace {

/// (P^ Q^T)[i] for the row-major rows x cols matrix, in double: the oracle of powersgd's products.
std::vector<double> low_rank(const std::vector<float>& p, const std::vector<float>& q, std::size_t rows,
                             std::size_t cols, std::size_t r, std::size_t n) {
  std::vector<double> out(n, 0.0);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t k = 0; k < r; ++k)
      out[i] += static_cast<double>(p[k * rows + i / cols]) * static_cast<double>(q[k * cols + i % cols]);
  return out;
}

}  // namespace

TEST_CASE("powersgd: two allreduce rounds give every worker bitwise the same update; error feedback loses nothing") {
  for (std::size_t workers : {1u, 2u, 3u, 5u})
    for (std::size_t n : {0u, 1u, 7u, 100u, 1000u})
      for (std::size_t rank : {1u, 4u}) {
        INFO(workers << " workers, " << n << " elements, rank " << rank);
        std::vector<cd::powersgd<float>> c(workers, cd::powersgd<float>(rank));
        for (auto& x : c) x.state.seed = 11;
        const auto s = c[0].shape_of(n);
        CHECK(s.rows * s.cols >= n);
        CHECK(s.rank == (n == 0 ? 0 : std::min({rank, s.rows, s.cols})));
        for (int step = 0; step < 3; ++step) {
          std::vector<std::vector<float>> g(workers), before(workers), p(workers), q(workers), out(workers);
          std::vector<float> p_sum(s.p_size(), 0.0f), q_sum(s.q_size(), 0.0f);
          for (std::size_t w = 0; w < workers; ++w) {
            g[w] = gaussian(n, static_cast<unsigned>(100 * w + 10 * step + 1));
            before[w] = c[w].state.residual;
            p[w].resize(s.p_size());
            c[w].factor_p(g[w], p[w]);
            for (std::size_t i = 0; i < p_sum.size(); ++i) p_sum[i] += p[w][i];  // the allreduce of P
          }
          std::vector<std::vector<float>> p_hat(workers, p_sum);
          for (std::size_t w = 0; w < workers; ++w) {
            q[w].resize(s.q_size());
            c[w].factor_q(p_hat[w], q[w]);
            for (std::size_t i = 0; i < q_sum.size(); ++i) q_sum[i] += q[w][i];  // the allreduce of Q
          }
          for (std::size_t w = 0; w < workers; ++w) {
            CHECK(p_hat[w] == p_hat[0]);
            out[w].assign(n, 3.0f);
            c[w].finish(p_hat[w], q_sum, workers, out[w]);
            CHECK(out[w] == out[0]);  // bitwise the same update everywhere
          }
          // P^ is orthonormal (a Gaussian P has full column rank).
          for (std::size_t a = 0; a < s.rank; ++a)
            for (std::size_t b = 0; b < s.rank; ++b) {
              double dot = 0;
              for (std::size_t i = 0; i < s.rows; ++i)
                dot += static_cast<double>(p_hat[0][a * s.rows + i]) * p_hat[0][b * s.rows + i];
              CHECK(dot == doctest::Approx(a == b ? 1.0 : 0.0).scale(1.0).epsilon(1e-5));
            }
          // The update is the mean of the workers' rank-r approximations; each worker's M is its
          // approximation plus its new residual (nothing lost); the padding of the residual is 0.
          std::vector<double> mean(n, 0.0);
          for (std::size_t w = 0; w < workers; ++w) {
            const auto mine = low_rank(p_hat[0], q[w], s.rows, s.cols, s.rank, n);
            for (std::size_t i = 0; i < n; ++i) {
              mean[i] += mine[i] / static_cast<double>(workers);
              const double m = (before[w].empty() ? 0.0 : before[w][i]) + g[w][i];
              CHECK(mine[i] + c[w].state.residual[i] == doctest::Approx(m).scale(1.0).epsilon(1e-4));
            }
            for (std::size_t i = n; i < c[w].state.residual.size(); ++i) CHECK(c[w].state.residual[i] == 0.0f);
          }
          for (std::size_t i = 0; i < n; ++i) CHECK(out[0][i] == doctest::Approx(mean[i]).scale(1.0).epsilon(1e-4));
        }
      }
}

TEST_CASE("powersgd: full rank is exact, a rank-1 gradient is found in one step, the codec form, the state") {
  // Full rank (3 x 4, rank 3): the update is the gradient and the residual 0.
  cd::powersgd<float> full(3, 3);
  const auto g = gaussian(12, 4);
  const auto wf = encode(full, g);
  std::vector<float> y(12);
  full.decode(wf, y);
  for (std::size_t i = 0; i < 12; ++i) {
    CHECK(y[i] == doctest::Approx(g[i]).scale(1.0).epsilon(1e-5));
    CHECK(std::fabs(full.state.residual[i]) < 1e-5f);
  }
  // A rank-1 gradient a b^T (20 x 30): P = M Q is along a, so rank 1 recovers it at once.
  const auto a = gaussian(20, 5), b = gaussian(30, 6);
  std::vector<float> r1(600);
  for (std::size_t i = 0; i < 600; ++i) r1[i] = a[i / 30] * b[i % 30];
  cd::powersgd<float> one(1, 20);
  const auto w1 = encode(one, r1);
  CHECK(w1.size() == cd::header_bytes + 8 + (20 + 30) * 4);
  CHECK(static_cast<double>(600 * 4) / static_cast<double>(w1.size()) > 10);
  std::vector<float> y1(600);
  one.decode(w1, y1);
  for (std::size_t i = 0; i < 600; ++i) CHECK(y1[i] == doctest::Approx(r1[i]).scale(1.0).epsilon(1e-4));
  // The codec form equals the rounds with one worker, bitwise; decode_add adds.
  cd::powersgd<float> e(2), r(2);
  e.state.seed = r.state.seed = 9;
  const auto x = gaussian(500, 7);
  const auto we = encode(e, x);
  const auto s = r.shape_of(500);
  std::vector<float> p(s.p_size()), q(s.q_size()), upd(500);
  r.factor_p(x, p);
  r.factor_q(p, q);
  r.finish(p, q, 1, upd);
  std::vector<float> dec(500);
  e.decode(we, dec);
  CHECK(dec == upd);
  CHECK(e.state.residual == r.state.residual);
  std::vector<float> twice = dec;
  e.decode_add(we, twice);
  for (std::size_t i = 0; i < 500; ++i) CHECK(twice[i] == dec[i] + dec[i]);
  // The same seed draws the same first Q, another seed another.
  cd::powersgd<float> s1(2), s2(2), s3(2);
  s1.state.seed = s2.state.seed = 1;
  s3.state.seed = 2;
  const auto w_s1 = encode(s1, x);
  CHECK(encode(s2, x) == w_s1);
  CHECK(encode(s3, x) != w_s1);
  // Checkpoint: bitwise the same next step; malformed states are refused and change nothing.
  std::vector<std::byte> saved;
  e.state.save(saved);
  cd::powersgd<float> back(2);
  back.state.load(saved);
  CHECK(encode(back, x) == encode(e, x));
  const auto keep = back.state.residual;
  auto load = [&](std::span<const std::byte> w) { back.state.load(w); };
  check_truncations(saved, load);
  auto bad = saved;
  bad[cd::header_bytes + 16] = std::byte{0xff};  // the length of Q
  CHECK_THROWS_WITH_AS(load(bad), doctest::Contains("and a Q of"), dssync::malformed_payload);
  CHECK(back.state.residual == keep);
  // Malformed payloads leave the output untouched.
  std::vector<float> out(500, 2.0f);
  auto dec500 = [&](std::span<const std::byte> w) { e.decode(w, out); };
  check_truncations(we, dec500);
  check_header_fields(we, dec500);
  auto shape = we;
  shape[cd::header_bytes] = std::byte{0};  // rows 23 -> 0
  shape[cd::header_bytes + 1] = std::byte{0};
  CHECK_THROWS_WITH_AS(dec500(shape), doctest::Contains("does not hold 500 elements"), dssync::malformed_payload);
  auto rank = we;
  rank[4] = std::byte{3};  // rank 3 with the payload of rank 2
  CHECK_THROWS_WITH_AS(dec500(rank), doctest::Contains("P and Q take"), dssync::malformed_payload);
  CHECK(std::all_of(out.begin(), out.end(), [](float v) { return v == 2.0f; }));
  // Misuse is named.
  cd::powersgd<float> m(2);
  std::vector<float> wrong(3);
  CHECK_THROWS_WITH_AS(m.factor_q(wrong, wrong), doctest::Contains("factor_q before factor_p"), dssync::invalid_argument);
  CHECK_THROWS_WITH_AS(m.factor_p(x, wrong), doctest::Contains("P has 3 elements, expected 46"), dssync::invalid_argument);
  CHECK_THROWS_WITH_AS((void)(cd::powersgd<float>(0).shape_of(10)), doctest::Contains("rank 0"), dssync::invalid_argument);
  CHECK_THROWS_WITH_AS((void)(cd::powersgd<float>(1, 11).shape_of(10)), doctest::Contains("11 rows for a tensor of 10"),
                       dssync::invalid_argument);
  std::vector<std::byte> sink;
  CHECK_THROWS_WITH_AS(e.encode(std::span<const float>(x.data(), 100), sink), doctest::Contains("the tensor has 100 elements"),
                       dssync::invalid_argument);
  CHECK(sink.empty());
}
