/* The graph: nodes in topological order, values, parameters, and the passes over them.
 * Op-specific work lives in op_*.c behind fkd__op (lib/nn/op.h); oneDNN behind shim.h. */
#include "nn/graph.h"

#include <assert.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "nn/op.h"

static const fkd__op *const ops[] = {
    [FKD__OP_INPUT] = &fkd__op_input,
    [FKD__OP_CONV] = &fkd__op_conv,
    [FKD__OP_BATCHNORM] = &fkd__op_batchnorm,
    [FKD__OP_PRELU] = &fkd__op_prelu,
    [FKD__OP_ADD] = &fkd__op_add,
    [FKD__OP_FLATTEN] = &fkd__op_flatten,
    [FKD__OP_LINEAR] = &fkd__op_linear,
    [FKD__OP_DROPOUT] = &fkd__op_dropout,
};
static const char *const op_names[] = {
    [FKD__OP_INPUT] = "input",
    [FKD__OP_CONV] = "conv",
    [FKD__OP_BATCHNORM] = "batchnorm",
    [FKD__OP_PRELU] = "prelu",
    [FKD__OP_ADD] = "add",
    [FKD__OP_FLATTEN] = "flatten",
    [FKD__OP_LINEAR] = "linear",
    [FKD__OP_DROPOUT] = "dropout",
};
static_assert(sizeof ops / sizeof ops[0] == FKD__OP_COUNT, "an op without a function table");
static_assert(sizeof op_names / sizeof op_names[0] == FKD__OP_COUNT, "an op without a name");

const char *fkd__op_name(fkd__op_kind op)
{
    return op >= 0 && op < FKD__OP_COUNT ? op_names[op] : "?";
}

fkd_status fkd__grow(void **items, int *cap, int need, size_t size)
{
    if (need <= *cap) return FKD_OK;
    int ncap = *cap ? *cap * 2 : 16;
    while (ncap < need) ncap *= 2;
    void *p = realloc(*items, (size_t)ncap * size);
    if (!p) return FKD_FAIL(FKD_ERR_NOMEM, "graph: out of memory");
    memset((char *)p + (size_t)*cap * size, 0, (size_t)(ncap - *cap) * size);
    *items = p;
    *cap = ncap;
    return FKD_OK;
}

/* ---- life cycle ------------------------------------------------------------------------ */

fkd_status fkd_graph_create(fkd_graph **out, const fkd_graph_config *config)
{
    *out = NULL;
    if (!config || config->batch < 1)
        return FKD_FAIL(FKD_ERR_ARG, "graph: batch must be at least 1");
    if (config->precision != FKD_PREC_F32 && config->precision != FKD_PREC_BF16)
        return FKD_FAIL(FKD_ERR_ARG, "graph: unknown precision %d", (int)config->precision);
    if (config->precision == FKD_PREC_BF16 && !fkd_shim_bf16_ok())
        return FKD_FAIL(FKD_ERR_UNSUPPORTED, "graph: bf16 needs AVX-512 (oneDNN runs %s here); use fp32",
                        fkd_shim_isa());
    fkd_graph *g = calloc(1, sizeof *g);
    if (!g) return FKD_FAIL(FKD_ERR_NOMEM, "graph: out of memory");
    g->cfg = *config;
    g->dtype = config->precision == FKD_PREC_BF16 ? FKD_DT_BF16 : FKD_DT_F32;
    g->training = config->mode == FKD_GRAPH_TRAIN;
    fkd_status st = fkd_shim_create(&g->shim);
    if (st != FKD_OK) {
        fkd_graph_free(g);
        return st;
    }
    *out = g;
    return FKD_OK;
}

void fkd_graph_free(fkd_graph *g)
{
    if (!g) return;
    for (int i = 0; i < g->n_nodes; i++) {
        fkd__node *n = &g->nodes[i];
        if (n->state && ops[n->op]->free) ops[n->op]->free(n);
        free(n->name);
        free(n->state);
        free(n->fwd.items);
        free(n->bwd.items);
    }
    for (int i = 0; i < g->n_params; i++) free((char *)g->params[i].name);
    for (int i = 0; i < g->n_taps; i++) free(g->taps[i].name);
    free(g->nodes);
    free(g->values);
    free(g->params);
    free(g->pimpl);
    free(g->taps);
    free(g->spans);
    free(g->views);
    free(g->last_use);
    free(g->grad_until);
    for (int i = 0; i < g->n_owned; i++) free(g->owned[i]);
    free(g->owned);
    free(g->node_seconds);
    fkd_shim_free(g->shim);
    free(g->arena);
    free(g);
}

/* ---- building -------------------------------------------------------------------------- */

static int node_by_name(const fkd_graph *g, const char *name)
{
    for (int i = 0; i < g->n_nodes; i++)
        if (strcmp(g->nodes[i].name, name) == 0) return i;
    return -1;
}

fkd_status fkd__check_inputs(fkd_graph *g, fkd__op_kind op, const char *name, const int *inputs,
                             int n_inputs)
{
    if (!g) return FKD_FAIL(FKD_ERR_ARG, "graph: NULL graph");
    const char *opn = fkd__op_name(op);
    if (!name || !*name) return FKD_FAIL(FKD_ERR_ARG, "graph: %s node without a name", opn);
    if (g->finalized)
        return FKD_FAIL(FKD_ERR_ARG, "graph: %s '%s': graph already finalized", opn, name);
    if (node_by_name(g, name) >= 0)
        return FKD_FAIL(FKD_ERR_ARG, "graph: %s '%s': a node with this name exists", opn, name);
    for (int i = 0; i < n_inputs; i++)
        if (inputs[i] < 0 || inputs[i] >= g->n_values)
            return FKD_FAIL(FKD_ERR_ARG, "graph: %s '%s': input value %d does not exist", opn,
                            name, inputs[i]);
    return FKD_OK;
}

fkd_value fkd__node_add(fkd_graph *g, fkd__op_kind op, const char *name, const int *inputs,
                        int n_inputs, void *state, int ndims, const int64_t *dims)
{
    /* `dims` may point into g->values (an op whose output has its input's shape), which
     * growing the array below can move: copy it first. */
    int64_t shape[4] = {0};
    for (int i = 0; i < ndims && i < 4; i++) shape[i] = dims[i];
    fkd_status st = ndims >= 0 && ndims <= 4 ? FKD_OK : FKD_FAIL(FKD_ERR_ARG, "graph: '%s': %d dimensions", name, ndims);
    if (st == FKD_OK) st = fkd__check_inputs(g, op, name, inputs, n_inputs);
    if (st == FKD_OK) st = fkd__grow((void **)&g->nodes, &g->cap_nodes, g->n_nodes + 1, sizeof *g->nodes);
    if (st == FKD_OK) st = fkd__grow((void **)&g->values, &g->cap_values, g->n_values + 1, sizeof *g->values);
    char *copy = st == FKD_OK ? strdup(name) : NULL;
    if (st == FKD_OK && !copy) st = FKD_FAIL(FKD_ERR_NOMEM, "graph: out of memory");
    if (st != FKD_OK) {
        free(state);
        return st;
    }
    fkd__node *n = &g->nodes[g->n_nodes];
    memset(n, 0, sizeof *n);
    n->op = op;
    n->name = copy;
    n->n_inputs = n_inputs;
    for (int i = 0; i < n_inputs; i++) n->inputs[i] = inputs[i];
    n->state = state;
    n->first_param = g->n_params;
    n->output = g->n_values;
    n->fold_bn = n->residual = n->absorbed_by = n->fused_prelu = -1;
    fkd__value *v = &g->values[g->n_values];
    memset(v, 0, sizeof *v);
    v->alias = g->n_values;
    v->ndims = ndims;
    v->producer = g->n_nodes;
    for (int i = 0; i < ndims; i++) v->dims[i] = shape[i];
    g->n_nodes++;
    return g->n_values++;
}

