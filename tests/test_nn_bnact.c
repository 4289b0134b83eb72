/* Batch norm followed by PReLU in TRAIN graphs: the "bn+prelu" fusion (a 4-D batch norm
 * whose output only one PReLU reads, untapped, runs with it as one pass: the normalised
 * value z is never stored; backward gives dx, dγ, dβ, dα in two passes over x and dy).
 * config.unfused switches it off; everything here must hold with it on and off.
 *
 * The network (small: the whole file runs in 0.2 s on an idle machine):
 *   x (4, 16, 6, 6) → conv1 3×3 16→C (pad 1, no bias) → bn (eps 1e-5, momentum 0.1)
 *   → prelu → conv2 1×1 C→16 (+bias) → out (tapped),  C = 32 (24 for the odd-channel case)
 * with γ of both signs (|γ| in [0.5, 1.5]), β in ±0.5, α in [0.1, 0.4], running mean in ±0.3,
 * running variance in [0.5, 1.5]: about half the PReLU's inputs are negative (51 %
 * measured; checked to be within 20–80 %).
 * A "run" is two steps: forward on x₀, zero_grad, backward from dy₀; forward on x₁,
 * backward from dy₁ with NO zero_grad in between (gradients accumulate), reading after
 * each step the output, dL/dx (config.input_grad), every parameter gradient, the running
 * statistics after the forward, conv1's output (bn's input) and the PReLU's output when
 * tapped.
 *
 * Tolerances: max |a − b| ≤ tol · max |b| over each tensor (each parameter on its own).
 *   TOL_F32   1e-5  fused vs unfused fp32: the same arithmetic, only the summation order
 *                   of the statistics and of the backward's channel sums differs.
 *   TOL_SYNC  1e-4  fused vs unfused under sync_bn (one process): the synchronised path
 *                   forms the variance as E[x²] − μ² and adds the backward's mean terms in
 *                   a second pass (tests/test_dist.c states the same bound against
 *                   oneDNN's batch norm).
 *   TOL_BF16  2e-2  fused vs unfused bf16: the fused pass rounds y once, the unfused one
 *                   rounds z to bf16 and then y (2^-9 relative each), dz likewise; the
 *                   gradients' channel sums and dx then carry a few bf16 roundings.
 *   TOL_STATS 1e-4  running statistics in bf16 graphs (each of mean and variance on its
 *                   own): both paths sum the same bf16 values in fp32, so a stale update
 *                   (0.1·(μ₂ − μ₁), ~1e-2 of the largest value here) cannot hide in
 *                   TOL_BF16. fp32 and sync_bn graphs use their own bound (not larger).
 *   TOL_TORCH 1e-4  fp32 engine (fused, default config: Winograd conv1) against PyTorch in
 *                   float64 (tests/fixtures/nn/bnact.safetensors, scripts/
 *                   gen_bnact_fixtures.py): fp32 rounding through two convolutions and the
 *                   batch norm's cancellations.
 *   keep_activations true vs false (the PReLU output recomputed for conv2's backward):
 *                   bit-identical, memcmp.
 *   The forward by its definition (μ, σ² of conv1's output summed in double, then
 *   prelu(γ(x−μ)/√(σ²+ε)+β, α)) and the running statistics' momentum update
 *   ((1−m)·r + m·μ, (1−m)·r + m·σ²·n/(n−1)): TOL_F32, or in bf16 graphs TOL_BF16
 *   (the output, rounded to bf16 once) and TOL_STATS.
 *   Accumulation: the gradients after step 2 equal step 1's plus those of step 2 run alone
 *   (the comparison's own bound: TOL_F32, TOL_SYNC, TOL_BF16).
 *   Central differences (fp32 training mode, L = Σ r·out in double): see
 *   test_central_differences.
 *
 * Which check catches what (test_ names without the prefix):
 *   a wrong dα         fused_matches_unfused_{f32,bf16,sync_bn}, eval_mode_fused_matches_
 *                      unfused, tapped_prelu_output, channels_not_multiple_of_16 (each
 *                      parameter's gradient on its own, after each step); central_differences
 *                      (dα has the tight bound 2e-3: no kink moves when α does);
 *                      matches_pytorch (grad.prelu.weight, grad2.*, grad_eval.*);
 *   a wrong dγ or dβ   the same tests (central differences with bound 1e-2);
 *   a stale or missing running-statistics update
 *                      fused_matches_unfused_* and channels_* (after each of two forwards),
 *                      tapped_prelu_output (the momentum formula from conv1's output after
 *                      each forward), matches_pytorch (after.*, after2.*), and
 *                      eval_mode_fused_matches_unfused (eval leaves them bit for bit);
 *   a missing accumulation over two backward calls
 *                      fused_matches_unfused_* and the 24-channel fp32 case (step 2's
 *                      gradients and dL/dx equal step 1's plus step 2's run alone, on the
 *                      fused graph itself; and fused vs unfused after step 2),
 *                      matches_pytorch (grad2.*, dx2).
 * The placement test (which node fuses, through fkd_graph_kernels) requires the fusion
 * on an AVX-512 CPU, and its absence elsewhere (the graph keeps oneDNN's two ops). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "nn/bnact.h"
#include "nn/graph.h"
#include "nn/shim.h"
#include "support/nn_nets.h"
#include "support/st_fixture.h"

#define OK(expr) assert_int_equal((expr), FKD_OK)

enum { N = 4, CIN = 16, HW = 6, COUT = 16, C_DEFAULT = 32 };
#define EPS 1e-5f
#define MOMENTUM 0.1f

#define TOL_F32 1e-5
#define TOL_SYNC 1e-4
#define TOL_BF16 2e-2
#define TOL_TORCH 1e-4
/* Running statistics: summed in fp32 on every path, also from a bf16 graph's bf16 values. */
#define TOL_STATS 1e-4

