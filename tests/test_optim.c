/* nn/optim against torch.optim (SGD, AdamW; PyTorch 1.13): five updates of three small
 * tensors with fixed gradients and a changing lr, written by scripts/gen_optim_fixtures.py.
 * The fkd_param arrays are built by hand (no engine): list A holds p0 (with 4 elements
 * of layout padding), p1 (a "batch norm weight", decay flag off), a frozen weight and a
 * running-statistics buffer; list B holds p2 (a "head" weight). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "io/npy.h"
#include "nn/optim.h"

#define FIX "tests/fixtures/optim/"
#define NP 3 /* trained parameters in the fixtures */
#define STEPS 5
#define PAD0 4 /* layout padding after p0 */

/* float32 updates vs PyTorch's float32 kernels (which may vectorise and fuse): after five
 * steps weights agree to |a - b| <= 2e-6 + 1e-5·|b|; measured worst is printed. */
#define ABS_TOL 2e-6
#define REL_TOL 1e-5

static const char *const param_names[NP] = {"p0", "bn1.weight", "head.weight"};

typedef struct {
    fkd_npy_array w[NP], g[NP], lr;
    float *data[NP], *grad[NP];
    float frozen_data[6], frozen_grad[6], buffer_data[3];
    fkd_param list_a[4], list_b[1];
    fkd_param *lists[2];
    int counts[2];
} rig;

static void load(fkd_npy_array *a, const char *dir, const char *file, fkd_npy_dtype dtype)
{
    char path[256];
    snprintf(path, sizeof path, FIX "%s/%s", dir, file);
    if (fkd_npy_read(path, dtype, a) != FKD_OK) fail_msg("%s", fkd_last_error());
}

static void fill_param(fkd_param *p, const char *name, const fkd_npy_info *shape_of_history,
                       float *data, float *grad, size_t storage)
{
    memset(p, 0, sizeof *p);
    p->name = name;
    p->ndims = shape_of_history->ndims - 1; /* history has a leading step axis */
    p->numel = 1;
    for (int d = 0; d < p->ndims; d++) {
        p->dims[d] = shape_of_history->dims[d + 1];
        p->numel *= p->dims[d];
    }
    p->data = data;
    p->grad = grad;
    p->storage = storage;
    p->trainable = true;
    p->decay = true;
}

static void rig_init(rig *r, const char *dir)
{
    memset(r, 0, sizeof *r);
    char file[32];
    for (int i = 0; i < NP; i++) {
        snprintf(file, sizeof file, "w%d.npy", i);
        load(&r->w[i], dir, file, FKD_NPY_F32);
        snprintf(file, sizeof file, "g%d.npy", i);
        load(&r->g[i], dir, file, FKD_NPY_F32);
        size_t numel = (size_t)(r->w[i].info.numel / (STEPS + 1));
        size_t storage = numel + (i == 0 ? PAD0 : 0);
        r->data[i] = calloc(storage, sizeof(float));
        r->grad[i] = calloc(storage, sizeof(float));
        assert_non_null(r->data[i]);
        assert_non_null(r->grad[i]);
        memcpy(r->data[i], r->w[i].data, numel * sizeof(float));
        fill_param(i == 2 ? &r->list_b[0] : &r->list_a[i], param_names[i], &r->w[i].info,
                   r->data[i], r->grad[i], storage);
    }
    load(&r->lr, dir, "lr.npy", FKD_NPY_F64);
    r->list_a[1].decay = false; /* what the engine sets for batch norm and PReLU */
    for (int k = 0; k < 6; k++) r->frozen_data[k] = 1.0f, r->frozen_grad[k] = 0.5f;
    for (int k = 0; k < 3; k++) r->buffer_data[k] = 2.0f;
    r->list_a[2] = (fkd_param){.name = "features.weight",
                               .ndims = 1,
                               .dims = {6},
                               .numel = 6,
                               .data = r->frozen_data,
                               .grad = r->frozen_grad,
                               .storage = 6};
    r->list_a[3] = (fkd_param){.name = "bn1.running_mean",
                               .ndims = 1,
                               .dims = {3},
                               .numel = 3,
                               .data = r->buffer_data,
                               .storage = 3,
                               .is_buffer = true};
    r->lists[0] = r->list_a;
    r->lists[1] = r->list_b;
    r->counts[0] = 4;
    r->counts[1] = 1;
}

static void rig_free(rig *r)
{
    for (int i = 0; i < NP; i++) {
        fkd_npy_free(&r->w[i]);
        fkd_npy_free(&r->g[i]);
        free(r->data[i]);
        free(r->grad[i]);
    }
    fkd_npy_free(&r->lr);
}