fkd_status fkd_graph_tap(fkd_graph *g, const char *tap_name, fkd_value v)
{
    if (!g) return FKD_FAIL(FKD_ERR_ARG, "graph: tap: NULL graph");
    if (!tap_name || !*tap_name) return FKD_FAIL(FKD_ERR_ARG, "graph: tap without a name");
    if (v < 0 || v >= g->n_values)
        return FKD_FAIL(FKD_ERR_ARG, "graph: tap '%s': value %d does not exist", tap_name, v);
    for (int i = 0; i < g->n_taps; i++) {
        if (strcmp(g->taps[i].name, tap_name) == 0) {
            g->taps[i].value = v;
            return FKD_OK;
        }
    }
    FKD_TRY(fkd__grow((void **)&g->taps, &g->cap_taps, g->n_taps + 1, sizeof *g->taps));
    char *copy = strdup(tap_name);
    if (!copy) return FKD_FAIL(FKD_ERR_NOMEM, "graph: out of memory");
    g->taps[g->n_taps].name = copy;
    g->taps[g->n_taps].value = v;
    g->n_taps++;
    return FKD_OK;
}

fkd_value fkd_graph_find(fkd_graph *g, const char *name)
{
    if (!g || !name) return FKD_FAIL(FKD_ERR_ARG, "graph: find: NULL graph or name");
    for (int i = 0; i < g->n_taps; i++)
        if (strcmp(g->taps[i].name, name) == 0) return g->taps[i].value;
    int n = node_by_name(g, name);
    if (n < 0) return FKD_FAIL(FKD_ERR_NOTFOUND, "graph: no tap or node named '%s'", name);
    return g->nodes[n].output;
}

fkd_status fkd_graph_shape(const fkd_graph *g, fkd_value v, int *ndims, int dims[4])
{
    if (!g) return FKD_FAIL(FKD_ERR_ARG, "graph: shape: NULL graph");
    if (v < 0 || v >= g->n_values)
        return FKD_FAIL(FKD_ERR_ARG, "graph: shape: value %d does not exist", v);
    const fkd__value *x = &g->values[v];
    *ndims = x->ndims;
    for (int i = 0; i < 4; i++) dims[i] = i < x->ndims ? (int)x->dims[i] : 0;
    return FKD_OK;
}

/* ---- helpers for build() --------------------------------------------------------------- */

fkd_status fkd__value_plain_md(fkd_graph *g, int v, const fkd_md **out)
{
    return fkd_shim_md_plain(g->shim, out, g->values[v].ndims, g->values[v].dims, g->dtype);
}

/* ---- the arena ------------------------------------------------------------------------- */
/* Buffers that live only part of a step get a span of the timeline (node i's forward at
 * time i, its backward at 2N − 1 − i) and share one arena: after every node is built,
 * spans are placed largest first, each at the lowest offset where it overlaps no placed
 * span that is live at the same time (greedy by size, as TFLite's planner). So a stem's
 * backward temporaries reuse what deeper layers' gradients and scratchpads used, and
 * Winograd's scratchpad lives only while its primitive runs. */

static int fwd_time(const fkd_graph *g, int node) { (void)g; return node; }
static int bwd_time(const fkd_graph *g, int node) { return 2 * g->n_nodes - 1 - node; }

static size_t round64(size_t bytes) { return (bytes + 63) / 64 * 64; }

/* A buffer-less memory of layout md placed in the arena over [first, last]. */
static fkd_status span_mem(fkd_graph *g, fkd_mem **out, const fkd_md *md, int first, int last)
{
    FKD_TRY(fkd__grow((void **)&g->spans, &g->cap_spans, g->n_spans + 1, sizeof *g->spans));
    FKD_TRY(fkd_shim_mem_edge(g->shim, out, md));
    g->spans[g->n_spans++] = (struct fkd__span){*out, NULL, round64(fkd_shim_md_bytes(md)), 0, first, last};
    return FKD_OK;
}

/* The scratchpad of a node's steps, live while they run at time t: one for all of them
 * (they run one after another), sized for the largest. */
static fkd_status span_scratch(fkd_graph *g, const fkd__steps *steps, int t)
{
    size_t most = 0;
    for (int i = 0; i < steps->count; i++) {
        size_t bytes = steps->items[i].prim ? fkd_shim_prim_scratch_bytes(steps->items[i].prim) : 0;
        if (bytes > most) most = bytes;
    }
    if (!most) return FKD_OK;
    FKD_TRY(fkd__grow((void **)&g->spans, &g->cap_spans, g->n_spans + 1, sizeof *g->spans));
    g->spans[g->n_spans++] = (struct fkd__span){NULL, steps, round64(most), 0, t, t};
    return FKD_OK;
}

static int by_size_desc(const void *a, const void *b)
{
    const struct fkd__span *x = *(struct fkd__span *const *)a, *y = *(struct fkd__span *const *)b;
    if (x->bytes != y->bytes) return x->bytes < y->bytes ? 1 : -1;
    return x->first - y->first;
}

