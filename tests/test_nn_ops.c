/* nn ops: central-difference gradient checks for every op (input and parameter gradients)
 * on the fp32 engine.
 *
 * Loss L = Σ r·y with fixed random r, so dL/dy = r. For a tensor t (input or parameter)
 * we compare the backprop gradient g_bp with g_fd[i] = (L(t + h e_i) − L(t − h e_i)) / 2h
 * over up to MAX_COORDS coordinates by the normalised error ‖g_bp − g_fd‖ / ‖g_fd‖.
 * The forward is fp32, so L carries relative rounding ~1e-7·sqrt(#terms); with h = 1e-2
 * the difference quotient keeps ~1e-4 relative accuracy and the truncation error is
 * O(h²·L''') — zero for the piecewise-linear ops (conv, linear, add, PReLU away from 0,
 * dropout) and ~1e-4 for batch norm. Tolerance: 1e-2 for every op (stated per case);
 * the whole residual block uses h = 1e-3 and 5e-2: perturbing a batch-norm parameter moves
 * a whole channel, so some PReLU inputs cross 0 whatever the step, and the difference
 * quotient there is off by O(1) for those terms (the same block agrees with PyTorch to
 * ~1e-6 below, which is the sharp check of the composite).
 * ‖g_fd‖ is floored at GRAD_FLOOR so gradients that vanish by construction (a linear bias
 * followed by batch norm) are checked as an absolute error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "nn/graph.h"
#include "support/nn_nets.h"
#include "support/st_fixture.h"

enum { MAX_COORDS = 120 };
#define GRAD_FLOOR 1e-2

typedef fkd_value (*build_fn)(fkd_graph *g, fkd_value x);

typedef struct {
    const char *what;
    int batch, c, h, w;
    build_fn build;
    double step, tol;
    double min_abs_input; /* keep inputs this far from 0 (PReLU's kink) */
    bool eval;            /* run the TRAIN graph in eval mode (running statistics) */
} grad_case;

typedef struct {
    fkd_graph *g;
    fkd_value y;
    float *x, *r;
    int64_t nx, ny;
} harness;

#define OK(expr) assert_int_equal((expr), FKD_OK)

static int64_t value_numel(fkd_graph *g, fkd_value v)
{
    int nd, d[4];
    OK(fkd_graph_shape(g, v, &nd, d));
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= d[i];
    return n;
}

static void fill_uniform(float *a, int64_t n, fkd_rng *rng, double lo, double hi, double min_abs)
{
    for (int64_t i = 0; i < n; i++) {
        double u = lo + (hi - lo) * fkd_rng_uniform(rng);
        if (fabs(u) < min_abs) u = u < 0 ? -min_abs - fabs(u) : min_abs + u;
        a[i] = (float)u;
    }
}

static double loss(harness *h)
{
    OK(fkd_graph_set_input(h->g, "x", h->x));
    OK(fkd_graph_set_step(h->g, 0)); /* the same dropout mask every time */
    OK(fkd_graph_forward(h->g));
    float *y = malloc((size_t)h->ny * sizeof *y);
    assert_non_null(y);
    OK(fkd_graph_read(h->g, h->y, y));
    double l = 0;
    for (int64_t i = 0; i < h->ny; i++) l += (double)h->r[i] * y[i];
    free(y);
    return l;
}

/* Normalised error of `bp` against central differences of the loss in `t[0..n)`;
 * `apply` writes t back into the graph after each change. */
static double check_tensor(harness *h, float *t, int64_t n, const float *bp, double step,
                           void (*apply)(harness *, float *, int), int index)
{
    double num = 0, den = 0;
    int64_t stride = n > MAX_COORDS ? n / MAX_COORDS : 1;
    for (int64_t i = 0; i < n; i += stride) {
        float saved = t[i];
        t[i] = (float)(saved + step);
        apply(h, t, index);
        double lp = loss(h);
        t[i] = (float)(saved - step);
        apply(h, t, index);
        double lm = loss(h);
        t[i] = saved;
        apply(h, t, index);
        /* The step actually taken in fp32. */
        double taken = (double)(float)(saved + step) - (double)(float)(saved - step);
        double fd = (lp - lm) / taken;
        num += (bp[i] - fd) * (bp[i] - fd);
        den += fd * fd;
    }
    /* A gradient that is zero by construction (a bias before batch norm) is compared in
     * absolute terms: the denominator is floored at GRAD_FLOOR. */
    return sqrt(num) / fmax(sqrt(den), GRAD_FLOOR);
}

