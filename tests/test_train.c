/* The trainer end to end on the synthetic world: a tiny run lowers the loss and writes
 * every file of its run folder; resuming equals an uninterrupted run; recipe mistakes
 * surface before any training. Narrow models (mbf width 8) on one thread keep the whole
 * file to well under a minute. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "io/recipe.h"
#include "support/tmpdir.h"
#include "support/train_fixture.h"
#include "train/trainer.h"

#define PATH 4096

static char dir[256];

static int make_dir(void **state)
{
    (void)state;
    return fkd_test_tmpdir_make(dir, sizeof dir, "train");
}

static int remove_dir(void **state)
{
    (void)state;
    return fkd_test_tmpdir_remove(dir);
}

/* Loads dir/<file> with `sets`, trains it (resuming when asked) and returns the status of
 * the first failing stage; *created tells whether fkd_trainer_create succeeded. */
static fkd_status train_with(const char *file, const char *const *sets, size_t n_sets, bool resume,
                             const fkd_train_hook *hook, bool *created)
{
    char path[PATH];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    fkd_recipe r;
    fkd_status s = fkd_recipe_load(&r, path, sets, n_sets);
    fkd_trainer *t = NULL;
    if (s == FKD_OK) s = fkd_trainer_create(&t, &r, resume, hook);
    if (created) *created = t != NULL;
    if (s == FKD_OK) s = fkd_trainer_run(t);
    fkd_trainer_free(t);
    fkd_recipe_free(&r);
    return s;
}

static fkd_status train(const char *file, const char *const *sets, size_t n_sets, bool resume, bool *created)
{
    return train_with(file, sets, n_sets, resume, NULL, created);
}

/* (a) 30 steps of batch 8 on 10 identities x 10 images: the loss falls and the run folder
 * holds every file, including the evaluation outputs of a 20-pair benchmark. */
