/* Training a model and its head from labels: the loop behind `facekd train` (and, with
 * distillation terms plugged in, `facekd distill`).
 *
 * A run folder holds
 *   recipe.yaml              the resolved recipe
 *   log.csv                  step, epoch, lr, loss, each loss term, images/s
 *   eval.csv                 step, benchmark, accuracy ± std, TAR@FAR=1e-3, EER, AUC, XNorm
 *   checkpoint.safetensors   model + head + optimizer state + step (atomic; at step 0 of
 *                            a fresh run, every checkpoint_every steps, on SIGINT/SIGTERM
 *                            and at the end)
 *   model.safetensors        the final model with its class centres (head.weight)
 *   eval.md, eval.csv-table  the final evaluation table; roc.png its ROC curves
 *   loss.png, lr.png, accuracy.png   training curves
 *
 * Under mpirun (facekd built with MPI=1, lib/dist) every rank trains on its slice of each
 * global batch and gradients are averaged; rank 0 alone writes the run folder and logs
 * (docs/MPI.md). */
#ifndef FKD_TRAIN_TRAINER_H
#define FKD_TRAIN_TRAINER_H

#include <signal.h>
#include <stdbool.h>

#include "core/status.h"
#include "data/loader.h"
#include "io/recipe.h"
#include "nn/graph.h"

/* Set by a signal handler (SIGINT, SIGTERM): the trainer finishes the step, writes a
 * checkpoint and returns FKD_ERR_INTERRUPTED. */
extern volatile sig_atomic_t fkd_train_stop_requested;

#define FKD_TRAIN_MAX_TERMS 16
/* With the recipe's skip_nonfinite, this many non-finite batches in a row end the run. */
#define FKD_TRAIN_MAX_SKIPS_IN_ROW 10

typedef struct fkd_trainer fkd_trainer;

/* Extra loss terms on the same batch (the distillation layer plugs in here).
 *   init   after the model and head are built, before the optimizer: names its terms
 *          (n_terms, names) and hands over trainable parameters of its own (regressors,
 *          adapters) so the optimizer updates them; may be NULL.
 *   step   after the student forward, before the head: writes one weighted value per
 *          term, ACCUMULATES gradients w.r.t. the student embedding into d_embedding
 *          (B, d) (zeroed by the trainer) and into any other student tensor it reaches
 *          through the trainer (taps, head centres); may write per-sample additive
 *          margins (B) for the head into `margins` and then sets *use_margins. */
typedef struct fkd_train_hook {
    void *ctx;
    int n_terms;
    const char *names[FKD_TRAIN_MAX_TERMS];
    fkd_status (*init)(struct fkd_train_hook *hook, fkd_trainer *t, fkd_param **extra_params, int *n_extra);
    fkd_status (*step)(void *ctx, fkd_trainer *t, const fkd_batch *batch, const float *embedding, float *d_embedding,
                       float *margins, bool *use_margins, double *terms);
} fkd_train_hook;

/* Builds everything a run needs — dataset, loader, model, head, optimizer, schedule,
 * benchmarks, run folder — and fails before any training when something is wrong,
 * including a run folder that cannot be written or lacks room for the checkpoints.
 * With `resume`, continues from <output>/checkpoint.safetensors. `hook` may be NULL. */
fkd_status fkd_trainer_create(fkd_trainer **out, const fkd_recipe *r, bool resume, const fkd_train_hook *hook);
/* Trains to the end (or until a stop is requested), evaluating and checkpointing as the
 * recipe says, then writes the final model, tables and plots. */
fkd_status fkd_trainer_run(fkd_trainer *t);
void fkd_trainer_free(fkd_trainer *t);

/* The compute precision for a graph whose recipe key (`key`, e.g. "model.precision") asks for
 * bf16 or not, on this CPU: bf16 where oneDNN runs bf16 kernels (AVX-512 and up), else fp32
 * with a warning naming the recipe and the key. Logs which path runs (precision, oneDNN's
 * ISA, AMX or not). */
fkd_precision fkd_train_precision(const char *recipe_path, const char *key, bool bf16);
/* The student's TRAIN graph configuration from the recipe's model section (precision as
 * fkd_train_precision decides it, sync_bn, direct_conv) and seed, for a batch of `batch`. */
fkd_graph_config fkd_trainer_graph_config(const fkd_recipe *r, int batch);

/* The run folder (absolute). */
const char *fkd_trainer_run_dir(const fkd_trainer *t);

/* For hooks: the student graph and its embedding value, the head, the training set's
 * identities, the batch size and the optimizer steps done. */
fkd_graph *fkd_trainer_graph(fkd_trainer *t, fkd_value *embedding);
struct fkd_margin_head *fkd_trainer_head(fkd_trainer *t);
int fkd_trainer_classes(const fkd_trainer *t);
const struct fkd_dataset *fkd_trainer_dataset(const fkd_trainer *t);
int fkd_trainer_batch(const fkd_trainer *t);
int64_t fkd_trainer_step(const fkd_trainer *t);

#endif
