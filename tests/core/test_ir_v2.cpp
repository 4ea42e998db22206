// IR v2: scratch buffers, local steps and messages of run-time length, through the verifier, the
// executor (in-process and simulated transports) and the plan simulator.

#include <doctest/doctest.h>

#include <dssync/sim.hpp>

#include "test_support.hpp"

namespace algo = dssync::algorithms;
namespace topo = dssync::topology;
namespace tsim = dssync::transport::sim;
using dssync::buffer_kind;
using dssync::local_step;
using dssync::range;
using dssync::schedule;
using dssync::semantics;
using dssync::step;
using dssync::step_kind;
using dssync::user_buffer;
using dssync::variable_message;
using dssync_test::contains;

namespace {

schedule make(int n, std::size_t count, semantics kind = semantics::allreduce, std::size_t channels = 1) {
  schedule s;
  s.policy = "hand-built";
  s.world_size = n;
  s.count = count;
  s.kind = kind;
  s.ranks.resize(static_cast<std::size_t>(n));
  for (auto& r : s.ranks) r.channels.resize(channels);
  return s;
}

std::vector<step>& steps(schedule& s, int rank, std::size_t ch = 0) {
  return s.ranks.at(static_cast<std::size_t>(rank)).channels.at(ch).steps;
}

/// A codec hook for tests: the payload is a 4-byte element count, then the elements as they are. Its
/// payload length depends on the data (`trim` drops trailing zeros), so messages really are of
/// run-time length; `corrupt` makes this rank's encoder write a count that does not match.
template <class E>
struct packing_hook final : dssync::codec_hook<E> {
  bool trim = true;
  bool corrupt = false;
  int encodes = 0;
  [[nodiscard]] std::string_view name() const override { return "packing"; }
  [[nodiscard]] std::size_t max_encoded_bytes(std::size_t n) const override { return 4 + n * sizeof(E); }
  std::size_t encode(std::span<const E> in, std::span<std::byte> out) override {
    ++encodes;
    std::size_t m = in.size();
    if (trim)
      while (m > 0 && in[m - 1] == E{}) --m;
    const auto k = static_cast<std::uint32_t>(corrupt ? m + 1000 : m);
    std::memcpy(out.data(), &k, 4);
    if (m > 0) std::memcpy(out.data() + 4, in.data(), m * sizeof(E));
    return 4 + m * sizeof(E);
  }
  void decode(std::span<const std::byte> in, std::span<E> out) override {
    std::fill(out.begin(), out.end(), E{});
    decode_add(in, out);
  }
  void decode_add(std::span<const std::byte> in, std::span<E> out) override {
    std::uint32_t k = 0;
    if (in.size() < 4) throw dssync::malformed_payload("packing: " + std::to_string(in.size()) + " bytes, no count");
    std::memcpy(&k, in.data(), 4);
    if (k > out.size() || in.size() != 4 + std::size_t{k} * sizeof(E))
      throw dssync::malformed_payload("packing: count " + std::to_string(k) + " does not fit " +
                                      std::to_string(in.size()) + " bytes and " + std::to_string(out.size()) +
                                      " elements");
    for (std::size_t i = 0; i < k; ++i) {
      E v;
      std::memcpy(&v, in.data() + 4 + i * sizeof(E), sizeof(E));
      out[i] = static_cast<E>(out[i] + v);
    }
  }
};

}  // namespace

TEST_SUITE_BEGIN("ir-v2");

TEST_CASE("verifier: the allgather of encoded payloads is an allreduce for every world size, whole and per rank") {
  for (int n : {1, 2, 3, 5, 8, 16, 33}) {
    for (std::size_t count : {0, 1, 7, 100}) {
      CAPTURE(n);
      CAPTURE(count);
      const auto s = algo::encoded_allgather::plan(n, count, 4 + count * 4, "packing");
      const auto v = dssync::verify(s);
      CHECK_MESSAGE(v.ok, v.message);
      CHECK(v.messages == static_cast<std::size_t>(n) * static_cast<std::size_t>(n - 1));
      CHECK(v.bytes_bound == static_cast<std::size_t>(n) * static_cast<std::size_t>(n - 1) * (4 + count * 4));
      CHECK(s.buffers.size() == 1);
      for (int r = 0; r < n; ++r) {
        const auto part = algo::encoded_allgather::plan(n, count, 4 + count * 4, "packing", 0, r);
        CHECK(part.ranks[static_cast<std::size_t>(r)] == s.ranks[static_cast<std::size_t>(r)]);
      }
    }
  }
}

