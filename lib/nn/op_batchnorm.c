/* Batch normalisation (BatchNorm2d on 4-D values, BatchNorm1d on 2-D), PyTorch semantics.
 *
 * Shapes: x, y (N, C, H, W) or (N, C) in x's layout; γ, β, μ_run, σ²_run, μ, σ² (C).
 * Training: μ, σ² = batch mean and biased variance over M = N·H·W values per channel,
 *   y = γ (x − μ) / sqrt(σ² + eps) + β, then
 *   μ_run ← (1 − m) μ_run + m μ,  σ²_run ← (1 − m) σ²_run + m σ² M / (M − 1)  (unbiased).
 * Eval: the same with μ_run, σ²_run (oneDNN's use_global_stats).
 * Backward (training): oneDNN's full derivative through the batch statistics; in eval mode
 * the statistics are constants. dγ, dβ, dx accumulate. */
#include <stdlib.h>

#include "nn/op.h"

/* Steps: n->fwd / n->bwd run with batch statistics in TRAIN graphs, with running
 * statistics in INFER graphs; eval_fwd / eval_bwd are the running-statistics steps of a
 * TRAIN graph in eval mode. */
typedef struct {
    float eps, momentum;
    fkd_mem *mean, *var; /* batch statistics of the last training forward, (C) */
    fkd__steps eval_fwd, eval_bwd;
} bn_state;

fkd_value fkd_graph_batchnorm(fkd_graph *g, const char *name, fkd_value x, float eps, float momentum)
{
    fkd_status st = fkd__check_inputs(g, FKD__OP_BATCHNORM, name, &x, 1);
    if (st != FKD_OK) return st;
    const fkd__value *v = &g->values[x];
    if (v->ndims != 2 && v->ndims != 4)
        return FKD_FAIL(FKD_ERR_ARG, "graph: batchnorm '%s': input must be 2-D or 4-D", name);
    if (!(eps > 0.0f) || !(momentum >= 0.0f && momentum <= 1.0f))
        return FKD_FAIL(FKD_ERR_ARG, "graph: batchnorm '%s': eps %g must be > 0, momentum %g in [0, 1]",
                        name, eps, momentum);
    bn_state *s = calloc(1, sizeof *s);
    if (!s) return FKD_FAIL(FKD_ERR_NOMEM, "graph: batchnorm '%s': out of memory", name);
    s->eps = eps;
    s->momentum = momentum;
    fkd_value y = fkd__node_add(g, FKD__OP_BATCHNORM, name, &x, 1, s, v->ndims, v->dims);
    if (y < 0) return y;
    const int64_t c[1] = {g->values[x].dims[1]};
    st = fkd__param_declare(g, "weight", 1, c, FKD__INIT_ONE, 0, false, false);
    if (st == FKD_OK) st = fkd__param_declare(g, "bias", 1, c, FKD__INIT_ZERO, 0, false, false);
    if (st == FKD_OK) st = fkd__param_declare(g, "running_mean", 1, c, FKD__INIT_ZERO, 0, true, false);
    if (st == FKD_OK) st = fkd__param_declare(g, "running_var", 1, c, FKD__INIT_ONE, 0, true, false);
    return st == FKD_OK ? y : st;
}

/* Forward and backward steps with the given statistics (batch or running). */
static fkd_status build_mode(fkd_graph *g, fkd__node *n, bool global_stats, fkd_mem *mean,
                             fkd_mem *var, fkd__steps *fwd_steps, fkd__steps *bwd_steps)
{
    const bn_state *s = n->state;
    bool train_graph = g->cfg.mode == FKD_GRAPH_TRAIN;
    int x = n->inputs[0], y = n->output;
    fkd__param_impl *gamma = &g->pimpl[n->first_param], *beta = gamma + 1;
    const fkd_md *data = fkd_shim_mem_md(g->values[x].data);
    fkd_pd *fwd, *bwd;
    fkd_prim *p;
    /* forward_training even with global stats in a TRAIN graph: backward needs the hint. */
    FKD_TRY(fkd_shim_bnorm_fwd_pd(g->shim, &fwd, train_graph, data, s->eps, global_stats));
    FKD_TRY(fkd_shim_prim(g->shim, &p, fwd));
    FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_SRC, g->values[x].data));
    FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_DST, g->values[y].data));
    FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_SCALE, gamma->data));
    FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_SHIFT, beta->data));
    FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_MEAN, mean));
    FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_VARIANCE, var));
    FKD_TRY(fkd__steps_add(fwd_steps, p));
    if (!train_graph) return FKD_OK;

    fkd_mem *dy, *dx, *dgamma, *dbeta;
    FKD_TRY(fkd_shim_bnorm_bwd_pd(g->shim, &bwd, data, data, s->eps, global_stats, fwd));
    FKD_TRY(fkd__grad_as(g, n, bwd_steps, y, fkd_shim_pd_md(bwd, FKD_ARG_DIFF_DST), &dy));
    FKD_TRY(fkd__dx_target(g, n, x, fkd_shim_pd_md(bwd, FKD_ARG_DIFF_SRC), &dx));
    FKD_TRY(fkd__bwd_temp(g, n, fkd_shim_pd_md(bwd, FKD_ARG_DIFF_SCALE), &dgamma));
    FKD_TRY(fkd__bwd_temp(g, n, fkd_shim_pd_md(bwd, FKD_ARG_DIFF_SHIFT), &dbeta));
    FKD_TRY(fkd_shim_prim(g->shim, &p, bwd));
    FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_SRC, g->values[x].data));
    FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_MEAN, mean));
    FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_VARIANCE, var));
    FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_SCALE, gamma->data));
    FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_SHIFT, beta->data));
    FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_DIFF_DST, dy));
    FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_DIFF_SRC, dx));
    FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_DIFF_SCALE, dgamma));
    FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_DIFF_SHIFT, dbeta));
    FKD_TRY(fkd__steps_add(bwd_steps, p));
    FKD_TRY(fkd__dx_done(g, bwd_steps, x, dx));
    FKD_TRY(fkd__accumulate(g, bwd_steps, dgamma, gamma->grad));
    return fkd__accumulate(g, bwd_steps, dbeta, beta->grad);
}

