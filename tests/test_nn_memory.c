/* Memory of TRAIN and INFER graphs (lib/nn/graph.c, "the arena"; docs/ENGINE.md, "Memory").
 *
 * - Recompute: a TRAIN graph recomputes a PReLU output that only convolutions read
 *   (IResNet's bn2 → prelu → conv2; MobileFaceNet's expand and depthwise blocks, except
 *   into facekd's grouped kernels) instead of keeping it. Same oneDNN descriptor, same
 *   input: the results must be bit-identical to a graph that keeps every activation
 *   (config.keep_activations) — embedding, dL/d(input), every parameter gradient, and every
 *   parameter and running statistic after two SGD steps, compared with memcmp (no
 *   tolerance). The bytes saved are exactly the recomputed outputs'.
 * - The arena: shared activations and gradients, backward temporaries and scratchpads
 *   placed by lifetime. Its size is checked against the lower bound (the most bytes live at
 *   one moment, fkd_graph_memory_use): within 10 % (measured below), and far below the
 *   sum of what it holds.
 * - A recomputed value cannot be read (a message says to tap it); a tapped one is kept.
 */
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

#define OK(expr) assert_int_equal((expr), FKD_OK)

#define BATCH 2
#define SIZE 112
#define FEATURES 32
#define STEPS 2
#define LR 0.05f

static fkd_graph *build_with(const char *arch, fkd_precision prec, bool keep, bool input_grad, bool sync_bn,
                             fkd_value *emb)
{
    fkd_graph *g;
    fkd_graph_config cfg = {.batch = BATCH, .mode = FKD_GRAPH_TRAIN, .precision = prec, .seed = 3,
                            .keep_activations = keep, .input_grad = input_grad, .sync_bn = sync_bn};
    if (fkd_graph_create(&g, &cfg) != FKD_OK) return NULL; /* bf16 without AVX-512 */
    fkd_value x = fkd_graph_input(g, "input", 3, SIZE, SIZE);
    fkd_arch_opts o = {.width = 16, .num_features = FEATURES};
    OK(fkd_arch_build(g, arch, &o, x, emb));
    OK(fkd_graph_finalize(g));
    return g;
}

static fkd_graph *build(const char *arch, fkd_precision prec, bool keep, fkd_value *emb)
{
    return build_with(arch, prec, keep, true, false, emb);
}

/* n normal numbers of stream `stream`. */
static float *normals(size_t n, uint64_t stream)
{
    float *v = malloc(n * sizeof *v);
    assert_non_null(v);
    fkd_rng rng;
    fkd_rng_seed(&rng, 21, stream);
    for (size_t i = 0; i < n; i++) v[i] = (float)fkd_rng_normal(&rng);
    return v;
}

/* Every parameter (and buffer) in plain layout, or every gradient, one after another. */
static float *snapshot(fkd_graph *g, bool grads, size_t *count)
{
    fkd_param *p;
    int n;
    OK(fkd_graph_params(g, &p, &n));
    size_t total = 0;
    for (int i = 0; i < n; i++) total += (size_t)p[i].numel;
    float *out = malloc(total * sizeof *out), *at = out;
    assert_non_null(out);
    for (int i = 0; i < n; i++) {
        if (grads && p[i].is_buffer) memset(at, 0, (size_t)p[i].numel * sizeof *at);
        else OK(grads ? fkd_graph_param_read_grad(g, i, at) : fkd_graph_param_read(g, i, at));
        at += p[i].numel;
    }
    *count = total;
    return out;
}

static void assert_same_bits(const float *a, const float *b, size_t n, const char *what)
{
    size_t i = 0;
    while (i < n && memcmp(&a[i], &b[i], sizeof *a) == 0) i++;
    if (i < n) fprintf(stderr, "  %s differs at %zu: %.9g vs %.9g\n", what, i, (double)a[i], (double)b[i]);
    assert_true(i == n);
}

