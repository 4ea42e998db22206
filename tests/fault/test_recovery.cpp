// BML's server-failure tolerance (seed 003): batch rescaling, link failure as server failure, and
// synchronize_resilient on the in-process transport, with servers killed during the collective.
#include <doctest/doctest.h>

#include <dssync/fault/recovery.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using dssync::transport::inproc::communicator;
using dssync::transport::inproc::world;
using dssync_test::contains;
using dssync_test::describe_errors;
using dssync_test::has_number;
using dssync_test::names_rank;
using dssync_test::what;
namespace fault = dssync::fault;

/// What rank r (original topology rank) contributes: a base-16 digit of its own (so a lost or doubled
/// contribution changes the sum exactly) plus the element index in the high bits (so a misplaced range
/// shows).
std::uint64_t input(int r, std::size_t i) { return (std::uint64_t{1} << (4 * r)) + (static_cast<std::uint64_t>(i) << 40); }

std::vector<std::uint64_t> inputs(int r, std::size_t count) {
  std::vector<std::uint64_t> v(count);
  for (std::size_t i = 0; i < count; ++i) v[i] = input(r, i);
  return v;
}

/// The sequential oracle: the sum over the survivors.
std::vector<std::uint64_t> survivor_sum(const std::vector<int>& survivors, std::size_t count) {
  std::vector<std::uint64_t> v(count, 0);
  for (int r : survivors)
    for (std::size_t i = 0; i < count; ++i) v[i] += input(r, i);
  return v;
}

std::string str(const std::vector<int>& v) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s + "]";
}

struct death {
  int rank;          // original topology rank
  std::size_t step;  // the executor step (counted over the rank's channels) it dies at
};

struct scenario {
  int n = 3, k = 2;
  std::vector<death> first;   // die in attempt 1
  std::vector<death> second;  // die in attempt 2 (injected on the shrunk communicator)
  std::size_t count = 200;
  std::size_t window = 64;    // all of a channel's steps are entered at once: step numbers are per channel
  bool check_agreement = true;
};

struct rank_outcome {
  std::vector<std::uint64_t> data;
  std::vector<int> failed, lost, members;
  int attempts = 0;
  int comm_size = 0;
  std::vector<fault::attempt_error> errors;
  std::vector<int> first_peer;  // e.peer() of each caught error, in its communicator's numbering
};

struct run_outcome {
  std::vector<std::exception_ptr> errs;
  std::vector<rank_outcome> ranks;
};

run_outcome run(const scenario& sc) {
  const dssync::topology::bcube topo(sc.n, sc.k);
  const int N = topo.workers();
  world w(N);
  run_outcome out;
  out.ranks.resize(static_cast<std::size_t>(N));
  auto opt = dssync_test::test_options(10s);
  opt.window = sc.window;
  opt.check_agreement = sc.check_agreement;
  out.errs = w.run_collect([&](communicator& c) {
    const int me = c.rank();
    for (const death& d : sc.first)
      if (d.rank == me) c.owner().inject_fault(me, d.step);
    fault::recovery_options<communicator> ro;
    ro.timeout = 10s;
    ro.before_attempt = [&](communicator& cur, int attempt) {
      if (attempt != 2) return;
      for (const death& d : sc.second)
        if (d.rank == me) cur.owner().inject_fault(cur.rank(), d.step);
    };
    auto data = inputs(me, sc.count);
    auto res = fault::synchronize_resilient(c, topo, data, dssync::ops::sum{}, opt, ro);
    auto& o = out.ranks[static_cast<std::size_t>(me)];
    o.data = std::move(data);
    o.failed = res.failed;
    o.lost = res.lost;
    o.members = res.members;
    o.attempts = res.attempts;
    o.comm_size = res.comm.size();
    o.errors = res.errors;
    for (const auto& e : res.errors) {
      try {
        std::rethrow_exception(e.error);
      } catch (const dssync::peer_failure& x) {
        o.first_peer.push_back(x.peer());
      } catch (const dssync::timeout_error& x) {
        o.first_peer.push_back(-1000 - x.peer());
      } catch (...) {
        o.first_peer.push_back(-2000);
      }
    }
  });
  return out;
}

