/* eval/report: markdown and CSV tables, written atomically; exact expected text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/fileio.h"
#include "eval/report.h"
#include "tests/support/tmpdir.h"

static char dir[64];

static int setup(void **state)
{
    (void)state;
    return fkd_test_tmpdir_make(dir, sizeof(dir), "test_report");
}

static int teardown(void **state)
{
    (void)state;
    return fkd_test_tmpdir_remove(dir);
}

static char *slurp(const char *name)
{
    char path[128];
    fkd_test_tmpdir_path(path, sizeof(path), dir, name);
    uint8_t *data;
    size_t size;
    if (fkd_file_read_all(path, &data, &size) != FKD_OK) fail_msg("%s", fkd_last_error());
    return (char *)data;
}

static void test_table_markdown_and_csv(void **state)
{
    (void)state;
    fkd_report r;
    assert_int_equal(fkd_report_init(&r, "Method"), FKD_OK);
    assert_int_equal(fkd_report_set_mean_std(&r, "teacher", "lfw", 0.99517, 0.003102), FKD_OK);
    assert_int_equal(fkd_report_set_percent(&r, "teacher", "TAR, 1e-4", 0.9123), FKD_OK);
    assert_int_equal(fkd_report_set_mean_std(&r, "a|b \"KD\"", "lfw", 0.9, 0.01), FKD_OK);
    assert_int_equal(fkd_report_set_na(&r, "a|b \"KD\"", "TAR, 1e-4"), FKD_OK);
    assert_int_equal(fkd_report_set(&r, "teacher", "lfw", "%s", "99.50 \u00b1 0.30"), FKD_OK); /* replaces */
    assert_string_equal(fkd_report_get(&r, "teacher", "lfw"), "99.50 \u00b1 0.30");
    assert_null(fkd_report_get(&r, "nobody", "lfw"));
    char md[128], csv[128];
    fkd_test_tmpdir_path(md, sizeof(md), dir, "t.md");
    fkd_test_tmpdir_path(csv, sizeof(csv), dir, "t.csv");
    assert_int_equal(fkd_report_write_markdown(&r, md), FKD_OK);
    assert_int_equal(fkd_report_write_csv(&r, csv), FKD_OK);
    char *m = slurp("t.md"), *c = slurp("t.csv");
    assert_string_equal(m, "| Method    | lfw          | TAR, 1e-4 |\n"
                           "|:----------|-------------:|----------:|\n"
                           "| teacher   | 99.50 \u00b1 0.30 |     91.23 |\n"
                           "| a\\|b \"KD\" | 90.00 \u00b1 1.00 |       n/a |\n");
    assert_string_equal(c, "Method,lfw,\"TAR, 1e-4\"\r\n"
                           "teacher,99.50 \u00b1 0.30,91.23\r\n"
                           "\"a|b \"\"KD\"\"\",90.00 \u00b1 1.00,\r\n");
    free(m);
    free(c);
    fkd_report_free(&r);
    fkd_report_free(&r); /* idempotent */
    fkd_report_free(NULL);
}

