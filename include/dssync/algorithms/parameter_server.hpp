#pragma once
/// \file
/// `algorithms::parameter_server`: sharded parameter-server aggregation (seed 000, Table II, "PS"; Li et
/// al., "Scaling distributed machine learning with the parameter server", OSDI 2014), with the servers
/// co-located on workers as in BytePS's and ps-lite's colocated mode.

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "dssync/algorithms/hierarchical.hpp"
#include "dssync/core/chunking.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/policy.hpp"
#include "dssync/core/schedule.hpp"

namespace dssync::algorithms {

/// Parameter server with P shards. The buffer is split into P shards; shard j lives on server j. Here
/// the servers are P of the workers themselves (co-located, as BytePS/ps-lite colocated mode): every
/// worker pushes shard j to server j, server j reduces the N-1 pushes into its own copy, then every
/// worker pulls the reduced shard back (recv-copy). Two dependent phases; server j receives and sends
/// (N-1)·S/P. Each shard is reduced by its server only, so all ranks end bitwise identical.
///
/// Default servers (`server_count == 0`): with more than one rack, the first worker of each rack (P = C,
/// one server per rack, spreading the server traffic over the uplinks); with one rack (or a topology
/// without racks), every worker (P = N: then it moves the same data as `direct`).
/// Seed 000's cost: latency 2(N-1)α, transfer 2[(C-1)·G·S·β2 + (G-1)·S·β1]/P.
struct parameter_server {
  static constexpr std::string_view name = "parameter_server";

  /// Number of servers P; 0 picks the default above. Must not exceed the number of workers.
  int server_count = 0;

  /// What the plan depends on besides (topology, count): the server count (plan caches key on it).
  [[nodiscard]] std::string cache_key(const plan_request&) const {
    return "servers=" + std::to_string(server_count);
  }

  /// The server ranks this policy uses on `t`, in shard order.
  /// \throws invalid_argument if `server_count` is negative or exceeds the workers.
  template <concepts::topology Topo>
  [[nodiscard]] std::vector<int> servers(const Topo& t) const {
    const int n = t.workers();
    if (server_count < 0 || server_count > n)
      throw invalid_argument("algorithms::parameter_server: " + std::to_string(server_count) + " servers for " +
                             std::to_string(n) + " workers");
    std::vector<int> out;
    if (server_count == 0) {
      const auto racks = detail::checked_racks("algorithms::parameter_server", n, racks_of(t));
      if (racks.size() > 1) {
        for (const auto& g : racks) out.push_back(g.front());
        return out;
      }
      for (int r = 0; r < n; ++r) out.push_back(r);
      return out;
    }
    // P explicit servers spread evenly over the ranks: rank floor(j·N/P) serves shard j.
    for (int j = 0; j < server_count; ++j)
      out.push_back(static_cast<int>(static_cast<long long>(j) * n / server_count));
    return out;
  }

  /// Builds the schedule for `t.workers()` ranks and `q.count` elements.
  template <concepts::topology Topo>
  [[nodiscard]] schedule plan(const Topo& t, plan_request q) const {
    return build(t.workers(), q.count, servers(t));
  }

  /// The schedule for `n` ranks, `count` elements and the server ranks `server_ranks` (distinct, shard j
  /// on `server_ranks[j]`). \throws invalid_argument if `n < 1` or the servers are empty, out of range or
  /// repeated.
  [[nodiscard]] static schedule build(int n, std::size_t count, const std::vector<int>& server_ranks) {
    if (n < 1)
      throw invalid_argument("algorithms::parameter_server: world size " + std::to_string(n) + " must be at least 1");
    if (server_ranks.empty()) throw invalid_argument("algorithms::parameter_server: no servers");
    std::vector<int> shard_of(static_cast<std::size_t>(n), -1);
    for (std::size_t j = 0; j < server_ranks.size(); ++j) {
      const int sv = server_ranks[j];
      if (sv < 0 || sv >= n)
        throw invalid_argument("algorithms::parameter_server: server rank " + std::to_string(sv) +
                               " out of range for " + std::to_string(n) + " ranks");
      if (shard_of[static_cast<std::size_t>(sv)] >= 0)
        throw invalid_argument("algorithms::parameter_server: rank " + std::to_string(sv) + " serves two shards");
      shard_of[static_cast<std::size_t>(sv)] = static_cast<int>(j);
    }
    schedule s;
    s.policy = std::string(name);
    s.world_size = n;
    s.count = count;
    s.kind = semantics::allreduce;
    s.ranks.resize(static_cast<std::size_t>(n));
    if (n == 1) return s;
    const std::size_t P = server_ranks.size();
    const auto shards = partition(count, P);
    for (int r = 0; r < n; ++r) {
      auto& steps = s.ranks[static_cast<std::size_t>(r)].channels.emplace_back().steps;
      const int mine = shard_of[static_cast<std::size_t>(r)];
      // Push every shard to its server, starting at a rank-dependent shard so that servers are hit in turn.
      const std::size_t start = mine >= 0 ? static_cast<std::size_t>(mine) : static_cast<std::size_t>(r) % P;
      for (std::size_t k = 1; k <= P; ++k) {
        const std::size_t j = (start + k) % P;
        if (server_ranks[j] != r) steps.push_back({step_kind::send, server_ranks[j], shards[j]});
      }
      if (mine >= 0) {
        const range sh = shards[static_cast<std::size_t>(mine)];
        for (int k = 1; k < n; ++k) steps.push_back({step_kind::recv_reduce, (r + k) % n, sh});
        for (int k = 1; k < n; ++k) steps.push_back({step_kind::send, (r + n - k) % n, sh});
      }
      // Pull: the reduced shards from their servers.
      for (std::size_t k = 1; k <= P; ++k) {
        const std::size_t j = (start + k) % P;
        if (server_ranks[j] != r) steps.push_back({step_kind::recv_copy, server_ranks[j], shards[j]});
      }
    }
    s.drop_empty();
    return s;
  }
};

}  // namespace dssync::algorithms
