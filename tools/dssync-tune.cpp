// dssync-tune: measures dssync's allreduce policies on this machine and writes the tuning table that the
// `auto` policy picks from (include/dssync/tuner.hpp, include/dssync/algorithms/tuning.hpp).
//
//   mpiexec -n 4 dssync-tune --sizes 4K:64M --out tuning.json      # over MPI, one rank per process
//   dssync-tune --inproc 4 --sizes 4K:16M --out tuning.json         # in-process ranks (threads)
//   DSSYNC_TUNING_FILE=tuning.json ./my_trainer                     # auto now picks from it
//   mpiexec -n 4 dssync-tune --check tuning.json                    # auto against every policy, side by side
//   mpiexec -n 4 dssync-tune --shm --out tuning.json                # over transport::mpi_shm (shared window)
//
// It prints one row per size, nccl-tests style (size, each policy's time, the fastest, what auto picks
// from this table (ties within 5 % go to the policy registered first), the fastest's algbw and busbw),
// a progress line per size on stderr, and with --check the ratio of auto's time to the fastest
// policy's, measured in the same rounds.
#include <mpi.h>

#include <boost/program_options.hpp>

#include <dssync/algorithms/registry.hpp>
#include <dssync/algorithms/tuning.hpp>
#include <dssync/core/error.hpp>
#include <dssync/transport/inproc.hpp>
#include <dssync/transport/mpi.hpp>
#include <dssync/transport/mpi_shm.hpp>
#include <dssync/tuner.hpp>
#include <dssync/version.hpp>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace po = boost::program_options;

