// BML on BCube(n, k): the verifier proves the schedule for the seed's configurations and more, it runs
// end to end on the in-process transport, and bad worlds or topologies are refused.
#include <doctest/doctest.h>

#include <dssync/algorithms/bcube.hpp>
#include <dssync/dssync.hpp>

#include <cstring>
#include <string>
#include <vector>

namespace {

struct bc {
  int n, k;
};

}  // namespace

TEST_SUITE("algorithms") {
  TEST_CASE("bcube: the verifier proves BML's schedule on BCube(2,2), (3,2), (2,3), (4,2), (3,3) and more") {
    for (const bc c : {bc{2, 1}, bc{2, 2}, bc{3, 2}, bc{2, 3}, bc{4, 2}, bc{3, 3}, bc{5, 2}, bc{2, 4}, bc{4, 3}}) {
      int N = 1;
      for (int i = 0; i < c.k; ++i) N *= c.n;
      for (std::size_t count : {std::size_t{0}, std::size_t{1}, static_cast<std::size_t>(N - 1),
                                static_cast<std::size_t>(c.k * N), static_cast<std::size_t>(c.k * N + 1),
                                std::size_t{997}, std::size_t{100000}}) {
        CAPTURE(c.n);
        CAPTURE(c.k);
        CAPTURE(count);
        const auto s = dssync::algorithms::bcube::build(c.n, c.k, count);
        CHECK(s.world_size == N);
        CHECK(s.channel_count() == static_cast<std::size_t>(c.k));
        const auto v = dssync::verify(s);
        CHECK_MESSAGE(v.ok, v.message);
      }
    }
  }

  TEST_CASE("bcube: each server sends 2(N-1)/(kN) of its buffer per port and channel (BML Table II)") {
    // BCube(3,2), 18 pieces: per channel a server sends 6 + 2 pieces in aggregation and 2 + 6 in broadcast.
    const auto s = dssync::algorithms::bcube::build(3, 2, 18);
    for (int r = 0; r < 9; ++r)
      for (const auto& ch : s.ranks[static_cast<std::size_t>(r)].channels) {
        std::size_t sent = 0;
        for (const auto& st : ch.steps)
          if (st.is_send()) sent += st.data.length;
        CHECK(sent == 16);  // 16 T_C per channel: the seed's total
      }
  }

  TEST_CASE("bcube: refuses a world that is not n^k and a topology that is not a BCube") {
    CHECK_THROWS_AS((void)dssync::algorithms::bcube::build(1, 2, 10), dssync::invalid_argument);
    CHECK_THROWS_AS((void)dssync::algorithms::bcube::build(3, 0, 10), dssync::invalid_argument);
    std::string what;
    try {
      (void)dssync::algorithms::bcube{}.plan(dssync::topology::ring(8), {100, 0});
    } catch (const dssync::invalid_argument& e) {
      what = e.what();
    }
    CHECK_MESSAGE(what.find("not a BCube") != std::string::npos, what);
    dssync::transport::inproc::world w(8);
    auto errors = w.run_collect([](auto& comm) {
      std::vector<float> v(10, 1.f);
      dssync::synchronize<dssync::algorithms::bcube>(comm, dssync::topology::bcube(3, 2), v);
    });
    for (auto& e : errors) {
      REQUIRE(e);
      try {
        std::rethrow_exception(e);
      } catch (const dssync::invalid_argument& x) {
        const std::string m = x.what();
        CHECK_MESSAGE((m.find('9') != std::string::npos && m.find('8') != std::string::npos), m);
      }
    }
  }
}

TEST_SUITE("inproc algorithms") {
  TEST_CASE("bcube: BCube(3,2) and (2,3) on the in-process transport equal the oracle, bitwise identical") {
    for (const bc c : {bc{3, 2}, bc{2, 3}, bc{2, 2}}) {
      int N = 1;
      for (int i = 0; i < c.k; ++i) N *= c.n;
      for (std::size_t count : {std::size_t{0}, std::size_t{7}, std::size_t{10007}}) {
        std::vector<std::vector<float>> out(static_cast<std::size_t>(N));
        dssync::transport::inproc::world w(N);
        dssync::options opt;
        opt.segment_bytes = 256;
        w.run([&](auto& comm) {
          std::vector<float> v(count);
          for (std::size_t i = 0; i < count; ++i) v[i] = static_cast<float>((i % 13) * (comm.rank() + 1));
          dssync::synchronize<dssync::algorithms::bcube>(
              comm, dssync::topology::bcube(c.n, c.k), v, dssync::ops::sum{}, opt);
          out[static_cast<std::size_t>(comm.rank())] = std::move(v);
        });
        for (std::size_t i = 0; i < count; ++i)
          REQUIRE(out[0][i] == static_cast<float>((i % 13) * static_cast<std::size_t>(N * (N + 1) / 2)));
        for (int r = 1; r < N; ++r)
          CHECK(out[0] == out[static_cast<std::size_t>(r)]);  // float ==: integer values, so equal means bitwise equal
      }
    }
  }
}
