// Scenario scripts: the text form (units, defaults, round trip), parse errors that name the statement,
// validation against a network, and the player's effect on a flow engine.

#include <doctest/doctest.h>

#include <dssync/sim/scenario.hpp>
#include <dssync/topology/network.hpp>

#include <string>

#include "test_support.hpp"

using dssync::sim::action_kind;
using dssync::sim::flow_engine;
using dssync::sim::router;
using dssync::sim::scenario;
using dssync::sim::scenario_player;
using dssync_test::contains;
namespace topo = dssync::topology;

namespace {

topo::network star(int n) {
  topo::network g;
  topo::add_workers(g, n);
  const auto sw = topo::add_switch(g, "sw");
  for (int r = 0; r < n; ++r) topo::add_cable(g, static_cast<std::size_t>(r), sw, {12.5e9, 1e-6});
  return g;
}

std::string parse_error(const std::string& text) {
  try {
    (void)scenario::parse(text);
  } catch (const dssync::invalid_argument& e) {
    return e.what();
  }
  return "";
}

std::string player_error(const scenario& s, int n = 4) {
  router r(star(n));
  flow_engine e(r);
  try {
    scenario_player p(s, r, e);
  } catch (const dssync::invalid_argument& x) {
    return x.what();
  }
  return "";
}

}  // namespace

