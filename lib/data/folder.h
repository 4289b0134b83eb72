/* Image folders (one sub-folder per identity) and LFW-style pairs.txt lists.
 *
 * An identity's label is the index of its folder name in byte-wise sorted order; within a
 * folder, files ending in .jpg, .jpeg or .png (any case) are the images, sorted by name.
 * Hidden entries (starting with '.') are skipped.
 */
#ifndef FKD_DATA_FOLDER_H
#define FKD_DATA_FOLDER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/status.h"

typedef struct {
    char *root;
    int32_t n_identities;
    char **identity_names; /* (n_identities) sorted */
    int64_t n_images;
    char **paths;          /* (n_images) full paths, grouped by identity */
    int32_t *labels;       /* (n_images) */
} fkd_folder;

/* Scans root. An empty root, or one without any image, is an error naming it. */
fkd_status fkd_folder_open(fkd_folder *f, const char *root);
void fkd_folder_free(fkd_folder *f);

/* pairs.txt (LFW): a first line "folds pairs_per_fold" (or a single count), then lines
 * "name n" + "n1 n2" for a same pair ("name n1 n2") and "name1 n1 name2 n2" for a different
 * pair. Image j of `name` is <image_root>/<name>/<name>_%04d.jpg. Errors name the line. */
typedef struct {
    int64_t n_pairs;
    char **paths;  /* (2 n_pairs) */
    bool *issame;  /* (n_pairs) */
    int n_folds;   /* from the header line (1 when it holds a single count) */
} fkd_pairs;

fkd_status fkd_pairs_load(fkd_pairs *p, const char *pairs_txt, const char *image_root);
void fkd_pairs_free(fkd_pairs *p);

#endif
