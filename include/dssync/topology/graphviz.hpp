#pragma once
/// \file
/// GraphViz DOT input and output of topology networks: `read_dot`, `read_dot_file` and `write_dot`.
///
/// Reading uses `boost::read_graphviz`, which lives in Boost.Graph's compiled library: link Boost::graph
/// (libboost_graph). For that reason dssync/dssync.hpp does not include this header.

#include <boost/graph/adjacency_list.hpp>
#include <boost/graph/graphviz.hpp>
#include <boost/property_map/dynamic_property_map.hpp>

#include <cctype>
#include <charconv>
#include <concepts>
#include <cstddef>
#include <fstream>
#include <istream>
#include <iterator>
#include <ostream>
#include <set>
#include <sstream>
#include <system_error>
#include <string>
#include <utility>
#include <vector>

#include "dssync/core/error.hpp"
#include "dssync/core/topology.hpp"
#include "dssync/topology/graph.hpp"
#include "dssync/topology/network.hpp"
#include "dssync/topology/spec.hpp"

namespace dssync::detail {

struct dot_vertex {
  std::string id, kind, rank;
};
struct dot_edge {
  std::string bandwidth, latency, cls;
};

/// Reads `text` as a DOT graph of directedness `Directed` into a network (vertices in Boost's order).
/// \throws boost::undirected_graph_error / directed_graph_error if the directedness differs,
/// boost::bad_graphviz_syntax if malformed, invalid_argument for a bad attribute.
template <class Directed>
topology::network read_dot_as(const std::string& text) {
  using topology::node_kind;
  using dot_graph = boost::adjacency_list<boost::vecS, boost::vecS, Directed, dot_vertex, dot_edge>;
  dot_graph g;
  boost::dynamic_properties dp(boost::ignore_other_properties);
  dp.property("node_id", boost::get(&dot_vertex::id, g));
  dp.property("kind", boost::get(&dot_vertex::kind, g));
  dp.property("rank", boost::get(&dot_vertex::rank, g));
  dp.property("bandwidth", boost::get(&dot_edge::bandwidth, g));
  dp.property("latency", boost::get(&dot_edge::latency, g));
  dp.property("class", boost::get(&dot_edge::cls, g));
  boost::read_graphviz(text, g, dp, "node_id");

  topology::network n;
  for (auto v : boost::make_iterator_range(boost::vertices(g))) {
    const auto& x = g[v];
    const std::string where = "node '" + x.id + "'";
    std::string kind;
    for (char c : spec_trim(x.kind)) kind += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    const std::string rank_text(spec_trim(x.rank));
    if (kind.empty()) kind = rank_text.empty() ? "switch" : "worker";
    if (kind != "worker" && kind != "switch")
      throw invalid_argument(where + ": kind '" + x.kind + "' is neither 'worker' nor 'switch'");
    int rank = -1;
    if (kind == "worker") {
      if (rank_text.empty()) throw invalid_argument(where + ": a worker needs a rank attribute (rank=0, 1, ...)");
      const auto r = std::from_chars(rank_text.data(), rank_text.data() + rank_text.size(), rank);
      if (r.ec != std::errc{} || r.ptr != rank_text.data() + rank_text.size() || rank < 0)
        throw invalid_argument(where + ": rank '" + x.rank + "' is not a non-negative integer");
    } else if (!rank_text.empty()) {
      throw invalid_argument(where + ": a switch has no rank, but rank='" + x.rank + "' is given");
    }
    boost::add_vertex(topology::node{kind == "worker" ? node_kind::worker : node_kind::switch_, rank, x.id}, n);
  }
  const bool directed = boost::is_directed(g);
  for (auto e : boost::make_iterator_range(boost::edges(g))) {
    const auto a = boost::source(e, g), b = boost::target(e, g);
    const auto& x = g[e];
    const std::string where =
        "edge '" + g[a].id + (directed ? "' -> '" : "' -- '") + g[b].id + "'";
    topology::link l;
    if (!spec_trim(x.bandwidth).empty()) {
      const auto bw = parse_bandwidth_text(x.bandwidth, 1.0);
      if (!bw)
        throw invalid_argument(where + ": bandwidth '" + x.bandwidth +
                               "' is not a positive bandwidth (bytes/s, or with a unit as in 100Gbps, 100Gb/s, "
                               "12.5GB/s)");
      l.bandwidth = *bw;
    }
    if (!spec_trim(x.latency).empty()) {
      const auto lat = parse_duration_text(x.latency);
      if (!lat)
        throw invalid_argument(where + ": latency '" + x.latency +
                               "' is not a non-negative latency (seconds, or with a unit as in 1us, 5e-6, 0.5ms)");
      l.latency = *lat;
    }
    if (const auto c = spec_trim(x.cls); !c.empty()) {
      const auto k = link_class_named(c);
      if (!k)
        throw invalid_argument(where + ": class '" + x.cls +
                               "' is not a link class (nvlink, pcie, socket, network, unspecified)");
      l.cls = *k;
    }
    if (directed)
      boost::add_edge(a, b, l, n);
    else
      topology::add_cable(n, a, b, l);
  }
  return n;
}

inline std::string dot_quote(const std::string& s) { return "\"" + s + "\""; }

}  // namespace dssync::detail

