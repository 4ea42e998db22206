// The simulated transport: the transport contract (conformance.hpp); virtual time of single messages,
// of ring allreduce against sim::simulate and the alpha-beta formula; segments and FIFO connections;
// scenarios (NIC caps, background flows); virtual sleep; failures, in-flight data of finished ranks and
// deadlock reports.

#include <doctest/doctest.h>

#include <dssync/algorithms/direct.hpp>
#include <dssync/algorithms/ring.hpp>
#include <dssync/sim/simulator.hpp>
#include <dssync/synchronize.hpp>
#include <dssync/topology/full_mesh.hpp>
#include <dssync/topology/racks.hpp>
#include <dssync/topology/ring.hpp>
#include <dssync/topology/star.hpp>
#include <dssync/transport/sim.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <mutex>
#include <numeric>
#include <string>
#include <vector>

#include "conformance.hpp"
#include "test_support.hpp"

namespace tsim = dssync::transport::sim;
namespace topo = dssync::topology;
namespace algo = dssync::algorithms;
using namespace std::chrono_literals;

namespace transport_contract {

/// The simulated transport's harness: n workers on a star of default (100 Gbit/s, 1 us) links.
struct sim_harness {
  using communicator = tsim::communicator;
  static constexpr const char* name = "sim";
  static constexpr bool cancel_retracts = true;
  static constexpr bool detects_failures = true;
  static std::vector<int> world_sizes() { return {2, 3, 5}; }
  template <class F>
  static std::vector<std::exception_ptr> run(int n, F&& f) {
    tsim::world w{topo::star(n)};
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

TEST_SUITE_BEGIN("sim");
TEST_CASE_TEMPLATE_INSTANTIATE(transport_conformance, transport_contract::sim_harness);
TEST_SUITE_END();

namespace {

constexpr double B = 12.5e9;  // 100 Gbit/s
constexpr double lat = 1e-6;

/// World options with independent flows instead of FIFO connections.
tsim::world_options independent_flows() {
  tsim::world_options o;
  o.fifo_connections = false;
  return o;
}

/// World options with every link's latency overridden.
tsim::world_options latency_override(double seconds) {
  tsim::world_options o;
  o.latency = seconds;
  return o;
}

/// 2(N-1)α + 2(N-1)/N·S·β.
double ring_formula(int n, double bytes, double alpha, double bw) {
  return 2.0 * (n - 1) * alpha + 2.0 * (n - 1) / n * bytes / bw;
}

/// Options for a timing run: one message per step (segments at least the chunk), no agreement exchange.
dssync::options timing_options(std::size_t segment_bytes = std::size_t{1} << 30, bool agreement = false) {
  auto o = dssync_test::test_options(30s);
  o.segment_bytes = segment_bytes;
  o.check_agreement = agreement;
  return o;
}

/// Runs ring allreduce of `count` floats per rank on `w` with topology `t`; returns the virtual duration
/// (last finish - first start) and checks the results against the exact sum.
template <class Topology>
double timed_ring(tsim::world& w, const Topology& t, std::size_t count, const dssync::options& opt) {
  const int n = w.size();
  std::vector<std::vector<float>> data(static_cast<std::size_t>(n));
  std::vector<double> start(static_cast<std::size_t>(n)), end(static_cast<std::size_t>(n));
  w.run([&](tsim::communicator& c) {
    auto& v = data[static_cast<std::size_t>(c.rank())];
    v.resize(count);
    for (std::size_t i = 0; i < count; ++i) v[i] = static_cast<float>((i * 7 + static_cast<std::size_t>(c.rank()) * 13) % 101);
    start[static_cast<std::size_t>(c.rank())] = c.now();
    dssync::synchronize<algo::ring>(c, t, v, dssync::ops::sum{}, opt);
    end[static_cast<std::size_t>(c.rank())] = c.now();
  });
  for (std::size_t i = 0; i < count; i += std::max<std::size_t>(1, count / 97)) {
    float want = 0;
    for (int r = 0; r < n; ++r) want += static_cast<float>((i * 7 + static_cast<std::size_t>(r) * 13) % 101);
    REQUIRE(data[0][i] == want);
  }
  CHECK(dssync_test::first_bitwise_difference(data) == -1);
  return *std::max_element(end.begin(), end.end()) - *std::min_element(start.begin(), start.end());
}

}  // namespace

TEST_SUITE("sim") {

TEST_CASE("sim transport: one message arrives after latency + size / bandwidth, zero copy, send completes on consumption") {
  tsim::world w(topo::star(2, {B, lat}));
  auto& a = w.comm(0);
  auto& b = w.comm(1);
  CHECK(w.size() == 2);
  CHECK(w.now() == 0);
  std::vector<std::byte> buf(1 << 20, std::byte{7});
  const dssync::message_key k{1, 0, 0};
  auto s = a.isend(1, k, buf);
  CHECK(w.messages() == 1);
  auto r = b.post_recv(0, k, buf.size());
  CHECK_FALSE(b.try_consume(r, [](std::span<const std::byte>) {}));  // not arrived at t = 0
  CHECK_FALSE(a.test(s));
  const double t = w.settle();
  const double want = 2 * lat + static_cast<double>(buf.size()) / B;  // two hops: w0 -> sw -> w1
  CHECK(t == doctest::Approx(want).epsilon(1e-12));
  CHECK(b.now() == t);
  CHECK_FALSE(a.test(s));  // arrived but not consumed
  const std::byte* seen = nullptr;
  REQUIRE(b.try_consume(r, [&](std::span<const std::byte> x) { seen = x.data(); }));
  CHECK(seen == buf.data());
  CHECK(a.test(s));
  // Link counters saw the bytes.
  const auto& net = w.network();
  const auto e = net.edges_between(0, 2);
  REQUIRE(e.size() == 1);
  CHECK(w.counters(e[0]).bytes == doctest::Approx(static_cast<double>(buf.size())));
  CHECK_FALSE(w.advance());  // nothing pending
}

TEST_CASE("sim transport: wait_progress outside run advances the clock to the message (free mode)") {
  tsim::world w(topo::ring(3, {B, 5e-6}));
  auto& a = w.comm(0);
  auto& c = w.comm(2);
  const std::uint64_t x = 42;
  auto s = a.isend(2, {3, 1, 0}, std::as_bytes(std::span<const std::uint64_t>(&x, 1)));
  auto r = c.post_recv(0, {3, 1, 0}, sizeof x);
  std::uint64_t got = 0;
  REQUIRE(dssync_test::wait_until(c, [&] {
    return c.try_consume(r, [&](std::span<const std::byte> b) { std::memcpy(&got, b.data(), sizeof got); });
  }));
  CHECK(got == 42);
  CHECK(w.now() == doctest::Approx(5e-6 + 8 / B).epsilon(1e-12));  // one hop on the ring: 0 -> 2 directly
  CHECK(a.test(s));
}

TEST_CASE("sim transport: ring allreduce takes the time sim::simulate and the alpha-beta formula give (within 1 %)") {
  for (int n : {2, 3, 5, 8}) {
    for (std::size_t per_rank : {std::size_t{256}, std::size_t{1} << 16}) {
      const std::size_t count = per_rank * static_cast<std::size_t>(n);
      const double bytes = static_cast<double>(count) * 4;
      CAPTURE(n);
      CAPTURE(bytes);
      {
        const topo::ring t(n, {B, lat});
        tsim::world w(t);
        const double got = timed_ring(w, t, count, timing_options());
        const double sim = dssync::sim::simulate(algo::ring::build(n, count), t).completion_time;
        CHECK(got == doctest::Approx(sim).epsilon(0.01));
        CHECK(got == doctest::Approx(ring_formula(n, bytes, lat, B)).epsilon(0.01));
      }
      {
        const topo::star t(n, {B, lat});
        tsim::world w(t);
        const double got = timed_ring(w, t, count, timing_options());
        const double sim = dssync::sim::simulate(algo::ring::build(n, count), t).completion_time;
        CHECK(got == doctest::Approx(sim).epsilon(0.01));
        CHECK(got == doctest::Approx(ring_formula(n, bytes, 2 * lat, B)).epsilon(0.01));  // two hops per message
      }
    }
  }
}

TEST_CASE("sim transport: the agreement exchange overlaps the data: it adds no message round") {
  const int n = 4;
  const std::size_t count = std::size_t{1} << 16;
  const topo::star t(n, {B, lat});
  tsim::world w(t);
  const double without = timed_ring(w, t, count, timing_options());
  const double with = timed_ring(w, t, count, timing_options(std::size_t{1} << 30, true));
  const double path = 2 * lat;  // worker -> switch -> worker
  INFO("without " << without << " s, with " << with << " s");
  // The signatures (~100 B) travel beside the first data messages, so the receives that wait for them
  // start a few ns late, not a path latency late (before the overlap: without + path < with).
  CHECK(with >= without);
  CHECK(with < without + path / 10);
}

TEST_CASE("sim transport: segments pipeline over FIFO connections; as independent flows they arrive together") {
  // Ring allreduce with m = 4 segments per chunk and a latency that dominates the transfer. On FIFO
  // connections a rank forwards segment 1 of a step while segment 2 is on the wire: the dependency
  // chain is 2(N-1) hops of one segment, α + s·β each, and the last segments follow it, so the time is
  // 2(N-1)(α + s·β) + (m-1)·s·β instead of 2(N-1)(α + C·β) (when bandwidth dominates, the links'
  // 2(N-1)·C·β bounds it instead). Independent flows share the route and all finish at the end of the
  // step, like one message: the formula.
  const int n = 4, m = 4;
  const double alpha = 20e-6;
  const std::size_t count = std::size_t{1} << 16;  // 256 KiB per rank, chunk C = 64 KiB
  const double bytes = static_cast<double>(count) * 4;
  const std::size_t seg = count * 4 / static_cast<std::size_t>(n * m);
  const topo::ring t(n, {B, alpha});
  const double formula = ring_formula(n, bytes, alpha, B);
  const double sb = static_cast<double>(seg) / B;
  const double pipelined = 2.0 * (n - 1) * (alpha + sb) + (m - 1) * sb;
  double fifo = 0, independent = 0, whole = 0;
  {
    tsim::world w(t);
    whole = timed_ring(w, t, count, timing_options());
  }
  {
    tsim::world w(t);
    fifo = timed_ring(w, t, count, timing_options(seg));
  }
  {
    tsim::world w(t, independent_flows());
    independent = timed_ring(w, t, count, timing_options(seg));
  }
  INFO("formula " << formula << ", one message per step " << whole << ", fifo segments " << fifo
                  << " (pipelined model " << pipelined << "), independent segments " << independent);
  CHECK(whole == doctest::Approx(formula).epsilon(0.01));
  CHECK(independent == doctest::Approx(formula).epsilon(0.01));
  CHECK(fifo == doctest::Approx(pipelined).epsilon(0.01));
  CHECK(fifo < formula);
}

TEST_CASE("sim transport: a NIC cap and a background flow slow the messages they share links with") {
  const std::size_t size = 1 << 20;
  auto one_way = [&](tsim::world_options o, int src, int dst) {
    tsim::world w(topo::star(4, {B, lat}), std::move(o));
    std::vector<std::byte> buf(size);
    double arrival = 0;
    w.run([&](tsim::communicator& c) {
      const dssync::message_key k{0, 0, 0};
      if (c.rank() == src) {
        auto s = c.isend(dst, k, buf);
        dssync_test::ensure(dssync_test::wait_until(c, [&] { return c.test(s); }), "send never consumed");
      } else if (c.rank() == dst) {
        auto r = c.post_recv(src, k, size);
        dssync_test::ensure(dssync_test::wait_until(c, [&] { return c.try_consume(r, [](auto) {}); }), "no message");
        arrival = c.now();
      }
    });
    return arrival;
  };
  const double base = one_way({}, 0, 1);
  CHECK(base == doctest::Approx(2 * lat + size / B).epsilon(1e-9));
  tsim::world_options capped;
  capped.script = dssync::sim::scenario::parse("at 0 nic 1 cap 25Gbps");
  CHECK(one_way(capped, 0, 1) == doctest::Approx(2 * lat + size / (B / 4)).epsilon(1e-9));
  CHECK(one_way(capped, 2, 3) == doctest::Approx(base).epsilon(1e-9));  // another pair is not affected
  tsim::world_options busy;
  busy.script = dssync::sim::scenario::parse("at 0 background 2->1 id bg");  // shares sw -> w1
  CHECK(one_way(busy, 0, 1) == doctest::Approx(2 * lat + size / (B / 2)).epsilon(1e-9));
  // A scenario action later in virtual time applies when the clock gets there.
  tsim::world_options later;
  later.script = dssync::sim::scenario::parse("at 1 nic 1 cap 25Gbps");
  CHECK(one_way(later, 0, 1) == doctest::Approx(base).epsilon(1e-9));
}

TEST_CASE("sim transport: sleep_for models computation; the clock persists across runs") {
  tsim::world w(topo::star(3, {B, lat}));
  std::vector<double> woke(3);
  w.run([&](tsim::communicator& c) {
    c.sleep_for(0.001 * (c.rank() + 1));
    woke[static_cast<std::size_t>(c.rank())] = c.now();
  });
  CHECK(woke[0] == doctest::Approx(0.001));
  CHECK(woke[1] == doctest::Approx(0.002));
  CHECK(woke[2] == doctest::Approx(0.003));
  CHECK(w.now() == doctest::Approx(0.003));
  // A sleeping rank holds no one else: rank 1 receives rank 0's message at its arrival while rank 2 sleeps.
  double got_at = 0;
  w.run([&](tsim::communicator& c) {
    const std::uint64_t x = 1;
    if (c.rank() == 0) {
      auto s = c.isend(1, {0, 0, 0}, std::as_bytes(std::span<const std::uint64_t>(&x, 1)));
      dssync_test::ensure(dssync_test::wait_until(c, [&] { return c.test(s); }), "not consumed");
    } else if (c.rank() == 1) {
      auto r = c.post_recv(0, {0, 0, 0}, sizeof x);
      dssync_test::ensure(dssync_test::wait_until(c, [&] { return c.try_consume(r, [](auto) {}); }), "no message");
      got_at = c.now();
    } else {
      c.sleep_for(1.0);
    }
  });
  CHECK(got_at == doctest::Approx(0.003 + 2 * lat + 8 / B).epsilon(1e-9));
  CHECK(w.now() == doctest::Approx(1.003));
  CHECK_THROWS_AS(w.comm(0).sleep_for(-1), dssync::invalid_argument);
}

TEST_CASE("sim transport: a finished rank's messages still arrive; a fault in synchronize is reported by its peers") {
  SUBCASE("in-flight data of a finished rank") {
    tsim::world w(topo::star(2, {B, lat}));
    std::vector<std::byte> buf(1 << 16, std::byte{3});  // outlives the run
    bool ok = false;
    w.run([&](tsim::communicator& c) {
      if (c.rank() == 0) {
        (void)c.isend(1, {0, 0, 0}, buf);  // and return at once
        return;
      }
      auto r = c.post_recv(0, {0, 0, 0}, buf.size());
      dssync_test::ensure(dssync_test::wait_until(c, [&] { return c.try_consume(r, [&](auto b) { ok = b[0] == std::byte{3}; }); }),
                          "the finished rank's message never arrived");
      dssync_test::ensure(c.peer_failed(0), "rank 0 finished, but peer_failed(0) is false");
    });
    CHECK(ok);
  }
  SUBCASE("fault injection") {
    const int n = 4;
    tsim::world w(topo::star(n, {B, lat}));
    w.inject_fault(2, 1);
    auto errs = w.run_collect([&](tsim::communicator& c) {
      std::vector<float> v(1000, 1.f);
      dssync::synchronize<algo::ring>(c, topo::star(n, {B, lat}), v, dssync::ops::sum{},
          dssync_test::test_options(10s));
    });
    CHECK(dssync_test::holds<dssync::injected_fault>(errs[2]));
    for (int r : {0, 1, 3}) {
      const auto what = dssync_test::what(errs[static_cast<std::size_t>(r)]);
      CHECK_MESSAGE(dssync_test::holds<dssync::peer_failure>(errs[static_cast<std::size_t>(r)]), what);
      CHECK_MESSAGE(dssync_test::names_rank(what, 2), what);
    }
  }
}

TEST_CASE("sim transport: a deadlock in virtual time raises timeout_error on the waiting ranks, naming what they wait for") {
  tsim::world_options o;
  o.deadlock_after = 200ms;
  tsim::world w(topo::star(3, {B, lat}), o);
  const auto t0 = std::chrono::steady_clock::now();
  auto errs = w.run_collect([&](tsim::communicator& c) {
    // Every rank waits for a message from its left neighbour that is never sent.
    const int left = (c.rank() + c.size() - 1) % c.size();
    auto r = c.post_recv(left, {5, 0, 0}, 8);
    while (!c.try_consume(r, [](auto) {})) c.wait_progress(c.progress_token(), std::chrono::steady_clock::now() + 30s);
  });
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(secs < 5.0);
  int deadlocks = 0;
  for (int r = 0; r < 3; ++r) {
    const auto what = dssync_test::what(errs[static_cast<std::size_t>(r)]);
    INFO("rank " << r << ": " << what);
    REQUIRE(errs[static_cast<std::size_t>(r)]);
    if (dssync_test::holds<dssync::timeout_error>(errs[static_cast<std::size_t>(r)])) {
      ++deadlocks;
      CHECK(dssync_test::contains(what, "deadlock"));
      CHECK(dssync_test::contains(what, "never sent"));
      CHECK(dssync_test::names_rank(what, (r + 2) % 3));
    }
  }
  CHECK(deadlocks >= 1);
  // The next run starts clean.
  CHECK_NOTHROW(w.run([](tsim::communicator&) {}));
}

TEST_CASE("sim transport: without FIFO connections a later small message overtakes on the wire but is consumed in order") {
  tsim::world w(topo::star(2, {B, lat}), independent_flows());
  auto& a = w.comm(0);
  auto& b = w.comm(1);
  std::vector<std::byte> big(1 << 20, std::byte{1});
  const std::byte small[8] = {std::byte{2}};
  const dssync::message_key k{0, 0, 0};
  auto s1 = a.isend(1, k, big);
  auto s2 = a.isend(1, k, std::span<const std::byte>(small, 8));
  auto r1 = b.post_recv(0, k, big.size());
  auto r2 = b.post_recv(0, k, 8);
  while (w.advance()) {
  }
  REQUIRE(b.try_consume(r1, [&](auto x) { CHECK(x.size() == big.size()); }));
  REQUIRE(b.try_consume(r2, [&](auto x) { CHECK(x.size() == 8u); }));
  CHECK(a.test(s1));
  CHECK(a.test(s2));
  // With FIFO connections the small message waits for the big one to leave: it arrives after it.
  tsim::world f(topo::star(2, {B, lat}));
  auto s3 = f.comm(0).isend(1, k, big);
  auto s4 = f.comm(0).isend(1, k, std::span<const std::byte>(small, 8));
  auto r3 = f.comm(1).post_recv(0, k, big.size());
  auto r4 = f.comm(1).post_recv(0, k, 8);
  const double t = f.settle();
  CHECK(t == doctest::Approx(2 * lat + (static_cast<double>(big.size()) + 8) / B).epsilon(1e-12));
  CHECK(f.comm(1).try_consume(r3, [](auto) {}));
  CHECK(f.comm(1).try_consume(r4, [](auto) {}));
  CHECK(f.comm(0).test(s3));
  CHECK(f.comm(0).test(s4));
}

TEST_CASE("sim transport: cancel withdraws a message on the wire and the next one on its connection goes; bad arguments") {
  tsim::world w(topo::star(2, {B, lat}));
  auto& a = w.comm(0);
  auto& b = w.comm(1);
  std::vector<std::byte> big(1 << 20), next(1 << 10);
  const dssync::message_key k{0, 0, 0}, k2{0, 0, 1};
  auto s1 = a.isend(1, k, big);
  auto s2 = a.isend(1, k2, next);  // same connection (rank 0 -> 1, channel 0): waits behind s1
  a.cancel(s1);
  CHECK(a.test(s1));
  const double t = w.settle();
  CHECK(t == doctest::Approx(2 * lat + static_cast<double>(next.size()) / B).epsilon(1e-12));
  auto r1 = b.post_recv(0, k, big.size());
  CHECK_FALSE(b.try_consume(r1, [](auto) {}));
  auto r2 = b.post_recv(0, k2, next.size());
  CHECK(b.try_consume(r2, [](auto) {}));
  CHECK(a.test(s2));

  CHECK_THROWS_AS(a.isend(2, k, next), dssync::invalid_argument);
  topo::network none;
  topo::add_switch(none, "sw");
  CHECK_THROWS_AS(tsim::world{none}, dssync::invalid_argument);
  CHECK_THROWS_AS((tsim::world{topo::star(2), latency_override(-1.0)}), dssync::invalid_argument);
  tsim::world_options bad;
  bad.script = dssync::sim::scenario::parse("at 0 nic 7 cap 1Gbps");
  CHECK_THROWS_AS((tsim::world{topo::star(2), bad}), dssync::invalid_argument);
  CHECK_THROWS_AS(w.inject_fault(2, 0), dssync::invalid_argument);
  // A latency override applies to every link.
  tsim::world slow(topo::star(2, {B, lat}), latency_override(1e-3));
  const std::uint64_t x = 0;
  (void)slow.comm(0).isend(1, k, std::as_bytes(std::span<const std::uint64_t>(&x, 1)));
  CHECK(slow.settle() == doctest::Approx(2e-3 + 8 / B).epsilon(1e-12));
}

}  // TEST_SUITE
