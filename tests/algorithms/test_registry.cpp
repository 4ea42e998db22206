// The policy registry (an open list that DSSYNC_ALGO, the short form, best_policy and dssync-sim read),
// the cache_key capability (plans are cached per policy parameters), and the short form's refusal of
// policies whose plans are not allreduces.
#include <doctest/doctest.h>

#include <dssync/algorithms/cost_model.hpp>
#include <dssync/dssync.hpp>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "test_support.hpp"

namespace {

using dssync::plan_request;
using dssync::schedule;
using dssync::topology::full_mesh;
using dssync_test::contains;
using dssync_test::describe_errors;
namespace alg = dssync::algorithms;

using algo_env = dssync_test::scoped_algo;

/// A user's policy: ring, counting its plans, registered under its own name.
std::atomic<int> user_plans{0};
struct user_ring {
  static constexpr std::string_view name = "test_user_ring";
  template <dssync::concepts::topology Topo>
  [[nodiscard]] schedule plan(const Topo& t, plan_request q) const {
    ++user_plans;
    auto s = alg::ring::build(t.workers(), q.count);
    s.policy = std::string(name);
    return s;
  }
};

/// A user's policy with a parameter but no cache_key: it must never be served a stale plan.
struct unkeyed_chunks {
  static constexpr std::string_view name = "test_unkeyed_chunks";
  std::size_t pipeline = 1;
  template <dssync::concepts::topology Topo>
  [[nodiscard]] schedule plan(const Topo& t, plan_request q) const {
    return alg::double_binary_tree::build(t.workers(), q.count, pipeline);
  }
};

}  // namespace