typedef struct {
    fkd_precision prec;
    int channels; /* bn's and prelu's (0: C_DEFAULT) */
    bool unfused; /* config.unfused */
    bool keep;    /* config.keep_activations */
    bool tap_act; /* the PReLU output tapped: read, and given a gradient of its own */
    bool tap_bn;  /* the batch norm's output tapped: must stay unfused */
    bool bn_read_twice; /* out = conv2(prelu(z)) + conv3(z): must stay unfused */
    bool sync_bn;
    bool eval;    /* fkd_graph_set_training(false): running statistics */
} spec;

typedef struct {
    fkd_graph *g;
    fkd_value out, act, pre; /* conv2's, prelu's and conv1's (bn's input) outputs */
    int c;
    fkd_param *p;
    int np;
} net;

/* What one run read; slot s is step s. */
typedef struct {
    size_t ny, nx, nc, nstats, ngrad; /* nc: values of conv1's (and prelu's) output */
    float *y[2], *dx[2], *pre[2], *act[2], *stats[2], *grad[2];
    float *stats0; /* running statistics before the first forward */
} run;

static float *draw(size_t n, uint64_t stream, double lo, double hi)
{
    float *a = fkd_test_uniform(n, 77, stream, lo, hi);
    assert_non_null(a);
    return a;
}

static int param_index(const net *m, const char *name)
{
    for (int i = 0; i < m->np; i++)
        if (strcmp(m->p[i].name, name) == 0) return i;
    fail_msg("no parameter %s", name);
    return -1;
}

/* Parameters away from PyTorch's defaults (which hide mistakes: γ = 1, β = 0), the same
 * for every graph of this shape: stream = parameter index. */
static void write_params(net *m)
{
    for (int i = 0; i < m->np; i++) {
        const fkd_param *p = &m->p[i];
        fkd_rng rng;
        fkd_rng_seed(&rng, 5, (uint64_t)i);
        float *v = malloc((size_t)p->numel * sizeof *v);
        assert_non_null(v);
        double lo = -0.2, hi = 0.2; /* conv2.bias */
        if (strcmp(p->name, "bn.bias") == 0) lo = -0.5, hi = 0.5;
        else if (strcmp(p->name, "bn.weight") == 0) lo = 0.5, hi = 1.5;
        else if (strcmp(p->name, "bn.running_mean") == 0) lo = -0.3, hi = 0.3;
        else if (strcmp(p->name, "bn.running_var") == 0) lo = 0.5, hi = 1.5;
        else if (strcmp(p->name, "prelu.weight") == 0) lo = 0.1, hi = 0.4;
        else if (p->ndims == 4) hi = sqrt(3.0 * (double)p->dims[0] / (double)p->numel), lo = -hi;
        for (int64_t k = 0; k < p->numel; k++) {
            v[k] = (float)(lo + (hi - lo) * fkd_rng_uniform(&rng));
            if (strcmp(p->name, "bn.weight") == 0 && fkd_rng_uniform(&rng) < 0.3) v[k] = -v[k];
        }
        OK(fkd_graph_param_write(m->g, i, v));
        free(v);
    }
}

/* Builds the network of `sp`; false when the CPU has no bf16 path (skip). */
static bool build(net *m, const spec *sp)
{
    memset(m, 0, sizeof *m);
    if (sp->prec == FKD_PREC_BF16 && !fkd_shim_bf16_ok()) return false;
    m->c = sp->channels ? sp->channels : C_DEFAULT;
    fkd_graph_config cfg = {.batch = N, .mode = FKD_GRAPH_TRAIN, .precision = sp->prec, .seed = 3,
                            .sync_bn = sp->sync_bn, .unfused = sp->unfused, .keep_activations = sp->keep,
                            .input_grad = true};
    OK(fkd_graph_create(&m->g, &cfg));
    fkd_value x = fkd_graph_input(m->g, "x", CIN, HW, HW);
    m->pre = fkd_graph_conv(m->g, "conv1", x, m->c, 3, 1, 1, 1, false);
    fkd_value z = fkd_graph_batchnorm(m->g, "bn", m->pre, EPS, MOMENTUM);
    m->act = fkd_graph_prelu(m->g, "prelu", z);
    m->out = fkd_graph_conv(m->g, "conv2", m->act, COUT, 1, 1, 0, 1, true);
    if (sp->bn_read_twice) m->out = fkd_graph_add(m->g, "add", m->out, fkd_graph_conv(m->g, "conv3", z, COUT, 1, 1, 0, 1, false));
    assert_true(m->out >= 0);
    OK(fkd_graph_tap(m->g, "out", m->out));
    if (sp->tap_act) OK(fkd_graph_tap(m->g, "act", m->act));
    if (sp->tap_bn) OK(fkd_graph_tap(m->g, "z", z));
    OK(fkd_graph_finalize(m->g));
    OK(fkd_graph_params(m->g, &m->p, &m->np));
    write_params(m);
    OK(fkd_graph_set_training(m->g, !sp->eval));
    return true;
}

