#pragma once
/// \file
/// `algorithms::bcube`: BML's gradient synchronization on BCube(n, k) (seed 003: "A Scalable,
/// High-Performance, and Fault-Tolerant Network Architecture for Distributed Machine Learning").

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include <boost/graph/adjacency_list.hpp>
#include <boost/graph/breadth_first_search.hpp>
#include <boost/graph/visitors.hpp>

#include "dssync/core/chunking.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/policy.hpp"
#include "dssync/core/schedule.hpp"
#include "dssync/topology/bcube.hpp"

namespace dssync::algorithms {

/// BML on BCube(n, k): k channels ("threads") run in parallel, each on its own 1/k of the buffer; thread
/// e owns n^k pieces, one per server address. Thread e runs k aggregation stages, stage j on level
/// (e + j) mod k: in that level's group of n servers, each server sends every peer the pieces it holds
/// whose level digit equals the peer's digit, and reduces the pieces it receives for its own digit. After
/// k stages a server holds, per thread, the fully reduced piece with its own address. k broadcast stages
/// then run the levels in reverse order and copy instead of reduce. Because the threads start on
/// different levels, at any time they use different ports of a server.
///
/// Layout: within thread e, pieces are ordered by their digits in stage order (digit of level e most
/// significant), so every set of pieces a stage sends to one peer is one contiguous range: each stage is
/// n-1 sends and n-1 receives per server and channel. Each server sends 2(N-1)/(k·N) of its buffer per
/// port, and the seed's worked example (BCube(3,2): 6+2+2+6 = 16 T_C = 8/9 T_F) holds.
///
/// Needs a world of exactly n^k ranks (rank = server address read as a base-n number, as
/// `topology::bcube` numbers them).
///
/// **Server failure** (`plan_without`, seed 003 "Fault Tolerance"): with x servers failed, the survivors
/// re-split the gradient into k·(N-x) pieces (thread e owns one piece per survivor) and run the same k
/// aggregation stages. Where a level group lacks the server a piece is bound for, a live member of the
/// group stands in for it (a proxy) and keeps the pieces; after the k stages the proxies relay those
/// partial sums to the pieces' owners over other levels, the seed's "Auxiliary" stages (its example:
/// [0,1] -> [1,1] -> [1,0] when [0,0] is dead). Relays follow a breadth-first shortest path through live
/// servers (Boost.Graph), merging where paths meet. The broadcast is the exact time reversal of
/// aggregation plus relays: every message is sent back the other way with the final values, so every
/// survivor that ever gave up a piece gets it back. With [0,0] of BCube(3,2) failed this takes the seed's
/// 18·T_C = 9/8·T_F stage by stage. A group short of a member finishes an aggregation stage early; so
/// that its members do not start the next stage while the full groups still send the last one (their
/// traffic would share ports and stretch the critical path), such an early sender's next-stage send of
/// a piece waits for a fragment of the same piece from a late peer of that stage: a data dependency,
/// which the executor honours as the simulator does (see `detail::bml_replan::gate`).
struct bcube {
  static constexpr std::string_view name = "bcube";

  /// Plans on a topology that knows its BCube parameters (`n()` and `k()`, e.g. `topology::bcube`).
  template <concepts::topology Topo>
  [[nodiscard]] schedule plan(const Topo& t, plan_request q) const {
    if constexpr (requires { t.n(); t.k(); }) {
      return build(t.n(), t.k(), q.count);
    } else {
      throw invalid_argument("algorithms::bcube: topology " + t.name() +
                             " is not a BCube (it needs n() and k(); use topology::bcube)");
    }
  }

  /// The plan for the survivors of BCube(n, k) when the servers `failed` (topology ranks) are dead: an
  /// allreduce over the N-x survivors, numbered 0..N-x-1 in increasing topology rank (as
  /// `MPI_Comm_create_group` or `inproc::communicator::shrink` number them), with `schedule::hosts`
  /// giving each one's topology rank. No failed servers gives `plan(t, q)`.
  /// \throws invalid_argument naming the value if a failed rank is out of range or listed twice, if no
  ///   server survives, or if the survivors are cut off from each other (BCube relays through servers, so
  ///   e.g. BCube(2,2) without [0,0] and [1,1] leaves [0,1] and [1,0] no path).
  [[nodiscard]] schedule plan_without(const topology::bcube& t, std::span<const int> failed, plan_request q) const {
    if (failed.empty()) return build(t.n(), t.k(), q.count);
    return build_without(t.n(), t.k(), failed, q.count);
  }

