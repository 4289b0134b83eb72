/* eval/csvtable: numeric CSV logs for plotting; every malformed input is an error that
 * names the source, the line and the field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "eval/csvtable.h"

static fkd_status parse(const char *text, fkd_csv_table *t)
{
    return fkd_csv_table_parse(text, strlen(text), "log.csv", t);
}

static void test_parses_header_numbers_quotes_crlf(void **state)
{
    (void)state;
    fkd_csv_table t;
    assert_int_equal(parse("step,\"loss, total\",lr\r\n0,20.5,1e-1\r\n\r\n10, 18 ,\r\n20,nan,0.01", &t), FKD_OK);
    assert_int_equal(t.n_cols, 3);
    assert_int_equal(t.n_rows, 3); /* the blank line is skipped; no final newline needed */
    assert_string_equal(t.names[1], "loss, total");
    assert_int_equal(fkd_csv_table_column(&t, "lr"), 2);
    assert_int_equal(fkd_csv_table_column(&t, "acc"), -1);
    double col[3];
    fkd_csv_table_get(&t, 1, col);
    assert_true(col[0] == 20.5 && col[1] == 18.0 && isnan(col[2]));
    fkd_csv_table_get(&t, 2, col);
    assert_true(col[0] == 0.1 && isnan(col[1]) && col[2] == 0.01); /* empty field: missing */
    fkd_csv_table_free(&t);
    fkd_csv_table_free(&t); /* idempotent */
    fkd_csv_table_free(NULL);
    assert_int_equal(parse("a,\"b\"\"c\"\n", &t), FKD_OK);
    assert_string_equal(t.names[1], "b\"c");
    assert_int_equal(t.n_rows, 0);
    fkd_csv_table_free(&t);
}

static void test_malformed_inputs_name_the_place(void **state)
{
    (void)state;
    static const struct {
        const char *text, *message;
    } cases[] = {
        {"", "log.csv:1: empty file, expected a header row"},
        {"a,b\n1,2\n3,x\n", "log.csv:3: field 2 ('b'): 'x' is not a number"},
        {"a,b\n1,2\n3\n", "log.csv:3: 1 fields, the header has 2"},
        {"a,b\n1,2,3\n", "log.csv:2: more than the header's 2 fields"},
        {"a,b\n1,\"2\n", "log.csv:2: unterminated quoted field"},
        {"a\n1.5.2\n", "log.csv:2: field 1 ('a'): '1.5.2' is not a number"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fkd_csv_table t;
        assert_int_equal(parse(cases[i].text, &t), FKD_ERR_FORMAT);
        assert_string_equal(fkd_last_error(), cases[i].message);
        assert_int_equal(t.n_cols, 0); /* nothing left allocated */
    }
    fkd_csv_table t;
    assert_int_not_equal(fkd_csv_table_load("/nonexistent/log.csv", &t), FKD_OK);
    assert_non_null(strstr(fkd_last_error(), "/nonexistent/log.csv"));
}

static void test_many_rows_grow(void **state)
{
    (void)state;
    char text[40000];
    size_t n = (size_t)snprintf(text, sizeof(text), "step,loss\n");
    for (int i = 0; i < 2000; i++) n += (size_t)snprintf(text + n, sizeof(text) - n, "%d,%d.5\n", i, i % 7);
    fkd_csv_table t;
    assert_int_equal(fkd_csv_table_parse(text, n, "big.csv", &t), FKD_OK);
    assert_int_equal(t.n_rows, 2000);
    assert_true(t.values[2 * 1999] == 1999 && t.values[2 * 1999 + 1] == 1999 % 7 + 0.5);
    fkd_csv_table_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parses_header_numbers_quotes_crlf),
        cmocka_unit_test(test_malformed_inputs_name_the_place),
        cmocka_unit_test(test_many_rows_grow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
