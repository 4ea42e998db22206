#pragma once
// Timing of MPI benchmarks: one region on every rank, between barriers, reported as the slowest rank's.
#include <mpi.h>

namespace dssync_bench {

/// Runs `f()` on every rank of `comm` after a barrier and returns the largest time (seconds) over ranks.
template <class F>
double timed(MPI_Comm comm, F&& f) {
  MPI_Barrier(comm);
  const double t0 = MPI_Wtime();
  f();
  double t = MPI_Wtime() - t0, worst = 0;
  MPI_Allreduce(&t, &worst, 1, MPI_DOUBLE, MPI_MAX, comm);
  return worst;
}

}  // namespace dssync_bench
