#pragma once
/// \file
/// `dssync::synchronize`: the entry point. It puts a topology, a policy, a transport and a reduction op
/// together, plans (and caches) the schedule, checks that ranks agree, runs the schedule and finalizes.

#include <algorithm>
#include <chrono>
#include <functional>
#include <typeinfo>
#include <cstddef>
#include <list>
#include <map>
#include <memory>
#include <ranges>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "dssync/algorithms/encoded_allgather.hpp"
#include "dssync/algorithms/encoded_ring.hpp"
#include "dssync/algorithms/registry.hpp"
#include "dssync/algorithms/tuning.hpp"
#include "dssync/core/codec.hpp"
#include "dssync/core/dtype.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/log.hpp"
#include "dssync/core/options.hpp"
#include "dssync/core/policy.hpp"
#include "dssync/core/reduction_op.hpp"
#include "dssync/core/schedule.hpp"
#include "dssync/core/topology.hpp"
#include "dssync/core/transport.hpp"
#include "dssync/core/verifier.hpp"
#include "dssync/ops/sum.hpp"
#include "dssync/topology/full_mesh.hpp"
#include "dssync/transport/agreement.hpp"
#include "dssync/transport/executor.hpp"

namespace dssync {

/// The policy the short form of `synchronize` uses when DSSYNC_ALGO is unset.
inline constexpr std::string_view default_policy = algorithms::ring::name;

namespace detail {

template <class Range>
using element_of = std::remove_cvref_t<std::ranges::range_reference_t<Range>>;

template <class Range>
inline constexpr bool mutable_range = !std::is_const_v<std::remove_reference_t<std::ranges::range_reference_t<Range>>>;

/// A small LRU cache of plans, keyed by text: what `synchronize` keeps per thread (ranks of the
/// in-process transport are threads, so each holds its own plans) and a `communicator` keeps per session.
/// Not thread-safe: one owner uses it at a time.
class plan_cache {
 public:
  explicit plan_cache(std::size_t capacity = 16) noexcept : capacity_(capacity < 1 ? 1 : capacity) {}

  /// The plan stored under `key`, or the one `build()` makes, stored (evicting the least recently used).
  template <class Build>
  std::shared_ptr<const schedule> get(std::string key, Build&& build) {
    for (auto it = entries_.begin(); it != entries_.end(); ++it)
      if (it->first == key) {
        entries_.splice(entries_.begin(), entries_, it);
        return entries_.front().second;
      }
    std::shared_ptr<const schedule> s = build();
    entries_.emplace_front(std::move(key), s);
    if (entries_.size() > capacity_) entries_.pop_back();
    return s;
  }
  [[nodiscard]] std::size_t size() const noexcept { return entries_.size(); }

