/* ONNX import and export (lib/io/onnx_import, onnx_export, model_any):
 *  - fixtures exported by PyTorch 1.13 (scripts/gen_onnx_fixtures.py): narrow IResNet
 *    and MobileFaceNet at opsets 11 and 13, arcface_torch's and the model zoo's layouts,
 *    a small net covering the other ops at opsets 9 and 17, typed initializer fields; each
 *    run at batch 3 and compared with PyTorch's float32 output;
 *  - export: narrow students exported at opsets 11, 13, 17, imported back (max abs
 *    difference of the embeddings <= 1e-4), file layout (input "input" with a symbolic
 *    batch, output "embedding", every batch norm folded for MobileFaceNet, no Reshape,
 *    metadata);
 *  - ONNX Runtime (onnxruntime-node, through scripts/ort_check.cjs) on the exported
 *    model at batch 7 and 1 against facekd's embeddings; skipped, never passed, when node
 *    or the package is missing (scripts/check_onnxruntime.sh installs it);
 *  - fkd_model_open_any on both formats;
 *  - bad files: truncated, unsupported op, missing initializer, inconsistent shapes,
 *    unsupported opset, random byte mutations — an error naming the file (and the node
 *    and op where there is one), never a crash.
 * Comparisons use the normalised error max|got - want| / max|want|. */
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
#include "core/rng.h"
#include "io/model.h"
#include "io/npy.h"
#include "io/model_any.h"
#include "io/onnx.pb-c.h"
#include "io/onnx_export.h"
#include "io/onnx_import.h"
#include "io/safetensors.h"

#define FIXTURES "tests/fixtures/onnx/"
#define BATCH 3
/* fp32 engine vs PyTorch fp32: both round differently (folding, summation order). */
#define TOL 1e-4

static double norm_err(const float *got, const float *want, int64_t n)
{
    double err = 0, scale = 1e-12;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (!(d <= err)) err = d;
        if (fabs(want[i]) > scale) scale = fabs(want[i]);
    }
    return err / scale;
}

static float *load_tensor(const char *path, const char *name, int64_t *numel)
{
    fkd_safetensors st;
    if (fkd_safetensors_read(&st, path) != FKD_OK) fail_msg("%s", fkd_last_error());
    const fkd_st_tensor *t = fkd_safetensors_find(&st, name);
    if (!t) fail_msg("%s: no tensor '%s'", path, name);
    float *out = malloc((size_t)t->numel * sizeof *out);
    fkd_st_tensor_to_f32(t, out);
    *numel = t->numel;
    fkd_safetensors_free(&st);
    return out;
}

/* Imports `name`.onnx at batch 3, runs the fixture input, compares with `ref`. */
static void check_fixture(const char *name, const char *ref, const char *input_name, int64_t opset, bool self_norm)
{
    char path[256], refpath[256];
    snprintf(path, sizeof path, FIXTURES "%s.onnx", name);
    snprintf(refpath, sizeof refpath, FIXTURES "%s.ref.safetensors", ref);
    int64_t nx, ny;
    float *x = load_tensor(FIXTURES "input.safetensors", "input", &nx);
    float *want = load_tensor(refpath, "output", &ny);
    assert_int_equal(nx, BATCH * 3 * 112 * 112);
    fkd_graph_config cfg = {.batch = BATCH, .mode = FKD_GRAPH_INFER};
    fkd_graph *g;
    fkd_value emb;
    fkd_onnx_info info;
    if (fkd_onnx_import(&g, path, &cfg, &emb, &info) != FKD_OK) fail_msg("%s", fkd_last_error());
    assert_string_equal(info.input_name, input_name);
    assert_int_equal(info.opset, opset);
    assert_int_equal(info.self_normalising, self_norm);
    assert_int_equal(info.embedding_size * BATCH, ny);
    int nd, dims[4];
    assert_int_equal(fkd_graph_shape(g, emb, &nd, dims), FKD_OK);
    assert_int_equal(nd, 2);
    assert_int_equal(dims[0], BATCH);
    float *got = malloc((size_t)ny * sizeof *got);
    assert_int_equal(fkd_graph_set_input(g, "input", x), FKD_OK);
    assert_int_equal(fkd_graph_forward(g), FKD_OK);
    assert_int_equal(fkd_graph_read(g, emb, got), FKD_OK);
    double e = norm_err(got, want, ny);
    print_message("  %-14s opset %2lld, %3d ONNX nodes -> %3d engine nodes (%d folded), normalised error %.2e\n", name,
                  (long long)info.opset, info.onnx_nodes, info.engine_nodes, info.folded, e);
    assert_true(e <= TOL);
    free(got);
    free(x);
    free(want);
    fkd_graph_free(g);
}

