/* Margin head: central-difference gradients in double for every preset, the fp32 head
 * against the double reference, PyTorch fixtures (scripts/gen_heads_fixtures.py), ψ
 * continuity, no NaN at cos θ = ±1, parameter errors naming the recipe key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "heads/head.h"
#include "heads/margin.h"
#include "tests/support/heads_fixture.h"

/* ‖a − b‖ / ‖b‖ (b's norm floored at 1e-12). */
static void fill_normal(double *a, size_t n, double scale, fkd_rng *rng)
{
    for (size_t i = 0; i < n; i++) a[i] = scale * fkd_rng_normal(rng);
}

static fkd_margin_params params_of(const char *preset, const char *const *keys, const char *const *values,
                                   int count)
{
    fkd_head_params hp;
    const char *k[8] = {"preset"}, *v[8] = {preset};
    for (int i = 0; i < count; i++) k[i + 1] = keys[i], v[i + 1] = values[i];
    assert_int_equal(fkd_head_params_parse(&hp, k, v, count + 1), FKD_OK);
    return hp.margin;
}

static double loss_only(const fkd_margin_params *p, const double *w, const double *b, const double *x,
                        const int *y, const double *m2, int B, int C, int d)
{
    double l;
    assert_int_equal(fkd_margin_loss_f64(p, w, b, x, y, m2, B, C, d, &l, NULL, NULL, NULL), FKD_OK);
    return l;
}

/* Central differences on every entry of `v` (n values) against `grad`.
 * Step 1e-6 in double: truncation O(h²·f''') and rounding O(1e-16·|L|/h) are both
 * below 1e-7 relative here; tolerance 1e-6 relative in norm. */
static void check_fd(const fkd_margin_params *p, double *v, size_t n, const double *grad, double *w,
                     double *b, double *x, const int *y, const double *m2, int B, int C, int d)
{
    const double h = 1e-6;
    double *num = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) {
        const double keep = v[i];
        v[i] = keep + h;
        const double lp = loss_only(p, w, b, x, y, m2, B, C, d);
        v[i] = keep - h;
        const double lm = loss_only(p, w, b, x, y, m2, B, C, d);
        v[i] = keep;
        num[i] = (lp - lm) / (2 * h);
    }
    const double e = heads_rel_err(grad, num, n);
    if (e > 1e-6) fprintf(stderr, "preset %s: gradient relative error %g\n", p->preset, e);
    assert_true(e < 1e-6);
    free(num);
}

typedef struct {
    const char *preset;
    int count;
    const char *keys[3], *values[3];
    bool per_sample_m2;
} grad_case;

static const grad_case grad_cases[] = {
    {"softmax", 0, {0}, {0}, false},
    {"l-softmax", 0, {0}, {0}, false},
    {"l-softmax", 1, {"m1"}, {"2"}, false},
    {"sphereface", 0, {0}, {0}, false},
    {"sphereface", 1, {"m1"}, {"3"}, false},
    {"sphereface", 1, {"sphere_lambda"}, {"5"}, false},
    {"norm-softmax", 0, {0}, {0}, false},
    {"cosface", 0, {0}, {0}, false},
    {"arcface", 0, {0}, {0}, false},
    {"arcface", 1, {"easy_margin"}, {"true"}, false},
    {"arcface", 2, {"x_norm", "s"}, {"false", "2"}, false},
    {"arcface", 0, {0}, {0}, true},
    {"combined", 0, {0}, {0}, false},
    {"combined", 3, {"m1", "m2", "m3"}, {"0.9", "0.4", "0.15"}, false},
    {"intra-loss", 0, {0}, {0}, false},
    {"inter-loss", 0, {0}, {0}, false},
    {"arcface", 2, {"intra", "inter"}, {"0.5", "0.5"}, false},
};

