/* Fuzz target: ONNX import (lib/io/onnx_import.c: protobuf-c parsing, constant folding,
 * shape checks, graph building).
 *
 * A file that imports is used as callers use it: one forward pass of a zero batch. */
#include <stdlib.h>
#include <string.h>

#include "io/onnx_import.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fkd_graph_config config = {.batch = 1, .mode = FKD_GRAPH_INFER, .precision = FKD_PREC_F32};
    fkd_graph *g = NULL;
    fkd_value emb;
    fkd_onnx_info info;
    if (fkd_onnx_import_bytes(&g, "fuzz.onnx", data, size, &config, &emb, &info) == FKD_OK) {
        size_t n = (size_t)info.channels * info.height * info.width;
        float *x = calloc(n ? n : 1, sizeof *x);
        if (x && fkd_graph_set_input(g, "input", x) == FKD_OK) fkd_graph_forward(g);
        free(x);
    }
    fkd_graph_free(g);
    return 0;
}
