// train_fmnist: the library's main demo. Data-parallel training of a softmax regression or an MLP on
// Fashion-MNIST (Debian's dataset-fashion-mnist) by 16 in-process workers on a simulated racks:4,4
// cluster (transport::sim: the training is real, the communication time is simulated), comparing BSP with
// ring and with hierarchical allreduce, gossip, and DS-Sync (seed 000), under no contention, background
// flows on rack 0's uplink (seed Fig. 5) and a capped NIC (seed Fig. 6).
//
// DS-Sync trains as the seed's public code does: at the start of each iteration a worker averages its
// parameters within its group, then takes a local SGD step; gossip likewise with its pair. BSP averages
// the gradients of all workers. The model evaluated is the consensus (the average over all workers, one
// global allreduce, outside the timed training). DS-Sync's passive contention detector reads the groups'
// own synchronize times; the ranks share them with one small allgather per window, so every rank plans
// from the same state.
//
//   train_fmnist [--model softmax|mlp] [--policy ring|hierarchical|gossip|ds_sync|all]
//                [--scenario none|uplink|nic|all] [--workers 16] [--epochs E] [--target-accuracy A]
//                [--csv FILE] [--svg FILE] [--trace FILE] [--json] [--train-subset N] [--compute-ms T]
//                [--intra-gbps B] [--uplink-gbps B] [--latency-us L] [--lr R] [--batch B] [--data DIR]
//                [--transport auto|sim|mpi] [--codec none,topk:0.01,...]
//
// `--codec` (a comma list) repeats the BSP ring run once per codec: the gradients are averaged through
// the codec inside the plan (`dssync::synchronize(comm, grad, codec, average)`: one codec object per
// worker with its error-feedback state, payloads of run-time length allgathered). The report names the
// run "ring+<codec>" and gives the compression ratio of the bytes the codec actually wrote.
//
// The same binary runs under `mpiexec -n 4 train_fmnist` (built with MPI): then every process is one
// worker on the MPI transport, the times are wall-clock (`--compute-ms` adds a real sleep per iteration),
// the racks are a model only (4 ranks: racks:2,2), and only the scenario `none` runs, since the
// contention scenarios are scripts of the simulated network. `--transport auto` (the default) picks MPI
// when an MPI launcher started the process (OMPI_COMM_WORLD_SIZE, PMI_SIZE or PMIX_RANK is set).
//
// Exit status: 0 ok, 2 bad command line, 77 Fashion-MNIST missing or corrupt (the message names the file
// and the package), 1 other errors (under MPI, a rank that fails alone aborts the job).

#include <zlib.h>

#include <Eigen/Dense>
#include <boost/program_options.hpp>

#include <dssync/algorithms/ds_sync.hpp>
#include <dssync/algorithms/gossip.hpp>
#include <dssync/algorithms/hierarchical.hpp>
#include <dssync/algorithms/ring.hpp>
#include <dssync/communicator.hpp>
#include <dssync/detect/contention.hpp>
#include <dssync/ops/ops.hpp>
#include <dssync/sim/scenario.hpp>
#include <dssync/synchronize.hpp>
#include <dssync/topology/racks.hpp>
#include <dssync/transport/sim.hpp>
#ifdef DSSYNC_EXAMPLE_MPI
#include <boost/mpi/environment.hpp>
#include <mpi.h>

#include <dssync/transport/mpi.hpp>
#endif

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <mutex>
#include <numeric>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "train/codec.hpp"
#include "train/fmnist.hpp"
#include "train/model.hpp"
#include "train/report.hpp"

namespace po = boost::program_options;
namespace alg = dssync::algorithms;

