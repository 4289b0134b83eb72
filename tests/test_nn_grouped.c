/* facekd's grouped-convolution kernels (lib/nn/conv_grouped.c): the AVX-512 ones
 * ("grouped_conv:avx512", register-blocked, backward as a data gather and a weights pass)
 * against the generic ones ("grouped_conv:host", fkd__conv_grouped_force_generic) on the
 * same machine, against central differences, and the write-vs-accumulate contract of dx.
 *
 * The networks (TRAIN, config.input_grad), C = 32 channels (two nChw16c blocks):
 *   plain:    x (N, C, H, W) → grouped 3×3 (stride S, pad 1, C/k groups, ± bias) → out
 *   pre:      x → pre (1×1 conv C→C, oneDNN, nChw16c out) → a → grouped(a) → out
 *             (a's gradient is the grouped node's alone: it writes it, "fresh")
 *   residual: x → pre → a → grouped(a) + a → out
 *             (a has two consumers: the grouped backward adds into a's gradient in the
 *             kernel, no separate accumulation step)
 * Shapes: 7×9, 5×29 (a row of 29 = 14 + 14 + 1 output pixels at stride 1: every block
 * size of the row kernels) and 56×56 (MobileFaceNet's layer: 4 × 14), strides 1 and 2,
 * k = 2, 4, 8, N = 3 and 9 (9 images in 8 chunks: uneven chunks).
 *
 * Tolerances, max |a − b| ≤ tol · max |b| over each tensor (each parameter on its own):
 *   TOL_F32   1e-5  fast vs generic, fp32: the same products, summed in another order
 *                   (9k terms per output, ≤ 9k·N·H·W per weight gradient).
 *   TOL_BF16  8e-3  fast vs generic, bf16: y and dx are each path's fp32 sum rounded once
 *                   to bf16; where the two fp32 sums straddle a rounding boundary they land
 *                   one bf16 step (2^-8 relative) apart, and that difference flows on
 *                   through pre's backward (dx) and its weight gradient; the grouped
 *                   weight gradients sum the same bf16 values (x = pre's output, dy) in
 *                   fp32 and stay within TOL_F32 of each other in practice.
 *   TOL_SUM   1e-5  (fp32) residual dL/dx = pre-graph dL/dx + dL/dx of pre alone with the
 *                   same dy: linearity, so only summation order differs.
 *   TOL_FD    1e-3  central differences (fp32, step 1e-2, L = Σ r·out in double): the
 *                   convolution is linear in each of x, W, b, so the difference quotient
 *                   is exact but for the fp32 rounding of out (~1e-7 · |out|, divided by
 *                   2·step).
 *   dW, db with 1 and 2 OpenMP threads (plain net, fast path): bit for bit, memcmp.
 *   Two steps with zero_grad between on the same inputs: bit for bit (a fresh dx that
 *   accumulated onto the previous step's would double). */
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
#include "nn/conv_grouped.h"
#include "nn/graph.h"
#include "nn/shim.h"
#include "support/nn_nets.h"

#define OK(expr) assert_int_equal((expr), FKD_OK)

enum { C = 32 };
#define TOL_F32 1e-5
#define TOL_BF16 8e-3
#define TOL_SUM 1e-5
#define TOL_FD 1e-3
#define FD_STEP 1e-2

typedef enum { NET_PLAIN, NET_PRE, NET_RESIDUAL, NET_PRE_ONLY } net_kind;

typedef struct {
    int k, stride, h, w, n;
    bool bias;
    net_kind net;
} shape;

/* One built graph and what a step read from it. */
typedef struct {
    fkd_graph *g;
    fkd_value out;
    fkd_param *p;
    int np;
    size_t nx, ny, ngrad;
    float *y, *dx, *grad; /* grad: every trainable parameter's gradient in parameter order */
} net;

static int out_size(int in, int stride)
{
    return (in + 2 - 3) / stride + 1;
}

static float *draw(size_t n, uint64_t stream, double lo, double hi)
{
    float *a = fkd_test_uniform(n, 41, stream, lo, hi);
    assert_non_null(a);
    return a;
}

