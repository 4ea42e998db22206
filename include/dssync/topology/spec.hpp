#pragma once
/// \file
/// `topology::parse_spec`: the CLI's topology SPEC strings ("ring:8", "racks:4,4,uplink=25", "dgx1:0,1,2,5",
/// "dot:net.dot") to `topology::any_topology`, a value holding any built-in model.

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "dssync/core/error.hpp"
#include "dssync/core/topology.hpp"
#include "dssync/topology/bcube.hpp"
#include "dssync/topology/dgx1.hpp"
#include "dssync/topology/fat_tree.hpp"
#include "dssync/topology/full_mesh.hpp"
#include "dssync/topology/graph.hpp"
#include "dssync/topology/network.hpp"
#include "dssync/topology/racks.hpp"
#include "dssync/topology/ring.hpp"
#include "dssync/topology/star.hpp"

namespace dssync::detail {

inline std::string_view spec_trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

/// Splits `text` into a leading number and the rest (trimmed); nullopt if it does not start with a number.
inline std::optional<std::pair<double, std::string_view>> spec_leading_number(std::string_view text) {
  text = spec_trim(text);
  double x = 0;
  const auto r = std::from_chars(text.data(), text.data() + text.size(), x);
  if (r.ec != std::errc{} || r.ptr == text.data()) return std::nullopt;
  return std::pair{x, spec_trim(text.substr(static_cast<std::size_t>(r.ptr - text.data())))};
}

/// A bandwidth in bytes/s from text such as "100Gbps", "100Gb/s", "100 Gbit/s", "12.5GB/s" or "3e9B/s".
/// A lower-case b means bits, an upper-case B bytes; prefixes k/K, M, G, T are decimal. A plain number is
/// multiplied by `plain_unit` (1 for bytes/s, 1e9/8 for Gbit/s). nullopt unless the result is positive and
/// finite.
inline std::optional<double> parse_bandwidth_text(std::string_view text, double plain_unit) {
  const auto num = spec_leading_number(text);
  if (!num) return std::nullopt;
  auto [x, unit] = *num;
  double v = 0;
  if (unit.empty()) {
    v = x * plain_unit;
  } else {
    double scale = 1;
    if (unit.size() > 1) {
      switch (unit.front()) {
        case 'k': case 'K': scale = 1e3; break;
        case 'M': scale = 1e6; break;
        case 'G': scale = 1e9; break;
        case 'T': scale = 1e12; break;
        default: scale = 0; break;
      }
      if (scale != 0) unit.remove_prefix(1); else scale = 1;
    }
    static constexpr std::string_view bits[] = {"bps", "b/s", "bit/s", "bits/s", "Bit/s", "Bits/s"};
    static constexpr std::string_view bytes[] = {"Bps", "B/s", "byte/s", "bytes/s", "Byte/s", "Bytes/s"};
    if (std::find(std::begin(bits), std::end(bits), unit) != std::end(bits))
      v = x * scale / 8;
    else if (std::find(std::begin(bytes), std::end(bytes), unit) != std::end(bytes))
      v = x * scale;
    else
      return std::nullopt;
  }
  if (!(v > 0) || !std::isfinite(v)) return std::nullopt;
  return v;
}

/// A duration in seconds from text such as "1us", "5e-6", "0.5 ms", "100ns" (units s, ms, us, µs, ns; a plain
/// number is seconds). nullopt unless the result is finite and non-negative.
inline std::optional<double> parse_duration_text(std::string_view text) {
  const auto num = spec_leading_number(text);
  if (!num) return std::nullopt;
  const auto [x, unit] = *num;
  double scale = 0;
  if (unit.empty() || unit == "s")
    scale = 1;
  else if (unit == "ms")
    scale = 1e-3;
  else if (unit == "us" || unit == "\xC2\xB5s" || unit == "\xCE\xBCs")
    scale = 1e-6;
  else if (unit == "ns")
    scale = 1e-9;
  else
    return std::nullopt;
  const double v = x * scale;
  if (!(v >= 0) || !std::isfinite(v)) return std::nullopt;
  return v;
}

}  // namespace dssync::detail

