// The transport contract (tests/transport/conformance.hpp) instantiated for the in-process transport;
// plus the in-process transport's own promises (zero copy, world handling).

#include <doctest/doctest.h>

#include <array>
#include <atomic>
#include <numeric>
#include <thread>

#include "conformance.hpp"
#include "test_support.hpp"

namespace transport_contract {

/// The in-process transport's harness.
struct inproc_harness {
  using communicator = dssync::transport::inproc::communicator;
  static constexpr const char* name = "inproc";
  static constexpr bool cancel_retracts = true;
  static constexpr bool detects_failures = true;
  static std::vector<int> world_sizes() { return {2, 3, 5}; }
  template <class F>
  static std::vector<std::exception_ptr> run(int n, F&& f) {
    dssync::transport::inproc::world w(n);
    return w.run_collect(std::forward<F>(f));
  }
  static void fail(communicator& c) {
    c.owner().inject_fault(c.rank(), 0);
    c.fault_point(0);
  }
  template <class T>
  static void broadcast(T&, int) {}  // the ranks share the test's memory
};

}  // namespace transport_contract

// doctest takes the suite of a template test case from TEST_SUITE_BEGIN/END around the instantiation.
TEST_SUITE_BEGIN("inproc");
TEST_CASE_TEMPLATE_INSTANTIATE(transport_conformance, transport_contract::inproc_harness);

TEST_SUITE_END();

TEST_SUITE("inproc") {

TEST_CASE("zero copy: the receiver's span points into the sender's buffer") {
  using namespace transport_contract;
  dssync::transport::inproc::world w(2);
  auto& a = w.comm(0);
  auto& b = w.comm(1);
  std::vector<double> buf(100);
  std::iota(buf.begin(), buf.end(), 0.0);
  const dssync::message_key k{1, 0, 0};
  const auto part = std::as_bytes(std::span<const double>(buf).subspan(10, 20));
  auto s = a.isend(1, k, part);
  CHECK_FALSE(a.test(s));  // in process, a send completes only when consumed
  auto r = b.post_recv(0, k, part.size());
  const std::byte* seen = nullptr;
  std::size_t size = 0;
  REQUIRE(b.try_consume(r, [&](std::span<const std::byte> x) {
    seen = x.data();
    size = x.size();
  }));
  CHECK(seen == reinterpret_cast<const std::byte*>(buf.data() + 10));
  CHECK(size == 20 * sizeof(double));
  CHECK(a.test(s));
}

TEST_CASE("cancel withdraws an unconsumed send at once") {
  dssync::transport::inproc::world w(2);
  auto& a = w.comm(0);
  auto& b = w.comm(1);
  const int x = 42;
  const dssync::message_key k{1, 0, 0};
  auto s = a.isend(1, k, std::as_bytes(std::span<const int>(&x, 1)));
  a.cancel(s);
  auto r = b.post_recv(0, k, sizeof(int));
  CHECK_FALSE(b.try_consume(r, [](std::span<const std::byte>) {}));
  CHECK(a.test(s));  // a withdrawn request no longer pends
}

TEST_CASE("world: size, bad arguments, failure marks and reset") {
  CHECK_THROWS_AS(dssync::transport::inproc::world{0}, dssync::invalid_argument);
  CHECK_THROWS_AS(dssync::transport::inproc::world{-2}, dssync::invalid_argument);
  dssync::transport::inproc::world w(3);
  CHECK(w.size() == 3);
  CHECK(w.comm(2).rank() == 2);
  CHECK(w.comm(1).size() == 3);
  CHECK(&w.comm(0).owner() == &w);
  CHECK_THROWS_AS(w.inject_fault(3, 0), dssync::invalid_argument);
  CHECK_THROWS_AS(w.inject_fault(-1, 0), dssync::invalid_argument);
  CHECK_THROWS_AS(w.mark_failed(5, "x"), dssync::invalid_argument);
  CHECK_FALSE(w.failed(1));
  CHECK(w.failure_reason(1).empty());
  w.mark_failed(1, "unplugged");
  CHECK(w.failed(1));
  CHECK(w.failure_reason(1) == "unplugged");
  CHECK(w.comm(0).peer_failed(1));
  CHECK(w.comm(0).peer_failure_reason(1) == "unplugged");
  w.reset();
  CHECK_FALSE(w.failed(1));
  CHECK(w.failure_reason(1).empty());
}

TEST_CASE("run_collect marks finished ranks, run rethrows the lowest failing rank's error") {
  dssync::transport::inproc::world w(4);
  auto errs = w.run_collect([](auto& c) {
    if (c.rank() == 1 || c.rank() == 3) throw std::runtime_error("boom " + std::to_string(c.rank()));
  });
  REQUIRE(errs.size() == 4);
  CHECK_FALSE(errs[0]);
  CHECK(dssync_test::what(errs[1]) == "boom 1");
  CHECK_FALSE(errs[2]);
  CHECK(dssync_test::what(errs[3]) == "boom 3");
  for (int r = 0; r < 4; ++r) CHECK(w.failed(r));  // finished ranks count as gone for their peers
  CHECK(dssync_test::contains(w.failure_reason(0), "returned"));
  CHECK(dssync_test::contains(w.failure_reason(1), "threw"));
  try {
    w.run([](auto& c) {
      if (c.rank() >= 2) throw std::runtime_error("rank " + std::to_string(c.rank()));
    });
    FAIL("run did not rethrow");
  } catch (const std::runtime_error& e) {
    CHECK(std::string(e.what()) == "rank 2");
  }
  // The next job starts clean: no failure mark on itself, call numbers from 0 again.
  std::vector<std::uint32_t> first_call(4, 99);
  std::vector<int> self_failed(4, -1);
  CHECK_NOTHROW(w.run([&](auto& c) {
    self_failed[static_cast<std::size_t>(c.rank())] = c.peer_failed(c.rank()) ? 1 : 0;
    first_call[static_cast<std::size_t>(c.rank())] = c.next_call();
  }));
  CHECK(first_call == std::vector<std::uint32_t>(4, 0));
  CHECK(self_failed == std::vector<int>(4, 0));
}

}  // TEST_SUITE
