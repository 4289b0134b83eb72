/* Face verification: insightface's 10-fold protocol, and ROC statistics beside it.
 *
 * A verification set is N pairs; item 2i and 2i+1 form pair i, issame[i] is 1 when both
 * show the same person. Embeddings are (2N, d) row-major floats: the raw outputs for the
 * images and their mirrors (fkd_verify_flip_pairs), or rows already flip-summed by the
 * caller (fkd_verify_embeddings). Work is done in double, as insightface does (its
 * embeddings are float64 numpy arrays).
 *
 * insightface protocol (recognition/arcface_torch/eval/verification.py):
 *   - rows L2-normalised, dist_i = ||a_i - b_i||^2 (0..4),
 *   - thresholds t_k = k * 0.01, k = 0..399 (np.arange(0, 4, 0.01)), accept when dist < t,
 *   - 10 contiguous folds (sklearn KFold, shuffle=False: the first N % 10 folds hold one
 *     pair more), on each fold the first threshold with the highest accuracy on the 9
 *     other folds is applied to the held-out fold,
 *   - accuracy = mean over folds, std = population std (ddof = 0),
 *   - VAL@FAR=1e-3: thresholds k * 0.001, per fold the threshold reaching FAR 1e-3 on the
 *     training folds (scipy interp1d 'slinear' over (far, threshold)), VAL/FAR measured on
 *     the held-out fold.
 *
 * ROC statistics (facekd's own, over all pairs, no folds) use the cosine similarity
 * s = <a, b> of the normalised rows (= 1 - dist/2), accept when s >= threshold. */
#ifndef FKD_EVAL_VERIFY_H
#define FKD_EVAL_VERIFY_H

#include <stdint.h>

#include "core/status.h"

#define FKD_VERIFY_MAX_FOLDS 32
/* TAR is reported at FAR 1e-1, 1e-2, ..., 1e-6. */
#define FKD_VERIFY_N_FAR 6

extern const double fkd_verify_far_targets[FKD_VERIFY_N_FAR];

/* The ROC over all pairs: one point per distinct score, from (0, 0) (nothing accepted,
 * threshold +inf) to (1, 1). Point i accepts every pair with score >= threshold[i]. */
typedef struct {
    int n_points;
    int n_pos, n_neg;
    double *threshold; /* (n_points) cosine similarity, descending; [0] = +inf */
    int *n_true_accept;  /* (n_points) positives accepted */
    int *n_false_accept; /* (n_points) negatives accepted */
    double *tpr, *far;   /* (n_points) n_true_accept / n_pos, n_false_accept / n_neg */
} fkd_roc;

typedef struct {
    int n_pairs, n_pos, n_neg;

    /* insightface protocol */
    int n_folds;
    int fold_begin[FKD_VERIFY_MAX_FOLDS], fold_end[FKD_VERIFY_MAX_FOLDS]; /* test pairs */
    double fold_threshold[FKD_VERIFY_MAX_FOLDS]; /* best squared-L2 threshold (train) */
    double fold_accuracy[FKD_VERIFY_MAX_FOLDS];  /* on the held-out fold, in [0, 1] */
    double accuracy_mean, accuracy_std;
    double fold_val_threshold[FKD_VERIFY_MAX_FOLDS];
    double val_mean, val_std, val_far_mean; /* VAL@FAR=1e-3, insightface style */

    /* ROC over all pairs (cosine similarity) */
    double tar[FKD_VERIFY_N_FAR];           /* NAN when skipped (too few negatives) */
    double tar_threshold[FKD_VERIFY_N_FAR]; /* cosine threshold used, NAN when skipped */
    double tar_far[FKD_VERIFY_N_FAR];       /* FAR actually reached (<= target) */
    double eer, eer_threshold;
    double auc;
    double xnorm; /* mean L2 norm of the raw embeddings; NAN when not computed */
} fkd_verify_result;

/* out = normalize(e + e_flip), row by row; (rows, d). A zero row stays zero (as
 * sklearn.preprocessing.normalize). `out` may alias either input. */
void fkd_verify_flip_sum(float *out, const float *e, const float *e_flip, int rows, int d);

/* Mean L2 norm of the rows of emb (rows, d): insightface's XNorm, computed over the raw
 * (not flip-summed, not normalised) embeddings of images and their mirrors. */
