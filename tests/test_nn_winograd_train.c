/* Winograd convolutions in TRAIN graphs (lib/nn/op_conv.c): fp32 dense 3×3 stride-1
 * convolutions on multiples of 16 channels run oneDNN's jit_wino_4x3 for forward,
 * backward-data and backward-weights unless config.direct_conv. A width-16 IResNet-18
 * (every 3×3 stride-1 conv but the stem is a Winograd candidate) must compute what the
 * same graph with direct convolutions computes: the embedding, dL/d(input) and every
 * parameter gradient, for the same parameters, batch and upstream gradient.
 *
 * Batch norm runs in eval mode (running statistics): in training mode, with a batch of 2,
 * its backward subtracts nearly equal means and amplifies any rounding difference, and
 * some gradients are zero up to rounding (a block's bn3 bias whose output only feeds
 * training-mode batch norms), so relative errors there measure cancellation, not the
 * convolutions (measured in training mode: forward 2.9e-6, dx 1.2e-3).
 *
 * Tolerance, as normalised errors ‖a − b‖ / ‖b‖: 1e-4 for each of forward, dx and each
 * parameter gradient. Winograd F(4×4, 3×3) only rounds differently (transforms of 6×6
 * tiles); one 16-channel conv agrees to 5e-7 in y, dx and dW. Measured on the network:
 * forward 9.2e-7, dx 8.4e-7, worst parameter gradient 2.9e-6. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "nn/arch.h"
#include "nn/graph.h"
#include "support/nn_nets.h"

#define OK(expr) assert_int_equal((expr), FKD_OK)

#define BATCH 2
#define SIZE 112
#define FEATURES 32
#define TOL 1e-4

static fkd_graph *build(bool direct_conv, fkd_value *emb)
{
    fkd_graph *g;
    fkd_graph_config cfg = {.batch = BATCH, .mode = FKD_GRAPH_TRAIN, .precision = FKD_PREC_F32,
                            .seed = 5, .direct_conv = direct_conv, .input_grad = true};
    OK(fkd_graph_create(&g, &cfg));
    fkd_value x = fkd_graph_input(g, "input", 3, SIZE, SIZE);
    fkd_arch_opts o = {.width = 16, .num_features = FEATURES};
    OK(fkd_arch_build(g, "iresnet18", &o, x, emb));
    OK(fkd_graph_finalize(g));
    OK(fkd_graph_set_training(g, false));
    return g;
}

#define rel_err fkd_test_rel_err

static float *random_array(size_t n, uint64_t stream)
{
    fkd_rng rng;
    fkd_rng_seed(&rng, 11, stream);
    float *v = malloc(n * sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < n; i++) v[i] = (float)fkd_rng_normal(&rng);
    return v;
}

static int count(const char *s, const char *what)
{
    int n = 0;
    for (const char *p = strstr(s, what); p; p = strstr(p + 1, what)) n++;
    return n;
}

static void test_kernels(void **state)
{
    (void)state;
    fkd_value e;
    fkd_graph *w = build(false, &e), *d = build(true, &e);
    char buf[512];
    OK(fkd_graph_kernels(w, "layer1.1.conv2", buf, sizeof buf));
    /* forward, backward-data and backward-weights */
    assert_int_equal(count(buf, "jit_wino_4x3"), 3);
    assert_null(strstr(buf, "ref:"));
    assert_true(fkd_test_kernels_mention(d, "layer1.1.conv2", "jit"));
    assert_false(fkd_test_kernels_mention(d, "layer1.1.conv2", "wino"));
    /* The 3-channel stem stays direct. */
    assert_false(fkd_test_kernels_mention(w, "conv1", "wino"));
    fkd_graph_free(w);
    fkd_graph_free(d);
}

static void test_winograd_vs_direct(void **state)
{
    (void)state;
    fkd_value ew, ed;
    fkd_graph *w = build(false, &ew), *d = build(true, &ed);
    fkd_param *pw, *pd;
    int nw, nd;
    OK(fkd_graph_params(w, &pw, &nw));
    OK(fkd_graph_params(d, &pd, &nd));
    assert_int_equal(nw, nd);
    for (int i = 0; i < nw; i++) { /* the same parameters in both */
        float *v = malloc((size_t)pw[i].numel * sizeof *v);
        OK(fkd_graph_param_read(w, i, v));
        OK(fkd_graph_param_write(d, i, v));
        free(v);
    }
    size_t nx = (size_t)BATCH * 3 * SIZE * SIZE, ne = (size_t)BATCH * FEATURES;
    float *x = random_array(nx, 1), *dy = random_array(ne, 2);
    float *ea = malloc(ne * sizeof *ea), *eb = malloc(ne * sizeof *eb);
    float *dxa = malloc(nx * sizeof *dxa), *dxb = malloc(nx * sizeof *dxb);
    OK(fkd_test_forward_backward(w, "input", ew, x, dy, ea, dxa));
    OK(fkd_test_forward_backward(d, "input", ed, x, dy, eb, dxb));
    double e_fwd = rel_err(ea, eb, ne), e_dx = rel_err(dxa, dxb, nx), e_dw = 0;
    const char *worst = "";
    for (int i = 0; i < nw; i++) {
        if (!pw[i].grad) continue;
        size_t n = (size_t)pw[i].numel;
        float *ga = malloc(n * sizeof *ga), *gb = malloc(n * sizeof *gb);
        OK(fkd_graph_param_read_grad(w, i, ga));
        OK(fkd_graph_param_read_grad(d, i, gb));
        double e = rel_err(ga, gb, n);
        if (e > e_dw) {
            e_dw = e;
            worst = pw[i].name;
        }
        free(ga);
        free(gb);
    }
    printf("Winograd vs direct (TRAIN, iresnet18 width 16): forward %.2g, dx %.2g, worst dW %.2g (%s)\n",
           e_fwd, e_dx, e_dw, worst);
    assert_true(e_fwd <= TOL);
    assert_true(e_dx <= TOL);
    assert_true(e_dw <= TOL);
    free(x);
    free(dy);
    free(ea);
    free(eb);
    free(dxa);
    free(dxb);
    fkd_graph_free(w);
    fkd_graph_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernels),
        cmocka_unit_test(test_winograd_vs_direct),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
