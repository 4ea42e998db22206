// The in-process transport's ULFM-style recovery primitives (Bland et al. 2013): revoke, agree, shrink.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <latch>
#include <string>
#include <thread>
#include <vector>

#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using dssync::transport::inproc::communicator;
using dssync::transport::inproc::world;
using dssync_test::contains;
using dssync_test::describe_errors;
using dssync_test::ensure;
using dssync_test::names_rank;
using dssync_test::what;

std::string str(const std::vector<int>& v) {
  std::string s;
  for (int x : v) s += std::to_string(x) + ' ';
  return s;
}

}  // namespace

TEST_SUITE("inproc") {

TEST_CASE("revoke interrupts a peer blocked in a synchronize on a live, silent rank") {
  // Ranks 0 and 1 wait in a ring allreduce for rank 2, which is alive but never joins; rank 2 revokes.
  // Without the revocation they would wait for the 10 s timeout.
  world w(3);
  std::latch blocked(2);
  std::vector<std::string> msgs(3);
  std::vector<int> blamed(3, -99);
  auto errs = w.run_collect([&](communicator& c) {
    if (c.rank() == 2) {
      blocked.wait();
      std::this_thread::sleep_for(50ms);  // let them block in their waits
      c.revoke();
      c.revoke(1);  // idempotent: the first revocation stays
      ensure(!c.agree(true, 5s), "agree after the revocation should be false");
      return;
    }
    std::vector<double> data(64, 1.0);
    bool ok = true;
    auto opt = dssync_test::test_options(10s);
    opt.check_agreement = false;  // block in the steps, not in the agreement exchange
    try {
      blocked.count_down();
      dssync::synchronize(c, data, dssync::ops::sum{}, opt);
    } catch (const dssync::peer_failure& e) {
      ok = false;
      msgs[static_cast<std::size_t>(c.rank())] = e.what();
      blamed[static_cast<std::size_t>(c.rank())] = e.peer();
    }
    ensure(!c.agree(ok, 5s), "rank " + std::to_string(c.rank()) + ": agree should be false");
  });
  // No error escaped: each blocked rank caught a peer_failure raised by the revocation (an event); had it
  // waited out its 10 s deadline instead, the uncaught timeout_error would be in `errs`.
  REQUIRE_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
  for (int r : {0, 1}) {
    CAPTURE(r);
    const auto& m = msgs[static_cast<std::size_t>(r)];
    CHECK(blamed[static_cast<std::size_t>(r)] == 2);  // no cause given: the revoker is blamed
    CHECK_MESSAGE(contains(m, "revoked by rank 2"), m);
  }
  CHECK(w.revoked());
  CHECK(w.revoked_by() == 2);
  CHECK(w.revoke_cause() == -1);
}

TEST_CASE("revoke: every survivor's peer_failure names the dead rank, not the revoker") {
  for (int victim : {0, 2, 4}) {
    CAPTURE(victim);
    const int n = 5;
    world w(n);
    std::vector<int> blamed(n, -99);
    std::vector<std::string> msgs(n), why(n);
    auto errs = w.run_collect([&](communicator& c) {
      std::vector<float> data(200, 1.0f);
      if (c.rank() == victim) c.owner().inject_fault(victim, 1);
      bool ok = true;
      try {
        dssync::synchronize(c, data, dssync::ops::sum{}, dssync_test::test_options(10s));
      } catch (const dssync::peer_failure& e) {
        ok = false;
        blamed[static_cast<std::size_t>(c.rank())] = e.peer();
        msgs[static_cast<std::size_t>(c.rank())] = e.what();
        c.revoke(e.peer());
      }
      // Before this rank agrees, no survivor can have finished: while revoked, every peer counts as
      // failed and the dead rank is the root; a live peer's reason names the revocation.
      for (int p = 0; p < n; ++p) {
        ensure(c.peer_failed(p), "peer_failed(" + std::to_string(p) + ") is false on a revoked world");
        ensure(c.peer_failure_root(p) == victim, "peer_failure_root(" + std::to_string(p) + ") = " +
                                                     std::to_string(c.peer_failure_root(p)));
      }
      const int live = (c.rank() + 1) % n == victim ? (c.rank() + 2) % n : (c.rank() + 1) % n;
      why[static_cast<std::size_t>(c.rank())] = c.peer_failure_reason(live);
      ensure(!c.agree(ok, 5s), "agree should be false");
    });
    // Every survivor caught a peer_failure (below), not a timeout_error from its 10 s deadline.
    for (int r = 0; r < n; ++r) {
      CAPTURE(r);
      if (r == victim) {
        CHECK(dssync_test::holds<dssync::injected_fault>(errs[static_cast<std::size_t>(r)]));
        continue;
      }
      CHECK_MESSAGE(!errs[static_cast<std::size_t>(r)], what(errs[static_cast<std::size_t>(r)]));
      CHECK(blamed[static_cast<std::size_t>(r)] == victim);
      CHECK_MESSAGE(names_rank(msgs[static_cast<std::size_t>(r)], victim), msgs[static_cast<std::size_t>(r)]);
      const auto& y = why[static_cast<std::size_t>(r)];
      CHECK_MESSAGE(contains(y, "revoked by rank"), y);
      CHECK_MESSAGE(contains(y, "after rank " + std::to_string(victim) + " failed"), y);
      CHECK_MESSAGE(contains(y, "fault injection"), y);
    }
  }
}

TEST_CASE("revoke is idempotent, and reset clears it") {
  world w(3);
  CHECK_FALSE(w.revoked());
  CHECK(w.revoked_by() == -1);
  CHECK_FALSE(w.comm(0).peer_failed(1));
  CHECK(w.comm(0).peer_failure_root(1) == -1);
  CHECK(w.comm(0).peer_failure_reason(1).empty());
  w.comm(1).revoke(2);
  w.comm(0).revoke(1);
  CHECK(w.revoked());
  CHECK(w.comm(2).revoked());
  CHECK(w.revoked_by() == 1);
  CHECK(w.revoke_cause() == 2);
  CHECK(w.comm(0).peer_failed(0));
  CHECK(w.comm(0).peer_failure_root(1) == 2);
  CHECK(w.comm(0).peer_failure_reason(1) == "the communicator was revoked by rank 1 after rank 2 failed");
  w.comm(0).revoke(77);  // a cause out of range counts as none
  w.reset();
  CHECK_FALSE(w.revoked());
  CHECK_FALSE(w.comm(0).peer_failed(1));
  w.comm(2).revoke(99);
  CHECK(w.revoke_cause() == -1);
  CHECK(w.comm(0).peer_failure_root(1) == 2);
  CHECK(w.comm(0).peer_failure_reason(1) == "the communicator was revoked by rank 2");
  // The next job runs normally.
  std::vector<std::vector<int>> out(3);
  auto errs = w.run_collect([&](communicator& c) {
    std::vector<int> d(10, c.rank() + 1);
    dssync::synchronize(c, d, dssync::ops::sum{}, dssync_test::test_options(5s));
    out[static_cast<std::size_t>(c.rank())] = d;
  });
  REQUIRE_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
  for (const auto& d : out) CHECK(d == std::vector<int>(10, 6));
}

TEST_CASE("agree: the AND of the flags, the same on every rank; successive calls never mix") {
  const int n = 4;
  const int rounds = static_cast<int>(dssync_test::scaled(60, 6));
  world w(n);
  std::vector<std::vector<char>> got(n);
  auto errs = w.run_collect([&](communicator& c) {
    for (int i = 0; i < rounds; ++i) {
      // Round i is false exactly when i % 7 == rank + 1 for some rank; ranks run at different paces.
      if ((i + c.rank()) % 3 == 0) std::this_thread::yield();
      got[static_cast<std::size_t>(c.rank())].push_back(c.agree(i % 7 != c.rank() + 1, 5s) ? 1 : 0);
    }
  });
  REQUIRE_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
  for (int r = 0; r < n; ++r) {
    REQUIRE(got[static_cast<std::size_t>(r)].size() == static_cast<std::size_t>(rounds));
    for (int i = 0; i < rounds; ++i) {
      const bool want = !(i % 7 >= 1 && i % 7 <= n);
      CHECK(got[static_cast<std::size_t>(r)][static_cast<std::size_t>(i)] == (want ? 1 : 0));
    }
  }
  // A world of one agrees with itself.
  world solo(1);
  CHECK(solo.comm(0).agree(true, 1s));
  CHECK_FALSE(solo.comm(0).agree(false, 1s));
}

TEST_CASE("agree while ranks are dead or die during the wait") {
  world w(5);
  std::vector<int> result(5, -1);
  auto errs = w.run_collect([&](communicator& c) {
    if (c.rank() == 1) return;  // dead before anyone agrees
    if (c.rank() == 3) {
      std::this_thread::sleep_for(50ms);  // dies while the others wait for it
      throw std::runtime_error("rank 3 crashed");
    }
    result[static_cast<std::size_t>(c.rank())] = c.agree(true, 5s) ? 1 : 0;
    // Again, with one rank saying no.
    result[static_cast<std::size_t>(c.rank())] += c.agree(c.rank() != 4, 5s) ? 10 : 0;
  });
  CHECK_FALSE(errs[0]);
  CHECK(what(errs[3]) == "rank 3 crashed");
  for (int r : {0, 2, 4}) CHECK(result[static_cast<std::size_t>(r)] == 1);
}

TEST_CASE("agree works on a revoked world, and after a failure the survivors agree") {
  world w(3);
  std::vector<int> result(3, -1);
  auto errs = w.run_collect([&](communicator& c) {
    if (c.rank() == 0) c.revoke();
    result[static_cast<std::size_t>(c.rank())] = c.agree(true, 5s) ? 1 : 0;
  });
  REQUIRE_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
  CHECK(result == std::vector<int>{1, 1, 1});
}

TEST_CASE("agree and shrink: a deadline raises timeout_error naming the missing rank") {
  for (bool shrink : {false, true}) {
    CAPTURE(shrink);
    world w(3);
    std::latch done(2);
    std::vector<std::string> msgs(3);
    std::vector<int> blamed(3, -99);
    auto errs = w.run_collect([&](communicator& c) {
      if (c.rank() == 2) {  // alive, but never joins
        done.wait();
        return;
      }
      try {
        if (shrink)
          (void)c.shrink(200ms);
        else
          (void)c.agree(true, 200ms);
      } catch (const dssync::timeout_error& e) {
        msgs[static_cast<std::size_t>(c.rank())] = e.what();
        blamed[static_cast<std::size_t>(c.rank())] = e.peer();
      }
      done.count_down();
    });
    REQUIRE_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
    for (int r : {0, 1}) {
      CAPTURE(r);
      const auto& m = msgs[static_cast<std::size_t>(r)];
      CHECK(blamed[static_cast<std::size_t>(r)] == 2);
      CHECK_MESSAGE(names_rank(m, 2), m);
      CHECK_MESSAGE(contains(m, shrink ? "shrink" : "agree"), m);
      CHECK_MESSAGE(contains(m, "200 ms"), m);
    }
  }
}

TEST_CASE("shrink: every survivor gets the same child of the survivors in rank order, whenever it calls") {
  const int n = 6;
  world w(n);
  std::vector<world*> child(n, nullptr);
  std::vector<int> child_rank(n, -1);
  std::vector<std::vector<int>> sums(n);
  std::vector<std::vector<int>> origins(n);
  world* grandchild = nullptr;
  auto errs = w.run_collect([&](communicator& c) {
    if (c.rank() == 1) return;  // dead
    if (c.rank() == 4) {
      std::this_thread::sleep_for(30ms);
      throw std::runtime_error("rank 4 crashed while the others shrink");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(7 * c.rank()));  // arrive at different times
    communicator& s = c.shrink(5s);
    child[static_cast<std::size_t>(c.rank())] = &s.owner();
    child_rank[static_cast<std::size_t>(c.rank())] = s.rank();
    // The child works: an allreduce over the survivors only.
    std::vector<int> d(50, c.rank() + 1);
    dssync::synchronize(s, d, dssync::ops::sum{}, dssync_test::test_options(5s));
    sums[static_cast<std::size_t>(c.rank())] = d;
    // A shrink with no new failure: same members, one level deeper.
    communicator& g = s.shrink(5s);
    if (s.rank() == 0) grandchild = &g.owner();
    for (int r = 0; r < g.size(); ++r) origins[static_cast<std::size_t>(c.rank())].push_back(g.origin(r));
    ensure(g.origin_size() == n, "origin_size");
  });
  CHECK(what(errs[4]) == "rank 4 crashed while the others shrink");
  for (int r : {0, 2, 3, 5}) CHECK_MESSAGE(!errs[static_cast<std::size_t>(r)], what(errs[static_cast<std::size_t>(r)]));
  CHECK(w.child_count() == 1);
  world* ch = child[0];
  REQUIRE(ch != nullptr);
  CHECK(ch->parent() == &w);
  CHECK(&ch->outermost() == &w);
  CHECK(ch->size() == 4);
  CHECK(ch->members() == std::vector<int>{0, 2, 3, 5});
  const std::vector<int> want_rank = {0, -1, 1, 2, -1, 3};
  for (int r : {0, 2, 3, 5}) {
    CAPTURE(r);
    CHECK(child[static_cast<std::size_t>(r)] == ch);
    CHECK(child_rank[static_cast<std::size_t>(r)] == want_rank[static_cast<std::size_t>(r)]);
    CHECK(sums[static_cast<std::size_t>(r)] == std::vector<int>(50, 1 + 3 + 4 + 6));
    CHECK_MESSAGE((origins[static_cast<std::size_t>(r)] == std::vector<int>{0, 2, 3, 5}), str(origins[static_cast<std::size_t>(r)]));
  }
  REQUIRE(grandchild != nullptr);
  CHECK(grandchild->parent() == ch);
  CHECK(grandchild->members() == std::vector<int>{0, 1, 2, 3});
  CHECK(ch->child_count() == 1);
  // The ranks' threads ended, so they are failed everywhere: in the outermost world and in the children.
  for (int r = 0; r < 4; ++r) CHECK(ch->failed(r));
  // reset drops the children.
  w.reset();
  CHECK(w.child_count() == 0);
  CHECK_THROWS_AS((void)w.origin(n), dssync::invalid_argument);
  CHECK(w.origin(3) == 3);
}

TEST_CASE("a failure in a shrunk world is seen in its parent and children, and vice versa") {
  world w(4);
  std::vector<std::string> msgs(4);
  std::vector<int> blamed(4, -99);
  auto errs = w.run_collect([&](communicator& c) {
    communicator& s = c.shrink(5s);  // nobody failed: a copy of the world
    ensure(s.size() == 4, "shrink without failures keeps every rank");
    if (c.rank() == 2) s.owner().inject_fault(s.rank(), 0);  // dies in the child
    std::vector<double> d(100, 1.0);
    try {
      dssync::synchronize(s, d, dssync::ops::sum{}, dssync_test::test_options(10s));
    } catch (const dssync::peer_failure& e) {
      blamed[static_cast<std::size_t>(c.rank())] = e.peer();
      msgs[static_cast<std::size_t>(c.rank())] = e.what();
      s.revoke(e.peer());
    }
    (void)s.agree(false, 5s);
    ensure(c.peer_failed(2) && w.failed(2), "the parent sees rank 2's failure in the child");
  });
  CHECK(dssync_test::holds<dssync::injected_fault>(errs[2]));
  for (int r : {0, 1, 3}) {
    CAPTURE(r);
    CHECK_MESSAGE(!errs[static_cast<std::size_t>(r)], what(errs[static_cast<std::size_t>(r)]));
    CHECK(blamed[static_cast<std::size_t>(r)] == 2);
  }
  // Parent to child: marking a rank of the outermost world fails it in the child too.
  world v(3);
  communicator* kid = nullptr;
  auto errs2 = v.run_collect([&](communicator& c) {
    communicator& s = c.shrink(5s);
    if (c.rank() == 0) kid = &s;
  });
  REQUIRE_MESSAGE(describe_errors(errs2).empty(), describe_errors(errs2));
  REQUIRE(kid != nullptr);
  CHECK(kid->peer_failed(1));  // every thread ended
  CHECK(contains(kid->peer_failure_reason(1), "returned"));
}

TEST_CASE("agree and shrink: a rank marked failed takes no part, even if it calls") {
  world w(3);
  std::string excluded;
  std::vector<int> size(3, -1);
  auto errs = w.run_collect([&](communicator& c) {
    if (c.rank() == 1) {
      c.owner().mark_failed(1, "declared dead by the operator");
      try {
        (void)c.shrink(5s);
      } catch (const dssync::peer_failure& e) {
        excluded = e.what();
      }
      return;
    }
    size[static_cast<std::size_t>(c.rank())] = c.shrink(5s).size();
  });
  REQUIRE_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
  CHECK(size[0] == 2);
  CHECK(size[2] == 2);
  CHECK_MESSAGE(contains(excluded, "not in the shrunk world"), excluded);
  CHECK_MESSAGE(contains(excluded, "declared dead"), excluded);
  w.reset();
  w.mark_failed(2, "unplugged");
  CHECK_THROWS_AS((void)w.comm(2).agree(true, 1s), dssync::peer_failure);
  CHECK_THROWS_AS((void)w.comm(0).agree(true, 0ms), dssync::timeout_error);  // rank 1 is alive and missing
}

}  // TEST_SUITE
