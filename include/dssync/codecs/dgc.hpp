#pragma once
/// \file
/// `codecs::dgc`: Deep Gradient Compression (Lin, Han, Mao, Wang and Dally, "Deep Gradient Compression:
/// Reducing the communication bandwidth for distributed training", ICLR 2018). Per step, with gradient g:
/// 1. local gradient clipping: g is scaled to norm `clip_norm` when its L2 norm is above it (0: off; the
///    paper clips each worker at the global threshold times N^(-1/2));
/// 2. momentum correction: u = m u + g, then the accumulation v = v + u (the velocity is what is
///    accumulated, not the gradient, so the sparse update follows momentum SGD);
/// 3. sparsification: the top k of |v| are sent, k = ceil(density * n), found through a threshold
///    estimated on a sample of v and then made exact (`codecs::topk`'s selection);
/// 4. momentum factor masking: v and u are zeroed where an entry was sent, so stale momentum does not
///    push an entry that was already applied;
/// 5. warm-up: over the first `warmup_steps` steps the density falls geometrically from 25 % to `ratio`
///    (the paper: 75 %, 93.75 %, 98.4375 %, 99.6 %, 99.9 % sparsity over the first epochs).
/// The receivers sum the decoded payloads and apply the sum as a plain SGD step: momentum was applied
/// before compression.
///
/// Wire format: a `codecs::topk` payload (codec id topk): the sent entries' indices and values; any topk
/// decoder reads it. The state (`dgc_state`: step, u and v) is checkpointable; a loaded state gives
/// bitwise the same next step.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "dssync/codecs/topk.hpp"
#include "dssync/codecs/wire.hpp"
#include "dssync/core/codec.hpp"
#include "dssync/core/error.hpp"

namespace dssync::codecs {

/// DGC's per-tensor state: the steps taken, the momentum u and the accumulated velocity v.
template <class T>
struct dgc_state {
  static constexpr std::uint8_t version = 1;
  std::uint64_t step = 0;
  std::vector<T> momentum;     ///< u, empty until the first step
  std::vector<T> accumulated;  ///< v, empty until the first step

  /// Appends the state: header (parameter: the element size; count: n), then the step as a
  /// little-endian uint64, then u and v as n little-endian T each.
  void save(std::vector<std::byte>& out) const {
    const std::size_t n = momentum.size();
    write_header(out, {codec_id::dgc_state, version, static_cast<std::uint32_t>(sizeof(T)), n, 8 + 2 * n * sizeof(T)});
    write_value(out, step);
    const auto at = out.size();
    out.resize(at + 2 * n * sizeof(T));
    if (n != 0) {
      std::memcpy(out.data() + at, momentum.data(), n * sizeof(T));
      std::memcpy(out.data() + at + n * sizeof(T), accumulated.data(), n * sizeof(T));
    }
  }
  /// \throws malformed_payload if `w` is not a saved DGC state of this element size; the state is
  ///   untouched then.
  void load(std::span<const std::byte> w) {
    const header h = read_state_header<T>(w, codec_id::dgc_state, version, "codecs::dgc");
    const std::uint64_t n = h.count;
    if (h.payload < 8 || (h.payload - 8) / (2 * sizeof(T)) != n || (h.payload - 8) % (2 * sizeof(T)) != 0)
      throw malformed_payload("codecs::dgc: " + std::to_string(n) + " elements in a state of " +
                              std::to_string(h.payload) + " bytes (expected 8 + 2 * " + std::to_string(n) + " * " +
                              std::to_string(sizeof(T)) + ")");
    reader rd(w.subspan(header_bytes), "codecs::dgc");
    const auto t = rd.value<std::uint64_t>();
    std::vector<T> u(static_cast<std::size_t>(n)), v(static_cast<std::size_t>(n));
    if (n != 0) {
      std::memcpy(u.data(), rd.bytes(u.size() * sizeof(T)).data(), u.size() * sizeof(T));
      std::memcpy(v.data(), rd.bytes(v.size() * sizeof(T)).data(), v.size() * sizeof(T));
    }
    rd.expect_end();
    step = t;
    momentum = std::move(u);
    accumulated = std::move(v);
  }
};

template <class T = float>
struct dgc {
  static_assert(std::is_floating_point_v<T>, "codecs::dgc encodes floating-point elements");
  static constexpr std::string_view name = "dgc";
  static constexpr bool is_linear = false;

