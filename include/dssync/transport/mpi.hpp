#pragma once
/// \file
/// `transport::mpi`: the distributed engine. Runs every dssync schedule across processes and machines
/// through MPI (OpenMPI from Debian), with the communicator managed by Boost.MPI.
///
/// Messages are raw bytes (`MPI_BYTE`), never serialized. Sends are `MPI_Isend` straight from the
/// user's buffer; receives land in a pooled staging buffer (one segment each; `options::recv_depth` per
/// step in flight) or, when the executor knows the destination is free, straight in the user's buffer.
/// Tags encode (call, channel, message), so channels and successive collectives never mix.
///
/// Failures. Every wait polls with the executor's deadline (`DSSYNC_TIMEOUT`), so a rank that dies or
/// never calls gives `timeout_error` instead of a hang. After the deadline the stalled ranks run a short
/// census among themselves, and the error names the ranks that did not answer: the dead or missing ones.
/// OpenMPI 4.1 has no ULFM: when a process really exits, mpirun's default error handler tears the whole
/// job down (every process is killed and mpirun reports the dead process) before dssync can report it.
/// A rank that stays alive but stops taking part (hangs, or skips the collective) is what the timeout
/// and census catch. After such an error the communicator's state is undefined, as in MPI: finish or
/// abort the job, or build a new communicator over the survivors with `mpi::create_group`
/// (MPI_Comm_create_group, collective over the survivors only) and re-plan for them, e.g. with
/// `algorithms::bcube::plan_without`.

#include <mpi.h>

#include <boost/mpi/communicator.hpp>
#include <boost/mpi/environment.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "dssync/core/error.hpp"
#include "dssync/core/transport.hpp"

namespace dssync::transport {

namespace detail {

/// Pool of staging buffers, reused across segments and calls. Aligned for any element type.
class staging_pool {
 public:
  struct buffer {
    std::byte* data = nullptr;
    std::size_t capacity = 0;
  };
  buffer acquire(std::size_t bytes) {
    for (std::size_t i = 0; i < free_.size(); ++i)
      if (free_[i].capacity >= bytes) {
        buffer b = free_[i];
        free_.erase(free_.begin() + static_cast<std::ptrdiff_t>(i));
        return b;
      }
    const std::size_t cap = bytes < 64 ? 64 : bytes;
    auto* p = static_cast<std::byte*>(::operator new(cap, std::align_val_t{64}));
    ++allocated_;
    bytes_ += cap;
    return {p, cap};
  }
  void release(buffer b) {
    if (b.data != nullptr) free_.push_back(b);
  }
  /// Bytes held by the pool (in use or free): the transport's extra memory.
  [[nodiscard]] std::size_t bytes() const noexcept { return bytes_; }
  staging_pool() = default;
  staging_pool(const staging_pool&) = delete;
  staging_pool& operator=(const staging_pool&) = delete;
  ~staging_pool() {
    for (auto& b : free_) ::operator delete(b.data, std::align_val_t{64});
  }

 private:
  std::vector<buffer> free_;
  std::size_t allocated_ = 0, bytes_ = 0;
};

inline void check_mpi(int rc, const char* what, int rank) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  throw error(std::string("dssync mpi: rank ") + std::to_string(rank) + ": " + what + " failed: " + std::string(msg, static_cast<std::size_t>(len)), rank);
}

}  // namespace detail

/// An MPI communicator as a dssync transport; models `dssync::concepts::transport`.
///
/// Cheap to copy? No: it owns its staging pool and call counter. Make one per communicator and keep it.
/// Calls from one thread per rank (MPI_THREAD_FUNNELED suffices).
class mpi {
 public:
  /// A pending `MPI_Isend`.
  struct send_request {
    MPI_Request req = MPI_REQUEST_NULL;
  };
  /// A pending `MPI_Irecv`, into staging or straight into the destination.
  struct recv_request {
    MPI_Request req = MPI_REQUEST_NULL;
    int peer = -1;
    message_key key{};
    std::size_t bytes = 0;
    detail::staging_pool::buffer staging{};
    std::byte* into = nullptr;  // direct destination, if any
  };
  using token = std::uint64_t;
  /// Stalled ranks run a census after the deadline to name the unresponsive ones (see file comment).
  static constexpr bool census = true;

  /// Wraps a Boost.MPI communicator. Collective: dssync works on its own duplicate (MPI_Comm_dup), so its
  /// tags never meet the application's messages, and sets MPI_ERRORS_RETURN on that duplicate so that
  /// MPI errors become dssync exceptions instead of aborting the job. (It keeps a second duplicate that
  /// carries no data, the parent of `create_group`.)
  explicit mpi(const boost::mpi::communicator& comm) : comm_(comm, boost::mpi::comm_duplicate) { init(); }
  /// Wraps a raw `MPI_Comm` (not taken over: dssync duplicates it), for codes that do not use Boost.MPI.
  /// Collective, like the other constructor.
  explicit mpi(MPI_Comm raw) : comm_(raw, boost::mpi::comm_duplicate) { init(); }
  mpi(const mpi&) = delete;
  mpi& operator=(const mpi&) = delete;
  mpi(mpi&&) = delete;

