// Optimal transport kernels (exact 1-D Wasserstein, log-domain Sinkhorn) for one ISA.
#include "../losses/transport.hpp"

#include "kernels.hpp"

namespace fastloss {

void FL_REGISTER_FN(transport)(KernelTable& t) {
  t.wasserstein_1d[0] = &losses::wasserstein_1d<float>;
  t.wasserstein_1d[1] = &losses::wasserstein_1d<double>;
  t.sinkhorn_iterate[0] = &losses::sinkhorn_iterate<float>;
  t.sinkhorn_iterate[1] = &losses::sinkhorn_iterate<double>;
  t.sinkhorn_finish[0] = &losses::sinkhorn_finish<float>;
  t.sinkhorn_finish[1] = &losses::sinkhorn_finish<double>;
  t.sq_euclidean[0] = &losses::sq_euclidean<float>;
  t.sq_euclidean[1] = &losses::sq_euclidean<double>;
}

}  // namespace fastloss
