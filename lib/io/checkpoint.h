/* Training checkpoints: one safetensors file holding everything a run needs to go on.
 *
 *   <state_dict names>        the model's parameters and buffers (fp32, plain layout), so a
 *                             checkpoint also loads wherever a model file is taken
 *   head.<name>               the head
 *   optim.<name>              the optimizer's state ("optim.conv1.weight.momentum_buffer",
 *                             "optim.step")
 *   __metadata__              architecture, embedding_size, producer, step, epoch, and
 *                             whatever the caller adds (recipe hash, head preset, …)
 *
 * Written atomically (temporary name, fsync, rename): a crash leaves the previous file. */
#ifndef FKD_IO_CHECKPOINT_H
#define FKD_IO_CHECKPOINT_H

#include <stdint.h>

#include "io/model.h"
#include "nn/graph.h"
#include "nn/optim.h"

#define FKD_CHECKPOINT_MAX_EXTRA_META 8

typedef struct {
    fkd_graph *model;          /* required */
    fkd_model_meta meta;       /* architecture, embedding size, producer */
    fkd_param *head_params;    /* plain layout (data holds numel floats); may be NULL */
    int head_count;
    fkd_optim *optim;          /* may be NULL (final model files carry no optimizer) */
    int64_t step, epoch;
    int extra_count;           /* additional metadata, e.g. {"head", "arcface"} */
    fkd_st_meta extra[FKD_CHECKPOINT_MAX_EXTRA_META];
} fkd_checkpoint;

/* Writes the parts present in `ck` to `path`. */
fkd_status fkd_checkpoint_save(const char *path, const fkd_checkpoint *ck);

/* Loads `path` into the parts present in `ck` (model, head params, optimizer) and sets
 * step/epoch from the metadata. Every tensor a present part needs must be in the file
 * with the right shape; the message names the file and the tensor otherwise. */
fkd_status fkd_checkpoint_load(const char *path, fkd_checkpoint *ck);

/* Copies the tensors named prefix+param.name from `st` into plain-layout params. */
fkd_status fkd_checkpoint_load_params(const fkd_safetensors *st, const char *prefix, fkd_param *params,
                                      int count);

#endif
