/* Test helpers for training runs: a tiny verification benchmark rendered from the
 * synthetic world, recipe files, CSV columns and tensor-by-tensor file comparison. */
#ifndef FKD_TESTS_SUPPORT_TRAIN_FIXTURE_H
#define FKD_TESTS_SUPPORT_TRAIN_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* Writes an insightface-style .bin of `n_pairs` rendered synthetic pairs (PNG), same and
 * different pairs alternating, so that each of the protocol's 10 folds holds both kinds
 * when n_pairs is a multiple of 20. Identities come from the held-out range of world
 * `seed`, never from its training identities. */
fkd_status fkd_test_write_synth_bin(const char *path, uint64_t seed, int n_pairs);

/* Writes `text` to dir/name; the full path goes to `path` (size >= 4096). 0 on success. */
int fkd_test_write_text(char *path, const char *dir, const char *name, const char *text);

/* Column `name` of a numeric CSV file (malloc'ed in *values); the row count, or -1 (with
 * the reason in fkd_last_error()) when the file or column is missing. */
int fkd_test_csv_column(const char *path, const char *name, double **values);

/* Compares every tensor of two safetensors files (names, shapes and values as fp32), or
 * only the tensor named `only` when it is not NULL.
 * Returns the largest absolute difference (0 for identical files) and names the tensor
 * where it occurs in `worst`; -1 when the files cannot be read or their tensors differ in
 * name or shape (the reason in `worst`). */
double fkd_test_safetensors_diff(const char *a, const char *b, const char *only, char *worst, size_t worst_size);

/* Mean of values[from, to) (a CSV column's first or last rows, to see a loss fall). */
double fkd_test_mean(const double *values, int from, int to);

/* 1 when `path` exists and is not empty. */
int fkd_test_file_nonempty(const char *path);

#endif