double fkd_verify_xnorm(const float *emb, int rows, int d);

/* dist (n_pairs) = squared L2 distance between the normalised rows 2i and 2i+1 of emb
 * (2 n_pairs, d). */
fkd_status fkd_verify_pair_distances(double *dist, const float *emb, int n_pairs, int d);

/* sklearn KFold(n_splits, shuffle=False): test fold `fold` is pairs [*begin, *end). */
void fkd_verify_kfold(int n, int n_splits, int fold, int *begin, int *end);

/* np.arange(0, stop, step) as insightface builds it: k * step, ceil(stop / step) values. */
int fkd_verify_threshold_count(double stop, double step);

/* The insightface protocol and the ROC statistics from squared-L2 distances of
 * normalised embeddings (n_pairs). xnorm is left NAN. n_folds in 2..FKD_VERIFY_MAX_FOLDS,
 * n_pairs >= n_folds, at least one positive and one negative pair. */
fkd_status fkd_verify_distances(const double *dist, const uint8_t *issame, int n_pairs, int n_folds,
                                fkd_verify_result *res);

/* The same from embeddings (2 n_pairs, d). */
fkd_status fkd_verify_embeddings(const float *emb, const uint8_t *issame, int n_pairs, int d,
                                 int n_folds, fkd_verify_result *res);

/* insightface's test() from the raw network outputs: emb and emb_flip (2 n_pairs, d) are
 * the embeddings of the images and of their mirrors. The flip-sum, normalisation and
 * distances are done in double, as insightface does (rounding the flip-sum to float
 * first, as fkd_verify_flip_sum does, can move a distance across a threshold); xnorm is
 * the mean L2 norm over both (4 n_pairs rows). emb_flip NULL: no flip test, xnorm NAN. */
fkd_status fkd_verify_flip_pairs(const float *emb, const float *emb_flip, const uint8_t *issame, int n_pairs, int d,
                                 int n_folds, fkd_verify_result *res);

/* ROC over all pairs from scores (higher = more alike). Owns its arrays: fkd_roc_free. */
fkd_status fkd_roc_compute(const double *score, const uint8_t *issame, int n_pairs, fkd_roc *roc);
void fkd_roc_free(fkd_roc *roc);

/* Highest TPR at FAR <= far_target; the threshold (accept score >= threshold) and the FAR
 * reached. Returns 0 and NANs when there are fewer than 1/far_target negatives (the
 * target cannot be resolved), 1 otherwise. */
int fkd_roc_tar_at_far(const fkd_roc *roc, double far_target, double *tar, double *threshold, double *far);

/* Equal error rate: FAR where FAR = 1 - TPR, linearly interpolated between the two ROC
 * points around the crossing; *threshold is the score of the point at/after it. */
double fkd_roc_eer(const fkd_roc *roc, double *threshold);

/* Area under the ROC (trapezoids over every point, ties counted as one point). */
double fkd_roc_auc(const fkd_roc *roc);

/* TPR and FAR when accepting score >= threshold: EKD's view of a student at the
 * teacher's thresholds. */
void fkd_roc_rates_at(const double *score, const uint8_t *issame, int n_pairs, double threshold,
                      double *tpr, double *far);

/* The ROC of fkd_verify_distances (cosine scores 1 - dist/2), e.g. for a ROC plot:
 * fkd_plot_add(&plot, NULL, "student", roc.far, roc.tpr, roc.n_points) on a log FAR axis
 * (the FAR = 0 points are skipped there). */
fkd_status fkd_verify_roc(const double *dist, const uint8_t *issame, int n_pairs, fkd_roc *roc);

/* EKD's view for every threshold at once: TPR and FAR (n_thr each) of a model given by
 * its distances at cosine thresholds chosen on another model, e.g. the teacher's
 * res.tar_threshold[]. A NAN threshold (a skipped FAR) gives NAN rates. */
fkd_status fkd_verify_rates_at_thresholds(const double *dist, const uint8_t *issame, int n_pairs,
                                          const double *thresholds, int n_thr, double *tpr, double *far);

/* Cosine similarity of normalised embeddings from their squared L2 distance: 1 - d/2. */
void fkd_verify_scores_from_distances(double *score, const double *dist, int n_pairs);

#endif
