// Chunking: balanced, contiguous partitions of any length over any number of parts.

#include <doctest/doctest.h>

#include "test_support.hpp"

using dssync::range;

TEST_SUITE("chunking") {

TEST_CASE("range basics: end, empty, overlaps, equality, printing") {
  const range a{2, 3};
  CHECK(a.end() == 5);
  CHECK_FALSE(a.empty());
  CHECK(range{7, 0}.empty());
  CHECK(a.overlaps(range{4, 10}));
  CHECK(a.overlaps(range{0, 3}));
  CHECK_FALSE(a.overlaps(range{5, 1}));   // adjacent, not overlapping
  CHECK_FALSE(a.overlaps(range{0, 2}));
  CHECK_FALSE(a.overlaps(range{3, 0}));   // empty ranges overlap nothing
  CHECK_FALSE(range{3, 0}.overlaps(a));
  CHECK(a == range{2, 3});
  CHECK(a != range{2, 4});
  std::ostringstream os;
  os << a;
  CHECK(os.str() == "[2,5)");
  static_assert(range{1, 2}.end() == 3, "range is constexpr");
}

TEST_CASE("partition: every length 0..1000 over 1..17 parts is contiguous, exact and balanced") {
  std::size_t checked = 0;
  for (std::size_t count = 0; count <= 1000; ++count)
    for (std::size_t parts = 1; parts <= 17; ++parts) {
      const auto p = dssync::partition(count, parts);
      REQUIRE_MESSAGE(p.size() == parts, "count " << count << " parts " << parts);
      std::size_t at = 0, lo = count, hi = 0;
      for (std::size_t i = 0; i < parts; ++i) {
        REQUIRE_MESSAGE(p[i].offset == at, "count " << count << " parts " << parts << " part " << i << " = " << p[i]
                                                    << " does not start where part " << i - 1 << " ended (" << at << ")");
        REQUIRE_MESSAGE(p[i] == dssync::chunk(count, parts, i), "partition and chunk disagree at part " << i);
        at = p[i].end();
        lo = std::min(lo, p[i].length);
        hi = std::max(hi, p[i].length);
        // The first count % parts parts are the longer ones.
        REQUIRE(p[i].length == count / parts + (i < count % parts ? 1 : 0));
      }
      REQUIRE_MESSAGE(at == count, "count " << count << " parts " << parts << " covers " << at);
      REQUIRE_MESSAGE(hi - lo <= 1, "count " << count << " parts " << parts << " lengths " << lo << ".." << hi);
      ++checked;
    }
  CHECK(checked == 1001 * 17);
}

TEST_CASE("chunk rejects zero parts and out-of-range parts") {
  CHECK_THROWS_AS((void)dssync::chunk(10, 0, 0), dssync::invalid_argument);
  CHECK_THROWS_AS((void)dssync::chunk(0, 0, 0), dssync::invalid_argument);
  CHECK_THROWS_AS((void)dssync::chunk(10, 3, 3), dssync::invalid_argument);
  CHECK_THROWS_AS((void)dssync::subchunk(range{0, 10}, 0, 0), dssync::invalid_argument);
  try {
    (void)dssync::chunk(42, 0, 0);
    FAIL("chunk(42, 0, 0) did not throw");
  } catch (const dssync::invalid_argument& e) {
    CHECK_MESSAGE(dssync_test::has_number(e.what(), 42), e.what());
    CHECK_MESSAGE(dssync_test::has_number(e.what(), 0), e.what());
  }
  try {
    (void)dssync::chunk(10, 4, 7);
    FAIL("chunk(10, 4, 7) did not throw");
  } catch (const dssync::invalid_argument& e) {
    CHECK_MESSAGE(dssync_test::has_number(e.what(), 7), e.what());
    CHECK_MESSAGE(dssync_test::has_number(e.what(), 4), e.what());
  }
  // Zero elements over three parts is fine: three empty parts.
  CHECK(dssync::partition(0, 3) == std::vector<range>{{0, 0}, {0, 0}, {0, 0}});
}

TEST_CASE("partition rejects zero parts like chunk does") {
  // partition promises the parts of `chunk`, so zero parts is an error there too, not an empty vector
  // (an empty result silently drops all `count` elements).
  CHECK_THROWS_AS((void)dssync::partition(10, 0), dssync::invalid_argument);
  CHECK_THROWS_AS((void)dssync::partition(0, 0), dssync::invalid_argument);
}

TEST_CASE("subchunk composes partitions: pieces of a chunk are contiguous and cover it") {
  for (std::size_t count : {0u, 1u, 7u, 100u, 997u})
    for (std::size_t outer = 1; outer <= 9; ++outer)
      for (std::size_t inner = 1; inner <= 7; ++inner) {
        std::size_t at = 0;
        for (std::size_t i = 0; i < outer; ++i) {
          const range c = dssync::chunk(count, outer, i);
          std::size_t lo = count, hi = 0;
          for (std::size_t j = 0; j < inner; ++j) {
            const range s = dssync::subchunk(c, inner, j);
            REQUIRE_MESSAGE(s.offset == at, "count " << count << " outer " << outer << " inner " << inner);
            at = s.end();
            lo = std::min(lo, s.length);
            hi = std::max(hi, s.length);
          }
          REQUIRE(at == c.end());
          REQUIRE(hi - lo <= 1);
        }
        REQUIRE(at == count);
      }
}

TEST_CASE("segments: at most `segment` elements, contiguous, the last may be shorter") {
  CHECK(dssync::segments(range{5, 0}, 4).empty());
  CHECK(dssync::segments(range{5, 10}, 4) == std::vector<range>{{5, 4}, {9, 4}, {13, 2}});
  CHECK(dssync::segments(range{0, 8}, 4) == std::vector<range>{{0, 4}, {4, 4}});
  CHECK(dssync::segments(range{3, 3}, 100) == std::vector<range>{{3, 3}});
  for (std::size_t len = 0; len <= 300; ++len)
    for (std::size_t seg = 1; seg <= 33; ++seg) {
      const range r{17, len};
      const auto s = dssync::segments(r, seg);
      REQUIRE(s.size() == (len + seg - 1) / seg);
      std::size_t at = r.offset;
      for (std::size_t i = 0; i < s.size(); ++i) {
        REQUIRE(s[i].offset == at);
        REQUIRE(s[i].length >= 1);
        REQUIRE(s[i].length <= seg);
        if (i + 1 < s.size()) REQUIRE(s[i].length == seg);
        at = s[i].end();
      }
      REQUIRE(at == r.end());
    }
  CHECK_THROWS_AS((void)dssync::segments(range{0, 10}, 0), dssync::invalid_argument);
  CHECK_THROWS_AS((void)dssync::segments(range{0, 0}, 0), dssync::invalid_argument);
}

}  // TEST_SUITE
