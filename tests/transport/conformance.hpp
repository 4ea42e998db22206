#pragma once
// The transport contract (core/transport.hpp), written once as a doctest template. Each transport's test
// file includes it and instantiates it with a harness (inproc: test_inproc.cpp, sim:
// test_sim_transport.cpp, MPI: test_mpi_conformance.cpp under mpiexec).
//
// A harness H adapts a transport to the contract:
//   H::communicator            the transport type (a dssync::concepts::transport)
//   H::name                    a readable name
//   H::cancel_retracts         true if cancelling an unconsumed send guarantees it is never delivered
//   H::detects_failures        true if peer_failed(p) turns true after p fails; a transport without it
//                              must offer the failure census instead (T::census == true)
//   H::knows_oversize_length   optional, default true: a message longer than announced raises
//                              malformed_payload naming its length; false: it must say "longer"
//   H::world_sizes()           the world sizes to run the contract on (each >= 2)
//   H::run(n, f)               runs f(comm&) on each of n ranks (concurrently) and returns one
//                              std::exception_ptr per rank, null where f returned normally; on every
//                              process, for every rank (a multi-process harness gathers them)
//   H::fail(comm)              makes the calling rank fail as the transport's fault injection does;
//                              it throws, and (if H::detects_failures) the rank's peers then see
//                              peer_failed(rank) == true
//   H::broadcast(x, root)      after a run, makes the value rank `root`'s function wrote into `x` (a
//                              trivially copyable value or a std::string) visible to the test on every
//                              process; a no-op where ranks share the test's memory
// Rank functions never use doctest asserts (they may run on worker threads): they throw
// dssync_test::check_failed, and the test checks the returned errors on the main thread.
// What a transport cannot do (H::cancel_retracts, H::detects_failures, H::knows_oversize_length false) is reported as a doctest
// MESSAGE, never skipped silently.
//
// Include it outside any TEST_SUITE and instantiate it inside TEST_SUITE_BEGIN/END: doctest takes the
// suite of a template test case from where it is instantiated.

#include <doctest/doctest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <exception>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "test_support.hpp"

namespace transport_contract {

using dssync::message_key;
using dssync_test::ensure;
using namespace std::chrono_literals;

/// Bytes of a value, for sending.
template <class T>
std::span<const std::byte> bytes_of(const T& x) {
  return std::as_bytes(std::span<const T>(&x, 1));
}

/// Sends that are withdrawn when the rank function leaves, so no peer reads a dead stack frame.
/// Declare it after the buffers it sends from.
template <class C>
struct send_set {
  C& c;
  std::vector<typename C::send_request> reqs;
  explicit send_set(C& comm) : c(comm) {}
  send_set(const send_set&) = delete;
  ~send_set() {
    for (auto& r : reqs) try { c.cancel(r); } catch (...) {}
  }
  typename C::send_request& send(int peer, message_key k, std::span<const std::byte> b) {
    reqs.push_back(c.isend(peer, k, b));
    return reqs.back();
  }
  /// Waits until every send completed.
  void drain() {
    for (auto& r : reqs)
      ensure(dssync_test::wait_until(c, [&] { return c.test(r); }),
             "rank " + std::to_string(c.rank()) + ": a send did not complete within 10 s");
  }
};

/// Receives one message of `n` bytes from `peer` under `k` (waiting up to 10 s) and returns its bytes.
template <class C>
std::vector<std::byte> receive(C& c, int peer, message_key k, std::size_t n) {
  auto r = c.post_recv(peer, k, n);
  std::vector<std::byte> got;
  int calls = 0;
  const bool ok = dssync_test::wait_until(c, [&] {
    return c.try_consume(r, [&](std::span<const std::byte> b) {
      ++calls;
      got.assign(b.begin(), b.end());
    });
  });
  ensure(ok, "rank " + std::to_string(c.rank()) + ": no message from rank " + std::to_string(peer) + " within 10 s");
  ensure(calls == 1, "try_consume called f " + std::to_string(calls) + " times");
  ensure(got.size() == n, "message has " + std::to_string(got.size()) + " bytes, expected " + std::to_string(n));
  return got;
}

template <class T, class C>
T receive_value(C& c, int peer, message_key k) {
  const auto b = receive(c, peer, k, sizeof(T));
  T x;
  std::memcpy(&x, b.data(), sizeof(T));
  return x;
}

inline void require_ok(const std::vector<std::exception_ptr>& errs) {
  REQUIRE_MESSAGE(dssync_test::describe_errors(errs).empty(), dssync_test::describe_errors(errs));
}

/// Whether transport `C` runs the failure census after a timeout (`C::census`).
template <class C>
constexpr bool has_census() {
  if constexpr (requires { C::census; }) return C::census;
  return false;
}

}  // namespace transport_contract

