#pragma once
/// \file
/// The tuning table: what `dssync-tune` (or `dssync::tune`, tuner.hpp) measured on the user's own
/// machine, and the rule by which the `auto` policy picks from it. As NCCL's tuner and Open MPI's
/// "tuned" decision rules, but from measurements of this machine rather than a model of it; where the
/// table has nothing to say, `auto` falls back to the cost model (`best_policy`).
///
/// The file is JSON (format version 1):
/// ```
/// { "dssync_tuning": 1, "transport": "mpi", "topology": "full_mesh(2)", "world_size": 2,
///   "element": "float32", "op": "sum",
///   "links": [ { "class": "intra", "pairs": 1, "alpha_s": 1.1e-06, "beta_s_per_byte": 9.8e-11 } ],
///   "points": [ { "bytes": 4096, "best": "direct", "times_s": { "ring": 4.9e-06, "direct": 4.7e-06 } } ] }
/// ```
/// - `links`: the probe's latency α and inverse bandwidth β per link class (pairs of ranks that
///   `topology::cluster_racks` puts in one rack are "intra", the others "inter").
/// - `points`: per measured size (bytes per rank, ascending), every eligible policy's time (the median
///   over rounds of the slowest rank's mean), and the fastest of them.
///
/// The rule (`tuning_table::pick`), for a call of S bytes on a world of N ranks and topology T:
///  1. The table applies only if it was measured on N ranks and, when it names one, on topology T.
///  2. At a measured size, the measured fastest policy wins; policies within `tie` (5 %) of it tie, and
///     the tie goes to the one registered first (ring, then direct, ...).
///  3. Between two measured sizes, each policy's time is interpolated linearly in log(size) and
///     log(time), and the fastest interpolated one wins, ties as above (policies measured at both sizes).
///  4. Below the smallest measured size, the smallest size's choice stands (latency-bound: the choice
///     does not change as messages shrink); above the largest, its choice stands up to
///     `extrapolate_above` times that size, beyond which the table has no entry.
///  5. Only policies registered now, planning allreduces and promising one, are picked; a table naming
///     a policy this process lacks simply skips it.
///
/// A file that does not parse, has another format version, or holds a malformed point (a size twice,
/// sizes out of order, a negative or non-finite time) is rejected with `invalid_argument` naming the
/// file and the value: a tuning file never silently changes what runs.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <fstream>
#include <iomanip>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/property_tree/json_parser.hpp>
#include <boost/property_tree/ptree.hpp>

#include "dssync/algorithms/cost_model.hpp"
#include "dssync/algorithms/registry.hpp"
#include "dssync/core/error.hpp"

namespace dssync::algorithms {

/// The probe's figures for one class of links.
struct tuning_link {
  std::string link_class;      ///< "intra" (same rack) or "inter"
  int pairs = 0;               ///< rank pairs of the class
  double alpha_s = 0;          ///< median one-way latency, seconds
  double beta_s_per_byte = 0;  ///< median inverse bandwidth, seconds per byte (0: too fast to measure)
};

/// The measured times of every policy at one size.
struct tuning_point {
  std::size_t bytes = 0;  ///< bytes per rank
  /// Seconds per call, per policy name, as measured.
  std::vector<std::pair<std::string, double>> times;

  /// The time of `policy`, if measured.
  [[nodiscard]] std::optional<double> time_of(std::string_view policy) const {
    for (const auto& [n, t] : times)
      if (n == policy) return t;
    return std::nullopt;
  }
  /// The fastest measured policy ("" if none).
  [[nodiscard]] std::string fastest() const {
    const auto it = std::min_element(times.begin(), times.end(),
                                     [](const auto& a, const auto& b) { return a.second < b.second; });
    return it == times.end() ? std::string() : it->first;
  }
};

/// What `auto` chose, and why (for DSSYNC_DEBUG=INFO).
struct tuning_choice {
  std::string policy;
  std::string reason;
};

/// A tuning table (see the file comment).
struct tuning_table {
  static constexpr int format_version = 1;
  /// How far above the largest measured size its choice still stands.
  static constexpr double extrapolate_above = 4.0;

