#pragma once
/// \file
/// `algorithms::bcube`: BML's gradient synchronization on BCube(n, k) (seed 003: "A Scalable,
/// High-Performance, and Fault-Tolerant Network Architecture for Distributed Machine Learning").

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "dssync/core/chunking.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/policy.hpp"
#include "dssync/core/schedule.hpp"

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

  /// The schedule for BCube(n, k) and `count` elements per server.
  /// \throws invalid_argument if n < 2 or k < 1 or n^k overflows.
  [[nodiscard]] static schedule build(int n, int k, std::size_t count) {
    if (n < 2 || k < 1)
      throw invalid_argument("algorithms::bcube: BCube(" + std::to_string(n) + "," + std::to_string(k) +
                             ") needs n >= 2 and k >= 1");
    long long servers = 1;
    for (int i = 0; i < k; ++i) {
      servers *= n;
      if (servers > (1 << 20))
        throw invalid_argument("algorithms::bcube: BCube(" + std::to_string(n) + "," + std::to_string(k) +
                               ") has more than 2^20 servers");
    }
    const int N = static_cast<int>(servers);
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
          for (int t = 1; t < n; ++t) {
            const int d = (mine + t) % n;
            steps.push_back({step_kind::send, with_digit(r, level, d), sub_block(j, d)});
          }
          for (int t = 1; t < n; ++t) {
            const int d = (mine + n - t) % n;
            steps.push_back({step_kind::recv_reduce, with_digit(r, level, d), sub_block(j, mine)});
          }
        }
        for (int j = k - 1; j >= 0; --j) {  // broadcast, levels in reverse
          const int level = (e + j) % k, mine = digit(r, level);
          for (int t = 1; t < n; ++t) {
            const int d = (mine + t) % n;
            steps.push_back({step_kind::send, with_digit(r, level, d), sub_block(j, mine)});
          }
          for (int t = 1; t < n; ++t) {
            const int d = (mine + n - t) % n;
            steps.push_back({step_kind::recv_copy, with_digit(r, level, d), sub_block(j, d)});
          }
        }
      }
    }
    s.drop_empty();
    return s;
  }
};

}  // namespace dssync::algorithms
