// transport::mpi_shm under a real mpiexec (2, 3 and 4 ranks): the transport contract in three layouts,
// and every allreduce policy against the sequential oracle on each path the transport has.
//  - one node (the default): every message goes through the shared window's slots;
//  - tiny: a 256-byte arena and 2 slots per pair, so most messages overflow to MPI and the two paths
//    interleave under one key;
//  - split: nodes of 2 ranks (shm_config::ranks_per_node), so at 3 and 4 ranks some peers are off-node
//    and their messages go through transport::mpi.
// Sends from `allocate`d windows are read in place by the receivers (counters().zero_copy), and the
// counters prove that each path really ran.

#include <doctest/doctest.h>

#include <dssync/algorithms/registry.hpp>
#include <dssync/algorithms/ring.hpp>
#include <dssync/ops/ops.hpp>
#include <dssync/synchronize.hpp>
#include <dssync/topology/full_mesh.hpp>
#include <dssync/transport/mpi_shm.hpp>

#include <boost/mpi/collectives.hpp>
#include <boost/mpi/communicator.hpp>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "conformance.hpp"
#include "mpi_harness.hpp"

namespace transport_contract {

using shm = dssync::transport::mpi_shm;

inline dssync::transport::shm_config tiny_config() {
  return dssync::transport::shm_config{}.with_arena_bytes(256).with_slots(2).with_ranks_per_node(0);
}
inline dssync::transport::shm_config split_config() {
  return dssync::transport::shm_config{}.with_ranks_per_node(2);
}

struct make_shm {
  static shm make(const boost::mpi::communicator& c) { return shm(c, dssync::transport::shm_config{}.with_ranks_per_node(0)); }
};
struct make_shm_tiny {
  static shm make(const boost::mpi::communicator& c) { return shm(c, tiny_config()); }
};
struct make_shm_split {
  static shm make(const boost::mpi::communicator& c) { return shm(c, split_config()); }
};

/// One node: every message is a slot, and cancel withdraws an unclaimed one for good.
struct shm_harness : mpi_harness_of<shm, make_shm> {
  static constexpr const char* name = "mpi_shm";
  static constexpr bool cancel_retracts = true;
};
/// Tiny arena and slots: messages overflow to MPI, which cannot withdraw a send.
struct shm_tiny_harness : mpi_harness_of<shm, make_shm_tiny> {
  static constexpr const char* name = "mpi_shm (256 B arena, 2 slots)";
  static constexpr bool cancel_retracts = false;
};
/// Nodes of 2: off-node peers are plain MPI, which cannot withdraw a send. (The contract's oversized
/// message goes from rank 0 to rank 1, which share a node, so its length is known.)
struct shm_split_harness : mpi_harness_of<shm, make_shm_split> {
  static constexpr const char* name = "mpi_shm (nodes of 2 ranks)";
  static constexpr bool cancel_retracts = false;
};

}  // namespace transport_contract

TEST_SUITE_BEGIN("mpi");
TEST_CASE_TEMPLATE_INSTANTIATE(transport_conformance, transport_contract::shm_harness,
                               transport_contract::shm_tiny_harness, transport_contract::shm_split_harness);
TEST_SUITE_END();

namespace {

using namespace std::chrono_literals;
using dssync::transport::mpi_shm;
using dssync::transport::shm_config;

/// The allreduce policies that plan on a full mesh of `n` ranks.
std::vector<std::string> policies_for(int n) {
  std::vector<std::string> out;
  for (auto name : dssync::algorithms::registry().names()) {
    const auto& e = dssync::algorithms::registry().at(name);
    if (!e.plans(dssync::semantics::allreduce) || e.promises != dssync::semantics::allreduce) continue;
    try {
      (void)e.plan(dssync::topology::full_mesh(n), dssync::plan_request{16});
    } catch (const dssync::invalid_argument&) {
      continue;
    }
    out.emplace_back(name);
  }
  return out;
}

std::int32_t value(std::size_t i, int r) { return static_cast<std::int32_t>((i * 31 + static_cast<std::size_t>(r) * 7) % 1000); }

/// Every policy, on `t`, at sizes that do not divide by the rank count, including empty: the integer
/// sums equal the oracle, and the float sums are bitwise equal on every rank. `in_window` runs from
/// a buffer `allocate`d in the shared window.
void check_all(mpi_shm& t, bool in_window) {
  const boost::mpi::communicator world;
  const int n = t.size(), me = t.rank();
  const std::size_t most = 70001;
  std::span<std::int32_t> shared_x;
  std::span<float> shared_f;
  if (in_window) {
    shared_x = t.allocate<std::int32_t>(most);
    shared_f = t.allocate<float>(most);
  }
  for (const auto& p : policies_for(n)) {
    CAPTURE(p);
    const auto& entry = dssync::algorithms::registry().at(p);
    int call = 0;
    for (std::size_t count : {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{1000}, most}) {
      CAPTURE(count);
      dssync::options opt;
      opt.timeout = 60s;
      opt.verify = call++ % 2 == 0;
      opt.segment_bytes = 16384;  // many messages per step: the slots and the arena wrap around
      std::vector<std::int32_t> own_x(in_window ? 0 : count);
      std::span<std::int32_t> x = in_window ? shared_x.first(count) : std::span<std::int32_t>(own_x);
      for (std::size_t i = 0; i < count; ++i) x[i] = value(i, me);
      dssync::synchronize(t, dssync::topology::full_mesh(n), entry, x, dssync::ops::sum{}, opt);
      std::size_t bad = 0;
      for (std::size_t i = 0; i < count; ++i) {
        std::int32_t want = 0;
        for (int r = 0; r < n; ++r) want += value(i, r);
        bad += x[i] != want;
      }
      CHECK_MESSAGE(bad == 0, "rank " << me << ": " << bad << " sums differ from the oracle");
      std::mt19937 g(static_cast<unsigned>(100 + me));
      std::uniform_real_distribution<float> d(-1.0f, 1.0f);
      std::vector<float> own_f(in_window ? 0 : count);
      std::span<float> f = in_window ? shared_f.first(count) : std::span<float>(own_f);
      for (auto& v : f) v = d(g);
      dssync::synchronize(t, dssync::topology::full_mesh(n), entry, f, dssync::ops::sum{}, opt);
      std::uint64_t h = 1469598103934665603ull;
      for (float v : f) {
        std::uint32_t bits = 0;
        std::memcpy(&bits, &v, 4);
        h = (h ^ bits) * 1099511628211ull;
      }
      std::uint64_t lo = 0, hi = 0;
      boost::mpi::all_reduce(world, h, lo, boost::mpi::minimum<std::uint64_t>());
      boost::mpi::all_reduce(world, h, hi, boost::mpi::maximum<std::uint64_t>());
      CHECK_MESSAGE(lo == hi, "rank " << me << ": the float results differ across ranks");
    }
  }
}

std::uint64_t total(std::uint64_t mine) {
  std::uint64_t s = 0;
  boost::mpi::all_reduce(boost::mpi::communicator{}, mine, s, std::plus<std::uint64_t>());
  return s;
}

}  // namespace

