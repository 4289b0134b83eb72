/* The synthetic face world: determinism, identities, look-alikes, benchmark shapes, pose. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/dataset.h"
#include "data/loader.h"
#include "data/synth.h"
#include "data/synth_baseline.h"
#include "data/synth_export.h"
#include "data/verbin.h"
#include "support/data_files.h"

#define NPIX (FKD_SYNTH_SIZE * FKD_SYNTH_SIZE * 3)

static double mean_abs_diff(const uint8_t *a, const uint8_t *b)
{
    double s = 0;
    for (int i = 0; i < NPIX; i++) s += abs((int)a[i] - (int)b[i]);
    return s / NPIX;
}

static void test_render_is_deterministic(void **state)
{
    (void)state;
    fkd_synth_world w;
    fkd_synth_world_default(&w, 11, 100);
    fkd_image a = {0}, b = {0}, c = {0};
    for (int id = 0; id < 20; id++) {
        assert_int_equal(fkd_synth_render(&w, id, 3, NULL, &a), FKD_OK);
        assert_int_equal(a.width, 112);
        assert_int_equal(a.height, 112);
        assert_int_equal(a.channels, 3);
        assert_int_equal(fkd_synth_render(&w, id, 3, NULL, &b), FKD_OK);
        assert_memory_equal(a.pixels, b.pixels, NPIX);
        /* Another image of the same identity differs (new pose, light, background). */
        assert_int_equal(fkd_synth_render(&w, id, 4, NULL, &c), FKD_OK);
        assert_true(mean_abs_diff(a.pixels, c.pixels) > 2.0);
    }
    /* Another seed is another world. */
    fkd_synth_world w2 = w;
    w2.seed = 12;
    assert_int_equal(fkd_synth_render(&w2, 5, 3, NULL, &b), FKD_OK);
    assert_int_equal(fkd_synth_render(&w, 5, 3, NULL, &a), FKD_OK);
    assert_true(mean_abs_diff(a.pixels, b.pixels) > 2.0);
    fkd_image_free(&a);
    fkd_image_free(&b);
    fkd_image_free(&c);
}

static void test_nchw_matches_uint8(void **state)
{
    (void)state;
    fkd_synth_world w;
    fkd_synth_world_default(&w, 2, 10);
    fkd_image img = {0};
    assert_int_equal(fkd_synth_render(&w, 7, 1, NULL, &img), FKD_OK);
    uint8_t *scratch = malloc(NPIX);
    float *slot = malloc(sizeof(float) * NPIX);
    assert_int_equal(fkd_synth_render_nchw(&w, 7, 1, NULL, scratch, slot), FKD_OK);
    const int P = FKD_SYNTH_SIZE * FKD_SYNTH_SIZE;
    for (int i = 0; i < P; i++)
        for (int ch = 0; ch < 3; ch++)
            assert_float_equal(slot[ch * P + i], (img.pixels[i * 3 + ch] - 127.5f) / 127.5f, 1e-6f);
    free(scratch);
    free(slot);
    fkd_image_free(&img);
}

static double param_dist(const float *a, const float *b)
{
    double s = 0;
    for (int i = 0; i < FKD_SYNTH_N_PARAMS; i++) s += (double)(a[i] - b[i]) * (a[i] - b[i]);
    return sqrt(s);
}