static int by_offset(const void *a, const void *b)
{
    const struct fkd__span *x = *(struct fkd__span *const *)a, *y = *(struct fkd__span *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Offsets for every span, g->arena_bytes their extent. */
static fkd_status place_spans(fkd_graph *g)
{
    int n = g->n_spans;
    struct fkd__span **order = malloc(sizeof *order * (size_t)(n ? n : 1));
    struct fkd__span **live = malloc(sizeof *live * (size_t)(n ? n : 1));
    if (!order || !live) {
        free(order);
        free(live);
        return FKD_FAIL(FKD_ERR_NOMEM, "graph: out of memory");
    }
    for (int i = 0; i < n; i++) order[i] = &g->spans[i];
    qsort(order, (size_t)n, sizeof *order, by_size_desc);
    g->arena_bytes = 0;
    for (int i = 0; i < n; i++) {
        struct fkd__span *s = order[i];
        int m = 0;
        for (int j = 0; j < i; j++)
            if (order[j]->first <= s->last && s->first <= order[j]->last) live[m++] = order[j];
        qsort(live, (size_t)m, sizeof *live, by_offset);
        /* The lowest gap between the spans live meanwhile that fits. */
        size_t at = 0;
        for (int j = 0; j < m && at + s->bytes > live[j]->offset; j++)
            if (live[j]->offset + live[j]->bytes > at) at = live[j]->offset + live[j]->bytes;
        s->offset = at;
        if (at + s->bytes > g->arena_bytes) g->arena_bytes = at + s->bytes;
    }
    free(order);
    free(live);
    /* The lower bound, for fkd_graph_memory_use: the most bytes live at one time. */
    g->arena_live = 0;
    for (int t = 0; t < 2 * g->n_nodes; t++) {
        size_t sum = 0;
        for (int i = 0; i < n; i++)
            if (g->spans[i].first <= t && t <= g->spans[i].last) sum += g->spans[i].bytes;
        if (sum > g->arena_live) g->arena_live = sum;
    }
    return FKD_OK;
}

/* Points view i at its base's buffer, and first the base's own base when the base is a
 * view too (residual gradients chain: fkd__grad_alias). done: 0 unset, 1 under way, 2 set. */
static fkd_status set_view_handle(fkd_graph *g, int i, char *done)
{
    if (done[i] == 2) return FKD_OK;
    if (done[i] == 1) return FKD_FAIL(FKD_ERR_ARG, "graph: views form a cycle");
    done[i] = 1;
    for (int j = 0; j < g->n_views; j++)
        if (g->views[j].mem == g->views[i].base) FKD_TRY(set_view_handle(g, j, done));
    done[i] = 2;
    return fkd_shim_mem_set_handle(g->views[i].mem, fkd_shim_mem_data(g->views[i].base));
}

static fkd_status set_view_handles(fkd_graph *g)
{
    char *done = calloc((size_t)g->n_views + 1, 1);
    if (!done) return FKD_FAIL(FKD_ERR_NOMEM, "graph: out of memory");
    fkd_status st = FKD_OK;
    for (int i = 0; i < g->n_views && st == FKD_OK; i++) st = set_view_handle(g, i, done);
    free(done);
    return st;
}

/* Plans the scratchpads of the nodes' steps, places every span and gives the memories
 * and scratchpads their buffers. */
static fkd_status build_arena(fkd_graph *g)
{
    for (int i = 0; i < g->n_nodes; i++) {
        FKD_TRY(span_scratch(g, &g->nodes[i].fwd, fwd_time(g, i)));
        FKD_TRY(span_scratch(g, &g->nodes[i].bwd, bwd_time(g, i)));
    }
    FKD_TRY(place_spans(g));
    if (!g->arena_bytes) return FKD_OK;
    g->arena = aligned_alloc(64, g->arena_bytes);
    if (!g->arena) return FKD_FAIL(FKD_ERR_NOMEM, "graph: cannot allocate a %zu-byte arena", g->arena_bytes);
    memset(g->arena, 0, g->arena_bytes);
    for (int i = 0; i < g->n_spans; i++) {
        const struct fkd__span *s = &g->spans[i];
        void *at = (char *)g->arena + s->offset;
        if (s->mem) {
            FKD_TRY(fkd_shim_mem_set_handle(s->mem, at));
            continue;
        }
        for (int k = 0; k < s->steps->count; k++) {
            fkd_prim *p = s->steps->items[k].prim;
            if (p && fkd_shim_prim_scratch_bytes(p)) FKD_TRY(fkd_shim_prim_set_scratch(g->shim, p, at));
        }
    }
    return set_view_handles(g);
}

fkd_status fkd__mem_view(fkd_graph *g, fkd_mem **out, const fkd_md *md, fkd_mem *base)
{
    if (fkd_shim_md_bytes(md) > fkd_shim_mem_bytes(base))
        return FKD_FAIL(FKD_ERR_ARG, "graph: a view of %zu bytes over a %zu-byte buffer", fkd_shim_md_bytes(md),
                        fkd_shim_mem_bytes(base));
    FKD_TRY(fkd__grow((void **)&g->views, &g->cap_views, g->n_views + 1, sizeof *g->views));
    FKD_TRY(fkd_shim_mem_edge(g->shim, out, md));
    g->views[g->n_views++] = (struct fkd__view){*out, base};
    return FKD_OK;
}

fkd_status fkd__value_alloc(fkd_graph *g, int value, const fkd_md *md)
{
    fkd__value *v = &g->values[value];
    int root = fkd__value_root(g, value);
    if (root != value) {
        /* Fused: the root's producer ran earlier in node order and chose the layout. */
        const fkd__value *r = &g->values[root];
        if (!r->data || !fkd_shim_md_equal(fkd_shim_mem_md(r->data), md))
            return FKD_FAIL(FKD_ERR_ARG, "graph: fused value %d: layout differs from the buffer it shares (%s '%s')",
                            value, fkd__op_name(g->nodes[r->producer].op), g->nodes[r->producer].name);
        v->data = r->data;
        return FKD_OK;
    }
    /* last_use covers every value sharing this buffer (plan_lifetimes). */
    if (g->last_use[value] != INT_MAX)
        FKD_TRY(span_mem(g, &v->data, md, fwd_time(g, g->building), fwd_time(g, g->last_use[value])));
    else
        FKD_TRY(fkd_shim_mem(g->shim, &v->data, md));
    if (g->cfg.mode != FKD_GRAPH_TRAIN) return FKD_OK;
    if (!v->grad_shared) return fkd_shim_mem(g->shim, &v->grad, md);
    /* From its last consumer's backward to its producer's (this node's). */
    return span_mem(g, &v->grad, md, bwd_time(g, g->grad_until[value]), bwd_time(g, g->building));
}

static fkd_status steps_push(fkd__steps *steps, fkd__step step)
{
    FKD_TRY(fkd__grow((void **)&steps->items, &steps->cap, steps->count + 1, sizeof *steps->items));
    steps->items[steps->count++] = step;
    return FKD_OK;
}

fkd_status fkd__steps_add(fkd__steps *steps, fkd_prim *p)
{
    return steps_push(steps, (fkd__step){.prim = p});
}

fkd_status fkd__steps_add_host(fkd__steps *steps, fkd_status (*host)(void *ctx), void *ctx,
                               const char *label)
{
    return steps_push(steps, (fkd__step){.host = host, .ctx = ctx, .label = label});
}

/* `have` in layout `want`: itself, or `tmp` (made by the caller) filled by a reorder. */
static fkd_status reorder_into(fkd_graph *g, fkd__steps *steps, fkd_mem *have, fkd_mem *tmp,
                               fkd_mem **out)
{
    fkd_prim *r;
    FKD_TRY(fkd_shim_reorder(g->shim, &r, have, tmp, false));
    FKD_TRY(fkd__steps_add(steps, r));
    *out = tmp;
    return FKD_OK;
}

fkd_status fkd__mem_as(fkd_graph *g, fkd__steps *steps, fkd_mem *have, const fkd_md *want,
                       fkd_mem **out)
{
    fkd_mem *tmp;
    *out = have;
    if (fkd_shim_md_equal(fkd_shim_mem_md(have), want)) return FKD_OK;
    FKD_TRY(fkd_shim_mem(g->shim, &tmp, want));
    return reorder_into(g, steps, have, tmp, out);
}

fkd_status fkd__param_as(fkd_graph *g, fkd__steps *steps, int param, const fkd_md *want, fkd_mem **out)
{
    int before = steps->count;
    FKD_TRY(fkd__mem_as(g, steps, g->pimpl[param].data, want, out));
    if (steps->count > before) steps->items[before].seen = &g->pimpl[param].copy_seen;
    return FKD_OK;
}

fkd_status fkd__value_as(fkd_graph *g, fkd__steps *steps, int v, const fkd_md *want,
                         fkd_mem **out)
{
    return fkd__mem_as(g, steps, g->values[v].data, want, out);
}

fkd_status fkd__bwd_temp(fkd_graph *g, fkd__node *n, const fkd_md *md, fkd_mem **out)
{
    /* INFER graphs have no backward: their temporaries are the forward's (fuse.c's W'). */
    int i = (int)(n - g->nodes), t = g->cfg.mode == FKD_GRAPH_TRAIN ? bwd_time(g, i) : fwd_time(g, i);
    for (; g->reuse_at < g->reuse_end; g->reuse_at++) {
        const struct fkd__span *s = &g->spans[g->reuse_at];
        if (s->mem && s->first == t && s->last == t && fkd_shim_mem_bytes(s->mem) >= fkd_shim_md_bytes(md))
            return fkd__mem_view(g, out, md, g->spans[g->reuse_at++].mem);
    }
    return span_mem(g, out, md, t, t);
}

void fkd__bwd_temps_alternative(fkd_graph *g)
{
    g->reuse_at = g->node_first_span;
    g->reuse_end = g->n_spans;
}

fkd_status fkd__bwd_as(fkd_graph *g, fkd__node *n, fkd__steps *steps, fkd_mem *have,
                       const fkd_md *want, fkd_mem **out)
{
    fkd_mem *tmp;
    *out = have;
    if (fkd_shim_md_equal(fkd_shim_mem_md(have), want)) return FKD_OK;
    FKD_TRY(fkd__bwd_temp(g, n, want, &tmp));
    return reorder_into(g, steps, have, tmp, out);
}

fkd_status fkd__grad_as(fkd_graph *g, fkd__node *n, fkd__steps *steps, int v, const fkd_md *want,
                        fkd_mem **out)
{
    return fkd__bwd_as(g, n, steps, g->values[v].grad, want, out);
}

/* Whether node n's backward is the first to put anything into v's gradient, in layout md:
 * the gradient is shared (zero until then), n is v's last consumer in node order (the
 * first in backward) and reads v once. It may then write the gradient whole, and the
 * zeroing before n's backward is skipped (grad_overwritten); consumers whose backward
 * runs later add to it. */
static bool writes_grad_first(fkd_graph *g, const fkd__node *n, int v, const fkd_md *md)
{
    const fkd__value *x = &g->values[v];
    int slots = 0;
    for (int k = 0; k < n->n_inputs; k++) slots += n->inputs[k] == v;
    return x->grad_shared && g->grad_until[v] == (int)(n - g->nodes) && slots == 1 &&
           fkd_shim_md_equal(fkd_shim_mem_md(x->grad), md);
}

fkd_status fkd__dx_target(fkd_graph *g, fkd__node *n, int v, const fkd_md *md, fkd_mem **out)
{
    fkd__value *x = &g->values[v];
    if (writes_grad_first(g, n, v, md)) {
        x->grad_overwritten = true;
        *out = x->grad;
        return FKD_OK;
    }
    return fkd__bwd_temp(g, n, md, out);
}

fkd_status fkd__grad_pass(fkd_graph *g, fkd__node *n, fkd__steps *steps, fkd_mem *src, int v)
{
    fkd__value *x = &g->values[v];
    if (!writes_grad_first(g, n, v, fkd_shim_mem_md(src))) return fkd__accumulate(g, steps, src, x->grad);
    x->grad_overwritten = true;
    fkd_prim *r;
    FKD_TRY(fkd_shim_reorder(g->shim, &r, src, x->grad, false));
    return fkd__steps_add(steps, r);
}

static struct fkd__span *grad_span(fkd_graph *g, int v)
{
    for (int i = 0; i < g->n_spans; i++)
        if (g->spans[i].mem && g->spans[i].mem == g->values[v].grad) return &g->spans[i];
    return NULL;
}

/* Why this is exact: dy is shared, so nothing reads it after n's backward, and n's backward
 * is the first to write v's gradient (writes_grad_first): until then the buffer holds dy,
 * which is what n would have copied there; later consumers of v add to it as they would
 * have added to the copy. Two inputs u (`sharing`) and v in one buffer: u has no other
 * consumer and v's other consumers run their backward after the last read of u's gradient
 * (its span's end), so their additions never reach u. Chains of residual blocks share one
 * buffer: the identity path's gradient, accumulated block by block. Spans: v's keeps its
 * times but no bytes (its memory is a view of dy's), and dy's lasts as long as the longest. */
fkd_status fkd__grad_alias(fkd_graph *g, fkd__node *n, int v, int sharing, bool *aliased)
{
    *aliased = false;
    int y = n->output;
    fkd__value *x = &g->values[v];
    if (g->cfg.mode != FKD_GRAPH_TRAIN || !g->values[y].grad_shared) return FKD_OK;
    if (!writes_grad_first(g, n, v, fkd_shim_mem_md(g->values[y].grad))) return FKD_OK;
    struct fkd__span *sy = grad_span(g, y), *sv = grad_span(g, v);
    if (!sy || !sv) return FKD_OK;
    if (sharing >= 0) {
        const struct fkd__span *su = grad_span(g, sharing);
        if (!su || g->values[sharing].consumers != 1) return FKD_OK;
        for (int i = 0; i < g->n_nodes; i++) {
            const fkd__node *c = &g->nodes[i];
            for (int k = 0; c != n && k < c->n_inputs; k++)
                if (c->inputs[k] == v && bwd_time(g, i) <= su->last) return FKD_OK;
        }
    }
    FKD_TRY(fkd__grow((void **)&g->views, &g->cap_views, g->n_views + 1, sizeof *g->views));
    g->views[g->n_views++] = (struct fkd__view){x->grad, g->values[y].grad};
    if (sv->last > sy->last) sy->last = sv->last;
    sv->bytes = 0;
    x->grad_overwritten = true;
    *aliased = true;
    return FKD_OK;
}

fkd_status fkd__dx_done(fkd_graph *g, fkd__steps *steps, int v, fkd_mem *dx)
{
    return dx == g->values[v].grad ? FKD_OK : fkd__accumulate(g, steps, dx, g->values[v].grad);
}

fkd_status fkd__saved_input(fkd_graph *g, fkd__node *n, fkd__steps *steps, int v, fkd_mem *fwd_src,
                            fkd_mem **out)
{
    const fkd__value *x = &g->values[v];
    *out = fwd_src;
    if (!x->recomputed || fwd_src != x->data) return FKD_OK;
    fkd__node *p = &g->nodes[x->producer];
    FKD_TRY(fkd__bwd_temp(g, n, fkd_shim_mem_md(x->data), out));
    return ops[p->op]->recompute(g, p, steps, *out);
}

fkd_status fkd__accumulate(fkd_graph *g, fkd__steps *steps, fkd_mem *src, fkd_mem *dst)
{
    if (fkd_shim_md_equal(fkd_shim_mem_md(src), fkd_shim_mem_md(dst)) &&
        fkd_shim_md_dtype(fkd_shim_mem_md(dst)) == FKD_DT_F32)
        return steps_push(steps, (fkd__step){.dst = dst, .src = src});
    fkd_prim *r;
    FKD_TRY(fkd_shim_reorder(g->shim, &r, src, dst, true));
    return fkd__steps_add(steps, r);
}

fkd_status fkd__steps_run(fkd_graph *g, const fkd__steps *steps)
{
    for (int i = 0; i < steps->count; i++) {
        const fkd__step *st = &steps->items[i];
        if (st->seen) {
            if (g->cfg.mode == FKD_GRAPH_INFER && *st->seen == g->weights_version) continue;
            *st->seen = g->weights_version;
        }
        if (st->prim) {
            FKD_TRY(fkd_shim_run(g->shim, st->prim));
            continue;
        }
        FKD_TRY(fkd_shim_wait(g->shim));
        if (st->host) {
            FKD_TRY(st->host(st->ctx));
            continue;
        }
        float *dst = fkd_shim_mem_data(st->dst);
        const float *src = fkd_shim_mem_data(st->src);
        int64_t n = (int64_t)(fkd_shim_mem_bytes(st->dst) / sizeof(float));
        /* Small gradients (batch-norm scale/shift, biases) stay on this thread: a parallel
         * region costs more than the adds, and far more when the cores are shared. */
#pragma omp parallel for simd schedule(static) if (n >= FKD__PARALLEL_MIN)
        for (int64_t k = 0; k < n; k++) dst[k] += src[k];
    }
    return FKD_OK;
}

fkd_status fkd__build_weighted(fkd_graph *g, fkd__node *n, const fkd_pd *fwd,
                               const fkd_pd *bwd_data, const fkd_pd *bwd_weights,
                               const fkd_md *weight_plain, fkd__weights_pass weights_pass)
{
    int x = n->inputs[0], y = n->output, w = n->first_param, b = n->n_params == 2 ? w + 1 : -1;
    fkd__param_impl *pw = &g->pimpl[w], *pb = b >= 0 ? &g->pimpl[b] : NULL;
    FKD_TRY(fkd__value_alloc(g, y, fkd_shim_pd_md(fwd, FKD_ARG_DST)));

    fkd_mem *src, *w_fwd, *b_fwd = NULL;
    fkd_prim *p;
    if (pb) {
        FKD_TRY(fkd__param_alloc(g, b, fkd_shim_pd_md(fwd, FKD_ARG_BIAS), NULL));
        b_fwd = pb->data;
    }
    const fkd_md *fwd_w = fkd_shim_pd_md(fwd, FKD_ARG_WEIGHTS);
    const fkd_param *pp = &g->params[w];
    if (!weight_plain) FKD_TRY(fkd_shim_md_plain(g->shim, &weight_plain, pp->ndims, pp->dims, FKD_DT_F32));
    if (n->fold_bn >= 0) {
        /* Masters plain (the fold reads them row by row); the primitive reads W' and b'. */
        FKD_TRY(fkd__param_alloc(g, w, weight_plain, weight_plain));
        FKD_TRY(fkd__fold_build(g, n, weight_plain, fwd_w, &w_fwd, &b_fwd));
    } else {
        /* Masters in the primitive's layout unless it is opaque (Winograd: reorders cannot
         * read it back for param_read), then plain with a copy. */
        FKD_TRY(fkd__param_alloc(g, w, fkd_shim_md_is_blocked(fwd_w) ? fwd_w : weight_plain, weight_plain));
        FKD_TRY(fkd__param_as(g, &n->fwd, w, fwd_w, &w_fwd));
    }
    FKD_TRY(fkd__value_as(g, &n->fwd, x, fkd_shim_pd_md(fwd, FKD_ARG_SRC), &src));
    FKD_TRY(fkd_shim_prim(g->shim, &p, fwd));
    FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_SRC, src));
    FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_WEIGHTS, w_fwd));
    if (b_fwd) FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_BIAS, b_fwd));
    FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_DST, g->values[y].data));
    FKD_TRY(fkd__steps_add(&n->fwd, p));
    if (!bwd_data) return FKD_OK;

    /* Backward-data (unless nobody reads dx: the graph's input) may want the weights in
     * another layout than forward (the jit kernels do: forcing the forward layout on it
     * selects ref:any), and dy in the layouts the two backward primitives want (one
     * reorder when they agree). */
    fkd_mem *w_bwd, *x_bwd, *dy_d = NULL, *dy_w, *dx, *dw, *db = NULL;
    if (!g->values[x].no_grad) {
        FKD_TRY(fkd__bwd_as(g, n, &n->bwd, pw->data, fkd_shim_pd_md(bwd_data, FKD_ARG_WEIGHTS), &w_bwd));
        FKD_TRY(fkd__grad_as(g, n, &n->bwd, y, fkd_shim_pd_md(bwd_data, FKD_ARG_DIFF_DST), &dy_d));
        FKD_TRY(fkd__dx_target(g, n, x, fkd_shim_pd_md(bwd_data, FKD_ARG_DIFF_SRC), &dx));
        FKD_TRY(fkd_shim_prim(g->shim, &p, bwd_data));
        FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_DIFF_DST, dy_d));
        FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_WEIGHTS, w_bwd));
        FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_DIFF_SRC, dx));
        FKD_TRY(fkd__steps_add(&n->bwd, p));
        FKD_TRY(fkd__dx_done(g, &n->bwd, x, dx));
    }
    FKD_TRY(fkd__saved_input(g, n, &n->bwd, x, src, &x_bwd));
    if (!bwd_weights) return weights_pass(g, n, &n->bwd, x_bwd);
    FKD_TRY(fkd__bwd_as(g, n, &n->bwd, x_bwd, fkd_shim_pd_md(bwd_weights, FKD_ARG_SRC), &x_bwd));
    const fkd_md *want_w = fkd_shim_pd_md(bwd_weights, FKD_ARG_DIFF_DST);
    if (dy_d && fkd_shim_md_equal(want_w, fkd_shim_mem_md(dy_d))) dy_w = dy_d;
    else FKD_TRY(fkd__grad_as(g, n, &n->bwd, y, want_w, &dy_w));

    FKD_TRY(fkd__bwd_temp(g, n, fkd_shim_pd_md(bwd_weights, FKD_ARG_DIFF_WEIGHTS), &dw));
    if (pb) FKD_TRY(fkd__bwd_temp(g, n, fkd_shim_pd_md(bwd_weights, FKD_ARG_DIFF_BIAS), &db));
    FKD_TRY(fkd_shim_prim(g->shim, &p, bwd_weights));
    FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_SRC, x_bwd));
    FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_DIFF_DST, dy_w));
    FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_DIFF_WEIGHTS, dw));
    if (db) FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_DIFF_BIAS, db));
    FKD_TRY(fkd__steps_add(&n->bwd, p));
    FKD_TRY(fkd__accumulate(g, &n->bwd, dw, pw->grad));
    if (db) FKD_TRY(fkd__accumulate(g, &n->bwd, db, pb->grad));
    return FKD_OK;
}

