// The private extension module fastloss._core. The Python package wraps it; everything here is
// generated from the registry lists, one generic binder per kernel kind.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "../cpu/kernels.hpp"
#include "arrays.hpp"
#include "fastloss/reduce.hpp"

namespace py = pybind11;
using namespace fastloss;
using namespace fastloss::bind;

namespace {

// Sum of the weights in the fixed blocked order, after checking each is finite and >= 0.
template <class T>
double checked_weight_sum(const Input& w, index_t n, int threads) {
  const T* src = static_cast<const T*>(w.ptr);
  std::atomic<bool> bad{false};  // written by several threads, only ever set to true
  double total = blocked_sum(n, kBlock, threads, [&](index_t k0, index_t len) {
    T buf[kBlock];
    for (index_t i = 0; i < len; ++i) buf[i] = src[(k0 + i) * w.stride];
    bool block_bad = false;
    for (index_t i = 0; i < len; ++i) block_bad |= !(buf[i] >= T(0) && buf[i] <= std::numeric_limits<T>::max());
    if (block_bad) bad.store(true, std::memory_order_relaxed);
    return lane_sum(buf, len);
  });
  if (bad.load()) throw py::value_error("sample_weight must be finite and non-negative");
  return total;
}

// The flat index of the first label for which bad(label) holds, or -1. One parallel counting pass;
// the index is searched only on error.
template <class T, class Bad>
index_t first_bad(const T* y, index_t stride, index_t n, int threads, Bad bad) {
  const double count = blocked_sum(n, kBlock, threads, [&](index_t k0, index_t len) {
    if (stride == 1) {  // the common case
      // A map into an L1 buffer, then the lane sum: both vectorize at the baseline ISA (SSE2),
      // where an integer count of bools stays a scalar loop (2-3 ns per element, slower than
      // reading the labels from memory).
      const T* p = y + k0;
      alignas(64) T flags[kBlock];
      for (index_t i = 0; i < len; ++i) flags[i] = bad(p[i]) ? T(1) : T(0);
      return lane_sum(flags, len);
    }
    index_t c = 0;
    for (index_t i = 0; i < len; ++i) c += bad(y[(k0 + i) * stride]);
    return static_cast<double>(c);
  });
  if (count == 0) return -1;
  for (index_t i = 0; i < n; ++i)
    if (bad(y[i * stride])) return i;
  return -1;
}

// first_bad over an input (any real dtype, any strides) with bad(float or double value).
template <class Bad>
index_t first_bad_label_of(const py::object& y_obj, Bad bad, const char* name = "y_true") {
  py::array y = as_real_array(y_obj, name);
  index_t stride = 1;
  if (!flat_stride(y, &stride)) y = numpy().attr("ascontiguousarray")(y), stride = 1;
  const index_t n = y.size();
  const int threads = get_num_threads();
  NoGil nogil;
  return dtype_of(y) == DType::f32
             ? first_bad(static_cast<const float*>(y.data()), stride, n, threads, bad)
             : first_bad(static_cast<const double*>(y.data()), stride, n, threads, bad);
}

// Labels of the sign-label losses must be -1, 0 or +1 (NaN is bad too).
index_t check_sign_labels(const py::object& y_obj) {
  return first_bad_label_of(y_obj, [](auto v) { return !((v == 1) | (v == -1) | (v == 0)); });
}

// Labels of the likelihood losses: finite and above low (or at it, when closed); low may be -inf.
index_t check_real_labels(const py::object& y_obj, double low, bool closed) {
  if (closed) return first_bad_label_of(y_obj, [low](auto v) { return !((v - v == 0) & (v >= low)); });
  return first_bad_label_of(y_obj, [low](auto v) { return !((v - v == 0) & (v > low)); });
}

// Probabilities must lie in [0, 1]; NaN passes (it propagates to the result like any NaN).
index_t check_probabilities(const py::object& p_obj, const std::string& name) {
  return first_bad_label_of(p_obj, [](auto v) { return (v < 0) | (v > 1); }, name.c_str());
}

// One call of an elementwise loss. Returns (value, per-element losses | None, grad | None,
// hess | None). The value is the weighted mean or the weighted sum (unused for reduction="none").
py::tuple elementwise(int loss, const std::vector<double>& params, const py::object& y_true_obj,
                      const py::object& y_pred_obj, const py::object& weight_obj,
                      const py::object& aux_obj, const std::string& reduction_name, bool want_grad,
                      bool want_hess, const py::object& out_obj, const py::object& grad_out_obj,
                      const py::object& hess_out_obj) {
  if (loss < 0 || loss >= kNumElementwise) throw py::value_error("unknown elementwise loss id");
  const Reduction reduction = parse_reduction(reduction_name);
  py::array y_pred = as_real_array(y_pred_obj, "y_pred");
  const DType T = dtype_of(y_pred);
  py::array y_true = as_real_array(y_true_obj, "y_true", T);
  const auto pshape = shape_of(y_pred), tshape = shape_of(y_true);
  const index_t n = y_pred.size();
  std::vector<py::object> keep;

  ElementwiseJob job;
  job.n = n;
  job.params = params.data();
  job.threads = get_num_threads();

  const bool has_aux = !aux_obj.is_none(), weighted = !weight_obj.is_none();
  py::object aux, w;  // not py::array: a default-constructed py::array allocates
  std::vector<index_t> aux_shape, wshape;
  if (has_aux) {
    py::array a = as_real_array(aux_obj, "parameter vector");
    aux_shape = shape_of(a), aux = a;
  }
  if (weighted) {
    py::array a = as_real_array(weight_obj, "sample_weight");
    wshape = shape_of(a), w = a;
  }
  const ElementwisePlan plan = plan_elementwise(pshape, tshape, weighted ? &wshape : nullptr,
                                                has_aux ? &aux_shape : nullptr);
  job.y_true = flat_input(y_true, plan.y_true, plan.y_true_period, keep);
  if (has_aux) job.aux = flat_input(py::reinterpret_borrow<py::array>(aux), Bcast::col, plan.aux_period, keep);
  if (weighted) job.weight = flat_input(py::reinterpret_borrow<py::array>(w), plan.weight, plan.weight_period, keep);

  CallOutputs outs(reduction, want_grad, want_hess, out_obj, grad_out_obj, hess_out_obj, pshape,
                   pshape, T, false);
  outs.separate({y_true, y_pred, w, aux}, y_pred);

  // Normalizer of the mean: sum of weights over all elements (n without weights).
  double norm = static_cast<double>(n);
  if (weighted) {  // always validated, whatever the reduction
    const index_t nw = py::reinterpret_borrow<py::array>(w).size();
    NoGil nogil;
    norm = (job.weight.dtype == DType::f32 ? checked_weight_sum<float>(job.weight, nw, job.threads)
                                           : checked_weight_sum<double>(job.weight, nw, job.threads)) *
           static_cast<double>(plan.weight_period);
  }
  set_gradient_scale(reduction, weighted, n, norm, &job.grad_scale, &job.weight_prescale);

  if (reduction == Reduction::none) job.loss_out = outs.values.view();
  if (outs.grad) job.grad_out = outs.gradient.view();
  if (outs.hess) job.hess_out = outs.hessian.view();
  job.y_pred = y_pred.data();
  if (!flat_stride(y_pred, &job.y_pred_stride)) {
    y_pred = numpy().attr("ascontiguousarray")(y_pred);
    job.y_pred = y_pred.data();
    job.y_pred_stride = 1;
  }

  double total = 0.0;
  if (n > 0) {
    const ElementwiseFn fn = kernels().elementwise[loss][T == DType::f32 ? 0 : 1];
    NoGil nogil;
    total = fn(job);
  }
  outs.finish();
  return outs.result(total, norm);
}

// out (optional): a C-contiguous, writeable array of x's dtype and size (the benchmark times the
// math without the allocation).
py::array vmath(const std::string& name, const py::array& x, const py::object& out) {
  static const char* names[] = {
#define FL_NAME(fn) #fn,
      FASTLOSS_VMATH_FUNCS(FL_NAME)
#undef FL_NAME
  };
  int id = -1;
  for (int i = 0; i < kNumVmath; ++i)
    if (name == names[i]) id = i;
  if (id < 0) throw py::value_error("unknown vector math function '" + name + "'");
  if (x.dtype().kind() != 'f' || (x.itemsize() != 4 && x.itemsize() != 8) || !is_native(x.dtype()))
    throw py::type_error("x must be float32 or float64");
  py::array xc = numpy().attr("ascontiguousarray")(x);
  py::array y;
  if (out.is_none()) {
    y = py::array(xc.dtype(), shape_of(xc));
  } else {
    y = py::reinterpret_borrow<py::array>(out);
    if (!py::isinstance<py::array>(out) || !y.dtype().is(xc.dtype()) || y.size() != xc.size() ||
        !(y.flags() & py::array::c_style) || !y.writeable())
      throw py::value_error("out must be a writeable C-contiguous array of x's dtype and size");
  }
  const VmathFn fn = kernels().vmath[id][xc.itemsize() == 4 ? 0 : 1];
  const void* src = xc.data();
  void* dst = y.mutable_data();
  const index_t n = xc.size();
  {
    NoGil nogil;
    fn(src, dst, n);
  }
  return y;
}

}  // namespace

