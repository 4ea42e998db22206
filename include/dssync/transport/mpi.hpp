#pragma once
/// \file
/// `transport::mpi`: the distributed engine. Runs every dssync schedule across processes and machines
/// through MPI (OpenMPI from Debian), with the communicator managed by Boost.MPI.
///
/// Messages are raw bytes (`MPI_BYTE`), never serialized. Sends are `MPI_Isend` straight from the caller's
/// buffer by default (`send_mode::zero_copy`), as NCCL and MPI do: a send that is withdrawn (`cancel`, on an
/// error) and that MPI cannot cancel stays pending, parked by the transport (never `MPI_Request_free`d),
/// and MPI may still read that buffer until it completes (`withdrawn().in_flight` counts them), just as
/// MPI forbids reusing the buffer of an unfinished `MPI_Isend`. With `send_mode::copy` every send is first
/// copied into a pooled staging buffer that the transport owns and MPI reads that copy: the caller may
/// overwrite or free its buffer as soon as `isend` returns, and a withdrawn send that MPI still delivers
/// carries the bytes of the time of `isend`. The cost, measured at 2 ranks over shared memory: one `memcpy`
/// per send segment (+27 % time at 64 MiB) and staging memory for every send in flight (68 MiB at 64 MiB
/// against 5.3 MiB), see bench/README.md.
/// Receives land in a pooled staging buffer (one segment each; `options::recv_depth` per step in flight)
/// or, when the executor knows the destination is free, straight in the user's buffer.
/// Tags encode (call, channel, message) without folding (`tag_map`), so channels and successive
/// collectives never mix; a key that does not fit below `MPI_TAG_UB` is refused by name.
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

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
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
  /// Frees a buffer this pool allocated, bypassing the pool (for buffers that outlive it).
  static void deallocate(std::byte* p) noexcept {
    if (p != nullptr) ::operator delete(p, std::align_val_t{64});
  }
  /// Bytes held by the pool (in use or free): the transport's extra memory.
  [[nodiscard]] std::size_t bytes() const noexcept { return bytes_; }
  staging_pool() = default;
  staging_pool(const staging_pool&) = delete;
  staging_pool& operator=(const staging_pool&) = delete;
  ~staging_pool() {
    for (auto& b : free_) deallocate(b.data);
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

/// What became of withdrawn sends (`mpi::cancel`): how many MPI still has in flight (their staging copy is
/// kept alive), how many it finished (the receiver gets, or got, the bytes of the time of `isend`) and how
/// many it really cancelled (never delivered).
struct withdrawn_sends {
  std::size_t in_flight = 0;
  std::size_t delivered = 0;
  std::size_t cancelled = 0;
};

inline bool mpi_finalized() noexcept {
  int fin = 0;
  MPI_Finalized(&fin);
  return fin != 0;
}

/// Counts the outcome of a completed withdrawn send.
inline void count_outcome(withdrawn_sends& w, MPI_Status& st) noexcept {
  int cancelled = 0;
  MPI_Test_cancelled(&st, &cancelled);
  ++(cancelled ? w.cancelled : w.delivered);
}

/// Withdrawn sends whose transport was destroyed before MPI finished them. Process-wide: their staging
/// copy must live until MPI is done with it. Tested (and freed when finished) whenever a transport is
/// made or destroyed and by `mpi::orphaned_sends()`; whatever is left at exit is freed then if MPI has
/// been finalized (nothing reads it any more), and otherwise left to the operating system.
class orphaned_sends {
 public:
  static orphaned_sends& instance() {
    static orphaned_sends o;
    return o;
  }
  /// Takes over a pending request and its staging copy. Never fails: without memory to track it, the
  /// request is released (MPI_Request_free) and the copy deliberately leaked, which is still safe.
  void adopt(MPI_Request req, std::byte* data) noexcept {
    const std::lock_guard<std::mutex> lock(m_);
    try {
      list_.push_back({req, data});
      ++counts_.in_flight;
      size_.store(list_.size(), std::memory_order_relaxed);
    } catch (...) {
      MPI_Request_free(&req);
    }
  }
  /// Tests every orphan once and frees those MPI finished; returns the counts after that.
  withdrawn_sends reap() noexcept {
    if (size_.load(std::memory_order_relaxed) == 0 || mpi_finalized()) {
      const std::lock_guard<std::mutex> lock(m_);
      return counts_;
    }
    const std::lock_guard<std::mutex> lock(m_);
    for (std::size_t i = 0; i < list_.size();) {
      int flag = 0;
      MPI_Status st;
      if (MPI_Test(&list_[i].req, &flag, &st) == MPI_SUCCESS && flag) {
        count_outcome(counts_, st);
        --counts_.in_flight;
        staging_pool::deallocate(list_[i].data);
        list_[i] = list_.back();
        list_.pop_back();
      } else {
        ++i;
      }
    }
    size_.store(list_.size(), std::memory_order_relaxed);
    return counts_;
  }
  orphaned_sends(const orphaned_sends&) = delete;
  orphaned_sends& operator=(const orphaned_sends&) = delete;
  ~orphaned_sends() {
    if (!mpi_finalized()) return;  // MPI may still read them until it is finalized: leave them
    for (auto& e : list_) staging_pool::deallocate(e.data);
  }

 private:
  orphaned_sends() = default;
  struct entry {
    MPI_Request req;
    std::byte* data;
  };
  std::mutex m_;
  std::vector<entry> list_;
  std::atomic<std::size_t> size_{0};
  withdrawn_sends counts_{};
};

}  // namespace detail