/* Plain SGD on every trainable parameter: data -= LR * grad over the engine's storage. */
static void sgd(fkd_graph *g)
{
    fkd_param *p;
    int n;
    OK(fkd_graph_params(g, &p, &n));
    for (int i = 0; i < n; i++)
        if (p[i].trainable)
            for (size_t k = 0; k < p[i].storage; k++) p[i].data[k] -= LR * p[i].grad[k];
}

/* Recomputing graph vs keeping graph: STEPS steps (the last in eval mode: running
 * statistics), bit for bit; the kept bytes differ by `expect_saved` (0: not checked). */
static void check_exact(const char *arch, fkd_precision prec, bool sync_bn, int expect_recomputed, size_t expect_saved)
{
    fkd_value er, ek;
    fkd_graph *r = build_with(arch, prec, false, true, sync_bn, &er), *k = build_with(arch, prec, true, true, sync_bn, &ek);
    if (!r) {
        fprintf(stderr, "  %s: this CPU has no bf16 path, skipped\n", arch);
        return;
    }
    fkd_graph_memory mr, mk;
    OK(fkd_graph_memory_use(r, &mr));
    OK(fkd_graph_memory_use(k, &mk));
    fprintf(stderr, "  %s %s: %d values recomputed, kept %.2f MB instead of %.2f MB\n", arch,
            prec == FKD_PREC_BF16 ? "bf16" : "fp32", mr.recomputed, mr.kept / 1e6, mk.kept / 1e6);
    assert_int_equal(mr.recomputed, expect_recomputed);
    assert_int_equal(mk.recomputed, 0);
    assert_true(mr.kept < mk.kept);
    if (expect_saved) assert_int_equal(mk.kept - mr.kept, expect_saved);

    size_t nx = (size_t)BATCH * 3 * SIZE * SIZE, ny = (size_t)BATCH * FEATURES, np;
    float *y[2], *dx[2];
    for (int i = 0; i < 2; i++) {
        y[i] = malloc(ny * sizeof(float));
        dx[i] = malloc(nx * sizeof(float));
        assert_true(y[i] && dx[i]);
    }
    for (int step = 0; step < STEPS; step++) {
        float *x = normals(nx, 100 + (uint64_t)step), *dy = normals(ny, 200 + (uint64_t)step);
        fkd_graph *gs[2] = {r, k};
        fkd_value es[2] = {er, ek};
        for (int i = 0; i < 2; i++) {
            OK(fkd_graph_set_training(gs[i], step < STEPS - 1));
            OK(fkd_graph_set_input(gs[i], "input", x));
            OK(fkd_graph_forward(gs[i]));
            OK(fkd_graph_read(gs[i], es[i], y[i]));
            OK(fkd_graph_zero_grad(gs[i]));
            OK(fkd_graph_add_grad(gs[i], es[i], dy));
            OK(fkd_graph_backward(gs[i]));
            OK(fkd_graph_read_input_grad(gs[i], "input", dx[i]));
        }
        assert_same_bits(y[0], y[1], ny, "embedding");
        assert_same_bits(dx[0], dx[1], nx, "dL/d(input)");
        float *gr = snapshot(r, true, &np), *gk = snapshot(k, true, &np);
        assert_same_bits(gr, gk, np, "parameter gradients");
        free(gr);
        free(gk);
        sgd(r);
        sgd(k);
        free(x);
        free(dy);
    }
    float *pr = snapshot(r, false, &np), *pk = snapshot(k, false, &np);
    assert_same_bits(pr, pk, np, "parameters after SGD");
    free(pr);
    free(pk);
    for (int i = 0; i < 2; i++) {
        free(y[i]);
        free(dx[i]);
    }
    fkd_graph_free(r);
    fkd_graph_free(k);
}

/* IResNet-18: each of the 8 blocks recomputes bn1's output (read by conv1) from the block's
 * input and prelu's (read by conv2) from bn2's output; the stem's PReLU output also feeds
 * a batch norm (layer1.0.bn1), which needs it: kept. The kept bytes shrink by exactly
 * those 16 outputs: width 16, so every channel count is a multiple of 16 and nChw16c has
 * no padding. Also under sync_bn (one process: the statistics are the batch's, but the
 * forward runs the global-statistics primitive). */
