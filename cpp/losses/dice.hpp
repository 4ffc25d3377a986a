// The soft Dice family (spec 5.5): Dice, generalized Dice, Tversky, value and gradient in one call.
//   pass 1: p = activation(z) per pixel (identity, sigmoid, or softmax over the class axis: one
//     exp per logit, max-subtracted, times the reciprocal of the sum), and per (n, c) the sums of
//     p g, p, p^2, g, g^2 (g: the target, or the one-hot label);
//   the loss of each image (or of the batch) and its derivatives a, b, c with respect to those
//     sums give d loss / d p = a g + b + c p per (n, c) (group_loss);
//   pass 2: that chained through the activation, sigmoid p (1 - p) d, softmax p_c (d_c - sum_k p_k d_k).
// Softmax over 2, 3, 4 or 8 classes runs each pass as one loop over the block with every class in
// registers (softmax_sums, softmax_grad); other counts go class row by class row.
// Pass 1 leaves p in the gradient buffer and pass 2 turns it into the gradient in place. Images
// go in groups of about kGroupBytes of logits per thread, both passes over a group before the
// next, so that pass 2 re-reads the group from the cache (with batch=True the derivatives need
// every image: one group).
// Work unit: one image, one block of block_pixels(C) pixels (all classes). Channels-last softmax
// over 2, 4 or 8 classes runs in place (Interleaved); other channels-last arrays are transposed
// block by block into channels-first scratch, p of such a block kept in its own slice of the
// gradient buffer as C rows of `len`. Block sums in 16 fixed lanes (partials of 16
// terms in T, then double), combined pairwise, blocks combined pairwise in block order: the sums, losses and gradient are bitwise independent of the thread
// count and of the grouping.
#pragma once

#include <cmath>
#include <cstdlib>
#include <cstring>

#include "fastloss/job.hpp"
#include "fastloss/reduce.hpp"
#include "fastloss/rowwise.hpp"
#include "fastloss/simd.hpp"
#include "fastloss/vmath.hpp"

