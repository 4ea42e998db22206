// Compressed allreduce: `synchronize(comm, data, codec, op)` runs any codec inside the plan (an encode,
// an allgather of payloads of run-time length, and ordered decodes), on the in-process and simulated
// transports. Checked against a sequential oracle made of copies of every rank's codec (so bitwise,
// error feedback included, over several steps), bitwise identical on all ranks, for 1..8 ranks and
// sizes down to empty; a codec mismatch across ranks fails the agreement.

#include <doctest/doctest.h>

#include <Eigen/Core>  // codecs/half.hpp needs Eigen (this include tags the test for CMake)
#include <dssync/codecs/dgc.hpp>
#include <dssync/codecs/half.hpp>
#include <dssync/codecs/onebit.hpp>
#include <dssync/codecs/powersgd.hpp>
#include <dssync/codecs/qsgd.hpp>
#include <dssync/codecs/randomk.hpp>
#include <dssync/codecs/terngrad.hpp>
#include <dssync/codecs/threshold.hpp>
#include <dssync/codecs/topk.hpp>
#include <dssync/sim.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "test_support.hpp"

namespace cd = dssync::codecs;
namespace topo = dssync::topology;
namespace tsim = dssync::transport::sim;
using dssync_test::contains;

namespace {

using dssync_test::gaussian;

/// The sequential oracle of `algorithms::encoded_ring` (an elementwise codec): rank p owns part p+1 of
/// `partition(count, n)`, which starts at rank p+1 and goes around the ring; each hop decodes the partial sum
/// and adds it to its own part (own + decoded, as decode-add does), then encodes the new partial sum;
/// the owner p encodes its final sum once and every rank ends with its decoding. One rank sends nothing.
template <class Codec>
std::vector<float> ring_oracle(const Codec& proto, const std::vector<std::vector<float>>& x) {
  const std::size_t n = x.size(), count = x[0].size();
  std::vector<float> out = x[0];
  if (n == 1) return out;
  Codec c = proto;
  dssync::codec_ref<Codec, float> hook(c);
  auto round_trip = [&](std::vector<float>& v, const std::vector<float>* add_to) {
    std::vector<std::byte> w(c.max_encoded_bytes(v.size()));
    w.resize(hook.encode(std::span<const float>(v), std::span<std::byte>(w)));
    if (add_to == nullptr) return hook.decode(w, std::span<float>(v));
    std::vector<float> mine = *add_to;
    hook.decode_add(w, std::span<float>(mine));
    v = mine;
  };
  auto parts = dssync::partition(count, n);
  std::rotate(parts.begin(), parts.begin() + 1, parts.end());
  for (std::size_t p = 0; p < n; ++p) {
    const std::size_t off = parts[p].offset, len = parts[p].length;
    if (len == 0) continue;
    auto slice = [&](std::size_t r) {
      return std::vector<float>(x[r].begin() + static_cast<long>(off), x[r].begin() + static_cast<long>(off + len));
    };
    std::vector<float> acc = slice((p + 1) % n);
    for (std::size_t j = 2; j <= n; ++j) {
      const auto mine = slice((p + j) % n);
      round_trip(acc, &mine);
    }
    round_trip(acc, nullptr);
    std::copy(acc.begin(), acc.end(), out.begin() + static_cast<long>(off));
  }
  return out;
}

/// Runs `steps` compressed allreduces of `count` floats on `n` ranks, each rank starting from a copy
/// of `proto`, and checks every rank, bitwise, against the sequential oracle: copies of the same codecs
/// encoding the same gradients, decoded in rank order (the ring's order for an elementwise codec).
template <class Codec, class Op = dssync::ops::sum>
void check_codec(const Codec& proto, int n, std::size_t count, int steps, bool on_sim = false) {
  CAPTURE(Codec::name);
  CAPTURE(n);
  CAPTURE(count);
  auto grad = [&](int r, int t) { return gaussian(count, static_cast<unsigned>(1000 * t + r + 1)); };
  // The oracle.
  std::vector<Codec> mirror(static_cast<std::size_t>(n), proto);
  std::vector<std::vector<float>> want(static_cast<std::size_t>(steps));
  for (int t = 0; t < steps; ++t) {
    std::vector<float> out(count);
    if constexpr (dssync::is_elementwise_codec<Codec>) {
      std::vector<std::vector<float>> x;
      for (int r = 0; r < n; ++r) x.push_back(grad(r, t));
      out = ring_oracle(proto, x);
      if constexpr (std::is_same_v<Op, dssync::ops::average>) Op{}.finalize(std::span<float>(out), n);
      want[static_cast<std::size_t>(t)] = out;
      continue;
    }
    for (int r = 0; r < n; ++r) {
      std::vector<std::byte> w;
      auto g = grad(r, t);
      mirror[static_cast<std::size_t>(r)].encode(std::span<const float>(g), w);
      dssync::codec_ref<Codec, float> hook(mirror[static_cast<std::size_t>(r)]);
      if (r == 0) hook.decode(w, out);
      else hook.decode_add(w, out);
    }
    if constexpr (std::is_same_v<Op, dssync::ops::average>) Op{}.finalize(std::span<float>(out), n);
    want[static_cast<std::size_t>(t)] = out;
  }
  std::vector<std::vector<std::vector<float>>> got(static_cast<std::size_t>(steps),
                                                   std::vector<std::vector<float>>(static_cast<std::size_t>(n)));
  auto body = [&](auto& comm) {
    Codec codec = proto;
    for (int t = 0; t < steps; ++t) {
      auto g = grad(comm.rank(), t);
      dssync::synchronize(comm, g, codec, Op{}, dssync_test::test_options());
      got[static_cast<std::size_t>(t)][static_cast<std::size_t>(comm.rank())] = g;
    }
  };
  std::vector<std::exception_ptr> errs;
  if (on_sim) {
    tsim::world w{topo::star(n)};
    errs = w.run_collect(body);
  } else {
    errs = dssync_test::run_world(n, body);
  }
  REQUIRE_MESSAGE(dssync_test::describe_errors(errs).empty(), dssync_test::describe_errors(errs));
  for (int t = 0; t < steps; ++t)
    for (int r = 0; r < n; ++r) {
      CAPTURE(t);
      CAPTURE(r);
      const auto& a = got[static_cast<std::size_t>(t)][static_cast<std::size_t>(r)];
      const auto& b = want[static_cast<std::size_t>(t)];
      REQUIRE(a.size() == b.size());
      CHECK((a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0));
    }
}

template <class Codec>
void check_sizes(const Codec& proto) {
  for (int n : {1, 2, 3, 5, 8})
    for (std::size_t count : {std::size_t{0}, std::size_t{1}, std::size_t{257}, dssync_test::scaled(5000, 300)})
      check_codec(proto, n, count, 3);
}

}  // namespace

