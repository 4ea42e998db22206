// The schedule verifier: proves the built-in policies correct for every world size 1..64, accepts
// hand-built schedules of every semantics, and rejects planted bugs with a message that names them.

#include <doctest/doctest.h>

#include "test_support.hpp"

using dssync::range;
using dssync::schedule;
using dssync::semantics;
using dssync::step;
using dssync::step_kind;
using dssync_test::contains;

namespace {

schedule make(int n, std::size_t count, semantics kind = semantics::allreduce, std::size_t channels = 1) {
  schedule s;
  s.policy = "hand-built";
  s.world_size = n;
  s.count = count;
  s.kind = kind;
  s.ranks.resize(static_cast<std::size_t>(n));
  for (auto& r : s.ranks) r.channels.resize(channels);
  return s;
}

std::vector<step>& steps(schedule& s, int rank, std::size_t ch = 0) {
  return s.ranks.at(static_cast<std::size_t>(rank)).channels.at(ch).steps;
}

/// Index, on rank `peer` = the receive's peer, of the send that matches receive `i` of rank `r`
/// (rule 1: the k-th send from a to b on a channel matches the k-th receive by b from a).
std::size_t matching_send(schedule& s, int r, std::size_t i, std::size_t ch = 0) {
  const auto& mine = steps(s, r, ch);
  const int peer = mine.at(i).peer;
  std::size_t k = 0;
  for (std::size_t j = 0; j < i; ++j) k += (mine[j].is_recv() && mine[j].peer == peer) ? 1 : 0;
  const auto& theirs = steps(s, peer, ch);
  for (std::size_t j = 0; j < theirs.size(); ++j)
    if (theirs[j].is_send() && theirs[j].peer == r && k-- == 0) return j;
  FAIL("no matching send");
  return 0;
}

std::size_t first_of(const std::vector<step>& st, step_kind k) {
  for (std::size_t i = 0; i < st.size(); ++i)
    if (st[i].kind == k) return i;
  FAIL("no step of that kind");
  return 0;
}

/// Checks that `s` is rejected and that the message contains every one of `subs`.
void expect_rejected(const schedule& s, std::initializer_list<std::string_view> subs) {
  const auto v = dssync::verify(s);
  INFO("schedule:\n" << dssync::to_string(s));
  REQUIRE_MESSAGE(!v.ok, "a broken schedule verified");
  CHECK_FALSE(static_cast<bool>(v));
  for (auto sub : subs) CHECK_MESSAGE(contains(v.message, sub), "message \"" << v.message << "\" lacks \"" << sub << "\"");
  // verify_or_throw raises the same verdict as invalid_argument.
  try {
    dssync::verify_or_throw(s);
    FAIL("verify_or_throw accepted a broken schedule");
  } catch (const dssync::invalid_argument& e) {
    CHECK(contains(e.what(), v.message));
  }
}

void expect_ok(const schedule& s) {
  const auto v = dssync::verify(s);
  INFO("schedule:\n" << dssync::to_string(s));
  CHECK_MESSAGE(v.ok, v.message);
  CHECK_NOTHROW(dssync::verify_or_throw(s));
}

/// Appends the steps of ring(2) over `r` between ranks `a` (playing 0) and `b` (playing 1).
void add_pair_allreduce(schedule& s, int a, int b, range r, std::size_t ch = 0) {
  const auto two = dssync::algorithms::ring::build(2, r.length);
  for (int who = 0; who < 2; ++who) {
    const int me = who == 0 ? a : b, other = who == 0 ? b : a;
    for (step st : two.ranks[static_cast<std::size_t>(who)].channels.at(0).steps) {
      st.peer = other;
      st.data.offset += r.offset;
      steps(s, me, ch).push_back(st);
    }
  }
}

}  // namespace

