#pragma once
/// \file
/// The `codec` concept: what goes on the wire.

#include <concepts>
#include <cstddef>
#include <span>
#include <string_view>
#include <vector>

namespace dssync {

/// `dssync::concepts::codec`: a codec `C` for elements of type `T`.
///
/// Requirements, for `C& c`, `std::span<const T> in`, `std::span<T> out`, `std::span<const std::byte> w`,
/// `std::vector<std::byte>& buf`:
///  1. `C::name` is a `std::string_view`.
///  2. `c.encode(in, buf)` appends the wire form of `in` to `buf`. It may update per-tensor state
///     (an error-feedback residual).
///  3. `c.decode(w, out)` reconstructs `out.size()` elements from `w`. The bytes are untrusted: a payload
///     of the wrong length, a bad header or an out-of-range index raises `malformed_payload`, and decode
///     never reads or writes out of bounds.
///  4. `c.max_encoded_bytes(n)` bounds the wire size of `n` elements.
///  5. `C::is_linear` (`static constexpr bool`) says whether encoded payloads may be summed on the wire
///     (identity, fp16, PowerSGD factors). Non-linear codecs (sparse, quantized) use allgather instead.
namespace concepts {

template <class C, class T>
concept codec = requires(C& c, std::span<const T> in, std::span<T> out, std::span<const std::byte> w,
                         std::vector<std::byte>& buf, std::size_t n) {
  { C::name } -> std::convertible_to<std::string_view>;
  { C::is_linear } -> std::convertible_to<bool>;
  c.encode(in, buf);
  c.decode(w, out);
  { c.max_encoded_bytes(n) } -> std::convertible_to<std::size_t>;
};

}  // namespace concepts

}  // namespace dssync
