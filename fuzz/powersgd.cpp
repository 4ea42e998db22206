// libFuzzer target: codecs::powersgd's decoder and encoder (see harness.hpp for the contract it checks).
#include <dssync/codecs/powersgd.hpp>

#include "harness.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return dssync_fuzz::run<dssync::codecs::powersgd>(data, size, [](auto& c, std::uint8_t p) {
    c.rank = 1u + p % 8u, c.rows = p / 8u, c.state.seed = p;  // rows 0 (auto) .. 31; above n it throws below
  });
}
