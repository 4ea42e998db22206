#pragma once
/// \file
/// `sim::timeline`: what each rank's channels did when, as recorded by the simulator, and
/// `write_chrome_trace`, which writes it as Chrome trace-event JSON (loads in Perfetto and
/// chrome://tracing).

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <ostream>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "dssync/core/chunking.hpp"
#include "dssync/core/schedule.hpp"

namespace dssync::sim {

/// A recorded run: one slice per executed step and one record per message. Times are virtual seconds.
struct timeline {
  /// One step of one channel of one rank: from the moment the channel reached it to the moment it was
  /// done. A send is done when posted (sends are non-blocking), so its slice is empty; a receive's slice
  /// spans the wait for its message, the rule-3 wait, and the local reduction when that costs time.
  struct slice {
    int rank = 0;
    std::uint32_t channel = 0;
    std::uint32_t step = 0;  ///< index in the channel's steps
    step_kind kind = step_kind::send;
    int peer = -1;
    range data{};
    double bytes = 0;
    double begin = 0, end = 0;
  };
  /// One message: posted by a send, transmitted (its last byte left the sender), arrived at the
  /// receiver (transmitted + route latency), consumed by the matching receive.
  struct message {
    int src = 0, dst = 0;
    std::uint32_t channel = 0;
    std::uint32_t step = 0;  ///< index of the send in the sender's channel
    range data{};
    double bytes = 0;
    double post = 0, transmitted = 0, arrival = 0, consumed = 0;
  };

  std::string name;                     ///< what ran, e.g. "ring on ring(8)"
  int world_size = 0;
  std::vector<std::uint32_t> channels;  ///< channel count of each rank
  std::vector<slice> slices;
  std::vector<message> messages;

  [[nodiscard]] bool empty() const noexcept { return slices.empty() && messages.empty(); }
};

namespace detail {

/// Appends `s` to `out` as a JSON string literal: quotes, backslashes and control characters escaped,
/// invalid UTF-8 replaced by U+FFFD, so that any label yields valid JSON.
inline void json_string(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  out += '"';
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
          if (c < 0x20 || c == 0x7f) {
            out += "\\u00";
            out += hex[c >> 4];
            out += hex[c & 15];
          } else {
            out += static_cast<char>(c);
          }
      }
      ++i;
      continue;
    }
    // A multi-byte UTF-8 sequence: copy it if well formed.
    std::size_t len = 0;
    std::uint32_t cp = 0;
    if ((c & 0xe0) == 0xc0) len = 2, cp = c & 0x1f;
    else if ((c & 0xf0) == 0xe0) len = 3, cp = c & 0x0f;
    else if ((c & 0xf8) == 0xf0) len = 4, cp = c & 0x07;
    bool ok = len != 0 && i + len <= s.size();
    for (std::size_t k = 1; ok && k < len; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      ok = (d & 0xc0) == 0x80;
      cp = (cp << 6) | (d & 0x3f);
    }
    if (ok) {
      const std::uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
      ok = cp >= min[len] && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff);
    }
    if (ok) {
      out.append(s.data() + i, len);
      i += len;
    } else {
      out += "\\ufffd";
      ++i;
    }
  }
  out += '"';
}

/// Appends `x` as a JSON number (shortest round-trip form; 0 for non-finite values, which JSON lacks).
inline void json_number(std::string& out, double x) {
  if (!std::isfinite(x)) x = 0;
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, x);
  out.append(buf, r.ec == std::errc{} ? r.ptr : buf);
}

inline void json_number(std::string& out, long long x) { out += std::to_string(x); }

/// "send [0,12) -> 3", as `operator<<(ostream, step)` prints it.
inline std::string step_name(step_kind k, const range& r, int peer) {
  std::ostringstream os;
  os << step{k, peer, r};
  return os.str();
}

}  // namespace detail

