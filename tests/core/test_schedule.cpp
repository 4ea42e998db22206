// The schedule value: printing, drop_empty, expected contributors per semantics.

#include <doctest/doctest.h>

#include "test_support.hpp"

using dssync::range;
using dssync::schedule;
using dssync::semantics;
using dssync::step;
using dssync::step_kind;
using dssync_test::contains;

namespace {

schedule empty_schedule(int n, std::size_t count, semantics kind) {
  schedule s;
  s.policy = "test";
  s.world_size = n;
  s.count = count;
  s.kind = kind;
  s.ranks.resize(static_cast<std::size_t>(n));
  return s;
}

}  // namespace

TEST_SUITE("schedule") {

TEST_CASE("steps print as `send [0,3) -> 1`, `recv-reduce [3,6) <- 1`, `recv-copy ...`") {
  std::ostringstream a, b, c;
  a << step{step_kind::send, 1, range{0, 3}};
  b << step{step_kind::recv_reduce, 1, range{3, 3}};
  c << step{step_kind::recv_copy, 12, range{10, 0}};
  CHECK(a.str() == "send [0,3) -> 1");
  CHECK(b.str() == "recv-reduce [3,6) <- 1");
  CHECK(c.str() == "recv-copy [10,10) <- 12");
  CHECK(std::string(dssync::to_string(step_kind::send)) == "send");
  CHECK(std::string(dssync::to_string(semantics::group_allreduce)) == "group-allreduce");
  CHECK(step{step_kind::send, 1, {0, 3}}.is_send());
  CHECK(step{step_kind::recv_copy, 1, {0, 3}}.is_recv());
  CHECK(step{step_kind::recv_reduce, 1, {0, 3}}.is_recv());
}

TEST_CASE("the printer shows the header and every step of every rank, or of one rank") {
  const auto s = dssync::algorithms::ring::build(2, 6);
  const std::string all = dssync::to_string(s);
  INFO(all);
  CHECK(contains(all, "schedule ring: allreduce, 2 ranks, 6 elements, 1 channel(s), 8 steps"));
  CHECK(contains(all, "rank 0 channel 0:"));
  CHECK(contains(all, "rank 1 channel 0:"));
  CHECK(contains(all, "0: send [0,3) -> 1"));
  CHECK(contains(all, "1: recv-reduce [3,6) <- 1"));
  CHECK(contains(all, "3: recv-copy [0,3) <- 1"));
  CHECK(contains(all, "0: send [3,6) -> 0"));
  const std::string one = dssync::to_string(s, 1);
  CHECK(contains(one, "rank 1 channel 0:"));
  CHECK_FALSE(contains(one, "rank 0 channel 0:"));
  std::ostringstream os;
  os << s;
  CHECK(os.str() == all);

  auto b = empty_schedule(3, 4, semantics::broadcast);
  b.root = 2;
  CHECK(contains(dssync::to_string(b), "broadcast, 3 ranks, 4 elements, 0 channel(s), 0 steps, root 2"));
  auto g = empty_schedule(4, 4, semantics::group_allreduce);
  g.groups = {{0, 1}, {2, 3}};
  CHECK(contains(dssync::to_string(g), "groups {0,1} {2,3}"));
}

TEST_CASE("drop_empty removes exactly the empty steps and keeps the order of the rest") {
  auto s = empty_schedule(2, 4, semantics::allreduce);
  s.ranks[0].channels.resize(2);
  s.ranks[0].channels[0].steps = {{step_kind::send, 1, {0, 0}}, {step_kind::send, 1, {0, 2}},
                                  {step_kind::recv_reduce, 1, {2, 0}}, {step_kind::recv_reduce, 1, {2, 2}}};
  s.ranks[0].channels[1].steps = {{step_kind::send, 1, {4, 0}}};
  s.ranks[1].channels.resize(1);
  s.ranks[1].channels[0].steps = {{step_kind::recv_reduce, 0, {0, 2}}, {step_kind::send, 0, {2, 2}},
                                  {step_kind::recv_copy, 0, {1, 0}}};
  CHECK(s.step_count() == 8);
  CHECK(s.channel_count() == 2);
  s.drop_empty();
  CHECK(s.step_count() == 4);
  CHECK(s.ranks[0].channels[0].steps == std::vector<step>{{step_kind::send, 1, {0, 2}}, {step_kind::recv_reduce, 1, {2, 2}}});
  CHECK(s.ranks[0].channels[1].steps.empty());
  CHECK(s.ranks[1].channels[0].steps == std::vector<step>{{step_kind::recv_reduce, 0, {0, 2}}, {step_kind::send, 0, {2, 2}}});
  CHECK(s.ranks[0].step_count() == 2);

  // Built-in policies already drop empty steps: with fewer elements than ranks, no empty message goes out.
  for (int n = 1; n <= 9; ++n)
    for (std::size_t count : {0u, 1u, 3u, 8u}) {
      for (const auto& p : {dssync::algorithms::ring::build(n, count), dssync::algorithms::direct::build(n, count)})
        for (const auto& r : p.ranks)
          for (const auto& c : r.channels)
            for (const auto& st : c.steps) REQUIRE_MESSAGE(!st.data.empty(), p.policy << " n=" << n << " count=" << count);
    }
  CHECK(dssync::algorithms::ring::build(4, 0).step_count() == 0);
  CHECK(dssync::algorithms::ring::build(5, 5).step_count() == 5 * 4 * 2 * 2);
}

TEST_CASE("expected_contributors and contributors for each semantics") {
  auto a = empty_schedule(4, 10, semantics::allreduce);
  for (int r = 0; r < 4; ++r) {
    CHECK(a.expected_contributors(r) == std::vector<int>{0, 1, 2, 3});
    CHECK(a.contributors(r) == 4);
  }

  auto red = empty_schedule(4, 10, semantics::reduce);
  red.root = 2;
  CHECK(red.expected_contributors(2) == std::vector<int>{0, 1, 2, 3});
  CHECK(red.contributors(2) == 4);
  CHECK(red.expected_contributors(0).empty());  // unspecified off the root
  CHECK(red.contributors(0) == 1);              // never divides by zero

  auto b = empty_schedule(3, 10, semantics::broadcast);
  b.root = 1;
  for (int r = 0; r < 3; ++r) {
    CHECK(b.expected_contributors(r) == std::vector<int>{1});
    CHECK(b.contributors(r) == 1);
  }

  auto g = empty_schedule(6, 10, semantics::group_allreduce);
  g.groups = {{3, 0, 5}, {1, 4}};  // rank 2 is in no group
  CHECK(g.expected_contributors(5) == std::vector<int>{0, 3, 5});  // sorted
  CHECK(g.expected_contributors(0) == std::vector<int>{0, 3, 5});
  CHECK(g.contributors(3) == 3);
  CHECK(g.expected_contributors(4) == std::vector<int>{1, 4});
  CHECK(g.contributors(1) == 2);
  CHECK(g.expected_contributors(2) == std::vector<int>{2});  // alone: keeps its own data
  CHECK(g.contributors(2) == 1);

  auto one = empty_schedule(1, 0, semantics::allreduce);
  CHECK(one.expected_contributors(0) == std::vector<int>{0});
  CHECK(one.contributors(0) == 1);
}

TEST_CASE("ring and direct plans have the documented shape") {
  for (int n : {2, 3, 5, 8}) {
    const std::size_t count = 10 * static_cast<std::size_t>(n) + 3;
    const auto r = dssync::algorithms::ring::build(n, count);
    const auto d = dssync::algorithms::direct::build(n, count);
    CHECK(r.policy == "ring");
    CHECK(d.policy == "direct");
    CHECK(r.world_size == n);
    CHECK(r.count == count);
    CHECK(r.kind == semantics::allreduce);
    for (int k = 0; k < n; ++k) {
      // Ring: 2(N-1) sends to the next rank and 2(N-1) receives from the previous one.
      const auto& rs = r.ranks[static_cast<std::size_t>(k)].channels.at(0).steps;
      REQUIRE(rs.size() == 4 * static_cast<std::size_t>(n - 1));
      for (const auto& st : rs) CHECK(st.peer == (st.is_send() ? (k + 1) % n : (k + n - 1) % n));
      // Direct: reduces its own chunk k from every peer, then copies every peer's chunk.
      const auto& ds = d.ranks[static_cast<std::size_t>(k)].channels.at(0).steps;
      REQUIRE(ds.size() == 4 * static_cast<std::size_t>(n - 1));
      int reduces = 0;
      for (const auto& st : ds)
        if (st.kind == step_kind::recv_reduce) {
          ++reduces;
          CHECK(st.data == dssync::chunk(count, static_cast<std::size_t>(n), static_cast<std::size_t>(k)));
        }
      CHECK(reduces == n - 1);
    }
  }
  CHECK_THROWS_AS((void)dssync::algorithms::ring::build(0, 10), dssync::invalid_argument);
  CHECK_THROWS_AS((void)dssync::algorithms::direct::build(-3, 10), dssync::invalid_argument);
  const auto solo = dssync::algorithms::ring::build(1, 100);
  CHECK(solo.ranks.size() == 1);
  CHECK(solo.step_count() == 0);
}

TEST_CASE("the registry plans by name and rejects unknown names") {
  const dssync::topology::full_mesh t(4);
  const auto r = dssync::algorithms::plan_by_name("ring", t, dssync::plan_request{100, 0});
  const auto d = dssync::algorithms::plan_by_name("direct", t, dssync::plan_request{100, 0});
  CHECK(r.policy == "ring");
  CHECK(d.policy == "direct");
  CHECK(r.world_size == 4);
  CHECK(d.count == 100);
  const auto names = dssync::algorithms::policy_names();
  CHECK(std::find(names.begin(), names.end(), "ring") != names.end());
  CHECK(std::find(names.begin(), names.end(), "direct") != names.end());
  try {
    (void)dssync::algorithms::plan_by_name("butterfly", t, dssync::plan_request{100, 0});
    FAIL("unknown policy accepted");
  } catch (const dssync::invalid_argument& e) {
    CHECK_MESSAGE(contains(e.what(), "butterfly"), e.what());
    CHECK_MESSAGE(contains(e.what(), "ring"), e.what());
  }
  static_assert(dssync::concepts::policy<dssync::algorithms::ring, dssync::topology::ring>);
  static_assert(dssync::concepts::policy<dssync::algorithms::direct, dssync::topology::full_mesh>);
  static_assert(dssync::is_cacheable_policy<dssync::algorithms::ring>);
}

}  // TEST_SUITE
