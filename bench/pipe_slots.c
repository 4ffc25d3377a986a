// Which AVX-512 operations take a slot of the multiply/FMA pipe that the transcendental loss
// bodies are bound by. Each test runs 12 independent FMA chains per iteration (the pipe's
// throughput, not their latency, sets the pace) plus 6 independent chains of one other
// operation; the cycles an iteration takes beyond the 12 of the FMAs alone are the slots the
// other operation takes. A division runs on its own unit too: its own line gives its throughput.
//
//   gcc -O2 -march=native bench/pipe_slots.c -o /tmp/pipe_slots && /tmp/pipe_slots
//
// Cycles are counted from the clock measured by a chain of dependent integer additions (one per
// cycle), so they hold whatever the clock; a busy machine makes every line slower alike.
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static double clock_hz(void) {
  long x = 0;
  const long n = 400000000;
  double t = now();
  for (long i = 0; i < n; i++) __asm__ volatile("add $1, %0" : "+r"(x));
  return n / (now() - t);
}

#define R12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define R6(X) X(0) X(1) X(2) X(3) X(4) X(5)
#define DECL_A(i) __m512 a##i = _mm512_set1_ps(1.0f + i * 1e-3f);
#define DECL_D(i) __m512 d##i = _mm512_set1_ps(1.0f + i * 1e-3f);
#define SUM_A(i) s += _mm512_reduce_add_ps(a##i);
#define SUM_D(i) s += _mm512_reduce_add_ps(d##i);
#define FMA(i) a##i = _mm512_fmadd_ps(a##i, m, c);
#define CI(x) _mm512_castps_si512(x)
#define CF(x) _mm512_castsi512_ps(x)
#define OP_NONE(i)
#define OP_ADD(i) d##i = _mm512_add_ps(d##i, c);
#define OP_MAX(i) d##i = _mm512_max_ps(d##i, c);
#define OP_AND(i) d##i = _mm512_and_ps(d##i, m);
#define OP_SCALEF(i) d##i = _mm512_scalef_ps(d##i, c);
#define OP_BLEND(i) d##i = _mm512_mask_blend_ps(k, d##i, c);
#define OP_ZADD(i) d##i = _mm512_maskz_add_ps(k, d##i, c);
#define OP_MMOV(i) d##i = _mm512_mask_mov_ps(d##i, k, c);
#define OP_MSUB(i) d##i = _mm512_mask_sub_ps(d##i, k, c, d##i);
#define OP_CMP(i) d##i = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(d##i, c, _CMP_LT_OQ), d##i, m);
#define OP_TERNLOG(i) d##i = CF(_mm512_ternarylogic_epi32(CI(d##i), CI(c), CI(m), 0xd8));
#define OP_PMOV2M(i) d##i = _mm512_mask_mov_ps(d##i, _mm512_movepi32_mask(CI(d##i)), c);
#define OP_DIV(i) d##i = _mm512_div_ps(c, d##i);
#define OP_DIVPD(i) d##i = _mm512_castpd_ps(_mm512_div_pd(_mm512_castps_pd(c), _mm512_castps_pd(d##i)));
#define OP_DIV1(i) if (i == 0) d0 = _mm512_div_ps(c, d0);
#define OP_DIVPD1(i) if (i == 0) d0 = _mm512_castpd_ps(_mm512_div_pd(_mm512_castps_pd(c), _mm512_castps_pd(d0)));

#define TEST(NAME, NFMA, OP)                                                               \
  {                                                                                        \
    R12(DECL_A) R6(DECL_D) const long n = 20000000;                                        \
    double t = now();                                                                      \
    for (long it = 0; it < n; it++) {                                                      \
      if (NFMA) { R12(FMA) }                                                               \
      R6(OP)                                                                               \
    }                                                                                      \
    t = now() - t;                                                                         \
    float s = 0;                                                                           \
    R12(SUM_A) R6(SUM_D)                                                                   \
    printf("%-44s %6.2f cycles per iteration  (%g)\n", NAME, t * hz / n, (double)s);       \
  }

int main(void) {
  __m512 m = _mm512_set1_ps(0.9999f), c = _mm512_set1_ps(1e-4f);
  __mmask16 k = 0x5555;
  __asm__ volatile("" : "+v"(m), "+v"(c), "+k"(k));  // not constants to the compiler
  double hz = 0;  // the fastest of three: the first runs while the core leaves its idle clock
  for (int i = 0; i < 3; i++) {
    const double h = clock_hz();
    hz = h > hz ? h : hz;
  }
  printf("clock %.2f GHz\n", hz * 1e-9);
  TEST("12 FMA", 1, OP_NONE)
  TEST("12 FMA + 6 add", 1, OP_ADD)
  TEST("12 FMA + 6 max", 1, OP_MAX)
  TEST("12 FMA + 6 and", 1, OP_AND)
  TEST("12 FMA + 6 vscalef", 1, OP_SCALEF)
  TEST("12 FMA + 6 blend", 1, OP_BLEND)
  TEST("12 FMA + 6 zero-masked add", 1, OP_ZADD)
  TEST("12 FMA + 6 masked move", 1, OP_MMOV)
  TEST("12 FMA + 6 merge-masked sub", 1, OP_MSUB)
  TEST("12 FMA + 6 compare (+ blend)", 1, OP_CMP)
  TEST("12 FMA + 6 vpternlogd", 1, OP_TERNLOG)
  TEST("12 FMA + 6 vpmovd2m (+ masked move)", 1, OP_PMOV2M)
  TEST("12 FMA + 1 float32 division", 1, OP_DIV1)
  TEST("12 FMA + 1 float64 division", 1, OP_DIVPD1)
  TEST("6 float32 divisions, nothing else", 0, OP_DIV)
  TEST("6 float64 divisions, nothing else", 0, OP_DIVPD)
  return 0;
}
