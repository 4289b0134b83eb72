/* cckd — Peng et al., "Correlation Congruence for Knowledge Distillation" (ICCV 2019):
 * the student matches the teacher's correlations between the samples of a batch.
 *
 * On L2-normalised embeddings the Gaussian RBF kernel exp(−γ‖x_i − x_j‖²) equals
 * e^{−2γ} · exp(2γ x_i·x_j); the paper approximates it by its Taylor expansion of order P:
 *     k(x_i, x_j) ≈ Σ_{p=0..P} e^{−2γ} (2γ)^p / p! · (x_i·x_j)^p
 *     C = [k(x_i, x_j)] (b, b) for each model
 *     L = 1/b² · ‖C_s − C_t‖²_F        (the mean squared error over the b² entries)
 *     ∂L/∂S_s = 2 (C_s − C_t)/b² ⊙ Σ_{p=1..P} e^{−2γ} (2γ)^p / p! · p S_s^(p−1),
 * with S = x̂ x̂ᵀ the cosine matrix, then through the Gram and the normalisation.
 * The teacher side has no gradient.
 *
 * Defaults γ = 0.4, P = 2: torchdistill's CCKD sample configuration for ImageNet
 * (configs/sample/ilsvrc2012/cckd: kernel gaussian, gamma 0.4, max_p 2, recipe weight
 * 0.003). Unlike torchdistill (the unsquared Frobenius distance over b², on a learned
 * linear projection) this follows the paper: the squared distance over b², on the
 * normalised embeddings, as FaceX-Zoo's face-KD CC loss does.
 *
 * Parameters: gamma (> 0, 0.4), order (1..8, 2).
 */
#include <math.h>
#include <stdlib.h>

#include "distill/distiller.h"
#include "distill/ops.h"

#define CCKD_MAX_ORDER 8

typedef struct {
    int64_t order;
    double coef[CCKD_MAX_ORDER + 1]; /* e^{−2γ} (2γ)^p / p! */
    fkd__emb_pair pair;
    float *block;
    float *ss, *st_; /* (B, B) cosine matrices, student and teacher */
    float *d_ss;     /* (B, B) ∂L/∂S_s */
} cckd_state;

static void cckd_free(void *state)
{
    cckd_state *st = state;
    if (!st) return;
    fkd__emb_pair_free(&st->pair);
    free(st->block);
    free(st);
}

static fkd_status cckd_create(void **state, fkd_distill_needs *needs, fkd_distill_options *opts,
                              const fkd_distill_context *ctx)
{
    (void)needs;
    double gamma;
    int64_t order;
    FKD_TRY(fkd_distill_opt_float(opts, "gamma", 0.4, FKD_DISTILL_POSITIVE, &gamma));
    FKD_TRY(fkd_distill_opt_int(opts, "order", 2, 1, CCKD_MAX_ORDER, &order));
    cckd_state *st = calloc(1, sizeof *st);
    if (!st) return fkd_distill_options_fail(opts, FKD_ERR_NOMEM, "out of memory");
    st->order = order;
    double c = exp(-2.0 * gamma);
    for (int64_t p = 0; p <= order; p++) {
        st->coef[p] = c;
        c *= 2.0 * gamma / (double)(p + 1);
    }
    int64_t bb = ctx->max_batch * ctx->max_batch;
    float **const ptrs[] = {&st->ss, &st->st_, &st->d_ss};
    const int64_t sizes[] = {bb, bb, bb};
    fkd_status r = fkd__emb_pair_init(&st->pair, ctx->max_batch, ctx->d_s, ctx->d_t, "cckd");
    if (r == FKD_OK) r = fkd__alloc_buffers(&st->block, ptrs, sizes, 3, "cckd");
    if (r != FKD_OK) {
        cckd_free(st);
        return r;
    }
    *state = st;
    return FKD_OK;
}

/* The truncated series Σ_p coef_p x^p and its derivative, by Horner. */
static void series(const cckd_state *st, double x, double *value, double *slope)
{
    double v = st->coef[st->order], dv = 0.0;
    for (int64_t p = st->order - 1; p >= 0; p--) {
        dv = dv * x + v;
        v = v * x + st->coef[p];
    }
    *value = v;
    *slope = dv;
}

static fkd_status cckd_forward(void *state, const fkd_distill_inputs *in,
                               const fkd_distill_outputs *out, double *loss)
{
    cckd_state *st = state;
    fkd__emb_pair *p = &st->pair;
    int64_t b = in->batch, bb = b * b;
    fkd__emb_pair_normalize(p, in->student_emb, in->teacher_emb, b);
    FKD_TRY(fkd__gram(st->ss, p->s_hat, b, p->d_s, p->d_s));
    FKD_TRY(fkd__gram(st->st_, p->t_hat, b, p->d_t, p->d_t));
    double sum = 0.0, g = 2.0 / (double)bb;
#pragma omp parallel for reduction(+ : sum) schedule(static)
    for (int64_t n = 0; n < bb; n++) {
        double cs, slope, ct, unused;
        series(st, st->ss[n], &cs, &slope);
        series(st, st->st_[n], &ct, &unused);
        sum += (cs - ct) * (cs - ct);
        st->d_ss[n] = (float)(g * (cs - ct) * slope);
    }
    *loss = sum / (double)bb;
    if (!out || !out->d_student_emb) return FKD_OK;
    for (int64_t n = 0; n < b * p->d_s; n++) p->d_hat[n] = 0.0f;
    FKD_TRY(fkd__gram_backward(p->d_hat, st->d_ss, p->s_hat, b, p->d_s, p->d_s, 1.0f));
    fkd__emb_pair_backward(p, out->d_student_emb, b, out->grad_scale);
    return FKD_OK;
}

const fkd_distill_method fkd__distill_cckd = {
    .name = "cckd",
    .summary = "correlation congruence: MSE of Taylor-expanded Gaussian-kernel batch matrices",
    .needs = FKD_DISTILL_NEED_STUDENT_EMB | FKD_DISTILL_NEED_TEACHER_EMB,
    .create = cckd_create,
    .forward = cckd_forward,
    .free = cckd_free,
};
