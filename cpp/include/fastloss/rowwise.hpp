// Building blocks for row-wise kernels (softmax family): lane reductions over one row, the online
// pieces of a numerically stable softmax, and the deterministic driver over rows.
#pragma once

#include <cstdlib>
#include <type_traits>

#include "fastloss/config.hpp"
#include "fastloss/job.hpp"
#include "fastloss/prefetch.hpp"
#include "fastloss/reduce.hpp"
#include "fastloss/vmath.hpp"

FL_NAMESPACE_BEGIN

inline constexpr index_t kRowBlock = 16;  // rows per reduction block (fixed: determinism)
// A class of a row as work for the threads (parallel.hpp): its exponential and its share of the
// row's sums cost several memory-bound elements (sparse cross-entropy, one thread: 4.3 ns per
// logit at K = 3, 2.2 at K = 10, 1.1 at K = 100, against MSE's 0.36 per element).
inline constexpr index_t kClassWork = 4;

// max over x[0..K). GCC vector extensions: the compare-select vectorizes without -ffast-math
// (a scalar reduction would not), in vectors of one register (a wider one is lowered lane by
// lane, see kRegBytes). NaN is skipped here and propagates through the exp sum instead; the max
// itself does not depend on the order.
template <class T>
FL_HD inline T row_max(const T* x, index_t K) {
#if defined(__CUDA_ARCH__)
  T r = static_cast<T>(-__builtin_huge_val());
  for (index_t i = 0; i < K; ++i) r = x[i] > r ? x[i] : r;
  return r;
#else
  typedef T V __attribute__((vector_size(kRegBytes)));
  constexpr int L = kRegBytes / sizeof(T);
  const T ninf = static_cast<T>(-__builtin_huge_val());
  V m, m1;  // two running maxima: one would wait on the latency of each compare-select
  for (int j = 0; j < L; ++j) m[j] = ninf;
  m1 = m;
  index_t i = 0;
  for (; i + 2 * L <= K; i += 2 * L) {
    V v, v1;
    __builtin_memcpy(&v, x + i, sizeof v);
    __builtin_memcpy(&v1, x + i + L, sizeof v1);
    m = v > m ? v : m;
    m1 = v1 > m1 ? v1 : m1;
  }
  m = m1 > m ? m1 : m;
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

// The index of the first maximum of z[0..K), that of the running argmax M = z[k] > z[M] ? k : M
// (0 where z[0] is NaN; other NaNs never win), from the row max m (row_max): a min-reduction that
// vectorizes, where the running argmax is a serial chain.
template <class T>
FL_HD FL_INLINE index_t row_argmax(const T* z, index_t K, T m) {
  if (!(z[0] == z[0])) return 0;
  index_t M = K;
  for (index_t k = 0; k < K; ++k) M = min_(M, z[k] == m ? k : K);
  return M == K ? 0 : M;  // a row without a number but z[0]
}

// Sums of N terms per element over a row, in the fixed lanes of every row reduction here: element k
// goes to lane k % kLanes on every ISA, summed in T over chunks of kExpChunk elements (16 terms per
// lane: bounded rounding), then in double; the lanes are combined pairwise, so the sums are
// bitwise the same on AVX2 and AVX-512. terms(k, t) writes the N terms of elements k.. into
// t[0..N) of type U: T for one element (the tail, and the device), or on the host the GCC vector of
// one register, elements k..k+W-1, W = kRegBytes / sizeof(T), lanes k % kLanes.. of the group
// (selects on it stay vector code, where gcc's auto-vectorizer leaves the selects of a fully
// unrolled loop scalar; a vector wider than a register gcc keeps in memory between operations).
// lanes_load/store/exp work on any of them. ahead (optional): the next row, prefetched one line per
// step of the vector loop (LinesAhead).
inline constexpr index_t kExpChunk = 16 * kLanes;

template <class U, class T>
FL_HD FL_INLINE U lanes_load(const T* p) {
  U v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
// lanes_load of elements of another type, converted (float rows into double lanes).
template <class U, class T>
FL_HD FL_INLINE U lanes_load_as(const T* p) {
  if constexpr (std::is_arithmetic<U>::value) {
    return static_cast<U>(*p);
  } else {  // a GCC vector: host code only
#if !defined(__CUDACC__)
    typedef T V __attribute__((vector_size(sizeof(U) / sizeof(U{}[0]) * sizeof(T))));
    return __builtin_convertvector(lanes_load<V>(p), U);
#endif
  }
}
template <class U, class T>
FL_HD FL_INLINE void lanes_store(T* p, U v) {
  __builtin_memcpy(p, &v, sizeof v);
}
// exp_nonpos of one element, or of a group in a plain loop (which gcc vectorizes); an AVX-512
// register takes vm's vscalef form (the same bits).
FL_HD FL_INLINE float lanes_exp(float x) { return vm::exp_nonpos(x); }
FL_HD FL_INLINE double lanes_exp(double x) { return vm::exp_nonpos(x); }
#if !defined(__CUDACC__)
template <class U>
FL_INLINE U lanes_exp(U x) {
  using T = decltype(x[0] + 0);
#if defined(__AVX512F__)
  if constexpr (sizeof(U) == 64) return vm::exp_nonpos(x);  // U converts to __m512 / __m512d
#endif
  constexpr int n = sizeof(U) / sizeof(T);
  T a[n];
  __builtin_memcpy(a, &x, sizeof a);
  for (int j = 0; j < n; ++j) a[j] = vm::exp_nonpos(a[j]);
  __builtin_memcpy(&x, a, sizeof a);
  return x;
}
#endif

// v with the element at index skip replaced by 0 (v holds elements k, k + 1, ...).
template <class U>
FL_HD FL_INLINE U lanes_select_not(index_t k, index_t skip, U v) {
  if constexpr (std::is_arithmetic<U>::value) {
    return k == skip ? U(0) : v;
  } else {
    typedef decltype(v == v) M;
    M lane;
    for (int j = 0; j < int(sizeof(U) / sizeof(v[0])); ++j) lane[j] = j;
    const index_t at = skip >= k && skip - k < index_t(sizeof(U) / sizeof(v[0])) ? skip - k : -1;
    return lane == static_cast<decltype(lane[0] + 0)>(at) ? U{} : v;
  }
}

// The lines of row r + 1 (prefetch.hpp) of a job's x and extra (or targets) inputs and of its
// gradient and Hessian outputs; nothing after the last row, on ragged rows, or on rows shorter
// than one group (no vector loop to carry the prefetches; the hardware prefetchers follow them).
template <class T>
FL_HD inline LinesAhead<T> next_row_ahead(const RowJob& job, index_t r) {
  LinesAhead<T> a;
  if (job.K < kLanes || r + 1 >= job.rows || job.offsets) return a;
  const index_t n = r + 1;
  a.in[0] = static_cast<const T*>(job.x) + n * job.x_stride;
  if (job.extra) a.in[1] = static_cast<const T*>(job.extra) + n * job.extra_stride;
  else if (job.targets) a.in[1] = static_cast<const T*>(job.targets) + n * job.targets_stride;
  if (job.grad_out) a.out[0] = static_cast<T*>(job.grad_out) + n * job.grad_stride;
  if (job.hess_out) a.out[1] = static_cast<T*>(job.hess_out) + n * job.hess_stride;
  return a;
}

template <class T, int N, class Terms>
FL_HD FL_INLINE void row_lane_sums(index_t K, double* sums, Terms&& terms,
                                   const LinesAhead<T>* ahead = nullptr) {
  double acc[N][kLanes] = {};
  index_t i = 0;
#if !defined(__CUDACC__)
  typedef T V __attribute__((vector_size(kRegBytes)));
  constexpr int W = kRegBytes / sizeof(T), P = kLanes / W;  // P registers per group of kLanes
  static_assert(kLanes % W == 0, "whole registers per group");
  while (i + kLanes <= K) {
    V part[N][P] = {};
    const index_t stop = min_(i + kExpChunk, K);
    for (; i + kLanes <= stop; i += kLanes)
      for (int p = 0; p < P; ++p) {
        if (ahead && (p * W * sizeof(T)) % 64 == 0) ahead->line(i + p * W);
        V t[N];
        terms(i + p * W, t);
        for (int n = 0; n < N; ++n) part[n][p] += t[n];
      }
    for (int n = 0; n < N; ++n)
      for (int p = 0; p < P; ++p)
        for (int j = 0; j < W; ++j) acc[n][p * W + j] += static_cast<double>(part[n][p][j]);
  }
#endif
  for (; i < K; i += kLanes) {  // the tail (the device: every group, lanes in double)
    const int len = static_cast<int>(min_(index_t(kLanes), K - i));
    for (int j = 0; j < len; ++j) {
      T t[N];
      terms(i + j, t);
      for (int n = 0; n < N; ++n) acc[n][j] += static_cast<double>(t[n]);
    }
  }
  for (int n = 0; n < N; ++n) sums[n] = pairwise_sum(acc[n], kLanes);
}

// The element type U of a terms(k, t) call (T or a group of them).
#define FL_LANES_TYPE(t) typename std::remove_reference<decltype(t[0])>::type

// e_k = exp((x_k - shift) * scale) for shift = the row max and scale > 0 (every exponent <= 0:
// exp_nonpos), stored into e when Store; returns their sum, without the term at index skip when
// Skip (no cancellation, unlike S - e_skip). NaN propagates. ahead: the next row, prefetched.
template <class T, bool Store, bool Scaled, bool Skip>
FL_HD inline double row_exp_lanes(const T* x, index_t K, T shift, T* e, T scale, index_t skip,
                                  const LinesAhead<T>* ahead) {
  double s;
  row_lane_sums<T, 1>(
      K, &s,
      [&](index_t k, auto* t) {
        using U = FL_LANES_TYPE(t);
        const U d = lanes_load<U>(x + k) - shift;
        const U v = lanes_exp(Scaled ? d * scale : d);
        if constexpr (Store) lanes_store(e + k, v);
        t[0] = Skip ? lanes_select_not(k, skip, v) : v;
      },
      ahead);
  return s;
}

// S = sum_k exp((x_k - shift) * scale), the exponentials stored into e (may be null).
template <class T>
FL_HD inline double row_exp_sum(const T* x, index_t K, T shift, T* e, T scale = T(1),
                                const LinesAhead<T>* ahead = nullptr) {
  if (scale != T(1))
    return e ? row_exp_lanes<T, true, true, false>(x, K, shift, e, scale, -1, ahead)
             : row_exp_lanes<T, false, true, false>(x, K, shift, e, scale, -1, ahead);
  return e ? row_exp_lanes<T, true, false, false>(x, K, shift, e, scale, -1, ahead)
           : row_exp_lanes<T, false, false, false>(x, K, shift, e, scale, -1, ahead);
}

// sum_{k != skip} exp(x_k - shift), the exponentials (the one at skip included) stored into e.
template <class T>
FL_HD inline double row_exp_sum_but(const T* x, index_t K, T shift, T* e, index_t skip,
                                    const LinesAhead<T>* ahead = nullptr) {
  return row_exp_lanes<T, true, false, true>(x, K, shift, e, T(1), skip, ahead);
}

// S - 1 to full relative accuracy, for S = sum_k e_k with every e_k <= 1 and e(k, U) giving the
// terms (stored or recomputed): log S = log1p(S - 1) then keeps the loss of a confident row (log S ~
// 1e-13, where 1 + 1e-13 would keep three digits). Where S >= 2, S - 1 loses at most a factor 2 of
// S's relative accuracy; below, a second pass sums the terms other than 1 (the max and its ties)
// and counts the 1s apart. Only confident rows (a class above 1/2) take that pass.
template <class T, class Elem>
FL_HD inline double row_exp_rest(index_t K, double S, Elem&& e) {
  if (!(S < 2.0)) return S - 1.0;  // NaN too
  double s[2];
  row_lane_sums<T, 2>(K, s, [&](index_t k, auto* t) {
    using U = FL_LANES_TYPE(t);
    const U v = e(k, t[0]), zero = {}, one = zero + T(1);
    t[0] = v == one ? zero : v;
    t[1] = v == one ? one : zero;
  });
  return s[0] + (s[1] - 1.0);
}

// row_exp_rest of the exponentials stored in e, or recomputed from x where e is null.
template <class T>
FL_HD inline double row_exp_rest(const T* x, index_t K, T shift, const T* e, T scale, double S) {
  if (e) return row_exp_rest<T>(K, S, [&](index_t k, auto u) { return lanes_load<decltype(u)>(e + k); });
  return row_exp_rest<T>(K, S, [&](index_t k, auto u) {
    return lanes_exp((lanes_load<decltype(u)>(x + k) - shift) * scale);
  });
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
      K * kClassWork);
}

// sum_over_rows for rows that need scratch: row_fn(r, buf) gets `scratch` elements of T, allocated
// once per block of rows (none when 0). block_fn(r0, len, sum) is asked first and returns true
// when it computed the block's rows and their sum itself (in row order, as here).
template <class T, class RowFn, class BlockFn>
double sum_over_rows_scratch(index_t rows, index_t K, index_t scratch, int threads, RowFn&& row_fn,
                             BlockFn&& block_fn) {
  return blocked_sum(
      rows, kRowBlock, threads,
      [&](index_t r0, index_t len) {
        double s = 0.0;
        if (block_fn(r0, len, s)) return s;
        T* buf = scratch ? alloc_array<T>(scratch) : nullptr;
        for (index_t r = r0; r < r0 + len; ++r) s += row_fn(r, buf);
        std::free(buf);
        return s;
      },
      K * kClassWork);
}

// Does the row body compute whole blocks of rows where it can (block<G, H>(job, r0, len, sum))?
template <class B, class = void>
struct has_block_rows : std::false_type {};
template <class B>
struct has_block_rows<B, std::void_t<decltype(&B::template block<false, false>)>> : std::true_type {};

// One row of any row-wise loss around the body's computation row_fn() -> the row's weighted loss
// (which writes its gradient and Hessian rows): ignored rows (a label equal to ignore_index)
// contribute nothing and write zeros, whatever their inputs; per-row values go to loss_out.
template <class T, bool G, bool H, class RowFn>
FL_HD FL_INLINE double row_step(const RowJob& job, index_t r, RowFn&& row_fn) {
  double l = 0.0;
  if (job.has_ignore && job.labels[r] == job.ignore_index) {
    for (index_t k = 0; G && k < job.K; ++k) static_cast<T*>(job.grad_out)[r * job.grad_stride + k] = T(0);
    for (index_t k = 0; H && k < job.K; ++k) static_cast<T*>(job.hess_out)[r * job.hess_stride + k] = T(0);
  } else {
    l = row_fn();
  }
  if (job.loss_out) static_cast<T*>(job.loss_out)[r] = static_cast<T>(l);
  return l;
}

// row_step of Body<T>::row<G, H>(job, r, scratch), on the CPU and the GPU.
template <class Body, class T, bool G, bool H>
FL_HD double row_value(const Body& body, const RowJob& job, index_t r, T* buf) {
  return row_step<T, G, H>(job, r, [&] { return body.template row<G, H>(job, r, buf); });
}

#if !defined(__CUDACC__)
// Blocks of rows across the vector lanes. Rows of few classes cost a fixed 60-90 ns each one at a
// time (every lane reduction above set up for one element per lane), so the row bodies also offer
// block<G, H>(job, r0, len, sum) for the driver's blocks of kRowBlock rows of at most kLanes
// classes: the block is held class-major (v[k][b]: class k of row b), so that loops over its rows
// vectorize (keep loops of transcendentals short or flat over k x b: gcc left long nested ones
// scalar). The helpers below do what the row helpers do, operation for operation, so a blocked
// row gives the same bits as the row path (tested against it: RowJob::row_blocks).
template <class T>
using BlockRows = T[kLanes][kRowBlock];
using BlockSums = double[kLanes][kRowBlock];
using BlockValues = double[kRowBlock];

// Rows r0..r0+len of x (row stride xs, K <= kLanes classes) into v, class-major; the rows from
// len on hold 0 (padding: computed, never written out).
template <class T>
inline void block_load(const T* x, index_t xs, index_t r0, index_t len, index_t K, BlockRows<T>& v) {
  for (index_t b = 0; b < len; ++b)
    for (index_t k = 0; k < K; ++k) v[k][b] = x[(r0 + b) * xs + k];
  for (index_t k = 0; k < K; ++k)
    for (index_t b = len; b < kRowBlock; ++b) v[k][b] = T(0);
}

// The transpose of block_load: rows 0..len of v into rows r0.. of x.
template <class T>
inline void block_store(const BlockRows<T>& v, index_t K, index_t len, T* x, index_t xs, index_t r0) {
  for (index_t b = 0; b < len; ++b)
    for (index_t k = 0; k < K; ++k) x[(r0 + b) * xs + k] = v[k][b];
}

// The label of each row of the block, 0 for an ignored row and the padding (computed, never used:
// row_step writes an ignored row's zeros last).
inline void block_labels(const RowJob& job, index_t r0, index_t len, std::int64_t (&t)[kRowBlock]) {
  for (index_t b = 0; b < kRowBlock; ++b) t[b] = 0;
  for (index_t b = 0; b < len; ++b) {
    const std::int64_t lb = job.labels[r0 + b];
    t[b] = job.has_ignore && lb == job.ignore_index ? 0 : lb;
  }
}

// The sample weight of each row of the block (1 without, and for the padding).
// (Plain loops, here and in block_class_weights: a select between a pointer's elements and a
// constant becomes a masked load, which takes a microcode assist on AMD where the masked-off lanes
// point at no page: a null pointer, the end of an array.)
inline void block_sample_weights(const RowJob& job, index_t r0, index_t len, double (&s)[kRowBlock]) {
  index_t b = 0;
  if (job.sample_weight)
    for (; b < len; ++b) s[b] = job.sample_weight[r0 + b];
  for (; b < kRowBlock; ++b) s[b] = 1.0;
}

// The class weights into wc[0..K), 1 without.
inline void block_class_weights(const RowJob& job, double (&wc)[kLanes]) {
  if (job.class_weight)
    for (index_t k = 0; k < job.K; ++k) wc[k] = job.class_weight[k];
  else
    for (index_t k = 0; k < job.K; ++k) wc[k] = 1.0;
}

// The row maxima, as row_max (NaN skipped); false where one of the first len rows holds +inf
// (the row path's softmax limit takes those).
template <class T>
inline bool block_max(const BlockRows<T>& v, index_t K, index_t len, T (&m)[kRowBlock]) {
  for (index_t b = 0; b < kRowBlock; ++b) m[b] = static_cast<T>(-__builtin_huge_val());
  for (index_t k = 0; k < K; ++k)
    for (index_t b = 0; b < kRowBlock; ++b) m[b] = v[k][b] > m[b] ? v[k][b] : m[b];
  for (index_t b = 0; b < len; ++b)
    if (row_has_pos_inf(m[b])) return false;
  return true;
}

// Every block's start: its logits (job.x) and their row maxima; false, nothing written, where K >
// kLanes or a row holds +inf (the row path takes those blocks). (K >= 1 always; said here so that
// gcc sees class 0 written.)
template <class T>
inline bool block_logits(const RowJob& job, index_t r0, index_t len, BlockRows<T>& z, T (&m)[kRowBlock]) {
  if (job.K > kLanes || job.K < 1) return false;
  block_load(static_cast<const T*>(job.x), job.x_stride, r0, len, job.K, z);
  return block_max(z, job.K, len, m);
}

// The first class of each row holding its maximum (M = z[k] > z[M] ? k : M over k, as the row
// paths; a NaN never wins), as selects: a branch per row and class cost 7 % of a focal block.
template <class T>
inline void block_argmax(const BlockRows<T>& v, index_t K, std::int64_t (&M)[kRowBlock]) {
  T vM[kRowBlock];
  for (index_t b = 0; b < kRowBlock; ++b) vM[b] = v[0][b], M[b] = 0;
  for (index_t k = 1; k < K; ++k)
    for (index_t b = 0; b < kRowBlock; ++b) {
      const bool up = v[k][b] > vM[b];
      M[b] = up ? k : M[b];
      vM[b] = up ? v[k][b] : vM[b];
    }
}

// e = exp((v - m) * scale), as row_exp_sum's terms.
template <class T>
inline void block_exp(const BlockRows<T>& v, const T (&m)[kRowBlock], index_t K, T scale, BlockRows<T>& e) {
  for (index_t k = 0; k < K; ++k)
    for (index_t b = 0; b < kRowBlock; ++b)
      e[k][b] = lanes_exp(scale == T(1) ? v[k][b] - m[b] : (v[k][b] - m[b]) * scale);
}

// The per-row sums of the terms acc[k][b] (k < K) in row_lane_sums' order: one class per lane,
// each lane a term added to 0.0 (a -0 term becomes +0 there; nonneg: no -0 terms), the lanes
// combined by pairwise_sum over kLanes lanes; into acc[0][b]. The lanes from K on hold +0 there,
// and x + 0 is x for every x but -0: that tree is pairwise_sum's over the K lanes alone (a node
// whose right half holds no class is its left half, as pairwise_sum carries an odd last element).
inline void block_lane_sums(BlockSums& acc, index_t K, bool nonneg) {
  static_assert((kLanes & (kLanes - 1)) == 0, "pairwise_sum's tree over a power of two");
  if (!nonneg)
    for (index_t k = 0; k < K; ++k)
      for (index_t b = 0; b < kRowBlock; ++b) acc[k][b] += 0.0;
  for (index_t n = K; n > 1;) {
    const index_t half = n / 2;
    for (index_t i = 0; i < half; ++i)
      for (index_t b = 0; b < kRowBlock; ++b) acc[i][b] = acc[2 * i][b] + acc[2 * i + 1][b];
    if (n & 1)
      for (index_t b = 0; b < kRowBlock; ++b) acc[half][b] = acc[n - 1][b];
    n = half + (n & 1);
  }
}

// S = sum_k e_k and S - 1 to full relative accuracy per row (row_exp_sum, row_exp_rest).
template <class T>
inline void block_exp_sums(const BlockRows<T>& e, index_t K, BlockValues& S, BlockValues& rest) {
  BlockSums acc[3];
  for (index_t k = 0; k < K; ++k)
    for (index_t b = 0; b < kRowBlock; ++b) {
      const T v = e[k][b];
      acc[0][k][b] = static_cast<double>(v);
      acc[1][k][b] = static_cast<double>(v == T(1) ? T(0) : v);
      acc[2][k][b] = static_cast<double>(v == T(1) ? T(1) : T(0));
    }
  for (auto& a : acc) block_lane_sums(a, K, true);
  for (index_t b = 0; b < kRowBlock; ++b) {
    S[b] = acc[0][0][b];
    rest[b] = !(S[b] < 2.0) ? S[b] - 1.0 : acc[1][0][b] + (acc[2][0][b] - 1.0);
  }
}

// The block's rows through row_step (ignored rows: zeros over what the block stored, no value),
// row b's weighted loss sw[b] * loss[b]; their sum in row order.
template <class T, bool G, bool H>
inline double block_row_values(const RowJob& job, index_t r0, index_t len, const BlockValues& sw,
                               const BlockValues& loss) {
  double sum = 0.0;
  for (index_t b = 0; b < len; ++b) sum += row_step<T, G, H>(job, r0 + b, [&] { return sw[b] * loss[b]; });
  return sum;
}
#endif

// The CPU driver of every row-wise loss: the rows summed in the fixed order of sum_over_rows,
// with the scratch rows the body's spec asks for.
template <template <class> class Body, class T, bool G, bool H>
double run_rows_gh(const RowJob& job) {
  const Body<T> body(job.params);
  auto row = [&](index_t r, T* buf) { return row_value<Body<T>, T, G, H>(body, job, r, buf); };
  constexpr int scratch = Body<T>::spec.scratch_rows;
  constexpr bool blocks = has_block_rows<Body<T>>::value;
  if constexpr (scratch == 0 && !blocks) {
    return sum_over_rows(job.rows, job.K, job.threads, [&](index_t r) { return row(r, nullptr); });
  } else {
    auto block = [&](index_t r0, index_t len, double& s) {
      if constexpr (blocks) return job.row_blocks && body.template block<G, H>(job, r0, len, s);
      return false;
    };
    return sum_over_rows_scratch<T>(job.rows, job.K, scratch * job.K, job.threads, row, block);
  }
}

template <template <class> class Body, class T>
double run_rows(const RowJob& job) {
  if (job.hess_out) return run_rows_gh<Body, T, true, true>(job);
  if (job.grad_out) return run_rows_gh<Body, T, true, false>(job);
  return run_rows_gh<Body, T, false, false>(job);
}

FL_NAMESPACE_END
