/* distill: every registered method against PyTorch fixtures (loss and autograd gradients,
 * scripts/gen_distill_fixtures.py) and against central differences of a double
 * reference forward (tests/support/distill_ref.c); the registry; the options getters and
 * their messages; the instance wrapper's input checks.
 *
 * Tolerances (fp32 library vs float64 references, B = 8, d ≤ 24, C = 10):
 *   loss:      |a − r| ≤ 1e-6 + 2e-5·|r|
 *   gradients: ‖a − r‖ / max(‖a‖, ‖r‖) ≤ 1e-5   (normalised error, as ggml's tests)
 *   central differences on the double reference: step h = 1e-5, same 1e-5 bound (the
 *   truncation error h²·f''' is ~1e-10, far below the fp32 rounding of the analytic side)
 *   double reference vs PyTorch loss: 1e-9 relative.
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

#include "distill/distiller.h"
#include "io/npy.h"
#include "tests/support/distill_ref.h"

#define FIX "tests/fixtures/distill/"
#define LOSS_ABS 1e-6
#define LOSS_REL 2e-5
#define GRAD_TOL 1e-5
#define FD_STEP 1e-5
#define REF_REL 1e-9
#define EXTRA_BATCH 3 /* max_batch = B + 3: forward must not assume b = max_batch */
#define MAX_OPTS 8

/* ---- a fixture case -------------------------------------------------------------------- */

enum { IN_S_EMB, IN_T_EMB, IN_W_S, IN_W_T, IN_S_TAP, IN_T_TAP, N_IN };
static const char *const in_names[N_IN] = {"s_emb", "t_emb", "w_s", "w_t", "s_tap", "t_tap"};

typedef struct {
    char name[32], method[16];
    fkd_npy_array f[N_IN], d[N_IN]; /* inputs as float and as double */
    bool has[N_IN];
    fkd_npy_array loss, grad[N_IN]; /* expected: d_s_emb, d_w_s, d_s_tap */
    bool has_grad[N_IN];
    char keys[MAX_OPTS][128], values[MAX_OPTS][128], places[MAX_OPTS][300];
    fkd_distill_option opts[MAX_OPTS];
    int n_opts;
    int64_t b, d_s, d_t, classes;
    fkd_distill_tap_shape tap_s, tap_t;
} fixture;

static bool load_opt(fkd_npy_array *a, const char *dir, const char *file, fkd_npy_dtype t)
{
    char path[256];
    snprintf(path, sizeof path, FIX "%s/%s.npy", dir, file);
    FILE *probe = fopen(path, "rb");
    if (!probe) return false;
    fclose(probe);
    if (fkd_npy_read(path, t, a) != FKD_OK) fail_msg("%s", fkd_last_error());
    return true;
}

static void read_options(fixture *fx)
{
    char path[128], line[128];
    snprintf(path, sizeof path, FIX "%s/options.txt", fx->name);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    int lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *sp = strchr(line, ' ');
        assert_non_null(sp);
        assert_true(fx->n_opts < MAX_OPTS);
        int i = fx->n_opts++;
        char *value = sp + 1;
        *sp = '\0';
        value[strcspn(value, "\n")] = '\0';
        snprintf(fx->keys[i], sizeof fx->keys[i], "%s", line);
        snprintf(fx->values[i], sizeof fx->values[i], "%s", value);
        snprintf(fx->places[i], sizeof fx->places[i], "%s:%d:%d", path, lineno,
                 (int)(sp + 1 - line) + 1);
        fx->opts[i] = (fkd_distill_option){fx->keys[i], fx->values[i], fx->places[i], false};
    }
    fclose(f);
}

static fkd_distill_tap_shape tap_shape_of(const fkd_npy_array *a)
{
    return (fkd_distill_tap_shape){a->info.dims[1], a->info.dims[2], a->info.dims[3]};
}

static void fixture_load(fixture *fx, const char *name)
{
    memset(fx, 0, sizeof *fx);
    snprintf(fx->name, sizeof fx->name, "%s", name);
    snprintf(fx->method, sizeof fx->method, "%.*s", (int)strcspn(name, "_"), name);
    for (int i = 0; i < N_IN; i++) {
        fx->has[i] = load_opt(&fx->f[i], name, in_names[i], FKD_NPY_F32);
        if (fx->has[i]) load_opt(&fx->d[i], name, in_names[i], FKD_NPY_F64);
        char gname[32];
        snprintf(gname, sizeof gname, "d_%s", in_names[i]);
        fx->has_grad[i] = load_opt(&fx->grad[i], name, gname, FKD_NPY_F64);
    }
    assert_true(load_opt(&fx->loss, name, "loss", FKD_NPY_F64));
    read_options(fx);
    int first = fx->has[IN_S_EMB] ? IN_S_EMB : IN_S_TAP;
    fx->b = fx->f[first].info.dims[0];
    fx->d_s = fx->has[IN_S_EMB] ? fx->f[IN_S_EMB].info.dims[1] : 16;
    fx->d_t = fx->has[IN_T_EMB] ? fx->f[IN_T_EMB].info.dims[1] : 16;
    fx->classes = fx->has[IN_W_S] ? fx->f[IN_W_S].info.dims[0] : 0;
    if (fx->has[IN_S_TAP]) fx->tap_s = tap_shape_of(&fx->f[IN_S_TAP]);
    if (fx->has[IN_T_TAP]) fx->tap_t = tap_shape_of(&fx->f[IN_T_TAP]);
}

static void fixture_free(fixture *fx)
{
    for (int i = 0; i < N_IN; i++) {
        fkd_npy_free(&fx->f[i]);
        fkd_npy_free(&fx->d[i]);
        fkd_npy_free(&fx->grad[i]);
    }
    fkd_npy_free(&fx->loss);
}