  double ratio = 0.001;            ///< density after the warm-up, in (0, 1]
  double momentum = 0.9;           ///< m, in [0, 1)
  double clip_norm = 0;            ///< local clipping of g's L2 norm; 0: off
  std::uint64_t warmup_steps = 0;  ///< steps over which the density falls from 25 % to `ratio`
  dgc_state<T> state;

  dgc() = default;
  explicit dgc(double density, double m = 0.9, double clip = 0, std::uint64_t warmup = 0)
      : ratio(density), momentum(m), clip_norm(clip), warmup_steps(warmup) {}

  /// The density at step `t`: 0.25 (ratio / 0.25)^(t / warmup_steps) during the warm-up, `ratio` after
  /// it (and from the start if `ratio` is 25 % or more).
  [[nodiscard]] double density(std::uint64_t t) const {
    check();
    if (t >= warmup_steps || ratio >= 0.25) return ratio;
    return std::max(ratio, 0.25 * std::pow(ratio / 0.25, static_cast<double>(t) / static_cast<double>(warmup_steps)));
  }

  /// One step: clip, momentum, accumulate, send the top k of v, mask u and v where sent.
  /// \throws invalid_argument for a parameter out of range or a tensor that changed length.
  void encode(std::span<const T> in, std::vector<std::byte>& out) {
    check();
    const std::size_t n = in.size();
    if (state.momentum.empty() && n != 0) {
      state.momentum.assign(n, T{});
      state.accumulated.assign(n, T{});
    }
    if (state.momentum.size() != n || state.accumulated.size() != n)
      throw invalid_argument("codecs::dgc: the tensor has " + std::to_string(n) + " elements, its state " +
                             std::to_string(state.momentum.size()) + " (one codec object per tensor)");
    T scale = T{1};
    if (clip_norm > 0) {
      double sq = 0;
      for (const T g : in) sq += static_cast<double>(g) * static_cast<double>(g);
      const double norm = std::sqrt(sq);
      if (norm > clip_norm) scale = static_cast<T>(clip_norm / norm);
    }
    const T m = static_cast<T>(momentum);
    T* u = state.momentum.data();
    for (std::size_t i = 0; i < n; ++i) u[i] = m * u[i] + scale * in[i];
    // v = v + u and the top k of v: topk's error feedback, run on v (swapped in, not copied).
    select_.ratio = density(state.step);
    std::swap(select_.state.residual, state.accumulated);
    try {
      select_.encode(std::span<const T>(u, n), out);
    } catch (...) {
      std::swap(select_.state.residual, state.accumulated);
      throw;
    }
    std::swap(select_.state.residual, state.accumulated);
    for (const std::uint32_t i : select_.sent()) u[i] = T{};  // momentum factor masking (v: by topk)
    ++state.step;
  }

  /// \throws malformed_payload as `codecs::topk`'s decoder.
  void decode(std::span<const std::byte> w, std::span<T> out) const { select_.decode(w, out); }
  void decode_add(std::span<const std::byte> w, std::span<T> out) const { select_.decode_add(w, out); }

  /// A bound for every step, warm-up included.
  [[nodiscard]] std::size_t max_encoded_bytes(std::size_t n) const {
    check();
    topk<T> widest(warmup_steps > 0 ? std::max(ratio, 0.25) : ratio);
    return widest.max_encoded_bytes(n);
  }

 private:
  void check() const {
    if (!(ratio > 0 && ratio <= 1))
      throw invalid_argument("codecs::dgc: ratio " + std::to_string(ratio) + " is not in (0, 1]");
    if (!(momentum >= 0 && momentum < 1))
      throw invalid_argument("codecs::dgc: momentum " + std::to_string(momentum) + " is not in [0, 1)");
    if (!(clip_norm >= 0) || !std::isfinite(clip_norm))
      throw invalid_argument("codecs::dgc: clip_norm " + std::to_string(clip_norm) + " is not a finite number >= 0");
  }

  topk<T> select_;  // the selection and its scratch; its residual is v during an encode only
};

static_assert(concepts::codec<dgc<float>, float>);

}  // namespace dssync::codecs
