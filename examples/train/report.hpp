#pragma once
// Outputs of the training demo: a table, CSV, JSON (one object with a runs array), an SVG plot of test
// accuracy against simulated time (one panel per scenario, one line per policy) and a Chrome trace.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <iomanip>
#include <map>
#include <optional>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace train {

struct epoch_row {
  int epoch = 0;
  double sim_time = 0;  // simulated seconds at the epoch's end
  double accuracy = 0;  // test accuracy of the consensus model
};

struct trace_event {
  int rank = 0;
  std::size_t iteration = 0;
  std::string name, detail;
  double begin = 0, end = 0;  // simulated seconds
};

struct run_summary {
  std::string policy, scenario;
  std::vector<epoch_row> epochs;
  double sim_time = 0, comm_per_iter = 0, iter_time = 0;
  std::optional<double> time_to_target;
  std::vector<std::string> group_changes;
  std::string codec = "none";
  double compression = 1;  // gradient bytes / payload bytes (1: uncompressed)
};

inline std::string json_string(const std::string& s) {
  std::string o = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    o += c;
  }
  return o + '"';
}

inline std::ofstream open_out(const std::string& path) {
  std::ofstream f(path);
  if (!f) throw std::runtime_error("cannot write " + path);
  return f;
}

class report {
 public:
  /// `clock`: "simulated" (transport::sim, the default) or "wall-clock" (real processes under mpiexec).
  report(std::string model, double target, int epochs, std::string clock = "simulated", int workers = 0)
      : model_(std::move(model)), clock_(std::move(clock)), target_(target), epochs_(epochs), workers_(workers) {}
  void add(run_summary r) { runs_.push_back(std::move(r)); }

  void write_csv(const std::string& path) const {
    auto f = open_out(path);
    f << "model,policy,scenario,epoch,sim_time_s,test_accuracy,comm_time_per_iter_s,clock\n";
    for (const auto& r : runs_)
      for (const auto& e : r.epochs)
        f << model_ << ',' << r.policy << ',' << r.scenario << ',' << e.epoch << ',' << e.sim_time << ',' << e.accuracy
          << ',' << r.comm_per_iter << ',' << clock_ << '\n';
  }

  void write_json(std::ostream& os) const {
    os << "{\"model\": " << json_string(model_) << ", \"clock\": " << json_string(clock_)
       << ", \"target_accuracy\": " << target_ << ", \"runs\": [";
    for (std::size_t i = 0; i < runs_.size(); ++i) {
      const auto& r = runs_[i];
      os << (i ? ",\n  " : "\n  ") << "{\"policy\": " << json_string(r.policy) << ", \"scenario\": " << json_string(r.scenario)
         << ", \"model\": " << json_string(model_) << ", \"epochs\": " << epochs_
         << ", \"final_accuracy\": " << (r.epochs.empty() ? 0.0 : r.epochs.back().accuracy) << ", \"time_to_target_s\": ";
      if (r.time_to_target)
        os << *r.time_to_target;
      else
        os << "null";
      os << ", \"sim_time_s\": " << r.sim_time << ", \"comm_time_per_iter_s\": " << r.comm_per_iter
         << ", \"iter_time_s\": " << r.iter_time << ", \"accuracy_per_epoch\": [";
      for (std::size_t e = 0; e < r.epochs.size(); ++e) os << (e ? ", " : "") << r.epochs[e].accuracy;
      os << "], \"codec\": " << json_string(r.codec) << ", \"compression_ratio\": " << r.compression;
      os << ", \"group_changes\": [";
      for (std::size_t g = 0; g < r.group_changes.size(); ++g) os << (g ? ", " : "") << json_string(r.group_changes[g]);
      os << "]}";
    }
    os << "\n]}\n";
  }

