// Building blocks for row-wise kernels (softmax family): lane reductions over one row, the online
// pieces of a numerically stable softmax, and the deterministic driver over rows.
#pragma once

#include <cstdlib>

#include "fastloss/config.hpp"
#include "fastloss/job.hpp"
#include "fastloss/reduce.hpp"
#include "fastloss/vmath.hpp"

FL_NAMESPACE_BEGIN

inline constexpr index_t kRowBlock = 16;  // rows per reduction block (fixed: determinism)

// max over x[0..K). GCC vector extensions: the compare-select vectorizes without -ffast-math
// (a scalar reduction would not), lowered to the ISA's width. NaN is skipped here and propagates
// through the exp sum instead; the max itself does not depend on the order.
template <class T>
FL_HD inline T row_max(const T* x, index_t K) {
#if defined(__CUDA_ARCH__)
  T r = static_cast<T>(-__builtin_huge_val());
  for (index_t i = 0; i < K; ++i) r = x[i] > r ? x[i] : r;
  return r;
#else
  typedef T V __attribute__((vector_size(64)));
  constexpr int L = 64 / sizeof(T);
  const T ninf = static_cast<T>(-__builtin_huge_val());
  V m;
  for (int j = 0; j < L; ++j) m[j] = ninf;
  index_t i = 0;
  for (; i + L <= K; i += L) {
    V v;
    __builtin_memcpy(&v, x + i, sizeof v);
    m = v > m ? v : m;
  }
  T r = ninf;
  for (int j = 0; j < L; ++j) r = m[j] > r ? m[j] : r;
  for (; i < K; ++i) r = x[i] > r ? x[i] : r;
  return r;
#endif
}

// The exponential sums of a row, in kLanes fixed lanes: e_k = exp((x_k - shift) * scale) for
// shift = the row max and scale > 0 (so every exponent is <= 0: exp_nonpos), stored into e when
// Store. `sum` adds every e_k except the one at index skip (skip < 0: none) and, with Rest, except
// the terms equal to 1 (z_k = max), which `ones` counts instead: so S - 1 = sum + (ones - 1) stays
// to full relative accuracy when the other terms are tiny (a confident row: log S ~ 1e-13 where
// 1 + 1e-13 would keep three digits), and sum over k != skip has no cancellation. Lanes
// accumulate in T over chunks of kExpChunk elements (16 terms per lane: bounded rounding), then
// in double. The lane of element k is k % kLanes on every ISA (GCC vectorizes the fixed inner
// loops at whatever width the target has), so the sums are bitwise the same on AVX2 and AVX-512.
// NaN propagates.
inline constexpr index_t kExpChunk = 16 * kLanes;

struct ExpSums {
  double sum, ones;
};

