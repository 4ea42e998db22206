#pragma once
/// \file
/// The tuner: measures, on the user's own transport, the probe's α and β per link class and the time of
/// every eligible allreduce policy at a ladder of sizes, and returns the table that `auto` picks from
/// (algorithms/tuning.hpp). `dssync-tune` (tools/) is its command line; a program can call `tune` on
/// any transport, in-process ranks included.
///
/// How it measures, so that one run compares the policies side by side:
///  - every policy runs twice to warm up (plans built, buffers allocated), then once more timed; the
///    slowest rank's time sets how many calls a sample takes (`target_sample_seconds`, at least one);
///  - then `rounds` rounds, each timing every policy in turn: a barrier, then that many calls, so the
///    policies share the machine's drift alike;
///  - a policy's time is the median over rounds of the slowest rank's mean per call (every rank gets
///    the same figures, exchanged with an allreduce(max) through dssync itself).
/// Times are the steady clock's, or the transport's virtual clock where it has one (`transport::sim`:
/// the simulated network, as the probe measures it). Collective: every rank calls `tune` with the same
/// options.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "dssync/algorithms/registry.hpp"
#include "dssync/algorithms/tuning.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/options.hpp"
#include "dssync/core/transport.hpp"
#include "dssync/ops/max.hpp"
#include "dssync/ops/sum.hpp"
#include "dssync/synchronize.hpp"
#include "dssync/topology/full_mesh.hpp"
#include "dssync/topology/probe.hpp"

