// The baseline policies of seed 000's Table II: hierarchical, double binary tree, parameter server and
// gossip. Their schedules are proven by the verifier for many world sizes and counts, their structure
// is checked (racks, trees, shards, pairings, mixing), and each runs end to end on the in-process
// transport against the sequential oracle.

#include <doctest/doctest.h>

#include <dssync/algorithms/double_binary_tree.hpp>
#include <dssync/algorithms/gossip.hpp>
#include <dssync/algorithms/hierarchical.hpp>
#include <dssync/algorithms/parameter_server.hpp>

#include <algorithm>
#include <cstdlib>
#include <numeric>
#include <optional>
#include <set>

#include "test_support.hpp"

using dssync::range;
using dssync::schedule;
using dssync::step_kind;
using dssync::algorithms::double_binary_tree;
using dssync::algorithms::gossip;
using dssync::algorithms::hierarchical;
using dssync::algorithms::parameter_server;
using dssync::topology::full_mesh;
using dssync_test::describe_errors;

namespace {

/// A topology with racks: workers under one ToR switch per rack, ToRs under a core switch.
struct rack_topo {
  std::vector<std::vector<int>> groups;
  int n = 0;
  explicit rack_topo(std::vector<std::vector<int>> g) : groups(std::move(g)) {
    for (const auto& r : groups) n += static_cast<int>(r.size());
  }
  [[nodiscard]] int workers() const { return n; }
  [[nodiscard]] std::string name() const {
    std::string s = "test_racks(";
    for (const auto& g : groups) {
      s += '{';
      for (int r : g) s += std::to_string(r) + ',';
      s += '}';
    }
    return s + ')';
  }
  void validate(int world) const {
    if (world != n) throw dssync::invalid_argument("rack_topo: wrong world size " + std::to_string(world));
  }
  [[nodiscard]] std::vector<std::vector<int>> racks() const { return groups; }
};
static_assert(dssync::concepts::topology<rack_topo>);
static_assert(dssync::algorithms::has_racks<rack_topo>);


/// C racks of G consecutive ranks.
std::vector<std::vector<int>> even_racks(int C, int G) {
  std::vector<std::vector<int>> r(static_cast<std::size_t>(C));
  for (int c = 0; c < C; ++c)
    for (int i = 0; i < G; ++i) r[static_cast<std::size_t>(c)].push_back(c * G + i);
  return r;
}

/// n ranks in racks of ceil(sqrt n) consecutive ranks (the last rack smaller), or dealt round robin
/// over that many racks when `strided`.
std::vector<std::vector<int>> sqrt_racks(int n, bool strided) {
  int g = 1;
  while (g * g < n) ++g;
  const int C = (n + g - 1) / g;
  std::vector<std::vector<int>> r(static_cast<std::size_t>(C));
  for (int k = 0; k < n; ++k) r[static_cast<std::size_t>(strided ? k % C : k / g)].push_back(k);
  return r;
}

std::vector<std::size_t> counts_for(int n) {
  const auto N = static_cast<std::size_t>(n);
  return {0, 1, N - 1, N + 1, 997, 4096};
}

/// Requires `s` to be proven correct, with a message naming the case.
void require_verified(const schedule& s, const std::string& what) {
  const auto v = dssync::verify(s);
  REQUIRE_MESSAGE(v.ok, what << " (" << s.policy << ", n=" << s.world_size << ", count=" << s.count
                             << "): " << v.message);
}

/// Elements rank `r` sends in `s`.
std::size_t sent_by(const schedule& s, int r) {
  std::size_t n = 0;
  for (const auto& c : s.ranks[static_cast<std::size_t>(r)].channels)
    for (const auto& st : c.steps) n += st.is_send() ? st.data.length : 0;
  return n;
}

/// Checks that every element's final value is reduced on exactly one rank and copied by all others
/// (bitwise identity of allreduce results). Returns "" or the first violation.
std::string single_reducer(const schedule& s) {
  const auto n = static_cast<std::size_t>(s.world_size);
  if (n < 2) return {};
  std::vector<int> reducing(s.count, 0), copying(s.count, 0);
  for (std::size_t k = 0; k < n; ++k) {
    std::vector<step_kind> last(s.count, step_kind::send);
    for (const auto& c : s.ranks[k].channels)  // channels write disjoint ranges, so the order is moot
      for (const auto& st : c.steps)
        if (st.is_recv())
          for (std::size_t i = st.data.offset; i < st.data.end(); ++i) last[i] = st.kind;
    for (std::size_t i = 0; i < s.count; ++i) {
      reducing[i] += last[i] == step_kind::recv_reduce;
      copying[i] += last[i] == step_kind::recv_copy;
    }
  }
  for (std::size_t i = 0; i < s.count; ++i)
    if (reducing[i] != 1 || copying[i] != static_cast<int>(n) - 1)
      return "element " + std::to_string(i) + ": " + std::to_string(reducing[i]) + " reducers, " +
             std::to_string(copying[i]) + " copiers";
  return {};
}

/// Checks a tree over n ranks: parent/children agree, at most two children, one root, every rank
/// reaches the root. Returns "" or the violation.
std::string check_tree(const dssync::algorithms::binary_tree& t, int n) {
  if (t.size() != n) return "size " + std::to_string(t.size());
  int roots = 0;
  for (int r = 0; r < n; ++r) {
    const auto& ch = t.children[static_cast<std::size_t>(r)];
    if (ch.size() > 2) return "rank " + std::to_string(r) + " has more than two children";
    for (int c : ch)
      if (t.parent[static_cast<std::size_t>(c)] != r) return "child " + std::to_string(c) + " disowns " + std::to_string(r);
    const int p = t.parent[static_cast<std::size_t>(r)];
    if (p < 0) {
      ++roots;
      if (r != t.root) return "rank " + std::to_string(r) + " is parentless but not the root";
      continue;
    }
    const auto& pc = t.children[static_cast<std::size_t>(p)];
    if (std::find(pc.begin(), pc.end(), r) == pc.end()) return "parent of " + std::to_string(r) + " disowns it";
    int steps = 0;
    for (int x = r; x != t.root; x = t.parent[static_cast<std::size_t>(x)])
      if (++steps > n || t.parent[static_cast<std::size_t>(x)] < 0) return "rank " + std::to_string(r) + " never reaches the root";
  }
  return roots == 1 ? std::string{} : "roots: " + std::to_string(roots);
}

int floor_log2(int n) {
  int d = 0;
  while ((2 << d) <= n) ++d;
  return d;
}

}  // namespace

