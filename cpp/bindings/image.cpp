// Binding of the image family: SSIM / MS-SSIM over (planes, H, W) stacks and the two passes of the
// soft Dice family over (N, C, S). The Python layer (image.py, segmentation.py) maps the public
// layouts onto these, validates the arguments and applies the reductions.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "../cpu/kernels.hpp"
#include "arrays.hpp"

namespace py = pybind11;

namespace fastloss::bind {
namespace {

// `obj` as a C-contiguous array of dtype T and exactly `shape`.
py::array contiguous(const py::object& obj, const char* name, DType T, const std::vector<index_t>& shape) {
  py::array a = as_real_array(obj, name, T);
  if (shape_of(a) != shape)
    throw py::value_error(std::string(name) + " must have shape " + shape_str(shape) + "; got " +
                          shape_str(shape_of(a)));
  return numpy().attr("ascontiguousarray")(a, numpy_dtype(T));
}

// A caller buffer the kernel writes directly: C-contiguous, writeable, dtype T, `shape`.
void* direct_output(const py::object& obj, const char* name, DType T, const std::vector<index_t>& shape) {
  if (obj.is_none()) return nullptr;
  if (!py::isinstance<py::array>(obj)) throw py::type_error(std::string(name) + " must be a numpy.ndarray");
  py::array a = py::reinterpret_borrow<py::array>(obj);
  if (a.dtype().kind() != 'f' || dtype_of(a) != T || shape_of(a) != shape || !a.writeable() ||
      !(a.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + ": expected a writeable C-contiguous array of shape " +
                          shape_str(shape));
  return a.mutable_data();
}

py::tuple ssim(const py::object& x_obj, const py::object& y_obj, double c1, double c2,
               const py::object& scale_weights_obj, const py::object& grad_scale_obj, bool want_map,
               const py::object& grad_out) {
  py::array y = as_real_array(y_obj, "y_pred");
  const DType T = dtype_of(y);
  const auto shape = shape_of(y);
  if (shape.size() != 3) throw py::value_error("expected a (planes, H, W) stack; got " + shape_str(shape));
  y = contiguous(y, "y_pred", T, shape);
  py::array x = contiguous(x_obj, "y_true", T, shape);
  SsimJob job;
  job.planes = shape[0], job.H = shape[1], job.W = shape[2];
  if (job.H < 11 || job.W < 11)
    throw py::value_error("images must be at least 11 x 11 (the window); got " + shape_str(shape));
  job.x = x.data(), job.y = y.data();
  job.c1 = c1, job.c2 = c2;
  std::vector<double> weights;
  if (!scale_weights_obj.is_none()) {
    weights = scale_weights_obj.cast<std::vector<double>>();
    if (weights.empty() || weights.size() > 16) throw py::value_error("MS-SSIM takes 1 to 16 scales");
    index_t h = job.H, w = job.W;
    for (std::size_t k = 1; k < weights.size(); ++k) h /= 2, w /= 2;
    if (h < 11 || w < 11)
      throw py::value_error("images too small for " + std::to_string(weights.size()) +
                            " MS-SSIM scales: the coarsest is " + std::to_string(h) + " x " +
                            std::to_string(w) + ", the window needs 11 x 11");
    job.scale_weights = weights.data();
    job.scales = static_cast<int>(weights.size());
    if (want_map) throw py::value_error("the SSIM map is for plain SSIM");
  }
  py::array_t<double> values(job.planes);
  job.plane_value = values.mutable_data();
  py::object grad = py::none(), map = py::none();
  py::array gscale;
  if (!grad_scale_obj.is_none()) {
    gscale = contiguous(grad_scale_obj, "grad_scale", DType::f64, {job.planes});
    job.grad_scale = static_cast<const double*>(gscale.data());
    grad = grad_out.is_none() ? py::object(py::array(numpy_dtype(T), shape)) : grad_out;
    job.grad_out = direct_output(grad, "grad_out", T, shape);
  }
  if (want_map) {
    py::array m(numpy_dtype(T), shape);
    job.map_out = m.mutable_data();
    map = m;
  }
  job.threads = get_num_threads();
  if (job.planes > 0) {
    const SsimFn fn = kernels().ssim[T == DType::f32 ? 0 : 1];
    NoGil nogil;
    fn(job);
  }
  return py::make_tuple(values, grad, map);
}

// The Dice job over predictions (N, C, S) and targets of the same shape or int64 labels (N, S).
struct DiceCall {
  DiceJob job;
  DType T;
  py::array z, targets;
  std::vector<index_t> shape;
};

DiceCall dice_call(const py::object& y_true, const py::object& z_obj, int activation) {
  if (activation < 0 || activation >= static_cast<int>(Activation::count))
    throw py::value_error("unknown activation");
  DiceCall call;
  py::array z = as_real_array(z_obj, "y_pred");
  call.T = dtype_of(z);
  call.shape = shape_of(z);
  if (call.shape.size() != 3) throw py::value_error("expected (N, C, S) predictions; got " + shape_str(call.shape));
  call.z = contiguous(z, "y_pred", call.T, call.shape);
  DiceJob& job = call.job;
  job.N = call.shape[0], job.C = call.shape[1], job.S = call.shape[2];
  job.z = call.z.data();
  py::array t = py::isinstance<py::array>(y_true) ? py::reinterpret_borrow<py::array>(y_true)
                                                  : py::array(numpy().attr("asarray")(y_true));
  if (t.dtype().kind() == 'i' && t.itemsize() == 8) {
    if (shape_of(t) != std::vector<index_t>{job.N, job.S})
      throw py::value_error("labels must have shape " + shape_str({job.N, job.S}) + "; got " + shape_str(shape_of(t)));
    call.targets = numpy().attr("require")(t, py::none(), "CA");  // C order and aligned
    job.labels = static_cast<const std::int64_t*>(call.targets.data());
    // Labels outside [0, C) match no class (the Python layer rejects them up front).
  } else {
    call.targets = contiguous(t, "y_true", call.T, call.shape);
    job.targets = call.targets.data();
  }
  job.activation = static_cast<Activation>(activation);
  job.threads = get_num_threads();
  return call;
}

py::array dice_sums(const py::object& y_true, const py::object& y_pred, int activation,
                    const py::object& probs_out) {
  DiceCall call = dice_call(y_true, y_pred, activation);
  call.job.probs = direct_output(probs_out, "probs_out", call.T, call.shape);
  py::array_t<double> sums(std::vector<index_t>{call.job.N, call.job.C, kDiceSums});
  call.job.sums = sums.mutable_data();
  if (call.job.N * call.job.C * call.job.S > 0) {
    const DiceFn fn = kernels().dice_sums[call.T == DType::f32 ? 0 : 1];
    NoGil nogil;
    fn(call.job);
  } else {
    for (index_t i = 0; i < sums.size(); ++i) sums.mutable_data()[i] = 0.0;
  }
  return sums;
}

py::object dice_grad(const py::object& y_true, const py::object& y_pred, int activation,
                     const py::object& coef_obj, const py::object& grad_out, bool probs_in_grad) {
  DiceCall call = dice_call(y_true, y_pred, activation);
  py::array coef = contiguous(coef_obj, "coef", DType::f64, {call.job.N, call.job.C, 3});
  call.job.coef = static_cast<const double*>(coef.data());
  py::object grad = grad_out;
  if (grad.is_none()) grad = py::array(numpy_dtype(call.T), call.shape);
  call.job.grad_out = direct_output(grad, "grad_out", call.T, call.shape);
  if (probs_in_grad) call.job.probs = call.job.grad_out;
  if (call.job.N * call.job.C * call.job.S > 0) {
    const DiceFn fn = kernels().dice_grad[call.T == DType::f32 ? 0 : 1];
    NoGil nogil;
    fn(call.job);
  }
  return grad;
}

// Flat index of the first label outside [0, C), or -1.
index_t first_bad_label(const py::array_t<std::int64_t, py::array::c_style>& labels, std::int64_t C) {
  const std::int64_t* l = labels.data();
  const index_t n = labels.size();
  NoGil nogil;
  bool bad = false;
  for (index_t i = 0; i < n; ++i) bad |= static_cast<std::uint64_t>(l[i]) >= static_cast<std::uint64_t>(C);
  if (!bad) return -1;
  for (index_t i = 0; i < n; ++i)
    if (l[i] < 0 || l[i] >= C) return i;
  return -1;
}

}  // namespace

void bind_image(py::module_& m) {
  m.def("ssim", &ssim, py::arg("y_true"), py::arg("y_pred"), py::arg("c1"), py::arg("c2"),
        py::arg("scale_weights"), py::arg("grad_scale"), py::arg("want_map"),
        py::arg("grad_out") = py::none(),
        "per-plane SSIM (or MS-SSIM) of (planes, H, W) stacks; (values, grad | None, map | None)");
  m.def("dice_sums", &dice_sums, py::arg("y_true"), py::arg("y_pred"), py::arg("activation"),
        py::arg("probs_out") = py::none(),
        "(N, C, 5) sums of p g, p, p^2, g, g^2 over S; activation 0 none, 1 sigmoid, 2 softmax; "
        "the activations into probs_out when given");
  m.def("first_bad_label", &first_bad_label, py::arg("labels"), py::arg("num_classes"),
        "flat index of the first label outside [0, num_classes), or -1");
  m.def("dice_grad", &dice_grad, py::arg("y_true"), py::arg("y_pred"), py::arg("activation"),
        py::arg("coef"), py::arg("grad_out") = py::none(), py::arg("probs_in_grad") = false,
        "gradient w.r.t. y_pred from d loss / d p = a g + b + c p per (n, c), into grad_out; "
        "with probs_in_grad, grad_out holds the activations of dice_sums on entry");
}

}  // namespace fastloss::bind
