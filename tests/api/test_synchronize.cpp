// dssync::synchronize: a seeded property test against a sequential oracle, plus the buffer types and
// edge cases the entry point accepts.

#include <doctest/doctest.h>

#include <array>

#include "test_support.hpp"

using dssync::topology::full_mesh;
using dssync_test::check_against_oracle;
using dssync_test::describe_errors;
using dssync_test::first_bitwise_difference;
using dssync_test::op_kind;

namespace {

enum class form { canonical_ring, canonical_direct, short_form };

const char* to_string(form f) {
  switch (f) {
    case form::canonical_ring: return "synchronize<ring>";
    case form::canonical_direct: return "synchronize<direct>";
    case form::short_form: return "synchronize(comm, data, op)";
  }
  return "?";
}

/// Runs one property case: `n` ranks allreduce random buffers of `count` T under `k` through `f`;
/// checks rank 0 against the oracle and every rank bitwise against rank 0.
template <class T>
void property_case(std::mt19937& g, int n, std::size_t count, op_kind k, form f, bool exact) {
  const auto kind = exact ? dssync_test::values::integral : dssync_test::values::any;
  const auto inputs = dssync_test::random_inputs<T>(g, n, count, kind);
  std::vector<std::vector<T>> results(static_cast<std::size_t>(n));
  const auto opt = dssync_test::test_options();
  auto errs = dssync_test::run_world(n, [&](auto& comm) {
    std::vector<T> data = inputs[static_cast<std::size_t>(comm.rank())];
    dssync_test::with_op(k, [&](auto op) {
      switch (f) {
        case form::canonical_ring:
          dssync::synchronize<dssync::algorithms::ring>(
              comm, dssync::topology::full_mesh(n), data, op, opt);
          break;
        case form::canonical_direct:
          dssync::synchronize<dssync::algorithms::direct>(
              comm, dssync::topology::full_mesh(n), data, op, opt);
          break;
        case form::short_form:
          dssync::synchronize(comm, data, op);
          break;
      }
    });
    results[static_cast<std::size_t>(comm.rank())] = std::move(data);
  });
  REQUIRE_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
  const std::string diff = check_against_oracle(results[0], inputs, k, exact);
  REQUIRE_MESSAGE(diff.empty(), "rank 0: " << diff);
  const int other = first_bitwise_difference(results);
  REQUIRE_MESSAGE(other == -1, "rank " << other << "'s result differs bitwise from rank 0's");
}

template <class T>
const char* type_name() {
  if constexpr (std::is_same_v<T, float>) return "float";
  else if constexpr (std::is_same_v<T, double>) return "double";
  else if constexpr (std::is_same_v<T, std::int32_t>) return "int32";
  else return "int64";
}

/// A contiguous, sized range that is none of the standard containers.
template <class T>
class fixed_buffer {
 public:
  explicit fixed_buffer(std::size_t n) : p_(new T[n]()), n_(n) {}
  T* begin() { return p_.get(); }
  T* end() { return p_.get() + n_; }
  const T* begin() const { return p_.get(); }
  const T* end() const { return p_.get() + n_; }
  std::size_t size() const { return n_; }
  T& operator[](std::size_t i) { return p_[i]; }

 private:
  std::unique_ptr<T[]> p_;
  std::size_t n_;
};

static_assert(std::ranges::contiguous_range<fixed_buffer<int>> && std::ranges::sized_range<fixed_buffer<int>>);

}  // namespace

