/* Batch normalisation (BatchNorm2d on 4-D values, BatchNorm1d on 2-D), PyTorch semantics.
 *
 * Shapes: x, y (N, C, H, W) or (N, C) in x's layout; γ, β, μ_run, σ²_run, μ, σ² (C).
 * Training: μ, σ² = batch mean and biased variance over M = N·H·W values per channel,
 *   y = γ (x − μ) / sqrt(σ² + eps) + β, then
 *   μ_run ← (1 − m) μ_run + m μ,  σ²_run ← (1 − m) σ²_run + m σ² M / (M − 1)  (unbiased).
 * Eval: the same with μ_run, σ²_run (oneDNN's use_global_stats).
 * Backward (training): oneDNN's full derivative through the batch statistics; in eval mode
 * the statistics are constants. dγ, dβ, dx accumulate.
 *
 * Synchronised (config sync_bn, TRAIN graphs in training mode): the statistics are those
 * of the global batch of every rank, M_g = world·M values per channel. Forward: oneDNN
 * computes this rank's μ_r, σ²_r; one reduction of (μ_r, σ²_r + μ_r²) gives
 *   μ = mean_r μ_r,  σ² = mean_r (σ²_r + μ_r²) − μ²   (equal batches on every rank)
 * and y is computed with them as constants. Backward: with x̂ = (x − μ)/σ, σ = sqrt(σ² + eps),
 *   dx = γ/σ (dy − Σ_g dy / M_g − x̂ Σ_g (dy x̂) / M_g)
 * where Σ_g sums over the global batch. oneDNN's backward with constant statistics gives
 * the first term γ/σ dy and this rank's dβ_r = Σ dy, dγ_r = Σ dy x̂; one reduction gives
 * the global sums, and the rest, a per-channel a·x̂ + b, is one more batch-norm forward
 * with scale a = −γ Σ_g(dy x̂)/(σ M_g) and shift b = −γ Σ_g dy/(σ M_g). Each rank's dy is
 * the gradient of its own mean loss, world times that of the global mean loss: dx comes
 * out scaled the same way, as every other gradient before lib/dist averages them; dγ, dβ
 * keep this rank's share and are averaged with the other parameters. */
#include <math.h>
#include <stdlib.h>

#include "dist/dist.h"
#include "nn/bnact.h"
#include "nn/op.h"

/* Steps: n->fwd / n->bwd run with batch statistics in TRAIN graphs, with running
 * statistics in INFER graphs; eval_fwd / eval_bwd are the running-statistics steps of a
 * TRAIN graph in eval mode. */
typedef struct {
    float eps, momentum;
    fkd_mem *mean, *var; /* batch statistics of the last training forward, (C) */
    fkd__steps eval_fwd, eval_bwd;
    /* sync_bn */
    bool sync;
    int64_t channels, per_rank;      /* C; M values per channel on this rank */
    const fkd_param *gamma;          /* γ (C), plain; its data is read at run time */
    fkd_mem *dgamma, *dbeta;         /* (C) this rank's Σ dy x̂, Σ dy (backward temporaries) */
    fkd_mem *corr_scale, *corr_shift; /* (C) a, b of the backward's correction a·x̂ + b */
    double *sums;                    /* (2C) what is reduced */
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

/* Appends a forward primitive of `fwd` computing dst = scale (src − mean)/sqrt(var + eps) + shift. */
static fkd_status add_forward(fkd_graph *g, fkd_pd *fwd, fkd_mem *src, fkd_mem *dst, fkd_mem *scale,
                              fkd_mem *shift, fkd_mem *mean, fkd_mem *var, fkd__steps *steps)
{
    fkd_prim *p;
    FKD_TRY(fkd_shim_prim(g->shim, &p, fwd));
    FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_SRC, src));
    FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_DST, dst));
    FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_SCALE, scale));
    FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_SHIFT, shift));
    FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_MEAN, mean));
    FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_VARIANCE, var));
    return fkd__steps_add(steps, p);
}

