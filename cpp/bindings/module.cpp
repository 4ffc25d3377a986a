// The private extension module fastloss._core. The Python package wraps it; everything here is
// generated from the registry lists, one generic binder per kernel kind.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <cmath>
#include <limits>
#include <optional>
#include <stdexcept>

#include "../cpu/kernels.hpp"
#include "arrays.hpp"
#include "fastloss/reduce.hpp"

namespace py = pybind11;
using namespace fastloss;
using namespace fastloss::bind;

namespace {

// Below this many elements a pass keeps the GIL: releasing and taking it back costs about as much
// as the work, and such a pass is over in microseconds (never in a parallel region: see
// kParallelMinWork).
constexpr index_t kGilFreeMin = 4 * kBlock;

// Sum of the weights in the fixed blocked order, after checking each is finite and >= 0.
template <class T>
double weight_sum(const Input& w, index_t n, int threads) {
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

// The same for either dtype: ValueError when a weight is negative, NaN or infinite.
double checked_weight_sum(const Input& w, index_t n, int threads) {
  std::optional<NoGil> nogil;
  if (n >= kGilFreeMin) nogil.emplace();
  return w.dtype == DType::f32 ? weight_sum<float>(w, n, threads) : weight_sum<double>(w, n, threads);
}

// The flat index of the first of n float32/float64 values outside `domain`, or -1 (the selected
// ISA's scan: one parallel counting pass, the index searched only on error).
index_t first_bad_in(const void* y, DType dtype, index_t stride, index_t n, LabelDomain domain,
                     double low = 0.0) {
  std::optional<NoGil> nogil;
  if (n >= kGilFreeMin) nogil.emplace();
  const LabelScanFn scan = kernels().label_scan[static_cast<int>(domain)][dtype == DType::f32 ? 0 : 1];
  return scan(y, stride, n, get_num_threads(), low);
}

// The same over an input (any real dtype, any strides); float64 where float32 cannot hold `low`.
index_t first_bad_label_of(const py::object& y_obj, LabelDomain domain, double low = 0.0,
                           const char* name = "y_true") {
  py::array y = as_real_array(y_obj, name);
  index_t stride = 1;
  if (dtype_of(y) == DType::f32 && static_cast<double>(static_cast<float>(low)) != low)
    y = y.attr("astype")(numpy().attr("float64")), stride = 1;
  else if (!flat_stride(y, &stride))
    y = numpy().attr("ascontiguousarray")(y), stride = 1;
  return first_bad_in(y.data(), dtype_of(y), stride, y.size(), domain, low);
}

// The elementwise kernel of `loss` for y_pred's dtype `T` on `job`.
double run_kernel(int loss, DType T, const ElementwiseJob& job) {
  if (job.n <= 0) return 0.0;
  const ElementwiseFn fn = kernels().elementwise[loss][T == DType::f32 ? 0 : 1];
  if (job.n < kGilFreeMin) return fn(job);
  NoGil nogil;
  return fn(job);
}

// Labels of the sign-label losses must be -1, 0 or +1 (NaN is bad too).
index_t check_sign_labels(const py::object& y_obj) { return first_bad_label_of(y_obj, LabelDomain::sign); }

// Labels of the likelihood losses: finite and above low (or at it, when closed); low may be -inf.
index_t check_real_labels(const py::object& y_obj, double low, bool closed) {
  return first_bad_label_of(y_obj, closed ? LabelDomain::at_or_above : LabelDomain::above, low);
}

// Probabilities must lie in [0, 1]; NaN passes (it propagates to the result like any NaN).
index_t check_probabilities(const py::object& p_obj, const std::string& name) {
  return first_bad_label_of(p_obj, LabelDomain::unit_interval, 0.0, name.c_str());
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
  if (weighted)  // always validated, whatever the reduction
    norm = checked_weight_sum(job.weight, py::reinterpret_borrow<py::array>(w).size(), job.threads) *
           static_cast<double>(plan.weight_period);
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

  const double total = run_kernel(loss, T, job);
  outs.finish();
  return outs.result(total, norm);
}

// The common call with the fewest operations: y_true, y_pred and the sample weight (if any) plain
// float32/float64 ndarrays (plain_float_array) of one shape, no per-column parameter vector (one
// parameter for every element, like Quantile's scalar tau, is served), a reduced value
// ("mean" or "sum"), derivatives into fresh arrays or into plain caller buffers of y_pred's dtype
// and shape that overlap no input (y_pred itself excepted) nor each other, and the loss's own
// label or probability check passing. Anything else returns NotImplemented, and the caller takes
// the general path, which converts what it can and raises the clear error for the rest; so this
// path only ever answers what the general path would answer, bit for bit.
//
// elementwise_fast(spec, args, sample_weight, reduction, grad_out, hess_out, want) with
//   spec = (loss id, check, has_hessian, reduction, aux, *params) made once per loss object;
//   check: 0 none, 1 labels in {-1, 0, +1} (y_true), 2 probabilities in [0, 1] (y_pred);
//   aux: None, or the float every element's per-element parameter equals (kernels with kAux);
//   args = (y_true, y_pred) or (y_true, y_pred, sample_weight); reduction = None (the spec's),
//   "mean" or "sum";
//   want: 0 value, 1 (value, grad), 2 (grad, hess), 3 (value, grad, hess).
enum FastCheck { kNoCheck = 0, kSignLabels = 1, kProbabilities = 2 };
enum FastWant { kValue = 0, kValueGrad = 1, kGradHess = 2, kValueGradHess = 3 };
constexpr int kFastMaxParams = 16;

// A caller's derivative buffer, or a fresh array; null when the call is not the common one.
PyObject* fast_output(PyObject* given, PyObject* y_true, PyObject* y_pred, DType T, Output* view) {
  const auto* p = py::detail::array_proxy(y_pred);
  if (given == Py_None) {
    PyObject* a = fresh_array(numpy_dtype(T), p->dimensions, p->nd).release().ptr();
    view->ptr = py::detail::array_proxy(a)->data;
    view->stride = 1;
    return a;
  }
  DType dt;
  index_t stride;
  if (!plain_float_array(given, &dt, &stride) || dt != T) return nullptr;
  const auto* g = py::detail::array_proxy(given);
  if (g->nd != p->nd || !std::equal(p->dimensions, p->dimensions + p->nd, g->dimensions) ||
      !(g->flags & py::detail::npy_api::NPY_ARRAY_WRITEABLE_))
    return nullptr;
  const auto out = py::reinterpret_borrow<py::object>(given);
  const auto truth = py::reinterpret_borrow<py::object>(y_true);
  const auto pred = py::reinterpret_borrow<py::object>(y_pred);
  if ((stride == 0 && py::reinterpret_borrow<py::array>(given).size() > 1) || overlap(out, truth) ||
      (overlap(out, pred) && !same_view(out, pred)))
    return nullptr;
  view->ptr = g->data;
  view->stride = stride;
  Py_INCREF(given);
  return given;
}

PyObject* elementwise_fast_impl(PyObject* const* argv) {
  PyObject *spec = argv[0], *args = argv[1], *weight = argv[2], *red = argv[3], *grad_out = argv[4],
           *hess_out = argv[5];
  if (!PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) < 5)
    throw py::type_error(
        "elementwise_fast: spec must be (loss, check, has_hessian, reduction, aux, *params)");
  if (PyTuple_GET_SIZE(spec) > 5 + kFastMaxParams) Py_RETURN_NOTIMPLEMENTED;
  const long want = PyLong_AsLong(argv[6]);
  const long loss = PyLong_AsLong(PyTuple_GET_ITEM(spec, 0));
  const long check = PyLong_AsLong(PyTuple_GET_ITEM(spec, 1));
  const int has_hessian = PyObject_IsTrue(PyTuple_GET_ITEM(spec, 2));
  int reduction = static_cast<int>(PyLong_AsLong(PyTuple_GET_ITEM(spec, 3)));
  if (PyErr_Occurred()) return nullptr;
  if (loss < 0 || loss >= kNumElementwise || want < kValue || want > kValueGradHess)
    throw py::value_error("elementwise_fast: unknown loss id or request");
  const bool grad = want != kValue, hess = want >= kGradHess;
  if (!PyTuple_Check(args) || PyTuple_GET_SIZE(args) < 2 || PyTuple_GET_SIZE(args) > 3 ||
      (hess && !has_hessian))
    Py_RETURN_NOTIMPLEMENTED;
  if (PyTuple_GET_SIZE(args) == 3) {  // the weight given by position
    if (weight != Py_None) Py_RETURN_NOTIMPLEMENTED;
    weight = PyTuple_GET_ITEM(args, 2);
  }
  if (red != Py_None) {
    if (!PyUnicode_Check(red)) Py_RETURN_NOTIMPLEMENTED;
    if (PyUnicode_CompareWithASCIIString(red, "mean") == 0)
      reduction = static_cast<int>(Reduction::mean);
    else if (PyUnicode_CompareWithASCIIString(red, "sum") == 0)
      reduction = static_cast<int>(Reduction::sum);
    else
      Py_RETURN_NOTIMPLEMENTED;
  }
  if (reduction != static_cast<int>(Reduction::mean) && reduction != static_cast<int>(Reduction::sum))
    Py_RETURN_NOTIMPLEMENTED;

  PyObject *y_true = PyTuple_GET_ITEM(args, 0), *y_pred = PyTuple_GET_ITEM(args, 1);
  ElementwiseJob job;
  DType T;
  if (!plain_float_array(y_pred, &T, &job.y_pred_stride) ||
      !plain_float_array(y_true, &job.y_true.dtype, &job.y_true.stride))
    Py_RETURN_NOTIMPLEMENTED;
  const auto *p = py::detail::array_proxy(y_pred), *t = py::detail::array_proxy(y_true);
  auto same_shape = [p](PyObject* x) {
    const auto* a = py::detail::array_proxy(x);
    return a->nd == p->nd && std::equal(p->dimensions, p->dimensions + p->nd, a->dimensions);
  };
  if (!same_shape(y_true)) Py_RETURN_NOTIMPLEMENTED;
  const bool weighted = weight != Py_None;
  if (weighted) {
    if (!plain_float_array(weight, &job.weight.dtype, &job.weight.stride) || !same_shape(weight))
      Py_RETURN_NOTIMPLEMENTED;
    job.weight.ptr = py::detail::array_proxy(weight)->data;
    job.weight.mode = Bcast::full;
  }
  job.n = 1;
  for (int i = 0; i < p->nd; ++i) job.n *= p->dimensions[i];
  if (job.n == 0) Py_RETURN_NOTIMPLEMENTED;  // the mean over nothing: the general path's answer
  job.y_pred = p->data;
  job.y_true.ptr = t->data;
  job.y_true.mode = Bcast::full;
  // The sign-label kernels make the value NaN at a bad label: where every output is fresh and
  // the kernel reads the labels unrounded (not float64 labels for float32 scores), the labels are
  // scanned only when the value comes back NaN; otherwise before any write.
  const bool labels_after = check == kSignLabels && grad_out == Py_None && hess_out == Py_None &&
                            !(job.y_true.dtype == DType::f64 && T == DType::f32);
  auto bad_labels = [&] {
    return first_bad_in(t->data, job.y_true.dtype, job.y_true.stride, job.n, LabelDomain::sign) >= 0;
  };
  if ((check == kSignLabels && !labels_after && bad_labels()) ||
      (check == kProbabilities &&
       first_bad_in(p->data, T, job.y_pred_stride, job.n, LabelDomain::unit_interval) >= 0))
    Py_RETURN_NOTIMPLEMENTED;  // the general path names the offending element
  job.labels_checked = check == kSignLabels && !labels_after;

  double params[kFastMaxParams];
  for (Py_ssize_t i = 5; i < PyTuple_GET_SIZE(spec); ++i) {
    params[i - 5] = PyFloat_AsDouble(PyTuple_GET_ITEM(spec, i));
    if (params[i - 5] == -1.0 && PyErr_Occurred()) return nullptr;
  }
  job.params = params;
  double aux;  // one value broadcast to every element (a column of period 1, read as a fill)
  if (PyTuple_GET_ITEM(spec, 4) != Py_None) {
    aux = PyFloat_AsDouble(PyTuple_GET_ITEM(spec, 4));
    if (aux == -1.0 && PyErr_Occurred()) return nullptr;
    job.aux = Input{&aux, DType::f64, 0, Bcast::col, 1};
  }
  job.threads = get_num_threads();

  py::object g, h;  // owned; null while not requested
  if (grad) {
    g = py::reinterpret_steal<py::object>(fast_output(grad_out, y_true, y_pred, T, &job.grad_out));
    if (!g) Py_RETURN_NOTIMPLEMENTED;
  } else if (grad_out != Py_None) {
    Py_RETURN_NOTIMPLEMENTED;
  }
  if (hess) {
    h = py::reinterpret_steal<py::object>(fast_output(hess_out, y_true, y_pred, T, &job.hess_out));
    if (!h || (grad_out != Py_None && overlap(g, h))) Py_RETURN_NOTIMPLEMENTED;
  } else if (hess_out != Py_None) {
    Py_RETURN_NOTIMPLEMENTED;
  }
  if (weighted && (overlap(g, py::reinterpret_borrow<py::object>(weight)) ||
                   overlap(h, py::reinterpret_borrow<py::object>(weight))))
    Py_RETURN_NOTIMPLEMENTED;

  // From here on, the errors are the general path's own (same checks, same messages).
  const double norm =
      weighted ? checked_weight_sum(job.weight, job.n, job.threads) : static_cast<double>(job.n);
  set_gradient_scale(static_cast<Reduction>(reduction), weighted, job.n, norm, &job.grad_scale,
                     &job.weight_prescale);

  const double total = run_kernel(static_cast<int>(loss), T, job);
  if (labels_after && total != total && bad_labels())
    Py_RETURN_NOTIMPLEMENTED;  // the general path names the offending element
  const double value = reduction == static_cast<int>(Reduction::mean) ? total / norm : total;
  switch (want) {
    case kValue:
      return PyFloat_FromDouble(value);
    case kValueGrad:
      return py::make_tuple(value, g).release().ptr();
    case kGradHess:
      return py::make_tuple(g, h).release().ptr();
    default:
      return py::make_tuple(value, g, h).release().ptr();
  }
}

// The CPython entry (METH_FASTCALL: no argument parsing layer); C++ exceptions become Python ones.
PyObject* elementwise_fast(PyObject*, PyObject* const* argv, Py_ssize_t argc) {
  if (argc != 7) {
    PyErr_SetString(PyExc_TypeError, "elementwise_fast takes 7 arguments");
    return nullptr;
  }
  try {
    return elementwise_fast_impl(argv);
  } catch (py::error_already_set& e) {
    e.restore();
  } catch (const py::builtin_exception& e) {
    e.set_error();
  } catch (const std::bad_alloc&) {
    PyErr_NoMemory();
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  }
  return nullptr;
}

PyMethodDef elementwise_fast_def = {
    "elementwise_fast", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&elementwise_fast)),
    METH_FASTCALL,
    "elementwise_fast(spec: tuple, args: tuple, sample_weight: object, reduction: Optional[str], "
    "grad_out: object, hess_out: object, want: int) -> object\n\n"
    "The common elementwise call in one step, or NotImplemented (then take the general path)."};

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
    y = fresh_array(xc.dtype(), shape_of(xc));
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
  m.attr("elementwise_fast") = py::reinterpret_steal<py::object>(
      PyCFunction_NewEx(&elementwise_fast_def, nullptr, m.attr("__name__").ptr()));
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
  m.def("swap_block_cache_limit", [](std::uint64_t bytes) {
    return swap_block_cache_limit(static_cast<std::size_t>(bytes));
  }, "sets the bytes of freed blocks kept for reuse and returns the previous limit");
  m.def("block_cache_info", [] {
    const BlockCacheInfo c = block_cache_info();
    return py::make_tuple(c.limit, c.held, c.blocks);
  }, "(limit, held bytes, blocks) of the cache of freed blocks");
  m.attr("cached_block_min") = kCachedBlockMin;

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
