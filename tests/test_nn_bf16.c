/* bf16 graphs: bf16 activations and weights (copies of fp32 master weights made each
 * forward), fp32 weight gradients, optimizer and loss. Against the fp32 graph with the same
 * seed (so the same initial weights), inputs and output gradients of bf16 values:
 *   - forward of MobileFaceNet (width 16, its grouped layer on facekd's kernel, bf16 data
 *     like every layer): normalised error < 3e-2 (bf16 keeps 8 bits of mantissa, ~4e-3
 *     per rounding; measured ~8e-3);
 *   - parameter gradients of a conv/BN/PReLU/residual/linear net: each < 1.5e-1 (activation
 *     gradients are bf16 through every layer and batch norm's backward subtracts means, so
 *     the bottom layers' gradients lose most: measured 7e-3 … 3.5e-2, the worst bn2.bias);
 *   - a MobileFaceNet training step with batch norms on running statistics (eval): output
 *     < 3e-2, the whole parameter gradient < 1.5e-1 (measured 1.7e-2), each parameter's
 *     < 4e-1: through ~50 bf16 layers single small tensors (PReLU slopes, depthwise
 *     weights) lose more, measured median 9e-2, worst 2.3e-1 (2.9e-1 when the grouped
 *     layer computed in fp32 between reorders). In train mode the last batch norms, over
 *     4 images × 1×1 pixels of nearly identical embeddings of noise, divide rounding errors
 *     by a spread far below the mean (output 7e-2, gradients that vanish by construction
 *     off by 1e4 relative): a conditioning problem of that test, not of bf16 training;
 *   - facekd's grouped-convolution kernels: bf16 y and dx exactly the fp32 kernel's results
 *     rounded once, dW and db bit for bit (the kernels share their fp32 sums); inside a net
 *     where dx accumulates into a bf16 gradient, < 1e-2;
 *   - learning: the same tiny synthetic classification run (30 SGD steps) in both
 *     precisions; the final losses (mean of the last 5 steps) agree within 10 % relative and
 *     both fall below half the initial loss.
 * Also: INFER graphs remake their bf16 weight copies after param_write, and no node of a
 * bf16 MobileFaceNet training graph runs a oneDNN reference kernel, none reorders around
 * its grouped layer, whose batch norm runs bf16.
 * Skipped (and said so) on CPUs without AVX-512, where bf16 graphs are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "nn/arch.h"
#include "nn/graph.h"
#include "nn/optim.h"
#include "nn/shim.h"
#include "support/nn_nets.h"

#define OK(expr) assert_int_equal((expr), FKD_OK)

/* num += ‖a − b‖², den += ‖b‖². */
static void add_sq(const float *a, const float *b, int64_t n, double *num, double *den)
{
    for (int64_t i = 0; i < n; i++) {
        *num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        *den += (double)b[i] * b[i];
    }
}

