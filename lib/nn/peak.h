/* The arithmetic peak this machine actually delivers, measured: a loop of independent
 * vector multiply-adds per thread (fp32 FMA; bf16 dot products where the CPU has them),
 * no memory traffic. `facekd bench --peak` prints it, and `bench --arch ... --peak` gives
 * a model's GFLOP/s as a fraction of it — a truer yardstick than the nominal peak
 * (threads × clock × the ISA's FLOP/cycle), which assumes two 512-bit FMA units per core
 * and a fixed clock: many CPUs have narrower units (AMD Zen 4 runs 512-bit operations as
 * two 256-bit halves) or turbo above the listed clock.
 *
 *   fkd_peak p;
 *   FKD_TRY(fkd_peak_measure(2, 0.2, &p));   // p.fp32_gflops, p.bf16_gflops (0: none)
 *
 * AMX tiles are not measured (no tile kernel here); on an AMX machine the bf16 figure is
 * the AVX-512 dot-product rate. */
#ifndef FKD_NN_PEAK_H
#define FKD_NN_PEAK_H

#include "core/status.h"

typedef struct {
    int threads;
    double fp32_gflops;      /* 2 FLOP per FMA lane */
    double bf16_gflops;      /* 4 FLOP per dot-product lane (two bf16 products, two adds); 0 without */
    const char *fp32_kernel; /* "avx512 vfmadd231ps", "avx2 vfmadd231ps", or "none" */
    const char *bf16_kernel; /* "avx512_bf16 vdpbf16ps" or "none" */
} fkd_peak;

/* Runs each kernel on `threads` OpenMP threads (0 = OpenMP's default) for about `seconds`
 * (best of three runs: the least disturbed by other work). */
fkd_status fkd_peak_measure(int threads, double seconds, fkd_peak *out);

/* The kernels themselves, for tests: `iters` rounds of 16 independent accumulators,
 * acc = acc·1 + 1 (fp32) or acc += 1·1 + 1·1 (bf16 pairs), accumulator k starting at k.
 * Returns the sum of all lanes of all accumulators — exactly L·(120 + 16·iters) for fp32
 * (L = 16 lanes on AVX-512, 8 on AVX2) and 16·(120 + 32·iters) for bf16 while below 2^24
 * per lane — or -1 when this CPU lacks the instructions. */
double fkd__peak_fp32_kernel(long iters);
double fkd__peak_bf16_kernel(long iters);

#endif
