/* The loader: worker threads decode (or render), flip and normalise the next batches into
 * a ring while the engine computes.
 *
 * Every batch is a pure function of (seed, rank, world, step): which images it holds, the
 * order and the flips come from counter-based random streams, and workers fill whole
 * batches into ring slots that the consumer takes in step order, so the result does not
 * depend on the number of threads or on their timing.
 *
 * Samplers:
 *   SHUFFLE     each epoch a permutation of all images (seeded by seed and epoch); the
 *               epoch's global batches of world*batch images are cut in order and rank r
 *               takes the r-th slice of each; the incomplete tail is dropped. N ranks x
 *               batch B get the images and flips of one process x batch N*B.
 *   PK          P identities x K images per batch: each epoch a permutation of the
 *               identities; each global step takes world*P of them, rank r the r-th P;
 *               K images of each, drawn without replacement (with replacement when an
 *               identity has fewer than K). Batch size = P*K.
 *   SEQUENTIAL  images in index order, every image once per epoch, rank r takes every
 *               world-th batch; the last batch of an epoch may be short. No flips.
 */
#ifndef FKD_DATA_LOADER_H
#define FKD_DATA_LOADER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/status.h"
#include "data/dataset.h"

typedef enum { FKD_SAMPLER_SHUFFLE = 0, FKD_SAMPLER_PK, FKD_SAMPLER_SEQUENTIAL } fkd_sampler_kind;

typedef struct {
    fkd_sampler_kind sampler;
    int batch_size;       /* SHUFFLE and SEQUENTIAL */
    int p_identities;     /* PK */
    int k_images;         /* PK */
    uint64_t seed;
    int rank, world;      /* sharding (MPI); 0 and 1 on one process */
    bool flip;            /* random horizontal flip with probability 1/2 */
    bool resize;          /* bilinear resize of images that are not 112x112 (else error) */
    int workers;          /* prefetch threads, >= 1 */
    int depth;            /* batches in the ring, >= workers */
    int64_t start_step;   /* first step to deliver (a resumed run continues its sequence) */
} fkd_loader_options;

/* batch_size 64, SHUFFLE, seed 0, rank 0 of 1, flip on, resize off, 2 workers, depth 4. */
void fkd_loader_options_default(fkd_loader_options *o);

typedef struct {
    int n;            /* images in this batch (== batch size except a short SEQUENTIAL tail) */
    float *images;    /* (n, 3, 112, 112) */
    int32_t *labels;  /* (n) */
    int64_t *indices; /* (n) dataset indices */
    uint8_t *flipped; /* (n) 1 when mirrored */
    int64_t step;     /* this rank's step since the start, from 0 */
    int64_t epoch;
} fkd_batch;

typedef struct fkd_loader fkd_loader;

/* Validates the options against the dataset and starts the workers. The dataset must
 * outlive the loader. */
fkd_status fkd_loader_create(fkd_loader **out, const fkd_dataset *ds, const fkd_loader_options *o);
/* Waits for the next batch; it stays valid until the next call or fkd_loader_free. A
 * worker's error comes back here with its message (file, record) and stops the loader. */
fkd_status fkd_loader_next(fkd_loader *l, const fkd_batch **batch);
/* Batches per epoch for this rank. */
int64_t fkd_loader_steps_per_epoch(const fkd_loader *l);
int fkd_loader_batch_size(const fkd_loader *l);
/* Stops and joins the workers; safe on NULL. */
void fkd_loader_free(fkd_loader *l);

#endif
