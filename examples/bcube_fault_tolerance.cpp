// bcube_fault_tolerance: BML keeps training when a server fails (seed 003, "A Scalable, High-Performance,
// and Fault-Tolerant Network Architecture for Distributed Machine Learning", section "Fault Tolerance").
//
//   bcube_fault_tolerance [--steps S] [--fail-at STEP] [--victim RANK]
//
// Nine in-process servers, BCube(3,2), train a softmax classifier on a synthetic 4-class problem with
// data-parallel SGD. Every step each server computes the gradient of its own mini-batch, and the servers
// sum gradients with BML (dssync::fault::synchronize_resilient over algorithms::bcube). In the middle of
// training one server dies during a synchronization (fault injection). The survivors notice (peer_failure
// naming it), revoke, agree, restore their gradients, shrink to the 8 survivors, re-plan BML without the
// dead server (algorithms::bcube::plan_without) and finish that synchronization. From then on each
// survivor takes the rescaled mini-batch u + u·x/(N−x), so the global batch stays N·u.
//
// It prints the plan of one server before and after the failure (per channel, its steps grouped into
// stages: "send>{1,2}" sends to servers 1 and 2, "reduce<{2,1}" receives and reduces, "copy<" receives
// and copies), one line per step, and checks that
//   - the survivors' parameters and losses are bitwise identical,
//   - every step after the failure averages exactly N·u samples,
//   - the loss goes down, before and after the failure.
// It exits 0 when all checks pass and 1 otherwise.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <iomanip>
#include <iostream>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <dssync/dssync.hpp>
#include <dssync/algorithms/bcube.hpp>
#include <dssync/fault/recovery.hpp>

namespace {

constexpr int kClasses = 4;
constexpr int kFeatures = 16;
constexpr std::size_t kParams = kClasses * kFeatures + kClasses;  // W (row-major) then b
constexpr int kBatch = 32;                                       // u: per-server mini-batch with no failure
constexpr double kLearningRate = 0.5;

using comm_t = dssync::transport::inproc::communicator;

/// The task: 4 Gaussian blobs in 16 dimensions. The class means are shared; every server draws its own
/// stream of samples.
struct task {
  std::vector<double> means;  // kClasses x kFeatures
  explicit task(unsigned seed) : means(kClasses * kFeatures) {
    std::mt19937 g(seed);
    std::normal_distribution<double> d(0.0, 0.8);
    for (auto& m : means) m = d(g);
  }
};

/// Adds the gradient of the summed cross-entropy of `batch` samples to grad[0..kParams) and returns the
/// summed loss.
double accumulate_gradient(const task& t, const std::vector<double>& params, std::mt19937& g, int batch,
                           std::vector<double>& grad) {
  std::uniform_int_distribution<int> label(0, kClasses - 1);
  std::normal_distribution<double> noise(0.0, 1.0);
  double loss = 0;
  double x[kFeatures], z[kClasses];
  for (int s = 0; s < batch; ++s) {
    const int y = label(g);
    for (int f = 0; f < kFeatures; ++f) x[f] = t.means[static_cast<std::size_t>(y * kFeatures + f)] + noise(g);
    double zmax = -1e300;
    for (int c = 0; c < kClasses; ++c) {
      double v = params[kClasses * kFeatures + static_cast<std::size_t>(c)];
      for (int f = 0; f < kFeatures; ++f) v += params[static_cast<std::size_t>(c * kFeatures + f)] * x[f];
      z[c] = v;
      zmax = std::max(zmax, v);
    }
    double sum = 0;
    for (double& v : z) sum += (v = std::exp(v - zmax));
    for (int c = 0; c < kClasses; ++c) {
      const double p = z[c] / sum;
      const double dz = p - (c == y ? 1.0 : 0.0);
      for (int f = 0; f < kFeatures; ++f) grad[static_cast<std::size_t>(c * kFeatures + f)] += dz * x[f];
      grad[kClasses * kFeatures + static_cast<std::size_t>(c)] += dz;
    }
    loss -= std::log(z[y] / sum);
  }
  return loss;
}

/// One server's plan, compactly: per channel, consecutive steps of one kind form a stage; peers are
/// printed as topology ranks (the plan's hosts).
void summarize(std::ostream& os, const dssync::schedule& s, int rank) {
  const auto& plan = s.ranks[static_cast<std::size_t>(rank)];
  os << "  " << s.policy << " plan on " << s.world_size << " servers: " << s.channel_count() << " channels, "
     << s.step_count() << " steps in all; server " << s.host(rank) << " runs " << plan.step_count() << ":\n";
  for (std::size_t c = 0; c < plan.channels.size(); ++c) {
    os << "    channel " << c << ":";
    const auto& steps = plan.channels[c].steps;
    for (std::size_t i = 0; i < steps.size();) {
      const auto kind = steps[i].kind;
      os << ' '
         << (kind == dssync::step_kind::send ? "send>" : kind == dssync::step_kind::recv_reduce ? "reduce<" : "copy<")
         << '{';
      std::size_t j = i;
      for (; j < steps.size() && steps[j].kind == kind; ++j) os << (j > i ? "," : "") << s.host(steps[j].peer);
      os << '}';
      i = j;
    }
    os << '\n';
  }
}

struct server_log {
  std::vector<double> losses;        // global mean loss per step, as this server computed it
  std::vector<double> params;        // final parameters
  std::vector<double> samples;       // global samples per step
  std::vector<int> servers;          // servers in the synchronization per step
  bool died = false;
  std::string error;
};

long parse_int(const char* flag, const char* text, long lo, long hi) {
  char* end = nullptr;
  const long v = std::strtol(text, &end, 10);
  if (end == text || *end != '\0' || v < lo || v > hi) {
    std::cerr << "bcube_fault_tolerance: " << flag << " needs an integer in " << lo << ".." << hi << ", got \"" << text
              << "\"\n";
    std::exit(2);
  }
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  int steps = 40, fail_at = 15, victim = 4;  // server 4 is [1,1], the middle of BCube(3,2)
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if ((a == "--steps" || a == "--fail-at" || a == "--victim") && i + 1 < argc) {
      const char* v = argv[++i];
      if (a == "--steps") steps = static_cast<int>(parse_int("--steps", v, 2, 100000));
      if (a == "--fail-at") fail_at = static_cast<int>(parse_int("--fail-at", v, -1, 100000));
      if (a == "--victim") victim = static_cast<int>(parse_int("--victim", v, 0, 8));
    } else if (a == "--help" || a == "-h") {
      std::cout << "usage: bcube_fault_tolerance [--steps S] [--fail-at STEP (-1: never)] [--victim RANK (0..8)]\n";
      return 0;
    } else {
      std::cerr << "bcube_fault_tolerance: unknown argument \"" << a << "\" (try --help)\n";
      return 2;
    }
  }

