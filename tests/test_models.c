/* Architectures (teachers/iresnet, students/mbf, nn/arch) and model files (io/model):
 *  - narrow IResNet and MobileFaceNet against PyTorch (scripts/gen_model_fixtures.py,
 *    float64 reference) on a batch of 4 (the fixture's 2 images and their mirrors): eval
 *    and train forward, input and weight gradients, running statistics after one train
 *    step;
 *  - exact parameter and MAC counts of the full-size models (built, not run);
 *  - model save/load round trip and every kind of bad model file.
 * Comparisons use the normalised error max|got - want| / max|want|. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/fileio.h"
#include "io/model.h"
#include "io/safetensors.h"
#include "nn/arch.h"

#define FIXTURES "tests/fixtures/models/"

/* Tolerances (fp32 engine vs float64 PyTorch): forward outputs 1e-4, gradients 1e-3;
 * measured errors are 1e-9..9e-5 (printed by the test), the largest on a batch-norm bias
 * gradient (a sum of many terms that nearly cancel). */
#define TOL_FORWARD 1e-4
#define TOL_GRAD 1e-3

static double norm_err(const float *got, const float *want, int64_t n)
{
    double err = 0, scale = 1e-12;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (!(d <= err)) err = d; /* NaN propagates */
        if (fabs(want[i]) > scale) scale = fabs(want[i]);
    }
    return err / scale;
}

static float *tensor_f32(const fkd_safetensors *st, const char *name, int64_t *numel)
{
    const fkd_st_tensor *t = fkd_safetensors_find(st, name);
    if (!t) fail_msg("%s: no tensor '%s'", st->path, name);
    float *out = malloc((size_t)t->numel * sizeof *out + 1);
    fkd_st_tensor_to_f32(t, out);
    if (numel) *numel = t->numel;
    return out;
}

/* Prints the error; returns 1 when above tolerance (callers fail after printing all). */
static int expect_close(const char *what, const float *got, const float *want, int64_t n, double tol)
{
    double e = norm_err(got, want, n);
    int bad = !(e <= tol);
    print_message("  %-52s normalised error %.2e (tolerance %.0e)%s\n", what, e, tol, bad ? "  FAILED" : "");
    return bad;
}

static int param_index(fkd_graph *g, const char *name)
{
    fkd_param *p;
    int n;
    assert_int_equal(fkd_graph_params(g, &p, &n), FKD_OK);
    for (int i = 0; i < n; i++)
        if (strcmp(p[i].name, name) == 0) return i;
    fail_msg("graph has no parameter '%s'", name);
    return -1;
}

#define BATCH 4
#define IMAGE (3 * 112 * 112)

/* The fixture's narrow architecture (its metadata: architecture, width, blocks,
 * embedding_size) as a TRAIN graph of batch 4 with the fixture's weights. */
static fkd_graph *build_fixture_graph(const fkd_safetensors *st, fkd_value *emb)
{
    fkd_graph_config cfg = {.batch = BATCH, .mode = FKD_GRAPH_TRAIN, .precision = FKD_PREC_F32, .seed = 7, .input_grad = true};
    fkd_graph *g;
    if (fkd_model_open(&g, st, NULL, &cfg, emb) != FKD_OK) fail_msg("%s", fkd_last_error());
    return g;
}

/* Every tensor of the PyTorch state_dict (except num_batches_tracked and the ref.*
 * results) is a parameter of the graph, and the other way round (load checked that). */
static void check_names_match(fkd_graph *g, const fkd_safetensors *st)
{
    fkd_param *p;
    int n, model_tensors = 0;
    assert_int_equal(fkd_graph_params(g, &p, &n), FKD_OK);
    for (int i = 0; i < st->count; i++) {
        const char *name = st->tensors[i].name;
        if (strncmp(name, "ref.", 4) == 0 || strstr(name, "num_batches_tracked")) continue;
        model_tensors++;
        param_index(g, name);
    }
    assert_int_equal(model_tensors, n);
    /* arcface_torch freezes IResNet's features.weight at 1; everything else that is not
     * a running statistic trains. */
    for (int i = 0; i < n; i++)
        assert_int_equal(p[i].trainable, !p[i].is_buffer && strcmp(p[i].name, "features.weight") != 0);
}