static void test_iresnet_op11(void **state)
{
    (void)state;
    check_fixture("iresnet_op11", "iresnet_op11", "data", 11, false);
}

static void test_iresnet_zoo13(void **state)
{
    (void)state;
    check_fixture("iresnet_zoo13", "iresnet_zoo13", "input.1", 13, false);
}

static void test_mbf(void **state)
{
    (void)state;
    check_fixture("mbf_op11", "mbf_op11", "data", 11, false);
    check_fixture("mbf_op13", "mbf_op13", "data", 13, false);
}

static void test_ops(void **state)
{
    (void)state;
    check_fixture("ops_op9", "ops_op9", "data", 9, true);
    check_fixture("ops_op17", "ops_op17", "data", 17, true);
}

static void test_typed_fields(void **state)
{
    (void)state;
    check_fixture("typed_op11", "mbf_op11", "data", 11, false);
}

/* Identity, Dropout(ratio input), Constant value_float, float16 and double initializers,
 * auto_pad SAME_UPPER, constant − value, Unsqueeze with attribute axes, Cast, Squeeze,
 * 2-D Mul, Gemm transB 0 with alpha/beta, 2-D BatchNormalization, 2-D PRelu. */
static void test_handmade(void **state)
{
    (void)state;
    check_fixture("handmade_op12", "handmade_op12", "x", 12, false);
}

/* ---- export ---------------------------------------------------------------------------- */

#define STUDENTS "tests/fixtures/models/"

static fkd_graph *open_student(const char *file, int batch, fkd_value *emb)
{
    fkd_graph_config cfg = {.batch = batch, .mode = FKD_GRAPH_INFER};
    fkd_graph *g;
    if (fkd_model_open_any(file, NULL, &cfg, &g, emb) != FKD_OK) fail_msg("%s", fkd_last_error());
    return g;
}

static char *temp_dir(void)
{
    static char dir[64];
    snprintf(dir, sizeof dir, "/tmp/fkd_test_onnx_XXXXXX");
    if (!mkdtemp(dir)) fail_msg("mkdtemp failed");
    return dir;
}

static Onnx__ModelProto *parse_file(const char *path, uint8_t **buf)
{
    size_t size;
    if (fkd_file_read_all(path, buf, &size) != FKD_OK) fail_msg("%s", fkd_last_error());
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, size, *buf);
    assert_non_null(m);
    return m;
}

static const char *meta_value(const Onnx__ModelProto *m, const char *key)
{
    for (size_t i = 0; i < m->n_metadata_props; i++)
        if (!strcmp(m->metadata_props[i]->key, key)) return m->metadata_props[i]->value;
    return NULL;
}

