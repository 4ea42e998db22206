// dssync::communicator, the session API: every collective (allreduce, reduce-scatter, allgather,
// allgatherv, broadcast, reduce), in place and out of place, blocking and asynchronous, on in-process
// worlds of 1 to 8 ranks and on the simulated transport, against sequential oracles; element types from
// int to a user struct; bad input named by rank and value; errors of asynchronous collectives delivered
// by their requests.

#include <doctest/doctest.h>

#include <dssync/communicator.hpp>
#include <dssync/topology/dgx1.hpp>
#include <dssync/topology/racks.hpp>
#include <dssync/topology/star.hpp>
#include <dssync/transport/sim.hpp>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "collective_inputs.hpp"
#include "test_support.hpp"

using dssync::semantics;
using dssync_test::describe_errors;
using dssync_test::input;
using dssync_test::inputs_of;
using dssync_test::sum_over;

namespace {

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

struct particle {  // a user type: copied by allgather and broadcast, never reduced
  double x, y;
  std::int32_t id;
  friend bool operator==(const particle&, const particle&) = default;
};

const int world_sizes[] = {1, 2, 3, 5, 8};
const std::size_t counts[] = {0, 1, 7, 1000};

template <class F>
void on_world(int n, F&& f) {
  const auto errs = dssync_test::run_world(n, [&](auto& t) {
    dssync::communicator comm(t);
    f(comm);
  });
  REQUIRE_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
}

#define REQUIRE_RANK(cond, what)                                                          \
  do {                                                                                    \
    if (!(cond)) throw dssync_test::check_failed(std::string("rank ") + std::to_string(comm.rank()) + ": " + (what)); \
  } while (0)

}  // namespace

TEST_SUITE_BEGIN("communicator");

TEST_CASE("allreduce in place and out of place, int and double, against the oracle") {
  for (int n : world_sizes)
    for (std::size_t count : counts) {
      INFO("n = " << n << ", count = " << count);
      on_world(n, [&](auto& comm) {
        auto a = inputs_of<std::int32_t>(comm.rank(), count);
        comm.allreduce(std::span(a));
        const auto in = inputs_of<double>(comm.rank(), count);
        std::vector<double> out(count, -1);
        comm.allreduce(std::span<const double>(in), std::span(out), dssync::ops::average{});
        for (std::size_t i = 0; i < count; ++i) {
          REQUIRE_RANK(a[i] == sum_over<std::int32_t>(n, i), "allreduce element " + std::to_string(i));
          REQUIRE_RANK(std::abs(out[i] - sum_over<double>(n, i) / n) < 1e-9, "average element " + std::to_string(i));
          REQUIRE_RANK(in[i] == input<double>(comm.rank(), i), "out-of-place allreduce changed its input");
        }
      });
    }
}

TEST_CASE("reduce-scatter: each rank ends with its block reduced, in place and out of place, averages too") {
  for (int n : world_sizes)
    for (std::size_t count : counts) {
      INFO("n = " << n << ", count = " << count);
      on_world(n, [&](auto& comm) {
        auto a = inputs_of<std::int64_t>(comm.rank(), count);
        const dssync::range mine = comm.reduce_scatter(std::span(a));
        REQUIRE_RANK(mine == dssync::chunk(count, static_cast<std::size_t>(n), static_cast<std::size_t>(comm.rank())),
                     "block");
        for (std::size_t i = mine.offset; i < mine.end(); ++i)
          REQUIRE_RANK(a[i] == sum_over<std::int64_t>(n, i), "in-place element " + std::to_string(i));
        const auto in = inputs_of<float>(comm.rank(), count);
        std::vector<float> out(mine.length);
        comm.reduce_scatter(std::span<const float>(in), std::span(out), dssync::ops::average{});
        for (std::size_t j = 0; j < mine.length; ++j)
          REQUIRE_RANK(std::abs(out[j] - sum_over<float>(n, mine.offset + j) / static_cast<float>(n)) < 1e-3f,
                       "average element " + std::to_string(mine.offset + j));
      });
    }
}

