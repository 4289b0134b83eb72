/* Backward-weights of a global depthwise convolution — groups = channels, a K×K kernel as
 * large as its unpadded input, so one output pixel per channel (MobileFaceNet's GDC: 512
 * channels, 7×7 → 1×1) — as facekd's host pass. Internal to lib/nn.
 *
 * Why: oneDNN 2.6 has no jit depthwise backward-weights for a kernel that covers the input;
 * it picks x64:gemm:jit on plain layouts (im2col per channel, four reorders): ~8 ms of a
 * ~350 ms MobileFaceNet bf16 training step (batch 32, 2 threads) for 0.8 M multiply-adds.
 * Here it is one pass over x and dy:
 *   dW[c][k] += Σ_n dy[n][c] · x[n][c][k]      (k = kh·K + kw)
 * with x nChw16c and dy (N, C, 1, 1) nChw16c (= plain (N, C)), fp32 or bf16, fp32 sums,
 * each (channel block, k) on one thread (the result does not depend on the thread count). */
#ifndef FKD_NN_CONV_GLOBAL_DW_H
#define FKD_NN_CONV_GLOBAL_DW_H

#include "nn/op.h"

typedef struct fkd__global_dw fkd__global_dw;

/* True for a depthwise convolution (groups = in = out channels, a multiple of 16) without
 * bias whose unpadded kernel covers its h×w input. */
bool fkd__global_dw_fits(int channels, int groups, int out_c, int kernel, int padding, int64_t h, int64_t w,
                         bool bias);
/* Appends to `steps` the pass dW += Σ dy · x for node n (its weight parameter, plain
 * (C, 1, 1, K, K)) from x_saved (the forward's input as backward reads it):
 *   [reorder x to nChw16c] [reorder dy] global_dw_bwd_weights:host, dW +=
 * *out (owned by the caller, freed with fkd__global_dw_free, also when this fails). */
fkd_status fkd__global_dw_build(fkd_graph *g, fkd__node *n, fkd__steps *steps, fkd_mem *x_saved,
                                fkd__global_dw **out);
void fkd__global_dw_free(fkd__global_dw *c);

#endif