static void test_gradients_every_preset(void **state)
{
    (void)state;
    enum { B = 4, C = 5, D = 6 };
    int y[B] = {0, 3, 3, 1};
    double m2[B] = {0.1, 0.3, 0.5, 0.7};
    /* every preset appears in grad_cases */
    for (int i = 0; fkd_margin_preset_name(i); i++) {
        bool seen = false;
        for (size_t c = 0; c < sizeof grad_cases / sizeof grad_cases[0]; c++)
            seen |= !strcmp(grad_cases[c].preset, fkd_margin_preset_name(i));
        assert_true(seen);
    }
    for (size_t c = 0; c < sizeof grad_cases / sizeof grad_cases[0]; c++) {
        const grad_case *gc = &grad_cases[c];
        fkd_margin_params p = params_of(gc->preset, gc->keys, gc->values, gc->count);
        fkd_rng rng;
        fkd_rng_seed(&rng, 11, c);
        double w[C * D], b[C], x[B * D], dx[B * D], dw[C * D], db[C], l;
        fill_normal(w, C * D, 0.5, &rng);
        fill_normal(b, C, 0.1, &rng);
        fill_normal(x, B * D, 1.0, &rng);
        const double *m2p = gc->per_sample_m2 ? m2 : NULL;
        assert_int_equal(fkd_margin_loss_f64(&p, w, b, x, y, m2p, B, C, D, &l, dx, dw, db), FKD_OK);
        assert_true(isfinite(l) && l > 0);
        check_fd(&p, x, B * D, dx, w, b, x, y, m2p, B, C, D);
        check_fd(&p, w, C * D, dw, w, b, x, y, m2p, B, C, D);
        if (p.bias) check_fd(&p, b, C, db, w, b, x, y, m2p, B, C, D);
    }
}

/* The fp32 head (oneDNN GEMMs) against the double reference on the same numbers. */
static void run_fp32(const fkd_margin_params *p, const double *w, const double *b, const double *x,
                     const int *y, const double *m2, int B, int C, int d, double *loss, double *dx,
                     double *dw, double *db)
{
    fkd_margin_head *h;
    assert_int_equal(fkd_margin_head_create(&h, p, C, d, B, 1), FKD_OK);
    float *wf = malloc(sizeof(float) * C * d), *xf = malloc(sizeof(float) * B * d);
    float *dxf = malloc(sizeof(float) * B * d), m2f[64], lf;
    for (int i = 0; i < C * d; i++) wf[i] = (float)w[i];
    for (int i = 0; i < B * d; i++) xf[i] = (float)x[i];
    for (int i = 0; m2 && i < B; i++) m2f[i] = (float)m2[i];
    assert_int_equal(fkd_margin_head_set_centers(h, wf, false), FKD_OK);
    fkd_param *params;
    int np;
    assert_int_equal(fkd_margin_head_params(h, &params, &np), FKD_OK);
    assert_string_equal(params[0].name, "head.weight");
    assert_int_equal(params[0].numel, (int64_t)C * d);
    if (p->bias) {
        assert_int_equal(np, 2);
        assert_string_equal(params[1].name, "head.bias");
        for (int j = 0; j < C; j++) params[1].data[j] = (float)b[j];
    }
    fkd_margin_head_zero_grad(h);
    assert_int_equal(fkd_margin_head_forward(h, xf, y, m2 ? m2f : NULL, B, &lf, dxf), FKD_OK);
    *loss = lf;
    for (int i = 0; i < B * d; i++) dx[i] = dxf[i];
    for (int i = 0; i < C * d; i++) dw[i] = params[0].grad[i];
    for (int j = 0; p->bias && j < C; j++) db[j] = params[1].grad[j];
    free(wf), free(xf), free(dxf);
    fkd_margin_head_free(h);
}

/* Fixture cases written by scripts/gen_heads_fixtures.py. */
static const char *const fixture_cases[] = {
    "softmax",      "l-softmax",    "sphereface",   "norm-softmax", "cosface",      "arcface",
    "combined",     "intra-loss",   "inter-loss",   "arcface_hard", "arcface_easy", "arcface_st",
    "arcface_xraw", "arcface_m2",   "combined2",    "cosface04",    "sphereface3",  "sphereface_lambda",
};

typedef struct {
    double loss;
    const double *dx, *dw, *db; /* db NULL without a bias */
} grads;

