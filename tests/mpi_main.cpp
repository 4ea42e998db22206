// doctest main for the MPI tests, run under mpiexec. MPI is initialised by Boost.MPI's environment;
// ranks other than 0 print only failures, so the log reads like one program's.
//
// A run whose filters (-ts=, -tse=, -tc=, ...) leave no test case to run fails: ctest runs some cases
// only at the world sizes they fit (tests/CMakeLists.txt), and a run that tests nothing must not pass.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <boost/mpi/collectives.hpp>
#include <boost/mpi/communicator.hpp>
#include <boost/mpi/environment.hpp>

#include <cstdio>
#include <functional>

namespace {

/// Records how many test cases passed the filters (and so ran) in the test run.
struct run_counter : doctest::IReporter {
  static inline bool ended = false;
  static inline unsigned cases = 0;
  explicit run_counter(const doctest::ContextOptions&) {}
  void report_query(const doctest::QueryData&) override {}
  void test_run_start() override {}
  void test_run_end(const doctest::TestRunStats& s) override {
    ended = true;
    cases = s.numTestCasesPassingFilters;
  }
  void test_case_start(const doctest::TestCaseData&) override {}
  void test_case_reenter(const doctest::TestCaseData&) override {}
  void test_case_end(const doctest::CurrentTestCaseStats&) override {}
  void test_case_exception(const doctest::TestCaseException&) override {}
  void subcase_start(const doctest::SubcaseSignature&) override {}
  void subcase_end() override {}
  void log_assert(const doctest::AssertData&) override {}
  void log_message(const doctest::MessageData&) override {}
  void test_case_skipped(const doctest::TestCaseData&) override {}
};

}  // namespace

REGISTER_LISTENER("dssync_mpi_run_counter", 1, run_counter);

int main(int argc, char** argv) {
  boost::mpi::environment env(argc, argv, boost::mpi::threading::funneled);
  boost::mpi::communicator world;
  doctest::Context ctx;
  ctx.applyCommandLine(argc, argv);
  if (world.rank() != 0) ctx.setOption("minimal", true);
  int failed = ctx.run() != 0 ? 1 : 0;
  if (run_counter::ended && run_counter::cases == 0) {  // not for queries (--list-test-cases, --help)
    if (world.rank() == 0) std::fprintf(stderr, "dssync_mpi_tests: no test case matches the filters: nothing ran\n");
    failed = 1;
  }
  // Every rank returns the same verdict, so mpiexec's exit code reflects any rank's failure.
  const int any = boost::mpi::all_reduce(world, failed, std::plus<int>());
  return any != 0 ? 1 : 0;
}
