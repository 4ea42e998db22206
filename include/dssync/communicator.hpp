#pragma once
/// \file
/// `dssync::communicator`: the session API. One object per rank owns the transport it was given, the
/// topology, the policy of each collective, a plan cache and the iteration counter, and offers the
/// collectives HPC and ML codes expect: `allreduce`, `reduce_scatter`, `allgather` (and `allgatherv`,
/// whose per-rank lengths are learnt at run time), `broadcast` and `reduce`, in place and out of place,
/// blocking and `_async` with a `request` handle; `group_allreduce` (DS-Sync's and gossip's disjoint
/// groups, each reduced in parallel) and `barrier`.
///
/// ```
/// dssync::communicator comm(transport);            // full mesh of transport.size() ranks
/// comm.allreduce(std::span(grads), dssync::ops::average{});
/// auto r = comm.broadcast_async(std::span(params), 0);
/// compute();                                        // overlaps the broadcast
/// r.wait();                                         // rethrows the collective's error, if any
/// ```
///
/// Rules, as in MPI and NCCL: every rank issues the same collectives in the same order (ranks check it:
/// count, type, op, policy and plan fingerprint, else `mismatch_error`); a buffer handed to an `_async`
/// call stays alive and untouched until its request completes; one thread at a time calls a
/// communicator, and nothing else uses its transport while it lives.
///
/// Asynchronous collectives run in the order they were issued, one at a time, on a background thread of
/// the communicator, so they overlap the caller's work but not each other (a progress loop that
/// advances several at once is part of the lowering the spine still lacks). A blocking call issued while
/// requests are pending runs after them, keeping the order. A transport that may be called from one
/// thread only (`transport::mpi` under MPI_THREAD_FUNNELED: its `serialized_threads()` is false) gets no
/// background thread: its requests run on the caller's thread, in issue order, when the caller waits on
/// or tests one, makes a blocking call, or destroys the communicator (`async_in_background()` says which).

#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "dssync/algorithms/blocks/partition.hpp"
#include "dssync/algorithms/registry.hpp"
#include "dssync/algorithms/tuning.hpp"
#include "dssync/core/codec.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/options.hpp"
#include "dssync/core/schedule.hpp"
#include "dssync/core/topology.hpp"
#include "dssync/core/transport.hpp"
#include "dssync/ops/sum.hpp"
#include "dssync/synchronize.hpp"
#include "dssync/topology/full_mesh.hpp"

namespace dssync {

/// The handle of a collective started by an `_async` call of a `communicator`.
class request {
 public:
  request() = default;

  /// Blocks until the collective has finished. \throws what the collective threw (once).
  void wait() {
    if (!st_) throw invalid_argument("dssync::request::wait: the request is empty (default-constructed)");
    drive();
    std::unique_lock lk(st_->m);
    st_->cv.wait(lk, [&] { return st_->done; });
    rethrow(lk);
  }
  /// Whether the collective has finished, without blocking. \throws what the collective threw (once).
  [[nodiscard]] bool test() {
    if (!st_) throw invalid_argument("dssync::request::test: the request is empty (default-constructed)");
    drive();
    std::unique_lock lk(st_->m);
    if (!st_->done) return false;
    rethrow(lk);
    return true;
  }
  /// Whether the request refers to a collective.
  [[nodiscard]] bool valid() const noexcept { return static_cast<bool>(st_); }

 private:
  struct state {
    std::mutex m;
    std::condition_variable cv;
    bool done = false;
    std::exception_ptr error;
    std::function<void()> drive;  // runs the pending requests up to this one, where no thread does
  };
  void drive() {
    std::function<void()> d;
    {
      std::lock_guard lk(st_->m);
      if (!st_->done) d = st_->drive;
    }
    if (d) d();
  }
  void rethrow(std::unique_lock<std::mutex>& lk) {
    if (auto e = std::exchange(st_->error, nullptr)) {
      lk.unlock();
      std::rethrow_exception(e);
    }
  }
  std::shared_ptr<state> st_;
  template <concepts::transport, concepts::topology>
  friend class communicator;
};

namespace detail {

/// The "op" of collectives that only copy (allgather, broadcast): their plans have no receive-reduce
/// steps (the verifier proves it for ours), so it is never applied; it exists so that any trivially
/// copyable element type can be moved.
struct copy_only {
  static constexpr std::uint32_t id = 0x7fff0001u;
  static constexpr std::string_view name = "copy";
  template <class T>
  T operator()(T a, T) const noexcept {
    return a;
  }
};

/// A growable scratch buffer aligned for any element type.
class scratch_buffer {
 public:
  template <class E>
  [[nodiscard]] std::span<E> get(std::size_t n) {
    const std::size_t bytes = n * sizeof(E);
    if (bytes > cap_) {
      buf_.reset(static_cast<std::byte*>(::operator new(bytes, std::align_val_t{64})));
      cap_ = bytes;
    }
    return {reinterpret_cast<E*>(buf_.get()), n};
  }

