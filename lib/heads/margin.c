/* The margin-softmax head: presets, options, ψ, and the head object (see margin.h). */
#include "heads/margin.h"

#include <math.h>
#include <omp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "heads/options.h"
#include "nn/shim.h"

/* sin θ below this is treated as this in derivatives (1/sin θ at cos θ = ±1). */
#define FKD__SIN_FLOOR 1e-4
/* Norms below this are treated as this (F.normalize's eps is 1e-12). */
#define FKD__NORM_FLOOR 1e-12

/* ---- presets -------------------------------------------------------------------------- */

typedef struct {
    const char *name;
    double s, m1, m2, m3;
    bool w_norm, x_norm, bias;
    double intra, inter;
} margin_preset;

/* Defaults and their sources are in docs/LOSSES.md. */
static const margin_preset presets[] = {
    {"softmax", 1, 1, 0, 0, false, false, true, 0, 0},
    {"l-softmax", 1, 4, 0, 0, false, false, false, 0, 0},
    {"sphereface", 1, 4, 0, 0, true, false, false, 0, 0},
    {"norm-softmax", 64, 1, 0, 0, true, true, false, 0, 0},
    {"cosface", 64, 1, 0, 0.35, true, true, false, 0, 0},
    {"arcface", 64, 1, 0.5, 0, true, true, false, 0, 0},
    {"combined", 64, 1, 0.3, 0.2, true, true, false, 0, 0},
    {"intra-loss", 64, 1, 0, 0, true, true, false, 1, 0},
    {"inter-loss", 64, 1, 0, 0, true, true, false, 0, 1},
};
enum { PRESET_COUNT = sizeof presets / sizeof presets[0] };

const char *fkd_margin_preset_name(int i)
{
    return i >= 0 && i < PRESET_COUNT ? presets[i].name : NULL;
}

fkd_status fkd_margin_params_preset(fkd_margin_params *p, const char *preset)
{
    for (int i = 0; i < PRESET_COUNT; i++) {
        const margin_preset *r = &presets[i];
        if (!preset || strcmp(preset, r->name)) continue;
        memset(p, 0, sizeof *p);
        snprintf(p->preset, sizeof p->preset, "%s", r->name);
        p->s = r->s;
        p->m1 = r->m1;
        p->m2 = r->m2;
        p->m3 = r->m3;
        p->w_norm = r->w_norm;
        p->x_norm = r->x_norm;
        p->bias = r->bias;
        p->intra = r->intra;
        p->inter = r->inter;
        return FKD_OK;
    }
    char known[256] = "";
    for (int i = 0; i < PRESET_COUNT; i++) {
        size_t n = strlen(known);
        snprintf(known + n, sizeof known - n, "%s%s", i ? ", " : "", presets[i].name);
    }
    return FKD_FAIL(FKD_ERR_ARG, "head.preset: unknown preset '%s' (known: %s)", preset ? preset : "",
                    known);
}

/* ---- options ------------------------------------------------------------------------- */

typedef struct {
    const char *key;
    bool is_bool;
    size_t offset;
} margin_option;

static const margin_option options[] = {
    {"s", false, offsetof(fkd_margin_params, s)},
    {"m1", false, offsetof(fkd_margin_params, m1)},
    {"m2", false, offsetof(fkd_margin_params, m2)},
    {"m3", false, offsetof(fkd_margin_params, m3)},
    {"w_norm", true, offsetof(fkd_margin_params, w_norm)},
    {"x_norm", true, offsetof(fkd_margin_params, x_norm)},
    {"bias", true, offsetof(fkd_margin_params, bias)},
    {"easy_margin", true, offsetof(fkd_margin_params, easy_margin)},
    {"straight_through", true, offsetof(fkd_margin_params, straight_through)},
    {"intra", false, offsetof(fkd_margin_params, intra)},
    {"inter", false, offsetof(fkd_margin_params, inter)},
    {"sphere_lambda", false, offsetof(fkd_margin_params, sphere_lambda)},
};
enum { OPTION_COUNT = sizeof options / sizeof options[0] };

