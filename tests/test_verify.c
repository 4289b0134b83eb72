/* eval/verify: insightface's protocol and the ROC statistics against the numpy reference
 * in scripts/verify_reference.py (fixtures in tests/fixtures/eval/<case>.txt).
 *
 * Tolerances: fold accuracies are ratios of integer counts and thresholds are grid
 * values, so they must agree to 1e-12 (in practice exactly); means/stds differ only by
 * summation order (numpy's pairwise sum), 1e-12; distances from float32 embeddings,
 * normalised in double, 1e-12; VAL thresholds are interpolated, 1e-12; TAR/FAR are
 * count ratios, 1e-12; AUC is compared with a Mann-Whitney rank sum, 1e-12. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "eval/verify.h"

#define TOL 1e-12

/* One fixture: lines "name v1 v2 ..." parsed into named arrays of doubles. */
typedef struct {
    char name[32];
    int n;
    double *v;
} field;

typedef struct {
    field f[40];
    int n_fields;
} fixture;

static void fixture_load(fixture *fx, const char *path)
{
    uint8_t *data;
    size_t size;
    memset(fx, 0, sizeof(*fx));
    if (fkd_file_read_all(path, &data, &size) != FKD_OK) fail_msg("%s", fkd_last_error());
    char *save = NULL;
    for (char *line = strtok_r((char *)data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#') continue;
        assert_true(fx->n_fields < 40);
        field *f = &fx->f[fx->n_fields++];
        char *p = line, *end;
        size_t len = strcspn(p, " ");
        assert_true(len < sizeof(f->name));
        memcpy(f->name, p, len);
        p += len;
        int cap = 16;
        f->v = malloc(sizeof(double) * cap);
        for (;;) {
            double x = strtod(p, &end);
            if (end == p) break;
            if (f->n == cap) f->v = realloc(f->v, sizeof(double) * (cap *= 2));
            f->v[f->n++] = x;
            p = end;
        }
    }
    free(data);
}

static const field *get(const fixture *fx, const char *name)
{
    for (int i = 0; i < fx->n_fields; i++)
        if (!strcmp(fx->f[i].name, name)) return &fx->f[i];
    return NULL;
}

static const double *need(const fixture *fx, const char *name, int n)
{
    const field *f = get(fx, name);
    if (!f) fail_msg("fixture field '%s' missing", name);
    assert_int_equal(f->n, n);
    return f->v;
}

static void fixture_free(fixture *fx)
{
    for (int i = 0; i < fx->n_fields; i++) free(fx->f[i].v);
}

static void assert_close(double got, double want, double tol, const char *what, int i)
{
    if (isnan(want) && isnan(got)) return;
    if (!(fabs(got - want) <= tol)) fail_msg("%s[%d]: got %.17g want %.17g (tol %g)", what, i, got, want, tol);
}

static void check_case(const char *path)
{
    fixture fx;
    fixture_load(&fx, path);
    int n = (int)need(&fx, "n_pairs", 1)[0];
    const double *same_d = need(&fx, "issame", n);
    uint8_t *same = malloc((size_t)n);
    for (int i = 0; i < n; i++) same[i] = (uint8_t)same_d[i];

    fkd_verify_result r;
    const double *dist_ref = need(&fx, "dist", n);
    const field *emb_f = get(&fx, "emb");
    if (emb_f) {
        int d = (int)need(&fx, "dim", 1)[0];
        assert_int_equal(emb_f->n, 2 * n * d);
        float *emb = malloc(sizeof(float) * emb_f->n);
        for (int i = 0; i < emb_f->n; i++) emb[i] = (float)emb_f->v[i];
        double *dist = malloc(sizeof(double) * n);
        assert_int_equal(fkd_verify_pair_distances(dist, emb, n, d), FKD_OK);
        for (int i = 0; i < n; i++) assert_close(dist[i], dist_ref[i], TOL, "dist", i);
        assert_int_equal(fkd_verify_embeddings(emb, same, n, d, 10, &r), FKD_OK);
        assert_close(fkd_verify_xnorm(emb, 2 * n, d), need(&fx, "xnorm", 1)[0], 1e-10, "xnorm", 0);
        assert_close(r.xnorm, need(&fx, "xnorm", 1)[0], 1e-10, "no-flip xnorm", 0);
        /* the flip path: mirrors embedding to half the image's give the same directions,
         * hence the same numbers, and an XNorm of (1 + 1/2) / 2 of the images' */
        float *half = malloc(sizeof(float) * emb_f->n);
        for (int i = 0; i < emb_f->n; i++) half[i] = 0.5f * emb[i];
        fkd_verify_result rf;
        assert_int_equal(fkd_verify_flip_pairs(emb, half, same, n, d, 10, &rf), FKD_OK);
        for (int f = 0; f < 10; f++) assert_close(rf.fold_accuracy[f], need(&fx, "fold_accuracy", 10)[f], 0, "flip acc", f);
        assert_close(rf.xnorm, 0.75 * need(&fx, "xnorm", 1)[0], 1e-10, "flip xnorm", 0);
        free(half);
        free(dist);
        free(emb);
    } else {
        assert_int_equal(fkd_verify_distances(dist_ref, same, n, 10, &r), FKD_OK);
    }
    assert_int_equal(r.n_folds, 10);
    const double *fb = need(&fx, "fold_begin", 10), *fe = need(&fx, "fold_end", 10);
    const double *ft = need(&fx, "fold_threshold", 10), *fa = need(&fx, "fold_accuracy", 10);
    const double *vt = need(&fx, "val_threshold", 10);
    for (int f = 0; f < 10; f++) {
        assert_int_equal(r.fold_begin[f], (int)fb[f]);
        assert_int_equal(r.fold_end[f], (int)fe[f]);
        assert_close(r.fold_threshold[f], ft[f], 0, "fold_threshold", f); /* exact */
        assert_close(r.fold_accuracy[f], fa[f], 0, "fold_accuracy", f);   /* exact */
        assert_close(r.fold_val_threshold[f], vt[f], TOL, "val_threshold", f);
    }
    assert_close(r.accuracy_mean, need(&fx, "accuracy_mean", 1)[0], TOL, "accuracy_mean", 0);
    assert_close(r.accuracy_std, need(&fx, "accuracy_std", 1)[0], TOL, "accuracy_std", 0);
    assert_close(r.val_mean, need(&fx, "val_mean", 1)[0], TOL, "val_mean", 0);
    assert_close(r.val_std, need(&fx, "val_std", 1)[0], TOL, "val_std", 0);
    assert_close(r.val_far_mean, need(&fx, "val_far_mean", 1)[0], TOL, "val_far_mean", 0);
    const double *tar = need(&fx, "tar", FKD_VERIFY_N_FAR), *tt = need(&fx, "tar_threshold", FKD_VERIFY_N_FAR);
    const double *tf = need(&fx, "tar_far", FKD_VERIFY_N_FAR);
    for (int j = 0; j < FKD_VERIFY_N_FAR; j++) {
        assert_int_equal(isnan(r.tar[j]), isnan(tar[j])); /* the same FARs are skipped */
        assert_close(r.tar[j], tar[j], TOL, "tar", j);
        assert_close(r.tar_threshold[j], tt[j], TOL, "tar_threshold", j);
        assert_close(r.tar_far[j], tf[j], TOL, "tar_far", j);
        if (!isnan(tar[j])) assert_true(r.tar_far[j] <= fkd_verify_far_targets[j]);
    }
    assert_close(r.auc, need(&fx, "auc", 1)[0], TOL, "auc", 0);
    assert_close(r.eer, need(&fx, "eer", 1)[0], TOL, "eer", 0);
    assert_close(r.eer_threshold, need(&fx, "eer_threshold", 1)[0], TOL, "eer_threshold", 0);

    /* the student's view at the teacher's thresholds: at the result's own TAR thresholds
     * (the reference thresholds, on the reference distances) the rates must come back
     * exactly; skipped FARs stay NAN */
    double tpr[FKD_VERIFY_N_FAR], far[FKD_VERIFY_N_FAR];
    assert_int_equal(fkd_verify_rates_at_thresholds(dist_ref, same, n, tt, FKD_VERIFY_N_FAR, tpr, far),
                     FKD_OK);
    for (int j = 0; j < FKD_VERIFY_N_FAR; j++) {
        assert_int_equal(isnan(tpr[j]), isnan(tar[j]));
        assert_close(tpr[j], tar[j], TOL, "rates_at tpr", j);
        assert_close(far[j], tf[j], TOL, "rates_at far", j);
    }
    /* the ROC handed to plots is the one the statistics came from */
    fkd_roc roc;
    assert_int_equal(fkd_verify_roc(dist_ref, same, n, &roc), FKD_OK);
    assert_int_equal(roc.n_pos + roc.n_neg, n);
    assert_close(fkd_roc_auc(&roc), r.auc, 0, "roc auc", 0);
    fkd_roc_free(&roc);
    free(same);
    fixture_free(&fx);
}

static void test_even_600(void **state)
{
    (void)state;
    check_case("tests/fixtures/eval/even_600.txt");
}

static void test_uneven_601(void **state)
{
    (void)state;
    check_case("tests/fixtures/eval/uneven_601.txt");
}

static void test_ties_on_threshold_grid(void **state)
{
    (void)state;
    check_case("tests/fixtures/eval/ties_397.txt");
}

static void test_many_pairs_skips_small_fars(void **state)
{
    (void)state;
    check_case("tests/fixtures/eval/many_12000.txt");
}

static void test_val_far_hit_exactly(void **state)
{
    (void)state;
    check_case("tests/fixtures/eval/val_exact_11000.txt");
}

static void test_kfold_sizes(void **state)
{
    (void)state;
    int b, e;
    /* sklearn: 601 into 10 -> one fold of 61, nine of 60; 609 -> nine of 61, one of 60 */
    fkd_verify_kfold(601, 10, 0, &b, &e);
    assert_int_equal(b, 0);
    assert_int_equal(e, 61);
    fkd_verify_kfold(601, 10, 1, &b, &e);
    assert_int_equal(b, 61);
    assert_int_equal(e, 121);
    fkd_verify_kfold(609, 10, 8, &b, &e);
    assert_int_equal(e - b, 61);
    fkd_verify_kfold(609, 10, 9, &b, &e);
    assert_int_equal(b, 549);
    assert_int_equal(e, 609);
    assert_int_equal(fkd_verify_threshold_count(4.0, 0.01), 400);
    assert_int_equal(fkd_verify_threshold_count(4.0, 0.001), 4000);
}

static void test_flip_sum_and_xnorm(void **state)
{
    (void)state;
    const float e[] = {3, 0, 0, 0, 0, 0}, ef[] = {1, 0, 3, 0, 0, 0};
    float out[6];
    fkd_verify_flip_sum(out, e, ef, 2, 3);
    assert_float_equal(out[0], 0.8f, 1e-7);
    assert_float_equal(out[2], 0.6f, 1e-7);
    for (int j = 3; j < 6; j++) assert_true(out[j] == 0.0f); /* zero row stays zero */
    assert_float_equal(fkd_verify_xnorm(ef, 2, 3), (sqrt(10.0) + 0.0) / 2, 1e-12);
}

static void test_roc_small_by_hand(void **state)
{
    (void)state;
    /* scores: pos 0.9 0.7 0.4, neg 0.8 0.4 0.1 -> points (far,tpr): (0,0) (0,1/3) (1/3,1/3)
     * (1/3,2/3) (2/3,1) [tie at 0.4] (1,1) */
    const double s[] = {0.9, 0.8, 0.7, 0.4, 0.4, 0.1};
    const uint8_t same[] = {1, 0, 1, 1, 0, 0};
    fkd_roc roc;
    assert_int_equal(fkd_roc_compute(s, same, 6, &roc), FKD_OK);
    assert_int_equal(roc.n_points, 6);
    assert_true(isinf(roc.threshold[0]));
    assert_float_equal(roc.far[4], 2.0 / 3, 1e-15);
    assert_float_equal(roc.tpr[4], 1.0, 1e-15);
    /* AUC: pairs pos>neg: 0.9>all(3), 0.7>0.4,0.1 (2), 0.4>0.1 (1), 0.4=0.4 (0.5) -> 6.5/9 */
    assert_float_equal(fkd_roc_auc(&roc), 6.5 / 9, 1e-15);
    double tar, thr, far;
    assert_int_equal(fkd_roc_tar_at_far(&roc, 0.5, &tar, &thr, &far), 1);
    assert_float_equal(tar, 2.0 / 3, 1e-15);
    assert_float_equal(thr, 0.7, 0);
    assert_int_equal(fkd_roc_tar_at_far(&roc, 0.1, &tar, &thr, &far), 0); /* 3 negatives < 10 */
    assert_true(isnan(tar));
    /* EER: FAR = FNR = 1/3 exactly at point 3 (threshold 0.7), decided on counts */
    double et;
    assert_float_equal(fkd_roc_eer(&roc, &et), 1.0 / 3, 1e-15);
    assert_float_equal(et, 0.7, 0);
    fkd_roc_free(&roc);
    fkd_roc_free(&roc); /* free is idempotent */
    fkd_roc_free(NULL);
}

static void test_bad_input(void **state)
{
    (void)state;
    fkd_verify_result r;
    const double d[12] = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2};
    const uint8_t all_same[12] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    assert_int_equal(fkd_verify_distances(d, all_same, 12, 10, &r), FKD_ERR_ARG);
    assert_non_null(strstr(fkd_last_error(), "12 positive and 0 negative"));
    const uint8_t mixed[12] = {1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0};
    assert_int_equal(fkd_verify_distances(d, mixed, 5, 10, &r), FKD_ERR_ARG);
    assert_int_equal(fkd_verify_distances(d, mixed, 12, 1, &r), FKD_ERR_ARG);
    double bad[12];
    memcpy(bad, d, sizeof(bad));
    bad[7] = NAN;
    assert_int_equal(fkd_verify_distances(bad, mixed, 12, 10, &r), FKD_ERR_NUMERIC);
    assert_non_null(strstr(fkd_last_error(), "pair 7"));
    /* 12 pairs, 10 folds: VAL is NAN where a test fold lacks a positive or a negative */
    assert_int_equal(fkd_verify_distances(d, mixed, 12, 10, &r), FKD_OK);
    assert_true(isnan(r.val_mean));
    assert_true(r.accuracy_mean >= 0 && r.accuracy_mean <= 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_even_600),
        cmocka_unit_test(test_uneven_601),
        cmocka_unit_test(test_ties_on_threshold_grid),
        cmocka_unit_test(test_many_pairs_skips_small_fars),
        cmocka_unit_test(test_val_far_hit_exactly),
        cmocka_unit_test(test_kfold_sizes),
        cmocka_unit_test(test_flip_sum_and_xnorm),
        cmocka_unit_test(test_roc_small_by_hand),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
