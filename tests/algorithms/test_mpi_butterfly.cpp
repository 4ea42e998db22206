// Recursive doubling, Rabenseifner and the one-round exchange over the MPI transport under a real
// mpiexec (2, 3 and 4 ranks: a power of two, and a fold at 3): every rank checks its sums against the
// sequential oracle, and that every rank holds bitwise the same floats (one hash, compared by an
// MPI reduction), with whole plans verified and per-rank parts alternately.

#include <doctest/doctest.h>

#include <dssync/algorithms/butterfly.hpp>
#include <dssync/ops/ops.hpp>
#include <dssync/synchronize.hpp>
#include <dssync/topology/full_mesh.hpp>
#include <dssync/transport/mpi.hpp>

#include <boost/mpi/collectives.hpp>
#include <boost/mpi/communicator.hpp>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <vector>

namespace {

using namespace std::chrono_literals;

template <class P>
void check_policy(dssync::transport::mpi& t) {
  CAPTURE(P::name);
  const boost::mpi::communicator world;
  const int n = t.size(), me = t.rank();
  int call = 0;
  for (std::size_t count : {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{1000}, std::size_t{70001}}) {
    CAPTURE(count);
    dssync::options opt;
    opt.timeout = 60s;
    opt.verify = call++ % 2 == 0;
    // Integers: exact sums.
    std::vector<std::int32_t> x(count);
    for (std::size_t i = 0; i < count; ++i) x[i] = static_cast<std::int32_t>((i * 31 + static_cast<std::size_t>(me) * 7) % 1000);
    dssync::synchronize<P>(t, dssync::topology::full_mesh(n), x, dssync::ops::sum{}, opt);
    std::size_t bad = 0;
    for (std::size_t i = 0; i < count; ++i) {
      std::int32_t want = 0;
      for (int r = 0; r < n; ++r) want += static_cast<std::int32_t>((i * 31 + static_cast<std::size_t>(r) * 7) % 1000);
      bad += x[i] != want;
    }
    CHECK_MESSAGE(bad == 0, "rank " << me << ": " << bad << " sums differ from the oracle");
    // Floats of random values: inexact sums, bitwise equal on every rank.
    std::mt19937 g(static_cast<unsigned>(100 + me));
    std::uniform_real_distribution<float> d(-1.0f, 1.0f);
    std::vector<float> f(count);
    for (auto& v : f) v = d(g);
    dssync::synchronize<P>(t, dssync::topology::full_mesh(n), f, dssync::ops::sum{}, opt);
    std::uint64_t h = 1469598103934665603ull;
    for (float v : f) {
      std::uint32_t bits = 0;
      std::memcpy(&bits, &v, 4);
      h = (h ^ bits) * 1099511628211ull;
    }
    std::uint64_t lo = 0, hi = 0;
    boost::mpi::all_reduce(world, h, lo, boost::mpi::minimum<std::uint64_t>());
    boost::mpi::all_reduce(world, h, hi, boost::mpi::maximum<std::uint64_t>());
    CHECK_MESSAGE(lo == hi, "rank " << me << ": the float results differ across ranks");
  }
}

}  // namespace

TEST_SUITE("mpi") {
  TEST_CASE("mpi butterflies: recursive doubling, Rabenseifner and one-shot equal the oracle, bitwise equal ranks") {
    dssync::transport::mpi t(boost::mpi::communicator{});
    check_policy<dssync::algorithms::recursive_doubling>(t);
    check_policy<dssync::algorithms::rabenseifner>(t);
    check_policy<dssync::algorithms::one_shot>(t);
  }
}
