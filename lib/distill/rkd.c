/* rkd — Park, Kim, Lu, Cho, "Relational Knowledge Distillation" (CVPR 2019): the student
 * keeps the teacher's distances between samples and the angles they form.
 *
 * With x the batch's embeddings (normalised when `normalize`), d_ij = ‖x_i − x_j‖ and
 * μ = the mean of d over the b(b−1) pairs i ≠ j:
 *   distance:  L_D = 1/b² Σ_ij ℓ(d^s_ij/μ_s − d^t_ij/μ_t)
 *   angle:     e^a_j = (x_j − x_a)/‖x_j − x_a‖ (0 for j = a),  A^a_jk = e^a_j·e^a_k,
 *              L_A = 1/b³ Σ_ajk ℓ(A^{s,a}_jk − A^{t,a}_jk)
 *   L = w_D · L_D + w_A · L_A,   ℓ = smooth L1 (Huber, δ = 1)
 * (means over all b² and b³ entries, the diagonal ones included, as torch's
 * smooth_l1_loss does in the authors' code). The teacher side has no gradient.
 * Gradients: L_D through d/μ (μ depends on every distance) and the pairwise distances;
 * L_A per anchor a through the Gram of e^a, the row normalisation of x_j − x_a, and into
 * x_j (+) and x_a (−).
 *
 * Defaults w_D = 25, w_A = 50: RepDistiller's RKDLoss (w_d = 25, w_a = 50), the weights
 * used for RKD in the CRD benchmark; the paper's metric-learning runs use 1 and 2.
 * normalize = true: face verification compares normalised embeddings; the RKD authors'
 * code normalises the teacher's embedding by default and offers the same switch for the
 * student.
 *
 * Cost: the angle term is b sgemm pairs of (b, d) × (d, b): O(b³ d) per step.
 *
 * Parameters: distance_weight (≥ 0, 25), angle_weight (≥ 0, 50), normalize (bool, true).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "distill/distiller.h"
#include "distill/ops.h"

typedef struct {
    double w_d, w_a;
    bool normalize;
    fkd__emb_pair pair; /* pair.d_hat: ∂L/∂x_s (x = ŝ or s) */
    float *block;
    float *gs, *dist_s, *gt, *dist_t, *d_dist; /* (B, B) */
    float *es, *es_norm, *et, *et_norm;        /* (B, d_s), (B), (B, d_t), (B) */
    float *as, *at, *d_as;                     /* (B, B) angle matrices of one anchor */
    float *d_es, *d_vs;                        /* (B, d_s) */
    float *diff;                               /* (B, max(d_s, d_t)) x_j − x_a */
} rkd_state;

static void rkd_free(void *state)
{
    rkd_state *st = state;
    if (!st) return;
    fkd__emb_pair_free(&st->pair);
    free(st->block);
    free(st);
}

static fkd_status rkd_create(void **state, fkd_distill_needs *needs, fkd_distill_options *opts,
                             const fkd_distill_context *ctx)
{
    (void)needs;
    double w_d, w_a;
    bool normalize;
    FKD_TRY(fkd_distill_opt_float(opts, "distance_weight", 25.0, FKD_DISTILL_NONNEG, &w_d));
    FKD_TRY(fkd_distill_opt_float(opts, "angle_weight", 50.0, FKD_DISTILL_NONNEG, &w_a));
    FKD_TRY(fkd_distill_opt_bool(opts, "normalize", true, &normalize));
    rkd_state *st = calloc(1, sizeof *st);
    if (!st) return fkd_distill_options_fail(opts, FKD_ERR_NOMEM, "out of memory");
    st->w_d = w_d;
    st->w_a = w_a;
    st->normalize = normalize;
    int64_t B = ctx->max_batch, bb = B * B, bds = B * ctx->d_s, bdt = B * ctx->d_t;
    float **const ptrs[] = {&st->gs, &st->dist_s, &st->gt,      &st->dist_t,
                            &st->d_dist, &st->es, &st->es_norm, &st->et,
                            &st->et_norm, &st->as, &st->at,     &st->d_as,
                            &st->d_es, &st->d_vs, &st->diff};
    const int64_t sizes[] = {bb,  bb, bb, bb,  bb,  bds, B,
                             bdt, B,  bb, bb,  bb,  bds, bds, bds > bdt ? bds : bdt};
    fkd_status r = fkd__emb_pair_init(&st->pair, B, ctx->d_s, ctx->d_t, "rkd");
    if (r == FKD_OK) r = fkd__alloc_buffers(&st->block, ptrs, sizes, 15, "rkd");
    if (r != FKD_OK) {
        rkd_free(st);
        return r;
    }
    *state = st;
    return FKD_OK;
}

/* Mean of the off-diagonal entries of dist (b, b). */
static double offdiag_mean(const float *dist, int64_t b)
{
    double sum = 0.0;
    for (int64_t n = 0; n < b * b; n++) sum += dist[n]; /* diagonal is 0 */
    return sum / (double)(b * (b - 1));
}

