#pragma once
/// \file
/// Topology detection (seed 000, DS-Sync): `measure` probes the pairwise bandwidth and latency of the
/// ranks of any transport by ping-pong; `cluster_racks` recovers racks from the matrix; and
/// `contention_detector` flags the NICs, rack uplinks and links whose bandwidth stays below their usual
/// level over a window of probes.
///
/// On `transport::sim` the probe measures the simulated network in virtual time (`comm.now()`), so
/// background flows and NIC caps of a scenario show up exactly as the simulator models them; elsewhere
/// it uses the steady clock.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <limits>
#include <numeric>
#include <span>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "dssync/core/error.hpp"
#include "dssync/core/transport.hpp"

namespace dssync::topology {

/// Message channels of the probe. Its own collective call number keeps them apart from schedules, so
/// they are low numbers that every transport can carry (MPI's tag map has 254 channels; the probe once
/// used 0xFFFB..0xFFFD, which MPI refused).
inline constexpr std::uint32_t probe_channel = 0;          ///< ping-pong messages
inline constexpr std::uint32_t probe_barrier_channel = 1;  ///< the barrier between rounds
inline constexpr std::uint32_t probe_gather_channel = 2;   ///< the exchange of the results

/// How `measure` probes.
struct probe_options {
  /// Bytes of the small messages (latency) and of the acknowledgements.
  std::size_t small_bytes = 8;
  /// Bytes of the large messages (bandwidth). Larger is more accurate on real networks.
  std::size_t large_bytes = std::size_t{4} << 20;
  /// Ping-pongs per measurement; the median counts.
  int repeats = 3;
  /// true: one pair at a time (every pair has the network to itself; N(N-1)/2 rounds). false: a
  /// round-robin tournament (N-1 rounds, pairs of a round share no rank but may share links, which
  /// then lowers what they measure, the same way every time).
  bool sequential = false;
  /// How long a rank waits without progress before it raises `timeout_error`.
  std::chrono::milliseconds timeout{30'000};
};

/// The pairwise bandwidth and latency of `size` ranks, as one probe measured them.
struct probe_matrix {
  int size = 0;
  /// Bytes/s from rank a to rank b at [a * size + b] (directional). The diagonal is 0. +inf where the
  /// transfer time was too small to measure (an in-process transport).
  std::vector<double> bandwidth;
  /// One-way latency in seconds between a and b as a measured it, at [a * size + b]; diagonal 0.
  std::vector<double> latency;
  /// The transport's clock when the probe started and ended (virtual seconds on `transport::sim`).
  double start = 0, finish = 0;
  /// Whether the clock was the transport's virtual clock (`comm.now()`).
  bool virtual_clock = false;

  probe_matrix() = default;
  explicit probe_matrix(int n)
      : size(n), bandwidth(static_cast<std::size_t>(n) * static_cast<std::size_t>(n), 0.0),
        latency(static_cast<std::size_t>(n) * static_cast<std::size_t>(n), 0.0) {}