  void write_table(std::ostream& os) const {
    os << "model " << model_ << ", " << epochs_ << " epochs, target accuracy " << std::fixed << std::setprecision(2)
       << 100 * target_ << " %, " << clock_ << " times\n";
    os << std::left << std::setw(20) << "policy" << std::setw(10) << "scenario" << std::right << std::setw(10) << "accuracy"
       << std::setw(12) << (clock_ == "simulated" ? "sim time" : "time") << std::setw(14) << "to target" << std::setw(12) << "iter (ms)" << std::setw(12)
       << "comm (ms)" << std::setw(8) << "comm%" << '\n';
    for (const auto& r : runs_) {
      os << std::left << std::setw(20) << r.policy << std::setw(10) << r.scenario << std::right << std::setw(9)
         << std::setprecision(2) << 100 * (r.epochs.empty() ? 0.0 : r.epochs.back().accuracy) << '%' << std::setw(11)
         << std::setprecision(3) << r.sim_time << 's';
      if (r.time_to_target)
        os << std::setw(13) << *r.time_to_target << 's';
      else
        os << std::setw(14) << "never";
      os << std::setw(12) << 1e3 * r.iter_time << std::setw(12) << 1e3 * r.comm_per_iter << std::setw(7)
         << std::setprecision(1) << (r.iter_time > 0 ? 100 * r.comm_per_iter / r.iter_time : 0.0) << "%\n";
    }
    // Codecs against the uncompressed ring, per scenario: compression and accuracy.
    for (const auto& r : runs_) {
      if (r.codec == "none") continue;
      // The ring moves 2(n-1)/n of the gradient per rank; the allgather of payloads n-1 payloads.
      const double vs_ring = workers_ > 0 ? 2.0 * r.compression / workers_ : 0.0;
      os << "  " << r.scenario << ": " << r.policy << ": payloads " << std::setprecision(1) << r.compression
         << "x smaller than the gradient, " << vs_ring << "x less traffic per worker than ring";
      for (const auto& b : runs_)
        if (b.policy == "ring" && b.codec == "none" && b.scenario == r.scenario && !b.epochs.empty() && !r.epochs.empty())
          os << ", accuracy " << std::showpos << std::setprecision(2)
             << 100 * (r.epochs.back().accuracy - b.epochs.back().accuracy) << std::noshowpos << " points";
      os << '\n';
    }
    // Speed-ups against BSP ring, per scenario.
    for (const auto& r : runs_) {
      if (r.policy == "ring" || !r.time_to_target) continue;
      for (const auto& b : runs_)
        if (b.policy == "ring" && b.scenario == r.scenario && b.time_to_target)
          os << "  " << r.scenario << ": " << r.policy << " reaches the target " << std::setprecision(2)
             << *b.time_to_target / *r.time_to_target << "x as fast as BSP ring\n";
    }
    for (const auto& r : runs_) {  // the first few group changes of each run (all of them in --json)
      const std::size_t show = std::min<std::size_t>(r.group_changes.size(), 4);
      for (std::size_t i = 0; i < show; ++i) os << "  " << r.policy << " / " << r.scenario << ", " << r.group_changes[i] << '\n';
      if (r.group_changes.size() > show)
        os << "  " << r.policy << " / " << r.scenario << ", ... " << r.group_changes.size() - show
           << " more changes (--json lists them)\n";
    }
  }