  std::string transport;  ///< what it was measured on: "mpi", "inproc", "sim", ...
  std::string topology;   ///< the topology's name ("full_mesh(2)"); empty: any topology of `world_size`
  int world_size = 0;
  std::string element = "float32";
  std::string op = "sum";
  std::string origin;  ///< where it was read from (not saved), for messages
  std::vector<tuning_link> links;
  std::vector<tuning_point> points;  ///< ascending, distinct sizes

  /// The policy `pick` chooses for `bytes` per rank on `world` ranks of topology `topo_name`, among
  /// the registered allreduce policies, or nothing when the table has no entry for it.
  [[nodiscard]] std::optional<tuning_choice> pick(std::size_t bytes, int world, std::string_view topo_name) const {
    if (world != world_size || points.empty()) return std::nullopt;
    if (!topology.empty() && topo_name != topology) return std::nullopt;
    const std::string from = origin.empty() ? std::string("tuning table") : "tuning table " + origin;
    const auto measured = [&](const tuning_point& p, std::string how) -> std::optional<tuning_choice> {
      auto c = settle(p.times);
      if (!c) return std::nullopt;
      std::ostringstream os;
      os << from << ": " << how << (how.empty() ? "" : " ") << c->how << " at " << p.bytes << " B (" << c->detail
         << ')';
      return tuning_choice{c->policy, os.str()};
    };
    if (bytes <= points.front().bytes)
      return measured(points.front(), bytes == points.front().bytes ? "" : "below the smallest size,");
    if (bytes >= points.back().bytes) {
      if (static_cast<double>(bytes) > extrapolate_above * static_cast<double>(points.back().bytes))
        return std::nullopt;
      return measured(points.back(), bytes == points.back().bytes ? "" : "above the largest size,");
    }
    const auto hi = std::lower_bound(points.begin(), points.end(), bytes,
                                     [](const tuning_point& p, std::size_t b) { return p.bytes < b; });
    if (hi->bytes == bytes) return measured(*hi, "");
    const auto& p1 = *hi;
    const auto& p0 = *(hi - 1);
    const double f = (std::log(static_cast<double>(bytes)) - std::log(static_cast<double>(p0.bytes))) /
                     (std::log(static_cast<double>(p1.bytes)) - std::log(static_cast<double>(p0.bytes)));
    std::vector<std::pair<std::string, double>> between;
    for (const auto& [n, t0] : p0.times) {
      const auto t1 = p1.time_of(n);
      if (!t1 || !(t0 > 0) || !(*t1 > 0)) continue;
      between.emplace_back(n, std::exp((1 - f) * std::log(t0) + f * std::log(*t1)));
    }
    auto c = settle(between);
    if (!c) return std::nullopt;
    std::ostringstream os;
    os << from << ": " << c->how << " interpolated between " << p0.bytes << " and " << p1.bytes << " B (" << c->detail
       << ')';
    return tuning_choice{c->policy, os.str()};
  }

  /// Times closer than this (relative) to the fastest are a tie, which goes to the policy registered
  /// first (ring, then direct, ...): noise between plans of one shape (ring, direct and Rabenseifner
  /// at N = 2) must not flip the choice from run to run.
  static constexpr double tie = 0.05;

  /// The table as JSON (the file format above).
  [[nodiscard]] std::string to_json() const {
    std::ostringstream os;
    os << std::setprecision(6);
    os << "{\n  \"dssync_tuning\": " << format_version << ",\n  \"transport\": " << quote(transport)
       << ",\n  \"topology\": " << quote(topology) << ",\n  \"world_size\": " << world_size
       << ",\n  \"element\": " << quote(element) << ",\n  \"op\": " << quote(op) << ",\n  \"links\": [";
    for (std::size_t i = 0; i < links.size(); ++i)
      os << (i ? "," : "") << "\n    {\"class\": " << quote(links[i].link_class) << ", \"pairs\": " << links[i].pairs
         << ", \"alpha_s\": " << links[i].alpha_s << ", \"beta_s_per_byte\": " << links[i].beta_s_per_byte << '}';
    os << (links.empty() ? "" : "\n  ") << "],\n  \"points\": [";
    for (std::size_t i = 0; i < points.size(); ++i) {
      const auto& p = points[i];
      os << (i ? "," : "") << "\n    {\"bytes\": " << p.bytes << ", \"best\": " << quote(p.fastest())
         << ", \"times_s\": {";
      for (std::size_t j = 0; j < p.times.size(); ++j)
        os << (j ? ", " : "") << quote(p.times[j].first) << ": " << p.times[j].second;
      os << "}}";
    }
    os << (points.empty() ? "" : "\n  ") << "]\n}\n";
    return os.str();
  }

