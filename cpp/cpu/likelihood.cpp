// Likelihood kernels for one ISA (this file is compiled once per ISA target): the log-link
// elementwise losses and the Gaussian (mean, log-variance) rows.
#include "../losses/likelihood.hpp"

#include "fastloss/elementwise.hpp"
#include "fastloss/rowwise.hpp"
#include "kernels.hpp"

namespace fastloss {

void FL_REGISTER_FN(likelihood)(KernelTable& t) {
  FASTLOSS_LIKELIHOOD_LOSSES(FL_REGISTER_ELEMENTWISE)
  FASTLOSS_LIKELIHOOD_ROW_LOSSES(FL_REGISTER_ROWWISE)
}

}  // namespace fastloss
