// The CPU loss bodies, compiled for the GPU: one templated body per loss, FL_HD on everything.
#include <cuda_runtime.h>

#include <string>
#include <vector>

#include "../losses/registry.hpp"
#include "../losses/binary.hpp"
#include "../losses/regression.hpp"
#include "../losses/likelihood.hpp"
#include "../losses/survival.hpp"
#include "cuda_job.hpp"
#include "launch.cuh"

namespace fastloss::cuda {
namespace {

constexpr int kPerThread = 8;
constexpr index_t kChunk = index_t(kThreads) * kPerThread;  // elements per CUDA block, fixed

struct Params {
  double v[8];
};

template <class T>
__device__ FL_INLINE T load(const void* p, index_t i) {
  return static_cast<const T*>(p)[i];
}

template <template <class> class Body, class T, bool W, bool G, bool H>
__global__ void __launch_bounds__(kThreads)
    elementwise_kernel(CudaJob job, Params prm, double* partial) {
  __shared__ double shared[kThreads];
  const Body<T> body(prm.v);
  const T scale = static_cast<T>(job.grad_scale);
  double acc = 0.0;
  const index_t base = index_t(blockIdx.x) * kChunk + threadIdx.x;
  for (int j = 0; j < kPerThread; ++j) {
    const index_t k = base + index_t(j) * kThreads;
    if (k >= job.n) break;
    const T y = load<T>(job.y_true, job.y_true_period ? k / job.y_true_period : k);
    const T p = load<T>(job.y_pred, k);
    const T a = Body<T>::kAux ? static_cast<T>(job.aux[k % job.aux_period]) : T(0);
    T l, g, h;
    body.template operator()<G, H>(y, p, a, l, g, h);
    const index_t wk = job.weight_period ? k / job.weight_period : k;
    const double w = !W ? 1.0 : job.weight_f32 ? double(load<float>(job.weight, wk)) : load<double>(job.weight, wk);
    // Weights are applied in double (as on the CPU): exact for tiny and huge weights.
    const double wl = W ? w * double(l) : double(l);
    if (job.loss_out) static_cast<T*>(job.loss_out)[k] = static_cast<T>(wl);
    const T s = W ? static_cast<T>(w * job.weight_prescale * job.grad_scale) : scale;
    if constexpr (G) static_cast<T*>(job.grad_out)[k] = g * s;
    if constexpr (H) static_cast<T*>(job.hess_out)[k] = h * s;
    acc += wl;
  }
  const double total = block_sum(acc, shared);
  if (threadIdx.x == 0) partial[blockIdx.x] = total;
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    weight_kernel(const T* w, index_t n, double* partial, int* bad) {
  __shared__ double shared[kThreads];
  double acc = 0.0;
  bool my_bad = false;
  const index_t base = index_t(blockIdx.x) * kChunk + threadIdx.x;
  for (int j = 0; j < kPerThread; ++j) {
    const index_t k = base + index_t(j) * kThreads;
    if (k >= n) break;
    const T v = w[k];
    my_bad |= !(v >= T(0) && v - v == T(0));  // NaN, inf and negatives are rejected
    acc += static_cast<double>(v);
  }
  if (my_bad) atomicExch(bad, 1);
  const double total = block_sum(acc, shared);
  if (threadIdx.x == 0) partial[blockIdx.x] = total;
}

template <template <class> class Body, class T>
double run(const CudaJob& job) {
  Params prm;
  for (int i = 0; i < 8; ++i) prm.v[i] = job.params[i];
  const bool w = job.weight, g = job.grad_out, h = job.hess_out;
  return run_partials((job.n + kChunk - 1) / kChunk, [&](unsigned grid, double* partial) {
    if (w) {
      if (h) elementwise_kernel<Body, T, true, true, true><<<grid, kThreads>>>(job, prm, partial);
      else if (g) elementwise_kernel<Body, T, true, true, false><<<grid, kThreads>>>(job, prm, partial);
      else elementwise_kernel<Body, T, true, false, false><<<grid, kThreads>>>(job, prm, partial);
    } else {
      if (h) elementwise_kernel<Body, T, false, true, true><<<grid, kThreads>>>(job, prm, partial);
      else if (g) elementwise_kernel<Body, T, false, true, false><<<grid, kThreads>>>(job, prm, partial);
      else elementwise_kernel<Body, T, false, false, false><<<grid, kThreads>>>(job, prm, partial);
    }
  });
}

using Fn = double (*)(const CudaJob&);
const Fn kTable[][2] = {
#define FL_ENTRY(name, Body) {&run<losses::Body, float>, &run<losses::Body, double>},
    FASTLOSS_ELEMENTWISE_LOSSES(FL_ENTRY)
#undef FL_ENTRY
};
constexpr int kCount = sizeof(kTable) / sizeof(kTable[0]);

}  // namespace

int num_elementwise() { return kCount; }
const char* last_error() { return error_slot().c_str(); }

double elementwise(int loss, bool f32, const CudaJob& job) {
  return kTable[loss][f32 ? 0 : 1](job);
}

double weight_sum(const void* w, index_t n, bool f32, bool* bad) {
  int* flag = nullptr;
  *bad = false;
  if (!check(cudaMalloc(&flag, sizeof(int)), "cudaMalloc")) return 0.0;
  cudaMemset(flag, 0, sizeof(int));
  const double total = run_partials((n + kChunk - 1) / kChunk, [&](unsigned grid, double* partial) {
    if (f32) weight_kernel<float><<<grid, kThreads>>>(static_cast<const float*>(w), n, partial, flag);
    else weight_kernel<double><<<grid, kThreads>>>(static_cast<const double*>(w), n, partial, flag);
  });
  int host_flag = 0;
  cudaMemcpy(&host_flag, flag, sizeof(int), cudaMemcpyDeviceToHost);
  cudaFree(flag);
  *bad = host_flag != 0;
  return total;
}

}  // namespace fastloss::cuda