/* L_D; accumulates w_D·∂L_D/∂x_s into pair.d_hat when `grad`. */
static fkd_status rkd_distance(rkd_state *st, const float *xs, const float *xt, int64_t b,
                               bool grad, double *loss)
{
    int64_t ds = st->pair.d_s, dt = st->pair.d_t, bb = b * b;
    FKD_TRY(fkd__gram(st->gs, xs, b, ds, ds));
    FKD_TRY(fkd__gram(st->gt, xt, b, dt, dt));
    fkd__pdist_from_gram(st->dist_s, st->gs, b);
    fkd__pdist_from_gram(st->dist_t, st->gt, b);
    double mu_s = offdiag_mean(st->dist_s, b), mu_t = offdiag_mean(st->dist_t, b);
    double sum = 0.0, hd = 0.0;
    for (int64_t n = 0; n < bb; n++) {
        double e = st->dist_s[n] / mu_s - st->dist_t[n] / mu_t;
        double h = fkd__smooth_l1_grad(e) / (double)bb;
        sum += fkd__smooth_l1(e);
        st->d_dist[n] = (float)h;
        hd += h * st->dist_s[n];
    }
    *loss = sum / (double)bb;
    if (!grad) return FKD_OK;
    /* ∂/∂d_ij of Σ h·d/μ with μ = Σ_{i≠j} d / (b(b−1)): h_ij/μ − (Σ h·d)/(μ² b(b−1)) */
    double shift = hd / (mu_s * mu_s * (double)(b * (b - 1)));
    for (int64_t n = 0; n < bb; n++) st->d_dist[n] = (float)(st->d_dist[n] / mu_s - shift);
    return fkd__pdist_backward(st->pair.d_hat, st->d_dist, st->dist_s, xs, b, ds, (float)st->w_d);
}

/* e (b, d): rows x_j − x_a normalised (row a is 0); norms into e_norm. */
static void anchor_directions(float *e, float *e_norm, float *diff, const float *x, int64_t a,
                              int64_t b, int64_t d)
{
    for (int64_t j = 0; j < b; j++)
        for (int64_t k = 0; k < d; k++) diff[j * d + k] = x[j * d + k] - x[a * d + k];
    fkd__rows_normalize(e, e_norm, diff, b, d);
}

/* L_A; accumulates w_A·∂L_A/∂x_s into pair.d_hat when `grad`. */
static fkd_status rkd_angle(rkd_state *st, const float *xs, const float *xt, int64_t b,
                            bool grad, double *loss)
{
    int64_t ds = st->pair.d_s, dt = st->pair.d_t, bb = b * b;
    double sum = 0.0, inv = 1.0 / ((double)bb * (double)b);
    float *dx = st->pair.d_hat;
    for (int64_t a = 0; a < b; a++) {
        anchor_directions(st->es, st->es_norm, st->diff, xs, a, b, ds);
        anchor_directions(st->et, st->et_norm, st->diff, xt, a, b, dt);
        FKD_TRY(fkd__gram(st->as, st->es, b, ds, ds));
        FKD_TRY(fkd__gram(st->at, st->et, b, dt, dt));
        for (int64_t n = 0; n < bb; n++) {
            double e = (double)st->as[n] - st->at[n];
            sum += fkd__smooth_l1(e);
            st->d_as[n] = (float)(fkd__smooth_l1_grad(e) * inv);
        }
        if (!grad) continue;
        memset(st->d_es, 0, (size_t)(b * ds) * sizeof(float));
        memset(st->d_vs, 0, (size_t)(b * ds) * sizeof(float));
        FKD_TRY(fkd__gram_backward(st->d_es, st->d_as, st->es, b, ds, ds, (float)st->w_a));
        fkd__rows_normalize_backward(st->d_vs, st->d_es, st->es, st->es_norm, b, ds, 1.0f);
        /* v_j = x_j − x_a: +into x_j, −into x_a; row a (v = 0) cancels exactly: skipped */
        for (int64_t j = 0; j < b; j++) {
            if (j == a) continue;
            for (int64_t k = 0; k < ds; k++) {
                dx[j * ds + k] += st->d_vs[j * ds + k];
                dx[a * ds + k] -= st->d_vs[j * ds + k];
            }
        }
    }
    *loss = sum * inv;
    return FKD_OK;
}

static fkd_status rkd_forward(void *state, const fkd_distill_inputs *in,
                              const fkd_distill_outputs *out, double *loss)
{
    rkd_state *st = state;
    fkd__emb_pair *p = &st->pair;
    int64_t b = in->batch;
    *loss = 0.0;
    if (b < 2) return FKD_OK; /* no pairs */
    const float *xs = in->student_emb, *xt = in->teacher_emb;
    if (st->normalize) {
        fkd__emb_pair_normalize(p, xs, xt, b);
        xs = p->s_hat;
        xt = p->t_hat;
    }
    bool grad = out && out->d_student_emb;
    if (grad) memset(p->d_hat, 0, (size_t)(b * p->d_s) * sizeof(float));
    double l_d = 0.0, l_a = 0.0;
    if (st->w_d > 0) FKD_TRY(rkd_distance(st, xs, xt, b, grad, &l_d));
    if (st->w_a > 0) FKD_TRY(rkd_angle(st, xs, xt, b, grad, &l_a));
    *loss = st->w_d * l_d + st->w_a * l_a;
    if (!grad) return FKD_OK;
    if (st->normalize) {
        fkd__emb_pair_backward(p, out->d_student_emb, b, out->scale);
    } else {
        for (int64_t n = 0; n < b * p->d_s; n++) out->d_student_emb[n] += out->scale * p->d_hat[n];
    }
    return FKD_OK;
}

const fkd_distill_method fkd__distill_rkd = {
    .name = "rkd",
    .summary = "relational KD: smooth-L1 on normalised pairwise distances and triplet angles",
    .needs = FKD_DISTILL_NEED_STUDENT_EMB | FKD_DISTILL_NEED_TEACHER_EMB,
    .create = rkd_create,
    .forward = rkd_forward,
    .free = rkd_free,
};
