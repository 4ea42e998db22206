// Reduction operators: the kernels against plain loops, wrapping integer sums, average's finalize,
// user functors through synchronize, and the reduction_op concept.

#include <doctest/doctest.h>

#include "test_support.hpp"

namespace {

struct bitwise_or {
  template <std::integral T>
  T operator()(T a, T b) const {
    return a | b;
  }
};

/// A stateful functor: a sum that saturates at `limit` (associative and commutative on non-negative
/// values).
struct saturating_sum {
  std::int64_t limit;
  std::int64_t operator()(std::int64_t a, std::int64_t b) const { return std::min(a + b, limit); }
};

/// An op with its own bulk kernel, which reduce_into must prefer over the elementwise call.
struct counting_max {
  mutable int bulk_calls = 0;
  int operator()(int a, int b) const { return a < b ? b : a; }
  void reduce(int* dst, const int* src, std::size_t n) const {
    ++bulk_calls;
    for (std::size_t i = 0; i < n; ++i) dst[i] = dst[i] < src[i] ? src[i] : dst[i];
  }
};

struct not_an_op {};
struct binary_on_strings {
  std::string operator()(const std::string& a, const std::string& b) const { return a + b; }
};
struct subtract {
  template <class T>
  T operator()(T a, T b) const {
    return a - b;
  }
};

}  // namespace

template <>
inline constexpr bool dssync::is_commutative<subtract> = false;

namespace {

template <class T, class Op, class Ref>
void check_kernel(Op op, Ref ref, std::uint32_t seed) {
  std::mt19937 g(seed);
  for (std::size_t n : {0u, 1u, 3u, 16u, 17u, 1000u, 1023u}) {
    auto a = dssync_test::random_values<T>(g, n);
    const auto b = dssync_test::random_values<T>(g, n);
    auto want = a;
    for (std::size_t i = 0; i < n; ++i) want[i] = ref(a[i], b[i]);
    dssync::ops::reduce_into(a.data(), b.data(), n, op);
    REQUIRE_MESSAGE(a == want, "n=" << n);
    // The span form.
    auto c = want;
    for (std::size_t i = 0; i < n; ++i) want[i] = ref(c[i], b[i]);
    dssync::ops::reduce_into(std::span<T>(c), std::span<const T>(b), op);
    REQUIRE_MESSAGE(c == want, "span form, n=" << n);
  }
}

template <class T>
void check_all_kernels() {
  using dssync::ops::average;
  using dssync::ops::max;
  using dssync::ops::min;
  using dssync::ops::sum;
  auto wrap_add = [](T a, T b) -> T {
    if constexpr (std::is_integral_v<T>) {
      using U = std::make_unsigned_t<T>;
      return static_cast<T>(static_cast<U>(a) + static_cast<U>(b));
    } else {
      return static_cast<T>(a + b);
    }
  };
  check_kernel<T>(sum{}, wrap_add, 1);
  check_kernel<T>(average{}, wrap_add, 2);  // average reduces like sum; it divides in finalize
  check_kernel<T>(min{}, [](T a, T b) { return std::min(a, b); }, 3);
  check_kernel<T>(max{}, [](T a, T b) { return std::max(a, b); }, 4);
}

}  // namespace