  /// Accuracy against simulated time, one panel per scenario, one line per policy.
  void write_svg(const std::string& path) const {
    std::vector<std::string> scenarios;
    for (const auto& r : runs_)
      if (std::find(scenarios.begin(), scenarios.end(), r.scenario) == scenarios.end()) scenarios.push_back(r.scenario);
    const double pw = 360, ph = 260, ml = 55, mt = 40, gap = 30;
    const double W = ml + static_cast<double>(scenarios.size()) * (pw + gap), H = mt + ph + 70;
    const std::map<std::string, std::string> colors{
        {"ring", "#d62728"}, {"hierarchical", "#ff7f0e"}, {"gossip", "#2ca02c"}, {"ds_sync", "#1f77b4"}};
    double lo = 1, hi = 0;
    for (const auto& r : runs_)
      for (const auto& e : r.epochs) lo = std::min(lo, e.accuracy), hi = std::max(hi, e.accuracy);
    lo = std::floor(lo * 20) / 20;
    hi = std::min(1.0, std::ceil(hi * 20) / 20 + 0.01);
    if (hi <= lo) hi = lo + 0.05;
    auto f = open_out(path);
    f << std::fixed << std::setprecision(1);  // coordinates and labels with one decimal
    f << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H
      << "\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      << "<text x=\"" << ml << "\" y=\"18\" font-size=\"14\">Fashion-MNIST " << model_
      << ": test accuracy of the consensus model against " << clock_ << " time</text>\n";
    for (std::size_t s = 0; s < scenarios.size(); ++s) {
      const double x0 = ml + static_cast<double>(s) * (pw + gap), y0 = mt;
      double tmax = 0;
      for (const auto& r : runs_)
        if (r.scenario == scenarios[s]) tmax = std::max(tmax, r.sim_time);
      if (tmax <= 0) tmax = 1;
      auto X = [&](double t) { return x0 + t / tmax * pw; };
      auto Y = [&](double a) { return y0 + ph - (a - lo) / (hi - lo) * ph; };
      f << "<rect x=\"" << x0 << "\" y=\"" << y0 << "\" width=\"" << pw << "\" height=\"" << ph
        << "\" fill=\"none\" stroke=\"#444\"/>\n";
      f << "<text x=\"" << x0 + pw / 2 << "\" y=\"" << y0 - 6 << "\" text-anchor=\"middle\">scenario: " << scenarios[s]
        << "</text>\n";
      for (int k = 0; k <= 4; ++k) {
        const double t = tmax * k / 4, a = lo + (hi - lo) * k / 4;
        f << "<text x=\"" << X(t) << "\" y=\"" << y0 + ph + 14 << "\" text-anchor=\"middle\">" << std::setprecision(2) << t
          << std::setprecision(1) << "</text>\n";
        f << "<text x=\"" << x0 - 4 << "\" y=\"" << Y(a) + 4 << "\" text-anchor=\"end\">" << 100 * a << "</text>\n";
        f << "<line x1=\"" << x0 << "\" x2=\"" << x0 + pw << "\" y1=\"" << Y(a) << "\" y2=\"" << Y(a)
          << "\" stroke=\"#eee\"/>\n";
      }
      f << "<text x=\"" << x0 + pw / 2 << "\" y=\"" << y0 + ph + 30 << "\" text-anchor=\"middle\">" << clock_ << " time (s)</text>\n";
      if (target_ > lo && target_ < hi)
        f << "<line x1=\"" << x0 << "\" x2=\"" << x0 + pw << "\" y1=\"" << Y(target_) << "\" y2=\"" << Y(target_)
          << "\" stroke=\"#999\" stroke-dasharray=\"4 3\"/>\n";
      for (const auto& r : runs_) {
        if (r.scenario != scenarios[s]) continue;
        const auto c = colors.count(r.policy) ? colors.at(r.policy) : std::string("#000");
        f << "<polyline fill=\"none\" stroke-width=\"2\" stroke=\"" << c << "\" points=\"";
        for (const auto& e : r.epochs) f << X(e.sim_time) << ',' << Y(e.accuracy) << ' ';
        f << "\"/>\n";
        for (const auto& e : r.epochs)
          f << "<circle r=\"2.5\" fill=\"" << c << "\" cx=\"" << X(e.sim_time) << "\" cy=\"" << Y(e.accuracy) << "\"/>\n";
      }
    }
    double lx = ml;
    for (const auto& [name, c] : colors) {
      bool used = false;
      for (const auto& r : runs_) used = used || r.policy == name;
      if (!used) continue;
      f << "<line x1=\"" << lx << "\" x2=\"" << lx + 20 << "\" y1=\"" << H - 14 << "\" y2=\"" << H - 14 << "\" stroke=\"" << c
        << "\" stroke-width=\"2\"/><text x=\"" << lx + 24 << "\" y=\"" << H - 10 << "\">" << name << "</text>\n";
      lx += 110;
    }
    f << "<text x=\"" << W - 10 << "\" y=\"" << H - 10 << "\" text-anchor=\"end\" fill=\"#666\">y: test accuracy (%), dashed: target</text>\n";
    f << "</svg>\n";
  }

 private:
  std::string model_, clock_;
  double target_;
  int epochs_;
  int workers_ = 0;
  std::vector<run_summary> runs_;
};

/// A Chrome trace (chrome://tracing, Perfetto) of iterations `before` and `after`: one process each, one
/// thread per rank, compute and synchronize spans (with the rank's group), times from the iteration's
/// first event.
inline void write_adjustment_trace(const std::string& path, const std::vector<trace_event>& events, std::size_t before,
                                   std::size_t after) {
  auto f = open_out(path);
  f << "{\"traceEvents\": [\n";
  bool first = true;
  auto emit = [&](const std::string& s) {
    f << (first ? "  " : ",\n  ") << s;
    first = false;
  };
  for (int pid : {1, 2}) {
    const std::size_t it = pid == 1 ? before : after;
    emit("{\"name\": \"process_name\", \"ph\": \"M\", \"pid\": " + std::to_string(pid) +
         ", \"args\": {\"name\": \"iteration " + std::to_string(it) + (pid == 1 ? " (before the group adjustment)" : " (after)") +
         "\"}}");
    double t0 = 1e300;
    for (const auto& e : events)
      if (e.iteration == it) t0 = std::min(t0, e.begin);
    for (const auto& e : events) {
      if (e.iteration != it) continue;
      std::ostringstream os;
      os << std::setprecision(12) << "{\"name\": " << json_string(e.name) << ", \"ph\": \"X\", \"pid\": " << pid
         << ", \"tid\": " << e.rank << ", \"ts\": " << (e.begin - t0) * 1e6 << ", \"dur\": " << (e.end - e.begin) * 1e6
         << ", \"args\": {\"group\": " << json_string(e.detail) << "}}";
      emit(os.str());
    }
  }
  f << "\n]}\n";
}

}  // namespace train
