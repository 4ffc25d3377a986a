// Teacher-student distillation and the KL divergence between tempered softmaxes (spec 6.2, 6.4),
// value, gradient and Hessian diagonal of one row in one fused pass over the student and teacher
// logits.
//
// With z the student logits, t the teacher's, temperature T, q = softmax(z/T), p = softmax(t/T),
// p1 = softmax(z), label y and c2 = (1 - alpha) kl_scale / T:
//   l = alpha (logsumexp(z) - z_y) + (1 - alpha) kl_scale KL(p || q)
//   KL(p || q) = sum_k p_k (u_k - v_k) - log S_t + log S_q,   u = (t - max t)/T, v = (z - max z)/T
//   dl/dz_k = alpha (p1_k - [k = y]) + c2 (q_k - p_k)
//   d2l/dz_k2 = alpha p1_k (1 - p1_k) + (c2 / T) q_k (1 - q_k)
// Terms with p_k = 0 contribute nothing (a teacher class at -inf); a student class at -inf where
// the teacher puts mass gives +inf. +inf logits take the softmax limit (equal shares), as in
// cross_entropy.hpp. Both rows are read once from memory (prefetched during the previous row's
// exp pass: LinesAhead); the exponentials live in a row scratch.
#pragma once

#include "fastloss/job.hpp"
#include "fastloss/rowwise.hpp"