fkd_status fkd_margin_params_set(fkd_margin_params *p, const char *key, const char *value)
{
    char full[64];
    snprintf(full, sizeof full, "head.%s", key ? key : "");
    for (int i = 0; i < OPTION_COUNT; i++) {
        if (!key || strcmp(key, options[i].key)) continue;
        char *field = (char *)p + options[i].offset;
        return options[i].is_bool ? fkd__heads_parse_bool(full, value, (bool *)field)
                                  : fkd__heads_parse_double(full, value, (double *)field);
    }
    return FKD_FAIL(FKD_ERR_ARG,
                    "%s: unknown key (known: preset, s, m1, m2, m3, w_norm, x_norm, bias, "
                    "easy_margin, straight_through, intra, inter, sphere_lambda)",
                    full);
}

fkd_status fkd_margin_params_validate(const fkd_margin_params *p)
{
    if (!(p->s > 0)) return FKD_FAIL(FKD_ERR_ARG, "head.s: must be > 0 (got %g)", p->s);
    /* m1 < 1 would widen the class (an anti-margin) on its own; the ArcFace paper's
     * combined margins (0.9, 0.4, 0.15) use it only together with m2 > 0. */
    if (!(p->m1 >= 1) && !(p->m2 > 0 && p->m1 > 0))
        return FKD_FAIL(FKD_ERR_ARG, "head.m1: must be >= 1 (got %g)%s", p->m1,
                        p->m1 > 0 ? "; m1 < 1 only together with m2 > 0" : "");
    if (p->m1 > 16) return FKD_FAIL(FKD_ERR_ARG, "head.m1: must be <= 16 (got %g)", p->m1);
    /* Without m2, cos(m1·θ) is only made monotone by the piecewise ψ for integer m1. */
    if (p->m2 == 0 && p->m1 != floor(p->m1))
        return FKD_FAIL(FKD_ERR_ARG,
                        "head.m1: a multiplicative margin without m2 must be an integer (got %g)",
                        p->m1);
    if (!(p->m2 >= 0 && p->m2 < M_PI))
        return FKD_FAIL(FKD_ERR_ARG, "head.m2: must be in [0, pi) (got %g)", p->m2);
    if (!(p->m3 >= 0)) return FKD_FAIL(FKD_ERR_ARG, "head.m3: must be >= 0 (got %g)", p->m3);
    if (!(p->intra >= 0)) return FKD_FAIL(FKD_ERR_ARG, "head.intra: must be >= 0 (got %g)", p->intra);
    if (!(p->inter >= 0)) return FKD_FAIL(FKD_ERR_ARG, "head.inter: must be >= 0 (got %g)", p->inter);
    if (!(p->sphere_lambda >= 0))
        return FKD_FAIL(FKD_ERR_ARG, "head.sphere_lambda: must be >= 0 (got %g)", p->sphere_lambda);
    if (p->inter > 0 && !p->w_norm)
        return FKD_FAIL(FKD_ERR_ARG, "head.inter: the inter-loss needs w_norm = true");
    if (p->bias && (p->w_norm || p->x_norm))
        return FKD_FAIL(FKD_ERR_ARG, "head.bias: only for an unnormalised head (w_norm and x_norm false)");
    return FKD_OK;
}

/* ---- ψ --------------------------------------------------------------------------------- */

/* T_m(c) = cos(m·θ) and U_{m−1}(c) = sin(m·θ)/sin θ for c = cos θ: polynomials, so both
 * stay finite at c = ±1 where sin θ = 0. */
static double chebyshev(int m, double c, double *u_m1)
{
    double t0 = 1, t1 = c, u0 = 1, u1 = 2 * c;
    if (m == 1) return *u_m1 = 1, c;
    for (int n = 2; n <= m; n++) {
        double t2 = 2 * c * t1 - t0;
        t0 = t1, t1 = t2;
        if (n < m) {
            double u2 = 2 * c * u1 - u0;
            u0 = u1, u1 = u2;
        }
    }
    *u_m1 = u1;
    return t1;
}