  /// As `plan_without`, from BCube's parameters.
  [[nodiscard]] static schedule build_without(int n, int k, std::span<const int> failed, std::size_t count);

  /// n^k, the servers of BCube(n, k).
  /// \throws invalid_argument if n < 2 or k < 1 or n^k exceeds 2^20.
  [[nodiscard]] static int servers(int n, int k) {
    if (n < 2 || k < 1)
      throw invalid_argument("algorithms::bcube: BCube(" + std::to_string(n) + "," + std::to_string(k) +
                             ") needs n >= 2 and k >= 1");
    long long N = 1;
    for (int i = 0; i < k; ++i) {
      N *= n;
      if (N > (1 << 20))
        throw invalid_argument("algorithms::bcube: BCube(" + std::to_string(n) + "," + std::to_string(k) +
                               ") has more than 2^20 servers");
    }
    return static_cast<int>(N);
  }

  /// The schedule for BCube(n, k) and `count` elements per server.
  /// \throws invalid_argument if n < 2 or k < 1 or n^k overflows.
  [[nodiscard]] static schedule build(int n, int k, std::size_t count) {
    const int N = servers(n, k);
    schedule s;
    s.policy = std::string(name);
    s.world_size = N;
    s.count = count;
    s.kind = semantics::allreduce;
    s.ranks.resize(static_cast<std::size_t>(N));

    std::vector<int> pow(static_cast<std::size_t>(k) + 1, 1);
    for (int i = 1; i <= k; ++i) pow[static_cast<std::size_t>(i)] = pow[static_cast<std::size_t>(i) - 1] * n;
    auto digit = [&](int r, int level) { return (r / pow[static_cast<std::size_t>(level)]) % n; };
    auto with_digit = [&](int r, int level, int d) {
      return r + (d - digit(r, level)) * pow[static_cast<std::size_t>(level)];
    };

    for (int e = 0; e < k; ++e) {
      const range thread = chunk(count, static_cast<std::size_t>(k), static_cast<std::size_t>(e));
      // Pieces [a, b) of this thread as one element range (pieces are contiguous sub-chunks).
      auto pieces = [&](long long a, long long b) {
        const range first = subchunk(thread, static_cast<std::size_t>(N), static_cast<std::size_t>(a));
        const range last = subchunk(thread, static_cast<std::size_t>(N), static_cast<std::size_t>(b - 1));
        return range{first.offset, last.end() - first.offset};
      };
      for (int r = 0; r < N; ++r) s.ranks[static_cast<std::size_t>(r)].channels.resize(static_cast<std::size_t>(k));
      for (int r = 0; r < N; ++r) {
        auto& steps = s.ranks[static_cast<std::size_t>(r)].channels[static_cast<std::size_t>(e)].steps;
        // Block held before stage j: pieces whose first j stage-digits equal r's. Its start is the
        // number formed by those digits times n^(k-j).
        auto block_start = [&](int j) {
          long long prefix = 0;
          for (int i = 0; i < j; ++i) prefix = prefix * n + digit(r, (e + i) % k);
          return prefix * pow[static_cast<std::size_t>(k - j)];
        };
        auto sub_block = [&](int j, int d) {  // pieces of stage j's block whose stage-j digit is d
          const long long width = pow[static_cast<std::size_t>(k - j - 1)];
          const long long a = block_start(j) + d * width;
          return pieces(a, a + width);
        };
        for (int j = 0; j < k; ++j) {  // aggregation
          const int level = (e + j) % k, mine = digit(r, level);
          const auto stage = static_cast<std::uint32_t>(j);
          for (int t = 1; t < n; ++t) {
            const int d = (mine + t) % n;
            steps.push_back({step_kind::send, with_digit(r, level, d), sub_block(j, d), stage});
          }
          for (int t = 1; t < n; ++t) {
            const int d = (mine + n - t) % n;
            steps.push_back({step_kind::recv_reduce, with_digit(r, level, d), sub_block(j, mine), stage});
          }
        }
        for (int j = k - 1; j >= 0; --j) {  // broadcast, levels in reverse
          const int level = (e + j) % k, mine = digit(r, level);
          const auto stage = static_cast<std::uint32_t>(2 * k - 1 - j);
          for (int t = 1; t < n; ++t) {
            const int d = (mine + t) % n;
            steps.push_back({step_kind::send, with_digit(r, level, d), sub_block(j, mine), stage});
          }
          for (int t = 1; t < n; ++t) {
            const int d = (mine + n - t) % n;
            steps.push_back({step_kind::recv_copy, with_digit(r, level, d), sub_block(j, d), stage});
          }
        }
      }
    }
    s.drop_empty();
    return s;
  }
};

namespace detail {

/// The re-plan of BML around failed servers (see `bcube::plan_without`). One object per call.
class bml_replan {
 public:
  bml_replan(int n, int k, std::span<const int> failed, std::size_t count)
      : n_(n), k_(k), count_(count), N_(bcube::servers(n, k)) {
    pow_.assign(static_cast<std::size_t>(k) + 1, 1);
    for (int i = 1; i <= k; ++i) pow_[idx(i)] = pow_[idx(i - 1)] * n;
    index_of_.assign(idx(N_), 0);
    for (int r : failed) {
      if (r < 0 || r >= N_)
        throw invalid_argument("algorithms::bcube: failed rank " + std::to_string(r) + " is not a server of BCube(" +
                               std::to_string(n) + "," + std::to_string(k) + ") (0.." + std::to_string(N_ - 1) + ")");
      if (index_of_[idx(r)] != 0)
        throw invalid_argument("algorithms::bcube: failed rank " + std::to_string(r) + " is listed twice");
      index_of_[idx(r)] = -1;
    }
    for (int r = 0; r < N_; ++r)
      if (index_of_[idx(r)] == 0) {
        index_of_[idx(r)] = static_cast<int>(survivors_.size());
        survivors_.push_back(r);
      }
    M_ = static_cast<int>(survivors_.size());
    if (M_ == 0)
      throw invalid_argument("algorithms::bcube: all " + std::to_string(N_) + " servers of BCube(" + std::to_string(n) +
                             "," + std::to_string(k) + ") failed; no survivor to plan for");
    build_graph();
  }