TEST_CASE("allgather of equal contributions, in place and out of place, of a user struct") {
  for (int n : world_sizes)
    for (std::size_t k : {std::size_t{0}, std::size_t{1}, std::size_t{5}}) {
      INFO("n = " << n << ", k = " << k);
      on_world(n, [&](auto& comm) {
        std::vector<particle> mine(k);
        for (std::size_t i = 0; i < k; ++i) mine[i] = {comm.rank() + 0.5, static_cast<double>(i), comm.rank()};
        std::vector<particle> all(k * static_cast<std::size_t>(n));
        comm.allgather(std::span<const particle>(mine), std::span(all));
        for (int r = 0; r < n; ++r)
          for (std::size_t i = 0; i < k; ++i)
            REQUIRE_RANK((all[static_cast<std::size_t>(r) * k + i] == particle{r + 0.5, static_cast<double>(i), r}),
                         "element " + std::to_string(i) + " of rank " + std::to_string(r));
        // In place: rank r fills its block, the rest is garbage that must be overwritten.
        const std::size_t count = k * static_cast<std::size_t>(n) + 3;
        std::vector<int> buf(count, -777);
        const auto b = dssync::chunk(count, static_cast<std::size_t>(n), static_cast<std::size_t>(comm.rank()));
        for (std::size_t i = b.offset; i < b.end(); ++i) buf[i] = input<int>(comm.rank(), i);
        comm.allgather(std::span(buf));
        for (int r = 0; r < n; ++r) {
          const auto br = dssync::chunk(count, static_cast<std::size_t>(n), static_cast<std::size_t>(r));
          for (std::size_t i = br.offset; i < br.end(); ++i)
            REQUIRE_RANK(buf[i] == input<int>(r, i), "in-place element " + std::to_string(i));
        }
      });
    }
}

TEST_CASE("allgatherv: lengths known only at run time, zero lengths included, on every rank") {
  for (int n : world_sizes) {
    INFO("n = " << n);
    on_world(n, [&](auto& comm) {
      for (int round = 0; round < 3; ++round) {
        // Each rank picks its length from its own seed: the others cannot know it.
        std::mt19937 g(static_cast<unsigned>(comm.rank() * 31 + round));
        const std::size_t len = (comm.rank() + round) % 3 == 0 ? 0 : g() % 50;
        std::vector<double> mine(len);
        for (std::size_t i = 0; i < len; ++i) mine[i] = comm.rank() * 1000.0 + static_cast<double>(i);
        std::vector<double> all(7, -1.0);  // resized by the call
        const auto sizes = comm.allgatherv(std::span<const double>(mine), all);
        REQUIRE_RANK(sizes.size() == static_cast<std::size_t>(n), "sizes");
        REQUIRE_RANK(sizes[static_cast<std::size_t>(comm.rank())] == len, "own length");
        REQUIRE_RANK(all.size() == std::accumulate(sizes.begin(), sizes.end(), std::size_t{0}), "total");
        std::size_t at = 0;
        for (int r = 0; r < n; ++r)
          for (std::size_t i = 0; i < sizes[static_cast<std::size_t>(r)]; ++i, ++at)
            REQUIRE_RANK(all[at] == r * 1000.0 + static_cast<double>(i),
                         "element " + std::to_string(i) + " of rank " + std::to_string(r));
      }
    });
  }
}