double fkd_margin_psi(const fkd_margin_params *p, double m2, double c, double *dpsi)
{
    c = fmin(1.0, fmax(-1.0, c));
    const double sin_t = sqrt(fmax(0.0, 1 - c * c));
    double psi, d;
    const int mi = (int)p->m1;
    if (p->m1 == 1 && m2 == 0) {
        psi = c, d = 1;
    } else if (p->m1 == 1) {
        /* ArcFace: cos(θ + m2) while θ + m2 < π (cos θ > cos(π − m2) = −cos m2), else
         * insightface's fallback cos θ − m2·sin m2; easy_margin: no margin for cos θ <= 0. */
        if (p->easy_margin ? c > 0 : c > -cos(m2)) {
            psi = c * cos(m2) - sin_t * sin(m2);
            d = cos(m2) + c * sin(m2) / fmax(sin_t, FKD__SIN_FLOOR);
        } else {
            psi = p->easy_margin ? c : c - m2 * sin(m2);
            d = 1;
        }
    } else if (m2 == 0 && p->m1 == mi) {
        /* L-Softmax / SphereFace: ψ = (−1)^k·cos(mθ) − 2k on [kπ/m, (k+1)π/m] */
        int k = (int)floor(mi * acos(c) / M_PI);
        k = k < 0 ? 0 : k > mi - 1 ? mi - 1 : k;
        double u;
        const double t = chebyshev(mi, c, &u), sign = k % 2 ? -1 : 1;
        psi = sign * t - 2 * k;
        d = sign * mi * u;
    } else {
        /* general combined margin, as the insightface MXNet code: no fallback */
        const double theta = acos(c);
        psi = cos(p->m1 * theta + m2);
        d = p->m1 * sin(p->m1 * theta + m2) / fmax(sin_t, FKD__SIN_FLOOR);
    }
    if (p->sphere_lambda > 0) {
        psi = (p->sphere_lambda * c + psi) / (1 + p->sphere_lambda);
        d = (p->sphere_lambda + d) / (1 + p->sphere_lambda);
    }
    *dpsi = p->straight_through ? 1 : d;
    return psi - p->m3;
}

/* ---- the two instantiations ------------------------------------------------------------ */

static fkd_status gemm_f32(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                           const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                           float *c, int64_t ldc)
{
    return fkd_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* Naive double GEMM with fkd_sgemm's semantics, for the (small) reference path. */
static fkd_status gemm_f64(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha,
                           const double *a, int64_t lda, const double *b, int64_t ldb, double beta,
                           double *c, int64_t ldc)
{
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t l = 0; l < k; l++)
                s += (ta ? a[l * lda + i] : a[i * lda + l]) * (tb ? b[j * ldb + l] : b[l * ldb + j]);
            c[i * ldc + j] = alpha * s + (beta == 0 ? 0 : beta * c[i * ldc + j]);
        }
    return FKD_OK;
}

/* Sums the per-thread blocks acc[t·n .. t·n + n) into the first. */
static void reduce_threads(double *acc, int threads, size_t n)
{
    for (int t = 1; t < threads; t++)
        for (size_t j = 0; j < n; j++) acc[j] += acc[(size_t)t * n + j];
}

#define R float
#define SUF f32
#include "heads/margin_impl.inc"
#undef R
#undef SUF
#define R double
#define SUF f64
#include "heads/margin_impl.inc"
#undef R
#undef SUF

/* ---- the head ------------------------------------------------------------------------- */

struct fkd_margin_head {
    fkd_margin_params p;
    int classes, dim, max_batch, last_batch;
    bool frozen;
    float *w, *gw;        /* (C, d) */
    float *b, *gb;        /* (C) or NULL */
    fkd_param params[2];
    int nparams;
    margin_ctx_f32 ctx;
};

static fkd_status check_batch(const fkd_margin_head *h, const float *x, const int *labels, int batch)
{
    if (!x) return FKD_FAIL(FKD_ERR_ARG, "head: no embeddings");
    if (batch < 1 || batch > h->max_batch)
        return FKD_FAIL(FKD_ERR_ARG, "head: batch %d outside [1, %d]", batch, h->max_batch);
    for (int i = 0; labels && i < batch; i++)
        if (labels[i] < 0 || labels[i] >= h->classes)
            return FKD_FAIL(FKD_ERR_ARG, "head: label %d of sample %d outside [0, %d)", labels[i], i,
                            h->classes);
    return FKD_OK;
}