namespace dssync::topology {

/// Every model a spec can name.
using spec_model = std::variant<ring, full_mesh, star, leaf_spine, fat_tree, bcube, dgx1, user_graph>;

/// Reads a DOT file for "dot:FILE" specs; pass `dssync::topology::read_dot_file` (dssync/topology/graphviz.hpp).
using dot_reader = std::function<user_graph(const std::string& path)>;

/// Any built-in topology model as one value: a topology (workers(), name(), validate()) with graph() and
/// racks(), forwarded to the model it holds. model() gives the model itself for its own accessors.
class any_topology {
 public:
  /// Holds `t`, one of spec_model's alternatives.
  template <class T>
    requires(!std::is_same_v<std::remove_cvref_t<T>, any_topology> && std::is_constructible_v<spec_model, T>)
  any_topology(T&& t) : m_(std::forward<T>(t)) {}  // NOLINT: implicit, like std::variant

  [[nodiscard]] int workers() const {
    return std::visit([](const auto& t) { return t.workers(); }, m_);
  }
  [[nodiscard]] std::string name() const {
    return std::visit([](const auto& t) { return std::string(t.name()); }, m_);
  }
  /// \throws invalid_argument unless `world == workers()`.
  void validate(int world) const {
    std::visit([world](const auto& t) { t.validate(world); }, m_);
  }
  [[nodiscard]] network graph() const {
    return std::visit([](const auto& t) { return t.graph(); }, m_);
  }
  [[nodiscard]] std::vector<std::vector<int>> racks() const {
    return std::visit([](const auto& t) { return t.racks(); }, m_);
  }
  /// The kind, as spelled in specs: "ring", "mesh", "star", "racks", "fattree", "bcube", "dgx1" or "dot".
  [[nodiscard]] std::string_view kind() const noexcept {
    constexpr std::string_view kinds[] = {"ring", "mesh", "star", "racks", "fattree", "bcube", "dgx1", "dot"};
    return kinds[m_.index()];
  }
  /// The model.
  [[nodiscard]] const spec_model& model() const noexcept { return m_; }
  /// The model if it is a `T`, else nullptr.
  template <class T>
  [[nodiscard]] const T* get_if() const noexcept {
    return std::get_if<T>(&m_);
  }

 private:
  spec_model m_;
};

static_assert(concepts::topology<any_topology>);

}  // namespace dssync::topology

namespace dssync::detail {

/// The state of one parse_spec call.
struct spec_parser {
  using any_topology = topology::any_topology;
  using link = topology::link;
  std::string spec;
  std::string kind;
  std::vector<std::string> numbers;               // positional items
  std::map<std::string, std::string> options;     // key=value items
  std::vector<std::string> order;                 // option keys in order
  bool nvlink_only = false;

  [[noreturn]] void fail(const std::string& what) const {
    throw invalid_argument("topology spec '" + spec + "': " + what);
  }

  int integer(const std::string& s, const char* what) const {
    int x = 0;
    const auto r = std::from_chars(s.data(), s.data() + s.size(), x);
    if (r.ec == std::errc::result_out_of_range) fail(std::string(what) + " '" + s + "' is out of range");
    if (r.ec != std::errc{} || r.ptr != s.data() + s.size()) fail(std::string(what) + " '" + s + "' is not an integer");
    return x;
  }

  void expect_numbers(std::size_t n, const std::string& usage) const {
    if (numbers.size() == n) return;
    std::string got;
    for (const auto& x : numbers) got += (got.empty() ? "'" : ", '") + x + "'";
    fail(kind + " needs " + usage + ", got " + std::to_string(numbers.size()) + (numbers.size() == 1 ? " number" : " numbers") +
         (got.empty() ? "" : " (" + got + ")"));
  }

  void allow(std::initializer_list<std::string_view> keys) const {
    for (const auto& k : order)
      if (std::find(keys.begin(), keys.end(), k) == keys.end()) {
        std::string list;
        for (auto x : keys) list += (list.empty() ? "" : ", ") + std::string(x);
        fail("unknown option '" + k + "' for " + kind + " (options: " + list + ")");
      }
  }

