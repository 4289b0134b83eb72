/* Elementwise sum of two values of the same shape (the residual add).
 *
 * Shapes: a, b, y (N, C, H, W) or (N, F), y in a's layout (b reordered when it differs).
 * Forward: y = a + b. Backward: da += dy, db += dy (twice into one value for y = a + a), at
 * no cost where a's and b's gradients can be dy's buffer (fkd__grad_alias). */
#include <stdio.h>

#include "nn/op.h"

static void shape_str(const fkd__value *v, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "(");
    for (int i = 0; i < v->ndims && n > 0 && (size_t)n < cap; i++)
        n += snprintf(buf + n, cap - (size_t)n, i ? ", %ld" : "%ld", (long)v->dims[i]);
    if (n > 0 && (size_t)n < cap) snprintf(buf + n, cap - (size_t)n, ")");
}

fkd_value fkd_graph_add(fkd_graph *g, const char *name, fkd_value a, fkd_value b)
{
    const int in[2] = {a, b};
    fkd_status st = fkd__check_inputs(g, FKD__OP_ADD, name, in, 2);
    if (st != FKD_OK) return st;
    const fkd__value *va = &g->values[a], *vb = &g->values[b];
    bool same = va->ndims == vb->ndims;
    for (int i = 0; same && i < va->ndims; i++) same = va->dims[i] == vb->dims[i];
    if (!same) {
        char sa[64], sb[64];
        shape_str(va, sa, sizeof sa);
        shape_str(vb, sb, sizeof sb);
        return FKD_FAIL(FKD_ERR_ARG, "graph: add '%s': shapes %s and %s differ", name, sa, sb);
    }
    return fkd__node_add(g, FKD__OP_ADD, name, in, 2, NULL, va->ndims, va->dims);
}

static fkd_status add_build(fkd_graph *g, fkd__node *n)
{
    int a = n->inputs[0], b = n->inputs[1], y = n->output;
    const fkd_md *md = fkd_shim_mem_md(g->values[a].data);
    /* A convolution's sum post-op computes it (fuse.c): the output is that buffer. */
    if (n->absorbed_by >= 0) return fkd__value_alloc(g, y, md);
    fkd_mem *bm;
    fkd_pd *pd;
    fkd_prim *p;
    FKD_TRY(fkd__value_as(g, &n->fwd, b, md, &bm));
    FKD_TRY(fkd_shim_add_pd(g->shim, &pd, md, md, md));
    FKD_TRY(fkd__value_alloc(g, y, md));
    FKD_TRY(fkd_shim_prim(g->shim, &p, pd));
    FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_SRC, g->values[a].data));
    FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_SRC_1, bm));
    FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_DST, g->values[y].data));
    FKD_TRY(fkd__steps_add(&n->fwd, p));
    if (g->cfg.mode != FKD_GRAPH_TRAIN) return FKD_OK;
    /* The input read only here first: a second input can join it in dy's buffer. */
    int first = g->values[a].consumers == 1 || g->values[b].consumers != 1 ? a : b;
    int second = first == a ? b : a;
    bool first_shares, second_shares;
    FKD_TRY(fkd__grad_alias(g, n, first, -1, &first_shares));
    if (!first_shares) FKD_TRY(fkd__grad_pass(g, n, &n->bwd, g->values[y].grad, first));
    FKD_TRY(fkd__grad_alias(g, n, second, first_shares ? first : -1, &second_shares));
    return second_shares ? FKD_OK : fkd__grad_pass(g, n, &n->bwd, g->values[y].grad, second);
}

const fkd__op fkd__op_add = {.build = add_build};
