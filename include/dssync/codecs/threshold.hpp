#pragma once
/// \file
/// `codecs::threshold`: threshold quantization with error feedback (Strom, "Scalable distributed DNN
/// training using commodity GPU cloud computing", Interspeech 2015). The residual r accumulates the
/// gradient; every element with |r_i| >= tau is sent as +tau or -tau and tau is taken off r_i, the rest
/// stays in r for later steps. The number of entries depends on the data: at most n.
///
/// Payload (after the header, whose parameter is the number of entries m): tau as a little-endian T,
/// the m indices in increasing order as unsigned LEB128 varints (the first as itself, each next as its
/// gap minus one, as topk), then ceil(m / 8) bytes of signs (bit j % 8 of byte j / 8 is 1 when entry j
/// is -tau), the unused high bits of the last byte zero.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "dssync/codecs/error_feedback.hpp"
#include "dssync/codecs/wire.hpp"
#include "dssync/core/codec.hpp"
#include "dssync/core/error.hpp"

namespace dssync::codecs {

template <class T = float>
struct threshold {
  static_assert(std::is_floating_point_v<T>, "codecs::threshold encodes floating-point elements");
  static constexpr std::string_view name = "threshold";
  static constexpr bool is_linear = false;
  static constexpr std::uint8_t version = 1;

  T tau = T(1e-3);          ///< the threshold, > 0 and finite
  error_feedback<T> state;  ///< this tensor's residual

  threshold() = default;
  explicit threshold(T t) : tau(t) {}

  /// Adds `in` to the residual and sends the elements at or above tau (once per call: one call per step).
  /// \throws invalid_argument for tau not positive and finite, a tensor of 2^32 elements or more, or one
  ///   that changed length.
  void encode(std::span<const T> in, std::vector<std::byte>& out) {
    if (!(tau > 0) || !std::isfinite(tau))
      throw invalid_argument("codecs::threshold: tau " + std::to_string(static_cast<double>(tau)) +
                             " is not a positive finite number");
    const std::size_t n = in.size();
    if (n > 0xffffffffu)
      throw invalid_argument("codecs::threshold: a tensor of " + std::to_string(n) +
                             " elements is too long (at most 2^32-1)");
    state.prepare(n, "codecs::threshold");
    T* r = state.residual.data();
    chosen_.clear();
    negative_.clear();
    for (std::size_t i = 0; i < n; ++i) {
      r[i] += in[i];
      if (std::fabs(r[i]) >= tau) {  // NaN is never sent: it stays in the residual
        const bool neg = r[i] < 0;
        chosen_.push_back(static_cast<std::uint32_t>(i));
        negative_.push_back(neg);
        r[i] -= neg ? -tau : tau;
      }
    }
    const std::size_t m = chosen_.size();
    const auto at = out.size();
    write_header(out, {codec_id::threshold, version, static_cast<std::uint32_t>(m), n, 0});
    write_value(out, tau);
    write_index_gaps(out, chosen_);
    const auto signs = out.size();
    out.resize(signs + (m + 7) / 8, std::byte{0});
    for (std::size_t j = 0; j < m; ++j)
      if (negative_[j]) out[signs + j / 8] |= static_cast<std::byte>(1u << (j % 8));
    patch_payload_length(out, at, out.size() - at - header_bytes);
  }

  /// \throws malformed_payload for a bad header, m above the element count, tau not positive and finite,
  ///   an index out of range, a bad varint, set padding bits, or a payload that is truncated or too long.
  ///   `out` is untouched then.
  void decode(std::span<const std::byte> w, std::span<T> out) const {
    const parsed p = parse(w, out.size());
    std::fill(out.begin(), out.end(), T{});
    apply(p, out);
  }
  /// Adds the decoded entries to `out` (decode-and-sum of an allgather of payloads).
  void decode_add(std::span<const std::byte> w, std::span<T> out) const { apply(parse(w, out.size()), out); }

  [[nodiscard]] std::size_t max_encoded_bytes(std::size_t n) const noexcept {
    return header_bytes + sizeof(T) + 5 * n + (n + 7) / 8;  // every element sent, indices below 2^32
  }

 private:
  struct parsed {
    T tau;
    std::vector<std::uint32_t> index;
    std::span<const std::byte> signs;
  };

  [[nodiscard]] static parsed parse(std::span<const std::byte> w, std::size_t n) {
    const header h = read_header(w, codec_id::threshold, version, n);
    const std::size_t m = h.param;
    if (m > n)
      throw malformed_payload("codecs::threshold: " + std::to_string(m) + " entries in the header for " +
                              std::to_string(n) + " elements");
    reader rd(w.subspan(header_bytes), "codecs::threshold");
    parsed p;
    p.tau = rd.value<T>();
    if (!(p.tau > 0) || !std::isfinite(p.tau))
      throw malformed_payload("codecs::threshold: tau " + std::to_string(static_cast<double>(p.tau)) +
                              " in the payload is not a positive finite number");
    p.index = read_index_gaps(rd, m, n, "codecs::threshold");
    p.signs = rd.bytes((m + 7) / 8);
    rd.expect_end();
    if (m % 8 != 0 && (static_cast<unsigned>(p.signs[m / 8]) >> (m % 8)) != 0)
      throw malformed_payload("codecs::threshold: padding bits set after the last sign");
    return p;
  }

  static void apply(const parsed& p, std::span<T> out) {
    for (std::size_t j = 0; j < p.index.size(); ++j) {
      const bool neg = ((static_cast<unsigned>(p.signs[j / 8]) >> (j % 8)) & 1u) != 0;
      out[p.index[j]] += neg ? -p.tau : p.tau;
    }
  }

  std::vector<std::uint32_t> chosen_;  // scratch, kept between steps
  std::vector<bool> negative_;
};

static_assert(concepts::codec<threshold<float>, float>);

}  // namespace dssync::codecs