/// An MPI communicator as a dssync transport; models `dssync::concepts::transport`.
///
/// Cheap to copy? No: it owns its staging pool and call counter. Make one per communicator and keep it.
/// Calls from one thread per rank (MPI_THREAD_FUNNELED suffices; see `serialized_threads`).
class mpi {
 public:
  /// A pending `MPI_Isend`, from the transport's staging copy of the caller's bytes.
  struct send_request {
    MPI_Request req = MPI_REQUEST_NULL;
    detail::staging_pool::buffer staging{};
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
  using withdrawn_sends = detail::withdrawn_sends;

  /// How message keys become MPI tags. A tag has `bits()` bits, the most that stay within `MPI_TAG_UB`
  /// (at most 31), cut into three fields: from the top, `call_bits()` of the call number, `channel_bits()`
  /// of the channel and `ordinal_bits()` of the message ordinal. Each field first gets a minimum (3, 4 and
  /// 8 bits: the 15 bits of the 32767 that MPI guarantees); the bits beyond go first to the ordinal (up to
  /// 17), then to the channel (up to 8), then to the call (up to 6). With OpenMPI's MPI_TAG_UB of 2^31-1
  /// that is 6 + 8 + 17: 254 channels and 131072 messages per peer, channel and call.
  ///
  /// Channel and ordinal are encoded exactly: a channel beyond `channels()` (other than the agreement and
  /// census channels, which have codes of their own) or an ordinal beyond `messages()` is refused with
  /// `invalid_argument` naming the rank, the key and MPI_TAG_UB, never folded onto another key's tag. So
  /// two keys of one call always get different tags. The call number enters modulo `calls()`: keys of
  /// calls that many apart share tags, which is safe because every rank runs its collectives on a
  /// communicator one after the other (all receives of a call complete before the next call starts) and
  /// MPI matches the messages of one (sender, tag) in the order they were sent; keys of up to `calls()`
  /// consecutive calls in flight at once are all distinct. (After a failed call the communicator's state
  /// is undefined anyway.)
  class tag_map {
   public:
    /// The smallest MPI_TAG_UB the MPI standard allows.
    static constexpr int min_tag_ub = 32767;

