#include "data/synth_baseline.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "data/image.h"

#define SZ FKD_SYNTH_SIZE
#define G 28 /* grey feature side: 4x4 average pooling of 112 */

/* One pair after sorting by similarity: its label and its (contiguous) fold. */
typedef struct {
    double sim;
    bool same;
    int fold;
} scored;

static int by_sim(const void *a, const void *b)
{
    double x = ((const scored *)a)->sim, y = ((const scored *)b)->sim;
    return x < y ? -1 : x > y;
}

/* The threshold t ("same when sim > t") with the best accuracy on the pairs outside fold
 * `skip`: sweep the sorted pairs, moving one at a time from "same" to "different". */
static double best_threshold(const scored *s, int64_t n, int skip)
{
    int64_t correct = 0;
    for (int64_t i = 0; i < n; i++)
        if (s[i].fold != skip) correct += s[i].same; /* t below all: every pair "same" */
    int64_t best = correct;
    double best_t = s[0].sim - 1;
    for (int64_t i = 0; i < n; i++) {
        if (s[i].fold != skip) correct += s[i].same ? -1 : 1;
        /* candidates only between distinct values (ties fall on one side together), and
         * at every such gap, whichever fold its neighbours belong to */
        if (correct > best && (i + 1 == n || s[i + 1].sim > s[i].sim)) {
            best = correct;
            best_t = i + 1 < n ? 0.5 * (s[i].sim + s[i + 1].sim) : s[i].sim + 1;
        }
    }
    return best_t;
}

void fkd_baseline_fold_accuracy(const double *sim, const bool *same, int64_t n, int n_folds, double *mean,
                                double *std)
{
    *mean = *std = NAN;
    scored *s = malloc(sizeof *s * (size_t)n);
    if (!s || n < n_folds) {
        free(s);
        return;
    }
    int64_t fold_size = n / n_folds;
    for (int64_t i = 0; i < n; i++) {
        int64_t f = i / fold_size;
        s[i] = (scored){sim[i], same[i], (int)(f < n_folds ? f : n_folds - 1)};
    }
    qsort(s, (size_t)n, sizeof *s, by_sim);
    double acc_sum = 0, acc_sq = 0;
    for (int f = 0; f < n_folds; f++) {
        double t = best_threshold(s, n, f);
        int64_t right = 0, cnt = 0;
        for (int64_t i = 0; i < n; i++)
            if (s[i].fold == f) {
                right += (s[i].sim > t) == s[i].same;
                cnt++;
            }
        double acc = cnt ? (double)right / cnt : 0;
        acc_sum += acc;
        acc_sq += acc * acc;
    }
    *mean = acc_sum / n_folds;
    double var = acc_sq / n_folds - *mean * *mean;
    *std = sqrt(var > 0 ? var : 0);
    free(s);
}

/* Features of one image, flip-summed (x + mirror(x)), mean-centred and L2-normalised:
 * rgb: (112*112*3), grey: (28*28). */
static void features(const fkd_image *img, float *rgb, float *grey)
{
    const uint8_t *p = img->pixels;
    for (int y = 0; y < SZ; y++)
        for (int x = 0; x < SZ; x++)
            for (int c = 0; c < 3; c++)
                rgb[(y * SZ + x) * 3 + c] = (float)p[(y * SZ + x) * 3 + c] + (float)p[(y * SZ + SZ - 1 - x) * 3 + c];
    memset(grey, 0, sizeof(float) * G * G);
    for (int y = 0; y < SZ; y++)
        for (int x = 0; x < SZ; x++) {
            const float *q = &rgb[(y * SZ + x) * 3];
            grey[(y / 4) * G + x / 4] += q[0] + q[1] + q[2];
        }
    const int dims[2] = {SZ * SZ * 3, G * G};
    float *vecs[2] = {rgb, grey};
    for (int k = 0; k < 2; k++) {
        double m = 0, nn = 0;
        for (int i = 0; i < dims[k]; i++) m += vecs[k][i];
        m /= dims[k];
        for (int i = 0; i < dims[k]; i++) {
            vecs[k][i] -= (float)m;
            nn += (double)vecs[k][i] * vecs[k][i];
        }
        float inv = nn > 0 ? (float)(1.0 / sqrt(nn)) : 0;
        for (int i = 0; i < dims[k]; i++) vecs[k][i] *= inv;
    }
}