static void run_alloc(run *r, const net *m)
{
    memset(r, 0, sizeof *r);
    r->ny = (size_t)N * COUT * HW * HW;
    r->nx = (size_t)N * CIN * HW * HW;
    r->nc = (size_t)N * (size_t)m->c * HW * HW;
    for (int i = 0; i < m->np; i++) *(m->p[i].is_buffer ? &r->nstats : &r->ngrad) += (size_t)m->p[i].numel;
    for (int s = 0; s < 2; s++) {
        r->y[s] = malloc(r->ny * sizeof(float));
        r->dx[s] = malloc(r->nx * sizeof(float));
        r->pre[s] = malloc(r->nc * sizeof(float));
        r->act[s] = malloc(r->nc * sizeof(float));
        r->stats[s] = malloc(r->nstats * sizeof(float));
        r->grad[s] = malloc(r->ngrad * sizeof(float));
        assert_true(r->y[s] && r->dx[s] && r->pre[s] && r->act[s] && r->stats[s] && r->grad[s]);
    }
    r->stats0 = malloc(r->nstats * sizeof(float));
    assert_non_null(r->stats0);
}

static void run_free(run *r)
{
    for (int s = 0; s < 2; s++) free(r->y[s]), free(r->dx[s]), free(r->pre[s]), free(r->act[s]), free(r->stats[s]), free(r->grad[s]);
    free(r->stats0);
}

/* Every buffer (running statistics) or every trainable parameter's gradient, in parameter
 * order, plain layout. */
static void read_all(const net *m, bool grads, float *dst)
{
    for (int i = 0; i < m->np; i++) {
        if (m->p[i].is_buffer == grads) continue;
        OK(grads ? fkd_graph_param_read_grad(m->g, i, dst) : fkd_graph_param_read(m->g, i, dst));
        dst += m->p[i].numel;
    }
}

/* The inputs of step s: x with channel offsets (so the batch mean moves the running mean),
 * dL/dout and dL/dact in ±1. */
static float *step_x(size_t n, int s)
{
    float *x = draw(n, 10 + (uint64_t)s, -1, 1);
    for (size_t i = 0; i < n; i++) x[i] += 0.5f * (float)((i / (HW * HW)) % CIN % 3);
    return x;
}

/* Step s into slot `slot`: forward on x_s, backward from dy_s (and dact_s), after
 * zero_grad when `zero`. */
static void step(net *m, const spec *sp, run *r, int s, int slot, bool zero)
{
    float *x = step_x(r->nx, s), *dy = draw(r->ny, 20 + (uint64_t)s, -1, 1), *dact = draw(r->nc, 30 + (uint64_t)s, -1, 1);
    OK(fkd_graph_set_input(m->g, "x", x));
    OK(fkd_graph_forward(m->g));
    OK(fkd_graph_read(m->g, m->out, r->y[slot]));
    OK(fkd_graph_read(m->g, m->pre, r->pre[slot]));
    if (sp->tap_act) OK(fkd_graph_read(m->g, m->act, r->act[slot]));
    read_all(m, false, r->stats[slot]);
    if (zero) OK(fkd_graph_zero_grad(m->g));
    OK(fkd_graph_add_grad(m->g, m->out, dy));
    if (sp->tap_act) OK(fkd_graph_add_grad(m->g, m->act, dact));
    OK(fkd_graph_backward(m->g));
    OK(fkd_graph_read_input_grad(m->g, "x", r->dx[slot]));
    read_all(m, true, r->grad[slot]);
    free(x), free(dy), free(dact);
}

/* Builds the network of `sp` and runs its two steps into *r (allocated here); false when
 * bf16 is unavailable. The graph stays in *m. */
static bool run_two(net *m, const spec *sp, run *r)
{
    if (!build(m, sp)) return false;
    run_alloc(r, m);
    read_all(m, false, r->stats0);
    step(m, sp, r, 0, 0, true);
    step(m, sp, r, 1, 1, false);
    return true;
}

static void expect_close(const char *label, const char *what, const float *a, const float *b, size_t n, double tol)
{
    double e = fkd_test_max_rel(a, b, n);
    printf("  %-34s %-24s max rel %.1e (tol %.0e)\n", label, what, e, tol);
    if (!(e <= tol)) fail_msg("%s: %s: max |diff| / max |ref| = %.3e > %.0e", label, what, e, tol);
}

