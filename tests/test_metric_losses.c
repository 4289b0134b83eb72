/* Metric losses: central-difference gradients in double, PyTorch fixtures
 * (scripts/gen_heads_fixtures.py), the center-loss centre update, parameter errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/rng.h"
#include "heads/head.h"
#include "heads/metric.h"
#include "tests/support/heads_fixture.h"

enum { B = 8, D = 5, C = 4 };
static const int labels[B] = {0, 0, 1, 1, 2, 2, 3, 0};

typedef struct {
    fkd_metric_kind kind;
    fkd_triplet_mining mining;
    bool normalize;
    const double *centers;
} loss_case;

static double eval(const loss_case *c, const double *f, double *df)
{
    double l = 0;
    fkd_status st = c->kind == FKD_METRIC_CONTRASTIVE
                        ? fkd_contrastive_loss_f64(f, labels, B, D, 1.5, &l, df)
                    : c->kind == FKD_METRIC_TRIPLET
                        ? fkd_triplet_loss_f64(f, labels, B, D, 0.2, c->mining, c->normalize, &l, df)
                        : fkd_center_loss_f64(f, labels, c->centers, B, D, C, 0.003, &l, df);
    assert_int_equal(st, FKD_OK);
    return l;
}

/* Step 1e-6 in double, away from the hinge and mining switches for this seed;
 * tolerance 1e-6 relative in norm. */
static void test_gradients(void **state)
{
    (void)state;
    fkd_rng rng;
    fkd_rng_seed(&rng, 3, 0);
    double f[B * D], centers[C * D], df[B * D], num[B * D];
    for (int i = 0; i < B * D; i++) f[i] = 0.6 * fkd_rng_normal(&rng);
    for (int i = 0; i < C * D; i++) centers[i] = 0.5 * fkd_rng_normal(&rng);
    loss_case cases[9] = {{FKD_METRIC_CONTRASTIVE, 0, false, NULL}, {FKD_METRIC_CENTER, 0, false, centers}};
    int n = 2;
    for (int m = 0; m < FKD_MINING_COUNT; m++)
        for (int norm = 0; norm < 2; norm++) cases[n++] = (loss_case){FKD_METRIC_TRIPLET, m, norm, NULL};
    for (int c = 0; c < n; c++) {
        const double l = eval(&cases[c], f, df);
        assert_true(l > 0); /* every case has active terms: the gradient check is not vacuous */
        for (int i = 0; i < B * D; i++) {
            const double keep = f[i];
            f[i] = keep + 1e-6;
            const double lp = eval(&cases[c], f, NULL);
            f[i] = keep - 1e-6;
            const double lm = eval(&cases[c], f, NULL);
            f[i] = keep;
            num[i] = (lp - lm) / 2e-6;
        }
        if (heads_rel_err(df, num, B * D) > 1e-6) fprintf(stderr, "case %d: %g\n", c, heads_rel_err(df, num, B * D));
        assert_true(heads_rel_err(df, num, B * D) < 1e-6);
    }
}

static void expect_close(const char *what, double got, double want, double tol)
{
    if (fabs(got - want) > tol * fmax(fabs(want), 1e-12)) fprintf(stderr, "%s: %.12g vs %.12g\n", what, got, want);
    assert_true(fabs(got - want) <= tol * fmax(fabs(want), 1e-12));
}