static void test_verify_columns_skip_unresolved_fars(void **state)
{
    (void)state;
    fkd_verify_result v;
    memset(&v, 0, sizeof(v));
    v.accuracy_mean = 0.9952;
    v.accuracy_std = 0.0031;
    for (int k = 0; k < FKD_VERIFY_N_FAR; k++) v.tar[k] = k < 3 ? 0.99 - 0.01 * k : NAN; /* 1e-4.. skipped */
    v.eer = 0.012;
    v.xnorm = NAN;
    fkd_report r;
    assert_int_equal(fkd_report_init(&r, "Model"), FKD_OK);
    assert_int_equal(fkd_report_add_verify(&r, "student", "cfp_fp", &v,
                                           FKD_REPORT_ACCURACY | FKD_REPORT_TAR | FKD_REPORT_EER | FKD_REPORT_XNORM),
                     FKD_OK);
    assert_int_equal(r.n_cols, 1 + 3 + 1 + 1);
    assert_string_equal(fkd_report_get(&r, "student", "cfp_fp"), "99.52 \u00b1 0.31");
    assert_string_equal(fkd_report_get(&r, "student", "cfp_fp TAR@FAR=1e-3"), "97.00");
    assert_null(fkd_report_get(&r, "student", "cfp_fp TAR@FAR=1e-4"));
    assert_string_equal(fkd_report_get(&r, "student", "cfp_fp EER"), "1.20");
    assert_string_equal(fkd_report_get(&r, "student", "cfp_fp XNorm"), "n/a");
    /* a second row whose 1e-2 is unresolved fills the existing column with n/a */
    v.tar[1] = NAN;
    assert_int_equal(fkd_report_add_verify(&r, "teacher", "cfp_fp", &v, FKD_REPORT_TAR), FKD_OK);
    assert_string_equal(fkd_report_get(&r, "teacher", "cfp_fp TAR@FAR=1e-2"), "n/a");
    assert_int_equal(r.n_rows, 2);
    /* a later row that resolves a smaller FAR: its column joins the bench's TAR columns
     * in FAR order, before columns added after them */
    assert_int_equal(fkd_report_set(&r, "teacher", "lfw", "x"), FKD_OK);
    v.tar[1] = 0.98;
    v.tar[3] = 0.95;
    assert_int_equal(fkd_report_add_verify(&r, "big", "cfp_fp", &v, FKD_REPORT_TAR), FKD_OK);
    const char *order[] = {"cfp_fp", "cfp_fp TAR@FAR=1e-1", "cfp_fp TAR@FAR=1e-2", "cfp_fp TAR@FAR=1e-3",
                           "cfp_fp TAR@FAR=1e-4", "cfp_fp EER", "cfp_fp XNorm", "lfw"};
    assert_int_equal(r.n_cols, 8);
    for (int j = 0; j < 8; j++) assert_string_equal(r.col_names[j], order[j]);
    assert_string_equal(fkd_report_get(&r, "big", "cfp_fp TAR@FAR=1e-4"), "95.00");
    /* rows that went through add_verify for cfp_fp could not resolve 1e-4: n/a */
    assert_string_equal(fkd_report_get(&r, "student", "cfp_fp TAR@FAR=1e-4"), "n/a");
    assert_string_equal(fkd_report_get(&r, "teacher", "lfw"), "x"); /* cells moved with columns */
    assert_string_equal(fkd_report_get(&r, "student", "cfp_fp EER"), "1.20");
    /* many rows and columns: the grid regrows and keeps its cells */
    char row[16], col[16];
    for (int i = 0; i < 40; i++) {
        snprintf(row, sizeof(row), "r%d", i);
        snprintf(col, sizeof(col), "c%d", i % 13);
        assert_int_equal(fkd_report_set(&r, row, col, "%d", i), FKD_OK);
    }
    assert_string_equal(fkd_report_get(&r, "student", "cfp_fp"), "99.52 \u00b1 0.31");
    assert_string_equal(fkd_report_get(&r, "r27", "c1"), "27");
    fkd_report_free(&r);
}

static void test_unwritable_path_names_file(void **state)
{
    (void)state;
    fkd_report r;
    assert_int_equal(fkd_report_init(&r, "M"), FKD_OK);
    assert_int_equal(fkd_report_set(&r, "a", "b", "1"), FKD_OK);
    char path[128];
    fkd_test_tmpdir_path(path, sizeof(path), dir, "missing/dir/t.md");
    assert_int_equal(fkd_report_write_markdown(&r, path), FKD_ERR_IO);
    assert_non_null(strstr(fkd_last_error(), "missing/dir/t.md"));
    assert_int_equal(fkd_report_write_csv(&r, path), FKD_ERR_IO);
    fkd_report_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_markdown_and_csv),
        cmocka_unit_test(test_verify_columns_skip_unresolved_fars),
        cmocka_unit_test(test_unwritable_path_names_file),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
