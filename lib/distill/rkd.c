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
 *
 * Both terms are computed from the Gram matrix G = x xᵀ (one sgemm per side), so the
 * angle term costs O(b³ + b²·d) rather than the O(b³·d) of forming every difference
 * vector: with v_j = x_j − x_a,
 *   u_jk = v_j·v_k = G_jk − G_ja − G_ak + G_aa,   n_j = sqrt(u_jj),   A^a_jk = u_jk/(n_j n_k)
 * and the gradient flows back the same way: ∂A/∂u_jk = 1/(n_j n_k), ∂A/∂n_j = −A/n_j,
 * ∂n_j/∂u_jj = 1/(2 n_j), u into G, and ∂L/∂x = (∂L/∂G + ∂L/∂Gᵀ) x. A^a_jj = 1 on both
 * sides for j ≠ a and contributes neither loss nor gradient. L_D goes through d/μ (μ depends
 * on every distance) and the pairwise distances. Precision: u comes from fp32 Gram entries
 * of size ‖x‖², so its relative error is about 1e-7·‖x‖²/‖x_j − x_a‖² — nothing on
 * normalised embeddings (the default), a few digits for raw ones of large norm whose
 * samples lie close together.
 *
 * Defaults w_D = 25, w_A = 50: RepDistiller's RKDLoss (w_d = 25, w_a = 50), the weights
 * used for RKD in the CRD benchmark; the paper's metric-learning runs use 1 and 2.
 * normalize = true: face verification compares normalised embeddings; the RKD authors'
 * code normalises the teacher's embedding by default and offers the same switch for the
 * student.
 *
 * Parameters: distance_weight (≥ 0, 25), angle_weight (≥ 0, 50), normalize (bool, true).
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "distill/distiller.h"
#include "distill/ops.h"

typedef struct {
    double w_d, w_a;
    bool normalize;
    int threads;        /* OpenMP threads the per-thread buffers were sized for */
    fkd__emb_pair pair; /* pair.d_hat: ∂L/∂x_s (x = ŝ or s) */
    float *block;
    float *gs, *dist_s, *gt, *dist_t; /* (B, B) */
    float *d_dist, *d_gs;             /* (B, B) ∂L/∂dist_s, ∂L/∂G_s */
    float *d_gs_thread;               /* (threads, B, B) angle term's ∂L/∂G_s per thread */
    double *work;                     /* (threads, 4, B) n_s, n_t, ∂L/∂n_s, column sums */
    int64_t max_batch;
} rkd_state;