/* Compares the double core (1e-9) and the fp32 front end (1e-5) with one fixture pair. */
static void compare(const heads_fx *fx, const char *name, fkd_metric_kind kind, const fkd_metric_params *p,
                    const double *centers)
{
    char key[64];
    snprintf(key, sizeof key, "%s_loss", name);
    const double *want_l = heads_fx_f64(fx, key, NULL);
    snprintf(key, sizeof key, "%s_df", name);
    const double *want_df = heads_fx_f64(fx, key, NULL);
    const double *f = heads_fx_f64(fx, "f", NULL);
    assert_non_null(want_l), assert_non_null(want_df), assert_non_null(f);
    double l, df[B * D];
    loss_case c = {kind, p->mining, p->triplet_normalize, centers};
    l = eval(&c, f, df);
    expect_close(name, l, want_l[0], 1e-9);
    assert_true(heads_rel_err(df, want_df, B * D) < 1e-9);

    fkd_metric_loss *m;
    assert_int_equal(fkd_metric_loss_create(&m, kind, p, C, D, B), FKD_OK);
    fkd_param *params;
    int np;
    assert_int_equal(fkd_metric_loss_params(m, &params, &np), FKD_OK);
    assert_int_equal(np, kind == FKD_METRIC_CENTER);
    for (int i = 0; i < np * C * D; i++) params[0].data[i] = (float)centers[i];
    float ff[B * D], fdf[B * D], fl;
    for (int i = 0; i < B * D; i++) ff[i] = (float)f[i];
    assert_int_equal(fkd_metric_loss_forward(m, ff, labels, B, &fl, fdf), FKD_OK);
    for (int i = 0; i < B * D; i++) df[i] = fdf[i];
    expect_close(name, fl, want_l[0], 1e-5);
    assert_true(heads_rel_err(df, want_df, B * D) < 1e-5);
    fkd_metric_loss_free(m);
}

static void test_pytorch_fixtures(void **state)
{
    (void)state;
    heads_fx fx;
    assert_int_equal(heads_fx_open(&fx, "tests/fixtures/heads/metric.safetensors"), 0);
    int y[B];
    assert_int_equal(heads_fx_i64(&fx, "labels", y, B), B);
    assert_memory_equal(y, labels, sizeof y);
    const double *centers = heads_fx_f64(&fx, "centers", NULL);
    assert_non_null(centers);
    fkd_metric_params p;
    fkd_metric_params_default(&p);
    assert_int_equal(fkd_metric_params_set(&p, "contrastive.margin", "1.5"), FKD_OK);
    compare(&fx, "contrastive", FKD_METRIC_CONTRASTIVE, &p, NULL);
    const char *mining[] = {"all", "hard", "semi-hard"}, *tag[] = {"all", "hard", "semihard"};
    for (int m = 0; m < 3; m++)
        for (int norm = 0; norm < 2; norm++) {
            char name[64];
            snprintf(name, sizeof name, "triplet_%s_%s", tag[m], norm ? "norm" : "raw");
            assert_int_equal(fkd_metric_params_set(&p, "triplet.mining", mining[m]), FKD_OK);
            assert_int_equal(fkd_metric_params_set(&p, "triplet.normalize", norm ? "true" : "false"), FKD_OK);
            compare(&fx, name, FKD_METRIC_TRIPLET, &p, NULL);
        }
    compare(&fx, "center", FKD_METRIC_CENTER, &p, centers);

    /* centre update: c_j ← c_j − α·Σ(c_j − f_i)/(1 + n_j); fp32 centres, 1e-6 */
    fkd_metric_loss *m;
    assert_int_equal(fkd_metric_loss_create(&m, FKD_METRIC_CENTER, &p, C, D, B), FKD_OK);
    fkd_param *params;
    int np;
    assert_int_equal(fkd_metric_loss_params(m, &params, &np), FKD_OK);
    assert_string_equal(params[0].name, "head.centers");
    assert_false(params[0].trainable);
    for (int i = 0; i < C * D; i++) params[0].data[i] = (float)centers[i];
    const double *f = heads_fx_f64(&fx, "f", NULL), *want = heads_fx_f64(&fx, "center_updated", NULL);
    float ff[B * D];
    for (int i = 0; i < B * D; i++) ff[i] = (float)f[i];
    assert_int_equal(fkd_metric_loss_update_centers(m, ff, labels, B), FKD_OK);
    for (int i = 0; i < C * D; i++) assert_true(fabs(params[0].data[i] - want[i]) < 1e-6);
    /* class 0 has three samples: its centre moved by α/(1+3)·Σ(f_i − c) */
    assert_true(fabs(params[0].data[0] - centers[0]) > 1e-3);
    fkd_metric_loss_free(m);
    heads_fx_close(&fx);
}

