/* Distillation as a trainer hook (`facekd distill`): a teacher model runs in inference on
 * every training batch, and each method of the recipe's `distill:` list turns the
 * student's and the teacher's outputs into a weighted loss term (lib/distill).
 *
 * The teacher is a facekd model file (.safetensors) — typically the model.safetensors of
 * a `facekd train` run, which also holds the teacher's class centres ("head.weight",
 * needed by kd and margin). Its embedding and any tap a method asks for are computed per
 * batch in an inference graph of the same batch size. */
#ifndef FKD_TRAIN_DISTILL_H
#define FKD_TRAIN_DISTILL_H

#include "io/recipe.h"
#include "train/trainer.h"

typedef struct fkd_distill_run fkd_distill_run;

/* Reads the teacher file and checks the recipe's methods exist; fills `hook` (its init
 * builds the teacher graph and the distillers once the trainer knows the batch, the
 * classes and the student's taps). */
fkd_status fkd_distill_run_create(fkd_distill_run **out, const fkd_recipe *r, fkd_train_hook *hook);
/* The teacher's INFER graph configuration from the recipe's teacher section (precision as
 * fkd_train_precision decides it, direct_conv), for a batch of `batch`. */
fkd_graph_config fkd_distill_teacher_graph_config(const fkd_recipe *r, int batch);
/* Safe on NULL. */
void fkd_distill_run_free(fkd_distill_run *d);

/* One whole run of a loaded recipe: `facekd distill` (the teacher hook) when `distill`,
 * else `facekd train` (a recipe's teacher and distill sections are then unused). */
fkd_status fkd_run_recipe(const fkd_recipe *r, bool resume, bool distill);

#endif