/* Each trainable parameter's gradient (or, with `buffers`, each running statistic) in two
 * snapshots of read_all, compared on its own. */
static void expect_params_close(const char *label, const net *m, const float *a, const float *b, bool buffers,
                                int step_no, double tol)
{
    size_t at = 0;
    for (int i = 0; i < m->np; i++) {
        if (m->p[i].is_buffer != buffers) continue;
        char what[64];
        snprintf(what, sizeof what, "%s%s (%d)", buffers ? "" : "d/d", m->p[i].name, step_no);
        expect_close(label, what, a + at, b + at, (size_t)m->p[i].numel, tol);
        at += (size_t)m->p[i].numel;
    }
}

static void expect_runs_close(const char *label, const net *m, const run *a, const run *b, bool acts, double tol,
                              double stats_tol)
{
    for (int s = 0; s < 2; s++) {
        char what[64];
        snprintf(what, sizeof what, "out (%d)", s + 1);
        expect_close(label, what, a->y[s], b->y[s], a->ny, tol);
        expect_params_close(label, m, a->stats[s], b->stats[s], true, s + 1, stats_tol);
        snprintf(what, sizeof what, "dL/dx (%d)", s + 1);
        expect_close(label, what, a->dx[s], b->dx[s], a->nx, tol);
        if (acts) {
            snprintf(what, sizeof what, "prelu output (%d)", s + 1);
            expect_close(label, what, a->act[s], b->act[s], a->nc, tol);
        }
        expect_params_close(label, m, a->grad[s], b->grad[s], false, s + 1, tol);
    }
}

/* Step 2 alone from zero (on the graph that just ran both steps): the gradients after the
 * two steps must be step 1's plus these. */
static void expect_accumulated(const char *label, net *m, const spec *sp, const run *r, double tol)
{
    run alone;
    run_alloc(&alone, m);
    step(m, sp, &alone, 1, 0, true);
    for (size_t i = 0; i < r->ngrad; i++) alone.grad[0][i] += r->grad[0][i];
    for (size_t i = 0; i < r->nx; i++) alone.dx[0][i] += r->dx[0][i];
    expect_params_close(label, m, r->grad[1], alone.grad[0], false, 2, tol);
    expect_close(label, "dL/dx (1 + 2)", r->dx[1], alone.dx[0], r->nx, tol);
    run_free(&alone);
}

/* Runs `sp` with *knob (a flag inside sp) false into m[0], r[0] and true into m[1], r[1];
 * false when the CPU has no bf16 path (said so, nothing left to free). */
static bool run_pair(const char *label, spec *sp, bool *knob, net m[2], run r[2])
{
    for (int k = 0; k < 2; k++) {
        *knob = k == 1;
        if (!run_two(&m[k], sp, &r[k])) {
            printf("  %s: this CPU has no bf16 path, skipped\n", label);
            return false;
        }
    }
    return true;
}

static void pair_free(net m[2], run r[2])
{
    for (int k = 0; k < 2; k++) run_free(&r[k]), fkd_graph_free(m[k].g);
}

/* Builds and runs `sp` fused and unfused and compares them (and, with `accumulation`, the
 * fused graph's step-2 gradients with step 1's plus step 2's alone). */
static void fused_vs_unfused(const char *label, spec sp, double tol, bool accumulation)
{
    net m[2]; /* fused, unfused */
    run r[2];
    if (!run_pair(label, &sp, &sp.unfused, m, r)) return;
    expect_runs_close(label, &m[0], &r[0], &r[1], sp.tap_act, tol, fmin(tol, TOL_STATS));
    if (accumulation) expect_accumulated(label, &m[0], &sp, &r[0], tol);
    pair_free(m, r);
}

/* ---- a, b: training mode, fp32 and bf16 ------------------------------------------------- */

static void test_fused_matches_unfused_f32(void **state)
{
    (void)state;
    fused_vs_unfused("fp32 train", (spec){.prec = FKD_PREC_F32}, TOL_F32, true);
}

static void test_fused_matches_unfused_bf16(void **state)
{
    (void)state;
    if (!fkd_shim_bf16_ok()) {
        printf("  this CPU has no bf16 path (no AVX-512): skipped\n");
        skip();
    }
    fused_vs_unfused("bf16 train", (spec){.prec = FKD_PREC_BF16}, TOL_BF16, true);
}

/* sync_bn in one process: the synchronised statistics are the batch's. */
static void test_fused_matches_unfused_sync_bn(void **state)
{
    (void)state;
    fused_vs_unfused("fp32 train sync_bn", (spec){.prec = FKD_PREC_F32, .sync_bn = true}, TOL_SYNC, true);
}

/* ---- the forward and the running statistics by their definitions ------------------- */

/* prelu(γ(x−μ)/√(σ²+ε)+β, α) from conv1's output x with μ, σ² the batch's (training) or
 * the running statistics before the step (eval), summed in double, against the tapped
 * PReLU output; and the running statistics after each forward: the momentum update of the
 * batch's μ and unbiased σ² (training) or untouched (eval). */
