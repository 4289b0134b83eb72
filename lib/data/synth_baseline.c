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

fkd_status fkd_baseline_run(const fkd_synth_world *w, const char *name, fkd_baseline_result out[FKD_BASELINE_N_FEATURES])
{
    fkd_synth_pair *pairs;
    int64_t n;
    FKD_TRY(fkd_synth_bench_pairs(w, name, &pairs, &n));
    const fkd_synth_bench_info *info = fkd_synth_bench_find(name);
    double *sim[2] = {malloc(sizeof(double) * (size_t)n), malloc(sizeof(double) * (size_t)n)};
    bool *same = malloc(sizeof(bool) * (size_t)n);
    float *rgb[2] = {malloc(sizeof(float) * SZ * SZ * 3), malloc(sizeof(float) * SZ * SZ * 3)};
    float *grey[2] = {malloc(sizeof(float) * G * G), malloc(sizeof(float) * G * G)};
    fkd_image img = {0};
    fkd_status s = FKD_OK;
    if (!sim[0] || !sim[1] || !same || !rgb[0] || !rgb[1] || !grey[0] || !grey[1])
        s = FKD_FAIL(FKD_ERR_NOMEM, "baseline: out of memory");
    fkd_progress prog;
    fkd_progress_start(&prog, info->name, n, 2);
    for (int64_t i = 0; i < n && s == FKD_OK; i++) {
        for (int j = 0; j < 2 && s == FKD_OK; j++) {
            s = fkd_synth_render(w, pairs[i].identity[j], pairs[i].index[j], &pairs[i].ov[j], &img);
            if (s == FKD_OK) features(&img, rgb[j], grey[j]);
        }
        if (s != FKD_OK) break;
        sim[0][i] = dot(rgb[0], rgb[1], SZ * SZ * 3);
        sim[1][i] = dot(grey[0], grey[1], G * G);
        same[i] = pairs[i].same;
        if ((i & 255) == 0) fkd_progress_update(&prog, i, NULL);
    }
    if (s == FKD_OK) {
        fkd_progress_finish(&prog, n, NULL);
        static const char *names[2] = {"rgb112", "grey28"};
        for (int k = 0; k < 2; k++) {
            out[k].feature = names[k];
            fkd_baseline_fold_accuracy(sim[k], same, n, info->n_folds, &out[k].mean, &out[k].std);
        }
    }
    fkd_image_free(&img);
    for (int k = 0; k < 2; k++) free(sim[k]), free(rgb[k]), free(grey[k]);
    free(same);
    free(pairs);
    return s;
}
