// The tuner and `auto` over the MPI transport under a real mpiexec (2, 3 and 4 ranks): `tune` probes
// and measures every eligible policy through transport::mpi, every rank gets the same table (its JSON
// hashed and compared by an MPI reduction), and a communicator on `auto` with that table runs the
// table's pick at each measured size, with exact integer sums.

#include <doctest/doctest.h>

#include <dssync/algorithms/tuning.hpp>
#include <dssync/communicator.hpp>
#include <dssync/transport/mpi.hpp>
#include <dssync/tuner.hpp>

#include <boost/mpi/collectives.hpp>
#include <boost/mpi/communicator.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

TEST_SUITE("mpi") {
  TEST_CASE("mpi tuner: every rank gets the same table, and auto then runs its pick") {
    using namespace std::chrono_literals;
    const boost::mpi::communicator world;
    dssync::transport::mpi t(world);
    const int n = t.size(), me = t.rank();
    dssync::options opt;
    opt.timeout = 60s;
    dssync::tune_options o;
    o.sizes = {4096, 32768};
    o.rounds = 1;
    o.target_sample_seconds = 0;  // one call per sample: events, not clocks
    o.transport = "mpi";
    const auto r = dssync::tune(t, o, opt);
    const auto& table = r.table;
    CHECK(table.world_size == n);
    REQUIRE(table.points.size() == 2);
    for (const auto& p : table.points) {
      CHECK(p.time_of("ring").has_value());
      CHECK(p.time_of("rabenseifner").has_value());
      CHECK_FALSE(p.time_of("bcube").has_value());
    }
    int pairs = 0;
    for (const auto& l : table.links) pairs += l.pairs;
    CHECK(pairs == n * (n - 1) / 2);  // the probe ran over MPI and covered every pair
    const std::uint64_t h = std::hash<std::string>{}(table.to_json());
    std::uint64_t lo = 0, hi = 0;
    boost::mpi::all_reduce(world, h, lo, boost::mpi::minimum<std::uint64_t>());
    boost::mpi::all_reduce(world, h, hi, boost::mpi::maximum<std::uint64_t>());
    CHECK_MESSAGE(lo == hi, "rank " << me << ": the ranks' tables differ");

    dssync::communicator comm(t, opt);
    comm.use_tuning(table);
    for (const auto& p : table.points) {
      const auto& e = comm.policy(dssync::semantics::allreduce, p.bytes, sizeof(std::int32_t));
      const auto want = table.pick(p.bytes, n, table.topology);
      REQUIRE(want.has_value());
      CHECK_MESSAGE(e.name == want->policy, "rank " << me << ": auto runs " << e.name << " at " << p.bytes << " B");
      std::vector<std::int32_t> x(p.bytes / sizeof(std::int32_t), me + 1);
      comm.allreduce(std::span(x));
      std::size_t bad = 0;
      for (auto v : x) bad += v != n * (n + 1) / 2;
      CHECK_MESSAGE(bad == 0, "rank " << me << ": " << bad << " sums differ from the oracle");
    }
  }
}
