#pragma once
/// \file
/// The cost model: closed-form alpha-beta times of the collective policies (seed 000 Table II; Patarasuk
/// & Yuan 2009; Sanders, Speck & Träff 2009; BML, seed 003), a topology-aware prediction of a policy's
/// time on a topology's network graph (`predict`), and the choice of the predicted fastest allreduce
/// (`best_policy`).
///
/// Notation: N workers, S bytes per worker, α seconds per message (latency of a worker-to-worker path),
/// β seconds per byte (1 / bandwidth). Times are in seconds.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dssync/algorithms/direct.hpp"
#include "dssync/algorithms/double_binary_tree.hpp"
#include "dssync/algorithms/gossip.hpp"
#include "dssync/algorithms/hierarchical.hpp"
#include "dssync/algorithms/parameter_server.hpp"
#include "dssync/algorithms/registry.hpp"
#include "dssync/algorithms/ring.hpp"
#include "dssync/algorithms/tree.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/topology.hpp"
#include "dssync/topology/network.hpp"

namespace dssync::algorithms {

/// The alpha-beta parameters of a link or path: `alpha` seconds per message, `beta` seconds per byte.
struct link_params {
  double alpha = 0.0;
  double beta = 0.0;
  /// The parameters of a link of `bandwidth` bytes/s and `latency` seconds.
  [[nodiscard]] static link_params of(const topology::link& l) { return {l.latency, 1.0 / l.bandwidth}; }
};

// ---------------------------------------------------------------------------------------------------
// Closed forms. Each is the time of the named policy's schedule on workers with one full-duplex port
// each, behind a non-blocking switch (or, for the two-level ones, racks of such), as its source gives it.
// All return 0 for a single worker.
// ---------------------------------------------------------------------------------------------------

/// Ring allreduce: 2(N-1)α + 2(N-1)/N·S·β (Patarasuk & Yuan 2009; seed 000 Table II "Ring", with L = 1).
[[nodiscard]] inline double ring_time(int n, double bytes, link_params lp) {
  if (n <= 1) return 0.0;
  const double N = n;
  return 2.0 * (N - 1) * lp.alpha + 2.0 * (N - 1) / N * bytes * lp.beta;
}

/// Direct reduce-scatter + all-gather (`algorithms::direct`): two dependent phases whose N-1 messages are
/// in flight together, each worker's port carrying (N-1)/N·S per phase: 2α + 2(N-1)/N·S·β (the
/// bandwidth term of Patarasuk & Yuan's lower bound, the latency of a two-step algorithm).
[[nodiscard]] inline double direct_time(int n, double bytes, link_params lp) {
  if (n <= 1) return 0.0;
  const double N = n;
  return 2.0 * lp.alpha + 2.0 * (N - 1) / N * bytes * lp.beta;
}

/// Hierarchical allreduce over C racks of G workers (seed 000 Table II "Hierarchical"):
/// 2(G-1)α1 + 2(C-1)α2 + 2(G-1)/G·S·β1 + 2(C-1)/C·S·β2, with `intra` = (α1, β1) the worker links in a
/// rack and `uplink` = (α2, β2) a worker-to-worker path across racks with β2 per byte of the rack
/// uplink (the G cross-rack rings share it). With α1 = α2 = α the latency is the seed's 2(G+C-2)α.
[[nodiscard]] inline double hierarchical_time(int racks, int per_rack, double bytes, link_params intra,
                                              link_params uplink) {
  const double C = std::max(racks, 1), G = std::max(per_rack, 1);
  return 2.0 * (G - 1) * intra.alpha + 2.0 * (C - 1) * uplink.alpha + 2.0 * (G - 1) / G * bytes * intra.beta +
         2.0 * (C - 1) / C * bytes * uplink.beta;
}

/// The height floor(log2 N) of the trees of `double_binary_tree` (0 for N = 1).
[[nodiscard]] inline int tree_height(int n) {
  int d = 0;
  while ((2 << d) <= n) ++d;
  return n <= 1 ? 0 : d;
}

/// Double binary tree with `pipeline` = k pieces per half: 2(D + k - 1)·(α + S·β/k), D = floor(log2 N)
/// the tree height. Each of the 2(D + k - 1) dependent steps (reduce up, then broadcast down, pieces
/// streaming through D levels) moves a piece S/(2k) of each tree, and an inner node's port carries two
/// of them (two children, or its parents in both trees). Seed 000 Table II ("Double Tree", after Sanders
/// et al. 2009 and NCCL) writes 2(log N + k)α and 2(log N + k)S·β/k: the same with one more step per
/// phase for the pipeline's fill.
[[nodiscard]] inline double double_binary_tree_time(int n, double bytes, link_params lp, std::size_t pipeline) {
  if (n <= 1) return 0.0;
  const double k = static_cast<double>(std::max<std::size_t>(pipeline, 1));
  const double steps = 2.0 * (tree_height(n) + k - 1);
  return steps * lp.alpha + steps * bytes * lp.beta / k;
}

/// Parameter server with P shards over C racks of G workers (seed 000 Table II "PS"):
/// latency 2(N-1)α (the seed counts a server's N-1 messages one after another; α = the uplink's when
/// C > 1), transfer 2[(C-1)·G·S·β2 + (G-1)·S·β1]/P.
[[nodiscard]] inline double parameter_server_time(int racks, int per_rack, int servers, double bytes,
                                                  link_params intra, link_params uplink) {
  const double C = std::max(racks, 1), G = std::max(per_rack, 1), P = std::max(servers, 1);
  const double N = C * G;
  if (N <= 1) return 0.0;
  const double alpha = C > 1 ? uplink.alpha : intra.alpha;
  return 2.0 * (N - 1) * alpha + 2.0 * ((C - 1) * G * bytes * uplink.beta + (G - 1) * bytes * intra.beta) / P;
}

/// Gossip, one iteration of `algorithms::gossip`: 2α + S·β (two dependent steps, each moving half the
/// buffer each way). Seed 000 Table II gives latency 2α and a transfer of at least 4S·β2 for the gossip
/// it compares, which sends whole buffers.
[[nodiscard]] inline double gossip_time(int n, double bytes, link_params lp) {
  if (n <= 1) return 0.0;
  return 2.0 * lp.alpha + bytes * lp.beta;
}

/// BML on BCube with N servers of k ports: 2(N-1)/(k·N)·S·β, no latency term (BML's Table II, seed 003;
/// BCube(3,2): 8/9 of S·β).
[[nodiscard]] inline double bml_time(int n, int k, double bytes, link_params lp) {
  if (n <= 1) return 0.0;
  const double N = n;
  return 2.0 * (N - 1) / (static_cast<double>(std::max(k, 1)) * N) * bytes * lp.beta;
}

// ---------------------------------------------------------------------------------------------------
// Prediction on a topology.
// ---------------------------------------------------------------------------------------------------

namespace detail {

/// One message of a step: `bytes` from rank `src` to rank `dst`.
struct flow {
  int src = 0, dst = 0;
  double bytes = 0;
};

/// The network of a topology as directed arcs (parallel links merged: bandwidths add, the lowest
/// latency counts), with shortest-hop routes (BFS; ties go to the first arc found). Topologies without
/// `graph()` are taken as a full mesh of default links.
class flow_model {
 public:
  template <concepts::topology Topo>
  explicit flow_model(const Topo& t) : n_(t.workers()) {
    if constexpr (requires { t.graph(); }) {
      const topology::network g = t.graph();
      const std::size_t v = boost::num_vertices(g);
      out_.assign(v, {});
      rank_vertex_.assign(static_cast<std::size_t>(n_), -1);
      for (std::size_t x = 0; x < v; ++x) {
        const auto& nd = g[x];
        if (nd.kind == topology::node_kind::worker && nd.rank >= 0 && nd.rank < n_)
          rank_vertex_[static_cast<std::size_t>(nd.rank)] = static_cast<int>(x);
      }
      std::map<std::pair<std::size_t, std::size_t>, std::size_t> index;
      for (auto [it, end] = boost::edges(g); it != end; ++it) {
        const std::size_t a = boost::source(*it, g), b = boost::target(*it, g);
        const auto& l = g[*it];
        auto [pos, fresh] = index.try_emplace({a, b}, arcs_.size());
        if (fresh) {
          arcs_.push_back({static_cast<int>(b), l.bandwidth, l.latency});
          out_[a].push_back(static_cast<int>(pos->second));
        } else {
          arcs_[pos->second].bandwidth += l.bandwidth;
          arcs_[pos->second].latency = std::min(arcs_[pos->second].latency, l.latency);
        }
      }
      for (int r = 0; r < n_; ++r)
        if (rank_vertex_[static_cast<std::size_t>(r)] < 0)
          throw invalid_argument("dssync cost model: topology " + std::string(t.name()) + " has no vertex for rank " +
                                 std::to_string(r));
    } else {
      const topology::link l{};
      out_.assign(static_cast<std::size_t>(n_), {});
      rank_vertex_.resize(static_cast<std::size_t>(n_));
      for (int a = 0; a < n_; ++a) {
        rank_vertex_[static_cast<std::size_t>(a)] = a;
        for (int b = 0; b < n_; ++b)
          if (a != b) {
            out_[static_cast<std::size_t>(a)].push_back(static_cast<int>(arcs_.size()));
            arcs_.push_back({b, l.bandwidth, l.latency});
          }
      }
    }
    pred_.assign(static_cast<std::size_t>(n_), {});
  }