TEST_SUITE_BEGIN("codecs");

TEST_CASE("compressed allreduce: every codec, 1..8 ranks, empty to 5000 elements, 3 steps, bitwise the oracle") {
  SUBCASE("identity") { check_sizes(dssync::codecs::identity<float>{}); }
  SUBCASE("fp16") { check_sizes(cd::fp16<float>{}); }
  SUBCASE("bf16") { check_sizes(cd::bf16<float>{}); }
  SUBCASE("onebit") { check_sizes(cd::onebit<float>(64)); }
  SUBCASE("qsgd") { check_sizes(cd::qsgd<float>(16, 128)); }
  SUBCASE("terngrad") { check_sizes(cd::terngrad<float>(128)); }
  SUBCASE("threshold") { check_sizes(cd::threshold<float>(0.5f)); }
  SUBCASE("topk") { check_sizes(cd::topk<float>(0.05)); }
  SUBCASE("randomk") { check_sizes(cd::randomk<float>(0.05)); }
  SUBCASE("dgc") { check_sizes(cd::dgc<float>(0.05)); }
  SUBCASE("powersgd") { check_sizes(cd::powersgd<float>(2)); }
}

TEST_CASE("encoded ring (elementwise codecs): a true reduce-scatter and allgather, proven, whose traffic does not grow with N") {
  namespace algo = dssync::algorithms;
  for (int n : {1, 2, 3, 5, 8, 16})
    for (std::size_t count : {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{16}, std::size_t{1000}}) {
      CAPTURE(n);
      CAPTURE(count);
      const std::size_t slot = cd::fp16<float>{}.max_encoded_bytes(algo::encoded_ring::largest_part(count, n));
      const auto whole = algo::encoded_ring::plan(n, count, slot, "fp16");
      const auto v = dssync::verify(whole);
      REQUIRE_MESSAGE(v.ok, v.message);
      for (int r = 0; r < n; ++r) {  // a rank's part is exactly its share of the whole plan
        const auto mine = algo::encoded_ring::plan(n, count, slot, "fp16", 0, r);
        CHECK(mine.ranks[static_cast<std::size_t>(r)].step_count() == whole.ranks[static_cast<std::size_t>(r)].step_count());
      }
      // Each non-empty part travels 2(n-1) hops (n-1 partial sums, then its owner's payload n-1 times);
      // an empty part travels none.
      const std::size_t nonempty = std::min<std::size_t>(count, static_cast<std::size_t>(n));
      CHECK(v.bytes_bound == nonempty * 2 * static_cast<std::size_t>(n - 1) * slot);
    }
  // Per-rank traffic at 16,000 floats: flat in N for the ring, linear in N for the allgather.
  const std::size_t count = 16000;
  for (int n : {2, 4, 8, 16}) {
    CAPTURE(n);
    const std::size_t slot = cd::fp16<float>{}.max_encoded_bytes(algo::encoded_ring::largest_part(count, n));
    const double per_rank = static_cast<double>(dssync::verify(algo::encoded_ring::plan(n, count, slot, "fp16")).bytes_bound) / n;
    const double tensor = static_cast<double>(cd::fp16<float>{}.max_encoded_bytes(count));
    CHECK(per_rank <= 2.0 * (n - 1) / n * tensor + 2.0 * (n - 1) * 24);
    const double gather =
        static_cast<double>(dssync::verify(algo::encoded_allgather::plan(n, count, static_cast<std::size_t>(tensor), "fp16")).bytes_bound) / n;
    CHECK(gather == doctest::Approx((n - 1) * tensor));
  }
}

