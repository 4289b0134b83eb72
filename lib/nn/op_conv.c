/* 2-D convolution (square kernel, symmetric padding, groups) on oneDNN, with oneDNN
 * choosing the layouts of src, weights and dst (format_tag_any).
 *
 * Shapes: x (N, I, H, W), W (O, I/G, K, K) — inside the engine (G, O/G, I/G, K, K) when
 * grouped —, b (O), y (N, O, OH, OW) with OH = (H + 2P - K) / S + 1.
 * Forward: y = conv(x, W) + b. Backward: dx += conv_bwd_data(dy, W),
 * dW += conv_bwd_weights(x, dy), db += Σ_{n,h,w} dy. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/conv_global_dw.h"
#include "nn/conv_grouped.h"
#include "nn/op.h"

typedef struct {
    int out_c, kernel, stride, padding, groups;
    fkd__grouped *grouped; /* facekd's kernels for small groups (conv_grouped.c), else NULL */
    fkd__global_dw *global_dw; /* facekd's backward-weights of a global depthwise conv, else NULL */
} conv_state;

fkd_value fkd_graph_conv(fkd_graph *g, const char *name, fkd_value x, int out_channels,
                         int kernel, int stride, int padding, int groups, bool bias)
{
    fkd_status st = fkd__check_inputs(g, FKD__OP_CONV, name, &x, 1);
    if (st != FKD_OK) return st;
    const fkd__value *v = &g->values[x];
    if (v->ndims != 4)
        return FKD_FAIL(FKD_ERR_ARG, "graph: conv '%s': input must be 4-D (N, C, H, W), got %d-D",
                        name, v->ndims);
    int in_c = (int)v->dims[1];
    if (out_channels < 1 || kernel < 1 || stride < 1 || padding < 0 || groups < 1)
        return FKD_FAIL(FKD_ERR_ARG,
                        "graph: conv '%s': bad geometry (out %d, kernel %d, stride %d, padding %d, groups %d)",
                        name, out_channels, kernel, stride, padding, groups);
    if (in_c % groups || out_channels % groups)
        return FKD_FAIL(FKD_ERR_ARG, "graph: conv '%s': %d groups do not divide %d -> %d channels",
                        name, groups, in_c, out_channels);
    int64_t oh = (v->dims[2] + 2 * padding - kernel) / stride + 1;
    int64_t ow = (v->dims[3] + 2 * padding - kernel) / stride + 1;
    if (v->dims[2] + 2 * padding < kernel || v->dims[3] + 2 * padding < kernel)
        return FKD_FAIL(FKD_ERR_ARG, "graph: conv '%s': kernel %d larger than the padded %ldx%ld input",
                        name, kernel, (long)v->dims[2], (long)v->dims[3]);
    conv_state *s = malloc(sizeof *s);
    if (!s) return FKD_FAIL(FKD_ERR_NOMEM, "graph: conv '%s': out of memory", name);
    *s = (conv_state){out_channels, kernel, stride, padding, groups, NULL, NULL};
    const int64_t dims[4] = {v->dims[0], out_channels, oh, ow};
    fkd_value y = fkd__node_add(g, FKD__OP_CONV, name, &x, 1, s, 4, dims);
    if (y < 0) return y;

    /* PyTorch's default: kaiming_uniform(a = sqrt(5)) = U(±1/sqrt(fan_in)), bias likewise. */
    int64_t fan_in = (int64_t)(in_c / groups) * kernel * kernel;
    float bound = (float)(1.0 / sqrt((double)fan_in));
    const int64_t wdims[4] = {out_channels, in_c / groups, kernel, kernel};
    const int64_t bdims[1] = {out_channels};
    st = fkd__param_declare(g, "weight", 4, wdims, FKD__INIT_UNIFORM, bound, false, true);
    if (st == FKD_OK && bias)
        st = fkd__param_declare(g, "bias", 1, bdims, FKD__INIT_UNIFORM, bound, false, true);
    if (st != FKD_OK) return st;
    g->macs += (int64_t)out_channels * oh * ow * fan_in;
    return y;
}

/* Winograd F(4×4, 3×3) candidates: fp32 dense 3×3 stride-1 convolutions on multiples of
 * 16 channels — not on few channels (the 3-channel stem: 3x slower than direct there) —,
 * unless the graph asks for direct convolutions (INFER and TRAIN alike). */