  [[nodiscard]] int rank() const noexcept { return rank_; }
  [[nodiscard]] int size() const noexcept { return size_; }
  [[nodiscard]] std::uint32_t next_call() noexcept { return calls_++; }
  /// The Boost.MPI communicator.
  [[nodiscard]] const boost::mpi::communicator& communicator() const noexcept { return comm_; }
  /// The raw `MPI_Comm`, the escape hatch.
  [[nodiscard]] MPI_Comm native() const noexcept { return static_cast<MPI_Comm>(comm_); }

  /// A sub-communicator of the ranks that pass the same `color`, ordered by `key` (MPI_Comm_split). Use
  /// it for groups (DS-Sync) and hierarchical schedules. Collective over this communicator.
  [[nodiscard]] std::unique_ptr<mpi> split(int color, int key) const {
    return std::make_unique<mpi>(comm_.split(color, key));
  }
  /// As `split(color, rank())`.
  [[nodiscard]] std::unique_ptr<mpi> split(int color) const { return split(color, rank_); }

  /// A communicator over `ranks` of this one, renumbered in the order given: `ranks[i]` becomes rank i
  /// of the new communicator. Wraps MPI_Comm_create_group (MPI-3), which is collective over the listed
  /// ranks **only**: the other ranks do not call it, so a rank that stopped taking part need not (and
  /// cannot) join. Every listed rank must call it with the same list and the same `tag`; concurrent calls
  /// over overlapping lists must use different tags. Unlike `split`, it works after a collective on this
  /// communicator failed.
  ///
  /// This is how survivors go on after a failure: catch the `timeout_error` (its census names the ranks
  /// that did not answer), call `create_group(survivors)` on every survivor, re-plan for them (e.g.
  /// `algorithms::bcube{}.plan_without(topo, failed, {count})`, whose rank i is the i-th survivor in
  /// increasing original rank) and run `dssync::synchronize(*sub, plan, data)`.
  ///
  /// What can be recovered from. OpenMPI 4.1 has no ULFM (User-Level Failure Mitigation): a process that
  /// really exits (crash, `exit()`, a signal) makes mpiexec abort the whole job, so the survivors are
  /// killed, not told, and nothing can go on. Only a rank that stays alive but stops taking part (it
  /// hangs, or leaves the collective) can be worked around: the executor's deadline (`options::timeout`,
  /// `DSSYNC_TIMEOUT`) turns the wait into `timeout_error`, and the failure census names the rank. The
  /// stopped rank must not be left blocked in a collective the survivors skip: it may finalize normally
  /// once nothing it calls needs the survivors (point-to-point, or a world barrier every rank reaches).
  ///
  /// Implementation note: OpenMPI builds the new communicator with point-to-point messages under `tag`
  /// on the parent communicator, so the parent here is a private duplicate that carries no data (made
  /// with this object): messages a failed collective left behind on the data communicator cannot match
  /// them. The new communicator is adopted as it is (not duplicated again); it gets MPI_ERRORS_RETURN.
  ///
  /// \throws invalid_argument, before any communication, naming this rank and the value, if a listed
  ///   rank is out of range or listed twice, if the caller is not listed, or if `tag` is not in
  ///   0..MPI_TAG_UB. \throws error if MPI reports a failure.
  [[nodiscard]] std::unique_ptr<mpi> create_group(std::span<const int> ranks, int tag = 0) const {
    const std::string who = "dssync mpi: rank " + std::to_string(rank_) + ": create_group: ";
    if (tag < 0 || tag > tag_ub_)
      throw invalid_argument(who + "tag " + std::to_string(tag) + " is not in 0.." + std::to_string(tag_ub_) +
                                 " (MPI_TAG_UB)",
                             rank_);
    std::vector<int> where(static_cast<std::size_t>(size_), -1);
    bool listed = false;
    for (std::size_t i = 0; i < ranks.size(); ++i) {
      const int r = ranks[i];
      if (r < 0 || r >= size_)
        throw invalid_argument(who + "ranks[" + std::to_string(i) + "] = " + std::to_string(r) +
                                   " is not a rank of this communicator (0.." + std::to_string(size_ - 1) + ")",
                               rank_);
      int& seen = where[static_cast<std::size_t>(r)];
      if (seen >= 0)
        throw invalid_argument(who + "rank " + std::to_string(r) + " is listed twice (ranks[" + std::to_string(seen) +
                                   "] and ranks[" + std::to_string(i) + "])",
                               rank_);
      seen = static_cast<int>(i);
      listed = listed || r == rank_;
    }
    if (!listed) {
      std::string list;
      for (std::size_t i = 0; i < ranks.size(); ++i) list += (i ? ", " : "") + std::to_string(ranks[i]);
      throw invalid_argument(who + "the caller, rank " + std::to_string(rank_) + ", is not among the listed ranks {" +
                                 list + "}: only the listed ranks call it",
                             rank_);
    }
    const MPI_Comm parent = static_cast<MPI_Comm>(control_);
    MPI_Group all = MPI_GROUP_NULL, sub = MPI_GROUP_NULL;
    struct groups_guard {
      MPI_Group* a;
      MPI_Group* b;
      ~groups_guard() {
        if (*a != MPI_GROUP_NULL) MPI_Group_free(a);
        if (*b != MPI_GROUP_NULL) MPI_Group_free(b);
      }
    } guard{&all, &sub};
    detail::check_mpi(MPI_Comm_group(parent, &all), "MPI_Comm_group", rank_);
    detail::check_mpi(MPI_Group_incl(all, static_cast<int>(ranks.size()), ranks.data(), &sub), "MPI_Group_incl", rank_);
    MPI_Comm created = MPI_COMM_NULL;
    detail::check_mpi(MPI_Comm_create_group(parent, sub, tag, &created), "MPI_Comm_create_group", rank_);
    if (created == MPI_COMM_NULL)
      throw error(who + "MPI_Comm_create_group returned MPI_COMM_NULL for a listed rank", rank_);
    return std::unique_ptr<mpi>(
        new mpi(boost::mpi::communicator(created, boost::mpi::comm_take_ownership), adopt_t{}));
  }

