// Survival losses. derivatives are with respect to the prediction.
//
// AFT: the accelerated failure time model, log T = y_pred + sigma Z, with Z normal, logistic or
// extreme-value (minimum Gumbel), and interval-censored labels [lower, upper] (XGBoost's
// survival:aft; Barnwal, Cho & Hocking 2022). Elementwise bodies (registry.hpp) computed in double:
//   uncensored (lower == upper = t): -log f(z) + log(sigma t),      z = (log t - y_pred) / sigma
//   censored: -log(F(z_u) - F(z_l))   (upper = inf: right-, lower = 0: left-censored)
// with the exact derivatives; XGBoost's clipping of them is the boosting adapters' business.
//
// Cox: the negative partial log-likelihood of log hazard ratios with Breslow's or Efron's ties
// (Cox 1972, Breslow 1974, Efron 1977): one stable radix sort of the times, then suffix sums of
// w exp(eta) (the risk sets) and prefix sums over the event times (CPU only).
//
// Harrell's concordance index by a sort and a Fenwick tree over risk ranks (CPU only).
#pragma once

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "fastloss/config.hpp"
#include "fastloss/vmath.hpp"

FL_NAMESPACE_BEGIN
namespace losses {

FL_HD FL_INLINE double erfc_(double x) {
#if defined(__CUDA_ARCH__)
  return ::erfc(x);
#else
  return std::erfc(x);
#endif
}

inline constexpr double kInf = __builtin_huge_val();

// Each distribution of Z gives log f, log F, log S (S = 1 - F), psi = -(log f)', psi', and the
// two one-sided hazards with their curvature terms, accurate in both tails:
//   right(z) = (f/S, f/S - psi)      left(z) = (f/F, f/F + psi)
// (the Hessian of -log S(z(p)) is right.first * right.second / sigma^2, of -log F likewise).
struct Pair {
  double first, second;
};

// Standard normal. S from erfc while it is a normal number; beyond z = 30 from the continued
// fraction of the Mills ratio, f/S = z + 1 / (z + 2 / (z + 3 / (z + ...))).
struct AftNormal {
  static constexpr double kHalfLog2Pi = 0.91893853320467274178;
  FL_HD static double log_pdf(double z) { return -0.5 * z * z - kHalfLog2Pi; }
  FL_HD static double psi(double z) { return z; }
  FL_HD static double dpsi(double) { return 1.0; }
  // f/S - z for z >= 30.
  FL_HD static double mills_tail(double z) {
    double t = z;
    for (int k = 24; k >= 2; --k) t = z + k / t;
    return 1.0 / t;
  }
  FL_HD static double log_sf(double z) {
    if (z >= 30.0) return log_pdf(z) - vm::log(z + mills_tail(z));
    return vm::log(0.5 * erfc_(z * 0.70710678118654752440));
  }
  FL_HD static double log_cdf(double z) { return log_sf(-z); }
  FL_HD static Pair right(double z) {
    if (z >= 30.0) {
      const double c = mills_tail(z);
      return {z + c, c};
    }
    const double h = vm::exp(log_pdf(z) - log_sf(z));
    return {h, h - z};
  }
  FL_HD static Pair left(double z) { return right(-z); }
};

// Standard logistic: F = sigmoid(z), f = F (1 - F), psi = tanh(z / 2).
struct AftLogistic {
  FL_HD static double log_pdf(double z) { return -vm::softplus(z) - vm::softplus(-z); }
  FL_HD static double psi(double z) { return vm::tanh(0.5 * z); }
  FL_HD static double dpsi(double z) { return 2.0 * vm::sigmoid(z) * vm::sigmoid(-z); }
  FL_HD static double log_sf(double z) { return -vm::softplus(z); }
  FL_HD static double log_cdf(double z) { return -vm::softplus(-z); }
  FL_HD static Pair right(double z) { return {vm::sigmoid(z), vm::sigmoid(-z)}; }
  FL_HD static Pair left(double z) { return {vm::sigmoid(-z), vm::sigmoid(z)}; }
};

// Extreme value (minimum Gumbel; XGBoost's "extreme"): S = exp(-e^z), f = e^z S, psi = e^z - 1.
struct AftExtreme {
  FL_HD static double log_pdf(double z) { return z - vm::exp(z); }
  FL_HD static double psi(double z) { return vm::expm1(z); }
  FL_HD static double dpsi(double z) { return vm::exp(z); }
  FL_HD static double log_sf(double z) { return -vm::exp(z); }
  FL_HD static double log_cdf(double z) {  // log(1 - exp(-w)), w = e^z
    const double w = vm::exp(z);
    return w > 0.69314718055994530942 ? vm::log1p(-vm::exp(-w)) : vm::log(-vm::expm1(-w));
  }
  FL_HD static Pair right(double z) { return {vm::exp(z), 1.0}; }
  // f/F = w / expm1(w); f/F + psi = (1 - e^w (1 - w)) / expm1(w), by its series for small w
  // (where the two terms cancel).
  FL_HD static Pair left(double z) {
    const double w = vm::exp(z);
    if (w < 0.01) {
      if (!(w > 1e-300)) return {1.0 - 0.5 * w, 0.5 * w};
      const double em = vm::expm1(w);
      const double num = w * w * (0.5 + w * (1.0 / 3 + w * (1.0 / 8 + w * (1.0 / 30 + w * (1.0 / 144)))));
      return {w / em, num / em};
    }
    const double r = w / vm::expm1(w);  // 0 once expm1 overflows
    return {r, r + vm::expm1(z)};
  }
};

// params: sigma > 0. y = lower bound, aux = upper bound (inf: right-censored; lower 0:
// left-censored; equal: an observed time), validated by the caller (0 <= lower <= upper, upper > 0).
template <class T, class D>
struct AFT {
  static constexpr bool kAux = true;
  double sigma, inv_sigma, log_sigma;
  FL_HD explicit AFT(const double* prm)
      : sigma(prm[0]), inv_sigma(1.0 / prm[0]), log_sigma(vm::log(prm[0])) {}
  template <bool G, bool H>
  FL_HD FL_INLINE void operator()(T y_lower, T y_pred, T y_upper, T& l, T& g, T& h) const {
    const double lo = static_cast<double>(y_lower), up = static_cast<double>(y_upper);
    const double p = static_cast<double>(y_pred), s2 = inv_sigma * inv_sigma;
    double lv, gv = 0.0, hv = 0.0;
    if (lo == up) {  // observed
      const double log_t = vm::log(lo), z = (log_t - p) * inv_sigma;
      lv = -D::log_pdf(z) + log_sigma + log_t;
      if constexpr (G) gv = -D::psi(z) * inv_sigma;
      if constexpr (H) hv = D::dpsi(z) * s2;
    } else if (!(up < kInf) && up == up) {  // right-censored (lower 0 too: no information)
      if (lo > 0.0) {
        const double z = (vm::log(lo) - p) * inv_sigma;
        lv = -D::log_sf(z);
        const Pair r = D::right(z);
        if constexpr (G) gv = -r.first * inv_sigma;
        if constexpr (H) hv = r.first * r.second * s2;
      } else {
        lv = p == p ? 0.0 : p;  // no information: 0 (NaN for a NaN prediction)
        gv = hv = lv;
      }
    } else if (!(lo > 0.0) && lo == lo) {  // left-censored
      const double z = (vm::log(up) - p) * inv_sigma;
      lv = -D::log_cdf(z);
      const Pair r = D::left(z);
      if constexpr (G) gv = r.first * inv_sigma;
      if constexpr (H) hv = r.first * r.second * s2;
    } else {  // interval-censored: -log(F(z_u) - F(z_l)), from the side of the smaller tail
      // D = S_l (1 - q), q = S_u / S_l (or D = F_u (1 - q), q = F_l / F_u): the Hessian
      // r_l (r_l - psi_l) + r_u (r_u + psi_u) - 2 r_l r_u, r = f / D, keeps the stable one-sided
      // term of the near side, so it tends to the right- (left-) censored one as q -> 0.
      const double zl = (vm::log(lo) - p) * inv_sigma, zu = (vm::log(up) - p) * inv_sigma;
      double ru, rl, curv;
      if (zl > 0.0) {
        const double sl = D::log_sf(zl), q = vm::exp(D::log_sf(zu) - sl);
        const double log_d = sl + vm::log1p(-q);
        const Pair r = D::right(zl);
        lv = -log_d;
        rl = r.first / (1.0 - q);
        ru = vm::exp(D::log_pdf(zu) - log_d);
        curv = rl * (r.second + r.first * q / (1.0 - q)) + ru * (ru + D::psi(zu) - 2.0 * rl);
      } else {
        const double cu = D::log_cdf(zu), q = vm::exp(D::log_cdf(zl) - cu);
        const double log_d = cu + vm::log1p(-q);
        const Pair r = D::left(zu);
        lv = -log_d;
        ru = r.first / (1.0 - q);
        rl = vm::exp(D::log_pdf(zl) - log_d);
        curv = ru * (r.second + r.first * q / (1.0 - q)) + rl * (rl - D::psi(zl) - 2.0 * ru);
      }
      if constexpr (G) gv = (ru - rl) * inv_sigma;
      if constexpr (H) hv = curv * s2;
    }
    l = static_cast<T>(lv);
    if constexpr (G) g = static_cast<T>(gv);
    if constexpr (H) h = static_cast<T>(hv);
  }
};

template <class T>
using AFTNormal = AFT<T, AftNormal>;
template <class T>
using AFTLogistic = AFT<T, AftLogistic>;
template <class T>
using AFTExtreme = AFT<T, AftExtreme>;

}  // namespace losses
FL_NAMESPACE_END

