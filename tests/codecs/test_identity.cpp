// codecs::identity: the reference codec.

#include <doctest/doctest.h>

#include "test_support.hpp"

using dssync_test::has_number;

namespace {
struct no_linear_flag {  // everything but `is_linear`
  static constexpr std::string_view name = "x";
  void encode(std::span<const float>, std::vector<std::byte>&) {}
  void decode(std::span<const std::byte>, std::span<float>) {}
  std::size_t max_encoded_bytes(std::size_t n) const { return n; }
};
}  // namespace

TEST_SUITE("codecs") {

TEST_CASE_TEMPLATE("identity round-trips any buffer and appends to the output", T, float, double, std::int32_t,
                   std::int64_t, std::uint8_t) {
  dssync::codecs::identity<T> c;
  std::mt19937 g(7);
  for (std::size_t n : {0u, 1u, 5u, 1000u}) {
    const auto in = dssync_test::random_values<T>(g, n, dssync_test::values::positive);
    std::vector<std::byte> wire{std::byte{0xAB}, std::byte{0xCD}};  // earlier content is kept
    c.encode(std::span<const T>(in), wire);
    REQUIRE(wire.size() == 2 + n * sizeof(T));
    CHECK(wire[0] == std::byte{0xAB});
    CHECK(wire[1] == std::byte{0xCD});
    CHECK(c.max_encoded_bytes(n) == n * sizeof(T));
    std::vector<T> out(n);
    c.decode(std::span<const std::byte>(wire).subspan(2), std::span<T>(out));
    CHECK(out == in);
  }
}

TEST_CASE("identity rejects a payload of the wrong length with both sizes in the message") {
  dssync::codecs::identity<float> c;
  std::vector<float> out(10, -1.0f);
  for (std::size_t bytes : {0u, 39u, 41u, 44u, 400u}) {
    CAPTURE(bytes);
    const std::vector<std::byte> wire(bytes, std::byte{1});
    try {
      c.decode(std::span<const std::byte>(wire), std::span<float>(out));
      FAIL("a payload of " << bytes << " bytes decoded into 40 bytes");
    } catch (const dssync::malformed_payload& e) {
      CHECK_MESSAGE(has_number(e.what(), static_cast<long long>(bytes)), e.what());
      CHECK_MESSAGE(has_number(e.what(), 40), e.what());
    }
    // Nothing was written on failure.
    CHECK(std::all_of(out.begin(), out.end(), [](float x) { return x == -1.0f; }));
  }
  // malformed_payload is a dssync::error.
  CHECK_THROWS_AS(c.decode(std::span<const std::byte>(), std::span<float>(out)), dssync::error);
  // An empty payload into an empty output is fine.
  CHECK_NOTHROW(c.decode(std::span<const std::byte>(), std::span<float>()));
}

TEST_CASE("the codec concept") {
  static_assert(dssync::concepts::codec<dssync::codecs::identity<float>, float>);
  static_assert(dssync::concepts::codec<dssync::codecs::identity<double>, double>);
  static_assert(dssync::concepts::codec<dssync::codecs::identity<std::int32_t>, std::int32_t>);
  static_assert(!dssync::concepts::codec<int, float>);
  static_assert(!dssync::concepts::codec<no_linear_flag, float>);
  CHECK(dssync::codecs::identity<float>::name == "identity");
  CHECK(dssync::codecs::identity<float>::is_linear);
}

}  // TEST_SUITE
