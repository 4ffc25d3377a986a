// The elementwise driver: one pass over (y_true, y_pred[, weight][, aux]) that produces the weighted
// per-element loss (reduced deterministically, or written out), the gradient and the Hessian
// diagonal, from a loss body that computes all three together.
//
// A loss body is a class template over the compute type T:
//   struct Body { static constexpr bool kAux;            // reads a per-element parameter stream
//                 FL_HD explicit Body(const double* params);
//                 template <bool G, bool H> FL_HD void operator()(T y, T p, T aux, T& l, T& g, T& h) const; };
// g and h are only assigned when G / H are true; unrequested outputs are compiled away. A body
// whose element costs several memory-bound ones says so (static constexpr index_t kWork), so
// that shorter arrays of it are shared between threads (work_of).
//
// A body may also split itself in two passes over the block (loop fission) by declaring
//   using Stage = ...;                                         // a few T values per element
//   FL_HD Stage stage(T y, T p) const;                         // first pass (e.g. exp(-|z|))
//   template <bool G, bool H> FL_HD void finish(T y, T p, T aux, Stage s, T& l, T& g, T& h) const;
// with operator() = finish(..., stage(y, p)) for the CUDA and scalar paths. Why: a fused body whose
// dependency chain runs through two transcendentals (exp, then log1p and a division) is longer than
// the out-of-order window covers, so consecutive elements barely overlap; two short loops through an
// L1 buffer do (float64 BCE on logits: 1.6 -> 1.0 ns/element on one AVX-512 core).
//
// A body whose elements take one of several code paths (AFT's censoring kinds) may map a whole
// block itself, so that it can run each path as its own vectorizable loop:
//   template <bool G, bool H> void map(index_t len, const T* y, const T* p, const T* aux,
//                                      T* l, T* g, T* h) const;   // unscaled, unweighted
#pragma once

#include <type_traits>
#include <utility>

#include "fastloss/config.hpp"
#include "fastloss/job.hpp"
#include "fastloss/prefetch.hpp"
#include "fastloss/reduce.hpp"

FL_NAMESPACE_BEGIN