/* The trainer's tap lookup: this fixture's taps are called "stage3". */
static fkd_status fixture_tap_shape(void *user, bool teacher, const char *name,
                                    fkd_distill_tap_shape *shape)
{
    const fixture *fx = user;
    if (strcmp(name, "stage3") != 0 || !fx->has[teacher ? IN_T_TAP : IN_S_TAP])
        return FKD_FAIL(FKD_ERR_NOTFOUND, "no %s tap named \"%s\"",
                        teacher ? "teacher" : "student", name);
    *shape = teacher ? fx->tap_t : fx->tap_s;
    return FKD_OK;
}

static fkd_distill_context fixture_context(fixture *fx)
{
    return (fkd_distill_context){.max_batch = fx->b + EXTRA_BATCH, .d_s = fx->d_s,
                                 .d_t = fx->d_t, .classes = fx->classes, .scale = 64.0,
                                 .tap_shape = fixture_tap_shape, .tap_user = fx};
}

static fkd_distiller *fixture_create(fixture *fx)
{
    fkd_distill_options o;
    for (int i = 0; i < fx->n_opts; i++) fx->opts[i].read = false;
    fkd_distill_options_init(&o, "distill[0]", fx->opts, fx->n_opts);
    fkd_distill_context ctx = fixture_context(fx);
    fkd_distiller *d = NULL;
    if (fkd_distiller_create(&d, fx->method, &o, &ctx) != FKD_OK)
        fail_msg("%s: %s", fx->name, fkd_last_error());
    return d;
}

static fkd_distill_inputs fixture_inputs(int64_t b, float *const *f)
{
    return (fkd_distill_inputs){.batch = b, .student_emb = f[IN_S_EMB], .teacher_emb = f[IN_T_EMB],
                                .student_centres = f[IN_W_S], .teacher_centres = f[IN_W_T],
                                .student_tap = f[IN_S_TAP], .teacher_tap = f[IN_T_TAP],
                                .step = 0};
}

static ref_params fixture_ref_params(const fixture *fx)
{
    ref_params p;
    memset(&p, 0, sizeof p);
    for (int i = 0; i < fx->n_opts; i++) {
        const char *k = fx->keys[i];
        double v = strtod(fx->values[i], NULL);
        if (!strcmp(k, "T")) p.T = v;
        if (!strcmp(k, "s")) p.s = v;
        if (!strcmp(k, "alpha")) p.alpha = v;
        if (!strcmp(k, "beta")) p.beta = v;
        if (!strcmp(k, "gamma")) p.gamma = v;
        if (!strcmp(k, "distance_weight")) p.distance_weight = v;
        if (!strcmp(k, "angle_weight")) p.angle_weight = v;
        if (!strcmp(k, "list_length")) p.list_length = (int64_t)v;
        if (!strcmp(k, "order")) p.order = (int64_t)v;
        if (!strcmp(k, "normalize")) p.normalize = !strcmp(fx->values[i], "true");
    }
    return p;
}

static ref_batch fixture_ref_batch(const fixture *fx, int64_t b, double *const *d)
{
    ref_batch x = {.b = b, .d_s = fx->d_s, .d_t = fx->d_t, .classes = fx->classes,
                   .f_s = fx->tap_s.c * fx->tap_s.h * fx->tap_s.w,
                   .f_t = fx->tap_t.c * fx->tap_t.h * fx->tap_t.w,
                   .s_emb = d[IN_S_EMB], .t_emb = d[IN_T_EMB], .w_s = d[IN_W_S],
                   .w_t = d[IN_W_T], .s_tap = d[IN_S_TAP], .t_tap = d[IN_T_TAP]};
    return x;
}

/* ‖a − r‖ / max(‖a‖, ‖r‖), 0 when both are 0. */
static double norm_err_fd(const float *a, const double *r, int64_t n)
{
    double num = 0.0, na = 0.0, nr = 0.0;
    for (int64_t i = 0; i < n; i++) {
        num += (a[i] - r[i]) * (a[i] - r[i]);
        na += (double)a[i] * a[i];
        nr += r[i] * r[i];
    }
    double den = sqrt(na > nr ? na : nr);
    return den > 0 ? sqrt(num) / den : 0.0;
}

static void check_loss(const char *what, double got, double want)
{
    if (!(fabs(got - want) <= LOSS_ABS + LOSS_REL * fabs(want)))
        fail_msg("%s: loss %.10g, want %.10g", what, got, want);
}

/* The student inputs a case differentiates, and their gradient buffers in the outputs. */
static const int grad_inputs[3] = {IN_S_EMB, IN_W_S, IN_S_TAP};

static float **grad_slot(fkd_distill_outputs *out, int in)
{
    return in == IN_S_EMB ? &out->d_student_emb
                          : (in == IN_W_S ? &out->d_student_centres : &out->d_student_tap);
}