  /// Bytes/s from `a` to `b`.
  [[nodiscard]] double bw(int a, int b) const { return bandwidth.at(index(a, b)); }
  /// Seconds of one-way latency between `a` and `b`.
  [[nodiscard]] double lat(int a, int b) const { return latency.at(index(a, b)); }
  /// The pair's bandwidth: the slower direction.
  [[nodiscard]] double pair_bandwidth(int a, int b) const { return std::min(bw(a, b), bw(b, a)); }
  /// The pair's latency: the larger of both measurements.
  [[nodiscard]] double pair_latency(int a, int b) const { return std::max(lat(a, b), lat(b, a)); }
  [[nodiscard]] std::size_t index(int a, int b) const {
    if (a < 0 || b < 0 || a >= size || b >= size)
      throw invalid_argument("topology::probe_matrix: pair (" + std::to_string(a) + ", " + std::to_string(b) +
                             ") out of range for " + std::to_string(size) + " ranks");
    return static_cast<std::size_t>(a) * static_cast<std::size_t>(size) + static_cast<std::size_t>(b);
  }
};

}  // namespace dssync::topology

namespace dssync::detail {

template <class T>
concept has_virtual_clock = requires(const T& c) {
  { c.now() } -> std::convertible_to<double>;
};

template <class T>
double probe_clock(const T& comm) {
  if constexpr (has_virtual_clock<T>)
    return static_cast<double>(comm.now());
  else
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

inline double probe_median(std::vector<double> v) {
  if (v.empty()) return std::numeric_limits<double>::quiet_NaN();
  std::sort(v.begin(), v.end());
  const std::size_t h = v.size() / 2;
  return v.size() % 2 == 1 ? v[h] : (v[h - 1] + v[h]) / 2;
}

/// partner[k][r]: rank r's partner in round k, or -1.
inline std::vector<std::vector<int>> probe_rounds(int n, bool sequential) {
  std::vector<std::vector<int>> rounds;
  auto blank = [&] { return std::vector<int>(static_cast<std::size_t>(n), -1); };
  if (sequential) {
    for (int a = 0; a < n; ++a)
      for (int b = a + 1; b < n; ++b) {
        auto r = blank();
        r[static_cast<std::size_t>(a)] = b;
        r[static_cast<std::size_t>(b)] = a;
        rounds.push_back(std::move(r));
      }
    return rounds;
  }
  // The circle method: player m-1 stays, the others rotate; an odd n gets a bye (player n).
  const int m = n % 2 == 0 ? n : n + 1;
  for (int k = 0; k + 1 < m; ++k) {
    auto r = blank();
    auto pair = [&](int a, int b) {
      if (a < n && b < n) {
        r[static_cast<std::size_t>(a)] = b;
        r[static_cast<std::size_t>(b)] = a;
      }
    };
    pair(k, m - 1);
    for (int i = 1; i < m / 2; ++i) pair((k + i) % (m - 1), (k - i + (m - 1)) % (m - 1));
    rounds.push_back(std::move(r));
  }
  return rounds;
}

/// One rank's messaging during a probe: every wait has a deadline; sends are withdrawn on the way out.
template <concepts::transport T>
class probe_link {
 public:
  probe_link(T& comm, std::uint32_t call, std::chrono::milliseconds timeout)
      : comm_(comm), call_(call), timeout_(timeout) {}
  probe_link(const probe_link&) = delete;
  probe_link& operator=(const probe_link&) = delete;
  ~probe_link() {
    for (auto& s : sends_) {
      try {
        if (!comm_.test(s)) comm_.cancel(s);
      } catch (...) {
      }
    }
  }

  void send(int peer, std::uint32_t channel, std::uint32_t ordinal, std::span<const std::byte> b) {
    prune();
    sends_.push_back(comm_.isend(peer, message_key{call_, channel, ordinal}, b));
  }

  /// Receives the message (`channel`, `ordinal`) of `bytes` bytes from `peer`; `f` gets its bytes.
  template <class F>
  void recv(int peer, std::uint32_t channel, std::uint32_t ordinal, std::size_t bytes, F&& f, const char* what) {
    auto r = comm_.post_recv(peer, message_key{call_, channel, ordinal}, bytes);
    struct withdraw {
      T& c;
      typename T::recv_request& r;
      bool done = false;
      ~withdraw() {
        if (!done) try { c.cancel(r); } catch (...) {}
      }
    } guard{comm_, r};
    wait(peer, what, [&] { return comm_.try_consume(r, f); });
    guard.done = true;
  }

  /// Waits until every send completed (the receivers consumed them).
  void drain(const char* what) {
    for (auto& s : sends_) wait(-1, what, [&] { return comm_.test(s); });
    sends_.clear();
  }

 private:
  void prune() {
    while (!sends_.empty() && comm_.test(sends_.front())) sends_.pop_front();
  }

  template <class Pred>
  void wait(int peer, const char* what, Pred&& ready) {
    const int me = comm_.rank();
    auto last = std::chrono::steady_clock::now();
    bool rechecked = false;
    while (true) {
      const auto token = comm_.progress_token();
      if (ready()) return;
      if (peer >= 0 && comm_.peer_failed(peer)) {
        if (!rechecked) {  // its last message may have arrived just before it was marked
          rechecked = true;
          continue;
        }
        throw peer_failure("dssync probe: rank " + std::to_string(me) + ": peer rank " + std::to_string(peer) +
                               " failed while rank " + std::to_string(me) + " waits for it (" + what + ")",
                           me, peer);
      }
      const auto now = std::chrono::steady_clock::now();
      if (now >= last + timeout_)
        throw timeout_error("dssync probe: rank " + std::to_string(me) + " timed out after " +
                                std::to_string(timeout_.count()) + " ms waiting for " +
                                (peer >= 0 ? "rank " + std::to_string(peer) : std::string("its sends to complete")) +
                                " (" + what + ", probe call " + std::to_string(call_) + ")",
                            me, peer);
      comm_.wait_progress(token, last + timeout_);
    }
  }

  T& comm_;
  std::uint32_t call_;
  std::chrono::milliseconds timeout_;
  std::deque<typename T::send_request> sends_;
};

}  // namespace dssync::detail

namespace dssync::topology {

/// Measures the pairwise bandwidth and latency of all ranks of `comm`. Collective: every rank calls it
/// with the same options, and every rank gets the whole matrix.
///
/// For each pair (a, b), each side in turn times `repeats` ping-pongs of small messages (its RTT_s) and
/// `repeats` of a large message answered by a small one (RTT_L). Then latency a->b = RTT_s / 2, and
/// bandwidth a->b = (L - s) / (RTT_L - RTT_s): the one-way time of the large message less that of a
/// small one, so the latencies and the acknowledgement cancel out (medians of the repeats). The pairs
/// run in rounds separated by barriers (see `probe_options::sequential`); the rows are then exchanged
/// through the transport. Clock: `comm.now()` where the transport has one (virtual time), else the
/// steady clock.
/// \throws invalid_argument (bad options), timeout_error, peer_failure.
template <concepts::transport T>
probe_matrix measure(T& comm, const probe_options& opt = {}) {
  const int n = comm.size(), me = comm.rank();
  if (opt.repeats < 1)
    throw invalid_argument("dssync probe: rank " + std::to_string(me) + ": repeats " + std::to_string(opt.repeats) +
                               " must be at least 1",
                           me);
  if (opt.large_bytes <= opt.small_bytes)
    throw invalid_argument("dssync probe: rank " + std::to_string(me) + ": large messages (" +
                               std::to_string(opt.large_bytes) + " bytes) must be larger than small ones (" +
                               std::to_string(opt.small_bytes) + " bytes)",
                           me);
  probe_matrix m(n);
  m.virtual_clock = detail::has_virtual_clock<T>;
  m.start = detail::probe_clock(comm);
  const std::uint32_t call = comm.next_call();
  if (n == 1) {
    m.finish = m.start;
    return m;
  }
  std::vector<std::byte> large(opt.large_bytes), small(opt.small_bytes);
  for (std::size_t i = 0; i < large.size(); ++i) large[i] = static_cast<std::byte>((i * 131 + 7) & 0xFF);
  const std::uint64_t token = 0x9B0BEu;
  const auto token_bytes = std::as_bytes(std::span<const std::uint64_t>(&token, 1));
  auto ignore = [](std::span<const std::byte>) {};
  detail::probe_link<T> link(comm, call, opt.timeout);

  auto barrier = [&](std::uint32_t k) {
    if (me != 0) {
      link.send(0, probe_barrier_channel, 2 * k, token_bytes);
      link.recv(0, probe_barrier_channel, 2 * k + 1, token_bytes.size(), ignore, "probe barrier");
    } else {
      for (int r = 1; r < n; ++r) link.recv(r, probe_barrier_channel, 2 * k, token_bytes.size(), ignore, "probe barrier");
      for (int r = 1; r < n; ++r) link.send(r, probe_barrier_channel, 2 * k + 1, token_bytes);
    }
  };

  const auto rounds = detail::probe_rounds(n, opt.sequential);
  const auto reps = static_cast<std::size_t>(opt.repeats);
  for (std::size_t k = 0; k < rounds.size(); ++k) {
    barrier(static_cast<std::uint32_t>(k));
    const int peer = rounds[k][static_cast<std::size_t>(me)];
    if (peer < 0) continue;
    std::uint32_t out = 0, in = 0;  // message ordinals to and from the peer in this pair
    std::vector<double> rtt_small, rtt_large;
    auto ping = [&](std::span<const std::byte> what, std::vector<double>& into) {
      const double t0 = detail::probe_clock(comm);
      link.send(peer, probe_channel, out++, what);
      link.recv(peer, probe_channel, in++, small.size(), ignore, "probe ping-pong");
      into.push_back(detail::probe_clock(comm) - t0);
    };
    auto pong = [&](std::size_t bytes) {
      link.recv(peer, probe_channel, in++, bytes, ignore, "probe ping-pong");
      link.send(peer, probe_channel, out++, small);
    };
    const bool first = me < peer;
    for (int phase = 0; phase < 4; ++phase) {
      const bool mine = (phase % 2 == 0) == first;  // phases 0, 2: the lower rank times; 1, 3: the higher
      const bool big = phase >= 2;
      for (std::size_t i = 0; i < reps; ++i) {
        if (mine)
          ping(big ? std::span<const std::byte>(large) : std::span<const std::byte>(small), big ? rtt_large : rtt_small);
        else
          pong(big ? large.size() : small.size());
      }
    }
    link.drain("probe ping-pong");
    const double rs = detail::probe_median(rtt_small), rl = detail::probe_median(rtt_large);
    const double dt = rl - rs;
    const auto at = m.index(me, peer);
    m.latency[at] = rs / 2;
    m.bandwidth[at] = dt > 0 ? static_cast<double>(large.size() - small.size()) / dt
                             : std::numeric_limits<double>::infinity();
  }

  // Every rank's row to every rank.
  std::vector<double> row(2 * static_cast<std::size_t>(n));
  for (int b = 0; b < n; ++b) {
    row[static_cast<std::size_t>(b)] = m.bandwidth[m.index(me, b)];
    row[static_cast<std::size_t>(n + b)] = m.latency[m.index(me, b)];
  }
  const auto row_bytes = std::as_bytes(std::span<const double>(row));
  for (int p = 0; p < n; ++p)
    if (p != me) link.send(p, probe_gather_channel, 0, row_bytes);
  for (int p = 0; p < n; ++p) {
    if (p == me) continue;
    link.recv(p, probe_gather_channel, 0, row_bytes.size(), [&](std::span<const std::byte> b) {
      std::vector<double> theirs(row.size());
      std::memcpy(theirs.data(), b.data(), b.size());
      for (int c = 0; c < n; ++c) {
        m.bandwidth[m.index(p, c)] = theirs[static_cast<std::size_t>(c)];
        m.latency[m.index(p, c)] = theirs[static_cast<std::size_t>(n + c)];
      }
    }, "probe result exchange");
  }
  link.drain("probe result exchange");
  m.finish = detail::probe_clock(comm);
  return m;
}

/// Racks found in a probe matrix.
struct rack_clustering {
  /// The racks, each sorted, ordered by their lowest rank.
  std::vector<std::vector<int>> racks;
  /// The rack index of each rank.
  std::vector<int> rack_of;
  /// "bandwidth", "latency", or "none" (no tiers: one rack).
  std::string metric = "none";
  /// Pairs with bandwidth at least (latency at most) this are in one rack.
  double threshold = 0;
  /// The ratio across the gap that separates the tiers (1 when there are none).
  double gap = 1;
};

/// Clusters the ranks of `m` into racks: sorts the pair bandwidths (the slower direction of each pair),
/// finds the largest ratio between consecutive values, and, if it is at least `min_gap`, joins every
/// pair above the gap; racks are the connected components. When the bandwidths show no such gap (a
/// non-blocking network), the pair latencies are used the same way (more hops across racks). With no
/// gap in either, all ranks form one rack. Cluster a matrix measured without contention: a worker whose
/// NIC is throttled looks like a rack of its own.
[[nodiscard]] inline rack_clustering cluster_racks(const probe_matrix& m, double min_gap = 1.5) {
  const int n = m.size;
  rack_clustering out;
  out.rack_of.assign(static_cast<std::size_t>(n), 0);
  struct pair_value {
    int a, b;
    double v;
  };
  auto largest_gap = [&](std::vector<pair_value> ps, bool descending) {
    // Returns (ratio, threshold) for values sorted so that "together" comes first.
    std::sort(ps.begin(), ps.end(), [&](const pair_value& x, const pair_value& y) { return descending ? x.v > y.v : x.v < y.v; });
    double best = 1, thr = 0;
    for (std::size_t i = 0; i + 1 < ps.size(); ++i) {
      const double hi = descending ? ps[i].v : ps[i + 1].v, lo = descending ? ps[i + 1].v : ps[i].v;
      double ratio;
      if (lo <= 0) ratio = hi > 0 ? std::numeric_limits<double>::infinity() : 1;
      else if (!std::isfinite(hi)) ratio = std::isfinite(lo) ? std::numeric_limits<double>::infinity() : 1;
      else ratio = hi / lo;
      if (ratio > best) {
        best = ratio;
        thr = lo <= 0 || !std::isfinite(hi) ? (lo <= 0 ? hi / 2 : lo * 2) : std::sqrt(hi * lo);
      }
    }
    return std::pair{best, thr};
  };
  std::vector<pair_value> bw, lt;
  for (int a = 0; a < n; ++a)
    for (int b = a + 1; b < n; ++b) {
      bw.push_back({a, b, m.pair_bandwidth(a, b)});
      lt.push_back({a, b, m.pair_latency(a, b)});
    }
  const auto [bgap, bthr] = largest_gap(bw, true);
  const auto [lgap, lthr] = largest_gap(lt, false);
  // Union-find over the pairs on the near side of the gap.
  std::vector<int> parent(static_cast<std::size_t>(n));
  std::iota(parent.begin(), parent.end(), 0);
  auto find = [&](int x) {
    while (parent[static_cast<std::size_t>(x)] != x) x = parent[static_cast<std::size_t>(x)] = parent[static_cast<std::size_t>(parent[static_cast<std::size_t>(x)])];
    return x;
  };
  auto join = [&](int a, int b) { parent[static_cast<std::size_t>(find(a))] = find(b); };
  if (bgap >= min_gap) {
    out.metric = "bandwidth";
    out.threshold = bthr;
    out.gap = bgap;
    for (const auto& p : bw)
      if (p.v >= bthr) join(p.a, p.b);
  } else if (lgap >= min_gap) {
    out.metric = "latency";
    out.threshold = lthr;
    out.gap = lgap;
    for (const auto& p : lt)
      if (p.v <= lthr) join(p.a, p.b);
  } else {
    for (int a = 1; a < n; ++a) join(a, 0);
  }
  std::vector<int> index_of_root(static_cast<std::size_t>(n), -1);
  for (int r = 0; r < n; ++r) {
    const int root = find(r);
    auto& idx = index_of_root[static_cast<std::size_t>(root)];
    if (idx < 0) {
      idx = static_cast<int>(out.racks.size());
      out.racks.emplace_back();
    }
    out.racks[static_cast<std::size_t>(idx)].push_back(r);
    out.rack_of[static_cast<std::size_t>(r)] = idx;
  }
  return out;
}

/// Which way a contended NIC or rack uplink is slow.
enum class traffic_direction : std::uint8_t {
  out = 1,   ///< sending (a NIC's transmit side; a rack's uplink toward the core)
  in = 2,    ///< receiving (a NIC's receive side; the core's downlink into the rack)
  both = 3,
};

[[nodiscard]] constexpr const char* to_string(traffic_direction d) noexcept {
  switch (d) {
    case traffic_direction::out: return "out";
    case traffic_direction::in: return "in";
    case traffic_direction::both: return "both";
  }
  return "?";
}

/// A directed pair whose bandwidth stayed low over the whole window.
struct pair_slowdown {
  int from = -1, to = -1;
  double usual = 0;   ///< median bandwidth of the older probes
  double recent = 0;  ///< the highest bandwidth within the window
  [[nodiscard]] double ratio() const { return usual > 0 ? recent / usual : 0; }
};

/// A contended NIC (`worker`) or rack uplink (`rack`).
struct contended_resource {
  int id = -1;  ///< the worker (NIC) or rack index (uplink)
  traffic_direction direction = traffic_direction::both;
  double ratio = 0;  ///< median of recent / usual over the slow pairs it explains
};

/// What `contention_detector::report` found.
struct contention_report {
  std::vector<pair_slowdown> pairs;            ///< every slow directed pair
  std::vector<contended_resource> nics;        ///< contended worker NICs
  std::vector<contended_resource> uplinks;     ///< contended rack uplinks
  std::vector<pair_slowdown> links;            ///< slow pairs that no NIC or uplink explains
  [[nodiscard]] bool empty() const noexcept { return pairs.empty(); }
  /// Whether worker `w`'s NIC is reported (in direction `d`, or any when `d` is both).
  [[nodiscard]] bool nic(int w, traffic_direction d = traffic_direction::both) const {
    for (const auto& x : nics)
      if (x.id == w && (d == traffic_direction::both || (static_cast<int>(x.direction) & static_cast<int>(d)) != 0)) return true;
    return false;
  }
  /// Whether rack `c`'s uplink is reported (in direction `d`, or any when `d` is both).
  [[nodiscard]] bool uplink(int c, traffic_direction d = traffic_direction::both) const {
    for (const auto& x : uplinks)
      if (x.id == c && (d == traffic_direction::both || (static_cast<int>(x.direction) & static_cast<int>(d)) != 0)) return true;
    return false;
  }
};

/// "nic 5 (both, 0.1x); uplink of rack 0 (out, 0.5x); link 3->7 (0.6x)", or "no contention".
[[nodiscard]] inline std::string to_string(const contention_report& r) {
  std::ostringstream os;
  os.precision(3);
  const char* sep = "";
  for (const auto& x : r.nics) {
    os << sep << "nic " << x.id << " (" << to_string(x.direction) << ", " << x.ratio << "x)";
    sep = "; ";
  }
  for (const auto& x : r.uplinks) {
    os << sep << "uplink of rack " << x.id << " (" << to_string(x.direction) << ", " << x.ratio << "x)";
    sep = "; ";
  }
  for (const auto& x : r.links) {
    os << sep << "link " << x.from << "->" << x.to << " (" << x.ratio() << "x)";
    sep = "; ";
  }
  if (*sep == '\0') os << "no contention";
  return os.str();
}

/// Options of `contention_detector`.
struct contention_options {
  /// Probes in the window: a pair is slow when all of them are below `threshold` × its usual level.
  std::size_t window = 3;
  /// Older probes kept per pair; their median is the usual level.
  std::size_t history = 16;
  /// A pair is slow below this fraction of its usual bandwidth.
  double threshold = 0.8;
  /// A NIC or uplink is contended when at least this fraction of the pairs that test it are slow.
  double share = 0.75;
};

/// Keeps a sliding window of probes and reports the NICs, rack uplinks and links whose bandwidth stays
/// low. Feed it the matrices of successive `measure` calls (made the same way: the usual level of a pair
/// is what the same probe saw before).
///
/// Attribution, given the racks (from `cluster_racks` on an uncontended matrix): a pair a->b crosses a's
/// NIC (out), b's NIC (in) and, between racks, a's rack uplink (out) and b's (in). A rack uplink is
/// contended (out) when at least `share` of the pairs leaving the rack are slow, (in) likewise for the
/// pairs entering it. A worker's NIC is contended (out) when at least `share` of the pairs that test it
/// are slow: its pairs within its rack when it has at least two rack mates (they cross nothing else),
/// else all its pairs that cross no contended uplink; (in) likewise. Slow pairs that neither explains are
/// reported as links.
class contention_detector {
 public:
  /// A detector for the ranks of `racks` (every rank 0..N-1 exactly once).
  /// \throws invalid_argument if the racks are not a partition of 0..N-1 or an option is out of range.
  explicit contention_detector(std::vector<std::vector<int>> racks, contention_options o = {})
      : racks_(std::move(racks)), opt_(o) {
    n_ = 0;
    for (const auto& r : racks_) n_ += static_cast<int>(r.size());
    rack_of_.assign(static_cast<std::size_t>(n_), -1);
    for (std::size_t c = 0; c < racks_.size(); ++c)
      for (int w : racks_[c]) {
        if (w < 0 || w >= n_ || rack_of_[static_cast<std::size_t>(w)] >= 0)
          throw invalid_argument("topology::contention_detector: the racks must hold every rank 0.." +
                                 std::to_string(n_ - 1) + " exactly once (rank " + std::to_string(w) + ")");
        rack_of_[static_cast<std::size_t>(w)] = static_cast<int>(c);
      }
    if (opt_.window < 1) throw invalid_argument("topology::contention_detector: the window must hold at least 1 probe");
    if (opt_.history < 1) throw invalid_argument("topology::contention_detector: the history must hold at least 1 probe");
    if (!(opt_.threshold > 0 && opt_.threshold <= 1))
      throw invalid_argument("topology::contention_detector: threshold " + std::to_string(opt_.threshold) + " must be in (0, 1]");
    if (!(opt_.share > 0 && opt_.share <= 1))
      throw invalid_argument("topology::contention_detector: share " + std::to_string(opt_.share) + " must be in (0, 1]");
    samples_.resize(static_cast<std::size_t>(n_) * static_cast<std::size_t>(n_));
  }
  /// A detector that clusters the racks from `baseline` (`cluster_racks`) and takes it as its first probe.
  explicit contention_detector(const probe_matrix& baseline, contention_options o = {})
      : contention_detector(cluster_racks(baseline).racks, o) {
    add(baseline);
  }

