/* Results tables (rows: models or methods; columns: benchmarks and measures) written as
 * markdown and CSV, atomically.
 *
 *   fkd_report r;
 *   FKD_TRY(fkd_report_init(&r, "Method"));
 *   fkd_report_add_verify(&r, "student, EKD", "lfw", &res, FKD_REPORT_ACCURACY | FKD_REPORT_TAR);
 *   fkd_report_write_markdown(&r, "run/results.md");
 *   fkd_report_write_csv(&r, "run/results.csv");
 *   fkd_report_free(&r);
 *
 * Rows and columns are created on first use, in that order. Cell text is UTF-8.
 * A cell never set is empty; a measure that cannot be computed (a TAR at a FAR the set
 * has too few negative pairs for) is "n/a" in markdown and empty in CSV. */
#ifndef FKD_EVAL_REPORT_H
#define FKD_EVAL_REPORT_H

#include "core/status.h"
#include "eval/verify.h"

typedef struct {
    char *corner; /* heading of the row-name column */
    int n_rows, n_cols, cap_rows, cap_cols;
    char **row_names, **col_names;
    char **cells; /* (cap_rows, cap_cols), NULL = never set */
} fkd_report;

/* What fkd_report_add_verify writes: */
enum {
    FKD_REPORT_ACCURACY = 1 << 0, /* "<bench>": insightface accuracy, "99.52 ± 0.31" (%) */
    FKD_REPORT_TAR = 1 << 1,      /* "<bench> TAR@FAR=1e-k" (%) for k = 1..6 with enough negatives */
    FKD_REPORT_EER = 1 << 2,      /* "<bench> EER" (%) */
    FKD_REPORT_AUC = 1 << 3,      /* "<bench> AUC" (%) */
    FKD_REPORT_VAL = 1 << 4,      /* "<bench> VAL@FAR=1e-3": insightface's, "mean ± std" (%) */
    FKD_REPORT_XNORM = 1 << 5,    /* "<bench> XNorm" */
};

fkd_status fkd_report_init(fkd_report *r, const char *corner);
void fkd_report_free(fkd_report *r);

/* Sets a cell to printf-style text (replacing earlier text). */
fkd_status fkd_report_set(fkd_report *r, const char *row, const char *col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* "99.52 ± 0.31": mean and std given as fractions, printed in percent with 2 decimals;
 * NAN mean = not available. */
fkd_status fkd_report_set_mean_std(fkd_report *r, const char *row, const char *col, double mean, double std);
/* "95.31": a fraction printed in percent; NAN = not available. */
fkd_status fkd_report_set_percent(fkd_report *r, const char *row, const char *col, double frac);
/* Marks a cell as not available ("n/a" in markdown, empty in CSV). */
fkd_status fkd_report_set_na(fkd_report *r, const char *row, const char *col);

/* The columns chosen by `what` for one verification result on benchmark `bench`. */
fkd_status fkd_report_add_verify(fkd_report *r, const char *row, const char *bench, const fkd_verify_result *v,
                                 unsigned what);

/* The cell text (NULL when never set; "n/a" when not available). */
const char *fkd_report_get(const fkd_report *r, const char *row, const char *col);

/* A markdown table, columns padded to equal width. */
fkd_status fkd_report_write_markdown(const fkd_report *r, const char *path);
/* RFC 4180 CSV: a header row, fields quoted when they hold a comma, quote or newline. */
fkd_status fkd_report_write_csv(const fkd_report *r, const char *path);

#endif