FL_NAMESPACE_BEGIN
namespace losses {
namespace dice_detail {

using namespace simd;

enum Sum { kPG, kP, kP2, kG, kG2 };  // the columns of the per-(n, c) sums
inline constexpr index_t kGroupBytes = index_t(1) << 20;

// The loss of one group from its sums s (C x kDiceSums); with coef (C x 3), scale times its
// derivatives with respect to the sums of p g, p and p^2, the last one times 2 (d p^2 / d p).
inline double group_loss(const DiceJob& job, const double* s, double scale, double* coef) {
  const index_t C = job.C;
  const double nr = job.smooth_nr, dr = job.smooth_dr;
  auto put = [&](index_t c, double dI, double dP, double dP2) {
    if (coef) coef[3 * c] = scale * dI, coef[3 * c + 1] = scale * dP, coef[3 * c + 2] = 2.0 * (scale * dP2);
  };
  if (job.kind == DiceKind::generalized) {
    // w_c = 1 / G_c^2; a class absent from the group (G_c = 0) takes the largest weight of the
    // present ones (MONAI); a NaN weight makes every weight NaN.
    double wmax = 0.0;
    for (index_t c = 0; c < C; ++c) {
      const double G = s[c * kDiceSums + kG], w = 1.0 / (G * G);
      if (!std::isinf(w)) wmax = (w != w || wmax != wmax) ? w + wmax : (w > wmax ? w : wmax);
    }
    double wI = 0.0, wPG = 0.0;
    auto weight = [&](index_t c) {
      const double G = s[c * kDiceSums + kG], w0 = 1.0 / (G * G);
      const bool absent = std::isinf(w0);
      return (absent ? 0.0 : w0) + (absent ? 1.0 : 0.0) * wmax;
    };
    for (index_t c = 0; c < C; ++c) {
      const double wc = weight(c);
      wI += wc * s[c * kDiceSums + kPG];
      wPG += wc * (s[c * kDiceSums + kP] + s[c * kDiceSums + kG]);
    }
    const double num = 2.0 * wI + nr, den = wPG + dr;
    for (index_t c = 0; c < C; ++c) {
      const double wc = weight(c);
      put(c, -2.0 * wc / den, wc * (num / (den * den)), 0.0);
    }
    return 1.0 - num / den;
  }
  // Dice and Tversky: per-class losses, their class-weighted mean
  const double* cw = job.class_weight;
  double total = 0.0, loss = 0.0;
  for (index_t c = 0; c < C; ++c) total += cw ? cw[c] : 1.0;
  for (index_t c = 0; c < C; ++c) {
    const double* sc = s + c * kDiceSums;
    const double w = (cw ? cw[c] : 1.0) / total;
    double f, dI, dP, dP2 = 0.0;
    if (job.kind == DiceKind::tversky) {
      const double a = job.alpha, b = job.beta, tp = sc[kPG];
      const double num = tp + nr, den = tp * (1.0 - a - b) + a * sc[kP] + b * sc[kG] + dr;
      f = 1.0 - num / den;
      dI = -(den - num * (1.0 - a - b)) / (den * den);
      dP = a * num / (den * den);
    } else {
      const double num = 2.0 * sc[kPG] + nr;
      const double den = (job.squared ? sc[kP2] + sc[kG2] : sc[kP] + sc[kG]) + dr;
      f = 1.0 - num / den;
      dI = -2.0 / den;
      dP = num / (den * den);
      if (job.squared) dP2 = dP, dP = 0.0;
    }
    loss += f * (cw ? cw[c] : 1.0);
    put(c, dI * w, dP * w, dP2 * w);
  }
  return loss / total;
}

// C rows of a block: row c at ptr + c * stride.
template <class T>
struct Rows {
  T* ptr;
  index_t stride;
  T* operator()(index_t c) const { return ptr + c * stride; }
};

// Pixels per block: about 16 K values (64 KiB of float32) per array, at least 256 pixels; fixed by
// C alone, so the sums do not depend on the thread count. (4096 pixels of 4 classes: 0.95 ns per
// logit against 1.18 with 1024, 16 x 4 x 256 x 256 float32 value and gradient, one thread.)
inline index_t block_pixels(index_t C) {
  const index_t b = (index_t(16384) / C) & ~index_t(15);
  return b < 256 ? 256 : b;
}

// Channels-last <-> channels-first rows (stride B) for `len` pixels; K: the class count when
// known at compile time (the loops then vectorize with shuffles), 0 otherwise.
template <int K, class T>
void to_rows_k(const T* __restrict src, index_t C, index_t len, T* __restrict dst, index_t B) {
  const index_t k = K ? K : C;
  for (index_t i = 0; i < len; ++i)
    for (index_t c = 0; c < k; ++c) dst[c * B + i] = src[i * k + c];
}
template <int K, class T>
void from_rows_k(const T* __restrict src, index_t C, index_t len, T* __restrict dst, index_t B) {
  const index_t k = K ? K : C;
  for (index_t i = 0; i < len; ++i)
    for (index_t c = 0; c < k; ++c) dst[i * k + c] = src[c * B + i];
}
template <class F>
void with_classes(index_t C, F&& f) {
  switch (C) {
    case 2: return f(std::integral_constant<int, 2>{});
    case 3: return f(std::integral_constant<int, 3>{});
    case 4: return f(std::integral_constant<int, 4>{});
    case 8: return f(std::integral_constant<int, 8>{});
    default: return f(std::integral_constant<int, 0>{});
  }
}
template <class T>
void to_rows(const T* src, index_t C, index_t len, T* dst, index_t B) {
  with_classes(C, [&](auto k) { to_rows_k<decltype(k)::value>(src, C, len, dst, B); });
}
template <class T>
void from_rows(const T* src, index_t C, index_t len, T* dst, index_t B) {
  with_classes(C, [&](auto k) { from_rows_k<decltype(k)::value>(src, C, len, dst, B); });
}

// One step of the per-lane sums of p g, p, g (and p^2, g^2) into acc[q][h]: every path adds them
// with these operations in this order, which keeps their bits equal.
template <bool Sq, class A, class V>
FL_INLINE void add_sums(A& acc, int h, V pv, V gv) {
  acc[kPG][h] += pv * gv;
  acc[kP][h] += pv;
  acc[kG][h] += gv;
  if constexpr (Sq) {
    acc[kP2][h] += pv * pv;
    acc[kG2][h] += gv * gv;
  }
}

// Adds class c's block sums (p g, p, p^2, g, g^2) to out. Pixel i goes to lane i % 16; each lane
// sums kSub / 16 pixels in T, then adds that to its double lane; the 16 double lanes are combined
// pairwise. (Partial sums in float32 keep the vectors at full width: 16 terms each, below
// 2e-6 relative error before the double lanes take over.) With r (softmax), p = p * r is formed
// first and stored back (without r, p is only read: it may be the caller's input). g: the target
// row, or (labels) the labels as T, g = (label == c).
inline constexpr index_t kSub = 256;
template <class T, bool L, bool Sq>
void class_sums(T* __restrict p, const T* __restrict r, const T* __restrict g, T cls, index_t len, double* out) {
  using V = Vec<T>;
  constexpr int W = static_cast<int>(kVecLen<T>), H = 16 / W;  // vectors per 16 lanes
  static_assert(kLanes == 16 && 16 % W == 0, "16 lanes");
  double lanes[kDiceSums][16] = {};
  V acc[kDiceSums][H];
  auto step = [&](T* pp, const T* rr, const T* gg) {
    for (int h = 0; h < H; ++h) {
      V pv = ld<V>(pp + W * h);
      if (rr) {
        pv = pv * ld<V>(rr + W * h);
        st(pp + W * h, pv);
      }
      V gv = ld<V>(gg + W * h);
      if constexpr (L) gv = indicator(gv, cls);
      add_sums<Sq>(acc, h, pv, gv);
    }
  };
  auto flush = [&] {
    for (int q = 0; q < kDiceSums; ++q) {
      T a[16];
      std::memcpy(a, acc[q], sizeof a);
      for (int l = 0; l < 16; ++l) lanes[q][l] += static_cast<double>(a[l]);
    }
  };
  auto clear = [&] {
    for (int q = 0; q < kDiceSums; ++q)
      for (int h = 0; h < H; ++h) acc[q][h] = V{};
  };
  index_t i = 0;
  while (i + 16 <= len) {
    clear();
    const index_t end = min_(len, i + kSub) & ~index_t(15);
    for (; i < end; i += 16) step(p + i, r ? r + i : nullptr, g + i);
    flush();
  }
  if (i < len) {  // the tail, zero-padded (adding +0 leaves a lane as it is)
    alignas(64) T pt[16] = {}, rt[16] = {}, gt[16] = {};
    for (index_t j = i; j < len; ++j) pt[j - i] = p[j], rt[j - i] = r ? r[j] : T(0), gt[j - i] = g[j];
    if constexpr (L)
      for (index_t j = len - i; j < 16; ++j) gt[j] = T(-1);  // matches no class
    clear();
    step(pt, r ? rt : nullptr, gt);
    flush();
    if (r)
      for (index_t j = i; j < len; ++j) p[j] = pt[j - i];
  }
  for (int q = 0; q < kDiceSums; ++q) out[q] = pairwise_sum(lanes[q], 16);
}

// Every path sums a pixel's classes (the softmax's exponentials, the Jacobian's dot product) in
// pairwise_sum's order, ((x0 + x1) + (x2 + x3)) + ...: the order in which Interleaved's swaps add
// them, so that all paths agree bit for bit. The fused paths take pairwise_sum of K registers;
// rows_sum: C rows of len pixels (the general path's first level of sums, which it adds where it
// computes the terms), in place, level by level, returning the row holding the sums.
template <class T>
const T* rows_sum(T* x, index_t C, index_t len, index_t B) {
  for (index_t n = C; n > 1; n = (n + 1) / 2) {
    for (index_t j = 0; j < n / 2; ++j) {  // row j from rows 2j and 2j + 1 (j < 2j for j > 0)
      const T* a = x + 2 * j * B;
      const T* b = a + B;
      T* o = x + j * B;
      for (index_t i = 0; i < len; ++i) o[i] = a[i] + b[i];
    }
    if (n & 1) std::memcpy(x + (n / 2) * B, x + (n - 1) * B, static_cast<std::size_t>(len) * sizeof(T));
  }
  return x;
}

// Softmax over K classes known at compile time (the common counts, see with_classes): pass 1 of
// a block in one loop, 16 pixels (the sums' lanes) per step in registers of W pixels, every
// class's logits, exponentials and p in registers, p stored once, the sums added as class_sums
// adds them (the same operations in the same order, so the same bits as the general path, which
// also adds a pixel's exponentials in pairwise_sum's order). The
// general path takes the max, the exponentials' sum and its reciprocal through scratch rows and
// stores p twice: 6.4 against 3.6 ms for both passes, 16 x 4 x 256 x 256 float32, one thread
// (float64 11.5 against 7.4).
template <class T, int K, bool L, bool Sq>
void softmax_sums(Rows<const T> z, Rows<const T> g, Rows<T> p, index_t len, double* out) {
  using U = Vec<T>;  // one register: W pixels, lanes h W.. of the 16 (h < H)
  constexpr int W = static_cast<int>(kVecLen<T>), H = 16 / W;
  static_assert(kLanes == 16 && 16 % W == 0, "16 lanes");
  double lanes[K][kDiceSums][16] = {};
  U acc[K][kDiceSums][H];
  // Each row is asked for 1 KiB ahead: 3K streams (logits, targets, p) are more than the hardware
  // prefetchers keep up with (2.8 against 3.4 ms one thread, 2.5 against 2.7 two, float32), into
  // L2 (prefetcht1), not L1, which the 3K streams' current lines need (16 x 4 x 256 x 256,
  // alternated processes: 3.31 -> 2.70 ms one thread, 2.09 -> 1.87 two; 4 KiB ahead into L2 as
  // good, 2 KiB into L1 no better).
  constexpr index_t kAhead = 1024 / sizeof(T);
  auto softmax = [](const U* zc, U* pc) {
    U m = zc[0], e[K];
    for (int c = 1; c < K; ++c) m = zc[c] > m ? zc[c] : m;
    for (int c = 0; c < K; ++c) e[c] = pc[c] = lanes_exp(zc[c] - m);
    const U r = T(1) / pairwise_sum(e, K);
    for (int c = 0; c < K; ++c) pc[c] = pc[c] * r;
  };
  auto add = [&](int h, const U* pc, const U* gc) {
    for (int c = 0; c < K; ++c) {
      const U gv = L ? indicator(gc[c], static_cast<T>(c)) : gc[c];
      add_sums<Sq>(acc[c], h, pc[c], gv);
    }
  };
  auto clear = [&] {
    for (int c = 0; c < K; ++c)
      for (int q = 0; q < kDiceSums; ++q)
        for (int h = 0; h < H; ++h) acc[c][q][h] = U{};
  };
  auto flush = [&] {
    for (int c = 0; c < K; ++c)
      for (int q = 0; q < kDiceSums; ++q)
        for (int h = 0; h < H; ++h)
          for (int l = 0; l < W; ++l)
            lanes[c][q][h * W + l] += static_cast<double>(acc[c][q][h][l]);
  };
  index_t i = 0;
  while (i + 16 <= len) {
    clear();
    const index_t end = min_(len, i + kSub) & ~index_t(15);
    for (; i < end; i += 16) {
      if (i + kAhead < len)
        for (int c = 0; c < K; ++c) {
          __builtin_prefetch(z(c) + i + kAhead, 0, 2);
          __builtin_prefetch(g(c) + i + kAhead, 0, 2);
          __builtin_prefetch(p(c) + i + kAhead, 1, 2);
        }
      for (int h = 0; h < H; ++h) {
        const index_t j = i + h * W;
        U zc[K], pc[K], gc[K];
        for (int c = 0; c < K; ++c) zc[c] = ld<U>(z(c) + j);
        softmax(zc, pc);
        for (int c = 0; c < K; ++c) st(p(c) + j, pc[c]), gc[c] = ld<U>(g(c) + j);
        add(h, pc, gc);
      }
    }
    flush();
  }
  if (i < len) {  // the tail: logits padded with 0, p there set to 0 and targets to 0 (labels -1)
    alignas(64) T zt[K][16], pt[K][16], gt[K][16];
    for (int c = 0; c < K; ++c)
      for (index_t j = 0; j < 16; ++j) {
        zt[c][j] = i + j < len ? z(c)[i + j] : T(0);
        gt[c][j] = i + j < len ? g(c)[i + j] : (L ? T(-1) : T(0));
      }
    for (int h = 0; h < H; ++h) {
      U zc[K], pc[K];
      for (int c = 0; c < K; ++c) zc[c] = ld<U>(zt[c] + h * W);
      softmax(zc, pc);
      for (int c = 0; c < K; ++c) st(pt[c] + h * W, pc[c]);
    }
    for (int c = 0; c < K; ++c)
      for (index_t j = 0; j < 16; ++j) {
        if (i + j < len) p(c)[i + j] = pt[c][j];
        else pt[c][j] = T(0);
      }
    clear();
    for (int h = 0; h < H; ++h) {
      U pc[K], gc[K];
      for (int c = 0; c < K; ++c) pc[c] = ld<U>(pt[c] + h * W), gc[c] = ld<U>(gt[c] + h * W);
      add(h, pc, gc);
    }
    flush();
  }
  for (int c = 0; c < K; ++c)
    for (int q = 0; q < kDiceSums; ++q) out[c * kDiceSums + q] = pairwise_sum(lanes[c][q], 16);
}

// Pass 2 of the same blocks: per column, d_c = a_c g_c + b_c + q_c p_c, the Jacobian's dot
// product and the gradient p_c (d_c - dot) in registers (the general loop keeps the dot product's
// pair sums in scratch rows); the same operations as there, the dot product in pairwise_sum's order
// in both. out may be p itself.
template <class T, int K, bool L>
void softmax_grad(Rows<const T> g, Rows<const T> p, Rows<T> out, index_t len, const double* coef) {
  T a[K], b[K], q[K];
  for (int c = 0; c < K; ++c) {
    a[c] = static_cast<T>(coef[3 * c]), b[c] = static_cast<T>(coef[3 * c + 1]);
    q[c] = static_cast<T>(coef[3 * c + 2]);
  }
  columns<T>(0, len, [&](auto tag, index_t i) {
    using U = typename decltype(tag)::type;
    U pv[K], d[K], pd[K];
    for (int c = 0; c < K; ++c) {
      pv[c] = ld<U>(p(c) + i);
      const U t = ld<U>(g(c) + i), gv = L ? indicator(t, static_cast<T>(c)) : t;
      d[c] = a[c] * gv + b[c] + q[c] * pv[c];
      pd[c] = pv[c] * d[c];
    }
    const U dot = pairwise_sum(pd, K);
    for (int c = 0; c < K; ++c) st(out(c) + i, pv[c] * (d[c] - dot));
  });
}

// Runs f(integral_constant K) where the fused softmax path applies: a class count it is compiled
// for, and 16 lanes of T in at most two registers. With four (float64 on AVX2) its sums spill:
// 8.9 against 8.8 ms with 4 classes, 17.9 against 15.8 with 8 (8 x C x 256 x 256, one thread).
// Returns whether it ran.
template <class T, class F>
bool with_softmax_classes(index_t C, F&& f) {
  if constexpr (16 * sizeof(T) > 2 * kRegBytes) {
    return false;
  } else {
    bool done = false;
    with_classes(C, [&](auto k) {
      constexpr int K = decltype(k)::value;
      if constexpr (K > 0) f(k), done = true;
    });
    return done;
  }
}

// Channels-last softmax without transposition, for K classes that divide a register's W lanes: a
// register holds W / K pixels with their classes side by side (lane t: pixel t / K of the
// register, class t % K). Each lane takes the operations the fused channels-first path above
// gives its pixel and class, and its sums go to the same 16 lanes: the same bits as channels-first,
// without the two transpositions of pass 1 and the two of pass 2. The max, the exponentials' sum
// and the dot product over the pixel's K lanes take log2 K swaps of lanes t and t ^ m (in-lane
// shuffles for 2 and 4 classes), every lane adding its classes in pairwise_sum's order; the max's
// order changes no exponential (only which of the tied +-0 it picks, or NaN where the sum is NaN
// anyway). (16 x 4 x 256 x 256 float32, value and gradient, one thread: 5.0-5.1 against 7.7 ms
// through the transpositions, channels-first 3.5. Against a broadcast of each class to its
// pixel's lanes, K shuffles each, alternated processes: one thread 4.8-5.7 -> 4.1-4.8 ms, two
// 2.9-3.4 -> 2.7-2.8 ms; from cache, 1 x 4 x 128 x 128, 3.4 -> 3.1 ns per pixel for the value,
// 5.1 -> 4.65 with the gradient.) From cache, with the gradient, it still takes 4.0 to 4.9 ns per
// pixel depending on where the gradient buffer starts in its page relative to the logits (the
// same offset, as large NumPy arrays get, is the slowest; not from the distance between the two
// loops of pass 1, which changed nothing) against 3.0 channels-first.
template <class T, int K>
struct Interleaved {
  using U = Vec<T>;
  using M = decltype(U{} == U{});
  static constexpr int W = static_cast<int>(kVecLen<T>);
  static constexpr int P = W / K;           // pixels per register
  static constexpr int R = 16 / P;          // registers per 16 pixels (the sums' lanes)
  static_assert(W % K == 0 && 16 % P == 0, "K divides the lanes");
  // Every lane takes lane t ^ Mk (Mk < K: a lane of its own pixel). A template, so that the
  // shuffle's mask is a constant (a mask built at run time made it a general permutation: 3x
  // slower).
  template <int Mk>
  static FL_INLINE U swapped(U v) {
    M m;
    for (int t = 0; t < W; ++t) m[t] = t ^ Mk;
    return __builtin_shuffle(v, m);
  }
  // In every lane, the max / the sum (in pairwise_sum's order) of its pixel's K lanes.
  template <int Mk = 1>
  static FL_INLINE U pixel_max(U v) {
    if constexpr (Mk < K) {
      const U o = swapped<Mk>(v);
      return pixel_max<2 * Mk>(o > v ? o : v);
    } else {
      return v;
    }
  }
  template <int Mk = 1>
  static FL_INLINE U pixel_sum(U v) {
    if constexpr (Mk < K)
      return pixel_sum<2 * Mk>(v + swapped<Mk>(v));
    else
      return v;
  }
  static FL_INLINE U classes() {
    U v;
    for (int t = 0; t < W; ++t) v[t] = T(t % K);
    return v;
  }
  // Per lane, coef[3 c + j] of its class c, as T.
  static FL_INLINE U per_class(const double* coef, int j) {
    U v;
    for (int t = 0; t < W; ++t) v[t] = static_cast<T>(coef[3 * (t % K) + j]);
    return v;
  }
  // The labels of 16 pixels (as T, in lt) spread over register r's lanes.
  static FL_INLINE U labels(const T* lt, int r) {
    M m;
    for (int t = 0; t < W; ++t) m[t] = r * P + t / K;
    if constexpr (W >= 16) {
      return __builtin_shuffle(ld<U>(lt), m);
    } else {
      static_assert(2 * W == 16, "16 labels in two registers");
      return __builtin_shuffle(ld<U>(lt), ld<U>(lt + W), m);
    }
  }
  // softmax = normalized(exps(z)), in two steps so that pass 1 can run them as two loops
  static FL_INLINE U exps(U z) { return lanes_exp(z - pixel_max(z)); }  // max-subtracted
  static FL_INLINE U normalized(U e) { return e * (T(1) / pixel_sum(e)); }  // over the pixel's sum
  static FL_INLINE U softmax(U z) { return normalized(exps(z)); }
  // The targets of register r of the 16 pixels at g (channels-last), or (L) their labels as T.
  template <bool L>
  static FL_INLINE U targets(const T* g, const T* lt, int r) {
    if constexpr (L) {
      const U zero = {};
      return labels(lt, r) == classes() ? zero + T(1) : zero;
    } else {
      return ld<U>(g + r * W);
    }
  }
};

// The labels of pixels [i, i + 16) as T, those at or past len as -1 (no class).
template <class T>
FL_INLINE void labels_as(const std::int64_t* lab, index_t i, index_t len, T* lt) {
  for (index_t k = 0; k < 16; ++k) lt[k] = i + k < len ? static_cast<T>(lab[i + k]) : T(-1);
}

// Pass 1 of a channels-last block (len pixels at z, targets at g or labels at lab): p into p (the
// gradient buffer's pixels of the block) unless null, the sums as softmax_sums adds them.
template <class T, int K, bool L, bool Sq>
void interleaved_sums(const T* z, const T* g, const std::int64_t* lab, T* p, index_t len, double* out) {
  using I = Interleaved<T, K>;
  using U = typename I::U;
  constexpr int W = I::W, R = I::R;
  double lanes[K][kDiceSums][16] = {};
  U acc[kDiceSums][R];
  auto clear = [&] {
    for (int q = 0; q < kDiceSums; ++q)
      for (int r = 0; r < R; ++r) acc[q][r] = U{};
  };
  auto flush = [&] {
    for (int q = 0; q < kDiceSums; ++q)
      for (int r = 0; r < R; ++r)
        for (int t = 0; t < W; ++t) lanes[t % K][q][r * I::P + t / K] += static_cast<double>(acc[q][r][t]);
  };
  alignas(64) T lt[16];
  // The exponentials of up to kSub pixels, between the two loops below: one loop per step keeps
  // each register's dependency chain short (max, exp / sum, division, sums), so that the
  // out-of-order window overlaps more registers than through the softmax in one (the same bits;
  // 16 x 4 x 256 x 256 float32, one thread: the value 3.65-3.68 -> 3.36-3.63 ms, with the
  // gradient 4.8-5.2 -> 4.7; two threads within noise).
  alignas(64) T eb[kSub * K];
  index_t i = 0;
  while (i + 16 <= len) {
    clear();
    const index_t i0 = i, end = min_(len, i + kSub) & ~index_t(15);
    for (index_t j = i0 * K; j < end * K; j += W) st(eb + (j - i0 * K), I::exps(ld<U>(z + j)));
    for (; i < end; i += 16) {
      if constexpr (L) labels_as(lab, i, len, lt);
      for (int r = 0; r < R; ++r) {
        const U pv = I::normalized(ld<U>(eb + (i - i0) * K + r * W));
        if (p) st(p + i * K + r * W, pv);
        add_sums<Sq>(acc, r, pv, I::template targets<L>(L ? nullptr : g + i * K, lt, r));
      }
    }
    flush();
  }
  if (i < len) {  // the tail: logits padded with 0, p there set to 0, targets to 0 (labels -1)
    const index_t n = (len - i) * K;
    alignas(64) T zt[16 * K] = {}, gt[16 * K] = {}, pt[16 * K];
    for (index_t j = 0; j < n; ++j) zt[j] = z[i * K + j], gt[j] = L ? T(0) : g[i * K + j];
    if constexpr (L) labels_as(lab, i, len, lt);
    clear();
    for (int r = 0; r < R; ++r) {
      U pv = I::softmax(ld<U>(zt + r * W));
      st(pt + r * W, pv);
      for (int t = 0; t < W; ++t)
        if (r * W + t >= n) pt[r * W + t] = T(0);
      pv = ld<U>(pt + r * W);
      add_sums<Sq>(acc, r, pv, I::template targets<L>(gt, lt, r));
    }
    flush();
    if (p)
      for (index_t j = 0; j < n; ++j) p[i * K + j] = pt[j];
  }
  for (int c = 0; c < K; ++c)
    for (int q = 0; q < kDiceSums; ++q) out[c * kDiceSums + q] = pairwise_sum(lanes[c][q], 16);
}

// Pass 2 of the same block: the gradient over p in place (softmax_grad's operations per lane).
template <class T, int K, bool L>
void interleaved_grad(const T* g, const std::int64_t* lab, T* p, index_t len, const double* coef) {
  using I = Interleaved<T, K>;
  using U = typename I::U;
  constexpr int W = I::W, R = I::R;
  const U a = I::per_class(coef, 0), b = I::per_class(coef, 1), q = I::per_class(coef, 2);
  alignas(64) T lt[16];
  auto grad = [&](T* pp, U gv) {
    const U pv = ld<U>(pp), d = a * gv + b + q * pv;
    st(pp, pv * (d - I::pixel_sum(pv * d)));
  };
  index_t i = 0;
  for (; i + 16 <= len; i += 16) {
    if constexpr (L) labels_as(lab, i, len, lt);
    for (int r = 0; r < R; ++r) grad(p + i * K + r * W, I::template targets<L>(L ? nullptr : g + i * K, lt, r));
  }
  if (i < len) {  // the tail through a padded copy (padded pixels: p = 0, their gradient dropped)
    const index_t n = (len - i) * K;
    alignas(64) T pt[16 * K] = {}, gt[16 * K] = {};
    for (index_t j = 0; j < n; ++j) pt[j] = p[i * K + j], gt[j] = L ? T(0) : g[i * K + j];
    if constexpr (L) labels_as(lab, i, len, lt);
    for (int r = 0; r < R; ++r) grad(pt + r * W, I::template targets<L>(gt, lt, r));
    for (index_t j = 0; j < n; ++j) p[i * K + j] = pt[j];
  }
}

// Runs f(integral_constant K) where the interleaved path applies (a class count the fused path is
// compiled for that divides the register's lanes). Returns whether it ran.
template <class T, class F>
bool with_interleaved_classes(index_t C, F&& f) {
  return with_softmax_classes<T>(C, [&](auto k) {
    constexpr int K = decltype(k)::value;
    if constexpr (kVecLen<T> % K == 0) f(k);
  }) && kVecLen<T> % C == 0;
}

// Per-thread buffers: channels-first copies of channels-last blocks, activations not kept in the
// gradient buffer, the labels as T, the softmax max / reciprocal; the general path's class sums
// take the rows of out (pass 1) and of z (pass 2, the Jacobian's dot product), unused there.
template <class T>
struct Scratch {
  T* mem;
  T *z, *g, *p, *out, *tmp, *labels;
  Scratch(index_t C, index_t B) : mem(alloc_array<T>(4 * C * B + 2 * B)) {
    z = mem, g = z + C * B, p = g + C * B, out = p + C * B;
    tmp = out + C * B, labels = tmp + B;
  }
  ~Scratch() { std::free(mem); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
};

template <class T, bool L>
struct Kernel {
  const DiceJob& job;
  index_t C, S, B;  // B: pixels per block, the row stride of the scratch rows
  bool keep;  // pass 1 leaves p in the gradient buffer for pass 2 (with an activation)

