# Configures, builds and runs a consumer project of dssync from scratch.
#   cmake -DSOURCE_DIR=... -DBINARY_DIR=... [-DPREFIX_PATH=...] [-DDSSYNC_SOURCE_DIR=...]
#         [-DGENERATOR=...] [-DMAKE_PROGRAM=...] [-DCXX_COMPILER=...] [-DCONFIG=...]
#         [-DEXPECT_MAJOR=N] [-DRUN_WITH_MPI=<nprocs> -DMPIEXEC=... -DMPIEXEC_NUMPROC_FLAG=...
#          -DMPIEXEC_FLAGS=a|b|c] -P run_consumer.cmake
# The consumer must produce an executable named "consumer".
cmake_minimum_required(VERSION 3.20)

foreach(_v IN ITEMS SOURCE_DIR BINARY_DIR)
  if(NOT DEFINED ${_v})
    message(FATAL_ERROR "run_consumer.cmake: ${_v} not set")
  endif()
endforeach()
if(NOT CONFIG)
  set(CONFIG Release)
endif()

file(REMOVE_RECURSE "${BINARY_DIR}")
file(MAKE_DIRECTORY "${BINARY_DIR}")

set(_args -S "${SOURCE_DIR}" -B "${BINARY_DIR}" "-DCMAKE_BUILD_TYPE=${CONFIG}")
if(GENERATOR)
  list(APPEND _args -G "${GENERATOR}")
endif()
if(MAKE_PROGRAM)
  list(APPEND _args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
endif()
if(CXX_COMPILER)
  list(APPEND _args "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}")
endif()
if(PREFIX_PATH)
  list(APPEND _args "-DCMAKE_PREFIX_PATH=${PREFIX_PATH}")
endif()
if(DSSYNC_SOURCE_DIR)
  list(APPEND _args "-DDSSYNC_SOURCE_DIR=${DSSYNC_SOURCE_DIR}")
endif()
if(DEFINED EXPECT_MAJOR)
  list(APPEND _args "-DEXPECT_MAJOR=${EXPECT_MAJOR}")
endif()

function(_run step)
  message(STATUS "[${step}] ${ARGN}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "consumer ${step} failed (${_rc})")
  endif()
endfunction()

_run(configure "${CMAKE_COMMAND}" ${_args})
_run(build "${CMAKE_COMMAND}" --build "${BINARY_DIR}" --config "${CONFIG}" --parallel 2)

set(_exe "")
foreach(_cand IN ITEMS "${BINARY_DIR}/consumer" "${BINARY_DIR}/${CONFIG}/consumer"
                       "${BINARY_DIR}/consumer.exe" "${BINARY_DIR}/${CONFIG}/consumer.exe")
  if(EXISTS "${_cand}")
    set(_exe "${_cand}")
    break()
  endif()
endforeach()
if(NOT _exe)
  message(FATAL_ERROR "consumer executable not found in ${BINARY_DIR}")
endif()

if(RUN_WITH_MPI)
  if(NOT MPIEXEC)
    message(FATAL_ERROR "RUN_WITH_MPI set but MPIEXEC not given")
  endif()
  string(REPLACE "|" ";" _mpiflags "${MPIEXEC_FLAGS}")
  _run(run "${MPIEXEC}" ${MPIEXEC_NUMPROC_FLAG} ${RUN_WITH_MPI} ${_mpiflags} "${_exe}")
else()
  _run(run "${_exe}")
endif()
message(STATUS "consumer OK: ${SOURCE_DIR}")
