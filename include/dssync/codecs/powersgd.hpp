#pragma once
/// \file
/// `codecs::powersgd`: rank-r compression by one step of power iteration with error feedback (Vogels,
/// Karimireddy and Jaggi, "PowerSGD: Practical low-rank gradient compression for distributed
/// optimization", NeurIPS 2019, Algorithm 1). The tensor of n elements is a rows x cols matrix (row-major,
/// zero-padded to rows * cols); with M = G + E (gradient plus residual) and Q (cols x r) warm-started
/// from the last step:
///
///     P = M Q;   P <- sum of P over workers;   P^ = orthonormal basis of P   (Householder QR)
///     Q = M^T P^; Q <- mean of Q over workers;  update = P^ Q^T;  E = M - P^ Q_own^T
///
/// P and Q sum linearly, so the distributed form is two ordinary allreduces of (rows + cols) * r
/// elements, not an allgather: `factor_p`, allreduce P, `factor_q`, allreduce Q, `finish`. Every worker
/// that passes the same reduced P and Q gets bitwise the same update. The first Q is standard normal
/// from the state's seed (counter-based, `stochastic.hpp`): give every worker the same seed.
///
/// As a single-payload codec (`encode`/`decode`, one worker's rank-r approximation, which an allgather of
/// payloads can sum with `decode_add`), the payload after the header (parameter: r) is rows and cols as
/// little-endian uint32, then P^ (rows x r) and Q (cols x r), column-major, as little-endian T.
///
/// Needs Eigen (`dssync::eigen`).

#include <Eigen/Core>
#include <Eigen/QR>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <numbers>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "dssync/codecs/stochastic.hpp"
#include "dssync/codecs/wire.hpp"
#include "dssync/core/codec.hpp"
#include "dssync/core/error.hpp"

namespace dssync::codecs {

/// PowerSGD's per-tensor state: the seed of the first Q, the steps taken, the residual E (rows * cols,
/// padded) and the warm-start Q (cols x r, column-major).
template <class T>
struct powersgd_state {
  static constexpr std::uint8_t version = 1;
  std::uint64_t seed = 0;
  std::uint64_t step = 0;
  std::vector<T> residual;  ///< empty until the first step
  std::vector<T> q;         ///< empty until the first step

  /// Appends the state: header (parameter: the element size; count: residual elements), then seed, step
  /// and the length of q as little-endian uint64, then the residual and q as little-endian T.
  void save(std::vector<std::byte>& out) const {
    write_header(out, {codec_id::powersgd_state, version, static_cast<std::uint32_t>(sizeof(T)), residual.size(),
                       24 + (residual.size() + q.size()) * sizeof(T)});
    write_value(out, seed);
    write_value(out, step);
    write_value(out, static_cast<std::uint64_t>(q.size()));
    append(out, residual);
    append(out, q);
  }
  /// \throws malformed_payload if `w` is not a saved PowerSGD state of this element size; the state is
  ///   untouched then.
  void load(std::span<const std::byte> w) {
    const header h = read_state_header<T>(w, codec_id::powersgd_state, version, "codecs::powersgd");
    const std::uint64_t n = h.count;
    reader rd(w.subspan(header_bytes), "codecs::powersgd");
    const auto s = rd.value<std::uint64_t>();
    const auto t = rd.value<std::uint64_t>();
    const auto m = rd.value<std::uint64_t>();
    if (n > rd.left() / sizeof(T) || m > rd.left() / sizeof(T) || (n + m) * sizeof(T) != rd.left())
      throw malformed_payload("codecs::powersgd: a residual of " + std::to_string(n) + " and a Q of " +
                              std::to_string(m) + " elements in " + std::to_string(rd.left()) + " bytes");
    std::vector<T> r(static_cast<std::size_t>(n)), qq(static_cast<std::size_t>(m));
    if (n != 0) std::memcpy(r.data(), rd.bytes(r.size() * sizeof(T)).data(), r.size() * sizeof(T));
    if (m != 0) std::memcpy(qq.data(), rd.bytes(qq.size() * sizeof(T)).data(), qq.size() * sizeof(T));
    rd.expect_end();
    seed = s;
    step = t;
    residual = std::move(r);
    q = std::move(qq);
  }

