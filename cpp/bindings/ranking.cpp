// Binding of the learning-to-rank losses over query groups (registry.hpp, FASTLOSS_RANKING_LOSSES):
// flat scores and labels, group boundaries as offsets, one sample weight per group; the kernels run
// on the row driver with one ragged row per group.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "../cpu/kernels.hpp"
#include "../losses/ranking.hpp"
#include "arrays.hpp"

namespace py = pybind11;

namespace fastloss::bind {
namespace {

// ValueError for the first label (y_true, contiguous, of dtype T) that is not finite.
void check_finite_labels(const py::array& y, DType T) {
  const index_t n = y.size();
  auto finite = [&](auto* v) {
    bool bad = false;  // one pass without branches; the position only when one is bad
    for (index_t i = 0; i < n; ++i) bad |= !(v[i] - v[i] == 0);
    for (index_t i = 0; bad && i < n; ++i)
      if (!(v[i] - v[i] == 0))
        throw py::value_error("y_true[" + std::to_string(i) + "] = " + std::to_string(double(v[i])) +
                              " is not a finite relevance label");
  };
  if (T == DType::f32) finite(static_cast<const float*>(y.data()));
  else finite(static_cast<const double*>(y.data()));
}

// One call of a ranking loss: y_true and y_pred (n,), offsets (groups + 1,) int64 from 0 to n,
// non-decreasing (checked by the Python side; checked again here so that no call can read out of
// bounds). Returns CallOutputs::result: the per-group values for reduction="none". Without
// want_value (a booster reads only the derivatives) the returned sum may be 0.
py::tuple groupwise(int loss, const std::vector<double>& params, const py::object& y_true_obj,
                    const py::object& y_pred_obj, const py::object& offsets_obj,
                    const py::object& weight_obj, const std::string& reduction_name, bool want_grad,
                    bool want_hess, const py::object& out, const py::object& grad_out,
                    const py::object& hess_out, bool want_value, const py::object& group_data) {
  if (loss < 0 || loss >= kNumRank || loss == int(RankId::margin_ranking))
    throw py::value_error("unknown ranking loss id");
  const Reduction reduction = parse_reduction(reduction_name);
  py::array x = as_real_array(y_pred_obj, "y_pred");
  const DType T = dtype_of(x);
  if (x.ndim() != 1) throw py::value_error("y_pred must be 1-D (one score per document); got shape " +
                                           shape_str(shape_of(x)));
  const index_t n = x.size();
  x = numpy().attr("ascontiguousarray")(x);
  py::array y = as_real_array(y_true_obj, "y_true", T);
  if (shape_of(y) != shape_of(x))
    throw py::value_error("y_true and y_pred must have the same shape; got y_true " +
                          shape_str(shape_of(y)) + " and y_pred " + shape_str(shape_of(x)));
  y = numpy().attr("ascontiguousarray")(y, numpy_dtype(T));
  py::array off = numpy().attr("ascontiguousarray")(offsets_obj, "int64");
  if (off.ndim() != 1 || off.size() < 1) throw py::value_error("group offsets must be a 1-D array");
  const auto* o = static_cast<const std::int64_t*>(off.data());
  const index_t groups = off.size() - 1;
  index_t K = 0;
  if (o[0] != 0 || o[groups] != n) throw py::value_error("group sizes must sum to len(y_pred)");
  for (index_t r = 0; r < groups; ++r) {
    if (o[r + 1] < o[r]) throw py::value_error("group sizes must be non-negative");
    K = o[r + 1] - o[r] > K ? o[r + 1] - o[r] : K;
  }
  // Labels prepared once for a booster's rounds (group_data given) were checked then.
  if (group_data.is_none()) check_finite_labels(y, T);

  RowJob job;
  job.rows = groups;
  job.K = K;
  job.x = x.data();
  job.x_stride = 0;
  job.targets = y.data();
  job.offsets = o;
  job.params = params.data();
  py::array sw;
  job.sample_weight = row_weights(weight_obj, {groups}, sw, "group");
  const double norm = row_weight_sum(job.sample_weight, groups);
  job.grad_scale = reduction == Reduction::mean ? (norm > 0 ? 1.0 / norm : 0.0) : 1.0;
  CallOutputs outs(reduction, want_grad, want_hess, out, grad_out, hess_out, {groups}, {n}, T, true);
  py::array per_group;
  if (!group_data.is_none()) {
    if (loss != int(RankId::lambda_rank)) throw py::value_error("group_data is for lambda_rank only");
    per_group = numpy().attr("ascontiguousarray")(group_data, "float64");
    if (per_group.ndim() != 1 || per_group.size() != groups)
      throw py::value_error("group_data must hold one value per group");
    job.extra = per_group.data();
  }
  job.threads = get_num_threads();
  job.want_value = want_value || reduction == Reduction::none;
  if (reduction == Reduction::none) job.loss_out = outs.values.view().ptr;
  if (outs.grad) job.grad_out = outs.gradient.view().ptr;
  if (outs.hess) job.hess_out = outs.hessian.view().ptr;
  double total = 0.0;
  if (groups > 0) {
    const RowFn fn = kernels().ranking[loss][T == DType::f32 ? 0 : 1];
    py::gil_scoped_release nogil;
    total = fn(job);
  }
  outs.finish();
  return outs.result(total, norm);
}

// One call of the margin ranking loss on pairs (y_true, x1, x2) of one shape, labels -1 or +1, one
// weight per pair, computed in x1's and x2's common dtype. Returns CallOutputs::result with the
// gradient for x1 (the one for x2 is its negative, formed by the caller).
py::tuple margin_ranking(const std::vector<double>& params, const py::object& y_true_obj,
                         const py::object& x1_obj, const py::object& x2_obj,
                         const py::object& weight_obj, const std::string& reduction_name,
                         bool want_grad) {
  const Reduction reduction = parse_reduction(reduction_name);
  py::array x1 = as_real_array(x1_obj, "x1"), x2 = as_real_array(x2_obj, "x2");
  const DType T = dtype_of(x1) == DType::f64 || dtype_of(x2) == DType::f64 ? DType::f64 : DType::f32;
  py::array y = as_real_array(y_true_obj, "y_true", T);
  const auto shape = shape_of(x1);
  if (shape_of(x2) != shape || shape_of(y) != shape)
    throw py::value_error("y_true, x1 and x2 must have the same shape; got y_true " +
                          shape_str(shape_of(y)) + ", x1 " + shape_str(shape) + " and x2 " +
                          shape_str(shape_of(x2)));
  const py::dtype dt = numpy_dtype(T);
  x1 = numpy().attr("ascontiguousarray")(x1, dt);
  x2 = numpy().attr("ascontiguousarray")(x2, dt);
  y = numpy().attr("ascontiguousarray")(y, dt);
  const index_t n = x1.size();
  auto labels = [&](auto* v) {
    bool bad = false;  // one pass without branches; the position only when one is bad
    for (index_t i = 0; i < n; ++i) bad |= !(std::fabs(v[i]) == 1);
    for (index_t i = 0; bad && i < n; ++i)
      if (!(std::fabs(v[i]) == 1))
        throw py::value_error("y_true must hold 1 or -1; y_true.flat[" + std::to_string(i) +
                              "] = " + py::repr(py::float_(double(v[i]))).cast<std::string>());
  };
  if (T == DType::f32) labels(static_cast<const float*>(y.data()));
  else labels(static_cast<const double*>(y.data()));

  RowJob job;
  job.rows = n;
  job.K = 1;
  job.x = x1.data();
  job.targets = y.data();
  job.extra = x2.data();
  job.params = params.data();
  py::array sw;
  job.sample_weight = row_weights(weight_obj, shape, sw, "pair");
  const double norm = job.sample_weight ? row_weight_sum(job.sample_weight, n) : double(n);
  if (reduction == Reduction::mean && job.sample_weight && n > 0 && !(norm > 0))
    throw py::value_error("sample_weight sums to zero: the weighted mean is undefined");
  job.grad_scale = reduction == Reduction::mean && norm > 0 ? 1.0 / norm : 1.0;
  CallOutputs outs(reduction, want_grad, false, py::none(), py::none(), py::none(), shape, shape, T, true);
  job.threads = get_num_threads();
  if (reduction == Reduction::none) job.loss_out = outs.values.view().ptr;
  if (outs.grad) job.grad_out = outs.gradient.view().ptr;
  double total = 0.0;
  if (n > 0) {
    const RowFn fn = kernels().ranking[int(RankId::margin_ranking)][T == DType::f32 ? 0 : 1];
    py::gil_scoped_release nogil;
    total = fn(job);
  }
  return outs.result(total, norm);
}

// 1 / maxDCG@k (0 where maxDCG is 0) of each group of the labels y_true (float64; checked
// finite here, non-negative and below 1024 by the caller) bounded by offsets (checked here): what
// LambdaRank's kernel takes as group_data.
py::array_t<double> lambda_rank_inverse_max_dcg(double k, const py::object& y_true_obj,
                                                const py::object& offsets_obj) {
  py::array y = numpy().attr("ascontiguousarray")(y_true_obj, "float64");
  check_finite_labels(y, DType::f64);
  py::array off = numpy().attr("ascontiguousarray")(offsets_obj, "int64");
  const auto* o = static_cast<const std::int64_t*>(off.data());
  const index_t groups = off.ndim() == 1 ? off.size() - 1 : -1;
  if (y.ndim() != 1 || groups < 0 || o[0] != 0 || o[groups] != y.size())
    throw py::value_error("group offsets must run from 0 to len(y_true)");
  index_t K = 0;
  for (index_t r = 0; r < groups; ++r) {
    if (o[r + 1] < o[r]) throw py::value_error("group sizes must be non-negative");
    K = std::max<index_t>(K, o[r + 1] - o[r]);
  }
  py::array_t<double> out(groups);
  double* inv = out.mutable_data();
  const double* labels = static_cast<const double*>(y.data());
  {
    py::gil_scoped_release nogil;
    std::vector<double> tmp(std::size_t(K) + 1);
    using Body = losses::LambdaRank<double>;
    for (index_t r = 0; r < groups; ++r) {
      const index_t m = o[r + 1] - o[r];
      inv[r] = Body::inverse_max_dcg(labels + o[r], m, k > 0 ? index_t(k) : m, tmp.data());
    }
  }
  return out;
}

}  // namespace

void bind_ranking(py::module_& m) {
  py::dict ids;
#define FL_ID(name, Body) ids[#name] = static_cast<int>(RankId::name);
  FASTLOSS_RANKING_LOSSES(FL_ID)
#undef FL_ID
  m.attr("ranking_kernels") = ids;
  m.def("groupwise", &groupwise, py::arg("loss"), py::arg("params"), py::arg("y_true"),
        py::arg("y_pred"), py::arg("offsets"), py::arg("sample_weight"), py::arg("reduction"),
        py::arg("want_grad"), py::arg("want_hess"), py::arg("out"), py::arg("grad_out"),
        py::arg("hess_out"), py::arg("want_value") = true, py::arg("group_data") = py::none());
  m.def("lambda_rank_inverse_max_dcg", &lambda_rank_inverse_max_dcg, py::arg("k"), py::arg("y_true"),
        py::arg("offsets"));
  m.def("margin_ranking", &margin_ranking, py::arg("params"), py::arg("y_true"), py::arg("x1"),
        py::arg("x2"), py::arg("sample_weight"), py::arg("reduction"), py::arg("want_grad"));
}

}  // namespace fastloss::bind