  schedule run() {
    schedule s;
    s.policy = std::string(bcube::name);
    s.world_size = M_;
    s.count = count_;
    s.kind = semantics::allreduce;
    s.hosts = survivors_;
    s.ranks.resize(idx(M_));
    for (auto& r : s.ranks) r.channels.resize(idx(k_));
    for (int e = 0; e < k_; ++e) thread(s, e);
    s.drop_empty();
    return s;
  }

 private:
  using graph_t = boost::adjacency_list<boost::vecS, boost::vecS, boost::undirectedS>;
  static constexpr std::size_t relay_segments = 32;
  // A gate's fragment: the first 1/gate_parts of a piece (see `gate`); small, so that it arrives almost
  // as soon as its sender reaches the stage.
  static constexpr std::size_t gate_parts = 256;
  enum class cut : std::uint8_t { whole, head, tail };
  struct xfer {
    int src, dst;  // survivor indices
    int q;         // piece position in the thread's order
    step_kind kind = step_kind::recv_reduce;
    cut p = cut::whole;  // the piece, or its gate fragment (head) or the rest (tail)
    bool gated = false;  // a send that follows the sender's gate receives
  };
  static range part_of(const range& r, cut p) {
    if (p == cut::whole) return r;
    const range h = subchunk(r, gate_parts, 0);
    return p == cut::head ? h : range{h.end(), r.end() - h.end()};
  }

