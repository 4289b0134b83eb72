/* Learned adapters, tap pairs and mapped pairs (see adapter.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "distill/adapter.h"
#include "distill/ops.h"
#include "nn/shim.h"

/* ---- adapter -------------------------------------------------------------------------- */

static void adapter_param(fkd_param *p, const char *name, float *data, float *grad, int ndims,
                          const int64_t *dims)
{
    memset(p, 0, sizeof *p);
    p->name = name;
    p->ndims = ndims;
    p->numel = 1;
    for (int i = 0; i < ndims; i++) {
        p->dims[i] = dims[i];
        p->numel *= dims[i];
    }
    p->data = data;
    p->grad = grad;
    p->storage = (size_t)p->numel;
    p->trainable = true;
    p->decay = true; /* a convolution's weight and bias: decayed like the student's */
}

fkd_status fkd__adapter_init(fkd__adapter *a, const char *scope, int64_t c_in, int64_t c_out,
                             int64_t hw, uint64_t seed, const char *who)
{
    memset(a, 0, sizeof *a);
    a->c_in = c_in;
    a->c_out = c_out;
    a->hw = hw;
    int64_t nw = c_in * c_out;
    float **const ptrs[] = {&a->weight, &a->d_weight, &a->bias, &a->d_bias};
    const int64_t sizes[] = {nw, nw, c_out, c_out};
    FKD_TRY(fkd__alloc_buffers(&a->block, ptrs, sizes, 4, who));
    snprintf(a->names[0], sizeof a->names[0], "%s.adapter.weight", scope ? scope : "distill");
    snprintf(a->names[1], sizeof a->names[1], "%s.adapter.bias", scope ? scope : "distill");
    const int64_t wdims[4] = {c_out, c_in, 1, 1};
    adapter_param(&a->params[0], a->names[0], a->weight, a->d_weight, 4, wdims);
    adapter_param(&a->params[1], a->names[1], a->bias, a->d_bias, 1, &c_out);
    /* torch.nn.Conv2d's reset_parameters: kaiming_uniform(a = √5) gives U(±1/√fan_in) for
     * the weight, and the bias uses the same bound. The stream comes from the parameter
     * name, so two adapters of one recipe (one seed) start differently. */
    uint64_t stream = 0x61646170746572ull; /* "adapter" */
    for (const char *c = a->names[0]; *c; c++) stream = fkd_hash_mix(stream, (uint64_t)*c);
    fkd_rng rng;
    fkd_rng_seed(&rng, seed, stream);
    double bound = 1.0 / sqrt((double)c_in);
    for (int64_t n = 0; n < nw; n++)
        a->weight[n] = (float)((2.0 * fkd_rng_uniform(&rng) - 1.0) * bound);
    for (int64_t n = 0; n < c_out; n++)
        a->bias[n] = (float)((2.0 * fkd_rng_uniform(&rng) - 1.0) * bound);
    return FKD_OK;
}

fkd_status fkd__adapter_forward(const fkd__adapter *a, float *y, const float *x, int64_t b)
{
    int64_t ci = a->c_in, co = a->c_out, hw = a->hw;
    if (hw == 1) {
        /* embeddings: y (b, co) = x (b, ci) Wᵀ, one product for the batch */
        FKD_TRY(fkd_sgemm(false, true, b, co, ci, 1.0f, x, ci, a->weight, ci, 0.0f, y, co));
    } else {
        /* y_n (co, hw) = W (co, ci) x_n (ci, hw) */
        for (int64_t n = 0; n < b; n++)
            FKD_TRY(fkd_sgemm(false, false, co, hw, ci, 1.0f, a->weight, ci, x + n * ci * hw, hw,
                              0.0f, y + n * co * hw, hw));
    }
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < b * co; r++) {
        float bias = a->bias[r % co];
        for (int64_t p = 0; p < hw; p++) y[r * hw + p] += bias;
    }
    return FKD_OK;
}