TEST_CASE("broadcast and reduce from every root, by the tree below 64 KiB and the chain above") {
  for (int n : world_sizes)
    for (std::size_t count : {std::size_t{0}, std::size_t{7}, std::size_t{40000}}) {
      INFO("n = " << n << ", count = " << count);
      on_world(n, [&](auto& comm) {
        for (int root = 0; root < n; ++root) {
          auto b = inputs_of<float>(comm.rank(), count);
          comm.broadcast(std::span(b), root);
          for (std::size_t i = 0; i < count; ++i) REQUIRE_RANK(b[i] == input<float>(root, i), "broadcast element");
          auto r = inputs_of<std::int32_t>(comm.rank(), count);
          comm.reduce(std::span(r), root);
          if (comm.rank() == root)
            for (std::size_t i = 0; i < count; ++i)
              REQUIRE_RANK(r[i] == sum_over<std::int32_t>(n, i), "reduce element " + std::to_string(i));
          const auto in = inputs_of<std::int32_t>(comm.rank(), count);
          std::vector<std::int32_t> out(comm.rank() == root ? count : 0);
          comm.reduce(std::span<const std::int32_t>(in), std::span(out), root);
          if (comm.rank() == root)
            for (std::size_t i = 0; i < count; ++i)
              REQUIRE_RANK(out[i] == sum_over<std::int32_t>(n, i), "out-of-place reduce element");
        }
        const std::size_t bytes = count * sizeof(float);
        REQUIRE_RANK(comm.policy(semantics::broadcast, bytes).name ==
                         (bytes >= 65536 ? "chain" : "binomial_tree"),
                     "size rule");
      });
    }
}

TEST_CASE("asynchronous collectives: several outstanding, completed in issue order, overlapping the caller") {
  on_world(4, [&](auto& comm) {
    std::vector<std::vector<std::int32_t>> bufs;
    for (int k = 0; k < 6; ++k) bufs.push_back(inputs_of<std::int32_t>(comm.rank() + k, 300 + 17 * static_cast<std::size_t>(k)));
    std::vector<float> bc(999, static_cast<float>(comm.rank()));
    std::vector<std::int32_t> gathered;
    std::vector<std::size_t> sizes;
    const std::vector<std::int32_t> mine(static_cast<std::size_t>(comm.rank()), comm.rank());
    std::vector<dssync::request> reqs;
    for (auto& b : bufs) reqs.push_back(comm.allreduce_async(std::span(b)));
    reqs.push_back(comm.broadcast_async(std::span(bc), 3));
    reqs.push_back(comm.allgatherv_async(std::span<const std::int32_t>(mine), gathered, sizes));
    // A blocking call issued now runs after them.
    std::vector<std::int32_t> after = inputs_of<std::int32_t>(comm.rank(), 10);
    comm.allreduce(std::span(after));
    for (auto& r : reqs) REQUIRE_RANK(r.test(), "a request issued before a completed blocking call is pending");
    for (auto& r : reqs) r.wait();
    for (int k = 0; k < 6; ++k)
      for (std::size_t i = 0; i < bufs[static_cast<std::size_t>(k)].size(); ++i) {
        std::int32_t s = 0;
        for (int r = 0; r < 4; ++r) s += input<std::int32_t>(r + k, i);
        REQUIRE_RANK(bufs[static_cast<std::size_t>(k)][i] == s, "async allreduce " + std::to_string(k));
      }
    for (float v : bc) REQUIRE_RANK(v == 3.0f, "async broadcast");
    REQUIRE_RANK((sizes == std::vector<std::size_t>{0, 1, 2, 3}), "async allgatherv sizes");
    REQUIRE_RANK((gathered == std::vector<std::int32_t>{1, 2, 2, 3, 3, 3}), "async allgatherv data");
    for (std::size_t i = 0; i < after.size(); ++i) REQUIRE_RANK(after[i] == sum_over<std::int32_t>(4, i), "after");
  });
  dssync::request empty;
  CHECK_FALSE(empty.valid());
  CHECK_THROWS_AS(empty.wait(), dssync::invalid_argument);
}

