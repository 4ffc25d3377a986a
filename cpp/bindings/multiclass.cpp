// Binding of the row-wise losses on a class axis (one generic binder for every loss of
// FASTLOSS_ROW_LOSSES) and of row-wise logsumexp / softmax / log_softmax.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>

#include "../cpu/kernels.hpp"
#include "arrays.hpp"

namespace py = pybind11;

namespace fastloss::bind {
namespace {

// False: the row-wise kernels compute every row one at a time, also where they would take blocks
// of rows across the vector lanes (RowJob::row_blocks): the reference of the tests that check
// that both give the same bits. Set by the private _core._set_row_blocks.
bool row_blocks = true;

// One call of a row-wise loss (registry.hpp, FASTLOSS_ROW_LOSSES): the loss's RowSpec says what
// y_true is, which second input it reads and how its mean is normalized. Returns the
// (total, norm, values, grad, hess) of CallOutputs::result; an empty mean (every row ignored or
// weightless) has norm 0 and a zero gradient.
py::tuple rowwise(int loss, const std::vector<double>& params, const py::object& y_true,
                  const py::object& y_pred, const py::object& sample_weight, const py::object& extra,
                  const py::object& class_weight, const py::object& ignore_index,
                  const std::string& reduction, bool want_grad, bool want_hess,
                  const py::object& out, const py::object& grad_out, const py::object& hess_out) {
  if (loss < 0 || loss >= kNumRow) throw py::value_error("unknown row-wise loss id");
  const KernelTable& table = kernels();
  RowCall call = plan_rows(table.row_spec[loss], params, y_true, y_pred, sample_weight, extra,
                           class_weight, ignore_index, reduction, want_grad, want_hess, out,
                           grad_out, hess_out, false);
  RowJob& job = call.job;
  CallOutputs& outs = call.outs;
  job.threads = get_num_threads();
  job.row_blocks = row_blocks;
  if (outs.reduction == Reduction::none) job.loss_out = outs.values.view().ptr;
  if (outs.grad) job.grad_out = outs.gradient.view().ptr;
  if (outs.hess) job.hess_out = outs.hessian.view().ptr;
  double total = 0.0;
  if (job.rows > 0) {
    const RowFn fn = table.rowwise[loss][call.dtype == DType::f32 ? 0 : 1];
    NoGil nogil;
    total = fn(job);
  }
  outs.finish();
  return outs.result(total, call.norm);
}

py::array softmax(const py::object& x_obj, int mode) {
  if (mode < 0 || mode >= static_cast<int>(SoftmaxMode::count)) throw py::value_error("unknown softmax mode");
  py::array x = as_real_array(x_obj, "x");
  const DType T = dtype_of(x);
  RowView v = row_view(x, "x", false);
  const auto shape = shape_of(x);
  py::array out = fresh_array(numpy_dtype(T), mode == 0 ? leading(shape) : shape);
  const SoftmaxFn fn = kernels().softmax[T == DType::f32 ? 0 : 1];
  const void* src = v.array.data();
  void* dst = out.mutable_data();
  const int threads = get_num_threads();
  {
    NoGil nogil;
    fn(static_cast<SoftmaxMode>(mode), src, v.stride, v.rows, v.K, dst, threads);
  }
  return out;
}

}  // namespace

void bind_multiclass(py::module_& m) {
  py::dict ids;
#define FL_ID(name, Body) ids[#name] = static_cast<int>(RowId::name);
  FASTLOSS_ROW_LOSSES(FL_ID)
#undef FL_ID
  m.attr("row_kernels") = ids;
  m.def("rowwise", &rowwise, py::arg("loss"), py::arg("params"), py::arg("y_true"), py::arg("y_pred"),
        py::arg("sample_weight"), py::arg("extra"), py::arg("class_weight"), py::arg("ignore_index"),
        py::arg("reduction"), py::arg("want_grad"), py::arg("want_hess"), py::arg("out"),
        py::arg("grad_out"), py::arg("hess_out"));
  m.def("_set_row_blocks", [](bool on) { return std::exchange(row_blocks, on); }, py::arg("on"),
        "Blocks of rows across the vector lanes on (the default) or off; returns the previous setting.");
  m.def("softmax", &softmax, py::arg("x"), py::arg("mode"),
        "row-wise over the last axis: 0 logsumexp, 1 softmax, 2 log_softmax");
}

}  // namespace fastloss::bind
