// Multi-class hinge (spec 3.5 generalized), PyTorch's multi_margin_loss semantics. Per row with
// label t, margins u_k = margin - z_t + z_k (k != t), class weight w_t (1 without), p in {1, 2}:
//   Weston-Watkins: l = w_t / K * sum_{k != t} max(0, u_k)^p
//   Crammer-Singer: l = w_t * max(0, u_k*)^p with k* = argmax_{k != t} z_k (first on ties)
// Gradient: d/dz_k = +w p u_k^(p-1) (/K), d/dz_t = -(sum of those); Hessian diagonal (exact
// a.e.): 0 for p = 1; for p = 2, 2w (/K) per active k and their sum at t.
#pragma once

#include "fastloss/job.hpp"
#include "fastloss/rowwise.hpp"

FL_NAMESPACE_BEGIN
namespace losses {

// Parameters: (crammer_singer, p, margin).
template <class T>
struct MultiMargin {
  static constexpr RowSpec spec{RowTarget::labels, 3};
  bool crammer_singer;
  int p;
  double margin;
  explicit MultiMargin(const double* v) : crammer_singer(v[0] != 0.0), p(int(v[1])), margin(v[2]) {}
  template <bool G, bool H>
  FL_HD double row(const RowJob& job, index_t r, T*) const;
};

template <class T>
template <bool G, bool H>
FL_HD double MultiMargin<T>::row(const RowJob& job, index_t r, T*) const {
  const index_t K = job.K;
  const T* z = static_cast<const T*>(job.x) + r * job.x_stride;
  const std::int64_t t = job.labels[r];
  const double s = job.sample_weight ? job.sample_weight[r] : 1.0;
  const double wt = job.class_weight ? job.class_weight[t] : 1.0;
  const double norm = crammer_singer ? 1.0 : 1.0 / double(K);
  const double coef = wt * norm, sc = s * job.grad_scale * coef;
  T* g = G ? static_cast<T*>(job.grad_out) + r * job.grad_stride : nullptr;
  T* h = H ? static_cast<T*>(job.hess_out) + r * job.hess_stride : nullptr;
  const double zt = double(z[t]);
  double loss = 0.0, gt = 0.0, ht = 0.0;
  auto term = [&](double u) { return u > 0 ? (p == 2 ? u * u : u) : (u == u ? 0.0 : u); };
  auto slope = [&](double u) { return u > 0 ? (p == 2 ? 2 * u : 1.0) : (u == u ? 0.0 : u); };
  auto curve = [&](double u) { return u > 0 && p == 2 ? 2.0 : (u == u ? 0.0 : u); };
  if (!crammer_singer) {
    // The sums of the terms, slopes and curvatures first, in the fixed lanes of row_lane_sums
    // (vector code; serial double sums kept the loop scalar: 16384 x 1000 float32, one thread,
    // 158 -> 31 ms), then the derivatives elementwise, after every read of z (grad_out may be z).
    const double base = margin - zt;
    const bool sq = p == 2;
    double sums[3];
    row_lane_sums<double, 3>(K, sums, [&](index_t k, auto* acc) FL_LAMBDA_INLINE {
      using U = FL_LANES_TYPE(acc);
      const U zero = {}, u = lanes_select_not(k, t, base + lanes_load_as<U>(z + k));
      const U nan_or_zero = u == u ? zero : u;
      acc[0] = u > zero ? (sq ? u * u : u) : nan_or_zero;
      acc[1] = u > zero ? (sq ? 2.0 * u : zero + 1.0) : nan_or_zero;
      acc[2] = sq ? (u > zero ? zero + 2.0 : nan_or_zero) : nan_or_zero;
    });
    loss = sums[0], gt = sums[1], ht = sums[2];
    if constexpr (G)
      for (index_t k = 0; k < K; ++k) {
        const double u = k == t ? 0.0 : base + double(z[k]);
        if constexpr (H) h[k] = static_cast<T>(sc * curve(u));
        g[k] = static_cast<T>(sc * slope(u));
      }
  } else {
    index_t best = -1;
    for (index_t k = 0; k < K; ++k)
      if (k != t && (best < 0 || z[k] > z[best] || (z[k] != z[k] && z[best] == z[best]))) best = k;
    const double u = best < 0 ? 0.0 : margin - zt + double(z[best]);
    loss = best < 0 ? 0.0 : term(u);
    for (index_t k = 0; G && k < K; ++k) g[k] = T(0);
    for (index_t k = 0; H && k < K; ++k) h[k] = T(0);
    if (best >= 0) {
      gt = slope(u);
      ht = curve(u);
      if constexpr (G) g[best] = static_cast<T>(sc * gt);
      if constexpr (H) h[best] = static_cast<T>(sc * ht);
    }
  }
  if constexpr (G) g[t] = static_cast<T>(-sc * gt);
  if constexpr (H) h[t] = static_cast<T>(sc * ht);
  return s * coef * loss;
}

}  // namespace losses
FL_NAMESPACE_END