TEST_CASE("encoded ring: identity gives bitwise the plain ring's sum; fp16 sums small integers exactly; average; sim") {
  for (int n : {2, 3, 5}) {
    CAPTURE(n);
    const std::size_t count = 1001;
    std::vector<std::vector<float>> ring_out(static_cast<std::size_t>(n)), codec_out(static_cast<std::size_t>(n)),
        int_out(static_cast<std::size_t>(n));
    const auto errs = dssync_test::run_world(n, [&](auto& comm) {
      const auto r = static_cast<std::size_t>(comm.rank());
      auto a = gaussian(count, static_cast<unsigned>(comm.rank() + 3)), b = a;
      dssync::synchronize<dssync::algorithms::ring>(comm, topo::full_mesh(n), a, dssync::ops::sum{},
                                                    dssync_test::test_options());
      dssync::codecs::identity<float> id;
      dssync::synchronize(comm, b, id, dssync::ops::sum{}, dssync_test::test_options());
      ring_out[r] = a;
      codec_out[r] = b;
      std::vector<float> ints(count);
      for (std::size_t i = 0; i < count; ++i) ints[i] = static_cast<float>((i * 7 + r * 13) % 64) - 32.0f;
      cd::fp16<float> half;
      dssync::synchronize(comm, ints, half, dssync::ops::sum{}, dssync_test::test_options());
      int_out[r] = ints;
    });
    REQUIRE_MESSAGE(dssync_test::describe_errors(errs).empty(), dssync_test::describe_errors(errs));
    for (int r = 0; r < n; ++r) {
      const auto ur = static_cast<std::size_t>(r);
      CHECK(std::memcmp(ring_out[ur].data(), codec_out[ur].data(), count * sizeof(float)) == 0);
      std::size_t wrong = 0;
      for (std::size_t i = 0; i < count; ++i) {
        float want = 0;
        for (int q = 0; q < n; ++q) want += static_cast<float>((i * 7 + static_cast<std::size_t>(q) * 13) % 64) - 32.0f;
        wrong += int_out[ur][i] != want;
      }
      CHECK(wrong == 0);
    }
  }
  check_codec<cd::fp16<float>, dssync::ops::average>(cd::fp16<float>{}, 5, 1000, 1);
  check_codec<cd::bf16<float>, dssync::ops::average>(cd::bf16<float>{}, 3, 333, 1);
  check_codec(cd::fp16<float>{}, 4, 1000, 1, true);
  check_codec(cd::bf16<float>{}, 16, 1000, 1);
  check_codec(cd::fp16<float>{}, 16, 5, 1);
}

