// Optimal transport (spec section 5.1): the exact 1-D Wasserstein merge with its gradient w.r.t.
// the positions of the second distribution, and log-domain Sinkhorn (row-wise log-sum-exp with
// our vector exp/log), with the final plan, cost and envelope gradients.
//
// 1-D: with both distributions sorted, W_p^p = int_0^1 |F_u^-1(t) - F_v^-1(t)|^p dt is a sum over
// the segments of [0, 1] between consecutive cumulative weights of either distribution; a segment
// of mass w pairing u_i with v_j adds w |v_j - u_i|^p, and w p |d|^(p-1) sign(d) to d/dv_j
// (d = v_j - u_i), w p (p-1) |d|^(p-2) to its second derivative (the sort order is locally fixed).
//
// Sinkhorn, scaled potentials F = f/eps, G = g/eps, plan P_ij = a_i b_j exp(F_i + G_j - C_ij/eps):
// the log-domain updates F_i = -LSE_j(log b_j + G_j - C_ij/eps) (rows exact) and
// G_j = -LSE_i(log a_i + F_i - C_ij/eps) (columns exact) cost one exp per entry each; the
// stabilized iteration below runs the equivalent scaling updates on the plan of the current
// potentials (matrix-vector products) and falls back to these log-domain updates (absorption)
// whenever a scaling leaves a safe range, so nothing under- or overflows for any eps.
// Every row or column is reduced by one thread in a fixed order, sums over rows are blocked: the
// results do not depend on the thread count.
#pragma once

#include <cmath>
#include <cstdlib>

#include "fastloss/job.hpp"
#include "fastloss/rowwise.hpp"

