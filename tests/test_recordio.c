/* insightface RecordIO: records written by the writer and by hand (split records, the
 * header-record convention with identity ranges), and malformed files giving errors that
 * name the file and the record or offset. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "core/rng.h"
#include "data/dataset.h"
#include "data/image.h"
#include "data/recordio.h"
#include "tests/support/data_files.h"

static void le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t rd32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }

/* A payload with the magic word at aligned offsets 8 and 16 and at the unaligned offset 25. */
static void payload_with_magic(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(i * 13 + 1);
    le32(p + 8, FKD_RECORDIO_MAGIC);
    le32(p + 16, FKD_RECORDIO_MAGIC);
    le32(p + 25, FKD_RECORDIO_MAGIC);
}

static void test_writer_splits_at_aligned_magic_and_reader_rejoins(void **state)
{
    (void)state;
    char *dir = fkd_test_tmpdir("rec");
    const char *rec = fkd_test_path(dir, "a.rec");
    uint8_t odd[7] = {1, 2, 3, 4, 5, 6, 7}, magic_data[35];
    payload_with_magic(magic_data, sizeof magic_data);
    fkd_recordio_writer w;
    assert_int_equal(fkd_recordio_writer_open(&w, rec, NULL), FKD_OK);
    assert_int_equal(fkd_recordio_writer_put(&w, 0, odd, sizeof odd), FKD_OK);
    assert_int_equal(fkd_recordio_writer_put(&w, 5, magic_data, sizeof magic_data), FKD_OK);
    assert_int_equal(fkd_recordio_writer_put(&w, 9, NULL, 0), FKD_OK);
    assert_int_equal(fkd_recordio_writer_commit(&w), FKD_OK);

    /* On disk: record 0 = 8 + 7 + 1 pad; record 5 = start [0,8), middle [12,16),
     * end [20,35) (+1 pad), each part behind its own magic and length word. */
    uint8_t *bytes;
    size_t size;
    assert_int_equal(fkd_file_read_all(rec, &bytes, &size), FKD_OK);
    assert_int_equal(size, 16 + (8 + 8) + (8 + 4) + (8 + 16) + 8);
    assert_int_equal(rd32(bytes + 16), FKD_RECORDIO_MAGIC);
    assert_int_equal(rd32(bytes + 20), 1u << 29 | 8);
    assert_int_equal(rd32(bytes + 36), 2u << 29 | 4);
    assert_int_equal(rd32(bytes + 48), 3u << 29 | 15);
    free(bytes);

    fkd_recordio r;
    assert_int_equal(fkd_recordio_open(&r, rec, NULL), FKD_OK);
    assert_false(r.has_header);
    assert_int_equal(r.n_keys, 3);
    assert_int_equal(r.n_images, 3);
    uint8_t *buf = NULL;
    size_t cap = 0, n;
    assert_int_equal(fkd_recordio_read_key(&r, 5, &buf, &cap, &n), FKD_OK);
    assert_int_equal(n, sizeof magic_data);
    assert_memory_equal(buf, magic_data, n);
    assert_int_equal(fkd_recordio_read_key(&r, 0, &buf, &cap, &n), FKD_OK);
    assert_int_equal(n, sizeof odd);
    assert_memory_equal(buf, odd, n);
    assert_int_equal(fkd_recordio_read_key(&r, 9, &buf, &cap, &n), FKD_OK);
    assert_int_equal(n, 0);
    assert_int_equal(fkd_recordio_read_key(&r, 4, &buf, &cap, &n), FKD_ERR_NOTFOUND);
    assert_non_null(strstr(fkd_last_error(), "key 4"));
    free(buf);
    fkd_recordio_close(&r);
    fkd_test_rmtree(dir);
    free(dir);
}

/* A split record assembled byte by byte (independent of the writer), .idx with spaces
 * and a blank line, keys out of order. */