namespace dssync {

/// How `tune` measures.
struct tune_options {
  /// Bytes per rank to measure (float32 elements; a size that is not a multiple of 4 is rounded down).
  std::vector<std::size_t> sizes{4096, 16384, 65536, 262144, 1 << 20, 4 << 20, 16 << 20};
  /// Policies to measure; empty: every registered policy that plans and promises an allreduce and
  /// plans for this world (those that cannot, BCube on a full mesh, are listed in `skipped`). The name
  /// "auto" measures what `auto` runs with `auto_table` (to check a table against the policies).
  std::vector<std::string> policies;
  /// Rounds per size; the median counts.
  int rounds = 5;
  /// Seconds one sample (one policy in one round) should last; it takes at least one call.
  double target_sample_seconds = 0.005;
  /// Most calls per sample.
  int max_calls = 1000;
  /// Probe α and β per link class first (`topology::measure`).
  bool probe = true;
  /// The table "auto" picks from, when it is measured.
  std::shared_ptr<const algorithms::tuning_table> auto_table;
  /// Name of the transport, saved in the table ("mpi", "inproc").
  std::string transport;
  /// Called on every rank after each size with (index, count, that size's point), for a progress line.
  std::function<void(std::size_t, std::size_t, const algorithms::tuning_point&)> progress;
};

/// What `tune` measured: the table, and the policies it left out with the reason.
struct tune_result {
  algorithms::tuning_table table;
  std::vector<std::pair<std::string, std::string>> skipped;
};

namespace detail {

/// The probe's α and β per link class: pairs in one rack of `cluster_racks` are "intra", others "inter".
template <concepts::transport T>
std::vector<algorithms::tuning_link> probe_links(T& comm) {
  std::vector<algorithms::tuning_link> out;
  if (comm.size() < 2) return out;
  const auto m = topology::measure(comm);
  const auto racks = topology::cluster_racks(m);
  std::vector<double> a[2], b[2];
  for (int i = 0; i < m.size; ++i)
    for (int j = i + 1; j < m.size; ++j) {
      const int c = racks.rack_of[static_cast<std::size_t>(i)] == racks.rack_of[static_cast<std::size_t>(j)] ? 0 : 1;
      a[c].push_back(m.pair_latency(i, j));
      const double bw = m.pair_bandwidth(i, j);
      b[c].push_back(std::isfinite(bw) && bw > 0 ? 1.0 / bw : 0.0);
    }
  static constexpr const char* names[] = {"intra", "inter"};
  for (int c = 0; c < 2; ++c)
    if (!a[c].empty())
      out.push_back({names[c], static_cast<int>(a[c].size()), probe_median(a[c]), probe_median(b[c])});
  return out;
}

}  // namespace detail

/// Measures the allreduce policies of `comm` (see the file comment) and returns the tuning table for
/// a full mesh of its ranks. \throws invalid_argument (bad options, an unknown policy), and what the
/// collectives throw (timeout_error, peer_failure, mismatch_error when ranks disagree on the options).
template <concepts::transport T>
[[nodiscard]] tune_result tune(T& comm, const tune_options& o, const options& opt = {}) {
  const int me = comm.rank(), n = comm.size();
  const auto fail = [&](const std::string& what) {
    return invalid_argument("dssync::tune: rank " + std::to_string(me) + ": " + what, me);
  };
  if (o.rounds < 1) throw fail("rounds " + std::to_string(o.rounds) + " must be at least 1");
  if (o.max_calls < 1) throw fail("max_calls " + std::to_string(o.max_calls) + " must be at least 1");
  if (!(o.target_sample_seconds >= 0)) throw fail("target_sample_seconds must be non-negative");
  if (o.sizes.empty()) throw fail("no sizes to measure");
  std::vector<std::size_t> sizes;
  for (auto s : o.sizes) sizes.push_back(s / sizeof(float) * sizeof(float));
  std::sort(sizes.begin(), sizes.end());
  sizes.erase(std::unique(sizes.begin(), sizes.end()), sizes.end());

  const topology::full_mesh topo(n);
  tune_result res;
  auto& table = res.table;
  table.transport = o.transport;
  table.topology = topo.name();
  table.world_size = n;

  // The candidates: named, or every allreduce policy that plans for this world.
  struct candidate {
    std::string name;
    const algorithms::policy_entry* entry;  // null: "auto"
  };
  std::vector<candidate> cands;
  std::vector<std::string> names = o.policies;
  const bool all = names.empty();
  if (all)
    for (auto x : algorithms::policy_names()) names.emplace_back(x);
  for (const auto& name : names) {
    if (name == algorithms::auto_policy) {
      cands.push_back({name, nullptr});
      continue;
    }
    const auto* e = algorithms::registry().find(name);
    if (e == nullptr) throw fail("policy \"" + name + "\" is not registered (known: " + algorithms::registry().known() + ")");
    if (!e->plans(semantics::allreduce) || e->promises != semantics::allreduce) {
      if (!all) throw fail("policy \"" + name + "\" does not plan allreduces");
      continue;
    }
    try {
      (void)e->plan(algorithms::topology_ref(topo), plan_request{sizes.front() / sizeof(float)});
    } catch (const invalid_argument& x) {
      if (!all) throw fail("policy \"" + name + "\" cannot plan here: " + x.what());
      res.skipped.emplace_back(name, x.what());
      continue;
    }
    cands.push_back({name, e});
  }
  if (cands.empty()) throw fail("no policy to measure");

  if (o.probe) table.links = detail::probe_links(comm);

  const auto& ring = algorithms::registry().at(algorithms::ring::name);
  std::vector<float> token(1), buf(sizes.back() / sizeof(float));
  const auto barrier = [&] { synchronize(comm, topo, ring, token, ops::sum{}, opt); };
  const auto slowest = [&](std::vector<double>& v) { synchronize(comm, topo, ring, v, ops::max{}, opt); };
  const auto now = [&] { return detail::probe_clock(comm); };  // virtual seconds on transport::sim
  const auto secs = [](double d) { return d; };

  for (std::size_t si = 0; si < sizes.size(); ++si) {
    const std::size_t bytes = sizes[si];
    std::span<float> data(buf.data(), bytes / sizeof(float));
    std::vector<const algorithms::policy_entry*> run(cands.size());
    for (std::size_t c = 0; c < cands.size(); ++c)
      run[c] = cands[c].entry != nullptr
                   ? cands[c].entry
                   : &algorithms::registry().at(
                         algorithms::choose_allreduce(topo, bytes, sizeof(float), o.auto_table.get()).policy);
    const auto call = [&](std::size_t c) { synchronize(comm, topo, *run[c], data, ops::sum{}, opt); };
    // Warm-up, then one timed call each: how many calls a sample takes.
    std::vector<double> once(cands.size());
    for (std::size_t c = 0; c < cands.size(); ++c) {
      call(c);
      call(c);
      barrier();
      const auto t0 = now();
      call(c);
      once[c] = secs(now() - t0);
    }
    slowest(once);
    std::vector<int> calls(cands.size());
    for (std::size_t c = 0; c < cands.size(); ++c) {
      const double k = once[c] > 0 ? std::ceil(o.target_sample_seconds / once[c]) : o.max_calls;
      calls[c] = static_cast<int>(std::clamp(k, 1.0, static_cast<double>(o.max_calls)));
    }
    std::vector<double> samples(cands.size() * static_cast<std::size_t>(o.rounds));
    for (int r = 0; r < o.rounds; ++r)
      for (std::size_t c = 0; c < cands.size(); ++c) {
        barrier();
        const auto t0 = now();
        for (int k = 0; k < calls[c]; ++k) call(c);
        samples[static_cast<std::size_t>(r) * cands.size() + c] = secs(now() - t0) / calls[c];
      }
    slowest(samples);
    algorithms::tuning_point p;
    p.bytes = bytes;
    for (std::size_t c = 0; c < cands.size(); ++c) {
      std::vector<double> v;
      for (int r = 0; r < o.rounds; ++r) v.push_back(samples[static_cast<std::size_t>(r) * cands.size() + c]);
      p.times.emplace_back(cands[c].name, detail::probe_median(std::move(v)));
    }
    table.points.push_back(std::move(p));
    if (o.progress) o.progress(si, sizes.size(), table.points.back());
  }
  return res;
}

}  // namespace dssync