static void expect_definition(const char *label, const net *m, const run *r, bool eval, double tol)
{
    const int c = m->c;
    const size_t hw = HW * HW, per_c = N * hw;
    const float *gamma = NULL, *beta = NULL, *alpha = NULL;
    float *w = malloc((size_t)3 * c * sizeof *w), *ref = malloc(r->nc * sizeof *ref), *expect = malloc(r->nstats * sizeof *expect);
    assert_true(w && ref && expect);
    OK(fkd_graph_param_read(m->g, param_index(m, "bn.weight"), w));
    OK(fkd_graph_param_read(m->g, param_index(m, "bn.bias"), w + c));
    OK(fkd_graph_param_read(m->g, param_index(m, "prelu.weight"), w + 2 * c));
    gamma = w, beta = w + c, alpha = w + 2 * c;
    /* The buffers in parameter order: running_mean (c), running_var (c). */
    assert_int_equal(r->nstats, 2 * (size_t)c);
    int negative = 0;
    for (int s = 0; s < 2; s++) {
        const float *before = s == 0 ? r->stats0 : r->stats[0];
        for (int ch = 0; ch < c; ch++) {
            double sum = 0, sq = 0;
            for (int n = 0; n < N; n++)
                for (size_t k = 0; k < hw; k++) sum += r->pre[s][((size_t)n * c + ch) * hw + k];
            double mu = sum / per_c;
            for (int n = 0; n < N; n++)
                for (size_t k = 0; k < hw; k++) {
                    double d = r->pre[s][((size_t)n * c + ch) * hw + k] - mu;
                    sq += d * d;
                }
            double var = sq / per_c;
            expect[ch] = eval ? before[ch] : (float)((1 - MOMENTUM) * before[ch] + MOMENTUM * mu);
            expect[c + ch] = eval ? before[c + ch] : (float)((1 - MOMENTUM) * before[c + ch] + MOMENTUM * sq / (per_c - 1));
            if (eval) mu = before[ch], var = before[c + ch];
            double inv = 1 / sqrt(var + EPS);
            for (int n = 0; n < N; n++)
                for (size_t k = 0; k < hw; k++) {
                    size_t i = ((size_t)n * c + ch) * hw + k;
                    double z = gamma[ch] * (r->pre[s][i] - mu) * inv + beta[ch];
                    negative += z < 0;
                    ref[i] = (float)(z > 0 ? z : alpha[ch] * z);
                }
        }
        char what[64];
        snprintf(what, sizeof what, "prelu(bn(x)) (%d)", s + 1);
        expect_close(label, what, r->act[s], ref, r->nc, tol);
        snprintf(what, sizeof what, "running stats (%d)", s + 1);
        if (eval) {
            printf("  %-34s %-24s unchanged\n", label, what);
            assert_memory_equal(r->stats[s], expect, r->nstats * sizeof(float));
        } else {
            expect_close(label, what, r->stats[s], expect, r->nstats, fmin(tol, TOL_STATS));
        }
    }
    /* The negative side (α) must matter: between 20 % and 80 % of the PReLU inputs. */
    printf("  %-34s %.0f %% of the PReLU inputs negative\n", label, 100.0 * negative / (2.0 * (double)r->nc));
    assert_true(negative > (int)(0.2 * 2 * (double)r->nc) && negative < (int)(0.8 * 2 * (double)r->nc));
    free(w), free(ref), free(expect);
}

/* ---- c: eval mode in a TRAIN graph ---------------------------------------------------- */

static void test_eval_mode_fused_matches_unfused(void **state)
{
    (void)state;
    fused_vs_unfused("fp32 eval", (spec){.prec = FKD_PREC_F32, .eval = true}, TOL_F32, true);
    net m;
    run r;
    spec sp = {.prec = FKD_PREC_F32, .eval = true, .tap_act = true};
    assert_true(run_two(&m, &sp, &r));
    expect_definition("fp32 eval, definition", &m, &r, true, TOL_F32);
    run_free(&r);
    fkd_graph_free(m.g);
}

/* ---- d: keep_activations true vs false, bit for bit -------------------------------------- */

static void expect_same_bits(const char *label, const char *what, const float *a, const float *b, size_t n)
{
    size_t i = 0;
    while (i < n && memcmp(&a[i], &b[i], sizeof *a) == 0) i++;
    if (i < n) fail_msg("%s: %s differs at %zu: %.9g vs %.9g", label, what, i, (double)a[i], (double)b[i]);
}

static void keep_vs_recompute(const char *label, spec sp)
{
    net m[2]; /* recomputing, keeping */
    run r[2];
    if (!run_pair(label, &sp, &sp.keep, m, r)) return;
    fkd_graph_memory mem[2];
    for (int k = 0; k < 2; k++) OK(fkd_graph_memory_use(m[k].g, &mem[k]));
    /* The PReLU output, read only by conv2, is recomputed (from bn's input when fused). */
    assert_true(mem[0].recomputed >= 1);
    assert_int_equal(mem[1].recomputed, 0);
    for (int s = 0; s < 2; s++) {
        expect_same_bits(label, "out", r[0].y[s], r[1].y[s], r[0].ny);
        expect_same_bits(label, "dL/dx", r[0].dx[s], r[1].dx[s], r[0].nx);
        expect_same_bits(label, "running stats", r[0].stats[s], r[1].stats[s], r[0].nstats);
        expect_same_bits(label, "parameter gradients", r[0].grad[s], r[1].grad[s], r[0].ngrad);
    }
    printf("  %-34s keep_activations true and false: bit-identical (%d value(s) recomputed)\n", label,
           mem[0].recomputed);
    pair_free(m, r);
}