static void test_hand_made_split_record(void **state)
{
    (void)state;
    char *dir = fkd_test_tmpdir("rec");
    uint8_t f[64] = {0};
    le32(f + 0, FKD_RECORDIO_MAGIC);
    le32(f + 4, 3);
    memcpy(f + 8, "abc", 3); /* + 1 pad */
    le32(f + 12, FKD_RECORDIO_MAGIC);
    le32(f + 16, 1u << 29 | 4);
    memcpy(f + 20, "WXYZ", 4);
    le32(f + 24, FKD_RECORDIO_MAGIC);
    le32(f + 28, 3u << 29 | 2);
    memcpy(f + 32, "yz", 2); /* + 2 pad: file ends at 36 */
    const char *rec = fkd_test_path(dir, "h.rec"), *idx = fkd_test_path(dir, "h.idx");
    assert_int_equal(fkd_test_write(rec, f, 36), 0);
    const char *text = "7\t12\n\n3 0\n";
    assert_int_equal(fkd_test_write(idx, text, strlen(text)), 0);
    fkd_recordio r;
    assert_int_equal(fkd_recordio_open(&r, rec, idx), FKD_OK);
    uint8_t *buf = NULL;
    size_t cap = 0, n;
    assert_int_equal(fkd_recordio_read_key(&r, 7, &buf, &cap, &n), FKD_OK);
    assert_int_equal(n, 10);
    uint8_t want[10] = {'W', 'X', 'Y', 'Z', 0, 0, 0, 0, 'y', 'z'};
    le32(want + 4, FKD_RECORDIO_MAGIC);
    assert_memory_equal(buf, want, 10);
    assert_int_equal(r.keys[0], 3);
    free(buf);
    fkd_recordio_close(&r);
    fkd_test_rmtree(dir);
    free(dir);
}

static void test_parse_header_and_extra_labels(void **state)
{
    (void)state;
    uint8_t p[24 + 8 + 3] = {0};
    le32(p, 2);
    float a = 5.0f, b = 9.0f;
    memcpy(p + 24, &a, 4);
    memcpy(p + 28, &b, 4);
    p[8] = 42;
    memcpy(p + 32, "jpg", 3);
    fkd_rec_payload out;
    assert_int_equal(fkd_recordio_parse(p, sizeof p, "x.rec: record 1", &out), FKD_OK);
    assert_int_equal(out.flag, 2);
    assert_true(out.labels[0] == 5.0f && out.labels[1] == 9.0f);
    assert_int_equal(out.id, 42);
    assert_int_equal(out.data_size, 3);
    assert_memory_equal(out.data, "jpg", 3);
    /* flag announcing more labels than the payload holds */
    le32(p, 100);
    assert_int_equal(fkd_recordio_parse(p, sizeof p, "x.rec: record 1", &out), FKD_ERR_FORMAT);
    assert_non_null(strstr(fkd_last_error(), "x.rec: record 1"));
    assert_int_equal(fkd_recordio_parse(p, 20, "x.rec: record 2", &out), FKD_ERR_FORMAT);
    assert_non_null(strstr(fkd_last_error(), "shorter than the 24-byte"));
}

/* labels per image for the training-set tests: identities 0, 1 (empty: skipped), 2, 3 */
static const int32_t train_labels[] = {0, 0, 2, 3, 3, 3};
#define N_TRAIN 6

static void write_train(const char *rec, bool ranges, uint8_t images[N_TRAIN][40])
{
    fkd_rec_train_writer w;
    assert_int_equal(fkd_rec_train_writer_open(&w, rec, NULL, ranges), FKD_OK);
    for (int i = 0; i < N_TRAIN; i++) {
        for (int j = 0; j < 40; j++) images[i][j] = (uint8_t)(i * 40 + j);
        assert_int_equal(fkd_rec_train_writer_add(&w, train_labels[i], images[i], 20 + i), FKD_OK);
    }
    assert_int_equal(fkd_rec_train_writer_commit(&w), FKD_OK);
}

