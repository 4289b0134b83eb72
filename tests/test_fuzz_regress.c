/* Fuzz regressions: every input a fuzz target crashed on (tests/fuzz/regress/<parser>/)
 * and every seed (tests/fuzz/corpus/<parser>/) replayed through the same target code,
 * compiled here with gcc (and with ASan + UBSan under `make test SAN=1`). A replay
 * passes when it returns; the targets abort on broken invariants. Inputs with a known
 * failure are also checked for their message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "data/recordio.h"
#include "tests/support/fuzz_file.h"

/* The targets, each under its own name. */
#define LLVMFuzzerTestOneInput fuzz_checkpoint_one
#include "tests/fuzz/fuzz_checkpoint.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_image_one
#include "tests/fuzz/fuzz_image.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_npy_one
#include "tests/fuzz/fuzz_npy.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_onnx_one
#include "tests/fuzz/fuzz_onnx.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_pairs_one
#include "tests/fuzz/fuzz_pairs.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_recipe_one
#include "tests/fuzz/fuzz_recipe.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_recordio_one
#include "tests/fuzz/fuzz_recordio.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_safetensors_one
#include "tests/fuzz/fuzz_safetensors.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_verbin_one
#include "tests/fuzz/fuzz_verbin.c"
#undef LLVMFuzzerTestOneInput

typedef int (*fuzz_target)(const uint8_t *data, size_t size);

static const struct {
    const char *parser;
    fuzz_target run;
} targets[] = {
    {"checkpoint", fuzz_checkpoint_one}, {"image", fuzz_image_one}, {"npy", fuzz_npy_one},
    {"onnx", fuzz_onnx_one},
    {"pairs", fuzz_pairs_one},       {"recipe", fuzz_recipe_one},     {"recordio", fuzz_recordio_one},
    {"safetensors", fuzz_safetensors_one}, {"verbin", fuzz_verbin_one},
};

/* Replays every file of dir/<parser>/ for each target; returns how many ran. */
static int replay_all(const char *dir)
{
    int replayed = 0;
    for (size_t t = 0; t < sizeof targets / sizeof targets[0]; t++) {
        char sub[512];
        snprintf(sub, sizeof sub, "%s/%s", dir, targets[t].parser);
        DIR *d = opendir(sub);
        if (!d) continue;
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.') continue;
            char path[1024];
            snprintf(path, sizeof path, "%s/%s", sub, e->d_name);
            uint8_t *data;
            size_t size;
            assert_int_equal(fkd_file_read_all(path, &data, &size), FKD_OK);
            assert_int_equal(targets[t].run(data, size), 0);
            free(data);
            replayed++;
        }
        closedir(d);
    }
    return replayed;
}

static void test_crash_inputs_replay_cleanly(void **state)
{
    (void)state;
    assert_true(replay_all("tests/fuzz/regress") >= 1);
}

static void test_seed_corpora_replay_cleanly(void **state)
{
    (void)state;
    /* Eight targets' worth of seeds are committed (scripts/fuzz_seeds.py). */
    assert_true(replay_all("tests/fuzz/corpus") >= 30);
}

/* fuzz_recordio, first find: an index pointing at an empty record (length 0) made the
 * reader do pointer arithmetic on a NULL buffer. It must be a clean "too short" error. */
static void test_recordio_empty_record_is_an_error(void **state)
{
    (void)state;
    uint8_t *data;
    size_t size;
    assert_int_equal(fkd_file_read_all("tests/fuzz/regress/recordio/empty-record-null-buffer", &data, &size), FKD_OK);
    size_t idx_size = (size_t)data[0] | (size_t)data[1] << 8;
    fuzz_file idx, rec;
    assert_int_equal(fuzz_file_open(&idx, data + 2, idx_size), 0);
    assert_int_equal(fuzz_file_open(&rec, data + 2 + idx_size, size - 2 - idx_size), 0);
    fkd_recordio r;
    fkd_status s = fkd_recordio_open(&r, rec.path, idx.path);
    if (s == FKD_OK) {
        uint8_t *buf = NULL;
        size_t cap = 0;
        fkd_rec_payload p;
        int32_t label;
        s = fkd_recordio_read_image(&r, 0, &buf, &cap, &p, &label);
        free(buf);
    }
    assert_int_equal(s, FKD_ERR_FORMAT);
    assert_non_null(strstr(fkd_last_error(), "shorter than the 24-byte record header"));
    fkd_recordio_close(&r);
    fuzz_file_close(&rec);
    fuzz_file_close(&idx);
    free(data);
}

/* fuzz_pairs: a header "folds pairs_per_fold" whose product overflowed a long (UB). */
static void test_pairs_huge_header_is_an_error(void **state)
{
    (void)state;
    fkd_pairs p;
    assert_int_equal(fkd_pairs_load(&p, "tests/fuzz/regress/pairs/header-count-overflow", "lfw"), FKD_ERR_FORMAT);
    assert_non_null(strstr(fkd_last_error(), "header-count-overflow: line 1: 315511111111115 folds of 2 x 111110 pairs "
                                             "is more than 1000000000 pairs"));
    fkd_pairs_free(&p);
}

/* The checkpoint seed must load into the target's network, or fuzzing starts from
 * inputs that fail at the first tensor. */
static void test_checkpoint_seed_loads(void **state)
{
    (void)state;
    ck_net net = {0};
    assert_int_equal(ck_net_build(&net), 0);
    fkd_checkpoint ck = ck_parts(&net);
    ck.step = 0;
    fkd_status s = fkd_checkpoint_load("tests/fuzz/corpus/checkpoint/sgd.safetensors", &ck);
    if (s != FKD_OK) fail_msg("%s", fkd_last_error());
    assert_int_equal(ck.step, 6);
    fkd_optim_free(net.optim);
    fkd_graph_free(net.g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crash_inputs_replay_cleanly),
        cmocka_unit_test(test_seed_corpora_replay_cleanly),
        cmocka_unit_test(test_recordio_empty_record_is_an_error),
        cmocka_unit_test(test_pairs_huge_header_is_an_error),
        cmocka_unit_test(test_checkpoint_seed_loads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
