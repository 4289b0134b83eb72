#include "eval/embed.h"

#include <stdlib.h>
#include <string.h>

#define FACE_FLOATS (3 * 112 * 112)

fkd_status fkd_embed_dim(const fkd_embed_config *config, int *dim)
{
    int ndims, dims[4];
    FKD_TRY(fkd_graph_shape(config->graph, config->embedding, &ndims, dims));
    if (ndims != 2) return FKD_FAIL(FKD_ERR_ARG, "embedding value is %d-D, expected (N, d)", ndims);
    *dim = dims[1];
    return FKD_OK;
}

fkd_status fkd_embed_images(const fkd_embed_config *c, int64_t n, fkd_image_source source, void *ctx, bool flip,
                            float *out)
{
    int ndims, dims[4], d;
    FKD_TRY(fkd_graph_shape(c->graph, c->embedding, &ndims, dims));
    FKD_TRY(fkd_embed_dim(c, &d));
    FKD_TRY(fkd_graph_set_training(c->graph, false));
    int batch = dims[0];
    float *batch_in = malloc((size_t)batch * FACE_FLOATS * sizeof(float));
    float *batch_out = malloc((size_t)batch * d * sizeof(float));
    fkd_status s = batch_in && batch_out ? FKD_OK
                                         : FKD_FAIL(FKD_ERR_NOMEM, "embedding %lld images: out of memory", (long long)n);
    for (int64_t start = 0; s == FKD_OK && start < n; start += batch) {
        int rows = (int)(n - start < batch ? n - start : batch);
        for (int r = 0; s == FKD_OK && r < rows; r++) s = source(ctx, start + r, flip, batch_in + (size_t)r * FACE_FLOATS);
        /* The graph's batch is fixed: the tail of the last batch is zero padding. */
        if (rows < batch) memset(batch_in + (size_t)rows * FACE_FLOATS, 0, (size_t)(batch - rows) * FACE_FLOATS * sizeof(float));
        if (s == FKD_OK) s = fkd_graph_set_input(c->graph, c->input, batch_in);
        if (s == FKD_OK) s = fkd_graph_forward(c->graph);
        if (s == FKD_OK) s = fkd_graph_read(c->graph, c->embedding, batch_out);
        if (s == FKD_OK) memcpy(out + (size_t)start * d, batch_out, (size_t)rows * d * sizeof(float));
        if (s == FKD_OK && c->progress) fkd_progress_update(c->progress, c->progress->done + rows, NULL);
    }
    free(batch_in);
    free(batch_out);
    return s;
}