static void apply_input(harness *h, float *t, int index)
{
    (void)h, (void)t, (void)index; /* loss() sets the input from h->x */
}

static void apply_param(harness *h, float *t, int index)
{
    OK(fkd_graph_param_write(h->g, index, t));
}

static void run_grad_case(const grad_case *c)
{
    harness h = {0};
    fkd_graph_config cfg = {.batch = c->batch, .mode = FKD_GRAPH_TRAIN, .seed = 7, .input_grad = true};
    OK(fkd_graph_create(&h.g, &cfg));
    fkd_value x = fkd_graph_input(h.g, "x", c->c, c->h, c->w);
    assert_true(x >= 0);
    h.y = c->build(h.g, x);
    if (h.y < 0) fail_msg("%s: %s", c->what, fkd_last_error());
    OK(fkd_graph_finalize(h.g));
    if (c->eval) OK(fkd_graph_set_training(h.g, false));
    h.nx = (int64_t)c->batch * c->c * c->h * c->w;
    h.ny = value_numel(h.g, h.y);
    h.x = malloc((size_t)h.nx * sizeof(float));
    h.r = malloc((size_t)h.ny * sizeof(float));
    fkd_rng rng;
    fkd_rng_seed(&rng, 11, 0);
    fill_uniform(h.x, h.nx, &rng, -1, 1, c->min_abs_input);
    fill_uniform(h.r, h.ny, &rng, -1, 1, 0);

    /* Random parameters (not PyTorch's init, whose BN weight 1 / bias 0 hide mistakes). */
    fkd_param *params;
    int np;
    OK(fkd_graph_params(h.g, &params, &np));
    for (int i = 0; i < np; i++) {
        float *p = malloc((size_t)params[i].numel * sizeof *p);
        /* Buffers: running mean in ±0.8, running variance in [0.5, 1.3]. */
        bool var = params[i].is_buffer && strstr(params[i].name, "running_var");
        fill_uniform(p, params[i].numel, &rng, var ? 0.5 : -0.8, var ? 1.3 : 0.8, 0.05);
        OK(fkd_graph_param_write(h.g, i, p));
        free(p);
    }

    /* Backprop, twice: gradients must accumulate (2×) until zero_grad. */
    float *gx = malloc((size_t)h.nx * sizeof *gx);
    loss(&h);
    OK(fkd_graph_zero_grad(h.g));
    OK(fkd_graph_add_grad(h.g, h.y, h.r));
    OK(fkd_graph_backward(h.g));
    OK(fkd_graph_read_input_grad(h.g, "x", gx));
    double err = check_tensor(&h, h.x, h.nx, gx, c->step, apply_input, -1);
    printf("  %-28s d/dx         rel err %.2e (step %.0e, tol %.0e)\n", c->what, err, c->step, c->tol);
    assert_true(err < c->tol);

    for (int i = 0; i < np; i++) {
        if (params[i].is_buffer) continue;
        int64_t n = params[i].numel;
        float *t = malloc((size_t)n * sizeof *t), *gp = malloc((size_t)n * sizeof *gp);
        OK(fkd_graph_param_read(h.g, i, t));
        /* Fresh backward at the unperturbed point. */
        loss(&h);
        OK(fkd_graph_zero_grad(h.g));
        OK(fkd_graph_add_grad(h.g, h.y, h.r));
        OK(fkd_graph_backward(h.g));
        OK(fkd_graph_param_read_grad(h.g, i, gp));
        err = check_tensor(&h, t, n, gp, c->step, apply_param, i);
        printf("  %-28s d/d%-10s rel err %.2e\n", c->what, params[i].name, err);
        assert_true(err < c->tol);
        free(t);
        free(gp);
    }
    free(gx);
    free(h.x);
    free(h.r);
    fkd_graph_free(h.g);
}

/* ---- the cases ---------------------------------------------------------------------- */