namespace {

#ifdef DSSYNC_FASHION_MNIST_DIR
constexpr const char* default_data = DSSYNC_FASHION_MNIST_DIR;
#else
constexpr const char* default_data = "/usr/share/datasets/fashion-mnist";
#endif

struct settings {
  std::string model = "softmax";
  std::vector<std::string> policies, scenarios;
  int workers = 16;
  int epochs = 5;
  double target = 0;  // 0: the model's default
  std::string csv, svg, trace, data = default_data;
  bool json = false;
  std::size_t train_subset = 0;
  double compute_s = 2e-3;
  double intra_bps = 1e9 / 8, uplink_bps = 0.25e9 / 8, latency_s = 20e-6;
  double lr = 0;  // 0: the model's default
  int batch = 32;
  std::size_t window = 8;
  std::vector<std::string> codecs{"none"};  // ring runs, once per codec
  bool wall = false;  // real processes under mpiexec: wall-clock times
  int process_rank = 0;  // under mpiexec, this process's rank (only rank 0 prints and writes)
};

/// What one (policy, scenario) run produced.
struct run {
  std::string policy, scenario;
  std::vector<train::epoch_row> epochs;
  double sim_time = 0, comm_per_iter = 0, iter_time = 0;
  std::optional<double> time_to_target;
  std::vector<std::string> group_changes;  // "iteration i: state -> groups"
  std::optional<std::size_t> first_adjustment;  // ds_sync: the first iteration planned around contention
  std::size_t iterations = 0;
  std::vector<train::trace_event> trace;   // ds_sync: the iterations around the first adjustment
  std::string codec = "none";
  double compression = 1;  // gradient bytes / payload bytes the codec wrote (1: uncompressed)
};

/// The scenario script (virtual seconds): background flows from rack 0's workers to three other racks,
/// which share rack 0's uplink with any ring flow four ways (seed Fig. 5), or worker 5's NIC capped to a
/// tenth of its speed (seed Fig. 6).
std::string scenario_script(const std::string& s, const settings& st, int per_rack) {
  if (s == "none") return "";
  if (s == "uplink") {
    std::string out;
    for (int k = 1; k <= 3 && k < per_rack; ++k)
      out += "at 0 background " + std::to_string(k) + "->" + std::to_string(k * per_rack + k) + " id bg" +
             std::to_string(k) + ";";
    return out;
  }
  if (s == "nic") {
    std::ostringstream os;
    os << "at 0 nic " << std::min(5, st.workers - 1) << " cap " << st.intra_bps * 8 / 10 / 1e9 << "Gbps";
    return os.str();
  }
  throw std::invalid_argument("unknown scenario '" + s + "' (none, uplink, nic or all)");
}

/// One (policy, scenario) run. `launch(topology, body)` runs `body(comm, now, compute)` on every worker:
/// `now()` is the worker's clock in seconds, `compute(s)` spends s seconds of modelled computation.
template <class Launch>
run train_one(const settings& st, const train::model& m, const train::dataset& tr, const train::dataset& te,
              const std::string& policy, const std::string& scenario, double target, Launch&& launch,
              const std::string& codec = "none") {
  const int n = st.workers;
  int per_rack = 1;
  while ((per_rack + 1) * (per_rack + 1) <= n) ++per_rack;
  if (n % per_rack != 0) per_rack = 1;
  const int racks = n / per_rack;
  const dssync::topology::leaf_spine topo(racks, per_rack, {st.intra_bps, st.latency_s}, {st.uplink_bps, st.latency_s});

  const std::size_t P = m.parameters();
  const std::size_t shard = tr.size() / static_cast<std::size_t>(n);
  const std::size_t iters_per_epoch = std::max<std::size_t>(1, shard / static_cast<std::size_t>(st.batch));
  const std::size_t total = iters_per_epoch * static_cast<std::size_t>(st.epochs);
  const double lr = st.lr > 0 ? st.lr : (m.sizes.size() == 2 ? 0.1 : 0.05);
  const bool bsp = policy == "ring" || policy == "hierarchical";
  const bool is_ds = policy == "ds_sync";

  run out;
  out.policy = codec == "none" ? policy : policy + "+" + codec;
  out.scenario = scenario;
  out.codec = codec;
  std::vector<std::size_t> sent(static_cast<std::size_t>(n), 0);  // payload bytes per worker
  std::vector<double> comm_total(static_cast<std::size_t>(n), 0.0);
  std::mutex log_mu;
  launch(topo, per_rack, [&](auto& comm, auto&& now, auto&& compute) {
    const int me = comm.rank();
    dssync::options opt;
    opt.with_timeout(std::chrono::seconds(300));
    dssync::communicator session(comm, topo, opt);  // its iteration counter drives DS-Sync's shuffle
    std::vector<float> params = m.init(42), grad(P, 0.0f);
    train::any_codec wire = train::make_codec(codec, &sent[static_cast<std::size_t>(me)]);
    std::mt19937_64 gen(1000 + static_cast<std::uint64_t>(me));
    std::vector<std::size_t> order(shard);
    std::iota(order.begin(), order.end(), static_cast<std::size_t>(me) * shard);
    alg::ds_sync ds;
    alg::gossip gossip;
    dssync::detect::detector_options dop;
    dop.window = st.window;
    dop.latency = 2 * st.latency_s;        // worker - ToR - worker
    dop.inter_latency = 4 * st.latency_s;  // worker - ToR - spine - ToR - worker
    dop.intra_reference = st.intra_bps;
    dop.inter_reference = std::min(st.intra_bps, st.uplink_bps);
    dssync::detect::contention_detector det(topo.racks(), dop);
    std::vector<double> spans;  // entry, exit of this rank's synchronize, per iteration of the window
    std::vector<alg::grouping> window_groups;
    double eval_total = 0, comm_sum = 0;
    train::matrix x(784, st.batch);
    std::vector<std::uint8_t> y(static_cast<std::size_t>(st.batch));
    std::string last_state;
    for (std::size_t it = 0; it < total; ++it) {
      const std::size_t in_epoch = it % iters_per_epoch;
      if (in_epoch == 0) std::shuffle(order.begin(), order.end(), gen);
      for (int b = 0; b < st.batch; ++b) {
        const std::size_t k = order[(in_epoch * static_cast<std::size_t>(st.batch) + static_cast<std::size_t>(b)) % shard];
        x.col(b) = tr.images.col(static_cast<Eigen::Index>(k));
        y[static_cast<std::size_t>(b)] = tr.labels[k];
      }
      double e0 = 0, e1 = 0;
      if (!bsp) {  // decentralized: average parameters in the group, then a local step
        e0 = now();
        if (is_ds) {
          window_groups.push_back(ds.groups(topo, session.iteration()));
          session.group_allreduce(ds, std::span(params), dssync::ops::average{});
        } else {
          dssync::synchronize(comm, topo, gossip, params, dssync::ops::average{}, opt);
        }
        e1 = now();
      }
      const double c0 = now();
      m.gradient(params, x, y, grad);
      compute(st.compute_s);
      const double c1 = now();
      if (bsp) {
        e0 = now();
        if (policy == "ring" && wire.index() != 0)
          std::visit(
              [&](auto& c) {
                if constexpr (!std::is_same_v<std::decay_t<decltype(c)>, std::monostate>)
                  dssync::synchronize(comm, grad, c, dssync::ops::average{}, opt);
              },
              wire);
        else if (policy == "ring")
          dssync::synchronize<alg::ring>(comm, topo, grad, dssync::ops::average{}, opt);
        else
          dssync::synchronize<alg::hierarchical>(comm, topo, grad, dssync::ops::average{}, opt);
        e1 = now();
      }
      for (std::size_t i = 0; i < P; ++i) params[i] -= static_cast<float>(lr) * grad[i];
      comm_sum += e1 - e0;
      if (is_ds) {
        spans.push_back(e0);
        spans.push_back(e1);
        if (!st.trace.empty()) {  // the trace's events, kept only when a trace is asked for
          std::lock_guard lock(log_mu);
          const auto& g = alg::group_of(window_groups.back(), me);
          out.trace.push_back({me, it, "sync", alg::to_string({g}), e0, e1});
          out.trace.push_back({me, it, "compute", "", c0, c1});
        }
        if (window_groups.size() == st.window || it + 1 == total) {
          // Share the window's spans (2 doubles per rank and iteration) and detect, the same on every rank.
          const std::size_t w = window_groups.size();
          std::vector<double> all(2 * w * static_cast<std::size_t>(n));
          std::copy(spans.begin(), spans.end(), all.begin() + static_cast<std::ptrdiff_t>(2 * w * static_cast<std::size_t>(me)));
          session.allgather(std::span(all));
          for (std::size_t j = 0; j < w; ++j) {
            std::vector<double> entry(static_cast<std::size_t>(n)), exit(static_cast<std::size_t>(n));
            for (int r = 0; r < n; ++r) {
              entry[static_cast<std::size_t>(r)] = all[2 * w * static_cast<std::size_t>(r) + 2 * j];
              exit[static_cast<std::size_t>(r)] = all[2 * w * static_cast<std::size_t>(r) + 2 * j + 1];
            }
            det.record_spans(it + 1 - w + j, window_groups[j], entry, exit, static_cast<double>(P * sizeof(float)));
          }
          ds.observe(det.state());
          if (me == 0 && det.state().key() != last_state) {
            last_state = det.state().key();
            std::lock_guard lock(log_mu);
            if (!out.first_adjustment && !det.state().empty()) out.first_adjustment = it + 1;
            out.group_changes.push_back("iteration " + std::to_string(it + 1) + ": contention {" + last_state +
                                        "} -> groups " + alg::to_string(ds.groups(topo, it + 1)));
          }
          spans.clear();
          window_groups.clear();
        }
      }
      if (in_epoch + 1 == iters_per_epoch) {  // epoch end: evaluate the consensus model (not timed)
        const double t0 = now();
        std::vector<float> consensus = params;
        dssync::synchronize<alg::ring>(comm, topo, consensus, dssync::ops::average{}, opt);
        const double t1 = now();
        if (me == 0) {
          const double acc = m.accuracy(consensus, te.images, te.labels);
          const double at = t0 - eval_total;  // the epoch's end, evaluations excluded
          const int epoch = static_cast<int>(it / iters_per_epoch) + 1;
          std::lock_guard lock(log_mu);
          out.epochs.push_back({epoch, at, acc});
          if (!out.time_to_target && acc >= target) out.time_to_target = at;
          std::cerr << "\r[" << out.policy << " / " << scenario << "] epoch " << epoch << "/" << st.epochs << "  accuracy "
                    << std::fixed << std::setprecision(2) << 100 * acc << " %  " << (st.wall ? "wall" : "simulated") << ' ' << std::setprecision(3)
                    << at << " s      " << std::flush;
          if (epoch == st.epochs) out.sim_time = at;
        }
        if (st.wall) session.barrier();  // the others wait for rank 0's evaluation, which real time would otherwise charge them
        eval_total += (st.wall ? now() : t1) - t0;
      }
      session.next_iteration();
    }
    std::vector<double> sums(static_cast<std::size_t>(n), 0.0);  // every rank's communication time
    sums[static_cast<std::size_t>(me)] = comm_sum;
    session.allgather(std::span(sums));
    if (me == 0) comm_total = sums;
  });
  if (st.process_rank == 0) std::cerr << '\n';
  double c = 0;
  for (double v : comm_total) c += v;
  out.comm_per_iter = c / static_cast<double>(n) / static_cast<double>(total);
  out.iterations = total;
  out.iter_time = out.sim_time / static_cast<double>(total);
  if (sent[0] > 0)  // worker 0's payloads against its gradients
    out.compression = static_cast<double>(total * P * sizeof(float)) / static_cast<double>(sent[0]);
  return out;
}

std::vector<std::string> expand(const std::string& v, const std::vector<std::string>& all, const char* what) {
  if (v == "all") return all;
  std::vector<std::string> out;
  std::stringstream ss(v);
  for (std::string x; std::getline(ss, x, ',');) {
    if (std::find(all.begin(), all.end(), x) == all.end()) {
      std::string list;
      for (const auto& a : all) list += a + ", ";
      throw std::invalid_argument(std::string("unknown ") + what + " '" + x + "' (" + list + "or all)");
    }
    out.push_back(x);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  settings st;
  std::string policy = "all", scenario = "all", transport = "auto", codec_list = "none";
  double intra_gbps = 1, uplink_gbps = 0.25, latency_us = 20, compute_ms = 2;
  po::options_description desc("train_fmnist: data-parallel Fashion-MNIST training, BSP vs gossip vs DS-Sync, simulated racks:4,4");
  // clang-format off
  desc.add_options()
    ("help,h", "print this help")
    ("model", po::value(&st.model)->default_value("softmax"), "softmax or mlp (784-128-10)")
    ("policy", po::value(&policy)->default_value("all"), "ring, hierarchical, gossip, ds_sync, a comma list, or all")
    ("scenario", po::value(&scenario)->default_value("all"), "none, uplink (seed Fig. 5), nic (Fig. 6), a comma list, or all")
    ("workers", po::value(&st.workers)->default_value(16), "workers (a square number gives square racks; under mpiexec, the process count)")
    ("transport", po::value(&transport)->default_value("auto"), "sim (in-process workers, simulated network), mpi (one worker per process, under mpiexec), or auto (mpi when an MPI launcher started this process)")
    ("epochs", po::value(&st.epochs)->default_value(5), "epochs")
    ("target-accuracy", po::value(&st.target)->default_value(0), "test accuracy for time to accuracy (0: 0.80)")
    ("csv", po::value(&st.csv), "write accuracy per epoch as CSV")
    ("svg", po::value(&st.svg), "write accuracy against simulated time as SVG")
    ("trace", po::value(&st.trace), "write a Chrome trace of DS-Sync iterations around its first group adjustment")
    ("json", po::bool_switch(&st.json), "print one JSON object with a runs array")
    ("train-subset", po::value(&st.train_subset)->default_value(0), "train on the first N examples (0: all 60000)")
    ("compute-ms", po::value(&compute_ms)->default_value(2), "simulated compute time per iteration, ms")
    ("intra-gbps", po::value(&intra_gbps)->default_value(1), "worker-ToR link speed, Gbit/s")
    ("uplink-gbps", po::value(&uplink_gbps)->default_value(0.25), "ToR-spine link speed, Gbit/s")
    ("latency-us", po::value(&latency_us)->default_value(20), "per-link latency, us")
    ("lr", po::value(&st.lr)->default_value(0), "learning rate (0: 0.1 softmax, 0.05 mlp)")
    ("batch", po::value(&st.batch)->default_value(32), "batch per worker")
    ("window", po::value(&st.window)->default_value(8), "DS-Sync's detection window, iterations")
    ("codec", po::value(&codec_list)->default_value("none"), (std::string("the BSP ring run's codecs, a comma list, one run each: ") + train::codec_help()).c_str())
    ("data", po::value(&st.data)->default_value(default_data), "Fashion-MNIST directory");
  // clang-format on
  try {
    po::variables_map vm;
    po::store(po::command_line_parser(argc, argv).options(desc).positional({}).run(), vm);
    if (vm.count("help")) {
      std::cout << desc << '\n';
      return 0;
    }
    po::notify(vm);
    st.policies = expand(policy, {"ring", "hierarchical", "gossip", "ds_sync"}, "policy");
    st.scenarios = expand(scenario, {"none", "uplink", "nic"}, "scenario");
    st.codecs.clear();
    for (std::size_t a = 0; a <= codec_list.size();) {
      const std::size_t b = std::min(codec_list.find(',', a), codec_list.size());
      st.codecs.push_back(codec_list.substr(a, b - a));
      (void)train::make_codec(st.codecs.back(), nullptr);  // a bad name or parameter fails here
      a = b + 1;
    }
    if ((st.codecs.size() > 1 || st.codecs.front() != "none") &&
        std::find(st.policies.begin(), st.policies.end(), "ring") == st.policies.end())
      throw std::invalid_argument("--codec compresses the BSP ring runs: it needs --policy ring (or all)");
    if (transport != "auto" && transport != "sim" && transport != "mpi")
      throw std::invalid_argument("unknown transport '" + transport + "' (auto, sim or mpi)");
    const bool launched = std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr || std::getenv("PMI_SIZE") != nullptr ||
                          std::getenv("PMIX_RANK") != nullptr;
    st.wall = transport == "mpi" || (transport == "auto" && launched);
#ifndef DSSYNC_EXAMPLE_MPI
    if (st.wall)
      throw std::invalid_argument(std::string(transport == "mpi" ? "--transport mpi" : "an MPI launcher started this process") +
                                  ", but this train_fmnist was built without MPI (install libboost-mpi-dev and rebuild, or pass --transport sim)");
#endif
    if (st.wall) {  // the contention scenarios are scripts of the simulated network
      if (scenario == "all") st.scenarios = {"none"};
      for (const auto& sc : st.scenarios)
        if (sc != "none")
          throw std::invalid_argument("--scenario " + sc + " needs the simulated network (--transport sim); under mpiexec only 'none' runs");
      if (!vm["workers"].defaulted())
        throw std::invalid_argument("--workers: under mpiexec the workers are the processes (mpiexec -n N)");
    }
    if (st.workers < 2 || st.workers > 256) throw std::invalid_argument("--workers " + std::to_string(st.workers) + " must be in 2..256");
    if (st.epochs < 1) throw std::invalid_argument("--epochs must be at least 1");
    if (st.batch < 1) throw std::invalid_argument("--batch must be at least 1");
    if (st.window < 1) throw std::invalid_argument("--window must be at least 1");
    if (!(compute_ms >= 0) || !(intra_gbps > 0) || !(uplink_gbps > 0) || !(latency_us >= 0))
      throw std::invalid_argument("--compute-ms and --latency-us must not be negative, link speeds must be positive");
    if (!(st.target >= 0 && st.target < 1)) throw std::invalid_argument("--target-accuracy must be in [0, 1)");
    st.compute_s = compute_ms * 1e-3;
    st.intra_bps = intra_gbps * 1e9 / 8;
    st.uplink_bps = uplink_gbps * 1e9 / 8;
    st.latency_s = latency_us * 1e-6;
    (void)train::model::make(st.model);
  } catch (const std::exception& e) {
    std::cerr << "train_fmnist: " << e.what() << "\nTry 'train_fmnist --help'.\n";
    return 2;
  }
#ifdef DSSYNC_EXAMPLE_MPI
  std::optional<boost::mpi::environment> env;  // declared first, so MPI is finalized after the transport
  std::optional<dssync::transport::mpi> mpi_comm;
#endif
  try {
#ifdef DSSYNC_EXAMPLE_MPI
    if (st.wall) {
      env.emplace(argc, argv);
      mpi_comm.emplace(MPI_COMM_WORLD);
      st.process_rank = mpi_comm->rank();
      st.workers = mpi_comm->size();
      if (st.workers < 2) {
        std::cerr << "train_fmnist: under MPI it needs at least 2 processes (mpiexec -n 4), not " << st.workers << '\n';
        return 2;
      }
    }
#endif
    const train::model m = train::model::make(st.model);
    const double target = st.target > 0 ? st.target : 0.80;
    const auto tr = train::load(st.data, "train", st.train_subset);
    const auto te = train::load(st.data, "t10k");
    if (tr.size() < static_cast<std::size_t>(st.workers * st.batch))
      throw std::invalid_argument("--train-subset " + std::to_string(tr.size()) + " is less than one batch per worker");
    if (st.process_rank == 0)
      std::cerr << "train_fmnist: " << st.model << " (" << m.parameters() << " parameters, "
                << m.parameters() * sizeof(float) << " bytes), " << st.workers
                << (st.wall ? " MPI processes (wall-clock times), " : " workers on simulated racks, ") << tr.size()
                << " training / " << te.size() << " test examples\n";
    // In process: every worker a thread on the simulated network, on its virtual clock.
    auto sim_launch = [&st](const std::string& sc) {
      return [&st, sc](const auto& topo, int per_rack, auto&& body) {
        dssync::transport::sim::world_options wo;
        wo.script = dssync::sim::scenario::parse(scenario_script(sc, st, per_rack));
        dssync::transport::sim::world world(topo, wo);
        const auto errs = world.run_collect([&](auto& comm) {
          body(comm, [&comm] { return comm.now(); }, [&comm](double s) { comm.sleep_for(s); });
        });
        for (const auto& e : errs)
          if (e) std::rethrow_exception(e);
      };
    };
    std::vector<run> runs;
    for (const auto& sc : st.scenarios)
      for (const auto& p : st.policies) {
#ifdef DSSYNC_EXAMPLE_MPI
        if (st.wall) {  // this process is one worker on the MPI transport, on the wall clock
          auto mpi_launch = [&](const auto&, int, auto&& body) {
            MPI_Barrier(MPI_COMM_WORLD);  // a common origin, as near as one barrier gives it
            const auto origin = std::chrono::steady_clock::now();
            body(*mpi_comm, [origin] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - origin).count(); },
                 [](double sec) {
                   if (sec > 0) std::this_thread::sleep_for(std::chrono::duration<double>(sec));
                 });
          };
          for (const auto& c : p == "ring" ? st.codecs : std::vector<std::string>{"none"})
            runs.push_back(train_one(st, m, tr, te, p, sc, target, mpi_launch, c));
          continue;
        }
#endif
        for (const auto& c : p == "ring" ? st.codecs : std::vector<std::string>{"none"})
          runs.push_back(train_one(st, m, tr, te, p, sc, target, sim_launch(sc), c));
      }
    if (st.process_rank != 0) return 0;  // rank 0 reports
    train::report rep{st.model, target, st.epochs, st.wall ? "wall-clock" : "simulated", st.workers};
    for (const auto& r : runs)
      rep.add({r.policy, r.scenario, r.epochs, r.sim_time, r.comm_per_iter, r.iter_time, r.time_to_target, r.group_changes,
               r.codec, r.compression});
    if (!st.csv.empty()) rep.write_csv(st.csv);
    if (!st.svg.empty()) rep.write_svg(st.svg);
    if (!st.trace.empty()) {
      const run* ds = nullptr;
      for (const auto& r : runs)
        if (r.policy == "ds_sync" && !r.group_changes.empty() && (ds == nullptr || r.scenario == "uplink")) ds = &r;
      if (ds == nullptr)
        for (const auto& r : runs)
          if (r.policy == "ds_sync") ds = &r;
      if (ds == nullptr) throw std::invalid_argument("--trace needs a ds_sync run (--policy ds_sync or all)");
      if (!ds->first_adjustment)
        throw std::invalid_argument("--trace: DS-Sync adjusted no groups in this run (try --scenario uplink or nic)");
      const std::size_t before = *ds->first_adjustment - 1;
      const std::size_t after = std::min(*ds->first_adjustment + st.window, ds->iterations - 1);
      train::write_adjustment_trace(st.trace, ds->trace, before, after);
      std::cerr << "train_fmnist: trace of DS-Sync iterations " << before << " (before) and " << after
                << " (after its first group adjustment, " << ds->scenario
                << ") written to " << st.trace << '\n';
    }
    if (st.json)
      rep.write_json(std::cout);
    else
      rep.write_table(std::cout);
    if (!st.svg.empty()) std::cerr << "train_fmnist: plot written to " << st.svg << '\n';
    return 0;
  } catch (const train::data_error& e) {  // every rank reads the same files, so every rank ends here
    if (st.process_rank == 0) std::cerr << "train_fmnist: " << e.what() << '\n';
    return 77;  // the data set is missing or unreadable: ctest reports the run as skipped
  } catch (const std::exception& e) {
    std::cerr << "train_fmnist: " << e.what() << '\n';
#ifdef DSSYNC_EXAMPLE_MPI
    if (st.wall) MPI_Abort(MPI_COMM_WORLD, 1);  // a rank that fails alone must not leave the others waiting
#endif
    return 1;
  }
}
