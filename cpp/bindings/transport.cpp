// Binding of the optimal transport kernels. python/fastloss/transport.py validates the user's
// arguments (weights, shapes, epsilon) and hands over C-contiguous arrays of one float dtype; the
// checks here only keep a wrong internal call from reading out of bounds.
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

// `obj` must be a C-contiguous array of `dtype` with `shape`; returns it.
py::array expect(const py::object& obj, const char* name, const py::dtype& dtype,
                 const std::vector<index_t>& shape) {
  py::array a = py::reinterpret_borrow<py::array>(obj);
  if (!py::isinstance<py::array>(obj) || !a.dtype().is(dtype) ||
      !(a.flags() & py::array::c_style) || shape_of(a) != shape)
    throw py::value_error(std::string("internal: ") + name + " must be a C-contiguous " +
                          py::str(dtype).cast<std::string>() + " array of shape " + shape_str(shape));
  return a;
}

const void* optional(const py::object& obj, const char* name, const py::dtype& dtype,
                     const std::vector<index_t>& shape) {
  return obj.is_none() ? nullptr : expect(obj, name, dtype, shape).data();
}

py::tuple wasserstein_1d(const py::array& u, const py::array& v, const py::object& u_order,
                         const py::object& v_order, const py::object& u_w, const py::object& v_w,
                         const py::object& u_inv_sum, const py::object& v_inv_sum, double p,
                         double grad_scale, bool want_grad, bool want_hess) {
  if (u.ndim() != 2 || v.ndim() != 2 || u.shape(0) != v.shape(0))
    throw py::value_error("internal: u and v must be (rows, n) and (rows, m)");
  const py::dtype dt = u.dtype();
  const DType T = dtype_of(u);
  const index_t rows = u.shape(0), n = u.shape(1), m = v.shape(1);
  expect(u, "u", dt, {rows, n});
  expect(v, "v", dt, {rows, m});
  const py::dtype i64 = py::dtype::of<std::int64_t>(), f64 = py::dtype::of<double>();
  Wasserstein1dJob job;
  job.rows = rows, job.n = n, job.m = m, job.p = p;
  job.u = u.data(), job.v = v.data();
  job.u_order = static_cast<const std::int64_t*>(optional(u_order, "u_order", i64, {rows, n}));
  job.v_order = static_cast<const std::int64_t*>(optional(v_order, "v_order", i64, {rows, m}));
  auto weights = [&](const py::object& w, const py::object& inv, index_t len, const char* name,
                     const double** ptr, index_t* stride, const double** inv_ptr) {
    if (w.is_none()) return;
    py::array a = py::reinterpret_borrow<py::array>(w);
    const bool shared = a.ndim() == 1;
    *ptr = static_cast<const double*>(
        expect(w, name, f64, shared ? std::vector<index_t>{len} : std::vector<index_t>{rows, len}).data());
    *stride = shared ? 0 : len;
    *inv_ptr = static_cast<const double*>(expect(inv, "inv_sum", f64, {rows}).data());
  };
  weights(u_w, u_inv_sum, n, "u_weights", &job.u_w, &job.u_w_stride, &job.u_inv_sum);
  weights(v_w, v_inv_sum, m, "v_weights", &job.v_w, &job.v_w_stride, &job.v_inv_sum);
  if (n < 1 || m < 1) throw py::value_error("internal: empty distribution");
  py::array_t<double> values(rows);
  py::object grad = py::none(), hess = py::none();
  if (want_grad) grad = fresh_array(dt, {rows, m});
  if (want_hess) hess = fresh_array(dt, {rows, m});
  job.values = values.mutable_data();
  job.grad_out = want_grad ? py::reinterpret_borrow<py::array>(grad).mutable_data() : nullptr;
  job.hess_out = want_hess ? py::reinterpret_borrow<py::array>(hess).mutable_data() : nullptr;
  job.grad_scale = grad_scale;
  job.threads = get_num_threads();
  const Wasserstein1dFn fn = kernels().wasserstein_1d[T == DType::f32 ? 0 : 1];
  {
    NoGil nogil;
    fn(job);
  }
  return py::make_tuple(values, grad, hess);
}

