/* Global depthwise backward-weights (conv_global_dw.h says why and what). */
#include "nn/conv_global_dw.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct fkd__global_dw {
    int n, blocks, taps; /* batch, channel blocks of 16, K·K */
    bool bf16;           /* x and dy bf16 (bf16 graphs), else fp32 */
    fkd_mem *x, *dy, *dw;
};

bool fkd__global_dw_fits(int channels, int groups, int out_c, int kernel, int padding, int64_t h, int64_t w,
                         bool bias)
{
    return groups > 1 && groups == channels && out_c == channels && channels % 16 == 0 && padding == 0 &&
           kernel == h && kernel == w && !bias;
}

/* Element i of an fp32 or bf16 array as fp32 (a bf16 is the top half of its fp32). */
static inline float load(const void *a, size_t i, bool bf16)
{
    if (!bf16) return ((const float *)a)[i];
    uint32_t bits = (uint32_t)((const uint16_t *)a)[i] << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline __attribute__((always_inline)) void weights_block(const fkd__global_dw *c, const void *x,
                                                                const void *dy, float *dw, int cb, bool bf16)
{
    size_t channels = (size_t)c->blocks * 16;
    for (int k = 0; k < c->taps; k++) {
        float acc[16] = {0};
        for (int n = 0; n < c->n; n++) {
            size_t xo = (((size_t)n * c->blocks + cb) * c->taps + k) * 16, go = (size_t)n * channels + cb * 16;
            for (int l = 0; l < 16; l++) acc[l] += load(dy, go + l, bf16) * load(x, xo + l, bf16);
        }
        for (int l = 0; l < 16; l++) dw[((size_t)cb * 16 + l) * c->taps + k] = acc[l];
    }
}

/* dw (plain (C, K·K)) = Σ_n dy[n][c] · x[n][c][k]; graph.c adds it to the gradient. */
static fkd_status global_dw_weights(void *ctx)
{
    const fkd__global_dw *c = ctx;
    const void *x = fkd_shim_mem_data(c->x), *dy = fkd_shim_mem_data(c->dy);
    float *dw = fkd_shim_mem_data(c->dw);
#pragma omp parallel for schedule(static)
    for (int cb = 0; cb < c->blocks; cb++) {
        if (c->bf16) weights_block(c, x, dy, dw, cb, true);
        else weights_block(c, x, dy, dw, cb, false);
    }
    return FKD_OK;
}

void fkd__global_dw_free(fkd__global_dw *c)
{
    free(c);
}

fkd_status fkd__global_dw_build(fkd_graph *g, fkd__node *n, fkd__steps *steps, fkd_mem *x_saved,
                                fkd__global_dw **out)
{
    const fkd__value *xv = &g->values[n->inputs[0]];
    fkd__global_dw *c = malloc(sizeof *c);
    if (!c) return FKD_FAIL(FKD_ERR_NOMEM, "conv '%s': out of memory", n->name);
    *out = c;
    *c = (fkd__global_dw){.n = (int)xv->dims[0], .blocks = (int)xv->dims[1] / 16,
                          .taps = (int)(xv->dims[2] * xv->dims[3]), .bf16 = g->dtype == FKD_DT_BF16};
    const fkd_md *x_md, *dy_md, *dw_md;
    const int64_t dy_dims[4] = {xv->dims[0], xv->dims[1], 1, 1};
    /* The weights as the engine holds a grouped convolution's: (G, O/G, I/G, K, K). */
    const int64_t dw_dims[5] = {xv->dims[1], 1, 1, xv->dims[2], xv->dims[3]};
    FKD_TRY(fkd_shim_md_blocked16(g->shim, &x_md, xv->dims, g->dtype));
    FKD_TRY(fkd_shim_md_blocked16(g->shim, &dy_md, dy_dims, g->dtype));
    FKD_TRY(fkd_shim_md_plain(g->shim, &dw_md, 5, dw_dims, FKD_DT_F32));
    FKD_TRY(fkd__bwd_as(g, n, steps, x_saved, x_md, &c->x));
    FKD_TRY(fkd__grad_as(g, n, steps, n->output, dy_md, &c->dy));
    FKD_TRY(fkd__bwd_temp(g, n, dw_md, &c->dw));
    FKD_TRY(fkd__steps_add_host(steps, global_dw_weights, c, "global_dw_bwd_weights:host"));
    return fkd__accumulate(g, steps, c->dw, g->pimpl[n->first_param].grad);
}