/* Appends oneDNN's backward (statistics from `mean`, `var`; constants when global_stats):
 * dx to its target, dγ and dβ into temporaries *dgamma, *dbeta. The caller appends what
 * follows (corrections, then fkd__dx_done and the accumulation of dγ, dβ). */
static fkd_status add_backward(fkd_graph *g, fkd__node *n, fkd_pd *fwd, bool global_stats, fkd_mem *mean,
                               fkd_mem *var, fkd__steps *steps, fkd_mem **dx, fkd_mem **dgamma, fkd_mem **dbeta)
{
    const bn_state *s = n->state;
    int x = n->inputs[0], y = n->output;
    fkd__param_impl *gamma = &g->pimpl[n->first_param], *beta = gamma + 1;
    const fkd_md *data = fkd_shim_mem_md(g->values[x].data);
    fkd_pd *bwd;
    fkd_prim *p;
    fkd_mem *dy;
    FKD_TRY(fkd_shim_bnorm_bwd_pd(g->shim, &bwd, data, data, s->eps, global_stats, fwd));
    FKD_TRY(fkd__grad_as(g, n, steps, y, fkd_shim_pd_md(bwd, FKD_ARG_DIFF_DST), &dy));
    FKD_TRY(fkd__dx_target(g, n, x, fkd_shim_pd_md(bwd, FKD_ARG_DIFF_SRC), dx));
    FKD_TRY(fkd__bwd_temp(g, n, fkd_shim_pd_md(bwd, FKD_ARG_DIFF_SCALE), dgamma));
    FKD_TRY(fkd__bwd_temp(g, n, fkd_shim_pd_md(bwd, FKD_ARG_DIFF_SHIFT), dbeta));
    FKD_TRY(fkd_shim_prim(g->shim, &p, bwd));
    FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_SRC, g->values[x].data));
    FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_MEAN, mean));
    FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_VARIANCE, var));
    FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_SCALE, gamma->data));
    FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_SHIFT, beta->data));
    FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_DIFF_DST, dy));
    FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_DIFF_SRC, *dx));
    FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_DIFF_SCALE, *dgamma));
    FKD_TRY(fkd_shim_prim_bind(p, FKD_ARG_DIFF_SHIFT, *dbeta));
    return fkd__steps_add(steps, p);
}

/* dx into x's gradient, dγ and dβ into the parameters' gradients. */
static fkd_status add_backward_done(fkd_graph *g, fkd__node *n, fkd__steps *steps, fkd_mem *dx, fkd_mem *dgamma,
                                    fkd_mem *dbeta)
{
    fkd__param_impl *gamma = &g->pimpl[n->first_param], *beta = gamma + 1;
    FKD_TRY(fkd__dx_done(g, steps, n->inputs[0], dx));
    FKD_TRY(fkd__accumulate(g, steps, dgamma, gamma->grad));
    return fkd__accumulate(g, steps, dbeta, beta->grad);
}

/* Forward and backward steps with the given statistics (batch or running). */
static fkd_status build_mode(fkd_graph *g, fkd__node *n, bool global_stats, fkd_mem *mean,
                             fkd_mem *var, fkd__steps *fwd_steps, fkd__steps *bwd_steps)
{
    const bn_state *s = n->state;
    bool train_graph = g->cfg.mode == FKD_GRAPH_TRAIN;
    int x = n->inputs[0], y = n->output;
    fkd__param_impl *gamma = &g->pimpl[n->first_param], *beta = gamma + 1;
    fkd_pd *fwd;
    /* forward_training even with global stats in a TRAIN graph: backward needs the hint. */
    FKD_TRY(fkd_shim_bnorm_fwd_pd(g->shim, &fwd, train_graph, fkd_shim_mem_md(g->values[x].data), s->eps,
                                  global_stats));
    FKD_TRY(add_forward(g, fwd, g->values[x].data, g->values[y].data, gamma->data, beta->data, mean, var, fwd_steps));
    if (!train_graph) return FKD_OK;
    fkd_mem *dx, *dgamma, *dbeta;
    FKD_TRY(add_backward(g, n, fwd, global_stats, mean, var, bwd_steps, &dx, &dgamma, &dbeta));
    return add_backward_done(g, n, bwd_steps, dx, dgamma, dbeta);
}

