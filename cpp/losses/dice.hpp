// The soft Dice family (spec 5.5): Dice, generalized Dice, Tversky. The loss formulas act on a few
// sums per (image, class) and live in python/fastloss/segmentation.py; the two passes over the
// pixels live here:
//   pass 1 (dice_sums): p = activation(z) per pixel (identity, sigmoid, or softmax over the class
//     axis), and per (n, c) the sums of p g, p, p^2, g, g^2 (g: the target, or the one-hot label);
//   pass 2 (dice_grad): with per-(n, c) coefficients, d loss / d p = a g + b + c p, chained through
//     the activation: sigmoid p (1 - p) d, softmax p_c (d_c - sum_k p_k d_k).
// With job.probs, pass 1 writes the activations there and pass 2 reads them instead of computing
// them again; probs may be the gradient buffer, overwritten in place by pass 2 (explicit vector
// loads and stores at the same index: well defined).
// Layout (N, C, S): pixels contiguous, classes S apart. Work unit: one image, one block of kBlock
// pixels (all classes); block sums in fixed double lanes, combined pairwise in block order, so the
// sums are bitwise independent of the thread count.
#pragma once

#include <cstdlib>

#include "fastloss/job.hpp"
#include "fastloss/reduce.hpp"
#include "fastloss/simd.hpp"
#include "fastloss/vmath.hpp"

