#pragma once
/// \file
/// `algorithms::one_shot`: the one-round allreduce. Every rank sends its whole buffer to every other and
/// reduces what it receives in rank order (`blocks::one_shot_allreduce`, `algorithms/blocks/butterfly.hpp`):
/// one dependent message round, against two for `direct` and 2(N-1) for `ring`, but (N-1)·S moved and
/// staged per rank, so it is for a few ranks and small buffers (the "one-shot" allreduce of GPU custom
/// allreduce kernels; a direct exchange).

#include <array>
#include <string>
#include <string_view>

#include "dssync/algorithms/blocks/butterfly.hpp"
#include "dssync/algorithms/blocks/compose.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/policy.hpp"
#include "dssync/core/schedule.hpp"

namespace dssync::algorithms {

/// one-shot allreduce of `q.count` elements over ranks 0..N-1 in order, on any topology.
struct one_shot {
  static constexpr std::string_view name = "one_shot";
  static constexpr std::array collectives = {semantics::allreduce};
  static constexpr bool per_rank = true;

  /// \throws invalid_argument for a collective other than allreduce.
  template <concepts::topology Topo>
  [[nodiscard]] schedule plan(const Topo& t, plan_request q) const {
    if (q.collective != semantics::allreduce)
      throw invalid_argument(std::string("algorithms::one_shot plans allreduce, not ") + to_string(q.collective));
    const int n = t.workers();
    auto s = blocks::empty_plan(std::string(name), n, q.count, semantics::allreduce, n > 1 ? 1 : 0, q.rank);
    blocks::one_shot_allreduce(s, blocks::iota_members(n), range{0, q.count});
    return s;
  }
};

}  // namespace dssync::algorithms
