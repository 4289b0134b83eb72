/* INFER-graph fusion, planned at finalize before any node is built.
 *
 * 1. Batch norm folding. A batch norm whose input is a conv's output that nothing else
 *    reads and nobody tapped becomes part of that layer: eval-mode batch norm
 *    is y = s·x + t per channel, so the layer computes W' = s·W, b' = s·b + t (fold.h).
 *    W' and b' are graph-private: the master parameters stay what the caller wrote, so
 *    saving and export see the model, and a step before the convolution remakes W', b'
 *    whenever the parameters may have changed (weights_version: param_write, params()),
 *    so a graph finalized first and loaded later folds the loaded weights.
 *    The batch norm node keeps its parameters and has no steps; its output is the layer's.
 *
 * 2. Residual adds as a oneDNN `sum` post-op. add(y, r) where y comes from a conv (through
 *    a folded batch norm or not) that nothing else reads: the conv writes into r's buffer,
 *    dst = conv(x) + b + dst. That is in place, so it needs r to be finished before the conv
 *    runs (r's producer comes earlier in node order), to be read by nothing after the conv
 *    but the add, not to be kept (tap, input, output) and not to share the conv's input
 *    buffer. In an
 *    IResNet block it is conv2 (+ bn3) adding the identity, or, in a downsampling block,
 *    the downsample conv (+ its batch norm), which comes after conv2, adding the branch.
 *    The add node has no steps; its output is r's buffer. The conv's dst takes r's layout.
 *
 * 3. PReLU in place: its output takes its input's buffer when nothing else reads the
 *    input (oneDNN's prelu reads and writes element by element).
 *
 * 4. TRAIN graphs: batch norm + PReLU (bnact.h). A 4-D batch norm whose output only a
 *    PReLU reads, untapped: the batch norm's steps compute the PReLU's output from the
 *    batch norm's input (statistics, then both ops in one pass; backward in two passes over
 *    x and dy), and its output is never stored. op_batchnorm.c builds it, or declines it
 *    for a layout the kernels do not cover.
 *
 * Fused values form groups sharing one buffer (value.alias points towards the group's first
 * value, whose producer allocates it); plan_lifetimes gives that buffer the union of their
 * lifetimes. A kept value's content is never overwritten by a later member: a value that is
 * overwritten (a residual, a folded layer's raw output) must not be kept.
 *
 * Not fused: PReLU (as a post-op it selects oneDNN 2.6's reference kernel), a batch norm
 * before a convolution (IResNet's bn1: with zero padding it does not fold at the borders),
 * sum post-ops on facekd's grouped kernels (conv_grouped.c; their batch norms fold).
 */
#include <stdlib.h>

#include "nn/conv_grouped.h"
#include "nn/fold.h"
#include "nn/op.h"

int fkd__value_root(const fkd_graph *g, int v)
{
    while (g->values[v].alias != v) v = g->values[v].alias;
    return v;
}

static bool grouped_host(const fkd_graph *g, const fkd__node *n)
{
    int k, s, p, groups;
    fkd__conv_attrs(n, &k, &s, &p, &groups);
    return fkd__conv_grouped_fits((int)g->values[n->inputs[0]].dims[1], (int)g->values[n->output].dims[1], groups);
}

/* A value only its one consumer reads, and nobody reads back. */
static bool private_value(const fkd_graph *g, int v)
{
    return g->values[v].consumers == 1 && !g->values[v].kept;
}

static void plan_fold(fkd_graph *g, int i)
{
    fkd__node *bn = &g->nodes[i];
    int x = bn->inputs[0], p = g->values[x].producer;
    fkd__node *layer = &g->nodes[p];
    /* Convolutions only: a batch norm after a linear layer (the embedding's BatchNorm1d)
     * costs next to nothing on (N, 512), while folding it needs a plain copy of the
     * layer's weights as scratch (IResNet-50's fc: 51 MB). */
    if (layer->op != FKD__OP_CONV || layer->fold_bn >= 0 || !private_value(g, x) || fkd__value_root(g, x) != x)
        return;
    layer->fold_bn = i;
    bn->absorbed_by = p;
    g->values[bn->output].alias = x;
}

/* The conv computing value y (directly or through a folded batch norm), or -1. */
static int computing_conv(const fkd_graph *g, int y)
{
    int p = g->values[y].producer;
    if (g->nodes[p].op == FKD__OP_BATCHNORM && g->nodes[p].absorbed_by >= 0) p = g->nodes[p].absorbed_by;
    return g->nodes[p].op == FKD__OP_CONV ? p : -1;
}

/* add node i: y = inputs[k] from a conv q, r = the other input, added by q's sum post-op. */
static bool plan_sum(fkd_graph *g, int i, int k)
{
    fkd__node *add = &g->nodes[i];
    int y = add->inputs[k], r = add->inputs[1 - k], q = computing_conv(g, y);
    if (q < 0 || y == r) return false;
    fkd__node *conv = &g->nodes[q];
    int c = conv->output;
    if (conv->residual >= 0 || grouped_host(g, conv) || !private_value(g, y) || fkd__value_root(g, c) != c) return false;
    const fkd__value *rv = &g->values[r];
    if (rv->kept || g->last_use[r] != i || rv->producer >= q ||
        fkd__value_root(g, conv->inputs[0]) == fkd__value_root(g, r))
        return false;
    /* Nothing may read r between the conv (which overwrites it) and the add. */
    for (int j = q + 1; j < i; j++)
        for (int k = 0; k < g->nodes[j].n_inputs; k++)
            if (g->nodes[j].inputs[k] == r) return false;
    conv->residual = r;
    add->absorbed_by = q;
    g->values[c].alias = fkd__value_root(g, r);
    g->values[add->output].alias = c;
    return true;
}