/* Parameters in ±sqrt(3 / fan-in) (biases in ±0.5), the same for every graph of a shape:
 * stream = a hash of the parameter's name, so pre.weight is the same in the pre-only net. */
static void write_params(net *m)
{
    for (int i = 0; i < m->np; i++) {
        uint64_t stream = 0;
        for (const char *s = m->p[i].name; *s; s++) stream = stream * 31 + (unsigned char)*s;
        double hi = m->p[i].ndims == 4 ? sqrt(3.0 * (double)m->p[i].dims[0] / (double)m->p[i].numel) : 0.5;
        float *v = draw((size_t)m->p[i].numel, stream, -hi, hi);
        OK(fkd_graph_param_write(m->g, i, v));
        free(v);
    }
}

/* Builds sp's network in `prec` (generic kernels when `generic`); false when the CPU has
 * no bf16 path. */
static bool build(net *m, const shape *sp, fkd_precision prec, bool generic)
{
    memset(m, 0, sizeof *m);
    if (prec == FKD_PREC_BF16 && !fkd_shim_bf16_ok()) return false;
    fkd__conv_grouped_force_generic(generic);
    fkd_graph_config cfg = {.batch = sp->n, .mode = FKD_GRAPH_TRAIN, .precision = prec, .seed = 3, .input_grad = true};
    OK(fkd_graph_create(&m->g, &cfg));
    fkd_value a = fkd_graph_input(m->g, "x", C, sp->h, sp->w);
    if (sp->net != NET_PLAIN) a = fkd_graph_conv(m->g, "pre", a, C, 1, 1, 0, 1, false);
    m->out = a;
    if (sp->net != NET_PRE_ONLY) m->out = fkd_graph_conv(m->g, "conv", a, C, 3, sp->stride, 1, C / sp->k, sp->bias);
    if (sp->net == NET_RESIDUAL) m->out = fkd_graph_add(m->g, "add", m->out, a);
    assert_true(m->out >= 0);
    OK(fkd_graph_tap(m->g, "out", m->out));
    OK(fkd_graph_finalize(m->g));
    fkd__conv_grouped_force_generic(false);
    OK(fkd_graph_params(m->g, &m->p, &m->np));
    write_params(m);
    int oh = sp->net == NET_PRE_ONLY ? sp->h : out_size(sp->h, sp->stride);
    int ow = sp->net == NET_PRE_ONLY ? sp->w : out_size(sp->w, sp->stride);
    m->nx = (size_t)sp->n * C * sp->h * sp->w;
    m->ny = (size_t)sp->n * C * oh * ow;
    for (int i = 0; i < m->np; i++) m->ngrad += m->p[i].is_buffer ? 0 : (size_t)m->p[i].numel;
    m->y = malloc(m->ny * sizeof *m->y);
    m->dx = malloc(m->nx * sizeof *m->dx);
    m->grad = malloc(m->ngrad * sizeof *m->grad);
    assert_true(m->y && m->dx && m->grad);
    return true;
}

static void net_free(net *m)
{
    fkd_graph_free(m->g);
    free(m->y), free(m->dx), free(m->grad);
}

/* The grouped node runs the asked path's kernels ("avx512" or "host"); with `alone`, and
 * nothing else (no reorder, no accumulation step). */
static void expect_path(const net *m, const char *path, bool alone)
{
    char impl[256], fwd[64], bwd[64], both[160];
    OK(fkd_graph_kernels(m->g, "conv", impl, sizeof impl));
    snprintf(fwd, sizeof fwd, "grouped_conv:%s", path);
    snprintf(bwd, sizeof bwd, "grouped_conv_bwd:%s", path);
    snprintf(both, sizeof both, "forward: %s; backward: %s", fwd, bwd);
    if (alone) assert_string_equal(impl, both);
    else if (!strstr(impl, fwd) || !strstr(impl, bwd)) fail_msg("want %s and %s: %s", fwd, bwd, impl);
}

/* Forward on x (stream 1), zero_grad, backward from dy (stream 2): out, dL/dx and the
 * parameter gradients into m. */
