/* nn graph: running statistics, eval and inference modes, dropout masks, parameter
 * layouts and initialisation, gradient bookkeeping, counts, names, errors, kernels. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "nn/graph.h"
#include "nn/shim.h"
#include "support/nn_nets.h"

#define OK(expr) assert_int_equal((expr), FKD_OK)

static fkd_graph *new_graph(int batch, fkd_graph_mode mode, uint64_t seed)
{
    fkd_graph *g;
    fkd_graph_config cfg = {.batch = batch, .mode = mode, .seed = seed, .input_grad = true};
    OK(fkd_graph_create(&g, &cfg));
    return g;
}

static void expect_error(fkd_status got, fkd_status want, const char *needle)
{
    assert_int_equal(got, want);
    if (!strstr(fkd_last_error(), needle))
        fail_msg("error '%s' does not mention '%s'", fkd_last_error(), needle);
}

static float *random_array(int64_t n, uint64_t seed)
{
    fkd_rng rng;
    fkd_rng_seed(&rng, seed, 99);
    float *a = malloc((size_t)n * sizeof *a);
    for (int64_t i = 0; i < n; i++) a[i] = (float)(2.0 * fkd_rng_uniform(&rng) - 1.0);
    return a;
}

static int param_index(fkd_graph *g, const char *name)
{
    fkd_param *p;
    int n;
    OK(fkd_graph_params(g, &p, &n));
    for (int i = 0; i < n; i++)
        if (strcmp(p[i].name, name) == 0) return i;
    fail_msg("no parameter %s", name);
    return -1;
}

/* ---- batch norm statistics -------------------------------------------------------- */

/* Per-channel batch mean and biased variance of x (N, C, HW), in double. */
static void channel_stats(const float *x, int n, int c, int hw, int ch, double *mean, double *var)
{
    double s = 0, s2 = 0;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < hw; k++) s += x[((size_t)i * c + ch) * hw + k];
    *mean = s / (n * hw);
    for (int i = 0; i < n; i++)
        for (int k = 0; k < hw; k++) {
            double d = x[((size_t)i * c + ch) * hw + k] - *mean;
            s2 += d * d;
        }
    *var = s2 / (n * hw);
}

static void test_running_stats_and_eval(void **state)
{
    (void)state;
    enum { N = 4, C = 3, H = 2, W = 5 };
    const float mom = 0.1f, eps = 1e-5f;
    fkd_graph *g = new_graph(N, FKD_GRAPH_TRAIN, 1);
    fkd_value x = fkd_graph_input(g, "x", C, H, W);
    fkd_value y = fkd_graph_batchnorm(g, "bn", x, eps, mom);
    OK(fkd_graph_finalize(g));
    float *in = random_array(N * C * H * W, 5);
    for (int i = 0; i < N * C * H * W; i++) in[i] = 3.0f * in[i] + 0.5f; /* mean/var away from 0/1 */
    double rm[C], rv[C];
    for (int c = 0; c < C; c++) rm[c] = 0, rv[c] = 1;
    /* Two training steps: running = (1 − m)·running + m·batch, variance unbiased. */
    for (int step = 0; step < 2; step++) {
        OK(fkd_graph_set_input(g, "x", in));
        OK(fkd_graph_forward(g));
        for (int c = 0; c < C; c++) {
            double mean, var;
            channel_stats(in, N, C, H * W, c, &mean, &var);
            rm[c] = (1 - mom) * rm[c] + mom * mean;
            rv[c] = (1 - mom) * rv[c] + mom * var * (N * H * W) / (N * H * W - 1.0);
        }
    }
    float got_m[C], got_v[C];
    OK(fkd_graph_param_read(g, param_index(g, "bn.running_mean"), got_m));
    OK(fkd_graph_param_read(g, param_index(g, "bn.running_var"), got_v));
    for (int c = 0; c < C; c++) {
        assert_float_equal(got_m[c], rm[c], 1e-5 * (1 + fabs(rm[c])));
        assert_float_equal(got_v[c], rv[c], 1e-5 * (1 + fabs(rv[c])));
    }
    /* Eval: normalised with the running statistics (weight 1, bias 0), stats unchanged. */
    OK(fkd_graph_set_training(g, false));
    OK(fkd_graph_forward(g));
    float *out = malloc(sizeof(float) * N * C * H * W);
    OK(fkd_graph_read(g, y, out));
    for (int i = 0; i < N * C * H * W; i++) {
        int c = (i / (H * W)) % C;
        double want = (in[i] - rm[c]) / sqrt(rv[c] + eps);
        assert_float_equal(out[i], want, 1e-5 * (1 + fabs(want)));
    }
    OK(fkd_graph_param_read(g, param_index(g, "bn.running_mean"), got_m));
    for (int c = 0; c < C; c++) assert_float_equal(got_m[c], rm[c], 1e-5 * (1 + fabs(rm[c])));
    free(in);
    free(out);
    fkd_graph_free(g);
}

