#pragma once
/// \file
/// `codecs::topk`: sparsification to the k entries of largest magnitude, with error feedback (Stich et
/// al., "Sparsified SGD with memory", NeurIPS 2018; Aji & Heafield 2017). k = ceil(ratio * n), at least 1
/// of a non-empty tensor. The selection is exact and deterministic: the k largest |g + r|, ties broken by
/// the lower index. It is found through a threshold estimated on a strided sample (as DGC does, Lin et
/// al., ICLR 2018): every entry at or above it is a candidate, and the top k of the candidates are the top
/// k of the tensor whenever there are at least k of them (otherwise the threshold is lowered, and in the
/// end the whole tensor is searched).
///
/// Payload (after the header, whose parameter is k): the k indices in increasing order as unsigned
/// LEB128 varints, the first as itself and each next as its gap minus one; then the k values as
/// little-endian T. At 1 % density the gaps take one byte each, so float32 compresses about 64-80x.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
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
struct topk {
  static_assert(std::is_floating_point_v<T>, "codecs::topk encodes floating-point elements");
  static constexpr std::string_view name = "topk";
  static constexpr bool is_linear = false;
  static constexpr std::uint8_t version = 1;

  double ratio = 0.01;      ///< share of the entries kept, in (0, 1]
  error_feedback<T> state;  ///< this tensor's residual

  topk() = default;
  /// Keeps the share `kept` of the entries.
  explicit topk(double kept) : ratio(kept) {}

  /// Entries kept of a tensor of `n`.
  [[nodiscard]] std::size_t k_of(std::size_t n) const {
    check_ratio();
    if (n == 0) return 0;
    const double k = std::ceil(ratio * static_cast<double>(n));
    return std::clamp<std::size_t>(static_cast<std::size_t>(k), 1, n);
  }

  /// Encodes the top k of `in` + the residual; the residual keeps the rest (once per call: one call per
  /// step). \throws invalid_argument for a ratio outside (0, 1], a tensor of 2^32 elements or more, or one
  ///   that changed length.
  void encode(std::span<const T> in, std::vector<std::byte>& out) {
    const std::size_t n = in.size();
    if (n > 0xffffffffu)
      throw invalid_argument("codecs::topk: a tensor of " + std::to_string(n) + " elements is too long (at most 2^32-1)");
    const std::size_t k = k_of(n);
    state.prepare(n, "codecs::topk");
    select(in, k, n);  // and r = g + r
    const auto at = out.size();
    write_header(out, {codec_id::topk, version, static_cast<std::uint32_t>(k), n, 0});
    write_index_gaps(out, chosen_);
    const auto values = out.size();
    out.resize(values + k * sizeof(T));
    T* r = state.residual.data();
    for (std::size_t j = 0; j < k; ++j) {
      std::memcpy(out.data() + values + j * sizeof(T), &r[chosen_[j]], sizeof(T));
      r[chosen_[j]] = T{};
    }
    patch_payload_length(out, at, out.size() - at - header_bytes);
  }

  /// \throws malformed_payload for a bad header, k above the element count, an index out of range or not
  ///   increasing, a bad varint, or a payload that is truncated or too long. `out` is untouched then.
  void decode(std::span<const std::byte> w, std::span<T> out) const {
    const parsed p = parse(w, out.size());
    std::fill(out.begin(), out.end(), T{});
    apply(p, out);
  }
  /// Adds the decoded entries to `out` (decode-and-sum of an allgather of payloads).
  void decode_add(std::span<const std::byte> w, std::span<T> out) const { apply(parse(w, out.size()), out); }
  /// The indices the last `encode` sent, increasing (DGC's momentum masking reads them).
  [[nodiscard]] std::span<const std::uint32_t> sent() const noexcept { return chosen_; }

  [[nodiscard]] std::size_t max_encoded_bytes(std::size_t n) const {
    const std::size_t k = k_of(n);
    return header_bytes + k * (sizeof(T) + 5);  // an index below 2^32 takes at most 5 varint bytes
  }

 private:
  void check_ratio() const {
    if (!(ratio > 0 && ratio <= 1))
      throw invalid_argument("codecs::topk: ratio " + std::to_string(ratio) + " is not in (0, 1]");
  }

  /// A checked payload: its indices, decoded, and its values, still raw.
  struct parsed {
    std::vector<std::uint32_t> index;
    std::span<const std::byte> values;
  };

