/* Graph inputs: plain NCHW buffers filled by fkd_graph_set_input(). Consumers that want
 * another layout reorder on their side. */
#include <stdlib.h>

#include "nn/op.h"

fkd_value fkd_graph_input(fkd_graph *g, const char *name, int channels, int height, int width)
{
    fkd_status st = fkd__check_inputs(g, FKD__OP_INPUT, name, NULL, 0);
    if (st != FKD_OK) return st;
    if (channels < 1 || height < 1 || width < 1)
        return FKD_FAIL(FKD_ERR_ARG, "graph: input '%s': shape %dx%dx%d is empty", name, channels,
                        height, width);
    const int64_t dims[4] = {g->cfg.batch, channels, height, width};
    return fkd__node_add(g, FKD__OP_INPUT, name, NULL, 0, NULL, 4, dims);
}

static fkd_status input_build(fkd_graph *g, fkd__node *n)
{
    /* Inputs stay fp32 (set_input copies the caller's array); a bf16 consumer reorders. */
    const fkd_md *plain;
    const fkd__value *v = &g->values[n->output];
    FKD_TRY(fkd_shim_md_plain(g->shim, &plain, v->ndims, v->dims, FKD_DT_F32));
    return fkd__value_alloc(g, n->output, plain);
}

const fkd__op fkd__op_input = {.build = input_build};
