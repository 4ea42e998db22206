// The session API on in-process ranks: a sharded SGD step as ZeRO and FSDP do it. Rank 0 broadcasts the
// initial parameters; each step every rank reduce-scatters its gradients (average), updates only its own
// shard, and allgathers the shards back; an allgatherv collects a variable number of per-rank samples
// (lengths known only at run time). Every rank checks the result against what one process would compute,
// and the program exits non-zero on any difference.
//
//   build/examples/collectives [ranks=4] [parameters=100003] [steps=5]

#include <dssync/dssync.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <vector>

namespace {

// Rank r's gradient of parameter i at step s: known to every rank, so each can check the others' work.
float gradient(int r, int s, std::size_t i) { return static_cast<float>((i % 97) * 0.01 + r * 0.5 - s * 0.25); }

}  // namespace

int main(int argc, char** argv) {
  const int ranks = argc > 1 ? std::atoi(argv[1]) : 4;
  const std::size_t params = argc > 2 ? static_cast<std::size_t>(std::atoll(argv[2])) : 100003;
  const int steps = argc > 3 ? std::atoi(argv[3]) : 5;
  const float lr = 0.1f;
  if (ranks < 1 || steps < 0) {
    std::fprintf(stderr, "usage: collectives [ranks>=1] [parameters] [steps>=0]\n");
    return 2;
  }

  // The sequential reference: one process averaging the gradients of all ranks.
  std::vector<double> ref(params);
  for (std::size_t i = 0; i < params; ++i) ref[i] = static_cast<double>(i % 13);
  for (int s = 0; s < steps; ++s)
    for (std::size_t i = 0; i < params; ++i) {
      double g = 0;
      for (int r = 0; r < ranks; ++r) g += gradient(r, s, i);
      ref[i] -= lr * g / ranks;
    }

  dssync::transport::inproc::world world(ranks);
  std::vector<double> worst(static_cast<std::size_t>(ranks), 0.0);
  std::vector<std::size_t> samples(static_cast<std::size_t>(ranks), 0);
  world.run([&](auto& transport) {
    dssync::communicator comm(transport);
    const int me = comm.rank();
    std::vector<float> w(params, -1.0f);
    if (me == 0)
      for (std::size_t i = 0; i < params; ++i) w[i] = static_cast<float>(i % 13);
    comm.broadcast(std::span(w), 0);

    std::vector<float> grad(params);
    for (int s = 0; s < steps; ++s, comm.next_iteration()) {
      for (std::size_t i = 0; i < params; ++i) grad[i] = gradient(me, s, i);
      const dssync::range mine = comm.reduce_scatter(std::span(grad), dssync::ops::average{});
      for (std::size_t i = mine.offset; i < mine.end(); ++i) w[i] -= lr * grad[i];  // my shard only
      comm.allgather(std::span(w));                                                   // everyone's shards
    }
    double err = 0;
    for (std::size_t i = 0; i < params; ++i) err = std::fmax(err, std::fabs(w[i] - ref[i]));
    worst[static_cast<std::size_t>(me)] = err;

    // Per-rank samples of different, run-time lengths (say, the losses of its last batches).
    std::vector<float> mine(static_cast<std::size_t>(me % 3 + 1), static_cast<float>(me));
    std::vector<float> all;
    const auto lengths = comm.allgatherv(std::span<const float>(mine), all);
    std::size_t expect = 0;
    for (int r = 0; r < ranks; ++r) expect += static_cast<std::size_t>(r % 3 + 1);
    samples[static_cast<std::size_t>(me)] = all.size() == expect && lengths.size() == static_cast<std::size_t>(ranks)
                                                ? all.size()
                                                : 0;
  });

  int bad = 0;
  for (int r = 0; r < ranks; ++r) {
    const bool ok = worst[static_cast<std::size_t>(r)] < 1e-4 && samples[static_cast<std::size_t>(r)] > 0;
    std::printf("rank %d: max |w - reference| = %.3g after %d sharded steps, %zu gathered samples%s\n", r,
                worst[static_cast<std::size_t>(r)], steps, samples[static_cast<std::size_t>(r)], ok ? "" : "  WRONG");
    bad += ok ? 0 : 1;
  }
  std::printf("%s: %d ranks, %zu parameters\n", bad == 0 ? "ok" : "FAILED", ranks, params);
  return bad == 0 ? 0 : 1;
}