static void step(net *m)
{
    float *x = draw(m->nx, 1, -1, 1), *dy = draw(m->ny, 2, -1, 1);
    OK(fkd_graph_set_input(m->g, "x", x));
    OK(fkd_graph_forward(m->g));
    OK(fkd_graph_read(m->g, m->out, m->y));
    OK(fkd_graph_zero_grad(m->g));
    OK(fkd_graph_add_grad(m->g, m->out, dy));
    OK(fkd_graph_backward(m->g));
    OK(fkd_graph_read_input_grad(m->g, "x", m->dx));
    float *at = m->grad;
    for (int i = 0; i < m->np; i++)
        if (!m->p[i].is_buffer) {
            OK(fkd_graph_param_read_grad(m->g, i, at));
            at += m->p[i].numel;
        }
    free(x), free(dy);
}

static void expect_close(const char *label, const char *what, const float *a, const float *b, size_t n, double tol)
{
    double e = fkd_test_max_rel(a, b, n);
    if (!(e <= tol)) fail_msg("%s: %s: max |diff| / max |ref| = %.3e > %.0e", label, what, e, tol);
}

/* y, dL/dx and each parameter's gradient of two steps; returns the largest error. */
static double expect_steps_close(const char *label, const net *a, const net *b, double tol)
{
    double worst = fmax(fkd_test_max_rel(a->y, b->y, a->ny), fkd_test_max_rel(a->dx, b->dx, a->nx));
    expect_close(label, "out", a->y, b->y, a->ny, tol);
    expect_close(label, "dL/dx", a->dx, b->dx, a->nx, tol);
    size_t at = 0;
    for (int i = 0; i < a->np; i++) {
        if (a->p[i].is_buffer) continue;
        char what[64];
        snprintf(what, sizeof what, "d/d%s", a->p[i].name);
        expect_close(label, what, a->grad + at, b->grad + at, (size_t)a->p[i].numel, tol);
        worst = fmax(worst, fkd_test_max_rel(a->grad + at, b->grad + at, (size_t)a->p[i].numel));
        at += (size_t)a->p[i].numel;
    }
    return worst;
}

static const char *net_name(net_kind k)
{
    return k == NET_PLAIN ? "plain" : k == NET_PRE ? "pre" : k == NET_RESIDUAL ? "residual" : "pre only";
}

static const shape shapes[] = {
    {2, 1, 56, 56, 3, true, NET_PRE},      {2, 1, 56, 56, 3, false, NET_RESIDUAL}, {2, 2, 56, 56, 3, true, NET_PRE},
    {2, 1, 7, 9, 3, true, NET_RESIDUAL},   {2, 2, 7, 9, 9, false, NET_PLAIN},      {2, 2, 5, 29, 3, true, NET_PRE},
    {4, 1, 7, 9, 3, false, NET_PLAIN},     {4, 2, 7, 9, 3, true, NET_PRE},    {4, 1, 5, 29, 9, true, NET_RESIDUAL},
    {8, 1, 7, 9, 3, true, NET_RESIDUAL},   {8, 2, 5, 29, 3, false, NET_PRE},       {8, 2, 7, 9, 3, true, NET_PLAIN},
    {8, 1, 56, 56, 3, false, NET_PRE},
};

/* Every shape in `prec`: the AVX-512 kernels against the generic ones (on CPUs without
 * AVX-512 both graphs run the generic kernels: nothing to compare, said so). */
static void fast_vs_generic(fkd_precision prec, double tol)
{
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
        !__builtin_cpu_supports("avx512dq") || !__builtin_cpu_supports("avx512vl")) {
        printf("  no AVX-512: only the generic kernels run here, skipped\n");
        skip();
    }
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        const shape *sp = &shapes[i];
        net m[2]; /* fast, generic */
        if (!build(&m[0], sp, prec, false)) {
            printf("  this CPU has no bf16 path, skipped\n");
            skip();
        }
        assert_true(build(&m[1], sp, prec, true));
        expect_path(&m[0], "avx512", false);
        expect_path(&m[1], "host", false);
        step(&m[0]);
        step(&m[1]);
        char label[96];
        snprintf(label, sizeof label, "%s k=%d s%d %dx%d N=%d%s %s", prec == FKD_PREC_BF16 ? "bf16" : "fp32", sp->k,
                 sp->stride, sp->h, sp->w, sp->n, sp->bias ? " +bias" : "", net_name(sp->net));
        double worst = expect_steps_close(label, &m[0], &m[1], tol);
        printf("  %-40s fast vs generic: max rel %.1e (tol %.0e)\n", label, worst, tol);
        net_free(&m[0]), net_free(&m[1]);
    }
}