static void set_param(fkd_param *q, const char *name, int ndims, int64_t d0, int64_t d1, float *data,
                      float *grad)
{
    memset(q, 0, sizeof *q);
    q->name = name;
    q->ndims = ndims;
    q->dims[0] = d0;
    q->dims[1] = d1;
    q->numel = ndims == 1 ? d0 : d0 * d1;
    q->data = data;
    q->grad = grad;
    q->storage = (size_t)q->numel;
    q->trainable = true;
    q->decay = ndims == 2; /* arcface_torch decays the FC weight like every other weight */
}

fkd_status fkd_margin_head_create(fkd_margin_head **out, const fkd_margin_params *p, int classes,
                                  int dim, int max_batch, uint64_t seed)
{
    *out = NULL;
    FKD_TRY(fkd_margin_params_validate(p));
    if (classes < 2 || dim < 1 || max_batch < 1)
        return FKD_FAIL(FKD_ERR_ARG, "head: need classes >= 2, dim >= 1, batch >= 1 (got %d, %d, %d)",
                        classes, dim, max_batch);
    fkd_margin_head *h = calloc(1, sizeof *h);
    if (!h) return FKD_FAIL(FKD_ERR_NOMEM, "head: no memory");
    h->p = *p;
    h->classes = classes;
    h->dim = dim;
    h->max_batch = max_batch;
    const size_t n = (size_t)classes * dim;
    h->w = malloc(n * sizeof(float));
    h->gw = calloc(n, sizeof(float));
    if (p->bias) {
        h->b = calloc(classes, sizeof(float));
        h->gb = calloc(classes, sizeof(float));
    }
    if (!h->w || !h->gw || (p->bias && (!h->b || !h->gb))) {
        fkd_margin_head_free(h);
        return FKD_FAIL(FKD_ERR_NOMEM, "head: no memory for %d × %d centres", classes, dim);
    }
    fkd_status st = margin_ctx_alloc_f32(&h->ctx, &h->p, max_batch, classes, dim);
    if (st != FKD_OK) {
        fkd_margin_head_free(h);
        return st;
    }
    /* arcface_torch: torch.normal(0, 0.01, (num_classes, embedding_size)) */
    fkd_rng rng;
    fkd_rng_seed(&rng, seed, 0);
    for (size_t i = 0; i < n; i++) h->w[i] = (float)(0.01 * fkd_rng_normal(&rng));
    set_param(&h->params[0], "head.weight", 2, classes, dim, h->w, h->gw);
    h->nparams = 1;
    if (p->bias) set_param(&h->params[h->nparams++], "head.bias", 1, classes, 0, h->b, h->gb);
    *out = h;
    return FKD_OK;
}

void fkd_margin_head_free(fkd_margin_head *h)
{
    if (!h) return;
    margin_ctx_free_f32(&h->ctx);
    free(h->w);
    free(h->gw);
    free(h->b);
    free(h->gb);
    free(h);
}

fkd_status fkd_margin_head_forward(fkd_margin_head *h, const float *x, const int *labels,
                                   const float *m2, int batch, float *loss, float *dx)
{
    if (!labels)
        return FKD_FAIL(FKD_ERR_ARG, "head.preset: '%s' needs labels (got none)", h->p.preset);
    FKD_TRY(check_batch(h, x, labels, batch));
    for (int i = 0; m2 && i < batch; i++)
        if (!(m2[i] >= 0 && m2[i] < M_PI))
            return FKD_FAIL(FKD_ERR_ARG, "head.m2: per-sample margin %d must be in [0, pi) (got %g)", i,
                            m2[i]);
    margin_ctx_f32 *t = &h->ctx;
    t->w = h->w;
    t->b = h->b;
    t->x = x;
    t->y = labels;
    t->m2 = m2;
    t->batch = batch;
    t->dx = dx;
    t->dw = h->frozen ? NULL : h->gw;
    t->db = h->frozen ? NULL : h->gb;
    double l = 0;
    FKD_TRY(margin_run_f32(t, &l));
    h->last_batch = batch;
    *loss = (float)l;
    return FKD_OK;
}