static fkd_value b_conv_s2(fkd_graph *g, fkd_value x)
{
    return fkd_graph_conv(g, "conv", x, 6, 3, 2, 1, 1, true);
}
static fkd_value b_conv_g2(fkd_graph *g, fkd_value x)
{
    return fkd_graph_conv(g, "conv", x, 6, 3, 1, 1, 2, false);
}
/* Grouped convolutions that run facekd's own kernels (lib/nn/conv_grouped.c): 2, 4, 8
 * channels per group, channels a multiple of 16. */
static fkd_value b_conv_grouped_k2(fkd_graph *g, fkd_value x)
{
    /* A plain input: x is reordered to nChw16c, dx goes through a temporary. */
    return fkd_graph_conv(g, "conv", x, 32, 3, 1, 1, 16, true);
}
static fkd_value b_conv_grouped_k4_s2(fkd_graph *g, fkd_value x)
{
    /* A blocked input: dx accumulates straight into its gradient. */
    fkd_value c = fkd_graph_conv(g, "pre", x, 32, 1, 1, 0, 1, false);
    return fkd_graph_conv(g, "conv", c, 32, 3, 2, 1, 8, false);
}
static fkd_value b_conv_grouped_k8_nopad(fkd_graph *g, fkd_value x)
{
    return fkd_graph_conv(g, "conv", x, 16, 3, 1, 0, 2, true);
}
static fkd_value b_conv_dw(fkd_graph *g, fkd_value x)
{
    return fkd_graph_conv(g, "conv", x, 4, 3, 2, 1, 4, false);
}
static fkd_value b_conv_gdc(fkd_graph *g, fkd_value x)
{
    /* MobileFaceNet's global depthwise conv: kernel = the whole (blocked) 5×5 map. */
    fkd_value c = fkd_graph_conv(g, "pw", x, 16, 1, 1, 0, 1, false);
    return fkd_graph_conv(g, "gdc", c, 16, 5, 1, 0, 16, false);
}
static fkd_value b_conv_1x1_wide(fkd_graph *g, fkd_value x)
{
    /* 20 output channels: blocked layouts with padding (16-blocks). */
    return fkd_graph_conv(g, "conv", x, 20, 1, 1, 0, 1, true);
}
static fkd_value b_bn4(fkd_graph *g, fkd_value x)
{
    return fkd_graph_batchnorm(g, "bn", x, 1e-5f, 0.1f);
}
static fkd_value b_bn2(fkd_graph *g, fkd_value x)
{
    fkd_value f = fkd_graph_flatten(g, "flat", x);
    return fkd_graph_batchnorm(g, "bn", f, 1e-5f, 0.1f);
}
static fkd_value b_prelu4(fkd_graph *g, fkd_value x)
{
    return fkd_graph_prelu(g, "prelu", x);
}
static fkd_value b_prelu2(fkd_graph *g, fkd_value x)
{
    return fkd_graph_prelu(g, "prelu", fkd_graph_flatten(g, "flat", x));
}
static fkd_value b_prelu_after_conv(fkd_graph *g, fkd_value x)
{
    /* PReLU on a blocked (nChw16c) value. */
    fkd_value c = fkd_graph_conv(g, "conv", x, 5, 3, 1, 1, 1, false);
    return fkd_graph_prelu(g, "prelu", c);
}
static fkd_value b_add_twice(fkd_graph *g, fkd_value x)
{
    /* x feeds the conv and the add: its gradient is the sum of both paths. */
    fkd_value c = fkd_graph_conv(g, "conv", x, 4, 3, 1, 1, 1, false);
    fkd_value s = fkd_graph_add(g, "add", c, x);
    return fkd_graph_add(g, "add2", s, s);
}
static fkd_value b_residual_chain(fkd_graph *g, fkd_value x)
{
    /* Residual adds whose inputs' gradients become dy's buffer (fkd__grad_alias):
     *   y1 = conv_b(conv_a(h)) + h: both inputs, and h's conv_a adds to it later;
     *   y2 = conv_c(y1) + y1: the branch only (conv_c's backward would read dy where it
     *        writes y1's gradient), y1's is a copy;
     *   y3 = y2 + conv_e(conv_d(y2)): both, the branch first (y2 has two readers);
     * y1 → y2 → y3's buffers chain into one. The head keeps y3's dy shared (an output's is
     * the caller's). */
    fkd_value h = fkd_graph_conv(g, "stem", x, 4, 1, 1, 0, 1, false);
    fkd_value b = fkd_graph_conv(g, "conv_b", fkd_graph_conv(g, "conv_a", h, 4, 3, 1, 1, 1, false), 4, 1, 1, 0, 1, true);
    fkd_value y1 = fkd_graph_add(g, "y1", b, h);
    fkd_value y2 = fkd_graph_add(g, "y2", fkd_graph_conv(g, "conv_c", y1, 4, 3, 1, 1, 1, false), y1);
    fkd_value e = fkd_graph_conv(g, "conv_e", fkd_graph_conv(g, "conv_d", y2, 4, 3, 1, 1, 1, false), 4, 1, 1, 0, 1, true);
    return fkd_graph_conv(g, "head", fkd_graph_add(g, "y3", y2, e), 2, 1, 1, 0, 1, false);
}
static fkd_value b_linear_bias(fkd_graph *g, fkd_value x)
{
    fkd_value f = fkd_graph_flatten(g, "flat", x);
    return fkd_graph_linear(g, "fc", f, 7, true);
}
static fkd_value b_linear_nobias(fkd_graph *g, fkd_value x)
{
    fkd_value f = fkd_graph_flatten(g, "flat", x);
    return fkd_graph_linear(g, "fc", f, 7, false);
}
static fkd_value b_dropout(fkd_graph *g, fkd_value x)
{
    fkd_value c = fkd_graph_conv(g, "conv", x, 4, 1, 1, 0, 1, false);
    return fkd_graph_dropout(g, "drop", c, 0.3f);
}
static fkd_value b_block(fkd_graph *g, fkd_value x)
{
    /* An IResNet block with downsample, then the head: flatten, dropout, fc, features. */
    fkd_value s = fkd_test_iresnet_block(g, x, 8);
    fkd_value f = fkd_graph_flatten(g, "flat", s);
    f = fkd_graph_dropout(g, "drop", f, 0.2f);
    f = fkd_graph_linear(g, "fc", f, 6, true);
    return fkd_graph_batchnorm(g, "features", f, 1e-5f, 0.1f);
}