static bool wino_fits(const fkd_graph *g, const fkd__node *n)
{
    const conv_state *s = n->state;
    const fkd__value *x = &g->values[n->inputs[0]];
    return g->dtype == FKD_DT_F32 && s->kernel == 3 && s->stride == 1 && s->groups == 1 &&
           x->dims[1] % 16 == 0 && s->out_c % 16 == 0 && !g->cfg.direct_conv;
}

/* The descriptor *pd was created (st, the creating call's status) and is not a reference
 * kernel. A pointer: the call writes *pd, argument order is unsequenced. */
static bool fast_pd(fkd_status st, fkd_pd *const *pd)
{
    return st == FKD_OK && strncmp(fkd_shim_pd_impl(*pd), "ref", 3) != 0;
}

/* INFER graphs: the forward descriptor, first match of
 *   algorithm  Winograd F(4×4, 3×3) for fp32 dense 3×3 stride-1 convolutions on multiples
 *              of 16 channels (oneDNN's jit_wino_4x3: 1.3–2x the direct kernels here), then
 *              direct;
 *   src, dst   the layout the input already has (no reorder between layers: a Winograd
 *              conv's blocked nChw16c output stays blocked through the next layers), with
 *              dst oneDNN's choice, then dst blocked too (depthwise jit_dw on nChw16c input,
 *              after MobileFaceNet's grouped layer), then src and dst oneDNN's choice;
 * skipping reference kernels; failing those, oneDNN's direct choice whatever it is. */
static fkd_status infer_pd(fkd_graph *g, fkd__node *n, const fkd_md *any_src, const fkd_md *w, const fkd_md *b,
                           const fkd_md *dst, fkd_pd **out)
{
    const conv_state *s = n->state;
    const fkd__value *x = &g->values[n->inputs[0]], *y = &g->values[n->output];
    const fkd_md *have = fkd_shim_mem_md(x->data), *blocked = NULL;
    bool wino = wino_fits(g, n);
    bool same_type = fkd_shim_md_dtype(have) == g->dtype;
    /* Blocked input: depthwise kernels (jit_dw) want the output blocked too, not "any"
     * (which selects ref:any for them). */
    if (same_type && n->residual < 0 && s->out_c % 16 == 0) FKD_TRY(fkd_shim_md_blocked16(g->shim, &blocked, y->dims, g->dtype));
    const fkd_md *srcs[3] = {same_type ? have : any_src, same_type ? have : any_src, any_src};
    const fkd_md *dsts[3] = {dst, blocked ? blocked : dst, dst};
    for (int alg = wino ? 0 : 1; alg < 2; alg++)
        for (int k = 0; k < 3; k++) {
            /* Failures here are expected (unimplemented combinations): the next one is tried. */
            if (fast_pd(fkd_shim_conv_fwd_pd(g->shim, out, false, srcs[k], w, b, dsts[k], s->stride,
                                             s->padding, n->residual >= 0, alg == 0),
                        out))
                return FKD_OK;
        }
    return fkd_shim_conv_fwd_pd(g->shim, out, false, any_src, w, b, dst, s->stride, s->padding, n->residual >= 0,
                                false);
}

/* MobileFaceNet's GDC: oneDNN 2.6 would run x64:gemm:jit (conv_global_dw.h). */
static fkd_status global_dw_pass(fkd_graph *g, fkd__node *n, fkd__steps *steps, fkd_mem *x_saved)
{
    return fkd__global_dw_build(g, n, steps, x_saved, &((conv_state *)n->state)->global_dw);
}

