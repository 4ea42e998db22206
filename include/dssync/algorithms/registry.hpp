#pragma once
/// \file
/// The policy registry: the run-time list of policies that DSSYNC_ALGO, the short form of `synchronize`,
/// the cost model's `best_policy` and dssync-sim read. It starts with dssync's policies; a user adds their
/// own with `registry().add(my_policy{})`, and from then on `DSSYNC_ALGO=my_policy` selects it.
///
/// An entry plans on a `topology_ref`, a non-owning view of any topology: the built-in models
/// (`topology::any_topology`'s alternatives) reach the policy as themselves, so BML sees its BCube's n and
/// k; any other `concepts::topology` reaches it through the view's workers(), name(), validate() and
/// racks().

#include <cstdlib>
#include <deque>
#include <functional>
#include <iterator>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "dssync/algorithms/bcube.hpp"
#include "dssync/algorithms/butterfly.hpp"
#include "dssync/algorithms/binomial_tree.hpp"
#include "dssync/algorithms/chain.hpp"
#include "dssync/algorithms/direct.hpp"
#include "dssync/algorithms/double_binary_tree.hpp"
#include "dssync/algorithms/ds_sync.hpp"
#include "dssync/algorithms/gossip.hpp"
#include "dssync/algorithms/hierarchical.hpp"
#include "dssync/algorithms/parameter_server.hpp"
#include "dssync/algorithms/ring.hpp"
#include "dssync/algorithms/tree.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/policy.hpp"
#include "dssync/topology/spec.hpp"

namespace dssync::algorithms {

/// A non-owning view of a topology for type-erased planning: a `concepts::topology` with `racks()`.
/// It refers to the viewed object, which must outlive it.
class topology_ref {
 public:
  /// Views a built-in model held in an `any_topology`.
  topology_ref(const topology::any_topology& t) noexcept : any_(&t), obj_(&t), vt_(&table<topology::any_topology>) {}  // NOLINT

  /// Views any other topology `T`.
  template <class T>
    requires(!std::is_same_v<std::remove_cvref_t<T>, topology::any_topology> &&
             !std::is_same_v<std::remove_cvref_t<T>, topology_ref> && concepts::topology<T>)
  topology_ref(const T& t) noexcept : obj_(&t), vt_(&table<T>) {  // NOLINT: implicit, a view
    if constexpr (std::is_constructible_v<topology::spec_model, const T&>) model_ = &t;
  }

  [[nodiscard]] int workers() const { return vt_->workers(obj_); }
  [[nodiscard]] std::string name() const { return vt_->name(obj_); }
  /// \throws invalid_argument unless the topology hosts a world of `world` ranks.
  void validate(int world) const { vt_->validate(obj_, world); }
  /// The racks of the topology (`racks_of`): one rack of every worker where it has none.
  [[nodiscard]] std::vector<std::vector<int>> racks() const { return vt_->racks(obj_); }

  /// Calls `f(model)` with the built-in model viewed (a `topology::bcube`, `topology::leaf_spine`, ...), or
  /// `f(*this)` for a topology that is not one.
  template <class F>
  decltype(auto) visit(F&& f) const {
    if (any_ != nullptr) return std::visit([&](const auto& m) -> decltype(auto) { return f(m); }, any_->model());
    if (model_ != nullptr) return visit_model(std::forward<F>(f));
    return f(*this);
  }

 private:
  struct vtable {
    int (*workers)(const void*);
    std::string (*name)(const void*);
    void (*validate)(const void*, int);
    std::vector<std::vector<int>> (*racks)(const void*);
  };
  template <class T>
  static constexpr vtable table = {
      [](const void* p) { return static_cast<int>(static_cast<const T*>(p)->workers()); },
      [](const void* p) { return std::string(static_cast<const T*>(p)->name()); },
      [](const void* p, int n) { static_cast<const T*>(p)->validate(n); },
      [](const void* p) { return racks_of(*static_cast<const T*>(p)); },
  };

  // A built-in model viewed directly (not through an any_topology): find which one by name of its type.
  template <class F>
  decltype(auto) visit_model(F&& f) const {
    return visit_alternative<0>(std::forward<F>(f));
  }
  template <std::size_t I, class F>
  decltype(auto) visit_alternative(F&& f) const {
    if constexpr (I == std::variant_size_v<topology::spec_model>) {
      return f(*this);
    } else {
      using M = std::variant_alternative_t<I, topology::spec_model>;
      if (vt_ == &table<M>) return f(*static_cast<const M*>(model_));
      return visit_alternative<I + 1>(std::forward<F>(f));
    }
  }

