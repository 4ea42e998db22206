// libFuzzer target: codecs::threshold's decoder and encoder (see harness.hpp for the contract it checks).
#include <dssync/codecs/threshold.hpp>

#include "harness.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return dssync_fuzz::run<dssync::codecs::threshold>(data, size, [](auto& c, std::uint8_t p) { c.tau = static_cast<decltype(c.tau)>((1.0 + p) / 64.0); });
}
