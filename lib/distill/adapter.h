/* Learned adapters and tap pairs, shared by the feature-matching distillers (fitnet,
 * shrinkteanet; internal: fkd__ names).
 *
 * A tap pair is what such a method compares: one student tensor and one teacher tensor,
 * each a named tap (a stage feature map, plain NCHW) or the embedding (c = d, h = w = 1),
 * chosen by the options `tap` (both sides), `student_tap`, `teacher_tap`.
 *
 * An adapter is a per-pixel linear map c_s → c_t (+ bias): a 1×1 convolution, the
 * regressor FitNets puts on the student side when the widths differ. Its weight and bias
 * are trainable parameters owned by the distiller (fkd_param, with gradients), exposed to
 * the trainer through fkd_distiller_params().
 *
 * A mapped pair puts both together: the student side, mapped by the adapter when there is
 * one, next to the teacher side, both flattened per sample to (b, f) with f = c_t·h·w, so
 * a method only writes its loss on two (b, f) arrays and ∂L/∂(mapped student).
 *
 * Legend: b batch, c_s/c_t channels, hw = h·w pixels per channel, f = c_t·hw.
 */
#ifndef FKD_DISTILL_ADAPTER_H
#define FKD_DISTILL_ADAPTER_H

#include <stdbool.h>
#include <stdint.h>

#include "distill/distiller.h"

/* ---- adapter: y = W x + bias per pixel ------------------------------------------------ */

typedef struct {
    int64_t c_in, c_out, hw;
    char names[2][96];     /* "<scope>.adapter.weight", "<scope>.adapter.bias" */
    fkd_param params[2];   /* weight (c_out, c_in, 1, 1), bias (c_out) */
    float *block;
    float *weight, *d_weight; /* (c_out, c_in) */
    float *bias, *d_bias;     /* (c_out) */
} fkd__adapter;

/* Allocates the adapter and initialises it like torch's Conv2d default (weight and bias
 * uniform in ±1/sqrt(c_in)), deterministically from `seed` and the parameter names.
 * `scope` prefixes the parameter names; `who` names the method in errors. */
fkd_status fkd__adapter_init(fkd__adapter *a, const char *scope, int64_t c_in, int64_t c_out,
                             int64_t hw, uint64_t seed, const char *who);

/* y (b, c_out, hw) = W x + bias for x (b, c_in, hw). */
fkd_status fkd__adapter_forward(const fkd__adapter *a, float *y, const float *x, int64_t b);

/* d_weight (c_out, c_in) += scale · Σ_n dy_n x_nᵀ;  d_bias += scale · Σ_n,p dy;
 * dx (b, c_in, hw) += scale · Wᵀ dy (skipped when dx is NULL). */
fkd_status fkd__adapter_backward(fkd__adapter *a, float *dx, const float *dy, const float *x,
                                 int64_t b, float scale);

void fkd__adapter_free(fkd__adapter *a); /* safe on a zeroed adapter */

/* ---- tap pair ------------------------------------------------------------------------- */

typedef struct {
    bool s_tap, t_tap;           /* side reads a tap (else the embedding) */
    fkd_distill_tap_shape s, t;  /* per-sample shapes ((d, 1, 1) for an embedding) */
} fkd__tap_pair;

/* Reads the options tap, student_tap, teacher_tap (names; none = embedding), looks the
 * shapes up, and swaps the embedding needs for tap needs on the sides that read a tap. */
fkd_status fkd__tap_pair_resolve(fkd__tap_pair *p, fkd_distill_needs *needs,
                                 fkd_distill_options *opts, const fkd_distill_context *ctx);

/* ---- mapped pair: (adapted) student next to teacher ----------------------------------- */

typedef struct {
    fkd__tap_pair taps;
    bool adapted;        /* an adapter maps the student side */
    fkd__adapter adapter;
    int64_t f_s, f;      /* per-sample widths: student c_s·hw, compared f = c_t·hw */
    float *block;
    float *y;            /* (B, f) adapted student */
    float *dy;           /* (B, f) ∂L/∂(compared student), filled by the method */
} fkd__mapped_pair;

/* Resolves the taps; fails (naming both taps and shapes) when the spatial sizes differ,
 * or when the channels differ and `adapter` is false. Reads the option `adapter` (bool,
 * default true when the channel counts differ); the adapter is seeded from ctx->seed.
 * Allocates y and dy for ctx->max_batch. */
fkd_status fkd__mapped_pair_init(fkd__mapped_pair *m, fkd_distill_needs *needs,
                                 fkd_distill_options *opts, const fkd_distill_context *ctx,
                                 const char *who);

/* The student side as compared (b, f): the adapter's output, or the input itself. The
 * teacher side is fkd__mapped_pair_teacher(). Zeroes dy for the method to fill. */
fkd_status fkd__mapped_pair_forward(fkd__mapped_pair *m, const fkd_distill_inputs *in,
                                    const float **student, int64_t b);
const float *fkd__mapped_pair_teacher(const fkd__mapped_pair *m, const fkd_distill_inputs *in);

/* Takes dy (= ∂L/∂student as compared) back: into the adapter's gradients and into
 * out->d_student_tap or d_student_emb (whichever the student side reads), times
 * out->grad_scale. Does nothing when out is NULL. */
fkd_status fkd__mapped_pair_backward(fkd__mapped_pair *m, const fkd_distill_inputs *in,
                                     const fkd_distill_outputs *out, int64_t b);

/* The adapter's parameters (0 without adapter). */
int fkd__mapped_pair_params(fkd__mapped_pair *m, fkd_param **params);

void fkd__mapped_pair_free(fkd__mapped_pair *m); /* safe on a zeroed pair */

#endif