 private:
  struct deleter {
    void operator()(std::byte* p) const noexcept { ::operator delete(p, std::align_val_t{64}); }
  };
  std::unique_ptr<std::byte, deleter> buf_;
  std::size_t cap_ = 0;
};

}  // namespace detail

/// A session over transport `Transport` on topology `Topology` (see the file comment).
template <concepts::transport Transport, concepts::topology Topology = topology::full_mesh>
class communicator {
 public:
  /// Byte size from which broadcast and reduce default to the pipelined chain instead of the binomial tree.
  static constexpr std::size_t chain_threshold_bytes = 64 * 1024;

  /// A session over `transport` (referenced, not owned: it must outlive the communicator) on `topo`,
  /// with options `opt` (default: the DSSYNC_* environment). The allreduce policy is DSSYNC_ALGO's, or ring.
  /// \throws invalid_argument, naming the rank, if `topo` does not fit the world or DSSYNC_ALGO names an
  ///   unknown policy or one that does not plan allreduces.
  communicator(Transport& transport, Topology topo, options opt = options::from_env())
      : comm_(&transport), topo_(std::move(topo)), opt_(std::move(opt)) {
    if constexpr (requires { transport.serialized_threads(); }) background_ = transport.serialized_threads();
    detail::validate_topology(topo_, *comm_);
    use(semantics::allreduce, algorithms::default_allreduce_policy(default_policy, opt_.tuning_file));
    if (auto_allreduce_ && !opt_.tuning_file.empty()) {
      try {
        table_ = algorithms::tuning_from_file(opt_.tuning_file);  // a bad file fails here, not mid-training
      } catch (const invalid_argument& x) {
        throw invalid_argument("dssync::communicator: rank " + std::to_string(rank()) + ": " + x.what(), rank());
      }
    }
    detail::log(opt_, log_level::info, rank(), "communicator: allreduce policy ",
                auto_allreduce_ ? std::string(algorithms::auto_policy) : policies_[0]->name,
                algorithms::policy_from_env("").empty()
                    ? (auto_allreduce_ ? std::string(" (DSSYNC_TUNING_FILE ") + opt_.tuning_file + ")" : " (default)")
                    : " (DSSYNC_ALGO)");
    use(semantics::reduce_scatter, algorithms::ring::name);
    use(semantics::allgather, algorithms::ring::name);
    use(semantics::group_allreduce, algorithms::ds_sync::name);
  }
  /// A session over `transport` on a full mesh of its ranks.
  explicit communicator(Transport& transport, options opt = options::from_env())
    requires std::is_same_v<Topology, topology::full_mesh>
      : communicator(transport, topology::full_mesh(transport.size()), std::move(opt)) {}

  communicator(const communicator&) = delete;
  communicator& operator=(const communicator&) = delete;
  /// Finishes the pending asynchronous collectives (their errors stay in their requests).
  ~communicator() {
    if (!background_) run_pending(nullptr);
    {
      std::lock_guard lk(q_.m);
      q_.stop = true;
    }
    q_.cv.notify_all();
    if (q_.thread.joinable()) q_.thread.join();
  }

  /// Whether `_async` collectives run on a background thread (else on the caller's, see the file comment).
  [[nodiscard]] bool async_in_background() const noexcept { return background_; }

  [[nodiscard]] int rank() const { return comm_->rank(); }
  [[nodiscard]] int size() const { return comm_->size(); }
  [[nodiscard]] const Topology& topology() const noexcept { return topo_; }
  [[nodiscard]] const options& opts() const noexcept { return opt_; }

  /// The iteration counter: the only source of iteration truth, passed to every plan (gossip and
  /// DS-Sync change their groups with it).
  [[nodiscard]] std::uint64_t iteration() const noexcept { return iteration_; }
  /// Advances the iteration counter (call it once per training step, on every rank).
  std::uint64_t next_iteration() noexcept { return ++iteration_; }

