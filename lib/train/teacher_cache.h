/* The teacher cache: the teacher's embedding of every training image and of its mirror,
 * computed once into a memory-mapped file and read back by dataset index on every step.
 *
 * Used when a distillation recipe's methods read only the teacher's embedding (and the
 * logits recomputed from it and the teacher's centres) and augmentation is the flip alone:
 * then the teacher's output for a batch is a function of (image, flip) and need not be
 * recomputed. The file is keyed by a hash of the teacher file's bytes, the dataset (source,
 * size), the preprocessing (resize) and the precision: any change gives another file, never
 * stale rows.
 *
 * File layout ("<cache_dir>/teacher-<key>.f32"): a 64-byte header
 *   "FKDTCACH" | uint64 key | int64 images | int64 dim | 32 bytes zero
 * then float32 rows [images][2][dim] (index 0 plain, 1 mirrored). */
#ifndef FKD_TRAIN_TEACHER_CACHE_H
#define FKD_TRAIN_TEACHER_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "data/dataset.h"
#include "nn/graph.h"

typedef struct fkd_teacher_cache fkd_teacher_cache;

/* Opens the cache for (teacher file, dataset, resize, the teacher graph's precision) in
 * `cache_dir`, computing it with the teacher graph `g` (embedding value `emb`, input
 * "input") when it does not exist. *hit tells whether an existing file was used. */
fkd_status fkd_teacher_cache_open(fkd_teacher_cache **out, const char *cache_dir, const char *teacher_path,
                                  const fkd_dataset *ds, bool resize, fkd_precision precision, fkd_graph *g,
                                  fkd_value emb, bool *hit);
void fkd_teacher_cache_close(fkd_teacher_cache *c);

/* Rows of the cached embeddings for dataset indices (n), mirrored where flipped[i]:
 * out (n, dim). */
fkd_status fkd_teacher_cache_read(const fkd_teacher_cache *c, const int64_t *indices, const uint8_t *flipped, int n,
                                  float *out);
/* The cache file's path. */
const char *fkd_teacher_cache_path(const fkd_teacher_cache *c);

#endif