  std::optional<double> bandwidth(const std::string& key) const {
    const auto it = options.find(key);
    if (it == options.end()) return std::nullopt;
    const auto v = parse_bandwidth_text(it->second, 1e9 / 8);
    if (!v)
      fail("option " + key + "=" + it->second + ": '" + it->second +
           "' is not a positive bandwidth (Gbit/s, or with a unit as in 25GB/s or 100Gbps)");
    return v;
  }

  std::optional<double> latency() const {
    const auto it = options.find("lat");
    if (it == options.end()) return std::nullopt;
    const auto v = parse_duration_text(it->second);
    if (!v)
      fail("option lat=" + it->second + ": '" + it->second +
           "' is not a non-negative latency (seconds, or with a unit as in 5us)");
    return v;
  }

  /// `base` with the bw= and lat= options, then the tier option `key` (if any), applied.
  link tier(link base, const std::string& key = {}) const {
    if (auto b = bandwidth("bw")) base.bandwidth = *b;
    if (!key.empty())
      if (auto b = bandwidth(key)) base.bandwidth = *b;
    if (auto l = latency()) base.latency = *l;
    return base;
  }

  template <class F>
  any_topology build(F&& make) const {
    try {
      return any_topology(make());
    } catch (const invalid_argument& e) {
      fail(e.what());
    }
  }

