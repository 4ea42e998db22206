// libFuzzer target: the loaders of the codecs' saved states (error feedback, the random streams, DGC, PowerSGD). A load
// throws nothing but malformed_payload and leaves the state as it was when it does; a state it accepts
// saves back to the same bytes.
#include <dssync/codecs/dgc.hpp>
#include <dssync/codecs/error_feedback.hpp>
#include <dssync/codecs/powersgd.hpp>
#include <dssync/codecs/qsgd.hpp>
#include <dssync/codecs/randomk.hpp>
#include <dssync/codecs/terngrad.hpp>

#include "harness.hpp"

namespace {

template <class State>
void load_one(std::span<const std::byte> w, State s, bool (*unchanged)(const State&, const State&)) {
  const State before = s;
  try {
    s.load(w);
  } catch (const dssync::malformed_payload&) {
    if (!unchanged(s, before)) dssync_fuzz::fail("a load threw malformed_payload but changed the state");
    return;
  }
  std::vector<std::byte> again;
  s.save(again);
  if (again.size() != w.size() || (!w.empty() && std::memcmp(again.data(), w.data(), w.size()) != 0))
    dssync_fuzz::fail("a loaded state does not save back to the same bytes");
}

template <class T>
bool same_residual(const dssync::codecs::error_feedback<T>& a, const dssync::codecs::error_feedback<T>& b) {
  return a.residual.size() == b.residual.size() &&
         (a.residual.empty() || std::memcmp(a.residual.data(), b.residual.data(), a.residual.size() * sizeof(T)) == 0);
}

template <class T>
bool same_dgc(const dssync::codecs::dgc_state<T>& a, const dssync::codecs::dgc_state<T>& b) {
  return a.step == b.step && a.momentum == b.momentum && a.accumulated == b.accumulated;
}

template <class T>
bool same_powersgd(const dssync::codecs::powersgd_state<T>& a, const dssync::codecs::powersgd_state<T>& b) {
  return a.seed == b.seed && a.step == b.step && a.residual == b.residual && a.q == b.q;
}

template <class Rng>
bool same_stream(const Rng& a, const Rng& b) {
  return a.seed == b.seed && a.step == b.step;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace cd = dssync::codecs;
  const std::span<const std::byte> w(reinterpret_cast<const std::byte*>(data), size);
  cd::error_feedback<float> f;
  f.residual = {1.0f, -2.0f, 3.0f};
  load_one(w, f, &same_residual<float>);
  load_one(w, cd::error_feedback<double>{}, &same_residual<double>);
  cd::dgc_state<float> g;
  g.step = 3;
  g.momentum = {1.0f, 2.0f};
  g.accumulated = {3.0f, 4.0f};
  load_one(w, g, &same_dgc<float>);
  load_one(w, cd::dgc_state<double>{}, &same_dgc<double>);
  cd::powersgd_state<float> ps;
  ps.seed = 1, ps.step = 2, ps.residual = {1.0f, 2.0f, 0.0f, 0.0f}, ps.q = {5.0f, 6.0f};
  load_one(w, ps, &same_powersgd<float>);
  load_one(w, cd::powersgd_state<double>{}, &same_powersgd<double>);
  load_one(w, cd::qsgd_state{5, 6}, &same_stream<cd::qsgd_state>);
  load_one(w, cd::terngrad_state{7, 8}, &same_stream<cd::terngrad_state>);
  load_one(w, cd::randomk_state{9, 10}, &same_stream<cd::randomk_state>);
  return 0;
}
