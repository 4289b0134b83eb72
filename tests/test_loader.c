/* The loader: determinism across thread counts, epochs, P x K batches, rank sharding,
 * flips and normalisation (exact values), worker errors reaching the consumer, and the
 * folder dataset (sorted labels, empty folders, sizes, resize) and pairs.txt. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/dataset.h"
#include "data/folder.h"
#include "data/loader.h"
#include "tests/support/data_files.h"

#define S FKD_FACE_SIZE
#define PLANE (S * S)

/* A dataset in memory: image i has pixel (y, x, c) = value(i, y, x, c), label i % ids
 * (or from `labels`); loading image `bad` fails. */
typedef struct {
    int64_t n;
    int32_t ids;
    const int32_t *labels;
    int64_t bad;
} fake;

static uint8_t value(int64_t i, int y, int x, int c) { return (uint8_t)((i * 7 + x * 2 + y + c * 50) % 256); }

static int64_t fake_count(const fkd_dataset *ds) { return ((const fake *)ds->impl)->n; }
static int32_t fake_identities(const fkd_dataset *ds) { return ((const fake *)ds->impl)->ids; }
static int32_t fake_label(const fkd_dataset *ds, int64_t i)
{
    const fake *f = ds->impl;
    return f->labels ? f->labels[i] : (int32_t)(i % f->ids);
}

static fkd_status fake_load(const fkd_dataset *ds, int64_t i, fkd_image *out)
{
    const fake *f = ds->impl;
    if (i == f->bad) return FKD_FAIL(FKD_ERR_FORMAT, "fake.rec: record %lld: corrupt JPEG", (long long)i + 1);
    out->width = out->height = S;
    out->channels = 3;
    out->pixels = malloc(PLANE * 3);
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++)
            for (int c = 0; c < 3; c++) out->pixels[(y * S + x) * 3 + c] = value(i, y, x, c);
    return FKD_OK;
}

static const fkd_dataset_ops fake_ops = {"fake", fake_count, fake_label, fake_identities, fake_load, NULL};

static fkd_dataset make_fake(fake *f) { return (fkd_dataset){&fake_ops, f, NULL}; }

static fkd_loader *start(const fkd_dataset *ds, fkd_loader_options *o)
{
    fkd_loader *l;
    fkd_status s = fkd_loader_create(&l, ds, o);
    if (s != FKD_OK) fail_msg("%s", fkd_last_error());
    return l;
}

static const fkd_batch *next(fkd_loader *l)
{
    const fkd_batch *b;
    fkd_status s = fkd_loader_next(l, &b);
    if (s != FKD_OK) fail_msg("%s", fkd_last_error());
    return b;
}

/* Same seed: same batches (indices, flips, pixels) with 1 worker/depth 1 and 3 workers/
 * depth 5; another seed differs. */
static void test_deterministic_regardless_of_threads(void **state)
{
    (void)state;
    fake f = {103, 10, NULL, -1};
    fkd_dataset ds = make_fake(&f);
    fkd_loader_options a, b;
    fkd_loader_options_default(&a);
    a.batch_size = 8;
    a.seed = 11;
    a.workers = 1;
    a.depth = 1;
    b = a;
    b.workers = 3;
    b.depth = 5;
    fkd_loader *la = start(&ds, &a), *lb = start(&ds, &b);
    assert_int_equal(fkd_loader_steps_per_epoch(la), 12);
    for (int step = 0; step < 30; step++) {
        const fkd_batch *x = next(la), *y = next(lb);
        assert_int_equal(x->step, step);
        assert_int_equal(x->epoch, step / 12);
        assert_int_equal(x->n, 8);
        assert_memory_equal(x->indices, y->indices, 8 * sizeof *x->indices);
        assert_memory_equal(x->flipped, y->flipped, 8);
        assert_memory_equal(x->labels, y->labels, 8 * sizeof *x->labels);
        assert_memory_equal(x->images, y->images, 8 * 3 * PLANE * sizeof(float));
    }
    fkd_loader_free(la);
    fkd_loader_free(lb);
    a.seed = 12;
    b.seed = 11;
    la = start(&ds, &a);
    lb = start(&ds, &b);
    const fkd_batch *x = next(la), *y = next(lb);
    assert_memory_not_equal(x->indices, y->indices, 8 * sizeof *x->indices);
    fkd_loader_free(la);
    fkd_loader_free(lb);
}