template <class T, bool Store, bool Rest>
FL_HD inline ExpSums row_exp_lanes(const T* x, index_t K, T shift, T* e, T scale, index_t skip) {
  double acc[kLanes] = {}, acc_1[kLanes] = {};
  index_t i = 0;
#if !defined(__CUDACC__)  // nvcc does not take GCC vector subscripts, in host code either
  // The lane sums as GCC vectors of kLanes elements (the auto-vectorizer would leave the selects
  // of the skipped and unit terms scalar); the exponentials come from a plain loop that it does
  // vectorize.
  typedef T V __attribute__((vector_size(kLanes * sizeof(T))));
  typedef decltype(V{} == V{}) M;  // lane masks and lane numbers
  M lane;
  for (int j = 0; j < kLanes; ++j) lane[j] = j;
  const V zero = {}, one = zero + T(1);
  while (i + kLanes <= K) {
    V part = zero, part_1 = zero;
    const index_t stop = min_(i + kExpChunk, K);
    for (; i + kLanes <= stop; i += kLanes) {
      T v[kLanes];
      for (int j = 0; j < kLanes; ++j) v[j] = vm::exp_nonpos((x[i + j] - shift) * scale);
      V vv;
      __builtin_memcpy(&vv, v, sizeof vv);
      if constexpr (Store) __builtin_memcpy(e + i, &vv, sizeof vv);
      // the lane of skip in this group, or -1
      const M at = lane == static_cast<decltype(lane[0] + 0)>(skip >= i && skip < i + kLanes ? skip - i : -1);
      if constexpr (Rest) {
        const M unit = vv == one;
        part += (at | unit) ? zero : vv;
        part_1 += (~at & unit) ? one : zero;
      } else {
        part += at ? zero : vv;
      }
    }
    for (int j = 0; j < kLanes; ++j) {
      acc[j] += static_cast<double>(part[j]);
      if constexpr (Rest) acc_1[j] += static_cast<double>(part_1[j]);
    }
  }
#endif
  for (; i + kLanes <= K; i += kLanes)  // the device: plain lanes in double
    for (int j = 0; j < kLanes; ++j) {
      const T v = vm::exp_nonpos((x[i + j] - shift) * scale);
      if constexpr (Store) e[i + j] = v;
      if (i + j == skip) continue;
      if (Rest && v == T(1)) acc_1[j] += 1.0;
      else acc[j] += static_cast<double>(v);
    }
  for (int j = 0; i + j < K; ++j) {  // the tail: lanes 0 .. K % kLanes - 1
    const T v = vm::exp_nonpos((x[i + j] - shift) * scale);
    if constexpr (Store) e[i + j] = v;
    if (i + j == skip) continue;
    if (Rest && v == T(1)) acc_1[j] += 1.0;
    else acc[j] += static_cast<double>(v);
  }
  return {pairwise_sum(acc, kLanes), Rest ? pairwise_sum(acc_1, kLanes) : 0.0};
}

// sum_k e_k^2 of exponentials e from row_exp_lanes, in its lanes and with its split: the squares
// equal to 1 counted apart (`ones`), the others summed.
template <class T>
FL_HD inline ExpSums row_square_sum(const T* e, index_t K) {
  double acc[kLanes] = {}, acc_1[kLanes] = {};
  index_t i = 0;
#if !defined(__CUDACC__)
  typedef T V __attribute__((vector_size(kLanes * sizeof(T))));  // as in row_exp_lanes
  const V zero = {}, one = zero + T(1);
  while (i + kLanes <= K) {
    V part = zero, part_1 = zero;
    const index_t stop = min_(i + kExpChunk, K);
    for (; i + kLanes <= stop; i += kLanes) {
      V v;
      __builtin_memcpy(&v, e + i, sizeof v);
      v *= v;
      part += v == one ? zero : v;
      part_1 += v == one ? one : zero;
    }
    for (int j = 0; j < kLanes; ++j) acc[j] += static_cast<double>(part[j]), acc_1[j] += static_cast<double>(part_1[j]);
  }
#endif
  for (; i < K; ++i) {  // the device, and the tail
    const T v = e[i] * e[i];
    if (v == T(1)) acc_1[i % kLanes] += 1.0;
    else acc[i % kLanes] += static_cast<double>(v);
  }
  return {pairwise_sum(acc, kLanes), pairwise_sum(acc_1, kLanes)};
}

// S = sum_k exp((x_k - shift) * scale), the exponentials stored into e (may be null); with Rest,
// *rest = S - 1 to full relative accuracy (row_exp_lanes).
template <class T, bool Rest = false>
FL_HD inline double row_exp_sum(const T* x, index_t K, T shift, T* e, T scale = T(1),
                                double* rest = nullptr) {
  const ExpSums s = e ? row_exp_lanes<T, true, Rest>(x, K, shift, e, scale, -1)
                      : row_exp_lanes<T, false, Rest>(x, K, shift, e, scale, -1);
  if constexpr (Rest) *rest = s.sum + (s.ones - 1.0);
  return s.sum + s.ones;
}

// sum_k w_k z_k in double lanes (w null: sum_k z_k); a zero weight removes its term even where
// z_k is infinite.
template <class T>
FL_HD inline double row_weighted_sum(const T* z, const double* w, index_t K) {
  double acc[kLanes] = {};
  index_t i = 0;
  for (; i + kLanes <= K; i += kLanes)
    for (int j = 0; j < kLanes; ++j)
      acc[j] += w ? (w[i + j] == 0.0 ? 0.0 : w[i + j] * double(z[i + j])) : double(z[i + j]);
  for (int j = 0; i + j < K; ++j)
    acc[j] += w ? (w[i + j] == 0.0 ? 0.0 : w[i + j] * double(z[i + j])) : double(z[i + j]);
  return pairwise_sum(acc, kLanes);
}

