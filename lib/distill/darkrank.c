/* darkrank — Chen, Wang, Zhang, "DarkRank: Accelerating Deep Metric Learning via Cross
 * Sample Similarities Transfer" (AAAI 2018), hard version: the student learns the
 * teacher's ranking of each anchor's nearest neighbours in the batch.
 *
 * On L2-normalised embeddings, the score of sample j for anchor i is
 *     S_ij = −α · ‖x_i − x_j‖^β
 * The teacher's scores rank the other samples; π_i = its top k (the k samples nearest to
 * anchor i by the teacher; ties by index). The student's Plackett-Luce likelihood of that
 * order, normalised over the listed samples (ListMLE), is the loss:
 *     L = −1/b Σ_i Σ_{m=1..k} [σ_im − log Σ_{l=m..k} exp σ_il],   σ_im = S^s_{i,π_i(m)}
 *     ∂L/∂σ_im = (1/b) · (−1 + Σ_{l≤m} exp(σ_im − lse_il)),   lse_il = log Σ_{r≥l} exp σ_ir
 * then ∂σ/∂d = −αβ d^(β−1) into the pairwise distances and the normalisation of s.
 * The teacher side has no gradient. With b − 1 < k the list is the b − 1 other samples;
 * a batch of one has nothing to rank (loss 0).
 *
 * Defaults α = 3, β = 3 (the DarkRank paper's experiments, kept by the authors' MXNet
 * DarkRankLoss and by the RKD authors' HardDarkRank); k = list_length = 3 neighbours
 * (the MXNet loss's list_length = 4 counts the anchor itself, i.e. 3 neighbours).
 *
 * Parameters: alpha (> 0, 3), beta (> 0, 3), list_length (1..64, 3).
 */
#include <math.h>
#include <stdlib.h>

#include "distill/distiller.h"
#include "distill/ops.h"

#define DARKRANK_MAX_LIST 64

typedef struct {
    double alpha, beta;
    int64_t k;
    fkd__emb_pair pair;
    float *block;
    float *gs, *dist_s; /* (B, B) student Gram of ŝ, pairwise distances */
    float *gt, *dist_t; /* (B, B) teacher */
    float *d_dist;      /* (B, B) ∂L/∂dist_s */
} darkrank_state;

static void darkrank_free(void *state)
{
    darkrank_state *st = state;
    if (!st) return;
    fkd__emb_pair_free(&st->pair);
    free(st->block);
    free(st);
}

static fkd_status darkrank_create(void **state, fkd_distill_needs *needs,
                                  fkd_distill_options *opts, const fkd_distill_context *ctx)
{
    (void)needs;
    double alpha, beta;
    int64_t k;
    FKD_TRY(fkd_distill_opt_float(opts, "alpha", 3.0, FKD_DISTILL_POSITIVE, &alpha));
    FKD_TRY(fkd_distill_opt_float(opts, "beta", 3.0, FKD_DISTILL_POSITIVE, &beta));
    FKD_TRY(fkd_distill_opt_int(opts, "list_length", 3, 1, DARKRANK_MAX_LIST, &k));
    darkrank_state *st = calloc(1, sizeof *st);
    if (!st) return fkd_distill_options_fail(opts, FKD_ERR_NOMEM, "out of memory");
    st->alpha = alpha;
    st->beta = beta;
    st->k = k;
    int64_t bb = ctx->max_batch * ctx->max_batch;
    float **const ptrs[] = {&st->gs, &st->dist_s, &st->gt, &st->dist_t, &st->d_dist};
    const int64_t sizes[] = {bb, bb, bb, bb, bb};
    fkd_status r = fkd__emb_pair_init(&st->pair, ctx->max_batch, ctx->d_s, ctx->d_t, "darkrank");
    if (r == FKD_OK) r = fkd__alloc_buffers(&st->block, ptrs, sizes, 5, "darkrank");
    if (r != FKD_OK) {
        darkrank_free(st);
        return r;
    }
    *state = st;
    return FKD_OK;
}

