#include "train/label_loss.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct fkd_label_loss {
    const char *names[FKD_LABEL_LOSS_MAX_TERMS];
    int n_terms;
    fkd_margin_head *margin;  /* softmax family, or NULL */
    fkd_metric_loss *metric;  /* contrastive / triplet, or NULL */
    fkd_metric_loss *center;  /* center loss, or NULL */
    float *d_center;          /* (B, d) the center loss's gradient */
    int dim;
    fkd_param params[8];
    int n_params;
};

void fkd_label_loss_free(fkd_label_loss *l)
{
    if (!l) return;
    fkd_margin_head_free(l->margin);
    fkd_metric_loss_free(l->metric);
    fkd_metric_loss_free(l->center);
    free(l->d_center);
    free(l);
}

static fkd_status add_params(fkd_label_loss *l, fkd_param *p, int n)
{
    if (l->n_params + n > (int)(sizeof l->params / sizeof l->params[0]))
        return FKD_FAIL(FKD_ERR_ARG, "head: too many parameter tensors");
    memcpy(l->params + l->n_params, p, sizeof *p * (size_t)n);
    l->n_params += n;
    return FKD_OK;
}

static fkd_status build(fkd_label_loss *l, const fkd_recipe_head *h, int classes, int dim, int max_batch, uint64_t seed)
{
    fkd_metric_params mp;
    fkd_metric_params_default(&mp);
    if (h->loss == FKD_HEAD_NONE) {
        l->n_terms = 0; /* no loss on labels; a center loss may still be added below */
    } else if (h->loss == FKD_HEAD_CONTRASTIVE || h->loss == FKD_HEAD_TRIPLET) {
        bool triplet = h->loss == FKD_HEAD_TRIPLET;
        if (!isnan(h->margin)) *(triplet ? &mp.triplet_margin : &mp.contrastive_margin) = h->margin;
        mp.mining = h->triplet.mining == FKD_RECIPE_MINING_ALL    ? FKD_MINING_ALL
                    : h->triplet.mining == FKD_RECIPE_MINING_HARD ? FKD_MINING_HARD
                                                                  : FKD_MINING_SEMIHARD;
        mp.triplet_normalize = h->triplet.normalize;
        FKD_TRY(fkd_metric_loss_create(&l->metric, triplet ? FKD_METRIC_TRIPLET : FKD_METRIC_CONTRASTIVE, &mp, classes,
                                       dim, max_batch));
    } else {
        fkd_margin_params p;
        FKD_TRY(fkd_margin_params_preset(&p, l->names[0]));
        if (!isnan(h->s)) p.s = h->s;
        if (!isnan(h->m1)) p.m1 = h->m1;
        if (!isnan(h->m2)) p.m2 = h->m2;
        if (!isnan(h->m3)) p.m3 = h->m3;
        p.easy_margin = h->easy_margin;
        p.straight_through = h->straight_through;
        p.intra = h->intra;
        p.inter = h->inter;
        FKD_TRY(fkd_margin_params_validate(&p));
        FKD_TRY(fkd_margin_head_create(&l->margin, &p, classes, dim, max_batch, seed));
        fkd_param *params;
        int n;
        FKD_TRY(fkd_margin_head_params(l->margin, &params, &n));
        FKD_TRY(add_params(l, params, n));
    }
    if (h->center.lambda > 0) {
        mp.center_lambda = h->center.lambda;
        mp.center_alpha = h->center.alpha > 0 ? h->center.alpha : mp.center_alpha;
        FKD_TRY(fkd_metric_loss_create(&l->center, FKD_METRIC_CENTER, &mp, classes, dim, max_batch));
        l->d_center = malloc(sizeof(float) * (size_t)max_batch * dim);
        if (!l->d_center) return FKD_FAIL(FKD_ERR_NOMEM, "head: out of memory");
        fkd_param *params;
        int n;
        FKD_TRY(fkd_metric_loss_params(l->center, &params, &n));
        FKD_TRY(add_params(l, params, n));
        l->names[l->n_terms++] = "center";
    }
    return FKD_OK;
}

fkd_status fkd_label_loss_create(fkd_label_loss **out, const fkd_recipe_head *h, const char *recipe_path, int classes,
                                 int dim, int max_batch, uint64_t seed)
{
    *out = NULL;
    fkd_label_loss *l = calloc(1, sizeof *l);
    if (!l) return FKD_FAIL(FKD_ERR_NOMEM, "head: out of memory");
    l->dim = dim;
    l->names[l->n_terms++] = fkd_recipe_enum_name("head.loss", h->loss);
    fkd_status s = build(l, h, classes, dim, max_batch, seed);
    if (s != FKD_OK) {
        fkd_label_loss_free(l);
        return FKD_WRAP(s, "%s: ", recipe_path);
    }
    *out = l;
    return FKD_OK;
}

int fkd_label_loss_terms(const fkd_label_loss *l, const char **names)
{
    for (int i = 0; i < l->n_terms; i++) names[i] = l->names[i];
    return l->n_terms;
}

void fkd_label_loss_zero_grad(fkd_label_loss *l)
{
    if (l->margin) fkd_margin_head_zero_grad(l->margin);
}

fkd_status fkd_label_loss_forward(fkd_label_loss *l, const float *emb, const int *labels, const float *margins,
                                  int batch, double *terms, float *d_emb)
{
    float loss;
    int k = 0;
    if (l->margin) {
        FKD_TRY(fkd_margin_head_forward(l->margin, emb, labels, margins, batch, &loss, d_emb));
        terms[k++] = loss;
    } else if (l->metric) {
        FKD_TRY(fkd_metric_loss_forward(l->metric, emb, labels, batch, &loss, d_emb));
        terms[k++] = loss;
    } else {
        memset(d_emb, 0, sizeof(float) * (size_t)batch * l->dim);
    }
    if (l->center) {
        FKD_TRY(fkd_metric_loss_forward(l->center, emb, labels, batch, &loss, l->d_center));
        terms[k] = loss;
        for (size_t k = 0; k < (size_t)batch * l->dim; k++) d_emb[k] += l->d_center[k];
    }
    return FKD_OK;
}

fkd_status fkd_label_loss_after_step(fkd_label_loss *l, const float *emb, const int *labels, int batch)
{
    return l->center ? fkd_metric_loss_update_centers(l->center, emb, labels, batch) : FKD_OK;
}

fkd_status fkd_label_loss_params(fkd_label_loss *l, fkd_param **params, int *count)
{
    *params = l->params;
    *count = l->n_params;
    return FKD_OK;
}

fkd_margin_head *fkd_label_loss_margin_head(fkd_label_loss *l) { return l->margin; }