  /// The MPI tag of `k`: 10 bits of call, 10 of channel, 10 of message ordinal. Messages that could
  /// share a tag are never in flight together (the executor keeps fewer than 1024 steps in flight).
  [[nodiscard]] int tag(const message_key& k) const noexcept {
    std::uint32_t ch = k.channel == agreement_channel ? 1023u : k.channel == census_channel ? 1022u : k.channel % 1022u;
    const std::uint64_t t = (static_cast<std::uint64_t>(k.call & 1023u) << 20) | (std::uint64_t{ch} << 10) | (k.ordinal & 1023u);
    return static_cast<int>(t % (static_cast<std::uint64_t>(tag_ub_) + 1));
  }

  send_request isend(int peer, message_key key, std::span<const std::byte> bytes) {
    send_request r;
    detail::check_mpi(MPI_Isend(bytes.data(), static_cast<int>(bytes.size()), MPI_BYTE, peer, tag(key), native(), &r.req),
                      "MPI_Isend", rank_);
    ++epoch_;
    return r;
  }

  bool test(send_request& r) {
    if (r.req == MPI_REQUEST_NULL) return true;
    int flag = 0;
    detail::check_mpi(MPI_Test(&r.req, &flag, MPI_STATUS_IGNORE), "MPI_Test", rank_);
    if (flag) ++epoch_;
    return flag != 0;
  }

  recv_request post_recv(int peer, message_key key, std::size_t bytes) {
    recv_request r;
    r.peer = peer;
    r.key = key;
    r.bytes = bytes;
    r.staging = pool_.acquire(bytes);
    post(r, r.staging.data);
    return r;
  }

  /// Like `post_recv`, but the message lands straight in `dst` (which the caller must not touch until the
  /// request is consumed or cancelled): no staging copy.
  recv_request post_recv_into(int peer, message_key key, std::span<std::byte> dst) {
    recv_request r;
    r.peer = peer;
    r.key = key;
    r.bytes = dst.size();
    r.into = dst.data();
    post(r, dst.data());
    return r;
  }

