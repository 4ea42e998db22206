#pragma once
/// \file
/// Opt-in umbrella: the core (dssync/dssync.hpp) plus the MPI transport (`transport::mpi`, over
/// Boost.MPI and OpenMPI). Link `dssync::mpi`.

#include "dssync/dssync.hpp"

#include "dssync/transport/mpi.hpp"