static void test_recompute_bit_identical(void **state)
{
    (void)state;
    keep_vs_recompute("fp32 train", (spec){.prec = FKD_PREC_F32});
    keep_vs_recompute("fp32 eval", (spec){.prec = FKD_PREC_F32, .eval = true});
    keep_vs_recompute("bf16 train", (spec){.prec = FKD_PREC_BF16});
}

/* ---- e: the PReLU output tapped (read, and a gradient added to it) ------------------ */

static void test_tapped_prelu_output(void **state)
{
    (void)state;
    fused_vs_unfused("fp32 train, prelu tapped", (spec){.prec = FKD_PREC_F32, .tap_act = true}, TOL_F32, false);
    fused_vs_unfused("bf16 train, prelu tapped", (spec){.prec = FKD_PREC_BF16, .tap_act = true}, TOL_BF16, false);
    for (int p = 0; p < 2; p++) {
        net m;
        run r;
        spec sp = {.prec = p ? FKD_PREC_BF16 : FKD_PREC_F32, .tap_act = true};
        if (!run_two(&m, &sp, &r)) continue;
        expect_definition(p ? "bf16 train, definition" : "fp32 train, definition", &m, &r, false, p ? TOL_BF16 : TOL_F32);
        run_free(&r);
        fkd_graph_free(m.g);
    }
}

/* ---- f: central differences through the fused graph --------------------------------- */

/* L = Σ r·out in double after a training forward on x (running statistics change, the
 * output does not depend on them). */
static double loss(net *m, const float *x, const float *r, float *y, size_t ny)
{
    OK(fkd_graph_set_input(m->g, "x", x));
    OK(fkd_graph_forward(m->g));
    OK(fkd_graph_read(m->g, m->out, y));
    double l = 0;
    for (size_t i = 0; i < ny; i++) l += (double)r[i] * y[i];
    return l;
}

/* ‖g − fd‖ / ‖fd‖ over up to 64 evenly spaced coordinates of t (n values): fd the central
 * difference with step h (the step taken in fp32). `param` ≥ 0: t is that parameter (written
 * back after each change); -1: t is the input x. */
static double fd_error(net *m, int param, float *t, size_t n, const float *g, double h, float *x, const float *r,
                       float *y, size_t ny)
{
    size_t stride = n > 64 ? n / 64 : 1;
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i += stride) {
        float saved = t[i], up = (float)(saved + h), down = (float)(saved - h);
        double l[2];
        for (int k = 0; k < 2; k++) {
            t[i] = k ? down : up;
            if (param >= 0) OK(fkd_graph_param_write(m->g, param, t));
            l[k] = loss(m, x, r, y, ny);
        }
        t[i] = saved;
        if (param >= 0) OK(fkd_graph_param_write(m->g, param, t));
        double fd = (l[0] - l[1]) / ((double)up - down);
        num += (g[i] - fd) * (g[i] - fd);
        den += fd * fd;
    }
    return sqrt(num / den);
}

/* dx, dγ, dβ, dα of the fused fp32 graph in training mode against central differences of
 * L = Σ r·out. The step and bound per tensor: L, a sum of 2304 fp32 outputs, carries
 * ~1e-5 of rounding, so the step must not be tiny; but γ, β and x move the batch norm's
 * outputs, and a value crossing 0 (the PReLU's kink) within the step makes its difference
 * quotient off by up to half that value's term. α moves no kink: its quotient is exact but
 * for rounding, so dα gets the tight bound. Measured on this branch (the printout):
 * dx 4.2e-3, dγ 1.3e-3, dβ 3.2e-3, dα 7e-5.
 * One OpenMP thread, the graph built that way too: ~330 forwards of a tiny graph, and on a
 * shared, busy machine every parallel region of a 2-thread run waits for a time slice
 * (20 s instead of 0.1 s measured). The multithreaded backward is checked against
 * PyTorch (test_matches_pytorch). */
