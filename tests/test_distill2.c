/* lib/distill: shrinkteanet, triplet, margin, ekd, fitnet (and the shared adapter).
 *
 * - PyTorch references: every case in tests/fixtures/distill/<method>[_variant]/ written
 *   by scripts/gen_distill2_fixtures.py (loss and gradients in float64 from float32
 *   inputs; adapter weights given by the fixture, loaded through fkd_distiller_params).
 * - Central-difference gradient checks in double: the numerical gradient of the reference
 *   losses in tests/support/distill2_ref.c against the library's analytic gradient,
 *   for the student inputs and the adapter's weight and bias.
 * - EKD's running thresholds over three steps against torch; evaluation leaves them
 *   alone; the checkpoint tensors restore them exactly.
 * - MarginDistillation's margins stay in [M_min, M_max] and match torch.
 * - Option and shape errors name the key, the taps and their shapes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "distill/distiller.h"
#include "io/npy.h"
#include "nn/optim.h"
#include "tests/support/distill2_ref.h"

#define FIX "tests/fixtures/distill/"

/* float32 library vs float64 torch. Losses: |a − b| ≤ LOSS_TOL·(1 + |b|); gradients and
 * thresholds: normalised error ‖a − b‖ / max(‖b‖, 1e-12) ≤ GRAD_TOL. EKD's temperature
 * 0.01 multiplies a score's rounding by 100, hence its looser tolerance. */
#define LOSS_TOL 2e-5
#define GRAD_TOL 2e-4
#define EKD_TOL 2e-3
/* Central differences in double vs the float analytic gradient: normalised error. */
#define FD_TOL 2e-3

/* ---- fixtures ----------------------------------------------------------------------- */

enum {
    S_EMB, T_EMB, S_TAP, T_TAP, ADAPTER_W, ADAPTER_B, LABELS, W_T, LOSS, D_S_EMB, D_S_TAP,
    D_ADAPTER_W, D_ADAPTER_B, MARGINS, S_THR, T_THR, N_ARRAYS
};
static const char *const array_names[N_ARRAYS] = {
    "s_emb", "t_emb", "s_tap", "t_tap", "adapter_w", "adapter_b", "labels", "w_t", "loss",
    "d_s_emb", "d_s_tap", "d_adapter_w", "d_adapter_b", "margins", "s_thr", "t_thr"};

typedef struct {
    char method[32];
    fkd_npy_array a[N_ARRAYS]; /* data NULL when the file is absent */
    char keys[8][32], values[8][128];
    fkd_distill_option items[8];
    int n_items;
    fkd_distill_options opts;
    fkd_distill_context ctx; /* max_batch = b + SPARE: buffers larger than the batch */
    int64_t b;
} fixture;

#define SPARE 3

static fkd_npy_dtype array_dtype(int k)
{
    if (k == LABELS) return FKD_NPY_I64;
    return k >= LOSS ? FKD_NPY_F64 : FKD_NPY_F32;
}

static const fkd_npy_info *info_of(const fixture *f, int k) { return &f->a[k].info; }

/* Per-sample shape of a fixture tap ("stage3" is the only tap the fixtures have). */
static fkd_status fixture_tap_shape(void *user, bool teacher, const char *name,
                                    fkd_distill_tap_shape *shape)
{
    const fixture *f = user;
    const fkd_npy_info *in = info_of(f, teacher ? T_TAP : S_TAP);
    if (strcmp(name, "stage3") != 0 || !f->a[teacher ? T_TAP : S_TAP].data)
        return FKD_FAIL(FKD_ERR_NOTFOUND, "no tap \"%s\"", name);
    *shape = (fkd_distill_tap_shape){in->dims[1], in->dims[2], in->dims[3]};
    return FKD_OK;
}

static void fixture_load(fixture *f, const char *name)
{
    memset(f, 0, sizeof *f);
    snprintf(f->method, sizeof f->method, "%.*s", (int)strcspn(name, "_"), name);
    char path[256];
    for (int k = 0; k < N_ARRAYS; k++) {
        snprintf(path, sizeof path, FIX "%s/%s.npy", name, array_names[k]);
        if (access(path, R_OK) != 0) continue;
        if (fkd_npy_read(path, array_dtype(k), &f->a[k]) != FKD_OK)
            fail_msg("%s", fkd_last_error());
    }
    snprintf(path, sizeof path, FIX "%s/options.txt", name);
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    char line[256];
    while (fgets(line, sizeof line, fp) && f->n_items < 8) {
        int n = f->n_items;
        if (sscanf(line, "%31s %127[^\n]", f->keys[n], f->values[n]) != 2) continue;
        f->items[n] = (fkd_distill_option){f->keys[n], f->values[n], path, false};
        f->n_items++;
    }
    fclose(fp);
    fkd_distill_options_init(&f->opts, "distill[0]", f->items, f->n_items);
    const fkd_npy_info *s = info_of(f, f->a[S_EMB].data ? S_EMB : S_TAP);
    bool steps = strcmp(f->method, "ekd") == 0; /* (steps, B, d) */
    f->b = s->dims[steps ? 1 : 0];
    f->ctx.max_batch = f->b + SPARE;
    f->ctx.d_s = f->a[S_EMB].data ? s->dims[steps ? 2 : 1] : 16;
    f->ctx.d_t = f->a[T_EMB].data ? info_of(f, T_EMB)->dims[steps ? 2 : 1] : 16;
    f->ctx.classes = f->a[W_T].data ? info_of(f, W_T)->dims[0] : 64;
    f->ctx.scale = 64;
    f->ctx.tap_shape = fixture_tap_shape;
    f->ctx.tap_user = f;
}

