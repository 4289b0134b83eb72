/* Contrastive, triplet and center losses (see metric.h). */
#include "heads/metric.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "heads/options.h"

static const char *const mining_names[] = {"all", "hard", "semi-hard"};
_Static_assert(sizeof mining_names / sizeof mining_names[0] == FKD_MINING_COUNT, "one name per mining");

void fkd_metric_params_default(fkd_metric_params *p)
{
    p->contrastive_margin = 1.0;
    p->triplet_margin = 0.2;
    p->mining = FKD_MINING_SEMIHARD;
    p->triplet_normalize = true;
    p->center_alpha = 0.5;
    p->center_lambda = 0.003;
}

/* A number for `key` within [lo, hi] (strict at lo when lo_open). */
static fkd_status parse_range(const char *key, const char *value, double lo, bool lo_open, double hi,
                              double *out)
{
    double v;
    FKD_TRY(fkd__heads_parse_double(key, value, &v));
    if (v < lo || (lo_open && v == lo) || v > hi)
        return FKD_FAIL(FKD_ERR_ARG, "%s: must be in %c%g, %g] (got %g)", key, lo_open ? '(' : '[', lo, hi, v);
    *out = v;
    return FKD_OK;
}

fkd_status fkd_metric_params_set(fkd_metric_params *p, const char *key, const char *value)
{
    char full[64];
    snprintf(full, sizeof full, "head.%s", key ? key : "");
    if (!key) key = "";
    if (!strcmp(key, "contrastive.margin")) return parse_range(full, value, 0, true, 1e6, &p->contrastive_margin);
    if (!strcmp(key, "triplet.margin")) return parse_range(full, value, 0, false, 1e6, &p->triplet_margin);
    if (!strcmp(key, "triplet.normalize")) return fkd__heads_parse_bool(full, value, &p->triplet_normalize);
    if (!strcmp(key, "center.alpha")) return parse_range(full, value, 0, true, 1, &p->center_alpha);
    if (!strcmp(key, "center.lambda")) return parse_range(full, value, 0, false, 1e6, &p->center_lambda);
    if (!strcmp(key, "triplet.mining")) {
        for (int i = 0; i < FKD_MINING_COUNT; i++)
            if (value && !strcmp(value, mining_names[i])) return p->mining = (fkd_triplet_mining)i, FKD_OK;
        return FKD_FAIL(FKD_ERR_ARG, "%s: unknown mining '%s' (known: all, hard, semi-hard)", full,
                        value ? value : "");
    }
    return FKD_FAIL(FKD_ERR_ARG,
                    "%s: unknown key (known: contrastive.margin, triplet.margin, triplet.mining, "
                    "triplet.normalize, center.alpha, center.lambda)",
                    full);
}

static fkd_status check_inputs(const char *what, const double *f, const int *labels, int batch, int dim)
{
    if (!labels) return FKD_FAIL(FKD_ERR_ARG, "head: %s loss needs labels (got none)", what);
    if (!f || batch < 2 || dim < 1)
        return FKD_FAIL(FKD_ERR_ARG, "head: %s loss needs a batch of at least 2 (got %d × %d)", what, batch, dim);
    return FKD_OK;
}

static double sqdist(const double *a, const double *b, int d)
{
    double s = 0;
    for (int k = 0; k < d; k++) s += (a[k] - b[k]) * (a[k] - b[k]);
    return s;
}

/* g += w·(a − b) over d entries. */
static void axpy_diff(double *g, double w, const double *a, const double *b, int d)
{
    for (int k = 0; k < d; k++) g[k] += w * (a[k] - b[k]);
}

fkd_status fkd_contrastive_loss_f64(const double *f, const int *labels, int batch, int dim,
                                    double margin, double *loss, double *df)
{
    FKD_TRY(check_inputs("contrastive", f, labels, batch, dim));
    const double w = 2.0 / ((double)batch * (batch - 1)); /* 1 / number of pairs */
    double l = 0;
    if (df) memset(df, 0, sizeof(double) * batch * dim);
    for (int i = 0; i < batch; i++)
        for (int j = i + 1; j < batch; j++) {
            const double *fi = f + (size_t)i * dim, *fj = f + (size_t)j * dim;
            const double dd = sqdist(fi, fj, dim);
            double coef; /* dL/df_i = coef·(f_i − f_j), dL/df_j = −coef·(f_i − f_j) */
            if (labels[i] == labels[j]) {
                l += 0.5 * dd;
                coef = w;
            } else {
                const double dist = sqrt(dd), gap = margin - dist;
                if (gap <= 0) continue;
                l += 0.5 * gap * gap;
                /* d/df_i of ½(m − ‖f_i − f_j‖)²; at f_i = f_j the direction is undefined:
                 * take the zero subgradient */
                coef = dist > 1e-12 ? -w * gap / dist : 0;
            }
            if (df) {
                axpy_diff(df + (size_t)i * dim, coef, fi, fj, dim);
                axpy_diff(df + (size_t)j * dim, -coef, fi, fj, dim);
            }
        }
    *loss = l * w;
    return FKD_OK;
}

