/* Double-precision reference losses (see distill2_ref.h). Deliberately naive: O(b³ d)
 * loops, no shared code with lib/distill. */
#include "tests/support/distill2_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double dot(const double *a, const double *b, int64_t d)
{
    double s = 0.0;
    for (int64_t k = 0; k < d; k++) s += a[k] * b[k];
    return s;
}

static double cosine(const double *a, const double *b, int64_t d)
{
    return dot(a, b, d) / (fmax(sqrt(dot(a, a, d)), 1e-12) * fmax(sqrt(dot(b, b, d)), 1e-12));
}

double ref2_mapped_loss(bool cos_loss, const ref2_batch *x, const ref2_adapter *a)
{
    int64_t f = a->c_t * a->hw, fs = a->c_s * a->hw;
    double *y = malloc((size_t)f * sizeof *y), sum = 0.0;
    for (int64_t i = 0; i < x->b; i++) {
        const double *si = x->s + i * fs, *ti = x->t + i * f;
        for (int64_t c = 0; c < a->c_t; c++)
            for (int64_t p = 0; p < a->hw; p++) {
                double v = a->w ? a->bias[c] : si[c * a->hw + p];
                if (a->w)
                    for (int64_t k = 0; k < a->c_s; k++)
                        v += a->w[c * a->c_s + k] * si[k * a->hw + p];
                y[c * a->hw + p] = v;
            }
        if (cos_loss) {
            sum += 1.0 - cosine(y, ti, f);
        } else {
            for (int64_t k = 0; k < f; k++) sum += (y[k] - ti[k]) * (y[k] - ti[k]);
        }
    }
    free(y);
    return cos_loss ? sum / (double)x->b : sum / (double)(x->b * f);
}

/* ‖x̂_i − x̂_j‖² */
static double sq_unit_dist(const double *x, int64_t d, int64_t i, int64_t j)
{
    double ni = sqrt(dot(x + i * d, x + i * d, d)), nj = sqrt(dot(x + j * d, x + j * d, d));
    double s = 0.0;
    for (int64_t k = 0; k < d; k++) {
        double e = x[i * d + k] / ni - x[j * d + k] / nj;
        s += e * e;
    }
    return s;
}

double ref2_triplet_loss(const ref2_batch *x, double m_min, double m_max)
{
    int64_t b = x->b;
    const int64_t *y = x->labels;
    double *ds = malloc((size_t)(b * b) * sizeof *ds), *dt = malloc((size_t)(b * b) * sizeof *dt);
    for (int64_t i = 0; i < b; i++)
        for (int64_t j = 0; j < b; j++) {
            ds[i * b + j] = sq_unit_dist(x->s, x->d_s, i, j);
            dt[i * b + j] = sq_unit_dist(x->t, x->d_t, i, j);
        }
    double dmax = 0.0;
    for (int64_t a = 0; a < b; a++)
        for (int64_t p = 0; p < b; p++)
            for (int64_t n = 0; n < b; n++)
                if (p != a && y[p] == y[a] && y[n] != y[a])
                    dmax = fmax(dmax, dt[a * b + n] - dt[a * b + p]);
    double sum = 0.0;
    int count = 0;
    for (int64_t a = 0; a < b; a++)
        for (int64_t p = 0; p < b; p++) {
            if (p == a || y[p] != y[a]) continue;
            int64_t best = -1;
            double best_m = 0.0, dap = ds[a * b + p];
            for (int64_t n = 0; n < b; n++) {
                if (y[n] == y[a]) continue;
                double delta = fmax(0.0, dt[a * b + n] - dt[a * b + p]);
                double m = m_min + (dmax > 0 ? (m_max - m_min) * delta / dmax : 0.0);
                double dan = ds[a * b + n];
                if (dan > dap && dan < dap + m && (best < 0 || dan < ds[a * b + best])) {
                    best = n;
                    best_m = m;
                }
            }
            if (best < 0) continue;
            sum += dap - ds[a * b + best] + best_m;
            count++;
        }
    free(ds);
    free(dt);
    return count ? sum / count : 0.0;
}

