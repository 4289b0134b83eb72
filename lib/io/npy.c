/* NumPy .npy reader and writer. Format reference: numpy/lib/format.py (NEP 1). */
#include "io/npy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/fileio.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "npy.c reads and writes little-endian data in place; port it for big-endian hosts"
#endif

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6
#define NPY_ALIGN 64
/* numpy >= 1.23 leaves room in the header so the first axis can grow in place. */
#define NPY_GROWTH_AXIS_MAX_DIGITS 21

static const struct {
    const char *descr;
    size_t itemsize;
} npy_types[FKD_NPY_DTYPE_COUNT] = {
    [FKD_NPY_F32] = {"<f4", 4},
    [FKD_NPY_F64] = {"<f8", 8},
    [FKD_NPY_I32] = {"<i4", 4},
    [FKD_NPY_I64] = {"<i8", 8},
};

const char *fkd_npy_descr(fkd_npy_dtype dtype)
{
    return (unsigned)dtype < FKD_NPY_DTYPE_COUNT ? npy_types[dtype].descr : "?";
}

size_t fkd_npy_itemsize(fkd_npy_dtype dtype)
{
    return (unsigned)dtype < FKD_NPY_DTYPE_COUNT ? npy_types[dtype].itemsize : 0;
}

/* ---- header parsing ------------------------------------------------------------------ */

/* A cursor over the header text; `base` is the file offset of text[0], so messages give
 * byte positions in the file. */
typedef struct {
    const char *name;
    const char *text;
    size_t len, pos, base;
} npy_cursor;

static fkd_status npy_garbage(const npy_cursor *c, const char *what)
{
    return FKD_FAIL(FKD_ERR_FORMAT, "%s: .npy header garbage at byte %zu: expected %s", c->name,
                    c->base + c->pos, what);
}

static void npy_skip_spaces(npy_cursor *c)
{
    while (c->pos < c->len && c->text[c->pos] == ' ') c->pos++;
}

static bool npy_accept(npy_cursor *c, char ch)
{
    npy_skip_spaces(c);
    if (c->pos < c->len && c->text[c->pos] == ch) {
        c->pos++;
        return true;
    }
    return false;
}

static fkd_status npy_expect(npy_cursor *c, char ch, const char *what)
{
    return npy_accept(c, ch) ? FKD_OK : npy_garbage(c, what);
}

/* A quoted Python string without escapes, copied into out (size cap). */
static fkd_status npy_string(npy_cursor *c, char *out, size_t cap)
{
    npy_skip_spaces(c);
    if (c->pos >= c->len || (c->text[c->pos] != '\'' && c->text[c->pos] != '"'))
        return npy_garbage(c, "a quoted string");
    char quote = c->text[c->pos++];
    size_t n = 0;
    while (c->pos < c->len && c->text[c->pos] != quote) {
        char ch = c->text[c->pos];
        if (ch == '\\' || ch == '\n' || n + 1 >= cap)
            return npy_garbage(c, "a short string without escapes");
        out[n++] = ch;
        c->pos++;
    }
    if (c->pos >= c->len) return npy_garbage(c, "a closing quote");
    c->pos++;
    out[n] = '\0';
    return FKD_OK;
}

static fkd_status npy_bool(npy_cursor *c, bool *out)
{
    npy_skip_spaces(c);
    const char *p = c->text + c->pos;
    size_t left = c->len - c->pos;
    if (left >= 4 && memcmp(p, "True", 4) == 0) {
        *out = true;
        c->pos += 4;
    } else if (left >= 5 && memcmp(p, "False", 5) == 0) {
        *out = false;
        c->pos += 5;
    } else {
        return npy_garbage(c, "True or False");
    }
    return FKD_OK;
}

/* A non-negative integer; Python 2 era files may write "3L". */
static fkd_status npy_int(npy_cursor *c, int64_t *out)
{
    npy_skip_spaces(c);
    if (c->pos >= c->len || c->text[c->pos] < '0' || c->text[c->pos] > '9')
        return npy_garbage(c, "a non-negative integer");
    int64_t v = 0;
    while (c->pos < c->len && c->text[c->pos] >= '0' && c->text[c->pos] <= '9') {
        int d = c->text[c->pos] - '0';
        if (v > (INT64_MAX - d) / 10) return npy_garbage(c, "a dimension that fits in 64 bits");
        v = v * 10 + d;
        c->pos++;
    }
    if (c->pos < c->len && c->text[c->pos] == 'L') c->pos++;
    *out = v;
    return FKD_OK;
}

