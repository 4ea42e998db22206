#pragma once
/// \file
/// Adaptive compression: pick top-k's k or QSGD's s so that a step's synchronization fits a target time
/// on the network as measured (the survey of seed 004: adapt the compression to the network, as
/// AdaComp and Accordion adapt it to the gradient; here the rule is the network's).
///
/// The compressed allreduce (`algorithms::encoded_allgather`) moves every rank's payload n - 1 hops
/// around the ring, so a step takes about (n - 1) (2 alpha + payload / beta) on the ring's slowest hop.
/// `payload_budget` turns a target time and a probe (`topology::probe`) into the payload that fits;
/// `adapt` then finds the least compression whose payload, measured by encoding the tensor with a copy
/// of the codec (its state untouched), fits that budget. Encoded sizes depend on the data (top-k's index
/// gaps, QSGD's variable-length levels), so they are measured, not modelled.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "dssync/codecs/qsgd.hpp"
#include "dssync/codecs/topk.hpp"
#include "dssync/core/error.hpp"
#include "dssync/topology/probe.hpp"

namespace dssync::codecs {

/// A hop's bandwidth (bytes/s) and latency (s).
struct link_estimate {
  double bandwidth = 0;
  double latency = 0;
};

/// The slowest hop of the ring 0 -> 1 -> ... -> n-1 -> 0 in `m` (what the encoded allgather crosses):
/// the least bandwidth and, separately, the largest latency. A single rank has no hop (infinite
/// bandwidth, no latency).
[[nodiscard]] inline link_estimate ring_bottleneck(const topology::probe_matrix& m) {
  link_estimate e{std::numeric_limits<double>::infinity(), 0.0};
  for (int a = 0; a < m.size && m.size > 1; ++a) {
    const int b = (a + 1) % m.size;
    e.bandwidth = std::min(e.bandwidth, m.bw(a, b));
    e.latency = std::max(e.latency, m.lat(a, b));
  }
  return e;
}

/// The payload (bytes per rank) whose allgather over `world` ranks on hops like `hop` takes at most
/// `target_s`: (target / (n - 1) - 2 alpha) * beta (a message of run-time length is its length, then its
/// bytes: two latencies a hop), 0 if even an empty payload misses it, +inf for one rank. \throws invalid_argument for a target, bandwidth or latency that is not a positive (latency:
/// non-negative) number.
[[nodiscard]] inline double payload_budget(link_estimate hop, int world, double target_s) {
  if (!(target_s > 0) || !(hop.bandwidth > 0) || !(hop.latency >= 0) || world < 1)
    throw invalid_argument("codecs::payload_budget: target " + std::to_string(target_s) + " s, bandwidth " +
                           std::to_string(hop.bandwidth) + " B/s, latency " + std::to_string(hop.latency) +
                           " s and " + std::to_string(world) + " ranks: need positive values");
  if (world == 1) return std::numeric_limits<double>::infinity();
  const double per_hop = target_s / static_cast<double>(world - 1) - 2 * hop.latency;
  return per_hop <= 0 ? 0.0 : per_hop * hop.bandwidth;
}

/// What `adapt` chose.
struct adapted {
  double ratio = 1;             ///< top-k: the share kept
  std::uint32_t levels = 0;     ///< QSGD: s
  std::size_t payload = 0;      ///< the payload of the tensor at that setting, bytes
  bool fits = true;             ///< false when even the strongest compression exceeds the budget
};

/// Sets `c.ratio` to the largest share kept, at least `min_ratio`, whose payload of `g` fits `budget`
/// bytes (bisection over k with trial encodes on a copy of `c`: about log2(n) encodes). The payload
/// grows with k, so the result is within one entry of the best.
/// \throws invalid_argument for `min_ratio` outside (0, 1].
template <class T>
adapted adapt(topk<T>& c, std::span<const T> g, double budget, double min_ratio = 1e-4) {
  if (!(min_ratio > 0 && min_ratio <= 1))
    throw invalid_argument("codecs::adapt: min_ratio " + std::to_string(min_ratio) + " must be in (0, 1]");
  const std::size_t n = g.size();
  std::vector<std::byte> w;
  auto payload_at = [&](std::size_t k) {
    topk<T> trial = c;
    trial.ratio = n == 0 ? 1.0 : static_cast<double>(k) / static_cast<double>(n);
    w.clear();
    trial.encode(g, w);
    return w.size();
  };
  adapted out;
  if (n == 0) {
    out.payload = payload_at(0);
    out.fits = static_cast<double>(out.payload) <= budget;
    return out;
  }
  const auto k_min = std::max<std::size_t>(1, static_cast<std::size_t>(std::ceil(min_ratio * static_cast<double>(n))));
  std::size_t lo = k_min, hi = n;
  out.payload = payload_at(lo);
  if (static_cast<double>(out.payload) > budget) {  // even the floor misses: keep the floor
    out.fits = false;
  } else if (static_cast<double>(payload_at(hi)) <= budget) {
    lo = hi;
  } else {
    while (hi - lo > 1) {  // payload(lo) fits, payload(hi) does not
      const std::size_t mid = lo + (hi - lo) / 2;
      (static_cast<double>(payload_at(mid)) <= budget ? lo : hi) = mid;
    }
  }
  // ratio * n must round back up to lo (topk keeps ceil(ratio * n)).
  c.ratio = static_cast<double>(lo) / static_cast<double>(n);
  while (c.k_of(n) > lo) c.ratio = std::nextafter(c.ratio, 0.0);
  out.ratio = c.ratio;
  out.payload = payload_at(lo);
  return out;
}

/// Sets `c.levels` to the largest power of two s (1 to `max_levels`) whose payload of `g` fits `budget`
/// bytes (trial encodes on copies of `c`, one per power of two: QSGD's payload grows with s).
/// \throws invalid_argument for `max_levels` outside 1..65536.
template <class T>
adapted adapt(qsgd<T>& c, std::span<const T> g, double budget, std::uint32_t max_levels = 256) {
  if (max_levels < 1 || max_levels > qsgd<T>::max_levels)
    throw invalid_argument("codecs::adapt: max_levels " + std::to_string(max_levels) + " must be in 1..65536");
  std::vector<std::byte> w;
  adapted out;
  out.fits = false;
  for (std::uint32_t s = 1; s <= max_levels; s *= 2) {
    qsgd<T> trial = c;
    trial.levels = s;
    w.clear();
    trial.encode(g, w);
    if (s > 1 && static_cast<double>(w.size()) > budget) break;
    out.levels = s;
    out.payload = w.size();
    out.fits = static_cast<double>(w.size()) <= budget;
    if (s > max_levels / 2) break;
  }
  c.levels = out.levels;
  return out;
}

}  // namespace dssync::codecs
