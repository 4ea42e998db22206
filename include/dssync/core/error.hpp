#pragma once
/// \file
/// The dssync error hierarchy. Every message names the rank, the step and the values involved.

#include <stdexcept>
#include <string>

namespace dssync {

/// Base of every error dssync throws. `rank()` is the rank that raised it, or -1 when no rank applies.
class error : public std::runtime_error {
 public:
  explicit error(const std::string& what, int rank = -1) : std::runtime_error(what), rank_(rank) {}
  /// The rank that detected the error (-1 if none).
  [[nodiscard]] int rank() const noexcept { return rank_; }

 private:
  int rank_;
};

/// A wait ran past its deadline: a peer is slow, dead or never called. `peer()` is the rank waited for.
class timeout_error : public error {
 public:
  timeout_error(const std::string& what, int rank, int peer) : error(what, rank), peer_(peer) {}
  [[nodiscard]] int peer() const noexcept { return peer_; }

 private:
  int peer_;
};

/// A peer is known to have failed (it stopped, was killed, or its transport reported it dead).
class peer_failure : public error {
 public:
  peer_failure(const std::string& what, int rank, int peer) : error(what, rank), peer_(peer) {}
  /// The rank that failed.
  [[nodiscard]] int peer() const noexcept { return peer_; }

 private:
  int peer_;
};

/// Ranks disagree on something they must agree on: element count, type, op, policy or world size.
class mismatch_error : public error {
 public:
  mismatch_error(const std::string& what, int rank, int peer) : error(what, rank), peer_(peer) {}
  /// The rank whose value differs from this rank's.
  [[nodiscard]] int peer() const noexcept { return peer_; }

 private:
  int peer_;
};

/// An argument is invalid: a bad topology, a world size a policy cannot serve, a malformed schedule.
class invalid_argument : public error {
 public:
  using error::error;
};

/// A codec or transport payload is malformed: wrong length, bad header, out-of-range index.
class malformed_payload : public error {
 public:
  using error::error;
};

/// A failure deliberately injected by a test harness (the in-process transport's fault injection).
class injected_fault : public error {
 public:
  using error::error;
};

}  // namespace dssync