static void run_case(const char *name)
{
    fixture fx;
    fixture_load(&fx, name);
    fkd_distiller *d = fixture_create(&fx);
    float *f[N_IN] = {0};
    double *dd[N_IN] = {0};
    for (int i = 0; i < N_IN; i++) {
        f[i] = fx.has[i] ? fx.f[i].data : NULL;
        dd[i] = fx.has[i] ? fx.d[i].data : NULL;
    }
    double want = *(double *)fx.loss.data;

    /* 1. loss and gradients against PyTorch; gradients accumulate with out.scale */
    fkd_distill_outputs out = {.grad_scale = 1.0f};
    float *g[N_IN] = {0};
    for (int k = 0; k < 3; k++) {
        int i = grad_inputs[k];
        if (!fx.has_grad[i]) continue;
        g[i] = calloc((size_t)fx.f[i].info.numel, sizeof(float));
        *grad_slot(&out, i) = g[i];
    }
    fkd_distill_inputs in = fixture_inputs(fx.b, f);
    double loss;
    if (fkd_distiller_forward(d, &in, &out, &loss) != FKD_OK) fail_msg("%s", fkd_last_error());
    check_loss(name, loss, want);
    for (int k = 0; k < 3; k++) {
        int i = grad_inputs[k];
        if (!g[i]) continue;
        double e = norm_err_fd(g[i], fx.grad[i].data, fx.grad[i].info.numel);
        if (!(e <= GRAD_TOL)) fail_msg("%s: d_%s vs torch: error %.3g", name, in_names[i], e);
    }
    /* a second call with scale 0.5 adds half the gradient: 1.5 × torch's */
    out.grad_scale = 0.5f;
    if (fkd_distiller_forward(d, &in, &out, &loss) != FKD_OK) fail_msg("%s", fkd_last_error());
    for (int k = 0; k < 3; k++) {
        int i = grad_inputs[k];
        if (!g[i]) continue;
        int64_t n = fx.grad[i].info.numel;
        double *scaled = malloc((size_t)n * sizeof(double));
        for (int64_t q = 0; q < n; q++) scaled[q] = 1.5 * ((double *)fx.grad[i].data)[q];
        double e = norm_err_fd(g[i], scaled, n);
        free(scaled);
        if (!(e <= GRAD_TOL)) fail_msg("%s: accumulated d_%s: error %.3g", name, in_names[i], e);
    }
    /* evaluation (no outputs) gives the same loss */
    double eval_loss;
    assert_int_equal(fkd_distiller_forward(d, &in, NULL, &eval_loss), FKD_OK);
    assert_true(fabs(eval_loss - loss) <= 1e-12 * fabs(loss) + 1e-15);

    /* 2. the double reference agrees with PyTorch, and its central differences with the
     *    library's analytic gradient */
    ref_params rp = fixture_ref_params(&fx);
    ref_batch rb = fixture_ref_batch(&fx, fx.b, dd);
    double ref = ref_distill_loss(fx.method, &rp, &rb);
    if (!(fabs(ref - want) <= REF_REL * fabs(want)))
        fail_msg("%s: double reference %.12g vs torch %.12g", name, ref, want);
    for (int k = 0; k < 3; k++) {
        int i = grad_inputs[k];
        if (!g[i]) continue;
        int64_t n = fx.d[i].info.numel;
        double *x = fx.d[i].data, *num = malloc((size_t)n * sizeof(double));
        for (int64_t q = 0; q < n; q++) {
            double keep = x[q];
            x[q] = keep + FD_STEP;
            double up = ref_distill_loss(fx.method, &rp, &rb);
            x[q] = keep - FD_STEP;
            double down = ref_distill_loss(fx.method, &rp, &rb);
            x[q] = keep;
            num[q] = (up - down) / (2.0 * FD_STEP);
        }
        /* g holds 1.5 × the gradient after the accumulation check */
        for (int64_t q = 0; q < n; q++) num[q] *= 1.5;
        double e = norm_err_fd(g[i], num, n);
        free(num);
        if (!(e <= GRAD_TOL))
            fail_msg("%s: d_%s vs central differences: error %.3g", name, in_names[i], e);
        print_message("  %-14s d_%-6s vs central differences: %.2e\n", name, in_names[i], e);
    }

    /* 3. a smaller batch (the first b − 3 rows) matches the reference on those rows */
    int64_t small = fx.b - EXTRA_BATCH;
    in = fixture_inputs(small, f);
    rb = fixture_ref_batch(&fx, small, dd);
    assert_int_equal(fkd_distiller_forward(d, &in, NULL, &loss), FKD_OK);
    check_loss(name, loss, ref_distill_loss(fx.method, &rp, &rb));

    for (int i = 0; i < N_IN; i++) free(g[i]);
    fkd_distiller_free(d);
    fixture_free(&fx);
}

