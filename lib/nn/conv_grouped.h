/* Grouped convolution with 2, 4 or 8 channels per group on nChw16c data: facekd's own
 * kernels (fp32 or bf16 data, fp32 sums and weights), used by op_conv.c where oneDNN 2.6 has only its im2col gemm path
 * (lib/nn/conv_grouped.c explains the lane arithmetic). Internal to lib/nn. */
#ifndef FKD_NN_CONV_GROUPED_H
#define FKD_NN_CONV_GROUPED_H

#include "nn/op.h"

typedef struct fkd__grouped fkd__grouped;

/* True when the kernels handle this convolution: in = out channels, a multiple of 16, and
 * 2, 4 or 8 channels per group. */
bool fkd__conv_grouped_fits(int in_c, int out_c, int groups);
/* build() for such a node: x, y and their gradients in nChw16c of the graph's element
 * type, weights plain fp32 (G, k, k, K, K), steps
 *   forward:  [reorder x] grouped_conv:host
 *   backward: grouped_conv_bwd:host (dx, dW, db) [+ dx accumulation]
 * *out (owned by the caller, freed with fkd__conv_grouped_free, also when this fails). */
fkd_status fkd__conv_grouped_build(fkd_graph *g, fkd__node *n, int kernel, int stride, int padding,
                                   int groups, fkd__grouped **out);
void fkd__conv_grouped_free(fkd__grouped *c);
/* Tests: with `on`, graphs built from now on run the generic kernels ("grouped_conv:host")
 * even where the AVX-512 ones ("grouped_conv:avx512") fit, so both paths can be compared on
 * one machine. Process-wide, not thread-safe: call it between builds. */
void fkd__conv_grouped_force_generic(bool on);

#endif
