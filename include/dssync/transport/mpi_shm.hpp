#pragma once
/// \file
/// `transport::mpi_shm`: the MPI transport with an MPI-3 shared-memory window for the ranks of one node.
///
/// On-node peers (`MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)`) exchange messages through one window
/// (`MPI_Win_allocate_shared`) in which every rank owns a segment:
///  - descriptor slots, `shm_config::slots` per sender, that the senders fill and this rank reads;
///  - an arena of `shm_config::arena_bytes` that this rank copies its outgoing messages into.
/// A send from a buffer that lies in a window made with `allocate` is not copied at all: its descriptor
/// names the window and the offset, and the receiver reduces or copies straight out of the sender's
/// buffer, as the in-process transport does within one address space. Any other send is copied once into
/// the sender's arena, and the receiver reduces straight out of the arena. Either way the send completes
/// when the receiver has consumed it; until then its bytes stay where they are.
///
/// Off-node peers, and on-node messages that find no free slot or no room in the arena ("overflow"), go
/// through `transport::mpi` (MPI_Isend/MPI_Irecv on the same tags). Overflow keeps the per-(peer, key)
/// order of the contract: a sender that has overflowed to a peer sends every later message to that peer
/// the same way until the receiver has taken all of them (a shared counter per pair says how many), and
/// the receiver always takes a message from its slots before one from MPI. So neither a small arena nor
/// many messages in flight can make a schedule wait for memory: the worst case is MPI's speed.
///
/// The protocol of one slot. Its state word is (sequence number << 3 | state), changed by
/// compare-and-swap so that a slot reused for a later message can never be mistaken for the earlier one:
/// the sender writes the descriptor and then publishes it (state `published`, release); the receiver
/// claims it (`published` → `consuming`), reads the bytes and sets `consumed`; `cancel` withdraws an
/// unclaimed message (`published` → `cancelled`), so a withdrawn on-node send is never delivered and its
/// buffer is free when `cancel` returns. The sender reuses slot s mod S for message s + S once message s
/// is consumed or cancelled, and frees its arena bytes then.
///
/// Failures and errors are those of `transport::mpi` (timeouts with the failure census; OpenMPI 4.1 has
/// no ULFM). Construction and destruction are collective over the communicator (they create and free the
/// window, `MPI_Win_allocate_shared` and `MPI_Win_free`), and so is `allocate`.

#include <mpi.h>

#include <boost/mpi/communicator.hpp>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "dssync/core/error.hpp"
#include "dssync/core/options.hpp"
#include "dssync/core/transport.hpp"
#include "dssync/transport/mpi.hpp"

namespace dssync::transport {

/// How `mpi_shm` lays out its window. Default-constructed: DSSYNC_SHM_* environment overrides applied.
struct shm_config {
  /// Bytes of this rank's arena (the copies of its outgoing on-node messages). DSSYNC_SHM_ARENA.
  std::size_t arena_bytes = std::size_t{16} << 20;
  /// Descriptor slots per (sender, receiver) pair of a node: on-node messages one sender may have in
  /// flight to one receiver before it overflows to MPI. DSSYNC_SHM_SLOTS.
  std::size_t slots = 64;
  /// 0: a node is what MPI_COMM_TYPE_SHARED finds. k > 0: ranks k·i .. k·i+k-1 form node i (to test the
  /// off-node path on one machine; each node must still share memory). DSSYNC_SHM_NODE_SIZE.
  int ranks_per_node = 0;

  shm_config() : shm_config(from_env()) {}
  static shm_config from_env() {
    shm_config c{0};
    if (const char* v = dssync::detail::getenv_or_null("DSSYNC_SHM_ARENA")) c.arena_bytes = dssync::detail::parse_size("DSSYNC_SHM_ARENA", v);
    if (const char* v = dssync::detail::getenv_or_null("DSSYNC_SHM_SLOTS")) {
      c.slots = dssync::detail::parse_size("DSSYNC_SHM_SLOTS", v);
      if (c.slots == 0) throw invalid_argument("DSSYNC_SHM_SLOTS: must be positive");
    }
    if (const char* v = dssync::detail::getenv_or_null("DSSYNC_SHM_NODE_SIZE")) {
      const std::size_t k = dssync::detail::parse_size("DSSYNC_SHM_NODE_SIZE", v);
      if (k > 1u << 20) throw invalid_argument("DSSYNC_SHM_NODE_SIZE: " + std::string(v) + " is too large");
      c.ranks_per_node = static_cast<int>(k);
    }
    return c;
  }
  shm_config& with_arena_bytes(std::size_t b) { arena_bytes = b; return *this; }
  shm_config& with_slots(std::size_t s) { slots = s; return *this; }
  shm_config& with_ranks_per_node(int k) { ranks_per_node = k; return *this; }