  /// The racks the detector attributes with.
  [[nodiscard]] const std::vector<std::vector<int>>& racks() const noexcept { return racks_; }
  /// Probes added so far.
  [[nodiscard]] std::size_t probes() const noexcept { return probes_; }

  /// Adds a probe. \throws invalid_argument if its size differs from the detector's.
  void add(const probe_matrix& m) {
    if (m.size != n_)
      throw invalid_argument("topology::contention_detector: a probe of " + std::to_string(m.size) +
                             " ranks, but the detector has " + std::to_string(n_));
    const std::size_t keep = opt_.window + opt_.history;
    for (int a = 0; a < n_; ++a)
      for (int b = 0; b < n_; ++b) {
        if (a == b) continue;
        auto& s = samples_[idx(a, b)];
        s.push_back(m.bw(a, b));
        while (s.size() > keep) s.pop_front();
      }
    ++probes_;
  }

  /// The usual bandwidth of a->b: the median of the probes before the window (NaN if none).
  [[nodiscard]] double usual(int a, int b) const {
    const auto& s = samples_.at(idx(a, b));
    if (s.size() <= opt_.window) return std::numeric_limits<double>::quiet_NaN();
    return detail::probe_median(std::vector<double>(s.begin(), s.end() - static_cast<std::ptrdiff_t>(opt_.window)));
  }

