// Plain descriptions of a kernel call, shared by the binding and every ISA's kernels (no code here,
// so these types are the same across ISA namespaces).
#pragma once

#include "fastloss/config.hpp"

namespace fastloss {

enum class DType : int { f32 = 0, f64 = 1 };

// How an input maps the flat element index k to its own elements.
enum class Bcast : int {
  none = 0,  // absent
  full = 1,  // element k
  row = 2,   // element k / period (per-sample value broadcast over trailing axes)
  col = 3,   // element k % period (per-column parameter, e.g. a vector of quantiles)
};

struct Input {
  const void* ptr = nullptr;
  DType dtype = DType::f64;
  index_t stride = 1;  // in elements; any sign
  Bcast mode = Bcast::none;
  index_t period = 1;
};

struct Output {
  void* ptr = nullptr;  // null: not requested
  index_t stride = 1;   // in elements; dtype is always y_pred's
};

struct ElementwiseJob {
  index_t n = 0;            // number of elements of y_pred
  const void* y_pred = nullptr;
  index_t y_pred_stride = 1;
  Input y_true, weight, aux;
  Output loss_out, grad_out, hess_out;
  // Each element's derivatives are scaled by (w * weight_prescale) * grad_scale, in double:
  // grad_scale is 1/normalizer for the mean, 1 otherwise; weight_prescale is a power of two that
  // keeps 1/(normalizer * prescale) finite and normal for tiny or huge weight sums.
  double grad_scale = 1.0;
  double weight_prescale = 1.0;
  const double* params = nullptr;
  int threads = 1;
  // y_true was checked against the loss's label domain before the call (a body may then trust
  // its labels instead of making the value NaN at a bad one).
  bool labels_checked = false;
};

// Returns sum_k w_k * l_k (in double, deterministic). Writes loss_out/grad_out/hess_out if set.
// Returns sum_k w_k * l_k (in double, deterministic) when loss_out is null, else 0 (the per-element
// values are written instead). Writes grad_out/hess_out when set.
using ElementwiseFn = double (*)(const ElementwiseJob&);

// One call of a row-wise loss on a (rows, K) matrix `x` of logits or scores (y_pred) whose columns
// are contiguous: every row-wise loss shares this job; its own hyper-parameters arrive in the flat
// `params` list (decoded by its body, cpp/losses/<loss>.hpp). Labels were validated by the binding
// (0 <= t < K or ignored); ignored rows are written as zeros by the driver (rowwise.hpp).
struct RowJob {
  index_t rows = 0, K = 0;
  const void* x = nullptr;  // dtype T
  index_t x_stride = 0;     // elements between rows
  const std::int64_t* labels = nullptr;  // one class label per row, or null
  std::int64_t ignore_index = 0;
  bool has_ignore = false;
  const void* targets = nullptr;  // a row of K values per row (dtype T), or null
  index_t targets_stride = 0;
  const void* extra = nullptr;    // a second (rows, K) input of dtype T (teacher logits), or null
  index_t extra_stride = 0;
  const double* class_weight = nullptr;  // (K,) or null
  double class_weight_sum = 0.0;         // sum of class_weight (K without)
  const double* sample_weight = nullptr;  // (rows,) or null
  const double* params = nullptr;
  void* loss_out = nullptr;               // (rows,) weighted per-row losses, dtype T, or null
  void* grad_out = nullptr;               // (rows, K), or null
  index_t grad_stride = 0;
  void* hess_out = nullptr;
  index_t hess_stride = 0;
  double grad_scale = 1.0;  // 1/normalizer for the mean
  int threads = 1;
  // Ragged rows (query groups of the ranking losses): row r is elements [offsets[r], offsets[r+1])
  // of the flat x, targets, grad_out and hess_out; K is then the largest row (the scratch size).
  const std::int64_t* offsets = nullptr;
  // False when the caller reads only the derivatives (a booster): a body may then skip the value
  // and return 0.
  bool want_value = true;
  // False: every row one at a time, also where a body computes blocks of rows (the blocked paths'
  // reference in the tests).
  bool row_blocks = true;
};
// Returns the sum of the weighted per-row losses (deterministic).
using RowFn = double (*)(const RowJob&);

// What the binding reads and checks for a row-wise loss, declared beside its body.
enum class RowTarget : int {
  labels = 0,           // y_true: one integer class label per row
  optional_labels = 1,  // the same, or None (the loss's check() says when they are required)
  rows = 2,             // y_true: a row of K target values per row, y_pred's shape
  values = 3,           // y_true: one real target per row, y_pred's shape without its last axis
};
struct RowSpec {
  RowTarget target = RowTarget::labels;
  int params = 0;               // how many values of RowJob::params the body reads
  const char* extra = nullptr;  // name of a second input of y_pred's shape, or null
  // The mean's denominator with labels: the summed sample weight times the class weight of each
  // counted row's label (PyTorch's cross_entropy) when true, else the summed sample weights.
  bool class_weight_normalizes = false;
  int scratch_rows = 0;  // rows of K elements of scratch the body needs per row
  // A check of the hyper-parameters against the inputs: an error message, or null.
  const char* (*check)(const RowJob&) = nullptr;
};

// Row-wise log-sum-exp / softmax / log-softmax of a (rows, K) matrix into `out` (rows or
// rows x K, dtype T, contiguous).
// Enumerations reach Python from these lists (_core.softmax_modes, _core.activations):
// X(enumerator, name).
#define FASTLOSS_SOFTMAX_MODES(X) X(logsumexp, "logsumexp") X(softmax, "softmax") X(log_softmax, "log_softmax")
#define FL_ENUMERATOR(id, name) id,  // every X(enumerator, name) list of this project
enum class SoftmaxMode : int { FASTLOSS_SOFTMAX_MODES(FL_ENUMERATOR) count };
using SoftmaxFn = void (*)(SoftmaxMode mode, const void* x, index_t x_stride, index_t rows,
                           index_t K, void* out, int threads);

// SSIM / MS-SSIM over `planes` contiguous (H, W) images of dtype T (y_true x, y_pred y). The value
// of a plane is the mean of the SSIM map over the window-valid region (scikit-image's crop), or
// MS-SSIM with `scales` exponents. See cpp/losses/ssim.hpp.
struct SsimJob {
  index_t planes = 0, H = 0, W = 0;
  const void* x = nullptr;
  const void* y = nullptr;
  double c1 = 0.0, c2 = 0.0;              // (K1 L)^2, (K2 L)^2
  const double* scale_weights = nullptr;  // MS-SSIM exponents (null: plain SSIM)
  int scales = 1;
  double* plane_value = nullptr;          // (planes,) SSIM or MS-SSIM of each plane
  void* grad_out = nullptr;               // (planes, H, W) or null
  const double* grad_scale = nullptr;     // (planes,): grad_out = grad_scale * d value / d y
  void* map_out = nullptr;                // (planes, H, W) SSIM map (plain SSIM), or null
  int threads = 1;
};
using SsimFn = void (*)(const SsimJob&);

// Soft Dice family on (N, C, S) predictions (probabilities or logits), targets (N, C, S) of dtype T
// or integer labels (N, S), in one call: pass 1 accumulates per (n, c) the sums of p g, p, p^2, g,
// g^2, the loss of each image (or of the batch) follows from them, and pass 2 writes the gradient.
// Each (N, C, S) array is channels-first (pixels contiguous, classes S apart) or channels-last
// (classes contiguous, pixels C apart). See cpp/losses/dice.hpp.
#define FASTLOSS_ACTIVATIONS(X) X(none, "none") X(sigmoid, "sigmoid") X(softmax, "softmax")
enum class Activation : int { FASTLOSS_ACTIVATIONS(FL_ENUMERATOR) count };
#define FASTLOSS_DICE_KINDS(X) X(dice, "dice") X(tversky, "tversky") X(generalized, "generalized")
enum class DiceKind : int { FASTLOSS_DICE_KINDS(FL_ENUMERATOR) count };
inline constexpr int kDiceSums = 5;
struct DiceJob {
  index_t N = 0, C = 0, S = 0;
  const void* z = nullptr;
  bool z_last = false;
  const void* targets = nullptr;
  bool targets_last = false;
  const std::int64_t* labels = nullptr;
  Activation activation = Activation::none;
  DiceKind kind = DiceKind::dice;
  bool squared = false;                  // Dice: sums of p^2 and g^2 in the denominator
  double smooth_nr = 0.0, smooth_dr = 0.0;
  double alpha = 0.5, beta = 0.5;        // Tversky
  const double* class_weight = nullptr;  // (C,) or null (Dice, Tversky)
  bool batch = false;                    // one loss over the batch's summed sums
  double* losses = nullptr;              // (N,), or (1,) with batch
  const double* scale = nullptr;         // d value / d loss per loss; null: no gradient
  void* grad_out = nullptr;              // (N, C, S) when scale is set
  bool grad_last = false;
  int threads = 1;
};
using DiceFn = void (*)(const DiceJob&);
// Exact 1-D optimal transport (cost |x - y|^p) between two weighted empirical distributions, one
// pair per row: u is rows x n, v rows x m (dtype T, contiguous). An order (the row's argsort, int64)
// may be null when the row is already sorted; weights are null (uniform), one row shared by every
// row (stride 0) or one row each, normalized by inv_sum (per row). The merge of the two quantile
// functions writes W_p^p per row into `values` and d/dv (scaled by grad_scale) in v's own order.
struct Wasserstein1dJob {
  index_t rows = 0, n = 0, m = 0;
  double p = 1.0;
  const void* u = nullptr;
  const void* v = nullptr;
  const std::int64_t* u_order = nullptr;
  const std::int64_t* v_order = nullptr;
  const double* u_w = nullptr;
  const double* v_w = nullptr;
  index_t u_w_stride = 0, v_w_stride = 0;
  const double* u_inv_sum = nullptr;  // one per row (null with uniform weights)
  const double* v_inv_sum = nullptr;
  double* values = nullptr;           // rows
  void* grad_out = nullptr;           // rows x m, dtype T, or null
  void* hess_out = nullptr;           // rows x m, dtype T, or null
  double grad_scale = 1.0;
  int threads = 1;
};
using Wasserstein1dFn = void (*)(const Wasserstein1dJob&);

// Log-domain stabilized Sinkhorn on an n x m cost matrix C (dtype T, contiguous; its transpose Ct
// only for grad_y) with marginals a, b (normalized, with their logs). Scaled potentials F = f/eps,
// G = g/eps: the plan is P_ij = a_i b_j exp(F_i + G_j - C_ij/eps). iterate() runs until the column marginal error
// ||P^T 1 - b||_2 of a row-exact state is below tol or max_iter iterations have run, and leaves
// that state in F, G (and in K, u, v) with its error and the iterations done. finish() returns <P, C>, writes the
// plan (n x m, T) and, for point clouds x (n x d) and y (m x d) under the squared Euclidean cost,
// the gradients of the entropic objective w.r.t. x and y (envelope theorem), where requested.
struct SinkhornJob {
  index_t n = 0, m = 0, d = 0;
  const void* C = nullptr;
  const void* Ct = nullptr;
  const double* a = nullptr;
  const double* b = nullptr;
  const double* log_a = nullptr;
  const double* log_b = nullptr;
  double inv_eps = 1.0;
  double* F = nullptr;       // n
  double* G = nullptr;       // m
  void* K = nullptr;         // n x m, dtype T: the plan of the last absorbed potentials
  double* u = nullptr;       // n, m: its final scalings (the plan is u_i K_ij v_j)
  double* v = nullptr;
  int max_iter = 1000;
  double tol = 1e-9;
  int iterations = 0;        // out
  double error = 0.0;        // out
  void* plan_out = nullptr;  // n x m, dtype T
  const void* x = nullptr;   // n x d, dtype T (point clouds; null with a given cost)
  const void* y = nullptr;   // m x d
  void* grad_x = nullptr;    // n x d, dtype T
  void* grad_y = nullptr;    // m x d, dtype T
  int threads = 1;
};
using SinkhornIterateFn = void (*)(SinkhornJob&);
using SinkhornFinishFn = double (*)(const SinkhornJob&);
// C (n x m) and Ct (m x n) of squared Euclidean distances between the rows of x (n x d) and y (m x d).
using SqEuclideanFn = void (*)(const void* x, const void* y, index_t n, index_t m, index_t d, void* C,
                               void* Ct, int threads);

}  // namespace fastloss
