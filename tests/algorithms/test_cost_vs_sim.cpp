// The cost model against the simulator: the closed forms and the step model (`predict`) against
// `sim::simulate` of the same policy's schedule on the same topology, and `best_policy` against the
// simulated times.
//
// What matches (within 1 %, checked below):
//  - ring on topology::ring(N) and star(N), N = 2..16, 64 KiB and 16 MiB: ring_time with
//    worker_link_params (α = the path latency, one hop on a ring and two through the star's switch)
//    and predict("ring");
//  - direct on star(N): direct_time and predict; on full_mesh(N) predict (direct_time assumes one port
//    per worker and ignores the mesh's spare ports, so it does not apply there);
//  - hierarchical on racks (leaf_spine, uplink 4x slower than the worker links): hierarchical_time with
//    α1 = the intra-rack path (worker-ToR-worker, 2 links) and α2 = the cross-rack path (4 links), and
//    predict;
//  - parameter_server and gossip on star(N): predict; parameter_server_time at 16 MiB within 3 % (the
//    seed charges its latency 2(N-1)α serially, where the schedule's messages are concurrent: 2α).
// What cannot match:
//  - ring on racks at small sizes: the step model charges every step its slowest message's latency (the
//    cross-rack path), while in the simulator each rank waits only for its own predecessor, so the ring's
//    steps overlap; the model is up to ~1.9x pessimistic at 64 KiB, within 3 % at 16 MiB;
//  - double_binary_tree: the model and the closed form assume the k pieces of a half stream through the
//    tree. In the flow-level simulator a rank posts all its sends of a phase at once and they share its
//    port, so pieces do not pipeline: the simulator is slower than the model at 16 MiB (about 2x at
//    N = 8, 2.5x at N = 16); at 64 KiB the model's per-step latencies make it up to ~22 % pessimistic.
//    Only "the model does not exceed the simulator by more than 25 %" is checked.

#include <doctest/doctest.h>

#include <dssync/algorithms/cost_model.hpp>
#include <dssync/algorithms/registry.hpp>
#include <dssync/core/verifier.hpp>
#include <dssync/sim/simulator.hpp>
#include <dssync/topology/full_mesh.hpp>
#include <dssync/topology/racks.hpp>
#include <dssync/topology/ring.hpp>
#include <dssync/topology/star.hpp>

#include <cstddef>
#include <cstdlib>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

#include "test_support.hpp"

namespace {

namespace alg = dssync::algorithms;
namespace topo = dssync::topology;

constexpr double lat = 1e-6;     // the default link latency
constexpr double B = 12.5e9;     // 100 Gbit/s, the default link bandwidth
constexpr double KiB = 1024, MiB = 1024 * 1024;

/// The simulated time of policy `name` on `t` for `bytes` per rank (floats), after verifying the plan.
template <class Topo>
double sim_time(std::string_view name, const Topo& t, double bytes) {
  const auto s = alg::plan_by_name(name, t, dssync::plan_request{static_cast<std::size_t>(bytes / 4), 0});
  const auto v = dssync::verify(s);
  INFO(v.message);
  REQUIRE(v.ok);
  return dssync::sim::simulate(s, t).completion_time;
}

using scoped_algo_env = dssync_test::scoped_algo;

}  // namespace

