/* Building blocks shared by the distillers (internal: fkd__ names): row normalisation,
 * Gram matrices and pairwise distances, each a forward/backward pair on fp32 row-major
 * arrays. Backward functions ACCUMULATE scale·gradient into their first argument.
 *
 * Legend: n rows (a batch, or classes), d columns.
 */
#ifndef FKD_DISTILL_OPS_H
#define FKD_DISTILL_OPS_H

#include <stdint.h>

#include "core/status.h"

/* Allocates one zeroed block holding n float buffers: *ptrs[i] gets sizes[i] floats.
 * *block owns them all (free(*block)). `who` names the method in the error message. */
fkd_status fkd__alloc_buffers(float **block, float **const ptrs[], const int64_t sizes[], int n,
                              const char *who);

/* Below this norm a row is divided by FKD__NORM_EPS instead (torch's F.normalize). */
#define FKD__NORM_EPS 1e-12f
/* Squared distances are clamped to at least this before the square root (so that the
 * derivative of the root stays finite for coincident rows). */
#define FKD__DIST_EPS 1e-12f

/* y (n, d) = x / max(‖x_row‖, eps); norm (n) = ‖x_row‖. y may not alias x. */
void fkd__rows_normalize(float *y, float *norm, const float *x, int64_t n, int64_t d);

/* dx (n, d) += scale · ∂/∂x of Σ dy·y, for y from fkd__rows_normalize:
 *   (dy − y·(y·dy)) / ‖x‖   (and dy / eps for rows that were below eps). */
void fkd__rows_normalize_backward(float *dx, const float *dy, const float *y, const float *norm,
                                  int64_t n, int64_t d, float scale);

/* g (n, n) = x xᵀ for x (n, d) with row stride ldx. */
fkd_status fkd__gram(float *g, const float *x, int64_t n, int64_t d, int64_t ldx);

/* dx (n, d) += scale · (dg + dgᵀ) x. Overwrites dg with its symmetric part dg + dgᵀ. */
fkd_status fkd__gram_backward(float *dx, float *dg, const float *x, int64_t n, int64_t d,
                              int64_t ldx, float scale);

/* dist (n, n): ‖x_i − x_j‖ = sqrt(max(g_ii + g_jj − 2 g_ij, eps)), diagonal exactly 0,
 * from the Gram matrix g = x xᵀ. */
void fkd__pdist_from_gram(float *dist, const float *g, int64_t n);

/* dx (n, d) += scale · ∂/∂x of Σ_ij ddist_ij · dist_ij. Overwrites ddist with the
 * matrix it multiplies x by. Clamped entries and the diagonal pass no gradient. */
fkd_status fkd__pdist_backward(float *dx, float *ddist, const float *dist, const float *x,
                               int64_t n, int64_t d, float scale);

/* The batch's student and teacher embeddings, normalised, and ∂L/∂ŝ: what most
 * embedding-level distillers start from.
 *   forward:  ŝ, t̂ = rows_normalize(s), rows_normalize(t); the method fills d_hat = ∂L/∂ŝ
 *   backward: d_student_emb += scale · ∂L/∂s                                           */
typedef struct {
    int64_t d_s, d_t;
    float *block;
    float *s_hat, *s_norm; /* (B, d_s), (B) */
    float *t_hat, *t_norm; /* (B, d_t), (B) */
    float *d_hat;          /* (B, d_s) */
} fkd__emb_pair;

fkd_status fkd__emb_pair_init(fkd__emb_pair *p, int64_t max_batch, int64_t d_s, int64_t d_t,
                              const char *who);
void fkd__emb_pair_normalize(fkd__emb_pair *p, const float *student, const float *teacher,
                             int64_t b);
void fkd__emb_pair_backward(const fkd__emb_pair *p, float *d_student_emb, int64_t b,
                            float scale);
void fkd__emb_pair_free(fkd__emb_pair *p); /* safe on a zeroed pair */

/* Smooth L1 (Huber with beta = 1, torch's default): 0.5·e² for |e| < 1, |e| − 0.5 else;
 * and its derivative. */
double fkd__smooth_l1(double e);
double fkd__smooth_l1_grad(double e);

#endif
