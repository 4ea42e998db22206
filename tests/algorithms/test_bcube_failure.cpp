// BML's re-plan around failed servers (seed 003, "Fault Tolerance"): the verifier proves the survivors'
// schedule for every failed server of BCube(2,2), (3,2), (2,3), (4,2), (3,3) and for every pair of failed
// servers of BCube(3,2) and (2,3); k·(N-x) pieces; an early server's next-stage sends wait for a late
// peer through data (so the executor keeps that order too); the survivors run it on the in-process
// transport and end with exactly the sum of their own data; bad failure lists are refused with the
// value named.
#include <doctest/doctest.h>

#include <dssync/algorithms/bcube.hpp>
#include <dssync/dssync.hpp>

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "test_support.hpp"

namespace {

namespace alg = dssync::algorithms;
namespace topo = dssync::topology;

int servers(int n, int k) {
  int N = 1;
  for (int i = 0; i < k; ++i) N *= n;
  return N;
}

std::string refusal(int n, int k, std::vector<int> failed) {
  try {
    (void)alg::bcube{}.plan_without(topo::bcube(n, k), failed, {100, 0});
  } catch (const dssync::invalid_argument& e) {
    return e.what();
  }
  return {};
}

}  // namespace

TEST_SUITE("algorithms") {
  TEST_CASE("bcube failure: the verifier proves the survivors' plan for every failed server") {
    struct bc {
      int n, k;
    };
    for (const bc c : {bc{2, 1}, bc{3, 1}, bc{2, 2}, bc{3, 2}, bc{2, 3}, bc{4, 2}, bc{3, 3}}) {
      const int N = servers(c.n, c.k);
      for (int f = 0; f < N; ++f)
        for (std::size_t count : {std::size_t{0}, std::size_t{1}, std::size_t{97}, std::size_t{4099}}) {
          CAPTURE(c.n);
          CAPTURE(c.k);
          CAPTURE(f);
          CAPTURE(count);
          const std::vector<int> failed{f};
          const auto s = alg::bcube{}.plan_without(topo::bcube(c.n, c.k), failed, {count, 0});
          REQUIRE(s.world_size == N - 1);
          REQUIRE(s.hosts.size() == static_cast<std::size_t>(N - 1));
          for (int i = 0; i < N - 1; ++i) CHECK(s.host(i) == (i < f ? i : i + 1));  // survivors in rank order
          const auto v = dssync::verify(s);
          CHECK_MESSAGE(v.ok, v.message);
        }
    }
  }

  TEST_CASE("bcube failure: every pair of failed servers of BCube(3,2) and BCube(2,3), and three of BCube(3,3)") {
    struct bc {
      int n, k;
    };
    for (const bc c : {bc{3, 2}, bc{2, 3}}) {
      const int N = servers(c.n, c.k);
      for (int a = 0; a < N; ++a)
        for (int b = a + 1; b < N; ++b) {
          CAPTURE(c.n);
          CAPTURE(c.k);
          CAPTURE(a);
          CAPTURE(b);
          const std::vector<int> failed{b, a};  // any order
          const auto s = alg::bcube{}.plan_without(topo::bcube(c.n, c.k), failed, {1000, 0});
          CHECK(s.world_size == N - 2);
          const auto v = dssync::verify(s);
          CHECK_MESSAGE(v.ok, v.message);
        }
    }
    const std::vector<int> three{0, 13, 26};
    const auto s = alg::bcube{}.plan_without(topo::bcube(3, 3), three, {5000, 0});
    const auto v = dssync::verify(s);
    CHECK_MESSAGE(v.ok, v.message);
  }

  TEST_CASE("bcube failure: k·(N-x) pieces, the seed's auxiliary relay [0,1] -> [1,1] -> [1,0]") {
    // BCube(3,2) without [0,0]: 8 survivors, 16 pieces of 1 element each. Survivor i is rank i+1.
    const std::vector<int> failed{0};
    const auto s = alg::bcube{}.plan_without(topo::bcube(3, 2), failed, {16, 0});
    std::set<std::size_t> sizes;
    for (const auto& r : s.ranks)
      for (const auto& c : r.channels)
        for (const auto& st : c.steps) sizes.insert(st.data.length);
    CHECK(*sizes.rbegin() <= 3);  // pieces of one element, at most 3 consecutive in one message
    // In thread 0 the row-0 proxy [0,1] (survivor 0) relays its partial sum of piece [1,0] through [1,1]
    // (survivor 3) to [1,0] (survivor 2): survivor 3 receives from 0 and sends to 2 in stage k = 2.
    bool from0 = false, to2 = false;
    for (const auto& st : s.ranks[3].channels[0].steps)
      if (st.stage == 2) {
        from0 = from0 || (st.is_recv() && st.peer == 0);
        to2 = to2 || (st.is_send() && st.peer == 2);
      }
    CHECK(from0);
    CHECK(to2);
  }

  TEST_CASE("bcube failure: an early server's next-stage sends wait for a late peer through data") {
    // BCube(3,2) without [0,0]: in thread 0 the short group {[0,1], [0,2]} (survivors 0 and 1) ends
    // aggregation 1 early. Survivor 0's aggregation-2 sends follow receives of fragments (heads) of the
    // same pieces from its full-group peers on level 1, [1,1] and [2,1] (survivors 3 and 6).
    const std::vector<int> failed{0};
    const auto s = alg::bcube{}.plan_without(topo::bcube(3, 2), failed, {100000, 0});
    REQUIRE(dssync::verify(s).ok);
    const auto& steps = s.ranks[0].channels[0].steps;
    std::set<int> heads_from;
    bool sent = false;
    for (const auto& st : steps) {
      if (st.stage != 1) continue;
      if (st.is_send()) sent = true;
      else if (!sent) heads_from.insert(st.peer);
    }
    CHECK(heads_from == std::set<int>{3, 6});
    // The executor orders two steps of one channel only when their ranges overlap, so every send of an
    // aggregation stage that the plan puts after a receive of that stage must start with elements such
    // a receive wrote: then the simulator's in-order wait is also the executor's. For every server of
    // several BCubes, each without one server.
    struct bc {
      int n, k, failed;
    };
    std::size_t gated = 0;
    for (const bc c : {bc{3, 2, 0}, bc{3, 2, 4}, bc{4, 2, 0}, bc{3, 3, 0}, bc{3, 3, 13}}) {
      CAPTURE(c.n);
      CAPTURE(c.k);
      CAPTURE(c.failed);
      const std::vector<int> f{c.failed};
      const auto p = alg::bcube{}.plan_without(topo::bcube(c.n, c.k), f, {100000, 0});
      REQUIRE(dssync::verify(p).ok);
      for (std::size_t r = 0; r < p.ranks.size(); ++r)
        for (const auto& ch : p.ranks[r].channels)
          for (std::size_t i = 0; i < ch.steps.size(); ++i) {
            const auto& st = ch.steps[i];
            if (!st.is_send() || st.stage == 0 || st.stage >= static_cast<std::uint32_t>(c.k)) continue;
            bool after_recv = false, first_written = false;
            for (std::size_t j = 0; j < i; ++j) {
              const auto& e = ch.steps[j];
              if (e.stage != st.stage || !e.is_recv()) continue;
              after_recv = true;
              first_written = first_written || e.data.overlaps({st.data.offset, 1});
            }
            if (!after_recv) continue;
            CAPTURE(r);
            CAPTURE(i);
            CHECK(first_written);
            ++gated;
          }
    }
    CHECK(gated > 0);
  }

  TEST_CASE("bcube failure: no failed server gives the failure-free plan") {
    const std::vector<int> none;
    const auto a = alg::bcube{}.plan_without(topo::bcube(3, 2), none, {1000, 0});
    const auto b = alg::bcube{}.plan(topo::bcube(3, 2), {1000, 0});
    CHECK(a.world_size == b.world_size);
    CHECK(a.step_count() == b.step_count());
    CHECK(a.hosts.empty());
  }

  TEST_CASE("bcube failure: bad failure lists are refused, naming the value") {
    auto m = refusal(3, 2, {9});
    CHECK(dssync_test::contains(m, "failed rank 9 is not a server of BCube(3,2)"));
    m = refusal(3, 2, {4, 4});
    CHECK(dssync_test::contains(m, "failed rank 4 is listed twice"));
    m = refusal(2, 1, {0, 1});
    CHECK(dssync_test::contains(m, "all 2 servers of BCube(2,1) failed"));
    m = refusal(3, 2, {-1});
    CHECK(dssync_test::contains(m, "failed rank -1"));
    // BCube(2,2) without [0,0] and [1,1]: [0,1] and [1,0] share no switch and no live server between.
    m = refusal(2, 2, {0, 3});
    CHECK(dssync_test::contains(m, "[0,1] (rank 1) and [1,0] (rank 2)"));
    CHECK(dssync_test::contains(m, "no path through live servers"));
  }

  TEST_CASE("bcube failure: survivors run the re-plan on the in-process transport; exactly their data is summed") {
    struct cfg {
      int n, k;
      std::vector<int> failed;
    };
    for (const cfg& c : {cfg{3, 2, {0}}, cfg{3, 2, {4}}, cfg{2, 3, {5}}, cfg{3, 2, {2, 6}}, cfg{2, 3, {0, 7}}}) {
      const int M = servers(c.n, c.k) - static_cast<int>(c.failed.size());
      for (std::size_t count : {std::size_t{0}, std::size_t{5}, std::size_t{3001}}) {
        CAPTURE(c.n);
        CAPTURE(c.k);
        CAPTURE(count);
        const auto s = alg::bcube{}.plan_without(topo::bcube(c.n, c.k), c.failed, {count, 0});
        // Survivor i (topology rank h) contributes bit h of every element: a lost contribution clears a
        // bit, a doubled one carries into the next.
        std::uint64_t expect = 0;
        for (int i = 0; i < M; ++i) expect |= std::uint64_t{1} << s.host(i);
        std::vector<std::vector<std::uint64_t>> out(static_cast<std::size_t>(M));
        dssync::transport::inproc::world w(M);
        dssync::options opt;
        opt.segment_bytes = 64;
        w.run([&](auto& comm) {
          std::vector<std::uint64_t> v(count, std::uint64_t{1} << s.host(comm.rank()));
          dssync::synchronize(comm, s, v, dssync::ops::sum{}, opt);
          out[static_cast<std::size_t>(comm.rank())] = std::move(v);
        });
        for (int i = 0; i < M; ++i)
          for (std::size_t e = 0; e < count; ++e) REQUIRE(out[static_cast<std::size_t>(i)][e] == expect);
      }
    }
  }

  TEST_CASE("bcube failure: float averages over the survivors only") {
    const std::vector<int> failed{8};
    const auto s = alg::bcube{}.plan_without(topo::bcube(3, 2), failed, {1001, 0});
    std::vector<std::vector<float>> out(8);
    dssync::transport::inproc::world w(8);
    w.run([&](auto& comm) {
      std::vector<float> v(1001, static_cast<float>(s.host(comm.rank())));
      dssync::synchronize(comm, s, v, dssync::ops::average{});
      out[static_cast<std::size_t>(comm.rank())] = std::move(v);
    });
    for (const auto& v : out) {
      CHECK(v.front() == doctest::Approx(28.0 / 8));  // (0+...+7)/8: rank 8 is out
      CHECK(v == out[0]);
    }
  }
}
