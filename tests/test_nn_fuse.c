/* INFER-graph fusion (lib/nn/fuse.c): batch norm folded into the conv/linear before it,
 * residual adds as a conv's sum post-op. The fused graph must compute what the unfused one
 * (config.unfused) and a TRAIN graph in eval mode compute, for narrow IResNet-50,
 * IResNet-18 and MobileFaceNet with non-trivial batch-norm statistics; weights written
 * after finalize (after a first forward, too) must be the ones folded; master parameters
 * stay unfolded; nothing runs on oneDNN's reference kernels.
 *
 * Tolerances, as normalised errors ‖a − b‖ / ‖b‖ over every tap (stage1..4, embedding):
 *   fp32: 1e-5 — folding only changes the rounding (W·s rounded once instead of the
 *         output scaled); measured 1.2e-6 (iresnet50), 3e-7 (iresnet18), 1.4e-7 (mbf).
 *   bf16: 3e-2 — fused and unfused both round activations and weights to bf16 (8-bit
 *         mantissa, 2^-9 ≈ 2e-3 per rounding) but at different places (W·s is rounded
 *         instead of W), through up to 50 layers; measured 1.6e-2 (iresnet50), 4.7e-3
 *         (mbf). Against fp32 the fused bf16 graph must not be worse than 1.5x the unfused
 *         one (measured: it is closer, 1.0e-2 vs 1.3e-2 and 3.2e-3 vs 3.8e-3).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "nn/arch.h"
#include "nn/graph.h"
#include "nn/graph_walk.h"
#include "nn/shim.h"
#include "support/nn_nets.h"

#define OK(expr) assert_int_equal((expr), FKD_OK)

#define BATCH 2
#define WIDTH 8
#define TOL_F32 1e-5
#define TOL_BF16 3e-2
#define TOL_WINO 1e-5

static const char *const taps[] = {"stage1", "stage2", "stage3", "stage4", "embedding"};
#define N_TAPS (int)(sizeof taps / sizeof taps[0])

typedef struct {
    const char *arch;
    fkd_graph_mode mode;
    fkd_precision precision;
    bool unfused;
    const char *extra_tap; /* a node whose output is tapped too (stops folding there) */
    bool winograd;         /* INFER fp32 default; off to compare fusion alone */
    int width;             /* 0: WIDTH */
} net_spec;

static fkd_graph *build(const net_spec *s)
{
    fkd_graph *g;
    fkd_graph_config cfg = {.batch = BATCH, .mode = s->mode, .precision = s->precision, .seed = 3,
                            .unfused = s->unfused, .direct_conv = !s->winograd};
    OK(fkd_graph_create(&g, &cfg));
    fkd_value x = fkd_graph_input(g, "input", 3, 112, 112), e;
    fkd_arch_opts o = {.width = s->width ? s->width : WIDTH, .num_features = 32};
    OK(fkd_arch_build(g, s->arch, &o, x, &e));
    if (s->extra_tap) OK(fkd_graph_tap(g, "extra", fkd_graph_find(g, s->extra_tap)));
    OK(fkd_graph_finalize(g));
    if (s->mode == FKD_GRAPH_TRAIN) OK(fkd_graph_set_training(g, false));
    return g;
}

/* Parameters of a trained-looking model from `seed`: weights at PyTorch's init scale,
 * batch norms with weight in [0.5, 1.5], bias and running mean in ±0.3, running variance
 * in [0.3, 1.3] (so that folding changes every weight), PReLU slopes in [0, 0.5]. */
