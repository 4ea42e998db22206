#pragma once
/// \file
/// The agreement exchange that precedes every collective: ranks swap a small signature (world size,
/// element count, element type, op, policy, plan fingerprint) and every rank raises `mismatch_error` if
/// any peer differs, before a single data byte moves.

#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dssync/core/dtype.hpp"
#include "dssync/core/error.hpp"
#include "dssync/core/options.hpp"
#include "dssync/core/transport.hpp"
#include "dssync/transport/executor.hpp"

namespace dssync {

/// What ranks must agree on before a collective. Trivially copyable: it travels as raw bytes.
struct signature {
  std::uint64_t count = 0;
  std::int32_t world = 0;
  std::uint8_t type = 0;
  std::uint8_t element_size = 0;
  std::uint16_t reserved = 0;
  std::uint32_t op = 0;
  std::array<char, 24> op_name{};
  std::array<char, 24> policy{};
  /// `dssync::fingerprint` of the plan about to run (0: none given): ranks that planned different
  /// schedules from the same policy name (other parameters, topology or settings) disagree here.
  std::uint64_t plan = 0;

  static signature make(std::uint64_t count, int world, dtype t, std::size_t elem, std::uint32_t op_id,
                        std::string_view op_nm, std::string_view pol, std::uint64_t plan_fingerprint = 0) {
    signature s;
    s.plan = plan_fingerprint;
    s.count = count;
    s.world = world;
    s.type = static_cast<std::uint8_t>(t);
    s.element_size = static_cast<std::uint8_t>(elem);
    s.op = op_id;
    std::memcpy(s.op_name.data(), op_nm.data(), std::min(op_nm.size(), s.op_name.size() - 1));
    std::memcpy(s.policy.data(), pol.data(), std::min(pol.size(), s.policy.size() - 1));
    return s;
  }
};

namespace detail {

inline std::string hex(std::uint64_t v) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out = "0x";
  for (int i = 15; i >= 0; --i) out += digits[(v >> (4 * i)) & 0xf];
  return out;
}

inline std::string type_string(const signature& s) {
  const auto t = static_cast<dtype>(s.type);
  return std::string(to_string(t)) + (t == dtype::other ? "(" + std::to_string(s.element_size) + " bytes)" : "");
}

/// Compares two signatures; returns a description of the first difference, or "".
inline std::string compare(const signature& mine, int me, const signature& theirs, int peer) {
  const std::string a = "rank " + std::to_string(me), b = "rank " + std::to_string(peer);
  if (mine.world != theirs.world)
    return "world size: " + a + " has " + std::to_string(mine.world) + ", " + b + " has " + std::to_string(theirs.world);
  if (mine.count != theirs.count)
    return "element count: " + a + " has " + std::to_string(mine.count) + " elements, " + b + " has " +
           std::to_string(theirs.count);
  if (mine.type != theirs.type || mine.element_size != theirs.element_size)
    return "element type: " + a + " has " + type_string(mine) + ", " + b + " has " + type_string(theirs);
  if (mine.op != theirs.op)
    return "reduction op: " + a + " uses " + std::string(mine.op_name.data()) + ", " + b + " uses " +
           std::string(theirs.op_name.data());
  if (mine.policy != theirs.policy)
    return "policy: " + a + " runs " + std::string(mine.policy.data()) + ", " + b + " runs " +
           std::string(theirs.policy.data());
  if (mine.plan != theirs.plan)
    return "plan fingerprint: " + a + " has " + hex(mine.plan) + ", " + b + " has " + hex(theirs.plan) + " (same " +
           std::string(mine.policy.data()) +
           " policy, different schedules: its parameters or the topology differ)";
  return {};
}

}  // namespace detail