static size_t numel_of(const rig *r, int i) { return (size_t)(r->g[i].info.numel / STEPS); }

/* Feeds the fixture gradients of update k and takes the step with its lr. */
static void rig_step(rig *r, fkd_optim *o, int k)
{
    for (int i = 0; i < NP; i++)
        memcpy(r->grad[i], (const float *)r->g[i].data + (size_t)k * numel_of(r, i),
               numel_of(r, i) * sizeof(float));
    assert_int_equal(fkd_optim_step(o, (float)((const double *)r->lr.data)[k]), FKD_OK);
}

/* Worst |a - b| / (ABS_TOL + REL_TOL·|b|) over n values; <= 1 passes. */
static double worst_ratio(const float *got, const float *want, size_t n)
{
    double worst = 0;
    for (size_t j = 0; j < n; j++) {
        double ratio = fabs((double)got[j] - want[j]) / (ABS_TOL + REL_TOL * fabs((double)want[j]));
        if (ratio > worst) worst = ratio;
    }
    return worst;
}

/* Returns the worst error as a fraction of the tolerance. */
static double assert_weights_match(const rig *r, int after_step, const char *dir)
{
    double worst = 0;
    for (int i = 0; i < NP; i++) {
        size_t n = numel_of(r, i);
        const float *want = (const float *)r->w[i].data + (size_t)(after_step + 1) * n;
        double ratio = worst_ratio(r->data[i], want, n);
        if (ratio > 1)
            fail_msg("%s: %s after step %d: error %.2f x tolerance", dir, param_names[i],
                     after_step, ratio);
        if (ratio > worst) worst = ratio;
    }
    for (int k = 0; k < PAD0; k++) assert_true(r->data[0][numel_of(r, 0) + k] == 0.0f);
    return worst;
}

typedef struct {
    const char *dir;
    fkd_optim_config cfg;
} optim_case;

static optim_case make_case(const char *dir)
{
    optim_case c = {dir, fkd_optim_sgd_defaults()};
    if (strncmp(dir, "adamw", 5) == 0) c.cfg = fkd_optim_adamw_defaults();
    if (strcmp(dir, "sgd_nesterov") == 0) c.cfg.nesterov = true;
    if (strcmp(dir, "sgd_plain") == 0) c.cfg.momentum = 0;
    if (strcmp(dir, "adamw") == 0) c.cfg.weight_decay = 0.1f;
    if (strcmp(dir, "adamw_nodecay_p1") == 0) c.cfg.weight_decay = 0.05f;
    /* The fixtures exempt p1 from decay in these two cases (a param group with decay 0). */
    if (strcmp(dir, "sgd_nesterov") == 0 || strcmp(dir, "adamw_nodecay_p1") == 0)
        c.cfg.decay_policy = FKD_DECAY_NO_BN_PRELU;
    return c;
}

static void assert_state_matches(const rig *r, const fkd_optim *o, const char *dir)
{
    int n = fkd_optim_state_count(o);
    for (int s = 0; s < n; s++) {
        fkd_optim_state st;
        assert_int_equal(fkd_optim_state_get(o, s, &st), FKD_OK);
        if (st.dtype == FKD_OPTIM_STATE_I64) {
            assert_string_equal(st.name, "step");
            assert_int_equal(*(int64_t *)st.data, STEPS);
            continue;
        }
        int i = 0;
        while (i < NP && st.param != (i == 2 ? &r->list_b[0] : &r->list_a[i])) i++;
        assert_true(i < NP);
        const char *slot = st.name + strlen(param_names[i]) + 1;
        char file[64];
        snprintf(file, sizeof file, "%s%d.npy", slot, i);
        fkd_npy_array want;
        load(&want, dir, file, FKD_NPY_F32);
        assert_int_equal(st.count, st.param->storage);
        double ratio = worst_ratio(st.data, want.data, (size_t)want.info.numel);
        if (ratio > 1) fail_msg("%s: state %s: error %.2f x tolerance", dir, st.name, ratio);
        for (size_t k = (size_t)want.info.numel; k < st.count; k++)
            assert_true(((float *)st.data)[k] == 0.0f);
        fkd_npy_free(&want);
    }
}