  [[nodiscard]] int workers() const noexcept { return n_; }

  /// The arcs of the route from rank `a` to rank `b`. \throws invalid_argument if `b` is unreachable.
  [[nodiscard]] std::vector<int> route(int a, int b) {
    auto& pred = pred_[static_cast<std::size_t>(a)];
    if (pred.empty()) {
      pred.assign(out_.size(), -2);
      const int s = rank_vertex_[static_cast<std::size_t>(a)];
      pred[static_cast<std::size_t>(s)] = -1;
      std::deque<int> q{s};
      while (!q.empty()) {
        const int x = q.front();
        q.pop_front();
        for (int e : out_[static_cast<std::size_t>(x)]) {
          const int y = arcs_[static_cast<std::size_t>(e)].to;
          if (pred[static_cast<std::size_t>(y)] != -2) continue;
          pred[static_cast<std::size_t>(y)] = e;
          q.push_back(y);
        }
      }
    }
    std::vector<int> path;
    int x = rank_vertex_[static_cast<std::size_t>(b)];
    if (pred[static_cast<std::size_t>(x)] == -2)
      throw invalid_argument("dssync cost model: no route from rank " + std::to_string(a) + " to rank " +
                             std::to_string(b));
    while (pred[static_cast<std::size_t>(x)] >= 0) {
      const int e = pred[static_cast<std::size_t>(x)];
      path.push_back(e);
      // The arc's source: the vertex whose out-list holds e. Walk back through the BFS tree.
      x = source_of(e);
    }
    return path;
  }