/* The k samples nearest to anchor i by `dist` (row i, b entries), nearest first. */
static void nearest(int64_t *list, const float *dist, int64_t i, int64_t b, int64_t k)
{
    int64_t n = 0;
    for (int64_t j = 0; j < b; j++) {
        if (j == i) continue;
        /* insertion into the sorted prefix; strict < keeps the lower index first on ties */
        int64_t pos = n < k ? n : k;
        while (pos > 0 && dist[j] < dist[list[pos - 1]]) pos--;
        if (pos >= k) continue;
        for (int64_t m = (n < k ? n : k - 1); m > pos; m--) list[m] = list[m - 1];
        list[pos] = j;
        if (n < k) n++;
    }
}

/* −log P of anchor i's list under the student; d_dist row i gets ∂(−log P)/∂dist / b. */
static double darkrank_anchor(const darkrank_state *st, int64_t i, int64_t b, int64_t k)
{
    int64_t list[DARKRANK_MAX_LIST];
    double sigma[DARKRANK_MAX_LIST], lse[DARKRANK_MAX_LIST];
    const float *ds = st->dist_s + i * b;
    float *dd = st->d_dist + i * b;
    nearest(list, st->dist_t + i * b, i, b, k);
    for (int64_t m = 0; m < k; m++) sigma[m] = -st->alpha * pow(ds[list[m]], st->beta);
    /* suffix log-sum-exp, stable: lse_m = log Σ_{l≥m} exp σ_l */
    lse[k - 1] = sigma[k - 1];
    for (int64_t m = k - 2; m >= 0; m--) {
        double hi = sigma[m] > lse[m + 1] ? sigma[m] : lse[m + 1];
        lse[m] = hi + log(exp(sigma[m] - hi) + exp(lse[m + 1] - hi));
    }
    double nll = 0.0;
    for (int64_t j = 0; j < b; j++) dd[j] = 0.0f;
    for (int64_t m = 0; m < k; m++) {
        nll -= sigma[m] - lse[m];
        double g = -1.0;
        for (int64_t l = 0; l <= m; l++) g += exp(sigma[m] - lse[l]);
        double dsig_ddist = -st->alpha * st->beta * pow(ds[list[m]], st->beta - 1.0);
        dd[list[m]] = (float)(g * dsig_ddist / (double)b);
    }
    return nll;
}

static fkd_status darkrank_forward(void *state, const fkd_distill_inputs *in,
                                   const fkd_distill_outputs *out, double *loss)
{
    darkrank_state *st = state;
    fkd__emb_pair *p = &st->pair;
    int64_t b = in->batch, k = st->k < b - 1 ? st->k : b - 1;
    *loss = 0.0;
    if (k < 1) return FKD_OK;
    fkd__emb_pair_normalize(p, in->student_emb, in->teacher_emb, b);
    FKD_TRY(fkd__gram(st->gs, p->s_hat, b, p->d_s, p->d_s));
    FKD_TRY(fkd__gram(st->gt, p->t_hat, b, p->d_t, p->d_t));
    fkd__pdist_from_gram(st->dist_s, st->gs, b);
    fkd__pdist_from_gram(st->dist_t, st->gt, b);
    double sum = 0.0;
#pragma omp parallel for reduction(+ : sum) schedule(static)
    for (int64_t i = 0; i < b; i++) sum += darkrank_anchor(st, i, b, k);
    *loss = sum / (double)b;
    if (!out || !out->d_student_emb) return FKD_OK;
    for (int64_t n = 0; n < b * p->d_s; n++) p->d_hat[n] = 0.0f;
    FKD_TRY(fkd__pdist_backward(p->d_hat, st->d_dist, st->dist_s, p->s_hat, b, p->d_s, 1.0f));
    fkd__emb_pair_backward(p, out->d_student_emb, b, out->grad_scale);
    return FKD_OK;
}

const fkd_distill_method fkd__distill_darkrank = {
    .name = "darkrank",
    .summary = "DarkRank (hard): ListMLE of the teacher's nearest-neighbour order per anchor",
    .needs = FKD_DISTILL_NEED_STUDENT_EMB | FKD_DISTILL_NEED_TEACHER_EMB,
    .create = darkrank_create,
    .forward = darkrank_forward,
    .free = darkrank_free,
};
