// Image and segmentation kernels (SSIM / MS-SSIM, the soft Dice family) for one ISA.
#include "../losses/dice.hpp"
#include "../losses/ssim.hpp"

#include "kernels.hpp"

namespace fastloss {

void FL_REGISTER_FN(image)(KernelTable& t) {
  t.ssim[0] = &losses::ssim<float>;
  t.ssim[1] = &losses::ssim<double>;
  t.dice_sums[0] = &losses::dice_sums<float>;
  t.dice_sums[1] = &losses::dice_sums<double>;
  t.dice_grad[0] = &losses::dice_grad<float>;
  t.dice_grad[1] = &losses::dice_grad<double>;
}

}  // namespace fastloss
