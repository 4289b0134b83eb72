/* Model files: a graph's parameters and buffers as safetensors, fp32, PyTorch's plain
 * layout and state_dict names, with metadata
 *   architecture    "iresnet50", "mbf", … (fkd_arch names)
 *   embedding_size  "512"
 *   producer        "facekd 0.1.0", "convert_arcface_pth.py", …
 *   width, blocks   only for variants that differ from the named architecture: base
 *                   width "16", per-stage blocks "1,2,1,1" (fkd_arch_opts)
 *
 * Loading needs every parameter and buffer of the graph, with the graph's shape; extra
 * tensors (num_batches_tracked, a training checkpoint's optimizer state) are ignored. */
#ifndef FKD_IO_MODEL_H
#define FKD_IO_MODEL_H

#include "io/safetensors.h"
#include "nn/graph.h"

typedef struct {
    char architecture[64]; /* "" when the file has none */
    int embedding_size;    /* 0 when the file has none */
    char producer[128];
    int width;             /* 0 = the architecture's (64) */
    int blocks[4];         /* all 0 = the architecture's */
} fkd_model_meta;

/* Writes every parameter and buffer of `g` (after finalize) to `path`, atomically. */
fkd_status fkd_model_save(fkd_graph *g, const char *path, const fkd_model_meta *meta);
/* The same plus caller tensors (after the model's; e.g. a training checkpoint's
 * optimizer state "optim.<param>.m") and metadata ("step"). Names must not collide with
 * the model's tensors or metadata keys. The caller keeps ownership of everything. */
fkd_status fkd_model_save_with(fkd_graph *g, const char *path, const fkd_model_meta *meta,
                               const fkd_st_entry *extra, int n_extra, const fkd_st_meta *extra_meta,
                               int n_extra_meta);

/* Reads the metadata of a parsed file; absent keys stay empty/0. A malformed
 * embedding_size, width or blocks is an error naming the file and the key. */
fkd_status fkd_model_meta_from(const fkd_safetensors *st, fkd_model_meta *meta);

/* The architecture to build for `st`: `arch` when given (then the file's metadata, if any,
 * must name the same architecture), else the file's; an error when neither names one. The
 * result is canonical (aliases resolved) and points into the architecture table. */
fkd_status fkd_model_resolve_arch(const fkd_safetensors *st, const char *arch, const char **resolved);

/* Copies the tensors of `st` into the parameters and buffers of `g` (after finalize). */
fkd_status fkd_model_load_tensors(fkd_graph *g, const fkd_safetensors *st);

/* Reads `path` and loads it into `g`. */
fkd_status fkd_model_load(fkd_graph *g, const char *path);

/* Everything a user of a model file needs: resolves the architecture (`arch` or the
 * file's metadata, see fkd_model_resolve_arch), takes the embedding size from the
 * metadata or else from the file's embedding weight, width and blocks from the metadata
 * when present, builds input "input" (3×112×112) →
 * architecture under `config`, finalizes and loads `st`. On success *out owns the graph.
 * On failure *out is NULL and the message names the file and the tensor. */
fkd_status fkd_model_open(fkd_graph **out, const fkd_safetensors *st, const char *arch,
                          const fkd_graph_config *config, fkd_value *embedding);

#endif