TEST_CASE("verifier: local copy, reduce and scale through a scratch element buffer") {
  // Rank 0 and 1 each copy their data to scratch, swap the scratch copies, and reduce the received copy
  // into their data: an allreduce of 2 ranks through scratch buffers.
  auto s = make(2, 6);
  const auto b = s.add_buffer(buffer_kind::elements, 12);
  for (int r = 0; r < 2; ++r) {
    auto& st = steps(s, r);
    st.push_back(local_step(step_kind::copy, b, {0, 6}, user_buffer, {0, 6}));
    st.push_back(step{step_kind::send, 1 - r, {0, 6}, 0, b});
    st.push_back(step{step_kind::recv_copy, 1 - r, {6, 6}, 0, b});
    st.push_back(local_step(step_kind::reduce, user_buffer, {0, 6}, b, {6, 6}));
    auto sc = local_step(step_kind::scale, user_buffer, {0, 6}, user_buffer, {});
    sc.peer = 2;
    st.push_back(sc);
  }
  const auto v = dssync::verify(s);
  CHECK_MESSAGE(v.ok, v.message);
  CHECK(dssync::fingerprint(s) != dssync::fingerprint(make(2, 6)));
  const std::string printed = dssync::to_string(s);
  CHECK(contains(printed, "b1: 12 elements"));
  CHECK(contains(printed, "copy b1[0,6) <- [0,6)"));
  CHECK(contains(printed, "scale [0,6) / 2"));

  SUBCASE("a reduce that counts a contribution twice is named") {
    steps(s, 0).push_back(local_step(step_kind::reduce, user_buffer, {0, 6}, b, {6, 6}));
    const auto bad = dssync::verify(s);
    CHECK_FALSE(bad.ok);
    CHECK(contains(bad.message, "counts the contribution of rank 1 twice"));
  }
  SUBCASE("rule 3 holds for local writes: overwriting a slot still being sent waits for its receiver") {
    // Rank 0 overwrites the scratch range it is sending before rank 1 takes it: it must wait, and the
    // verifier proves the wait resolves (rank 1 receives first).
    steps(s, 0).insert(steps(s, 0).begin() + 2, local_step(step_kind::copy, b, {0, 6}, user_buffer, {0, 6}));
    const auto v2 = dssync::verify(s);
    CHECK_MESSAGE(v2.ok, v2.message);
  }
}