/* got (loss passed separately: it is refreshed per call) against want, relative. */
static void expect_grads(const char *name, const char *path, double loss, const grads *got, const grads *want,
                         int64_t nx, int64_t nw, int C, double tol_loss, double tol_grad)
{
    const double el = fabs(loss - want->loss) / fabs(want->loss), ex = heads_rel_err(got->dx, want->dx, nx);
    const double ew = heads_rel_err(got->dw, want->dw, nw), eb = got->db ? heads_rel_err(got->db, want->db, C) : 0;
    if (el > tol_loss || ex > tol_grad || ew > tol_grad || eb > tol_grad)
        fprintf(stderr, "%s (%s): loss %g, dx %g, dW %g, db %g relative error\n", name, path, el, ex, ew, eb);
    assert_true(el <= tol_loss);
    assert_true(ex < tol_grad && ew < tol_grad && eb < tol_grad);
}

static void test_pytorch_fixtures(void **state)
{
    (void)state;
    for (size_t c = 0; c < sizeof fixture_cases / sizeof fixture_cases[0]; c++) {
        char path[256];
        snprintf(path, sizeof path, "tests/fixtures/heads/margin_%s.safetensors", fixture_cases[c]);
        heads_fx f;
        assert_int_equal(heads_fx_open(&f, path), 0);
        const char *keys[16], *values[16];
        int nk = heads_fx_meta(&f, keys, values, 16);
        fkd_head_params hp;
        assert_int_equal(fkd_head_params_parse(&hp, keys, values, nk), FKD_OK);
        const fkd_margin_params p = hp.margin;
        int64_t nw, nx;
        const double *w = heads_fx_f64(&f, "W", &nw), *x = heads_fx_f64(&f, "x", &nx);
        const double *b = heads_fx_f64(&f, "b", NULL), *m2 = heads_fx_f64(&f, "m2", NULL);
        const double *loss = heads_fx_f64(&f, "loss", NULL), *rdx = heads_fx_f64(&f, "dx", NULL);
        const double *rdw = heads_fx_f64(&f, "dW", NULL), *rdb = heads_fx_f64(&f, "db", NULL);
        int y[64];
        const int B = heads_fx_i64(&f, "labels", y, 64);
        assert_non_null(w), assert_non_null(x), assert_non_null(loss), assert_non_null(rdx), assert_non_null(rdw);
        const int d = (int)(nx / B), C = (int)(nw / d);
        double l = 0, *dx = malloc(sizeof(double) * nx), *dw = malloc(sizeof(double) * nw), db[64];
        const grads got = {l, dx, dw, p.bias ? db : NULL}, want = {loss[0], rdx, rdw, rdb};
        /* double reference: agreement to rounding (loss 1e-9, gradients 1e-8 relative) */
        assert_int_equal(fkd_margin_loss_f64(&p, w, b, x, y, m2, B, C, d, &l, dx, dw, db), FKD_OK);
        expect_grads(fixture_cases[c], "f64", l, &got, &want, nx, nw, C, 1e-9, 1e-8);
        /* fp32 head: logits up to s = 64 rounded to fp32 (6e-8 relative); 1e-5 and 1e-4 */
        run_fp32(&p, w, b, x, y, m2, B, C, d, &l, dx, dw, db);
        expect_grads(fixture_cases[c], "f32", l, &got, &want, nx, nw, C, 1e-5, 1e-4);
        free(dx), free(dw);
        heads_fx_close(&f);
    }
}

/* Larger than the fixtures, so oneDNN's GEMM blocking and both OpenMP threads' column
 * sums are exercised: fp32 head against the double path, 1e-5 loss and 1e-4 gradients. */
static void test_fp32_matches_f64_at_size(void **state)
{
    (void)state;
    enum { B = 24, C = 301, D = 40 };
    const char *presets[] = {"arcface", "sphereface", "softmax", "inter-loss"};
    double *w = malloc(sizeof(double) * C * D), *x = malloc(sizeof(double) * B * D), b[C];
    double *dx = malloc(sizeof(double) * B * D), *dw = malloc(sizeof(double) * C * D), db[C];
    double *fdx = malloc(sizeof(double) * B * D), *fdw = malloc(sizeof(double) * C * D), fdb[C];
    int y[B];
    for (size_t c = 0; c < sizeof presets / sizeof presets[0]; c++) {
        fkd_margin_params p = params_of(presets[c], NULL, NULL, 0);
        fkd_rng rng;
        fkd_rng_seed(&rng, 21, c);
        fill_normal(w, C * D, 0.2, &rng);
        fill_normal(x, B * D, 1.0, &rng);
        fill_normal(b, C, 0.1, &rng);
        for (int i = 0; i < B; i++) y[i] = (int)fkd_rng_below(&rng, C);
        double l, fl;
        assert_int_equal(fkd_margin_loss_f64(&p, w, b, x, y, NULL, B, C, D, &l, dx, dw, db), FKD_OK);
        run_fp32(&p, w, b, x, y, NULL, B, C, D, &fl, fdx, fdw, fdb);
        const grads got = {fl, fdx, fdw, p.bias ? fdb : NULL}, want = {l, dx, dw, db};
        expect_grads(presets[c], "f32 vs f64", fl, &got, &want, B * D, C * D, C, 1e-5, 1e-4);
    }
    free(w), free(x), free(dx), free(dw), free(fdx), free(fdw);
}