#define CASE_TEST(id)                                   \
    static void test_case_##id(void **state)            \
    {                                                   \
        (void)state;                                    \
        run_case(#id);                                  \
    }
CASE_TEST(kd)
CASE_TEST(kd_t1)
CASE_TEST(darkrank)
CASE_TEST(darkrank_long)
CASE_TEST(sp)
CASE_TEST(sp_tap)
CASE_TEST(cckd)
CASE_TEST(cckd_order4)
CASE_TEST(rkd)
CASE_TEST(rkd_raw)
CASE_TEST(rkd_outlier)
CASE_TEST(l2)
CASE_TEST(l2_raw)
CASE_TEST(cosine)

/* ---- registry ---------------------------------------------------------------------------- */

static void test_registry_lists_and_finds_methods(void **state)
{
    (void)state;
    static const char *const names[] = {"kd", "darkrank", "sp", "cckd", "rkd", "l2",
                                        "cosine", "shrinkteanet", "triplet", "margin", "ekd",
                                        "fitnet"};
    assert_int_equal(fkd_distill_method_count(), 12);
    for (int i = 0; i < 12; i++) {
        const fkd_distill_method *m = fkd_distill_method_at(i), *found;
        assert_non_null(m);
        assert_string_equal(m->name, names[i]);
        assert_true(strlen(m->summary) > 10);
        assert_non_null(m->create);
        assert_non_null(m->forward);
        assert_non_null(m->free);
        assert_true(m->needs & FKD_DISTILL_NEED_STUDENT_EMB);
        assert_int_equal(fkd_distill_method_find(names[i], &found), FKD_OK);
        assert_ptr_equal(found, m);
    }
    assert_null(fkd_distill_method_at(-1));
    assert_null(fkd_distill_method_at(12));
}

static void test_registry_unknown_method(void **state)
{
    (void)state;
    const fkd_distill_method *m = (const void *)&m;
    assert_int_equal(fkd_distill_method_find("kdd", &m), FKD_ERR_NOTFOUND);
    assert_null(m);
    assert_string_equal(fkd_last_error(), "unknown distillation method \"kdd\" (known: kd, "
                                          "darkrank, sp, cckd, rkd, l2, cosine, shrinkteanet, "
                                          "triplet, margin, ekd, fitnet)");
    fkd_distill_options o;
    fkd_distill_options_init(&o, "distill[3]", NULL, 0);
    fkd_distill_context ctx = {.max_batch = 4, .d_s = 8, .d_t = 8};
    fkd_distiller *d = (void *)&d;
    assert_int_equal(fkd_distiller_create(&d, "KD", &o, &ctx), FKD_ERR_NOTFOUND);
    assert_null(d);
    assert_non_null(strstr(fkd_last_error(), "distill[3]: unknown distillation method \"KD\""));
}

/* ---- options ----------------------------------------------------------------------------- */

/* Creates `method` with one option key=value at recipe.yaml:14:7; returns the status. */
static fkd_status create_with(const char *method, const char *key, const char *value,
                              const fkd_distill_context *ctx)
{
    fkd_distill_option it[2] = {{key, value, "recipe.yaml:14:7", false},
                                {"weight", "0.5", "recipe.yaml:13:7", true}};
    fkd_distill_options o;
    fkd_distill_options_init(&o, "distill[2]", it, 2);
    fkd_distiller *d = NULL;
    fkd_status s = fkd_distiller_create(&d, method, &o, ctx);
    fkd_distiller_free(d);
    return s;
}

static const fkd_distill_context small_ctx = {.max_batch = 4, .d_s = 8, .d_t = 8, .classes = 3};

static void expect_error(const char *method, const char *key, const char *value,
                         const char *message)
{
    assert_int_equal(create_with(method, key, value, &small_ctx), FKD_ERR_ARG);
    assert_string_equal(fkd_last_error(), message);
}

static void test_options_errors_name_place_and_key(void **state)
{
    (void)state;
    expect_error("kd", "T", "four",
                 "recipe.yaml:14:7: distill[2].T: expected a number, got \"four\"");
    expect_error("kd", "T", "-1", "recipe.yaml:14:7: distill[2].T: -1 is out of range (0, inf)");
    expect_error("kd", "T", "0", "recipe.yaml:14:7: distill[2].T: 0 is out of range (0, inf)");
    expect_error("kd", "T", "nan",
                 "recipe.yaml:14:7: distill[2].T: expected a number, got \"nan\"");
    expect_error("kd", "T", "0x10",
                 "recipe.yaml:14:7: distill[2].T: expected a number, got \"0x10\"");
    expect_error("kd", "T", "", "recipe.yaml:14:7: distill[2].T: expected a number, got \"\"");
    expect_error("kd", "tau", "4",
                 "recipe.yaml:14:7: distill[2].tau: unknown parameter of method kd (known: T, s)");
    expect_error("darkrank", "list_length", "3.5",
                 "recipe.yaml:14:7: distill[2].list_length: expected an integer, got \"3.5\"");
    expect_error("darkrank", "list_length", "0",
                 "recipe.yaml:14:7: distill[2].list_length: 0 is out of range [1, 64]");
    expect_error("darkrank", "list_length", "99999999999999999999",
                 "recipe.yaml:14:7: distill[2].list_length: expected an integer, got "
                 "\"99999999999999999999\"");
    expect_error("rkd", "normalize", "maybe",
                 "recipe.yaml:14:7: distill[2].normalize: expected true or false, got \"maybe\"");
    expect_error("rkd", "angle_weight", "-2",
                 "recipe.yaml:14:7: distill[2].angle_weight: -2 is out of range [0, inf)");
    expect_error("sp", "tap", "", "recipe.yaml:14:7: distill[2].tap: expected a name, got an "
                                  "empty value");
    expect_error("sp", "tap", "stage3",
                 "distill[2]: sp: student tap \"stage3\" requested, but the trainer exposes no "
                 "taps");
    expect_error("cosine", "normalize", "true",
                 "recipe.yaml:14:7: distill[2].normalize: unknown parameter of method cosine "
                 "(known: none)");
    /* accepted spellings */
    assert_int_equal(create_with("rkd", "normalize", "Yes", &small_ctx), FKD_OK);
    assert_int_equal(create_with("l2", "normalize", "off", &small_ctx), FKD_OK);
    assert_int_equal(create_with("darkrank", "list_length", " +4 ", &small_ctx), FKD_OK);
    assert_int_equal(create_with("kd", "T", "2.5e0", &small_ctx), FKD_OK);
}

static void test_options_repeated_key(void **state)
{
    (void)state;
    fkd_distill_option it[2] = {{"T", "4", "recipe.yaml:14:7", false},
                                {"T", "5", "recipe.yaml:16:7", false}};
    fkd_distill_options o;
    fkd_distill_options_init(&o, "distill[1]", it, 2);
    fkd_distiller *d = NULL;
    assert_int_equal(fkd_distiller_create(&d, "kd", &o, &small_ctx), FKD_ERR_ARG);
    assert_null(d);
    assert_string_equal(fkd_last_error(), "recipe.yaml:16:7: distill[1].T: given twice (first at "
                                          "recipe.yaml:14:7)");
}

/* Every one-byte change of valid values parses or fails with FKD_ERR_ARG, never crashes
 * (run under the sanitizer build too); what parses is finite and in range. */
static void test_options_mutations(void **state)
{
    (void)state;
    static const char *const texts[] = {"[0.1, 0.01]", "2.5e-1", "-17", "true", "1,2,3"};
    for (size_t t = 0; t < sizeof texts / sizeof texts[0]; t++) {
        size_t len = strlen(texts[t]);
        for (size_t pos = 0; pos <= len; pos++) {
            for (int byte = 1; byte < 256; byte++) {
                char text[32];
                memcpy(text, texts[t], len + 1);
                text[pos] = (char)byte;
                if (pos == len) text[pos + 1] = '\0';
                fkd_distill_option it = {"k", text, "m.yaml:1:1", false};
                fkd_distill_options o;
                fkd_distill_options_init(&o, "distill[0]", &it, 1);
                double v, list[4];
                int64_t i;
                bool flag;
                int n;
                fkd_status s1 = fkd_distill_opt_float(&o, "k", 0, FKD_DISTILL_ANY, &v);
                assert_true(s1 == FKD_OK || s1 == FKD_ERR_ARG);
                if (s1 == FKD_OK) assert_true(isfinite(v));
                else assert_non_null(strstr(fkd_last_error(), "m.yaml:1:1: distill[0].k: "));
                fkd_status s2 = fkd_distill_opt_int(&o, "k", 0, -100, 100, &i);
                assert_true(s2 == FKD_OK || s2 == FKD_ERR_ARG);
                if (s2 == FKD_OK) assert_true(i >= -100 && i <= 100);
                fkd_status s3 = fkd_distill_opt_bool(&o, "k", false, &flag);
                assert_true(s3 == FKD_OK || s3 == FKD_ERR_ARG);
                fkd_status s4 = fkd_distill_opt_floats(&o, "k", NULL, 0, 1, 4,
                                                       FKD_DISTILL_POSITIVE, list, &n);
                assert_true(s4 == FKD_OK || s4 == FKD_ERR_ARG);
                if (s4 == FKD_OK)
                    for (int q = 0; q < n; q++) assert_true(isfinite(list[q]) && list[q] > 0);
            }
        }
    }
}

static void test_options_without_place_or_scope(void **state)
{
    (void)state;
    fkd_distill_option it = {"T", "x", NULL, false};
    fkd_distill_options o;
    fkd_distill_options_init(&o, NULL, &it, 1);
    double v;
    assert_int_equal(fkd_distill_opt_float(&o, "T", 4.0, FKD_DISTILL_POSITIVE, &v), FKD_ERR_ARG);
    assert_string_equal(fkd_last_error(), "distill.T: expected a number, got \"x\"");
    assert_true(it.read);
}

static void test_options_float_lists(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int n;
        double v0, v1;
    } good[] = {{"[0.1, 0.01]", 2, 0.1, 0.01}, {"0.1,0.01", 2, 0.1, 0.01},
                {"0.5", 1, 0.5, 0}, {" [ 1 , 2 ] ", 2, 1, 2}};
    for (size_t k = 0; k < sizeof good / sizeof good[0]; k++) {
        fkd_distill_option it = {"lr", good[k].text, "r.yaml:1:5", false};
        fkd_distill_options o;
        fkd_distill_options_init(&o, "distill[0]", &it, 1);
        double v[3];
        int n = -1;
        assert_int_equal(fkd_distill_opt_floats(&o, "lr", NULL, 0, 1, 3, FKD_DISTILL_POSITIVE,
                                                v, &n), FKD_OK);
        assert_int_equal(n, good[k].n);
        assert_true(v[0] == good[k].v0);
        if (n == 2) assert_true(v[1] == good[k].v1);
        assert_int_equal(fkd_distill_options_done(&o), FKD_OK);
    }
    static const struct {
        const char *text, *message;
    } bad[] = {
        {"[0.1, x]", "r.yaml:1:5: distill[0].lr: expected a list of numbers, got \"[0.1, x]\""},
        {"[0.1", "r.yaml:1:5: distill[0].lr: expected a list of numbers, got \"[0.1\" (no ']')"},
        {"[]", "r.yaml:1:5: distill[0].lr: expected a list of numbers, got \"[]\""},
        {"1,2,3,4", "r.yaml:1:5: distill[0].lr: at most 3 numbers, got more in \"1,2,3,4\""},
        {"[1, 0]", "r.yaml:1:5: distill[0].lr: 0 is out of range (0, inf)"},
        {"1,,2", "r.yaml:1:5: distill[0].lr: expected a list of numbers, got \"1,,2\""},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        fkd_distill_option it = {"lr", bad[k].text, "r.yaml:1:5", false};
        fkd_distill_options o;
        fkd_distill_options_init(&o, "distill[0]", &it, 1);
        double v[3];
        int n;
        assert_int_equal(fkd_distill_opt_floats(&o, "lr", NULL, 0, 1, 3, FKD_DISTILL_POSITIVE,
                                                v, &n), FKD_ERR_ARG);
        assert_string_equal(fkd_last_error(), bad[k].message);
    }
    /* too few, and the default when absent */
    fkd_distill_option it = {"lr", "1", "r.yaml:1:5", false};
    fkd_distill_options o;
    fkd_distill_options_init(&o, "distill[0]", &it, 1);
    double v[3], def[2] = {0.1, 0.01};
    int n;
    assert_int_equal(fkd_distill_opt_floats(&o, "lr", def, 2, 2, 3, FKD_DISTILL_ANY, v, &n),
                     FKD_ERR_ARG);
    assert_string_equal(fkd_last_error(), "r.yaml:1:5: distill[0].lr: at least 2 numbers, got 1 "
                                          "in \"1\"");
    assert_int_equal(fkd_distill_opt_floats(&o, "other", def, 2, 2, 3, FKD_DISTILL_ANY, v, &n),
                     FKD_OK);
    assert_int_equal(n, 2);
    assert_true(v[0] == 0.1 && v[1] == 0.01);
}