/* ---- finalize -------------------------------------------------------------------------- */

/* Plain-layout edges of a value: reorders to the caller's array and back. */
static fkd_status build_value_edges(fkd_graph *g, fkd__value *v)
{
    const fkd_md *plain; /* the caller's arrays are fp32 whatever the compute type */
    FKD_TRY(fkd_shim_md_plain(g->shim, &plain, v->ndims, v->dims, FKD_DT_F32));
    if (fkd_shim_md_equal(plain, fkd_shim_mem_md(v->data))) return FKD_OK;
    FKD_TRY(fkd_shim_mem_edge(g->shim, &v->edge, plain));
    FKD_TRY(fkd_shim_reorder(g->shim, &v->to_plain, v->data, v->edge, false));
    if (v->grad) FKD_TRY(fkd_shim_reorder(g->shim, &v->grad_from_plain, v->edge, v->grad, true));
    return FKD_OK;
}

/* A TRAIN graph's value v that backward can recompute instead of keeping: its producer
 * can recompute it from its inputs (kept), every consumer reads it for backward through
 * fkd__saved_input, and the caller did not ask for it (input, tap, output). IResNet's
 * bn2 → prelu → conv2: the PReLU's output is recomputed from bn2's output (kept for the
 * PReLU's own backward) right before conv2's backward-weights reads it; bn1 → conv1
 * likewise from the block's input. */