static void test_identities_and_lookalikes(void **state)
{
    (void)state;
    assert_true(FKD_SYNTH_N_PARAMS >= 40);
    assert_string_equal(fkd_synth_param_name(FKD_SYNTH_HEAD_WIDTH), "HEAD_WIDTH");
    fkd_synth_world w;
    fkd_synth_world_default(&w, 5, 2000);
    float a[FKD_SYNTH_N_PARAMS], b[FKD_SYNTH_N_PARAMS];
    fkd_synth_identity(&w, 17, a);
    fkd_synth_identity(&w, 17, b);
    assert_memory_equal(a, b, sizeof a);
    /* Look-alikes sit at lookalike_sigma * sqrt(P) ~ 2.2 from their original; random pairs
     * at sqrt(2 P) ~ 10 (z units). Compare the averages over all look-alikes found. */
    int n_look = 0;
    double d_look = 0, d_rand = 0;
    for (int64_t id = 0; id < 2000; id++) {
        int64_t parent = fkd_synth_lookalike_of(&w, id);
        if (parent < 0) continue;
        assert_true(parent < id);
        fkd_synth_identity(&w, id, a);
        fkd_synth_identity(&w, parent, b);
        d_look += param_dist(a, b);
        fkd_synth_identity(&w, (id * 7919 + 13) % 2000 == id ? id + 1 : (id * 7919 + 13) % 2000, b);
        d_rand += param_dist(a, b);
        n_look++;
    }
    /* 10% of 2000 identities: binomial, far from zero */
    assert_true(n_look > 120 && n_look < 290);
    d_look /= n_look;
    d_rand /= n_look;
    assert_true(d_look < 0.4 * d_rand);
    /* Held-out look-alikes never point into the training range. */
    for (int64_t id = FKD_SYNTH_HELDOUT_BASE; id < FKD_SYNTH_HELDOUT_BASE + 500; id++) {
        int64_t parent = fkd_synth_lookalike_of(&w, id);
        assert_true(parent < 0 || parent >= FKD_SYNTH_HELDOUT_BASE);
    }
    /* Look-alikes also look alike: closer in pixels than random pairs (same view). */
    fkd_synth_world clean = w;
    clean.pose = clean.light = clean.clutter = clean.occlusion = clean.degradation = 0;
    fkd_image x = {0}, y = {0}, r = {0};
    double pix_look = 0, pix_rand = 0;
    int n = 0;
    for (int64_t id = 1; id < 2000 && n < 10; id++) {
        int64_t parent = fkd_synth_lookalike_of(&w, id);
        if (parent < 0) continue;
        assert_int_equal(fkd_synth_render(&clean, id, 0, NULL, &x), FKD_OK);
        assert_int_equal(fkd_synth_render(&clean, parent, 0, NULL, &y), FKD_OK);
        assert_int_equal(fkd_synth_render(&clean, (id + 1000) % 2000, 0, NULL, &r), FKD_OK);
        pix_look += mean_abs_diff(x.pixels, y.pixels);
        pix_rand += mean_abs_diff(x.pixels, r.pixels);
        n++;
    }
    assert_true(pix_look < pix_rand);
    fkd_image_free(&x);
    fkd_image_free(&y);
    fkd_image_free(&r);
}

static void test_benchmark_shapes(void **state)
{
    (void)state;
    fkd_synth_world w;
    fkd_synth_world_default(&w, 9, 5000);
    assert_int_equal(fkd_synth_bench_count(), 5);
    const int64_t expect_pairs[5] = {6000, 7000, 6000, 6000, 6000};
    for (int b = 0; b < fkd_synth_bench_count(); b++) {
        const fkd_synth_bench_info *info = fkd_synth_bench_get(b);
        assert_ptr_equal(fkd_synth_bench_find(info->name), info);
        fkd_synth_pair *p;
        int64_t n;
        assert_int_equal(fkd_synth_bench_pairs(&w, info->name, &p, &n), FKD_OK);
        assert_int_equal(n, expect_pairs[b]);
        assert_int_equal(info->n_folds, 10);
        int64_t per_fold = n / 10;
        int64_t lo = fkd_synth_bench_identity_base(b), hi = fkd_synth_bench_identity_base(b + 1);
        int n_look = 0;
        for (int64_t i = 0; i < n; i++) {
            /* contiguous folds, positives then negatives, equal numbers */
            assert_int_equal(p[i].fold, i / per_fold);
            assert_int_equal(p[i].same, (i % per_fold) < per_fold / 2);
            for (int j = 0; j < 2; j++) {
                /* held out: never a training identity, inside this benchmark's range */
                assert_true(p[i].identity[j] >= w.n_train);
                assert_true(p[i].identity[j] >= lo && p[i].identity[j] < hi);
            }
            if (p[i].same) assert_true(p[i].identity[0] == p[i].identity[1] && p[i].index[0] != p[i].index[1]);
            else assert_true(p[i].identity[0] != p[i].identity[1]);
            if (!p[i].same && fkd_synth_lookalike_of(&w, p[i].identity[0]) == p[i].identity[1]) n_look++;
            if (strcmp(info->name, "synth-cfp-fp") == 0) {
                /* one frontal, one profile */
                float m0 = p[i].ov[0].yaw_max, m1 = p[i].ov[1].yaw_max;
                assert_true((m0 <= 10 && p[i].ov[1].yaw_min >= 60) || (m1 <= 10 && p[i].ov[0].yaw_min >= 60));
            }
            if (strcmp(info->name, "synth-agedb") == 0)
                assert_true(fabsf(p[i].ov[0].age_delta - p[i].ov[1].age_delta) >= 27);
        }
        /* the look-alike sets draw every negative from look-alike pairs */
        if (strcmp(info->name, "synth-cplfw") == 0 || strcmp(info->name, "synth-calfw") == 0)
            assert_int_equal(n_look, n / 2);
        /* the same call gives the same pairs */
        fkd_synth_pair *p2;
        int64_t n2;
        assert_int_equal(fkd_synth_bench_pairs(&w, info->name, &p2, &n2), FKD_OK);
        assert_memory_equal(p, p2, sizeof *p * (size_t)n);
        free(p);
        free(p2);
    }
    fkd_synth_pair *p;
    int64_t n;
    assert_int_equal(fkd_synth_bench_pairs(&w, "synth-nope", &p, &n), FKD_ERR_ARG);
    assert_non_null(strstr(fkd_last_error(), "synth-nope"));
    w.lookalike_fraction = 0;
    assert_int_equal(fkd_synth_bench_pairs(&w, "cplfw", &p, &n), FKD_ERR_ARG);
}

