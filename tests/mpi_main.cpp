// doctest main for the MPI tests, run under mpiexec. MPI is initialised by Boost.MPI's environment;
// ranks other than 0 print only failures, so the log reads like one program's.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <boost/mpi/collectives.hpp>
#include <boost/mpi/communicator.hpp>
#include <boost/mpi/environment.hpp>

#include <functional>

int main(int argc, char** argv) {
  boost::mpi::environment env(argc, argv, boost::mpi::threading::funneled);
  boost::mpi::communicator world;
  doctest::Context ctx;
  ctx.applyCommandLine(argc, argv);
  if (world.rank() != 0) ctx.setOption("minimal", true);
  const int failed = ctx.run() != 0 ? 1 : 0;
  // Every rank returns the same verdict, so mpiexec's exit code reflects any rank's failure.
  const int any = boost::mpi::all_reduce(world, failed, std::plus<int>());
  return any != 0 ? 1 : 0;
}
