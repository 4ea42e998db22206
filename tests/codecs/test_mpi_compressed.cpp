// Compressed allreduce over the MPI transport under a real mpiexec (2, 3 and 4 ranks): topk, onebit,
// qsgd and dgc inside the plan (payloads of run-time length around the ring), three steps each; every rank
// checks itself bitwise against a sequential oracle of every rank's codec. The elementwise codecs run as
// the encoded ring: identity is bitwise the plain ring, and fp16 sums small integers exactly.

#include <doctest/doctest.h>

#include <Eigen/Core>  // codecs/half.hpp needs Eigen (this include tags the test for CMake)
#include <dssync/codecs/dgc.hpp>
#include <dssync/codecs/half.hpp>
#include <dssync/codecs/identity.hpp>
#include <dssync/codecs/onebit.hpp>
#include <dssync/codecs/qsgd.hpp>
#include <dssync/codecs/topk.hpp>
#include <dssync/synchronize.hpp>
#include <dssync/topology/full_mesh.hpp>
#include <dssync/transport/mpi.hpp>

#include <boost/mpi/communicator.hpp>

#include <chrono>
#include <cstring>
#include <random>
#include <span>
#include <vector>

namespace {

namespace cd = dssync::codecs;
using namespace std::chrono_literals;

std::vector<float> gaussian(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

template <class Codec>
void check_mpi_codec(dssync::transport::mpi& t, const Codec& proto, std::size_t count) {
  CAPTURE(Codec::name);
  CAPTURE(count);
  const int n = t.size(), me = t.rank();
  dssync::options opt;
  opt.timeout = 60s;
  opt.verify = true;
  auto grad = [&](int r, int step) { return gaussian(count, static_cast<unsigned>(100 * step + r + 1)); };
  std::vector<Codec> mirror(static_cast<std::size_t>(n), proto);
  Codec mine = proto;
  for (int step = 0; step < 3; ++step) {
    std::vector<float> want(count);
    for (int r = 0; r < n; ++r) {
      std::vector<std::byte> w;
      const auto g = grad(r, step);
      mirror[static_cast<std::size_t>(r)].encode(std::span<const float>(g), w);
      dssync::codec_ref<Codec, float> hook(mirror[static_cast<std::size_t>(r)]);
      if (r == 0) hook.decode(w, want);
      else hook.decode_add(w, want);
    }
    auto g = grad(me, step);
    dssync::synchronize(t, g, mine, dssync::ops::sum{}, opt);
    CHECK_MESSAGE((count == 0 || std::memcmp(g.data(), want.data(), count * sizeof(float)) == 0),
                  "rank " << me << " step " << step << ": the compressed allreduce differs from the oracle");
  }
}

}  // namespace

TEST_SUITE("mpi") {
  TEST_CASE("mpi compressed allreduce: topk, onebit, qsgd and dgc equal the oracle bitwise on every rank") {
    dssync::transport::mpi t(boost::mpi::communicator{});
    for (std::size_t count : {std::size_t{0}, std::size_t{1}, std::size_t{1000}, std::size_t{70001}}) {
      check_mpi_codec(t, cd::topk<float>(0.01), count);
      check_mpi_codec(t, cd::onebit<float>(256), count);
      check_mpi_codec(t, cd::qsgd<float>(16, 512), count);
      check_mpi_codec(t, cd::dgc<float>(0.01), count);
    }
  }

  TEST_CASE("mpi encoded ring: identity is bitwise the plain ring, fp16 sums small integers exactly") {
    dssync::transport::mpi t(boost::mpi::communicator{});
    const int n = t.size(), me = t.rank();
    dssync::options opt;
    opt.timeout = 60s;
    opt.verify = true;
    for (std::size_t count : {std::size_t{0}, std::size_t{1}, std::size_t{1000}, std::size_t{70001}}) {
      CAPTURE(count);
      auto a = gaussian(count, static_cast<unsigned>(me + 5)), b = a;
      dssync::synchronize<dssync::algorithms::ring>(t, dssync::topology::full_mesh(n), a, dssync::ops::sum{}, opt);
      cd::identity<float> id;
      dssync::synchronize(t, b, id, dssync::ops::sum{}, opt);
      CHECK_MESSAGE((count == 0 || std::memcmp(a.data(), b.data(), count * sizeof(float)) == 0),
                    "rank " << me << ": the identity codec's encoded ring differs from the ring");
      std::vector<float> ints(count);
      for (std::size_t i = 0; i < count; ++i) ints[i] = static_cast<float>((i * 7 + static_cast<std::size_t>(me) * 13) % 64) - 32.0f;
      cd::fp16<float> half;
      dssync::synchronize(t, ints, half, dssync::ops::sum{}, opt);
      std::size_t wrong = 0;
      for (std::size_t i = 0; i < count; ++i) {
        float want = 0;
        for (int q = 0; q < n; ++q) want += static_cast<float>((i * 7 + static_cast<std::size_t>(q) * 13) % 64) - 32.0f;
        wrong += ints[i] != want;
      }
      CHECK_MESSAGE(wrong == 0, "rank " << me << ": " << wrong << " fp16 sums of small integers are not exact");
    }
  }
}