/* Host step of the synchronised forward: this rank's (μ_r, σ²_r) in s->mean, s->var
 * become the global batch's (μ, σ²). */
static fkd_status sync_statistics(void *ctx)
{
    bn_state *s = ctx;
    int64_t c = s->channels;
    float *mean = fkd_shim_mem_data(s->mean), *var = fkd_shim_mem_data(s->var);
    for (int64_t i = 0; i < c; i++) {
        s->sums[i] = mean[i];
        s->sums[c + i] = (double)var[i] + (double)mean[i] * mean[i];
    }
    FKD_TRY(fkd_dist_allreduce_f64(s->sums, (size_t)(2 * c)));
    double inv = 1.0 / fkd_dist_world();
    for (int64_t i = 0; i < c; i++) {
        double mu = s->sums[i] * inv, var_g = s->sums[c + i] * inv - mu * mu;
        mean[i] = (float)mu;
        var[i] = (float)(var_g > 0 ? var_g : 0);
    }
    return FKD_OK;
}

/* Host step of the synchronised backward: the global Σ dy x̂ and Σ dy give the
 * correction's per-channel scale and shift. */
static fkd_status sync_gradient_sums(void *ctx)
{
    bn_state *s = ctx;
    int64_t c = s->channels;
    const float *dgamma = fkd_shim_mem_data(s->dgamma), *dbeta = fkd_shim_mem_data(s->dbeta);
    const float *var = fkd_shim_mem_data(s->var);
    float *a = fkd_shim_mem_data(s->corr_scale), *b = fkd_shim_mem_data(s->corr_shift);
    for (int64_t i = 0; i < c; i++) {
        s->sums[i] = dgamma[i];
        s->sums[c + i] = dbeta[i];
    }
    FKD_TRY(fkd_dist_allreduce_f64(s->sums, (size_t)(2 * c)));
    double m_global = (double)s->per_rank * fkd_dist_world();
    for (int64_t i = 0; i < c; i++) {
        double k = -(double)s->gamma->data[i] / (sqrt((double)var[i] + s->eps) * m_global);
        a[i] = (float)(k * s->sums[i]);
        b[i] = (float)(k * s->sums[c + i]);
    }
    return FKD_OK;
}

/* The training-mode steps of a synchronised batch norm (see the top of the file):
 *   forward:  local statistics → reduce → y with the global statistics
 *   backward: γ/σ dy, dγ_r, dβ_r → reduce → dx += a·x̂ + b */
