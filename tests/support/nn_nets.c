#include "nn_nets.h"

fkd_value fkd_test_iresnet_block(fkd_graph *g, fkd_value x, int out_channels)
{
    int c = out_channels;
    fkd_value a = fkd_graph_batchnorm(g, "bn1", x, 1e-5f, 0.1f);
    a = fkd_graph_conv(g, "conv1", a, c, 3, 1, 1, 1, false);
    a = fkd_graph_batchnorm(g, "bn2", a, 1e-5f, 0.1f);
    a = fkd_graph_prelu(g, "prelu", a);
    a = fkd_graph_conv(g, "conv2", a, c, 3, 2, 1, 1, false);
    a = fkd_graph_batchnorm(g, "bn3", a, 1e-5f, 0.1f);
    fkd_value d = fkd_graph_conv(g, "down", x, c, 1, 2, 0, 1, false);
    d = fkd_graph_batchnorm(g, "down_bn", d, 1e-5f, 0.1f);
    return fkd_graph_add(g, "add", a, d);
}
