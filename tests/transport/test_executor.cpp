// The executor over the in-process transport: pipelining parameters, fault injection, dead and silent
// peers, recovery, and schedules of any shape.

#include <doctest/doctest.h>

#include <atomic>
#include <thread>

#include "test_support.hpp"

using namespace std::chrono_literals;
using dssync::topology::full_mesh;
using dssync_test::contains;
using dssync_test::describe_errors;
using dssync_test::holds;
using dssync_test::names_rank;
using dssync_test::what;

namespace {


/// Runs `Policy` on a full mesh of `n` ranks, each holding `count` elements `rank + 1 + i % 7`, and
/// returns the per-rank results (empty where the rank failed) and errors.
template <class Policy, class T>
std::pair<std::vector<std::vector<T>>, std::vector<std::exception_ptr>> run_policy(dssync::transport::inproc::world& w,
                                                                                   std::size_t count,
                                                                                   const dssync::options& opt) {
  const int n = w.size();
  std::vector<std::vector<T>> out(static_cast<std::size_t>(n));
  auto errs = w.run_collect([&](auto& comm) {
    std::vector<T> data(count);
    for (std::size_t i = 0; i < count; ++i) data[i] = static_cast<T>(comm.rank() + 1 + static_cast<int>(i % 7));
    dssync::synchronize<Policy>(comm, full_mesh(n), data, dssync::ops::sum{}, opt);
    out[static_cast<std::size_t>(comm.rank())] = std::move(data);
  });
  return {std::move(out), std::move(errs)};
}

template <class T>
void check_sums(const std::vector<std::vector<T>>& out, int n, std::size_t count) {
  for (int r = 0; r < n; ++r) {
    const auto& d = out[static_cast<std::size_t>(r)];
    REQUIRE_MESSAGE(d.size() == count, "rank " << r);
    for (std::size_t i = 0; i < count; ++i) {
      const T want = static_cast<T>(n * (n + 1) / 2 + n * static_cast<int>(i % 7));
      REQUIRE_MESSAGE(d[i] == want, "rank " << r << " element " << i);
    }
  }
  REQUIRE(dssync_test::first_bitwise_difference(out) == -1);
}

/// Checks the outcome of a run in which rank `victim` failed: the victim raised `injected_fault` (when
/// `injected`), every other rank raised peer_failure or timeout_error naming the victim.
void check_failure_outcome(const std::vector<std::exception_ptr>& errs, int victim, bool injected) {
  INFO(describe_errors(errs));
  for (std::size_t r = 0; r < errs.size(); ++r) {
    const std::string m = what(errs[r]);
    CAPTURE(r);
    if (static_cast<int>(r) == victim) {
      if (injected) {
        CHECK_MESSAGE(holds<dssync::injected_fault>(errs[r]), m);
        CHECK(names_rank(m, victim));
      }
      continue;
    }
    REQUIRE_MESSAGE(errs[r], "rank " << r << " succeeded although rank " << victim << " failed");
    CHECK_MESSAGE((holds<dssync::peer_failure>(errs[r]) || holds<dssync::timeout_error>(errs[r])), m);
    CHECK_MESSAGE(names_rank(m, victim), "rank " << r << "'s error does not name rank " << victim << ": " << m);
  }
}

/// An in-process communicator whose first peer_failed() call stalls for `stall` before answering, as if
/// the thread were preempted right there. Everything else is forwarded.
struct stalling_failure_check {
  using inner = dssync::transport::inproc::communicator;
  using send_request = inner::send_request;
  using recv_request = inner::recv_request;
  using token = inner::token;
  inner& c;
  std::chrono::milliseconds stall;
  mutable bool stalled = false;

  [[nodiscard]] int rank() const { return c.rank(); }
  [[nodiscard]] int size() const { return c.size(); }
  [[nodiscard]] std::uint32_t next_call() { return c.next_call(); }
  send_request isend(int p, dssync::message_key k, std::span<const std::byte> b) { return c.isend(p, k, b); }
  bool test(send_request& r) const { return c.test(r); }
  recv_request post_recv(int p, dssync::message_key k, std::size_t n) const { return c.post_recv(p, k, n); }
  template <class F>
  bool try_consume(recv_request& r, F&& f) {
    return c.try_consume(r, std::forward<F>(f));
  }
  void cancel(send_request& r) { c.cancel(r); }
  void cancel(recv_request& r) { c.cancel(r); }
  [[nodiscard]] token progress_token() const { return c.progress_token(); }
  void wait_progress(token t, dssync::deadline_t d) const { c.wait_progress(t, d); }
  [[nodiscard]] bool peer_failed(int p) const {
    if (!stalled) {
      stalled = true;
      std::this_thread::sleep_for(stall);
    }
    return c.peer_failed(p);
  }
  [[nodiscard]] std::string peer_failure_reason(int p) const { return c.peer_failure_reason(p); }
};
static_assert(dssync::concepts::transport<stalling_failure_check>);

}  // namespace

