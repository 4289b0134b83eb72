/* The margin-softmax head: one parametrised family covering softmax, L-Softmax,
 * SphereFace (A-Softmax), NormFace-style normalised softmax, CosFace, ArcFace and the
 * ArcFace paper's combined margin, intra-loss and inter-loss.
 *
 * Legend: B batch, C classes, d embedding size; W (C, d) class centres, x (B, d)
 * embeddings, y (B) labels, θ_ij the angle between x_i and W_j.
 *
 *   logit_ij = s·r_ij·cos θ_ij (+ b_j)                          j ≠ y_i
 *   logit_iy = s·r_iy·(ψ(θ_iy) − m3) (+ b_y)                    the true class
 *   r_ij     = (w_norm ? 1 : ‖W_j‖)·(x_norm ? 1 : ‖x_i‖)
 *   ψ(θ)     = cos(m1·θ + m2), with two refinements (fkd_margin_psi):
 *     - integer m1 ≥ 2, m2 = 0 (L-Softmax, SphereFace): ψ(θ) = (−1)^k·cos(m1·θ) − 2k on
 *       [kπ/m1, (k+1)π/m1], monotone and continuous on [0, π];
 *     - m1 = 1, m2 > 0 (ArcFace): insightface's rule where θ + m2 would pass π:
 *       when cos θ ≤ cos(π − m2), ψ = cos θ − m2·sin(m2) (or ψ = cos θ for cos θ ≤ 0 with
 *       easy_margin). Source: insightface recognition/arcface_torch/losses.py, class
 *       ArcFace (th = cos(π − m), mm = sin(π − m)·m), same rule as the MXNet original.
 *     - sphere_lambda λ > 0 (SphereFace's annealing): ψ ← (λ·cos θ + ψ)/(1 + λ).
 *   L = mean_i [ logsumexp_j logit_ij − logit_iy ]
 *       + intra · mean_i θ_iy/π                                  (ArcFace paper, L5)
 *       − inter · mean_i mean_{j≠y_i} angle(W_y_i, W_j)/π        (ArcFace paper, L6)
 *
 * ArcFace backward: by default the exact derivative of cos(θ + m2) with respect to cos θ,
 * sin(θ + m2)/sin θ, with sin θ floored at 1e-4 so it stays finite at cos θ = ±1.
 * straight_through = true instead passes the gradient to cos θ as if no margin had been
 * applied (dψ/dcos θ := 1), which is what newer arcface_torch does by editing the logits
 * in place under torch.no_grad(); only when a recipe asks for it.
 *
 * The head owns W (C, d) ("head.weight", initialised normal(0, 0.01) like arcface_torch)
 * and, for the softmax preset, b (C) ("head.bias"), with their gradients, as fkd_param
 * entries the optimizer and the checkpoint writer treat like any graph parameter.
 * Working buffers (two (B, C) arrays: the logits and their gradient) are allocated once
 * for a maximum batch; a step does not allocate.
 */
#ifndef FKD_HEADS_MARGIN_H
#define FKD_HEADS_MARGIN_H

#include <stdbool.h>
#include <stdint.h>

#include "core/status.h"
#include "nn/graph.h"

typedef struct {
    char preset[24];       /* preset it started from */
    double s;              /* scale, > 0 */
    double m1;             /* multiplicative angular margin, >= 1 (> 0 together with m2 > 0) */
    double m2;             /* additive angular margin (radians), in [0, π) */
    double m3;             /* additive cosine margin, >= 0 */
    bool w_norm;           /* normalise class centres */
    bool x_norm;           /* normalise features */
    bool bias;             /* per-class bias (softmax preset only; needs no norms) */
    bool easy_margin;      /* ArcFace: no margin where cos θ <= 0 */
    bool straight_through; /* ArcFace-style gradient: dψ/dcos θ := 1 (see above) */
    double intra;          /* weight of mean θ_y/π (ArcFace paper L5), >= 0 */
    double inter;          /* weight of −mean inter-centre angle/π (L6), >= 0; needs w_norm */
    double sphere_lambda;  /* λ >= 0 blends the plain cosine back in: (λ·cos θ + ψ)/(1 + λ);
                            * SphereFace anneals it down to 5 during training */
} fkd_margin_params;

