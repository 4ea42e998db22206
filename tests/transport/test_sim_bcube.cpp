// BML on the simulated transport: BCube(3,2) and (2,3) give the oracle's sum, bitwise identical on every
// server, and the virtual time of a large buffer is BML's 2(N-1)/(kN)·T_F within a few percent (the
// executor's segments add a little pipeline fill).

#include <doctest/doctest.h>

#include <dssync/algorithms/bcube.hpp>
#include <dssync/synchronize.hpp>
#include <dssync/topology/bcube.hpp>
#include <dssync/transport/sim.hpp>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "test_support.hpp"

namespace tsim = dssync::transport::sim;
namespace topo = dssync::topology;

TEST_SUITE("sim") {

TEST_CASE("sim transport: BML on BCube(3,2) and (2,3) equals the oracle and takes 2(N-1)/(kN) T_F") {
  struct bc {
    int n, k;
  };
  for (const bc c : {bc{3, 2}, bc{2, 3}}) {
    const topo::bcube t(c.n, c.k, {1e9, 0.0});  // 8 Gbit/s, no latency
    const int N = t.workers();
    for (std::size_t count : {std::size_t{0}, std::size_t{13}, std::size_t{1} << 20}) {
      CAPTURE(c.n);
      CAPTURE(c.k);
      CAPTURE(count);
      tsim::world w{t};
      std::vector<std::vector<std::int64_t>> out(static_cast<std::size_t>(N));
      std::vector<double> start(static_cast<std::size_t>(N)), end(static_cast<std::size_t>(N));
      auto opt = dssync_test::test_options();
      opt.segment_bytes = 64 * 1024;
      w.run([&](tsim::communicator& comm) {
        // Rank r adds 2^(5r) · (i % 7 + 1): a lost or doubled contribution changes a 5-bit digit.
        std::vector<std::int64_t> v(count);
        for (std::size_t i = 0; i < count; ++i) v[i] = static_cast<std::int64_t>(i % 7 + 1) << (5 * comm.rank());
        start[static_cast<std::size_t>(comm.rank())] = comm.now();
        dssync::synchronize<dssync::algorithms::bcube>(comm, t, v, dssync::ops::sum{}, opt);
        end[static_cast<std::size_t>(comm.rank())] = comm.now();
        out[static_cast<std::size_t>(comm.rank())] = std::move(v);
      });
      for (std::size_t i = 0; i < count; ++i) {
        std::int64_t want = 0;
        for (int r = 0; r < N; ++r) want += static_cast<std::int64_t>(i % 7 + 1) << (5 * r);
        REQUIRE(out[0][i] == want);
      }
      for (int r = 1; r < N; ++r) CHECK(out[static_cast<std::size_t>(r)] == out[0]);
      if (count == (std::size_t{1} << 20)) {
        const double T_F = static_cast<double>(count) * 8 / 1e9;
        const double took = *std::max_element(end.begin(), end.end()) - *std::min_element(start.begin(), start.end());
        const double bml = 2.0 * (N - 1) / (c.k * N) * T_F;
        CHECK(took >= bml * 0.99);
        CHECK(took <= bml * 1.10);
        MESSAGE("BCube(" << c.n << "," << c.k << "): " << took / T_F << " T_F, BML " << bml / T_F << " T_F");
      }
    }
  }
}

}  // TEST_SUITE