  /// Runs collective `c` with the registered policy `name` from now on (broadcast and reduce: an empty
  /// name or "auto" restores the size rule, chain from `chain_threshold_bytes`, binomial tree below).
  /// "auto" for the allreduce picks per size: from the tuning table (`use_tuning`, else the options'
  /// `tuning_file`) where it has an entry, else from the cost model on this session's topology
  /// (`algorithms::choose_allreduce`); DSSYNC_DEBUG=INFO logs each size's choice and its reason.
  /// \throws invalid_argument, naming the rank, if `name` is unknown or does not plan `c`.
  communicator& use(semantics c, std::string_view name) {
    auto& slot = policy_slot(c);
    if ((name.empty() || name == algorithms::auto_policy) && has_root(c)) {
      slot = nullptr;
      return *this;
    }
    if (name == algorithms::auto_policy && c == semantics::allreduce) {
      auto_allreduce_ = true;
      forget_auto_choices();
      return *this;
    }
    const auto* e = algorithms::registry().find(name);
    if (e == nullptr)
      throw invalid_argument("dssync::communicator: rank " + std::to_string(rank()) + ": policy \"" +
                                 std::string(name) + "\" is not registered (known: " + algorithms::registry().known() +
                                 ")",
                             rank());
    if (!e->plans(c))
      throw invalid_argument("dssync::communicator: rank " + std::to_string(rank()) + ": policy \"" + e->name +
                                 "\" plans " + e->collective_list() + ", not " + to_string(c),
                             rank());
    slot = e;
    if (c == semantics::allreduce) auto_allreduce_ = false;
    return *this;
  }
  /// Has "auto" pick from `table` (a table dssync-tune wrote: `algorithms::tuning_table::load`) from now
  /// on, instead of the options' `tuning_file`; the allreduce policy becomes "auto".
  communicator& use_tuning(algorithms::tuning_table table) {
    {
      std::lock_guard lk(auto_m_);
      table_ = std::make_shared<const algorithms::tuning_table>(std::move(table));
    }
    return use(semantics::allreduce, algorithms::auto_policy);
  }
  /// Whether the allreduce policy is "auto".
  [[nodiscard]] bool auto_allreduce() const noexcept { return auto_allreduce_; }
  /// The policy collective `c` of `bytes` bytes (elements of `element_size` bytes) runs with.
  /// \throws invalid_argument as `tuning_table::load` if "auto" reads a malformed tuning file.
  [[nodiscard]] const algorithms::policy_entry& policy(semantics c, std::size_t bytes = 0,
                                                       std::size_t element_size = 4) const {
    if (c == semantics::allreduce && auto_allreduce_) return auto_entry(bytes, element_size);
    const auto* e = const_cast<communicator*>(this)->policy_slot(c);
    if (e != nullptr) return *e;
    return algorithms::registry().at(bytes >= chain_threshold_bytes ? algorithms::chain::name
                                                                    : algorithms::binomial_tree::name);
  }

  // ---- compressed allreduce -------------------------------------------------------------------------

  /// Every rank ends with the sum (or average) of all ranks' `data` as `codec` transmits it: encoded once
  /// (error feedback applied once), payloads of run-time length allgathered, all decoded in rank order,
  /// so bitwise identical on every rank (see the compressed `synchronize`). `codec` is this rank's codec
  /// for this tensor, with its state; the caller owns it (or see the named-tensor form).
  template <class E, class Codec, class Op = ops::sum>
    requires concepts::codec<Codec, E>
  void allreduce(std::span<E> data, Codec& codec, const Op& op = {}) {
    serial([&] { compressed(data, codec, op); });
  }
  /// As above, with the codec state the session keeps for tensor `tensor`: made from `proto` on first
  /// use, then reused (and advanced) by every call naming the tensor. `codec_state` reads it, to save it.
  /// \throws invalid_argument, naming the rank and the tensor, if the tensor's state is of another codec.
  template <class E, class Codec, class Op = ops::sum>
    requires concepts::codec<Codec, E>
  void allreduce(std::string_view tensor, std::span<E> data, const Codec& proto, const Op& op = {}) {
    serial([&] { compressed(data, codec_state(tensor, proto), op); });
  }
  /// `allreduce(data, codec, op)` in the background; `codec` must live until the request completes.
  template <class E, class Codec, class Op = ops::sum>
    requires concepts::codec<Codec, E>
  [[nodiscard]] request allreduce_async(std::span<E> data, Codec& codec, const Op& op = {}) {
    return enqueue([this, data, &codec, op] { compressed(data, codec, op); });
  }
  /// The codec (and its state) the session keeps for tensor `tensor`, made from `proto` if it has none.
  /// Checkpoint it with the codec's state `save`, and restore it by assigning the loaded state.
  /// \throws invalid_argument if the tensor's state is of another codec type.
  template <class Codec>
  Codec& codec_state(std::string_view tensor, const Codec& proto) {
    auto it = tensors_.find(tensor);
    if (it == tensors_.end())
      it = tensors_.emplace(std::string(tensor), std::make_shared<tensor_state<Codec>>(proto)).first;
    auto* st = dynamic_cast<tensor_state<Codec>*>(it->second.get());
    if (st == nullptr)
      throw invalid_argument("dssync::communicator: rank " + std::to_string(rank()) + ": tensor \"" +
                                 std::string(tensor) + "\" keeps the state of codec " + it->second->codec_name() +
                                 ", not of " + std::string(Codec::name),
                             rank());
    return st->codec;
  }
  /// The tensors whose codec state the session keeps.
  [[nodiscard]] std::size_t codec_states() const noexcept { return tensors_.size(); }