static void test_recompute_exact_iresnet18(void **state)
{
    (void)state;
    size_t outputs = 0;
    const int side[4] = {112, 56, 28, 14};
    for (int s = 0; s < 4; s++)
        for (int b = 0; b < 2; b++) {
            /* a block runs bn1 and prelu at its input's resolution: the stage's, halved after
             * block 0; bn1 on the block's input channels, prelu on its output channels */
            int hw = b == 0 ? side[s] : side[s] / 2;
            int in_c = b == 1 ? 16 << s : s == 0 ? 16 : 16 << (s - 1);
            outputs += (size_t)BATCH * (size_t)(in_c + (16 << s)) * hw * hw * sizeof(float);
        }
    check_exact("iresnet18", FKD_PREC_F32, false, 16, outputs);
    check_exact("iresnet18", FKD_PREC_BF16, false, 16, outputs / 2);
    check_exact("iresnet18", FKD_PREC_F32, true, 16, outputs);
}

/* MobileFaceNet: 33 PReLUs, each read by a convolution; kept: the stem's (read by facekd's
 * grouped kernel, conv_grouped.c, which is not a recompute consumer), and stage1's and
 * stage4's (taps). */
static void test_recompute_exact_mbf(void **state)
{
    (void)state;
    check_exact("mbf", FKD_PREC_F32, false, 30, 0);
}

/* Without config.input_grad the stem's backward-data pass is dropped: one primitive fewer
 * in conv1's backward, a smaller arena (its dx temporary), the same parameter gradients
 * bit for bit, and read_input_grad says why it fails. */
static void test_input_grad_only_when_asked(void **state)
{
    (void)state;
    fkd_value e0, e1;
    fkd_graph *without = build_with("iresnet18", FKD_PREC_F32, false, false, false, &e0),
              *with = build_with("iresnet18", FKD_PREC_F32, false, true, false, &e1);
    char a[512], b[512];
    OK(fkd_graph_kernels(without, "conv1", a, sizeof a));
    OK(fkd_graph_kernels(with, "conv1", b, sizeof b));
    fprintf(stderr, "  conv1 without input_grad: %s\n  conv1 with: %s\n", a, b);
    int ca = 0, cb = 0;
    for (const char *p = a; (p = strchr(p, ',')); p++) ca++;
    for (const char *p = b; (p = strchr(p, ',')); p++) cb++;
    assert_true(ca < cb);
    fkd_graph_memory ma, mb;
    OK(fkd_graph_memory_use(without, &ma));
    OK(fkd_graph_memory_use(with, &mb));
    assert_true(ma.arena <= mb.arena);

    size_t nx = (size_t)BATCH * 3 * SIZE * SIZE, ny = (size_t)BATCH * FEATURES, np;
    float *x = normals(nx, 5), *dy = normals(ny, 6), *dx = malloc(nx * sizeof *dx);
    assert_non_null(dx);
    fkd_graph *gs[2] = {without, with};
    fkd_value es[2] = {e0, e1};
    for (int i = 0; i < 2; i++) {
        OK(fkd_graph_set_input(gs[i], "input", x));
        OK(fkd_graph_forward(gs[i]));
        OK(fkd_graph_zero_grad(gs[i]));
        OK(fkd_graph_add_grad(gs[i], es[i], dy));
        OK(fkd_graph_backward(gs[i]));
    }
    float *ga = snapshot(without, true, &np), *gb = snapshot(with, true, &np);
    assert_same_bits(ga, gb, np, "parameter gradients");
    assert_int_equal(fkd_graph_read_input_grad(without, "input", dx), FKD_ERR_ARG);
    assert_non_null(strstr(fkd_last_error(), "config.input_grad"));
    OK(fkd_graph_read_input_grad(with, "input", dx));
    free(ga);
    free(gb);
    free(x);
    free(dy);
    free(dx);
    fkd_graph_free(without);
    fkd_graph_free(with);
}