static void test_psi_continuous_and_monotone(void **state)
{
    (void)state;
    for (int m = 2; m <= 4; m++) {
        fkd_margin_params p;
        assert_int_equal(fkd_margin_params_preset(&p, "sphereface"), FKD_OK);
        p.m1 = m;
        double dp;
        /* continuity at kπ/m: both sides within 1e-6 of each other (slope is ~0 there) */
        for (int k = 1; k < m; k++) {
            const double t = k * M_PI / m;
            const double lo = fkd_margin_psi(&p, 0, cos(t - 1e-7), &dp);
            const double hi = fkd_margin_psi(&p, 0, cos(t + 1e-7), &dp);
            assert_true(fabs(lo - hi) < 1e-6);
            assert_true(fabs(lo - (1 - 2.0 * k)) < 1e-6); /* (−1)^k·cos(kπ) − 2k */
        }
        /* ψ(0) = 1, ψ(π) = 1 − 2m, strictly decreasing in θ */
        assert_true(fabs(fkd_margin_psi(&p, 0, 1.0, &dp) - 1) < 1e-12);
        assert_true(fabs(fkd_margin_psi(&p, 0, -1.0, &dp) - (1 - 2.0 * m)) < 1e-12);
        double prev = INFINITY;
        for (int i = 0; i <= 2000; i++) {
            const double v = fkd_margin_psi(&p, 0, cos(M_PI * i / 2000), &dp);
            assert_true(v < prev);
            assert_true(isfinite(dp));
            prev = v;
        }
    }
}

static void test_no_nan_at_cos_pm1(void **state)
{
    (void)state;
    enum { B = 3, C = 4, D = 5 };
    const char *presets[] = {"arcface", "combined", "sphereface", "l-softmax", "intra-loss", "inter-loss", "cosface"};
    const char *k2[] = {"m1", "m2", "m3"}, *v2[] = {"0.9", "0.4", "0.15"}, *ke[] = {"easy_margin"}, *ve[] = {"true"};
    for (size_t c = 0; c < sizeof presets / sizeof presets[0] + 2; c++) {
        fkd_margin_params p = c < sizeof presets / sizeof presets[0] ? params_of(presets[c], NULL, NULL, 0)
                              : c == sizeof presets / sizeof presets[0] ? params_of("combined", k2, v2, 3)
                                                                        : params_of("arcface", ke, ve, 1);
        fkd_rng rng;
        fkd_rng_seed(&rng, 5, c);
        double w[C * D], x[B * D], dx[B * D], dw[C * D], l;
        int y[B] = {1, 2, 0};
        fill_normal(w, C * D, 0.5, &rng);
        fill_normal(x, B * D, 1.0, &rng);
        for (int k = 0; k < D; k++) {
            x[0 * D + k] = w[1 * D + k];       /* cos θ = +1 */
            x[1 * D + k] = -2 * w[2 * D + k];  /* cos θ = −1 */
        }
        assert_int_equal(fkd_margin_loss_f64(&p, w, NULL, x, y, NULL, B, C, D, &l, dx, dw, NULL), FKD_OK);
        assert_true(isfinite(l));
        for (int i = 0; i < B * D; i++) assert_true(isfinite(dx[i]));
        for (int i = 0; i < C * D; i++) assert_true(isfinite(dw[i]));
        double fl, fdx[B * D], fdw[C * D];
        run_fp32(&p, w, NULL, x, y, NULL, B, C, D, &fl, fdx, fdw, NULL);
        assert_true(isfinite(fl));
        for (int i = 0; i < B * D; i++) assert_true(isfinite(fdx[i]));
        for (int i = 0; i < C * D; i++) assert_true(isfinite(fdw[i]));
        double dp;
        assert_true(isfinite(fkd_margin_psi(&p, p.m2, 1.0, &dp)) && isfinite(dp));
        assert_true(isfinite(fkd_margin_psi(&p, p.m2, -1.0, &dp)) && isfinite(dp));
    }
}

