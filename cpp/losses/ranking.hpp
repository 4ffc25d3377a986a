// Learning-to-rank losses over query groups: RankNet (Burges et al. 2005), LambdaRank / LambdaMART
// (Burges 2010; LightGBM's lambdarank objective), ListNet (Cao et al. 2007) and ListMLE (Xia et al.
// 2008). One "row" of the row driver (rowwise.hpp) is one group: documents
// [job.offsets[r], job.offsets[r + 1]) of the flat scores x and relevance labels targets. A group's
// value is weighted by its sample weight; derivatives are scaled by that weight and grad_scale.
// Every group is computed in double by one thread, so results do not depend on the thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "binary.hpp"  // LogisticParts: softplus and sigmoid of one pair's score difference
#include "fastloss/job.hpp"
#include "fastloss/rowwise.hpp"

FL_NAMESPACE_BEGIN
namespace losses {

// Scratch per document: an index (the sort order), the gradient and Hessian sums and `Cols`
// columns of per-position doubles.
template <class T, int Cols = 3>
inline constexpr int kGroupScratch = int((sizeof(index_t) + (2 + Cols) * sizeof(double)) / sizeof(T));

// Groups up to this size are sorted by counting each document's rank (branch-free, vectorized:
// query groups are mostly small), larger ones by std::sort.
inline constexpr index_t kRankSort = 32;

template <class V, class Before>
void insertion_sort(V* v, index_t m, Before before) {
  for (index_t i = 1; i < m; ++i) {
    const V x = v[i];
    index_t j = i;
    for (; j > 0 && before(x, v[j - 1]); --j) v[j] = v[j - 1];
    v[j] = x;
  }
}

// An integer whose order is the order of the doubles (+0 and -0 equal), NaN below every number.
inline std::int64_t ordered_key(double x) {
  x = x + 0.0;  // -0 -> +0
  std::int64_t b;
  __builtin_memcpy(&b, &x, sizeof b);
  b ^= (b >> 63) & INT64_MAX;  // negative numbers: larger magnitude, smaller integer
  return x != x ? INT64_MIN + 1 : b;
}

// One group's inputs and outputs, and its scratch carved out of the driver's buffer.
template <class T>
struct Group {
  const T* s;  // scores
  const T* y;  // relevance labels
  T* g;
  T* h;
  index_t m;
  double w;   // the group's sample weight
  double sc;  // w * grad_scale: the factor of every derivative
  index_t* order;
  double* gd;
  double* hd;
  double* col;  // the columns of m doubles: col + c * m
  Group(const RowJob& job, index_t r, T* buf) {
    const index_t b = job.offsets[r];
    m = job.offsets[r + 1] - b;
    s = static_cast<const T*>(job.x) + b;
    y = static_cast<const T*>(job.targets) + b;
    g = job.grad_out ? static_cast<T*>(job.grad_out) + b : nullptr;
    h = job.hess_out ? static_cast<T*>(job.hess_out) + b : nullptr;
    w = job.sample_weight ? job.sample_weight[r] : 1.0;
    sc = w * job.grad_scale;
    order = reinterpret_cast<index_t*>(buf);
    gd = reinterpret_cast<double*>(order + m);
    hd = gd + m;
    col = hd + m;
    for (index_t i = 0; i < m; ++i) gd[i] = hd[i] = 0.0;
  }
  // sort_by for groups of up to W documents: the rank of document i is the number of documents
  // before it, #{j : key_j > key_i} + #{j < i : key_j == key_i}, counted over W lanes (a fixed
  // count: it vectorizes; the lanes past m hold a key before nothing).
  template <int W>
  void rank_sort(const T* key, double* sorted) {
    alignas(64) std::int64_t k[W];
    for (index_t i = 0; i < m; ++i) k[i] = ordered_key(double(key[i]));
    for (index_t i = m; i < W; ++i) k[i] = INT64_MIN;
    for (index_t i = 0; i < m; ++i) {
      const std::int64_t ki = k[i], below = ki - 1;  // ki > INT64_MIN
      std::int64_t r = 0;
      for (int j = 0; j < W; ++j) r += k[j] > (j < i ? below : ki);
      order[r] = i;
      sorted[r] = double(key[i]);
    }
  }
  // The documents by decreasing key, ties by position (a stable order), NaN keys last, into
  // `order`; the keys in that order into `sorted`.
  void sort_by(const T* key, double* sorted) {
    if (m <= kRankSort / 2) return rank_sort<kRankSort / 2>(key, sorted);
    if (m <= kRankSort) return rank_sort<kRankSort>(key, sorted);
    auto before = [](double u, double v) { return u > v || (v != v && u == u); };
    for (index_t i = 0; i < m; ++i) order[i] = i;
    std::sort(order, order + m, [key, before](index_t a, index_t b) {
      return before(double(key[a]), double(key[b])) ||
             (!before(double(key[b]), double(key[a])) && a < b);
    });
    for (index_t i = 0; i < m; ++i) sorted[i] = double(key[order[i]]);
  }
  // Writes the accumulated derivatives times `factor * sc`: gd, hd indexed by document, or by
  // position in `order` (sorted).
  template <bool G, bool H>
  void write(double factor, bool sorted = false) const {
    const double c = factor * sc;
    for (index_t i = 0; G && i < m; ++i) g[sorted ? order[i] : i] = static_cast<T>(c * gd[i]);
    for (index_t i = 0; H && i < m; ++i) h[sorted ? order[i] : i] = static_cast<T>(c * hd[i]);
  }
};

// Pairs are handled in chunks: their positions and score differences gathered, the logistic terms
// computed in one branch-free loop (vectorized), then summed and scattered in pair order (the
// same order every time: deterministic).
inline constexpr int kPairChunk = 64;
struct PairChunk {
  index_t hi[kPairChunk], lo[kPairChunk];
  double d[kPairChunk], w[kPairChunk], loss[kPairChunk], slope[kPairChunk], curve[kPairChunk];
  int n = 0;
};

// log(1 + exp(-sigma d)) of a pair whose score difference is d = s_hi - s_lo, its slope
// -sigma p and curvature sigma^2 p (1 - p), p = sigmoid(-sigma d).
struct PairLogistic {
  double loss, slope, curve;
  FL_INLINE PairLogistic(double sigma, double d) {
    const LogisticParts<double> q(sigma * d);
    loss = q.sp_neg;
    slope = -sigma * q.sig_neg;
    curve = sigma * sigma * q.sig_neg * q.sig;
  }
};

// RankNet: the mean over the group's pairs with different labels (y_i > y_j) of
// log(1 + exp(-sigma (s_i - s_j))); a group without such a pair has value 0. Parameters: (sigma).
template <class T>
struct RankNet {
  static constexpr RowSpec spec{RowTarget::rows, 1, nullptr, false, kGroupScratch<T>};
  double sigma;
  explicit RankNet(const double* v) : sigma(v[0]) {}
  template <bool G, bool H>
  double row(const RowJob& job, index_t r, T* buf) const {
    Group<T> q(job, r, buf);
    double* ss = q.col;  // scores and labels by position in the label order
    double* ys = q.col + q.m;
    q.sort_by(q.y, ys);
    for (index_t b = 0; b < q.m; ++b) ss[b] = double(q.s[q.order[b]]);
    // Pairs: every position against those after the end of its label's block (lower labels).
    double pairs = 0.0, loss = 0.0;
    PairChunk c;
    auto flush = [&] {
      for (int t = 0; t < c.n; ++t) {
        const PairLogistic p(sigma, c.d[t]);
        c.loss[t] = p.loss, c.slope[t] = p.slope, c.curve[t] = p.curve;
      }
      for (int t = 0; t < c.n; ++t) {
        loss += c.loss[t];
        if (G) q.gd[c.hi[t]] += c.slope[t], q.gd[c.lo[t]] -= c.slope[t];
        if (H) q.hd[c.hi[t]] += c.curve[t], q.hd[c.lo[t]] += c.curve[t];
      }
      c.n = 0;
    };
    for (index_t a = 0, end = 0; a < q.m; ++a) {
      if (end <= a) {
        end = a + 1;
        while (end < q.m && !(ys[end] < ys[a])) ++end;
      }
      pairs += double(q.m - end);
      for (index_t b = end; b < q.m; ++b) {
        c.hi[c.n] = a, c.lo[c.n] = b, c.d[c.n] = ss[a] - ss[b];
        if (++c.n == kPairChunk) flush();
      }
    }
    flush();
    const double inv = pairs > 0 ? 1.0 / pairs : 0.0;
    if (G) q.template write<G, H>(inv, true);
    return q.w * loss * inv;
  }
};

// LambdaRank with NDCG (LightGBM's lambdarank, rank_objective.hpp): documents sorted by score
// (stable), gain 2^y - 1, discount 1 / log2(2 + rank). A pair (i, j) of different labels with i
// ranked within the first `trunc` positions has weight
//   D_ij = |gain_i - gain_j| |disc(rank_i) - disc(rank_j)| / maxDCG@trunc,
// divided by (0.01 + |s_i - s_j|) when `norm` (and the group's scores are not all equal); its
// value term is D_ij log(1 + exp(-sigma (s_hi - s_lo))), its derivatives LightGBM's lambdas and
// Hessians. With `norm`, the group's terms are finally scaled by log2(1 + L) / L, L the sum of
// 2 |lambda| over pairs. Documents scored -inf are skipped (LightGBM's kMinScore). Parameters:
// (trunc (0: the group size), sigma, norm). job.extra, when set, holds each group's
// 1 / maxDCG@trunc (double; inverse_max_dcg): a booster's labels are the same at every round.
template <class T>
struct LambdaRank {
  static constexpr RowSpec spec{RowTarget::rows, 3, nullptr, false, kGroupScratch<T, 4>};
  index_t trunc;
  double sigma;
  bool norm;
  explicit LambdaRank(const double* v) : trunc(index_t(v[0])), sigma(v[1]), norm(v[2] != 0.0) {}
  // Gains of the integer labels 0..30 and the discounts of the first positions come from tables
  // (LightGBM's label_gain and discount tables): no exp2 / log2 per document.
  static constexpr index_t kTable = 4096;
  struct Tables {
    double gain[31], discount[kTable];
    Tables() {
      for (int i = 0; i < 31; ++i) gain[i] = std::exp2(double(i)) - 1.0;
      for (index_t r = 0; r < kTable; ++r) discount[r] = 1.0 / std::log2(2.0 + double(r));
    }
  };
  static const Tables& tables() {
    static const Tables t;  // built once, thread-safe
    return t;
  }
  // 2^y - 1 (exact for integers up to 1023; +inf from 1024 on: the binding's callers reject such
  // labels). The integer is formed only from a label in [0, 31).
  static double gain(double y) {
    const bool small = y >= 0.0 && y < 31.0;
    const int i = small ? int(y) : 0;
    return small && double(i) == y ? tables().gain[i] : std::exp2(y) - 1.0;
  }
  static double discount(index_t rank) {
    return rank < kTable ? tables().discount[rank] : 1.0 / std::log2(2.0 + double(rank));
  }
  // maxDCG@k of one group's labels y[0..m): the gains in decreasing order times the discounts of
  // the first k positions. Integer labels 0..30 (LightGBM's) are counted, not sorted; other labels
  // sort their gains (in tmp, m doubles).
  static double max_dcg(const T* y, index_t m, index_t k, double* tmp) {
    const index_t top = std::min(k, m);
    index_t count[31] = {};
    bool counted = true;
    for (index_t i = 0; i < m; ++i) {
      const double v = double(y[i]);
      const bool small = v >= 0.0 && v < 31.0;
      const int label = small ? int(v) : 0;
      const bool ok = small && double(label) == v;
      counted &= ok;
      count[label] += ok;
    }
    double dcg = 0.0;
    if (counted) {
      const Tables& t = tables();
      index_t a = 0;
      for (int label = 30; label >= 0 && a < top; --label)
        for (index_t c = 0; c < count[label] && a < top; ++c) dcg += t.gain[label] * discount(a++);
      return dcg;
    }
    for (index_t i = 0; i < m; ++i) tmp[i] = gain(double(y[i]));
    auto greater = [](double u, double v) { return u > v; };
    if (m <= kRankSort) insertion_sort(tmp, m, greater);
    else std::partial_sort(tmp, tmp + top, tmp + m, greater);
    for (index_t a = 0; a < top; ++a) dcg += tmp[a] * discount(a);
    return dcg;
  }
  static double inverse_max_dcg(const T* y, index_t m, index_t k, double* tmp) {
    const double dcg = max_dcg(y, m, k, tmp);
    return dcg > 0 ? 1.0 / dcg : 0.0;
  }
  // Pairs go through a batch in three passes: gathered (positions, score difference s_hi - s_lo,
  // the sign of a's side, the NDCG weight D_ij), their logistic terms computed in one branch-free
  // loop over the whole batch (it vectorizes: no reduction, padded to a multiple of 8), then summed
  // and scattered in pair order (the order of LightGBM's loop; deterministic).
  struct Pairs {
    static constexpr int kCap = 64;
    index_t a[kCap], b[kCap];
    double d[kCap], sign[kCap], w[kCap], lam[kCap], hess[kCap], value[kCap];
  };
  // lam = D_ij * (-sigma sigmoid(-sigma d)) (<= 0), hess = D_ij sigma^2 p (1 - p), value (V only) =
  // D_ij log(1 + exp(-sigma d)), with D_ij / (0.01 + |d|) when BD (by score distance).
  template <bool BD, bool V>
  void logistic(Pairs& p, int count) const {
    const int n = (count + 7) & ~7;
    for (int t = count; t < n; ++t) p.d[t] = p.w[t] = 0.0;  // padding: finite, never read back
    const double sg = sigma, sg2 = sigma * sigma;
    for (int t = 0; t < n; ++t) {
      const double d = p.d[t], z = sg * d, w = BD ? p.w[t] / (0.01 + std::fabs(d)) : p.w[t];
      const double e = vm::exp_nonpos(-std::fabs(z)), inv = 1.0 / (1.0 + e);
      const bool pos = z >= 0.0;
      const double sig = pos ? inv : e * inv, sig_neg = pos ? e * inv : inv;
      p.lam[t] = w * (-sg * sig_neg);
      p.hess[t] = w * (sg2 * sig_neg * sig);
      if (V) p.value[t] = w * ((pos ? 0.0 : -z) + vm::log1p(e));
    }
  }
  template <bool BD, bool V, bool G, bool H>
  void flush(Pairs& p, int n, Group<T>& q, double& loss, double& sum_lambdas) const {
    logistic<BD, V>(p, n);
    // Pairs come in runs of one position a: its sums stay in registers during the run.
    index_t a = p.a[0];
    double ga = q.gd[a], ha = q.hd[a];
    for (int t = 0; t < n; ++t) {
      if (p.a[t] != a) {
        q.gd[a] = ga, q.hd[a] = ha;
        a = p.a[t], ga = q.gd[a], ha = q.hd[a];
      }
      const double l = p.lam[t], sl = p.sign[t] * l;  // a's side: +lam if a is the higher label
      const index_t b = p.b[t];
      if (V) loss += p.value[t];
      sum_lambdas -= 2.0 * l;
      if (G) ga += sl, q.gd[b] -= sl;
      if (H) ha += p.hess[t], q.hd[b] += p.hess[t];
    }
    q.gd[a] = ga, q.hd[a] = ha;
  }
  // Every pair of positions (a, b), a < b, a within the first k and neither document at -inf,
  // with different labels (the others are written and not counted: no branch).
  template <bool BD, bool V, bool G, bool H>
  void pairs(Group<T>& q, index_t k, const double* ss, const double* ys, const double* gs,
             const double* ds, double inv_max_dcg, double& loss, double& sum_lambdas) const {
    const double ninf = -__builtin_huge_val();
    const index_t m = q.m;
    Pairs p;
    int n = 0;
    for (index_t a = 0; a < m - 1 && a < k; ++a) {
      const double sa = ss[a], ya = ys[a], ga = gs[a], da = ds[a];
      if (sa == ninf) continue;
      for (index_t b = a + 1; b < m; ++b) {
        const double sign = ya > ys[b] ? 1.0 : -1.0;
        p.a[n] = a, p.b[n] = b;
        p.sign[n] = sign;
        p.d[n] = sign * (sa - ss[b]);  // s_hi - s_lo
        p.w[n] = std::fabs(ga - gs[b]) * std::fabs(da - ds[b]) * inv_max_dcg;
        n += ya != ys[b] && ss[b] != ninf;
        if (n == Pairs::kCap) flush<BD, V, G, H>(p, n, q, loss, sum_lambdas), n = 0;
      }
    }
    if (n > 0) flush<BD, V, G, H>(p, n, q, loss, sum_lambdas);
  }
  template <bool G, bool H>
  double row(const RowJob& job, index_t r, T* buf) const {
    Group<T> q(job, r, buf);
    const index_t m = q.m, k = trunc > 0 ? trunc : m;
    if (m < 2) {
      if (G) q.template write<G, H>(0.0);
      return 0.0;
    }
    double *ss = q.col, *ys = q.col + m, *gs = q.col + 2 * m, *tmp = q.col + 3 * m;
    const double inv_max_dcg = job.extra ? static_cast<const double*>(job.extra)[r]
                                         : inverse_max_dcg(q.y, m, k, tmp);
    q.sort_by(q.s, ss);
    const double ninf = -__builtin_huge_val();
    index_t worst_at = m - 1;
    if (ss[worst_at] == ninf) --worst_at;
    const bool by_distance = norm && ss[0] != ss[worst_at];
    // by position in the score order: labels and gains; discounts from the table
    for (index_t b = 0; b < m; ++b) {
      ys[b] = double(q.y[q.order[b]]);
      gs[b] = gain(ys[b]);
    }
    const double* ds = tables().discount;
    if (m > kTable) {
      for (index_t b = 0; b < m; ++b) tmp[b] = discount(b);
      ds = tmp;
    }
    double loss = 0.0, sum_lambdas = 0.0;
    const bool v = job.want_value;
    auto run = [&](auto bd, auto val) {
      pairs<decltype(bd)::value, decltype(val)::value, G, H>(q, k, ss, ys, gs, ds, inv_max_dcg, loss,
                                                            sum_lambdas);
    };
    using yes = std::true_type;
    using no = std::false_type;
    if (by_distance) v ? run(yes(), yes()) : run(yes(), no());
    else v ? run(no(), yes()) : run(no(), no());
    const double factor = norm && sum_lambdas > 0 ? std::log2(1.0 + sum_lambdas) / sum_lambdas : 1.0;
    if (G) q.template write<G, H>(factor, true);
    return q.w * loss * factor;
  }
};

// ListNet (top-one probabilities): l = -sum_i softmax(y)_i log softmax(s)_i
//   = logsumexp(s) - sum_i softmax(y)_i s_i; gradient softmax(s) - softmax(y), Hessian diagonal
// p (1 - p) with p = softmax(s).
template <class T>
struct ListNet {
  static constexpr RowSpec spec{RowTarget::rows, 0, nullptr, false, kGroupScratch<T>};
  explicit ListNet(const double*) {}
  template <bool G, bool H>
  double row(const RowJob& job, index_t r, T* buf) const {
    Group<T> q(job, r, buf);
    if (q.m == 0) return 0.0;
    const double ms = double(row_max(q.s, q.m)), my = double(row_max(q.y, q.m));
    double zs = 0.0, zy = 0.0, ys = 0.0;
    for (index_t i = 0; i < q.m; ++i) {
      const double es = std::exp(double(q.s[i]) - ms), ey = std::exp(double(q.y[i]) - my);
      q.gd[i] = es, q.hd[i] = ey;
      zs += es, zy += ey;
      ys += ey == 0.0 ? 0.0 : ey * (double(q.s[i]) - ms);
    }
    const double loss = std::log(zs) - ys / zy;
    if (G) {
      for (index_t i = 0; i < q.m; ++i) {
        const double p = q.gd[i] / zs, t = q.hd[i] / zy;
        q.gd[i] = p - t;
        q.hd[i] = p * (1.0 - p);
      }
      q.template write<G, H>(1.0);
    }
    return q.w * loss;
  }
};

// ListMLE: the negative Plackett-Luce log-likelihood of the order of decreasing labels (ties by
// position): with pi that order and L_a = logsumexp(s_pi(a), ..., s_pi(m-1)),
//   l = sum_a (L_a - s_pi(a)),  dl/ds_pi(b) = sum_{a <= b} exp(s_pi(b) - L_a) - 1,
//   d2l/ds_pi(b)^2 = sum_{a <= b} p_ab (1 - p_ab),  p_ab = exp(s_pi(b) - L_a).
// The suffix log-sum-exps and the prefix sums over a are kept in the log domain (no overflow).
template <class T>
struct ListMLE {
  static constexpr RowSpec spec{RowTarget::rows, 0, nullptr, false, kGroupScratch<T>};
  explicit ListMLE(const double*) {}
  static double logaddexp(double a, double b) {
    const double hi = a > b ? a : b, lo = a > b ? b : a;
    if (hi == -__builtin_huge_val()) return hi;
    return hi + std::log1p(std::exp(lo - hi));
  }
  template <bool G, bool H>
  double row(const RowJob& job, index_t r, T* buf) const {
    Group<T> q(job, r, buf);
    const index_t m = q.m;
    q.sort_by(q.y, q.col);
    double* L = q.hd;  // suffix log-sum-exps, then overwritten by the Hessian in place
    double loss = 0.0, acc = -__builtin_huge_val();
    for (index_t a = m; a-- > 0;) {
      const double s = double(q.s[q.order[a]]);
      acc = logaddexp(acc, s);
      L[a] = acc;
      loss += acc - s;
    }
    if (G) {
      double c1 = -__builtin_huge_val(), c2 = -__builtin_huge_val();  // log sum exp(-L), exp(-2L)
      for (index_t b = 0; b < m; ++b) {
        const index_t i = q.order[b];
        const double s = double(q.s[i]);
        c1 = logaddexp(c1, -L[b]);
        c2 = logaddexp(c2, -2.0 * L[b]);
        const double p1 = std::exp(s + c1), p2 = std::exp(2.0 * s + c2);
        q.gd[i] = p1 - 1.0;
        L[b] = p1 - p2;  // L[b] is not read again; the Hessian goes to document i below
      }
      // The Hessian was stored by sorted position: move it to document order through gd's
      // companion (order is a permutation, so a second pass places each value once).
      for (index_t b = 0; b < m; ++b) {
        const index_t i = q.order[b];
        if (H) q.h[i] = static_cast<T>(q.sc * L[b]);
        q.g[i] = static_cast<T>(q.sc * q.gd[i]);
      }
    }
    return q.w * loss;
  }
};

// Margin ranking loss on explicit pairs (PyTorch's margin_ranking_loss), one row of the row driver
// per pair r: x1 = job.x, x2 = job.extra, labels y = job.targets in {-1, +1} (checked by the
// binding), l = max(0, margin - y (x1 - x2)) in double. grad_out receives d l / d x1 = -y where the
// hinge is positive (0 at and beyond the kink; NaN for a NaN pair); the gradient for x2 is its
// negative, formed by the caller. The Hessian is 0. Parameters: (margin).
template <class T>
struct MarginRanking {
  static constexpr RowSpec spec{RowTarget::values, 1, "x2", false, 0};
  double margin;
  explicit MarginRanking(const double* v) : margin(v[0]) {}
  template <bool G, bool H>
  FL_INLINE double row(const RowJob& job, index_t r, T*) const {
    const double y = double(static_cast<const T*>(job.targets)[r]);
    const double x1 = double(static_cast<const T*>(job.x)[r]), x2 = double(static_cast<const T*>(job.extra)[r]);
    const double u = margin - y * (x1 - x2), w = job.sample_weight ? job.sample_weight[r] : 1.0;
    // selects, not branches: the hinge is active for about half of the pairs, at random
    const double active = u > 0.0 ? 1.0 : 0.0, l = u < 0.0 ? 0.0 : u;  // NaN u propagates
    if (G) {
      const double g = -y * (w * job.grad_scale) * active;
      static_cast<T*>(job.grad_out)[r] = static_cast<T>(u != u ? u : g);
    }
    if (H) static_cast<T*>(job.hess_out)[r] = T(0);
    return w * l;
  }
};

}  // namespace losses
FL_NAMESPACE_END