/// Writes `t` as Chrome trace-event JSON: an object `{"traceEvents": [...], "displayTimeUnit": "ns",
/// "otherData": {...}}`.
///  - One process per rank (`"pid"`: rank, named "rank r"), one thread per channel (`"tid"`: channel,
///    named "channel c").
///  - One complete event (`"ph": "X"`) per step, named like "send [0,12) -> 3" or
///    "recv-reduce [0,12) <- 2", with `ts`/`dur` in microseconds and args `bytes`, `peer`, `step`.
///  - One async slice (`"ph": "b"`/`"e"`, category "message") per message on the sender's process,
///    from post to arrival, so that messages in flight show even though sends do not block.
/// \throws nothing beyond what the stream throws; check the stream's state afterwards.
inline void write_chrome_trace(std::ostream& os, const timeline& t) {
  std::string out;
  out.reserve(std::size_t{1} << 16);
  constexpr double us = 1e6;
  bool first = true;
  auto open = [&] {
    if (out.size() > (std::size_t{1} << 20)) {  // stream big traces in 1 MiB pieces
      os.write(out.data(), static_cast<std::streamsize>(out.size()));
      out.clear();
    }
    out += first ? "\n" : ",\n";
    first = false;
  };
  out += "{\"displayTimeUnit\":\"ns\",\"otherData\":{\"name\":";
  detail::json_string(out, t.name);
  out += ",\"ranks\":";
  detail::json_number(out, static_cast<long long>(t.world_size));
  out += "},\"traceEvents\":[";
  for (int r = 0; r < t.world_size; ++r) {
    open();
    out += "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":" + std::to_string(r) +
           ",\"tid\":0,\"args\":{\"name\":\"rank " + std::to_string(r) + "\"}}";
    open();
    out += "{\"name\":\"process_sort_index\",\"ph\":\"M\",\"pid\":" + std::to_string(r) +
           ",\"tid\":0,\"args\":{\"sort_index\":" + std::to_string(r) + "}}";
    const std::uint32_t nc = static_cast<std::size_t>(r) < t.channels.size() ? t.channels[static_cast<std::size_t>(r)] : 0;
    for (std::uint32_t c = 0; c < nc; ++c) {
      open();
      out += "{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":" + std::to_string(r) + ",\"tid\":" + std::to_string(c) +
             ",\"args\":{\"name\":\"channel " + std::to_string(c) + "\"}}";
    }
  }
  for (const auto& s : t.slices) {
    open();
    out += "{\"name\":";
    detail::json_string(out, detail::step_name(s.kind, s.data, s.peer));
    out += ",\"cat\":\"";
    out += to_string(s.kind);
    out += "\",\"ph\":\"X\",\"pid\":" + std::to_string(s.rank) + ",\"tid\":" + std::to_string(s.channel) + ",\"ts\":";
    detail::json_number(out, s.begin * us);
    out += ",\"dur\":";
    detail::json_number(out, std::max(0.0, s.end - s.begin) * us);
    out += ",\"args\":{\"bytes\":";
    detail::json_number(out, s.bytes);
    out += ",\"peer\":" + std::to_string(s.peer) + ",\"step\":" + std::to_string(s.step) + "}}";
  }
  for (std::size_t i = 0; i < t.messages.size(); ++i) {
    const auto& m = t.messages[i];
    std::string name = "message ";
    {
      std::ostringstream ns;
      ns << m.data << " -> " << m.dst;
      name += ns.str();
    }
    const std::string id = "\"0x" + [&] {
      char buf[32];
      const auto r = std::to_chars(buf, buf + sizeof buf, static_cast<unsigned long long>(i), 16);
      return std::string(buf, r.ptr);
    }() + "\"";
    for (int phase = 0; phase < 2; ++phase) {
      open();
      out += "{\"name\":";
      detail::json_string(out, name);
      out += ",\"cat\":\"message\",\"ph\":\"";
      out += phase == 0 ? 'b' : 'e';
      out += "\",\"id\":" + id + ",\"pid\":" + std::to_string(m.src) + ",\"tid\":" + std::to_string(m.channel) +
             ",\"ts\":";
      detail::json_number(out, (phase == 0 ? m.post : m.arrival) * us);
      if (phase == 0) {
        out += ",\"args\":{\"bytes\":";
        detail::json_number(out, m.bytes);
        out += ",\"peer\":" + std::to_string(m.dst) + ",\"step\":" + std::to_string(m.step) + ",\"transmitted_us\":";
        detail::json_number(out, m.transmitted * us);
        out += ",\"consumed_us\":";
        detail::json_number(out, m.consumed * us);
        out += "}";
      }
      out += "}";
    }
  }
  out += "\n]}\n";
  os.write(out.data(), static_cast<std::streamsize>(out.size()));
}

/// The Chrome trace-event JSON of `t` as a string (see `write_chrome_trace`).
[[nodiscard]] inline std::string to_chrome_trace(const timeline& t) {
  std::ostringstream os;
  write_chrome_trace(os, t);
  return os.str();
}

}  // namespace dssync::sim