 private:
  explicit shm_config(int) {}
};

namespace detail {

/// One cache line holding a counter that one rank writes and another reads.
struct alignas(64) shm_counter {
  std::uint64_t value;
  char pad[56];
};

/// A message descriptor in the receiver's segment. `word` is (sequence << 3 | state); the other fields
/// are written before `published` and read after a successful claim.
struct alignas(64) shm_slot {
  std::uint64_t word;
  std::uint64_t offset;  // in the sender's segment of window `where` (0: the main window's arena)
  std::uint64_t size;
  std::uint32_t where;
  std::uint32_t call, channel, ordinal;
  char pad[24];
};
static_assert(sizeof(shm_slot) == 64);

enum shm_state : std::uint64_t { slot_free = 0, slot_published = 1, slot_consuming = 2, slot_consumed = 3, slot_cancelled = 4 };
inline constexpr std::uint64_t slot_word(std::uint64_t seq, std::uint64_t st) { return seq << 3 | st; }

template <class T>
std::atomic_ref<T> shared_ref(T& x) noexcept {
  return std::atomic_ref<T>(x);
}

/// First-fit allocator over one arena, coalescing on free. Offsets are 64-byte aligned.
class arena_allocator {
 public:
  explicit arena_allocator(std::size_t bytes) : bytes_(bytes & ~std::size_t{63}) {
    if (bytes_ > 0) free_[0] = bytes_;
  }
  /// An offset of `n` free bytes, or `npos`.
  std::size_t allocate(std::size_t n) {
    n = (std::max<std::size_t>(n, 1) + 63) & ~std::size_t{63};
    for (auto it = free_.begin(); it != free_.end(); ++it)
      if (it->second >= n) {
        const std::size_t off = it->first, len = it->second;
        free_.erase(it);
        if (len > n) free_[off + n] = len - n;
        used_ += n;
        return off;
      }
    return npos;
  }
  void release(std::size_t off, std::size_t n) {
    n = (std::max<std::size_t>(n, 1) + 63) & ~std::size_t{63};
    used_ -= n;
    auto [it, ok] = free_.emplace(off, n);
    (void)ok;
    if (auto nx = std::next(it); nx != free_.end() && it->first + it->second == nx->first) {
      it->second += nx->second;
      free_.erase(nx);
    }
    if (it != free_.begin()) {
      auto pv = std::prev(it);
      if (pv->first + pv->second == it->first) {
        pv->second += it->second;
        free_.erase(it);
      }
    }
  }
  [[nodiscard]] std::size_t used() const noexcept { return used_; }
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);

 private:
  std::size_t bytes_;
  std::size_t used_ = 0;
  std::map<std::size_t, std::size_t> free_;  // offset -> length
};

}  // namespace detail

/// An MPI communicator as a dssync transport, with on-node messages through an MPI-3 shared window (see
/// the file comment); models `dssync::concepts::transport`. Use it from one thread per rank.
class mpi_shm {
 public:
  /// A pending send: on-node through a slot, or through MPI (`net` holds it).
  struct send_request {
    int peer = -1;
    bool shm = false;
    std::uint64_t seq = 0;
    mpi::send_request net{};
  };
  /// A pending receive: on-node (from a slot, or overflowed through MPI), or off-node through MPI.
  struct recv_request {
    int peer = -1;
    message_key key{};
    std::size_t bytes = 0;
    std::byte* into = nullptr;
    bool off_node = false;
    bool overflow = false;  // an on-node message that came through MPI: `net` is its posted receive
    mpi::recv_request net{};
  };
  using token = std::uint64_t;

  static constexpr bool census = true;
  /// As `transport::mpi`: a data send that MPI carries cannot be withdrawn reliably.
  static constexpr bool overlap_agreement = false;

