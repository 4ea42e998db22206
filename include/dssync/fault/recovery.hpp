#pragma once
/// \file
/// Server-failure tolerance for BML on BCube (seed 003: "A Scalable, High-Performance, and Fault-Tolerant
/// Network Architecture for Distributed Machine Learning", section "Fault Tolerance").
///
/// BML keeps training when servers fail: the N−x survivors re-plan the gradient synchronization around
/// the x failed servers (`algorithms::bcube::plan_without`) and each takes a larger mini-batch,
/// u + u·x/(N−x), so the global batch stays N·u (`rescaled_batch`). A failed link is handled as the
/// failure of the server on it (the seed: "链路失效时，建议直接将链路上的服务器屏蔽，转变为Server
/// Failure", i.e. when a link fails, shut the server on it off and treat it as a server failure;
/// `server_of_link`).
///
/// `synchronize_resilient` runs one allreduce that survives server failures on a transport with
/// ULFM-style primitives, for any policy that can re-plan around failed ranks (`plan_without`: BML, ring,
/// direct, or a user's policy; `dssync::concepts::replanning_policy`), (`revoke`, `agree`, `shrink`; the in-process transport has them): on a failure
/// the survivors revoke the communicator, agree that the call failed, restore their input, shrink to the
/// survivors, re-plan and run again.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <exception>
#include <functional>
#include <iterator>
#include <list>
#include <memory>
#include <ranges>
#include <span>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "dssync/algorithms/bcube.hpp"
#include "dssync/algorithms/replan.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/log.hpp"
#include "dssync/core/options.hpp"
#include "dssync/core/schedule.hpp"
#include "dssync/core/transport.hpp"
#include "dssync/ops/sum.hpp"
#include "dssync/synchronize.hpp"
#include "dssync/topology/bcube.hpp"
#include "dssync/topology/network.hpp"

