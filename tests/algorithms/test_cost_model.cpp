// The cost model: closed forms on known numbers (seed 000 Table II, Patarasuk & Yuan, Sanders et al.,
// BML), the step-model prediction on topology graphs against those closed forms, and the choice of
// the fastest policy.

#include <doctest/doctest.h>

#include <dssync/algorithms/cost_model.hpp>
#include <dssync/topology/racks.hpp>
#include <dssync/topology/star.hpp>

#include <cstdlib>
#include <optional>
#include <string>

#include "test_support.hpp"

using dssync::algorithms::link_params;
using dssync::topology::full_mesh;
using dssync::topology::leaf_spine;
using net_link = dssync::topology::link;
using dssync::topology::star;
namespace alg = dssync::algorithms;

namespace {

using dssync_test::scoped_algo;

/// A topology with no graph(): the cost model takes it as a full mesh of default links.
struct bare {
  int n;
  [[nodiscard]] int workers() const { return n; }
  [[nodiscard]] std::string name() const { return "bare"; }
  void validate(int) const {}
};

}  // namespace

TEST_SUITE("algorithms") {

TEST_CASE("closed forms on known numbers") {
  const link_params lp{1e-6, 1e-9};
  // Ring (Patarasuk & Yuan 2009): 2(N-1)α + 2(N-1)/N·S·β.
  CHECK(alg::ring_time(4, 1e6, lp) == doctest::Approx(6e-6 + 1.5e-3));
  CHECK(alg::ring_time(1, 1e6, lp) == 0.0);
  CHECK(alg::direct_time(4, 1e6, lp) == doctest::Approx(2e-6 + 1.5e-3));
  // Hierarchical (seed 000): 2(G-1)α1 + 2(C-1)α2 + 2(G-1)/G·S·β1 + 2(C-1)/C·S·β2.
  const link_params up{5e-6, 4e-9};
  CHECK(alg::hierarchical_time(4, 8, 1e6, lp, up) == doctest::Approx(14e-6 + 30e-6 + 1.75e-3 + 6e-3));
  // With one α the latency is the seed's 2(G+C-2)α; with one rack it is ring allreduce.
  CHECK(alg::hierarchical_time(3, 5, 0.0, lp, lp) == doctest::Approx(2 * (5 + 3 - 2) * 1e-6));
  CHECK(alg::hierarchical_time(1, 8, 1e6, lp, up) == doctest::Approx(alg::ring_time(8, 1e6, lp)));
  CHECK(alg::hierarchical_time(8, 1, 1e6, lp, up) == doctest::Approx(alg::ring_time(8, 1e6, up)));
  // Double binary tree: D = floor(log2 N) = 3, k = 4: 2(D+k-1)(α + S·β/k).
  CHECK(alg::tree_height(1) == 0);
  CHECK(alg::tree_height(2) == 1);
  CHECK(alg::tree_height(7) == 2);
  CHECK(alg::tree_height(8) == 3);
  CHECK(alg::tree_height(64) == 6);
  CHECK(alg::double_binary_tree_time(8, 1e6, lp, 4) == doctest::Approx(12e-6 + 3e-3));
  CHECK(alg::double_binary_tree_time(1, 1e6, lp, 4) == 0.0);
  // Parameter server (seed 000): 2(N-1)α + 2[(C-1)·G·S·β2 + (G-1)·S·β1]/P.
  const link_params up2{2e-6, 2e-9};
  CHECK(alg::parameter_server_time(2, 4, 2, 1e6, lp, up2) == doctest::Approx(28e-6 + 11e-3));
  CHECK(alg::parameter_server_time(1, 4, 4, 1e6, lp, up2) == doctest::Approx(6e-6 + 1.5e-3));
  // Gossip: 2α + S·β.
  CHECK(alg::gossip_time(8, 1e6, lp) == doctest::Approx(2e-6 + 1e-3));
  CHECK(alg::gossip_time(1, 1e6, lp) == 0.0);
  // BML (seed 003): 2(N-1)/(k·N)·S·β; BCube(3,2) gives 8/9 of T_F = S·β, as the seed's worked example.
  const link_params bw{0.0, 1.0};
  CHECK(alg::bml_time(9, 2, 1.0, bw) == doctest::Approx(8.0 / 9.0));
  CHECK(alg::bml_time(9, 2, 18.0, bw) == doctest::Approx(16.0));  // 16·T_C with T_C = T_F/18
  CHECK(alg::bml_time(8, 3, 1.0, bw) == doctest::Approx(7.0 / 12.0));   // BCube(2,3)
  CHECK(alg::bml_time(16, 2, 1.0, bw) == doctest::Approx(15.0 / 16.0));  // BCube(4,2)
  CHECK(alg::bml_time(9, 2, 1.0, bw) < alg::ring_time(9, 1.0, bw));
}

TEST_CASE("worker link parameters come from the topology graph") {
  const net_link l{1e9, 2e-6};
  auto near = [](link_params a, link_params b) {
    return a.alpha == doctest::Approx(b.alpha) && a.beta == doctest::Approx(b.beta);
  };
  CHECK(near(alg::worker_link_params(full_mesh(4, l)), {2e-6, 1e-9}));      // one hop on a cable
  CHECK(near(alg::worker_link_params(dssync::topology::ring(6, l)), {2e-6, 1e-9}));
  CHECK(near(alg::worker_link_params(star(5, l)), {4e-6, 1e-9}));           // two hops through the switch
  CHECK(near(alg::worker_link_params(leaf_spine(3, 4, l, net_link{5e8, 3e-6})), {4e-6, 1e-9}));
  CHECK(near(alg::worker_link_params(bare{3}), link_params::of(net_link{})));
}

TEST_CASE("predictions equal the closed forms where the models coincide") {
  const net_link l{1e9, 2e-6};
  const link_params cable{2e-6, 1e-9}, switched{4e-6, 1e-9};
  for (int n = 1; n <= 16; ++n) {
    INFO("n=" << n);
    for (double S : {1e3, 4e6}) {
      // Ring on a ring, a full mesh and a star.
      CHECK(alg::predict("ring", dssync::topology::ring(n, l), S) == doctest::Approx(alg::ring_time(n, S, cable)));
      CHECK(alg::predict("ring", full_mesh(n, l), S) == doctest::Approx(alg::ring_time(n, S, cable)));
      CHECK(alg::predict("ring", star(n, l), S) == doctest::Approx(alg::ring_time(n, S, switched)));
      // Hierarchical with one rack is ring.
      CHECK(alg::predict("hierarchical", star(n, l), S) == doctest::Approx(alg::ring_time(n, S, switched)));
      // Direct on single-port workers behind a switch; on a full mesh every pair has its own cable.
      CHECK(alg::predict("direct", star(n, l), S) == doctest::Approx(alg::direct_time(n, S, switched)));
      if (n > 1)
        CHECK(alg::predict("direct", full_mesh(n, l), S) == doctest::Approx(2 * 2e-6 + 2 * S / n * 1e-9));
      // Double binary tree on a switch: an inner node's port carries two pieces per step.
      if (n >= 3) {
        const std::size_t k = alg::double_binary_tree::auto_pipeline(static_cast<std::size_t>(S / 4));
        CHECK(alg::predict("double_binary_tree", star(n, l), S) ==
              doctest::Approx(alg::double_binary_tree_time(n, S, switched, k)));
      }
      // Gossip: two steps of half the buffer each way (one rank sits out for odd N).
      CHECK(alg::predict("gossip", full_mesh(n, l), S) == doctest::Approx(alg::gossip_time(n, S, cable)));
      CHECK(alg::predict("gossip", star(n, l), S) == doctest::Approx(alg::gossip_time(n, S, switched)));
      // Parameter server with N servers behind a switch: the closed form's transfer; its latency is
      // the seed's serial 2(N-1)α, the step model's 2α, so compare without latency.
      const net_link fast{1e9, 0.0};
      CHECK(alg::predict("parameter_server", star(n, fast), S) ==
            doctest::Approx(alg::parameter_server_time(1, n, n, S, {0, 1e-9}, {0, 1e-9})));
    }
  }
  CHECK(alg::tree_height(2) == 1);
  CHECK(alg::double_binary_tree::auto_pipeline(1000000) == 8);
}

TEST_CASE("hierarchical on racks: the seed's closed form with the uplink shared by the rack") {
  const net_link intra{1e9, 1e-6};
  for (int C = 1; C <= 5; ++C)
    for (int G = 1; G <= 6; ++G) {
      for (double uplink_bw : {2.5e8, 1e9}) {  // uplink <= G·intra: the uplink is the bottleneck across racks
        if (uplink_bw > G * intra.bandwidth) continue;
        const net_link up{uplink_bw, 3e-6};
        const leaf_spine t(C, G, intra, up);
        const double S = 1e7;
        const link_params in_rack{2e-6, 1e-9}, across{2e-6 + 6e-6, 1.0 / uplink_bw};
        INFO("C=" << C << " G=" << G << " uplink " << uplink_bw);
        CHECK(alg::predict("hierarchical", t, S) == doctest::Approx(alg::hierarchical_time(C, G, S, in_rack, across)));
      }
    }
  // Parameter server on racks, one server per rack, no latency: each phase is bounded by the busier of
  // a server's port ((N-1)·S/P) and its rack's uplink ((C-1)·G·S/P), as the seed's two terms.
  const net_link i0{1e9, 0.0}, u0{2e8, 0.0};
  const leaf_spine t(3, 4, i0, u0);
  const double S = 1e6, P = 3, N = 12;
  const double phase = std::max((N - 1) * S / P / 1e9, 2 * 4 * S / P / 2e8);
  CHECK(alg::predict("parameter_server", t, S) == doctest::Approx(2 * phase));
  CHECK(alg::predict("parameter_server", t, S) <=
        alg::parameter_server_time(3, 4, 3, S, {0, 1e-9}, {0, 1.0 / 2e8}) * (1 + 1e-12));
}

TEST_CASE("predictions charge multi-hop routes and shared links") {
  const net_link l{1e9, 1e-6};
  for (int n : {8, 16, 32}) {
    const double S = 1e8;
    const double ring = alg::predict("ring", dssync::topology::ring(n, l), S);
    // Direct's messages cross up to N/2 cables of the ring, which they share.
    CHECK(alg::predict("direct", dssync::topology::ring(n, l), S) > ring);
    CHECK(alg::predict("double_binary_tree", dssync::topology::ring(n, l), S) > ring);
  }
  // Without a graph: a full mesh of default links.
  CHECK(alg::predict("direct", bare{4}, 4e6) == doctest::Approx(alg::predict("direct", full_mesh(4), 4e6)));
  CHECK(alg::predict("ring", full_mesh(1), 1e9) == 0.0);
  CHECK_FALSE(alg::try_predict("butterfly", full_mesh(4), 1e6).has_value());
  CHECK_THROWS_WITH_AS((void)alg::predict("butterfly", full_mesh(4), 1e6), doctest::Contains("butterfly"),
                       dssync::invalid_argument);
  for (const char* name : {"ring", "direct", "hierarchical", "double_binary_tree", "parameter_server", "gossip", "tree"})
    CHECK(alg::try_predict(name, star(6), 1e6).has_value());
}

TEST_CASE("best_policy: trees or ring for huge messages on a ring, a latency-friendly policy for tiny ones") {
  scoped_algo none(nullptr);
  const net_link l{12.5e9, 1e-6};
  for (int n : {8, 16, 64}) {
    INFO("n=" << n);
    // The ring allreduce uses one direction of every link; the packed trees use both (rate 2B against
    // B), which wins while the trees are shallow enough for their pipeline (n = 8, 16), not at n = 64.
    CHECK(alg::best_policy(dssync::topology::ring(n, l), 1e9) == (n <= 16 ? "tree" : "ring"));
    const net_link slow{12.5e9, 1e-3};
    const auto tiny_mesh = alg::best_policy(full_mesh(n, slow), 64);
    CHECK((tiny_mesh == "direct" || tiny_mesh == "double_binary_tree"));
    const auto tiny_ring = alg::best_policy(dssync::topology::ring(n, slow), 64);
    CHECK((tiny_ring == "direct" || tiny_ring == "double_binary_tree"));
    const auto tiny_star = alg::best_policy(star(n, slow), 64);
    CHECK((tiny_star == "direct" || tiny_star == "double_binary_tree"));
    CHECK(alg::best_policy(star(n, l), 1e9) != "gossip");
  }
  // A large oversubscribed cluster with large messages: hierarchy or ring, never parameter server.
  const auto big = alg::best_policy(leaf_spine(8, 8, net_link{12.5e9, 1e-6}, net_link{12.5e9, 2e-6}), 1e9);
  CHECK(big != "parameter_server");
  CHECK(big != "gossip");
}

TEST_CASE("DSSYNC_ALGO overrides best_policy") {
  {
    scoped_algo forced("parameter_server");
    CHECK(alg::best_policy(dssync::topology::ring(16), 1e9) == "parameter_server");
  }
  std::string unset;
  {
    scoped_algo none(nullptr);
    unset = std::string(alg::best_policy(dssync::topology::ring(16), 1e9));
  }
  CHECK(unset != "parameter_server");
  {
    scoped_algo empty("");
    CHECK(alg::best_policy(dssync::topology::ring(16), 1e9) == unset);  // empty is unset
  }
}

}  // TEST_SUITE