/* The mean absolute difference between the left and right halves (mirrored): a frontal
 * face is nearly symmetric, a profile is not. */
static double asymmetry(const uint8_t *px)
{
    double s = 0;
    const int W = FKD_SYNTH_SIZE;
    for (int y = 0; y < W; y++)
        for (int x = 0; x < W / 2; x++)
            for (int c = 0; c < 3; c++) s += abs((int)px[(y * W + x) * 3 + c] - (int)px[(y * W + W - 1 - x) * 3 + c]);
    return s / (W * W / 2 * 3);
}

static void test_yaw_changes_the_face(void **state)
{
    (void)state;
    fkd_synth_world w;
    fkd_synth_world_default(&w, 4, 100);
    /* No background, light or occlusion noise, so the measure sees the face. */
    w.light = w.clutter = w.occlusion = w.degradation = w.expression = 0;
    fkd_synth_override frontal = {.set_yaw = true, .yaw_min = 0, .yaw_max = 0};
    fkd_synth_override profile = {.set_yaw = true, .yaw_min = 85, .yaw_max = 85};
    fkd_image f = {0}, p = {0};
    double asym_f = 0, asym_p = 0, diff = 0;
    for (int id = 0; id < 8; id++) {
        assert_int_equal(fkd_synth_render(&w, id, 0, &frontal, &f), FKD_OK);
        assert_int_equal(fkd_synth_render(&w, id, 0, &profile, &p), FKD_OK);
        asym_f += asymmetry(f.pixels);
        asym_p += asymmetry(p.pixels);
        diff += mean_abs_diff(f.pixels, p.pixels);
    }
    /* A profile is far less symmetric than a frontal view, and differs from it. */
    assert_true(asym_p > 2.0 * asym_f);
    assert_true(diff / 8 > 10.0);
    fkd_image_free(&f);
    fkd_image_free(&p);
}

static void test_world_check(void **state)
{
    (void)state;
    fkd_synth_world w;
    fkd_synth_world_default(&w, 1, 10);
    assert_int_equal(fkd_synth_world_check(&w), FKD_OK);
    w.lookalike_fraction = 1.5f;
    assert_int_equal(fkd_synth_world_check(&w), FKD_ERR_ARG);
    fkd_synth_world_default(&w, 1, 10);
    w.pose = -1;
    assert_int_equal(fkd_synth_world_check(&w), FKD_ERR_ARG);
    fkd_image img = {0};
    assert_int_equal(fkd_synth_render(&w, -1, 0, NULL, &img), FKD_ERR_ARG);
}

