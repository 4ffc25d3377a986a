// Ranking and similarity losses (spec section 4): the fused, memory-bound parts. The large matrix
// products (Gram matrices X X^T, cosines x^ W^T and their gradient products) come from BLAS in the
// Python layer; these kernels turn a Gram matrix into distances, mine triplets per anchor row,
// scatter sparse distance gradients back onto the embeddings, apply the angular margins with a
// fused softmax cross-entropy per row, and differentiate through row normalization.
//
// Distances of rows x_i, y_j from their Gram entry g = x_i . y_j and squared norms |x_i|^2, |y_j|^2
// (accumulated in double):
//   sqeuclidean  max(|x_i|^2 + |y_j|^2 - 2 g, 0)      (computed in double, rounded once to T)
//   euclidean    sqrt of the above
//   cosine       1 - g, with g computed on rows normalized as x / max(|x|, eps)
// Every kernel is deterministic: rows are independent, and where contributions to one output row
// come from several places they are gathered first (in a fixed order) and summed by that row.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "similarity_jobs.hpp"
#include "fastloss/reduce.hpp"
#include "fastloss/rowwise.hpp"

FL_NAMESPACE_BEGIN
namespace losses {

// |x_r|^2 in double (fixed lane order).
template <class T>
inline double sqnorm(const T* x, index_t d) {
  double acc[kLanes] = {};
  index_t k = 0;
  for (; k + kLanes <= d; k += kLanes)
    for (int j = 0; j < kLanes; ++j) acc[j] += double(x[k + j]) * double(x[k + j]);
  for (int j = 0; k + j < d; ++j) acc[j] += double(x[k + j]) * double(x[k + j]);
  return pairwise_sum(acc, kLanes);
}

// Squared row norms; with xhat, also the rows normalized as x / max(|x|, eps).
template <class T>
void row_norms(const void* xv, index_t n, index_t d, double eps, double* sqn, void* xhatv,
               int threads) {
  const T* x = static_cast<const T*>(xv);
  T* xhat = static_cast<T*>(xhatv);
  parallel_for_each(n, d, threads, [&](index_t r) {
    const T* xr = x + r * d;
    sqn[r] = sqnorm(xr, d);
    if (xhat) {
      const double inv = 1.0 / std::max(std::sqrt(sqn[r]), eps);
      for (index_t k = 0; k < d; ++k) xhat[r * d + k] = T(double(xr[k]) * inv);
    }
  });
}


template <class T, int M>
FL_INLINE T dist_elem(T g, double ni, double nj) {
  if constexpr (M == kCosine) {
    return T(1) - g;
  } else {
    double sq = ni + nj - 2.0 * double(g);
    sq = sq < 0.0 ? 0.0 : sq;  // cancellation; NaN stays NaN
    return T(M == kEuclidean ? std::sqrt(sq) : sq);
  }
}

// One row of distances: out[j] = dist(g[j], ni, nj[j]).
template <class T, int M>
inline void dist_row(const T* g, index_t cols, double ni, const double* nj, T* out) {
  for (index_t j = 0; j < cols; ++j) out[j] = dist_elem<T, M>(g[j], ni, nj ? nj[j] : 0.0);
}

template <class T>
inline void dist_row_any(int metric, const T* g, index_t cols, double ni, const double* nj, T* out) {
  switch (metric) {
    case kEuclidean: return dist_row<T, kEuclidean>(g, cols, ni, nj, out);
    case kSqEuclidean: return dist_row<T, kSqEuclidean>(g, cols, ni, nj, out);
    default: return dist_row<T, kCosine>(g, cols, ni, nj, out);
  }
}

// In place: the (rows, cols) Gram matrix g becomes the distance matrix. With `self`, the diagonal
// of a Euclidean / squared distance matrix is exactly 0.
template <class T>
void dist_from_gram(void* gv, index_t rows, index_t cols, const double* nx, const double* ny,
                    int metric, bool self, int threads) {
  T* g = static_cast<T*>(gv);
  parallel_for_each(rows, cols, threads, [&](index_t r) {
    T* row = g + r * cols;
    dist_row_any(metric, row, cols, nx ? nx[r] : 0.0, ny, row);
    if (self && metric != kCosine && r < cols) row[r] = T(0);
  });
}



// Triplet mining per anchor row (modes and outputs: MineJob).

// splitmix64: the counter-based generator of random mining (the draw for anchor a and its k-th
// positive depends on (seed, a, p) only, never on threads).
FL_INLINE std::uint64_t splitmix64(std::uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// A negative candidate ordered by (distance, index); NaN distances order last.
template <class T>
struct Cand {
  T v;
  index_t i;
};
template <class T>
FL_INLINE bool cand_less(const Cand<T>& a, const Cand<T>& b) {
  const bool an = a.v != a.v, bn = b.v != b.v;
  if (an != bn) return bn;
  if (!an && a.v != b.v) return a.v < b.v;
  return a.i < b.i;
}

template <class T>
void mine_triplets(const MineJob& job) {
  const index_t n = job.n;
  const T* gram = static_cast<const T*>(job.gram);
  const std::int64_t* y = job.labels;
  parallel_for_each(n, n * 4, job.threads, [&](index_t a) {
    const std::int64_t ya = y[a];
    const index_t npos = job.class_count[ya] - 1, nneg = n - job.class_count[ya];
    if (job.mode != kMineAll && job.offset[a] == job.offset[a + 1]) return;  // no triplet
    if (job.mode == kMineAll && (npos == 0 || nneg == 0)) {
      job.loss_sum[a] = job.count[a] = 0.0;
      std::memset(job.coef + a * n, 0, sizeof(double) * n);
      return;
    }
    // Scratch: negatives (value, index), sorted positives and buckets (semi-hard), positive
    // indices, the distance row.
    Cand<T>* negs = static_cast<Cand<T>*>(
        checked_malloc((3 * n + 2) * sizeof(Cand<T>) + n * (sizeof(index_t) + 3 * sizeof(T)), 1));
    Cand<T>* sorted_pos = negs + n;
    Cand<T>* bucket = sorted_pos + n + 1;
    index_t* poss = reinterpret_cast<index_t*>(bucket + n + 1);
    T* row = reinterpret_cast<T*>(poss + n);
    T* sorted_v = row + n;  // the sorted positives' distances; scratch (2 n) in batch-hard
    dist_row_any(job.metric, gram + a * n, n, job.sqn ? job.sqn[a] : 0.0, job.sqn, row);
    // Positives: the anchor's class members but itself, in index order.
    index_t np = 0, nn = 0;
    for (index_t k = job.class_start[ya]; k < job.class_start[ya + 1]; ++k)
      if (job.members[k] != a) poss[np++] = job.members[k];
    if (job.mode == kMineRandom || job.mode == kMineAll)
      for (index_t j = 0; j < n; ++j)
        if (y[j] != ya) negs[nn++] = Cand<T>{row[j], j};
    const index_t o = job.mode == kMineAll ? 0 : job.offset[a];
    auto emit = [&](index_t t, index_t p, index_t ng) {
      job.anchor[t] = a, job.pos[t] = p, job.neg[t] = ng;
      job.d_ap[t] = double(row[p]), job.d_an[t] = double(row[ng]);
    };
    if (job.mode == kMineHard) {
      // Hardest positive (largest distance) and hardest negative (smallest); lowest index on ties.
      // The negatives' minimum is the row's minimum once the anchor and its positives are set
      // to +inf (a vectorized max of the negated row; NaN skipped), then its first index.
      index_t bp = poss[0], bn = -1;
      for (index_t k = 1; k < np; ++k) bp = row[poss[k]] > row[bp] ? poss[k] : bp;
      const T inf = T(__builtin_huge_val()), daa = row[a];
      for (index_t k = 0; k < np; ++k) sorted_v[k] = row[poss[k]], row[poss[k]] = inf;
      row[a] = inf;
      for (index_t j = 0; j < n; ++j) sorted_v[np + j] = -row[j];
      const T mn = -row_max(sorted_v + np, n);
      for (index_t j = 0; j < n && bn < 0; ++j)
        if (row[j] == mn && y[j] != ya) bn = j;
      for (index_t j = 0; j < n && bn < 0; ++j)  // every negative distance NaN or +inf
        if (y[j] != ya) bn = j;
      for (index_t k = 0; k < np; ++k) row[poss[k]] = sorted_v[k];
      row[a] = daa;
      emit(o, bp, bn);
    } else if (job.mode == kMineRandom) {
      const std::uint64_t ha = splitmix64(job.seed + splitmix64(std::uint64_t(a)));
      for (index_t k = 0; k < np; ++k) {
        const std::uint64_t h = splitmix64(ha + std::uint64_t(poss[k]));
        const index_t pick = index_t((unsigned __int128)h * std::uint64_t(nn) >> 64);
        emit(o + k, poss[k], negs[pick].i);
      }
    } else if (job.mode == kMineSemiHard) {
      // Per positive p: the closest negative farther than p (the (distance, index) minimum over
      // {d_an > d_ap}); without one, the farthest negative (lowest index on ties). With the
      // positives sorted by distance, negative v is a candidate for the r(v) closest positives
      // (r(v) = #{d_ap < v}): each bucket r keeps its minimal negative, and positive k (sorted)
      // takes the minimum over the buckets r > k. O(negatives * log(positives)) per anchor.
      for (index_t k = 0; k < np; ++k) sorted_pos[k] = Cand<T>{row[poss[k]], k};
      std::sort(sorted_pos, sorted_pos + np, cand_less<T>);
      for (index_t k = 0; k < np; ++k) sorted_v[k] = sorted_pos[k].v;
      for (index_t b = 0; b <= np; ++b) bucket[b] = Cand<T>{T(0), -1};
      // Few positives: r(v) for the whole row first, one vectorized compare-and-count pass per
      // positive (the negatives' storage is free in this mode).
      const bool linear = np <= 32;
      std::int32_t* rank = reinterpret_cast<std::int32_t*>(negs);
      if (linear) {
        for (index_t j = 0; j < n; ++j) rank[j] = 0;
        for (index_t k = 0; k < np; ++k) {
          const T sv = sorted_v[k];
          for (index_t j = 0; j < n; ++j) rank[j] += sv < row[j];
        }
      }
      index_t far = -1;  // farthest: largest non-NaN value, lowest index among equals
      T far_v = T(0);
      for (index_t j = 0; j < n; ++j) {
        const T v = row[j];
        if (y[j] == ya || v != v) continue;
        if (far < 0 || v > far_v) far = j, far_v = v;
        index_t r = 0;  // r(v) = #{sorted_v < v} (NaN ones are last)
        if (linear) {
          r = rank[j];
        } else {
          const T* base = sorted_v;
          for (index_t len = np; len > 1;) {
            const index_t half = len / 2;
            base = base[half] < v ? base + half : base;
            len -= half;
          }
          r = (base - sorted_v) + (*base < v);
        }
        if (r > 0 && (bucket[r].i < 0 || v < bucket[r].v)) bucket[r] = Cand<T>{v, j};
      }
      Cand<T> best{T(0), -1};
      for (index_t k = np - 1; k >= 0; --k) {  // best = minimum over buckets k+1 .. np
        const Cand<T>& c = bucket[k + 1];
        if (c.i >= 0 && (best.i < 0 || c.v < best.v || (c.v == best.v && c.i < best.i))) best = c;
        const index_t slot = sorted_pos[k].i;
        index_t first_neg = 0;  // all negative distances NaN: the first negative
        while (far < 0 && y[first_neg] == ya) ++first_neg;
        emit(o + slot, poss[slot], best.i >= 0 ? best.i : (far >= 0 ? far : first_neg));
      }
    } else {  // batch-all: every (p, n) of the anchor
      double* c = job.coef + a * n;
      std::memset(c, 0, sizeof(double) * n);
      double loss = 0.0, cnt = 0.0;
      for (index_t k = 0; k < np; ++k) {
        const double dap = double(row[poss[k]]);
        double cp = 0.0;
        for (index_t q = 0; q < nn; ++q) {
          const double h = dap - double(negs[q].v) + job.margin;
          double l, dl;
          if (job.soft) {
            l = vm::softplus(h), dl = vm::sigmoid(h);
            cnt += 1.0;
          } else {
            const bool active = h > 0.0 || h != h;
            l = active ? h : 0.0, dl = active ? 1.0 : 0.0;
            cnt += active ? 1.0 : 0.0;
          }
          loss += l;
          cp += dl;
          c[negs[q].i] -= dl;
        }
        c[poss[k]] += cp;
      }
      job.loss_sum[a] = loss, job.count[a] = cnt;
    }
    std::free(negs);
  });
}


template <class T>
FL_INLINE void normalize_backward_row(double* g, const T* xhat, double sqn, double eps, index_t d) {
  const double norm = std::sqrt(sqn);
  if (norm > eps) {
    double dot = 0.0;
    for (index_t k = 0; k < d; ++k) dot += g[k] * double(xhat[k]);
    for (index_t k = 0; k < d; ++k) g[k] = (g[k] - dot * double(xhat[k])) / norm;
  } else {
    for (index_t k = 0; k < d; ++k) g[k] /= eps;
  }
}

// Gradient of sum_e coef[e] * D(x_i[e], x_j[e]) with respect to the rows of x (self distances):
// each pair contributes to both rows. Contributions are gathered per row in pair order and summed
// by that row (deterministic). Euclidean: c (x_r - x_o) / D (0 at D = 0); squared: 2 c (x_r - x_o);
// cosine (x = the normalized rows): -c x^_o, then through the normalization of row r.
template <class T>
void pair_grad(const PairGradJob& job) {
  const index_t n = job.n, d = job.d;
  const T* x = static_cast<const T*>(job.x);
  T* grad = static_cast<T*>(job.grad);
  // CSR of (row, other, coef, dist), both endpoints of every pair, in pair order.
  Buffer<index_t> start_mem(n + 1);
  index_t* start = start_mem.p;
  std::memset(start, 0, sizeof(index_t) * (n + 1));
  for (index_t e = 0; e < job.m; ++e)
    if (job.coef[e] != 0.0) ++start[job.i[e] + 1], ++start[job.j[e] + 1];
  for (index_t r = 0; r < n; ++r) start[r + 1] += start[r];
  const index_t total = start[n];
  Buffer<index_t> other_mem((total + 1));
  index_t* other = other_mem.p;
  Buffer<double> cd_mem(2 * (total + 1));
  double* cd = cd_mem.p;
  Buffer<index_t> fill_mem((n + 1));
  index_t* fill = fill_mem.p;
  std::memcpy(fill, start, sizeof(index_t) * n);
  for (index_t e = 0; e < job.m; ++e) {
    if (job.coef[e] == 0.0) continue;
    const index_t a = job.i[e], b = job.j[e];
    index_t s = fill[a]++;
    other[s] = b, cd[2 * s] = job.coef[e], cd[2 * s + 1] = job.dist[e];
    s = fill[b]++;
    other[s] = a, cd[2 * s] = job.coef[e], cd[2 * s + 1] = job.dist[e];
  }
  parallel_for_each(n, d * 4, job.threads, [&](index_t r) {
    double* acc = alloc_array<double>(d);
    for (index_t k = 0; k < d; ++k) acc[k] = 0.0;
    const T* xr = x + r * d;
    for (index_t s = start[r]; s < start[r + 1]; ++s) {
      const T* xo = x + other[s] * d;
      const double c = cd[2 * s], dist = cd[2 * s + 1];
      if (job.metric == kCosine) {
        for (index_t k = 0; k < d; ++k) acc[k] -= c * double(xo[k]);
      } else {
        const double f = job.metric == kSqEuclidean ? 2.0 * c : (dist > 0.0 ? c / dist : 0.0);
        if (f != 0.0)
          for (index_t k = 0; k < d; ++k) acc[k] += f * (double(xr[k]) - double(xo[k]));
      }
    }
    if (job.metric == kCosine) normalize_backward_row(acc, xr, job.sqn[r], job.eps, d);
    for (index_t k = 0; k < d; ++k) grad[r * d + k] = T(acc[k]);
    std::free(acc);
  });
}

// In place over g (n, d): the gradient with respect to x of a function of x^ = x / max(|x|, eps),
// given its gradient g with respect to x^.
template <class T>
void normalize_backward(void* gv, const void* xhatv, const double* sqn, index_t n, index_t d,
                        double eps, int threads) {
  T* g = static_cast<T*>(gv);
  const T* xhat = static_cast<const T*>(xhatv);
  parallel_for_each(n, d, threads, [&](index_t r) {
    double* acc = alloc_array<double>(d);
    for (index_t k = 0; k < d; ++k) acc[k] = double(g[r * d + k]);
    normalize_backward_row(acc, xhat + r * d, sqn[r], eps, d);
    for (index_t k = 0; k < d; ++k) g[r * d + k] = T(acc[k]);
    std::free(acc);
  });
}

// Distances between paired rows, PyTorch's pairwise_distance: |x1 - x2 + eps|_p (p >= 1, or
// p = inf), and the gradient coef[r] * d dist_r / d x1_r (that of x2_r is its negative).
template <class T>
FL_INLINE double pnorm_row(const T* a, const T* b, index_t d, double p, double eps) {
  double acc = 0.0;
  if (p == 2.0) {
    for (index_t k = 0; k < d; ++k) {
      const double t = double(a[k]) - double(b[k]) + eps;
      acc += t * t;
    }
    return std::sqrt(acc);
  }
  if (p == 1.0) {
    for (index_t k = 0; k < d; ++k) acc += std::fabs(double(a[k]) - double(b[k]) + eps);
    return acc;
  }
  if (std::isinf(p)) {
    for (index_t k = 0; k < d; ++k) {
      const double t = std::fabs(double(a[k]) - double(b[k]) + eps);
      acc = t > acc || t != t ? t : acc;
    }
    return acc;
  }
  for (index_t k = 0; k < d; ++k) acc += std::pow(std::fabs(double(a[k]) - double(b[k]) + eps), p);
  return std::pow(acc, 1.0 / p);
}

template <class T>
void paired_distance(const void* av, const void* bv, index_t n, index_t d, double p, double eps,
                     double* out, int threads) {
  const T* a = static_cast<const T*>(av);
  const T* b = static_cast<const T*>(bv);
  parallel_for_each(n, d, threads, [&](index_t r) { out[r] = pnorm_row(a + r * d, b + r * d, d, p, eps); });
}

template <class T>
void paired_distance_grad(const void* av, const void* bv, index_t n, index_t d, double p,
                          double eps, const double* dist, const double* coef, void* gv,
                          int threads) {
  const T* a = static_cast<const T*>(av);
  const T* b = static_cast<const T*>(bv);
  T* g = static_cast<T*>(gv);
  parallel_for_each(n, d, threads, [&](index_t r) {
    const T *ar = a + r * d, *br = b + r * d;
    T* gr = g + r * d;
    const double c = coef[r], dr = dist[r];
    if (c == 0.0 || !(dr > 0.0)) {  // no contribution, or the norm's kink at 0: gradient 0
      const T z = (dr != dr || c != c) ? T(NAN) : T(0);
      for (index_t k = 0; k < d; ++k) gr[k] = z;
      return;
    }
    if (std::isinf(p)) {  // the first coordinate that attains the max
      index_t at = 0;
      for (index_t k = 0; k < d; ++k)
        if (std::fabs(double(ar[k]) - double(br[k]) + eps) == dr) { at = k; break; }
      for (index_t k = 0; k < d; ++k) gr[k] = T(0);
      const double t = double(ar[at]) - double(br[at]) + eps;
      gr[at] = T(c * (t > 0 ? 1.0 : -1.0));
      return;
    }
    const double scale = p == 2.0 ? c / dr : p == 1.0 ? c : c / std::pow(dr, p - 1.0);
    for (index_t k = 0; k < d; ++k) {
      const double t = double(ar[k]) - double(br[k]) + eps;
      const double s = t > 0 ? 1.0 : (t < 0 ? -1.0 : 0.0);
      const double u = p == 2.0 ? t : p == 1.0 ? s : s * std::pow(std::fabs(t), p - 1.0);
      gr[k] = T(scale * u);
    }
  });
}


// CosFace / ArcFace: per row r with label t, over the cosines c (rows, C) between normalized
// embeddings and class weights, in place: logits z_j = s c_j (j != t), z_t = s phi(c_t) with
// CosFace phi = c - m; ArcFace phi = cos(theta + m) = c cos m - sin(theta) sin m, and where
// theta + m > pi (c <= cos(pi - m)) the fallback phi = c - m sin(pi - m) (InsightFace); with
// easy_margin, phi = c where c <= 0. l_r = logsumexp(z) - z_t. With want_grad, the row is
// overwritten by w_r * grad_scale * dl/dc (dl/dc_j = s p_j; dl/dc_t = s (p_t - 1) phi'(c_t)).
FL_INLINE void margin_phi(const MarginSoftmaxJob& job, double c, double* phi, double* dphi) {
  constexpr double kPi = 3.14159265358979323846;  // M_PI is POSIX, not standard C++
  if (!job.arc) {
    *phi = c - job.m, *dphi = 1.0;
    return;
  }
  const double cm = std::cos(job.m), sm = std::sin(job.m);
  const double cc = c > 1.0 ? 1.0 : (c < -1.0 ? -1.0 : c);
  const double sn = std::sqrt(1.0 - cc * cc);
  if (job.easy ? !(c > 0.0) : !(c > std::cos(kPi - job.m))) {
    *phi = job.easy ? c : c - job.m * std::sin(kPi - job.m);
    *dphi = 1.0;
    return;
  }
  *phi = cc * cm - sn * sm;
  *dphi = cm + (sn > 0.0 ? sm * cc / sn : 0.0);  // d sin(theta)/dc taken 0 at |c| = 1
}

template <class T>
double margin_softmax(const MarginSoftmaxJob& job) {
  const index_t C = job.C;
  const T s = T(job.s);
  return sum_over_rows(job.rows, C, job.threads, [&](index_t r) {
    T* z = static_cast<T*>(job.cos) + r * C;
    const index_t t = job.labels[r];
    double phi, dphi;
    margin_phi(job, double(z[t]), &phi, &dphi);
    for (index_t j = 0; j < C; ++j) z[j] *= s;
    z[t] = T(job.s * phi);
    const double zt = double(z[t]);
    const T mx = row_max(z, C);
    const double S = row_exp_sum(z, C, mx, job.want_grad ? z : nullptr);
    const double loss = std::log(S) + double(mx) - zt;
    const double w = job.weight ? job.weight[r] : 1.0;
    if (job.row_loss) job.row_loss[r] = w * loss;
    if (job.want_grad) {
      const double k = w * job.grad_scale;
      const T f = T(k * job.s / S);
      for (index_t j = 0; j < C; ++j) z[j] = z[j] * f;
      z[t] = T(k * job.s * (std::exp(zt - double(mx)) / S - 1.0) * dphi);
    }
    return w == 0.0 ? 0.0 : w * loss;
  });
}

}  // namespace losses
FL_NAMESPACE_END
