#include "train/teacher_cache.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/log.h"
#include "core/rng.h"
#include "eval/embed.h"

#define MAGIC "FKDTCACH"
#define HEADER_BYTES 64

struct fkd_teacher_cache {
    char path[4096];
    int64_t images, dim;
    const float *rows; /* (images, 2, dim) inside the mapping */
    void *map;
    size_t map_size;
};

/* 64-bit hash of a byte string, eight bytes at a time through fkd_hash_mix. */
static uint64_t hash_bytes(uint64_t h, const uint8_t *p, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = fkd_hash_mix(h, w);
    }
    uint64_t tail = 0;
    memcpy(&tail, p + i, n - i);
    return fkd_hash_mix(h, tail ^ ((uint64_t)n << 56));
}

static fkd_status cache_key(const char *teacher_path, const fkd_dataset *ds, bool resize, fkd_precision precision,
                            uint64_t *key)
{
    uint8_t *bytes;
    size_t size;
    FKD_TRY(fkd_file_read_all(teacher_path, &bytes, &size));
    uint64_t h = hash_bytes(0x46414345u, bytes, size);
    free(bytes);
    h = hash_bytes(h, (const uint8_t *)ds->source, strlen(ds->source));
    h = fkd_hash_mix(h, (uint64_t)ds->ops->count(ds));
    h = fkd_hash_mix(h, (uint64_t)resize);
    /* The bits of the teacher's compute type: fp32 keys are those of caches written before
     * bf16 teachers existed. */
    *key = fkd_hash_mix(h, precision == FKD_PREC_BF16 ? 16 : 32);
    return FKD_OK;
}

/* Images [offset, offset + n) of the dataset, for fkd_embed_images. */
typedef struct {
    const fkd_dataset *ds;
    bool resize;
    int64_t offset;
} image_source;

static fkd_status dataset_image(void *ctx, int64_t i, bool flip, float *slot)
{
    const image_source *src = ctx;
    return fkd_dataset_load_nchw(src->ds, src->offset + i, flip, src->resize, slot);
}

#define CHUNK 2048 /* images embedded between writes: memory stays small for MS1M-size sets */

/* Computes every row, a chunk at a time, and writes the file atomically. */
static fkd_status compute(const char *path, uint64_t key, const fkd_dataset *ds, bool resize, fkd_graph *g,
                          fkd_value emb)
{
    int ndims, dims[4];
    FKD_TRY(fkd_graph_shape(g, emb, &ndims, dims));
    int64_t n = ds->ops->count(ds), d = dims[1];
    float *plain = malloc(sizeof(float) * (size_t)(CHUNK * d)), *mirrored = malloc(sizeof(float) * (size_t)(CHUNK * d));
    fkd_status s = plain && mirrored ? FKD_OK : FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", path);
    fkd_atomic_file f;
    if (s == FKD_OK) s = fkd_atomic_open(&f, path);
    if (s != FKD_OK) {
        free(plain);
        free(mirrored);
        return s;
    }
    uint8_t header[HEADER_BYTES] = {0};
    memcpy(header, MAGIC, 8);
    memcpy(header + 8, &key, 8);
    memcpy(header + 16, &n, 8);
    memcpy(header + 24, &d, 8);
    if (fwrite(header, 1, HEADER_BYTES, f.fp) != HEADER_BYTES) s = FKD_FAIL(FKD_ERR_IO, "%s: write failed", path);
    fkd_progress progress;
    fkd_progress_start(&progress, "teacher cache", 2 * n, 1);
    image_source src = {ds, resize, 0};
    fkd_embed_config ec = {.graph = g, .embedding = emb, .input = "input", .progress = &progress};
    for (int64_t start = 0; s == FKD_OK && start < n; start += CHUNK) {
        int64_t rows = n - start < CHUNK ? n - start : CHUNK;
        src.offset = start;
        s = fkd_embed_images(&ec, rows, dataset_image, &src, false, plain);
        if (s == FKD_OK) s = fkd_embed_images(&ec, rows, dataset_image, &src, true, mirrored);
        for (int64_t i = 0; s == FKD_OK && i < rows; i++)
            if (fwrite(plain + i * d, sizeof(float), (size_t)d, f.fp) != (size_t)d ||
                fwrite(mirrored + i * d, sizeof(float), (size_t)d, f.fp) != (size_t)d)
                s = FKD_FAIL(FKD_ERR_IO, "%s: write failed", path);
    }
    if (s == FKD_OK) fkd_progress_finish(&progress, progress.done, NULL);
    if (s == FKD_OK)
        s = fkd_atomic_commit(&f);
    else
        fkd_atomic_abort(&f);
    free(plain);
    free(mirrored);
    return s;
}

