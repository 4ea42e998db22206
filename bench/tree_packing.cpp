// Tree packing time, rate and tree count (algorithms/trees/packing.hpp), Blink and exact modes, against
// the Edmonds bound: every NVLink-connected GPU subset of a DGX-1 from every root, the DGX-1 with its PCIe
// switches, random 64-vertex graphs, and fat trees (exact mode splits the switches off). Targets (issue
// 11): 8 GPUs <= 10 ms, a 64-node random graph <= 1 s, a 256-host fat tree <= 10 s in exact mode; exact
// rate = bound, Blink rate >= 0.95 bound. Memory is the process's peak RSS after each table.
//
//   build/bench/tree_packing            # all tables (the fat trees up to --fat-tree-max k)
//   build/bench/tree_packing --smoke    # DGX-1 subsets of up to 4 GPUs, one random graph, fat_tree(4)

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include <dssync/algorithms/trees/packing.hpp>
#include <dssync/topology/dgx1.hpp>
#include <dssync/topology/fat_tree.hpp>

#include "common.hpp"

namespace {

using namespace dssync_bench;
namespace trees = dssync::algorithms::trees;

struct result {
  double ms = 0;
  trees::packing p;
};

result timed(const trees::digraph& d, int root, trees::pack_mode mode) {
  result r;
  const auto t0 = steady::now();
  r.p = trees::pack_broadcast(d, root, {.mode = mode});
  r.ms = std::chrono::duration<double, std::milli>(steady::now() - t0).count();
  return r;
}

trees::digraph random_graph(std::mt19937& gen, int n, int degree) {
  trees::digraph d;
  d.vertices = d.compute = n;
  d.labels.assign(static_cast<std::size_t>(n), "");
  std::uniform_int_distribution<int> pick(0, n - 1), lanes(1, 4);
  for (int v = 0; v + 1 < n; ++v) {  // a path keeps it connected
    const std::int64_t c = lanes(gen) * std::int64_t{25'000'000'000};
    d.add(v, v + 1, c);
    d.add(v + 1, v, c);
  }
  for (int e = 0; e < n * (degree - 2) / 2; ++e) {
    const int a = pick(gen), b = pick(gen);
    if (a == b) continue;
    const std::int64_t c = lanes(gen) * std::int64_t{25'000'000'000};
    d.add(a, b, c);
    d.add(b, a, c);
  }
  return d;
}

}  // namespace

int main(int argc, char** argv) {
  bool smoke = false;
  int fat_max = 6;
  try {
    cli c("tree_packing", "tree packing time, rate and tree count against the Edmonds bound");
    c.flag("--smoke", "small cases only (a ctest smoke run)")
        .option("--fat-tree-max", "K", "largest fat tree k (even, default 6: 54 hosts; 8 is 128 hosts)");
    if (!c.parse(argc, argv)) return 0;
    smoke = c.has("--smoke");
    if (auto v = c.get("--fat-tree-max")) fat_max = static_cast<int>(parse_long(*v, "--fat-tree-max"));
  } catch (const std::exception& e) {
    std::cerr << "tree_packing: " << e.what() << '\n';
    return 2;
  }
  int status = 0;
  auto check = [&](const result& r, trees::pack_mode mode, const std::string& what) {
    const auto bad = trees::check_packing(r.p);
    const bool short_rate = mode == trees::pack_mode::exact ? r.p.rate != r.p.bound : r.p.efficiency() < 0.95;
    if (!bad.empty() || short_rate) {
      std::cerr << "tree_packing: " << what << " (" << trees::to_string(mode) << "): "
                << (bad.empty() ? "rate " + std::to_string(r.p.rate) + " of bound " + std::to_string(r.p.bound) : bad)
                << '\n';
      status = 1;
    }
  };

  // 1. DGX-1 subsets.
  std::cout << "# DGX-1 (V100) GPU subsets connected by NVLink, NVLink arcs only, broadcast from every root\n";
  table t1({{"GPUs", 5}, {"mode", 6}, {"cases", 6}, {"median(ms)", 11}, {"max(ms)", 9}, {"min rate/bound", 15},
            {"max trees", 10}});
  t1.print_header(std::cout);
  for (int size = 2; size <= (smoke ? 4 : 8); ++size)
    for (auto mode : {trees::pack_mode::blink, trees::pack_mode::exact}) {
      std::vector<double> ms;
      double worst = 1;
      std::size_t most = 0;
      for (unsigned mask = 1; mask < 256; ++mask) {
        std::vector<int> g;
        for (int i = 0; i < 8; ++i)
          if ((mask >> i) & 1u) g.push_back(i);
        if (static_cast<int>(g.size()) != size || !dssync::topology::dgx1(g).nvlink_connected()) continue;
        const auto d = trees::from_network(dssync::topology::dgx1(g).nvlink_only().graph());
        for (int root = 0; root < d.compute; ++root) {
          const auto r = timed(d, root, mode);
          check(r, mode, "dgx1 subset of " + std::to_string(size));
          ms.push_back(r.ms);
          worst = std::min(worst, r.p.efficiency());
          most = std::max(most, r.p.tree_count());
        }
      }
      t1.row(std::cout, {std::to_string(size), trees::to_string(mode), std::to_string(ms.size()), fixed(median(ms), 3),
                         fixed(*std::max_element(ms.begin(), ms.end()), 3), fixed(worst, 6), std::to_string(most)});
    }
  std::cout << "# peak RSS " << human_bytes(static_cast<double>(peak_rss_bytes())) << "\n\n";

  // 2. Graphs with switches, and random graphs.
  std::cout << "# larger graphs, broadcast from rank 0 (switches split off in both modes)\n";
  table t2({{"graph", 22}, {"ranks", 6}, {"switches", 9}, {"arcs", 6}, {"mode", 6}, {"time(ms)", 10},
            {"bound(GB/s)", 12}, {"rate/bound", 11}, {"trees", 6}});
  t2.print_header(std::cout);
  auto run = [&](const std::string& name, const trees::digraph& d) {
    for (auto mode : {trees::pack_mode::blink, trees::pack_mode::exact}) {
      const auto r = timed(d, 0, mode);
      check(r, mode, name);
      t2.row(std::cout, {name, std::to_string(d.compute), std::to_string(d.switches()), std::to_string(d.arcs.size()),
                         trees::to_string(mode), fixed(r.ms, 2), fixed(r.p.bound / 1e9, 1), fixed(r.p.efficiency(), 6),
                         std::to_string(r.p.tree_count())});
    }
  };
  run("dgx1 with PCIe", trees::from_network(dssync::topology::dgx1().graph()));
  std::mt19937 gen(2026);
  for (int n : smoke ? std::vector<int>{16} : std::vector<int>{16, 32, 64}) run("random degree 4", random_graph(gen, n, 4));
  for (int k = 4; k <= (smoke ? 4 : fat_max); k += 2)
    run("fat_tree(" + std::to_string(k) + ")", trees::from_network(dssync::topology::fat_tree(k).graph()));
  std::cout << "# peak RSS " << human_bytes(static_cast<double>(peak_rss_bytes())) << '\n';
  return status;
}