#define CASE(fn, ...)                                        \
    static void fn(void **state)                             \
    {                                                        \
        (void)state;                                         \
        static const grad_case c = __VA_ARGS__;              \
        run_grad_case(&c);                                   \
    }

CASE(test_grad_conv_stride2_pad_bias, {"conv 3x3 s2 p1 +bias", 2, 3, 7, 7, b_conv_s2, 1e-2, 1e-2, 0, false})
CASE(test_grad_conv_groups2, {"conv 3x3 groups=2", 2, 4, 6, 6, b_conv_g2, 1e-2, 1e-2, 0, false})
CASE(test_grad_conv_grouped_k2, {"grouped conv, 2 ch/group", 2, 32, 5, 5, b_conv_grouped_k2, 1e-2, 1e-2, 0, false})
CASE(test_grad_conv_grouped_k4_s2, {"grouped conv, 4 ch/group s2", 2, 3, 7, 7, b_conv_grouped_k4_s2, 1e-2, 1e-2, 0, false})
CASE(test_grad_conv_grouped_k8, {"grouped conv, 8 ch/group p0", 2, 16, 5, 5, b_conv_grouped_k8_nopad, 1e-2, 1e-2, 0, false})
CASE(test_grad_conv_depthwise, {"conv depthwise 3x3 s2", 2, 4, 7, 7, b_conv_dw, 1e-2, 1e-2, 0, false})
CASE(test_grad_conv_gdc, {"conv 1x1 + depthwise 5x5 (GDC)", 2, 3, 5, 5, b_conv_gdc, 1e-2, 1e-2, 0, false})
CASE(test_grad_conv_1x1_padded_channels, {"conv 1x1 20 out", 2, 3, 4, 4, b_conv_1x1_wide, 1e-2, 1e-2, 0, false})
CASE(test_grad_batchnorm_4d_train, {"batchnorm2d train", 4, 3, 3, 3, b_bn4, 1e-2, 1e-2, 0, false})
CASE(test_grad_batchnorm_4d_eval, {"batchnorm2d eval", 4, 3, 3, 3, b_bn4, 1e-2, 1e-2, 0, true})
CASE(test_grad_batchnorm_2d_train, {"batchnorm1d train", 6, 5, 1, 1, b_bn2, 1e-2, 1e-2, 0, false})
CASE(test_grad_prelu_negative_inputs, {"prelu plain", 2, 3, 4, 4, b_prelu4, 1e-2, 1e-2, 0.05, false})
CASE(test_grad_prelu_2d, {"prelu 2-D (N, F)", 3, 7, 1, 1, b_prelu2, 1e-2, 1e-2, 0.05, false})
CASE(test_grad_prelu_blocked, {"prelu after conv", 2, 3, 4, 4, b_prelu_after_conv, 1e-3, 1e-2, 0, false})
CASE(test_grad_add_value_used_twice, {"add, value used twice", 2, 4, 5, 5, b_add_twice, 1e-2, 1e-2, 0, false})
CASE(test_grad_residual_chain, {"residual adds, shared dy", 2, 3, 5, 5, b_residual_chain, 1e-2, 1e-2, 0, false})
CASE(test_grad_linear_bias, {"flatten + linear +bias", 3, 2, 3, 3, b_linear_bias, 1e-2, 1e-2, 0, false})
CASE(test_grad_linear_nobias, {"flatten + linear", 3, 2, 3, 3, b_linear_nobias, 1e-2, 1e-2, 0, false})
CASE(test_grad_dropout_fixed_mask, {"dropout p=0.3 fixed mask", 2, 3, 4, 4, b_dropout, 1e-2, 1e-2, 0, false})
CASE(test_grad_residual_block, {"residual block + head", 4, 4, 6, 6, b_block, 1e-3, 5e-2, 0, false})

