#include "io/safetensors.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>

#include "core/fileio.h"

static const struct {
    const char *name;
    size_t size;
} dtype_table[] = {
    [FKD_ST_F32] = {"F32", 4}, [FKD_ST_F16] = {"F16", 2}, [FKD_ST_BF16] = {"BF16", 2},
    [FKD_ST_F64] = {"F64", 8}, [FKD_ST_I64] = {"I64", 8},
};
_Static_assert(sizeof dtype_table / sizeof dtype_table[0] == FKD_ST_DTYPE_COUNT, "dtype table");

const char *fkd_st_dtype_name(fkd_st_dtype dtype)
{
    return (unsigned)dtype < FKD_ST_DTYPE_COUNT ? dtype_table[dtype].name : "?";
}

size_t fkd_st_dtype_size(fkd_st_dtype dtype)
{
    return (unsigned)dtype < FKD_ST_DTYPE_COUNT ? dtype_table[dtype].size : 0;
}

/* ---- header JSON ---------------------------------------------------------------------
 * A strict recursive-descent reader for exactly the safetensors header schema; no
 * general JSON tree. `base` is the header's offset in the file so messages give file
 * offsets. */
typedef struct {
    const char *path;
    const char *s;
    size_t n, pos, base;
} json_reader;

static fkd_status json_error(const json_reader *r, const char *what)
{
    return FKD_FAIL(FKD_ERR_FORMAT, "%s: header byte %zu: %s", r->path, r->base + r->pos, what);
}

static void json_skip_ws(json_reader *r)
{
    while (r->pos < r->n && (r->s[r->pos] == ' ' || r->s[r->pos] == '\t' || r->s[r->pos] == '\n' ||
                             r->s[r->pos] == '\r'))
        r->pos++;
}

/* Skips whitespace, then consumes `c` or fails. */
static fkd_status json_expect(json_reader *r, char c)
{
    json_skip_ws(r);
    if (r->pos >= r->n || r->s[r->pos] != c) {
        char msg[32];
        snprintf(msg, sizeof msg, "expected '%c'", c);
        return json_error(r, msg);
    }
    r->pos++;
    return FKD_OK;
}

/* After an element: true when ',' follows (more elements), false at `close`. */
static fkd_status json_next(json_reader *r, char close, bool *more)
{
    json_skip_ws(r);
    if (r->pos < r->n && r->s[r->pos] == ',') {
        r->pos++;
        *more = true;
        return FKD_OK;
    }
    if (r->pos < r->n && r->s[r->pos] == close) {
        r->pos++;
        *more = false;
        return FKD_OK;
    }
    char msg[40];
    snprintf(msg, sizeof msg, "expected ',' or '%c'", close);
    return json_error(r, msg);
}

/* True (and consumes it) when the next non-blank character is `close`: an empty
 * object or array. */
