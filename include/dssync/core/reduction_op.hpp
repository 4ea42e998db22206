#pragma once
/// \file
/// The `reduction_op` concept: how two values combine.

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <type_traits>
#include <typeinfo>

#include "dssync/core/dtype.hpp"

namespace dssync {

/// `dssync::concepts::reduction_op`: a reduction operator `Op` for elements of type `T`.
///
/// Requirements:
///  1. `T` is an `element` (trivially copyable) and `Op` is copy constructible.
///  2. `op(a, b)` for `const Op& op` and `T a, b` returns a value convertible to `T`.
///  3. The operation is associative and commutative: schedules combine contributions in different orders
///     for different chunks. (Floating-point sums are exact only up to rounding; every rank still ends
///     bitwise identical, because each element is reduced once and then copied.) Opt out with
///     `is_commutative<Op>` = false, which makes `synchronize` refuse the op at compile time.
///  4. Optional: `op.finalize(std::span<T>, int contributors)` runs once on the final result (average
///     divides by the number of contributors).
///  5. Optional: `Op::id`, a `std::uint32_t` that names the op on the wire so that ranks agree on it.
///
/// A minimal model: `struct bitwise_or { template <class T> T operator()(T a, T b) const { return a | b; } };`
namespace concepts {

template <class Op, class T>
concept reduction_op = element<T> && std::copy_constructible<Op> && requires(const Op& op, T a, T b) {
  { op(a, b) } -> std::convertible_to<T>;
};

/// Whether `Op` has a `finalize` step for `T`.
template <class Op, class T>
concept finalizing_op = requires(const Op& op, std::span<T> s, int n) { op.finalize(s, n); };

}  // namespace concepts

/// Opt-out trait: specialize to `false` for a non-commutative op.
template <class Op>
inline constexpr bool is_commutative = true;

namespace detail {
constexpr std::uint32_t fnv1a32(std::string_view s) noexcept {
  std::uint32_t h = 2166136261u;
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 16777619u;
  }
  return h;
}
}  // namespace detail

/// The wire identity of `Op`: `Op::id` if present, else a hash of its type name (equal across the
/// processes of one program).
template <class Op>
[[nodiscard]] std::uint32_t op_id() {
  if constexpr (requires { Op::id; })
    return static_cast<std::uint32_t>(Op::id);
  else
    return detail::fnv1a32(typeid(Op).name()) | 0x80000000u;
}

/// A readable name for `Op`: `Op::name` if present, else "user".
template <class Op>
[[nodiscard]] constexpr std::string_view op_name() {
  if constexpr (requires { Op::name; })
    return Op::name;
  else
    return "user";
}

}  // namespace dssync