  // ---- allreduce ------------------------------------------------------------------------------------

  /// Every rank ends with the reduction (by `op`) of all ranks' `data`, bitwise identical.
  template <class E, class Op = ops::sum>
    requires(!concepts::codec<Op, E>)
  void allreduce(std::span<E> data, const Op& op = {}) {
    serial([&] { collective(semantics::allreduce, data, op, 0, {}); });
  }
  /// Out of place: `out` (as long as `in`) ends with the reduction; `in` is not modified.
  template <class E, class Op = ops::sum>
  void allreduce(std::span<const E> in, std::span<E> out, const Op& op = {}) {
    check_length("allreduce", "out", out.size(), in.size());
    serial([&] {
      copy_into(in, out);
      collective(semantics::allreduce, out, op, 0, {});
    });
  }
  template <class E, class Op = ops::sum>
  [[nodiscard]] request allreduce_async(std::span<E> data, const Op& op = {}) {
    return enqueue([this, cs = issue(semantics::allreduce, data), data, op] {
      collective(cs, semantics::allreduce, data, op, 0, {});
    });
  }

  // ---- reduce-scatter -------------------------------------------------------------------------------

  /// In place: rank r ends with the reduction of all ranks' block r of `data` on that block, and returns
  /// it. Blocks are `partition(data.size(), N)` or `block_sizes` (one per rank, summing to the size);
  /// the rest of `data` ends unspecified.
  template <class E, class Op = ops::sum>
  range reduce_scatter(std::span<E> data, const Op& op = {}, std::span<const std::size_t> block_sizes = {}) {
    serial([&] { collective(semantics::reduce_scatter, data, op, 0, block_sizes); });
    return algorithms::blocks::block_layout(data.size(), static_cast<std::size_t>(size()),
                                            block_sizes)[static_cast<std::size_t>(rank())];
  }
  /// Out of place: `out` (as long as this rank's block of `in`) ends with the reduction of all ranks'
  /// block; `in` is not modified.
  template <class E, class Op = ops::sum>
  void reduce_scatter(std::span<const E> in, std::span<E> out, const Op& op = {},
                      std::span<const std::size_t> block_sizes = {}) {
    const range mine = algorithms::blocks::block_layout(in.size(), static_cast<std::size_t>(size()),
                                                        block_sizes)[static_cast<std::size_t>(rank())];
    check_length("reduce_scatter", "out", out.size(), mine.length);
    serial([&] {
      auto tmp = scratch_.template get<std::remove_const_t<E>>(in.size());
      copy_into(in, tmp);
      collective(semantics::reduce_scatter, tmp, op, 0, block_sizes);
      std::copy_n(tmp.begin() + static_cast<std::ptrdiff_t>(mine.offset), mine.length, out.begin());
    });
  }
  template <class E, class Op = ops::sum>
  [[nodiscard]] request reduce_scatter_async(std::span<E> data, const Op& op = {}) {
    return enqueue([this, cs = issue(semantics::reduce_scatter, data), data, op] {
      collective(cs, semantics::reduce_scatter, data, op, 0, {});
    });
  }

  // ---- allgather ------------------------------------------------------------------------------------

  /// In place: rank r contributes block r of `data` (`partition(data.size(), N)` or `block_sizes`), and
  /// every rank ends with every block. The rest of each rank's buffer is not read.
  template <class E>
  void allgather(std::span<E> data, std::span<const std::size_t> block_sizes = {}) {
    serial([&] { collective(semantics::allgather, data, detail::copy_only{}, 0, block_sizes); });
  }
  /// Out of place: `out` (N times as long as `mine`) ends with every rank's `mine`, in rank order.
  template <class E>
  void allgather(std::span<const E> mine, std::span<E> out) {
    check_length("allgather", "out", out.size(), mine.size() * static_cast<std::size_t>(size()));
    serial([&] {
      copy_into(mine, out.subspan(static_cast<std::size_t>(rank()) * mine.size(), mine.size()));
      collective(semantics::allgather, out, detail::copy_only{}, 0, {});
    });
  }
  template <class E>
  [[nodiscard]] request allgather_async(std::span<E> data) {
    return enqueue([this, cs = issue(semantics::allgather, data), data] {
      collective(cs, semantics::allgather, data, detail::copy_only{}, 0, {});
    });
  }

