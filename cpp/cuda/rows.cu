// The CPU row-wise loss bodies compiled for the GPU: one thread per row (the body's own loop over
// the K classes), the same per-row step (row_value) as the CPU driver.
#include <cuda_runtime.h>

#include "../losses/registry.hpp"
#include "../losses/cross_entropy.hpp"
#include "../losses/distillation.hpp"
#include "../losses/multi_margin.hpp"
#include "../losses/likelihood.hpp"
#include "cuda_job.hpp"
#include "launch.cuh"

namespace fastloss::cuda {
namespace {

constexpr size_t kScratchBytes = size_t(256) << 20;  // bound on the per-thread scratch rows
constexpr index_t kMaxBlocks = 1024;

template <template <class> class Body, class T, bool G, bool H>
__global__ void __launch_bounds__(kThreads)
    rows_kernel(RowJob job, Body<T> body, T* scratch, index_t scratch_len, double* partial) {
  __shared__ double shared[kThreads];
  const index_t tid = index_t(blockIdx.x) * kThreads + threadIdx.x;
  const index_t stride = index_t(gridDim.x) * kThreads;
  T* buf = scratch ? scratch + tid * scratch_len : nullptr;
  double acc = 0.0;
  for (index_t r = tid; r < job.rows; r += stride) acc += row_value<Body<T>, T, G, H>(body, job, r, buf);
  const double total = block_sum(acc, shared);
  if (threadIdx.x == 0) partial[blockIdx.x] = total;
}

template <template <class> class Body, class T>
double run_rows(const RowJob& job) {
  const Body<T> body(job.params);
  RowJob dev = job;
  dev.params = nullptr;  // decoded into `body` on the host
  const index_t scratch_len = Body<T>::spec.scratch_rows * job.K;
  index_t blocks = (job.rows + kThreads - 1) / kThreads;
  blocks = blocks < kMaxBlocks ? blocks : kMaxBlocks;
  if (scratch_len > 0) {
    const index_t fit = index_t(kScratchBytes / (sizeof(T) * scratch_len * kThreads));
    blocks = blocks < fit ? blocks : (fit > 0 ? fit : 1);
  }
  T* scratch = nullptr;
  if (scratch_len > 0 && blocks > 0 &&
      !check(cudaMalloc(&scratch, sizeof(T) * scratch_len * kThreads * blocks), "cudaMalloc"))
    return 0.0;
  const bool g = job.grad_out, h = job.hess_out;
  const double total = run_partials(blocks, [&](unsigned grid, double* partial) {
    if (h) rows_kernel<Body, T, true, true><<<grid, kThreads>>>(dev, body, scratch, scratch_len, partial);
    else if (g) rows_kernel<Body, T, true, false><<<grid, kThreads>>>(dev, body, scratch, scratch_len, partial);
    else rows_kernel<Body, T, false, false><<<grid, kThreads>>>(dev, body, scratch, scratch_len, partial);
  });
  if (scratch) cudaFree(scratch);
  return total;
}

struct RowEntry {
  RowSpec spec;
  double (*fn[2])(const RowJob&);
};
const RowEntry kRows[] = {
#define FL_ENTRY(name, Body) {losses::Body<double>::spec, {&run_rows<losses::Body, float>, &run_rows<losses::Body, double>}},
    FASTLOSS_ROW_LOSSES(FL_ENTRY)
#undef FL_ENTRY
};
constexpr int kCount = sizeof(kRows) / sizeof(kRows[0]);

}  // namespace

int num_rowwise() { return kCount; }
const RowSpec& row_spec(int loss) { return kRows[loss].spec; }
double rowwise(int loss, bool f32, const RowJob& job) { return kRows[loss].fn[f32 ? 0 : 1](job); }

}  // namespace fastloss::cuda