/// The entry step of `rank`'s last channel in BML's plan on `topo` (0 if it has one channel): a server
/// dying there has already exchanged data on its first channels but sent nothing on the last, so every
/// survivor misses its pieces there and the failure surfaces on every one.
std::size_t last_channel_step(const dssync::topology::bcube& topo, int rank, std::size_t count, std::size_t offset) {
  const auto plan = dssync::algorithms::bcube{}.plan(topo, {count, 0});
  const auto& ch = plan.ranks[static_cast<std::size_t>(rank)].channels;
  std::size_t start = 0;
  for (std::size_t c = 0; c + 1 < ch.size(); ++c) start += ch[c].steps.size();
  return start + offset % std::max<std::size_t>(1, ch.back().steps.size());
}

/// Every error a survivor caught was a `peer_failure` raised by failure marking (the dead server's
/// injected fault, or a revocation naming it), never a `timeout_error` from the 10 s deadline: the
/// failure surfaced as an event, not by waiting out a clock.
void surfaced_by_marking(const run_outcome& out) {
  for (std::size_t r = 0; r < out.ranks.size(); ++r) {
    CAPTURE(r);
    for (const int p : out.ranks[r].first_peer)
      CHECK_MESSAGE(p >= 0, "rank " << r << " caught " << (p <= -2000 ? "an unexpected error" : "a timeout_error")
                                    << " instead of a peer_failure: the failure surfaced only by its deadline");
  }
}

/// Checks a run where every server in `dead` (original ranks) died and each failure surfaced on every
/// survivor: the survivors hold the sum over exactly themselves, bitwise identical, and report the
/// failures; the dead raised injected_fault.
void check_recovered(const scenario& sc, const run_outcome& out) {
  const dssync::topology::bcube topo(sc.n, sc.k);
  const int N = topo.workers();
  std::vector<int> dead;
  for (const auto& d : sc.first) dead.push_back(d.rank);
  for (const auto& d : sc.second) dead.push_back(d.rank);
  std::sort(dead.begin(), dead.end());
  const auto alive = fault::survivors(N, dead);
  const auto want = survivor_sum(alive, sc.count);
  surfaced_by_marking(out);
  const int expected_attempts = 1 + (sc.first.empty() ? 0 : 1) + (sc.second.empty() ? 0 : 1);
  for (int r = 0; r < N; ++r) {
    CAPTURE(r);
    const auto& e = out.errs[static_cast<std::size_t>(r)];
    if (std::binary_search(dead.begin(), dead.end(), r)) {
      CHECK_MESSAGE(dssync_test::holds<dssync::injected_fault>(e), what(e));
      continue;
    }
    REQUIRE_MESSAGE(!e, what(e));
    const auto& o = out.ranks[static_cast<std::size_t>(r)];
    CHECK(o.data == want);
    CHECK_MESSAGE(o.failed == dead, str(o.failed));
    CHECK_MESSAGE(o.lost == dead, str(o.lost));
    CHECK_MESSAGE(o.members == alive, str(o.members));
    CHECK(o.comm_size == static_cast<int>(alive.size()));
    CHECK(o.attempts == expected_attempts);
    REQUIRE(o.errors.size() == static_cast<std::size_t>(expected_attempts - 1));
    // Attempt 1 runs on the original communicator: its numbering is the topology's.
    if (!sc.first.empty()) {
      const auto& a = o.errors[0];
      CHECK(a.attempt == 1);
      bool named = false;
      for (const auto& d : sc.first) named = named || (a.failed_rank == d.rank && o.first_peer[0] == d.rank &&
                                                       names_rank(a.what, d.rank));
      CHECK_MESSAGE(named, "attempt 1 error does not name a dead server: peer " << o.first_peer[0] << ": " << a.what);
    }
    if (!sc.second.empty()) {
      const auto& a = o.errors.back();
      CHECK(a.attempt == 2);
      bool named = false;
      for (const auto& d : sc.second) named = named || a.failed_rank == d.rank;
      CHECK_MESSAGE(named, "attempt 2 error does not name the server that died in it: " << a.failed_rank << ": "
                                                                                          << a.what);
      // Its peer() is in the shrunk communicator's numbering.
      const auto& m1 = fault::survivors(N, [&] {
        std::vector<int> f;
        for (const auto& d : sc.first) f.push_back(d.rank);
        std::sort(f.begin(), f.end());
        return f;
      }());
      const int p = o.first_peer.back();
      CHECK((p >= 0 && p < static_cast<int>(m1.size()) && m1[static_cast<std::size_t>(p)] == a.failed_rank));
    }
  }
  std::vector<std::vector<std::uint64_t>> results;
  for (int r : alive) results.push_back(out.ranks[static_cast<std::size_t>(r)].data);
  CHECK(dssync_test::first_bitwise_difference(results) == -1);
}

}  // namespace

