/* Embeddings of many images through a model graph, in the graph's fixed batch size.
 *
 * Images come from a callback that fills one normalised (3, 112, 112) slot at a time, so
 * benchmarks stay encoded (or unrendered) until the batch that needs them. One call is
 * one pass: plain or mirrored. insightface's flip test runs both and sums the raw
 * embeddings (fkd_verify_flip_pairs does that in double for benchmarks). */
#ifndef FKD_EVAL_EMBED_H
#define FKD_EVAL_EMBED_H

#include <stdbool.h>
#include <stdint.h>

#include "core/log.h"
#include "core/status.h"
#include "nn/graph.h"

/* Fills `slot` (3·112·112 floats, NCHW, (x − 127.5)/127.5) with image i, mirrored when
 * `flip`. */
typedef fkd_status (*fkd_image_source)(void *ctx, int64_t i, bool flip, float *slot);

typedef struct {
    fkd_graph *graph;    /* finalized; left in eval mode (a trainer switches back) */
    fkd_value embedding; /* the value read as the embedding, (N, d) */
    const char *input;   /* input name ("input") */
    fkd_progress *progress; /* advanced by one per image; NULL for none */
} fkd_embed_config;

/* out (n, d) receives the raw embeddings of images 0..n−1 (mirrored when `flip`). */
fkd_status fkd_embed_images(const fkd_embed_config *config, int64_t n, fkd_image_source source, void *ctx,
                            bool flip, float *out);

/* The embedding size of config->embedding. */
fkd_status fkd_embed_dim(const fkd_embed_config *config, int *dim);

#endif
