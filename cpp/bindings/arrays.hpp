// Argument checking and array views for the binding: every check runs before any kernel starts, and
// every message names the argument.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "fastloss/job.hpp"
#include "fastloss/parallel.hpp"

namespace fastloss::bind {

namespace py = pybind11;

py::object numpy();  // the numpy module

// Releases the GIL around a kernel. On the main thread it also arms Ctrl-C: between chunks (about
// every 50 ms) the kernel takes the GIL back briefly and runs Python's signal handlers; when one
// raises (KeyboardInterrupt), the kernel stops and the exception reaches the caller. Outputs the
// kernel had started writing are then partially written.
struct NoGil {
  InterruptScope interrupts;
  py::gil_scoped_release release;
  NoGil();
};
void remember_main_thread();  // at import: the thread that runs Python's signal handlers
std::string shape_str(const std::vector<index_t>& s);
std::vector<index_t> shape_of(const py::array& a);

// Returns `obj` as a native-endian ndarray of float32/float64. Integers and bools become
// `int_target` (float64 unless given); complex, object and string dtypes raise TypeError.
py::array as_real_array(const py::handle& obj, const char* name, DType int_target = DType::f64);
bool is_native(const py::dtype& d);
bool is_native(char byteorder);
bool aligned(const py::array& a);  // every element at an address its dtype allows
// An input the kernels read as it is, recognised with a few field reads: exactly a numpy.ndarray
// (no subclass) of native float32/float64, aligned, whose elements one stride describes.
bool plain_float_array(PyObject* obj, DType* dtype, index_t* stride);
// Do the bytes of two arrays overlap? Are they the same view (address, shape and strides)?
// Objects that are not arrays (None) overlap nothing.
bool overlap(const py::object& x, const py::object& y);
bool same_view(const py::object& x, const py::object& y);
DType dtype_of(const py::array& a);  // for float32/float64 arrays
py::dtype numpy_dtype(DType d);
// A fresh C-contiguous array (contents undefined, as numpy.empty). From kCachedBlockMin bytes on
// its memory is a recycled block (take_block, alloc.hpp) that goes back to the cache when the
// array is freed (the array's base is the capsule that owns it); smaller ones are NumPy's own.
py::array fresh_array(const py::dtype& dtype, const Py_intptr_t* shape, int ndim);
inline py::array fresh_array(const py::dtype& dtype, const std::vector<index_t>& shape) {
  const std::vector<Py_intptr_t> dims(shape.begin(), shape.end());  // not index_t on macOS
  return fresh_array(dtype, dims.data(), static_cast<int>(dims.size()));
}

// The element stride of `a` viewed as one flat C-order run (0 for a broadcast view); false when no
// single stride describes it.
bool flat_stride(const py::array& a, index_t* stride);

// An input as a flat run: the array itself when a single stride describes it, else a C-contiguous
// copy (kept alive by `keep`).
Input flat_input(py::array a, Bcast mode, index_t period, std::vector<py::object>& keep);

// A caller-supplied or fresh output of `shape` and `dtype`. Validates a caller buffer (ndarray,
// exact dtype, exact shape, writeable) and, when no single stride describes it, computes into a
// temporary that finish() copies back after the kernel.
struct OutBuffer {
  // py::object, not py::array: a default-constructed py::array allocates an empty array.
  py::object user;    // what the caller gets back
  py::object target;  // what the kernel writes (== user unless a temporary was needed)
  Output view() const;
  void finish();
};
// With `contiguous`, the kernel needs a C-contiguous target (row kernels): any other caller
// buffer is served through a temporary.
OutBuffer make_output(const py::object& given, const char* name, const std::vector<index_t>& shape,
                      DType dtype, bool contiguous = false);

#define FASTLOSS_REDUCTIONS(X) X(mean, "mean") X(sum, "sum") X(none, "none")
enum class Reduction { FASTLOSS_REDUCTIONS(FL_ENUMERATOR) };
Reduction parse_reduction(const std::string& r);

// How y_true, sample_weight and a per-column parameter vector map onto y_pred's elements; raises
// ValueError naming the argument and showing the shapes. Shared by the CPU and CUDA bindings.
struct ElementwisePlan {
  Bcast y_true = Bcast::full;
  index_t y_true_period = 1;
  Bcast weight = Bcast::none;
  index_t weight_period = 1;
  index_t aux_period = 1;  // number of columns the parameter vector spans (1: scalar)
};
ElementwisePlan plan_elementwise(const std::vector<index_t>& pred, const std::vector<index_t>& truth,
                                 const std::vector<index_t>* weight, const std::vector<index_t>* aux);

// How CallOutputs makes one buffer: make_output for host arrays (the CUDA binding passes its own
// for device arrays).
using MakeOutput = OutBuffer (*)(const py::object& given, const char* name,
                                 const std::vector<index_t>& shape, DType dtype, bool contiguous);

// The caller-visible outputs of one loss call: per-element (or per-row) values for
// reduction="none", the gradient and the Hessian diagonal, all of y_pred's dtype.
struct CallOutputs {
  Reduction reduction;
  bool grad, hess;
  OutBuffer values, gradient, hessian;
  CallOutputs(Reduction reduction, bool want_grad, bool want_hess, const py::object& out,
              const py::object& grad_out, const py::object& hess_out,
              const std::vector<index_t>& value_shape, const std::vector<index_t>& pred_shape,
              DType dtype, bool contiguous, MakeOutput make = &make_output);
  // Caller buffers that overlap an input are served through a temporary (a kernel would read
  // what it has already written), except one that is exactly `in_place` (same address, shape and
  // strides): kernels read each element of y_pred before writing the same element of an output.
  // Caller buffers that overlap each other are a ValueError. Call before any work.
  void separate(const std::vector<py::object>& inputs, const py::object& in_place);
  void finish();  // copies temporaries back into the caller's buffers
  // (total, norm, values | None, grad | None, hess | None): the weighted sum, the mean's
  // denominator and the outputs; Python's one reduction step turns these into the value.
  py::tuple result(double total, double norm) const;
};

// `x` as (rows, K) with contiguous columns and a uniform row stride (copied when needed; with
// `contiguous`, whenever the stride is not K).
struct RowView {
  py::array array;
  index_t rows = 0, K = 0, stride = 0;
};
RowView row_view(py::array x, const char* name, bool contiguous);
std::vector<index_t> leading(const std::vector<index_t>& shape);  // the shape without its last axis
// sample_weight: one finite non-negative weight per row (`item` names a row in the message) as
// contiguous float64 kept alive in `keep`; null if None. Their sum (rows without weights).
const double* row_weights(const py::object& obj, const std::vector<index_t>& rshape, py::array& keep,
                          const char* item = "row");
double row_weight_sum(const double* sw, index_t rows);

// A row-wise call after every check, before any work: the job (host pointers into `keep`, no
// outputs yet), y_pred's dtype, the mean's denominator and the caller-visible outputs.
struct RowCall {
  RowJob job;
  DType dtype;
  double norm;
  std::vector<py::object> keep;
  CallOutputs outs;
};
// `spec` is the loss's (cpp/losses/registry.hpp); with `contiguous` every (rows, K) input is
// C-contiguous (row stride K).
RowCall plan_rows(const RowSpec& spec, const std::vector<double>& params, const py::object& y_true,
                  const py::object& y_pred, const py::object& sample_weight, const py::object& extra,
                  const py::object& class_weight, const py::object& ignore_index,
                  const std::string& reduction, bool want_grad, bool want_hess,
                  const py::object& out, const py::object& grad_out, const py::object& hess_out,
                  bool contiguous);

// Sets grad_scale and weight_prescale for the mean's denominator `norm` of an elementwise call of
// n elements (see ElementwiseJob); a weighted mean whose weights sum to zero is an error.
void set_gradient_scale(Reduction reduction, bool weighted, index_t n, double norm,
                        double* grad_scale, double* weight_prescale);

}  // namespace fastloss::bind
