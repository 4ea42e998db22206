#pragma once
/// \file
/// Minimal logging to stderr, switched by DSSYNC_DEBUG (see options.hpp). One line per call, written
/// whole so that lines of different ranks do not interleave.

#include <cstdio>
#include <sstream>
#include <string>

#include "dssync/core/options.hpp"

namespace dssync::detail {

template <class... Args>
void log(const options& o, log_level level, int rank, const Args&... args) {
  if (static_cast<int>(o.debug) < static_cast<int>(level)) return;
  std::ostringstream os;
  static constexpr const char* names[] = {"", "WARN", "INFO", "TRACE"};
  os << "dssync " << names[static_cast<int>(level)] << " rank " << rank << ": ";
  (os << ... << args);
  os << '\n';
  const std::string s = os.str();
  std::fwrite(s.data(), 1, s.size(), stderr);
}

}  // namespace dssync::detail