static void test_tiny_run_learns_and_writes_its_folder(void **state)
{
    (void)state;
    char path[PATH], recipe[PATH];
    snprintf(path, sizeof path, "%s/tiny.bin", dir);
    assert_int_equal(fkd_test_write_synth_bin(path, 3, 20), FKD_OK);
    assert_int_equal(fkd_test_write_text(recipe, dir, "tiny.yaml",
                                         "name: tiny\n"
                                         "output: run\n"
                                         "seed: 3\n"
                                         "steps: 30\n"
                                         "batch_size: 8\n"
                                         "log_every: 1\n"
                                         "eval_every: 15\n"
                                         "checkpoint_every: 15\n"
                                         "threads: 1\n"
                                         "deterministic: true\n"
                                         "data:\n"
                                         "  source: synth\n"
                                         "  synth: {seed: 3, identities: 10, images_per_identity: 10}\n"
                                         "  eval:\n"
                                         "    - {name: tiny, bin: tiny.bin}\n"
                                         "model: {arch: mbf, embedding_size: 32, width: 8}\n"
                                         "head: {loss: softmax}\n"
                                         "optimizer: {type: sgd, lr: 0.05, momentum: 0.9, weight_decay: 0}\n"
                                         "schedule: {type: constant}\n"),
                     0);
    assert_int_equal(train("tiny.yaml", NULL, 0, false, NULL), FKD_OK);

    static const char *const files[] = {"recipe.yaml",  "log.csv",     "eval.csv", "checkpoint.safetensors",
                                        "model.safetensors", "results.md", "results.csv", "roc.png",
                                        "loss.png",     "lr.png",      "accuracy.png"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/run/%s", dir, files[i]);
        if (!fkd_test_file_nonempty(path)) fail_msg("run folder: %s is missing or empty", files[i]);
    }

    /* One log row per step; the mean of the last 5 steps' loss must lie at least 10%
     * below the mean of the first 5 (softmax starts near ln 10 = 2.30). */
    double *loss = NULL;
    snprintf(path, sizeof path, "%s/run/log.csv", dir);
    int rows = fkd_test_csv_column(path, "loss", &loss);
    assert_int_equal(rows, 30);
    double first = fkd_test_mean(loss, 0, 5), last = fkd_test_mean(loss, rows - 5, rows);
    printf("tiny run: loss %.4f (steps 1-5) -> %.4f (steps 26-30)\n", first, last);
    assert_true(last < 0.9 * first);
    free(loss);
    /* Every row says how long the step waited for data (ms, >= 0). */
    double *wait = NULL;
    assert_int_equal(fkd_test_csv_column(path, "loader_wait_ms", &wait), 30);
    for (int i = 0; i < 30; i++) assert_true(wait[i] >= 0);
    free(wait);

    /* eval.csv: the evaluation at step 15 and the final one at 30. */
    double *steps = NULL;
    snprintf(path, sizeof path, "%s/run/eval.csv", dir);
    assert_int_equal(fkd_test_csv_column(path, "step", &steps), 2);
    assert_true(steps[0] == 15 && steps[1] == 30);
    free(steps);

    /* Fine-tuning from that model (model.weights) starts the head from its class centres:
     * one step at learning rate 0 (the first step of a warmup) leaves head.weight exactly
     * as the file has it. */
    char weights[PATH], out[PATH], a[PATH], b[PATH], worst[256];
    snprintf(weights, sizeof weights, "model.weights=%s/run/model.safetensors", dir);
    snprintf(out, sizeof out, "output=%s/warm", dir);
    const char *warm[] = {weights, out, "steps=1", "schedule.warmup_steps=5", "data.eval=[]"};
    assert_int_equal(train("tiny.yaml", warm, 5, false, NULL), FKD_OK);
    snprintf(a, sizeof a, "%s/run/model.safetensors", dir);
    snprintf(b, sizeof b, "%s/warm/model.safetensors", dir);
    double diff = fkd_test_safetensors_diff(a, b, "head.weight", worst, sizeof worst);
    if (diff != 0) fail_msg("head.weight after a warm start: max |diff| %g (%s)", diff, worst);

    /* data.workers changes who renders the batches, not which: without `deterministic`
     * (which forces one loader thread), 1 and 3 workers train the same model bit for bit
     * (one OpenMP thread). */
    char out1[PATH], out3[PATH];
    snprintf(out1, sizeof out1, "output=%s/workers1", dir);
    snprintf(out3, sizeof out3, "output=%s/workers3", dir);
    const char *w1[] = {out1, "steps=6", "data.eval=[]", "deterministic=false", "data.workers=1"};
    const char *w3[] = {out3, "steps=6", "data.eval=[]", "deterministic=false", "data.workers=3"};
    assert_int_equal(train("tiny.yaml", w1, 5, false, NULL), FKD_OK);
    assert_int_equal(train("tiny.yaml", w3, 5, false, NULL), FKD_OK);
    snprintf(a, sizeof a, "%s/workers1/model.safetensors", dir);
    snprintf(b, sizeof b, "%s/workers3/model.safetensors", dir);
    diff = fkd_test_safetensors_diff(a, b, NULL, worst, sizeof worst);
    if (diff != 0) fail_msg("data.workers 1 vs 3: max |diff| %g (%s)", diff, worst);
}

static const char resume_recipe[] = "name: resume\n"
                                    "seed: 5\n"
                                    "batch_size: 8\n"
                                    "log_every: 1\n"
                                    "eval_every: 0\n"
                                    "threads: 1\n"
                                    "deterministic: true\n"
                                    "data:\n"
                                    "  source: synth\n"
                                    "  synth: {seed: 5, identities: 6, images_per_identity: 4}\n"
                                    "model: {arch: mbf, embedding_size: 16, width: 8}\n"
                                    "head: {loss: arcface, s: 16}\n"
                                    "optimizer: {type: sgd, lr: 0.05, momentum: 0.9, weight_decay: 0.0005}\n"
                                    "schedule: {type: constant}\n";

