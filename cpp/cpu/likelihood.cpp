// Likelihood kernels for one ISA (this file is compiled once per ISA target): the log-link
// elementwise losses and the Gaussian (mean, log-variance) rows.
#include "../losses/likelihood.hpp"

#include "fastloss/elementwise.hpp"
#include "fastloss/rowwise.hpp"
#include "kernels.hpp"

namespace fastloss {
namespace {

// TweedieNLL with the power's form chosen once per call, outside the element loop.
template <class T>
double run_tweedie(const ElementwiseJob& job) {
  using losses::TweedieForm;
  switch (losses::tweedie_form(job.params[0])) {
    case TweedieForm::root: return run_elementwise<losses::TweedieNLLRoot, T>(job);
    case TweedieForm::square: return run_elementwise<losses::TweedieNLLSquare, T>(job);
    case TweedieForm::inverse: return run_elementwise<losses::TweedieNLLInverse, T>(job);
    default: return run_elementwise<losses::TweedieNLL, T>(job);
  }
}

}  // namespace

void FL_REGISTER_FN(likelihood)(KernelTable& t) {
  FASTLOSS_LIKELIHOOD_LOSSES(FL_REGISTER_ELEMENTWISE)
  FASTLOSS_LIKELIHOOD_ROW_LOSSES(FL_REGISTER_ROWWISE)
  const int tweedie = static_cast<int>(ElementwiseId::tweedie_nll);
  t.elementwise[tweedie][0] = &run_tweedie<float>;
  t.elementwise[tweedie][1] = &run_tweedie<double>;
}

}  // namespace fastloss