static bool recomputable(const fkd_graph *g, int v)
{
    const fkd__node *p = &g->nodes[g->values[v].producer];
    if (g->cfg.keep_activations || !ops[p->op]->recompute || g->last_use[v] == INT_MAX) return false;
    for (int k = 0; k < p->n_inputs; k++)
        if (g->values[p->inputs[k]].recomputed) return false;
    for (int i = g->values[v].producer + 1; i <= g->last_use[v]; i++) {
        const fkd__node *c = &g->nodes[i];
        for (int k = 0; k < c->n_inputs; k++)
            if (c->inputs[k] == v && (!ops[c->op]->input_recomputable || !ops[c->op]->input_recomputable(g, c)))
                return false;
    }
    return true;
}

/* Which values keep their own buffer: in TRAIN graphs all (backward reads them) but the
 * recomputed ones; inputs, taps and values nobody consumes in INFER graphs. Then INFER
 * fusion, whose fused values share one buffer: its lifetime is the union of theirs. */
static fkd_status plan_lifetimes(fkd_graph *g)
{
    g->last_use = malloc((size_t)g->n_values * sizeof *g->last_use);
    g->grad_until = malloc((size_t)g->n_values * sizeof *g->grad_until);
    if (!g->last_use || !g->grad_until) return FKD_FAIL(FKD_ERR_NOMEM, "graph: out of memory");
    for (int v = 0; v < g->n_values; v++) g->last_use[v] = -1;
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].n_inputs; k++) {
            g->last_use[g->nodes[i].inputs[k]] = i;
            g->values[g->nodes[i].inputs[k]].consumers++;
        }
    for (int t = 0; t < g->n_taps; t++) g->last_use[g->taps[t].value] = INT_MAX;
    bool train = g->cfg.mode == FKD_GRAPH_TRAIN;
    for (int v = 0; v < g->n_values; v++) {
        fkd__value *x = &g->values[v];
        bool input = g->nodes[x->producer].op == FKD__OP_INPUT;
        if (input || g->last_use[v] < 0) g->last_use[v] = INT_MAX;
        x->no_grad = train && input && !g->cfg.input_grad;
        /* Activations: TRAIN graphs keep all (backward reads them). Gradients: shared
         * unless kept for the caller (inputs, taps, outputs). */
        g->grad_until[v] = train ? g->last_use[v] : INT_MAX;
        x->grad_shared = g->grad_until[v] != INT_MAX;
        if (train) x->recomputed = recomputable(g, v);
        if (train && !x->recomputed) g->last_use[v] = INT_MAX;
        x->kept = g->last_use[v] == INT_MAX;
    }
    if (g->cfg.unfused) return FKD_OK;
    if (train) {
        fkd__plan_train_fusion(g);
        return FKD_OK;
    }
    FKD_TRY(fkd__plan_fusion(g));
    for (int v = 0; v < g->n_values; v++) {
        int r = fkd__value_root(g, v);
        if (g->last_use[v] > g->last_use[r]) g->last_use[r] = g->last_use[v];
    }
    return FKD_OK;
}

