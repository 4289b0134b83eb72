/* Test support: small networks built on the nn graph API, shared by the nn tests. */
#ifndef FKD_TESTS_NN_NETS_H
#define FKD_TESTS_NN_NETS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nn/graph.h"

/* An IResNet basic block with a stride-2 downsample (arcface_torch's order):
 *   bn1 → conv1 3×3 → bn2 → prelu → conv2 3×3 s2 → bn3,  + down 1×1 s2 → down_bn,  add.
 * Returns the sum (negative status on a build error). */
fkd_value fkd_test_iresnet_block(fkd_graph *g, fkd_value x, int out_channels);

/* Normalised error ‖a − b‖ / ‖b‖ in double (‖a − b‖ when b is zero). */
double fkd_test_rel_err(const float *a, const float *b, size_t n);

/* n floats drawn uniformly from [lo, hi) by fkd_rng(seed, stream), malloc'ed (the
 * caller frees); NULL when out of memory. */
float *fkd_test_uniform(size_t n, uint64_t seed, uint64_t stream, double lo, double hi);

/* Largest error max |a − b| / max |b| in double (max |a − b| when b is zero). */
double fkd_test_max_rel(const float *a, const float *b, size_t n);

/* One forward from the plain batch x into input `input` and one backward from dL/dout =
 * dy (after zero_grad): out into y, dL/d(input) into dx. */
fkd_status fkd_test_forward_backward(fkd_graph *g, const char *input, fkd_value out, const float *x,
                                     const float *dy, float *y, float *dx);

/* Whether the kernels node `node` runs (fkd_graph_kernels) mention `needle`; false also
 * when the node is unknown. */
bool fkd_test_kernels_mention(fkd_graph *g, const char *node, const char *needle);

#endif