static void run_fixture(const char *file)
{
    fkd_safetensors in, st;
    assert_int_equal(fkd_safetensors_read(&in, FIXTURES "input.safetensors"), FKD_OK);
    assert_int_equal(fkd_safetensors_read(&st, file), FKD_OK);
    /* (4, 3, 112, 112): images 0, 1, then each mirrored left-right. */
    float *x = malloc(sizeof(float) * BATCH * IMAGE);
    float *two = tensor_f32(&in, "input", NULL);
    memcpy(x, two, sizeof(float) * 2 * IMAGE);
    for (int row = 0; row < 2 * 3 * 112; row++)
        for (int col = 0; col < 112; col++) x[2 * IMAGE + row * 112 + col] = two[row * 112 + 111 - col];
    free(two);
    fkd_value emb;
    fkd_graph *g = build_fixture_graph(&st, &emb);
    check_names_match(g, &st);
    int nd, dims[4];
    assert_int_equal(fkd_graph_shape(g, emb, &nd, dims), FKD_OK);
    const int64_t n_emb = (int64_t)dims[0] * dims[1];
    float *got = malloc(sizeof(float) * BATCH * IMAGE);
    int failures = 0;

    /* Eval mode: running statistics from the file. */
    float *want = tensor_f32(&st, "ref.eval.embedding", NULL);
    assert_int_equal(fkd_graph_set_training(g, false), FKD_OK);
    assert_int_equal(fkd_graph_set_input(g, "input", x), FKD_OK);
    assert_int_equal(fkd_graph_forward(g), FKD_OK);
    assert_int_equal(fkd_graph_read(g, emb, got), FKD_OK);
    failures += expect_close("eval embedding", got, want, n_emb, TOL_FORWARD);
    free(want);

    /* Train mode: batch statistics, then L = sum(r * embedding). */
    assert_int_equal(fkd_graph_set_training(g, true), FKD_OK);
    assert_int_equal(fkd_graph_forward(g), FKD_OK);
    assert_int_equal(fkd_graph_read(g, emb, got), FKD_OK);
    want = tensor_f32(&st, "ref.train.embedding", NULL);
    failures += expect_close("train embedding", got, want, n_emb, TOL_FORWARD);
    free(want);
    int64_t n;
    want = tensor_f32(&st, "ref.train.stage4_0", &n); /* image 0 */
    fkd_value s4 = fkd_graph_find(g, "stage4");
    assert_true(s4 >= 0);
    assert_int_equal(fkd_graph_read(g, s4, got), FKD_OK);
    failures += expect_close("train stage4 tap (image 0)", got, want, n, TOL_FORWARD);
    free(want);

    float *r = tensor_f32(&st, "ref.r", NULL);
    assert_int_equal(fkd_graph_zero_grad(g), FKD_OK);
    assert_int_equal(fkd_graph_add_grad(g, emb, r), FKD_OK);
    assert_int_equal(fkd_graph_backward(g), FKD_OK);
    free(r);
    if (fkd_safetensors_find(&st, "ref.grad.input0")) {
        assert_int_equal(fkd_graph_read_input_grad(g, "input", got), FKD_OK);
        want = tensor_f32(&st, "ref.grad.input0", &n); /* image 0 only */
        failures += expect_close("d/d input (image 0)", got, want, n, TOL_GRAD);
        free(want);
    }

    int grads = 0, buffers = 0;
    for (int i = 0; i < st.count; i++) {
        const char *name = st.tensors[i].name;
        int is_grad = strncmp(name, "ref.grad.", 9) == 0 && strcmp(name, "ref.grad.input0") != 0;
        int is_after = strncmp(name, "ref.after.", 10) == 0;
        if (!is_grad && !is_after) continue;
        const char *pname = name + (is_grad ? 9 : 10);
        int k = param_index(g, pname);
        want = tensor_f32(&st, name, &n);
        float *buf = malloc((size_t)n * sizeof *buf);
        if (is_grad) {
            assert_int_equal(fkd_graph_param_read_grad(g, k, buf), FKD_OK);
            grads++;
        } else {
            assert_int_equal(fkd_graph_param_read(g, k, buf), FKD_OK);
            buffers++;
        }
        char what[160];
        snprintf(what, sizeof what, "%s %s", is_grad ? "d/d" : "after train step", pname);
        failures += expect_close(what, buf, want, n, is_grad ? TOL_GRAD : TOL_FORWARD);
        free(buf);
        free(want);
    }
    assert_true(grads >= 5 && buffers >= 2);
    if (failures) fail_msg("%s: %d comparisons above tolerance", file, failures);
    free(got);
    free(x);
    fkd_graph_free(g);
    fkd_safetensors_free(&st);
    fkd_safetensors_free(&in);
}

