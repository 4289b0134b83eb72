/* safetensors: the checkpoint format of facekd (and of Hugging Face, and what scripts/
 * writes for arcface_torch weights).
 *
 * A file is: 8 bytes little-endian header length N, N bytes of JSON, then the raw data.
 * The JSON header is one object: "__metadata__" (optional) maps strings to strings;
 * every other key names a tensor {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}
 * with offsets relative to the start of the data section.
 *
 * Reading is strict: the header is parsed by facekd's own JSON reader; every error names
 * the file and the byte offset (from the start of the file) or the tensor. Offsets must
 * lie inside the data section, not overlap, and span exactly numel × dtype size.
 * Floating dtypes (F32, F16, BF16, F64) convert to fp32 on read; I64 (PyTorch's
 * num_batches_tracked) is accepted and converts too.
 */
#ifndef FKD_IO_SAFETENSORS_H
#define FKD_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define FKD_ST_MAX_DIMS 8
/* Headers larger than this are rejected before allocation (safetensors' own limit). */
#define FKD_ST_MAX_HEADER (100u << 20)

typedef enum { FKD_ST_F32 = 0, FKD_ST_F16, FKD_ST_BF16, FKD_ST_F64, FKD_ST_I64, FKD_ST_DTYPE_COUNT } fkd_st_dtype;

/* "F32", "F16", ... */
const char *fkd_st_dtype_name(fkd_st_dtype dtype);
size_t fkd_st_dtype_size(fkd_st_dtype dtype);

typedef struct {
    char *name;
    fkd_st_dtype dtype;
    int ndims;                      /* 0 for a scalar */
    int64_t dims[FKD_ST_MAX_DIMS];
    int64_t numel;
    const uint8_t *data;            /* raw little-endian bytes inside the file buffer */
    size_t nbytes;
} fkd_st_tensor;

typedef struct {
    char *key;
    char *value;
} fkd_st_meta;

typedef struct {
    char *path;          /* for messages */
    uint8_t *buf;        /* whole file, owned */
    size_t size;
    fkd_st_tensor *tensors; /* in header order */
    int count;
    fkd_st_meta *meta;
    int meta_count;
} fkd_safetensors;

/* Reads and validates `path`. On failure *st is left empty (free is still safe). */
fkd_status fkd_safetensors_read(fkd_safetensors *st, const char *path);
/* Same on bytes already in memory: takes ownership of `buf` (malloc'ed, size bytes) in
 * all cases; `path` only names the source in messages. */
fkd_status fkd_safetensors_parse(fkd_safetensors *st, const char *path, uint8_t *buf, size_t size);
void fkd_safetensors_free(fkd_safetensors *st);

/* NULL when absent (no error recorded). */
const fkd_st_tensor *fkd_safetensors_find(const fkd_safetensors *st, const char *name);
const char *fkd_safetensors_meta(const fkd_safetensors *st, const char *key);

/* Converts a tensor to fp32 (numel floats in `out`). */
void fkd_st_tensor_to_f32(const fkd_st_tensor *t, float *out);

/* ---- writing ------------------------------------------------------------------------ */
typedef struct {
    const char *name;
    fkd_st_dtype dtype;
    int ndims;
    const int64_t *dims;
    const void *data;    /* numel × dtype size bytes, host (little-endian) order */
} fkd_st_entry;

/* Writes the tensors in the order given (data contiguous, header padded with spaces to a
 * multiple of 8) and the metadata, atomically. Names must be unique and non-empty. */
fkd_status fkd_safetensors_write(const char *path, const fkd_st_entry *entries, int count,
                                 const fkd_st_meta *meta, int meta_count);

#endif