FL_NAMESPACE_BEGIN
namespace losses {

// |d|^p and p |d|^(p-1) sign(d) and p (p-1) |d|^(p-2), specialized for p = 1 and 2.
struct PowTerms {
  double value, slope, curvature;
};
FL_INLINE PowTerms pow_terms(double d, double p) {
  const double ad = std::fabs(d), s = d > 0 ? 1.0 : (d < 0 ? -1.0 : 0.0);
  if (p == 1.0) return {ad, s, 0.0};
  if (p == 2.0) return {d * d, 2.0 * d, 2.0};
  const double pm1 = ad == 0.0 ? 0.0 : std::pow(ad, p - 1.0);
  return {pm1 * ad, p * pm1 * s, ad == 0.0 ? (p < 2.0 ? HUGE_VAL : 0.0) : p * (p - 1.0) * pm1 / ad};
}

template <class T>
double wasserstein_1d_row(const Wasserstein1dJob& job, index_t r) {
  const index_t n = job.n, m = job.m;
  const T* u = static_cast<const T*>(job.u) + r * n;
  const T* v = static_cast<const T*>(job.v) + r * m;
  const std::int64_t* uo = job.u_order ? job.u_order + r * n : nullptr;
  const std::int64_t* vo = job.v_order ? job.v_order + r * m : nullptr;
  const double* uw = job.u_w ? job.u_w + r * job.u_w_stride : nullptr;
  const double* vw = job.v_w ? job.v_w + r * job.v_w_stride : nullptr;
  const double u_scale = uw ? job.u_inv_sum[r] : 1.0 / double(n);
  const double v_scale = vw ? job.v_inv_sum[r] : 1.0 / double(m);
  T* g = job.grad_out ? static_cast<T*>(job.grad_out) + r * m : nullptr;
  T* h = job.hess_out ? static_cast<T*>(job.hess_out) + r * m : nullptr;
  const double p = job.p, gs = job.grad_scale;

  // Cumulative weights are accumulated as the merge advances; the last element of each
  // distribution never ends before the other's last, which takes the remaining mass 1 - t.
  index_t i = 0, j = 0;
  index_t ui = uo ? uo[0] : 0, vj = vo ? vo[0] : 0;
  double cu = (uw ? uw[ui] : 1.0) * u_scale, cv = (vw ? vw[vj] : 1.0) * v_scale;
  double t = 0.0, total = 0.0, gj = 0.0, hj = 0.0;
  double uval = double(u[ui]), vval = double(v[vj]);
  for (;;) {
    const bool u_last = i == n - 1, v_last = j == m - 1;
    const bool advance_u = !u_last && (v_last || cu < cv);
    const double end = u_last && v_last ? 1.0 : (advance_u ? cu : cv);
    const double mass = end > t ? end - t : 0.0;
    t = end > t ? end : t;
    if (mass > 0) {  // ties give empty segments (whose infinite curvature must not count)
      const PowTerms pt = pow_terms(vval - uval, p);
      total += mass * pt.value;
      gj += mass * pt.slope;
      hj += mass * pt.curvature;
    }
    if (u_last && v_last) break;
    if (advance_u) {
      ++i;
      ui = uo ? uo[i] : i;
      uval = double(u[ui]);
      cu += (uw ? uw[ui] : 1.0) * u_scale;
    } else {
      if (g) g[vj] = static_cast<T>(gj * gs);
      if (h) h[vj] = static_cast<T>(hj * gs);
      gj = hj = 0.0;
      ++j;
      vj = vo ? vo[j] : j;
      vval = double(v[vj]);
      cv += (vw ? vw[vj] : 1.0) * v_scale;
    }
  }
  if (g) g[vj] = static_cast<T>(gj * gs);
  if (h) h[vj] = static_cast<T>(hj * gs);
  return total;
}

template <class T>
void wasserstein_1d(const Wasserstein1dJob& job) {
  parallel_for(job.rows, job.n + job.m, job.threads, [&](index_t r0, index_t r1) {
    for (index_t r = r0; r < r1; ++r) job.values[r] = wasserstein_1d_row<T>(job, r);
  });
}

// s_j = h_j - c_j * inv_eps (stored), returns max_j s_j. Vector extension for the max (see
// row_max): the compare-select vectorizes without -ffast-math, in vectors of one register.
template <class T>
inline T shifted_row_max(const T* h, const T* c, T inv_eps, T* s, index_t K) {
  typedef T V __attribute__((vector_size(kRegBytes)));
  constexpr int L = kRegBytes / sizeof(T);
  const T ninf = static_cast<T>(-__builtin_huge_val());
  V mx, ie;
  for (int k = 0; k < L; ++k) mx[k] = ninf, ie[k] = inv_eps;
  index_t j = 0;
  for (; j + L <= K; j += L) {
    V hv, cv;
    __builtin_memcpy(&hv, h + j, sizeof hv);
    __builtin_memcpy(&cv, c + j, sizeof cv);
    const V sv = hv - cv * ie;
    __builtin_memcpy(s + j, &sv, sizeof sv);
    mx = sv > mx ? sv : mx;
  }
  T r = ninf;
  for (int k = 0; k < L; ++k) r = mx[k] > r ? mx[k] : r;
  for (; j < K; ++j) {
    s[j] = h[j] - c[j] * inv_eps;
    r = s[j] > r ? s[j] : r;
  }
  return r;
}

// Absorption (the log-domain step, exact for the rows): F_i = -LSE_j(log b_j + G_j - C_ij/eps)
// and K_ij = a_i b_j exp(F_i + G_j - C_ij/eps), the plan of (F, G), whose rows sum to a_i.
template <class T>
void absorb_rows(const T* C, index_t n, index_t m, const double* a, const double* log_b,
                 const double* G, double inv_eps, double* F, T* K, int threads) {
  Buffer<T> hT_mem(m);
  T* hT = hT_mem.p;
  for (index_t j = 0; j < m; ++j) hT[j] = static_cast<T>(log_b[j] + G[j]);
  const T ie = static_cast<T>(inv_eps);
  auto make = [&] { return new Buffer<T>(m); };
  parallel_for_scratch(n, m, threads, make, [&](index_t i0, index_t i1, Buffer<T>& buf) {
    T* s = buf.p;
    for (index_t i = i0; i < i1; ++i) {
      T* k = K + i * m;
      const T mx = shifted_row_max(hT, C + i * m, ie, s, m);
      const double S = row_exp_sum(s, m, mx, k);
      F[i] = -(double(mx) + vm::log(S));
      const T scale = static_cast<T>(a[i] / S);
      for (index_t j = 0; j < m; ++j) k[j] *= scale;
    }
  });
}

// The exact column update G_j = -LSE_i(log a_i + F_i - C_ij/eps), streaming the rows of C (two
// passes: max, then sum of exp), vectorized over columns; each column's order over i is fixed.
template <class T>
void column_lse(const T* C, index_t n, index_t m, const double* log_a, const double* F,
                double inv_eps, double* G, int threads) {
  Buffer<T> hT_mem(n);
  T* hT = hT_mem.p;
  for (index_t i = 0; i < n; ++i) hT[i] = static_cast<T>(log_a[i] + F[i]);
  Buffer<T> mx_mem(m);
  T* mx = mx_mem.p;
  const T ie = static_cast<T>(inv_eps), ninf = static_cast<T>(-HUGE_VAL);
  for (index_t j = 0; j < m; ++j) mx[j] = ninf, G[j] = 0.0;
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < m; ++j) {
      const T t = hT[i] - C[i * m + j] * ie;
      mx[j] = t > mx[j] ? t : mx[j];
    }
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < m; ++j) G[j] += double(vm::exp_nonpos(hT[i] - C[i * m + j] * ie - mx[j]));
  for (index_t j = 0; j < m; ++j) G[j] = -(double(mx[j]) + vm::log(G[j]));
}