static double rel_err(const float *a, const float *b, int64_t n)
{
    double num = 0, den = 0;
    add_sq(a, b, n, &num, &den);
    return sqrt(num / fmax(den, 1e-30));
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static float *random_array(int64_t n, uint64_t seed, double scale)
{
    float *a = malloc((size_t)n * sizeof *a);
    assert_non_null(a);
    fkd_rng rng;
    fkd_rng_seed(&rng, seed, 0);
    for (int64_t i = 0; i < n; i++) a[i] = (float)(scale * (2 * fkd_rng_uniform(&rng) - 1));
    return a;
}

static void test_mbf_forward_close_to_fp32(void **state)
{
    (void)state;
    if (!fkd_shim_bf16_ok()) skip();
    enum { N = 2 };
    float *x = random_array((int64_t)N * 3 * 112 * 112, 1, 1.0), *out[2];
    for (int p = 0; p < 2; p++) {
        fkd_graph *g;
        fkd_graph_config c = {.batch = N, .mode = FKD_GRAPH_INFER, .precision = p ? FKD_PREC_BF16 : FKD_PREC_F32,
                              .seed = 1};
        OK(fkd_graph_create(&g, &c));
        fkd_value e;
        fkd_arch_opts o = {.width = 16};
        OK(fkd_arch_build(g, "mbf", &o, fkd_graph_input(g, "input", 3, 112, 112), &e));
        OK(fkd_graph_finalize(g));
        out[p] = malloc((size_t)N * 512 * sizeof(float));
        OK(fkd_graph_set_input(g, "input", x));
        OK(fkd_graph_forward(g));
        OK(fkd_graph_read(g, e, out[p]));
        fkd_graph_free(g);
    }
    double err = rel_err(out[1], out[0], N * 512);
    printf("  mbf (width 16) embedding, bf16 vs fp32: rel err %.2e (tol 3e-2)\n", err);
    assert_true(err < 3e-2);
    free(x), free(out[0]), free(out[1]);
}

typedef fkd_value (*net_fn)(fkd_graph *g, fkd_value x, const void *arg);

/* A TRAIN graph at `prec` (seed 5, so both precisions start from the same weights):
 * input "x" (c, h, h) → net → *out, tapped. */
static fkd_graph *train_graph(fkd_precision prec, int batch, net_fn net, const void *arg, int c, int h,
                              fkd_value *out)
{
    fkd_graph *g;
    fkd_graph_config cfg = {.batch = batch, .mode = FKD_GRAPH_TRAIN, .precision = prec, .seed = 5, .input_grad = true};
    OK(fkd_graph_create(&g, &cfg));
    fkd_value y = net(g, fkd_graph_input(g, "x", c, h, h), arg);
    assert_true(y >= 0);
    OK(fkd_graph_tap(g, "y", y));
    OK(fkd_graph_finalize(g));
    *out = y;
    return g;
}

/* conv · BN · PReLU · (conv 3x3 s2 + 1x1 s2 downsample) · flatten · linear on (3, 8, 8):
 * 16 channels so the convolutions take oneDNN's blocked bf16 kernels. */
static fkd_value small_net(fkd_graph *g, fkd_value x, const void *arg)
{
    (void)arg;
    fkd_value a = fkd_graph_conv(g, "conv1", x, 16, 3, 1, 1, 1, false);
    a = fkd_graph_batchnorm(g, "bn1", a, 1e-5f, 0.1f);
    a = fkd_graph_prelu(g, "prelu1", a);
    fkd_value b = fkd_graph_conv(g, "conv2", a, 16, 3, 2, 1, 1, false);
    b = fkd_graph_batchnorm(g, "bn2", b, 1e-5f, 0.1f);
    fkd_value d = fkd_graph_conv(g, "down", a, 16, 1, 2, 0, 1, false);
    fkd_value s = fkd_graph_add(g, "add", b, d);
    s = fkd_graph_prelu(g, "prelu2", s);
    return fkd_graph_linear(g, "fc", fkd_graph_flatten(g, "flat", s), 4, true);
}

/* MobileFaceNet at width 16 on (3, 112, 112): its grouped layer runs facekd's kernel. */
static fkd_value mbf_net(fkd_graph *g, fkd_value x, const void *arg)
{
    (void)arg;
    fkd_arch_opts o = {.width = 16};
    fkd_value e;
    fkd_status st = fkd_arch_build(g, "mbf", &o, x, &e);
    return st == FKD_OK ? e : st;
}

/* fp32 → the nearest bf16, ties to even, as fp32 (no NaN or denormal in these tests). */
static float bf16_round(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* What one training step gave: the output, dL/dx, every parameter's gradient (buffers:
 * NULL) and the kernels of the node named "conv" (empty without one). */
enum { MAX_PARAMS = 512 };
typedef struct {
    int64_t ny, nx;
    float *y, *dx;
    int np;
    const char *name[MAX_PARAMS]; /* valid until the graph is freed */
    int64_t numel[MAX_PARAMS];
    float *grad[MAX_PARAMS];
    char conv_kernels[256];
} step_out;

/* One forward and backward of train_graph(prec, ...) from x and dy of bf16 values (seeds
 * 11, 12: both precisions see the same numbers). Fills *o; returns the graph (free it
 * after reading the names). */
static fkd_graph *train_step(fkd_precision prec, int batch, net_fn net, const void *arg, int c, int h, bool eval,
                             step_out *o)
{
    fkd_value y;
    fkd_graph *g = train_graph(prec, batch, net, arg, c, h, &y);
    if (eval) OK(fkd_graph_set_training(g, false));
    int nd, d[4];
    OK(fkd_graph_shape(g, y, &nd, d));
    *o = (step_out){.ny = 1, .nx = (int64_t)batch * c * h * h};
    for (int i = 0; i < nd; i++) o->ny *= d[i];
    float *x = random_array(o->nx, 11, 1.0), *dy = random_array(o->ny, 12, 1.0);
    for (int64_t i = 0; i < o->nx; i++) x[i] = bf16_round(x[i]);
    for (int64_t i = 0; i < o->ny; i++) dy[i] = bf16_round(dy[i]);
    o->y = malloc((size_t)o->ny * sizeof *o->y);
    o->dx = malloc((size_t)o->nx * sizeof *o->dx);
    assert_true(o->y && o->dx);
    OK(fkd_test_forward_backward(g, "x", y, x, dy, o->y, o->dx));
    fkd_param *p;
    OK(fkd_graph_params(g, &p, &o->np));
    assert_true(o->np <= MAX_PARAMS);
    for (int i = 0; i < o->np; i++) {
        o->name[i] = p[i].name;
        o->numel[i] = p[i].numel;
        if (p[i].is_buffer) continue;
        o->grad[i] = malloc((size_t)p[i].numel * sizeof(float));
        assert_non_null(o->grad[i]);
        OK(fkd_graph_param_read_grad(g, i, o->grad[i]));
    }
    if (fkd_graph_kernels(g, "conv", o->conv_kernels, sizeof o->conv_kernels) != FKD_OK) o->conv_kernels[0] = '\0';
    free(x), free(dy);
    return g;
}

static void step_out_free(step_out *o)
{
    free(o->y), free(o->dx);
    for (int i = 0; i < o->np; i++) free(o->grad[i]);
}

/* A bf16 step against the fp32 one (normalised errors, printed): the output within
 * out_tol, the whole parameter gradient (every parameter's concatenated) within grad_tol,
 * each parameter's within worst_tol. */
static void step_close_to_fp32(const char *what, int batch, net_fn net, int c, int h, bool eval, double out_tol,
                               double grad_tol, double worst_tol)
{
    step_out *o = calloc(2, sizeof *o);
    double *errs = calloc(MAX_PARAMS, sizeof *errs);
    assert_true(o && errs);
    fkd_graph *g[2];
    for (int p = 0; p < 2; p++) g[p] = train_step(p ? FKD_PREC_BF16 : FKD_PREC_F32, batch, net, NULL, c, h, eval, &o[p]);
    double err = rel_err(o[1].y, o[0].y, o[0].ny), num = 0, den = 0;
    printf("  %s: output bf16 vs fp32: rel err %.2e (tol %.0e)\n", what, err, out_tol);
    assert_true(err < out_tol);
    const char *worst_name = "";
    int n = 0;
    for (int i = 0; i < o[0].np; i++) {
        if (!o[0].grad[i]) continue;
        errs[n] = rel_err(o[1].grad[i], o[0].grad[i], o[0].numel[i]);
        add_sq(o[1].grad[i], o[0].grad[i], o[0].numel[i], &num, &den);
        if (o[0].np <= 16) printf("  d/d%-12s bf16 vs fp32: rel err %.2e (tol %.1e)\n", o[0].name[i], errs[n], worst_tol);
        if (n == 0 || errs[n] > errs[0]) {
            double t = errs[0]; /* the worst first */
            errs[0] = errs[n], errs[n] = t, worst_name = o[0].name[i];
        }
        n++;
    }
    double whole = sqrt(num / fmax(den, 1e-30)), worst = errs[0];
    qsort(errs, (size_t)n, sizeof *errs, cmp_double);
    printf("  %s: %d parameter gradients bf16 vs fp32: whole %.2e (tol %.1e), median %.2e, worst %.2e (d/d%s, tol "
           "%.1e)\n",
           what, n, whole, grad_tol, errs[n / 2], worst, worst_name, worst_tol);
    assert_true(whole < grad_tol && worst < worst_tol);
    for (int p = 0; p < 2; p++) step_out_free(&o[p]), fkd_graph_free(g[p]);
    free(o), free(errs);
}

static void test_gradients_close_to_fp32(void **state)
{
    (void)state;
    if (!fkd_shim_bf16_ok()) skip();
    step_close_to_fp32("conv/BN/PReLU/residual/linear net", 8, small_net, 3, 8, false, 3e-2, 1.5e-1, 1.5e-1);
}

/* A whole MobileFaceNet training step (its grouped layer on bf16 data between bf16 batch
 * norms and PReLUs): the same bounds. */
static void test_mbf_train_step_close_to_fp32(void **state)
{
    (void)state;
    if (!fkd_shim_bf16_ok()) skip();
    step_close_to_fp32("mbf (width 16) training step", 4, mbf_net, 3, 112, true, 3e-2, 1.5e-1, 4e-1);
}

/* ---- facekd's grouped-convolution kernels on bf16 data (lib/nn/conv_grouped.c) ---------- */

typedef struct {
    const char *what;
    int c, k, stride, pad;
    bool bias;
} grouped_case;

/* One grouped 3×3 conv ("conv") on the plain input: x is reordered into its layout, dx
 * goes through a temporary. */
static fkd_value grouped_net(fkd_graph *g, fkd_value x, const void *arg)
{
    const grouped_case *gc = arg;
    return fkd_graph_conv(g, "conv", x, gc->c, 3, gc->stride, gc->pad, gc->c / gc->k, gc->bias);
}

/* How many of bf[i] differ from f32[i] rounded to the nearest bf16. */
static int64_t not_rounded(const float *bf, const float *f32, int64_t n)
{
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) bad += bf[i] != bf16_round(f32[i]);
    return bad;
}

