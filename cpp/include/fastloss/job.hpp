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
};

// Returns sum_k w_k * l_k (in double, deterministic). Writes loss_out/grad_out/hess_out if set.
// Returns sum_k w_k * l_k (in double, deterministic) when loss_out is null, else 0 (the per-element
// values are written instead). Writes grad_out/hess_out when set.
using ElementwiseFn = double (*)(const ElementwiseJob&);

// One call of the softmax cross-entropy family on a (rows, K) matrix `x` of logits (or
// probabilities) whose columns are contiguous. Targets are one label per row (sparse) or a row of
// K target probabilities (dense). Labels were validated by the binding (0 <= t < K or ignored).
struct CrossEntropyJob {
  index_t rows = 0, K = 0;
  const void* x = nullptr;  // dtype T
  index_t x_stride = 0;     // elements between rows
  bool from_logits = true;
  double eps = 1e-7;        // probability clamp when !from_logits
  const std::int64_t* labels = nullptr;  // sparse targets, or null
  std::int64_t ignore_index = 0;
  bool has_ignore = false;
  const void* targets = nullptr;  // dense targets (dtype T), or null
  index_t targets_stride = 0;
  const double* class_weight = nullptr;  // (K,) or null
  double class_weight_sum = 0.0;         // sum of class_weight (K without)
  double smoothing = 0.0;
  double focal_gamma = -1.0;  // >= 0: softmax focal loss (sparse, logits); class_weight is alpha
  const double* sample_weight = nullptr;  // (rows,) or null
  void* loss_out = nullptr;               // (rows,) weighted per-row losses, dtype T, or null
  void* grad_out = nullptr;               // (rows, K), or null
  index_t grad_stride = 0;
  void* hess_out = nullptr;
  index_t hess_stride = 0;
  double grad_scale = 1.0;  // 1/normalizer for the mean
  int threads = 1;
};
// Returns the sum of the weighted per-row losses (deterministic).
using CrossEntropyFn = double (*)(const CrossEntropyJob&);

// Multi-class hinge on (rows, K) scores with one label per row (validated, none ignored).
struct MultiMarginJob {
  index_t rows = 0, K = 0;
  const void* x = nullptr;
  index_t x_stride = 0;
  const std::int64_t* labels = nullptr;
  bool crammer_singer = false;  // else Weston-Watkins
  int p = 1;
  double margin = 1.0;
  const double* class_weight = nullptr;
  const double* sample_weight = nullptr;
  void* loss_out = nullptr;
  void* grad_out = nullptr;
  index_t grad_stride = 0;
  void* hess_out = nullptr;
  index_t hess_stride = 0;
  double grad_scale = 1.0;
  int threads = 1;
};
using MultiMarginFn = double (*)(const MultiMarginJob&);

// Distillation on (rows, K) student logits `x` with teacher logits of the same shape (spec 6.2):
//   l = alpha CE(label, x) + (1 - alpha) kl_scale KL(softmax(t/T) || softmax(x/T)),
// kl_scale = T^2 for Hinton's distillation, 1 for the plain KL between tempered softmaxes.
// labels may be null when alpha = 0 (validated by the binding).
struct DistillationJob {
  index_t rows = 0, K = 0;
  const void* x = nullptr;  // dtype T
  index_t x_stride = 0;
  const void* teacher = nullptr;  // dtype T
  index_t teacher_stride = 0;
  const std::int64_t* labels = nullptr;
  double alpha = 0.5, temperature = 1.0, kl_scale = 1.0;
  const double* sample_weight = nullptr;
  void* loss_out = nullptr;
  void* grad_out = nullptr;
  index_t grad_stride = 0;
  void* hess_out = nullptr;
  index_t hess_stride = 0;
  double grad_scale = 1.0;
  int threads = 1;
};
using DistillationFn = double (*)(const DistillationJob&);

// Row-wise log-sum-exp / softmax / log-softmax of a (rows, K) matrix into `out` (rows or
// rows x K, dtype T, contiguous).
enum class SoftmaxMode : int { logsumexp = 0, softmax = 1, log_softmax = 2 };
using SoftmaxFn = void (*)(SoftmaxMode mode, const void* x, index_t x_stride, index_t rows,
                           index_t K, void* out, int threads);

}  // namespace fastloss
