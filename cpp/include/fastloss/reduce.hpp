// Deterministic reductions. The summation order depends only on the problem size, never on the
// thread count or the SIMD width: elements are summed in blocks of fixed size into a fixed number of
// double lanes, lanes and block partials are combined pairwise in a fixed order, and threads only
// decide who computes which superblock (a fixed group of blocks), each into its own slot.
#pragma once

#include <cstdlib>

#include "fastloss/config.hpp"
#include "fastloss/parallel.hpp"

FL_NAMESPACE_BEGIN

inline constexpr index_t kBlock = 1024;            // elements per block (fits L1 with its buffers)
inline constexpr index_t kBlocksPerSuper = 16;     // blocks per superblock (unit of thread work)
inline constexpr int kLanes = 16;                  // double accumulator lanes inside a block

// Sums x[0..n) in place, pairwise, in an order fixed by n alone: ((x0 + x1) + (x2 + x3)) + ...
// U: double, or a register of values summed lane by lane (a pixel's classes in softmax Dice).
template <class U>
FL_HD FL_INLINE U pairwise_sum(U* x, index_t n) {
  if (n == 0) return U{};
  while (n > 1) {
    const index_t half = n / 2;
    for (index_t i = 0; i < half; ++i) x[i] = x[2 * i] + x[2 * i + 1];
    if (n & 1) x[half] = x[n - 1];
    n = half + (n & 1);
  }
  return x[0];
}

// Adds x[0..len) into kLanes fixed lanes (lane j takes elements j, j+kLanes, ...): a block added
// in pieces whose lengths are multiples of kLanes (the last aside) gets the bits of one call.
// Vectorizes for any ISA with the same order of additions per lane.
template <class T>
FL_HD FL_INLINE void lanes_add(double* __restrict acc, const T* __restrict x, index_t len) {
  index_t i = 0;
  for (; i + kLanes <= len; i += kLanes)
    for (int j = 0; j < kLanes; ++j) acc[j] += static_cast<double>(x[i + j]);
  for (int j = 0; i + j < len; ++j) acc[j] += static_cast<double>(x[i + j]);
}

// The same for x[i] * w[i] (products in double).
template <class T>
FL_INLINE void lanes_add_dot(double* __restrict acc, const T* __restrict x,
                             const double* __restrict w, index_t len) {
  index_t i = 0;
  for (; i + kLanes <= len; i += kLanes)
    for (int j = 0; j < kLanes; ++j) acc[j] += static_cast<double>(x[i + j]) * w[i + j];
  for (int j = 0; i + j < len; ++j) acc[j] += static_cast<double>(x[i + j]) * w[i + j];
}

// Sum of one block in the lanes of lanes_add, lanes combined pairwise.
template <class T>
FL_HD inline double lane_sum(const T* x, index_t len) {
  double acc[kLanes] = {};
  lanes_add(acc, x, len);
  return pairwise_sum(acc, kLanes);
}

// Sum of x[i] * w[i] (products in double) in the same lane order as lane_sum.
template <class T>
inline double lane_dot(const T* x, const double* w, index_t len) {
  double acc[kLanes] = {};
  lanes_add_dot(acc, x, w, len);
  return pairwise_sum(acc, kLanes);
}

// Runs block_fn(begin, len) -> double over [0, n) in blocks of `block` items and returns the
// deterministic sum of the block results. `work_per_item` is an item's cost for parallel_chunks (a
// row of K classes is K items of work; an element of a loss with a transcendental several).
template <class BlockFn>
double blocked_sum(index_t n, index_t block, int threads, BlockFn&& block_fn,
                   index_t work_per_item = 1) {
  if (n <= 0) return 0.0;
  const index_t nblk = (n + block - 1) / block;
  const index_t nsup = (nblk + kBlocksPerSuper - 1) / kBlocksPerSuper;
  auto block_result = [&](index_t b) {
    const index_t begin = b * block;
    return block_fn(begin, min_(block, n - begin));
  };
  auto super = [&](index_t s) {
    double part[kBlocksPerSuper];
    const index_t b0 = s * kBlocksPerSuper, b1 = min_(nblk, b0 + kBlocksPerSuper);
    for (index_t b = b0; b < b1; ++b) part[b - b0] = block_result(b);
    return pairwise_sum(part, b1 - b0);
  };
  const index_t block_work = block * (work_per_item > 0 ? work_per_item : 1);
  const index_t t = useful_threads(threads, nblk * block_work);
  // No std containers in ISA code: an out-of-line copy compiled for AVX-512 could be picked by the
  // linker for the baseline kernels.
  constexpr index_t kSmall = 128;  // slots on the stack (the block path's, up to 2 threads)
  double small[kSmall];
  if (t <= 1 || nsup >= 4 * t) {  // superblocks: the unit of thread work
    if (nsup == 1) return super(0);
    double* partial = nsup > kSmall ? alloc_array<double>(nsup) : small;
    parallel_chunks(nsup, kBlocksPerSuper * block_work, threads,
                    [&](index_t s) { partial[s] = super(s); });
    const double total = pairwise_sum(partial, nsup);
    if (partial != small) std::free(partial);
    return total;
  }
  // Fewer superblocks than the threads can share (a short array of costly items): chunks of a
  // few blocks, each block's result in its own slot, then every superblock combined from its slots
  // as super() combines them: the same sum as one thread's. (Superblock s's result goes to slot
  // s <= its first block's, whose slots are read by then.)
  double* part = nblk > kSmall ? alloc_array<double>(nblk) : small;
  const index_t per = nblk / (4 * t) > 0 ? nblk / (4 * t) : 1;  // blocks per chunk
  parallel_chunks((nblk + per - 1) / per, per * block_work, threads, [&](index_t c) {
    for (index_t b = c * per; b < min_(nblk, c * per + per); ++b) part[b] = block_result(b);
  });
  for (index_t s = 0; s < nsup; ++s) {
    const index_t b0 = s * kBlocksPerSuper, b1 = min_(nblk, b0 + kBlocksPerSuper);
    part[s] = pairwise_sum(part + b0, b1 - b0);
  }
  const double total = pairwise_sum(part, nsup);
  if (part != small) std::free(part);
  return total;
}

FL_NAMESPACE_END