  static std::size_t idx(int i) { return static_cast<std::size_t>(i); }
  int digit(int r, int level) const { return (r / pow_[idx(level)]) % n_; }
  int with_digit(int r, int level, int d) const { return r + (d - digit(r, level)) * pow_[idx(level)]; }
  bool alive(int r) const { return index_of_[idx(r)] >= 0; }
  int level_between(int a, int b) const {  // the one level where a and b differ
    for (int l = 0; l < k_; ++l)
      if (digit(a, l) != digit(b, l)) return l;
    return 0;
  }

  // Survivors as vertices; an edge joins two survivors on one switch. BML moves data only between servers
  // of one switch, so a relay must hop through live servers.
  void build_graph() {
    graph_ = graph_t(idx(M_));
    for (int v = 0; v < M_; ++v)
      for (int l = 0; l < k_; ++l) {
        const int r = survivors_[idx(v)];
        for (int d = digit(r, l) + 1; d < n_; ++d) {
          const int w = with_digit(r, l, d);
          if (alive(w)) boost::add_edge(idx(v), idx(index_of_[idx(w)]), graph_);
        }
      }
    const auto& [dist, pred] = bfs(0);
    for (int v = 0; v < M_; ++v)
      if (dist[idx(v)] < 0) {
        throw invalid_argument("algorithms::bcube: survivors " + address_text(survivors_[0]) + " (rank " +
                               std::to_string(survivors_[0]) + ") and " + address_text(survivors_[idx(v)]) +
                               " (rank " + std::to_string(survivors_[idx(v)]) + ") of BCube(" + std::to_string(n_) +
                               "," + std::to_string(k_) +
                               ") have no path through live servers; BML cannot synchronize them");
      }
  }

  std::string address_text(int r) const {
    std::string a = "[";
    for (int l = k_ - 1; l >= 0; --l) a += std::to_string(digit(r, l)) + (l ? "," : "]");
    return a;
  }

  // Breadth-first search from survivor `root` (Boost.Graph): hop distance and BFS-tree parent of every
  // survivor (-1 if unreachable). Cached per root.
  const std::pair<std::vector<int>, std::vector<int>>& bfs(int root) {
    auto it = bfs_cache_.find(root);
    if (it != bfs_cache_.end()) return it->second;
    std::vector<int> dist(idx(M_), -1);
    std::vector<std::size_t> pred(idx(M_));
    for (std::size_t i = 0; i < pred.size(); ++i) pred[i] = i;
    dist[idx(root)] = 0;
    boost::breadth_first_search(
        graph_, idx(root),
        boost::visitor(boost::make_bfs_visitor(std::make_pair(
            boost::record_distances(boost::make_iterator_property_map(dist.begin(), boost::get(boost::vertex_index, graph_)),
                                    boost::on_tree_edge()),
            boost::record_predecessors(boost::make_iterator_property_map(pred.begin(), boost::get(boost::vertex_index, graph_)),
                                       boost::on_tree_edge())))));
    std::vector<int> parent(idx(M_), -1);
    for (int v = 0; v < M_; ++v)
      if (v != root && dist[idx(v)] >= 0) parent[idx(v)] = static_cast<int>(pred[idx(v)]);
    return bfs_cache_.emplace(root, std::make_pair(std::move(dist), std::move(parent))).first->second;
  }

