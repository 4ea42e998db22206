// The MPI transport's own mechanics under a real mpiexec (2, 3 and 4 ranks; ranks 0 and 1 do the
// talking, the others only take part in the collective construction):
//  - withdrawn sends: OpenMPI cannot cancel a send, so a withdrawn send may still be delivered later;
//    the transport sends from its own staging copy, so what arrives is the bytes of the time of isend,
//    whatever the sender did to its buffer after cancel() (overwrite, free, destroy the transport);
//  - tags: message keys map onto MPI tags within MPI_TAG_UB without folding, and a key that does not fit
//    is refused by name.
// The tests wait for events (a message arrives, MPI finishes a withdrawn send), never for a time.
#include <doctest/doctest.h>

#include <dssync/dssync.hpp>
#include <dssync/transport/mpi.hpp>

#include <mpi.h>

#include <boost/mpi/communicator.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "test_support.hpp"

namespace {

using dssync::message_key;
using dssync::transport::mpi;

boost::mpi::communicator world_comm() { return boost::mpi::communicator(); }

/// Bytes that differ from the 0xEE the sender overwrites its buffer with, distinct per `seed`.
std::vector<std::byte> pattern(std::size_t n, unsigned seed) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; ++i) {
    auto b = static_cast<unsigned char>((i * 131u + seed * 29u + (i >> 8)) & 0xFFu);
    if (b == 0xEE) b = 0x11;
    v[i] = static_cast<std::byte>(b);
  }
  return v;
}

/// Polls `pred` until it holds. The limit only turns a hang into a failure; nothing is timed.
template <class Pred>
bool eventually(Pred&& pred) {
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (!pred()) {
    if (std::chrono::steady_clock::now() > give_up) return pred();
    std::this_thread::yield();
  }
  return true;
}

enum class after_cancel {
  keep,               // the sender leaves its buffer as it was (what zero-copy sends require)
  overwrite,          // the sender overwrites its buffer and keeps it (a read of it would show 0xEE)
  overwrite_free,     // ... and frees it
  destroy_transport,  // ... and destroys its transport too: the send becomes an orphan
};

constexpr int verdict_tag = 4711;

