/* Parameters and buffers: declaration, storage in the engine's layout, plain-layout
 * copies in and out, PyTorch-style initialisation, freezing, counting. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "nn/graph.h"
#include "nn/op.h"

fkd_status fkd__param_declare(fkd_graph *g, const char *suffix, int ndims, const int64_t *dims,
                              fkd__init init, float init_value, bool is_buffer, bool decay)
{
    fkd__node *n = &g->nodes[g->n_nodes - 1];
    FKD_TRY(fkd__grow((void **)&g->params, &g->cap_params, g->n_params + 1, sizeof *g->params));
    void *pi = realloc(g->pimpl, (size_t)g->cap_params * sizeof *g->pimpl);
    if (!pi) return FKD_FAIL(FKD_ERR_NOMEM, "graph: out of memory");
    g->pimpl = pi;
    size_t len = strlen(n->name) + 1 + strlen(suffix) + 1;
    char *full = malloc(len);
    if (!full) return FKD_FAIL(FKD_ERR_NOMEM, "graph: out of memory");
    snprintf(full, len, "%s.%s", n->name, suffix);
    fkd_param *p = &g->params[g->n_params];
    memset(p, 0, sizeof *p);
    p->name = full;
    p->ndims = ndims;
    p->numel = 1;
    for (int i = 0; i < ndims; i++) {
        p->dims[i] = dims[i];
        p->numel *= dims[i];
    }
    p->is_buffer = is_buffer;
    p->trainable = !is_buffer;
    p->decay = decay;
    fkd__param_impl *im = &g->pimpl[g->n_params];
    memset(im, 0, sizeof *im);
    im->init = init;
    im->init_value = init_value;
    n->n_params++;
    g->n_params++;
    return FKD_OK;
}

static int param_by_name(const fkd_graph *g, const char *name)
{
    for (int i = 0; i < g->n_params; i++)
        if (strcmp(g->params[i].name, name) == 0) return i;
    return -1;
}

fkd_status fkd_graph_freeze(fkd_graph *g, const char *param_name)
{
    if (!g) return FKD_FAIL(FKD_ERR_ARG, "graph: freeze: NULL graph");
    int i = param_by_name(g, param_name ? param_name : "");
    if (i < 0) return FKD_FAIL(FKD_ERR_NOTFOUND, "graph: freeze: no parameter '%s'", param_name);
    if (g->params[i].is_buffer)
        return FKD_FAIL(FKD_ERR_ARG, "graph: freeze: '%s' is a buffer, not a parameter", param_name);
    g->params[i].trainable = false;
    if (g->params[i].grad)
        memset(g->params[i].grad, 0, fkd_shim_mem_bytes(g->pimpl[i].grad));
    return FKD_OK;
}

fkd_status fkd__param_alloc(fkd_graph *g, int param, const fkd_md *md, const fkd_md *plain)
{
    fkd_param *p = &g->params[param];
    fkd__param_impl *im = &g->pimpl[param];
    im->plain = plain;
    /* Master copies are fp32 in the primitive's layout; a bf16 primitive reads a copy made
     * each forward (fkd__mem_as in the op's build). */
    if (fkd_shim_md_dtype(md) != FKD_DT_F32) FKD_TRY(fkd_shim_md_as(g->shim, &md, md, FKD_DT_F32));
    FKD_TRY(fkd_shim_mem(g->shim, &im->data, md));
    p->data = fkd_shim_mem_data(im->data);
    p->storage = fkd_shim_mem_bytes(im->data) / sizeof(float);
    if (!p->is_buffer && g->cfg.mode == FKD_GRAPH_TRAIN) {
        FKD_TRY(fkd_shim_mem(g->shim, &im->grad, md));
        p->grad = fkd_shim_mem_data(im->grad);
    }
    return FKD_OK;
}

static fkd_status build_param_edges(fkd_graph *g, int i)
{
    fkd_param *p = &g->params[i];
    fkd__param_impl *im = &g->pimpl[i];
    if (!im->data)
        return FKD_FAIL(FKD_ERR_ARG, "graph: parameter '%s' got no storage", p->name);
    if (!im->plain) FKD_TRY(fkd_shim_md_plain(g->shim, &im->plain, p->ndims, p->dims, FKD_DT_F32));
    if (fkd_shim_md_equal(im->plain, fkd_shim_mem_md(im->data))) return FKD_OK;
    FKD_TRY(fkd_shim_mem_edge(g->shim, &im->edge, im->plain));
    FKD_TRY(fkd_shim_reorder(g->shim, &im->to_plain, im->data, im->edge, false));
    FKD_TRY(fkd_shim_reorder(g->shim, &im->from_plain, im->edge, im->data, false));
    if (im->grad) FKD_TRY(fkd_shim_reorder(g->shim, &im->grad_to_plain, im->grad, im->edge, false));
    return FKD_OK;
}

