// Binding of the similarity kernels. The Python layer (fastloss/similarity.py) validates the user's
// arguments and prepares contiguous arrays; these functions check what the kernels rely on (dtype,
// contiguity, shapes) so that a misuse of the private API is an error, never a crash.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "../cpu/kernels.hpp"
#include "arrays.hpp"

namespace py = pybind11;

namespace fastloss::bind {
namespace {

// 0 for float32, 1 for float64 (the kernel table's index).
int dtype_index(const py::array& x, const char* name) {
  if (x.dtype().is(py::dtype::of<float>())) return 0;
  if (x.dtype().is(py::dtype::of<double>())) return 1;
  throw py::type_error(std::string(name) + " must be float32 or float64");
}

// `a` has dtype `dt`, is C-contiguous (writeable when asked) and has shape `shape`.
template <class A>
void need(const A& a, const char* name, const py::dtype& dt, const std::vector<index_t>& shape,
          bool writeable = false) {
  if (!a.dtype().is(dt)) throw py::type_error(std::string(name) + ": wrong dtype");
  if (!(a.flags() & py::array::c_style)) throw py::value_error(std::string(name) + " must be C-contiguous");
  if (writeable && !a.writeable()) throw py::value_error(std::string(name) + " must be writeable");
  if (shape_of(a) != shape)
    throw py::value_error(std::string(name) + " must have shape " + shape_str(shape) + "; got " +
                          shape_str(shape_of(a)));
}

const SimilarityKernels& table(int t) { return kernels().similarity[t]; }
const py::dtype f64() { return py::dtype::of<double>(); }
const py::dtype i64() { return py::dtype::of<std::int64_t>(); }
template <class T>
T* data(py::array& a) { return static_cast<T*>(a.mutable_data()); }
template <class T>
const T* cdata(const py::object& o) {
  return o.is_none() ? nullptr : static_cast<const T*>(py::reinterpret_borrow<py::array>(o).data());
}

py::tuple row_norms(const py::array& x, double eps, bool want_xhat) {
  const int t = dtype_index(x, "x");
  if (x.ndim() != 2) throw py::value_error("x must be 2-D");
  const index_t n = x.shape(0), d = x.shape(1);
  need(x, "x", x.dtype(), {n, d});
  py::array sqn(f64(), std::vector<index_t>{n});
  py::object xhat = py::none();
  void* xh = nullptr;
  if (want_xhat) {
    py::array a = fresh_array(x.dtype(), {n, d});
    xh = a.mutable_data(), xhat = a;
  }
  double* s = data<double>(sqn);
  const void* src = x.data();
  const int threads = get_num_threads();
  {
    NoGil nogil;
    table(t).row_norms(src, n, d, eps, s, xh, threads);
  }
  return py::make_tuple(sqn, xhat);
}

void dist_from_gram(py::array g, const py::object& nx, const py::object& ny, int metric, bool self) {
  const int t = dtype_index(g, "gram");
  if (g.ndim() != 2) throw py::value_error("gram must be 2-D");
  const index_t rows = g.shape(0), cols = g.shape(1);
  need(g, "gram", g.dtype(), {rows, cols}, true);
  if (metric != kCosine) {
    need(py::reinterpret_borrow<py::array>(nx), "nx", f64(), {rows});
    need(py::reinterpret_borrow<py::array>(ny), "ny", f64(), {cols});
  }
  void* p = g.mutable_data();
  const double *a = cdata<double>(nx), *b = cdata<double>(ny);
  const int threads = get_num_threads();
  NoGil nogil;
  table(t).dist_from_gram(p, rows, cols, a, b, metric, self, threads);
}

py::tuple mine(const py::array& gram, const py::object& sqn, const py::array& labels,
               const py::array& class_count, int metric, int mode, std::uint64_t seed,
               const py::object& offset, double margin, bool soft) {
  const int t = dtype_index(gram, "gram");
  const index_t n = gram.ndim() == 2 ? gram.shape(0) : -1;
  need(gram, "gram", gram.dtype(), {n, n});
  need(labels, "labels", i64(), {n});
  const index_t K = class_count.ndim() == 1 ? class_count.shape(0) : -1;
  need(class_count, "class_count", i64(), {K});
  const auto* y = static_cast<const std::int64_t*>(labels.data());
  for (index_t i = 0; i < n; ++i)
    if (y[i] < 0 || y[i] >= K) throw py::value_error("labels must be class ids in [0, K)");
  if (metric != kCosine) need(py::reinterpret_borrow<py::array>(sqn), "sqn", f64(), {n});
  MineJob job;
  job.n = n, job.gram = gram.data(), job.sqn = metric != kCosine ? cdata<double>(sqn) : nullptr;
  job.labels = y, job.class_count = static_cast<const std::int64_t*>(class_count.data());
  job.metric = metric, job.mode = mode, job.seed = seed, job.margin = margin, job.soft = soft;
  // Rows grouped by class, each group in index order (a stable counting sort).
  std::vector<std::int64_t> start(K + 1, 0), members(n);
  for (index_t i = 0; i < n; ++i) ++start[y[i] + 1];
  for (index_t k = 0; k < K; ++k) start[k + 1] += start[k];
  if (start[K] != n) throw py::value_error("class_count does not match labels");
  {
    std::vector<std::int64_t> fill(start.begin(), start.end() - 1);
    for (index_t i = 0; i < n; ++i) members[fill[y[i]]++] = i;
  }
  for (index_t k = 0; k < K; ++k)
    if (start[k + 1] - start[k] != job.class_count[k]) throw py::value_error("class_count does not match labels");
  job.members = members.data(), job.class_start = start.data();
  job.threads = get_num_threads();
  py::tuple result;
  if (mode == kMineAll) {
    py::array loss(f64(), std::vector<index_t>{n}), count(f64(), std::vector<index_t>{n}),
        coef(f64(), std::vector<index_t>{n, n});
    job.loss_sum = data<double>(loss), job.count = data<double>(count), job.coef = data<double>(coef);
    result = py::make_tuple(loss, count, coef);
  } else {
    if (mode < kMineHard || mode > kMineRandom) throw py::value_error("unknown mining mode");
    const auto off = py::reinterpret_borrow<py::array>(offset);
    need(off, "offset", i64(), {n + 1});
    job.offset = static_cast<const std::int64_t*>(off.data());
    const index_t m = job.offset[n];
    py::array a(i64(), std::vector<index_t>{m}), p(i64(), std::vector<index_t>{m}),
        q(i64(), std::vector<index_t>{m}), dap(f64(), std::vector<index_t>{m}),
        dan(f64(), std::vector<index_t>{m});
    job.anchor = data<std::int64_t>(a), job.pos = data<std::int64_t>(p), job.neg = data<std::int64_t>(q);
    job.d_ap = data<double>(dap), job.d_an = data<double>(dan);
    result = py::make_tuple(a, p, q, dap, dan);
  }
  {
    NoGil nogil;
    table(t).mine(job);
  }
  return result;
}

py::array pair_grad(const py::array& x, const py::object& sqn, int metric, double eps,
                    const py::array& i, const py::array& j, const py::array& dist,
                    const py::array& coef) {
  const int t = dtype_index(x, "x");
  const index_t n = x.ndim() == 2 ? x.shape(0) : -1, d = x.ndim() == 2 ? x.shape(1) : -1;
  need(x, "x", x.dtype(), {n, d});
  const index_t m = i.ndim() == 1 ? i.shape(0) : -1;
  need(i, "i", i64(), {m}), need(j, "j", i64(), {m}), need(dist, "dist", f64(), {m});
  need(coef, "coef", f64(), {m});
  if (metric == kCosine) need(py::reinterpret_borrow<py::array>(sqn), "sqn", f64(), {n});
  PairGradJob job;
  job.n = n, job.d = d, job.m = m, job.x = x.data(), job.sqn = cdata<double>(sqn);
  job.metric = metric, job.eps = eps;
  job.i = static_cast<const std::int64_t*>(i.data()), job.j = static_cast<const std::int64_t*>(j.data());
  for (index_t e = 0; e < m; ++e)
    if (job.i[e] < 0 || job.i[e] >= n || job.j[e] < 0 || job.j[e] >= n)
      throw py::value_error("pair index out of range");
  job.dist = static_cast<const double*>(dist.data()), job.coef = static_cast<const double*>(coef.data());
  py::array grad = fresh_array(x.dtype(), {n, d});
  job.grad = grad.mutable_data(), job.threads = get_num_threads();
  {
    NoGil nogil;
    table(t).pair_grad(job);
  }
  return grad;
}

void normalize_backward(py::array g, const py::array& xhat, const py::array& sqn, double eps) {
  const int t = dtype_index(g, "g");
  const index_t n = g.ndim() == 2 ? g.shape(0) : -1, d = g.ndim() == 2 ? g.shape(1) : -1;
  need(g, "g", g.dtype(), {n, d}, true);
  need(xhat, "xhat", g.dtype(), {n, d});
  need(sqn, "sqn", f64(), {n});
  void* gp = g.mutable_data();
  const void* xp = xhat.data();
  const double* sp = static_cast<const double*>(sqn.data());
  const int threads = get_num_threads();
  NoGil nogil;
  table(t).normalize_backward(gp, xp, sp, n, d, eps, threads);
}

py::array paired_distance(const py::array& a, const py::array& b, double p, double eps) {
  const int t = dtype_index(a, "x1");
  const index_t n = a.ndim() == 2 ? a.shape(0) : -1, d = a.ndim() == 2 ? a.shape(1) : -1;
  need(a, "x1", a.dtype(), {n, d}), need(b, "x2", a.dtype(), {n, d});
  py::array out(f64(), std::vector<index_t>{n});
  double* o = data<double>(out);
  const void *ap = a.data(), *bp = b.data();
  const int threads = get_num_threads();
  {
    NoGil nogil;
    table(t).paired_distance(ap, bp, n, d, p, eps, o, threads);
  }
  return out;
}

py::array paired_distance_grad(const py::array& a, const py::array& b, double p, double eps,
                               const py::array& dist, const py::array& coef) {
  const int t = dtype_index(a, "x1");
  const index_t n = a.ndim() == 2 ? a.shape(0) : -1, d = a.ndim() == 2 ? a.shape(1) : -1;
  need(a, "x1", a.dtype(), {n, d}), need(b, "x2", a.dtype(), {n, d});
  need(dist, "dist", f64(), {n}), need(coef, "coef", f64(), {n});
  py::array g = fresh_array(a.dtype(), {n, d});
  void* gp = g.mutable_data();
  const void *ap = a.data(), *bp = b.data();
  const double *dp = static_cast<const double*>(dist.data()), *cp = static_cast<const double*>(coef.data());
  const int threads = get_num_threads();
  {
    NoGil nogil;
    table(t).paired_distance_grad(ap, bp, n, d, p, eps, dp, cp, gp, threads);
  }
  return g;
}

py::tuple margin_softmax(py::array cos, const py::array& labels, double s, double m, bool arc,
                         bool easy, const py::object& weight, double grad_scale, bool want_grad,
                         bool want_rows) {
  const int t = dtype_index(cos, "cos");
  const index_t rows = cos.ndim() == 2 ? cos.shape(0) : -1, C = cos.ndim() == 2 ? cos.shape(1) : -1;
  need(cos, "cos", cos.dtype(), {rows, C}, true);
  need(labels, "labels", i64(), {rows});
  if (!weight.is_none()) need(py::reinterpret_borrow<py::array>(weight), "weight", f64(), {rows});
  MarginSoftmaxJob job;
  job.rows = rows, job.C = C, job.cos = cos.mutable_data();
  job.labels = static_cast<const std::int64_t*>(labels.data());
  for (index_t r = 0; r < rows; ++r)
    if (job.labels[r] < 0 || job.labels[r] >= C) throw py::value_error("label out of range");
  job.s = s, job.m = m, job.arc = arc, job.easy = easy, job.weight = cdata<double>(weight);
  job.grad_scale = grad_scale, job.want_grad = want_grad, job.threads = get_num_threads();
  py::object row_loss = py::none();
  if (want_rows) {
    py::array r(f64(), std::vector<index_t>{rows});
    job.row_loss = data<double>(r), row_loss = r;
  }
  double total = 0.0;
  {
    NoGil nogil;
    total = table(t).margin_softmax(job);
  }
  return py::make_tuple(total, row_loss);
}

}  // namespace

void bind_similarity(py::module_& m) {
  m.def("sim_row_norms", &row_norms, py::arg("x"), py::arg("eps"), py::arg("want_xhat"));
  m.def("sim_dist_from_gram", &dist_from_gram, py::arg("gram"), py::arg("nx"), py::arg("ny"),
        py::arg("metric"), py::arg("self"));
  m.def("sim_mine", &mine, py::arg("gram"), py::arg("sqn"), py::arg("labels"),
        py::arg("class_count"), py::arg("metric"), py::arg("mode"), py::arg("seed"),
        py::arg("offset"), py::arg("margin"), py::arg("soft"));
  m.def("sim_pair_grad", &pair_grad, py::arg("x"), py::arg("sqn"), py::arg("metric"),
        py::arg("eps"), py::arg("i"), py::arg("j"), py::arg("dist"), py::arg("coef"));
  m.def("sim_normalize_backward", &normalize_backward, py::arg("g"), py::arg("xhat"),
        py::arg("sqn"), py::arg("eps"));
  m.def("sim_paired_distance", &paired_distance, py::arg("x1"), py::arg("x2"), py::arg("p"),
        py::arg("eps"));
  m.def("sim_paired_distance_grad", &paired_distance_grad, py::arg("x1"), py::arg("x2"),
        py::arg("p"), py::arg("eps"), py::arg("dist"), py::arg("coef"));
  m.def("sim_margin_softmax", &margin_softmax, py::arg("cos"), py::arg("labels"), py::arg("s"),
        py::arg("m"), py::arg("arc"), py::arg("easy"), py::arg("weight"), py::arg("grad_scale"),
        py::arg("want_grad"), py::arg("want_rows"));
}

}  // namespace fastloss::bind
