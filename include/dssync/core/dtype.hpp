#pragma once
/// \file
/// Element types dssync knows by name, so ranks can agree on the type before they exchange bytes.

#include <cstdint>
#include <string_view>
#include <type_traits>

namespace dssync {

/// The element types with a wire identity. `other` is any trivially copyable user type.
enum class dtype : std::uint8_t { float32 = 1, float64, int32, int64, uint8, float16, bfloat16, other = 255 };

/// The dtype of `T`; `dtype::other` for types dssync has no name for.
template <class T>
inline constexpr dtype dtype_of = std::is_same_v<T, float>          ? dtype::float32
                                  : std::is_same_v<T, double>       ? dtype::float64
                                  : std::is_same_v<T, std::int32_t> ? dtype::int32
                                  : std::is_same_v<T, std::int64_t> ? dtype::int64
                                  : std::is_same_v<T, std::uint8_t> ? dtype::uint8
                                                                    : dtype::other;

/// A readable name ("float32", "int64", ...).
[[nodiscard]] constexpr std::string_view to_string(dtype t) noexcept {
  switch (t) {
    case dtype::float32: return "float32";
    case dtype::float64: return "float64";
    case dtype::int32: return "int32";
    case dtype::int64: return "int64";
    case dtype::uint8: return "uint8";
    case dtype::float16: return "float16";
    case dtype::bfloat16: return "bfloat16";
    case dtype::other: return "other";
  }
  return "unknown";
}

/// Elements that may travel as raw bytes between ranks.
template <class T>
concept element = std::is_trivially_copyable_v<T> && !std::is_const_v<T>;

}  // namespace dssync
