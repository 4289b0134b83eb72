#include "train/runlog.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "eval/plot.h"

#define MAX_COLUMNS 32

fkd_status fkd_runlog_start(const char *path, const char *header, int64_t keep_until_step)
{
    uint8_t *old = NULL;
    size_t old_size = 0;
    if (keep_until_step < 0 || fkd_file_read_all(path, &old, &old_size) != FKD_OK) {
        char *text = malloc(strlen(header) + 2);
        if (!text) return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", path);
        sprintf(text, "%s\n", header);
        fkd_status s = fkd_atomic_write(path, text, strlen(text));
        free(text);
        return s;
    }
    /* Keep the header line and rows up to the checkpoint's step. */
    char *out = malloc(old_size + 1);
    if (!out) {
        free(old);
        return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", path);
    }
    size_t used = 0;
    int line_no = 0;
    for (char *line = (char *)old; line && *line; line_no++) {
        char *next = strchr(line, '\n');
        size_t len = next ? (size_t)(next - line) + 1 : strlen(line);
        if (line_no == 0 || strtoll(line, NULL, 10) <= keep_until_step) {
            memcpy(out + used, line, len);
            used += len;
        }
        line = next ? next + 1 : NULL;
    }
    fkd_status s = fkd_atomic_write(path, out, used);
    free(out);
    free(old);
    return s;
}

fkd_status fkd_runlog_append(const char *path, const char *fmt, ...)
{
    FILE *fp = fopen(path, "a");
    if (!fp) return FKD_FAIL(FKD_ERR_IO, "%s: cannot append", path);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(fp, fmt, ap);
    va_end(ap);
    fputc('\n', fp);
    if (fclose(fp) != 0) return FKD_FAIL(FKD_ERR_IO, "%s: write failed", path);
    return FKD_OK;
}

/* A numeric CSV table read back: column names and rows of doubles (text cells kept
 * separately for the benchmark column of eval.csv). */
typedef struct {
    int n_cols, n_rows;
    char *names[MAX_COLUMNS];
    double *values;   /* (n_rows, n_cols); NAN for text cells */
    char **text;      /* (n_rows, n_cols) cell text */
    uint8_t *buf;
} csv_table;

static void csv_free(csv_table *t)
{
    if (t->text)
        for (int i = 0; i < t->n_rows * t->n_cols; i++) free(t->text[i]);
    free(t->text);
    free(t->values);
    free(t->buf);
    memset(t, 0, sizeof *t);
}

static int split_fields(char *line, char **fields)
{
    int n = 0;
    for (char *f = line; f && n < MAX_COLUMNS;) {
        char *comma = strchr(f, ',');
        if (comma) *comma = '\0';
        fields[n++] = f;
        f = comma ? comma + 1 : NULL;
    }
    return n;
}

static fkd_status csv_read(csv_table *t, const char *path)
{
    memset(t, 0, sizeof *t);
    size_t size;
    FKD_TRY(fkd_file_read_all(path, &t->buf, &size));
    int lines = 0;
    for (size_t i = 0; i < size; i++) lines += t->buf[i] == '\n';
    t->values = calloc((size_t)(lines + 1) * MAX_COLUMNS, sizeof *t->values);
    t->text = calloc((size_t)(lines + 1) * MAX_COLUMNS, sizeof *t->text);
    if (!t->values || !t->text) return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", path);
    char *save = NULL;
    char *line = strtok_r((char *)t->buf, "\n", &save);
    if (!line) return FKD_FAIL(FKD_ERR_FORMAT, "%s: empty", path);
    t->n_cols = split_fields(line, t->names);
    while ((line = strtok_r(NULL, "\n", &save))) {
        char *fields[MAX_COLUMNS];
        int n = split_fields(line, fields);
        for (int c = 0; c < t->n_cols; c++) {
            const char *f = c < n ? fields[c] : "";
            char *end;
            double v = strtod(f, &end);
            t->values[t->n_rows * t->n_cols + c] = end != f && *end == '\0' ? v : NAN;
            t->text[t->n_rows * t->n_cols + c] = strdup(f);
        }
        t->n_rows++;
    }
    return FKD_OK;
}

static int csv_column(const csv_table *t, const char *name)
{
    for (int c = 0; c < t->n_cols; c++)
        if (strcmp(t->names[c], name) == 0) return c;
    return -1;
}

/* Adds column `col` against column 0 (the step) as a line series. */
static fkd_status plot_column(fkd_plot *p, const csv_table *t, int col, const char *label)
{
    double *x = malloc(sizeof(double) * (size_t)(t->n_rows + 1));
    double *y = malloc(sizeof(double) * (size_t)(t->n_rows + 1));
    if (!x || !y) {
        free(x);
        free(y);
        return FKD_FAIL(FKD_ERR_NOMEM, "plot: out of memory");
    }
    int n = 0;
    for (int r = 0; r < t->n_rows; r++) {
        double v = t->values[r * t->n_cols + col];
        if (isfinite(v)) {
            x[n] = t->values[r * t->n_cols];
            y[n++] = v;
        }
    }
    fkd_status s = n ? fkd_plot_add(p, NULL, label, x, y, n) : FKD_OK;
    free(x);
    free(y);
    return s;
}

