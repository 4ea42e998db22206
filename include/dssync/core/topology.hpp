#pragma once
/// \file
/// The `topology` concept: which workers, switches and links exist.

#include <concepts>
#include <string>

namespace dssync {

/// `dssync::concepts::topology`: a topology model `T`.
///
/// Requirements, for `const T& t`:
///  1. `t.workers()` returns the number of workers (ranks) as `int`.
///  2. `t.name()` returns a description convertible to `std::string` (e.g. "ring(8)").
///  3. `t.validate(n)` throws `invalid_argument` naming both values unless the topology can host a world
///     of `n` ranks.
///
/// Topologies that model links also expose `t.graph()`, a Boost.Graph graph with bandwidth and latency
/// edge properties (see topology/network.hpp).
///
/// Minimal model: `struct any { int n; int workers() const { return n; } std::string name() const {
/// return "any"; } void validate(int) const {} };`
namespace concepts {

template <class T>
concept topology = std::copy_constructible<T> && requires(const T& t, int n) {
  { t.workers() } -> std::convertible_to<int>;
  { t.name() } -> std::convertible_to<std::string>;
  t.validate(n);
};

}  // namespace concepts

}  // namespace dssync
