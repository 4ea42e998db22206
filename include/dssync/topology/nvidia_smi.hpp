#pragma once
/// \file
/// `topology::from_nvidia_smi`: a server's GPU topology from the matrix that `nvidia-smi topo -m` prints,
/// saved as text, as a `user_graph` that tree packing (and every policy) can use on the real allocation.
///
/// The matrix gives, for every GPU pair, the strongest path between them:
///   - `NV<k>`: k NVLink lanes (each `links.nvlink`);
///   - `PIX`: one PCIe switch; `PXB`: several PCIe switches, no host bridge;
///   - `PHB`: through the CPU's PCIe host bridge; `NODE`: across host bridges of one NUMA node;
///   - `SYS` (older drivers: `SOC`): across the CPU sockets (QPI/UPI).
/// The model built from it: every GPU hangs off a PCIe switch ("pcie<k>": GPUs related by PIX or PXB share
/// one, the others have their own), every switch off a CPU ("cpu<c>"), and the CPUs form a full mesh of
/// QPI links. The CPU of a GPU is its "CPU Affinity" column where the matrix has one (GPUs with equal
/// affinity share a socket), else the classes of "not SYS". A pair shown as NV<k> hides its PCIe relation;
/// such GPUs get their own switch (the matrix cannot tell whether they share one).
/// Other rows and columns (NICs such as `NIC0` or `mlx5_0`, NUMA affinity, the legend) are ignored.

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <map>
#include <numeric>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "dssync/core/error.hpp"
#include "dssync/topology/graph.hpp"
#include "dssync/topology/network.hpp"

namespace dssync::topology {

/// The links of the model `from_nvidia_smi` builds (defaults: a DGX-1's, as `topology::dgx1`'s).
struct nvidia_smi_links {
  link nvlink{25e9, 1e-6};  ///< one NVLink lane, per direction
  link pcie{12e9, 2e-6};    ///< GPU-switch and switch-CPU
  link qpi{20e9, 3e-6};     ///< CPU-CPU
};

namespace detail {

inline std::vector<std::string> smi_tokens(const std::string& line) {
  std::vector<std::string> out;
  std::istringstream is(line);
  for (std::string t; is >> t;) out.push_back(t);
  return out;
}

/// Whether `t` is "GPU<digits>".
inline bool smi_is_gpu(std::string_view t) {
  if (t.size() < 4 || t.substr(0, 3) != "GPU") return false;
  return std::all_of(t.begin() + 3, t.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; });
}

}  // namespace detail