/* An epoch draws distinct images (96 of 103: the tail is dropped) and the next epoch
 * reorders them. */
static void test_shuffled_epochs(void **state)
{
    (void)state;
    fake f = {103, 10, NULL, -1};
    fkd_dataset ds = make_fake(&f);
    fkd_loader_options o;
    fkd_loader_options_default(&o);
    o.batch_size = 8;
    fkd_loader *l = start(&ds, &o);
    int64_t order[2][96];
    for (int e = 0; e < 2; e++) {
        int seen[103] = {0};
        for (int t = 0; t < 12; t++) {
            const fkd_batch *b = next(l);
            for (int j = 0; j < 8; j++) {
                order[e][t * 8 + j] = b->indices[j];
                assert_int_equal(b->labels[j], b->indices[j] % 10);
                assert_int_equal(seen[b->indices[j]]++, 0);
            }
        }
    }
    assert_memory_not_equal(order[0], order[1], sizeof order[0]);
    fkd_loader_free(l);
}

/* P x K: P distinct identities, K images each, distinct when the identity has >= K;
 * identity 3 has 2 images and K = 3, so it repeats. */
static void test_pk_batches(void **state)
{
    (void)state;
    int32_t labels[40];
    for (int i = 0; i < 40; i++) labels[i] = i < 2 ? 3 : (i % 7 == 3 ? 4 : i % 7); /* label 3 only on 0, 1 */
    fake f = {40, 8, labels, -1};                                                   /* identity 7: no images */
    fkd_dataset ds = make_fake(&f);
    fkd_loader_options o;
    fkd_loader_options_default(&o);
    o.sampler = FKD_SAMPLER_PK;
    o.p_identities = 3;
    o.k_images = 3;
    fkd_loader *l = start(&ds, &o);
    assert_int_equal(fkd_loader_batch_size(l), 9);
    assert_int_equal(fkd_loader_steps_per_epoch(l), 2); /* 7 identities with images / 3 */
    int identity_3_seen = 0;
    for (int step = 0; step < 20; step++) {
        const fkd_batch *b = next(l);
        assert_int_equal(b->n, 9);
        for (int p = 0; p < 3; p++) {
            int32_t y = b->labels[p * 3];
            for (int q = 0; q < p; q++) assert_int_not_equal(b->labels[q * 3], y);
            for (int k = 0; k < 3; k++) {
                assert_int_equal(b->labels[p * 3 + k], y);
                assert_int_equal(labels[b->indices[p * 3 + k]], y);
                for (int k2 = 0; k2 < k && y != 3; k2++)
                    assert_int_not_equal(b->indices[p * 3 + k], b->indices[p * 3 + k2]);
            }
            identity_3_seen += y == 3;
        }
    }
    assert_true(identity_3_seen > 0);
    fkd_loader_free(l);
    /* PK over 2 ranks: at each step the ranks hold different identities */
    o.world = 2;
    o.p_identities = 2;
    fkd_loader_options o1 = o;
    o1.rank = 1;
    fkd_loader *a = start(&ds, &o), *b = start(&ds, &o1);
    assert_int_equal(fkd_loader_steps_per_epoch(a), 1); /* 7 identities / (2 x 2) */
    for (int step = 0; step < 6; step++) {
        const fkd_batch *x = next(a), *y = next(b);
        for (int i = 0; i < 6; i += 3)
            for (int j = 0; j < 6; j += 3) assert_int_not_equal(x->labels[i], y->labels[j]);
    }
    fkd_loader_free(a);
    fkd_loader_free(b);
}