/* (b) N = 6 steps in one go (checkpoint every 3) against 3 steps (steps=3), then resumed
 * with steps=6: the final model files must be equal tensor by tensor — bit for bit,
 * since both runs do the same arithmetic on one thread. The constant schedule keeps the
 * learning rate of the first 3 steps independent of the total. 6 identities x 4 images
 * with batch 8 makes epochs of 3 steps, so the resumed run also crosses an epoch. */
static void test_resume_equals_uninterrupted(void **state)
{
    (void)state;
    char recipe[PATH], a[PATH], b[PATH], worst[256];
    assert_int_equal(fkd_test_write_text(recipe, dir, "resume.yaml", resume_recipe), 0);
    const char *whole[] = {"output=whole", "steps=6", "checkpoint_every=3"};
    const char *half[] = {"output=parts", "steps=3", "checkpoint_every=3"};
    const char *rest[] = {"output=parts", "steps=6", "checkpoint_every=3"};
    char cwd_whole[PATH], cwd_parts[PATH];
    snprintf(cwd_whole, sizeof cwd_whole, "output=%s/whole", dir);
    snprintf(cwd_parts, sizeof cwd_parts, "output=%s/parts", dir);
    whole[0] = cwd_whole;
    half[0] = rest[0] = cwd_parts;
    assert_int_equal(train("resume.yaml", whole, 3, false, NULL), FKD_OK);
    assert_int_equal(train("resume.yaml", half, 3, false, NULL), FKD_OK);
    assert_int_equal(train("resume.yaml", rest, 3, true, NULL), FKD_OK);

    snprintf(a, sizeof a, "%s/whole/model.safetensors", dir);
    snprintf(b, sizeof b, "%s/parts/model.safetensors", dir);
    double diff = fkd_test_safetensors_diff(a, b, NULL, worst, sizeof worst);
    if (diff != 0) fail_msg("resumed model differs from the uninterrupted one: max |diff| %g in %s", diff, worst);
    /* The checkpoints hold the optimizer state too: equal as well. */
    snprintf(a, sizeof a, "%s/whole/checkpoint.safetensors", dir);
    snprintf(b, sizeof b, "%s/parts/checkpoint.safetensors", dir);
    diff = fkd_test_safetensors_diff(a, b, NULL, worst, sizeof worst);
    if (diff != 0) fail_msg("resumed checkpoint differs from the uninterrupted one: max |diff| %g in %s", diff, worst);

    /* The resumed log continues the first: rows for steps 1..6, the same losses. */
    double *la = NULL, *lb = NULL;
    snprintf(a, sizeof a, "%s/whole/log.csv", dir);
    snprintf(b, sizeof b, "%s/parts/log.csv", dir);
    assert_int_equal(fkd_test_csv_column(a, "loss", &la), 6);
    assert_int_equal(fkd_test_csv_column(b, "loss", &lb), 6);
    for (int i = 0; i < 6; i++) assert_true(la[i] == lb[i]);
    free(la);
    free(lb);
}

/* A hook with no loss terms that asks the trainer to stop (as SIGINT does) once the
 * batch of step `stop_after` (from 1) has been used. */
static fkd_status stop_hook(void *ctx, fkd_trainer *t, const fkd_batch *batch, const float *embedding,
                            float *d_embedding, float *margins, bool *use_margins, double *terms)
{
    (void)t, (void)embedding, (void)d_embedding, (void)margins, (void)use_margins, (void)terms;
    if (batch->step + 1 == *(const int64_t *)ctx) fkd_train_stop_requested = 1;
    return FKD_OK;
}

/* (b') The Ctrl-C path: a run stopped after step 2 of 6 writes its checkpoint and returns
 * FKD_ERR_INTERRUPTED; resumed, it ends with the uninterrupted run's model. */
