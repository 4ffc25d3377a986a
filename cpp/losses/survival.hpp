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

#include <algorithm>
#include <cmath>
#include <ctime>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <type_traits>

#include "fastloss/config.hpp"
#include "fastloss/reduce.hpp"
#include "fastloss/vmath.hpp"
#include "fused_math.hpp"

FL_NAMESPACE_BEGIN
namespace losses {

inline constexpr double kInf = __builtin_huge_val();

// Each distribution of Z gives log f, log F, log S (S = 1 - F), psi = -(log f)', psi', and the
// two one-sided hazards with their curvature terms, accurate in both tails:
//   right(z) = (f/S, f/S - psi)      left(z) = (f/F, f/F + psi)
// (the Hessian of -log S(z(p)) is right.first * right.second / sigma^2, of -log F likewise).
struct Pair {
  double first, second;
};

// c_n x^n + ... + c_0 by Horner's rule, the coefficients from the highest degree.
FL_HD FL_INLINE double horner(double, double c) { return c; }
template <class... C>
FL_HD FL_INLINE double horner(double x, double c, double next, C... rest) {
  return horner(x, fma_(c, x, next), rest...);
}

// erfcx(x) = exp(x^2) erfc(x) for x >= 0 (+inf -> 0) by Weideman's rational expansion (SIAM J.
// Numer. Anal. 31, 1994): r / sqrt(pi) + 2 r^2 P(Z), r = 1 / (L + x), Z = (L - x) / (L + x),
// L = sqrt(N / sqrt(2)), P of degree N - 1 = 39 with his FFT coefficients (computed in 60-digit
// arithmetic), evaluated as four chains in Z^4. Relative error <= 1.2e-15 on [0, 1e9] against
// mpmath (with FMA); no branch, so that the loops over it vectorize.
FL_HD FL_INLINE double erfcx_nonneg(double x) {
  constexpr double kL = 0x1.545ef5c0f51a0p+2, kInvSqrtPi = 0x1.20dd750429b6dp-1;
  const double r = 1.0 / (kL + x), z = fma_(2.0 * kL, r, -1.0), z2 = z * z, z4 = z2 * z2;
  const double q0 = horner(z4, -0x1.85c82993487b9p-48, 0x1.0eeca272d29f9p-43, 0x1.3176da838ee16p-35,
                           0x1.9ec2b6a185630p-29, 0x1.e7dc944f8de06p-27, -0x1.2e1d6585afe8bp-16,
                           0x1.629a596ed4a56p-9, 0x1.3d86fe9e6a9eap-3, 0x1.41a238f009d09p+0,
                           0x1.7326e55b41215p+1);
  const double q1 = horner(z4, 0x1.99342cacfd05dp-47, 0x1.fe5dde7bc0d5bp-42, 0x1.37a2fe79b99e8p-36,
                           0x1.cfafa9b46b454p-33, -0x1.10ce7cf00fdccp-24, -0x1.1e27ead408563p-20,
                           0x1.cd2bcc00e1d56p-12, 0x1.26308597ddc8cp-4, 0x1.b1c67c927e9f6p-1,
                           0x1.4edadccb56adcp+1);
  const double q2 = horner(z4, 0x1.4525231fde2fdp-50, 0x1.ee84814ec1d9fp-47, -0x1.7fe03aed69c12p-39,
                           -0x1.87c81ece8d131p-32, -0x1.3aa8ef3ad38c2p-26, 0x1.8e3de312ad6cap-20,
                           -0x1.4a752dec284fap-15, 0x1.de75e8cc46826p-6, 0x1.0da572e19e018p-1,
                           0x1.19cb343b58fc6p+1);
  const double q3 = horner(z4, -0x1.11c65f7e98284p-49, -0x1.3e96a96866b32p-44,
                           -0x1.99388358e0a99p-39, -0x1.8e3fa34413163p-34, 0x1.bea44a6a58fc8p-29,
                           0x1.3d67caa2b5240p-21, -0x1.d50873c0ae8dep-15, 0x1.49424ba5ffe63p-7,
                           0x1.33178328c1601p-2, 0x1.b9b2b4b25d642p+0);
  const double p = fma_(fma_(q3, z, q2), z2, fma_(q1, z, q0));
  return r * fma_(2.0 * r, p, kInvSqrtPi);
}

// Standard normal, from e = erfcx(|z| / sqrt 2): for z >= 0, S = exp(-z^2/2) e / 2, so that
// log S = log e - z^2/2 - log 2 and f/S = sqrt(2/pi) / e need neither exp nor a tail formula;
// for z < 0, S = 1 - F(-z). Both sides computed and one selected, so that the loops over AFT's
// censored kinds vectorize (std::erfc kept them scalar: 45 ns per right-censored element).
struct AftNormal {
  // An element's work (elementwise.hpp): its one-thread time over MSE's, kinds mixed.
  static constexpr index_t kWork = 52;
  static constexpr double kHalfLog2Pi = 0.91893853320467274178;
  static constexpr double kInvSqrt2 = 0.70710678118654752440, kLn2 = 0.69314718055994530942;
  static constexpr double kSqrt2OverPi = 0.79788456080286535588;
  static constexpr double kInvSqrt2Pi = 0.39894228040143267794;
  FL_HD FL_INLINE static double log_pdf(double z) { return -0.5 * z * z - kHalfLog2Pi; }
  FL_HD FL_INLINE static double psi(double z) { return z; }
  FL_HD FL_INLINE static double dpsi(double) { return 1.0; }
  FL_HD FL_INLINE static double erfcx_of(double z) {
    return erfcx_nonneg((z < 0.0 ? -z : z) * kInvSqrt2);
  }
  // f/S - z for z >= 30, where the difference cancels: the continued fraction of Mills' ratio,
  // f/S = z + 1 / (z + 2 / (z + 3 / ...)), 8 terms (exact to 2e-16 there).
  FL_HD FL_INLINE static double mills_tail(double z) {
    double t = z;
    for (int k = 8; k >= 2; --k) t = z + k / t;
    return 1.0 / t;
  }
  FL_HD FL_INLINE static double log_sf(double z) {
    const double e = erfcx_of(z), half_sq = 0.5 * z * z;
    const double upper = (vm::log(e) - half_sq) - kLn2;
    const double lower = vm::log1p(-0.5 * vm::exp(-half_sq) * e);
    return z >= 0.0 ? upper : lower;
  }
  FL_HD FL_INLINE static double log_cdf(double z) { return log_sf(-z); }
  FL_HD FL_INLINE static Pair right(double z) {
    const double e = erfcx_of(z), g = vm::exp(-0.5 * z * z);
    const double h = z >= 0.0 ? kSqrt2OverPi / e : g * kInvSqrt2Pi / (1.0 - 0.5 * g * e);
    const double tail = mills_tail(z);
    return {h, z >= 30.0 ? tail : h - z};
  }
  FL_HD FL_INLINE static Pair left(double z) { return right(-z); }
};

// Standard logistic: F = sigmoid(z), f = F (1 - F), psi = tanh(z / 2). The softplus and sigmoid
// of +-z come from LogisticParts (one exp(-|z|), one log1p of it), which the compiler computes
// once for all the calls on one z: 1.6-1.8x faster than separate vm::softplus / vm::sigmoid.
struct AftLogistic {
  static constexpr index_t kWork = 42;  // as AftNormal::kWork
  using Parts = LogisticParts<double>;
  FL_HD FL_INLINE static double log_pdf(double z) {
    const Parts q(z);
    return -(q.sp + q.sp_neg);
  }
  FL_HD FL_INLINE static double psi(double z) { return vm::tanh(0.5 * z); }
  FL_HD FL_INLINE static double dpsi(double z) {
    const Parts q(z);
    return 2.0 * q.sig * q.sig_neg;
  }
  FL_HD FL_INLINE static double log_sf(double z) { return -Parts(z).sp; }
  FL_HD FL_INLINE static double log_cdf(double z) { return -Parts(z).sp_neg; }
  FL_HD FL_INLINE static Pair right(double z) {
    const Parts q(z);
    return {q.sig, q.sig_neg};
  }
  FL_HD FL_INLINE static Pair left(double z) {
    const Parts q(z);
    return {q.sig_neg, q.sig};
  }
};

// Extreme value (minimum Gumbel; XGBoost's "extreme"): S = exp(-e^z), f = e^z S, psi = e^z - 1.
struct AftExtreme {
  static constexpr index_t kWork = 42;  // as AftNormal::kWork
  FL_HD FL_INLINE static double log_pdf(double z) { return z - vm::exp(z); }
  FL_HD FL_INLINE static double psi(double z) { return vm::expm1(z); }
  FL_HD FL_INLINE static double dpsi(double z) { return vm::exp(z); }
  FL_HD FL_INLINE static double log_sf(double z) { return -vm::exp(z); }
  // Both sides of each choice below are computed and one selected (single comparisons): a branch
  // would keep AFT's loops over the left- and interval-censored kinds from vectorizing.
  FL_HD FL_INLINE static double log_cdf(double z) {  // log(1 - exp(-w)), w = e^z
    const double w = vm::exp(z);
    const double far = vm::log1p(-vm::exp(-w)), near = vm::log(-vm::expm1(-w));
    return w > 0.69314718055994530942 ? far : near;
  }
  FL_HD FL_INLINE static Pair right(double z) { return {vm::exp(z), 1.0}; }
  // f/F = w / expm1(w); f/F + psi = (1 - e^w (1 - w)) / expm1(w), by its series for small w
  // (where the two terms cancel), and the limits below w = 1e-300.
  FL_HD FL_INLINE static Pair left(double z) {
    const double w = vm::exp(z), em = vm::expm1(w);
    const double r = w / em;  // 0 once expm1 overflows
    const double num = w * w * (0.5 + w * (1.0 / 3 + w * (1.0 / 8 + w * (1.0 / 30 + w * (1.0 / 144)))));
    const double first_small = w > 1e-300 ? r : 1.0 - 0.5 * w;
    const double second_small = w > 1e-300 ? num / em : 0.5 * w;
    return {w < 0.01 ? first_small : r, w < 0.01 ? second_small : r + vm::expm1(z)};
  }
};

// The censoring kinds of one label [lower, upper], in the order they are tested; an interval's kind
// also names the tail its formula starts from (its z_l > 0: the upper tail S, else F).
enum AftKind : unsigned char { kObserved, kRight, kNoInfo, kLeft, kIntervalUpper, kIntervalLower };

struct AftOut {
  double l, g, h;
};

// params: sigma > 0. y = lower bound, aux = upper bound (inf: right-censored; lower 0:
// left-censored; equal: an observed time), validated by the caller (0 <= lower <= upper, upper > 0).
// Each kind is one function of (log lower, log upper, y_pred). On the CPU a block is sorted by kind
// first (map), so that each kind runs as one loop without branches, which vectorizes.
template <class T, class D>
struct AFT {
  static constexpr bool kAux = true;
  static constexpr index_t kWork = D::kWork;
  double sigma, inv_sigma, log_sigma;
  FL_HD explicit AFT(const double* prm)
      : sigma(prm[0]), inv_sigma(1.0 / prm[0]), log_sigma(vm::log(prm[0])) {}