// Rows are split into this many chunks (fewer for small n: the split depends on the size alone),
// each with its own partial column sums, combined in chunk order: deterministic for any threads.
inline constexpr index_t kColumnChunks = 16;

// u_i = a_i / sum_j K_ij v_j (the row update) and cs_j = sum_i u_i K_ij (the column sums of the
// new state) in ONE pass over K: each row is summed again while it is in cache.
template <class T>
void scale_rows_sum_columns(const T* K, index_t n, index_t m, const double* a, const double* v,
                            double* u, double* cs, double* partial, int threads) {
  const index_t chunks = min_(n, kColumnChunks);
  parallel_chunks(chunks, n * m / chunks, threads, [&](index_t c) {
    const index_t i0 = n * c / chunks, i1 = n * (c + 1) / chunks;
    double* p = partial + c * m;
    for (index_t j = 0; j < m; ++j) p[j] = 0.0;
    for (index_t i = i0; i < i1; ++i) {
      const T* k = K + i * m;
      double acc[kLanes] = {};  // K_i . v in fixed lanes (lane_dot's order, fused multiply-adds)
      index_t j = 0;
      for (; j + kLanes <= m; j += kLanes)
        for (int l = 0; l < kLanes; ++l) acc[l] = fma_(double(k[j + l]), v[j + l], acc[l]);
      for (int l = 0; j + l < m; ++l) acc[l] = fma_(double(k[j + l]), v[j + l], acc[l]);
      u[i] = a[i] > 0 ? a[i] / pairwise_sum(acc, kLanes) : 1.0;  // a weightless row: no scaling
      const double ui = u[i];
      for (index_t jj = 0; jj < m; ++jj) p[jj] = fma_(ui, double(k[jj]), p[jj]);
    }
  });
  for (index_t j = 0; j < m; ++j) cs[j] = partial[j];
  for (index_t c = 1; c < chunks; ++c)
    for (index_t j = 0; j < m; ++j) cs[j] += partial[c * m + j];
}

// Whether some x_k lies outside [1/tau, tau] (or is NaN).
inline bool out_of_range(const double* x, index_t len, double tau) {
  bool bad = false;
  for (index_t k = 0; k < len; ++k) bad |= !(x[k] >= 1.0 / tau && x[k] <= tau);
  return bad;
}