static void test_iresnet_matches_pytorch(void **state)
{
    (void)state;
    run_fixture(FIXTURES "iresnet_narrow.safetensors");
}

static void test_mbf_matches_pytorch(void **state)
{
    (void)state;
    run_fixture(FIXTURES "mbf_narrow.safetensors");
}

/* Parameters as arcface_torch's sum(p.numel() for p in model.parameters()) and
 * conv+linear MACs at 112x112, both measured independently with PyTorch
 * (scripts/arcface_models.py with forward hooks). Graphs are built, not finalized. */
static void test_mbf_large_matches_pytorch(void **state)
{
    (void)state;
    run_fixture(FIXTURES "mbf_large_narrow.safetensors");
}

static void test_full_size_counts(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        int64_t params, macs;
    } want[] = {
        {"iresnet18", 24025600, 2609954816}, {"iresnet34", 34139328, 4459642880},
        {"iresnet50", 43590848, 6309330944}, {"iresnet100", 65156160, 12089606144},
        {"mbf", 2059520, 437520896},         {"mbf_large", 6314880, 1816482816},
        {"r50", 43590848, 6309330944},       {"resnet18", 24025600, 2609954816},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        fkd_graph_config cfg = {.batch = 1, .mode = FKD_GRAPH_INFER};
        fkd_graph *g;
        fkd_value emb;
        assert_int_equal(fkd_graph_create(&g, &cfg), FKD_OK);
        fkd_value x = fkd_graph_input(g, "input", 3, 112, 112);
        assert_int_equal(fkd_arch_build(g, want[i].name, NULL, x, &emb), FKD_OK);
        int64_t params, macs;
        assert_int_equal(fkd_graph_count(g, &params, &macs), FKD_OK);
        print_message("  %-10s %" PRId64 " parameters, %.3f GMACs\n", want[i].name, params, macs / 1e9);
        assert_int_equal(params, want[i].params);
        assert_int_equal(macs, want[i].macs);
        int nd, dims[4];
        assert_int_equal(fkd_graph_shape(g, emb, &nd, dims), FKD_OK);
        assert_int_equal(nd, 2);
        assert_int_equal(dims[1], 512);
        const char *taps[] = {"stage1", "stage2", "stage3", "stage4"};
        for (int t = 0; t < 4; t++) {
            fkd_value v = fkd_graph_find(g, taps[t]);
            assert_true(v >= 0);
            assert_int_equal(fkd_graph_shape(g, v, &nd, dims), FKD_OK);
            assert_int_equal(dims[2], 56 >> t); /* 56, 28, 14, 7 */
        }
        fkd_graph_free(g);
    }
}

static void test_arch_registry(void **state)
{
    (void)state;
    assert_non_null(fkd_arch_find("r100"));
    assert_string_equal(fkd_arch_find("r100")->name, "iresnet100");
    assert_string_equal(fkd_arch_find("mobilefacenet")->name, "mbf");
    assert_ptr_equal(fkd_arch_find("resnet18"), fkd_arch_find("iresnet18"));
    assert_null(fkd_arch_find("resnet"));
    assert_non_null(strstr(fkd_last_error(), "unknown architecture 'resnet'"));
    assert_null(fkd_arch_find(""));
    for (int i = 0; i < fkd_arch_count(); i++) assert_ptr_equal(fkd_arch_find(fkd_arch_at(i)->name), fkd_arch_at(i));
    assert_null(fkd_arch_at(fkd_arch_count()));

    fkd_graph_config cfg = {.batch = 1, .mode = FKD_GRAPH_INFER};
    fkd_graph *g;
    fkd_value emb;
    assert_int_equal(fkd_graph_create(&g, &cfg), FKD_OK);
    fkd_value x = fkd_graph_input(g, "input", 3, 112, 112);
    assert_int_equal(fkd_arch_build(g, "vgg16", NULL, x, &emb), FKD_ERR_NOTFOUND);
    fkd_arch_opts bad = {.dropout = 0.5f};
    assert_int_equal(fkd_arch_build(g, "mbf", &bad, x, &emb), FKD_ERR_ARG);
    assert_non_null(strstr(fkd_last_error(), "building mbf: mbf: MobileFaceNet has no dropout"));
    fkd_graph_free(g);
}

