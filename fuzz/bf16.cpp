// libFuzzer target: codecs::bf16's decoder and encoder (see harness.hpp for the contract it checks).
#include <dssync/codecs/half.hpp>

#include "harness.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return dssync_fuzz::run<dssync::codecs::bf16>(data, size, [](auto& c, std::uint8_t p) { (void)c, (void)p; });
}