    /// The layout for `tag_ub` (the communicator's MPI_TAG_UB); `rank` is named in errors.
    /// \throws invalid_argument naming the rank and MPI_TAG_UB if `tag_ub` < 32767.
    tag_map(int tag_ub, int rank) : tag_ub_(tag_ub), rank_(rank) {
      if (tag_ub < min_tag_ub)
        throw invalid_argument("dssync mpi: rank " + std::to_string(rank) + ": MPI_TAG_UB is " + std::to_string(tag_ub) +
                                   ", below the " + std::to_string(min_tag_ub) +
                                   " that the MPI standard guarantees; dssync needs 15 tag bits",
                               rank);
      int bits = 15;
      while (bits < 31 && ((std::int64_t{1} << (bits + 1)) - 1) <= tag_ub) ++bits;
      int extra = bits - 15;
      const auto take = [&extra](int most) {
        const int t = extra < most ? extra : most;
        extra -= t;
        return t;
      };
      ordinal_bits_ = 8 + take(9);
      channel_bits_ = 4 + take(4);
      call_bits_ = 3 + take(3);
    }

    /// The tag of `k`, in 0..2^bits()-1 (within 0..MPI_TAG_UB).
    /// \throws invalid_argument, naming the rank, the key and MPI_TAG_UB, if `k` cannot be represented.
    [[nodiscard]] int operator()(const message_key& k) const {
      const std::uint32_t codes = std::uint32_t{1} << channel_bits_;
      std::uint32_t ch = 0;
      if (k.channel == agreement_channel)
        ch = codes - 1;
      else if (k.channel == census_channel)
        ch = codes - 2;
      else if (k.channel < channels())
        ch = k.channel;
      else
        throw unrepresentable(k, "channel " + std::to_string(k.channel) + " is beyond the " + std::to_string(channels()) +
                                     " channels (0.." + std::to_string(channels() - 1) + ")");
      if (k.ordinal >= messages())
        throw unrepresentable(k, "message " + std::to_string(k.ordinal) + " is beyond the " +
                                     std::to_string(messages()) + " messages per peer, channel and call (0.." +
                                     std::to_string(messages() - 1) + ")");
      const std::uint32_t call = k.call & (calls() - 1);
      return static_cast<int>((call << (channel_bits_ + ordinal_bits_)) | (ch << ordinal_bits_) | k.ordinal);
    }

    [[nodiscard]] int tag_ub() const noexcept { return tag_ub_; }
    [[nodiscard]] int bits() const noexcept { return call_bits_ + channel_bits_ + ordinal_bits_; }
    [[nodiscard]] int call_bits() const noexcept { return call_bits_; }
    [[nodiscard]] int channel_bits() const noexcept { return channel_bits_; }
    [[nodiscard]] int ordinal_bits() const noexcept { return ordinal_bits_; }
    /// Calls whose keys are distinct: the call number enters modulo this.
    [[nodiscard]] std::uint32_t calls() const noexcept { return std::uint32_t{1} << call_bits_; }
    /// Channels 0..channels()-1 are representable, plus `agreement_channel` and `census_channel`.
    [[nodiscard]] std::uint32_t channels() const noexcept { return (std::uint32_t{1} << channel_bits_) - 2; }
    /// Ordinals 0..messages()-1 are representable.
    [[nodiscard]] std::uint32_t messages() const noexcept { return std::uint32_t{1} << ordinal_bits_; }

   private:
    [[nodiscard]] invalid_argument unrepresentable(const message_key& k, const std::string& why) const {
      return invalid_argument("dssync mpi: rank " + std::to_string(rank_) + ": message key (call " +
                                  std::to_string(k.call) + ", channel " + std::to_string(k.channel) + ", message " +
                                  std::to_string(k.ordinal) + ") has no MPI tag: " + why + " that MPI_TAG_UB = " +
                                  std::to_string(tag_ub_) + " leaves room for (" + std::to_string(call_bits_) +
                                  " bits of call, " + std::to_string(channel_bits_) + " of channel, " +
                                  std::to_string(ordinal_bits_) + " of message)",
                              rank_);
    }
    int tag_ub_, rank_;
    int call_bits_ = 3, channel_bits_ = 4, ordinal_bits_ = 8;
  };

