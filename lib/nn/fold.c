/* Batch-norm folding arithmetic (see fold.h). */
#include "nn/fold.h"

#include <math.h>

void fkd_bn_scale_shift(const float *gamma, const float *beta, const float *mean, const float *var, float eps,
                        int64_t channels, float *scale, float *shift)
{
    for (int64_t c = 0; c < channels; c++) {
        double s = gamma[c] / sqrt((double)var[c] + eps);
        scale[c] = (float)s;
        shift[c] = (float)(beta[c] - mean[c] * s);
    }
}

void fkd_fold_scale_shift(const float *w, const float *b, int64_t out, int64_t per, const float *scale,
                          const float *shift, float *w_out, float *b_out)
{
    /* An IResNet-50 folds 43 M weights once per weight change: worth the threads. */
#pragma omp parallel for schedule(static) if (out * per >= (1 << 18))
    for (int64_t o = 0; o < out; o++) {
        const float *src = w + o * per;
        float *dst = w_out + o * per;
        for (int64_t k = 0; k < per; k++) dst[k] = src[k] * scale[o];
        b_out[o] = (b ? b[o] : 0.0f) * scale[o] + shift[o];
    }
}