/// Whether harness `H`'s transport can report the length of a message longer than announced.
template <class H>
inline constexpr bool oversize_length_known = [] {
  if constexpr (requires { H::knows_oversize_length; })
    return static_cast<bool>(H::knows_oversize_length);
  else
    return true;
}();

TEST_CASE_TEMPLATE_DEFINE("transport conformance", H, transport_conformance) {
  using namespace transport_contract;
  using C = typename H::communicator;
  static_assert(dssync::concepts::transport<C>);
  // A transport that cannot see failures must name the silent ranks after a timeout instead.
  static_assert(H::detects_failures || has_census<C>(),
                "a transport whose peer_failed() never turns true must run the failure census (T::census)");
  INFO("transport " << std::string(H::name));
  static bool told = false;  // doctest re-enters the test once per subcase: tell once
  if (!std::exchange(told, true)) {
  if (!H::cancel_retracts)
    MESSAGE(std::string(H::name) << ": cancel() does not guarantee that an unconsumed send is never delivered; the contract "
                       "checks only that cancelling is harmless");
  if (!H::detects_failures)
    MESSAGE(std::string(H::name) << ": peer_failed() never turns true; failures surface as timeouts named by the census "
                       "(T::census), so the contract checks only that peer_failed() stays false and the census exists");
  if (!oversize_length_known<H>)
    MESSAGE(std::string(H::name) << ": a message longer than announced is reported as \"longer\", without its length");
  if (H::world_sizes().empty()) MESSAGE(std::string(H::name) << ": no world size to run the contract on");
  }

  for (const int n : H::world_sizes()) {
    CAPTURE(n);

    SUBCASE((std::string("rank() and size(): every rank once, size() is the world size, n = ") + std::to_string(n)).c_str()) {
      std::vector<std::atomic<int>> seen(static_cast<std::size_t>(n));
      auto errs = H::run(n, [&](C& c) {
        ensure(c.size() == n, "size() " + std::to_string(c.size()));
        ensure(c.rank() >= 0 && c.rank() < n, "rank() " + std::to_string(c.rank()));
        seen[static_cast<std::size_t>(c.rank())].fetch_add(1);
      });
      require_ok(errs);
      for (int r = 0; r < n; ++r) {
        int count = seen[static_cast<std::size_t>(r)].load();
        H::broadcast(count, r);
        CHECK_MESSAGE(count == 1, "rank " << r);
      }
    }

    SUBCASE((std::string("next_call() gives equal, distinct numbers on every rank, n = ") + std::to_string(n)).c_str()) {
      std::vector<std::array<std::uint32_t, 4>> calls(static_cast<std::size_t>(n));
      auto errs = H::run(n, [&](C& c) {
        auto& mine = calls[static_cast<std::size_t>(c.rank())];
        for (auto& x : mine) x = c.next_call();
      });
      require_ok(errs);
      for (int r = 0; r < n; ++r) H::broadcast(calls[static_cast<std::size_t>(r)], r);
      for (int r = 0; r < n; ++r) CHECK_MESSAGE(calls[static_cast<std::size_t>(r)] == calls[0], "rank " << r);
      for (std::size_t i = 1; i < calls[0].size(); ++i) CHECK(calls[0][i] != calls[0][i - 1]);
    }

    SUBCASE((std::string("messages are FIFO per (peer, key), and different keys do not mix, n = ") + std::to_string(n)).c_str()) {
      // Every rank sends every peer three messages under key A, two under B (another channel) and two
      // under C (another call), interleaved; receivers take C first, then B, then A.
      const message_key A{900, 0, 0}, B{900, 1, 0}, Ck{901, 0, 0};
      auto errs = H::run(n, [&](C& c) {
        const int me = c.rank();
        std::vector<std::uint64_t> payload;
        payload.reserve(static_cast<std::size_t>(7 * n));
        auto value = [](int from, int to, int key, int i) {
          return static_cast<std::uint64_t>(from) * 100000 + static_cast<std::uint64_t>(to) * 1000 +
                 static_cast<std::uint64_t>(key) * 10 + static_cast<std::uint64_t>(i);
        };
        for (int p = 0; p < n; ++p) {
          if (p == me) continue;
          for (int i = 0; i < 3; ++i) payload.push_back(value(me, p, 0, i));
          for (int i = 0; i < 2; ++i) payload.push_back(value(me, p, 1, i));
          for (int i = 0; i < 2; ++i) payload.push_back(value(me, p, 2, i));
        }
        send_set<C> out(c);
        std::size_t at = 0;
        for (int p = 0; p < n; ++p) {
          if (p == me) continue;
          const std::uint64_t* v = payload.data() + at;
          const message_key order[] = {A, B, Ck, A, B, Ck, A};
          const int idx[] = {0, 3, 5, 1, 4, 6, 2};  // positions in v of A0 B0 C0 A1 B1 C1 A2
          for (int k = 0; k < 7; ++k) out.send(p, order[k], bytes_of(v[idx[k]]));
          at += 7;
        }
        for (int p = 0; p < n; ++p) {
          if (p == me) continue;
          for (int i = 0; i < 2; ++i) {
            const auto x = receive_value<std::uint64_t>(c, p, Ck);
            ensure(x == value(p, me, 2, i), "key C message " + std::to_string(i) + " from rank " + std::to_string(p) +
                                                " carried " + std::to_string(x));
          }
          for (int i = 0; i < 2; ++i) {
            const auto x = receive_value<std::uint64_t>(c, p, B);
            ensure(x == value(p, me, 1, i), "key B message " + std::to_string(i) + " from rank " + std::to_string(p) +
                                                " carried " + std::to_string(x));
          }
          for (int i = 0; i < 3; ++i) {
            const auto x = receive_value<std::uint64_t>(c, p, A);
            ensure(x == value(p, me, 0, i), "key A message " + std::to_string(i) + " from rank " + std::to_string(p) +
                                                " carried " + std::to_string(x));
          }
        }
        out.drain();
      });
      require_ok(errs);
    }

    SUBCASE((std::string("try_consume is false before the message is sent and calls f exactly once after, n = ") + std::to_string(n)).c_str()) {
      const message_key go{902, 0, 0}, data{902, 0, 1};
      auto errs = H::run(n, [&](C& c) {
        const int me = c.rank(), last = n - 1;
        const std::uint64_t token = 0xC0FFEE, payload = 0x5EED;
        send_set<C> out(c);
        if (me == 0) {
          (void)receive_value<std::uint64_t>(c, last, go);
          out.send(last, data, bytes_of(payload));
          out.drain();
        } else if (me == last) {
          auto r = c.post_recv(0, data, sizeof(std::uint64_t));
          int calls = 0;
          for (int i = 0; i < 3; ++i)
            ensure(!c.try_consume(r, [&](std::span<const std::byte>) { ++calls; }), "consumed an unsent message");
          ensure(calls == 0, "f called for an unsent message");
          out.send(0, go, bytes_of(token));
          std::uint64_t got = 0;
          const bool ok = dssync_test::wait_until(c, [&] {
            return c.try_consume(r, [&](std::span<const std::byte> b) {
              ++calls;
              std::memcpy(&got, b.data(), sizeof got);
            });
          });
          ensure(ok, "the message never arrived");
          ensure(calls == 1, "f called " + std::to_string(calls) + " times");
          ensure(got == payload, "wrong payload");
          out.drain();
        }
      });
      require_ok(errs);
    }

    SUBCASE((std::string("test() becomes true once the receiver consumed the send; large payloads arrive intact, n = ") + std::to_string(n)).c_str()) {
      const message_key big{903, 0, 0}, ack{903, 0, 1};
      auto errs = H::run(n, [&](C& c) {
        const int me = c.rank();
        std::vector<std::byte> blob(std::size_t{1} << 20);
        std::mt19937 g(1234);
        for (auto& b : blob) b = static_cast<std::byte>(g());
        const std::uint64_t token = 1;
        send_set<C> out(c);
        if (me == 0) {
          auto& s = out.send(1, big, std::span<const std::byte>(blob));
          (void)receive_value<std::uint64_t>(c, 1, ack);
          ensure(dssync_test::wait_until(c, [&] { return c.test(s); }), "test() stayed false after consumption");
          ensure(c.test(s), "test() went back to false");
        } else if (me == 1) {
          const auto got = receive(c, 0, big, blob.size());
          ensure(got == blob, "the 1 MiB payload was corrupted");
          out.send(0, ack, bytes_of(token));
          out.drain();
        }
      });
      require_ok(errs);
    }

    SUBCASE((std::string("cancel: an unconsumed cancelled send is never delivered; cancelling finished requests is harmless, n = ") + std::to_string(n)).c_str()) {
      const message_key k1{904, 0, 0}, k2{904, 0, 1}, done{904, 0, 2}, k3{904, 0, 3}, ack{904, 0, 4};
      auto errs = H::run(n, [&](C& c) {
        const int me = c.rank();
        const std::uint64_t stale = 111, fresh = 222, marker = 333, token = 444;
        send_set<C> out(c);
        if (me == 0) {
          if (H::cancel_retracts) {
            auto s1 = c.isend(1, k1, bytes_of(stale));
            c.cancel(s1);
            auto s2 = c.isend(1, k2, bytes_of(stale));
            c.cancel(s2);
            c.cancel(s2);  // twice is harmless
          }
          out.send(1, k1, bytes_of(fresh));   // replaces the cancelled message under the same key
          out.send(1, done, bytes_of(marker));
          auto& s3 = out.send(1, k3, bytes_of(token));
          (void)receive_value<std::uint64_t>(c, 1, ack);
          ensure(dssync_test::wait_until(c, [&] { return c.test(s3); }), "send k3 never completed");
          c.cancel(s3);  // cancelling a completed send does nothing
          out.drain();
        } else if (me == 1) {
          // Only after `done` has arrived are the cancels certainly over (before, the receiver could
          // legitimately consume a message that is cancelled later).
          (void)receive_value<std::uint64_t>(c, 0, done);
          const auto x = receive_value<std::uint64_t>(c, 0, k1);
          ensure(x == fresh, (H::cancel_retracts ? "received the cancelled message: " : "wrong message: ") + std::to_string(x));
          if (H::cancel_retracts) {
            auto r2 = c.post_recv(0, k2, sizeof(std::uint64_t));
            bool delivered = false;
            (void)dssync_test::wait_until(
                c, [&] { return delivered = c.try_consume(r2, [](std::span<const std::byte>) {}); }, 100ms);
            ensure(!delivered, "a cancelled, unconsumed send was delivered");
            c.cancel(r2);  // withdrawing a receive is allowed
          }
          (void)receive_value<std::uint64_t>(c, 0, k3);
          out.send(0, ack, bytes_of(token));
          out.drain();
        }
      });
      require_ok(errs);
    }

    SUBCASE((std::string("a message of the wrong size raises malformed_payload naming the ranks and both sizes, n = ") + std::to_string(n)).c_str()) {
      const message_key k{905, 0, 0}, ack{905, 0, 1};
      std::string message;
      int error_rank = -2;
      auto errs = H::run(n, [&](C& c) {
        const int me = c.rank();
        const std::array<std::byte, 20> twenty{};
        const std::uint64_t token = 7;
        send_set<C> out(c);
        if (me == 0) {
          out.send(1, k, std::span<const std::byte>(twenty));
          (void)receive_value<std::uint64_t>(c, 1, ack);
        } else if (me == 1) {
          auto r = c.post_recv(0, k, 12);
          bool called = false;
          try {
            (void)dssync_test::wait_until(c, [&] {
              return c.try_consume(r, [&](std::span<const std::byte>) { called = true; });
            });
          } catch (const dssync::malformed_payload& e) {
            message = e.what();
            error_rank = e.rank();
          }
          ensure(!called, "f was called with a malformed payload");
          out.send(0, ack, bytes_of(token));
          out.drain();
        }
      });
      require_ok(errs);
      H::broadcast(message, 1);
      H::broadcast(error_rank, 1);
      INFO("message: " << message);
      REQUIRE_MESSAGE(!message.empty(), "no malformed_payload raised");
      CHECK(dssync_test::has_number(message, 12));
      // MPI truncates an oversized message (MPI_ERR_TRUNCATE) without telling its length: such a
      // harness sets knows_oversize_length = false and the message must say the payload is longer.
      if constexpr (oversize_length_known<H>)
        CHECK(dssync_test::has_number(message, 20));
      else
        CHECK(message.find("longer") != std::string::npos);
      CHECK(dssync_test::names_rank(message, 0));  // the sender
      CHECK(dssync_test::names_rank(message, 1));  // the receiver
      CHECK(error_rank == 1);
    }

    SUBCASE((std::string("zero-length messages are delivered and complete, n = ") + std::to_string(n)).c_str()) {
      const message_key k{906, 0, 0};
      auto errs = H::run(n, [&](C& c) {
        const int me = c.rank();
        send_set<C> out(c);
        const int next = (me + 1) % n, prev = (me + n - 1) % n;
        out.send(next, k, std::span<const std::byte>());
        const auto got = receive(c, prev, k, 0);
        ensure(got.empty(), "a zero-length message carried bytes");
        out.drain();
      });
      require_ok(errs);
    }

    SUBCASE((std::string("wait_progress returns by its deadline when nothing happens, n = ") + std::to_string(n)).c_str()) {
      // Nothing is ever sent here, so no progress can wake these calls: each return is its deadline's
      // doing. A call that ignored its deadline would never return: the simulated transport's deadlock
      // detection throws (require_ok fails), and elsewhere the test's ctest timeout reports it. The test
      // waits on events only; it sets no bound on the clock.
      auto errs = H::run(n, [&](C& c) {
        for (int i = 0; i < 3; ++i) {
          const auto t0 = std::chrono::steady_clock::now();
          c.wait_progress(c.progress_token(), t0 + 20ms);  // a deadline ahead
          c.wait_progress(c.progress_token(), t0 - 1ms);   // a deadline already passed
        }
      });
      require_ok(errs);
    }

    SUBCASE((std::string("peer_failed() turns true on every peer after a rank fails by fault injection, n = ") + std::to_string(n)).c_str()) {
      const message_key go{907, 0, 0};
      auto errs = H::run(n, [&](C& c) {
        const int me = c.rank(), victim = n - 1;
        const std::uint64_t token = 9;
        send_set<C> out(c);
        if (me == victim) {
          (void)receive_value<std::uint64_t>(c, 0, go);
          H::fail(c);
          ensure(false, "H::fail returned");
        }
        if (me == 0) {
          ensure(!c.peer_failed(victim), "peer_failed before the failure");
          out.send(victim, go, bytes_of(token));
        }
        if constexpr (H::detects_failures) {
          ensure(dssync_test::wait_until(c, [&] { return c.peer_failed(victim); }),
                 "rank " + std::to_string(me) + " never saw rank " + std::to_string(victim) + " fail");
        } else {
          // Documented limitation: the failure is not visible (the census names it after a timeout).
          ensure(!c.peer_failed(victim), "peer_failed() turned true on a transport that says it cannot see failures");
          // Nothing to wait for but the victim's receipt of `go`: leaving now would withdraw the send,
          // which a transport that retracts unconsumed sends (mpi_shm) then never delivers.
          if (me == 0) out.drain();
        }
      });
      for (int r = 0; r + 1 < n; ++r)
        CHECK_MESSAGE(!errs[static_cast<std::size_t>(r)], "rank " << r << ": " << dssync_test::what(errs[static_cast<std::size_t>(r)]));
      CHECK_MESSAGE(dssync_test::holds<dssync::error>(errs[static_cast<std::size_t>(n - 1)]),
                    "the failed rank: " << dssync_test::what(errs[static_cast<std::size_t>(n - 1)]));
    }
  }
}
