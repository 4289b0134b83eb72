/* fitnet — Romero, Ballas, Kahou, Chassang, Gatta, Bengio, "FitNets: Hints for Thin Deep
 * Nets" (ICLR 2015): the student's intermediate representation (the "guided" layer) is
 * regressed onto the teacher's (the "hint") through a learned regressor.
 *
 * With x_i the student tap of sample i (c_s, h, w), t_i the teacher tap (c_t, h, w) and
 * r a per-pixel linear map c_s → c_t with bias (a 1×1 convolution; the face-KD
 * adaptations use 1×1 conv + BN, whose affine part this bias covers):
 *     L = 1/(b·c_t·h·w) Σ_i ‖r(x_i) − t_i‖²          (torch's MSELoss, mean reduction)
 *     ∂L/∂r(x_i) = 2 (r(x_i) − t_i) / (b·c_t·h·w), then through r into x and into r's
 *     weight and bias (the regressor is trained with the student; fkd_distiller_params).
 * The paper's regressor is convolutional so that it stays small; where the spatial sizes
 * differ it would need a stride: here they must match (choose taps accordingly), and
 * create fails naming both taps and their shapes. With equal channel counts there is no
 * regressor unless `adapter: true` (TFace's HintLoss compares the tensors directly).
 * The paper trains the hint stage first, then the whole network with KD; in a recipe the
 * fitnet term runs beside the head loss for the whole run, as in the CRD benchmark.
 *
 * Defaults: weight 100 (default_weight) — the FitNet coefficient β = 100 of RepDistiller
 * and the CRD benchmark, for feature maps whose mean squared error is small; the
 * embedding (no tap) works too, usually with a smaller recipe weight. The regressor
 * starts like a fresh torch Conv2d (uniform ±1/√c_s), seeded by the context's seed.
 *
 * Parameters: tap, student_tap, teacher_tap (names, none = embedding), adapter (bool,
 * true when the channel counts differ).
 */
#include <stdlib.h>

#include "distill/adapter.h"
#include "distill/distiller.h"

static void fitnet_free(void *state)
{
    fkd__mapped_pair *m = state;
    if (!m) return;
    fkd__mapped_pair_free(m);
    free(m);
}

static fkd_status fitnet_create(void **state, fkd_distill_needs *needs,
                                fkd_distill_options *opts, const fkd_distill_context *ctx)
{
    fkd__mapped_pair *m = calloc(1, sizeof *m);
    if (!m) return fkd_distill_options_fail(opts, FKD_ERR_NOMEM, "out of memory");
    fkd_status r = fkd__mapped_pair_init(m, needs, opts, ctx, "fitnet");
    if (r != FKD_OK) {
        fitnet_free(m);
        return r;
    }
    *state = m;
    return FKD_OK;
}

static fkd_status fitnet_forward(void *state, const fkd_distill_inputs *in,
                                 const fkd_distill_outputs *out, double *loss)
{
    fkd__mapped_pair *m = state;
    int64_t n = in->batch * m->f;
    const float *y, *t = fkd__mapped_pair_teacher(m, in);
    FKD_TRY(fkd__mapped_pair_forward(m, in, &y, in->batch));
    double sum = 0.0;
    float g = 2.0f / (float)n;
#pragma omp parallel for reduction(+ : sum) schedule(static)
    for (int64_t k = 0; k < n; k++) {
        float e = y[k] - t[k];
        sum += (double)e * e;
        m->dy[k] = g * e;
    }
    *loss = sum / (double)n;
    return fkd__mapped_pair_backward(m, in, out, in->batch);
}

static int fitnet_params(void *state, fkd_param **params)
{
    return fkd__mapped_pair_params(state, params);
}

const fkd_distill_method fkd__distill_fitnet = {
    .name = "fitnet",
    .summary = "FitNets hint: MSE of a 1x1 regressor(student tap) against the teacher tap",
    .needs = FKD_DISTILL_NEED_STUDENT_EMB | FKD_DISTILL_NEED_TEACHER_EMB,
    .create = fitnet_create,
    .forward = fitnet_forward,
    .free = fitnet_free,
    .default_weight = 100.0,
    .params = fitnet_params,
};