// Stabilized Sinkhorn (Schmitzer 2019): scaling iterations u = a / (K v), v = b / (K^T u) on the
// plan K of the log-domain potentials (both products in one pass over K, no exp), with
// the scalings absorbed into the potentials (an exact log-domain row update, and K recomputed)
// whenever one leaves [1/tau, tau]; a column that underflowed entirely gets the exact log-domain
// column update first. Entries of K that underflow are below tau^2 * (smallest normal) in the
// plan: negligible. The column error of each row-exact state comes with the next K^T u.
template <class T>
void sinkhorn_iterate(SinkhornJob& job) {
  const index_t n = job.n, m = job.m;
  const T* C = static_cast<const T*>(job.C);
  T* K = static_cast<T*>(job.K);
  const double tau = sizeof(T) == 4 ? 1e8 : 1e50;
  double* u = job.u;
  double* v = job.v;
  Buffer<double> cs_mem(m);
  double* cs = cs_mem.p;
  Buffer<double> sq_mem(m);
  double* sq = sq_mem.p;
  Buffer<double> partial_mem(m * min_(n, kColumnChunks));
  double* partial = partial_mem.p;
  auto row_update = [&] { scale_rows_sum_columns(K, n, m, job.a, v, u, cs, partial, job.threads); };
  auto absorb = [&] {  // G already holds the absorbed column scalings; F, K, u from the rows
    absorb_rows(C, n, m, job.a, job.log_b, job.G, job.inv_eps, job.F, K, job.threads);
    for (index_t j = 0; j < m; ++j) v[j] = 1.0;
    row_update();
  };
  absorb();
  job.iterations = 0;
  job.error = HUGE_VAL;
  for (int it = 1; it <= job.max_iter; ++it) {
    poll_interrupt();  // Ctrl-C between iterations (every ~50 ms)
    // The state (u, v) is row-exact and cs = K^T u: its column error.
    for (index_t j = 0; j < m; ++j) {
      const double e = v[j] * cs[j] - job.b[j];
      sq[j] = e * e;
    }
    job.iterations = it;
    job.error = std::sqrt(lane_sum(sq, m));
    if (!(job.error >= job.tol) || it == job.max_iter) break;  // NaN stops too
    for (index_t j = 0; j < m; ++j) v[j] = job.b[j] > 0 ? job.b[j] / cs[j] : 1.0;
    if (out_of_range(v, m, tau)) {
      if (!out_of_range(v, m, tau * tau)) {
        for (index_t j = 0; j < m; ++j) job.G[j] += vm::log(v[j]);
      } else {  // a column that (nearly) underflowed entirely: its exact log-domain update
        for (index_t i = 0; i < n; ++i) job.F[i] += vm::log(u[i]);
        column_lse(C, n, m, job.log_a, job.F, job.inv_eps, job.G, job.threads);
      }
      absorb();
      continue;
    }
    row_update();
    if (out_of_range(u, n, tau)) {
      for (index_t j = 0; j < m; ++j) job.G[j] += vm::log(v[j]);
      absorb();
    }
  }
  for (index_t i = 0; i < n; ++i) job.F[i] += vm::log(u[i]);
  for (index_t j = 0; j < m; ++j) job.G[j] += vm::log(v[j]);
}

