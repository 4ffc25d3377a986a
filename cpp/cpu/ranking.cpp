// Learning-to-rank kernels over query groups for one ISA (the row driver with ragged rows).
#include "../losses/ranking.hpp"

#include "kernels.hpp"

namespace fastloss {

void FL_REGISTER_FN(ranking)(KernelTable& t) {
  FASTLOSS_RANKING_LOSSES(FL_REGISTER_RANKING)
}

}  // namespace fastloss
