/* The run folder's tables and pictures: log.csv and eval.csv (appended a line at a time,
 * trimmed back to a checkpoint's step on resume; numeric, so `facekd plot` reads them), training curves and ROC plots as PNG. */
#ifndef FKD_TRAIN_RUNLOG_H
#define FKD_TRAIN_RUNLOG_H

#include <stdint.h>

#include "core/status.h"
#include "eval/bench.h"
#include "eval/verify.h"

/* Writes `header` as a new file (atomically) unless `keep_until_step` >= 0, in which case
 * the existing file keeps only its header and the rows whose first field (the step) is
 * <= keep_until_step — the state of a run resumed from that step. */
fkd_status fkd_runlog_start(const char *path, const char *header, int64_t keep_until_step);
/* Appends one line (a trailing newline is added). */
fkd_status fkd_runlog_append(const char *path, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Training curves from log.csv and eval.csv: loss.png (every loss column), lr.png and,
 * when eval.csv has rows, accuracy.png (the columns named after each benchmark). */
fkd_status fkd_runlog_plot_curves(const char *run_dir, const char *const *benches, int n_benches);

/* ROC curves (TPR against FAR on a log axis), one per series: series i has n_pairs[i]
 * squared L2 distances of normalised embeddings dist[i] with labels issame[i]. */
fkd_status fkd_runlog_plot_roc(const char *path, const char *title, int n, const char *const *labels,
                               const double *const *dist, const uint8_t *const *issame, const int64_t *n_pairs);

/* The same for one model on several benchmarks: one curve per benchmark from its
 * flip-summed embeddings embeddings[i] (2 n_pairs, dim). */
fkd_status fkd_runlog_plot_bench_roc(const char *path, const char *title, fkd_bench *benches, int n,
                                     float *const *embeddings, int dim);

#endif