static void test_train_set_with_identity_ranges(void **state)
{
    (void)state;
    char *dir = fkd_test_tmpdir("rec");
    const char *rec = fkd_test_path(dir, "train.rec");
    uint8_t images[N_TRAIN][40];
    write_train(rec, true, images);
    fkd_recordio r;
    assert_int_equal(fkd_recordio_open(&r, rec, NULL), FKD_OK);
    assert_true(r.has_header);
    assert_int_equal(r.n_images, N_TRAIN);
    assert_int_equal(r.n_keys, 1 + N_TRAIN + 4); /* header, images, identity records 0..3 */
    uint8_t *buf = NULL;
    size_t cap = 0, n;
    fkd_rec_payload p;
    assert_int_equal(fkd_recordio_read_key(&r, 0, &buf, &cap, &n), FKD_OK);
    assert_int_equal(fkd_recordio_parse(buf, n, "header", &p), FKD_OK);
    assert_int_equal(p.flag, 2);
    assert_true(p.labels[0] == 7.0f && p.labels[1] == 11.0f);
    /* identity 3: image keys [4, 7); identity 1: empty range [3, 3) */
    assert_int_equal(fkd_recordio_read_key(&r, 10, &buf, &cap, &n), FKD_OK);
    assert_int_equal(fkd_recordio_parse(buf, n, "id 3", &p), FKD_OK);
    assert_true(p.labels[0] == 4.0f && p.labels[1] == 7.0f);
    assert_int_equal(fkd_recordio_read_key(&r, 8, &buf, &cap, &n), FKD_OK);
    assert_int_equal(fkd_recordio_parse(buf, n, "id 1", &p), FKD_OK);
    assert_true(p.labels[0] == 3.0f && p.labels[1] == 3.0f);
    for (int i = 0; i < N_TRAIN; i++) {
        int32_t label;
        assert_int_equal(fkd_recordio_read_image(&r, i, &buf, &cap, &p, &label), FKD_OK);
        assert_int_equal(label, train_labels[i]);
        assert_int_equal(p.flag, 0);
        assert_int_equal(p.id, i + 1);
        assert_int_equal(p.data_size, 20 + i);
        assert_memory_equal(p.data, images[i], 20 + i);
    }
    assert_int_equal(fkd_recordio_labels(&r), FKD_OK);
    assert_int_equal(r.n_identities, 4);
    assert_memory_equal(r.labels, train_labels, sizeof train_labels);
    free(buf);
    fkd_recordio_close(&r);
    fkd_test_rmtree(dir);
    free(dir);
}

static void test_train_set_without_identity_ranges(void **state)
{
    (void)state;
    char *dir = fkd_test_tmpdir("rec");
    const char *rec = fkd_test_path(dir, "train.rec");
    uint8_t images[N_TRAIN][40];
    write_train(rec, false, images);
    fkd_recordio r;
    assert_int_equal(fkd_recordio_open(&r, rec, NULL), FKD_OK);
    assert_true(r.has_header);
    assert_int_equal(r.n_images, N_TRAIN);
    assert_int_equal(r.n_keys, 1 + N_TRAIN);
    assert_int_equal(fkd_recordio_labels(&r), FKD_OK); /* read from every image's header */
    assert_int_equal(r.n_identities, 4);
    assert_memory_equal(r.labels, train_labels, sizeof train_labels);
    fkd_recordio_close(&r);
    /* Labels must be grouped when ranges are written. */
    fkd_rec_train_writer w;
    assert_int_equal(fkd_rec_train_writer_open(&w, rec, NULL, true), FKD_OK);
    assert_int_equal(fkd_rec_train_writer_add(&w, 3, images[0], 4), FKD_OK);
    assert_int_equal(fkd_rec_train_writer_add(&w, 1, images[0], 4), FKD_ERR_ARG);
    assert_non_null(strstr(fkd_last_error(), "label 1 after 3"));
    fkd_rec_train_writer_abort(&w);
    fkd_test_rmtree(dir);
    free(dir);
}