TEST_CASE("verifier: buffers, slots and messages of run-time length are checked") {
  auto base = [] {
    auto s = make(2, 4);
    const auto b = s.add_buffer(buffer_kind::bytes, 64);
    for (int r = 0; r < 2; ++r) {
      auto& st = steps(s, r);
      const range mine{static_cast<std::size_t>(r) * 32, 32}, theirs{static_cast<std::size_t>(1 - r) * 32, 32};
      st.push_back(local_step(step_kind::encode, b, mine, user_buffer, {0, 4}));
      st.push_back(variable_message(step_kind::send, 1 - r, b, mine));
      st.push_back(variable_message(step_kind::recv_copy, 1 - r, b, theirs));
      st.push_back(local_step(step_kind::decode, user_buffer, {0, 4}, b, {0, 32}));
      st.push_back(local_step(step_kind::decode_add, user_buffer, {0, 4}, b, {32, 32}));
    }
    return s;
  };
  {
    const auto v = dssync::verify(base());
    CHECK_MESSAGE(v.ok, v.message);
  }
  auto fails_with = [](const schedule& s, std::string_view what) {
    const auto v = dssync::verify(s);
    CHECK_FALSE(v.ok);
    CHECK_MESSAGE(contains(v.message, what), v.message);
  };
  {
    auto s = base();
    steps(s, 1)[3].src = {0, 16};  // not the slot's exact range
    fails_with(s, "decodes byte slot buffer 1 [0,16), which no encode or receive has written");
  }
  {
    auto s = base();
    steps(s, 1)[2].kind = step_kind::recv_reduce;
    fails_with(s, "received by copy, never reduced");
  }
  {
    auto s = base();
    steps(s, 0)[1].buf = 2;
    fails_with(s, "names buffer 2, but the plan declares 1 scratch buffer(s)");
  }
  {
    auto s = base();
    steps(s, 0)[1].variable = false;
    fails_with(s, "a fixed-length message cannot name a byte buffer");
  }
  {
    auto s = base();
    steps(s, 0)[0].src = {0, 3};  // 3 elements encoded, decoded into 4
    fails_with(s, "decodes a payload of 3 elements into 4");
  }
  {
    auto s = base();
    steps(s, 1)[2].data = {0, 16};  // bound 16 against the sender's 32
    fails_with(s, "the lengths differ (16 vs 32)");
  }
  {
    auto s = base();
    steps(s, 0)[4].data = {0, 5};
    fails_with(s, "range ends past the buffer of 4 elements");
  }
  {
    auto s = base();
    steps(s, 0).erase(steps(s, 0).begin());  // rank 0 sends a slot it never encoded
    fails_with(s, "sends byte slot buffer 1 [0,32), which no encode or receive has written");
  }
  {
    auto s = base();
    auto sc = local_step(step_kind::scale, user_buffer, {0, 4}, user_buffer, {});
    sc.peer = 0;
    steps(s, 0).push_back(sc);
    fails_with(s, "scale needs a divisor of at least 1");
  }
  {
    auto s = base();
    steps(s, 0)[3].kind = step_kind::decode_add;  // adds its own payload to its own data
    fails_with(s, "counts the contribution of rank 0 twice");
  }
  {
    // Two channels of one rank racing on a scratch range.
    auto s = make(2, 4, semantics::allreduce, 2);
    const auto b = s.add_buffer(buffer_kind::elements, 4);
    steps(s, 0, 0).push_back(local_step(step_kind::copy, b, {0, 4}, user_buffer, {0, 4}));
    steps(s, 0, 1).push_back(local_step(step_kind::reduce, user_buffer, {0, 4}, b, {0, 4}));
    fails_with(s, "writes on another channel");
  }
}

TEST_CASE("executor: local steps through scratch buffers on the in-process transport, every element type") {
  auto plan = [] {
    auto s = make(2, 6);
    const auto b = s.add_buffer(buffer_kind::elements, 12);
    for (int r = 0; r < 2; ++r) {
      auto& st = steps(s, r);
      st.push_back(local_step(step_kind::copy, b, {0, 6}, user_buffer, {0, 6}));
      st.push_back(step{step_kind::send, 1 - r, {0, 6}, 0, b});
      st.push_back(step{step_kind::recv_copy, 1 - r, {6, 6}, 0, b});
      st.push_back(local_step(step_kind::reduce, user_buffer, {0, 6}, b, {6, 6}));
      auto sc = local_step(step_kind::scale, user_buffer, {0, 6}, user_buffer, {});
      sc.peer = 2;
      st.push_back(sc);
    }
    return s;
  }();
  REQUIRE(dssync::verify(plan).ok);
  auto check = [&](auto zero) {
    using T = decltype(zero);
    std::vector<std::vector<T>> out(2);
    const auto errs = dssync_test::run_world(2, [&](auto& comm) {
      std::vector<T> d(6);
      for (int i = 0; i < 6; ++i) d[static_cast<std::size_t>(i)] = static_cast<T>(10 * comm.rank() + 2 * i);
      dssync::synchronize(comm, plan, d, dssync::ops::sum{}, dssync_test::test_options());
      out[static_cast<std::size_t>(comm.rank())] = d;
    });
    REQUIRE_MESSAGE(dssync_test::describe_errors(errs).empty(), dssync_test::describe_errors(errs));
    for (int i = 0; i < 6; ++i) CHECK(out[0][static_cast<std::size_t>(i)] == static_cast<T>((10 + 4 * i) / 2));
    CHECK(out[0] == out[1]);
  };
  check(float{});
  check(double{});
  check(std::int32_t{});
  check(std::int64_t{});
  check(std::uint8_t{});
}

