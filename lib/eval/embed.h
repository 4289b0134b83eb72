/* Embeddings of many images through a model graph, in the graph's fixed batch size.
 *
 * Images come from a callback that fills one normalised (3, 112, 112) slot at a time, so
 * benchmarks stay encoded (or unrendered) until the batch that needs them. With `flip`,
 * each image also runs mirrored and the two raw embeddings are summed — insightface's flip
 * test; the caller L2-normalises (fkd_verify_* do). */
#ifndef FKD_EVAL_EMBED_H
#define FKD_EVAL_EMBED_H

#include <stdbool.h>
#include <stdint.h>

#include "core/status.h"
#include "nn/graph.h"

/* Fills `slot` (3·112·112 floats, NCHW, (x − 127.5)/127.5) with image i, mirrored when
 * `flip`. */
typedef fkd_status (*fkd_image_source)(void *ctx, int64_t i, bool flip, float *slot);

typedef struct {
    fkd_graph *graph;    /* finalized; left in eval mode (a trainer switches back) */
    fkd_value embedding; /* the value read as the embedding, (N, d) */
    const char *input;   /* input name ("input") */
    bool flip;           /* flip test: e(x) + e(mirror(x)) */
    const char *label;   /* progress label, or NULL for no progress output */
} fkd_embed_config;

/* out (n, d) receives the embeddings (flip-summed when config->flip). */
fkd_status fkd_embed_images(const fkd_embed_config *config, int64_t n, fkd_image_source source, void *ctx,
                            float *out);

/* The embedding size of config->embedding. */
fkd_status fkd_embed_dim(const fkd_embed_config *config, int *dim);

#endif
