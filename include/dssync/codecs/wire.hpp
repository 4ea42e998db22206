#pragma once
/// \file
/// The wire format every framed codec shares: a 24-byte header, then the codec's payload.
///
/// Header, all fields little-endian:
///
/// | offset | size | field                                                            |
/// |--------|------|------------------------------------------------------------------|
/// | 0      | 2    | magic "DS" (0x44 0x53)                                           |
/// | 2      | 1    | codec id (`codecs::codec_id`)                                    |
/// | 3      | 1    | format version of that codec                                     |
/// | 4      | 4    | a codec parameter (onebit, terngrad: bucket; topk, threshold, randomk: entries; qsgd: s; powersgd: rank) |
/// | 8      | 8    | element count                                                    |
/// | 16     | 8    | payload length in bytes (what follows the header, exactly)       |
///
/// `read_header` checks every field against what the decoder expects and the bytes it was given, and
/// raises `malformed_payload` naming the field and both values; decoders then read the payload through a
/// `reader`, whose every read is bounds-checked. A payload is never trusted: it may come from another
/// rank, a file or a fuzzer.

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "dssync/core/error.hpp"

namespace dssync::codecs {

static_assert(std::endian::native == std::endian::little,
              "dssync codecs write little-endian payloads with memcpy; big-endian hosts are not supported");

/// The codec ids of the header. Values are part of the wire format: never reuse or renumber one.
enum class codec_id : std::uint8_t {
  fp16 = 1,
  bf16 = 2,
  onebit = 3,
  topk = 4,
  qsgd = 5,
  terngrad = 6,
  threshold = 7,
  randomk = 8,
  powersgd = 9,
  error_feedback_state = 100,
  qsgd_state = 101,
  terngrad_state = 102,
  randomk_state = 103,
  dgc_state = 104,
  powersgd_state = 105,
};

[[nodiscard]] constexpr const char* to_string(codec_id c) noexcept {
  switch (c) {
    case codec_id::fp16: return "fp16";
    case codec_id::bf16: return "bf16";
    case codec_id::onebit: return "onebit";
    case codec_id::topk: return "topk";
    case codec_id::qsgd: return "qsgd";
    case codec_id::terngrad: return "terngrad";
    case codec_id::threshold: return "threshold";
    case codec_id::randomk: return "randomk";
    case codec_id::powersgd: return "powersgd";
    case codec_id::powersgd_state: return "powersgd state";
    case codec_id::randomk_state: return "randomk state";
    case codec_id::dgc_state: return "dgc state";
    case codec_id::terngrad_state: return "terngrad state";
    case codec_id::qsgd_state: return "qsgd state";
    case codec_id::error_feedback_state: return "error-feedback state";
  }
  return "?";
}

/// Bytes of the header.
inline constexpr std::size_t header_bytes = 24;

/// A parsed header.
struct header {
  codec_id id{};
  std::uint8_t version = 0;
  std::uint32_t param = 0;
  std::uint64_t count = 0;
  std::uint64_t payload = 0;
};

/// Appends a header to `out`.
inline void write_header(std::vector<std::byte>& out, const header& h) {
  const auto at = out.size();
  out.resize(at + header_bytes);
  std::byte* p = out.data() + at;
  p[0] = std::byte{0x44};
  p[1] = std::byte{0x53};
  p[2] = static_cast<std::byte>(h.id);
  p[3] = static_cast<std::byte>(h.version);
  std::memcpy(p + 4, &h.param, 4);
  std::memcpy(p + 8, &h.count, 8);
  std::memcpy(p + 16, &h.payload, 8);
}

/// Overwrites the payload length of the header that starts at `out[at]` (a codec that learns its payload
/// size while encoding).
inline void patch_payload_length(std::vector<std::byte>& out, std::size_t at, std::uint64_t payload) {
  std::memcpy(out.data() + at + 16, &payload, 8);
}

/// Parses and checks the header of `w`: magic, codec id and version as expected, the element count equal
/// to `count`, the payload length equal to the bytes that follow.
/// \throws malformed_payload naming the codec, the field and both values.
[[nodiscard]] inline header read_header(std::span<const std::byte> w, codec_id id, std::uint8_t version,
                                        std::uint64_t count) {
  const std::string who = std::string("codecs::") + to_string(id) + ": ";
  if (w.size() < header_bytes)
    throw malformed_payload(who + "payload of " + std::to_string(w.size()) + " bytes is shorter than the " +
                            std::to_string(header_bytes) + "-byte header");
  if (w[0] != std::byte{0x44} || w[1] != std::byte{0x53})
    throw malformed_payload(who + "bad magic 0x" + std::to_string(static_cast<unsigned>(w[0])) + ",0x" +
                            std::to_string(static_cast<unsigned>(w[1])) + " (expected \"DS\")");
  header h;
  h.id = static_cast<codec_id>(w[2]);
  h.version = static_cast<std::uint8_t>(w[3]);
  std::memcpy(&h.param, w.data() + 4, 4);
  std::memcpy(&h.count, w.data() + 8, 8);
  std::memcpy(&h.payload, w.data() + 16, 8);
  if (h.id != id)
    throw malformed_payload(who + "codec id " + std::to_string(static_cast<unsigned>(h.id)) + " in the header, expected " +
                            std::to_string(static_cast<unsigned>(id)));
  if (h.version != version)
    throw malformed_payload(who + "format version " + std::to_string(h.version) + ", this decoder reads version " +
                            std::to_string(version));
  if (h.count != count)
    throw malformed_payload(who + "header says " + std::to_string(h.count) + " elements, the output has " +
                            std::to_string(count));
  if (h.payload != w.size() - header_bytes)
    throw malformed_payload(who + "header says a payload of " + std::to_string(h.payload) + " bytes, " +
                            std::to_string(w.size() - header_bytes) + " follow it");
  return h;
}

/// Bounds-checked sequential reads of a payload.
class reader {
 public:
  reader(std::span<const std::byte> w, const char* who) : w_(w), who_(who) {}

