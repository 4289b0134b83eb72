/* The distillation layer end to end: `facekd distill` moves a student's embeddings toward
 * its teacher's (the l2 term falls) and writes its run folder; the teacher cache misses,
 * hits and is invalidated by a changed teacher; a recipe naming an unknown method or a tap
 * a model lacks fails before any training; `facekd compare` writes a table whose rows are
 * its teacher and recipes. Narrow models (mbf width 8) on tiny synthetic data, one thread. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "core/status.h"
#include "data/dataset.h"
#include "io/model.h"
#include "io/recipe.h"
#include "io/safetensors.h"
#include "nn/shim.h"
#include "train/teacher_cache.h"
#include "support/tmpdir.h"
#include "support/train_fixture.h"
#include "train/compare.h"
#include "train/distill.h"
#include "train/trainer.h"

#define PATH 4096

static char dir[256];
static char cache_dir[PATH];

/* A tiny teacher trained once for every test: dir/teacher/model.safetensors. */
static const char base_recipe[] = "seed: 4\n"
                                  "batch_size: 8\n"
                                  "log_every: 1\n"
                                  "eval_every: 0\n"
                                  "checkpoint_every: 0\n"
                                  "threads: 1\n"
                                  "data:\n"
                                  "  source: synth\n"
                                  "  synth: {seed: 4, identities: 8, images_per_identity: 6}\n"
                                  "model: {arch: mbf, embedding_size: 32, width: 8}\n"
                                  "head: {loss: softmax}\n"
                                  "optimizer: {type: sgd, lr: 0.05, momentum: 0.9, weight_decay: 0}\n"
                                  "schedule: {type: constant}\n";

static fkd_status run(const char *file, const char *const *sets, size_t n_sets, bool distill)
{
    char path[PATH];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    fkd_recipe r;
    FKD_TRY(fkd_recipe_load(&r, path, sets, n_sets));
    fkd_status s = fkd_run_recipe(&r, false, distill);
    fkd_recipe_free(&r);
    return s;
}

static int count_cache_files(void)
{
    DIR *d = opendir(cache_dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, "teacher-", 8)) n++;
    closedir(d);
    return n;
}

static int setup(void **state)
{
    (void)state;
    if (fkd_test_tmpdir_make(dir, sizeof dir, "distill") != 0) return -1;
    snprintf(cache_dir, sizeof cache_dir, "%s/cache", dir);
    char path[PATH], text[4096];
    snprintf(text, sizeof text, "%sname: teacher\noutput: teacher\nsteps: 12\n", base_recipe);
    if (fkd_test_write_text(path, dir, "teacher.yaml", text) != 0) return -1;
    snprintf(text, sizeof text,
             "%sname: student\noutput: student\nsteps: 16\nteacher: {model: teacher/model.safetensors, cache_dir: cache}\n"
             "distill:\n  - {method: l2, weight: 10}\n",
             base_recipe);
    if (fkd_test_write_text(path, dir, "student.yaml", text) != 0) return -1;
    return run("teacher.yaml", NULL, 0, false) == FKD_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return fkd_test_tmpdir_remove(dir);
}

/* The run dir/<run> logged `steps` steps and its l2 term's mean over the last 4 is at least
 * 10 % below the first 4's. */
static void assert_l2_falls(const char *run_name, int steps)
{
    char path[PATH];
    snprintf(path, sizeof path, "%s/%s/log.csv", dir, run_name);
    double *l2 = NULL;
    int rows = fkd_test_csv_column(path, "l2", &l2);
    assert_int_equal(rows, steps);
    double first = fkd_test_mean(l2, 0, 4), last = fkd_test_mean(l2, rows - 4, rows);
    printf("%s: l2 term %.4f (steps 1-4) -> %.4f (steps %d-%d)\n", run_name, first, last, rows - 3, rows);
    assert_true(last < 0.9 * first);
    free(l2);
}

/* The l2 term (weight 10 on normalised embeddings) falls; the run folder is complete; the
 * first run computes the teacher cache, the second uses it. */