/* ---- dropout -------------------------------------------------------------------------- */

static void test_dropout_masks(void **state)
{
    (void)state;
    enum { N = 8, C = 16, H = 8, W = 8, NUM = N * C * H * W };
    const float p = 0.25f;
    fkd_graph *g = new_graph(N, FKD_GRAPH_TRAIN, 42);
    fkd_value x = fkd_graph_input(g, "x", C, H, W);
    fkd_value y = fkd_graph_dropout(g, "drop", x, p);
    OK(fkd_graph_finalize(g));
    float *in = random_array(NUM, 1), *a = malloc(sizeof(float) * NUM), *b = malloc(sizeof(float) * NUM);
    for (int i = 0; i < NUM; i++) in[i] += 2.0f; /* no zeros in the input */
    OK(fkd_graph_set_input(g, "x", in));
    OK(fkd_graph_set_step(g, 7));
    OK(fkd_graph_forward(g));
    OK(fkd_graph_read(g, y, a));
    int dropped = 0;
    for (int i = 0; i < NUM; i++) {
        if (a[i] == 0.0f) dropped++;
        else assert_float_equal(a[i], in[i] / (1 - p), 1e-6 * fabs(in[i]));
    }
    /* 8192 Bernoulli(0.25) draws: std 39; allow 5 sigma. */
    assert_true(abs(dropped - NUM / 4) < 200);
    /* Same step: same mask; the forward advanced the step: next mask differs. */
    OK(fkd_graph_set_step(g, 7));
    OK(fkd_graph_forward(g));
    OK(fkd_graph_read(g, y, b));
    assert_memory_equal(a, b, sizeof(float) * NUM);
    OK(fkd_graph_forward(g));
    OK(fkd_graph_read(g, y, b));
    assert_true(memcmp(a, b, sizeof(float) * NUM) != 0);
    /* Eval: identity. Backward in eval: gradient passes unchanged. */
    OK(fkd_graph_set_training(g, false));
    OK(fkd_graph_forward(g));
    OK(fkd_graph_read(g, y, b));
    assert_memory_equal(in, b, sizeof(float) * NUM);
    OK(fkd_graph_zero_grad(g));
    OK(fkd_graph_add_grad(g, y, in));
    OK(fkd_graph_backward(g));
    OK(fkd_graph_read_input_grad(g, "x", b));
    assert_memory_equal(in, b, sizeof(float) * NUM);
    free(in);
    free(a);
    free(b);
    fkd_graph_free(g);
}

/* ---- parameters ------------------------------------------------------------------------ */

static fkd_graph *small_net(fkd_graph_mode mode, uint64_t seed, fkd_value *out)
{
    fkd_graph *g = new_graph(2, mode, seed);
    fkd_value x = fkd_graph_input(g, "x", 3, 8, 8);
    fkd_value a = fkd_graph_conv(g, "conv1", x, 20, 3, 1, 1, 1, true);
    a = fkd_graph_batchnorm(g, "bn1", a, 1e-5f, 0.1f);
    a = fkd_graph_prelu(g, "prelu1", a);
    fkd_value b = fkd_graph_conv(g, "dw", a, 20, 3, 2, 1, 20, false);
    fkd_value c = fkd_graph_conv(g, "grp", a, 20, 3, 2, 1, 2, false);
    fkd_value s = fkd_graph_add(g, "add", b, c);
    s = fkd_graph_conv(g, "conv2", s, 32, 1, 1, 0, 1, false);
    fkd_value f = fkd_graph_flatten(g, "flat", s);
    f = fkd_graph_dropout(g, "drop", f, 0.0f);
    f = fkd_graph_linear(g, "fc", f, 10, true);
    fkd_value e = fkd_graph_batchnorm(g, "features", f, 1e-5f, 0.1f);
    assert_true(e >= 0);
    OK(fkd_graph_tap(g, "embedding", e));
    OK(fkd_graph_tap(g, "stage1", a));
    OK(fkd_graph_finalize(g));
    if (out) *out = e;
    return g;
}