  /// `n` raw bytes. \throws malformed_payload if fewer remain.
  [[nodiscard]] std::span<const std::byte> bytes(std::size_t n) {
    if (n > w_.size() - at_)
      throw malformed_payload(std::string(who_) + ": payload truncated: " + std::to_string(n) + " bytes needed at offset " +
                              std::to_string(at_) + ", " + std::to_string(w_.size() - at_) + " left");
    const auto s = w_.subspan(at_, n);
    at_ += n;
    return s;
  }
  /// One trivially copyable value.
  template <class V>
  [[nodiscard]] V value() {
    V v;
    std::memcpy(&v, bytes(sizeof(V)).data(), sizeof(V));
    return v;
  }
  /// An unsigned LEB128 varint of at most 64 bits. \throws malformed_payload if truncated, longer than
  /// 10 bytes, or overflowing 64 bits.
  [[nodiscard]] std::uint64_t varint() {
    std::uint64_t v = 0;
    for (unsigned shift = 0;; shift += 7) {
      if (at_ >= w_.size())
        throw malformed_payload(std::string(who_) + ": payload truncated inside a varint at offset " + std::to_string(at_));
      const auto b = static_cast<std::uint8_t>(w_[at_++]);
      if (shift == 63 && (b & 0x7e) != 0)
        throw malformed_payload(std::string(who_) + ": varint at offset " + std::to_string(at_ - 1) + " overflows 64 bits");
      v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return v;
      if (shift == 63)
        throw malformed_payload(std::string(who_) + ": varint at offset " + std::to_string(at_ - 1) +
                                " is longer than 10 bytes");
    }
  }
  /// Bytes not read yet.
  [[nodiscard]] std::size_t left() const noexcept { return w_.size() - at_; }
  /// \throws malformed_payload if bytes remain (a payload must be consumed exactly).
  void expect_end() const {
    if (left() != 0)
      throw malformed_payload(std::string(who_) + ": " + std::to_string(left()) + " stray bytes after the payload");
  }

