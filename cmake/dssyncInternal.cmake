# Internal helpers for dssync's own tests, examples and benches.
# Not installed; nothing here affects the exported targets.
include_guard(GLOBAL)

# --- sanitizer flags --------------------------------------------------------
set(DSSYNC_SANITIZE_FLAGS "")
if(NOT DSSYNC_SANITIZE STREQUAL "")
  if(MSVC)
    message(FATAL_ERROR "dssync: DSSYNC_SANITIZE is only supported with GCC/Clang")
  endif()
  string(REPLACE "," ";" _dssync_san_list "${DSSYNC_SANITIZE}")
  foreach(_dssync_san IN LISTS _dssync_san_list)
    if(NOT _dssync_san MATCHES "^(address|undefined|thread|leak|memory)$")
      message(FATAL_ERROR "dssync: unsupported sanitizer '${_dssync_san}' in DSSYNC_SANITIZE='${DSSYNC_SANITIZE}'")
    endif()
  endforeach()
  if("thread" IN_LIST _dssync_san_list AND "address" IN_LIST _dssync_san_list)
    message(FATAL_ERROR "dssync: thread and address sanitizers cannot be combined")
  endif()
  # Debug information: -g unless the build type's flags already name a level (scripts/test.sh builds
  # the sanitizer runs with -g1, line tables only, which is much cheaper to compile than -g).
  string(TOUPPER "${CMAKE_BUILD_TYPE}" _dssync_bt)
  set(DSSYNC_SANITIZE_FLAGS -fsanitize=${DSSYNC_SANITIZE} -fno-omit-frame-pointer)
  if(NOT "${CMAKE_CXX_FLAGS} ${CMAKE_CXX_FLAGS_${_dssync_bt}}" MATCHES "(^| )-g")
    list(APPEND DSSYNC_SANITIZE_FLAGS -g)
  endif()
  if("undefined" IN_LIST _dssync_san_list)
    # Make UBSan findings fail the run instead of only printing.
    list(APPEND DSSYNC_SANITIZE_FLAGS -fno-sanitize-recover=all)
  endif()
  message(STATUS "dssync: sanitizers for tests/examples/benches: ${DSSYNC_SANITIZE}")
endif()

# --- MPI launcher -----------------------------------------------------------
if(MPIEXEC_EXECUTABLE)
  execute_process(COMMAND "${MPIEXEC_EXECUTABLE}" --version
                  OUTPUT_VARIABLE _dssync_mpiexec_version
                  ERROR_VARIABLE _dssync_mpiexec_version
                  RESULT_VARIABLE _dssync_mpiexec_rc
                  TIMEOUT 30)
  if(_dssync_mpiexec_version MATCHES "Open MPI|OpenRTE|open-mpi")
    # OpenMPI: allow more ranks than cores; running as root (containers/CI)
    # is refused without --allow-run-as-root (harmless otherwise).
    set(_dssync_mpiexec_default_flags --oversubscribe --allow-run-as-root)
  else()
    set(_dssync_mpiexec_default_flags "")
  endif()
  set(DSSYNC_MPIEXEC_FLAGS "${_dssync_mpiexec_default_flags}" CACHE STRING
      "Extra flags passed to MPIEXEC_EXECUTABLE for dssync's MPI tests/examples")
  # Avoids CMA/ptrace failures of OpenMPI's shared-memory transport in containers.
  set(DSSYNC_MPI_TEST_ENVIRONMENT "OMPI_MCA_btl_vader_single_copy_mechanism=none")
endif()
if(NOT DEFINED DSSYNC_MPIEXEC_FLAGS)
  set(DSSYNC_MPIEXEC_FLAGS "")
endif()

# --- optional data set -----------------------------------------------------
find_path(DSSYNC_FASHION_MNIST_DIR NAMES train-images-idx3-ubyte.gz train-images-idx3-ubyte
          PATHS /usr/share/datasets/fashion-mnist
          NO_DEFAULT_PATH
          DOC "Fashion-MNIST directory (optional; passed to tests/examples/benches as DSSYNC_FASHION_MNIST_DIR)")

# Requirement tags of a source/header, derived from its (relative) path:
#   mpi    : a path component/file name starting with "mpi" after a non-letter
#            (transport/mpi.hpp, test_mpi_allreduce.cpp, foo_mpi.hpp; not "compile")
#   thrust : contains "thrust", or ends in .cuh
#   cuda   : contains "cuda" or ends in .cu   (needs nvcc; skipped by CMake)
#   eigen  : contains "eigen"
function(dssync_path_requirements path out_var)
  string(TOLOWER "${path}" _p)
  set(_req "")
  if(_p MATCHES "(^|[^a-z])mpi")
    list(APPEND _req mpi)
  endif()
  if(_p MATCHES "thrust" OR _p MATCHES "\\.cuh$")
    list(APPEND _req thrust)
  endif()
  if(_p MATCHES "cuda" OR _p MATCHES "\\.cu$")
    list(APPEND _req cuda)
  endif()
  if(_p MATCHES "eigen")
    list(APPEND _req eigen)
  endif()
  set(${out_var} "${_req}" PARENT_SCOPE)