/// Exchanges `mine` with every rank of `scope` (every rank of the communicator when `scope` is empty)
/// and throws `mismatch_error` (on every rank of the scope) if any differs.
///
/// The scope is what the plan's semantics couple: the whole world for an allreduce, the rank's own group
/// for a group allreduce (gossip pairs, DS-Sync groups), so groups never wait for each other. Inside the
/// scope every pair compares, whatever the plan's edges, so a mismatch that changes the edges (a count
/// so small that a rank has no steps) is still named as a mismatch and not left to a deadline.
/// \throws mismatch_error, timeout_error, peer_failure.
template <concepts::transport T>
void agree(T& comm, const signature& mine, const options& opt, std::uint32_t call, std::span<const int> scope = {}) {
  const int n = comm.size(), me = comm.rank();
  if (n == 1) return;
  std::vector<int> peers;
  if (scope.empty()) {
    peers.reserve(static_cast<std::size_t>(n - 1));
    for (int p = 0; p < n; ++p)
      if (p != me) peers.push_back(p);
  } else {
    for (const int p : scope)
      if (p != me) peers.push_back(p);
  }
  if (peers.empty()) return;
  const message_key key{call, agreement_channel, 0};
  std::vector<signature> theirs(static_cast<std::size_t>(n));
  std::vector<typename T::send_request> sends;
  std::vector<typename T::recv_request> recvs;
  std::vector<int> recv_peer, send_peer;
  struct guard {
    T& c;
    std::vector<typename T::send_request>& s;
    std::vector<typename T::recv_request>& r;
    ~guard() {
      for (auto& x : s) try { c.cancel(x); } catch (...) {}
      for (auto& x : r) try { c.cancel(x); } catch (...) {}
    }
  } g{comm, sends, recvs};
  const auto bytes = std::as_bytes(std::span<const signature>(&mine, 1));
  for (const int p : peers) {
    sends.push_back(comm.isend(p, key, bytes));
    send_peer.push_back(p);
    recvs.push_back(comm.post_recv(p, key, sizeof(signature)));
    recv_peer.push_back(p);
  }
  auto last = std::chrono::steady_clock::now();
  bool rechecked = false;
  while (!sends.empty() || !recvs.empty()) {
    const auto token = comm.progress_token();
    bool progress = false;
    for (std::size_t i = 0; i < recvs.size();) {
      const int p = recv_peer[i];
      if (comm.try_consume(recvs[i], [&](std::span<const std::byte> b) {
            std::memcpy(&theirs[static_cast<std::size_t>(p)], b.data(), sizeof(signature));
          })) {
        recvs.erase(recvs.begin() + static_cast<std::ptrdiff_t>(i));
        recv_peer.erase(recv_peer.begin() + static_cast<std::ptrdiff_t>(i));
        progress = true;
      } else {
        ++i;
      }
    }
    for (std::size_t i = 0; i < sends.size();) {
      if (comm.test(sends[i])) {
        sends.erase(sends.begin() + static_cast<std::ptrdiff_t>(i));
        send_peer.erase(send_peer.begin() + static_cast<std::ptrdiff_t>(i));
        progress = true;
      } else {
        ++i;
      }
    }
    if (sends.empty() && recvs.empty()) break;
    const auto now = std::chrono::steady_clock::now();
    if (progress) {
      last = now;
      rechecked = false;
      continue;
    }
    if (!rechecked) {
      // A failed peer's last actions happened before it was marked failed: look once more first.
      bool marked = false;
      for (int p : recv_peer) marked = marked || comm.peer_failed(p);
      for (int p : send_peer) marked = marked || comm.peer_failed(p);
      if (marked) {
        rechecked = true;
        continue;
      }
    }
    auto waiting_for = [&] { return recv_peer.empty() ? send_peer.front() : recv_peer.front(); };
    for (int p : recv_peer)
      if (comm.peer_failed(p)) {
        auto [msg, root] = detail::describe_failure(comm, me, p);
        throw peer_failure(msg + " before the agreement exchange of call " + std::to_string(call) + " completed", me,
                           root);
      }
    for (int p : send_peer)
      if (comm.peer_failed(p)) {
        auto [msg, root] = detail::describe_failure(comm, me, p);
        throw peer_failure(msg + " before the agreement exchange of call " + std::to_string(call) + " completed", me,
                           root);
      }
    if (now >= last + opt.timeout) {
      auto [clause, blame] = detail::census_clause(comm, call, opt.timeout, waiting_for());
      throw timeout_error("dssync: rank " + std::to_string(me) + " timed out after " +
                              detail::seconds_string(opt.timeout) + " in the agreement exchange of call " +
                              std::to_string(call) + ", waiting for rank " + std::to_string(waiting_for()) +
                              " (did it call the same collective?)" + clause,
                          me, blame);
    }
    comm.wait_progress(token, last + opt.timeout);
  }
  for (const int p : peers) {
    if (auto d = detail::compare(mine, me, theirs[static_cast<std::size_t>(p)], p); !d.empty())
      throw mismatch_error("dssync: rank " + std::to_string(me) + ": ranks disagree on the " + d +
                               " (call " + std::to_string(call) + ")",
                           me, p);
  }
}

}  // namespace dssync