static void fixture_free(fixture *f)
{
    for (int k = 0; k < N_ARRAYS; k++) fkd_npy_free(&f->a[k]);
}

static fkd_distiller *fixture_create(fixture *f)
{
    fkd_distiller *d;
    if (fkd_distiller_create(&d, f->method, &f->opts, &f->ctx) != FKD_OK)
        fail_msg("%s", fkd_last_error());
    if (f->a[ADAPTER_W].data) { /* the fixture's adapter replaces the seeded one */
        fkd_param *p;
        assert_int_equal(fkd_distiller_params(d, &p), 2);
        assert_int_equal(p[0].numel, f->a[ADAPTER_W].info.numel);
        assert_int_equal(p[1].numel, f->a[ADAPTER_B].info.numel);
        memcpy(p[0].data, f->a[ADAPTER_W].data, (size_t)p[0].numel * sizeof(float));
        memcpy(p[1].data, f->a[ADAPTER_B].data, (size_t)p[1].numel * sizeof(float));
    }
    return d;
}

/* Inputs of step `k` (k = 0 for single-batch fixtures). */
static fkd_distill_inputs fixture_inputs(const fixture *f, int64_t k)
{
    int64_t b = f->b;
    const float *s = f->a[S_EMB].data, *t = f->a[T_EMB].data;
    const int64_t *y = f->a[LABELS].data;
    return (fkd_distill_inputs){
        .batch = b,
        .student_emb = s ? s + k * b * f->ctx.d_s : NULL,
        .teacher_emb = t ? t + k * b * f->ctx.d_t : NULL,
        .teacher_centres = f->a[W_T].data,
        .labels = y ? y + k * b : NULL,
        .student_tap = f->a[S_TAP].data,
        .teacher_tap = f->a[T_TAP].data,
        .step = k,
    };
}

/* ‖a − b‖ / max(‖b‖, 1e-12) */
static double norm_error(const float *a, const double *b, int64_t n)
{
    double e = 0.0, r = 0.0;
    for (int64_t i = 0; i < n; i++) {
        e += (a[i] - b[i]) * (a[i] - b[i]);
        r += b[i] * b[i];
    }
    return sqrt(e) / fmax(sqrt(r), 1e-12);
}

static void expect_close(const char *what, const float *got, const double *want, int64_t n,
                         double tol)
{
    double err = norm_error(got, want, n);
    print_message("    %-28s normalised error %.2e (tol %.0e)\n", what, err, tol);
    if (!(err <= tol)) fail_msg("%s: normalised error %g > %g", what, err, tol);
}

static void expect_loss(const char *what, double got, double want, double tol)
{
    print_message("    %-28s loss %.9g (torch %.9g)\n", what, got, want);
    if (!(fabs(got - want) <= tol * (1.0 + fabs(want))))
        fail_msg("%s: loss %.10g, torch %.10g", what, got, want);
}

/* One forward with gradients (buffers zeroed, scale 1): into grad (student input) and the
 * adapter's gradients. */
static double run_forward(fkd_distiller *d, const fkd_distill_inputs *in, float *grad,
                          float *margins)
{
    fkd_param *p;
    int np = fkd_distiller_params(d, &p);
    for (int k = 0; k < np; k++) memset(p[k].grad, 0, (size_t)p[k].numel * sizeof(float));
    bool tap = d->needs.flags & FKD_DISTILL_NEED_STUDENT_TAP;
    fkd_distill_outputs out = {.grad_scale = 1.0f, .margins = margins};
    if (tap) out.d_student_tap = grad;
    else out.d_student_emb = grad;
    double loss;
    if (fkd_distiller_forward(d, in, &out, &loss) != FKD_OK) fail_msg("%s", fkd_last_error());
    return loss;
}

/* ---- PyTorch references ------------------------------------------------------------- */

static bool close_to(float a, float b) { return fabsf(a - b) <= 1e-6f + 1e-5f * fabsf(b); }

/* A second forward with grad_scale 0.5 ADDS half the gradient: the buffers then hold 1.5
 * times what the first forward (scale 1) left in `grad` and in the adapter's gradients. */