TEST_CASE("executor: the allgather of payloads of run-time length, on inproc and sim, 1..8 ranks, any segment size") {
  for (int n : {1, 2, 3, 5, 8}) {
    for (std::size_t count : {0, 1, 13, 5000}) {
      for (std::size_t seg : {std::size_t{8}, std::size_t{1} << 20}) {
        CAPTURE(n);
        CAPTURE(count);
        CAPTURE(seg);
        // Rank r has nonzero values on its first (r * count) / n + 1 elements only, so its payload's
        // length is its own and the others learn it only from the message.
        const auto plan = algo::encoded_allgather::plan(n, count, 4 + count * 4, "packing");
        REQUIRE(dssync::verify(plan).ok);
        auto input = [&](int r) {
          std::vector<float> d(count, 0.0f);
          const std::size_t m = std::min(count, static_cast<std::size_t>(r) * count / static_cast<std::size_t>(n) + 1);
          for (std::size_t i = 0; i < m; ++i) d[i] = static_cast<float>(r + 1) + 0.25f * static_cast<float>(i % 7);
          return d;
        };
        std::vector<float> want(count, 0.0f);
        for (int r = 0; r < n; ++r) {
          const auto d = input(r);
          for (std::size_t i = 0; i < count; ++i) want[i] += d[i];
        }
        auto opt = dssync_test::test_options();
        opt.segment_bytes = seg;
        auto body = [&](auto& comm, std::vector<std::vector<float>>& out) {
          auto d = input(comm.rank());
          packing_hook<float> hook;
          const std::uint32_t call = comm.next_call();
          dssync::execute(comm, plan, std::span<float>(d), dssync::ops::sum{}, opt, call, nullptr, &hook);
          CHECK(hook.encodes == 1);
          out[static_cast<std::size_t>(comm.rank())] = d;
        };
        {
          std::vector<std::vector<float>> out(static_cast<std::size_t>(n));
          const auto errs = dssync_test::run_world(n, [&](auto& comm) { body(comm, out); });
          REQUIRE_MESSAGE(dssync_test::describe_errors(errs).empty(), dssync_test::describe_errors(errs));
          for (int r = 0; r < n; ++r) CHECK(out[static_cast<std::size_t>(r)] == want);
        }
        if (n >= 2 && ((seg == 8 && count == 13) || (seg > 8 && count == 5000))) {
          std::vector<std::vector<float>> out(static_cast<std::size_t>(n));
          tsim::world w{topo::star(std::max(n, 1))};
          const auto errs = w.run_collect([&](auto& comm) { body(comm, out); });
          REQUIRE_MESSAGE(dssync_test::describe_errors(errs).empty(), dssync_test::describe_errors(errs));
          for (int r = 0; r < n; ++r) CHECK(out[static_cast<std::size_t>(r)] == want);
        }
      }
    }
  }
}

