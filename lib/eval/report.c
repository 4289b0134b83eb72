/* Results tables; see report.h. */
#include "eval/report.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"

#define NA "n/a"

fkd_status fkd_report_init(fkd_report *r, const char *corner)
{
    memset(r, 0, sizeof(*r));
    r->corner = strdup(corner ? corner : "");
    if (!r->corner) return FKD_FAIL(FKD_ERR_NOMEM, "report: init");
    return FKD_OK;
}

void fkd_report_free(fkd_report *r)
{
    if (!r) return;
    for (int i = 0; i < r->n_rows; i++) {
        free(r->row_names[i]);
        for (int j = 0; j < r->n_cols; j++) free(r->cells[(size_t)i * r->cap_cols + j]);
    }
    for (int j = 0; j < r->n_cols; j++) free(r->col_names[j]);
    free(r->row_names);
    free(r->col_names);
    free(r->cells);
    free(r->corner);
    memset(r, 0, sizeof(*r));
}

static int find(char **names, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(names[i], name)) return i;
    return -1;
}

/* Regrows the cell grid to (rows, cols) capacity, keeping the cells. */
static fkd_status regrow(fkd_report *r, int cap_rows, int cap_cols)
{
    char **cells = calloc((size_t)cap_rows * cap_cols, sizeof(char *));
    char **rn = realloc(r->row_names, sizeof(char *) * cap_rows);
    if (rn) r->row_names = rn;
    char **cn = rn ? realloc(r->col_names, sizeof(char *) * cap_cols) : NULL;
    if (cn) r->col_names = cn;
    if (!cells || !rn || !cn) {
        free(cells);
        return FKD_FAIL(FKD_ERR_NOMEM, "report: %d x %d cells", cap_rows, cap_cols);
    }
    for (int i = 0; i < r->n_rows; i++)
        for (int j = 0; j < r->n_cols; j++) cells[(size_t)i * cap_cols + j] = r->cells[(size_t)i * r->cap_cols + j];
    free(r->cells);
    r->cells = cells;
    r->cap_rows = cap_rows;
    r->cap_cols = cap_cols;
    return FKD_OK;
}

/* Index of a row (is_row) or column by name. A new row is appended; a new column goes
 * right after column `after` (-1: at the end), shifting the later ones. */
static fkd_status slot(fkd_report *r, const char *name, int is_row, int after, int *index)
{
    char **names = is_row ? r->row_names : r->col_names;
    int n = is_row ? r->n_rows : r->n_cols;
    int i = find(names, n, name);
    if (i >= 0) {
        *index = i;
        return FKD_OK;
    }
    int cap = is_row ? r->cap_rows : r->cap_cols;
    if (n == cap)
        FKD_TRY(is_row ? regrow(r, cap ? 2 * cap : 8, r->cap_cols ? r->cap_cols : 8)
                       : regrow(r, r->cap_rows ? r->cap_rows : 8, cap ? 2 * cap : 8));
    char *copy = strdup(name);
    if (!copy) return FKD_FAIL(FKD_ERR_NOMEM, "report: name '%s'", name);
    if (is_row) {
        r->row_names[r->n_rows++] = copy;
        *index = n;
        return FKD_OK;
    }
    int at = after >= 0 && after < n ? after + 1 : n;
    memmove(&r->col_names[at + 1], &r->col_names[at], sizeof(char *) * (n - at));
    r->col_names[at] = copy;
    for (int row = 0; row < r->n_rows; row++) {
        char **cells = &r->cells[(size_t)row * r->cap_cols];
        memmove(&cells[at + 1], &cells[at], sizeof(char *) * (n - at));
        cells[at] = NULL;
    }
    r->n_cols++;
    *index = at;
    return FKD_OK;
}

/* Stores text (owned) in a cell; a new column is placed after column `after_col` when
 * that exists, else at the end. */
static fkd_status put(fkd_report *r, const char *row, const char *col, const char *after_col, char *text)
{
    int i = 0, j = 0;
    int after = after_col ? find(r->col_names, r->n_cols, after_col) : -1;
    fkd_status s = slot(r, row, 1, -1, &i);
    if (s == FKD_OK) s = slot(r, col, 0, after, &j);
    if (s != FKD_OK) {
        free(text);
        return s;
    }
    char **cell = &r->cells[(size_t)i * r->cap_cols + j];
    free(*cell);
    *cell = text;
    return FKD_OK;
}

