// The dispatch table: one instance per compiled ISA, filled by the family translation units, one of
// them selected at import (CPU detection, FASTLOSS_ISA) or later through select_isa.
#pragma once

#include <string>
#include <vector>

#include "fastloss/job.hpp"
#include "fastloss/vmath.hpp"
#include "../losses/registry.hpp"
#include "../losses/similarity_jobs.hpp"

#define FL_CAT_(a, b) a##_##b
#define FL_CAT(a, b) FL_CAT_(a, b)
// register_<family>_<isa> for the ISA this translation unit is compiled for.
#define FL_REGISTER_FN(family) FL_CAT(register_##family, FL_ISA)
// Inside a register function with table `t`: the float32 and float64 kernels of one loss.
#define FL_REGISTER_ELEMENTWISE(name, Body)                                                      \
  t.elementwise[static_cast<int>(ElementwiseId::name)][0] = &run_elementwise<losses::Body, float>; \
  t.elementwise[static_cast<int>(ElementwiseId::name)][1] = &run_elementwise<losses::Body, double>;
#define FL_REGISTER_ROWWISE(name, Body)                                          \
  t.rowwise[static_cast<int>(RowId::name)][0] = &run_rows<losses::Body, float>;  \
  t.rowwise[static_cast<int>(RowId::name)][1] = &run_rows<losses::Body, double>; \
  t.row_spec[static_cast<int>(RowId::name)] = losses::Body<double>::spec;

namespace fastloss {

enum class ElementwiseId : int {
#define FL_ENUM(name, Body) name,
  FASTLOSS_ELEMENTWISE_LOSSES(FL_ENUM)
#undef FL_ENUM
  count
};
inline constexpr int kNumElementwise = static_cast<int>(ElementwiseId::count);

enum class RowId : int {
#define FL_ENUM(name, Body) name,
  FASTLOSS_ROW_LOSSES(FL_ENUM)
#undef FL_ENUM
  count
};
inline constexpr int kNumRow = static_cast<int>(RowId::count);

enum class VmathId : int {
#define FL_ENUM(name) name,
  FASTLOSS_VMATH_FUNCS(FL_ENUM)
#undef FL_ENUM
  count
};
inline constexpr int kNumVmath = static_cast<int>(VmathId::count);

// y[i] = f(x[i]) for contiguous arrays of the table's dtype.
using VmathFn = void (*)(const void* x, void* y, index_t n);

struct KernelTable {
  const char* isa = nullptr;
  ElementwiseFn elementwise[kNumElementwise][2] = {};  // [loss][0: float32, 1: float64]
  VmathFn vmath[kNumVmath][2] = {};
  RowFn rowwise[kNumRow][2] = {};
  RowSpec row_spec[kNumRow] = {};
  SoftmaxFn softmax[2] = {};
  SsimFn ssim[2] = {};
  DiceFn dice_sums[2] = {};
  DiceFn dice_grad[2] = {};
  SimilarityKernels similarity[2] = {};
  Wasserstein1dFn wasserstein_1d[2] = {};
  SinkhornIterateFn sinkhorn_iterate[2] = {};
  SinkhornFinishFn sinkhorn_finish[2] = {};
  SqEuclideanFn sq_euclidean[2] = {};
};

// Each family translation unit, compiled once per ISA, defines register_<family>_<isa>.
#define FL_DECLARE_REGISTER(family)                     \
  void register_##family##_baseline(KernelTable&); \
  void register_##family##_avx2(KernelTable&);     \
  void register_##family##_avx512(KernelTable&);
FASTLOSS_FAMILIES(FL_DECLARE_REGISTER)
#undef FL_DECLARE_REGISTER

const KernelTable& kernels();                     // the selected table
void select_isa(const std::string& name);         // throws std::invalid_argument
std::string selected_isa();
std::vector<std::string> compiled_isas();
std::vector<std::string> available_isas();        // compiled and supported by this CPU

int get_num_threads();
void set_num_threads(int n);

}  // namespace fastloss
