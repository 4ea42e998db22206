// BML on BCube in the flow-level simulator (issue 5, seed 003), nccl-tests style: algorithms::bcube (BML)
// against ring and hierarchical allreduce, on the same BCube network and on a fat tree with the same
// number of servers and the same link speed, for several sizes, with link latency 0 and with latency,
// without failure and with one failed server. Then BML's Table II (Fat-Tree 2(N-1)/N·T_F, BML
// 2(N-1)/(k·N)·T_F) beside the simulated times for BCube(3,2), (2,3), (4,2) and (3,3).
//
//   build/bench/bcube_sim                       # BCube(3,2) and (4,2), 64K..256M, latency 0 and 5 us
//   build/bench/bcube_sim --bcube 3x3 --svg bcube.svg --csv bcube.csv
//
// What is compared, and how it is kept fair:
//  - Every policy's schedule is proved by the verifier (allreduce semantics, no deadlock) and played by
//    sim::simulate at message granularity; flows share links max-min fairly, ECMP hashes per
//    (source, destination, channel).
//  - BCube(n,k): n^k servers with k ports each, every cable `--gbps` (default 8 Gbit/s = 1 GB/s, the
//    seed's example, so T_F = S / 1 GB/s). Servers relay (BCube is server-centric): a message between
//    servers that differ in several digits goes through other servers.
//  - Fat tree: the smallest k-ary fat tree with at least N hosts, same cable speed; the N servers are its
//    hosts 0..N-1 (only BCube(4,2) fills fat_tree(4) exactly). A fat tree is non-blocking, so N of its
//    hosts see what a fat tree of exactly N hosts would: one port of B per server, full bisection.
//  - ring: the logical ring 0 -> 1 -> ... over the participants in rank order. hierarchical: its racks
//    are BCube's level-0 groups (n servers on one level-0 switch) or the fat tree's edge switches.
//  - One failed server (`--fail R`, default 0 = address [0,...,0], the seed's example): its cables are
//    removed from both networks, so nothing routes through it. BML re-plans with
//    algorithms::bcube::plan_without (relaying pieces the dead server would have aggregated). Ring and
//    hierarchical run over the M = N-1 survivors on the same servers: schedule rank i runs on the i-th
//    survivor (schedule::hosts), the racks lose the dead member. So every policy moves the survivors'
//    data over the survivors' links.
//
// Columns: time(us) simulated completion; algbw = S/time (GB = 1e9 B); busbw = algbw·2(M-1)/M with M
// participants; x_bml = time / BML's time on BCube for the same size, latency and failure (the peer
// measured side by side; > 1 means slower than BML); time/T_F with T_F = S / link bandwidth (Table II's
// unit); flows = messages; peakRSS = the process's peak resident set so far (the simulator's memory).

// GCC 12 reports a false -Wrestrict inside std::string concatenation at -O3 (GCC PR 105651), here from
// topology::bcube::graph(); the build keeps it a warning (-Wno-error=restrict). This file silences it.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12
#pragma GCC diagnostic ignored "-Wrestrict"
#endif

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include <boost/graph/adjacency_list.hpp>

#include <dssync/algorithms/bcube.hpp>
#include <dssync/algorithms/cost_model.hpp>
#include <dssync/algorithms/hierarchical.hpp>
#include <dssync/algorithms/ring.hpp>
#include <dssync/core/schedule.hpp>
#include <dssync/core/verifier.hpp>
#include <dssync/sim/simulator.hpp>
#include <dssync/topology/bcube.hpp>
#include <dssync/topology/fat_tree.hpp>

#include "common.hpp"