static void test_param_round_trip_blocked(void **state)
{
    (void)state;
    fkd_graph *g = small_net(FKD_GRAPH_TRAIN, 3, NULL);
    fkd_param *p;
    int n;
    OK(fkd_graph_params(g, &p, &n));
    int padded = 0;
    for (int i = 0; i < n; i++) {
        assert_true(p[i].storage >= (size_t)p[i].numel);
        padded += p[i].storage > (size_t)p[i].numel;
        float *w = random_array(p[i].numel, 100 + i), *r = malloc(sizeof(float) * p[i].numel);
        OK(fkd_graph_param_write(g, i, w));
        OK(fkd_graph_param_read(g, i, r));
        assert_memory_equal(w, r, sizeof(float) * p[i].numel);
        /* Layout padding holds zeros: Σ|engine storage| = Σ|plain|. */
        double se = 0, sp = 0;
        for (size_t k = 0; k < p[i].storage; k++) se += fabs(p[i].data[k]);
        for (int64_t k = 0; k < p[i].numel; k++) sp += fabs(w[k]);
        assert_float_equal(se, sp, 1e-6 * sp);
        free(w);
        free(r);
    }
    /* conv1 (20 out channels) and dw are blocked by 16 with padding on this CPU. */
    assert_true(padded > 0);
    fkd_graph_free(g);
}

static void test_init_like_pytorch(void **state)
{
    (void)state;
    fkd_graph *g = small_net(FKD_GRAPH_TRAIN, 3, NULL), *same = small_net(FKD_GRAPH_TRAIN, 3, NULL),
              *other = small_net(FKD_GRAPH_TRAIN, 4, NULL);
    fkd_param *p;
    int n;
    OK(fkd_graph_params(g, &p, &n));
    for (int i = 0; i < n; i++) {
        float *a = malloc(sizeof(float) * p[i].numel), *b = malloc(sizeof(float) * p[i].numel),
              *c = malloc(sizeof(float) * p[i].numel);
        OK(fkd_graph_param_read(g, i, a));
        OK(fkd_graph_param_read(same, i, b));
        OK(fkd_graph_param_read(other, i, c));
        assert_memory_equal(a, b, sizeof(float) * p[i].numel);
        const char *suffix = strrchr(p[i].name, '.') + 1;
        bool is_bn = strncmp(p[i].name, "bn1", 3) == 0 || strncmp(p[i].name, "features", 8) == 0;
        bool is_prelu = strncmp(p[i].name, "prelu", 5) == 0;
        assert_int_equal(p[i].decay, !is_bn && !is_prelu);
        assert_int_equal(p[i].is_buffer, strncmp(suffix, "running", 7) == 0);
        assert_int_equal(p[i].trainable, !p[i].is_buffer);
        assert_int_equal(p[i].grad == NULL, p[i].is_buffer);
        float want = -1;
        if (is_prelu) want = 0.25f;
        else if (is_bn && (!strcmp(suffix, "weight") || !strcmp(suffix, "running_var"))) want = 1.0f;
        else if (is_bn) want = 0.0f;
        if (want >= 0) {
            for (int64_t k = 0; k < p[i].numel; k++) assert_true(a[k] == want);
        } else {
            /* U(±1/sqrt(fan_in)): fan_in = numel(weight)/out; for biases the same bound. */
            int64_t fan_in = 1;
            const fkd_param *w = !strcmp(suffix, "bias") ? &p[i - 1] : &p[i];
            for (int d = 1; d < w->ndims; d++) fan_in *= w->dims[d];
            double bound = 1.0 / sqrt((double)fan_in), s = 0, s2 = 0;
            for (int64_t k = 0; k < p[i].numel; k++) {
                assert_true(fabs(a[k]) <= bound);
                s += a[k];
                s2 += (double)a[k] * a[k];
            }
            /* Uniform: variance bound²/3; with ≥ 10 values the spread is far from 0. */
            assert_true(s2 / p[i].numel > bound * bound / 3 * 0.3);
            assert_true(memcmp(a, c, sizeof(float) * p[i].numel) != 0);
        }
        free(a);
        free(b);
        free(c);
    }
    fkd_graph_free(g);
    fkd_graph_free(same);
    fkd_graph_free(other);
}