/* Two different identities on the same point: the contrastive hinge has no direction;
 * the loss is ½m² and the gradient finite (zero subgradient). */
static void test_contrastive_coincident_points(void **state)
{
    (void)state;
    const double f[4] = {0.3, 0.4, 0.3, 0.4};
    const int y[2] = {0, 1};
    double l, df[4];
    assert_int_equal(fkd_contrastive_loss_f64(f, y, 2, 2, 1.0, &l, df), FKD_OK);
    assert_true(fabs(l - 0.5) < 1e-15);
    for (int i = 0; i < 4; i++) assert_true(df[i] == 0);
}

static void test_bad_parameters(void **state)
{
    (void)state;
    fkd_metric_params p;
    fkd_metric_params_default(&p);
    heads_expect_error(fkd_metric_params_set(&p, "triplet.mining", "hardest"),
                 "head.triplet.mining: unknown mining 'hardest' (known: all, hard, semi-hard)");
    heads_expect_error(fkd_metric_params_set(&p, "center.alpha", "0"), "head.center.alpha: must be in (0, 1] (got 0)");
    heads_expect_error(fkd_metric_params_set(&p, "contrastive.margin", "-1"),
                 "head.contrastive.margin: must be in (0, 1e+06] (got -1)");
    heads_expect_error(fkd_metric_params_set(&p, "triplet.margin", "x"), "head.triplet.margin: not a finite number ('x')");
    assert_int_equal(fkd_metric_params_set(&p, "triplet.alpha", "0.2"), FKD_ERR_ARG);
    assert_non_null(strstr(fkd_last_error(), "head.triplet.alpha: unknown key"));
    double l, f[4] = {0};
    heads_expect_error(fkd_triplet_loss_f64(f, NULL, 2, 2, 0.2, FKD_MINING_ALL, false, &l, NULL),
                 "head: triplet loss needs labels (got none)");
    fkd_metric_loss *m;
    assert_int_equal(fkd_metric_loss_create(&m, FKD_METRIC_CENTER, &p, 2, 2, 4), FKD_OK);
    float ff[4] = {0}, fl;
    const int bad[2] = {0, 2};
    heads_expect_error(fkd_metric_loss_forward(m, ff, bad, 2, &fl, NULL), "head: label 2 of sample 1 outside [0, 2)");
    fkd_metric_loss_free(m);
    fkd_metric_loss_free(NULL);
}

/* One recipe head section: margin keys and metric keys routed to their structs. */
static void test_head_section_routing(void **state)
{
    (void)state;
    fkd_head_params hp;
    const char *keys[] = {"m2", "triplet.mining", "center.lambda", "preset"};
    const char *values[] = {"0.45", "hard", "0.01", "cosface"};
    assert_int_equal(fkd_head_params_parse(&hp, keys, values, 4), FKD_OK);
    assert_string_equal(hp.margin.preset, "cosface");
    assert_true(hp.margin.m2 == 0.45 && hp.margin.m3 == 0.35 && hp.margin.s == 64);
    assert_int_equal(hp.metric.mining, FKD_MINING_HARD);
    assert_true(hp.metric.center_lambda == 0.01 && hp.metric.triplet_margin == 0.2);
    const char *bad_keys[] = {"center.alpha", "s"}, *bad_values[] = {"2", "64"};
    heads_expect_error(fkd_head_params_parse(&hp, bad_keys, bad_values, 2), "head.center.alpha: must be in (0, 1] (got 2)");
    const char *k2[] = {"s"}, *v2[] = {"-1"};
    heads_expect_error(fkd_head_params_parse(&hp, k2, v2, 1), "head.s: must be > 0 (got -1)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradients),
        cmocka_unit_test(test_pytorch_fixtures),
        cmocka_unit_test(test_contrastive_coincident_points),
        cmocka_unit_test(test_bad_parameters),
        cmocka_unit_test(test_head_section_routing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
