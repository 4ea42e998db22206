// libFuzzer target: codecs::qsgd's decoder and encoder (see harness.hpp for the contract it checks).
#include <dssync/codecs/qsgd.hpp>

#include "harness.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return dssync_fuzz::run<dssync::codecs::qsgd>(data, size, [](auto& c, std::uint8_t p) { c.levels = p == 255 ? 65536u : 1u + p, c.bucket = 1u + p % 37u; });
}