TEST_CASE("encoded ring: fp16 accumulates in float, within n roundings of the exact sum, bitwise equal on all ranks") {
  // 8 ranks of Gaussians: the n-1 partial sums and the final sum are each rounded to fp16 once (relative
  // error 2^-11, absolute 2^-24 below fp16's normal range) and added in float, so |error| <= n * (2^-11 *
  // sum |x| + 2^-24); every rank holds bitwise the same values.
  const int n = 8;
  const std::size_t count = 4096;
  std::vector<std::vector<float>> in(n), out(n);
  for (int r = 0; r < n; ++r) in[static_cast<std::size_t>(r)] = gaussian(count, static_cast<unsigned>(50 + r));
  const auto errs = dssync_test::run_world(n, [&](auto& comm) {
    auto g = in[static_cast<std::size_t>(comm.rank())];
    cd::fp16<float> half;
    dssync::synchronize(comm, g, half, dssync::ops::sum{}, dssync_test::test_options());
    out[static_cast<std::size_t>(comm.rank())] = g;
  });
  REQUIRE_MESSAGE(dssync_test::describe_errors(errs).empty(), dssync_test::describe_errors(errs));
  double worst = 0;
  for (std::size_t i = 0; i < count; ++i) {
    double exact = 0, magnitude = 0;
    for (int r = 0; r < n; ++r) {
      exact += in[static_cast<std::size_t>(r)][i];
      magnitude += std::abs(in[static_cast<std::size_t>(r)][i]);
    }
    const double bound = n * (std::ldexp(1.0, -11) * magnitude + std::ldexp(1.0, -24));
    const double err = std::abs(out[3][i] - exact);
    worst = std::max(worst, err / bound);
    for (int r = 1; r < n; ++r) REQUIRE(out[static_cast<std::size_t>(r)][i] == out[0][i]);  // bitwise equal ranks
  }
  CHECK(worst <= 1.0);
}

TEST_CASE("compressed allreduce: average divides the decoded sum; the simulated transport gives the same bits") {
  check_codec<cd::topk<float>, dssync::ops::average>(cd::topk<float>(0.1), 5, 1000, 2);
  check_codec<cd::onebit<float>, dssync::ops::average>(cd::onebit<float>(32), 3, 333, 2);
  check_codec(cd::topk<float>(0.1), 4, 1000, 2, true);
  check_codec(cd::qsgd<float>(8, 64), 3, 777, 2, true);
}

TEST_CASE("compressed allreduce: error feedback is applied once per call (the residual carries exactly what was not sent)") {
  // After one call with topk, every rank's residual is its gradient minus what it sent, and the sent
  // entries sum, over ranks, to the result.
  const int n = 3;
  const std::size_t count = 400;
  std::vector<std::vector<float>> residual(n), sent(n), result(n);
  const auto errs = dssync_test::run_world(n, [&](auto& comm) {
    cd::topk<float> codec(0.1);
    auto g = gaussian(count, static_cast<unsigned>(comm.rank() + 7));
    const auto g0 = g;
    dssync::synchronize(comm, g, codec, dssync::ops::sum{}, dssync_test::test_options());
    const auto r = static_cast<std::size_t>(comm.rank());
    residual[r] = codec.state.residual;
    sent[r] = g0;
    for (std::size_t i = 0; i < count; ++i) sent[r][i] -= residual[r][i];
    result[r] = g;
  });
  REQUIRE_MESSAGE(dssync_test::describe_errors(errs).empty(), dssync_test::describe_errors(errs));
  std::size_t nonzero = 0;
  for (std::size_t i = 0; i < count; ++i) {
    float sum = 0;
    for (int r = 0; r < n; ++r) {
      const float s = sent[static_cast<std::size_t>(r)][i];
      sum += s;
      nonzero += s != 0.0f ? 1 : 0;
    }
    CHECK(result[0][i] == doctest::Approx(sum).epsilon(1e-6));
  }
  CHECK(nonzero == static_cast<std::size_t>(n) * 40);  // k = 10 % of 400 per rank, sent once
}