static fkd_status build_sync(fkd_graph *g, fkd__node *n, const fkd_md *stat)
{
    bn_state *s = n->state;
    int x = n->inputs[0], y = n->output;
    fkd__param_impl *gamma = &g->pimpl[n->first_param], *beta = gamma + 1;
    const fkd__value *xv = &g->values[x];
    const fkd_md *data = fkd_shim_mem_md(xv->data);
    s->channels = xv->dims[1];
    s->per_rank = xv->dims[0] * (xv->ndims == 4 ? xv->dims[2] * xv->dims[3] : 1);
    s->gamma = &g->params[n->first_param];
    s->sums = malloc(sizeof(double) * 2 * (size_t)s->channels);
    if (!s->sums) return FKD_FAIL(FKD_ERR_NOMEM, "graph: batchnorm '%s': out of memory", n->name);
    FKD_TRY(fkd_shim_mem(g->shim, &s->corr_scale, stat));
    FKD_TRY(fkd_shim_mem(g->shim, &s->corr_shift, stat));

    fkd_pd *local, *global;
    FKD_TRY(fkd_shim_bnorm_fwd_pd(g->shim, &local, true, data, s->eps, false));
    FKD_TRY(fkd_shim_bnorm_fwd_pd(g->shim, &global, true, data, s->eps, true));
    FKD_TRY(add_forward(g, local, xv->data, g->values[y].data, gamma->data, beta->data, s->mean, s->var, &n->fwd));
    FKD_TRY(fkd__steps_add_host(&n->fwd, sync_statistics, s, "sync_bn statistics (MPI_Allreduce)"));
    FKD_TRY(add_forward(g, global, xv->data, g->values[y].data, gamma->data, beta->data, s->mean, s->var, &n->fwd));

    fkd_mem *dx, *corr;
    FKD_TRY(add_backward(g, n, global, true, s->mean, s->var, &n->bwd, &dx, &s->dgamma, &s->dbeta));
    FKD_TRY(fkd__steps_add_host(&n->bwd, sync_gradient_sums, s, "sync_bn gradient sums (MPI_Allreduce)"));
    FKD_TRY(fkd__bwd_temp(g, n, fkd_shim_pd_md(global, FKD_ARG_DST), &corr));
    FKD_TRY(add_forward(g, global, xv->data, corr, s->corr_scale, s->corr_shift, s->mean, s->var, &n->bwd));
    FKD_TRY(fkd__accumulate(g, &n->bwd, corr, dx));
    return add_backward_done(g, n, &n->bwd, dx, s->dgamma, s->dbeta);
}

/* ---- fused with the PReLU after it (TRAIN graphs, bnact.h, fuse.c) ----------------------
 * Steps: forward  [statistics → (sync_bn) reduce →] y = prelu(bn(x))
 *        backward Σ dz, Σ dz x̂, Σ dy z → (sync_bn) reduce → dx; dγ, dβ, dα +=
 * in training mode with the batch statistics, in eval mode with the running ones (the
 * passes look at g->training when they run). x and the PReLU's output y share x's nChw16c
 * layout; the batch norm's own output is never stored. */
typedef struct {
    fkd_graph *g;
    int bn, prelu;            /* node indices */
    bn_state *s;
    fkd__bnact_shape shape;
    fkd_mem *x, *y, *dx;      /* y: the output, or a recompute's temporary; dx: backward's target */
    float *mean_dz, *mean_dzx; /* (C) each, in `sums`'s allocation */
    double sums[];            /* backward's pass: (3C) sums (bnact.h), then mean_dz, mean_dzx */
} bnact_pass;

static fkd__bnact_params bnact_params(const bnact_pass *c)
{
    const fkd_graph *g = c->g;
    const fkd__node *bn = &g->nodes[c->bn];
    const bn_state *s = c->s;
    const fkd_param *p = &g->params[bn->first_param];
    bool batch = g->training;
    return (fkd__bnact_params){
        .mean = batch ? fkd_shim_mem_data(s->mean) : p[2].data,
        .var = batch ? fkd_shim_mem_data(s->var) : p[3].data,
        .gamma = p[0].data,
        .beta = p[1].data,
        .alpha = g->params[g->nodes[c->prelu].first_param].data,
        .eps = s->eps,
    };
}

static fkd_status bnact_statistics_run(void *ctx)
{
    const bnact_pass *c = ctx;
    fkd__bnact_stats(&c->shape, fkd_shim_mem_data(c->x), fkd_shim_mem_data(c->s->mean),
                     fkd_shim_mem_data(c->s->var));
    return FKD_OK;
}

static fkd_status bnact_forward_run(void *ctx)
{
    const bnact_pass *c = ctx;
    fkd__bnact_params p = bnact_params(c);
    fkd__bnact_forward(&c->shape, &p, fkd_shim_mem_data(c->x), fkd_shim_mem_data(c->y));
    return FKD_OK;
}