static void test_count(void **state)
{
    (void)state;
    fkd_graph *g = small_net(FKD_GRAPH_TRAIN, 3, NULL);
    int64_t params, macs;
    OK(fkd_graph_count(g, &params, &macs));
    /* conv1 20·3·9 + 20, bn1 2·20, prelu 20, dw 20·9, grp 20·10·9, conv2 32·20,
     * fc 10·(32·4·4) + 10, features 2·10. */
    int64_t want_p = 540 + 20 + 40 + 20 + 180 + 1800 + 640 + 5120 + 10 + 20;
    /* MACs per image: conv1 20·64·27, dw 20·16·9, grp 20·16·90, conv2 32·16·20, fc 512·10. */
    int64_t want_m = 20 * 64 * 27 + 20 * 16 * 9 + 20 * 16 * 90 + 32 * 16 * 20 + 512 * 10;
    assert_int_equal(params, want_p);
    assert_int_equal(macs, want_m);
    fkd_graph_free(g);
}

/* ---- gradients ----------------------------------------------------------------------- */

static void test_zero_grad_accumulate_freeze(void **state)
{
    (void)state;
    fkd_value e;
    fkd_graph *g = small_net(FKD_GRAPH_TRAIN, 3, &e);
    OK(fkd_graph_freeze(g, "features.weight"));
    assert_int_equal(fkd_graph_freeze(g, "features.running_var"), FKD_ERR_ARG);
    assert_int_equal(fkd_graph_freeze(g, "nope.weight"), FKD_ERR_NOTFOUND);
    float *in = random_array(2 * 3 * 64, 8), *r = random_array(20, 9);
    OK(fkd_graph_set_input(g, "x", in));
    OK(fkd_graph_forward(g));
    fkd_param *p;
    int n;
    OK(fkd_graph_params(g, &p, &n));
    int fw = param_index(g, "features.weight"), cw = param_index(g, "conv1.weight");
    assert_false(p[fw].trainable);
    OK(fkd_graph_zero_grad(g));
    OK(fkd_graph_add_grad(g, e, r));
    OK(fkd_graph_backward(g));
    size_t cn = p[cw].storage;
    float *once = malloc(sizeof(float) * cn);
    memcpy(once, p[cw].grad, sizeof(float) * cn);
    double norm = 0;
    for (size_t k = 0; k < cn; k++) norm += fabs(once[k]);
    assert_true(norm > 0);
    for (size_t k = 0; k < p[fw].storage; k++) assert_true(p[fw].grad[k] == 0.0f);
    /* Gradient padding stays zero (backward temporaries share one arena across layouts):
     * Σ|engine grad| = Σ|plain grad|. */
    for (int i = 0; i < n; i++) {
        if (!p[i].grad) continue;
        float *plain = malloc(sizeof(float) * p[i].numel);
        OK(fkd_graph_param_read_grad(g, i, plain));
        double se = 0, sp = 0;
        for (size_t k = 0; k < p[i].storage; k++) se += fabs(p[i].grad[k]);
        for (int64_t k = 0; k < p[i].numel; k++) sp += fabs(plain[k]);
        assert_float_equal(se, sp, 1e-6 * sp + 1e-30);
        free(plain);
    }
    /* A second backward without zero_grad doubles every gradient. */
    OK(fkd_graph_add_grad(g, e, r));
    OK(fkd_graph_backward(g));
    for (size_t k = 0; k < cn; k++) assert_float_equal(p[cw].grad[k], 2 * once[k], 1e-5 * (1 + fabs(once[k])));
    OK(fkd_graph_zero_grad(g));
    for (int i = 0; i < n; i++)
        for (size_t k = 0; p[i].grad && k < p[i].storage; k++) assert_true(p[i].grad[k] == 0.0f);
    float *dx = malloc(sizeof(float) * 2 * 3 * 64);
    OK(fkd_graph_read_input_grad(g, "x", dx));
    for (int k = 0; k < 2 * 3 * 64; k++) assert_true(dx[k] == 0.0f);
    free(in);
    free(r);
    free(once);
    free(dx);
    fkd_graph_free(g);
}