fkd_status fkd_report_set(fkd_report *r, const char *row, const char *col, const char *fmt, ...)
{
    va_list ap;
    char *text = NULL;
    va_start(ap, fmt);
    int n = vasprintf(&text, fmt, ap);
    va_end(ap);
    if (n < 0) return FKD_FAIL(FKD_ERR_NOMEM, "report: cell %s / %s", row, col);
    return put(r, row, col, NULL, text);
}

fkd_status fkd_report_set_na(fkd_report *r, const char *row, const char *col)
{
    return fkd_report_set(r, row, col, "%s", NA);
}

fkd_status fkd_report_set_mean_std(fkd_report *r, const char *row, const char *col, double mean, double std)
{
    if (isnan(mean)) return fkd_report_set_na(r, row, col);
    return fkd_report_set(r, row, col, "%.2f \u00b1 %.2f", 100 * mean, 100 * std);
}

fkd_status fkd_report_set_percent(fkd_report *r, const char *row, const char *col, double frac)
{
    if (isnan(frac)) return fkd_report_set_na(r, row, col);
    return fkd_report_set(r, row, col, "%.2f", 100 * frac);
}

/* Rows that already hold TAR columns of `bench` went through add_verify for it and could
 * not resolve the FAR of a column created after them: "n/a", not an empty cell. */
static fkd_status mark_unresolved(fkd_report *r, const char *bench, const char *col)
{
    char first[256];
    snprintf(first, sizeof(first), "%s TAR@FAR=1e-1", bench);
    for (int i = 0; i < r->n_rows; i++)
        if (fkd_report_get(r, r->row_names[i], first) && !fkd_report_get(r, r->row_names[i], col))
            FKD_TRY(fkd_report_set_na(r, r->row_names[i], col));
    return FKD_OK;
}

fkd_status fkd_report_add_verify(fkd_report *r, const char *row, const char *bench, const fkd_verify_result *v,
                                 unsigned what)
{
    char col[256];
    if (what & FKD_REPORT_ACCURACY) FKD_TRY(fkd_report_set_mean_std(r, row, bench, v->accuracy_mean, v->accuracy_std));
    if (what & FKD_REPORT_TAR)
        for (int k = 0; k < FKD_VERIFY_N_FAR; k++) {
            snprintf(col, sizeof(col), "%s TAR@FAR=1e-%d", bench, k + 1);
            /* a FAR the set cannot resolve gets no column of its own, but fills one that
             * another row created */
            if (isnan(v->tar[k]) && find(r->col_names, r->n_cols, col) < 0) continue;
            /* keep a bench's TAR columns together and in FAR order even when a later row
             * resolves a smaller FAR */
            char after[256];
            if (k == 0) snprintf(after, sizeof(after), "%s", bench);
            else snprintf(after, sizeof(after), "%s TAR@FAR=1e-%d", bench, k);
            char *text = NULL;
            if (isnan(v->tar[k])) text = strdup(NA);
            else if (asprintf(&text, "%.2f", 100 * v->tar[k]) < 0) text = NULL;
            if (!text) return FKD_FAIL(FKD_ERR_NOMEM, "report: cell %s / %s", row, col);
            int is_new = find(r->col_names, r->n_cols, col) < 0;
            FKD_TRY(put(r, row, col, after, text));
            if (is_new) FKD_TRY(mark_unresolved(r, bench, col));
        }
    if (what & FKD_REPORT_EER) {
        snprintf(col, sizeof(col), "%s EER", bench);
        FKD_TRY(fkd_report_set_percent(r, row, col, v->eer));
    }
    if (what & FKD_REPORT_AUC) {
        snprintf(col, sizeof(col), "%s AUC", bench);
        FKD_TRY(fkd_report_set_percent(r, row, col, v->auc));
    }
    if (what & FKD_REPORT_VAL) {
        snprintf(col, sizeof(col), "%s VAL@FAR=1e-3", bench);
        FKD_TRY(fkd_report_set_mean_std(r, row, col, v->val_mean, v->val_std));
    }
    if (what & FKD_REPORT_XNORM) {
        snprintf(col, sizeof(col), "%s XNorm", bench);
        if (isnan(v->xnorm)) FKD_TRY(fkd_report_set_na(r, row, col));
        else FKD_TRY(fkd_report_set(r, row, col, "%.2f", v->xnorm));
    }
    return FKD_OK;
}

