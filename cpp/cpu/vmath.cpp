// Array versions of the vector math functions for one ISA, exposed for the accuracy tests.
#include "fastloss/vmath.hpp"

#include "kernels.hpp"

FL_NAMESPACE_BEGIN
namespace {
template <class T, T (*F)(T)>
void apply(const void* x, void* y, index_t n) {
  const T* __restrict xi = static_cast<const T*>(x);
  T* __restrict yo = static_cast<T*>(y);
  for (index_t i = 0; i < n; ++i) yo[i] = F(xi[i]);
}
#if defined(__AVX512F__)
// The double log in AVX-512 registers (vm::log(__m512d): getmant/getexp instead of the integer
// reduction and the selects for subnormals and special values; the same bits).
template <>
void apply<double, vm::log>(const void* x, void* y, index_t n) {
  const double* __restrict xi = static_cast<const double*>(x);
  double* __restrict yo = static_cast<double*>(y);
  index_t i = 0;
  for (; i + 8 <= n; i += 8) _mm512_storeu_pd(yo + i, vm::log(_mm512_loadu_pd(xi + i)));
  if (i < n) {
    const __mmask8 tail = static_cast<__mmask8>((1u << (n - i)) - 1);
    _mm512_mask_storeu_pd(yo + i, tail, vm::log(_mm512_maskz_loadu_pd(tail, xi + i)));
  }
}
#endif
}  // namespace
FL_NAMESPACE_END

namespace fastloss {

void FL_REGISTER_FN(vmath)(KernelTable& t) {
#define FL_REG(name)                                                       \
  t.vmath[static_cast<int>(VmathId::name)][0] = &apply<float, vm::name>;  \
  t.vmath[static_cast<int>(VmathId::name)][1] = &apply<double, vm::name>;
  FASTLOSS_VMATH_FUNCS(FL_REG)
#undef FL_REG
}

}  // namespace fastloss