 private:
  static void append(std::vector<std::byte>& out, const std::vector<T>& v) {
    const auto at = out.size();
    out.resize(at + v.size() * sizeof(T));
    if (!v.empty()) std::memcpy(out.data() + at, v.data(), v.size() * sizeof(T));
  }
};

template <class T = float>
struct powersgd {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "codecs::powersgd: float or double elements");
  static constexpr std::string_view name = "powersgd";
  static constexpr bool is_linear = true;  // P and Q are summed by ordinary allreduces
  static constexpr std::uint8_t version = 1;

  std::size_t rank = 4;  ///< r, at least 1 (cut to min(rows, cols))
  std::size_t rows = 0;  ///< rows of the matrix; 0: ceil(sqrt(n))
  powersgd_state<T> state;

  powersgd() = default;
  explicit powersgd(std::size_t r, std::size_t matrix_rows = 0) : rank(r), rows(matrix_rows) {}

  /// The matrix a tensor of n elements is: rows x cols (cols = ceil(n / rows)) and the rank used.
  struct shape {
    std::size_t rows = 0, cols = 0, rank = 0;
    [[nodiscard]] std::size_t p_size() const noexcept { return rows * rank; }
    [[nodiscard]] std::size_t q_size() const noexcept { return cols * rank; }
  };
  /// \throws invalid_argument for a rank of 0, or rows above n (of a non-empty tensor) or above 2^32-1.
  [[nodiscard]] shape shape_of(std::size_t n) const {
    if (rank == 0) throw invalid_argument("codecs::powersgd: rank 0 (at least 1)");
    if (n == 0) return {};
    std::size_t r = rows;
    if (r == 0) r = static_cast<std::size_t>(std::ceil(std::sqrt(static_cast<double>(n))));
    if (r > n || r > 0xffffffffu)
      throw invalid_argument("codecs::powersgd: " + std::to_string(r) + " rows for a tensor of " + std::to_string(n) +
                             " elements");
    const std::size_t c = (n + r - 1) / r;
    if (c > 0xffffffffu)
      throw invalid_argument("codecs::powersgd: " + std::to_string(c) + " columns (at most 2^32-1)");
    return {r, c, std::min({rank, r, c})};
  }

  /// Round 1: M = grad + E, then P = M Q into `p` (shape_of(n).p_size() elements). Allreduce `p` (sum)
  /// next. \throws invalid_argument for a bad shape, a `p` of another length, or a tensor that changed
  ///   length since the last step.
  void factor_p(std::span<const T> grad, std::span<T> p) {
    if (phase_ != 0)
      throw invalid_argument("codecs::powersgd: factor_p while a step is in progress (after a failed round, load a "
                             "saved state)");
    const shape s = shape_of(grad.size());
    expect(p.size(), s.p_size(), "P");
    prepare(s, grad.size());
    n_ = grad.size();
    for (std::size_t i = 0; i < n_; ++i) state.residual[i] += grad[i];  // E becomes M (the padding stays 0)
    P(p, s).noalias() = M(s) * Q(state.q.data(), s);
    shape_ = s;
    phase_ = 1;
  }

  /// Round 2: orthonormalizes the reduced P in place (P^), then Q = M^T P^ into `q` (q_size()
  /// elements). Allreduce `q` (sum) next. \throws invalid_argument out of order or for wrong lengths.
  void factor_q(std::span<T> p_sum, std::span<T> q) {
    if (phase_ != 1) throw invalid_argument("codecs::powersgd: factor_q before factor_p");
    const shape s = shape_;
    expect(p_sum.size(), s.p_size(), "P");
    expect(q.size(), s.q_size(), "Q");
    if (s.rank != 0) {
      auto Pm = P(p_sum, s);
      const Eigen::HouseholderQR<Mat> qr(Pm);
      Pm = qr.householderQ() * Mat::Identity(static_cast<Eigen::Index>(s.rows), static_cast<Eigen::Index>(s.rank));
    }
    Q(q.data(), s).noalias() = M(s).transpose() * P(p_sum, s);
    own_q_.assign(q.begin(), q.end());
    phase_ = 2;
  }

  /// Round 3: the update P^ (Q_sum / workers)^T into `out` (n elements), the residual E = M - P^ Q_own^T,
  /// and the mean Q kept as the next step's warm start. \throws invalid_argument out of order, for
  ///   wrong lengths or 0 workers.
  void finish(std::span<const T> p_hat, std::span<const T> q_sum, std::size_t workers, std::span<T> out) {
    finish_step(p_hat, q_sum, workers, out, true);
  }

