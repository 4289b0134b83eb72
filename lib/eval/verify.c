/* Verification protocol and ROC statistics; see verify.h for the definitions.
 *
 * Legend: N pairs, d embedding width, T thresholds, F folds.
 *
 * insightface scans T thresholds per fold with numpy masks (O(F*T*N)). Here each pair is
 * binned once by the first threshold index that accepts it (dist < t_k), and per-fold
 * counts at every threshold are prefix sums of those bins: same integer counts, hence
 * the same accuracies, O(N log T + F*T). */
#include "eval/verify.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const double fkd_verify_far_targets[FKD_VERIFY_N_FAR] = {1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6};

/* insightface's grids: np.arange(0, 4, 0.01) for accuracy, np.arange(0, 4, 0.001) for VAL. */
#define ACC_STOP 4.0
#define ACC_STEP 0.01
#define VAL_STOP 4.0
#define VAL_STEP 0.001
#define VAL_FAR_TARGET 1e-3

void fkd_verify_flip_sum(float *out, const float *e, const float *e_flip, int rows, int d)
{
    for (int r = 0; r < rows; r++) {
        const float *a = e + (size_t)r * d, *b = e_flip + (size_t)r * d;
        float *o = out + (size_t)r * d;
        double ss = 0;
        for (int j = 0; j < d; j++) {
            double v = (double)a[j] + (double)b[j];
            ss += v * v;
        }
        double norm = ss > 0 ? sqrt(ss) : 1.0; /* sklearn leaves zero rows as they are */
        for (int j = 0; j < d; j++) o[j] = (float)(((double)a[j] + (double)b[j]) / norm);
    }
}

double fkd_verify_xnorm(const float *emb, int rows, int d)
{
    if (rows <= 0) return NAN;
    double sum = 0;
    for (int r = 0; r < rows; r++) {
        double ss = 0;
        for (int j = 0; j < d; j++) ss += (double)emb[(size_t)r * d + j] * emb[(size_t)r * d + j];
        sum += sqrt(ss);
    }
    return sum / rows;
}

/* Row r of emb (+ the same row of emb_flip when given), in double: (d) */
static void row_sum(double *out, const float *emb, const float *emb_flip, int r, int d)
{
    for (int j = 0; j < d; j++)
        out[j] = (double)emb[(size_t)r * d + j] + (emb_flip ? (double)emb_flip[(size_t)r * d + j] : 0.0);
}

static double norm_or_one(const double *x, int d)
{
    double ss = 0;
    for (int j = 0; j < d; j++) ss += x[j] * x[j];
    return ss > 0 ? sqrt(ss) : 1.0;
}

/* dist (n_pairs): squared distance of the normalised (flip-summed) rows 2i, 2i+1. */
static fkd_status pair_distances(double *dist, const float *emb, const float *emb_flip, int n_pairs, int d)
{
    double *a = malloc(sizeof(double) * 2 * (size_t)d), *b = a ? a + d : NULL;
    if (!a) return FKD_FAIL(FKD_ERR_NOMEM, "verification: rows of width %d", d);
    for (int i = 0; i < n_pairs; i++) {
        row_sum(a, emb, emb_flip, 2 * i, d);
        row_sum(b, emb, emb_flip, 2 * i + 1, d);
        double na = norm_or_one(a, d), nb = norm_or_one(b, d), s = 0;
        for (int j = 0; j < d; j++) {
            double diff = a[j] / na - b[j] / nb;
            s += diff * diff;
        }
        dist[i] = s;
    }
    free(a);
    return FKD_OK;
}

fkd_status fkd_verify_pair_distances(double *dist, const float *emb, int n_pairs, int d)
{
    return pair_distances(dist, emb, NULL, n_pairs, d);
}

void fkd_verify_scores_from_distances(double *score, const double *dist, int n_pairs)
{
    for (int i = 0; i < n_pairs; i++) score[i] = 1.0 - 0.5 * dist[i];
}

