// Adaptive compression: top-k's k and QSGD's s chosen from a probe of the network and a target time per
// step; the choice fits its budget and is the least compression that does; on the simulated network,
// the compressed allreduce with the chosen k meets the target that a larger k misses (virtual time).

#include <doctest/doctest.h>

#include <dssync/codecs/adaptive.hpp>
#include <dssync/sim.hpp>

#include <random>

#include "test_support.hpp"

namespace cd = dssync::codecs;
namespace topo = dssync::topology;
namespace tsim = dssync::transport::sim;

namespace {

using dssync_test::gaussian;

std::size_t payload_of(auto codec, const std::vector<float>& g) {
  std::vector<std::byte> w;
  codec.encode(std::span<const float>(g), w);
  return w.size();
}

}  // namespace

TEST_SUITE_BEGIN("codecs");

TEST_CASE("adaptive: the payload budget of the ring allgather from a probe matrix") {
  topo::probe_matrix m(4);
  for (int a = 0; a < 4; ++a)
    for (int b = 0; b < 4; ++b)
      if (a != b) {
        m.bandwidth[m.index(a, b)] = 1e9;
        m.latency[m.index(a, b)] = 1e-6;
      }
  m.bandwidth[m.index(2, 3)] = 2.5e8;  // one slow hop of the ring
  m.latency[m.index(1, 2)] = 5e-6;
  const auto hop = cd::ring_bottleneck(m);
  CHECK(hop.bandwidth == 2.5e8);
  CHECK(hop.latency == 5e-6);
  CHECK(cd::payload_budget(hop, 4, 3e-3) == doctest::Approx((1e-3 - 2 * 5e-6) * 2.5e8));
  CHECK(cd::payload_budget(hop, 4, 1e-5) == 0.0);  // latency alone misses it
  CHECK(std::isinf(cd::payload_budget(hop, 1, 1e-3)));
  CHECK_THROWS_WITH_AS((void)cd::payload_budget(hop, 4, 0.0), doctest::Contains("target 0.000000 s"),
                       dssync::invalid_argument);
  CHECK_THROWS_AS((void)cd::payload_budget({0.0, 1e-6}, 4, 1e-3), dssync::invalid_argument);
}

TEST_CASE("adaptive: top-k keeps the most entries that fit, and QSGD the most levels") {
  const auto g = gaussian(20000, 3);
  for (double budget : {300.0, 2000.0, 10000.0, 60000.0, 1e9}) {
    CAPTURE(budget);
    cd::topk<float> c(0.5);
    const auto before = c.state.residual;
    const auto a = cd::adapt(c, std::span<const float>(g), budget);
    CHECK(c.state.residual == before);  // trial encodes leave the state alone
    CHECK(a.ratio == c.ratio);
    CHECK(a.payload == payload_of(c, g));
    if (a.fits) {
      CHECK(static_cast<double>(a.payload) <= budget);
      const std::size_t k = c.k_of(g.size());
      if (k < g.size()) {  // one more entry would not fit
        cd::topk<float> more(static_cast<double>(k + 1) / static_cast<double>(g.size()));
        while (more.k_of(g.size()) > k + 1) more.ratio = std::nextafter(more.ratio, 0.0);
        CHECK(static_cast<double>(payload_of(more, g)) > budget);
      }
    } else {
      CHECK(c.k_of(g.size()) == 2);  // the floor, ceil(1e-4 * 20000)
    }
    cd::qsgd<float> q(16, 512);
    const auto b = cd::adapt(q, std::span<const float>(g), budget);
    CHECK(q.levels == b.levels);
    CHECK(b.payload == payload_of(q, g));
    if (b.fits && b.levels < 256) {
      cd::qsgd<float> twice = q;
      twice.levels *= 2;
      CHECK(static_cast<double>(payload_of(twice, g)) > budget);
    }
    if (budget == 1e9) {
      CHECK(c.k_of(g.size()) == g.size());
      CHECK(b.levels == 256);
    }
  }
  cd::topk<float> c;
  CHECK_THROWS_AS((void)cd::adapt(c, std::span<const float>(g), 100.0, 0.0), dssync::invalid_argument);
  cd::qsgd<float> q;
  CHECK_THROWS_AS((void)cd::adapt(q, std::span<const float>(g), 100.0, 0u), dssync::invalid_argument);
}

TEST_CASE("adaptive: on the simulated network the adapted top-k meets the target step time; the dense ring misses it") {
  const int n = 4;
  const std::size_t count = 50000;
  const double target = 2e-3;  // 2 ms per synchronization on 1 Gbit/s links
  const topo::star net(n, {1e9 / 8, 5e-6});
  std::vector<double> compressed(n), dense(n), ratio(n);
  tsim::world w{net};
  const auto errs = w.run_collect([&](auto& comm) {
    const auto probe = topo::measure(comm);
    const double budget = cd::payload_budget(cd::ring_bottleneck(probe), comm.size(), target);
    auto g = gaussian(count, static_cast<unsigned>(comm.rank() + 1));
    cd::topk<float> c(0.5);
    (void)cd::adapt(c, std::span<const float>(g), budget);
    // Every rank must keep the same k for the plans to agree: take the smallest.
    std::vector<double> ratios(static_cast<std::size_t>(comm.size()), 0.0);
    ratios[static_cast<std::size_t>(comm.rank())] = c.ratio;
    dssync::synchronize(comm, ratios, dssync::ops::sum{});
    c.ratio = *std::min_element(ratios.begin(), ratios.end());
    ratio[static_cast<std::size_t>(comm.rank())] = c.ratio;
    const double t0 = comm.now();
    dssync::synchronize(comm, g, c, dssync::ops::average{});
    compressed[static_cast<std::size_t>(comm.rank())] = comm.now() - t0;
    auto d = gaussian(count, 9);
    const double t1 = comm.now();
    dssync::synchronize<dssync::algorithms::ring>(comm, topo::full_mesh(comm.size()), d, dssync::ops::average{});
    dense[static_cast<std::size_t>(comm.rank())] = comm.now() - t1;
  });
  REQUIRE_MESSAGE(dssync_test::describe_errors(errs).empty(), dssync_test::describe_errors(errs));
  MESSAGE("adapted top-k keeps " << ratio[0] << " of the entries: " << compressed[0] * 1e3 << " ms against the "
                                 << target * 1e3 << " ms target; the dense ring takes " << dense[0] * 1e3 << " ms");
  for (int r = 0; r < n; ++r) {
    CAPTURE(r);
    CHECK(ratio[static_cast<std::size_t>(r)] < 0.5);
    CHECK(ratio[static_cast<std::size_t>(r)] > 0.005);
    CHECK(compressed[static_cast<std::size_t>(r)] <= target * 1.05);  // virtual time: an event count, not a clock
    CHECK(dense[static_cast<std::size_t>(r)] > target);
  }
}

TEST_SUITE_END();
