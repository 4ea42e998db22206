#pragma once
/// \file
/// `topology::dgx1`: the NVIDIA DGX-1 (V100) hybrid cube-mesh, NVLink plus PCIe, on any subset of its 8 GPUs.

#include <algorithm>
#include <array>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "dssync/core/error.hpp"
#include "dssync/core/topology.hpp"
#include "dssync/topology/network.hpp"

namespace dssync::topology {

/// A DGX-1 (V100) restricted to a subset of its GPUs; rank i is physical GPU gpus()[i].
///
/// NVLink: every GPU has 6 NVLink lanes of 25 GB/s per direction (`nvlink`, per lane). Double links
/// 0-3, 0-4, 1-2, 1-5, 2-3, 4-7, 5-6, 6-7; single links 0-1, 0-2, 1-3, 2-6, 3-7, 4-5, 4-6, 5-7. A double link
/// is modelled as ONE cable of twice the lane bandwidth (50 GB/s per direction), so max-min sharing sees
/// its full capacity as one resource. Only NVLinks between GPUs of the subset exist (no routing through
/// GPUs outside the allocation).
///
/// PCIe: GPUs {0,1}, {2,3}, {4,5}, {6,7} share PCIe switches "pcie0".."pcie3"; each GPU-switch cable and each
/// switch-CPU cable uses `pcie` (default 12 GB/s per direction, a PCIe 3.0 x16 link in practice). Switches
/// pcie0 and pcie1 hang off socket "cpu0", pcie2 and pcie3 off "cpu1"; the sockets are joined by QPI (`qpi`,
/// default 19.2 GB/s per direction: one 9.6 GT/s QPI link of the Xeon E5-2698 v4). Only the PCIe switches and
/// CPUs that a GPU of the subset uses are in the graph. Latencies default to the library's 1 us per link, so a
/// PCIe path (2 to 6 links) costs more latency than one NVLink hop.
class dgx1 {
 public:
  static constexpr int gpu_count = 8;
  /// One NVLink lane: 25 GB/s per direction.
  static constexpr link default_nvlink{25e9, 1e-6};
  /// One PCIe 3.0 x16 link, effective: 12 GB/s per direction.
  static constexpr link default_pcie{12e9, 1e-6};
  /// One QPI link at 9.6 GT/s: 19.2 GB/s per direction.
  static constexpr link default_qpi{19.2e9, 1e-6};

  /// All 8 GPUs, ranks = GPU ids.
  dgx1() : dgx1(std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7}) {}
  /// The GPUs `gpus` (physical ids 0..7, in rank order), e.g. `dgx1({0, 1, 2, 5})`.
  /// `nvlink` is the link of one NVLink lane (a double link gets twice its bandwidth).
  /// \throws invalid_argument naming the id if the subset is empty, an id is not in 0..7 or is repeated.
  explicit dgx1(std::vector<int> gpus, link nvlink = default_nvlink, link pcie = default_pcie,
                link qpi = default_qpi)
      : gpus_(std::move(gpus)), nvlink_(nvlink), pcie_(pcie), qpi_(qpi) {
    if (gpus_.empty()) throw invalid_argument("topology::dgx1: the GPU subset is empty");
    std::array<bool, gpu_count> seen{};
    for (int id : gpus_) {
      if (id < 0 || id >= gpu_count)
        throw invalid_argument("topology::dgx1: GPU id " + std::to_string(id) + " is not in 0..7 (subset " +
                               list(gpus_) + ")");
      if (seen[static_cast<std::size_t>(id)])
        throw invalid_argument("topology::dgx1: GPU " + std::to_string(id) + " appears twice in the subset " +
                               list(gpus_));
      seen[static_cast<std::size_t>(id)] = true;
    }
  }