namespace dssync::topology {

/// Reads a topology from GraphViz DOT text.
///
/// Node attributes: `kind` ("worker" or "switch"; default "worker" if `rank` is given, else "switch") and
/// `rank` (a worker's rank; ranks 0..W-1 each once). Edge attributes: `bandwidth` in bytes/s, or with a unit
/// ("100Gbps", "100Gb/s", "100Gbit/s", "12.5GB/s"; b = bits, B = bytes), `latency` in seconds, or with a
/// unit ("1us", "5e-6", "0.5ms", "100ns"), and `class` (nvlink, pcie, socket, network: the link class that
/// route hints and per-class tree packing read); missing ones take topology::link's defaults. Other attributes are
/// ignored. In a `digraph` each edge is one directed link; in a `graph` each edge is a full-duplex cable (two
/// links). Vertex labels are the DOT node ids. The result is validated (validate_network).
/// \throws invalid_argument naming the problem: malformed DOT (Boost's parser message, with the token),
/// the node or edge and attribute that is bad, or the failed network check.
[[nodiscard]] inline user_graph read_dot(std::istream& in, std::string label = "dot") {
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw invalid_argument("DOT: reading the input failed");
  network n;
  try {
    try {
      n = detail::read_dot_as<boost::directedS>(text);
    } catch (const boost::undirected_graph_error&) {
      n = detail::read_dot_as<boost::undirectedS>(text);
    }
  } catch (const boost::bad_graphviz_syntax& e) {
    throw invalid_argument(std::string("DOT: malformed input: ") + e.what());
  } catch (const boost::graph_exception& e) {
    throw invalid_argument(std::string("DOT: ") + e.what());
  } catch (const invalid_argument& e) {
    throw invalid_argument(std::string("DOT: ") + e.what());
  }
  try {
    return user_graph(n, std::move(label));
  } catch (const invalid_argument& e) {
    throw invalid_argument(std::string("DOT: ") + e.what());
  }
}

/// Reads a topology from the DOT file `path` (see read_dot); its label is "dot:<path>".
/// \throws invalid_argument naming the file if it cannot be opened, or as read_dot does.
[[nodiscard]] inline user_graph read_dot_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw invalid_argument("DOT file '" + path + "' cannot be opened");
  try {
    return read_dot(in, "dot:" + path);
  } catch (const invalid_argument& e) {
    throw invalid_argument("DOT file '" + path + "': " + e.what());
  }
}

/// Writes `g` as a DOT digraph that read_dot reads back to the same network: one edge per directed link,
/// with `kind`, `rank`, `bandwidth` (bytes/s), `latency` (s) and, where specified, `class` attributes. Node ids are the vertex labels
/// when they are unique and plain, else "v<index>".
inline void write_dot(std::ostream& out, const network& g, const std::string& graph_name = "dssync") {
  const std::size_t nv = boost::num_vertices(g);
  std::set<std::string> labels;
  bool plain = true;
  for (std::size_t v = 0; v < nv && plain; ++v) {
    const auto& l = g[v].label;
    plain = !l.empty() && l.find_first_of("\"\\\n") == std::string::npos && labels.insert(l).second;
  }
  std::vector<std::string> id(nv);
  for (std::size_t v = 0; v < nv; ++v) id[v] = detail::dot_quote(plain ? g[v].label : "v" + std::to_string(v));
  std::string name = graph_name;
  for (auto& c : name)
    if (c == '"' || c == '\\' || c == '\n') c = '_';
  out << "digraph " << detail::dot_quote(name) << " {\n";
  for (std::size_t v = 0; v < nv; ++v) {
    out << "  " << id[v];
    if (g[v].kind == node_kind::worker)
      out << " [kind=\"worker\", rank=" << g[v].rank << "];\n";
    else
      out << " [kind=\"switch\"];\n";
  }
  for (auto e : boost::make_iterator_range(boost::edges(g)))
    out << "  " << id[boost::source(e, g)] << " -> " << id[boost::target(e, g)] << " [bandwidth="
        << detail::dot_quote(detail::topology_decimal(g[e].bandwidth))
        << ", latency=" << detail::dot_quote(detail::topology_decimal(g[e].latency))
        << (g[e].cls == link_class::unspecified ? std::string() : ", class=" + detail::dot_quote(to_string(g[e].cls)))
        << "];\n";
  out << "}\n";
}

/// Writes topology `t`'s network (see write_dot above); the DOT graph is named after t.name().
template <class Topology>
  requires concepts::topology<Topology> && requires(const Topology& t) {
    { t.graph() } -> std::convertible_to<network>;
  }
void write_dot(std::ostream& out, const Topology& t) {
  write_dot(out, network(t.graph()), std::string(t.name()));
}

}  // namespace dssync::topology
