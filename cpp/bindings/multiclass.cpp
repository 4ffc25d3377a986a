// Binding of the softmax family: cross-entropy on (..., K) logits or probabilities with sparse
// labels or dense targets, and row-wise logsumexp / softmax / log_softmax.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "../cpu/kernels.hpp"
#include "arrays.hpp"

namespace py = pybind11;

namespace fastloss::bind {
namespace {

// `x` as (rows, K) with contiguous columns and a uniform row stride (copied when needed).
struct RowView {
  py::array array;
  index_t rows = 0, K = 0, stride = 0;
};

RowView row_view(py::array x, const char* name) {
  if (x.ndim() < 1) throw py::value_error(std::string(name) + " must have a class axis (last); got a 0-d array");
  RowView v;
  v.K = x.shape(x.ndim() - 1);
  if (v.K < 1) throw py::value_error(std::string(name) + " must have at least one class (last axis)");
  v.rows = x.size() / v.K;
  const auto item = static_cast<index_t>(x.itemsize());
  const bool cols = v.K == 1 || x.strides(x.ndim() - 1) == item;
  if (x.ndim() == 2 && cols && x.strides(0) % item == 0) {
    v.stride = x.strides(0) / item;
  } else if (x.ndim() == 1) {
    v.stride = v.K;
    if (!cols) x = numpy().attr("ascontiguousarray")(x);
  } else {
    x = numpy().attr("ascontiguousarray")(x);
    v.stride = v.K;
  }
  v.array = x;
  return v;
}

// y_pred of a row-wise loss: its (rows, K) view, dtype, shape and the shape of its rows.
struct Prediction {
  RowView v;
  DType T;
  std::vector<index_t> shape, rshape;
};

// The row geometry every row-wise job starts from.
template <class Job>
void set_rows(Job& job, const RowView& v) {
  job.rows = v.rows;
  job.K = v.K;
  job.x = v.array.data();
  job.x_stride = v.stride;
  job.threads = get_num_threads();
}

std::vector<index_t> leading(const std::vector<index_t>& shape) {
  return std::vector<index_t>(shape.begin(), shape.end() - 1);
}

Prediction prediction_rows(const py::object& x_obj) {
  py::array x = as_real_array(x_obj, "y_pred");
  Prediction p{row_view(x, "y_pred"), dtype_of(x), shape_of(x), {}};
  p.rshape = leading(p.shape);
  return p;
}

// The normalizer of a mean over rows: the summed sample weights (the number of rows without).
double row_weight_sum(const double* sw, index_t rows) {
  double norm = 0.0;
  for (index_t r = 0; r < rows; ++r) norm += sw ? sw[r] : 1.0;
  return norm;
}

// Integer class labels of shape `rshape`, as a contiguous int64 array.
py::array int_labels(const py::object& obj, const std::vector<index_t>& rshape) {
  py::array given = py::isinstance<py::array>(obj) ? py::reinterpret_borrow<py::array>(obj)
                                                   : py::array(numpy().attr("asarray")(obj));
  const char kind = given.dtype().kind();
  if (kind != 'i' && kind != 'u')
    throw py::type_error("y_true (class labels) must be an integer array; got dtype " +
                         py::str(given.dtype()).cast<std::string>());
  if (shape_of(given) != rshape)
    throw py::value_error("y_true (class labels) must have the shape of y_pred without its class axis " +
                          shape_str(rshape) + "; got " + shape_str(shape_of(given)));
  if (kind == 'u' && given.itemsize() == 8) {  // beyond int64: report as given, before the cast
    py::array big = numpy().attr("flatnonzero")(given.attr("__gt__")(py::int_(INT64_MAX)));
    if (big.size() > 0) {
      const auto i = py::cast<index_t>(big.attr("__getitem__")(0));
      throw py::value_error("y_true[" + std::to_string(i) + "] = " +
                            py::str(given.attr("ravel")().attr("__getitem__")(i)).cast<std::string>() +
                            " is not a class index");
    }
  }
  return numpy().attr("ascontiguousarray")(given, "int64");
}

// class_weight (K,) as contiguous float64 (kept alive in `keep`), its sum in *total; null if None.
const double* class_weights(const py::object& obj, index_t K, py::array& keep, double* total) {
  *total = static_cast<double>(K);
  if (obj.is_none()) return nullptr;
  keep = numpy().attr("ascontiguousarray")(obj, "float64");
  if (keep.ndim() != 1 || keep.shape(0) != K)
    throw py::value_error("class_weight must have one weight per class (" + std::to_string(K) +
                          "); got shape " + shape_str(shape_of(keep)));
  const double* w = static_cast<const double*>(keep.data());
  *total = 0.0;
  for (index_t k = 0; k < K; ++k) *total += w[k];
  return w;
}

// sample_weight, one finite non-negative weight per row; null if None.
const double* row_weights(const py::object& obj, const std::vector<index_t>& rshape, py::array& keep) {
  if (obj.is_none()) return nullptr;
  keep = numpy().attr("ascontiguousarray")(as_real_array(obj, "sample_weight"), "float64");
  if (shape_of(keep) != rshape)
    throw py::value_error("sample_weight must have one weight per row, shape " + shape_str(rshape) +
                          "; got " + shape_str(shape_of(keep)));
  const double* w = static_cast<const double*>(keep.data());
  for (index_t r = 0; r < keep.size(); ++r)
    if (!(w[r] >= 0.0 && w[r] <= std::numeric_limits<double>::max()))
      throw py::value_error("sample_weight must be finite and non-negative");
  return w;
}

// Checks every label is a class index (or the ignored label) and returns the normalizer of the
// mean, PyTorch's: the summed sample weight times class weight of the rows that count.
double label_normalizer(const std::int64_t* labels, index_t rows, index_t K, const std::int64_t* ignore,
                        const double* sw, const double* cw) {
  double norm = 0.0;
  for (index_t r = 0; r < rows; ++r) {
    const std::int64_t t = labels[r];
    if (ignore && t == *ignore) continue;
    if (t < 0 || t >= K)
      throw py::value_error("y_true[" + std::to_string(r) + "] = " + std::to_string(t) +
                            " is not a class index in [0, " + std::to_string(K) + ")" +
                            (ignore ? " nor ignore_index (" + std::to_string(*ignore) + ")" : ""));
    norm += (sw ? sw[r] : 1.0) * (cw ? cw[t] : 1.0);
  }
  return norm;
}

// Outputs, gradient scale, kernel call and result of one row-wise call (the jobs share these
// fields). An empty mean (every row ignored or weightless) is NaN with a zero gradient.
template <class Job, class Fn>
py::tuple run_rows(Job& job, Fn fn, double norm, CallOutputs& outs, index_t K) {
  if (outs.reduction == Reduction::none) job.loss_out = outs.values.view().ptr;
  if (outs.grad) job.grad_out = outs.gradient.view().ptr, job.grad_stride = K;
  if (outs.hess) job.hess_out = outs.hessian.view().ptr, job.hess_stride = K;
  job.grad_scale = outs.reduction == Reduction::mean ? (norm > 0 ? 1.0 / norm : 0.0) : 1.0;
  double total = 0.0;
  if (job.rows > 0) {
    py::gil_scoped_release nogil;
    total = fn(job);
  }
  outs.finish();
  return outs.result(total, norm);
}

py::tuple cross_entropy(const py::object& target_obj, const py::object& x_obj, bool dense,
                        bool from_logits, double eps, const py::object& class_weight_obj,
                        const py::object& ignore_obj, double smoothing, double focal_gamma,
                        const py::object& weight_obj, const std::string& reduction_name,
                        bool want_grad, bool want_hess, const py::object& out_obj,
                        const py::object& grad_out_obj, const py::object& hess_out_obj) {
  const Reduction reduction = parse_reduction(reduction_name);
  const Prediction pred = prediction_rows(x_obj);
  const RowView& v = pred.v;
  const DType T = pred.T;
  const auto &xshape = pred.shape, &rshape = pred.rshape;

  CrossEntropyJob job;
  set_rows(job, v);
  job.from_logits = from_logits;
  job.eps = eps;
  job.smoothing = smoothing;
  job.focal_gamma = focal_gamma;
  const bool focal = focal_gamma >= 0;
  if (focal && (!from_logits || smoothing != 0.0))
    throw py::value_error("the softmax focal loss takes logits, without label smoothing");

  py::array labels, targets, cw, sw;
  if (dense) {
    targets = as_real_array(target_obj, "y_true", T);
    if (shape_of(targets) != xshape)
      throw py::value_error("y_true (target probabilities) and y_pred must have the same shape; got y_true " +
                            shape_str(shape_of(targets)) + " and y_pred " + shape_str(xshape));
    targets = numpy().attr("ascontiguousarray")(targets, numpy_dtype(T));
    job.targets = targets.data();
    job.targets_stride = v.K;
  } else {
    labels = int_labels(target_obj, rshape);
    job.labels = static_cast<const std::int64_t*>(labels.data());
    if (!ignore_obj.is_none()) job.has_ignore = true, job.ignore_index = ignore_obj.cast<std::int64_t>();
  }
  job.class_weight = class_weights(class_weight_obj, v.K, cw, &job.class_weight_sum);
  job.sample_weight = row_weights(weight_obj, rshape, sw);
  // The mean's normalizer: PyTorch's (see label_normalizer); with target rows, the summed sample
  // weights (the number of rows without).
  double norm = 0.0;
  if (dense) {
    norm = row_weight_sum(job.sample_weight, v.rows);
  } else {
    // The focal loss's alpha does not normalize: its mean is over the counted rows.
    norm = label_normalizer(job.labels, v.rows, v.K, job.has_ignore ? &job.ignore_index : nullptr,
                            job.sample_weight, focal ? nullptr : job.class_weight);
  }

  CallOutputs outs(reduction, want_grad, want_hess, out_obj, grad_out_obj, hess_out_obj, rshape,
                   xshape, T, true);
  return run_rows(job, kernels().cross_entropy[T == DType::f32 ? 0 : 1], norm, outs, v.K);
}

py::tuple multi_margin(const py::object& label_obj, const py::object& x_obj, bool crammer_singer,
                       int p, double margin, const py::object& class_weight_obj,
                       const py::object& weight_obj, const std::string& reduction_name,
                       bool want_grad, bool want_hess, const py::object& out_obj,
                       const py::object& grad_out_obj, const py::object& hess_out_obj) {
  const Reduction reduction = parse_reduction(reduction_name);
  const Prediction pred = prediction_rows(x_obj);
  const RowView& v = pred.v;
  const DType T = pred.T;
  const auto &xshape = pred.shape, &rshape = pred.rshape;
  MultiMarginJob job;
  set_rows(job, v);
  job.crammer_singer = crammer_singer;
  job.p = p;
  job.margin = margin;
  py::array labels = int_labels(label_obj, rshape), cw, sw;
  job.labels = static_cast<const std::int64_t*>(labels.data());
  double cw_sum = 0.0;
  job.class_weight = class_weights(class_weight_obj, v.K, cw, &cw_sum);
  job.sample_weight = row_weights(weight_obj, rshape, sw);
  label_normalizer(job.labels, v.rows, v.K, nullptr, nullptr, nullptr);  // range check
  // PyTorch's mean: over rows (class weights do not normalize); weighted rows by their weights.
  const double norm = row_weight_sum(job.sample_weight, v.rows);

  CallOutputs outs(reduction, want_grad, want_hess, out_obj, grad_out_obj, hess_out_obj, rshape,
                   xshape, T, true);
  return run_rows(job, kernels().multi_margin[T == DType::f32 ? 0 : 1], norm, outs, v.K);
}

// Distillation (labels given) or the tempered-softmax KL (labels None, alpha 0) between teacher
// and student logits of the same shape; the mean is over rows (summed sample weights).
py::tuple distillation(const py::object& label_obj, const py::object& x_obj,
                       const py::object& teacher_obj, double alpha, double temperature,
                       double kl_scale, const py::object& weight_obj,
                       const std::string& reduction_name, bool want_grad, bool want_hess,
                       const py::object& out_obj, const py::object& grad_out_obj,
                       const py::object& hess_out_obj) {
  const Reduction reduction = parse_reduction(reduction_name);
  const Prediction pred = prediction_rows(x_obj);
  const RowView& v = pred.v;
  const DType T = pred.T;
  const auto &xshape = pred.shape, &rshape = pred.rshape;
  DistillationJob job;
  set_rows(job, v);
  job.alpha = alpha;
  job.temperature = temperature;
  job.kl_scale = kl_scale;
  py::array teacher = as_real_array(teacher_obj, "teacher_logits", T);
  if (shape_of(teacher) != xshape)
    throw py::value_error("teacher_logits and y_pred must have the same shape; got teacher_logits " +
                          shape_str(shape_of(teacher)) + " and y_pred " + shape_str(xshape));
  RowView tv = row_view(numpy().attr("asarray")(teacher, numpy_dtype(T)), "teacher_logits");
  job.teacher = tv.array.data();
  job.teacher_stride = tv.stride;
  py::array labels, sw;
  if (!label_obj.is_none()) {
    labels = int_labels(label_obj, rshape);
    job.labels = static_cast<const std::int64_t*>(labels.data());
    label_normalizer(job.labels, v.rows, v.K, nullptr, nullptr, nullptr);  // range check
  } else if (alpha != 0.0) {
    throw py::value_error("y_true (class labels) are required when alpha > 0");
  }
  job.sample_weight = row_weights(weight_obj, rshape, sw);
  const double norm = row_weight_sum(job.sample_weight, v.rows);

  CallOutputs outs(reduction, want_grad, want_hess, out_obj, grad_out_obj, hess_out_obj, rshape,
                   xshape, T, true);
  return run_rows(job, kernels().distillation[T == DType::f32 ? 0 : 1], norm, outs, v.K);
}

py::array softmax(const py::object& x_obj, int mode) {
  if (mode < 0 || mode > 2) throw py::value_error("unknown softmax mode");
  py::array x = as_real_array(x_obj, "x");
  const DType T = dtype_of(x);
  RowView v = row_view(x, "x");
  const auto shape = shape_of(x);
  py::array out(numpy_dtype(T), mode == 0 ? leading(shape) : shape);
  const SoftmaxFn fn = kernels().softmax[T == DType::f32 ? 0 : 1];
  const void* src = v.array.data();
  void* dst = out.mutable_data();
  const int threads = get_num_threads();
  {
    py::gil_scoped_release nogil;
    fn(static_cast<SoftmaxMode>(mode), src, v.stride, v.rows, v.K, dst, threads);
  }
  return out;
}

}  // namespace

void bind_multiclass(py::module_& m) {
  m.def("cross_entropy", &cross_entropy, py::arg("y_true"), py::arg("y_pred"), py::arg("dense"),
        py::arg("from_logits"), py::arg("eps"), py::arg("class_weight"), py::arg("ignore_index"),
        py::arg("label_smoothing"), py::arg("focal_gamma"), py::arg("sample_weight"), py::arg("reduction"),
        py::arg("want_grad"), py::arg("want_hess"), py::arg("out"), py::arg("grad_out"),
        py::arg("hess_out"));
  m.def("multi_margin", &multi_margin, py::arg("y_true"), py::arg("y_pred"),
        py::arg("crammer_singer"), py::arg("p"), py::arg("margin"), py::arg("class_weight"),
        py::arg("sample_weight"), py::arg("reduction"), py::arg("want_grad"), py::arg("want_hess"),
        py::arg("out"), py::arg("grad_out"), py::arg("hess_out"));
  m.def("distillation", &distillation, py::arg("y_true"), py::arg("y_pred"),
        py::arg("teacher_logits"), py::arg("alpha"), py::arg("temperature"), py::arg("kl_scale"),
        py::arg("sample_weight"), py::arg("reduction"), py::arg("want_grad"), py::arg("want_hess"),
        py::arg("out"), py::arg("grad_out"), py::arg("hess_out"));
  m.def("softmax", &softmax, py::arg("x"), py::arg("mode"),
        "row-wise over the last axis: 0 logsumexp, 1 softmax, 2 log_softmax");
}

}  // namespace fastloss::bind
