// synchronize_resilient for any policy with plan_without (ring, direct), not only BML: a rank killed
// during the collective, the survivors revoke, agree, shrink, re-plan over themselves and finish with
// exactly their own sum. Also plan_without itself: verified plans over every survivor set of small
// worlds, placed on the survivors through schedule::hosts.
#include <doctest/doctest.h>

#include <dssync/fault.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using dssync::transport::inproc::communicator;
using dssync::transport::inproc::world;
using dssync_test::contains;
using dssync_test::describe_errors;
using dssync_test::names_rank;
using dssync_test::what;
namespace fault = dssync::fault;
namespace alg = dssync::algorithms;

/// Rank r contributes a base-16 digit of its own plus the index in the high bits, so a lost, doubled or
/// misplaced contribution changes the sum exactly.
std::uint64_t input(int r, std::size_t i) { return (std::uint64_t{1} << (4 * r)) + (static_cast<std::uint64_t>(i) << 40); }

template <class Policy, class Topo>
void kill_one(const Topo& topo, int victim, std::size_t step, std::size_t count) {
  const int n = topo.workers();
  world w(n);
  std::vector<std::vector<std::uint64_t>> out(static_cast<std::size_t>(n));
  std::vector<std::vector<int>> failed(static_cast<std::size_t>(n)), members(static_cast<std::size_t>(n));
  std::vector<int> attempts(static_cast<std::size_t>(n), 0), timeouts(static_cast<std::size_t>(n), 0);
  auto opt = dssync_test::test_options(10s);
  opt.verify = true;
  auto errs = w.run_collect([&](communicator& c) {
    const int me = c.rank();
    if (me == victim) c.owner().inject_fault(me, step);
    std::vector<std::uint64_t> d(count);
    for (std::size_t i = 0; i < count; ++i) d[i] = input(me, i);
    Policy policy{};
    fault::recovery_options<communicator> ro;
    ro.timeout = 10s;
    auto res = fault::synchronize_resilient(c, topo, policy, d, dssync::ops::sum{}, opt, ro);
    out[static_cast<std::size_t>(me)] = d;
    failed[static_cast<std::size_t>(me)] = res.failed;
    members[static_cast<std::size_t>(me)] = res.members;
    attempts[static_cast<std::size_t>(me)] = res.attempts;
    for (const auto& e : res.errors) {
      try {
        std::rethrow_exception(e.error);
      } catch (const dssync::timeout_error&) {
        ++timeouts[static_cast<std::size_t>(me)];
      } catch (...) {
      }
    }
  });
  std::vector<std::uint64_t> want(count, 0);
  for (int r = 0; r < n; ++r)
    if (r != victim)
      for (std::size_t i = 0; i < count; ++i) want[i] += input(r, i);
  for (int r = 0; r < n; ++r) {
    CAPTURE(r);
    const auto& e = errs[static_cast<std::size_t>(r)];
    if (r == victim) {
      CHECK_MESSAGE(dssync_test::holds<dssync::injected_fault>(e), what(e));
      continue;
    }
    REQUIRE_MESSAGE(!e, what(e));
    CHECK(out[static_cast<std::size_t>(r)] == want);
    CHECK(failed[static_cast<std::size_t>(r)] == std::vector<int>{victim});
    CHECK(attempts[static_cast<std::size_t>(r)] == 2);
    CHECK(timeouts[static_cast<std::size_t>(r)] == 0);  // surfaced as a peer_failure event, not a deadline
    std::vector<int> alive;
    for (int x = 0; x < n; ++x)
      if (x != victim) alive.push_back(x);
    CHECK(members[static_cast<std::size_t>(r)] == alive);
  }
}

}  // namespace

TEST_SUITE("fault") {

TEST_CASE("plan_without: ring and direct over every survivor set of 1..6 ranks verify and sit on the survivors") {
  for (int n = 1; n <= 6; ++n)
    for (unsigned mask = 0; mask + 1 < (1u << n); ++mask) {
      std::vector<int> dead;
      for (int r = 0; r < n; ++r)
        if (mask & (1u << r)) dead.push_back(r);
      CAPTURE(n);
      CAPTURE(mask);
      const dssync::topology::full_mesh t(n);
      for (const auto& s : {alg::ring{}.plan_without(t, dead, {37, 0}), alg::direct{}.plan_without(t, dead, {37, 0})}) {
        const auto v = dssync::verify(s);
        REQUIRE_MESSAGE(v.ok, v.message);
        CHECK(s.world_size == n - static_cast<int>(dead.size()));
        const auto alive = fault::survivors(n, dead);
        for (int i = 0; i < s.world_size; ++i) CHECK(s.host(i) == alive[static_cast<std::size_t>(i)]);
      }
    }
  try {
    (void)alg::ring{}.plan_without(dssync::topology::full_mesh(4), std::vector<int>{1, 1}, {10, 0});
    FAIL("a rank listed twice was accepted");
  } catch (const dssync::invalid_argument& e) {
    CHECK_MESSAGE((contains(e.what(), "ring") && contains(e.what(), "failed rank 1 is listed twice")), e.what());
  }
  try {
    (void)alg::direct{}.plan_without(dssync::topology::full_mesh(2), std::vector<int>{0, 1}, {10, 0});
    FAIL("a world without survivors was accepted");
  } catch (const dssync::invalid_argument& e) {
    CHECK_MESSAGE(contains(e.what(), "no survivor"), e.what());
  }
  static_assert(dssync::concepts::replanning_policy<alg::ring, dssync::topology::full_mesh>);
  static_assert(!dssync::concepts::replanning_policy<alg::hierarchical, dssync::topology::full_mesh>);
}

TEST_CASE("synchronize_resilient recovers ring and direct from a rank killed mid-collective") {
  for (int victim : {0, 2, 4})
    for (std::size_t step : {std::size_t{0}, std::size_t{3}, std::size_t{6}}) {
      CAPTURE(victim);
      CAPTURE(step);
      kill_one<alg::ring>(dssync::topology::full_mesh(5), victim, step, 103);
      kill_one<alg::direct>(dssync::topology::full_mesh(5), victim, step, 103);
    }
  kill_one<alg::ring>(dssync::topology::ring(6), 5, 2, 4000);
}

TEST_CASE("the registry offers plan_without for ring and direct, so dssync-sim --fail and recovery can use it") {
  CHECK(alg::registry().at("ring").can_replan());
  CHECK(alg::registry().at("direct").can_replan());
  CHECK(alg::registry().at("bcube").can_replan());
  CHECK_FALSE(alg::registry().at("hierarchical").can_replan());
  const std::vector<int> dead{1};
  const auto s = alg::registry().at("ring").plan_without(dssync::topology::full_mesh(4), dead, {12, 0});
  CHECK(s == alg::ring{}.plan_without(dssync::topology::full_mesh(4), dead, {12, 0}));
  CHECK(s.hosts == std::vector<int>{0, 2, 3});
}

}  // TEST_SUITE