FL_NAMESPACE_BEGIN
namespace losses {
namespace dice_detail {

using namespace simd;

// One block: image n, pixels [i0, i0 + len). The rows of class c: z(c), p(c) (job.probs or the
// thread's scratch, kBlock apart), and the target g(c)[i] (a label compare, or the target row).
template <class T, bool Labels>
struct Block {
  const DiceJob& job;
  index_t n, i0, len;
  T* scratch;
  const T* labels_t;  // with labels: the block's labels as T (exact below 2^24 classes)
  const T* z(index_t c) const { return static_cast<const T*>(job.z) + (n * job.C + c) * job.S + i0; }
  T* p(index_t c) const {
    return job.probs ? static_cast<T*>(job.probs) + (n * job.C + c) * job.S + i0 : scratch + c * kBlock;
  }
  const T* targets(index_t c) const {
    return static_cast<const T*>(job.targets) + (n * job.C + c) * job.S + i0;
  }
};

// p = activation(z) of every class of the block (identity: p is z itself, nothing written).
template <class T, bool L>
void activate(const Block<T, L>& b, T* __restrict tmp) {
  const index_t C = b.job.C, len = b.len;
  if (b.job.activation == Activation::sigmoid) {
    for (index_t c = 0; c < C; ++c) {
      const T* __restrict zc = b.z(c);
      T* __restrict pc = b.p(c);
      for (index_t i = 0; i < len; ++i) pc[i] = vm::sigmoid(zc[i]);
    }
  } else if (b.job.activation == Activation::softmax) {
    T* __restrict m = tmp;  // the max over classes, then 1 / sum
    T* __restrict sum = tmp + kBlock;
    const T* __restrict z0 = b.z(0);
    for (index_t i = 0; i < len; ++i) m[i] = z0[i], sum[i] = T(0);
    for (index_t c = 1; c < C; ++c) {
      const T* __restrict zc = b.z(c);
      for (index_t i = 0; i < len; ++i) m[i] = zc[i] > m[i] ? zc[i] : m[i];
    }
    for (index_t c = 0; c < C; ++c) {
      const T* __restrict zc = b.z(c);
      T* __restrict pc = b.p(c);
      for (index_t i = 0; i < len; ++i) {
        pc[i] = vm::exp(zc[i] - m[i]);
        sum[i] += pc[i];
      }
    }
    for (index_t i = 0; i < len; ++i) m[i] = T(1) / sum[i];
    for (index_t c = 0; c < C; ++c) {
      T* __restrict pc = b.p(c);
      for (index_t i = 0; i < len; ++i) pc[i] *= m[i];
    }
  }
}

template <class T, bool L>
const T* probs_row(const Block<T, L>& b, index_t c) {
  return b.job.activation == Activation::none ? b.z(c) : b.p(c);
}

// The sums of p g, p, p^2, g, g^2 of class c over the block, in kLanes double lanes each.
template <class T, bool L>
void class_sums(const Block<T, L>& b, index_t c, double* out) {
  const T* __restrict pc = probs_row(b, c);
  const T* __restrict gc = L ? b.labels_t : b.targets(c);
  const T cls = static_cast<T>(c);
  double acc[kDiceSums][kLanes] = {};
  auto add = [&](index_t i, int l) {
    const double pv = pc[i];
    const double gv = L ? (gc[i] == cls ? 1.0 : 0.0) : static_cast<double>(gc[i]);
    acc[0][l] += pv * gv;
    acc[1][l] += pv;
    acc[2][l] += pv * pv;
    acc[3][l] += gv;
    acc[4][l] += gv * gv;
  };
  index_t i = 0;
  for (; i + kLanes <= b.len; i += kLanes)
    for (int l = 0; l < kLanes; ++l) add(i + l, l);
  for (int l = 0; i + l < b.len; ++l) add(i + l, l);
  for (int q = 0; q < kDiceSums; ++q) out[q] = pairwise_sum(acc[q], kLanes);
}

// The gradient of the block (in place over p when job.probs == job.grad_out).
template <class T, bool L>
void block_grad(const Block<T, L>& b, T* __restrict dot) {
  const DiceJob& job = b.job;
  const index_t C = job.C, len = b.len;
  const double* coef = job.coef + b.n * C * 3;
  auto out_row = [&](index_t c) { return static_cast<T*>(job.grad_out) + (b.n * C + c) * job.S + b.i0; };
  // d loss / d p of class c at pixels [i, i + width of U); tc: the targets or the labels as T
  auto dloss = [&](auto tag, index_t c, const T* pc, const T* tc, index_t i) {
    using U = typename decltype(tag)::type;
    const U zero = {}, one = zero + T(1), t = ld<U>(tc + i);
    const U g = L ? (t == static_cast<T>(c) ? one : zero) : t;
    return static_cast<T>(coef[3 * c]) * g + static_cast<T>(coef[3 * c + 1]) +
           static_cast<T>(coef[3 * c + 2]) * ld<U>(pc + i);
  };
  if (job.activation == Activation::softmax) {
    for (index_t i = 0; i < len; ++i) dot[i] = T(0);
    for (index_t c = 0; c < C; ++c) {
      const T* pc = probs_row(b, c);
      const T* tc = L ? b.labels_t : b.targets(c);
      columns<T>(0, len, [&](auto tag, index_t i) {
        using U = typename decltype(tag)::type;
        st(dot + i, ld<U>(dot + i) + ld<U>(pc + i) * dloss(tag, c, pc, tc, i));
      });
    }
  }
  for (index_t c = 0; c < C; ++c) {
    const T* pc = probs_row(b, c);
    const T* tc = L ? b.labels_t : b.targets(c);
    T* oc = out_row(c);
    columns<T>(0, len, [&](auto tag, index_t i) {
      using U = typename decltype(tag)::type;
      const U d = dloss(tag, c, pc, tc, i), p = ld<U>(pc + i);
      if (job.activation == Activation::softmax)
        st(oc + i, p * (d - ld<U>(dot + i)));
      else if (job.activation == Activation::sigmoid)
        st(oc + i, d * (p * (T(1) - p)));
      else
        st(oc + i, d);
    });
  }
}

// Per-thread buffers: activations of a block (when not kept in job.probs), softmax temporaries.
template <class T>
struct Scratch {
  T* p;
  T* tmp;
  T* labels;
  explicit Scratch(index_t C)
      : p(alloc_array<T>(C * kBlock)), tmp(alloc_array<T>(2 * kBlock)), labels(alloc_array<T>(kBlock)) {}
  ~Scratch() {
    std::free(p);
    std::free(tmp);
    std::free(labels);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
};

// Runs f(block) over every (image, block of pixels), shared out by parallel_for_scratch.
template <class T, bool L, class F>
void for_blocks(const DiceJob& job, F&& f) {
  const index_t nb = (job.S + kBlock - 1) / kBlock, units = job.N * nb;
  auto make = [&] { return new Scratch<T>(job.C); };
  auto run = [&](index_t u0, index_t u1, Scratch<T>& s) {
    for (index_t u = u0; u < u1; ++u) {
      const index_t n = u / nb, i0 = (u % nb) * kBlock, len = min_(kBlock, job.S - i0);
      if constexpr (L) {
        const std::int64_t* __restrict lab = job.labels + n * job.S + i0;
        T* __restrict lt = s.labels;
        for (index_t i = 0; i < len; ++i) lt[i] = static_cast<T>(lab[i]);
      }
      f(Block<T, L>{job, n, i0, len, s.p, s.labels}, u, s.tmp);
    }
  };
  parallel_for_scratch(units, job.C * kBlock, job.threads, make, run);
}

template <class T, bool L>
void sums(const DiceJob& job) {
  const index_t N = job.N, C = job.C, nb = (job.S + kBlock - 1) / kBlock;
  // part[(unit * C + c) * kDiceSums + q]
  Buffer<double> part_mem((N * nb * C * kDiceSums + 1));
  double* part = part_mem.p;
  for_blocks<T, L>(job, [&](const Block<T, L>& b, index_t u, T* tmp) {
    activate(b, tmp);
    for (index_t c = 0; c < C; ++c) class_sums(b, c, part + (u * C + c) * kDiceSums);
  });
  Buffer<double> col_mem(nb);  // blocks in order
  double* col = col_mem.p;
  for (index_t n = 0; n < N; ++n)
    for (index_t c = 0; c < C; ++c)
      for (int q = 0; q < kDiceSums; ++q) {
        for (index_t b = 0; b < nb; ++b) col[b] = part[((n * nb + b) * C + c) * kDiceSums + q];
        job.sums[(n * C + c) * kDiceSums + q] = pairwise_sum(col, nb);
      }
}

template <class T, bool L>
void grad(const DiceJob& job) {
  for_blocks<T, L>(job, [&](const Block<T, L>& b, index_t, T* tmp) {
    if (!job.probs) activate(b, tmp);
    block_grad(b, tmp);
  });
}

}  // namespace dice_detail

template <class T>
void dice_sums(const DiceJob& job) {
  if (job.labels)
    dice_detail::sums<T, true>(job);
  else
    dice_detail::sums<T, false>(job);
}

template <class T>
void dice_grad(const DiceJob& job) {
  if (job.labels)
    dice_detail::grad<T, true>(job);
  else
    dice_detail::grad<T, false>(job);
}

}  // namespace losses
FL_NAMESPACE_END