/* The bf16 kernels widen bf16 exactly and sum in the fp32 kernels' order (weights are fp32
 * in both), so from the same bf16-valued x and dy: y and dx are the fp32 kernels' results
 * rounded once to the nearest bf16, dW and db the fp32 ones bit for bit. Checked exactly
 * (no tolerance), for 2, 4 and 8 channels per group, stride 2, no padding. */
static void test_grouped_conv_bf16_is_fp32_rounded(void **state)
{
    (void)state;
    if (!fkd_shim_bf16_ok()) skip();
    static const grouped_case cases[] = {{"2 ch/group", 32, 2, 1, 1, true},
                                         {"4 ch/group s2", 32, 4, 2, 1, false},
                                         {"8 ch/group p0", 16, 8, 1, 0, true}};
    step_out *o = calloc(2, sizeof *o);
    assert_non_null(o);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const grouped_case *gc = &cases[i];
        fkd_graph *g[2];
        for (int p = 0; p < 2; p++)
            g[p] = train_step(p ? FKD_PREC_BF16 : FKD_PREC_F32, 2, grouped_net, gc, gc->c, 9, false, &o[p]);
        int64_t bad = not_rounded(o[1].y, o[0].y, o[0].ny) + not_rounded(o[1].dx, o[0].dx, o[0].nx);
        int differ = 0;
        for (int k = 0; k < o[0].np; k++)
            differ += memcmp(o[1].grad[k], o[0].grad[k], (size_t)o[0].numel[k] * sizeof(float)) != 0;
        printf("  grouped conv %-13s bf16: y, dx the fp32 kernel's rounded (%ld differ; rel err %.1e, %.1e), "
               "%d of %d parameter gradients differ; %s\n",
               gc->what, (long)bad, rel_err(o[1].y, o[0].y, o[0].ny), rel_err(o[1].dx, o[0].dx, o[0].nx), differ,
               o[0].np, o[1].conv_kernels);
        assert_true(bad == 0 && differ == 0);
        assert_non_null(strstr(o[1].conv_kernels, "grouped_conv:avx512")); /* bf16 graphs need AVX-512 */
        for (int p = 0; p < 2; p++) step_out_free(&o[p]), fkd_graph_free(g[p]);
    }
    free(o);
}