FL_NAMESPACE_BEGIN
namespace losses {

template <class T, bool G, bool H>
FL_HD double distill_row(const RowJob& job, double alpha, double temperature, double kl_scale, index_t r,
                         const T* z, T mz, const T* t, T mt, T* et, T* eq) {
  const index_t K = job.K;
  const double invT = 1.0 / temperature;
  const T scale = static_cast<T>(invT);
  const double s = job.sample_weight ? job.sample_weight[r] : 1.0;
  const bool hard = alpha > 0.0, plain = temperature == 1.0;
  // At T = 2 the plain softmax's exponentials are the squares of the tempered ones (exp(v) =
  // exp(v/2)^2): no second exp pass over the student row.
  const bool square = hard && temperature == 2.0;
  T* g = G ? static_cast<T*>(job.grad_out) + r * job.grad_stride : nullptr;
  T* h = H ? static_cast<T*>(job.hess_out) + r * job.hess_stride : nullptr;

  // Everything that reads z happens before the gradient row is written (it may be z itself).
  const double dy = hard ? double(z[job.labels[r]]) - double(mz) : 0.0;
  // One pass over both rows: the tempered exponentials of teacher and student (stored), their sums,
  // sum_k e^t_k (u_k - v_k) (terms with p_k = 0 dropped) and sum_k (e^q_k)^2, the plain softmax's
  // sum at T = 2 (exp(v) = exp(v/2)^2: no second exp pass over the student row).
  double sums[4];
  const LinesAhead<T> ahead = next_row_ahead<T>(job, r);
  row_lane_sums<T, 4>(
      K, sums,
      [&](index_t k, auto* acc) FL_LAMBDA_INLINE {
        using U = FL_LANES_TYPE(acc);
        const U u = (lanes_load<U>(t + k) - mt) * scale, v = (lanes_load<U>(z + k) - mz) * scale;
        const U a = lanes_exp(u), b = lanes_exp(v), zero = {};
        lanes_store(et + k, a);
        lanes_store(eq + k, b);
        acc[0] = a;
        acc[1] = b;
        acc[2] = a == zero ? zero : a * (u - v);
        acc[3] = b * b;
      },
      &ahead);
  const double St = sums[0], Sq = sums[1];
  // S - 1 to full relative accuracy (rowwise.hpp): log S = log1p(S - 1) on confident rows
  const double rt = row_exp_rest(t, K, mt, et, scale, St), rq = row_exp_rest(z, K, mz, eq, scale, Sq);
  const double kl = sums[2] / St - vm::log1p(rt) + vm::log1p(rq);
  // softmax(z) for the hard term: the tempered one when T = 1, its square at T = 2, else
  // exponentials into g
  double S1 = Sq, r1 = rq;
  const T* e1 = eq;
  if (square) {
    S1 = sums[3];
    r1 = row_exp_rest<T>(K, S1, [&](index_t k, auto u) {
      const auto b = lanes_load<decltype(u)>(eq + k);
      return b * b;
    });
  } else if (hard && !plain) {
    S1 = row_exp_sum(z, K, mz, g);
    r1 = row_exp_rest(z, K, mz, g, T(1), S1);
    e1 = g;
  }
  const double loss = (hard ? alpha * (vm::log1p(r1) - dy) : 0.0) + (1.0 - alpha) * kl_scale * kl;

  if constexpr (G) {
    const double sc = s * job.grad_scale, c2 = (1.0 - alpha) * kl_scale * invT;
    const T A1 = static_cast<T>(hard ? sc * alpha / S1 : 0.0);
    const T Aq = static_cast<T>(sc * c2 / Sq), At = static_cast<T>(sc * c2 / St);
    if constexpr (H) {
      const T B1 = static_cast<T>(hard ? sc * alpha : 0.0), Bq = static_cast<T>(sc * c2 * invT);
      const T inv1 = static_cast<T>(1.0 / S1), invq = static_cast<T>(1.0 / Sq);
      for (index_t k = 0; k < K; ++k) {
        const T p1 = (square ? eq[k] * eq[k] : e1[k]) * inv1, q = eq[k] * invq;
        h[k] = B1 * p1 * (T(1) - p1) + Bq * q * (T(1) - q);
      }
    }
    if (square)
      for (index_t k = 0; k < K; ++k) g[k] = (A1 * eq[k] + Aq) * eq[k] - At * et[k];
    else
      for (index_t k = 0; k < K; ++k) g[k] = A1 * e1[k] + Aq * eq[k] - At * et[k];
    if (hard) g[job.labels[r]] -= static_cast<T>(sc * alpha);
  }
  return s * loss;
}

#if !defined(__CUDACC__)
// distill_row for a block of rows of at most kLanes classes (rowwise.hpp: block_load): the same
// operations in the same order, so the same bits. Returns false, having written nothing, where K
// is larger or a row of either input holds a +inf logit.
template <class T, bool G, bool H>
bool distill_block(const RowJob& job, double alpha, double temperature, double kl_scale, index_t r0,
                   index_t len, double& sum) {
  constexpr index_t B = kRowBlock;
  const index_t K = job.K;
  alignas(64) BlockRows<T> z, t, et, eq, e1;
  alignas(64) T mz[B], mt[B];
  if (!block_logits(job, r0, len, z, mz)) return false;
  block_load(static_cast<const T*>(job.extra), job.extra_stride, r0, len, K, t);
  if (!block_max(t, K, len, mt)) return false;
  const double invT = 1.0 / temperature;
  const T scale = static_cast<T>(invT);
  const bool hard = alpha > 0.0, plain = temperature == 1.0, square = hard && temperature == 2.0;
  // The tempered exponentials (the row path scales by 1 too: x * 1 is x) and sum_k e^t_k (u_k - v_k).
  BlockSums cross;
  for (index_t k = 0; k < K; ++k)
    for (index_t b = 0; b < B; ++b) {
      const T u = (t[k][b] - mt[b]) * scale, v = (z[k][b] - mz[b]) * scale;
      const T a = lanes_exp(u), q = lanes_exp(v);
      et[k][b] = a;
      eq[k][b] = q;
      cross[k][b] = static_cast<double>(a == T(0) ? T(0) : a * (u - v));
    }
  block_lane_sums(cross, K, false);
  BlockValues St, rt, Sq, rq, S1, r1;
  block_exp_sums(et, K, St, rt);
  block_exp_sums(eq, K, Sq, rq);
  // softmax(z) for the hard term: the tempered one at T = 1, its square at T = 2, else its own
  const BlockRows<T>& p1 = square || (hard && !plain) ? e1 : eq;
  if (square) {
    for (index_t k = 0; k < K; ++k)
      for (index_t b = 0; b < B; ++b) e1[k][b] = eq[k][b] * eq[k][b];
    block_exp_sums(e1, K, S1, r1);
  } else if (hard && !plain) {
    block_exp(z, mz, K, T(1), e1);
    block_exp_sums(e1, K, S1, r1);
  } else {
    for (index_t b = 0; b < B; ++b) S1[b] = Sq[b], r1[b] = rq[b];
  }
  // distill_row's per-row terms, gradient and Hessian across the rows' lanes (class-major, then
  // stored row-major).
  BlockValues loss, sw;
  block_sample_weights(job, r0, len, sw);
  std::int64_t y[B] = {};
  if (hard) block_labels(job, r0, len, y);
  for (index_t b = 0; b < B; ++b) loss[b] = hard ? double(z[y[b]][b]) - double(mz[b]) : 0.0;  // dy
  for (index_t b = 0; b < B; ++b) {
    const double kl = cross[0][b] / St[b] - vm::log1p(rt[b]) + vm::log1p(rq[b]);
    loss[b] = (hard ? alpha * (vm::log1p(r1[b]) - loss[b]) : 0.0) + (1.0 - alpha) * kl_scale * kl;
  }
  if constexpr (G) {
    const double c2 = (1.0 - alpha) * kl_scale * invT;
    alignas(64) T A1[B], Aq[B], At[B];
    BlockValues sc;
    for (index_t b = 0; b < B; ++b) {
      sc[b] = sw[b] * job.grad_scale;
      A1[b] = static_cast<T>(hard ? sc[b] * alpha / S1[b] : 0.0);
      Aq[b] = static_cast<T>(sc[b] * c2 / Sq[b]), At[b] = static_cast<T>(sc[b] * c2 / St[b]);
    }
    if constexpr (H) {
      alignas(64) BlockRows<T> h;
      alignas(64) T B1[B], Bq[B], inv1[B], invq[B];
      for (index_t b = 0; b < B; ++b) {
        B1[b] = static_cast<T>(hard ? sc[b] * alpha : 0.0), Bq[b] = static_cast<T>(sc[b] * c2 * invT);
        inv1[b] = static_cast<T>(1.0 / S1[b]), invq[b] = static_cast<T>(1.0 / Sq[b]);
      }
      for (index_t k = 0; k < K; ++k)
        for (index_t b = 0; b < B; ++b) {
          const T pk = p1[k][b] * inv1[b], q = eq[k][b] * invq[b];
          h[k][b] = B1[b] * pk * (T(1) - pk) + Bq[b] * q * (T(1) - q);
        }
      block_store(h, K, len, static_cast<T*>(job.hess_out), job.hess_stride, r0);
    }
    BlockRows<T>& g = t;  // the teacher's logits are no longer read
    for (index_t k = 0; k < K; ++k)
      for (index_t b = 0; b < B; ++b)
        g[k][b] = square ? (A1[b] * eq[k][b] + Aq[b]) * eq[k][b] - At[b] * et[k][b]
                         : A1[b] * p1[k][b] + Aq[b] * eq[k][b] - At[b] * et[k][b];
    if (hard)
      for (index_t b = 0; b < B; ++b) g[y[b]][b] -= static_cast<T>(sc[b] * alpha);
    block_store(g, K, len, static_cast<T*>(job.grad_out), job.grad_stride, r0);
  }
  sum = block_row_values<T, G, H>(job, r0, len, sw, loss);
  return true;
}
#endif

// Parameters: (alpha, temperature, kl_scale); labels may be None when alpha = 0 (the tempered KL).
// Scratch per row: teacher exponentials, tempered student exponentials, and the +inf limits of
// both rows.
template <class T>
struct Distillation {
  static const char* check(const RowJob& job) {
    return !job.labels && job.params[0] != 0.0 ? "y_true (class labels) are required when alpha > 0"
                                               : nullptr;
  }
  static constexpr RowSpec spec{RowTarget::optional_labels, 3, "teacher_logits", false, 4, &check};
  double alpha, temperature, kl_scale;
  explicit Distillation(const double* v) : alpha(v[0]), temperature(v[1]), kl_scale(v[2]) {}
  template <bool G, bool H>
  FL_HD double row(const RowJob& job, index_t r, T* buf) const {
    const index_t K = job.K;
    const T* z = static_cast<const T*>(job.x) + r * job.x_stride;
    const T* t = static_cast<const T*>(job.extra) + r * job.extra_stride;
    // the row maxima, read from memory once (the later passes find the rows in cache)
    T mz = row_max(z, K), mt = row_max(t, K);
    if (row_has_pos_inf(mz)) pos_inf_limit(z, K, buf + 2 * K), z = buf + 2 * K, mz = T(0);
    if (row_has_pos_inf(mt)) pos_inf_limit(t, K, buf + 3 * K), t = buf + 3 * K, mt = T(0);
    return distill_row<T, G, H>(job, alpha, temperature, kl_scale, r, z, mz, t, mt, buf, buf + K);
  }
#if !defined(__CUDACC__)
  // A block of rows at once where K <= kLanes (run_rows_gh asks first).
  template <bool G, bool H>
  bool block(const RowJob& job, index_t r0, index_t len, double& sum) const {
    return distill_block<T, G, H>(job, alpha, temperature, kl_scale, r0, len, sum);
  }
#endif
};

}  // namespace losses
FL_NAMESPACE_END