  /// Allgather of variable-length contributions: every rank ends with `out` holding all ranks' `mine`
  /// in rank order, although no rank knows the others' lengths beforehand. Returns the lengths. It
  /// exchanges the lengths first (an allgather of one 64-bit count per rank), then the data with the
  /// lengths as the block layout.
  template <class E>
  std::vector<std::size_t> allgatherv(std::span<const E> mine, std::vector<std::remove_const_t<E>>& out) {
    std::vector<std::size_t> sizes;
    serial([&] { sizes = gather_v(issue(semantics::allgather, mine), mine, out); });
    return sizes;
  }
  /// `allgatherv` in the background; `out` and `sizes` are filled when the request completes.
  template <class E>
  [[nodiscard]] request allgatherv_async(std::span<const E> mine, std::vector<std::remove_const_t<E>>& out,
                                         std::vector<std::size_t>& sizes) {
    return enqueue([this, cs = issue(semantics::allgather, mine), mine, out = &out, sizes = &sizes] {
      *sizes = gather_v(cs, mine, *out);
    });
  }

  // ---- group allreduce (DS-Sync, gossip) ------------------------------------------------------------

  /// Every rank ends with the reduction (by `op`) of its group's `data`, where the groups are those that
  /// `policy` (a user-owned object: `algorithms::ds_sync`, `algorithms::gossip`, or any policy for this
  /// topology) plans for the current `iteration()`. The groups are disjoint and run in parallel, and each
  /// call agrees only inside its group, so a group never waits for another. The object's state counts:
  /// `ds_sync::observe(network_state)` before a call regroups around the observed contention. A policy
  /// whose plans are whole allreduces makes one group of all ranks. Returns the caller's group, sorted.
  /// \throws invalid_argument, naming the rank, if the policy cannot plan on this topology;
  ///   mismatch_error if the group's ranks disagree (count, type, op or plan).
  ///
  /// ```
  /// dssync::algorithms::ds_sync ds;
  /// ds.observe(detector.state());                     // the same state on every rank
  /// comm.group_allreduce(ds, std::span(params), dssync::ops::average{});
  /// comm.next_iteration();                            // reshuffles the groups
  /// ```
  template <class Policy, class E, class Op = ops::sum>
    requires concepts::policy<Policy, Topology>
  std::vector<int> group_allreduce(Policy& policy, std::span<E> data, const Op& op = {}) {
    std::vector<int> group;
    serial([&] { group = grouped(policy, iteration_, data, op); });
    return group;
  }
  /// As above with the registered policy of `use(semantics::group_allreduce, name)` (default ds_sync,
  /// in its initial state: use the policy-object form to regroup around observed contention).
  template <class E, class Op = ops::sum>
  std::vector<int> group_allreduce(std::span<E> data, const Op& op = {}) {
    std::vector<int> group;
    serial([&] {
      const auto plan = collective(semantics::group_allreduce, data, op, 0, {});
      group = plan->expected_contributors(rank());
    });
    return group;
  }
  /// `group_allreduce` in the background, with a copy of `policy` as it is now and the current iteration.
  template <class Policy, class E, class Op = ops::sum>
    requires concepts::policy<Policy, Topology>
  [[nodiscard]] request group_allreduce_async(const Policy& policy, std::span<E> data, const Op& op = {}) {
    return enqueue([this, p = policy, it = iteration_, data, op]() mutable { (void)grouped(p, it, data, op); });
  }

  /// Returns once every rank has entered it (an allgather of one byte per rank, after the pending
  /// requests). \throws timeout_error or peer_failure, naming the rank, if a peer never enters.
  void barrier() {
    serial([&] {
      std::vector<std::uint8_t> mark(static_cast<std::size_t>(size()), 0);
      mark[static_cast<std::size_t>(rank())] = 1;
      (void)collective(call_state{&algorithms::registry().at(algorithms::ring::name), iteration_},
                       semantics::allgather, std::span(mark), detail::copy_only{}, 0, {});
    });
  }

  // ---- broadcast and reduce -------------------------------------------------------------------------