namespace {

using namespace dssync_bench;
using dssync::schedule;

struct bcube_shape {
  int n = 3, k = 2;
  [[nodiscard]] int servers() const {
    int s = 1;
    for (int i = 0; i < k; ++i) s *= n;
    return s;
  }
  [[nodiscard]] std::string label() const { return "bcube(" + std::to_string(n) + "," + std::to_string(k) + ")"; }
};

/// "3x2" -> BCube(3,2).
bcube_shape parse_shape(const std::string& s) {
  const auto x = s.find('x');
  if (x == std::string::npos) throw std::invalid_argument("--bcube: \"" + s + "\" is not NxK (e.g. 3x2)");
  bcube_shape b{static_cast<int>(parse_long(s.substr(0, x), "--bcube")),
                static_cast<int>(parse_long(s.substr(x + 1), "--bcube"))};
  if (b.n < 2 || b.k < 1 || b.servers() > 4096)
    throw std::invalid_argument("--bcube: " + s + " needs n >= 2, k >= 1 and at most 4096 servers");
  return b;
}

/// The smallest even k with k^3/4 >= n.
int fat_tree_k_for(int n) {
  int k = 2;
  while (k * k * k / 4 < n) k += 2;
  return k;
}

/// One network of the comparison: the graph (failed servers' cables removed), and what the policies need.
struct network_case {
  std::string label;                     // "bcube(3,2)" or "fat_tree(4)[9 of 16]"
  bool is_bcube = false;
  dssync::topology::network graph;
  std::vector<std::vector<int>> racks;   // groups of server ranks (0..N-1)
  std::unique_ptr<dssync::sim::router> router;
};

/// The network with the cables of `failed` removed (a dead server neither sends nor relays).
dssync::topology::network without(dssync::topology::network g, const std::vector<int>& failed) {
  for (int f : failed) boost::clear_vertex(static_cast<std::size_t>(f), g);
  return g;
}

network_case make_bcube(const bcube_shape& b, const dssync::topology::link& l, const std::vector<int>& failed) {
  const dssync::topology::bcube t(b.n, b.k, l);
  network_case c;
  c.label = b.label();
  c.is_bcube = true;
  c.graph = without(t.graph(), failed);
  c.racks = t.racks();
  c.router = std::make_unique<dssync::sim::router>(c.graph);
  return c;
}

network_case make_fat_tree(int servers, const dssync::topology::link& l, const std::vector<int>& failed) {
  const int k = fat_tree_k_for(servers);
  const dssync::topology::fat_tree t(k, l);
  network_case c;
  c.label = "fat_tree(" + std::to_string(k) + ")";
  if (t.workers() != servers) c.label += "[" + std::to_string(servers) + "/" + std::to_string(t.workers()) + "]";
  c.graph = without(t.graph(), failed);
  const int per_edge = k / 2;
  for (int r = 0; r < servers; ++r) {
    if (r % per_edge == 0) c.racks.emplace_back();
    c.racks.back().push_back(r);
  }
  c.router = std::make_unique<dssync::sim::router>(c.graph);
  return c;
}

/// The participants: 0..N-1 without `failed`, in increasing rank.
std::vector<int> survivors_of(int n, const std::vector<int>& failed) {
  std::vector<int> s;
  for (int r = 0; r < n; ++r)
    if (std::find(failed.begin(), failed.end(), r) == failed.end()) s.push_back(r);
  return s;
}

/// The plan of `policy` for the survivors, placed on their servers (schedule::hosts) when some failed.
schedule plan_for(const std::string& policy, const bcube_shape& b, const network_case& net,
                  const std::vector<int>& failed, std::size_t count) {
  const int n = b.servers();
  const auto alive = survivors_of(n, failed);
  const int m = static_cast<int>(alive.size());
  schedule s;
  if (policy == "bml") {
    const dssync::topology::bcube t(b.n, b.k);
    s = dssync::algorithms::bcube{}.plan_without(t, failed, {count, 0});
  } else if (policy == "ring") {
    s = dssync::algorithms::ring::build(m, count);
  } else {  // hierarchical: the network's racks without the dead, in survivor numbering
    std::vector<int> index(static_cast<std::size_t>(n), -1);
    for (int i = 0; i < m; ++i) index[static_cast<std::size_t>(alive[static_cast<std::size_t>(i)])] = i;
    std::vector<std::vector<int>> racks;
    for (const auto& g : net.racks) {
      std::vector<int> live;
      for (int r : g)
        if (index[static_cast<std::size_t>(r)] >= 0) live.push_back(index[static_cast<std::size_t>(r)]);
      if (!live.empty()) racks.push_back(std::move(live));
    }
    s = dssync::algorithms::hierarchical::build(std::move(racks), count, m);
  }
  if (!failed.empty() && s.hosts.empty()) s.hosts = alive;
  if (!failed.empty() && s.hosts != alive)
    throw std::runtime_error(policy + ": the plan does not run on the survivors' servers in increasing order");
  return s;
}

struct outcome {
  double time = 0;
  std::size_t flows = 0;
  int ranks = 0;
};

/// Plans (verified once per plan shape), simulates, returns the completion time.
outcome run_one(const std::string& policy, const bcube_shape& b, network_case& net, const std::vector<int>& failed,
                std::size_t count, double latency, std::map<std::string, bool>& verified, bool lockstep = false) {
  const schedule s = plan_for(policy, b, net, failed, count);
  const std::string key = policy + "|" + b.label() + "|" + net.label + "|" + std::to_string(failed.size()) + "|" +
                          std::to_string(count);
  if (!verified[key]) {
    dssync::verify_or_throw(s);
    verified[key] = true;
  }
  dssync::sim::sim_options o;
  o.latency = latency;
  o.lockstep = lockstep;
  const auto res = dssync::sim::simulate(s, *net.router, o);
  return {res.completion_time, res.flows, s.world_size};
}

int run(int argc, char** argv) {
  cli args("bcube_sim",
           "BML (algorithms::bcube) vs ring and hierarchical allreduce on BCube and on a fat tree, in the\n"
           "flow-level simulator, with and without a failed server; BML's Table II beside simulated times.");
  args.flag("--smoke", "tiny run (BCube(3,2), one size, schedules verified); well under a second")
      .option("--bcube", "LIST", "BCube shapes for the main table, NxK (default 3x2,4x2)")
      .option("--sizes", "MIN:MAX", "bytes per server, x16 steps (default 64K:256M)")
      .option("--step", "F", "size multiplier between steps (default 16)")
      .option("--latency", "LIST", "per-link latencies in microseconds (default 0,5)")
      .option("--gbps", "G", "every cable's bandwidth in Gbit/s (default 8, so T_F = S / 1 GB/s)")
      .option("--fail", "R", "the failed server's rank (default 0, address [0,..,0])")
      .option("--t2-bytes", "S", "bytes per server of the Table II section (default 1G)")
      .option("--csv", "FILE", "also write the main table as CSV")
      .option("--svg", "FILE", "plot busbw vs size at the largest latency, one line per (network, policy, failure)");
  if (!args.parse(argc, argv)) return 0;
  const bool smoke = args.has("--smoke");
  std::vector<bcube_shape> shapes{{3, 2}, {4, 2}};
  if (auto v = args.get("--bcube")) {
    shapes.clear();
    for (const auto& s : parse_list(*v)) shapes.push_back(parse_shape(s));
  }
  std::size_t lo = 64 << 10, hi = std::size_t{256} << 20, step = 16;
  if (auto v = args.get("--sizes")) {
    std::tie(lo, hi) = parse_size_range(*v);
  }
  if (auto v = args.get("--step")) step = static_cast<std::size_t>(parse_long(*v, "--step"));
  std::vector<double> latencies{0.0, 5e-6};
  if (auto v = args.get("--latency")) {
    latencies.clear();
    for (const auto& s : parse_list(*v)) latencies.push_back(std::stod(s) * 1e-6);
  }
  const double gbps = args.has("--gbps") ? std::stod(*args.get("--gbps")) : 8.0;
  if (!(gbps > 0)) throw std::invalid_argument("--gbps must be positive");
  const int fail = args.has("--fail") ? static_cast<int>(parse_long(*args.get("--fail"), "--fail")) : 0;
  std::size_t t2_bytes = args.has("--t2-bytes") ? parse_bytes(*args.get("--t2-bytes")) : (std::size_t{1} << 30);
  if (smoke) {
    shapes = {{3, 2}};
    lo = hi = 1 << 20;
    t2_bytes = 1 << 20;
  }
  if (lo < 4 || hi < lo) throw std::invalid_argument("--sizes: need 4 <= MIN <= MAX");
  const auto sizes = size_sweep(lo, hi, step);
  const dssync::topology::link cable{gbps * 1e9 / 8.0, 0.0};
  const double link_Bps = cable.bandwidth;

  std::cout << "# bcube_sim: flow-level simulation (sim::simulate), float sum allreduce, every cable " << fixed(gbps, 1)
            << " Gbit/s (" << fixed(link_Bps / 1e9, 3) << " GB/s); T_F = S / " << fixed(link_Bps / 1e9, 3)
            << " GB/s\n"
            << "# networks: BCube(n,k) (k ports per server) and the smallest fat tree with >= N hosts (1 port per "
               "server, non-blocking), same cable\n"
            << "# failure: server " << fail << " dead, its cables removed; bml re-plans with plan_without, ring and "
               "hierarchical run over the N-1 survivors on the same servers (schedule::hosts)\n"
            << "# x_bml = time / bml time on BCube, same size, latency and failure (> 1: slower than bml)\n";
  table t({{"network", 22}, {"policy", 12}, {"failed", 6}, {"ranks", 5}, {"size(B)", 11}, {"lat(us)", 7},
           {"time(us)", 12}, {"algbw(GB/s)", 11}, {"busbw(GB/s)", 11}, {"x_bml", 6}, {"time/T_F", 8}, {"flows", 7},
           {"peakRSS(MiB)", 12}});
  t.print_header(std::cout);
  std::map<std::string, bool> verified;
  std::map<std::string, series> plot;
  std::vector<std::string> plot_order;
  const double plot_latency = *std::max_element(latencies.begin(), latencies.end());
  const auto wall0 = steady::now();
  for (const auto& b : shapes) {
    const int n = b.servers();
    if (fail < 0 || fail >= n)
      throw std::invalid_argument("--fail: server " + std::to_string(fail) + " is not in 0.." + std::to_string(n - 1) +
                                  " of " + b.label());
    for (const std::vector<int>& failed : {std::vector<int>{}, std::vector<int>{fail}}) {
      network_case bc = make_bcube(b, cable, failed);
      network_case ft = make_fat_tree(n, cable, failed);
      for (double lat : latencies) {
        for (std::size_t bytes : sizes) {
          const std::size_t count = bytes / 4;
          const double sb = static_cast<double>(count * 4);
          double bml_time = 0;
          for (auto [net, policy] : std::vector<std::pair<network_case*, std::string>>{
                   {&bc, "bml"}, {&bc, "ring"}, {&bc, "hierarchical"}, {&ft, "ring"}, {&ft, "hierarchical"}}) {
            const outcome o = run_one(policy, b, *net, failed, count, lat, verified);
            if (policy == "bml") bml_time = o.time;
            const double algbw = sb / o.time / 1e9;
            const double busbw = algbw * allreduce_bus_factor(o.ranks);
            t.row(std::cout, {net->label, policy, failed.empty() ? "-" : std::to_string(failed[0]),
                              std::to_string(o.ranks), std::to_string(count * 4), fixed(lat * 1e6, 1),
                              fixed(o.time * 1e6, 1), fixed(algbw, 3), fixed(busbw, 3), fixed(o.time / bml_time, 2),
                              fixed(o.time / (sb / link_Bps), 3), std::to_string(o.flows),
                              fixed(static_cast<double>(peak_rss_bytes()) / 1048576.0, 1)});
            if (lat == plot_latency) {
              const std::string key = b.label() + " " + policy + (net->is_bcube ? "" : " on fat tree") +
                                      (failed.empty() ? "" : " (1 failed)");
              if (!plot.count(key)) plot_order.push_back(key);
              plot[key].label = key;
              plot[key].points.emplace_back(sb, busbw);
            }
          }
        }
      }
    }
  }
  const double wall_main = std::chrono::duration<double>(steady::now() - wall0).count();

  // --- BML Table II ---------------------------------------------------------------------------------
  std::cout << "#\n# BML Table II (seed 003) beside the simulator, S = " << human_bytes(static_cast<double>(t2_bytes))
            << " per server, latency 0, T_F = S / link bandwidth = " << fixed(static_cast<double>(t2_bytes) / link_Bps, 4)
            << " s\n"
            << "#   theory: Fat-Tree 2(N-1)/N·T_F, BML 2(N-1)/(k·N)·T_F, so BML/FT = 1/k; simulated: ring on the fat "
               "tree, bml on BCube; bml_fail = bml with server "
            << fail << " failed (plan_without), free-running and in lockstep (a barrier between stages, how the seed "
               "counts: 18 T_C = 9/8 T_F for [0,0] of BCube(3,2)); ring_fail = ring over the survivors on the fat tree\n";
  table t2({{"bcube", 11}, {"N", 3}, {"k", 2}, {"FT_theory/T_F", 13}, {"FT_sim/T_F", 10}, {"BML_theory/T_F", 15},
            {"BML_sim/T_F", 11}, {"sim/theory", 10}, {"BML/FT_theory", 13}, {"BML/FT_sim", 10}, {"bml_fail/T_F", 12},
            {"bml_fail_lockstep/T_F", 21}, {"ring_fail/T_F", 13}});
  t2.print_header(std::cout);
  const std::vector<bcube_shape> t2_shapes = smoke ? std::vector<bcube_shape>{{3, 2}}
                                                   : std::vector<bcube_shape>{{3, 2}, {2, 3}, {4, 2}, {3, 3}};
  const std::size_t count2 = t2_bytes / 4;
  const double T_F = static_cast<double>(count2 * 4) / link_Bps;
  for (const auto& b : t2_shapes) {
    const int n = b.servers();
    const double N = n, k = b.k;
    const double ft_theory = 2 * (N - 1) / N, bml_theory = 2 * (N - 1) / (k * N);
    network_case bc = make_bcube(b, cable, {}), ft = make_fat_tree(n, cable, {});
    const double bml = run_one("bml", b, bc, {}, count2, 0.0, verified).time / T_F;
    const double ring = run_one("ring", b, ft, {}, count2, 0.0, verified).time / T_F;
    const int f = std::min(fail, n - 1);
    network_case bcf = make_bcube(b, cable, {f}), ftf = make_fat_tree(n, cable, {f});
    const double bml_f = run_one("bml", b, bcf, {f}, count2, 0.0, verified).time / T_F;
    const double bml_fl = run_one("bml", b, bcf, {f}, count2, 0.0, verified, true).time / T_F;
    const double ring_f = run_one("ring", b, ftf, {f}, count2, 0.0, verified).time / T_F;
    t2.row(std::cout, {b.label(), std::to_string(n), std::to_string(b.k), fixed(ft_theory, 4), fixed(ring, 4),
                       fixed(bml_theory, 4), fixed(bml, 4), fixed(bml / bml_theory, 4), fixed(bml_theory / ft_theory, 4),
                       fixed(bml / ring, 4), fixed(bml_f, 4), fixed(bml_fl, 4), fixed(ring_f, 4)});
  }
  std::cout << "# " << verified.size() << " distinct schedules verified; main table in " << fixed(wall_main, 2)
            << " s of wall time; peak RSS " << fixed(static_cast<double>(peak_rss_bytes()) / 1048576.0, 1) << " MiB\n";

  if (auto csv = args.get("--csv")) {
    t.write_csv(*csv);
    std::cout << "# wrote " << *csv << '\n';
  }
  if (auto svg = args.get("--svg")) {
    std::vector<series> lines;
    for (const auto& k : plot_order) lines.push_back(plot[k]);
    write_svg_plot(*svg,
                   "allreduce on BCube vs fat tree (simulated, " + fixed(gbps, 0) + " Gbit/s cables, " +
                       fixed(plot_latency * 1e6, 1) + " us per link)",
                   "bytes per server", "busbw (GB/s)", lines);
    std::cout << "# wrote " << *svg << '\n';
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return guarded_main("bcube_sim", run, argc, argv); }