/* "()", "(3,)", "(3, 4)", "(3, 4,)". A one-element tuple needs its comma, as in Python. */
static fkd_status npy_shape(npy_cursor *c, fkd_npy_info *info)
{
    FKD_TRY(npy_expect(c, '(', "'(' opening the shape tuple"));
    info->ndims = 0;
    bool comma = false;
    while (!npy_accept(c, ')')) {
        if (info->ndims == FKD_NPY_MAX_DIMS)
            return FKD_FAIL(FKD_ERR_UNSUPPORTED, "%s: .npy shape has more than %d dimensions",
                            c->name, FKD_NPY_MAX_DIMS);
        FKD_TRY(npy_int(c, &info->dims[info->ndims++]));
        comma = npy_accept(c, ',');
        if (!comma) {
            FKD_TRY(npy_expect(c, ')', "',' or ')' in the shape tuple"));
            break;
        }
    }
    if (info->ndims == 1 && !comma) return npy_garbage(c, "a tuple such as (3,) for a 1-D shape");
    return FKD_OK;
}

static fkd_status npy_descr(const npy_cursor *c, const char *descr, fkd_npy_dtype *dtype)
{
    for (int t = 0; t < FKD_NPY_DTYPE_COUNT; t++) {
        if (strcmp(descr, npy_types[t].descr) == 0) {
            *dtype = (fkd_npy_dtype)t;
            return FKD_OK;
        }
    }
    const char *hint =
        descr[0] == '>' ? " (big-endian: save with arr.astype(arr.dtype.newbyteorder('<')))" : "";
    return FKD_FAIL(FKD_ERR_UNSUPPORTED,
                    "%s: unsupported .npy dtype '%s'%s; supported: <f4 <f8 <i4 <i8", c->name, descr,
                    hint);
}

/* The dict: exactly the three keys, each once, in any order, optional trailing comma. */
static fkd_status npy_dict(npy_cursor *c, fkd_npy_info *info)
{
    enum { KEY_DESCR = 1, KEY_FORTRAN = 2, KEY_SHAPE = 4 };
    unsigned seen = 0;
    FKD_TRY(npy_expect(c, '{', "'{' opening the header dict"));
    while (!npy_accept(c, '}')) {
        char key[32], descr[32];
        FKD_TRY(npy_string(c, key, sizeof key));
        FKD_TRY(npy_expect(c, ':', "':' after a key"));
        unsigned bit;
        if (strcmp(key, "descr") == 0) {
            bit = KEY_DESCR;
            FKD_TRY(npy_string(c, descr, sizeof descr));
            FKD_TRY(npy_descr(c, descr, &info->dtype));
        } else if (strcmp(key, "fortran_order") == 0) {
            bit = KEY_FORTRAN;
            bool fortran = false;
            FKD_TRY(npy_bool(c, &fortran));
            if (fortran)
                return FKD_FAIL(FKD_ERR_UNSUPPORTED,
                                "%s: .npy array is in Fortran order; save it with "
                                "np.save(path, np.ascontiguousarray(a))",
                                c->name);
        } else if (strcmp(key, "shape") == 0) {
            bit = KEY_SHAPE;
            FKD_TRY(npy_shape(c, info));
        } else {
            return FKD_FAIL(FKD_ERR_FORMAT, "%s: .npy header has unknown key '%s'", c->name, key);
        }
        if (seen & bit)
            return FKD_FAIL(FKD_ERR_FORMAT, "%s: .npy header repeats key '%s'", c->name, key);
        seen |= bit;
        if (!npy_accept(c, ',')) {
            FKD_TRY(npy_expect(c, '}', "',' or '}' after a value"));
            break;
        }
    }
    if (seen != (KEY_DESCR | KEY_FORTRAN | KEY_SHAPE))
        return FKD_FAIL(FKD_ERR_FORMAT, "%s: .npy header lacks key '%s'", c->name,
                        !(seen & KEY_DESCR)     ? "descr"
                        : !(seen & KEY_FORTRAN) ? "fortran_order"
                                                : "shape");
    /* Only padding spaces may follow, then the final newline. */
    npy_skip_spaces(c);
    if (c->pos + 1 != c->len || c->text[c->pos] != '\n')
        return npy_garbage(c, "only spaces and a final newline after the dict");
    return FKD_OK;
}

