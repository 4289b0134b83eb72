/* ONNX export of a built graph (a student loaded from its safetensors file), for ONNX
 * Runtime and every other consumer.
 *
 * Layout of the file
 *   input  "input"      float (batch, C, H, W) — "batch" is a symbolic dimension
 *   output "embedding"  float (batch, F)
 *   Conv (batch norm folded into weight and bias), PRelu (slope (C,1,1); never fused),
 *   Add, Flatten(axis 1), Gemm(transB 1) with the batch norm after it folded in,
 *   BatchNormalization only where no convolution or linear layer precedes it (IResNet's
 *   pre-activation bn1 and its bn2). Dropout is left out (identity at inference). No
 *   Reshape: nothing in the file depends on the batch size.
 *   metadata_props: architecture, embedding_size, preprocessing, producer (+ the caller's
 *   width / blocks when given).
 *   Initializers as raw_data (little-endian fp32), named after facekd's parameters.
 */
#ifndef FKD_IO_ONNX_EXPORT_H
#define FKD_IO_ONNX_EXPORT_H

#include <stdint.h>

#include "nn/graph.h"

/* The input convention written into metadata "preprocessing". */
#define FKD_ONNX_PREPROCESSING "RGB, NCHW, 112x112, (x - 127.5) / 127.5"

typedef struct {
    int opset;                /* 0 = 13; 9..17 */
    const char *architecture; /* metadata; NULL = "" */
    const char *producer;     /* NULL = "facekd <version>" */
    /* extra metadata (e.g. width, blocks), n_meta pairs; may be NULL */
    const char *const (*meta)[2];
    int n_meta;
} fkd_onnx_export_opts;

/* Writes `g` (finalized; every node an input, conv, batchnorm, prelu, add, flatten,
 * linear or dropout) with `embedding` as its output to `path`, atomically. */
fkd_status fkd_onnx_export(fkd_graph *g, fkd_value embedding, const char *path, const fkd_onnx_export_opts *opts);

/* Imports `onnx_path` at `native`'s batch, runs both graphs on the same deterministic
 * input (uniform in [−1, 1], seed `seed`) and returns the largest absolute difference of
 * their embeddings in *max_abs. */
fkd_status fkd_onnx_check_roundtrip(fkd_graph *native, fkd_value embedding, const char *onnx_path, uint64_t seed,
                                    double *max_abs);

#endif