  /// Collective over `comm`: duplicates it (as `transport::mpi` does), finds the node's ranks and
  /// creates the shared window. \throws invalid_argument naming the rank for a bad `cfg`.
  explicit mpi_shm(const boost::mpi::communicator& comm, shm_config cfg = shm_config{},
                   mpi::send_mode mode = mpi::send_mode::zero_copy)
      : net_(comm, mode), cfg_(cfg) {
    init();
  }
  explicit mpi_shm(MPI_Comm raw, shm_config cfg = shm_config{}, mpi::send_mode mode = mpi::send_mode::zero_copy)
      : net_(raw, mode), cfg_(cfg) {
    init();
  }
  mpi_shm(const mpi_shm&) = delete;
  mpi_shm& operator=(const mpi_shm&) = delete;
  /// Collective over the node (MPI_Win_free). Sends still published are withdrawn first.
  ~mpi_shm() {
    if (detail::mpi_finalized()) return;
    for (std::size_t p = 0; p < out_.size(); ++p)
      for (std::size_t s = 0; s < cfg_.slots; ++s) {
        auto& o = out_[p][s];
        if (!o.busy) continue;
        auto w = detail::shared_ref(slot(static_cast<int>(p), rank_node_, s).word);
        std::uint64_t exp = detail::slot_word(o.seq, detail::slot_published);
        if (!w.compare_exchange_strong(exp, detail::slot_word(o.seq, detail::slot_cancelled))) {
          while (w.load(std::memory_order_acquire) == detail::slot_word(o.seq, detail::slot_consuming))
            std::this_thread::yield();
        }
      }
    MPI_Barrier(node_);  // nobody reads another segment after this
    for (auto& w : windows_) {
      MPI_Win_unlock_all(w.win);
      MPI_Win_free(&w.win);
    }
    MPI_Comm_free(&node_);
  }

  [[nodiscard]] int rank() const noexcept { return net_.rank(); }
  [[nodiscard]] int size() const noexcept { return net_.size(); }
  [[nodiscard]] std::uint32_t next_call() noexcept { return net_.next_call(); }
  [[nodiscard]] static bool serialized_threads() noexcept { return mpi::serialized_threads(); }
  /// The MPI transport under this one (off-node and overflow messages).
  [[nodiscard]] mpi& network() noexcept { return net_; }
  [[nodiscard]] MPI_Comm native() const noexcept { return net_.native(); }
  /// The node's communicator (MPI_Comm_split_type, or by `shm_config::ranks_per_node`).
  [[nodiscard]] MPI_Comm node() const noexcept { return node_; }
  /// Ranks on this rank's node, including this one.
  [[nodiscard]] int node_size() const noexcept { return node_size_; }
  /// Whether `peer` shares this rank's node (its messages go through the window).
  [[nodiscard]] bool on_node(int peer) const noexcept { return node_of_[static_cast<std::size_t>(peer)] >= 0; }
  [[nodiscard]] const shm_config& config() const noexcept { return cfg_; }

  /// `n` elements of `E` in a new shared window: sends from them to on-node peers are never copied.
  /// Collective over the node (every rank of the node calls it, in the same order; sizes may differ).
  /// The memory lives as long as this transport.
  template <class E>
  std::span<E> allocate(std::size_t n) {
    static_assert(std::is_trivially_copyable_v<E>);
    auto b = allocate_bytes(n * sizeof(E));
    return {reinterpret_cast<E*>(b.data()), n};
  }
  std::span<std::byte> allocate_bytes(std::size_t bytes) {
    window w = make_window(bytes);
    windows_.push_back(std::move(w));
    return {windows_.back().base[static_cast<std::size_t>(rank_node_)], bytes};
  }

  /// What the on-node path did since construction.
  struct stats {
    std::uint64_t zero_copy = 0;  ///< sends read in place from an `allocate`d window
    std::uint64_t copied = 0;     ///< sends copied into the arena
    std::uint64_t overflow = 0;   ///< on-node sends that went through MPI (no slot or no arena room)
    std::uint64_t off_node = 0;   ///< sends to other nodes
  };
  [[nodiscard]] const stats& counters() const noexcept { return stats_; }
  /// Bytes of window memory this rank owns (slots and arena), plus the MPI transport's staging.
  [[nodiscard]] std::size_t staging_bytes() const noexcept { return segment_bytes_ + net_.staging_bytes(); }

