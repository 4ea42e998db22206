// codecs: compression ratio on a real gradient and encode/decode throughput per core against memcpy of
// the same buffer, measured side by side in one run (issue 12's targets: onebit ~32x, topk 1 % >= 50x,
// indices included; qsgd s=16 >= 6x; onebit, fp16 and qsgd >= 0.25 of memcpy, topk via sampling >= 0.1).
//
// The real gradient: the MLP of examples/train_fmnist ({784, 128, 10}, 101,770 parameters) at its initial
// parameters, on a batch of 256 Fashion-MNIST training images (Debian's dataset-fashion-mnist; --data DIR).
// Throughput: a buffer of Gaussian floats (default 64 MiB), one thread, the median of --reps runs, each
// codec encoding into a reused buffer (no allocation after the first step) and decoding back.
//
//   build/bench/codecs                  # 64 MiB, 5 reps
//   build/bench/codecs --smoke          # 1 MiB, 1 rep (a ctest smoke run)

#include <zlib.h>  // the Fashion-MNIST reader gunzips (this include tags the bench for CMake)

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <iostream>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <dssync/codecs/dgc.hpp>
#include <dssync/codecs/half.hpp>
#include <dssync/codecs/onebit.hpp>
#include <dssync/codecs/powersgd.hpp>
#include <dssync/codecs/qsgd.hpp>
#include <dssync/codecs/randomk.hpp>
#include <dssync/codecs/terngrad.hpp>
#include <dssync/codecs/threshold.hpp>
#include <dssync/codecs/topk.hpp>

#include "../examples/train/fmnist.hpp"
#include "../examples/train/model.hpp"
#include "common.hpp"