/* The backward pass; with batch statistics dx takes the derivative through them, over the
 * global batch under sync_bn (see the top of the file), while dγ, dβ, dα keep this rank's
 * share like every other gradient. */
static fkd_status bnact_backward_run(void *ctx)
{
    bnact_pass *c = ctx;
    fkd_graph *g = c->g;
    fkd__bnact_params p = bnact_params(c);
    const void *x = fkd_shim_mem_data(c->x), *dy = fkd_shim_mem_data(g->values[g->nodes[c->prelu].output].grad);
    int64_t ch = c->shape.c;
    fkd__bnact_backward_sums(&c->shape, &p, x, dy, c->sums);
    const fkd_param *bn_p = &g->params[g->nodes[c->bn].first_param];
    float *dgamma = bn_p[0].grad, *dbeta = bn_p[1].grad, *dalpha = g->params[g->nodes[c->prelu].first_param].grad;
    for (int64_t i = 0; i < ch; i++) {
        dbeta[i] += (float)c->sums[i];
        dgamma[i] += (float)c->sums[ch + i];
        dalpha[i] += (float)c->sums[2 * ch + i];
    }
    double m = (double)(c->shape.n * c->shape.hw);
    if (g->training && c->s->sync) {
        FKD_TRY(fkd_dist_allreduce_f64(c->sums, (size_t)(2 * ch)));
        m *= fkd_dist_world();
    }
    for (int64_t i = 0; i < ch; i++) {
        c->mean_dz[i] = g->training ? (float)(c->sums[i] / m) : 0.0f;
        c->mean_dzx[i] = g->training ? (float)(c->sums[ch + i] / m) : 0.0f;
    }
    fkd__bnact_backward_dx(&c->shape, &p, x, dy, c->mean_dz, c->mean_dzx, fkd_shim_mem_data(c->dx));
    return FKD_OK;
}

/* A pass context owned by the graph (freed with it); with the backward's buffers when
 * `backward`. */
static fkd_status bnact_pass_new(fkd_graph *g, fkd__node *n, fkd_mem *y, bool backward, bnact_pass **out)
{
    const fkd__value *xv = &g->values[n->inputs[0]];
    size_t ch = (size_t)xv->dims[1], extra = backward ? ch * (3 * sizeof(double) + 2 * sizeof(float)) : 0;
    FKD_TRY(fkd__grow((void **)&g->owned, &g->cap_owned, g->n_owned + 1, sizeof *g->owned));
    bnact_pass *c = calloc(1, sizeof *c + extra);
    if (!c) return FKD_FAIL(FKD_ERR_NOMEM, "graph: batchnorm '%s': out of memory", n->name);
    g->owned[g->n_owned++] = c;
    c->g = g;
    c->bn = (int)(n - g->nodes);
    c->prelu = n->fused_prelu;
    c->s = n->state;
    c->x = xv->data;
    c->y = y;
    if (backward) {
        c->mean_dz = (float *)(c->sums + 3 * ch);
        c->mean_dzx = c->mean_dz + ch;
    }
    c->shape = (fkd__bnact_shape){.n = xv->dims[0], .c = xv->dims[1], .hw = xv->dims[2] * xv->dims[3],
                                  .bf16 = fkd_shim_md_dtype(fkd_shim_mem_md(xv->data)) == FKD_DT_BF16};
    *out = c;
    return FKD_OK;
}

fkd_status fkd__bnact_recompute(fkd_graph *g, fkd__node *bn, fkd__steps *steps, fkd_mem *dst)
{
    bnact_pass *c;
    FKD_TRY(bnact_pass_new(g, bn, dst, false, &c));
    return fkd__steps_add_host(steps, bnact_forward_run, c, "bn+prelu recompute (facekd)");
}

