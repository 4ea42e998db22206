// Packaging test consumer: uses dssync via add_subdirectory().
#include <dssync/dssync.hpp>
#include <dssync/version.hpp>

#include <cstdio>
#include <exception>
#include <stdexcept>
#include <vector>

#ifdef EXPECT_MAJOR
static_assert(DSSYNC_VERSION_MAJOR == EXPECT_MAJOR, "installed dssync has an unexpected major version");
#endif

int main() {
  try {
    dssync::transport::inproc::world w(4);
    w.run([](auto& comm) {
      std::vector<float> v(1000, float(comm.rank() + 1));
      dssync::synchronize(comm, v);
      for (float x : v)
        if (x != 10.f) throw std::runtime_error("bad");
    });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "consumer failed: %s\n", e.what());
    return 1;
  }
  std::printf("dssync %d.%d.%d add_subdirectory consumer OK\n", DSSYNC_VERSION_MAJOR,
              DSSYNC_VERSION_MINOR, DSSYNC_VERSION_PATCH);
  return 0;
}
