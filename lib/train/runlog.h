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

/* One ROC curve per benchmark (TPR against FAR on a log axis) from flip-summed
 * embeddings (2 n_pairs, d) of each benchmark. */
fkd_status fkd_runlog_plot_roc(const char *path, const char *title, fkd_bench *const *benches,
                               float *const *embeddings, int n, int dim);

#endif
