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