/* Gradients from two taps add up: backward(r1 at stage1 + r2 at embedding) equals the sum
 * of the two separate backward passes. */
static void test_two_taps_add_up(void **state)
{
    (void)state;
    fkd_graph *g = small_net(FKD_GRAPH_TRAIN, 3, NULL);
    fkd_value e = fkd_graph_find(g, "embedding"), s1 = fkd_graph_find(g, "stage1");
    int nd, d[4];
    OK(fkd_graph_shape(g, s1, &nd, d));
    assert_int_equal(nd, 4);
    int64_t ns = (int64_t)d[0] * d[1] * d[2] * d[3], nx = 2 * 3 * 64;
    float *in = random_array(nx, 1), *r1 = random_array(ns, 2), *r2 = random_array(20, 3);
    float *g1 = malloc(sizeof(float) * nx), *g2 = malloc(sizeof(float) * nx), *g12 = malloc(sizeof(float) * nx);
    OK(fkd_graph_set_input(g, "x", in));
    OK(fkd_graph_forward(g));
    OK(fkd_graph_zero_grad(g));
    OK(fkd_graph_add_grad(g, s1, r1));
    OK(fkd_graph_backward(g));
    OK(fkd_graph_read_input_grad(g, "x", g1));
    OK(fkd_graph_zero_grad(g));
    OK(fkd_graph_add_grad(g, e, r2));
    OK(fkd_graph_backward(g));
    OK(fkd_graph_read_input_grad(g, "x", g2));
    OK(fkd_graph_zero_grad(g));
    OK(fkd_graph_add_grad(g, s1, r1));
    OK(fkd_graph_add_grad(g, e, r2));
    OK(fkd_graph_backward(g));
    OK(fkd_graph_read_input_grad(g, "x", g12));
    double num = 0, den = 0;
    for (int64_t k = 0; k < nx; k++) {
        double want = (double)g1[k] + g2[k];
        num += (g12[k] - want) * (g12[k] - want);
        den += want * want;
    }
    assert_true(sqrt(num / den) < 1e-5);
    free(in), free(r1), free(r2), free(g1), free(g2), free(g12);
    fkd_graph_free(g);
}

/* Gradients of untapped intermediate values share buffers inside backward: add_grad on one
 * is an error that says to tap it (taps, inputs and outputs keep their own). */
static void test_add_grad_needs_a_tap(void **state)
{
    (void)state;
    fkd_graph *g = small_net(FKD_GRAPH_TRAIN, 3, NULL);
    static float r[2 * 20 * 8 * 8]; /* stage1 is (2, 20, 8, 8); dw is smaller */
    expect_error(fkd_graph_add_grad(g, fkd_graph_find(g, "dw"), r), FKD_ERR_ARG, "tap it");
    assert_non_null(strstr(fkd_last_error(), "'dw'"));
    OK(fkd_graph_add_grad(g, fkd_graph_find(g, "stage1"), r));
    fkd_graph_free(g);
}

/* ---- modes ----------------------------------------------------------------------------- */