/* A .rec of 3 whole records of 8 bytes (16 bytes each on disk) with a plain index. */
static void write_plain(const char *dir, const char *rec, const char *idx)
{
    (void)dir;
    fkd_recordio_writer w;
    assert_int_equal(fkd_recordio_writer_open(&w, rec, idx), FKD_OK);
    uint8_t d[8] = {9, 8, 7, 6, 5, 4, 3, 2};
    for (int k = 0; k < 3; k++) assert_int_equal(fkd_recordio_writer_put(&w, (uint64_t)k, d, sizeof d), FKD_OK);
    assert_int_equal(fkd_recordio_writer_commit(&w), FKD_OK);
}

static void expect_read_error(const char *rec, uint64_t key, const char *part1, const char *part2)
{
    fkd_recordio r;
    assert_int_equal(fkd_recordio_open(&r, rec, NULL), FKD_OK);
    uint8_t *buf = NULL;
    size_t cap = 0, n;
    assert_int_equal(fkd_recordio_read_key(&r, key, &buf, &cap, &n), FKD_ERR_FORMAT);
    const char *msg = fkd_last_error();
    assert_non_null(strstr(msg, rec));
    assert_non_null(strstr(msg, part1));
    assert_non_null(strstr(msg, part2));
    free(buf);
    fkd_recordio_close(&r);
}

static void test_truncated_and_bad_magic(void **state)
{
    (void)state;
    char *dir = fkd_test_tmpdir("rec");
    char rec[1024];
    snprintf(rec, sizeof rec, "%s/bad.rec", dir);
    write_plain(dir, rec, NULL);
    uint8_t *bytes;
    size_t size;
    assert_int_equal(fkd_file_read_all(rec, &bytes, &size), FKD_OK);
    assert_int_equal(size, 48);
    /* truncated inside record 2's data (the index still points at offset 32) */
    assert_int_equal(fkd_test_write(rec, bytes, 44), 0);
    expect_read_error(rec, 2, "record 2 (offset 32)", "truncated");
    /* wrong magic at record 1 */
    bytes[16] ^= 0xff;
    assert_int_equal(fkd_test_write(rec, bytes, size), 0);
    expect_read_error(rec, 1, "record 1 (offset 16)", "bad magic");
    /* a split record whose continuation never comes: start part, then a whole record */
    bytes[16] ^= 0xff;
    le32(bytes + 20, 1u << 29 | 8);
    assert_int_equal(fkd_test_write(rec, bytes, size), 0);
    expect_read_error(rec, 1, "record 1", "continuation flag 0");
    /* a start part at the end of the file */
    le32(bytes + 36, 1u << 29 | 8);
    assert_int_equal(fkd_test_write(rec, bytes, size), 0);
    expect_read_error(rec, 2, "record 2", "truncated at offset 48");
    free(bytes);
    fkd_test_rmtree(dir);
    free(dir);
}

static void expect_open_error(const char *rec, const char *idx_text, const char *part1, const char *part2)
{
    char idx[1024];
    snprintf(idx, sizeof idx, "%.*sidx", (int)strlen(rec) - 3, rec);
    assert_int_equal(fkd_test_write(idx, idx_text, strlen(idx_text)), 0);
    fkd_recordio r;
    assert_int_not_equal(fkd_recordio_open(&r, rec, NULL), FKD_OK);
    assert_non_null(strstr(fkd_last_error(), part1));
    assert_non_null(strstr(fkd_last_error(), part2));
    fkd_recordio_close(&r);
}