TEST_SUITE("verifier") {

TEST_CASE("ring and direct verify for every world size 1..64 and many counts") {
  std::size_t verified = 0;
  for (int n = 1; n <= 64; ++n) {
    const std::size_t un = static_cast<std::size_t>(n);
    for (std::size_t count : {std::size_t{0}, std::size_t{1}, un - 1, un, un + 1, std::size_t{1000}, std::size_t{997}}) {
      for (const auto& s : {dssync::algorithms::ring::build(n, count), dssync::algorithms::direct::build(n, count)}) {
        const auto v = dssync::verify(s);
        REQUIRE_MESSAGE(v.ok, s.policy << " n=" << n << " count=" << count << ": " << v.message);
        // Every rank receives all data but its own once in each phase: 2(N-1) * count elements in all.
        std::size_t sends = 0;
        for (const auto& r : s.ranks)
          for (const auto& c : r.channels)
            for (const auto& st : c.steps) sends += st.is_send() ? 1 : 0;
        REQUIRE_MESSAGE(v.messages == sends, s.policy << " n=" << n << " count=" << count);
        REQUIRE_MESSAGE(v.elements_moved == 2 * (un - 1) * count, s.policy << " n=" << n << " count=" << count);
        ++verified;
      }
    }
  }
  CHECK(verified == 64 * 7 * 2);
}

TEST_CASE("a schedule with several channels verifies when the channels touch disjoint ranges") {
  for (int n : {2, 3, 5}) {
    auto s = make(n, 100, semantics::allreduce, 2);
    const auto halves = dssync::partition(100, 2);
    for (std::size_t c = 0; c < 2; ++c) {
      const auto sub = dssync::algorithms::ring::build(n, halves[c].length);
      for (int r = 0; r < n; ++r)
        for (step st : sub.ranks[static_cast<std::size_t>(r)].channels.at(0).steps) {
          st.data.offset += halves[c].offset;
          steps(s, r, c).push_back(st);
        }
    }
    expect_ok(s);
  }
}

TEST_CASE("rejects double counting: a duplicated recv-reduce and its matching send") {
  for (int n = 2; n <= 8; ++n)
    for (bool use_ring : {true, false}) {
      auto s = use_ring ? dssync::algorithms::ring::build(n, 40) : dssync::algorithms::direct::build(n, 40);
      const int r = n / 2;
      const std::size_t i = first_of(steps(s, r), step_kind::recv_reduce);
      const int peer = steps(s, r)[i].peer;
      const std::size_t j = matching_send(s, r, i);
      auto& sender = steps(s, peer);
      sender.insert(sender.begin() + static_cast<std::ptrdiff_t>(j) + 1, sender[j]);
      auto& receiver = steps(s, r);
      receiver.insert(receiver.begin() + static_cast<std::ptrdiff_t>(i) + 1, receiver[i]);
      CAPTURE(n);
      CAPTURE(use_ring);
      expect_rejected(s, {"twice", "rank " + std::to_string(peer)});
    }
}

TEST_CASE("rejects a dropped contribution: one recv-reduce of reduce-scatter turned into recv-copy") {
  for (int n = 2; n <= 8; ++n)
    for (bool use_ring : {true, false}) {
      auto s = use_ring ? dssync::algorithms::ring::build(n, 64) : dssync::algorithms::direct::build(n, 64);
      auto& st = steps(s, 1);
      st[first_of(st, step_kind::recv_reduce)].kind = step_kind::recv_copy;
      CAPTURE(n);
      CAPTURE(use_ring);
      // Rank 1 overwrote its own contribution, and nobody else holds it any more.
      expect_rejected(s, {"lacking the contribution of rank 1"});
    }
}

TEST_CASE("rejects deadlocks") {
  SUBCASE("ring with send and receive swapped on every rank: everyone receives first") {
    for (int n = 2; n <= 6; ++n) {
      auto s = dssync::algorithms::ring::build(n, 60);
      for (int r = 0; r < n; ++r) std::swap(steps(s, r)[0], steps(s, r)[1]);
      CAPTURE(n);
      expect_rejected(s, {"deadlock", "cycle of waits"});
    }
  }
  SUBCASE("two ranks each receive before they send") {
    auto s = make(2, 2);
    steps(s, 0) = {{step_kind::recv_copy, 1, {0, 1}}, {step_kind::send, 1, {1, 1}}};
    steps(s, 1) = {{step_kind::recv_copy, 0, {1, 1}}, {step_kind::send, 0, {0, 1}}};
    expect_rejected(s, {"deadlock", "waits for a message from rank 1", "waits for a message from rank 0"});
  }
  SUBCASE("write-after-read: a pairwise exchange of the same range deadlocks by rule 3") {
    // Each rank sends X and then reduces X in place: the receive must wait until the peer consumed the
    // send (zero copy), and the peer waits for the same. Sound only with a staging copy, which the
    // execution rules do not promise.
    auto s = make(2, 4);
    steps(s, 0) = {{step_kind::send, 1, {0, 4}}, {step_kind::recv_reduce, 1, {0, 4}}};
    steps(s, 1) = {{step_kind::send, 0, {0, 4}}, {step_kind::recv_reduce, 0, {0, 4}}};
    expect_rejected(s, {"deadlock", "to consume its earlier send of overlapping elements"});
  }
  SUBCASE("a three-rank cycle of receives") {
    auto s = make(3, 3);
    for (int r = 0; r < 3; ++r)
      steps(s, r) = {{step_kind::recv_copy, (r + 2) % 3, {0, 1}}, {step_kind::send, (r + 1) % 3, {0, 1}}};
    expect_rejected(s, {"deadlock"});
  }
}

TEST_CASE("rejects an unmatched send") {
  auto s = dssync::algorithms::ring::build(3, 9);
  steps(s, 0).push_back({step_kind::send, 2, {0, 3}});
  expect_rejected(s, {"unmatched send", "rank 0"});
}

TEST_CASE("rejects an unmatched receive") {
  auto s = dssync::algorithms::ring::build(3, 9);
  steps(s, 1).push_back({step_kind::recv_copy, 2, {0, 3}});
  expect_rejected(s, {"unmatched receive", "rank 2 finished without sending it"});
}

TEST_CASE("rejects mismatched message lengths") {
  auto s = dssync::algorithms::ring::build(2, 6);
  auto& st = steps(s, 1);
  const std::size_t i = first_of(st, step_kind::recv_reduce);
  REQUIRE(st[i].data == range{0, 3});
  st[i].data.length = 2;
  expect_rejected(s, {"lengths differ", "(2 vs 3)"});
}

TEST_CASE("rejects a peer out of range, a negative peer and a rank sending to itself") {
  for (int bad : {4, 17, -1, 0}) {
    auto s = dssync::algorithms::ring::build(4, 8);
    steps(s, 0)[0].peer = bad;  // 0 is rank 0 itself
    CAPTURE(bad);
    expect_rejected(s, {"peer " + std::to_string(bad) + " is invalid", "rank 0 channel 0 step 0"});
  }
}

TEST_CASE("rejects a range that ends past the buffer") {
  auto s = dssync::algorithms::ring::build(4, 8);
  steps(s, 2)[1].data = range{7, 2};
  expect_rejected(s, {"range ends past the buffer of 8 elements", "rank 2 channel 0 step 1"});
  auto t = dssync::algorithms::ring::build(4, 8);
  steps(t, 3)[0].data = range{8, 1};
  expect_rejected(t, {"past the buffer"});
}

TEST_CASE("rejects a cross-channel race") {
  SUBCASE("a channel reads a range another channel writes") {
    auto s = make(2, 8, semantics::allreduce, 2);
    add_pair_allreduce(s, 0, 1, range{0, 4}, 0);
    add_pair_allreduce(s, 0, 1, range{4, 4}, 1);
    expect_ok(s);
    steps(s, 0, 1).push_back({step_kind::send, 1, {2, 4}});      // reads [2,4) that channel 0 writes
    steps(s, 1, 1).push_back({step_kind::recv_copy, 0, {4, 4}});
    expect_rejected(s, {"another channel", "rank 0"});
  }
  SUBCASE("two channels write overlapping ranges") {
    auto s = make(2, 8, semantics::allreduce, 2);
    steps(s, 0, 0) = {{step_kind::recv_reduce, 1, {0, 4}}};
    steps(s, 0, 1) = {{step_kind::recv_reduce, 1, {3, 4}}};
    steps(s, 1, 0) = {{step_kind::send, 0, {0, 4}}};
    steps(s, 1, 1) = {{step_kind::send, 0, {3, 4}}};
    expect_rejected(s, {"another channel"});
  }
  SUBCASE("channels that only read the same range do not race") {
    auto s = make(3, 4, semantics::broadcast, 2);
    s.root = 0;
    steps(s, 0, 0) = {{step_kind::send, 1, {0, 4}}};
    steps(s, 0, 1) = {{step_kind::send, 2, {0, 4}}};
    steps(s, 1, 0) = {{step_kind::recv_copy, 0, {0, 4}}};
    steps(s, 2, 1) = {{step_kind::recv_copy, 0, {0, 4}}};
    expect_ok(s);
  }
}

TEST_CASE("rejects malformed schedule headers") {
  auto s = dssync::algorithms::ring::build(3, 9);
  s.ranks.pop_back();
  expect_rejected(s, {"plans for 2 ranks but world size 3"});
  auto z = make(1, 0);
  z.world_size = 0;
  z.ranks.clear();
  expect_rejected(z, {"world size 0 is not positive"});
  auto b = make(3, 4, semantics::broadcast);
  b.root = 3;
  expect_rejected(b, {"root 3 out of range"});
  auto g = make(4, 4, semantics::group_allreduce);
  g.groups = {{0, 1}, {1, 2}};
  expect_rejected(g, {"rank 1 is in two groups"});
  g.groups = {{0, 5}};
  expect_rejected(g, {"group member 5 out of range"});
}

TEST_CASE("broadcast: hand-built schedules") {
  for (int root : {0, 2}) {
    CAPTURE(root);
    SUBCASE("the root sends to every rank, which copies: OK") {
      auto s = make(4, 10, semantics::broadcast);
      s.root = root;
      for (int r = 0; r < 4; ++r)
        if (r != root) {
          steps(s, root).push_back({step_kind::send, r, {0, 10}});
          steps(s, r).push_back({step_kind::recv_copy, root, {0, 10}});
        }
      expect_ok(s);
    }
    SUBCASE("a pipelined chain root -> root+1 -> ...: OK") {
      auto s = make(4, 10, semantics::broadcast);
      s.root = root;
      for (int k = 0; k < 3; ++k) {
        const int a = (root + k) % 4, b = (root + k + 1) % 4;
        for (const range& seg : dssync::segments(range{0, 10}, 3)) {
          steps(s, a).push_back({step_kind::send, b, seg});
          steps(s, b).push_back({step_kind::recv_copy, a, seg});
        }
      }
      // Each rank must receive a segment before forwarding it: reorder to recv then send.
      for (int r = 0; r < 4; ++r) {
        auto& st = steps(s, r);
        std::stable_sort(st.begin(), st.end(), [](const step& x, const step& y) {
          return x.data.offset != y.data.offset ? x.data.offset < y.data.offset : x.is_recv() && y.is_send();
        });
      }
      expect_ok(s);
    }
    SUBCASE("a rank reduces instead of copying: holds its own data too") {
      auto s = make(4, 10, semantics::broadcast);
      s.root = root;
      const int odd = (root + 1) % 4;
      for (int r = 0; r < 4; ++r)
        if (r != root) {
          steps(s, root).push_back({step_kind::send, r, {0, 10}});
          steps(s, r).push_back({r == odd ? step_kind::recv_reduce : step_kind::recv_copy, root, {0, 10}});
        }
      expect_rejected(s, {"rank " + std::to_string(odd) + " ends with elements [0,10) holding the contribution of rank " +
                              std::to_string(odd),
                          "broadcast does not promise it"});
    }
    SUBCASE("a rank is left out") {
      auto s = make(4, 10, semantics::broadcast);
      s.root = root;
      const int left_out = (root + 3) % 4;
      for (int r = 0; r < 4; ++r)
        if (r != root && r != left_out) {
          steps(s, root).push_back({step_kind::send, r, {0, 10}});
          steps(s, r).push_back({step_kind::recv_copy, root, {0, 10}});
        }
      expect_rejected(s, {"rank " + std::to_string(left_out) + " ends with elements [0,10) lacking the contribution of rank " +
                              std::to_string(root)});
    }
    SUBCASE("only part of the buffer reaches a rank") {
      auto s = make(3, 10, semantics::broadcast);
      s.root = root % 3;
      for (int r = 0; r < 3; ++r)
        if (r != s.root) {
          steps(s, s.root).push_back({step_kind::send, r, {0, r == (s.root + 1) % 3 ? 7u : 10u}});
          steps(s, r).push_back({step_kind::recv_copy, s.root, {0, r == (s.root + 1) % 3 ? 7u : 10u}});
        }
      expect_rejected(s, {"[7,10) lacking"});
    }
  }
}

TEST_CASE("reduce: hand-built schedules") {
  const int root = 1;
  auto base = [&] {
    auto s = make(4, 12, semantics::reduce);
    s.root = root;
    for (int r = 0; r < 4; ++r)
      if (r != root) {
        steps(s, r).push_back({step_kind::send, root, {0, 12}});
        steps(s, root).push_back({step_kind::recv_reduce, r, {0, 12}});
      }
    return s;
  };
  SUBCASE("every rank sends to the root, which reduces: OK") { expect_ok(base()); }
  SUBCASE("what non-root ranks end with is unspecified") {
    auto s = base();
    steps(s, 0).push_back({step_kind::recv_copy, 3, {0, 6}});
    steps(s, 3).push_back({step_kind::send, 0, {6, 6}});
    expect_ok(s);
  }
  SUBCASE("a tree: 3 -> 2, 2 -> root, 0 -> root: OK") {
    auto s = make(4, 12, semantics::reduce);
    s.root = root;
    steps(s, 3) = {{step_kind::send, 2, {0, 12}}};
    steps(s, 2) = {{step_kind::recv_reduce, 3, {0, 12}}, {step_kind::send, root, {0, 12}}};
    steps(s, 0) = {{step_kind::send, root, {0, 12}}};
    steps(s, root) = {{step_kind::recv_reduce, 0, {0, 12}}, {step_kind::recv_reduce, 2, {0, 12}}};
    expect_ok(s);
  }
  SUBCASE("the root copies instead of reducing: its own contribution is lost") {
    auto s = base();
    steps(s, root)[0].kind = step_kind::recv_copy;
    expect_rejected(s, {"rank 1 ends with elements [0,12) lacking the contribution of rank 1"});
  }
  SUBCASE("the root misses a rank") {
    auto s = base();
    steps(s, 3).clear();
    steps(s, root).pop_back();
    expect_rejected(s, {"lacking the contribution of rank 3"});
  }
  SUBCASE("the root counts a rank twice") {
    auto s = base();
    steps(s, 0).push_back({step_kind::send, root, {0, 12}});
    steps(s, root).push_back({step_kind::recv_reduce, 0, {0, 12}});
    expect_rejected(s, {"counts the contribution of rank 0 twice"});
  }
}

TEST_CASE("group_allreduce with groups {0,1} and {2,3}: hand-built schedules") {
  auto base = [] {
    auto s = make(4, 10, semantics::group_allreduce);
    s.groups = {{0, 1}, {2, 3}};
    add_pair_allreduce(s, 0, 1, range{0, 10});
    add_pair_allreduce(s, 2, 3, range{0, 10});
    return s;
  };
  SUBCASE("each pair runs ring(2): OK, and average divides by 2") {
    const auto s = base();
    expect_ok(s);
    for (int r = 0; r < 4; ++r) CHECK(s.contributors(r) == 2);
  }
  SUBCASE("the same pairs with the groups {0,3},{1,2} of the next shuffle: wrong") {
    auto s = base();
    s.groups = {{0, 3}, {1, 2}};
    expect_rejected(s, {"lacking the contribution of rank"});
  }
  SUBCASE("a full ring allreduce over all four ranks gives too much") {
    auto s = dssync::algorithms::ring::build(4, 10);
    s.kind = semantics::group_allreduce;
    s.groups = {{0, 1}, {2, 3}};
    expect_rejected(s, {"holding the contribution of rank", "group-allreduce does not promise it"});
  }
  SUBCASE("a pair that only reduce-scatters") {
    auto s = make(4, 10, semantics::group_allreduce);
    s.groups = {{0, 1}, {2, 3}};
    add_pair_allreduce(s, 2, 3, range{0, 10});
    steps(s, 0) = {{step_kind::send, 1, {0, 5}}, {step_kind::recv_reduce, 1, {5, 5}}};
    steps(s, 1) = {{step_kind::send, 0, {5, 5}}, {step_kind::recv_reduce, 0, {0, 5}}};
    expect_rejected(s, {"lacking the contribution of rank"});
  }
  SUBCASE("a rank in no group keeps its own data") {
    auto s = make(3, 10, semantics::group_allreduce);
    s.groups = {{0, 2}};
    add_pair_allreduce(s, 0, 2, range{0, 10});
    expect_ok(s);
    CHECK(s.contributors(1) == 1);
  }
}

}  // TEST_SUITE