static void test_distill_moves_student_toward_teacher(void **state)
{
    (void)state;
    assert_int_equal(count_cache_files(), 0);
    fkd_status s = run("student.yaml", NULL, 0, true);
    if (s != FKD_OK) fail_msg("%s", fkd_last_error());
    assert_int_equal(count_cache_files(), 1);
    assert_l2_falls("student", 16);
    char path[PATH];
    static const char *const files[] = {"recipe.yaml", "log.csv", "checkpoint.safetensors", "model.safetensors",
                                        "loss.png", "lr.png"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/student/%s", dir, files[i]);
        if (!fkd_test_file_nonempty(path)) fail_msg("run folder: %s is missing", files[i]);
    }
    /* Same teacher and data: the cache is used, not made again. */
    char out2[PATH], out3[PATH];
    snprintf(out2, sizeof out2, "output=%s/student2", dir);
    snprintf(out3, sizeof out3, "output=%s/student3", dir);
    const char *sets[] = {out2};
    assert_int_equal(run("student.yaml", sets, 1, true), FKD_OK);
    assert_int_equal(count_cache_files(), 1);
    /* Cached and live teachers give the same run. */
    const char *live[] = {out3, "teacher.cache=false"};
    assert_int_equal(run("student.yaml", live, 2, true), FKD_OK);
    char a[PATH], b[PATH], worst[256];
    snprintf(a, sizeof a, "%s/student2/model.safetensors", dir);
    snprintf(b, sizeof b, "%s/student3/model.safetensors", dir);
    double diff = fkd_test_safetensors_diff(a, b, NULL, worst, sizeof worst);
    printf("cached vs live teacher: max |diff| %.3g (%s)\n", diff, worst);
    assert_true(diff >= 0 && diff < 1e-4);
}

/* Another teacher (different weights) means another cache file, never the old rows. */
static void test_cache_invalidated_by_a_new_teacher(void **state)
{
    (void)state;
    int before = count_cache_files();
    char out[PATH], teacher_out[PATH], teacher_model[PATH];
    snprintf(teacher_out, sizeof teacher_out, "output=%s/teacher2", dir);
    snprintf(teacher_model, sizeof teacher_model, "teacher.model=%s/teacher2/model.safetensors", dir);
    snprintf(out, sizeof out, "output=%s/student4", dir);
    const char *teacher2[] = {teacher_out, "seed=5"};
    assert_int_equal(run("teacher.yaml", teacher2, 2, false), FKD_OK);
    const char *sets[] = {out, teacher_model, "steps=2"};
    fkd_status s = run("student.yaml", sets, 3, true);
    if (s != FKD_OK) fail_msg("%s", fkd_last_error());
    assert_int_equal(count_cache_files(), before + 1);
}

/* The teacher's embeddings of every training image and mirror through a cache of the
 * given precision in `cache`; *path gets the file. rows: (images, 2, dim). */
static float *cached_rows(const char *cache, fkd_precision precision, int64_t *n_rows, char *path, size_t path_cap)
{
    char model[PATH];
    snprintf(model, sizeof model, "%s/teacher/model.safetensors", dir);
    fkd_safetensors st;
    assert_int_equal(fkd_safetensors_read(&st, model), FKD_OK);
    fkd_graph_config gc = {.batch = 8, .mode = FKD_GRAPH_INFER, .precision = precision};
    fkd_graph *g;
    fkd_value emb;
    assert_int_equal(fkd_model_open(&g, &st, NULL, &gc, &emb), FKD_OK);
    fkd_dataset ds;
    assert_int_equal(fkd_dataset_open_synth(&ds, 4, 8, 6), FKD_OK);
    fkd_teacher_cache *c;
    bool hit;
    assert_int_equal(fkd_teacher_cache_open(&c, cache, model, &ds, false, precision, g, emb, &hit), FKD_OK);
    assert_false(hit);
    snprintf(path, path_cap, "%s", fkd_teacher_cache_path(c));
    int64_t images = ds.ops->count(&ds);
    int nd, dims[4];
    assert_int_equal(fkd_graph_shape(g, emb, &nd, dims), FKD_OK);
    float *rows = malloc(sizeof(float) * (size_t)images * 2 * dims[1]);
    for (int64_t i = 0; i < images; i++)
        for (uint8_t flip = 0; flip < 2; flip++)
            assert_int_equal(fkd_teacher_cache_read(c, &i, &flip, 1, rows + (i * 2 + flip) * dims[1]), FKD_OK);
    *n_rows = images * 2 * dims[1];
    fkd_teacher_cache_close(c);
    fkd_dataset_free(&ds);
    fkd_graph_free(g);
    fkd_safetensors_free(&st);
    return rows;
}

