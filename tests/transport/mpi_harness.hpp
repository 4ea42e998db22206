#pragma once
// The harness that runs the transport contract (conformance.hpp) under mpiexec, for any transport built on
// an MPI communicator (test_mpi_conformance.cpp: transport::mpi; test_mpi_shm.cpp: transport::mpi_shm).
// Each process runs its own rank of every contract run; the outcomes and the values the contract checks
// after a run are exchanged with plain MPI collectives on MPI_COMM_WORLD.

#include <mpi.h>

#include <boost/mpi/communicator.hpp>

#include <cstdint>
#include <exception>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include <dssync/core/error.hpp>

#include "test_support.hpp"

namespace transport_contract {

/// A harness for a transport over MPI (mpi, mpi_shm): `run(n, f)` runs f on this process's rank, when
/// n is the world size. `Make` builds the transport on a communicator: `Make::make(comm)` returns it.
template <class Comm, class Make>
struct mpi_harness_of {
  using communicator = Comm;
  static constexpr bool detects_failures = false;

  static int world_size() {
    int n = 0;
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    return n;
  }
  /// Only the size mpiexec gave; none below 2.
  static std::vector<int> world_sizes() {
    const int n = world_size();
    return n >= 2 ? std::vector<int>{n} : std::vector<int>{};
  }

  /// Runs f on a fresh duplicate of the world communicator (so no message of one run can match in the
  /// next), then gathers every rank's outcome: one exception_ptr per rank, on every process.
  template <class F>
  static std::vector<std::exception_ptr> run(int n, F&& f) {
    if (n != world_size())
      throw std::logic_error("mpi_harness: asked for " + std::to_string(n) + " ranks under a world of " +
                             std::to_string(world_size()));
    int code = 0;
    std::string what;
    {
      communicator comm = Make::make(boost::mpi::communicator(boost::mpi::communicator(), boost::mpi::comm_duplicate));
      try {
        f(comm);
      } catch (const dssync_test::check_failed& e) {
        code = 1, what = e.what();
      } catch (const dssync::injected_fault& e) {
        code = 2, what = e.what();
      } catch (const dssync::malformed_payload& e) {
        code = 3, what = e.what();
      } catch (const dssync::timeout_error& e) {
        code = 4, what = e.what();
      } catch (const dssync::peer_failure& e) {
        code = 5, what = e.what();
      } catch (const dssync::error& e) {
        code = 6, what = e.what();
      } catch (const std::exception& e) {
        code = 7, what = e.what();
      } catch (...) {
        code = 7, what = "<non-std exception>";
      }
    }
    std::vector<int> codes(static_cast<std::size_t>(n));
    MPI_Allgather(&code, 1, MPI_INT, codes.data(), 1, MPI_INT, MPI_COMM_WORLD);
    std::vector<std::string> whats(static_cast<std::size_t>(n));
    for (int r = 0; r < n; ++r) {
      whats[static_cast<std::size_t>(r)] = what;
      broadcast(whats[static_cast<std::size_t>(r)], r);
    }
    std::vector<std::exception_ptr> errs(static_cast<std::size_t>(n));
    for (int r = 0; r < n; ++r) {
      const auto& w = whats[static_cast<std::size_t>(r)];
      switch (codes[static_cast<std::size_t>(r)]) {
        case 0: break;
        case 1: errs[static_cast<std::size_t>(r)] = std::make_exception_ptr(dssync_test::check_failed(w)); break;
        case 2: errs[static_cast<std::size_t>(r)] = std::make_exception_ptr(dssync::injected_fault(w, r)); break;
        case 3: errs[static_cast<std::size_t>(r)] = std::make_exception_ptr(dssync::malformed_payload(w, r)); break;
        case 4: errs[static_cast<std::size_t>(r)] = std::make_exception_ptr(dssync::timeout_error(w, r, -1)); break;
        case 5: errs[static_cast<std::size_t>(r)] = std::make_exception_ptr(dssync::peer_failure(w, r, -1)); break;
        case 6: errs[static_cast<std::size_t>(r)] = std::make_exception_ptr(dssync::error(w, r)); break;
        default: errs[static_cast<std::size_t>(r)] = std::make_exception_ptr(std::runtime_error(w)); break;
      }
    }
    return errs;
  }

  static void fail(communicator& c) {
    c.inject_fault(0);
    c.fault_point(0);
  }

  /// Rank `root`'s value of `x` on every process.
  template <class T>
  static void broadcast(T& x, int root) {
    static_assert(std::is_trivially_copyable_v<T>);
    MPI_Bcast(&x, static_cast<int>(sizeof(T)), MPI_BYTE, root, MPI_COMM_WORLD);
  }
  static void broadcast(std::string& s, int root) {
    auto len = static_cast<std::uint64_t>(s.size());
    MPI_Bcast(&len, 1, MPI_UINT64_T, root, MPI_COMM_WORLD);
    s.resize(static_cast<std::size_t>(len));
    if (len > 0) MPI_Bcast(s.data(), static_cast<int>(len), MPI_CHAR, root, MPI_COMM_WORLD);
  }
};

}  // namespace transport_contract
