#include "train/runlog.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "eval/csvtable.h"
#include "eval/plot.h"

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
        /* A last line without its newline is a row cut short by a killed run. */
        if (!next) break;
        size_t len = (size_t)(next - line) + 1;
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

/* Adds column `col` of `t` against its first column (the step) as a line series. */
static fkd_status plot_column(fkd_plot *p, const fkd_csv_table *t, int col, const char *label)
{
    double *x = malloc(sizeof(double) * (size_t)(t->n_rows + 1));
    double *y = malloc(sizeof(double) * (size_t)(t->n_rows + 1));
    fkd_status s = x && y ? FKD_OK : FKD_FAIL(FKD_ERR_NOMEM, "plot: out of memory");
    if (s == FKD_OK) {
        fkd_csv_table_get(t, 0, x);
        fkd_csv_table_get(t, col, y);
        if (t->n_rows > 0) s = fkd_plot_add(p, NULL, label, x, y, t->n_rows);
    }
    free(x);
    free(y);
    return s;
}

/* Plots the columns [first, last) of `csv` into `png`; nothing when the log is empty. */
static fkd_status plot_columns(const char *run_dir, const char *csv, const char *png, const char *title,
                               const char *ylabel, const char *const *columns, int n_columns, int first_after,
                               const char *last_before)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", run_dir, csv);
    fkd_csv_table t = {0};
    FKD_TRY(fkd_csv_table_load(path, &t));
    fkd_plot p = {0};
    fkd_status s = FKD_OK;
    if (t.n_rows > 0) s = fkd_plot_init(&p, 800, 480, title, "step", ylabel);
    if (t.n_rows > 0 && columns) {
        for (int i = 0; s == FKD_OK && i < n_columns; i++) {
            int c = fkd_csv_table_column(&t, columns[i]);
            if (c > 0) s = plot_column(&p, &t, c, columns[i]);
        }
    } else if (t.n_rows > 0) {
        int last = last_before ? fkd_csv_table_column(&t, last_before) : t.n_cols;
        for (int c = first_after + 1; s == FKD_OK && c < last; c++) s = plot_column(&p, &t, c, t.names[c]);
    }
    snprintf(path, sizeof path, "%s/%s", run_dir, png);
    if (s == FKD_OK && t.n_rows > 0) s = fkd_plot_save_png(&p, path);
    fkd_plot_free(&p);
    fkd_csv_table_free(&t);
    return s;
}

fkd_status fkd_runlog_plot_curves(const char *run_dir, const char *const *benches, int n_benches)
{
    static const char *const lr[] = {"lr"};
    /* log.csv: step, epoch, lr, loss, <terms>..., images_per_s */
    FKD_TRY(plot_columns(run_dir, "log.csv", "loss.png", "training loss", "loss", NULL, 0, 2, "images_per_s"));
    FKD_TRY(plot_columns(run_dir, "log.csv", "lr.png", "learning rate", "lr", lr, 1, 0, NULL));
    if (n_benches == 0) return FKD_OK;
    return plot_columns(run_dir, "eval.csv", "accuracy.png", "verification accuracy (10-fold)", "accuracy (%)",
                        benches, n_benches, 0, NULL);
}

fkd_status fkd_runlog_plot_roc(const char *path, const char *title, int n, const char *const *labels,
                               const double *const *dist, const uint8_t *const *issame, const int64_t *n_pairs)
{
    fkd_plot p = {0};
    FKD_TRY(fkd_plot_init(&p, 800, 600, title, "false accept rate", "true accept rate"));
    fkd_plot_set_log_x(&p, 1);
    fkd_plot_set_range(&p, 1e-6, 1.0, 0.0, 1.0);
    fkd_status s = FKD_OK;
    for (int b = 0; s == FKD_OK && b < n; b++) {
        int pairs = (int)n_pairs[b];
        double *score = malloc(sizeof(double) * (size_t)pairs);
        fkd_roc roc = {0};
        if (!score) s = FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", path);
        if (s == FKD_OK) {
            fkd_verify_scores_from_distances(score, dist[b], pairs);
            s = fkd_roc_compute(score, issame[b], pairs, &roc);
        }
        /* The log axis cannot show FAR = 0: start at the first point that accepts a
         * negative. */
        int first = 0;
        while (s == FKD_OK && first < roc.n_points && roc.far[first] <= 0) first++;
        if (s == FKD_OK && first < roc.n_points)
            s = fkd_plot_add(&p, NULL, labels[b], roc.far + first, roc.tpr + first, roc.n_points - first);
        fkd_roc_free(&roc);
        free(score);
    }
    if (s == FKD_OK) s = fkd_plot_save_png(&p, path);
    fkd_plot_free(&p);
    return s;
}

fkd_status fkd_runlog_plot_bench_roc(const char *path, const char *title, fkd_bench *benches, int n,
                                     float *const *embeddings, int dim)
{
    const char **labels = calloc((size_t)n + 1, sizeof *labels);
    const double **dist = calloc((size_t)n + 1, sizeof *dist);
    const uint8_t **issame = calloc((size_t)n + 1, sizeof *issame);
    int64_t *n_pairs = calloc((size_t)n + 1, sizeof *n_pairs);
    fkd_status s = labels && dist && issame && n_pairs ? FKD_OK : FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", path);
    for (int i = 0; s == FKD_OK && i < n; i++) {
        double *d = malloc(sizeof(double) * (size_t)benches[i].n_pairs);
        if (!d) s = FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", path);
        if (d) fkd_verify_pair_distances(d, embeddings[i], (int)benches[i].n_pairs, dim);
        dist[i] = d;
        labels[i] = benches[i].name;
        issame[i] = benches[i].issame;
        n_pairs[i] = benches[i].n_pairs;
    }
    if (s == FKD_OK) s = fkd_runlog_plot_roc(path, title, n, labels, dist, issame, n_pairs);
    for (int i = 0; dist && i < n; i++) free((double *)dist[i]);
    free(labels);
    free(dist);
    free(issame);
    free(n_pairs);
    return s;
}