  /// The time of a step in which all `flows` run concurrently: for each flow, its path latency plus the
  /// bytes that cross its most loaded arc divided by that arc's bandwidth; the step takes the longest.
  [[nodiscard]] double step(const std::vector<flow>& flows) {
    double worst = 0;
    for (double t : times(flows)) worst = std::max(worst, t);
    return worst;
  }

  /// Per-flow times of a step (see `step`).
  [[nodiscard]] std::vector<double> times(const std::vector<flow>& flows) {
    std::vector<double> load(arcs_.size(), 0.0);
    std::vector<std::vector<int>> paths;
    paths.reserve(flows.size());
    for (const auto& f : flows) {
      paths.push_back(f.src == f.dst ? std::vector<int>{} : route(f.src, f.dst));
      for (int e : paths.back()) load[static_cast<std::size_t>(e)] += f.bytes;
    }
    std::vector<double> out;
    out.reserve(flows.size());
    for (const auto& p : paths) {
      double lat = 0, xfer = 0;
      for (int e : p) {
        const auto& a = arcs_[static_cast<std::size_t>(e)];
        lat += a.latency;
        xfer = std::max(xfer, load[static_cast<std::size_t>(e)] / a.bandwidth);
      }
      out.push_back(lat + xfer);
    }
    return out;
  }

  /// The alpha-beta parameters of the route from rank `a` to rank `b`: summed latency, and the
  /// bottleneck bandwidth.
  [[nodiscard]] link_params path_params(int a, int b) {
    link_params lp;
    double bw = std::numeric_limits<double>::infinity();
    for (int e : route(a, b)) {
      lp.alpha += arcs_[static_cast<std::size_t>(e)].latency;
      bw = std::min(bw, arcs_[static_cast<std::size_t>(e)].bandwidth);
    }
    lp.beta = std::isinf(bw) ? 0.0 : 1.0 / bw;
    return lp;
  }