/* PReLU in place: its input's buffer when nothing else reads the input. */
static void plan_in_place(fkd_graph *g, int i)
{
    int x = g->nodes[i].inputs[0];
    if (private_value(g, x)) g->values[g->nodes[i].output].alias = x;
}

fkd_status fkd__plan_fusion(fkd_graph *g)
{
    for (int i = 0; i < g->n_nodes; i++) {
        const fkd__node *n = &g->nodes[i];
        if (n->op == FKD__OP_BATCHNORM) plan_fold(g, i);
        if (n->op == FKD__OP_ADD && !plan_sum(g, i, 0)) plan_sum(g, i, 1);
        if (n->op == FKD__OP_PRELU) plan_in_place(g, i);
    }
    return FKD_OK;
}

/* ---- the fold step --------------------------------------------------------------------- */

typedef struct {
    fkd_graph *g;
    int node;
    fkd_mem *w, *b;      /* W' plain fp32 (the result, or the reorder's source), b' */
    fkd_prim *to_layout; /* W' into the primitive's layout; NULL when plain is the result */
    float *scale, *shift;
    uint64_t seen_version; /* weights_version W', b' were made at */
} fold_ctx;

static fkd_status fold_run(void *ctx)
{
    fold_ctx *f = ctx;
    fkd_graph *g = f->g;
    const fkd__node *n = &g->nodes[f->node], *bn = &g->nodes[n->fold_bn];
    const fkd_param *w = &g->params[n->first_param], *b = n->n_params == 2 ? w + 1 : NULL;
    const fkd_param *s = &g->params[bn->first_param]; /* weight, bias, running_mean, running_var */
    int64_t out = w->dims[0];
    fkd_bn_scale_shift(s[0].data, s[1].data, s[2].data, s[3].data, fkd__batchnorm_eps(bn), out, f->scale, f->shift);
    fkd_fold_scale_shift(w->data, b ? b->data : NULL, out, w->numel / out, f->scale, f->shift,
                         fkd_shim_mem_data(f->w), fkd_shim_mem_data(f->b));
    return f->to_layout ? fkd_shim_run(g->shim, f->to_layout) : FKD_OK;
}

fkd_status fkd__fold_build(fkd_graph *g, fkd__node *n, const fkd_md *w_plain, const fkd_md *want,
                           fkd_mem **w_out, fkd_mem **b_out)
{
    const fkd_param *w = &g->params[n->first_param];
    int64_t out = w->dims[0];
    if (!fkd_shim_md_equal(fkd_shim_mem_md(g->pimpl[n->first_param].data), w_plain))
        return FKD_FAIL(FKD_ERR_ARG, "graph: folding into '%s': master weights are not plain", n->name);
    FKD_TRY(fkd__grow((void **)&g->owned, &g->cap_owned, g->n_owned + 1, sizeof *g->owned));
    fold_ctx *f = calloc(1, sizeof *f + 2 * (size_t)out * sizeof(float));
    if (!f) return FKD_FAIL(FKD_ERR_NOMEM, "graph: folding into '%s': out of memory", n->name);
    g->owned[g->n_owned++] = f;
    f->g = g;
    f->node = (int)(n - g->nodes);
    f->scale = (float *)(f + 1);
    f->shift = f->scale + out;

    const fkd_md *b_md;
    FKD_TRY(fkd_shim_md_plain(g->shim, &b_md, 1, &out, FKD_DT_F32));
    FKD_TRY(fkd_shim_mem(g->shim, &f->b, b_md));
    if (!want || fkd_shim_md_equal(want, w_plain)) {
        FKD_TRY(fkd_shim_mem(g->shim, &f->w, w_plain));
        *w_out = f->w;
    } else {
        /* Plain W' only lives while the step runs: the shared temporary arena (INFER graphs
         * have no backward pass to share it with). */
        FKD_TRY(fkd__bwd_temp(g, n, w_plain, &f->w));
        FKD_TRY(fkd_shim_mem(g->shim, w_out, want));
        FKD_TRY(fkd_shim_reorder(g->shim, &f->to_layout, f->w, *w_out, false));
    }
    *b_out = f->b;
    FKD_TRY(fkd__steps_add_host(&n->fwd, fold_run, f, "fold_bn:host"));
    n->fwd.items[n->fwd.count - 1].seen = &f->seen_version;
    return FKD_OK;
}

void fkd__plan_train_fusion(fkd_graph *g)
{
    for (int i = 0; i < g->n_nodes; i++) {
        fkd__node *bn = &g->nodes[i];
        int z = bn->output;
        if (bn->op != FKD__OP_BATCHNORM || g->values[z].ndims != 4 || g->values[z].consumers != 1) continue;
        bool tapped = false;
        for (int t = 0; t < g->n_taps; t++) tapped |= g->taps[t].value == z;
        if (tapped) continue;
        for (int j = i + 1; j < g->n_nodes; j++) {
            fkd__node *c = &g->nodes[j];
            if (c->n_inputs == 0 || c->inputs[0] != z) continue;
            if (c->op == FKD__OP_PRELU) {
                bn->fused_prelu = j;
                c->absorbed_by = i;
            }
            break;
        }
    }
}