/* Ranks 0 and 1 of 2 with batch 4 see exactly the halves of world 1's batch of 8. */
static void test_sharding_by_rank(void **state)
{
    (void)state;
    fake f = {50, 5, NULL, -1};
    fkd_dataset ds = make_fake(&f);
    fkd_loader_options one, r0, r1;
    fkd_loader_options_default(&one);
    one.batch_size = 8;
    one.seed = 5;
    r0 = one;
    r0.batch_size = 4;
    r0.world = 2;
    r1 = r0;
    r1.rank = 1;
    fkd_loader *l1 = start(&ds, &one), *l0a = start(&ds, &r0), *l0b = start(&ds, &r1);
    assert_int_equal(fkd_loader_steps_per_epoch(l0a), 6);
    for (int step = 0; step < 14; step++) {
        const fkd_batch *g = next(l1), *a = next(l0a), *b = next(l0b);
        assert_memory_equal(a->indices, g->indices, 4 * sizeof *a->indices);
        assert_memory_equal(b->indices, g->indices + 4, 4 * sizeof *b->indices);
    }
    fkd_loader_free(l1);
    fkd_loader_free(l0a);
    fkd_loader_free(l0b);
    /* sequential: rank r takes every world-th batch; the last one is short */
    fkd_loader_options sq = one;
    sq.sampler = FKD_SAMPLER_SEQUENTIAL;
    sq.batch_size = 16;
    sq.world = 2;
    sq.rank = 1;
    fkd_loader *l = start(&ds, &sq);
    assert_int_equal(fkd_loader_steps_per_epoch(l), 2); /* batches 1 and 3 of 0..3 */
    const fkd_batch *b = next(l);
    assert_int_equal(b->n, 16);
    assert_int_equal(b->indices[0], 16);
    b = next(l);
    assert_int_equal(b->n, 2);
    assert_int_equal(b->indices[1], 49);
    assert_int_equal(b->flipped[0], 0);
    fkd_loader_free(l);
}

/* Values: (x - 127.5) / 127.5 per channel, NCHW, mirrored columns when flipped; about half
 * of the images flipped. Exact: both sides compute the same float expression. */
static void test_flip_and_normalisation(void **state)
{
    (void)state;
    fake f = {256, 4, NULL, -1};
    fkd_dataset ds = make_fake(&f);
    fkd_loader_options o;
    fkd_loader_options_default(&o);
    o.batch_size = 32;
    fkd_loader *l = start(&ds, &o);
    int flipped = 0;
    for (int t = 0; t < 8; t++) {
        const fkd_batch *b = next(l);
        for (int j = 0; j < b->n; j++) {
            flipped += b->flipped[j];
            const float *img = b->images + (size_t)j * 3 * PLANE;
            for (int c = 0; c < 3; c++)
                for (int y = 0; y < S; y += 5)
                    for (int x = 0; x < S; x += 3) {
                        int sx = b->flipped[j] ? S - 1 - x : x;
                        float want = ((float)value(b->indices[j], y, sx, c) - 127.5f) / 127.5f;
                        assert_true(img[c * PLANE + y * S + x] == want);
                    }
        }
    }
    /* Binomial(256, 1/2): mean 128, sd 8; 6 sd bounds. */
    assert_true(flipped > 80 && flipped < 176);
    fkd_loader_free(l);
    /* end points of the scale */
    fkd_image img = {S, S, 3, calloc(PLANE * 3, 1)};
    img.pixels[0] = 255;
    float *slot = malloc(3 * PLANE * sizeof *slot);
    assert_int_equal(fkd_image_to_nchw(&img, false, false, "x", slot), FKD_OK);
    assert_true(slot[0] == 1.0f && slot[1] == -1.0f && slot[PLANE] == -1.0f);
    assert_int_equal(fkd_image_to_nchw(&img, true, false, "x", slot), FKD_OK);
    assert_true(slot[S - 1] == 1.0f && slot[0] == -1.0f);
    free(slot);
    fkd_image_free(&img);
}

