#include "arrays.hpp"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <utility>
#include <stdexcept>

namespace fastloss::bind {

std::string shape_str(const std::vector<index_t>& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + (s.size() == 1 ? ",)" : ")");
}

std::vector<index_t> shape_of(const py::array& a) {
  return std::vector<index_t>(a.shape(), a.shape() + a.ndim());
}

py::dtype numpy_dtype(DType d) {
  return d == DType::f32 ? py::dtype::of<float>() : py::dtype::of<double>();
}

py::array fresh_array(const py::dtype& dtype, const Py_intptr_t* shape, int ndim) {
  constexpr std::size_t kMax = std::numeric_limits<std::size_t>::max();
  std::size_t bytes = static_cast<std::size_t>(dtype.itemsize());
  bool fits = true;  // else NumPy raises its own error
  for (int i = 0; i < ndim; ++i) {
    const Py_intptr_t s = shape[i];
    if (s < 0 || (s > 0 && bytes > kMax / static_cast<std::size_t>(s)))
      fits = false;
    else
      bytes *= static_cast<std::size_t>(s);
  }
  const auto& api = py::detail::npy_api::get();
  void* block = fits && bytes >= kCachedBlockMin ? take_block(bytes) : nullptr;
  py::object owner;
  if (block) {
    try {
      owner = py::capsule(block, [](void* b) { give_block(b); });
    } catch (...) {
      give_block(block);
      throw;
    }
  }
  const int flags = block ? py::detail::npy_api::NPY_ARRAY_WRITEABLE_ : 0;
  auto a = py::reinterpret_steal<py::array>(api.PyArray_NewFromDescr_(
      api.PyArray_Type_, dtype.inc_ref().ptr(), ndim, shape, nullptr, block, flags, nullptr));
  if (!a) throw py::error_already_set();
  if (block && api.PyArray_SetBaseObject_(a.ptr(), owner.release().ptr()) != 0)
    throw py::error_already_set();
  return a;
}

bool is_native(const py::dtype& d) { return is_native(d.byteorder()); }

bool is_native(char order) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  return order != '<';
#else
  return order != '>';
#endif
}

DType dtype_of(const py::array& a) { return a.itemsize() == 4 ? DType::f32 : DType::f64; }

py::object numpy() {
  // Imported once; the module object lives as long as the interpreter.
  static py::object* np = new py::object(py::module_::import("numpy"));
  return *np;
}

namespace {
unsigned long g_main_thread = 0;

// Runs Python's signal handlers on the main thread (the GIL taken back for a moment); throws the
// exception a handler raised.
void check_signals() {
  const PyGILState_STATE state = PyGILState_Ensure();
  if (PyErr_CheckSignals() != 0) {
    py::error_already_set raised;  // takes the pending exception; safe to destroy without the GIL
    PyGILState_Release(state);
    throw raised;
  }
  PyGILState_Release(state);
}
}  // namespace

void remember_main_thread() {
  g_main_thread = py::module_::import("threading").attr("main_thread")().attr("ident").cast<unsigned long>();
}

NoGil::NoGil() : interrupts(PyThread_get_thread_ident() == g_main_thread ? &check_signals : nullptr) {}

bool aligned(const py::array& a) { return a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_; }

py::array as_real_array(const py::handle& obj, const char* name, DType int_target) {
  py::array a = py::isinstance<py::array>(obj) ? py::reinterpret_borrow<py::array>(obj)
                                               : py::array(numpy().attr("asarray")(obj));
  const char kind = a.dtype().kind();
  const bool native = is_native(a.dtype());
  if (kind == 'f') {
    const auto size = a.itemsize();
    // A misaligned view (np.frombuffer at an odd offset) is copied once: kernels load whole
    // elements, which misaligned addresses do not allow.
    if ((size == 4 || size == 8) && native) return aligned(a) ? a : py::array(a.attr("copy")());
    const DType to = size <= 4 ? DType::f32 : DType::f64;  // float16 -> float32, longdouble -> float64
    return a.attr("astype")(numpy_dtype(to));
  }
  if (kind == 'i' || kind == 'u' || kind == 'b') return a.attr("astype")(numpy_dtype(int_target));
  // ml_dtypes' bfloat16 (JAX, TensorFlow), computed in float32 like float16
  if (py::str(a.dtype()).cast<std::string>() == "bfloat16") return a.attr("astype")(numpy_dtype(DType::f32));
  throw py::type_error(std::string(name) + " must be a real numeric array; got dtype " +
                       py::str(a.dtype()).cast<std::string>());
}

