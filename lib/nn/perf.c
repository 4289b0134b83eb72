/* Model speed: builds the architecture at the configured batch, runs warm-up steps, then
 * times each step and reports the median (robust when other processes share the cores;
 * the minimum is reported beside it). The input is a fixed pseudo-random batch and the
 * embedding gradient a fixed array: the loss and head are not part of the step. */
#include "nn/perf.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "core/log.h"
#include "core/rng.h"
#include "nn/arch.h"
#include "nn/optim.h"
#include "nn/peak.h"
#include "nn/shim.h"

fkd_perf_config fkd_perf_defaults(void)
{
    return (fkd_perf_config){.arch = "mbf", .precision = FKD_PREC_F32, .batch = 32, .warmup = 3,
                             .steps = 10, .seed = 1};
}

static double load_average(void)
{
    double load = 0;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &load) != 1) load = 0;
        fclose(f);
    }
    return load;
}

static double clock_ghz(void)
{
    double mhz = 0;
    char line[256];
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "cpu MHz", 7) == 0 && sscanf(strchr(line, ':') + 1, "%lf", &mhz) == 1) break;
    fclose(f);
    return mhz / 1000.0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct {
    fkd_graph *g;
    fkd_value emb;
    fkd_optim *optim;
    float *input, *d_emb;
    double *times;
} perf_run;

static fkd_status perf_step(perf_run *p, bool train)
{
    FKD_TRY(fkd_graph_set_input(p->g, "input", p->input));
    FKD_TRY(fkd_graph_forward(p->g));
    if (!train) return FKD_OK;
    FKD_TRY(fkd_graph_zero_grad(p->g));
    FKD_TRY(fkd_graph_add_grad(p->g, p->emb, p->d_emb));
    FKD_TRY(fkd_graph_backward(p->g));
    return fkd_optim_step(p->optim, 1e-4f);
}

static fkd_status perf_build(perf_run *p, const fkd_perf_config *c, fkd_perf_result *r)
{
    fkd_graph_config gc = {.batch = c->batch, .mode = c->train ? FKD_GRAPH_TRAIN : FKD_GRAPH_INFER,
                           .precision = c->precision, .seed = c->seed, .unfused = c->unfused,
                           .direct_conv = c->direct_conv, .keep_activations = c->keep_activations};
    FKD_TRY(fkd_graph_create(&p->g, &gc));
    fkd_value x = fkd_graph_input(p->g, "input", 3, 112, 112);
    fkd_arch_opts o = {.width = c->width};
    FKD_TRY(fkd_arch_build(p->g, c->arch, &o, x, &p->emb));
    double t0 = fkd_now();
    FKD_TRY(fkd_graph_finalize(p->g));
    r->finalize_s = fkd_now() - t0;
    FKD_TRY(fkd_graph_count(p->g, &r->parameters, &r->macs));
    int nd, dims[4];
    FKD_TRY(fkd_graph_shape(p->g, p->emb, &nd, dims));
    size_t n_in = (size_t)c->batch * 3 * 112 * 112, n_emb = (size_t)c->batch * dims[1];
    p->input = malloc(n_in * sizeof *p->input);
    p->d_emb = malloc(n_emb * sizeof *p->d_emb);
    p->times = malloc((size_t)c->steps * sizeof *p->times);
    if (!p->input || !p->d_emb || !p->times) return FKD_FAIL(FKD_ERR_NOMEM, "perf: out of memory");
    fkd_rng rng;
    fkd_rng_seed(&rng, c->seed, 1);
    for (size_t i = 0; i < n_in; i++) p->input[i] = (float)(2 * fkd_rng_uniform(&rng) - 1);
    for (size_t i = 0; i < n_emb; i++) p->d_emb[i] = (float)(1e-3 * fkd_rng_normal(&rng));
    if (!c->train) return FKD_OK;
    fkd_param *params;
    int count;
    FKD_TRY(fkd_graph_params(p->g, &params, &count));
    fkd_optim_config oc = fkd_optim_sgd_defaults();
    fkd_param *lists[1] = {params};
    return fkd_optim_create(&p->optim, &oc, lists, &count, 1);
}

