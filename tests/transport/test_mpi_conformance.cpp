// The transport contract (conformance.hpp) instantiated for the MPI transport, under a real mpiexec with
// 2, 3 and 4 ranks. Each process runs its own rank of every contract run; the outcomes and the values the
// contract checks after a run are exchanged with plain MPI collectives on MPI_COMM_WORLD.
//
// What the MPI transport cannot do is declared, not left out: OpenMPI cannot reliably cancel a send, so a
// withdrawn send may still be delivered, with the bytes it had at isend (cancel_retracts = false; the
// transport sends from its own copy, see test_mpi_transport.cpp), and without ULFM peer_failed() never
// turns true (detects_failures = false; the failure census, T::census, names dead ranks after a timeout
// instead, which the contract requires).
#include <doctest/doctest.h>

#include <dssync/transport/mpi.hpp>

#include <mpi.h>

#include <boost/mpi/communicator.hpp>

#include <cstdint>
#include <exception>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "conformance.hpp"
#include "mpi_harness.hpp"

namespace transport_contract {

struct make_mpi {
  static dssync::transport::mpi make(const boost::mpi::communicator& c) { return dssync::transport::mpi(c); }
};

/// The MPI transport's harness.
struct mpi_harness : mpi_harness_of<dssync::transport::mpi, make_mpi> {
  static constexpr const char* name = "mpi";
  static constexpr bool cancel_retracts = false;
  static constexpr bool knows_oversize_length = false;
};

}  // namespace transport_contract

TEST_SUITE_BEGIN("mpi");
TEST_CASE_TEMPLATE_INSTANTIATE(transport_conformance, transport_contract::mpi_harness);
TEST_SUITE_END();