static void test_bad_index(void **state)
{
    (void)state;
    char *dir = fkd_test_tmpdir("rec");
    char rec[1024];
    snprintf(rec, sizeof rec, "%s/b.rec", dir);
    write_plain(dir, rec, NULL);
    expect_open_error(rec, "0\t0\n1\t16\n2\t4096\n", "b.idx: line 3: key 2 offset 4096", "past the end of");
    expect_open_error(rec, "0\t0\n1\t44\n", "b.idx: line 2", "past the end");
    expect_open_error(rec, "0\t0\n1\tsixteen\n", "b.idx: line 2", "expected a offset");
    expect_open_error(rec, "0\t0\n0\t16\n", "b.idx", "key 0 appears twice");
    expect_open_error(rec, "0\t2\n", "b.idx: line 1", "not a multiple of 4");
    expect_open_error(rec, "\n", "b.idx", "empty");
    /* a missing .idx */
    fkd_recordio r;
    char idx[1024];
    snprintf(idx, sizeof idx, "%s/b.idx", dir);
    remove(idx);
    assert_int_equal(fkd_recordio_open(&r, rec, NULL), FKD_ERR_IO);
    assert_non_null(strstr(fkd_last_error(), "b.idx: cannot open"));
    fkd_recordio_close(&r);
    fkd_test_rmtree(dir);
    free(dir);
}

/* A header record claiming images beyond the index. */
static void test_header_past_index(void **state)
{
    (void)state;
    char *dir = fkd_test_tmpdir("rec");
    const char *rec = fkd_test_path(dir, "h.rec");
    fkd_recordio_writer w;
    assert_int_equal(fkd_recordio_writer_open(&w, rec, NULL), FKD_OK);
    float lab[2] = {50, 50};
    uint8_t img[4] = {1, 2, 3, 4};
    assert_int_equal(fkd_recordio_writer_put_image(&w, 0, 2, lab, 0, NULL, 0), FKD_OK);
    assert_int_equal(fkd_recordio_writer_put_image(&w, 1, 0, NULL, 0, img, 4), FKD_OK);
    assert_int_equal(fkd_recordio_writer_commit(&w), FKD_OK);
    fkd_recordio r;
    assert_int_equal(fkd_recordio_open(&r, rec, NULL), FKD_ERR_FORMAT);
    assert_non_null(strstr(fkd_last_error(), "record 0: header says images end at key 50"));
    fkd_recordio_close(&r);
    fkd_test_rmtree(dir);
    free(dir);
}

/* Through the dataset table: real JPEGs decode to 112x112; a corrupt JPEG names the record. */
static void test_dataset_decodes_and_names_corrupt_record(void **state)
{
    (void)state;
    char *dir = fkd_test_tmpdir("rec");
    const char *rec = fkd_test_path(dir, "faces.rec");
    fkd_rec_train_writer w;
    assert_int_equal(fkd_rec_train_writer_open(&w, rec, NULL, true), FKD_OK);
    for (int i = 0; i < 4; i++) {
        fkd_image img = fkd_test_image(112, 112, i);
        uint8_t *jpg;
        size_t n;
        assert_int_equal(fkd_image_encode_jpeg(&img, 95, &jpg, &n), FKD_OK);
        if (i == 3) n /= 3; /* truncated JPEG */
        assert_int_equal(fkd_rec_train_writer_add(&w, i / 2, jpg, n), FKD_OK);
        free(jpg);
        fkd_image_free(&img);
    }
    assert_int_equal(fkd_rec_train_writer_commit(&w), FKD_OK);
    fkd_dataset ds;
    assert_int_equal(fkd_dataset_open(&ds, rec), FKD_OK);
    assert_string_equal(ds.ops->name, "recordio");
    assert_int_equal(ds.ops->count(&ds), 4);
    assert_int_equal(ds.ops->identities(&ds), 2);
    assert_int_equal(ds.ops->label(&ds, 2), 1);
    float *slot = malloc(3 * 112 * 112 * sizeof *slot);
    assert_int_equal(fkd_dataset_load_nchw(&ds, 1, false, false, slot), FKD_OK);
    /* JPEG at quality 95 of a smooth image: within 12 grey levels of the source pixel. */
    fkd_image src = fkd_test_image(112, 112, 1);
    float want = (src.pixels[(50 * 112 + 60) * 3 + 1] - 127.5f) / 127.5f;
    assert_true(fabsf(slot[1 * 112 * 112 + 50 * 112 + 60] - want) < 12 / 127.5f);
    fkd_image_free(&src);
    assert_int_not_equal(fkd_dataset_load_nchw(&ds, 3, false, false, slot), FKD_OK);
    assert_non_null(strstr(fkd_last_error(), "faces.rec: record 4"));
    free(slot);
    fkd_dataset_free(&ds);
    fkd_test_rmtree(dir);
    free(dir);
}

