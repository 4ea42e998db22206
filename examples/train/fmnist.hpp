#pragma once
// Fashion-MNIST reader (Xiao, Rasul & Vollgraf 2017): the gzip'd IDX files of Debian's
// dataset-fashion-mnist package. Every header is validated (magic number, dimensions, counts that match
// the file's length), and any problem is an error naming the path and the package.

#include <zlib.h>

#include <Eigen/Dense>

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace train {

/// One split: images as columns of 784 floats in [0, 1], and labels 0..9.
struct dataset {
  Eigen::MatrixXf images;            // 784 x count
  std::vector<std::uint8_t> labels;  // count
  [[nodiscard]] std::size_t size() const { return labels.size(); }
};

struct data_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

namespace detail {

inline std::vector<unsigned char> gunzip(const std::string& path) {
  if (!std::filesystem::exists(path))
    throw data_error("Fashion-MNIST file " + path +
                     " not found (install it with: apt-get install dataset-fashion-mnist, or pass --data DIR)");
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) throw data_error("cannot open " + path);
  std::vector<unsigned char> out;
  unsigned char buf[1 << 16];
  while (true) {
    const int got = gzread(f, buf, sizeof buf);
    if (got < 0) {
      int err = 0;
      const std::string why = gzerror(f, &err);
      gzclose(f);
      throw data_error(path + " is corrupt (gzip: " + why + "; reinstall dataset-fashion-mnist)");
    }
    if (got == 0) break;
    out.insert(out.end(), buf, buf + got);
  }
  gzclose(f);
  return out;
}

inline std::uint32_t be32(const std::vector<unsigned char>& b, std::size_t at) {
  return (std::uint32_t{b[at]} << 24) | (std::uint32_t{b[at + 1]} << 16) | (std::uint32_t{b[at + 2]} << 8) | b[at + 3];
}

}  // namespace detail

/// Reads split `prefix` ("train" or "t10k") from `dir`, at most `limit` examples (0: all).
/// \throws data_error naming the file and what is wrong with it.
inline dataset load(const std::string& dir, const std::string& prefix, std::size_t limit = 0) {
  const std::string ipath = dir + "/" + prefix + "-images-idx3-ubyte.gz";
  const std::string lpath = dir + "/" + prefix + "-labels-idx1-ubyte.gz";
  const auto img = detail::gunzip(ipath);
  const auto lab = detail::gunzip(lpath);
  if (img.size() < 16 || detail::be32(img, 0) != 2051)
    throw data_error(ipath + ": not an IDX image file (magic " + (img.size() >= 4 ? std::to_string(detail::be32(img, 0)) : "missing") +
                     ", expected 2051)");
  if (lab.size() < 8 || detail::be32(lab, 0) != 2049)
    throw data_error(lpath + ": not an IDX label file (magic " + (lab.size() >= 4 ? std::to_string(detail::be32(lab, 0)) : "missing") +
                     ", expected 2049)");
  const std::size_t n = detail::be32(img, 4), rows = detail::be32(img, 8), cols = detail::be32(img, 12);
  if (rows != 28 || cols != 28) throw data_error(ipath + ": images are " + std::to_string(rows) + "x" + std::to_string(cols) + ", expected 28x28");
  if (img.size() != 16 + n * 784)
    throw data_error(ipath + ": " + std::to_string(img.size()) + " bytes for " + std::to_string(n) + " images (expected " +
                     std::to_string(16 + n * 784) + "): truncated or corrupt");
  const std::size_t nl = detail::be32(lab, 4);
  if (nl != n) throw data_error(lpath + ": " + std::to_string(nl) + " labels for " + std::to_string(n) + " images in " + ipath);
  if (lab.size() != 8 + n) throw data_error(lpath + ": " + std::to_string(lab.size()) + " bytes for " + std::to_string(n) + " labels: truncated or corrupt");
  const std::size_t m = limit == 0 ? n : std::min(limit, n);
  dataset d;
  d.images.resize(784, static_cast<Eigen::Index>(m));
  d.labels.resize(m);
  for (std::size_t i = 0; i < m; ++i) {
    for (std::size_t p = 0; p < 784; ++p) d.images(static_cast<Eigen::Index>(p), static_cast<Eigen::Index>(i)) = img[16 + i * 784 + p] / 255.0f;
    d.labels[i] = lab[8 + i];
    if (d.labels[i] > 9) throw data_error(lpath + ": label " + std::to_string(d.labels[i]) + " of example " + std::to_string(i) + " is not 0..9");
  }
  return d;
}

}  // namespace train