static void test_arena_near_its_lower_bound(void **state)
{
    (void)state;
    const char *archs[2] = {"iresnet18", "mbf"};
    for (int a = 0; a < 2; a++)
        for (int mode = a; mode < 2; mode++) { /* r18 TRAIN and INFER, mbf INFER */
            fkd_graph *g;
            fkd_value e;
            fkd_graph_config cfg = {.batch = BATCH, .mode = mode ? FKD_GRAPH_INFER : FKD_GRAPH_TRAIN,
                                    .precision = FKD_PREC_F32, .seed = 3};
            OK(fkd_graph_create(&g, &cfg));
            fkd_value x = fkd_graph_input(g, "input", 3, SIZE, SIZE);
            fkd_arch_opts o = {.width = 16, .num_features = FEATURES};
            OK(fkd_arch_build(g, archs[a], &o, x, &e));
            OK(fkd_graph_finalize(g));
            fkd_graph_memory m;
            OK(fkd_graph_memory_use(g, &m));
            fprintf(stderr, "  %s %s: arena %.2f MB, lower bound %.2f MB, kept %.2f MB, own gradients %.2f MB\n",
                    archs[a], mode ? "INFER" : "TRAIN", m.arena / 1e6, m.arena_live / 1e6, m.kept / 1e6,
                    m.gradients / 1e6);
            assert_true(m.arena >= m.arena_live);
            assert_true(m.arena <= m.arena_live + m.arena_live / 10);
            if (mode) assert_int_equal(m.gradients, 0);
            fkd_graph_free(g);
        }
}

static void test_recomputed_value_needs_a_tap(void **state)
{
    (void)state;
    fkd_value e;
    fkd_graph *g = build("iresnet18", FKD_PREC_F32, false, &e);
    float *buf = malloc((size_t)BATCH * 16 * SIZE * SIZE * sizeof(float));
    assert_non_null(buf);
    fkd_value v = fkd_graph_find(g, "layer1.0.prelu");
    assert_true(v >= 0);
    assert_int_equal(fkd_graph_read(g, v, buf), FKD_ERR_ARG);
    assert_non_null(strstr(fkd_last_error(), "recomputed for backward"));
    assert_non_null(strstr(fkd_last_error(), "tap it"));
    fkd_graph_free(g);

    /* Tapped before finalize: kept, readable, and one value fewer is recomputed. */
    fkd_graph_config cfg = {.batch = BATCH, .mode = FKD_GRAPH_TRAIN, .precision = FKD_PREC_F32, .seed = 3};
    OK(fkd_graph_create(&g, &cfg));
    fkd_value x = fkd_graph_input(g, "input", 3, SIZE, SIZE);
    fkd_arch_opts o = {.width = 16, .num_features = FEATURES};
    OK(fkd_arch_build(g, "iresnet18", &o, x, &e));
    v = fkd_graph_find(g, "layer1.0.prelu");
    OK(fkd_graph_tap(g, "kept", v));
    OK(fkd_graph_finalize(g));
    float *in = normals((size_t)BATCH * 3 * SIZE * SIZE, 7);
    OK(fkd_graph_set_input(g, "input", in));
    OK(fkd_graph_forward(g));
    OK(fkd_graph_read(g, v, buf));
    fkd_graph_memory m;
    OK(fkd_graph_memory_use(g, &m));
    assert_int_equal(m.recomputed, 15);
    free(in);
    free(buf);
    fkd_graph_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_recompute_exact_iresnet18),
        cmocka_unit_test(test_recompute_exact_mbf),
        cmocka_unit_test(test_input_grad_only_when_asked),
        cmocka_unit_test(test_arena_near_its_lower_bound),
        cmocka_unit_test(test_recomputed_value_needs_a_tap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
