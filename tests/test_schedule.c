/* nn/schedule against PyTorch: the lr of each optimizer update k, as recorded by
 * scripts/gen_optim_fixtures.py from torch schedulers (MultiStepLR, CosineAnnealingLR,
 * LambdaLR) and from arcface_torch's PolyScheduler formula. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <string.h>

#include "io/npy.h"
#include "nn/schedule.h"

/* PyTorch's CosineAnnealingLR and MultiStepLR are recursive (each lr from the previous
 * one), ours are closed forms: agree to 1e-12 absolute on lr values <= 0.1. */
#define LR_TOL 1e-12

static void assert_matches_fixture(const fkd_schedule *s, const char *fixture)
{
    assert_int_equal(fkd_schedule_check(s), FKD_OK);
    fkd_npy_array ref;
    assert_int_equal(fkd_npy_read(fixture, FKD_NPY_F64, &ref), FKD_OK);
    assert_int_equal(ref.info.ndims, 1);
    const double *want = ref.data;
    for (int64_t k = 0; k < ref.info.numel; k++) {
        double got = fkd_schedule_lr(s, k);
        if (fabs(got - want[k]) > LR_TOL)
            fail_msg("%s: step %lld: lr %.17g, PyTorch %.17g", fixture, (long long)k, got, want[k]);
    }
    fkd_npy_free(&ref);
}

static void test_poly_like_arcface_torch(void **state)
{
    (void)state;
    fkd_schedule s = fkd_schedule_defaults(FKD_SCHEDULE_POLY);
    assert_true(s.power == 2.0 && s.base_lr == 0.1);
    s.warmup_steps = 10;
    s.total_steps = 100;
    assert_matches_fixture(&s, "tests/fixtures/optim/schedule_poly.npy");
    s.warmup_steps = 0;
    assert_matches_fixture(&s, "tests/fixtures/optim/schedule_poly_nowarmup.npy");
    /* arcface_torch's formula would rise again after max_steps; ours stays at 0. */
    assert_true(fkd_schedule_lr(&s, 100) == 0.0);
    assert_true(fkd_schedule_lr(&s, 150) == 0.0);
}

static void test_multistep_like_torch(void **state)
{
    (void)state;
    fkd_schedule s = fkd_schedule_defaults(FKD_SCHEDULE_STEP);
    s.n_milestones = 3;
    s.milestones[0] = 30;
    s.milestones[1] = 60;
    s.milestones[2] = 80;
    assert_matches_fixture(&s, "tests/fixtures/optim/schedule_multistep.npy");
}

static void test_cosine_like_torch(void **state)
{
    (void)state;
    fkd_schedule s = fkd_schedule_defaults(FKD_SCHEDULE_COSINE);
    s.total_steps = 50;
    s.eta_min = 1e-4;
    assert_matches_fixture(&s, "tests/fixtures/optim/schedule_cosine.npy");
    assert_true(fkd_schedule_lr(&s, 500) == 1e-4);

    s.eta_min = 0;
    s.warmup_steps = 10;
    s.total_steps = 60;
    assert_matches_fixture(&s, "tests/fixtures/optim/schedule_cosine_warmup.npy");
}

static void test_epoch_milestones_and_constant(void **state)
{
    (void)state;
    /* arcface_torch's old mbf config (configs/ms1mv3_mbf.py, lr_step_func) multiplies by
     * 0.1 for each m in [11, 17, 22] with m - 1 <= epoch, epochs counted from 0: drops at
     * the start of epochs 10, 16, 21. With 100 steps per epoch: steps 1000, 1600, 2100. */
    fkd_schedule s = fkd_schedule_defaults(FKD_SCHEDULE_STEP);
    const int64_t epochs[] = {10, 16, 21};
    assert_int_equal(fkd_schedule_milestones_from_epochs(&s, epochs, 3, 100), FKD_OK);
    assert_int_equal(fkd_schedule_check(&s), FKD_OK);
    assert_true(fkd_schedule_lr(&s, 999) == 0.1);
    assert_true(fabs(fkd_schedule_lr(&s, 1000) - 0.01) < 1e-15);
    assert_true(fabs(fkd_schedule_lr(&s, 1600) - 0.001) < 1e-15);
    assert_true(fabs(fkd_schedule_lr(&s, 2100) - 0.0001) < 1e-15);

    fkd_schedule c = fkd_schedule_defaults(FKD_SCHEDULE_CONSTANT);
    c.base_lr = 0.05;
    c.warmup_steps = 4;
    assert_int_equal(fkd_schedule_check(&c), FKD_OK);
    assert_true(fkd_schedule_lr(&c, 0) == 0.0);
    assert_true(fkd_schedule_lr(&c, 2) == 0.025);
    assert_true(fkd_schedule_lr(&c, 4) == 0.05);
    assert_true(fkd_schedule_lr(&c, 1000000) == 0.05);
}

static void assert_check_fails(const fkd_schedule *s, const char *needle)
{
    assert_int_equal(fkd_schedule_check(s), FKD_ERR_ARG);
    if (!strstr(fkd_last_error(), needle))
        fail_msg("message \"%s\" lacks \"%s\"", fkd_last_error(), needle);
}

static void test_bad_schedules(void **state)
{
    (void)state;
    fkd_schedule s = fkd_schedule_defaults(FKD_SCHEDULE_POLY);
    assert_check_fails(&s, "total_steps (0) must exceed warmup_steps (0)");
    s.total_steps = 10;
    s.warmup_steps = 10;
    assert_check_fails(&s, "total_steps (10) must exceed warmup_steps (10)");
    s.warmup_steps = 0;
    s.base_lr = 0;
    assert_check_fails(&s, "base_lr must be positive");
    s.base_lr = 0.1;
    s.power = -1;
    assert_check_fails(&s, "power must be positive");

    fkd_schedule st = fkd_schedule_defaults(FKD_SCHEDULE_STEP);
    st.n_milestones = 2;
    st.milestones[0] = 50;
    st.milestones[1] = 50;
    assert_check_fails(&st, "milestone 1 (50)");
    st.milestones[1] = 60;
    st.gamma = 2;
    assert_check_fails(&st, "gamma must be in (0, 1]");

    fkd_schedule co = fkd_schedule_defaults(FKD_SCHEDULE_COSINE);
    co.total_steps = 10;
    co.eta_min = 0.5;
    assert_check_fails(&co, "eta_min must be in [0, base_lr]");

    fkd_schedule_kind kind;
    assert_int_equal(fkd_schedule_kind_parse("cosine", &kind), FKD_OK);
    assert_int_equal(kind, FKD_SCHEDULE_COSINE);
    assert_string_equal(fkd_schedule_kind_name(FKD_SCHEDULE_POLY), "poly");
    assert_int_equal(fkd_schedule_kind_parse("linear", &kind), FKD_ERR_ARG);
    assert_non_null(strstr(fkd_last_error(), "unknown lr schedule 'linear'"));
    assert_int_equal(fkd_schedule_milestones_from_epochs(&st, (const int64_t[]){1}, 1, 0),
                     FKD_ERR_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_poly_like_arcface_torch),
        cmocka_unit_test(test_multistep_like_torch),
        cmocka_unit_test(test_cosine_like_torch),
        cmocka_unit_test(test_epoch_milestones_and_constant),
        cmocka_unit_test(test_bad_schedules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