static fkd_status finalize(fkd_graph *g)
{
    FKD_TRY(plan_lifetimes(g));
    for (int i = 0; i < g->n_nodes; i++) {
        fkd__node *n = &g->nodes[i];
        g->building = i;
        g->node_first_span = g->n_spans;
        g->reuse_at = g->reuse_end = 0;
        fkd_status st = ops[n->op]->build(g, n);
        if (st != FKD_OK) return FKD_WRAP(st, "graph: %s '%s': ", fkd__op_name(n->op), n->name);
    }
    FKD_TRY(build_arena(g));
    for (int i = 0; i < g->n_values; i++)
        if (g->values[i].kept) FKD_TRY(build_value_edges(g, &g->values[i]));
    FKD_TRY(fkd__params_build_edges(g));
    FKD_TRY(fkd_shim_finalize(g->shim));
    g->finalized = true;
    return fkd__params_init(g);
}

fkd_status fkd_graph_finalize(fkd_graph *g)
{
    if (!g) return FKD_FAIL(FKD_ERR_ARG, "graph: NULL graph");
    if (g->broken) return FKD_FAIL(FKD_ERR_ARG, "graph: finalize: an earlier finalize failed");
    if (g->finalized) return FKD_FAIL(FKD_ERR_ARG, "graph: finalize called twice");
    if (g->n_nodes == 0) return FKD_FAIL(FKD_ERR_ARG, "graph: finalize: the graph has no nodes");
    fkd_status st = finalize(g);
    if (st != FKD_OK) {
        g->broken = true;
        g->finalized = false;
    }
    return st;
}

/* ---- running --------------------------------------------------------------------------- */

fkd_status fkd__need_finalized(const fkd_graph *g, const char *what)
{
    if (!g) return FKD_FAIL(FKD_ERR_ARG, "graph: %s: NULL graph", what);
    if (!g->finalized) return FKD_FAIL(FKD_ERR_ARG, "graph: %s before fkd_graph_finalize", what);
    return FKD_OK;
}

static fkd_status need_value(const fkd_graph *g, fkd_value v, const char *what)
{
    FKD_TRY(fkd__need_finalized(g, what));
    if (v < 0 || v >= g->n_values)
        return FKD_FAIL(FKD_ERR_ARG, "graph: %s: value %d does not exist", what, v);
    return FKD_OK;
}