  /// Parses `text` (the file format above); `origin` names it in messages.
  /// \throws invalid_argument naming `origin` and what is wrong.
  [[nodiscard]] static tuning_table from_json(const std::string& text, std::string origin = "(string)") {
    namespace pt = boost::property_tree;
    const auto bad = [&](const std::string& what) {
      return invalid_argument("dssync tuning table " + origin + ": " + what);
    };
    pt::ptree root;
    try {
      std::istringstream is(text);
      pt::read_json(is, root);
    } catch (const pt::json_parser_error& e) {
      throw bad("not JSON: " + e.message() + " at line " + std::to_string(e.line()));
    }
    tuning_table t;
    t.origin = origin;
    try {
      const int v = root.get<int>("dssync_tuning");
      if (v != format_version)
        throw bad("format version " + std::to_string(v) + ", this dssync reads " + std::to_string(format_version));
      t.transport = root.get<std::string>("transport", "");
      t.topology = root.get<std::string>("topology", "");
      t.world_size = root.get<int>("world_size");
      t.element = root.get<std::string>("element", "float32");
      t.op = root.get<std::string>("op", "sum");
      if (t.world_size < 1) throw bad("world_size " + std::to_string(t.world_size) + " must be at least 1");
      if (const auto links = root.get_child_optional("links"))
        for (const auto& [k, l] : *links) {
          tuning_link x;
          x.link_class = l.get<std::string>("class");
          x.pairs = l.get<int>("pairs", 0);
          x.alpha_s = finite(l.get<double>("alpha_s"), "alpha_s of link class " + x.link_class, bad);
          x.beta_s_per_byte = finite(l.get<double>("beta_s_per_byte"), "beta_s_per_byte of link class " + x.link_class, bad);
          t.links.push_back(std::move(x));
        }
      for (const auto& [k, p] : root.get_child("points")) {
        tuning_point x;
        const auto b = p.get<double>("bytes");
        if (!(b >= 0) || b != std::floor(b) || b > 1e18) throw bad("point size " + p.get<std::string>("bytes") + " is not a byte count");
        x.bytes = static_cast<std::size_t>(b);
        if (!t.points.empty() && x.bytes <= t.points.back().bytes)
          throw bad("point sizes must ascend: " + std::to_string(x.bytes) + " follows " +
                    std::to_string(t.points.back().bytes));
        for (const auto& [name, v] : p.get_child("times_s")) {
          if (name.empty()) throw bad("times_s at " + std::to_string(x.bytes) + " B must name each policy");
          x.times.emplace_back(name, finite(v.get_value<double>(), "time of " + name + " at " + std::to_string(x.bytes) + " B", bad));
        }
        t.points.push_back(std::move(x));
      }
    } catch (const pt::ptree_error& e) {
      throw bad(std::string("malformed: ") + e.what());
    }
    return t;
  }

  /// Reads the table in file `path`. \throws invalid_argument naming the file if it cannot be read or
  /// is malformed.
  [[nodiscard]] static tuning_table load(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw invalid_argument("dssync tuning table " + path + ": cannot be read");
    std::ostringstream os;
    os << in.rdbuf();
    return from_json(os.str(), path);
  }
  /// Writes the table to file `path`. \throws invalid_argument if it cannot be written.
  void save(const std::string& path) const {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << to_json();
    out.flush();
    if (!out) throw invalid_argument("dssync tuning table " + path + ": cannot be written");
  }