/* Magic, version and header length: the first 10 (1.0) or 12 (2.0, 3.0) bytes. */
static fkd_status npy_preamble(const char *name, const uint8_t *buf, size_t len, fkd_npy_info *info,
                               size_t *prefix, size_t *hlen)
{
    if (len == 0) return FKD_FAIL(FKD_ERR_FORMAT, "%s: empty file, not a .npy array", name);
    size_t magic_have = len < NPY_MAGIC_LEN ? len : NPY_MAGIC_LEN;
    if (memcmp(buf, NPY_MAGIC, magic_have) != 0)
        return FKD_FAIL(FKD_ERR_FORMAT, "%s: bad magic: not a .npy file", name);
    if (len < 8)
        return FKD_FAIL(FKD_ERR_FORMAT, "%s: truncated .npy preamble (%zu bytes)", name, len);
    info->version_major = buf[6];
    info->version_minor = buf[7];
    size_t len_bytes;
    if (info->version_major == 1 && info->version_minor == 0)
        len_bytes = 2;
    else if ((info->version_major == 2 || info->version_major == 3) && info->version_minor == 0)
        len_bytes = 4;
    else
        return FKD_FAIL(FKD_ERR_UNSUPPORTED,
                        "%s: unsupported .npy format version %d.%d (1.0, 2.0, 3.0 are)", name,
                        info->version_major, info->version_minor);
    *prefix = 8 + len_bytes;
    if (len < *prefix)
        return FKD_FAIL(FKD_ERR_FORMAT, "%s: truncated .npy preamble (%zu bytes)", name, len);
    *hlen = (size_t)buf[8] | (size_t)buf[9] << 8;
    if (len_bytes == 4) *hlen |= (size_t)buf[10] << 16 | (size_t)buf[11] << 24;
    return FKD_OK;
}

fkd_status fkd_npy_parse_header(const char *name, const uint8_t *buf, size_t len,
                                fkd_npy_info *info)
{
    memset(info, 0, sizeof *info);
    size_t prefix, hlen;
    FKD_TRY(npy_preamble(name, buf, len, info, &prefix, &hlen));
    if (len - prefix < hlen)
        return FKD_FAIL(FKD_ERR_FORMAT, "%s: truncated .npy header: %zu of %zu bytes", name,
                        len - prefix, hlen);
    npy_cursor c = {name, (const char *)buf + prefix, hlen, 0, prefix};
    FKD_TRY(npy_dict(&c, info));
    info->data_offset = prefix + hlen;
    info->numel = 1;
    for (int d = 0; d < info->ndims; d++) {
        int64_t dim = info->dims[d];
        if (dim != 0 && info->numel > INT64_MAX / dim)
            return FKD_FAIL(FKD_ERR_FORMAT, "%s: .npy shape overflows 64 bits", name);
        info->numel *= dim;
    }
    return FKD_OK;
}

/* ---- reading ------------------------------------------------------------------------- */

