// Packaging test consumer: dssync::mpi from an installed dssync.
#include <dssync/dssync.hpp>
#if __has_include(<dssync/transport/mpi.hpp>)
#include <dssync/transport/mpi.hpp>
#endif

#include <mpi.h>

#include <cstdio>

int main(int argc, char** argv) {
  if (MPI_Init(&argc, &argv) != MPI_SUCCESS) return 1;
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (rank == 0) std::printf("dssync mpi consumer OK (%d ranks)\n", size);
  MPI_Finalize();
  return 0;
}
