#pragma once
// The models of the training demo on Eigen: softmax regression (784-10) and a multilayer perceptron
// (784-128-10, ReLU), with cross-entropy loss. Parameters live in one flat float vector, the buffer that
// dssync synchronizes; the layers are Eigen maps into it.

#include <Eigen/Dense>

#include <cmath>
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

namespace train {

using matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic>;
using map = Eigen::Map<matrix>;
using cmap = Eigen::Map<const matrix>;

/// A model: its layer sizes (784, [hidden,] 10) over a flat parameter vector.
struct model {
  std::vector<int> sizes;  // e.g. {784, 10} or {784, 128, 10}

  static model make(const std::string& kind) {
    if (kind == "softmax") return {{784, 10}};
    if (kind == "mlp") return {{784, 128, 10}};
    throw std::invalid_argument("unknown model '" + kind + "' (softmax or mlp)");
  }

  [[nodiscard]] std::size_t parameters() const {
    std::size_t n = 0;
    for (std::size_t l = 0; l + 1 < sizes.size(); ++l) n += static_cast<std::size_t>(sizes[l + 1]) * (sizes[l] + 1);
    return n;
  }

  /// He-initialized parameters from `seed` (every worker starts from the same model).
  [[nodiscard]] std::vector<float> init(std::uint64_t seed) const {
    std::vector<float> p(parameters(), 0.0f);
    std::mt19937_64 g(seed);
    std::size_t at = 0;
    for (std::size_t l = 0; l + 1 < sizes.size(); ++l) {
      std::normal_distribution<float> d(0.0f, std::sqrt(2.0f / static_cast<float>(sizes[l])));
      const std::size_t w = static_cast<std::size_t>(sizes[l + 1]) * sizes[l];
      for (std::size_t i = 0; i < w; ++i) p[at + i] = sizes.size() == 2 ? 0.0f : d(g);
      at += w + static_cast<std::size_t>(sizes[l + 1]);  // biases start at 0
    }
    return p;
  }

  /// The class scores of the columns of `x`.
  [[nodiscard]] matrix forward(std::span<const float> p, const matrix& x, std::vector<matrix>* acts = nullptr) const {
    matrix a = x;
    std::size_t at = 0;
    for (std::size_t l = 0; l + 1 < sizes.size(); ++l) {
      const int in = sizes[l], out = sizes[l + 1];
      cmap w(p.data() + at, out, in);
      cmap b(p.data() + at + static_cast<std::size_t>(out) * in, out, 1);
      at += static_cast<std::size_t>(out) * (in + 1);
      if (acts) acts->push_back(a);
      matrix z = w * a;
      z.colwise() += b.col(0);
      if (l + 2 < sizes.size()) z = z.cwiseMax(0.0f);
      a = std::move(z);
    }
    return a;
  }

  /// The gradient of the mean cross-entropy of examples `x` (columns) with labels `y` into `grad`.
  void gradient(std::span<const float> p, const matrix& x, std::span<const std::uint8_t> y, std::span<float> grad) const {
    std::vector<matrix> acts;
    matrix s = forward(p, x, &acts);
    // Softmax, then dL/dz = p - onehot, over the batch mean.
    for (Eigen::Index j = 0; j < s.cols(); ++j) {
      const float mx = s.col(j).maxCoeff();
      s.col(j) = (s.col(j).array() - mx).exp();
      s.col(j) /= s.col(j).sum();
      s(y[static_cast<std::size_t>(j)], j) -= 1.0f;
    }
    matrix delta = s / static_cast<float>(x.cols());
    std::size_t at = parameters();
    for (std::size_t l = sizes.size() - 1; l-- > 0;) {
      const int in = sizes[l], out = sizes[l + 1];
      at -= static_cast<std::size_t>(out) * (in + 1);
      map gw(grad.data() + at, out, in);
      map gb(grad.data() + at + static_cast<std::size_t>(out) * in, out, 1);
      gw.noalias() = delta * acts[l].transpose();
      gb = delta.rowwise().sum();
      if (l > 0) {
        cmap w(p.data() + at, out, in);
        matrix back = w.transpose() * delta;
        delta = back.cwiseProduct((acts[l].array() > 0.0f).cast<float>().matrix());
      }
    }
  }

  /// The fraction of examples of `x`, `y` classified right.
  [[nodiscard]] double accuracy(std::span<const float> p, const matrix& x, std::span<const std::uint8_t> y) const {
    std::size_t right = 0;
    const Eigen::Index step = 2000;
    for (Eigen::Index from = 0; from < x.cols(); from += step) {
      const Eigen::Index n = std::min(step, x.cols() - from);
      const matrix s = forward(p, x.middleCols(from, n));
      for (Eigen::Index j = 0; j < n; ++j) {
        Eigen::Index arg = 0;
        s.col(j).maxCoeff(&arg);
        right += static_cast<std::size_t>(arg) == y[static_cast<std::size_t>(from + j)];
      }
    }
    return x.cols() == 0 ? 0.0 : static_cast<double>(right) / static_cast<double>(x.cols());
  }
};

}  // namespace train
