/* triplet — Feng, Wang, Hu, Yi, "Triplet Distillation for Deep Face Recognition"
 * (arXiv:1905.04457, 2019; ICIP 2020): a triplet loss on the student whose margin is not
 * fixed but set per triplet from the teacher's distances, so that identities the teacher
 * finds similar are pushed apart less than identities it finds far apart.
 *
 * Distances are squared Euclidean between L2-normalised embeddings (as in FaceNet and
 * insightface's triplet training): D(x, y) = ‖x̂ − ŷ‖² = 2 − 2 cos(x, y), in [0, 4],
 * D_s on the student's embeddings, D_t on the teacher's. For a triplet (a, p, n) with
 * label(p) = label(a), p ≠ a, label(n) ≠ label(a):
 *     δ(a,p,n) = max(0, D_t(a,n) − D_t(a,p))
 *     m(a,p,n) = M_min + (M_max − M_min) · δ / δ_max,  δ_max = max of δ over every such
 *                triplet of the batch (m = M_min for all when δ_max = 0)
 * Anchors and positives: every ordered pair (a, p) of distinct samples with one label
 * (so each positive pair is used in both directions). Semi-hard mining (FaceNet) inside
 * the batch, with the triplet's own margin: among the negatives with
 *     D_s(a,p) < D_s(a,n) < D_s(a,p) + m(a,p,n)
 * the one closest to the anchor (the hardest semi-hard; lowest index on a tie) is taken;
 * a pair without such a negative gives no triplet. Over the T triplets chosen:
 *     L = 1/T Σ (D_s(a,p) − D_s(a,n) + m(a,p,n))       (each term > 0 by the mining)
 *     ∂L/∂ŝ_a = 2(ŝ_n − ŝ_p)/T,  ∂L/∂ŝ_p = −2(ŝ_a − ŝ_p)/T,  ∂L/∂ŝ_n = 2(ŝ_a − ŝ_n)/T,
 * then through the normalisation of s. Margins and mining carry no gradient; the teacher
 * side has none either. L = 0 when the batch holds no triplet.
 *
 * The batch must hold several images per identity: the trainer uses the identities ×
 * images sampler (P identities × K images, e.g. 32 × 4 for b = 128; K ≥ 2).
 *
 * Defaults: M_min = 0.2, M_max = 0.5, the paper's margin range (its triplet baseline uses
 * FaceNet's fixed 0.2, the lower end).
 *
 * Parameters: margin_min (≥ 0, 0.2), margin_max (≥ margin_min, 0.5).
 */
#include <stdlib.h>
#include <string.h>

#include "distill/distiller.h"
#include "distill/ops.h"

typedef struct {
    double m_min, m_max;
    fkd__emb_pair pair;
    float *block;
    float *gs, *gt;     /* (B, B) Grams of ŝ and t̂ */
    float *ds, *dt;     /* (B, B) squared distances */
    int32_t *negative;  /* (B, B) n chosen for (a, p), or −1 */
} triplet_state;

static void triplet_free(void *state)
{
    triplet_state *st = state;
    if (!st) return;
    fkd__emb_pair_free(&st->pair);
    free(st->block);
    free(st->negative);
    free(st);
}

static fkd_status triplet_create(void **state, fkd_distill_needs *needs,
                                 fkd_distill_options *opts, const fkd_distill_context *ctx)
{
    (void)needs;
    double m_min, m_max;
    FKD_TRY(fkd_distill_opt_float(opts, "margin_min", 0.2, FKD_DISTILL_NONNEG, &m_min));
    FKD_TRY(fkd_distill_opt_float(opts, "margin_max", 0.5, FKD_DISTILL_NONNEG, &m_max));
    if (m_max < m_min)
        return fkd_distill_options_fail(opts, FKD_ERR_ARG, "margin_max %g is below margin_min "
                                        "%g", m_max, m_min);
    triplet_state *st = calloc(1, sizeof *st);
    if (!st) return fkd_distill_options_fail(opts, FKD_ERR_NOMEM, "out of memory");
    st->m_min = m_min;
    st->m_max = m_max;
    int64_t B = ctx->max_batch, bb = B * B;
    float **const ptrs[] = {&st->gs, &st->gt, &st->ds, &st->dt};
    const int64_t sizes[] = {bb, bb, bb, bb};
    fkd_status r = fkd__emb_pair_init(&st->pair, B, ctx->d_s, ctx->d_t, "triplet");
    if (r == FKD_OK) r = fkd__alloc_buffers(&st->block, ptrs, sizes, 4, "triplet");
    if (r == FKD_OK && !(st->negative = calloc((size_t)bb, sizeof *st->negative)))
        r = fkd_distill_options_fail(opts, FKD_ERR_NOMEM, "out of memory");
    if (r != FKD_OK) {
        triplet_free(st);
        return r;
    }
    *state = st;
    return FKD_OK;
}

