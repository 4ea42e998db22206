// The small- and middle-message allreduces of `algorithms/blocks/butterfly.hpp`: recursive doubling
// (staged), Rabenseifner (recursive halving + doubling) and the one-round exchange. Plans are proven by
// the verifier for world sizes 1..33, powers of two or not (MPICH's fold), with their message counts and
// volumes; they run on the in-process transport against the sequential oracle, bitwise equal on every
// rank, for every op and element type; the unstaged symmetric exchange is shown to deadlock; and the
// simulator shows the latency they save.

#include <doctest/doctest.h>

#include <dssync/algorithms/butterfly.hpp>
#include <dssync/sim.hpp>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "test_support.hpp"

namespace alg = dssync::algorithms;
using dssync::plan_request;
using dssync::range;
using dssync::semantics;
using dssync::step_kind;
using dssync::topology::full_mesh;

namespace {

bool power_of_two(int n) { return n > 0 && (n & (n - 1)) == 0; }
int log2_of(int n) {
  int k = 0;
  while ((1 << (k + 1)) <= n) ++k;
  return k;
}

template <class P>
dssync::schedule plan_of(int n, std::size_t count) {
  return P{}.plan(full_mesh(n), plan_request{count, 0});
}

template <class P>
void check_plans() {
  CAPTURE(P::name);
  for (int n = 1; n <= 33; n += (n < 17 ? 1 : 15))
    for (std::size_t count : {std::size_t{0}, std::size_t{1}, std::size_t{2}, std::size_t{3}, std::size_t{7},
                              std::size_t{100}, std::size_t{1024}}) {
      CAPTURE(n);
      CAPTURE(count);
      const auto s = plan_of<P>(n, count);
      CHECK(s.kind == semantics::allreduce);
      const auto v = dssync::verify(s);
      REQUIRE_MESSAGE(v.ok, v.message);
      if (n == 1 || count == 0) {
        CHECK(v.messages == 0);
        continue;
      }
      const auto N = static_cast<std::size_t>(n);
      if constexpr (std::is_same_v<P, alg::recursive_doubling>) {
        if (power_of_two(n)) {  // log2 N exchanges of the whole buffer per rank
          CHECK(v.messages == N * static_cast<std::size_t>(log2_of(n)));
          CHECK(v.elements_moved == N * static_cast<std::size_t>(log2_of(n)) * count);
        }
      } else if constexpr (std::is_same_v<P, alg::rabenseifner>) {
        if (power_of_two(n) && count % N == 0)  // 2(N-1)/N of the buffer per rank: the bandwidth bound
          CHECK(v.elements_moved == 2 * (N - 1) * count);
      } else {
        CHECK(v.messages == N * (N - 1));  // one round: every rank to every other
        CHECK(v.elements_moved == N * (N - 1) * count);
        for (const auto& rp : s.ranks)  // every send is issued before any receive
          for (std::size_t i = 0; i + 1 < N; ++i) CHECK(rp.channels[0].steps[i].kind == step_kind::send);
      }
    }
}

/// Runs P's allreduce of `inputs` on the in-process transport under `k` and checks every rank against
/// the oracle and bitwise against rank 0.
template <class P, class T>
void check_run(int n, std::size_t count, dssync_test::op_kind k, std::mt19937& g) {
  CAPTURE(P::name);
  CAPTURE(n);
  CAPTURE(count);
  CAPTURE(dssync_test::to_string(k));
  const bool exact = true;  // integers, or floats of integer values: every sum is exact
  const auto in = dssync_test::random_inputs<T>(g, n, count,
                                                std::is_floating_point_v<T> ? dssync_test::values::integral
                                                                            : dssync_test::values::any);
  std::vector<std::vector<T>> out(static_cast<std::size_t>(n));
  const auto errs = dssync_test::run_world(n, [&](auto& comm) {
    auto data = in[static_cast<std::size_t>(comm.rank())];
    dssync_test::with_op(k, [&](auto op) {
      dssync::synchronize<P>(comm, full_mesh(n), data, op, dssync_test::test_options());
    });
    out[static_cast<std::size_t>(comm.rank())] = data;
  });
  REQUIRE_MESSAGE(dssync_test::describe_errors(errs).empty(), dssync_test::describe_errors(errs));
  for (int r = 0; r < n; ++r) {
    const auto why = dssync_test::check_against_oracle(out[static_cast<std::size_t>(r)], in, k, exact);
    CHECK_MESSAGE(why.empty(), "rank " << r << ": " << why);
  }
  CHECK(dssync_test::first_bitwise_difference(out) == -1);
}

/// As `check_run`, with random floats (inexact sums): within the oracle's tolerance, bitwise equal ranks.
template <class P>
void check_inexact(int n, std::size_t count, std::mt19937& g) {
  CAPTURE(P::name);
  CAPTURE(n);
  const auto in = dssync_test::random_inputs<float>(g, n, count);
  std::vector<std::vector<float>> out(static_cast<std::size_t>(n));
  const auto errs = dssync_test::run_world(n, [&](auto& comm) {
    auto data = in[static_cast<std::size_t>(comm.rank())];
    dssync::synchronize<P>(comm, full_mesh(n), data, dssync::ops::sum{}, dssync_test::test_options());
    out[static_cast<std::size_t>(comm.rank())] = data;
  });
  REQUIRE_MESSAGE(dssync_test::describe_errors(errs).empty(), dssync_test::describe_errors(errs));
  const auto why = dssync_test::check_against_oracle(out[0], in, dssync_test::op_kind::sum);
  CHECK_MESSAGE(why.empty(), why);
  CHECK(dssync_test::first_bitwise_difference(out) == -1);
}

template <class P>
void check_runs() {
  std::mt19937 g(7);
  using dssync_test::op_kind;
  for (int n : {1, 2, 3, 4, 5, 6, 7, 8})
    for (std::size_t count : {std::size_t{0}, std::size_t{1}, std::size_t{5}, dssync_test::scaled(1000, 50)}) {
      check_run<P, std::int32_t>(n, count, op_kind::sum, g);
      check_run<P, float>(n, count, op_kind::sum, g);
      check_run<P, double>(n, count, op_kind::max, g);
      check_run<P, float>(n, count, op_kind::average, g);
      check_run<P, std::int64_t>(n, count, op_kind::min, g);
    }
  for (int n : {3, 5, 8}) check_inexact<P>(n, dssync_test::scaled(4099, 100), g);
}

}  // namespace