static void test_matches_torch_optimizers(void **state)
{
    (void)state;
    const char *dirs[] = {"sgd", "sgd_nesterov", "sgd_plain", "adamw", "adamw_nodecay_p1"};
    const int slots[] = {1, 1, 0, 2, 2};
    for (int c = 0; c < 5; c++) {
        optim_case oc = make_case(dirs[c]);
        rig r;
        rig_init(&r, oc.dir);
        fkd_optim *o;
        assert_int_equal(fkd_optim_create(&o, &oc.cfg, r.lists, r.counts, 2), FKD_OK);
        assert_int_equal(fkd_optim_param_count(o), NP);
        assert_int_equal(fkd_optim_state_count(o), NP * slots[c] + 1);
        double worst = 0;
        for (int k = 0; k < STEPS; k++) {
            rig_step(&r, o, k);
            double ratio = assert_weights_match(&r, k, oc.dir);
            if (ratio > worst) worst = ratio;
        }
        print_message("%-17s worst weight error %.3f x tolerance\n", oc.dir, worst);
        assert_int_equal(fkd_optim_steps(o), STEPS);
        assert_state_matches(&r, o, oc.dir);
        /* The frozen weight and the buffer never move. */
        for (int k = 0; k < 6; k++) assert_true(r.frozen_data[k] == 1.0f);
        for (int k = 0; k < 3; k++) assert_true(r.buffer_data[k] == 2.0f);
        fkd_optim_free(o);
        rig_free(&r);
    }
}

/* Copies every state tensor out of `o` into plain arrays and loads them into `into`. */
static void transfer_state(const fkd_optim *o, fkd_optim *into)
{
    for (int s = 0; s < fkd_optim_state_count(o); s++) {
        fkd_optim_state st;
        assert_int_equal(fkd_optim_state_get(o, s, &st), FKD_OK);
        size_t bytes =
            st.count * (st.dtype == FKD_OPTIM_STATE_F32 ? sizeof(float) : sizeof(int64_t));
        void *copy = malloc(bytes);
        assert_non_null(copy);
        memcpy(copy, st.data, bytes);
        assert_int_equal(fkd_optim_state_load(into, st.name, st.dtype, copy, st.count), FKD_OK);
        free(copy);
    }
}

static void test_state_round_trip_continues_identically(void **state)
{
    (void)state;
    const char *dirs[] = {"sgd_nesterov", "adamw"};
    for (int c = 0; c < 2; c++) {
        optim_case oc = make_case(dirs[c]);
        rig a, b;
        rig_init(&a, oc.dir);
        rig_init(&b, oc.dir);
        fkd_optim *oa, *ob;
        assert_int_equal(fkd_optim_create(&oa, &oc.cfg, a.lists, a.counts, 2), FKD_OK);
        for (int k = 0; k < 2; k++) rig_step(&a, oa, k);
        /* "Resume": b gets a's weights and optimizer state through plain arrays. */
        for (int i = 0; i < NP; i++)
            memcpy(b.data[i], a.data[i], (numel_of(&a, i) + (i == 0 ? PAD0 : 0)) * sizeof(float));
        assert_int_equal(fkd_optim_create(&ob, &oc.cfg, b.lists, b.counts, 2), FKD_OK);
        transfer_state(oa, ob);
        assert_int_equal(fkd_optim_steps(ob), 2);
        for (int k = 2; k < STEPS; k++) {
            rig_step(&a, oa, k);
            rig_step(&b, ob, k);
        }
        for (int i = 0; i < NP; i++)
            assert_memory_equal(a.data[i], b.data[i], numel_of(&a, i) * sizeof(float));
        assert_weights_match(&b, STEPS - 1, oc.dir);
        fkd_optim_free(oa);
        fkd_optim_free(ob);
        rig_free(&a);
        rig_free(&b);
    }
}

static void test_state_load_errors(void **state)
{
    (void)state;
    rig r;
    rig_init(&r, "adamw");
    fkd_optim_config cfg = fkd_optim_adamw_defaults();
    fkd_optim *o;
    assert_int_equal(fkd_optim_create(&o, &cfg, r.lists, r.counts, 2), FKD_OK);
    float buf[16] = {0};
    assert_int_equal(fkd_optim_state_load(o, "p0.momentum_buffer", FKD_OPTIM_STATE_F32, buf, 16),
                     FKD_ERR_NOTFOUND);
    assert_non_null(
        strstr(fkd_last_error(), "'p0.momentum_buffer': no such tensor in this adamw optimizer"));
    assert_int_equal(fkd_optim_state_load(o, "p0.exp_avg", FKD_OPTIM_STATE_F32, buf, 12),
                     FKD_ERR_FORMAT);
    assert_non_null(strstr(fkd_last_error(), "'p0.exp_avg': expected 16 elements, got 12"));
    assert_int_equal(fkd_optim_state_load(o, "step", FKD_OPTIM_STATE_F32, buf, 1), FKD_ERR_FORMAT);
    assert_non_null(strstr(fkd_last_error(), "'step': expected int64, got float32"));
    int64_t negative = -3;
    assert_int_equal(fkd_optim_state_load(o, "step", FKD_OPTIM_STATE_I64, &negative, 1),
                     FKD_ERR_FORMAT);
    fkd_optim_state st;
    assert_int_equal(fkd_optim_state_get(o, 99, &st), FKD_ERR_ARG);
    assert_int_equal(fkd_optim_state_get(o, 1, &st), FKD_OK);
    assert_string_equal(st.name, "p0.exp_avg_sq");
    fkd_optim_free(o);
    rig_free(&r);
}