static void write_params(fkd_graph *g, uint64_t seed)
{
    fkd_param *p;
    int n;
    OK(fkd_graph_params(g, &p, &n));
    for (int i = 0; i < n; i++) {
        fkd_rng rng;
        fkd_rng_seed(&rng, seed, (uint64_t)i);
        float *v = malloc((size_t)p[i].numel * sizeof *v);
        const char *name = p[i].name;
        bool bn = strstr(name, "bn") || strstr(name, "downsample.1") || strstr(name, "features") ||
                  (strstr(name, "layers.1.") && !strstr(name, "layers.1.layers.0"));
        double fan_in = p[i].ndims > 1 ? (double)p[i].numel / (double)p[i].dims[0] : 1.0;
        for (int64_t k = 0; k < p[i].numel; k++) {
            double u = fkd_rng_uniform(&rng);
            if (strstr(name, "running_var")) v[k] = (float)(0.3 + u);
            else if (strstr(name, "running_mean")) v[k] = (float)(0.6 * u - 0.3);
            else if (p[i].ndims > 1) v[k] = (float)((2 * u - 1) / sqrt(fan_in));
            else if (strstr(name, "prelu") || strstr(name, "layers.2.weight")) v[k] = (float)(0.5 * u);
            else if (strstr(name, ".weight") && bn) v[k] = (float)(0.5 + u);
            else v[k] = (float)(0.6 * u - 0.3);
        }
        OK(fkd_graph_param_write(g, i, v));
        free(v);
    }
}

static float *input_batch(uint64_t seed)
{
    size_t n = (size_t)BATCH * 3 * 112 * 112;
    float *x = malloc(n * sizeof *x);
    fkd_rng rng;
    fkd_rng_seed(&rng, seed, 1);
    for (size_t i = 0; i < n; i++) x[i] = (float)(2 * fkd_rng_uniform(&rng) - 1);
    return x;
}

/* Every tap (and "extra" when present) after a forward on `x`, concatenated; *len floats. */
static float *run(fkd_graph *g, const float *x, bool extra, size_t *len)
{
    OK(fkd_graph_set_input(g, "input", x));
    OK(fkd_graph_forward(g));
    size_t total = 0, at = 0;
    float *out = NULL;
    for (int pass = 0; pass < 2; pass++) {
        for (int t = 0; t < N_TAPS + (extra ? 1 : 0); t++) {
            fkd_value v = fkd_graph_find(g, t < N_TAPS ? taps[t] : "extra");
            int nd, d[4];
            OK(fkd_graph_shape(g, v, &nd, d));
            size_t n = (size_t)d[0] * d[1] * (nd == 4 ? (size_t)d[2] * d[3] : 1);
            if (pass == 1) OK(fkd_graph_read(g, v, out + at));
            at += n;
        }
        if (pass == 0) {
            total = at;
            at = 0;
            out = malloc(total * sizeof *out);
        }
    }
    *len = total;
    return out;
}

#define rel_err fkd_test_rel_err

/* Graph `a` against graph `b` built from the specs, same weights and input: normalised
 * error over every tap, printed with `what`, at most `tol`. */
static void compare_specs(const net_spec *sa, const net_spec *sb, const char *what, double tol)
{
    fkd_graph *ga = build(sa), *gb = build(sb);
    write_params(ga, 11);
    write_params(gb, 11);
    float *x = input_batch(5);
    size_t na, nb;
    float *a = run(ga, x, false, &na), *b = run(gb, x, false, &nb);
    assert_int_equal(na, nb);
    double e = rel_err(a, b, na);
    printf("  %-9s %s %s: normalised error %.2e (tolerance %.0e)\n", sa->arch,
           sa->precision == FKD_PREC_BF16 ? "bf16" : "fp32", what, e, tol);
    assert_true(e <= tol);
    free(a);
    free(b);
    free(x);
    fkd_graph_free(ga);
    fkd_graph_free(gb);
}

/* The fused graph against `reference` (unfused INFER or TRAIN in eval), same weights. */
static void compare(const char *arch, fkd_precision prec, fkd_graph_mode ref_mode, double tol)
{
    net_spec fs = {arch, FKD_GRAPH_INFER, prec, false, NULL, false, 0}, rs = {arch, ref_mode, prec, true, NULL, false, 0};
    compare_specs(&fs, &rs, ref_mode == FKD_GRAPH_TRAIN ? "fused vs TRAIN eval" : "fused vs unfused INFER", tol);
}

static void test_fp32_iresnet50(void **state)
{
    (void)state;
    compare("iresnet50", FKD_PREC_F32, FKD_GRAPH_INFER, TOL_F32);
}