/* Which adds of b_residual_chain hand dy over for free: their backward runs no kernel. */
static void test_residual_adds_share_dy(void **state)
{
    (void)state;
    fkd_graph *g;
    fkd_graph_config cfg = {.batch = 2, .mode = FKD_GRAPH_TRAIN, .seed = 3};
    OK(fkd_graph_create(&g, &cfg));
    fkd_value y = b_residual_chain(g, fkd_graph_input(g, "x", 3, 5, 5));
    OK(fkd_graph_tap(g, "y", y));
    OK(fkd_graph_finalize(g));
    const char *nodes[] = {"y1", "y2", "y3"};
    const bool copies[] = {false, true, false};
    for (int i = 0; i < 3; i++) {
        char impl[256];
        OK(fkd_graph_kernels(g, nodes[i], impl, sizeof impl));
        printf("  %s: %s\n", nodes[i], impl);
        const char *bwd = strstr(impl, "backward");
        assert_true((bwd != NULL) == copies[i]);
    }
    fkd_graph_free(g);
}

/* The grouped-convolution kernels' forward against the definition, summed in double:
 * y[n,o,i,j] = b[o] + Σ_{c in o's group, kh, kw} W[o, c - g·k, kh, kw] · x[n, c, 2i-1+kh, 2j-1+kw].
 * Tolerance 1e-5 relative to the output's norm (fp32 sums of 4·9 terms). */