/* One hinge term max(0, D_ap − D_an + α) with weight w; gradient into df. */
static double triplet_term(const double *f, int dim, int a, int p, int n, double dap, double dan,
                           double alpha, double w, double *df)
{
    const double v = dap - dan + alpha;
    if (v <= 0) return 0;
    if (df) {
        const double *fa = f + (size_t)a * dim, *fp = f + (size_t)p * dim, *fn = f + (size_t)n * dim;
        /* dD_ap/df_a = 2(f_a − f_p), dD_ap/df_p = −2(f_a − f_p); likewise for n with − */
        axpy_diff(df + (size_t)a * dim, 2 * w, fn, fp, dim);
        axpy_diff(df + (size_t)p * dim, -2 * w, fa, fp, dim);
        axpy_diff(df + (size_t)n * dim, 2 * w, fa, fn, dim);
    }
    return w * v;
}

/* Visits the mined triplets: with df == NULL counts them, else adds loss and gradient
 * with weight w each. */
static double triplet_visit(const double *f, const double *dist, const int *y, int batch, int dim,
                            double alpha, fkd_triplet_mining mining, double w, double *df, int *count)
{
    double l = 0;
    int n_terms = 0;
    for (int a = 0; a < batch; a++) {
        const double *da = dist + (size_t)a * batch;
        if (mining == FKD_MINING_HARD) {
            int hp = -1, hn = -1;
            for (int j = 0; j < batch; j++) {
                if (j != a && y[j] == y[a] && (hp < 0 || da[j] > da[hp])) hp = j;
                if (y[j] != y[a] && (hn < 0 || da[j] < da[hn])) hn = j;
            }
            if (hp < 0 || hn < 0) continue;
            n_terms++;
            if (df) l += triplet_term(f, dim, a, hp, hn, da[hp], da[hn], alpha, w, df);
            continue;
        }
        for (int p = 0; p < batch; p++) {
            if (p == a || y[p] != y[a]) continue;
            if (mining == FKD_MINING_ALL) {
                for (int n = 0; n < batch; n++) {
                    if (y[n] == y[a]) continue;
                    n_terms++;
                    if (df) l += triplet_term(f, dim, a, p, n, da[p], da[n], alpha, w, df);
                }
                continue;
            }
            int inside = -1, outside = -1; /* farthest negative; nearest farther than p */
            for (int n = 0; n < batch; n++) {
                if (y[n] == y[a]) continue;
                if (inside < 0 || da[n] > da[inside]) inside = n;
                if (da[n] > da[p] && (outside < 0 || da[n] < da[outside])) outside = n;
            }
            if (inside < 0) continue;
            const int n = outside >= 0 ? outside : inside;
            n_terms++;
            if (df) l += triplet_term(f, dim, a, p, n, da[p], da[n], alpha, w, df);
        }
    }
    *count = n_terms;
    return l;
}