 private:
  struct arc {
    int to;
    double bandwidth, latency;
  };
  [[nodiscard]] int source_of(int e) {
    if (src_.empty()) {
      src_.assign(arcs_.size(), -1);
      for (std::size_t x = 0; x < out_.size(); ++x)
        for (int a : out_[x]) src_[static_cast<std::size_t>(a)] = static_cast<int>(x);
    }
    return src_[static_cast<std::size_t>(e)];
  }
  int n_;
  std::vector<int> rank_vertex_;
  std::vector<std::vector<int>> out_;
  std::vector<arc> arcs_;
  std::vector<int> src_;
  std::vector<std::vector<int>> pred_;
};

/// Flows of a ring among `members` (member i sends to member i+1), `bytes` each.
inline void ring_flows(std::vector<flow>& out, const std::vector<int>& members, double bytes) {
  const std::size_t g = members.size();
  if (g < 2) return;
  for (std::size_t i = 0; i < g; ++i) out.push_back({members[i], members[(i + 1) % g], bytes});
}

/// Step-model time of policy `name` on `m` for `bytes` per worker, or nothing if the cost model does
/// not know the policy.
template <concepts::topology Topo>
std::optional<double> step_model_time(std::string_view name, const Topo& t, flow_model& m, double bytes,
                                      std::size_t element_size) {
  const int n = t.workers();
  if (n <= 1) {
    if (name == ring::name || name == direct::name || name == hierarchical::name ||
        name == double_binary_tree::name || name == parameter_server::name || name == gossip::name ||
        name == tree::name)
      return 0.0;
    return std::nullopt;
  }
  const double N = n;
  std::vector<flow> f;
  if (name == ring::name) {
    std::vector<int> all(static_cast<std::size_t>(n));
    for (int r = 0; r < n; ++r) all[static_cast<std::size_t>(r)] = r;
    ring_flows(f, all, bytes / N);
    return 2.0 * (N - 1) * m.step(f);
  }
  if (name == direct::name) {
    for (int a = 0; a < n; ++a)
      for (int b = 0; b < n; ++b)
        if (a != b) f.push_back({a, b, bytes / N});
    return 2.0 * m.step(f);
  }
  if (name == hierarchical::name) {
    const auto racks = checked_racks("dssync cost model", n, racks_of(t));
    std::size_t K = 0;
    for (const auto& g : racks) K = std::max(K, g.size());
    // Phases 1 and 3: the racks' rings run concurrently; rack c takes 2(g_c - 1) steps of S/g_c.
    for (const auto& g : racks) ring_flows(f, g, bytes / static_cast<double>(g.size()));
    const auto per_flow = m.times(f);
    double intra = 0;
    std::size_t at = 0;
    for (const auto& g : racks) {
      if (g.size() < 2) continue;
      double step = 0;
      for (std::size_t i = 0; i < g.size(); ++i) step = std::max(step, per_flow[at++]);
      intra = std::max(intra, 2.0 * static_cast<double>(g.size() - 1) * step);
    }
    // Phase 2: one ring per chunk among its owners, all concurrently; 2(C - 1) steps of S/(K·C).
    const std::size_t C = racks.size();
    double inter = 0;
    if (C > 1) {
      std::vector<flow> g2;
      for (std::size_t j = 0; j < K; ++j) {
        std::vector<int> owners;
        for (const auto& g : racks) owners.push_back(g[j * g.size() / K]);
        ring_flows(g2, owners, bytes / static_cast<double>(K * C));
      }
      inter = 2.0 * static_cast<double>(C - 1) * m.step(g2);
    }
    return intra + inter;
  }
  if (name == double_binary_tree::name) {
    const auto tr = double_binary_tree::trees(n);
    const std::size_t count = static_cast<std::size_t>(bytes / static_cast<double>(std::max<std::size_t>(element_size, 1)));
    const double k = static_cast<double>(double_binary_tree::auto_pipeline(count));
    std::vector<flow> up, down;
    for (const binary_tree* x : {&tr.a, &tr.b})
      for (int r = 0; r < n; ++r)
        if (const int p = x->parent[static_cast<std::size_t>(r)]; p >= 0) {
          up.push_back({r, p, bytes / (2.0 * k)});
          down.push_back({p, r, bytes / (2.0 * k)});
        }
    const double D = std::max(tr.a.height(), tr.b.height());
    return (D + k - 1) * (m.step(up) + m.step(down));
  }
  if (name == parameter_server::name) {
    const auto servers = parameter_server{}.servers(t);
    const double P = static_cast<double>(servers.size());
    std::vector<flow> push, pull;
    for (int s : servers)
      for (int w = 0; w < n; ++w)
        if (w != s) {
          push.push_back({w, s, bytes / P});
          pull.push_back({s, w, bytes / P});
        }
    return m.step(push) + m.step(pull);
  }
  if (name == tree::name) {
    // The packed trees of the plan (allreduce: into rank 0 and back), all at once: each step moves one
    // piece of every tree along every tree edge, up then down; D + k - 1 steps each way, with D the
    // deepest tree and k the most pieces of a tree (as for the double binary tree).
    if constexpr (requires { t.graph(); }) {
      const tree policy{};
      // Packing is max-flows per candidate arc: milliseconds on a server or a small fabric, seconds on a
      // dense graph of 64 ranks. The cost model stops at `tree::cost_model_max_work` (ranks x arcs) rather
      // than stall on a first call; the policy packs any graph, and packings are cached.
      if (static_cast<std::size_t>(n) * boost::num_edges(t.graph()) > tree::cost_model_max_work)
        return std::nullopt;
      const std::size_t count = static_cast<std::size_t>(bytes / static_cast<double>(std::max<std::size_t>(element_size, 1)));
      trees::packing pk;
      try {
        pk = policy.packing_for(t, plan_request{count, 0, semantics::allreduce});
      } catch (const invalid_argument&) {
        return std::nullopt;  // the network does not connect the ranks: no trees
      }
      std::vector<flow> up, down;
      double depth = 0, pieces = 1;
      for (const auto& tr : pk.trees) {
        const double share = bytes * tr.rate / pk.rate;
        const double elements = share / static_cast<double>(std::max<std::size_t>(element_size, 1));
        const double k = policy.piece == 0 ? 1.0
                                           : std::clamp(std::ceil(elements / static_cast<double>(policy.piece)), 1.0,
                                                        static_cast<double>(tree::max_pieces));
        pieces = std::max(pieces, k);
        for (int r = 0; r < n; ++r) {
          const int p = tr.parent[static_cast<std::size_t>(r)];
          if (p < 0) continue;
          up.push_back({r, p, share / k});
          down.push_back({p, r, share / k});
          double d = 1;
          for (int a = p; tr.parent[static_cast<std::size_t>(a)] >= 0; a = tr.parent[static_cast<std::size_t>(a)]) ++d;
          depth = std::max(depth, d);
        }
      }
      if (up.empty()) return 0.0;
      return (depth + pieces - 1) * (m.step(up) + m.step(down));
    } else {
      return std::nullopt;
    }
  }
  if (name == gossip::name) {
    const auto partner = gossip::pairing(n, 0);
    for (int r = 0; r < n; ++r)
      if (partner[static_cast<std::size_t>(r)] >= 0) f.push_back({r, partner[static_cast<std::size_t>(r)], bytes / 2});
    return f.empty() ? 0.0 : 2.0 * m.step(f);
  }
  return std::nullopt;
}

}  // namespace detail

/// The alpha-beta parameters between two workers of `t`: α the latency of the route from rank 0 to
/// rank 1 (one hop on a direct cable, two through a switch), β the inverse of the lowest bandwidth of
/// a link leaving a worker (its port). For homogeneous topologies these are the α and β of the closed
/// forms. A topology without `graph()` gets the default `topology::link`.
template <concepts::topology Topo>
[[nodiscard]] link_params worker_link_params(const Topo& t) {
  if constexpr (requires { t.graph(); }) {
    const topology::network g = t.graph();
    double bw = std::numeric_limits<double>::infinity();
    for (auto [it, end] = boost::edges(g); it != end; ++it)
      if (g[boost::source(*it, g)].kind == topology::node_kind::worker) bw = std::min(bw, g[*it].bandwidth);
    link_params lp;
    if (t.workers() > 1) lp.alpha = detail::flow_model(t).path_params(0, 1).alpha;
    lp.beta = std::isinf(bw) ? 0.0 : 1.0 / bw;
    return lp;
  } else {
    return link_params::of(topology::link{});
  }
}

/// The cost model's prediction of policy `name` on `t` for `bytes` per worker, or nothing if it does
/// not know the policy. The step model: the policy's schedule is a sequence of steps of concurrent
/// messages (ring: 2(N-1) steps of S/N to the next rank; direct: 2 steps of S/N to every rank;
/// hierarchical: the racks' rings, then the cross-rack rings; double binary tree: 2(D+k-1) steps of
/// S/(2k) along both trees' edges; parameter server: push then pull of S/P; gossip: 2 steps of S/2 with
/// the partner of iteration 0; tree: the packed trees' edges, one piece per tree per step, up then down). Each message follows a shortest-hop route on `t.graph()`; a step lasts
/// as long as its slowest message: path latency plus the bytes that share its most loaded link divided
/// by that link's bandwidth. Behind one switch (`topology::star`) this gives the closed forms above with
/// `worker_link_params` (except that the parameter server's latency is 2α, not the seed's serial
/// 2(N-1)α); on racks (`topology::leaf_spine` with the uplink the bottleneck) it gives
/// `hierarchical_time`; ring allreduce matches `ring_time` on a ring and on a full mesh too. Elsewhere it
/// charges what the closed forms ignore: multi-hop routes and shared links (`direct` on a ring
/// topology), and spare ports (`direct` on a full mesh: 2α + 2S·β/N). Single-path routing ignores ECMP,
/// so multi-path fabrics (fat-tree) are predicted pessimistically; the simulator (sim/) is the
/// reference for those.
/// `element_size` converts bytes to elements where a plan depends on the count (the tree's pipeline).
/// \throws invalid_argument if the graph lacks a worker or a route.
template <concepts::topology Topo>
[[nodiscard]] std::optional<double> try_predict(std::string_view name, const Topo& t, double bytes,
                                                std::size_t element_size = 4) {
  detail::flow_model m(t);
  return detail::step_model_time(name, t, m, bytes, element_size);
}

/// As `try_predict`, for a policy the cost model knows. \throws invalid_argument naming the policy
/// otherwise.
template <concepts::topology Topo>
[[nodiscard]] double predict(std::string_view name, const Topo& t, double bytes, std::size_t element_size = 4) {
  if (auto v = try_predict(name, t, bytes, element_size)) return *v;
  throw invalid_argument("dssync cost model: no prediction for policy \"" + std::string(name) + "\"");
}

/// The registered allreduce policy (`policy_names()`, less those whose plans are not allreduces: gossip, chain) with the
/// lowest predicted time on `t` for `bytes` per worker; ties go to the one listed first (ring). Policies
/// the cost model does not know are skipped. DSSYNC_ALGO, when set and not empty, overrides the choice
/// and is returned as is, unchecked (as everywhere in dssync, it forces the policy; `registry().at`
/// rejects an unknown name), except DSSYNC_ALGO=auto, which asks for this choice; that view points
/// into the environment, so copy it before changing DSSYNC_ALGO. The prediction is the step model of `try_predict`; policies that take parameters are
/// predicted with their defaults on `t`.
template <concepts::topology Topo>
[[nodiscard]] std::string_view best_policy(const Topo& t, double bytes, std::size_t element_size = 4);

/// As `best_policy`, without the DSSYNC_ALGO override: the cost model's own choice (what `auto`
/// falls back to where its tuning table has no entry).
template <concepts::topology Topo>
[[nodiscard]] std::string_view fastest_predicted(const Topo& t, double bytes, std::size_t element_size = 4) {
  detail::flow_model m(t);
  std::string_view best = ring::name;
  double best_time = std::numeric_limits<double>::infinity();
  for (auto name : policy_names()) {
    if (!registry().at(name).plans(semantics::allreduce) || registry().at(name).promises != semantics::allreduce)
      continue;
    const auto v = detail::step_model_time(name, t, m, bytes, element_size);
    if (v && *v < best_time) {
      best_time = *v;
      best = name;
    }
  }
  return best;
}

template <concepts::topology Topo>
[[nodiscard]] std::string_view best_policy(const Topo& t, double bytes, std::size_t element_size) {
  if (const auto forced = policy_from_env(""); !forced.empty() && forced != "auto") return forced;
  return fastest_predicted(t, bytes, element_size);
}

}  // namespace dssync::algorithms