/* Exports `student`, checks the layout, imports it back and compares. */
static void export_case(const char *student, const char *arch, int opset, int expect_bn)
{
    char path[128], *dir = temp_dir();
    snprintf(path, sizeof path, "%s/out.onnx", dir);
    fkd_value emb;
    fkd_graph *g = open_student(student, BATCH, &emb);
    fkd_onnx_export_opts opts = {.opset = opset, .architecture = arch};
    if (fkd_onnx_export(g, emb, path, &opts) != FKD_OK) fail_msg("%s", fkd_last_error());
    double diff = -1;
    if (fkd_onnx_check_roundtrip(g, emb, path, 7, &diff) != FKD_OK) fail_msg("%s", fkd_last_error());
    int nd, dims[4];
    assert_int_equal(fkd_graph_shape(g, emb, &nd, dims), FKD_OK);
    fkd_graph_free(g);

    uint8_t *buf;
    Onnx__ModelProto *m = parse_file(path, &buf);
    const Onnx__GraphProto *gr = m->graph;
    int bn = 0, reshape = 0, prelu = 0;
    for (size_t i = 0; i < gr->n_node; i++) {
        bn += !strcmp(gr->node[i]->op_type, "BatchNormalization");
        reshape += !strcmp(gr->node[i]->op_type, "Reshape");
        prelu += !strcmp(gr->node[i]->op_type, "PRelu");
    }
    print_message("  export %-40s opset %d: %zu nodes (%d PRelu, %d BatchNormalization), round trip max |diff| %.2e\n",
                  student, opset, gr->n_node, prelu, bn, diff);
    assert_true(diff <= 1e-4);
    assert_int_equal(m->opset_import[0]->version, opset);
    assert_int_equal(bn, expect_bn);
    assert_int_equal(reshape, 0);
    assert_true(prelu > 0);
    assert_int_equal(gr->n_input, 1);
    assert_string_equal(gr->input[0]->name, "input");
    const Onnx__TensorShapeProto *sh = gr->input[0]->type->tensor_type->shape;
    assert_int_equal(sh->n_dim, 4);
    assert_int_equal(sh->dim[0]->value_case, ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM);
    assert_int_equal(sh->dim[1]->dim_value, 3);
    assert_string_equal(gr->output[0]->name, "embedding");
    assert_int_equal(gr->output[0]->type->tensor_type->shape->dim[1]->dim_value, dims[1]);
    assert_string_equal(meta_value(m, "architecture"), arch);
    char emb_size[16];
    snprintf(emb_size, sizeof emb_size, "%d", dims[1]);
    assert_string_equal(meta_value(m, "embedding_size"), emb_size);
    assert_string_equal(meta_value(m, "preprocessing"), FKD_ONNX_PREPROCESSING);
    onnx__model_proto__free_unpacked(m, NULL);
    free(buf);
    unlink(path);
    rmdir(dir);
}

static void test_export_roundtrip(void **state)
{
    (void)state;
    /* MobileFaceNet: every BN follows a conv or the linear layer: all folded. IResNet:
     * bn1 of each block (before conv1) and bn2 (after the last add) stay: 5 blocks + 1. */
    export_case(STUDENTS "mbf_narrow.safetensors", "mbf", 11, 0);
    export_case(STUDENTS "mbf_narrow.safetensors", "mbf", 13, 0);
    export_case(STUDENTS "mbf_large_narrow.safetensors", "mbf_large", 17, 0);
    export_case(STUDENTS "iresnet_narrow.safetensors", "iresnet18", 13, 6);
}

/* ---- ONNX Runtime ---------------------------------------------------------------------------- */

