#pragma once
/// \file
/// `algorithms::double_binary_tree`: NCCL's double binary tree allreduce (seed 000, Table II, "Double
/// Tree"; Sanders, Speck & Träff 2009, "Two-tree algorithms for full bandwidth broadcast, reduction and
/// scan"): two complementary binary trees, each carrying half the buffer, pipelined in pieces.

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "dssync/core/chunking.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/policy.hpp"
#include "dssync/core/schedule.hpp"

namespace dssync::algorithms {

/// A rooted tree over ranks 0..n-1: `parent[r]` (-1 at the root) and `children[r]` (at most two, left
/// child first).
struct binary_tree {
  int root = 0;
  std::vector<int> parent;
  std::vector<std::vector<int>> children;

  [[nodiscard]] int size() const noexcept { return static_cast<int>(parent.size()); }
  [[nodiscard]] bool is_leaf(int r) const { return children[static_cast<std::size_t>(r)].empty(); }
  /// Edges from `r` up to the root.
  [[nodiscard]] int depth(int r) const {
    int d = 0;
    for (int p = parent[static_cast<std::size_t>(r)]; p >= 0; p = parent[static_cast<std::size_t>(p)]) ++d;
    return d;
  }
  /// The largest depth of any rank (0 for one rank).
  [[nodiscard]] int height() const {
    int h = 0;
    for (int r = 0; r < size(); ++r) h = std::max(h, depth(r));
    return h;
  }
};

/// NCCL's two complementary trees, as `double_binary_tree::trees` builds them.
struct tree_pair {
  binary_tree a, b;
};

/// Double binary tree allreduce.
///
/// The trees (after NCCL's ncclGetBtree/ncclGetDtree and Sanders et al. 2009). Tree A is the in-order
/// binary tree over the labels v = 1..N: label v with lowest set bit b has children v - b/2 and the
/// largest v + b' ≤ N with b' ≤ b/2 a power of two; the root is the largest power of two ≤ N. Odd
/// labels are leaves, even labels inner nodes. Rank r has label r+1 in tree A, so even ranks are leaves
/// of A. Tree B relabels: for even N it mirrors (rank r has label N-r), for odd N it shifts (rank r plays
/// A's role of rank (r+1) mod N). Then every rank is a leaf in at least one tree (for even N, in exactly
/// one; for odd N, rank N-1 in both), and inner in at most one, so no rank forwards both halves. Both
/// trees have height floor(log2 N).
///
/// The schedule: channel 0 runs tree A on the first half of the buffer, channel 1 tree B on the second.
/// Each half is split into k pieces (`pipeline`). Per piece, a rank reduces its children's partials
/// into its own and sends the sum to its parent (reduce), then copies the result from its parent and
/// sends it to its children (broadcast). Pieces stream through the D = floor(log2 N) levels (executors
/// keep several steps in flight), so each phase takes D + k - 1 steps of S/(2k) bytes per tree:
/// 2(D + k - 1)(α + S·β/k) on single-port workers (`double_binary_tree_time`; seed 000 Table II writes
/// 2(log N + k)Lα latency and 2(log N + k)S·β/k transfer). Each element is reduced completely at one
/// root and copied everywhere else, so all ranks end bitwise identical.
struct double_binary_tree {
  static constexpr std::string_view name = "double_binary_tree";

  /// Pieces per half; 0 picks `auto_pipeline(count)`.
  std::size_t pipeline = 0;

  /// The pieces per half for `count` elements: one piece per 16384 elements of a half (64 KiB of
  /// floats), at least 1 and at most 8.
  [[nodiscard]] static constexpr std::size_t auto_pipeline(std::size_t count) noexcept {
    const std::size_t half = (count + 1) / 2;
    return std::clamp<std::size_t>(half / 16384, 1, 8);
  }

  /// What the plan depends on besides (topology, count): the pipeline depth (plan caches key on it).
  [[nodiscard]] std::string cache_key(const plan_request&) const { return "pipeline=" + std::to_string(pipeline); }

  /// Builds the schedule for `t.workers()` ranks and `q.count` elements.
  template <concepts::topology Topo>
  [[nodiscard]] schedule plan(const Topo& t, plan_request q) const {
    return build(t.workers(), q.count, pipeline == 0 ? auto_pipeline(q.count) : pipeline);
  }