namespace dssync::fault {

// ---------------------------------------------------------------------------------------------------
// Mini-batch rescaling
// ---------------------------------------------------------------------------------------------------

/// The per-worker mini-batch after `x` of `N` workers failed, seed 003's u + u·x/(N−x) (= u·N/(N−x)):
/// the survivors share the global batch N·u, so training keeps its batch size and learning rate.
/// \throws invalid_argument naming the values if N < 1, x < 0, x >= N (nobody left) or u is negative or
///   not finite.
[[nodiscard]] inline double rescaled_batch(double u, int N, int x) {
  const std::string args = "(u = " + std::to_string(u) + ", N = " + std::to_string(N) + ", x = " + std::to_string(x) + ")";
  if (N < 1) throw invalid_argument("fault::rescaled_batch: N = " + std::to_string(N) + " must be at least 1 " + args);
  if (x < 0) throw invalid_argument("fault::rescaled_batch: x = " + std::to_string(x) + " failed workers is negative " + args);
  if (x >= N)
    throw invalid_argument("fault::rescaled_batch: x = " + std::to_string(x) + " failed workers leaves none of N = " +
                           std::to_string(N) + " " + args);
  if (!std::isfinite(u) || u < 0)
    throw invalid_argument("fault::rescaled_batch: per-worker batch u = " + std::to_string(u) +
                           " must be finite and not negative " + args);
  return u + u * static_cast<double>(x) / static_cast<double>(N - x);
}

/// Integer per-worker batches for `survivors` workers that sum to exactly `global_batch`, differing by at
/// most one (the first `global_batch % survivors` workers take one more): the integer form of
/// `rescaled_batch` with global_batch = N·u.
/// \throws invalid_argument naming the value if `survivors < 1`.
[[nodiscard]] inline std::vector<std::size_t> distribute_batch(std::size_t global_batch, int survivors) {
  if (survivors < 1)
    throw invalid_argument("fault::distribute_batch: " + std::to_string(survivors) +
                           " survivors cannot share a batch of " + std::to_string(global_batch) + " (need at least 1)");
  const auto s = static_cast<std::size_t>(survivors);
  std::vector<std::size_t> out(s, global_batch / s);
  for (std::size_t i = 0; i < global_batch % s; ++i) ++out[i];
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Failed servers and links
// ---------------------------------------------------------------------------------------------------

/// A BCube cable: the one joining `server` to its level-`level` switch. Every BCube cable joins one server
/// to one switch, so a cable names its server uniquely.
struct cable {
  int server = -1;
  int level = -1;
  friend bool operator==(const cable&, const cable&) = default;
};

/// The server BML shuts off when cable `c` fails (seed 003: a link failure becomes a server failure):
/// `c.server`.
/// \throws invalid_argument naming the value if the server or the level is not in `t`.
[[nodiscard]] inline int server_of_link(const topology::bcube& t, cable c) {
  if (c.server < 0 || c.server >= t.workers())
    throw invalid_argument("fault::server_of_link: cable (server " + std::to_string(c.server) + ", level " +
                           std::to_string(c.level) + "): server " + std::to_string(c.server) + " is not in 0.." +
                           std::to_string(t.workers() - 1) + " of " + t.name());
  if (c.level < 0 || c.level >= t.k())
    throw invalid_argument("fault::server_of_link: cable (server " + std::to_string(c.server) + ", level " +
                           std::to_string(c.level) + "): level " + std::to_string(c.level) + " is not in 0.." +
                           std::to_string(t.k() - 1) + " of " + t.name());
  return c.server;
}

/// The server on the link between vertices `a` and `b` of `t.graph()` (either direction: servers are
/// vertices 0..N-1, switches follow), the server BML shuts off when that link fails.
/// \throws invalid_argument naming the vertices unless one is a server and the other its switch.
[[nodiscard]] inline int server_of_link(const topology::bcube& t, std::size_t a, std::size_t b) {
  const auto N = static_cast<std::size_t>(t.workers());
  const std::size_t vertices = N + static_cast<std::size_t>(t.k()) * static_cast<std::size_t>(t.switches_per_level());
  auto bad = [&](const std::string& why) {
    return invalid_argument("fault::server_of_link: link " + std::to_string(a) + " <-> " + std::to_string(b) + " of " +
                            t.name() + ": " + why);
  };
  if (a >= vertices || b >= vertices)
    throw bad("vertex " + std::to_string(a >= vertices ? a : b) + " is not in 0.." + std::to_string(vertices - 1));
  if ((a < N) == (b < N))
    throw bad(a < N ? "both ends are servers (BCube cables join a server to a switch)"
                    : "both ends are switches (BCube cables join a server to a switch)");
  const std::size_t server = a < N ? a : b, sw = a < N ? b : a;
  for (int level = 0; level < t.k(); ++level)
    if (t.switch_vertex(level, static_cast<int>(server)) == sw) return static_cast<int>(server);
  throw bad("switch vertex " + std::to_string(sw) + " is not one of server " + std::to_string(server) + "'s switches");
}

/// The server on edge `e` of `g` (which must be `t.graph()`, or a copy of it).
/// \throws invalid_argument as above.
[[nodiscard]] inline int server_of_link(const topology::bcube& t, const topology::network& g,
                                        topology::network::edge_descriptor e) {
  return server_of_link(t, static_cast<std::size_t>(boost::source(e, g)), static_cast<std::size_t>(boost::target(e, g)));
}

/// The servers to plan without: the failed `servers` and the servers of the failed `links`, sorted, each
/// once (a server may fail together with its cable).
/// \throws invalid_argument naming the value if a server or cable is not in `t`.
[[nodiscard]] inline std::vector<int> failed_servers(const topology::bcube& t, std::span<const int> servers,
                                                     std::span<const cable> links = {}) {
  std::vector<int> out;
  for (const int s : servers) {
    if (s < 0 || s >= t.workers())
      throw invalid_argument("fault::failed_servers: server " + std::to_string(s) + " is not in 0.." +
                             std::to_string(t.workers() - 1) + " of " + t.name());
    out.push_back(s);
  }
  for (const cable& c : links) out.push_back(server_of_link(t, c));
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

/// The ranks 0..N-1 not in `failed`, increasing: the survivors as a shrunk communicator numbers them
/// (survivor i is original rank `survivors(N, failed)[i]`).
/// \throws invalid_argument naming the value if N < 1, a failed rank is out of range or listed twice, or
///   every rank failed.
[[nodiscard]] inline std::vector<int> survivors(int N, std::span<const int> failed) {
  return algorithms::surviving_ranks(N, failed, "fault::survivors");
}

// ---------------------------------------------------------------------------------------------------
// Resilient synchronization
// ---------------------------------------------------------------------------------------------------

namespace concepts {

/// `dssync::fault::concepts::recoverable_transport`: a transport with ULFM-style recovery (see
/// transport/inproc.hpp), for `C& c`, `int r`, `bool f`, `std::chrono::milliseconds t`:
///  1. `c.revoke(r)`: every pending and future wait on `c`'s communicator fails fast, blaming rank `r`;
///  2. `c.agree(f, t)`: the AND of `f` over the ranks not failed, the same on all, working when revoked;
///  3. `c.shrink(t)` returns `C&`: this rank's handle on a new communicator of the survivors, in
///     increasing rank order;
///  4. `c.origin(r)` is the rank, in the outermost communicator (the one shrinks started from), of rank
///     `r`; `c.origin_size()` is that communicator's size.
template <class C>
concept recoverable_transport =
    dssync::concepts::transport<C> && requires(C& c, const C& cc, int r, bool f, std::chrono::milliseconds t) {
      c.revoke(r);
      { c.agree(f, t) } -> std::convertible_to<bool>;
      { c.shrink(t) } -> std::same_as<C&>;
      { cc.origin(r) } -> std::convertible_to<int>;
      { cc.origin_size() } -> std::convertible_to<int>;
    };

}  // namespace concepts

/// What one failed attempt looked like from this rank.
struct attempt_error {
  int attempt = 0;               ///< 1 for the first run
  std::exception_ptr error;      ///< the `peer_failure` or `timeout_error` this rank caught
  std::string what;              ///< its what()
  int failed_rank = -1;          ///< the rank it blames (its `peer()`), as an original topology rank; -1 if none
};

/// The outcome of `synchronize_resilient` on one rank.
template <class Comm>
struct recovery_result {
  Comm& comm;                        ///< the communicator to use from now on (the input one if nothing failed)
  std::vector<int> failed;           ///< original topology ranks not in `comm`, increasing (all failures so far)
  std::vector<int> lost;             ///< those of `failed` lost during this call
  std::vector<int> members;          ///< the original topology rank of each rank of `comm`
  int attempts = 1;                  ///< runs of the collective, the successful one included
  std::vector<attempt_error> errors; ///< the errors this rank caught, one per failed attempt it saw fail
  /// Whether this call had to recover.
  [[nodiscard]] bool recovered() const noexcept { return attempts > 1; }
};

/// Knobs of `synchronize_resilient`.
template <class Comm>
struct recovery_options {
  /// Attempts before giving up; 0: one more than the topology's servers (each failed attempt that is not a
  /// timeout loses at least one server).
  int max_attempts = 0;
  /// Deadline of each `agree` and `shrink`; 0: the collective's `options::timeout`.
  std::chrono::milliseconds timeout{0};
  /// Called before every attempt with the communicator it runs on and the attempt number (1, 2, ...):
  /// for logging, or for tests that inject a fault into a recovery attempt.
  std::function<void(Comm&, int)> before_attempt;
};

namespace detail {

/// `policy.plan_without(topo, failed, {count})`, from a small per-thread cache (training calls it every
/// step), keyed by the policy's type and `cache_key`, the topology, the count and the failed ranks.
template <class Policy, class Topology>
std::shared_ptr<const schedule> survivor_plan(const Policy& policy, const Topology& topo,
                                              const std::vector<int>& failed, std::size_t count, const options& opt,
                                              int rank) {
  const plan_request q{count, opt.iteration};
  std::string key = std::string(Policy::name) + '#' + typeid(Policy).name() + '|' + policy_cache_key(policy, topo, q);
  for (const int f : failed) key += ',' + std::to_string(f);
  return dssync::detail::cached_plan(dssync::detail::plan_key(key, "without", topo, q, opt), [&] {
    return dssync::detail::build_plan([&] { return policy.plan_without(topo, failed, q); }, opt, rank);
  });
}

inline std::string rank_list(const std::vector<int>& v) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

template <class Comm>
std::vector<int> origins(const Comm& c) {
  std::vector<int> m(static_cast<std::size_t>(c.size()));
  for (int r = 0; r < c.size(); ++r) m[static_cast<std::size_t>(r)] = c.origin(r);
  return m;
}

inline std::vector<int> complement(int N, const std::vector<int>& members) {
  std::vector<char> alive(static_cast<std::size_t>(N), 0);
  for (const int m : members) alive[static_cast<std::size_t>(m)] = 1;
  std::vector<int> out;
  for (int r = 0; r < N; ++r)
    if (!alive[static_cast<std::size_t>(r)]) out.push_back(r);
  return out;
}

}  // namespace detail

/// One allreduce of `data` with `policy` over the servers of `topo` that survives server failures.
///
/// `comm` is a communicator over `topo`'s servers (its outermost communicator has `topo.workers()` ranks
/// in topology order), or one `synchronize_resilient` returned earlier (a shrunk one: its ranks are
/// mapped back to topology ranks through `comm.origin`). Each attempt runs `policy` on the current
/// communicator (its `plan`, or its `plan_without` the failed servers), then all ranks `agree` on
/// whether every rank succeeded. A rank that caught `peer_failure` or `timeout_error` first revokes the
/// communicator, so ranks blocked on live peers fail fast too (naming the dead rank). If the agreement
/// is false, every survivor restores its input, `shrink`s to the survivors, re-plans without all the
/// failed servers and tries again; a server that fails during the recovery is handled the same way.
///
/// Memory: one backup of the input, an extra buffer of `data`'s size in bytes. The result is the
/// reduction of exactly the final survivors' inputs (no contribution lost or counted twice), bitwise
/// identical on all of them; with `ops::average` it is divided by the number of survivors.
///
/// Recovery is logged at info level (DSSYNC_DEBUG=INFO or `opt.debug`).
///
/// \returns the communicator to use from now on, the failed original ranks and the attempts.
/// \throws whatever the collective throws other than `peer_failure` and `timeout_error` (e.g. the
///   failing rank's own `injected_fault`, `mismatch_error`); `timeout_error` from `agree` or `shrink`;
///   `invalid_argument` if the outermost communicator does not have `topo.workers()` ranks or the
///   survivors cannot be planned; the last attempt's error (or `peer_failure`) after
///   `ro.max_attempts` failed attempts.
template <concepts::recoverable_transport Comm, dssync::concepts::topology Topology, class Policy,
          std::ranges::contiguous_range R, class Op = ops::sum>
  requires dssync::concepts::policy<Policy, Topology> && dssync::concepts::replanning_policy<Policy, Topology> &&
           std::ranges::sized_range<R>
recovery_result<Comm> synchronize_resilient(Comm& comm, const Topology& topo, Policy& policy, R&& data,
                                            const Op& op = {}, const options& opt = {},
                                            const recovery_options<Comm>& ro = {}) {
  using E = dssync::detail::element_of<R>;
  static_assert(dssync::detail::mutable_range<R>, "fault::synchronize_resilient: the buffer must be mutable (not const)");
  dssync::detail::check_op<Op, E>();
  const int N = topo.workers();
  if (comm.origin_size() != N)
    throw invalid_argument("fault::synchronize_resilient: rank " + std::to_string(comm.rank()) + ": topology " +
                               topo.name() + " has " + std::to_string(N) + " servers but the outermost communicator has " +
                               std::to_string(comm.origin_size()) + " ranks",
                           comm.rank());
  std::span<E> view(std::ranges::data(data), std::ranges::size(data));
  const std::vector<E> backup(view.begin(), view.end());  // one extra buffer of S bytes
  const auto agree_timeout = ro.timeout.count() > 0 ? ro.timeout : opt.timeout;
  const int max_attempts = ro.max_attempts > 0 ? ro.max_attempts : N + 1;

  Comm* cur = &comm;
  std::vector<int> members = detail::origins(*cur);
  const std::vector<int> failed_before = detail::complement(N, members);
  std::vector<int> failed = failed_before;
  const int me = members[static_cast<std::size_t>(cur->rank())];  // original rank, for logs
  std::vector<attempt_error> errors;

  for (int attempt = 1;; ++attempt) {
    if (ro.before_attempt) ro.before_attempt(*cur, attempt);
    bool ok = true;
    auto record = [&](const auto& e) {
      ok = false;
      const int p = e.peer();
      const int blamed = p >= 0 && p < cur->size() ? members[static_cast<std::size_t>(p)] : -1;
      errors.push_back({attempt, std::current_exception(), e.what(), blamed});
      dssync::detail::log(opt, log_level::info, me, "synchronize_resilient: attempt ", attempt, " on ", cur->size(),
                          " servers failed here, blaming server ", blamed, ": ", e.what());
      cur->revoke(p);
    };
    try {
      if (failed.empty()) {
        synchronize(*cur, topo, policy, view, op, opt);
      } else {
        const auto plan = detail::survivor_plan(policy, topo, failed, view.size(), opt, cur->rank());
        if (!plan->hosts.empty() && plan->hosts != members)
          throw invalid_argument("fault::synchronize_resilient: rank " + std::to_string(cur->rank()) + ": the plan runs on " +
                                     detail::rank_list(plan->hosts) + " but the communicator's ranks are servers " +
                                     detail::rank_list(members),
                                 cur->rank());
        synchronize(*cur, *plan, view, op, opt);
      }
    } catch (const peer_failure& e) {
      record(e);
    } catch (const timeout_error& e) {
      record(e);
    }
    if (cur->agree(ok, agree_timeout)) {
      std::vector<int> lost;
      std::set_difference(failed.begin(), failed.end(), failed_before.begin(), failed_before.end(),
                          std::back_inserter(lost));
      if (attempt > 1)
        dssync::detail::log(opt, log_level::info, me, "synchronize_resilient: recovered after ", attempt,
                            " attempts; ", cur->size(), " of ", N, " servers remain, failed servers ",
                            detail::rank_list(failed));
      return recovery_result<Comm>{*cur, std::move(failed), std::move(lost), std::move(members), attempt,
                                   std::move(errors)};
    }
    // Someone failed: start over from the input on the survivors.
    std::copy(backup.begin(), backup.end(), view.begin());
    if (attempt >= max_attempts) {
      if (!errors.empty() && errors.back().attempt == attempt) std::rethrow_exception(errors.back().error);
      throw peer_failure("fault::synchronize_resilient: server " + std::to_string(me) + " gives up after " +
                             std::to_string(attempt) + " failed attempts (failed servers so far " +
                             detail::rank_list(failed) + ")",
                         cur->rank(), -1);
    }
    Comm& next = cur->shrink(agree_timeout);
    members = detail::origins(next);
    failed = detail::complement(N, members);
    const int x = static_cast<int>(failed.size());
    dssync::detail::log(opt, log_level::info, me, "synchronize_resilient: attempt ", attempt,
                        " failed; shrunk to ", next.size(), " of ", N, " servers (failed servers ",
                        detail::rank_list(failed), "), re-planning ", Policy::name, " without them; per-worker batch scale N/(N-x) = ",
                        static_cast<double>(N) / static_cast<double>(N - x));
    cur = &next;
  }
}

/// BML (seed 003): `synchronize_resilient` with `algorithms::bcube` on the BCube `topo`.
template <concepts::recoverable_transport Comm, std::ranges::contiguous_range R, class Op = ops::sum>
  requires std::ranges::sized_range<R>
recovery_result<Comm> synchronize_resilient(Comm& comm, const topology::bcube& topo, R&& data, const Op& op = {},
                                            const options& opt = {}, const recovery_options<Comm>& ro = {}) {
  algorithms::bcube bml;
  return synchronize_resilient(comm, topo, bml, std::forward<R>(data), op, opt, ro);
}

}  // namespace dssync::fault
