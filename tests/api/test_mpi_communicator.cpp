// dssync::communicator over the MPI transports (mpi, and mpi_shm for the first case) under a real mpiexec (2, 3 and 4 ranks): every collective,
// in place and out of place, allgatherv with lengths known only at run time, asynchronous requests;
// every rank checks against a full sequential oracle.

#include <doctest/doctest.h>

#include <dssync/communicator.hpp>
#include <dssync/transport/mpi.hpp>
#include <dssync/transport/mpi_shm.hpp>

#include <boost/mpi/communicator.hpp>

#include "collective_inputs.hpp"

#include <chrono>
#include <cstdint>
#include <numeric>
#include <vector>

namespace {

using namespace std::chrono_literals;

using dssync_test::input;
using dssync_test::inputs_of;
using dssync_test::sum_over;

dssync::options test_opts() {
  dssync::options o;
  o.timeout = 60s;
  o.verify = true;  // prove every plan the session builds
  return o;
}

/// Every collective of a session over transport `t`, against the oracle.
template <class T>
void check_collectives(T& t) {
  dssync::communicator comm(t, test_opts());
  const int n = comm.size(), me = comm.rank();
  for (std::size_t count : {std::size_t{0}, std::size_t{1}, std::size_t{997}, std::size_t{70001}}) {
    CAPTURE(count);
    auto a = inputs_of<std::int64_t>(me, count);
    comm.allreduce(std::span(a));
    std::size_t bad = 0;
    for (std::size_t i = 0; i < count; ++i) bad += a[i] != sum_over<std::int64_t>(n, i);
    CHECK_MESSAGE(bad == 0, "rank " << me << ": allreduce, " << bad << " elements differ");

    const auto in = inputs_of<double>(me, count);
    const dssync::range mine = dssync::chunk(count, static_cast<std::size_t>(n), static_cast<std::size_t>(me));
    std::vector<double> block(mine.length);
    comm.reduce_scatter(std::span<const double>(in), std::span(block));
    bad = 0;
    for (std::size_t j = 0; j < mine.length; ++j) bad += block[j] != sum_over<double>(n, mine.offset + j);
    CHECK_MESSAGE(bad == 0, "rank " << me << ": reduce-scatter, " << bad << " elements differ");

    // Allgather in place of the reduced blocks: together an allreduce.
    std::vector<double> buf(count, -1.0);
    std::copy(block.begin(), block.end(), buf.begin() + static_cast<std::ptrdiff_t>(mine.offset));
    comm.allgather(std::span(buf));
    bad = 0;
    for (std::size_t i = 0; i < count; ++i) bad += buf[i] != sum_over<double>(n, i);
    CHECK_MESSAGE(bad == 0, "rank " << me << ": allgather of the reduced blocks, " << bad << " elements differ");

    for (int root = 0; root < n; ++root) {
      auto b = inputs_of<float>(me, count);
      comm.broadcast(std::span(b), root);
      bad = 0;
      for (std::size_t i = 0; i < count; ++i) bad += b[i] != input<float>(root, i);
      CHECK_MESSAGE(bad == 0, "rank " << me << ": broadcast from " << root << ", " << bad << " elements differ");
      const auto rin = inputs_of<std::int32_t>(me, count);
      std::vector<std::int32_t> rout(me == root ? count : 0);
      comm.reduce(std::span<const std::int32_t>(rin), std::span(rout), root);
      if (me == root) {
        bad = 0;
        for (std::size_t i = 0; i < count; ++i) bad += rout[i] != sum_over<std::int32_t>(n, i);
        CHECK_MESSAGE(bad == 0, "root " << root << ": reduce, " << bad << " elements differ");
      }
    }
  }
}

}  // namespace

TEST_SUITE("mpi") {
  TEST_CASE("mpi communicator: allreduce, reduce-scatter, allgather, broadcast and reduce equal the oracle") {
    dssync::transport::mpi t(boost::mpi::communicator{});
    check_collectives(t);
  }

  TEST_CASE("mpi communicator over mpi_shm (the MPI-3 shared window): every collective equals the oracle") {
    dssync::transport::mpi_shm t(boost::mpi::communicator{});
    check_collectives(t);
  }

  TEST_CASE("mpi communicator: allgatherv of run-time lengths, and asynchronous requests") {
    dssync::transport::mpi t(boost::mpi::communicator{});
    dssync::communicator comm(t, test_opts());
    const int n = comm.size(), me = comm.rank();
    const std::size_t len = static_cast<std::size_t>((me * 37) % 5) * 1000 + static_cast<std::size_t>(me);
    std::vector<std::int32_t> mine(len, me);
    std::vector<std::int32_t> out;
    const auto sizes = comm.allgatherv(std::span<const std::int32_t>(mine), out);
    REQUIRE(sizes.size() == static_cast<std::size_t>(n));
    std::size_t at = 0;
    for (int r = 0; r < n; ++r) {
      const std::size_t want = static_cast<std::size_t>((r * 37) % 5) * 1000 + static_cast<std::size_t>(r);
      CHECK(sizes[static_cast<std::size_t>(r)] == want);
      std::size_t bad = 0;
      for (std::size_t i = 0; i < want; ++i) bad += out[at + i] != r;
      CHECK_MESSAGE(bad == 0, "rank " << me << ": block of rank " << r << ", " << bad << " elements differ");
      at += want;
    }
    CHECK(out.size() == at);

    // mpi_main.cpp initializes MPI_THREAD_FUNNELED: no background thread may call MPI, so requests run
    // on this thread when waited on.
    int provided = 0;
    MPI_Query_thread(&provided);
    CHECK(comm.async_in_background() == (provided >= MPI_THREAD_SERIALIZED));
    std::vector<std::vector<std::int32_t>> bufs;
    for (int k = 0; k < 4; ++k) bufs.push_back(inputs_of<std::int32_t>(me + k, 5000));
    std::vector<dssync::request> reqs;
    for (auto& b : bufs) reqs.push_back(comm.allreduce_async(std::span(b)));
    std::vector<float> p(3000, static_cast<float>(me));
    reqs.push_back(comm.broadcast_async(std::span(p), n - 1));
    for (auto& r : reqs) r.wait();
    for (int k = 0; k < 4; ++k) {
      std::size_t bad = 0;
      for (std::size_t i = 0; i < 5000; ++i) {
        std::int32_t s = 0;
        for (int r = 0; r < n; ++r) s += input<std::int32_t>(r + k, i);
        bad += bufs[static_cast<std::size_t>(k)][i] != s;
      }
      CHECK_MESSAGE(bad == 0, "rank " << me << ": async allreduce " << k << ", " << bad << " elements differ");
    }
    CHECK(p.front() == static_cast<float>(n - 1));
    CHECK(p.back() == static_cast<float>(n - 1));
  }
}
