# Runs one command line of a tool (dssync-sim, dssync-tune) and checks what it did (the "tools" ctest tests).
#   cmake -DEXE=<tool> -DARGS=<arg|arg|...> [-DLAUNCH=<mpiexec|-n|2>] [-DEXPECT_RC=0|nonzero|<n>]
#         [-DSTDOUT_MATCHES=<regex>] [-DSTDERR_MATCHES=<regex>]
#         [-DJSON_RANGES=<key:min:max|...>] [-DJSON_EQUALS=<key=value|...>]
#         [-DFILE_EXISTS=<path>] -P run_cli.cmake
# ARGS separates arguments with '|' (so that ';' and ',' pass through unchanged). JSON_RANGES checks
# that the numbers at those keys of the JSON printed on stdout lie in [min, max]; JSON_EQUALS compares
# values as text (booleans read ON/OFF, as string(JSON) gives them). A key may be a path through
# objects and arrays, its parts separated by "/" (iterations/1/groups/0/0).
cmake_minimum_required(VERSION 3.20)

if(NOT DEFINED EXE)
  message(FATAL_ERROR "run_cli.cmake: EXE not set")
endif()
string(REPLACE "|" ";" _args "${ARGS}")
if(NOT DEFINED EXPECT_RC)
  set(EXPECT_RC 0)
endif()

# LAUNCH: a launcher to put before EXE ('|'-separated: mpiexec|-n|2|...).
set(_launch "")
if(DEFINED LAUNCH AND NOT LAUNCH STREQUAL "")
  string(REPLACE "|" ";" _launch "${LAUNCH}")
endif()
execute_process(COMMAND ${_launch} "${EXE}" ${_args}
                RESULT_VARIABLE _rc
                OUTPUT_VARIABLE _out
                ERROR_VARIABLE _err
                TIMEOUT 300)
string(REPLACE ";" " " _shown "${_args}")
get_filename_component(_exe_name "${EXE}" NAME)
set(_what "${_exe_name} ${_shown}\n--- exit status: ${_rc}\n--- stdout:\n${_out}\n--- stderr:\n${_err}")

if(EXPECT_RC STREQUAL "nonzero")
  if(_rc EQUAL 0 OR NOT _rc MATCHES "^[0-9]+$")
    message(FATAL_ERROR "expected a non-zero exit status\n${_what}")
  endif()
elseif(NOT _rc STREQUAL "${EXPECT_RC}")
  message(FATAL_ERROR "expected exit status ${EXPECT_RC}\n${_what}")
endif()

if(DEFINED STDOUT_MATCHES AND NOT _out MATCHES "${STDOUT_MATCHES}")
  message(FATAL_ERROR "stdout does not match '${STDOUT_MATCHES}'\n${_what}")
endif()
if(DEFINED STDERR_MATCHES AND NOT _err MATCHES "${STDERR_MATCHES}")
  message(FATAL_ERROR "stderr does not match '${STDERR_MATCHES}'\n${_what}")
endif()

if(DEFINED JSON_RANGES)
  string(REPLACE "|" ";" _ranges "${JSON_RANGES}")
  foreach(_r IN LISTS _ranges)
    string(REPLACE ":" ";" _p "${_r}")
    list(GET _p 0 _key)
    list(GET _p 1 _min)
    list(GET _p 2 _max)
    string(REPLACE "/" ";" _path "${_key}")
    string(JSON _v ERROR_VARIABLE _jerr GET "${_out}" ${_path})
    if(_jerr)
      message(FATAL_ERROR "no number at JSON key '${_key}': ${_jerr}\n${_what}")
    endif()
    if(_v LESS _min OR _v GREATER _max)
      message(FATAL_ERROR "${_key} = ${_v} is not in [${_min}, ${_max}]\n${_what}")
    endif()
    message(STATUS "${_key} = ${_v} (in [${_min}, ${_max}])")
  endforeach()
endif()

if(DEFINED JSON_EQUALS)
  string(REPLACE "|" ";" _eqs "${JSON_EQUALS}")
  foreach(_e IN LISTS _eqs)
    string(FIND "${_e}" "=" _at)
    string(SUBSTRING "${_e}" 0 ${_at} _key)
    math(EXPR _at "${_at} + 1")
    string(SUBSTRING "${_e}" ${_at} -1 _want)
    string(REPLACE "/" ";" _path "${_key}")
    string(JSON _v ERROR_VARIABLE _jerr GET "${_out}" ${_path})
    if(_jerr)
      message(FATAL_ERROR "no value at JSON key '${_key}': ${_jerr}\n${_what}")
    endif()
    if(NOT _v STREQUAL _want)
      message(FATAL_ERROR "${_key} = '${_v}', expected '${_want}'\n${_what}")
    endif()
  endforeach()
endif()

if(DEFINED FILE_EXISTS)
  if(NOT EXISTS "${FILE_EXISTS}")
    message(FATAL_ERROR "expected the file ${FILE_EXISTS}\n${_what}")
  endif()
  file(READ "${FILE_EXISTS}" _file)
  string(JSON _type ERROR_VARIABLE _jerr TYPE "${_file}")
  if(_jerr OR NOT _type STREQUAL "OBJECT")
    message(FATAL_ERROR "${FILE_EXISTS} is not a JSON object: ${_jerr}\n${_what}")
  endif()
endif()