fkd_status fkd_graph_set_training(fkd_graph *g, bool training)
{
    FKD_TRY(fkd__need_finalized(g, "set_training"));
    if (training && g->cfg.mode != FKD_GRAPH_TRAIN)
        return FKD_FAIL(FKD_ERR_ARG, "graph: set_training: an inference graph has no training mode");
    g->training = training;
    return FKD_OK;
}

fkd_status fkd_graph_set_step(fkd_graph *g, uint64_t step)
{
    if (!g) return FKD_FAIL(FKD_ERR_ARG, "graph: set_step: NULL graph");
    g->step = step;
    return FKD_OK;
}

static int64_t value_numel(const fkd__value *v)
{
    int64_t n = 1;
    for (int i = 0; i < v->ndims; i++) n *= v->dims[i];
    return n;
}

static fkd_status find_input(fkd_graph *g, const char *name, const char *what, fkd__value **out)
{
    FKD_TRY(fkd__need_finalized(g, what));
    int n = node_by_name(g, name ? name : "");
    if (n < 0 || g->nodes[n].op != FKD__OP_INPUT)
        return FKD_FAIL(FKD_ERR_NOTFOUND, "graph: %s: no input named '%s'", what, name ? name : "(null)");
    *out = &g->values[g->nodes[n].output];
    return FKD_OK;
}

fkd_status fkd_graph_set_input(fkd_graph *g, const char *name, const float *nchw)
{
    fkd__value *v;
    FKD_TRY(find_input(g, name, "set_input", &v));
    if (!nchw) return FKD_FAIL(FKD_ERR_ARG, "graph: set_input: '%s': NULL data", name);
    /* Inputs are kept plain (see op_input.c). */
    memcpy(fkd_shim_mem_data(v->data), nchw, (size_t)value_numel(v) * sizeof(float));
    return FKD_OK;
}

fkd_status fkd_graph_read_input_grad(fkd_graph *g, const char *name, float *out)
{
    fkd__value *v;
    FKD_TRY(find_input(g, name, "read_input_grad", &v));
    if (!out) return FKD_FAIL(FKD_ERR_ARG, "graph: read_input_grad: '%s': NULL output", name);
    if (!v->grad)
        return FKD_FAIL(FKD_ERR_ARG, "graph: read_input_grad: '%s': an inference graph has no gradients", name);
    if (v->no_grad)
        return FKD_FAIL(FKD_ERR_ARG, "graph: read_input_grad: '%s': the graph was built without config.input_grad",
                        name);
    memcpy(out, fkd_shim_mem_data(v->grad), (size_t)value_numel(v) * sizeof(float));
    return FKD_OK;
}

/* Profiling: the time since t0 to slot (node, pass), once the node's kernels finished. */
static fkd_status profile_add(fkd_graph *g, double t0, int slot)
{
    FKD_TRY(fkd_shim_wait(g->shim));
    g->node_seconds[slot] += fkd_now() - t0;
    return FKD_OK;
}

fkd_status fkd_graph_forward(fkd_graph *g)
{
    FKD_TRY(fkd__need_finalized(g, "forward"));
    for (int i = 0; i < g->n_nodes; i++) {
        fkd__node *n = &g->nodes[i];
        double t0 = g->node_seconds ? fkd_now() : 0;
        fkd_status st = ops[n->op]->forward ? ops[n->op]->forward(g, n) : fkd__steps_run(g, &n->fwd);
        if (st == FKD_OK && g->node_seconds) st = profile_add(g, t0, 2 * i);
        if (st != FKD_OK)
            return FKD_WRAP(st, "graph: forward: %s '%s': ", fkd__op_name(n->op), n->name);
    }
    FKD_TRY(fkd_shim_wait(g->shim));
    if (g->training) g->step++;
    return FKD_OK;
}

static fkd_status clear_consumed_grad(fkd_graph *g, int v)
{
    fkd_mem *dy = g->values[v].grad;
    if (!dy || g->values[v].grad_shared) return FKD_OK;
    FKD_TRY(fkd_shim_wait(g->shim));
    memset(fkd_shim_mem_data(dy), 0, fkd_shim_mem_bytes(dy));
    return FKD_OK;
}

fkd_status fkd_graph_backward(fkd_graph *g)
{
    FKD_TRY(fkd__need_finalized(g, "backward"));
    if (g->cfg.mode != FKD_GRAPH_TRAIN)
        return FKD_FAIL(FKD_ERR_ARG, "graph: backward on an inference graph");
    for (int i = g->n_nodes - 1; i >= 0; i--) {
        fkd__node *n = &g->nodes[i];
        /* Shared gradients start here, at their last consumer's backward: zero unless it
         * writes them whole (their arena bytes held other buffers before). */
        for (int k = 0; k < n->n_inputs; k++) {
            const fkd__value *x = &g->values[n->inputs[k]];
            if (!x->grad || !x->grad_shared || x->grad_overwritten || g->grad_until[n->inputs[k]] != i) continue;
            FKD_TRY(fkd_shim_wait(g->shim));
            memset(fkd_shim_mem_data(x->grad), 0, fkd_shim_mem_bytes(x->grad));
        }
        double t0 = g->node_seconds ? fkd_now() : 0;
        fkd_status st = ops[n->op]->backward ? ops[n->op]->backward(g, n) : fkd__steps_run(g, &n->bwd);
        if (st == FKD_OK && g->node_seconds) st = profile_add(g, t0, 2 * i + 1);
        if (st != FKD_OK)
            return FKD_WRAP(st, "graph: backward: %s '%s': ", fkd__op_name(n->op), n->name);
        /* The node's output gradient is consumed: the next backward (gradient accumulation
         * over micro-batches) starts from what add_grad puts there. Inputs keep theirs;
         * shared gradients end here. A fused PReLU's is consumed by its batch norm's. */
        if (n->op != FKD__OP_INPUT && n->absorbed_by < 0) FKD_TRY(clear_consumed_grad(g, n->output));
        if (n->fused_prelu >= 0) FKD_TRY(clear_consumed_grad(g, g->nodes[n->fused_prelu].output));
    }
    FKD_TRY(fkd_shim_wait(g->shim));
    /* Frozen parameters: the primitives computed their gradients anyway; drop them. */
    for (int i = 0; i < g->n_params; i++)
        if (!g->params[i].trainable && g->params[i].grad)
            memset(g->params[i].grad, 0, fkd_shim_mem_bytes(g->pimpl[i].grad));
    return FKD_OK;
}

fkd_status fkd_graph_read(fkd_graph *g, fkd_value v, float *out)
{
    FKD_TRY(need_value(g, v, "read"));
    if (!out) return FKD_FAIL(FKD_ERR_ARG, "graph: read: NULL output");
    fkd__value *x = &g->values[v];
    if (!x->kept)
        return FKD_FAIL(FKD_ERR_ARG,
                        "graph: read: %s '%s' is not kept (%s; tap it before finalize)",
                        fkd__op_name(g->nodes[x->producer].op), g->nodes[x->producer].name,
                        x->recomputed  ? "recomputed for backward"
                        : x->unstored ? "fused into the PReLU after it, never stored"
                                      : "an inference graph shares its buffer");
    if (!x->edge) {
        memcpy(out, fkd_shim_mem_data(x->data), (size_t)value_numel(x) * sizeof(float));
        return FKD_OK;
    }
    FKD_TRY(fkd_shim_mem_set_handle(x->edge, out));
    FKD_TRY(fkd_shim_run(g->shim, x->to_plain));
    return fkd_shim_wait(g->shim);
}

