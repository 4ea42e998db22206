// Policies: the policy concept, the shape and cost of ring and direct, plan caching, user policies,
// and DSSYNC_ALGO.

#include <doctest/doctest.h>

#include <atomic>
#include <cstdlib>
#include <optional>

#include "test_support.hpp"

using dssync::range;
using dssync::schedule;
using dssync::step_kind;
using dssync::topology::full_mesh;
using dssync_test::contains;
using dssync_test::describe_errors;

namespace {

std::atomic<int> cached_plans{0}, uncached_plans{0};

/// A cacheable policy that counts its plans and delegates to ring.
struct counted_ring {
  static constexpr std::string_view name = "counted_ring";
  template <class Topo>
  schedule plan(const Topo& t, dssync::plan_request q) const {
    ++cached_plans;
    auto s = dssync::algorithms::ring::build(t.workers(), q.count);
    s.policy = std::string(name);
    return s;
  }
};

/// A stateful policy: alternates ring and direct by iteration and must not be cached.
struct alternating {
  static constexpr std::string_view name = "alternating";
  static constexpr bool cacheable = false;
  int calls = 0;
  template <class Topo>
  schedule plan(const Topo& t, dssync::plan_request q) {
    ++uncached_plans;
    auto s = (calls++ % 2 == 0) ? dssync::algorithms::ring::build(t.workers(), q.count)
                                : dssync::algorithms::direct::build(t.workers(), q.count);
    s.policy = std::string(name);  // same name on every rank and call, so ranks agree
    return s;
  }
};

/// The minimal model of the policy concept's documentation.
struct solo {
  static constexpr std::string_view name = "solo";
  template <class T>
  schedule plan(const T&, dssync::plan_request q) const {
    schedule s;
    s.policy = "solo";
    s.world_size = 1;
    s.count = q.count;
    s.ranks.resize(1);
    return s;
  }
};

/// Elements rank `r` sends in `s`.
std::size_t sent_by(const schedule& s, int r) {
  std::size_t n = 0;
  for (const auto& c : s.ranks[static_cast<std::size_t>(r)].channels)
    for (const auto& st : c.steps) n += st.is_send() ? st.data.length : 0;
  return n;
}

/// Sets an environment variable for the lifetime of the object (tests run one at a time, and no
/// worker thread runs while it is set or restored).
struct scoped_env {
  std::string name;
  std::optional<std::string> old;
  scoped_env(const char* n, const char* v) : name(n) {
    if (const char* o = std::getenv(n)) old = o;
    if (v) ::setenv(n, v, 1);
    else ::unsetenv(n);
  }
  ~scoped_env() {
    if (old) ::setenv(name.c_str(), old->c_str(), 1);
    else ::unsetenv(name.c_str());
  }
};

}  // namespace