static void check_accumulation(fkd_distiller *d, const fkd_distill_inputs *in, float *grad,
                               int64_t n)
{
    fkd_param *p;
    int np = fkd_distiller_params(d, &p);
    float *want = malloc((size_t)n * sizeof *want), *want_p[2] = {NULL, NULL};
    for (int64_t i = 0; i < n; i++) want[i] = 1.5f * grad[i];
    for (int k = 0; k < np; k++) {
        want_p[k] = malloc((size_t)p[k].numel * sizeof(float));
        for (int64_t i = 0; i < p[k].numel; i++) want_p[k][i] = 1.5f * p[k].grad[i];
    }
    bool tap = d->needs.flags & FKD_DISTILL_NEED_STUDENT_TAP;
    fkd_distill_outputs out = {.grad_scale = 0.5f};
    if (tap) out.d_student_tap = grad;
    else out.d_student_emb = grad;
    double loss;
    assert_int_equal(fkd_distiller_forward(d, in, &out, &loss), FKD_OK);
    for (int64_t i = 0; i < n; i++) assert_true(close_to(grad[i], want[i]));
    for (int k = 0; k < np; k++) {
        for (int64_t i = 0; i < p[k].numel; i++) assert_true(close_to(p[k].grad[i], want_p[k][i]));
        free(want_p[k]);
    }
    free(want);
}

static void check_case(const char *name)
{
    print_message("  %s\n", name);
    fixture f;
    fixture_load(&f, name);
    fkd_distiller *d = fixture_create(&f);
    fkd_distill_inputs in = fixture_inputs(&f, 0);
    int gs = f.a[D_S_TAP].data ? D_S_TAP : D_S_EMB;
    int64_t n = f.a[gs].info.numel;
    float *grad = calloc((size_t)n, sizeof *grad), margins[64];
    double loss = run_forward(d, &in, grad, margins);
    expect_loss(name, loss, *(double *)f.a[LOSS].data, LOSS_TOL);
    expect_close("d student", grad, f.a[gs].data, n, GRAD_TOL);
    if (f.a[D_ADAPTER_W].data) {
        fkd_param *p;
        fkd_distiller_params(d, &p);
        expect_close("d adapter.weight", p[0].grad, f.a[D_ADAPTER_W].data, p[0].numel, GRAD_TOL);
        expect_close("d adapter.bias", p[1].grad, f.a[D_ADAPTER_B].data, p[1].numel, GRAD_TOL);
    }
    if (f.a[MARGINS].data) expect_close("margins", margins, f.a[MARGINS].data, in.batch, 1e-6);
    check_accumulation(d, &in, grad, n);
    /* evaluation (out NULL) gives the same loss */
    double eval;
    assert_int_equal(fkd_distiller_forward(d, &in, NULL, &eval), FKD_OK);
    assert_true(fabs(eval - loss) <= 1e-6 * (1.0 + fabs(loss)));
    free(grad);
    fkd_distiller_free(d);
    fixture_free(&f);
}