TEST_SUITE("inproc") {

TEST_CASE("a peer that finishes right after consuming our last send is not reported as failed") {
  // Rank 1 finishes (and run_collect marks it gone) while rank 0 is between a poll that saw its send
  // pending and its check for failed peers. Rank 0's send was consumed, so rank 0 must succeed too.
  dssync::schedule s;
  s.policy = "hand-built";
  s.world_size = 2;
  s.count = 1000;
  s.kind = dssync::semantics::broadcast;
  s.ranks.resize(2);
  s.ranks[0].channels.push_back({{{dssync::step_kind::send, 1, dssync::range{0, 1000}}}});
  s.ranks[1].channels.push_back({{{dssync::step_kind::recv_copy, 0, dssync::range{0, 1000}}}});
  REQUIRE(dssync::verify(s).ok);
  dssync::transport::inproc::world w(2);
  std::vector<float> received;
  auto errs = w.run_collect([&](auto& comm) {
    std::vector<float> data(1000, static_cast<float>(comm.rank() == 0 ? 7 : 0));
    const auto opt = dssync_test::test_options(10s);
    if (comm.rank() == 0) {
      stalling_failure_check slow{comm, 300ms};
      dssync::execute(slow, s, std::span<float>(data), dssync::ops::sum{}, opt, slow.next_call());
    } else {
      std::this_thread::sleep_for(100ms);  // rank 0 polls first, finds nothing, then checks for failures
      dssync::execute(comm, s, std::span<float>(data), dssync::ops::sum{}, opt, comm.next_call());
      received = data;
    }
  });
  CHECK_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
  CHECK(received == std::vector<float>(1000, 7.0f));
}

TEST_CASE("segment sizes and windows: ring and direct give exact results for every combination") {
  for (int n : {3, 4}) {
    dssync::transport::inproc::world w(n);
    const std::size_t count = 1003;
    for (std::size_t seg : {std::size_t{4}, std::size_t{64}, std::size_t{1024}, std::size_t{1} << 20})
      for (std::size_t window : {1u, 2u, 4u, 16u}) {
        CAPTURE(n);
        CAPTURE(seg);
        CAPTURE(window);
        auto opt = dssync_test::test_options();
        opt.with_segment_bytes(seg);
        opt.window = window;
        {
          auto res = run_policy<dssync::algorithms::ring, std::int32_t>(w, count, opt);
          auto& out = res.first;
          auto& errs = res.second;
          REQUIRE_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
          check_sums(out, n, count);
        }
        {
          auto res = run_policy<dssync::algorithms::direct, double>(w, count, opt);
          auto& out = res.first;
          auto& errs = res.second;
          REQUIRE_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
          check_sums(out, n, count);
        }
      }
  }
}

TEST_CASE("receive depth and tiny segments larger than the element size") {
  dssync::transport::inproc::world w(5);
  for (std::size_t depth : {1u, 3u, 8u})
    for (std::size_t seg : {1u, 7u, 24u}) {  // 1 and 7 bytes are below sizeof(double): one element each
      CAPTURE(depth);
      CAPTURE(seg);
      auto opt = dssync_test::test_options();
      opt.recv_depth = depth;
      opt.with_segment_bytes(seg);
      auto res = run_policy<dssync::algorithms::ring, double>(w, 101, opt);
      auto& out = res.first;
      auto& errs = res.second;
      REQUIRE_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
      check_sums(out, 5, 101);
    }
}

TEST_CASE("fault injection: the faulty rank throws injected_fault, all others fail naming it, nobody hangs") {
  struct fault {
    int n, victim;
    std::size_t step;
    bool ring;
  };
  // Steps before the victim's first all-gather send: no peer can finish without the victim.
  const fault faults[] = {{2, 0, 0, true},  {2, 1, 1, true},  {3, 1, 0, true},  {3, 2, 3, true},  {4, 0, 2, true},
                          {4, 3, 5, true},  {6, 2, 7, true},  {2, 1, 0, false}, {3, 0, 2, false}, {4, 2, 1, false},
                          {4, 1, 5, false}, {6, 5, 9, false}};
  for (const fault& f : faults) {
    CAPTURE(f.n);
    CAPTURE(f.victim);
    CAPTURE(f.step);
    CAPTURE(f.ring);
    dssync::transport::inproc::world w(f.n);
    const auto opt = dssync_test::test_options(2s);
    auto errs = w.run_collect([&](auto& comm) {
      std::vector<float> data(1000, 1.0f);
      if (comm.rank() == f.victim) comm.owner().inject_fault(f.victim, f.step);
      if (f.ring)
        dssync::synchronize<dssync::algorithms::ring>(comm, full_mesh(f.n), data, dssync::ops::sum{}, opt);
      else
        dssync::synchronize<dssync::algorithms::direct>(comm, full_mesh(f.n), data, dssync::ops::sum{}, opt);
    });
    check_failure_outcome(errs, f.victim, true);
    CHECK(contains(what(errs[static_cast<std::size_t>(f.victim)]), "step " + std::to_string(f.step)));
  }
}

TEST_CASE("fault injection set on the world before run_collect takes effect") {
  dssync::transport::inproc::world w(3);
  w.inject_fault(1, 0);
  auto errs = w.run_collect([&](auto& comm) {
    std::vector<float> data(100, 1.0f);
    dssync::synchronize(comm, data, dssync::ops::sum{}, dssync_test::test_options(2s));
  });
  check_failure_outcome(errs, 1, true);
}

TEST_CASE("a rank that never calls synchronize: peers raise peer_failure naming it") {
  for (int n : {2, 3, 5})
    for (int absent : {0, n - 1}) {
      CAPTURE(n);
      CAPTURE(absent);
      dssync::transport::inproc::world w(n);
      auto errs = w.run_collect([&](auto& comm) {
        if (comm.rank() == absent) return;  // its function ends at once
        std::vector<double> data(500, 1.0);
        dssync::synchronize(comm, data, dssync::ops::sum{}, dssync_test::test_options(2s));
      });
      CHECK_FALSE(errs[static_cast<std::size_t>(absent)]);
      check_failure_outcome(errs, absent, false);
      for (int r = 0; r < n; ++r)
        if (r != absent) CHECK_MESSAGE(holds<dssync::peer_failure>(errs[static_cast<std::size_t>(r)]), what(errs[static_cast<std::size_t>(r)]));
      if (n == 2) {
        // With one peer there is no one else to blame: exact type, peer and reason.
        try {
          std::rethrow_exception(errs[static_cast<std::size_t>(1 - absent)]);
        } catch (const dssync::peer_failure& e) {
          CHECK(e.peer() == absent);
          CHECK(e.rank() == 1 - absent);
          CHECK(contains(e.what(), "returned"));
        }
      }
    }
}

TEST_CASE("a silent rank (alive, but not answering) makes peers time out in the agreement exchange") {
  const int n = 4, silent = 2;
  dssync::transport::inproc::world w(n);
  std::atomic<int> gave_up{0};  // peers whose call has returned or thrown: events, no clock
  auto errs = w.run_collect([&](auto& comm) {
    if (comm.rank() == silent) {
      // Stay alive until every peer gave up, then leave without calling.
      for (int k = gave_up.load(); k < n - 1; k = gave_up.load()) gave_up.wait(k);
      return;
    }
    struct signal {
      std::atomic<int>& c;
      ~signal() {
        c.fetch_add(1);
        c.notify_all();
      }
    } on_exit{gave_up};
    std::vector<float> data(100, 1.0f);
    dssync::synchronize(comm, data, dssync::ops::sum{}, dssync_test::test_options(1s));
  });
  for (int r = 0; r < n; ++r) {
    if (r == silent) continue;
    const auto& e = errs[static_cast<std::size_t>(r)];
    const std::string m = what(e);
    CAPTURE(r);
    CHECK_MESSAGE(holds<dssync::timeout_error>(e), m);
    CHECK_MESSAGE(names_rank(m, silent), m);
    CHECK_MESSAGE(contains(m, "agreement"), m);
    try {
      std::rethrow_exception(e);
    } catch (const dssync::timeout_error& t) {
      CHECK(t.peer() == silent);
      CHECK(t.rank() == r);
    } catch (...) {
    }
  }
}

TEST_CASE("a silent rank during the steps makes its peer time out naming it and the step") {
  for (bool ring : {true, false}) {
    CAPTURE(ring);
    const int n = 2, silent = 1;
    dssync::transport::inproc::world w(n);
    auto opt = dssync_test::test_options(1s);
    opt.check_agreement = false;  // go straight to the steps
    std::atomic<bool> peer_done{false};  // set when rank 0's call has returned or thrown: an event, no clock
    auto errs = w.run_collect([&](auto& comm) {
      if (comm.rank() == silent) {
        peer_done.wait(false);  // stay silent (and alive) until rank 0 has given up on us
        return;
      }
      struct signal {
        std::atomic<bool>& f;
        ~signal() {
          f.store(true);
          f.notify_all();
        }
      } on_exit{peer_done};
      std::vector<float> data(100, 1.0f);
      if (ring)
        dssync::synchronize<dssync::algorithms::ring>(comm, full_mesh(n), data, dssync::ops::sum{}, opt);
      else
        dssync::synchronize<dssync::algorithms::direct>(comm, full_mesh(n), data, dssync::ops::sum{}, opt);
    });
      const std::string m = what(errs[0]);
    CHECK_MESSAGE(holds<dssync::timeout_error>(errs[0]), m);
    CHECK_MESSAGE(names_rank(m, silent), m);
    CHECK_MESSAGE(contains(m, "step"), m);
    CHECK_MESSAGE(contains(m, ring ? "ring" : "direct"), m);
    CHECK_FALSE(errs[static_cast<std::size_t>(silent)]);
  }
}

TEST_CASE("after an error the world runs again successfully") {
  dssync::transport::inproc::world w(4);
  const auto opt = dssync_test::test_options(2s);
  for (int round = 0; round < 3; ++round) {
    CAPTURE(round);
    // A failing job: a fault, then a mismatch.
    auto errs = w.run_collect([&](auto& comm) {
      std::vector<float> data(round == 1 ? 10 + static_cast<std::size_t>(comm.rank()) : 400, 1.0f);
      if (round != 1 && comm.rank() == 3) comm.owner().inject_fault(3, 1);
      dssync::synchronize(comm, data, dssync::ops::sum{}, opt);
    });
    for (int r = 0; r < 4; ++r) CHECK_MESSAGE(errs[static_cast<std::size_t>(r)], "rank " << r << " did not fail");
    // A clean job on the same world.
    auto res = run_policy<dssync::algorithms::ring, std::int64_t>(w, 333, opt);
    auto& out = res.first;
    auto& ok = res.second;
    REQUIRE_MESSAGE(describe_errors(ok).empty(), describe_errors(ok));
    check_sums(out, 4, 333);
  }
}

TEST_CASE("many collectives in one job keep call numbers in step") {
  dssync::transport::inproc::world w(3);
  std::vector<std::vector<std::int32_t>> out(3);
  auto errs = w.run_collect([&](auto& comm) {
    std::vector<std::int32_t> a(50, comm.rank());
    for (int k = 0; k < 20; ++k) {
      // Alternate policies, sizes and ops; each call must match its peers' call of the same number.
      std::vector<std::int32_t> b(static_cast<std::size_t>(k), 1);
      dssync::synchronize<dssync::algorithms::direct>(comm, full_mesh(3), b, dssync::ops::sum{},
          dssync_test::test_options());
      if (!std::all_of(b.begin(), b.end(), [](std::int32_t x) { return x == 3; }))
        throw dssync_test::check_failed("direct sum wrong at call " + std::to_string(k));
      dssync::synchronize(comm, a, dssync::ops::max{}, dssync_test::test_options());
    }
    out[static_cast<std::size_t>(comm.rank())] = a;
  });
  REQUIRE_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
  for (const auto& a : out) CHECK(a == std::vector<std::int32_t>(50, 2));
}

TEST_CASE("execute runs schedules of any semantics and channel count") {
  using dssync::range;
  using dssync::step_kind;
  const int n = 4;
  const std::size_t count = 64;
  auto make = [&](dssync::semantics kind, std::size_t channels) {
    dssync::schedule s;
    s.policy = "hand-built";
    s.world_size = n;
    s.count = count;
    s.kind = kind;
    s.ranks.resize(n);
    for (auto& r : s.ranks) r.channels.resize(channels);
    return s;
  };
  auto run = [&](const dssync::schedule& s, auto op) {
    REQUIRE_MESSAGE(dssync::verify(s).ok, dssync::verify(s).message);
    std::vector<std::vector<std::int64_t>> out(n);
    dssync::transport::inproc::world w(n);
    auto errs = w.run_collect([&](auto& comm) {
      std::vector<std::int64_t> d(count);
      for (std::size_t i = 0; i < count; ++i) d[i] = (comm.rank() + 1) * 1000 + static_cast<std::int64_t>(i);
      auto opt = dssync_test::test_options();
      opt.with_segment_bytes(40);  // 5 elements per segment
      dssync::execute(comm, s, std::span<std::int64_t>(d), op, opt, comm.next_call());
      out[static_cast<std::size_t>(comm.rank())] = d;
    });
    REQUIRE_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
    return out;
  };

  SUBCASE("two channels, each a ring allreduce over half the buffer") {
    auto s = make(dssync::semantics::allreduce, 2);
    const auto halves = dssync::partition(count, 2);
    for (std::size_t c = 0; c < 2; ++c) {
      const auto sub = dssync::algorithms::ring::build(n, halves[c].length);
      for (int r = 0; r < n; ++r)
        for (auto st : sub.ranks[static_cast<std::size_t>(r)].channels[0].steps) {
          st.data.offset += halves[c].offset;
          s.ranks[static_cast<std::size_t>(r)].channels[c].steps.push_back(st);
        }
    }
    const auto out = run(s, dssync::ops::sum{});
    for (int r = 0; r < n; ++r)
      for (std::size_t i = 0; i < count; ++i)
        REQUIRE(out[static_cast<std::size_t>(r)][i] == 10000 + 4 * static_cast<std::int64_t>(i));
  }
  SUBCASE("broadcast from rank 2 along a chain, segment by segment") {
    auto s = make(dssync::semantics::broadcast, 1);
    s.root = 2;
    for (int k = 0; k < n - 1; ++k) {
      const int a = (2 + k) % n, b = (2 + k + 1) % n;
      s.ranks[static_cast<std::size_t>(a)].channels[0].steps.push_back({step_kind::send, b, range{0, count}});
      s.ranks[static_cast<std::size_t>(b)].channels[0].steps.insert(
          s.ranks[static_cast<std::size_t>(b)].channels[0].steps.begin(), {step_kind::recv_copy, a, range{0, count}});
    }
    const auto out = run(s, dssync::ops::sum{});
    for (int r = 0; r < n; ++r)
      for (std::size_t i = 0; i < count; ++i) REQUIRE(out[static_cast<std::size_t>(r)][i] == 3000 + static_cast<std::int64_t>(i));
  }
  SUBCASE("reduce to rank 0 with max") {
    auto s = make(dssync::semantics::reduce, 1);
    s.root = 0;
    for (int r = 1; r < n; ++r) {
      s.ranks[static_cast<std::size_t>(r)].channels[0].steps.push_back({step_kind::send, 0, range{0, count}});
      s.ranks[0].channels[0].steps.push_back({step_kind::recv_reduce, r, range{0, count}});
    }
    const auto out = run(s, dssync::ops::max{});
    for (std::size_t i = 0; i < count; ++i) REQUIRE(out[0][i] == 4000 + static_cast<std::int64_t>(i));
  }
}

TEST_CASE("execute rejects a buffer or a world that does not fit the schedule") {
  dssync::transport::inproc::world w(2);
  std::vector<float> nine(9);
  const auto s = dssync::algorithms::ring::build(2, 10);
  try {
    dssync::execute(w.comm(0), s, std::span<float>(nine), dssync::ops::sum{}, dssync_test::test_options(), 0);
    FAIL("accepted a 9-element buffer for a 10-element schedule");
  } catch (const dssync::invalid_argument& e) {
    CHECK_MESSAGE(dssync_test::has_number(e.what(), 9), e.what());
    CHECK_MESSAGE(dssync_test::has_number(e.what(), 10), e.what());
  }
  std::vector<float> ten(10);
  const auto three = dssync::algorithms::ring::build(3, 10);
  try {
    dssync::execute(w.comm(1), three, std::span<float>(ten), dssync::ops::sum{}, dssync_test::test_options(), 0);
    FAIL("accepted a 3-rank schedule on 2 ranks");
  } catch (const dssync::invalid_argument& e) {
    CHECK_MESSAGE(dssync_test::has_number(e.what(), 3), e.what());
    CHECK_MESSAGE(dssync_test::has_number(e.what(), 2), e.what());
  }
}

TEST_CASE("options.verify proves each new plan before running it") {
  dssync::transport::inproc::world w(5);
  auto opt = dssync_test::test_options();
  opt.verify = true;
  auto res = run_policy<dssync::algorithms::direct, std::int32_t>(w, 77, opt);
  auto& out = res.first;
  auto& errs = res.second;
  REQUIRE_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
  check_sums(out, 5, 77);
}

}  // TEST_SUITE
