/* Flatten (N, C, H, W) to (N, C·H·W) in PyTorch's order (c, h, w), as torch.flatten(x, 1).
 * The output is plain (N, F); it is written through a plain (N, C, H, W) view of the same
 * buffer, so the reorder out of a blocked layout is the whole op.
 * Forward: y = reorder(x). Backward: dx += reorder(dy). A 2-D input is copied. */
#include "nn/op.h"

fkd_value fkd_graph_flatten(fkd_graph *g, const char *name, fkd_value x)
{
    fkd_status st = fkd__check_inputs(g, FKD__OP_FLATTEN, name, &x, 1);
    if (st != FKD_OK) return st;
    const fkd__value *v = &g->values[x];
    int64_t f = 1;
    for (int i = 1; i < v->ndims; i++) f *= v->dims[i];
    const int64_t dims[2] = {v->dims[0], f};
    return fkd__node_add(g, FKD__OP_FLATTEN, name, &x, 1, NULL, 2, dims);
}

static fkd_status flatten_build(fkd_graph *g, fkd__node *n)
{
    fkd__value *x = &g->values[n->inputs[0]], *y = &g->values[n->output];
    const fkd_md *plain, *view_md;
    FKD_TRY(fkd__value_plain_md(g, n->output, &plain));
    FKD_TRY(fkd__value_alloc(g, n->output, plain));
    FKD_TRY(fkd_shim_md_reshape(g->shim, &view_md, plain, x->ndims, x->dims));
    fkd_mem *view, *grad_view;
    fkd_prim *p;
    FKD_TRY(fkd__mem_view(g, &view, view_md, y->data));
    FKD_TRY(fkd_shim_reorder(g->shim, &p, x->data, view, false));
    FKD_TRY(fkd__steps_add(&n->fwd, p));
    if (!y->grad) return FKD_OK;
    FKD_TRY(fkd__mem_view(g, &grad_view, view_md, y->grad));
    return fkd__accumulate(g, &n->bwd, grad_view, x->grad);
}

const fkd__op fkd__op_flatten = {.build = flatten_build};