/* c->steps more steps with the graph's profiling on. */
static fkd_status profile_steps(perf_run *p, const fkd_perf_config *c, fkd_perf_result *r)
{
    FKD_TRY(fkd_graph_set_profiling(p->g, true));
    double t0 = fkd_now();
    for (int i = 0; i < c->steps; i++) FKD_TRY(perf_step(p, c->train));
    r->profile_step_s = (fkd_now() - t0) / c->steps;
    return fkd_graph_profile(p->g, &r->profile, &r->profile_rows);
}

void fkd_perf_result_free(fkd_perf_result *r)
{
    if (!r) return;
    free(r->profile);
    r->profile = NULL;
    r->profile_rows = 0;
}

fkd_status fkd_perf_run(const fkd_perf_config *c, fkd_perf_result *r)
{
    memset(r, 0, sizeof *r);
    if (!c || !c->arch) return FKD_FAIL(FKD_ERR_ARG, "perf: no architecture");
    if (c->batch < 1 || c->steps < 1 || c->warmup < 0 || c->threads < 0)
        return FKD_FAIL(FKD_ERR_ARG, "perf: batch %d, steps %d, warm-up %d, threads %d out of range",
                        c->batch, c->steps, c->warmup, c->threads);
    if (c->threads > 0) omp_set_num_threads(c->threads);
    r->threads = omp_get_max_threads();
    r->isa = fkd_shim_isa();
    r->load_before = load_average();
    perf_run p = {0};
    fkd_status s = perf_build(&p, c, r);
    for (int i = 0; i < c->warmup && s == FKD_OK; i++) s = perf_step(&p, c->train);
    for (int i = 0; i < c->steps && s == FKD_OK; i++) {
        double t0 = fkd_now();
        s = perf_step(&p, c->train);
        p.times[i] = fkd_now() - t0;
    }
    if (s == FKD_OK) {
        qsort(p.times, (size_t)c->steps, sizeof *p.times, cmp_double);
        int m = c->steps / 2;
        r->step_median_s = c->steps % 2 ? p.times[m] : 0.5 * (p.times[m - 1] + p.times[m]);
        r->step_min_s = p.times[0];
        r->images_per_s = c->batch / r->step_median_s;
        r->gflops = 2.0 * (double)r->macs * (c->train ? 3 : 1) * r->images_per_s / 1e9;
        r->clock_ghz = clock_ghz();
        r->peak_gflops = r->threads * r->clock_ghz * fkd_shim_flops_per_cycle(c->precision == FKD_PREC_BF16);
        r->peak_fraction = r->peak_gflops > 0 ? r->gflops / r->peak_gflops : 0;
        struct rusage ru;
        if (getrusage(RUSAGE_SELF, &ru) == 0) r->peak_rss_mb = ru.ru_maxrss / 1024.0;
        r->load_after = load_average();
    }
    if (s == FKD_OK && c->profile) s = profile_steps(&p, c, r);
    if (s == FKD_OK && c->measure_peak) {
        fkd_peak pk;
        s = fkd_peak_measure(r->threads, 0.6, &pk);
        r->measured_peak_gflops = c->precision == FKD_PREC_BF16 ? pk.bf16_gflops : pk.fp32_gflops;
        r->measured_peak_fraction = r->measured_peak_gflops > 0 ? r->gflops / r->measured_peak_gflops : 0;
    }
    fkd_optim_free(p.optim);
    fkd_graph_free(p.g);
    free(p.input);
    free(p.d_emb);
    free(p.times);
    return s == FKD_OK ? FKD_OK : FKD_WRAP(s, "perf: %s %s: ", c->arch, c->train ? "training" : "inference");
}