  // Selects on single comparisons and a 32-bit result, so that the loop over a block's kinds
  // vectorizes.
  FL_HD FL_INLINE static std::int32_t kind(double lo, double up, double log_lo, double p) {
    const std::int32_t interval = log_lo > p ? kIntervalUpper : kIntervalLower;  // z_l > 0
    const std::int32_t lo_not_positive = lo == lo ? kLeft : interval;   // lower 0: left-censored
    const std::int32_t bounded = lo > 0.0 ? interval : lo_not_positive;
    const std::int32_t unbounded = lo > 0.0 ? kRight : kNoInfo;  // lower 0 too: no information
    const std::int32_t censored = up == kInf ? unbounded : bounded;
    return lo == up ? kObserved : censored;
  }

  template <bool G, bool H>
  FL_HD FL_INLINE AftOut run(AftKind k, double log_lo, double log_up, double p) const {
    const double s2 = inv_sigma * inv_sigma;
    AftOut o{0.0, 0.0, 0.0};
    if (k == kObserved) {
      const double z = (log_lo - p) * inv_sigma;
      o.l = -D::log_pdf(z) + log_sigma + log_lo;
      if constexpr (G) o.g = -D::psi(z) * inv_sigma;
      if constexpr (H) o.h = D::dpsi(z) * s2;
    } else if (k == kRight) {
      const double z = (log_lo - p) * inv_sigma;
      o.l = -D::log_sf(z);
      const Pair r = D::right(z);
      if constexpr (G) o.g = -r.first * inv_sigma;
      if constexpr (H) o.h = r.first * r.second * s2;
    } else if (k == kNoInfo) {
      o.l = o.g = o.h = p == p ? 0.0 : p;  // 0 (NaN for a NaN prediction)
    } else if (k == kLeft) {
      const double z = (log_up - p) * inv_sigma;
      o.l = -D::log_cdf(z);
      const Pair r = D::left(z);
      if constexpr (G) o.g = r.first * inv_sigma;
      if constexpr (H) o.h = r.first * r.second * s2;
    } else {
      // -log(F(z_u) - F(z_l)) from the side of the smaller tail: D = S_l (1 - q), q = S_u / S_l
      // (or D = F_u (1 - q), q = F_l / F_u): the Hessian r_l (r_l - psi_l) + r_u (r_u + psi_u) -
      // 2 r_l r_u, r = f / D, keeps the stable one-sided term of the near side, so it tends to
      // the right- (left-) censored one as q -> 0.
      const double zl = (log_lo - p) * inv_sigma, zu = (log_up - p) * inv_sigma;
      double ru, rl, curv;
      if (k == kIntervalUpper) {
        const double sl = D::log_sf(zl), q = vm::exp(D::log_sf(zu) - sl);
        const double log_d = sl + vm::log1p(-q);
        const Pair r = D::right(zl);
        o.l = -log_d;
        rl = r.first / (1.0 - q);
        ru = vm::exp(D::log_pdf(zu) - log_d);
        curv = rl * (r.second + r.first * q / (1.0 - q)) + ru * (ru + D::psi(zu) - 2.0 * rl);
      } else {
        const double cu = D::log_cdf(zu), q = vm::exp(D::log_cdf(zl) - cu);
        const double log_d = cu + vm::log1p(-q);
        const Pair r = D::left(zu);
        o.l = -log_d;
        ru = r.first / (1.0 - q);
        rl = vm::exp(D::log_pdf(zl) - log_d);
        curv = ru * (r.second + r.first * q / (1.0 - q)) + rl * (rl - D::psi(zl) - 2.0 * ru);
      }
      if constexpr (G) o.g = (ru - rl) * inv_sigma;
      if constexpr (H) o.h = curv * s2;
    }
    return o;
  }

