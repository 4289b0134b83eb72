/* Core: status codes and messages, deterministic random numbers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <string.h>

#include "core/rng.h"
#include "core/status.h"

static fkd_status failing_reader(void)
{
    return FKD_FAIL(FKD_ERR_FORMAT, "%s: tensor '%s': truncated", "m.safetensors", "fc.weight");
}

static void test_fail_records_message_and_place(void **state)
{
    (void)state;
    assert_int_equal(failing_reader(), FKD_ERR_FORMAT);
    assert_string_equal(fkd_last_error(), "m.safetensors: tensor 'fc.weight': truncated");
    assert_non_null(strstr(fkd_last_error_place(), "test_core.c:"));
    FKD_WRAP(FKD_ERR_FORMAT, "loading teacher: ");
    assert_string_equal(fkd_last_error(), "loading teacher: m.safetensors: tensor 'fc.weight': truncated");
    assert_string_equal(fkd_status_str(FKD_ERR_NOMEM), "out of memory");
    assert_string_equal(fkd_status_str(FKD_OK), "success");
}

static void test_rng_is_deterministic_per_stream(void **state)
{
    (void)state;
    fkd_rng a, b, c;
    fkd_rng_seed(&a, 42, 7);
    fkd_rng_seed(&b, 42, 7);
    fkd_rng_seed(&c, 42, 8);
    int same_as_other_stream = 0;
    for (int i = 0; i < 100; i++) {
        uint64_t x = fkd_rng_u64(&a), y = fkd_rng_u64(&b), z = fkd_rng_u64(&c);
        assert_true(x == y);
        same_as_other_stream += x == z;
    }
    assert_int_equal(same_as_other_stream, 0);
}

static void test_rng_moments(void **state)
{
    (void)state;
    fkd_rng r;
    fkd_rng_seed(&r, 1, 0);
    const int n = 200000;
    double su = 0, sn = 0, sn2 = 0;
    for (int i = 0; i < n; i++) {
        double u = fkd_rng_uniform(&r);
        assert_true(u >= 0 && u < 1);
        su += u;
        double g = fkd_rng_normal(&r);
        sn += g;
        sn2 += g * g;
    }
    /* Standard errors: uniform mean 0.29/sqrt(n) = 6.5e-4, normal mean 2.2e-3; 5 sigma. */
    assert_true(fabs(su / n - 0.5) < 3.3e-3);
    assert_true(fabs(sn / n) < 1.2e-2);
    assert_true(fabs(sn2 / n - 1.0) < 1.6e-2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fail_records_message_and_place),
        cmocka_unit_test(test_rng_is_deterministic_per_stream),
        cmocka_unit_test(test_rng_moments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
