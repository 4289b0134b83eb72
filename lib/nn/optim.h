/* Optimizers over fkd_param arrays: SGD (momentum, Nesterov) and AdamW, PyTorch 1.13
 * semantics, plus gradient norms, clipping and a finite check.
 *
 * One optimizer updates several parameter lists at once (the student graph's params and
 * a margin head's), like one torch.optim optimizer with two param groups:
 *
 *     fkd_param *lists[2] = {graph_params, head_params};
 *     int counts[2] = {n_graph, n_head};
 *     fkd_optim_config cfg = fkd_optim_sgd_defaults();      // lr 0.1, 0.9, 5e-4
 *     fkd_optim *opt;
 *     FKD_TRY(fkd_optim_create(&opt, &cfg, lists, counts, 2));
 *     for (k = 0; ...; k++) {
 *         ... forward, zero_grad, backward ...
 *         FKD_TRY(fkd_params_check_finite(lists, counts, 2));
 *         FKD_TRY(fkd_optim_step(opt, fkd_schedule_lr(&sched, k)));
 *     }
 *     fkd_optim_free(opt);
 *
 * Updates (g = grad, w = data, t = step count after increment, lr given per step):
 *   SGD    g += wd·w (coupled decay);  buf = g at t = 1, else buf = momentum·buf + g;
 *          w -= lr·(g + momentum·buf) with Nesterov, else w -= lr·buf.
 *          momentum 0: w -= lr·g and no state.
 *   AdamW  w -= lr·wd·w (decoupled);  m = β1·m + (1−β1)·g;  v = β2·v + (1−β2)·g²;
 *          w -= lr/(1−β1^t) · m / (sqrt(v)/sqrt(1−β2^t) + eps).
 * Parameters with trainable == false or grad == NULL are left alone (buffers, frozen
 * weights). Weight decay applies to every updated parameter under FKD_DECAY_ALL (what
 * arcface_torch does) and only to those with param->decay under FKD_DECAY_NO_BN_PRELU
 * (the engine clears `decay` for batch norm and PReLU).
 *
 * The optimizer keeps pointers to the fkd_param structs: they and their data/grad must
 * outlive it. State buffers are allocated once, in fkd_optim_create(); a step allocates
 * nothing. Updates run over all `storage` elements (layout padding has zero data and
 * zero gradient and stays zero).
 */
#ifndef FKD_NN_OPTIM_H
#define FKD_NN_OPTIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "nn/graph.h"

typedef enum { FKD_OPTIM_SGD = 0, FKD_OPTIM_ADAMW, FKD_OPTIM_KIND_COUNT } fkd_optim_kind;

typedef enum {
    FKD_DECAY_ALL = 0,     /* "all": every trained parameter (arcface_torch) */
    FKD_DECAY_NO_BN_PRELU, /* "no_bn_prelu": only params with param->decay set */
    FKD_DECAY_POLICY_COUNT
} fkd_decay_policy;

typedef struct {
    fkd_optim_kind kind;
    float weight_decay;
    fkd_decay_policy decay_policy;
    float momentum;          /* SGD; 0 = plain SGD */
    bool nesterov;           /* SGD; needs momentum > 0 */
    float beta1, beta2, eps; /* AdamW */
} fkd_optim_config;

/* arcface_torch's SGD: momentum 0.9, weight decay 5e-4, decay policy "all" (its lr 0.1
 * comes from the schedule). */
fkd_optim_config fkd_optim_sgd_defaults(void);
/* torch.optim.AdamW: betas (0.9, 0.999), eps 1e-8, weight decay 0.01. (arcface_torch's
 * AdamW configs use lr 1e-3 and weight decay 0.1.) */
fkd_optim_config fkd_optim_adamw_defaults(void);

/* "sgd" | "adamw"; "all" | "no_bn_prelu". */
const char *fkd_optim_kind_name(fkd_optim_kind kind);
fkd_status fkd_optim_kind_parse(const char *name, fkd_optim_kind *kind);
const char *fkd_decay_policy_name(fkd_decay_policy policy);
fkd_status fkd_decay_policy_parse(const char *name, fkd_decay_policy *policy);

typedef struct fkd_optim fkd_optim;

/* Creates an optimizer over lists[0..n_lists), list i holding counts[i] params. Checks
 * the configuration (message names the field), allocates the zeroed state buffers. */
fkd_status fkd_optim_create(fkd_optim **out, const fkd_optim_config *config,
                            fkd_param *const lists[], const int counts[], int n_lists);
/* Safe on NULL. */
void fkd_optim_free(fkd_optim *o);

/* One update of every trained parameter with learning rate `lr` (>= 0, finite).
 * OpenMP-parallel over elements. */
fkd_status fkd_optim_step(fkd_optim *o, float lr);
/* Updates taken so far (PyTorch's per-parameter `step`, shared by all parameters). */
int64_t fkd_optim_steps(const fkd_optim *o);
/* Number of parameters the optimizer updates. */
int fkd_optim_param_count(const fkd_optim *o);

/* ---- state for checkpoints ----------------------------------------------------------
 * Enumerable tensors: "<param>.momentum_buffer" (SGD with momentum), "<param>.exp_avg" and
 * "<param>.exp_avg_sq" (AdamW), each `count` floats in the same (engine) layout as the
 * param's data; and "step", one int64. A writer stores them as they are, or in PyTorch's
 * plain layout by reordering them like param->data (when count == param->numel the
 * layouts agree). Names may collide with model keys: prefix them (e.g. "optimizer.") in
 * a file that holds both. */
typedef enum { FKD_OPTIM_STATE_F32 = 0, FKD_OPTIM_STATE_I64 } fkd_optim_state_dtype;

typedef struct {
    const char *name; /* owned by the optimizer */
    fkd_optim_state_dtype dtype;
    void *data;             /* float * or int64_t *, owned by the optimizer */
    size_t count;           /* elements */
    const fkd_param *param; /* the parameter it belongs to; NULL for "step" */
} fkd_optim_state;

int fkd_optim_state_count(const fkd_optim *o);
/* Entry i, 0 <= i < fkd_optim_state_count(). The pointers stay valid until free. */
fkd_status fkd_optim_state_get(const fkd_optim *o, int i, fkd_optim_state *entry);
/* Copies `count` elements of `dtype` from `data` into the state tensor called `name`.
 * Errors (naming the tensor) on an unknown name, a wrong dtype or count. Load every
 * tensor of a checkpoint, "step" included, before the next fkd_optim_step(). */
fkd_status fkd_optim_state_load(fkd_optim *o, const char *name, fkd_optim_state_dtype dtype,
                                const void *data, size_t count);

/* ---- gradients ------------------------------------------------------------------------
 * Over the trained parameters (trainable, grad != NULL) of lists[0..n_lists). */

/* L2 norm of all gradients together, accumulated in double. */
fkd_status fkd_params_grad_norm(fkd_param *const lists[], const int counts[], int n_lists,
                                double *norm);
/* torch.nn.utils.clip_grad_norm_: scales every gradient by
 * min(1, max_norm / (norm + 1e-6)); *norm (may be NULL) gets the norm before clipping.
 * A non-finite norm is FKD_ERR_NUMERIC and leaves the gradients alone. */
fkd_status fkd_params_clip_grad_norm(fkd_param *const lists[], const int counts[], int n_lists,
                                     double max_norm, double *norm);
/* FKD_ERR_NUMERIC naming the first parameter (and element) whose gradient is NaN or Inf. */
fkd_status fkd_params_check_finite(fkd_param *const lists[], const int counts[], int n_lists);

#endif
