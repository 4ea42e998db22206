#pragma once
/// \file
/// Grouping, shuffle and adjustment policies: who synchronizes with whom in an iteration of DS-Sync
/// (seed 000). A *grouping* is a partition of the ranks into disjoint groups; a *shuffle* says which
/// grouping iteration t uses; an *adjustment* rewrites a grouping for the observed `network_state`.
/// `algorithms::basic_ds_sync` composes one of each.
///
/// Shuffles (`dssync::concepts::shuffle`):
///  - `rack_rotation`: the seed's group initialization (Fig. 4): per rack an intra-rack group of its
///    G-1 other workers, and one representative per rack in the inter-rack group; the role rotates, so
///    every worker crosses racks in turn.
///  - `digit_grouping{g}`: ranks written in base g, grouped by all digits but one, a different digit each
///    iteration. With N = g^m it averages exactly after m iterations (each iteration averages one digit
///    away).
///  - `random_pairs{seed}`: a fresh random perfect matching every iteration (aperiodic).
///  - `fixed_sequence{{...}}`: the user's groupings in turn; the public DS-Sync code's 4-worker
///    alternation is `{{{0,1},{2,3}}, {{0,3},{1,2}}}`.

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <string>
#include <string_view>
#include <vector>

#include "dssync/core/error.hpp"
#include "dssync/core/network_state.hpp"

namespace dssync::algorithms {

/// A partition of ranks 0..N-1 into disjoint groups. A group's order is its ring order.
using grouping = std::vector<std::vector<int>>;

/// The racks of a topology, as `racks_of` gives them: the input every shuffle plans from.
using rack_list = std::vector<std::vector<int>>;

/// The number of ranks in `racks`.
[[nodiscard]] inline int rank_count(const rack_list& racks) {
  std::size_t n = 0;
  for (const auto& r : racks) n += r.size();
  return static_cast<int>(n);
}

/// Checks that `g` partitions the ranks 0..n-1 (every rank in exactly one group, no empty group).
/// \throws invalid_argument naming `who` and the offending rank or group.
inline void check_grouping(std::string_view who, int n, const grouping& g) {
  std::vector<int> seen(static_cast<std::size_t>(n > 0 ? n : 0), -1);
  for (std::size_t k = 0; k < g.size(); ++k) {
    if (g[k].empty()) throw invalid_argument(std::string(who) + ": group " + std::to_string(k) + " is empty");
    for (int r : g[k]) {
      if (r < 0 || r >= n)
        throw invalid_argument(std::string(who) + ": group " + std::to_string(k) + " has rank " + std::to_string(r) +
                               ", not a rank of " + std::to_string(n));
      if (seen[static_cast<std::size_t>(r)] >= 0)
        throw invalid_argument(std::string(who) + ": rank " + std::to_string(r) + " is in groups " +
                               std::to_string(seen[static_cast<std::size_t>(r)]) + " and " + std::to_string(k));
      seen[static_cast<std::size_t>(r)] = static_cast<int>(k);
    }
  }
  for (int r = 0; r < n; ++r)
    if (seen[static_cast<std::size_t>(r)] < 0)
      throw invalid_argument(std::string(who) + ": rank " + std::to_string(r) + " is in no group");
}

/// The group of `g` that holds `rank` (empty if none): a reference into `g`.
[[nodiscard]] inline const std::vector<int>& group_of(const grouping& g, int rank) {
  static const std::vector<int> none;
  for (const auto& x : g)
    if (std::find(x.begin(), x.end(), rank) != x.end()) return x;
  return none;
}
/// Refused for a temporary grouping, whose groups die with the full expression (keep the grouping first).
const std::vector<int>& group_of(grouping&&, int) = delete;

/// Prints a grouping as "{0,1,2} {3,4}".
[[nodiscard]] inline std::string to_string(const grouping& g) {
  std::string out;
  for (const auto& x : g) {
    out += out.empty() ? "{" : " {";
    for (std::size_t i = 0; i < x.size(); ++i) {
      if (i) out += ',';
      out += std::to_string(x[i]);
    }
    out += '}';
  }
  return out;
}


}  // namespace dssync::algorithms

