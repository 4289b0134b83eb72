/* Test support: small networks built on the nn graph API, shared by the nn tests. */
#ifndef FKD_TESTS_NN_NETS_H
#define FKD_TESTS_NN_NETS_H

#include "nn/graph.h"

/* An IResNet basic block with a stride-2 downsample (arcface_torch's order):
 *   bn1 → conv1 3×3 → bn2 → prelu → conv2 3×3 s2 → bn3,  + down 1×1 s2 → down_bn,  add.
 * Returns the sum (negative status on a build error). */
fkd_value fkd_test_iresnet_block(fkd_graph *g, fkd_value x, int out_channels);

#endif
