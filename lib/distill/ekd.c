/* ekd — Huang, Wu, Xu, Ding, "Evaluation-oriented Knowledge Distillation for Deep Face
 * Recognition" (CVPR 2022): instead of copying the teacher's embeddings, the student
 * copies how the teacher's pair scores rank against the thresholds that verification
 * uses (the similarity at FPR 1e-1 … 1e-6), on the pairs that decide TPR and FPR.
 *
 * Within the batch (b samples, labels y): S_ij = ŝ_i·ŝ_j and T_ij = t̂_i·t̂_j for the pairs
 * i < j (normalised embeddings); a pair is positive when y_i = y_j, negative otherwise.
 *   Thresholds: each model sorts its own negatives from high to low (n of them) and reads
 *     the one at position ⌊n / a_k⌋ (0-based, at most n − 1) with a_k = round(1/FPR_k) =
 *     10, 100, …, 10⁶ — the score that a fraction FPR_k of the negatives exceeds. They are running averages:
 *     τ_k ← (1 − μ)·τ_k + μ·(this batch's), μ = 0.01, from τ = 0 at the start, updated
 *     BEFORE the loss of the step uses them (as the authors' code does); only in training
 *     steps (out ≠ NULL). τ^s for the student, τ^t for the teacher, each from its own
 *     negatives.
 *   Soft rank count of a score x against thresholds τ: R(x) = Σ_k σ((x − τ_k)/T), T = 0.01
 *     (the exponent −(x − τ_k)/T is clamped to [−50, 50], so far from τ_k σ' is 0).
 *   Critical pairs: every positive pair, and the K = 2000 negatives the STUDENT scores
 *     highest (fewer when the batch has fewer); the teacher's scores of the same pairs.
 *   L = w_p · 1/|P| Σ_P (R_s(S) − R_t(T))² + w_n · 1/|N| Σ_N (R_s(S) − R_t(T))²
 *     with w_p = 0.02, w_n = 0.01 (R_s with τ^s, R_t with τ^t); an empty set adds 0.
 *   Gradient only through the student's similarities S (thresholds and the selection are
 *   constants): ∂L/∂S = 2 w (R_s − R_t)/|set| · Σ_k σ'_k / T, then through the Gram ŝŝᵀ and
 *   the normalisation.
 *
 * The trainer's side (the paper's setup): the label head is ArcFace (s = 64, m = 0.4)
 * beside this term; batches are half random images, half identities × 4 images, so that
 * every batch holds positive pairs (the identities × images sampler); `compare` and the
 * recipes do both. The thresholds are running state: fkd_distiller_state_tensors()
 * exposes "student_thresholds" and "teacher_thresholds" (K floats each) for checkpoints.
 *
 * Defaults: from the authors' code (Tencent TFace, tasks/ekd): FPRs 1e-1 … 1e-6, top-k
 * 2000, temperature 0.01, momentum 0.01, weights 0.02 (positives) and 0.01 (negatives).
 *
 * Parameters: fpr (list of 1–8 numbers in (0, 1), [1e-1 … 1e-6]), top_k (≥ 1, 2000),
 * temperature (> 0, 0.01), momentum ([0, 1], 0.01), pos_weight (≥ 0, 0.02),
 * neg_weight (≥ 0, 0.01).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "distill/distiller.h"
#include "distill/ops.h"

#define EKD_MAX_FPR 8
#define EKD_EXP_CLAMP 50.0

typedef struct {
    float v;    /* a pair's score */
    int32_t ij; /* i·b + j, i < j */
} scored_pair;

typedef struct {
    int n_thr;
    int64_t anchor[EKD_MAX_FPR]; /* 1/FPR */
    float s_thr[EKD_MAX_FPR], t_thr[EKD_MAX_FPR];
    int64_t top_k;
    double temp, momentum, w_pos, w_neg;
    fkd__emb_pair pair;
    float *block;
    float *gs, *gt, *dg; /* (B, B) */
    int64_t cap;         /* P = B(B−1)/2: pairs of the largest batch */
    scored_pair *pairs;  /* positives (P) | student negatives (P) | teacher negatives (P) */
} ekd_state;

static void ekd_free(void *state)
{
    ekd_state *st = state;
    if (!st) return;
    fkd__emb_pair_free(&st->pair);
    free(st->block);
    free(st->pairs);
    free(st);
}

