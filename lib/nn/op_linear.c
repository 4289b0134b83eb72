/* Fully connected layer on oneDNN's inner product.
 *
 * Shapes: x (N, I), W (O, I), b (O), y (N, O).
 * Forward: y = x Wᵀ + b. Backward: dx += dy W, dW += dyᵀ x, db += Σ_n dy. */
#include <math.h>
#include <stdlib.h>

#include "nn/op.h"

fkd_value fkd_graph_linear(fkd_graph *g, const char *name, fkd_value x, int out_features, bool bias)
{
    fkd_status st = fkd__check_inputs(g, FKD__OP_LINEAR, name, &x, 1);
    if (st != FKD_OK) return st;
    const fkd__value *v = &g->values[x];
    if (v->ndims != 2)
        return FKD_FAIL(FKD_ERR_ARG,
                        "graph: linear '%s': input is %d-D; linear takes (N, features): flatten it first",
                        name, v->ndims);
    if (out_features < 1)
        return FKD_FAIL(FKD_ERR_ARG, "graph: linear '%s': %d output features", name, out_features);
    int64_t in_f = v->dims[1];
    const int64_t dims[2] = {v->dims[0], out_features};
    fkd_value y = fkd__node_add(g, FKD__OP_LINEAR, name, &x, 1, NULL, 2, dims);
    if (y < 0) return y;
    /* PyTorch's default: U(±1/sqrt(in_features)) for weight and bias. */
    float bound = (float)(1.0 / sqrt((double)in_f));
    const int64_t wdims[2] = {out_features, in_f};
    const int64_t bdims[1] = {out_features};
    st = fkd__param_declare(g, "weight", 2, wdims, FKD__INIT_UNIFORM, bound, false, true);
    if (st == FKD_OK && bias)
        st = fkd__param_declare(g, "bias", 1, bdims, FKD__INIT_UNIFORM, bound, false, true);
    if (st != FKD_OK) return st;
    g->macs += in_f * out_features;
    return y;
}

static fkd_status linear_build(fkd_graph *g, fkd__node *n)
{
    const fkd__value *x = &g->values[n->inputs[0]], *y = &g->values[n->output];
    bool train = g->cfg.mode == FKD_GRAPH_TRAIN;
    const fkd_param *pw = &g->params[n->first_param];
    fkd_shim *sh = g->shim;
    /* bf16 graphs: bf16 data and weights, fp32 bias and weight gradients (fp32 masters). */
    const fkd_md *src = fkd_shim_mem_md(x->data), *w, *dw, *b = NULL, *dst;
    FKD_TRY(fkd_shim_md_any(sh, &w, 2, pw->dims, g->dtype));
    FKD_TRY(fkd_shim_md_any(sh, &dw, 2, pw->dims, FKD_DT_F32));
    if (n->n_params == 2) FKD_TRY(fkd_shim_md_plain(sh, &b, 1, &y->dims[1], FKD_DT_F32));
    FKD_TRY(fkd_shim_md_any(sh, &dst, 2, y->dims, g->dtype));

    fkd_pd *fwd, *bwd_data = NULL, *bwd_weights = NULL;
    FKD_TRY(fkd_shim_ip_fwd_pd(sh, &fwd, train, src, w, b, dst));
    if (train) {
        FKD_TRY(fkd_shim_ip_bwd_data_pd(sh, &bwd_data, src, w, dst, fwd));
        FKD_TRY(fkd_shim_ip_bwd_weights_pd(sh, &bwd_weights, src, dw, b, dst, fwd));
    }
    return fkd__build_weighted(g, n, fwd, bwd_data, bwd_weights, NULL, NULL);
}

/* Backward reads x through fkd__saved_input (build_weighted). */
static bool linear_input_recomputable(const fkd_graph *g, const fkd__node *n)
{
    (void)g;
    (void)n;
    return true;
}

const fkd__op fkd__op_linear = {.build = linear_build, .input_recomputable = linear_input_recomputable};
