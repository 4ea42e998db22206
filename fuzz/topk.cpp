// libFuzzer target: codecs::topk's decoder and encoder (see harness.hpp for the contract it checks).
#include <dssync/codecs/topk.hpp>

#include "harness.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return dssync_fuzz::run<dssync::codecs::topk>(data, size, [](auto& c, std::uint8_t p) { c.ratio = (1.0 + p) / 256.0; });
}
