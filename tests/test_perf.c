/* nn/perf: the model benchmark behind `facekd bench --arch`. Speeds are not asserted (a
 * timed test would measure the machine's load); the test checks that a tiny run reports
 * consistent numbers and that bad configurations are errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <string.h>

#include "nn/peak.h"
#include "nn/perf.h"
#include "nn/shim.h"

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

/* A MobileFaceNet of width 8 at batch 2: seconds of work. */
static fkd_perf_config tiny_config(int warmup, int steps)
{
    fkd_perf_config c = fkd_perf_defaults();
    c.arch = "mbf";
    c.width = 8;
    c.batch = 2;
    c.warmup = warmup;
    c.steps = steps;
    return c;
}

static void test_train_and_infer_report_consistent_numbers(void **state)
{
    (void)state;
    fkd_perf_config c = tiny_config(1, 3);
    fkd_perf_result infer, train;
    assert_int_equal(fkd_perf_run(&c, &infer), FKD_OK);
    check_consistent(&c, &infer);
    c.train = true;
    assert_int_equal(fkd_perf_run(&c, &train), FKD_OK);
    check_consistent(&c, &train);
    /* Same architecture: the counts agree between the two graphs. */
    assert_true(infer.macs == train.macs && infer.parameters == train.parameters);
    /* --keep-activations builds the same network without the recomputed values. */
    fkd_perf_result kept;
    c.keep_activations = true;
    assert_int_equal(fkd_perf_run(&c, &kept), FKD_OK);
    check_consistent(&c, &kept);
    assert_true(kept.macs == train.macs && kept.parameters == train.parameters);
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

/* The peak kernels do the arithmetic their FLOP count claims: 16 accumulators (starting at
 * 0, 1, …, 15: Σ = 120) of acc·1 + 1 (fp32) or acc + 1·1 + 1·1 (bf16 pairs) per round,
 * exact in fp32 below 2^24 per lane. */
static void test_peak_kernels_count_exactly(void **state)
{
    (void)state;
    bool avx512 = strncmp(fkd_shim_isa(), "avx512_core", 11) == 0;
    bool bf16 = strcmp(fkd_shim_isa(), "avx512_core_bf16") == 0 || strcmp(fkd_shim_isa(), "avx512_core_amx") == 0;
    double lanes = avx512 ? 16 : 8;
    if (strncmp(fkd_shim_isa(), "avx", 3) == 0) assert_true(fkd__peak_fp32_kernel(1000) == lanes * (120 + 16 * 1000));
    if (bf16) assert_true(fkd__peak_bf16_kernel(1000) == 16 * (120 + 32 * 1000.0));
    else assert_true(fkd__peak_bf16_kernel(1000) == -1);

    fkd_peak p;
    assert_int_equal(fkd_peak_measure(1, 0.03, &p), FKD_OK);
    assert_int_equal(p.threads, 1);
    assert_true(isfinite(p.fp32_gflops) && p.fp32_gflops > 0);
    assert_true(bf16 ? p.bf16_gflops > 0 : p.bf16_gflops == 0);
    assert_string_equal(p.bf16_kernel, bf16 ? "avx512_bf16 vdpbf16ps" : "none");
    assert_int_equal(fkd_peak_measure(1, -1, &p), FKD_ERR_ARG);
}

/* With measure_peak the model's GFLOP/s is also given over the measured peak. */
static void test_measured_peak_fraction(void **state)
{
    (void)state;
    fkd_perf_config c = tiny_config(0, 1);
    c.threads = 1;
    c.measure_peak = true;
    fkd_perf_result r;
    assert_int_equal(fkd_perf_run(&c, &r), FKD_OK);
    assert_true(r.measured_peak_gflops > 0);
    assert_true(fabs(r.measured_peak_fraction - r.gflops / r.measured_peak_gflops) < 1e-12);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_train_and_infer_report_consistent_numbers),
        cmocka_unit_test(test_bad_configurations_are_errors),
        cmocka_unit_test(test_peak_kernels_count_exactly),
        cmocka_unit_test(test_measured_peak_fraction),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
