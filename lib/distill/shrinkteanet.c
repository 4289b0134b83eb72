/* shrinkteanet — Duong, Quach, Le, Nguyen, Luu, "ShrinkTeaNet: Million-scale Lightweight
 * Face Recognition via Shrinking Teacher-Student Networks" (arXiv:1905.10620, 2019): the
 * angular distillation loss. Only the direction of the teacher's features is transferred,
 * not their magnitude, which a small student cannot reproduce and a cosine-based
 * verification never looks at.
 *
 * With x_i the student's tensor of sample i (the embedding, or a stage feature map mapped
 * by an adapter A when the channel counts differ), t_i the teacher's, both flattened per
 * sample to (f):
 *     L = 1/b Σ_i (1 − cos(A(x_i), t_i)),   cos(u, v) = u·v / (‖u‖ ‖v‖)
 *     ∂L/∂û_i = −t̂_i / b, then through the normalisation of u_i = A(x_i) and the adapter.
 * The teacher side has no gradient. The adapter (a 1×1 convolution c_s → c_t with bias,
 * the paper's "adapter" layers that bring the student's intermediate features to the
 * teacher's width) is trained with the student: its parameters are the method's
 * (fkd_distiller_params), and the trainer adds them to the optimizer. The paper applies
 * the loss at several levels (intermediate features and the embedding): a recipe lists
 * one shrinkteanet entry per level.
 *
 * Defaults: the loss has no hyperparameter of its own (the paper weighs levels equally):
 * without taps it reads the embeddings (an adapter when d_s ≠ d_t). The adapter starts
 * like a fresh torch Conv2d (uniform ±1/√c_s), seeded by the context's seed.
 *
 * Parameters: tap, student_tap, teacher_tap (names, none = embedding), adapter (bool,
 * true when the channel counts differ).
 */
#include <stdlib.h>

#include "distill/adapter.h"
#include "distill/distiller.h"
#include "distill/ops.h"

typedef struct {
    fkd__mapped_pair map;
    fkd__emb_pair unit; /* both sides normalised per sample, width f */
} stn_state;

static void stn_free(void *state)
{
    stn_state *st = state;
    if (!st) return;
    fkd__mapped_pair_free(&st->map);
    fkd__emb_pair_free(&st->unit);
    free(st);
}

static fkd_status stn_create(void **state, fkd_distill_needs *needs, fkd_distill_options *opts,
                             const fkd_distill_context *ctx)
{
    stn_state *st = calloc(1, sizeof *st);
    if (!st) return fkd_distill_options_fail(opts, FKD_ERR_NOMEM, "out of memory");
    fkd_status r = fkd__mapped_pair_init(&st->map, needs, opts, ctx, "shrinkteanet");
    if (r == FKD_OK)
        r = fkd__emb_pair_init(&st->unit, ctx->max_batch, st->map.f, st->map.f, "shrinkteanet");
    if (r != FKD_OK) {
        stn_free(st);
        return r;
    }
    *state = st;
    return FKD_OK;
}

static fkd_status stn_forward(void *state, const fkd_distill_inputs *in,
                              const fkd_distill_outputs *out, double *loss)
{
    stn_state *st = state;
    fkd__emb_pair *u = &st->unit;
    int64_t b = in->batch, f = st->map.f;
    const float *x;
    FKD_TRY(fkd__mapped_pair_forward(&st->map, in, &x, b));
    fkd__emb_pair_normalize(u, x, fkd__mapped_pair_teacher(&st->map, in), b);
    double sum = 0.0;
    float g = -1.0f / (float)b;
#pragma omp parallel for reduction(+ : sum) schedule(static)
    for (int64_t i = 0; i < b; i++) {
        const float *ui = u->s_hat + i * f, *ti = u->t_hat + i * f;
        double dot = 0.0;
        for (int64_t k = 0; k < f; k++) {
            dot += (double)ui[k] * ti[k];
            u->d_hat[i * f + k] = g * ti[k];
        }
        sum += 1.0 - dot;
    }
    *loss = sum / (double)b;
    if (!out) return FKD_OK;
    fkd__emb_pair_backward(u, st->map.dy, b, 1.0f);
    return fkd__mapped_pair_backward(&st->map, in, out, b);
}

static int stn_params(void *state, fkd_param **params)
{
    return fkd__mapped_pair_params(&((stn_state *)state)->map, params);
}

const fkd_distill_method fkd__distill_shrinkteanet = {
    .name = "shrinkteanet",
    .summary = "ShrinkTeaNet angular loss: mean 1 - cos(adapter(student), teacher), "
               "embedding or feature taps",
    .needs = FKD_DISTILL_NEED_STUDENT_EMB | FKD_DISTILL_NEED_TEACHER_EMB,
    .create = stn_create,
    .forward = stn_forward,
    .free = stn_free,
    .params = stn_params,
};