/* ---- model files ---------------------------------------------------------------------- */

/* A full-size mbf (INFER, batch 1, seeded random init) saved to `path`. */
static fkd_graph *make_mbf(const char *path, uint64_t seed, fkd_value *emb)
{
    fkd_graph_config cfg = {.batch = 1, .mode = FKD_GRAPH_INFER, .seed = seed};
    fkd_graph *g;
    assert_int_equal(fkd_graph_create(&g, &cfg), FKD_OK);
    fkd_value x = fkd_graph_input(g, "input", 3, 112, 112);
    assert_int_equal(fkd_arch_build(g, "mbf", NULL, x, emb), FKD_OK);
    assert_int_equal(fkd_graph_finalize(g), FKD_OK);
    if (path) {
        fkd_model_meta meta = {.architecture = "mbf", .embedding_size = 512, .producer = "test_models"};
        assert_int_equal(fkd_model_save(g, path, &meta), FKD_OK);
    }
    return g;
}

static void tmp_path(char *out, const char *tag)
{
    snprintf(out, 96, "/tmp/fkd_test_models_%ld_%s.safetensors", (long)getpid(), tag);
}

static void test_save_load_round_trip(void **state)
{
    (void)state;
    char path[96];
    tmp_path(path, "rt");
    fkd_value emb_a, emb_b;
    fkd_graph *a = make_mbf(path, 11, &emb_a);

    fkd_safetensors st;
    assert_int_equal(fkd_safetensors_read(&st, path), FKD_OK);
    fkd_model_meta meta;
    assert_int_equal(fkd_model_meta_from(&st, &meta), FKD_OK);
    assert_string_equal(meta.architecture, "mbf");
    assert_int_equal(meta.embedding_size, 512);
    assert_string_equal(meta.producer, "test_models");

    /* Opened from the file (different init seed): every tensor identical. */
    fkd_graph_config cfg = {.batch = 1, .mode = FKD_GRAPH_INFER, .seed = 99};
    fkd_graph *b;
    assert_int_equal(fkd_model_open(&b, &st, NULL, &cfg, &emb_b), FKD_OK);
    fkd_param *pa, *pb;
    int na, nb;
    assert_int_equal(fkd_graph_params(a, &pa, &na), FKD_OK);
    assert_int_equal(fkd_graph_params(b, &pb, &nb), FKD_OK);
    assert_int_equal(na, nb);
    for (int i = 0; i < na; i++) {
        assert_string_equal(pa[i].name, pb[i].name);
        float *va = malloc((size_t)pa[i].numel * sizeof(float)), *vb = malloc((size_t)pa[i].numel * sizeof(float));
        assert_int_equal(fkd_graph_param_read(a, i, va), FKD_OK);
        assert_int_equal(fkd_graph_param_read(b, i, vb), FKD_OK);
        assert_memory_equal(va, vb, (size_t)pa[i].numel * sizeof(float));
        const fkd_st_tensor *t = fkd_safetensors_find(&st, pa[i].name);
        assert_non_null(t);
        assert_int_equal(t->dtype, FKD_ST_F32);
        free(va);
        free(vb);
    }
    assert_int_equal(st.count, na); /* parameters and buffers, nothing else */

    /* Same weights, same input → same embedding. */
    float *x = malloc(sizeof(float) * 3 * 112 * 112), ea[512], eb[512];
    for (int i = 0; i < 3 * 112 * 112; i++) x[i] = sinf(0.01f * (float)i);
    assert_int_equal(fkd_graph_set_input(a, "input", x), FKD_OK);
    assert_int_equal(fkd_graph_set_input(b, "input", x), FKD_OK);
    assert_int_equal(fkd_graph_forward(a), FKD_OK);
    assert_int_equal(fkd_graph_forward(b), FKD_OK);
    assert_int_equal(fkd_graph_read(a, emb_a, ea), FKD_OK);
    assert_int_equal(fkd_graph_read(b, emb_b, eb), FKD_OK);
    assert_memory_equal(ea, eb, sizeof ea);
    free(x);
    fkd_graph_free(a);
    fkd_graph_free(b);
    fkd_safetensors_free(&st);
    unlink(path);
}