static void test_grouped_conv_forward_direct(void **state)
{
    (void)state;
    enum { N = 2, C = 32, H = 7, G = 8, K = 4, OH = 4 }; /* stride 2, padding 1 */
    fkd_graph *g;
    fkd_graph_config cfg = {.batch = N, .mode = FKD_GRAPH_INFER, .seed = 3};
    OK(fkd_graph_create(&g, &cfg));
    fkd_value y = fkd_graph_conv(g, "conv", fkd_graph_input(g, "x", C, H, H), C, 3, 2, 1, G, true);
    OK(fkd_graph_tap(g, "y", y));
    OK(fkd_graph_finalize(g));
    char impl[256];
    OK(fkd_graph_kernels(g, "conv", impl, sizeof impl));
    assert_non_null(strstr(impl, "grouped_conv:")); /* :avx512, or :host without AVX-512 */
    static float x[N * C * H * H], w[C * K * 9], b[C], out[N * C * OH * OH];
    fkd_rng rng;
    fkd_rng_seed(&rng, 5, 0);
    fill_uniform(x, N * C * H * H, &rng, -1, 1, 0);
    fill_uniform(w, C * K * 9, &rng, -1, 1, 0);
    fill_uniform(b, C, &rng, -1, 1, 0);
    OK(fkd_graph_param_write(g, 0, w));
    OK(fkd_graph_param_write(g, 1, b));
    OK(fkd_graph_set_input(g, "x", x));
    OK(fkd_graph_forward(g));
    OK(fkd_graph_read(g, y, out));
    double num = 0, den = 0;
    for (int n = 0; n < N; n++)
        for (int o = 0; o < C; o++)
            for (int i = 0; i < OH; i++)
                for (int j = 0; j < OH; j++) {
                    double acc = b[o];
                    for (int c = 0; c < K; c++)
                        for (int kh = 0; kh < 3; kh++)
                            for (int kw = 0; kw < 3; kw++) {
                                int ih = 2 * i - 1 + kh, iw = 2 * j - 1 + kw;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= H) continue;
                                acc += (double)w[(o * K + c) * 9 + kh * 3 + kw] *
                                       x[((n * C + o / K * K + c) * H + ih) * H + iw];
                            }
                    double d = out[((n * C + o) * OH + i) * OH + j] - acc;
                    num += d * d;
                    den += acc * acc;
                }
    printf("  grouped conv forward vs direct: rel err %.2e (tol 1e-5)\n", sqrt(num / den));
    assert_true(sqrt(num / den) < 1e-5);
    fkd_graph_free(g);
}

/* ---- agreement with PyTorch 1.13 (scripts/gen_nn_fixtures.py) ----------------------- */

/* Tolerance: normalised error ‖engine − torch‖ / ‖torch‖ below 1e-4 for outputs, every
 * gradient and the running statistics (fp32 both sides; differences come from summation
 * order, ~1e-6 measured). A reference whose norm is below TORCH_FLOOR (a gradient that
 * vanishes by construction, like a bias ahead of a training-mode batch norm) is compared
 * in absolute terms against that floor. */
#define TORCH_TOL 1e-4
#define TORCH_FLOOR 1e-2

static double rel_err(const float *a, const float *b, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return sqrt(num) / fmax(sqrt(den), TORCH_FLOOR);
}

static const float *fixture(const fkd_test_st *st, const char *name, int64_t expect)
{
    const float *d;
    int64_t n;
    if (fkd_test_st_get(st, name, &d, &n) != FKD_OK) fail_msg("%s", fkd_last_error());
    if (expect >= 0 && n != expect) fail_msg("%s: %s has %ld values, expected %ld", st->path, name, (long)n, (long)expect);
    return d;
}

static void expect_close(const char *file, const char *what, const float *got, const float *want, int64_t n)
{
    double e = rel_err(got, want, n);
    printf("  %-22s %-28s rel err %.1e\n", file, what, e);
    if (!(e < TORCH_TOL)) fail_msg("%s: %s differs from PyTorch: %.3e >= %.0e", file, what, e, TORCH_TOL);
}