static fkd_status ekd_create(void **state, fkd_distill_needs *needs, fkd_distill_options *opts,
                             const fkd_distill_context *ctx)
{
    (void)needs;
    static const double def_fpr[] = {1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6};
    const fkd_distill_range open_unit = {0.0, 1.0, true, true};
    double fpr[EKD_MAX_FPR], temp, momentum, w_pos, w_neg;
    int n_fpr;
    int64_t top_k;
    FKD_TRY(fkd_distill_opt_floats(opts, "fpr", def_fpr, 6, 1, EKD_MAX_FPR, open_unit, fpr,
                                   &n_fpr));
    FKD_TRY(fkd_distill_opt_int(opts, "top_k", 2000, 1, INT32_MAX, &top_k));
    FKD_TRY(fkd_distill_opt_float(opts, "temperature", 0.01, FKD_DISTILL_POSITIVE, &temp));
    FKD_TRY(fkd_distill_opt_float(opts, "momentum", 0.01, FKD_DISTILL_UNIT, &momentum));
    FKD_TRY(fkd_distill_opt_float(opts, "pos_weight", 0.02, FKD_DISTILL_NONNEG, &w_pos));
    FKD_TRY(fkd_distill_opt_float(opts, "neg_weight", 0.01, FKD_DISTILL_NONNEG, &w_neg));
    ekd_state *st = calloc(1, sizeof *st);
    if (!st) return fkd_distill_options_fail(opts, FKD_ERR_NOMEM, "out of memory");
    st->n_thr = n_fpr;
    for (int k = 0; k < n_fpr; k++) st->anchor[k] = llround(1.0 / fpr[k]);
    st->top_k = top_k;
    st->temp = temp;
    st->momentum = momentum;
    st->w_pos = w_pos;
    st->w_neg = w_neg;
    int64_t B = ctx->max_batch, bb = B * B, P = B * (B - 1) / 2;
    float **const ptrs[] = {&st->gs, &st->gt, &st->dg};
    const int64_t sizes[] = {bb, bb, bb};
    fkd_status r = fkd__emb_pair_init(&st->pair, B, ctx->d_s, ctx->d_t, "ekd");
    if (r == FKD_OK) r = fkd__alloc_buffers(&st->block, ptrs, sizes, 3, "ekd");
    st->cap = P > 0 ? P : 1;
    if (r == FKD_OK && !(st->pairs = calloc((size_t)(3 * st->cap), sizeof *st->pairs)))
        r = fkd_distill_options_fail(opts, FKD_ERR_NOMEM, "out of memory");
    if (r != FKD_OK) {
        ekd_free(st);
        return r;
    }
    *state = st;
    return FKD_OK;
}

/* "a before b" in the descending order: higher score first, then lower pair index (a
 * total order, so the result does not depend on the sort's stability). */
static bool before(scored_pair a, scored_pair b)
{
    return a.v > b.v || (a.v == b.v && a.ij < b.ij);
}

static void sift_down(scored_pair *x, int64_t root, int64_t n)
{
    for (;;) {
        int64_t child = 2 * root + 1;
        if (child >= n) return;
        /* heap order: a parent sorts after its children, so the root is the pair that
         * sorts last, and moving it to the end leaves the front in order */
        if (child + 1 < n && before(x[child], x[child + 1])) child++;
        if (!before(x[root], x[child])) return;
        scored_pair t = x[root];
        x[root] = x[child];
        x[child] = t;
        root = child;
    }
}

/* Sorts x (n) from high to low in place (heap sort: no allocation, O(n log n)). */
static void sort_descending(scored_pair *x, int64_t n)
{
    for (int64_t i = n / 2 - 1; i >= 0; i--) sift_down(x, i, n);
    for (int64_t end = n - 1; end > 0; end--) {
        scored_pair t = x[0];
        x[0] = x[end];
        x[end] = t;
        sift_down(x, 0, end);
    }
}

/* R(x) = Σ_k σ((x − τ_k)/T); *dR = ∂R/∂x. */
static double soft_count(double x, const float *thr, int n, double temp, double *dR)
{
    double r = 0.0, dr = 0.0;
    for (int k = 0; k < n; k++) {
        double e = -(x - thr[k]) / temp;
        bool clamped = e < -EKD_EXP_CLAMP || e > EKD_EXP_CLAMP;
        e = fmin(fmax(e, -EKD_EXP_CLAMP), EKD_EXP_CLAMP);
        double sg = 1.0 / (1.0 + exp(e));
        r += sg;
        dr += clamped ? 0.0 : sg * (1.0 - sg) / temp;
    }
    *dR = dr;
    return r;
}

