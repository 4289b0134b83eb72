/* Inverted dropout: in training y = x · m with m = 1/(1 − p) kept, 0 dropped; identity in
 * eval. The mask is drawn per physical element (layout padding included, where x is 0)
 * from (config seed, node, step) in chunks with their own random streams, so it does not
 * depend on the thread count.
 * Shapes: x, y, m the same (x's layout). Backward: dx += dy · m (training), dx += dy. */
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "nn/op.h"

typedef struct {
    float p;
    fkd_mem *mask; /* TRAIN graphs with p > 0 */
} dropout_state;

enum { CHUNK = 4096 };

fkd_value fkd_graph_dropout(fkd_graph *g, const char *name, fkd_value x, float p)
{
    fkd_status st = fkd__check_inputs(g, FKD__OP_DROPOUT, name, &x, 1);
    if (st != FKD_OK) return st;
    if (!(p >= 0.0f && p < 1.0f))
        return FKD_FAIL(FKD_ERR_ARG, "graph: dropout '%s': p = %g must be in [0, 1)", name, p);
    dropout_state *s = calloc(1, sizeof *s);
    if (!s) return FKD_FAIL(FKD_ERR_NOMEM, "graph: dropout '%s': out of memory", name);
    s->p = p;
    const fkd__value *v = &g->values[x];
    return fkd__node_add(g, FKD__OP_DROPOUT, name, &x, 1, s, v->ndims, v->dims);
}

static fkd_status dropout_build(fkd_graph *g, fkd__node *n)
{
    dropout_state *s = n->state;
    const fkd_md *md = fkd_shim_mem_md(g->values[n->inputs[0]].data);
    /* The mask loops are fp32 host code. */
    if (fkd_shim_md_dtype(md) != FKD_DT_F32)
        return FKD_FAIL(FKD_ERR_UNSUPPORTED, "dropout on bf16 values is not implemented (use fp32 or p = 0)");
    FKD_TRY(fkd__value_alloc(g, n->output, md));
    if (g->cfg.mode == FKD_GRAPH_TRAIN && s->p > 0.0f) FKD_TRY(fkd_shim_mem(g->shim, &s->mask, md));
    return FKD_OK;
}

static bool active(const fkd_graph *g, const dropout_state *s)
{
    return g->training && s->mask;
}

static fkd_status dropout_forward(fkd_graph *g, fkd__node *n)
{
    dropout_state *s = n->state;
    const fkd__value *x = &g->values[n->inputs[0]], *y = &g->values[n->output];
    FKD_TRY(fkd_shim_wait(g->shim));
    const float *xd = fkd_shim_mem_data(x->data);
    float *yd = fkd_shim_mem_data(y->data);
    size_t count = fkd_shim_mem_bytes(x->data) / sizeof(float);
    if (!active(g, s)) {
        memcpy(yd, xd, count * sizeof(float));
        return FKD_OK;
    }
    float *m = fkd_shim_mem_data(s->mask);
    const double p = s->p;
    const float keep = 1.0f / (1.0f - s->p);
    uint64_t stream = fkd_hash_mix(fkd_hash_mix(0xd50f0a7ULL, (uint64_t)(n - g->nodes)), g->step);
    int64_t chunks = (int64_t)((count + CHUNK - 1) / CHUNK);
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < chunks; c++) {
        fkd_rng rng;
        fkd_rng_seed(&rng, g->cfg.seed, fkd_hash_mix(stream, (uint64_t)c));
        size_t end = (size_t)(c + 1) * CHUNK < count ? (size_t)(c + 1) * CHUNK : count;
        for (size_t i = (size_t)c * CHUNK; i < end; i++) {
            m[i] = fkd_rng_uniform(&rng) >= p ? keep : 0.0f;
            yd[i] = xd[i] * m[i];
        }
    }
    return FKD_OK;
}

static fkd_status dropout_backward(fkd_graph *g, fkd__node *n)
{
    dropout_state *s = n->state;
    const fkd__value *x = &g->values[n->inputs[0]], *y = &g->values[n->output];
    FKD_TRY(fkd_shim_wait(g->shim));
    float *dx = fkd_shim_mem_data(x->grad);
    const float *dy = fkd_shim_mem_data(y->grad);
    const float *m = active(g, s) ? fkd_shim_mem_data(s->mask) : NULL;
    int64_t count = (int64_t)(fkd_shim_mem_bytes(x->grad) / sizeof(float));
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < count; i++) dx[i] += m ? dy[i] * m[i] : dy[i];
    return FKD_OK;
}

const fkd__op fkd__op_dropout = {.build = dropout_build, .forward = dropout_forward,
                                 .backward = dropout_backward};
