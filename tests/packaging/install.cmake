# Fixture setup for the packaging tests: fresh install of dssync into PREFIX.
#   cmake -DBUILD_DIR=<dssync build dir> -DPREFIX=<dir> [-DCONFIG=<cfg>] -P install.cmake
cmake_minimum_required(VERSION 3.20)

foreach(_v IN ITEMS BUILD_DIR PREFIX)
  if(NOT DEFINED ${_v})
    message(FATAL_ERROR "install.cmake: ${_v} not set")
  endif()
endforeach()

file(REMOVE_RECURSE "${PREFIX}")
set(_cfg "")
if(CONFIG)
  set(_cfg --config "${CONFIG}")
endif()
execute_process(
  COMMAND "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${PREFIX}" ${_cfg}
  RESULT_VARIABLE _rc)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "cmake --install failed (${_rc})")
endif()

if(NOT INCLUDEDIR)
  set(INCLUDEDIR include)
endif()
if(NOT CMAKEDIR)
  set(CMAKEDIR lib/cmake/dssync)
endif()
foreach(_f IN ITEMS
        ${INCLUDEDIR}/dssync/dssync.hpp
        ${INCLUDEDIR}/dssync/version.hpp
        ${CMAKEDIR}/dssyncConfig.cmake
        ${CMAKEDIR}/dssyncConfigVersion.cmake
        ${CMAKEDIR}/dssyncTargets.cmake)
  if(NOT EXISTS "${PREFIX}/${_f}")
    message(FATAL_ERROR "install.cmake: expected ${PREFIX}/${_f} after install")
  endif()
endforeach()
message(STATUS "dssync installed into ${PREFIX}")