  any_topology parse(std::string_view text, const topology::dot_reader& read_dot) {
    spec = std::string(text);
    text = spec_trim(text);
    if (text.empty()) fail("empty spec (expected e.g. ring:8, racks:4,4, bcube:3,2, dgx1 or dot:FILE)");
    const auto colon = text.find(':');
    const std::string_view head = spec_trim(text.substr(0, colon));
    kind.clear();
    for (char c : head) kind += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    const std::string_view rest = colon == std::string_view::npos ? std::string_view{} : text.substr(colon + 1);

    if (kind == "dot") {
      const std::string path(spec_trim(rest));
      if (path.empty()) fail("dot needs a file name, as in dot:network.dot");
      if (!read_dot)
        fail("reading a DOT file needs a reader: pass dssync::topology::read_dot_file "
             "(dssync/topology/graphviz.hpp) to parse_spec");
      return build([&] { return read_dot(path); });
    }

    static constexpr std::string_view kinds[] = {"ring", "star", "mesh", "full_mesh", "racks",
                                                 "fattree", "fat_tree", "bcube", "dgx1"};
    if (std::find(std::begin(kinds), std::end(kinds), kind) == std::end(kinds))
      fail("unknown topology kind '" + std::string(head) +
           "' (kinds: ring, star, mesh, racks, fattree, bcube, dgx1, dot)");

    if (!spec_trim(rest).empty()) {
      std::size_t at = 0;
      while (true) {
        const auto comma = rest.find(',', at);
        const std::string_view raw = rest.substr(at, comma == std::string_view::npos ? rest.npos : comma - at);
        const std::string item(spec_trim(raw));
        if (item.empty()) fail("empty item in '" + std::string(rest) + "' (a stray comma?)");
        if (const auto eq = item.find('='); eq != std::string::npos) {
          std::string key(spec_trim(std::string_view(item).substr(0, eq)));
          for (auto& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
          const std::string value(spec_trim(std::string_view(item).substr(eq + 1)));
          if (key.empty()) fail("option '" + item + "' has no name");
          if (value.empty()) fail("option '" + key + "' has no value");
          if (!options.emplace(key, value).second) fail("option '" + key + "' is given twice");
          order.push_back(key);
        } else if (kind == "dgx1" && item == "nvlink_only") {
          nvlink_only = true;
        } else {
          numbers.push_back(item);
        }
        if (comma == std::string_view::npos) break;
        at = comma + 1;
      }
    }

    if (kind == "ring" || kind == "star" || kind == "mesh" || kind == "full_mesh") {
      expect_numbers(1, "the worker count, as in " + kind + ":8");
      allow({"bw", "lat"});
      const int n = integer(numbers[0], "worker count");
      const link l = tier(link{});
      if (kind == "ring") return build([&] { return topology::ring(n, l); });
      if (kind == "star") return build([&] { return topology::star(n, l); });
      return build([&] { return topology::full_mesh(n, l); });
    }
    if (kind == "racks") {
      expect_numbers(2, "the rack count and the workers per rack, as in racks:4,4");
      allow({"bw", "intra", "uplink", "lat"});
      const int c = integer(numbers[0], "rack count");
      const int g = integer(numbers[1], "workers per rack");
      const link intra = tier(link{}, "intra"), uplink = tier(link{}, "uplink");
      return build([&] { return topology::leaf_spine(c, g, intra, uplink); });
    }
    if (kind == "fattree" || kind == "fat_tree") {
      expect_numbers(1, "k, as in fattree:4");
      allow({"bw", "lat"});
      const int k = integer(numbers[0], "k");
      const link l = tier(link{});
      return build([&] { return topology::fat_tree(k, l); });
    }
    if (kind == "bcube") {
      expect_numbers(2, "n and k, as in bcube:3,2");
      allow({"bw", "lat"});
      const int n = integer(numbers[0], "n");
      const int k = integer(numbers[1], "k");
      const link l = tier(link{});
      return build([&] { return topology::bcube(n, k, l); });
    }
    // dgx1
    if (numbers.size() > static_cast<std::size_t>(topology::dgx1::gpu_count))
      fail("dgx1 takes at most 8 GPU ids, got " + std::to_string(numbers.size()));
    allow({"bw", "nvlink", "pcie", "qpi", "lat"});
    std::vector<int> gpus;
    for (const auto& s : numbers) gpus.push_back(integer(s, "GPU id"));
    if (gpus.empty()) gpus = {0, 1, 2, 3, 4, 5, 6, 7};
    const link nv = tier(topology::dgx1::default_nvlink, "nvlink");
    const link pcie = tier(topology::dgx1::default_pcie, "pcie");
    const link qpi = tier(topology::dgx1::default_qpi, "qpi");
    return build([&] {
      topology::dgx1 d(gpus, nv, pcie, qpi);
      return nvlink_only ? d.nvlink_only() : d;
    });
  }
};

}  // namespace dssync::detail

namespace dssync::topology {

/// Parses a topology SPEC: `KIND[:ITEM,ITEM,...]`, where items are numbers and `key=value` options.
///
/// | spec                 | model                                                             |
/// | -------------------- | ----------------------------------------------------------------- |
/// | `ring:N`             | ring(N)                                                           |
/// | `star:N`             | star(N)                                                           |
/// | `mesh:N`             | full_mesh(N) (also `full_mesh:N`)                                 |
/// | `racks:C,G`          | leaf_spine(C, G): C racks of G workers                            |
/// | `fattree:K`          | fat_tree(K) (also `fat_tree:K`)                                   |
/// | `bcube:N,K`          | bcube(N, K)                                                       |
/// | `dgx1[:ID,...]`      | dgx1(all 8 GPUs, or the listed ones); item `nvlink_only` drops PCIe |
/// | `dot:FILE`           | read_dot_file(FILE), through `read_dot`                           |
///
/// Options: `bw=` sets every link's bandwidth in Gbit/s (a unit may be given: `bw=25GB/s`); `lat=` every
/// link's latency in seconds (or `lat=5us`). Tiers: `racks` takes `intra=` and `uplink=`; `dgx1` takes
/// `nvlink=` (per lane), `pcie=` and `qpi=`. Tier options override `bw=`. Unset links keep the models'
/// defaults (topology::link: 100 Gbit/s, 1 us; dgx1: 25 GB/s per NVLink lane, 12 GB/s PCIe, 19.2 GB/s QPI).
/// `read_dot` reads `dot:` specs; without it they are rejected (the DOT reader needs Boost.Graph's library).
///
/// \throws invalid_argument naming the spec and the offending token: an unknown kind or option, a missing,
/// extra or malformed number, a bad bandwidth or latency, or an error of the model itself.
[[nodiscard]] inline any_topology parse_spec(std::string_view spec, const dot_reader& read_dot = {}) {
  return detail::spec_parser{}.parse(spec, read_dot);
}

}  // namespace dssync::topology
