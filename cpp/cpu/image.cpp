// Image and segmentation kernels (SSIM / MS-SSIM, the soft Dice family) for one ISA.
#include "../losses/dice.hpp"
#include "../losses/ssim.hpp"

#include "kernels.hpp"

namespace fastloss {

void FL_REGISTER_FN(image)(KernelTable& t) {
  t.ssim[0] = &losses::ssim<float>;
  t.ssim[1] = &losses::ssim<double>;
  t.dice[0] = &losses::dice<float>;
  t.dice[1] = &losses::dice<double>;
}

}  // namespace fastloss