/* pre (1×1 conv, oneDNN, bf16 nChw16c out) → a; a + grouped(a): a has two consumers, so the
 * grouped backward adds into a's bf16 gradient (the add's share already there) inside the
 * kernel: widened, summed in fp32, rounded once. */
static fkd_value grouped_residual_net(fkd_graph *g, fkd_value x, const void *arg)
{
    (void)arg;
    fkd_value a = fkd_graph_conv(g, "pre", x, 32, 1, 1, 0, 1, false);
    return fkd_graph_add(g, "add", fkd_graph_conv(g, "conv", a, 32, 3, 1, 1, 16, true), a);
}

/* Against fp32: a, y, dy·W and the gradients carry one to three bf16 roundings (≤ 2^-9
 * relative each, ~2e-3 as a normalised error over many values), so 1e-2 everywhere. The
 * grouped node runs nothing but its two kernels: no reorder of x, y, dy or dx, no separate
 * accumulation pass. */
static void test_grouped_conv_bf16_accumulates(void **state)
{
    (void)state;
    if (!fkd_shim_bf16_ok()) skip();
    fkd_value y;
    fkd_graph *g = train_graph(FKD_PREC_BF16, 2, grouped_residual_net, NULL, 32, 9, &y);
    char impl[256];
    OK(fkd_graph_kernels(g, "conv", impl, sizeof impl));
    printf("  conv: %s\n", impl);
    assert_string_equal(impl, "forward: grouped_conv:avx512; backward: grouped_conv_bwd:avx512");
    fkd_graph_free(g);
    step_close_to_fp32("1x1 conv, grouped conv, add", 2, grouped_residual_net, 32, 9, false, 1e-2, 1e-2, 1e-2);
}

