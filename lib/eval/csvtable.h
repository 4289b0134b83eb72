/* Numeric CSV tables (training logs, results exported as CSV) read for plotting.
 *
 * The first row names the columns; every later row holds one number per column
 * (strtod syntax, "nan"/"inf" allowed; an empty field is NAN, a missing value). Fields may
 * be quoted as in RFC 4180; lines end in LF or CRLF; blank lines are skipped. */
#ifndef FKD_EVAL_CSVTABLE_H
#define FKD_EVAL_CSVTABLE_H

#include <stddef.h>

#include "core/status.h"

typedef struct {
    int n_cols, n_rows;
    char **names;   /* (n_cols) */
    double *values; /* (n_rows, n_cols) row-major */
} fkd_csv_table;

/* Parses CSV text; `what` names the source in error messages ("train.csv"):
 * "train.csv:12: field 3 ('loss'): 'abc' is not a number". */
fkd_status fkd_csv_table_parse(const char *text, size_t size, const char *what, fkd_csv_table *t);
fkd_status fkd_csv_table_load(const char *path, fkd_csv_table *t);
void fkd_csv_table_free(fkd_csv_table *t);

/* Index of a column by name, -1 when absent. */
int fkd_csv_table_column(const fkd_csv_table *t, const char *name);
/* Copies column `col` into out (n_rows). */
void fkd_csv_table_get(const fkd_csv_table *t, int col, double *out);

#endif
