// dssync-sim: plays one collective of a dssync policy on a simulated network and reports its time
// next to the cost model's prediction and the collective's lower bound, as nccl-tests' all_reduce_perf
// does for NCCL on real hardware.
//
//   dssync-sim --topology bcube:3,2,bw=8 --policy bcube --bytes 1G --latency 0 --json
//
// Run `dssync-sim --help` for the options. Exit status: 0 success; 2 bad command line or input (unknown
// option, bad topology spec, unknown policy, ...); 3 the schedule failed verification; 1 any other error.

#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include <dssync/algorithms/bounds.hpp>
#include <dssync/algorithms/cost_model.hpp>
#include <dssync/algorithms/encoded_allgather.hpp>
#include <Eigen/Core>  // codecs/half.hpp (fp16, bf16) needs Eigen (this include tags the tool for CMake)
#include <dssync/algorithms/encoded_ring.hpp>
#include <dssync/codecs/dgc.hpp>
#include <dssync/codecs/half.hpp>
#include <dssync/codecs/identity.hpp>
#include <dssync/codecs/onebit.hpp>
#include <dssync/codecs/qsgd.hpp>
#include <dssync/codecs/randomk.hpp>
#include <dssync/codecs/terngrad.hpp>
#include <dssync/codecs/threshold.hpp>
#include <dssync/codecs/topk.hpp>
#include <dssync/algorithms/registry.hpp>
#include <dssync/algorithms/tree.hpp>
#include <dssync/core/chunking.hpp>
#include <dssync/core/error.hpp>
#include <dssync/core/schedule.hpp>
#include <dssync/core/verifier.hpp>
#include <dssync/sim/scenario.hpp>
#include <dssync/sim/simulator.hpp>
#include <dssync/sim/timeline.hpp>
#include <dssync/topology/graphviz.hpp>
#include <dssync/topology/spec.hpp>
#include <dssync/version.hpp>

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <iterator>
#include <limits>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace po = boost::program_options;
namespace alg = dssync::algorithms;
namespace topo = dssync::topology;
using json = nlohmann::ordered_json;