/* Softmax cross-entropy over 4 logits per row: mean loss, gradient into d. */
static double softmax_ce(const float *logits, const int *labels, int n, float *d)
{
    double loss = 0;
    for (int i = 0; i < n; i++) {
        const float *z = logits + 4 * i;
        double m = fmax(fmax(z[0], z[1]), fmax(z[2], z[3])), s = 0;
        for (int k = 0; k < 4; k++) s += exp(z[k] - m);
        loss += -(z[labels[i]] - m - log(s)) / n;
        for (int k = 0; k < 4; k++) d[4 * i + k] = (float)((exp(z[k] - m) / s - (k == labels[i])) / n);
    }
    return loss;
}

/* 30 steps of SGD on synthetic 8x8 images: class k has a fixed random template, each
 * sample is its template plus 3x larger noise (so the loss stays well above 0). Returns the
 * first and final losses. */
static void train_run(fkd_precision prec, double *first, double *last)
{
    enum { N = 16, STEPS = 30, NX = N * 3 * 64 };
    fkd_value y;
    fkd_graph *g = train_graph(prec, N, small_net, NULL, 3, 8, &y);
    fkd_param *params;
    int np;
    OK(fkd_graph_params(g, &params, &np));
    fkd_optim_config oc = fkd_optim_sgd_defaults();
    fkd_optim *opt;
    fkd_param *lists[1] = {params};
    OK(fkd_optim_create(&opt, &oc, lists, &np, 1));
    float *templates = random_array(4 * 3 * 64, 9, 1.0), x[NX], logits[N * 4], d[N * 4];
    int labels[N];
    fkd_rng rng;
    fkd_rng_seed(&rng, 10, 0);
    double tail = 0;
    for (int step = 0; step < STEPS; step++) {
        for (int i = 0; i < N; i++) {
            labels[i] = (int)fkd_rng_below(&rng, 4);
            for (int k = 0; k < 3 * 64; k++)
                x[i * 192 + k] = templates[labels[i] * 192 + k] + (float)(3 * (2 * fkd_rng_uniform(&rng) - 1));
        }
        OK(fkd_graph_set_input(g, "x", x));
        OK(fkd_graph_forward(g));
        OK(fkd_graph_read(g, y, logits));
        double loss = softmax_ce(logits, labels, N, d);
        if (step == 0) *first = loss;
        if (step >= STEPS - 5) tail += loss / 5;
        OK(fkd_graph_zero_grad(g));
        OK(fkd_graph_add_grad(g, y, d));
        OK(fkd_graph_backward(g));
        OK(fkd_optim_step(opt, 0.05f));
    }
    *last = tail;
    free(templates);
    fkd_optim_free(opt);
    fkd_graph_free(g);
}

static void test_learning_survives_bf16(void **state)
{
    (void)state;
    if (!fkd_shim_bf16_ok()) skip();
    double f32_first, f32_last, bf_first, bf_last;
    train_run(FKD_PREC_F32, &f32_first, &f32_last);
    train_run(FKD_PREC_BF16, &bf_first, &bf_last);
    printf("  fp32 loss %.4f -> %.4f, bf16 %.4f -> %.4f (final losses within 10 %%, both < half the first)\n",
           f32_first, f32_last, bf_first, bf_last);
    assert_true(f32_last < 0.5 * f32_first && bf_last < 0.5 * bf_first);
    assert_true(fabs(bf_last - f32_last) <= 0.10 * f32_last);
}

/* INFER graphs make their bf16 weight copies once, and again after param_write: a graph
 * that ran with its initial weights and then got new ones gives exactly what a fresh graph
 * given the new ones gives (same kernels, so bit-identical). */