#if !defined(__CUDACC__)
#include "fastloss/parallel.hpp"
#include "fastloss/reduce.hpp"
#include "survival_jobs.hpp"

FL_NAMESPACE_BEGIN
namespace losses {

// An unsigned key with the order of the float x (not NaN); -0 and +0 share the key of +0.
template <class F>
struct KeyOf;
template <>
struct KeyOf<float> {
  using type = std::uint32_t;
};
template <>
struct KeyOf<double> {
  using type = std::uint64_t;
};
template <class F>
FL_INLINE typename KeyOf<F>::type float_key(F x) {
  using K = typename KeyOf<F>::type;
  x = x + F(0);  // -0 -> +0
  K b;
  std::memcpy(&b, &x, sizeof b);
  constexpr K sign = K(1) << (8 * sizeof(K) - 1);
  return (b & sign) ? ~b : (b | sign);
}

// The double whose float_key is k.
FL_INLINE double key_value(std::uint64_t k) {
  constexpr std::uint64_t sign = std::uint64_t(1) << 63;
  const std::uint64_t b = (k & sign) ? (k ^ sign) : ~k;
  double x;
  std::memcpy(&x, &b, sizeof x);
  return x;
}

// Scratch of n elements; MemoryError (std::bad_alloc) rather than a null pointer.
template <class T>
struct Scratch : Buffer<T> {
  explicit Scratch(index_t n) : Buffer<T>(n) {
    if (!this->p) throw std::bad_alloc();
  }
};

// One allocation carved into the arrays of a call: the kernels touch tens of bytes per sample
// of fresh memory, whose page faults cost as much as the arithmetic; on Linux the block asks for
// transparent huge pages (one fault per 2 MiB).
class Arena {
 public:
  explicit Arena(std::size_t bytes) {
    constexpr std::size_t kHuge = std::size_t(1) << 21;
    size_ = (bytes + kHuge - 1) / kHuge * kHuge;
    base_ = static_cast<char*>(std::aligned_alloc(kHuge, size_ > 0 ? size_ : kHuge));
    if (!base_) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    madvise(base_, size_, MADV_HUGEPAGE);
#endif
  }
  ~Arena() { std::free(base_); }
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  // Bytes for n elements of T, 64-byte aligned (sum these for the constructor).
  template <class T>
  static std::size_t bytes(index_t n) {
    return (sizeof(T) * static_cast<std::size_t>(n > 0 ? n : 1) + 63) / 64 * 64;
  }
  template <class T>
  T* take(index_t n) {
    T* p = reinterpret_cast<T*>(base_ + used_);
    used_ += bytes<T>(n);
    return p;
  }