namespace dssync::concepts {


/// `dssync::concepts::shuffle`: a shuffle policy `S`. For `const S& s`, racks `k` and
/// iteration `t`: `S::name`; `s.groups(k, t)`, a `grouping` of the `rank_count(k)` ranks; `s.period(k)`,
/// the number of iterations after which the groupings repeat (0: never, the plans are not cached); and
/// `s.key()`, its parameters as text (for cache keys).
template <class S>
concept shuffle = requires(const S& s, const algorithms::rack_list& k, std::uint64_t t) {
  { S::name } -> std::convertible_to<std::string_view>;
  { s.groups(k, t) } -> std::convertible_to<algorithms::grouping>;
  { s.period(k) } -> std::convertible_to<std::uint64_t>;
  { s.key() } -> std::convertible_to<std::string>;
};

}  // namespace dssync::concepts

namespace dssync::algorithms {

/// The seed's group initialization (seed 000, Fig. 4). In iteration t, rack k (with G_k workers) sends one
/// worker as its representative to the inter-rack group (all representatives, in rack order); its other
/// G_k - 1 workers form the intra-rack group. The role rotates: the representative is the worker at
/// position (t + k·⌊t/G_k⌋) mod G_k, so within every G_k consecutive iterations each worker of the rack
/// crosses racks once. A rack of one worker is always its own representative. With a single rack there is
/// no other rack to cross to, and the rack is one group (period 1).
///
/// The stagger k·⌊t/G_k⌋ is ours, not the seed's. Without it (`staggered = false`, every rack sending
/// position t mod G), racks of two never reach consensus: a rack's intra-rack group is then one worker,
/// and the workers at position 0 and those at position 1 form two inter-rack groups that never meet
/// (consensus::require_consensus names the two parts). Staggering changes which representatives meet, so
/// the union of a period's groups is connected. Period: the lcm of G_k² (of G_k unstaggered); 0
/// (aperiodic) past 2^32.
struct rack_rotation {
  static constexpr std::string_view name = "rack_rotation";
  bool staggered = true;

  /// The position of rack `k`'s representative (rack of `size` workers) in iteration `t`.
  [[nodiscard]] std::size_t representative(std::size_t k, std::size_t size, std::uint64_t t) const {
    const std::uint64_t shift = staggered ? (k % size) * ((t / size) % size) : 0;
    return static_cast<std::size_t>((t % size + shift) % size);
  }

  [[nodiscard]] grouping groups(const rack_list& racks, std::uint64_t t) const {
    if (occupied(racks) <= 1) {
      grouping whole;
      for (const auto& r : racks)
        if (!r.empty()) whole.push_back(r);
      return whole;
    }
    grouping g;
    std::vector<int> inter;
    for (std::size_t k = 0; k < racks.size(); ++k) {
      const auto& rack = racks[k];
      if (rack.empty()) continue;
      const std::size_t rep = representative(k, rack.size(), t);
      inter.push_back(rack[rep]);
      std::vector<int> intra;
      for (std::size_t i = 1; i < rack.size(); ++i) intra.push_back(rack[(rep + i) % rack.size()]);
      if (!intra.empty()) g.push_back(std::move(intra));
    }
    if (!inter.empty()) g.insert(g.begin(), std::move(inter));
    return g;
  }
  [[nodiscard]] std::uint64_t period(const rack_list& racks) const {
    std::uint64_t p = 1;
    if (occupied(racks) <= 1) return p;
    for (const auto& r : racks) {
      if (r.empty()) continue;
      const auto z = static_cast<std::uint64_t>(r.size());
      p = std::lcm(p, staggered ? z * z : z);
      if (p > (std::uint64_t{1} << 32)) return 0;
    }
    return p;
  }
  [[nodiscard]] std::string key() const { return std::string(name) + (staggered ? "" : "(plain)"); }

