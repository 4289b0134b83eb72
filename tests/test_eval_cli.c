/* Evaluation and embeddings as a user meets them: `facekd eval --bench F.bin --json` on a
 * .bin the test writes reproduces accuracies computed here independently (a plain
 * re-implementation of insightface's 10-fold threshold sweep on embeddings written by
 * `facekd embed`), and `facekd embed` writes the same rows for a folder of images, a .npy
 * batch and the library's own forward pass. Runs build/facekd (BUILD from the
 * environment, as scripts/run_tests.sh sets it). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/fileio.h"
#include "data/image.h"
#include "data/verbin.h"
#include "io/npy.h"
#include "nn/shim.h"
#include "support/tmpdir.h"
#include "support/train_fixture.h"

#define PATH 4096
#define N_PAIRS 40

static char dir[256], model[PATH], bin_path[PATH];

/* Runs build/facekd with argv (NULL-terminated after the command), stdout to `out`; with
 * `err`, stderr to it and the environment variable env_name=env_value set. */
static int facekd_env(const char *out, const char *err, const char *env_name, const char *env_value,
                      const char *const *args)
{
    const char *build = getenv("BUILD");
    char bin[PATH];
    snprintf(bin, sizeof bin, "%s/facekd", build && *build ? build : "build");
    char *argv[32];
    int n = 0;
    argv[n++] = bin;
    for (int i = 0; args[i] && n < 31; i++) argv[n++] = (char *)args[i];
    argv[n] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        FILE *fp = freopen(out, "w", stdout);
        if (!fp) _exit(126);
        setenv("OMP_NUM_THREADS", "1", 1);
        setenv("FACEKD_LOG", "warn", 1);
        if (err && (!freopen(err, "w", stderr) || setenv(env_name, env_value, 1) != 0)) _exit(126);
        execv(bin, argv);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static int facekd(const char *out, const char *const *args)
{
    return facekd_env(out, NULL, NULL, NULL, args);
}

static int setup(void **state)
{
    (void)state;
    if (fkd_test_tmpdir_make(dir, sizeof dir, "evalcli") != 0) return -1;
    char recipe[PATH];
    /* A tiny trained model with a 16-d embedding (trained 40 steps: enough to be a model,
     * not to be good; the test compares computations, not quality). */
    if (fkd_test_write_text(recipe, dir, "m.yaml",
                            "name: m\noutput: m\nsteps: 40\nbatch_size: 8\nthreads: 1\neval_every: 0\n"
                            "checkpoint_every: 0\nlog_every: 10\n"
                            "data: {source: synth, synth: {seed: 7, identities: 6, images_per_identity: 6}}\n"
                            "model: {arch: mbf, embedding_size: 16, width: 8}\nhead: {loss: softmax}\n"
                            "optimizer: {type: sgd, lr: 0.05, weight_decay: 0}\nschedule: {type: constant}\n") != 0)
        return -1;
    char log[PATH];
    snprintf(log, sizeof log, "%s/train.out", dir);
    const char *args[] = {"train", recipe, NULL};
    if (facekd(log, args) != 0) return -1;
    snprintf(model, sizeof model, "%s/m/model.safetensors", dir);
    snprintf(bin_path, sizeof bin_path, "%s/pairs.bin", dir);
    return fkd_test_write_synth_bin(bin_path, 7, N_PAIRS) == FKD_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return fkd_test_tmpdir_remove(dir);
}

/* Writes the .bin's images as dir/imgs/<i>.png (zero-padded, so sorted = index order). */
static void write_images(const fkd_verbin *set)
{
    char path[PATH];
    snprintf(path, sizeof path, "%s/imgs", dir);
    assert_int_equal(fkd_mkdir_p(path), FKD_OK);
    for (int64_t i = 0; i < 2 * set->n_pairs; i++) {
        fkd_image img = {0};
        assert_int_equal(fkd_image_decode(set->images[i], set->sizes[i], "pairs.bin", &img), FKD_OK);
        snprintf(path, sizeof path, "%s/imgs/%03lld.png", dir, (long long)i);
        assert_int_equal(fkd_image_save_png(&img, path), FKD_OK);
        fkd_image_free(&img);
    }
}

/* insightface's accuracy, written out plainly: flip-summed embeddings normalised, squared
 * distances, thresholds k*0.01 for k < 400, ten contiguous folds, the first best threshold
 * on the other nine applied to each; returns the mean accuracy. */
static double reference_accuracy(const float *emb, const bool *issame, int n, int d)
{
    double dist[N_PAIRS];
    for (int p = 0; p < n; p++) {
        double na = 0, nb = 0, s = 0;
        for (int k = 0; k < d; k++) {
            double a = emb[(2 * p) * d + k], b = emb[(2 * p + 1) * d + k];
            na += a * a, nb += b * b;
        }
        for (int k = 0; k < d; k++) {
            double a = emb[(2 * p) * d + k] / sqrt(na), b = emb[(2 * p + 1) * d + k] / sqrt(nb);
            s += (a - b) * (a - b);
        }
        dist[p] = s;
    }
    double total = 0;
    int per = n / 10;
    for (int f = 0; f < 10; f++) {
        int best_correct = -1;
        double best_t = 0;
        for (int k = 0; k < 400; k++) {
            double t = k * 0.01;
            int correct = 0;
            for (int p = 0; p < n; p++)
                if (p / per != f) correct += (dist[p] < t) == issame[p];
            if (correct > best_correct) best_correct = correct, best_t = t;
        }
        int correct = 0;
        for (int p = f * per; p < (f + 1) * per; p++) correct += (dist[p] < best_t) == issame[p];
        total += (double)correct / per;
    }
    return total / 10;
}

/* The first accuracy in `facekd eval --json` output. */
static double json_accuracy(const char *path)
{
    uint8_t *json;
    size_t size;
    assert_int_equal(fkd_file_read_all(path, &json, &size), FKD_OK);
    json = realloc(json, size + 1);
    json[size] = 0;
    const char *acc = strstr((char *)json, "\"accuracy\": ");
    assert_non_null(acc);
    double v = strtod(acc + 12, NULL);
    free(json);
    return v;
}

static void test_eval_matches_an_independent_reference(void **state)
{
    (void)state;
    fkd_verbin set;
    assert_int_equal(fkd_verbin_load(bin_path, &set), FKD_OK);
    write_images(&set);
    char imgs[PATH], plain[PATH], flipped[PATH], out[PATH];
    snprintf(imgs, sizeof imgs, "%s/imgs", dir);
    snprintf(plain, sizeof plain, "%s/plain.npy", dir);
    snprintf(flipped, sizeof flipped, "%s/flip.npy", dir);
    snprintf(out, sizeof out, "%s/embed.out", dir);
    const char *embed[] = {"embed", "--model", model, "--input", imgs, "--out", flipped, "--flip", NULL};
    assert_int_equal(facekd(out, embed), 0);
    fkd_npy_array e;
    assert_int_equal(fkd_npy_read(flipped, FKD_NPY_F32, &e), FKD_OK);
    assert_int_equal(e.info.ndims, 2);
    assert_int_equal(e.info.dims[0], 2 * N_PAIRS);
    assert_int_equal(e.info.dims[1], 16);
    double want = reference_accuracy(e.data, set.issame, N_PAIRS, 16);

    snprintf(out, sizeof out, "%s/eval.json", dir);
    const char *eval[] = {"eval", "--model", model, "--bench", bin_path, "--json", NULL};
    assert_int_equal(facekd(out, eval), 0);
    double got = json_accuracy(out);
    printf("eval accuracy %.6f, independent reference %.6f\n", got, want);
    /* The .bin's JPEGs decode the same in both paths; embeddings go through the same
     * engine; the only difference is float vs double rounding of the flip sum. */
    assert_true(fabs(got - want) < 1e-9);
    fkd_npy_free(&e);
    fkd_verbin_free(&set);
    (void)plain;
}

/* embed: a folder's rows follow its sorted file list (OUT.npy.txt); a .npy batch of the
 * same normalised images gives the same rows. */
static void test_embed_folder_and_npy_agree(void **state)
{
    (void)state;
    char imgs[PATH / 2], a[PATH / 2], b[PATH], batch[PATH], out[PATH], list[PATH];
    snprintf(imgs, sizeof imgs, "%s/imgs", dir);
    snprintf(a, sizeof a, "%s/a.npy", dir);
    snprintf(b, sizeof b, "%s/b.npy", dir);
    snprintf(batch, sizeof batch, "%s/batch.npy", dir);
    snprintf(out, sizeof out, "%s/embed2.out", dir);
    const char *folder[] = {"embed", "--model", model, "--input", imgs, "--out", a, "--batch", "7", NULL};
    assert_int_equal(facekd(out, folder), 0);
    snprintf(list, sizeof list, "%s.txt", a);
    uint8_t *text;
    size_t size;
    assert_int_equal(fkd_file_read_all(list, &text, &size), FKD_OK);
    assert_non_null(strstr((char *)text, "/imgs/000.png\n"));
    free(text);

    /* The first 5 images as a normalised (5, 3, 112, 112) batch. */
    float *x = malloc(sizeof(float) * 5 * 3 * 112 * 112);
    for (int i = 0; i < 5; i++) {
        char path[PATH];
        fkd_image img = {0};
        snprintf(path, sizeof path, "%s/%03d.png", imgs, i);
        assert_int_equal(fkd_image_load(path, &img), FKD_OK);
        for (int c = 0; c < 3; c++)
            for (int p = 0; p < 112 * 112; p++)
                x[(size_t)(i * 3 + c) * 112 * 112 + p] = ((float)img.pixels[p * 3 + c] - 127.5f) / 127.5f;
        fkd_image_free(&img);
    }
    int64_t dims[4] = {5, 3, 112, 112};
    assert_int_equal(fkd_npy_write(batch, FKD_NPY_F32, x, 4, dims), FKD_OK);
    free(x);
    const char *npy[] = {"embed", "--model", model, "--input", batch, "--out", b, NULL};
    assert_int_equal(facekd(out, npy), 0);
    fkd_npy_array ea, eb;
    assert_int_equal(fkd_npy_read(a, FKD_NPY_F32, &ea), FKD_OK);
    assert_int_equal(fkd_npy_read(b, FKD_NPY_F32, &eb), FKD_OK);
    assert_int_equal(eb.info.dims[0], 5);
    double worst = 0;
    for (int k = 0; k < 5 * 16; k++) {
        double diff = fabs(((float *)ea.data)[k] - ((float *)eb.data)[k]);
        if (diff > worst) worst = diff;
    }
    printf("folder vs .npy embeddings: max |diff| %.3g\n", worst);
    assert_true(worst < 1e-5); /* the same pixels, batched differently (7 vs 5) */
    fkd_npy_free(&ea);
    fkd_npy_free(&eb);

    /* A missing model is an error naming it, exit 1. */
    const char *bad[] = {"embed", "--model", "no/such.safetensors", "--input", batch, "--out", b, NULL};
    assert_int_equal(facekd(out, bad), 1);
}

/* --precision bf16 (eval, embed): the same model in a bf16 graph gives embeddings within
 * bf16's rounding of fp32's (relative error of the whole table below 2e-2: 8 significant
 * bits, a few dozen layers) and the same verification accuracy up to a few pairs near the
 * threshold (|diff| <= 0.05, 2 of 40 pairs). */
static void test_bf16_eval_and_embed(void **state)
{
    (void)state;
    if (!fkd_shim_bf16_ok()) skip();
    char imgs[PATH / 2], f32[PATH / 2], b16[PATH / 2], out[PATH];
    snprintf(imgs, sizeof imgs, "%s/imgs", dir);
    snprintf(f32, sizeof f32, "%s/f32.npy", dir);
    snprintf(b16, sizeof b16, "%s/b16.npy", dir);
    snprintf(out, sizeof out, "%s/bf16.out", dir);
    const char *e32[] = {"embed", "--model", model, "--input", imgs, "--out", f32, NULL};
    const char *e16[] = {"embed", "--model", model, "--input", imgs, "--out", b16, "--precision", "bf16", NULL};
    assert_int_equal(facekd(out, e32), 0);
    assert_int_equal(facekd(out, e16), 0);
    fkd_npy_array a, b;
    assert_int_equal(fkd_npy_read(f32, FKD_NPY_F32, &a), FKD_OK);
    assert_int_equal(fkd_npy_read(b16, FKD_NPY_F32, &b), FKD_OK);
    assert_int_equal(a.info.dims[0], b.info.dims[0]);
    double err = 0, norm = 0;
    for (int64_t k = 0; k < a.info.dims[0] * a.info.dims[1]; k++) {
        double x = ((float *)a.data)[k], y = ((float *)b.data)[k];
        err += (x - y) * (x - y);
        norm += x * x;
    }
    fkd_npy_free(&a);
    fkd_npy_free(&b);

    char j32[PATH], j16[PATH];
    snprintf(j32, sizeof j32, "%s/eval32.json", dir);
    snprintf(j16, sizeof j16, "%s/eval16.json", dir);
    const char *v32[] = {"eval", "--model", model, "--bench", bin_path, "--json", NULL};
    const char *v16[] = {"eval", "--model", model, "--bench", bin_path, "--json", "--precision", "bf16", NULL};
    assert_int_equal(facekd(j32, v32), 0);
    assert_int_equal(facekd(j16, v16), 0);
    double acc32 = json_accuracy(j32), acc16 = json_accuracy(j16);
    printf("bf16 vs fp32: embeddings relative error %.3g; accuracy %.4f vs %.4f\n", sqrt(err / norm), acc16, acc32);
    assert_true(norm > 0 && sqrt(err / norm) < 2e-2);
    assert_true(fabs(acc16 - acc32) <= 0.05 + 1e-12);
    const char *bad[] = {"eval", "--model", model, "--bench", bin_path, "--precision", "fp16", NULL};
    assert_int_equal(facekd(out, bad), 1);
}

/* model.precision bf16 on a CPU whose oneDNN has no bf16 kernels (AVX2, made so with
 * DNNL_MAX_CPU_ISA): the run trains in fp32 and says so, naming the recipe and the key. */
static void test_bf16_falls_back_to_fp32_without_avx512(void **state)
{
    (void)state;
    char recipe[PATH], out[PATH], err[PATH], set_out[PATH], path[PATH];
    snprintf(recipe, sizeof recipe, "%s/m.yaml", dir);
    snprintf(out, sizeof out, "%s/fallback.out", dir);
    snprintf(err, sizeof err, "%s/fallback.err", dir);
    snprintf(set_out, sizeof set_out, "output=%s/fallback", dir);
    const char *args[] = {"train", recipe, "--set", "model.precision=bf16", "--set", "steps=2", "--set", set_out, NULL};
    assert_int_equal(facekd_env(out, err, "DNNL_MAX_CPU_ISA", "AVX2", args), 0);
    uint8_t *text;
    size_t size;
    assert_int_equal(fkd_file_read_all(err, &text, &size), FKD_OK);
    text = realloc(text, size + 1);
    text[size] = 0;
    if (!strstr((char *)text, "m.yaml: model.precision: bf16 needs AVX-512") ||
        !strstr((char *)text, "running fp32 instead"))
        fail_msg("no fallback warning in: %s", (char *)text);
    free(text);
    snprintf(path, sizeof path, "%s/fallback/model.safetensors", dir);
    assert_true(fkd_test_file_nonempty(path));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eval_matches_an_independent_reference),
        cmocka_unit_test(test_embed_folder_and_npy_agree),
        cmocka_unit_test(test_bf16_eval_and_embed),
        cmocka_unit_test(test_bf16_falls_back_to_fp32_without_avx512),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