  const topology::any_topology* any_ = nullptr;
  const void* model_ = nullptr;
  const void* obj_;
  const vtable* vt_;
};

static_assert(concepts::topology<topology_ref>);

/// One registered policy.
struct policy_entry {
  std::string name;     ///< its `P::name`, unique in the registry
  std::string summary;  ///< one line for listings
  semantics promises = semantics::allreduce;  ///< what its plans promise (gossip: group allreduce)
  std::vector<semantics> collectives{semantics::allreduce};  ///< the collectives it plans (`P::collectives`)
  bool cacheable = true;                      ///< `is_cacheable_policy` of the policy
  bool per_rank = false;                      ///< `plans_per_rank` of the policy
  /// Its plan on `t` for `q`. \throws invalid_argument naming what it cannot serve.
  std::function<schedule(const topology_ref& t, plan_request q)> plan;
  /// What the plan on `t` depends on besides (topology, count); empty for a policy without `cache_key`.
  std::function<std::string(const topology_ref& t, const plan_request& q)> cache_key;
  /// Its plan for the survivors of `failed`; empty for a policy without `plan_without`.
  std::function<schedule(const topology_ref& t, std::span<const int> failed, plan_request q)> plan_without;

  /// Whether the policy plans collective `c`.
  [[nodiscard]] bool plans(semantics c) const noexcept {
    for (semantics x : collectives)
      if (x == c) return true;
    return false;
  }
  /// The collectives it plans, as "broadcast, reduce".
  [[nodiscard]] std::string collective_list() const {
    std::string out;
    for (semantics x : collectives) out += (out.empty() ? "" : ", ") + std::string(to_string(x));
    return out;
  }
  /// Whether the policy can re-plan around failed ranks.
  [[nodiscard]] bool can_replan() const noexcept { return static_cast<bool>(plan_without); }
  /// `cache_key(t, q)`, or "".
  [[nodiscard]] std::string key(const topology_ref& t, const plan_request& q) const {
    return cache_key ? cache_key(t, q) : std::string();
  }
};

/// The entry of policy `prototype` (copied into every plan call, so a stateful policy starts from the
/// prototype's state each time).
template <class P>
[[nodiscard]] policy_entry make_policy_entry(P prototype = {}, std::string summary = {}) {
  policy_entry e;
  e.name = std::string(P::name);
  e.summary = std::move(summary);
  e.promises = promised_semantics<P>;
  e.cacheable = is_cacheable_policy<P>;
  e.per_rank = plans_per_rank<P>;
  if constexpr (requires { P::collectives; })
    e.collectives.assign(std::begin(P::collectives), std::end(P::collectives));
  else
    e.collectives = {promised_semantics<P>};
  e.plan = [prototype](const topology_ref& t, plan_request q) -> schedule {
    return t.visit([&](const auto& m) -> schedule {
      using M = std::remove_cvref_t<decltype(m)>;
      P p = prototype;
      if constexpr (concepts::policy<P, M>) {
        return p.plan(m, q);
      } else {
        throw invalid_argument("policy " + std::string(P::name) + " cannot plan on topology " + m.name());
      }
    });
  };
  // Keyed where the policy names a key, by (q) or, seeing the model, by (t, q).
  const bool keyed = []<std::size_t... I>(std::index_sequence<I...>) {
    return concepts::keyed_policy<P> ||
           (concepts::topology_keyed_policy<P, std::variant_alternative_t<I, topology::spec_model>> || ...) ||
           concepts::topology_keyed_policy<P, topology_ref>;
  }(std::make_index_sequence<std::variant_size_v<topology::spec_model>>{});
  if (keyed)
    e.cache_key = [prototype](const topology_ref& t, const plan_request& q) -> std::string {
      return t.visit([&](const auto& m) -> std::string { return policy_cache_key(prototype, m, q); });
    };
  auto replan = [prototype](const topology_ref& t, std::span<const int> failed, plan_request q) -> schedule {
    return t.visit([&](const auto& m) -> schedule {
      using M = std::remove_cvref_t<decltype(m)>;
      if constexpr (concepts::replanning_policy<P, M>) {
        return prototype.plan_without(m, failed, q);
      } else {
        throw invalid_argument("policy " + std::string(P::name) + " cannot re-plan around failed ranks on topology " +
                               m.name());
      }
    });
  };
  // Offered where the policy re-plans on at least one built-in model.
  const bool replans = []<std::size_t... I>(std::index_sequence<I...>) {
    return (concepts::replanning_policy<P, std::variant_alternative_t<I, topology::spec_model>> || ...) ||
           concepts::replanning_policy<P, topology_ref>;
  }(std::make_index_sequence<std::variant_size_v<topology::spec_model>>{});
  if (replans) e.plan_without = std::move(replan);
  return e;
}

/// The run-time list of policies. Entries are never removed, so references to them stay valid; adding
/// and looking up are thread-safe. Register a policy before the ranks that use it start communicating.
class policy_registry {
 public:
  /// A registry with dssync's policies.
  policy_registry() {
    add(make_policy_entry<ring>({}, "ring allreduce: reduce-scatter then allgather around a ring (Patarasuk & Yuan)"));
    add(make_policy_entry<direct>({}, "direct: every rank reduces its slice from every peer, then sends it to all"));
    add(make_policy_entry<hierarchical>({}, "hierarchical: ring inside racks, ring across racks, ring inside racks"));
    add(make_policy_entry<double_binary_tree>({}, "double binary tree, pipelined (NCCL's trees)"));
    add(make_policy_entry<parameter_server>({}, "sharded parameter server: push to servers, pull back"));
    add(make_policy_entry<bcube>({}, "BML on BCube(n,k): k-channel aggregation and broadcast (needs a bcube topology)"));
    add(make_policy_entry<gossip>({}, "pairwise gossip averaging: a group allreduce over rotating pairs"));
    add(make_policy_entry<ds_sync>({}, "DS-Sync: disjoint groups in parallel, reshuffled every iteration (rack rotation)"));
    add(make_policy_entry<chain>({}, "pipelined chain broadcast and reduce, for large messages"));
    add(make_policy_entry<tree>({}, "spanning trees packed to the Edmonds bound (ForestColl; Blink by option): broadcast, reduce, allreduce"));
    add(make_policy_entry<binomial_tree>({}, "binomial-tree broadcast and reduce, ceil(log2 N) hops, for small messages"));
    add(make_policy_entry<recursive_doubling>({}, "recursive doubling: log2 N whole-buffer exchanges, staged (MPICH; small messages, any N by folding)"));
    add(make_policy_entry<rabenseifner>({}, "Rabenseifner: reduce-scatter by recursive halving, allgather by doubling (MPICH; any N by folding)"));
    add(make_policy_entry<one_shot>({}, "one-shot: one round, every rank sends its whole buffer to all and reduces in rank order (few ranks, small buffers)"));
  }
  policy_registry(const policy_registry&) = delete;
  policy_registry& operator=(const policy_registry&) = delete;