bool plain_float_array(PyObject* obj, DType* dtype, index_t* stride) {
  const auto& api = py::detail::npy_api::get();
  if (Py_TYPE(obj) != api.PyArray_Type_) return false;
  const auto* a = py::detail::array_proxy(obj);
  const auto* d = py::detail::array_descriptor_proxy(a->descr);
  if ((d->type_num != api.NPY_FLOAT_ && d->type_num != api.NPY_DOUBLE_) || !is_native(d->byteorder) ||
      !(a->flags & api.NPY_ARRAY_ALIGNED_))
    return false;
  *dtype = d->type_num == api.NPY_FLOAT_ ? DType::f32 : DType::f64;
  return flat_stride(py::reinterpret_borrow<py::array>(obj), stride);
}

bool flat_stride(const py::array& a, index_t* stride) {
  const auto item = static_cast<index_t>(a.itemsize());
  bool known = false;  // has an axis of length > 1 fixed the step yet?
  index_t step = item, expect = 0;
  for (py::ssize_t i = a.ndim() - 1; i >= 0; --i) {
    const index_t n = a.shape(i), s = a.strides(i);
    if (n == 1) continue;
    if (!known) {
      if (s % item) return false;
      step = s;
      known = true;
    } else if (s != expect) {
      return false;
    }
    expect = s * n;
  }
  *stride = step / item;  // 0 for a broadcast (stride-0) view: every element reads the same value
  return true;
}

Input flat_input(py::array a, Bcast mode, index_t period, std::vector<py::object>& keep) {
  index_t st = 1;
  if (!flat_stride(a, &st)) {
    a = numpy().attr("ascontiguousarray")(a);
    st = 1;
  }
  keep.push_back(a);
  Input in;
  in.ptr = a.data();
  in.dtype = dtype_of(a);
  in.stride = st;
  in.mode = mode;
  in.period = period;
  return in;
}

Output OutBuffer::view() const {
  const auto& a = static_cast<const py::array&>(target);
  Output o;
  o.ptr = const_cast<void*>(a.data());
  flat_stride(a, &o.stride);
  return o;
}

void OutBuffer::finish() {
  if (!target.is(user)) user.attr("__setitem__")(py::ellipsis(), target);
}

OutBuffer make_output(const py::object& given, const char* name, const std::vector<index_t>& shape,
                      DType dtype, bool contiguous) {
  const py::dtype dt = numpy_dtype(dtype);
  OutBuffer b;
  if (given.is_none()) {
    b.user = fresh_array(dt, shape);
    b.target = b.user;
    return b;
  }
  if (!py::isinstance<py::array>(given))
    throw py::type_error(std::string(name) + " must be a numpy.ndarray");
  py::array a = py::reinterpret_borrow<py::array>(given);
  if (a.dtype().num() != dt.num() || !is_native(a.dtype()))
    throw py::type_error(std::string(name) + " must have dtype " + py::str(dt).cast<std::string>() +
                         " (the dtype of y_pred); got " + py::str(a.dtype()).cast<std::string>());
  if (shape_of(a) != shape)
    throw py::value_error(std::string(name) + " must have shape " + shape_str(shape) + "; got " +
                          shape_str(shape_of(a)));
  if (!a.writeable()) throw py::value_error(std::string(name) + " is read-only");
  b.user = a;
  // Written through one stride when one describes it (and no two elements share memory).
  index_t st = 0;
  const bool direct = flat_stride(a, &st) && (st != 0 || a.size() <= 1) && (!contiguous || st == 1) &&
                      aligned(a);
  b.target = direct ? py::object(a) : py::object(fresh_array(dt, shape));
  return b;
}