namespace {

constexpr int exit_error = 1;     // anything else (the simulator refused the schedule, ...)
constexpr int exit_usage = 2;     // bad command line or input
constexpr int exit_unverified = 3;

/// A bad command line or input: printed with a pointer to --help, exit status 2.
struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// ---------------------------------------------------------------------------------------------------
// Parsing helpers
// ---------------------------------------------------------------------------------------------------

/// "4096", "64K", "16M", "1G", "1T", also "64KiB", "64KB" (binary multiples: K = 1024).
std::uint64_t parse_size(std::string_view text) {
  const std::string original(text);
  while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
  std::uint64_t v = 0;
  const auto r = std::from_chars(text.data(), text.data() + text.size(), v);
  if (r.ec == std::errc::result_out_of_range) throw usage_error("--bytes '" + original + "' is too large");
  if (r.ec != std::errc{} || r.ptr == text.data())
    throw usage_error("--bytes '" + original + "' is not a size (a byte count, with an optional K, M, G or T suffix)");
  std::string unit(r.ptr, text.data() + text.size());
  for (auto& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (unit.size() >= 2 && (unit.ends_with("IB") || (unit.size() == 2 && unit.back() == 'B'))) {
    unit.resize(unit.ends_with("IB") ? unit.size() - 2 : unit.size() - 1);
  } else if (unit == "B") {
    unit.clear();
  }
  unsigned shift = 0;
  if (unit.empty()) shift = 0;
  else if (unit == "K") shift = 10;
  else if (unit == "M") shift = 20;
  else if (unit == "G") shift = 30;
  else if (unit == "T") shift = 40;
  else
    throw usage_error("--bytes '" + original + "': unknown suffix (use K, M, G or T, binary multiples)");
  if (shift > 0 && v > (std::numeric_limits<std::uint64_t>::max() >> shift))
    throw usage_error("--bytes '" + original + "' is too large");
  return v << shift;
}

/// "0,3,5" -> {0, 3, 5}.
std::vector<int> parse_rank_list(const std::string& text, const char* option) {
  std::vector<int> out;
  std::size_t at = 0;
  while (at <= text.size()) {
    const auto comma = text.find(',', at);
    std::string item = text.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
    while (!item.empty() && item.front() == ' ') item.erase(item.begin());
    while (!item.empty() && item.back() == ' ') item.pop_back();
    int v = 0;
    const auto r = std::from_chars(item.data(), item.data() + item.size(), v);
    if (item.empty() || r.ec != std::errc{} || r.ptr != item.data() + item.size() || v < 0)
      throw usage_error(std::string(option) + " '" + text + "': '" + item + "' is not a rank (a comma list such as 0,3)");
    out.push_back(v);
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  return out;
}

std::string read_text_file(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw usage_error(std::string(what) + " file '" + path + "' cannot be opened");
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// ---------------------------------------------------------------------------------------------------
// Formatting helpers
// ---------------------------------------------------------------------------------------------------

std::string fixed(double x, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, x);
  return buf;
}

/// 0.954 -> "954.437 ms".
std::string format_time(double s) {
  if (!std::isfinite(s)) return "-";
  const double a = std::fabs(s);
  if (a == 0) return "0 s";
  if (a >= 1) return fixed(s, 4) + " s";
  if (a >= 1e-3) return fixed(s * 1e3, 4) + " ms";
  if (a >= 1e-6) return fixed(s * 1e6, 4) + " us";
  return fixed(s * 1e9, 4) + " ns";
}

/// 1073741824 -> "1 GiB".
std::string format_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024.0 && u < 4) {
    b /= 1024.0;
    ++u;
  }
  std::string s = fixed(b, b == std::floor(b) ? 0 : 2);
  return s + " " + units[u];
}

/// Bytes/s as "1 GB/s" (decimal, as nccl-tests).
std::string format_rate(double bps) { return fixed(bps / 1e9, 3) + " GB/s"; }

// ---------------------------------------------------------------------------------------------------
// Broadcast and reduce: the library's chain and binomial tree, with dssync-sim's estimates
// ---------------------------------------------------------------------------------------------------

constexpr std::string_view chain_name = dssync::algorithms::chain::name;
constexpr std::string_view tree_name = dssync::algorithms::binomial_tree::name;
/// Pieces the head of a chain may have in flight before it waits for an acknowledgement (see
/// `blocks::chain`). One is enough: with two, the pair shares the link and arrives together, which
/// doubles each hop's delay; the optimum over the piece count is the same.
constexpr std::size_t chain_window = 1;
constexpr std::size_t max_chain_pieces = dssync::algorithms::chain::max_pieces;

/// Alpha-beta estimates of the two on single-port workers (dssync-sim's own; cost_model.hpp has none for
/// broadcast or reduce).
/// Chain of P pieces: the textbook (N-2+P)(α + S/P·β), plus (P-1)·α for the head's wait for each
/// acknowledgement (its round trip is 2α where a piece's hop is α).
double chain_estimate(int n, double bytes, std::size_t pieces, alg::link_params lp) {
  if (n <= 1) return 0;
  const double P = static_cast<double>(std::max<std::size_t>(pieces, 1));
  return (n - 2 + P) * (lp.alpha + bytes / P * lp.beta) + (P - 1) * lp.alpha;
}
/// Binomial tree of depth D = ceil(log2 N). Broadcast: a rank sends all its copies at once, so the root's
/// D copies share its port and each level's sender has one copy fewer: D·α + D(D+1)/2·S·β. Reduce: a
/// rank's children send at once into its port, D copies at the root: D·(α + S·β).
double tree_estimate(dssync::semantics kind, int n, double bytes, alg::link_params lp) {
  if (n <= 1) return 0;
  const double D = std::bit_width(static_cast<unsigned>(n - 1));
  if (kind == dssync::semantics::reduce) return D * (lp.alpha + bytes * lp.beta);
  return D * lp.alpha + D * (D + 1) / 2 * bytes * lp.beta;
}
/// Pieces for a chain: sqrt((N-2)·S·β/(2α)), the optimum of chain_estimate, at most 256 and `count`.
std::size_t auto_chain_pieces(int n, double bytes, std::size_t count, alg::link_params lp) {
  double p = static_cast<double>(max_chain_pieces);
  if (n <= 2) p = 1;
  else if (lp.alpha > 0) p = std::sqrt((n - 2) * bytes * lp.beta / (2 * lp.alpha));
  const auto pieces = static_cast<std::size_t>(std::clamp(std::round(p), 1.0, static_cast<double>(max_chain_pieces)));
  return std::clamp<std::size_t>(pieces, 1, std::max<std::size_t>(count, 1));
}

// ---------------------------------------------------------------------------------------------------
// Bounds
// ---------------------------------------------------------------------------------------------------

/// Per rank: the summed bandwidth (bytes/s) of the links leaving and entering its worker vertex.
struct nic_bandwidth {
  std::vector<double> out, in;
};

nic_bandwidth nic_bandwidths(const topo::network& g, int n) {
  nic_bandwidth b;
  b.out.assign(static_cast<std::size_t>(n), 0.0);
  b.in.assign(static_cast<std::size_t>(n), 0.0);
  for (auto [it, end] = boost::edges(g); it != end; ++it) {
    const auto& s = g[boost::source(*it, g)];
    const auto& t = g[boost::target(*it, g)];
    if (s.kind == topo::node_kind::worker && s.rank >= 0 && s.rank < n)
      b.out[static_cast<std::size_t>(s.rank)] += g[*it].bandwidth;
    if (t.kind == topo::node_kind::worker && t.rank >= 0 && t.rank < n)
      b.in[static_cast<std::size_t>(t.rank)] += g[*it].bandwidth;
  }
  return b;
}

/// The topology as the cost model sees it with --latency: every link at that latency.
struct with_latency {
  const topo::any_topology* t = nullptr;
  std::optional<double> latency;
  [[nodiscard]] int workers() const { return t->workers(); }
  [[nodiscard]] std::string name() const { return t->name(); }
  void validate(int world) const { t->validate(world); }
  [[nodiscard]] std::vector<std::vector<int>> racks() const { return t->racks(); }
  [[nodiscard]] topo::network graph() const {
    topo::network g = t->graph();
    if (latency)
      for (auto [it, end] = boost::edges(g); it != end; ++it) g[*it].latency = *latency;
    return g;
  }
};

// ---------------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------------

struct config {
  std::string topology;
  std::string policy = "auto";
  std::string bytes_text;
  std::string collective = "allreduce";
  int root = 0;
  std::string background;
  std::string fail;
  std::optional<double> latency;
  std::string trace;
  bool json = false;
  std::size_t pieces = 0;
  std::size_t element_size = 4;
  std::uint64_t iteration = 0;
  std::uint64_t iterations = 1;
  int top_links = 5;
  std::string mode = "exact";  // tree packing: exact or blink
  std::string link_class;      // tree packing: the link classes packed ("nvlink"; "nvlink,pcie+socket" packs sets apart)
  std::string codec;           // allreduce through a codec: NAME[:PARAM]
  double codec_gbps = 0;       // the codec's encode/decode rate, GB/s (0: free)
};

std::string policy_list() { return alg::registry().known(); }

/// What one run found.
struct report {
  std::string policy, requested_policy, topology, spec, collective, semantics;
  int workers = 0, participants = 0, root = -1;
  std::vector<int> failed;
  std::uint64_t bytes = 0;
  std::size_t element_size = 4, count = 0, pieces = 0, channels = 0, steps = 0;
  std::optional<double> latency;
  double time = 0;
  std::optional<double> model;
  std::string model_source, note;
  double bound = 0;
  std::string bound_rule;
  double bound_nic = 0;  // bytes/s the bound divides by (per part for allreduce)
  int bound_parts = 0;   // allreduce: the parts C of the binding partition (0: none reported)
  std::string bound_partition;
  double busbw_factor = 1;
  bool verified = false;
  std::string verify_message;
  std::size_t verify_messages = 0;
  dssync::sim::sim_result sim;
  std::optional<double> lockstep;  // time with a barrier between stages (schedules with step::stage)
  std::uint32_t stages = 0;
  std::string trace_file;
  std::uint64_t iteration = 0;
  std::vector<std::vector<int>> groups;  // a group allreduce's groups
  // --policy tree: the packing behind the plan.
  bool tree = false;
  std::string tree_mode, link_class;
  double tree_rate = 0, tree_bound = 0;  // bytes/s
  std::size_t trees = 0;
  // --codec: the allreduce of encoded payloads.
  std::string codec;
  std::size_t slot_bytes = 0, payload_bytes = 0;  // the plan's bound and the payload measured on a gradient
};

/// The payload bound and the payload of `spec`'s codec ("topk:0.01") on `count` Gaussian floats (seeded),
/// and the codec's name. An elementwise codec (identity, fp16, bf16) runs as the encoded ring on `n`
/// ranks: its sizes are those of the largest part. PowerSGD (a matrix codec) is not offered here.
struct codec_sizes {
  std::string name;
  std::size_t bound = 0, payload = 0;  // a slot's bound; the payload of the whole tensor
  std::size_t message = 0;             // the bytes a message is expected to carry
  bool ring = false;                   // algorithms::encoded_ring, else encoded_allgather
};
codec_sizes measure_codec(const std::string& spec, std::size_t count, int n) {
  namespace cd = dssync::codecs;
  const auto colon = spec.find(':');
  const std::string name = spec.substr(0, colon);
  double p = 0;
  const bool has_p = colon != std::string::npos;
  if (has_p) {
    const std::string arg = spec.substr(colon + 1);
    std::size_t used = 0;
    try {
      p = std::stod(arg, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != arg.size() || !(p > 0)) throw usage_error("--codec " + spec + ": '" + arg + "' is not a positive number");
  }
  std::mt19937 rng(1);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> g(count);
  for (auto& x : g) x = d(rng);
  auto sizes = [&](auto c) {
    if constexpr (dssync::is_elementwise_codec<decltype(c)>) {
      const std::size_t part = alg::encoded_ring::largest_part(count, n);
      const std::size_t bound = c.max_encoded_bytes(part);
      return codec_sizes{std::string(decltype(c)::name), bound, c.max_encoded_bytes(count), bound, true};
    }
    std::vector<std::byte> w;
    try {
      c.encode(std::span<const float>(g), w);
    } catch (const dssync::invalid_argument& e) {
      throw usage_error("--codec " + spec + ": " + e.what());
    }
    return codec_sizes{std::string(decltype(c)::name), c.max_encoded_bytes(count), w.size(), w.size(), false};
  };
  auto whole = [&](double dflt) { return static_cast<std::size_t>(has_p ? p : dflt); };
  if (name == "identity") return sizes(cd::identity<float>{});
  if (name == "fp16") return sizes(cd::fp16<float>{});
  if (name == "bf16") return sizes(cd::bf16<float>{});
  if (name == "onebit") return sizes(cd::onebit<float>(whole(4096)));
  if (name == "qsgd") return sizes(cd::qsgd<float>(static_cast<std::uint32_t>(whole(16))));
  if (name == "terngrad") return sizes(cd::terngrad<float>(whole(4096)));
  if (name == "threshold") return sizes(cd::threshold<float>(static_cast<float>(has_p ? p : 2.0)));
  if (name == "topk") return sizes(cd::topk<float>(has_p ? p : 0.01));
  if (name == "randomk") return sizes(cd::randomk<float>(has_p ? p : 0.01));
  if (name == "dgc") return sizes(cd::dgc<float>(has_p ? p : 0.001));
  throw usage_error("--codec '" + spec + "' is not a codec here (identity, fp16, bf16, onebit, qsgd, terngrad, threshold, topk, randomk, dgc; NAME[:PARAM])");
}

/// The plan of the registered policy `name` on `t`, around the ranks `failed` when there are any (for
/// every policy with `plan_without`).
dssync::schedule plan_allreduce(std::string_view name, const topo::any_topology& t, const std::vector<int>& failed,
                                const dssync::plan_request& q) {
  const alg::policy_entry& e = alg::registry().at(name);
  if (name == alg::bcube::name && t.get_if<topo::bcube>() == nullptr)
    throw usage_error("policy bcube needs a BCube topology (--topology bcube:N,K), not " + t.name());
  if (failed.empty()) return e.plan(t, q);
  if (!e.can_replan()) {
    std::string list;
    for (int r : failed) {
      if (!list.empty()) list += ',';
      list += std::to_string(r);
    }
    throw usage_error("policy " + e.name + " cannot plan around failed ranks (--fail " + list +
                      "): it has no plan_without(topology, failed_ranks, plan_request)");
  }
  return e.plan_without(t, failed, q);
}

report run(const config& cfg) {
  report rep;
  rep.spec = cfg.topology;
  // Topology.
  const topo::any_topology any = [&] {
    try {
      return topo::parse_spec(cfg.topology, [](const std::string& path) { return topo::read_dot_file(path); });
    } catch (const dssync::invalid_argument& e) {
      throw usage_error(e.what());
    }
  }();
  const int n = any.workers();
  rep.topology = any.name();
  rep.workers = n;
  const topo::network graph = any.graph();

  // Size.
  rep.element_size = cfg.element_size;
  if (cfg.element_size == 0) throw usage_error("--element-size must be at least 1");
  rep.bytes = parse_size(cfg.bytes_text);
  if (rep.bytes % cfg.element_size != 0)
    throw usage_error("--bytes " + std::to_string(rep.bytes) + " is not a multiple of the element size " +
                      std::to_string(cfg.element_size) + " (see --element-size)");
  rep.count = static_cast<std::size_t>(rep.bytes / cfg.element_size);
  const double S = static_cast<double>(rep.bytes);

  // Collective.
  dssync::semantics kind = dssync::semantics::allreduce;
  if (cfg.collective == "allreduce") kind = dssync::semantics::allreduce;
  else if (cfg.collective == "broadcast") kind = dssync::semantics::broadcast;
  else if (cfg.collective == "reduce") kind = dssync::semantics::reduce;
  else if (cfg.collective == "reduce_scatter") kind = dssync::semantics::reduce_scatter;
  else if (cfg.collective == "allgather") kind = dssync::semantics::allgather;
  else
    throw usage_error("--collective '" + cfg.collective +
                      "' is not allreduce, reduce_scatter, allgather, broadcast or reduce");
  rep.collective = cfg.collective;
  if (cfg.root < 0 || cfg.root >= n)
    throw usage_error("--root " + std::to_string(cfg.root) + " is not a rank of " + rep.topology + " (0.." +
                      std::to_string(n - 1) + ")");

  // Failed ranks.
  if (!cfg.fail.empty()) {
    rep.failed = parse_rank_list(cfg.fail, "--fail");
    std::sort(rep.failed.begin(), rep.failed.end());
    if (std::adjacent_find(rep.failed.begin(), rep.failed.end()) != rep.failed.end())
      throw usage_error("--fail '" + cfg.fail + "' names a rank twice");
    if (rep.failed.back() >= n)
      throw usage_error("--fail '" + cfg.fail + "': rank " + std::to_string(rep.failed.back()) + " is not a rank of " +
                        rep.topology + " (0.." + std::to_string(n - 1) + ")");
    if (static_cast<int>(rep.failed.size()) >= n) throw usage_error("--fail '" + cfg.fail + "' leaves no rank alive");
  }

  // Latency: with --latency, the estimates see every link at the overridden latency.
  rep.latency = cfg.latency;
  const with_latency model_topo{&any, cfg.latency};
  const alg::link_params lp = alg::worker_link_params(model_topo);

  // Schedule.
  dssync::schedule sched;
  const dssync::plan_request q{rep.count, cfg.iteration};
  rep.requested_policy = cfg.policy;
  if (!cfg.link_class.empty() && cfg.policy != alg::tree::name)
    throw usage_error("--link-class packs trees: it needs --policy tree");
  if (cfg.policy != alg::tree::name && cfg.mode != "exact" && !cfg.mode.empty())
    throw usage_error("--mode picks the tree packing: it needs --policy tree");
  if (cfg.policy == alg::tree::name) {
    // Trees packed on the whole network, or on one link class of a DGX-1 (Blink packs NVLink and PCIe
    // separately); the plan is simulated on the whole network either way.
    alg::tree tp;
    if (cfg.mode == "exact") tp.mode = alg::trees::pack_mode::exact;
    else if (cfg.mode == "blink") tp.mode = alg::trees::pack_mode::blink;
    else throw usage_error("--mode '" + cfg.mode + "' is not a tree packing (exact or blink)");
    if (kind != dssync::semantics::allreduce && kind != dssync::semantics::broadcast && kind != dssync::semantics::reduce)
      throw usage_error("policy tree plans allreduce, broadcast and reduce, not " + cfg.collective);
    if (!rep.failed.empty()) throw usage_error("policy tree cannot plan around failed ranks (--fail)");
    dssync::plan_request qk = q;
    qk.collective = kind;
    qk.root = cfg.root;
    // --link-class: sets separated by ',' (packed apart, Blink's NVLink and PCIe trees), classes in a set
    // joined by '+' ("nvlink,pcie+socket").
    if (!cfg.link_class.empty()) {
      try {
        tp.link_sets = dssync::parse_link_sets(cfg.link_class);
      } catch (const dssync::invalid_argument& e) {
        throw usage_error(std::string("--link-class: ") + e.what());
      }
    }
    try {
      const auto ps = tp.packings_for(any, qk);  // packed once: the plan is made from them
      sched = tp.plan(any.workers(), qk, ps);
      for (const auto& p : ps) {
        rep.tree_rate += p.rate;
        rep.tree_bound += p.bound;
        rep.trees += p.tree_count();
      }
    } catch (const dssync::invalid_argument& e) {
      throw usage_error(e.what());
    }
    rep.policy = std::string(alg::tree::name);
    rep.tree = true;
    rep.tree_mode = cfg.mode;
    rep.link_class = cfg.link_class.empty() ? "all" : cfg.link_class;
    if (kind != dssync::semantics::allreduce) rep.root = cfg.root;
  } else if (kind == dssync::semantics::allreduce && !cfg.codec.empty()) {
    // The allreduce of encoded payloads (IR v2): slots bounded by the codec, messages charged the payload
    // the codec writes for a Gaussian gradient of this size. Elementwise codecs reduce-scatter and
    // allgather encoded parts (encoded-ring), the others allgather whole payloads (encoded-allgather).
    if (cfg.element_size != 4) throw usage_error("--codec encodes float32 elements: --element-size must be 4");
    if (!rep.failed.empty()) throw usage_error("--codec cannot plan around failed ranks (--fail)");
    if (!(cfg.codec_gbps >= 0)) throw usage_error("--codec-gbps must not be negative");
    const auto c = measure_codec(cfg.codec, rep.count, n);
    const std::string_view plan_name = c.ring ? alg::encoded_ring::name : alg::encoded_allgather::name;
    if (cfg.policy != "auto" && cfg.policy != plan_name)
      throw usage_error("--codec " + c.name + " plans policy " + std::string(plan_name) + ", not " + cfg.policy);
    rep.codec = cfg.codec;
    rep.slot_bytes = std::max<std::size_t>(1, c.bound);
    rep.payload_bytes = c.payload;
    sched = c.ring ? alg::encoded_ring::plan(n, rep.count, rep.slot_bytes, c.name, c.message)
                   : alg::encoded_allgather::plan(n, rep.count, rep.slot_bytes, c.name, c.message);
    rep.policy = sched.policy;
  } else if (kind == dssync::semantics::allreduce) {
    std::string name = cfg.policy;
    if (name == "auto") {
      name = std::string(alg::best_policy(model_topo, S, cfg.element_size));  // honours DSSYNC_ALGO
    } else {
      const auto names = alg::policy_names();
      if (std::find(names.begin(), names.end(), name) == names.end())
        throw usage_error("unknown policy '" + name + "' for allreduce (policies: " + policy_list() + ", auto)");
    }
    rep.policy = name;
    try {
      sched = plan_allreduce(name, any, rep.failed, q);
    } catch (const dssync::invalid_argument& e) {
      throw usage_error(e.what());
    }
  } else if (dssync::has_blocks(kind)) {
    const std::string name = cfg.policy == "auto" ? std::string(alg::ring::name) : cfg.policy;
    const alg::policy_entry* e = alg::registry().find(name);
    if (e == nullptr || !e->plans(kind)) {
      std::string list;
      for (auto p : alg::policy_names())
        if (alg::registry().at(p).plans(kind)) list += std::string(p) + ", ";
      throw usage_error("unknown policy '" + name + "' for " + cfg.collective + " (policies: " + list + "auto)");
    }
    if (!rep.failed.empty())
      throw usage_error("policy " + name + " cannot plan a " + cfg.collective + " around failed ranks (--fail)");
    rep.policy = name;
    dssync::plan_request qk = q;
    qk.collective = kind;
    try {
      sched = e->plan(any, qk);
    } catch (const dssync::invalid_argument& x) {
      throw usage_error(x.what());
    }
  } else {
    if (!rep.failed.empty())
      throw usage_error(std::string("policy ") + (cfg.policy == "auto" ? "chain/binomial_tree" : cfg.policy) +
                        " cannot plan around failed ranks (--fail): the " + cfg.collective +
                        " schedules cover every rank");
    std::string name = cfg.policy;
    const std::size_t chain_pieces =
        cfg.pieces > 0 ? std::min<std::size_t>(cfg.pieces, std::max<std::size_t>(rep.count, 1))
                       : auto_chain_pieces(n, S, rep.count, lp);
    if (name == "auto")
      name = chain_estimate(n, S, chain_pieces, lp) <= tree_estimate(kind, n, S, lp) ? std::string(chain_name)
                                                                              : std::string(tree_name);
    dssync::plan_request qk = q;
    qk.collective = kind;
    qk.root = cfg.root;
    if (name == chain_name) {
      rep.pieces = std::max<std::size_t>(std::min(chain_pieces, rep.count), 1);
      sched = alg::chain{.pieces = rep.pieces, .window = chain_window}.plan(any, qk);
    } else if (name == tree_name) {
      sched = alg::binomial_tree{}.plan(any, qk);
    } else {
      throw usage_error("unknown policy '" + name + "' for " + cfg.collective + " (policies: " +
                        std::string(chain_name) + ", " + std::string(tree_name) + ", auto)");
    }
    rep.policy = name;
    rep.root = cfg.root;
  }
  rep.semantics = dssync::to_string(sched.kind);
  rep.iteration = cfg.iteration;
  rep.groups = sched.groups;
  rep.channels = sched.channel_count();
  rep.steps = sched.step_count();

  // Verify.
  const dssync::verification v = dssync::verify(sched);
  rep.verified = v.ok;
  rep.verify_message = v.message;
  rep.verify_messages = v.messages;

  // Participants: every rank, less the failed ones.
  std::vector<int> alive;
  for (int r = 0; r < n; ++r)
    if (!std::binary_search(rep.failed.begin(), rep.failed.end(), r)) alive.push_back(r);
  rep.participants = static_cast<int>(alive.size());
  const int N = rep.participants;

  // Bound.
  const nic_bandwidth nic = nic_bandwidths(graph, n);
  if (kind == dssync::semantics::allreduce) {
    // By cuts (algorithms/bounds.hpp): each rank's NICs, and the parts of the switch hierarchy (racks,
    // pods), whose links leaving and entering them every schedule must cross.
    alg::allreduce_bound b;
    if (sched.kind == dssync::semantics::group_allreduce) {
      // Each group alone must do its own allreduce; the worst group bounds them all.
      double factor = 0;
      for (const auto& grp : sched.groups) {
        const double g = static_cast<double>(grp.size());
        if (g >= 2) factor = std::max(factor, 2 * (g - 1) / g);
      }
      b = alg::group_allreduce_lower_bound(graph, S, sched.groups);
      rep.busbw_factor = factor;
      rep.bound_rule = "group allreduce, by cuts, the worst group alone (Patarasuk & Yuan on contracted parts): " +
                       b.rule + "; " + b.partition;
    } else {
      b = alg::allreduce_lower_bound(graph, S, alive);
      rep.busbw_factor = N > 1 ? 2.0 * (N - 1) / N : 0.0;
      rep.bound_rule = "allreduce, by cuts (Patarasuk & Yuan on contracted parts): " + b.rule + "; " + b.partition;
    }
    if (!rep.codec.empty()) rep.bound_rule += " (of the uncompressed allreduce: a codec moves fewer bytes)";
    rep.bound = b.seconds;
    rep.bound_nic = b.capacity;
    rep.bound_parts = b.parts;
    rep.bound_partition = b.partition;
  } else if (dssync::has_blocks(kind)) {
    // Reduce-scatter: every rank's data for the N-1 other blocks must leave it, (N-1)/N·S; allgather:
    // every rank must receive the N-1 other blocks, (N-1)/N·S.
    const bool rs = kind == dssync::semantics::reduce_scatter;
    double bw = std::numeric_limits<double>::infinity();
    for (int r = 0; r < n; ++r) bw = std::min(bw, rs ? nic.out[static_cast<std::size_t>(r)] : nic.in[static_cast<std::size_t>(r)]);
    rep.bound_nic = bw;
    rep.busbw_factor = n > 1 ? (n - 1.0) / n : 0.0;
    rep.bound = n > 1 ? rep.busbw_factor * S / bw : 0.0;
    rep.bound_rule = rs ? "reduce-scatter: every rank sends its (N-1)/N*S for the other blocks"
                        : "allgather: every rank receives the (N-1)/N*S of the other blocks";
  } else {
    // Broadcast: the root sends S, every other rank receives S. Reduce: the reverse.
    const auto root = static_cast<std::size_t>(cfg.root);
    double bw = kind == dssync::semantics::broadcast ? nic.out[root] : nic.in[root];
    for (int r = 0; r < n; ++r)
      if (r != cfg.root)
        bw = std::min(bw, kind == dssync::semantics::broadcast ? nic.in[static_cast<std::size_t>(r)]
                                                               : nic.out[static_cast<std::size_t>(r)]);
    rep.bound_nic = bw;
    rep.busbw_factor = 1;
    rep.bound = n > 1 ? S / bw : 0.0;
    rep.bound_rule = kind == dssync::semantics::broadcast
                         ? "broadcast: the root sends S and every other rank receives S"
                         : "reduce: the root receives S and every other rank sends S";
  }

  // Cost model.
  if (kind == dssync::semantics::allreduce) {
    if (!rep.failed.empty()) {
      rep.note = "the cost model has no formula for a plan around failed ranks";
    } else if (auto m = alg::try_predict(rep.policy, model_topo, S, cfg.element_size)) {
      rep.model = *m;
      rep.model_source = "cost_model try_predict (step model on the topology graph)";
    } else if (const auto* b = any.get_if<topo::bcube>(); b && rep.policy == alg::bcube::name) {
      rep.model = alg::bml_time(n, b->k(), S, lp);
      rep.model_source = "cost_model bml_time: 2(N-1)/(kN)*S*beta (BML Table II, no latency term)";
    } else {
      rep.note = "the cost model has no formula for policy " + rep.policy + " on " + rep.topology;
    }
  } else if (dssync::has_blocks(kind)) {
    if (rep.policy == alg::ring::name) {
      rep.model = n > 1 ? (n - 1) * (lp.alpha + S / n * lp.beta) : 0.0;
      rep.model_source = "dssync-sim's ring estimate (N-1)(alpha + S/N*beta)";
    } else {
      rep.note = "dssync-sim has no estimate for policy " + rep.policy + " on a " + cfg.collective;
    }
  } else {
    rep.model = rep.policy == chain_name ? chain_estimate(n, S, rep.pieces, lp) : tree_estimate(kind, n, S, lp);
    rep.model_source = rep.policy == chain_name ? "dssync-sim's chain estimate (N-2+P)(alpha + S/P*beta) + (P-1)*alpha"
                                                : kind == dssync::semantics::broadcast
                                                      ? "dssync-sim's tree estimate D*alpha + D(D+1)/2*S*beta"
                                                      : "dssync-sim's tree estimate D*(alpha + S*beta)";
    rep.note = "cost_model.hpp has no broadcast/reduce formula; model_s is dssync-sim's own alpha-beta estimate";
  }

  if (!rep.verified) return rep;

  // Simulate.
  dssync::sim::sim_options opt;
  opt.bytes_per_element = static_cast<double>(cfg.element_size);
  opt.latency = cfg.latency;
  opt.record_timeline = !cfg.trace.empty();
  opt.codec_bytes_per_s = cfg.codec_gbps * 1e9;
  opt.name = rep.policy + " " + rep.collective + " on " + rep.topology;
  if (!cfg.background.empty()) {
    const std::string text = cfg.background.front() == '@' ? read_text_file(cfg.background.substr(1), "--background")
                                                            : cfg.background;
    try {
      opt.script = dssync::sim::scenario::parse(text);
    } catch (const dssync::invalid_argument& e) {
      throw usage_error(std::string("--background: ") + e.what());
    }
  }
  try {
    rep.sim = dssync::sim::simulate(sched, graph, opt);
  } catch (const dssync::invalid_argument& e) {
    // A scenario that names a rank or link the network lacks is bad input; anything else is an error.
    if (!opt.script.empty() && std::string_view(e.what()).find("scenario") != std::string_view::npos)
      throw usage_error(std::string("--background: ") + e.what());
    throw;
  }
  rep.time = rep.sim.completion_time;
  // A staged schedule (BML) is also played in lockstep, a barrier between stages, which is how papers
  // count it stage by stage; the free-running time above lets ranks run ahead into the next stage.
  for (const auto& r : sched.ranks)
    for (const auto& c : r.channels)
      for (const auto& st : c.steps) rep.stages = std::max(rep.stages, st.stage + 1);
  if (rep.stages > 1) {
    auto lock = opt;
    lock.lockstep = true;
    lock.record_timeline = false;
    rep.lockstep = dssync::sim::simulate(sched, graph, lock).completion_time;
  }
  if (!cfg.trace.empty()) {
    std::ofstream out(cfg.trace, std::ios::binary);
    if (!out) throw usage_error("--trace file '" + cfg.trace + "' cannot be written");
    dssync::sim::write_chrome_trace(out, rep.sim.trace);
    if (!out) throw std::runtime_error("writing the trace to '" + cfg.trace + "' failed");
    rep.trace_file = cfg.trace;
  }
  return rep;
}

std::vector<const dssync::sim::link_usage*> busiest_links(const report& rep, int count) {
  std::vector<const dssync::sim::link_usage*> links;
  for (const auto& l : rep.sim.links)
    if (l.bytes > 0) links.push_back(&l);
  std::stable_sort(links.begin(), links.end(), [](auto* a, auto* b) { return a->utilization > b->utilization; });
  if (static_cast<int>(links.size()) > count) links.resize(static_cast<std::size_t>(std::max(count, 0)));
  return links;
}

json to_json(const report& rep, int top) {
  json j;
  j["policy"] = rep.policy;
  if (rep.requested_policy != rep.policy) j["requested_policy"] = rep.requested_policy;
  j["topology"] = rep.topology;
  j["spec"] = rep.spec;
  j["workers"] = rep.workers;
  j["collective"] = rep.collective;
  j["semantics"] = rep.semantics;
  if (rep.root >= 0) j["root"] = rep.root;
  j["bytes"] = rep.bytes;
  j["element_size"] = rep.element_size;
  if (rep.pieces > 0) j["pieces"] = rep.pieces;
  j["failed"] = rep.failed;
  j["participants"] = rep.participants;
  j["latency_s"] = rep.latency ? json(*rep.latency) : json(nullptr);
  j["verified"] = rep.verified;
  if (!rep.verified) j["verify_message"] = rep.verify_message;
  if (!rep.codec.empty()) {
    j["codec"] = rep.codec;
    j["slot_bytes"] = rep.slot_bytes;
    j["payload_bytes"] = rep.payload_bytes;
    j["compression_ratio"] = rep.payload_bytes > 0 ? static_cast<double>(rep.bytes) / static_cast<double>(rep.payload_bytes) : 0.0;
  }
  j["channels"] = rep.channels;
  j["steps"] = rep.steps;
  if (rep.verified) {
    j["time_s"] = rep.time;
    j["messages"] = rep.sim.flows;
    if (rep.lockstep) {
      j["stages"] = rep.stages;
      j["lockstep_s"] = *rep.lockstep;
    }
  } else {
    j["time_s"] = nullptr;
  }
  j["model_s"] = rep.model ? json(*rep.model) : json(nullptr);
  if (!rep.model_source.empty()) j["model_source"] = rep.model_source;
  if (!rep.note.empty()) j["note"] = rep.note;
  if (rep.tree) {
    j["mode"] = rep.tree_mode;
    j["link_class"] = rep.link_class;
    j["rate_GBps"] = std::isfinite(rep.tree_rate) ? json(rep.tree_rate / 1e9) : json(nullptr);
    j["bound_GBps"] = std::isfinite(rep.tree_bound) ? json(rep.tree_bound / 1e9) : json(nullptr);
    j["trees"] = rep.trees;
  }
  j["bound_s"] = rep.bound;
  j["bound_rule"] = rep.bound_rule;
  j["bound_nic_Bps"] = std::isfinite(rep.bound_nic) ? json(rep.bound_nic) : json(nullptr);
  if (!rep.bound_partition.empty()) {
    j["bound_parts"] = rep.bound_parts;
    j["bound_partition"] = rep.bound_partition;
  }
  if (rep.verified && rep.time > 0) {
    const double algbw = static_cast<double>(rep.bytes) / rep.time / 1e9;
    j["algbw_GBps"] = algbw;
    j["busbw_GBps"] = algbw * rep.busbw_factor;
    j["bound_over_time"] = rep.bound / rep.time;
  } else {
    j["algbw_GBps"] = nullptr;
    j["busbw_GBps"] = nullptr;
    j["bound_over_time"] = nullptr;
  }
  if (rep.verified) {
    json links = json::array();
    for (const auto* l : busiest_links(rep, top))
      links.push_back({{"link", l->label}, {"utilization", l->utilization}, {"bytes", l->bytes},
                       {"capacity_Bps", l->capacity}});
    j["busiest_links"] = std::move(links);
    if (rep.sim.background_flows > 0) j["background_flows"] = rep.sim.background_flows;
  }
  if (!rep.trace_file.empty()) j["trace"] = rep.trace_file;
  if (!rep.groups.empty()) j["groups"] = rep.groups;
  return j;
}

std::string groups_text(const std::vector<std::vector<int>>& groups) { return alg::to_string(groups); }

/// --iterations K: one entry per iteration (time and groups), and the mean time.
json iterations_json(const std::vector<report>& reps) {
  json arr = json::array();
  double sum = 0;
  for (const auto& r : reps) {
    json it;
    it["iteration"] = r.iteration;
    it["time_s"] = r.verified ? json(r.time) : json(nullptr);
    it["verified"] = r.verified;
    if (!r.groups.empty()) it["groups"] = r.groups;
    arr.push_back(std::move(it));
    sum += r.time;
  }
  json j;
  j["iterations"] = std::move(arr);
  j["mean_time_s"] = reps.empty() ? 0.0 : sum / static_cast<double>(reps.size());
  return j;
}

void print_iterations(std::ostream& os, const std::vector<report>& reps) {
  os << "\n  iterations\n  " << std::left << std::setw(10) << "iteration" << std::setw(14) << "time"
     << "groups\n";
  double sum = 0;
  for (const auto& r : reps) {
    os << "  " << std::setw(10) << r.iteration << std::setw(14) << (r.verified ? format_time(r.time) : "-")
       << (r.groups.empty() ? "(all ranks)" : groups_text(r.groups)) << '\n';
    sum += r.time;
  }
  os << std::right << "  mean " << format_time(sum / static_cast<double>(reps.size())) << " over " << reps.size()
     << " iterations\n";
}

void print_table(std::ostream& os, const report& rep, int top) {
  std::vector<std::pair<std::string, std::string>> rows;
  rows.emplace_back("topology", rep.topology + (rep.spec != rep.topology ? "   (" + rep.spec + ")" : ""));
  rows.emplace_back("workers", std::to_string(rep.workers) +
                                   (rep.failed.empty() ? "" : " (" + std::to_string(rep.participants) + " alive)"));
  rows.emplace_back("policy", rep.policy + (rep.requested_policy != rep.policy ? " (" + rep.requested_policy + ")" : "") +
                                  (rep.pieces > 0 ? ", " + std::to_string(rep.pieces) + " pieces" : ""));
  rows.emplace_back("collective", rep.collective + (rep.root >= 0 ? ", root " + std::to_string(rep.root) : "") +
                                      (rep.semantics != rep.collective ? " (" + rep.semantics + ")" : ""));
  rows.emplace_back("bytes", std::to_string(rep.bytes) + " (" + format_bytes(static_cast<double>(rep.bytes)) + ")");
  if (!rep.codec.empty())
    rows.emplace_back("codec", rep.codec + ", payload " + format_bytes(static_cast<double>(rep.payload_bytes)) + " (" +
                                   fixed(static_cast<double>(rep.bytes) / static_cast<double>(std::max<std::size_t>(1, rep.payload_bytes)), 1) +
                                   "x smaller), slot bound " + format_bytes(static_cast<double>(rep.slot_bytes)));
  if (rep.latency) rows.emplace_back("latency", format_time(*rep.latency) + " per link (override)");
  rows.emplace_back("time", rep.verified ? format_time(rep.time) : "- (not simulated)");
  if (rep.verified && rep.lockstep)
    rows.emplace_back("lockstep", format_time(*rep.lockstep) + "   (" + std::to_string(rep.stages) +
                                      " stages, a barrier between them)");
  rows.emplace_back("model", rep.model ? format_time(*rep.model) + (rep.verified && rep.time > 0
                                                                        ? "   (" + fixed(*rep.model / rep.time, 3) + " x time)"
                                                                        : "")
                                       : "- (" + rep.note + ")");
  rows.emplace_back("bound", format_time(rep.bound) + "   (" +
                                 (rep.bound_partition.empty()
                                      ? format_rate(rep.bound_nic) + " per rank"
                                      : format_rate(rep.bound_nic) + " per part, " + rep.bound_partition) +
                                 ")");
  if (rep.verified && rep.time > 0) {
    const double algbw = static_cast<double>(rep.bytes) / rep.time;
    rows.emplace_back("bound/time", fixed(100 * rep.bound / rep.time, 1) + " %");
    rows.emplace_back("algbw", format_rate(algbw));
    rows.emplace_back("busbw", format_rate(algbw * rep.busbw_factor));
  }
  rows.emplace_back("verified", rep.verified ? "yes (" + std::to_string(rep.verify_messages) + " messages)"
                                             : "NO: " + rep.verify_message);
  if (!rep.trace_file.empty()) rows.emplace_back("trace", rep.trace_file);
  if (!rep.groups.empty()) rows.emplace_back("groups", groups_text(rep.groups));
  if (rep.tree)
    rows.emplace_back("trees", std::to_string(rep.trees) + " (" + rep.tree_mode + " packing, " + rep.link_class +
                                   " links): rate " + format_rate(rep.tree_rate) + ", Edmonds bound " +
                                   format_rate(rep.tree_bound));
  for (const auto& [k, v] : rows) {
    os << "  " << k << std::string(12 - std::min<std::size_t>(k.size(), 11), ' ') << v << '\n';
  }
  if (rep.model && !rep.model_source.empty()) os << "  (model: " << rep.model_source << ")\n";
  if (!rep.verified) return;
  const auto links = busiest_links(rep, top);
  if (links.empty()) return;
  std::size_t w = 4;
  for (const auto* l : links) w = std::max(w, l->label.size());
  auto right = [](const std::string& x, std::size_t width) {
    return std::string(width > x.size() ? width - x.size() : 1, ' ') + x;
  };
  os << "\n  busiest links\n";
  os << "  " << "link" << std::string(w - 4, ' ') << right("util", 9) << right("bytes", 13) << right("capacity", 13) << '\n';
  for (const auto* l : links)
    os << "  " << l->label << std::string(w - l->label.size(), ' ') << right(fixed(100 * l->utilization, 1) + " %", 9)
       << right(format_bytes(l->bytes), 13) << right(format_rate(l->capacity), 13) << '\n';
}

const char* usage_text =
    "Usage: dssync-sim --topology SPEC [--policy NAME] --bytes SIZE [options]\n"
    "\n"
    "Plays one collective of a dssync policy on a simulated network (flow-level, max-min fair, ECMP) and\n"
    "prints its time next to the cost model's prediction and the collective's lower bound.\n";

const char* details_text =
    "\n"
    "Topology SPEC: ring:8, star:16, mesh:8, racks:4,4, fattree:4, bcube:3,2, dgx1, dgx1:0,1,2,5, dot:FILE.\n"
    "  Options after the numbers: bw=GBIT (every link, Gbit/s; units as in 25GB/s allowed), lat=SECONDS,\n"
    "  tiers: racks intra=, uplink=; dgx1 nvlink=, pcie=, qpi=. Example: racks:4,4,intra=100,uplink=25.\n"
    "\n"
    "Policies for allreduce: auto (the default: the cost model's best_policy, the predicted fastest;\n"
    "  DSSYNC_ALGO, when set, forces auto's choice; an explicit --policy is never overridden), or one of\n"
    "    POLICIES\n"
    "  bcube needs a bcube topology. gossip and ds_sync are group allreduces (pairs; DS-Sync's groups,\n"
    "  which --iteration and --iterations pick), reported as such, with their groups.\n"
    "  reduce_scatter and allgather: ring (the default), rank r owning block r of partition(S, N).\n"
    "  broadcast and reduce (the library's algorithms::chain and algorithms::binomial_tree):\n"
    "    chain          pipelined chain root, root+1, ... in --pieces pieces; the head keeps 1 piece in\n"
    "                   flight, paced by one-element acknowledgements from the next rank.\n"
    "                   Bandwidth-optimal for large S.\n"
    "    binomial_tree  whole buffer per message: ceil(log2 N) hops, for small messages.\n"
    "    auto           the lower of the alpha-beta estimates: chain (N-2+P)(a + S/P*b) + (P-1)a; tree,\n"
    "                   with D = ceil(log2 N), broadcast D*a + D(D+1)/2*S*b, reduce D*(a + S*b).\n"
    "\n"
    "Output: time = simulated completion time; model = the cost model's prediction (cost_model.hpp:\n"
    "  try_predict, or bml_time for bcube; null when it has no formula); bound = the lower bound:\n"
    "  allreduce, by cuts: for the ranks alone (NICs, all of a rank's links summed: k*B on BCube) and for\n"
    "  the racks/pods of the switch hierarchy, 2(C-1)/C*S / (a part's cut bandwidth) over C parts, the\n"
    "  largest (algorithms/bounds.hpp; bound_parts, bound_partition in JSON); broadcast/reduce S / (the\n"
    "  root's NIC bandwidth, or another rank's if lower); reduce_scatter/allgather (N-1)/N*S / (the\n"
    "  lowest NIC bandwidth out / in); algbw = S/time, busbw = algbw*2(N-1)/N for allreduce,\n"
    "  algbw*(N-1)/N for reduce_scatter/allgather (as nccl-tests), algbw for broadcast/reduce; verified = the\n"
    "  schedule verifier's verdict (an unverified schedule is not simulated: exit status 3).\n"
    "  Sizes take K, M, G, T suffixes (binary: 1G = 2^30 bytes); GB/s are 1e9 bytes/s.\n"
    "\n"
    "  lockstep (lockstep_s in JSON) = the time with a barrier between stages, for staged schedules (bcube):\n"
    "  how the BML paper counts stage by stage; time lets ranks run ahead into the next stage.\n"
    "\n"
    "--fail RANKS needs a policy with plan_without(topology, failed_ranks, plan_request) (bcube: BML's\n"
    "  re-plan for the survivors); the others exit with 'policy X cannot plan around failed ranks'.\n"
    "  Example: --topology bcube:3,2,bw=8 --policy bcube --bytes 1G --latency 0 --fail 0 --json.\n"
    "--background SPEC or @FILE: a scenario script, statements separated by ';' or newlines, e.g.\n"
    "  'at 0 background 0->5 rate 5Gbps id bg1; at 1ms stop bg1; at 0 nic 3 cap 10Gbps;\n"
    "   at 0 link tor0<->spine bw 25Gb/s'.\n"
    "\n"
    "--policy tree packs spanning trees from the root (allreduce: rank 0) under the link capacities and\n"
    "  reports trees, rate_GBps (the packed rate) and bound_GBps (the Edmonds bound: the least root->rank\n"
    "  min cut) next to the simulated time. --mode exact (default, ForestColl: rate = bound) or blink\n"
    "  (multiplicative weights); --link-class nvlink packs and bounds the NVLink links only, and\n"
    "  --link-class nvlink,pcie+socket packs NVLink and PCIe (with the CPUs' link) apart and splits the\n"
    "  data by rate (Blink); each tree's messages are routed over its links only. rate and bound sum\n"
    "  over the sets. Link classes come from the topology (dgx1, nvidia-smi files).\n"
    "\n"
    "Exit status: 0 ok, 2 bad command line or input, 3 schedule not verified, 1 other errors.\n"
    "\n"
    "Examples:\n"
    "  dssync-sim --topology bcube:3,2,bw=8 --policy bcube --bytes 1G --latency 0 --json\n"
    "  dssync-sim --topology fattree:4,bw=8 --policy ring --bytes 1G --latency 0\n"
    "  dssync-sim --topology racks:4,4,intra=100,uplink=25 --policy auto --bytes 64M --trace run.json\n"
    "  dssync-sim --topology star:8 --collective broadcast --root 3 --bytes 256M\n"
    "  dssync-sim --topology star:8 --collective allgather --bytes 64M\n"
    "  dssync-sim --topology dgx1:0,1,2,5 --policy tree --collective broadcast --root 0 --bytes 256M --json\n"
    "  dssync-sim --topology racks:4,4,intra=100,uplink=25 --policy ds_sync --bytes 64M --iterations 4\n";

}  // namespace

int main(int argc, char** argv) {
  config cfg;
  std::string latency_text;
  po::options_description desc("Options", 100, 50);
  // clang-format off
  desc.add_options()
    ("help,h", "print this help and exit")
    ("version", "print the dssync version and exit")
    ("topology,t", po::value(&cfg.topology)->value_name("SPEC"), "the network (see below); required")
    ("policy,p", po::value(&cfg.policy)->value_name("NAME")->default_value("auto"), "the policy (see below)")
    ("bytes,b", po::value(&cfg.bytes_text)->value_name("SIZE"), "bytes per rank (K/M/G/T suffixes); required")
    ("collective,c", po::value(&cfg.collective)->value_name("KIND")->default_value("allreduce"),
     "allreduce, reduce_scatter, allgather, broadcast or reduce")
    ("root,r", po::value(&cfg.root)->value_name("R")->default_value(0), "root rank of broadcast and reduce")
    ("background", po::value(&cfg.background)->value_name("SPEC"), "background traffic: a scenario script, or @FILE")
    ("fail", po::value(&cfg.fail)->value_name("RANKS"), "failed ranks, a comma list (needs a policy that re-plans)")
    ("latency", po::value(&latency_text)->value_name("SECONDS"),
     "each link's latency, overriding the topology's (0, 5us, 1e-6)")
    ("trace", po::value(&cfg.trace)->value_name("FILE"), "write a Chrome trace (Perfetto, chrome://tracing)")
    ("json", po::bool_switch(&cfg.json), "print one JSON object instead of the table")
    ("pieces", po::value(&cfg.pieces)->value_name("P")->default_value(0),
     "pieces of a chain broadcast/reduce (0: auto, up to 256)")
    ("element-size", po::value(&cfg.element_size)->value_name("E")->default_value(4),
     "bytes per element (4: float); --bytes must be a multiple")
    ("codec", po::value(&cfg.codec)->value_name("NAME[:P]"),
     "allreduce through a codec, inside the plan (identity, fp16, bf16: encoded ring; onebit, qsgd, terngrad, "
     "threshold, topk, randomk, dgc: allgather of payloads)")
    ("codec-gbps", po::value(&cfg.codec_gbps)->value_name("G")->default_value(0),
     "the codec's encode/decode rate in GB/s, charged to its steps (0: free)")
    ("iteration", po::value(&cfg.iteration)->value_name("I")->default_value(0),
     "training iteration passed to the policy (gossip's pairing, ds_sync's groups)")
    ("iterations", po::value(&cfg.iterations)->value_name("K")->default_value(1),
     "play iterations I, I+1, ..., I+K-1 and list each one's time and groups (the trace is the first's)")
    ("links", po::value(&cfg.top_links)->value_name("K")->default_value(5), "busiest links to list")
    ("mode", po::value(&cfg.mode)->value_name("M")->default_value("exact"),
     "--policy tree: exact (ForestColl: the packed rate meets the Edmonds bound) or blink (multiplicative weights)")
    ("link-class", po::value(&cfg.link_class)->value_name("C"),
     "--policy tree: the link classes packed, sets apart by ',' (nvlink; nvlink,pcie+socket)");
  // clang-format on

  try {
    po::variables_map vm;
    const po::positional_options_description none;  // no positional arguments: a stray word is an error
    po::store(po::command_line_parser(argc, argv).options(desc).positional(none).run(), vm);
    if (vm.count("help")) {
      std::string details = details_text;
      const std::string key = "POLICIES";
      details.replace(details.find(key), key.size(), policy_list());
      std::cout << usage_text << '\n' << desc << details;
      return 0;
    }
    if (vm.count("version")) {
      std::cout << "dssync-sim (dssync " << DSSYNC_VERSION_MAJOR << '.' << DSSYNC_VERSION_MINOR << '.'
                << DSSYNC_VERSION_PATCH << ")\n";
      return 0;
    }
    po::notify(vm);
    if (cfg.topology.empty()) throw usage_error("--topology SPEC is required (e.g. --topology ring:8)");
    if (cfg.bytes_text.empty()) throw usage_error("--bytes SIZE is required (e.g. --bytes 64M)");
    if (vm.count("latency")) {
      const auto v = dssync::detail::parse_duration_text(latency_text);
      if (!v) throw usage_error("--latency '" + latency_text + "' is not a non-negative time (0, 1e-6, 5us, 2ms)");
      cfg.latency = *v;
    }
    if (cfg.top_links < 0) throw usage_error("--links must not be negative");

    if (cfg.iterations < 1) throw usage_error("--iterations must be at least 1");
    if (cfg.iterations > 100000) throw usage_error("--iterations " + std::to_string(cfg.iterations) + " is over 100000");
    std::vector<report> reps;
    reps.push_back(run(cfg));
    for (std::uint64_t k = 1; k < cfg.iterations && reps.back().verified; ++k) {
      config next = cfg;
      next.iteration = cfg.iteration + k;
      next.trace.clear();
      reps.push_back(run(next));
    }
    const report& rep = reps.front();
    if (cfg.json) {
      json j = to_json(rep, cfg.top_links);
      if (cfg.iterations > 1) j.update(iterations_json(reps));
      std::cout << j.dump(2) << '\n';
    } else {
      print_table(std::cout, rep, cfg.top_links);
      if (cfg.iterations > 1) print_iterations(std::cout, reps);
    }
    for (const auto& r : reps)
      if (!r.verified) {
        std::cerr << "dssync-sim: iteration " << r.iteration << " of policy " << r.policy
                  << " failed verification: " << r.verify_message << '\n';
        return exit_unverified;
      }
    if (!rep.verified) {
      std::cerr << "dssync-sim: the schedule of policy " << rep.policy << " failed verification: " << rep.verify_message
                << '\n';
      return exit_unverified;
    }
    return 0;
  } catch (const po::error& e) {
    std::cerr << "dssync-sim: " << e.what() << "\nTry 'dssync-sim --help'.\n";
    return exit_usage;
  } catch (const usage_error& e) {
    std::cerr << "dssync-sim: " << e.what() << "\nTry 'dssync-sim --help'.\n";
    return exit_usage;
  } catch (const std::exception& e) {
    std::cerr << "dssync-sim: " << e.what() << '\n';
    return exit_error;
  }
}
