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

#define FKD_BASELINE_N_FEATURES 3
#define FKD_BASELINE_GREY_DIM (28 * 28)

typedef struct {
    const char *feature; /* "rgb112", "grey28", "grey28-wccn" */
    double mean, std;    /* 10-fold accuracy */
} fkd_baseline_result;

/* Accuracy of thresholding `sim` (higher = same) with ten contiguous folds: each fold is
 * scored with the threshold that is best on the other nine. */
void fkd_baseline_fold_accuracy(const double *sim, const bool *same, int64_t n, int n_folds, double *mean,
                                double *std);

/* The one learned baseline: within-class covariance normalisation (WCCN) of the grey28
 * feature, a linear map fitted on training identities only: x -> L^-1 x with
 * L L^T = S_w + lambda I (S_w the within-identity covariance, lambda 0.1 of its mean
 * variance), then cosine. It shows how much identity signal a linear projection finds. */
typedef struct {
    double *L; /* (784, 784) lower-triangular Cholesky factor, row-major */
} fkd_baseline_wccn;

/* Fits on identities [0, n_ids) x images [0, per_id) of the world's training range. */
fkd_status fkd_baseline_wccn_fit(const fkd_synth_world *w, int n_ids, int per_id, fkd_baseline_wccn *m);
void fkd_baseline_wccn_free(fkd_baseline_wccn *m);

/* Renders benchmark `name` and scores the pixel features, and the WCCN feature when `m`
 * is not NULL (out[2].feature is NULL otherwise). */
fkd_status fkd_baseline_run(const fkd_synth_world *w, const char *name, const fkd_baseline_wccn *m,
                            fkd_baseline_result out[FKD_BASELINE_N_FEATURES]);

#endif
