// Binding of the image family: SSIM / MS-SSIM over (planes, H, W) stacks and the soft Dice family
// over (N, C, S). The Python layer (image.py, segmentation.py) maps the public
// layouts onto these, validates the arguments and applies the reductions.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
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
    grad = grad_out.is_none() ? py::object(fresh_array(numpy_dtype(T), shape)) : grad_out;
    job.grad_out = direct_output(grad, "grad_out", T, shape);
  }
  if (want_map) {
    py::array m = fresh_array(numpy_dtype(T), shape);
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

// The layout of an (N, C, S) array the Dice kernel reads or writes in place: 0 channels-first
// (C-contiguous), 1 channels-last (classes contiguous, pixels C apart), -1 neither (or misaligned).
// Axes of length 1 may have any stride.
int dice_layout(const py::array& a, index_t N, index_t C, index_t S) {
  const index_t item = a.itemsize();
  if (reinterpret_cast<std::uintptr_t>(a.data()) % item != 0) return -1;
  auto fits = [&](int axis, index_t len, index_t elems) { return len == 1 || a.strides(axis) == elems * item; };
  if (fits(0, N, C * S) && fits(1, C, S) && fits(2, S, 1)) return 0;
  if (fits(0, N, C * S) && fits(1, C, 1) && fits(2, S, C)) return 1;
  return -1;
}

// `obj` as a dtype-T array of exactly `shape` (N, C, S) in a layout the kernel reads (copied to
// channels-first otherwise); its layout into `last`.
py::array dice_array(const py::object& obj, const char* name, DType T, const std::vector<index_t>& shape,
                     bool& last) {
  py::array a = as_real_array(obj, name, T);
  if (shape_of(a) != shape)
    throw py::value_error(std::string(name) + " must have shape " + shape_str(shape) + "; got " +
                          shape_str(shape_of(a)));
  if (dtype_of(a) == T) {
    const int layout = dice_layout(a, shape[0], shape[1], shape[2]);
    if (layout >= 0) {
      last = layout == 1;
      return a;
    }
  }
  last = false;
  return numpy().attr("ascontiguousarray")(a, numpy_dtype(T));
}

// The soft Dice family, value and gradient in one call: per-group losses (N,) ((1,) with batch)
// and, with scale (d value / d loss per group), the gradient with respect to y_pred (N, C, S),
// written into grad_out when its layout allows it (channels-first or -last, writeable), else
// into a new array with y_pred's layout.
py::tuple dice(const py::object& y_true, const py::object& y_pred, int activation, int kind, bool squared,
               double smooth_nr, double smooth_dr, double alpha, double beta, const py::object& class_weight,
               bool batch, const py::object& scale_obj, const py::object& grad_out) {
  if (activation < 0 || activation >= static_cast<int>(Activation::count))
    throw py::value_error("unknown activation");
  if (kind < 0 || kind >= static_cast<int>(DiceKind::count)) throw py::value_error("unknown Dice kind");
  DiceJob job;
  py::array z = as_real_array(y_pred, "y_pred");
  const DType T = dtype_of(z);
  const std::vector<index_t> shape = shape_of(z);
  if (shape.size() != 3) throw py::value_error("expected (N, C, S) predictions; got " + shape_str(shape));
  job.N = shape[0], job.C = shape[1], job.S = shape[2];
  z = dice_array(z, "y_pred", T, shape, job.z_last);
  job.z = z.data();
  py::array t = py::isinstance<py::array>(y_true) ? py::reinterpret_borrow<py::array>(y_true)
                                                  : py::array(numpy().attr("asarray")(y_true));
  if (t.dtype().kind() == 'i' && t.itemsize() == 8) {
    if (shape_of(t) != std::vector<index_t>{job.N, job.S})
      throw py::value_error("labels must have shape " + shape_str({job.N, job.S}) + "; got " + shape_str(shape_of(t)));
    t = numpy().attr("require")(t, py::none(), "CA");  // C order and aligned
    job.labels = static_cast<const std::int64_t*>(t.data());
    // Labels outside [0, C) match no class (the Python layer rejects them up front).
  } else {
    t = dice_array(t, "y_true", T, shape, job.targets_last);
    job.targets = t.data();
  }
  job.activation = static_cast<Activation>(activation);
  job.kind = static_cast<DiceKind>(kind);
  job.squared = squared, job.batch = batch;
  job.smooth_nr = smooth_nr, job.smooth_dr = smooth_dr, job.alpha = alpha, job.beta = beta;
  py::array cw;
  if (!class_weight.is_none()) {
    cw = contiguous(class_weight, "class_weight", DType::f64, {job.C});
    job.class_weight = static_cast<const double*>(cw.data());
  }
  const index_t groups = batch ? 1 : job.N;
  py::array_t<double> losses(groups);
  job.losses = losses.mutable_data();
  py::array scale;
  py::object grad = py::none();
  if (!scale_obj.is_none()) {
    scale = contiguous(scale_obj, "scale", DType::f64, {groups});
    job.scale = static_cast<const double*>(scale.data());
    bool writable = false;
    if (!grad_out.is_none()) {
      if (!py::isinstance<py::array>(grad_out)) throw py::type_error("grad_out must be a numpy.ndarray");
      py::array g = py::reinterpret_borrow<py::array>(grad_out);
      const int layout = dice_layout(g, job.N, job.C, job.S);
      writable = g.dtype().kind() == 'f' && dtype_of(g) == T && shape_of(g) == shape && g.writeable() &&
                 layout >= 0;
      if (writable) grad = grad_out, job.grad_last = layout == 1;
    }
    if (!writable) {  // y_pred's layout
      job.grad_last = job.z_last;
      grad = job.z_last ? py::object(fresh_array(numpy_dtype(T), {job.N, job.S, job.C})
                                         .attr("transpose")(0, 2, 1))
                        : py::object(fresh_array(numpy_dtype(T), shape));
    }
    job.grad_out = py::reinterpret_borrow<py::array>(grad).mutable_data();
  }
  job.threads = get_num_threads();
  if (job.N * job.C * job.S > 0) {
    const DiceFn fn = kernels().dice[T == DType::f32 ? 0 : 1];
    NoGil nogil;
    fn(job);
  }
  return py::make_tuple(losses, grad);
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
  m.def("dice", &dice, py::arg("y_true"), py::arg("y_pred"), py::arg("activation"), py::arg("kind"),
        py::arg("squared"), py::arg("smooth_nr"), py::arg("smooth_dr"), py::arg("alpha"), py::arg("beta"),
        py::arg("class_weight"), py::arg("batch"), py::arg("scale"), py::arg("grad_out") = py::none(),
        "soft Dice family over (N, C, S): (losses, gradient | None); activation 0 none, 1 sigmoid, "
        "2 softmax; kind from dice_kinds; the gradient when scale (d value / d loss) is given");
  m.attr("dice_kinds") = [] {
    py::dict d;
#define FL_DICE_KIND(id, name) d[name] = static_cast<int>(DiceKind::id);
    FASTLOSS_DICE_KINDS(FL_DICE_KIND)
#undef FL_DICE_KIND
    return d;
  }();
  m.def("first_bad_label", &first_bad_label, py::arg("labels"), py::arg("num_classes"),
        "flat index of the first label outside [0, num_classes), or -1");
}

}  // namespace fastloss::bind
