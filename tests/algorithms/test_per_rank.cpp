// Per-rank planning (`plan_request::rank`): a rank builds only its own part of a plan. For every
// policy that offers it and every collective it plans, on world sizes 1..16, each rank's part equals the
// whole-world plan's part for that rank, and all ranks' parts share one fingerprint; the verifier and the
// simulator refuse a part; a rank's ring plan fits the memory targets (N = 1024 within 1 MiB, N = 16384
// within 16 MiB); and ranks that plan whole (verifying) and ranks that plan their part run together.

#include <doctest/doctest.h>

#include <dssync/algorithms/binomial_tree.hpp>
#include <dssync/algorithms/chain.hpp>
#include <dssync/algorithms/registry.hpp>
#include <dssync/algorithms/ring.hpp>
#include <dssync/core/verifier.hpp>
#include <dssync/sim/simulator.hpp>
#include <dssync/synchronize.hpp>
#include <dssync/topology/full_mesh.hpp>
#include <dssync/topology/star.hpp>

#include <string>
#include <vector>

#include "test_support.hpp"

namespace alg = dssync::algorithms;
using dssync::plan_request;
using dssync::schedule;
using dssync::semantics;
using dssync::topology::full_mesh;

namespace {

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

std::size_t plan_bytes(const schedule& s) {
  std::size_t b = sizeof(s) + s.policy.capacity() + s.description.capacity() +
                  s.ranks.capacity() * sizeof(dssync::rank_plan) + s.blocks.capacity() * sizeof(dssync::range);
  for (const auto& r : s.ranks) {
    b += r.channels.capacity() * sizeof(dssync::channel);
    for (const auto& c : r.channels) b += c.steps.capacity() * sizeof(dssync::step);
  }
  return b;
}

}  // namespace

TEST_CASE("a rank's part of every per-rank policy equals its part of the whole plan") {
  int policies = 0;
  for (auto name : alg::policy_names()) {
    const auto& e = alg::registry().at(name);
    if (!e.per_rank) continue;
    ++policies;
    for (semantics c : e.collectives)
      for (int n : {1, 2, 3, 5, 8, 16})
        for (std::size_t count : {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{1000}}) {
          INFO(name << " " << to_string(c) << " n = " << n << " count = " << count);
          plan_request q{count, 0, c, n - 1};
          const schedule whole = e.plan(full_mesh(n), q);
          REQUIRE(whole.planned_rank == -1);
          REQUIRE(dssync::verify(whole).ok);
          std::uint64_t fp = 0;
          for (int r = 0; r < n; ++r) {
            q.rank = r;
            schedule part = e.plan(full_mesh(n), q);
            part.description = "the same request";
            REQUIRE(part.planned_rank == r);
            REQUIRE(part.world_size == n);
            REQUIRE(part.ranks.size() == static_cast<std::size_t>(n));
            CHECK(part.ranks[static_cast<std::size_t>(r)] == whole.ranks[static_cast<std::size_t>(r)]);
            for (int o = 0; o < n; ++o)
              if (o != r) CHECK(part.ranks[static_cast<std::size_t>(o)].step_count() == 0);
            CHECK(part.blocks == whole.blocks);
            CHECK(part.root == whole.root);
            if (r == 0) fp = dssync::fingerprint(part);
            CHECK(dssync::fingerprint(part) == fp);  // the agreement compares it across ranks
          }
        }
  }
  CHECK(policies >= 3);  // ring, chain, binomial_tree
  CHECK(alg::registry().at("ring").per_rank);
  CHECK_FALSE(alg::registry().at("hierarchical").per_rank);
}

TEST_CASE("a part's fingerprint names what it was planned from, not its steps") {
  plan_request q{100, 0};
  q.rank = 1;
  auto a = alg::ring{}.plan(full_mesh(4), q);
  auto b = a;
  a.description = "ring|pieces=1";
  b.description = "ring|pieces=2";
  CHECK(dssync::fingerprint(a) != dssync::fingerprint(b));
  b.description = a.description;
  b.count = 101;
  CHECK(dssync::fingerprint(a) != dssync::fingerprint(b));
  // Whole plans keep their step-by-step fingerprint (pinned in test_schedule.cpp).
  CHECK(dssync::fingerprint(alg::ring::build(4, 100)) == 0xba3ff63e60436c01ull);
  q.rank = 4;
  CHECK_THROWS_WITH_AS((void)alg::ring{}.plan(full_mesh(4), q), doctest::Contains("rank 4"), dssync::invalid_argument);
}

TEST_CASE("the verifier, the simulator and print() see that a part is not the whole plan") {
  plan_request q{64, 0};
  q.rank = 2;
  const auto part = alg::ring{}.plan(full_mesh(4), q);
  const auto v = dssync::verify(part);
  CHECK_FALSE(v.ok);
  CHECK(contains(v.message, "rank 2's part"));
  CHECK_THROWS_WITH_AS((void)dssync::sim::simulate(part, dssync::topology::star(4).graph()),
                       doctest::Contains("rank 2's part"), dssync::invalid_argument);
  const std::string text = dssync::to_string(part);
  CHECK(contains(text, "rank 2's part"));
  CHECK_FALSE(contains(text, "rank 0 channel"));
}

TEST_CASE("a rank's ring plan fits the memory targets: N = 1024 within 1 MiB, N = 16384 within 16 MiB") {
  for (auto [n, limit] : {std::pair{1024, std::size_t{1} << 20}, std::pair{16384, std::size_t{16} << 20}}) {
    plan_request q{std::size_t{1} << 24, 0};
    q.rank = n / 2;
    const auto part = alg::ring{}.plan(full_mesh(n), q);
    INFO("N = " << n << ": " << plan_bytes(part) << " bytes");
    CHECK(part.ranks[static_cast<std::size_t>(n / 2)].step_count() == 4 * static_cast<std::size_t>(n - 1));
    CHECK(plan_bytes(part) <= limit);
  }
}

TEST_CASE("ranks that plan their part and ranks that plan (and verify) the whole plan run together") {
  for (int n : {2, 3, 5}) {
    INFO("n = " << n);
    std::vector<std::vector<float>> out(static_cast<std::size_t>(n));
    const auto errs = dssync_test::run_world(n, [&](auto& comm) {
      auto opt = dssync_test::test_options();
      opt.verify = comm.rank() == 0;  // rank 0 plans the whole world and proves it; the others their part
      std::vector<float> x(1001, static_cast<float>(comm.rank() + 1));
      dssync::synchronize<alg::ring>(comm, full_mesh(n), x, dssync::ops::sum{}, opt);
      std::vector<float> b(70000, static_cast<float>(comm.rank()));
      dssync::synchronize(comm, full_mesh(n), alg::registry().at("ring"), b, dssync::ops::max{}, opt);
      x.push_back(b.back());
      out[static_cast<std::size_t>(comm.rank())] = std::move(x);
    });
    REQUIRE_MESSAGE(dssync_test::describe_errors(errs).empty(), dssync_test::describe_errors(errs));
    for (const auto& x : out) {
      CHECK(x.front() == static_cast<float>(n * (n + 1) / 2));
      CHECK(x.back() == static_cast<float>(n - 1));
    }
  }
}
