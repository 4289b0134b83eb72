/* Double-precision reference forwards of the distillers (loss only), for the tests'
 * central-difference gradient checks. Written as plain loops straight from each method's
 * formula (see the header comment of lib/distill/<method>.c), independent of lib/distill:
 * the numerical gradient of these functions is compared with the library's analytic one.
 */
#ifndef FKD_TESTS_DISTILL_REF_H
#define FKD_TESTS_DISTILL_REF_H

#include <stdbool.h>
#include <stdint.h>

/* One batch in double. Tap widths f_s/f_t are per-sample sizes (c·h·w); a NULL tap means
 * "use the embedding" on that side. */
typedef struct {
    int64_t b, d_s, d_t, classes, f_s, f_t;
    const double *s_emb, *t_emb; /* (b, d_s), (b, d_t) */
    const double *w_s, *w_t;     /* (C, d_s), (C, d_t) */
    const double *s_tap, *t_tap; /* (b, f_s), (b, f_t) */
} ref_batch;

/* A method's parameters by key (the test fills them from options.txt). */
typedef struct {
    double T, s, alpha, beta, gamma, distance_weight, angle_weight;
    int64_t list_length, order;
    bool normalize;
} ref_params;

/* Loss of `method` ("kd", "darkrank", "sp", "cckd", "rkd", "l2", "cosine"); NaN for an
 * unknown name. */
double ref_distill_loss(const char *method, const ref_params *p, const ref_batch *x);

#endif
