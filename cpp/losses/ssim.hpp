// SSIM and MS-SSIM (spec 5.4) of image planes, with the exact gradient with respect to y_pred.
//
// Window: the 11-tap Gaussian, sigma = 1.5, applied separably (scipy.ndimage.gaussian_filter with
// truncate = 3.5, mode "reflect"). Local statistics at each pixel p: means ux, uy, second moments
// uxx, uyy, uxy (population covariance), and with
//   A1 = 2 ux uy + c1, A2 = 2 (uxy - ux uy) + c2, B1 = ux^2 + uy^2 + c1, B2 = vx + vy + c2,
//   S = A1 A2 / (B1 B2)                       (the SSIM map),      CS = A2 / B2 (contrast-structure).
// The value of a plane is the mean of S (or CS) over the pixels at least R = 5 from every border:
// scikit-image's structural_similarity crops exactly that band, so the reflected borders never
// enter the value (they do enter the full map, returned on request).
//
// Gradient: d mean / d y_q = (1/Nc) [x_q F'(a) + y_q F'(b) + F'(c)] where F' is the adjoint of the
// window filter and a, b, c are the derivatives of S (or CS) with respect to uxy, uyy/2 and uy:
//   S:  a = 2 A1 / D, b = -2 S / B2, c = 2 (ux (A2 - A1) - uy (B2 - B1) S) / D,   D = B1 B2
//   CS: a = 2 / B2,   b = -2 CS / B2, c = 2 (uy CS - ux) / B2.
// a, b, c vanish in the cropped band (width R = the filter radius), so F' is a plain correlation
// with zero padding: no reflection is needed backward.
//
// MS-SSIM (Wang, Simoncelli, Bovik 2003): scale s has images 2x2-average-pooled s times (an odd
// last row/column is dropped); MS = prod_{s<M-1} relu(CS_s)^w_s * relu(S_{M-1})^w_{M-1}, and the
// gradient flows back through each pooling (its adjoint spreads a quarter to each source pixel).
//
// Work is per plane (deterministic: row sums in fixed lanes, combined pairwise in row order);
// OpenMP over planes, or over rows of one plane when there are fewer planes than threads.
#pragma once

#include <omp.h>

#include <cmath>
#include <cstdlib>
#include <cstring>

#include "fastloss/job.hpp"
#include "fastloss/reduce.hpp"

