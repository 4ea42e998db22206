#pragma once
// train_fmnist's --codec: a codec chosen by name at run time (one object per worker, with its
// state), counted so that the report can give the bytes it actually sent.

#include <Eigen/Core>
#include <dssync/codecs/dgc.hpp>
#include <dssync/codecs/half.hpp>
#include <dssync/codecs/onebit.hpp>
#include <dssync/codecs/powersgd.hpp>
#include <dssync/codecs/qsgd.hpp>
#include <dssync/codecs/randomk.hpp>
#include <dssync/codecs/terngrad.hpp>
#include <dssync/codecs/threshold.hpp>
#include <dssync/codecs/topk.hpp>

#include <cstddef>
#include <span>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

namespace train {

/// Codec `C`, counting the payload bytes it writes into `*sent`.
template <class C>
struct counted : C {
  explicit counted(C c) : C(std::move(c)) {}
  std::size_t* sent = nullptr;
  void encode(std::span<const float> in, std::vector<std::byte>& out) {
    const std::size_t before = out.size();
    C::encode(in, out);
    if (sent != nullptr) *sent += out.size() - before;
  }
};

namespace cd = dssync::codecs;
using any_codec = std::variant<std::monostate, counted<cd::fp16<float>>, counted<cd::bf16<float>>, counted<cd::onebit<float>>,
                               counted<cd::qsgd<float>>, counted<cd::terngrad<float>>, counted<cd::threshold<float>>,
                               counted<cd::topk<float>>, counted<cd::randomk<float>>, counted<cd::dgc<float>>,
                               counted<cd::powersgd<float>>>;

/// The codecs `--codec` knows, with their parameter.
inline const char* codec_help() {
  return "none, fp16, bf16, onebit[:bucket], qsgd[:levels], terngrad[:bucket], threshold[:tau], topk[:ratio], "
         "randomk[:ratio], dgc[:density], powersgd[:rank]";
}

/// The codec `spec` names ("topk:0.01"), counting into `sent`. \throws std::invalid_argument.
inline any_codec make_codec(const std::string& spec, std::size_t* sent) {
  const auto colon = spec.find(':');
  const std::string name = spec.substr(0, colon);
  const std::string arg = colon == std::string::npos ? "" : spec.substr(colon + 1);
  double p = 0;
  if (!arg.empty()) {
    std::size_t used = 0;
    try {
      p = std::stod(arg, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != arg.size() || !(p > 0)) throw std::invalid_argument("--codec " + spec + ": '" + arg + "' is not a positive number");
  }
  auto with = [&](auto c) {
    c.sent = sent;
    return any_codec(std::move(c));
  };
  auto whole = [&](double dflt) {
    const double v = arg.empty() ? dflt : p;
    if (v != static_cast<double>(static_cast<std::size_t>(v)))
      throw std::invalid_argument("--codec " + spec + ": '" + arg + "' is not a whole number");
    return static_cast<std::size_t>(v);
  };
  auto ratio = [&](double dflt) {
    const double v = arg.empty() ? dflt : p;
    if (v > 1) throw std::invalid_argument("--codec " + spec + ": the share kept must be in (0, 1]");
    return v;
  };
  if (name == "none") return std::monostate{};
  if (name == "fp16") return with(counted<cd::fp16<float>>(cd::fp16<float>{}));
  if (name == "bf16") return with(counted<cd::bf16<float>>(cd::bf16<float>{}));
  if (name == "onebit") return with(counted<cd::onebit<float>>(cd::onebit<float>(whole(4096))));
  if (name == "qsgd") return with(counted<cd::qsgd<float>>(cd::qsgd<float>(static_cast<std::uint32_t>(whole(16)))));
  if (name == "terngrad") return with(counted<cd::terngrad<float>>(cd::terngrad<float>(whole(4096))));
  if (name == "threshold") return with(counted<cd::threshold<float>>(cd::threshold<float>(static_cast<float>(arg.empty() ? 0.01 : p))));
  if (name == "topk") return with(counted<cd::topk<float>>(cd::topk<float>(ratio(0.01))));
  if (name == "randomk") return with(counted<cd::randomk<float>>(cd::randomk<float>(ratio(0.01))));
  if (name == "dgc") return with(counted<cd::dgc<float>>(cd::dgc<float>(ratio(0.001))));
  if (name == "powersgd") return with(counted<cd::powersgd<float>>(cd::powersgd<float>(whole(4))));
  throw std::invalid_argument("--codec '" + spec + "' is not a codec (" + std::string(codec_help()) + ")");
}

}  // namespace train
