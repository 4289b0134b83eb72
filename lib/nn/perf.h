/* Speed of a model on this machine: a training step (forward + backward + SGD) or an
 * inference forward, timed over several steps after warm-up, with the work done (GFLOP/s),
 * the fraction of the machine's nominal peak and the peak memory. What `facekd bench
 * --arch` prints; docs/PERFORMANCE.md explains the numbers.
 *
 *   fkd_perf_config c = fkd_perf_defaults();
 *   c.arch = "mbf"; c.train = true; c.batch = 32; c.threads = 2;
 *   fkd_perf_result r;
 *   FKD_TRY(fkd_perf_run(&c, &r));   // r.images_per_s, r.gflops, ...
 */
#ifndef FKD_NN_PERF_H
#define FKD_NN_PERF_H

#include <stdbool.h>
#include <stdint.h>

#include "core/status.h"
#include "nn/graph.h"

typedef struct {
    const char *arch;        /* an fkd_arch name ("iresnet50", "mbf", "r18", ...) */
    int width;               /* base width; 0 = the architecture's (64) */
    bool train;              /* training step, else an INFER graph's forward */
    fkd_precision precision;
    int batch;
    int threads;             /* OpenMP threads; 0 = OpenMP's default */
    int warmup, steps;       /* untimed, then timed steps */
    uint64_t seed;           /* parameters and the synthetic batch */
    bool unfused;            /* inference: no batch-norm folding or fused adds (graph config) */
    bool direct_conv;        /* no Winograd convolutions (graph config) */
    bool keep_activations;   /* training: keep the values recomputed for backward (graph config) */
    bool measure_peak;       /* also measure the machine's arithmetic peak (peak.h) after the run */
    bool profile;            /* after the timed steps, as many profiled ones (fkd_graph_profile) */
} fkd_perf_config;

typedef struct {
    int threads;
    const char *isa;          /* oneDNN's instruction set on this CPU */
    int64_t parameters, macs; /* per image (conv + linear) */
    double finalize_s;        /* building the graph (primitives, buffers) */
    double step_median_s, step_min_s;
    double images_per_s;      /* batch / median step */
    /* 2·MACs per image forward; a training step counts 3× (forward, backward data,
     * backward weights); at the median step. */
    double gflops;
    double peak_gflops;       /* threads × clock × nominal FLOP/cycle (fkd_shim_flops_per_cycle) */
    double peak_fraction;
    /* With measure_peak: the measured peak of the run's precision on its threads (fp32 FMA
     * or bf16 dot products, fkd_peak_measure) and gflops over it; else 0. */
    double measured_peak_gflops, measured_peak_fraction;
    double clock_ghz;         /* from /proc/cpuinfo; 0 when unknown (peak then 0) */
    double peak_rss_mb;       /* the process's peak resident memory so far */
    double load_before, load_after; /* 1-minute load average (other work on the machine) */
    /* With profile: the graph's time by (op, pass, kernels), summed over the profiled
     * steps, and their mean length (the graph's time plus the optimizer's and the
     * inputs'; the profiled steps wait after each node, so they run a little slower). */
    fkd_graph_profile_row *profile;
    int profile_rows;
    double profile_step_s;
} fkd_perf_result;

fkd_perf_config fkd_perf_defaults(void); /* mbf, inference, fp32, batch 32, 3 + 10 steps */
/* On success the caller releases the result with fkd_perf_result_free. */
fkd_status fkd_perf_run(const fkd_perf_config *config, fkd_perf_result *result);
void fkd_perf_result_free(fkd_perf_result *result);

#endif