 private:
  char* base_ = nullptr;
  std::size_t size_ = 0, used_ = 0;
};

// Stable LSD radix sort of keys[0..n) by 11-bit digits (3 passes for 32-bit keys, 6 for 64-bit;
// 2048 counters stay in L1), carrying the original positions. Digits equal in every key are
// skipped. The result lies in (*keys, *idx): the given arrays or the scratch ones.
inline constexpr int kRadixBits = 11;
template <class K, class I>
void radix_sort(index_t n, K** keys, I** idx, K* keys_tmp, I* idx_tmp) {
  constexpr int kBuckets = 1 << kRadixBits, kDigits = (8 * sizeof(K) + kRadixBits - 1) / kRadixBits;
  constexpr K kMask = kBuckets - 1;
  Scratch<index_t> hist_buf(kDigits * kBuckets);
  index_t* hist = hist_buf.p;
  for (int i = 0; i < kDigits * kBuckets; ++i) hist[i] = 0;
  const K* k0 = *keys;
  for (index_t i = 0; i < n; ++i) {
    const K k = k0[i];
    for (int d = 0; d < kDigits; ++d) ++hist[d * kBuckets + ((k >> (kRadixBits * d)) & kMask)];
  }
  K *src_k = *keys, *dst_k = keys_tmp;
  I *src_i = *idx, *dst_i = idx_tmp;
  bool first = true;
  for (int d = 0; d < kDigits; ++d) {
    index_t* h = hist + d * kBuckets;
    const int shift = kRadixBits * d;
    if (n == 0 || h[(src_k[0] >> shift) & kMask] == n) continue;  // the same digit everywhere
    index_t sum = 0;
    for (int b = 0; b < kBuckets; ++b) {
      const index_t c = h[b];
      h[b] = sum;
      sum += c;
    }
    if (first) {
      for (index_t i = 0; i < n; ++i) {
        const K k = src_k[i];
        const index_t pos = h[(k >> shift) & kMask]++;
        dst_k[pos] = k;
        dst_i[pos] = static_cast<I>(i);
      }
    } else {
      for (index_t i = 0; i < n; ++i) {
        const K k = src_k[i];
        const index_t pos = h[(k >> shift) & kMask]++;
        dst_k[pos] = k;
        dst_i[pos] = src_i[i];
      }
    }
    K* tk = src_k;
    src_k = dst_k, dst_k = tk;
    I* ti = src_i;
    src_i = dst_i, dst_i = ti;
    first = false;
  }
  if (first)
    for (index_t i = 0; i < n; ++i) src_i[i] = static_cast<I>(i);
  *keys = src_k, *idx = src_i;
}

inline constexpr index_t kCoxChunk = 16384;  // elements per chunk of the parallel first pass

// The Cox kernel for predictions of type T, times of type F, positions of type I.
//
// Risk set of time t: R(t) = {j : t_j >= t}. With u_j = w_j exp(eta_j - m) (m = max eta, so no
// overflow), S_g = sum over R(t_g) of u, the events D_g at t_g (d_g of them, weights W_g,
// E_g = sum over D_g of u) and a_g = W_g / d_g, the loss is
//   sum_g [ -sum_{D_g} w_i (eta_i - m) + a_g sum_{r<d_g} log(S_g - (r/d_g) E_g) ]   (Efron)
// and Breslow's is its r/d_g = 0 form. With the group sums
//   A_g = a_g sum_r 1/S_gr, B_g = a_g sum_r f_r/S_gr, A2_g = a_g sum_r 1/S_gr^2,
//   B2_g = a_g sum_r f_r/S_gr^2, C2_g = a_g sum_r f_r^2/S_gr^2      (f_r = r/d_g)
// and cumA(t) = sum_{t_g <= t} A_g (cumA2 likewise), the exact derivatives are
//   grad_j = u_j (cumA - delta_j B) - w_j delta_j
//   hess_j = u_j (cumA - delta_j B) - u_j^2 (cumA2 - delta_j (2 B2 - C2))
// (B, B2, C2 of j's own group). Every sum runs in one fixed order: the result does not depend
// on the thread count.
template <class T, class F, class I>
void cox_kernel(CoxJob& job) {
  using K = std::uint64_t;
  const index_t n = job.n;
  const T* pred = static_cast<const T*>(job.pred);
  const F* time = static_cast<const F*>(job.time);
  const index_t ps = job.pred_stride, ts = job.time_stride;
  const double* w = job.weight;

  // 1. Keys, events, validity, max eta, the event weight and sum of w delta eta (parallel over
  // fixed chunks, combined in chunk order).
  Arena arena(2 * Arena::bytes<K>(n) + 2 * Arena::bytes<I>(n) + 3 * Arena::bytes<std::uint8_t>(n) +
              3 * Arena::bytes<double>(n) + Arena::bytes<double>(w ? n : 1));
  K* const keys = arena.take<K>(n);
  K* const keys_tmp = arena.take<K>(n);
  I* const idx = arena.take<I>(n);
  I* const idx_tmp = arena.take<I>(n);
  std::uint8_t* const ev = arena.take<std::uint8_t>(n);
  const index_t chunks = (n + kCoxChunk - 1) / kCoxChunk;
  Scratch<double> part(4 * chunks);
  Scratch<index_t> bad(chunks);
  parallel_chunks(chunks, kCoxChunk, job.threads, [&](index_t c) {
    const index_t b = c * kCoxChunk, e = min_(n, b + kCoxChunk);
    double wsum = 0.0, weta = 0.0, mx = -kInf;
    bool narrow = true;  // every time a float32 value
    index_t first_bad = -1;
    for (index_t i = b; i < e; ++i) {
      F t = time[i * ts];
      bool d;
      if (job.event) {
        d = job.event[i * job.event_stride] != 0;
        if (first_bad < 0 && t < F(0)) first_bad = i;
      } else {
        d = t > F(0);
        t = t < F(0) ? -t : t;
      }
      if (first_bad < 0 && t != t) first_bad = i;
      const double td = static_cast<double>(t);
      narrow &= static_cast<double>(static_cast<float>(td)) == td;
      keys[i] = float_key(td);
      ev[i] = d;
      const double eta = static_cast<double>(pred[i * ps]);
      mx = eta > mx ? eta : mx;
      const double wd = d ? (w ? w[i] : 1.0) : 0.0;
      wsum += wd;
      weta += wd == 0.0 ? 0.0 : wd * eta;
    }
    part.p[4 * c] = wsum, part.p[4 * c + 1] = weta, part.p[4 * c + 2] = mx, part.p[4 * c + 3] = narrow;
    bad.p[c] = first_bad;
  });
  double m = -kInf;
  bool narrow = true;
  for (index_t c = 0; c < chunks; ++c) {
    if (bad.p[c] >= 0) {
      job.bad = bad.p[c];
      return;
    }
    m = part.p[4 * c + 2] > m ? part.p[4 * c + 2] : m;
    narrow &= part.p[4 * c + 3] != 0.0;
  }
  if (!(m > -kInf && m < kInf)) m = 0.0;  // every eta NaN or -inf, or one +inf
  double norm = 0.0, weta = 0.0;  // chunk partials in chunk order
  for (index_t c = 0; c < chunks; ++c) norm += part.p[4 * c], weta += part.p[4 * c + 1];
  job.norm = norm;
  const double scale = job.mean && norm > 0.0 ? 1.0 / norm : 1.0;

  // 2. Ascending order of the times and the first position of each group of equal times: a
  // radix sort of 32-bit keys (3 passes) when every time is a float32 value, else of 64-bit ones.
  I* order = idx;
  std::uint8_t* const gs = arena.take<std::uint8_t>(n);
  if (narrow) {
    std::uint32_t* k32 = reinterpret_cast<std::uint32_t*>(keys_tmp);  // 2 x 4n bytes fit in 8n
    std::uint32_t* s32 = k32;
    for (index_t i = 0; i < n; ++i) s32[i] = float_key(static_cast<float>(key_value(keys[i])));
    radix_sort<std::uint32_t, I>(n, &s32, &order, k32 + n, idx_tmp);
    for (index_t k = 0; k < n; ++k) gs[k] = k == 0 || s32[k] != s32[k - 1];
  } else {
    K* sk = keys;
    radix_sort<K, I>(n, &sk, &order, keys_tmp, idx_tmp);
    for (index_t k = 0; k < n; ++k) gs[k] = k == 0 || sk[k] != sk[k - 1];
  }

  // 3. u = w exp(eta - m) in the samples' order (parallel, vectorizable).
  double* const u0 = arena.take<double>(n);
  parallel_for(n, 4, job.threads, [&](index_t b, index_t e) {  // simple loops: vectorized
    if (ps == 1) {
      for (index_t i = b; i < e; ++i) u0[i] = static_cast<double>(pred[i]);
    } else {
      for (index_t i = b; i < e; ++i) u0[i] = static_cast<double>(pred[i * ps]);
    }
    for (index_t i = b; i < e; ++i) u0[i] = vm::exp(u0[i] - m);
    if (w)
      for (index_t i = b; i < e; ++i) u0[i] *= w[i];
  });

  // 4. Descending pass: u, the events (and weights) in sorted order, and the risk-set sum S at
  // the start of each group of equal times.
  double* const u = arena.take<double>(n);
  double* const S = arena.take<double>(n);
  std::uint8_t* const ds = arena.take<std::uint8_t>(n);
  double* const ws = arena.take<double>(w ? n : 1);
  double run = 0.0;
  for (index_t e = n - 1; e >= 0;) {
    index_t s = e;
    while (!gs[s]) --s;
    for (index_t k = e; k >= s; --k) {
      const index_t i = static_cast<index_t>(order[k]);
      const double uk = u0[i];
      u[k] = uk;
      ds[k] = ev[i];
      if (w) ws[k] = w[i];
      run += uk;
    }
    S[s] = run;
    e = s - 1;
  }

  // 5. Ascending pass over the groups: the group sums, the loss and the outputs.
  T* g_out = static_cast<T*>(job.grad_out.ptr);
  T* h_out = static_cast<T*>(job.hess_out.ptr);
  T* l_out = static_cast<T*>(job.loss_out.ptr);
  const index_t gst = job.grad_out.stride, hst = job.hess_out.stride, lst = job.loss_out.stride;
  double cumA = 0.0, cumA2 = 0.0, log_total = 0.0;
  for (index_t s = 0; s < n;) {
    index_t e = s;
    while (e + 1 < n && !gs[e + 1]) ++e;
    index_t d = 0;
    double wdead = 0.0, E = 0.0;
    for (index_t k = s; k <= e; ++k) {
      if (ds[k]) {
        ++d;
        wdead += w ? ws[k] : 1.0;
        E += u[k];
      }
    }
    double B = 0.0, B2 = 0.0, C2 = 0.0, logs = 0.0;  // logs: sum_r log S_gr / d
    if (d > 0) {
      const double Sg = S[s], a = wdead / static_cast<double>(d);
      double A = 0.0, A2 = 0.0;
      if (!job.efron || d == 1) {
        const double inv = 1.0 / Sg;
        A = wdead * inv, A2 = wdead * inv * inv;
        logs = vm::log(Sg);
      } else {
        const double dd = static_cast<double>(d);
        for (index_t r = 0; r < d; ++r) {
          const double f = static_cast<double>(r) / dd, inv = 1.0 / (Sg - f * E), inv2 = inv * inv;
          A += inv, B += f * inv, A2 += inv2, B2 += f * inv2, C2 += f * f * inv2;
          logs += vm::log(Sg - f * E);
        }
        A *= a, B *= a, A2 *= a, B2 *= a, C2 *= a;
        logs /= dd;
      }
      cumA += A, cumA2 += A2;
      log_total += wdead * logs;
    }
    if (g_out || l_out) {
      for (index_t k = s; k <= e; ++k) {
        const index_t i = static_cast<index_t>(order[k]);
        const bool dk = ds[k];
        const double wi = w ? ws[k] : 1.0, uk = u[k];
        const double first = uk * (dk ? cumA - B : cumA);
        if (g_out) g_out[i * gst] = static_cast<T>((first - (dk ? wi : 0.0)) * scale);
        if (h_out) {
          const double second = uk * uk * (dk ? cumA2 - (2.0 * B2 - C2) : cumA2);
          h_out[i * hst] = static_cast<T>((first - second) * scale);
        }
        if (l_out) {
          const double eta = static_cast<double>(pred[i * ps]) - m;
          l_out[i * lst] = static_cast<T>(dk && wi != 0.0 ? wi * (logs - eta) : 0.0);
        }
      }
    }
    s = e + 1;
  }
  job.total = log_total + (m * norm - weta);
}

template <class T>
void cox(CoxJob& job) {
  const bool small = job.n < (index_t(1) << 32);
  if (job.time_dtype == DType::f32) {
    small ? cox_kernel<T, float, std::uint32_t>(job) : cox_kernel<T, float, std::uint64_t>(job);
  } else {
    small ? cox_kernel<T, double, std::uint32_t>(job) : cox_kernel<T, double, std::uint64_t>(job);
  }
}

// Harrell's C: pairs (i, j) with an event at t_i and t_j > t_i, or t_j = t_i with j censored
// (lifelines' and scikit-survival's comparable pairs); concordant when risk_i > risk_j, tied when
// equal. Samples in descending time: the censored of a time enter a Fenwick tree over the dense
// ranks of the risks, then its events query it (counts below and at their rank), then enter.
template <class I>
void concordance_kernel(ConcordanceJob& job) {
  const index_t n = job.n;
  Scratch<std::uint64_t> tk(n), tk_tmp(n), rk(n), rk_tmp(n);
  Scratch<I> t_idx(n), t_tmp(n), r_idx(n), r_tmp(n);
  for (index_t i = 0; i < n; ++i) tk.p[i] = float_key(job.time[i]), rk.p[i] = float_key(job.risk[i]);
  std::uint64_t* st = tk.p;
  I* t_order = t_idx.p;
  radix_sort<std::uint64_t, I>(n, &st, &t_order, tk_tmp.p, t_tmp.p);
  std::uint64_t* sr = rk.p;
  I* r_order = r_idx.p;
  radix_sort<std::uint64_t, I>(n, &sr, &r_order, rk_tmp.p, r_tmp.p);
  Scratch<I> rank(n);
  index_t ranks = 0;
  for (index_t k = 0; k < n; ++k) {
    if (k > 0 && sr[k] != sr[k - 1]) ++ranks;
    rank.p[r_order[k]] = static_cast<I>(ranks);
  }
  ranks += 1;
  Scratch<std::int64_t> tree(ranks + 1), at(ranks);
  for (index_t r = 0; r <= ranks; ++r) tree.p[r] = 0;
  for (index_t r = 0; r < ranks; ++r) at.p[r] = 0;
  auto insert = [&](index_t r) {
    ++at.p[r];
    for (index_t x = r + 1; x <= ranks; x += x & -x) ++tree.p[x];
  };
  auto below = [&](index_t r) {  // inserted samples of rank < r
    std::int64_t c = 0;
    for (index_t x = r; x > 0; x -= x & -x) c += tree.p[x];
    return c;
  };
  std::int64_t inserted = 0, concordant = 0, tied = 0, comparable = 0;
  for (index_t e = n - 1; e >= 0;) {
    index_t s = e;
    while (s > 0 && st[s - 1] == st[e]) --s;
    for (index_t k = s; k <= e; ++k)
      if (!job.event[t_order[k]]) insert(rank.p[t_order[k]]), ++inserted;
    for (index_t k = s; k <= e; ++k) {
      const index_t i = static_cast<index_t>(t_order[k]);
      if (!job.event[i]) continue;
      const index_t r = rank.p[i];
      comparable += inserted;
      concordant += below(r);
      tied += at.p[r];
    }
    for (index_t k = s; k <= e; ++k)
      if (job.event[t_order[k]]) insert(rank.p[t_order[k]]), ++inserted;
    e = s - 1;
  }
  job.concordant = concordant, job.tied = tied, job.comparable = comparable;
}

inline void concordance(ConcordanceJob& job) {
  job.n < (index_t(1) << 32) ? concordance_kernel<std::uint32_t>(job)
                             : concordance_kernel<std::uint64_t>(job);
}

}  // namespace losses
FL_NAMESPACE_END
#endif  // !__CUDACC__