static bool json_empty(json_reader *r, char close)
{
    json_skip_ws(r);
    if (r->pos < r->n && r->s[r->pos] == close) {
        r->pos++;
        return true;
    }
    return false;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static fkd_status json_hex4(json_reader *r, unsigned *out)
{
    if (r->n - r->pos < 4) return json_error(r, "truncated \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int d = hex_digit(r->s[r->pos + i]);
        if (d < 0) return json_error(r, "bad \\u escape");
        v = v * 16 + (unsigned)d;
    }
    r->pos += 4;
    *out = v;
    return FKD_OK;
}

static size_t utf8_encode(unsigned cp, char *o)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* A JSON string into a malloc'ed, NUL-terminated C string. Embedded NULs are refused
 * (names and metadata are C strings here). */
static fkd_status json_string(json_reader *r, char **out)
{
    *out = NULL;
    FKD_TRY(json_expect(r, '"'));
    size_t start = r->pos;
    /* Decoded text is never longer than the escaped text. */
    size_t end = start;
    while (end < r->n && r->s[end] != '"') end += (r->s[end] == '\\') ? 2 : 1;
    if (end >= r->n) return json_error(r, "unterminated string");
    char *o = malloc(end - start + 1);
    if (!o) return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory reading the header", r->path);
    size_t k = 0;
    while (r->s[r->pos] != '"') {
        unsigned char c = (unsigned char)r->s[r->pos];
        if (c < 0x20) {
            free(o);
            return json_error(r, "control character in string");
        }
        r->pos++;
        if (c != '\\') {
            o[k++] = (char)c;
            continue;
        }
        char e = r->s[r->pos++];
        const char *simple = strchr("\"\\/bfnrt", e);
        if (e && simple) {
            static const char decoded[] = "\"\\/\b\f\n\r\t";
            o[k++] = decoded[simple - "\"\\/bfnrt"];
            continue;
        }
        if (e != 'u') {
            r->pos--;
            free(o);
            return json_error(r, "bad escape in string");
        }
        unsigned cp;
        fkd_status s = json_hex4(r, &cp);
        if (s == FKD_OK && cp >= 0xD800 && cp < 0xDC00) {
            unsigned lo = 0;
            if (r->n - r->pos < 2 || r->s[r->pos] != '\\' || r->s[r->pos + 1] != 'u')
                s = json_error(r, "unpaired surrogate");
            else {
                r->pos += 2;
                s = json_hex4(r, &lo);
                if (s == FKD_OK && (lo < 0xDC00 || lo > 0xDFFF)) s = json_error(r, "unpaired surrogate");
            }
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        } else if (s == FKD_OK && cp >= 0xDC00 && cp < 0xE000) {
            s = json_error(r, "unpaired surrogate");
        }
        if (s == FKD_OK && cp == 0) s = json_error(r, "NUL character in string");
        if (s != FKD_OK) {
            free(o);
            return s;
        }
        k += utf8_encode(cp, o + k);
    }
    r->pos++; /* closing quote */
    o[k] = 0;
    *out = o;
    return FKD_OK;
}

/* A non-negative integer without sign, fraction or exponent (shapes and offsets). */
static fkd_status json_uint(json_reader *r, uint64_t *out)
{
    json_skip_ws(r);
    size_t start = r->pos;
    uint64_t v = 0;
    while (r->pos < r->n && r->s[r->pos] >= '0' && r->s[r->pos] <= '9') {
        unsigned d = (unsigned)(r->s[r->pos] - '0');
        if (v > (UINT64_MAX - d) / 10) return json_error(r, "integer too large");
        v = v * 10 + d;
        r->pos++;
    }
    if (r->pos == start) return json_error(r, "expected a non-negative integer");
    if (r->pos - start > 1 && r->s[start] == '0') {
        r->pos = start;
        return json_error(r, "leading zero in integer");
    }
    if (r->pos < r->n && (r->s[r->pos] == '.' || r->s[r->pos] == 'e' || r->s[r->pos] == 'E'))
        return json_error(r, "expected an integer, not a fraction");
    *out = v;
    return FKD_OK;
}

/* [u, u, ...] with at most `max` elements. */
static fkd_status json_uint_array(json_reader *r, uint64_t *vals, int max, int *count, const char *what)
{
    *count = 0;
    FKD_TRY(json_expect(r, '['));
    if (json_empty(r, ']')) return FKD_OK;
    for (bool more = true; more;) {
        if (*count == max) {
            char msg[80];
            snprintf(msg, sizeof msg, "%s has more than %d entries", what, max);
            return json_error(r, msg);
        }
        FKD_TRY(json_uint(r, &vals[(*count)++]));
        FKD_TRY(json_next(r, ']', &more));
    }
    return FKD_OK;
}

static fkd_status fail_tensor(const json_reader *r, const char *name, const char *what)
{
    return FKD_FAIL(FKD_ERR_FORMAT, "%s: tensor '%s' (header byte %zu): %s", r->path, name,
                    r->base + r->pos, what);
}

/* {"dtype": .., "shape": [..], "data_offsets": [b, e]}; offsets checked later. */
static fkd_status parse_tensor(json_reader *r, fkd_st_tensor *t, uint64_t offsets[2])
{
    bool have_dtype = false, have_shape = false, have_offsets = false;
    FKD_TRY(json_expect(r, '{'));
    if (json_empty(r, '}')) return fail_tensor(r, t->name, "empty tensor entry");
    for (bool more = true; more;) {
        char *key;
        FKD_TRY(json_string(r, &key));
        fkd_status s = json_expect(r, ':');
        if (s == FKD_OK && strcmp(key, "dtype") == 0 && !have_dtype) {
            char *dt = NULL;
            s = json_string(r, &dt);
            int found = -1;
            for (int i = 0; s == FKD_OK && i < FKD_ST_DTYPE_COUNT; i++)
                if (strcmp(dt, dtype_table[i].name) == 0) found = i;
            if (s == FKD_OK && found < 0) {
                char msg[96];
                snprintf(msg, sizeof msg, "unsupported dtype \"%.40s\" (F32, F16, BF16, F64, I64)", dt);
                s = fail_tensor(r, t->name, msg);
            }
            t->dtype = (fkd_st_dtype)found;
            free(dt);
            have_dtype = true;
        } else if (s == FKD_OK && strcmp(key, "shape") == 0 && !have_shape) {
            uint64_t dims[FKD_ST_MAX_DIMS];
            s = json_uint_array(r, dims, FKD_ST_MAX_DIMS, &t->ndims, "shape");
            t->numel = 1;
            for (int i = 0; s == FKD_OK && i < t->ndims; i++) {
                if (dims[i] > (uint64_t)INT64_MAX || (dims[i] && (uint64_t)t->numel > (uint64_t)INT64_MAX / dims[i]))
                    s = fail_tensor(r, t->name, "shape too large");
                else {
                    t->dims[i] = (int64_t)dims[i];
                    t->numel *= (int64_t)dims[i];
                }
            }
            have_shape = true;
        } else if (s == FKD_OK && strcmp(key, "data_offsets") == 0 && !have_offsets) {
            int n;
            s = json_uint_array(r, offsets, 2, &n, "data_offsets");
            if (s == FKD_OK && n != 2) s = fail_tensor(r, t->name, "data_offsets needs [begin, end]");
            have_offsets = true;
        } else if (s == FKD_OK) {
            char msg[96];
            snprintf(msg, sizeof msg, "unknown or repeated key \"%.40s\"", key);
            s = fail_tensor(r, t->name, msg);
        }
        free(key);
        FKD_TRY(s);
        FKD_TRY(json_next(r, '}', &more));
    }
    if (!have_dtype || !have_shape || !have_offsets)
        return fail_tensor(r, t->name, !have_dtype ? "no dtype" : !have_shape ? "no shape" : "no data_offsets");
    return FKD_OK;
}

static fkd_status parse_metadata(json_reader *r, fkd_safetensors *st)
{
    FKD_TRY(json_expect(r, '{'));
    if (json_empty(r, '}')) return FKD_OK;
    int cap = 0;
    for (bool more = true; more;) {
        if (st->meta_count == cap) {
            cap = cap ? 2 * cap : 8;
            fkd_st_meta *m = realloc(st->meta, (size_t)cap * sizeof *m);
            if (!m) return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory reading metadata", r->path);
            st->meta = m;
        }
        fkd_st_meta *m = &st->meta[st->meta_count];
        m->key = m->value = NULL;
        st->meta_count++;
        FKD_TRY(json_string(r, &m->key));
        FKD_TRY(json_expect(r, ':'));
        json_skip_ws(r);
        if (r->pos < r->n && r->s[r->pos] != '"') return json_error(r, "__metadata__ values must be strings");
        FKD_TRY(json_string(r, &m->value));
        FKD_TRY(json_next(r, '}', &more));
    }
    return FKD_OK;
}

static int cmp_tensor_begin(const void *a, const void *b)
{
    const fkd_st_tensor *x = *(const fkd_st_tensor *const *)a, *y = *(const fkd_st_tensor *const *)b;
    return x->data < y->data ? -1 : x->data > y->data;
}

static int cmp_tensor_name(const void *a, const void *b)
{
    return strcmp((*(const fkd_st_tensor *const *)a)->name, (*(const fkd_st_tensor *const *)b)->name);
}

/* Names unique; byte ranges pairwise disjoint (sorted by start, each ends before the
 * next begins). Empty tensors take no bytes and cannot overlap. */
static fkd_status check_layout(const fkd_safetensors *st)
{
    if (st->count < 2) return FKD_OK;
    const fkd_st_tensor **order = malloc((size_t)st->count * sizeof *order);
    if (!order) return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", st->path);
    for (int i = 0; i < st->count; i++) order[i] = &st->tensors[i];
    fkd_status s = FKD_OK;
    qsort(order, (size_t)st->count, sizeof *order, cmp_tensor_name);
    for (int i = 1; i < st->count && s == FKD_OK; i++)
        if (strcmp(order[i - 1]->name, order[i]->name) == 0)
            s = FKD_FAIL(FKD_ERR_FORMAT, "%s: tensor '%s' appears twice in the header", st->path, order[i]->name);
    qsort(order, (size_t)st->count, sizeof *order, cmp_tensor_begin);
    const fkd_st_tensor *prev = NULL;
    for (int i = 0; i < st->count && s == FKD_OK; i++) {
        if (order[i]->nbytes == 0) continue;
        if (prev && prev->data + prev->nbytes > order[i]->data)
            s = FKD_FAIL(FKD_ERR_FORMAT, "%s: tensor '%s': data_offsets overlap tensor '%s'", st->path,
                         order[i]->name, prev->name);
        prev = order[i];
    }
    free(order);
    return s;
}

static fkd_status parse_header(fkd_safetensors *st, json_reader *r, const uint8_t *data, size_t data_size)
{
    FKD_TRY(json_expect(r, '{'));
    if (json_empty(r, '}')) goto tail;
    int cap = 0;
    bool have_meta = false;
    for (bool more = true; more;) {
        char *name;
        FKD_TRY(json_string(r, &name));
        fkd_status s = json_expect(r, ':');
        if (s == FKD_OK && strcmp(name, "__metadata__") == 0) {
            free(name);
            if (have_meta) return json_error(r, "repeated __metadata__");
            have_meta = true;
            FKD_TRY(parse_metadata(r, st));
            FKD_TRY(json_next(r, '}', &more));
            continue;
        }
        if (s == FKD_OK && name[0] == 0) s = json_error(r, "empty tensor name");
        if (s == FKD_OK && st->count == cap) {
            cap = cap ? 2 * cap : 64;
            fkd_st_tensor *t = realloc(st->tensors, (size_t)cap * sizeof *t);
            if (!t) s = FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory reading the header", st->path);
            else st->tensors = t;
        }
        if (s != FKD_OK) {
            free(name);
            return s;
        }
        fkd_st_tensor *t = &st->tensors[st->count++];
        memset(t, 0, sizeof *t);
        t->name = name;
        uint64_t off[2];
        FKD_TRY(parse_tensor(r, t, off));
        size_t esize = fkd_st_dtype_size(t->dtype);
        if (off[0] > off[1] || off[1] > data_size) {
            char msg[160];
            snprintf(msg, sizeof msg, "data_offsets [%" PRIu64 ", %" PRIu64 "] outside the %zu-byte data section",
                     off[0], off[1], data_size);
            return fail_tensor(r, t->name, msg);
        }
        if ((uint64_t)t->numel > UINT64_MAX / esize || off[1] - off[0] != (uint64_t)t->numel * esize) {
            char msg[160];
            snprintf(msg, sizeof msg, "data_offsets span %" PRIu64 " bytes but shape × %s needs %" PRIu64,
                     off[1] - off[0], fkd_st_dtype_name(t->dtype), (uint64_t)t->numel * esize);
            return fail_tensor(r, t->name, msg);
        }
        t->data = data + off[0];
        t->nbytes = (size_t)(off[1] - off[0]);
        FKD_TRY(json_next(r, '}', &more));
    }
tail:
    json_skip_ws(r);
    if (r->pos != r->n) return json_error(r, "trailing characters after the header object");
    return check_layout(st);
}

fkd_status fkd_safetensors_parse(fkd_safetensors *st, const char *path, uint8_t *buf, size_t size)
{
    memset(st, 0, sizeof *st);
    st->buf = buf;
    st->size = size;
    st->path = strdup(path);
    if (!st->path) {
        fkd_safetensors_free(st);
        return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", path);
    }
    fkd_status s = FKD_OK;
    uint64_t n = 0;
    if (size < 8)
        s = FKD_FAIL(FKD_ERR_FORMAT, "%s: %zu bytes: too short for a safetensors file (8-byte header length)",
                     path, size);
    for (int i = 7; s == FKD_OK && i >= 0; i--) n = (n << 8) | buf[i];
    if (s == FKD_OK && (n < 2 || n > FKD_ST_MAX_HEADER || n > size - 8))
        s = FKD_FAIL(FKD_ERR_FORMAT, "%s: byte 0: header length %" PRIu64 " impossible for a %zu-byte file", path,
                     n, size);
    if (s == FKD_OK) {
        json_reader r = {.path = path, .s = (const char *)buf + 8, .n = (size_t)n, .pos = 0, .base = 8};
        s = parse_header(st, &r, buf + 8 + n, size - 8 - (size_t)n);
    }
    if (s != FKD_OK) fkd_safetensors_free(st);
    return s;
}

fkd_status fkd_safetensors_read(fkd_safetensors *st, const char *path)
{
    memset(st, 0, sizeof *st);
    uint8_t *buf;
    size_t size;
    FKD_TRY(fkd_file_read_all(path, &buf, &size));
    return fkd_safetensors_parse(st, path, buf, size);
}

void fkd_safetensors_free(fkd_safetensors *st)
{
    if (!st) return;
    for (int i = 0; i < st->count; i++) free(st->tensors[i].name);
    for (int i = 0; i < st->meta_count; i++) {
        free(st->meta[i].key);
        free(st->meta[i].value);
    }
    free(st->tensors);
    free(st->meta);
    free(st->buf);
    free(st->path);
    memset(st, 0, sizeof *st);
}

const fkd_st_tensor *fkd_safetensors_find(const fkd_safetensors *st, const char *name)
{
    for (int i = 0; i < st->count; i++)
        if (strcmp(st->tensors[i].name, name) == 0) return &st->tensors[i];
    return NULL;
}

const char *fkd_safetensors_meta(const fkd_safetensors *st, const char *key)
{
    for (int i = 0; i < st->meta_count; i++)
        if (strcmp(st->meta[i].key, key) == 0) return st->meta[i].value;
    return NULL;
}

/* ---- conversion --------------------------------------------------------------------- */
static uint64_t load_le(const uint8_t *p, int bytes)
{
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static float bits_to_f32(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* IEEE half → float: sign, 5-bit exponent (bias 15), 10-bit mantissa; subnormals scale
 * by 2^-24, exponent 31 is inf/NaN. */
static float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    int exp = (h >> 10) & 0x1F;
    uint32_t man = h & 0x3FF;
    if (exp == 0) {
        float v = ldexpf((float)man, -24);
        return sign ? -v : v;
    }
    if (exp == 31) return bits_to_f32(sign | 0x7F800000u | (man << 13));
    return bits_to_f32(sign | ((uint32_t)(exp - 15 + 127) << 23) | (man << 13));
}

void fkd_st_tensor_to_f32(const fkd_st_tensor *t, float *out)
{
    const uint8_t *p = t->data;
    for (int64_t i = 0; i < t->numel; i++) {
        switch (t->dtype) {
        case FKD_ST_F32: out[i] = bits_to_f32((uint32_t)load_le(p + 4 * i, 4)); break;
        case FKD_ST_F16: out[i] = f16_to_f32((uint16_t)load_le(p + 2 * i, 2)); break;
        case FKD_ST_BF16: out[i] = bits_to_f32((uint32_t)load_le(p + 2 * i, 2) << 16); break;
        case FKD_ST_F64: {
            uint64_t bits = load_le(p + 8 * i, 8);
            double d;
            memcpy(&d, &bits, sizeof d);
            out[i] = (float)d;
            break;
        }
        case FKD_ST_I64: out[i] = (float)(int64_t)load_le(p + 8 * i, 8); break;
        case FKD_ST_DTYPE_COUNT: out[i] = NAN; break;
        }
    }
}

/* ---- writing ------------------------------------------------------------------------ */
typedef struct {
    char *s;
    size_t len, cap;
    bool oom;
} strbuf;

static void sb_put(strbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

static void sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(strbuf *b, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    sb_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void sb_json_string(strbuf *b, const char *s)
{
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            sb_put(b, e, 2);
        } else if (c < 0x20) {
            sb_printf(b, "\\u%04x", c);
        } else {
            sb_put(b, s, 1);
        }
    }
    sb_put(b, "\"", 1);
}

static int64_t entry_numel(const fkd_st_entry *e)
{
    int64_t n = 1;
    for (int d = 0; d < e->ndims; d++) n *= e->dims[d];
    return n;
}

static fkd_status check_entries(const char *path, const fkd_st_entry *entries, int count)
{
    for (int i = 0; i < count; i++) {
        const fkd_st_entry *e = &entries[i];
        if (!e->name || !e->name[0] || strcmp(e->name, "__metadata__") == 0)
            return FKD_FAIL(FKD_ERR_ARG, "%s: tensor %d: empty or reserved name", path, i);
        if ((unsigned)e->dtype >= FKD_ST_DTYPE_COUNT || e->ndims < 0 || e->ndims > FKD_ST_MAX_DIMS)
            return FKD_FAIL(FKD_ERR_ARG, "%s: tensor '%s': bad dtype or rank", path, e->name);
        for (int d = 0; d < e->ndims; d++)
            if (e->dims[d] < 0) return FKD_FAIL(FKD_ERR_ARG, "%s: tensor '%s': negative dimension", path, e->name);
        for (int j = 0; j < i; j++)
            if (strcmp(entries[j].name, e->name) == 0)
                return FKD_FAIL(FKD_ERR_ARG, "%s: tensor '%s' given twice", path, e->name);
    }
    return FKD_OK;
}

fkd_status fkd_safetensors_write(const char *path, const fkd_st_entry *entries, int count,
                                 const fkd_st_meta *meta, int meta_count)
{
    FKD_TRY(check_entries(path, entries, count));
    strbuf h = {0};
    sb_put(&h, "{", 1);
    if (meta_count > 0) {
        sb_put(&h, "\"__metadata__\":{", 16);
        for (int i = 0; i < meta_count; i++) {
            if (i) sb_put(&h, ",", 1);
            sb_json_string(&h, meta[i].key);
            sb_put(&h, ":", 1);
            sb_json_string(&h, meta[i].value);
        }
        sb_put(&h, "}", 1);
    }
    uint64_t offset = 0;
    for (int i = 0; i < count; i++) {
        const fkd_st_entry *e = &entries[i];
        if (i || meta_count > 0) sb_put(&h, ",", 1);
        sb_json_string(&h, e->name);
        sb_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", fkd_st_dtype_name(e->dtype));
        for (int d = 0; d < e->ndims; d++) sb_printf(&h, "%s%" PRId64, d ? "," : "", e->dims[d]);
        uint64_t bytes = (uint64_t)entry_numel(e) * fkd_st_dtype_size(e->dtype);
        sb_printf(&h, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", offset, offset + bytes);
        offset += bytes;
    }
    sb_put(&h, "}", 1);
    /* Pad with spaces so the data section starts 8-byte aligned, as safetensors does. */
    while (!h.oom && (h.len % 8) != 0) sb_put(&h, " ", 1);
    if (h.oom) {
        free(h.s);
        return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory building the header", path);
    }
    uint8_t len_le[8];
    for (int i = 0; i < 8; i++) len_le[i] = (uint8_t)((uint64_t)h.len >> (8 * i));

    fkd_atomic_file f;
    fkd_status s = fkd_atomic_open(&f, path);
    if (s != FKD_OK) {
        free(h.s);
        return s;
    }
    bool ok = fwrite(len_le, 1, 8, f.fp) == 8 && fwrite(h.s, 1, h.len, f.fp) == h.len;
    for (int i = 0; ok && i < count; i++) {
        size_t bytes = (size_t)entry_numel(&entries[i]) * fkd_st_dtype_size(entries[i].dtype);
        ok = bytes == 0 || fwrite(entries[i].data, 1, bytes, f.fp) == bytes;
    }
    free(h.s);
    if (!ok) {
        int err = errno; /* before abort's close and remove can change it */
        fkd_atomic_abort(&f);
        return FKD_FAIL(FKD_ERR_IO, "%s: write failed: %s", path, strerror(err));
    }
    return fkd_atomic_commit(&f);
}
