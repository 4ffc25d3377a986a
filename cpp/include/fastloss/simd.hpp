// Explicit SIMD without intrinsics: GCC generic vectors of one register of the target (kRegBytes:
// 64 bytes with AVX-512, 32 with AVX2, 16 with SSE2), and a column loop that runs the same body on
// vectors and then on a scalar tail. The body is written once for U = T or U = Vec<T>, so every
// element gets the same bits whichever path computes it, and an explicit load-then-store at the
// same index is well defined when input and output are the same buffer (which auto-vectorized
// loops with restrict pointers cannot promise).
#pragma once

#include <cstring>
#include <type_traits>

#include "fastloss/config.hpp"

// The vectors only travel between always-inlined functions and lambdas of one translation unit,
// so GCC's notes about their ABI on targets without AVX-512 do not apply (CMake: -Wno-psabi).

FL_NAMESPACE_BEGIN
namespace simd {

// GCC generic vectors of one register. Wider ones gcc keeps in memory between operations where
// they span several registers (64-byte vectors made SSIM 7x slower on AVX2 than on AVX-512). The
// width changes no result: the bodies are elementwise.
template <class T>
struct VecOf;
template <>
struct VecOf<float> {
  typedef float type __attribute__((vector_size(kRegBytes)));
};
template <>
struct VecOf<double> {
  typedef double type __attribute__((vector_size(kRegBytes)));
};
template <class T>
using Vec = typename VecOf<T>::type;
template <class T>
inline constexpr index_t kVecLen = kRegBytes / sizeof(T);
template <class T>
FL_INLINE Vec<T> vload(const T* p) {
  Vec<T> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <class T>
FL_INLINE void vstore(T* p, const Vec<T>& v) {
  std::memcpy(p, &v, sizeof v);
}

// U is T (a scalar tail) or Vec<T> (kVecLen<T> consecutive columns): the same formulas, so every
// column gets the same bits whichever path computes it.
template <class U, class T>
FL_INLINE U ld(const T* p) {
  if constexpr (std::is_same_v<U, T>)
    return *p;
  else
    return vload<T>(p);
}
template <class U, class T>
FL_INLINE void st(T* p, const U& v) {
  if constexpr (std::is_same_v<U, T>)
    *p = v;
  else
    vstore<T>(p, v);
}

// x == c ? 1 : 0 for each lane (a one-hot row from class labels held as T).
template <class U, class T>
FL_INLINE U indicator(const U& x, T c) {
  const U zero = {};
  return x == c ? zero + T(1) : zero;
}

// Names a type without a value of it (a vector passed by value draws ABI notes).
template <class U>
struct Tag {
  using type = U;
};

// Runs body(Tag<U>{}, j) over [j0, j1): U = Vec<T> for kVecLen<T> columns at a time, then U = T
// for the tail. In the body: `using U = typename decltype(tag)::type;`.
template <class T, class Body>
FL_INLINE void columns(index_t j0, index_t j1, Body&& body) {
  index_t j = j0;
  for (; j + kVecLen<T> <= j1; j += kVecLen<T>) body(Tag<Vec<T>>{}, j);
  for (; j < j1; ++j) body(Tag<T>{}, j);
}

}  // namespace simd
FL_NAMESPACE_END
