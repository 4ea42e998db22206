#pragma once
/// \file
/// `codecs::error_feedback`: the residual a lossy codec carries from one step to the next (Seide et al.,
/// "1-bit stochastic gradient descent and its application to data-parallel distributed training of
/// speech DNNs", Interspeech 2014; Stich et al., NeurIPS 2018). Each step compresses g + r and keeps
/// r = (g + r) - decode(encode(g + r)), so no part of any gradient is lost, only delayed.
///
/// The state belongs to one tensor. The user owns it through the codec object, and can checkpoint it:
/// `save` writes it in the wire format (codec id `error_feedback_state`, parameter = sizeof(T)), `load`
/// reads it back, validated; a loaded state gives bitwise the same next step.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "dssync/codecs/wire.hpp"
#include "dssync/core/error.hpp"

namespace dssync::codecs {

template <class T>
struct error_feedback {
  static constexpr std::uint8_t version = 1;
  std::vector<T> residual;  ///< empty until the first step

  /// Makes the residual `n` elements long (zeros) on the first step.
  /// \throws invalid_argument naming both lengths if the tensor changed length since the last step.
  void prepare(std::size_t n, const char* who) {
    if (residual.empty() && n != 0) residual.assign(n, T{});
    if (residual.size() != n)
      throw invalid_argument(std::string(who) + ": the tensor has " + std::to_string(n) +
                             " elements, its error-feedback residual " + std::to_string(residual.size()) +
                             " (one codec object per tensor; reset() to start over)");
  }
  /// Forgets the residual.
  void reset() noexcept { residual.clear(); }

  /// Appends the state in the wire format.
  void save(std::vector<std::byte>& out) const {
    write_header(out, {codec_id::error_feedback_state, version, static_cast<std::uint32_t>(sizeof(T)), residual.size(),
                       residual.size() * sizeof(T)});
    const auto at = out.size();
    out.resize(at + residual.size() * sizeof(T));
    if (!residual.empty()) std::memcpy(out.data() + at, residual.data(), residual.size() * sizeof(T));
  }
  /// Replaces the state with the one `w` holds.
  /// \throws malformed_payload if `w` is not a saved state of this element size, or is truncated.
  void load(std::span<const std::byte> w) {
    const header h = read_state_header<T>(w, codec_id::error_feedback_state, version, "codecs::error_feedback");
    const std::uint64_t n = h.count;
    if (n > h.payload / sizeof(T) || h.payload != n * sizeof(T))
      throw malformed_payload("codecs::error_feedback: " + std::to_string(n) + " elements in a state of " +
                              std::to_string(h.payload) + " bytes");
    std::vector<T> r(static_cast<std::size_t>(n));
    if (n != 0) std::memcpy(r.data(), w.data() + header_bytes, static_cast<std::size_t>(h.payload));
    residual = std::move(r);
  }
};

}  // namespace dssync::codecs