  /// Stalled ranks run a census after the deadline to name the unresponsive ones (see file comment).
  static constexpr bool census = true;

  /// Where sends are read from (see the file comment): the caller's buffer, or a transport-owned copy.
  enum class send_mode : std::uint8_t {
    zero_copy,  ///< `MPI_Isend` from the caller's buffer; a withdrawn unfinished send may still read it
    copy,       ///< `MPI_Isend` from a staging copy; the caller's buffer is free when `isend` returns
  };

  /// Wraps a Boost.MPI communicator. Collective: dssync works on its own duplicate (MPI_Comm_dup), so its
  /// tags never meet the application's messages, and sets MPI_ERRORS_RETURN on that duplicate so that
  /// MPI errors become dssync exceptions instead of aborting the job. (It keeps a second duplicate that
  /// carries no data, the parent of `create_group`.)
  explicit mpi(const boost::mpi::communicator& comm, send_mode mode = send_mode::zero_copy)
      : comm_(comm, boost::mpi::comm_duplicate), mode_(mode) {
    init();
  }
  /// Wraps a raw `MPI_Comm` (not taken over: dssync duplicates it), for codes that do not use Boost.MPI.
  /// Collective, like the other constructor.
  explicit mpi(MPI_Comm raw, send_mode mode = send_mode::zero_copy)
      : comm_(raw, boost::mpi::comm_duplicate), mode_(mode) {
    init();
  }
  /// Where this transport's sends are read from.
  [[nodiscard]] send_mode mode() const noexcept { return mode_; }
  mpi(const mpi&) = delete;
  mpi& operator=(const mpi&) = delete;
  mpi(mpi&&) = delete;
  /// Withdrawn sends MPI has not finished yet keep their staging copy: it passes to a process-wide list
  /// (`orphaned_sends()`) that frees each copy once MPI is done with it.
  ~mpi() {
    if (detail::mpi_finalized()) {  // nothing reads the copies any more
      for (auto& w : withdrawn_) pool_.release(w.staging);
      return;
    }
    reap_withdrawn();
    auto& orphans = detail::orphaned_sends::instance();
    for (auto& w : withdrawn_) orphans.adopt(w.req, w.staging.data);
    (void)orphans.reap();
  }

  /// The agreement exchange runs before the data, not overlapped with it (see `synchronize`): after a
  /// mismatch, a data send posted early would stay unmatched, and MPI cannot reliably withdraw it.
  static constexpr bool overlap_agreement = false;

