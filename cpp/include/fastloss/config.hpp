// Portability macros shared by every kernel: the same loss bodies compile for the host (per-ISA
// translation units) and, in the optional CUDA target, for the device.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define FL_HD __host__ __device__
#define FL_INLINE __forceinline__
#define FL_LAMBDA_INLINE
#define FL_NOINLINE __noinline__
#else
#define FL_HD
#define FL_INLINE inline __attribute__((always_inline))
// After a lambda's parameter list: gcc otherwise may leave a large per-group lambda as a call whose
// entry rebuilds its captured constants every time.
#define FL_LAMBDA_INLINE __attribute__((always_inline))
// A loop that gcc vectorizes on its own but not once inlined into a large caller (AFT's kinds).
#define FL_NOINLINE __attribute__((noinline))
#endif

// Everything with code in it lives in an ISA-specific inline namespace: the same headers are compiled
// once per instruction set, and distinct symbols keep the linker from merging an AVX-512 copy of an
// inline function into the baseline kernels. FL_ISA_NS is set per translation unit by CMake.
#ifndef FL_ISA_NS
#define FL_ISA_NS isa_generic
#endif
#define FL_NAMESPACE_BEGIN \
  namespace fastloss {     \
  inline namespace FL_ISA_NS {
#define FL_NAMESPACE_END \
  }                      \
  }

namespace fastloss {
using index_t = std::int64_t;  // 64-bit indexing everywhere (arrays above 2^31 elements)
}  // namespace fastloss

FL_NAMESPACE_BEGIN

// The build uses -ffp-contract=off, so the compiler never fuses a*b+c on its own: every fused
// multiply-add is written here, once. Targets with FMA (AVX2, AVX-512, CUDA) therefore compute
// bit-identical results; the baseline target (no FMA unit) rounds twice and may differ in the last
// bit, which the README states.
#if defined(__CUDA_ARCH__)
FL_HD FL_INLINE float fma_(float a, float b, float c) { return fmaf(a, b, c); }
FL_HD FL_INLINE double fma_(double a, double b, double c) { return fma(a, b, c); }
inline constexpr bool kHasFma = true;
#elif defined(__FMA__)
FL_HD FL_INLINE float fma_(float a, float b, float c) { return __builtin_fmaf(a, b, c); }
FL_HD FL_INLINE double fma_(double a, double b, double c) { return __builtin_fma(a, b, c); }
inline constexpr bool kHasFma = true;
#else
FL_HD FL_INLINE float fma_(float a, float b, float c) { return a * b + c; }
FL_HD FL_INLINE double fma_(double a, double b, double c) { return a * b + c; }
inline constexpr bool kHasFma = false;
#endif

// Bytes of one SIMD register of the target, the width of the explicit GCC vectors: gcc lowers a
// compare or select on a wider generic vector lane by lane into scalar code, branches included
// (gcc 12), and keeps such vectors in memory between operations.
#if defined(__AVX512F__)
inline constexpr int kRegBytes = 64;
#elif defined(__AVX__)
inline constexpr int kRegBytes = 32;
#else
inline constexpr int kRegBytes = 16;
#endif

template <class T>
FL_HD FL_INLINE T min_(T a, T b) { return b < a ? b : a; }

FL_NAMESPACE_END