  send_request isend(int peer, message_key key, std::span<const std::byte> bytes) {
    send_request r;
    r.peer = peer;
    const int np = node_of(peer);
    if (np < 0) {
      ++stats_.off_node;
      uses_net_ = true;
      r.net = net_.isend(peer, key, bytes);
      return r;
    }
    (void)net_.tag(key);  // refuse an unrepresentable key on every path alike
    auto& pair = out_[static_cast<std::size_t>(np)];
    auto& st = senders_[static_cast<std::size_t>(np)];
    const auto done = detail::shared_ref(counter(np, ovf_done_base, rank_node_).value).load(std::memory_order_acquire);
    bool overflow = st.ovf_sent != done;
    std::uint64_t seq = st.next;
    std::size_t s = seq % cfg_.slots;
    std::uint32_t where = 0;
    std::size_t offset = 0;
    bool arena = false;
    if (!overflow) {
      reap(np, s);
      if (pair[s].busy) overflow = true;
    }
    if (!overflow) {
      if (const auto w = find_window(bytes); w.first > 0) {
        where = w.first;
        offset = w.second;
      } else if (bytes.empty()) {
        where = 0, offset = 0;
      } else if (const std::size_t a = arena_.allocate(bytes.size()); a != detail::arena_allocator::npos) {
        std::memcpy(arena_base() + a, bytes.data(), bytes.size());
        offset = a;
        arena = true;
      } else {
        overflow = true;
      }
    }
    if (overflow) {
      ++stats_.overflow;
      uses_net_ = true;
      ++st.ovf_sent;
      detail::shared_ref(counter(np, ovf_sent_base, rank_node_).value).store(st.ovf_sent, std::memory_order_release);
      r.net = net_.isend(peer, key, bytes);
      return r;
    }
    ++(where > 0 ? stats_.zero_copy : stats_.copied);
    auto& sl = slot(np, rank_node_, s);
    sl.offset = offset;
    sl.size = bytes.size();
    sl.where = where;
    sl.call = key.call, sl.channel = key.channel, sl.ordinal = key.ordinal;
    detail::shared_ref(sl.word).store(detail::slot_word(seq, detail::slot_published), std::memory_order_release);
    pair[s] = {true, seq, arena, offset, bytes.size()};
    st.next = seq + 1;
    detail::shared_ref(counter(np, published_base, rank_node_).value).store(st.next, std::memory_order_release);
    r.shm = true;
    r.seq = seq;
    ++epoch_;
    return r;
  }

  bool test(send_request& r) {
    if (!r.shm) return net_.test(r.net);
    const int np = node_of(r.peer);
    const std::size_t s = r.seq % cfg_.slots;
    const auto& o = out_[static_cast<std::size_t>(np)][s];
    if (!o.busy || o.seq != r.seq) return true;
    reap(np, s);
    return !out_[static_cast<std::size_t>(np)][s].busy;
  }

  recv_request post_recv(int peer, message_key key, std::size_t bytes) {
    recv_request r;
    r.peer = peer, r.key = key, r.bytes = bytes;
    if (node_of(peer) < 0) {
      r.off_node = true;
      uses_net_ = true;
      r.net = net_.post_recv(peer, key, bytes);
    } else {
      (void)net_.tag(key);
    }
    return r;
  }
  recv_request post_recv_into(int peer, message_key key, std::span<std::byte> dst) {
    recv_request r;
    r.peer = peer, r.key = key, r.bytes = dst.size(), r.into = dst.data();
    if (node_of(peer) < 0) {
      r.off_node = true;
      uses_net_ = true;
      r.net = net_.post_recv_into(peer, key, dst);
    } else {
      (void)net_.tag(key);
    }
    return r;
  }

  template <class F>
  bool try_consume(recv_request& r, F&& f) {
    if (r.off_node) return net_.try_consume(r.net, f);
    if (r.overflow) return take_overflow(r, f);
    const int np = node_of(r.peer);
    if (claimed c = claim(np, r.key); c.found) {
      finish_claim fin{this, np, c.seq};
      check_size(r, c.sl->size);
      f(std::span<const std::byte>(source(np, *c.sl), r.bytes));
      return true;
    }
    // Nothing in the slots: an overflowed message may be waiting in MPI.
    auto& rs = receivers_[static_cast<std::size_t>(np)];
    const auto sent = detail::shared_ref(counter(rank_node_, ovf_sent_base, np).value).load(std::memory_order_acquire);
    if (sent == rs.ovf_taken) return false;
    int flag = 0;
    MPI_Status st;
    detail::check_mpi(MPI_Iprobe(r.peer, net_.tag(r.key), native(), &flag, &st), "MPI_Iprobe", rank());
    if (!flag) return false;
    // Everything in the slots was sent before any message still in MPI: look there once more.
    if (claimed c = claim(np, r.key); c.found) {
      finish_claim fin{this, np, c.seq};
      check_size(r, c.sl->size);
      f(std::span<const std::byte>(source(np, *c.sl), r.bytes));
      return true;
    }
    int count = 0;
    MPI_Get_count(&st, MPI_BYTE, &count);
    if (static_cast<std::size_t>(count) != r.bytes) {
      // Take it anyway, so that the sender completes, then report both sizes.
      std::vector<std::byte> sink(static_cast<std::size_t>(count));
      detail::check_mpi(MPI_Recv(sink.data(), count, MPI_BYTE, r.peer, net_.tag(r.key), native(), MPI_STATUS_IGNORE),
                        "MPI_Recv", rank());
      overflow_taken(np);
      check_size(r, static_cast<std::size_t>(count));
    }
    r.overflow = true;
    uses_net_ = true;
    r.net = r.into ? net_.post_recv_into(r.peer, r.key, std::span<std::byte>(r.into, r.bytes))
                   : net_.post_recv(r.peer, r.key, r.bytes);
    return take_overflow(r, f);
  }