/// Rank 0 sends `size` bytes to rank 1 and withdraws the send before rank 1 has posted its receive; then
/// it overwrites its buffer (and frees it, or destroys its transport). Only then does rank 1 post the
/// receive. Rank 0 drives the withdrawn send until MPI has finished it (delivered or cancelled) and tells
/// rank 1 which. Rank 1 must get the original bytes or, if MPI really cancelled the send, nothing.
void withdraw_case(std::size_t size, after_cancel what, unsigned seed, mpi::send_mode mode = mpi::send_mode::copy) {
  const auto world = world_comm();
  const int me = world.rank();
  CAPTURE(size);
  CAPTURE(static_cast<int>(what));
  // collective: a fresh communicator for each case; sending from copies is the mode that promises this
  auto comm = std::make_unique<mpi>(world, mode);
  const message_key key{seed, 0, 0};
  const auto original = pattern(size, seed);
  if (me == 0) {
    auto buffer = std::make_unique<std::vector<std::byte>>(original);
    auto s = comm->isend(1, key, *buffer);
    comm->cancel(s);  // rank 1 has not posted the receive (it waits at the barrier below)
    const mpi::withdrawn_sends w = comm->withdrawn();
    CHECK(w.in_flight + w.delivered + w.cancelled == 1);
    if (size > 65536)  // beyond the eager limits: MPI reads the bytes only once the receive is posted
      CHECK_MESSAGE(w.in_flight == 1, "the withdrawn send finished before its receive was posted: this MPI buffered "
                                      "it, so the case does not reach the withdrawn-sends list");
    if (what != after_cancel::keep) std::fill(buffer->begin(), buffer->end(), std::byte{0xEE});
    if (what != after_cancel::overwrite && what != after_cancel::keep) buffer.reset();
    const mpi::withdrawn_sends orphans_before = mpi::orphaned_sends();
    const bool orphan = what == after_cancel::destroy_transport && w.in_flight == 1;
    if (what == after_cancel::destroy_transport) {
      comm.reset();
      if (orphan) CHECK(mpi::orphaned_sends().in_flight >= 1);
    }
    world.barrier();  // (1) withdrawn and overwritten: rank 1 may post its receive now
    int cancelled = w.cancelled > 0 ? 1 : 0;
    if (orphan) {
      const auto finished = [](const mpi::withdrawn_sends& o) { return o.delivered + o.cancelled; };
      mpi::withdrawn_sends o{};
      REQUIRE(eventually([&] { return finished(o = mpi::orphaned_sends()) > finished(orphans_before); }));
      cancelled = o.cancelled > orphans_before.cancelled ? 1 : 0;
    } else if (comm) {
      mpi::withdrawn_sends now{};
      REQUIRE(dssync_test::wait_until(*comm, [&] { return (now = comm->withdrawn()).in_flight == 0; },
                                      std::chrono::seconds(120)));
      cancelled = now.cancelled > 0 ? 1 : 0;
      CHECK(now.delivered + now.cancelled == 1);
    }
    MPI_Send(&cancelled, 1, MPI_INT, 1, verdict_tag, MPI_COMM_WORLD);
  } else if (me == 1) {
    world.barrier();  // (1)
    auto r = comm->post_recv(0, key, size);
    int cancelled = -1;
    MPI_Request verdict = MPI_REQUEST_NULL;
    MPI_Irecv(&cancelled, 1, MPI_INT, 0, verdict_tag, MPI_COMM_WORLD, &verdict);
    bool got = false, told = false;
    std::vector<std::byte> bytes;
    REQUIRE(dssync_test::wait_until(
        *comm,
        [&] {
          if (!got) got = comm->try_consume(r, [&](std::span<const std::byte> b) { bytes.assign(b.begin(), b.end()); });
          if (!told) {
            int flag = 0;
            MPI_Test(&verdict, &flag, MPI_STATUS_IGNORE);
            told = flag != 0;
          }
          return told && (got || cancelled == 1);
        },
        std::chrono::seconds(120)));
    if (!got) comm->cancel(r);
    if (cancelled == 1) {
      CHECK_MESSAGE(!got, "a send MPI reports as cancelled was delivered");
    } else {
      REQUIRE_MESSAGE(got, "the withdrawn send was delivered by MPI but never arrived");
      REQUIRE(bytes.size() == original.size());
      const auto overwritten = static_cast<std::size_t>(std::count(bytes.begin(), bytes.end(), std::byte{0xEE}));
      std::size_t differ = 0;
      for (std::size_t i = 0; i < bytes.size(); ++i) differ += bytes[i] != original[i] ? 1 : 0;
      CHECK_MESSAGE(differ == 0, "the receiver read the sender's buffer after the send was withdrawn: "
                                     << differ << " of " << size << " bytes differ from those sent, " << overwritten
                                     << " of them are the 0xEE written after cancel()");
    }
  } else {
    world.barrier();  // (1)
  }
  world.barrier();
}

}  // namespace