static void run_torch_case(const char *file, build_fn build)
{
    char path[256];
    snprintf(path, sizeof path, "tests/fixtures/nn/%s.safetensors", file);
    fkd_test_st st;
    if (fkd_test_st_open(&st, path) != FKD_OK) fail_msg("%s", fkd_last_error());
    int nd;
    int64_t xd[4];
    OK(fkd_test_st_shape(&st, "x", &nd, xd));
    assert_int_equal(nd, 4);

    fkd_graph *g;
    fkd_graph_config cfg = {.batch = (int)xd[0], .mode = FKD_GRAPH_TRAIN, .seed = 3, .input_grad = true};
    OK(fkd_graph_create(&g, &cfg));
    fkd_value y = build(g, fkd_graph_input(g, "x", (int)xd[1], (int)xd[2], (int)xd[3]));
    if (y < 0) fail_msg("%s: %s", file, fkd_last_error());
    OK(fkd_graph_finalize(g));
    fkd_param *params;
    int np;
    OK(fkd_graph_params(g, &params, &np));
    for (int i = 0; i < np; i++) OK(fkd_graph_param_write(g, i, fixture(&st, params[i].name, params[i].numel)));

    int64_t nx = xd[0] * xd[1] * xd[2] * xd[3], ny = value_numel(g, y);
    float *out = malloc((size_t)(nx > ny ? nx : ny) * sizeof *out);
    OK(fkd_graph_set_input(g, "x", fixture(&st, "x", nx)));
    OK(fkd_graph_forward(g));
    OK(fkd_graph_read(g, y, out));
    expect_close(file, "y (train)", out, fixture(&st, "y", ny), ny);

    OK(fkd_graph_zero_grad(g));
    OK(fkd_graph_add_grad(g, y, fixture(&st, "r", ny)));
    OK(fkd_graph_backward(g));
    OK(fkd_graph_read_input_grad(g, "x", out));
    expect_close(file, "dx", out, fixture(&st, "dx", nx), nx);
    for (int i = 0; i < np; i++) {
        char key[128];
        float *p = malloc((size_t)params[i].numel * sizeof *p);
        snprintf(key, sizeof key, params[i].is_buffer ? "after.%s" : "grad.%s", params[i].name);
        if (params[i].is_buffer) OK(fkd_graph_param_read(g, i, p));
        else OK(fkd_graph_param_read_grad(g, i, p));
        expect_close(file, key, p, fixture(&st, key, params[i].numel), params[i].numel);
        free(p);
    }

    OK(fkd_graph_set_training(g, false));
    OK(fkd_graph_forward(g));
    OK(fkd_graph_read(g, y, out));
    expect_close(file, "y (eval, updated stats)", out, fixture(&st, "y_eval", ny), ny);
    free(out);
    fkd_graph_free(g);
    fkd_test_st_close(&st);
}

static fkd_value t_conv_dw8(fkd_graph *g, fkd_value x)
{
    return fkd_graph_conv(g, "conv", x, 8, 3, 2, 1, 8, false);
}
/* A global depthwise conv of 32 channels on 7×7 (MobileFaceNet's GDC, narrower). */
static fkd_value t_conv_gdc32(fkd_graph *g, fkd_value x)
{
    return fkd_graph_conv(g, "conv", x, 32, 7, 1, 0, 32, false);
}
static fkd_value t_bn1d(fkd_graph *g, fkd_value x)
{
    return fkd_graph_batchnorm(g, "bn", fkd_graph_flatten(g, "flat", x), 1e-3f, 0.3f);
}
static fkd_value t_linear_bias(fkd_graph *g, fkd_value x)
{
    return fkd_graph_linear(g, "fc", fkd_graph_flatten(g, "flat", x), 5, true);
}
static fkd_value t_linear_nobias(fkd_graph *g, fkd_value x)
{
    return fkd_graph_linear(g, "fc", fkd_graph_flatten(g, "flat", x), 5, false);
}
static fkd_value t_block(fkd_graph *g, fkd_value x)
{
    fkd_value a = fkd_graph_conv(g, "conv1", x, 8, 3, 2, 1, 1, false);
    a = fkd_graph_prelu(g, "prelu", fkd_graph_batchnorm(g, "bn1", a, 1e-5f, 0.1f));
    fkd_value b = fkd_graph_conv(g, "dw", a, 8, 3, 1, 1, 8, false);
    b = fkd_graph_batchnorm(g, "bn2", b, 1e-5f, 0.1f);
    fkd_value f = fkd_graph_flatten(g, "flat", fkd_graph_add(g, "add", a, b));
    return fkd_graph_batchnorm(g, "features", fkd_graph_linear(g, "fc", f, 6, false), 1e-5f, 0.1f);
}

static fkd_value t_iresnet_block(fkd_graph *g, fkd_value x)
{
    fkd_value f = fkd_graph_flatten(g, "flat", fkd_test_iresnet_block(g, x, 8));
    return fkd_graph_batchnorm(g, "features", fkd_graph_linear(g, "fc", f, 6, true), 1e-5f, 0.1f);
}

#define TORCH_CASE(fn, file, build)  \
    static void fn(void **state)     \
    {                                \
        (void)state;                 \
        run_torch_case(file, build); \
    }

