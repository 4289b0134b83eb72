/* Safetensors fixture reader for the heads tests (see heads_fixture.h). */
#include "tests/support/heads_fixture.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "core/status.h"

int heads_fx_open(heads_fx *f, const char *path)
{
    memset(f, 0, sizeof *f);
    if (fkd_file_read_all(path, &f->file, &f->size) != FKD_OK || f->size < 8) return -1;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | f->file[i];
    if (n > f->size - 8) return -1;
    f->header = malloc(n + 1);
    if (!f->header) return -1;
    memcpy(f->header, f->file + 8, n);
    f->header[n] = '\0';
    f->data0 = 8 + n;
    return 0;
}

void heads_fx_close(heads_fx *f)
{
    free(f->file);
    free(f->header);
    free(f->meta);
    memset(f, 0, sizeof *f);
}

/* Finds "name":{ and returns the dtype, numel and byte offset of its data. */
static int find_tensor(const heads_fx *f, const char *name, char dtype[8], int64_t *numel, size_t *begin)
{
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\":{", name);
    const char *p = strstr(f->header, pat);
    if (!p) return -1;
    const char *dt = strstr(p, "\"dtype\":\""), *sh = strstr(p, "\"shape\":["), *of = strstr(p, "\"data_offsets\":[");
    if (!dt || !sh || !of) return -1;
    sscanf(dt + 9, "%7[A-Z0-9]", dtype);
    int64_t n = 1;
    const char *s = sh + 9;
    while (*s && *s != ']') {
        char *end;
        long long v = strtoll(s, &end, 10);
        if (end == s) break;
        n *= v;
        s = *end == ',' ? end + 1 : end;
    }
    long long b0 = strtoll(of + 16, NULL, 10);
    *numel = n;
    *begin = f->data0 + (size_t)b0;
    return 0;
}

const double *heads_fx_f64(const heads_fx *f, const char *name, int64_t *numel)
{
    char dtype[8] = "";
    int64_t n;
    size_t begin;
    if (find_tensor(f, name, dtype, &n, &begin) || strcmp(dtype, "F64") || begin + 8 * n > f->size) return NULL;
    if (numel) *numel = n;
    return (const double *)(f->file + begin);
}

int heads_fx_i64(const heads_fx *f, const char *name, int *out, int max)
{
    char dtype[8] = "";
    int64_t n;
    size_t begin;
    if (find_tensor(f, name, dtype, &n, &begin) || strcmp(dtype, "I64") || begin + 8 * n > f->size) return -1;
    for (int64_t i = 0; i < n && i < max; i++) {
        int64_t v;
        memcpy(&v, f->file + begin + 8 * i, 8);
        out[i] = (int)v;
    }
    return (int)n;
}

int heads_fx_meta(heads_fx *f, const char **keys, const char **values, int max)
{
    free(f->meta);
    f->meta = strdup(f->header);
    char *p = f->meta ? strstr(f->meta, "\"__metadata__\":{") : NULL;
    if (!p) return 0;
    p += 16;
    int n = 0;
    /* {"k":"v","k":"v"}: cut the strings in place in the copy. */
    while (n < max && *p == '"') {
        char *k = p + 1, *ke = strchr(k, '"');
        if (!ke || ke[1] != ':' || ke[2] != '"') break;
        char *v = ke + 3, *ve = strchr(v, '"');
        if (!ve) break;
        *ke = *ve = '\0';
        keys[n] = k;
        values[n++] = v;
        p = ve + 1;
        if (*p == ',') p++;
    }
    return n;
}

double heads_rel_err(const double *a, const double *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) num += (a[i] - b[i]) * (a[i] - b[i]), den += b[i] * b[i];
    return sqrt(num) / fmax(sqrt(den), 1e-12);
}

void heads_expect_error(int status, const char *message)
{
    assert_int_equal(status, FKD_ERR_ARG);
    if (strcmp(fkd_last_error(), message)) fprintf(stderr, "got: %s\n", fkd_last_error());
    assert_string_equal(fkd_last_error(), message);
}