/* teacher.precision bf16: the teacher runs a bf16 INFER graph; its cache is another file
 * (the precision is part of the key) whose rows match the fp32 teacher's within bf16's
 * rounding (8 significant bits: relative error of the whole table below 2e-2), and a
 * distillation with it still pulls the student toward the teacher. */
static void test_bf16_teacher(void **state)
{
    (void)state;
    if (!fkd_shim_bf16_ok()) skip();
    char cache[PATH], f32_path[PATH], bf16_path[PATH];
    snprintf(cache, sizeof cache, "%s/cache-precision", dir);
    int64_t n32, n16;
    float *r32 = cached_rows(cache, FKD_PREC_F32, &n32, f32_path, sizeof f32_path);
    float *r16 = cached_rows(cache, FKD_PREC_BF16, &n16, bf16_path, sizeof bf16_path);
    assert_int_equal(n32, n16);
    assert_string_not_equal(f32_path, bf16_path);
    double err = 0, norm = 0;
    for (int64_t i = 0; i < n32; i++) {
        err += ((double)r32[i] - r16[i]) * ((double)r32[i] - r16[i]);
        norm += (double)r32[i] * r32[i];
    }
    printf("bf16 vs fp32 teacher cache: relative error %.3g\n", sqrt(err / norm));
    assert_true(norm > 0 && sqrt(err / norm) < 2e-2 && sqrt(err / norm) > 0);
    free(r32);
    free(r16);

    char out[PATH];
    snprintf(out, sizeof out, "output=%s/student-bf16-teacher", dir);
    /* 32 steps, not 16: after 16 the l2 mean sits within its step-to-step noise (±0.03
     * around 0.6) of the 10 % bar — last/first 0.906 with facekd's AVX-512 grouped
     * kernels, 0.876 with the generic ones, two roundings of the same training (1 vs 2
     * threads differ as much); after 32: 0.756 and 0.729. */
    const char *sets[] = {out, "teacher.precision=bf16", "teacher.cache=false", "steps=32"};
    fkd_status s = run("student.yaml", sets, 4, true);
    if (s != FKD_OK) fail_msg("%s", fkd_last_error());
    assert_l2_falls("student-bf16-teacher", 32);
}

/* Recipe mistakes in the distill block fail before training: nothing is logged. */
static void test_bad_methods_fail_before_training(void **state)
{
    (void)state;
    char path[PATH], out[3][PATH];
    for (int i = 0; i < 3; i++) snprintf(out[i], PATH, "output=%s/bad%d", dir, i + 1);
    const char *unknown[] = {out[0], "distill=[{method: kdd}]"};
    assert_int_equal(run("student.yaml", unknown, 2, true), FKD_ERR_NOTFOUND);
    assert_non_null(strstr(fkd_last_error(), "distill[0].method: unknown distillation method \"kdd\""));
    snprintf(path, sizeof path, "%s/bad1/log.csv", dir);
    assert_false(fkd_test_file_nonempty(path));

    const char *tap[] = {out[1], "distill=[{method: sp, student_tap: stage9, teacher_tap: stage3}]"};
    assert_int_not_equal(run("student.yaml", tap, 2, true), FKD_OK);
    assert_non_null(strstr(fkd_last_error(), "no tap 'stage9'"));
    snprintf(path, sizeof path, "%s/bad2/log.csv", dir);
    assert_false(fkd_test_file_nonempty(path));

    const char *param[] = {out[2], "distill=[{method: kd, T: four}]"};
    assert_int_equal(run("student.yaml", param, 2, true), FKD_ERR_ARG);
    assert_non_null(strstr(fkd_last_error(), "distill[0].T: expected a number, got \"four\""));
}

/* Writes dir/`name`: `head_lines`, then one benchmark (a tiny .bin) and one run (the L2
 * student), and runs facekd compare on it. */
static void run_compare_set(const char *name, const char *head_lines)
{
    char path[PATH], text[2048];
    snprintf(path, sizeof path, "%s/tiny.bin", dir);
    if (!fkd_test_file_nonempty(path)) assert_int_equal(fkd_test_write_synth_bin(path, 4, 20), FKD_OK);
    snprintf(text, sizeof text,
             "%sbenchmarks:\n  - {name: tiny, bin: tiny.bin}\nruns:\n  - {label: Student L2, recipe: student.yaml}\n",
             head_lines);
    assert_int_equal(fkd_test_write_text(path, dir, name, text), 0);
    fkd_status s = fkd_compare_run(path, false);
    if (s != FKD_OK) fail_msg("%s", fkd_last_error());
}

