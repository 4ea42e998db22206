#pragma once
/// \file
/// `algorithms::chain`: pipelined chain broadcast and reduce, root, root+1, ..., root+N-1 (mod N), for
/// large messages (see `blocks::chain`).

#include <algorithm>
#include <array>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "dssync/algorithms/blocks/chain.hpp"
#include "dssync/algorithms/blocks/compose.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/policy.hpp"
#include "dssync/core/schedule.hpp"

namespace dssync::algorithms {

/// Chain broadcast (`q.collective == semantics::broadcast`) and reduce of `q.count` elements rooted at
/// `q.root`, in `pieces` pieces (0: one piece per `auto_piece` elements, 1 to 256 pieces), with the head
/// keeping at most `window` pieces in flight (0: unbounded, as real transports pipeline on their own;
/// the simulator needs 1, see `blocks::chain`).
struct chain {
  static constexpr std::string_view name = "chain";
  static constexpr std::array collectives = {semantics::broadcast, semantics::reduce};
  static constexpr bool per_rank = true;
  /// Elements per piece when `pieces` is 0 (16 Ki elements: 64 KiB of floats).
  static constexpr std::size_t auto_piece = 16384;
  static constexpr std::size_t max_pieces = 256;

  std::size_t pieces = 0;
  std::size_t window = 0;

  /// The pieces this chain cuts `count` elements into.
  [[nodiscard]] std::size_t pieces_for(std::size_t count) const noexcept {
    const std::size_t p = pieces > 0 ? pieces : (count + auto_piece - 1) / auto_piece;
    return std::clamp<std::size_t>(std::min(p, max_pieces), 1, std::max<std::size_t>(count, 1));
  }

  [[nodiscard]] std::string cache_key(const plan_request&) const {
    return "pieces=" + std::to_string(pieces) + ",window=" + std::to_string(window);
  }

  /// \throws invalid_argument for another collective or a root out of range.
  template <concepts::topology Topo>
  [[nodiscard]] schedule plan(const Topo& t, plan_request q) const {
    const int n = t.workers();
    if (q.collective != semantics::broadcast && q.collective != semantics::reduce)
      throw invalid_argument(std::string("algorithms::chain plans broadcast and reduce, not ") + to_string(q.collective));
    const auto order = blocks::rooted_members("algorithms::chain", n, q.root);
    auto s = blocks::empty_plan(std::string(name), n, q.count, q.collective, 1, q.rank);
    s.root = q.root;
    blocks::chain(s, order, q.collective, range{0, q.count}, pieces_for(q.count), window);
    return s;
  }
};

}  // namespace dssync::algorithms