  // Emits one round of transfers (a stage or a relay round) into `agg`. Per rank, in this order: gate
  // fragments it sends (heads), its ungated sends, the gate fragments it receives, its gated sends, its
  // other receives (see `gate`); within each, peers ordered by (level, digit offset) as in the
  // failure-free plan. Each (sender, receiver) pair's pieces go as runs of consecutive positions with one
  // receive kind, in the same order on both sides: heads, ungated runs, gated runs.
  template <class PieceRange>
  void emit(std::vector<xfer>& round, std::vector<std::vector<step>>& agg, PieceRange&& piece, bool merge,
            std::uint32_t stage) const {
    auto peer_key = [&](int me, int peer, bool sending) {
      const int a = survivors_[idx(me)], b = survivors_[idx(peer)];
      const int l = level_between(a, b);
      const int off = sending ? (digit(b, l) - digit(a, l) + n_) % n_ : (digit(a, l) - digit(b, l) + n_) % n_;
      return std::make_pair(l, off);
    };
    std::sort(round.begin(), round.end(), [&](const xfer& x, const xfer& y) {
      return std::tie(x.src, x.dst, x.gated, x.q) < std::tie(y.src, y.dst, y.gated, y.q);
    });
    struct message {
      int src, dst;
      range data;
      step_kind kind;
      int group;  // 0 head, 1 ungated run, 2 gated run
    };
    // Per pair, in FIFO order.
    std::map<std::pair<int, int>, std::vector<message>> pairs;
    for (std::size_t i = 0; i < round.size();) {
      std::size_t j = i;
      while (j < round.size() && round[j].src == round[i].src && round[j].dst == round[i].dst) ++j;
      auto& out = pairs[{round[i].src, round[i].dst}];
      for (std::size_t x = i; x < j; ++x)
        if (round[x].p == cut::head)
          out.push_back({round[x].src, round[x].dst, part_of(piece(round[x].q), cut::head), round[x].kind, 0});
      for (std::size_t x = i; x < j;) {
        if (round[x].p == cut::head) {
          ++x;
          continue;
        }
        std::size_t y = x + 1;
        while (merge && y < j && round[y].p == cut::whole && round[y].q == round[y - 1].q + 1 &&
               round[y].kind == round[x].kind && round[y].gated == round[x].gated)
          ++y;
        const range a = part_of(piece(round[x].q), round[x].p), b = piece(round[y - 1].q);
        out.push_back({round[x].src, round[x].dst, range{a.offset, b.end() - a.offset}, round[x].kind,
                       round[x].gated ? 2 : 1});
        x = y;
      }
      i = j;
    }
    for (int v = 0; v < M_; ++v) {
      std::vector<const std::vector<message>*> to, from;
      for (const auto& [key, msgs] : pairs) {
        if (key.first == v) to.push_back(&msgs);
        if (key.second == v) from.push_back(&msgs);
      }
      std::stable_sort(to.begin(), to.end(), [&](auto* x, auto* y) {
        return peer_key(v, x->front().dst, true) < peer_key(v, y->front().dst, true);
      });
      std::stable_sort(from.begin(), from.end(), [&](auto* x, auto* y) {
        return peer_key(v, x->front().src, false) < peer_key(v, y->front().src, false);
      });
      auto sends = [&](int group) {
        for (const auto* msgs : to)
          for (const auto& m : *msgs)
            if (m.group == group) agg[idx(v)].push_back({step_kind::send, m.dst, m.data, stage});
      };
      auto recvs = [&](bool heads) {
        for (const auto* msgs : from)
          for (const auto& m : *msgs)
            if ((m.group == 0) == heads) agg[idx(v)].push_back({m.kind, m.src, m.data, stage});
      };
      sends(0);
      sends(1);
      recvs(true);
      sends(2);
      recvs(false);
    }
  }

