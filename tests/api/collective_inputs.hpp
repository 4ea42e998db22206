#pragma once
// Inputs of the communicator tests that every rank can compute for every other rank, so each checks its
// result against a full sequential oracle. Small integers: sums are exact in every element type.
#include <cstddef>
#include <vector>

namespace dssync_test {

/// Rank r's element i: distinct per rank and element, in [-500, 500].
template <class T>
T input(int r, std::size_t i) {
  return static_cast<T>(static_cast<long>((i * 7919 + static_cast<std::size_t>(r) * 104729) % 1001) - 500);
}

/// Rank r's `count` elements.
template <class T>
std::vector<T> inputs_of(int r, std::size_t count) {
  std::vector<T> v(count);
  for (std::size_t i = 0; i < count; ++i) v[i] = input<T>(r, i);
  return v;
}

/// The sum over ranks 0..n-1 of element i.
template <class T>
T sum_over(int n, std::size_t i) {
  T s{};
  for (int r = 0; r < n; ++r) s = static_cast<T>(s + input<T>(r, i));
  return s;
}

}  // namespace dssync_test