static void test_onnxruntime(void **state)
{
    (void)state;
    const char *dir = getenv("FKD_ORT_DIR") ? getenv("FKD_ORT_DIR") : "build/ort";
    char pkg[512];
    snprintf(pkg, sizeof pkg, "%s/node_modules/onnxruntime-node/package.json", dir);
    if (system("command -v node >/dev/null 2>&1") != 0 || access(pkg, R_OK) != 0) {
        print_message("  ONNX Runtime check skipped: node or %s missing (bash scripts/check_onnxruntime.sh)\n", pkg);
        skip();
    }
    enum { N = 7 };
    char *tmp = temp_dir(), model[128], casef[128];
    snprintf(model, sizeof model, "%s/mbf.onnx", tmp);
    snprintf(casef, sizeof casef, "%s/case.safetensors", tmp);
    fkd_value emb;
    fkd_graph *g = open_student(STUDENTS "mbf_narrow.safetensors", N, &emb);
    fkd_onnx_export_opts opts = {.opset = 13, .architecture = "mbf"};
    if (fkd_onnx_export(g, emb, model, &opts) != FKD_OK) fail_msg("%s", fkd_last_error());
    int nd, dims[4];
    assert_int_equal(fkd_graph_shape(g, emb, &nd, dims), FKD_OK);
    size_t nx = (size_t)N * 3 * 112 * 112, ne = (size_t)N * dims[1];
    float *x = malloc(nx * sizeof *x), *y = malloc(ne * sizeof *y);
    fkd_rng rng;
    fkd_rng_seed(&rng, 99, 1);
    for (size_t i = 0; i < nx; i++) x[i] = (float)(2 * fkd_rng_uniform(&rng) - 1);
    fkd_graph_free(g);
    /* The reference is what a user gets from `facekd embed` on the same batch (.npy). */
    char xin[160], yout[160], embed[1024];
    snprintf(xin, sizeof xin, "%s/x.npy", tmp);
    snprintf(yout, sizeof yout, "%s/y.npy", tmp);
    const int64_t xshape[4] = {N, 3, 112, 112};
    assert_int_equal(fkd_npy_write(xin, FKD_NPY_F32, x, 4, xshape), FKD_OK);
    const char *build = getenv("BUILD");
    snprintf(embed, sizeof embed, "%s/facekd embed --model %s --input '%s' --out '%s' 2>/dev/null",
             build && *build ? build : "build", STUDENTS "mbf_narrow.safetensors", xin, yout);
    assert_int_equal(system(embed), 0);
    fkd_npy_array ya;
    assert_int_equal(fkd_npy_read(yout, FKD_NPY_F32, &ya), FKD_OK);
    assert_int_equal(ya.info.dims[0], N);
    assert_int_equal(ya.info.dims[1], dims[1]);
    memcpy(y, ya.data, ne * sizeof *y);
    fkd_npy_free(&ya);
    unlink(xin);
    unlink(yout);
    const int64_t xd[4] = {N, 3, 112, 112}, yd[2] = {N, dims[1]};
    const fkd_st_entry entries[2] = {{"input", FKD_ST_F32, 4, xd, x}, {"embedding", FKD_ST_F32, 2, yd, y}};
    if (fkd_safetensors_write(casef, entries, 2, NULL, 0) != FKD_OK) fail_msg("%s", fkd_last_error());
    free(x);
    free(y);
    char cmd[1024], line[1024] = "";
    snprintf(cmd, sizeof cmd, "node scripts/ort_check.cjs '%s' '%s' '%s' 1e-4", dir, model, casef);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    while (fgets(line + strlen(line), (int)(sizeof line - strlen(line)), p) && strlen(line) < sizeof line - 1) {}
    int status = pclose(p);
    unlink(model);
    unlink(casef);
    rmdir(tmp);
    print_message("  ONNX Runtime: %s", line);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 77) skip();
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* ---- model_any ------------------------------------------------------------------------------- */

