#pragma once
/// \file
/// `ops::min`: elementwise minimum. Written as `b < a ? b : a` so that it maps to vector min
/// instructions without -ffast-math.

#include <cstdint>
#include <string_view>

namespace dssync::ops {

/// Elementwise minimum.
struct min {
  static constexpr std::uint32_t id = 3;
  static constexpr std::string_view name = "min";
  template <class T>
  constexpr T operator()(T a, T b) const noexcept {
    return b < a ? b : a;
  }
};

}  // namespace dssync::ops