static void test_matches_torch(void **unused)
{
    (void)unused;
    static const char *const cases[] = {
        "shrinkteanet", "shrinkteanet_adapter", "shrinkteanet_tap", "fitnet",
        "fitnet_adapter", "fitnet_tap", "triplet", "triplet_wide", "margin", "margin_s30"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_case(cases[i]);
}

/* ---- central differences ------------------------------------------------------------ */

typedef struct {
    fixture *f;
    ref2_batch x;
    ref2_adapter a;
    double thr[2][8];
    int n_thr;
} fd_ctx;

/* The number the fixture's options.txt gives `key` (every case writes all its keys). */
static double opt(const fixture *f, const char *key)
{
    for (int k = 0; k < f->n_items; k++)
        if (strcmp(f->keys[k], key) == 0) return atof(f->values[k]);
    fail_msg("fixture has no option %s", key);
    return NAN;
}

static double ref_loss(const fd_ctx *c)
{
    const fixture *f = c->f;
    const char *m = f->method;
    if (strcmp(m, "shrinkteanet") == 0) return ref2_mapped_loss(true, &c->x, &c->a);
    if (strcmp(m, "fitnet") == 0) return ref2_mapped_loss(false, &c->x, &c->a);
    if (strcmp(m, "triplet") == 0)
        return ref2_triplet_loss(&c->x, opt(f, "margin_min"), opt(f, "margin_max"));
    if (strcmp(m, "margin") == 0)
        return ref2_margin_loss(&c->x, opt(f, "margin_min"), opt(f, "margin_max"), opt(f, "s"),
                                NULL);
    return ref2_ekd_loss(&c->x, c->thr[0], c->thr[1], c->n_thr, (int64_t)opt(f, "top_k"),
                         opt(f, "temperature"), opt(f, "pos_weight"), opt(f, "neg_weight"));
}

static double *to_double(const float *x, int64_t n)
{
    double *y = malloc((size_t)n * sizeof *y);
    for (int64_t i = 0; i < n; i++) y[i] = x[i];
    return y;
}

/* Central differences of ref_loss w.r.t. every element of x (n), step h. */
static void numeric_grad(fd_ctx *c, double *x, int64_t n, double h, double *g)
{
    for (int64_t i = 0; i < n; i++) {
        double keep = x[i];
        x[i] = keep + h;
        double lp = ref_loss(c);
        x[i] = keep - h;
        double lm = ref_loss(c);
        x[i] = keep;
        g[i] = (lp - lm) / (2.0 * h);
    }
}

static void gradcheck_case(const char *name, double h)
{
    print_message("  %s (h = %g)\n", name, h);
    fixture f;
    fixture_load(&f, name);
    fkd_distiller *d = fixture_create(&f);
    fkd_distill_inputs in = fixture_inputs(&f, 0);
    bool tap = f.a[S_TAP].data != NULL;
    int64_t b = in.batch, ns = tap ? f.a[S_TAP].info.numel : b * f.ctx.d_s;
    int64_t nt = tap ? f.a[T_TAP].info.numel : b * f.ctx.d_t;
    float *grad = calloc((size_t)ns, sizeof *grad);
    run_forward(d, &in, grad, NULL);

    fd_ctx c = {.f = &f};
    double *s = to_double(tap ? in.student_tap : in.student_emb, ns);
    double *t = to_double(tap ? in.teacher_tap : in.teacher_emb, nt);
    double *w = f.a[W_T].data ? to_double(f.a[W_T].data, f.a[W_T].info.numel) : NULL;
    c.x = (ref2_batch){b, f.ctx.d_s, f.ctx.d_t, f.ctx.classes, s, t, in.labels, w};
    fkd_distill_tensor st[2];
    c.n_thr = fkd_distiller_state_tensors(d, st, 2) ? (int)st[0].numel : 0;
    for (int k = 0; k < c.n_thr; k++) { /* thresholds after the step: constants of its loss */
        c.thr[0][k] = st[0].data[k];
        c.thr[1][k] = st[1].data[k];
    }
    fkd_param *p;
    int np = fkd_distiller_params(d, &p);
    double *aw = np ? to_double(p[0].data, p[0].numel) : NULL;
    double *ab = np ? to_double(p[1].data, p[1].numel) : NULL;
    int64_t hw = tap ? f.a[S_TAP].info.dims[2] * f.a[S_TAP].info.dims[3] : 1;
    c.a = (ref2_adapter){ns / b / hw, nt / b / hw, hw, aw, ab};

    double *g = malloc((size_t)ns * sizeof *g);
    numeric_grad(&c, s, ns, h, g);
    expect_close("d student vs central diff", grad, g, ns, FD_TOL);
    for (int k = 0; k < np; k++) {
        double *wk = k == 0 ? aw : ab;
        double *gk = malloc((size_t)p[k].numel * sizeof *gk);
        numeric_grad(&c, wk, p[k].numel, h, gk);
        expect_close(p[k].name, p[k].grad, gk, p[k].numel, FD_TOL);
        free(gk);
    }
    free(g);
    free(aw);
    free(ab);
    free(s);
    free(t);
    free(w);
    free(grad);
    fkd_distiller_free(d);
    fixture_free(&f);
}

static void test_gradients_central_differences(void **unused)
{
    (void)unused;
    static const char *const cases[] = {
        "shrinkteanet", "shrinkteanet_adapter", "shrinkteanet_tap", "fitnet", "fitnet_adapter",
        "fitnet_tap", "triplet", "triplet_wide", "margin", "margin_s30", "ekd_fast"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) gradcheck_case(cases[i], 1e-5);
    gradcheck_case("ekd", 1e-6); /* temperature 0.01: a smaller step */
}

/* One thread and several give the same loss and gradient (OpenMP reductions only change
 * the order of float sums): |Δloss| ≤ 1e-6·(1 + |loss|), gradient normalised error ≤ 1e-6. */
static void test_threads_agree(void **unused)
{
    (void)unused;
    static const char *const cases[] = {"shrinkteanet_tap", "fitnet_tap", "triplet", "margin"};
    int threads = omp_get_max_threads();
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        fixture f;
        fixture_load(&f, cases[c]);
        fkd_distiller *d = fixture_create(&f);
        fkd_distill_inputs in = fixture_inputs(&f, 0);
        int64_t n = f.a[f.a[D_S_TAP].data ? D_S_TAP : D_S_EMB].info.numel;
        float *g1 = calloc((size_t)n, sizeof *g1), *g2 = calloc((size_t)n, sizeof *g2);
        double *g1d = malloc((size_t)n * sizeof *g1d);
        omp_set_num_threads(1);
        double l1 = run_forward(d, &in, g1, NULL);
        omp_set_num_threads(threads > 1 ? threads : 2);
        double l2 = run_forward(d, &in, g2, NULL);
        omp_set_num_threads(threads);
        for (int64_t i = 0; i < n; i++) g1d[i] = g1[i];
        assert_true(fabs(l1 - l2) <= 1e-6 * (1.0 + fabs(l1)));
        expect_close(cases[c], g2, g1d, n, 1e-6);
        free(g1);
        free(g2);
        free(g1d);
        fkd_distiller_free(d);
        fixture_free(&f);
    }
}

