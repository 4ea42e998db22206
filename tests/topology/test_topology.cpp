// Topology models: ring and full mesh.

#include <doctest/doctest.h>

#include "test_support.hpp"

using dssync_test::has_number;

namespace {

template <class Topo>
void check_validate(const Topo& t, int workers) {
  CHECK_NOTHROW(t.validate(workers));
  for (int world : {workers + 1, workers - 1, 2 * workers + 3}) {
    if (world == workers) continue;
    try {
      t.validate(world);
      FAIL("validate(" << world << ") accepted a world that does not fit " << t.name());
    } catch (const dssync::invalid_argument& e) {
      CHECK_MESSAGE(has_number(e.what(), workers), e.what());
      CHECK_MESSAGE(has_number(e.what(), world), e.what());
    }
  }
}

std::size_t worker_vertices(const dssync::topology::network& g) {
  std::size_t n = 0;
  for (auto v : boost::make_iterator_range(boost::vertices(g))) n += g[v].kind == dssync::topology::node_kind::worker;
  return n;
}

}  // namespace

TEST_SUITE("topology") {

TEST_CASE("ring(n): workers, name, validate") {
  for (int n : {1, 2, 3, 8, 64}) {
    const dssync::topology::ring t(n);
    CHECK(t.workers() == n);
    CHECK(t.name() == "ring(" + std::to_string(n) + ")");
    check_validate(t, n);
  }
  // The example of the acceptance list: ring(3) on a world of 4 names both numbers.
  try {
    dssync::topology::ring(3).validate(4);
    FAIL("ring(3) accepted 4 ranks");
  } catch (const dssync::invalid_argument& e) {
    CHECK_MESSAGE(has_number(e.what(), 3), e.what());
    CHECK_MESSAGE(has_number(e.what(), 4), e.what());
  }
}

TEST_CASE("full_mesh(n): workers, name, validate") {
  for (int n : {1, 2, 4, 17}) {
    const dssync::topology::full_mesh t(n);
    CHECK(t.workers() == n);
    CHECK(t.name() == "full_mesh(" + std::to_string(n) + ")");
    check_validate(t, n);
  }
}

TEST_CASE("worker counts below 1 are rejected, naming the count") {
  for (int n : {0, -1, -100}) {
    CAPTURE(n);
    CHECK_THROWS_AS(dssync::topology::ring{n}, dssync::invalid_argument);
    CHECK_THROWS_AS(dssync::topology::full_mesh{n}, dssync::invalid_argument);
    try {
      dssync::topology::ring t(n);
      FAIL("accepted");
    } catch (const dssync::invalid_argument& e) {
      CHECK_MESSAGE(has_number(e.what(), n), e.what());
    }
  }
}

TEST_CASE("graph(): vertex and directed-edge counts") {
  struct expect {
    int n;
    std::size_t ring_edges, mesh_edges;
  };
  for (const expect e : {expect{1, 0, 0}, expect{2, 2, 2}, expect{3, 6, 6}, expect{4, 8, 12}, expect{5, 10, 20},
                         expect{8, 16, 56}}) {
    CAPTURE(e.n);
    const auto r = dssync::topology::ring(e.n).graph();
    const auto m = dssync::topology::full_mesh(e.n).graph();
    CHECK(boost::num_vertices(r) == static_cast<std::size_t>(e.n));
    CHECK(boost::num_vertices(m) == static_cast<std::size_t>(e.n));
    CHECK(worker_vertices(r) == static_cast<std::size_t>(e.n));
    CHECK(boost::num_edges(r) == e.ring_edges);
    CHECK(boost::num_edges(m) == e.mesh_edges);
  }
  // Vertex i is rank i; ring edges join neighbours in both directions; every cable is full duplex.
  const auto g = dssync::topology::ring(5).graph();
  for (auto v : boost::make_iterator_range(boost::vertices(g))) {
    CHECK(g[v].rank == static_cast<int>(v));
    CHECK(g[v].label == "w" + std::to_string(v));
  }
  for (auto e : boost::make_iterator_range(boost::edges(g))) {
    const auto a = boost::source(e, g), b = boost::target(e, g);
    CHECK(((a + 1) % 5 == b || (b + 1) % 5 == a));
    CHECK(boost::edge(b, a, g).second);  // the reverse direction exists
    CHECK(g[e].bandwidth == doctest::Approx(12.5e9));
    CHECK(g[e].latency == doctest::Approx(1e-6));
  }
  // A custom link propagates to every edge.
  const auto custom = dssync::topology::full_mesh(3, dssync::topology::link{1e9, 5e-6}).graph();
  for (auto e : boost::make_iterator_range(boost::edges(custom))) {
    CHECK(custom[e].bandwidth == doctest::Approx(1e9));
    CHECK(custom[e].latency == doctest::Approx(5e-6));
  }
}

TEST_CASE("the topology concept") {
  static_assert(dssync::concepts::topology<dssync::topology::ring>);
  static_assert(dssync::concepts::topology<dssync::topology::full_mesh>);
  struct any {
    int n;
    int workers() const { return n; }
    std::string name() const { return "any"; }
    void validate(int) const {}
  };
  static_assert(dssync::concepts::topology<any>);  // the minimal model of the concept's docs
  static_assert(!dssync::concepts::topology<int>);
  CHECK(true);
}

}  // TEST_SUITE