  // Block i0 (len pixels) of image n.
  Rows<const T> z_rows(index_t n, index_t i0, index_t len, Scratch<T>& s) const {
    const T* z = static_cast<const T*>(job.z);
    if (!job.z_last) return {z + n * C * S + i0, S};
    to_rows(z + (n * S + i0) * C, C, len, s.z, B);
    return {s.z, B};
  }
  // The targets' rows; with labels, row 0 holds the labels as T (exact below 2^24 classes).
  Rows<const T> g_rows(index_t n, index_t i0, index_t len, Scratch<T>& s) const {
    if constexpr (L) {
      const std::int64_t* __restrict lab = job.labels + n * S + i0;
      T* __restrict lt = s.labels;
      for (index_t i = 0; i < len; ++i) lt[i] = static_cast<T>(lab[i]);
      return {s.labels, 0};
    }
    const T* t = static_cast<const T*>(job.targets);
    if (!job.targets_last) return {t + n * C * S + i0, S};
    to_rows(t + (n * S + i0) * C, C, len, s.g, B);
    return {s.g, B};
  }
  // Where p of the block goes: the gradient buffer (channels-first rows, or C rows of len in the
  // block's own slice of a channels-last buffer), or scratch.
  Rows<T> p_rows(index_t n, index_t i0, index_t len, Scratch<T>& s) const {
    if (!keep) return {s.p, B};
    T* gr = static_cast<T*>(job.grad_out);
    if (!job.grad_last) return {gr + n * C * S + i0, S};
    return {gr + (n * S + i0) * C, len};
  }

