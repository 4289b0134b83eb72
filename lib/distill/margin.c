/* margin — Svitov, Alyamkin, "MarginDistillation: distillation for margin-based softmax"
 * (arXiv:2003.02586, 2020): the student is trained with ArcFace against the TEACHER's
 * class centres, kept frozen, and each sample's angular margin follows how close the
 * teacher put that sample to its class centre: samples the teacher finds hard get a
 * smaller margin, so the student learns the teacher's angles instead of one fixed margin.
 *
 * With t̂_i, ŝ_i the normalised teacher and student embeddings, Ŵ the normalised teacher
 * centres (C, d) and y_i the label:
 *     c^t_i = t̂_i · Ŵ_{y_i},   c^t_max = max_j c^t_j over the batch
 *     m_i = M_min + (M_max − M_min) · max(c^t_i, 0) / c^t_max    (M_min for all when
 *           c^t_max ≤ 0; the clamp keeps m_i in [M_min, M_max] when a teacher cosine is
 *           negative, which the paper's formula leaves open)
 *     cos_ij = ŝ_i · Ŵ_j,  θ_i = arccos(cos_{i,y_i})
 *     z_ij = s·cos_ij (j ≠ y_i),   z_{i,y_i} = s·φ_i,
 *     φ_i = cos(θ_i + m_i)                 when cos_{i,y_i} > cos(π − m_i)
 *         = cos_{i,y_i} − m_i·sin(π − m_i)  otherwise (arcface_torch's fallback that keeps
 *                                            the logit monotonic once θ + m passes π)
 *     L = 1/b Σ_i (logsumexp_j z_ij − z_{i,y_i})
 * with cos(θ + m) = c·cos m − sqrt(max(1 − c², 1e-12))·sin m. Gradient: ∂L/∂z = (softmax −
 * onehot)/b, ∂z/∂cos = s (times ∂φ/∂c = cos m + c·sin m / sin θ for the target in the
 * first branch, 1 in the second), ∂L/∂ŝ = ∂L/∂cos · Ŵ, then through the normalisation.
 * No gradient reaches the centres (frozen) or the margins.
 *
 * Design, and the contract with the trainer: the method computes the ArcFace loss
 * itself, on the teacher's centres, so the student needs no head of its own and no head
 * has to accept per-sample margins. A recipe using `margin` sets its head loss to none
 * (or keeps a head as an additional, separate term); the trainer fills teacher_emb,
 * teacher_centres and labels. The margins of the step are written to out->margins when
 * the caller passes a buffer (b floats), for logging; the method does not declare
 * FKD_DISTILL_GIVES_MARGINS, because nothing else must apply them. Needs d_s = d_t: the
 * student's embedding is scored against the teacher's centres.
 *
 * Defaults: M_min = 0.2, M_max = 0.5 and s = 64, the paper's values (s and M_max as in
 * ArcFace training of the teacher).
 *
 * Parameters: margin_min (≥ 0, 0.2), margin_max (≥ margin_min, < π/2, 0.5), s (> 0, 64).
 */
#include <math.h>
#include <stdlib.h>

#include "distill/distiller.h"
#include "distill/ops.h"
#include "nn/shim.h"

#define SIN_FLOOR 1e-12 /* 1 − cos² is floored here before its square root */

typedef struct {
    double m_min, m_max, s;
    int64_t classes;
    fkd__emb_pair pair;
    float *block;
    float *w_hat, *w_norm; /* (C, d), (C) normalised teacher centres */
    float *cos;            /* (B, C) cos_ij, then ∂L/∂cos */
    float *margins;        /* (B) */
} margin_state;

static void margin_free(void *state)
{
    margin_state *st = state;
    if (!st) return;
    fkd__emb_pair_free(&st->pair);
    free(st->block);
    free(st);
}

static fkd_status margin_create(void **state, fkd_distill_needs *needs,
                                fkd_distill_options *opts, const fkd_distill_context *ctx)
{
    (void)needs;
    double m_min, m_max, s;
    const fkd_distill_range acute = {0.0, M_PI / 2, false, true}; /* [0, π/2) */
    FKD_TRY(fkd_distill_opt_float(opts, "margin_min", 0.2, acute, &m_min));
    FKD_TRY(fkd_distill_opt_float(opts, "margin_max", 0.5, acute, &m_max));
    FKD_TRY(fkd_distill_opt_float(opts, "s", 64.0, FKD_DISTILL_POSITIVE, &s));
    if (m_max < m_min)
        return fkd_distill_options_fail(opts, FKD_ERR_ARG, "margin_max %g is below margin_min "
                                        "%g", m_max, m_min);
    if (ctx->classes < 1)
        return fkd_distill_options_fail(opts, FKD_ERR_ARG, "needs the teacher's class centres, "
                                        "but the context has no classes");
    if (ctx->d_s != ctx->d_t)
        return fkd_distill_options_fail(opts, FKD_ERR_ARG, "scores the student embedding "
                                        "against the teacher's centres: needs equal embedding "
                                        "sizes, got student %lld and teacher %lld",
                                        (long long)ctx->d_s, (long long)ctx->d_t);
    margin_state *st = calloc(1, sizeof *st);
    if (!st) return fkd_distill_options_fail(opts, FKD_ERR_NOMEM, "out of memory");
    st->m_min = m_min;
    st->m_max = m_max;
    st->s = s;
    st->classes = ctx->classes;
    int64_t B = ctx->max_batch, C = ctx->classes, d = ctx->d_t;
    float **const ptrs[] = {&st->w_hat, &st->w_norm, &st->cos, &st->margins};
    const int64_t sizes[] = {C * d, C, B * C, B};
    fkd_status r = fkd__emb_pair_init(&st->pair, B, d, d, "margin");
    if (r == FKD_OK) r = fkd__alloc_buffers(&st->block, ptrs, sizes, 4, "margin");
    if (r != FKD_OK) {
        margin_free(st);
        return r;
    }
    *state = st;
    return FKD_OK;
}