/* PyTorch's defaults, deterministic from the seed: one random stream per parameter. */
fkd_status fkd__params_init(fkd_graph *g)
{
    g->weights_version++;
    int64_t most = 0;
    for (int i = 0; i < g->n_params; i++)
        if (g->params[i].numel > most) most = g->params[i].numel;
    float *plain = malloc((size_t)(most ? most : 1) * sizeof *plain);
    if (!plain) return FKD_FAIL(FKD_ERR_NOMEM, "graph: out of memory");
    fkd_status st = FKD_OK;
    for (int i = 0; i < g->n_params && st == FKD_OK; i++) {
        const fkd__param_impl *im = &g->pimpl[i];
        fkd_rng rng;
        fkd_rng_seed(&rng, g->cfg.seed, fkd_hash_mix(0x9a7a3e7e5ULL, (uint64_t)i));
        for (int64_t k = 0; k < g->params[i].numel; k++) {
            switch (im->init) {
            case FKD__INIT_ZERO: plain[k] = 0.0f; break;
            case FKD__INIT_ONE: plain[k] = 1.0f; break;
            case FKD__INIT_CONST: plain[k] = im->init_value; break;
            case FKD__INIT_UNIFORM:
                plain[k] = (float)((2.0 * fkd_rng_uniform(&rng) - 1.0) * im->init_value);
                break;
            }
        }
        st = fkd_graph_param_write(g, i, plain);
    }
    free(plain);
    return st;
}

fkd_status fkd_graph_params(fkd_graph *g, fkd_param **params, int *count)
{
    FKD_TRY(fkd__need_finalized(g, "params"));
    g->weights_version++; /* the caller may write through the pointers */
    *params = g->params;
    *count = g->n_params;
    return FKD_OK;
}

static fkd_status need_param(fkd_graph *g, int index, const void *plain, const char *what)
{
    FKD_TRY(fkd__need_finalized(g, what));
    if (!plain) return FKD_FAIL(FKD_ERR_ARG, "graph: %s: NULL array", what);
    if (index < 0 || index >= g->n_params)
        return FKD_FAIL(FKD_ERR_ARG, "graph: %s: parameter %d does not exist", what, index);
    return FKD_OK;
}

/* Plain copy of a parameter's data or gradient (engine memory `m`, reorder `to_plain`). */
static fkd_status param_to_plain(fkd_graph *g, int index, fkd_mem *m, fkd_prim *to_plain,
                                 float *plain)
{
    fkd__param_impl *im = &g->pimpl[index];
    if (!im->edge) {
        memcpy(plain, fkd_shim_mem_data(m), (size_t)g->params[index].numel * sizeof(float));
        return FKD_OK;
    }
    FKD_TRY(fkd_shim_mem_set_handle(im->edge, plain));
    FKD_TRY(fkd_shim_run(g->shim, to_plain));
    return fkd_shim_wait(g->shim);
}

fkd_status fkd_graph_param_read(fkd_graph *g, int index, float *plain)
{
    FKD_TRY(need_param(g, index, plain, "param_read"));
    return param_to_plain(g, index, g->pimpl[index].data, g->pimpl[index].to_plain, plain);
}

fkd_status fkd_graph_param_read_grad(fkd_graph *g, int index, float *plain)
{
    FKD_TRY(need_param(g, index, plain, "param_read_grad"));
    if (!g->pimpl[index].grad)
        return FKD_FAIL(FKD_ERR_ARG, "graph: param_read_grad: '%s' has no gradient", g->params[index].name);
    return param_to_plain(g, index, g->pimpl[index].grad, g->pimpl[index].grad_to_plain, plain);
}

fkd_status fkd_graph_param_write(fkd_graph *g, int index, const float *plain)
{
    FKD_TRY(need_param(g, index, plain, "param_write"));
    g->weights_version++;
    fkd__param_impl *im = &g->pimpl[index];
    if (!im->edge) {
        memcpy(g->params[index].data, plain, (size_t)g->params[index].numel * sizeof(float));
        return FKD_OK;
    }
    FKD_TRY(fkd_shim_mem_set_handle(im->edge, (void *)plain));
    FKD_TRY(fkd_shim_run(g->shim, im->from_plain));
    return fkd_shim_wait(g->shim);
}

fkd_status fkd_graph_count(const fkd_graph *g, int64_t *parameters, int64_t *macs)
{
    if (!g) return FKD_FAIL(FKD_ERR_ARG, "graph: count: NULL graph");
    int64_t n = 0;
    for (int i = 0; i < g->n_params; i++)
        if (!g->params[i].is_buffer) n += g->params[i].numel;
    if (parameters) *parameters = n;
    if (macs) *macs = g->macs;
    return FKD_OK;
}

fkd_status fkd__params_build_edges(fkd_graph *g)
{
    for (int i = 0; i < g->n_params; i++) FKD_TRY(build_param_edges(g, i));
    return FKD_OK;
}