static void test_options_string_and_int_defaults(void **state)
{
    (void)state;
    char name[8];
    fkd_distill_option it = {"tap", "a_very_long_tap_name", "r.yaml:2:8", false};
    fkd_distill_options o;
    fkd_distill_options_init(&o, "distill[1]", &it, 1);
    assert_int_equal(fkd_distill_opt_string(&o, "tap", "", name, sizeof name), FKD_ERR_ARG);
    assert_string_equal(fkd_last_error(), "r.yaml:2:8: distill[1].tap: \"a_very_long_tap_name\" "
                                          "is longer than 7 characters");
    assert_int_equal(fkd_distill_opt_string(&o, "other", "stage2", name, sizeof name), FKD_OK);
    assert_string_equal(name, "stage2");
    int64_t k = 0;
    assert_int_equal(fkd_distill_opt_int(&o, "k", 5, 1, 9, &k), FKD_OK);
    assert_int_equal(k, 5);
    bool flag = false;
    assert_int_equal(fkd_distill_opt_bool(&o, "flag", true, &flag), FKD_OK);
    assert_true(flag);
    /* the known list of the unknown-key message is every key asked for, in order */
    it.read = false;
    o.method = "demo";
    assert_int_equal(fkd_distill_options_done(&o), FKD_ERR_ARG);
    assert_string_equal(fkd_last_error(), "r.yaml:2:8: distill[1].tap: unknown parameter of "
                                          "method demo (known: tap, other, k, flag)");
}

