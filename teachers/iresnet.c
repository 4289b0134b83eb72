#include "teachers/iresnet.h"

#include <stdio.h>

#include "nn/arch.h"

/* One IBasicBlock named "layerS.B"; its output value is the add node "layerS.B". */
static fkd_status basic_block(fkd_graph *g, const char *p, fkd_value x, int in_c, int out_c, int stride,
                              fkd_value *out)
{
    char n[64];
    fkd_value y, identity = x;
    snprintf(n, sizeof n, "%s.bn1", p);
    FKD_VALUE_TRY(y, fkd_graph_batchnorm(g, n, x, FKD_ARCH_BN_EPS, FKD_ARCH_BN_MOMENTUM));
    snprintf(n, sizeof n, "%s.conv1", p);
    FKD_VALUE_TRY(y, fkd_graph_conv(g, n, y, out_c, 3, 1, 1, 1, false));
    snprintf(n, sizeof n, "%s.bn2", p);
    FKD_VALUE_TRY(y, fkd_graph_batchnorm(g, n, y, FKD_ARCH_BN_EPS, FKD_ARCH_BN_MOMENTUM));
    snprintf(n, sizeof n, "%s.prelu", p);
    FKD_VALUE_TRY(y, fkd_graph_prelu(g, n, y));
    snprintf(n, sizeof n, "%s.conv2", p);
    FKD_VALUE_TRY(y, fkd_graph_conv(g, n, y, out_c, 3, stride, 1, 1, false));
    snprintf(n, sizeof n, "%s.bn3", p);
    FKD_VALUE_TRY(y, fkd_graph_batchnorm(g, n, y, FKD_ARCH_BN_EPS, FKD_ARCH_BN_MOMENTUM));
    if (stride != 1 || in_c != out_c) {
        snprintf(n, sizeof n, "%s.downsample.0", p);
        FKD_VALUE_TRY(identity, fkd_graph_conv(g, n, x, out_c, 1, stride, 0, 1, false));
        snprintf(n, sizeof n, "%s.downsample.1", p);
        FKD_VALUE_TRY(identity, fkd_graph_batchnorm(g, n, identity, FKD_ARCH_BN_EPS, FKD_ARCH_BN_MOMENTUM));
    }
    FKD_VALUE_TRY(*out, fkd_graph_add(g, p, y, identity));
    return FKD_OK;
}

fkd_status fkd_iresnet_build(fkd_graph *g, const fkd_iresnet_config *cfg, fkd_value input, fkd_value *embedding)
{
    if (cfg->width < 1 || cfg->num_features < 1 || cfg->dropout < 0 || cfg->dropout >= 1)
        return FKD_FAIL(FKD_ERR_ARG, "iresnet: width %d, num_features %d, dropout %g out of range", cfg->width,
                        cfg->num_features, cfg->dropout);
    fkd_value x;
    FKD_VALUE_TRY(x, fkd_graph_conv(g, "conv1", input, cfg->width, 3, 1, 1, 1, false));
    FKD_VALUE_TRY(x, fkd_graph_batchnorm(g, "bn1", x, FKD_ARCH_BN_EPS, FKD_ARCH_BN_MOMENTUM));
    FKD_VALUE_TRY(x, fkd_graph_prelu(g, "prelu", x));
    int in_c = cfg->width;
    for (int s = 0; s < 4; s++) {
        if (cfg->layers[s] < 1) return FKD_FAIL(FKD_ERR_ARG, "iresnet: layer%d needs at least one block", s + 1);
        int out_c = cfg->width << s;
        for (int b = 0; b < cfg->layers[s]; b++) {
            char p[32];
            snprintf(p, sizeof p, "layer%d.%d", s + 1, b);
            FKD_TRY(basic_block(g, p, x, in_c, out_c, b == 0 ? 2 : 1, &x));
            in_c = out_c;
        }
        char tap[16];
        snprintf(tap, sizeof tap, "stage%d", s + 1);
        FKD_TRY(fkd_graph_tap(g, tap, x));
    }
    FKD_VALUE_TRY(x, fkd_graph_batchnorm(g, "bn2", x, FKD_ARCH_BN_EPS, FKD_ARCH_BN_MOMENTUM));
    FKD_VALUE_TRY(x, fkd_graph_flatten(g, "flatten", x));
    if (cfg->dropout > 0) FKD_VALUE_TRY(x, fkd_graph_dropout(g, "dropout", x, cfg->dropout));
    FKD_VALUE_TRY(x, fkd_graph_linear(g, "fc", x, cfg->num_features, true));
    FKD_VALUE_TRY(x, fkd_graph_batchnorm(g, "features", x, FKD_ARCH_BN_EPS, FKD_ARCH_BN_MOMENTUM));
    /* arcface_torch sets features.weight to 1 and never trains it. */
    FKD_TRY(fkd_graph_freeze(g, "features.weight"));
    FKD_TRY(fkd_graph_tap(g, "embedding", x));
    *embedding = x;
    return FKD_OK;
}
