// DS-Sync over the MPI transport under a real mpiexec (2, 3 and 4 ranks), with no sub-communicator: the
// plan's own edges carry each group, the agreement is scoped to the group. Every rank checks its group's
// sum against a sequential oracle for several iterations, and digit grouping's exact average after
// log_g N iterations.

#include <doctest/doctest.h>

#include <dssync/algorithms/ds_sync.hpp>
#include <dssync/ops/ops.hpp>
#include <dssync/synchronize.hpp>
#include <dssync/topology/full_mesh.hpp>
#include <dssync/topology/racks.hpp>
#include <dssync/transport/mpi.hpp>

#include <boost/mpi/communicator.hpp>

#include "collective_inputs.hpp"

#include <chrono>
#include <cstdint>
#include <vector>

namespace {

using namespace std::chrono_literals;
namespace alg = dssync::algorithms;
using dssync_test::input;
using dssync_test::inputs_of;

dssync::options opts(std::uint64_t iteration, bool verify) {
  dssync::options o;
  o.timeout = 60s;
  o.iteration = iteration;
  o.verify = verify;  // alternate: whole plans verified, and per-rank parts
  return o;
}

/// Runs `policy` for iterations 0..iterations-1 on `t` and checks each rank's group sum.
template <class Policy, class Topo>
void check_group_sums(dssync::transport::mpi& comm, Policy policy, const Topo& t, std::uint64_t iterations) {
  const int me = comm.rank();
  for (std::uint64_t it = 0; it < iterations; ++it) {
    for (std::size_t count : {std::size_t{0}, std::size_t{1}, std::size_t{4099}}) {
      auto x = inputs_of<std::int64_t>(me, count);
      dssync::synchronize(comm, t, policy, x, dssync::ops::sum{}, opts(it, it % 2 == 0));
      const auto groups = policy.groups(t, it);
      const auto& group = alg::group_of(groups, me);
      REQUIRE(!group.empty());
      std::size_t bad = 0;
      for (std::size_t i = 0; i < count; ++i) {
        std::int64_t want = 0;
        for (int r : group) want += input<std::int64_t>(r, i);
        bad += x[i] != want;
      }
      CHECK_MESSAGE(bad == 0, "rank " << me << ", iteration " << it << ", count " << count << ": " << bad
                                      << " elements differ from the group " << alg::to_string({group}) << "'s sum");
    }
  }
}

}  // namespace

TEST_SUITE("mpi") {
  TEST_CASE("mpi ds_sync: rack rotation and digit grouping, each rank ends with its group's sum") {
    dssync::transport::mpi comm(boost::mpi::communicator{});
    const int n = comm.size();
    check_group_sums(comm, alg::ds_sync{}, dssync::topology::leaf_spine(n % 2 == 0 ? 2 : 1, n % 2 == 0 ? n / 2 : n), 6);
    check_group_sums(comm, alg::basic_ds_sync<alg::digit_grouping>{.shuffle = {.g = 2}}, dssync::topology::full_mesh(n),
                     4);
    alg::ds_sync adjusted;
    adjusted.observe({.slow_workers = {0}});
    check_group_sums(comm, adjusted, dssync::topology::leaf_spine(1, n), 3);
  }

  TEST_CASE("mpi ds_sync: digit grouping averages exactly in log_g N iterations (g = 2 for N = 2, 4; g = 3)") {
    dssync::transport::mpi comm(boost::mpi::communicator{});
    const int n = comm.size(), me = comm.rank();
    const alg::basic_ds_sync<alg::digit_grouping> p{.shuffle = {.g = n == 3 ? 3 : 2}};
    const dssync::topology::full_mesh t(n);
    std::vector<double> x(1000);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<double>((me * 37 + static_cast<int>(i)) % 101);
    for (std::uint64_t it = 0; it < p.period(t); ++it) {
      auto pol = p;
      dssync::synchronize(comm, t, pol, x, dssync::ops::average{}, opts(it, false));
    }
    std::size_t bad = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      double sum = 0;
      for (int r = 0; r < n; ++r) sum += static_cast<double>((r * 37 + static_cast<int>(i)) % 101);
      bad += x[i] != sum / n;
    }
    CHECK_MESSAGE(bad == 0, "rank " << me << ": " << bad << " elements differ from the world mean");
  }
}