 private:
  struct settled {
    std::string policy, how, detail;
  };
  /// The choice among `times` (see `tie`): the eligible fastest, or the first registered of those
  /// within `tie` of it.
  static std::optional<settled> settle(const std::vector<std::pair<std::string, double>>& times) {
    const auto names = registry().names();
    const auto order = [&](std::string_view n) {
      return static_cast<std::size_t>(std::find(names.begin(), names.end(), n) - names.begin());
    };
    const auto eligible = [](std::string_view name) {
      const policy_entry* e = registry().find(name);
      return e != nullptr && e->plans(semantics::allreduce) && e->promises == semantics::allreduce;
    };
    const std::pair<std::string, double>* fastest = nullptr;
    for (const auto& x : times)
      if (eligible(x.first) && (fastest == nullptr || x.second < fastest->second)) fastest = &x;
    if (fastest == nullptr) return std::nullopt;
    const std::pair<std::string, double>* chosen = fastest;
    for (const auto& x : times)
      if (eligible(x.first) && x.second <= fastest->second * (1 + tie) && order(x.first) < order(chosen->first))
        chosen = &x;
    std::ostringstream os;
    os << chosen->first << ' ' << chosen->second * 1e6 << " us";
    if (chosen != fastest)
      os << ", within " << std::lround(tie * 100) << " % of " << fastest->first << "'s " << fastest->second * 1e6 << " us";
    else if (chosen->first != "ring")
      for (const auto& x : times)
        if (x.first == "ring") os << ", ring " << x.second * 1e6 << " us";
    return settled{chosen->first, chosen == fastest ? "measured fastest" : "tied with the fastest", os.str()};
  }
  static std::string quote(const std::string& s) {
    std::string o = "\"";
    for (char c : s) {
      if (c == '"' || c == '\\') o += '\\';
      if (static_cast<unsigned char>(c) < 0x20) {
        static constexpr char hex[] = "0123456789abcdef";
        o += "\\u00";
        o += hex[(c >> 4) & 0xF];
        o += hex[c & 0xF];
        continue;
      }
      o += c;
    }
    return o + '"';
  }
  template <class Bad>
  static double finite(double v, const std::string& what, const Bad& bad) {
    if (!std::isfinite(v) || v < 0) throw bad(what + " is " + std::to_string(v) + ", not a finite non-negative number");
    return v;
  }
};

/// The table in file `path`, read once per process and kept (a later call with the same path returns
/// the same table). \throws invalid_argument as `tuning_table::load`.
[[nodiscard]] inline std::shared_ptr<const tuning_table> tuning_from_file(const std::string& path) {
  static std::mutex m;
  static std::map<std::string, std::shared_ptr<const tuning_table>> tables;
  std::lock_guard lk(m);
  auto& slot = tables[path];
  if (!slot) {
    try {
      slot = std::make_shared<const tuning_table>(tuning_table::load(path));
    } catch (...) {
      tables.erase(path);
      throw;
    }
  }
  return slot;
}

/// The name that asks for the choice below: `DSSYNC_ALGO=auto`, `communicator::use(allreduce, "auto")`.
inline constexpr std::string_view auto_policy = "auto";

/// The allreduce policy a session or the short form runs when the user names none: DSSYNC_ALGO if set
/// (it may say "auto"), else "auto" when a tuning file is given, else `fallback`.
[[nodiscard]] inline std::string_view default_allreduce_policy(std::string_view fallback,
                                                               const std::string& tuning_file) {
  const auto forced = policy_from_env("");
  if (!forced.empty()) return forced;
  return tuning_file.empty() ? fallback : auto_policy;
}

/// What `auto` runs for an allreduce of `bytes` per rank (elements of `element_size` bytes) on `t`:
/// the pick of `table` (see `tuning_table::pick`) where it has an entry, else the cost model's
/// `fastest_predicted`; the reason says which, and why the table had none.
template <concepts::topology Topo>
[[nodiscard]] tuning_choice choose_allreduce(const Topo& t, std::size_t bytes, std::size_t element_size,
                                             const tuning_table* table) {
  std::string why = "no tuning table";
  if (table != nullptr) {
    const std::string name = t.name();
    if (auto c = table->pick(bytes, t.workers(), name)) return std::move(*c);
    const std::string from = "tuning table " + (table->origin.empty() ? std::string("(in memory)") : table->origin);
    if (table->world_size != t.workers())
      why = from + " is for " + std::to_string(table->world_size) + " ranks, not " + std::to_string(t.workers());
    else if (!table->topology.empty() && table->topology != name)
      why = from + " is for topology " + table->topology + ", not " + name;
    else
      why = from + " has no entry for " + std::to_string(bytes) + " B";
  }
  std::string pick(fastest_predicted(t, static_cast<double>(bytes), element_size));
  return {pick, "cost model on " + t.name() + " (" + why + ")"};
}

}  // namespace dssync::algorithms