TEST_SUITE("mpi") {
  TEST_CASE("mpi transport: a withdrawn send delivers the bytes of isend or nothing, whatever the sender does after") {
    // 1 MiB: OpenMPI (vader) sends the first 32 KiB eagerly and reads the rest when the receive is posted.
    withdraw_case(std::size_t{1} << 20, after_cancel::overwrite, 11);
    withdraw_case(std::size_t{1} << 20, after_cancel::overwrite_free, 12);
    withdraw_case(64, after_cancel::overwrite_free, 13);  // eager
    withdraw_case(std::size_t{1} << 20, after_cancel::destroy_transport, 14);
  }

  TEST_CASE("mpi transport: withdrawn sends keep no staging after MPI finishes them; the transport stays usable") {
    const auto world = world_comm();
    mpi comm(world, mpi::send_mode::copy);
    const int me = comm.rank(), n = comm.size();
    const message_key key{21, 0, 0};
    const auto original = pattern(std::size_t{1} << 18, 21);
    if (me == 0) {
      std::vector<mpi::send_request> sends;
      for (int p = 1; p < n; ++p) sends.push_back(comm.isend(p, key, original));
      for (auto& s : sends) comm.cancel(s);
      comm.cancel(sends.front());  // twice is harmless
    }
    world.barrier();
    if (me != 0) {
      auto r = comm.post_recv(0, key, original.size());
      std::vector<std::byte> got;
      REQUIRE(dssync_test::wait_until(
          comm, [&] { return comm.try_consume(r, [&](std::span<const std::byte> b) { got.assign(b.begin(), b.end()); }); },
          std::chrono::seconds(120)));
      CHECK(got == original);
    } else {
      REQUIRE(dssync_test::wait_until(comm, [&] { return comm.withdrawn().in_flight == 0; }, std::chrono::seconds(120)));
      CHECK(comm.withdrawn().delivered == static_cast<std::size_t>(n - 1));
    }
    // A collective after the withdrawals works (their copies went back to the pool).
    std::vector<float> v(100003, 1.f);
    dssync::synchronize(comm, v);
    CHECK(v.front() == static_cast<float>(n));
    CHECK(v.back() == static_cast<float>(n));
    world.barrier();
  }

  TEST_CASE("mpi transport: zero-copy (the default) parks a withdrawn unfinished send until MPI completes it") {
    // The caller keeps its buffer as it was: MPI still delivers the send after the withdrawal (or really
    // cancels it), and the transport counts it in flight until then, never MPI_Request_free'd.
    CHECK(mpi(world_comm()).mode() == mpi::send_mode::zero_copy);
    withdraw_case(std::size_t{1} << 20, after_cancel::keep, 15, mpi::send_mode::zero_copy);
  }

  TEST_CASE("mpi tags: distinct keys of calls in flight get distinct tags within MPI_TAG_UB") {
    const auto world = world_comm();
    mpi comm(world);
    const int me = comm.rank();
    int* ub = nullptr;
    int flag = 0;
    MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_TAG_UB, &ub, &flag);
    REQUIRE(flag);
    CHECK(comm.tags().tag_ub() == *ub);
    auto sub = comm.split(me % 2);  // split communicators need not carry MPI_TAG_UB themselves
    CHECK(sub->tags().tag_ub() == *ub);

    for (const int tag_ub : {32767, 65535, (1 << 20) - 1, (1 << 23) - 1, (1 << 24) - 1, 0x7FFFFFFF, *ub}) {
      CAPTURE(tag_ub);
      const mpi::tag_map m(tag_ub, me);
      CHECK(m.bits() >= 15);
      CHECK(m.bits() <= 31);
      CHECK((std::int64_t{1} << m.bits()) - 1 <= tag_ub);
      CHECK(m.bits() == m.call_bits() + m.channel_bits() + m.ordinal_bits());
      // Keys at the edges of every field, over calls() consecutive calls, also across the wrap of the
      // 32-bit call counter.
      const std::uint32_t last_ch = m.channels() - 1, last_ord = m.messages() - 1;
      for (const std::uint32_t first : {0u, 0xFFFFFFFFu - m.calls() / 2}) {
        std::set<int> tags;
        std::size_t keys = 0;
        for (std::uint32_t i = 0; i < m.calls(); ++i)
          for (const std::uint32_t ch : {0u, 1u, last_ch - 1, last_ch, dssync::agreement_channel, dssync::census_channel})
            for (const std::uint32_t ord : {0u, 1u, last_ord - 1, last_ord}) {
              const int t = m(message_key{first + i, ch, ord});
              CHECK(t >= 0);
              CHECK(t <= tag_ub);
              tags.insert(t);
              ++keys;
            }
        CHECK_MESSAGE(tags.size() == keys, (keys - tags.size()) << " distinct keys share a tag");
      }
      // Calls calls() apart share tags: safe, since MPI matches one (sender, tag) in sending order and
      // a rank's calls run one after the other.
      CHECK(m(message_key{5, 3, 7}) == m(message_key{5 + m.calls(), 3, 7}));
    }

    // At the smallest MPI_TAG_UB the map is a bijection of the keys of calls() consecutive calls onto
    // 0..32767 (every tag used once).
    const mpi::tag_map small(32767, me);
    std::vector<int> uses(32768, 0);
    for (std::uint32_t call = 100; call < 100 + small.calls(); ++call) {
      std::vector<std::uint32_t> channels{dssync::agreement_channel, dssync::census_channel};
      for (std::uint32_t c = 0; c < small.channels(); ++c) channels.push_back(c);
      for (const std::uint32_t ch : channels)
        for (std::uint32_t ord = 0; ord < small.messages(); ++ord) ++uses[static_cast<std::size_t>(small({call, ch, ord}))];
    }
    CHECK(std::all_of(uses.begin(), uses.end(), [](int u) { return u == 1; }));

    // The transport's own tags are its map's.
    for (const message_key k : {message_key{0, 0, 0}, message_key{7, 2, 9}, message_key{3, dssync::agreement_channel, 0}})
      CHECK(comm.tag(k) == comm.tags()(k));
    world.barrier();
  }

  TEST_CASE("mpi tags: a key without a tag or an MPI_TAG_UB below 32767 raises invalid_argument naming rank, key and bound") {
    const auto world = world_comm();
    mpi comm(world);
    const int me = comm.rank(), n = comm.size();
    const auto message = [&](auto&& f) {
      try {
        f();
      } catch (const dssync::invalid_argument& e) {
        CHECK(e.rank() == me);
        return std::string(e.what());
      }
      return std::string("<no exception>");
    };
    const mpi::tag_map m(32767, me);
    std::string w = message([&] { (void)m(message_key{9, m.channels(), 0}); });
    CHECK_MESSAGE(dssync_test::names_rank(w, me), w);
    CHECK_MESSAGE(dssync_test::contains(w, "(call 9, channel " + std::to_string(m.channels()) + ", message 0)"), w);
    CHECK_MESSAGE(dssync_test::contains(w, "MPI_TAG_UB = 32767"), w);
    w = message([&] { (void)m(message_key{9, 0, m.messages()}); });
    CHECK_MESSAGE(dssync_test::contains(w, "(call 9, channel 0, message " + std::to_string(m.messages()) + ")"), w);
    CHECK_MESSAGE(dssync_test::contains(w, "MPI_TAG_UB = 32767"), w);
    CHECK_NOTHROW((void)m(message_key{9, m.channels() - 1, m.messages() - 1}));  // the last ones that fit
    w = message([&] { (void)mpi::tag_map(32766, me); });
    CHECK_MESSAGE(dssync_test::contains(w, "MPI_TAG_UB is 32766"), w);
    CHECK_MESSAGE(dssync_test::names_rank(w, me), w);

    // The transport refuses such a key before posting anything, and stays usable.
    const message_key bad{1, comm.tags().channels(), 0};
    const std::uint64_t x = 42;
    const std::size_t held = comm.staging_bytes();
    w = message([&] { (void)comm.isend((me + 1) % n, bad, std::as_bytes(std::span<const std::uint64_t>(&x, 1))); });
    CHECK_MESSAGE(dssync_test::contains(w, "MPI_TAG_UB = " + std::to_string(comm.tags().tag_ub())), w);
    CHECK_MESSAGE(dssync_test::contains(w, "channel " + std::to_string(bad.channel)), w);
    w = message([&] { (void)comm.post_recv((me + 1) % n, message_key{1, 0, comm.tags().messages()}, 8); });
    CHECK_MESSAGE(dssync_test::contains(w, "message " + std::to_string(comm.tags().messages())), w);
    CHECK(comm.staging_bytes() == held);
    std::vector<int> ok(16, 1);
    dssync::synchronize(comm, ok);
    CHECK(ok[0] == n);
    world.barrier();
  }
}