static fkd_status conv_build(fkd_graph *g, fkd__node *n)
{
    conv_state *s = n->state;
    const fkd__value *x = &g->values[n->inputs[0]], *y = &g->values[n->output];
    bool train = g->cfg.mode == FKD_GRAPH_TRAIN, has_bias = n->n_params == 2;
    int in_c = (int)x->dims[1], k = s->kernel, G = s->groups;
    if (fkd__conv_grouped_fits(in_c, s->out_c, G))
        return fkd__conv_grouped_build(g, n, k, s->stride, s->padding, G, &s->grouped);
    int64_t wd[5] = {G, s->out_c / G, in_c / G, k, k};
    int wnd = G > 1 ? 5 : 4;
    const int64_t *wdims = G > 1 ? wd : wd + 1;
    const int64_t bdims[1] = {s->out_c};

    fkd_shim *sh = g->shim;
    /* bf16 graphs: bf16 data and weights, fp32 bias and weight gradients (fp32 masters). */
    const fkd_md *src, *w, *dw, *b = NULL, *dst, *w_plain;
    FKD_TRY(fkd_shim_md_any(sh, &src, 4, x->dims, g->dtype));
    FKD_TRY(fkd_shim_md_any(sh, &w, wnd, wdims, g->dtype));
    FKD_TRY(fkd_shim_md_any(sh, &dw, wnd, wdims, FKD_DT_F32));
    FKD_TRY(fkd_shim_md_plain(sh, &w_plain, wnd, wdims, FKD_DT_F32));
    /* A folded batch norm brings a bias; a fused residual add writes into the residual's
     * buffer (fuse.c), so dst takes its layout. */
    if (has_bias || n->fold_bn >= 0) FKD_TRY(fkd_shim_md_plain(sh, &b, 1, bdims, FKD_DT_F32));
    if (n->residual >= 0) dst = fkd_shim_mem_md(g->values[n->residual].data);
    else FKD_TRY(fkd_shim_md_any(sh, &dst, 4, y->dims, g->dtype));

    fkd_pd *fwd, *bwd_data = NULL, *bwd_weights = NULL;
    if (!train) {
        FKD_TRY(infer_pd(g, n, src, w, b, dst, &fwd));
    } else {
        /* Each of the three on oneDNN's Winograd kernel (jit_wino_4x3) where it has one, else
         * direct. Training Winograd weights are blocked (OIhw16i16o, transformed inside each
         * run), so masters and weight gradients keep a readable layout. Failures of the
         * Winograd attempts are expected (unimplemented shapes): direct is tried next. */
        bool wino = wino_fits(g, n);
        if (!wino || !fast_pd(fkd_shim_conv_fwd_pd(sh, &fwd, train, src, w, b, dst, s->stride,
                                                   s->padding, false, true), &fwd))
            FKD_TRY(fkd_shim_conv_fwd_pd(sh, &fwd, train, src, w, b, dst, s->stride, s->padding, false, false));
        if (!wino || !fast_pd(fkd_shim_conv_bwd_data_pd(sh, &bwd_data, src, w, dst, s->stride, s->padding,
                                                        fwd, true), &bwd_data))
            FKD_TRY(fkd_shim_conv_bwd_data_pd(sh, &bwd_data, src, w, dst, s->stride, s->padding, fwd, false));
        /* Backward-weights reads x in the forward's layout when it has a fast kernel for it;
         * otherwise (depthwise kernels larger than 3×3 on blocked data) it chooses its own
         * layout and x is reordered for it. A global depthwise conv (MobileFaceNet's 7×7
         * GDC) gets facekd's pass instead of oneDNN's gemm one. */
        const fkd_md *fwd_src = fkd_shim_pd_md(fwd, FKD_ARG_SRC);
        if (fkd__global_dw_fits(in_c, G, s->out_c, k, s->padding, x->dims[2], x->dims[3], has_bias))
            return fkd__build_weighted(g, n, fwd, bwd_data, NULL, w_plain, global_dw_pass);
        if (!wino || !fast_pd(fkd_shim_conv_bwd_weights_pd(sh, &bwd_weights, fwd_src, dw, b, dst, s->stride,
                                                           s->padding, fwd, true), &bwd_weights))
            FKD_TRY(fkd_shim_conv_bwd_weights_pd(sh, &bwd_weights, fwd_src, dw, b, dst, s->stride,
                                                 s->padding, fwd, false));
        if (strncmp(fkd_shim_pd_impl(bwd_weights), "ref", 3) == 0)
            FKD_TRY(fkd_shim_conv_bwd_weights_pd(sh, &bwd_weights, src, dw, b, dst, s->stride,
                                                 s->padding, fwd, false));
    }
    return fkd__build_weighted(g, n, fwd, bwd_data, bwd_weights, w_plain, NULL);
}

static void conv_free(fkd__node *n)
{
    fkd__conv_grouped_free(((conv_state *)n->state)->grouped);
    fkd__global_dw_free(((conv_state *)n->state)->global_dw);
}

/* Backward reads x through fkd__saved_input (build_weighted), except facekd's grouped
 * kernels, which keep their own copy. */
static bool conv_input_recomputable(const fkd_graph *g, const fkd__node *n)
{
    const conv_state *s = n->state;
    return !fkd__conv_grouped_fits((int)g->values[n->inputs[0]].dims[1], s->out_c, s->groups);
}

const fkd__op fkd__op_conv = {.build = conv_build, .input_recomputable = conv_input_recomputable,
                              .free = conv_free};


void fkd__conv_attrs(const fkd__node *n, int *kernel, int *stride, int *padding, int *groups)
{
    const conv_state *s = n->state;
    *kernel = s->kernel;
    *stride = s->stride;
    *padding = s->padding;
    *groups = s->groups;
}