static fkd_status bn_build(fkd_graph *g, fkd__node *n)
{
    bn_state *s = n->state;
    int x = n->inputs[0], p0 = n->first_param;
    const fkd_md *data = fkd_shim_mem_md(g->values[x].data), *stat;
    const int64_t c[1] = {g->values[x].dims[1]};
    FKD_TRY(fkd_shim_md_plain(g->shim, &stat, 1, c, FKD_DT_F32));
    FKD_TRY(fkd__value_alloc(g, n->output, data));
    for (int i = 0; i < 4; i++) FKD_TRY(fkd__param_alloc(g, p0 + i, stat, NULL));
    /* Folded into the layer before it (fuse.c): the output is that layer's; no steps. */
    if (n->absorbed_by >= 0) return FKD_OK;
    fkd__param_impl *run = &g->pimpl[p0 + 2];
    if (g->cfg.mode != FKD_GRAPH_TRAIN)
        return build_mode(g, n, true, run[0].data, run[1].data, &n->fwd, &n->bwd);
    FKD_TRY(build_mode(g, n, true, run[0].data, run[1].data, &s->eval_fwd, &s->eval_bwd));
    FKD_TRY(fkd_shim_mem(g->shim, &s->mean, stat));
    FKD_TRY(fkd_shim_mem(g->shim, &s->var, stat));
    return build_mode(g, n, false, s->mean, s->var, &n->fwd, &n->bwd);
}

static fkd_status bn_forward(fkd_graph *g, fkd__node *n)
{
    bn_state *s = n->state;
    if (g->cfg.mode != FKD_GRAPH_TRAIN) return fkd__steps_run(g, &n->fwd);
    if (!g->training) return fkd__steps_run(g, &s->eval_fwd);
    FKD_TRY(fkd__steps_run(g, &n->fwd));
    FKD_TRY(fkd_shim_wait(g->shim));
    const fkd__value *x = &g->values[n->inputs[0]];
    int64_t c = x->dims[1], m = x->dims[0] * (x->ndims == 4 ? x->dims[2] * x->dims[3] : 1);
    double unbias = m > 1 ? (double)m / (double)(m - 1) : 1.0, mom = s->momentum;
    const float *mean = fkd_shim_mem_data(s->mean), *var = fkd_shim_mem_data(s->var);
    float *run_mean = g->params[n->first_param + 2].data, *run_var = g->params[n->first_param + 3].data;
    for (int64_t i = 0; i < c; i++) {
        run_mean[i] = (float)((1.0 - mom) * run_mean[i] + mom * mean[i]);
        run_var[i] = (float)((1.0 - mom) * run_var[i] + mom * var[i] * unbias);
    }
    return FKD_OK;
}

static fkd_status bn_backward(fkd_graph *g, fkd__node *n)
{
    bn_state *s = n->state;
    return fkd__steps_run(g, g->training ? &n->bwd : &s->eval_bwd);
}

static void bn_free(fkd__node *n)
{
    bn_state *s = n->state;
    free(s->eval_fwd.items);
    free(s->eval_bwd.items);
}

const fkd__op fkd__op_batchnorm = {.build = bn_build, .forward = bn_forward, .backward = bn_backward,
                                   .free = bn_free};

float fkd__batchnorm_eps(const fkd__node *n)
{
    return ((const bn_state *)n->state)->eps;
}