/* Whether bnact.h covers x: nChw16c fp32 or bf16, C a multiple of 16, an AVX-512 CPU. */
static fkd_status bnact_fits(fkd_graph *g, const fkd__node *n, bool *fits)
{
    const fkd__value *xv = &g->values[n->inputs[0]];
    const fkd_md *md = fkd_shim_mem_md(xv->data), *blocked;
    fkd_dtype dt = fkd_shim_md_dtype(md);
    *fits = false;
    if (!fkd__bnact_available() || xv->dims[1] % 16 || (dt != FKD_DT_F32 && dt != FKD_DT_BF16)) return FKD_OK;
    FKD_TRY(fkd_shim_md_blocked16(g->shim, &blocked, xv->dims, dt));
    *fits = fkd_shim_md_equal(md, blocked);
    return FKD_OK;
}

static fkd_status bnact_build(fkd_graph *g, fkd__node *n, const fkd_md *stat)
{
    bn_state *s = n->state;
    fkd__node *prelu = &g->nodes[n->fused_prelu];
    int x = n->inputs[0], y = prelu->output;
    const fkd_md *data = fkd_shim_mem_md(g->values[x].data);
    int64_t ch = g->values[x].dims[1];
    g->values[n->output].unstored = true;
    g->values[n->output].kept = false;
    FKD_TRY(fkd__value_alloc(g, y, data));
    FKD_TRY(fkd__param_alloc(g, prelu->first_param, stat, NULL));
    FKD_TRY(fkd_shim_mem(g->shim, &s->mean, stat));
    FKD_TRY(fkd_shim_mem(g->shim, &s->var, stat));
    s->sync = g->cfg.sync_bn;
    if (s->sync) {
        s->channels = ch;
        s->sums = malloc(sizeof(double) * 2 * (size_t)ch);
        if (!s->sums) return FKD_FAIL(FKD_ERR_NOMEM, "graph: batchnorm '%s': out of memory", n->name);
    }

    bnact_pass *c;
    FKD_TRY(bnact_pass_new(g, n, g->values[y].data, true, &c));
    FKD_TRY(fkd__steps_add_host(&n->fwd, bnact_statistics_run, c, "bn+prelu statistics (facekd)"));
    if (s->sync) FKD_TRY(fkd__steps_add_host(&n->fwd, sync_statistics, s, "sync_bn statistics (MPI_Allreduce)"));
    FKD_TRY(fkd__steps_add_host(&n->fwd, bnact_forward_run, c, "bn+prelu forward (facekd)"));
    FKD_TRY(fkd__steps_add_host(&s->eval_fwd, bnact_forward_run, c, "bn+prelu forward (facekd)"));

    FKD_TRY(fkd__dx_target(g, n, x, data, &c->dx));
    fkd__steps *bwd[2] = {&n->bwd, &s->eval_bwd};
    for (int k = 0; k < 2; k++) {
        FKD_TRY(fkd__steps_add_host(bwd[k], bnact_backward_run, c, "bn+prelu backward (facekd)"));
        FKD_TRY(fkd__dx_done(g, bwd[k], x, c->dx));
    }
    return FKD_OK;
}