/* compare: rows are the teacher and each run, columns each benchmark's accuracy, TAR and
 * EKD's view; one ROC plot per benchmark. */
static void test_compare_writes_its_table(void **state)
{
    (void)state;
    char path[PATH];
    run_compare_set("set.yaml",
                    "name: tiny\noutput: cmp\nteacher: teacher/model.safetensors\nteacher_label: Teacher\nfar: 1e-1\n");
    snprintf(path, sizeof path, "%s/cmp/compare.md", dir);
    uint8_t *md;
    size_t size;
    assert_int_equal(fkd_file_read_all(path, &md, &size), FKD_OK);
    const char *teacher = strstr((char *)md, "| Teacher"), *student = strstr((char *)md, "| Student L2");
    assert_non_null(teacher);
    assert_non_null(student);
    assert_true(teacher < student);
    assert_non_null(strstr((char *)md, "tiny TAR@FAR=0.1"));
    assert_non_null(strstr((char *)md, "tiny TPR@teacher's T(0.1)"));
    free(md);
    snprintf(path, sizeof path, "%s/cmp/compare.csv", dir);
    assert_true(fkd_test_file_nonempty(path));
    snprintf(path, sizeof path, "%s/cmp/roc_tiny.png", dir);
    assert_true(fkd_test_file_nonempty(path));

    char bad[PATH];
    assert_int_equal(fkd_test_write_text(bad, dir, "bad.yaml", "output: cmp2\ncolour: blue\n"), 0);
    assert_int_not_equal(fkd_compare_run(bad, false), FKD_OK);
    printf("bad set: %s\n", fkd_last_error());
    assert_non_null(strstr(fkd_last_error(), "bad.yaml:2:1: colour: unknown key"));
}

/* compare trains a missing teacher from a list of recipes, in order: a softmax warm start,
 * then ArcFace from its weights; the last one writes the teacher the set names. */
static void test_compare_trains_a_staged_teacher(void **state)
{
    (void)state;
    char path[PATH], text[4096];
    snprintf(text, sizeof text, "%sname: warm\noutput: warm\nsteps: 3\n", base_recipe);
    assert_int_equal(fkd_test_write_text(path, dir, "warm.yaml", text), 0);
    snprintf(text, sizeof text,
             "extends: warm.yaml\nname: staged\noutput: staged\nmodel: {weights: warm/model.safetensors}\n"
             "head: {loss: arcface, s: 16, m2: 0.2}\n");
    assert_int_equal(fkd_test_write_text(path, dir, "staged.yaml", text), 0);
    run_compare_set("staged_set.yaml", "name: staged\noutput: cmp3\nteacher: staged/model.safetensors\n"
                                       "teacher_recipe: [warm.yaml, staged.yaml]\nflip: false\n");
    snprintf(path, sizeof path, "%s/warm/model.safetensors", dir);
    assert_true(fkd_test_file_nonempty(path));
    snprintf(path, sizeof path, "%s/staged/model.safetensors", dir);
    assert_true(fkd_test_file_nonempty(path));
    snprintf(path, sizeof path, "%s/cmp3/compare.md", dir);
    assert_true(fkd_test_file_nonempty(path));

    /* a list item that is not a path is named with its place */
    assert_int_equal(fkd_test_write_text(path, dir, "bad_stages.yaml",
                                         "output: cmp4\nteacher: nowhere.safetensors\nteacher_recipe: []\n"),
                     0);
    assert_int_not_equal(fkd_compare_run(path, false), FKD_OK);
    assert_non_null(strstr(fkd_last_error(), "bad_stages.yaml:3:"));
    assert_non_null(strstr(fkd_last_error(), "teacher_recipe: expected a recipe path or a list of them"));
}

int main(void)
{
    setenv("FACEKD_LOG", "warn", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_distill_moves_student_toward_teacher),
        cmocka_unit_test(test_cache_invalidated_by_a_new_teacher),
        cmocka_unit_test(test_bf16_teacher),
        cmocka_unit_test(test_bad_methods_fail_before_training),
        cmocka_unit_test(test_compare_writes_its_table),
        cmocka_unit_test(test_compare_trains_a_staged_teacher),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