TEST_SUITE("sim") {

TEST_CASE("scenario: the text form") {
  const auto s = scenario::parse(
      "at 0.5 background 0->7 rate 5Gbps id bg1; at 1.0 stop bg1; at 0 nic 3 cap 10Gbps\n"
      "# a comment line\n"
      "at 2ms nic 3 clear   # trailing comment\n"
      "at 20us background w2 -> w9\n"
      "at 1 link tor0<->spine bw 25Gb/s; at 3s link 4->5 bw 1.5GB/s;\n"
      "at 100ns background 1->2 id x rate unlimited; at 4 background 3->1 rate 2GiB/s");
  REQUIRE(s.actions.size() == 9);
  const auto& a = s.actions;
  CHECK(a[0].kind == action_kind::background_start);
  CHECK(a[0].time == 0.5);
  CHECK(a[0].src == 0);
  CHECK(a[0].dst == 7);
  CHECK(a[0].rate == doctest::Approx(5e9 / 8));
  CHECK(a[0].id == "bg1");
  CHECK(a[1].kind == action_kind::background_stop);
  CHECK(a[1].id == "bg1");
  CHECK(a[2].kind == action_kind::nic_cap);
  CHECK(a[2].src == 3);
  CHECK(a[2].rate == doctest::Approx(1.25e9));
  CHECK(a[3].kind == action_kind::nic_clear);
  CHECK(a[3].time == doctest::Approx(2e-3));
  CHECK(a[4].src == 2);
  CHECK(a[4].dst == 9);
  CHECK(a[4].time == doctest::Approx(20e-6));
  CHECK(a[4].rate == flow_engine::unlimited);
  CHECK(a[4].id == "bg2");  // unnamed: bg<n> by its position among background statements
  CHECK(a[5].kind == action_kind::link_bandwidth);
  CHECK(a[5].from == "tor0");
  CHECK(a[5].to == "spine");
  CHECK(a[5].both_directions);
  CHECK(a[5].rate == doctest::Approx(25e9 / 8));
  CHECK_FALSE(a[6].both_directions);
  CHECK(a[6].rate == doctest::Approx(1.5e9));
  CHECK(a[7].time == doctest::Approx(100e-9));
  CHECK(a[7].id == "x");
  CHECK(a[7].rate == flow_engine::unlimited);
  CHECK(a[8].rate == doctest::Approx(2.0 * 1024 * 1024 * 1024));
  // Round trip through to_string.
  const auto back = scenario::parse(to_string(s));
  REQUIRE(back.actions.size() == s.actions.size());
  for (std::size_t i = 0; i < s.actions.size(); ++i) {
    CHECK(back.actions[i].time == s.actions[i].time);
    CHECK(back.actions[i].kind == s.actions[i].kind);
    CHECK(back.actions[i].rate == s.actions[i].rate);
    CHECK(back.actions[i].id == s.actions[i].id);
    CHECK(back.actions[i].from == s.actions[i].from);
  }
  CHECK(scenario::parse("").empty());
  CHECK(scenario::parse(" ; \n # nothing\n;").empty());
}

TEST_CASE("scenario: parse errors name the statement and what was expected") {
  struct bad {
    const char* text;
    const char* expect;
  };
  const bad cases[] = {
      {"at x stop bg1", "expected a time"},
      {"stop bg1", "expected 'at'"},
      {"at 1", "expected an action"},
      {"at 1 explode", "got 'explode'"},
      {"at 1 background 0-7", "expected a rank"},
      {"at 1 background 0->", "expected a destination rank at the end"},
      {"at 1 background 0->x7", "expected a rank"},
      {"at 1 background 0->7 rate fast", "expected a rate"},
      {"at 1 background 0->7 rate 5Gbpx", "got '5Gbpx'"},
      {"at 1 background 0->7 speed 5Gbps", "expected 'rate' or 'id'"},
      {"at 1 background 0->7 id a id b", "'id' given twice"},
      {"at 1 stop", "expected the id of a background flow"},
      {"at 1 stop a b", "unexpected 'b'"},
      {"at 1 nic 3", "expected 'cap' or 'clear'"},
      {"at 1 nic 3 limit 5Gbps", "expected 'cap' or 'clear'"},
      {"at 1 nic 3 cap unlimited", "expected a rate"},
      {"at 1 link a b bw 1Gbps", "expected '->' or '<->'"},
      {"at 1 link a->b 1Gbps", "expected 'bw'"},
      {"at -1 stop a", "negative"},
      {"at 1ks stop a", "expected a time"},
      {"at 1 nic -3 clear", "expected a rank"},
  };
  for (const auto& c : cases) {
    const std::string e = parse_error(c.text);
    INFO(c.text << " -> " << e);
    CHECK(contains(e, c.expect));
    CHECK(contains(e, "statement 1"));
    CHECK(contains(e, c.text));
  }
  const std::string e = parse_error("at 0 stop a; at 1 nic 2 clear\nat 2 frobnicate");
  CHECK(contains(e, "statement 3"));
  CHECK(contains(e, "frobnicate"));
}

TEST_CASE("scenario: validation against the network") {
  CHECK(player_error(scenario{}.background(0, 0, 9, "a")).find("rank 9 does not exist") != std::string::npos);
  CHECK(contains(player_error(scenario{}.background(0, 1, 1, "a")), "two different ranks"));
  CHECK(contains(player_error(scenario{}.stop(1, "ghost")), "no background flow ghost is running"));
  CHECK(contains(player_error(scenario{}.background(0, 0, 1, "a").background(1, 0, 2, "a")), "already running"));
  CHECK(player_error(scenario{}.background(0, 0, 1, "a").stop(1, "a").background(2, 0, 2, "a")).empty());
  // Time order matters, not statement order.
  CHECK(contains(player_error(scenario{}.stop(1, "a").background(2, 0, 1, "a")), "no background flow a"));
  CHECK(contains(player_error(scenario{}.nic_cap(0, 7, 1e9)), "rank 7 does not exist"));
  CHECK(contains(player_error(scenario{}.link_bandwidth(0, "w0", "w1", 1e9)), "there is no link w0->w1"));
  CHECK(contains(player_error(scenario{}.link_bandwidth(0, "core", "sw", 1e9)), "vertex core does not exist"));
  CHECK(player_error(scenario{}.link_bandwidth(0, "w0", "sw", 1e9, true)).empty());
  CHECK(player_error(scenario{}.link_bandwidth(0, "0", "4", 1e9)).empty());
  CHECK(contains(player_error(scenario{}.link_bandwidth(0, "0", "4", -1)), "bandwidth"));
}

TEST_CASE("scenario: the player applies actions to the engine at their times") {
  router r(star(3));
  flow_engine e(r);
  const auto up0 = r.edges_between(0, 3).at(0), down0 = r.edges_between(3, 0).at(0);
  const auto up1 = r.edges_between(1, 3).at(0);
  scenario_player p(scenario::parse("at 1 nic 0 cap 1GB/s; at 2 link w0->sw bw 0.5GB/s; at 3 nic 0 clear;"
                                    "at 0.5 background 1->2 rate 1GB/s id b; at 4 stop b"),
                    r, e);
  CHECK(p.next_time() == 0.5);
  e.advance_to(0.5);
  p.apply_until(0.5);
  CHECK(p.running() == 1);
  const auto bg = p.flow_of("b");
  REQUIRE(bg.has_value());
  CHECK(e.rate(*bg) == doctest::Approx(1e9));
  CHECK((e.tag(*bg) & scenario_player::background_tag) != 0);
  e.advance_to(1);
  p.apply_until(1);
  CHECK(e.capacity(up0) == 1e9);
  CHECK(e.capacity(down0) == 1e9);
  CHECK(e.capacity(up1) == 12.5e9);
  e.advance_to(2);
  p.apply_until(2);
  CHECK(e.capacity(up0) == 0.5e9);  // min(new bandwidth, NIC cap)
  CHECK(e.capacity(down0) == 1e9);
  e.advance_to(3);
  p.apply_until(3);
  CHECK(e.capacity(up0) == 0.5e9);  // the link's own bandwidth stays changed
  CHECK(e.capacity(down0) == 12.5e9);
  e.advance_to(4);
  p.apply_until(4);
  CHECK(p.running() == 0);
  CHECK_FALSE(e.active(*bg));
  CHECK_FALSE(p.pending());
  CHECK(p.next_time() == flow_engine::unlimited);
  // The background flow carried 1 GB/s for 3.5 s over its two links.
  CHECK(e.counters(up1).bytes == doctest::Approx(3.5e9));
}

}  // TEST_SUITE