static fkd_status bn_build(fkd_graph *g, fkd__node *n)
{
    bn_state *s = n->state;
    int x = n->inputs[0], p0 = n->first_param;
    const fkd_md *data = fkd_shim_mem_md(g->values[x].data), *stat;
    const int64_t c[1] = {g->values[x].dims[1]};
    FKD_TRY(fkd_shim_md_plain(g->shim, &stat, 1, c, FKD_DT_F32));
    for (int i = 0; i < 4; i++) FKD_TRY(fkd__param_alloc(g, p0 + i, stat, NULL));
    if (n->fused_prelu >= 0) {
        bool fits;
        FKD_TRY(bnact_fits(g, n, &fits));
        if (fits) return bnact_build(g, n, stat);
        g->nodes[n->fused_prelu].absorbed_by = -1; /* declined: two oneDNN ops as usual */
        n->fused_prelu = -1;
    }
    FKD_TRY(fkd__value_alloc(g, n->output, data));
    /* Folded into the layer before it (fuse.c): the output is that layer's; no steps. */
    if (n->absorbed_by >= 0) return FKD_OK;
    fkd__param_impl *run = &g->pimpl[p0 + 2];
    if (g->cfg.mode != FKD_GRAPH_TRAIN)
        return build_mode(g, n, true, run[0].data, run[1].data, &n->fwd, &n->bwd);
    FKD_TRY(build_mode(g, n, true, run[0].data, run[1].data, &s->eval_fwd, &s->eval_bwd));
    fkd__bwd_temps_alternative(g); /* eval or training backward, never both */
    FKD_TRY(fkd_shim_mem(g->shim, &s->mean, stat));
    FKD_TRY(fkd_shim_mem(g->shim, &s->var, stat));
    s->sync = g->cfg.sync_bn;
    if (s->sync) return build_sync(g, n, stat);
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
    if (s->sync) m *= fkd_dist_world(); /* the statistics are the global batch's */
    double unbias = m > 1 ? (double)m / (double)(m - 1) : 1.0, mom = s->momentum;
    const float *mean = fkd_shim_mem_data(s->mean), *var = fkd_shim_mem_data(s->var);
    float *run_mean = g->params[n->first_param + 2].data, *run_var = g->params[n->first_param + 3].data;
    for (int64_t i = 0; i < c; i++) {
        run_mean[i] = (float)((1.0 - mom) * run_mean[i] + mom * mean[i]);
        run_var[i] = (float)((1.0 - mom) * run_var[i] + mom * var[i] * unbias);
    }
    return FKD_OK;
}

/* Recompute (TRAIN graphs, graph.c): y again from x for a consumer's backward, with the
 * statistics the last forward used — the batch's (the synchronised ones under sync_bn)
 * in training mode, the running ones in eval mode — as constants. */
typedef struct {
    fkd_graph *g;
    fkd_prim *train, *eval;
} bn_recompute_ctx;

static fkd_status bn_recompute_run(void *ctx)
{
    const bn_recompute_ctx *c = ctx;
    return fkd_shim_run(c->g->shim, c->g->training ? c->train : c->eval);
}

static fkd_status bn_recompute(fkd_graph *g, fkd__node *n, fkd__steps *steps, fkd_mem *dst)
{
    bn_state *s = n->state;
    fkd__param_impl *gamma = &g->pimpl[n->first_param], *beta = gamma + 1, *run = gamma + 2;
    fkd_mem *x = g->values[n->inputs[0]].data;
    fkd_pd *pd;
    FKD_TRY(fkd__grow((void **)&g->owned, &g->cap_owned, g->n_owned + 1, sizeof *g->owned));
    bn_recompute_ctx *c = calloc(1, sizeof *c);
    if (!c) return FKD_FAIL(FKD_ERR_NOMEM, "graph: batchnorm '%s': out of memory", n->name);
    g->owned[g->n_owned++] = c;
    c->g = g;
    FKD_TRY(fkd_shim_bnorm_fwd_pd(g->shim, &pd, true, fkd_shim_mem_md(x), s->eps, true));
    fkd__steps none = {0};
    fkd_status st = add_forward(g, pd, x, dst, gamma->data, beta->data, s->mean, s->var, &none);
    if (st == FKD_OK) c->train = none.items[0].prim;
    none.count = 0;
    if (st == FKD_OK) st = add_forward(g, pd, x, dst, gamma->data, beta->data, run[0].data, run[1].data, &none);
    if (st == FKD_OK) c->eval = none.items[0].prim;
    free(none.items);
    FKD_TRY(st);
    return fkd__steps_add_host(steps, bn_recompute_run, c, "bnorm recompute");
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
    free(s->sums);
}

const fkd__op fkd__op_batchnorm = {.build = bn_build, .forward = bn_forward, .backward = bn_backward,
                                   .recompute = bn_recompute, .free = bn_free};

float fkd__batchnorm_eps(const fkd__node *n)
{
    return ((const bn_state *)n->state)->eps;
}