/* ---- EKD: running thresholds -------------------------------------------------------- */

static void ekd_steps(const char *name)
{
    print_message("  %s\n", name);
    fixture f;
    fixture_load(&f, name);
    fkd_distiller *d = fixture_create(&f);
    fkd_distill_tensor st[2];
    assert_int_equal(fkd_distiller_state_tensors(d, st, 2), 2);
    assert_string_equal(st[0].name, "student_thresholds");
    assert_string_equal(st[1].name, "teacher_thresholds");
    int64_t K = st[0].numel, b = f.b, n = b * f.ctx.d_s;
    assert_int_equal(K, f.a[S_THR].info.dims[1]);
    for (int64_t k = 0; k < K; k++) assert_true(st[0].data[k] == 0.0f && st[1].data[k] == 0.0f);
    const double *loss = f.a[LOSS].data, *grads = f.a[D_S_EMB].data;
    const double *s_thr = f.a[S_THR].data, *t_thr = f.a[T_THR].data;
    float *grad = calloc((size_t)n, sizeof *grad), saved[2][8];
    int64_t steps = f.a[LOSS].info.dims[0];
    for (int64_t k = 0; k < steps; k++) {
        fkd_distill_inputs in = fixture_inputs(&f, k);
        if (k == 1)
            for (int64_t j = 0; j < K; j++) {
                saved[0][j] = st[0].data[j];
                saved[1][j] = st[1].data[j];
            }
        /* evaluation first: must not move the thresholds */
        double eval;
        assert_int_equal(fkd_distiller_forward(d, &in, NULL, &eval), FKD_OK);
        if (k > 0) {
            expect_close("student thresholds kept", st[0].data, s_thr + (k - 1) * K, K, EKD_TOL);
        }
        memset(grad, 0, (size_t)n * sizeof *grad);
        double l = run_forward(d, &in, grad, NULL);
        char what[64];
        snprintf(what, sizeof what, "step %lld", (long long)k);
        expect_loss(what, l, loss[k], EKD_TOL);
        expect_close("d student", grad, grads + k * n, n, EKD_TOL);
        expect_close("student thresholds", st[0].data, s_thr + k * K, K, 1e-5);
        expect_close("teacher thresholds", st[1].data, t_thr + k * K, K, 1e-5);
    }
    /* checkpoint: restoring the thresholds saved after step 0 replays step 1 exactly */
    for (int64_t j = 0; j < K; j++) {
        st[0].data[j] = saved[0][j];
        st[1].data[j] = saved[1][j];
    }
    fkd_distill_inputs in = fixture_inputs(&f, 1);
    expect_loss("step 1 replayed", run_forward(d, &in, grad, NULL), loss[1], EKD_TOL);
    expect_close("student thresholds replayed", st[0].data, s_thr + K, K, 1e-5);
    free(grad);
    fkd_distiller_free(d);
    fixture_free(&f);
}

static void test_ekd_thresholds_over_steps(void **unused)
{
    (void)unused;
    ekd_steps("ekd");
    ekd_steps("ekd_fast");
}

/* ---- MarginDistillation: margins ---------------------------------------------------- */

static void test_margin_range(void **unused)
{
    (void)unused;
    /* 4 samples, 3 classes in 2-d: the teacher puts sample 0 on its centre (cos 1 → M_max),
     * sample 1 at 60° (cos 0.5 → midway), sample 2 opposite its centre (cos −1 → M_min),
     * sample 3 at 90° (cos 0 → M_min). */
    const float centres[] = {1, 0, 0, 1, -1, 0};
    const float teacher[] = {2, 0, 0.8660254f, 0.5f, 1, 0, 0, 3};
    const float student[] = {1, 0.1f, 0.3f, 1, -1, 0.2f, 0.5f, 0.5f};
    const int64_t labels[] = {0, 1, 2, 0};
    fkd_distill_option items[] = {{"margin_min", "0.25", NULL, false},
                                  {"margin_max", "0.45", NULL, false}};
    fkd_distill_options opts;
    fkd_distill_options_init(&opts, "distill[1]", items, 2);
    fkd_distill_context ctx = {.max_batch = 4, .d_s = 2, .d_t = 2, .classes = 3};
    fkd_distiller *d;
    assert_int_equal(fkd_distiller_create(&d, "margin", &opts, &ctx), FKD_OK);
    assert_false(d->needs.flags & FKD_DISTILL_GIVES_MARGINS);
    fkd_distill_inputs in = {.batch = 4, .student_emb = student, .teacher_emb = teacher,
                             .teacher_centres = centres, .labels = labels};
    float grad[8] = {0}, m[4];
    fkd_distill_outputs out = {.grad_scale = 1, .d_student_emb = grad, .margins = m};
    double loss;
    assert_int_equal(fkd_distiller_forward(d, &in, &out, &loss), FKD_OK);
    const double want[4] = {0.45, 0.35, 0.25, 0.25};
    for (int i = 0; i < 4; i++) {
        assert_true(m[i] >= 0.25f - 1e-7f && m[i] <= 0.45f + 1e-7f);
        assert_true(fabs(m[i] - want[i]) < 1e-6);
    }
    fkd_distiller_free(d);
}