static void test_model_any(void **state)
{
    (void)state;
    fkd_graph_config cfg = {.batch = 2, .mode = FKD_GRAPH_INFER};
    fkd_graph *g;
    fkd_value emb;
    fkd_model_any_info info;
    assert_int_equal(fkd_model_format_of("a/b.ONNX"), FKD_MODEL_ONNX);
    assert_int_equal(fkd_model_format_of("a/b.safetensors"), FKD_MODEL_SAFETENSORS);
    assert_int_equal(fkd_model_open_any_info(FIXTURES "mbf_op11.onnx", NULL, &cfg, &g, &emb, &info), FKD_OK);
    assert_int_equal(info.format, FKD_MODEL_ONNX);
    assert_int_equal(info.embedding_size, 16);
    assert_string_equal(info.onnx.input_name, "data");
    fkd_graph_free(g);
    assert_int_equal(fkd_model_open_any_info(STUDENTS "mbf_narrow.safetensors", NULL, &cfg, &g, &emb, &info), FKD_OK);
    assert_int_equal(info.format, FKD_MODEL_SAFETENSORS);
    assert_string_equal(info.architecture, "mbf");
    assert_int_equal(info.embedding_size, 16);
    /* an exported file carries its architecture: a different --arch is refused */
    char path[128], *dir = temp_dir();
    snprintf(path, sizeof path, "%s/m.onnx", dir);
    fkd_onnx_export_opts opts = {.architecture = "mbf"};
    assert_int_equal(fkd_onnx_export(g, emb, path, &opts), FKD_OK);
    fkd_graph_free(g);
    assert_int_equal(fkd_model_open_any(path, "mbf", &cfg, &g, &emb), FKD_OK);
    fkd_graph_free(g);
    assert_int_not_equal(fkd_model_open_any(path, "iresnet50", &cfg, &g, &emb), FKD_OK);
    assert_null(g);
    assert_non_null(strstr(fkd_last_error(), "architecture is 'mbf'"));
    /* an unwritable destination is an error naming it, and nothing is left behind */
    assert_int_equal(fkd_model_open_any(STUDENTS "mbf_narrow.safetensors", NULL, &cfg, &g, &emb), FKD_OK);
    assert_int_not_equal(fkd_onnx_export(g, emb, "/nonexistent_dir/x.onnx", &opts), FKD_OK);
    assert_non_null(strstr(fkd_last_error(), "/nonexistent_dir/x.onnx"));
    opts.opset = 8;
    assert_int_equal(fkd_onnx_export(g, emb, path, &opts), FKD_ERR_ARG);
    fkd_graph_free(g);
    /* ONNX files are inference graphs only */
    cfg.mode = FKD_GRAPH_TRAIN;
    assert_int_not_equal(fkd_model_open_any(path, NULL, &cfg, &g, &emb), FKD_OK);
    assert_null(g);
    unlink(path);
    rmdir(dir);
}

/* ---- bad files ------------------------------------------------------------------------------- */

typedef void (*mutator)(Onnx__ModelProto *m);

static Onnx__NodeProto *find_node(Onnx__ModelProto *m, const char *op)
{
    for (size_t i = 0; i < m->graph->n_node; i++)
        if (!strcmp(m->graph->node[i]->op_type, op)) return m->graph->node[i];
    fail_msg("no %s node", op);
    return NULL;
}

static void mut_op(Onnx__ModelProto *m)
{
    strcpy(find_node(m, "GlobalAveragePool")->op_type, "Softmax"); /* in place: the parser owns the string */
}

static void mut_missing_init(Onnx__ModelProto *m)
{
    /* drop the initializer a Gemm reads as its weight */
    const char *w = find_node(m, "Gemm")->input[1];
    Onnx__GraphProto *g = m->graph;
    for (size_t i = 0; i < g->n_initializer; i++)
        if (!strcmp(g->initializer[i]->name, w)) {
            Onnx__TensorProto *t = g->initializer[i];
            g->initializer[i] = g->initializer[g->n_initializer - 1];
            g->initializer[g->n_initializer - 1] = t;
            g->n_initializer--;
            return;
        }
    fail_msg("no initializer %s", w);
}

static void mut_shapes(Onnx__ModelProto *m)
{
    /* the Gemm's weight declared with one input feature too many */
    const char *w = find_node(m, "Gemm")->input[1];
    for (size_t i = 0; i < m->graph->n_initializer; i++)
        if (!strcmp(m->graph->initializer[i]->name, w)) {
            Onnx__TensorProto *t = m->graph->initializer[i];
            t->dims[1] += 1;
            t->raw_data.len += (size_t)t->dims[0] * 4; /* keep data and dims consistent */
        }
}

static void mut_data_size(Onnx__ModelProto *m)
{
    m->graph->initializer[0]->raw_data.len -= 4;
}

static void mut_opset(Onnx__ModelProto *m)
{
    m->opset_import[0]->version = 18;
}