  /// One worker's step as a payload: P^ and Q of its own M (factor_p, factor_q and finish with one
  /// worker). The residual keeps what the rank-r approximation misses. No allocation after the first step.
  void encode(std::span<const T> in, std::vector<std::byte>& out) {
    const shape s = shape_of(in.size());
    p_.resize(s.p_size());
    q_.resize(s.q_size());
    factor_p(in, p_);
    factor_q(p_, q_);
    finish_step(p_, q_, 1, {}, false);  // the receiver forms the update from the payload
    write_header(out, {codec_id::powersgd, version, static_cast<std::uint32_t>(s.rank), in.size(),
                       8 + (s.p_size() + s.q_size()) * sizeof(T)});
    write_value(out, static_cast<std::uint32_t>(s.rows));
    write_value(out, static_cast<std::uint32_t>(s.cols));
    const auto body = out.size();
    out.resize(body + (p_.size() + q_.size()) * sizeof(T));
    if (!p_.empty()) std::memcpy(out.data() + body, p_.data(), p_.size() * sizeof(T));
    if (!q_.empty()) std::memcpy(out.data() + body + p_.size() * sizeof(T), q_.data(), q_.size() * sizeof(T));
  }

  /// \throws malformed_payload for a bad header, a shape that does not fit the element count (cols must
  ///   be ceil(n / rows), the rank at most min(rows, cols)) or a payload of the wrong length. `out` is
  ///   untouched then.
  void decode(std::span<const std::byte> w, std::span<T> out) const {
    const parsed p = parse(w, out.size());
    expand(p, out, false);
  }
  void decode_add(std::span<const std::byte> w, std::span<T> out) const {
    const parsed p = parse(w, out.size());
    expand(p, out, true);
  }

  [[nodiscard]] std::size_t max_encoded_bytes(std::size_t n) const {
    const shape s = shape_of(n);
    return header_bytes + 8 + (s.p_size() + s.q_size()) * sizeof(T);
  }

 private:
  using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;
  using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  static auto ix(std::size_t v) { return static_cast<Eigen::Index>(v); }

  Eigen::Map<RowMatrix> M(const shape& s) { return {state.residual.data(), ix(s.rows), ix(s.cols)}; }
  static Eigen::Map<RowMatrix> RowMat(T* d, const shape& s) { return {d, ix(s.rows), ix(s.cols)}; }
  static Eigen::Map<Mat> P(std::span<T> p, const shape& s) { return {p.data(), ix(s.rows), ix(s.rank)}; }
  static Eigen::Map<const Mat> CP(const T* p, const shape& s) { return {p, ix(s.rows), ix(s.rank)}; }
  static Eigen::Map<Mat> Q(T* q, const shape& s) { return {q, ix(s.cols), ix(s.rank)}; }
  static Eigen::Map<const Mat> CQ(const T* q, const shape& s) { return {q, ix(s.cols), ix(s.rank)}; }

  static void expect(std::size_t got, std::size_t want, const char* what) {
    if (got != want)
      throw invalid_argument(std::string("codecs::powersgd: ") + what + " has " + std::to_string(got) +
                             " elements, expected " + std::to_string(want));
  }

  /// The residual and Q on the first step (Q standard normal from the seed, Box-Muller on counter-based
  /// uniforms); a tensor that changed length is refused.
  void prepare(const shape& s, std::size_t n) {
    if (state.residual.empty() && state.q.empty() && n != 0) {
      state.residual.assign(s.rows * s.cols, T{});
      state.q.resize(s.q_size());
      const std::uint64_t key = mix(state.seed ^ 0x50535344ull, 0);  // "PSSD"
      for (std::size_t i = 0; i < state.q.size(); ++i) {
        const double u1 = uniform(mix(key, 2 * i)), u2 = uniform(mix(key, 2 * i + 1));
        state.q[i] = static_cast<T>(std::sqrt(-2.0 * std::log1p(-u1)) * std::cos(2 * std::numbers::pi * u2));
      }
    }
    if (state.residual.size() != s.rows * s.cols || state.q.size() != s.q_size())
      throw invalid_argument("codecs::powersgd: the tensor has " + std::to_string(n) + " elements (a " +
                             std::to_string(s.rows) + " x " + std::to_string(s.cols) + " matrix of rank " +
                             std::to_string(s.rank) + "), the state a residual of " +
                             std::to_string(state.residual.size()) + " and a Q of " + std::to_string(state.q.size()) +
                             " (one codec object per tensor)");
  }