TEST_SUITE("ops") {

TEST_CASE_TEMPLATE("reduce_into matches a plain loop for sum, average, min and max", T, float, double, std::int32_t,
                   std::int64_t) {
  check_all_kernels<T>();
}

TEST_CASE("min and max keep the operand order of the documented forms") {
  CHECK(dssync::ops::min{}(3, 5) == 3);
  CHECK(dssync::ops::min{}(5, 3) == 3);
  CHECK(dssync::ops::max{}(-3, -5) == -3);
  CHECK(dssync::ops::max{}(2.5, 7.25) == 7.25);
  CHECK(dssync::ops::min{}(std::int64_t{-1} << 40, std::int64_t{7}) == (std::int64_t{-1} << 40));
}

TEST_CASE("signed integer sums wrap around without undefined behaviour") {
  constexpr auto imax = std::numeric_limits<std::int32_t>::max();
  constexpr auto imin = std::numeric_limits<std::int32_t>::min();
  constexpr auto lmax = std::numeric_limits<std::int64_t>::max();
  constexpr auto lmin = std::numeric_limits<std::int64_t>::min();
  // Constant evaluation rejects undefined behaviour, so these prove the wrap is well defined.
  static_assert(dssync::ops::sum{}(imax, std::int32_t{1}) == imin);
  static_assert(dssync::ops::sum{}(imin, std::int32_t{-1}) == imax);
  static_assert(dssync::ops::sum{}(lmax, std::int64_t{1}) == lmin);
  static_assert(dssync::ops::sum{}(lmin, lmin) == 0);
  // And at run time (checked by UBSan in the sanitizer build), through the kernel.
  std::vector<std::int32_t> a{imax, imin, imax, -5};
  const std::vector<std::int32_t> b{1, -1, imax, 5};
  dssync::ops::reduce_into(a.data(), b.data(), a.size(), dssync::ops::sum{});
  CHECK(a == std::vector<std::int32_t>{imin, imax, -2, 0});
  std::vector<std::int64_t> c{lmax, lmin};
  const std::vector<std::int64_t> d{lmax, -1};
  dssync::ops::reduce_into(c.data(), d.data(), c.size(), dssync::ops::average{});
  CHECK(c == std::vector<std::int64_t>{-2, lmax});
}

TEST_CASE("average's finalize divides by the contributors, truncating integers toward zero") {
  std::vector<std::int32_t> i{10, -10, 11, 2, 0, std::numeric_limits<std::int32_t>::min()};
  dssync::ops::average{}.finalize(std::span<std::int32_t>(i), 3);
  CHECK(i == std::vector<std::int32_t>{3, -3, 3, 0, 0, std::numeric_limits<std::int32_t>::min() / 3});
  std::vector<std::int64_t> l{7, -7, 1};
  dssync::ops::average{}.finalize(std::span<std::int64_t>(l), 2);
  CHECK(l == std::vector<std::int64_t>{3, -3, 0});
  std::vector<double> f{1.0, -3.0, 0.5};
  dssync::ops::average{}.finalize(std::span<double>(f), 4);
  CHECK(f == std::vector<double>{0.25, -0.75, 0.125});
  std::vector<float> h{3.0f};
  dssync::ops::average{}.finalize(std::span<float>(h), 3);
  CHECK(h[0] == 1.0f);
  // One contributor (or a nonsensical count) leaves the data alone.
  std::vector<std::int32_t> same{5, -5};
  dssync::ops::average{}.finalize(std::span<std::int32_t>(same), 1);
  dssync::ops::average{}.finalize(std::span<std::int32_t>(same), 0);
  CHECK(same == std::vector<std::int32_t>{5, -5});
}

TEST_CASE("reduce_into prefers an op's own bulk kernel") {
  counting_max op;
  std::vector<int> a{1, 9, 3}, b{4, 2, 8};
  dssync::ops::reduce_into(a.data(), b.data(), a.size(), op);
  CHECK(a == std::vector<int>{4, 9, 8});
  CHECK(op.bulk_calls == 1);
}

TEST_CASE("the reduction_op concept and the op traits") {
  using namespace dssync;
  static_assert(concepts::reduction_op<ops::sum, float>);
  static_assert(concepts::reduction_op<ops::average, std::int64_t>);
  static_assert(concepts::reduction_op<ops::min, double>);
  static_assert(concepts::reduction_op<ops::max, std::int32_t>);
  static_assert(concepts::reduction_op<bitwise_or, std::uint32_t>);
  static_assert(concepts::reduction_op<saturating_sum, std::int64_t>);
  static_assert(!concepts::reduction_op<not_an_op, int>);                    // no call operator
  static_assert(!concepts::reduction_op<ops::sum, const int>);                // elements must be mutable
  static_assert(!concepts::reduction_op<binary_on_strings, std::string>);     // not trivially copyable
  static_assert(!concepts::reduction_op<bitwise_or, float>);                  // float | float is ill-formed
  static_assert(concepts::finalizing_op<ops::average, float>);
  static_assert(!concepts::finalizing_op<ops::sum, float>);
  static_assert(!concepts::finalizing_op<ops::max, int>);
  static_assert(is_commutative<ops::sum> && is_commutative<bitwise_or>);
  static_assert(!is_commutative<subtract>);
  CHECK(op_id<ops::sum>() == 1);
  CHECK(op_id<ops::average>() == 2);
  CHECK(op_id<ops::min>() == 3);
  CHECK(op_id<ops::max>() == 4);
  CHECK((op_id<bitwise_or>() & 0x80000000u) != 0);  // hashed user ids never collide with built-in ones
  CHECK(op_id<bitwise_or>() == op_id<bitwise_or>());
  CHECK(op_id<bitwise_or>() != op_id<saturating_sum>());
  CHECK(op_name<ops::average>() == "average");
  CHECK(op_name<bitwise_or>() == "user");
  CHECK(dtype_of<float> == dtype::float32);
  CHECK(dtype_of<std::int64_t> == dtype::int64);
  CHECK(dtype_of<bitwise_or> == dtype::other);
  CHECK(to_string(dtype::float64) == "float64");
}

}  // TEST_SUITE