/* A narrow variant saved by facekd records width and blocks, so it reopens as itself. */
static void test_narrow_save_reopen(void **state)
{
    (void)state;
    fkd_safetensors st, back;
    assert_int_equal(fkd_safetensors_read(&st, FIXTURES "mbf_narrow.safetensors"), FKD_OK);
    fkd_value emb;
    fkd_graph *a = build_fixture_graph(&st, &emb), *b;
    char path[96];
    tmp_path(path, "narrow");
    fkd_model_meta meta = {.architecture = "mbf", .embedding_size = 16, .producer = "test_models", .width = 8,
                           .blocks = {1, 2, 1, 1}};
    /* As a training checkpoint would: extra tensors and metadata, ignored by loading. */
    const float moment[3] = {1, 2, 3};
    const int64_t d3[1] = {3};
    const fkd_st_entry extra[1] = {{"optim.m.layers.0.layers.0.weight", FKD_ST_F32, 1, d3, moment}};
    const fkd_st_meta step[2] = {{"step", "1234"}, {"producer", "again"}};
    assert_int_equal(fkd_model_save_with(a, path, &meta, extra, 1, step, 2), FKD_ERR_ARG);
    assert_non_null(strstr(fkd_last_error(), "metadata key 'producer' given twice"));
    assert_int_equal(fkd_model_save_with(a, path, &meta, extra, 1, step, 1), FKD_OK);
    assert_int_equal(fkd_safetensors_read(&back, path), FKD_OK);
    fkd_model_meta got;
    assert_int_equal(fkd_model_meta_from(&back, &got), FKD_OK);
    assert_int_equal(got.width, 8);
    assert_int_equal(got.blocks[1], 2);
    assert_int_equal(got.embedding_size, 16);
    assert_string_equal(fkd_safetensors_meta(&back, "step"), "1234");
    assert_non_null(fkd_safetensors_find(&back, "optim.m.layers.0.layers.0.weight"));
    fkd_graph_config cfg = {.batch = 1, .mode = FKD_GRAPH_INFER};
    assert_int_equal(fkd_model_open(&b, &back, NULL, &cfg, &emb), FKD_OK);
    /* Every saved tensor equals the fixture's weight it came from (fp16-exact values). */
    int compared = 0;
    for (int i = 0; i < back.count; i++) {
        const fkd_st_tensor *t = &back.tensors[i], *ref = fkd_safetensors_find(&st, t->name);
        if (strncmp(t->name, "optim.", 6) == 0) continue;
        assert_non_null(ref);
        float *x = tensor_f32(&back, t->name, NULL), *y = tensor_f32(&st, t->name, NULL);
        assert_memory_equal(x, y, (size_t)t->numel * sizeof(float));
        free(x);
        free(y);
        compared++;
    }
    assert_true(compared > 100);
    fkd_graph_free(a);
    fkd_graph_free(b);
    fkd_safetensors_free(&st);
    fkd_safetensors_free(&back);
    unlink(path);
}

/* `facekd info --arch r50 --json` reports the exact counts. */
static void test_cli_info_json(void **state)
{
    (void)state;
    const char *build = getenv("BUILD") ? getenv("BUILD") : "build";
    char cmd[256], out[4096] = "";
    snprintf(cmd, sizeof cmd, "%s/facekd info --arch r50 --json", build);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    assert_int_equal(WEXITSTATUS(pclose(p)), 0);
    assert_non_null(strstr(out, "\"architecture\": \"iresnet50\""));
    assert_non_null(strstr(out, "\"parameters\": 43590848, \"macs\": 6309330944"));
    assert_non_null(strstr(out, "\"stage4\": [512, 7, 7], \"embedding\": [512]"));
}

