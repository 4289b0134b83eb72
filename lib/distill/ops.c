/* Shared distiller building blocks (see ops.h). */
#include <math.h>
#include <stdlib.h>

#include "distill/ops.h"
#include "nn/shim.h"

fkd_status fkd__alloc_buffers(float **block, float **const ptrs[], const int64_t sizes[], int n,
                              const char *who)
{
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += sizes[i];
    *block = calloc((size_t)(total > 0 ? total : 1), sizeof(float));
    if (!*block)
        return FKD_FAIL(FKD_ERR_NOMEM, "distiller %s: cannot allocate %lld floats", who,
                        (long long)total);
    float *p = *block;
    for (int i = 0; i < n; i++) {
        *ptrs[i] = p;
        p += sizes[i];
    }
    return FKD_OK;
}

void fkd__rows_normalize(float *y, float *norm, const float *x, int64_t n, int64_t d)
{
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const float *xi = x + i * d;
        double ss = 0.0;
        for (int64_t k = 0; k < d; k++) ss += (double)xi[k] * xi[k];
        float nr = (float)sqrt(ss);
        float inv = 1.0f / (nr > FKD__NORM_EPS ? nr : FKD__NORM_EPS);
        norm[i] = nr;
        for (int64_t k = 0; k < d; k++) y[i * d + k] = xi[k] * inv;
    }
}

void fkd__rows_normalize_backward(float *dx, const float *dy, const float *y, const float *norm,
                                  int64_t n, int64_t d, float scale)
{
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const float *yi = y + i * d, *dyi = dy + i * d;
        float *dxi = dx + i * d;
        if (norm[i] <= FKD__NORM_EPS) {
            /* y = x / eps: the clamp has no gradient, the division has 1/eps. */
            for (int64_t k = 0; k < d; k++) dxi[k] += scale * dyi[k] / FKD__NORM_EPS;
            continue;
        }
        double dot = 0.0;
        for (int64_t k = 0; k < d; k++) dot += (double)yi[k] * dyi[k];
        float f = scale / norm[i], fd = (float)dot;
        for (int64_t k = 0; k < d; k++) dxi[k] += f * (dyi[k] - yi[k] * fd);
    }
}

fkd_status fkd__gram(float *g, const float *x, int64_t n, int64_t d, int64_t ldx)
{
    return fkd_sgemm(false, true, n, n, d, 1.0f, x, ldx, x, ldx, 0.0f, g, n);
}

fkd_status fkd__gram_backward(float *dx, float *dg, const float *x, int64_t n, int64_t d,
                              int64_t ldx, float scale)
{
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = i; j < n; j++) {
            float s = dg[i * n + j] + dg[j * n + i];
            dg[i * n + j] = s;
            dg[j * n + i] = s;
        }
    }
    return fkd_sgemm(false, false, n, d, n, scale, dg, n, x, ldx, 1.0f, dx, ldx);
}

void fkd__pdist_from_gram(float *dist, const float *g, int64_t n)
{
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < n; j++) {
            float sq = g[i * n + i] + g[j * n + j] - 2.0f * g[i * n + j];
            dist[i * n + j] = i == j ? 0.0f : sqrtf(sq > FKD__DIST_EPS ? sq : FKD__DIST_EPS);
        }
    }
}

fkd_status fkd__pdist_backward(float *dx, float *ddist, const float *dist, const float *x,
                               int64_t n, int64_t d, float scale)
{
    /* dist_ij = sqrt(q_ij), q_ij = ‖x_i − x_j‖²: ∂/∂q = ddist / (2 dist); a clamped q
     * (dist at its floor) passes nothing. With a_ij = ∂L/∂q_ij and s = a + aᵀ,
     * ∂L/∂x_k = 2 Σ_j s_kj (x_k − x_j) = (M x)_k with M = 2·(diag(rowsum s) − s). */
    const float floor = sqrtf(FKD__DIST_EPS) * 1.0001f;
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < n; j++) {
            float di = dist[i * n + j];
            ddist[i * n + j] = (i == j || di <= floor) ? 0.0f : ddist[i * n + j] / (2.0f * di);
        }
    }
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = i; j < n; j++) {
            float s = ddist[i * n + j] + ddist[j * n + i];
            ddist[i * n + j] = -2.0f * s;
            ddist[j * n + i] = -2.0f * s;
        }
    }
    for (int64_t i = 0; i < n; i++) {
        double row = 0.0;
        for (int64_t j = 0; j < n; j++) row += ddist[i * n + j];
        ddist[i * n + i] -= (float)row; /* diagonal was 0: now 2·rowsum(s) */
    }
    return fkd_sgemm(false, false, n, d, n, scale, ddist, n, x, d, 1.0f, dx, d);
}

fkd_status fkd__emb_pair_init(fkd__emb_pair *p, int64_t max_batch, int64_t d_s, int64_t d_t,
                              const char *who)
{
    p->d_s = d_s;
    p->d_t = d_t;
    float **const ptrs[] = {&p->s_hat, &p->s_norm, &p->t_hat, &p->t_norm, &p->d_hat};
    const int64_t sizes[] = {max_batch * d_s, max_batch, max_batch * d_t, max_batch,
                             max_batch * d_s};
    return fkd__alloc_buffers(&p->block, ptrs, sizes, 5, who);
}

void fkd__emb_pair_normalize(fkd__emb_pair *p, const float *student, const float *teacher,
                             int64_t b)
{
    fkd__rows_normalize(p->s_hat, p->s_norm, student, b, p->d_s);
    fkd__rows_normalize(p->t_hat, p->t_norm, teacher, b, p->d_t);
}

void fkd__emb_pair_backward(const fkd__emb_pair *p, float *d_student_emb, int64_t b,
                            float scale)
{
    fkd__rows_normalize_backward(d_student_emb, p->d_hat, p->s_hat, p->s_norm, b, p->d_s, scale);
}

void fkd__emb_pair_free(fkd__emb_pair *p)
{
    free(p->block);
    p->block = NULL;
}

double fkd__smooth_l1(double e)
{
    double a = fabs(e);
    return a < 1.0 ? 0.5 * e * e : a - 0.5;
}

double fkd__smooth_l1_grad(double e)
{
    return e <= -1.0 ? -1.0 : (e >= 1.0 ? 1.0 : e);
}
