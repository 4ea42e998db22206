// libFuzzer target: codecs::terngrad's decoder and encoder (see harness.hpp for the contract it checks).
#include <dssync/codecs/terngrad.hpp>

#include "harness.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return dssync_fuzz::run<dssync::codecs::terngrad>(data, size, [](auto& c, std::uint8_t p) { c.bucket = 1u + p % 64u, c.clip = p % 5; });
}
