#pragma once
/// \file
/// Element ranges and balanced partitions of a buffer of any length over any number of parts.

#include <cstddef>
#include <ostream>
#include <vector>

#include "dssync/core/error.hpp"

namespace dssync {

/// A half-open range of elements `[offset, offset + length)` of a rank's buffer.
struct range {
  std::size_t offset = 0;
  std::size_t length = 0;

  [[nodiscard]] constexpr std::size_t end() const noexcept { return offset + length; }
  [[nodiscard]] constexpr bool empty() const noexcept { return length == 0; }
  [[nodiscard]] constexpr bool overlaps(const range& o) const noexcept {
    return length != 0 && o.length != 0 && offset < o.end() && o.offset < end();
  }
  friend constexpr bool operator==(const range&, const range&) = default;
  friend std::ostream& operator<<(std::ostream& os, const range& r) {
    return os << '[' << r.offset << ',' << r.end() << ')';
  }
};

/// Part `i` of `count` elements split into `parts` nearly equal contiguous parts. The first
/// `count % parts` parts get one element more, so lengths differ by at most one and parts may be empty.
/// \throws invalid_argument if `parts == 0` or `i >= parts`.
[[nodiscard]] inline range chunk(std::size_t count, std::size_t parts, std::size_t i) {
  if (parts == 0) throw invalid_argument("dssync::chunk: cannot split " + std::to_string(count) + " elements into 0 parts");
  if (i >= parts)
    throw invalid_argument("dssync::chunk: part " + std::to_string(i) + " out of range for " + std::to_string(parts) + " parts");
  const std::size_t base = count / parts, extra = count % parts;
  const std::size_t off = i * base + (i < extra ? i : extra);
  return {off, base + (i < extra ? 1 : 0)};
}

/// All parts of `count` elements split into `parts` (see `chunk`).
/// \throws invalid_argument if `parts == 0`.
[[nodiscard]] inline std::vector<range> partition(std::size_t count, std::size_t parts) {
  if (parts == 0)
    throw invalid_argument("dssync::partition: cannot split " + std::to_string(count) + " elements into 0 parts");
  std::vector<range> out;
  out.reserve(parts);
  for (std::size_t i = 0; i < parts; ++i) out.push_back(chunk(count, parts, i));
  return out;
}

/// Sub-part `j` of `r` split into `parts`: partitions compose, e.g. rank chunks then channel pieces.
[[nodiscard]] inline range subchunk(const range& r, std::size_t parts, std::size_t j) {
  range s = chunk(r.length, parts, j);
  s.offset += r.offset;
  return s;
}

/// Splits `r` into segments of at most `segment` elements (the last may be shorter). Used to pipeline.
/// \throws invalid_argument if `segment == 0`.
[[nodiscard]] inline std::vector<range> segments(const range& r, std::size_t segment) {
  if (segment == 0) throw invalid_argument("dssync::segments: segment length must be positive");
  std::vector<range> out;
  for (std::size_t o = 0; o < r.length; o += segment)
    out.push_back({r.offset + o, (r.length - o < segment) ? r.length - o : segment});
  return out;
}

}  // namespace dssync