  [[nodiscard]] int rank() const noexcept { return rank_; }
  [[nodiscard]] int size() const noexcept { return size_; }
  /// Whether another thread may call this transport while the calling thread waits
  /// (`MPI_Query_thread` is at least MPI_THREAD_SERIALIZED). A `dssync::communicator` runs its `_async`
  /// collectives on a background thread only then; under MPI_THREAD_FUNNELED they run on the caller's
  /// thread, in `wait()`, `test()` or the next blocking call.
  [[nodiscard]] static bool serialized_threads() noexcept {
    int provided = MPI_THREAD_SINGLE;
    if (MPI_Query_thread(&provided) != MPI_SUCCESS) return false;
    return provided >= MPI_THREAD_SERIALIZED;
  }
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
        new mpi(boost::mpi::communicator(created, boost::mpi::comm_take_ownership), adopt_t{}, mode_));
  }

  /// The key-to-tag mapping of this communicator, read from its MPI_TAG_UB at construction.
  [[nodiscard]] const tag_map& tags() const noexcept { return tags_; }
  /// The MPI tag of `k` (see `tag_map`). \throws invalid_argument if `k` has none.
  [[nodiscard]] int tag(const message_key& k) const { return tags_(k); }

  /// Sends `bytes` to `peer`: from the caller's buffer (`send_mode::zero_copy`, which must then stay valid
  /// until the send completes or, once withdrawn, until `withdrawn().in_flight` no longer counts it), or
  /// from a staging copy (`send_mode::copy`: the caller's buffer is free again on return).
  /// \throws invalid_argument, before anything is posted, if `key` has no MPI tag (see `tag_map`).
  send_request isend(int peer, message_key key, std::span<const std::byte> bytes) {
    const int t = tag(key);
    if (!withdrawn_.empty()) reap_withdrawn();
    send_request r;
    const void* from = bytes.data();
    if (mode_ == send_mode::copy && !bytes.empty()) {
      r.staging = pool_.acquire(bytes.size());
      std::memcpy(r.staging.data, bytes.data(), bytes.size());
      from = r.staging.data;
    }
    if (const int rc = MPI_Isend(from, static_cast<int>(bytes.size()), MPI_BYTE, peer, t, native(), &r.req);
        rc != MPI_SUCCESS) {
      pool_.release(r.staging);
      detail::check_mpi(rc, "MPI_Isend", rank_);
    }
    ++epoch_;
    return r;
  }

  bool test(send_request& r) {
    if (r.req == MPI_REQUEST_NULL) return true;
    int flag = 0;
    detail::check_mpi(MPI_Test(&r.req, &flag, MPI_STATUS_IGNORE), "MPI_Test", rank_);
    if (flag) {
      pool_.release(r.staging);
      r.staging = {};
      ++epoch_;
    }
    return flag != 0;
  }

  /// \throws invalid_argument, before anything is posted, if `key` has no MPI tag (see `tag_map`).
  recv_request post_recv(int peer, message_key key, std::size_t bytes) {
    recv_request r;
    r.peer = peer;
    r.key = key;
    r.bytes = bytes;
    const int t = tag(key);
    r.staging = pool_.acquire(bytes);
    try {
      post(r, r.staging.data, t);
    } catch (...) {
      pool_.release(r.staging);
      throw;
    }
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
    post(r, dst.data(), tag(key));
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

  /// Withdraws a send. No peer ever reads the caller's buffer after `isend` returned (MPI reads the
  /// transport's staging copy), so the caller may reuse or free it whatever happens here. MPI_Cancel is
  /// asked to cancel the send, but OpenMPI cannot cancel sends: a send still pending is kept, with its
  /// staging copy, in a list of withdrawn sends that later calls (`isend`, `post_recv`, `cancel`,
  /// `wait_progress`, `withdrawn()`) test and that frees each copy once MPI finished it. Such a send may
  /// still be delivered, with the bytes of the time of `isend`. The memory this keeps is bounded by the
  /// bytes of the sends in flight when they were withdrawn; sends to a peer that never receives keep
  /// theirs until this transport is destroyed, and then until MPI finishes them or the process ends
  /// (`orphaned_sends()`).
  void cancel(send_request& r) noexcept {
    if (r.req == MPI_REQUEST_NULL) {
      pool_.release(r.staging);
      r.staging = {};
      return;
    }
    MPI_Cancel(&r.req);
    int flag = 0;
    MPI_Status st;
    if (MPI_Test(&r.req, &flag, &st) != MPI_SUCCESS) flag = 0;
    if (flag) {
      detail::count_outcome(withdrawn_counts_, st);
      pool_.release(r.staging);
    } else {
      try {
        withdrawn_.push_back({r.req, r.staging});
        ++withdrawn_counts_.in_flight;
      } catch (...) {
        // No memory to track it: let MPI free the request when it is done and leak the copy, which
        // keeps the promise (nobody frees what MPI may still read).
        MPI_Request_free(&r.req);
      }
    }
    r.req = MPI_REQUEST_NULL;
    r.staging = {};
    reap_withdrawn();
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
  /// Also tests the withdrawn sends (see `cancel`).
  void wait_progress(token, deadline_t deadline) {
    if (!withdrawn_.empty()) reap_withdrawn();
    if (std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  }

  /// This transport's withdrawn sends (see `cancel`), after testing those still in flight once.
  withdrawn_sends withdrawn() noexcept {
    reap_withdrawn();
    return withdrawn_counts_;
  }
  /// The withdrawn sends of destroyed transports, process-wide, after testing those in flight once.
  static withdrawn_sends orphaned_sends() noexcept { return detail::orphaned_sends::instance().reap(); }
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

  /// Bytes of staging memory this transport holds: the pool of send and receive copies, which grows to
  /// the most bytes in flight at once (posted and not finished sends, including withdrawn ones, plus
  /// announced receives) and is reused from then on.
  [[nodiscard]] std::size_t staging_bytes() const noexcept { return pool_.bytes(); }

 private:
  struct adopt_t {};
  /// Takes `owned` as it is (no duplicate): for communicators dssync created itself.
  mpi(boost::mpi::communicator owned, adopt_t, send_mode mode) : comm_(std::move(owned)), mode_(mode) { init(); }

  void init() {
    MPI_Comm_set_errhandler(native(), MPI_ERRORS_RETURN);
    control_ = boost::mpi::communicator(comm_, boost::mpi::comm_duplicate);
    MPI_Comm_set_errhandler(static_cast<MPI_Comm>(control_), MPI_ERRORS_RETURN);
    rank_ = comm_.rank();
    size_ = comm_.size();
    int* ub = nullptr;
    int flag = 0;
    // MPI_TAG_UB is set on MPI_COMM_WORLD; a communicator made by split or create_group may not carry
    // it, and the value is the same for every communicator of the process.
    detail::check_mpi(MPI_Comm_get_attr(native(), MPI_TAG_UB, &ub, &flag), "MPI_Comm_get_attr(MPI_TAG_UB)", rank_);
    if (!flag || ub == nullptr)
      detail::check_mpi(MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_TAG_UB, &ub, &flag), "MPI_Comm_get_attr(MPI_TAG_UB)",
                        rank_);
    tag_ub_ = (flag && ub) ? *ub : tag_map::min_tag_ub;
    tags_ = tag_map(tag_ub_, rank_);
    (void)detail::orphaned_sends::instance().reap();
  }
  void post(recv_request& r, std::byte* into, int tag) {
    detail::check_mpi(MPI_Irecv(into, static_cast<int>(r.bytes), MPI_BYTE, r.peer, tag, native(), &r.req),
                      "MPI_Irecv", rank_);
  }
  /// Tests every withdrawn send once; frees the staging of those MPI finished.
  void reap_withdrawn() noexcept {
    if (withdrawn_.empty() || detail::mpi_finalized()) return;
    for (std::size_t i = 0; i < withdrawn_.size();) {
      int flag = 0;
      MPI_Status st;
      if (MPI_Test(&withdrawn_[i].req, &flag, &st) == MPI_SUCCESS && flag) {
        detail::count_outcome(withdrawn_counts_, st);
        --withdrawn_counts_.in_flight;
        pool_.release(withdrawn_[i].staging);
        withdrawn_[i] = withdrawn_.back();
        withdrawn_.pop_back();
        ++epoch_;
      } else {
        ++i;
      }
    }
  }

  boost::mpi::communicator comm_;
  send_mode mode_ = send_mode::zero_copy;
  /// A second duplicate that carries no data: the parent of `create_group` (see there).
  boost::mpi::communicator control_;
  int rank_ = 0, size_ = 1, tag_ub_ = tag_map::min_tag_ub;
  tag_map tags_{tag_map::min_tag_ub, 0};
  std::uint32_t calls_ = 0;
  std::uint64_t epoch_ = 0;
  std::size_t fail_at_ = static_cast<std::size_t>(-1);
  detail::staging_pool pool_;
  /// Withdrawn sends MPI has not finished (see `cancel`): each keeps its staging copy.
  std::vector<send_request> withdrawn_;
  withdrawn_sends withdrawn_counts_{};
};

static_assert(concepts::transport<mpi>);

}  // namespace dssync::transport