namespace fastloss::bind {
void bind_multiclass(py::module_& m);
void bind_image(py::module_& m);
void bind_similarity(py::module_& m);
void bind_transport(py::module_& m);
void bind_survival(py::module_& m);
void bind_ranking(py::module_& m);
}

PYBIND11_MODULE(_core, m) {
  m.doc() = "fastloss compiled kernels (private; use the fastloss package)";
  remember_main_thread();

  py::dict ids;
#define FL_ID(name, Body) ids[#name] = static_cast<int>(ElementwiseId::name);
  FASTLOSS_ELEMENTWISE_LOSSES(FL_ID)
#undef FL_ID
  m.attr("elementwise_kernels") = ids;
  py::list vm_names;
#define FL_NAME(fn) vm_names.append(#fn);
  FASTLOSS_VMATH_FUNCS(FL_NAME)
#undef FL_NAME
  m.attr("vmath_functions") = vm_names;
  // The C++ enumerations, name -> value, for the Python side.
#define FL_ENUM_DICT(Type, LIST) \
  [] {                           \
    using E = Type;              \
    py::dict d;                  \
    LIST(FL_ENUM_ITEM)           \
    return d;                    \
  }()
#define FL_ENUM_ITEM(id, name) d[name] = static_cast<int>(E::id);
  m.attr("metrics") = FL_ENUM_DICT(Metric, FASTLOSS_METRICS);
  m.attr("mining") = FL_ENUM_DICT(Mining, FASTLOSS_MINING);
  m.attr("softmax_modes") = FL_ENUM_DICT(SoftmaxMode, FASTLOSS_SOFTMAX_MODES);
  m.attr("activations") = FL_ENUM_DICT(Activation, FASTLOSS_ACTIVATIONS);
  m.attr("reductions") = FL_ENUM_DICT(Reduction, FASTLOSS_REDUCTIONS);

  m.def("elementwise", &elementwise, py::arg("loss"), py::arg("params"), py::arg("y_true"),
        py::arg("y_pred"), py::arg("sample_weight"), py::arg("aux"), py::arg("reduction"),
        py::arg("want_grad"), py::arg("want_hess"), py::arg("out"), py::arg("grad_out"),
        py::arg("hess_out"));
  m.def("vmath", &vmath, py::arg("name"), py::arg("x"), py::arg("out") = py::none());
  bind_multiclass(m);
  bind_image(m);
  bind_similarity(m);
  bind_transport(m);
  bind_survival(m);
  bind_ranking(m);
  m.def("first_bad_sign_label", &check_sign_labels, py::arg("y_true"),
        "flat index of the first label not in {-1, 0, +1}, or -1");
  m.def("first_bad_real_label", &check_real_labels, py::arg("y_true"), py::arg("low"),
        py::arg("closed"), "flat index of the first label not finite and > low (>= low if closed), or -1");
  m.def("first_outside_unit_interval", &check_probabilities, py::arg("values"), py::arg("name"),
        "flat index of the first value below 0 or above 1 (NaN is not), or -1");

  m.def("select_isa", [](const std::string& name) {
    try {
      select_isa(name);
    } catch (const std::invalid_argument& e) {
      throw py::value_error(e.what());
    }
  });
  m.def("selected_isa", &selected_isa);
  m.def("compiled_isas", &compiled_isas);
  m.def("available_isas", &available_isas);
  m.def("get_num_threads", &get_num_threads);
  m.def("set_num_threads", [](int n) {
    if (n < 1 || n > kMaxThreads)
      throw py::value_error("num_threads must lie in [1, " + std::to_string(kMaxThreads) + "]; got " +
                            std::to_string(n));
    set_num_threads(n);
  });
  m.attr("max_threads") = kMaxThreads;
  m.def("swap_thread_num_threads", [](int n) {
    if (n < 0 || n > kMaxThreads)
      throw py::value_error("num_threads must lie in [1, " + std::to_string(kMaxThreads) + "]");
    return swap_thread_num_threads(n);
  }, "sets the calling thread's own thread count (0: none) and returns the previous one");

  py::dict info;
  info["compiler"] = __VERSION__;
#if defined(_OPENMP)
  info["openmp"] = _OPENMP;
#else
  info["openmp"] = py::none();
#endif
  info["block"] = kBlock;
  info["lanes"] = kLanes;
  info["parallel_min_work"] = kParallelMinWork;
  m.attr("build") = info;
}
