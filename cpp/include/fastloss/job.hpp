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
  double grad_scale = 1.0;  // 1/normalizer for the mean, 1 otherwise; applied to grad and hess
  const double* params = nullptr;
  int threads = 1;
};

// Returns sum_k w_k * l_k (in double, deterministic). Writes loss_out/grad_out/hess_out if set.
using ElementwiseFn = double (*)(const ElementwiseJob&);

}  // namespace fastloss
