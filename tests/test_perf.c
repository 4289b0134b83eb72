/* nn/perf: the model benchmark behind `facekd bench --arch`. Speeds are not asserted (a
 * timed test would measure the machine's load); the test checks that a tiny run reports
 * consistent numbers and that bad configurations are errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <string.h>

#include "nn/perf.h"

static void check_consistent(const fkd_perf_config *c, const fkd_perf_result *r)
{
    assert_true(r->threads >= 1);
    assert_non_null(r->isa);
    assert_true(r->parameters > 0 && r->macs > 0);
    assert_true(r->step_min_s > 0 && r->step_min_s <= r->step_median_s);
    /* images/s and GFLOP/s follow from the median step (relative 1e-9). */
    assert_true(fabs(r->images_per_s - c->batch / r->step_median_s) <= 1e-9 * r->images_per_s);
    double flops = 2.0 * (double)r->macs * (c->train ? 3 : 1) * r->images_per_s / 1e9;
    assert_true(fabs(r->gflops - flops) <= 1e-9 * flops);
    if (r->peak_gflops > 0) assert_true(fabs(r->peak_fraction - r->gflops / r->peak_gflops) < 1e-12);
    assert_true(r->peak_rss_mb > 0);
}

static void test_train_and_infer_report_consistent_numbers(void **state)
{
    (void)state;
    fkd_perf_config c = fkd_perf_defaults();
    c.arch = "mbf";
    c.width = 8;
    c.batch = 2;
    c.warmup = 1;
    c.steps = 3;
    fkd_perf_result infer, train;
    assert_int_equal(fkd_perf_run(&c, &infer), FKD_OK);
    check_consistent(&c, &infer);
    c.train = true;
    assert_int_equal(fkd_perf_run(&c, &train), FKD_OK);
    check_consistent(&c, &train);
    /* Same architecture: the counts agree between the two graphs. */
    assert_true(infer.macs == train.macs && infer.parameters == train.parameters);
}

static void test_bad_configurations_are_errors(void **state)
{
    (void)state;
    fkd_perf_config c = fkd_perf_defaults();
    fkd_perf_result r;
    c.arch = "no-such-net";
    c.batch = 1;
    c.steps = 1;
    assert_int_not_equal(fkd_perf_run(&c, &r), FKD_OK);
    assert_non_null(strstr(fkd_last_error(), "no-such-net"));
    c.arch = "mbf";
    c.batch = 0;
    assert_int_equal(fkd_perf_run(&c, &r), FKD_ERR_ARG);
    assert_non_null(strstr(fkd_last_error(), "batch 0"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_train_and_infer_report_consistent_numbers),
        cmocka_unit_test(test_bad_configurations_are_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