TEST_SUITE("fault inproc") {

TEST_CASE("rescaled_batch is u + u*x/(N-x); distribute_batch splits exactly; bad values are named") {
  CHECK(fault::rescaled_batch(30, 9, 0) == 30.0);
  CHECK(fault::rescaled_batch(30, 9, 1) == doctest::Approx(33.75));
  CHECK(fault::rescaled_batch(32, 8, 2) == doctest::Approx(32.0 + 32.0 * 2 / 6));
  CHECK(fault::rescaled_batch(64, 16, 8) == doctest::Approx(128.0));
  CHECK(fault::rescaled_batch(0, 5, 4) == 0.0);
  // The survivors' total stays the global batch N*u.
  for (int x = 0; x < 9; ++x) CHECK(fault::rescaled_batch(30, 9, x) * (9 - x) == doctest::Approx(270.0));
  auto thrown = [](auto f) {
    try {
      f();
    } catch (const dssync::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("<nothing thrown>");
  };
  std::string m = thrown([] { (void)fault::rescaled_batch(30, 9, 9); });
  CHECK_MESSAGE((contains(m, "x = 9") && contains(m, "N = 9")), m);
  m = thrown([] { (void)fault::rescaled_batch(30, 9, 12); });
  CHECK_MESSAGE(contains(m, "x = 12"), m);
  m = thrown([] { (void)fault::rescaled_batch(30, 9, -1); });
  CHECK_MESSAGE(contains(m, "x = -1"), m);
  m = thrown([] { (void)fault::rescaled_batch(30, 0, 0); });
  CHECK_MESSAGE(contains(m, "N = 0"), m);
  m = thrown([] { (void)fault::rescaled_batch(-2, 9, 1); });
  CHECK_MESSAGE(contains(m, "u = -2"), m);
  m = thrown([] { (void)fault::rescaled_batch(std::nan(""), 9, 1); });
  CHECK_MESSAGE(contains(m, "u = nan"), m);

  const auto b = fault::distribute_batch(270, 8);
  CHECK(b == std::vector<std::size_t>{34, 34, 34, 34, 34, 34, 33, 33});
  CHECK(std::accumulate(b.begin(), b.end(), std::size_t{0}) == 270);
  CHECK(fault::distribute_batch(270, 9) == std::vector<std::size_t>(9, 30));
  CHECK(fault::distribute_batch(2, 4) == std::vector<std::size_t>{1, 1, 0, 0});
  CHECK(fault::distribute_batch(0, 2) == std::vector<std::size_t>{0, 0});
  for (int s = 1; s <= 20; ++s) {
    const auto v = fault::distribute_batch(1000, s);
    CHECK(std::accumulate(v.begin(), v.end(), std::size_t{0}) == 1000);
    CHECK(*std::max_element(v.begin(), v.end()) - *std::min_element(v.begin(), v.end()) <= 1);
  }
  m = thrown([] { (void)fault::distribute_batch(270, 0); });
  CHECK_MESSAGE((has_number(m, 0) && has_number(m, 270)), m);
}

TEST_CASE("a link failure is the failure of its server: every BCube cable names one server") {
  for (const auto& t : {dssync::topology::bcube(3, 2), dssync::topology::bcube(2, 3), dssync::topology::bcube(4, 1)}) {
    CAPTURE(t.name());
    const auto g = t.graph();
    std::size_t edges = 0;
    for (auto [it, end] = boost::edges(g); it != end; ++it, ++edges) {
      const auto u = boost::source(*it, g), v = boost::target(*it, g);
      const int server = static_cast<int>(std::min(u, v));
      CHECK(fault::server_of_link(t, g, *it) == server);
      CHECK(fault::server_of_link(t, v, u) == server);
      // The same cable as (server, level).
      int level = -1;
      for (int l = 0; l < t.k(); ++l)
        if (t.switch_vertex(l, server) == std::max(u, v)) level = l;
      REQUIRE(level >= 0);
      CHECK(fault::server_of_link(t, fault::cable{server, level}) == server);
    }
    CHECK(edges == 2 * static_cast<std::size_t>(t.k()) * static_cast<std::size_t>(t.workers()));
  }
  const dssync::topology::bcube t(3, 2);  // servers 0..8, switches 9..14
  auto thrown = [](auto f) {
    try {
      f();
    } catch (const dssync::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("<nothing thrown>");
  };
  std::string m = thrown([&] { (void)fault::server_of_link(t, fault::cable{9, 0}); });
  CHECK_MESSAGE(contains(m, "server 9"), m);
  m = thrown([&] { (void)fault::server_of_link(t, fault::cable{-1, 0}); });
  CHECK_MESSAGE(contains(m, "server -1"), m);
  m = thrown([&] { (void)fault::server_of_link(t, fault::cable{4, 2}); });
  CHECK_MESSAGE(contains(m, "level 2"), m);
  m = thrown([&] { (void)fault::server_of_link(t, std::size_t{0}, std::size_t{1}); });
  CHECK_MESSAGE((contains(m, "both ends are servers") && contains(m, "0 <-> 1")), m);
  m = thrown([&] { (void)fault::server_of_link(t, std::size_t{9}, std::size_t{12}); });
  CHECK_MESSAGE(contains(m, "both ends are switches"), m);
  m = thrown([&] { (void)fault::server_of_link(t, std::size_t{0}, std::size_t{15}); });
  CHECK_MESSAGE(contains(m, "vertex 15"), m);
  // Server 0 is on switches s0.0 (vertex 9) and s1.0 (vertex 12), not on s0.1 (vertex 10).
  CHECK(fault::server_of_link(t, std::size_t{0}, std::size_t{9}) == 0);
  CHECK(fault::server_of_link(t, std::size_t{12}, std::size_t{0}) == 0);
  m = thrown([&] { (void)fault::server_of_link(t, std::size_t{0}, std::size_t{10}); });
  CHECK_MESSAGE((contains(m, "switch vertex 10") && contains(m, "server 0")), m);

  // failed_servers: servers and the servers of failed links, each once, sorted.
  const std::vector<int> servers = {7, 2};
  const std::vector<fault::cable> links = {{2, 1}, {5, 0}};
  CHECK(fault::failed_servers(t, servers, links) == std::vector<int>{2, 5, 7});
  CHECK(fault::failed_servers(t, servers) == std::vector<int>{2, 7});
  const std::vector<int> bad = {3, 11};
  m = thrown([&] { (void)fault::failed_servers(t, bad); });
  CHECK_MESSAGE(contains(m, "server 11"), m);
}

TEST_CASE("survivors: the others in increasing order; bad failed sets are named") {
  const std::vector<int> f = {4, 0};
  CHECK(fault::survivors(9, f) == std::vector<int>{1, 2, 3, 5, 6, 7, 8});
  CHECK(fault::survivors(3, {}) == std::vector<int>{0, 1, 2});
  auto thrown = [](auto fn) {
    try {
      fn();
    } catch (const dssync::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("<nothing thrown>");
  };
  const std::vector<int> dup = {1, 3, 1}, out = {2, 9}, neg = {-1}, all = {2, 0, 1};
  std::string m = thrown([&] { (void)fault::survivors(9, dup); });
  CHECK_MESSAGE((contains(m, "rank 1") && contains(m, "twice")), m);
  m = thrown([&] { (void)fault::survivors(9, out); });
  CHECK_MESSAGE((contains(m, "rank 9") && contains(m, "0..8")), m);
  m = thrown([&] { (void)fault::survivors(9, neg); });
  CHECK_MESSAGE(contains(m, "rank -1"), m);
  m = thrown([&] { (void)fault::survivors(3, all); });
  CHECK_MESSAGE((contains(m, "all 3") && contains(m, "no survivor")), m);
  m = thrown([&] { (void)fault::survivors(0, {}); });
  CHECK_MESSAGE(contains(m, "N = 0"), m);
}

TEST_CASE("synchronize_resilient without failures is BML on the same communicator, in one attempt") {
  const dssync::topology::bcube topo(3, 2);
  world w(9);
  std::vector<std::vector<std::uint64_t>> out(9);
  std::vector<int> attempts(9), same(9);
  auto errs = w.run_collect([&](communicator& c) {
    auto d = inputs(c.rank(), 333);
    auto res = fault::synchronize_resilient(c, topo, d, dssync::ops::sum{}, dssync_test::test_options(10s));
    out[static_cast<std::size_t>(c.rank())] = d;
    attempts[static_cast<std::size_t>(c.rank())] = res.attempts;
    same[static_cast<std::size_t>(c.rank())] = (&res.comm == &c && res.failed.empty() && res.lost.empty() &&
                                                res.errors.empty() && !res.recovered() && res.members.size() == 9)
                                                   ? 1
                                                   : 0;
  });
  REQUIRE_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
  std::vector<int> all(9);
  std::iota(all.begin(), all.end(), 0);
  for (int r = 0; r < 9; ++r) {
    CHECK(out[static_cast<std::size_t>(r)] == survivor_sum(all, 333));
    CHECK(attempts[static_cast<std::size_t>(r)] == 1);
    CHECK(same[static_cast<std::size_t>(r)] == 1);
  }
}

TEST_CASE("BCube(3,2): any one server dies during the synchronize; the survivors name it and sum exactly their data") {
  const dssync::topology::bcube topo(3, 2);
  for (int x = 0; x < 9; ++x) {
    CAPTURE(x);
    scenario sc;
    sc.first = {{x, last_channel_step(topo, x, sc.count, static_cast<std::size_t>(x))}};
    CAPTURE(sc.first[0].step);
    check_recovered(sc, run(sc));
  }
}

TEST_CASE("BCube(2,3): any one server dies during the synchronize; the survivors name it and sum exactly their data") {
  const dssync::topology::bcube topo(2, 3);
  for (int x = 0; x < 8; ++x) {
    CAPTURE(x);
    scenario sc;
    sc.n = 2;
    sc.k = 3;
    sc.count = 301;
    sc.first = {{x, last_channel_step(topo, x, sc.count, static_cast<std::size_t>(3 * x))}};
    CAPTURE(sc.first[0].step);
    check_recovered(sc, run(sc));
  }
}

TEST_CASE("two servers die in the same synchronize (BCube(3,2) and BCube(2,3))") {
  std::mt19937 g(20250603);
  for (const auto& nk : {std::pair{3, 2}, std::pair{2, 3}}) {
    const dssync::topology::bcube topo(nk.first, nk.second);
    const int N = topo.workers();
    std::vector<std::pair<int, int>> pairs;
    for (int a = 0; a < N; ++a)
      for (int b = a + 1; b < N; ++b) pairs.emplace_back(a, b);
    std::shuffle(pairs.begin(), pairs.end(), g);
    pairs.resize(std::min(pairs.size(), dssync_test::scaled(12, 2)));
    for (const auto& [a, b] : pairs) {
      CAPTURE(topo.name());
      CAPTURE(a);
      CAPTURE(b);
      scenario sc;
      sc.n = nk.first;
      sc.k = nk.second;
      sc.first = {{a, last_channel_step(topo, a, sc.count, static_cast<std::size_t>(b))},
                  {b, last_channel_step(topo, b, sc.count, static_cast<std::size_t>(a))}};
      // No agreement exchange: with it, a revocation caused by one death could stop the other server in
      // the exchange, before its own death, and it would die in the next attempt instead.
      sc.check_agreement = false;
      check_recovered(sc, run(sc));
    }
  }
}

TEST_CASE("a second server dies during the recovery attempt (BCube(3,2) and BCube(2,3))") {
  std::mt19937 g(7);
  for (const auto& nk : {std::pair{3, 2}, std::pair{2, 3}}) {
    const dssync::topology::bcube topo(nk.first, nk.second);
    const int N = topo.workers();
    std::vector<std::pair<int, int>> pairs;
    for (int a = 0; a < N; ++a)
      for (int b = 0; b < N; ++b)
        if (a != b) pairs.emplace_back(a, b);
    std::shuffle(pairs.begin(), pairs.end(), g);
    pairs.resize(std::min(pairs.size(), dssync_test::scaled(12, 2)));
    for (const auto& [a, b] : pairs) {
      CAPTURE(topo.name());
      CAPTURE(a);
      CAPTURE(b);
      scenario sc;
      sc.n = nk.first;
      sc.k = nk.second;
      sc.first = {{a, last_channel_step(topo, a, sc.count, static_cast<std::size_t>(b))}};
      sc.second = {{b, 0}};  // before it sends anything of the re-planned collective
      check_recovered(sc, run(sc));
    }
  }
}

TEST_CASE("successive calls: the shrunk communicator is mapped back to topology ranks, failures accumulate") {
  // A training loop: call 1 loses server 4, call 2 (on the shrunk communicator) loses server 7, call 3 runs
  // on the 7 survivors without failures.
  const dssync::topology::bcube topo(3, 2);
  world w(9);
  const std::size_t count = 150;
  std::vector<std::vector<std::uint64_t>> out(9);
  std::vector<std::string> report(9);
  auto errs = w.run_collect([&](communicator& c) {
    const int me = c.rank();
    auto opt = dssync_test::test_options(10s);
    opt.window = 64;
    if (me == 4) c.owner().inject_fault(4, last_channel_step(topo, 4, count, 1));
    communicator* cur = &c;
    for (int call = 1; call <= 3; ++call) {
      if (call == 2 && me == 7) cur->owner().inject_fault(cur->rank(), 0);
      auto d = inputs(me, count);
      auto res = fault::synchronize_resilient(*cur, topo, d, dssync::ops::sum{}, opt);
      report[static_cast<std::size_t>(me)] += "call " + std::to_string(call) + ": attempts " +
                                              std::to_string(res.attempts) + " failed " + str(res.failed) + " lost " +
                                              str(res.lost) + " members " + str(res.members) + "\n";
      cur = &res.comm;
      out[static_cast<std::size_t>(me)] = d;
    }
  });
  CHECK(dssync_test::holds<dssync::injected_fault>(errs[4]));
  CHECK(dssync_test::holds<dssync::injected_fault>(errs[7]));
  const std::string want =
      "call 1: attempts 2 failed [4] lost [4] members [0,1,2,3,5,6,7,8]\n"
      "call 2: attempts 2 failed [4,7] lost [7] members [0,1,2,3,5,6,8]\n"
      "call 3: attempts 1 failed [4,7] lost [] members [0,1,2,3,5,6,8]\n";
  for (int r : {0, 1, 2, 3, 5, 6, 8}) {
    CAPTURE(r);
    REQUIRE_MESSAGE(!errs[static_cast<std::size_t>(r)], what(errs[static_cast<std::size_t>(r)]));
    CHECK(report[static_cast<std::size_t>(r)] == want);
    CHECK(out[static_cast<std::size_t>(r)] == survivor_sum({0, 1, 2, 3, 5, 6, 8}, count));
  }
}

TEST_CASE("property: wherever a server dies, the survivors end with one consistent, exact outcome") {
  // A server dying late may have delivered everything: then every survivor completes and the result is
  // the sum over all N (one attempt); otherwise every survivor recovers and sums exactly the survivors.
  // Never a mix, never a partial sum.
  std::mt19937 g(424242);
  const int cases = static_cast<int>(dssync_test::scaled(16, 3));
  for (int i = 0; i < cases; ++i) {
    const bool big = i % 2 == 0;
    scenario sc;
    sc.n = big ? 3 : 2;
    sc.k = big ? 2 : 3;
    const dssync::topology::bcube topo(sc.n, sc.k);
    const int N = topo.workers();
    sc.count = std::uniform_int_distribution<std::size_t>(N * sc.k, 700)(g);
    sc.window = std::uniform_int_distribution<std::size_t>(1, 4)(g);
    const int x = std::uniform_int_distribution<int>(0, N - 1)(g);
    const auto steps = dssync::algorithms::bcube{}.plan(topo, {sc.count, 0}).ranks[static_cast<std::size_t>(x)].step_count();
    sc.first = {{x, std::uniform_int_distribution<std::size_t>(0, steps - 1)(g)}};
    CAPTURE(topo.name());
    CAPTURE(sc.count);
    CAPTURE(sc.window);
    CAPTURE(x);
    CAPTURE(sc.first[0].step);
    const auto out = run(sc);
    surfaced_by_marking(out);
    std::vector<int> everyone(static_cast<std::size_t>(N));
    std::iota(everyone.begin(), everyone.end(), 0);
    const std::vector<int> dead = {x};
    const auto alive = fault::survivors(N, dead);
    const int attempts = out.ranks[static_cast<std::size_t>(alive[0])].attempts;
    CHECK((attempts == 1 || attempts == 2));
    const auto want = survivor_sum(attempts == 1 ? everyone : alive, sc.count);
    CHECK(dssync_test::holds<dssync::injected_fault>(out.errs[static_cast<std::size_t>(x)]));
    for (int r : alive) {
      CAPTURE(r);
      REQUIRE_MESSAGE(!out.errs[static_cast<std::size_t>(r)], what(out.errs[static_cast<std::size_t>(r)]));
      const auto& o = out.ranks[static_cast<std::size_t>(r)];
      CHECK(o.attempts == attempts);
      CHECK(o.data == want);
      CHECK(o.failed == (attempts == 1 ? std::vector<int>{} : dead));
    }
  }
}

TEST_CASE("average over the survivors divides by their number") {
  const dssync::topology::bcube topo(3, 2);
  world w(9);
  std::vector<std::vector<double>> out(9);
  auto errs = w.run_collect([&](communicator& c) {
    auto opt = dssync_test::test_options(10s);
    opt.window = 64;
    if (c.rank() == 6) c.owner().inject_fault(6, last_channel_step(topo, 6, 90, 2));
    std::vector<double> d(90, static_cast<double>(c.rank() + 1));
    (void)fault::synchronize_resilient(c, topo, d, dssync::ops::average{}, opt);
    out[static_cast<std::size_t>(c.rank())] = d;
  });
  CHECK(dssync_test::holds<dssync::injected_fault>(errs[6]));
  const double want = (45.0 - 7.0) / 8.0;
  for (int r : {0, 1, 2, 3, 4, 5, 7, 8}) {
    CAPTURE(r);
    REQUIRE_MESSAGE(!errs[static_cast<std::size_t>(r)], what(errs[static_cast<std::size_t>(r)]));
    for (double v : out[static_cast<std::size_t>(r)]) CHECK(v == doctest::Approx(want).epsilon(1e-12));
  }
}

TEST_CASE("synchronize_resilient refuses a world that is not the topology's") {
  const dssync::topology::bcube topo(3, 2);
  world w(8);
  auto errs = w.run_collect([&](communicator& c) {
    std::vector<float> d(10, 1.0f);
    (void)fault::synchronize_resilient(c, topo, d);
  });
  for (const auto& e : errs) {
    CHECK(dssync_test::holds<dssync::invalid_argument>(e));
    CHECK_MESSAGE((contains(what(e), "9 servers") && contains(what(e), "8 ranks")), what(e));
  }
}

}  // TEST_SUITE
