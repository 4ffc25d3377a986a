// Multi-class kernels (softmax cross-entropy and focal, logsumexp/softmax, multi-class hinge) for one
// ISA.
#include "../losses/cross_entropy.hpp"
#include "../losses/multi_margin.hpp"

#include "kernels.hpp"

namespace fastloss {

void FL_REGISTER_FN(multiclass)(KernelTable& t) {
  FASTLOSS_MULTICLASS_LOSSES(FL_REGISTER_ROWWISE)
  t.softmax[0] = &losses::softmax_rows<float>;
  t.softmax[1] = &losses::softmax_rows<double>;
}

}  // namespace fastloss
