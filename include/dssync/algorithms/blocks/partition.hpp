#pragma once
/// \file
/// Weighted partitions of a range: how a plan splits data over channels or trees of unequal rates
/// (Blink's trees carry data in proportion to their packed weights; BML's threads carry equal parts).

#include <cmath>
#include <cstddef>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include "dssync/core/chunking.hpp"
#include "dssync/core/error.hpp"

namespace dssync::algorithms::blocks {

/// `r` split into contiguous parts in proportion to `weights` (non-negative, not all zero): part i gets
/// round(length·W_i/W) - round(length·W_{i-1}/W) elements with W_i the prefix sum, so the parts cover `r`
/// exactly, in order, and each is within one element of its share.
/// \throws invalid_argument if `weights` is empty, has a negative or non-finite weight, or sums to 0.
[[nodiscard]] inline std::vector<range> weighted_partition(range r, std::span<const double> weights) {
  if (weights.empty()) throw invalid_argument("blocks::weighted_partition: no weights");
  double total = 0;
  for (std::size_t i = 0; i < weights.size(); ++i) {
    if (!(weights[i] >= 0) || !std::isfinite(weights[i]))
      throw invalid_argument("blocks::weighted_partition: weight " + std::to_string(i) + " is " +
                             std::to_string(weights[i]) + "; weights must be finite and non-negative");
    total += weights[i];
  }
  if (!(total > 0)) throw invalid_argument("blocks::weighted_partition: the weights sum to 0");
  std::vector<range> out;
  out.reserve(weights.size());
  double prefix = 0;
  std::size_t at = 0;
  for (std::size_t i = 0; i < weights.size(); ++i) {
    prefix += weights[i];
    const std::size_t end =
        i + 1 == weights.size() ? r.length
                                : static_cast<std::size_t>(std::llround(static_cast<double>(r.length) * (prefix / total)));
    const std::size_t e = end < at ? at : (end > r.length ? r.length : end);
    out.push_back({r.offset + at, e - at});
    at = e;
  }
  return out;
}

/// `count` elements as consecutive blocks of the given sizes (an allgatherv's or reduce-scatterv's
/// layout), or the balanced `partition(count, n)` when `sizes` is empty.
/// \throws invalid_argument if `sizes` has other than `n` entries or does not sum to `count`.
[[nodiscard]] inline std::vector<range> block_layout(std::size_t count, std::size_t n, std::span<const std::size_t> sizes) {
  if (sizes.empty()) return partition(count, n == 0 ? 1 : n);
  if (sizes.size() != n)
    throw invalid_argument("blocks::block_layout: " + std::to_string(sizes.size()) + " block sizes for " +
                           std::to_string(n) + " ranks");
  const std::size_t sum = std::accumulate(sizes.begin(), sizes.end(), std::size_t{0});
  if (sum != count)
    throw invalid_argument("blocks::block_layout: block sizes sum to " + std::to_string(sum) + ", not the buffer's " +
                           std::to_string(count) + " elements");
  std::vector<range> out;
  out.reserve(n);
  std::size_t at = 0;
  for (auto z : sizes) {
    out.push_back({at, z});
    at += z;
  }
  return out;
}

}  // namespace dssync::algorithms::blocks
