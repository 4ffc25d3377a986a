// Multi-class kernels (softmax cross-entropy, logsumexp/softmax, multi-class hinge) for one ISA.
#include "../losses/cross_entropy.hpp"
#include "../losses/multi_margin.hpp"

#include "kernels.hpp"

namespace fastloss {

void FL_REGISTER_FN(multiclass)(KernelTable& t) {
  t.cross_entropy[0] = &losses::cross_entropy<float>;
  t.cross_entropy[1] = &losses::cross_entropy<double>;
  t.softmax[0] = &losses::softmax_rows<float>;
  t.softmax[1] = &losses::softmax_rows<double>;
  t.multi_margin[0] = &losses::multi_margin<float>;
  t.multi_margin[1] = &losses::multi_margin<double>;
}

}  // namespace fastloss
