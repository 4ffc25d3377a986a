// Softmax cross-entropy (spec sections 3.2, 3.3, 8.1, 8.2): sparse labels or dense target rows,
// on logits or probabilities, with class weights, ignore_index and label smoothing, value, gradient
// and Hessian diagonal of one row in one fused pass.
//
// Logits (PyTorch's cross_entropy semantics). With p = softmax(z), smoothing a, weights w (1
// without), W = sum w:
//   sparse: l = (1-a) w_t (lse - z_t) + (a/K) (W lse - sum_k w_k z_k)
//           dl/dz_k = ((1-a) w_t + a W/K) p_k - (a/K) w_k - (1-a) w_t [k = t]
//   dense (q = (1-a) y + a/K): l = sum_k w_k q_k (lse - z_k)
//           dl/dz_k = (sum_j w_j q_j) p_k - w_k q_k
//   Hessian diagonal: c p_k (1 - p_k), c the coefficient of p_k above.
// Probabilities p (clamped below at eps; rows are used as given, not renormalized):
//   l = -sum_k w_k q_k log p_k (sparse: q = (1-a) onehot(t) + a/K), dl/dp_k = -w_k q_k / p_k,
//   Hessian w_k q_k / p_k^2.
// One pass per row: the row is read once (max), then from cache (exp, stored into the gradient
// row as scratch, while the next row is prefetched: LinesAhead; and the final scaling). A +inf
// logit makes the +inf classes share the probability equally (the limit); NaN propagates within
// its row only; ignored rows write zeros.
#pragma once

#include <cstdlib>

#include "fastloss/job.hpp"
#include "fastloss/rowwise.hpp"

