// Binding of the Cox partial likelihood and the concordance index. python/fastloss/survival.py
// validates events and weights and hands them over as C-contiguous uint8 / float64 arrays; the
// times are checked here, by the kernel's first pass, before any output is written.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <string>
#include <vector>

#include "../cpu/kernels.hpp"
#include "arrays.hpp"

namespace py = pybind11;

namespace fastloss::bind {
namespace {

// `obj` (None, or a C-contiguous array of `dtype` and n elements) as a pointer.
template <class V>
const V* internal_array(const py::object& obj, const char* name, index_t n) {
  if (obj.is_none()) return nullptr;
  py::array a = py::reinterpret_borrow<py::array>(obj);
  if (!py::isinstance<py::array>(obj) || !a.dtype().is(py::dtype::of<V>()) ||
      !(a.flags() & py::array::c_style) || a.size() != n)
    throw py::value_error(std::string("internal: ") + name + " must be a C-contiguous array of " +
                          std::to_string(n) + " elements");
  return static_cast<const V*>(a.data());
}

// The message for the first invalid time: NaN, or negative with event= given.
std::string time_error(const py::array& y_true, index_t i) {
  const double t = y_true.attr("reshape")(-1).attr("__getitem__")(i).cast<double>();
  const std::string where = "y_true[" + std::to_string(i) + "] = ";
  if (std::isnan(t)) return "y_true must not hold NaN; " + where + "nan";
  return "y_true must hold non-negative times when event= is given (a negative time marks "
         "censoring only without event=); " + where + py::str(py::float_(t)).cast<std::string>();
}

py::tuple cox(bool efron, const py::object& y_true_obj, const py::object& y_pred_obj,
              const py::object& weight_obj, const py::object& event_obj,
              const std::string& reduction_name, bool want_grad, bool want_hess,
              const py::object& out_obj, const py::object& grad_out_obj,
              const py::object& hess_out_obj) {
  const Reduction reduction = parse_reduction(reduction_name);
  py::array y_pred = as_real_array(y_pred_obj, "y_pred");
  const DType T = dtype_of(y_pred);
  py::array y_true = as_real_array(y_true_obj, "y_true");
  const auto pshape = shape_of(y_pred), tshape = shape_of(y_true);
  if (pshape.size() != 1)
    throw py::value_error("y_pred must be 1-D (one log hazard ratio per sample); got shape " +
                          shape_str(pshape));
  if (tshape != pshape)
    throw py::value_error("y_true and y_pred must have the same shape; got y_true " +
                          shape_str(tshape) + " and y_pred " + shape_str(pshape));
  const index_t n = y_pred.size();
  std::vector<py::object> keep;
  CoxJob job;
  job.n = n;
  job.efron = efron;
  job.mean = reduction == Reduction::mean;
  job.threads = get_num_threads();
  const Input pred = flat_input(y_pred, Bcast::full, 1, keep);
  const Input time = flat_input(y_true, Bcast::full, 1, keep);
  job.pred = pred.ptr, job.pred_stride = pred.stride;
  job.time = time.ptr, job.time_dtype = time.dtype, job.time_stride = time.stride;
  job.weight = internal_array<double>(weight_obj, "sample_weight", n);
  job.event = internal_array<std::uint8_t>(event_obj, "event", n);

  CallOutputs outs(reduction, want_grad, want_hess, out_obj, grad_out_obj, hess_out_obj, pshape,
                   pshape, T, false);
  if (reduction == Reduction::none) job.loss_out = outs.values.view();
  if (outs.grad) job.grad_out = outs.gradient.view();
  if (outs.hess) job.hess_out = outs.hessian.view();
  if (n > 0) {
    const CoxFn fn = kernels().cox[T == DType::f32 ? 0 : 1];
    py::gil_scoped_release nogil;
    fn(job);
  }
  if (job.bad >= 0) throw py::value_error(time_error(y_true, job.bad));
  outs.finish();
  return outs.result(job.total, job.norm);
}

py::tuple concordance(const py::object& time_obj, const py::object& event_obj,
                      const py::object& risk_obj) {
  const index_t n = py::reinterpret_borrow<py::array>(time_obj).size();
  ConcordanceJob job;
  job.n = n;
  job.time = internal_array<double>(time_obj, "time", n);
  job.event = internal_array<std::uint8_t>(event_obj, "event", n);
  job.risk = internal_array<double>(risk_obj, "risk", n);
  if (!job.time || !job.event || !job.risk) throw py::value_error("internal: missing array");
  {
    py::gil_scoped_release nogil;
    kernels().concordance(job);
  }
  return py::make_tuple(job.concordant, job.tied, job.comparable);
}

}  // namespace

void bind_survival(py::module_& m) {
  m.def("cox", &cox, py::arg("efron"), py::arg("y_true"), py::arg("y_pred"),
        py::arg("sample_weight"), py::arg("event"), py::arg("reduction"), py::arg("want_grad"),
        py::arg("want_hess"), py::arg("out"), py::arg("grad_out"), py::arg("hess_out"));
  m.def("concordance", &concordance, py::arg("time"), py::arg("event"), py::arg("risk"),
        "(concordant, tied, comparable) pair counts of Harrell's concordance index");
}

}  // namespace fastloss::bind