  // p = activation(z) into p (identity: p is z itself, nothing written). Returns false when p
  // holds a softmax's exponentials still to be multiplied by tmp (the reciprocals of their sums,
  // taken in (C + 1) / 2 rows of sums, rows_sum's).
  bool exps(Rows<const T> z, Rows<T> p, index_t len, T* __restrict tmp, T* sums) const {
    if (job.activation == Activation::sigmoid) {
      for (index_t c = 0; c < C; ++c) {
        const T* __restrict zc = z(c);
        T* __restrict pc = p(c);
        for (index_t i = 0; i < len; ++i) pc[i] = vm::sigmoid(zc[i]);
      }
    } else if (job.activation == Activation::softmax) {
      T* __restrict m = tmp;  // the max over classes, then 1 / sum
      const T* __restrict z0 = z(0);
      for (index_t i = 0; i < len; ++i) m[i] = z0[i];
      for (index_t c = 1; c < C; ++c) {
        const T* __restrict zc = z(c);
        for (index_t i = 0; i < len; ++i) m[i] = zc[i] > m[i] ? zc[i] : m[i];
      }
      for (index_t c = 0; c < C; c += 2) {  // the exponentials, and their sums pair by pair
        const T* __restrict zc = z(c);
        T* __restrict pc = p(c);
        T* __restrict o = sums + (c / 2) * B;
        if (c + 1 < C) {
          const T* __restrict zn = z(c + 1);
          T* __restrict pn = p(c + 1);
          for (index_t i = 0; i < len; ++i) {
            const T e = vm::exp_nonpos(zc[i] - m[i]), f = vm::exp_nonpos(zn[i] - m[i]);
            pc[i] = e, pn[i] = f, o[i] = e + f;
          }
        } else {
          for (index_t i = 0; i < len; ++i) o[i] = pc[i] = vm::exp_nonpos(zc[i] - m[i]);
        }
      }
      const T* __restrict sum = rows_sum(sums, (C + 1) / 2, len, B);
      for (index_t i = 0; i < len; ++i) m[i] = T(1) / sum[i];
      return false;
    }
    return true;
  }
  // Whether both passes take the interleaved channels-last path: softmax over channels-last
  // logits and targets (or labels), p kept in (or no) channels-last gradient buffer.
  bool interleaved() const {
    return job.activation == Activation::softmax && job.z_last && (L || job.targets_last) &&
           (!keep || job.grad_last) && with_interleaved_classes<T>(C, [](auto) {});
  }
  // The block's pixels in the channels-last arrays: logits, targets, labels, gradient (or null).
  struct Pixels {
    const T *z, *g;
    const std::int64_t* lab;
    T* p;
  };
  Pixels pixels(index_t n, index_t i0) const {
    const index_t at = n * S + i0;
    return {static_cast<const T*>(job.z) + at * C,
            L ? nullptr : static_cast<const T*>(job.targets) + at * C, L ? job.labels + at : nullptr,
            keep ? static_cast<T*>(job.grad_out) + at * C : nullptr};
  }