namespace detail {

template <class T, class S>
FL_INLINE void gather(T* buf, const S* src, const Input& in, index_t k0, index_t len) {
  const index_t st = in.stride;
  if (in.mode == Bcast::full) {
    for (index_t i = 0; i < len; ++i) buf[i] = static_cast<T>(src[(k0 + i) * st]);
  } else if (in.mode == Bcast::row) {
    index_t r = k0 / in.period, c = k0 % in.period;
    for (index_t i = 0; i < len; ++i) {
      buf[i] = static_cast<T>(src[r * st]);
      if (++c == in.period) c = 0, ++r;
    }
  } else if (in.period == 1) {  // col with one column: a constant (vectorizes as a fill)
    const T v = static_cast<T>(src[0]);
    for (index_t i = 0; i < len; ++i) buf[i] = v;
  } else {  // col
    index_t c = k0 % in.period;
    for (index_t i = 0; i < len; ++i) {
      buf[i] = static_cast<T>(src[c * st]);
      if (++c == in.period) c = 0;
    }
  }
}

// Points at the input's block directly when it is contiguous, full and of type T; otherwise
// converts/expands the block into `buf` (which lives in L1).
template <class T>
FL_INLINE const T* block_view(const Input& in, index_t k0, index_t len, T* buf) {
  if (in.mode == Bcast::full && in.stride == 1 && in.dtype == (sizeof(T) == 4 ? DType::f32 : DType::f64))
    return static_cast<const T*>(in.ptr) + k0;
  if (in.dtype == DType::f32)
    gather(buf, static_cast<const float*>(in.ptr), in, k0, len);
  else
    gather(buf, static_cast<const double*>(in.ptr), in, k0, len);
  return buf;
}

template <class T>
FL_INLINE T* out_view(const Output& o, index_t k0, T* buf) {
  return o.stride == 1 ? static_cast<T*>(o.ptr) + k0 : buf;
}

template <class T>
FL_INLINE void out_flush(const Output& o, index_t k0, index_t len, const T* buf) {
  if (o.stride == 1) return;
  T* dst = static_cast<T*>(o.ptr);
  for (index_t i = 0; i < len; ++i) dst[(k0 + i) * o.stride] = buf[i];
}

template <class B, class = void>
struct stage_of {  // bodies without a Stage run in one pass
  using type = void;
};
template <class B>
struct stage_of<B, std::void_t<typename B::Stage>> {
  using type = typename B::Stage;
};
template <class B>
inline constexpr bool is_staged = !std::is_void_v<typename stage_of<B>::type>;

template <class B, class = void>
struct maps_blocks : std::false_type {};
template <class B>
struct maps_blocks<B, std::void_t<decltype(&B::template map<false, false>)>> : std::true_type {};

// An element's cost in memory-bound elements (parallel.hpp's unit of work), so that a short array
// of costly elements is shared between threads: Body::kWork where declared, else 1.
template <class B, class = void>
struct work_of {
  static constexpr index_t value = 1;
};
template <class B>
struct work_of<B, std::void_t<decltype(B::kWork)>> {
  static constexpr index_t value = B::kWork;
};

// A one-pass body's block runs in parts of kSumPart elements, each part's loss added into the
// block's lanes (lanes_add: lane_sum's order and bits) right after it is computed. lane_sum
// after the whole block was a chain of 64 dependent additions per lane whose instructions filled
// the out-of-order window, so that the next block's loads waited for it and memory idled
// (the compute of these bodies is a few operations per element). MSE value + gradient, n = 10^7
// float32, one thread, alternated processes: 26-28 GB/s in whole blocks, 30-33 in parts of 256,
// 35-37 in parts of 128 or 64, 28 in parts of 32 (NumPy's subtract into out=: 38-42); Huber
// 27-29 -> 29-31. The two-pass bodies keep lane_sum after the block: summing through a pointer
// to the lanes cost them 2-4 % from cache (float32), and their parts are the stage's.
inline constexpr index_t kSumPart = 128;
static_assert(kSumPart % kLanes == 0, "a part must end where a round of the lanes does");
template <class B>
inline constexpr bool sums_in_parts = !is_staged<B> && !maps_blocks<B>::value;

// Stage values of kLen elements, stored as one L1 array per field of the Stage (structure of
// arrays). A Stage struct stored whole is written with strided scalar stores wherever finish()
// leaves a field unread (expm1 in LogCosh's value-only call ran slower than the call with the
// gradient), and with shuffles otherwise. A struct Stage declares kFields and get<J>() and is built
// from its fields in order (aggregate initialization). kLen * kFields = kBlock: the buffer takes
// a block's worth of T whatever the fields, and a block with several fields runs both passes
// part by part (map_block). LogCosh's two fields over whole blocks kept 24 KiB (float32) or
// 48 KiB (float64) of lines in use through each pass (inputs, stage, loss and gradient), against
// 12 / 24 in parts of 512 elements: n = 10^7, alternated processes, value + gradient float32
// 1.05-1.07x on two threads (25.4 -> 27.2 GB/s, every one of 6 rounds higher) and 1.08x on one,
// float64 1.00-1.03x, gradient + Hessian float32 1.10x; the same from cache.
template <class T, class Stage>
struct StageBlock {
  static constexpr int kFields = Stage::kFields;
  static constexpr index_t kLen = kBlock / kFields;
  alignas(64) T field[kFields][kLen];
  FL_INLINE void put(index_t i, const Stage& s) { put(i, s, std::make_integer_sequence<int, kFields>{}); }
  FL_INLINE Stage get(index_t i) const { return get(i, std::make_integer_sequence<int, kFields>{}); }