static void test_interrupt_then_resume(void **state)
{
    (void)state;
    char recipe[PATH], a[PATH], b[PATH], out_whole[PATH], out_cut[PATH], worst[256];
    assert_int_equal(fkd_test_write_text(recipe, dir, "resume.yaml", resume_recipe), 0);
    snprintf(out_whole, sizeof out_whole, "output=%s/whole2", dir);
    snprintf(out_cut, sizeof out_cut, "output=%s/cut", dir);
    const char *whole[] = {out_whole, "steps=6", "checkpoint_every=0"};
    const char *cut[] = {out_cut, "steps=6", "checkpoint_every=0"};
    int64_t stop_after = 2;
    fkd_train_hook hook = {.ctx = &stop_after, .n_terms = 0, .step = stop_hook};
    assert_int_equal(train("resume.yaml", whole, 3, false, NULL), FKD_OK);
    fkd_status s = train_with("resume.yaml", cut, 3, false, &hook, NULL);
    fkd_train_stop_requested = 0;
    assert_int_equal(s, FKD_ERR_INTERRUPTED);
    assert_non_null(strstr(fkd_last_error(), "stopped at step 2"));
    assert_int_equal(train("resume.yaml", cut, 3, true, NULL), FKD_OK);
    snprintf(a, sizeof a, "%s/whole2/model.safetensors", dir);
    snprintf(b, sizeof b, "%s/cut/model.safetensors", dir);
    double diff = fkd_test_safetensors_diff(a, b, NULL, worst, sizeof worst);
    if (diff != 0) fail_msg("model after interrupt + resume differs: max |diff| %g in %s", diff, worst);
}

/* Loads and trains dir/<file>; the run must fail before training started (no log row,
 * no checkpoint) with a message containing every string of `expect`. */
static void expect_early_failure(const char *file, const char *const *expect, int n_expect, bool loads)
{
    bool created = true;
    fkd_status s = train(file, NULL, 0, false, &created);
    assert_int_not_equal(s, FKD_OK);
    assert_false(created);
    const char *msg = fkd_last_error();
    for (int i = 0; i < n_expect; i++)
        if (!strstr(msg, expect[i])) fail_msg("message '%s' lacks '%s'", msg, expect[i]);
    char path[PATH];
    snprintf(path, sizeof path, "%s/bad/checkpoint.safetensors", dir);
    assert_false(fkd_test_file_nonempty(path));
    snprintf(path, sizeof path, "%s/bad/log.csv", dir);
    assert_false(fkd_test_file_nonempty(path));
    /* An unknown key stops the recipe reader itself, before the run folder exists. */
    snprintf(path, sizeof path, "%s/bad/recipe.yaml", dir);
    assert_int_equal(fkd_test_file_nonempty(path), loads);
}

/* (c) An unknown key (file:line:col and the key), and a data.path that does not exist
 * (the path), both before any training step. */
static void test_recipe_errors_before_training(void **state)
{
    (void)state;
    char recipe[PATH];
    assert_int_equal(fkd_test_write_text(recipe, dir, "unknown.yaml",
                                         "output: bad\n"
                                         "steps: 2\n"
                                         "model: {arch: mbf, embedding_size: 8, width: 8}\n"
                                         "optimiser: {lr: 0.1}\n"),
                     0);
    const char *unknown[] = {"unknown.yaml:4:1", "optimiser", "unknown key"};
    expect_early_failure("unknown.yaml", unknown, 3, false);

    assert_int_equal(fkd_test_write_text(recipe, dir, "missing.yaml",
                                         "output: bad\n"
                                         "steps: 2\n"
                                         "data: {source: folder, path: no_such_folder}\n"
                                         "model: {arch: mbf, embedding_size: 8, width: 8}\n"),
                     0);
    const char *missing[] = {"no_such_folder", "no such file"};
    expect_early_failure("missing.yaml", missing, 2, true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_recipe_errors_before_training),
        cmocka_unit_test(test_resume_equals_uninterrupted),
        cmocka_unit_test(test_interrupt_then_resume),
        cmocka_unit_test(test_tiny_run_learns_and_writes_its_folder),
    };
    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
