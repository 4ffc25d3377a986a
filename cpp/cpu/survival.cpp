// Survival kernels for one ISA: the AFT bodies (elementwise driver), the Cox partial likelihood
// and the concordance index.
#include "../losses/survival.hpp"

#include "fastloss/elementwise.hpp"
#include "kernels.hpp"

namespace fastloss {

void FL_REGISTER_FN(survival)(KernelTable& t) {
  FASTLOSS_SURVIVAL_LOSSES(FL_REGISTER_ELEMENTWISE)
  t.cox[0] = &losses::cox<float>;
  t.cox[1] = &losses::cox<double>;
  t.concordance = &losses::concordance;
}

}  // namespace fastloss