static void test_central_differences(void **state)
{
    (void)state;
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    net m;
    spec sp = {.prec = FKD_PREC_F32};
    assert_true(build(&m, &sp));
    const size_t nx = (size_t)N * CIN * HW * HW, ny = (size_t)N * COUT * HW * HW;
    float *x = step_x(nx, 0), *r = draw(ny, 40, -1, 1), *y = malloc(ny * sizeof *y), *dx = malloc(nx * sizeof *dx);
    assert_true(y && dx);
    loss(&m, x, r, y, ny);
    OK(fkd_graph_zero_grad(m.g));
    OK(fkd_graph_add_grad(m.g, m.out, r));
    OK(fkd_graph_backward(m.g));
    OK(fkd_graph_read_input_grad(m.g, "x", dx));

    static const struct {
        const char *name; /* NULL: the input */
        double step, tol;
    } cases[] = {{NULL, 1e-3, 2e-2}, {"bn.weight", 1e-4, 1e-2}, {"bn.bias", 1e-4, 1e-2}, {"prelu.weight", 1e-3, 2e-3}};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        double err;
        if (!cases[k].name) {
            err = fd_error(&m, -1, x, nx, dx, cases[k].step, x, r, y, ny);
        } else {
            int i = param_index(&m, cases[k].name);
            size_t n = (size_t)m.p[i].numel;
            float *t = malloc(n * sizeof *t), *g = malloc(n * sizeof *g);
            assert_true(t && g);
            OK(fkd_graph_param_read(m.g, i, t));
            OK(fkd_graph_param_read_grad(m.g, i, g));
            err = fd_error(&m, i, t, n, g, cases[k].step, x, r, y, ny);
            free(t), free(g);
        }
        printf("  central differences d/d%-14s rel err %.2e (step %.0e, tol %.0e)\n", cases[k].name ? cases[k].name : "x",
               err, cases[k].step, cases[k].tol);
        assert_true(err < cases[k].tol);
    }
    free(x), free(r), free(y), free(dx);
    fkd_graph_free(m.g);
    omp_set_num_threads(threads);
}

/* ---- g: PyTorch in float64 (scripts/gen_bnact_fixtures.py) --------------------------- */

static const float *fixture(const fkd_test_st *st, const char *name, size_t expect)
{
    const float *d;
    int64_t n;
    if (fkd_test_st_get(st, name, &d, &n) != FKD_OK) fail_msg("%s", fkd_last_error());
    if ((size_t)n != expect) fail_msg("%s: %s has %lld values, expected %zu", st->path, name, (long long)n, expect);
    return d;
}

/* Each parameter's gradient (prefix "grad.", "grad2.", "grad_eval.") or running statistic
 * ("after.", "after2.") against the fixture. */
static void expect_params_match(const fkd_test_st *st, const net *m, const char *prefix, bool buffers)
{
    for (int i = 0; i < m->np; i++) {
        if (m->p[i].is_buffer != buffers) continue;
        char key[128];
        snprintf(key, sizeof key, "%s%s", prefix, m->p[i].name);
        size_t n = (size_t)m->p[i].numel;
        float *v = malloc(n * sizeof *v);
        assert_non_null(v);
        OK(buffers ? fkd_graph_param_read(m->g, i, v) : fkd_graph_param_read_grad(m->g, i, v));
        expect_close("PyTorch float64", key, v, fixture(st, key, n), n, TOL_TORCH);
        free(v);
    }
}

static void torch_forward(const fkd_test_st *st, net *m, const char *x, const char *y, size_t nx, float *out, size_t ny)
{
    OK(fkd_graph_set_input(m->g, "x", fixture(st, x, nx)));
    OK(fkd_graph_forward(m->g));
    OK(fkd_graph_read(m->g, m->out, out));
    expect_close("PyTorch float64", y, out, fixture(st, y, ny), ny, TOL_TORCH);
}

static void torch_backward(const fkd_test_st *st, net *m, const char *r, const char *dx, size_t nx, float *out, size_t ny)
{
    OK(fkd_graph_add_grad(m->g, m->out, fixture(st, r, ny)));
    OK(fkd_graph_backward(m->g));
    OK(fkd_graph_read_input_grad(m->g, "x", out));
    expect_close("PyTorch float64", dx, out, fixture(st, dx, nx), nx, TOL_TORCH);
}

/* The default fp32 TRAIN graph (fused, Winograd conv1, PReLU output recomputed): two
 * training steps with accumulated gradients, then eval mode on the updated statistics. */
static void test_matches_pytorch(void **state)
{
    (void)state;
    const char *path = "tests/fixtures/nn/bnact.safetensors";
    fkd_test_st st;
    if (fkd_test_st_open(&st, path) != FKD_OK) fail_msg("%s", fkd_last_error());
    net m;
    spec sp = {.prec = FKD_PREC_F32};
    assert_true(build(&m, &sp));
    for (int i = 0; i < m.np; i++) OK(fkd_graph_param_write(m.g, i, fixture(&st, m.p[i].name, (size_t)m.p[i].numel)));
    const size_t nx = (size_t)N * CIN * HW * HW, ny = (size_t)N * COUT * HW * HW;
    float *out = malloc(nx * sizeof *out);
    assert_non_null(out);

    torch_forward(&st, &m, "x", "y", nx, out, ny);
    expect_params_match(&st, &m, "after.", true);
    OK(fkd_graph_zero_grad(m.g));
    torch_backward(&st, &m, "r", "dx", nx, out, ny);
    expect_params_match(&st, &m, "grad.", false);

    torch_forward(&st, &m, "x2", "y2", nx, out, ny);
    expect_params_match(&st, &m, "after2.", true);
    torch_backward(&st, &m, "r2", "dx2", nx, out, ny); /* no zero_grad: accumulated */
    expect_params_match(&st, &m, "grad2.", false);

    OK(fkd_graph_set_training(m.g, false));
    torch_forward(&st, &m, "x", "y_eval", nx, out, ny);
    OK(fkd_graph_zero_grad(m.g));
    torch_backward(&st, &m, "r", "dx_eval", nx, out, ny);
    expect_params_match(&st, &m, "grad_eval.", false);
    expect_params_match(&st, &m, "after2.", true); /* eval leaves them */

    free(out);
    fkd_graph_free(m.g);
    fkd_test_st_close(&st);
}

