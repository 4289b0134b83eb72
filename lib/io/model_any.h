/* One door for model files, whatever their format: facekd's safetensors checkpoints
 * (io/model.h) or ONNX files (io/onnx_import.h), chosen by extension (".onnx", else
 * safetensors). What `facekd info`, `embed` and `eval` and a recipe's teacher use.
 *
 *   fkd_graph *g; fkd_value emb;
 *   FKD_TRY(fkd_model_open_any("w600k_r50.onnx", NULL, &cfg, &g, &emb));
 *   // input "input": (N, 3, 112, 112), (x − 127.5) / 127.5, RGB; tap "embedding"
 */
#ifndef FKD_IO_MODEL_ANY_H
#define FKD_IO_MODEL_ANY_H

#include <stdbool.h>

#include "io/onnx_import.h"
#include "nn/graph.h"

typedef enum { FKD_MODEL_SAFETENSORS = 0, FKD_MODEL_ONNX } fkd_model_format;

/* By extension: ".onnx" (any case) is ONNX, everything else safetensors. */
fkd_model_format fkd_model_format_of(const char *path);

typedef struct {
    fkd_model_format format;
    char architecture[64]; /* resolved fkd_arch name; for ONNX the file's metadata or "" */
    int embedding_size;
    fkd_onnx_info onnx;    /* ONNX files only */
} fkd_model_any_info;

/* Opens `path` as an inference-ready graph under `config`: safetensors through
 * fkd_model_open (`arch` or the file's metadata names the architecture), ONNX through
 * fkd_onnx_import (config->mode must be INFER; `arch`, when given, must match the file's
 * "architecture" metadata if it has one). On success *graph owns the graph, *embedding is
 * the embedding value; on failure *graph is NULL and the message names the file. */
fkd_status fkd_model_open_any(const char *path, const char *arch, const fkd_graph_config *config, fkd_graph **graph,
                              fkd_value *embedding);
/* The same, also describing what was opened (`info` may be NULL). */
fkd_status fkd_model_open_any_info(const char *path, const char *arch, const fkd_graph_config *config,
                                   fkd_graph **graph, fkd_value *embedding, fkd_model_any_info *info);

#endif