 private:
  template <int... J>
  FL_INLINE void put(index_t i, const Stage& s, std::integer_sequence<int, J...>) {
    ((field[J][i] = s.template get<J>()), ...);
  }
  template <int... J>
  FL_INLINE Stage get(index_t i, std::integer_sequence<int, J...>) const {
    return Stage{field[J][i]...};
  }
};
template <class T>
struct StageBlock<T, T> {  // one value per element
  static constexpr index_t kLen = kBlock;
  alignas(64) T value[kBlock];
  FL_INLINE void put(index_t i, T s) { value[i] = s; }
  FL_INLINE T get(index_t i) const { return value[i]; }
};

template <class B, class T, class S, class = void>
struct has_stage_range : std::false_type {};
template <class B, class T, class S>
struct has_stage_range<B, T, S, std::void_t<decltype(std::declval<const B&>().stage_range(
                                    index_t{}, index_t{}, std::declval<const T*>(),
                                    std::declval<const T*>(), std::declval<S&>()))>> : std::true_type {};

// A staged body's first pass over elements [i0, i1) of the block, into the stage buffer; a body
// may run it in explicit registers (body.stage_range(i0, i1, y, p, st), the same bits).
template <class Body, class T, class StageBuf>
FL_INLINE void stage_range(const Body& body, index_t i0, index_t i1, const T* __restrict y,
                           const T* __restrict p, StageBuf& st) {
  if constexpr (has_stage_range<Body, T, StageBuf>::value)
    body.stage_range(i0, i1, y, p, st);
  else
    for (index_t i = i0; i < i1; ++i) st.put(i, body.stage(y[i], p[i]));
}

// Elements [i0, i1) of the block: the loss, gradient and Hessian, scaled and weighted. Restrict
// parameters (not a lambda's captures) let gcc keep the body's constants in registers.
template <bool W, bool G, bool H, class Body, class T, class StageBuf>
FL_INLINE void finish_range(const Body& body, index_t i0, index_t i1, const T* __restrict y,
                            const T* __restrict p, const double* __restrict w,
                            const T* __restrict aux, double prescale, double scale,
                            const StageBuf& st, T* __restrict l_out, T* __restrict g_out,
                            T* __restrict h_out) {
  const T tscale = static_cast<T>(scale);
  for (index_t i = i0; i < i1; ++i) {
    T l, g, h;
    const T a = Body::kAux ? aux[i] : T(0);
    if constexpr (maps_blocks<Body>::value) {
      l = l_out[i];
      if constexpr (G) g = g_out[i];
      if constexpr (H) h = h_out[i];
    } else if constexpr (is_staged<Body>) {
      body.template finish<G, H>(y[i], p[i], a, st.get(i), l, g, h);
    } else {
      body.template operator()<G, H>(y[i], p[i], a, l, g, h);
    }
    l_out[i] = l;
    if constexpr (W) {
      const T s = static_cast<T>(w[i] * prescale * scale);
      if constexpr (G) g_out[i] = g * s;
      if constexpr (H) h_out[i] = h * s;
    } else {
      if constexpr (G) g_out[i] = g * tscale;
      if constexpr (H) h_out[i] = h * tscale;
    }
  }
}

// The fused map over one block. Every pointer is contiguous here. Weights stay in double, so
// that any finite weight (tiny, or beyond float32's range) scales the gradient and the reduction
// exactly as it would in double; l_out receives the unweighted loss when reducing (the weighted
// sum is then taken in double by lane_dot) and the weighted loss for reduction="none".
// A staged body prefetches `ahead` (the next block) spread over both passes: y_pred's lines
// during the first (the cheaper pass), y_true's and the outputs' during the second, about as many
// lines per unit of time in each. All in the first pass, as before, left memory idle for most of
// the block: n = 10^7, two threads, value + gradient, 1.11-1.19x float32 and 1.05-1.13x float64
// (BCE, logistic, focal, log-cosh; Hessians too). The lines go into L2 (prefetcht1), not L1:
// the block's own loads then find L2, whose latency the out-of-order window covers, and L1
// keeps the block, its stage buffer and outputs (same conditions: BCE and logistic float32
// 1.08-1.10x, float64 1.04-1.05x, focal 1.02-1.04x, log-cosh unchanged within the noise).
inline constexpr int kLocality = 2;  // lines_ahead's: the next block's lines into L2
template <template <class> class Body, class T, bool W, bool G, bool H>
void map_block(const Body<T>& body, index_t len, const T* __restrict y, const T* __restrict p,
               const double* __restrict w, const T* __restrict aux, double prescale, double scale,
               bool weigh_l,
               T* __restrict l_out, T* __restrict g_out, T* __restrict h_out,
               const LinesAhead<T>& ahead, double* __restrict acc) {
  using Stage = typename stage_of<Body<T>>::type;
  constexpr bool staged = is_staged<Body<T>>;
  using StageBuf = std::conditional_t<staged, StageBlock<T, Stage>, char>;
  StageBuf st;
  // Both passes part by part where the stage buffer holds less than a block (StageBlock); a
  // one-pass body's block in parts of kSumPart, its loss added into acc after each.
  index_t part = kBlock;
  if constexpr (staged)
    part = StageBuf::kLen;
  else if constexpr (sums_in_parts<Body<T>>)
    part = kSumPart;
  for (index_t o = 0; o < len; o += part) {
    const index_t n = min_(part, len - o);
    auto at = [o](auto* q) { return q ? q + o : q; };  // the part's elements of a stream
    const T *yo = y + o, *po = p + o, *ao = at(aux);
    const double* wo = at(w);
    T *lo = l_out + o, *go = at(g_out), *ho = at(h_out);
    LinesAhead<T> ins, outs;  // the same part of the next block
    ins.in[0] = at(ahead.in[0]), outs.in[1] = at(ahead.in[1]);
    outs.out[0] = at(ahead.out[0]), outs.out[1] = at(ahead.out[1]);
    if constexpr (staged)
      lines_ahead<kLocality>(n, ins, [&](index_t i0, index_t i1) FL_LAMBDA_INLINE {
        stage_range(body, i0, i1, yo, po, st);
      });
    if constexpr (maps_blocks<Body<T>>::value)  // into the outputs, scaled in place below
      body.template map<G, H>(n, yo, po, ao, lo, go, ho);
    lines_ahead<kLocality>(n, outs, [&](index_t i0, index_t i1) FL_LAMBDA_INLINE {
      finish_range<W, G, H>(body, i0, i1, yo, po, wo, ao, prescale, scale, st, lo, go, ho);
    });
    if (acc) {  // null unless the block's loss is summed part by part
      if constexpr (W)
        lanes_add_dot(acc, lo, wo, n);
      else
        lanes_add(acc, lo, n);
    }
  }
  // A separate loop: a select on the loop-invariant weigh_l inside the loop above kept gcc from
  // vectorizing it (every weighted call of the logistic and probability losses ran scalar).
  if constexpr (W)
    if (weigh_l)
      for (index_t i = 0; i < len; ++i) l_out[i] = static_cast<T>(w[i] * static_cast<double>(l_out[i]));
}

template <template <class> class Body, class T, bool W, bool G, bool H>
double run(const ElementwiseJob& job) {
  const Body<T> body(job.params);
  const T* p_all = static_cast<const T*>(job.y_pred);
  const bool reduce = job.loss_out.ptr == nullptr;
  constexpr bool staged = is_staged<Body<T>>;
  auto block = [&](index_t k0, index_t len) -> double {
    alignas(64) T ybuf[kBlock], pbuf[kBlock], abuf[kBlock];
    alignas(64) T lbuf[kBlock], gbuf[kBlock], hbuf[kBlock];
    alignas(64) double wbuf[kBlock];
    const T* y = block_view(job.y_true, k0, len, ybuf);
    const T* p = p_all + k0 * job.y_pred_stride;
    if (job.y_pred_stride != 1) {
      for (index_t i = 0; i < len; ++i) pbuf[i] = p_all[(k0 + i) * job.y_pred_stride];
      p = pbuf;
    }
    const double* w = W ? block_view(job.weight, k0, len, wbuf) : nullptr;
    const T* a = Body<T>::kAux ? block_view(job.aux, k0, len, abuf) : nullptr;
    T* l = reduce ? lbuf : out_view(job.loss_out, k0, lbuf);
    T* g = G ? out_view(job.grad_out, k0, gbuf) : nullptr;
    T* h = H ? out_view(job.hess_out, k0, hbuf) : nullptr;
    // A staged body prefetches the next block (map_block) when it is whole and in this
    // superblock (most often the same thread's work). Unstaged bodies are left to the hardware:
    // splitting Poisson and Gamma in two passes for the prefetches cost more than it gained
    // (0.86-0.94x), and prefetching in their one loop, line by line, lost too (Poisson, Gamma,
    // hinge, smooth hinge, n = 10^7, two threads: 0.89-0.99x).
    LinesAhead<T> ahead;
    const index_t next = k0 + len, super = kBlock * kBlocksPerSuper;
    if (staged && next + kBlock <= job.n && next / super == k0 / super) {
      if (job.y_pred_stride == 1) ahead.in[0] = p_all + next;
      if (job.y_true.mode == Bcast::full && job.y_true.stride == 1 &&
          job.y_true.dtype == (sizeof(T) == 4 ? DType::f32 : DType::f64))
        ahead.in[1] = static_cast<const T*>(job.y_true.ptr) + next;
      if (G && job.grad_out.stride == 1) ahead.out[0] = static_cast<T*>(job.grad_out.ptr) + next;
      if (H && job.hess_out.stride == 1) ahead.out[1] = static_cast<T*>(job.hess_out.ptr) + next;
    }
    double acc[kLanes] = {};  // the loss's lanes, where summed part by part
    map_block<Body, T, W, G, H>(body, len, y, p, w, a, job.weight_prescale, job.grad_scale, !reduce,
                                l, g, h, ahead, sums_in_parts<Body<T>> && reduce ? acc : nullptr);
    if constexpr (G) out_flush(job.grad_out, k0, len, g);
    if constexpr (H) out_flush(job.hess_out, k0, len, h);
    if (!reduce) {  // per-element values returned; no sum needed
      out_flush(job.loss_out, k0, len, l);
      return 0.0;
    }
    if constexpr (sums_in_parts<Body<T>>)
      return pairwise_sum(acc, kLanes);
    else
      return W ? lane_dot(l, w, len) : lane_sum(l, len);
  };
  return blocked_sum(job.n, kBlock, job.threads, block, work_of<Body<T>>::value);
}

}  // namespace detail

// Picks the instantiation for the requested outputs at run time (once per call).
template <template <class> class Body, class T>
double run_elementwise(const ElementwiseJob& job) {
  const bool w = job.weight.mode != Bcast::none, g = job.grad_out.ptr, h = job.hess_out.ptr;
  using namespace detail;
  if (w) {
    if (h) return run<Body, T, true, true, true>(job);
    if (g) return run<Body, T, true, true, false>(job);
    return run<Body, T, true, false, false>(job);
  }
  if (h) return run<Body, T, false, true, true>(job);
  if (g) return run<Body, T, false, true, false>(job);
  return run<Body, T, false, false, false>(job);
}

FL_NAMESPACE_END
