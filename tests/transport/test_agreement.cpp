// The agreement exchange: ranks that disagree on count, type, op or policy all raise mismatch_error
// naming both values and a rank, before any data moves; topologies that do not fit raise invalid_argument.

#include <doctest/doctest.h>

#include <chrono>
#include <latch>
#include <string>
#include <vector>

#include "test_support.hpp"

using dssync::topology::full_mesh;
using dssync_test::contains;
using dssync_test::describe_errors;
using dssync_test::has_number;
using dssync_test::holds;
using dssync_test::names_rank;
using dssync_test::what;

namespace {

/// Checks that every rank raised mismatch_error, that each message contains all of `subs` and names
/// the odd rank, that peer() is the odd rank on the others, and that no rank's data changed.
void check_mismatch(const std::vector<std::exception_ptr>& errs, int odd, std::initializer_list<std::string> subs) {
  INFO(describe_errors(errs));
  for (std::size_t r = 0; r < errs.size(); ++r) {
    CAPTURE(r);
    const std::string m = what(errs[r]);
    REQUIRE_MESSAGE(holds<dssync::mismatch_error>(errs[r]), "rank " << r << ": " << m);
    for (const auto& s : subs) CHECK_MESSAGE(contains(m, s), "\"" << m << "\" lacks \"" << s << "\"");
    CHECK_MESSAGE(names_rank(m, odd), m);
    CHECK_MESSAGE(names_rank(m, static_cast<int>(r)), m);
    try {
      std::rethrow_exception(errs[r]);
    } catch (const dssync::mismatch_error& e) {
      CHECK(e.rank() == static_cast<int>(r));
      if (static_cast<int>(r) != odd) CHECK(e.peer() == odd);
      else CHECK(e.peer() != odd);
    }
  }
}

}  // namespace