// Returns (cost <P, C>, objective, f, g, iterations, error, plan | None, grad_x | None,
// grad_y | None). `a`, `b` are normalized float64 weights; `cost` (n, m) or points x (n, d), y (m, d).
py::tuple sinkhorn(const py::object& cost, const py::object& x, const py::object& y,
                   const py::array_t<double, py::array::c_style | py::array::forcecast>& a,
                   const py::array_t<double, py::array::c_style | py::array::forcecast>& b,
                   double eps, int max_iter, double tol, bool want_plan, bool want_grad) {
  const index_t n = a.size(), m = b.size();
  if (n < 1 || m < 1) throw py::value_error("internal: empty distribution");
  if (!(eps > 0) || max_iter < 1) throw py::value_error("internal: eps > 0 and max_iter >= 1");
  SinkhornJob job;
  job.n = n, job.m = m;
  py::array C, Ct;
  py::dtype dt;
  const bool points = cost.is_none();
  if (points) {
    py::array xa = py::reinterpret_borrow<py::array>(x);
    dt = xa.dtype();
    if (xa.ndim() != 2) throw py::value_error("internal: x must be (n, d)");
    job.d = xa.shape(1);
    job.x = expect(x, "x", dt, {n, job.d}).data();
    job.y = expect(y, "y", dt, {m, job.d}).data();
    C = fresh_array(dt, {n, m});
    if (want_grad) Ct = fresh_array(dt, {m, n});  // grad_y reads the plan by columns
  } else {
    C = py::reinterpret_borrow<py::array>(cost);
    dt = C.dtype();
    expect(cost, "cost", dt, {n, m});
  }
  const DType T = dtype_of(C);
  const int f = T == DType::f32 ? 0 : 1;
  std::vector<double> log_a(n), log_b(m), F(n, 0.0), G(m, 0.0), u(n), v(m);
  py::array K = fresh_array(dt, {n, m});
  for (index_t i = 0; i < n; ++i) log_a[i] = std::log(a.data()[i]);
  for (index_t j = 0; j < m; ++j) log_b[j] = std::log(b.data()[j]);
  job.a = a.data(), job.b = b.data(), job.log_a = log_a.data(), job.log_b = log_b.data();
  job.inv_eps = 1.0 / eps;
  job.F = F.data(), job.G = G.data(), job.K = K.mutable_data(), job.u = u.data(), job.v = v.data();
  job.max_iter = max_iter, job.tol = tol;
  job.threads = get_num_threads();
  py::object plan = py::none(), gx = py::none(), gy = py::none();
  if (want_plan) plan = fresh_array(dt, {n, m});
  if (want_grad && points) gx = fresh_array(dt, {n, job.d}), gy = fresh_array(dt, {m, job.d});
  auto data = [](const py::object& o) {
    return o.is_none() ? nullptr : py::reinterpret_borrow<py::array>(o).mutable_data();
  };
  job.plan_out = data(plan), job.grad_x = data(gx), job.grad_y = data(gy);
  double transport_cost;
  void* c_out = points ? C.mutable_data() : nullptr;
  void* ct_out = points && want_grad ? Ct.mutable_data() : nullptr;
  job.C = C.data(), job.Ct = ct_out;
  {
    NoGil nogil;
    if (points) kernels().sq_euclidean[f](job.x, job.y, n, m, job.d, c_out, ct_out, job.threads);
    kernels().sinkhorn_iterate[f](job);
    transport_cost = kernels().sinkhorn_finish[f](job);
  }
  // The dual value <a, f> + <b, g>: the entropic objective at convergence.
  py::array_t<double> fa(n), ga(m);
  double objective = 0.0;
  for (index_t i = 0; i < n; ++i) fa.mutable_data()[i] = eps * F[i], objective += a.data()[i] * F[i];
  for (index_t j = 0; j < m; ++j) ga.mutable_data()[j] = eps * G[j], objective += b.data()[j] * G[j];
  return py::make_tuple(transport_cost, eps * objective, fa, ga, job.iterations, job.error, plan,
                        gx, gy);
}

}  // namespace

void bind_transport(py::module_& m) {
  m.def("wasserstein_1d", &wasserstein_1d, py::arg("u"), py::arg("v"), py::arg("u_order"),
        py::arg("v_order"), py::arg("u_weights"), py::arg("v_weights"), py::arg("u_inv_sum"),
        py::arg("v_inv_sum"), py::arg("p"), py::arg("grad_scale"), py::arg("want_grad"),
        py::arg("want_hess"));
  m.def("sinkhorn", &sinkhorn, py::arg("cost"), py::arg("x"), py::arg("y"), py::arg("a"),
        py::arg("b"), py::arg("epsilon"), py::arg("max_iter"), py::arg("tol"), py::arg("want_plan"),
        py::arg("want_grad"));
}

}  // namespace fastloss::bind
