// fastloss._cuda: the elementwise and row-wise losses on an NVIDIA GPU. Arrays exposing
// __cuda_array_interface__ (CuPy, PyTorch, Numba) are used in place; NumPy arrays are copied to the
// device and the results copied back (the row-wise losses take host arrays). Same contract, checks,
// outputs and (total, norm, values, grad, hess) results as fastloss._core.
#include <cuda_runtime.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "../bindings/arrays.hpp"
#include "cuda_job.hpp"

namespace py = pybind11;
using namespace fastloss;
using namespace fastloss::bind;

namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

void check_kernel() {
  const std::string err = fastloss::cuda::last_error();
  if (!err.empty()) throw std::runtime_error("CUDA " + err);
}

// Device memory owned for the length of one call.
struct DeviceBuffer {
  void* ptr = nullptr;
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes) { check(cudaMalloc(&ptr, bytes ? bytes : 1), "cudaMalloc"); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr(o.ptr) { o.ptr = nullptr; }
  ~DeviceBuffer() { if (ptr) cudaFree(ptr); }
};

struct DeviceView {
  void* ptr = nullptr;
  std::vector<index_t> shape;
  DType dtype = DType::f64;
  bool readonly = false;
};

bool is_device(const py::handle& obj) { return py::hasattr(obj, "__cuda_array_interface__"); }

// Reads __cuda_array_interface__; only C-contiguous float32/float64 arrays are accepted.
DeviceView device_view(const py::handle& obj, const char* name) {
  py::dict iface = obj.attr("__cuda_array_interface__");
  DeviceView v;
  for (auto d : py::tuple(iface["shape"])) v.shape.push_back(d.cast<index_t>());
  const std::string type = iface["typestr"].cast<std::string>();
  if (type == "<f4") v.dtype = DType::f32;
  else if (type == "<f8") v.dtype = DType::f64;
  else throw py::type_error(std::string(name) + " must be a float32 or float64 device array; got " + type);
  py::tuple data = iface["data"];
  v.ptr = reinterpret_cast<void*>(data[0].cast<std::uintptr_t>());
  v.readonly = data[1].cast<bool>();
  if (iface.contains("strides") && !iface["strides"].is_none()) {
    py::tuple strides = iface["strides"];
    index_t expect = type == "<f4" ? 4 : 8;
    for (py::ssize_t i = static_cast<py::ssize_t>(v.shape.size()) - 1; i >= 0; --i) {
      if (v.shape[i] != 1 && strides[i].cast<index_t>() != expect)
        throw py::value_error(std::string(name) + " must be C-contiguous on the GPU");
      expect *= v.shape[i];
    }
  }
  return v;
}