  const dssync::topology::bcube topo(3, 2);
  const int N = topo.workers();
  const task t(2024);
  dssync::options opt;
  opt.with_timeout(std::chrono::seconds(10));
  const std::size_t count = kParams + 2;  // gradient, summed loss, sample count

  std::cout << "BML on " << topo.name() << ": " << N << " in-process servers train a softmax classifier ("
            << kClasses << " classes, " << kFeatures << " features, " << kParams << " parameters), per-server batch u = "
            << kBatch << ", global batch N*u = " << N * kBatch << "\n";
  if (fail_at >= 0)
    std::cout << "server " << victim << " will die during the synchronization of step " << fail_at << "\n";
  // The plan of a neighbour of the victim (same level-1 switch) shows the re-plan best.
  const auto group = topo.group(1, victim);
  const int shown = group[0] != victim ? group[0] : group[1];
  std::cout << "plan before the failure:\n";
  summarize(std::cout, dssync::algorithms::bcube{}.plan(topo, {count, 0}), shown);

  std::vector<server_log> logs(static_cast<std::size_t>(N));
  std::mutex print_mtx;
  const auto t0 = std::chrono::steady_clock::now();
  dssync::transport::inproc::world w(N);
  auto errs = w.run_collect([&](comm_t& comm) {
    const int me = comm.rank();  // topology rank, for good
    auto& log = logs[static_cast<std::size_t>(me)];
    std::mt19937 g(1000u + static_cast<unsigned>(me));
    std::vector<double> params(kParams, 0.0), buf(count);
    comm_t* cur = &comm;
    int batch = kBatch;
    try {
      for (int step = 0; step < steps; ++step) {
        // Dies at executor step 20: it has exchanged data on channel 0 but sent nothing on channel 1.
        if (step == fail_at && me == victim) comm.owner().inject_fault(me, 20);
        std::fill(buf.begin(), buf.end(), 0.0);
        buf[kParams] = accumulate_gradient(t, params, g, batch, buf);
        buf[kParams + 1] = batch;
        auto res = dssync::fault::synchronize_resilient(*cur, topo, buf, dssync::ops::sum{}, opt);
        cur = &res.comm;
        const double samples = buf[kParams + 1];
        const double loss = buf[kParams] / samples;
        for (std::size_t i = 0; i < kParams; ++i) params[i] -= kLearningRate * buf[i] / samples;
        log.losses.push_back(loss);
        log.samples.push_back(samples);
        log.servers.push_back(cur->size());
        if (res.recovered()) {
          // Seed 003: the survivors keep the global batch N*u; each takes u + u*x/(N-x) (here in integers).
          const int x = static_cast<int>(res.failed.size());
          const double u_new = dssync::fault::rescaled_batch(kBatch, N, x);
          batch = static_cast<int>(dssync::fault::distribute_batch(static_cast<std::size_t>(N * kBatch), cur->size())
                                       [static_cast<std::size_t>(cur->rank())]);
          if (cur->rank() == 0) {
            std::lock_guard lk(print_mtx);
            const auto& e = res.errors.empty() ? dssync::fault::attempt_error{} : res.errors.front();
            std::cout << "step " << step << ": server " << me << " caught: " << (e.what.empty() ? "(a peer failed)" : e.what)
                      << "\n";
            std::cout << "step " << step << ": recovered in " << res.attempts << " attempts; failed servers [";
            for (std::size_t i = 0; i < res.failed.size(); ++i) std::cout << (i ? "," : "") << res.failed[i];
            std::cout << "], " << cur->size() << " survivors; per-server batch u + u*x/(N-x) = " << kBatch << " + "
                      << kBatch << "*" << x << "/" << (N - x) << " = " << u_new << "\n";
            std::cout << "plan after the failure:\n";
            const auto after = dssync::algorithms::bcube{}.plan_without(topo, res.failed, {count, 0});
            for (int i = 0; i < after.world_size; ++i)
              if (after.host(i) == shown) summarize(std::cout, after, i);
          }
        }
        if (cur->rank() == 0) {
          std::lock_guard lk(print_mtx);
          std::cout << "step " << std::setw(3) << step << "  servers " << cur->size() << "  batch/server " << batch
                    << "  samples " << samples << "  loss " << std::fixed << std::setprecision(4) << loss
                    << std::defaultfloat << "\n";
        }
      }
      log.params = params;
    } catch (const dssync::injected_fault& e) {
      log.died = true;
      log.error = e.what();
    }
  });
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  // Checks.
  int failures = 0;
  auto check = [&](bool ok, const std::string& what) {
    if (!ok) {
      ++failures;
      std::cout << "CHECK FAILED: " << what << "\n";
    }
  };
  for (int r = 0; r < N; ++r)
    if (errs[static_cast<std::size_t>(r)]) {
      try {
        std::rethrow_exception(errs[static_cast<std::size_t>(r)]);
      } catch (const std::exception& e) {
        check(false, "server " + std::to_string(r) + " failed: " + e.what());
      }
    }
  std::vector<int> alive;
  for (int r = 0; r < N; ++r) {
    const bool should_die = fail_at >= 0 && fail_at < steps && r == victim;
    check(logs[static_cast<std::size_t>(r)].died == should_die,
          "server " + std::to_string(r) + (should_die ? " did not die" : " died: " + logs[static_cast<std::size_t>(r)].error));
    if (!logs[static_cast<std::size_t>(r)].died && !errs[static_cast<std::size_t>(r)]) alive.push_back(r);
  }
  if (!alive.empty()) {
    const auto& ref = logs[static_cast<std::size_t>(alive.front())];
    for (int r : alive) {
      const auto& l = logs[static_cast<std::size_t>(r)];
      check(l.params.size() == kParams && std::memcmp(l.params.data(), ref.params.data(), kParams * sizeof(double)) == 0,
            "server " + std::to_string(r) + "'s parameters differ from server " + std::to_string(alive.front()) + "'s");
      check(l.losses.size() == ref.losses.size() &&
                std::memcmp(l.losses.data(), ref.losses.data(), ref.losses.size() * sizeof(double)) == 0,
            "server " + std::to_string(r) + "'s losses differ from server " + std::to_string(alive.front()) + "'s");
    }
    check(ref.losses.size() == static_cast<std::size_t>(steps), "not every step ran");
    if (ref.losses.size() == static_cast<std::size_t>(steps)) {
      for (int s = 0; s < steps; ++s) {
        const bool before = fail_at < 0 || s < fail_at;
        const double want_samples = s == fail_at ? (N - 1) * kBatch : N * kBatch;  // the failing step: u each
        check(ref.samples[static_cast<std::size_t>(s)] == want_samples,
              "step " + std::to_string(s) + " averaged " + std::to_string(ref.samples[static_cast<std::size_t>(s)]) +
                  " samples, expected " + std::to_string(want_samples));
        check(ref.servers[static_cast<std::size_t>(s)] == (before ? N : N - 1),
              "step " + std::to_string(s) + " ran on " + std::to_string(ref.servers[static_cast<std::size_t>(s)]) +
                  " servers");
      }
      auto mean = [&](int a, int b) {
        double m = 0;
        for (int s = a; s < b; ++s) m += ref.losses[static_cast<std::size_t>(s)];
        return m / (b - a);
      };
      const int window = std::max(1, std::min(5, steps / 4));
      const double first = mean(0, window), last = mean(steps - window, steps);
      check(last < 0.6 * first, "loss did not go down: " + std::to_string(first) + " -> " + std::to_string(last));
      if (fail_at > window && fail_at + 2 * window <= steps) {
        const double at_failure = mean(fail_at - window, fail_at);
        check(last < at_failure, "loss did not go down after the failure: " + std::to_string(at_failure) + " -> " +
                                     std::to_string(last));
      }
      std::cout << "loss " << first << " (first " << window << " steps) -> " << last << " (last " << window
                << " steps)\n";
    }
  }
  std::cout << alive.size() << " survivors with bitwise identical parameters; " << steps << " steps in " << secs
            << " s\n";
  if (failures) {
    std::cout << failures << " check(s) failed\n";
    return 1;
  }
  std::cout << "all checks passed\n";
  return 0;
}
