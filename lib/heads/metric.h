/* Metric losses on embeddings inside a batch: contrastive (DeepID2), triplet (FaceNet,
 * with batch-all, batch-hard and semi-hard mining) and center loss (Wen et al. 2016).
 *
 * Legend: B batch, d embedding size, C classes; f (B, d) embeddings, y (B) labels,
 * D_ij = ‖f_i − f_j‖².
 *
 *   contrastive  L = mean over pairs i < j of  ½·D_ij                   (y_i = y_j)
 *                                              ½·max(0, m − √D_ij)²     (y_i ≠ y_j)
 *   triplet      L = mean over the mined triplets of max(0, D_ap − D_an + α)
 *                  all:       every (a, p ≠ a same label, n other label)
 *                  hard:      per anchor, the farthest positive and nearest negative
 *                             (Hermans et al. 2017, "batch hard")
 *                  semi-hard: per (a, p), the nearest negative with D_an > D_ap, else the
 *                             farthest negative (FaceNet §3.2; TensorFlow's
 *                             triplet_semihard_loss uses the same fallback)
 *                with `normalize`, f is first projected on the unit sphere (FaceNet).
 *   center       L = λ/(2B) · Σ_i ‖f_i − c_y_i‖², added to a softmax-family head;
 *                after each step c_j ← c_j − α·Σ_{y_i=j}(c_j − f_i)/(1 + n_j).
 * Mining picks are constants of the step: gradients flow through the chosen distances.
 *
 * The cores run in double on caller arrays (the _f64 functions, used by gradient checks);
 * fkd_metric_loss wraps them for fp32 embeddings with a workspace allocated once.
 */
#ifndef FKD_HEADS_METRIC_H
#define FKD_HEADS_METRIC_H

#include <stdbool.h>
#include <stdint.h>

#include "core/status.h"
#include "nn/graph.h"

typedef enum { FKD_METRIC_CONTRASTIVE = 0, FKD_METRIC_TRIPLET, FKD_METRIC_CENTER, FKD_METRIC_COUNT } fkd_metric_kind;
typedef enum { FKD_MINING_ALL = 0, FKD_MINING_HARD, FKD_MINING_SEMIHARD, FKD_MINING_COUNT } fkd_triplet_mining;

typedef struct {
    double contrastive_margin; /* m, > 0 */
    double triplet_margin;     /* α, >= 0 */
    fkd_triplet_mining mining;
    bool triplet_normalize;
    double center_alpha;       /* centre learning rate, in (0, 1] */
    double center_lambda;      /* weight λ, >= 0 */
} fkd_metric_params;

/* Defaults (sources in docs/LOSSES.md): contrastive m 1, triplet α 0.2, semi-hard,
 * normalised; center α 0.5, λ 0.003. */
void fkd_metric_params_default(fkd_metric_params *p);
/* Keys (recipe "head." prefix left out): contrastive.margin, triplet.margin,
 * triplet.mining (all | hard | semi-hard), triplet.normalize, center.alpha,
 * center.lambda. Checks the value's range; errors name the key. */
fkd_status fkd_metric_params_set(fkd_metric_params *p, const char *key, const char *value);

/* Double cores: write *loss and df (B, d) (df may be NULL). Labels are any ints. */
fkd_status fkd_contrastive_loss_f64(const double *f, const int *labels, int batch, int dim,
                                    double margin, double *loss, double *df);
fkd_status fkd_triplet_loss_f64(const double *f, const int *labels, int batch, int dim, double alpha,
                                fkd_triplet_mining mining, bool normalize, double *loss, double *df);
/* centers (C, d); labels in [0, C). */
fkd_status fkd_center_loss_f64(const double *f, const int *labels, const double *centers, int batch,
                               int dim, int classes, double lambda, double *loss, double *df);

typedef struct fkd_metric_loss fkd_metric_loss;

/* `classes` is used by the center loss only (its centres start at 0). */
fkd_status fkd_metric_loss_create(fkd_metric_loss **out, fkd_metric_kind kind, const fkd_metric_params *p,
                                  int classes, int dim, int max_batch);
void fkd_metric_loss_free(fkd_metric_loss *m);
/* Loss of f (B, d) fp32 with labels; writes dL/df (B, d) into df (may be NULL). */
fkd_status fkd_metric_loss_forward(fkd_metric_loss *m, const float *f, const int *labels, int batch,
                                   float *loss, float *df);
/* Center loss: moves the centres of this batch's classes (call once per step, after
 * forward). */
fkd_status fkd_metric_loss_update_centers(fkd_metric_loss *m, const float *f, const int *labels, int batch);
/* Center loss: "head.centers" (C, d), saved with the checkpoint, not trained by the
 * optimizer (trainable = false). Other kinds: no parameters. */
fkd_status fkd_metric_loss_params(fkd_metric_loss *m, fkd_param **params, int *count);

#endif