 private:
  std::size_t capacity_;
  std::list<std::pair<std::string, std::shared_ptr<const schedule>>> entries_;
};

/// The plan cache of the calling thread (the free `synchronize` forms).
inline plan_cache& thread_plan_cache() {
  thread_local plan_cache cache;
  return cache;
}

/// `thread_plan_cache().get(key, build)`.
inline std::shared_ptr<const schedule> cached_plan(std::string key,
                                                   const std::function<std::shared_ptr<const schedule>()>& build) {
  return thread_plan_cache().get(std::move(key), build);
}

/// What a plan is planned from: who plans (`who`, distinct for every policy type or registry entry), what
/// its plans depend on (`policy_key`: its `cache_key`), the topology, the count and the collective (its
/// root and block sizes). Equal on every rank of one call; per-rank plans carry it as their
/// `schedule::description`, which the agreement's fingerprint hashes.
template <class Topo>
std::string plan_description(std::string_view who, const std::string& policy_key, const Topo& t, plan_request q) {
  std::string key(who);
  key += '|';
  key += policy_key;
  key += '|';
  key += t.name();
  key += '|';
  key += std::to_string(q.count);
  key += '|';
  key += to_string(q.collective);
  if (has_root(q.collective)) key += '@' + std::to_string(q.root);
  if (!q.block_sizes.empty()) {
    key += "|b";
    for (auto z : q.block_sizes) key += std::to_string(z) + ',';
  }
  return key;
}

/// The cache key of a plan: its description, the verify flag, and which rank's part it is.
template <class Topo>
std::string plan_key(std::string_view who, const std::string& policy_key, const Topo& t, plan_request q,
                     const options& opt) {
  std::string key = plan_description(who, policy_key, t, q);
  key += opt.verify ? "|v" : "|-";
  if (q.rank >= 0) key += "|r" + std::to_string(q.rank);
  return key;
}

/// Builds a plan with `make`, verifying it when `opt.verify`, and logs it at trace level. A non-empty
/// `description` becomes the plan's (see `schedule::description`).
template <class Make>
std::shared_ptr<const schedule> build_plan(Make&& make, const options& opt, int rank, std::string description = {}) {
  auto s = std::make_shared<schedule>(make());
  if (opt.verify) verify_or_throw(*s);
  s->description = std::move(description);
  s->fingerprint_cache = fingerprint(*s);
  detail::log(opt, log_level::trace, rank, "planned\n", to_string(*s, rank));
  return s;
}

/// The plan of `p` on `t` for `q`, from the per-thread cache when the policy allows it
/// (`is_cacheable_policy`), keyed by the policy's type and `cache_key`. A cacheable policy that plans
/// per rank (`plans_per_rank`) builds only rank `rank`'s part unless `opt.verify` asks for the whole
/// plan; either way the plan is described, so ranks that verify and ranks that do not agree.
template <class Policy, class Topo>
std::shared_ptr<const schedule> plan_for(Policy& p, const Topo& t, plan_request q, const options& opt, int rank,
                                         plan_cache& cache = thread_plan_cache()) {
  if constexpr (!is_cacheable_policy<Policy>) {
    return build_plan([&] { return p.plan(t, q); }, opt, rank);
  } else {
    const std::string who = std::string(Policy::name) + '#' + typeid(Policy).name();
    std::string description;
    if constexpr (plans_per_rank<Policy>) {
      description = plan_description(who, policy_cache_key(p, t, q), t, q);
      if (!opt.verify) q.rank = rank;
    }
    return cache.get(plan_key(who, policy_cache_key(p, t, q), t, q, opt),
                     [&] { return build_plan([&] { return p.plan(t, q); }, opt, rank, description); });
  }
}

/// The plan of the registered policy `e` on `t` for `q`, cached in `cache` (the thread's by default)
/// as above when `e.cacheable`, and per rank as above when `e.per_rank`.
inline std::shared_ptr<const schedule> plan_for_entry(const algorithms::policy_entry& e,
                                                      const algorithms::topology_ref& t, plan_request q,
                                                      const options& opt, int rank,
                                                      plan_cache& cache = thread_plan_cache()) {
  if (!e.cacheable) return build_plan([&] { return e.plan(t, q); }, opt, rank);
  const std::string who = "registry:" + e.name;
  std::string description;
  if (e.per_rank) {
    description = plan_description(who, e.key(t, q), t, q);
    if (!opt.verify) q.rank = rank;
  }
  return cache.get(plan_key(who, e.key(t, q), t, q, opt),
                   [&] { return build_plan([&] { return e.plan(t, q); }, opt, rank, description); });
}

/// Whether `T` runs the agreement overlapped with the data (`T::overlap_agreement`, default true): a
/// transport that cannot withdraw an unmatched send (MPI) sets it false and agrees before the data.
template <class T>
inline constexpr bool overlaps_agreement = [] {
  if constexpr (requires { T::overlap_agreement; })
    return static_cast<bool>(T::overlap_agreement);
  else
    return true;
}();

template <concepts::transport Transport, class E, class Op>
void run(Transport& comm, const schedule& plan, std::span<E> data, const Op& op, const options& opt,
         codec_hook<E>* codec = nullptr) {
  const int me = comm.rank();
  if (plan.world_size != comm.size())
    throw invalid_argument("dssync::synchronize: rank " + std::to_string(me) + ": plan " + plan.policy + " is for " +
                               std::to_string(plan.world_size) + " ranks but the communicator has " +
                               std::to_string(comm.size()),
                           me);
  const auto t0 = std::chrono::steady_clock::now();
  const std::uint32_t call = comm.next_call();
  if (opt.check_agreement && comm.size() > 1) {
    // A group allreduce couples only the members of each group: agree within the group (see `agree`).
    // The exchange is the executor's gate: it overlaps the data sends, and no data is taken in before it.
    std::vector<int> scope;
    if (plan.kind == semantics::group_allreduce) scope = plan.expected_contributors(me);
    const auto sig =
        signature::make(data.size(), comm.size(), dtype_of<E>, sizeof(E), op_id<Op>(), op_name<Op>(), plan.policy,
                        plan.fingerprint_cache != 0 ? plan.fingerprint_cache : fingerprint(plan));
    if constexpr (overlaps_agreement<Transport>) {
      detail::agreement_exchange<Transport> gate(comm, sig, opt, call, scope);
      execute(comm, plan, data, op, opt, call, &gate, codec);
    } else {
      agree(comm, sig, opt, call, scope);  // a transport that cannot withdraw early sends agrees first
      execute(comm, plan, data, op, opt, call, nullptr, codec);
    }
  } else {
    execute(comm, plan, data, op, opt, call, nullptr, codec);
  }
  if constexpr (concepts::finalizing_op<Op, E>) {
    // Only where the plan leaves a reduction: a reduce-scatter's own block, a reduce's root.
    if (const range rr = plan.result_range(me); !rr.empty())
      op.finalize(data.subspan(rr.offset, rr.length), plan.contributors(me));
  }
  if (opt.debug >= log_level::info) {
    const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
    detail::log(opt, log_level::info, me, plan.policy, ' ', to_string(plan.kind), " call ", call, ": ", data.size(),
                ' ', to_string(dtype_of<E>), " elements (", data.size_bytes(), " B) on ", comm.size(), " ranks, ",
                plan.ranks[static_cast<std::size_t>(me)].step_count(), " steps, ", op_name<Op>(), ", ", us, " us");
  }
}

/// The plan of a compressed allreduce of `count` elements through `codec` on `world` ranks (rank `me`'s
/// part unless `opt.verify`), cached in `cache`: `algorithms::encoded_ring` for an elementwise codec (a
/// true reduce-scatter and allgather of encoded parts), `algorithms::encoded_allgather` with slots of the
/// codec's bound for any other. Its description names the plan, the codec, the count and the slot size.
template <class Codec>
std::shared_ptr<const schedule> encoded_plan(const Codec& codec, std::size_t count, int world, int me,
                                             const options& opt, plan_cache& cache) {
  constexpr bool ring = is_elementwise_codec<Codec>;
  using plan_t = std::conditional_t<ring, algorithms::encoded_ring, algorithms::encoded_allgather>;
  const std::size_t per_slot = ring ? algorithms::encoded_ring::largest_part(count, world) : count;
  const std::size_t slot = std::max<std::size_t>(1, codec.max_encoded_bytes(per_slot));  // a slot has a place
  std::string description = std::string(plan_t::name) + '|' + std::string(Codec::name) + '|' +
                            std::to_string(count) + '|' + std::to_string(slot) + '|' + std::to_string(world);
  const std::string key = description + (opt.verify ? "|v" : "|r" + std::to_string(me));
  return cache.get(key, [&] {
    return build_plan([&] { return plan_t::plan(world, count, slot, Codec::name, 0, opt.verify ? -1 : me); }, opt, me,
                      description);
  });
}

/// Runs the compressed allreduce of `data` through `codec` (see the compressed `synchronize`).
template <concepts::transport Transport, class E, class Codec, class Op>
void run_encoded(Transport& comm, std::span<E> data, Codec& codec, const Op& op, const options& opt,
                 plan_cache& cache) {
  static_assert(concepts::codec<Codec, E>, "dssync: the codec does not encode this element type");
  static_assert(std::is_base_of_v<ops::sum, Op>,
                "dssync: a codec's payloads decode to sums, so the op must be ops::sum or ops::average");
  const auto plan = encoded_plan(codec, data.size(), comm.size(), comm.rank(), opt, cache);
  codec_ref<Codec, E> hook(codec);
  run(comm, *plan, data, op, opt, &hook);
}

template <class Topology, class Transport>
void validate_topology(const Topology& topo, const Transport& comm) {
  try {
    topo.validate(comm.size());
  } catch (const invalid_argument& e) {
    throw invalid_argument("dssync::synchronize: rank " + std::to_string(comm.rank()) + ": " + e.what(), comm.rank());
  }
}

template <class Op, class E>
constexpr void check_op() {
  static_assert(element<E>, "dssync::synchronize: elements must be trivially copyable");
  static_assert(concepts::reduction_op<Op, E>, "dssync::synchronize: Op is not a reduction_op for this element type "
                                               "(it needs `T operator()(T, T) const`)");
  static_assert(is_commutative<Op>, "dssync::synchronize: collective schedules reduce in varying orders, so the op "
                                    "must be commutative");
}

}  // namespace detail

/// Synchronizes `data` across all ranks of `comm` with the schedule `Policy` plans on `topo`, combining
/// with `op` (default sum). On return every rank holds the result, bitwise identical on all ranks.
///
/// \tparam Policy    a `concepts::policy` for `Topology` (e.g. `algorithms::ring`); give it explicitly
/// \tparam Transport a `concepts::transport` (e.g. `transport::inproc::communicator`), deduced
/// \tparam Topology  a `concepts::topology` (e.g. `topology::ring`), deduced from `topo`
/// \param data       a contiguous range of mutable elements: `std::vector`, `std::span`, `std::array`, ...
/// \throws invalid_argument (topology does not fit the world), mismatch_error (ranks disagree on count,
///   type, op or policy), timeout_error, peer_failure, malformed_payload.
///
/// ```
/// dssync::synchronize<dssync::algorithms::ring>(comm, dssync::topology::ring(8), grads);
/// ```
template <class Policy, concepts::transport Transport, concepts::topology Topology, std::ranges::contiguous_range Range,
          class Op = ops::sum>
  requires concepts::policy<Policy, Topology> && std::ranges::sized_range<Range>
void synchronize(Transport& comm, const Topology& topo, Range&& data, const Op& op = {}, const options& opt = {}) {
  Policy policy{};
  synchronize(comm, topo, policy, std::forward<Range>(data), op, opt);
}

/// As above, with a policy object: for policies with parameters (`double_binary_tree{.pipeline = 4}`),
/// or that keep state across iterations (gossip).
template <concepts::transport Transport, concepts::topology Topology, class Policy, std::ranges::contiguous_range Range,
          class Op = ops::sum>
  requires concepts::policy<Policy, Topology> && std::ranges::sized_range<Range> &&
           (!std::is_same_v<std::remove_cv_t<Policy>, algorithms::policy_entry>)
void synchronize(Transport& comm, const Topology& topo, Policy& policy, Range&& data, const Op& op = {},
                 const options& opt = {}) {
  using E = detail::element_of<Range>;
  static_assert(detail::mutable_range<Range>, "dssync::synchronize: the buffer must be mutable (not const)");
  detail::check_op<Op, E>();
  detail::validate_topology(topo, comm);
  std::span<E> view(std::ranges::data(data), std::ranges::size(data));
  const auto plan = detail::plan_for(policy, topo, plan_request{view.size(), opt.iteration}, opt, comm.rank());
  detail::run(comm, *plan, view, op, opt);
}

/// Runs a schedule you planned yourself (for example a policy's `plan_without` re-plan for the survivors
/// of a failure) on `comm`, combining with `op` (default sum). The same checks as the other forms apply:
/// ranks agree on count, type, op and policy first, and `opt.verify` proves the schedule before it runs.
///
/// ```
/// const auto plan = dssync::algorithms::bcube{}.plan_without(topo, failed, {grads.size()});
/// dssync::synchronize(survivors, plan, grads);
/// ```
template <concepts::transport Transport, std::ranges::contiguous_range Range, class Op = ops::sum>
  requires std::ranges::sized_range<Range>
void synchronize(Transport& comm, const schedule& plan, Range&& data, const Op& op = {}, const options& opt = {}) {
  using E = detail::element_of<Range>;
  static_assert(detail::mutable_range<Range>, "dssync::synchronize: the buffer must be mutable (not const)");
  detail::check_op<Op, E>();
  std::span<E> view(std::ranges::data(data), std::ranges::size(data));
  if (plan.count != view.size())
    throw invalid_argument("dssync::synchronize: rank " + std::to_string(comm.rank()) + ": buffer has " +
                               std::to_string(view.size()) + " elements but schedule " + plan.policy + " is for " +
                               std::to_string(plan.count),
                           comm.rank());
  if (opt.verify) verify_or_throw(plan);
  detail::run(comm, plan, view, op, opt);
}

/// As above, with a registered policy (`algorithms::registry().at("ring")`, a user's policy too) on a
/// topology: the run-time choice that DSSYNC_ALGO and the short form make.
/// \throws invalid_argument as above.
template <concepts::transport Transport, concepts::topology Topology, std::ranges::contiguous_range Range,
          class Op = ops::sum>
  requires std::ranges::sized_range<Range>
void synchronize(Transport& comm, const Topology& topo, const algorithms::policy_entry& policy, Range&& data,
                 const Op& op = {}, const options& opt = {}) {
  using E = detail::element_of<Range>;
  static_assert(detail::mutable_range<Range>, "dssync::synchronize: the buffer must be mutable (not const)");
  detail::check_op<Op, E>();
  detail::validate_topology(topo, comm);
  std::span<E> view(std::ranges::data(data), std::ranges::size(data));
  const auto plan =
      detail::plan_for_entry(policy, topo, plan_request{view.size(), opt.iteration}, opt, comm.rank());
  detail::run(comm, *plan, view, op, opt);
}

namespace detail {

/// The name of the policy `auto` runs for `bytes` per rank on the full mesh of `world` ranks with the
/// tuning file of `opt` (see `algorithms::choose_allreduce`), remembered per thread; the first choice
/// for each size is logged at INFO with its reason.
inline std::string_view auto_choice(int world, int rank, std::size_t bytes, std::size_t element_size,
                                    const options& opt) {
  thread_local std::map<std::tuple<int, std::size_t, std::size_t, std::string>, std::string> chosen;
  auto key = std::make_tuple(world, bytes, element_size, opt.tuning_file);
  if (auto it = chosen.find(key); it != chosen.end()) return it->second;
  const auto table = opt.tuning_file.empty() ? nullptr : algorithms::tuning_from_file(opt.tuning_file);
  auto c = algorithms::choose_allreduce(topology::full_mesh(world), bytes, element_size, table.get());
  detail::log(opt, log_level::info, rank, "auto: allreduce of ", bytes, " B on ", world, " ranks runs ", c.policy,
              ": ", c.reason);
  return chosen.emplace(std::move(key), std::move(c.policy)).first->second;
}

}  // namespace detail

/// The short form: all-reduces `data` over `comm` with `op` (default sum) on a full-mesh view of the
/// world, with the registered policy DSSYNC_ALGO names, or `default_policy` (DSSYNC_ALGO=auto, or a
/// DSSYNC_TUNING_FILE without DSSYNC_ALGO: per size, the tuning table's pick, else the cost model's).
/// \throws invalid_argument, naming the policy, if DSSYNC_ALGO names an unknown policy or one whose plans
///   are not allreduces (gossip averages over pairs: use `synchronize(comm, topo, gossip_object, data)`,
///   whose object rotates the pairs from call to call).
///
/// ```
/// dssync::synchronize(comm, grads);                      // sum
/// dssync::synchronize(comm, grads, dssync::ops::average{});
/// ```
template <concepts::transport Transport, std::ranges::contiguous_range Range, class Op = ops::sum>
  requires std::ranges::sized_range<Range> && (!concepts::topology<std::remove_cvref_t<Range>>) &&
           (!concepts::codec<std::remove_cvref_t<Op>, detail::element_of<Range>>)
void synchronize(Transport& comm, Range&& data, const Op& op = {}, const options& opt = {}) {
  std::string_view name = algorithms::default_allreduce_policy(default_policy, opt.tuning_file);
  if (name == algorithms::auto_policy)
    name = detail::auto_choice(comm.size(), comm.rank(), std::ranges::size(data) * sizeof(detail::element_of<Range>),
                               sizeof(detail::element_of<Range>), opt);
  const algorithms::policy_entry* e = algorithms::registry().find(name);
  if (e == nullptr)
    throw invalid_argument("dssync::synchronize: rank " + std::to_string(comm.rank()) + ": DSSYNC_ALGO names policy \"" +
                               std::string(name) + "\", which is not registered (known: " +
                               algorithms::registry().known() + ")",
                           comm.rank());
  if (e->promises != semantics::allreduce || !e->plans(semantics::allreduce))
    throw invalid_argument("dssync::synchronize: rank " + std::to_string(comm.rank()) + ": DSSYNC_ALGO names policy \"" +
                               e->name + "\", whose plans are a " +
                               (e->plans(semantics::allreduce) ? std::string(to_string(e->promises))
                                                               : e->collective_list()) +
                               ", not the allreduce of the short form; pass it a topology and a policy object instead",
                           comm.rank());
  synchronize(comm, topology::full_mesh(comm.size()), *e, std::forward<Range>(data), op, opt);
}

/// The compressed form: all-reduces `data` over `comm` through `codec`, combining with `op` (sum or
/// average). `codec` is this rank's codec object with its per-tensor state (a residual, momentum): one
/// per rank and tensor, kept by the caller from call to call.
///  - An elementwise codec (`is_elementwise_codec`: identity, fp16, bf16) runs as a true ring
///    reduce-scatter and allgather of encoded parts (`algorithms::encoded_ring`): partial sums are
///    decoded and accumulated in the element type, and each rank sends 2(N-1)/N of the encoded tensor.
///  - Payloads that cannot be summed on the wire go around the ring as an allgather of messages of
///    run-time length (`algorithms::encoded_allgather`): each rank encodes once (error feedback applied
///    exactly once per call), and every rank decodes every payload in rank order.
/// Either way all ranks end with bitwise the same result. The plan, the codec's name and the slot size
/// are part of the plan's fingerprint: ranks with different codecs fail the agreement.
/// \throws as the short form, and malformed_payload when a payload (from a peer) does not decode.
///
/// ```
/// dssync::codecs::topk<float> codec(0.01);   // one per rank and tensor
/// dssync::synchronize(comm, grads, codec, dssync::ops::average{});
/// ```
template <concepts::transport Transport, std::ranges::contiguous_range Range, class Codec, class Op = ops::sum>
  requires std::ranges::sized_range<Range> && concepts::codec<Codec, detail::element_of<Range>>
void synchronize(Transport& comm, Range&& data, Codec& codec, const Op& op = {}, const options& opt = {}) {
  using E = detail::element_of<Range>;
  static_assert(detail::mutable_range<Range>, "dssync::synchronize: the buffer must be mutable (not const)");
  detail::check_op<Op, E>();
  std::span<E> view(std::ranges::data(data), std::ranges::size(data));
  detail::run_encoded(comm, view, codec, op, opt, detail::thread_plan_cache());
}

}  // namespace dssync