endfunction()

# Extra requirement tags found from a source file's #include lines.
function(dssync_content_requirements file out_var)
  set(_req "")
  file(STRINGS "${file}" _incs REGEX "^[ \t]*#[ \t]*include")
  foreach(_l IN LISTS _incs)
    if(_l MATCHES "nlohmann/json")
      list(APPEND _req json)
    endif()
    if(_l MATCHES "boost/program_options")
      list(APPEND _req program_options)
    endif()
    if(_l MATCHES "[<\"]Eigen/|[<\"]eigen3/")
      list(APPEND _req eigen)
    endif()
    if(_l MATCHES "[<\"]thrust/")
      list(APPEND _req thrust)
    endif()
    if(_l MATCHES "[<\"]zlib\\.h")
      list(APPEND _req zlib)
    endif()
  endforeach()
  file(STRINGS "${file}" _thrust_sys REGEX "THRUST_DEVICE_SYSTEM")
  if(_thrust_sys)
    list(APPEND _req defines_thrust_system)
  endif()
  list(REMOVE_DUPLICATES _req)
  set(${out_var} "${_req}" PARENT_SCOPE)
endfunction()

# dssync_resolve_requirements(<out_ok> <out_libs> <out_defs> <out_why> TAGS...)
# Maps requirement tags to link libraries / private definitions, or reports why
# they cannot be satisfied.
function(dssync_resolve_requirements out_ok out_libs out_defs out_why)
  set(_ok TRUE)
  set(_libs dssync::dssync)
  set(_defs "")
  set(_why "")
  set(_tags ${ARGN})
  if(_tags)
    list(REMOVE_DUPLICATES _tags)
  endif()
  foreach(_t IN LISTS _tags)
    if(_t STREQUAL "mpi")
      if(TARGET dssync::mpi)
        list(APPEND _libs dssync::mpi)
      else()
        set(_ok FALSE)
        list(APPEND _why "dssync::mpi unavailable")
      endif()
    elseif(_t STREQUAL "thrust")
      if(TARGET dssync::thrust)
        list(APPEND _libs dssync::thrust)
        if(NOT "defines_thrust_system" IN_LIST _tags)
          # Host compiler build: use Thrust's sequential C++ backend.
          list(APPEND _defs THRUST_DEVICE_SYSTEM=THRUST_DEVICE_SYSTEM_CPP)
        endif()
      else()
        set(_ok FALSE)
        list(APPEND _why "dssync::thrust unavailable")
      endif()
    elseif(_t STREQUAL "eigen")
      if(TARGET dssync::eigen)
        list(APPEND _libs dssync::eigen)
      else()
        set(_ok FALSE)
        list(APPEND _why "dssync::eigen unavailable")
      endif()
    elseif(_t STREQUAL "cuda")
      set(_ok FALSE)
      list(APPEND _why "needs nvcc (built by scripts/test.sh, not CMake)")
    elseif(_t STREQUAL "json")
      if(NOT TARGET nlohmann_json::nlohmann_json)
        find_package(nlohmann_json QUIET)
      endif()
      if(TARGET nlohmann_json::nlohmann_json)
        list(APPEND _libs nlohmann_json::nlohmann_json)
      else()
        set(_ok FALSE)
        list(APPEND _why "nlohmann_json not found")
      endif()
    elseif(_t STREQUAL "zlib")
      if(NOT TARGET ZLIB::ZLIB)
        find_package(ZLIB QUIET)
      endif()
      if(TARGET ZLIB::ZLIB)
        list(APPEND _libs ZLIB::ZLIB)
      else()
        set(_ok FALSE)
        list(APPEND _why "zlib not found (Debian: zlib1g-dev)")
      endif()
    elseif(_t STREQUAL "program_options")
      if(NOT TARGET Boost::program_options)
        find_package(Boost ${DSSYNC_BOOST_MIN_VERSION} QUIET COMPONENTS program_options)
      endif()
      if(TARGET Boost::program_options)
        list(APPEND _libs Boost::program_options)
      else()
        set(_ok FALSE)
        list(APPEND _why "Boost.ProgramOptions not found")
      endif()
    endif()
  endforeach()
  list(REMOVE_DUPLICATES _libs)
  list(REMOVE_DUPLICATES _defs)
  set(${out_ok} ${_ok} PARENT_SCOPE)
  set(${out_libs} "${_libs}" PARENT_SCOPE)
  set(${out_defs} "${_defs}" PARENT_SCOPE)
  list(JOIN _why ", " _why)
  set(${out_why} "${_why}" PARENT_SCOPE)
