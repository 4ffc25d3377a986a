// The soft Dice family (spec 5.5): Dice, generalized Dice, Tversky. The loss formulas act on a few
// sums per (image, class) and live in python/fastloss/segmentation.py; the two passes over the
// pixels live here:
//   pass 1 (dice_sums): p = activation(z) per pixel (identity, sigmoid, or softmax over the class
//     axis), and per (n, c) the sums of p g, p, p^2, g, g^2 (g: the target, or the one-hot label);
//   pass 2 (dice_grad): with per-(n, c) coefficients, d loss / d p = a g + b + c p, chained through
//     the activation: sigmoid p (1 - p) d, softmax p_c (d_c - sum_k p_k d_k).
// Layout (N, C, S): pixels contiguous, classes S apart. Work unit: one image, one block of kBlock
// pixels (all classes); block sums in fixed double lanes, combined pairwise in block order, so the
// sums are bitwise independent of the thread count.
#pragma once

#include <omp.h>

#include <cstdlib>
#include <cstring>

#include "fastloss/job.hpp"
#include "fastloss/reduce.hpp"
#include "fastloss/vmath.hpp"

FL_NAMESPACE_BEGIN
namespace losses {
namespace dice_detail {

// p[c * kBlock + i] = activation(z) of image n, pixels [i0, i0 + len), every class.
template <class T>
void block_probs(const DiceJob& job, index_t n, index_t i0, index_t len, T* __restrict p,
                 T* __restrict tmp) {
  const index_t C = job.C, S = job.S;
  const T* z = static_cast<const T*>(job.z) + n * C * S + i0;
  switch (job.activation) {
    case Activation::none:
      for (index_t c = 0; c < C; ++c)
        for (index_t i = 0; i < len; ++i) p[c * kBlock + i] = z[c * S + i];
      break;
    case Activation::sigmoid:
      for (index_t c = 0; c < C; ++c) {
        const T* __restrict zc = z + c * S;
        T* __restrict pc = p + c * kBlock;
        for (index_t i = 0; i < len; ++i) pc[i] = vm::sigmoid(zc[i]);
      }
      break;
    case Activation::softmax: {
      T* __restrict m = tmp;  // running max, then 1 / sum
      for (index_t i = 0; i < len; ++i) m[i] = z[i];
      for (index_t c = 1; c < C; ++c) {
        const T* __restrict zc = z + c * S;
        for (index_t i = 0; i < len; ++i) m[i] = zc[i] > m[i] ? zc[i] : m[i];
      }
      T* __restrict sum = tmp + kBlock;
      for (index_t i = 0; i < len; ++i) sum[i] = T(0);
      for (index_t c = 0; c < C; ++c) {
        const T* __restrict zc = z + c * S;
        T* __restrict pc = p + c * kBlock;
        for (index_t i = 0; i < len; ++i) {
          pc[i] = vm::exp(zc[i] - m[i]);
          sum[i] += pc[i];
        }
      }
      for (index_t i = 0; i < len; ++i) m[i] = T(1) / sum[i];
      for (index_t c = 0; c < C; ++c) {
        T* __restrict pc = p + c * kBlock;
        for (index_t i = 0; i < len; ++i) pc[i] *= m[i];
      }
      break;
    }
  }
}

// g of class c, image n, pixels [i0, i0 + len).
template <class T>
void block_target(const DiceJob& job, index_t n, index_t c, index_t i0, index_t len, T* __restrict g) {
  if (job.labels) {
    const std::int64_t* __restrict lab = job.labels + n * job.S + i0;
    for (index_t i = 0; i < len; ++i) g[i] = lab[i] == c ? T(1) : T(0);
  } else {
    const T* __restrict t = static_cast<const T*>(job.targets) + (n * job.C + c) * job.S + i0;
    for (index_t i = 0; i < len; ++i) g[i] = t[i];
  }
}

// The activations of a block to / from job.probs.
template <class T>
void store_block(const DiceJob& job, index_t n, index_t i0, index_t len, const T* __restrict p) {
  T* dst = static_cast<T*>(job.probs) + n * job.C * job.S + i0;
  for (index_t c = 0; c < job.C; ++c) std::memcpy(dst + c * job.S, p + c * kBlock, sizeof(T) * len);
}
template <class T>
void load_block(const DiceJob& job, index_t n, index_t i0, index_t len, T* __restrict p) {
  const T* src = static_cast<const T*>(job.probs) + n * job.C * job.S + i0;
  for (index_t c = 0; c < job.C; ++c) std::memcpy(p + c * kBlock, src + c * job.S, sizeof(T) * len);
}

// Per-thread block buffers: probabilities (C x kBlock), targets, softmax temporaries.
template <class T>
struct Scratch {
  T* p;
  T* g;
  T* tmp;
  explicit Scratch(index_t C) {
    p = static_cast<T*>(std::malloc(sizeof(T) * C * kBlock));
    g = static_cast<T*>(std::malloc(sizeof(T) * kBlock));
    tmp = static_cast<T*>(std::malloc(sizeof(T) * 2 * kBlock));
  }
  ~Scratch() {
    std::free(p);
    std::free(g);
    std::free(tmp);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
};

}  // namespace dice_detail

template <class T>
void dice_sums(const DiceJob& job) {
  using namespace dice_detail;
  const index_t N = job.N, C = job.C, S = job.S;
  const index_t nb = (S + kBlock - 1) / kBlock, units = N * nb;
  // part[(unit * C + c) * kDiceSums + q]
  double* part = static_cast<double*>(std::malloc(sizeof(double) * units * C * kDiceSums + 1));
  const bool par = job.threads > 1 && units > 1 && N * C * S >= kParallelMinWork;
#pragma omp parallel num_threads(par ? job.threads : 1)
  {
    Scratch<T> s(C);
#pragma omp for schedule(static)
    for (index_t u = 0; u < units; ++u) {
      const index_t n = u / nb, i0 = (u % nb) * kBlock, len = min_(kBlock, S - i0);
      block_probs(job, n, i0, len, s.p, s.tmp);
      if (job.probs) store_block(job, n, i0, len, s.p);
      for (index_t c = 0; c < C; ++c) {
        block_target(job, n, c, i0, len, s.g);
        const T* __restrict pc = s.p + c * kBlock;
        const T* __restrict g = s.g;
        double acc[kDiceSums][kLanes] = {};
        index_t i = 0;
        for (; i + kLanes <= len; i += kLanes)
          for (int l = 0; l < kLanes; ++l) {
            const double pv = pc[i + l], gv = g[i + l];
            acc[0][l] += pv * gv;
            acc[1][l] += pv;
            acc[2][l] += pv * pv;
            acc[3][l] += gv;
            acc[4][l] += gv * gv;
          }
        for (int l = 0; i + l < len; ++l) {
          const double pv = pc[i + l], gv = g[i + l];
          acc[0][l] += pv * gv;
          acc[1][l] += pv;
          acc[2][l] += pv * pv;
          acc[3][l] += gv;
          acc[4][l] += gv * gv;
        }
        double* out = part + (u * C + c) * kDiceSums;
        for (int q = 0; q < kDiceSums; ++q) out[q] = pairwise_sum(acc[q], kLanes);
      }
    }
  }
  // Combine the blocks of each image in block order.
  double* col = static_cast<double*>(std::malloc(sizeof(double) * nb));
  for (index_t n = 0; n < N; ++n)
    for (index_t c = 0; c < C; ++c)
      for (int q = 0; q < kDiceSums; ++q) {
        for (index_t b = 0; b < nb; ++b) col[b] = part[((n * nb + b) * C + c) * kDiceSums + q];
        job.sums[(n * C + c) * kDiceSums + q] = pairwise_sum(col, nb);
      }
  std::free(col);
  std::free(part);
}

template <class T>
void dice_grad(const DiceJob& job) {
  using namespace dice_detail;
  const index_t N = job.N, C = job.C, S = job.S;
  const index_t nb = (S + kBlock - 1) / kBlock, units = N * nb;
  const bool par = job.threads > 1 && units > 1 && N * C * S >= kParallelMinWork;
#pragma omp parallel num_threads(par ? job.threads : 1)
  {
    Scratch<T> s(C);
    T* d = static_cast<T*>(std::malloc(sizeof(T) * C * kBlock));  // d loss / d p
#pragma omp for schedule(static)
    for (index_t u = 0; u < units; ++u) {
      const index_t n = u / nb, i0 = (u % nb) * kBlock, len = min_(kBlock, S - i0);
      if (job.probs)
        load_block(job, n, i0, len, s.p);
      else
        block_probs(job, n, i0, len, s.p, s.tmp);
      for (index_t c = 0; c < C; ++c) {
        block_target(job, n, c, i0, len, s.g);
        const double* k = job.coef + (n * C + c) * 3;
        const T ka = static_cast<T>(k[0]), kb = static_cast<T>(k[1]), kc = static_cast<T>(k[2]);
        const T* __restrict pc = s.p + c * kBlock;
        const T* __restrict g = s.g;
        T* __restrict dc = d + c * kBlock;
        for (index_t i = 0; i < len; ++i) dc[i] = fma_(ka, g[i], fma_(kc, pc[i], kb));
      }
      T* out = static_cast<T*>(job.grad_out) + n * C * S + i0;
      if (job.activation == Activation::softmax) {
        T* __restrict dot = s.tmp;
        for (index_t i = 0; i < len; ++i) dot[i] = T(0);
        for (index_t c = 0; c < C; ++c) {
          const T* __restrict pc = s.p + c * kBlock;
          const T* __restrict dc = d + c * kBlock;
          for (index_t i = 0; i < len; ++i) dot[i] = fma_(pc[i], dc[i], dot[i]);
        }
        for (index_t c = 0; c < C; ++c) {
          const T* __restrict pc = s.p + c * kBlock;
          const T* __restrict dc = d + c * kBlock;
          T* __restrict oc = out + c * S;
          for (index_t i = 0; i < len; ++i) oc[i] = pc[i] * (dc[i] - dot[i]);
        }
      } else if (job.activation == Activation::sigmoid) {
        for (index_t c = 0; c < C; ++c) {
          const T* __restrict pc = s.p + c * kBlock;
          const T* __restrict dc = d + c * kBlock;
          T* __restrict oc = out + c * S;
          for (index_t i = 0; i < len; ++i) oc[i] = dc[i] * (pc[i] * (T(1) - pc[i]));
        }
      } else {
        for (index_t c = 0; c < C; ++c) {
          const T* __restrict dc = d + c * kBlock;
          T* __restrict oc = out + c * S;
          for (index_t i = 0; i < len; ++i) oc[i] = dc[i];
        }
      }
    }
    std::free(d);
  }
}

}  // namespace losses
FL_NAMESPACE_END
