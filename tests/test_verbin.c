/* insightface verification .bin: pickles written by Python 2 (protocol 2) and Python 3
 * (protocols 2-5) from scripts/gen_verbin_fixtures.py, numpy and unexpected opcodes,
 * truncations and corruptions, and facekd's own writer read back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "core/rng.h"
#include "data/image.h"
#include "data/verbin.h"
#include "tests/support/data_files.h"

#define FIX "tests/fixtures/verbin/"

static uint8_t *imgs[6];
static size_t img_sizes[6];

static int load_images(void **state)
{
    (void)state;
    for (int k = 0; k < 6; k++) {
        char path[128];
        snprintf(path, sizeof path, FIX "img%d.%s", k, k % 2 == 0 ? "png" : "jpg");
        if (fkd_file_read_all(path, &imgs[k], &img_sizes[k]) != FKD_OK) return -1;
    }
    return 0;
}

static int free_images(void **state)
{
    (void)state;
    for (int k = 0; k < 6; k++) free(imgs[k]);
    return 0;
}

static void check_small(const char *path)
{
    fkd_verbin set;
    fkd_status s = fkd_verbin_load(path, &set);
    if (s != FKD_OK) fail_msg("%s", fkd_last_error());
    assert_int_equal(set.n_pairs, 3);
    for (int k = 0; k < 6; k++) {
        assert_int_equal(set.sizes[k], img_sizes[k]);
        assert_memory_equal(set.images[k], imgs[k], img_sizes[k]);
    }
    assert_true(set.issame[0] && !set.issame[1] && set.issame[2]);
    fkd_verbin_free(&set);
}

static void test_python2_protocol2(void **state)
{
    (void)state;
    check_small(FIX "py2_proto2.bin");
}

static void test_python3_protocols(void **state)
{
    (void)state;
    check_small(FIX "py3_proto2.bin"); /* bytes as _codecs.encode(str, 'latin1') */
    check_small(FIX "py3_proto3.bin");
    check_small(FIX "py3_proto4.bin");
    check_small(FIX "py3_proto5.bin");
}

/* 700 pairs: APPENDS batches of 1000, LONG_BINPUT, BINGET of repeated objects. */
static void test_many_pairs(void **state)
{
    (void)state;
    const char *files[] = {FIX "py2_proto2_many.bin", FIX "py3_proto4_many.bin"};
    for (int f = 0; f < 2; f++) {
        fkd_verbin set;
        assert_int_equal(fkd_verbin_load(files[f], &set), FKD_OK);
        assert_int_equal(set.n_pairs, 700);
        for (int i = 0; i < 1400; i++) {
            assert_int_equal(set.sizes[i], img_sizes[i % 6]);
            assert_memory_equal(set.images[i], imgs[i % 6], img_sizes[i % 6]);
        }
        for (int i = 0; i < 700; i++) assert_int_equal(set.issame[i], i % 3 != 1);
        fkd_verbin_free(&set);
    }
}

static void test_images_decode(void **state)
{
    (void)state;
    fkd_verbin set;
    assert_int_equal(fkd_verbin_load(FIX "py3_proto4.bin", &set), FKD_OK);
    fkd_image img;
    assert_int_equal(fkd_image_decode(set.images[0], set.sizes[0], "lfw.bin image 0", &img), FKD_OK);
    assert_int_equal(img.width, 4); /* the script's first image is a 4x4 PNG: pixel (1,0) = (16, 0, 0) */
    assert_int_equal(img.pixels[3], 16);
    fkd_image_free(&img);
    assert_int_equal(fkd_image_decode(set.images[1], set.sizes[1], "lfw.bin image 1", &img), FKD_OK);
    assert_int_equal(img.width, 16);
    fkd_image_free(&img);
    fkd_verbin_free(&set);
}

static void test_numpy_arrays_get_a_conversion_hint(void **state)
{
    (void)state;
    const char *files[] = {FIX "numpy_proto2.bin", FIX "numpy_proto4.bin"};
    for (int f = 0; f < 2; f++) {
        fkd_verbin set;
        assert_int_equal(fkd_verbin_load(files[f], &set), FKD_ERR_UNSUPPORTED);
        const char *msg = fkd_last_error();
        assert_non_null(strstr(msg, files[f]));
        assert_non_null(strstr(msg, "numpy.core.multiarray._reconstruct"));
        assert_non_null(strstr(msg, "convert it with"));
        assert_non_null(strstr(msg, "byte offset"));
        fkd_verbin_free(&set);
    }
}

static void test_unexpected_opcode_is_named(void **state)
{
    (void)state;
    fkd_verbin set;
    assert_int_equal(fkd_verbin_load(FIX "bad_opcode.bin", &set), FKD_ERR_FORMAT);
    assert_non_null(strstr(fkd_last_error(), FIX "bad_opcode.bin: pickle opcode 0x7d ('}') at byte offset 2"));
    fkd_verbin_free(&set);
}