static void test_fp32_iresnet18_vs_train(void **state)
{
    (void)state;
    compare("iresnet18", FKD_PREC_F32, FKD_GRAPH_TRAIN, TOL_F32);
}

static void test_fp32_mbf(void **state)
{
    (void)state;
    compare("mbf", FKD_PREC_F32, FKD_GRAPH_INFER, TOL_F32);
    compare("mbf", FKD_PREC_F32, FKD_GRAPH_TRAIN, TOL_F32);
}

/* Outputs of `arch` in one configuration, same weights and input as every other. */
static float *outputs(const char *arch, fkd_precision prec, bool unfused, size_t *n)
{
    net_spec s = {arch, FKD_GRAPH_INFER, prec, unfused, NULL, false, 0};
    fkd_graph *g = build(&s);
    write_params(g, 11);
    float *x = input_batch(5), *out = run(g, x, false, n);
    free(x);
    fkd_graph_free(g);
    return out;
}

/* bf16: fused against unfused, and fusion does not move bf16 further from fp32 than
 * bf16 already is (within 1.5x). */
static void test_bf16(void **state)
{
    (void)state;
    if (!fkd_shim_bf16_ok()) skip();
    const char *archs[] = {"iresnet50", "mbf"};
    for (int a = 0; a < 2; a++) {
        compare(archs[a], FKD_PREC_BF16, FKD_GRAPH_INFER, TOL_BF16);
        size_t n;
        float *ref = outputs(archs[a], FKD_PREC_F32, true, &n), *fused = outputs(archs[a], FKD_PREC_BF16, false, &n),
              *plain = outputs(archs[a], FKD_PREC_BF16, true, &n);
        double ef = rel_err(fused, ref, n), ep = rel_err(plain, ref, n);
        printf("  %-9s against fp32: bf16 fused %.2e, bf16 unfused %.2e\n", archs[a], ef, ep);
        assert_true(ef <= 1.5 * ep);
        free(ref);
        free(fused);
        free(plain);
    }
}

/* The classic bug: weights loaded after finalize — and after a first forward that folded
 * the initial ones — must be the ones folded. The masters stay what was written. */
static void test_weights_written_after_a_forward(void **state)
{
    (void)state;
    net_spec fs = {"iresnet18", FKD_GRAPH_INFER, FKD_PREC_F32, false, NULL, false, 0};
    net_spec rs = {"iresnet18", FKD_GRAPH_INFER, FKD_PREC_F32, true, NULL, false, 0};
    fkd_graph *f = build(&fs), *r = build(&rs);
    float *x = input_batch(8);
    size_t n;
    free(run(f, x, false, &n)); /* folds the initial parameters */
    write_params(f, 21);
    write_params(r, 21);
    size_t nf, nr;
    float *a = run(f, x, false, &nf), *b = run(r, x, false, &nr);
    double e = rel_err(a, b, nf);
    printf("  after reloading: normalised error %.2e\n", e);
    assert_true(e <= TOL_F32);
    free(a);
    free(b);

    /* Writing through fkd_graph_params' pointers (it marks the weights as changed). */
    fkd_param *pf, *pr;
    int cf, cr;
    OK(fkd_graph_params(f, &pf, &cf));
    OK(fkd_graph_params(r, &pr, &cr));
    for (int i = 0; i < cf; i++) {
        if (strcmp(pf[i].name, "layer2.0.bn3.running_var") != 0 && strcmp(pf[i].name, "layer1.1.conv2.weight") != 0)
            continue;
        float *plain = malloc((size_t)pf[i].numel * sizeof *plain);
        OK(fkd_graph_param_read(f, i, plain));
        for (int64_t k = 0; k < pf[i].numel; k++) plain[k] *= 1.5f;
        OK(fkd_graph_param_write(f, i, plain));
        OK(fkd_graph_param_write(r, i, plain));
        /* The master keeps exactly what was written (not W·s). */
        float *back = malloc((size_t)pf[i].numel * sizeof *back);
        OK(fkd_graph_param_read(f, i, back));
        assert_memory_equal(back, plain, (size_t)pf[i].numel * sizeof *back);
        free(back);
        free(plain);
    }
    a = run(f, x, false, &nf);
    b = run(r, x, false, &nr);
    e = rel_err(a, b, nf);
    printf("  after changing two tensors: normalised error %.2e\n", e);
    assert_true(e <= TOL_F32);
    free(a);
    free(b);
    free(x);
    fkd_graph_free(f);
    fkd_graph_free(r);
}

