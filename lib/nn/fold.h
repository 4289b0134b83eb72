/* Batch-norm folding arithmetic, shared by the engine's INFER graphs (lib/nn/fuse.c),
 * ONNX export (batch norm folded into the exported Conv/Gemm) and ONNX import (scale-shift
 * nodes folded into the layer before them). One copy of the formulas:
 *
 *   eval-mode batch norm  y = γ (x − μ) / sqrt(σ² + eps) + β  =  s·x + t,
 *     s = γ / sqrt(σ² + eps),  t = β − μ·s                         (fkd_bn_scale_shift)
 *   folded into y = W x + b before it (per output channel o):
 *     W'[o, :] = s[o]·W[o, :],  b'[o] = s[o]·b[o] + t[o]            (fkd_fold_scale_shift)
 *
 * Weights are in PyTorch's plain layout: `out` rows of `per` values (conv (O, I/G, K, K):
 * per = I/G·K·K; linear (O, I): per = I; a per-channel scale: per = 1).
 */
#ifndef FKD_NN_FOLD_H
#define FKD_NN_FOLD_H

#include <stdint.h>

/* s and t (C values each) from a batch norm's weight γ, bias β, running mean μ and
 * variance σ² (C values each) and eps > 0; computed in double, stored as float. */
void fkd_bn_scale_shift(const float *gamma, const float *beta, const float *mean, const float *var, float eps,
                        int64_t channels, float *scale, float *shift);

/* w_out = scale·w (row o scaled by scale[o]), b_out = scale·b + shift (b NULL: zero bias).
 * In place when w_out == w and b_out == b. */
void fkd_fold_scale_shift(const float *w, const float *b, int64_t out, int64_t per, const float *scale,
                          const float *shift, float *w_out, float *b_out);

#endif