fkd_status fkd_margin_head_plain_logits(fkd_margin_head *h, const float *x, int batch,
                                        const float **logits)
{
    FKD_TRY(check_batch(h, x, NULL, batch));
    margin_ctx_f32 *t = &h->ctx;
    const int C = h->classes, d = h->dim;
    row_norms_f32(h->w, C, d, t->nw, t->threads);
    row_norms_f32(x, batch, d, t->nx, t->threads);
    FKD_TRY(fkd_sgemm(false, true, batch, C, d, 1, x, d, h->w, d, 0, t->logits, C));
    const fkd_margin_params *p = &h->p;
#pragma omp parallel for num_threads(t->threads) schedule(static)
    for (int i = 0; i < batch; i++)
        for (int j = 0; j < C; j++) {
            float *l = &t->logits[(size_t)i * C + j];
            *l = (float)(p->s * (p->x_norm ? 1 / t->nx[i] : 1) * (p->w_norm ? 1 / t->nw[j] : 1) * *l +
                         (h->b ? h->b[j] : 0));
        }
    h->last_batch = batch;
    *logits = t->logits;
    return FKD_OK;
}

const float *fkd_margin_head_logits(const fkd_margin_head *h)
{
    return h->last_batch ? h->ctx.logits : NULL;
}

fkd_status fkd_margin_head_set_centers(fkd_margin_head *h, const float *w, bool freeze)
{
    if (!w) return FKD_FAIL(FKD_ERR_ARG, "head: no centres given");
    memcpy(h->w, w, (size_t)h->classes * h->dim * sizeof(float));
    h->frozen = freeze;
    for (int i = 0; i < h->nparams; i++) h->params[i].trainable = !freeze;
    return FKD_OK;
}

fkd_status fkd_margin_head_set_sphere_lambda(fkd_margin_head *h, double lambda)
{
    if (!(lambda >= 0 && isfinite(lambda)))
        return FKD_FAIL(FKD_ERR_ARG, "head.sphere_lambda: must be >= 0 (got %g)", lambda);
    h->p.sphere_lambda = lambda;
    return FKD_OK;
}

void fkd_margin_head_zero_grad(fkd_margin_head *h)
{
    memset(h->gw, 0, (size_t)h->classes * h->dim * sizeof(float));
    if (h->gb) memset(h->gb, 0, (size_t)h->classes * sizeof(float));
}

fkd_status fkd_margin_head_params(fkd_margin_head *h, fkd_param **params, int *count)
{
    *params = h->params;
    *count = h->nparams;
    return FKD_OK;
}

const fkd_margin_params *fkd_margin_head_config(const fkd_margin_head *h)
{
    return &h->p;
}

fkd_status fkd_margin_loss_f64(const fkd_margin_params *p, const double *w, const double *b,
                               const double *x, const int *labels, const double *m2, int batch,
                               int classes, int dim, double *loss, double *dx, double *dw,
                               double *db)
{
    FKD_TRY(fkd_margin_params_validate(p));
    if (!labels) return FKD_FAIL(FKD_ERR_ARG, "head.preset: '%s' needs labels (got none)", p->preset);
    for (int i = 0; i < batch; i++)
        if (labels[i] < 0 || labels[i] >= classes)
            return FKD_FAIL(FKD_ERR_ARG, "head: label %d of sample %d outside [0, %d)", labels[i], i,
                            classes);
    margin_ctx_f64 t;
    FKD_TRY(margin_ctx_alloc_f64(&t, p, batch, classes, dim));
    if (dw) memset(dw, 0, (size_t)classes * dim * sizeof(double));
    if (db) memset(db, 0, (size_t)classes * sizeof(double));
    t.w = w;
    t.b = p->bias ? b : NULL;
    t.x = x;
    t.y = labels;
    t.m2 = m2;
    t.batch = batch;
    t.dx = dx;
    t.dw = dw;
    t.db = p->bias ? db : NULL;
    fkd_status st = margin_run_f64(&t, loss);
    margin_ctx_free_f64(&t);
    return st;
}
