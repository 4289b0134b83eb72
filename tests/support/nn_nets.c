#include "nn_nets.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "core/status.h"

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

double fkd_test_rel_err(const float *a, const float *b, size_t n)
{
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        s += (double)b[i] * b[i];
    }
    return sqrt(d / (s > 0 ? s : 1));
}

float *fkd_test_uniform(size_t n, uint64_t seed, uint64_t stream, double lo, double hi)
{
    float *a = malloc(n * sizeof *a);
    if (!a) return NULL;
    fkd_rng rng;
    fkd_rng_seed(&rng, seed, stream);
    for (size_t i = 0; i < n; i++) a[i] = (float)(lo + (hi - lo) * fkd_rng_uniform(&rng));
    return a;
}

double fkd_test_max_rel(const float *a, const float *b, size_t n)
{
    double d = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)b[i]));
    }
    return m > 0 ? d / m : d;
}

fkd_status fkd_test_forward_backward(fkd_graph *g, const char *input, fkd_value out, const float *x,
                                     const float *dy, float *y, float *dx)
{
    FKD_TRY(fkd_graph_set_input(g, input, x));
    FKD_TRY(fkd_graph_forward(g));
    FKD_TRY(fkd_graph_read(g, out, y));
    FKD_TRY(fkd_graph_zero_grad(g));
    FKD_TRY(fkd_graph_add_grad(g, out, dy));
    FKD_TRY(fkd_graph_backward(g));
    return fkd_graph_read_input_grad(g, input, dx);
}

bool fkd_test_kernels_mention(fkd_graph *g, const char *node, const char *needle)
{
    char buf[1024];
    return fkd_graph_kernels(g, node, buf, sizeof buf) == FKD_OK && strstr(buf, needle) != NULL;
}
