/* A small reader for the safetensors fixtures written by scripts/gen_heads_fixtures.py
 * (facekd's own safetensors reader lives on another branch). F64 and I64 tensors only;
 * the header is trusted (the files are ours). */
#ifndef FKD_TESTS_HEADS_FIXTURE_H
#define FKD_TESTS_HEADS_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint8_t *file;
    size_t size;
    char *header;  /* NUL-terminated JSON header */
    size_t data0;  /* offset of the data block in file */
    char *meta;    /* copy of the header cut into metadata strings */
} heads_fx;

/* 0 on success. */
int heads_fx_open(heads_fx *f, const char *path);
void heads_fx_close(heads_fx *f);
/* Pointer into the file for an F64 tensor (NULL if absent); *numel set when not NULL. */
const double *heads_fx_f64(const heads_fx *f, const char *name, int64_t *numel);
/* An I64 tensor converted into `out` (up to max values); returns the count, -1 if absent. */
int heads_fx_i64(const heads_fx *f, const char *name, int *out, int max);
/* The __metadata__ string pairs: fills keys/values (pointers into static storage of `f`,
 * valid until close); returns the count. */
int heads_fx_meta(heads_fx *f, const char **keys, const char **values, int max);

/* ‖a − b‖ / ‖b‖ (the norm of b floored at 1e-12). */
double heads_rel_err(const double *a, const double *b, size_t n);
/* cmocka assertion: status FKD_ERR_ARG and exactly this last-error message. */
void heads_expect_error(int status, const char *message);

#endif