TEST_CASE("bad input: roots, lengths and policies are refused, naming the rank and the value") {
  on_world(3, [&](auto& comm) {
    std::vector<float> x(10);
    try {
      comm.broadcast(std::span(x), 3);
      throw dssync_test::check_failed("root 3 accepted");
    } catch (const dssync::invalid_argument& e) {
      REQUIRE_RANK(contains(e.what(), "root 3") && contains(e.what(), "rank " + std::to_string(comm.rank())),
                   e.what());
    }
    std::vector<float> out(9);
    try {
      comm.allreduce(std::span<const float>(x), std::span(out));
      throw dssync_test::check_failed("short output accepted");
    } catch (const dssync::invalid_argument& e) {
      REQUIRE_RANK(contains(e.what(), "out has 9 elements, expected 10"), e.what());
    }
    try {
      comm.use(semantics::allgather, "chain");
      throw dssync_test::check_failed("chain accepted for allgather");
    } catch (const dssync::invalid_argument& e) {
      REQUIRE_RANK(contains(e.what(), "plans broadcast, reduce, not allgather"), e.what());
    }
    try {
      comm.use(semantics::allreduce, "butterfly");
      throw dssync_test::check_failed("unknown policy accepted");
    } catch (const dssync::invalid_argument& e) {
      REQUIRE_RANK(contains(e.what(), "\"butterfly\" is not registered"), e.what());
    }
    comm.use(semantics::broadcast, "chain");
    REQUIRE_RANK(comm.policy(semantics::broadcast, 4).name == "chain", "use() chose the policy");
    comm.use(semantics::broadcast, "");
    REQUIRE_RANK(comm.policy(semantics::broadcast, 4).name == "binomial_tree", "use(\"\") restored the size rule");
  });
}

TEST_CASE("mismatched lengths across ranks raise mismatch_error on every rank, blocking and through a request") {
  for (bool async : {false, true}) {
    INFO("async = " << async);
    const auto errs = dssync_test::run_world(3, [&](auto& t) {
      dssync::communicator comm(t);
      std::vector<float> x(t.rank() == 1 ? 11 : 10, 1.0f);
      if (async) {
        auto r = comm.allreduce_async(std::span(x));
        r.wait();
      } else {
        comm.broadcast(std::span(x), 0);
      }
    });
    for (std::size_t r = 0; r < errs.size(); ++r) {
      REQUIRE_MESSAGE(errs[r] != nullptr, "rank " << r << " did not fail");
      try {
        std::rethrow_exception(errs[r]);
      } catch (const dssync::mismatch_error& e) {
        CHECK(contains(e.what(), "11"));
      } catch (const std::exception& e) {
        FAIL("rank " << r << ": not a mismatch_error: " << e.what());
      }
    }
  }
}

TEST_CASE("the iteration counter is the session's, and plans are cached per session") {
  on_world(2, [&](auto& comm) {
    REQUIRE_RANK(comm.iteration() == 0, "starts at 0");
    std::vector<int> x(8, 1);
    comm.allreduce(std::span(x));
    comm.allreduce(std::span(x));
    REQUIRE_RANK(comm.cached_plans() == 1, "one plan for two equal calls");
    comm.broadcast(std::span(x), 1);
    REQUIRE_RANK(comm.cached_plans() == 2, "a broadcast is another plan");
    REQUIRE_RANK(comm.next_iteration() == 1 && comm.iteration() == 1, "next_iteration");
  });
}

TEST_CASE("the communicator on the simulated transport: allgatherv, reduce-scatter and broadcast") {
  dssync::transport::sim::world w{dssync::topology::star(5)};
  const auto errs = w.run_collect([&](auto& t) {
    dssync::communicator comm(t);
    const std::vector<int> mine(static_cast<std::size_t>(t.rank()) * 3, t.rank());
    std::vector<int> all;
    const auto sizes = comm.allgatherv(std::span<const int>(mine), all);
    REQUIRE_RANK((sizes == std::vector<std::size_t>{0, 3, 6, 9, 12}), "sizes");
    REQUIRE_RANK(all.size() == 30 && all[0] == 1 && all[29] == 4, "data");
    auto a = inputs_of<double>(t.rank(), 101);
    const auto mine_block = comm.reduce_scatter(std::span(a));
    for (std::size_t i = mine_block.offset; i < mine_block.end(); ++i)
      REQUIRE_RANK(a[i] == sum_over<double>(5, i), "reduce-scatter element");
    auto b = inputs_of<float>(t.rank(), 50000);
    comm.broadcast(std::span(b), 2);
    REQUIRE_RANK(b[49999] == input<float>(2, 49999), "broadcast");
  });
  REQUIRE_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
}