  /// Every rank ends with `root`'s `data`.
  template <class E>
  void broadcast(std::span<E> data, int root) {
    check_root("broadcast", root);
    serial([&] { collective(semantics::broadcast, data, detail::copy_only{}, root, {}); });
  }
  template <class E>
  [[nodiscard]] request broadcast_async(std::span<E> data, int root) {
    check_root("broadcast", root);
    return enqueue([this, cs = issue(semantics::broadcast, data), data, root] {
      collective(cs, semantics::broadcast, data, detail::copy_only{}, root, {});
    });
  }

  /// In place: `root` ends with the reduction of all ranks' `data`; the other ranks' `data` ends
  /// unspecified (partial sums pass through it).
  template <class E, class Op = ops::sum>
  void reduce(std::span<E> data, int root, const Op& op = {}) {
    check_root("reduce", root);
    serial([&] { collective(semantics::reduce, data, op, root, {}); });
  }
  /// Out of place: on `root`, `out` (as long as `in`) ends with the reduction; elsewhere `out` is not
  /// used and may be empty. `in` is not modified.
  template <class E, class Op = ops::sum>
  void reduce(std::span<const E> in, std::span<E> out, int root, const Op& op = {}) {
    check_root("reduce", root);
    if (rank() == root) check_length("reduce", "out (on the root)", out.size(), in.size());
    serial([&] {
      auto tmp = rank() == root ? out : scratch_.template get<std::remove_const_t<E>>(in.size());
      copy_into(in, tmp);
      collective(semantics::reduce, tmp, op, root, {});
    });
  }
  template <class E, class Op = ops::sum>
  [[nodiscard]] request reduce_async(std::span<E> data, int root, const Op& op = {}) {
    check_root("reduce", root);
    return enqueue([this, cs = issue(semantics::reduce, data), data, root, op] {
      collective(cs, semantics::reduce, data, op, root, {});
    });
  }

  /// Runs any blocking operation of this communicator in the background, after the pending ones.
  template <class F>
  [[nodiscard]] request async(F&& f) {
    return enqueue(std::function<void()>(std::forward<F>(f)));
  }

  /// Plans in this session's cache.
  [[nodiscard]] std::size_t cached_plans() const noexcept { return cache_.size(); }

 private:
  /// The entry "auto" runs for `bytes`: chosen once per (size, element size) and remembered.
  const algorithms::policy_entry& auto_entry(std::size_t bytes, std::size_t element_size) const {
    std::lock_guard lk(auto_m_);
    const auto key = std::make_pair(bytes, element_size);
    if (auto it = auto_chosen_.find(key); it != auto_chosen_.end()) return *it->second;
    if (!table_ && !opt_.tuning_file.empty()) {
      try {
        table_ = algorithms::tuning_from_file(opt_.tuning_file);
      } catch (const invalid_argument& x) {
        throw invalid_argument("dssync::communicator: rank " + std::to_string(rank()) + ": " + x.what(), rank());
      }
    }
    const auto c = algorithms::choose_allreduce(topo_, bytes, element_size, table_.get());
    const auto* e = algorithms::registry().find(c.policy);
    if (e == nullptr || !e->plans(semantics::allreduce))
      throw invalid_argument("dssync::communicator: rank " + std::to_string(rank()) + ": auto chose policy \"" +
                                 c.policy + "\" for " + std::to_string(bytes) + " B (" + c.reason +
                                 "), which is not a registered allreduce policy",
                             rank());
    detail::log(opt_, log_level::info, rank(), "auto: allreduce of ", bytes, " B on ", size(), " ranks runs ",
                e->name, ": ", c.reason);
    auto_chosen_.emplace(key, e);
    return *e;
  }
  void forget_auto_choices() {
    std::lock_guard lk(auto_m_);
    auto_chosen_.clear();
  }

  const algorithms::policy_entry*& policy_slot(semantics c) {
    switch (c) {
      case semantics::allreduce: return policies_[0];
      case semantics::reduce_scatter: return policies_[1];
      case semantics::allgather: return policies_[2];
      case semantics::broadcast: return policies_[3];
      case semantics::reduce: return policies_[4];
      case semantics::group_allreduce: return policies_[5];
      default: break;
    }
    throw invalid_argument("dssync::communicator: rank " + std::to_string(rank()) + ": " + to_string(c) +
                               " is not a collective of the communicator",
                           rank());
  }