TEST_SUITE("registry") {

TEST_CASE("plan caches key on policy parameters: double_binary_tree pipeline and parameter_server servers") {
  // Before cache_key, the second plan of each pair was the first one, served from the cache.
  const full_mesh t(6);
  const auto opt = dssync_test::test_options();
  const plan_request q{40000, 0};
  alg::double_binary_tree one{.pipeline = 1}, four{.pipeline = 4};
  const auto a = dssync::detail::plan_for(one, t, q, opt, 0);
  const auto b = dssync::detail::plan_for(four, t, q, opt, 0);
  CHECK(a != b);
  CHECK(*a == alg::double_binary_tree::build(6, q.count, 1));
  CHECK(*b == alg::double_binary_tree::build(6, q.count, 4));
  CHECK(a->step_count() < b->step_count());
  CHECK(dssync::detail::plan_for(one, t, q, opt, 0) == a);  // still cached

  alg::parameter_server ps1{.server_count = 1}, ps3{.server_count = 3};
  const auto p1 = dssync::detail::plan_for(ps1, t, q, opt, 0);
  const auto p3 = dssync::detail::plan_for(ps3, t, q, opt, 0);
  CHECK(*p1 == alg::parameter_server::build(6, q.count, ps1.servers(t)));
  CHECK(*p3 == alg::parameter_server::build(6, q.count, ps3.servers(t)));
  CHECK(*p1 != *p3);

  // A parameterized policy without cache_key is not cached at all.
  static_assert(!dssync::is_cacheable_policy<unkeyed_chunks>);
  static_assert(dssync::is_cacheable_policy<alg::double_binary_tree>);
  static_assert(dssync::is_cacheable_policy<alg::ring>);
  static_assert(!dssync::is_cacheable_policy<alg::gossip>);
  unkeyed_chunks u1{.pipeline = 1}, u3{.pipeline = 3};
  const auto c1 = dssync::detail::plan_for(u1, t, q, opt, 0);
  const auto c3 = dssync::detail::plan_for(u3, t, q, opt, 0);
  CHECK(*c1 == alg::double_binary_tree::build(6, q.count, 1));
  CHECK(*c3 == alg::double_binary_tree::build(6, q.count, 3));
}

TEST_CASE("synchronize with policy objects of different parameters runs each one's plan") {
  std::vector<std::vector<float>> out(5);
  auto errs = dssync_test::run_world(5, [&](auto& comm) {
    for (std::size_t pipeline : {1, 3, 1, 5}) {
      std::vector<float> d(40000, static_cast<float>(comm.rank() + 1));
      alg::double_binary_tree p{.pipeline = pipeline};
      auto opt = dssync_test::test_options();
      opt.verify = true;
      dssync::synchronize(comm, full_mesh(5), p, d, dssync::ops::sum{}, opt);
      const auto plan = dssync::detail::plan_for(p, full_mesh(5), plan_request{d.size(), 0}, opt, comm.rank());
      dssync_test::ensure(*plan == alg::double_binary_tree::build(5, d.size(), pipeline),
                          "the cache served another pipeline's plan for pipeline " + std::to_string(pipeline));
      dssync_test::ensure(std::all_of(d.begin(), d.end(), [](float x) { return x == 15.0f; }), "wrong sum");
      out[static_cast<std::size_t>(comm.rank())] = d;
    }
  });
  REQUIRE_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
}

TEST_CASE("DSSYNC_ALGO=gossip is refused by the allreduce short form, naming the policy and rank") {
  // Before: the short form planned a fresh gossip object per call, so it averaged over the same pairs
  // forever (never an allreduce, never rotating).
  const algo_env env("gossip");
  auto errs = dssync_test::run_world(4, [&](auto& comm) {
    std::vector<float> d(16, 1.0f);
    try {
      dssync::synchronize(comm, d, dssync::ops::sum{}, dssync_test::test_options());
      throw dssync_test::check_failed("the short form ran gossip as an allreduce");
    } catch (const dssync::invalid_argument& e) {
      dssync_test::ensure(contains(e.what(), "gossip") && contains(e.what(), "DSSYNC_ALGO") &&
                              contains(e.what(), "group-allreduce") &&
                              dssync_test::names_rank(e.what(), comm.rank()),
                          e.what());
    }
    dssync_test::ensure(std::all_of(d.begin(), d.end(), [](float x) { return x == 1.0f; }), "data was touched");
  });
  REQUIRE_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
  CHECK(alg::registry().at("gossip").promises == dssync::semantics::group_allreduce);
  CHECK(alg::registry().at("ring").promises == dssync::semantics::allreduce);
}

TEST_CASE("DSSYNC_ALGO naming an unregistered policy fails on every rank, listing the known ones") {
  const algo_env env("butterfly");
  auto errs = dssync_test::run_world(2, [&](auto& comm) {
    std::vector<float> d(8, 1.0f);
    try {
      dssync::synchronize(comm, d);
      throw dssync_test::check_failed("an unknown policy ran");
    } catch (const dssync::invalid_argument& e) {
      dssync_test::ensure(contains(e.what(), "butterfly") && contains(e.what(), "ring") &&
                              contains(e.what(), "hierarchical"),
                          e.what());
    }
  });
  REQUIRE_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
}

TEST_CASE("a user's policy, once registered, is listed, planned by name and selected by DSSYNC_ALGO") {
  if (alg::registry().find(user_ring::name) == nullptr) alg::registry().add(user_ring{}, "a test's ring");
  const auto names = alg::policy_names();
  CHECK(std::find(names.begin(), names.end(), user_ring::name) != names.end());
  CHECK(names.front() == "ring");  // dssync's own come first, in their order
  // A second registration under the same name is refused.
  try {
    alg::registry().add(user_ring{});
    FAIL("duplicate registration accepted");
  } catch (const dssync::invalid_argument& e) {
    CHECK_MESSAGE(contains(e.what(), "test_user_ring"), e.what());
  }
  const auto s = alg::plan_by_name(user_ring::name, full_mesh(5), plan_request{101, 0});
  CHECK(s.policy == "test_user_ring");
  CHECK(dssync::verify(s).ok);

  const algo_env env("test_user_ring");
  const int before = user_plans.load();
  std::vector<std::vector<std::int64_t>> out(3);
  auto errs = dssync_test::run_world(3, [&](auto& comm) {
    for (int i = 0; i < 3; ++i) {
      std::vector<std::int64_t> d(77, comm.rank() + 1);
      dssync::synchronize(comm, d, dssync::ops::sum{}, dssync_test::test_options());
      out[static_cast<std::size_t>(comm.rank())] = d;
    }
  });
  REQUIRE_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
  for (const auto& o : out) CHECK(o == std::vector<std::int64_t>(77, 6));
  // Planned once per rank thread (cached after), so the short form did use the user's policy.
  CHECK(user_plans.load() - before == 3);
  // best_policy honours DSSYNC_ALGO with the user's name too.
  CHECK(alg::best_policy(full_mesh(3), 1e6) == "test_user_ring");
}

TEST_CASE("registry entries see built-in models as themselves: BML plans and re-plans through any_topology") {
  const dssync::topology::bcube b(3, 2);
  const auto& e = alg::registry().at("bcube");
  CHECK(e.can_replan());
  CHECK_FALSE(alg::registry().at("hierarchical").can_replan());
  const dssync::topology::any_topology any(b);
  CHECK(e.plan(any, {900, 0}) == alg::bcube{}.plan(b, {900, 0}));
  CHECK(e.plan(b, {900, 0}) == alg::bcube{}.plan(b, {900, 0}));
  const std::vector<int> failed{4};
  CHECK(e.plan_without(any, failed, {900, 0}) == alg::bcube{}.plan_without(b, failed, {900, 0}));
  try {
    (void)e.plan(full_mesh(9), {900, 0});
    FAIL("bcube planned on a full mesh");
  } catch (const dssync::invalid_argument& e2) {
    CHECK_MESSAGE(contains(e2.what(), "not a BCube"), e2.what());
  }
  CHECK_FALSE(static_cast<bool>(alg::registry().at("double_binary_tree").plan_without));
  // Hierarchical sees the racks of a leaf-spine model through the view.
  const dssync::topology::leaf_spine racks(3, 2);
  CHECK(alg::plan_by_name("hierarchical", racks, {60, 0}) == alg::hierarchical{}.plan(racks, {60, 0}));
}

}  // TEST_SUITE
