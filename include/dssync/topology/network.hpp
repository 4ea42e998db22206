#pragma once
/// \file
/// The Boost.Graph graph every topology model exposes: vertices are workers and switches, edges are
/// directed links with bandwidth (bytes/s) and latency (s). A full-duplex cable is two edges.

#include <boost/graph/adjacency_list.hpp>
#include <string>

namespace dssync::topology {

/// What a vertex is.
enum class node_kind : unsigned char { worker, switch_ };

/// Vertex properties.
struct node {
  node_kind kind = node_kind::worker;
  int rank = -1;  ///< worker rank, -1 for switches
  std::string label;
};

/// Edge (directed link) properties.
struct link {
  double bandwidth = 12.5e9;  ///< bytes per second (default 100 Gbit/s)
  double latency = 1e-6;      ///< seconds
};

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

}  // namespace dssync::topology
