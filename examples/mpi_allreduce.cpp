// An HPC-style MPI program using dssync the way a user would: MPI owns the processes, dssync averages
// the gradients of a data-parallel step. Run: mpiexec -n 4 ./mpi_allreduce [--count N] [--steps K]
//
// The program works on a raw MPI_Comm (as a code that does not use Boost.MPI would), checks the average
// against MPI_Allreduce on the same data, and prints one line per step from rank 0.
#include <mpi.h>

#include <dssync/dssync.hpp>
#include <dssync/transport/mpi.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  std::size_t count = 1 << 20;
  int steps = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--count") == 0) count = std::strtoull(argv[i + 1], nullptr, 10);
    if (std::strcmp(argv[i], "--steps") == 0) steps = std::atoi(argv[i + 1]);
  }
  int status = 0;
  {
    dssync::transport::mpi comm(MPI_COMM_WORLD);
    const int rank = comm.rank(), size = comm.size();
    std::vector<float> grads(count), reference(count);
    for (int step = 0; step < steps && status == 0; ++step) {
      // Each rank's "gradient": a smooth function plus a rank- and step-dependent offset.
      for (std::size_t i = 0; i < count; ++i)
        grads[i] = std::sin(0.001f * static_cast<float>(i)) + static_cast<float>(rank + step);
      MPI_Allreduce(grads.data(), reference.data(), static_cast<int>(count), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
      for (auto& x : reference) x /= static_cast<float>(size);

      MPI_Barrier(MPI_COMM_WORLD);
      const double t0 = MPI_Wtime();
      dssync::synchronize<dssync::algorithms::ring>(comm, dssync::topology::ring(size), grads, dssync::ops::average{});
      const double t = MPI_Wtime() - t0;

      double max_err = 0;
      for (std::size_t i = 0; i < count; ++i)
        max_err = std::fmax(max_err, std::fabs(static_cast<double>(grads[i]) - reference[i]));
      double worst = 0;
      MPI_Allreduce(&max_err, &worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
      if (worst > 1e-5) status = 1;
      if (rank == 0)
        std::printf("step %d: averaged %zu floats over %d ranks in %.3f ms, max |dssync - MPI_Allreduce| = %.2e%s\n",
                    step, count, size, t * 1e3, worst, worst > 1e-5 ? "  MISMATCH" : "");
    }
    if (rank == 0) std::printf("mpi_allreduce: %s\n", status == 0 ? "OK" : "FAILED");
  }
  MPI_Finalize();
  return status;
}
