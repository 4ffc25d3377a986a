// The label and probability checks for one ISA: one parallel pass counts the values outside a
// domain; only when there are some is the index of the first one searched.
#include "fastloss/reduce.hpp"
#include "fastloss/simd.hpp"

#include "kernels.hpp"

FL_NAMESPACE_BEGIN
namespace {

// 1 where v lies outside the domain, else 0; v one value (U = T) or a register of them
// (U = Vec<T>). Selects on single comparisons keep both forms branch-free.
template <LabelDomain D, class U, class T>
FL_INLINE U outside(U v, T low) {
  const U zero = {}, one = zero + T(1);
  if constexpr (D == LabelDomain::sign) {  // -1, 0 (either sign), +1; NaN is outside
    const U not_zero = v == zero ? zero : one;
    const U minus_one = v == zero - T(1) ? zero : not_zero;
    return v == one ? zero : minus_one;
  } else if constexpr (D == LabelDomain::unit_interval) {  // NaN passes
    const U above = v > one ? one : zero;
    return v < zero ? one : above;
  } else {  // finite and > low (>= low for at_or_above); v - v is NaN for NaN and +-inf
    const U lo = zero + low;
    const U in = D == LabelDomain::above ? (v > lo ? zero : one) : (v >= lo ? zero : one);
    return v - v == zero ? in : one;
  }
}

template <class T, LabelDomain D>
index_t first_outside(const void* data, index_t stride, index_t n, int threads, double low_bound) {
  const T* y = static_cast<const T*>(data);
  const T low = static_cast<T>(low_bound);  // exact: the caller's contract
  // Contiguous labels: the flags of a block summed in the lanes of one register (exact: at most
  // kBlock / lanes ones per lane), a register at a time; strided ones through an L1 buffer and
  // the lane sum (an integer count of bools from floating-point compares stays a scalar loop).
  const double count = blocked_sum(n, kBlock, threads, [&](index_t k0, index_t len) {
    if (stride == 1) {
      using U = simd::Vec<T>;
      constexpr index_t W = simd::kVecLen<T>;
      const T* p = y + k0;
      U acc = {};
      index_t i = 0;
      for (; i + W <= len; i += W) acc += outside<D>(simd::ld<U>(p + i), low);
      double total = 0.0;
      for (; i < len; ++i) total += outside<D>(p[i], low);
      for (index_t j = 0; j < W; ++j) total += acc[j];
      return total;
    }
    alignas(64) T flags[kBlock];
    for (index_t i = 0; i < len; ++i) flags[i] = outside<D>(y[(k0 + i) * stride], low);
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