/* d (b, b) = g_ii + g_jj − 2 g_ij, floored at 0 (rounding), diagonal exactly 0. */
static void squared_distances(float *d, const float *g, int64_t b)
{
    for (int64_t i = 0; i < b; i++)
        for (int64_t j = 0; j < b; j++) {
            float v = g[i * b + i] + g[j * b + j] - 2.0f * g[i * b + j];
            d[i * b + j] = i == j || v < 0.0f ? 0.0f : v;
        }
}

/* δ_max over every (a, p, n) triplet of the batch. */
static double teacher_delta_max(const float *dt, const int64_t *labels, int64_t b)
{
    double dmax = 0.0;
#pragma omp parallel for reduction(max : dmax) schedule(static)
    for (int64_t a = 0; a < b; a++)
        for (int64_t p = 0; p < b; p++) {
            if (p == a || labels[p] != labels[a]) continue;
            for (int64_t n = 0; n < b; n++) {
                double delta = labels[n] == labels[a] ? 0.0 : (double)dt[a * b + n] - dt[a * b + p];
                dmax = delta > dmax ? delta : dmax;
            }
        }
    return dmax;
}

static fkd_status triplet_forward(void *state, const fkd_distill_inputs *in,
                                  const fkd_distill_outputs *out, double *loss)
{
    triplet_state *st = state;
    fkd__emb_pair *pr = &st->pair;
    int64_t b = in->batch, d = pr->d_s;
    const int64_t *y = in->labels;
    fkd__emb_pair_normalize(pr, in->student_emb, in->teacher_emb, b);
    FKD_TRY(fkd__gram(st->gs, pr->s_hat, b, d, d));
    FKD_TRY(fkd__gram(st->gt, pr->t_hat, b, pr->d_t, pr->d_t));
    squared_distances(st->ds, st->gs, b);
    squared_distances(st->dt, st->gt, b);
    double dmax = teacher_delta_max(st->dt, y, b), span = st->m_max - st->m_min;
    double sum = 0.0;
    int64_t count = 0;
#pragma omp parallel for reduction(+ : sum, count) schedule(static)
    for (int64_t a = 0; a < b; a++) {
        for (int64_t p = 0; p < b; p++) {
            int32_t best = -1;
            double best_d = 0.0, best_m = 0.0, dap = st->ds[a * b + p];
            st->negative[a * b + p] = -1;
            if (p == a || y[p] != y[a]) continue;
            for (int64_t n = 0; n < b; n++) {
                if (y[n] == y[a]) continue;
                double delta = (double)st->dt[a * b + n] - st->dt[a * b + p];
                double m = st->m_min + (dmax > 0 && delta > 0 ? span * delta / dmax : 0.0);
                double dan = st->ds[a * b + n];
                if (dan > dap && dan < dap + m && (best < 0 || dan < best_d)) {
                    best = (int32_t)n;
                    best_d = dan;
                    best_m = m;
                }
            }
            if (best < 0) continue;
            st->negative[a * b + p] = best;
            sum += dap - best_d + best_m;
            count++;
        }
    }
    *loss = count ? sum / (double)count : 0.0;
    if (!out || !out->d_student_emb || count == 0) return FKD_OK;
    memset(pr->d_hat, 0, (size_t)(b * d) * sizeof(float));
    float c = 2.0f / (float)count;
    const float *s = pr->s_hat;
    for (int64_t a = 0; a < b; a++)
        for (int64_t p = 0; p < b; p++) {
            int32_t n = st->negative[a * b + p];
            if (n < 0) continue;
            float *ga = pr->d_hat + a * d, *gp = pr->d_hat + p * d, *gn = pr->d_hat + n * d;
            for (int64_t k = 0; k < d; k++) {
                float sa = s[a * d + k], sp = s[p * d + k], sn = s[n * d + k];
                ga[k] += c * (sn - sp);
                gp[k] -= c * (sa - sp);
                gn[k] += c * (sa - sn);
            }
        }
    fkd__emb_pair_backward(pr, out->d_student_emb, b, out->grad_scale);
    return FKD_OK;
}

const fkd_distill_method fkd__distill_triplet = {
    .name = "triplet",
    .summary = "triplet distillation: semi-hard triplet loss with margins from the teacher's "
               "distances",
    .needs = FKD_DISTILL_NEED_STUDENT_EMB | FKD_DISTILL_NEED_TEACHER_EMB |
             FKD_DISTILL_NEED_LABELS,
    .create = triplet_create,
    .forward = triplet_forward,
    .free = triplet_free,
};
