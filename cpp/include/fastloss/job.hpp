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

}  // namespace fastloss