  template <bool G, bool H>
  FL_HD FL_INLINE void operator()(T y_lower, T y_pred, T y_upper, T& l, T& g, T& h) const {
    const double lo = static_cast<double>(y_lower), up = static_cast<double>(y_upper);
    const double p = static_cast<double>(y_pred), log_lo = vm::log(lo);
    const auto k = static_cast<AftKind>(kind(lo, up, log_lo, p));
    const AftOut o = run<G, H>(k, log_lo, vm::log(up), p);
    l = static_cast<T>(o.l);
    if constexpr (G) g = static_cast<T>(o.g);
    if constexpr (H) h = static_cast<T>(o.h);
  }

  // n elements of kind K, in place: element j's log lower bound, log upper bound and prediction
  // become its loss, gradient and Hessian. One loop in which run()'s branches on the kind fold
  // away; not inlined: inside map, gcc left the larger kinds' loops scalar (extreme distribution,
  // interval-censored: 179 ns per element).
  template <bool G, bool H, AftKind K>
  FL_NOINLINE void run_kind(index_t n, double* __restrict lo_l, double* __restrict up_g,
                            double* __restrict p_h) const {
    for (index_t j = 0; j < n; ++j) {
      const AftOut o = run<G, H>(K, lo_l[j], up_g[j], p_h[j]);
      lo_l[j] = o.l, up_g[j] = o.g, p_h[j] = o.h;
    }
  }