double ref2_margin_loss(const ref2_batch *x, double m_min, double m_max, double s,
                        double *margins)
{
    int64_t b = x->b, d = x->d_t, C = x->classes;
    double *m = malloc((size_t)b * sizeof *m), top = -INFINITY, sum = 0.0;
    for (int64_t i = 0; i < b; i++) {
        m[i] = cosine(x->t + i * d, x->w_t + x->labels[i] * d, d);
        top = fmax(top, m[i]);
    }
    for (int64_t i = 0; i < b; i++) {
        m[i] = m_min + (top > 0 ? (m_max - m_min) * fmax(m[i], 0.0) / top : 0.0);
        if (margins) margins[i] = m[i];
    }
    for (int64_t i = 0; i < b; i++) {
        double lse_max = -INFINITY, z_y = 0.0;
        double *z = malloc((size_t)C * sizeof *z);
        for (int64_t j = 0; j < C; j++) {
            double c = cosine(x->s + i * d, x->w_t + j * d, d);
            if (j == x->labels[i]) {
                double theta = acos(fmin(fmax(c, -1.0), 1.0));
                c = c > cos(M_PI - m[i]) ? cos(theta + m[i]) : c - m[i] * sin(M_PI - m[i]);
                z_y = s * c;
            }
            z[j] = s * c;
            lse_max = fmax(lse_max, z[j]);
        }
        double e = 0.0;
        for (int64_t j = 0; j < C; j++) e += exp(z[j] - lse_max);
        sum += lse_max + log(e) - z_y;
        free(z);
    }
    free(m);
    return sum / (double)b;
}

static double soft_count(double v, const double *thr, int K, double temp)
{
    double r = 0.0;
    for (int k = 0; k < K; k++)
        r += 1.0 / (1.0 + exp(fmin(fmax(-(v - thr[k]) / temp, -50.0), 50.0)));
    return r;
}

double ref2_ekd_loss(const ref2_batch *x, const double *s_thr, const double *t_thr, int K,
                     int64_t top_k, double temp, double w_pos, double w_neg)
{
    int64_t b = x->b, np = b * (b - 1) / 2, n_pos = 0, n_neg = 0;
    double *neg_s = malloc((size_t)np * sizeof *neg_s), *neg_t = malloc((size_t)np * sizeof *neg_t);
    double pos_sum = 0.0;
    for (int64_t i = 0; i < b; i++)
        for (int64_t j = i + 1; j < b; j++) {
            double S = cosine(x->s + i * x->d_s, x->s + j * x->d_s, x->d_s);
            double T = cosine(x->t + i * x->d_t, x->t + j * x->d_t, x->d_t);
            if (x->labels[i] == x->labels[j]) {
                double e = soft_count(S, s_thr, K, temp) - soft_count(T, t_thr, K, temp);
                pos_sum += e * e;
                n_pos++;
            } else {
                neg_s[n_neg] = S;
                neg_t[n_neg++] = T;
            }
        }
    /* the top_k negatives by student score: repeated selection of the maximum */
    int64_t n_hard = top_k < n_neg ? top_k : n_neg;
    double neg_sum = 0.0;
    for (int64_t q = 0; q < n_hard; q++) {
        int64_t best = -1;
        for (int64_t k = 0; k < n_neg; k++)
            if (!isnan(neg_s[k]) && (best < 0 || neg_s[k] > neg_s[best])) best = k;
        double e = soft_count(neg_s[best], s_thr, K, temp) -
                   soft_count(neg_t[best], t_thr, K, temp);
        neg_sum += e * e;
        neg_s[best] = NAN; /* taken */
    }
    free(neg_s);
    free(neg_t);
    return (n_pos ? w_pos * pos_sum / n_pos : 0.0) + (n_hard ? w_neg * neg_sum / n_hard : 0.0);
}