  void check_root(const char* what, int root) const {
    if (root < 0 || root >= size())
      throw invalid_argument("dssync::communicator::" + std::string(what) + ": rank " + std::to_string(rank()) +
                                 ": root " + std::to_string(root) + " is not a rank of " + std::to_string(size()),
                             rank());
  }
  void check_length(const char* what, const char* which, std::size_t have, std::size_t want) const {
    if (have != want)
      throw invalid_argument("dssync::communicator::" + std::string(what) + ": rank " + std::to_string(rank()) + ": " +
                                 which + " has " + std::to_string(have) + " elements, expected " + std::to_string(want),
                             rank());
  }
  template <class In, class Out>
  static void copy_into(std::span<In> in, std::span<Out> out) {
    if (!in.empty() && in.data() != out.data()) std::memmove(out.data(), in.data(), in.size_bytes());
  }

  /// Plans collective `c` over `data` and runs it (on the calling thread).
  template <class E, class Op>
  std::shared_ptr<const schedule> collective(semantics c, std::span<E> data, const Op& op, int root,
                                             std::span<const std::size_t> sizes) {
    return collective(call_state{&policy(c, data.size_bytes(), sizeof(E)), iteration_}, c, data, op, root, sizes);
  }

  /// What an asynchronous collective fixes when it is issued: its policy and iteration.
  struct call_state {
    const algorithms::policy_entry* policy;
    std::uint64_t iteration;
  };
  template <class E>
  [[nodiscard]] call_state issue(semantics c, std::span<E> data) const {
    return {&policy(c, data.size_bytes(), sizeof(E)), iteration_};
  }

  template <class E, class Op>
  std::shared_ptr<const schedule> collective(call_state cs, semantics c, std::span<E> data, const Op& op, int root,
                                             std::span<const std::size_t> sizes) {
    return planned_run(c, data, op, [&] {
      return detail::plan_for_entry(*cs.policy, algorithms::topology_ref(topo_),
                                    plan_request{data.size(), cs.iteration, c, root, sizes}, opt_, rank(), cache_);
    });
  }

  /// Plans `policy` at iteration `it` over `data` and runs it; returns the caller's group.
  template <class Policy, class E, class Op>
  std::vector<int> grouped(Policy& policy, std::uint64_t it, std::span<E> data, const Op& op) {
    const auto plan = planned_run(semantics::group_allreduce, data, op, [&] {
      return detail::plan_for(policy, topo_, plan_request{data.size(), it}, opt_, rank(), cache_);
    });
    return plan->expected_contributors(rank());
  }

  /// Runs the plan that `make` returns for collective `c` over `data`, on the calling thread: a planning
  /// error is named with the rank, the collective and the length, and a plan of another collective or
  /// length is refused (a group allreduce accepts an allreduce: one group of all).
  template <class E, class Op, class Make>
  std::shared_ptr<const schedule> planned_run(semantics c, std::span<E> data, const Op& op, Make&& make) {
    static_assert(element<E>, "dssync::communicator: elements must be trivially copyable and mutable");
    detail::check_op<Op, E>();
    const std::string what = c == semantics::group_allreduce ? "group allreduce" : to_string(c);
    std::shared_ptr<const schedule> plan;
    try {
      plan = std::forward<Make>(make)();
    } catch (const invalid_argument& x) {
      throw invalid_argument("dssync::communicator: rank " + std::to_string(rank()) + ": " + what + " of " +
                                 std::to_string(data.size()) + " elements: " + x.what(),
                             rank());
    }
    const bool kind_ok = plan->kind == c || (c == semantics::group_allreduce && plan->kind == semantics::allreduce);
    if (!kind_ok || plan->count != data.size())
      throw invalid_argument("dssync::communicator: rank " + std::to_string(rank()) + ": policy " + plan->policy +
                                 " planned a " + to_string(plan->kind) + " of " + std::to_string(plan->count) +
                                 " elements for a " + what + " of " + std::to_string(data.size()),
                             rank());
    detail::run(*comm_, *plan, data, op, opt_);
    return plan;
  }

  /// Per-tensor codec state, type-erased.
  struct tensor_state_base {
    virtual ~tensor_state_base() = default;
    [[nodiscard]] virtual std::string codec_name() const = 0;
  };
  template <class Codec>
  struct tensor_state final : tensor_state_base {
    explicit tensor_state(const Codec& c) : codec(c) {}
    [[nodiscard]] std::string codec_name() const override { return std::string(Codec::name); }
    Codec codec;
  };

  template <class E, class Codec, class Op>
  void compressed(std::span<E> data, Codec& codec, const Op& op) {
    static_assert(element<E>, "dssync::communicator: elements must be trivially copyable and mutable");
    detail::check_op<Op, E>();
    detail::run_encoded(*comm_, data, codec, op, opt_, cache_);
  }