static void test_bin_round_trip_through_the_reader(void **state)
{
    (void)state;
    fkd_synth_world w;
    fkd_synth_world_default(&w, 3, 50);
    fkd_synth_pair *pairs;
    int64_t n;
    assert_int_equal(fkd_synth_bench_pairs(&w, "synth-cfp-fp", &pairs, &n), FKD_OK);
    /* a slice across the fold boundary between positives and negatives */
    const int64_t first = 340, count = 20;
    char *dir = fkd_test_tmpdir("synth_bin");
    const char *path = fkd_test_path(dir, "cfp.bin");
    assert_int_equal(fkd_synth_write_pairs(&w, pairs + first, count, path, NULL), FKD_OK);
    fkd_verbin set;
    assert_int_equal(fkd_verbin_load(path, &set), FKD_OK);
    assert_int_equal(set.n_pairs, count);
    fkd_image rendered = {0}, decoded = {0};
    for (int64_t i = 0; i < count; i++) {
        const fkd_synth_pair *p = &pairs[first + i];
        assert_int_equal(set.issame[i], p->same);
        for (int j = 0; j < 2; j++) {
            assert_int_equal(fkd_image_decode(set.images[2 * i + j], set.sizes[2 * i + j], "bin", &decoded), FKD_OK);
            assert_int_equal(decoded.width, 112);
            assert_int_equal(fkd_synth_render(&w, p->identity[j], p->index[j], &p->ov[j], &rendered), FKD_OK);
            /* JPEG q95 (4:2:0 chroma) on noisy renders: mean absolute error 2.3 grey
             * levels on average, 4.6 at worst over 40 images; 6 leaves a margin */
            assert_true(mean_abs_diff(decoded.pixels, rendered.pixels) < 6.0);
            fkd_image_free(&decoded);
        }
    }
    fkd_verbin_free(&set);
    fkd_image_free(&rendered);
    free(pairs);
    fkd_test_rmtree(dir);
    free(dir);
}

static void test_training_sets_open_as_datasets(void **state)
{
    (void)state;
    fkd_synth_world w;
    fkd_synth_world_default(&w, 8, 12);
    char *dir = fkd_test_tmpdir("synth_train");
    const int ids = 4, per = 3;
    assert_int_equal(fkd_synth_write_recordio(&w, ids, per, fkd_test_path(dir, "train"), NULL), FKD_OK);
    assert_int_equal(fkd_synth_write_folder(&w, ids, per, fkd_test_path(dir, "folder"), NULL), FKD_OK);
    fkd_dataset rec, folder, live;
    assert_int_equal(fkd_dataset_open_recordio(&rec, fkd_test_path(dir, "train.rec"), NULL), FKD_OK);
    assert_int_equal(fkd_dataset_open_folder(&folder, fkd_test_path(dir, "folder")), FKD_OK);
    assert_int_equal(fkd_synth_dataset_open(&live, &w, per), FKD_OK);
    assert_int_equal(rec.ops->count(&rec), ids * per);
    assert_int_equal(folder.ops->count(&folder), ids * per);
    assert_int_equal(rec.ops->identities(&rec), ids);
    assert_int_equal(folder.ops->identities(&folder), ids);
    assert_int_equal(live.ops->count(&live), 12 * per);
    fkd_image a = {0}, b = {0}, c = {0};
    for (int64_t i = 0; i < ids * per; i++) {
        assert_int_equal(rec.ops->label(&rec, i), i / per);
        assert_int_equal(folder.ops->label(&folder, i), i / per);
        assert_int_equal(live.ops->label(&live, i), i / per);
        assert_int_equal(rec.ops->load(&rec, i, &a), FKD_OK);
        assert_int_equal(folder.ops->load(&folder, i, &b), FKD_OK);
        assert_int_equal(live.ops->load(&live, i, &c), FKD_OK);
        /* the same JPEG bytes in both files; close to the live render (as above) */
        assert_memory_equal(a.pixels, b.pixels, NPIX);
        assert_true(mean_abs_diff(a.pixels, c.pixels) < 6.0);
        fkd_image_free(&a);
        fkd_image_free(&b);
        fkd_image_free(&c);
    }
    assert_int_equal(live.ops->load(&live, 12 * per, &c), FKD_ERR_ARG);
    /* more identities than the world trains on */
    assert_int_equal(fkd_synth_write_folder(&w, 13, 1, fkd_test_path(dir, "x"), NULL), FKD_ERR_ARG);
    fkd_dataset_free(&rec);
    fkd_dataset_free(&folder);
    fkd_dataset_free(&live);
    fkd_test_rmtree(dir);
    free(dir);
}

