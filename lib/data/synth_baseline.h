/* A non-learned baseline for calibrating the synthetic benchmarks: cosine similarity of
 * raw pixels (after flip-sum), scored with the LFW 10-fold best-threshold protocol.
 * Used by `facekd synth --baseline` (docs/SYNTH.md); a stand-in until trained models
 * exist, not the evaluation protocol (lib/eval has that). */
#ifndef FKD_DATA_SYNTH_BASELINE_H
#define FKD_DATA_SYNTH_BASELINE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/status.h"
#include "data/synth.h"

#define FKD_BASELINE_N_FEATURES 2

typedef struct {
    const char *feature; /* "rgb112", "grey28" */
    double mean, std;    /* 10-fold accuracy */
} fkd_baseline_result;

/* Accuracy of thresholding `sim` (higher = same) with ten contiguous folds: each fold is
 * scored with the threshold that is best on the other nine. */
void fkd_baseline_fold_accuracy(const double *sim, const bool *same, int64_t n, int n_folds, double *mean,
                                double *std);

/* Renders benchmark `name` and scores both pixel features. */
fkd_status fkd_baseline_run(const fkd_synth_world *w, const char *name,
                            fkd_baseline_result out[FKD_BASELINE_N_FEATURES]);

#endif