  void thread(schedule& s, int e) {
    const range part = chunk(count_, idx(k_), idx(e));
    std::vector<int> levels(idx(k_));
    for (int j = 0; j < k_; ++j) levels[idx(j)] = (e + j) % k_;
    // Pieces in stage-digit order (level e most significant), so a stage's pieces for one peer are
    // consecutive, as in the failure-free layout.
    auto key = [&](int r) {
      long long x = 0;
      for (int j = 0; j < k_; ++j) x = x * n_ + digit(r, levels[idx(j)]);
      return x;
    };
    std::vector<int> owner(survivors_);  // position -> topology rank
    std::sort(owner.begin(), owner.end(), [&](int a, int b) { return key(a) < key(b); });
    std::vector<long long> keys(idx(M_));
    for (int q = 0; q < M_; ++q) keys[idx(q)] = key(owner[idx(q)]);
    std::vector<range> piece(idx(M_));
    for (int q = 0; q < M_; ++q) piece[idx(q)] = subchunk(part, idx(M_), idx(q));
    auto positions = [&](long long lo, long long hi) {  // positions whose key is in [lo, hi)
      const auto a = std::lower_bound(keys.begin(), keys.end(), lo), b = std::lower_bound(keys.begin(), keys.end(), hi);
      return std::make_pair(static_cast<int>(a - keys.begin()), static_cast<int>(b - keys.begin()));
    };
    // A server natively holds piece q after j stages when it agrees with q's owner on the first j stage
    // levels; pieces held otherwise (proxies, relays) are "foreign".
    auto native = [&](int r, int q, int j) { return key(r) / pow_[idx(k_ - j)] == keys[idx(q)] / pow_[idx(k_ - j)]; };
    std::vector<std::vector<int>> foreign(idx(M_));  // sorted positions, per survivor
    auto has_foreign = [&](int v, int q) {
      return std::binary_search(foreign[idx(v)].begin(), foreign[idx(v)].end(), q);
    };
    auto add_foreign = [&](int v, int q) {
      auto& f = foreign[idx(v)];
      auto it = std::lower_bound(f.begin(), f.end(), q);
      if (it == f.end() || *it != q) f.insert(it, q);
    };
    auto drop_foreign = [&](int v, int q) {
      auto& f = foreign[idx(v)];
      auto it = std::lower_bound(f.begin(), f.end(), q);
      if (it != f.end() && *it == q) f.erase(it);
    };
    std::vector<std::vector<step>> agg(idx(M_));
    // When each survivor is estimated to finish the stages so far, in piece times (see `gate`).
    std::vector<double> ready(idx(M_), 0.0);

    // Aggregation stages.
    for (int j = 0; j < k_; ++j) {
      const int l = levels[idx(j)];
      const int width = pow_[idx(k_ - j - 1)];
      std::vector<xfer> round;
      std::vector<std::pair<int, int>> keeps;  // (survivor, position): a proxy keeps its own pieces
      for (int v = 0; v < M_; ++v) {
        const int r = survivors_[idx(v)];
        const int mine = digit(r, l);
        std::vector<int> live;  // live members of r's level-l group, by digit
        for (int d = 0; d < n_; ++d)
          if (alive(with_digit(r, l, d))) live.push_back(index_of_[idx(with_digit(r, l, d))]);
        auto route = [&](int q, int d, int ordinal) {
          const int t = with_digit(r, l, d);
          const int to = alive(t) ? index_of_[idx(t)] : live[idx((ordinal + d) % static_cast<int>(live.size()))];
          if (to == v) keeps.emplace_back(v, q);
          else round.push_back({v, to, q});
        };
        const long long prefix = key(r) / pow_[idx(k_ - j)];
        for (int d = 0; d < n_; ++d) {
          if (d == mine) continue;
          const long long lo = (prefix * n_ + d) * width;
          const auto [a, b] = positions(lo, lo + width);
          for (int q = a; q < b; ++q) route(q, d, q - a);
        }
      }
      // Receive kinds: reduce into a piece the receiver holds at the start of the stage (or received
      // earlier in it), else copy.
      std::sort(round.begin(), round.end(), [&](const xfer& x, const xfer& y) {
        return std::tie(x.dst, x.src, x.q) < std::tie(y.dst, y.src, y.q);
      });
      emit_kinds(round, [&](int v, int q) { return native(survivors_[idx(v)], q, j) || has_foreign(v, q); });
      std::vector<xfer> gated = gate(round, ready, piece);
      emit(gated, agg, [&](int q) { return piece[idx(q)]; }, true, static_cast<std::uint32_t>(j));
      for (const auto& [v, q] : keeps)
        if (!native(survivors_[idx(v)], q, j + 1)) add_foreign(v, q);
      for (const auto& x : round)
        if (!native(survivors_[idx(x.dst)], x.q, j + 1)) add_foreign(x.dst, x.q);
    }

    // Auxiliary (relay) rounds: every foreign partial sum travels to its piece's owner along the owner's
    // BFS tree, deepest hops first, merging where paths meet.
    std::map<int, std::vector<xfer>> by_depth;  // depth of the sender -> transfers
    for (int q = 0; q < M_; ++q) {
      std::vector<int> holders;
      for (int v = 0; v < M_; ++v)
        if (has_foreign(v, q)) holders.push_back(v);
      if (holders.empty()) continue;
      const int o = index_of_[idx(owner[idx(q)])];
      const auto& [dist, parent] = bfs(o);
      std::vector<char> on_path(idx(M_), 0);
      for (int h : holders)
        for (int u = h; u != o && !on_path[idx(u)]; u = parent[idx(u)]) on_path[idx(u)] = 1;
      for (int u = 0; u < M_; ++u)
        if (on_path[idx(u)]) by_depth[dist[idx(u)]].push_back({u, parent[idx(u)], q});
    }
    // Each relayed piece moves in `relay_segments` parts, every hop forwarding a part as soon as it has
    // it (cut-through), so a relay over h hops costs about one piece time, as the seed's "Auxiliary"
    // stages count it, rather than h.
    for (auto it = by_depth.rbegin(); it != by_depth.rend(); ++it) {
      auto& round = it->second;
      std::sort(round.begin(), round.end(), [&](const xfer& x, const xfer& y) {
        return std::tie(x.dst, x.src, x.q) < std::tie(y.dst, y.src, y.q);
      });
      emit_kinds(round, [&](int v, int q) { return survivors_[idx(v)] == owner[idx(q)] || has_foreign(v, q); });
      for (const auto& x : round) drop_foreign(x.src, x.q);
      for (const auto& x : round)
        if (survivors_[idx(x.dst)] != owner[idx(x.q)]) add_foreign(x.dst, x.q);
    }
    for (std::size_t seg = 0; seg < relay_segments; ++seg)
      for (auto it = by_depth.rbegin(); it != by_depth.rend(); ++it)
        emit(it->second, agg, [&](int q) { return subchunk(piece[idx(q)], relay_segments, seg); }, false,
             static_cast<std::uint32_t>(k_));

    // Broadcast: the time reversal of everything above, copying the final values back.
    for (int v = 0; v < M_; ++v) {
      auto& steps = s.ranks[idx(v)].channels[idx(e)].steps;
      const auto& a = agg[idx(v)];
      steps = a;
      for (auto st = a.rbegin(); st != a.rend(); ++st)
        steps.push_back({st->is_send() ? step_kind::recv_copy : step_kind::send, st->peer, st->data,
                         static_cast<std::uint32_t>(2 * k_ + 1) - st->stage});
    }
  }