/* Tapping a conv's raw output keeps it (no folding there) and it reads correctly. */
static void test_tapped_conv_is_not_folded(void **state)
{
    (void)state;
    net_spec fs = {"iresnet18", FKD_GRAPH_INFER, FKD_PREC_F32, false, "layer1.0.conv2", false, 0};
    net_spec rs = {"iresnet18", FKD_GRAPH_INFER, FKD_PREC_F32, true, "layer1.0.conv2", false, 0};
    fkd_graph *f = build(&fs), *r = build(&rs);
    write_params(f, 4);
    write_params(r, 4);
    char buf[256];
    OK(fkd_graph_kernels(f, "layer1.0.bn3", buf, sizeof buf));
    assert_null(strstr(buf, "fused into"));
    OK(fkd_graph_kernels(f, "layer1.1.bn3", buf, sizeof buf));
    assert_non_null(strstr(buf, "fused into 'layer1.1.conv2'"));
    float *x = input_batch(2);
    size_t nf, nr;
    float *a = run(f, x, true, &nf), *b = run(r, x, true, &nr);
    assert_true(rel_err(a, b, nf) <= TOL_F32);
    free(a);
    free(b);
    free(x);
    fkd_graph_free(f);
    fkd_graph_free(r);
}

/* A residual read by another node between the conv and the add must not be overwritten
 * in place: x → a = conv(x); y = bn(conv(x)); t = prelu(a) (after y's conv); s = y + a;
 * out = t + s. Fused and unfused must agree, and the add stays an add. */
static fkd_graph *reader_between(bool unfused, fkd_value *out)
{
    fkd_graph *g;
    fkd_graph_config cfg = {.batch = 2, .mode = FKD_GRAPH_INFER, .seed = 4, .unfused = unfused};
    OK(fkd_graph_create(&g, &cfg));
    fkd_value x = fkd_graph_input(g, "x", 16, 8, 8);
    fkd_value a = fkd_graph_conv(g, "a", x, 16, 3, 1, 1, 1, false);
    fkd_value y = fkd_graph_batchnorm(g, "y_bn", fkd_graph_conv(g, "y", x, 16, 3, 1, 1, 1, false), 1e-5f, 0.1f);
    fkd_value t = fkd_graph_prelu(g, "t", a);
    fkd_value s = fkd_graph_add(g, "s", y, a);
    *out = fkd_graph_add(g, "out", t, s);
    assert_true(*out >= 0);
    OK(fkd_graph_finalize(g));
    write_params(g, 9);
    return g;
}

static void test_residual_read_in_between_is_not_fused(void **state)
{
    (void)state;
    fkd_value of, ou;
    fkd_graph *f = reader_between(false, &of), *u = reader_between(true, &ou);
    fkd_rng rng;
    fkd_rng_seed(&rng, 3, 3);
    float x[2 * 16 * 64], a[2 * 16 * 64], b[2 * 16 * 64];
    for (int i = 0; i < 2 * 16 * 64; i++) x[i] = (float)(2 * fkd_rng_uniform(&rng) - 1);
    fkd_graph *gs[2] = {f, u};
    fkd_value vs[2] = {of, ou};
    float *outs[2] = {a, b};
    for (int k = 0; k < 2; k++) {
        OK(fkd_graph_set_input(gs[k], "x", x));
        OK(fkd_graph_forward(gs[k]));
        OK(fkd_graph_read(gs[k], vs[k], outs[k]));
    }
    assert_true(rel_err(a, b, 2 * 16 * 64) <= TOL_F32);
    assert_false(fkd_test_kernels_mention(f, "s", "fused into"));
    assert_true(fkd_test_kernels_mention(f, "y_bn", "fused into 'y'"));
    fkd_graph_free(f);
    fkd_graph_free(u);
}

