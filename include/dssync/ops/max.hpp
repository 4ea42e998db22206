#pragma once
/// \file
/// `ops::max`: elementwise maximum.

#include <cstdint>
#include <string_view>

namespace dssync::ops {

/// Elementwise maximum.
struct max {
  static constexpr std::uint32_t id = 4;
  static constexpr std::string_view name = "max";
  template <class T>
  constexpr T operator()(T a, T b) const noexcept {
    return a < b ? b : a;
  }
};

}  // namespace dssync::ops