TEST_SUITE("mpi") {
  TEST_CASE("mpi_shm: every allreduce policy equals the oracle through the window's arena and slots") {
    mpi_shm t(boost::mpi::communicator{}, shm_config{}.with_ranks_per_node(0));
    REQUIRE(t.node_size() == t.size());
    check_all(t, false);
    const auto& c = t.counters();
    CHECK(total(c.copied) > 0);
    CHECK(total(c.overflow) == 0);  // 16 MiB of arena and 64 slots per pair hold these calls
    CHECK(total(c.off_node) == 0);
    CHECK(total(c.zero_copy) == 0);
  }

  TEST_CASE("mpi_shm: from allocate()d windows, receivers read the senders' buffers in place") {
    mpi_shm t(boost::mpi::communicator{}, shm_config{}.with_ranks_per_node(0));
    check_all(t, true);
    const auto& c = t.counters();
    CHECK(total(c.zero_copy) > 0);
    CHECK(total(c.off_node) == 0);
  }

  TEST_CASE("mpi_shm: a 256-byte arena and 2 slots per pair overflow to MPI and stay exact") {
    mpi_shm t(boost::mpi::communicator{}, transport_contract::tiny_config());
    check_all(t, false);
    const auto& c = t.counters();
    CHECK(total(c.overflow) > 0);
    CHECK(total(c.copied) > 0);
  }

  TEST_CASE("mpi_shm: nodes of 2 ranks send off-node messages through MPI") {
    mpi_shm t(boost::mpi::communicator{}, transport_contract::split_config());
    CHECK(t.node_size() == std::min(2, t.size() - t.rank() / 2 * 2));
    check_all(t, true);
    const auto& c = t.counters();
    if (t.size() > 2) CHECK(total(c.off_node) > 0);
    CHECK(total(c.zero_copy) > 0);
  }

  TEST_CASE("mpi_shm: a rank that stops taking part is named by its peers' timeout (the census)") {
    // The last rank stays alive but skips the collective (OpenMPI 4.1 has no ULFM: a process that
    // exits takes the job down). Its peers wait on it until the deadline, run the census and name it.
    const boost::mpi::communicator world;
    mpi_shm t(world, shm_config{}.with_ranks_per_node(0));
    const int n = t.size(), me = t.rank(), victim = n - 1;
    std::string what;
    if (me != victim) {
      dssync::options opt;
      opt.timeout = 2s;
      std::vector<float> x(1000, 1.0f);
      try {
        dssync::synchronize<dssync::algorithms::ring>(t, dssync::topology::full_mesh(n), x, dssync::ops::sum{}, opt);
      } catch (const dssync::timeout_error& e) {
        what = e.what();
      }
    }
    world.barrier();
    if (me != victim) {
      INFO("rank " << me << ": " << what);
      REQUIRE(!what.empty());
      CHECK(dssync_test::names_rank(what, victim));
      CHECK(what.find("rank " + std::to_string(me)) != std::string::npos);
    }
  }

  TEST_CASE("mpi_shm: a bad configuration is refused, naming the rank and the value") {
    const boost::mpi::communicator world;
    std::string what;
    try {
      mpi_shm t(world, shm_config{}.with_slots(0));
    } catch (const dssync::invalid_argument& e) {
      what = e.what();
    }
    CHECK(what.find("rank " + std::to_string(world.rank())) != std::string::npos);
    CHECK(what.find("slots is 0") != std::string::npos);
    what.clear();
    try {
      mpi_shm t(world, shm_config{}.with_ranks_per_node(-3));
    } catch (const dssync::invalid_argument& e) {
      what = e.what();
    }
    CHECK(what.find("-3") != std::string::npos);
  }
}