/* ---- defaults, wrapper checks, shapes ----------------------------------------------------- */

static fkd_distiller *make(const char *method, fkd_distill_option *items, int n,
                           const fkd_distill_context *ctx)
{
    fkd_distill_options o;
    fkd_distill_options_init(&o, "distill[0]", items, n);
    fkd_distiller *d = NULL;
    if (fkd_distiller_create(&d, method, &o, ctx) != FKD_OK) fail_msg("%s", fkd_last_error());
    return d;
}

static double loss_of(fkd_distiller *d, const fkd_distill_inputs *in)
{
    double loss;
    if (fkd_distiller_forward(d, in, NULL, &loss) != FKD_OK) fail_msg("%s", fkd_last_error());
    return loss;
}

/* Absent parameters take the documented defaults: the loss equals the explicit one. */
static void test_defaults_are_the_documented_values(void **state)
{
    (void)state;
    fixture fx;
    fixture_load(&fx, "kd");
    float *f[N_IN] = {fx.f[0].data, fx.f[1].data, fx.f[2].data, fx.f[3].data, NULL, NULL};
    fkd_distill_inputs in = fixture_inputs(fx.b, f);
    fkd_distill_context ctx = fixture_context(&fx);
    ctx.d_t = ctx.d_s;
    static const struct {
        const char *method;
        fkd_distill_option opts[3];
        int n;
    } cases[] = {
        {"kd", {{"T", "4", NULL, false}, {"s", "64", NULL, false}}, 2},
        {"darkrank", {{"alpha", "3", NULL, false}, {"beta", "3", NULL, false},
                      {"list_length", "3", NULL, false}}, 3},
        {"cckd", {{"gamma", "0.4", NULL, false}, {"order", "2", NULL, false}}, 2},
        {"rkd", {{"distance_weight", "25", NULL, false}, {"angle_weight", "50", NULL, false},
                 {"normalize", "true", NULL, false}}, 3},
        {"l2", {{"normalize", "true", NULL, false}}, 1},
    };
    /* equal widths for l2; the teacher embedding is cut to d_s columns by using its rows'
     * first 16 entries through a copy */
    float *t16 = malloc((size_t)(fx.b * fx.d_s) * sizeof(float));
    for (int64_t i = 0; i < fx.b; i++)
        memcpy(t16 + i * fx.d_s, (float *)fx.f[IN_T_EMB].data + i * fx.d_t,
               (size_t)fx.d_s * sizeof(float));
    float *wt16 = malloc((size_t)(fx.classes * fx.d_s) * sizeof(float));
    for (int64_t c = 0; c < fx.classes; c++)
        memcpy(wt16 + c * fx.d_s, (float *)fx.f[IN_W_T].data + c * fx.d_t,
               (size_t)fx.d_s * sizeof(float));
    in.teacher_emb = t16;
    in.teacher_centres = wt16;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        fkd_distill_option explicit_opts[3];
        memcpy(explicit_opts, cases[k].opts, sizeof explicit_opts);
        fkd_distiller *a = make(cases[k].method, NULL, 0, &ctx);
        fkd_distiller *b = make(cases[k].method, explicit_opts, cases[k].n, &ctx);
        double la = loss_of(a, &in), lb = loss_of(b, &in);
        if (la != lb) fail_msg("%s: default loss %.10g, explicit %.10g", cases[k].method, la, lb);
        fkd_distiller_free(a);
        fkd_distiller_free(b);
    }
    /* kd's s defaults to 64 when the trainer does not know the head's scale */
    ctx.scale = 0.0;
    fkd_distiller *a = make("kd", NULL, 0, &ctx);
    ctx.scale = 30.0;
    fkd_distiller *b = make("kd", NULL, 0, &ctx);
    fkd_distill_option s64 = {"s", "64", NULL, false};
    fkd_distiller *c = make("kd", &s64, 1, &ctx);
    assert_true(loss_of(a, &in) == loss_of(c, &in));
    assert_true(loss_of(a, &in) != loss_of(b, &in));
    fkd_distiller_free(a);
    fkd_distiller_free(b);
    fkd_distiller_free(c);
    free(t16);
    free(wt16);
    fixture_free(&fx);
}

