# Compiles vectorize_probe.cpp at -O2 with GCC's vectorization report and fails unless every
# instantiated reduction loop of ops/kernel.hpp was vectorized (5 instantiations).
execute_process(
  COMMAND "${CXX}" -std=c++20 -O2 -fopt-info-vec-optimized -I "${INC}" -c "${SRC}" -o "${OUT}"
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "compiling ${SRC} failed:\n${err}")
endif()
string(REGEX MATCHALL "ops/kernel.hpp:[0-9]+:[0-9]+: optimized: loop vectorized" hits "${out}${err}")
list(LENGTH hits n)
message(STATUS "vectorized kernel loops: ${n}")
if(n LESS 5)
  message(FATAL_ERROR "only ${n} of 5 kernel loops vectorized at -O2:\n${out}${err}")
endif()
