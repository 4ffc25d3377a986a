// Binary classification kernels for one ISA (this file is compiled once per ISA target).
#include "../losses/binary.hpp"

#include "fastloss/elementwise.hpp"
#include "kernels.hpp"

namespace fastloss {

void FL_REGISTER_FN(binary)(KernelTable& t) {
  FASTLOSS_BINARY_LOSSES(FL_REGISTER_ELEMENTWISE)
}

}  // namespace fastloss
