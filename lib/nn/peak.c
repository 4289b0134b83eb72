/* Measured arithmetic peak (peak.h). Each kernel keeps 16 independent accumulators in
 * registers — more than an FMA's latency × issue width on current cores (4–6 cycles × 2),
 * so the loop is throughput-bound — and touches no memory. Which kernels may run follows
 * oneDNN's view of the CPU (fkd_shim_isa: CPUID and the OS's register support), so the
 * peak is measured on the instructions the engine's kernels use. */
#include "nn/peak.h"

#include <immintrin.h>
#include <omp.h>
#include <string.h>

#include "core/log.h"
#include "nn/shim.h"

#define ACCUMULATORS 16

static bool isa_has(const char *prefix)
{
    return strncmp(fkd_shim_isa(), prefix, strlen(prefix)) == 0;
}

static bool has_bf16_dot(void)
{
    return isa_has("avx512_core_bf16") || isa_has("avx512_core_amx");
}

/* acc[k] = k in every lane, then `iters` rounds of acc[k] = STEP, fully unrolled (a rolled
 * loop keeps the accumulators in memory). Distinct starting values keep the compiler from
 * computing one accumulator and copying it. */
#define PEAK_ROUNDS(iters, set1, STEP)                                                                     \
    for (int k = 0; k < ACCUMULATORS; k++) acc[k] = set1((float)k);                                       \
    for (long i = 0; i < (iters); i++) {                                                                   \
        _Pragma("GCC unroll 16") for (int k = 0; k < ACCUMULATORS; k++) acc[k] = STEP;                     \
    }

__attribute__((target("avx512f"))) static double sum512(const __m512 *acc)
{
    double sum = 0;
    for (int k = 0; k < ACCUMULATORS; k++) sum += _mm512_reduce_add_ps(acc[k]);
    return sum;
}

__attribute__((target("avx512f"))) static double fma512(long iters)
{
    __m512 acc[ACCUMULATORS];
    const __m512 one = _mm512_set1_ps(1.0f);
    PEAK_ROUNDS(iters, _mm512_set1_ps, _mm512_fmadd_ps(acc[k], one, one))
    return sum512(acc);
}

/* vdpbf16ps: each fp32 lane adds the two products of its pair of bf16 lanes. 0x3f80 is
 * 1.0 in bf16. */
__attribute__((target("avx512f,avx512bf16"))) static double dot512_bf16(long iters)
{
    __m512 acc[ACCUMULATORS];
    const __m512bh one = (__m512bh)_mm512_set1_epi16(0x3f80);
    PEAK_ROUNDS(iters, _mm512_set1_ps, _mm512_dpbf16_ps(acc[k], one, one))
    return sum512(acc);
}

__attribute__((target("avx2,fma"))) static double fma256(long iters)
{
    __m256 acc[ACCUMULATORS];
    const __m256 one = _mm256_set1_ps(1.0f);
    PEAK_ROUNDS(iters, _mm256_set1_ps, _mm256_fmadd_ps(acc[k], one, one))
    float lanes[8];
    double sum = 0;
    for (int k = 0; k < ACCUMULATORS; k++) {
        _mm256_storeu_ps(lanes, acc[k]);
        for (int j = 0; j < 8; j++) sum += lanes[j];
    }
    return sum;
}

double fkd__peak_fp32_kernel(long iters)
{
    if (isa_has("avx512_core")) return fma512(iters);
    if (isa_has("avx2")) return fma256(iters);
    return -1;
}

double fkd__peak_bf16_kernel(long iters)
{
    return has_bf16_dot() ? dot512_bf16(iters) : -1;
}

/* FLOP per loop round and thread: accumulators × lanes × FLOP per lane. */
static double round_flops(bool bf16)
{
    if (bf16) return ACCUMULATORS * 16 * 4.0;
    return ACCUMULATORS * (isa_has("avx512_core") ? 16 : 8) * 2.0;
}

/* Best of three timed parallel runs of `iters` rounds per thread, in GFLOP/s. */
static double best_rate(double (*kernel)(long), long iters, double flops_per_round, int threads)
{
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        double sink = 0, t0 = fkd_now();
#pragma omp parallel num_threads(threads) reduction(+ : sink)
        sink += kernel(iters);
        double dt = fkd_now() - t0;
        /* The sum is checked so the compiler cannot drop the loop, and a wrong count would
         * make the FLOP figure a lie. */
        if (sink <= 0) return 0;
        double rate = flops_per_round * (double)iters * threads / dt / 1e9;
        if (rate > best) best = rate;
    }
    return best;
}

/* Rounds per thread for about `seconds`: time a short run first. */
static long calibrate(double (*kernel)(long), double seconds)
{
    long iters = 1 << 16;
    for (;;) {
        double t0 = fkd_now();
        volatile double keep = kernel(iters);
        (void)keep;
        double dt = fkd_now() - t0;
        if (dt > 0.01 || iters > (1L << 40)) return (long)((double)iters * seconds / (dt > 0 ? dt : 1e-9)) + 1;
        iters *= 4;
    }
}

fkd_status fkd_peak_measure(int threads, double seconds, fkd_peak *out)
{
    memset(out, 0, sizeof *out);
    if (threads < 0 || !(seconds > 0) || seconds > 60)
        return FKD_FAIL(FKD_ERR_ARG, "peak: threads %d, seconds %g out of range", threads, seconds);
    out->threads = threads > 0 ? threads : omp_get_max_threads();
    out->fp32_kernel = isa_has("avx512_core") ? "avx512 vfmadd231ps" : isa_has("avx2") ? "avx2 vfmadd231ps" : "none";
    out->bf16_kernel = has_bf16_dot() ? "avx512_bf16 vdpbf16ps" : "none";
    /* A third of the time per run, three runs per kernel. */
    if (fkd__peak_fp32_kernel(1) > 0)
        out->fp32_gflops = best_rate(fkd__peak_fp32_kernel, calibrate(fkd__peak_fp32_kernel, seconds / 3),
                                     round_flops(false), out->threads);
    if (fkd__peak_bf16_kernel(1) > 0)
        out->bf16_gflops = best_rate(fkd__peak_bf16_kernel, calibrate(fkd__peak_bf16_kernel, seconds / 3),
                                     round_flops(true), out->threads);
    return FKD_OK;
}
