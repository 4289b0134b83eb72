/* The loss on labels a recipe's `head:` section asks for, as one object for the trainer:
 * a margin-softmax head (softmax … arcface, combined; optional intra/inter terms) or a
 * metric loss (contrastive, triplet) on the embeddings, plus an optional center loss.
 * Terms: the head's (named after head.loss; none for head.loss none) and "center" when
 * head.center.lambda > 0. */
#ifndef FKD_TRAIN_LABEL_LOSS_H
#define FKD_TRAIN_LABEL_LOSS_H

#include "heads/margin.h"
#include "heads/metric.h"
#include "io/recipe.h"

#define FKD_LABEL_LOSS_MAX_TERMS 2

typedef struct fkd_label_loss fkd_label_loss;

/* `recipe_path` only names the file in messages. */
fkd_status fkd_label_loss_create(fkd_label_loss **out, const fkd_recipe_head *h, const char *recipe_path, int classes,
                                 int dim, int max_batch, uint64_t seed);
void fkd_label_loss_free(fkd_label_loss *l);

/* Names of the terms (0 to 2) and their count. */
int fkd_label_loss_terms(const fkd_label_loss *l, const char **names);
/* Zeroes the head's parameter gradients. */
void fkd_label_loss_zero_grad(fkd_label_loss *l);
/* Loss terms of emb (B, d) with labels; margins (B) per-sample additive margins for a
 * margin head or NULL. WRITES dL/d emb into d_emb (B, d). */
fkd_status fkd_label_loss_forward(fkd_label_loss *l, const float *emb, const int *labels, const float *margins,
                                  int batch, double *terms, float *d_emb);
/* After the optimizer step: the center loss moves its centres. */
fkd_status fkd_label_loss_after_step(fkd_label_loss *l, const float *emb, const int *labels, int batch);
/* The head's parameters ("head.weight", "head.bias", "head.centers"): trained ones for the
 * optimizer, all of them for checkpoints (plain layout). Valid until free. */
fkd_status fkd_label_loss_params(fkd_label_loss *l, fkd_param **params, int *count);
/* The margin head (class centres, logits), or NULL for a metric loss. */
fkd_margin_head *fkd_label_loss_margin_head(fkd_label_loss *l);

#endif
