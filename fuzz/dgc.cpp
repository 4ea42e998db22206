// libFuzzer target: codecs::dgc (see harness.hpp for the contract it checks). Its payloads are topk's,
// so the encoder path is what this target adds: momentum, clipping, masking and warm-up on fuzzed
// elements and parameters.
#include <dssync/codecs/dgc.hpp>

#include "harness.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return dssync_fuzz::run<dssync::codecs::dgc>(data, size, [](auto& c, std::uint8_t p) {
    c.ratio = (1.0 + p) / 256.0, c.momentum = (p % 10) / 10.0, c.clip_norm = p % 3, c.warmup_steps = p % 4;
  });
}
