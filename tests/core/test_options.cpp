// Options and the DSSYNC_* environment parsing helpers.

#include <doctest/doctest.h>

#include "test_support.hpp"

using dssync::log_level;
using dssync::detail::parse_level;
using dssync::detail::parse_size;
using dssync_test::contains;

TEST_SUITE("options") {

TEST_CASE("parse_size accepts plain numbers and K, M, G suffixes in either case") {
  CHECK(parse_size("X", "0") == 0);
  CHECK(parse_size("X", "1") == 1);
  CHECK(parse_size("X", "123456") == 123456);
  CHECK(parse_size("X", "007") == 7);
  CHECK(parse_size("X", "4K") == 4096);
  CHECK(parse_size("X", "4k") == 4096);
  CHECK(parse_size("X", "1M") == (std::size_t{1} << 20));
  CHECK(parse_size("X", "3m") == 3 * (std::size_t{1} << 20));
  CHECK(parse_size("X", "2G") == (std::size_t{2} << 30));
  CHECK(parse_size("X", "1g") == (std::size_t{1} << 30));
  CHECK(parse_size("X", "0K") == 0);
  CHECK(parse_size("X", "18446744073709551615") == std::numeric_limits<std::size_t>::max());
}

TEST_CASE("parse_size rejects what is not a size, naming the variable and the value") {
  for (std::string bad : {"", "K", "m", "12x", "-1", "+1", " 1", "1 ", "1.5M", "0x10", "1KB", "1T", "abc", "1e6"}) {
    CAPTURE(bad);
    try {
      const auto v = parse_size("DSSYNC_SEGMENT_BYTES", bad);
      FAIL("accepted \"" << bad << "\" as " << v);
    } catch (const dssync::invalid_argument& e) {
      CHECK_MESSAGE(contains(e.what(), "DSSYNC_SEGMENT_BYTES"), e.what());
    }
  }
  try {
    (void)parse_size("DSSYNC_SEGMENT_BYTES", "12x");
  } catch (const dssync::invalid_argument& e) {
    CHECK_MESSAGE(contains(e.what(), "12x"), e.what());
  }
}

TEST_CASE("parse_size rejects sizes that do not fit in size_t instead of wrapping around") {
  for (std::string big : {"18446744073709551616", "99999999999999999999999", "17179869184G", "18014398509481984M"}) {
    CAPTURE(big);
    CHECK_THROWS_AS((void)parse_size("DSSYNC_SEGMENT_BYTES", big), dssync::invalid_argument);
  }
}

TEST_CASE("parse_level accepts the documented levels and rejects others") {
  for (const char* v : {"WARN", "warn", "1"}) CHECK(parse_level(v) == log_level::warn);
  for (const char* v : {"INFO", "info", "2"}) CHECK(parse_level(v) == log_level::info);
  for (const char* v : {"TRACE", "trace", "3"}) CHECK(parse_level(v) == log_level::trace);
  for (const char* v : {"", "0", "OFF", "off", "NONE"}) CHECK(parse_level(v) == log_level::off);
  for (std::string bad : {"4", "DEBUG", "verbose", "yes", "W", " WARN", "-1"}) {
    CAPTURE(bad);
    try {
      (void)parse_level(bad);
      FAIL("accepted level \"" << bad << "\"");
    } catch (const dssync::invalid_argument& e) {
      CHECK_MESSAGE(contains(e.what(), "DSSYNC_DEBUG"), e.what());
      CHECK_MESSAGE(contains(e.what(), bad), e.what());
    }
  }
}

TEST_CASE("options: documented defaults and fluent setters") {
  const dssync::options& env = dssync::options::from_env();
  CHECK(&env == &dssync::options::from_env());  // read once
  dssync::options o;
  CHECK(o.window >= 1);  // tuning values: only their sanity is promised
  CHECK(o.recv_depth >= 1);
  if (std::getenv("DSSYNC_TIMEOUT") == nullptr) CHECK(o.timeout == std::chrono::seconds(120));
  if (std::getenv("DSSYNC_SEGMENT_BYTES") == nullptr) CHECK(o.segment_bytes == (std::size_t{1} << 20));
  if (std::getenv("DSSYNC_CHECK") == nullptr) CHECK(o.check_agreement);
  if (std::getenv("DSSYNC_VERIFY") == nullptr) CHECK_FALSE(o.verify);
  if (std::getenv("DSSYNC_DEBUG") == nullptr) CHECK(o.debug == log_level::off);
  // Default construction copies the environment's options.
  CHECK(o.timeout == env.timeout);
  CHECK(o.segment_bytes == env.segment_bytes);

  o.with_timeout(std::chrono::milliseconds(1500)).with_segment_bytes(4096);
  CHECK(o.timeout == std::chrono::milliseconds(1500));
  CHECK(o.segment_bytes == 4096);
  const auto t = dssync::options{}.with_timeout(std::chrono::seconds(2)).with_segment_bytes(64);
  CHECK(t.timeout == std::chrono::seconds(2));
  CHECK(t.segment_bytes == 64);
  // The fluent setters on a temporary return an rvalue (no dangling reference to the temporary).
  static_assert(std::is_same_v<decltype(dssync::options{}.with_timeout(std::chrono::seconds(1))), dssync::options&&>);
  static_assert(std::is_same_v<decltype(o.with_timeout(std::chrono::seconds(1))), dssync::options&>);
}

}  // TEST_SUITE