static void test_bad_parameters_name_the_key(void **state)
{
    (void)state;
    fkd_head_params hp;
    fkd_margin_params p;
    const char *k1[] = {"preset", "m1"}, *v1[] = {"sphereface", "0.5"};
    heads_expect_error(fkd_head_params_parse(&hp, k1, v1, 2), "head.m1: must be >= 1 (got 0.5); m1 < 1 only together with m2 > 0");
    const char *k2[] = {"s"}, *v2[] = {"0"};
    heads_expect_error(fkd_head_params_parse(&hp, k2, v2, 1), "head.s: must be > 0 (got 0)");
    const char *k3[] = {"preset"}, *v3[] = {"arcfase"};
    heads_expect_error(fkd_head_params_parse(&hp, k3, v3, 1),
                 "head.preset: unknown preset 'arcfase' (known: softmax, l-softmax, sphereface, "
                 "norm-softmax, cosface, arcface, combined, intra-loss, inter-loss)");
    const char *k4[] = {"preset", "m1"}, *v4[] = {"l-softmax", "2.5"};
    heads_expect_error(fkd_head_params_parse(&hp, k4, v4, 2),
                 "head.m1: a multiplicative margin without m2 must be an integer (got 2.5)");
    const char *k5[] = {"m2"}, *v5[] = {"abc"};
    heads_expect_error(fkd_head_params_parse(&hp, k5, v5, 1), "head.m2: not a finite number ('abc')");
    const char *k6[] = {"w_norm"}, *v6[] = {"maybe"};
    heads_expect_error(fkd_head_params_parse(&hp, k6, v6, 1), "head.w_norm: expected true or false (got 'maybe')");
    const char *k7[] = {"margin"}, *v7[] = {"0.5"};
    assert_int_equal(fkd_head_params_parse(&hp, k7, v7, 1), FKD_ERR_ARG);
    assert_non_null(strstr(fkd_last_error(), "head.margin: unknown key"));
    const char *k8[] = {"preset", "inter", "w_norm"}, *v8[] = {"norm-softmax", "1", "false"};
    heads_expect_error(fkd_head_params_parse(&hp, k8, v8, 3), "head.inter: the inter-loss needs w_norm = true");
    const char *k9[] = {"m3"}, *v9[] = {"-0.1"};
    heads_expect_error(fkd_head_params_parse(&hp, k9, v9, 1), "head.m3: must be >= 0 (got -0.1)");

    /* a margin head with no labels */
    assert_int_equal(fkd_margin_params_preset(&p, "arcface"), FKD_OK);
    fkd_margin_head *h;
    assert_int_equal(fkd_margin_head_create(&h, &p, 3, 2, 2, 1), FKD_OK);
    float x[4] = {1, 0, 0, 1}, dx[4], l;
    heads_expect_error(fkd_margin_head_forward(h, x, NULL, NULL, 2, &l, dx), "head.preset: 'arcface' needs labels (got none)");
    heads_expect_error(fkd_margin_head_set_sphere_lambda(h, -1), "head.sphere_lambda: must be >= 0 (got -1)");
    assert_int_equal(fkd_margin_head_set_sphere_lambda(h, 5), FKD_OK);
    assert_true(fkd_margin_head_config(h)->sphere_lambda == 5);
    int bad[2] = {0, 3};
    heads_expect_error(fkd_margin_head_forward(h, x, bad, NULL, 2, &l, dx), "head: label 3 of sample 1 outside [0, 3)");
    fkd_margin_head_free(h);
    p.m1 = 0.5, p.m2 = 0;
    assert_int_equal(fkd_margin_head_create(&h, &p, 3, 2, 2, 1), FKD_ERR_ARG);
    assert_null(h);
}