FL_NAMESPACE_BEGIN
namespace losses {
namespace ssim_detail {

inline constexpr index_t R = 5;            // filter radius: 11 taps
inline constexpr int kTaps = 2 * R + 1;
inline constexpr double kSigma = 1.5;

template <class T>
struct Window {
  T w[kTaps];
  Window() {
    double v[kTaps], s = 0.0;
    for (int k = 0; k < kTaps; ++k) {
      const double d = k - R;
      v[k] = std::exp(-0.5 * d * d / (kSigma * kSigma));
      s += v[k];
    }
    for (int k = 0; k < kTaps; ++k) w[k] = static_cast<T>(v[k] / s);
  }
};

// scipy.ndimage "reflect" (half-sample symmetric) for overshoots up to n.
FL_INLINE index_t reflect(index_t i, index_t n) { return i < 0 ? -i - 1 : (i >= n ? 2 * n - 1 - i : i); }

template <class T>
T* alloc(index_t n) {
  return static_cast<T*>(std::malloc(sizeof(T) * static_cast<std::size_t>(n > 0 ? n : 1)));
}

// Row buffers of one thread for planes of width W.
template <class T>
struct RowScratch {
  T* v[5];  // vertical window sums of x, y, xx, yy, xy: W + 2R, reflect-padded
  T* u[5];  // horizontal results: W
  T* t[3];  // backward vertical sums: W + 2R, zero-padded
  T* term;  // S or CS of one row: W
  explicit RowScratch(index_t W) {
    for (auto& p : v) p = alloc<T>(W + 2 * R);
    for (auto& p : u) p = alloc<T>(W);
    for (auto& p : t) p = alloc<T>(W + 2 * R);
    term = alloc<T>(W);
  }
  ~RowScratch() {
    for (auto p : v) std::free(p);
    for (auto p : u) std::free(p);
    for (auto p : t) std::free(p);
    std::free(term);
  }
  RowScratch(const RowScratch&) = delete;
  RowScratch& operator=(const RowScratch&) = delete;
};

// One image plane at one scale: its pixels and, when the gradient is wanted, the coefficient maps
// a, b, c over the cropped region (Hc x Wc).
template <class T>
struct Plane {
  const T* x;
  const T* y;
  index_t H, W;
  T* a = nullptr;
  T* b = nullptr;
  T* c = nullptr;
  index_t Hc() const { return H - 2 * R; }
  index_t Wc() const { return W - 2 * R; }
};

// v += wk (x, y, x^2, y^2, x y) over one image row.
template <class T>
void accumulate_moments(const T* __restrict xr, const T* __restrict yr, T wk, index_t W,
                        T* __restrict vx, T* __restrict vy, T* __restrict vxx, T* __restrict vyy,
                        T* __restrict vxy) {
  for (index_t j = 0; j < W; ++j) {
    const T a = xr[j], b = yr[j];
    const T wa = wk * a, wb = wk * b;
    vx[j] += wa;
    vy[j] += wb;
    vxx[j] = fma_(wa, a, vxx[j]);
    vyy[j] = fma_(wb, b, vyy[j]);
    vxy[j] = fma_(wa, b, vxy[j]);
  }
}

// Local statistics of row p (window rows reflected at the borders) at columns [j0, j1) into s.u.
template <class T>
void window_stats(const Plane<T>& P, const Window<T>& win, index_t p, index_t j0, index_t j1,
                  RowScratch<T>& s) {
  const index_t W = P.W;
  T* __restrict vx = s.v[0] + R;
  T* __restrict vy = s.v[1] + R;
  T* __restrict vxx = s.v[2] + R;
  T* __restrict vyy = s.v[3] + R;
  T* __restrict vxy = s.v[4] + R;
  for (index_t j = 0; j < W; ++j) vx[j] = vy[j] = vxx[j] = vyy[j] = vxy[j] = T(0);
  for (int k = 0; k < kTaps; ++k) {
    const index_t row = reflect(p - R + k, P.H);
    accumulate_moments(P.x + row * W, P.y + row * W, win.w[k], W, vx, vy, vxx, vyy, vxy);
  }
  for (int q = 0; q < 5; ++q) {  // reflect-pad, then correlate along the row
    T* __restrict v = s.v[q];
    for (index_t i = 0; i < R; ++i) {
      v[R - 1 - i] = v[R + i];
      v[R + W + i] = v[R + W - 1 - i];
    }
    T* __restrict u = s.u[q];
    for (index_t j = j0; j < j1; ++j) u[j] = T(0);
    for (int k = 0; k < kTaps; ++k) {
      const T wk = win.w[k];
      const T* __restrict vk = v + k;
      for (index_t j = j0; j < j1; ++j) u[j] = fma_(wk, vk[j], u[j]);
    }
  }
}

// S (CS when `cs`) of row p at columns [j0, j1) into s.term; with G, the coefficient maps a, b, c
// of that row (p in the cropped region, [j0, j1) the cropped columns).
template <class T, bool G>
void row_terms(const Plane<T>& P, const Window<T>& win, index_t p, index_t j0, index_t j1, T c1,
               T c2, bool cs, RowScratch<T>& s) {
  window_stats(P, win, p, j0, j1, s);
  const T *__restrict ux = s.u[0], *__restrict uy = s.u[1], *__restrict uxx = s.u[2],
          *__restrict uyy = s.u[3], *__restrict uxy = s.u[4];
  T* __restrict term = s.term;
  T *__restrict a = nullptr, *__restrict b = nullptr, *__restrict c = nullptr;
  if constexpr (G) {
    const index_t off = (p - R) * P.Wc() - R;  // cropped storage, indexed by column j
    a = P.a + off, b = P.b + off, c = P.c + off;
  }
  for (index_t j = j0; j < j1; ++j) {
    const T mx = ux[j], my = uy[j];
    const T mxy = mx * my, mxx = mx * mx, myy = my * my;
    const T A1 = T(2) * mxy + c1, A2 = T(2) * (uxy[j] - mxy) + c2;
    const T B1 = mxx + myy + c1, B2 = (uxx[j] - mxx) + (uyy[j] - myy) + c2;
    if (cs) {
      const T inv = T(1) / B2, v = A2 * inv;
      term[j] = v;
      if constexpr (G) {
        a[j] = T(2) * inv;
        b[j] = T(-2) * v * inv;
        c[j] = T(2) * (my * v - mx) * inv;
      }
    } else {
      const T invD = T(1) / (B1 * B2), v = A1 * A2 * invD;
      term[j] = v;
      if constexpr (G) {
        a[j] = T(2) * A1 * invD;
        b[j] = T(-2) * v / B2;
        c[j] = T(2) * (mx * (A2 - A1) - my * (B2 - B1) * v) * invD;
      }
    }
  }
}

// Row q of the gradient: out[j] = scale (x F'(a) + y F'(b) + F'(c)).
template <class T>
void backward_row(const Plane<T>& P, const Window<T>& win, index_t q, T scale, T* __restrict out,
                  RowScratch<T>& s) {
  const index_t W = P.W, Wc = P.Wc();
  const T* maps[3] = {P.a, P.b, P.c};
  // Window rows p = q - R + k that lie in the cropped region [R, H - R).
  const int k0 = static_cast<int>(q < 2 * R ? 2 * R - q : 0);
  const int k1 = static_cast<int>(min_<index_t>(kTaps, P.H - q));
  for (int m = 0; m < 3; ++m) {
    T* __restrict t = s.t[m];
    for (index_t j = 0; j < 2 * R; ++j) t[j] = t[W + j] = T(0);
    T* __restrict tc = t + 2 * R;  // column j of the cropped map sits at t[R + j]
    for (index_t j = 0; j < Wc; ++j) tc[j] = T(0);
    for (int k = k0; k < k1; ++k) {
      const T* __restrict src = maps[m] + (q - 2 * R + k) * Wc;
      const T wk = win.w[k];
      for (index_t j = 0; j < Wc; ++j) tc[j] = fma_(wk, src[j], tc[j]);
    }
  }
  T* __restrict ga = s.u[0];
  T* __restrict gb = s.u[1];
  T* __restrict gc = s.u[2];
  T* g[3] = {ga, gb, gc};
  for (int m = 0; m < 3; ++m) {
    T* __restrict gm = g[m];
    for (index_t j = 0; j < W; ++j) gm[j] = T(0);
    for (int k = 0; k < kTaps; ++k) {
      const T wk = win.w[k];
      const T* __restrict tk = s.t[m] + k;
      for (index_t j = 0; j < W; ++j) gm[j] = fma_(wk, tk[j], gm[j]);
    }
  }
  const T* __restrict xr = P.x + q * W;
  const T* __restrict yr = P.y + q * W;
  for (index_t j = 0; j < W; ++j) out[j] = scale * fma_(xr[j], ga[j], fma_(yr[j], gb[j], gc[j]));
}

// Sum over the cropped row of s.term, in double (fixed lane order).
template <class T>
double cropped_row_sum(const Plane<T>& P, const RowScratch<T>& s) {
  return lane_sum(s.term + R, P.Wc());
}

// Runs f(i) for i in [0, n): in parallel when `par` (inside an enclosing parallel region: a
// work-shared loop), else serially.
template <class F>
void rows_loop(index_t n, bool par, F&& f) {
  if (par) {
#pragma omp for schedule(static)
    for (index_t i = 0; i < n; ++i) f(i);
  } else {
    for (index_t i = 0; i < n; ++i) f(i);
  }
}

// Mean of S or CS over the cropped region of plane P; with G, fills P.a, P.b, P.c. `row_sums`
// holds Hc doubles. With `par`, must be called by every thread of a parallel region.
template <class T, bool G>
double plane_mean(const Plane<T>& P, const Window<T>& win, T c1, T c2, bool cs, double* row_sums,
                  RowScratch<T>& s, bool par) {
  const index_t Hc = P.Hc();
  rows_loop(Hc, par, [&](index_t i) {
    row_terms<T, G>(P, win, R + i, R, P.W - R, c1, c2, cs, s);
    row_sums[i] = cropped_row_sum(P, s);
  });
  double total = 0.0;
  if (par) {
#pragma omp barrier
#pragma omp single copyprivate(total)
    total = pairwise_sum(row_sums, Hc) / static_cast<double>(Hc * P.Wc());
  } else {
    total = pairwise_sum(row_sums, Hc) / static_cast<double>(Hc * P.Wc());
  }
  return total;
}

// 2x2 average pooling (odd last row/column dropped).
template <class T>
void pool2(const T* src, index_t H, index_t W, T* dst) {
  const index_t Hn = H / 2, Wn = W / 2;
  for (index_t i = 0; i < Hn; ++i) {
    const T* r0 = src + 2 * i * W;
    const T* r1 = r0 + W;
    T* d = dst + i * Wn;
    for (index_t j = 0; j < Wn; ++j)
      d[j] = T(0.25) * ((r0[2 * j] + r0[2 * j + 1]) + (r1[2 * j] + r1[2 * j + 1]));
  }
}

// Plain SSIM of one plane (value, gradient and map as requested).
template <class T>
double ssim_plane(const SsimJob& job, index_t i, RowScratch<T>& s, T* maps, double* row_sums,
                  bool par) {
  const Window<T> win;
  const index_t H = job.H, W = job.W, HW = H * W;
  const T c1 = static_cast<T>(job.c1), c2 = static_cast<T>(job.c2);
  Plane<T> P{static_cast<const T*>(job.x) + i * HW, static_cast<const T*>(job.y) + i * HW, H, W};
  const bool G = job.grad_out != nullptr;
  double value;
  if (G) {
    const index_t n = P.Hc() * P.Wc();
    P.a = maps, P.b = maps + n, P.c = maps + 2 * n;
    value = plane_mean<T, true>(P, win, c1, c2, false, row_sums, s, par);
    T* out = static_cast<T*>(job.grad_out) + i * HW;
    const T scale = static_cast<T>(job.grad_scale[i] / static_cast<double>(n));
    rows_loop(H, par, [&](index_t q) { backward_row(P, win, q, scale, out + q * W, s); });
  } else {
    value = plane_mean<T, false>(P, win, c1, c2, false, row_sums, s, par);
  }
  if (job.map_out) {
    T* map = static_cast<T*>(job.map_out) + i * HW;
    rows_loop(H, par, [&](index_t p) {
      row_terms<T, false>(P, win, p, 0, W, c1, c2, false, s);
      std::memcpy(map + p * W, s.term, sizeof(T) * W);
    });
  }
  return value;
}

inline index_t pyramid_size(index_t H, index_t W, int scales) {
  index_t total = 0;
  for (int k = 0; k < scales; ++k, H /= 2, W /= 2) total += H * W;
  return total;
}

// MS-SSIM of one plane (serial; the caller parallelizes over planes).
template <class T>
double ms_ssim_plane(const SsimJob& job, index_t i, RowScratch<T>& s, T* work, double* row_sums) {
  const Window<T> win;
  const int M = job.scales;
  const index_t H0 = job.H, W0 = job.W, HW = H0 * W0;
  const T c1 = static_cast<T>(job.c1), c2 = static_cast<T>(job.c2);
  const bool G = job.grad_out != nullptr;
  // work: pooled x and y of scales 1.., the maps a, b, c of every scale, the gradients of scales 1..
  Plane<T> P[16];
  double val[16];
  T* cur = work;
  index_t H = H0, W = W0;
  for (int k = 0; k < M; ++k) {
    P[k].H = H, P[k].W = W;
    if (k == 0) {
      P[k].x = static_cast<const T*>(job.x) + i * HW;
      P[k].y = static_cast<const T*>(job.y) + i * HW;
    } else {
      T* px = cur;
      T* py = cur + H * W;
      cur += 2 * H * W;
      pool2(P[k - 1].x, P[k - 1].H, P[k - 1].W, px);
      pool2(P[k - 1].y, P[k - 1].H, P[k - 1].W, py);
      P[k].x = px, P[k].y = py;
    }
    const bool last = k == M - 1;
    if (G) {
      const index_t n = P[k].Hc() * P[k].Wc();
      P[k].a = cur, P[k].b = cur + n, P[k].c = cur + 2 * n;
      cur += 3 * n;
      val[k] = plane_mean<T, true>(P[k], win, c1, c2, !last, row_sums, s, false);
    } else {
      val[k] = plane_mean<T, false>(P[k], win, c1, c2, !last, row_sums, s, false);
    }
    H /= 2, W /= 2;
  }
  double ms = 1.0;
  bool positive = true;
  for (int k = 0; k < M; ++k) {
    positive = positive && val[k] > 0.0;
    ms *= val[k] > 0.0 ? std::pow(val[k], job.scale_weights[k]) : 0.0;
  }
  if (G) {
    T* out = static_cast<T*>(job.grad_out) + i * HW;
    const T* coarse = nullptr;
    for (int k = M - 1; k >= 0; --k) {
      // d MS / d mean_k = w_k MS / mean_k (0 when a clipped factor makes MS vanish).
      const double coef = positive ? job.scale_weights[k] * ms / val[k] : 0.0;
      const index_t n = P[k].Hc() * P[k].Wc();
      const T scale = static_cast<T>((k == 0 ? job.grad_scale[i] : 1.0) * coef / static_cast<double>(n));
      const T* fine_coarse = coarse;
      // The gradient of scale k: the output for k = 0 (times grad_scale), else a work buffer.
      T* gk = k == 0 ? out : cur;
      if (k > 0) cur += P[k].H * P[k].W;
      const index_t Hn = k + 1 < M ? P[k + 1].H : 0, Wn = k + 1 < M ? P[k + 1].W : 0;
      const T up = k == 0 ? static_cast<T>(job.grad_scale[i]) : T(1);
      for (index_t q = 0; q < P[k].H; ++q) {
        backward_row(P[k], win, q, scale, gk + q * P[k].W, s);
        if (fine_coarse && q / 2 < Hn) {
          const T* cr = fine_coarse + (q / 2) * Wn;
          T* o = gk + q * P[k].W;
          for (index_t j = 0; j < 2 * Wn; ++j) o[j] += up * T(0.25) * cr[j / 2];
        }
      }
      coarse = gk;
    }
  }
  return ms;
}

}  // namespace ssim_detail

template <class T>
void ssim(const SsimJob& job) {
  using namespace ssim_detail;
  const index_t H = job.H, W = job.W, Hc = H - 2 * R, Wc = W - 2 * R;
  const bool G = job.grad_out != nullptr, ms = job.scale_weights != nullptr;
  // Per-thread working memory: the maps of one plane (or the pyramid for MS-SSIM) and row sums.
  const index_t work = ms ? (G ? 6 * pyramid_size(H, W, job.scales) : 2 * pyramid_size(H, W, job.scales))
                          : (G ? 3 * Hc * Wc : 0);
  const int threads = job.threads;
  const bool by_rows = !ms && threads > 1 && job.planes < threads && H * W >= kParallelMinWork;
  if (by_rows) {  // few large planes: the threads share each plane's rows
    T* maps = alloc<T>(work);
    double* row_sums = alloc<double>(Hc);
#pragma omp parallel num_threads(threads)
    {
      RowScratch<T> s(W);
      for (index_t i = 0; i < job.planes; ++i) {
        const double v = ssim_plane<T>(job, i, s, maps, row_sums, true);
#pragma omp single
        job.plane_value[i] = v;
      }
    }
    std::free(maps);
    std::free(row_sums);
    return;
  }
  const bool par = threads > 1 && job.planes > 1 && job.planes * H * W >= kParallelMinWork;
#pragma omp parallel num_threads(par ? threads : 1)
  {
    RowScratch<T> s(W);
    T* maps = alloc<T>(work);
    double* row_sums = alloc<double>(Hc);
#pragma omp for schedule(dynamic, 1)
    for (index_t i = 0; i < job.planes; ++i)
      job.plane_value[i] = ms ? ms_ssim_plane<T>(job, i, s, maps, row_sums)
                              : ssim_plane<T>(job, i, s, maps, row_sums, false);
    std::free(maps);
    std::free(row_sums);
  }
}

}  // namespace losses
FL_NAMESPACE_END