static void test_infer_graph_matches_eval(void **state)
{
    (void)state;
    fkd_value et, ei;
    fkd_graph *t = small_net(FKD_GRAPH_TRAIN, 5, &et), *inf = small_net(FKD_GRAPH_INFER, 5, &ei);
    fkd_param *p;
    int n;
    OK(fkd_graph_params(inf, &p, &n));
    for (int i = 0; i < n; i++) assert_null(p[i].grad);
    /* Non-trivial running statistics, copied into both graphs. */
    for (int i = 0; i < n; i++) {
        if (!p[i].is_buffer) continue;
        float *v = random_array(p[i].numel, 50 + i);
        for (int64_t k = 0; k < p[i].numel; k++) v[k] = strstr(p[i].name, "var") ? 1.0f + 0.5f * v[k] : v[k];
        OK(fkd_graph_param_write(t, i, v));
        OK(fkd_graph_param_write(inf, i, v));
        free(v);
    }
    float *in = random_array(2 * 3 * 64, 4), a[20], b[20];
    OK(fkd_graph_set_training(t, false));
    OK(fkd_graph_set_input(t, "x", in));
    OK(fkd_graph_set_input(inf, "x", in));
    OK(fkd_graph_forward(t));
    OK(fkd_graph_forward(inf));
    OK(fkd_graph_read(t, et, a));
    OK(fkd_graph_read(inf, ei, b));
    for (int k = 0; k < 20; k++) assert_float_equal(a[k], b[k], 1e-5 * (1 + fabs(a[k])));
    /* Taps stay readable; intermediate values share buffers in an INFER graph. */
    float *s1 = malloc(sizeof(float) * 2 * 20 * 64);
    OK(fkd_graph_read(inf, fkd_graph_find(inf, "stage1"), s1));
    expect_error(fkd_graph_read(inf, fkd_graph_find(inf, "conv2"), s1), FKD_ERR_ARG, "not kept");
    assert_non_null(strstr(fkd_last_error(), "conv2"));
    free(s1);
    assert_int_equal(fkd_graph_backward(inf), FKD_ERR_ARG);
    assert_int_equal(fkd_graph_add_grad(inf, ei, a), FKD_ERR_ARG);
    assert_int_equal(fkd_graph_set_training(inf, true), FKD_ERR_ARG);
    free(in);
    fkd_graph_free(t);
    fkd_graph_free(inf);
}

/* Build once, run many: after a warm-up step (oneDNN and OpenMP set up thread-local state
 * on first use), a training step allocates nothing (glibc's heap and mmap counters stay
 * put). */
static void test_steps_do_not_allocate(void **state)
{
    (void)state;
    fkd_value e;
    fkd_graph *g = small_net(FKD_GRAPH_TRAIN, 3, &e);
    OK(fkd_graph_freeze(g, "features.weight"));
    float *in = random_array(2 * 3 * 64, 8), *r = random_array(20, 9), out[20];
    size_t before = 0, after = 0;
    fkd_status st = FKD_OK;
    for (int it = 0; it < 4 && st == FKD_OK; it++) {
        if (it == 1) {
            struct mallinfo2 m = mallinfo2();
            before = m.uordblks + m.hblkhd;
        }
        st = fkd_graph_set_input(g, "x", in);
        if (st == FKD_OK) st = fkd_graph_forward(g);
        if (st == FKD_OK) st = fkd_graph_read(g, e, out);
        if (st == FKD_OK) st = fkd_graph_zero_grad(g);
        if (st == FKD_OK) st = fkd_graph_add_grad(g, e, r);
        if (st == FKD_OK) st = fkd_graph_backward(g);
        if (st == FKD_OK) st = fkd_graph_set_training(g, it % 2 == 0); /* eval steps too */
    }
    struct mallinfo2 m = mallinfo2();
    after = m.uordblks + m.hblkhd;
    OK(st);
    assert_int_equal(after, before);
    free(in);
    free(r);
    fkd_graph_free(g);
}

/* INFER graphs share activation buffers between values whose lifetimes do not overlap;
 * an IResNet block (a residual read twice, downsample branch) + head must still give the
 * TRAIN graph's eval output. */
static fkd_value block_net(fkd_graph *g)
{
    fkd_value x = fkd_graph_input(g, "x", 8, 8, 8);
    fkd_value f = fkd_graph_flatten(g, "flat", fkd_test_iresnet_block(g, x, 16));
    f = fkd_graph_prelu(g, "head_prelu", fkd_graph_dropout(g, "drop", f, 0.3f));
    fkd_value e = fkd_graph_batchnorm(g, "features", fkd_graph_linear(g, "fc", f, 12, false), 1e-5f, 0.1f);
    OK(fkd_graph_tap(g, "embedding", e));
    OK(fkd_graph_finalize(g));
    return e;
}

