/* `facekd viz`: what each margin does to the feature space, drawn in two dimensions.
 *
 * A narrow model with a 2-d embedding is first trained briefly with plain softmax on a
 * handful of synthetic identities; from that shared start each loss preset trains a few
 * more steps with its own head (the real trainer, recipe written into the output folder,
 * head.loss and model.weights set per preset). Margin heads trained from scratch on 2-d
 * features collapsed the class centres onto one or two directions within a few hundred
 * steps here; a softmax start is the two-stage remedy discussed for ArcFace in
 * deepinsight/insightface issues #214 and #313.
 * Held-out images of the identities (image indices after the training ones) are embedded
 * with each trained model and drawn: points coloured by identity, the class centres
 * (head.weight rows) as dashed lines from the origin, the unit circle, and a title with
 * the preset's margin parameters.
 *
 * Presets whose head normalises features (x_norm: norm-softmax, cosface, arcface) are
 * drawn on the unit circle, since only the direction enters their loss; the others
 * (softmax, l-softmax, sphereface) are drawn raw, since their logits grow with the
 * feature norm and the radial spread is part of the picture.
 *
 * OUT/
 *   viz.yaml                 the base recipe (every run loads it)
 *   runs/pretrain/           the shared softmax start (a trainer run folder)
 *   runs/<preset>/           each preset's run folder (log.csv, model.safetensors, ...)
 *   viz.csv                  per preset: margins, seconds, held-out accuracy, mean angle
 *   <preset>.png             one picture per preset
 *   grid.png                 all pictures side by side
 */
#ifndef FKD_TRAIN_VIZ_H
#define FKD_TRAIN_VIZ_H

#include <stdbool.h>
#include <stdint.h>

#include "core/status.h"
#include "eval/plot.h"

#define FKD_VIZ_MAX_PRESETS 16
#define FKD_VIZ_MAX_SETS 32

typedef struct {
    const char *out;                              /* output folder */
    const char *presets[FKD_VIZ_MAX_PRESETS];     /* head.loss values */
    int n_presets;
    int64_t steps;               /* training steps per preset */
    int64_t pretrain_steps;      /* shared softmax pre-training (0: each preset from scratch) */
    int identities;              /* synthetic identities (classes) */
    int images_per_identity;     /* training images per identity */
    int heldout;                 /* held-out images per identity drawn in the picture */
    int64_t seed;                /* world and training seed */
    int width;                   /* model.width of the mbf model */
    int batch;                   /* batch size */
    double lr;                   /* peak learning rate (sgd, poly schedule) */
    const char *sets[FKD_VIZ_MAX_SETS]; /* extra recipe overrides "key.path=value", applied last */
    int n_sets;
} fkd_viz_options;

/* Six presets (softmax … arcface), 8 identities × 40 images, 10 held out, 300 steps of
 * softmax pre-training then 150 per preset, batch 16, mbf width 16, adamw lr 0.02, seed 1. */
void fkd_viz_options_default(fkd_viz_options *o);

/* Trains and draws every preset of `o`, then the grid. */
fkd_status fkd_viz_run(const fkd_viz_options *o);

/* Draws one picture from features x (n, 2) with labels (n) and class centres w (c, 2):
 * points normalised to the unit circle when `normalise`, centre directions as lines
 * from the origin, the unit circle; width = height = `size` pixels. The caller renders or
 * saves `p` and frees it. */
fkd_status fkd_viz_picture(fkd_plot *p, int size, const char *title, const float *x, const int32_t *labels,
                           int64_t n, const float *w, int classes, bool normalise);

#endif