static void test_forward_checks_inputs(void **state)
{
    (void)state;
    float s[4 * 8], t[4 * 8], g[4 * 8] = {0};
    for (int i = 0; i < 32; i++) {
        s[i] = sinf((float)i);
        t[i] = cosf((float)i * 0.7f);
    }
    fkd_distiller *d = make("cosine", NULL, 0, &small_ctx);
    assert_int_equal(d->needs.flags, FKD_DISTILL_NEED_STUDENT_EMB | FKD_DISTILL_NEED_TEACHER_EMB);
    fkd_distill_inputs in = {.batch = 4, .student_emb = s};
    fkd_distill_outputs out = {.grad_scale = 1.0f, .d_student_emb = g};
    double loss = -1;
    assert_int_equal(fkd_distiller_forward(d, &in, &out, &loss), FKD_ERR_ARG);
    assert_string_equal(fkd_last_error(), "distiller cosine: needs teacher_emb, got NULL");
    in.teacher_emb = t;
    in.batch = 5;
    assert_int_equal(fkd_distiller_forward(d, &in, &out, &loss), FKD_ERR_ARG);
    assert_string_equal(fkd_last_error(), "distiller cosine: batch 5 outside [1, 4]");
    in.batch = 0;
    assert_int_equal(fkd_distiller_forward(d, &in, &out, &loss), FKD_ERR_ARG);
    in.batch = 4;
    s[3] = NAN;
    in.step = 17;
    assert_int_equal(fkd_distiller_forward(d, &in, &out, &loss), FKD_ERR_NUMERIC);
    assert_string_equal(fkd_last_error(), "distiller cosine: loss is nan at step 17");
    fkd_distiller_free(d);
    fkd_distiller_free(NULL);
    /* embedding sizes must match for the regression baselines */
    fkd_distill_context ctx = small_ctx;
    ctx.d_t = 12;
    assert_int_equal(create_with("l2", "normalize", "true", &ctx), FKD_ERR_ARG);
    assert_string_equal(fkd_last_error(), "distill[2]: l2: needs equal embedding sizes, got "
                                          "student 8 and teacher 12 (fitnet has a regressor)");
    /* kd needs classes */
    ctx.classes = 0;
    assert_int_equal(create_with("kd", "T", "4", &ctx), FKD_ERR_ARG);
    assert_string_equal(fkd_last_error(), "distill[2]: kd: needs class centres, but the context "
                                          "has no classes");
    ctx.max_batch = 0;
    assert_int_equal(create_with("sp", "tap", "x", &ctx), FKD_ERR_ARG);
    assert_non_null(strstr(fkd_last_error(), "bad context (max_batch 0"));
}

/* Relational methods on a batch of one have nothing to relate: loss 0, no gradient. */
static void test_batch_of_one(void **state)
{
    (void)state;
    static const char *const methods[] = {"darkrank", "rkd"};
    float s[8] = {1, 2, 3, 4, 5, 6, 7, 8}, t[8] = {8, 7, 6, 5, 4, 3, 2, 1}, g[8] = {0};
    for (int k = 0; k < 2; k++) {
        fkd_distiller *d = make(methods[k], NULL, 0, &small_ctx);
        fkd_distill_inputs in = {.batch = 1, .student_emb = s, .teacher_emb = t};
        fkd_distill_outputs out = {.grad_scale = 1.0f, .d_student_emb = g};
        double loss = -1;
        assert_int_equal(fkd_distiller_forward(d, &in, &out, &loss), FKD_OK);
        assert_true(loss == 0.0);
        for (int i = 0; i < 8; i++) assert_true(g[i] == 0.0f);
        fkd_distiller_free(d);
    }
}

/* sp with a tap: the needs switch from embeddings to taps; an unknown tap fails. */
static void test_sp_tap_needs(void **state)
{
    (void)state;
    fixture fx;
    fixture_load(&fx, "sp_tap");
    fkd_distiller *d = fixture_create(&fx);
    assert_int_equal(d->needs.flags,
                     FKD_DISTILL_NEED_STUDENT_TAP | FKD_DISTILL_NEED_TEACHER_TAP);
    assert_string_equal(d->needs.student_tap, "stage3");
    assert_string_equal(d->needs.teacher_tap, "stage3");
    fkd_distiller_free(d);
    /* student tap, teacher embedding */
    fkd_distill_context ctx = fixture_context(&fx);
    fkd_distill_option one = {"student_tap", "stage3", NULL, false};
    d = make("sp", &one, 1, &ctx);
    assert_int_equal(d->needs.flags,
                     FKD_DISTILL_NEED_STUDENT_TAP | FKD_DISTILL_NEED_TEACHER_EMB);
    assert_string_equal(d->needs.teacher_tap, "");
    fkd_distiller_free(d);
    fkd_distill_option bad = {"tap", "stage9", "r.yaml:3:10", false};
    fkd_distill_options o;
    fkd_distill_options_init(&o, "distill[0]", &bad, 1);
    assert_int_equal(fkd_distiller_create(&d, "sp", &o, &ctx), FKD_ERR_NOTFOUND);
    assert_string_equal(fkd_last_error(), "no student tap named \"stage9\"");
    fixture_free(&fx);
}

/* The per-thread buffers of rkd's angle term: one thread and all threads agree. */
static void test_threads_agree(void **state)
{
    (void)state;
    fixture fx;
    fixture_load(&fx, "rkd_outlier");
    float *f[N_IN] = {fx.f[IN_S_EMB].data, fx.f[IN_T_EMB].data, NULL, NULL, NULL, NULL};
    int64_t n = fx.b * fx.d_s;
    float *g1 = calloc((size_t)n, sizeof(float)), *g2 = calloc((size_t)n, sizeof(float));
    int threads = omp_get_max_threads();
    fkd_distiller *d = fixture_create(&fx);
    fkd_distill_inputs in = fixture_inputs(fx.b, f);
    fkd_distill_outputs out = {.grad_scale = 1.0f, .d_student_emb = g1};
    double l1, l2;
    omp_set_num_threads(1);
    assert_int_equal(fkd_distiller_forward(d, &in, &out, &l1), FKD_OK);
    omp_set_num_threads(threads > 1 ? threads : 2);
    out.d_student_emb = g2;
    assert_int_equal(fkd_distiller_forward(d, &in, &out, &l2), FKD_OK);
    omp_set_num_threads(threads);
    assert_true(fabs(l1 - l2) <= 1e-12 * fabs(l1));
    double *g1d = malloc((size_t)n * sizeof(double));
    for (int64_t q = 0; q < n; q++) g1d[q] = g1[q];
    assert_true(norm_err_fd(g2, g1d, n) <= 1e-6);
    free(g1d);
    free(g1);
    free(g2);
    fkd_distiller_free(d);
    fixture_free(&fx);
}