TEST_CASE("executor: a message past its bound, a payload that does not decode, and a missing codec fail loudly") {
  SUBCASE("a header past the receiver's bound is malformed_payload naming both ranks and both sizes") {
    auto s = make(2, 4);
    const auto b = s.add_buffer(buffer_kind::bytes, 64);
    steps(s, 0).push_back(local_step(step_kind::encode, b, {0, 64}, user_buffer, {0, 4}));
    steps(s, 0).push_back(variable_message(step_kind::send, 1, b, {0, 64}));
    steps(s, 1).push_back(variable_message(step_kind::recv_copy, 0, b, {0, 8}));  // bound 8 bytes
    const auto errs = dssync_test::run_world(2, [&](auto& comm) {
      std::vector<float> d{1, 2, 3, 4};
      packing_hook<float> hook;
      dssync::execute(comm, s, std::span<float>(d), dssync::ops::sum{}, dssync_test::test_options(), comm.next_call(),
                      nullptr, &hook);
    });
    REQUIRE(errs[1]);
    CHECK_THROWS_AS(std::rethrow_exception(errs[1]), dssync::malformed_payload);
    const std::string m = dssync_test::what(errs[1]);
    CHECK_MESSAGE(contains(m, "rank 1: rank 0 sent a message of 20 bytes, past its bound of 8 bytes"), m);
  }
  SUBCASE("a peer's payload that does not decode is malformed_payload on the ranks that decode it") {
    const auto plan = algo::encoded_allgather::plan(3, 10, 44, "packing");
    const auto errs = dssync_test::run_world(3, [&](auto& comm) {
      std::vector<float> d(10, 1.0f);
      packing_hook<float> hook;
      hook.corrupt = comm.rank() == 2;
      dssync::execute(comm, plan, std::span<float>(d), dssync::ops::sum{}, dssync_test::test_options(), comm.next_call(),
                      nullptr, &hook);
    });
    // Every rank fails: with malformed_payload where it decoded rank 2's payload, or with peer_failure
    // where a peer that did so withdrew before this rank had taken all of its messages.
    int malformed = 0;
    for (int r = 0; r < 3; ++r) {
      const auto& e = errs[static_cast<std::size_t>(r)];
      REQUIRE(e);
      try {
        std::rethrow_exception(e);
      } catch (const dssync::malformed_payload& x) {
        ++malformed;
        CHECK(contains(x.what(), "count 1010"));
      } catch (const dssync::peer_failure&) {
      }
    }
    CHECK(malformed >= 1);
  }
  SUBCASE("a plan with codec steps run without a codec names the step") {
    const auto plan = algo::encoded_allgather::plan(1, 3, 16, "packing");
    const auto errs = dssync_test::run_world(1, [&](auto& comm) {
      std::vector<float> d(3, 1.0f);
      dssync::execute(comm, plan, std::span<float>(d), dssync::ops::sum{}, dssync_test::test_options(), comm.next_call());
    });
    REQUIRE(errs[0]);
    CHECK(contains(dssync_test::what(errs[0]), "encode b1[0,16) <- [0,3)) in encoded-allgather(packing) allreduce call"));
    CHECK(contains(dssync_test::what(errs[0]), "needs a codec, but none was given"));
  }
  SUBCASE("an unverified plan naming a buffer it does not declare is refused before anything runs") {
    auto s = make(1, 3);
    steps(s, 0).push_back(local_step(step_kind::copy, 3, {0, 3}, user_buffer, {0, 3}));
    const auto errs = dssync_test::run_world(1, [&](auto& comm) {
      std::vector<float> d(3, 1.0f);
      dssync::execute(comm, s, std::span<float>(d), dssync::ops::sum{}, dssync_test::test_options(), comm.next_call());
    });
    REQUIRE(errs[0]);
    CHECK_THROWS_AS(std::rethrow_exception(errs[0]), dssync::invalid_argument);
    CHECK(contains(dssync_test::what(errs[0]), "names buffer 3, but the plan declares 0 scratch buffer(s)"));
  }
}

TEST_CASE("simulator: messages of run-time length are charged their expected bytes, codec steps their compute") {
  const int n = 4;
  const std::size_t count = 1 << 20;
  const std::size_t bound = 4 + count * 4;
  const auto full = algo::encoded_allgather::plan(n, count, bound, "packing");
  const auto tenth = algo::encoded_allgather::plan(n, count, bound, "packing", bound / 10);
  const topo::star net(n);
  const auto a = dssync::sim::simulate(full, net);
  const auto b = dssync::sim::simulate(tenth, net);
  CHECK(a.flows == static_cast<std::size_t>(n * (n - 1)));
  CHECK(b.completion_time < a.completion_time / 5);
  CHECK(b.completion_time > a.completion_time / 20);
  dssync::sim::sim_options o;
  o.codec_bytes_per_s = 1e9;  // 1 GB/s: encode 4 MiB + decode 4 x ~4 MiB
  const auto c = dssync::sim::simulate(tenth, net, o);
  CHECK(c.completion_time > b.completion_time + 5 * 4e6 / 1e9 * 0.9);
  o.lockstep = true;  // local steps count in their stage
  const auto d = dssync::sim::simulate(tenth, net, o);
  CHECK(d.completion_time >= c.completion_time * 0.999);
}

TEST_SUITE_END();