FL_NAMESPACE_BEGIN
namespace losses {

// A call's hyper-parameters (focal_gamma < 0: plain cross-entropy).
struct CeParams {
  bool from_logits;
  double eps, smoothing, focal_gamma;
};

// g_k = A e_k - sc * (target weight of class k) for k in [k0, k1), e_k held in g.
template <bool Dense, class T>
FL_HD FL_INLINE void ce_grad_range(index_t k0, index_t k1, T* g, const T* y,
                                   const double* w, T A, double sc, double a, double aK) {
  if (Dense || w) {
    for (index_t k = k0; k < k1; ++k) {
      const double wk = w ? w[k] : 1.0;
      const double sub = Dense ? wk * ((1 - a) * double(y[k]) + aK) : aK * wk;
      g[k] = A * g[k] - static_cast<T>(sc * sub);
    }
  } else {
    const T B = static_cast<T>(sc * aK);
    for (index_t k = k0; k < k1; ++k) g[k] = A * g[k] - B;
  }
}

template <class T, bool G, bool H, bool Dense>
FL_HD double ce_logits_row(const RowJob& job, const CeParams& p, index_t r, const T* z, T m, double s,
                           std::int64_t t) {
  const index_t K = job.K;
  const double a = p.smoothing, aK = a / double(K);
  const double* w = job.class_weight;
  T* g = G ? static_cast<T*>(job.grad_out) + r * job.grad_stride : nullptr;
  T* h = H ? static_cast<T*>(job.hess_out) + r * job.hess_stride : nullptr;
  const T* y = Dense ? static_cast<const T*>(job.targets) + r * job.targets_stride : nullptr;

  // Everything that reads z is taken before the exp pass: the gradient may be written in place
  // over the logits (grad_out = y_pred). Logits enter relative to the row max m, so that
  // lse - z_k = log S - (z_k - m) keeps its accuracy for confident rows.
  double c, wt = 0.0, dt = 0.0, wq = 0.0, wqd = 0.0;
  if constexpr (Dense) {
    // sum_k w_k q_k and sum_k w_k q_k (z_k - m), q = (1-a) y + a/K, in double lanes (2.3-2.6x
    // faster than one serial sum at K = 1000); a zero target weight removes its term even where
    // z_k = -inf. Rows of fewer than two groups sum serially: there the lanes' set-up cost more
    // than it saved (0.75-0.9x at K = 3..20).
    auto terms = [&](index_t k, auto* t) {
      using U = FL_LANES_TYPE(t);
      const U one = U{} + 1.0, wk = w ? lanes_load<U>(w + k) : one;
      const U wqk = wk * ((1 - a) * lanes_load_as<U>(y + k) + aK);
      t[0] = wqk;
      t[1] = wqk == U{} ? U{} : wqk * (lanes_load_as<U>(z + k) - double(m));
    };
    if (K < 2 * kLanes) {
      for (index_t k = 0; k < K; ++k) {
        double t[2];
        terms(k, t);
        wq += t[0], wqd += t[1];
      }
    } else {
      double sums[2];
      row_lane_sums<double, 2>(K, sums, terms);
      wq = sums[0], wqd = sums[1];
    }
    c = wq;
  } else {
    wt = w ? w[t] : 1.0;
    dt = double(z[t]) - double(m);
    if (a > 0) wqd = row_weighted_sum(z, w, K) - job.class_weight_sum * double(m);  // sum w (z - m)
    c = (1 - a) * wt + aK * job.class_weight_sum;
  }
  // The next row's lines: with target rows (three streams) the output lines are prefetched in
  // the final pass, which reads the targets again, so that the exp pass does not carry them all
  // (65536 x 1000 float32, two threads: 35 -> 31 ms); the sparse form's final pass is too short
  // to carry its (one) output stream (16 -> 21 ms).
  const LinesAhead<T> ahead = next_row_ahead<T>(job, r), exp_ahead = Dense ? ahead.inputs() : ahead;
  const double S = row_exp_sum(z, K, m, g, T(1), &exp_ahead);  // g holds exp(z - m) until the final pass
  // log1p(S - 1) keeps the loss of a confident row to full relative accuracy
  const double log_s = vm::log1p(row_exp_rest(z, K, m, g, T(1), S));
  double loss;
  if constexpr (Dense) {
    loss = wq * log_s - wqd;
  } else {
    loss = (1 - a) * wt * (log_s - dt);
    if (a > 0) loss += aK * (job.class_weight_sum * log_s - wqd);
  }
  if constexpr (G) {
    const double sc = s * job.grad_scale;
    const T A = static_cast<T>(c * sc / S);  // p_k = e_k / S
    if constexpr (H) {
      const T Ah = static_cast<T>(c * sc), invS = static_cast<T>(1.0 / S);
      for (index_t k = 0; k < K; ++k) {
        const T p = g[k] * invS;
        h[k] = Ah * p * (T(1) - p);
      }
    }
    // g_k = A e_k - sc * (target weight of class k), prefetching the next row's output lines
    if constexpr (Dense)
      lines_ahead(K, ahead.outputs(), [&](index_t k0, index_t k1) FL_LAMBDA_INLINE {
        ce_grad_range<Dense>(k0, k1, g, y, w, A, sc, a, aK);
      });
    else
      ce_grad_range<Dense>(0, K, g, y, w, A, sc, a, aK);
    if constexpr (!Dense) g[t] -= static_cast<T>(sc * (1 - a) * wt);
  }
  return s * loss;
}

template <class T, bool G, bool H, bool Dense>
FL_HD double ce_probs_row(const RowJob& job, const CeParams& prm, index_t r, const T* p, double s, std::int64_t t) {
  const index_t K = job.K;
  const double a = prm.smoothing, aK = a / double(K);
  const double* w = job.class_weight;
  const T eps = static_cast<T>(prm.eps);
  T* g = G ? static_cast<T*>(job.grad_out) + r * job.grad_stride : nullptr;
  T* h = H ? static_cast<T*>(job.hess_out) + r * job.hess_stride : nullptr;
  const T* y = Dense ? static_cast<const T*>(job.targets) + r * job.targets_stride : nullptr;
  const double sc = s * job.grad_scale;
  double loss = 0.0;
  for (index_t k = 0; k < K; ++k) {
    double q;
    if constexpr (Dense) q = (1 - a) * double(y[k]) + aK;
    else q = aK + (k == t ? 1 - a : 0.0);
    const double wq = (w ? w[k] : 1.0) * q;
    const T pc = p[k] < eps ? eps : p[k];  // NaN passes through
    if (wq != 0.0) loss -= wq * double(vm::log(pc));
    if constexpr (G) g[k] = static_cast<T>(-sc * wq / double(pc));
    if constexpr (H) h[k] = static_cast<T>(sc * wq / (double(pc) * double(pc)));
  }
  return s * loss;
}

// Softmax focal loss (Lin et al. 2017) on logits with a label t: with p = softmax(z),
// om = 1 - p_t (summed from the other classes: no cancellation), L = -log p_t, alpha_t:
//   l = alpha_t om^gamma L,   dl/dz_k = c (p_k - [k = t]),  c = alpha_t om^gamma (gamma p_t L/om + 1)
//   d2l/dz_k2 = c p_k (1 - p_k) - Q (d_k / om)^2,  d_k = p_k - [k = t],
//   Q = alpha_t gamma om^gamma p_t om ((L - 2) - (gamma - 1) p_t L/om)
// L/om -> 1 as om -> 0 (a confident correct row), where every term stays finite.
template <class T, bool G, bool H>
FL_HD double focal_logits_row(const RowJob& job, const CeParams& p, index_t r, const T* z, T m, double s,
                               std::int64_t t, T* buf) {
  const index_t K = job.K;
  const double gamma = p.focal_gamma, at = job.class_weight ? job.class_weight[t] : 1.0;
  T* g = G ? static_cast<T*>(job.grad_out) + r * job.grad_stride : nullptr;
  T* h = H ? static_cast<T*>(job.hess_out) + r * job.hess_stride : nullptr;
  T* scratch = G ? g : buf;
  const double zt = double(z[t]);
  const index_t M = H ? row_argmax(z, K, m) : 0;  // the most probable class, whose 1 - p_M may cancel
  // The other classes' exponentials summed apart in the same pass (no 1 - p_t cancellation).
  const LinesAhead<T> ahead = next_row_ahead<T>(job, r);
  const double other = row_exp_sum_but(z, K, m, scratch, t, &ahead);
  const double et = double(scratch[t]), S = other + et;
  const double om = other / S, pt = et / S;
  const double L = om < 0.5 && et > 0 ? vm::log1p(other / et) : double(m) + vm::log(S) - zt;
  const double R = om > 0 ? L / om : 1.0;
  const double pR = pt == 0 ? 0.0 : pt * R;  // its limit where the label's logit is -inf (L = inf)
  const double f = gamma == 0 ? 1.0 : vm::exp(gamma * vm::log(om));
  const double loss = at * f * L;
  if constexpr (G) {
    const double sc = s * job.grad_scale, c = at * f * (gamma * pR + 1.0);
    const double Q = om > 0 && pt > 0 ? at * gamma * f * pt * om * ((L - 2.0) - (gamma - 1.0) * pR) : 0.0;
    const T A = static_cast<T>(sc * c / S);
    double O_M = 0.0;  // 1 - p_M summed from the other classes, for a dominant M other than t
    if (H && M != t) {
      const T eM = g[M];
      g[M] = T(0);
      O_M = lane_sum(g, K) / S;
      g[M] = eM;
    }
    for (index_t k = 0; k < K; ++k) {
      const double e = double(g[k]);
      if constexpr (H) {
        const double p = e / S, O = k == t ? om : (k == M ? O_M : 1.0 - p);
        const double ratio = k == t ? -1.0 : (om > 0 ? p / om : 0.0);  // (p_k - [k = t]) / om
        h[k] = static_cast<T>(sc * (c * p * O - Q * ratio * ratio));
      }
      g[k] = A * static_cast<T>(e);
    }
    g[t] = static_cast<T>(-sc * c * om);  // c (p_t - 1) without the cancellation of p_t - 1
  }
  return s * loss;
}

// F = O^gamma over n values: 1 for gamma = 0, repeated products for an integer gamma up to
// kFocalMaxProductGamma (one flat loop each, which gcc vectorizes; within (gamma - 1) / 2 ulp,
// where exp(gamma log O) loses gamma |log O| ulp for small O), else exp(gamma log O).
inline constexpr double kFocalMaxProductGamma = 8;
FL_HD inline void focal_power(index_t n, const double* __restrict O, double* __restrict F, double gamma) {
  if (gamma == 0) {
    for (index_t i = 0; i < n; ++i) F[i] = 1.0;
  } else if (gamma <= kFocalMaxProductGamma && gamma == double(int(gamma))) {
    for (index_t i = 0; i < n; ++i) F[i] = O[i];
    for (int j = 1; j < int(gamma); ++j)
      for (index_t i = 0; i < n; ++i) F[i] *= O[i];
  } else {
    for (index_t i = 0; i < n; ++i) F[i] = vm::log(O[i]);
    for (index_t i = 0; i < n; ++i) F[i] = vm::exp(gamma * F[i]);
  }
}

// Softmax focal loss with target rows q (Keras' CategoricalFocalCrossentropy on logits):
//   l = sum_k a_k q_k O_k^gamma L_k,  O_k = 1 - p_k, L_k = -log p_k, a_k = alpha_k (1 without)
//   c_k = a_k q_k O_k^gamma (gamma p_k L_k / O_k + 1),  C = sum_k c_k
//   dl/dz_j = p_j C - c_j
//   d2l/dz_j2 = p_j O_j C - p_j c'_j O_j^2 - p_j^2 sum_{k != j} c'_k p_k
//   c'_k O_k^2 = a_k q_k gamma O_k^(gamma+1) ((L_k - 2) - (gamma - 1) p_k L_k / O_k)
// Only the most probable class M can have a tiny O (p_M > 1/2): its O_M is summed from the other
// classes, its L_M = log1p(O_M / p_M), and sum_{k != j} excludes it without cancellation.
// The per-class terms of focal_dense_row, class by class in loops gcc vectorizes (the class-major
// form of focal_dense_block's), into scratch rows of K doubles: P (p_k), O, F = O^gamma, and tl
// (the loss's terms), tc (c_k), tcpO2 (p_k c'_k O_k^2), tcp (c'_k p_k); wq = 0 gives zero terms.
// Alpha is a template flag: a conditional load of it keeps gcc from vectorizing the loop.
template <bool Alpha, class T>
FL_HD void focal_dense_terms(index_t K, const T* __restrict z, T m, const T* __restrict e,
                             const T* __restrict q, const double* __restrict alpha, double gamma,
                             double S, double log_S, index_t M, double other_M, double* __restrict P,
                             double* __restrict O, double* __restrict F, double* __restrict tl,
                             double* __restrict tc, double* __restrict tcpO2, double* __restrict tcp) {
  for (index_t k = 0; k < K; ++k) P[k] = double(e[k]) / S;
  for (index_t k = 0; k < K; ++k) O[k] = k == M ? other_M / S : 1.0 - P[k];
  focal_power(K, O, F, gamma);
  // L of the top class from its 1 - p (log1p, no cancellation) where that is below 1/2
  const double eM = double(e[M]);
  const bool top_log1p = O[M] < 0.5 && eM > 0;
  const double LM = top_log1p ? vm::log1p(other_M / eM) : 0.0;
  for (index_t k = 0; k < K; ++k) {
    const double wq = (Alpha ? alpha[k] : 1.0) * double(q[k]), pk = P[k], Ok = O[k];
    const double Lk = top_log1p && k == M ? LM : log_S - (double(z[k]) - double(m)), f = F[k];
    const double R = Ok > 0 ? Lk / Ok : 1.0;
    const double pR = pk == 0 ? 0.0 : pk * R;  // its limit where z_k = -inf (L = inf)
    const double cpO2 = pk == 0 ? 0.0 : wq * gamma * f * Ok * ((Lk - 2.0) - (gamma - 1.0) * pR) * pk;
    const bool zero = wq == 0.0;
    tl[k] = zero ? 0.0 : wq * f * Lk;
    tc[k] = zero ? 0.0 : wq * f * (gamma * pR + 1.0);
    tcpO2[k] = zero ? 0.0 : cpO2;
    tcp[k] = zero ? 0.0 : (Ok > 0 ? cpO2 / (Ok * Ok) : 0.0);
  }
}

template <class T, bool G, bool H>
FL_HD double focal_dense_row(const RowJob& job, const CeParams& p, index_t r, const T* z, T m, double s,
                              T* buf) {
  const index_t K = job.K;
  const T* q = static_cast<const T*>(job.targets) + r * job.targets_stride;
  T* g = G ? static_cast<T*>(job.grad_out) + r * job.grad_stride : nullptr;
  T* h = H ? static_cast<T*>(job.hess_out) + r * job.hess_stride : nullptr;
  // The exponentials go into the gradient row, unless it is the logits row itself (in place):
  // the per-class terms read z again. The terms' double rows follow the exponentials' scratch row.
  const bool scratch = !G || static_cast<const void*>(g) == static_cast<const void*>(z);
  T* e = scratch ? buf : g;
  double* const P = reinterpret_cast<double*>(
      (reinterpret_cast<std::uintptr_t>(buf + K) + 7) & ~std::uintptr_t(7));
  double *const O = P + K, *const F = O + K, *const tl = F + K, *const tc = tl + K;
  double *const tcpO2 = tc + K, *const tcp = tcpO2 + K;
  const index_t M = row_argmax(z, K, m);
  const LinesAhead<T> ahead = next_row_ahead<T>(job, r);
  const double S = row_exp_sum(z, K, m, e, T(1), &ahead), log_S = vm::log(S);
  const double eM = double(e[M]);
  e[M] = T(0);
  const double other_M = lane_sum(e, K);
  e[M] = static_cast<T>(eM);
  const double* alpha = job.class_weight;
  const double gamma = p.focal_gamma;
  if (alpha)
    focal_dense_terms<true>(K, z, m, e, q, alpha, gamma, S, log_S, M, other_M, P, O, F, tl, tc, tcpO2,
                            tcp);
  else
    focal_dense_terms<false>(K, z, m, e, q, alpha, gamma, S, log_S, M, other_M, P, O, F, tl, tc, tcpO2,
                             tcp);
  // The sums over k (C and D without the top class), in lane_sum's fixed lanes.
  const double loss = lane_sum(tl, K), cM = tc[M], cpM = tcp[M];
  tc[M] = 0.0, tcp[M] = 0.0;
  const double C_other = lane_sum(tc, K), D = lane_sum(tcp, K), C = C_other + cM;
  if constexpr (G) {
    const double sc = s * job.grad_scale;
    const double pM = P[M], O_M = O[M];
    if constexpr (H) {
      for (index_t k = 0; k < K; ++k) {
        const double pk = P[k];  // D - tcp[k] + cpM: sum_{j != k} c'_j p_j
        h[k] = static_cast<T>(sc * (pk * O[k] * C - tcpO2[k] - pk * pk * (D - tcp[k] + cpM)));
      }
      h[M] = static_cast<T>(sc * (pM * O_M * C - tcpO2[M] - pM * pM * D));
    }
    for (index_t k = 0; k < K; ++k) g[k] = static_cast<T>(sc * (P[k] * C - tc[k]));
    // p C - c; for the top class p (C - c_M) - O_M c_M, without the cancellation of p - 1
    g[M] = static_cast<T>(sc * (pM * C_other - O_M * cM));
  }
  return s * loss;
}

// +inf logits: the limit of the softmax gives the +inf classes equal shares; the row is rewritten
// (0 for +inf, -inf for finite, NaN kept) into the first scratch row and computed as usual; the
// focal forms use the second as their own scratch.
template <class T, bool G, bool H, bool Dense>
FL_HD double ce_row(const RowJob& job, const CeParams& p, index_t r, T* buf) {
  const T* x = static_cast<const T*>(job.x) + r * job.x_stride;
  const double s = job.sample_weight ? job.sample_weight[r] : 1.0;
  std::int64_t t = 0;
  if constexpr (!Dense) t = job.labels[r];
  if (!p.from_logits) return ce_probs_row<T, G, H, Dense>(job, p, r, x, s, t);
  // The row max: read from memory once; the later passes find the row in cache.
  const T* z = x;
  T m = row_max(x, job.K);
  if (row_has_pos_inf(m)) {
    pos_inf_limit(x, job.K, buf);
    z = buf, m = T(0);
  }
  if (p.focal_gamma >= 0) {
    if constexpr (Dense) return focal_dense_row<T, G, H>(job, p, r, z, m, s, buf + job.K);
    else return focal_logits_row<T, G, H>(job, p, r, z, m, s, t, buf + job.K);
  }
  return ce_logits_row<T, G, H, Dense>(job, p, r, z, m, s, t);
}

#if !defined(__CUDACC__)
// ce_logits_row for a block of rows of at most kLanes classes (rowwise.hpp: block_load): the same
// operations in the same order, so the same bits. Returns false, having written nothing, where K
// is larger or a row holds a +inf logit.
template <class T, bool G, bool H, bool Dense>
bool ce_logits_block(const RowJob& job, const CeParams& p, index_t r0, index_t len, double& sum) {
  constexpr index_t B = kRowBlock;
  const index_t K = job.K;
  alignas(64) BlockRows<T> z, e, y;
  alignas(64) T m[B];
  if (!block_logits(job, r0, len, z, m)) return false;
  const double a = p.smoothing, aK = a / double(K), W = job.class_weight_sum;
  const double* w = job.class_weight;
  double wc[kLanes];  // the class weights, 1 without
  block_class_weights(job, wc);
  // What the row path takes before its exp pass: dense, sum_k w_k q_k and sum_k w_k q_k (z_k - m),
  // summed serially as there (K < 2 kLanes); sparse with smoothing, sum_k w_k (z_k - m).
  BlockValues wq = {}, wqd = {};
  if constexpr (Dense) {
    block_load(static_cast<const T*>(job.targets), job.targets_stride, r0, len, K, y);
    for (index_t k = 0; k < K; ++k) {
      const double wk = wc[k];
      for (index_t b = 0; b < B; ++b) {
        const double wqk = wk * ((1 - a) * double(y[k][b]) + aK);
        wq[b] += wqk;
        wqd[b] += wqk == 0.0 ? 0.0 : wqk * (double(z[k][b]) - double(m[b]));
      }
    }
  } else if (a > 0) {
    BlockSums acc;
    for (index_t k = 0; k < K; ++k)
      for (index_t b = 0; b < B; ++b)
        acc[k][b] = wc[k] == 0.0 ? 0.0 : wc[k] * double(z[k][b]);  // 1 * z is z
    block_lane_sums(acc, K, false);
    for (index_t b = 0; b < B; ++b) wqd[b] = acc[0][b] - W * double(m[b]);
  }
  block_exp(z, m, K, T(1), e);
  BlockValues S, rest, loss, c, sw, wt, zt;
  block_exp_sums(e, K, S, rest);
  block_sample_weights(job, r0, len, sw);
  std::int64_t t[B] = {};
  if constexpr (!Dense) {
    block_labels(job, r0, len, t);
    for (index_t b = 0; b < B; ++b) wt[b] = wc[t[b]], zt[b] = double(z[t[b]][b]);
  }
  // ce_logits_row's per-row terms and its gradient and Hessian, across the rows' lanes (class-major
  // into e, then stored row-major).
  BlockValues log_S;
  for (index_t b = 0; b < B; ++b) log_S[b] = vm::log1p(rest[b]);
  for (index_t b = 0; b < B; ++b) {
    const double log_s = log_S[b];
    if constexpr (Dense) {
      loss[b] = wq[b] * log_s - wqd[b];
      c[b] = wq[b];
    } else {
      loss[b] = (1 - a) * wt[b] * (log_s - (zt[b] - double(m[b])));
      if (a > 0) loss[b] += aK * (W * log_s - wqd[b]);
      c[b] = (1 - a) * wt[b] + aK * W;
    }
  }
  if constexpr (G) {
    alignas(64) T A[B];
    BlockValues sc;
    for (index_t b = 0; b < B; ++b) sc[b] = sw[b] * job.grad_scale, A[b] = static_cast<T>(c[b] * sc[b] / S[b]);
    if constexpr (H) {
      alignas(64) BlockRows<T> h;
      alignas(64) T Ah[B], invS[B];
      for (index_t b = 0; b < B; ++b) Ah[b] = static_cast<T>(c[b] * sc[b]), invS[b] = static_cast<T>(1.0 / S[b]);
      for (index_t k = 0; k < K; ++k)
        for (index_t b = 0; b < B; ++b) {
          const T pk = e[k][b] * invS[b];
          h[k][b] = Ah[b] * pk * (T(1) - pk);
        }
      block_store(h, K, len, static_cast<T*>(job.hess_out), job.hess_stride, r0);
    }
    if (Dense || w) {
      for (index_t k = 0; k < K; ++k) {
        const double wk = wc[k];
        for (index_t b = 0; b < B; ++b) {
          const double sub = Dense ? wk * ((1 - a) * double(y[k][b]) + aK) : aK * wk;
          e[k][b] = A[b] * e[k][b] - static_cast<T>(sc[b] * sub);
        }
      }
    } else {
      alignas(64) T Bk[B];
      for (index_t b = 0; b < B; ++b) Bk[b] = static_cast<T>(sc[b] * aK);
      for (index_t k = 0; k < K; ++k)
        for (index_t b = 0; b < B; ++b) e[k][b] = A[b] * e[k][b] - Bk[b];
    }
    if constexpr (!Dense)
      for (index_t b = 0; b < B; ++b) e[t[b]][b] -= static_cast<T>(sc[b] * (1 - a) * wt[b]);
    block_store(e, K, len, static_cast<T*>(job.grad_out), job.grad_stride, r0);
  }
  sum = block_row_values<T, G, H>(job, r0, len, sw, loss);
  return true;
}

// focal_logits_row for a block of rows of at most kLanes classes (as ce_logits_block): the same
// operations in the same order, so the same bits; false for anything else.
template <class T, bool G, bool H>
bool focal_logits_block(const RowJob& job, const CeParams& p, index_t r0, index_t len, double& sum) {
  constexpr index_t B = kRowBlock;
  const index_t K = job.K;
  alignas(64) BlockRows<T> z, e;
  alignas(64) T m[B];
  if (!block_logits(job, r0, len, z, m)) return false;
  // The label of each row (0 for an ignored row and the padding: computed, never used) and, for
  // the Hessian, the most probable class M (the first maximum, as the row path).
  std::int64_t t[B], M[B] = {};
  block_labels(job, r0, len, t);
  if constexpr (H) block_argmax(z, K, M);
  block_exp(z, m, K, T(1), e);
  // The other classes' exponentials summed apart (row_exp_sum_but), and for the Hessian those of
  // the classes other than M (lane_sum).
  BlockSums other, not_M;
  for (index_t k = 0; k < K; ++k)
    for (index_t b = 0; b < B; ++b) {
      other[k][b] = k == t[b] ? 0.0 : double(e[k][b]);
      if (H) not_M[k][b] = k == M[b] ? 0.0 : double(e[k][b]);
    }
  block_lane_sums(other, K, true);
  if (H) block_lane_sums(not_M, K, true);
  // focal_logits_row's per-row terms, across the rows' lanes (both forms of L, then the select)
  const double gamma = p.focal_gamma;
  BlockValues S, om, pt, L, pR, f;
  double zt[B], et[B];
  for (index_t b = 0; b < B; ++b) zt[b] = double(z[t[b]][b]), et[b] = double(e[t[b]][b]);
  // (in short loops, each of which gcc vectorizes)
  for (index_t b = 0; b < B; ++b) {
    const double oth = other[0][b];
    S[b] = oth + et[b];
    om[b] = oth / S[b], pt[b] = et[b] / S[b];
  }
  for (index_t b = 0; b < B; ++b) L[b] = vm::log1p(other[0][b] / et[b]);
  for (index_t b = 0; b < B; ++b) pR[b] = double(m[b]) + vm::log(S[b]) - zt[b];
  for (index_t b = 0; b < B; ++b) {
    L[b] = om[b] < 0.5 && et[b] > 0 ? L[b] : pR[b];
    const double R = om[b] > 0 ? L[b] / om[b] : 1.0;
    pR[b] = pt[b] == 0 ? 0.0 : pt[b] * R;
  }
  for (index_t b = 0; b < B; ++b) f[b] = gamma == 0 ? 1.0 : vm::log(om[b]);
  if (gamma != 0)
    for (index_t b = 0; b < B; ++b) f[b] = vm::exp(gamma * f[b]);
  BlockValues loss, sw, at;
  block_sample_weights(job, r0, len, sw);
  double wc[kLanes];  // alpha
  block_class_weights(job, wc);
  for (index_t b = 0; b < B; ++b) at[b] = wc[t[b]];
  for (index_t b = 0; b < B; ++b) loss[b] = at[b] * f[b] * L[b];
  if constexpr (G) {
    // the gradient and Hessian across the rows' lanes (class-major, then stored row-major)
    BlockValues sc, c, Q, O_M;
    alignas(64) T A[B];
    for (index_t b = 0; b < B; ++b) {
      sc[b] = sw[b] * job.grad_scale, c[b] = at[b] * f[b] * (gamma * pR[b] + 1.0);
      Q[b] = om[b] > 0 && pt[b] > 0
                 ? at[b] * gamma * f[b] * pt[b] * om[b] * ((L[b] - 2.0) - (gamma - 1.0) * pR[b])
                 : 0.0;
      A[b] = static_cast<T>(sc[b] * c[b] / S[b]);
      O_M[b] = H && M[b] != t[b] ? not_M[0][b] / S[b] : 0.0;
    }
    if constexpr (H) {
      alignas(64) BlockRows<T> h;
      for (index_t k = 0; k < K; ++k)
        for (index_t b = 0; b < B; ++b) {
          const double pk = double(e[k][b]) / S[b];
          const double O = k == t[b] ? om[b] : (k == M[b] ? O_M[b] : 1.0 - pk);
          const double ratio = k == t[b] ? -1.0 : (om[b] > 0 ? pk / om[b] : 0.0);
          h[k][b] = static_cast<T>(sc[b] * (c[b] * pk * O - Q[b] * ratio * ratio));
        }
      block_store(h, K, len, static_cast<T*>(job.hess_out), job.hess_stride, r0);
    }
    for (index_t k = 0; k < K; ++k)
      for (index_t b = 0; b < B; ++b) e[k][b] = A[b] * e[k][b];
    for (index_t b = 0; b < B; ++b) e[t[b]][b] = static_cast<T>(-sc[b] * c[b] * om[b]);
    block_store(e, K, len, static_cast<T*>(job.grad_out), job.grad_stride, r0);
  }
  sum = block_row_values<T, G, H>(job, r0, len, sw, loss);
  return true;
}

// focal_dense_row for a block of rows of at most kLanes classes (as ce_logits_block): the same
// operations in the same order, so the same bits; false for anything else.
template <class T, bool G, bool H>
bool focal_dense_block(const RowJob& job, const CeParams& p, index_t r0, index_t len, double& sum) {
  constexpr index_t B = kRowBlock;
  const index_t K = job.K;
  alignas(64) BlockRows<T> z, e, q;
  alignas(64) T m[B];
  if (!block_logits(job, r0, len, z, m)) return false;
  block_load(static_cast<const T*>(job.targets), job.targets_stride, r0, len, K, q);
  std::int64_t M[B];  // the most probable class (the first maximum)
  block_argmax(z, K, M);
  block_exp(z, m, K, T(1), e);
  BlockValues S, rest, log_S, other_M, sw;
  block_exp_sums(e, K, S, rest);
  for (index_t b = 0; b < B; ++b) log_S[b] = vm::log(S[b]);
  BlockSums acc;
  for (index_t k = 0; k < K; ++k)
    for (index_t b = 0; b < B; ++b) acc[k][b] = k == M[b] ? 0.0 : double(e[k][b]);
  block_lane_sums(acc, K, true);
  for (index_t b = 0; b < B; ++b) other_M[b] = acc[0][b];
  block_sample_weights(job, r0, len, sw);
  double wc[kLanes];  // alpha
  block_class_weights(job, wc);
  // The per-class terms of every row (focal_dense_terms), class-major, in short loops gcc
  // vectorizes: pk, O, L, then the rest; wq = 0 gives zero terms.
  const double gamma = p.focal_gamma;
  BlockSums P, O, L, F, tl, tc, tcpO2, tcp;
  for (index_t k = 0; k < K; ++k)
    for (index_t b = 0; b < B; ++b) {
      P[k][b] = double(e[k][b]) / S[b];
      O[k][b] = k == M[b] ? other_M[b] / S[b] : 1.0 - P[k][b];
      L[k][b] = log_S[b] - (double(z[k][b]) - double(m[b]));
    }
  // L of the top class from its 1 - p (log1p, no cancellation) where that is below 1/2
  BlockValues eM, LM;
  for (index_t b = 0; b < B; ++b) eM[b] = double(e[M[b]][b]);
  for (index_t b = 0; b < B; ++b) LM[b] = vm::log1p(other_M[b] / eM[b]);
  for (index_t b = 0; b < B; ++b)
    if (O[M[b]][b] < 0.5 && eM[b] > 0) L[M[b]][b] = LM[b];
  // F = O^gamma as the row path forms it, in flat loops over the block (nested ones stay scalar)
  focal_power(K * B, &O[0][0], &F[0][0], gamma);
  for (index_t k = 0; k < K; ++k)
    for (index_t b = 0; b < B; ++b) {
      const double wq = wc[k] * double(q[k][b]), pk = P[k][b], Ok = O[k][b], Lk = L[k][b], f = F[k][b];
      const double R = Ok > 0 ? Lk / Ok : 1.0;
      const double pR = pk == 0 ? 0.0 : pk * R;
      const double cpO2 = pk == 0 ? 0.0 : wq * gamma * f * Ok * ((Lk - 2.0) - (gamma - 1.0) * pR) * pk;
      const bool zero = wq == 0.0;
      tl[k][b] = zero ? 0.0 : wq * f * Lk;
      tc[k][b] = zero ? 0.0 : wq * f * (gamma * pR + 1.0);
      tcpO2[k][b] = zero ? 0.0 : cpO2;
      tcp[k][b] = zero ? 0.0 : (Ok > 0 ? cpO2 / (Ok * Ok) : 0.0);
    }
  // The sums over k (C_other and D without the top class) in lane_sum's order, as there.
  BlockValues loss, C_other, D;
  auto sum_terms = [&](const BlockSums& t, bool skip_top, BlockValues& out) {
    for (index_t k = 0; k < K; ++k)
      for (index_t b = 0; b < B; ++b) acc[k][b] = skip_top && k == M[b] ? 0.0 : t[k][b];
    block_lane_sums(acc, K, false);
    for (index_t b = 0; b < B; ++b) out[b] = acc[0][b];
  };
  sum_terms(tl, false, loss);
  sum_terms(tc, true, C_other);
  sum_terms(tcp, true, D);
  if constexpr (G) {
    BlockValues sc, C, cM, cpM;
    for (index_t b = 0; b < B; ++b) cM[b] = tc[M[b]][b], cpM[b] = tcp[M[b]][b];
    for (index_t b = 0; b < B; ++b) sc[b] = sw[b] * job.grad_scale, C[b] = C_other[b] + cM[b];
    if constexpr (H) {
      alignas(64) BlockRows<T> h;
      for (index_t k = 0; k < K; ++k)
        for (index_t b = 0; b < B; ++b) {
          const double pk = P[k][b], others = k == M[b] ? D[b] : D[b] - tcp[k][b] + cpM[b];
          h[k][b] = static_cast<T>(sc[b] * (pk * O[k][b] * C[b] - tcpO2[k][b] - pk * pk * others));
        }
      block_store(h, K, len, static_cast<T*>(job.hess_out), job.hess_stride, r0);
    }
    for (index_t k = 0; k < K; ++k)
      for (index_t b = 0; b < B; ++b) {
        const double pk = P[k][b];
        const double gk = k == M[b] ? pk * C_other[b] - O[k][b] * cM[b] : pk * C[b] - tc[k][b];
        e[k][b] = static_cast<T>(sc[b] * gk);
      }
    block_store(e, K, len, static_cast<T*>(job.grad_out), job.grad_stride, r0);
  }
  sum = block_row_values<T, G, H>(job, r0, len, sw, loss);
  return true;
}
#endif

// The four row bodies of this file. Parameters: cross-entropy (from_logits, eps,
// label_smoothing); focal (gamma), on logits, its alpha in the class-weight slot.
template <class T, bool Dense, bool Focal>
struct SoftmaxCrossEntropy {
  // PyTorch's mean with labels weights rows by their label's class weight; the focal loss's
  // alpha does not normalize.
  // Scratch: the +inf rewrite's row, the exponentials' row; the dense focal form adds its seven
  // rows of K doubles (focal_dense_row) and a row for their alignment.
  static constexpr int kFocalDenseRows = 1 + 7 * int(sizeof(double) / sizeof(T));
  static constexpr RowSpec spec{Dense ? RowTarget::rows : RowTarget::labels, Focal ? 1 : 3, nullptr,
                                !Focal, Dense && Focal ? 2 + kFocalDenseRows : 2};
  CeParams p;
  explicit SoftmaxCrossEntropy(const double* v)
      : p(Focal ? CeParams{true, 1e-7, 0.0, v[0]} : CeParams{v[0] != 0.0, v[1], v[2], -1.0}) {}
  template <bool G, bool H>
  FL_HD double row(const RowJob& job, index_t r, T* buf) const {
    return ce_row<T, G, H, Dense>(job, p, r, buf);
  }
#if !defined(__CUDACC__)
  // A block of rows at once where K <= kLanes (run_rows_gh asks first).
  template <bool G, bool H>
  bool block(const RowJob& job, index_t r0, index_t len, double& sum) const {
    if constexpr (Focal && Dense) {
      return focal_dense_block<T, G, H>(job, p, r0, len, sum);
    } else if constexpr (Focal) {
      return focal_logits_block<T, G, H>(job, p, r0, len, sum);
    } else {
      return p.from_logits && ce_logits_block<T, G, H, Dense>(job, p, r0, len, sum);
    }
  }
#endif
};
template <class T> using SparseCrossEntropy = SoftmaxCrossEntropy<T, false, false>;
template <class T> using CategoricalCrossEntropy = SoftmaxCrossEntropy<T, true, false>;
template <class T> using SparseFocal = SoftmaxCrossEntropy<T, false, true>;
template <class T> using CategoricalFocal = SoftmaxCrossEntropy<T, true, true>;

// Row-wise logsumexp / softmax / log_softmax, with the same treatment of +inf as cross_entropy
// (logsumexp: +inf; a row of -inf only: logsumexp -inf, softmax NaN).
template <class T>
void softmax_rows(SoftmaxMode mode, const void* xv, index_t xs, index_t rows, index_t K, void* outv,
                  int threads) {
  sum_over_rows(rows, K, threads, [&](index_t r) {
    const T* x = static_cast<const T*>(xv) + r * xs;
    T* out = static_cast<T*>(outv) + (mode == SoftmaxMode::logsumexp ? r : r * K);
    const T inf = static_cast<T>(__builtin_huge_val());
    T m = row_max(x, K);
    T* tmp = nullptr;
    if (row_has_pos_inf(m)) {
      if (mode == SoftmaxMode::logsumexp) return *out = inf, 0.0;
      tmp = alloc_array<T>(K);
      pos_inf_limit(x, K, tmp);
      x = tmp;
      m = T(0);
    }
    if (mode == SoftmaxMode::logsumexp && m == -inf) {  // no finite value: -inf, or NaN if any
      T v = -inf;                                         // (the max skipped NaN)
      for (index_t k = 0; k < K; ++k) v = x[k] != x[k] ? x[k] : v;
      return *out = v, 0.0;
    }
    LinesAhead<T> ahead;  // the next row (prefetch.hpp)
    if (r + 1 < rows) {
      ahead.in[0] = static_cast<const T*>(xv) + (r + 1) * xs;
      if (mode != SoftmaxMode::logsumexp) ahead.out[0] = out + K;
    }
    const double S = row_exp_sum(x, K, m, mode == SoftmaxMode::softmax ? out : nullptr, T(1), &ahead);
    if (mode == SoftmaxMode::logsumexp) {
      *out = static_cast<T>(double(m) + vm::log(S));
    } else if (mode == SoftmaxMode::softmax) {
      const T inv = static_cast<T>(1.0 / S);
      for (index_t k = 0; k < K; ++k) out[k] *= inv;
    } else {  // (x - m) - log S: no rounding at the size of m
      const T log_s = static_cast<T>(vm::log(S));
      for (index_t k = 0; k < K; ++k) out[k] = (x[k] - m) - log_s;
    }
    std::free(tmp);
    return 0.0;
  });
}

}  // namespace losses
FL_NAMESPACE_END