static fkd_status map_file(fkd_teacher_cache *c, uint64_t key, int64_t images)
{
    int fd = open(c->path, O_RDONLY);
    if (fd < 0) return FKD_FAIL(FKD_ERR_IO, "%s: cannot open", c->path);
    struct stat st;
    fkd_status s = fstat(fd, &st) == 0 ? FKD_OK : FKD_FAIL(FKD_ERR_IO, "%s: cannot stat", c->path);
    if (s == FKD_OK && (size_t)st.st_size < HEADER_BYTES) s = FKD_FAIL(FKD_ERR_FORMAT, "%s: truncated header", c->path);
    if (s == FKD_OK) {
        c->map_size = (size_t)st.st_size;
        c->map = mmap(NULL, c->map_size, PROT_READ, MAP_SHARED, fd, 0);
        if (c->map == MAP_FAILED) {
            c->map = NULL;
            s = FKD_FAIL(FKD_ERR_IO, "%s: cannot map", c->path);
        }
    }
    close(fd);
    if (s != FKD_OK) return s;
    const uint8_t *h = c->map;
    uint64_t file_key;
    memcpy(&file_key, h + 8, 8);
    memcpy(&c->images, h + 16, 8);
    memcpy(&c->dim, h + 24, 8);
    if (memcmp(h, MAGIC, 8) != 0 || file_key != key || c->images != images || c->dim <= 0 || c->dim > 65536)
        return FKD_FAIL(FKD_ERR_FORMAT, "%s: not the teacher cache of this teacher and dataset", c->path);
    if (c->map_size != HEADER_BYTES + sizeof(float) * (size_t)(c->images * 2 * c->dim))
        return FKD_FAIL(FKD_ERR_FORMAT, "%s: %zu bytes, expected %zu", c->path, c->map_size,
                        HEADER_BYTES + sizeof(float) * (size_t)(c->images * 2 * c->dim));
    c->rows = (const float *)(h + HEADER_BYTES);
    return FKD_OK;
}

fkd_status fkd_teacher_cache_open(fkd_teacher_cache **out, const char *cache_dir, const char *teacher_path,
                                  const fkd_dataset *ds, bool resize, fkd_precision precision, fkd_graph *g,
                                  fkd_value emb, bool *hit)
{
    *out = NULL;
    uint64_t key;
    FKD_TRY(cache_key(teacher_path, ds, resize, precision, &key));
    fkd_teacher_cache *c = calloc(1, sizeof *c);
    if (!c) return FKD_FAIL(FKD_ERR_NOMEM, "teacher cache: out of memory");
    snprintf(c->path, sizeof c->path, "%s/teacher-%016llx.f32", cache_dir, (unsigned long long)key);
    struct stat st;
    *hit = stat(c->path, &st) == 0;
    fkd_status s = fkd_mkdir_p(cache_dir);
    if (s == FKD_OK && !*hit) {
        FKD_INFO("teacher cache: computing %s (%lld images and their mirrors)", c->path,
                 (long long)ds->ops->count(ds));
        s = compute(c->path, key, ds, resize, g, emb);
    } else if (s == FKD_OK) {
        FKD_INFO("teacher cache: using %s", c->path);
    }
    if (s == FKD_OK) s = map_file(c, key, ds->ops->count(ds));
    if (s != FKD_OK) {
        fkd_teacher_cache_close(c);
        return s;
    }
    *out = c;
    return FKD_OK;
}

void fkd_teacher_cache_close(fkd_teacher_cache *c)
{
    if (!c) return;
    if (c->map) munmap(c->map, c->map_size);
    free(c);
}

fkd_status fkd_teacher_cache_read(const fkd_teacher_cache *c, const int64_t *indices, const uint8_t *flipped, int n,
                                  float *out)
{
    for (int i = 0; i < n; i++) {
        if (indices[i] < 0 || indices[i] >= c->images)
            return FKD_FAIL(FKD_ERR_ARG, "%s: image %lld outside 0..%lld", c->path, (long long)indices[i],
                            (long long)c->images - 1);
        const float *row = c->rows + (size_t)(indices[i] * 2 + (flipped[i] ? 1 : 0)) * (size_t)c->dim;
        memcpy(out + (size_t)i * c->dim, row, sizeof(float) * (size_t)c->dim);
    }
    return FKD_OK;
}

const char *fkd_teacher_cache_path(const fkd_teacher_cache *c) { return c->path; }