TEST_SUITE("algorithms") {

TEST_CASE("the baselines model the policy concept, are registered and plan by name") {
  using namespace dssync;
  static_assert(concepts::policy<hierarchical, topology::ring> && concepts::policy<hierarchical, rack_topo>);
  static_assert(concepts::policy<double_binary_tree, topology::full_mesh>);
  static_assert(concepts::policy<parameter_server, rack_topo> && concepts::policy<parameter_server, topology::ring>);
  static_assert(concepts::policy<gossip, topology::full_mesh>);
  static_assert(is_cacheable_policy<hierarchical> && is_cacheable_policy<double_binary_tree> &&
                is_cacheable_policy<parameter_server>);
  static_assert(!is_cacheable_policy<gossip>);
  CHECK(hierarchical::name == "hierarchical");
  CHECK(double_binary_tree::name == "double_binary_tree");
  CHECK(parameter_server::name == "parameter_server");
  CHECK(gossip::name == "gossip");
  const auto names = algorithms::policy_names();
  for (auto want : {hierarchical::name, double_binary_tree::name, parameter_server::name, gossip::name}) {
    CHECK(std::find(names.begin(), names.end(), want) != names.end());
    for (int n : {1, 2, 5, 8}) {
      const auto s = algorithms::plan_by_name(want, full_mesh(n), plan_request{100, 3});
      CHECK(s.policy == std::string(want));
      CHECK(s.world_size == n);
      require_verified(s, "plan_by_name");
    }
    const auto r = algorithms::plan_by_name(want, rack_topo(even_racks(3, 2)), plan_request{50, 0});
    require_verified(r, "plan_by_name on racks");
  }
}

TEST_CASE("every baseline verifies for world sizes 1..64 and counts 0, 1, N-1, N+1, 997, 4096") {
  // DSSYNC_TEST_SCALE < 1 (sanitizer runs) shrinks the largest world size, down to 16.
  const int max_n = static_cast<int>(std::min<std::size_t>(64, dssync_test::scaled(64, 16)));
  for (int n = 1; n <= max_n; ++n)
    for (std::size_t count : counts_for(n)) {
      const dssync::plan_request q{count, 0};
      require_verified(hierarchical{}.plan(full_mesh(n), q), "hierarchical, one rack");
      require_verified(hierarchical{}.plan(rack_topo(sqrt_racks(n, false)), q), "hierarchical, sqrt racks");
      require_verified(hierarchical{}.plan(rack_topo(sqrt_racks(n, true)), q), "hierarchical, strided racks");
      require_verified(double_binary_tree{}.plan(full_mesh(n), q), "double binary tree, auto pipeline");
      require_verified(double_binary_tree::build(n, count, 4), "double binary tree, 4 pieces");
      require_verified(parameter_server{}.plan(full_mesh(n), q), "parameter server, N servers");
      require_verified(parameter_server{}.plan(rack_topo(sqrt_racks(n, true)), q), "parameter server, server per rack");
      require_verified(parameter_server{1}.plan(full_mesh(n), q), "parameter server, 1 server");
      require_verified(parameter_server{(n + 2) / 3}.plan(full_mesh(n), q), "parameter server, N/3 servers");
      for (std::uint64_t it : {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{2}, gossip::period(n) - 1}) {
        const auto s = gossip::build(n, count, it);
        require_verified(s, "gossip, iteration " + std::to_string(it));
      }
    }
}

TEST_CASE("allreduce baselines reduce each element on one rank and copy it everywhere else") {
  for (int n = 2; n <= 20; ++n)
    for (std::size_t count : {std::size_t{1}, static_cast<std::size_t>(n) + 3, std::size_t{257}}) {
      for (const auto& s : {hierarchical::build(sqrt_racks(n, true), count), double_binary_tree::build(n, count, 3),
                            parameter_server::build(n, count, {0, n / 2}),
                            parameter_server{}.plan(full_mesh(n), dssync::plan_request{count, 0})}) {
        const auto e = single_reducer(s);
        REQUIRE_MESSAGE(e.empty(), s.policy << " n=" << n << " count=" << count << ": " << e);
      }
    }
}

TEST_CASE("hierarchical: C racks of G for C, G in 1..6, and uneven racks") {
  for (int C = 1; C <= 6; ++C)
    for (int G = 1; G <= 6; ++G) {
      const int n = C * G;
      const auto racks = even_racks(C, G);
      for (std::size_t count : {std::size_t{0}, std::size_t{1}, static_cast<std::size_t>(n) - 1,
                                static_cast<std::size_t>(n) * 10, std::size_t{997}}) {
        const auto s = hierarchical::build(racks, count);
        require_verified(s, "C=" + std::to_string(C) + " G=" + std::to_string(G));
        if (count != static_cast<std::size_t>(n) * 10 || n == 1) continue;
        // Divisible count: each worker sends 2(G-1)/G of the buffer inside its rack and 2(C-1)/(CG)
        // across racks, in 2(G-1) + 2(C-1) messages, to its ring neighbours.
        for (int r = 0; r < n; ++r) {
          const int rack = r / G, idx = r % G;
          std::size_t intra = 0, inter = 0, msgs = 0;
          for (const auto& st : s.ranks[static_cast<std::size_t>(r)].channels[0].steps) {
            if (!st.is_send()) continue;
            ++msgs;
            if (st.peer / G == rack) {
              CHECK(st.peer == rack * G + (idx + 1) % G);
              intra += st.data.length;
            } else {
              CHECK(st.peer == ((rack + 1) % C) * G + idx);
              inter += st.data.length;
            }
          }
          CHECK(intra == 2 * static_cast<std::size_t>(G - 1) * count / static_cast<std::size_t>(G));
          CHECK(inter == 2 * static_cast<std::size_t>(C - 1) * count / static_cast<std::size_t>(C * G));
          CHECK(msgs == static_cast<std::size_t>(2 * (G - 1) + 2 * (C - 1)));
        }
        CHECK(single_reducer(s).empty());
      }
    }
  const std::vector<std::vector<std::vector<int>>> uneven{
      {{0, 1, 2}, {3}, {4, 5, 6, 7, 8}},
      {{0, 1}, {2, 3}, {4, 5, 6}, {7}},
      {{5, 0, 3}, {1, 4}, {2}},          // non-contiguous, members out of order
      {{0}, {1}, {2}, {3, 4, 5, 6, 7, 8, 9, 10}},
      {{}, {0, 1, 2, 3}, {}, {4, 5}},    // empty racks are ignored
      {{0, 1, 2, 3, 4, 5, 6}, {7, 8}},
  };
  for (const auto& racks : uneven)
    for (std::size_t count : {std::size_t{0}, std::size_t{1}, std::size_t{5}, std::size_t{13}, std::size_t{997}}) {
      const auto s = hierarchical::build(racks, count);
      require_verified(s, "uneven racks");
      CHECK(single_reducer(s).empty());
    }
  // Bad racks name the rank.
  CHECK_THROWS_AS((void)hierarchical::build({{0, 1}, {1, 2}}, 10), dssync::invalid_argument);
  CHECK_THROWS_WITH_AS((void)hierarchical::build({{0, 1}, {3}}, 10, 4), doctest::Contains("rank 2"),
                       dssync::invalid_argument);
  CHECK_THROWS_AS((void)hierarchical::build({{0, 7}}, 10, 2), dssync::invalid_argument);
  CHECK_THROWS_AS((void)hierarchical::build({}, 10), dssync::invalid_argument);
  // One rack is ring allreduce: same messages as algorithms::ring up to chunk labels.
  for (int n = 2; n <= 8; ++n) {
    const auto h = hierarchical::build(even_racks(1, n), 100);
    const auto r = dssync::algorithms::ring::build(n, 100);
    CHECK(h.step_count() == r.step_count());
  }
}

TEST_CASE("double binary tree: two complementary trees of height floor(log2 N)") {
  for (int n = 1; n <= 64; ++n) {
    const auto t = double_binary_tree::trees(n);
    INFO("n=" << n);
    REQUIRE(check_tree(t.a, n).empty());
    REQUIRE(check_tree(t.b, n).empty());
    CHECK(t.a.height() == floor_log2(n));
    CHECK(t.b.height() == floor_log2(n));
    int leaf_in_both = 0;
    for (int r = 0; r < n; ++r) {
      const bool la = t.a.is_leaf(r), lb = t.b.is_leaf(r);
      if (n >= 2) CHECK_MESSAGE((la || lb), "rank " << r << " is inner in both trees");
      if (n >= 2 && n % 2 == 0) CHECK_MESSAGE(la != lb, "rank " << r);  // even N: leaf in exactly one
      leaf_in_both += la && lb;
    }
    CHECK(leaf_in_both <= (n % 2 == 1 ? 1 : 0));
    if (n >= 2) CHECK(t.a.root != t.b.root);
  }
  // Known shapes: N = 8 is NCCL's in-order tree on labels 1..8.
  const auto t8 = double_binary_tree::tree_a(8);
  CHECK(t8.root == 7);
  CHECK(t8.children[7] == std::vector<int>{3});
  CHECK(t8.children[3] == std::vector<int>{1, 5});
  CHECK(t8.children[5] == std::vector<int>{4, 6});
  const auto b8 = double_binary_tree::tree_b(8);  // mirror: rank r has label 8 - r
  CHECK(b8.root == 0);
  CHECK(b8.children[0] == std::vector<int>{4});
}

TEST_CASE("double binary tree: halves on two channels, pieces streaming through the trees") {
  for (int n : {2, 3, 7, 8, 13}) {
    for (std::size_t k : {1u, 2u, 4u, 7u}) {
      const std::size_t count = 1000;
      const auto s = double_binary_tree::build(n, count, k);
      require_verified(s, "pipeline " + std::to_string(k));
      CHECK(s.channel_count() == 2);
      const auto t = double_binary_tree::trees(n);
      for (int r = 0; r < n; ++r) {
        const auto& plan = s.ranks[static_cast<std::size_t>(r)];
        for (std::size_t c = 0; c < 2; ++c) {
          const auto& tr = c == 0 ? t.a : t.b;
          const range half = dssync::chunk(count, 2, c);
          std::size_t up = 0, reduces = 0;
          for (const auto& st : plan.channels[c].steps) {
            CHECK(st.data.offset >= half.offset);
            CHECK(st.data.end() <= half.end());
            if (st.is_send() && st.peer == tr.parent[static_cast<std::size_t>(r)]) ++up;
            reduces += st.kind == step_kind::recv_reduce;
          }
          CHECK(up == (tr.parent[static_cast<std::size_t>(r)] >= 0 ? k : 0));
          CHECK(reduces == k * tr.children[static_cast<std::size_t>(r)].size());
        }
      }
    }
  }
  CHECK(double_binary_tree::auto_pipeline(0) == 1);
  CHECK(double_binary_tree::auto_pipeline(1 << 20) == 8);
  CHECK(double_binary_tree::auto_pipeline(3 * 32768) == 3);
  CHECK_THROWS_AS((void)double_binary_tree::build(4, 10, 0), dssync::invalid_argument);
  CHECK_THROWS_AS((void)double_binary_tree::build(0, 10, 1), dssync::invalid_argument);
  // An explicit pipeline on the policy object is used by plan().
  double_binary_tree p;
  p.pipeline = 5;
  const auto s = p.plan(full_mesh(4), dssync::plan_request{1000, 0});
  CHECK(s.step_count() == double_binary_tree::build(4, 1000, 5).step_count());
}

TEST_CASE("parameter server: shards on co-located servers") {
  // Default servers: every worker without racks, the first worker of each rack with them.
  CHECK(parameter_server{}.servers(full_mesh(5)) == std::vector<int>{0, 1, 2, 3, 4});
  CHECK(parameter_server{}.servers(rack_topo({{0, 1, 2}, {3, 4, 5}, {6, 7}})) == std::vector<int>{0, 3, 6});
  CHECK(parameter_server{}.servers(rack_topo({{0, 1, 2, 3}})) == std::vector<int>{0, 1, 2, 3});
  CHECK(parameter_server{2}.servers(full_mesh(8)) == std::vector<int>{0, 4});
  CHECK(parameter_server{3}.servers(full_mesh(7)) == std::vector<int>{0, 2, 4});
  CHECK_THROWS_AS((void)parameter_server{9}.servers(full_mesh(8)), dssync::invalid_argument);
  CHECK_THROWS_AS((void)parameter_server::build(4, 10, {}), dssync::invalid_argument);
  CHECK_THROWS_AS((void)parameter_server::build(4, 10, {1, 1}), dssync::invalid_argument);
  CHECK_THROWS_WITH_AS((void)parameter_server::build(4, 10, {1, 4}), doctest::Contains("4"), dssync::invalid_argument);
  // Volumes: a server receives (N-1) shards and sends them back; a worker sends each shard once.
  for (int n = 2; n <= 12; ++n) {
    const std::vector<int> servers{n - 1, 0};
    const std::size_t count = 2 * 50;
    const auto s = parameter_server::build(n, count, servers);
    require_verified(s, "two servers");
    for (int r = 0; r < n; ++r) {
      const bool server = r == 0 || r == n - 1;
      // A worker pushes both shards; a server pushes the other shard and returns its own to N-1 peers.
      const std::size_t want = server ? 50 + static_cast<std::size_t>(n - 1) * 50 : count;
      CHECK_MESSAGE(sent_by(s, r) == want, "n=" << n << " rank " << r);
    }
  }
}

TEST_CASE("gossip: pairings rotate with the iteration, with group semantics") {
  for (int n = 1; n <= 64; ++n) {
    const auto T = gossip::period(n);
    std::set<std::pair<int, int>> met;
    std::vector<int> sat_out(static_cast<std::size_t>(n), 0);
    for (std::uint64_t it = 0; it < T; ++it) {
      const auto p = gossip::pairing(n, it);
      CHECK(p == gossip::pairing(n, it + T));  // periodic
      int alone = 0;
      for (int r = 0; r < n; ++r) {
        const int q = p[static_cast<std::size_t>(r)];
        if (q < 0) {
          ++alone;
          ++sat_out[static_cast<std::size_t>(r)];
          continue;
        }
        REQUIRE(q != r);
        REQUIRE(p[static_cast<std::size_t>(q)] == r);
        if (r < q) CHECK_MESSAGE(met.insert({r, q}).second, "n=" << n << ": pair " << r << "," << q << " meets twice");
      }
      CHECK(alone == n % 2);  // a perfect matching, or one rank out for odd N
      const auto s = gossip::build(n, 64, it);
      CHECK(s.kind == dssync::semantics::group_allreduce);
      CHECK(s.groups == gossip::groups(n, it));
      for (int r = 0; r < n; ++r) {
        const int q = p[static_cast<std::size_t>(r)];
        const auto expect = q < 0 ? std::vector<int>{r} : std::vector<int>{std::min(r, q), std::max(r, q)};
        CHECK(s.expected_contributors(r) == expect);
        // Two messages of half the buffer each, or nothing for a rank that sits out.
        CHECK(sent_by(s, r) == (q < 0 ? 0u : 64u));
      }
    }
    if (n >= 2 && (n & (n - 1)) != 0) {
      CHECK(met.size() == static_cast<std::size_t>(n * (n - 1) / 2));  // round robin: every pair once
      for (int r = 0; r < n; ++r) CHECK(sat_out[static_cast<std::size_t>(r)] == n % 2);
    }
    if (n >= 3) CHECK(gossip::pairing(n, 0) != gossip::pairing(n, 1));
  }
  CHECK(gossip::period(1) == 1);
  CHECK(gossip::period(2) == 1);
  CHECK(gossip::period(8) == 3);
  CHECK(gossip::period(6) == 5);
  CHECK(gossip::period(7) == 7);
  CHECK(gossip::pairing(8, 1) == std::vector<int>{2, 3, 0, 1, 6, 7, 4, 5});
  // The policy object advances one iteration per plan, on top of the requested one.
  gossip g;
  const auto s0 = g.plan(full_mesh(6), dssync::plan_request{10, 0});
  const auto s1 = g.plan(full_mesh(6), dssync::plan_request{10, 0});
  const auto s5 = g.plan(full_mesh(6), dssync::plan_request{10, 3});
  CHECK(s0.groups == gossip::groups(6, 0));
  CHECK(s1.groups == gossip::groups(6, 1));
  CHECK(s5.groups == gossip::groups(6, 5));
  CHECK(g.calls == 3);
}

TEST_CASE("gossip: the naive symmetric exchange deadlocks by rule 3; the split one does not") {
  // Both members send the whole buffer and reduce the peer's into it: each receive waits for the
  // peer to consume its own overlapping send, a cycle.
  schedule naive = gossip::build(2, 10, 0);
  for (int r = 0; r < 2; ++r)
    naive.ranks[static_cast<std::size_t>(r)].channels[0].steps = {{step_kind::send, 1 - r, range{0, 10}},
                                                                  {step_kind::recv_reduce, 1 - r, range{0, 10}}};
  const auto v = dssync::verify(naive);
  CHECK_FALSE(v.ok);
  CHECK(dssync_test::contains(v.message, "deadlock"));
  CHECK(dssync::verify(gossip::build(2, 10, 0)).ok);
}

TEST_CASE("gossip: mixing matrices; log2 N hypercube iterations average exactly") {
  for (int n = 1; n <= 64; ++n) {
    const auto w = gossip::mixing_matrix(n, 0);
    for (int i = 0; i < n; ++i) {
      double row = 0, col = 0;
      for (int j = 0; j < n; ++j) {
        row += w[static_cast<std::size_t>(i)][static_cast<std::size_t>(j)];
        col += w[static_cast<std::size_t>(j)][static_cast<std::size_t>(i)];
        CHECK(w[static_cast<std::size_t>(i)][static_cast<std::size_t>(j)] ==
              w[static_cast<std::size_t>(j)][static_cast<std::size_t>(i)]);
      }
      CHECK(row == 1.0);
      CHECK(col == 1.0);
    }
  }
  for (int m = 0; m <= 6; ++m) {
    const int n = 1 << m;
    const auto N = static_cast<std::size_t>(n);
    // Product of the m mixing matrices, with plain loops: every entry is exactly 1/N.
    std::vector<std::vector<double>> p(N, std::vector<double>(N, 0.0));
    for (std::size_t i = 0; i < N; ++i) p[i][i] = 1.0;
    for (int it = 0; it < m; ++it) {
      const auto w = gossip::mixing_matrix(n, static_cast<std::uint64_t>(it) + 5);  // any m consecutive
      std::vector<std::vector<double>> q(N, std::vector<double>(N, 0.0));
      for (std::size_t i = 0; i < N; ++i)
        for (std::size_t k = 0; k < N; ++k)
          for (std::size_t j = 0; j < N; ++j) q[i][j] += w[i][k] * p[k][j];
      p = q;
    }
    bool exact = true;
    for (const auto& row : p)
      for (double x : row) exact = exact && x == 1.0 / n;
    CHECK_MESSAGE(exact, "n=" << n);
    CHECK(dssync::algorithms::spectral_gap(gossip::period_mixing(n)) == doctest::Approx(1.0));
  }
  // One matching leaves the pairs disconnected (gap 0); a round-robin period contracts (gap > 0).
  for (int n : {3, 4, 5, 6, 7, 10, 12}) {
    CHECK(dssync::algorithms::spectral_gap(gossip::mixing_matrix(n, 0)) == doctest::Approx(0.0).epsilon(1e-6));
    const double gap = dssync::algorithms::spectral_gap(gossip::period_mixing(n));
    CHECK_MESSAGE(gap > 0.05, "n=" << n << " gap " << gap);
    CHECK(gap <= 1.0 + 1e-9);
  }
  CHECK(dssync::algorithms::spectral_gap(gossip::mixing_matrix(2, 0)) == doctest::Approx(1.0));
  CHECK(dssync::algorithms::spectral_gap(gossip::mixing_matrix(1, 0)) == 1.0);
}

}  // TEST_SUITE