TEST_SUITE("policies") {

TEST_CASE("the policy concept and the cacheable trait") {
  using namespace dssync;
  static_assert(concepts::policy<algorithms::ring, topology::ring>);
  static_assert(concepts::policy<algorithms::ring, topology::full_mesh>);
  static_assert(concepts::policy<algorithms::direct, topology::ring>);
  static_assert(concepts::policy<algorithms::direct, topology::full_mesh>);
  static_assert(concepts::policy<counted_ring, topology::full_mesh>);
  static_assert(concepts::policy<alternating, topology::full_mesh>);
  static_assert(concepts::policy<solo, topology::ring>);
  static_assert(!concepts::policy<int, topology::ring>);
  static_assert(is_cacheable_policy<algorithms::ring> && is_cacheable_policy<algorithms::direct>);
  static_assert(is_cacheable_policy<counted_ring>);
  static_assert(!is_cacheable_policy<alternating>);
  CHECK(algorithms::ring::name == "ring");
  CHECK(algorithms::direct::name == "direct");
}

TEST_CASE_TEMPLATE("plans follow the topology's worker count and verify on ring and full-mesh topologies", P,
                   dssync::algorithms::ring, dssync::algorithms::direct) {
  P p;
  for (int n = 1; n <= 12; ++n)
    for (std::size_t count : {0u, 5u, 96u, 1001u}) {
      for (const auto& s : {p.plan(dssync::topology::ring(n), dssync::plan_request{count, 0}),
                            p.plan(full_mesh(n), dssync::plan_request{count, 7})}) {
        REQUIRE(s.world_size == n);
        REQUIRE(s.count == count);
        REQUIRE(s.ranks.size() == static_cast<std::size_t>(n));
        REQUIRE(s.policy == std::string(P::name));
        REQUIRE(s.kind == dssync::semantics::allreduce);
        const auto v = dssync::verify(s);
        REQUIRE_MESSAGE(v.ok, "n=" << n << " count=" << count << ": " << v.message);
      }
    }
}

TEST_CASE_TEMPLATE("ring and direct move 2(N-1)/N of the buffer per rank", P, dssync::algorithms::ring,
                   dssync::algorithms::direct) {
  for (int n = 2; n <= 16; ++n)
    for (std::size_t count : {static_cast<std::size_t>(n) * 100, std::size_t{1009}, std::size_t{7}}) {
      const auto s = P::build(n, count);
      const auto parts = dssync::partition(count, static_cast<std::size_t>(n));
      auto len = [&](int c) { return parts[static_cast<std::size_t>(((c % n) + n) % n)].length; };
      std::size_t total = 0;
      for (int r = 0; r < n; ++r) {
        const std::size_t sent = sent_by(s, r);
        total += sent;
        // Ring: every chunk but (r+1) in reduce-scatter, every chunk but (r+2) in all-gather.
        // Direct: every peer's chunk once, then its own chunk to each of the N-1 peers.
        const std::size_t want = std::is_same_v<P, dssync::algorithms::ring>
                                     ? 2 * count - len(r + 1) - len(r + 2)
                                     : count - len(r) + static_cast<std::size_t>(n - 1) * len(r);
        REQUIRE_MESSAGE(sent == want, "n=" << n << " count=" << count << " rank " << r);
        if (count % static_cast<std::size_t>(n) == 0)
          REQUIRE(sent * static_cast<std::size_t>(n) == 2 * static_cast<std::size_t>(n - 1) * count);
      }
      REQUIRE(total == 2 * static_cast<std::size_t>(n - 1) * count);
    }
}

TEST_CASE("ring talks only to its neighbours; direct reads peers in a rotation so no two ranks read one peer") {
  for (int n = 2; n <= 12; ++n) {
    const auto r = dssync::algorithms::ring::build(n, 1000);
    for (int k = 0; k < n; ++k)
      for (const auto& st : r.ranks[static_cast<std::size_t>(k)].channels[0].steps)
        REQUIRE(st.peer == (st.is_send() ? (k + 1) % n : (k + n - 1) % n));
    const auto d = dssync::algorithms::direct::build(n, 1000);
    // The j-th recv-reduce of every rank reads distinct peers: a permutation for each j.
    for (int j = 0; j < n - 1; ++j) {
      std::vector<int> readers(static_cast<std::size_t>(n), 0);
      for (int k = 0; k < n; ++k) {
        int seen = -1;
        for (const auto& st : d.ranks[static_cast<std::size_t>(k)].channels[0].steps)
          if (st.kind == step_kind::recv_reduce && ++seen == j) ++readers[static_cast<std::size_t>(st.peer)];
      }
      for (int p = 0; p < n; ++p) REQUIRE_MESSAGE(readers[static_cast<std::size_t>(p)] == 1, "n=" << n << " j=" << j);
    }
  }
}

TEST_CASE("each element's final value is reduced on one rank and copied to all others (bitwise identity)") {
  for (int n = 2; n <= 10; ++n)
    for (const auto& s : {dssync::algorithms::ring::build(n, 101), dssync::algorithms::direct::build(n, 101)}) {
      // The kind of the last step that writes each element, per rank.
      std::vector<int> reducing_ranks(101, 0), copying_ranks(101, 0);
      for (int k = 0; k < n; ++k) {
        std::vector<step_kind> last(101, step_kind::send);  // send = never written
        for (const auto& st : s.ranks[static_cast<std::size_t>(k)].channels[0].steps)
          if (st.is_recv())
            for (std::size_t i = st.data.offset; i < st.data.end(); ++i) last[i] = st.kind;
        for (std::size_t i = 0; i < 101; ++i) {
          reducing_ranks[i] += last[i] == step_kind::recv_reduce;
          copying_ranks[i] += last[i] == step_kind::recv_copy;
        }
      }
      for (std::size_t i = 0; i < 101; ++i) {
        REQUIRE_MESSAGE(reducing_ranks[i] == 1, s.policy << " n=" << n << " element " << i);
        REQUIRE_MESSAGE(copying_ranks[i] == n - 1, s.policy << " n=" << n << " element " << i);
      }
    }
}

}  // TEST_SUITE