/* ---- batches without pairs of one kind -------------------------------------------- */

/* Loss and gradient of `method` on 4 samples of 3-d embeddings with `labels`. */
static const float edge_s[12] = {1, 0.2f, 0, 0.3f, 1, 0.1f, 0, 0.4f, 1, 0.6f, 0.5f, 0.2f};

static double edge_loss(const char *method, const int64_t *labels, float *grad,
                        fkd_distill_tensor *thr, fkd_distill_option *opt)
{
    const float *s = edge_s;
    const float t[12] = {0.9f, 0.1f, 0.1f, 0.2f, 1, 0, 0.1f, 0.3f, 1, 0.5f, 0.7f, 0.1f};
    fkd_distill_options opts;
    fkd_distill_options_init(&opts, "distill[0]", opt, opt ? 1 : 0);
    fkd_distill_context ctx = {.max_batch = 4, .d_s = 3, .d_t = 3, .classes = 4};
    fkd_distiller *d;
    assert_int_equal(fkd_distiller_create(&d, method, &opts, &ctx), FKD_OK);
    fkd_distill_inputs in = {.batch = 4, .student_emb = s, .teacher_emb = t, .labels = labels};
    fkd_distill_outputs out = {.grad_scale = 1, .d_student_emb = grad};
    double loss;
    assert_int_equal(fkd_distiller_forward(d, &in, &out, &loss), FKD_OK);
    if (thr) {
        fkd_distill_tensor st[2];
        assert_int_equal(fkd_distiller_state_tensors(d, st, 2), 2);
        for (int k = 0; k < 2; k++) thr[k].numel = st[k].numel;
        for (int64_t k = 0; k < st[0].numel; k++) {
            thr[0].data[k] = st[0].data[k];
            thr[1].data[k] = st[1].data[k];
        }
    }
    fkd_distiller_free(d);
    return loss;
}

static void test_batches_without_pairs(void **unused)
{
    (void)unused;
    const int64_t distinct[4] = {0, 1, 2, 3}, same[4] = {2, 2, 2, 2};
    float grad[12] = {0}, s_thr[8] = {0}, t_thr[8] = {0};
    fkd_distill_tensor thr[2] = {{"s", s_thr, 0}, {"t", t_thr, 0}};
    /* triplet: no positive pair, or no negative: no triplet, loss 0, no gradient */
    assert_true(edge_loss("triplet", distinct, grad, NULL, NULL) == 0.0);
    assert_true(edge_loss("triplet", same, grad, NULL, NULL) == 0.0);
    for (int i = 0; i < 12; i++) assert_true(grad[i] == 0.0f);
    /* ekd without negatives: thresholds stay at 0, the positives still count */
    double l = edge_loss("ekd", same, grad, thr, NULL);
    assert_true(isfinite(l) && l > 0.0);
    for (int k = 0; k < 6; k++) assert_true(s_thr[k] == 0.0f && t_thr[k] == 0.0f);
    /* ekd without positives: the negatives alone, thresholds moved by 1% of a score */
    memset(grad, 0, sizeof grad);
    l = edge_loss("ekd", distinct, grad, thr, NULL);
    assert_true(isfinite(l));
    assert_true(s_thr[0] != 0.0f && fabsf(s_thr[0]) < 0.011f);
    for (int i = 0; i < 12; i++) assert_true(isfinite(grad[i]));
    /* FPR 0.9 rounds to anchor 1: position n clamps to the last (lowest) negative */
    fkd_distill_option fpr = {"fpr", "[0.9, 0.5]", NULL, false};
    l = edge_loss("ekd", distinct, grad, thr, &fpr);
    assert_int_equal(thr[0].numel, 2);
    double lowest = 1.0;
    for (int i = 0; i < 4; i++)
        for (int j = i + 1; j < 4; j++) {
            const float *a = edge_s + 3 * i, *b = edge_s + 3 * j;
            double c = (a[0] * b[0] + a[1] * b[1] + a[2] * b[2]) /
                       sqrt((a[0] * a[0] + a[1] * a[1] + a[2] * a[2]) *
                            (b[0] * b[0] + b[1] * b[1] + b[2] * b[2]));
            lowest = fmin(lowest, c);
        }
    assert_true(isfinite(l) && fabs(s_thr[0] - 0.01 * lowest) < 1e-7);
}

/* ---- registry, weights, parameters ------------------------------------------------- */

static fkd_status two_shapes(void *user, bool teacher, const char *name,
                             fkd_distill_tap_shape *shape)
{
    (void)user;
    if (strcmp(name, "stage3") && strcmp(name, "stage2"))
        return FKD_FAIL(FKD_ERR_NOTFOUND, "no tap %s", name);
    *shape = teacher ? (fkd_distill_tap_shape){256, 7, 7} : (fkd_distill_tap_shape){128, 7, 7};
    if (!teacher && strcmp(name, "stage2") == 0) *shape = (fkd_distill_tap_shape){64, 14, 14};
    return FKD_OK;
}

