#pragma once
/// \file
/// `ops::sum`: elementwise addition. Signed integers wrap around like unsigned ones (no undefined
/// behaviour on overflow), as MPI_SUM does in practice.

#include <cstdint>
#include <string_view>
#include <type_traits>

namespace dssync::ops {

/// Elementwise sum.
struct sum {
  static constexpr std::uint32_t id = 1;
  static constexpr std::string_view name = "sum";
  template <class T>
  constexpr T operator()(T a, T b) const noexcept {
    if constexpr (std::is_integral_v<T> && std::is_signed_v<T>) {
      using U = std::make_unsigned_t<T>;
      return static_cast<T>(static_cast<U>(static_cast<U>(a) + static_cast<U>(b)));
    } else {
      return static_cast<T>(a + b);
    }
  }
};

}  // namespace dssync::ops