  /// Consumes the front requests of `reqs` whose messages are in the slots (all on-node), calling `f`
  /// once with their bytes: a gang of receive-reduces runs as one pass. Returns how many were consumed.
  template <class F>
  std::size_t consume_run(std::span<recv_request* const> reqs, F&& f) {
    gang_.clear();
    spans_.clear();
    for (recv_request* r : reqs) {
      if (r->off_node || r->overflow) break;
      const int np = node_of(r->peer);
      claimed c = claim(np, r->key);
      if (!c.found) break;
      gang_.push_back({np, c.seq, c.sl});
    }
    if (gang_.empty()) {
      // Fall back to one at a time (off-node, or overflowed through MPI).
      recv_request& r = *reqs.front();
      const bool got = try_consume(r, [&](std::span<const std::byte> b) {
        const std::span<const std::byte> one[1] = {b};
        f(std::span<const std::span<const std::byte>>(one, 1));
      });
      return got ? 1 : 0;
    }
    struct finish_all {
      mpi_shm* self;
      ~finish_all() {
        for (const auto& g : self->gang_) self->release_claim(g.np, g.seq);
        self->gang_.clear();
      }
    } fin{this};
    for (std::size_t i = 0; i < gang_.size(); ++i) {
      check_size(*reqs[i], gang_[i].sl->size);
      spans_.emplace_back(source(gang_[i].np, *gang_[i].sl), reqs[i]->bytes);
    }
    f(std::span<const std::span<const std::byte>>(spans_.data(), spans_.size()));
    return gang_.size();
  }

  /// Withdraws a send. On-node: a message not yet claimed is never delivered; one being read is waited
  /// for (the receiver is copying it). Through MPI: as `transport::mpi::cancel`.
  void cancel(send_request& r) noexcept {
    if (!r.shm) {
      net_.cancel(r.net);
      return;
    }
    const int np = node_of(r.peer);
    const std::size_t s = r.seq % cfg_.slots;
    auto& o = out_[static_cast<std::size_t>(np)][s];
    if (!o.busy || o.seq != r.seq) return;
    auto w = detail::shared_ref(slot(np, rank_node_, s).word);
    std::uint64_t exp = detail::slot_word(r.seq, detail::slot_published);
    if (!w.compare_exchange_strong(exp, detail::slot_word(r.seq, detail::slot_cancelled), std::memory_order_acq_rel))
      while (w.load(std::memory_order_acquire) == detail::slot_word(r.seq, detail::slot_consuming))
        std::this_thread::yield();
    reap(np, s);
  }
  void cancel(recv_request& r) noexcept {
    if (r.off_node || r.overflow) net_.cancel(r.net);
  }

