#pragma once
/// \file
/// The Boost.Graph graph every topology model exposes: vertices are workers and switches, edges are
/// directed links with bandwidth (bytes/s) and latency (s). A full-duplex cable is two edges.

#include <boost/graph/adjacency_list.hpp>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <string>
#include <system_error>
#include <utility>

#include "dssync/core/error.hpp"
#include "dssync/core/link_class.hpp"

namespace dssync::topology {

/// What a vertex is.
enum class node_kind : unsigned char { worker, switch_ };

/// Vertex properties.
struct node {
  node_kind kind = node_kind::worker;
  int rank = -1;  ///< worker rank, -1 for switches
  std::string label;
};

using dssync::allows;
using dssync::classes;
using dssync::link_class;
using dssync::link_classes;
using dssync::to_string_classes;

/// Edge (directed link) properties.
struct link {
  double bandwidth = 12.5e9;  ///< bytes per second (default 100 Gbit/s)
  double latency = 1e-6;      ///< seconds
  link_class cls = link_class::unspecified;
  friend bool operator==(const link&, const link&) = default;
};

/// `l` as a link of class `c`.
[[nodiscard]] constexpr link with_class(link l, link_class c) noexcept {
  l.cls = c;
  return l;
}

/// The network graph type.
using network = boost::adjacency_list<boost::vecS, boost::vecS, boost::bidirectionalS, node, link>;

/// Adds a full-duplex cable between `a` and `b` (two directed edges).
inline void add_cable(network& g, network::vertex_descriptor a, network::vertex_descriptor b, const link& l) {
  boost::add_edge(a, b, l, g);
  boost::add_edge(b, a, l, g);
}

/// Adds `n` worker vertices with ranks 0..n-1 (vertex i is rank i).
inline void add_workers(network& g, int n) {
  for (int r = 0; r < n; ++r) {
    std::string label = std::to_string(r);
    label.insert(label.begin(), 'w');
    boost::add_vertex(node{node_kind::worker, r, std::move(label)}, g);
  }
}

/// Adds a switch vertex labelled `label` and returns it.
inline network::vertex_descriptor add_switch(network& g, std::string label) {
  return boost::add_vertex(node{node_kind::switch_, -1, std::move(label)}, g);
}

}  // namespace dssync::topology

namespace dssync::detail {

/// `x` in its shortest round-trip decimal form ("100", "12.5", "1e-06").
inline std::string topology_decimal(double x) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, x);
  return r.ec == std::errc{} ? std::string(buf, r.ptr) : std::to_string(x);
}

/// A bandwidth in bytes/s as Gbit/s text: 12.5e9 -> "100Gb/s".
inline std::string link_bandwidth_text(double bytes_per_second) {
  // Round to 9 significant digits so that 19.2e9 prints as 153.6, not 153.60000000000002.
  const double gbit = bytes_per_second * 8 / 1e9;
  double rounded = gbit;
  if (std::isfinite(gbit) && gbit != 0) {
    const double scale = std::pow(10.0, 8 - std::floor(std::log10(std::fabs(gbit))));
    rounded = std::round(gbit * scale) / scale;
  }
  return topology_decimal(rounded) + "Gb/s";
}

/// A latency in seconds in the largest unit that keeps it at least 1: 1e-6 -> "1us", 2.5e-3 -> "2.5ms".
inline std::string link_latency_text(double seconds) {
  const double a = std::fabs(seconds);
  const char* unit = "s";
  double v = seconds;
  if (a == 0) return "0s";
  if (a < 1e-6) {
    unit = "ns";
    v = seconds * 1e9;
  } else if (a < 1e-3) {
    unit = "us";
    v = seconds * 1e6;
  } else if (a < 1) {
    unit = "ms";
    v = seconds * 1e3;
  }
  const double scale = std::pow(10.0, 8 - std::floor(std::log10(std::fabs(v))));
  return topology_decimal(std::round(v * scale) / scale) + unit;
}

/// A link as text for topology names: "100Gb/s", or "100Gb/s@5us" when the latency is not the default.
inline std::string link_text(const topology::link& l) {
  std::string s = link_bandwidth_text(l.bandwidth);
  if (l.latency != topology::link{}.latency) s += "@" + link_latency_text(l.latency);
  return s;
}

/// The shared `validate(world)` of single-size topologies.
/// \throws invalid_argument naming both counts unless `world == workers`.
inline void check_topology_world(const std::string& name, int workers, int world) {
  if (world != workers)
    throw invalid_argument("topology " + name + " has " + std::to_string(workers) + " workers but the world has " +
                           std::to_string(world) + " ranks");
}

}  // namespace dssync::detail
