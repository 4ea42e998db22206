// topology::from_nvidia_smi: the DGX-1V matrix of `nvidia-smi topo -m`, written out by hand from the link
// map in ALGORITHMS.md, gives the NVLink cables of topology::dgx1 and the same Edmonds bounds from every
// root; a PCIe-only box; and malformed matrices refused, naming the line, the pair and the entry.

#include <doctest/doctest.h>

#include <dssync/algorithms/trees/digraph.hpp>
#include <dssync/algorithms/trees/packing.hpp>
#include <dssync/core/error.hpp>
#include <dssync/topology/dgx1.hpp>
#include <dssync/topology/nvidia_smi.hpp>

#include <string>

namespace {

namespace trees = dssync::algorithms::trees;
namespace topo = dssync::topology;

// As `nvidia-smi topo -m` prints it on a DGX-1 (V100), with its two NICs and the legend.
const char* dgx1v = R"(	GPU0	GPU1	GPU2	GPU3	GPU4	GPU5	GPU6	GPU7	NIC0	NIC1	CPU Affinity	NUMA Affinity
GPU0	 X 	NV1	NV1	NV2	NV2	SYS	SYS	SYS	PIX	SYS	0-19,40-59	0
GPU1	NV1	 X 	NV2	NV1	SYS	NV2	SYS	SYS	PIX	SYS	0-19,40-59	0
GPU2	NV1	NV2	 X 	NV2	SYS	SYS	NV1	SYS	PHB	SYS	0-19,40-59	0
GPU3	NV2	NV1	NV2	 X 	SYS	SYS	SYS	NV1	PHB	SYS	0-19,40-59	0
GPU4	NV2	SYS	SYS	SYS	 X 	NV1	NV1	NV2	SYS	PIX	20-39,60-79	1
GPU5	SYS	NV2	SYS	SYS	NV1	 X 	NV2	NV1	SYS	PIX	20-39,60-79	1
GPU6	SYS	SYS	NV1	SYS	NV1	NV2	 X 	NV2	SYS	PHB	20-39,60-79	1
GPU7	SYS	SYS	SYS	NV1	NV2	NV1	NV2	 X 	SYS	PHB	20-39,60-79	1
NIC0	PIX	PIX	PHB	PHB	SYS	SYS	SYS	SYS	 X 	SYS
NIC1	SYS	SYS	SYS	SYS	PIX	PIX	PHB	PHB	SYS	 X

Legend:

  X    = Self
  SYS  = Connection traversing PCIe as well as the SMP interconnect between NUMA nodes (e.g., QPI/UPI)
  NV#  = Connection traversing a bonded set of # NVLinks
)";

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

std::string what_of(const char* text) {
  try {
    (void)topo::from_nvidia_smi(text);
  } catch (const dssync::invalid_argument& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_SUITE_BEGIN("topology");

TEST_CASE("nvidia-smi topo -m of a DGX-1V: the NVLink cables of topology::dgx1, and its Edmonds bounds") {
  const auto t = topo::from_nvidia_smi(dgx1v);
  REQUIRE(t.workers() == 8);
  const auto g = t.graph();
  const topo::dgx1 ref;
  // Every NVLink cable with its lanes: the GPU-GPU arcs of both graphs are the same.
  const auto d = trees::from_network(g), r = trees::from_network(ref.graph());
  for (int a = 0; a < 8; ++a)
    for (int b = 0; b < 8; ++b) {
      if (a == b) continue;
      const int i = d.find(a, b), j = r.find(a, b);
      INFO("GPU" << a << "-GPU" << b);
      REQUIRE((i >= 0) == (j >= 0));
      if (i >= 0) CHECK(d.arcs[static_cast<std::size_t>(i)].capacity == r.arcs[static_cast<std::size_t>(j)].capacity);
    }
  CHECK(d.switches() == 8 + 2);  // NV entries hide PCIe sharing: one switch per GPU, two CPUs
  for (int root = 0; root < 8; ++root) {
    INFO("root " << root);
    CHECK(trees::broadcast_bound(d, root) == trees::broadcast_bound(r, root));  // 162 GB/s
    const auto p = trees::pack_broadcast(d, root, {.mode = trees::pack_mode::exact});
    CHECK(p.rate == p.bound);
  }
}

TEST_CASE("a PCIe-only box: PIX pairs share a switch, SYS splits the sockets") {
  const char* box = "        GPU0    GPU1    GPU2    GPU3\n"
                    "GPU0     X      PIX     SYS     SYS\n"
                    "GPU1    PIX      X      SYS     SYS\n"
                    "GPU2    SYS     SYS      X      PXB\n"
                    "GPU3    SYS     SYS     PXB      X\n";
  const auto t = topo::from_nvidia_smi(box, {.pcie = {10e9, 1e-6}, .qpi = {5e9, 1e-6}});
  const auto d = trees::from_network(t.graph());
  CHECK(d.compute == 4);
  CHECK(d.switches() == 2 + 2);
  CHECK(trees::broadcast_bound(d, 0) == 5'000'000'000);  // across the QPI link
}

TEST_CASE("malformed matrices are refused, naming the line, the pair and the entry") {
  CHECK(contains(what_of("no matrix here\n"), "no header line starting with GPU0"));
  CHECK(contains(what_of("GPU0 GPU1\nGPU0 X NV1\nGPU1 NV2 X\n"),
                 "not symmetric: GPU0-GPU1 is 'NV1' but GPU1-GPU0 is 'NV2'"));
  CHECK(contains(what_of("GPU0 GPU1\nGPU0 X FOO\nGPU1 FOO X\n"), "line 2: GPU0-GPU1 is 'FOO', not X, NV<k>"));
  CHECK(contains(what_of("GPU0 GPU1\nGPU0 PIX PIX\nGPU1 PIX X\n"), "the diagonal must be X"));
  CHECK(contains(what_of("GPU0 GPU1\nGPU0 X PIX\n"), "the header names 2 GPUs but 1 GPU rows follow"));
  CHECK(contains(what_of("GPU0 GPU1\nGPU1 X PIX\nGPU0 PIX X\n"), "line 2: row 'GPU1' where GPU0 was expected"));
  CHECK(contains(what_of("GPU0 GPU1\nGPU0 X\nGPU1 PIX X\n"), "line 2: GPU0 has 1 entries, fewer than the 2 GPUs"));
}

TEST_SUITE_END();
