/* kd — Hinton, Vinyals, Dean, "Distilling the Knowledge in a Neural Network" (NIPS 2014
 * Deep Learning Workshop, arXiv:1503.02531): the student matches the teacher's softened
 * class distribution.
 *
 *   L = T² · 1/b Σ_i KL(softmax(z_t,i / T) ‖ softmax(z_s,i / T))        (batch mean)
 *
 * In face training the logits are scores over the training identities. Both models'
 * logits are computed here from their heads' class centres, without margin:
 *   z_t = s · cos(t, W_t) = s · t̂ Ŵ_tᵀ,   z_s = s · ŝ Ŵ_sᵀ        (b, C)
 * so the gradient reaches the student embedding and the student's centres W_s:
 *   ∂L/∂cos_s = (T·s/b) · (softmax(z_s/T) − softmax(z_t/T)),
 *   ∂L/∂ŝ = ∂L/∂cos_s · Ŵ_s,   ∂L/∂Ŵ_s = (∂L/∂cos_s)ᵀ · ŝ,  then through both normalisations.
 * The T² factor keeps the gradient's size independent of T (Hinton et al., section 2.1).
 *
 * Defaults: T = 4 (RepDistiller's --kd_T default, and the T of FaceX-Zoo's face-KD
 * SoftTarget configuration); s = the context's head scale (the s the teacher
 * was trained with: 64 for arcface_torch's ArcFace), 64 when the trainer does not know it.
 * With s = 64 and T = 4 the softened logits span ±16, which keeps the teacher's
 * distribution informative beyond its top identity.
 *
 * Parameters: T (> 0, 4), s (> 0, context scale or 64).
 */
#include <math.h>
#include <stdlib.h>

#include "distill/distiller.h"
#include "distill/ops.h"
#include "nn/shim.h"

typedef struct {
    double T, s;
    int64_t classes;
    fkd__emb_pair pair;
    float *block;
    float *ws_hat, *ws_norm; /* (C, d_s), (C) */
    float *wt_hat, *wt_norm; /* (C, d_t), (C) */
    float *zs;               /* (B, C) z_s/T, then ∂L/∂cos_s */
    float *zt;               /* (B, C) z_t/T */
    float *d_ws_hat;         /* (C, d_s) ∂L/∂Ŵ_s */
} kd_state;

static void kd_free(void *state)
{
    kd_state *st = state;
    if (!st) return;
    fkd__emb_pair_free(&st->pair);
    free(st->block);
    free(st);
}

static fkd_status kd_create(void **state, fkd_distill_needs *needs, fkd_distill_options *opts,
                            const fkd_distill_context *ctx)
{
    (void)needs;
    double T, s;
    FKD_TRY(fkd_distill_opt_float(opts, "T", 4.0, FKD_DISTILL_POSITIVE, &T));
    FKD_TRY(fkd_distill_opt_float(opts, "s", ctx->scale > 0 ? ctx->scale : 64.0,
                                  FKD_DISTILL_POSITIVE, &s));
    if (ctx->classes < 1)
        return fkd_distill_options_fail(opts, FKD_ERR_ARG, "needs class centres, but the "
                                        "context has no classes");
    kd_state *st = calloc(1, sizeof *st);
    if (!st) return fkd_distill_options_fail(opts, FKD_ERR_NOMEM, "out of memory");
    st->T = T;
    st->s = s;
    st->classes = ctx->classes;
    int64_t C = ctx->classes, B = ctx->max_batch;
    float **const ptrs[] = {&st->ws_hat, &st->ws_norm, &st->wt_hat, &st->wt_norm,
                            &st->zs,     &st->zt,      &st->d_ws_hat};
    const int64_t sizes[] = {C * ctx->d_s, C, C * ctx->d_t, C, B * C, B * C, C * ctx->d_s};
    fkd_status r = fkd__emb_pair_init(&st->pair, B, ctx->d_s, ctx->d_t, "kd");
    if (r == FKD_OK) r = fkd__alloc_buffers(&st->block, ptrs, sizes, 7, "kd");
    if (r != FKD_OK) {
        kd_free(st);
        return r;
    }
    *state = st;
    return FKD_OK;
}