static void test_registry_weights_and_params(void **unused)
{
    (void)unused;
    static const char *const names[] = {"shrinkteanet", "triplet", "margin", "ekd", "fitnet"};
    for (int i = 0; i < 5; i++) {
        const fkd_distill_method *m;
        assert_int_equal(fkd_distill_method_find(names[i], &m), FKD_OK);
        assert_string_equal(m->name, names[i]);
    }
    fkd_distill_option items[] = {{"tap", "stage3", NULL, false}};
    fkd_distill_options opts;
    fkd_distill_options_init(&opts, "distill[3]", items, 1);
    fkd_distill_context ctx = {.max_batch = 2, .d_s = 128, .d_t = 512, .classes = 0,
                               .tap_shape = two_shapes};
    fkd_distiller *d;
    assert_int_equal(fkd_distiller_create(&d, "fitnet", &opts, &ctx), FKD_OK);
    assert_true(fkd_distiller_default_weight(d) == 100.0);
    assert_true(d->needs.flags & FKD_DISTILL_NEED_STUDENT_TAP);
    assert_false(d->needs.flags & FKD_DISTILL_NEED_STUDENT_EMB);
    fkd_param *p;
    assert_int_equal(fkd_distiller_params(d, &p), 2);
    assert_string_equal(p[0].name, "distill[3].adapter.weight");
    assert_string_equal(p[1].name, "distill[3].adapter.bias");
    assert_int_equal(p[0].ndims, 4);
    assert_int_equal(p[0].dims[0], 256);
    assert_int_equal(p[0].dims[1], 128);
    assert_int_equal(p[1].numel, 256);
    assert_true(p[0].trainable && p[0].grad && !p[0].is_buffer);
    /* torch Conv2d initialisation bound 1/√128, and not all zero */
    double bound = 1.0 / sqrt(128.0), amax = 0.0;
    for (int64_t k = 0; k < p[0].numel; k++) amax = fmax(amax, fabs(p[0].data[k]));
    assert_true(amax > 0.5 * bound && amax <= bound);
    fkd_distiller_free(d);

    fkd_distill_options_init(&opts, "distill[0]", NULL, 0);
    ctx.d_t = 128;
    assert_int_equal(fkd_distiller_create(&d, "shrinkteanet", &opts, &ctx), FKD_OK);
    assert_true(fkd_distiller_default_weight(d) == 1.0);
    assert_int_equal(fkd_distiller_params(d, &p), 0); /* equal widths: no adapter */
    fkd_distiller_free(d);
}

/* The trainer's contract for a distiller's parameters: an extra list for nn/optim, its
 * gradients zeroed with the student's. Fitting only the regressor of fitnet_adapter
 * (student and teacher fixed) with plain SGD must lower the loss at every step. */
static void test_adapter_trains_with_optimizer(void **unused)
{
    (void)unused;
    fixture f;
    fixture_load(&f, "fitnet_adapter");
    fkd_distiller *d = fixture_create(&f);
    fkd_param *p;
    int np = fkd_distiller_params(d, &p);
    assert_int_equal(np, 2);
    fkd_optim_config cfg = fkd_optim_sgd_defaults();
    cfg.momentum = 0.0f;
    cfg.weight_decay = 0.0f;
    fkd_optim *opt;
    fkd_param *lists[1] = {p};
    int counts[1] = {np};
    assert_int_equal(fkd_optim_create(&opt, &cfg, lists, counts, 1), FKD_OK);
    fkd_distill_inputs in = fixture_inputs(&f, 0);
    float grad[8 * 16];
    double first = 0.0, last = INFINITY;
    for (int step = 0; step < 30; step++) {
        double loss = run_forward(d, &in, grad, NULL); /* zeroes the params' grads first */
        if (step == 0) first = loss;
        assert_true(loss < last);
        last = loss;
        assert_int_equal(fkd_optim_step(opt, 0.2f), FKD_OK);
    }
    print_message("    regressor fit: loss %.4f -> %.4f in 30 SGD steps\n", first, last);
    assert_true(last < 0.5 * first);
    fkd_optim_free(opt);
    fkd_distiller_free(d);
    fixture_free(&f);
}

/* ---- errors ------------------------------------------------------------------------- */

static void expect_create_error(const char *method, fkd_distill_option *items, int n,
                                fkd_distill_context ctx, const char *const *needles)
{
    fkd_distill_options opts;
    fkd_distill_options_init(&opts, "distill[2]", items, n);
    fkd_distiller *d = (fkd_distiller *)1;
    fkd_status st = fkd_distiller_create(&d, method, &opts, &ctx);
    print_message("    %s: %s\n", method, fkd_last_error());
    assert_int_equal(st, FKD_ERR_ARG);
    assert_null(d);
    for (int k = 0; needles[k]; k++)
        if (!strstr(fkd_last_error(), needles[k]))
            fail_msg("message \"%s\" lacks \"%s\"", fkd_last_error(), needles[k]);
}

