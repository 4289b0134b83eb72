/* Datasets: a table of functions the loader reads images and labels through.
 *
 * An implementation fills an fkd_dataset_ops table and an fkd_dataset (ops + its own state
 * in `impl`). Every function may be called from several loader threads at once, so `load`
 * must be thread-safe (read-only state, or its own locking). Implementations here: image
 * folders and insightface RecordIO; the synthetic face world plugs in the same way:
 *
 *   static fkd_status synth_load(const fkd_dataset *ds, int64_t i, fkd_image *out) {
 *       render image i of ds->impl into out (RGB 112x112, out->pixels malloc'ed) }
 *   static const fkd_dataset_ops synth_ops = {"synth", synth_count, synth_label,
 *                                             synth_identities, synth_load, synth_free};
 */
#ifndef FKD_DATA_DATASET_H
#define FKD_DATA_DATASET_H

#include <stdbool.h>
#include <stdint.h>

#include "core/status.h"
#include "data/image.h"

#define FKD_FACE_SIZE 112

typedef struct fkd_dataset fkd_dataset;

typedef struct {
    const char *name; /* "folder", "recordio", "synth" */
    int64_t (*count)(const fkd_dataset *ds);
    int32_t (*label)(const fkd_dataset *ds, int64_t i);  /* in [0, identities) */
    int32_t (*identities)(const fkd_dataset *ds);
    /* Image i as RGB; out->pixels is allocated by the callee and freed by the caller
     * with fkd_image_free. Errors name the file and the record. */
    fkd_status (*load)(const fkd_dataset *ds, int64_t i, fkd_image *out);
    void (*free)(fkd_dataset *ds); /* frees impl; optional (NULL: nothing to free) */
} fkd_dataset_ops;

struct fkd_dataset {
    const fkd_dataset_ops *ops;
    void *impl;
    char *source; /* what was opened (path, "synth"), for messages; owned */
};

/* Opens a folder (a directory) or a RecordIO file (path ending in .rec; its .idx beside). */
fkd_status fkd_dataset_open(fkd_dataset *ds, const char *path);
fkd_status fkd_dataset_open_folder(fkd_dataset *ds, const char *root);
fkd_status fkd_dataset_open_recordio(fkd_dataset *ds, const char *rec_path, const char *idx_path);
/* Frees impl through ops->free and the source string; safe on a zeroed dataset. */
void fkd_dataset_free(fkd_dataset *ds);

/* Loads image i into a (3, 112, 112) float slot: RGB, (x - 127.5) / 127.5, mirrored left
 * to right when `flip`. An image of another size is an error unless `resize` (bilinear). */
fkd_status fkd_dataset_load_nchw(const fkd_dataset *ds, int64_t i, bool flip, bool resize, float *slot);

/* Converts an RGB image (any size when resize, else 112x112) to the normalised NCHW slot.
 * `what` names the image in errors. */
fkd_status fkd_image_to_nchw(const fkd_image *img, bool flip, bool resize, const char *what, float *slot);

#endif