static void mut_conv_groups(Onnx__ModelProto *m)
{
    Onnx__NodeProto *n = find_node(m, "Conv");
    for (size_t i = 0; i < n->n_attribute; i++)
        if (!strcmp(n->attribute[i]->name, "group")) n->attribute[i]->i = 5;
}

/* Applies `mut` to ops_op17.onnx, imports the result: must fail with `code` and a
 * message holding `want`. */
static void bad_case(mutator mut, fkd_status code, const char *want)
{
    uint8_t *buf;
    Onnx__ModelProto *m = parse_file(FIXTURES "ops_op17.onnx", &buf);
    size_t saved_raw = 0;
    Onnx__TensorProto *grown = NULL;
    if (mut == mut_shapes) { /* the grown tensor needs a larger buffer */
        const char *w = find_node(m, "Gemm")->input[1];
        for (size_t i = 0; i < m->graph->n_initializer; i++)
            if (!strcmp(m->graph->initializer[i]->name, w)) grown = m->graph->initializer[i];
        saved_raw = grown->raw_data.len;
    }
    uint8_t *bigger = NULL, *old = NULL;
    if (grown) {
        bigger = calloc(1, saved_raw + (size_t)grown->dims[0] * 4);
        memcpy(bigger, grown->raw_data.data, saved_raw);
        old = grown->raw_data.data;
        grown->raw_data.data = bigger;
    }
    size_t n_init = m->graph->n_initializer;
    mut(m);
    size_t size = onnx__model_proto__get_packed_size(m);
    uint8_t *out = malloc(size);
    onnx__model_proto__pack(m, out);
    /* restore what free_unpacked walks: the parser's own pointers and counts */
    if (grown) grown->raw_data.data = old, grown->raw_data.len = saved_raw;
    free(bigger);
    m->graph->n_initializer = n_init;
    onnx__model_proto__free_unpacked(m, NULL);
    free(buf);
    fkd_graph_config cfg = {.batch = 2, .mode = FKD_GRAPH_INFER};
    fkd_graph *g = (fkd_graph *)1;
    fkd_value emb;
    fkd_status st = fkd_onnx_import_bytes(&g, "bad.onnx", out, size, &cfg, &emb, NULL);
    free(out);
    print_message("  %-40s -> %s\n", want, fkd_last_error());
    assert_int_equal(st, code);
    assert_null(g);
    assert_non_null(strstr(fkd_last_error(), "bad.onnx"));
    assert_non_null(strstr(fkd_last_error(), want));
}

static void test_bad_files(void **state)
{
    (void)state;
    bad_case(mut_op, FKD_ERR_UNSUPPORTED, "(Softmax): unsupported op");
    bad_case(mut_shapes, FKD_ERR_FORMAT, "(Gemm): inconsistent shapes");
    bad_case(mut_data_size, FKD_ERR_FORMAT, "initializer 'scale': shape (16, 1, 1) needs 16 values, the tensor holds 15");
    bad_case(mut_opset, FKD_ERR_UNSUPPORTED, "opset 18");
    bad_case(mut_conv_groups, FKD_ERR_FORMAT, "(Conv): inconsistent shapes");

    /* truncated file */
    uint8_t *buf;
    size_t size;
    assert_int_equal(fkd_file_read_all(FIXTURES "ops_op17.onnx", &buf, &size), FKD_OK);
    fkd_graph_config cfg = {.batch = 2, .mode = FKD_GRAPH_INFER};
    fkd_graph *g;
    fkd_value emb;
    assert_int_equal(fkd_onnx_import_bytes(&g, "cut.onnx", buf, size / 2, &cfg, &emb, NULL), FKD_ERR_FORMAT);
    assert_non_null(strstr(fkd_last_error(), "cut.onnx: not an ONNX model"));
    free(buf);
    assert_int_not_equal(fkd_onnx_import(&g, FIXTURES "no_such_file.onnx", &cfg, &emb, NULL), FKD_OK);
    assert_null(g);
}

