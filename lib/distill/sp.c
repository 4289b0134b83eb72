/* sp — Tung, Mori, "Similarity-Preserving Knowledge Distillation" (ICCV 2019): samples
 * that the teacher finds similar should be similar for the student too.
 *
 * With F the batch's activations flattened per sample (b, f) — the embedding, or a
 * feature tap (b, c·h·w) — G = F Fᵀ (b, b) and Ĝ its rows L2-normalised:
 *     L = 1/b² · ‖Ĝ_s − Ĝ_t‖²_F
 *     ∂L/∂Ĝ_s = 2 (Ĝ_s − Ĝ_t) / b², then through the row normalisation and the Gram:
 *     ∂L/∂F_s = (∂L/∂G_s + ∂L/∂G_sᵀ) F_s
 * The teacher side has no gradient. Because G is b × b, student and teacher may differ in
 * width (and one side may use a tap while the other uses the embedding).
 *
 * Defaults: the paper's loss has no hyperparameter inside it; its weight (γ = 3000 in the
 * paper's CIFAR experiments, the value RepDistiller's SP recipe keeps) is the recipe's
 * `weight`. Without a tap the method uses the embeddings (as for a face model's
 * penultimate layer); `tap: stage3` uses that feature map on both sides.
 *
 * Parameters: tap (name, none), student_tap, teacher_tap (names, default `tap`).
 */
#include <stdlib.h>
#include <string.h>

#include "distill/adapter.h"
#include "distill/distiller.h"
#include "distill/ops.h"

typedef struct {
    int64_t f_s, f_t;           /* per-sample widths */
    bool s_tap, t_tap;          /* which side reads a tap */
    float *block;
    float *gs, *gs_hat, *gs_norm; /* (B, B), (B, B), (B) */
    float *gt, *gt_hat, *gt_norm;
    float *d_gs; /* (B, B) ∂L/∂G_s */
    float *d_hat; /* (B, B) ∂L/∂Ĝ_s */
} sp_state;

static void sp_free(void *state)
{
    sp_state *st = state;
    if (!st) return;
    free(st->block);
    free(st);
}

static fkd_status sp_create(void **state, fkd_distill_needs *needs, fkd_distill_options *opts,
                            const fkd_distill_context *ctx)
{
    fkd__tap_pair taps; /* the embedding on a side without a tap: (d, 1, 1) */
    FKD_TRY(fkd__tap_pair_resolve(&taps, needs, opts, ctx));
    sp_state *st = calloc(1, sizeof *st);
    if (!st) return fkd_distill_options_fail(opts, FKD_ERR_NOMEM, "out of memory");
    st->f_s = taps.s.c * taps.s.h * taps.s.w;
    st->f_t = taps.t.c * taps.t.h * taps.t.w;
    st->s_tap = taps.s_tap;
    st->t_tap = taps.t_tap;
    int64_t B = ctx->max_batch, bb = B * B;
    float **const ptrs[] = {&st->gs, &st->gs_hat, &st->gs_norm, &st->gt,
                            &st->gt_hat, &st->gt_norm, &st->d_gs, &st->d_hat};
    const int64_t sizes[] = {bb, bb, B, bb, bb, B, bb, bb};
    fkd_status r = fkd__alloc_buffers(&st->block, ptrs, sizes, 8, "sp");
    if (r != FKD_OK) {
        sp_free(st);
        return r;
    }
    *state = st;
    return FKD_OK;
}

static fkd_status sp_forward(void *state, const fkd_distill_inputs *in,
                             const fkd_distill_outputs *out, double *loss)
{
    sp_state *st = state;
    int64_t b = in->batch, bb = b * b;
    const float *fs = st->s_tap ? in->student_tap : in->student_emb;
    const float *ft = st->t_tap ? in->teacher_tap : in->teacher_emb;
    FKD_TRY(fkd__gram(st->gs, fs, b, st->f_s, st->f_s));
    FKD_TRY(fkd__gram(st->gt, ft, b, st->f_t, st->f_t));
    fkd__rows_normalize(st->gs_hat, st->gs_norm, st->gs, b, b);
    fkd__rows_normalize(st->gt_hat, st->gt_norm, st->gt, b, b);
    double sum = 0.0;
    float g = 2.0f / (float)bb;
    for (int64_t n = 0; n < bb; n++) {
        float e = st->gs_hat[n] - st->gt_hat[n];
        sum += (double)e * e;
        st->d_hat[n] = g * e;
        st->d_gs[n] = 0.0f;
    }
    *loss = sum / (double)bb;
    float *dx = !out ? NULL : (st->s_tap ? out->d_student_tap : out->d_student_emb);
    if (!dx) return FKD_OK;
    fkd__rows_normalize_backward(st->d_gs, st->d_hat, st->gs_hat, st->gs_norm, b, b, 1.0f);
    return fkd__gram_backward(dx, st->d_gs, fs, b, st->f_s, st->f_s, out->grad_scale);
}

const fkd_distill_method fkd__distill_sp = {
    .name = "sp",
    .summary = "similarity-preserving: ||G_s - G_t||_F^2 / b^2 of row-normalised batch Grams",
    .needs = FKD_DISTILL_NEED_STUDENT_EMB | FKD_DISTILL_NEED_TEACHER_EMB,
    .create = sp_create,
    .forward = sp_forward,
    .free = sp_free,
};