namespace {
/// The oracle of a group allreduce (sum): element i of rank r's result is the sum over r's group.
template <class T>
bool group_sum_ok(const std::vector<T>& got, const std::vector<int>& group) {
  for (std::size_t i = 0; i < got.size(); ++i) {
    T s{};
    for (int m : group) s = static_cast<T>(s + input<T>(m, i));
    if (got[i] != s) return false;
  }
  return true;
}
}  // namespace

TEST_CASE("group allreduce: DS-Sync's groups of each iteration, with and without observed contention") {
  const std::pair<int, int> shapes[] = {{1, 1}, {1, 2}, {1, 3}, {2, 2}, {3, 3}, {2, 4}, {4, 4}};
  for (auto [racks, per] : shapes) {
    const int n = racks * per;
    INFO("racks " << racks << " x " << per);
    const dssync::topology::leaf_spine topo(racks, per);
    std::atomic<int> state_groups{0};
    const auto errs = dssync_test::run_world(n, [&](auto& t) {
      dssync::communicator comm(t, topo);
      dssync::algorithms::ds_sync ds;
      for (int it = 0; it < 4; ++it) {
        if (it == 2 && n > 2) {  // contention on worker 1's NIC from iteration 2 on
          dssync::network_state st;
          st.slow_workers = {1};
          ds.observe(st);
        }
        for (std::size_t count : {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{1000}}) {
          auto x = inputs_of<double>(comm.rank(), count);
          const auto group = comm.group_allreduce(ds, std::span(x));
          const auto groups = ds.groups(topo, comm.iteration());
          auto want = dssync::algorithms::group_of(groups, comm.rank());
          std::sort(want.begin(), want.end());
          REQUIRE_RANK(group == want, "the returned group is the policy's group of the iteration");
          REQUIRE_RANK(group_sum_ok(x, group), "the sum over the group, count " + std::to_string(count));
          if (it >= 2 && n > 2 && comm.rank() == 1) {
            REQUIRE_RANK(group.size() <= 2, "the slow worker is in a group of at most two");
            ++state_groups;
          }
        }
        comm.next_iteration();
      }
      // The registered form: ds_sync in its initial state, the same groups as a fresh object.
      auto x = inputs_of<std::int64_t>(comm.rank(), 33);
      const auto group = comm.group_allreduce(std::span(x));
      const auto fresh = dssync::algorithms::ds_sync{}.groups(topo, comm.iteration());
      auto want = dssync::algorithms::group_of(fresh, comm.rank());
      std::sort(want.begin(), want.end());
      REQUIRE_RANK(group == want && group_sum_ok(x, group), "the registered ds_sync");
      // In the background: the policy as it was when the request was issued.
      auto y = inputs_of<float>(comm.rank(), 100);
      const auto before = ds.groups(topo, comm.iteration());
      auto r = comm.group_allreduce_async(ds, std::span(y));
      ds.observe({});
      r.wait();
      REQUIRE_RANK(group_sum_ok(y, dssync::algorithms::group_of(before, comm.rank())), "async: the groups at issue");
    });
    REQUIRE_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
    if (n > 2) CHECK(state_groups.load() == 8);
  }
}

TEST_CASE("group allreduce with a whole-allreduce policy is one group; gossip's pairs") {
  on_world(5, [&](auto& comm) {
    dssync::algorithms::ring ring;
    auto x = inputs_of<int>(comm.rank(), 11);
    const auto group = comm.group_allreduce(ring, std::span(x));
    REQUIRE_RANK(group.size() == 5 && group_sum_ok(x, group), "ring: one group of all ranks");
    dssync::algorithms::gossip gossip;
    auto y = inputs_of<int>(comm.rank(), 11);
    const auto pair = comm.group_allreduce(gossip, std::span(y));
    REQUIRE_RANK(!pair.empty() && pair.size() <= 2 && group_sum_ok(y, pair), "gossip: a pair (or alone)");
    comm.use(semantics::group_allreduce, "gossip");
    REQUIRE_RANK(comm.policy(semantics::group_allreduce).name == "gossip", "use() chose gossip");
    try {
      comm.use(semantics::group_allreduce, "ring");
      throw dssync_test::check_failed("ring accepted for group allreduce");
    } catch (const dssync::invalid_argument& e) {
      REQUIRE_RANK(contains(e.what(), "not group-allreduce"), e.what());
    }
  });
}