static void test_missing_initializer(void **state)
{
    (void)state;
    bad_case(mut_missing_init, FKD_ERR_FORMAT, "(Gemm): input 'gemm.weight' is not an initializer");
}

/* Random byte mutations of a small file: every result is a graph or an error. */
static void test_mutations(void **state)
{
    (void)state;
    uint8_t *orig;
    size_t size;
    assert_int_equal(fkd_file_read_all(FIXTURES "ops_op9.onnx", &orig, &size), FKD_OK);
    uint8_t *buf = malloc(size);
    fkd_rng rng;
    fkd_rng_seed(&rng, 5, 5);
    fkd_graph_config cfg = {.batch = 1, .mode = FKD_GRAPH_INFER};
    int ok = 0, errors = 0;
    for (int k = 0; k < 300; k++) {
        memcpy(buf, orig, size);
        int flips = 1 + (int)fkd_rng_below(&rng, 4);
        for (int f = 0; f < flips; f++) buf[fkd_rng_below(&rng, size)] = (uint8_t)fkd_rng_below(&rng, 256);
        fkd_graph *g;
        fkd_value emb;
        if (fkd_onnx_import_bytes(&g, "mutated.onnx", buf, size, &cfg, &emb, NULL) == FKD_OK) {
            ok++;
            fkd_graph_free(g);
        } else {
            errors++;
            assert_null(g);
            assert_non_null(strstr(fkd_last_error(), "mutated.onnx"));
        }
    }
    print_message("  300 mutated files: %d imported (weights changed), %d rejected with a message\n", ok, errors);
    free(buf);
    free(orig);
}

/* facekd export end to end: exit codes and the round-trip line. */
static void test_cli_export(void **state)
{
    (void)state;
    const char *build = getenv("BUILD") ? getenv("BUILD") : "build";
    char *dir = temp_dir(), cmd[1024], out[512] = "";
    snprintf(cmd, sizeof cmd, "%s/facekd export --model " STUDENTS "mbf_narrow.safetensors --onnx %s/s.onnx --opset 12", build,
             dir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    assert_int_equal(WEXITSTATUS(pclose(p)), 0);
    print_message("  %s", out);
    assert_non_null(strstr(out, "opset 12"));
    assert_non_null(strstr(out, "round trip: max |embedding difference|"));
    assert_non_null(strstr(out, " ok"));
    snprintf(cmd, sizeof cmd, "%s/facekd export --model x.safetensors >/dev/null 2>&1", build);
    assert_int_equal(WEXITSTATUS(system(cmd)), 2); /* no --onnx */
    snprintf(cmd, sizeof cmd, "%s/facekd export --model a --onnx b --opset 8 >/dev/null 2>&1", build);
    assert_int_equal(WEXITSTATUS(system(cmd)), 2);
    snprintf(cmd, sizeof cmd, "%s/facekd export --model %s/none.safetensors --onnx %s/n.onnx >/dev/null 2>&1", build, dir, dir);
    assert_int_equal(WEXITSTATUS(system(cmd)), 1);
    snprintf(cmd, sizeof cmd, "%s/facekd export --help | grep -q dynamic", build);
    assert_int_equal(WEXITSTATUS(system(cmd)), 0);
    snprintf(cmd, sizeof cmd, "%s/s.onnx", dir);
    unlink(cmd);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_iresnet_op11),     cmocka_unit_test(test_iresnet_zoo13),
        cmocka_unit_test(test_mbf),              cmocka_unit_test(test_ops),
        cmocka_unit_test(test_typed_fields),     cmocka_unit_test(test_handmade),
        cmocka_unit_test(test_export_roundtrip),
        cmocka_unit_test(test_onnxruntime),      cmocka_unit_test(test_model_any),
        cmocka_unit_test(test_bad_files),        cmocka_unit_test(test_missing_initializer),
        cmocka_unit_test(test_mutations),        cmocka_unit_test(test_cli_export),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
