// Builds one kernel table per compiled ISA and selects one: the best the CPU supports, unless the
// environment variable FASTLOSS_ISA names another (an unknown or unsupported name is an error).
#if defined(_OPENMP)
#include <omp.h>
#endif

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <thread>

#if defined(_MSC_VER) && !defined(__clang__)
#include <immintrin.h>  // _xgetbv
#include <intrin.h>     // __cpuidex
#endif

#include "kernels.hpp"

namespace fastloss {
namespace {

// Whether this CPU runs each ISA's kernels: CPUID for the instructions (the avx2 target is also
// compiled with BMI1/BMI2) and XGETBV for the OS saving the vector registers. Read directly rather
// than through __builtin_cpu_supports, whose runtime (compiler-rt/libgcc's __cpu_model) clang-cl
// does not link on Windows.
[[maybe_unused]] bool supports_baseline() { return true; }
#if defined(__x86_64__) || defined(_M_X64)
struct CpuFeatures {
  bool avx2 = false, avx512 = false;
  CpuFeatures() {
    unsigned r1[4], r7[4];
    cpuid(0, r1);
    if (r1[0] < 7) return;
    cpuid(1, r1);
    cpuid(7, r7);
    const bool osxsave = r1[2] >> 27 & 1, avx = r1[2] >> 28 & 1, fma = r1[2] >> 12 & 1;
    if (!(osxsave && avx)) return;
    const unsigned long long xcr0 = xgetbv0();
    const bool ymm = (xcr0 & 0x6) == 0x6, zmm = (xcr0 & 0xe6) == 0xe6;  // SSE+AVX, +opmask+ZMM
    const unsigned b = r7[1];
    avx2 = ymm && fma && (b >> 5 & 1) && (b >> 3 & 1) && (b >> 8 & 1);  // AVX2, BMI1, BMI2
    avx512 = avx2 && zmm && (b >> 16 & 1) && (b >> 17 & 1) && (b >> 30 & 1) &&
             (b >> 31 & 1);  // AVX512 F, DQ, BW, VL
  }
  static void cpuid(unsigned leaf, unsigned r[4]) {
#if defined(_MSC_VER) && !defined(__clang__)
    int v[4];
    __cpuidex(v, int(leaf), 0);
    for (int i = 0; i < 4; ++i) r[i] = unsigned(v[i]);
#else
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(0));
#endif
  }
  static unsigned long long xgetbv0() {
#if defined(_MSC_VER) && !defined(__clang__)
    return _xgetbv(0);
#else
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (unsigned long long)hi << 32 | lo;
#endif
  }
};
const CpuFeatures& cpu() {
  static const CpuFeatures f;
  return f;
}
[[maybe_unused]] bool supports_avx2() { return cpu().avx2; }
[[maybe_unused]] bool supports_avx512() { return cpu().avx512; }
#endif

struct IsaEntry {
  const char* name;
  bool (*supported)();
};

// The ISAs CMake compiled, in increasing preference.
const IsaEntry kIsas[] = {
#define FL_ISA_ENTRY(isa) {#isa, &supports_##isa},
    FASTLOSS_ISAS(FL_ISA_ENTRY)
#undef FL_ISA_ENTRY
};
constexpr int kNumIsas = sizeof(kIsas) / sizeof(kIsas[0]);

KernelTable g_tables[kNumIsas];
std::atomic<const KernelTable*> g_selected{nullptr};
std::once_flag g_init;
std::atomic<int> g_threads{0};

int find_isa(const std::string& name) {
  for (int i = 0; i < kNumIsas; ++i)
    if (name == kIsas[i].name) return i;
  return -1;
}

void select_index(int i) { g_selected.store(&g_tables[i]); }

// Every family's register function compiled for ISA i fills its table.
void fill(int i) {
  KernelTable& t = g_tables[i];
  t.isa = kIsas[i].name;
#define FL_CALL_REGISTER(family, target) \
  if (std::strcmp(t.isa, #target) == 0) register_##family##_##target(t);
  FASTLOSS_KERNEL_UNITS(FL_CALL_REGISTER)
#undef FL_CALL_REGISTER
}

// Only the tables of ISAs this CPU runs are filled: a register function compiled for AVX-512 may
// itself use AVX-512 instructions (GCC vectorizes the table stores), which would be SIGILL on an
// AVX2-only CPU. The baseline ISA is always supported.
void init() {
  int best = 0;
  for (int i = 0; i < kNumIsas; ++i)
    if (kIsas[i].supported()) {
      fill(i);
      best = i;
    }
  select_index(best);
}

}  // namespace

const KernelTable& kernels() {
  std::call_once(g_init, init);
  return *g_selected.load();
}

void select_isa(const std::string& name) {
  std::call_once(g_init, init);
  const int i = find_isa(name);
  std::string known;
  for (const auto& e : kIsas) known += std::string(known.empty() ? "" : ", ") + e.name;
  if (i < 0)
    throw std::invalid_argument("unknown ISA '" + name + "'; this build has: " + known);
  if (!kIsas[i].supported())
    throw std::invalid_argument("ISA '" + name + "' is not supported by this CPU");
  select_index(i);
}

std::string selected_isa() { return kernels().isa; }

std::vector<std::string> compiled_isas() {
  std::vector<std::string> out;
  for (const auto& e : kIsas) out.emplace_back(e.name);
  return out;
}

std::vector<std::string> available_isas() {
  std::vector<std::string> out;
  for (const auto& e : kIsas)
    if (e.supported()) out.emplace_back(e.name);
  return out;
}

namespace {
// The default count follows OMP_NUM_THREADS. With OpenMP, the runtime's own value (which
// threadpoolctl can also limit); without it (a build with no OpenMP), the first entry of
// OMP_NUM_THREADS, or the number of hardware threads, read once like an OpenMP runtime does.
int default_num_threads() {
#if defined(_OPENMP)
  return omp_get_max_threads();
#else
  static const int n = [] {
    if (const char* env = std::getenv("OMP_NUM_THREADS")) {
      char* end = nullptr;
      const long v = std::strtol(env, &end, 10);  // "4", or the outer level of "4,2"
      if (end != env && v >= 1 && (*end == '\0' || *end == ',' || *end == ' '))
        return v > 1024 ? 1024 : static_cast<int>(v);
    }
    const unsigned hw = std::thread::hardware_concurrency();
    return hw > 0 ? static_cast<int>(hw) : 1;
  }();
  return n;
#endif
}
}  // namespace

// The count inside `with fastloss.num_threads(n)` on this thread (0: none): a context on one
// Python thread never changes another's.
thread_local int t_threads = 0;

int get_num_threads() {
  if (t_threads > 0) return t_threads;
  int n = g_threads.load();
  return n > 0 ? n : default_num_threads();
}

int swap_thread_num_threads(int n) {
  const int previous = t_threads;
  t_threads = n;
  return previous;
}

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("num_threads must be >= 1");
  g_threads.store(n);
}

}  // namespace fastloss