static void test_worker_error_reaches_consumer(void **state)
{
    (void)state;
    fake f = {64, 4, NULL, 37};
    fkd_dataset ds = make_fake(&f);
    fkd_loader_options o;
    fkd_loader_options_default(&o);
    o.sampler = FKD_SAMPLER_SEQUENTIAL;
    o.batch_size = 8;
    o.workers = 3;
    o.depth = 3;
    fkd_loader *l = start(&ds, &o);
    const fkd_batch *b;
    for (int t = 0; t < 4; t++) assert_int_equal(fkd_loader_next(l, &b), FKD_OK);
    assert_int_equal(fkd_loader_next(l, &b), FKD_ERR_FORMAT); /* batch 4 holds image 37 */
    assert_null(b);
    assert_string_equal(fkd_last_error(), "fake.rec: record 38: corrupt JPEG");
    assert_int_equal(fkd_loader_next(l, &b), FKD_ERR_FORMAT);
    fkd_loader_free(l);
    /* bad options */
    o.depth = 2;
    assert_int_equal(fkd_loader_create(&l, &ds, &o), FKD_ERR_ARG);
    assert_non_null(strstr(fkd_last_error(), "depth 2"));
    o.depth = 4;
    o.sampler = FKD_SAMPLER_SHUFFLE;
    o.batch_size = 65;
    assert_int_equal(fkd_loader_create(&l, &ds, &o), FKD_ERR_ARG);
    assert_non_null(strstr(fkd_last_error(), "64 images, fewer than one batch of 65"));
}

static void save_png(const char *dir, const char *name, int w, int h, int seed)
{
    fkd_image img = fkd_test_image(w, h, seed);
    assert_int_equal(fkd_image_save_png(&img, fkd_test_path(dir, name)), FKD_OK);
    fkd_image_free(&img);
}

static void test_folder_dataset(void **state)
{
    (void)state;
    char *dir = fkd_test_tmpdir("folder");
    fkd_dataset ds;
    /* empty root */
    assert_int_equal(fkd_dataset_open(&ds, dir), FKD_ERR_FORMAT);
    assert_non_null(strstr(fkd_last_error(), dir));
    assert_non_null(strstr(fkd_last_error(), "no identity sub-folders"));
    /* identity folders without images */
    mkdir(fkd_test_path(dir, "zed"), 0777);
    mkdir(fkd_test_path(dir, "Abe"), 0777);
    assert_int_equal(fkd_dataset_open(&ds, dir), FKD_ERR_FORMAT);
    assert_non_null(strstr(fkd_last_error(), "no images"));
    /* byte-wise sorted identities: "Abe" (0), "bob" (1), "zed" (2) */
    mkdir(fkd_test_path(dir, "bob"), 0777);
    save_png(dir, "zed/b.png", S, S, 1);
    save_png(dir, "zed/a.PNG", S, S, 2);
    save_png(dir, "Abe/1.png", S, S, 3);
    save_png(dir, "bob/x.png", 60, 50, 4);
    assert_int_equal(fkd_test_write(fkd_test_path(dir, "zed/notes.txt"), "x", 1), 0);
    assert_int_equal(fkd_dataset_open(&ds, dir), FKD_OK);
    assert_int_equal(ds.ops->count(&ds), 4);
    assert_int_equal(ds.ops->identities(&ds), 3);
    const fkd_folder *f = ds.impl;
    assert_non_null(strstr(f->paths[0], "/Abe/1.png"));
    assert_non_null(strstr(f->paths[2], "/zed/a.PNG"));
    int32_t want[4] = {0, 1, 2, 2};
    for (int i = 0; i < 4; i++) assert_int_equal(ds.ops->label(&ds, i), want[i]);
    float *slot = malloc(3 * PLANE * sizeof *slot);
    assert_int_equal(fkd_dataset_load_nchw(&ds, 3, false, false, slot), FKD_OK);
    fkd_image src = fkd_test_image(S, S, 1);
    assert_true(slot[2 * PLANE + 7 * S + 9] == (src.pixels[(7 * S + 9) * 3 + 2] - 127.5f) / 127.5f);
    fkd_image_free(&src);
    /* 60x50 without resize: an error naming the file; with resize: bilinear */
    assert_int_equal(fkd_dataset_load_nchw(&ds, 1, false, false, slot), FKD_ERR_FORMAT);
    assert_non_null(strstr(fkd_last_error(), "image 1: image is 60x50, expected 112x112"));
    assert_int_equal(fkd_dataset_load_nchw(&ds, 1, false, true, slot), FKD_OK);
    /* the resized first row starts at the source's first pixel (clamped edge) */
    src = fkd_test_image(60, 50, 4);
    assert_true(slot[0] == (src.pixels[0] - 127.5f) / 127.5f);
    fkd_image_free(&src);
    /* a corrupt file is named */
    assert_int_equal(fkd_test_write(fkd_test_path(dir, "Abe/1.png"), "\x89PNG\r\n\x1a\nxx", 10), 0);
    assert_int_not_equal(fkd_dataset_load_nchw(&ds, 0, false, false, slot), FKD_OK);
    assert_non_null(strstr(fkd_last_error(), "Abe/1.png"));
    free(slot);
    fkd_dataset_free(&ds);
    fkd_test_rmtree(dir);
    free(dir);
}

