// Distillation / tempered-softmax KL kernels for one ISA (its own translation unit: the fused row
// body compiles apart from the cross-entropy family).
#include "../losses/distillation.hpp"

#include "kernels.hpp"

namespace fastloss {

void FL_REGISTER_FN(distillation)(KernelTable& t) {
  FASTLOSS_DISTILLATION_LOSSES(FL_REGISTER_ROWWISE)
}

}  // namespace fastloss