static void test_fast_matches_generic_f32(void **state)
{
    (void)state;
    fast_vs_generic(FKD_PREC_F32, TOL_F32);
}

static void test_fast_matches_generic_bf16(void **state)
{
    (void)state;
    fast_vs_generic(FKD_PREC_BF16, TOL_BF16);
}

/* dx written vs accumulated, on each path: the residual net's dL/dx (the grouped backward
 * adds into a's gradient, which already holds the add's share) equals the pre net's (it
 * writes a's gradient) plus that of pre alone, all from the same dy; and a second step on
 * the same inputs repeats the first bit for bit. */
static void expect_accumulation(fkd_precision prec, double tol)
{
    for (int generic = 0; generic < 2; generic++)
        for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
            shape sp = shapes[i];
            if (sp.stride != 1) continue; /* the add needs out's shape = a's */
            net m[3];
            const net_kind kinds[3] = {NET_RESIDUAL, NET_PRE, NET_PRE_ONLY};
            for (int j = 0; j < 3; j++) {
                sp.net = kinds[j];
                if (!build(&m[j], &sp, prec, generic)) {
                    printf("  this CPU has no bf16 path, skipped\n");
                    skip();
                }
                step(&m[j]);
            }
            /* two kernels and nothing else: a's gradient written, or added to, in the kernel */
            expect_path(&m[0], generic ? "host" : "avx512", true);
            expect_path(&m[1], generic ? "host" : "avx512", true);
            float *first = malloc(m[0].nx * sizeof *first);
            assert_non_null(first);
            memcpy(first, m[0].dx, m[0].nx * sizeof *first);
            step(&m[0]);
            assert_memory_equal(first, m[0].dx, m[0].nx * sizeof *first);
            for (size_t e = 0; e < m[1].nx; e++) m[1].dx[e] += m[2].dx[e];
            char label[96];
            snprintf(label, sizeof label, "%s %s k=%d %dx%d%s", prec == FKD_PREC_BF16 ? "bf16" : "fp32",
                     generic ? "host" : "fast", sp.k, sp.h, sp.w, sp.bias ? " +bias" : "");
            double e = fkd_test_max_rel(m[0].dx, m[1].dx, m[0].nx);
            printf("  %-26s residual dL/dx = pre's + pre-only's: max rel %.1e (tol %.0e)\n", label, e, tol);
            expect_close(label, "residual dL/dx", m[0].dx, m[1].dx, m[0].nx, tol);
            free(first);
            for (int j = 0; j < 3; j++) net_free(&m[j]);
        }
}

static void test_dx_accumulates_f32(void **state)
{
    (void)state;
    expect_accumulation(FKD_PREC_F32, TOL_SUM);
}

/* bf16: the residual graph rounds a's gradient (the add's share plus the grouped one)
 * once, the pre graph rounds the grouped share alone, pre-only the add's share: a few
 * bf16 steps apart after pre's backward. */
static void test_dx_accumulates_bf16(void **state)
{
    (void)state;
    expect_accumulation(FKD_PREC_BF16, TOL_BF16);
}

/* dW, db of the plain net (fast path, 56×56, N = 9) with 1 and with 2 threads: the same
 * bits (each (channel block, image chunk) has its partial, summed in a fixed order). */
static void test_weight_grads_thread_count_free(void **state)
{
    (void)state;
    const shape sp = {2, 1, 56, 56, 9, true, NET_PLAIN};
    net m;
    build(&m, &sp, FKD_PREC_F32, false);
    int threads = omp_get_max_threads();
    float *one = malloc(m.ngrad * sizeof *one);
    assert_non_null(one);
    omp_set_num_threads(1);
    step(&m);
    memcpy(one, m.grad, m.ngrad * sizeof *one);
    omp_set_num_threads(threads > 1 ? threads : 2);
    step(&m);
    omp_set_num_threads(threads);
    printf("  dW, db with 1 and %d threads: %s\n", threads, memcmp(one, m.grad, m.ngrad * sizeof *one) ? "differ" : "the same bits");
    assert_memory_equal(one, m.grad, m.ngrad * sizeof *one);
    free(one);
    net_free(&m);
}