void fkd_verify_kfold(int n, int n_splits, int fold, int *begin, int *end)
{
    int base = n / n_splits, extra = n % n_splits;
    *begin = fold * base + (fold < extra ? fold : extra);
    *end = *begin + base + (fold < extra ? 1 : 0);
}

int fkd_verify_threshold_count(double stop, double step)
{
    return (int)ceil(stop / step);
}

/* First k in [0, T] with dist < thr[k] (thr ascending); T when no threshold accepts. */
static int first_accepting(const double *thr, int T, double dist)
{
    int lo = 0, hi = T;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (dist < thr[mid]) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

/* Per-threshold accepted counts of positives/negatives among pairs [0,N) minus [skip_b,
 * skip_e) (train set) or among [skip_b, skip_e) only (test set).
 * bins (N) first accepting index; tp, fa (T) cumulative counts. */
static void accept_counts(const int *bins, const uint8_t *issame, int n, int begin, int end, int train,
                          int T, int *tp, int *fa)
{
    memset(tp, 0, sizeof(int) * T);
    memset(fa, 0, sizeof(int) * T);
    for (int i = 0; i < n; i++) {
        int in_test = i >= begin && i < end;
        if (in_test == train || bins[i] >= T) continue;
        if (issame[i]) tp[bins[i]]++;
        else fa[bins[i]]++;
    }
    for (int k = 1; k < T; k++) {
        tp[k] += tp[k - 1];
        fa[k] += fa[k - 1];
    }
}

static void count_labels(const uint8_t *issame, int begin, int end, int *n_pos, int *n_neg)
{
    *n_pos = *n_neg = 0;
    for (int i = begin; i < end; i++) {
        if (issame[i]) ++*n_pos;
        else ++*n_neg;
    }
}

/* numpy mean and population std (ddof = 0). */
static void mean_std(const double *x, int n, double *mean, double *std)
{
    double s = 0;
    for (int i = 0; i < n; i++) s += x[i];
    double m = s / n, v = 0;
    for (int i = 0; i < n; i++) v += (x[i] - m) * (x[i] - m);
    *mean = m;
    *std = sqrt(v / n);
}

/* scipy interp1d(far, thr, kind='slinear')(x): a degree-1 B-spline with knots
 * [far0, far0, far1, ..., far_{T-1}, far_{T-1}] and coefficients thr. far is
 * non-decreasing with runs of equal values; the knot interval containing x is the last
 * one starting at or before x, so between two distinct far values the line joins the
 * LAST threshold of the lower run to the FIRST of the upper run. A degenerate interval
 * (x equal to a flat right end) has both basis weights 0, as in scipy's de Boor loop. */
static double interp_slinear(const double *far, const double *thr, int T, double x)
{
    /* knot t[m] = far[m-1] for m = 1..T, t[0] = far[0], t[T+1] = far[T-1] */
#define KNOT(m) ((m) <= 0 ? far[0] : (m) > T ? far[T - 1] : far[(m) - 1])
    int l = 2;
    while (l != T && x >= KNOT(l)) l++;
    l -= 1;
    double xa = KNOT(l), xb = KNOT(l + 1);
#undef KNOT
    if (xb == xa) return 0.0;
    double w = 1.0 / (xb - xa);
    return thr[l - 1] * (w * (xb - x)) + thr[l] * (w * (x - xa));
}

/* Work buffers of the protocol. */
typedef struct {
    int T, TV;             /* thresholds for accuracy, for VAL */
    double *thr, *thr_val; /* (T), (TV) the grids */
    int *bins, *bins_val;  /* (N), (N) first accepting threshold index per pair */
    int *tp, *fa;          /* (TV) accepted positives / negatives at each threshold */
    double *far_train;     /* (TV) */
} protocol_work;

static void work_free(protocol_work *w)
{
    free(w->thr);
    free(w->bins);
    free(w->tp);
    free(w->far_train);
}

static fkd_status work_init(protocol_work *w, const double *dist, int n)
{
    memset(w, 0, sizeof(*w));
    w->T = fkd_verify_threshold_count(ACC_STOP, ACC_STEP);
    w->TV = fkd_verify_threshold_count(VAL_STOP, VAL_STEP);
    w->thr = malloc(sizeof(double) * (w->T + w->TV));
    w->bins = malloc(sizeof(int) * 2 * (size_t)n);
    w->tp = malloc(sizeof(int) * 2 * (size_t)w->TV);
    w->far_train = malloc(sizeof(double) * w->TV);
    if (!w->thr || !w->bins || !w->tp || !w->far_train) {
        work_free(w);
        return FKD_FAIL(FKD_ERR_NOMEM, "verification: %d pairs", n);
    }
    w->thr_val = w->thr + w->T;
    w->bins_val = w->bins + n;
    w->fa = w->tp + w->TV;
    for (int k = 0; k < w->T; k++) w->thr[k] = k * ACC_STEP;
    for (int k = 0; k < w->TV; k++) w->thr_val[k] = k * VAL_STEP;
    for (int i = 0; i < n; i++) {
        w->bins[i] = first_accepting(w->thr, w->T, dist[i]);
        w->bins_val[i] = first_accepting(w->thr_val, w->TV, dist[i]);
    }
    return FKD_OK;
}

/* Fold f = test pairs [b, e): the first best threshold on the other folds, and the
 * accuracy it gives on [b, e). */
static void fold_accuracy(protocol_work *w, const uint8_t *issame, int n, int b, int e, int tr_neg, int te_neg,
                          double *threshold, double *accuracy)
{
    accept_counts(w->bins, issame, n, b, e, 1, w->T, w->tp, w->fa);
    int best = 0, best_correct = -1;
    for (int k = 0; k < w->T; k++) {
        int correct = w->tp[k] + (tr_neg - w->fa[k]);
        if (correct > best_correct) { /* strict: the first maximum, as np.argmax */
            best_correct = correct;
            best = k;
        }
    }
    accept_counts(w->bins, issame, n, b, e, 0, w->T, w->tp, w->fa);
    *threshold = w->thr[best];
    *accuracy = (double)(w->tp[best] + (te_neg - w->fa[best])) / (double)(e - b);
}

/* insightface's calculate_val on one fold: the threshold reaching FAR 1e-3 on the other
 * folds (interpolated), VAL and FAR on [b, e). */
static void fold_val(protocol_work *w, const double *dist, const uint8_t *issame, int n, int b, int e, int tr_neg,
                     int te_pos, int te_neg, double *threshold, double *val, double *far)
{
    accept_counts(w->bins_val, issame, n, b, e, 1, w->TV, w->tp, w->fa);
    for (int k = 0; k < w->TV; k++) w->far_train[k] = (double)w->fa[k] / (double)tr_neg;
    double t = w->far_train[w->TV - 1] >= VAL_FAR_TARGET
                   ? interp_slinear(w->far_train, w->thr_val, w->TV, VAL_FAR_TARGET)
                   : 0.0;
    int ta = 0, fals = 0;
    for (int i = b; i < e; i++) {
        if (!(dist[i] < t)) continue;
        if (issame[i]) ta++;
        else fals++;
    }
    *threshold = t;
    *val = (double)ta / (double)te_pos;
    *far = (double)fals / (double)te_neg;
}

static fkd_status run_protocol(const double *dist, const uint8_t *issame, int n, int n_folds,
                               fkd_verify_result *res)
{
    protocol_work w;
    FKD_TRY(work_init(&w, dist, n));
    double val[FKD_VERIFY_MAX_FOLDS], vfar[FKD_VERIFY_MAX_FOLDS];
    int val_ok = 1;
    for (int f = 0; f < n_folds; f++) {
        int b, e, te_pos, te_neg;
        fkd_verify_kfold(n, n_folds, f, &b, &e);
        res->fold_begin[f] = b;
        res->fold_end[f] = e;
        count_labels(issame, b, e, &te_pos, &te_neg);
        int tr_neg = res->n_neg - te_neg;
        fold_accuracy(&w, issame, n, b, e, tr_neg, te_neg, &res->fold_threshold[f], &res->fold_accuracy[f]);
        /* insightface would divide by zero here; facekd reports VAL as not available */
        if (tr_neg == 0 || te_pos == 0 || te_neg == 0) val_ok = 0;
        else fold_val(&w, dist, issame, n, b, e, tr_neg, te_pos, te_neg, &res->fold_val_threshold[f], &val[f], &vfar[f]);
    }
    mean_std(res->fold_accuracy, n_folds, &res->accuracy_mean, &res->accuracy_std);
    if (val_ok) {
        double unused;
        mean_std(val, n_folds, &res->val_mean, &res->val_std);
        mean_std(vfar, n_folds, &res->val_far_mean, &unused);
    }
    work_free(&w);
    return FKD_OK;
}

fkd_status fkd_verify_roc(const double *dist, const uint8_t *issame, int n_pairs, fkd_roc *roc)
{
    memset(roc, 0, sizeof(*roc));
    double *score = malloc(sizeof(double) * (size_t)(n_pairs > 0 ? n_pairs : 1));
    if (!score) return FKD_FAIL(FKD_ERR_NOMEM, "verification: %d scores", n_pairs);
    fkd_verify_scores_from_distances(score, dist, n_pairs);
    fkd_status s = fkd_roc_compute(score, issame, n_pairs, roc);
    free(score);
    return s;
}

static fkd_status roc_statistics(const double *dist, const uint8_t *issame, int n, fkd_verify_result *res)
{
    fkd_roc roc;
    FKD_TRY(fkd_verify_roc(dist, issame, n, &roc));
    for (int j = 0; j < FKD_VERIFY_N_FAR; j++)
        fkd_roc_tar_at_far(&roc, fkd_verify_far_targets[j], &res->tar[j], &res->tar_threshold[j], &res->tar_far[j]);
    res->eer = fkd_roc_eer(&roc, &res->eer_threshold);
    res->auc = fkd_roc_auc(&roc);
    fkd_roc_free(&roc);
    return FKD_OK;
}

fkd_status fkd_verify_distances(const double *dist, const uint8_t *issame, int n_pairs, int n_folds,
                                fkd_verify_result *res)
{
    memset(res, 0, sizeof(*res));
    if (n_folds < 2 || n_folds > FKD_VERIFY_MAX_FOLDS)
        return FKD_FAIL(FKD_ERR_ARG, "verification: %d folds (2..%d)", n_folds, FKD_VERIFY_MAX_FOLDS);
    if (n_pairs < n_folds)
        return FKD_FAIL(FKD_ERR_ARG, "verification: %d pairs for %d folds", n_pairs, n_folds);
    res->n_pairs = n_pairs;
    res->n_folds = n_folds;
    count_labels(issame, 0, n_pairs, &res->n_pos, &res->n_neg);
    if (res->n_pos == 0 || res->n_neg == 0)
        return FKD_FAIL(FKD_ERR_ARG, "verification: %d positive and %d negative pairs (need both)", res->n_pos,
                        res->n_neg);
    for (int i = 0; i < n_pairs; i++)
        if (!isfinite(dist[i])) return FKD_FAIL(FKD_ERR_NUMERIC, "verification: pair %d: distance %g", i, dist[i]);
    res->val_mean = res->val_std = res->val_far_mean = NAN;
    res->xnorm = NAN;
    FKD_TRY(run_protocol(dist, issame, n_pairs, n_folds, res));
    return roc_statistics(dist, issame, n_pairs, res);
}

fkd_status fkd_verify_flip_pairs(const float *emb, const float *emb_flip, const uint8_t *issame, int n_pairs, int d,
                                 int n_folds, fkd_verify_result *res)
{
    memset(res, 0, sizeof(*res));
    if (n_pairs <= 0 || d <= 0) return FKD_FAIL(FKD_ERR_ARG, "verification: %d pairs of width %d", n_pairs, d);
    double *dist = malloc(sizeof(double) * (size_t)n_pairs);
    if (!dist) return FKD_FAIL(FKD_ERR_NOMEM, "verification: %d distances", n_pairs);
    fkd_status s = pair_distances(dist, emb, emb_flip, n_pairs, d);
    if (s == FKD_OK) s = fkd_verify_distances(dist, issame, n_pairs, n_folds, res);
    free(dist);
    if (s == FKD_OK && emb_flip) /* insightface: the mean over both passes, 4N rows */
        res->xnorm = 0.5 * (fkd_verify_xnorm(emb, 2 * n_pairs, d) + fkd_verify_xnorm(emb_flip, 2 * n_pairs, d));
    else if (s == FKD_OK) /* without the flip test: the mean over the one pass */
        res->xnorm = fkd_verify_xnorm(emb, 2 * n_pairs, d);
    return s;
}

fkd_status fkd_verify_embeddings(const float *emb, const uint8_t *issame, int n_pairs, int d, int n_folds,
                                 fkd_verify_result *res)
{
    return fkd_verify_flip_pairs(emb, NULL, issame, n_pairs, d, n_folds, res);
}

/* ---- ROC ---- */

void fkd_roc_free(fkd_roc *roc)
{
    if (!roc) return;
    free(roc->threshold);
    free(roc->n_true_accept);
    free(roc->n_false_accept);
    free(roc->tpr);
    free(roc->far);
    memset(roc, 0, sizeof(*roc));
}

typedef struct {
    double score;
    int same;
} scored_pair;

static int by_score_desc(const void *pa, const void *pb)
{
    double a = ((const scored_pair *)pa)->score, b = ((const scored_pair *)pb)->score;
    return (a < b) - (a > b);
}

fkd_status fkd_roc_compute(const double *score, const uint8_t *issame, int n_pairs, fkd_roc *roc)
{
    memset(roc, 0, sizeof(*roc));
    if (n_pairs <= 0) return FKD_FAIL(FKD_ERR_ARG, "roc: %d pairs", n_pairs);
    scored_pair *p = malloc(sizeof(*p) * (size_t)n_pairs);
    size_t cap = (size_t)n_pairs + 1;
    roc->threshold = malloc(sizeof(double) * cap);
    roc->n_true_accept = malloc(sizeof(int) * cap);
    roc->n_false_accept = malloc(sizeof(int) * cap);
    roc->tpr = malloc(sizeof(double) * cap);
    roc->far = malloc(sizeof(double) * cap);
    if (!p || !roc->threshold || !roc->n_true_accept || !roc->n_false_accept || !roc->tpr || !roc->far) {
        free(p);
        fkd_roc_free(roc);
        return FKD_FAIL(FKD_ERR_NOMEM, "roc: %d pairs", n_pairs);
    }
    for (int i = 0; i < n_pairs; i++) {
        if (!isfinite(score[i])) {
            free(p);
            fkd_roc_free(roc);
            return FKD_FAIL(FKD_ERR_NUMERIC, "roc: pair %d: score %g", i, score[i]);
        }
        p[i].score = score[i];
        p[i].same = issame[i] != 0;
        roc->n_pos += p[i].same;
    }
    roc->n_neg = n_pairs - roc->n_pos;
    qsort(p, (size_t)n_pairs, sizeof(*p), by_score_desc);

    int np = 0, ta = 0, fa = 0;
    roc->threshold[np] = INFINITY;
    roc->n_true_accept[np] = roc->n_false_accept[np] = 0;
    np++;
    for (int i = 0; i < n_pairs; i++) {
        if (p[i].same) ta++;
        else fa++;
        if (i + 1 < n_pairs && p[i + 1].score == p[i].score) continue; /* ties: one point */
        roc->threshold[np] = p[i].score;
        roc->n_true_accept[np] = ta;
        roc->n_false_accept[np] = fa;
        np++;
    }
    roc->n_points = np;
    for (int i = 0; i < np; i++) {
        roc->tpr[i] = roc->n_pos ? (double)roc->n_true_accept[i] / roc->n_pos : 0.0;
        roc->far[i] = roc->n_neg ? (double)roc->n_false_accept[i] / roc->n_neg : 0.0;
    }
    free(p);
    return FKD_OK;
}

int fkd_roc_tar_at_far(const fkd_roc *roc, double far_target, double *tar, double *threshold, double *far)
{
    /* allowed false accepts; the 1e-9 absorbs 1e-3 * 1000 landing just under 1 */
    double allowed = floor(far_target * roc->n_neg + 1e-9);
    if (allowed < 1 || roc->n_pos == 0) {
        *tar = *threshold = *far = NAN;
        return 0;
    }
    int best = 0; /* points are in accepting order: the last one within budget has max TPR */
    for (int i = 0; i < roc->n_points && roc->n_false_accept[i] <= allowed; i++) best = i;
    *tar = roc->tpr[best];
    *threshold = roc->threshold[best];
    *far = roc->far[best];
    return 1;
}

double fkd_roc_eer(const fkd_roc *roc, double *threshold)
{
    for (int i = 1; i < roc->n_points; i++) {
        /* the crossing is decided on counts (FAR >= FNR), so an exact tie is found exactly */
        int64_t lhs = (int64_t)roc->n_false_accept[i] * roc->n_pos;
        int64_t rhs = (int64_t)(roc->n_pos - roc->n_true_accept[i]) * roc->n_neg;
        if (lhs < rhs) continue;
        double d1 = roc->far[i] - (1.0 - roc->tpr[i]);
        double d0 = roc->far[i - 1] - (1.0 - roc->tpr[i - 1]); /* < 0 */
        double a = -d0 / (d1 - d0);
        if (threshold) *threshold = roc->threshold[i];
        return roc->far[i - 1] + a * (roc->far[i] - roc->far[i - 1]);
    }
    if (threshold) *threshold = NAN;
    return NAN;
}

double fkd_roc_auc(const fkd_roc *roc)
{
    double area = 0;
    for (int i = 1; i < roc->n_points; i++)
        area += (roc->far[i] - roc->far[i - 1]) * (roc->tpr[i] + roc->tpr[i - 1]) * 0.5;
    return area;
}

void fkd_roc_rates_at(const double *score, const uint8_t *issame, int n_pairs, double threshold, double *tpr,
                      double *far)
{
    int pos = 0, neg = 0, ta = 0, fa = 0;
    for (int i = 0; i < n_pairs; i++) {
        int acc = score[i] >= threshold;
        if (issame[i]) {
            pos++;
            ta += acc;
        } else {
            neg++;
            fa += acc;
        }
    }
    *tpr = pos ? (double)ta / pos : NAN;
    *far = neg ? (double)fa / neg : NAN;
}

fkd_status fkd_verify_rates_at_thresholds(const double *dist, const uint8_t *issame, int n_pairs,
                                          const double *thresholds, int n_thr, double *tpr, double *far)
{
    double *score = malloc(sizeof(double) * (size_t)(n_pairs > 0 ? n_pairs : 1));
    if (!score) return FKD_FAIL(FKD_ERR_NOMEM, "verification: %d scores", n_pairs);
    fkd_verify_scores_from_distances(score, dist, n_pairs);
    for (int k = 0; k < n_thr; k++) {
        if (isnan(thresholds[k])) tpr[k] = far[k] = NAN;
        else fkd_roc_rates_at(score, issame, n_pairs, thresholds[k], &tpr[k], &far[k]);
    }
    free(score);
    return FKD_OK;
}