typedef enum { EDIT_DROP, EDIT_SHAPE, EDIT_I64, EDIT_NAN, EDIT_META_ARCH, EDIT_NO_META, EDIT_BAD_BLOCKS } edit_kind;

/* Rewrites `src` to `dst` with one change to tensor `victim` (or to the metadata). */
static void rewrite(const fkd_safetensors *src, const char *dst, const char *victim, edit_kind kind)
{
    fkd_st_entry *e = calloc((size_t)src->count, sizeof *e);
    int64_t *dims = calloc((size_t)src->count * FKD_ST_MAX_DIMS, sizeof *dims);
    void *scratch = NULL;
    int n = 0;
    for (int i = 0; i < src->count; i++) {
        const fkd_st_tensor *t = &src->tensors[i];
        int hit = strcmp(t->name, victim) == 0;
        if (hit && kind == EDIT_DROP) continue;
        int64_t *d = dims + (size_t)n * FKD_ST_MAX_DIMS;
        memcpy(d, t->dims, sizeof t->dims);
        e[n] = (fkd_st_entry){t->name, t->dtype, t->ndims, d, t->data};
        if (hit && kind == EDIT_SHAPE) { /* same bytes, another shape */
            d[0] = t->dims[0] / 2;
            d[1] = t->dims[1] * 2;
        } else if (hit && kind == EDIT_I64) {
            e[n].dtype = FKD_ST_I64;
            e[n].data = scratch = calloc((size_t)t->numel, 8);
        } else if (hit && kind == EDIT_NAN) {
            float *v = scratch = malloc(t->nbytes);
            memcpy(v, t->data, t->nbytes);
            v[t->numel / 2] = NAN;
            e[n].data = v;
        }
        n++;
    }
    fkd_st_meta meta[4] = {{"architecture", kind == EDIT_META_ARCH ? "resnet9000" : "mbf"},
                           {"embedding_size", "512"},
                           {"producer", "test_models"},
                           {"blocks", "1,4,x,2"}};
    int n_meta = kind == EDIT_NO_META ? 0 : kind == EDIT_BAD_BLOCKS ? 4 : 3;
    assert_int_equal(fkd_safetensors_write(dst, e, n, meta, n_meta), FKD_OK);
    free(scratch);
    free(dims);
    free(e);
}

/* Opening `path` as mbf (or `arch`) fails with `status` and every needle in the message. */
static void expect_open_fails(const char *path, const char *arch, fkd_status status, const char *n1, const char *n2)
{
    fkd_safetensors st;
    fkd_status s = fkd_safetensors_read(&st, path);
    fkd_graph *g = (fkd_graph *)1;
    fkd_value emb;
    fkd_graph_config cfg = {.batch = 1, .mode = FKD_GRAPH_INFER};
    if (s == FKD_OK) {
        s = fkd_model_open(&g, &st, arch, &cfg, &emb);
        assert_null(g);
    }
    fkd_safetensors_free(&st);
    const char *msg = fkd_last_error();
    print_message("  expected error: %s\n", msg);
    if (s != status) fail_msg("status %d, expected %d (%s)", s, status, msg);
    if (!strstr(msg, path) || (n1 && !strstr(msg, n1)) || (n2 && !strstr(msg, n2)))
        fail_msg("message \"%s\" lacks the file or \"%s\"/\"%s\"", msg, n1 ? n1 : "", n2 ? n2 : "");
}

