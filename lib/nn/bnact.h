/* Batch norm followed by PReLU in one pass, training graphs (facekd's own kernels on
 * oneDNN's nChw16c layout, fp32 or bf16 data; op_batchnorm.c wires them into a graph).
 *
 * Shapes: x, y, dy, dx (N, C, H, W) in nChw16c, C a multiple of 16; per-channel arrays (C).
 *   x̂ = (x − μ)/σ,  σ = sqrt(σ² + eps),  z = γ x̂ + β,  y = z if z > 0 else α z.
 * z is never stored: two oneDNN passes (batch norm, then PReLU) would write it and read it
 * back in forward, recompute and backward; MobileFaceNet has 33 such pairs, and oneDNN's
 * batch norm and PReLU took ~30 % of a bf16 training step (docs/PERFORMANCE.md).
 *
 * AVX-512 only (fkd__bnact_available). Every sum is fp32 per (image, channel block) plane and double across planes; bf16 data
 * widens exactly and results round once to nearest even. Reductions run one channel block
 * per thread in a fixed order: the results do not depend on the thread count. */
#ifndef FKD_NN_BNACT_H
#define FKD_NN_BNACT_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    int64_t n, c, hw; /* batch, channels (a multiple of 16), H·W */
    bool bf16;        /* x, y, dy, dx bf16, else fp32 */
} fkd__bnact_shape;

/* The statistics and parameters a pass reads, each (C). */
typedef struct {
    const float *mean, *var;   /* μ, σ² (biased): the batch's or the running ones */
    const float *gamma, *beta; /* γ, β */
    const float *alpha;        /* α, PReLU's slope for z ≤ 0 */
    float eps;
} fkd__bnact_params;

/* Whether this CPU runs these passes (AVX-512); without it the graph keeps oneDNN's two ops. */
bool fkd__bnact_available(void);

/* Batch mean and biased variance per channel over N·H·W values, from sums of x − x₀(c)
 * (x₀ the channel's first value: no cancellation when |μ| ≫ σ). */
void fkd__bnact_stats(const fkd__bnact_shape *s, const void *x, float *mean, float *var);

/* y = prelu(γ x̂ + β, α). */
void fkd__bnact_forward(const fkd__bnact_shape *s, const fkd__bnact_params *p, const void *x, void *y);

/* With dz = dy · (z > 0 ? 1 : α), the per-channel sums (3C doubles):
 *   sums[c] = Σ dz (dβ),  sums[C + c] = Σ dz x̂ (dγ),  sums[2C + c] = Σ_{z ≤ 0} dy z (dα). */
void fkd__bnact_backward_sums(const fkd__bnact_shape *s, const fkd__bnact_params *p, const void *x,
                              const void *dy, double *sums);

/* dx = γ/σ (dz − mean_dz − x̂ mean_dzx) written whole: mean_dz = Σ dz / M and mean_dzx =
 * Σ dz x̂ / M over the M values the statistics came from (batch statistics), or zero
 * (constant statistics: eval mode). */
void fkd__bnact_backward_dx(const fkd__bnact_shape *s, const fkd__bnact_params *p, const void *x,
                            const void *dy, const float *mean_dz, const float *mean_dzx, void *dx);

#endif
