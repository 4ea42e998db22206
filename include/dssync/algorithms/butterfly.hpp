#pragma once
/// \file
/// The small- and middle-message allreduces, each a policy over ranks 0..N-1 made of one block of
/// `algorithms/blocks/butterfly.hpp` (Thakur, Rabenseifner & Gropp 2005), for any N (MPICH's fold):
///  - `recursive_doubling`: latency-optimal, log2 N exchanges of the whole buffer, staged in a scratch
///    buffer;
///  - `rabenseifner`: a reduce-scatter by recursive halving and an allgather by recursive doubling,
///    2 log2 N rounds moving 2(N-1)/N of the buffer (MPICH's choice for long messages);
///  - `one_shot`: one round, every rank sends its whole buffer to every other and reduces in rank order;
///    (N-1)·S moved and staged per rank, so for a few ranks and small buffers (the "one-shot" allreduce of
///    GPU custom-allreduce kernels; a direct exchange).

#include <array>
#include <span>
#include <string>
#include <string_view>

#include "dssync/algorithms/blocks/butterfly.hpp"
#include "dssync/algorithms/blocks/compose.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/policy.hpp"
#include "dssync/core/schedule.hpp"

namespace dssync::algorithms {

namespace detail {

/// A policy whose allreduce plan is `P::block` over the members 0..N-1 and the whole buffer, planned
/// per rank.
template <class P>
struct whole_buffer_allreduce {
  static constexpr std::array collectives = {semantics::allreduce};
  static constexpr bool per_rank = true;

  /// \throws invalid_argument for a collective other than allreduce.
  template <concepts::topology Topo>
  [[nodiscard]] schedule plan(const Topo& t, plan_request q) const {
    if (q.collective != semantics::allreduce)
      throw invalid_argument("algorithms::" + std::string(P::name) + " plans allreduce, not " + to_string(q.collective));
    const int n = t.workers();
    auto s = blocks::empty_plan(std::string(P::name), n, q.count, semantics::allreduce, n > 1 ? 1 : 0, q.rank);
    P::block(s, blocks::iota_members(n), range{0, q.count}, 0);
    return s;
  }
};

}  // namespace detail

/// Recursive doubling (`blocks::recursive_doubling_allreduce`).
struct recursive_doubling : detail::whole_buffer_allreduce<recursive_doubling> {
  static constexpr std::string_view name = "recursive_doubling";
  static constexpr auto block = blocks::recursive_doubling_allreduce;
};

/// Rabenseifner's allreduce (`blocks::rabenseifner_allreduce`).
struct rabenseifner : detail::whole_buffer_allreduce<rabenseifner> {
  static constexpr std::string_view name = "rabenseifner";
  static constexpr auto block = blocks::rabenseifner_allreduce;
};

/// The one-round allreduce (`blocks::one_shot_allreduce`).
struct one_shot : detail::whole_buffer_allreduce<one_shot> {
  static constexpr std::string_view name = "one_shot";
  static constexpr auto block = blocks::one_shot_allreduce;
};

}  // namespace dssync::algorithms