Reduction parse_reduction(const std::string& r) {
#define FL_PARSE(id, name) \
  if (r == name) return Reduction::id;
  FASTLOSS_REDUCTIONS(FL_PARSE)
#undef FL_PARSE
  throw py::value_error("reduction must be 'mean', 'sum' or 'none'; got '" + r + "'");
}

// Is `inner` a prefix of `outer`? Returns the product of the remaining trailing axes, or 0.
// Is `inner` a prefix of `outer`? Returns the product of the remaining trailing axes (possibly 0
// for empty arrays), or -1 when it is not a prefix.
static index_t prefix_period(const std::vector<index_t>& inner, const std::vector<index_t>& outer) {
  if (inner.size() > outer.size()) return -1;
  index_t period = 1;
  for (size_t i = 0; i < outer.size(); ++i) {
    if (i < inner.size()) {
      if (inner[i] != outer[i]) return -1;
    } else {
      period *= outer[i];
    }
  }
  return period;
}

ElementwisePlan plan_elementwise(const std::vector<index_t>& pred, const std::vector<index_t>& truth,
                                 const std::vector<index_t>* weight, const std::vector<index_t>* aux) {
  ElementwisePlan plan;
  // A per-column parameter vector (e.g. quantiles) describes the last axis of y_pred.
  index_t cols = 1;
  const bool aux_vector = aux && !aux->empty();
  if (aux_vector && aux->size() > 1 && *aux == pred) {  // a per-element stream (AFT's upper bound)
    cols = 1;
    for (index_t s : pred) cols *= s;
    plan.aux_period = cols;
  } else if (aux_vector) {
    cols = (*aux)[0];
    if (pred.empty() || pred.back() != cols)
      throw py::value_error("y_pred must have " + std::to_string(cols) +
                            " columns (one per parameter value) in its last axis; got shape " +
                            shape_str(pred));
    plan.aux_period = cols;
  }
  if (truth == pred) {
    plan.y_true = Bcast::full;
  } else if (aux_vector && truth.size() + 1 == pred.size() && prefix_period(truth, pred) == cols) {
    plan.y_true = Bcast::row;
    plan.y_true_period = cols;
  } else {
    throw py::value_error("y_true and y_pred must have the same shape; got y_true " +
                          shape_str(truth) + " and y_pred " + shape_str(pred));
  }
  // sample_weight: the shape of y_pred, or of its leading axes (broadcast over the trailing ones).
  if (weight) {
    if (*weight == pred) {
      plan.weight = Bcast::full;
    } else if (!weight->empty() && (plan.weight_period = prefix_period(*weight, pred)) >= 0) {
      plan.weight = Bcast::row;
    } else {
      throw py::value_error("sample_weight must have the shape of y_pred " + shape_str(pred) +
                            " or of its leading axes; got " + shape_str(*weight));
    }
  }
  return plan;
}

CallOutputs::CallOutputs(Reduction reduction_, bool want_grad, bool want_hess, const py::object& out,
                         const py::object& grad_out, const py::object& hess_out,
                         const std::vector<index_t>& value_shape,
                         const std::vector<index_t>& pred_shape, DType dtype, bool contiguous,
                         MakeOutput make)
    : reduction(reduction_), grad(want_grad || want_hess), hess(want_hess) {
  if (reduction != Reduction::none && !out.is_none())
    throw py::value_error("out= is only used with reduction='none'");
  if (reduction == Reduction::none) values = make(out, "out", value_shape, dtype, contiguous);
  if (grad) gradient = make(grad_out, "grad_out", pred_shape, dtype, contiguous);
  if (hess) hessian = make(hess_out, "hess_out", pred_shape, dtype, contiguous);
}

