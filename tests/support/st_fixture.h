/* Test support: reads the F32 tensors of a safetensors fixture written by scripts/
 * (8-byte little-endian header length, JSON header, raw data). Only what the fixtures
 * use; facekd's own safetensors reader lives in lib/io on another branch. */
#ifndef FKD_TESTS_ST_FIXTURE_H
#define FKD_TESTS_ST_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct {
    char *path;
    uint8_t *file;
    size_t size;
    char *header;     /* NUL-terminated copy of the JSON header */
    const uint8_t *data;
    size_t data_size;
} fkd_test_st;

fkd_status fkd_test_st_open(fkd_test_st *st, const char *path);
/* Finds F32 tensor `name`; *data points into the file (valid until close). `dims` (may
 * be NULL) receives up to 4 dimensions, *ndims their count. */
fkd_status fkd_test_st_get(const fkd_test_st *st, const char *name, const float **data,
                           int64_t *numel);
fkd_status fkd_test_st_shape(const fkd_test_st *st, const char *name, int *ndims, int64_t dims[4]);
/* True when the fixture holds a tensor of that name. */
int fkd_test_st_has(const fkd_test_st *st, const char *name);
void fkd_test_st_close(fkd_test_st *st);

#endif