  /// What is contended now (nothing until the detector has a full window and at least one older probe).
  [[nodiscard]] contention_report report() const {
    contention_report out;
    std::vector<char> slow(static_cast<std::size_t>(n_) * static_cast<std::size_t>(n_), 0);
    std::vector<double> ratio(slow.size(), 1.0);
    for (int a = 0; a < n_; ++a)
      for (int b = 0; b < n_; ++b) {
        if (a == b) continue;
        const auto& s = samples_[idx(a, b)];
        if (s.size() <= opt_.window) continue;
        const double u = usual(a, b);
        if (!(u > 0)) continue;
        double recent = 0;
        for (auto it = s.end() - static_cast<std::ptrdiff_t>(opt_.window); it != s.end(); ++it) recent = std::max(recent, *it);
        if (recent < opt_.threshold * u) {
          slow[idx(a, b)] = 1;
          ratio[idx(a, b)] = recent / u;
          out.pairs.push_back({a, b, u, recent});
        }
      }
    if (out.pairs.empty()) return out;
    std::vector<char> explained(slow.size(), 0);
    const auto nr = racks_.size();
    // Rack uplinks.
    std::vector<int> up(nr, 0);  // bit 1 out, bit 2 in
    for (std::size_t c = 0; c < nr; ++c)
      for (int dir = 1; dir <= 2; ++dir) {
        std::size_t total = 0, bad = 0;
        std::vector<double> rs;
        for (int a = 0; a < n_; ++a)
          for (int b = 0; b < n_; ++b) {
            if (a == b || rack_of(a) == rack_of(b)) continue;
            if ((dir == 1 ? rack_of(a) : rack_of(b)) != static_cast<int>(c)) continue;
            ++total;
            if (slow[idx(a, b)]) {
              ++bad;
              rs.push_back(ratio[idx(a, b)]);
            }
          }
        if (total > 0 && bad > 0 && static_cast<double>(bad) >= opt_.share * static_cast<double>(total)) {
          up[c] |= dir;
          add_resource(out.uplinks, static_cast<int>(c), dir, detail::probe_median(rs));
        }
      }
    auto crosses_contended_uplink = [&](int a, int b) {
      return rack_of(a) != rack_of(b) && ((up[static_cast<std::size_t>(rack_of(a))] & 1) || (up[static_cast<std::size_t>(rack_of(b))] & 2));
    };
    for (int a = 0; a < n_; ++a)
      for (int b = 0; b < n_; ++b)
        if (a != b && slow[idx(a, b)] && crosses_contended_uplink(a, b)) explained[idx(a, b)] = 1;
    // NICs.
    std::vector<int> nic(static_cast<std::size_t>(n_), 0);
    for (int w = 0; w < n_; ++w) {
      const auto& mates = racks_[static_cast<std::size_t>(rack_of(w))];
      const bool intra = mates.size() >= 3;  // at least two rack mates
      for (int dir = 1; dir <= 2; ++dir) {
        std::size_t total = 0, bad = 0;
        std::vector<double> rs;
        for (int x = 0; x < n_; ++x) {
          if (x == w) continue;
          const int a = dir == 1 ? w : x, b = dir == 1 ? x : w;
          if (intra ? rack_of(x) != rack_of(w) : crosses_contended_uplink(a, b)) continue;
          ++total;
          if (slow[idx(a, b)]) {
            ++bad;
            rs.push_back(ratio[idx(a, b)]);
          }
        }
        if (total > 0 && bad > 0 && static_cast<double>(bad) >= opt_.share * static_cast<double>(total)) {
          nic[static_cast<std::size_t>(w)] |= dir;
          add_resource(out.nics, w, dir, detail::probe_median(rs));
        }
      }
    }
    for (int a = 0; a < n_; ++a)
      for (int b = 0; b < n_; ++b)
        if (a != b && slow[idx(a, b)] && ((nic[static_cast<std::size_t>(a)] & 1) || (nic[static_cast<std::size_t>(b)] & 2)))
          explained[idx(a, b)] = 1;
    for (const auto& p : out.pairs)
      if (!explained[idx(p.from, p.to)]) out.links.push_back(p);
    return out;
  }

 private:
  [[nodiscard]] std::size_t idx(int a, int b) const {
    if (a < 0 || b < 0 || a >= n_ || b >= n_)
      throw invalid_argument("topology::contention_detector: pair (" + std::to_string(a) + ", " + std::to_string(b) +
                             ") out of range for " + std::to_string(n_) + " ranks");
    return static_cast<std::size_t>(a) * static_cast<std::size_t>(n_) + static_cast<std::size_t>(b);
  }
  [[nodiscard]] int rack_of(int r) const { return rack_of_[static_cast<std::size_t>(r)]; }
  static void add_resource(std::vector<contended_resource>& v, int id, int dir, double ratio) {
    for (auto& x : v)
      if (x.id == id) {
        x.direction = static_cast<traffic_direction>(static_cast<int>(x.direction) | dir);
        x.ratio = std::min(x.ratio, ratio);
        return;
      }
    v.push_back({id, static_cast<traffic_direction>(dir), ratio});
  }

  std::vector<std::vector<int>> racks_;
  std::vector<int> rack_of_;
  contention_options opt_;
  int n_ = 0;
  std::size_t probes_ = 0;
  std::vector<std::deque<double>> samples_;
};

}  // namespace dssync::topology