  // Gates one aggregation stage (transfers `round`, receive kinds set) so that a server that finished
  // the previous stage early does not start sending this one before its peers have finished theirs.
  // Groups short of a member finish a stage early; their next-stage sends would then share ports with
  // the full groups' last transfers of the previous stage (on the other channel) and stretch the
  // critical path. The executor orders two steps of one channel only when their ranges overlap (and
  // within its window), so the gate must be a data dependency: when an early server v and a late server
  // w both send piece q to p, w sends the head of q (its first 1/gate_parts) to v instead of p, v
  // reduces it into its q before sending q on to p, and w sends p only the rest (the tail). v's send,
  // whose first segment overlaps the head, waits for w to reach this stage in the executor as in the
  // simulator; p receives the same contributions, and no more bytes move than the heads. Only a piece
  // both reduce into a piece p already holds is gated, and a server is either gated or a head's sender
  // in one stage, never both. A server's finish is estimated as its busiest port's load in the stages
  // so far (`ready`, in piece times), which this updates to the end of this stage.
  template <class Pieces>
  std::vector<xfer> gate(const std::vector<xfer>& round, std::vector<double>& ready, const Pieces& piece) const {
    std::vector<xfer> out = round;
    std::vector<double> sent(idx(M_), 0.0), got(idx(M_), 0.0), from(idx(M_), 0.0);
    for (const auto& x : round) {
      sent[idx(x.src)] += 1;
      got[idx(x.dst)] += 1;
      from[idx(x.dst)] = std::max(from[idx(x.dst)], ready[idx(x.src)]);
    }
    std::vector<double> finish(idx(M_));
    for (int v = 0; v < M_; ++v)
      finish[idx(v)] = std::max(ready[idx(v)] + sent[idx(v)], std::max(ready[idx(v)], from[idx(v)]) + got[idx(v)]);
    std::sort(out.begin(), out.end(), [](const xfer& x, const xfer& y) {
      return std::tie(x.src, x.dst, x.q) < std::tie(y.src, y.dst, y.q);
    });
    // (receiver, piece) -> the transfers that bring it, in `out`.
    std::map<std::pair<int, int>, std::vector<std::size_t>> senders;
    for (std::size_t i = 0; i < out.size(); ++i) senders[{out[i].dst, out[i].q}].push_back(i);
    std::vector<char> early(idx(M_), 0), late(idx(M_), 0);
    std::vector<xfer> heads;
    // Each run of consecutive pieces from one sender to one receiver is one message (see `emit`); a run is
    // gated on its first piece.
    for (std::size_t i = 0; i < out.size();) {
      std::size_t j = i + 1;
      while (j < out.size() && out[j].src == out[i].src && out[j].dst == out[i].dst && out[j].q == out[j - 1].q + 1 &&
             out[j].kind == out[i].kind)
        ++j;
      const xfer x = out[i];
      const std::size_t run_end = j;
      const std::size_t first = i;
      i = j;
      const range pc = piece[idx(x.q)];
      if (x.kind != step_kind::recv_reduce || late[idx(x.src)] || part_of(pc, cut::head).empty() ||
          part_of(pc, cut::tail).empty())
        continue;
      // The latest other sender of the same piece to the same receiver, reducing there as well.
      std::size_t b = out.size();
      for (std::size_t k : senders[{x.dst, x.q}]) {
        const xfer& y = out[k];
        if (y.src == x.src || y.kind != step_kind::recv_reduce || y.p != cut::whole || early[idx(y.src)]) continue;
        if (b == out.size() || ready[idx(y.src)] > ready[idx(out[b].src)]) b = k;
      }
      if (b == out.size() || !(ready[idx(out[b].src)] > ready[idx(x.src)] + 0.5)) continue;
      early[idx(x.src)] = 1;
      late[idx(out[b].src)] = 1;
      for (std::size_t k = first; k < run_end; ++k) out[k].gated = true;
      out[b].p = cut::tail;
      heads.push_back({out[b].src, x.src, x.q, step_kind::recv_reduce, cut::head, false});
    }
    out.insert(out.end(), heads.begin(), heads.end());
    ready = finish;
    return out;
  }