/* Reads the preamble and header from an open file. */
static fkd_status npy_read_header(const char *path, FILE *fp, fkd_npy_info *info)
{
    uint8_t pre[12];
    size_t got = fread(pre, 1, sizeof pre, fp), prefix, hlen;
    memset(info, 0, sizeof *info);
    FKD_TRY(npy_preamble(path, pre, got, info, &prefix, &hlen));
    struct stat st;
    if (fstat(fileno(fp), &st) != 0)
        return FKD_FAIL(FKD_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    /* Check against the file size before allocating what a corrupt length asks for. */
    if ((uint64_t)st.st_size < prefix + (uint64_t)hlen)
        return FKD_FAIL(FKD_ERR_FORMAT, "%s: truncated .npy header: %llu of %zu bytes", path,
                        (unsigned long long)st.st_size - prefix, hlen);
    uint8_t *buf = malloc(prefix + hlen);
    if (!buf)
        return FKD_FAIL(FKD_ERR_NOMEM, "%s: cannot allocate a %zu-byte .npy header", path, hlen);
    size_t total = prefix + hlen, first = got < total ? got : total;
    memcpy(buf, pre, first);
    size_t have = first + (total > first ? fread(buf + first, 1, total - first, fp) : 0);
    fkd_status s = fkd_npy_parse_header(path, buf, have, info);
    free(buf);
    /* The 12-byte preamble read may have run past a short 1.0 header. */
    if (s == FKD_OK && fseek(fp, (long)info->data_offset, SEEK_SET) != 0)
        s = FKD_FAIL(FKD_ERR_IO, "%s: cannot seek to the .npy data: %s", path, strerror(errno));
    return s;
}

fkd_status fkd_npy_read_info(const char *path, fkd_npy_info *info)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return FKD_FAIL(FKD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    fkd_status s = npy_read_header(path, fp, info);
    fclose(fp);
    return s;
}

static bool npy_is_float(fkd_npy_dtype t) { return t == FKD_NPY_F32 || t == FKD_NPY_F64; }

/* Converts n elements; the combination was checked by the caller. */
static void npy_convert(fkd_npy_dtype from, const void *src, fkd_npy_dtype to, void *dst, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        switch (to) {
        case FKD_NPY_F32:
            ((float *)dst)[i] =
                from == FKD_NPY_F64 ? (float)((const double *)src)[i] : ((const float *)src)[i];
            break;
        case FKD_NPY_F64:
            ((double *)dst)[i] =
                from == FKD_NPY_F64 ? ((const double *)src)[i] : ((const float *)src)[i];
            break;
        default: /* FKD_NPY_I64 */
            ((int64_t *)dst)[i] =
                from == FKD_NPY_I64 ? ((const int64_t *)src)[i] : ((const int32_t *)src)[i];
            break;
        }
    }
}

/* Reads numel elements of the file's type from fp, converting to `want` into dst. */
static fkd_status npy_read_data(const char *path, FILE *fp, const fkd_npy_info *info,
                                fkd_npy_dtype want, void *dst)
{
    size_t in_size = fkd_npy_itemsize(info->dtype), out_size = fkd_npy_itemsize(want);
    size_t n = (size_t)info->numel;
    if (info->dtype == want) {
        if (fread(dst, in_size, n, fp) != n)
            return FKD_FAIL(FKD_ERR_IO, "%s: read error in .npy data", path);
        return FKD_OK;
    }
    enum { CHUNK = 8192 };
    uint64_t tmp[CHUNK]; /* 8-byte aligned for every element type */
    for (size_t done = 0; done < n;) {
        size_t k = n - done < CHUNK ? n - done : CHUNK;
        if (fread(tmp, in_size, k, fp) != k)
            return FKD_FAIL(FKD_ERR_IO, "%s: read error in .npy data", path);
        npy_convert(info->dtype, tmp, want, (uint8_t *)dst + done * out_size, k);
        done += k;
    }
    return FKD_OK;
}

