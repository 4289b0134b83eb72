/* Test helpers for the data tests: temporary directories, small files, test images. */
#ifndef FKD_TESTS_SUPPORT_DATA_FILES_H
#define FKD_TESTS_SUPPORT_DATA_FILES_H

#include <stddef.h>
#include <stdint.h>

#include "data/image.h"

/* A fresh directory under $TMPDIR (or /tmp); the returned path is malloc'ed. */
char *fkd_test_tmpdir(const char *tag);
/* "<dir>/<name>" in a static rotating buffer (valid for the next 7 calls). */
const char *fkd_test_path(const char *dir, const char *name);
/* Writes bytes to a file; returns 0 on success. */
int fkd_test_write(const char *path, const void *data, size_t size);
/* An RGB w x h image whose pixels depend on `seed` (smooth, JPEG-friendly). */
fkd_image fkd_test_image(int w, int h, int seed);
/* Removes a directory tree made by a test (paths under the temporary directory only). */
void fkd_test_rmtree(const char *dir);

#endif