  // Pass 1 over one block: p (kept or in scratch) and the block's sums into part (C x kDiceSums).
  template <bool Sq>
  void sums(index_t n, index_t i0, index_t len, Scratch<T>& s, double* part) const {
    if (interleaved()) {
      const Pixels px = pixels(n, i0);
      with_interleaved_classes<T>(C, [&](auto k) {
        interleaved_sums<T, decltype(k)::value, L, Sq>(px.z, px.g, px.lab, px.p, len, part);
      });
      return;
    }
    const Rows<const T> z = z_rows(n, i0, len, s), g = g_rows(n, i0, len, s);
    Rows<T> p = job.activation == Activation::none ? Rows<T>{const_cast<T*>(z.ptr), z.stride}
                                                   : p_rows(n, i0, len, s);
    if (job.activation == Activation::softmax && with_softmax_classes<T>(C, [&](auto k) {
          softmax_sums<T, decltype(k)::value, L, Sq>(z, g, p, len, part);
        }))
      return;
    const T* r = exps(z, p, len, s.tmp, s.out) ? nullptr : s.tmp;
    for (index_t c = 0; c < C; ++c) {
      class_sums<T, L, Sq>(p(c), r, g(c), static_cast<T>(c), len, part + c * kDiceSums);
    }
  }

