#pragma once
/// \file
/// Link classes: what kind of cable a link of a topology's network is, and sets of them for route hints.

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dssync/core/error.hpp"

namespace dssync {

/// What kind of cable a link is (`topology::link::cls`). Route hints (`channel::links`) and tree packing
/// per class read it, so that Blink's PCIe trees stay off NVLink (Wang et al., MLSys 2020, sec. 4).
/// Models that know their cables set it (dgx1, from_nvidia_smi); the others leave it `unspecified`.
enum class link_class : std::uint8_t { unspecified, nvlink, pcie, socket, network };

[[nodiscard]] constexpr const char* to_string(link_class c) noexcept {
  switch (c) {
    case link_class::unspecified: return "unspecified";
    case link_class::nvlink: return "nvlink";
    case link_class::pcie: return "pcie";
    case link_class::socket: return "socket";
    case link_class::network: return "network";
  }
  return "?";
}

/// The class named `name` ("nvlink", "pcie", "socket", "network", "unspecified"), or nullopt.
[[nodiscard]] constexpr std::optional<link_class> link_class_named(std::string_view name) noexcept {
  for (unsigned c = 0; c <= static_cast<unsigned>(link_class::network); ++c)
    if (name == to_string(static_cast<link_class>(c))) return static_cast<link_class>(c);
  return std::nullopt;
}

/// A set of link classes, one bit per class (bit `1 << c`); 0 means every link, whatever its class.
using link_classes = std::uint32_t;

/// The set of the classes `cs`.
[[nodiscard]] constexpr link_classes classes(std::initializer_list<link_class> cs) noexcept {
  link_classes m = 0;
  for (link_class c : cs) m |= link_classes{1} << static_cast<unsigned>(c);
  return m;
}

/// Whether a link of class `c` is in the set `m` (0: every link is).
[[nodiscard]] constexpr bool allows(link_classes m, link_class c) noexcept {
  return m == 0 || (m >> static_cast<unsigned>(c) & 1u) != 0;
}

/// "pcie+socket" for a set, "any" for 0.
[[nodiscard]] inline std::string to_string_classes(link_classes m) {
  if (m == 0) return "any";
  std::string out;
  for (unsigned c = 0; c <= static_cast<unsigned>(link_class::network); ++c)
    if ((m >> c & 1u) != 0) out += (out.empty() ? "" : "+") + std::string(to_string(static_cast<link_class>(c)));
  return out;
}

/// Parses link-class sets: sets separated by ',' (packed apart, as Blink's NVLink and PCIe trees), classes
/// within a set joined by '+'. "nvlink,pcie+socket" gives {nvlink}, {pcie, socket}.
/// \throws invalid_argument naming the text and the word when a word is not a class or a set is empty.
[[nodiscard]] inline std::vector<link_classes> parse_link_sets(std::string_view text) {
  std::vector<link_classes> sets;
  std::string_view rest = text;
  while (true) {
    const auto comma = rest.find(',');
    std::string_view set = rest.substr(0, comma);
    link_classes m = 0;
    while (true) {
      const auto plus = set.find('+');
      const std::string_view word = set.substr(0, plus);
      const auto c = link_class_named(word);
      if (!c)
        throw invalid_argument("link classes '" + std::string(text) + "': '" + std::string(word) +
                               "' is not a link class (nvlink, pcie, socket, network, unspecified)");
      m |= classes({*c});
      if (plus == std::string_view::npos) break;
      set.remove_prefix(plus + 1);
    }
    sets.push_back(m);
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return sets;
}

}  // namespace dssync