static void test_bad_model_files(void **state)
{
    (void)state;
    char good[96], bad[96];
    tmp_path(good, "good");
    tmp_path(bad, "bad");
    fkd_value emb;
    fkd_graph_free(make_mbf(good, 3, &emb));
    fkd_safetensors src;
    assert_int_equal(fkd_safetensors_read(&src, good), FKD_OK);

    expect_open_fails("/nonexistent/model.safetensors", NULL, FKD_ERR_IO, "cannot open", NULL);

    rewrite(&src, bad, "conv_sep.layers.0.weight", EDIT_DROP);
    expect_open_fails(bad, NULL, FKD_ERR_FORMAT, "tensor 'conv_sep.layers.0.weight' is missing", NULL);
    rewrite(&src, bad, "features.layers.2.weight", EDIT_SHAPE);
    expect_open_fails(bad, NULL, FKD_ERR_FORMAT, "tensor 'features.layers.2.weight': shape [256, 1024]",
                      "needs [512, 512]");
    rewrite(&src, bad, "layers.3.layers.2.layers.1.layers.1.running_var", EDIT_I64);
    expect_open_fails(bad, NULL, FKD_ERR_FORMAT, "tensor 'layers.3.layers.2.layers.1.layers.1.running_var'",
                      "dtype I64");
    rewrite(&src, bad, "layers.0.layers.0.weight", EDIT_NAN);
    expect_open_fails(bad, NULL, FKD_ERR_NUMERIC, "tensor 'layers.0.layers.0.weight'", "not finite");
    rewrite(&src, bad, "", EDIT_BAD_BLOCKS);
    expect_open_fails(bad, NULL, FKD_ERR_FORMAT, "__metadata__ blocks \"1,4,x,2\"", "positive integers");
    rewrite(&src, bad, "", EDIT_META_ARCH);
    expect_open_fails(bad, NULL, FKD_ERR_NOTFOUND, "unknown architecture 'resnet9000'", NULL);

    /* No metadata: refused without --arch, loads with it. */
    rewrite(&src, bad, "", EDIT_NO_META);
    expect_open_fails(bad, NULL, FKD_ERR_ARG, "no architecture", "--arch");
    expect_open_fails(bad, "iresnet18", FKD_ERR_FORMAT, "tensor 'fc.weight' is missing", "not an iresnet18 model");
    fkd_safetensors st;
    assert_int_equal(fkd_safetensors_read(&st, bad), FKD_OK);
    fkd_graph *g;
    fkd_graph_config cfg = {.batch = 1, .mode = FKD_GRAPH_INFER};
    assert_int_equal(fkd_model_open(&g, &st, "mobilefacenet", &cfg, &emb), FKD_OK);
    fkd_graph_free(g);
    fkd_safetensors_free(&st);

    /* Metadata names another architecture than --arch. */
    expect_open_fails(good, "r50", FKD_ERR_ARG, "architecture is 'mbf', not 'r50'", NULL);

    /* Truncated (data cut short) and corrupt header, as files. */
    uint8_t *bytes;
    size_t size;
    assert_int_equal(fkd_file_read_all(good, &bytes, &size), FKD_OK);
    assert_int_equal(fkd_atomic_write(bad, bytes, size - 100), FKD_OK);
    expect_open_fails(bad, NULL, FKD_ERR_FORMAT, "outside the", "data section");
    bytes[8 + 37] = '}'; /* the ',' after "architecture":"mbf" */
    assert_int_equal(fkd_atomic_write(bad, bytes, size), FKD_OK);
    expect_open_fails(bad, NULL, FKD_ERR_FORMAT, "header byte", NULL);
    assert_int_equal(fkd_atomic_write(bad, bytes, 6), FKD_OK);
    expect_open_fails(bad, NULL, FKD_ERR_FORMAT, "too short", NULL);
    free(bytes);

    /* The CLI turns the same errors into exit status 1, and a good file into 0. */
    const char *build = getenv("BUILD") ? getenv("BUILD") : "build";
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s/facekd info --model %s >/dev/null 2>&1", build, bad);
    assert_int_equal(WEXITSTATUS(system(cmd)), 1);
    snprintf(cmd, sizeof cmd, "%s/facekd info --model %s --json >/dev/null 2>&1", build, good);
    assert_int_equal(WEXITSTATUS(system(cmd)), 0);
    snprintf(cmd, sizeof cmd, "%s/facekd info --arch nonsense >/dev/null 2>&1", build);
    assert_int_equal(WEXITSTATUS(system(cmd)), 1);

    fkd_safetensors_free(&src);
    unlink(good);
    unlink(bad);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_iresnet_matches_pytorch), cmocka_unit_test(test_mbf_matches_pytorch),
        cmocka_unit_test(test_mbf_large_matches_pytorch),
        cmocka_unit_test(test_full_size_counts),        cmocka_unit_test(test_arch_registry),
        cmocka_unit_test(test_save_load_round_trip),    cmocka_unit_test(test_bad_model_files),
        cmocka_unit_test(test_narrow_save_reopen),      cmocka_unit_test(test_cli_info_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