static void test_infer_weight_copies_follow_param_write(void **state)
{
    (void)state;
    if (!fkd_shim_bf16_ok()) skip();
    enum { N = 2 };
    float *x = random_array(N * 3 * 64, 4, 1.0), a[N * 16 * 16], b[N * 16 * 16]; /* (N, 16, 4, 4) */
    fkd_graph *g[2];
    fkd_value y[2];
    for (int k = 0; k < 2; k++) {
        fkd_graph_config c = {.batch = N, .mode = FKD_GRAPH_INFER, .precision = FKD_PREC_BF16, .seed = 5};
        OK(fkd_graph_create(&g[k], &c));
        fkd_value v = fkd_graph_conv(g[k], "conv", fkd_graph_input(g[k], "x", 3, 8, 8), 16, 3, 2, 1, 1, true);
        y[k] = fkd_graph_prelu(g[k], "prelu", v);
        OK(fkd_graph_tap(g[k], "y", y[k]));
        OK(fkd_graph_finalize(g[k]));
        OK(fkd_graph_set_input(g[k], "x", x));
    }
    OK(fkd_graph_forward(g[0])); /* copies of the initial weights */
    float *w = random_array(16 * 3 * 9, 6, 0.5), *p = random_array(16, 7, 0.5);
    for (int k = 0; k < 2; k++) {
        OK(fkd_graph_param_write(g[k], 0, w));
        OK(fkd_graph_param_write(g[k], 2, p));
    }
    OK(fkd_graph_forward(g[0]));
    OK(fkd_graph_read(g[0], y[0], a));
    OK(fkd_graph_forward(g[1]));
    OK(fkd_graph_read(g[1], y[1], b));
    assert_memory_equal(a, b, sizeof a);
    fkd_graph_free(g[0]), fkd_graph_free(g[1]);
    free(x), free(w), free(p);
}

/* No oneDNN reference kernel in a bf16 MobileFaceNet training graph (width 16): every node
 * with parameters is found through its parameters' names ("<node>.weight"). */
static void test_no_reference_kernels_bf16(void **state)
{
    (void)state;
    if (!fkd_shim_bf16_ok()) skip();
    fkd_graph *g;
    fkd_graph_config c = {.batch = 2, .mode = FKD_GRAPH_TRAIN, .precision = FKD_PREC_BF16, .seed = 1};
    OK(fkd_graph_create(&g, &c));
    fkd_value e;
    fkd_arch_opts o = {.width = 16};
    OK(fkd_arch_build(g, "mbf", &o, fkd_graph_input(g, "input", 3, 112, 112), &e));
    OK(fkd_graph_finalize(g));
    fkd_param *p;
    int n, checked = 0;
    OK(fkd_graph_params(g, &p, &n));
    for (int i = 0; i < n; i++) {
        const char *dot = strrchr(p[i].name, '.');
        if (!dot || strcmp(dot, ".weight") != 0) continue;
        char node[256], impl[1024];
        snprintf(node, sizeof node, "%.*s", (int)(dot - p[i].name), p[i].name);
        OK(fkd_graph_kernels(g, node, impl, sizeof impl));
        if (strstr(impl, "ref:")) fail_msg("%s: %s", node, impl);
        checked++;
    }
    printf("  %d nodes with weights, no ref: kernel\n", checked);
    assert_true(checked > 50);
    /* The grouped layer reads and writes bf16 nChw16c: no reorder in its node, and the batch
     * norm after it, with the PReLU after that, runs facekd's fused bf16 pass on it
     * (bnact.h); a batch norm with no PReLU after it runs oneDNN's bf16 kernel. */
    char kernels[256];
    OK(fkd_graph_kernels(g, "layers.1.layers.0", kernels, sizeof kernels));
    assert_string_equal(kernels, "forward: grouped_conv:avx512; backward: grouped_conv_bwd:avx512");
    assert_true(fkd_test_kernels_mention(g, "layers.1.layers.1", "bn+prelu forward (facekd)"));
    OK(fkd_graph_kernels(g, "layers.1.layers.2", kernels, sizeof kernels));
    assert_string_equal(kernels, "forward: fused into 'layers.1.layers.1'");
    assert_true(fkd_test_kernels_mention(g, "layers.2.layers.2.layers.1", "bnorm_jit:avx512_core_bf16"));
    fkd_graph_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mbf_forward_close_to_fp32),
        cmocka_unit_test(test_gradients_close_to_fp32),
        cmocka_unit_test(test_mbf_train_step_close_to_fp32),
        cmocka_unit_test(test_grouped_conv_bf16_is_fp32_rounded),
        cmocka_unit_test(test_grouped_conv_bf16_accumulates),
        cmocka_unit_test(test_learning_survives_bf16),
        cmocka_unit_test(test_infer_weight_copies_follow_param_write),
        cmocka_unit_test(test_no_reference_kernels_bf16),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
