/* Double reference forwards of the distillers: see distill_ref.h. Naive loops, no BLAS. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/distill_ref.h"

#define REF_EPS 1e-12 /* the normalisation / distance floors of lib/distill/ops.h */

static double *alloc_d(int64_t n) { return calloc((size_t)(n > 0 ? n : 1), sizeof(double)); }

/* y (n, d) = rows of x divided by max(norm, eps). */
static void normalize(double *y, const double *x, int64_t n, int64_t d)
{
    for (int64_t i = 0; i < n; i++) {
        double ss = 0.0;
        for (int64_t k = 0; k < d; k++) ss += x[i * d + k] * x[i * d + k];
        double nr = sqrt(ss);
        nr = nr > REF_EPS ? nr : REF_EPS;
        for (int64_t k = 0; k < d; k++) y[i * d + k] = x[i * d + k] / nr;
    }
}

static double dot(const double *a, const double *b, int64_t d)
{
    double s = 0.0;
    for (int64_t k = 0; k < d; k++) s += a[k] * b[k];
    return s;
}

/* dist (n, n) = ‖x_i − x_j‖ with the squared value clamped at eps, diagonal 0. */
static void pdist(double *dist, const double *x, int64_t n, int64_t d)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            double sq = 0.0;
            for (int64_t k = 0; k < d; k++) {
                double e = x[i * d + k] - x[j * d + k];
                sq += e * e;
            }
            dist[i * n + j] = i == j ? 0.0 : sqrt(sq > REF_EPS ? sq : REF_EPS);
        }
}

static double huber(double e) { return fabs(e) < 1.0 ? 0.5 * e * e : fabs(e) - 0.5; }

/* Row-wise log-sum-exp of z (n). */
static double lse(const double *z, int64_t n)
{
    double m = z[0], s = 0.0;
    for (int64_t i = 1; i < n; i++) m = z[i] > m ? z[i] : m;
    for (int64_t i = 0; i < n; i++) s += exp(z[i] - m);
    return m + log(s);
}

static double ref_kd(const ref_params *p, const ref_batch *x)
{
    int64_t b = x->b, C = x->classes;
    double *s = alloc_d(b * x->d_s), *t = alloc_d(b * x->d_t);
    double *ws = alloc_d(C * x->d_s), *wt = alloc_d(C * x->d_t);
    double *zs = alloc_d(C), *zt = alloc_d(C);
    normalize(s, x->s_emb, b, x->d_s);
    normalize(t, x->t_emb, b, x->d_t);
    normalize(ws, x->w_s, C, x->d_s);
    normalize(wt, x->w_t, C, x->d_t);
    double loss = 0.0;
    for (int64_t i = 0; i < b; i++) {
        for (int64_t c = 0; c < C; c++) {
            zs[c] = p->s * dot(s + i * x->d_s, ws + c * x->d_s, x->d_s) / p->T;
            zt[c] = p->s * dot(t + i * x->d_t, wt + c * x->d_t, x->d_t) / p->T;
        }
        double ls = lse(zs, C), lt = lse(zt, C);
        for (int64_t c = 0; c < C; c++) {
            double logp = zt[c] - lt, logq = zs[c] - ls;
            loss += exp(logp) * (logp - logq);
        }
    }
    free(s), free(t), free(ws), free(wt), free(zs), free(zt);
    return p->T * p->T * loss / (double)b;
}