  /// finish, with the update formed into `out` or not (encode: the receiver forms it).
  void finish_step(std::span<const T> p_hat, std::span<const T> q_sum, std::size_t workers, std::span<T> out,
                   bool form_update) {
    if (phase_ != 2) throw invalid_argument("codecs::powersgd: finish before factor_q");
    if (workers == 0) throw invalid_argument("codecs::powersgd: 0 workers");
    const shape s = shape_;
    expect(p_hat.size(), s.p_size(), "P");
    expect(q_sum.size(), s.q_size(), "Q");
    if (form_update) expect(out.size(), n_, "the output");
    const auto Ph = CP(p_hat.data(), s);
    // E = M - P^ Q_own^T, over the padded matrix; the padding is reset to 0.
    M(s).noalias() -= Ph * CQ(own_q_.data(), s).transpose();
    std::fill(state.residual.begin() + static_cast<std::ptrdiff_t>(n_), state.residual.end(), T{});
    const T inv = T{1} / static_cast<T>(workers);
    for (std::size_t i = 0; i < state.q.size(); ++i) state.q[i] = q_sum[i] * inv;
    if (form_update) {
      scratch_.resize(s.rows * s.cols);
      RowMat(scratch_.data(), s).noalias() = Ph * CQ(state.q.data(), s).transpose();
      std::copy(scratch_.begin(), scratch_.begin() + static_cast<std::ptrdiff_t>(n_), out.begin());
    }
    ++state.step;
    phase_ = 0;
  }

  struct parsed {
    shape s;
    const std::byte* p = nullptr;
    const std::byte* q = nullptr;
  };

  [[nodiscard]] static parsed parse(std::span<const std::byte> w, std::size_t n) {
    const header h = read_header(w, codec_id::powersgd, version, n);
    reader rd(w.subspan(header_bytes), "codecs::powersgd");
    parsed out;
    out.s.rows = rd.value<std::uint32_t>();
    out.s.cols = rd.value<std::uint32_t>();
    out.s.rank = h.param;
    const shape& s = out.s;
    const bool fits = n == 0 ? (s.rows == 0 && s.cols == 0 && s.rank == 0)
                             : (s.rows >= 1 && s.rows <= n && s.cols == (n + s.rows - 1) / s.rows && s.rank >= 1 &&
                                s.rank <= std::min(s.rows, s.cols));
    if (!fits)
      throw malformed_payload("codecs::powersgd: a " + std::to_string(s.rows) + " x " + std::to_string(s.cols) +
                              " matrix of rank " + std::to_string(s.rank) + " does not hold " + std::to_string(n) +
                              " elements");
    const std::size_t body = (s.p_size() + s.q_size()) * sizeof(T);
    if (rd.left() != body)
      throw malformed_payload("codecs::powersgd: P and Q take " + std::to_string(body) + " bytes, " +
                              std::to_string(rd.left()) + " follow the shape");
    out.p = rd.bytes(s.p_size() * sizeof(T)).data();
    out.q = rd.bytes(s.q_size() * sizeof(T)).data();
    return out;
  }

  static void expand(const parsed& p, std::span<T> out, bool add) {
    const shape& s = p.s;
    if (out.empty()) return;
    std::vector<T> pv(s.p_size()), qv(s.q_size()), full(s.rows * s.cols);
    std::memcpy(pv.data(), p.p, pv.size() * sizeof(T));
    std::memcpy(qv.data(), p.q, qv.size() * sizeof(T));
    RowMat(full.data(), s).noalias() = CP(pv.data(), s) * CQ(qv.data(), s).transpose();
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = add ? out[i] + full[i] : full[i];
  }

  shape shape_{};
  std::size_t n_ = 0;  // elements of the step in progress
  int phase_ = 0;      // 0: idle, 1: after factor_p, 2: after factor_q
  std::vector<T> own_q_, scratch_, p_, q_;  // scratch, kept between steps
};

static_assert(concepts::codec<powersgd<float>, float>);

}  // namespace dssync::codecs
