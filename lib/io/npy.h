/* NumPy .npy arrays: read (format 1.0, 2.0, 3.0) and write (1.0).
 *
 * A .npy file is the magic "\x93NUMPY", a version (major, minor byte), the header length
 * (uint16 little-endian in 1.0, uint32 in 2.0 and 3.0), an ASCII (3.0: UTF-8) Python dict
 * literal padded with spaces and ended by '\n', then the raw data in C order:
 *
 *     {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
 *
 * The reader is strict: exactly the keys descr, fortran_order and shape; descr one of
 * '<f4' '<f8' '<i4' '<i8'; fortran_order False (a Fortran-ordered array is refused with
 * a message saying how to fix it); shape a tuple of non-negative integers; the data exactly
 * numel × itemsize bytes. Float files convert to float or double, integer files to int64
 * (labels); nothing converts between floats and integers. Every error names the file and
 * the problem (bad magic, truncated, unsupported dtype, header garbage at byte N).
 *
 * The writer emits version 1.0, little-endian, C order, with the header padded so the
 * data starts on a 64-byte boundary (what numpy itself writes), atomically through
 * lib/core/fileio.h. Assumes a little-endian host (checked at compile time).
 */
#ifndef FKD_IO_NPY_H
#define FKD_IO_NPY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define FKD_NPY_MAX_DIMS 8

/* Element types: in a file (descr) and in memory. */
typedef enum {
    FKD_NPY_F32 = 0,
    FKD_NPY_F64,
    FKD_NPY_I32,
    FKD_NPY_I64,
    FKD_NPY_DTYPE_COUNT
} fkd_npy_dtype;

/* "<f4", "<f8", "<i4", "<i8". */
const char *fkd_npy_descr(fkd_npy_dtype dtype);
size_t fkd_npy_itemsize(fkd_npy_dtype dtype);

/* What a header says. */
typedef struct {
    int version_major, version_minor;
    fkd_npy_dtype dtype; /* type stored in the file */
    int ndims;           /* 0 for a scalar */
    int64_t dims[FKD_NPY_MAX_DIMS];
    int64_t numel;      /* product of dims (1 for a scalar) */
    size_t data_offset; /* bytes before the data */
} fkd_npy_info;

/* An array in memory. `data` is malloc'ed and owned by the array: fkd_npy_free(). */
typedef struct {
    fkd_npy_info info;   /* as in the file (info.dtype is the file's type) */
    fkd_npy_dtype dtype; /* type of `data` */
    void *data;          /* numel elements of `dtype`, C order */
} fkd_npy_array;

/* Parses the preamble and header at the start of `buf` (`len` bytes, at least the whole
 * header). `name` is used in error messages. Does not look at the data. */
fkd_status fkd_npy_parse_header(const char *name, const uint8_t *buf, size_t len,
                                fkd_npy_info *info);

/* Reads only the header of `path`. */
fkd_status fkd_npy_read_info(const char *path, fkd_npy_info *info);

/* Reads `path` into out->data as `want` (F32, F64 or I64). Converts <f4/<f8 to F32/F64
 * and <i4/<i8 to I64; any other combination is FKD_ERR_UNSUPPORTED. On failure *out is
 * zeroed and owns nothing. */
fkd_status fkd_npy_read(const char *path, fkd_npy_dtype want, fkd_npy_array *out);

/* Frees out->data; safe on a zeroed array. */
void fkd_npy_free(fkd_npy_array *a);

/* Writes `data` (numel elements of `dtype`: F32, F64, I32 or I64, C order) with shape
 * dims[0..ndims) to `path` as .npy 1.0, atomically. ndims 0 writes a scalar. */
fkd_status fkd_npy_write(const char *path, fkd_npy_dtype dtype, const void *data, int ndims,
                         const int64_t *dims);

#endif