static fkd_status plot_log_csv(const char *run_dir)
{
    char path[4096], out[4096];
    snprintf(path, sizeof path, "%s/log.csv", run_dir);
    csv_table t;
    fkd_status s = csv_read(&t, path);
    if (s != FKD_OK || t.n_rows == 0) {
        csv_free(&t);
        return s;
    }
    fkd_plot loss = {0}, lr = {0};
    s = fkd_plot_init(&loss, 800, 480, "training loss", "step", "loss");
    if (s == FKD_OK) s = fkd_plot_init(&lr, 800, 360, "learning rate", "step", "lr");
    /* Loss columns sit between "lr" and "images_per_s". */
    int first = csv_column(&t, "lr") + 1, last = csv_column(&t, "images_per_s");
    for (int c = first; s == FKD_OK && c > 0 && c < last; c++) s = plot_column(&loss, &t, c, t.names[c]);
    if (s == FKD_OK && first > 0) s = plot_column(&lr, &t, first - 1, NULL);
    snprintf(out, sizeof out, "%s/loss.png", run_dir);
    if (s == FKD_OK) s = fkd_plot_save_png(&loss, out);
    snprintf(out, sizeof out, "%s/lr.png", run_dir);
    if (s == FKD_OK) s = fkd_plot_save_png(&lr, out);
    fkd_plot_free(&loss);
    fkd_plot_free(&lr);
    csv_free(&t);
    return s;
}

static fkd_status plot_eval_csv(const char *run_dir)
{
    char path[4096], out[4096];
    snprintf(path, sizeof path, "%s/eval.csv", run_dir);
    csv_table t;
    fkd_status s = csv_read(&t, path);
    if (s != FKD_OK || t.n_rows == 0) {
        csv_free(&t);
        return s;
    }
    int bench_col = csv_column(&t, "benchmark"), acc_col = csv_column(&t, "accuracy");
    fkd_plot p = {0};
    s = fkd_plot_init(&p, 800, 480, "verification accuracy (10-fold)", "step", "accuracy (%)");
    double *x = malloc(sizeof(double) * (size_t)t.n_rows), *y = malloc(sizeof(double) * (size_t)t.n_rows);
    if (s == FKD_OK && (!x || !y)) s = FKD_FAIL(FKD_ERR_NOMEM, "plot: out of memory");
    /* One series per benchmark, in order of first appearance. */
    for (int r = 0; s == FKD_OK && bench_col >= 0 && acc_col >= 0 && r < t.n_rows; r++) {
        const char *name = t.text[r * t.n_cols + bench_col];
        int seen = 0;
        for (int q = 0; q < r; q++) seen |= strcmp(t.text[q * t.n_cols + bench_col], name) == 0;
        if (seen) continue;
        int n = 0;
        for (int q = r; q < t.n_rows; q++)
            if (strcmp(t.text[q * t.n_cols + bench_col], name) == 0) {
                x[n] = t.values[q * t.n_cols];
                y[n++] = t.values[q * t.n_cols + acc_col];
            }
        s = fkd_plot_add(&p, NULL, name, x, y, n);
    }
    snprintf(out, sizeof out, "%s/accuracy.png", run_dir);
    if (s == FKD_OK) s = fkd_plot_save_png(&p, out);
    free(x);
    free(y);
    fkd_plot_free(&p);
    csv_free(&t);
    return s;
}

fkd_status fkd_runlog_plot_curves(const char *run_dir)
{
    FKD_TRY(plot_log_csv(run_dir));
    return plot_eval_csv(run_dir);
}

fkd_status fkd_runlog_plot_roc(const char *path, const char *title, fkd_bench *const *benches,
                               float *const *embeddings, int n, int dim)
{
    fkd_plot p = {0};
    FKD_TRY(fkd_plot_init(&p, 800, 600, title, "false accept rate", "true accept rate"));
    fkd_plot_set_log_x(&p, 1);
    fkd_plot_set_range(&p, 1e-6, 1.0, 0.0, 1.0);
    fkd_status s = FKD_OK;
    for (int b = 0; s == FKD_OK && b < n; b++) {
        int pairs = (int)benches[b]->n_pairs;
        double *dist = malloc(sizeof(double) * (size_t)pairs), *score = malloc(sizeof(double) * (size_t)pairs);
        fkd_roc roc = {0};
        if (!dist || !score) s = FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", path);
        if (s == FKD_OK) {
            fkd_verify_pair_distances(dist, embeddings[b], pairs, dim);
            fkd_verify_scores_from_distances(score, dist, pairs);
            s = fkd_roc_compute(score, benches[b]->issame, pairs, &roc);
        }
        /* The log axis cannot show FAR = 0: start at the first point that accepts a
         * negative. */
        int first = 0;
        while (s == FKD_OK && first < roc.n_points && roc.far[first] <= 0) first++;
        if (s == FKD_OK && first < roc.n_points)
            s = fkd_plot_add(&p, NULL, benches[b]->name, roc.far + first, roc.tpr + first, roc.n_points - first);
        fkd_roc_free(&roc);
        free(dist);
        free(score);
    }
    if (s == FKD_OK) s = fkd_plot_save_png(&p, path);
    fkd_plot_free(&p);
    return s;
}