  /// Adds `e`. \throws invalid_argument if its name is empty, already registered, or it cannot plan.
  const policy_entry& add(policy_entry e) {
    if (e.name.empty()) throw invalid_argument("dssync policy registry: a policy needs a name");
    if (!e.plan) throw invalid_argument("dssync policy registry: policy \"" + e.name + "\" has no plan function");
    std::lock_guard lock(m_);
    for (const auto& x : entries_)
      if (x.name == e.name)
        throw invalid_argument("dssync policy registry: a policy named \"" + e.name + "\" is already registered");
    return entries_.emplace_back(std::move(e));
  }
  /// Adds policy `prototype` (see `make_policy_entry`).
  template <class P>
    requires(!std::is_same_v<std::remove_cvref_t<P>, policy_entry>)
  const policy_entry& add(P prototype, std::string summary = {}) {
    return add(make_policy_entry<P>(std::move(prototype), std::move(summary)));
  }

  /// The entry named `name`, or nullptr.
  [[nodiscard]] const policy_entry* find(std::string_view name) const {
    std::lock_guard lock(m_);
    for (const auto& x : entries_)
      if (x.name == name) return &x;
    return nullptr;
  }
  /// The entry named `name`. \throws invalid_argument naming `name` and the known policies.
  [[nodiscard]] const policy_entry& at(std::string_view name) const {
    if (const auto* e = find(name)) return *e;
    throw invalid_argument("dssync: unknown policy \"" + std::string(name) + "\" (known: " + known() + ")");
  }
  /// The names, in registration order (views into the entries, valid for the registry's life).
  [[nodiscard]] std::vector<std::string_view> names() const {
    std::lock_guard lock(m_);
    std::vector<std::string_view> v;
    v.reserve(entries_.size());
    for (const auto& x : entries_) v.emplace_back(x.name);
    return v;
  }
  /// The names as one comma-separated list.
  [[nodiscard]] std::string known() const {
    std::string s;
    for (auto n : names()) s += (s.empty() ? "" : ", ") + std::string(n);
    return s;
  }

 private:
  mutable std::mutex m_;
  std::deque<policy_entry> entries_;
};

/// The process-wide registry that DSSYNC_ALGO, the short form, `best_policy` and dssync-sim read.
[[nodiscard]] inline policy_registry& registry() {
  static policy_registry r;
  return r;
}

/// Names of the registered policies, in registration order: dssync's, then the user's.
[[nodiscard]] inline std::vector<std::string_view> policy_names() { return registry().names(); }

/// The plan of the registered policy `name` on `t` for `q`.
/// \throws invalid_argument naming `name` and the known policies if it is not registered.
[[nodiscard]] inline schedule plan_by_name(std::string_view name, const topology_ref& t, plan_request q) {
  return registry().at(name).plan(t, q);
}

/// The policy DSSYNC_ALGO names, or `fallback` if it is unset or empty.
[[nodiscard]] inline std::string_view policy_from_env(std::string_view fallback) {
  const char* v = std::getenv("DSSYNC_ALGO");
  if (v == nullptr || *v == '\0') return fallback;
  return v;
}

}  // namespace dssync::algorithms
