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
// SSIM streams rows: the coefficient rows of the last 11 forward rows live in a ring, and each
// gradient row is written as soon as its window's forward rows are done (the data stay in cache,
// no per-plane buffers). MS-SSIM keeps every scale's maps (its coefficients need all the scales'
// values first). Filters run on explicit register-wide vectors (fastloss/simd.hpp) with every
// column's sums in registers; no fused multiply-add, so every ISA gives the same bits.
// Work is per plane (deterministic: row sums in fixed lanes, combined pairwise in row order);
// parallel_for over planes, or over bands of rows (with a halo of R forward rows) when there are
// fewer planes than threads. A row's terms do not depend on its band, so neither does any result.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "fastloss/job.hpp"
#include "fastloss/reduce.hpp"
#include "fastloss/simd.hpp"

FL_NAMESPACE_BEGIN
namespace losses {
namespace ssim_detail {

using namespace simd;

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
  return alloc_array<T>(n);
}

// Row buffers of one thread for planes of width W.
template <class T>
struct RowScratch {
  T* v[5];  // vertical window sums of x, y, xx, yy, xy: W + 2R, reflect-padded
  T* t[3];  // backward vertical sums: W + 2R, zero-padded
  T* term;     // S or CS of one row: W
  T* zero;     // a row of zeros (window rows outside the cropped maps)
  T* ring[3];  // the last kTaps cropped rows of the maps a, b, c (streaming SSIM)
  explicit RowScratch(index_t W) {
    for (auto& p : v) p = alloc<T>(W + 2 * R);
    for (auto& p : t) p = alloc<T>(W + 2 * R);
    for (auto& p : ring) p = alloc<T>(kTaps * (W - 2 * R));
    term = alloc<T>(W);
    zero = alloc<T>(W);
    for (index_t j = 0; j < W; ++j) zero[j] = T(0);
  }
  ~RowScratch() {
    for (auto p : v) std::free(p);
    for (auto p : t) std::free(p);
    for (auto p : ring) std::free(p);
    std::free(term);
    std::free(zero);
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

// sum_k w_k v[k] over the 11 taps (for U = Vec<T>: of kVecLen<T> consecutive windows).
template <class U, class T>
FL_INLINE U taps(const T* w, const T* v) {
  U acc = w[0] * ld<U>(v);
#pragma GCC unroll 16
  for (int k = 1; k < kTaps; ++k) acc += w[k] * ld<U>(v + k);
  return acc;
}

// Vertical window sums of x, y, xx, yy, xy for row p (window rows reflected at the borders) into
// s.v, reflect-padded by R on both sides for the horizontal pass.
template <class T>
void vertical_moments(const Plane<T>& P, const Window<T>& win, index_t p, RowScratch<T>& s) {
  const index_t W = P.W;
  const T* xr[kTaps];
  const T* yr[kTaps];
  for (int k = 0; k < kTaps; ++k) {
    const index_t row = reflect(p - R + k, P.H);
    xr[k] = P.x + row * W, yr[k] = P.y + row * W;
  }
  T* vx = s.v[0] + R;
  T* vy = s.v[1] + R;
  T* vxx = s.v[2] + R;
  T* vyy = s.v[3] + R;
  T* vxy = s.v[4] + R;
  const T* w = win.w;
  // Every column's five sums stay in registers over the 11 rows; products and sums unfused: the
  // same bits on every ISA.
  columns<T>(0, W, [&](auto tag, index_t j) {
    using U = typename decltype(tag)::type;
    U sx = {}, sy = {}, sxx = {}, syy = {}, sxy = {};
#pragma GCC unroll 16
    for (int k = 0; k < kTaps; ++k) {
      const U a = ld<U>(xr[k] + j), b = ld<U>(yr[k] + j);
      const U wa = w[k] * a, wb = w[k] * b;
      sx += wa, sy += wb, sxx += wa * a, syy += wb * b, sxy += wa * b;
    }
    st(vx + j, sx), st(vy + j, sy), st(vxx + j, sxx), st(vyy + j, syy), st(vxy + j, sxy);
  });
  for (int q = 0; q < 5; ++q) {
    T* v = s.v[q];
    for (index_t i = 0; i < R; ++i) {
      v[R - 1 - i] = v[R + i];
      v[R + W + i] = v[R + W - 1 - i];
    }
  }
}

// S (CS when CS) of row p at columns [j0, j1) into s.term; with G, the coefficients a, b, c of
// that row into the cropped rows ar, br, cr (p in the cropped region, [j0, j1) the cropped
// columns; column j at index j - R).
template <class T, bool G, bool CS>
void row_terms(const Plane<T>& P, const Window<T>& win, index_t p, index_t j0, index_t j1, T c1,
               T c2, RowScratch<T>& s, T* ar, T* br, T* cr) {
  vertical_moments(P, win, p, s);
  const T *__restrict vx = s.v[0], *__restrict vy = s.v[1], *__restrict vxx = s.v[2],
          *__restrict vyy = s.v[3], *__restrict vxy = s.v[4];  // column j's window starts at j
  const T* __restrict w = win.w;
  T* __restrict term = s.term;
  T *__restrict a = nullptr, *__restrict b = nullptr, *__restrict c = nullptr;
  if constexpr (G) a = ar - R, b = br - R, c = cr - R;
  columns<T>(j0, j1, [&](auto tag, index_t j) {
    using U = typename decltype(tag)::type;
    const U mx = taps<U>(w, vx + j), my = taps<U>(w, vy + j);
    const U uxx = taps<U>(w, vxx + j), uyy = taps<U>(w, vyy + j), uxy = taps<U>(w, vxy + j);
    const U mxy = mx * my, mxx = mx * mx, myy = my * my;
    const U A1 = T(2) * mxy + c1, A2 = T(2) * (uxy - mxy) + c2;
    const U B1 = mxx + myy + c1, B2 = (uxx - mxx) + (uyy - myy) + c2;
    if constexpr (CS) {
      const U inv = T(1) / B2, v = A2 * inv;
      st(term + j, v);
      if constexpr (G) {
        st(a + j, T(2) * inv);
        st(b + j, T(-2) * v * inv);
        st(c + j, T(2) * (my * v - mx) * inv);
      }
    } else {
      const U invB2 = T(1) / B2, invD = invB2 / B1, v = A1 * A2 * invD;
      st(term + j, v);
      if constexpr (G) {
        st(a + j, T(2) * A1 * invD);
        st(b + j, T(-2) * v * invB2);
        st(c + j, T(2) * (mx * (A2 - A1) - my * (B2 - B1) * v) * invD);
      }
    }
  });
}

template <class T, bool G>
void row_terms(const Plane<T>& P, const Window<T>& win, index_t p, index_t j0, index_t j1, T c1,
               T c2, bool cs, RowScratch<T>& s, T* ar = nullptr, T* br = nullptr, T* cr = nullptr) {
  if (cs)
    row_terms<T, G, true>(P, win, p, j0, j1, c1, c2, s, ar, br, cr);
  else
    row_terms<T, G, false>(P, win, p, j0, j1, c1, c2, s, ar, br, cr);
}

// Row q of the gradient: out[j] = scale (x F'(a) + y F'(b) + F'(c)); map_row(m, p) is the
// cropped row p (in [R, H - R)) of map m (0: a, 1: b, 2: c).
template <class T, class MapRow>
void backward_row(const Plane<T>& P, const Window<T>& win, index_t q, T scale, T* __restrict out,
                  RowScratch<T>& s, MapRow&& map_row) {
  const index_t W = P.W, Wc = P.Wc();
  const T* __restrict w = win.w;
  // Window rows p = q - R + k of the maps; rows outside the cropped region [R, H - R) are zero.
  const T* ra[kTaps];
  const T* rb[kTaps];
  const T* rc[kTaps];
  for (int k = 0; k < kTaps; ++k) {
    const index_t p = q - R + k;
    const bool in = p >= R && p < P.H - R;
    ra[k] = in ? map_row(0, p) : s.zero, rb[k] = in ? map_row(1, p) : s.zero;
    rc[k] = in ? map_row(2, p) : s.zero;
  }
  // Column j of the cropped maps sits at t[2R + j - R] = t[R + j]: zero margins of 2R each side.
  T* __restrict ta = s.t[0];
  T* __restrict tb = s.t[1];
  T* __restrict tc = s.t[2];
  for (index_t j = 0; j < 2 * R; ++j) ta[j] = tb[j] = tc[j] = ta[W + j] = tb[W + j] = tc[W + j] = T(0);
  columns<T>(0, Wc, [&](auto tag, index_t j) {
    using U = typename decltype(tag)::type;
    U sa = {}, sb = {}, sc = {};
#pragma GCC unroll 16
    for (int k = 0; k < kTaps; ++k) {
      sa += w[k] * ld<U>(ra[k] + j);
      sb += w[k] * ld<U>(rb[k] + j);
      sc += w[k] * ld<U>(rc[k] + j);
    }
    st(ta + 2 * R + j, sa), st(tb + 2 * R + j, sb), st(tc + 2 * R + j, sc);
  });
  const T* __restrict xr = P.x + q * W;
  const T* __restrict yr = P.y + q * W;
  columns<T>(0, W, [&](auto tag, index_t j) {
    using U = typename decltype(tag)::type;
    st(out + j, scale * (ld<U>(xr + j) * taps<U>(w, ta + j) + ld<U>(yr + j) * taps<U>(w, tb + j) +
                         taps<U>(w, tc + j)));
  });
}

// Sum over the cropped row of s.term, in double (fixed lane order).
template <class T>
double cropped_row_sum(const Plane<T>& P, const RowScratch<T>& s) {
  return lane_sum(s.term + R, P.Wc());
}

// map_row for maps stored whole in P.a, P.b, P.c.
template <class T>
auto stored_rows(const Plane<T>& P) {
  return [&P](int m, index_t p) -> const T* {
    return (m == 0 ? P.a : m == 1 ? P.b : P.c) + (p - R) * P.Wc();
  };
}

// Mean of S or CS over the cropped region of plane P; with G, fills P.a, P.b, P.c (MS-SSIM keeps
// the maps of every scale: its gradient coefficients need all the scales' values first).
// `row_sums` holds Hc doubles.
template <class T, bool G>
double plane_mean(const Plane<T>& P, const Window<T>& win, T c1, T c2, bool cs, double* row_sums,
                  RowScratch<T>& s) {
  const index_t Hc = P.Hc(), Wc = P.Wc();
  for (index_t i = 0; i < Hc; ++i) {
    if constexpr (G)
      row_terms<T, G>(P, win, R + i, R, P.W - R, c1, c2, cs, s, P.a + i * Wc, P.b + i * Wc, P.c + i * Wc);
    else
      row_terms<T, G>(P, win, R + i, R, P.W - R, c1, c2, cs, s);
    row_sums[i] = cropped_row_sum(P, s);
  }
  return pairwise_sum(row_sums, Hc) / static_cast<double>(Hc * Wc);
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

// Gradient rows [q0, q1) of plane P, streaming: each forward row's coefficients go into a ring of
// kTaps rows (s.ring), and gradient row q is written as soon as the forward rows of its window
// (q - R .. q + R) are done; the forward rows q0 - R .. q1 + R - 1 (a halo of R rows each side
// when the plane is split into bands). row_sums[p - R] receives the cropped sum of S of each
// forward row p in [q0, q1). Without G: the forward rows in [q0, q1) only.
template <class T, bool G>
void ssim_band(const Plane<T>& P, const Window<T>& win, T c1, T c2, index_t q0, index_t q1, T scale,
               T* out, double* row_sums, RowScratch<T>& s) {
  const index_t H = P.H, W = P.W, Wc = P.Wc();
  const index_t p0 = G ? std::max(R, q0 - R) : std::max(R, q0);
  const index_t p1 = G ? std::min(H - R, q1 + R) : std::min(H - R, q1);
  auto ring_row = [&](int m, index_t p) -> T* { return s.ring[m] + ((p - R) % kTaps) * Wc; };
  index_t q = q0;
  for (index_t p = p0; p < p1; ++p) {
    row_terms<T, G, false>(P, win, p, R, W - R, c1, c2, s, ring_row(0, p), ring_row(1, p), ring_row(2, p));
    if (p >= q0 && p < q1) row_sums[p - R] = cropped_row_sum(P, s);
    if constexpr (G)
      for (; q < q1 && q + R <= p; ++q) backward_row(P, win, q, scale, out + q * W, s, ring_row);
  }
  if constexpr (G)
    for (; q < q1; ++q) backward_row(P, win, q, scale, out + q * W, s, ring_row);
}

// Plain SSIM of plane i (value, gradient and map as requested) over band b of nb bands of rows:
// fills row_sums for the band's rows. The plane's value is plane_value(row_sums) once every band
// is done.
template <class T>
void ssim_band_of_plane(const SsimJob& job, index_t i, RowScratch<T>& s, double* row_sums,
                        index_t b, index_t nb) {
  const Window<T> win;
  const index_t H = job.H, W = job.W, HW = H * W;
  const T c1 = static_cast<T>(job.c1), c2 = static_cast<T>(job.c2);
  const Plane<T> P{static_cast<const T*>(job.x) + i * HW, static_cast<const T*>(job.y) + i * HW, H, W};
  const index_t n = P.Hc() * P.Wc();
  const index_t q0 = H * b / nb, q1 = H * (b + 1) / nb;  // this band's rows
  if (job.grad_out) {
    const T scale = static_cast<T>(job.grad_scale[i] / static_cast<double>(n));
    ssim_band<T, true>(P, win, c1, c2, q0, q1, scale, static_cast<T*>(job.grad_out) + i * HW, row_sums, s);
  } else {
    ssim_band<T, false>(P, win, c1, c2, q0, q1, T(0), nullptr, row_sums, s);
  }
  if (job.map_out) {
    T* map = static_cast<T*>(job.map_out) + i * HW;
    for (index_t p = q0; p < q1; ++p) {
      row_terms<T, false>(P, win, p, 0, W, c1, c2, false, s);
      std::memcpy(map + p * W, s.term, sizeof(T) * W);
    }
  }
}

inline double plane_value(const SsimJob& job, double* row_sums) {
  const index_t Hc = job.H - 2 * R, Wc = job.W - 2 * R;
  return pairwise_sum(row_sums, Hc) / static_cast<double>(Hc * Wc);
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
      val[k] = plane_mean<T, true>(P[k], win, c1, c2, !last, row_sums, s);
    } else {
      val[k] = plane_mean<T, false>(P[k], win, c1, c2, !last, row_sums, s);
    }
    H /= 2, W /= 2;
  }
  double ms = 1.0;
  bool positive = true;
  for (int k = 0; k < M; ++k) {
    positive = positive && val[k] > 0.0;
    // A clipped (non-positive) factor zeroes MS; a NaN one (a NaN pixel) makes it NaN.
    ms *= val[k] > 0.0 ? std::pow(val[k], job.scale_weights[k]) : val[k] == val[k] ? 0.0 : val[k];
  }
  if (G) {
    T* out = static_cast<T*>(job.grad_out) + i * HW;
    const T* coarse = nullptr;
    for (int k = M - 1; k >= 0; --k) {
      // d MS / d mean_k = w_k MS / mean_k (0 when a clipped factor makes MS vanish).
      const double coef = positive ? job.scale_weights[k] * ms / val[k] : ms == ms ? 0.0 : ms;
      const index_t n = P[k].Hc() * P[k].Wc();
      const T scale = static_cast<T>((k == 0 ? job.grad_scale[i] : 1.0) * coef / static_cast<double>(n));
      const T* fine_coarse = coarse;
      // The gradient of scale k: the output for k = 0 (times grad_scale), else a work buffer.
      T* gk = k == 0 ? out : cur;
      if (k > 0) cur += P[k].H * P[k].W;
      const index_t Hn = k + 1 < M ? P[k + 1].H : 0, Wn = k + 1 < M ? P[k + 1].W : 0;
      const T up = k == 0 ? static_cast<T>(job.grad_scale[i]) : T(1);
      for (index_t q = 0; q < P[k].H; ++q) {
        backward_row(P[k], win, q, scale, gk + q * P[k].W, s, stored_rows(P[k]));
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
  const index_t H = job.H, W = job.W, Hc = H - 2 * R;
  const bool G = job.grad_out != nullptr, ms = job.scale_weights != nullptr;
  // Per-thread working memory for MS-SSIM: the pyramid and its maps (SSIM streams rows instead).
  const index_t work = !ms ? 0 : (G ? 6 : 2) * pyramid_size(H, W, job.scales);
  const index_t bands = job.threads < kMaxThreads ? job.threads : kMaxThreads;
  if (!ms && job.planes < bands && H * W >= kParallelMinWork) {
    // Few large planes: bands of every plane's rows (at most one per thread; the caller takes
    // the bands of helpers that have not started).
    Buffer<double> row_sums_mem(Hc);
    double* row_sums = row_sums_mem.p;
    for (index_t i = 0; i < job.planes; ++i) {
      parallel_chunks(bands, H * W / bands, job.threads, [&](index_t b) {
        RowScratch<T> s(W);
        ssim_band_of_plane<T>(job, i, s, row_sums, b, bands);
      });
      job.plane_value[i] = plane_value(job, row_sums);
    }
    return;
  }
  struct PlaneScratch {  // one thread's buffers, kept over its planes
    RowScratch<T> s;
    Buffer<T> work;
    Buffer<double> row_sums;
    PlaneScratch(index_t W, index_t nwork, index_t Hc) : s(W), work(nwork), row_sums(Hc) {}
  };
  auto make = [&] { return new PlaneScratch(W, work, Hc); };
  auto run = [&](index_t i0, index_t i1, PlaneScratch& b) {
    for (index_t i = i0; i < i1; ++i) {
      if (ms) {
        job.plane_value[i] = ms_ssim_plane<T>(job, i, b.s, b.work.p, b.row_sums.p);
      } else {
        ssim_band_of_plane<T>(job, i, b.s, b.row_sums.p, 0, 1);
        job.plane_value[i] = plane_value(job, b.row_sums.p);
      }
    }
  };
  parallel_for_scratch(job.planes, H * W, job.threads, make, run);
}

}  // namespace losses
FL_NAMESPACE_END
