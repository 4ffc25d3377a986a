// The label and probability checks for one ISA: one parallel pass counts the values outside a
// domain; only when there are some is the index of the first one searched.
#include "fastloss/reduce.hpp"

#include "kernels.hpp"

FL_NAMESPACE_BEGIN
namespace {

// 1 where v lies outside the domain, else 0. Selects on single comparisons keep the counting map
// vectorized (a combined condition, && or & of bools, makes gcc leave it scalar).
template <LabelDomain D, class T>
FL_INLINE T outside(T v, T low) {
  if constexpr (D == LabelDomain::sign) {  // -1, 0 (either sign), +1; NaN is outside
    const T zero = v == T(0) ? T(0) : T(1);
    const T minus_one = v == T(-1) ? T(0) : zero;
    return v == T(1) ? T(0) : minus_one;
  } else if constexpr (D == LabelDomain::unit_interval) {  // NaN passes
    const T above = v > T(1) ? T(1) : T(0);
    return v < T(0) ? T(1) : above;
  } else {  // finite and > low (>= low for at_or_above); v - v is NaN for NaN and +-inf
    const T in = D == LabelDomain::above ? (v > low ? T(0) : T(1)) : (v >= low ? T(0) : T(1));
    return v - v == T(0) ? in : T(1);
  }
}

template <class T, LabelDomain D>
index_t first_outside(const void* data, index_t stride, index_t n, int threads, double low_bound) {
  const T* y = static_cast<const T*>(data);
  const T low = static_cast<T>(low_bound);  // exact: the caller's contract
  // A map into an L1 buffer, then the lane sum: both vectorize (an integer count of bools from
  // floating-point compares stays a scalar loop, slower than reading the labels from memory).
  const double count = blocked_sum(n, kBlock, threads, [&](index_t k0, index_t len) {
    alignas(64) T flags[kBlock];
    if (stride == 1) {
      const T* p = y + k0;
      for (index_t i = 0; i < len; ++i) flags[i] = outside<D>(p[i], low);
    } else {
      for (index_t i = 0; i < len; ++i) flags[i] = outside<D>(y[(k0 + i) * stride], low);
    }
    return lane_sum(flags, len);
  });
  if (count == 0) return -1;
  for (index_t i = 0; i < n; ++i)
    if (outside<D>(y[i * stride], low) != T(0)) return i;
  return -1;
}

}  // namespace
FL_NAMESPACE_END

namespace fastloss {

void FL_REGISTER_FN(labels)(KernelTable& t) {
#define FL_REG(domain)                                                                          \
  t.label_scan[static_cast<int>(LabelDomain::domain)][0] = &first_outside<float, LabelDomain::domain>; \
  t.label_scan[static_cast<int>(LabelDomain::domain)][1] = &first_outside<double, LabelDomain::domain>;
  FL_REG(sign)
  FL_REG(unit_interval)
  FL_REG(above)
  FL_REG(at_or_above)
#undef FL_REG
}

}  // namespace fastloss
