/* Double-precision reference losses of shrinkteanet, fitnet, triplet, margin and ekd, for
 * the central-difference gradient checks of tests/test_distill2.c. Plain loops written
 * from each method's formula (the header comment of lib/distill/<method>.c), independent
 * of lib/distill: their numerical gradient is compared with the library's analytic one.
 */
#ifndef FKD_TESTS_DISTILL2_REF_H
#define FKD_TESTS_DISTILL2_REF_H

#include <stdbool.h>
#include <stdint.h>

/* One batch in double. */
typedef struct {
    int64_t b, d_s, d_t, classes;
    const double *s, *t;     /* student (b, c_s·hw) or (b, d_s); teacher (b, c_t·hw) or (b, d_t) */
    const int64_t *labels;   /* (b) */
    const double *w_t;       /* (C, d_t) teacher centres (margin) */
} ref2_batch;

/* The student side of shrinkteanet/fitnet: s (b, c_s, hw) mapped by w (c_t, c_s) and
 * bias (c_t), or used as is when w is NULL (then c_s = c_t). */
typedef struct {
    int64_t c_s, c_t, hw;
    const double *w, *bias;
} ref2_adapter;

/* mean_i (1 − cos(A(s_i), t_i)) when `cosine`, else mean of (A(s) − t)². */
double ref2_mapped_loss(bool cosine, const ref2_batch *x, const ref2_adapter *a);

double ref2_triplet_loss(const ref2_batch *x, double m_min, double m_max);

/* margins (b) receives the per-sample margins when not NULL. */
double ref2_margin_loss(const ref2_batch *x, double m_min, double m_max, double s,
                        double *margins);

/* EKD's loss with FIXED thresholds s_thr, t_thr (K each). */
double ref2_ekd_loss(const ref2_batch *x, const double *s_thr, const double *t_thr, int K,
                     int64_t top_k, double temp, double w_pos, double w_neg);

#endif