  [[nodiscard]] int workers() const noexcept { return static_cast<int>(gpus_.size()); }
  /// "dgx1" for all 8 GPUs in order with default links; otherwise "dgx1(0,1,2,5,nvlink=…,pcie=…,qpi=…,nvlink_only)"
  /// listing the subset (unless all 8 in order), the links that differ from the defaults, and the NVLink-only flag.
  [[nodiscard]] std::string name() const {
    std::vector<std::string> parts;
    bool identity = gpus_.size() == static_cast<std::size_t>(gpu_count);
    for (std::size_t i = 0; identity && i < gpus_.size(); ++i) identity = gpus_[i] == static_cast<int>(i);
    if (!identity)
      for (int id : gpus_) parts.push_back(std::to_string(id));
    if (nvlink_ != default_nvlink) parts.push_back("nvlink=" + detail::link_text(nvlink_));
    if (!nvlink_only_ && pcie_ != default_pcie) parts.push_back("pcie=" + detail::link_text(pcie_));
    if (!nvlink_only_ && qpi_ != default_qpi) parts.push_back("qpi=" + detail::link_text(qpi_));
    if (nvlink_only_) parts.emplace_back("nvlink_only");
    std::string s = "dgx1";
    for (std::size_t i = 0; i < parts.size(); ++i) s += (i == 0 ? "(" : ",") + parts[i];
    return parts.empty() ? s : s + ")";
  }
  /// \throws invalid_argument unless `world == workers()`.
  void validate(int world) const { detail::check_topology_world(name(), workers(), world); }

  /// The physical GPU ids; rank i is GPU gpus()[i].
  [[nodiscard]] const std::vector<int>& gpus() const noexcept { return gpus_; }
  /// The link of one NVLink lane.
  [[nodiscard]] const link& nvlink() const noexcept { return nvlink_; }
  /// The PCIe link (GPU-switch and switch-CPU).
  [[nodiscard]] const link& pcie() const noexcept { return pcie_; }
  /// The QPI link between the CPU sockets.
  [[nodiscard]] const link& qpi() const noexcept { return qpi_; }
  /// Whether graph() leaves out PCIe (see nvlink_only()).
  [[nodiscard]] bool is_nvlink_only() const noexcept { return nvlink_only_; }

  /// NVLink lanes (0, 1 or 2) between physical GPUs `a` and `b`.
  /// \throws invalid_argument if an id is not in 0..7.
  [[nodiscard]] static int physical_lanes(int a, int b) {
    static constexpr std::array<std::array<int, gpu_count>, gpu_count> lanes = {{
        //  0  1  2  3  4  5  6  7
        {{0, 1, 1, 2, 2, 0, 0, 0}},  // 0
        {{1, 0, 2, 1, 0, 2, 0, 0}},  // 1
        {{1, 2, 0, 2, 0, 0, 1, 0}},  // 2
        {{2, 1, 2, 0, 0, 0, 0, 1}},  // 3
        {{2, 0, 0, 0, 0, 1, 1, 2}},  // 4
        {{0, 2, 0, 0, 1, 0, 2, 1}},  // 5
        {{0, 0, 1, 0, 1, 2, 0, 2}},  // 6
        {{0, 0, 0, 1, 2, 1, 2, 0}},  // 7
    }};
    for (int id : {a, b})
      if (id < 0 || id >= gpu_count)
        throw invalid_argument("topology::dgx1: GPU id " + std::to_string(id) + " is not in 0..7");
    return lanes[static_cast<std::size_t>(a)][static_cast<std::size_t>(b)];
  }
  /// NVLink lanes (0, 1 or 2) between ranks `a` and `b`.
  /// \throws invalid_argument if a rank is not in 0..workers()-1.
  [[nodiscard]] int nvlink_lanes(int a, int b) const { return physical_lanes(gpu(a), gpu(b)); }

  /// Whether the subset's GPUs are connected by NVLinks among themselves.
  [[nodiscard]] bool nvlink_connected() const { return nvlink_unreached() < 0; }
  /// This subset without PCIe: graph() is nvlink_graph(). Blink packs trees on NVLink and PCIe separately.
  /// \throws invalid_argument naming two GPUs if the subset is not connected by NVLink.
  [[nodiscard]] dgx1 nvlink_only() const {
    if (const int r = nvlink_unreached(); r >= 0)
      throw invalid_argument("topology " + name() + ": GPUs " + std::to_string(gpus_.front()) + " and " +
                             std::to_string(gpus_[static_cast<std::size_t>(r)]) +
                             " are not connected by NVLink within the subset, so it has no NVLink-only topology");
    dgx1 d = *this;
    d.nvlink_only_ = true;
    return d;
  }

  /// One group of all ranks (one server).
  [[nodiscard]] std::vector<std::vector<int>> racks() const {
    std::vector<int> all(gpus_.size());
    for (std::size_t r = 0; r < all.size(); ++r) all[r] = static_cast<int>(r);
    return {std::move(all)};
  }

