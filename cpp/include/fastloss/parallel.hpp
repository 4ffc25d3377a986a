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

#include <cstdlib>
#include <type_traits>

#include "fastloss/alloc.hpp"
#include "fastloss/config.hpp"

namespace fastloss {
// Defined once, in cpp/cpu/parallel.cpp (baseline flags): one pool per process for every ISA.
// Calls fn(ctx, c, slot) once for every c in [0, chunks), on the caller (slot 0) and up to
// `helpers` pool threads (slots 1..helpers, one each); returns when all calls have returned. Runs
// serially when the pool is in use (another caller, or a call from inside a chunk) or cannot start
// threads.
// An exception thrown by a chunk (on any thread) stops the job: chunks not yet started are
// skipped, and the caller rethrows it once the helpers have left the job.
void run_chunks(index_t chunks, int helpers, void (*fn)(void*, index_t, int), void* ctx);

// Interrupts (Ctrl-C). The binding arms the thread that released the GIL with a check that may
// throw (it runs Python's signal handlers); poll_interrupt(), called between chunks and between
// the iterations of iterative kernels, runs it at most every kInterruptPeriodNs, and does nothing
// on threads that are not armed (pool helpers, callers that are not the main thread).
inline constexpr long long kInterruptPeriodNs = 50'000'000;
struct InterruptScope {
  explicit InterruptScope(void (*check)());
  ~InterruptScope();
  InterruptScope(const InterruptScope&) = delete;
  InterruptScope& operator=(const InterruptScope&) = delete;

 private:
  void (*saved_check)();
  long long saved_deadline;
};
void poll_interrupt();
}  // namespace fastloss

FL_NAMESPACE_BEGIN

inline constexpr index_t kParallelMinWork = 32768;  // less total work than this: one thread
inline constexpr index_t kChunkWork = 16384;        // work per chunk in parallel_for (items x cost)
inline constexpr int kMaxThreads = 256;             // bound on the threads of one call

// The threads that `work` elementary steps warrant (about one memory-bound element each), of
// the `threads` asked for: every helper is given at least kParallelMinWork.
inline index_t useful_threads(int threads, index_t work) {
  const index_t t = threads < kMaxThreads ? threads : kMaxThreads;
  return min_(t, work / kParallelMinWork);
}

// Runs chunk_fn(c, slot) for c in [0, chunks), slot in [0, kMaxThreads) naming the thread that
// runs it (no two threads share a slot during a call); `work_per_chunk` estimates a chunk's cost
// in elementary steps (useful_threads).
template <class ChunkFn>
void parallel_chunks_slots(index_t chunks, index_t work_per_chunk, int threads,
                           ChunkFn&& chunk_fn) {
  if (chunks <= 0) return;
  const index_t work = chunks * (work_per_chunk > 0 ? work_per_chunk : 1);
  const index_t t = min_(chunks, useful_threads(threads, work));
  if (t <= 1) {
    for (index_t c = 0; c < chunks; ++c) {
      chunk_fn(c, 0);
      poll_interrupt();
    }
    return;
  }
  using F = typename std::remove_reference<ChunkFn>::type;
  run_chunks(chunks, static_cast<int>(t - 1),
             [](void* ctx, index_t c, int slot) { (*static_cast<F*>(ctx))(c, slot); },
             const_cast<void*>(static_cast<const void*>(&chunk_fn)));
}

// Runs chunk_fn(c) for c in [0, chunks) (see parallel_chunks_slots).
template <class ChunkFn>
void parallel_chunks(index_t chunks, index_t work_per_chunk, int threads, ChunkFn&& chunk_fn) {
  parallel_chunks_slots(chunks, work_per_chunk, threads, [&](index_t c, int) { chunk_fn(c); });
}

inline index_t chunk_grain(index_t work_per_item) {
  const index_t w = work_per_item > 0 ? work_per_item : 1;
  return w >= kChunkWork ? 1 : kChunkWork / w;
}

// Runs fn(begin, end) over [0, n) in chunks of about kChunkWork work (at least one item each); the
// chunk boundaries depend on n and work_per_item only.
template <class Fn>
void parallel_for(index_t n, index_t work_per_item, int threads, Fn&& fn) {
  if (n <= 0) return;
  const index_t grain = chunk_grain(work_per_item);
  parallel_chunks((n + grain - 1) / grain, grain * (work_per_item > 0 ? work_per_item : 1),
                  threads, [&](index_t c) { fn(c * grain, min_(n, c * grain + grain)); });
}

// parallel_for with working memory per thread: fn(begin, end, state), where state is the running
// thread's *make() (a new-allocated object), made on its first chunk and deleted at the end, so
// scratch buffers are allocated once per thread, not once per chunk.
template <class Make, class Fn>
void parallel_for_scratch(index_t n, index_t work_per_item, int threads, Make&& make, Fn&& fn) {
  if (n <= 0) return;
  using S = typename std::remove_pointer<decltype(make())>::type;
  struct Slots {  // deleted also when a chunk throws (an interrupt, a failed allocation)
    S* s[kMaxThreads] = {};
    ~Slots() {
      for (S* p : s) delete p;
    }
  } slots;
  const index_t grain = chunk_grain(work_per_item);
  parallel_chunks_slots((n + grain - 1) / grain, grain * (work_per_item > 0 ? work_per_item : 1),
                        threads, [&](index_t c, int slot) {
                          if (!slots.s[slot]) slots.s[slot] = make();
                          fn(c * grain, min_(n, c * grain + grain), *slots.s[slot]);
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