static void test_fold_accuracy_by_hand(void **state)
{
    (void)state;
    /* Two folds of four pairs; thresholds sit midway between distinct similarities.
     * Fold 1 is scored with fold 0's best threshold: fold 0 alone separates at any t in
     * (0.1, 0.8); the sweep keeps the first best gap, between 0.1 and the next value
     * overall (0.7): t = 0.4. Fold 1 at 0.4: the negative at 0.9 is wrong, 3/4.
     * Fold 0 is scored with fold 1's best: 3/4 right for t in (0.1, 0.7), first gap
     * again t = 0.4; fold 0 at 0.4 is all right, 4/4. Mean 0.875, std 0.125. */
    const double sim[8] = {0.9, 0.8, 0.1, 0.05, 0.8, 0.7, 0.9, 0.1};
    const bool same[8] = {1, 1, 0, 0, 1, 1, 0, 0};
    double mean, std;
    fkd_baseline_fold_accuracy(sim, same, 8, 2, &mean, &std);
    assert_float_equal(mean, (1.0 + 0.75) / 2, 1e-12);
    assert_float_equal(std, 0.125, 1e-12);
}

static void test_wccn_fit(void **state)
{
    (void)state;
    fkd_synth_world w;
    fkd_synth_world_default(&w, 6, 10);
    fkd_baseline_wccn a, b;
    assert_int_equal(fkd_baseline_wccn_fit(&w, 6, 3, &a), FKD_OK);
    assert_int_equal(fkd_baseline_wccn_fit(&w, 6, 3, &b), FKD_OK);
    const int D = FKD_BASELINE_GREY_DIM;
    assert_memory_equal(a.L, b.L, sizeof(double) * D * D);
    /* a Cholesky factor: lower triangular, positive diagonal; with 6 x 3 images S_w has
     * rank <= 12, so most of the diagonal is the ridge: L_ii^2 >= lambda > 0 */
    for (int i = 0; i < D; i++) {
        assert_true(a.L[(size_t)i * D + i] > 0);
        for (int j = i + 1; j < D; j++) assert_true(a.L[(size_t)i * D + j] == 0);
    }
    fkd_baseline_wccn_free(&a);
    fkd_baseline_wccn_free(&b);
    assert_int_equal(fkd_baseline_wccn_fit(&w, 11, 3, &a), FKD_ERR_ARG);
}

static void test_loader_renders_on_worker_threads(void **state)
{
    (void)state;
    fkd_synth_world w;
    fkd_synth_world_default(&w, 21, 6);
    fkd_dataset ds;
    assert_int_equal(fkd_synth_dataset_open(&ds, &w, 2), FKD_OK);
    fkd_loader_options o;
    fkd_loader_options_default(&o);
    o.sampler = FKD_SAMPLER_SEQUENTIAL;
    o.batch_size = 4;
    o.workers = 2;
    fkd_loader *l;
    assert_int_equal(fkd_loader_create(&l, &ds, &o), FKD_OK);
    uint8_t *scratch = malloc(NPIX);
    float *slot = malloc(sizeof(float) * NPIX);
    for (int b = 0; b < 3; b++) {
        const fkd_batch *batch;
        assert_int_equal(fkd_loader_next(l, &batch), FKD_OK);
        assert_int_equal(batch->n, 4);
        for (int i = 0; i < batch->n; i++) {
            int64_t k = batch->indices[i];
            assert_int_equal(batch->labels[i], k / 2);
            /* the worker's render is the same as this thread's, to the bit */
            assert_int_equal(fkd_synth_render_nchw(&w, k / 2, (uint32_t)(k % 2), NULL, scratch, slot), FKD_OK);
            assert_memory_equal(batch->images + (size_t)i * NPIX, slot, sizeof(float) * NPIX);
        }
    }
    free(scratch);
    free(slot);
    fkd_loader_free(l);
    fkd_dataset_free(&ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render_is_deterministic),
        cmocka_unit_test(test_nchw_matches_uint8),
        cmocka_unit_test(test_identities_and_lookalikes),
        cmocka_unit_test(test_benchmark_shapes),
        cmocka_unit_test(test_yaw_changes_the_face),
        cmocka_unit_test(test_world_check),
        cmocka_unit_test(test_fold_accuracy_by_hand),
        cmocka_unit_test(test_wccn_fit),
        cmocka_unit_test(test_bin_round_trip_through_the_reader),
        cmocka_unit_test(test_training_sets_open_as_datasets),
        cmocka_unit_test(test_loader_renders_on_worker_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