/* margins (b) from the teacher's cosines to its own class centres. */
static void teacher_margins(margin_state *st, const int64_t *labels, int64_t b)
{
    int64_t d = st->pair.d_t;
    double top = -INFINITY;
    for (int64_t i = 0; i < b; i++) {
        const float *t = st->pair.t_hat + i * d, *w = st->w_hat + labels[i] * d;
        double c = 0.0;
        for (int64_t k = 0; k < d; k++) c += (double)t[k] * w[k];
        st->margins[i] = (float)c;
        top = c > top ? c : top;
    }
    double span = st->m_max - st->m_min;
    for (int64_t i = 0; i < b; i++) {
        double c = st->margins[i];
        st->margins[i] = (float)(st->m_min + (top > 0 && c > 0 ? span * c / top : 0.0));
    }
}

/* One row: returns its cross-entropy; z (C) holds the row's cosines on entry and
 * g·∂(cross-entropy)/∂cos on exit (g = 1/b, the batch mean). */
static double arcface_row(float *z, int64_t C, int64_t y, double m, double s, double g)
{
    double c = z[y], sin_t = sqrt(fmax(1.0 - c * c, SIN_FLOOR)), phi, dphi;
    if (c > cos(M_PI - m)) {
        phi = c * cos(m) - sin_t * sin(m);
        dphi = cos(m) + (1.0 - c * c > SIN_FLOOR ? c * sin(m) / sin_t : 0.0);
    } else {
        phi = c - m * sin(M_PI - m);
        dphi = 1.0;
    }
    double zmax = s * phi;
    for (int64_t j = 0; j < C; j++)
        if (j != y && s * z[j] > zmax) zmax = s * z[j];
    double sum = 0.0;
    for (int64_t j = 0; j < C; j++) sum += exp((j == y ? s * phi : s * z[j]) - zmax);
    double lse = zmax + log(sum);
    for (int64_t j = 0; j < C; j++) {
        double p = exp((j == y ? s * phi : s * z[j]) - lse);
        z[j] = (float)(j == y ? g * s * (p - 1.0) * dphi : g * s * p);
    }
    return lse - s * phi;
}

static fkd_status margin_forward(void *state, const fkd_distill_inputs *in,
                                 const fkd_distill_outputs *out, double *loss)
{
    margin_state *st = state;
    fkd__emb_pair *p = &st->pair;
    int64_t b = in->batch, C = st->classes, d = p->d_s;
    fkd__emb_pair_normalize(p, in->student_emb, in->teacher_emb, b);
    fkd__rows_normalize(st->w_hat, st->w_norm, in->teacher_centres, C, d);
    teacher_margins(st, in->labels, b);
    /* cos (b, C) = ŝ (b, d) Ŵᵀ (d, C) */
    FKD_TRY(fkd_sgemm(false, true, b, C, d, 1.0f, p->s_hat, d, st->w_hat, d, 0.0f, st->cos, C));
    double sum = 0.0, g = 1.0 / (double)b;
#pragma omp parallel for reduction(+ : sum) schedule(static)
    for (int64_t i = 0; i < b; i++)
        sum += arcface_row(st->cos + i * C, C, in->labels[i], st->margins[i], st->s, g);
    *loss = sum / (double)b;
    if (!out) return FKD_OK;
    if (out->margins)
        for (int64_t i = 0; i < b; i++) out->margins[i] = st->margins[i];
    if (!out->d_student_emb) return FKD_OK;
    /* d_hat (b, d) = ∂L/∂cos (b, C) Ŵ (C, d) */
    FKD_TRY(fkd_sgemm(false, false, b, d, C, 1.0f, st->cos, C, st->w_hat, d, 0.0f, p->d_hat, d));
    fkd__emb_pair_backward(p, out->d_student_emb, b, out->grad_scale);
    return FKD_OK;
}

const fkd_distill_method fkd__distill_margin = {
    .name = "margin",
    .summary = "MarginDistillation: ArcFace on the teacher's frozen centres, per-sample "
               "margins from the teacher's cosines",
    .needs = FKD_DISTILL_NEED_STUDENT_EMB | FKD_DISTILL_NEED_TEACHER_EMB |
             FKD_DISTILL_NEED_TEACHER_CENTRES | FKD_DISTILL_NEED_LABELS,
    .create = margin_create,
    .forward = margin_forward,
    .free = margin_free,
};
