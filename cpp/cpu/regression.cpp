// Regression kernels for one ISA (this file is compiled once per ISA target).
#include "../losses/regression.hpp"

#include "fastloss/elementwise.hpp"
#include "kernels.hpp"

namespace fastloss {

void FL_REGISTER_FN(regression)(KernelTable& t) {
#define FL_REG(name, Body)                                                                    \
  t.elementwise[static_cast<int>(ElementwiseId::name)][0] = &run_elementwise<losses::Body, float>; \
  t.elementwise[static_cast<int>(ElementwiseId::name)][1] = &run_elementwise<losses::Body, double>;
  FASTLOSS_REGRESSION_LOSSES(FL_REG)
#undef FL_REG
}

}  // namespace fastloss
