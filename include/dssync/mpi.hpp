#pragma once
/// \file
/// Opt-in umbrella: the core (dssync/dssync.hpp) plus the MPI transports (`transport::mpi`, over
/// Boost.MPI and OpenMPI, and `transport::mpi_shm`, which adds an MPI-3 shared window for on-node
/// peers). Link `dssync::mpi`.

#include "dssync/dssync.hpp"

#include "dssync/transport/mpi.hpp"
#include "dssync/transport/mpi_shm.hpp"