namespace {

namespace cd = dssync::codecs;
using namespace dssync_bench;

double seconds_of(const auto& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// The MLP's gradient on a batch of Fashion-MNIST, or empty if the data is missing.
std::vector<float> real_gradient(const std::string& dir) {
  try {
    const auto d = train::load(dir, "train", 256);
    train::model m{{784, 128, 10}};
    const auto p = m.init(1);
    std::vector<float> g(p.size());
    m.gradient(p, d.images, d.labels, g);
    return g;
  } catch (const std::exception& e) {
    std::cerr << "codecs: no real gradient (" << e.what() << "); ratios below are on Gaussian data\n";
    return {};
  }
}

}  // namespace

int main(int argc, char** argv) {
  return guarded_main("codecs", [](int ac, char** av) {
    cli c("codecs", "compression ratio on a real gradient, encode/decode throughput against memcpy");
    c.flag("--smoke", "1 MiB, one rep")
        .option("--bytes", "B", "throughput buffer in bytes (default 64M)")
        .option("--reps", "K", "timed runs per codec, median reported (default 5)")
        .option("--data", "DIR", "Fashion-MNIST directory (default /usr/share/datasets/fashion-mnist)");
    if (!c.parse(ac, av)) return 0;
    const bool smoke = c.has("--smoke");
    const std::size_t bytes = c.get("--bytes") ? parse_bytes(*c.get("--bytes")) : (smoke ? std::size_t{1} << 20 : std::size_t{64} << 20);
    const int reps = c.get("--reps") ? static_cast<int>(parse_long(*c.get("--reps"), "--reps")) : (smoke ? 1 : 5);
    const std::string dir = c.get("--data").value_or("/usr/share/datasets/fashion-mnist");

    // --- compression ratio -------------------------------------------------------------------------
    auto grad = real_gradient(dir);
    const bool real = !grad.empty();
    if (!real) {
      std::mt19937 rng(1);
      std::normal_distribution<float> nd(0.0f, 1.0f);
      grad.resize(101770);
      for (auto& x : grad) x = nd(rng);
    }
    std::cout << "# compression ratio on " << (real ? "the MLP's Fashion-MNIST gradient" : "Gaussian data") << ", "
              << grad.size() << " float32 (" << human_bytes(static_cast<double>(grad.size() * 4)) << ")\n";
    table tr({{"codec", 14}, {"encoded", 12}, {"ratio", 8}, {"target", 8}});
    tr.print_header(std::cout);
    auto ratio_row = [&](const std::string& name, auto codec, const char* target) {
      std::vector<std::byte> w;
      codec.encode(std::span<const float>(grad), w);
      tr.row(std::cout, {name, human_bytes(static_cast<double>(w.size())),
                         fixed(static_cast<double>(grad.size() * 4) / static_cast<double>(w.size()), 2), target});
    };
    ratio_row("fp16", cd::fp16<float>{}, "2");
    ratio_row("bf16", cd::bf16<float>{}, "2");
    ratio_row("onebit", cd::onebit<float>{}, "~32");
    ratio_row("topk 1%", cd::topk<float>(0.01), ">=50");
    ratio_row("topk 0.1%", cd::topk<float>(0.001), "");
    ratio_row("qsgd s=16", cd::qsgd<float>(16), ">=6");
    ratio_row("randomk 1%", cd::randomk<float>(0.01), "");
    ratio_row("dgc 0.1%", cd::dgc<float>(0.001), "");  // a first step: topk's payload at 0.1 %
    ratio_row("powersgd r=4", cd::powersgd<float>(4), "");  // the flat gradient as a 320 x 319 matrix
    ratio_row("terngrad", cd::terngrad<float>{}, "~16");
    {
      // Strom's tau is absolute: 3 RMS of this gradient (the first step sends only the tails).
      double sq = 0;
      for (float g : grad) sq += static_cast<double>(g) * g;
      const auto rms = static_cast<float>(std::sqrt(sq / static_cast<double>(std::max<std::size_t>(grad.size(), 1))));
      ratio_row("threshold 3rms", cd::threshold<float>(3 * rms), "");
    }

    // --- throughput ---------------------------------------------------------------------------------
    const std::size_t n = bytes / sizeof(float);
    std::vector<float> x(n), y(n), back(n);
    {
      std::mt19937 rng(2);
      std::normal_distribution<float> nd(0.0f, 1.0f);
      for (auto& v : x) v = nd(rng);
    }
    std::vector<double> mc;
    for (int r = 0; r < reps + 1; ++r) mc.push_back(seconds_of([&] { std::memcpy(y.data(), x.data(), n * sizeof(float)); }));
    mc.erase(mc.begin());  // the first touches the pages
    const double memcpy_s = median(mc);
    const double memcpy_gbps = static_cast<double>(n * sizeof(float)) / memcpy_s / 1e9;
    std::cout << "\n# throughput, one thread, " << human_bytes(static_cast<double>(n * sizeof(float)))
              << " of float32, median of " << reps << "; memcpy " << fixed(memcpy_gbps, 2) << " GB/s\n";
    table tt({{"codec", 12}, {"size", 10}, {"enc_ms", 9}, {"enc_GBps", 9}, {"enc/memcpy", 11}, {"dec_ms", 9},
              {"dec_GBps", 9}, {"dec/memcpy", 11}, {"target", 7}, {"peak_rss", 10}});
    tt.print_header(std::cout);
    auto run = [&](const std::string& name, auto codec, const char* target) {
      std::vector<std::byte> w;
      w.reserve(codec.max_encoded_bytes(n));
      codec.encode(std::span<const float>(x), w);  // first step: the state and scratch are allocated
      std::vector<double> enc, dec;
      for (int r = 0; r < reps; ++r) {
        enc.push_back(seconds_of([&] {
          w.clear();
          codec.encode(std::span<const float>(x), w);
        }));
        dec.push_back(seconds_of([&] { codec.decode(w, std::span<float>(back)); }));
      }
      const double e = median(enc), d = median(dec), in = static_cast<double>(n * sizeof(float));
      tt.row(std::cout, {name, size_label(n * sizeof(float)), fixed(e * 1e3, 3), fixed(in / e / 1e9, 2),
                         fixed(memcpy_s / e, 3), fixed(d * 1e3, 3), fixed(in / d / 1e9, 2), fixed(memcpy_s / d, 3),
                         target, human_bytes(static_cast<double>(peak_rss_bytes()))});
    };
    run("fp16", cd::fp16<float>{}, ">=0.25");
    run("bf16", cd::bf16<float>{}, "");
    run("onebit", cd::onebit<float>{}, ">=0.25");
    run("topk 1%", cd::topk<float>(0.01), ">=0.1");
    run("qsgd s=16", cd::qsgd<float>(16), ">=0.25");
    run("randomk 1%", cd::randomk<float>(0.01), "");
    run("dgc 0.1%", cd::dgc<float>(0.001), "");
    run("powersgd r=4", cd::powersgd<float>(4), "");  // 4096 x 4096
    run("terngrad", cd::terngrad<float>{}, "");
    run("threshold 3", cd::threshold<float>(3.0f), "");  // N(0, 1): 0.27 % sent
    return 0;
  }, argc, argv);
}