/* Every truncation of a valid file fails cleanly; random byte corruptions load or fail
 * cleanly (under the sanitizer build: no invalid access). */
static void test_truncated_and_corrupted(void **state)
{
    (void)state;
    char *dir = fkd_test_tmpdir("verbin");
    const char *path = fkd_test_path(dir, "cut.bin");
    uint8_t *bytes;
    size_t size;
    assert_int_equal(fkd_file_read_all(FIX "py2_proto2.bin", &bytes, &size), FKD_OK);
    for (size_t n = 0; n < size; n += (n < 64 ? 1 : 97)) {
        assert_int_equal(fkd_test_write(path, bytes, n), 0);
        fkd_verbin set;
        assert_int_not_equal(fkd_verbin_load(path, &set), FKD_OK);
        assert_non_null(strstr(fkd_last_error(), path));
        fkd_verbin_free(&set);
    }
    fkd_rng r;
    fkd_rng_seed(&r, 7, 0);
    uint8_t *copy = malloc(size);
    int failures = 0;
    for (int t = 0; t < 300; t++) {
        memcpy(copy, bytes, size);
        for (int k = 0; k < 3; k++) copy[fkd_rng_below(&r, 120)] = (uint8_t)fkd_rng_u64(&r); /* the opcode-dense head */
        assert_int_equal(fkd_test_write(path, copy, size), 0);
        fkd_verbin set;
        fkd_status s = fkd_verbin_load(path, &set);
        if (s != FKD_OK) {
            failures++;
            assert_non_null(strstr(fkd_last_error(), path));
        }
        fkd_verbin_free(&set);
    }
    assert_true(failures > 0);
    free(copy);
    free(bytes);
    fkd_test_rmtree(dir);
    free(dir);
}

/* The writer under protocol 2 (Python 2 style) and 4 (frames): 400 pairs with images of
 * 1 to ~70 KB so that frames close, LONG_BINPUT is needed and BINSTRING/BINBYTES appear. */
static void test_writer_round_trip(void **state)
{
    (void)state;
    char *dir = fkd_test_tmpdir("verbin");
    enum { N = 400 };
    const uint8_t **im = malloc(2 * N * sizeof *im);
    size_t *sz = malloc(2 * N * sizeof *sz);
    bool same[N];
    for (int i = 0; i < 2 * N; i++) {
        sz[i] = i == 5 ? 70000 : (size_t)(1 + (i * 37) % 700);
        uint8_t *b = malloc(sz[i]);
        for (size_t j = 0; j < sz[i]; j++) b[j] = (uint8_t)(i + j * 3);
        im[i] = b;
    }
    for (int i = 0; i < N; i++) same[i] = (i * 7) % 3 == 0;
    for (int proto = 2; proto <= 4; proto += 2) {
        const char *path = fkd_test_path(dir, proto == 2 ? "p2.bin" : "p4.bin");
        assert_int_equal(fkd_verbin_write(path, im, sz, same, N, proto), FKD_OK);
        fkd_verbin set;
        assert_int_equal(fkd_verbin_load(path, &set), FKD_OK);
        assert_int_equal(set.n_pairs, N);
        for (int i = 0; i < 2 * N; i++) {
            assert_int_equal(set.sizes[i], sz[i]);
            assert_memory_equal(set.images[i], im[i], sz[i]);
        }
        for (int i = 0; i < N; i++) assert_int_equal(set.issame[i], same[i]);
        /* protocol 2 writes what Python 2 did: str opcodes; protocol 4 starts a frame */
        assert_int_equal(set.file[1], proto);
        if (proto == 2) assert_true(set.file[6] == 'U' || set.file[6] == 'T');
        if (proto == 4) assert_int_equal(set.file[2], 0x95);
        fkd_verbin_free(&set);
    }
    assert_int_equal(fkd_verbin_write(fkd_test_path(dir, "p3.bin"), im, sz, same, N, 3), FKD_ERR_ARG);
    for (int i = 0; i < 2 * N; i++) free((void *)im[i]);
    free(im);
    free(sz);
    fkd_test_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_python2_protocol2),
        cmocka_unit_test(test_python3_protocols),
        cmocka_unit_test(test_many_pairs),
        cmocka_unit_test(test_images_decode),
        cmocka_unit_test(test_numpy_arrays_get_a_conversion_hint),
        cmocka_unit_test(test_unexpected_opcode_is_named),
        cmocka_unit_test(test_truncated_and_corrupted),
        cmocka_unit_test(test_writer_round_trip),
    };
    return cmocka_run_group_tests(tests, load_images, free_images);
}