fkd_status fkd_triplet_loss_f64(const double *f, const int *labels, int batch, int dim, double alpha,
                                fkd_triplet_mining mining, bool normalize, double *loss, double *df)
{
    FKD_TRY(check_inputs("triplet", f, labels, batch, dim));
    const size_t bd = (size_t)batch * dim;
    double *g = malloc(sizeof(double) * bd), *dg = calloc(bd, sizeof(double));
    double *dist = malloc(sizeof(double) * batch * batch), *norms = malloc(sizeof(double) * batch);
    if (!g || !dg || !dist || !norms) {
        free(g), free(dg), free(dist), free(norms);
        return FKD_FAIL(FKD_ERR_NOMEM, "head: triplet loss: no memory for a batch of %d", batch);
    }
    for (int i = 0; i < batch; i++) {
        double s = 0;
        for (int k = 0; k < dim; k++) s += f[(size_t)i * dim + k] * f[(size_t)i * dim + k];
        norms[i] = normalize ? fmax(sqrt(s), 1e-12) : 1;
        for (int k = 0; k < dim; k++) g[(size_t)i * dim + k] = f[(size_t)i * dim + k] / norms[i];
    }
    for (int i = 0; i < batch; i++)
        for (int j = 0; j < batch; j++) dist[(size_t)i * batch + j] = sqdist(g + (size_t)i * dim, g + (size_t)j * dim, dim);
    int count = 0;
    triplet_visit(g, dist, labels, batch, dim, alpha, mining, 0, NULL, &count);
    *loss = count ? triplet_visit(g, dist, labels, batch, dim, alpha, mining, 1.0 / count, dg, &count) : 0;
    if (df)
        for (int i = 0; i < batch; i++) {
            /* back through g = f/‖f‖: (dg − (g·dg)·g)/‖f‖ */
            double *o = df + (size_t)i * dim;
            const double *gi = g + (size_t)i * dim, *dgi = dg + (size_t)i * dim;
            double dot = 0;
            for (int k = 0; k < dim; k++) dot += gi[k] * dgi[k];
            for (int k = 0; k < dim; k++) o[k] = normalize ? (dgi[k] - dot * gi[k]) / norms[i] : dgi[k];
        }
    free(g), free(dg), free(dist), free(norms);
    return FKD_OK;
}

fkd_status fkd_center_loss_f64(const double *f, const int *labels, const double *centers, int batch,
                               int dim, int classes, double lambda, double *loss, double *df)
{
    FKD_TRY(check_inputs("center", f, labels, batch, dim));
    double l = 0;
    for (int i = 0; i < batch; i++) {
        if (labels[i] < 0 || labels[i] >= classes)
            return FKD_FAIL(FKD_ERR_ARG, "head: label %d of sample %d outside [0, %d)", labels[i], i, classes);
        const double *fi = f + (size_t)i * dim, *c = centers + (size_t)labels[i] * dim;
        l += sqdist(fi, c, dim);
        for (int k = 0; df && k < dim; k++) df[(size_t)i * dim + k] = lambda * (fi[k] - c[k]) / batch;
    }
    *loss = lambda * l / (2.0 * batch);
    return FKD_OK;
}

/* ---- fp32 front end ------------------------------------------------------------------- */

struct fkd_metric_loss {
    fkd_metric_kind kind;
    fkd_metric_params p;
    int classes, dim, max_batch;
    double *f, *df;      /* (B, d) double copies */
    double *centers64;   /* (B, d) centres of the batch's samples, in double */
    int *rows;           /* (B) 0..B−1: labels into centers64 */
    float *centers;      /* (C, d) the saved parameter */
    int *counts;         /* (C) */
    fkd_param param;
};

fkd_status fkd_metric_loss_create(fkd_metric_loss **out, fkd_metric_kind kind, const fkd_metric_params *p,
                                  int classes, int dim, int max_batch)
{
    *out = NULL;
    if ((int)kind < 0 || kind >= FKD_METRIC_COUNT) return FKD_FAIL(FKD_ERR_ARG, "head: unknown metric loss %d", kind);
    if (dim < 1 || max_batch < 2 || (kind == FKD_METRIC_CENTER && classes < 1))
        return FKD_FAIL(FKD_ERR_ARG, "head: metric loss needs dim >= 1, batch >= 2 (got %d, %d)", dim, max_batch);
    fkd_metric_loss *m = calloc(1, sizeof *m);
    if (!m) return FKD_FAIL(FKD_ERR_NOMEM, "head: no memory");
    m->kind = kind;
    m->p = *p;
    m->classes = classes;
    m->dim = dim;
    m->max_batch = max_batch;
    m->f = malloc(sizeof(double) * max_batch * dim);
    m->df = malloc(sizeof(double) * max_batch * dim);
    bool ok = m->f && m->df;
    if (kind == FKD_METRIC_CENTER) {
        m->centers = calloc((size_t)classes * dim, sizeof(float));
        m->centers64 = malloc(sizeof(double) * max_batch * dim);
        m->counts = malloc(sizeof(int) * classes);
        m->rows = malloc(sizeof(int) * max_batch);
        ok = ok && m->centers && m->centers64 && m->counts && m->rows;
        for (int i = 0; ok && i < max_batch; i++) m->rows[i] = i;
        m->param = (fkd_param){.name = "head.centers", .ndims = 2, .dims = {classes, dim},
                               .numel = (int64_t)classes * dim, .data = m->centers,
                               .storage = (size_t)classes * dim};
    }
    if (!ok) {
        fkd_metric_loss_free(m);
        return FKD_FAIL(FKD_ERR_NOMEM, "head: no memory for the metric loss");
    }
    *out = m;
    return FKD_OK;
}