fkd_status fkd_graph_zero_grad(fkd_graph *g)
{
    FKD_TRY(fkd__need_finalized(g, "zero_grad"));
    for (int i = 0; i < g->n_values; i++)
        if (g->values[i].grad && !g->values[i].grad_shared)
            memset(fkd_shim_mem_data(g->values[i].grad), 0, fkd_shim_mem_bytes(g->values[i].grad));
    for (int i = 0; i < g->n_params; i++)
        if (g->pimpl[i].grad) memset(g->params[i].grad, 0, fkd_shim_mem_bytes(g->pimpl[i].grad));
    return FKD_OK;
}

fkd_status fkd_graph_add_grad(fkd_graph *g, fkd_value v, const float *grad)
{
    FKD_TRY(need_value(g, v, "add_grad"));
    if (!grad) return FKD_FAIL(FKD_ERR_ARG, "graph: add_grad: NULL gradient");
    fkd__value *x = &g->values[v];
    if (!x->grad) return FKD_FAIL(FKD_ERR_ARG, "graph: add_grad: an inference graph has no gradients");
    if (x->grad_shared)
        return FKD_FAIL(FKD_ERR_ARG,
                        "graph: add_grad: %s '%s' shares its gradient buffer inside backward (tap it before finalize)",
                        fkd__op_name(g->nodes[x->producer].op), g->nodes[x->producer].name);
    if (!x->edge) {
        float *d = fkd_shim_mem_data(x->grad);
        int64_t n = value_numel(x);
#pragma omp parallel for schedule(static) if (n >= FKD__PARALLEL_MIN)
        for (int64_t i = 0; i < n; i++) d[i] += grad[i];
        return FKD_OK;
    }
    /* The edge only reads the caller's array. */
    FKD_TRY(fkd_shim_mem_set_handle(x->edge, (void *)grad));
    FKD_TRY(fkd_shim_run(g->shim, x->grad_from_plain));
    return fkd_shim_wait(g->shim);
}

static void append_kernels(char *buf, size_t cap, size_t *used, const char *label,
                           const fkd__steps *steps)
{
    for (int i = 0; i < steps->count && *used < cap; i++) {
        const fkd__step *st = &steps->items[i];
        int n = snprintf(buf + *used, cap - *used, "%s%s", i ? ", " : label,
                         st->prim ? fkd_shim_prim_impl(st->prim) : st->host ? st->label : "add:host");
        if (n > 0) *used += (size_t)n;
    }
}

fkd_status fkd_graph_memory_use(const fkd_graph *g, fkd_graph_memory *out)
{
    FKD_TRY(fkd__need_finalized(g, "memory_use"));
    *out = (fkd_graph_memory){.arena = g->arena_bytes, .arena_live = g->arena_live};
    for (int v = 0; v < g->n_values; v++) {
        const fkd__value *x = &g->values[v];
        if (x->kept && fkd__value_root(g, v) == v) out->kept += fkd_shim_mem_bytes(x->data);
        if (x->grad && !x->grad_shared) out->gradients += fkd_shim_mem_bytes(x->grad);
        out->recomputed += x->recomputed;
    }
    return FKD_OK;
}

fkd_status fkd_graph_kernels(fkd_graph *g, const char *node_name, char *buf, size_t cap)
{
    FKD_TRY(fkd__need_finalized(g, "kernels"));
    int i = node_by_name(g, node_name ? node_name : "");
    if (i < 0) return FKD_FAIL(FKD_ERR_NOTFOUND, "graph: kernels: no node named '%s'", node_name);
    if (cap == 0) return FKD_FAIL(FKD_ERR_ARG, "graph: kernels: empty buffer");
    size_t used = 0;
    buf[0] = '\0';
    if (g->nodes[i].absorbed_by >= 0) {
        snprintf(buf, cap, "forward: fused into '%s'", g->nodes[g->nodes[i].absorbed_by].name);
        return FKD_OK;
    }
    append_kernels(buf, cap, &used, "forward: ", &g->nodes[i].fwd);
    if (used < cap && g->nodes[i].bwd.count)
        append_kernels(buf, cap, &used, used ? "; backward: " : "backward: ", &g->nodes[i].bwd);
    return FKD_OK;
}

fkd_status fkd_graph_set_profiling(fkd_graph *g, bool on)
{
    FKD_TRY(fkd__need_finalized(g, "set_profiling"));
    free(g->node_seconds);
    g->node_seconds = on ? calloc(2 * (size_t)g->n_nodes, sizeof *g->node_seconds) : NULL;
    if (on && !g->node_seconds) return FKD_FAIL(FKD_ERR_NOMEM, "graph: set_profiling: out of memory");
    return FKD_OK;
}

static int by_seconds_desc(const void *a, const void *b)
{
    double x = ((const fkd_graph_profile_row *)a)->seconds, y = ((const fkd_graph_profile_row *)b)->seconds;
    return (x < y) - (x > y);
}

fkd_status fkd_graph_profile(const fkd_graph *g, fkd_graph_profile_row **rows, int *count)
{
    FKD_TRY(fkd__need_finalized(g, "profile"));
    *rows = NULL;
    *count = 0;
    if (!g->node_seconds) return FKD_FAIL(FKD_ERR_ARG, "graph: profile: profiling is off (fkd_graph_set_profiling)");
    fkd_graph_profile_row *out = calloc(2 * (size_t)g->n_nodes, sizeof *out);
    if (!out) return FKD_FAIL(FKD_ERR_NOMEM, "graph: profile: out of memory");
    int m = 0;
    for (int slot = 0; slot < 2 * g->n_nodes; slot++) {
        const fkd__node *n = &g->nodes[slot / 2];
        const fkd__steps *steps = slot % 2 ? &n->bwd : &n->fwd;
        if (!steps->count) continue; /* fused into another node, an input, backward of INFER */
        fkd_graph_profile_row row = {.op = fkd__op_name(n->op), .backward = slot % 2, .nodes = 1,
                                     .seconds = g->node_seconds[slot]};
        size_t used = 0;
        append_kernels(row.kernels, sizeof row.kernels, &used, "", steps);
        int k = 0;
        while (k < m && !(out[k].op == row.op && out[k].backward == row.backward &&
                          strcmp(out[k].kernels, row.kernels) == 0))
            k++;
        if (k == m)
            out[m++] = row;
        else {
            out[k].nodes++;
            out[k].seconds += row.seconds;
        }
    }
    qsort(out, (size_t)m, sizeof *out, by_seconds_desc);
    *rows = out;
    *count = m;
    return FKD_OK;
}
