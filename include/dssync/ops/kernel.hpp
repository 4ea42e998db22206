#pragma once
/// \file
/// CPU reduction kernels. Plain loops over restrict pointers that g++ and clang vectorize at -O2/-O3;
/// no intrinsics (see tests/ops for the vectorization check).

#include <cstddef>
#include <span>

#include "dssync/core/reduction_op.hpp"

namespace dssync::ops {

/// `dst[i] = op(dst[i], src[i])` for `i < n`. `dst` and `src` must not overlap.
template <class T, class Op>
inline void reduce_into(T* __restrict dst, const T* __restrict src, std::size_t n, const Op& op) {
  if constexpr (requires { op.reduce(dst, src, n); }) {
    op.reduce(dst, src, n);
  } else {
    // Blocks of a fixed trip count let g++ vectorize at -O2 too (its -O2 cost model only takes loops
    // whose trip count is known); the tail runs scalar.
    constexpr std::size_t block = 64 / sizeof(T) >= 4 ? 64 / sizeof(T) : 4;
    std::size_t i = 0;
    for (; i + block <= n; i += block)
      for (std::size_t j = 0; j < block; ++j) dst[i + j] = static_cast<T>(op(dst[i + j], src[i + j]));
    for (; i < n; ++i) dst[i] = static_cast<T>(op(dst[i], src[i]));
  }
}

/// `dst[i] = op(...op(op(dst[i], srcs[0][i]), srcs[1][i])..., srcs[m-1][i])`: several sources in one
/// pass over `dst`. Works in tiles that stay in L1 while every source is added, so `dst` is read and
/// written once from memory instead of once per source. The order of operations per element is the
/// same as `m` successive `reduce_into` calls, so results are bitwise identical to them.
template <class T, class Op>
inline void reduce_into_many(T* __restrict dst, std::span<const T* const> srcs, std::size_t n, const Op& op) {
  constexpr std::size_t tile = 4096 / sizeof(T);
  for (std::size_t i = 0; i < n; i += tile) {
    const std::size_t len = n - i < tile ? n - i : tile;
    for (const T* s : srcs) reduce_into(dst + i, s + i, len, op);
  }
}

/// Span form of `reduce_into`. The spans must have equal sizes.
template <class T, class Op>
inline void reduce_into(std::span<T> dst, std::span<const T> src, const Op& op) {
  reduce_into(dst.data(), src.data(), dst.size() < src.size() ? dst.size() : src.size(), op);
}

}  // namespace dssync::ops