TEST_SUITE("ops inproc") {

TEST_CASE("user functors work with synchronize: a bitwise-or struct, a stateful struct and a lambda") {
  for (int n : {1, 2, 3, 5}) {
    CAPTURE(n);
    std::vector<std::vector<std::uint32_t>> bits(static_cast<std::size_t>(n));
    std::vector<std::vector<std::int64_t>> sat(static_cast<std::size_t>(n));
    std::vector<std::vector<int>> xors(static_cast<std::size_t>(n));
    auto errs = dssync_test::run_world(n, [&](auto& comm) {
      const int r = comm.rank();
      const auto opt = dssync_test::test_options();
      // Rank r sets bit r (and bit 31 everywhere) in element i when i % (r+1) == 0.
      std::vector<std::uint32_t> b(37);
      for (std::size_t i = 0; i < b.size(); ++i) b[i] = (i % static_cast<std::size_t>(r + 1) == 0 ? 1u << r : 0u) | 1u << 31;
      dssync::synchronize<dssync::algorithms::ring>(comm, dssync::topology::ring(n), b, bitwise_or{}, opt);
      bits[static_cast<std::size_t>(r)] = b;
      std::vector<std::int64_t> s(20);
      for (std::size_t i = 0; i < s.size(); ++i) s[i] = static_cast<std::int64_t>(i) * (r + 1);
      dssync::synchronize(comm, s, saturating_sum{50}, opt);
      sat[static_cast<std::size_t>(r)] = s;
      std::vector<int> x(11, 1 << r);
      x[3] = 0;
      dssync::synchronize<dssync::algorithms::direct>(
          comm, dssync::topology::full_mesh(n), x, [](int a, int c) { return a ^ c; }, opt);
      xors[static_cast<std::size_t>(r)] = x;
    });
    REQUIRE_MESSAGE(dssync_test::describe_errors(errs).empty(), dssync_test::describe_errors(errs));
    const std::int64_t tri = static_cast<std::int64_t>(n) * (n + 1) / 2;
    for (int r = 0; r < n; ++r) {
      const auto& b = bits[static_cast<std::size_t>(r)];
      for (std::size_t i = 0; i < b.size(); ++i) {
        std::uint32_t want = 1u << 31;
        for (int k = 0; k < n; ++k)
          if (i % static_cast<std::size_t>(k + 1) == 0) want |= 1u << k;
        REQUIRE_MESSAGE(b[i] == want, "bitwise_or rank " << r << " element " << i);
      }
      const auto& s = sat[static_cast<std::size_t>(r)];
      for (std::size_t i = 0; i < s.size(); ++i)
        REQUIRE_MESSAGE(s[i] == std::min<std::int64_t>(static_cast<std::int64_t>(i) * tri, 50),
                        "saturating_sum rank " << r << " element " << i);
      const auto& x = xors[static_cast<std::size_t>(r)];
      for (std::size_t i = 0; i < x.size(); ++i) REQUIRE(x[i] == (i == 3 ? 0 : (1 << n) - 1));
    }
  }
}

TEST_CASE("user ops that differ are a mismatch") {
  auto errs = dssync_test::run_world(3, [&](auto& comm) {
    std::vector<std::uint32_t> b(8, 1);
    if (comm.rank() == 1)
      dssync::synchronize(comm, b, dssync::ops::max{}, dssync_test::test_options());
    else
      dssync::synchronize(comm, b, bitwise_or{}, dssync_test::test_options());
  });
  for (int r = 0; r < 3; ++r) {
    INFO("rank " << r << ": " << dssync_test::what(errs[static_cast<std::size_t>(r)]));
    CHECK(dssync_test::holds<dssync::mismatch_error>(errs[static_cast<std::size_t>(r)]));
    CHECK(dssync_test::contains(dssync_test::what(errs[static_cast<std::size_t>(r)]), "reduction op"));
    CHECK(dssync_test::contains(dssync_test::what(errs[static_cast<std::size_t>(r)]), "max"));
    CHECK(dssync_test::contains(dssync_test::what(errs[static_cast<std::size_t>(r)]), "user"));
  }
}

}  // TEST_SUITE