fkd_status fkd_npy_read(const char *path, fkd_npy_dtype want, fkd_npy_array *out)
{
    memset(out, 0, sizeof *out);
    if (want != FKD_NPY_F32 && want != FKD_NPY_F64 && want != FKD_NPY_I64)
        return FKD_FAIL(FKD_ERR_ARG, "%s: .npy arrays load as float32, float64 or int64, not %s",
                        path, fkd_npy_descr(want));
    FILE *fp = fopen(path, "rb");
    if (!fp) return FKD_FAIL(FKD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    fkd_npy_info info;
    fkd_status s = npy_read_header(path, fp, &info);
    if (s != FKD_OK) goto fail_file;
    if (npy_is_float(info.dtype) != npy_is_float(want)) {
        s = FKD_FAIL(FKD_ERR_UNSUPPORTED, "%s: .npy dtype '%s' cannot load as %s (%s expected)",
                     path, fkd_npy_descr(info.dtype), fkd_npy_descr(want),
                     npy_is_float(want) ? "floats" : "integers");
        goto fail_file;
    }
    struct stat st;
    if (fstat(fileno(fp), &st) != 0) {
        s = FKD_FAIL(FKD_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        goto fail_file;
    }
    uint64_t file_data = (uint64_t)st.st_size - info.data_offset;
    size_t in_size = fkd_npy_itemsize(info.dtype);
    if ((uint64_t)info.numel > file_data / in_size || file_data != (uint64_t)info.numel * in_size) {
        s = (uint64_t)info.numel > file_data / in_size
                ? FKD_FAIL(FKD_ERR_FORMAT,
                           "%s: truncated .npy data: %llu bytes for %lld elements of %s", path,
                           (unsigned long long)file_data, (long long)info.numel,
                           fkd_npy_descr(info.dtype))
                : FKD_FAIL(FKD_ERR_FORMAT, "%s: %llu trailing bytes after the .npy data", path,
                           (unsigned long long)(file_data - (uint64_t)info.numel * in_size));
        goto fail_file;
    }
    /* Never malloc(0): an empty array still gets a valid pointer. */
    size_t bytes = (size_t)info.numel * fkd_npy_itemsize(want);
    void *data = malloc(bytes ? bytes : 1);
    if (!data) {
        s = FKD_FAIL(FKD_ERR_NOMEM, "%s: cannot allocate %zu bytes for the .npy data", path, bytes);
        goto fail_file;
    }
    s = npy_read_data(path, fp, &info, want, data);
    if (s != FKD_OK) {
        free(data);
        goto fail_file;
    }
    fclose(fp);
    out->info = info;
    out->dtype = want;
    out->data = data;
    return FKD_OK;
fail_file:
    fclose(fp);
    return s;
}

void fkd_npy_free(fkd_npy_array *a)
{
    if (!a) return;
    free(a->data);
    memset(a, 0, sizeof *a);
}

/* ---- writing ------------------------------------------------------------------------- */

fkd_status fkd_npy_write(const char *path, fkd_npy_dtype dtype, const void *data, int ndims,
                         const int64_t *dims)
{
    if ((unsigned)dtype >= FKD_NPY_DTYPE_COUNT)
        return FKD_FAIL(FKD_ERR_ARG, "%s: unknown .npy element type %d", path, (int)dtype);
    if (ndims < 0 || ndims > FKD_NPY_MAX_DIMS)
        return FKD_FAIL(FKD_ERR_ARG, "%s: %d dimensions (0..%d allowed)", path, ndims,
                        FKD_NPY_MAX_DIMS);
    /* The dict as numpy writes it, so files are byte-identical to np.save's. */
    char header[512], shape[FKD_NPY_MAX_DIMS * 22 + 4] = "";
    size_t sl = 0;
    int64_t numel = 1;
    for (int d = 0; d < ndims; d++) {
        if (dims[d] < 0)
            return FKD_FAIL(FKD_ERR_ARG, "%s: negative dimension %lld", path, (long long)dims[d]);
        if (dims[d] != 0 && numel > INT64_MAX / dims[d])
            return FKD_FAIL(FKD_ERR_ARG, "%s: shape overflows 64 bits", path);
        numel *= dims[d];
        sl += (size_t)snprintf(shape + sl, sizeof shape - sl, d ? ", %lld" : "%lld",
                               (long long)dims[d]);
    }
    if (ndims == 1) shape[sl++] = ',', shape[sl] = '\0';
    int hl =
        snprintf(header, sizeof header, "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }",
                 npy_types[dtype].descr, shape);
    size_t h = (size_t)hl;
    if (ndims > 0) {
        int first_digits = snprintf(NULL, 0, "%lld", (long long)dims[0]);
        for (int i = first_digits; i < NPY_GROWTH_AXIS_MAX_DIGITS; i++) header[h++] = ' ';
    }
    /* Pad with spaces so magic(6) + version(2) + length(2) + header + '\n' is a multiple
     * of 64; numpy adds a full 64 when it already is. */
    size_t pad = NPY_ALIGN - (10 + h + 1) % NPY_ALIGN;
    memset(header + h, ' ', pad);
    h += pad;
    header[h++] = '\n';
    uint8_t pre[10];
    memcpy(pre, NPY_MAGIC, NPY_MAGIC_LEN);
    pre[6] = 1;
    pre[7] = 0;
    pre[8] = (uint8_t)(h & 0xff);
    pre[9] = (uint8_t)(h >> 8);

    fkd_atomic_file f;
    FKD_TRY(fkd_atomic_open(&f, path));
    size_t n = (size_t)numel, item = npy_types[dtype].itemsize;
    if (fwrite(pre, 1, sizeof pre, f.fp) != sizeof pre || fwrite(header, 1, h, f.fp) != h ||
        (n && fwrite(data, item, n, f.fp) != n)) {
        fkd_status s = FKD_FAIL(FKD_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        fkd_atomic_abort(&f);
        return s;
    }
    return fkd_atomic_commit(&f);
}