TEST_SUITE("policies inproc") {

TEST_CASE("cacheable plans are built once per thread and key; uncacheable ones every call") {
  cached_plans = 0;
  uncached_plans = 0;
  std::vector<std::vector<std::int32_t>> out(3);
  auto errs = dssync_test::run_world(3, [&](auto& comm) {
    std::vector<std::int32_t> a(100, comm.rank() + 1);
    for (int i = 0; i < 4; ++i)
      dssync::synchronize<counted_ring>(comm, full_mesh(3), a, dssync::ops::max{}, dssync_test::test_options());
    std::vector<std::int32_t> b(50, 1);
    dssync::synchronize<counted_ring>(comm, full_mesh(3), b, dssync::ops::sum{}, dssync_test::test_options());
    alternating pol;
    std::vector<std::int32_t> c(64, comm.rank());
    for (int i = 0; i < 4; ++i)
      dssync::synchronize(comm, full_mesh(3), pol, c, dssync::ops::sum{}, dssync_test::test_options());
    if (pol.calls != 4) throw dssync_test::check_failed("the policy object was not used: " + std::to_string(pol.calls));
    if (!std::all_of(b.begin(), b.end(), [](std::int32_t x) { return x == 3; })) throw dssync_test::check_failed("b");
    out[static_cast<std::size_t>(comm.rank())] = c;
  });
  REQUIRE_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
  // 15 calls per rank: a cacheable plan is built at most once per (thread, count), never per call.
  CHECK(cached_plans.load() >= 2);
  CHECK(cached_plans.load() <= 3 * 2);
  CHECK(uncached_plans.load() == 3 * 4);  // every call
  // c = 0+1+2 = 3 after the first sum, then x3 each call: 3, 9, 27, 81.
  for (const auto& c : out) CHECK(c == std::vector<std::int32_t>(64, 81));
}

TEST_CASE("the minimal policy model runs on a world of one") {
  std::vector<float> d{1.0f, 2.0f};
  auto errs = dssync_test::run_world(1, [&](auto& comm) {
    dssync::synchronize<solo>(comm, dssync::topology::ring(1), d, dssync::ops::average{});
  });
  REQUIRE_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
  CHECK(d == std::vector<float>{1.0f, 2.0f});
}

TEST_CASE("DSSYNC_ALGO picks the policy of the short form") {
  auto run_mixed = [](const char* env) {
    scoped_env e("DSSYNC_ALGO", env);
    // Rank 0 uses the canonical form with direct; the others the short form.
    return dssync_test::run_world(3, [&](auto& comm) {
      std::vector<double> d(30, 1.0);
      if (comm.rank() == 0)
        dssync::synchronize<dssync::algorithms::direct>(comm, full_mesh(3), d, dssync::ops::sum{},
            dssync_test::test_options());
      else
        dssync::synchronize(comm, d, dssync::ops::sum{}, dssync_test::test_options());
    });
  };
  {
    auto errs = run_mixed("direct");
    CHECK_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
  }
  {
    auto errs = run_mixed(nullptr);  // default: ring
    for (const auto& e : errs) {
      CHECK(dssync_test::holds<dssync::mismatch_error>(e));
      CHECK(contains(dssync_test::what(e), "ring"));
      CHECK(contains(dssync_test::what(e), "direct"));
    }
  }
  {
    auto errs = run_mixed("");  // empty means unset
    for (const auto& e : errs) CHECK(dssync_test::holds<dssync::mismatch_error>(e));
  }
  {
    scoped_env e("DSSYNC_ALGO", "butterfly");
    CHECK(dssync::algorithms::policy_from_env("ring") == "butterfly");
    auto errs = dssync_test::run_world(2, [&](auto& comm) {
      std::vector<double> d(30, 1.0);
      dssync::synchronize(comm, d);
    });
    for (const auto& x : errs) {
      CHECK(dssync_test::holds<dssync::invalid_argument>(x));
      CHECK(contains(dssync_test::what(x), "butterfly"));
    }
  }
  scoped_env none("DSSYNC_ALGO", nullptr);
  CHECK(dssync::algorithms::policy_from_env("ring") == "ring");
  CHECK(dssync::default_policy == "ring");
}

}  // TEST_SUITE
