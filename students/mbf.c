#include "students/mbf.h"

#include <stdio.h>

#include "nn/arch.h"

/* Conv ("P.layers.0") · BN ("P.layers.1") [· PReLU ("P.layers.2")]. */
static fkd_status conv_block(fkd_graph *g, const char *p, fkd_value x, int out_c, int kernel, int stride,
                             int padding, int groups, bool prelu, fkd_value *out)
{
    char n[96];
    snprintf(n, sizeof n, "%s.layers.0", p);
    FKD_VALUE_TRY(x, fkd_graph_conv(g, n, x, out_c, kernel, stride, padding, groups, false));
    snprintf(n, sizeof n, "%s.layers.1", p);
    FKD_VALUE_TRY(x, fkd_graph_batchnorm(g, n, x, FKD_ARCH_BN_EPS, FKD_ARCH_BN_MOMENTUM));
    if (prelu) {
        snprintf(n, sizeof n, "%s.layers.2", p);
        FKD_VALUE_TRY(x, fkd_graph_prelu(g, n, x));
    }
    *out = x;
    return FKD_OK;
}

/* Expand 1×1 → depthwise 3×3/stride → project 1×1 (linear), + x when residual; the add
 * node carries the block's own name "P". */
static fkd_status depthwise(fkd_graph *g, const char *p, fkd_value x, int out_c, int expand, int stride,
                            bool residual, fkd_value *out)
{
    char n[96];
    fkd_value y;
    snprintf(n, sizeof n, "%s.layers.0", p);
    FKD_TRY(conv_block(g, n, x, expand, 1, 1, 0, 1, true, &y));
    snprintf(n, sizeof n, "%s.layers.1", p);
    FKD_TRY(conv_block(g, n, y, expand, 3, stride, 1, expand, true, &y));
    snprintf(n, sizeof n, "%s.layers.2", p);
    FKD_TRY(conv_block(g, n, y, out_c, 1, 1, 0, 1, false, &y));
    if (residual) FKD_VALUE_TRY(y, fkd_graph_add(g, p, x, y));
    *out = y;
    return FKD_OK;
}

/* `blocks` residual DepthWise blocks "P.layers.B" on c channels. */
static fkd_status residual(fkd_graph *g, const char *p, fkd_value x, int c, int blocks, int expand, fkd_value *out)
{
    for (int b = 0; b < blocks; b++) {
        char n[64];
        snprintf(n, sizeof n, "%s.layers.%d", p, b);
        FKD_TRY(depthwise(g, n, x, c, expand, 1, true, &x));
    }
    *out = x;
    return FKD_OK;
}

fkd_status fkd_mbf_build(fkd_graph *g, const fkd_mbf_config *cfg, fkd_value input, fkd_value *embedding)
{
    const int w = cfg->width, c1 = w * cfg->scale, c2 = 2 * w * cfg->scale;
    if (w < 1 || cfg->scale < 1 || cfg->num_features < 1)
        return FKD_FAIL(FKD_ERR_ARG, "mbf: width %d, scale %d, num_features %d out of range", w, cfg->scale,
                        cfg->num_features);
    for (int s = 0; s < 4; s++)
        if (cfg->blocks[s] < 1) return FKD_FAIL(FKD_ERR_ARG, "mbf: stage %d needs at least one block", s + 1);
    fkd_value x;
    FKD_TRY(conv_block(g, "layers.0", input, c1, 3, 2, 1, 1, true, &x));
    if (cfg->blocks[0] == 1)
        FKD_TRY(conv_block(g, "layers.1", x, c1, 3, 1, 1, w, true, &x));
    else
        FKD_TRY(residual(g, "layers.1", x, c1, cfg->blocks[0], 2 * w, &x));
    FKD_TRY(fkd_graph_tap(g, "stage1", x));
    FKD_TRY(depthwise(g, "layers.2", x, c1, 2 * w, 2, false, &x));
    FKD_TRY(residual(g, "layers.3", x, c1, cfg->blocks[1], 2 * w, &x));
    FKD_TRY(fkd_graph_tap(g, "stage2", x));
    FKD_TRY(depthwise(g, "layers.4", x, c2, 4 * w, 2, false, &x));
    FKD_TRY(residual(g, "layers.5", x, c2, cfg->blocks[2], 4 * w, &x));
    FKD_TRY(fkd_graph_tap(g, "stage3", x));
    FKD_TRY(depthwise(g, "layers.6", x, c2, 8 * w, 2, false, &x));
    FKD_TRY(residual(g, "layers.7", x, c2, cfg->blocks[3], 4 * w, &x));
    FKD_TRY(conv_block(g, "conv_sep", x, 8 * w, 1, 1, 0, 1, true, &x));
    FKD_TRY(fkd_graph_tap(g, "stage4", x));
    /* GDC head: a 7×7 depthwise "global" conv instead of pooling, then the embedding. */
    FKD_TRY(conv_block(g, "features.layers.0", x, 8 * w, 7, 1, 0, 8 * w, false, &x));
    FKD_VALUE_TRY(x, fkd_graph_flatten(g, "features.layers.1", x));
    FKD_VALUE_TRY(x, fkd_graph_linear(g, "features.layers.2", x, cfg->num_features, false));
    FKD_VALUE_TRY(x, fkd_graph_batchnorm(g, "features.layers.3", x, FKD_ARCH_BN_EPS, FKD_ARCH_BN_MOMENTUM));
    FKD_TRY(fkd_graph_tap(g, "embedding", x));
    *embedding = x;
    return FKD_OK;
}