TEST_SUITE("inproc") {

TEST_CASE("agreement: a mismatched element count fails on every rank, naming 999, 1000 and the rank") {
  for (int n : {2, 4}) {
    const int odd = n - 2;
    CAPTURE(n);
    std::vector<int> untouched(static_cast<std::size_t>(n), 0);
    auto errs = dssync_test::run_world(n, [&](auto& comm) {
      std::vector<float> data(comm.rank() == odd ? 999 : 1000, 1.5f);
      try {
        dssync::synchronize(comm, data, dssync::ops::sum{}, dssync_test::test_options());
      } catch (...) {
        untouched[static_cast<std::size_t>(comm.rank())] =
            std::all_of(data.begin(), data.end(), [](float x) { return x == 1.5f; });
        throw;
      }
    });
    check_mismatch(errs, odd, {"999", "1000", "element count"});
    CHECK(untouched == std::vector<int>(static_cast<std::size_t>(n), 1));  // no byte moved
  }
}

TEST_CASE("agreement: a mismatched element type (float vs double) fails naming both types") {
  const int n = 4, odd = 1;
  auto errs = dssync_test::run_world(n, [&](auto& comm) {
    std::vector<float> f(100, 1.0f);
    std::vector<double> d(100, 1.0);
    if (comm.rank() == odd)
      dssync::synchronize(comm, d, dssync::ops::sum{}, dssync_test::test_options());
    else
      dssync::synchronize(comm, f, dssync::ops::sum{}, dssync_test::test_options());
  });
  check_mismatch(errs, odd, {"element type", "float32", "float64"});
}

TEST_CASE("agreement: types of equal size still differ (float vs int32)") {
  auto errs = dssync_test::run_world(3, [&](auto& comm) {
    std::vector<float> f(10, 1.0f);
    std::vector<std::int32_t> i(10, 1);
    if (comm.rank() == 2)
      dssync::synchronize(comm, i, dssync::ops::sum{}, dssync_test::test_options());
    else
      dssync::synchronize(comm, f, dssync::ops::sum{}, dssync_test::test_options());
  });
  check_mismatch(errs, 2, {"float32", "int32"});
}

TEST_CASE("agreement: a mismatched op (sum vs max) fails naming both ops") {
  const int n = 4, odd = 3;
  auto errs = dssync_test::run_world(n, [&](auto& comm) {
    std::vector<std::int64_t> data(64, comm.rank());
    if (comm.rank() == odd)
      dssync::synchronize(comm, data, dssync::ops::max{}, dssync_test::test_options());
    else
      dssync::synchronize(comm, data, dssync::ops::sum{}, dssync_test::test_options());
  });
  check_mismatch(errs, odd, {"reduction op", "sum", "max"});
}

TEST_CASE("agreement: a mismatched policy (ring vs direct, canonical form) fails naming both policies") {
  const int n = 4, odd = 0;
  auto errs = dssync_test::run_world(n, [&](auto& comm) {
    std::vector<double> data(1000, 2.0);
    const auto opt = dssync_test::test_options();
    if (comm.rank() == odd)
      dssync::synchronize<dssync::algorithms::ring>(comm, full_mesh(n), data, dssync::ops::sum{}, opt);
    else
      dssync::synchronize<dssync::algorithms::direct>(comm, full_mesh(n), data, dssync::ops::sum{}, opt);
  });
  check_mismatch(errs, odd, {"policy", "ring", "direct"});
}

TEST_CASE("agreement: matching calls pass, and the exchange can be switched off") {
  for (bool check : {true, false}) {
    CAPTURE(check);
    std::vector<std::vector<float>> out(3);
    auto errs = dssync_test::run_world(3, [&](auto& comm) {
      std::vector<float> data(10, static_cast<float>(comm.rank()));
      auto opt = dssync_test::test_options();
      opt.check_agreement = check;
      dssync::synchronize(comm, data, dssync::ops::max{}, opt);
      out[static_cast<std::size_t>(comm.rank())] = data;
    });
    REQUIRE_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
    for (const auto& d : out) CHECK(d == std::vector<float>(10, 2.0f));
  }
}

TEST_CASE("a topology that does not fit the world raises invalid_argument naming both sizes on every rank") {
  const int n = 4;
  std::vector<int> reached(n, 0);
  auto errs = dssync_test::run_world(n, [&](auto& comm) {
    std::vector<float> data(100, 1.0f);
    try {
      dssync::synchronize<dssync::algorithms::ring>(comm, dssync::topology::ring(3), data);
    } catch (const dssync::invalid_argument&) {
      // Then the full mesh of 5.
      try {
        dssync::synchronize<dssync::algorithms::direct>(comm, full_mesh(5), data);
      } catch (const dssync::invalid_argument& e) {
        reached[static_cast<std::size_t>(comm.rank())] = has_number(e.what(), 5) && has_number(e.what(), 4);
      }
      throw;
    }
  });
  INFO(describe_errors(errs));
  for (int r = 0; r < n; ++r) {
    const std::string m = what(errs[static_cast<std::size_t>(r)]);
    CAPTURE(r);
    REQUIRE_MESSAGE(holds<dssync::invalid_argument>(errs[static_cast<std::size_t>(r)]), m);
    CHECK_MESSAGE(has_number(m, 3), m);
    CHECK_MESSAGE(has_number(m, 4), m);
    CHECK_MESSAGE(contains(m, "ring(3)"), m);
    CHECK_MESSAGE(names_rank(m, r), m);
    CHECK_MESSAGE(reached[static_cast<std::size_t>(r)] == 1, "full_mesh(5) on 4 ranks");
  }
}

TEST_CASE("signature comparison names the first difference and both values") {
  using dssync::signature;
  using dssync::detail::compare;
  const auto base = signature::make(1000, 4, dssync::dtype::float32, 4, 1, "sum", "ring");
  CHECK(compare(base, 0, base, 1).empty());
  const auto world = signature::make(1000, 5, dssync::dtype::float32, 4, 1, "sum", "ring");
  const auto count = signature::make(999, 4, dssync::dtype::float32, 4, 1, "sum", "ring");
  const auto type = signature::make(1000, 4, dssync::dtype::float64, 8, 1, "sum", "ring");
  const auto other = signature::make(1000, 4, dssync::dtype::other, 12, 1, "sum", "ring");
  const auto op = signature::make(1000, 4, dssync::dtype::float32, 4, 4, "max", "ring");
  const auto pol = signature::make(1000, 4, dssync::dtype::float32, 4, 1, "sum", "direct");
  auto has_all = [](const std::string& m, std::initializer_list<const char*> subs) {
    for (const char* s : subs)
      if (!contains(m, s)) return false;
    return true;
  };
  CHECK(has_all(compare(base, 0, world, 3), {"world size", "rank 0 has 4", "rank 3 has 5"}));
  CHECK(has_all(compare(base, 1, count, 2), {"element count", "1000", "999", "rank 1", "rank 2"}));
  CHECK(has_all(compare(base, 0, type, 1), {"element type", "float32", "float64"}));
  CHECK(has_all(compare(base, 0, other, 1), {"other(12 bytes)"}));
  CHECK(has_all(compare(base, 0, op, 1), {"reduction op", "sum", "max"}));
  CHECK(has_all(compare(base, 0, pol, 1), {"policy", "ring", "direct"}));
  const auto plan_a = signature::make(1000, 4, dssync::dtype::float32, 4, 1, "sum", "ring", 0x1234);
  const auto plan_b = signature::make(1000, 4, dssync::dtype::float32, 4, 1, "sum", "ring", 0xabcdef);
  CHECK(has_all(compare(plan_a, 2, plan_b, 3),
                {"plan fingerprint", "rank 2 has 0x0000000000001234", "rank 3 has 0x0000000000abcdef"}));
  // Two user ops of different types and the same readable name still differ (by id).
  const auto u1 = signature::make(1, 2, dssync::dtype::int32, 4, 0x80000001u, "user", "ring");
  const auto u2 = signature::make(1, 2, dssync::dtype::int32, 4, 0x80000002u, "user", "ring");
  CHECK_FALSE(compare(u1, 0, u2, 1).empty());
  // Long names are truncated, never overflow the fixed fields.
  const std::string longname(100, 'x');
  const auto l = signature::make(1, 2, dssync::dtype::int32, 4, 9, longname, longname);
  CHECK(std::string(l.op_name.data()) == std::string(23, 'x'));
  CHECK(std::string(l.policy.data()) == std::string(23, 'x'));
  static_assert(std::is_trivially_copyable_v<signature>);
}

TEST_CASE("ranks that plan different schedules of one policy fail with mismatch_error naming both fingerprints") {
  // double_binary_tree with pipeline 1 on ranks 0 and 1, 4 on rank 2: same policy name, count, type and
  // op, different messages. Before the plan fingerprint joined the signature, the agreement passed and
  // the data exchange went wrong (mismatched message lengths, or a hang until the deadline).
  const int n = 3;
  std::vector<std::string> msgs(n);
  std::vector<int> other(n, -1);
  auto errs = dssync_test::run_world(n, [&](auto& comm) {
    std::vector<float> d(40000, 1.0f);
    dssync::algorithms::double_binary_tree p{.pipeline = comm.rank() == 2 ? 4u : 1u};
    try {
      dssync::synchronize(comm, full_mesh(n), p, d, dssync::ops::sum{}, dssync_test::test_options());
    } catch (const dssync::mismatch_error& e) {
      msgs[static_cast<std::size_t>(comm.rank())] = e.what();
      other[static_cast<std::size_t>(comm.rank())] = e.peer();
    }
  });
  REQUIRE_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
  for (int r = 0; r < n; ++r) {
    CAPTURE(r);
    const auto& m = msgs[static_cast<std::size_t>(r)];
    CHECK_MESSAGE(contains(m, "plan fingerprint"), m);
    CHECK_MESSAGE(names_rank(m, r), m);
    CHECK_MESSAGE(names_rank(m, r == 2 ? 0 : 2), m);
    CHECK(other[static_cast<std::size_t>(r)] == (r == 2 ? 0 : 2));
  }
}

TEST_CASE("groups agree among themselves: one gossip pair finishes while the other has not started") {
  // Pairs {0,1} and {2,3}. Ranks 2 and 3 start only after 0 and 1 have returned from their call. With
  // an agreement over the whole world, 0 and 1 would wait for 2's and 3's signatures, which come only
  // after they return: a deadlock that ends in timeout_error. Scoped to the group, it completes.
  const int n = 4;
  std::latch first_pair_done(2);
  std::vector<std::vector<float>> out(n);
  auto errs = dssync_test::run_world(n, [&](auto& comm) {
    const int me = comm.rank();
    if (me >= 2) first_pair_done.wait();
    std::vector<float> d(64, static_cast<float>(me));
    dssync::algorithms::gossip g;
    dssync::synchronize(comm, full_mesh(n), g, d, dssync::ops::average{}, dssync_test::test_options(std::chrono::seconds(10)));
    if (me < 2) first_pair_done.count_down();
    out[static_cast<std::size_t>(me)] = d;
  });
  REQUIRE_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
  CHECK(out[0] == std::vector<float>(64, 0.5f));
  CHECK(out[1] == std::vector<float>(64, 0.5f));
  CHECK(out[2] == std::vector<float>(64, 2.5f));
  CHECK(out[3] == std::vector<float>(64, 2.5f));
}

TEST_CASE("a mismatch inside a group is named on both of its members, and only there") {
  // Pair {0,1} agrees; in pair {2,3}, rank 3 has a different count. Ranks 2 and 3 get mismatch_error
  // naming each other; 0 and 1 finish their average.
  const int n = 4;
  std::vector<std::string> msgs(n);
  std::vector<int> other(n, -1);
  std::vector<std::vector<float>> out(n);
  auto errs = dssync_test::run_world(n, [&](auto& comm) {
    const int me = comm.rank();
    std::vector<float> d(me == 3 ? 65 : 64, static_cast<float>(me));
    dssync::algorithms::gossip g;
    try {
      dssync::synchronize(comm, full_mesh(n), g, d, dssync::ops::average{}, dssync_test::test_options(std::chrono::seconds(10)));
    } catch (const dssync::mismatch_error& e) {
      msgs[static_cast<std::size_t>(me)] = e.what();
      other[static_cast<std::size_t>(me)] = e.peer();
    }
    out[static_cast<std::size_t>(me)] = d;
  });
  REQUIRE_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
  CHECK(msgs[0].empty());
  CHECK(msgs[1].empty());
  CHECK(out[0] == std::vector<float>(64, 0.5f));
  for (int r : {2, 3}) {
    CAPTURE(r);
    const auto& m = msgs[static_cast<std::size_t>(r)];
    CHECK_MESSAGE((contains(m, "element count") && has_number(m, 64) && has_number(m, 65)), m);
    CHECK(other[static_cast<std::size_t>(r)] == 5 - r);
  }
}

TEST_CASE("plan fingerprints: stable, equal for equal plans, changed by anything that executes differently") {
  const auto a = dssync::algorithms::ring::build(4, 100);
  CHECK(dssync::fingerprint(a) == dssync::fingerprint(dssync::algorithms::ring::build(4, 100)));
  // Pinned: the hash must not change between builds or machines (ranks of different builds compare it).
  CHECK(dssync::fingerprint(a) == 0xba3ff63e60436c01ull);
  auto b = a;
  b.ranks[1].channels[0].steps[2].data.offset += 1;
  CHECK(dssync::fingerprint(b) != dssync::fingerprint(a));
  auto c = a;
  c.ranks[3].channels[0].steps[0].peer = 2;
  CHECK(dssync::fingerprint(c) != dssync::fingerprint(a));
  auto k = a;
  k.ranks[0].channels[0].steps[1].kind = dssync::step_kind::recv_copy;
  CHECK(dssync::fingerprint(k) != dssync::fingerprint(a));
  CHECK(dssync::fingerprint(dssync::algorithms::ring::build(4, 101)) != dssync::fingerprint(a));
  CHECK(dssync::fingerprint(dssync::algorithms::direct::build(4, 100)) != dssync::fingerprint(a));
  // The simulator's stage annotation and the cached value do not count.
  auto st = a;
  st.ranks[2].channels[0].steps[3].stage = 7;
  CHECK(dssync::fingerprint(st) == dssync::fingerprint(a));
  auto cached = a;
  cached.fingerprint_cache = 99;
  CHECK(dssync::fingerprint(cached) == dssync::fingerprint(a));
  CHECK(cached == a);  // a cache, not part of the value
}

}  // TEST_SUITE