static void test_infer_shares_buffers_correctly(void **state)
{
    (void)state;
    fkd_graph *t = new_graph(3, FKD_GRAPH_TRAIN, 9), *inf = new_graph(3, FKD_GRAPH_INFER, 9);
    fkd_value et = block_net(t), ei = block_net(inf);
    fkd_param *p;
    int n;
    OK(fkd_graph_params(t, &p, &n));
    for (int i = 0; i < n; i++) {
        float *v = random_array(p[i].numel, 70 + i);
        for (int64_t k = 0; k < p[i].numel; k++) v[k] = strstr(p[i].name, "var") ? 1.0f + 0.5f * v[k] : v[k];
        OK(fkd_graph_param_write(t, i, v));
        OK(fkd_graph_param_write(inf, i, v));
        free(v);
    }
    float *in = random_array(3 * 8 * 64, 6), a[36], b[36];
    OK(fkd_graph_set_training(t, false));
    for (int round = 0; round < 2; round++) {
        OK(fkd_graph_set_input(t, "x", in));
        OK(fkd_graph_set_input(inf, "x", in));
        OK(fkd_graph_forward(t));
        OK(fkd_graph_forward(inf));
        OK(fkd_graph_read(t, et, a));
        OK(fkd_graph_read(inf, ei, b));
        /* Relative to the largest output (here ~140): the INFER graph folds the batch norms
         * and fuses the add, which changes the rounding of small outputs that are
         * differences of large terms (measured ≤ 3e-5 absolute). */
        double most = 0;
        for (int k = 0; k < 36; k++) most = fmax(most, fabs(a[k]));
        for (int k = 0; k < 36; k++) assert_float_equal(a[k], b[k], 1e-5 * (1 + most));
        for (int k = 0; k < 3 * 8 * 64; k++) in[k] = -in[k];
    }
    free(in);
    fkd_graph_free(t);
    fkd_graph_free(inf);
}

/* ---- names, errors, kernels ------------------------------------------------------- */

static void test_find_and_shape(void **state)
{
    (void)state;
    fkd_value e;
    fkd_graph *g = small_net(FKD_GRAPH_TRAIN, 3, &e);
    assert_int_equal(fkd_graph_find(g, "embedding"), e);
    assert_int_equal(fkd_graph_find(g, "features"), e);
    fkd_value f = fkd_graph_find(g, "flat");
    int nd, d[4];
    OK(fkd_graph_shape(g, f, &nd, d));
    assert_int_equal(nd, 2);
    assert_int_equal(d[0], 2);
    assert_int_equal(d[1], 32 * 4 * 4);
    assert_int_equal(fkd_graph_find(g, "stage9"), FKD_ERR_NOTFOUND);
    assert_non_null(strstr(fkd_last_error(), "stage9"));
    fkd_graph_free(g);
}