static void test_option_errors(void **unused)
{
    (void)unused;
    fkd_distill_context emb = {.max_batch = 8, .d_s = 16, .d_t = 16, .classes = 10};
    fkd_distill_context taps = emb;
    taps.tap_shape = two_shapes;
    {
        fkd_distill_option it[] = {{"margin_min", "0.3", "r.yaml:3:5", false},
                                   {"margin_max", "0.1", "r.yaml:4:5", false}};
        const char *const want[] = {"distill[2]: triplet:", "margin_max 0.1 is below "
                                    "margin_min 0.3", NULL};
        expect_create_error("triplet", it, 2, emb, want);
    }
    {
        fkd_distill_option it[] = {{"fpr", "[0.1, 2]", "r.yaml:7:10", false}};
        const char *const want[] = {"r.yaml:7:10: distill[2].fpr: 2 is out of range (0, 1)", NULL};
        expect_create_error("ekd", it, 1, emb, want);
    }
    {
        fkd_distill_option it[] = {{"top_k", "0", "r.yaml:8:10", false}};
        const char *const want[] = {"distill[2].top_k: 0 is out of range", NULL};
        expect_create_error("ekd", it, 1, emb, want);
    }
    {
        fkd_distill_option it[] = {{"thresholds", "6", "r.yaml:9:3", false}};
        const char *const want[] = {"r.yaml:9:3: distill[2].thresholds: unknown parameter of "
                                    "method ekd (known: fpr, top_k, temperature, momentum, "
                                    "pos_weight, neg_weight)", NULL};
        expect_create_error("ekd", it, 1, emb, want);
    }
    {
        fkd_distill_option it[] = {{"margin_max", "1.7", NULL, false}};
        const char *const want[] = {"distill[2].margin_max: 1.7 is out of range", NULL};
        expect_create_error("margin", it, 1, emb, want);
    }
    {
        fkd_distill_context c = emb;
        c.d_t = 512;
        const char *const want[] = {"margin: ", "equal embedding sizes, got student 16 and "
                                    "teacher 512", NULL};
        expect_create_error("margin", NULL, 0, c, want);
        c = emb;
        c.classes = 0;
        const char *const none[] = {"the context has no classes", NULL};
        expect_create_error("margin", NULL, 0, c, none);
    }
    {
        fkd_distill_option it[] = {{"student_tap", "stage2", NULL, false},
                                   {"teacher_tap", "stage3", NULL, false}};
        const char *const want[] = {"fitnet: student tap \"stage2\" (64x14x14) and teacher tap "
                                    "\"stage3\" (256x7x7) differ in spatial size", NULL};
        expect_create_error("fitnet", it, 2, taps, want);
    }
    {
        fkd_distill_option it[] = {{"tap", "stage3", NULL, false},
                                   {"adapter", "false", NULL, false}};
        const char *const want[] = {"student tap \"stage3\" (128x7x7) and teacher tap "
                                    "\"stage3\" (256x7x7) differ in channels and adapter is "
                                    "false", NULL};
        expect_create_error("shrinkteanet", it, 2, taps, want);
    }
    {
        fkd_distill_option it[] = {{"tap", "stage3", NULL, false}};
        const char *const want[] = {"student tap \"stage3\" requested, but the trainer "
                                    "exposes no taps", NULL};
        expect_create_error("shrinkteanet", it, 1, emb, want);
    }
    {
        fkd_distill_option it[] = {{"adapter", "false", NULL, false}};
        fkd_distill_context c = emb;
        c.d_t = 24;
        const char *const want[] = {"student embedding (16) and teacher embedding (24) differ "
                                    "in channels", NULL};
        expect_create_error("fitnet", it, 1, c, want);
    }
    /* forward: labels outside the classes are refused before the method runs */
    fkd_distiller *d;
    assert_int_equal(fkd_distiller_create(&d, "triplet", NULL, &emb), FKD_OK);
    float s[32] = {1, 2}, t[32] = {2, 1};
    int64_t y[2] = {0, 10};
    fkd_distill_inputs in = {.batch = 2, .student_emb = s, .teacher_emb = t, .labels = y};
    double loss;
    assert_int_equal(fkd_distiller_forward(d, &in, NULL, &loss), FKD_ERR_ARG);
    assert_non_null(strstr(fkd_last_error(), "label 10 of sample 1 outside [0, 10)"));
    fkd_distiller_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_torch),
        cmocka_unit_test(test_gradients_central_differences),
        cmocka_unit_test(test_threads_agree),
        cmocka_unit_test(test_ekd_thresholds_over_steps),
        cmocka_unit_test(test_margin_range),
        cmocka_unit_test(test_batches_without_pairs),
        cmocka_unit_test(test_registry_weights_and_params),
        cmocka_unit_test(test_adapter_trains_with_optimizer),
        cmocka_unit_test(test_option_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