// For every row i of c (rows x K, the cost or its transpose): P_ik = exp(la_i + pa_i + lb_k + pb_k
// - c_ik/eps); writes the plan row (if `plan`), and for point clouds the gradient row
// 2 (sum_k P_ik (p_i - q_k)) of p (rows x d) against q (K x d). Returns sum_ik P_ik c_ik.
template <class T>
double plan_rows(const T* c, index_t rows, index_t K, const double* la, const double* pa,
                 const double* lb, const double* pb, double inv_eps, T* plan, const T* p,
                 const T* q, index_t d, T* grad, int threads, const T* W = nullptr,
                 const double* su = nullptr, const double* sv = nullptr) {
  Buffer<T> hT_mem(K);
  T* hT = hT_mem.p;
  for (index_t k = 0; k < K; ++k) hT[k] = static_cast<T>(lb[k] + pb[k]);
  const T ie = static_cast<T>(inv_eps);
  Buffer<double> part_mem((rows > 0 ? rows : 1));
  double* part = part_mem.p;
  struct RowBuffers {
    Buffer<T> s;
    Buffer<double> acc;
    RowBuffers(index_t K, index_t d) : s(K), acc(d) {}
  };
  auto make = [&] { return new RowBuffers(K, d); };
  auto run = [&](index_t r0, index_t r1, RowBuffers& b) {
    T* s = b.s.p;
    double* acc = b.acc.p;
    for (index_t i = r0; i < r1; ++i) {
      const T* ci = c + i * K;
      const T shift = static_cast<T>(la[i] + pa[i]);
      if (W) {  // the iteration's plan: P_ik = su_i W_ik sv_k, no exp
        const T* wi = W + i * K;
        for (index_t k = 0; k < K; ++k) s[k] = static_cast<T>(su[i] * double(wi[k]) * sv[k]);
      } else {
        for (index_t k = 0; k < K; ++k) s[k] = vm::exp(static_cast<T>(shift + hT[k] - ci[k] * ie));
      }
      if (plan) __builtin_memcpy(plan + i * K, s, sizeof(T) * K);
      double acc_c[kLanes] = {};
      index_t k = 0;
      for (; k + kLanes <= K; k += kLanes)
        for (int l = 0; l < kLanes; ++l) acc_c[l] += double(s[k + l]) * double(ci[k + l]);
      for (int l = 0; k + l < K; ++l) acc_c[l] += double(s[k + l]) * double(ci[k + l]);
      part[i] = pairwise_sum(acc_c, kLanes);
      if (grad) {
        const T* pi = p + i * d;
        for (index_t e = 0; e < d; ++e) acc[e] = 0.0;
        double mass = 0.0;
        for (index_t k2 = 0; k2 < K; ++k2) {
          const double w = double(s[k2]);
          mass += w;
          const T* qk = q + k2 * d;
          for (index_t e = 0; e < d; ++e) acc[e] += w * double(qk[e]);
        }
        for (index_t e = 0; e < d; ++e)
          grad[i * d + e] = static_cast<T>(2.0 * (mass * double(pi[e]) - acc[e]));
      }
    }
  };
  parallel_for_scratch(rows, K * (1 + d), threads, make, run);
  const double total = pairwise_sum(part, rows);  // order fixed by the row count
  return total;
}

template <class T>
double sinkhorn_finish(const SinkhornJob& job) {
  const T* x = static_cast<const T*>(job.x);
  const T* y = static_cast<const T*>(job.y);
  const double cost = plan_rows(static_cast<const T*>(job.C), job.n, job.m, job.log_a, job.F,
                                job.log_b, job.G, job.inv_eps, static_cast<T*>(job.plan_out), x, y,
                                job.d, static_cast<T*>(job.grad_x), job.threads,
                                static_cast<const T*>(job.K), job.u, job.v);
  if (job.grad_y)
    plan_rows(static_cast<const T*>(job.Ct), job.m, job.n, job.log_b, job.G, job.log_a, job.F,
              job.inv_eps, static_cast<T*>(nullptr), y, x, job.d, static_cast<T*>(job.grad_y),
              job.threads);
  return cost;
}

template <class T>
void sq_euclidean(const void* xv, const void* yv, index_t n, index_t m, index_t d, void* Cv,
                  void* Ctv, int threads) {
  const T* x = static_cast<const T*>(xv);
  const T* y = static_cast<const T*>(yv);
  auto fill = [&](const T* p, const T* q, index_t rows, index_t K, T* out) {
    parallel_for(rows, K * d, threads, [&](index_t r0, index_t r1) {
      for (index_t i = r0; i < r1; ++i)
        for (index_t k = 0; k < K; ++k) {
          T acc = 0;
          for (index_t e = 0; e < d; ++e) {
            const T diff = p[i * d + e] - q[k * d + e];
            acc = fma_(diff, diff, acc);
          }
          out[i * K + k] = acc;
        }
    });
  };
  fill(x, y, n, m, static_cast<T*>(Cv));
  if (Ctv) fill(y, x, m, n, static_cast<T*>(Ctv));  // (a - b)^2 == (b - a)^2 bitwise: Ct is C's transpose
}

}  // namespace losses
FL_NAMESPACE_END