  /// The NVLink graph: the GPUs ("gpu<id>") and their NVLink cables only; may be disconnected.
  [[nodiscard]] network nvlink_graph() const {
    network g;
    add_gpus(g);
    add_nvlinks(g);
    return g;
  }
  /// The PCIe graph: the GPUs, their PCIe switches ("pcie<p>") and CPUs ("cpu<c>"), no NVLink.
  [[nodiscard]] network pcie_graph() const {
    network g;
    add_gpus(g);
    add_pcie(g);
    return g;
  }
  /// The Boost.Graph network: the GPUs in rank order, then the PCIe switches and CPUs in use; NVLink cables
  /// first, then PCIe and QPI cables (none if is_nvlink_only()). Links carry their class: nvlink, pcie,
  /// and socket for QPI.
  [[nodiscard]] network graph() const {
    network g;
    add_gpus(g);
    add_nvlinks(g);
    if (!nvlink_only_) add_pcie(g);
    return g;
  }

 private:
  static std::string list(const std::vector<int>& v) {
    std::string s = "{";
    for (std::size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
    return s + "}";
  }
  int gpu(int rank) const {
    if (rank < 0 || rank >= workers())
      throw invalid_argument("topology " + name() + ": rank " + std::to_string(rank) + " is not in 0.." +
                             std::to_string(workers() - 1));
    return gpus_[static_cast<std::size_t>(rank)];
  }
  /// The first rank not reachable from rank 0 over NVLink, or -1.
  int nvlink_unreached() const {
    const std::size_t n = gpus_.size();
    std::vector<bool> seen(n, false);
    std::vector<std::size_t> stack{0};
    seen[0] = true;
    while (!stack.empty()) {
      const std::size_t a = stack.back();
      stack.pop_back();
      for (std::size_t b = 0; b < n; ++b)
        if (!seen[b] && physical_lanes(gpus_[a], gpus_[b]) > 0) {
          seen[b] = true;
          stack.push_back(b);
        }
    }
    for (std::size_t r = 0; r < n; ++r)
      if (!seen[r]) return static_cast<int>(r);
    return -1;
  }
  void add_gpus(network& g) const {
    for (std::size_t r = 0; r < gpus_.size(); ++r)
      boost::add_vertex(node{node_kind::worker, static_cast<int>(r), "gpu" + std::to_string(gpus_[r])}, g);
  }
  void add_nvlinks(network& g) const {
    for (std::size_t a = 0; a < gpus_.size(); ++a)
      for (std::size_t b = a + 1; b < gpus_.size(); ++b)
        if (const int lanes = physical_lanes(gpus_[a], gpus_[b]); lanes > 0)
          add_cable(g, a, b, link{lanes * nvlink_.bandwidth, nvlink_.latency, link_class::nvlink});
  }
  void add_pcie(network& g) const {
    std::array<std::size_t, 4> pcie_vertex{};
    std::array<bool, 4> pcie_used{};
    std::array<std::size_t, 2> cpu_vertex{};
    std::array<bool, 2> cpu_used{};
    for (int id : gpus_) {
      pcie_used[static_cast<std::size_t>(id / 2)] = true;
      cpu_used[static_cast<std::size_t>(id / 4)] = true;
    }
    for (std::size_t p = 0; p < 4; ++p)
      if (pcie_used[p]) pcie_vertex[p] = add_switch(g, "pcie" + std::to_string(p));
    for (std::size_t c = 0; c < 2; ++c)
      if (cpu_used[c]) cpu_vertex[c] = add_switch(g, "cpu" + std::to_string(c));
    for (std::size_t r = 0; r < gpus_.size(); ++r)
      add_cable(g, r, pcie_vertex[static_cast<std::size_t>(gpus_[r] / 2)], with_class(pcie_, link_class::pcie));
    for (std::size_t p = 0; p < 4; ++p)
      if (pcie_used[p]) add_cable(g, pcie_vertex[p], cpu_vertex[p / 2], with_class(pcie_, link_class::pcie));
    if (cpu_used[0] && cpu_used[1]) add_cable(g, cpu_vertex[0], cpu_vertex[1], with_class(qpi_, link_class::socket));
  }

  std::vector<int> gpus_;
  link nvlink_;
  link pcie_;
  link qpi_;
  bool nvlink_only_ = false;
};

static_assert(concepts::topology<dgx1>);

}  // namespace dssync::topology