const char *fkd_report_get(const fkd_report *r, const char *row, const char *col)
{
    int i = find(r->row_names, r->n_rows, row), j = find(r->col_names, r->n_cols, col);
    return i < 0 || j < 0 ? NULL : r->cells[(size_t)i * r->cap_cols + j];
}

static const char *cell_text(const fkd_report *r, int i, int j)
{
    const char *c = r->cells[(size_t)i * r->cap_cols + j];
    return c ? c : "";
}

/* Display width: UTF-8 code points (continuation bytes don't count). */
static int text_width(const char *s)
{
    int w = 0;
    for (; *s; s++) w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
}

/* Markdown cell: '|' escaped, newlines flattened to spaces. */
static void md_cell(FILE *fp, const char *s, int width)
{
    int w = 0;
    for (; *s; s++) {
        if (*s == '|') {
            fputs("\\|", fp);
            w++;
        } else {
            fputc(*s == '\n' || *s == '\r' ? ' ' : *s, fp);
        }
        w += ((unsigned char)*s & 0xC0) != 0x80;
    }
    for (; w < width; w++) fputc(' ', fp);
}

static int md_width(const char *s)
{
    int pipes = 0;
    for (const char *p = s; *p; p++) pipes += *p == '|';
    return text_width(s) + pipes;
}

fkd_status fkd_report_write_markdown(const fkd_report *r, const char *path)
{
    int *w = calloc((size_t)r->n_cols + 1, sizeof(int));
    if (!w) return FKD_FAIL(FKD_ERR_NOMEM, "%s: report", path);
    w[0] = md_width(r->corner);
    for (int i = 0; i < r->n_rows; i++) w[0] = (int)fmax(w[0], md_width(r->row_names[i]));
    for (int j = 0; j < r->n_cols; j++) {
        w[j + 1] = (int)fmax(3, md_width(r->col_names[j]));
        for (int i = 0; i < r->n_rows; i++) w[j + 1] = (int)fmax(w[j + 1], md_width(cell_text(r, i, j)));
    }
    w[0] = (int)fmax(3, w[0]);
    fkd_atomic_file f;
    fkd_status s = fkd_atomic_open(&f, path);
    if (s != FKD_OK) {
        free(w);
        return s;
    }
    fputs("| ", f.fp);
    md_cell(f.fp, r->corner, w[0]);
    for (int j = 0; j < r->n_cols; j++) {
        fputs(" | ", f.fp);
        md_cell(f.fp, r->col_names[j], w[j + 1]);
    }
    fputs(" |\n|", f.fp);
    for (int j = 0; j <= r->n_cols; j++) {
        /* first column left-aligned (names), numbers right-aligned */
        fputc(j ? '-' : ':', f.fp);
        for (int k = 0; k < w[j]; k++) fputc('-', f.fp);
        fputs(j ? ":|" : "-|", f.fp);
    }
    fputc('\n', f.fp);
    for (int i = 0; i < r->n_rows; i++) {
        fputs("| ", f.fp);
        md_cell(f.fp, r->row_names[i], w[0]);
        for (int j = 0; j < r->n_cols; j++) {
            const char *c = cell_text(r, i, j);
            fputs(" | ", f.fp);
            for (int pad = md_width(c); pad < w[j + 1]; pad++) fputc(' ', f.fp);
            md_cell(f.fp, c, 0);
        }
        fputs(" |\n", f.fp);
    }
    free(w);
    return fkd_atomic_commit(&f);
}

static void csv_field(FILE *fp, const char *s)
{
    if (!strcmp(s, NA)) return;
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, fp);
        return;
    }
    fputc('"', fp);
    for (; *s; s++) {
        if (*s == '"') fputc('"', fp);
        fputc(*s, fp);
    }
    fputc('"', fp);
}

fkd_status fkd_report_write_csv(const fkd_report *r, const char *path)
{
    fkd_atomic_file f;
    FKD_TRY(fkd_atomic_open(&f, path));
    csv_field(f.fp, r->corner);
    for (int j = 0; j < r->n_cols; j++) {
        fputc(',', f.fp);
        csv_field(f.fp, r->col_names[j]);
    }
    fputs("\r\n", f.fp);
    for (int i = 0; i < r->n_rows; i++) {
        csv_field(f.fp, r->row_names[i]);
        for (int j = 0; j < r->n_cols; j++) {
            fputc(',', f.fp);
            csv_field(f.fp, cell_text(r, i, j));
        }
        fputs("\r\n", f.fp);
    }
    return fkd_atomic_commit(&f);
}