// The shift that makes a row's softmax well defined: its max, or 0 where a +inf logit is
// present (the row is then rewritten so that the +inf classes share the probability equally).
template <class T>
FL_HD inline bool row_has_pos_inf(T m) {
  return m == static_cast<T>(__builtin_huge_val());
}

// The softmax limit of a row holding +inf: +inf -> 0, finite -> -inf, NaN kept (into out).
template <class T>
FL_HD inline void pos_inf_limit(const T* x, index_t K, T* out) {
  const T inf = static_cast<T>(__builtin_huge_val());
  for (index_t k = 0; k < K; ++k) out[k] = x[k] == inf ? T(0) : (x[k] != x[k] ? x[k] : -inf);
}

// Runs row_fn(r) -> double for every row; returns the deterministic sum (blocks of kRowBlock
// rows, summed in row order, then the fixed pairwise tree of blocked_sum).
template <class RowFn>
double sum_over_rows(index_t rows, index_t K, int threads, RowFn&& row_fn) {
  return blocked_sum(
      rows, kRowBlock, threads,
      [&](index_t r0, index_t len) {
        double s = 0.0;
        for (index_t r = r0; r < r0 + len; ++r) s += row_fn(r);
        return s;
      },
      K);
}

// sum_over_rows for rows that need scratch: row_fn(r, buf) gets `scratch` elements of T, allocated
// once per block of rows.
template <class T, class RowFn>
double sum_over_rows_scratch(index_t rows, index_t K, index_t scratch, int threads, RowFn&& row_fn) {
  return blocked_sum(
      rows, kRowBlock, threads,
      [&](index_t r0, index_t len) {
        T* buf = alloc_array<T>(scratch);
        double s = 0.0;
        for (index_t r = r0; r < r0 + len; ++r) s += row_fn(r, buf);
        std::free(buf);
        return s;
      },
      K);
}

// One row of any row-wise loss, on the CPU and the GPU: Body<T>::row<G, H>(job, r, scratch) ->
// the row's weighted loss, writing its gradient and Hessian rows. Ignored rows (a label equal to
// ignore_index) contribute nothing and write zeros, whatever their inputs; per-row values go to
// loss_out.
template <class Body, class T, bool G, bool H>
FL_HD double row_value(const Body& body, const RowJob& job, index_t r, T* buf) {
  double l = 0.0;
  if (job.has_ignore && job.labels[r] == job.ignore_index) {
    for (index_t k = 0; G && k < job.K; ++k) static_cast<T*>(job.grad_out)[r * job.grad_stride + k] = T(0);
    for (index_t k = 0; H && k < job.K; ++k) static_cast<T*>(job.hess_out)[r * job.hess_stride + k] = T(0);
  } else {
    l = body.template row<G, H>(job, r, buf);
  }
  if (job.loss_out) static_cast<T*>(job.loss_out)[r] = static_cast<T>(l);
  return l;
}

// The CPU driver of every row-wise loss: the rows summed in the fixed order of sum_over_rows,
// with the scratch rows the body's spec asks for.
template <template <class> class Body, class T, bool G, bool H>
double run_rows_gh(const RowJob& job) {
  const Body<T> body(job.params);
  auto row = [&](index_t r, T* buf) { return row_value<Body<T>, T, G, H>(body, job, r, buf); };
  constexpr int scratch = Body<T>::spec.scratch_rows;
  if constexpr (scratch == 0)
    return sum_over_rows(job.rows, job.K, job.threads, [&](index_t r) { return row(r, nullptr); });
  else
    return sum_over_rows_scratch<T>(job.rows, job.K, scratch * job.K, job.threads, row);
}

template <template <class> class Body, class T>
double run_rows(const RowJob& job) {
  if (job.hess_out) return run_rows_gh<Body, T, true, true>(job);
  if (job.grad_out) return run_rows_gh<Body, T, true, false>(job);
  return run_rows_gh<Body, T, false, false>(job);
}

FL_NAMESPACE_END