TEST_SUITE("algorithms") {
  TEST_CASE("butterfly plans are proven for 1..33 ranks (folded beyond a power of two), with their rounds and volume") {
    check_plans<alg::recursive_doubling>();
    check_plans<alg::rabenseifner>();
    check_plans<alg::one_shot>();
  }

  TEST_CASE("recursive doubling must stage: the unstaged symmetric exchange is a deadlock the verifier names") {
    // Both ranks send [0, 8) and receive-reduce into it: neither reduction may overwrite the range
    // while the rank's own send of it is in flight, so each waits for the other's receive.
    auto s = alg::blocks::empty_plan("unstaged", 2, 8, semantics::allreduce);
    for (int r = 0; r < 2; ++r) {
      auto& steps = s.ranks[static_cast<std::size_t>(r)].channels[0].steps;
      steps.push_back({step_kind::send, 1 - r, range{0, 8}});
      steps.push_back({step_kind::recv_reduce, 1 - r, range{0, 8}});
    }
    const auto v = dssync::verify(s);
    CHECK_FALSE(v.ok);
    CHECK_MESSAGE(dssync_test::contains(v.message, "deadlock"), v.message);
    // The block's plan receives into its scratch buffer and reduces from it: proven.
    const auto staged = plan_of<alg::recursive_doubling>(2, 8);
    REQUIRE(staged.buffers.size() == 1);
    CHECK(staged.buffers[0].kind == dssync::buffer_kind::elements);
    CHECK(staged.buffers[0].size == 8);
    CHECK(dssync::verify(staged).ok);
  }

  TEST_CASE("the butterflies are registered and planned by name; a request for another collective is refused") {
    for (auto name : {alg::recursive_doubling::name, alg::rabenseifner::name, alg::one_shot::name}) {
      const auto& e = alg::registry().at(name);
      CHECK(e.plans(semantics::allreduce));
      CHECK(e.per_rank);
      const auto s = alg::plan_by_name(name, full_mesh(6), plan_request{100, 0});
      CHECK(s.policy == std::string(name));
      CHECK(dssync::verify(s).ok);
      CHECK_THROWS_WITH_AS((void)e.plan(full_mesh(4), plan_request{10, 0, semantics::broadcast, 0}),
                           doctest::Contains("plans allreduce, not broadcast"), dssync::invalid_argument);
    }
  }

  TEST_CASE("in the simulator the butterflies save rounds on small buffers (star of 8, 4 KiB)") {
    const dssync::topology::star st(8);
    auto t = [&](std::string_view name, std::size_t bytes) {
      return dssync::sim::simulate(alg::plan_by_name(name, st, plan_request{bytes / 4, 0}), st).completion_time;
    };
    const double ring = t("ring", 4096), rd = t("recursive_doubling", 4096), rab = t("rabenseifner", 4096),
                 one = t("one_shot", 4096), direct = t("direct", 4096);
    INFO("ring " << ring << " recursive_doubling " << rd << " rabenseifner " << rab << " one_shot " << one
                 << " direct " << direct);
    CHECK(rd < ring);   // 3 rounds against 14
    CHECK(rab < ring);  // 6 rounds against 14
    CHECK(one < ring);
    // At 16 MiB Rabenseifner moves the ring's volume in fewer rounds; recursive doubling moves 3 S.
    const std::size_t big = std::size_t{16} << 20;
    CHECK(t("rabenseifner", big) <= t("ring", big) * 1.05);
    CHECK(t("recursive_doubling", big) > t("ring", big));
  }
}

TEST_SUITE("butterfly inproc") {
  TEST_CASE("recursive doubling on the in-process transport: the oracle for every op and type, bitwise equal ranks") {
    check_runs<alg::recursive_doubling>();
  }
  TEST_CASE("Rabenseifner on the in-process transport: the oracle for every op and type, bitwise equal ranks") {
    check_runs<alg::rabenseifner>();
  }
  TEST_CASE("one-shot on the in-process transport: the oracle for every op and type, bitwise equal ranks") {
    check_runs<alg::one_shot>();
  }
}
