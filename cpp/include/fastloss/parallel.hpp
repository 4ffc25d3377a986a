// The one parallel primitive of every kernel family. Families say how much work an item is; this
// header alone decides whether other threads help and how many.
//
// Work is cut into chunks whose boundaries depend on the problem size only, and chunks are handed
// out one at a time from a shared counter to the calling thread and the pool's helpers. The caller
// always works too and never waits for a helper that has not started: on a machine whose cores
// are busy with other processes a helper may not run for a scheduler time slice, and the caller
// then does all the chunks itself (as fast as one thread, never slower). Which thread runs a chunk
// never changes a result, because chunks write only their own outputs and partial sums go to
// fixed slots combined in a fixed order (blocked_sum in reduce.hpp).
//
// This replaces OpenMP parallel regions: with libgomp's default spin-waiting, a region on cores
// kept busy by other processes took 20-160x the one-thread time (its team and its closing barrier
// wait for every thread), and its wait policy can only be changed through the environment before
// libgomp loads. See bench/bench_threads.py.
#pragma once

#include <type_traits>

#include "fastloss/config.hpp"

namespace fastloss {
// Defined once, in cpp/cpu/parallel.cpp (baseline flags): one pool per process for every ISA.
// Calls fn(ctx, c) once for every c in [0, chunks), on the caller and up to `helpers` pool
// threads; returns when all calls have returned. Runs serially when the pool is in use (another
// caller, or a call from inside a chunk) or cannot start threads.
void run_chunks(index_t chunks, int helpers, void (*fn)(void*, index_t), void* ctx);
}  // namespace fastloss

FL_NAMESPACE_BEGIN

inline constexpr index_t kParallelMinWork = 32768;  // less total work than this: one thread
inline constexpr index_t kChunkWork = 16384;        // work per chunk in parallel_for (items x cost)
inline constexpr int kMaxThreads = 256;             // bound on the threads of one call

// Runs chunk_fn(c) for c in [0, chunks); `work_per_chunk` estimates a chunk's cost in elementary
// steps (about one memory-bound element each). Every helper is given at least kParallelMinWork.
template <class ChunkFn>
void parallel_chunks(index_t chunks, index_t work_per_chunk, int threads, ChunkFn&& chunk_fn) {
  if (chunks <= 0) return;
  const index_t work = chunks * (work_per_chunk > 0 ? work_per_chunk : 1);
  index_t t = threads < kMaxThreads ? threads : kMaxThreads;
  t = min_(t, chunks);
  t = min_(t, work / kParallelMinWork);
  if (t <= 1) {
    for (index_t c = 0; c < chunks; ++c) chunk_fn(c);
    return;
  }
  using F = typename std::remove_reference<ChunkFn>::type;
  run_chunks(chunks, static_cast<int>(t - 1),
             [](void* ctx, index_t c) { (*static_cast<F*>(ctx))(c); },
             const_cast<void*>(static_cast<const void*>(&chunk_fn)));
}

// Runs fn(begin, end) over [0, n) in chunks of about kChunkWork work (at least one item each); the
// chunk boundaries depend on n and work_per_item only.
template <class Fn>
void parallel_for(index_t n, index_t work_per_item, int threads, Fn&& fn) {
  if (n <= 0) return;
  const index_t w = work_per_item > 0 ? work_per_item : 1;
  const index_t grain = w >= kChunkWork ? 1 : kChunkWork / w;
  const index_t chunks = (n + grain - 1) / grain;
  parallel_chunks(chunks, grain * w, threads, [&](index_t c) {
    const index_t begin = c * grain;
    fn(begin, min_(n, begin + grain));
  });
}

// parallel_for calling fn(i) for each item.
template <class Fn>
void parallel_for_each(index_t n, index_t work_per_item, int threads, Fn&& fn) {
  parallel_for(n, work_per_item, threads, [&](index_t begin, index_t end) {
    for (index_t i = begin; i < end; ++i) fn(i);
  });
}

FL_NAMESPACE_END