static double ref_darkrank(const ref_params *p, const ref_batch *x)
{
    int64_t b = x->b, k = p->list_length < b - 1 ? p->list_length : b - 1;
    if (k < 1) return 0.0;
    double *s = alloc_d(b * x->d_s), *t = alloc_d(b * x->d_t);
    double *ds = alloc_d(b * b), *dt = alloc_d(b * b), *sig = alloc_d(k);
    int64_t *order = calloc((size_t)b, sizeof(int64_t));
    normalize(s, x->s_emb, b, x->d_s);
    normalize(t, x->t_emb, b, x->d_t);
    pdist(ds, s, b, x->d_s);
    pdist(dt, t, b, x->d_t);
    double loss = 0.0;
    for (int64_t i = 0; i < b; i++) {
        /* selection sort of the others by teacher distance, lower index first on ties */
        int64_t n = 0;
        for (int64_t j = 0; j < b; j++)
            if (j != i) order[n++] = j;
        for (int64_t m = 0; m < k; m++) {
            int64_t best = m;
            for (int64_t r = m + 1; r < n; r++)
                if (dt[i * b + order[r]] < dt[i * b + order[best]]) best = r;
            int64_t pick = order[best];
            memmove(order + m + 1, order + m, (size_t)(best - m) * sizeof(int64_t));
            order[m] = pick;
        }
        for (int64_t m = 0; m < k; m++) sig[m] = -p->alpha * pow(ds[i * b + order[m]], p->beta);
        for (int64_t m = 0; m < k; m++) loss -= sig[m] - lse(sig + m, k - m);
    }
    free(s), free(t), free(ds), free(dt), free(sig), free(order);
    return loss / (double)b;
}

/* The row-normalised Gram matrix of f (b, w) into g (b, b). */
static void sp_gram(double *g, const double *f, int64_t b, int64_t w)
{
    for (int64_t i = 0; i < b; i++)
        for (int64_t j = 0; j < b; j++) g[i * b + j] = dot(f + i * w, f + j * w, w);
    double *tmp = alloc_d(b * b);
    normalize(tmp, g, b, b);
    memcpy(g, tmp, (size_t)(b * b) * sizeof(double));
    free(tmp);
}

static double ref_sp(const ref_batch *x)
{
    int64_t b = x->b;
    double *gs = alloc_d(b * b), *gt = alloc_d(b * b);
    sp_gram(gs, x->s_tap ? x->s_tap : x->s_emb, b, x->s_tap ? x->f_s : x->d_s);
    sp_gram(gt, x->t_tap ? x->t_tap : x->t_emb, b, x->t_tap ? x->f_t : x->d_t);
    double loss = 0.0;
    for (int64_t n = 0; n < b * b; n++) loss += (gs[n] - gt[n]) * (gs[n] - gt[n]);
    free(gs), free(gt);
    return loss / (double)(b * b);
}

/* CC matrix entry: the order-P Taylor series of exp(2γ·sim), times exp(−2γ). */
static double cc_kernel(double sim, double gamma, int64_t order)
{
    double k = 0.0, fact = 1.0;
    for (int64_t q = 0; q <= order; q++) {
        if (q > 0) fact *= (double)q;
        k += exp(-2.0 * gamma) * pow(2.0 * gamma, (double)q) / fact * pow(sim, (double)q);
    }
    return k;
}

static double ref_cckd(const ref_params *p, const ref_batch *x)
{
    int64_t b = x->b;
    double *s = alloc_d(b * x->d_s), *t = alloc_d(b * x->d_t), loss = 0.0;
    normalize(s, x->s_emb, b, x->d_s);
    normalize(t, x->t_emb, b, x->d_t);
    for (int64_t i = 0; i < b; i++)
        for (int64_t j = 0; j < b; j++) {
            double cs = cc_kernel(dot(s + i * x->d_s, s + j * x->d_s, x->d_s), p->gamma, p->order);
            double ct = cc_kernel(dot(t + i * x->d_t, t + j * x->d_t, x->d_t), p->gamma, p->order);
            loss += (cs - ct) * (cs - ct);
        }
    free(s), free(t);
    return loss / (double)(b * b);
}