namespace {
// The bytes [lo, hi) an array's elements span (lo == hi when it has none).
std::pair<std::uintptr_t, std::uintptr_t> byte_span(const py::array& a) {
  auto lo = reinterpret_cast<std::uintptr_t>(a.data()), hi = lo;
  if (a.size() == 0) return {lo, lo};
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    const auto step = static_cast<std::intptr_t>(a.strides(i)) * (a.shape(i) - 1);
    (step < 0 ? lo : hi) += step;
  }
  return {lo, hi + a.itemsize()};
}

bool is_array(const py::object& x) { return x && py::isinstance<py::array>(x); }  // not null/None
}  // namespace

bool overlap(const py::object& x, const py::object& y) {
  if (!is_array(x) || !is_array(y)) return false;
  const auto a = byte_span(py::reinterpret_borrow<py::array>(x));
  const auto b = byte_span(py::reinterpret_borrow<py::array>(y));
  return a.first < a.second && b.first < b.second && a.first < b.second && b.first < a.second;
}

bool same_view(const py::object& x, const py::object& y) {
  if (!is_array(x) || !is_array(y)) return false;
  const auto &a = py::reinterpret_borrow<py::array>(x), &b = py::reinterpret_borrow<py::array>(y);
  return a.data() == b.data() && a.itemsize() == b.itemsize() && shape_of(a) == shape_of(b) &&
         std::equal(a.strides(), a.strides() + a.ndim(), b.strides());
}

void CallOutputs::separate(const std::vector<py::object>& inputs, const py::object& in_place) {
  struct Named {
    OutBuffer* b;
    const char* name;
  };
  std::vector<Named> given;
  if (reduction == Reduction::none) given.push_back({&values, "out"});
  if (grad) given.push_back({&gradient, "grad_out"});
  if (hess) given.push_back({&hessian, "hess_out"});
  for (size_t i = 0; i < given.size(); ++i) {
    for (size_t j = 0; j < i; ++j)
      if (overlap(given[i].b->user, given[j].b->user) &&
          py::reinterpret_borrow<py::array>(given[i].b->user).size() > 0)
        throw py::value_error(std::string(given[j].name) + " and " + given[i].name +
                              " share memory; pass separate buffers");
    OutBuffer& b = *given[i].b;
    if (!b.target.is(b.user)) continue;  // already a temporary
    for (const py::object& in : inputs)
      if (overlap(b.target, in) && !(in.is(in_place) && same_view(b.target, in))) {
        const auto& a = py::reinterpret_borrow<py::array>(b.user);
        b.target = fresh_array(a.dtype(), shape_of(a));
        break;
      }
  }
}

void CallOutputs::finish() {
  if (reduction == Reduction::none) values.finish();
  if (grad) gradient.finish();
  if (hess) hessian.finish();
}

py::tuple CallOutputs::result(double total, double norm) const {
  return py::make_tuple(total, norm, reduction == Reduction::none ? values.user : py::none(),
                        grad ? gradient.user : py::none(), hess ? hessian.user : py::none());
}

void set_gradient_scale(Reduction reduction, bool weighted, index_t n, double normalizer,
                        double* grad_scale, double* weight_prescale) {
  const bool mean = reduction == Reduction::mean;
  if (mean && weighted && n > 0 && normalizer == 0.0)
    throw py::value_error("sample_weight sums to zero: the weighted mean is undefined");
  double pre = 1.0;
  if (mean && normalizer < 0x1p-600) pre = 0x1p600;  // exact rescaling of tiny weights
  if (mean && normalizer > 0x1p600) pre = 0x1p-600;
  *weight_prescale = pre;
  *grad_scale = mean ? 1.0 / (normalizer * pre) : 1.0;
}

}  // namespace fastloss::bind
