// The MPI transport under a real mpiexec (2, 3 and 4 ranks): every policy, every op and element type,
// lengths 0, 1, prime and large, results equal to the oracle and bitwise identical on all ranks, the
// mismatch error and the dead-rank error.
#include <doctest/doctest.h>

#include <dssync/dssync.hpp>
#include <dssync/transport/mpi.hpp>

#include <boost/mpi/collectives.hpp>
#include <boost/mpi/communicator.hpp>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

namespace {

using namespace std::chrono_literals;

boost::mpi::communicator world_comm() { return boost::mpi::communicator(); }

// Inputs every rank can compute for every other rank, so each checks against a full sequential oracle.
template <class T>
T input(int rank, std::size_t i) {
  const auto v = static_cast<std::int64_t>((i * 2654435761u + static_cast<std::size_t>(rank) * 40503u) % 2001) - 1000;
  return static_cast<T>(v);
}

template <class T, class Op>
std::vector<T> oracle(int n, std::size_t count, const Op& op) {
  std::vector<T> out(count);
  for (std::size_t i = 0; i < count; ++i) {
    T acc = input<T>(0, i);
    for (int r = 1; r < n; ++r) acc = op(acc, input<T>(r, i));
    out[i] = acc;
  }
  if constexpr (dssync::concepts::finalizing_op<Op, T>) op.finalize(std::span<T>(out), n);
  return out;
}

// A 64-bit FNV hash of the bytes, gathered from all ranks to prove bitwise identical results.
template <class T>
std::uint64_t digest(const std::vector<T>& v) {
  std::uint64_t h = 1469598103934665603ull;
  const auto* p = reinterpret_cast<const unsigned char*>(v.data());
  for (std::size_t i = 0; i < v.size() * sizeof(T); ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

template <class T, class Policy, class Op>
void check_case(dssync::transport::mpi& comm, std::size_t count, const Op& op) {
  const int n = comm.size(), me = comm.rank();
  std::vector<T> data(count);
  for (std::size_t i = 0; i < count; ++i) data[i] = input<T>(me, i);
  dssync::options opt;
  opt.timeout = 60s;
  opt.segment_bytes = 4096;  // many segments even for mid sizes
  dssync::synchronize<Policy>(comm, dssync::topology::full_mesh(n), data, op, opt);
  const auto want = oracle<T>(n, count, op);
  std::size_t bad = 0;
  for (std::size_t i = 0; i < count; ++i) bad += std::memcmp(&data[i], &want[i], sizeof(T)) != 0 ? 1 : 0;
  CHECK_MESSAGE(bad == 0, "rank " << me << " policy " << Policy::name << " op " << dssync::op_name<Op>() << " count "
                                  << count << ": " << bad << " elements differ from the oracle");
  std::vector<std::uint64_t> all;
  boost::mpi::all_gather(comm.communicator(), digest(data), all);
  for (int r = 1; r < n; ++r) CHECK_MESSAGE(all[static_cast<std::size_t>(r)] == all[0], "rank " << r << " differs from rank 0");
}

template <class T, class Policy>
void all_ops(dssync::transport::mpi& comm, std::size_t count) {
  check_case<T, Policy>(comm, count, dssync::ops::sum{});
  check_case<T, Policy>(comm, count, dssync::ops::average{});
  check_case<T, Policy>(comm, count, dssync::ops::min{});
  check_case<T, Policy>(comm, count, dssync::ops::max{});
}

}  // namespace

TEST_SUITE("mpi") {
  TEST_CASE("mpi transport: every policy, op and type equals the oracle, bitwise identical on all ranks") {
    dssync::transport::mpi comm(world_comm());
    // Integer-valued inputs keep float sums exact, so floats compare bitwise with the oracle as well.
    for (std::size_t count : {std::size_t{0}, std::size_t{1}, std::size_t{997}, std::size_t{100003}}) {
      CAPTURE(count);
      all_ops<float, dssync::algorithms::ring>(comm, count);
      all_ops<double, dssync::algorithms::direct>(comm, count);
      all_ops<std::int32_t, dssync::algorithms::ring>(comm, count);
      all_ops<std::int64_t, dssync::algorithms::direct>(comm, count);
    }
  }

  TEST_CASE("mpi transport: large buffers with default segments, both policies") {
    dssync::transport::mpi comm(world_comm());
    const std::size_t count = (std::size_t{1} << 22) + 3;  // 16 MiB of float, not divisible by N
    for (int rep = 0; rep < 2; ++rep) {
      std::vector<float> a(count);
      for (std::size_t i = 0; i < count; ++i) a[i] = input<float>(comm.rank(), i);
      auto b = a;
      dssync::synchronize<dssync::algorithms::ring>(comm, dssync::topology::ring(comm.size()), a);
      dssync::synchronize<dssync::algorithms::direct>(comm, dssync::topology::full_mesh(comm.size()), b);
      const auto want = oracle<float>(comm.size(), count, dssync::ops::sum{});
      CHECK(std::memcmp(a.data(), want.data(), count * sizeof(float)) == 0);
      CHECK(std::memcmp(b.data(), want.data(), count * sizeof(float)) == 0);
    }
  }

  TEST_CASE("mpi transport: raw MPI_Comm constructor and split sub-communicators") {
    dssync::transport::mpi comm(static_cast<MPI_Comm>(world_comm()));
    auto sub = comm.split(comm.rank() % 2);
    std::vector<std::int64_t> v(1001, comm.rank());
    dssync::synchronize(*sub, v);
    std::int64_t want = 0;
    for (int r = comm.rank() % 2; r < comm.size(); r += 2) want += r;
    CHECK(v.front() == want);
    CHECK(v.back() == want);
  }

  TEST_CASE("mpi transport: mismatched element count raises mismatch_error on every rank") {
    dssync::transport::mpi comm(world_comm());
    const int last = comm.size() - 1;
    std::vector<float> v(comm.rank() == last ? 999 : 1000, 1.f);
    std::string what;
    try {
      dssync::synchronize(comm, v);
    } catch (const dssync::mismatch_error& e) {
      what = e.what();
    }
    CHECK_MESSAGE(what.find("999") != std::string::npos, what);
    CHECK_MESSAGE(what.find("1000") != std::string::npos, what);
    CHECK_MESSAGE(what.find("rank") != std::string::npos, what);
    // The communicator stays usable: the mismatch is found before any data moves.
    std::vector<float> w(10, 1.f);
    dssync::synchronize(comm, w);
    CHECK(w[0] == static_cast<float>(comm.size()));
  }

  TEST_CASE("mpi transport: mismatched type and op raise mismatch_error") {
    dssync::transport::mpi comm(world_comm());
    std::string what;
    try {
      if (comm.rank() == 0) {
        std::vector<double> v(64, 1.0);
        dssync::synchronize(comm, v);
      } else {
        std::vector<float> v(64, 1.f);
        dssync::synchronize(comm, v);
      }
    } catch (const dssync::mismatch_error& e) {
      what = e.what();
    }
    CHECK_MESSAGE(what.find("float32") != std::string::npos, what);
    CHECK_MESSAGE(what.find("float64") != std::string::npos, what);
    what.clear();
    std::vector<int> v(64, 1);
    try {
      if (comm.rank() == 0)
        dssync::synchronize(comm, v, dssync::ops::max{});
      else
        dssync::synchronize(comm, v, dssync::ops::sum{});
    } catch (const dssync::mismatch_error& e) {
      what = e.what();
    }
    CHECK_MESSAGE(what.find("max") != std::string::npos, what);
    CHECK_MESSAGE(what.find("sum") != std::string::npos, what);
  }

  // Last: after a failure the communicator's state is undefined (as in MPI), so it runs on its own
  // duplicate and nothing uses that afterwards.
  TEST_CASE("mpi transport: a rank that stops taking part is reported by every other rank within the deadline") {
    dssync::transport::mpi comm(boost::mpi::communicator(world_comm(), boost::mpi::comm_duplicate));
    const int dead = comm.size() - 1;
    if (comm.rank() == dead) comm.inject_fault(1);
    std::vector<float> v(4096, 1.f);
    dssync::options opt;
    opt.timeout = 2s;
    std::string what;
    bool timed_out = false, injected = false;
    int blamed = -2;
    try {
      dssync::synchronize<dssync::algorithms::ring>(comm, dssync::topology::ring(comm.size()), v,
          dssync::ops::sum{}, opt);
    } catch (const dssync::timeout_error& e) {
      timed_out = true;
      blamed = e.peer();
      what = e.what();
    } catch (const dssync::injected_fault&) {
      injected = true;
    }
    if (comm.rank() == dead) {
      CHECK(injected);
    } else {
      CHECK_MESSAGE(timed_out, "rank " << comm.rank() << " did not time out");
      CHECK_MESSAGE(blamed == dead, what);
      CHECK_MESSAGE(what.find("rank " + std::to_string(dead)) != std::string::npos, what);
      CHECK_MESSAGE(what.find("step") != std::string::npos, what);
    }
    // Keep the stopped rank out of the census, then meet again before the next test.
    world_comm().barrier();
  }
}