/* Plain logits are s·cos θ; the forward's true-class logit carries the margin; frozen
 * centres get no gradient; initial centres have std 0.01. */
static void test_logits_freeze_and_init(void **state)
{
    (void)state;
    enum { B = 2, C = 3, D = 4 };
    fkd_margin_params p;
    assert_int_equal(fkd_margin_params_preset(&p, "arcface"), FKD_OK);
    fkd_margin_head *h;
    assert_int_equal(fkd_margin_head_create(&h, &p, 2000, 64, B, 3), FKD_OK);
    fkd_param *params;
    int np;
    assert_int_equal(fkd_margin_head_params(h, &params, &np), FKD_OK);
    double s2 = 0;
    for (int64_t i = 0; i < params[0].numel; i++) s2 += (double)params[0].data[i] * params[0].data[i];
    /* 128,000 draws: the sample std is within 1% of 0.01 (> 10 standard errors) */
    assert_true(fabs(sqrt(s2 / params[0].numel) - 0.01) < 1e-4);
    fkd_margin_head_free(h);

    assert_int_equal(fkd_margin_head_create(&h, &p, C, D, B, 3), FKD_OK);
    const float w[C * D] = {1, 0, 0, 0, 0, 2, 0, 0, 0, 0, 3, 0};
    const float x[B * D] = {0.6f, 0.8f, 0, 0, 0, 0, 1, 1};
    const int y[B] = {0, 2};
    assert_int_equal(fkd_margin_head_set_centers(h, w, true), FKD_OK);
    assert_int_equal(fkd_margin_head_params(h, &params, &np), FKD_OK);
    assert_false(params[0].trainable);
    const float *plain;
    assert_int_equal(fkd_margin_head_plain_logits(h, x, B, &plain), FKD_OK);
    const double expect[B * C] = {64 * 0.6, 64 * 0.8, 0, 0, 0, 64 / sqrt(2)};
    for (int i = 0; i < B * C; i++) assert_true(fabs(plain[i] - expect[i]) < 1e-4);
    fkd_margin_head_zero_grad(h);
    float l, dx[B * D];
    assert_int_equal(fkd_margin_head_forward(h, x, y, NULL, B, &l, dx), FKD_OK);
    const float *lg = fkd_margin_head_logits(h);
    assert_true(fabs(lg[0] - 64 * cos(acos(0.6) + 0.5)) < 1e-4);
    assert_true(fabs(lg[1] - 64 * 0.8) < 1e-4);
    assert_true(fabs(lg[5] - 64 * cos(M_PI / 4 + 0.5)) < 1e-4);
    for (int64_t i = 0; i < params[0].numel; i++) assert_true(params[0].grad[i] == 0.0f);

    /* unfrozen: dW accumulates over calls until zero_grad (batch 1 of max 2 as well) */
    assert_int_equal(fkd_margin_head_set_centers(h, w, false), FKD_OK);
    assert_true(params[0].trainable);
    float once[C * D];
    assert_int_equal(fkd_margin_head_forward(h, x, y, NULL, 1, &l, dx), FKD_OK);
    memcpy(once, params[0].grad, sizeof once);
    float largest = 0;
    for (int i = 0; i < C * D; i++) largest = fmaxf(largest, fabsf(once[i]));
    assert_true(largest > 1e-3f);
    assert_int_equal(fkd_margin_head_forward(h, x, y, NULL, 1, &l, dx), FKD_OK);
    for (int i = 0; i < C * D; i++) assert_true(fabsf(params[0].grad[i] - 2 * once[i]) <= 1e-6f * (1 + fabsf(once[i])));
    fkd_margin_head_zero_grad(h);
    for (int i = 0; i < C * D; i++) assert_true(params[0].grad[i] == 0.0f);
    fkd_margin_head_free(h);
    fkd_margin_head_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradients_every_preset),
        cmocka_unit_test(test_pytorch_fixtures),
        cmocka_unit_test(test_fp32_matches_f64_at_size),
        cmocka_unit_test(test_psi_continuous_and_monotone),
        cmocka_unit_test(test_no_nan_at_cos_pm1),
        cmocka_unit_test(test_bad_parameters_name_the_key),
        cmocka_unit_test(test_logits_freeze_and_init),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
