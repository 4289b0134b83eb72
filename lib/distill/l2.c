/* l2 — embedding regression baseline: FitNets' hint loss (Romero et al., "FitNets: Hints
 * for Thin Deep Nets", ICLR 2015) applied to the final embedding, the plain "pull the
 * student's embedding onto the teacher's" baseline of face-KD comparisons.
 *
 *   L = 1/(b·d) Σ_i ‖ŝ_i − t̂_i‖²          (torch.nn.functional.mse_loss, mean reduction)
 *
 * ŝ = s/‖s‖, t̂ = t/‖t‖ when `normalize` (default true: face verification compares
 * normalised embeddings, and the raw norm carries image quality rather than identity);
 * the raw embeddings otherwise. Needs d_s = d_t (no regressor: fitnet has one). Teacher
 * side without gradient.
 *
 * Parameters: normalize (bool, true).
 */
#include <stdlib.h>

#include "distill/distiller.h"
#include "distill/ops.h"

typedef struct {
    bool normalize;
    fkd__emb_pair pair; /* pair.d_hat holds ∂L/∂(ŝ or s) */
} l2_state;

static void l2_free(void *state)
{
    l2_state *st = state;
    if (!st) return;
    fkd__emb_pair_free(&st->pair);
    free(st);
}

static fkd_status l2_create(void **state, fkd_distill_needs *needs, fkd_distill_options *opts,
                            const fkd_distill_context *ctx)
{
    (void)needs;
    bool normalize;
    FKD_TRY(fkd_distill_opt_bool(opts, "normalize", true, &normalize));
    if (ctx->d_s != ctx->d_t)
        return fkd_distill_options_fail(opts, FKD_ERR_ARG, "needs equal embedding sizes, got "
                                        "student %lld and teacher %lld (fitnet has a regressor)",
                                        (long long)ctx->d_s, (long long)ctx->d_t);
    l2_state *st = calloc(1, sizeof *st);
    if (!st) return fkd_distill_options_fail(opts, FKD_ERR_NOMEM, "out of memory");
    st->normalize = normalize;
    fkd_status s = fkd__emb_pair_init(&st->pair, ctx->max_batch, ctx->d_s, ctx->d_t, "l2");
    if (s != FKD_OK) {
        l2_free(st);
        return s;
    }
    *state = st;
    return FKD_OK;
}

static fkd_status l2_forward(void *state, const fkd_distill_inputs *in,
                             const fkd_distill_outputs *out, double *loss)
{
    l2_state *st = state;
    fkd__emb_pair *p = &st->pair;
    int64_t b = in->batch, n = b * p->d_s;
    const float *s = in->student_emb, *t = in->teacher_emb;
    if (st->normalize) {
        fkd__emb_pair_normalize(p, s, t, b);
        s = p->s_hat;
        t = p->t_hat;
    }
    double sum = 0.0;
    float g = 2.0f / (float)n;
#pragma omp parallel for reduction(+ : sum) schedule(static)
    for (int64_t k = 0; k < n; k++) {
        float e = s[k] - t[k];
        sum += (double)e * e;
        p->d_hat[k] = g * e;
    }
    *loss = sum / (double)n;
    if (!out || !out->d_student_emb) return FKD_OK;
    if (st->normalize) {
        fkd__emb_pair_backward(p, out->d_student_emb, b, out->grad_scale);
    } else {
        for (int64_t k = 0; k < n; k++) out->d_student_emb[k] += out->grad_scale * p->d_hat[k];
    }
    return FKD_OK;
}

const fkd_distill_method fkd__distill_l2 = {
    .name = "l2",
    .summary = "mean squared error between (normalised) student and teacher embeddings",
    .needs = FKD_DISTILL_NEED_STUDENT_EMB | FKD_DISTILL_NEED_TEACHER_EMB,
    .create = l2_create,
    .forward = l2_forward,
    .free = l2_free,
};