/* cos of the angle at anchor a between samples j and k (0 when j or k is a). */
static double angle(const double *x, int64_t d, int64_t a, int64_t j, int64_t k)
{
    if (j == a || k == a) return 0.0;
    double uv = 0.0, uu = 0.0, vv = 0.0;
    for (int64_t q = 0; q < d; q++) {
        double u = x[j * d + q] - x[a * d + q], v = x[k * d + q] - x[a * d + q];
        uv += u * v, uu += u * u, vv += v * v;
    }
    return uv / (fmax(sqrt(uu), REF_EPS) * fmax(sqrt(vv), REF_EPS));
}

static double ref_rkd(const ref_params *p, const ref_batch *x)
{
    int64_t b = x->b, ds = x->d_s, dt = x->d_t;
    if (b < 2) return 0.0;
    double *s = alloc_d(b * ds), *t = alloc_d(b * dt);
    double *dist_s = alloc_d(b * b), *dist_t = alloc_d(b * b);
    if (p->normalize) {
        normalize(s, x->s_emb, b, ds);
        normalize(t, x->t_emb, b, dt);
    } else {
        memcpy(s, x->s_emb, (size_t)(b * ds) * sizeof(double));
        memcpy(t, x->t_emb, (size_t)(b * dt) * sizeof(double));
    }
    pdist(dist_s, s, b, ds);
    pdist(dist_t, t, b, dt);
    double mu_s = 0.0, mu_t = 0.0, l_d = 0.0, l_a = 0.0;
    for (int64_t n = 0; n < b * b; n++) mu_s += dist_s[n], mu_t += dist_t[n];
    mu_s /= (double)(b * (b - 1));
    mu_t /= (double)(b * (b - 1));
    for (int64_t n = 0; n < b * b; n++) l_d += huber(dist_s[n] / mu_s - dist_t[n] / mu_t);
    for (int64_t a = 0; a < b; a++)
        for (int64_t j = 0; j < b; j++)
            for (int64_t k = 0; k < b; k++)
                l_a += huber(angle(s, ds, a, j, k) - angle(t, dt, a, j, k));
    free(s), free(t), free(dist_s), free(dist_t);
    return p->distance_weight * l_d / (double)(b * b) +
           p->angle_weight * l_a / (double)(b * b * b);
}

static double ref_l2(const ref_params *p, const ref_batch *x)
{
    int64_t n = x->b * x->d_s;
    double *s = alloc_d(n), *t = alloc_d(n), loss = 0.0;
    if (p->normalize) {
        normalize(s, x->s_emb, x->b, x->d_s);
        normalize(t, x->t_emb, x->b, x->d_t);
    } else {
        memcpy(s, x->s_emb, (size_t)n * sizeof(double));
        memcpy(t, x->t_emb, (size_t)n * sizeof(double));
    }
    for (int64_t q = 0; q < n; q++) loss += (s[q] - t[q]) * (s[q] - t[q]);
    free(s), free(t);
    return loss / (double)n;
}

static double ref_cosine(const ref_batch *x)
{
    int64_t n = x->b * x->d_s;
    double *s = alloc_d(n), *t = alloc_d(n), loss = 0.0;
    normalize(s, x->s_emb, x->b, x->d_s);
    normalize(t, x->t_emb, x->b, x->d_t);
    for (int64_t i = 0; i < x->b; i++) loss += 1.0 - dot(s + i * x->d_s, t + i * x->d_s, x->d_s);
    free(s), free(t);
    return loss / (double)x->b;
}

double ref_distill_loss(const char *method, const ref_params *p, const ref_batch *x)
{
    if (strcmp(method, "kd") == 0) return ref_kd(p, x);
    if (strcmp(method, "darkrank") == 0) return ref_darkrank(p, x);
    if (strcmp(method, "sp") == 0) return ref_sp(x);
    if (strcmp(method, "cckd") == 0) return ref_cckd(p, x);
    if (strcmp(method, "rkd") == 0) return ref_rkd(p, x);
    if (strcmp(method, "l2") == 0) return ref_l2(p, x);
    if (strcmp(method, "cosine") == 0) return ref_cosine(x);
    return NAN;
}
