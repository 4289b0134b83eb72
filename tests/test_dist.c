/* dist: the one-rank world of the build without MPI (what every non-MPI run goes
 * through), gradient averaging there, and synchronised batch norm's arithmetic: with one
 * rank its forward and backward (statistics reduced, gradient correction as a second
 * batch-norm forward) must give what oneDNN's own training batch norm gives. Under
 * mpirun (tests/mpi, make test-mpi) gradient averaging and synchronised batch norm are
 * checked across the ranks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "dist/dist.h"
#include "dist/grad_sync.h"
#include "nn/graph.h"
#include "support/nn_nets.h"

#define OK(expr) assert_int_equal((expr), FKD_OK)

static void test_one_rank_world(void **state)
{
    (void)state;
    OK(fkd_dist_init());
    assert_int_equal(fkd_dist_rank(), 0);
    assert_int_equal(fkd_dist_world(), 1);
    assert_true(fkd_dist_is_root());
    float f[3] = {1.5f, -2.0f, 3.25f};
    double d[2] = {0.125, -7.0};
    OK(fkd_dist_allreduce_f32(f, 3));
    OK(fkd_dist_allreduce_f64(d, 2));
    OK(fkd_dist_allreduce_f32_start(f, 3));
    OK(fkd_dist_wait_all());
    OK(fkd_dist_broadcast_f32(f, 3));
    OK(fkd_dist_barrier());
    /* The sum over one rank is the value itself, bit for bit. */
    assert_true(f[0] == 1.5f && f[1] == -2.0f && f[2] == 3.25f);
    assert_true(d[0] == 0.125 && d[1] == -7.0);
    fkd_dist_fail("not an error: one rank returns", 1); /* returns in a one-rank world */
}

/* Gradients that differ by rank come back as their mean on every rank: rank r holds
 * base + r, the mean is base + (world - 1) / 2 (exact in fp32 for these values). 300
 * one-float parameters with 4-byte buckets make 300 reductions, more than may be under way
 * at once (FKD_DIST_MAX_PENDING); a buffer (no gradient) is left alone. */
static void test_grad_sync_averages(void **state)
{
    (void)state;
    enum { P = 300 };
    const int rank = fkd_dist_rank(), world = fkd_dist_world();
    float data[P + 1] = {0}, grad[P];
    fkd_param params[P + 1];
    memset(params, 0, sizeof params);
    for (int i = 0; i < P; i++) {
        grad[i] = (float)(i % 7) + (float)rank;
        params[i] = (fkd_param){.name = "p", .numel = 1, .data = data + i, .grad = grad + i, .storage = 1,
                                .trainable = true};
    }
    params[P] = (fkd_param){.name = "buf", .numel = 1, .data = data + P, .storage = 1, .is_buffer = true};
    fkd_param *lists[1] = {params};
    int counts[1] = {P + 1};
    fkd_grad_sync *gs;
    OK(fkd_grad_sync_create(&gs, lists, counts, 1, 4));
    OK(fkd_grad_sync_run(gs));
    for (int i = 0; i < P; i++) assert_true(grad[i] == (float)(i % 7) + 0.5f * (float)(world - 1));
    fkd_grad_sync_free(gs);
    fkd_grad_sync_free(NULL);
}

/* x (N, 3, 6, 6) → conv 16 3×3 → bn2d → prelu → flatten → linear 10 → bn1d: both batch
 * norm shapes, a blocked layout (16 channels) and a consumer after each. */
static fkd_graph *bn_net(int batch, bool sync, fkd_value *out)
{
    fkd_graph *g;
    fkd_graph_config cfg = {.batch = batch, .mode = FKD_GRAPH_TRAIN, .seed = 7, .sync_bn = sync, .input_grad = true};
    OK(fkd_graph_create(&g, &cfg));
    fkd_value x = fkd_graph_input(g, "x", 3, 6, 6);
    fkd_value v = fkd_graph_conv(g, "conv", x, 16, 3, 1, 1, 1, false);
    v = fkd_graph_batchnorm(g, "bn2d", v, 1e-5f, 0.1f);
    v = fkd_graph_prelu(g, "prelu", v);
    v = fkd_graph_flatten(g, "flat", v);
    v = fkd_graph_linear(g, "fc", v, 10, true);
    v = fkd_graph_batchnorm(g, "bn1d", v, 1e-5f, 0.1f);
    assert_true(v >= 0);
    OK(fkd_graph_tap(g, "out", v));
    OK(fkd_graph_finalize(g));
    *out = v;
    return g;
}

static float *random_array(size_t n, uint64_t stream)
{
    fkd_rng rng;
    fkd_rng_seed(&rng, 11, stream);
    float *a = malloc(n * sizeof *a);
    for (size_t i = 0; i < n; i++) a[i] = (float)(2.0 * fkd_rng_uniform(&rng) - 1.0) + (i % 3 == 0 ? 0.5f : 0.0f);
    return a;
}

/* max |a - b| <= rel * max |b| + 1e-5. The absolute floor is for gradients that are zero
 * in exact arithmetic (a bias right before batch norm): both paths leave ~1e-6 of noise. */