  [[nodiscard]] token progress_token() const noexcept { return net_.progress_token() + epoch_; }
  /// Polls: a peer's store to the window wakes nobody. When the node has a core for each of its ranks,
  /// the first `spin_polls()` waits in a row only pause the core (a message one round away lands within
  /// microseconds); after them, and always on an oversubscribed node, every wait yields the core as
  /// `transport::mpi` does. (Spinning with more ranks than cores costs a time slice per step: 4 KiB at
  /// 3 ranks on 2 cores went from 39 to 516 µs.)
  void wait_progress(token t, deadline_t deadline) {
    if (uses_net_) {
      // Drive MPI's progress engine: a large message that MPI carries (rendezvous) moves only while
      // its sender calls into MPI, and a rank waiting on the window alone would never do so.
      int flag = 0;
      MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, native(), &flag, MPI_STATUS_IGNORE);
    }
    if (t != progress_token()) return;
    if (t != idle_token_) idle_token_ = t, idle_ = 0;
    if (++idle_ <= spin_) {
      for (int i = 0; i < 16; ++i) cpu_relax();
      return;
    }
    net_.wait_progress(t, deadline);
  }
  /// Waits in a row that spin before waits yield (see `wait_progress`): 0 on an oversubscribed node.
  [[nodiscard]] int spin_polls() const noexcept { return spin_; }
  [[nodiscard]] bool peer_failed(int p) const noexcept { return net_.peer_failed(p); }

  void inject_fault(std::size_t step) noexcept { fail_at_ = step; }
  void fault_point(std::size_t step) {
    if (step != fail_at_) return;
    fail_at_ = static_cast<std::size_t>(-1);
    throw injected_fault("rank " + std::to_string(rank()) + " stopped by fault injection at step " + std::to_string(step),
                         rank());
  }

 private:
  struct window {
    MPI_Win win = MPI_WIN_NULL;
    std::vector<std::byte*> base;  // per node rank
    std::vector<std::size_t> bytes;
  };
  struct out_slot {
    bool busy = false;
    std::uint64_t seq = 0;
    bool arena = false;
    std::size_t offset = 0, size = 0;
  };
  struct sender_state {
    std::uint64_t next = 0;      // sequence number of the next slot message to this peer
    std::uint64_t ovf_sent = 0;  // messages to this peer sent through MPI
  };
  struct receiver_state {
    std::uint64_t low = 0;       // every sequence number below is taken
    std::deque<char> taken;      // for low, low+1, ...: consumed or gone
    std::uint64_t ovf_taken = 0; // overflowed messages from this peer received
  };
  struct claimed {
    bool found = false;
    std::uint64_t seq = 0;
    detail::shm_slot* sl = nullptr;
  };
  struct gang_entry {
    int np;
    std::uint64_t seq;
    detail::shm_slot* sl;
  };
  struct finish_claim {
    mpi_shm* self;
    int np;
    std::uint64_t seq;
    ~finish_claim() { self->release_claim(np, seq); }
  };

  // Segment layout of a receiver: three arrays of L counters, indexed by the sender's node rank:
  // published (slot messages the sender has published to it; written by the sender), overflow sent
  // (messages the sender sent it through MPI; written by the sender) and overflow done (those it has
  // received; written by the receiver, read by the sender). Then L·S slots, S per sender, then the arena
  // of the rank's own outgoing copies.
  static constexpr int published_base = 0, ovf_sent_base = 1, ovf_done_base = 2;

  void init() {
    const int me = net_.rank(), n = net_.size();
    if (cfg_.slots == 0) throw invalid_argument("dssync mpi_shm: rank " + std::to_string(me) + ": shm_config::slots is 0", me);
    if (cfg_.ranks_per_node < 0)
      throw invalid_argument("dssync mpi_shm: rank " + std::to_string(me) + ": shm_config::ranks_per_node is " +
                                 std::to_string(cfg_.ranks_per_node),
                             me);
    if (cfg_.ranks_per_node > 0)
      detail::check_mpi(MPI_Comm_split(native(), me / cfg_.ranks_per_node, me, &node_), "MPI_Comm_split", me);
    else
      detail::check_mpi(MPI_Comm_split_type(native(), MPI_COMM_TYPE_SHARED, me, MPI_INFO_NULL, &node_),
                        "MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)", me);
    MPI_Comm_set_errhandler(node_, MPI_ERRORS_RETURN);
    MPI_Comm_size(node_, &node_size_);
    MPI_Comm_rank(node_, &rank_node_);
    // World rank -> node rank (-1 off-node).
    node_of_.assign(static_cast<std::size_t>(n), -1);
    {
      MPI_Group all = MPI_GROUP_NULL, local = MPI_GROUP_NULL;
      MPI_Comm_group(native(), &all);
      MPI_Comm_group(node_, &local);
      std::vector<int> ranks(static_cast<std::size_t>(n)), out(static_cast<std::size_t>(n));
      for (int i = 0; i < n; ++i) ranks[static_cast<std::size_t>(i)] = i;
      MPI_Group_translate_ranks(all, n, ranks.data(), local, out.data());
      MPI_Group_free(&all);
      MPI_Group_free(&local);
      for (int i = 0; i < n; ++i)
        if (out[static_cast<std::size_t>(i)] != MPI_UNDEFINED && i != me) node_of_[static_cast<std::size_t>(i)] = out[static_cast<std::size_t>(i)];
    }
    const auto L = static_cast<std::size_t>(node_size_);
    slots_offset_ = 3 * L * sizeof(detail::shm_counter);
    arena_offset_ = slots_offset_ + L * cfg_.slots * sizeof(detail::shm_slot);
    segment_bytes_ = arena_offset_ + ((cfg_.arena_bytes + 63) & ~std::size_t{63});
    windows_.push_back(make_window(segment_bytes_));
    arena_ = detail::arena_allocator(cfg_.arena_bytes);
    spin_ = node_size_ <= cores() ? 128 : 0;
    out_.assign(L, std::vector<out_slot>(cfg_.slots));
    senders_.assign(L, {});
    receivers_.assign(L, {});
  }

  window make_window(std::size_t bytes) {
    const int me = rank();
    window w;
    MPI_Info info = MPI_INFO_NULL;
    MPI_Info_create(&info);
    MPI_Info_set(info, "alloc_shared_noncontig", "true");
    void* mine = nullptr;
    const int rc = MPI_Win_allocate_shared(static_cast<MPI_Aint>(std::max<std::size_t>(bytes, 64)), 1, info, node_, &mine, &w.win);
    MPI_Info_free(&info);
    detail::check_mpi(rc, "MPI_Win_allocate_shared", me);
    MPI_Win_set_errhandler(w.win, MPI_ERRORS_RETURN);
    std::memset(mine, 0, std::max<std::size_t>(bytes, 64));
    w.base.resize(static_cast<std::size_t>(node_size_));
    w.bytes.resize(static_cast<std::size_t>(node_size_));
    for (int i = 0; i < node_size_; ++i) {
      MPI_Aint sz = 0;
      int du = 1;
      void* p = nullptr;
      detail::check_mpi(MPI_Win_shared_query(w.win, i, &sz, &du, &p), "MPI_Win_shared_query", me);
      w.base[static_cast<std::size_t>(i)] = static_cast<std::byte*>(p);
      w.bytes[static_cast<std::size_t>(i)] = static_cast<std::size_t>(sz);
    }
    w.bytes[static_cast<std::size_t>(rank_node_)] = bytes;
    detail::check_mpi(MPI_Win_lock_all(MPI_MODE_NOCHECK, w.win), "MPI_Win_lock_all", me);
    detail::check_mpi(MPI_Barrier(node_), "MPI_Barrier", me);  // every segment is zeroed before use
    return w;
  }

  [[nodiscard]] int node_of(int peer) const noexcept { return node_of_[static_cast<std::size_t>(peer)]; }
  [[nodiscard]] std::byte* segment(int node_rank) const noexcept { return windows_[0].base[static_cast<std::size_t>(node_rank)]; }
  [[nodiscard]] std::byte* arena_base() const noexcept { return segment(rank_node_) + arena_offset_; }
  /// Counter `which` for peer `about`, in the segment of `owner`.
  [[nodiscard]] detail::shm_counter& counter(int owner, int which, int about) const noexcept {
    auto* c = reinterpret_cast<detail::shm_counter*>(segment(owner));
    return c[static_cast<std::size_t>(which) * static_cast<std::size_t>(node_size_) + static_cast<std::size_t>(about)];
  }
  /// Slot `s` of messages from `src` to `dst` (in `dst`'s segment).
  [[nodiscard]] detail::shm_slot& slot(int dst, int src, std::size_t s) const noexcept {
    auto* base = reinterpret_cast<detail::shm_slot*>(segment(dst) + slots_offset_);
    return base[static_cast<std::size_t>(src) * cfg_.slots + s];
  }

  /// The window and offset of `b` if it lies in one of this rank's `allocate`d windows (0: none).
  [[nodiscard]] std::pair<std::uint32_t, std::size_t> find_window(std::span<const std::byte> b) const noexcept {
    if (b.empty()) return {0, 0};
    const auto* p = b.data();
    for (std::size_t i = 1; i < windows_.size(); ++i) {
      const std::byte* base = windows_[i].base[static_cast<std::size_t>(rank_node_)];
      const std::size_t n = windows_[i].bytes[static_cast<std::size_t>(rank_node_)];
      if (std::less_equal<const std::byte*>{}(base, p) && std::less_equal<const std::byte*>{}(p + b.size(), base + n))
        return {static_cast<std::uint32_t>(i), static_cast<std::size_t>(p - base)};
    }
    return {0, 0};
  }

  /// Frees slot `s` toward node rank `np` if the receiver is done with it (consumed or cancelled).
  void reap(int np, std::size_t s) {
    auto& o = out_[static_cast<std::size_t>(np)][s];
    if (!o.busy) return;
    const auto w = detail::shared_ref(slot(np, rank_node_, s).word).load(std::memory_order_acquire);
    if (w != detail::slot_word(o.seq, detail::slot_consumed) && w != detail::slot_word(o.seq, detail::slot_cancelled)) return;
    if (o.arena) arena_.release(o.offset, o.size);
    o.busy = false;
    ++epoch_;
  }

  /// The sender's bytes that slot `sl` from node rank `np` describes.
  [[nodiscard]] const std::byte* source(int np, const detail::shm_slot& sl) const {
    if (sl.where == 0) return windows_[0].base[static_cast<std::size_t>(np)] + arena_offset_ + sl.offset;
    if (sl.where >= windows_.size())
      throw malformed_payload("dssync mpi_shm: rank " + std::to_string(rank()) + ": a message names shared window " +
                                  std::to_string(sl.where) + ", but only " + std::to_string(windows_.size() - 1) +
                                  " were allocated (allocate is collective, in the same order on every rank)",
                              rank());
    return windows_[sl.where].base[static_cast<std::size_t>(np)] + sl.offset;
  }

  /// Claims the earliest published message from node rank `np` with key `k` (published -> consuming).
  claimed claim(int np, const message_key& k) {
    auto& rs = receivers_[static_cast<std::size_t>(np)];
    const auto head = detail::shared_ref(counter(rank_node_, published_base, np).value).load(std::memory_order_acquire);
    while (rs.low + rs.taken.size() < head) rs.taken.push_back(0);
    claimed out;
    for (std::size_t i = 0; i < rs.taken.size(); ++i) {
      if (rs.taken[i]) continue;
      const std::uint64_t seq = rs.low + i;
      auto& sl = slot(rank_node_, np, seq % cfg_.slots);
      auto w = detail::shared_ref(sl.word);
      std::uint64_t cur = w.load(std::memory_order_acquire);
      if ((cur >> 3) != seq || (cur & 7) == detail::slot_cancelled) {  // withdrawn (and perhaps reused)
        if ((cur >> 3) > seq || (cur & 7) == detail::slot_cancelled) rs.taken[i] = 1;
        continue;
      }
      if ((cur & 7) != detail::slot_published) continue;
      const bool match = detail::shared_ref(sl.call).load(std::memory_order_relaxed) == k.call &&
                         detail::shared_ref(sl.channel).load(std::memory_order_relaxed) == k.channel &&
                         detail::shared_ref(sl.ordinal).load(std::memory_order_relaxed) == k.ordinal;
      if (!match) continue;
      if (!w.compare_exchange_strong(cur, detail::slot_word(seq, detail::slot_consuming), std::memory_order_acq_rel)) {
        rs.taken[i] = 1;  // cancelled meanwhile
        continue;
      }
      rs.taken[i] = 1;
      out = {true, seq, &sl};
      ++epoch_;
      break;
    }
    while (!rs.taken.empty() && rs.taken.front()) {
      rs.taken.pop_front();
      ++rs.low;
    }
    return out;
  }
  void release_claim(int np, std::uint64_t seq) noexcept {
    auto& sl = slot(rank_node_, np, seq % cfg_.slots);
    detail::shared_ref(sl.word).store(detail::slot_word(seq, detail::slot_consumed), std::memory_order_release);
  }

  void check_size(const recv_request& r, std::size_t got) const {
    if (got == r.bytes) return;
    throw malformed_payload("dssync mpi_shm: rank " + std::to_string(rank()) + " expected " + std::to_string(r.bytes) +
                                " bytes from rank " + std::to_string(r.peer) + " (call " + std::to_string(r.key.call) +
                                ", channel " + std::to_string(r.key.channel) + ", message " + std::to_string(r.key.ordinal) +
                                ") but the message has " + std::to_string(got),
                            rank());
  }

  void overflow_taken(int np) {
    auto& rs = receivers_[static_cast<std::size_t>(np)];
    ++rs.ovf_taken;
    detail::shared_ref(counter(rank_node_, ovf_done_base, np).value).store(rs.ovf_taken, std::memory_order_release);
  }

  template <class F>
  bool take_overflow(recv_request& r, F&& f) {
    if (!net_.try_consume(r.net, f)) return false;
    overflow_taken(node_of(r.peer));
    r.overflow = false;
    return true;
  }

  /// Cores of the machine. (Not this process's affinity: mpiexec binds each rank to one core when
  /// the ranks fit, and that is exactly when spinning is safe.)
  static int cores() noexcept {
    const unsigned n = std::thread::hardware_concurrency();
    return n == 0 ? 1 : static_cast<int>(n);
  }
  static void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
  }

  mpi net_;
  shm_config cfg_;
  std::uint64_t epoch_ = 0;  // on-node progress: publications, claims, completed sends
  bool uses_net_ = false;    // some message went through MPI: waits drive MPI's progress
  token idle_token_ = static_cast<token>(-1);
  int idle_ = 0;
  int spin_ = 0;
  MPI_Comm node_ = MPI_COMM_NULL;
  int node_size_ = 1, rank_node_ = 0;
  std::vector<int> node_of_;
  std::size_t slots_offset_ = 0, arena_offset_ = 0, segment_bytes_ = 0;
  std::vector<window> windows_;  // [0]: the main window (counters, slots, arena); then `allocate`d ones
  detail::arena_allocator arena_{0};
  std::vector<std::vector<out_slot>> out_;     // per node rank, per slot: this rank's messages to it
  std::vector<sender_state> senders_;          // per node rank
  std::vector<receiver_state> receivers_;      // per node rank
  std::vector<gang_entry> gang_;
  std::vector<std::span<const std::byte>> spans_;
  stats stats_{};
  std::size_t fail_at_ = static_cast<std::size_t>(-1);
};

static_assert(concepts::transport<mpi_shm>);

}  // namespace dssync::transport
