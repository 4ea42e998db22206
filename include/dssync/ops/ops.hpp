#pragma once
/// \file
/// All built-in reduction operators and the CPU kernel.

#include <cstdint>

#include "dssync/ops/average.hpp"
#include "dssync/ops/kernel.hpp"
#include "dssync/ops/max.hpp"
#include "dssync/ops/min.hpp"
#include "dssync/ops/sum.hpp"

namespace dssync::ops {
static_assert(concepts::reduction_op<sum, float> && concepts::reduction_op<sum, double> &&
              concepts::reduction_op<sum, std::int32_t> && concepts::reduction_op<sum, std::int64_t>);
static_assert(concepts::reduction_op<average, float> && concepts::finalizing_op<average, double>);
static_assert(concepts::reduction_op<min, std::int64_t> && concepts::reduction_op<max, float>);
}  // namespace dssync::ops