/* tests/fixtures/recordio/train.rec: written by scripts/gen_rec_corpus.py (Python, its own
 * framing code, not facekd's writer) with 3 identities x 2 JPEGs of 112x112. */
static void test_reads_python_written_rec(void **state)
{
    (void)state;
    fkd_dataset ds;
    fkd_status s = fkd_dataset_open(&ds, "tests/fixtures/recordio/train.rec");
    if (s != FKD_OK) fail_msg("%s", fkd_last_error());
    assert_int_equal(ds.ops->count(&ds), 6);
    assert_int_equal(ds.ops->identities(&ds), 3);
    const fkd_recordio *r = ds.impl;
    assert_true(r->has_header);
    for (int i = 0; i < 6; i++) assert_int_equal(ds.ops->label(&ds, i), i / 2);
    float *slot = malloc(3 * 112 * 112 * sizeof *slot);
    for (int i = 0; i < 6; i++) {
        s = fkd_dataset_load_nchw(&ds, i, false, false, slot);
        if (s != FKD_OK) fail_msg("%s", fkd_last_error());
        for (int k = 0; k < 3 * 112 * 112; k += 101) assert_true(slot[k] >= -1.0f && slot[k] <= 1.0f);
    }
    free(slot);
    fkd_dataset_free(&ds);
}

/* Random byte corruptions of a .rec: opening and reading every image either works or
 * fails with a message naming the file (the sanitizer build checks for bad accesses). */
static void test_random_corruptions(void **state)
{
    (void)state;
    char *dir = fkd_test_tmpdir("rec");
    char rec[1024];
    snprintf(rec, sizeof rec, "%s/fz.rec", dir);
    uint8_t images[N_TRAIN][40];
    write_train(rec, true, images);
    uint8_t *bytes, *copy;
    size_t size;
    assert_int_equal(fkd_file_read_all(rec, &bytes, &size), FKD_OK);
    copy = malloc(size);
    fkd_rng r;
    fkd_rng_seed(&r, 3, 0);
    int failures = 0;
    for (int t = 0; t < 400; t++) {
        memcpy(copy, bytes, size);
        for (int k = 0; k < 2; k++) copy[fkd_rng_below(&r, size)] = (uint8_t)fkd_rng_u64(&r);
        assert_int_equal(fkd_test_write(rec, copy, size), 0);
        fkd_recordio rd;
        fkd_status s = fkd_recordio_open(&rd, rec, NULL);
        if (s == FKD_OK) s = fkd_recordio_labels(&rd);
        uint8_t *buf = NULL;
        size_t cap = 0;
        for (int64_t i = 0; s == FKD_OK && i < rd.n_images; i++) {
            fkd_rec_payload p;
            int32_t label;
            s = fkd_recordio_read_image(&rd, i, &buf, &cap, &p, &label);
        }
        if (s != FKD_OK) {
            failures++;
            assert_non_null(strstr(fkd_last_error(), "fz."));
        }
        free(buf);
        fkd_recordio_close(&rd);
    }
    assert_true(failures > 0);
    free(copy);
    free(bytes);
    fkd_test_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_writer_splits_at_aligned_magic_and_reader_rejoins),
        cmocka_unit_test(test_hand_made_split_record),
        cmocka_unit_test(test_parse_header_and_extra_labels),
        cmocka_unit_test(test_train_set_with_identity_ranges),
        cmocka_unit_test(test_train_set_without_identity_ranges),
        cmocka_unit_test(test_truncated_and_bad_magic),
        cmocka_unit_test(test_bad_index),
        cmocka_unit_test(test_header_past_index),
        cmocka_unit_test(test_dataset_decodes_and_names_corrupt_record),
        cmocka_unit_test(test_reads_python_written_rec),
        cmocka_unit_test(test_random_corruptions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