namespace {

struct config {
  std::string sizes = "4K:64M";
  std::size_t factor = 4;
  std::string policies;
  int rounds = 5;
  double sample_ms = 5;
  bool no_probe = false;
  std::string out;
  std::string check;
  int inproc = 0;
  bool shm = false;
  bool quiet = false;
};

std::vector<std::size_t> ladder(const std::string& spec, std::size_t factor) {
  const auto colon = spec.find(':');
  const std::size_t lo = dssync::detail::parse_size("--sizes", spec.substr(0, colon));
  const std::size_t hi = colon == std::string::npos ? lo : dssync::detail::parse_size("--sizes", spec.substr(colon + 1));
  if (lo < 4 || hi < lo) throw dssync::invalid_argument("--sizes " + spec + ": need 4 <= MIN <= MAX");
  if (factor < 2) throw dssync::invalid_argument("--factor " + std::to_string(factor) + " must be at least 2");
  std::vector<std::size_t> v;
  for (std::size_t s = lo; s <= hi; s *= factor) {
    v.push_back(s);
    if (s > hi / factor) break;
  }
  return v;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> v;
  std::stringstream in(s);
  for (std::string x; std::getline(in, x, ',');)
    if (!x.empty()) v.push_back(x);
  return v;
}

std::string label(std::size_t b) {
  if (b >= (1u << 30) && b % (1u << 30) == 0) return std::to_string(b >> 30) + "G";
  if (b >= (1u << 20) && b % (1u << 20) == 0) return std::to_string(b >> 20) + "M";
  if (b >= (1u << 10) && b % (1u << 10) == 0) return std::to_string(b >> 10) + "K";
  return std::to_string(b);
}

std::string num(double v, int prec) {
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", prec, v);
  return b;
}

// The table in nccl-tests style; with --check, auto's ratio to the fastest policy.
void print(const dssync::tune_result& r, const config& cfg, bool checking) {
  const auto& t = r.table;
  std::cout << "# dssync-tune (dssync " << DSSYNC_VERSION_STRING << "): " << t.transport << ", " << t.world_size
            << " ranks, " << t.topology << ", " << t.element << ' ' << t.op << ", " << cfg.rounds
            << " rounds, median of the slowest rank's mean per call\n";
  for (const auto& l : t.links)
    std::cout << "# link class " << l.link_class << ": " << l.pairs << " pairs, alpha " << num(l.alpha_s * 1e6, 2)
              << " us, beta " << num(l.beta_s_per_byte * 1e9, 4) << " ns/B"
              << (l.beta_s_per_byte > 0 ? " (" + num(1e-9 / l.beta_s_per_byte, 2) + " GB/s)" : std::string(" (too fast to measure)"))
              << '\n';
  for (const auto& [name, why] : r.skipped) std::cout << "# skipped " << name << ": " << why << '\n';
  if (t.points.empty()) return;
  std::vector<std::string> names;
  for (const auto& [n, v] : t.points.front().times) names.push_back(n);
  std::cout << "#" << std::string(9, ' ') << "size";
  for (const auto& n : names) std::cout << ' ' << std::string(n.size() + 4 < 12 ? 12 - n.size() - 4 : 0, ' ') << n << "(us)";
  std::cout << "  " << "fastest" << std::string(12, ' ') << "auto picks" << std::string(9, ' ')
            << "algbw(GB/s)  busbw(GB/s)";
  if (checking) std::cout << "  auto/fastest";
  std::cout << '\n';
  const double bus = t.world_size > 1 ? 2.0 * (t.world_size - 1) / t.world_size : 0.0;
  for (const auto& p : t.points) {
    std::string best;
    double bt = 0;
    for (const auto& [n, v] : p.times)
      if (n != "auto" && (best.empty() || v < bt)) best = n, bt = v;
    std::cout << std::string(p.bytes < 1e12 ? 14 - std::min<std::size_t>(13, std::to_string(p.bytes).size()) : 0, ' ')
              << p.bytes;
    for (std::size_t i = 0; i < names.size(); ++i) {
      const auto v = p.time_of(names[i]).value_or(0);
      const std::string s = num(v * 1e6, 2);
      const std::size_t w = std::max<std::size_t>(12, names[i].size() + 4) + 1;
      std::cout << std::string(w > s.size() ? w - s.size() : 1, ' ') << s;
    }
    const double alg = bt > 0 ? static_cast<double>(p.bytes) / bt / 1e9 : 0;
    const auto pick = t.pick(p.bytes, t.world_size, t.topology);
    const std::string picked = pick ? pick->policy : std::string("-");
    std::cout << "  " << best << std::string(best.size() < 19 ? 19 - best.size() : 1, ' ') << picked
              << std::string(picked.size() < 19 ? 19 - picked.size() : 1, ' ') << num(alg, 3)
              << std::string(13 - std::min<std::size_t>(12, num(alg, 3).size()), ' ') << num(alg * bus, 3);
    if (checking) {
      const auto a = p.time_of("auto");
      std::cout << "  " << (a && bt > 0 ? num(*a / bt, 3) : std::string("-"));
    }
    std::cout << '\n';
  }
}

template <class Comm>
dssync::tune_result run_tuner(Comm& comm, const config& cfg, const std::vector<std::size_t>& sizes,
                              std::shared_ptr<const dssync::algorithms::tuning_table> check, const std::string& transport) {
  dssync::tune_options o;
  o.sizes = sizes;
  o.rounds = cfg.rounds;
  o.target_sample_seconds = cfg.sample_ms / 1000.0;
  o.probe = !cfg.no_probe && !check;
  o.transport = transport;
  o.policies = split(cfg.policies);
  if (check) {
    o.auto_table = check;
    if (o.policies.empty())
      for (const auto& [n, v] : check->points.front().times)
        if (dssync::algorithms::registry().find(n) != nullptr) o.policies.push_back(n);
    o.policies.push_back("auto");
  }
  if (comm.rank() == 0 && !cfg.quiet)
    o.progress = [](std::size_t i, std::size_t k, const dssync::algorithms::tuning_point& p) {
      std::cerr << "dssync-tune: [" << i + 1 << '/' << k << "] " << label(p.bytes) << " B: fastest " << p.fastest()
                << ' ' << num(p.time_of(p.fastest()).value_or(0) * 1e6, 2) << " us\n";
    };
  return dssync::tune(comm, o, dssync::options::from_env());
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int world_rank = 0, world_size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  config cfg;
  po::options_description desc(
      "Usage: [mpiexec -n N] dssync-tune [options]\n"
      "Measures every allreduce policy at a ladder of sizes and writes the table that auto picks from\n"
      "(DSSYNC_TUNING_FILE=FILE, or communicator::use_tuning). Options");
  desc.add_options()("help,h", "this help")("version", "the version")(
      "sizes", po::value(&cfg.sizes)->value_name("MIN:MAX")->default_value(cfg.sizes), "bytes per rank (K, M, G)")(
      "factor", po::value(&cfg.factor)->default_value(cfg.factor), "ladder step: each size is this times the last")(
      "policies", po::value(&cfg.policies)->value_name("A,B"), "policies to measure (default: every allreduce policy)")(
      "rounds", po::value(&cfg.rounds)->default_value(cfg.rounds), "rounds per size (the median counts)")(
      "sample-ms", po::value(&cfg.sample_ms)->default_value(cfg.sample_ms), "milliseconds per sample (at least one call)")(
      "no-probe", po::bool_switch(&cfg.no_probe), "skip the alpha/beta probe")(
      "out,o", po::value(&cfg.out)->value_name("FILE"), "write the table to FILE (rank 0)")(
      "check", po::value(&cfg.check)->value_name("FILE"),
      "measure auto with the table FILE against the policies it lists, side by side")(
      "inproc", po::value(&cfg.inproc)->value_name("N"), "N in-process ranks (threads) instead of MPI's")(
      "shm", po::bool_switch(&cfg.shm), "over transport::mpi_shm (on-node peers through an MPI-3 shared window)")(
      "quiet,q", po::bool_switch(&cfg.quiet), "no progress lines");
  int rc = 0;
  try {
    po::variables_map vm;
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
    if (vm.count("help")) {
      if (world_rank == 0) std::cout << desc << '\n';
      MPI_Finalize();
      return 0;
    }
    if (vm.count("version")) {
      if (world_rank == 0) std::cout << "dssync-tune (dssync " << DSSYNC_VERSION_STRING << ")\n";
      MPI_Finalize();
      return 0;
    }
    const auto sizes = ladder(cfg.sizes, cfg.factor);
    std::shared_ptr<const dssync::algorithms::tuning_table> check;
    if (!cfg.check.empty()) check = dssync::algorithms::tuning_from_file(cfg.check);
    dssync::tune_result result;
    if (cfg.inproc > 0) {
      if (world_size != 1) throw dssync::invalid_argument("--inproc runs in one process, not under mpiexec -n " + std::to_string(world_size));
      if (cfg.shm) throw dssync::invalid_argument("--inproc and --shm exclude each other");
      dssync::transport::inproc::world w(cfg.inproc);
      w.run([&](auto& comm) {  // rethrows the lowest failing rank's error
        auto r = run_tuner(comm, cfg, sizes, check, "inproc");
        if (comm.rank() == 0) result = std::move(r);
      });
    } else if (cfg.shm) {
      dssync::transport::mpi_shm comm(MPI_COMM_WORLD);
      result = run_tuner(comm, cfg, sizes, check, "mpi_shm");
    } else {
      dssync::transport::mpi comm(MPI_COMM_WORLD);
      result = run_tuner(comm, cfg, sizes, check, "mpi");
    }
    if (world_rank == 0) {
      print(result, cfg, static_cast<bool>(check));
      if (check) {
        double worst = 0;
        for (const auto& p : result.table.points) {
          double bt = 0;
          bool any = false;
          for (const auto& [n, v] : p.times)
            if (n != "auto" && (!any || v < bt)) bt = v, any = true;
          if (const auto a = p.time_of("auto"); a && bt > 0) worst = std::max(worst, *a / bt);
        }
        std::cout << "# auto/fastest: worst " << num(worst, 3) << " over " << result.table.points.size() << " sizes\n";
      }
      if (!cfg.out.empty()) {
        result.table.save(cfg.out);
        std::cerr << "dssync-tune: wrote " << cfg.out << '\n';
      }
    }
  } catch (const po::error& e) {
    if (world_rank == 0) std::cerr << "dssync-tune: " << e.what() << " (see --help)\n";
    rc = 2;
  } catch (const std::exception& e) {
    std::cerr << "dssync-tune: rank " << world_rank << ": " << e.what() << '\n';
    rc = 1;
  }
  if (rc != 0 && world_size > 1) MPI_Abort(MPI_COMM_WORLD, rc);
  MPI_Finalize();
  return rc;
}