/// The topology of the `nvidia-smi topo -m` matrix in `text` (see the file comment).
/// \throws invalid_argument naming the line, the GPU pair and the entry for a missing header, a row that
///   is missing, short or out of order, an unknown entry, a diagonal that is not X, or an asymmetric
///   matrix.
[[nodiscard]] inline user_graph from_nvidia_smi(std::string_view text, const nvidia_smi_links& links = {}) {
  std::vector<std::string> lines;
  {
    std::string cur;
    for (char c : text) {
      if (c == '\n') {
        lines.push_back(cur);
        cur.clear();
      } else if (c != '\r') {
        cur.push_back(c == '\t' ? ' ' : c);
      }
    }
    if (!cur.empty()) lines.push_back(cur);
  }
  auto fail = [](std::size_t line, const std::string& what) -> void {
    throw invalid_argument("from_nvidia_smi: line " + std::to_string(line + 1) + ": " + what);
  };
  // The header: the first line whose first token is GPU0; its GPU columns come first.
  std::size_t header = lines.size();
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const auto t = detail::smi_tokens(lines[i]);
    if (!t.empty() && t.front() == "GPU0") {
      header = i;
      break;
    }
  }
  if (header == lines.size())
    throw invalid_argument("from_nvidia_smi: no header line starting with GPU0 (the text of `nvidia-smi topo -m`)");
  const auto head = detail::smi_tokens(lines[header]);
  std::size_t n = 0;
  while (n < head.size() && head[n] == "GPU" + std::to_string(n)) ++n;
  // Columns after the GPUs: non-GPU devices (NICs), then "CPU Affinity" and others.
  std::size_t devices = n;
  while (devices < head.size() && head[devices] != "CPU" && head[devices] != "NUMA" && head[devices] != "GPU") ++devices;
  const bool has_affinity = devices + 1 < head.size() && head[devices] == "CPU" && head[devices + 1] == "Affinity";

  std::vector<std::vector<std::string>> entry(n, std::vector<std::string>(n));
  std::vector<std::string> affinity(n);
  std::size_t row = 0;
  for (std::size_t i = header + 1; i < lines.size() && row < n; ++i) {
    const auto t = detail::smi_tokens(lines[i]);
    if (t.empty() || !detail::smi_is_gpu(t.front())) continue;  // NIC rows, blank lines
    if (t.front() != "GPU" + std::to_string(row))
      fail(i, "row '" + t.front() + "' where GPU" + std::to_string(row) + " was expected");
    if (t.size() < 1 + n) fail(i, "GPU" + std::to_string(row) + " has " + std::to_string(t.size() - 1) +
                                      " entries, fewer than the " + std::to_string(n) + " GPUs");
    for (std::size_t j = 0; j < n; ++j) entry[row][j] = t[1 + j];
    if (has_affinity && t.size() > 1 + devices) affinity[row] = t[1 + devices];
    for (std::size_t j = 0; j < n; ++j) {
      const std::string& e = entry[row][j];
      const bool nv = e.size() > 2 && e.substr(0, 2) == "NV" &&
                      std::all_of(e.begin() + 2, e.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; });
      const bool known = e == "X" || nv || e == "PIX" || e == "PXB" || e == "PHB" || e == "NODE" || e == "SYS" || e == "SOC";
      if (!known)
        fail(i, "GPU" + std::to_string(row) + "-GPU" + std::to_string(j) + " is '" + e +
                    "', not X, NV<k>, PIX, PXB, PHB, NODE or SYS");
      if ((j == row) != (e == "X"))
        fail(i, "GPU" + std::to_string(row) + "-GPU" + std::to_string(j) + " is '" + e + "'" +
                    (j == row ? ", but the diagonal must be X" : ": X belongs on the diagonal only"));
    }
    ++row;
  }
  if (row < n) throw invalid_argument("from_nvidia_smi: the header names " + std::to_string(n) + " GPUs but " +
                                      std::to_string(row) + " GPU rows follow");
  for (std::size_t a = 0; a < n; ++a)
    for (std::size_t b = a + 1; b < n; ++b)
      if (entry[a][b] != entry[b][a])
        throw invalid_argument("from_nvidia_smi: the matrix is not symmetric: GPU" + std::to_string(a) + "-GPU" +
                               std::to_string(b) + " is '" + entry[a][b] + "' but GPU" + std::to_string(b) + "-GPU" +
                               std::to_string(a) + " is '" + entry[b][a] + "'");

  // Classes by union-find.
  auto classes = [&](auto&& related) {
    std::vector<std::size_t> up(n);
    std::iota(up.begin(), up.end(), std::size_t{0});
    auto find = [&](std::size_t x) {
      while (up[x] != x) x = up[x] = up[up[x]];
      return x;
    };
    for (std::size_t a = 0; a < n; ++a)
      for (std::size_t b = a + 1; b < n; ++b)
        if (related(a, b)) up[find(a)] = find(b);
    std::map<std::size_t, int> id;
    std::vector<int> out(n);
    for (std::size_t a = 0; a < n; ++a) out[a] = id.emplace(find(a), static_cast<int>(id.size())).first->second;
    return std::make_pair(out, static_cast<int>(id.size()));
  };
  const auto [sw, switches] = classes([&](std::size_t a, std::size_t b) {
    return entry[a][b] == "PIX" || entry[a][b] == "PXB";
  });
  const bool use_affinity =
      has_affinity && std::none_of(affinity.begin(), affinity.end(), [](const std::string& s) { return s.empty(); });
  const auto [cpu, cpus] = classes([&](std::size_t a, std::size_t b) {
    if (use_affinity) return affinity[a] == affinity[b];
    return entry[a][b] != "SYS" && entry[a][b] != "SOC";
  });

  network g;
  for (std::size_t r = 0; r < n; ++r)
    boost::add_vertex(node{node_kind::worker, static_cast<int>(r), "gpu" + std::to_string(r)}, g);
  for (std::size_t a = 0; a < n; ++a)
    for (std::size_t b = a + 1; b < n; ++b)
      if (entry[a][b].substr(0, 2) == "NV") {
        const int lanes = std::stoi(entry[a][b].substr(2));
        if (lanes > 0) add_cable(g, a, b, link{lanes * links.nvlink.bandwidth, links.nvlink.latency, link_class::nvlink});
      }
  std::vector<network::vertex_descriptor> sv(static_cast<std::size_t>(switches)), cv(static_cast<std::size_t>(cpus));
  for (int k = 0; k < switches; ++k) sv[static_cast<std::size_t>(k)] = add_switch(g, "pcie" + std::to_string(k));
  for (int c = 0; c < cpus; ++c) cv[static_cast<std::size_t>(c)] = add_switch(g, "cpu" + std::to_string(c));
  std::vector<int> switch_cpu(static_cast<std::size_t>(switches), -1);
  for (std::size_t r = 0; r < n; ++r) {
    add_cable(g, r, sv[static_cast<std::size_t>(sw[r])], with_class(links.pcie, link_class::pcie));
    switch_cpu[static_cast<std::size_t>(sw[r])] = cpu[r];
  }
  for (int k = 0; k < switches; ++k)
    add_cable(g, sv[static_cast<std::size_t>(k)], cv[static_cast<std::size_t>(switch_cpu[static_cast<std::size_t>(k)])],
              with_class(links.pcie, link_class::pcie));
  for (int a = 0; a < cpus; ++a)
    for (int b = a + 1; b < cpus; ++b) add_cable(g, cv[static_cast<std::size_t>(a)], cv[static_cast<std::size_t>(b)], with_class(links.qpi, link_class::socket));
  return user_graph(g, "nvidia_smi(" + std::to_string(n) + " GPUs)");
}

}  // namespace dssync::topology
