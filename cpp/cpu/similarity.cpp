// Similarity kernels (distances, triplet mining, sparse distance gradients, margin softmax) for one
// ISA.
#include "../losses/similarity.hpp"

#include "kernels.hpp"

namespace fastloss {

namespace {
template <class T>
SimilarityKernels similarity_kernels() {
  SimilarityKernels k;
  k.row_norms = &losses::row_norms<T>;
  k.dist_from_gram = &losses::dist_from_gram<T>;
  k.mine = &losses::mine_triplets<T>;
  k.pair_grad = &losses::pair_grad<T>;
  k.normalize_backward = &losses::normalize_backward<T>;
  k.paired_distance = &losses::paired_distance<T>;
  k.paired_distance_grad = &losses::paired_distance_grad<T>;
  k.margin_softmax = &losses::margin_softmax<T>;
  return k;
}
}  // namespace

void FL_REGISTER_FN(similarity)(KernelTable& t) {
  t.similarity[0] = similarity_kernels<float>();
  t.similarity[1] = similarity_kernels<double>();
}

}  // namespace fastloss