fkd_status fkd__adapter_backward(fkd__adapter *a, float *dx, const float *dy, const float *x,
                                 int64_t b, float scale)
{
    int64_t ci = a->c_in, co = a->c_out, hw = a->hw;
    for (int64_t c = 0; c < co; c++) {
        double sum = 0.0;
        for (int64_t n = 0; n < b; n++)
            for (int64_t p = 0; p < hw; p++) sum += dy[(n * co + c) * hw + p];
        a->d_bias[c] += scale * (float)sum;
    }
    if (hw == 1) {
        /* dW (co, ci) += dyᵀ (co, b) x (b, ci);  dx (b, ci) += dy (b, co) W (co, ci) */
        FKD_TRY(fkd_sgemm(true, false, co, ci, b, scale, dy, co, x, ci, 1.0f, a->d_weight, ci));
        if (dx)
            FKD_TRY(fkd_sgemm(false, false, b, ci, co, scale, dy, co, a->weight, ci, 1.0f, dx,
                              ci));
        return FKD_OK;
    }
    for (int64_t n = 0; n < b; n++) {
        const float *dyn = dy + n * co * hw;
        /* dW (co, ci) += dy_n (co, hw) x_nᵀ (hw, ci);  dx_n (ci, hw) += Wᵀ (ci, co) dy_n */
        FKD_TRY(fkd_sgemm(false, true, co, ci, hw, scale, dyn, hw, x + n * ci * hw, hw, 1.0f,
                          a->d_weight, ci));
        if (dx)
            FKD_TRY(fkd_sgemm(true, false, ci, hw, co, scale, a->weight, ci, dyn, hw, 1.0f,
                              dx + n * ci * hw, hw));
    }
    return FKD_OK;
}

void fkd__adapter_free(fkd__adapter *a)
{
    free(a->block);
    a->block = NULL;
}

/* ---- tap pair ------------------------------------------------------------------------- */

/* One side: the tap `name`'s shape, or the embedding (emb, 1, 1) when name is empty. */
static fkd_status tap_side(fkd_distill_options *opts, const fkd_distill_context *ctx,
                           bool teacher, const char *name, int64_t emb,
                           fkd_distill_tap_shape *shape)
{
    *shape = (fkd_distill_tap_shape){emb, 1, 1};
    if (!name[0]) return FKD_OK;
    const char *side = teacher ? "teacher" : "student";
    if (!ctx->tap_shape)
        return fkd_distill_options_fail(opts, FKD_ERR_ARG, "%s tap \"%s\" requested, but the "
                                        "trainer exposes no taps", side, name);
    FKD_TRY(ctx->tap_shape(ctx->tap_user, teacher, name, shape));
    if (shape->c < 1 || shape->h < 1 || shape->w < 1)
        return fkd_distill_options_fail(opts, FKD_ERR_ARG, "%s tap \"%s\" is empty "
                                        "(%lldx%lldx%lld)", side, name, (long long)shape->c,
                                        (long long)shape->h, (long long)shape->w);
    return FKD_OK;
}

fkd_status fkd__tap_pair_resolve(fkd__tap_pair *p, fkd_distill_needs *needs,
                                 fkd_distill_options *opts, const fkd_distill_context *ctx)
{
    char tap[FKD_DISTILL_TAP_NAME_MAX];
    FKD_TRY(fkd_distill_opt_string(opts, "tap", "", tap, sizeof tap));
    FKD_TRY(fkd_distill_opt_string(opts, "student_tap", tap, needs->student_tap,
                                   sizeof needs->student_tap));
    FKD_TRY(fkd_distill_opt_string(opts, "teacher_tap", tap, needs->teacher_tap,
                                   sizeof needs->teacher_tap));
    FKD_TRY(tap_side(opts, ctx, false, needs->student_tap, ctx->d_s, &p->s));
    FKD_TRY(tap_side(opts, ctx, true, needs->teacher_tap, ctx->d_t, &p->t));
    p->s_tap = needs->student_tap[0] != '\0';
    p->t_tap = needs->teacher_tap[0] != '\0';
    if (p->s_tap) {
        needs->flags &= ~(unsigned)FKD_DISTILL_NEED_STUDENT_EMB;
        needs->flags |= FKD_DISTILL_NEED_STUDENT_TAP;
    }
    if (p->t_tap) {
        needs->flags &= ~(unsigned)FKD_DISTILL_NEED_TEACHER_EMB;
        needs->flags |= FKD_DISTILL_NEED_TEACHER_TAP;
    }
    return FKD_OK;
}

/* ---- mapped pair ---------------------------------------------------------------------- */