static void expect_close(const char *what, const float *a, const float *b, size_t n, double rel)
{
    double diff = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        diff = fmax(diff, fabs((double)a[i] - b[i]));
        scale = fmax(scale, fabs((double)b[i]));
    }
    if (diff > rel * scale + 1e-5) fail_msg("%s: max |diff| %g with max |ref| %g (tolerance %g relative)", what, diff, scale, rel);
}

/* A training forward from x, a backward from dL/dout = dy: out and dL/dx. */
static void train_once(fkd_graph *g, fkd_value out, const float *x, const float *dy, float *y, float *dx)
{
    OK(fkd_graph_set_training(g, true));
    OK(fkd_test_forward_backward(g, "x", out, x, dy, y, dx));
}

/* One training forward/backward of the reference net (per-batch statistics, the global
 * batch of world*N images) and of the synchronised net (this rank's N images): outputs,
 * running statistics, dL/dx and every parameter gradient (averaged over the ranks) agree.
 * Each rank's upstream gradient is that of its own mean loss, world times the global
 * one's, as in the trainer; dL/dx comes out scaled the same way. With one rank this
 * checks the synchronised arithmetic against oneDNN's batch norm; under mpirun
 * (tests/mpi) the reductions too. Tolerance 1e-4 of the largest reference value: the
 * synchronised path forms the variance as E[x²] − μ² (in double) and adds the backward's
 * mean terms in a second pass, so it rounds differently from oneDNN's fused kernels
 * (measured with one rank: below 3e-7 relative). */
static void test_sync_bn_matches_batch_norm(void **state)
{
    (void)state;
    enum { N = 4 };
    const int world = fkd_dist_world(), rank = fkd_dist_rank();
    fkd_value out_ref, out_sync;
    fkd_graph *ref = bn_net(N * world, false, &out_ref), *syn = bn_net(N, true, &out_sync);
    const size_t nx = (size_t)N * 3 * 6 * 6, ny = (size_t)N * 10;
    float *x = random_array(nx * world, 1), *dy = random_array(ny * world, 2);
    float *y_ref = malloc(ny * world * sizeof(float)), *y_syn = malloc(ny * sizeof(float));
    float *dx_ref = malloc(nx * world * sizeof(float)), *dx_syn = malloc(nx * sizeof(float));
    float *dy_rank = malloc(ny * sizeof(float));
    for (size_t i = 0; i < ny; i++) dy_rank[i] = dy[rank * ny + i] * (float)world;

    train_once(ref, out_ref, x, dy, y_ref, dx_ref);
    train_once(syn, out_sync, x + rank * nx, dy_rank, y_syn, dx_syn);
    for (size_t i = 0; i < nx; i++) dx_syn[i] /= (float)world;

    expect_close("y", y_syn, y_ref + rank * ny, ny, 1e-4);
    expect_close("dL/dx", dx_syn, dx_ref + rank * nx, nx, 1e-4);
    fkd_param *p_ref, *p_syn;
    int n_ref, n_syn;
    OK(fkd_graph_params(ref, &p_ref, &n_ref));
    OK(fkd_graph_params(syn, &p_syn, &n_syn));
    assert_int_equal(n_ref, n_syn);
    for (int i = 0; i < n_ref; i++) {
        float *a = malloc((size_t)p_ref[i].numel * sizeof(float)), *b = malloc((size_t)p_ref[i].numel * sizeof(float));
        OK(fkd_graph_param_read(syn, i, a));
        OK(fkd_graph_param_read(ref, i, b));
        expect_close(p_ref[i].name, a, b, (size_t)p_ref[i].numel, 1e-4); /* running statistics included */
        if (p_ref[i].grad) {
            OK(fkd_graph_param_read_grad(syn, i, a));
            OK(fkd_dist_allreduce_f32(a, (size_t)p_ref[i].numel));
            for (int64_t k = 0; k < p_ref[i].numel; k++) a[k] /= (float)world;
            OK(fkd_graph_param_read_grad(ref, i, b));
            expect_close(p_ref[i].name, a, b, (size_t)p_ref[i].numel, 1e-4);
        }
        free(a);
        free(b);
    }
    free(x), free(dy), free(dy_rank), free(y_ref), free(y_syn), free(dx_ref), free(dx_syn);
    fkd_graph_free(ref);
    fkd_graph_free(syn);
}

/* In the one-rank build: everything. Built with MPI=1 and run under mpirun (tests/mpi):
 * gradient averaging and the synchronised batch norm across the ranks. */
int main(void)
{
    if (fkd_dist_init() != FKD_OK) return 1;
    const struct CMUnitTest one_rank[] = {
        cmocka_unit_test(test_one_rank_world),
        cmocka_unit_test(test_grad_sync_averages),
        cmocka_unit_test(test_sync_bn_matches_batch_norm),
    };
    const struct CMUnitTest ranks[] = {
        cmocka_unit_test(test_grad_sync_averages),
        cmocka_unit_test(test_sync_bn_matches_batch_norm),
    };
    int failed = fkd_dist_world() == 1 ? cmocka_run_group_tests(one_rank, NULL, NULL)
                                       : cmocka_run_group_tests(ranks, NULL, NULL);
    fkd_dist_finalize();
    return failed;
}