  // A block (elementwise.hpp), kind by kind: the block's logs and kinds in two vectorized loops,
  // then each kind present gathered, run by run_kind and scattered back; a block of one kind runs
  // in place. (Mixed kinds in one loop over the block: 62-85 ns per element, scalar.)
  template <bool G, bool H>
  void map(index_t len, const T* lo, const T* p, const T* up, T* l, T* g, T* h) const {
    alignas(64) double log_lo[kBlock], log_up[kBlock], pd[kBlock], a[kBlock], b[kBlock], c[kBlock];
    alignas(64) std::int32_t kinds[kBlock];
    std::int32_t idx[kBlock];
    for (index_t i = 0; i < len; ++i) {
      pd[i] = static_cast<double>(p[i]);
      log_lo[i] = vm::log(static_cast<double>(lo[i]));
      log_up[i] = vm::log(static_cast<double>(up[i]));
    }
    unsigned present = 0;
    for (index_t i = 0; i < len; ++i) {
      kinds[i] = kind(static_cast<double>(lo[i]), static_cast<double>(up[i]), log_lo[i], pd[i]);
      present |= 1u << kinds[i];
    }
    auto one_kind = [&](auto k) {
      constexpr AftKind K = decltype(k)::value;
      if (!(present >> K & 1u)) return;
      if (present == 1u << K) {  // the whole block, in place
        run_kind<G, H, K>(len, log_lo, log_up, pd);
        for (index_t i = 0; i < len; ++i) {
          l[i] = static_cast<T>(log_lo[i]);
          if constexpr (G) g[i] = static_cast<T>(log_up[i]);
          if constexpr (H) h[i] = static_cast<T>(pd[i]);
        }
        return;
      }
      index_t n = 0;
      for (index_t i = 0; i < len; ++i) {  // without a branch: kinds mix at random
        idx[n] = static_cast<std::int32_t>(i);
        n += kinds[i] == K;
      }
      for (index_t j = 0; j < n; ++j)
        a[j] = log_lo[idx[j]], b[j] = log_up[idx[j]], c[j] = pd[idx[j]];
      run_kind<G, H, K>(n, a, b, c);
      for (index_t j = 0; j < n; ++j) {
        l[idx[j]] = static_cast<T>(a[j]);
        if constexpr (G) g[idx[j]] = static_cast<T>(b[j]);
        if constexpr (H) h[idx[j]] = static_cast<T>(c[j]);
      }
    };
    one_kind(std::integral_constant<AftKind, kObserved>{});
    one_kind(std::integral_constant<AftKind, kRight>{});
    one_kind(std::integral_constant<AftKind, kNoInfo>{});
    one_kind(std::integral_constant<AftKind, kLeft>{});
    one_kind(std::integral_constant<AftKind, kIntervalUpper>{});
    one_kind(std::integral_constant<AftKind, kIntervalLower>{});
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

// Scratch of n elements; MemoryError (std::bad_alloc) rather than a null pointer.
template <class T>
struct Scratch : Buffer<T> {
  explicit Scratch(index_t n) : Buffer<T>(n) {
    if (!this->p) throw std::bad_alloc();
  }
};

// One block carved into the arrays of a call. The kernels touch tens of bytes per sample of
// scratch, so the block is a recycled one (take_block, alloc.hpp): fresh memory would cost a page
// fault and a zeroed page per 4 KiB, as much as the arithmetic.
class Arena {
 public:
  explicit Arena(std::size_t bytes) : base_(static_cast<char*>(take_block(bytes))) {}
  ~Arena() { give_block(base_); }
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
  char* base_;
  std::size_t used_ = 0;
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

inline constexpr index_t kCoxChunk = 16384;  // elements per chunk of the parallel passes
inline constexpr int kCoxSortBits = 33;      // key bits sorted by the radix passes (3 x 11)
inline constexpr index_t kCoxPrefetch = 256;  // samples ahead of the random walk of step 4
inline constexpr index_t kCoxSplit = 65536;  // samples from which the sort and the walk go in 2 parts

// An LSD radix sort of n packed words p = (hi(i) << ib) | i by their hi, `bits` wide, stably
// (ties keep ascending i), in passes of at most kRadixBits bits. With one thread, the caller
// counts every digit beforehand (one table per pass). With more, each pass moves two consecutive
// parts of its input at once (samples [bound(q), bound(q + 1)), chunk boundaries), each part's
// words behind those with the same digit in the part before it, and counts the next digit per
// part as it goes (the caller counts the first digit per part). A stable sort has one result, so
// the parts change nothing but the speed.
struct CoxSortPlan {
  index_t n, chunks, parts;
  int ib, bits, passes, digit;
  index_t buckets;
  CoxSortPlan(index_t n_, index_t chunks_, int ib_, int bits_, int threads)
      : n(n_), chunks(chunks_), parts(threads > 1 && n_ >= kCoxSplit ? 2 : 1), ib(ib_), bits(bits_) {
    passes = (bits + kRadixBits - 1) / kRadixBits;
    digit = passes ? (bits + passes - 1) / passes : 0;
    buckets = index_t(1) << digit;
  }
  // The caller's count tables: one per part (first digit), or one per pass with one part.
  index_t tables() const { return parts > 1 ? parts : passes; }
  index_t bound(index_t q) const { return min_(n, chunks * q / parts * kCoxChunk); }
  index_t part_of_chunk(index_t c) const { return c >= chunks / parts ? parts - 1 : 0; }
};

// count: the caller's counts (plan.tables() x buckets; overwritten).
template <class Hi>
void cox_sort(const CoxSortPlan& plan, Hi&& hi, index_t* count0, std::uint64_t* out,
              std::uint64_t* tmp, int threads) {
  index_t* count = count0;
  const index_t n = plan.n, parts = plan.parts, buckets = plan.buckets;
  if (plan.passes == 0) {
    for (index_t i = 0; i < n; ++i) out[i] = static_cast<std::uint64_t>(i);
    return;
  }
  const std::uint64_t mask = static_cast<std::uint64_t>(buckets - 1);
  const index_t split = plan.bound(1);
  Scratch<index_t> next(parts * parts * buckets);  // [source part][destination part][digit]
  std::uint64_t* dst = plan.passes % 2 ? out : tmp;  // the last pass writes `out`
  std::uint64_t* src = nullptr;
  for (int d = 0; d < plan.passes; ++d) {
    const int shift = plan.ib + plan.digit * d;
    const bool count_next = parts > 1 && d + 1 < plan.passes;
    if (parts == 1) count = count0 + d * buckets;
    index_t sum = 0;  // bucket by bucket, part by part: where each part's share starts
    for (index_t b = 0; b < buckets; ++b)
      for (index_t q = 0; q < parts; ++q) {
        const index_t c = count[q * buckets + b];
        count[q * buckets + b] = sum;
        sum += c;
      }
    for (index_t j = 0; j < parts * parts * buckets; ++j) next.p[j] = 0;
    parallel_chunks(parts, n / parts, threads, [&](index_t q) {
      index_t* c = count + q * buckets;
      index_t* nx = next.p + q * parts * buckets;
      const auto move = [&](auto first, auto counting) {
        for (index_t k = plan.bound(q), e = plan.bound(q + 1); k < e; ++k) {
          std::uint64_t x;
          if constexpr (decltype(first)::value) x = (hi(k) << plan.ib) | static_cast<std::uint64_t>(k);
          else x = src[k];
          const index_t pos = c[(x >> shift) & mask]++;
          dst[pos] = x;
          if constexpr (decltype(counting)::value)
            ++nx[(pos >= split ? buckets : 0) + static_cast<index_t>((x >> (shift + plan.digit)) & mask)];
        }
      };
      if (d == 0)
        count_next ? move(std::true_type{}, std::true_type{}) : move(std::true_type{}, std::false_type{});
      else
        count_next ? move(std::false_type{}, std::true_type{}) : move(std::false_type{}, std::false_type{});
    });
    if (count_next)
      for (index_t q = 0; q < parts; ++q)
        for (index_t b = 0; b < buckets; ++b) {
          index_t c = 0;
          for (index_t p = 0; p < parts; ++p) c += next.p[(p * parts + q) * buckets + b];
          count[q * buckets + b] = c;
        }
    src = dst;
    dst = dst == out ? tmp : out;
  }
}

// The Cox kernel for predictions of type T and times of type F.
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
// (B, B2, C2 of j's own group).
//
// Passes: (1) checks, max eta and the key range (parallel, reads only); (2) keys, u, the event
// sums and the radix histograms (parallel, the one pass that writes the samples); (3) an LSD radix sort of packed (key bits, position) words; (4) one descending walk
// over the sorted samples: the risk-set sums S and each sample's group; (5) one ascending walk
// over the groups: the cumulative sums; (6) the outputs in the samples' own order (parallel,
// sequential writes). Every sum runs in an order fixed by the data alone: the result does not
// depend on the thread count.
template <class T, class F>
void cox_kernel(CoxJob& job) {
  using K = std::uint64_t;
  const index_t n = job.n;
  const T* pred = static_cast<const T*>(job.pred);
  const F* time = static_cast<const F*>(job.time);
  const index_t ps = job.pred_stride, ts = job.time_stride, es = job.event_stride;
  const double* w = job.weight;
  const std::uint8_t* event = job.event;
  T* g_out = static_cast<T*>(job.grad_out.ptr);
  T* h_out = static_cast<T*>(job.hess_out.ptr);
  T* l_out = static_cast<T*>(job.loss_out.ptr);
  // Per sample, the one cache line the walk of step 4 reads: key, the bits of |time| (a
  // non-negative double: their integer order is the time order) shifted left by one with the
  // event flag in bit 0 (step 4 replaces the time by the sample's group), and u.
  struct Sample {
    K key;
    double u;
  };
  Arena arena(Arena::bytes<Sample>(n) + Arena::bytes<std::uint64_t>(n) +
              4 * Arena::bytes<double>(n) + Arena::bytes<double>(l_out ? n : 1));
  Sample* const smp = arena.take<Sample>(n);
  std::uint64_t* const sorted = arena.take<std::uint64_t>(n);
  double* const rec = arena.take<double>(4 * n);  // 4 doubles per group; the sort's scratch first
  double* const glog = arena.take<double>(l_out ? n : 1);

  // 1. Validity, max eta and the range of the time keys (parallel over fixed chunks, combined in
  // chunk order): a read of the inputs that writes nothing, so that step 2 knows everything it
  // needs in its one pass. Validity is checked per chunk; the first bad index is looked up only
  // when one is.
  const index_t chunks = (n + kCoxChunk - 1) / kCoxChunk;
  struct Part {
    double mx, wsum, weta;
    K kmin, kmax, kor;
    index_t bad;
  };
  Scratch<Part> part(chunks);
  // The bits of |time| (-0 -> +0): a non-negative double, so their integer order is the time order.
  const auto time_bits = [](F t) {
    const double td = std::fabs(static_cast<double>(t));
    K bits;
    std::memcpy(&bits, &td, sizeof bits);
    return bits;
  };
  parallel_chunks(chunks, kCoxChunk, job.threads, [&](index_t c) {
    const index_t b = c * kCoxChunk, e = min_(n, b + kCoxChunk);
    K kmin = ~K(0), kmax = 0, kor = 0;
    bool bad = false;
    for (index_t i = b; i < e; ++i) {
      const F t = time[i * ts];
      bad |= (event && t < F(0)) | (t != t);
      const K bits = time_bits(t);
      kmin = bits < kmin ? bits : kmin;
      kmax = bits > kmax ? bits : kmax;
      kor |= bits;
    }
    double mx[kLanes];
    for (int j = 0; j < kLanes; ++j) mx[j] = -kInf;
    index_t i = b;
    for (; i + kLanes <= e; i += kLanes)
      for (int j = 0; j < kLanes; ++j) {
        const double eta = static_cast<double>(pred[(i + j) * ps]);
        mx[j] = eta > mx[j] ? eta : mx[j];
      }
    for (int j = 0; i < e; ++i, ++j) {
      const double eta = static_cast<double>(pred[i * ps]);
      mx[j] = eta > mx[j] ? eta : mx[j];
    }
    for (int j = 1; j < kLanes; ++j) mx[0] = mx[j] > mx[0] ? mx[j] : mx[0];
    index_t first_bad = -1;
    for (index_t k = b; bad && first_bad < 0; ++k) {
      const F t = time[k * ts];
      if ((event && t < F(0)) || t != t) first_bad = k;
    }
    part.p[c] = Part{mx[0], 0.0, 0.0, kmin, kmax, kor, first_bad};
  });
  double m = -kInf;
  K kmin = ~K(0), kmax = 0, kor = 0;
  for (index_t c = 0; c < chunks; ++c) {
    const Part& p = part.p[c];
    if (p.bad >= 0) {
      job.bad = p.bad;
      return;
    }
    m = p.mx > m ? p.mx : m;
    kmin = p.kmin < kmin ? p.kmin : kmin;
    kmax = p.kmax > kmax ? p.kmax : kmax;
    kor |= p.kor;
  }
  if (!(m > -kInf && m < kInf)) m = 0.0;  // every eta NaN or -inf, or one +inf

  // What the radix passes sort: the `bits` leading bits of (time bits - kmin) >> tz (tz: the
  // trailing zero bits of every time, e.g. float32 or whole-number times), packed above ib bits of
  // position. Times that agree in those bits but differ below are put in order in step 4.
  const int tz = kor ? __builtin_ctzll(kor) : 0;
  const K range = (kmax - kmin) >> tz;
  const int range_bits = range ? 64 - __builtin_clzll(range) : 0;
  const int ib = n > 1 ? 64 - __builtin_clzll(static_cast<K>(n - 1)) : 1;
  const int bits = min_(range_bits, min_(kCoxSortBits, 64 - ib));
  const bool exact = bits == range_bits;  // equal sorted bits: equal times
  const int shift = tz + (range_bits - bits);
  const auto hi = [&](index_t i) -> K { return ((smp[i].key >> 1) - kmin) >> shift; };
  const CoxSortPlan plan(n, chunks, ib, bits, job.threads);

  // 2. One pass that writes the samples: keys (the time bits shifted left by one, the event flag
  // in bit 0), u = w exp(eta - m), the digit counts the sort starts from (CoxSortPlan::tables();
  // per thread, then summed: integers, so in any order), the event weight and sum of w delta eta
  // (kLanes lanes per chunk). Parallel.
  const index_t table = plan.tables() * plan.buckets;
  const int slots = job.threads < kMaxThreads ? (job.threads > 0 ? job.threads : 1) : kMaxThreads;
  Scratch<index_t> count(slots * table + 1);
  for (index_t j = 0; j < slots * table; ++j) count.p[j] = 0;
  parallel_chunks_slots(chunks, 2 * kCoxChunk, job.threads, [&](index_t c, int slot) {
    const index_t b = c * kCoxChunk, e = min_(n, b + kCoxChunk);
    const K dmask = static_cast<K>(plan.buckets - 1), k0 = kmin;
    const int sh = shift, digit = plan.digit, counted = plan.parts > 1 ? 1 : plan.passes;
    const index_t buckets = plan.buckets;
    index_t* const h = count.p + slot * table + (plan.parts > 1 ? plan.part_of_chunk(c) * buckets : 0);
    double wsum[kLanes] = {}, weta[kLanes] = {};
    // A piece at a time, in simple loops (the exp, the event sums: vectorized).
    constexpr index_t kPiece = 16 * kLanes;
    double eta[kPiece], ex[kPiece], wd[kPiece];
    K hk[kPiece];
    for (index_t p = b; p < e; p += kPiece) {
      const index_t len = min_(kPiece, e - p);
      if (ps == 1) {
        for (index_t j = 0; j < len; ++j) eta[j] = static_cast<double>(pred[p + j]);
      } else {
        for (index_t j = 0; j < len; ++j) eta[j] = static_cast<double>(pred[(p + j) * ps]);
      }
      for (index_t j = 0; j < len; ++j) ex[j] = vm::exp(eta[j] - m);
      for (index_t j = 0; j < len; ++j) {
        const F t = time[(p + j) * ts];
        const bool d = event ? event[(p + j) * es] != 0 : t > F(0);
        const K bits = time_bits(t);
        smp[p + j].key = (bits << 1) | K(d);
        hk[j] = (bits - k0) >> sh;
        wd[j] = static_cast<double>(d);
      }
      if (w)  // the event's weight (w finite: w * 0 = 0)
        for (index_t j = 0; j < len; ++j) wd[j] *= w[p + j];
      if (counted == 3) {  // the usual case: the three counts of a key at once (more in flight)
        for (index_t j = 0; j < len; ++j) {
          const K x = hk[j];
          ++h[x & dmask];
          ++h[buckets + static_cast<index_t>((x >> digit) & dmask)];
          ++h[2 * buckets + static_cast<index_t>((x >> (2 * digit)) & dmask)];
        }
      } else {
        for (int dg = 0; dg < counted; ++dg)
          for (index_t j = 0; j < len; ++j) ++h[dg * buckets + static_cast<index_t>((hk[j] >> (digit * dg)) & dmask)];
      }
      if (w) {
        for (index_t j = 0; j < len; ++j) smp[p + j].u = ex[j] * w[p + j];
      } else {
        for (index_t j = 0; j < len; ++j) smp[p + j].u = ex[j];
      }
      // Lane j % kLanes; a full piece in a vectorized loop (a branch on the random events costs
      // a misprediction each).
      const auto add = [&](index_t j, int l) {
        const double v = wd[j], ve = v * eta[j];
        wsum[l] += v;
        weta[l] += v == 0.0 ? 0.0 : ve;
      };
      index_t j = 0;
      for (; j + kLanes <= len; j += kLanes)
        for (int l = 0; l < kLanes; ++l) add(j + l, l);
      for (int l = 0; j < len; ++j, ++l) add(j, l);
    }
    part.p[c].wsum = pairwise_sum(wsum, kLanes);
    part.p[c].weta = pairwise_sum(weta, kLanes);
  });
  for (int s = 1; s < slots; ++s)
    for (index_t j = 0; j < table; ++j) count.p[j] += count.p[s * table + j];
  double norm = 0.0, weta = 0.0;
  for (index_t c = 0; c < chunks; ++c) norm += part.p[c].wsum, weta += part.p[c].weta;
  job.norm = norm;
  const double scale = job.mean && norm > 0.0 ? 1.0 / norm : 1.0;

  // 3. The ascending order of the times' sorted bits (ties in the samples' order).
  cox_sort(plan, hi, count.p, sorted, reinterpret_cast<std::uint64_t*>(rec), job.threads);
  const K pos_mask = (K(1) << ib) - 1;  // ib < 64: bits <= 64 - ib with n > 1

  // 4. Descending walk, one run of equal sorted bits at a time (put in time order first when the
  // bits do not tell all times apart): the risk-set sums S (running sums from the latest time) and
  // each group's events (count d, weight W, sum E of u); a group keeps {S, W, E, d} in its record
  // rec[4g..4g+3], and its samples' keys become (g << 1) | event. Two parts walked at once: the
  // later times [split, n) as groups 0, 1, ... from the latest, the earlier [0, split) as groups
  // n - split, ... with S short of the later part's total (added in step 5). The split (the run
  // boundary nearest n / 2, none below kCoxSplit samples) depends on the data alone.
  const auto less = [&](std::uint64_t a, std::uint64_t b) {  // by time, then position
    const K ka = smp[a & pos_mask].key >> 1, kb = smp[b & pos_mask].key >> 1;
    return ka < kb || (ka == kb && a < b);
  };
  const auto walk = [&](index_t lo, index_t end, index_t first_group, index_t& groups,
                        double& total) {
    index_t g = first_group, d = 0;
    double run = 0.0, wdead = 0.0, E = 0.0;
    K prev = ~K(0);
    for (index_t k = end - 1; k >= lo;) {
      index_t s = k;
      const K run_bits = sorted[k] >> ib;
      while (s > lo && (sorted[s - 1] >> ib) == run_bits) --s;
      if (!exact && k > s) {
        // In time order already unless a later key precedes an earlier one (equal keys are in
        // position order: the sort is stable). Checked without an early exit, prefetching as the
        // walk does, so the run's random reads overlap (std::is_sorted waited on each).
        bool ordered = true;
        for (index_t j = k; j > s; --j) {
          if (j - kCoxPrefetch >= lo) __builtin_prefetch(&smp[sorted[j - kCoxPrefetch] & pos_mask]);
          ordered &= (smp[sorted[j - 1] & pos_mask].key >> 1) <= (smp[sorted[j] & pos_mask].key >> 1);
        }
        if (!ordered) std::sort(sorted + s, sorted + k + 1, less);
      }
      for (; k >= s; --k) {
        if (k - kCoxPrefetch >= lo)
          __builtin_prefetch(&smp[sorted[k - kCoxPrefetch] & pos_mask], 1);
        const index_t i = static_cast<index_t>(sorted[k] & pos_mask);
        Sample& x = smp[i];
        const K kf = x.key, t = kf >> 1;
        if (t != prev) {
          if (prev != ~K(0)) {
            double* r = rec + 4 * (g++);
            r[0] = run, r[1] = wdead, r[2] = E, r[3] = static_cast<double>(d);
            wdead = E = 0.0, d = 0;
          }
          prev = t;
        }
        const double uk = x.u;
        run += uk;
        // The event's share without a branch (events and censored samples interleave at random).
        const K ev = kf & 1, keep = K(0) - ev;
        const double wk = w ? w[i] : 1.0;
        K ub, wb;
        std::memcpy(&ub, &uk, sizeof ub);
        std::memcpy(&wb, &wk, sizeof wb);
        ub &= keep, wb &= keep;
        double ue, we;
        std::memcpy(&ue, &ub, sizeof ue);
        std::memcpy(&we, &wb, sizeof we);
        d += static_cast<index_t>(ev);
        E += ue, wdead += we;
        x.key = (static_cast<K>(g) << 1) | ev;
      }
    }
    if (end > lo) {
      double* r = rec + 4 * (g++);
      r[0] = run, r[1] = wdead, r[2] = E, r[3] = static_cast<double>(d);
    }
    groups = g - first_group;
    total = run;
  };
  index_t split = n >= kCoxSplit ? n / 2 : 0;
  while (split > 0 && (sorted[split - 1] >> ib) == (sorted[split] >> ib)) --split;
  index_t groups_late = 0, groups_early = 0;
  double total_late = 0.0, total_early = 0.0;
  parallel_chunks(2, n / 2, job.threads, [&](index_t c) {
    c == 0 ? walk(split, n, 0, groups_late, total_late)
           : walk(0, split, n - split, groups_early, total_early);
  });

  // 5. Ascending walk over the groups (the earlier part's, then the later part's): the group sums
  // and the loss; rec[4g..4g+3] becomes {cumA, cumA2, B, 2 B2 - C2}, glog[g] the mean log
  // risk-set sum of its events.
  // First the log risk-set sum of every group, in a vectorized loop (a scalar log per group took
  // most of this walk with distinct times); `sorted` is free after step 4.
  double* const log_s = reinterpret_cast<double*>(sorted);
  const auto logs_of = [&](index_t g0, index_t g1, double carry) {
    for (index_t g = g0; g < g1; ++g) log_s[g] = vm::log(rec[4 * g] + carry);
  };
  logs_of(n - split, n - split + groups_early, total_late);
  logs_of(0, groups_late, 0.0);
  double cumA = 0.0, cumA2 = 0.0, log_total = 0.0;
  const auto ascend = [&](index_t g, double carry) {
    double* r = rec + 4 * g;
    const double Sg = r[0] + carry, wd = r[1], Eg = r[2];
    const index_t dg = static_cast<index_t>(r[3]);
    double B = 0.0, B2 = 0.0, C2 = 0.0, logs = 0.0;  // logs: sum_r log S_gr / d
    if (dg > 0) {
      const double a = wd / static_cast<double>(dg);
      double A = 0.0, A2 = 0.0;
      if (!job.efron || dg == 1) {
        const double inv = 1.0 / Sg;
        A = wd * inv, A2 = wd * inv * inv;
        logs = log_s[g];
      } else {
        const double dd = static_cast<double>(dg);
        for (index_t q = 0; q < dg; ++q) {
          const double f = static_cast<double>(q) / dd, inv = 1.0 / (Sg - f * Eg), inv2 = inv * inv;
          A += inv, B += f * inv, A2 += inv2, B2 += f * inv2, C2 += f * f * inv2;
          logs += vm::log(Sg - f * Eg);
        }
        A *= a, B *= a, A2 *= a, B2 *= a, C2 *= a;
        logs /= dd;
      }
      cumA += A, cumA2 += A2;
      log_total += wd * logs;
    }
    r[0] = cumA, r[1] = cumA2, r[2] = B, r[3] = 2.0 * B2 - C2;
    if (l_out) glog[g] = logs;
  };
  for (index_t g = n - split + groups_early - 1; g >= n - split; --g) ascend(g, total_late);
  for (index_t g = groups_late - 1; g >= 0; --g) ascend(g, 0.0);
  job.total = log_total + (m * norm - weta);

  // 6. The outputs in the samples' order (parallel).
  if (!(g_out || l_out)) return;
  const index_t gst = job.grad_out.stride, hst = job.hess_out.stride, lst = job.loss_out.stride;
  // grad_j and hess_j of sample i with its group's record r.
  const auto derivatives = [&](index_t i, const double* r, bool dk, double wi, double& gv,
                               double& hv) {
    const double uk = smp[i].u;
    const double first = uk * (dk ? r[0] - r[2] : r[0]);
    gv = (first - (dk ? wi : 0.0)) * scale;
    hv = (first - uk * uk * (dk ? r[1] - r[3] : r[1])) * scale;
  };
  parallel_for(n, 4, job.threads, [&](index_t b, index_t e) {
    if (g_out && h_out && !l_out && gst == 1 && hst == 1) {  // the boosting call
      for (index_t i = b; i < e; ++i) {
        const K kf = smp[i].key;
        double gv, hv;
        derivatives(i, rec + 4 * (kf >> 1), kf & 1, w ? w[i] : 1.0, gv, hv);
        g_out[i] = static_cast<T>(gv), h_out[i] = static_cast<T>(hv);
      }
      return;
    }
    for (index_t i = b; i < e; ++i) {
      const K kf = smp[i].key;
      const bool dk = kf & 1;
      const index_t gi = static_cast<index_t>(kf >> 1);
      const double wi = w ? w[i] : 1.0;
      double gv, hv;
      derivatives(i, rec + 4 * gi, dk, wi, gv, hv);
      if (g_out) g_out[i * gst] = static_cast<T>(gv);
      if (h_out) h_out[i * hst] = static_cast<T>(hv);
      if (l_out) {
        const double eta = static_cast<double>(pred[i * ps]) - m;
        l_out[i * lst] = static_cast<T>(dk && wi != 0.0 ? wi * (glog[gi] - eta) : 0.0);
      }
    }
  });
}

template <class T>
void cox(CoxJob& job) {
  job.time_dtype == DType::f32 ? cox_kernel<T, float>(job) : cox_kernel<T, double>(job);
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