/* L = Σ r·out in double from a forward on x. */
static double loss(net *m, const float *x, const float *r)
{
    OK(fkd_graph_set_input(m->g, "x", x));
    OK(fkd_graph_forward(m->g));
    OK(fkd_graph_read(m->g, m->out, m->y));
    double l = 0;
    for (size_t i = 0; i < m->ny; i++) l += (double)r[i] * m->y[i];
    return l;
}

/* Central differences against backward (dy = r) for every weight, every bias and every
 * fifth input element of the plain net, fp32, on the default (fast where it fits) path. */
static void grad_check(const shape *sp)
{
    net m;
    build(&m, sp, FKD_PREC_F32, false);
    float *x = draw(m.nx, 1, -1, 1), *r = draw(m.ny, 2, -1, 1);
    OK(fkd_graph_set_input(m.g, "x", x));
    OK(fkd_graph_forward(m.g));
    OK(fkd_graph_zero_grad(m.g));
    OK(fkd_graph_add_grad(m.g, m.out, r));
    OK(fkd_graph_backward(m.g));
    OK(fkd_graph_read_input_grad(m.g, "x", m.dx));
    /* dL/dx */
    double d = 0, s = 0;
    for (size_t i = 0; i < m.nx; i += 5) {
        float keep = x[i];
        x[i] = keep + (float)FD_STEP;
        double up = loss(&m, x, r);
        x[i] = keep - (float)FD_STEP;
        double down = loss(&m, x, r);
        x[i] = keep;
        d = fmax(d, fabs((up - down) / (2 * FD_STEP) - m.dx[i]));
        s = fmax(s, fabs(m.dx[i]));
    }
    printf("  k=%d s%d %dx%d  d/dx          rel err %.1e (tol %.0e)\n", sp->k, sp->stride, sp->h, sp->w, d / s, TOL_FD);
    assert_true(d <= TOL_FD * s);
    /* each parameter */
    for (int p = 0; p < m.np; p++) {
        size_t n = (size_t)m.p[p].numel;
        float *v = malloc(n * sizeof *v), *grad = malloc(n * sizeof *grad);
        assert_true(v && grad);
        OK(fkd_graph_param_read(m.g, p, v));
        OK(fkd_graph_param_read_grad(m.g, p, grad));
        d = 0, s = 0;
        for (size_t i = 0; i < n; i++) {
            float keep = v[i];
            v[i] = keep + (float)FD_STEP;
            OK(fkd_graph_param_write(m.g, p, v));
            double up = loss(&m, x, r);
            v[i] = keep - (float)FD_STEP;
            OK(fkd_graph_param_write(m.g, p, v));
            double down = loss(&m, x, r);
            v[i] = keep;
            OK(fkd_graph_param_write(m.g, p, v));
            d = fmax(d, fabs((up - down) / (2 * FD_STEP) - grad[i]));
            s = fmax(s, fabs(grad[i]));
        }
        printf("  k=%d s%d %dx%d  d/d%-11s rel err %.1e (tol %.0e)\n", sp->k, sp->stride, sp->h, sp->w, m.p[p].name,
               d / s, TOL_FD);
        assert_true(d <= TOL_FD * s);
        free(v), free(grad);
    }
    free(x), free(r);
    net_free(&m);
}

static void test_central_differences(void **state)
{
    (void)state;
    const shape cases[] = {{2, 1, 7, 9, 2, true, NET_PLAIN}, {4, 2, 7, 9, 2, true, NET_PLAIN},
                           {8, 1, 5, 6, 2, true, NET_PLAIN}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) grad_check(&cases[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fast_matches_generic_f32),
        cmocka_unit_test(test_fast_matches_generic_bf16),
        cmocka_unit_test(test_dx_accumulates_f32),
        cmocka_unit_test(test_dx_accumulates_bf16),
        cmocka_unit_test(test_weight_grads_thread_count_free),
        cmocka_unit_test(test_central_differences),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