 private:
  static std::size_t occupied(const rack_list& racks) {
    std::size_t n = 0;
    for (const auto& r : racks) n += !r.empty();
    return n;
  }
};

/// Base-g digit grouping: in iteration t, with d = t mod m (m digits cover ranks 0..N-1 in base g),
/// ranks that differ only in digit d form a group, ordered by that digit. For N = g^m every group has g
/// members and the m groupings of a period average exactly: after iteration d every group of ranks
/// sharing digits d+1.. holds its mean. Other N give smaller groups at the top, and consensus (not
/// exact averaging). Racks are ignored: ranks are numbered 0..N-1. Period m (1 for N = 1).
struct digit_grouping {
  static constexpr std::string_view name = "digit";
  int g = 2;  ///< the base: the group size

  [[nodiscard]] grouping groups(const rack_list& racks, std::uint64_t t) const {
    check();
    const int n = rank_count(racks);
    const int m = digits(n);
    const std::uint64_t d = t % static_cast<std::uint64_t>(m);
    long long place = 1;
    for (std::uint64_t i = 0; i < d; ++i) place *= g;
    grouping out;
    for (int r = 0; r < n; ++r) {
      if ((r / place) % g != 0) continue;  // r leads its group: digit d is 0
      std::vector<int> grp;
      for (long long j = 0; j < g; ++j) {
        const long long q = r + j * place;
        if (q < n) grp.push_back(static_cast<int>(q));
      }
      out.push_back(std::move(grp));
    }
    return out;
  }
  [[nodiscard]] std::uint64_t period(const rack_list& racks) const {
    check();
    return static_cast<std::uint64_t>(digits(rank_count(racks)));
  }
  [[nodiscard]] std::string key() const { return std::string(name) + "(g=" + std::to_string(g) + ")"; }

  /// The number of base-g digits of n-1 (at least 1).
  [[nodiscard]] int digits(int n) const {
    int m = 1;
    for (long long span = g; span < n; span *= g) ++m;
    return m;
  }

 private:
  void check() const {
    if (g < 2) throw invalid_argument("algorithms::digit_grouping: base " + std::to_string(g) + " must be at least 2");
  }
};

/// A random perfect matching every iteration (a rank left over when N is odd sits out): Fisher-Yates
/// over splitmix64 seeded by (seed, t), the same on every rank and build. Aperiodic (period 0).
struct random_pairs {
  static constexpr std::string_view name = "random_pairs";
  std::uint64_t seed = 0;

  [[nodiscard]] grouping groups(const rack_list& racks, std::uint64_t t) const {
    const int n = rank_count(racks);
    std::vector<int> order(static_cast<std::size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    std::uint64_t state = seed ^ (t * 0x9e3779b97f4a7c15ull) ^ 0xd1b54a32d192ed03ull;
    auto next = [&state] {  // splitmix64 (Steele, Lea & Flood 2014)
      std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      return z ^ (z >> 31);
    };
    for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[next() % i]);
    grouping out;
    for (std::size_t i = 0; i + 1 < order.size(); i += 2) out.push_back({order[i], order[i + 1]});
    if (order.size() % 2 == 1) out.push_back({order.back()});
    return out;
  }
  [[nodiscard]] std::uint64_t period(const rack_list&) const { return 0; }
  [[nodiscard]] std::string key() const { return std::string(name) + "(seed=" + std::to_string(seed) + ")"; }
};

/// The user's groupings, one per iteration in turn (period: their number). Each must partition the
/// ranks; `groups` checks it. \throws invalid_argument if the sequence is empty or a grouping is not a
/// partition of the ranks.
struct fixed_sequence {
  static constexpr std::string_view name = "fixed_sequence";
  std::vector<grouping> sequence;

