#include "eval/embed.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"

#define FACE_FLOATS (3 * 112 * 112)

fkd_status fkd_embed_dim(const fkd_embed_config *config, int *dim)
{
    int ndims, dims[4];
    FKD_TRY(fkd_graph_shape(config->graph, config->embedding, &ndims, dims));
    if (ndims != 2) return FKD_FAIL(FKD_ERR_ARG, "embedding value is %d-D, expected (N, d)", ndims);
    *dim = dims[1];
    return FKD_OK;
}

/* One pass (plain or mirrored) over all images; adds into `out` when `accumulate`. */
static fkd_status embed_pass(const fkd_embed_config *c, int64_t n, fkd_image_source source, void *ctx,
                             bool flip, bool accumulate, float *batch_in, float *batch_out, int batch, int d,
                             float *out, fkd_progress *progress, int64_t *done)
{
    for (int64_t start = 0; start < n; start += batch) {
        int rows = (int)(n - start < batch ? n - start : batch);
        for (int r = 0; r < rows; r++) FKD_TRY(source(ctx, start + r, flip, batch_in + (size_t)r * FACE_FLOATS));
        /* The graph's batch is fixed: the tail of the last batch is zero padding. */
        if (rows < batch) memset(batch_in + (size_t)rows * FACE_FLOATS, 0, (size_t)(batch - rows) * FACE_FLOATS * sizeof(float));
        FKD_TRY(fkd_graph_set_input(c->graph, c->input, batch_in));
        FKD_TRY(fkd_graph_forward(c->graph));
        FKD_TRY(fkd_graph_read(c->graph, c->embedding, batch_out));
        float *dst = out + (size_t)start * d;
        for (size_t k = 0; k < (size_t)rows * d; k++) dst[k] = accumulate ? dst[k] + batch_out[k] : batch_out[k];
        *done += rows;
        if (progress) fkd_progress_update(progress, *done, NULL);
    }
    return FKD_OK;
}

fkd_status fkd_embed_images(const fkd_embed_config *c, int64_t n, fkd_image_source source, void *ctx, float *out)
{
    int ndims, dims[4], d;
    FKD_TRY(fkd_graph_shape(c->graph, c->embedding, &ndims, dims));
    FKD_TRY(fkd_embed_dim(c, &d));
    int batch = dims[0];
    float *batch_in = malloc((size_t)batch * FACE_FLOATS * sizeof(float));
    float *batch_out = malloc((size_t)batch * d * sizeof(float));
    if (!batch_in || !batch_out) {
        free(batch_in);
        free(batch_out);
        return FKD_FAIL(FKD_ERR_NOMEM, "embedding %lld images: out of memory", (long long)n);
    }
    int64_t total = c->flip ? 2 * n : n, done = 0;
    fkd_progress progress;
    if (c->label) fkd_progress_start(&progress, c->label, total, 1);
    fkd_progress *p = c->label ? &progress : NULL;
    fkd_status s = fkd_graph_set_training(c->graph, false);
    if (s == FKD_OK) s = embed_pass(c, n, source, ctx, false, false, batch_in, batch_out, batch, d, out, p, &done);
    if (s == FKD_OK && c->flip)
        s = embed_pass(c, n, source, ctx, true, true, batch_in, batch_out, batch, d, out, p, &done);
    if (s == FKD_OK && p) fkd_progress_finish(p, done, NULL);
    free(batch_in);
    free(batch_out);
    return s;
}