TEST_SUITE("inproc synchronize") {

TEST_CASE("property: 40 seeded random cases agree with a sequential oracle and are bitwise identical on all ranks") {
  std::mt19937 g(20240607u);
  const std::size_t max_len = dssync_test::scaled(100000, 1000);
  const int cases = 40;
  std::uniform_int_distribution<int> world(1, 17);
  std::uniform_int_distribution<std::size_t> length(0, max_len);
  int exact_float_cases = 0, empty_cases = 0, solo_cases = 0, uneven_cases = 0;
  for (int c = 0; c < cases; ++c) {
    int n = world(g);
    std::size_t count = length(g);
    if (c == 3) count = 0;  // an empty buffer
    if (c == 7) n = 1;      // a world of one
    if (c == 9) count = 3 * static_cast<std::size_t>(n) + 1;  // shorter than a chunk per rank
    const int type = c % 4;
    const auto k = static_cast<op_kind>((c + c / 4) % 4);  // every (type, op) pair within 16 cases
    const auto f = static_cast<form>(c % 3);
    const bool exact = (type <= 1 && c % 5 == 0) || c == 1;  // integer-valued floats: exact sums
    exact_float_cases += exact;
    empty_cases += count == 0;
    solo_cases += n == 1;
    uneven_cases += n > 1 && count % static_cast<std::size_t>(n) != 0;
    const char* tn = type == 0 ? type_name<float>() : type == 1 ? type_name<double>() : type == 2 ? type_name<std::int32_t>() : type_name<std::int64_t>();
    INFO("case " << c << ": " << n << " ranks, " << count << " " << tn << ", " << dssync_test::to_string(k) << ", "
                 << to_string(f) << (exact ? ", integer-valued" : ""));
    switch (type) {
      case 0: property_case<float>(g, n, count, k, f, exact); break;
      case 1: property_case<double>(g, n, count, k, f, exact); break;
      case 2: property_case<std::int32_t>(g, n, count, k, f, exact); break;
      default: property_case<std::int64_t>(g, n, count, k, f, exact); break;
    }
  }
  CHECK(exact_float_cases >= 1);
  CHECK(empty_cases >= 1);
  CHECK(solo_cases >= 1);
  CHECK(uneven_cases >= 10);
}

TEST_CASE("integer sums wrap like unsigned arithmetic across ranks") {
  const int n = 5;
  constexpr auto imax = std::numeric_limits<std::int32_t>::max();
  std::vector<std::vector<std::int32_t>> out(n);
  auto errs = dssync_test::run_world(n, [&](auto& comm) {
    std::vector<std::int32_t> d{imax, 1, -imax};
    dssync::synchronize(comm, d, dssync::ops::sum{}, dssync_test::test_options());
    out[static_cast<std::size_t>(comm.rank())] = d;
  });
  REQUIRE_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
  // 5 * INT32_MAX mod 2^32 = INT32_MAX - 4 (as a signed value: 2147483643).
  const auto five_max = static_cast<std::int32_t>(static_cast<std::uint32_t>(imax) * 5u);
  const auto five_neg = static_cast<std::int32_t>(static_cast<std::uint32_t>(-imax) * 5u);
  for (const auto& d : out) CHECK(d == std::vector<std::int32_t>{five_max, 5, five_neg});
}

TEST_CASE("average divides by the world size, truncating integers") {
  const int n = 3;
  std::vector<std::vector<std::int32_t>> ints(n);
  std::vector<std::vector<double>> dbl(n);
  auto errs = dssync_test::run_world(n, [&](auto& comm) {
    const int r = comm.rank();
    std::vector<std::int32_t> i{r, -r, 10 * r + 1};  // sums 3, -3, 33 -> 1, -1, 11
    std::vector<double> d{static_cast<double>(r), 1.0};
    dssync::synchronize(comm, i, dssync::ops::average{}, dssync_test::test_options());
    dssync::synchronize(comm, d, dssync::ops::average{}, dssync_test::test_options());
    ints[static_cast<std::size_t>(r)] = i;
    dbl[static_cast<std::size_t>(r)] = d;
  });
  REQUIRE_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
  for (int r = 0; r < n; ++r) {
    CHECK(ints[static_cast<std::size_t>(r)] == std::vector<std::int32_t>{1, -1, 11});
    CHECK(dbl[static_cast<std::size_t>(r)] == std::vector<double>{1.0, 1.0});
  }
  // 1 + 2 = 3 over 2 ranks truncates to 1; -3 / 2 truncates toward zero to -1.
  std::vector<std::vector<std::int64_t>> two(2);
  errs = dssync_test::run_world(2, [&](auto& comm) {
    std::vector<std::int64_t> v{comm.rank() + 1, -(comm.rank() + 1)};
    dssync::synchronize(comm, v, dssync::ops::average{}, dssync_test::test_options());
    two[static_cast<std::size_t>(comm.rank())] = v;
  });
  REQUIRE_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
  for (const auto& v : two) CHECK(v == std::vector<std::int64_t>{1, -1});
}

TEST_CASE("buffers: std::vector, std::span (lvalue and temporary), std::array and a custom contiguous range") {
  const int n = 4;
  std::vector<int> ok(n, 0);
  auto errs = dssync_test::run_world(n, [&](auto& comm) {
    const int r = comm.rank();
    const auto opt = dssync_test::test_options();
    bool good = true;

    std::vector<float> v(13, static_cast<float>(r));
    dssync::synchronize(comm, v, dssync::ops::sum{}, opt);
    good &= std::all_of(v.begin(), v.end(), [](float x) { return x == 6.0f; });

    std::vector<double> backing(20, 1.0);
    std::span<double> s(backing.data() + 5, 10);  // a window: elements outside stay untouched
    dssync::synchronize(comm, s, dssync::ops::sum{}, opt);
    good &= std::all_of(backing.begin() + 5, backing.begin() + 15, [](double x) { return x == 4.0; });
    good &= backing[4] == 1.0 && backing[15] == 1.0;

    std::vector<std::int64_t> w(7, r);
    dssync::synchronize(comm, std::span<std::int64_t>(w), dssync::ops::max{}, opt);  // a temporary span
    good &= std::all_of(w.begin(), w.end(), [](std::int64_t x) { return x == 3; });

    std::array<std::int32_t, 9> a{};
    a.fill(10 + r);
    dssync::synchronize<dssync::algorithms::direct>(comm, full_mesh(n), a, dssync::ops::min{}, opt);
    good &= std::all_of(a.begin(), a.end(), [](std::int32_t x) { return x == 10; });

    fixed_buffer<float> fb(11);
    for (std::size_t i = 0; i < fb.size(); ++i) fb[i] = static_cast<float>(i * (r + 1));
    dssync::synchronize(comm, fb, dssync::ops::sum{}, opt);
    for (std::size_t i = 0; i < fb.size(); ++i) good &= fb[i] == static_cast<float>(i * 10);

    ok[static_cast<std::size_t>(r)] = good;
  });
  REQUIRE_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
  CHECK(ok == std::vector<int>(n, 1));
}

TEST_CASE("empty buffers on any world size, with every form") {
  for (int n : {1, 2, 5}) {
    CAPTURE(n);
    auto errs = dssync_test::run_world(n, [&](auto& comm) {
      std::vector<float> e;
      dssync::synchronize(comm, e);
      dssync::synchronize(comm, std::span<double>(), dssync::ops::average{});
      std::array<std::int32_t, 0> z{};
      dssync::synchronize<dssync::algorithms::direct>(comm, full_mesh(n), z, dssync::ops::max{},
          dssync_test::test_options());
      dssync::synchronize<dssync::algorithms::ring>(comm, dssync::topology::ring(n), e,
          dssync::ops::min{}, dssync_test::test_options());
    });
    REQUIRE_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
  }
}

TEST_CASE("a world of one leaves the data as it is for every op") {
  std::vector<double> d{1.5, -2.25, 3.0};
  std::vector<std::int32_t> i{7, -7, 0};
  auto errs = dssync_test::run_world(1, [&](auto& comm) {
    dssync::synchronize(comm, d);
    dssync::synchronize(comm, d, dssync::ops::average{});
    dssync::synchronize(comm, i, dssync::ops::average{});
    dssync::synchronize<dssync::algorithms::direct>(comm, full_mesh(1), i, dssync::ops::min{});
    dssync::synchronize<dssync::algorithms::ring>(comm, dssync::topology::ring(1), i, dssync::ops::max{});
  });
  REQUIRE_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
  CHECK(d == std::vector<double>{1.5, -2.25, 3.0});
  CHECK(i == std::vector<std::int32_t>{7, -7, 0});
}

TEST_CASE("results are the same whatever the policy, and identical over repeated calls") {
  const int n = 6;
  const std::size_t count = 10007;
  std::mt19937 g(99);
  const auto inputs = dssync_test::random_inputs<float>(g, n, count);
  std::vector<std::vector<float>> ring(n), ring_again(n), direct(n);
  auto errs = dssync_test::run_world(n, [&](auto& comm) {
    const auto r = static_cast<std::size_t>(comm.rank());
    const auto opt = dssync_test::test_options();
    ring[r] = inputs[r];
    ring_again[r] = inputs[r];
    direct[r] = inputs[r];
    dssync::synchronize<dssync::algorithms::ring>(comm, full_mesh(n), ring[r], dssync::ops::sum{}, opt);
    dssync::synchronize<dssync::algorithms::ring>(comm, full_mesh(n), ring_again[r], dssync::ops::sum{}, opt);
    dssync::synchronize<dssync::algorithms::direct>(comm, full_mesh(n), direct[r], dssync::ops::sum{}, opt);
  });
  REQUIRE_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
  CHECK(first_bitwise_difference(ring) == -1);
  CHECK(first_bitwise_difference(direct) == -1);
  CHECK(ring == ring_again);  // deterministic: same schedule, same order of additions
  CHECK(check_against_oracle(ring[0], inputs, op_kind::sum).empty());
  CHECK(check_against_oracle(direct[0], inputs, op_kind::sum).empty());
}

}  // TEST_SUITE
