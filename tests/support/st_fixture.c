#include "st_fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"

fkd_status fkd_test_st_open(fkd_test_st *st, const char *path)
{
    memset(st, 0, sizeof *st);
    st->path = strdup(path);
    if (!st->path) return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", path);
    FKD_TRY(fkd_file_read_all(path, &st->file, &st->size));
    if (st->size < 8) return FKD_FAIL(FKD_ERR_FORMAT, "%s: %zu bytes, too short for a header", path, st->size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | st->file[i];
    if (hlen > st->size - 8)
        return FKD_FAIL(FKD_ERR_FORMAT, "%s: header length %llu past the end of the file", path,
                        (unsigned long long)hlen);
    if ((8 + hlen) % 4)
        return FKD_FAIL(FKD_ERR_FORMAT, "%s: header length %llu leaves the data unaligned", path,
                        (unsigned long long)hlen);
    st->header = malloc(hlen + 1);
    if (!st->header) return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", path);
    memcpy(st->header, st->file + 8, hlen);
    st->header[hlen] = '\0';
    st->data = st->file + 8 + hlen;
    st->data_size = st->size - 8 - hlen;
    return FKD_OK;
}

/* The JSON object of tensor `name` ("{...}"), or NULL. */
static const char *entry(const fkd_test_st *st, const char *name, const char **end)
{
    char key[256];
    snprintf(key, sizeof key, "\"%s\":{", name);
    const char *p = strstr(st->header, key);
    if (!p) return NULL;
    p += strlen(key) - 1;
    *end = strchr(p, '}');
    return *end ? p : NULL;
}

int fkd_test_st_has(const fkd_test_st *st, const char *name)
{
    const char *end;
    return entry(st, name, &end) != NULL;
}

fkd_status fkd_test_st_get(const fkd_test_st *st, const char *name, const float **data,
                           int64_t *numel)
{
    const char *end, *p = entry(st, name, &end);
    if (!p) return FKD_FAIL(FKD_ERR_NOTFOUND, "%s: no tensor '%s'", st->path, name);
    const char *dt = strstr(p, "\"dtype\":\"F32\"");
    const char *sh = strstr(p, "\"shape\":[");
    const char *off = strstr(p, "\"data_offsets\":[");
    if (!dt || dt > end || !sh || sh > end || !off || off > end)
        return FKD_FAIL(FKD_ERR_FORMAT, "%s: tensor '%s': not an F32 entry with shape and offsets",
                        st->path, name);
    int nd;
    int64_t dims[4];
    FKD_TRY(fkd_test_st_shape(st, name, &nd, dims));
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= dims[i];
    char *next;
    long long b = strtoll(off + 16, &next, 10);
    long long e = *next == ',' ? strtoll(next + 1, &next, 10) : -1;
    if (b < 0 || e < b || (size_t)e > st->data_size || (e - b) != n * 4 || b % 4)
        return FKD_FAIL(FKD_ERR_FORMAT, "%s: tensor '%s': offsets [%lld, %lld] do not match %lld floats",
                        st->path, name, b, e, (long long)n);
    *data = (const float *)(const void *)(st->data + b);
    *numel = n;
    return FKD_OK;
}

fkd_status fkd_test_st_shape(const fkd_test_st *st, const char *name, int *ndims, int64_t dims[4])
{
    const char *end, *p = entry(st, name, &end);
    if (!p) return FKD_FAIL(FKD_ERR_NOTFOUND, "%s: no tensor '%s'", st->path, name);
    const char *sh = strstr(p, "\"shape\":[");
    if (!sh || sh > end) return FKD_FAIL(FKD_ERR_FORMAT, "%s: tensor '%s': no shape", st->path, name);
    *ndims = 0;
    for (const char *q = sh + 9; *q && *q != ']';) {
        char *next;
        long long d = strtoll(q, &next, 10);
        if (next == q || d < 0 || *ndims == 4)
            return FKD_FAIL(FKD_ERR_FORMAT, "%s: tensor '%s': bad shape", st->path, name);
        dims[(*ndims)++] = d;
        q = next;
        if (*q == ',') q++;
    }
    return FKD_OK;
}

void fkd_test_st_close(fkd_test_st *st)
{
    free(st->path);
    free(st->file);
    free(st->header);
    memset(st, 0, sizeof *st);
}
