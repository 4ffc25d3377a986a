// What the CUDA launcher needs: device pointers only (the binding moves host arrays).
#pragma once

#include <cstdint>

#include "fastloss/job.hpp"

namespace fastloss::cuda {

using index_t = std::int64_t;

struct CudaJob {
  index_t n = 0;
  const void* y_pred = nullptr;   // dtype T
  const void* y_true = nullptr;   // dtype T (the binding converts host arrays)
  index_t y_true_period = 0;      // 0: one value per element; else element k reads y_true[k / period]
  const void* weight = nullptr;   // float32 or float64 (weight_f32), or null; applied in double
  bool weight_f32 = false;
  index_t weight_period = 0;      // as y_true_period
  const double* aux = nullptr;    // per-column parameter (element k reads aux[k % aux_period]) or null
  index_t aux_period = 1;
  void* loss_out = nullptr;       // per-element weighted losses (reduction "none") or null
  void* grad_out = nullptr;
  void* hess_out = nullptr;
  double grad_scale = 1.0;       // as fastloss::ElementwiseJob
  double weight_prescale = 1.0;
  double params[8] = {};
};

// Returns sum_k w_k l_k. Deterministic: fixed chunks per CUDA block, a fixed shared-memory tree
// inside each block, and the block partials summed pairwise on the host in a fixed order.
double elementwise(int loss, bool f32, const CudaJob& job);

// Sum of n weights (dtype f32 or f64) after checking each is finite and >= 0 (sets *bad).
double weight_sum(const void* w, index_t n, bool f32, bool* bad);

int num_elementwise();

// The row-wise losses of FASTLOSS_ROW_LOSSES (ids as in fastloss._core.row_kernels) on a job whose
// pointers are all device pointers except `params` (read on the host), every (rows, K) input
// C-contiguous. Returns the sum of the weighted per-row losses: each thread sums its rows in
// order, then the fixed block tree and the host's pairwise sum (deterministic).
double rowwise(int loss, bool f32, const RowJob& job);
const RowSpec& row_spec(int loss);
int num_rowwise();
const char* last_error();  // empty when the last call succeeded

}  // namespace fastloss::cuda