/* "student tap \"stage3\" (128x14x14)" or "student embedding (512)" into buf. */
static const char *describe(char *buf, size_t cap, bool teacher, bool is_tap, const char *name,
                            fkd_distill_tap_shape s)
{
    const char *side = teacher ? "teacher" : "student";
    if (is_tap)
        snprintf(buf, cap, "%s tap \"%s\" (%lldx%lldx%lld)", side, name, (long long)s.c,
                 (long long)s.h, (long long)s.w);
    else
        snprintf(buf, cap, "%s embedding (%lld)", side, (long long)s.c);
    return buf;
}

fkd_status fkd__mapped_pair_init(fkd__mapped_pair *m, fkd_distill_needs *needs,
                                 fkd_distill_options *opts, const fkd_distill_context *ctx,
                                 const char *who)
{
    memset(m, 0, sizeof *m);
    fkd__tap_pair *p = &m->taps;
    FKD_TRY(fkd__tap_pair_resolve(p, needs, opts, ctx));
    bool adapter;
    FKD_TRY(fkd_distill_opt_bool(opts, "adapter", p->s.c != p->t.c, &adapter));
    char sd[160], td[160];
    describe(sd, sizeof sd, false, p->s_tap, needs->student_tap, p->s);
    describe(td, sizeof td, true, p->t_tap, needs->teacher_tap, p->t);
    if (p->s.h != p->t.h || p->s.w != p->t.w)
        return fkd_distill_options_fail(opts, FKD_ERR_ARG, "%s and %s differ in spatial size: "
                                        "choose taps of equal height and width", sd, td);
    if (!adapter && p->s.c != p->t.c)
        return fkd_distill_options_fail(opts, FKD_ERR_ARG, "%s and %s differ in channels and "
                                        "adapter is false", sd, td);
    int64_t hw = p->t.h * p->t.w, B = ctx->max_batch;
    m->adapted = adapter;
    m->f_s = p->s.c * hw;
    m->f = p->t.c * hw;
    float **const ptrs[] = {&m->y, &m->dy};
    const int64_t sizes[] = {adapter ? B * m->f : 0, B * m->f};
    FKD_TRY(fkd__alloc_buffers(&m->block, ptrs, sizes, 2, who));
    if (adapter)
        FKD_TRY(fkd__adapter_init(&m->adapter, opts->scope, p->s.c, p->t.c, hw, ctx->seed,
                                  who));
    return FKD_OK;
}

const float *fkd__mapped_pair_teacher(const fkd__mapped_pair *m, const fkd_distill_inputs *in)
{
    return m->taps.t_tap ? in->teacher_tap : in->teacher_emb;
}

static const float *student_input(const fkd__mapped_pair *m, const fkd_distill_inputs *in)
{
    return m->taps.s_tap ? in->student_tap : in->student_emb;
}

fkd_status fkd__mapped_pair_forward(fkd__mapped_pair *m, const fkd_distill_inputs *in,
                                    const float **student, int64_t b)
{
    const float *x = student_input(m, in);
    memset(m->dy, 0, (size_t)(b * m->f) * sizeof(float));
    if (m->adapted) {
        FKD_TRY(fkd__adapter_forward(&m->adapter, m->y, x, b));
        x = m->y;
    }
    *student = x;
    return FKD_OK;
}

fkd_status fkd__mapped_pair_backward(fkd__mapped_pair *m, const fkd_distill_inputs *in,
                                     const fkd_distill_outputs *out, int64_t b)
{
    if (!out) return FKD_OK;
    float *dx = m->taps.s_tap ? out->d_student_tap : out->d_student_emb;
    if (m->adapted)
        return fkd__adapter_backward(&m->adapter, dx, m->dy, student_input(m, in), b,
                                     out->grad_scale);
    if (dx)
        for (int64_t n = 0; n < b * m->f; n++) dx[n] += out->grad_scale * m->dy[n];
    return FKD_OK;
}

int fkd__mapped_pair_params(fkd__mapped_pair *m, fkd_param **params)
{
    *params = m->adapted ? m->adapter.params : NULL;
    return m->adapted ? 2 : 0;
}

void fkd__mapped_pair_free(fkd__mapped_pair *m)
{
    fkd__adapter_free(&m->adapter);
    free(m->block);
    m->block = NULL;
}
