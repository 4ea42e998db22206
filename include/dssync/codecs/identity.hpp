#pragma once
/// \file
/// `codecs::identity`: the raw elements, little header-free. The reference model of `codec`.

#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dssync/core/codec.hpp"
#include "dssync/core/dtype.hpp"
#include "dssync/core/error.hpp"

namespace dssync::codecs {

/// Sends elements as they are. Linear: payloads may be reduced on the wire.
template <element T>
struct identity {
  static constexpr std::string_view name = "identity";
  static constexpr bool is_linear = true;
  static constexpr bool is_elementwise = true;

  void encode(std::span<const T> in, std::vector<std::byte>& out) const {
    const auto at = out.size();
    out.resize(at + in.size_bytes());
    if (!in.empty()) std::memcpy(out.data() + at, in.data(), in.size_bytes());
  }

  /// \throws malformed_payload if `w` is not exactly `out.size()` elements long.
  void decode(std::span<const std::byte> w, std::span<T> out) const {
    if (w.size() != out.size_bytes())
      throw malformed_payload("codecs::identity: payload of " + std::to_string(w.size()) + " bytes, expected " +
                              std::to_string(out.size_bytes()) + " (" + std::to_string(out.size()) + " elements of " +
                              std::to_string(sizeof(T)) + " bytes)");
    if (!w.empty()) std::memcpy(out.data(), w.data(), w.size());
  }

  [[nodiscard]] constexpr std::size_t max_encoded_bytes(std::size_t n) const noexcept { return n * sizeof(T); }
};

static_assert(concepts::codec<identity<float>, float>);

}  // namespace dssync::codecs