/* w · mean over `set` of (R_s(S) − R_t(T))²; dg[ij] += ∂/∂S_ij when `grad`. */
static double rank_mse(ekd_state *st, const scored_pair *set, int64_t n, double w, bool grad)
{
    if (n == 0 || w == 0.0) return 0.0;
    double sum = 0.0;
    for (int64_t q = 0; q < n; q++) {
        int32_t ij = set[q].ij;
        double drs, drt;
        double e = soft_count(st->gs[ij], st->s_thr, st->n_thr, st->temp, &drs) -
                   soft_count(st->gt[ij], st->t_thr, st->n_thr, st->temp, &drt);
        sum += e * e;
        if (grad) st->dg[ij] += (float)(w * 2.0 * e * drs / (double)n);
    }
    return w * sum / (double)n;
}

static void update_thresholds(float *thr, const ekd_state *st, const scored_pair *sorted,
                              int64_t n)
{
    for (int k = 0; k < st->n_thr; k++) {
        int64_t at = n / st->anchor[k]; /* n when FPR > 1/2 rounds the anchor to 1 */
        float now = sorted[at < n ? at : n - 1].v;
        thr[k] = (float)((1.0 - st->momentum) * thr[k] + st->momentum * now);
    }
}

static fkd_status ekd_forward(void *state, const fkd_distill_inputs *in,
                              const fkd_distill_outputs *out, double *loss)
{
    ekd_state *st = state;
    fkd__emb_pair *p = &st->pair;
    int64_t b = in->batch, d = p->d_s;
    fkd__emb_pair_normalize(p, in->student_emb, in->teacher_emb, b);
    FKD_TRY(fkd__gram(st->gs, p->s_hat, b, d, d));
    FKD_TRY(fkd__gram(st->gt, p->t_hat, b, p->d_t, p->d_t));
    int64_t n_pos = 0, n_neg = 0;
    scored_pair *pos = st->pairs, *neg_s = pos + st->cap, *neg_t = neg_s + st->cap;
    for (int64_t i = 0; i < b; i++)
        for (int64_t j = i + 1; j < b; j++) {
            int32_t ij = (int32_t)(i * b + j);
            if (in->labels[i] == in->labels[j]) {
                pos[n_pos++] = (scored_pair){st->gs[ij], ij};
            } else {
                neg_s[n_neg] = (scored_pair){st->gs[ij], ij};
                neg_t[n_neg++] = (scored_pair){st->gt[ij], ij};
            }
        }
    sort_descending(neg_s, n_neg);
    if (out && n_neg > 0) {
        sort_descending(neg_t, n_neg);
        update_thresholds(st->s_thr, st, neg_s, n_neg);
        update_thresholds(st->t_thr, st, neg_t, n_neg);
    }
    bool grad = out && out->d_student_emb;
    if (grad) memset(st->dg, 0, (size_t)(b * b) * sizeof(float));
    int64_t n_hard = st->top_k < n_neg ? st->top_k : n_neg;
    *loss = rank_mse(st, pos, n_pos, st->w_pos, grad) +
            rank_mse(st, neg_s, n_hard, st->w_neg, grad);
    if (!grad) return FKD_OK;
    memset(p->d_hat, 0, (size_t)(b * d) * sizeof(float));
    FKD_TRY(fkd__gram_backward(p->d_hat, st->dg, p->s_hat, b, d, d, 1.0f));
    fkd__emb_pair_backward(p, out->d_student_emb, b, out->grad_scale);
    return FKD_OK;
}

static int ekd_state_tensors(void *state, fkd_distill_tensor *tensors, int max)
{
    ekd_state *st = state;
    const fkd_distill_tensor all[2] = {{"student_thresholds", st->s_thr, st->n_thr},
                                       {"teacher_thresholds", st->t_thr, st->n_thr}};
    for (int k = 0; k < 2 && k < max; k++) tensors[k] = all[k];
    return 2;
}

const fkd_distill_method fkd__distill_ekd = {
    .name = "ekd",
    .summary = "evaluation-oriented KD: soft rank of pair scores against running FPR "
               "thresholds, positives and hardest negatives",
    .needs = FKD_DISTILL_NEED_STUDENT_EMB | FKD_DISTILL_NEED_TEACHER_EMB |
             FKD_DISTILL_NEED_LABELS,
    .create = ekd_create,
    .forward = ekd_forward,
    .free = ekd_free,
    .state_tensors = ekd_state_tensors,
};