/* Name of preset i in table order (softmax, l-softmax, ...); NULL past the end. */
const char *fkd_margin_preset_name(int i);

/* Fills `p` from a preset name ("arcface", ...). Error names the recipe key head.preset. */
fkd_status fkd_margin_params_preset(fkd_margin_params *p, const char *preset);
/* Overrides one key (without the "head." prefix): s, m1, m2, m3, w_norm, x_norm, bias,
 * easy_margin, straight_through, intra, inter, sphere_lambda. Values are text as in a
 * recipe. */
fkd_status fkd_margin_params_set(fkd_margin_params *p, const char *key, const char *value);
/* Checks ranges; errors read "head.s: must be > 0 (got 0)". A recipe's whole head
 * section (preset + overrides + validation) goes through heads/head.h. */
fkd_status fkd_margin_params_validate(const fkd_margin_params *p);

/* h = ψ(cos θ) − m3 for the true class and dh/dcos θ (in *dpsi; 1 with
 * straight_through). `m2` is the (possibly per-sample) additive angular margin. */
double fkd_margin_psi(const fkd_margin_params *p, double m2, double cos_theta, double *dpsi);

typedef struct fkd_margin_head fkd_margin_head;

/* Creates a head for `classes` × `dim` with buffers for up to `max_batch` samples; W is
 * drawn from normal(0, 0.01) with fkd_rng(seed, stream 0). Validates `p`. */
fkd_status fkd_margin_head_create(fkd_margin_head **out, const fkd_margin_params *p, int classes,
                                  int dim, int max_batch, uint64_t seed);
/* Safe on NULL and on a half-built head. */
void fkd_margin_head_free(fkd_margin_head *h);

/* Loss (mean over the batch) for x (B, d) and labels y (B) in [0, C); m2 (B) is an
 * optional per-sample additive angular margin (NULL: p->m2). Writes dL/dx (B, d) to dx
 * (may be NULL) and ACCUMULATES dL/dW, dL/db into the parameters' gradients unless the
 * centres are frozen. The logits of this batch stay readable by
 * fkd_margin_head_logits() until the next call. labels == NULL is an error. */
fkd_status fkd_margin_head_forward(fkd_margin_head *h, const float *x, const int *labels,
                                   const float *m2, int batch, float *loss, float *dx);
/* Plain logits without any margin, s·r·cos θ (+ b), for x (B, d) and no labels (what
 * KD reads); returns a pointer to the head's (B, C) buffer in *logits. */
fkd_status fkd_margin_head_plain_logits(fkd_margin_head *h, const float *x, int batch,
                                        const float **logits);
/* The (B, C) logits of the last forward or plain_logits call (margin included). */
const float *fkd_margin_head_logits(const fkd_margin_head *h);

/* Copies centres W (C, d) in (e.g. the teacher's); `freeze` stops their training. */
fkd_status fkd_margin_head_set_centers(fkd_margin_head *h, const float *w, bool freeze);
/* Sets sphere_lambda for the next steps (the trainer's annealing schedule); λ >= 0. */
fkd_status fkd_margin_head_set_sphere_lambda(fkd_margin_head *h, double lambda);
/* Zeroes the parameter gradients. */
void fkd_margin_head_zero_grad(fkd_margin_head *h);
/* "head.weight" (C, d) and, with a bias, "head.bias" (C). Valid until free. */
fkd_status fkd_margin_head_params(fkd_margin_head *h, fkd_param **params, int *count);
const fkd_margin_params *fkd_margin_head_config(const fkd_margin_head *h);

/* The same loss in double precision on caller arrays, for gradient checks and as a
 * reference: W (C, d), b (C) or NULL, x (B, d), m2 (B) or NULL. Writes (not accumulates)
 * dx (B, d), dW (C, d), db (C) (each may be NULL). Allocates its own workspace. */
fkd_status fkd_margin_loss_f64(const fkd_margin_params *p, const double *w, const double *b,
                               const double *x, const int *labels, const double *m2, int batch,
                               int classes, int dim, double *loss, double *dx, double *dw,
                               double *db);

#endif