  // Pass 2 over one block: the gradient from coef (C x 3).
  void grad(index_t n, index_t i0, index_t len, Scratch<T>& s, const double* coef) const {
    if (interleaved()) {
      const Pixels px = pixels(n, i0);
      with_interleaved_classes<T>(C, [&](auto k) {
        interleaved_grad<T, decltype(k)::value, L>(px.g, px.lab, px.p, len, coef);
      });
      return;
    }
    const Rows<const T> g = g_rows(n, i0, len, s);
    Rows<const T> p;  // p kept by pass 1, or (without an activation) z itself
    if (keep) {
      const Rows<T> kept = p_rows(n, i0, len, s);
      p = {kept.ptr, kept.stride};
    } else {
      p = z_rows(n, i0, len, s);
    }
    T* gr = static_cast<T*>(job.grad_out);
    const Rows<T> out = job.grad_last ? Rows<T>{s.out, B} : Rows<T>{gr + n * C * S + i0, S};
    if (job.activation == Activation::softmax && with_softmax_classes<T>(C, [&](auto k) {
          softmax_grad<T, decltype(k)::value, L>(g, p, out, len, coef);
        })) {
      if (job.grad_last) from_rows(s.out, C, len, gr + (n * S + i0) * C, B);
      return;
    }
    // d loss / d p of class c at pixels [i, i + width of U). The coefficients and the activation
    // are locals: read through job and coef inside the loops, they were loaded again at every
    // step (the stores to the gradient may alias them as far as the compiler knows).
    struct Class {
      const T *g, *p;
      T cls, a, b, q;
    };
    auto cls_of = [&](index_t c) {
      return Class{g(c), p(c), static_cast<T>(c), static_cast<T>(coef[3 * c]),
                   static_cast<T>(coef[3 * c + 1]), static_cast<T>(coef[3 * c + 2])};
    };
    auto dloss = [](auto tag, const Class& k, index_t i) {
      using U = typename decltype(tag)::type;
      const U t = ld<U>(k.g + i), gv = L ? indicator(t, k.cls) : t;
      return k.a * gv + k.b + k.q * ld<U>(k.p + i);
    };
    const Activation act = job.activation;
    const T* dot = nullptr;  // the Jacobian's dot product, its terms added pair by pair into s.z
    if (act == Activation::softmax) {
      for (index_t c = 0; c < C; c += 2) {
        const Class k = cls_of(c), l = cls_of(c + 1 < C ? c + 1 : c);
        T* o = s.z + (c / 2) * B;
        if (c + 1 < C)
          columns<T>(0, len, [&](auto tag, index_t i) {
            using U = typename decltype(tag)::type;
            st(o + i, ld<U>(k.p + i) * dloss(tag, k, i) + ld<U>(l.p + i) * dloss(tag, l, i));
          });
        else
          columns<T>(0, len, [&](auto tag, index_t i) {
            using U = typename decltype(tag)::type;
            st(o + i, ld<U>(k.p + i) * dloss(tag, k, i));
          });
      }
      dot = rows_sum(s.z, (C + 1) / 2, len, B);
    }
    for (index_t c = 0; c < C; ++c) {
      const Class k = cls_of(c);
      T* oc = out(c);
      auto each = [&](auto body) { columns<T>(0, len, body); };
      if (act == Activation::softmax)
        each([&](auto tag, index_t i) {
          using U = typename decltype(tag)::type;
          st(oc + i, ld<U>(k.p + i) * (dloss(tag, k, i) - ld<U>(dot + i)));
        });
      else if (act == Activation::sigmoid)
        each([&](auto tag, index_t i) {
          using U = typename decltype(tag)::type;
          const U pv = ld<U>(k.p + i);
          st(oc + i, dloss(tag, k, i) * (pv * (T(1) - pv)));
        });
      else
        each([&](auto tag, index_t i) { st(oc + i, dloss(tag, k, i)); });
    }
    if (job.grad_last) from_rows(s.out, C, len, gr + (n * S + i0) * C, B);
  }
};

template <class T, bool L>
void run(const DiceJob& job) {
  const index_t N = job.N, C = job.C, S = job.S, B = block_pixels(C), nb = (S + B - 1) / B;
  const bool want_grad = job.scale != nullptr;
  // Keeping p costs a write and a read of the gradient buffer, which pass 2 writes anyway, while
  // the group is in the cache; computing it again costs more (an exp per logit): 3.1-3.4 against
  // 4.0-4.4 ms (one thread), 2.3-2.7 against 2.7-3.1 ms (two), 16 x 4 x 256 x 256 float32, fused.
  const Kernel<T, L> k{job, C, S, B, want_grad && job.activation != Activation::none};
  index_t per = N;  // images per group
  if (want_grad && !job.batch) {
    const index_t bytes = C * S * static_cast<index_t>(sizeof(T));
    const index_t fit = kGroupBytes * (job.threads > 1 ? job.threads : 1) / bytes;
    per = fit < 1 ? 1 : min_(N, fit);
  }
  Buffer<double> sums_mem(N * C * kDiceSums), part_mem(per * nb * C * kDiceSums + 1),
      coef_mem(N * C * 3 + 1), col_mem(nb);
  double *sums = sums_mem.p, *part = part_mem.p, *coef = coef_mem.p, *col = col_mem.p;
  auto make = [&] { return new Scratch<T>(C, B); };
  for (index_t g0 = 0; g0 < N; g0 += per) {
    const index_t g1 = min_(N, g0 + per), units = (g1 - g0) * nb;
    parallel_for_scratch(units, C * B, job.threads, make, [&](index_t u0, index_t u1, Scratch<T>& s) {
      for (index_t u = u0; u < u1; ++u) {
        const index_t n = g0 + u / nb, i0 = (u % nb) * B, len = min_(B, S - i0);
        if (job.squared)
          k.template sums<true>(n, i0, len, s, part + u * C * kDiceSums);
        else
          k.template sums<false>(n, i0, len, s, part + u * C * kDiceSums);
      }
    });
    for (index_t n = g0; n < g1; ++n)  // blocks in order, pairwise
      for (index_t j = 0; j < C * kDiceSums; ++j) {
        for (index_t b = 0; b < nb; ++b) col[b] = part[((n - g0) * nb + b) * C * kDiceSums + j];
        sums[n * C * kDiceSums + j] = pairwise_sum(col, nb);
      }
    if (job.batch) {  // images in order
      for (index_t j = 0; j < C * kDiceSums; ++j) {
        double t = 0.0;
        for (index_t n = 0; n < N; ++n) t += sums[n * C * kDiceSums + j];
        part[j] = t;
      }
      job.losses[0] = group_loss(job, part, want_grad ? job.scale[0] : 0.0, want_grad ? coef : nullptr);
    } else {
      for (index_t n = g0; n < g1; ++n)
        job.losses[n] = group_loss(job, sums + n * C * kDiceSums, want_grad ? job.scale[n] : 0.0,
                                   want_grad ? coef + n * C * 3 : nullptr);
    }
    if (!want_grad) continue;
    parallel_for_scratch(units, C * B, job.threads, make, [&](index_t u0, index_t u1, Scratch<T>& s) {
      for (index_t u = u0; u < u1; ++u) {
        const index_t n = g0 + u / nb, i0 = (u % nb) * B, len = min_(B, S - i0);
        k.grad(n, i0, len, s, coef + (job.batch ? 0 : n * C * 3));
      }
    });
  }
}

}  // namespace dice_detail

template <class T>
void dice(const DiceJob& job) {
  if (job.labels)
    dice_detail::run<T, true>(job);
  else
    dice_detail::run<T, false>(job);
}

}  // namespace losses
FL_NAMESPACE_END