  [[nodiscard]] grouping groups(const rack_list& racks, std::uint64_t t) const {
    if (sequence.empty()) throw invalid_argument("algorithms::fixed_sequence: no groupings given");
    const auto& g = sequence[static_cast<std::size_t>(t % sequence.size())];
    check_grouping("algorithms::fixed_sequence, grouping " + std::to_string(t % sequence.size()), rank_count(racks), g);
    return g;
  }
  [[nodiscard]] std::uint64_t period(const rack_list&) const { return sequence.size(); }
  [[nodiscard]] std::string key() const {
    std::string k(name);
    for (const auto& g : sequence) k += '[' + to_string(g) + ']';
    return k;
  }
};

/// The adjustment for contention (seed 000, Fig. 5 and 6): bottlenecks go in groups of two.
///
/// A member of a group is a *bottleneck* when its NIC is contended (`state.slow_workers`, Fig. 6), or
/// when the group spans racks and the member's rack uplink is contended (`state.slow_racks`, Fig. 5: an
/// intra-rack group does not cross the uplink). A group of three or more with bottlenecks is split:
/// each bottleneck is paired with one peer of its group, and the rest stay one group. So a slow uplink or
/// NIC stalls only a pair, and the rest of its group runs at full speed. The peer is the
/// (choice mod f)-th of the f free non-bottleneck members after it in ring order (when none is left,
/// another bottleneck, chosen the same way). The caller varies `choice` with the iteration (`basic_ds_sync` passes
/// the iteration modulo its period), because a fixed peer would cut the world in two for as long as the
/// contention lasts (racks 0-1 and 2-3 on four racks would never exchange). An empty state changes
/// nothing, which undoes the adjustment once the contention ends.
[[nodiscard]] inline grouping split_bottlenecks(const grouping& g, const rack_list& racks, const network_state& state,
                                                std::uint64_t choice = 0) {
  if (state.empty()) return g;
  std::vector<int> rack(static_cast<std::size_t>(rank_count(racks)), -1);
  for (std::size_t k = 0; k < racks.size(); ++k)
    for (int r : racks[k])
      if (r >= 0 && static_cast<std::size_t>(r) < rack.size()) rack[static_cast<std::size_t>(r)] = static_cast<int>(k);
  auto rack_of = [&](int r) { return r >= 0 && static_cast<std::size_t>(r) < rack.size() ? rack[static_cast<std::size_t>(r)] : -1; };
  grouping out;
  for (const auto& grp : g) {
    if (grp.size() < 3) {
      out.push_back(grp);
      continue;
    }
    bool spans = false;
    for (int r : grp) spans = spans || rack_of(r) != rack_of(grp.front());
    std::vector<char> slow(grp.size(), 0);
    bool any = false;
    for (std::size_t i = 0; i < grp.size(); ++i) {
      slow[i] = state.slow_worker(grp[i]) || (spans && state.slow_rack(rack_of(grp[i])));
      any = any || slow[i];
    }
    if (!any) {
      out.push_back(grp);
      continue;
    }
    std::vector<char> used(grp.size(), 0);
    const std::size_t m = grp.size();
    for (std::size_t i = 0; i < m; ++i) {
      if (!slow[i] || used[i]) continue;
      used[i] = 1;
      std::size_t peer = m;
      std::vector<std::size_t> fast;  // the free fast members after i, in ring order
      for (std::size_t k = 1; k < m; ++k)
        if (const std::size_t j = (i + k) % m; !used[j] && !slow[j]) fast.push_back(j);
      if (!fast.empty()) peer = fast[static_cast<std::size_t>(choice % fast.size())];
      if (peer == m) {  // else another bottleneck, chosen the same way
        std::vector<std::size_t> other;
        for (std::size_t k = 1; k < m; ++k)
          if (const std::size_t j = (i + k) % m; !used[j]) other.push_back(j);
        if (!other.empty()) peer = other[static_cast<std::size_t>(choice % other.size())];
      }
      if (peer == m) {
        out.push_back({grp[i]});
        continue;
      }
      used[peer] = 1;
      out.push_back({grp[i], grp[peer]});
    }
    std::vector<int> rest;
    for (std::size_t i = 0; i < m; ++i)
      if (!used[i]) rest.push_back(grp[i]);
    if (!rest.empty()) out.push_back(std::move(rest));
  }
  return out;
}

}  // namespace dssync::algorithms