static void rkd_free(void *state)
{
    rkd_state *st = state;
    if (!st) return;
    fkd__emb_pair_free(&st->pair);
    free(st->block);
    free(st->work);
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
    st->threads = omp_get_max_threads();
    st->max_batch = ctx->max_batch;
    int64_t B = ctx->max_batch, bb = B * B, T = st->threads;
    float **const ptrs[] = {&st->gs,   &st->dist_s, &st->gt,         &st->dist_t,
                            &st->d_dist, &st->d_gs, &st->d_gs_thread};
    const int64_t sizes[] = {bb, bb, bb, bb, bb, bb, T * bb};
    fkd_status r = fkd__emb_pair_init(&st->pair, B, ctx->d_s, ctx->d_t, "rkd");
    if (r == FKD_OK) r = fkd__alloc_buffers(&st->block, ptrs, sizes, 7, "rkd");
    if (r == FKD_OK) {
        st->work = calloc((size_t)(T * 4 * B), sizeof(double));
        if (!st->work) r = fkd_distill_options_fail(opts, FKD_ERR_NOMEM, "out of memory");
    }
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

/* L_D from the Grams; d_gs += w_D·∂L_D/∂G_s expressed as ∂/∂dist, when `grad`. */
static fkd_status rkd_distance(rkd_state *st, const float *xs, int64_t b, bool grad,
                               double *loss)
{
    int64_t bb = b * b;
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
    return fkd__pdist_backward(st->pair.d_hat, st->d_dist, st->dist_s, xs, b, st->pair.d_s,
                               (float)st->w_d);
}

/* ‖x_j − x_a‖ for every j, from the Gram g (b, b). */
static void anchor_norms(double *n, const float *g, int64_t a, int64_t b)
{
    for (int64_t j = 0; j < b; j++) {
        double q = (double)g[j * b + j] - 2.0 * g[j * b + a] + g[a * b + a];
        n[j] = sqrt(q > 0.0 ? q : 0.0);
    }
}

/* Σ_jk ℓ(A^{s,a}_jk − A^{t,a}_jk) for anchor a; when dg is not NULL adds
 * scale·∂/∂G_s of it into dg (b, b). work: 4·b doubles. */
static double rkd_anchor(const rkd_state *st, int64_t a, int64_t b, double scale, float *dg,
                         double *work)
{
    const float *gs = st->gs, *gt = st->gt;
    double *ns = work, *nt = work + b, *dn = work + 2 * b, *col = work + 3 * b;
    const double eps = FKD__NORM_EPS;
    anchor_norms(ns, gs, a, b);
    anchor_norms(nt, gt, a, b);
    for (int64_t j = 0; j < b; j++) dn[j] = col[j] = 0.0;
    double sum = 0.0, total = 0.0;
    for (int64_t j = 0; j < b; j++) {
        if (j == a) continue;
        double nsj = fmax(ns[j], eps), ntj = fmax(nt[j], eps), row = 0.0;
        double gsja = gs[j * b + a] - (double)gs[a * b + a];
        double gtja = gt[j * b + a] - (double)gt[a * b + a];
        for (int64_t k = 0; k < b; k++) {
            if (k == a || k == j) continue; /* A_jj = 1 on both sides */
            double nsk = fmax(ns[k], eps), ntk = fmax(nt[k], eps);
            double as = (gs[j * b + k] - gsja - gs[a * b + k]) / (nsj * nsk);
            double at = (gt[j * b + k] - gtja - gt[a * b + k]) / (ntj * ntk);
            double e = as - at;
            sum += fkd__smooth_l1(e);
            if (!dg) continue;
            double h = scale * fkd__smooth_l1_grad(e);
            double du = h / (nsj * nsk);
            dg[j * b + k] += (float)du;
            row += du;
            col[k] += du;
            dn[j] -= h * as / nsj;
            dn[k] -= h * as / nsk;
        }
        if (!dg) continue;
        dg[j * b + a] -= (float)row; /* u_jk = G_jk − G_ja − G_ak + G_aa */
        total += row;
    }
    if (!dg) return sum;
    for (int64_t k = 0; k < b; k++) dg[a * b + k] -= (float)col[k];
    dg[a * b + a] += (float)total;
    for (int64_t j = 0; j < b; j++) {
        if (j == a || ns[j] <= eps) continue; /* a clamped norm passes nothing */
        double dq = dn[j] / (2.0 * ns[j]);    /* u_jj = G_jj − 2 G_ja + G_aa */
        dg[j * b + j] += (float)dq;
        dg[j * b + a] -= (float)(2.0 * dq);
        dg[a * b + a] += (float)dq;
    }
    return sum;
}

/* L_A from the Grams; pair.d_hat += w_A·∂L_A/∂x_s when `grad`. */
static fkd_status rkd_angle(rkd_state *st, const float *xs, int64_t b, bool grad, double *loss)
{
    int64_t bb = b * b;
    double inv = 1.0 / ((double)bb * (double)b), sum = 0.0;
    int threads = st->threads;
    if (grad) memset(st->d_gs_thread, 0, (size_t)(threads * bb) * sizeof(float));
#pragma omp parallel num_threads(threads) reduction(+ : sum)
    {
        int t = omp_get_thread_num();
        float *dg = grad ? st->d_gs_thread + t * bb : NULL;
        double *work = st->work + (int64_t)t * 4 * st->max_batch;
#pragma omp for schedule(dynamic, 4)
        for (int64_t a = 0; a < b; a++) sum += rkd_anchor(st, a, b, st->w_a * inv, dg, work);
    }
    *loss = sum * inv;
    if (!grad) return FKD_OK;
    for (int64_t n = 0; n < bb; n++) {
        float s = 0.0f;
        for (int t = 0; t < threads; t++) s += st->d_gs_thread[t * bb + n];
        st->d_gs[n] = s;
    }
    return fkd__gram_backward(st->pair.d_hat, st->d_gs, xs, b, st->pair.d_s, st->pair.d_s, 1.0f);
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
    FKD_TRY(fkd__gram(st->gs, xs, b, p->d_s, p->d_s));
    FKD_TRY(fkd__gram(st->gt, xt, b, p->d_t, p->d_t));
    bool grad = out && out->d_student_emb;
    if (grad) memset(p->d_hat, 0, (size_t)(b * p->d_s) * sizeof(float));
    double l_d = 0.0, l_a = 0.0;
    if (st->w_d > 0) FKD_TRY(rkd_distance(st, xs, b, grad, &l_d));
    if (st->w_a > 0) FKD_TRY(rkd_angle(st, xs, b, grad, &l_a));
    *loss = st->w_d * l_d + st->w_a * l_a;
    if (!grad) return FKD_OK;
    if (st->normalize) {
        fkd__emb_pair_backward(p, out->d_student_emb, b, out->grad_scale);
    } else {
        for (int64_t n = 0; n < b * p->d_s; n++)
            out->d_student_emb[n] += out->grad_scale * p->d_hat[n];
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
