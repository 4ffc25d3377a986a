// Binary classification kernels for one ISA (this file is compiled once per ISA target).
#include "../losses/binary.hpp"

#include "fastloss/elementwise.hpp"
#include "kernels.hpp"

namespace fastloss {

namespace {

template <class T>
using FocalLogits0 = losses::FocalLogitsInt<T, 0>;
template <class T>
using FocalLogits1 = losses::FocalLogitsInt<T, 1>;
template <class T>
using FocalLogits2 = losses::FocalLogitsInt<T, 2>;
template <class T>
using FocalLogits3 = losses::FocalLogitsInt<T, 3>;
template <class T>
using FocalLogitsN = losses::FocalLogitsInt<T, -1>;

// The focal loss on logits picks its body from gamma once per call: an integer gamma is raised by
// multiplication (the common 0..3 unrolled), any other through exp and log.
template <class T>
double run_focal_logits(const ElementwiseJob& job) {
  const double gamma = job.params[0];
  if (gamma == 2.0) return run_elementwise<FocalLogits2, T>(job);
  if (gamma == 0.0) return run_elementwise<FocalLogits0, T>(job);
  if (gamma == 1.0) return run_elementwise<FocalLogits1, T>(job);
  if (gamma == 3.0) return run_elementwise<FocalLogits3, T>(job);
  if (gamma <= losses::kFocalMaxIntGamma && gamma == static_cast<double>(static_cast<int>(gamma)))
    return run_elementwise<FocalLogitsN, T>(job);
  return run_elementwise<losses::FocalLogits, T>(job);
}

}  // namespace

void FL_REGISTER_FN(binary)(KernelTable& t) {
  FASTLOSS_BINARY_LOSSES(FL_REGISTER_ELEMENTWISE)
  t.elementwise[static_cast<int>(ElementwiseId::focal_logits)][0] = &run_focal_logits<float>;
  t.elementwise[static_cast<int>(ElementwiseId::focal_logits)][1] = &run_focal_logits<double>;
}

}  // namespace fastloss