/* The wrapper's checks for methods that read labels and give margins (MarginDistillation
 * and friends), through a hand-made method: loss = mean label, margin_i = label_i / 10. */
static fkd_status labels_forward(void *state, const fkd_distill_inputs *in,
                                 const fkd_distill_outputs *out, double *loss)
{
    (void)state;
    *loss = 0.0;
    for (int64_t i = 0; i < in->batch; i++) {
        *loss += (double)in->labels[i] / (double)in->batch;
        if (out) out->margins[i] = (float)in->labels[i] / 10.0f;
    }
    return FKD_OK;
}

static void labels_free(void *state) { (void)state; }

static int labels_params(void *state, fkd_param **params)
{
    static float w[2], g[2];
    static fkd_param p = {.name = "regressor.weight", .ndims = 1, .dims = {2}, .numel = 2,
                          .data = w, .grad = g, .storage = 2, .trainable = true, .decay = true};
    (void)state;
    *params = &p;
    return 1;
}

static int labels_state(void *state, fkd_distill_tensor *t, int max)
{
    if (max > 0) *t = (fkd_distill_tensor){"threshold", state, 1};
    return 1;
}

static void test_forward_checks_labels_and_margins(void **state)
{
    (void)state;
    static const fkd_distill_method labels_method = {
        .name = "labels", .summary = "test method", .needs = FKD_DISTILL_NEED_LABELS |
        FKD_DISTILL_GIVES_MARGINS, .forward = labels_forward, .free = labels_free,
        .state_tensors = labels_state, .params = labels_params};
    float threshold = 0.25f;
    fkd_distiller d = {.method = &labels_method, .state = &threshold,
                       .needs = {.flags = labels_method.needs}, .ctx = small_ctx};
    int64_t labels[4] = {0, 2, 1, 3};
    float margins[4] = {0};
    fkd_distill_inputs in = {.batch = 4, .labels = labels};
    fkd_distill_outputs out = {.grad_scale = 1.0f};
    double loss;
    assert_int_equal(fkd_distiller_forward(&d, &in, &out, &loss), FKD_ERR_ARG);
    assert_string_equal(fkd_last_error(), "distiller labels: label 3 of sample 3 outside [0, 3)");
    labels[3] = 1;
    assert_int_equal(fkd_distiller_forward(&d, &in, &out, &loss), FKD_ERR_ARG);
    assert_string_equal(fkd_last_error(), "distiller labels: gives margins, got no margins buffer");
    out.margins = margins;
    assert_int_equal(fkd_distiller_forward(&d, &in, &out, &loss), FKD_OK);
    assert_true(loss == 1.0);
    assert_true(margins[1] == 0.2f);
    in.labels = NULL;
    assert_int_equal(fkd_distiller_forward(&d, &in, &out, &loss), FKD_ERR_ARG);
    assert_string_equal(fkd_last_error(), "distiller labels: needs labels, got NULL");
    fkd_distill_tensor t[2];
    assert_int_equal(fkd_distiller_state_tensors(&d, t, 2), 1);
    assert_string_equal(t[0].name, "threshold");
    assert_true(t[0].data == &threshold && t[0].numel == 1);
    fkd_param *params;
    assert_int_equal(fkd_distiller_params(&d, &params), 1);
    assert_string_equal(params[0].name, "regressor.weight");
    /* the registered methods keep no running state and train no parameters */
    fkd_distiller *kd = make("cosine", NULL, 0, &small_ctx);
    assert_int_equal(fkd_distiller_state_tensors(kd, t, 2), 0);
    assert_int_equal(fkd_distiller_params(kd, &params), 0);
    assert_null(params);
    fkd_distiller_free(kd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_case_kd),
        cmocka_unit_test(test_case_kd_t1),
        cmocka_unit_test(test_case_darkrank),
        cmocka_unit_test(test_case_darkrank_long),
        cmocka_unit_test(test_case_sp),
        cmocka_unit_test(test_case_sp_tap),
        cmocka_unit_test(test_case_cckd),
        cmocka_unit_test(test_case_cckd_order4),
        cmocka_unit_test(test_case_rkd),
        cmocka_unit_test(test_case_rkd_raw),
        cmocka_unit_test(test_case_rkd_outlier),
        cmocka_unit_test(test_case_l2),
        cmocka_unit_test(test_case_l2_raw),
        cmocka_unit_test(test_case_cosine),
        cmocka_unit_test(test_registry_lists_and_finds_methods),
        cmocka_unit_test(test_registry_unknown_method),
        cmocka_unit_test(test_options_errors_name_place_and_key),
        cmocka_unit_test(test_options_repeated_key),
        cmocka_unit_test(test_options_mutations),
        cmocka_unit_test(test_options_without_place_or_scope),
        cmocka_unit_test(test_options_float_lists),
        cmocka_unit_test(test_options_string_and_int_defaults),
        cmocka_unit_test(test_defaults_are_the_documented_values),
        cmocka_unit_test(test_forward_checks_inputs),
        cmocka_unit_test(test_batch_of_one),
        cmocka_unit_test(test_sp_tap_needs),
        cmocka_unit_test(test_threads_agree),
        cmocka_unit_test(test_forward_checks_labels_and_margins),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