 private:
  std::span<const std::byte> w_;
  const char* who_;
  std::size_t at_ = 0;
};

/// Appends `v` as an unsigned LEB128 varint.
inline void write_varint(std::vector<std::byte>& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<std::byte>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<std::byte>(v));
}

/// Appends increasing indices as unsigned LEB128 varints: the first as itself, each next as its gap
/// minus one (topk, threshold).
inline void write_index_gaps(std::vector<std::byte>& out, std::span<const std::uint32_t> index) {
  std::uint64_t prev = 0;
  for (std::size_t j = 0; j < index.size(); ++j) {
    write_varint(out, j == 0 ? index[j] : index[j] - prev - 1);
    prev = index[j];
  }
}

/// Reads `m` indices written by `write_index_gaps`, each below `n`.
/// \throws malformed_payload naming `who` for an index at or past `n`, a bad varint or a truncation, and
///   before allocating, for `m` above the bytes left (each index takes at least one).
[[nodiscard]] inline std::vector<std::uint32_t> read_index_gaps(reader& rd, std::size_t m, std::size_t n,
                                                                const char* who) {
  if (m > rd.left())
    throw malformed_payload(std::string(who) + ": payload truncated: " + std::to_string(m) + " entries need at least " +
                            std::to_string(m) + " index bytes, " + std::to_string(rd.left()) + " are left");
  std::vector<std::uint32_t> index(m);
  std::uint64_t next = 0;  // the smallest index the next entry may have
  for (std::size_t j = 0; j < m; ++j) {
    const std::uint64_t gap = rd.varint();
    if (gap >= n - next)
      throw malformed_payload(std::string(who) + ": entry " + std::to_string(j) + " is " + std::to_string(gap) +
                              " past index " + std::to_string(next) + ", beyond the last element " +
                              std::to_string(n - 1));
    next += gap + 1;
    index[j] = static_cast<std::uint32_t>(next - 1);
  }
  return index;
}

/// Reads the header of a saved state of elements `T` (codec id `id`, `version`), whose element count is
/// the state's own: the count field is read from the bytes, then checked with the rest of the header,
/// and the header's parameter must be `sizeof(T)`. `who` names the state in the errors
/// ("codecs::dgc"). \throws malformed_payload.
template <class T>
[[nodiscard]] header read_state_header(std::span<const std::byte> w, codec_id id, std::uint8_t version,
                                       const char* who) {
  if (w.size() < header_bytes)
    throw malformed_payload(std::string(who) + ": a state of " + std::to_string(w.size()) +
                            " bytes is shorter than its header");
  std::uint64_t n = 0;
  std::memcpy(&n, w.data() + 8, 8);
  const header h = read_header(w, id, version, n);
  if (h.param != sizeof(T))
    throw malformed_payload(std::string(who) + ": the state holds elements of " + std::to_string(h.param) +
                            " bytes, this codec's are " + std::to_string(sizeof(T)));
  return h;
}

/// Adds the little-endian values `values` (one `T` each, unaligned) at `index` into `out`: the decode of a
/// sparse payload (topk, randomk, dgc). The indices were validated against `out.size()` by the parser.
template <class T>
void scatter_add(std::span<const std::uint32_t> index, std::span<const std::byte> values, std::span<T> out) {
  for (std::size_t j = 0; j < index.size(); ++j) {
    T v;
    std::memcpy(&v, values.data() + j * sizeof(T), sizeof(T));
    out[index[j]] += v;
  }
}

/// Appends the bytes of `v`.
template <class V>
void write_value(std::vector<std::byte>& out, const V& v) {
  const auto at = out.size();
  out.resize(at + sizeof(V));
  std::memcpy(out.data() + at, &v, sizeof(V));
}

}  // namespace dssync::codecs
