#pragma once
/// \file
/// `algorithms::rabenseifner`: Rabenseifner's allreduce, a reduce-scatter by recursive halving and an allgather
/// by recursive doubling: 2 log2 N rounds moving 2(N-1)/N of the buffer (MPICH's choice for long messages), any N
/// through MPICH's fold (`blocks::rabenseifner_allreduce`, `algorithms/blocks/butterfly.hpp`).

#include <array>
#include <string>
#include <string_view>

#include "dssync/algorithms/blocks/butterfly.hpp"
#include "dssync/algorithms/blocks/compose.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/policy.hpp"
#include "dssync/core/schedule.hpp"

namespace dssync::algorithms {

/// Rabenseifner's allreduce of `q.count` elements over ranks 0..N-1 in order, on any topology.
struct rabenseifner {
  static constexpr std::string_view name = "rabenseifner";
  static constexpr std::array collectives = {semantics::allreduce};
  static constexpr bool per_rank = true;

  /// \throws invalid_argument for a collective other than allreduce.
  template <concepts::topology Topo>
  [[nodiscard]] schedule plan(const Topo& t, plan_request q) const {
    if (q.collective != semantics::allreduce)
      throw invalid_argument(std::string("algorithms::rabenseifner plans allreduce, not ") + to_string(q.collective));
    const int n = t.workers();
    auto s = blocks::empty_plan(std::string(name), n, q.count, semantics::allreduce, n > 1 ? 1 : 0, q.rank);
    blocks::rabenseifner_allreduce(s, blocks::iota_members(n), range{0, q.count});
    return s;
  }
};

}  // namespace dssync::algorithms