  template <class F>
  bool try_consume(recv_request& r, F&& f) {
    int flag = 0;
    MPI_Status st;
    if (const int rc = MPI_Test(&r.req, &flag, &st); rc != MPI_SUCCESS) {
      int cls = MPI_ERR_OTHER;
      MPI_Error_class(rc, &cls);
      if (cls == MPI_ERR_TRUNCATE) {  // the request is complete; the message was longer than announced
        r.req = MPI_REQUEST_NULL;
        pool_.release(r.staging);
        r.staging = {};
        ++epoch_;
        throw malformed_payload("dssync mpi: rank " + std::to_string(rank_) + " expected " + std::to_string(r.bytes) +
                                    " bytes from rank " + std::to_string(r.peer) + " (call " + std::to_string(r.key.call) +
                                    ", channel " + std::to_string(r.key.channel) + ", message " +
                                    std::to_string(r.key.ordinal) + ") but the message is longer (MPI_ERR_TRUNCATE)",
                                rank_);
      }
      detail::check_mpi(rc, "MPI_Test", rank_);
    }
    if (!flag) return false;
    ++epoch_;
    int count = 0;
    MPI_Get_count(&st, MPI_BYTE, &count);
    std::byte* data = r.into ? r.into : r.staging.data;
    struct release {
      mpi* self;
      recv_request* r;
      ~release() {
        self->pool_.release(r->staging);
        r->staging = {};
      }
    } rel{this, &r};
    if (static_cast<std::size_t>(count) != r.bytes)
      throw malformed_payload("dssync mpi: rank " + std::to_string(rank_) + " expected " + std::to_string(r.bytes) +
                                  " bytes from rank " + std::to_string(r.peer) + " (call " + std::to_string(r.key.call) +
                                  ", channel " + std::to_string(r.key.channel) + ", message " +
                                  std::to_string(r.key.ordinal) + ") but the message has " + std::to_string(count),
                              rank_);
    f(std::span<const std::byte>(data, r.bytes));
    return true;
  }

  /// Withdraws a send. OpenMPI cannot cancel a send reliably; a send that does not complete within a
  /// short grace is released (MPI_Request_free) and may still complete later.
  void cancel(send_request& r) noexcept {
    if (r.req == MPI_REQUEST_NULL) return;
    MPI_Cancel(&r.req);
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(50);
    int flag = 0;
    while (!flag && std::chrono::steady_clock::now() < until) MPI_Test(&r.req, &flag, MPI_STATUS_IGNORE);
    if (!flag) MPI_Request_free(&r.req);
    r.req = MPI_REQUEST_NULL;
  }

  /// Withdraws a receive (MPI_Cancel + MPI_Wait: cancelling a receive is reliable).
  void cancel(recv_request& r) noexcept {
    if (r.req != MPI_REQUEST_NULL) {
      MPI_Cancel(&r.req);
      MPI_Wait(&r.req, MPI_STATUS_IGNORE);
    }
    pool_.release(r.staging);
    r.staging = {};
  }

  [[nodiscard]] token progress_token() const noexcept { return epoch_; }
  /// MPI progresses inside MPI_Test; waiting is polling. Yield so oversubscribed ranks share cores.
  void wait_progress(token, deadline_t deadline) const {
    if (std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  }
  /// No ULFM in OpenMPI 4.1: failures surface as timeouts (plus the census), never as known failures.
  [[nodiscard]] bool peer_failed(int) const noexcept { return false; }

  /// Fault injection for tests: this rank stops taking part when it reaches step `step` of its next
  /// collective (it raises `injected_fault` and its process stays alive).
  void inject_fault(std::size_t step) noexcept { fail_at_ = step; }
  void fault_point(std::size_t step) {
    if (step != fail_at_) return;
    fail_at_ = static_cast<std::size_t>(-1);
    throw injected_fault("rank " + std::to_string(rank_) + " stopped by fault injection at step " + std::to_string(step), rank_);
  }

  /// Bytes of staging memory this transport holds.
  [[nodiscard]] std::size_t staging_bytes() const noexcept { return pool_.bytes(); }

 private:
  struct adopt_t {};
  /// Takes `owned` as it is (no duplicate): for communicators dssync created itself.
  mpi(boost::mpi::communicator owned, adopt_t) : comm_(std::move(owned)) { init(); }

  void init() {
    MPI_Comm_set_errhandler(native(), MPI_ERRORS_RETURN);
    control_ = boost::mpi::communicator(comm_, boost::mpi::comm_duplicate);
    MPI_Comm_set_errhandler(static_cast<MPI_Comm>(control_), MPI_ERRORS_RETURN);
    rank_ = comm_.rank();
    size_ = comm_.size();
    int* ub = nullptr;
    int flag = 0;
    MPI_Comm_get_attr(native(), MPI_TAG_UB, &ub, &flag);
    tag_ub_ = (flag && ub) ? *ub : 32767;
  }
  void post(recv_request& r, std::byte* into) {
    detail::check_mpi(MPI_Irecv(into, static_cast<int>(r.bytes), MPI_BYTE, r.peer, tag(r.key), native(), &r.req),
                      "MPI_Irecv", rank_);
  }

  boost::mpi::communicator comm_;
  /// A second duplicate that carries no data: the parent of `create_group` (see there).
  boost::mpi::communicator control_;
  int rank_ = 0, size_ = 1, tag_ub_ = 32767;
  std::uint32_t calls_ = 0;
  std::uint64_t epoch_ = 0;
  std::size_t fail_at_ = static_cast<std::size_t>(-1);
  detail::staging_pool pool_;
};

static_assert(concepts::transport<mpi>);

}  // namespace dssync::transport