static void test_errors(void **state)
{
    (void)state;
    fkd_graph *g;
    fkd_graph_config bad = {.batch = 0};
    expect_error(fkd_graph_create(&g, &bad), FKD_ERR_ARG, "batch");
    fkd_graph_config bf = {.batch = 2, .precision = FKD_PREC_BF16};
    if (fkd_shim_bf16_ok()) {
        OK(fkd_graph_create(&g, &bf));
        fkd_graph_free(g);
    } else {
        expect_error(fkd_graph_create(&g, &bf), FKD_ERR_UNSUPPORTED, "AVX-512");
    }
    fkd_graph_config unknown = {.batch = 2, .precision = (fkd_precision)7};
    expect_error(fkd_graph_create(&g, &unknown), FKD_ERR_ARG, "precision");

    g = new_graph(2, FKD_GRAPH_TRAIN, 1);
    fkd_value x = fkd_graph_input(g, "x", 3, 8, 8);
    expect_error(fkd_graph_forward(g), FKD_ERR_ARG, "before fkd_graph_finalize");
    expect_error(fkd_graph_conv(g, "c1", 57, 8, 3, 1, 1, 1, false), FKD_ERR_ARG, "c1");
    expect_error(fkd_graph_conv(g, "c1", -3, 8, 3, 1, 1, 1, false), FKD_ERR_ARG, "value -3");
    expect_error(fkd_graph_conv(g, "c1", x, 8, 3, 1, 1, 2, false), FKD_ERR_ARG, "groups");
    expect_error(fkd_graph_conv(g, "c1", x, 8, 11, 1, 1, 1, false), FKD_ERR_ARG, "kernel");
    fkd_value c = fkd_graph_conv(g, "c1", x, 8, 3, 2, 1, 1, false);
    assert_true(c >= 0);
    expect_error(fkd_graph_conv(g, "c1", x, 8, 3, 2, 1, 1, false), FKD_ERR_ARG, "exists");
    expect_error(fkd_graph_add(g, "res", x, c), FKD_ERR_ARG, "res");
    assert_non_null(strstr(fkd_last_error(), "(2, 3, 8, 8)"));
    expect_error(fkd_graph_linear(g, "fc", c, 10, true), FKD_ERR_ARG, "flatten");
    assert_non_null(strstr(fkd_last_error(), "fc"));
    expect_error(fkd_graph_dropout(g, "drop", c, 1.0f), FKD_ERR_ARG, "drop");
    expect_error(fkd_graph_batchnorm(g, "bn", c, 0.0f, 0.1f), FKD_ERR_ARG, "bn");
    expect_error(fkd_graph_tap(g, "embedding", 99), FKD_ERR_ARG, "embedding");
    OK(fkd_graph_finalize(g));
    expect_error(fkd_graph_finalize(g), FKD_ERR_ARG, "twice");
    expect_error(fkd_graph_prelu(g, "late", c), FKD_ERR_ARG, "late");
    expect_error(fkd_graph_set_input(g, "c1", NULL), FKD_ERR_NOTFOUND, "c1");
    expect_error(fkd_graph_set_input(g, "x", NULL), FKD_ERR_ARG, "NULL");
    expect_error(fkd_graph_param_write(g, 0, NULL), FKD_ERR_ARG, "NULL");
    float buf[4];
    expect_error(fkd_graph_read(g, 99, buf), FKD_ERR_ARG, "99");
    expect_error(fkd_graph_param_read(g, 12, buf), FKD_ERR_ARG, "12");
    fkd_graph_free(g);
    fkd_graph_free(NULL);
}

/* The hot primitives of an IResNet-like block must not fall to oneDNN's reference code. */
static void test_no_reference_kernels(void **state)
{
    (void)state;
    fkd_graph *g = new_graph(4, FKD_GRAPH_TRAIN, 1);
    fkd_value x = fkd_graph_input(g, "x", 32, 14, 14);
    fkd_value s = fkd_test_iresnet_block(g, x, 64);
    fkd_value w = fkd_graph_conv(g, "dw", s, 64, 3, 1, 1, 64, false);
    w = fkd_graph_conv(g, "gdc", w, 64, 7, 1, 0, 64, false);
    fkd_value f = fkd_graph_flatten(g, "flat", w);
    fkd_value e = fkd_graph_linear(g, "fc", f, 16, false);
    assert_true(e >= 0);
    OK(fkd_graph_finalize(g));
    const char *nodes[] = {"bn1", "conv1", "bn2", "prelu", "conv2", "bn3", "down", "down_bn", "add", "dw", "gdc", "flat", "fc"};
    char buf[512];
    for (size_t i = 0; i < sizeof nodes / sizeof nodes[0]; i++) {
        OK(fkd_graph_kernels(g, nodes[i], buf, sizeof buf));
        printf("  %-6s %s\n", nodes[i], buf);
        assert_non_null(strstr(buf, "forward: "));
        if (strstr(buf, "ref:")) fail_msg("%s runs reference code: %s", nodes[i], buf);
    }
    fkd_graph_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_running_stats_and_eval),
        cmocka_unit_test(test_dropout_masks),
        cmocka_unit_test(test_param_round_trip_blocked),
        cmocka_unit_test(test_init_like_pytorch),
        cmocka_unit_test(test_count),
        cmocka_unit_test(test_zero_grad_accumulate_freeze),
        cmocka_unit_test(test_two_taps_add_up),
        cmocka_unit_test(test_add_grad_needs_a_tap),
        cmocka_unit_test(test_infer_graph_matches_eval),
        cmocka_unit_test(test_infer_shares_buffers_correctly),
        cmocka_unit_test(test_steps_do_not_allocate),
        cmocka_unit_test(test_find_and_shape),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_no_reference_kernels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
