/* cosine — embedding direction baseline: one minus the cosine between the student's and
 * the teacher's embedding of each image, averaged over the batch (the "cosine distance"
 * embedding-matching loss of the face-KD baselines; no tunable hyperparameters).
 *
 *   L = 1/b Σ_i (1 − ŝ_i·t̂_i),   ŝ = s/‖s‖, t̂ = t/‖t‖
 *   ∂L/∂ŝ_i = −t̂_i / b, then through the normalisation of s_i.
 *
 * Needs d_s = d_t. Teacher side without gradient. Parameters: none.
 */
#include <stdlib.h>

#include "distill/distiller.h"
#include "distill/ops.h"

static void cosine_free(void *state)
{
    fkd__emb_pair *p = state;
    if (!p) return;
    fkd__emb_pair_free(p);
    free(p);
}

static fkd_status cosine_create(void **state, fkd_distill_needs *needs,
                                fkd_distill_options *opts, const fkd_distill_context *ctx)
{
    (void)needs;
    if (ctx->d_s != ctx->d_t)
        return fkd_distill_options_fail(opts, FKD_ERR_ARG, "needs equal embedding sizes, got "
                                        "student %lld and teacher %lld",
                                        (long long)ctx->d_s, (long long)ctx->d_t);
    fkd__emb_pair *p = calloc(1, sizeof *p);
    if (!p) return fkd_distill_options_fail(opts, FKD_ERR_NOMEM, "out of memory");
    fkd_status s = fkd__emb_pair_init(p, ctx->max_batch, ctx->d_s, ctx->d_t, "cosine");
    if (s != FKD_OK) {
        cosine_free(p);
        return s;
    }
    *state = p;
    return FKD_OK;
}

static fkd_status cosine_forward(void *state, const fkd_distill_inputs *in,
                                 const fkd_distill_outputs *out, double *loss)
{
    fkd__emb_pair *p = state;
    int64_t b = in->batch, d = p->d_s;
    fkd__emb_pair_normalize(p, in->student_emb, in->teacher_emb, b);
    double sum = 0.0;
    float g = -1.0f / (float)b;
#pragma omp parallel for reduction(+ : sum) schedule(static)
    for (int64_t i = 0; i < b; i++) {
        double c = 0.0;
        for (int64_t k = 0; k < d; k++) {
            c += (double)p->s_hat[i * d + k] * p->t_hat[i * d + k];
            p->d_hat[i * d + k] = g * p->t_hat[i * d + k];
        }
        sum += 1.0 - c;
    }
    *loss = sum / (double)b;
    if (out && out->d_student_emb)
        fkd__emb_pair_backward(p, out->d_student_emb, b, out->grad_scale);
    return FKD_OK;
}

const fkd_distill_method fkd__distill_cosine = {
    .name = "cosine",
    .summary = "mean of 1 - cos(student embedding, teacher embedding)",
    .needs = FKD_DISTILL_NEED_STUDENT_EMB | FKD_DISTILL_NEED_TEACHER_EMB,
    .create = cosine_create,
    .forward = cosine_forward,
    .free = cosine_free,
};