/* ---- h: channels not a multiple of 16 ------------------------------------------------ */

/* 24 channels: bf16 keeps bn and prelu apart (no nChw16c without padding); fp32 may fuse.
 * Either way fused and unfused configurations agree. */
static void test_channels_not_multiple_of_16(void **state)
{
    (void)state;
    fused_vs_unfused("fp32 train, 24 channels", (spec){.prec = FKD_PREC_F32, .channels = 24}, TOL_F32, true);
    fused_vs_unfused("bf16 train, 24 channels", (spec){.prec = FKD_PREC_BF16, .channels = 24}, TOL_BF16, false);
}

/* ---- which graphs fuse (fkd_graph_kernels) --------------------------------------------- */

/* Whether bn's PReLU reports "fused into" (its kernels into `kernels`); *kept: the bytes
 * the graph keeps for backward (fkd_graph_memory_use). */
static bool prelu_fused(const spec *sp, char *kernels, size_t cap, size_t *kept)
{
    net m;
    if (!build(&m, sp)) return false;
    OK(fkd_graph_kernels(m.g, "prelu", kernels, cap));
    fkd_graph_memory mem;
    OK(fkd_graph_memory_use(m.g, &mem));
    *kept = mem.kept;
    fkd_graph_free(m.g);
    return strstr(kernels, "fused into") != NULL;
}

/* The default fp32 graph fuses: the PReLU names bn, and the graph keeps at least bn's
 * output (N·32·6·6 floats, which nothing stores any more) fewer bytes than with
 * config.unfused. Which other graphs fuse and which must not. */
static void test_which_graphs_fuse(void **state)
{
    (void)state;
    char k[512];
    size_t kept_fused, kept_unfused;
    bool fused = prelu_fused(&(spec){.prec = FKD_PREC_F32}, k, sizeof k, &kept_fused);
    prelu_fused(&(spec){.prec = FKD_PREC_F32, .unfused = true}, k + 256, sizeof k - 256, &kept_unfused);
    printf("  fp32: kept for backward %zu bytes fused, %zu unfused\n", kept_fused, kept_unfused);
    if (!fkd__bnact_available()) {
        printf("  this CPU has no AVX-512: the fusion is off (prelu: \"%s\")\n", k);
        assert_false(fused);
        return;
    }
    assert_true(fused);
    assert_non_null(strstr(k, "fused into 'bn'"));
    assert_true(kept_unfused >= kept_fused + (size_t)N * C_DEFAULT * HW * HW * sizeof(float));
    static const struct {
        const char *what;
        spec sp;
        bool fused;
    } cases[] = {
        {"fp32, prelu output tapped", {.prec = FKD_PREC_F32, .tap_act = true}, true},
        {"fp32, keep_activations", {.prec = FKD_PREC_F32, .keep = true}, true},
        {"fp32, sync_bn", {.prec = FKD_PREC_F32, .sync_bn = true}, true},
        {"fp32, eval mode", {.prec = FKD_PREC_F32, .eval = true}, true},
        {"fp32, config.unfused", {.prec = FKD_PREC_F32, .unfused = true}, false},
        {"fp32, bn output tapped", {.prec = FKD_PREC_F32, .tap_bn = true}, false},
        {"fp32, bn output read twice", {.prec = FKD_PREC_F32, .bn_read_twice = true}, false},
        {"bf16, 32 channels", {.prec = FKD_PREC_BF16}, true},
        {"bf16, 24 channels", {.prec = FKD_PREC_BF16, .channels = 24}, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        if (cases[i].sp.prec == FKD_PREC_BF16 && !fkd_shim_bf16_ok()) continue;
        size_t kept;
        fused = prelu_fused(&cases[i].sp, k, sizeof k, &kept);
        printf("  %-28s prelu: %s\n", cases[i].what, k);
        assert_int_equal(fused, cases[i].fused);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fused_matches_unfused_f32),
        cmocka_unit_test(test_fused_matches_unfused_bf16),
        cmocka_unit_test(test_fused_matches_unfused_sync_bn),
        cmocka_unit_test(test_eval_mode_fused_matches_unfused),
        cmocka_unit_test(test_recompute_bit_identical),
        cmocka_unit_test(test_tapped_prelu_output),
        cmocka_unit_test(test_central_differences),
        cmocka_unit_test(test_matches_pytorch),
        cmocka_unit_test(test_channels_not_multiple_of_16),
        cmocka_unit_test(test_which_graphs_fuse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