/* The OpenMP path (one tensor above the threshold) gives the same bits as updating the
 * same elements in slices small enough to run on one thread. */
static void test_parallel_update_equals_serial(void **state)
{
    (void)state;
    enum { N = 40000, SLICE = 1000 };
    float *w_big = malloc(N * sizeof(float)), *g_big = malloc(N * sizeof(float));
    float *w_small = malloc(N * sizeof(float)), *g_small = malloc(N * sizeof(float));
    assert_true(w_big && g_big && w_small && g_small);
    fkd_rng rng;
    fkd_rng_seed(&rng, 5, 0);
    for (int i = 0; i < N; i++) w_big[i] = w_small[i] = (float)fkd_rng_normal(&rng);
    fkd_optim_config cfgs[2] = {fkd_optim_sgd_defaults(), fkd_optim_adamw_defaults()};
    cfgs[0].nesterov = true;
    for (int c = 0; c < 2; c++) {
        fkd_param big = {.name = "big",
                         .ndims = 1,
                         .dims = {N},
                         .numel = N,
                         .data = w_big,
                         .grad = g_big,
                         .storage = N,
                         .trainable = true,
                         .decay = true};
        fkd_param slices[N / SLICE];
        fkd_optim *one, *many[N / SLICE];
        fkd_param *list = &big;
        int count = 1;
        assert_int_equal(fkd_optim_create(&one, &cfgs[c], &list, &count, 1), FKD_OK);
        for (int s = 0; s < N / SLICE; s++) {
            slices[s] = big;
            slices[s].data = w_small + s * SLICE;
            slices[s].grad = g_small + s * SLICE;
            slices[s].storage = SLICE;
            fkd_param *l = &slices[s];
            assert_int_equal(fkd_optim_create(&many[s], &cfgs[c], &l, &count, 1), FKD_OK);
        }
        for (int k = 0; k < 3; k++) {
            for (int i = 0; i < N; i++) g_big[i] = g_small[i] = (float)fkd_rng_normal(&rng);
            assert_int_equal(fkd_optim_step(one, 0.01f), FKD_OK);
            for (int s = 0; s < N / SLICE; s++)
                assert_int_equal(fkd_optim_step(many[s], 0.01f), FKD_OK);
        }
        assert_memory_equal(w_big, w_small, N * sizeof(float));
        fkd_optim_free(one);
        for (int s = 0; s < N / SLICE; s++) fkd_optim_free(many[s]);
    }
    free(w_big);
    free(g_big);
    free(w_small);
    free(g_small);
}