TEST_CASE("compressed allreduce: ranks with different codecs or lengths fail with mismatch_error, never a hang") {
  SUBCASE("codecs") {
    // The failed call leaves each codec's state untouched: no encode runs before the agreement.
    std::vector<int> touched(2, -1);
    const auto errs = dssync_test::run_world(2, [&](auto& comm) {
      auto g = gaussian(100, 1);
      auto zero = [](const std::vector<float>& v) {
        return std::all_of(v.begin(), v.end(), [](float x) { return x == 0.0f; });
      };
      if (comm.rank() == 0) {
        cd::topk<float> c(0.1);
        try {
          dssync::synchronize(comm, g, c, dssync::ops::sum{}, dssync_test::test_options());
        } catch (...) {
          touched[0] = zero(c.state.residual) ? 0 : 1;
          throw;
        }
      } else {
        cd::onebit<float> c(32);
        try {
          dssync::synchronize(comm, g, c, dssync::ops::sum{}, dssync_test::test_options());
        } catch (...) {
          touched[1] = zero(c.state.residual) ? 0 : 1;
          throw;
        }
      }
    });
    CHECK(touched == std::vector<int>{0, 0});
    for (int r = 0; r < 2; ++r) {
      REQUIRE(errs[static_cast<std::size_t>(r)]);
      CHECK_THROWS_AS(std::rethrow_exception(errs[static_cast<std::size_t>(r)]), dssync::mismatch_error);
      CHECK(contains(dssync_test::what(errs[static_cast<std::size_t>(r)]), "encoded-allgather(topk)"));
    }
  }
  SUBCASE("lengths") {
    const auto errs = dssync_test::run_world(3, [&](auto& comm) {
      auto g = gaussian(comm.rank() == 1 ? 101 : 100, 1);
      cd::topk<float> c(0.1);
      dssync::synchronize(comm, g, c, dssync::ops::sum{}, dssync_test::test_options());
    });
    for (int r = 0; r < 3; ++r) {
      REQUIRE(errs[static_cast<std::size_t>(r)]);
      CHECK_THROWS_AS(std::rethrow_exception(errs[static_cast<std::size_t>(r)]), dssync::mismatch_error);
    }
  }
}

TEST_CASE("compressed allreduce through the communicator: a user's codec, named tensors whose state the session keeps, async") {
  const int n = 3;
  const std::size_t count = 600;
  auto grad = [&](int r, int t) { return gaussian(count, static_cast<unsigned>(1000 * t + r + 1)); };
  // Oracle over 3 steps (as check_codec).
  std::vector<cd::topk<float>> mirror(n, cd::topk<float>(0.05));
  std::vector<std::vector<float>> want(3);
  for (int t = 0; t < 3; ++t) {
    std::vector<float> out(count);
    for (int r = 0; r < n; ++r) {
      std::vector<std::byte> w;
      auto g = grad(r, t);
      mirror[static_cast<std::size_t>(r)].encode(std::span<const float>(g), w);
      if (r == 0) mirror[0].decode(w, std::span<float>(out));
      else mirror[static_cast<std::size_t>(r)].decode_add(w, std::span<float>(out));
    }
    want[static_cast<std::size_t>(t)] = out;
  }
  std::vector<int> bad(n, 0);
  const auto errs = dssync_test::run_world(n, [&](auto& t) {
    dssync::communicator comm(t, dssync_test::test_options());
    cd::topk<float> mine(0.05);
    for (int step = 0; step < 3; ++step) {
      auto a = grad(comm.rank(), step), b = a, c = a;
      comm.allreduce(std::span<float>(a), mine);                              // the caller's state
      comm.allreduce("layer0", std::span<float>(b), cd::topk<float>(0.05));  // the session's state
      cd::topk<float> for_async(0.05);
      for_async.state = comm.codec_state("layer1", cd::topk<float>(0.05)).state;
      auto req = comm.allreduce_async(std::span<float>(c), for_async);
      req.wait();
      comm.codec_state("layer1", cd::topk<float>(0.05)).state = for_async.state;
      const auto& w = want[static_cast<std::size_t>(step)];
      const auto r = static_cast<std::size_t>(comm.rank());
      bad[r] += a != w;
      bad[r] += b != w;
      bad[r] += c != w;
    }
    CHECK(comm.codec_states() == 2);
    CHECK_THROWS_WITH_AS(comm.codec_state("layer0", cd::onebit<float>()),
                         doctest::Contains("tensor \"layer0\" keeps the state of codec topk, not of onebit"),
                         dssync::invalid_argument);
  });
  REQUIRE_MESSAGE(dssync_test::describe_errors(errs).empty(), dssync_test::describe_errors(errs));
  for (int r = 0; r < n; ++r) CHECK(bad[static_cast<std::size_t>(r)] == 0);
}

TEST_SUITE_END();
