// Plain descriptions of the survival kernels' calls (no code: the same types in every ISA).
#pragma once

#include <cstdint>

#include "fastloss/config.hpp"
#include "fastloss/job.hpp"

namespace fastloss {

// Negative Cox partial log-likelihood of log hazard ratios `pred` (dtype T, the kernel's), its
// gradient and Hessian diagonal. Times are float32 or float64; without `event` a positive time is
// an event and a negative (or zero) one censored at |time| (XGBoost's survival:cox labels).
// See cpp/losses/survival.hpp.
struct CoxJob {
  index_t n = 0;
  const void* pred = nullptr;
  index_t pred_stride = 1;
  const void* time = nullptr;
  DType time_dtype = DType::f64;
  index_t time_stride = 1;
  const std::uint8_t* event = nullptr;  // 0 / 1 per sample, or null (sign-encoded times)
  index_t event_stride = 1;
  const double* weight = nullptr;  // contiguous case weights, or null
  bool efron = false;              // Efron's ties, else Breslow's
  bool mean = false;               // derivatives of the mean (divided by the event weight)
  Output loss_out, grad_out, hess_out;  // dtype T; null ptr: not requested
  int threads = 1;
  // Results: the negative log partial likelihood, the summed weight of the events (the mean's
  // denominator), and the first invalid time (-1: none): NaN, or negative with `event`.
  double total = 0.0, norm = 0.0;
  index_t bad = -1;
};
using CoxFn = void (*)(CoxJob&);

// Harrell's concordance index counts over n samples (contiguous float64 time and risk, 0/1 events).
struct ConcordanceJob {
  index_t n = 0;
  const double* time = nullptr;
  const std::uint8_t* event = nullptr;
  const double* risk = nullptr;
  std::int64_t concordant = 0, tied = 0, comparable = 0;  // results
};
using ConcordanceFn = void (*)(ConcordanceJob&);

}  // namespace fastloss