  /// Tree A over `n` ranks (see the class comment). \throws invalid_argument if `n < 1`.
  [[nodiscard]] static binary_tree tree_a(int n) { return relabeled(n, [](int r, int) { return r + 1; }); }

  /// Tree B over `n` ranks, complementary to tree A. \throws invalid_argument if `n < 1`.
  [[nodiscard]] static binary_tree tree_b(int n) {
    return relabeled(n, [](int r, int m) { return m % 2 == 0 ? m - r : (r + 1) % m + 1; });
  }

  /// Both trees over `n` ranks.
  [[nodiscard]] static tree_pair trees(int n) { return {tree_a(n), tree_b(n)}; }

  /// The schedule for `n` ranks, `count` elements and `pipeline` pieces per half.
  /// \throws invalid_argument if `n < 1` or `pipeline < 1`.
  [[nodiscard]] static schedule build(int n, std::size_t count, std::size_t pipeline) {
    if (n < 1)
      throw invalid_argument("algorithms::double_binary_tree: world size " + std::to_string(n) +
                             " must be at least 1");
    if (pipeline < 1) throw invalid_argument("algorithms::double_binary_tree: pipeline depth must be at least 1");
    schedule s;
    s.policy = std::string(name);
    s.world_size = n;
    s.count = count;
    s.kind = semantics::allreduce;
    s.ranks.resize(static_cast<std::size_t>(n));
    if (n == 1) return s;
    const auto t = trees(n);
    const auto halves = partition(count, 2);
    for (auto& r : s.ranks) r.channels.resize(2);
    for (std::size_t c = 0; c < 2; ++c) {
      const binary_tree& tr = c == 0 ? t.a : t.b;
      for (int r = 0; r < n; ++r) {
        auto& steps = s.ranks[static_cast<std::size_t>(r)].channels[c].steps;
        const int up = tr.parent[static_cast<std::size_t>(r)];
        const auto& down = tr.children[static_cast<std::size_t>(r)];
        for (std::size_t i = 0; i < pipeline; ++i) {  // reduce toward the root
          const range p = subchunk(halves[c], pipeline, i);
          for (int ch : down) steps.push_back({step_kind::recv_reduce, ch, p});
          if (up >= 0) steps.push_back({step_kind::send, up, p});
        }
        for (std::size_t i = 0; i < pipeline; ++i) {  // broadcast from the root
          const range p = subchunk(halves[c], pipeline, i);
          if (up >= 0) steps.push_back({step_kind::recv_copy, up, p});
          for (int ch : down) steps.push_back({step_kind::send, ch, p});
        }
      }
    }
    s.drop_empty();
    return s;
  }

 private:
  /// The in-order tree over labels 1..n, mapped to ranks by `label(r, n)` (a bijection onto 1..n).
  template <class Label>
  static binary_tree relabeled(int n, Label label) {
    if (n < 1)
      throw invalid_argument("algorithms::double_binary_tree: world size " + std::to_string(n) +
                             " must be at least 1");
    std::vector<int> rank_of(static_cast<std::size_t>(n) + 1, -1);
    for (int r = 0; r < n; ++r) rank_of[static_cast<std::size_t>(label(r, n))] = r;
    binary_tree t;
    t.parent.assign(static_cast<std::size_t>(n), -1);
    t.children.assign(static_cast<std::size_t>(n), {});
    int root = 1;
    while (root * 2 <= n) root *= 2;
    t.root = rank_of[static_cast<std::size_t>(root)];
    for (int v = 1; v <= n; ++v) {
      const int b = v & -v;
      if (b == 1) continue;
      std::vector<int> kids{v - b / 2};
      for (int h = b / 2; h >= 1; h /= 2)
        if (v + h <= n) {
          kids.push_back(v + h);
          break;
        }
      const int pr = rank_of[static_cast<std::size_t>(v)];
      for (int k : kids) {
        const int kr = rank_of[static_cast<std::size_t>(k)];
        t.children[static_cast<std::size_t>(pr)].push_back(kr);
        t.parent[static_cast<std::size_t>(kr)] = pr;
      }
    }
    return t;
  }
};

}  // namespace dssync::algorithms