void fkd_metric_loss_free(fkd_metric_loss *m)
{
    if (!m) return;
    free(m->f), free(m->df), free(m->centers64), free(m->centers), free(m->counts), free(m->rows);
    free(m);
}

/* centers64[i] = c_{y_i} in double, after checking the labels. */
static fkd_status gather_centers(fkd_metric_loss *m, const int *labels, int batch)
{
    if (!labels) return FKD_FAIL(FKD_ERR_ARG, "head: center loss needs labels (got none)");
    if (batch > m->max_batch) return FKD_FAIL(FKD_ERR_ARG, "head: batch %d above %d", batch, m->max_batch);
    const int d = m->dim;
    for (int i = 0; i < batch; i++) {
        if (labels[i] < 0 || labels[i] >= m->classes)
            return FKD_FAIL(FKD_ERR_ARG, "head: label %d of sample %d outside [0, %d)", labels[i], i, m->classes);
        for (int k = 0; k < d; k++) m->centers64[(size_t)i * d + k] = m->centers[(size_t)labels[i] * d + k];
    }
    return FKD_OK;
}

fkd_status fkd_metric_loss_forward(fkd_metric_loss *m, const float *f, const int *labels, int batch,
                                   float *loss, float *df)
{
    if (batch > m->max_batch) return FKD_FAIL(FKD_ERR_ARG, "head: batch %d above %d", batch, m->max_batch);
    if (!f) return FKD_FAIL(FKD_ERR_ARG, "head: no embeddings");
    const size_t bd = (size_t)batch * m->dim;
    for (size_t i = 0; i < bd; i++) m->f[i] = f[i];
    double l = 0, *g = df ? m->df : NULL;
    switch (m->kind) {
    case FKD_METRIC_CONTRASTIVE:
        FKD_TRY(fkd_contrastive_loss_f64(m->f, labels, batch, m->dim, m->p.contrastive_margin, &l, g));
        break;
    case FKD_METRIC_TRIPLET:
        FKD_TRY(fkd_triplet_loss_f64(m->f, labels, batch, m->dim, m->p.triplet_margin, m->p.mining,
                                     m->p.triplet_normalize, &l, g));
        break;
    default:
        /* gather the batch's centres (B, d) so a step costs O(B·d), not O(C·d) */
        FKD_TRY(gather_centers(m, labels, batch));
        FKD_TRY(fkd_center_loss_f64(m->f, m->rows, m->centers64, batch, m->dim, batch, m->p.center_lambda, &l, g));
        break;
    }
    for (size_t i = 0; df && i < bd; i++) df[i] = (float)m->df[i];
    *loss = (float)l;
    return FKD_OK;
}

fkd_status fkd_metric_loss_update_centers(fkd_metric_loss *m, const float *f, const int *labels, int batch)
{
    if (m->kind != FKD_METRIC_CENTER) return FKD_FAIL(FKD_ERR_ARG, "head: only the center loss has centres");
    const int d = m->dim;
    /* Δc_j = Σ_{y_i=j} (c_j − f_i) / (1 + n_j), from the centres before this update */
    FKD_TRY(gather_centers(m, labels, batch));
    memset(m->counts, 0, sizeof(int) * m->classes);
    for (int i = 0; i < batch; i++) m->counts[labels[i]]++;
    for (int i = 0; i < batch; i++) {
        const int j = labels[i];
        const double step = m->p.center_alpha / (1 + m->counts[j]);
        for (int k = 0; k < d; k++)
            m->centers[(size_t)j * d + k] -= (float)(step * (m->centers64[(size_t)i * d + k] - f[(size_t)i * d + k]));
    }
    return FKD_OK;
}

fkd_status fkd_metric_loss_params(fkd_metric_loss *m, fkd_param **params, int *count)
{
    *params = m->kind == FKD_METRIC_CENTER ? &m->param : NULL;
    *count = m->kind == FKD_METRIC_CENTER;
    return FKD_OK;
}
