// Planning of a row-wise call, shared by the CPU and CUDA bindings: the (rows, K) views, the
// checks of labels, targets and weights, the mean's denominator and the outputs.
#include <cstdint>
#include <limits>
#include <string>

#include "arrays.hpp"

namespace fastloss::bind {

RowView row_view(py::array x, const char* name, bool contiguous) {
  if (x.ndim() < 1) throw py::value_error(std::string(name) + " must have a class axis (last); got a 0-d array");
  RowView v;
  v.K = x.shape(x.ndim() - 1);
  if (v.K < 1) throw py::value_error(std::string(name) + " must have at least one class (last axis)");
  v.rows = x.size() / v.K;
  const auto item = static_cast<index_t>(x.itemsize());
  const bool cols = v.K == 1 || x.strides(x.ndim() - 1) == item;
  if (x.ndim() == 2 && cols && x.strides(0) % item == 0 && (!contiguous || x.strides(0) == v.K * item)) {
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

std::vector<index_t> leading(const std::vector<index_t>& shape) {
  return std::vector<index_t>(shape.begin(), shape.end() - 1);
}

// The normalizer of a mean over rows: the summed sample weights (the number of rows without).
double row_weight_sum(const double* sw, index_t rows) {
  double norm = 0.0;
  for (index_t r = 0; r < rows; ++r) norm += sw ? sw[r] : 1.0;
  return norm;
}

// sample_weight, one finite non-negative weight per row; null if None.
const double* row_weights(const py::object& obj, const std::vector<index_t>& rshape, py::array& keep,
                          const char* item) {
  if (obj.is_none()) return nullptr;
  keep = numpy().attr("ascontiguousarray")(as_real_array(obj, "sample_weight"), "float64");
  if (shape_of(keep) != rshape)
    throw py::value_error("sample_weight must have one weight per " + std::string(item) + ", shape " +
                          shape_str(rshape) + "; got " + shape_str(shape_of(keep)));
  const double* w = static_cast<const double*>(keep.data());
  for (index_t r = 0; r < keep.size(); ++r)
    if (!(w[r] >= 0.0 && w[r] <= std::numeric_limits<double>::max()))
      throw py::value_error("sample_weight must be finite and non-negative");
  return w;
}

namespace {

// y_pred of a row-wise loss: its (rows, K) view, dtype, shape and the shape of its rows.
struct Prediction {
  RowView v;
  DType T;
  std::vector<index_t> shape, rshape;
};

Prediction prediction_rows(const py::object& x_obj, bool contiguous) {
  py::array x = as_real_array(x_obj, "y_pred");
  Prediction p{row_view(x, "y_pred", contiguous), dtype_of(x), shape_of(x), {}};
  p.rshape = leading(p.shape);
  return p;
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
  return numpy().attr("require")(given, "int64", "CA");  // C order and aligned
}

// class_weight (K,) as contiguous float64 (kept alive in `keep`), its sum in *total; null if None.
const double* class_weights(const py::object& obj, index_t K, py::array& keep, double* total) {
  *total = static_cast<double>(K);
  if (obj.is_none()) return nullptr;
  keep = numpy().attr("require")(obj, "float64", "CA");
  if (keep.ndim() != 1 || keep.shape(0) != K)
    throw py::value_error("class_weight must have one weight per class (" + std::to_string(K) +
                          "); got shape " + shape_str(shape_of(keep)));
  const double* w = static_cast<const double*>(keep.data());
  *total = 0.0;
  for (index_t k = 0; k < K; ++k) *total += w[k];
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

}  // namespace

RowCall plan_rows(const RowSpec& spec, const std::vector<double>& params, const py::object& target_obj,
                  const py::object& x_obj, const py::object& weight_obj, const py::object& extra_obj,
                  const py::object& class_weight_obj, const py::object& ignore_obj,
                  const std::string& reduction_name, bool want_grad, bool want_hess,
                  const py::object& out_obj, const py::object& grad_out_obj,
                  const py::object& hess_out_obj, bool contiguous) {
  if (params.size() != static_cast<size_t>(spec.params))
    throw py::value_error("this loss takes " + std::to_string(spec.params) + " parameters; got " +
                          std::to_string(params.size()));
  const Reduction reduction = parse_reduction(reduction_name);
  const Prediction pred = prediction_rows(x_obj, contiguous);
  const RowView& v = pred.v;
  const DType T = pred.T;
  const auto &xshape = pred.shape, &rshape = pred.rshape;

  RowJob job;
  job.rows = v.rows;
  job.K = v.K;
  job.x = v.array.data();
  job.x_stride = v.stride;
  job.params = params.data();

  py::array extra, labels, targets, cw, sw;
  if (spec.extra) {  // a second (..., K) input, e.g. the teacher's logits
    extra = as_real_array(extra_obj, spec.extra, T);
    if (shape_of(extra) != xshape)
      throw py::value_error(std::string(spec.extra) + " and y_pred must have the same shape; got " +
                            spec.extra + " " + shape_str(shape_of(extra)) + " and y_pred " +
                            shape_str(xshape));
    RowView ev = row_view(numpy().attr("asarray")(extra, numpy_dtype(T)), spec.extra, contiguous);
    extra = ev.array;
    job.extra = ev.array.data();
    job.extra_stride = ev.stride;
  }
  if (spec.target == RowTarget::rows) {
    targets = as_real_array(target_obj, "y_true", T);
    if (shape_of(targets) != xshape)
      throw py::value_error("y_true (target probabilities) and y_pred must have the same shape; got y_true " +
                            shape_str(shape_of(targets)) + " and y_pred " + shape_str(xshape));
    targets = numpy().attr("ascontiguousarray")(targets, numpy_dtype(T));
    job.targets = targets.data();
    job.targets_stride = v.K;
  } else if (spec.target == RowTarget::values) {
    targets = as_real_array(target_obj, "y_true", T);
    if (shape_of(targets) != rshape)
      throw py::value_error("y_true must have the shape of y_pred without its last axis " +
                            shape_str(rshape) + "; got " + shape_str(shape_of(targets)));
    targets = numpy().attr("ascontiguousarray")(targets, numpy_dtype(T));
    job.targets = targets.data();
    job.targets_stride = 1;
  } else if (!(spec.target == RowTarget::optional_labels && target_obj.is_none())) {
    labels = int_labels(target_obj, rshape);
    job.labels = static_cast<const std::int64_t*>(labels.data());
    if (!ignore_obj.is_none()) job.has_ignore = true, job.ignore_index = ignore_obj.cast<std::int64_t>();
  }
  if (spec.check)
    if (const char* error = spec.check(job)) throw py::value_error(error);
  job.class_weight = class_weights(class_weight_obj, v.K, cw, &job.class_weight_sum);
  job.sample_weight = row_weights(weight_obj, rshape, sw);
  // The mean's denominator: with labels, the summed weight of the rows that count (see
  // label_normalizer, which also checks the labels); else the summed sample weights.
  const double norm =
      job.labels ? label_normalizer(job.labels, v.rows, v.K, job.has_ignore ? &job.ignore_index : nullptr,
                                    job.sample_weight, spec.class_weight_normalizes ? job.class_weight : nullptr)
                 : row_weight_sum(job.sample_weight, v.rows);

  job.grad_stride = job.hess_stride = v.K;
  job.grad_scale = reduction == Reduction::mean ? (norm > 0 ? 1.0 / norm : 0.0) : 1.0;
  RowCall call{job, T, norm, {v.array, extra, labels, targets, cw, sw},
               CallOutputs(reduction, want_grad, want_hess, out_obj, grad_out_obj, hess_out_obj,
                           rshape, xshape, T, true)};
  call.outs.separate(call.keep, v.array);
  return call;
}

}  // namespace fastloss::bind