static double dot(const float *a, const float *b, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

fkd_status fkd_baseline_wccn_fit(const fkd_synth_world *w, int n_ids, int per_id, fkd_baseline_wccn *m)
{
    const int D = FKD_BASELINE_GREY_DIM;
    m->L = NULL;
    if (n_ids < 2 || per_id < 2 || n_ids > w->n_train)
        return FKD_FAIL(FKD_ERR_ARG, "baseline: WCCN needs >= 2 of the world's training identities x >= 2 images");
    double *S = calloc((size_t)D * D, sizeof *S);
    float *x = malloc(sizeof(float) * (size_t)per_id * D), *rgb = malloc(sizeof(float) * SZ * SZ * 3);
    double *mean = malloc(sizeof(double) * D);
    fkd_image img = {0};
    fkd_status s = FKD_OK;
    if (!S || !x || !rgb || !mean) s = FKD_FAIL(FKD_ERR_NOMEM, "baseline: out of memory");
    fkd_progress prog;
    fkd_progress_start(&prog, "WCCN fit", n_ids, per_id);
    for (int id = 0; id < n_ids && s == FKD_OK; id++) {
        for (int k = 0; k < per_id && s == FKD_OK; k++) {
            s = fkd_synth_render(w, id, (uint32_t)k, NULL, &img);
            if (s == FKD_OK) features(&img, rgb, x + (size_t)k * D);
        }
        if (s != FKD_OK) break;
        /* S += sum_k (x_k - mean)(x_k - mean)^T, lower triangle only */
        for (int i = 0; i < D; i++) {
            double t = 0;
            for (int k = 0; k < per_id; k++) t += x[(size_t)k * D + i];
            mean[i] = t / per_id;
        }
        for (int k = 0; k < per_id; k++) {
            float *v = x + (size_t)k * D;
            for (int i = 0; i < D; i++) v[i] -= (float)mean[i];
            for (int i = 0; i < D; i++) {
                double vi = v[i];
                double *row = S + (size_t)i * D;
                for (int j = 0; j <= i; j++) row[j] += vi * v[j];
            }
        }
        if ((id & 15) == 0) fkd_progress_update(&prog, id, NULL);
    }
    if (s == FKD_OK) {
        fkd_progress_finish(&prog, n_ids, NULL);
        double tr = 0;
        for (int i = 0; i < D; i++) tr += S[(size_t)i * D + i];
        double lambda = 0.1 * tr / D;
        for (int i = 0; i < D; i++) S[(size_t)i * D + i] += lambda;
        /* in-place Cholesky of the lower triangle: S = L L^T */
        for (int j = 0; j < D && s == FKD_OK; j++) {
            double *rj = S + (size_t)j * D;
            double d = rj[j];
            for (int k = 0; k < j; k++) d -= rj[k] * rj[k];
            if (!(d > 0)) {
                s = FKD_FAIL(FKD_ERR_NUMERIC, "baseline: WCCN covariance not positive definite at %d", j);
                break;
            }
            rj[j] = sqrt(d);
            for (int i = j + 1; i < D; i++) {
                double *ri = S + (size_t)i * D;
                double t = ri[j];
                for (int k = 0; k < j; k++) t -= ri[k] * rj[k];
                ri[j] = t / rj[j];
            }
        }
    }
    fkd_image_free(&img);
    free(x);
    free(rgb);
    free(mean);
    if (s != FKD_OK) {
        free(S);
        return s;
    }
    m->L = S;
    return FKD_OK;
}

void fkd_baseline_wccn_free(fkd_baseline_wccn *m)
{
    if (!m) return;
    free(m->L);
    m->L = NULL;
}

/* z = L^-1 x (forward substitution), then L2-normalised. */
static void wccn_apply(const fkd_baseline_wccn *m, const float *x, float *z)
{
    const int D = FKD_BASELINE_GREY_DIM;
    double nn = 0;
    for (int i = 0; i < D; i++) {
        const double *ri = m->L + (size_t)i * D;
        double t = x[i];
        for (int k = 0; k < i; k++) t -= ri[k] * z[k];
        z[i] = (float)(t / ri[i]);
        nn += (double)z[i] * z[i];
    }
    float inv = nn > 0 ? (float)(1.0 / sqrt(nn)) : 0;
    for (int i = 0; i < D; i++) z[i] *= inv;
}

fkd_status fkd_baseline_run(const fkd_synth_world *w, const char *name, const fkd_baseline_wccn *m,
                            fkd_baseline_result out[FKD_BASELINE_N_FEATURES])
{
    fkd_synth_pair *pairs;
    int64_t n;
    FKD_TRY(fkd_synth_bench_pairs(w, name, &pairs, &n));
    const fkd_synth_bench_info *info = fkd_synth_bench_find(name);
    const int NF = FKD_BASELINE_N_FEATURES, D = FKD_BASELINE_GREY_DIM;
    double *sim[FKD_BASELINE_N_FEATURES];
    for (int k = 0; k < NF; k++) sim[k] = malloc(sizeof(double) * (size_t)n);
    bool *same = malloc(sizeof(bool) * (size_t)n);
    float *rgb[2] = {malloc(sizeof(float) * SZ * SZ * 3), malloc(sizeof(float) * SZ * SZ * 3)};
    float *grey[2] = {malloc(sizeof(float) * D), malloc(sizeof(float) * D)};
    float *wc[2] = {malloc(sizeof(float) * D), malloc(sizeof(float) * D)};
    fkd_image img = {0};
    fkd_status s = FKD_OK;
    bool ok = same && rgb[0] && rgb[1] && grey[0] && grey[1] && wc[0] && wc[1];
    for (int k = 0; k < NF; k++) ok = ok && sim[k];
    if (!ok) s = FKD_FAIL(FKD_ERR_NOMEM, "baseline: out of memory");
    fkd_progress prog;
    fkd_progress_start(&prog, info->name, n, 2);
    for (int64_t i = 0; i < n && s == FKD_OK; i++) {
        for (int j = 0; j < 2 && s == FKD_OK; j++) {
            s = fkd_synth_render(w, pairs[i].identity[j], pairs[i].index[j], &pairs[i].ov[j], &img);
            if (s == FKD_OK) features(&img, rgb[j], grey[j]);
            if (s == FKD_OK && m) wccn_apply(m, grey[j], wc[j]);
        }
        if (s != FKD_OK) break;
        sim[0][i] = dot(rgb[0], rgb[1], SZ * SZ * 3);
        sim[1][i] = dot(grey[0], grey[1], D);
        sim[2][i] = m ? dot(wc[0], wc[1], D) : 0;
        same[i] = pairs[i].same;
        if ((i & 255) == 0) fkd_progress_update(&prog, i, NULL);
    }
    if (s == FKD_OK) {
        fkd_progress_finish(&prog, n, NULL);
        static const char *names[FKD_BASELINE_N_FEATURES] = {"rgb112", "grey28", "grey28-wccn"};
        for (int k = 0; k < NF; k++) {
            out[k].feature = k < 2 || m ? names[k] : NULL;
            fkd_baseline_fold_accuracy(sim[k], same, n, info->n_folds, &out[k].mean, &out[k].std);
        }
    }
    fkd_image_free(&img);
    for (int k = 0; k < NF; k++) free(sim[k]);
    for (int j = 0; j < 2; j++) free(rgb[j]), free(grey[j]), free(wc[j]);
    free(same);
    free(pairs);
    return s;
}
