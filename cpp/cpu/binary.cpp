// Binary classification kernels for one ISA (this file is compiled once per ISA target).
#include "../losses/binary.hpp"

#include "fastloss/elementwise.hpp"
#include "kernels.hpp"

namespace fastloss {

namespace {

template <int N, bool Alpha>
struct FocalInt {
  template <class T>
  using Body = losses::FocalLogitsInt<T, N, Alpha>;
};

template <int N, class T>
double run_focal_int(const ElementwiseJob& job) {
  if (job.params[1] < 0.0) return run_elementwise<FocalInt<N, false>::template Body, T>(job);
  return run_elementwise<FocalInt<N, true>::template Body, T>(job);
}

// The focal loss on logits picks its body from gamma and alpha once per call: an integer gamma is
// raised by multiplication (the common 0..3 unrolled), any other through exp and log.
template <class T>
double run_focal_logits(const ElementwiseJob& job) {
  const double gamma = job.params[0];
  if (gamma == 2.0) return run_focal_int<2, T>(job);
  if (gamma == 0.0) return run_focal_int<0, T>(job);
  if (gamma == 1.0) return run_focal_int<1, T>(job);
  if (gamma == 3.0) return run_focal_int<3, T>(job);
  if (gamma <= losses::kFocalMaxIntGamma && gamma == static_cast<double>(static_cast<int>(gamma)))
    return run_focal_int<-1, T>(job);
  return run_elementwise<losses::FocalLogits, T>(job);
}

// BCE on logits without pos_weight and smoothing (the common call) runs the body without them.
template <class T>
double run_bce_logits(const ElementwiseJob& job) {
  const bool plain = job.params[0] == 1.0 && job.params[1] == 0.0;
  if (plain) return run_elementwise<losses::BCELogitsPlain, T>(job);
  return run_elementwise<losses::BCELogits, T>(job);
}

// The logistic loss on labels checked before the call runs the body that trusts them.
template <class T>
double run_logistic(const ElementwiseJob& job) {
  if (job.labels_checked) return run_elementwise<losses::LogisticChecked, T>(job);
  return run_elementwise<losses::Logistic, T>(job);
}

}  // namespace

void FL_REGISTER_FN(binary)(KernelTable& t) {
  FASTLOSS_BINARY_LOSSES(FL_REGISTER_ELEMENTWISE)
  t.elementwise[static_cast<int>(ElementwiseId::bce_logits)][0] = &run_bce_logits<float>;
  t.elementwise[static_cast<int>(ElementwiseId::bce_logits)][1] = &run_bce_logits<double>;
  t.elementwise[static_cast<int>(ElementwiseId::focal_logits)][0] = &run_focal_logits<float>;
  t.elementwise[static_cast<int>(ElementwiseId::focal_logits)][1] = &run_focal_logits<double>;
  t.elementwise[static_cast<int>(ElementwiseId::logistic)][0] = &run_logistic<float>;
  t.elementwise[static_cast<int>(ElementwiseId::logistic)][1] = &run_logistic<double>;
}

}  // namespace fastloss