  /// Reads and checks all of `w` for `n` elements in one pass; nothing is written to an output before
  /// the whole payload has passed.
  [[nodiscard]] static parsed parse(std::span<const std::byte> w, std::size_t n) {
    const header h = read_header(w, codec_id::topk, version, n);
    const std::size_t k = h.param;
    if (k > n)
      throw malformed_payload("codecs::topk: " + std::to_string(k) + " entries in the header for " +
                              std::to_string(n) + " elements");
    reader rd(w.subspan(header_bytes), "codecs::topk");
    if (k > rd.left() / (1 + sizeof(T)))  // an entry takes at least 1 + sizeof(T) bytes: refuse before allocating
      throw malformed_payload("codecs::topk: payload truncated: " + std::to_string(k) + " entries need at least " +
                              std::to_string(k * (1 + sizeof(T))) + " bytes, " + std::to_string(rd.left()) +
                              " follow the header");
    parsed p;
    p.index = read_index_gaps(rd, k, n, "codecs::topk");
    p.values = rd.bytes(k * sizeof(T));
    rd.expect_end();
    return p;
  }

  /// Adds the entries of a parsed payload to `out`.
  static void apply(const parsed& p, std::span<T> out) { scatter_add<T>(p.index, p.values, out); }

  /// A magnitude that orders NaN above everything (a strict weak order for the selection).
  [[nodiscard]] static T magnitude(T v) noexcept {
    const T m = std::fabs(v);
    return m != m ? std::numeric_limits<T>::infinity() : m;
  }

  /// Adds `in` to the residual r and fills `chosen_` with the indices of the k largest |r|, increasing.
  void select(std::span<const T> in, std::size_t k, std::size_t n) {
    chosen_.clear();
    cand_.clear();
    T* r = state.residual.data();
    // Candidates carry their magnitude, so the selection among them reads no scattered memory.
    auto before = [](const entry& a, const entry& b) {  // larger magnitude, then lower index
      return a.mag > b.mag || (a.mag == b.mag && a.idx < b.idx);
    };
    bool added = false;
    if (k > 0 && k < n) {
      // The threshold: the magnitude ranked at 1.1 k/n of a strided sample of g + r (10 % of room for the
      // sample's error: five standard deviations at 1 % of 2^24), doubled while it gives fewer than k;
      // the pass that adds g to r collects the candidates at once.
      const std::size_t samples = std::min<std::size_t>(n, std::max<std::size_t>(1024, n / 64));
      sample_.resize(samples);
      for (std::size_t s = 0; s < samples; ++s) {
        const std::size_t i = s * n / samples;
        sample_[s] = magnitude(in[i] + r[i]);
      }
      for (double widen = 1.1; widen <= 64 && cand_.size() < k; widen *= 2) {
        const auto rank = std::min<std::size_t>(
            samples - 1, static_cast<std::size_t>(widen * static_cast<double>(k) * static_cast<double>(samples) /
                                                  static_cast<double>(n)));
        std::nth_element(sample_.begin(), sample_.begin() + static_cast<std::ptrdiff_t>(rank), sample_.end(),
                         [](T a, T b) { return a > b; });
        const T tau = sample_[rank];
        cand_.clear();
        for (std::size_t i = 0; i < n; ++i) {
          if (!added) r[i] += in[i];
          const T m = magnitude(r[i]);
          if (m >= tau) cand_.push_back({m, static_cast<std::uint32_t>(i)});
        }
        added = true;
      }
    }
    if (!added)
      for (std::size_t i = 0; i < n; ++i) r[i] += in[i];
    if (k == 0) return;
    if (cand_.size() < k) {  // the sample misled us, or k = n: search everything
      cand_.resize(n);
      for (std::size_t i = 0; i < n; ++i) cand_[i] = {magnitude(r[i]), static_cast<std::uint32_t>(i)};
    }
    if (cand_.size() > k) {
      std::nth_element(cand_.begin(), cand_.begin() + static_cast<std::ptrdiff_t>(k - 1), cand_.end(), before);
      cand_.resize(k);
    }
    chosen_.resize(k);
    for (std::size_t j = 0; j < k; ++j) chosen_[j] = cand_[j].idx;
    std::sort(chosen_.begin(), chosen_.end());
  }

  struct entry {
    T mag;
    std::uint32_t idx;
  };
  std::vector<std::uint32_t> chosen_;  // scratch, kept between steps (no allocation after the first)
  std::vector<entry> cand_;
  std::vector<T> sample_;
};

static_assert(concepts::codec<topk<float>, float>);

}  // namespace dssync::codecs
