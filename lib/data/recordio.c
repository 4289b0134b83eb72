/* insightface / MXNet RecordIO reader and writer. Format: see recordio.h. */
#include "data/recordio.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define CFLAG_WHOLE 0u
#define CFLAG_START 1u
#define CFLAG_MIDDLE 2u
#define CFLAG_END 3u

static uint32_t rd_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd_u64(const uint8_t *p) { return (uint64_t)rd_u32(p) | (uint64_t)rd_u32(p + 4) << 32; }

static float rd_f32(const uint8_t *p)
{
    uint32_t u = rd_u32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void wr_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void wr_u64(uint8_t *p, uint64_t v)
{
    wr_u32(p, (uint32_t)v);
    wr_u32(p + 4, (uint32_t)(v >> 32));
}

static void wr_f32(uint8_t *p, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    wr_u32(p, u);
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* "x.rec" -> "x.idx"; other names get ".idx" appended. */
static char *idx_path_for(const char *rec_path)
{
    size_t n = strlen(rec_path);
    char *p = malloc(n + 5);
    if (!p) return NULL;
    memcpy(p, rec_path, n + 1);
    if (n >= 4 && strcmp(rec_path + n - 4, ".rec") == 0)
        memcpy(p + n - 4, ".idx", 5);
    else
        memcpy(p + n, ".idx", 5);
    return p;
}

/* ---- the index ---------------------------------------------------------------------- */

typedef struct {
    uint64_t key, offset;
} key_offset;

static int cmp_key_offset(const void *a, const void *b)
{
    uint64_t x = ((const key_offset *)a)->key, y = ((const key_offset *)b)->key;
    return x < y ? -1 : x > y;
}

static fkd_status parse_u64_field(const char *path, int64_t line, const char *what, char **p, uint64_t *out)
{
    char *s = *p;
    while (*s == ' ' || *s == '\t') s++;
    if (*s < '0' || *s > '9')
        return FKD_FAIL(FKD_ERR_FORMAT, "%s: line %" PRId64 ": expected a %s", path, line, what);
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno == ERANGE) return FKD_FAIL(FKD_ERR_FORMAT, "%s: line %" PRId64 ": %s out of range", path, line, what);
    *out = v;
    *p = end;
    return FKD_OK;
}

static fkd_status read_index(fkd_recordio *r)
{
    uint8_t *text;
    size_t size;
    FKD_TRY(fkd_file_read_all(r->idx_path, &text, &size));
    int64_t lines = 0;
    for (size_t i = 0; i < size; i++) lines += text[i] == '\n';
    lines += 1;
    key_offset *ko = malloc((size_t)lines * sizeof *ko);
    if (!ko) {
        free(text);
        return FKD_FAIL(FKD_ERR_NOMEM, "%s: cannot allocate the index", r->idx_path);
    }
    fkd_status s = FKD_OK;
    int64_t n = 0, line = 0;
    char *p = (char *)text, *end = (char *)text + size;
    while (p < end && s == FKD_OK) {
        line++;
        char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        *eol = '\0';
        char *q = p;
        while (*q == ' ' || *q == '\t' || *q == '\r') q++;
        if (*q) {
            uint64_t key, off;
            s = parse_u64_field(r->idx_path, line, "key", &q, &key);
            if (s == FKD_OK) s = parse_u64_field(r->idx_path, line, "offset", &q, &off);
            while (s == FKD_OK && (*q == ' ' || *q == '\t' || *q == '\r')) q++;
            if (s == FKD_OK && *q)
                s = FKD_FAIL(FKD_ERR_FORMAT, "%s: line %" PRId64 ": unexpected text '%.20s'", r->idx_path, line, q);
            if (s == FKD_OK && (off > r->map_size || r->map_size - off < 8))
                s = FKD_FAIL(FKD_ERR_FORMAT, "%s: line %" PRId64 ": key %" PRIu64 " offset %" PRIu64
                             " is past the end of %s (%zu bytes)", r->idx_path, line, key, off, r->rec_path,
                             r->map_size);
            if (s == FKD_OK && off % 4 != 0)
                s = FKD_FAIL(FKD_ERR_FORMAT, "%s: line %" PRId64 ": key %" PRIu64 " offset %" PRIu64
                             " is not a multiple of 4", r->idx_path, line, key, off);
            if (s == FKD_OK) ko[n++] = (key_offset){key, off};
        }
        p = eol + 1;
    }
    free(text);
    if (s == FKD_OK && n == 0) s = FKD_FAIL(FKD_ERR_FORMAT, "%s: the index is empty", r->idx_path);
    if (s == FKD_OK) {
        qsort(ko, (size_t)n, sizeof *ko, cmp_key_offset);
        for (int64_t i = 1; i < n && s == FKD_OK; i++)
            if (ko[i].key == ko[i - 1].key)
                s = FKD_FAIL(FKD_ERR_FORMAT, "%s: key %" PRIu64 " appears twice", r->idx_path, ko[i].key);
    }
    if (s == FKD_OK) {
        r->keys = malloc((size_t)n * sizeof *r->keys);
        r->offsets = malloc((size_t)n * sizeof *r->offsets);
        if (!r->keys || !r->offsets) s = FKD_FAIL(FKD_ERR_NOMEM, "%s: cannot allocate the index", r->idx_path);
    }
    if (s == FKD_OK) {
        for (int64_t i = 0; i < n; i++) {
            r->keys[i] = ko[i].key;
            r->offsets[i] = ko[i].offset;
        }
        r->n_keys = n;
    }
    free(ko);
    return s;
}

static int64_t find_key(const fkd_recordio *r, uint64_t key)
{
    int64_t lo = 0, hi = r->n_keys;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (r->keys[mid] < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < r->n_keys && r->keys[lo] == key ? lo : -1;
}

/* ---- records -------------------------------------------------------------------------- */

static fkd_status grow(uint8_t **buf, size_t *cap, size_t need, const char *what)
{
    if (need <= *cap) return FKD_OK;
    size_t c = *cap ? *cap : 4096;
    while (c < need) c *= 2;
    uint8_t *b = realloc(*buf, c);
    if (!b) return FKD_FAIL(FKD_ERR_NOMEM, "%s: cannot allocate %zu bytes", what, c);
    *buf = b;
    *cap = c;
    return FKD_OK;
}

fkd_status fkd_recordio_read_key(const fkd_recordio *r, uint64_t key, uint8_t **buf, size_t *cap, size_t *size)
{
    *size = 0;
    int64_t k = find_key(r, key);
    if (k < 0) return FKD_FAIL(FKD_ERR_NOTFOUND, "%s: key %" PRIu64 " is not in the index", r->idx_path, key);
    uint64_t pos = r->offsets[k];
    size_t used = 0;
    for (int part = 0;; part++) {
        if (pos > r->map_size || r->map_size - pos < 8)
            return FKD_FAIL(FKD_ERR_FORMAT, "%s: record %" PRIu64 " (offset %" PRIu64 "): truncated at offset %" PRIu64,
                            r->rec_path, key, r->offsets[k], pos);
        uint32_t magic = rd_u32(r->map + pos), lrec = rd_u32(r->map + pos + 4);
        if (magic != FKD_RECORDIO_MAGIC)
            return FKD_FAIL(FKD_ERR_FORMAT, "%s: record %" PRIu64 " (offset %" PRIu64 "): bad magic 0x%08x at offset %" PRIu64
                            " (expected 0x%08x)", r->rec_path, key, r->offsets[k], magic, pos, FKD_RECORDIO_MAGIC);
        uint32_t cflag = lrec >> 29, len = lrec & FKD_RECORDIO_MAX_LENGTH;
        if (r->map_size - pos - 8 < len)
            return FKD_FAIL(FKD_ERR_FORMAT, "%s: record %" PRIu64 " (offset %" PRIu64 "): %u bytes announced at offset %" PRIu64
                            " but the file ends %" PRIu64 " bytes later (truncated)", r->rec_path, key, r->offsets[k], len,
                            pos, (uint64_t)(r->map_size - pos - 8));
        bool first = part == 0;
        if ((first && cflag != CFLAG_WHOLE && cflag != CFLAG_START) ||
            (!first && cflag != CFLAG_MIDDLE && cflag != CFLAG_END))
            return FKD_FAIL(FKD_ERR_FORMAT, "%s: record %" PRIu64 " (offset %" PRIu64 "): part %d at offset %" PRIu64
                            " has continuation flag %u", r->rec_path, key, r->offsets[k], part, pos, cflag);
        /* Split parts are rejoined with the magic word that the writer cut out. */
        size_t extra = first ? 0 : 4;
        FKD_TRY(grow(buf, cap, used + extra + len, r->rec_path));
        if (!first) {
            wr_u32(*buf + used, FKD_RECORDIO_MAGIC);
            used += 4;
        }
        /* An empty record leaves *buf NULL: no pointer arithmetic on it. */
        if (len) memcpy(*buf + used, r->map + pos + 8, len);
        used += len;
        pos += 8 + (((uint64_t)len + 3) & ~(uint64_t)3);
        if (cflag == CFLAG_WHOLE || cflag == CFLAG_END) break;
    }
    *size = used;
    return FKD_OK;
}

fkd_status fkd_recordio_parse(const uint8_t *payload, size_t size, const char *what, fkd_rec_payload *out)
{
    memset(out, 0, sizeof *out);
    if (size < FKD_RECORDIO_HEADER_BYTES)
        return FKD_FAIL(FKD_ERR_FORMAT, "%s: %zu bytes, shorter than the %d-byte record header", what, size,
                        FKD_RECORDIO_HEADER_BYTES);
    out->flag = rd_u32(payload);
    out->label = rd_f32(payload + 4);
    out->id = rd_u64(payload + 8);
    out->id2 = rd_u64(payload + 16);
    uint64_t label_bytes = (uint64_t)out->flag * 4;
    if (label_bytes > size - FKD_RECORDIO_HEADER_BYTES)
        return FKD_FAIL(FKD_ERR_FORMAT, "%s: header flag %u announces %u labels but only %zu bytes follow", what,
                        out->flag, out->flag, size - FKD_RECORDIO_HEADER_BYTES);
    for (uint32_t i = 0; i < out->flag && i < 4; i++) out->labels[i] = rd_f32(payload + 24 + 4 * i);
    out->data = payload + FKD_RECORDIO_HEADER_BYTES + label_bytes;
    out->data_size = size - FKD_RECORDIO_HEADER_BYTES - (size_t)label_bytes;
    return FKD_OK;
}

/* Reads and parses one key; `what` is filled with "<rec> record <key>" for messages. */
static fkd_status read_parsed(const fkd_recordio *r, uint64_t key, uint8_t **buf, size_t *cap, fkd_rec_payload *out)
{
    size_t size;
    FKD_TRY(fkd_recordio_read_key(r, key, buf, cap, &size));
    char what[512];
    snprintf(what, sizeof what, "%s: record %" PRIu64, r->rec_path, key);
    return fkd_recordio_parse(*buf, size, what, out);
}

static fkd_status label_of(const fkd_recordio *r, uint64_t key, const fkd_rec_payload *p, int32_t *label)
{
    float v = p->flag > 0 ? p->labels[0] : p->label;
    if (!(v >= 0 && v < 2147483520.0f) || v != floorf(v))
        return FKD_FAIL(FKD_ERR_FORMAT, "%s: record %" PRIu64 ": label %g is not a non-negative integer", r->rec_path,
                        key, (double)v);
    *label = (int32_t)v;
    return FKD_OK;
}

fkd_status fkd_recordio_read_image(const fkd_recordio *r, int64_t i, uint8_t **buf, size_t *cap, fkd_rec_payload *out,
                                   int32_t *label)
{
    if (i < 0 || i >= r->n_images)
        return FKD_FAIL(FKD_ERR_ARG, "%s: image %" PRId64 " out of range [0, %" PRId64 ")", r->rec_path, i, r->n_images);
    uint64_t key = r->image_keys[i];
    FKD_TRY(read_parsed(r, key, buf, cap, out));
    return label_of(r, key, out, label);
}

/* ---- open / close ---------------------------------------------------------------------- */

/* Header record (insightface): key 0 with flag > 0; images are keys [1, labels[0]),
 * identity records keys [labels[0], labels[1]) when flag >= 2 and the range is not empty. */
static fkd_status read_header(fkd_recordio *r, uint64_t *id_begin, uint64_t *id_end)
{
    *id_begin = *id_end = 0;
    uint8_t *buf = NULL;
    size_t cap = 0;
    fkd_rec_payload p = {0};
    size_t size = 0;
    fkd_status s = find_key(r, 0) >= 0 ? fkd_recordio_read_key(r, 0, &buf, &cap, &size) : FKD_OK;
    /* A record 0 too short for an IRHeader is a plain record, not a header (generic
     * RecordIO); its problems surface when it is read as an image. */
    bool parsed = s == FKD_OK && size && fkd_recordio_parse(buf, size, "", &p) == FKD_OK;
    if (parsed && p.flag > 0) {
        float end = p.labels[0];
        if (!(end >= 1 && end <= (float)r->keys[r->n_keys - 1] + 1))
            s = FKD_FAIL(FKD_ERR_FORMAT, "%s: record 0: header says images end at key %g, outside the index (last key %"
                         PRIu64 ")", r->rec_path, (double)end, r->keys[r->n_keys - 1]);
        if (s == FKD_OK) {
            r->has_header = true;
            *id_begin = *id_end = (uint64_t)end;
            if (p.flag >= 2 && p.labels[1] > p.labels[0]) {
                if (!(p.labels[1] <= (float)r->keys[r->n_keys - 1] + 1))
                    s = FKD_FAIL(FKD_ERR_FORMAT, "%s: record 0: identity records end at key %g, outside the index",
                                 r->rec_path, (double)p.labels[1]);
                else
                    *id_end = (uint64_t)p.labels[1];
            }
        }
    }
    free(buf);
    return s;
}

fkd_status fkd_recordio_open(fkd_recordio *r, const char *rec_path, const char *idx_path)
{
    memset(r, 0, sizeof *r);
    r->rec_path = dup_str(rec_path);
    r->idx_path = idx_path ? dup_str(idx_path) : idx_path_for(rec_path);
    if (!r->rec_path || !r->idx_path) return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", rec_path);
    int fd = open(rec_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return FKD_FAIL(FKD_ERR_IO, "%s: cannot open: %s", rec_path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return FKD_FAIL(FKD_ERR_IO, "%s: not a regular file", rec_path);
    }
    r->map_size = (size_t)st.st_size;
    if (r->map_size > 0) {
        void *m = mmap(NULL, r->map_size, PROT_READ, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED) {
            close(fd);
            r->map_size = 0;
            return FKD_FAIL(FKD_ERR_IO, "%s: cannot map: %s", rec_path, strerror(errno));
        }
        r->map = m;
    }
    close(fd);
    FKD_TRY(read_index(r));
    uint64_t id_begin, id_end;
    FKD_TRY(read_header(r, &id_begin, &id_end));
    if (r->has_header) {
        r->n_images = (int64_t)id_begin - 1;
        r->n_identities = (int64_t)(id_end - id_begin);
    } else {
        r->n_images = r->n_keys;
    }
    if (r->n_images <= 0) return FKD_FAIL(FKD_ERR_FORMAT, "%s: no image records", rec_path);
    r->image_keys = malloc((size_t)r->n_images * sizeof *r->image_keys);
    if (!r->image_keys) return FKD_FAIL(FKD_ERR_NOMEM, "%s: cannot allocate the image list", rec_path);
    for (int64_t i = 0; i < r->n_images; i++) {
        r->image_keys[i] = r->has_header ? (uint64_t)i + 1 : r->keys[i];
        if (r->has_header && find_key(r, r->image_keys[i]) < 0)
            return FKD_FAIL(FKD_ERR_FORMAT, "%s: header record says images are keys 1..%" PRId64 " but key %" PRIu64
                            " is not in %s", rec_path, r->n_images, r->image_keys[i], r->idx_path);
    }
    return FKD_OK;
}

void fkd_recordio_close(fkd_recordio *r)
{
    if (!r) return;
    if (r->map) munmap((void *)r->map, r->map_size);
    free(r->rec_path);
    free(r->idx_path);
    free(r->keys);
    free(r->offsets);
    free(r->image_keys);
    free(r->labels);
    memset(r, 0, sizeof *r);
}

/* With identity records, identity j's images are the key range its record gives; every
 * image of that range takes the label of the range's first image (one read per identity
 * instead of one per image: MS1MV2 has 5.8M images, 85K identities). */
static fkd_status labels_from_identities(fkd_recordio *r, uint8_t **buf, size_t *cap)
{
    uint64_t first_id = (uint64_t)r->n_images + 1;
    for (int64_t i = 0; i < r->n_images; i++) r->labels[i] = -1;
    int32_t max_label = -1;
    for (int64_t j = 0; j < r->n_identities; j++) {
        uint64_t key = first_id + (uint64_t)j;
        fkd_rec_payload p;
        FKD_TRY(read_parsed(r, key, buf, cap, &p));
        if (p.flag < 2 || !(p.labels[0] >= 1) || !(p.labels[1] >= p.labels[0]) ||
            !(p.labels[1] <= (float)first_id))
            return FKD_FAIL(FKD_ERR_FORMAT, "%s: record %" PRIu64 ": identity record needs an image key range inside [1, %"
                            PRIu64 ")", r->rec_path, key, first_id);
        uint64_t start = (uint64_t)p.labels[0], end = (uint64_t)p.labels[1];
        if (start == end) continue;
        int32_t label;
        FKD_TRY(read_parsed(r, start, buf, cap, &p));
        FKD_TRY(label_of(r, start, &p, &label));
        for (uint64_t k = start; k < end; k++) r->labels[k - 1] = label;
        if (label > max_label) max_label = label;
    }
    for (int64_t i = 0; i < r->n_images; i++)
        if (r->labels[i] < 0)
            return FKD_FAIL(FKD_ERR_FORMAT, "%s: image record %" PRIu64 " belongs to no identity record", r->rec_path,
                            r->image_keys[i]);
    r->n_identities = (int64_t)max_label + 1;
    return FKD_OK;
}

fkd_status fkd_recordio_labels(fkd_recordio *r)
{
    if (r->labels) return FKD_OK;
    r->labels = malloc((size_t)r->n_images * sizeof *r->labels);
    if (!r->labels) return FKD_FAIL(FKD_ERR_NOMEM, "%s: cannot allocate labels", r->rec_path);
    uint8_t *buf = NULL;
    size_t cap = 0;
    fkd_status s = FKD_OK;
    if (r->n_identities > 0) {
        s = labels_from_identities(r, &buf, &cap);
    } else {
        int32_t max_label = -1;
        for (int64_t i = 0; i < r->n_images && s == FKD_OK; i++) {
            fkd_rec_payload p;
            s = fkd_recordio_read_image(r, i, &buf, &cap, &p, &r->labels[i]);
            if (s == FKD_OK && r->labels[i] > max_label) max_label = r->labels[i];
        }
        r->n_identities = (int64_t)max_label + 1;
    }
    free(buf);
    if (s != FKD_OK) {
        free(r->labels);
        r->labels = NULL;
    }
    return s;
}

/* ---- writer ----------------------------------------------------------------------------- */

fkd_status fkd_recordio_writer_open(fkd_recordio_writer *w, const char *rec_path, const char *idx_path)
{
    memset(w, 0, sizeof *w);
    char *idx = idx_path ? dup_str(idx_path) : idx_path_for(rec_path);
    if (!idx) return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", rec_path);
    fkd_status s = fkd_atomic_open(&w->rec, rec_path);
    if (s == FKD_OK) {
        s = fkd_atomic_open(&w->idx, idx);
        if (s != FKD_OK) fkd_atomic_abort(&w->rec);
    }
    free(idx);
    w->open = s == FKD_OK;
    return s;
}

static fkd_status put_part(fkd_recordio_writer *w, uint32_t cflag, const uint8_t *data, uint32_t len)
{
    uint8_t head[8];
    static const uint8_t zeros[4] = {0};
    wr_u32(head, FKD_RECORDIO_MAGIC);
    wr_u32(head + 4, cflag << 29 | len);
    uint32_t pad = (4 - (len & 3)) & 3;
    if (fwrite(head, 1, 8, w->rec.fp) != 8 || (len && fwrite(data, 1, len, w->rec.fp) != len) ||
        (pad && fwrite(zeros, 1, pad, w->rec.fp) != pad))
        return FKD_FAIL(FKD_ERR_IO, "%s: write failed: %s", w->rec.path, strerror(errno));
    w->offset += 8 + (uint64_t)len + pad;
    return FKD_OK;
}

fkd_status fkd_recordio_writer_put(fkd_recordio_writer *w, uint64_t key, const uint8_t *data, size_t size)
{
    if (!w->open) return FKD_FAIL(FKD_ERR_ARG, "recordio writer is not open");
    if (size > FKD_RECORDIO_MAX_LENGTH)
        return FKD_FAIL(FKD_ERR_ARG, "%s: record %" PRIu64 ": %zu bytes, RecordIO holds at most %u", w->rec.path, key,
                        size, FKD_RECORDIO_MAX_LENGTH);
    if (fprintf(w->idx.fp, "%" PRIu64 "\t%" PRIu64 "\n", key, w->offset) < 0)
        return FKD_FAIL(FKD_ERR_IO, "%s: write failed: %s", w->idx.path, strerror(errno));
    /* Like MXNet's writer: a magic word at a 4-byte-aligned place inside the data would
     * look like a record start, so the data are cut there and the word dropped. */
    size_t dptr = 0, aligned = size & ~(size_t)3;
    for (size_t i = 0; i < aligned; i += 4) {
        if (rd_u32(data + i) != FKD_RECORDIO_MAGIC) continue;
        FKD_TRY(put_part(w, dptr == 0 ? CFLAG_START : CFLAG_MIDDLE, data + dptr, (uint32_t)(i - dptr)));
        dptr = i + 4;
    }
    return put_part(w, dptr == 0 ? CFLAG_WHOLE : CFLAG_END, data + dptr, (uint32_t)(size - dptr));
}

/* IRHeader + labels + image, in one buffer. */
static fkd_status build_payload(uint32_t n_labels, const float *labels, float label, uint64_t id,
                                const uint8_t *image, size_t image_size, uint8_t **out, size_t *out_size)
{
    size_t size = FKD_RECORDIO_HEADER_BYTES + (size_t)n_labels * 4 + image_size;
    uint8_t *p = malloc(size ? size : 1);
    if (!p) return FKD_FAIL(FKD_ERR_NOMEM, "cannot allocate a %zu-byte record", size);
    wr_u32(p, n_labels);
    wr_f32(p + 4, n_labels > 0 ? 0.0f : label);
    wr_u64(p + 8, id);
    wr_u64(p + 16, 0);
    for (uint32_t i = 0; i < n_labels; i++) wr_f32(p + 24 + 4 * i, labels[i]);
    if (image_size) memcpy(p + 24 + 4 * (size_t)n_labels, image, image_size);
    *out = p;
    *out_size = size;
    return FKD_OK;
}

fkd_status fkd_recordio_writer_put_image(fkd_recordio_writer *w, uint64_t key, uint32_t n_labels, const float *labels,
                                         float label, const uint8_t *image, size_t image_size)
{
    uint8_t *p;
    size_t size;
    FKD_TRY(build_payload(n_labels, labels, label, key, image, image_size, &p, &size));
    fkd_status s = fkd_recordio_writer_put(w, key, p, size);
    free(p);
    return s;
}

fkd_status fkd_recordio_writer_commit(fkd_recordio_writer *w)
{
    if (!w->open) return FKD_FAIL(FKD_ERR_ARG, "recordio writer is not open");
    w->open = false;
    /* The .idx is committed last: a crash in between leaves a new .rec with an old or
     * missing .idx, which open() reports (offsets past the end or bad magic). */
    fkd_status s = fkd_atomic_commit(&w->rec);
    if (s != FKD_OK) {
        fkd_atomic_abort(&w->idx);
        return s;
    }
    return fkd_atomic_commit(&w->idx);
}

void fkd_recordio_writer_abort(fkd_recordio_writer *w)
{
    if (!w || !w->open) return;
    fkd_atomic_abort(&w->rec);
    fkd_atomic_abort(&w->idx);
    w->open = false;
}

/* ---- insightface training-set writer ------------------------------------------------------ */

/* Record 0 is written first with placeholder labels and rewritten in place at commit;
 * its payload has a fixed size (2 labels, no image) so the rewrite fits exactly. */
static fkd_status put_header_record(fkd_rec_train_writer *w, float images_end, float ids_end)
{
    float labels[2] = {images_end, ids_end};
    return fkd_recordio_writer_put_image(&w->raw, 0, 2, labels, 0, NULL, 0);
}

fkd_status fkd_rec_train_writer_open(fkd_rec_train_writer *w, const char *rec_path, const char *idx_path,
                                     bool identity_ranges)
{
    memset(w, 0, sizeof *w);
    w->identity_ranges = identity_ranges;
    w->last_label = -1;
    FKD_TRY(fkd_recordio_writer_open(&w->raw, rec_path, idx_path));
    fkd_status s = put_header_record(w, 1, 1);
    if (s != FKD_OK) fkd_rec_train_writer_abort(w);
    return s;
}

fkd_status fkd_rec_train_writer_add(fkd_rec_train_writer *w, int32_t label, const uint8_t *image, size_t image_size)
{
    if (label < 0) return FKD_FAIL(FKD_ERR_ARG, "%s: negative label %d", w->raw.rec.path, label);
    /* Labels and keys are float32 in the header records: exact only up to 2^24. */
    if (w->n_images + 2 >= (1 << 24) || label >= (1 << 24))
        return FKD_FAIL(FKD_ERR_ARG, "%s: more than 2^24 images or labels cannot be indexed by float32 labels",
                        w->raw.rec.path);
    if (w->identity_ranges) {
        if (label < w->last_label)
            return FKD_FAIL(FKD_ERR_ARG, "%s: image %" PRId64 ": label %d after %d; identity ranges need images "
                            "grouped by non-decreasing label", w->raw.rec.path, w->n_images, label, w->last_label);
        if (label + 2 > w->ids_cap) {
            int64_t cap = w->ids_cap ? w->ids_cap : 64;
            while (cap < label + 2) cap *= 2;
            int64_t *p = realloc(w->id_start, (size_t)cap * sizeof *p);
            if (!p) return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", w->raw.rec.path);
            w->id_start = p;
            w->ids_cap = cap;
        }
        uint64_t key = (uint64_t)w->n_images + 1;
        for (int64_t j = w->n_ids; j <= label; j++) w->id_start[j] = (int64_t)key;
        if (label + 1 > w->n_ids) w->n_ids = label + 1;
    }
    w->last_label = label > w->last_label ? label : w->last_label;
    uint64_t key = (uint64_t)w->n_images + 1;
    FKD_TRY(fkd_recordio_writer_put_image(&w->raw, key, 0, NULL, (float)label, image, image_size));
    w->n_images++;
    return FKD_OK;
}

fkd_status fkd_rec_train_writer_commit(fkd_rec_train_writer *w)
{
    fkd_status s = FKD_OK;
    uint64_t images_end = (uint64_t)w->n_images + 1;
    uint64_t ids_end = images_end + (w->identity_ranges ? (uint64_t)w->n_ids : 0);
    for (int64_t j = 0; w->identity_ranges && j < w->n_ids && s == FKD_OK; j++) {
        float range[2] = {(float)w->id_start[j], (float)(j + 1 < w->n_ids ? w->id_start[j + 1] : (int64_t)images_end)};
        s = fkd_recordio_writer_put_image(&w->raw, images_end + (uint64_t)j, 2, range, 0, NULL, 0);
    }
    if (s == FKD_OK) {
        uint64_t end_offset = w->raw.offset;
        if (fseek(w->raw.rec.fp, 0, SEEK_SET) != 0)
            s = FKD_FAIL(FKD_ERR_IO, "%s: seek failed: %s", w->raw.rec.path, strerror(errno));
        /* Rewriting record 0 must not append an index line: write its bytes directly. */
        uint8_t *p = NULL;
        size_t size = 0;
        float labels[2] = {(float)images_end, (float)ids_end};
        if (s == FKD_OK) s = build_payload(2, labels, 0, 0, NULL, 0, &p, &size);
        if (s == FKD_OK) s = put_part(&w->raw, CFLAG_WHOLE, p, (uint32_t)size);
        free(p);
        w->raw.offset = end_offset;
        if (s == FKD_OK && fseek(w->raw.rec.fp, 0, SEEK_END) != 0)
            s = FKD_FAIL(FKD_ERR_IO, "%s: seek failed: %s", w->raw.rec.path, strerror(errno));
    }
    if (s != FKD_OK) {
        fkd_rec_train_writer_abort(w);
        return s;
    }
    free(w->id_start);
    w->id_start = NULL;
    return fkd_recordio_writer_commit(&w->raw);
}

void fkd_rec_train_writer_abort(fkd_rec_train_writer *w)
{
    if (!w) return;
    fkd_recordio_writer_abort(&w->raw);
    free(w->id_start);
    w->id_start = NULL;
}
