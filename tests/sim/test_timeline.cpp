// The Chrome trace-event writer: the JSON parses (nlohmann/json), has one process per rank and one
// thread per channel, one complete event per step with consistent times, paired async message events,
// and escapes any label correctly.

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <dssync/algorithms/ring.hpp>
#include <dssync/sim/simulator.hpp>
#include <dssync/sim/timeline.hpp>
#include <dssync/topology/ring.hpp>

#include <map>
#include <set>
#include <sstream>
#include <string>

#include "test_support.hpp"

using dssync::sim::timeline;
using json = nlohmann::json;

TEST_SUITE("sim") {

TEST_CASE("timeline: a simulated ring writes valid Chrome trace JSON, one track per rank and channel") {
  const int n = 4;
  const auto s = dssync::algorithms::ring::build(n, 4 * 1024);
  dssync::sim::sim_options o;
  o.record_timeline = true;
  o.name = "ring on ring(4)";
  const auto res = dssync::sim::simulate(s, dssync::topology::ring(n), o);
  std::ostringstream os;
  write_chrome_trace(os, res.trace);
  const json j = json::parse(os.str());
  REQUIRE(j.is_object());
  CHECK(j["displayTimeUnit"] == "ns");
  CHECK(j["otherData"]["name"] == "ring on ring(4)");
  const auto& ev = j["traceEvents"];
  REQUIRE(ev.is_array());
  std::map<int, std::string> process_names;
  std::set<std::pair<int, int>> threads;
  std::size_t complete = 0, begins = 0, ends = 0;
  std::map<std::string, double> async_begin;
  for (const auto& e : ev) {
    REQUIRE(e.contains("ph"));
    REQUIRE(e.contains("pid"));
    const std::string ph = e["ph"];
    if (ph == "M") {
      if (e["name"] == "process_name") process_names[e["pid"].get<int>()] = e["args"]["name"];
      if (e["name"] == "thread_name") {
        threads.insert({e["pid"].get<int>(), e["tid"].get<int>()});
        CHECK(e["args"]["name"] == "channel " + std::to_string(e["tid"].get<int>()));
      }
    } else if (ph == "X") {
      ++complete;
      CHECK(e["ts"].is_number());
      CHECK(e["dur"].get<double>() >= 0);
      CHECK(e["ts"].get<double>() >= 0);
      CHECK(e["ts"].get<double>() + e["dur"].get<double>() <= res.finish * 1e6 * (1 + 1e-12));
      const std::string name = e["name"];
      const int peer = e["args"]["peer"];
      const int pid = e["pid"];
      if (name.rfind("send ", 0) == 0) {
        CHECK(peer == (pid + 1) % n);
        CHECK(dssync_test::contains(name, " -> " + std::to_string(peer)));
        CHECK(e["dur"].get<double>() == 0);  // sends do not block
      } else {
        CHECK(peer == (pid + n - 1) % n);
        CHECK(dssync_test::contains(name, " <- " + std::to_string(peer)));
      }
      CHECK(e["args"]["bytes"].get<double>() == doctest::Approx(4 * 1024));
    } else if (ph == "b") {
      ++begins;
      async_begin[e["id"].get<std::string>()] = e["ts"];
      CHECK(e["cat"] == "message");
    } else if (ph == "e") {
      ++ends;
      const std::string id = e["id"];
      REQUIRE(async_begin.count(id) == 1);
      CHECK(e["ts"].get<double>() >= async_begin[id]);
    } else {
      FAIL("unexpected phase " << ph);
    }
  }
  REQUIRE(process_names.size() == static_cast<std::size_t>(n));
  for (int r = 0; r < n; ++r) CHECK(process_names[r] == "rank " + std::to_string(r));
  CHECK(threads.size() == static_cast<std::size_t>(n));
  CHECK(complete == s.step_count());
  CHECK(begins == res.flows);
  CHECK(ends == res.flows);
  // The same text through the string helper.
  CHECK(dssync::sim::to_chrome_trace(res.trace) == os.str());
}

TEST_CASE("timeline: names are escaped so that any label stays valid JSON") {
  timeline t;
  t.name = std::string("quote \" backslash \\ newline \n tab \t bell \x07 del \x7f é 日本 bad \xff\xfe end");
  t.name += '\0';
  t.name += "after-nul";
  t.world_size = 1;
  t.channels = {1};
  t.slices.push_back({0, 0, 0, dssync::step_kind::send, 0, {0, 1}, 4, 0, 1e-6});
  const json j = json::parse(dssync::sim::to_chrome_trace(t));
  const std::string name = j["otherData"]["name"];
  CHECK(dssync_test::contains(name, "quote \" backslash \\ newline \n tab \t bell \x07 del \x7f é 日本 bad "));
  CHECK(dssync_test::contains(name, "\xef\xbf\xbd\xef\xbf\xbd end"));  // two U+FFFD for the two bad bytes
  CHECK(name.find("after-nul") != std::string::npos);
  CHECK(name.size() > 10);
}

TEST_CASE("timeline: an empty timeline is still a valid trace") {
  timeline t;
  const json j = json::parse(dssync::sim::to_chrome_trace(t));
  CHECK(j["traceEvents"].empty());
  CHECK(t.empty());
}

}  // TEST_SUITE