/* What fused where, and no reference kernels, fp32 and bf16. */
static void check_kernels(const char *arch, fkd_precision prec, int want_folded, int want_sums)
{
    /* width 16: Winograd needs multiples of 16 channels */
    net_spec fs = {arch, FKD_GRAPH_INFER, prec, false, NULL, true, 16};
    fkd_graph *g = build(&fs);
    int n, folded = 0, sums = 0, convs = 0, wino = 0;
    OK(fkd_graph_node_count(g, &n));
    char buf[512];
    for (int i = 0; i < n; i++) {
        fkd_graph_node_info ni;
        OK(fkd_graph_node_at(g, i, &ni));
        OK(fkd_graph_kernels(g, ni.name, buf, sizeof buf));
        if (strstr(buf, "ref:")) fail_msg("%s %s runs reference code: %s", arch, ni.name, buf);
        bool fused = strncmp(buf, "forward: fused into", 19) == 0;
        if (!strcmp(ni.op, "batchnorm")) folded += fused;
        if (!strcmp(ni.op, "add")) sums += fused;
        if (!strcmp(ni.op, "conv")) convs++;
        if (strstr(buf, "wino")) wino++;
        if (!strcmp(ni.op, "conv") && !strstr(buf, "avx512") && !strstr(buf, "grouped_conv:host"))
            fail_msg("%s %s: not an AVX-512 kernel: %s", arch, ni.name, buf);
    }
    printf("  %-9s %s: %d batch norms folded, %d adds fused, %d convs on AVX-512 kernels (%d Winograd)\n", arch,
           prec == FKD_PREC_BF16 ? "bf16" : "fp32", folded, sums, convs, wino);
    /* IResNet-50 fp32: its 44 3×3 stride-1 convs after the 3-channel stem; bf16, mbf: none */
    assert_int_equal(wino, prec == FKD_PREC_F32 && !strcmp(arch, "iresnet50") ? 44 : 0);
    assert_int_equal(folded, want_folded);
    assert_int_equal(sums, want_sums);
    fkd_graph_free(g);
}

static void test_what_fuses_and_kernels(void **state)
{
    (void)state;
    /* IResNet-50: the stem's bn1, every block's bn2 and bn3, 4 downsample.1:
     * 1 + 2·24 + 4 = 53; all 24 adds. Each block's bn1 (before its conv), bn2 after the
     * last stage (after an add) and features (after the linear layer) stay batch norms. */
    check_kernels("iresnet50", FKD_PREC_F32, 53, 24);
    /* mbf: every batch norm but features follows a conv: 49; its 12 residual adds. */
    check_kernels("mbf", FKD_PREC_F32, 49, 12);
    if (fkd_shim_bf16_ok()) {
        check_kernels("iresnet50", FKD_PREC_BF16, 53, 24);
        check_kernels("mbf", FKD_PREC_BF16, 49, 12);
    }
}

/* Winograd F(4×4, 3×3) against direct convolution (both fused), width 16 (the smallest
 * with Winograd kernels). */
static void test_winograd_vs_direct(void **state)
{
    (void)state;
    const char *archs[] = {"iresnet50", "iresnet18"};
    for (int a = 0; a < 2; a++) {
        net_spec ws = {archs[a], FKD_GRAPH_INFER, FKD_PREC_F32, false, NULL, true, 16};
        net_spec ds = {archs[a], FKD_GRAPH_INFER, FKD_PREC_F32, false, NULL, false, 16};
        compare_specs(&ws, &ds, "Winograd vs direct", TOL_WINO);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fp32_iresnet50),
        cmocka_unit_test(test_fp32_iresnet18_vs_train),
        cmocka_unit_test(test_fp32_mbf),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_weights_written_after_a_forward),
        cmocka_unit_test(test_tapped_conv_is_not_folded),
        cmocka_unit_test(test_residual_read_in_between_is_not_fused),
        cmocka_unit_test(test_what_fuses_and_kernels),
        cmocka_unit_test(test_winograd_vs_direct),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