TEST_CASE("group allreduce agrees inside the group: a length mismatch fails its group only") {
  const dssync::topology::leaf_spine topo(2, 2);
  const auto groups = dssync::algorithms::ds_sync{}.groups(topo, 0);
  std::vector<int> bad;  // a group of two or more: a rank alone has no one to disagree with
  for (const auto& g : groups)
    if (g.size() >= 2 && bad.empty()) bad = g;
  REQUIRE(bad.size() >= 2);
  REQUIRE(bad.size() < 4);
  const int liar = bad.front();
  const auto errs = dssync_test::run_world(4, [&](auto& t) {
    dssync::communicator comm(t, topo);
    dssync::algorithms::ds_sync ds;
    std::vector<float> x(t.rank() == liar ? 9 : 8, 1.0f);
    comm.group_allreduce(ds, std::span(x));
  });
  for (int r = 0; r < 4; ++r) {
    const bool in_bad = std::find(bad.begin(), bad.end(), r) != bad.end();
    INFO("rank " << r << " in rank " << liar << "'s group: " << in_bad);
    if (!in_bad) {
      CHECK(errs[static_cast<std::size_t>(r)] == nullptr);
      continue;
    }
    REQUIRE(errs[static_cast<std::size_t>(r)] != nullptr);
    try {
      std::rethrow_exception(errs[static_cast<std::size_t>(r)]);
    } catch (const dssync::mismatch_error& e) {
      CHECK(contains(e.what(), "9"));
    } catch (const std::exception& e) {
      FAIL("not a mismatch_error: " << e.what());
    }
  }
}

TEST_CASE("barrier: no rank leaves before every rank has entered") {
  for (int n : world_sizes) {
    std::atomic<int> entered{0};
    const auto errs = dssync_test::run_world(n, [&](auto& t) {
      dssync::communicator comm(t);
      for (int round = 1; round <= 3; ++round) {
        if (comm.rank() == n - 1) std::this_thread::yield();  // the last rank comes late
        ++entered;
        comm.barrier();
        REQUIRE_RANK(entered.load() >= round * n, "left round " + std::to_string(round) + " before every rank entered");
        comm.barrier();  // nobody enters the next round before all have checked this one
      }
    });
    REQUIRE_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
  }
}

TEST_CASE("the tree policy through the communicator: broadcast, reduce and allreduce on a DGX-1 subset") {
  const dssync::topology::dgx1 topo({0, 1, 2, 5});
  const auto errs = dssync_test::run_world(4, [&](auto& t) {
    dssync::communicator comm(t, topo);
    comm.use(semantics::broadcast, "tree").use(semantics::reduce, "tree").use(semantics::allreduce, "tree");
    REQUIRE_RANK(comm.policy(semantics::broadcast).name == "tree", "use() chose tree");
    for (std::size_t count : counts)
      for (int root = 0; root < 4; ++root) {
        auto b = inputs_of<std::int64_t>(comm.rank(), count);
        comm.broadcast(std::span(b), root);
        REQUIRE_RANK(b == inputs_of<std::int64_t>(root, count), "broadcast from " + std::to_string(root));
        auto r = inputs_of<std::int64_t>(comm.rank(), count);
        comm.reduce(std::span(r), root);
        if (comm.rank() == root)
          for (std::size_t i = 0; i < count; ++i)
            REQUIRE_RANK(r[i] == sum_over<std::int64_t>(4, i), "reduce into " + std::to_string(root));
      }
    auto a = inputs_of<double>(comm.rank(), 5000);
    comm.allreduce(std::span(a));
    for (std::size_t i = 0; i < a.size(); ++i) REQUIRE_RANK(a[i] == sum_over<double>(4, i), "allreduce");
  });
  REQUIRE_MESSAGE(describe_errors(errs).empty(), describe_errors(errs));
}

TEST_SUITE_END();
