/* ONNX import: a face-recognition model in ONNX (opsets 9–17) becomes an inference graph
 * on facekd's engine.
 *
 *   fkd_graph *g; fkd_value emb; fkd_onnx_info info;
 *   fkd_graph_config cfg = {.batch = 8, .mode = FKD_GRAPH_INFER};
 *   FKD_TRY(fkd_onnx_import(&g, "w600k_r50.onnx", &cfg, &emb, &info));
 *   fkd_graph_set_input(g, "input", nchw);  // (x − 127.5) / 127.5, RGB, 8×3×112×112
 *
 * What the importer does
 *   - parses the ModelProto (lib/io/onnx.proto, protobuf-c); initializers as raw_data or
 *     the typed fields (float, double, int32, int64);
 *   - folds every constant computation — PyTorch's Shape → Gather → Unsqueeze → Concat
 *     chains feeding Reshape, Constant nodes, Cast, arithmetic on constants — using the
 *     graph's static shapes at the configured batch;
 *   - maps the rest onto engine ops: Conv (bias, groups), BatchNormalization (folded into
 *     the Conv/Gemm/MatMul before it when that is its only consumer, else the engine's
 *     eval-mode batch norm), PRelu (slope (C), (C,1,1), (1,C,1,1) or one value), Relu and
 *     LeakyRelu (PReLU with a fixed slope), Add of two values (residual add), Add/Sub/
 *     Mul/Div with a constant scalar or per-channel operand (folded into the producing
 *     Conv/Gemm, else a per-channel scale-shift), Flatten, Reshape to (N, −1), Gemm,
 *     MatMul with a constant right operand, GlobalAveragePool (square maps), Identity and
 *     Dropout (pass-through);
 *   - the engine input is always named "input" and takes facekd's convention
 *     (x − 127.5) / 127.5. A graph that normalises its own input (its input goes straight
 *     into Sub/Add/Mul/Div with a constant, as mxnet-converted models do) gets
 *     x·127.5 + 127.5 in front, folded with the graph's own normalisation;
 *   - the graph's first output is tapped "embedding" (flattened when 4-D).
 * Anything else — an unsupported op, a missing input or initializer, shapes that do not
 * fit — is an error naming the file, the node and its op.
 */
#ifndef FKD_IO_ONNX_IMPORT_H
#define FKD_IO_ONNX_IMPORT_H

#include <stdbool.h>
#include <stdint.h>

#include "nn/graph.h"

typedef struct {
    char input_name[128];  /* the ONNX graph's input ("data", "input.1") */
    char output_name[128]; /* its first output */
    int64_t ir_version;
    int64_t opset;         /* of the default domain */
    char producer[128];    /* "pytorch 1.13.0", "facekd 0.1.0" */
    int channels, height, width; /* input image */
    int embedding_size;
    int onnx_nodes;        /* nodes in the file */
    int engine_nodes;      /* nodes of the built graph, after folding */
    int folded;            /* BatchNormalization / scale-shift nodes folded into Conv/Gemm */
    bool self_normalising; /* the graph normalises its own input (see above) */
    /* metadata_props written by facekd's exporter ("" when absent) */
    char architecture[64];
    char preprocessing[128];
} fkd_onnx_info;

/* Reads `path` and builds the inference graph under `config` (mode must be INFER); on
 * success *out owns the finalized graph with every parameter loaded and *embedding is its
 * embedding value. `info` may be NULL. On failure *out is NULL. */
fkd_status fkd_onnx_import(fkd_graph **out, const char *path, const fkd_graph_config *config,
                           fkd_value *embedding, fkd_onnx_info *info);

/* The same from bytes in memory (`path` only names the source in messages); the caller
 * keeps `data`. */
fkd_status fkd_onnx_import_bytes(fkd_graph **out, const char *path, const uint8_t *data, size_t size,
                                 const fkd_graph_config *config, fkd_value *embedding, fkd_onnx_info *info);

#endif