endfunction()

# Warnings, -Werror, sanitizers and data-set location for our own targets.
function(dssync_configure_internal_target target)
  cmake_parse_arguments(ARG "NO_SANITIZE" "" "" ${ARGN})
  if(MSVC)
    target_compile_options(${target} PRIVATE /W4 /permissive-)
    if(DSSYNC_WERROR)
      target_compile_options(${target} PRIVATE /WX)
    endif()
  else()
    target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic)
    if(DSSYNC_WERROR)
      target_compile_options(${target} PRIVATE -Werror)
      if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU"
         AND CMAKE_CXX_COMPILER_VERSION VERSION_GREATER_EQUAL 12
         AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
        # GCC 12 false positive inside libstdc++ for `"lit" + std::string`
        # at -O2/-O3 (GCC PR 105329/105651): keep it a warning, not an error.
        target_compile_options(${target} PRIVATE -Wno-error=restrict)
      endif()
      if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND DSSYNC_SANITIZE_FLAGS AND NOT ARG_NO_SANITIZE)
        # GCC's flow-sensitive warnings are unreliable with sanitizer
        # instrumentation (e.g. boost::optional in Boost.Graph).
        target_compile_options(${target} PRIVATE -Wno-error=maybe-uninitialized)
      endif()
    endif()
  endif()
  if(DSSYNC_SANITIZE_FLAGS AND NOT ARG_NO_SANITIZE)
    target_compile_options(${target} PRIVATE ${DSSYNC_SANITIZE_FLAGS})
    get_target_property(_type ${target} TYPE)
    if(NOT _type STREQUAL "OBJECT_LIBRARY")
      target_link_options(${target} PRIVATE ${DSSYNC_SANITIZE_FLAGS})
    endif()
  endif()
  if(DSSYNC_FASHION_MNIST_DIR)
    target_compile_definitions(${target} PRIVATE
      "DSSYNC_FASHION_MNIST_DIR=\"${DSSYNC_FASHION_MNIST_DIR}\"")
  endif()
endfunction()

# Command prefix to launch <n> MPI ranks.
function(dssync_mpiexec_command out_var nprocs)
  set(${out_var}
      "${MPIEXEC_EXECUTABLE}" ${MPIEXEC_NUMPROC_FLAG} ${nprocs}
      ${DSSYNC_MPIEXEC_FLAGS} ${MPIEXEC_PREFLAGS}
      PARENT_SCOPE)
endfunction()

# dssync_doctest_discover_tests(<target> SOURCE_ROOT <dir> [TIMEOUT <s>])
# Same mechanism as doctest_discover_tests(): after each build of <target> its
# test cases are listed and one ctest test per TEST_CASE is registered (see
# dssyncDoctestAddTests.cmake for the labels and why doctest's script is not used).
set(_DSSYNC_DOCTEST_ADD_TESTS_SCRIPT "${CMAKE_CURRENT_LIST_DIR}/dssyncDoctestAddTests.cmake")
function(dssync_doctest_discover_tests target)
  cmake_parse_arguments(ARG "" "SOURCE_ROOT;TIMEOUT" "" ${ARGN})
  set(_ctest_file "${CMAKE_CURRENT_BINARY_DIR}/${target}_tests.cmake")
  set(_include_file "${CMAKE_CURRENT_BINARY_DIR}/${target}_include.cmake")
  get_property(_emulator TARGET ${target} PROPERTY CROSSCOMPILING_EMULATOR)
  add_custom_command(TARGET ${target} POST_BUILD
    BYPRODUCTS "${_ctest_file}"
    COMMAND "${CMAKE_COMMAND}"
            "-DTEST_EXECUTABLE=$<TARGET_FILE:${target}>"
            "-DTEST_EXECUTOR=${_emulator}"
            "-DTEST_WORKING_DIR=${CMAKE_CURRENT_BINARY_DIR}"
            "-DSOURCE_ROOT=${ARG_SOURCE_ROOT}"
            "-DTEST_TIMEOUT=${ARG_TIMEOUT}"
            "-DCTEST_FILE=${_ctest_file}"
            -P "${_DSSYNC_DOCTEST_ADD_TESTS_SCRIPT}"
    VERBATIM)
  file(WRITE "${_include_file}"
       "if(EXISTS \"${_ctest_file}\")\n"
       "  include(\"${_ctest_file}\")\n"
       "else()\n"
       "  add_test(${target}_NOT_BUILT ${target}_NOT_BUILT)\n"
       "endif()\n")
  set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES "${_include_file}")
endfunction()
