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

#include <random>

#include "test_support.hpp"

namespace cd = dssync::codecs;
namespace topo = dssync::topology;
namespace tsim = dssync::transport::sim;
using dssync_test::contains;

namespace {

std::vector<float> gaussian(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

/// Runs `steps` compressed allreduces of `count` floats on `n` ranks, each rank starting from a copy
/// of `proto`, and checks every rank, bitwise, against the sequential oracle: copies of the same codecs
/// encoding the same gradients, decoded in rank order.
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
    const auto errs = dssync_test::run_world(2, [&](auto& comm) {
      auto g = gaussian(100, 1);
      if (comm.rank() == 0) {
        cd::topk<float> c(0.1);
        dssync::synchronize(comm, g, c, dssync::ops::sum{}, dssync_test::test_options());
      } else {
        cd::onebit<float> c(32);
        dssync::synchronize(comm, g, c, dssync::ops::sum{}, dssync_test::test_options());
      }
    });
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