index_t size_of(const std::vector<index_t>& shape) {
  index_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

size_t itemsize(DType t) { return t == DType::f32 ? 4 : 8; }

// An output on the device: a device array given by the caller (validated) or allocated with CuPy.
OutBuffer device_output(const py::object& given, const char* name, const std::vector<index_t>& shape,
                        DType T, bool) {
  OutBuffer o;
  if (given.is_none()) {
    py::object cupy;
    try {
      cupy = py::module_::import("cupy");
    } catch (py::error_already_set&) {
      throw py::type_error(std::string("pass ") + name + "= (a device array): allocating one needs CuPy");
    }
    o.user = cupy.attr("empty")(py::cast(shape), numpy_dtype(T));
  } else {
    o.user = given;
  }
  DeviceView v = device_view(o.user, name);
  if (v.dtype != T || v.shape != shape || v.readonly)
    throw py::value_error(std::string(name) + " must be a writeable device array of y_pred's shape " +
                          shape_str(shape) + " and dtype");
  o.target = o.user;
  return o;
}

// Where the kernel writes a requested output of n elements: the device array itself, or a device
// buffer that copy_back copies into the host array.
void* kernel_target(bool wanted, const OutBuffer& b, index_t n, DType T, bool on_device,
                    std::vector<DeviceBuffer>& owned) {
  if (!wanted) return nullptr;
  if (on_device) return device_view(b.target, "output").ptr;
  owned.emplace_back(static_cast<size_t>(n) * itemsize(T));
  return owned.back().ptr;
}

void copy_back(CallOutputs& outs, const void* values, const void* grad, const void* hess,
               index_t n_values, index_t n_pred, DType T) {
  auto one = [&](const void* dev, OutBuffer& b, index_t n) {
    if (!dev) return;
    py::array target = b.target;  // C-contiguous (CallOutputs' contiguous targets)
    check(cudaMemcpy(target.mutable_data(), dev, static_cast<size_t>(n) * itemsize(T),
                     cudaMemcpyDeviceToHost),
          "copy from GPU");
  };
  one(values, outs.values, n_values);
  one(grad, outs.gradient, n_pred);
  one(hess, outs.hessian, n_pred);
}

// One call; see fastloss._core.elementwise for the arguments and the returned tuple.
py::tuple elementwise(int loss, const std::vector<double>& params, const py::object& y_true_obj,
                      const py::object& y_pred_obj, const py::object& weight_obj,
                      const py::object& aux_obj, const std::string& reduction_name, bool want_grad,
                      bool want_hess, const py::object& out_obj, const py::object& grad_out_obj,
                      const py::object& hess_out_obj) {
  if (loss < 0 || loss >= fastloss::cuda::num_elementwise())
    throw py::value_error("unknown elementwise loss id");
  if (params.size() > 8) throw py::value_error("too many loss parameters");
  const Reduction reduction = parse_reduction(reduction_name);
  const bool on_device = is_device(y_pred_obj), weighted = !weight_obj.is_none();
  const bool has_aux = !aux_obj.is_none();

  std::vector<DeviceBuffer> owned;  // device copies of host inputs/outputs, freed on return
  std::vector<py::object> keep;
  // Device arrays are used in place; host arrays are converted to `T` and copied. With
  // must_match false a device array may be float32 or float64 (its dtype is reported in *got).
  auto stage = [&](const py::handle& obj, const char* name, DType T, std::vector<index_t>& shape,
                   bool must_match, DType* got = nullptr) -> const void* {
    if (on_device) {
      if (!is_device(obj))
        throw py::type_error(std::string(name) + " must be a device array like y_pred");
      DeviceView v = device_view(obj, name);
      if (must_match && v.dtype != T)
        throw py::type_error(std::string(name) + " must have the dtype of y_pred on the GPU");
      if (got) *got = v.dtype;
      shape = v.shape;
      return v.ptr;
    }
    if (got) *got = T;
    py::array a = numpy().attr("ascontiguousarray")(as_real_array(obj, name, T), numpy_dtype(T));
    keep.push_back(a);
    shape = shape_of(a);
    owned.emplace_back(a.nbytes());
    check(cudaMemcpy(owned.back().ptr, a.data(), a.nbytes(), cudaMemcpyHostToDevice), "copy to GPU");
    return owned.back().ptr;
  };

  DType T;
  std::vector<index_t> pshape, tshape, wshape, aux_shape;
  if (on_device) {
    T = device_view(y_pred_obj, "y_pred").dtype;
  } else {
    T = dtype_of(as_real_array(y_pred_obj, "y_pred"));
  }
  fastloss::cuda::CudaJob job;
  job.y_pred = stage(y_pred_obj, "y_pred", T, pshape, true);
  job.y_true = stage(y_true_obj, "y_true", T, tshape, true);
  if (weighted) {
    DType wt = DType::f64;
    job.weight = stage(weight_obj, "sample_weight", DType::f64, wshape, false, &wt);
    job.weight_f32 = wt == DType::f32;
  }
  py::array aux;
  if (has_aux) {
    py::array given = as_real_array(aux_obj, "parameter vector");
    aux_shape = shape_of(given);  // before ascontiguousarray, which makes a 0-d array 1-d
    aux = numpy().attr("ascontiguousarray")(given, "float64");
  }
  const ElementwisePlan plan = plan_elementwise(pshape, tshape, weighted ? &wshape : nullptr,
                                                has_aux ? &aux_shape : nullptr);
  const index_t n = size_of(pshape);
  job.n = n;
  job.y_true_period = plan.y_true == Bcast::row ? plan.y_true_period : 0;
  job.weight_period = plan.weight == Bcast::row ? plan.weight_period : 0;
  for (size_t i = 0; i < params.size(); ++i) job.params[i] = params[i];
  if (has_aux) {
    owned.emplace_back(aux.nbytes());
    check(cudaMemcpy(owned.back().ptr, aux.data(), aux.nbytes(), cudaMemcpyHostToDevice), "copy to GPU");
    job.aux = static_cast<const double*>(owned.back().ptr);
    job.aux_period = plan.aux_period;
  }

  CallOutputs outs(reduction, want_grad, want_hess, out_obj, grad_out_obj, hess_out_obj, pshape,
                   pshape, T, true, on_device ? &device_output : &make_output);
  job.loss_out = kernel_target(outs.reduction == Reduction::none, outs.values, n, T, on_device, owned);
  job.grad_out = kernel_target(outs.grad, outs.gradient, n, T, on_device, owned);
  job.hess_out = kernel_target(outs.hess, outs.hessian, n, T, on_device, owned);

  double norm = static_cast<double>(n);
  if (weighted) {
    bool bad = false;
    norm = fastloss::cuda::weight_sum(job.weight, size_of(wshape), job.weight_f32, &bad) *
           static_cast<double>(plan.weight_period);
    check_kernel();
    if (bad) throw py::value_error("sample_weight must be finite and non-negative");
  }
  set_gradient_scale(reduction, weighted, n, norm, &job.grad_scale, &job.weight_prescale);

  double total = 0.0;
  if (n > 0) {
    py::gil_scoped_release nogil;
    total = fastloss::cuda::elementwise(loss, T == DType::f32, job);
  }
  check_kernel();
  if (!on_device) copy_back(outs, job.loss_out, job.grad_out, job.hess_out, n, n, T);
  outs.finish();
  return outs.result(total, norm);
}

// One row-wise call (see fastloss._core.rowwise) on host arrays: planned and checked by the CPU
// binding's plan_rows, computed by the row bodies compiled for the GPU.
py::tuple rowwise(int loss, const std::vector<double>& params, const py::object& y_true,
                  const py::object& y_pred, const py::object& sample_weight, const py::object& extra,
                  const py::object& class_weight, const py::object& ignore_index,
                  const std::string& reduction, bool want_grad, bool want_hess,
                  const py::object& out, const py::object& grad_out, const py::object& hess_out) {
  if (loss < 0 || loss >= fastloss::cuda::num_rowwise()) throw py::value_error("unknown row-wise loss id");
  for (const py::object* a : {&y_true, &y_pred, &sample_weight, &extra})
    if (is_device(*a)) throw py::type_error("the row-wise losses take host (NumPy) arrays");
  RowCall call = plan_rows(fastloss::cuda::row_spec(loss), params, y_true, y_pred, sample_weight,
                           extra, class_weight, ignore_index, reduction, want_grad, want_hess, out,
                           grad_out, hess_out, true);
  RowJob job = call.job;
  CallOutputs& outs = call.outs;
  const index_t rows = job.rows, K = job.K;
  const size_t item = itemsize(call.dtype), matrix = static_cast<size_t>(rows * K) * item;
  std::vector<DeviceBuffer> owned;
  auto upload = [&](const void* host, size_t bytes) -> const void* {
    if (!host) return nullptr;
    owned.emplace_back(bytes);
    check(cudaMemcpy(owned.back().ptr, host, bytes, cudaMemcpyHostToDevice), "copy to GPU");
    return owned.back().ptr;
  };
  job.x = upload(job.x, matrix);
  job.targets = upload(job.targets, matrix);
  job.extra = upload(job.extra, matrix);
  job.labels = static_cast<const std::int64_t*>(upload(job.labels, sizeof(std::int64_t) * rows));
  job.class_weight = static_cast<const double*>(upload(job.class_weight, sizeof(double) * K));
  job.sample_weight = static_cast<const double*>(upload(job.sample_weight, sizeof(double) * rows));
  job.loss_out = kernel_target(outs.reduction == Reduction::none, outs.values, rows, call.dtype, false, owned);
  job.grad_out = kernel_target(outs.grad, outs.gradient, rows * K, call.dtype, false, owned);
  job.hess_out = kernel_target(outs.hess, outs.hessian, rows * K, call.dtype, false, owned);
  double total = 0.0;
  if (rows > 0) {
    py::gil_scoped_release nogil;
    total = fastloss::cuda::rowwise(loss, call.dtype == DType::f32, job);
  }
  check_kernel();
  copy_back(outs, job.loss_out, job.grad_out, job.hess_out, rows, rows * K, call.dtype);
  outs.finish();
  return outs.result(total, call.norm);
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "fastloss CUDA kernels (private; used by fastloss for device arrays)";
  m.def("elementwise", &elementwise);
  m.def("rowwise", &rowwise);
  m.def("device_count", [] {
    int count = 0;
    return cudaGetDeviceCount(&count) == cudaSuccess ? count : 0;
  });
}