  // Sets each transfer's receive kind; `round` is sorted by (dst, src, q), which is not yet the emit
  // order, so kinds are assigned per (dst, q): the first arrival into a piece the receiver does not hold
  // copies, the rest reduce. The emit order puts that first arrival first (see below).
  template <class Holds>
  void emit_kinds(std::vector<xfer>& round, Holds&& holds) const {
    // Receives are emitted per receiver in (peer key, q) order; find the first of each (dst, q) in it.
    auto peer_key = [&](int me, int peer) {
      const int a = survivors_[idx(me)], b = survivors_[idx(peer)];
      const int l = level_between(a, b);
      return std::make_pair(l, (digit(a, l) - digit(b, l) + n_) % n_);
    };
    std::vector<std::size_t> order(round.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](std::size_t i, std::size_t j) {
      const xfer &x = round[i], &y = round[j];
      if (x.dst != y.dst) return x.dst < y.dst;
      if (x.src != y.src) return peer_key(x.dst, x.src) < peer_key(y.dst, y.src);
      return x.q < y.q;
    });
    std::set<std::pair<int, int>> seen;
    for (std::size_t i : order) {
      auto& x = round[i];
      const bool first = seen.insert(std::make_pair(x.dst, x.q)).second;
      x.kind = (!first || holds(x.dst, x.q)) ? step_kind::recv_reduce : step_kind::recv_copy;
    }
  }

  int n_, k_;
  std::size_t count_;
  int N_, M_ = 0;
  std::vector<int> pow_;
  std::vector<int> index_of_;   // topology rank -> survivor index, -1 if failed
  std::vector<int> survivors_;  // survivor index -> topology rank
  graph_t graph_;
  std::map<int, std::pair<std::vector<int>, std::vector<int>>> bfs_cache_;
};

}  // namespace detail

inline schedule bcube::build_without(int n, int k, std::span<const int> failed, std::size_t count) {
  if (failed.empty()) return build(n, k, count);
  return detail::bml_replan(n, k, failed, count).run();
}

}  // namespace dssync::algorithms