static void test_grad_norm_clip_and_finite_check(void **state)
{
    (void)state;
    rig r;
    rig_init(&r, "sgd");
    /* Gradients 3, 4 in p0 and 12 in p2, zeros elsewhere: norm 13. The frozen param's
     * gradient (0.5 each) must not count. */
    memset(r.grad[0], 0, 16 * sizeof(float));
    memset(r.grad[1], 0, 5 * sizeof(float));
    memset(r.grad[2], 0, 24 * sizeof(float));
    r.grad[0][0] = 3;
    r.grad[0][5] = 4;
    r.grad[2][7] = 12;
    double norm;
    assert_int_equal(fkd_params_grad_norm(r.lists, r.counts, 2, &norm), FKD_OK);
    assert_true(fabs(norm - 13.0) < 1e-12);
    /* Only list A (arcface_torch clips the backbone alone): norm 5. */
    assert_int_equal(fkd_params_grad_norm(r.lists, r.counts, 1, &norm), FKD_OK);
    assert_true(fabs(norm - 5.0) < 1e-12);

    assert_int_equal(fkd_params_clip_grad_norm(r.lists, r.counts, 2, 20.0, &norm), FKD_OK);
    assert_true(r.grad[2][7] == 12.0f); /* under the limit: untouched */
    assert_int_equal(fkd_params_clip_grad_norm(r.lists, r.counts, 2, 6.5, &norm), FKD_OK);
    assert_true(fabs(norm - 13.0) < 1e-12);
    float scale = (float)(6.5 / (13.0 + 1e-6)); /* torch: max_norm / (norm + 1e-6) */
    assert_true(r.grad[0][0] == 3.0f * scale);
    assert_true(r.grad[2][7] == 12.0f * scale);
    assert_true(r.frozen_grad[0] == 0.5f);

    assert_int_equal(fkd_params_check_finite(r.lists, r.counts, 2), FKD_OK);
    r.frozen_grad[2] = NAN; /* not trained: ignored */
    assert_int_equal(fkd_params_check_finite(r.lists, r.counts, 2), FKD_OK);
    r.grad[2][9] = INFINITY;
    assert_int_equal(fkd_params_check_finite(r.lists, r.counts, 2), FKD_ERR_NUMERIC);
    assert_non_null(strstr(fkd_last_error(),
                           "gradient of 'head.weight' is not finite (element 9 of 24 is inf)"));
    r.grad[0][3] = NAN;
    assert_int_equal(fkd_params_check_finite(r.lists, r.counts, 2), FKD_ERR_NUMERIC);
    assert_non_null(strstr(fkd_last_error(), "gradient of 'p0' is not finite (element 3 of 16"));
    assert_int_equal(fkd_params_clip_grad_norm(r.lists, r.counts, 2, 1.0, &norm), FKD_ERR_NUMERIC);
    assert_true(isnan(norm));
    rig_free(&r);
}

static void test_bad_configurations(void **state)
{
    (void)state;
    rig r;
    rig_init(&r, "sgd");
    fkd_optim *o;
    fkd_optim_config c = fkd_optim_sgd_defaults();
    c.momentum = 1.5f;
    assert_int_equal(fkd_optim_create(&o, &c, r.lists, r.counts, 2), FKD_ERR_ARG);
    assert_non_null(strstr(fkd_last_error(), "momentum must be in [0, 1)"));
    assert_null(o);
    c = fkd_optim_sgd_defaults();
    c.momentum = 0;
    c.nesterov = true;
    assert_int_equal(fkd_optim_create(&o, &c, r.lists, r.counts, 2), FKD_ERR_ARG);
    c = fkd_optim_adamw_defaults();
    c.eps = 0;
    assert_int_equal(fkd_optim_create(&o, &c, r.lists, r.counts, 2), FKD_ERR_ARG);
    assert_non_null(strstr(fkd_last_error(), "adamw: eps must be positive"));
    c = fkd_optim_sgd_defaults();
    c.weight_decay = -1;
    assert_int_equal(fkd_optim_create(&o, &c, r.lists, r.counts, 2), FKD_ERR_ARG);
    int bad_counts[2] = {4, -1};
    c = fkd_optim_sgd_defaults();
    assert_int_equal(fkd_optim_create(&o, &c, r.lists, bad_counts, 2), FKD_ERR_ARG);

    assert_int_equal(fkd_optim_create(&o, &c, r.lists, r.counts, 2), FKD_OK);
    assert_int_equal(fkd_optim_step(o, NAN), FKD_ERR_ARG);
    assert_int_equal(fkd_optim_step(o, -0.1f), FKD_ERR_ARG);
    assert_int_equal(fkd_optim_steps(o), 0);
    fkd_optim_free(o);
    fkd_optim_free(NULL);

    fkd_optim_kind kind;
    fkd_decay_policy policy;
    assert_int_equal(fkd_optim_kind_parse("adamw", &kind), FKD_OK);
    assert_int_equal(kind, FKD_OPTIM_ADAMW);
    assert_int_equal(fkd_optim_kind_parse("adam", &kind), FKD_ERR_ARG);
    assert_non_null(strstr(fkd_last_error(), "unknown optimizer 'adam' (sgd, adamw)"));
    assert_int_equal(fkd_decay_policy_parse("no_bn_prelu", &policy), FKD_OK);
    assert_int_equal(policy, FKD_DECAY_NO_BN_PRELU);
    assert_string_equal(fkd_decay_policy_name(FKD_DECAY_ALL), "all");
    rig_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_torch_optimizers),
        cmocka_unit_test(test_state_round_trip_continues_identically),
        cmocka_unit_test(test_state_load_errors),
        cmocka_unit_test(test_parallel_update_equals_serial),
        cmocka_unit_test(test_grad_norm_clip_and_finite_check),
        cmocka_unit_test(test_bad_configurations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
