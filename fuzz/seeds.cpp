// Writes the seed corpus of the fuzz targets: valid payloads of every codec (several lengths and
// parameters, floats with NaN, infinities and zeros among them) and valid saved states, one file each,
// under <dir>/<target>/. libFuzzer starts from these and mutates them.
//   usage: dssync_fuzz_seeds <dir>
#include <dssync/codecs/dgc.hpp>
#include <dssync/codecs/error_feedback.hpp>
#include <dssync/codecs/half.hpp>
#include <dssync/codecs/onebit.hpp>
#include <dssync/codecs/powersgd.hpp>
#include <dssync/codecs/qsgd.hpp>
#include <dssync/codecs/randomk.hpp>
#include <dssync/codecs/terngrad.hpp>
#include <dssync/codecs/threshold.hpp>
#include <dssync/codecs/topk.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <vector>

namespace fs = std::filesystem;
namespace cd = dssync::codecs;

namespace {

/// Writes `w` as the next seed of `dir`.
void put(const fs::path& dir, const std::vector<std::byte>& w) {
  fs::create_directories(dir);
  const auto serial = std::distance(fs::directory_iterator(dir), fs::directory_iterator{});
  std::ofstream f(dir / ("seed-" + std::to_string(serial)), std::ios::binary);
  f.write(reinterpret_cast<const char*>(w.data()), static_cast<std::streamsize>(w.size()));
  if (!f) throw std::runtime_error("cannot write a seed under " + dir.string());
}

std::vector<float> tensor(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> x(n);
  for (auto& v : x) v = d(rng);
  if (n > 5) {
    x[1] = 0.0f;
    x[2] = -0.0f;
    x[3] = 70000.0f;  // beyond fp16's range
  }
  if (n > 9 && seed % 2 == 1) {
    x[7] = std::numeric_limits<float>::infinity();
    x[9] = std::numeric_limits<float>::quiet_NaN();
  }
  return x;
}

/// Two steps of `c` (the second with the first's residual) on tensors of several lengths.
template <class Codec>
void payloads(const fs::path& dir, Codec c) {
  for (std::size_t n : {0u, 1u, 7u, 64u, 1000u, 4099u}) {
    Codec fresh = c;
    for (unsigned step = 0; step < 2; ++step) {
      std::vector<std::byte> w;
      fresh.encode(std::span<const float>(tensor(n, static_cast<unsigned>(n) + step)), w);
      put(dir, w);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <dir>\n", argv[0]);
    return 2;
  }
  const fs::path root = argv[1];
  payloads(root / "fp16", cd::fp16<float>{});
  payloads(root / "bf16", cd::bf16<float>{});
  payloads(root / "onebit", cd::onebit<float>(5));
  payloads(root / "onebit", cd::onebit<float>{});
  payloads(root / "topk", cd::topk<float>(0.01));
  payloads(root / "topk", cd::topk<float>(0.3));
  payloads(root / "randomk", cd::randomk<float>(0.05));
  payloads(root / "qsgd", cd::qsgd<float>(16, 33));
  payloads(root / "qsgd", cd::qsgd<float>(65536, 7));
  payloads(root / "qsgd", cd::qsgd<float>(1));
  payloads(root / "terngrad", cd::terngrad<float>(17));
  payloads(root / "terngrad", cd::terngrad<float>(4096, 0.0));
  payloads(root / "threshold", cd::threshold<float>(1.0f));
  payloads(root / "dgc", cd::dgc<float>(0.01, 0.9, 2.0, 3));
  payloads(root / "powersgd", cd::powersgd<float>(2));
  payloads(root / "powersgd", cd::powersgd<float>(1, 1));
  {
    cd::dgc<float> d(0.1);
    std::vector<std::byte> w;
    d.encode(std::span<const float>(tensor(50, 2)), w);
    w.clear();
    d.state.save(w);
    put(root / "states", w);
    cd::powersgd<float> p(2);
    p.encode(std::span<const float>(tensor(50, 2)), w);
    w.clear();
    p.state.save(w);
    put(root / "states", w);
  }
  for (std::size_t n : {0u, 3u, 100u}) {
    cd::error_feedback<float> f;
    f.residual = tensor(n, 1);
    std::vector<std::byte> w;
    f.save(w);
    put(root / "states", w);
  }
  std::vector<std::byte> q, t, r;
  cd::qsgd_state{3, 4}.save(q);
  cd::terngrad_state{5, 6}.save(t);
  cd::randomk_state{7, 8}.save(r);
  put(root / "states", q);
  put(root / "states", t);
  put(root / "states", r);
  std::printf("seed corpus written under %s\n", root.string().c_str());
  return 0;
}
