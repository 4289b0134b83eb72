/* Per-channel PReLU as oneDNN's standalone prelu primitive (jit_uni). Never a convolution
 * post-op: in oneDNN 2.6 that drops the convolution to its reference kernel
 * (shared/ONEDNN.md).
 *
 * Shapes: x, y (N, C, H, W) or (N, C) in x's layout; a (C), inside the engine (1, C, 1, 1)
 * or (1, C) so that it broadcasts.
 * Forward: y = x if x > 0 else a_c x. Backward: dx += dy · (x > 0 ? 1 : a_c),
 * da_c += Σ_{x ≤ 0} dy · x.
 * Recompute (TRAIN graphs, graph.c): y again from x with the forward's descriptor, for a
 * consumer's backward when y is not kept (one elementwise pass instead of keeping y). */
#include <stdlib.h>

#include "nn/op.h"

/* What build() made, for recompute. */
typedef struct {
    fkd_pd *fwd;
    fkd_mem *w_fwd; /* the weights the forward read (a bf16 copy in bf16 graphs) */
} prelu_state;

fkd_value fkd_graph_prelu(fkd_graph *g, const char *name, fkd_value x)
{
    fkd_status st = fkd__check_inputs(g, FKD__OP_PRELU, name, &x, 1);
    if (st != FKD_OK) return st;
    const fkd__value *v = &g->values[x];
    if (v->ndims != 2 && v->ndims != 4)
        return FKD_FAIL(FKD_ERR_ARG, "graph: prelu '%s': input must be 2-D or 4-D", name);
    prelu_state *s = calloc(1, sizeof *s);
    if (!s) return FKD_FAIL(FKD_ERR_NOMEM, "graph: prelu '%s': out of memory", name);
    fkd_value y = fkd__node_add(g, FKD__OP_PRELU, name, &x, 1, s, v->ndims, v->dims);
    if (y < 0) return y;
    const int64_t c[1] = {g->values[x].dims[1]};
    st = fkd__param_declare(g, "weight", 1, c, FKD__INIT_CONST, 0.25f, false, false);
    return st == FKD_OK ? y : st;
}

/* Appends y = prelu(x) into dst; the forward itself and the recompute. */
static fkd_status prelu_recompute(fkd_graph *g, fkd__node *n, fkd__steps *steps, fkd_mem *dst)
{
    const prelu_state *s = n->state;
    if (n->absorbed_by >= 0) return fkd__bnact_recompute(g, &g->nodes[n->absorbed_by], steps, dst);
    fkd_prim *p;
    FKD_TRY(fkd_shim_prim(g->shim, &p, s->fwd));
    FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_SRC, g->values[n->inputs[0]].data));
    FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_WEIGHTS, s->w_fwd));
    FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_DST, dst));
    return fkd__steps_add(steps, p);
}

static fkd_status prelu_build(fkd_graph *g, fkd__node *n)
{
    /* Fused into the batch norm before it, which built the output and the weight. */
    if (n->absorbed_by >= 0) return FKD_OK;
    const fkd__value *x = &g->values[n->inputs[0]];
    fkd__param_impl *a = &g->pimpl[n->first_param];
    int nd = x->ndims;
    const int64_t wdims[4] = {1, x->dims[1], 1, 1};
    /* Weights in the data's element type (a bf16 copy of the fp32 master in bf16 graphs). */
    const fkd_md *data = fkd_shim_mem_md(x->data), *w_any, *w_plain;
    FKD_TRY(fkd_shim_md_any(g->shim, &w_any, nd, wdims, fkd_shim_md_dtype(data)));
    FKD_TRY(fkd_shim_md_plain(g->shim, &w_plain, nd, wdims, FKD_DT_F32));
    bool train = g->cfg.mode == FKD_GRAPH_TRAIN;
    fkd_pd *fwd, *bwd;
    fkd_prim *p;
    FKD_TRY(fkd_shim_prelu_fwd_pd(g->shim, &fwd, train, data, w_any));
    FKD_TRY(fkd__value_alloc(g, n->output, fkd_shim_pd_md(fwd, FKD_ARG_DST)));
    FKD_TRY(fkd__param_alloc(g, n->first_param, fkd_shim_pd_md(fwd, FKD_ARG_WEIGHTS), w_plain));
    prelu_state *s = n->state;
    s->fwd = fwd;
    FKD_TRY(fkd__param_as(g, &n->fwd, n->first_param, fkd_shim_pd_md(fwd, FKD_ARG_WEIGHTS), &s->w_fwd));
    fkd_mem *w_fwd = s->w_fwd;
    FKD_TRY(prelu_recompute(g, n, &n->fwd, g->values[n->output].data));
    if (!train) return FKD_OK;

    const fkd_md *w = fkd_shim_pd_md(fwd, FKD_ARG_WEIGHTS);
    fkd_mem *dy, *dx, *da;
    FKD_TRY(fkd_shim_prelu_bwd_pd(g->shim, &bwd, data, w, data, w, fwd));
    FKD_TRY(fkd__grad_as(g, n, &n->bwd, n->output, fkd_shim_pd_md(bwd, FKD_ARG_DIFF_DST), &dy));
    FKD_TRY(fkd__dx_target(g, n, n->inputs[0], fkd_shim_pd_md(bwd, FKD_ARG_DIFF_SRC), &dx));
    FKD_TRY(fkd__bwd_temp(g, n, fkd_shim_pd_md(bwd, FKD_ARG_DIFF_WEIGHTS), &da));
    FKD_TRY(fkd_shim_prim(g->shim, &p, bwd));
    FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_SRC, x->data));
    FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_WEIGHTS, w_fwd));
    FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_DIFF_DST, dy));
    FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_DIFF_SRC, dx));
    FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_DIFF_WEIGHTS, da));
    FKD_TRY(fkd__steps_add(&n->bwd, p));
    FKD_TRY(fkd__dx_done(g, &n->bwd, n->inputs[0], dx));
    return fkd__accumulate(g, &n->bwd, da, a->grad);
}

const fkd__op fkd__op_prelu = {.build = prelu_build, .recompute = prelu_recompute};
