#pragma once
/// \file
/// `algorithms::recursive_doubling`: recursive doubling allreduce, latency-optimal: log2 N exchanges of the whole
/// buffer (+2 with MPICH's fold when N is not a power of two), staged in a scratch buffer; for small messages
/// (`blocks::recursive_doubling_allreduce`, `algorithms/blocks/butterfly.hpp`).

#include <array>
#include <string>
#include <string_view>

#include "dssync/algorithms/blocks/butterfly.hpp"
#include "dssync/algorithms/blocks/compose.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/policy.hpp"
#include "dssync/core/schedule.hpp"

namespace dssync::algorithms {

/// recursive doubling allreduce of `q.count` elements over ranks 0..N-1 in order, on any topology.
struct recursive_doubling {
  static constexpr std::string_view name = "recursive_doubling";
  static constexpr std::array collectives = {semantics::allreduce};
  static constexpr bool per_rank = true;

  /// \throws invalid_argument for a collective other than allreduce.
  template <concepts::topology Topo>
  [[nodiscard]] schedule plan(const Topo& t, plan_request q) const {
    if (q.collective != semantics::allreduce)
      throw invalid_argument(std::string("algorithms::recursive_doubling plans allreduce, not ") + to_string(q.collective));
    const int n = t.workers();
    auto s = blocks::empty_plan(std::string(name), n, q.count, semantics::allreduce, n > 1 ? 1 : 0, q.rank);
    blocks::recursive_doubling_allreduce(s, blocks::iota_members(n), range{0, q.count});
    return s;
  }
};

}  // namespace dssync::algorithms
