#pragma once
/// \file
/// `ops::average`: sum, then divide by the number of contributions (integer division truncates).

#include <cstdint>
#include <span>
#include <string_view>

#include "dssync/ops/sum.hpp"

namespace dssync::ops {

/// Elementwise mean over the contributions a rank ends with: all ranks for allreduce, the rank's group
/// for group semantics (DS-Sync, gossip).
struct average : sum {
  static constexpr std::uint32_t id = 2;
  static constexpr std::string_view name = "average";
  template <class T>
  void finalize(std::span<T> data, int contributors) const noexcept {
    if (contributors <= 1) return;
    const T d = static_cast<T>(contributors);
    T* __restrict p = data.data();
    for (std::size_t i = 0; i < data.size(); ++i) p[i] = static_cast<T>(p[i] / d);
  }
};

}  // namespace dssync::ops