TORCH_CASE(test_torch_conv_stride2_bias, "conv_s2_bias", b_conv_s2)
TORCH_CASE(test_torch_conv_groups2, "conv_groups2", b_conv_g2)
TORCH_CASE(test_torch_conv_depthwise, "conv_depthwise", t_conv_dw8)
TORCH_CASE(test_torch_conv_gdc, "conv_gdc", t_conv_gdc32)

/* The GDC's backward-weights is facekd's pass (conv_global_dw.c), not oneDNN's gemm one;
 * a depthwise conv whose kernel does not cover its input stays on oneDNN. */
static void test_gdc_backward_weights_pass(void **state)
{
    (void)state;
    fkd_graph *g;
    fkd_graph_config cfg = {.batch = 2, .mode = FKD_GRAPH_TRAIN, .seed = 3};
    OK(fkd_graph_create(&g, &cfg));
    fkd_value x = fkd_graph_input(g, "x", 32, 7, 7);
    fkd_value d = fkd_graph_conv(g, "dw", x, 32, 3, 1, 0, 32, false);
    assert_true(fkd_graph_conv(g, "conv", d, 32, 5, 1, 0, 32, false) >= 0);
    OK(fkd_graph_finalize(g));
    assert_true(fkd_test_kernels_mention(g, "conv", "global_dw_bwd_weights:host"));
    assert_false(fkd_test_kernels_mention(g, "conv", "gemm"));
    assert_false(fkd_test_kernels_mention(g, "dw", "global_dw"));
    fkd_graph_free(g);
}
TORCH_CASE(test_torch_batchnorm2d, "bn2d", b_bn4)
TORCH_CASE(test_torch_batchnorm1d, "bn1d", t_bn1d)
TORCH_CASE(test_torch_prelu, "prelu", b_prelu4)
TORCH_CASE(test_torch_linear_bias, "linear_bias", t_linear_bias)
TORCH_CASE(test_torch_linear_nobias, "linear_nobias", t_linear_nobias)
TORCH_CASE(test_torch_block, "block", t_block)
TORCH_CASE(test_torch_iresnet_block, "iresnet_block", t_iresnet_block)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grad_conv_stride2_pad_bias),
        cmocka_unit_test(test_grad_conv_groups2),
        cmocka_unit_test(test_grad_conv_grouped_k2),
        cmocka_unit_test(test_grad_conv_grouped_k4_s2),
        cmocka_unit_test(test_grad_conv_grouped_k8),
        cmocka_unit_test(test_grouped_conv_forward_direct),
        cmocka_unit_test(test_grad_conv_depthwise),
        cmocka_unit_test(test_grad_conv_gdc),
        cmocka_unit_test(test_grad_conv_1x1_padded_channels),
        cmocka_unit_test(test_grad_batchnorm_4d_train),
        cmocka_unit_test(test_grad_batchnorm_4d_eval),
        cmocka_unit_test(test_grad_batchnorm_2d_train),
        cmocka_unit_test(test_grad_prelu_negative_inputs),
        cmocka_unit_test(test_grad_prelu_2d),
        cmocka_unit_test(test_grad_prelu_blocked),
        cmocka_unit_test(test_grad_add_value_used_twice),
        cmocka_unit_test(test_grad_residual_chain),
        cmocka_unit_test(test_residual_adds_share_dy),
        cmocka_unit_test(test_grad_linear_bias),
        cmocka_unit_test(test_grad_linear_nobias),
        cmocka_unit_test(test_grad_dropout_fixed_mask),
        cmocka_unit_test(test_grad_residual_block),
        cmocka_unit_test(test_torch_conv_stride2_bias),
        cmocka_unit_test(test_torch_conv_groups2),
        cmocka_unit_test(test_torch_conv_depthwise),
        cmocka_unit_test(test_torch_conv_gdc),
        cmocka_unit_test(test_gdc_backward_weights_pass),
        cmocka_unit_test(test_torch_batchnorm2d),
        cmocka_unit_test(test_torch_batchnorm1d),
        cmocka_unit_test(test_torch_prelu),
        cmocka_unit_test(test_torch_linear_bias),
        cmocka_unit_test(test_torch_linear_nobias),
        cmocka_unit_test(test_torch_block),
        cmocka_unit_test(test_torch_iresnet_block),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