/* One row: KL(p ‖ q) for p = softmax(zt), q = softmax(zs); zs becomes g·(q − p). */
static double kd_row(float *zs, const float *zt, int64_t C, float g)
{
    float ms = zs[0], mt = zt[0];
    for (int64_t c = 1; c < C; c++) {
        ms = zs[c] > ms ? zs[c] : ms;
        mt = zt[c] > mt ? zt[c] : mt;
    }
    double ss = 0.0, sum_t = 0.0;
    for (int64_t c = 0; c < C; c++) {
        ss += exp((double)zs[c] - ms);
        sum_t += exp((double)zt[c] - mt);
    }
    double lse_s = ms + log(ss), lse_t = mt + log(sum_t), kl = 0.0;
    for (int64_t c = 0; c < C; c++) {
        double logp = zt[c] - lse_t, logq = zs[c] - lse_s, p = exp(logp);
        kl += p * (logp - logq);
        zs[c] = g * (float)(exp(logq) - p);
    }
    return kl;
}

static fkd_status kd_forward(void *state, const fkd_distill_inputs *in,
                             const fkd_distill_outputs *out, double *loss)
{
    kd_state *st = state;
    fkd__emb_pair *p = &st->pair;
    int64_t b = in->batch, C = st->classes, ds = p->d_s, dt = p->d_t;
    fkd__emb_pair_normalize(p, in->student_emb, in->teacher_emb, b);
    fkd__rows_normalize(st->ws_hat, st->ws_norm, in->student_centres, C, ds);
    fkd__rows_normalize(st->wt_hat, st->wt_norm, in->teacher_centres, C, dt);
    float a = (float)(st->s / st->T);
    /* zs (b, C) = (s/T) ŝ Ŵ_sᵀ;  zt (b, C) = (s/T) t̂ Ŵ_tᵀ */
    FKD_TRY(fkd_sgemm(false, true, b, C, ds, a, p->s_hat, ds, st->ws_hat, ds, 0.0f, st->zs, C));
    FKD_TRY(fkd_sgemm(false, true, b, C, dt, a, p->t_hat, dt, st->wt_hat, dt, 0.0f, st->zt, C));
    float g = (float)(st->T * st->s / (double)b);
    double sum = 0.0;
#pragma omp parallel for reduction(+ : sum) schedule(static)
    for (int64_t i = 0; i < b; i++) sum += kd_row(st->zs + i * C, st->zt + i * C, C, g);
    *loss = st->T * st->T * sum / (double)b;
    if (!out) return FKD_OK;
    if (out->d_student_emb) {
        /* d_hat (b, d_s) = dcos (b, C) · Ŵ_s (C, d_s) */
        FKD_TRY(fkd_sgemm(false, false, b, ds, C, 1.0f, st->zs, C, st->ws_hat, ds, 0.0f,
                          p->d_hat, ds));
        fkd__emb_pair_backward(p, out->d_student_emb, b, out->grad_scale);
    }
    if (out->d_student_centres) {
        /* d_ws_hat (C, d_s) = dcosᵀ (C, b) · ŝ (b, d_s) */
        FKD_TRY(fkd_sgemm(true, false, C, ds, b, 1.0f, st->zs, C, p->s_hat, ds, 0.0f,
                          st->d_ws_hat, ds));
        fkd__rows_normalize_backward(out->d_student_centres, st->d_ws_hat, st->ws_hat,
                                     st->ws_norm, C, ds, out->grad_scale);
    }
    return FKD_OK;
}

const fkd_distill_method fkd__distill_kd = {
    .name = "kd",
    .summary = "Hinton KD: T^2 KL(teacher || student) of softened s*cos(embedding, centres)",
    .needs = FKD_DISTILL_NEED_STUDENT_EMB | FKD_DISTILL_NEED_TEACHER_EMB |
             FKD_DISTILL_NEED_STUDENT_CENTRES | FKD_DISTILL_NEED_TEACHER_CENTRES,
    .create = kd_create,
    .forward = kd_forward,
    .free = kd_free,
};
