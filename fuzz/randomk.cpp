// libFuzzer target: codecs::randomk's decoder and encoder (see harness.hpp for the contract it checks).
#include <dssync/codecs/randomk.hpp>

#include "harness.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return dssync_fuzz::run<dssync::codecs::randomk>(data, size, [](auto& c, std::uint8_t p) { c.ratio = (1.0 + p) / 256.0, c.rng.seed = p; });
}
