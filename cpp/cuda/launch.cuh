// What every CUDA kernel family shares: the block size, the fixed-order block sum, the error slot
// and the launch that sums block partials on the host in a fixed order (deterministic).
#pragma once

#include <cuda_runtime.h>

#include <string>
#include <vector>

#include "fastloss/reduce.hpp"
#include "cuda_job.hpp"

namespace fastloss::cuda {

constexpr int kThreads = 256;

inline std::string& error_slot() {
  static thread_local std::string error;  // the last call's error, per host thread
  return error;
}

inline bool check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return true;
  error_slot() = std::string(what) + ": " + cudaGetErrorString(e);
  return false;
}

// Block-level sum of one double per thread, in a fixed tree.
__device__ FL_INLINE double block_sum(double v, double* shared) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) shared[threadIdx.x] += shared[threadIdx.x + s];
    __syncthreads();
  }
  return shared[0];
}

// Launches `launch(blocks, partial)` and sums its block partials pairwise in a fixed order.
template <class Launch>
double run_partials(index_t blocks, Launch&& launch) {
  error_slot().clear();
  if (blocks == 0) return 0.0;
  double* partial = nullptr;
  if (!check(cudaMalloc(&partial, sizeof(double) * blocks), "cudaMalloc")) return 0.0;
  launch(static_cast<unsigned>(blocks), partial);
  std::vector<double> host(static_cast<size_t>(blocks));
  check(cudaGetLastError(), "kernel launch") &&
      check(cudaMemcpy(host.data(), partial, sizeof(double) * blocks, cudaMemcpyDeviceToHost),
            "kernel");
  cudaFree(partial);
  return pairwise_sum(host.data(), blocks);
}

}  // namespace fastloss::cuda