  template <class E>
  std::vector<std::size_t> gather_v(call_state cs, std::span<const E> mine, std::vector<std::remove_const_t<E>>& out) {
    const auto n = static_cast<std::size_t>(size());
    const auto me = static_cast<std::size_t>(rank());
    std::vector<std::uint64_t> lengths(n, 0);
    lengths[me] = mine.size();
    collective(cs, semantics::allgather, std::span<std::uint64_t>(lengths), detail::copy_only{}, 0, {});
    std::vector<std::size_t> sizes(lengths.begin(), lengths.end());
    std::size_t total = 0, offset = 0;
    for (std::size_t r = 0; r < n; ++r) {
      if (r == me) offset = total;
      total += sizes[r];
    }
    out.resize(total);
    copy_into(mine, std::span<std::remove_const_t<E>>(out).subspan(offset, mine.size()));
    collective(cs, semantics::allgather, std::span<std::remove_const_t<E>>(out), detail::copy_only{}, 0, sizes);
    return sizes;
  }

  // Ordering of blocking and asynchronous collectives: one runs at a time, in issue order.
  struct queue_state {
    std::mutex m;
    std::condition_variable cv;
    std::deque<std::pair<std::function<void()>, std::shared_ptr<request::state>>> jobs;
    bool busy = false;  // a collective is running (on the worker or inline)
    bool stop = false;
    std::thread thread;
  };

  /// Runs `f` now if nothing is pending, else after the pending requests (waiting for it).
  template <class F>
  void serial(F&& f) {
    if (!background_) {
      run_pending(nullptr);
      f();
      return;
    }
    std::unique_lock lk(q_.m);
    if (!q_.jobs.empty() || q_.busy) {
      lk.unlock();
      auto r = enqueue(std::function<void()>(std::forward<F>(f)));
      r.wait();
      return;
    }
    q_.busy = true;
    lk.unlock();
    struct release {
      queue_state& q;
      ~release() {
        {
          std::lock_guard g(q.m);
          q.busy = false;
        }
        q.cv.notify_all();
      }
    } guard{q_};
    f();
  }

  request enqueue(std::function<void()> f) {
    request r;
    r.st_ = std::make_shared<request::state>();
    if (!background_) {
      request::state* me = r.st_.get();
      r.st_->drive = [this, me] { run_pending(me); };
      q_.jobs.emplace_back(std::move(f), r.st_);
      return r;
    }
    {
      std::lock_guard lk(q_.m);
      q_.jobs.emplace_back(std::move(f), r.st_);
      if (!q_.thread.joinable()) q_.thread = std::thread([this] { work(); });
    }
    q_.cv.notify_all();
    return r;
  }

  /// Without a background thread: runs the pending requests in issue order on the calling thread, up to
  /// and including `until` (all of them when null).
  void run_pending(const request::state* until) {
    while (!q_.jobs.empty()) {
      auto [job, st] = std::move(q_.jobs.front());
      q_.jobs.pop_front();
      finish_job(job, *st);
      if (st.get() == until) return;
    }
  }

  static void finish_job(const std::function<void()>& job, request::state& st) {
    std::exception_ptr error;
    try {
      job();
    } catch (...) {
      error = std::current_exception();
    }
    {
      std::lock_guard g(st.m);
      st.done = true;
      st.error = error;
      st.drive = nullptr;
    }
    st.cv.notify_all();
  }

  void work() {
    std::unique_lock lk(q_.m);
    while (true) {
      q_.cv.wait(lk, [&] { return (!q_.jobs.empty() && !q_.busy) || (q_.stop && q_.jobs.empty() && !q_.busy); });
      if (q_.jobs.empty()) return;
      auto [job, st] = std::move(q_.jobs.front());
      q_.jobs.pop_front();
      q_.busy = true;
      lk.unlock();
      finish_job(job, *st);
      lk.lock();
      q_.busy = false;
      q_.cv.notify_all();
    }
  }

  Transport* comm_;
  Topology topo_;
  options opt_;
  std::uint64_t iteration_ = 0;
  bool background_ = true;
  const algorithms::policy_entry* policies_[6] = {};
  bool auto_allreduce_ = false;  // the allreduce policy is "auto" (policies_[0] unused)
  mutable std::mutex auto_m_;    // guards the two below: "auto" may be asked from the caller's and the background thread
  mutable std::shared_ptr<const algorithms::tuning_table> table_;
  mutable std::map<std::pair<std::size_t, std::size_t>, const algorithms::policy_entry*> auto_chosen_;
  detail::plan_cache cache_{64};
  detail::scratch_buffer scratch_;
  std::map<std::string, std::shared_ptr<tensor_state_base>, std::less<>> tensors_;
  queue_state q_;
};

}  // namespace dssync
