// Compiled (not run) by the ctest `ops.kernel_vectorizes`: instantiates the CPU reduction kernel for the
// element types and ops dssync claims, so the compiler's vectorization report can be checked at -O2.
#include <dssync/ops/ops.hpp>

#include <cstdint>

template void dssync::ops::reduce_into<float, dssync::ops::sum>(float*, const float*, std::size_t, const dssync::ops::sum&);
template void dssync::ops::reduce_into<double, dssync::ops::sum>(double*, const double*, std::size_t, const dssync::ops::sum&);
template void dssync::ops::reduce_into<std::int32_t, dssync::ops::sum>(std::int32_t*, const std::int32_t*, std::size_t, const dssync::ops::sum&);
template void dssync::ops::reduce_into<float, dssync::ops::max>(float*, const float*, std::size_t, const dssync::ops::max&);
template void dssync::ops::reduce_into<double, dssync::ops::min>(double*, const double*, std::size_t, const dssync::ops::min&);
