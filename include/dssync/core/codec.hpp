#pragma once
/// \file
/// The `codec` concept: what goes on the wire.

#include <concepts>
#include <cstddef>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dssync/core/error.hpp"

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
///  6. Optional: `C::is_elementwise` (see `is_elementwise_codec`).
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

/// Whether codec `C` is elementwise (`C::is_elementwise`, default false): the payload of any part of a
/// tensor is that part's own payload, decoding reads nothing else, and `encode` keeps no state (no
/// residual, no random stream). Identity, fp16 and bf16 are. A plan may then encode parts of a tensor and
/// re-encode partial sums, and so run the compressed allreduce as a true ring reduce-scatter and
/// allgather (`algorithms::encoded_ring`), whose traffic does not grow with the number of ranks.
template <class C>
inline constexpr bool is_elementwise_codec = [] {
  if constexpr (requires { C::is_elementwise; })
    return static_cast<bool>(C::is_elementwise);
  else
    return false;
}();

/// The codec as a plan's encode, decode and decode-add steps see it (`execute(..., codec)`): a run-time
/// interface, so that the executor and the transports stay codec-agnostic. `codec_ref` adapts any codec.
template <class E>
class codec_hook {
 public:
  virtual ~codec_hook() = default;
  [[nodiscard]] virtual std::string_view name() const = 0;
  /// The most bytes `encode` writes for `n` elements: the plan sizes its byte slots with it.
  [[nodiscard]] virtual std::size_t max_encoded_bytes(std::size_t n) const = 0;
  /// Writes the payload of `in` to the front of `out`; returns its length. \throws invalid_argument if
  /// the payload does not fit in `out` (a codec that exceeds its own bound).
  virtual std::size_t encode(std::span<const E> in, std::span<std::byte> out) = 0;
  /// Overwrites `out` with the decoding of `in`. \throws malformed_payload.
  virtual void decode(std::span<const std::byte> in, std::span<E> out) = 0;
  /// Adds the decoding of `in` to `out`. \throws malformed_payload (then `out` is untouched).
  virtual void decode_add(std::span<const std::byte> in, std::span<E> out) = 0;
};

/// `codec_hook` over a codec object the caller owns (with its per-tensor state: one per rank and tensor).
template <class C, class E>
  requires concepts::codec<C, E>
class codec_ref final : public codec_hook<E> {
 public:
  explicit codec_ref(C& c) : c_(c) {}
  [[nodiscard]] std::string_view name() const override { return C::name; }
  [[nodiscard]] std::size_t max_encoded_bytes(std::size_t n) const override { return c_.max_encoded_bytes(n); }
  std::size_t encode(std::span<const E> in, std::span<std::byte> out) override {
    // The codec appends to a vector; this thread's staging vector keeps its capacity from call to call.
    thread_local std::vector<std::byte> buf_;
    buf_.clear();
    c_.encode(in, buf_);
    if (buf_.size() > out.size())
      throw invalid_argument("dssync: codec " + std::string(C::name) + " wrote " + std::to_string(buf_.size()) +
                             " bytes for " + std::to_string(in.size()) + " elements, past its slot of " +
                             std::to_string(out.size()) + " bytes (max_encoded_bytes is wrong)");
    if (!buf_.empty()) std::memcpy(out.data(), buf_.data(), buf_.size());
    return buf_.size();
  }
  void decode(std::span<const std::byte> in, std::span<E> out) override { c_.decode(in, out); }
  void decode_add(std::span<const std::byte> in, std::span<E> out) override {
    if constexpr (requires { c_.decode_add(in, out); }) {
      c_.decode_add(in, out);
    } else {
      thread_local std::vector<E> tmp_;
      tmp_.resize(out.size());
      c_.decode(in, std::span<E>(tmp_));
      for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<E>(out[i] + tmp_[i]);
    }
  }
  [[nodiscard]] C& codec() noexcept { return c_; }

 private:
  C& c_;
};

}  // namespace dssync