TEST_SUITE("algorithms") {

TEST_CASE("cost vs sim: ring on ring(N) and star(N) matches ring_time and predict within 1 %") {
  for (int n : {2, 3, 4, 8, 16}) {
    for (double S : {64 * KiB, 16 * MiB}) {
      for (int which = 0; which < 2; ++which) {
        const auto check = [&](const auto& t) {
          INFO(t.name() << ", S = " << S);
          const double sim = sim_time("ring", t, S);
          const auto lp = alg::worker_link_params(t);
          CHECK(lp.alpha == doctest::Approx((which == 0 ? 1 : 2) * lat));
          CHECK(lp.beta == doctest::Approx(1 / B));
          CHECK(alg::ring_time(n, S, lp) == doctest::Approx(sim).epsilon(0.01));
          CHECK(alg::predict("ring", t, S) == doctest::Approx(sim).epsilon(0.01));
        };
        if (which == 0) check(topo::ring(n));
        else check(topo::star(n));
      }
    }
  }
}

TEST_CASE("cost vs sim: direct on star(N) matches direct_time and predict; on a full mesh predict") {
  for (int n : {2, 3, 4, 8, 16}) {
    for (double S : {64 * KiB, 16 * MiB}) {
      const topo::star st(n);
      INFO(st.name() << ", S = " << S);
      const double sim = sim_time("direct", st, S);
      CHECK(alg::direct_time(n, S, alg::worker_link_params(st)) == doctest::Approx(sim).epsilon(0.01));
      CHECK(alg::predict("direct", st, S) == doctest::Approx(sim).epsilon(0.01));
      const topo::full_mesh mesh(n);
      const double on_mesh = sim_time("direct", mesh, S);
      CHECK(alg::predict("direct", mesh, S) == doctest::Approx(on_mesh).epsilon(0.01));
      // N-1 ports: every message has its own link, 2α + 2S·β/N.
      CHECK(on_mesh == doctest::Approx(2 * lat + 2 * S / n / B).epsilon(0.01));
    }
  }
}

TEST_CASE("cost vs sim: hierarchical on racks matches hierarchical_time and predict within 1 %") {
  const topo::link intra{B, lat}, uplink{B / 4, lat};
  for (auto [c, g] : {std::pair{2, 4}, std::pair{4, 4}, std::pair{4, 8}, std::pair{8, 2}}) {
    for (double S : {64 * KiB, 16 * MiB}) {
      const topo::leaf_spine t(c, g, intra, uplink);
      INFO(t.name() << ", S = " << S);
      const double sim = sim_time("hierarchical", t, S);
      // α1: worker-ToR-worker (2 links); α2: worker-ToR-spine-ToR-worker (4 links), β2 the uplink's.
      const alg::link_params a1{2 * lat, 1 / intra.bandwidth}, a2{4 * lat, 1 / uplink.bandwidth};
      CHECK(alg::hierarchical_time(c, g, S, a1, a2) == doctest::Approx(sim).epsilon(0.01));
      CHECK(alg::predict("hierarchical", t, S) == doctest::Approx(sim).epsilon(0.01));
      // direct on racks: no closed form (the uplinks are shared), but the step model matches.
      CHECK(alg::predict("direct", t, S) == doctest::Approx(sim_time("direct", t, S)).epsilon(0.01));
      // ring on racks: see the file comment; pessimistic at small sizes, close at large ones.
      const double ring_sim = sim_time("ring", t, S);
      const double ring_model = alg::predict("ring", t, S);
      CHECK(ring_model >= ring_sim * 0.99);
      if (S >= 16 * MiB) CHECK(ring_model == doctest::Approx(ring_sim).epsilon(0.03));
    }
  }
  // One rack: hierarchical is the ring.
  for (double S : {64 * KiB, 16 * MiB}) {
    const topo::star st(8);
    CHECK(alg::predict("hierarchical", st, S) == doctest::Approx(sim_time("hierarchical", st, S)).epsilon(0.01));
    CHECK(sim_time("hierarchical", st, S) == doctest::Approx(sim_time("ring", st, S)).epsilon(1e-9));
  }
}

TEST_CASE("cost vs sim: parameter server, gossip and double binary tree on star(N)") {
  for (int n : {2, 3, 4, 8, 16}) {
    for (double S : {64 * KiB, 16 * MiB}) {
      const topo::star st(n);
      INFO(st.name() << ", S = " << S);
      const auto lp = alg::worker_link_params(st);
      const double ps = sim_time("parameter_server", st, S);
      CHECK(alg::predict("parameter_server", st, S) == doctest::Approx(ps).epsilon(0.01));
      if (S >= 16 * MiB) CHECK(alg::parameter_server_time(1, n, n, S, lp, lp) == doctest::Approx(ps).epsilon(0.03));
      const double gs = sim_time("gossip", st, S);
      CHECK(alg::predict("gossip", st, S) == doctest::Approx(gs).epsilon(0.01));
      CHECK(alg::gossip_time(n, S, lp) == doctest::Approx(gs).epsilon(0.01));
      // The tree's pipeline does not stream in the flow-level simulator (see the file comment).
      const double dbt = sim_time("double_binary_tree", st, S);
      CHECK(alg::predict("double_binary_tree", st, S) <= dbt * 1.25);
    }
  }
}

TEST_CASE("cost vs sim: best_policy's choice is (within 1 %) the fastest allreduce in the simulator") {
  scoped_algo_env unset(nullptr);
  const auto check = [](const auto& t, double S) {
    const std::string best(alg::best_policy(t, S));
    INFO(t.name() << ", S = " << S << ", best_policy = " << best);
    double fastest = std::numeric_limits<double>::infinity();
    std::string fastest_name;
    for (auto name : alg::policy_names()) {
      if (name == alg::gossip::name || name == alg::bcube::name) continue;  // not a full allreduce / needs a BCube
      if (!alg::registry().at(name).plans(dssync::semantics::allreduce)) continue;  // broadcast/reduce only
      // best_policy chooses among the policies the cost model knows (not yet recursive_doubling,
      // rabenseifner or one_shot, which DSSYNC_ALGO or a policy object select).
      if (!alg::try_predict(name, t, S)) continue;
      const double t_sim = sim_time(name, t, S);
      if (t_sim < fastest) {
        fastest = t_sim;
        fastest_name = std::string(name);
      }
    }
    INFO("fastest in the simulator: " << fastest_name << " " << fastest);
    CHECK(sim_time(best, t, S) <= fastest * 1.01);
  };
  for (double S : {64 * KiB, 16 * MiB}) {
    check(topo::star(8), S);
    check(topo::ring(8), S);
    check(topo::full_mesh(8), S);
    check(topo::leaf_spine(4, 4, {B, lat}, {B / 4, lat}), S);
    check(topo::leaf_spine(2, 8, {B, lat}, {B / 8, lat}), S);
  }
  // The choices themselves, for the record: latency-bound small buffers go to direct (2α); on the ring
  // topology the packed trees use both directions of every link and beat the ring allreduce (1.6x in the
  // simulator at 16 MiB), and multi-hop routes make direct lose; slow uplinks favour hierarchical.
  CHECK(alg::best_policy(topo::star(8), 64 * KiB) == alg::direct::name);
  CHECK(alg::best_policy(topo::ring(8), 16 * MiB) == alg::tree::name);
  CHECK(alg::best_policy(topo::leaf_spine(4, 4, {B, lat}, {B / 4, lat}), 16 * MiB) == alg::hierarchical::name);
}

TEST_CASE("cost vs sim: DSSYNC_ALGO overrides best_policy's choice") {
  const topo::leaf_spine t(4, 4, {B, lat}, {B / 4, lat});
  {
    scoped_algo_env forced("parameter_server");
    CHECK(alg::best_policy(t, 16 * MiB) == "parameter_server");
  }
  {
    scoped_algo_env empty("");
    CHECK(alg::best_policy(t, 16 * MiB) == alg::hierarchical::name);
  }
}

}  // TEST_SUITE
