// Regression kernels for one ISA (this file is compiled once per ISA target).
#include "../losses/regression.hpp"

#include "fastloss/elementwise.hpp"
#include "kernels.hpp"

namespace fastloss {

void FL_REGISTER_FN(regression)(KernelTable& t) {
  FASTLOSS_REGRESSION_LOSSES(FL_REGISTER_ELEMENTWISE)
}

}  // namespace fastloss