static void test_pairs_txt(void **state)
{
    (void)state;
    char *dir = fkd_test_tmpdir("pairs");
    mkdir(fkd_test_path(dir, "Ann_Lee"), 0777);
    mkdir(fkd_test_path(dir, "Bo"), 0777);
    const char *names[] = {"Ann_Lee/Ann_Lee_0001.jpg", "Ann_Lee/Ann_Lee_0002.jpg", "Bo/Bo_0001.jpg"};
    for (int i = 0; i < 3; i++) assert_int_equal(fkd_test_write(fkd_test_path(dir, names[i]), "x", 1), 0);
    const char *txt = fkd_test_path(dir, "pairs.txt");
    const char *good = "2\t1\nAnn_Lee\t1\t2\nAnn_Lee\t2\tBo\t1\nBo 1 1\r\nBo\t1\tAnn_Lee\t1\n";
    assert_int_equal(fkd_test_write(txt, good, strlen(good)), 0);
    fkd_pairs p;
    assert_int_equal(fkd_pairs_load(&p, txt, dir), FKD_OK);
    assert_int_equal(p.n_pairs, 4);
    assert_int_equal(p.n_folds, 2);
    assert_true(p.issame[0] && !p.issame[1] && p.issame[2] && !p.issame[3]);
    assert_non_null(strstr(p.paths[3], "/Bo/Bo_0001.jpg"));
    assert_non_null(strstr(p.paths[1], "/Ann_Lee/Ann_Lee_0002.jpg"));
    fkd_pairs_free(&p);
    const char *missing = "1 1\nAnn_Lee 1 3\n";
    assert_int_equal(fkd_test_write(txt, missing, strlen(missing)), 0);
    assert_int_equal(fkd_pairs_load(&p, txt, dir), FKD_ERR_NOTFOUND);
    assert_non_null(strstr(fkd_last_error(), "pairs.txt: line 2: image"));
    assert_non_null(strstr(fkd_last_error(), "Ann_Lee_0003.jpg"));
    fkd_pairs_free(&p);
    const char *bad = "1 1\nAnn_Lee 1\n";
    assert_int_equal(fkd_test_write(txt, bad, strlen(bad)), 0);
    assert_int_equal(fkd_pairs_load(&p, txt, dir), FKD_ERR_FORMAT);
    assert_non_null(strstr(fkd_last_error(), "line 2: expected"));
    fkd_pairs_free(&p);
    const char *count = "3 1\nAnn_Lee 1 2\n";
    assert_int_equal(fkd_test_write(txt, count, strlen(count)), 0);
    assert_int_equal(fkd_pairs_load(&p, txt, dir), FKD_ERR_FORMAT);
    assert_non_null(strstr(fkd_last_error(), "announces 6 pairs, the file lists 1"));
    fkd_pairs_free(&p);
    fkd_test_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deterministic_regardless_of_threads),
        cmocka_unit_test(test_shuffled_epochs),
        cmocka_unit_test(test_pk_batches),
        cmocka_unit_test(test_sharding_by_rank),
        cmocka_unit_test(test_flip_and_normalisation),
        cmocka_unit_test(test_worker_error_reaches_consumer),
        cmocka_unit_test(test_folder_dataset),
        cmocka_unit_test(test_pairs_txt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