TEST_SUITE("inproc algorithms") {

TEST_CASE_TEMPLATE("allreduce baselines end to end match the oracle, bitwise identical on all ranks", P,
                   hierarchical, double_binary_tree, parameter_server) {
  std::mt19937 gen(1234);
  for (int n : {1, 2, 3, 5, 8}) {
    for (std::size_t count : {std::size_t{0}, std::size_t{1}, static_cast<std::size_t>(n) + 1, std::size_t{1000},
                              std::size_t{40000}}) {
      const auto in = dssync_test::random_inputs<float>(gen, n, count);
      std::vector<std::vector<float>> out(static_cast<std::size_t>(n));
      auto run = [&](const auto& topo, const dssync::options& opt) {
        auto errs = dssync_test::run_world(n, [&](auto& comm) {
          auto d = in[static_cast<std::size_t>(comm.rank())];
          dssync::synchronize<P>(comm, topo, d, dssync::ops::sum{}, opt);
          out[static_cast<std::size_t>(comm.rank())] = std::move(d);
        });
        REQUIRE_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
        for (const auto& o : out) REQUIRE(dssync_test::check_against_oracle(o, in, dssync_test::op_kind::sum) == "");
        REQUIRE(dssync_test::first_bitwise_difference(out) == -1);
      };
      INFO("n=" << n << " count=" << count);
      run(full_mesh(n), dssync_test::test_options());
      run(rack_topo(sqrt_racks(n, true)), dssync_test::test_options());
      // Executor stress: tiny segments stream every chunk in pieces, with one or many steps in flight.
      for (std::size_t window : {std::size_t{1}, std::size_t{64}}) {
        auto o = dssync_test::test_options().with_segment_bytes(64);
        o.window = window;
        run(rack_topo(sqrt_racks(n, false)), o);
      }
    }
  }
}

TEST_CASE("hierarchical and parameter server end to end on uneven racks, integer sums exact") {
  const std::vector<std::vector<std::vector<int>>> layouts{{{0, 1, 2}, {3}, {4, 5, 6, 7}}, {{4, 0}, {2, 1, 3}}};
  std::mt19937 gen(99);
  for (const auto& racks : layouts) {
    const rack_topo topo(racks);
    const int n = topo.workers();
    for (std::size_t count : {std::size_t{3}, std::size_t{1001}}) {
      const auto in = dssync_test::random_inputs<std::int64_t>(gen, n, count);
      std::vector<std::vector<std::int64_t>> h(static_cast<std::size_t>(n)), p(h);
      auto errs = dssync_test::run_world(n, [&](auto& comm) {
        auto a = in[static_cast<std::size_t>(comm.rank())];
        auto b = a;
        dssync::synchronize<hierarchical>(comm, topo, a, dssync::ops::sum{}, dssync_test::test_options());
        dssync::synchronize<parameter_server>(comm, topo, b, dssync::ops::sum{}, dssync_test::test_options());
        h[static_cast<std::size_t>(comm.rank())] = std::move(a);
        p[static_cast<std::size_t>(comm.rank())] = std::move(b);
      });
      REQUIRE_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
      for (int r = 0; r < n; ++r) {
        CHECK(dssync_test::check_against_oracle(h[static_cast<std::size_t>(r)], in, dssync_test::op_kind::sum) == "");
        CHECK(dssync_test::check_against_oracle(p[static_cast<std::size_t>(r)], in, dssync_test::op_kind::sum) == "");
      }
    }
  }
}

TEST_CASE("double binary tree with an explicit pipeline, and max, end to end") {
  std::mt19937 gen(7);
  for (int n : {2, 3, 5, 8}) {
    const auto in = dssync_test::random_inputs<double>(gen, n, 5003);
    std::vector<std::vector<double>> out(static_cast<std::size_t>(n));
    auto errs = dssync_test::run_world(n, [&](auto& comm) {
      double_binary_tree pol;
      pol.pipeline = 6;
      auto d = in[static_cast<std::size_t>(comm.rank())];
      dssync::synchronize(comm, full_mesh(n), pol, d, dssync::ops::max{}, dssync_test::test_options());
      out[static_cast<std::size_t>(comm.rank())] = std::move(d);
    });
    REQUIRE_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
    for (const auto& o : out) CHECK(dssync_test::check_against_oracle(o, in, dssync_test::op_kind::max) == "");
  }
}

TEST_CASE("gossip end to end: each pair ends with its mean; a kept policy object rotates the pairs") {
  std::mt19937 gen(5);
  for (int n : {1, 2, 3, 5, 8}) {
    const auto in = dssync_test::random_inputs<double>(gen, n, 777);
    std::vector<std::vector<double>> out(static_cast<std::size_t>(n));
    auto errs = dssync_test::run_world(n, [&](auto& comm) {
      auto d = in[static_cast<std::size_t>(comm.rank())];
      dssync::synchronize<gossip>(comm, full_mesh(n), d, dssync::ops::average{}, dssync_test::test_options());
      out[static_cast<std::size_t>(comm.rank())] = std::move(d);
    });
    REQUIRE_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
    const auto partner = gossip::pairing(n, 0);
    for (int r = 0; r < n; ++r) {
      const int q = partner[static_cast<std::size_t>(r)];
      if (q < 0) {
        CHECK(out[static_cast<std::size_t>(r)] == in[static_cast<std::size_t>(r)]);
        continue;
      }
      CHECK(dssync_test::check_against_oracle(out[static_cast<std::size_t>(r)],
                                              {in[static_cast<std::size_t>(r)], in[static_cast<std::size_t>(q)]},
                                              dssync_test::op_kind::average) == "");
      CHECK(out[static_cast<std::size_t>(r)] == out[static_cast<std::size_t>(q)]);  // bitwise within the pair
    }
  }
  // N = 8 = 2^3: three calls through one policy object per rank average exactly (integer inputs).
  const int n = 8;
  std::vector<std::vector<double>> out(n);
  auto errs = dssync_test::run_world(n, [&](auto& comm) {
    gossip pol;
    std::vector<double> d(100);
    for (std::size_t i = 0; i < d.size(); ++i) d[i] = static_cast<double>((comm.rank() * 37 + static_cast<int>(i)) % 101);
    for (int it = 0; it < 3; ++it)
      dssync::synchronize(comm, full_mesh(n), pol, d, dssync::ops::average{}, dssync_test::test_options());
    out[static_cast<std::size_t>(comm.rank())] = std::move(d);
  });
  REQUIRE_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
  for (std::size_t i = 0; i < 100; ++i) {
    double sum = 0;
    for (int r = 0; r < n; ++r) sum += static_cast<double>((r * 37 + static_cast<int>(i)) % 101);
    for (int r = 0; r < n; ++r) REQUIRE(out[static_cast<std::size_t>(r)][i] == sum / n);
  }
}

TEST_CASE("DSSYNC_ALGO selects each baseline in the short form") {
  for (auto name : {hierarchical::name, double_binary_tree::name, parameter_server::name}) {
    const dssync_test::scoped_algo env(std::string(name).c_str());
    std::vector<std::vector<std::int32_t>> out(3);
    auto errs = dssync_test::run_world(3, [&](auto& comm) {
      std::vector<std::int32_t> d(50, comm.rank() + 1);
      dssync::synchronize(comm, d, dssync::ops::sum{}, dssync_test::test_options());
      out[static_cast<std::size_t>(comm.rank())] = d;
    });
    CHECK_MESSAGE(describe_errors(errs).empty(), name << ": " << describe_errors(errs));
    for (const auto& o : out) CHECK(o == std::vector<std::int32_t>(50, 6));
  }
}

}  // TEST_SUITE
