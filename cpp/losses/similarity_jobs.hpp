// Plain descriptions of the similarity kernels' calls (no code: the same types in every ISA).
#pragma once

#include <cstdint>

#include "fastloss/config.hpp"
#include "fastloss/job.hpp"  // FL_ENUMERATOR

namespace fastloss {

// Enumerations reach Python from these lists (_core.metrics, _core.mining): X(enumerator, name).
#define FASTLOSS_METRICS(X) X(kEuclidean, "euclidean") X(kSqEuclidean, "sqeuclidean") X(kCosine, "cosine")
#define FASTLOSS_MINING(X) \
  X(kMineAll, "all") X(kMineHard, "hard") X(kMineSemiHard, "semi-hard") X(kMineRandom, "random")

enum Metric : int { FASTLOSS_METRICS(FL_ENUMERATOR) };

// Triplet mining per anchor row on distances computed from the Gram matrix (see mine_triplets).
enum Mining : int { FASTLOSS_MINING(FL_ENUMERATOR) };
struct MineJob {
  index_t n = 0;
  const void* gram = nullptr;  // (n, n), T
  const double* sqn = nullptr;  // squared norms (unused for cosine)
  const std::int64_t* labels = nullptr;  // class ids 0..K-1
  const std::int64_t* class_count = nullptr;
  const std::int64_t *members = nullptr, *class_start = nullptr;  // rows by class, index order
  int metric = kEuclidean, mode = kMineHard;
  std::uint64_t seed = 0;
  // Sparse modes: anchor a writes its triplets from offset[a] on (offset has n + 1 entries).
  const std::int64_t* offset = nullptr;
  std::int64_t *anchor = nullptr, *pos = nullptr, *neg = nullptr;
  double *d_ap = nullptr, *d_an = nullptr;
  // Batch-all: per anchor, the loss sum and count of counted triplets; coef (n, n) receives
  // d(sum of the anchor's losses)/d D[a, j].
  double margin = 0.0;
  bool soft = false;
  double *loss_sum = nullptr, *count = nullptr, *coef = nullptr;
  int threads = 1;
};

struct PairGradJob {
  index_t n = 0, d = 0, m = 0;
  const void* x = nullptr;       // (n, d) rows (normalized rows for cosine)
  const double* sqn = nullptr;   // squared norms of the raw rows (cosine)
  int metric = kEuclidean;
  double eps = 1e-8;
  const std::int64_t *i = nullptr, *j = nullptr;
  const double *dist = nullptr, *coef = nullptr;
  void* grad = nullptr;  // (n, d), T
  int threads = 1;
};

struct MarginSoftmaxJob {
  index_t rows = 0, C = 0;
  void* cos = nullptr;  // (rows, C), T, contiguous; overwritten
  const std::int64_t* labels = nullptr;
  double s = 64.0, m = 0.5;
  bool arc = false, easy = false;
  const double* weight = nullptr;  // per row, or null
  double grad_scale = 1.0;
  bool want_grad = false;
  double* row_loss = nullptr;  // per-row w * l, or null
  int threads = 1;
};

// One compiled set of similarity kernels per dtype (see cpp/losses/similarity.hpp).
struct SimilarityKernels {
  void (*row_norms)(const void* x, index_t n, index_t d, double eps, double* sqn, void* xhat,
                    int threads) = nullptr;
  void (*dist_from_gram)(void* g, index_t rows, index_t cols, const double* nx, const double* ny,
                         int metric, bool self, int threads) = nullptr;
  void (*mine)(const MineJob&) = nullptr;
  void (*pair_grad)(const PairGradJob&) = nullptr;
  void (*normalize_backward)(void* g, const void* xhat, const double* sqn, index_t n, index_t d,
                             double eps, int threads) = nullptr;
  void (*paired_distance)(const void* a, const void* b, index_t n, index_t d, double p, double eps,
                          double* out, int threads) = nullptr;
  void (*paired_distance_grad)(const void* a, const void* b, index_t n, index_t d, double p,
                               double eps, const double* dist, const double* coef, void* g,
                               int threads) = nullptr;
  double (*margin_softmax)(const MarginSoftmaxJob&) = nullptr;
};

}  // namespace fastloss
