#pragma once
/// \file
/// The `transport` concept: how bytes move between ranks.

#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>

namespace dssync {

/// Names one message of one collective call. The executor numbers messages so that the i-th send from
/// a to b on a channel matches the i-th receive by b from a on that channel (schedule rule 1); the
/// segments of one message share its key and arrive in order.
struct message_key {
  std::uint32_t call = 0;     ///< per-communicator sequence number of the collective call
  std::uint32_t channel = 0;  ///< schedule channel (`agreement_channel` for the agreement exchange)
  std::uint32_t ordinal = 0;  ///< index of the message among those from the same sender on the channel
  friend constexpr bool operator==(const message_key&, const message_key&) = default;
};

/// The channel number reserved for the agreement exchange that precedes every collective.
inline constexpr std::uint32_t agreement_channel = 0xFFFFu;
/// The channel number reserved for the failure census that follows a timeout (see executor.hpp).
inline constexpr std::uint32_t census_channel = 0xFFFEu;

/// Deadlines are on the steady clock.
using deadline_t = std::chrono::steady_clock::time_point;

/// `dssync::concepts::transport`: a transport `T`: point-to-point, non-blocking byte messaging among `size()` ranks.
///
/// Requirements, for `T& t`, `int p` (a peer), `message_key k`, `std::span<const std::byte> b`:
///  1. `t.rank()` and `t.size()` return `int`; `0 <= t.rank() < t.size()`.
///  2. `t.next_call()` returns a `std::uint32_t` sequence number; ranks that make the same sequence of
///     collective calls get equal numbers.
///  3. `t.isend(p, k, b)` returns a `T::send_request` at once. `b` stays valid and unmodified until the
///     request completes; the transport may let the receiver read it in place (zero copy).
///  4. `t.test(sr)` returns `true` once the send has completed (the receiver consumed it, or the
///     transport copied it out).
///  5. `t.post_recv(p, k, n)` announces a receive of `n` bytes and returns a `T::recv_request`.
///  6. `t.try_consume(rr, f)` returns `false` if the message has not arrived; otherwise it calls
///     `f(std::span<const std::byte>)` exactly once with the message bytes and returns `true`. A message
///     whose size differs from `n` raises `malformed_payload` naming both sizes and the peer.
///  7. `t.cancel(sr)` and `t.cancel(rr)` withdraw a pending request; after they return no one reads
///     the send's bytes any more. Cancelling a completed request does nothing.
///  8. `t.progress_token()` returns a value; `t.wait_progress(token, deadline)` returns when progress may
///     have happened since the token was taken, or when the deadline has passed. Spurious returns are fine.
///  9. `t.peer_failed(p)` returns `true` if `p` is known to have failed; then waits on `p` raise
///     `peer_failure` at once instead of at the deadline.
///
/// Optional:
///  - `t.fault_point(n)` is called before each step `n` (counted per call over all channels of the rank)
///    so a test harness can stop a rank there.
///  - `t.post_recv_into(p, k, std::span<std::byte> dst)` receives straight into `dst` (no staging copy);
///    the executor uses it when `dst` is free for the whole transfer.
///  - `T::census` (`static constexpr bool`): on a timeout, stalled ranks exchange a census so the error
///    can name the ranks that did not answer. For transports that cannot see failures (MPI without ULFM).
///
/// A minimal model is `dssync::transport::inproc::communicator`.
namespace concepts {

template <class T>
concept transport = requires(T& t, const T& ct, int p, message_key k, std::span<const std::byte> b, std::size_t n,
                             typename T::send_request& sr, typename T::recv_request& rr,
                             const std::function<void(std::span<const std::byte>)>& f, deadline_t d) {
  { ct.rank() } -> std::convertible_to<int>;
  { ct.size() } -> std::convertible_to<int>;
  { t.next_call() } -> std::convertible_to<std::uint32_t>;
  { t.isend(p, k, b) } -> std::same_as<typename T::send_request>;
  { t.test(sr) } -> std::convertible_to<bool>;
  { t.post_recv(p, k, n) } -> std::same_as<typename T::recv_request>;
  { t.try_consume(rr, f) } -> std::convertible_to<bool>;
  t.cancel(sr);
  t.cancel(rr);
  t.wait_progress(t.progress_token(), d);
  { t.peer_failed(p) } -> std::convertible_to<bool>;
};

}  // namespace concepts

}  // namespace dssync
