/* The synthetic world written as .bin / folder / RecordIO, and as an on-the-fly dataset. */
#include "data/synth_export.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "data/recordio.h"
#include "data/verbin.h"

static void progress_start(fkd_progress *p, const char *label, int64_t total)
{
    if (p) fkd_progress_start(p, label, total, 1);
}

static void progress_update(fkd_progress *p, int64_t done)
{
    if (p && (done & 63) == 0) fkd_progress_update(p, done, NULL);
}

static void progress_finish(fkd_progress *p, int64_t done)
{
    if (p) fkd_progress_finish(p, done, NULL);
}

/* Renders one image and encodes it as JPEG into *bytes (malloc'ed). `img` is a reusable
 * render buffer. */
static fkd_status render_jpeg(const fkd_synth_world *w, int64_t identity, uint32_t index, const fkd_synth_override *ov,
                              fkd_image *img, uint8_t **bytes, size_t *size)
{
    FKD_TRY(fkd_synth_render(w, identity, index, ov, img));
    return fkd_image_encode_jpeg(img, FKD_SYNTH_JPEG_QUALITY, bytes, size);
}

fkd_status fkd_synth_write_pairs(const fkd_synth_world *w, const fkd_synth_pair *pairs, int64_t n_pairs,
                                 const char *path, fkd_progress *progress)
{
    if (n_pairs <= 0) return FKD_FAIL(FKD_ERR_ARG, "%s: no pairs to write", path);
    int64_t n_img = 2 * n_pairs;
    uint8_t **bytes = calloc((size_t)n_img, sizeof *bytes);
    size_t *sizes = calloc((size_t)n_img, sizeof *sizes);
    bool *issame = calloc((size_t)n_pairs, sizeof *issame);
    fkd_image img = {0};
    fkd_status s = FKD_OK;
    if (!bytes || !sizes || !issame) s = FKD_FAIL(FKD_ERR_NOMEM, "%s: cannot allocate %" PRId64 " pairs", path, n_pairs);
    progress_start(progress, path, n_img);
    for (int64_t i = 0; i < n_img && s == FKD_OK; i++) {
        const fkd_synth_pair *p = &pairs[i / 2];
        int j = (int)(i % 2);
        s = render_jpeg(w, p->identity[j], p->index[j], &p->ov[j], &img, &bytes[i], &sizes[i]);
        if (j == 0) issame[i / 2] = p->same;
        progress_update(progress, i + 1);
    }
    if (s == FKD_OK) {
        progress_finish(progress, n_img);
        /* protocol 2 with byte strings: what Python 2 wrote for lfw.bin and friends */
        s = fkd_verbin_write(path, (const uint8_t *const *)bytes, sizes, issame, n_pairs, 2);
    }
    if (bytes)
        for (int64_t i = 0; i < n_img; i++) free(bytes[i]);
    free(bytes);
    free(sizes);
    free(issame);
    fkd_image_free(&img);
    return s;
}

fkd_status fkd_synth_write_bench(const fkd_synth_world *w, const char *name, const char *dir, fkd_progress *progress)
{
    const fkd_synth_bench_info *info = fkd_synth_bench_find(name);
    if (!info) return FKD_FAIL(FKD_ERR_ARG, "synth: unknown benchmark '%s'", name);
    FKD_TRY(fkd_mkdir_p(dir));
    fkd_synth_pair *pairs;
    int64_t n;
    FKD_TRY(fkd_synth_bench_pairs(w, info->name, &pairs, &n));
    size_t len = strlen(dir) + strlen(info->file) + 2;
    char *path = malloc(len);
    if (!path) {
        free(pairs);
        return FKD_FAIL(FKD_ERR_NOMEM, "synth: out of memory");
    }
    snprintf(path, len, "%s/%s", dir, info->file);
    fkd_status s = fkd_synth_write_pairs(w, pairs, n, path, progress);
    free(path);
    free(pairs);
    return s;
}

static fkd_status check_train_args(const fkd_synth_world *w, int64_t n_ids, int per_id, const char *where)
{
    if (n_ids <= 0 || n_ids > w->n_train)
        return FKD_FAIL(FKD_ERR_ARG, "%s: %" PRId64 " identities, but the world has %" PRId64 " training identities",
                        where, n_ids, w->n_train);
    if (per_id <= 0) return FKD_FAIL(FKD_ERR_ARG, "%s: images per identity must be positive, got %d", where, per_id);
    return FKD_OK;
}

fkd_status fkd_synth_write_folder(const fkd_synth_world *w, int64_t n_ids, int per_id, const char *dir,
                                  fkd_progress *progress)
{
    FKD_TRY(check_train_args(w, n_ids, per_id, dir));
    size_t cap = strlen(dir) + 64;
    char *path = malloc(cap);
    if (!path) return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", dir);
    fkd_image img = {0};
    fkd_status s = FKD_OK;
    progress_start(progress, dir, n_ids * per_id);
    for (int64_t id = 0; id < n_ids && s == FKD_OK; id++) {
        /* zero-padded names: byte-wise sorted order is identity order, so labels match ids */
        snprintf(path, cap, "%s/%08" PRId64, dir, id);
        s = fkd_mkdir_p(path);
        for (int k = 0; k < per_id && s == FKD_OK; k++) {
            uint8_t *bytes = NULL;
            size_t size;
            s = render_jpeg(w, id, (uint32_t)k, NULL, &img, &bytes, &size);
            if (s == FKD_OK) {
                snprintf(path, cap, "%s/%08" PRId64 "/%04d.jpg", dir, id, k);
                s = fkd_atomic_write(path, bytes, size);
            }
            free(bytes);
            progress_update(progress, id * per_id + k + 1);
        }
    }
    if (s == FKD_OK) progress_finish(progress, n_ids * per_id);
    free(path);
    fkd_image_free(&img);
    return s;
}

fkd_status fkd_synth_write_recordio(const fkd_synth_world *w, int64_t n_ids, int per_id, const char *prefix,
                                    fkd_progress *progress)
{
    FKD_TRY(check_train_args(w, n_ids, per_id, prefix));
    size_t cap = strlen(prefix) + 8;
    char *rec = malloc(cap), *idx = malloc(cap);
    if (!rec || !idx) {
        free(rec);
        free(idx);
        return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", prefix);
    }
    snprintf(rec, cap, "%s.rec", prefix);
    snprintf(idx, cap, "%s.idx", prefix);
    /* the prefix's directory is created like --out's */
    fkd_status s = FKD_OK;
    char *slash = strrchr(idx, '/');
    if (slash && slash != idx) {
        *slash = 0;
        s = fkd_mkdir_p(idx);
        *slash = '/';
    }
    fkd_rec_train_writer wr;
    if (s == FKD_OK) s = fkd_rec_train_writer_open(&wr, rec, idx, true);
    fkd_image img = {0};
    if (s == FKD_OK) {
        progress_start(progress, rec, n_ids * per_id);
        for (int64_t id = 0; id < n_ids && s == FKD_OK; id++)
            for (int k = 0; k < per_id && s == FKD_OK; k++) {
                uint8_t *bytes = NULL;
                size_t size;
                s = render_jpeg(w, id, (uint32_t)k, NULL, &img, &bytes, &size);
                if (s == FKD_OK) s = fkd_rec_train_writer_add(&wr, (int32_t)id, bytes, size);
                free(bytes);
                progress_update(progress, id * per_id + k + 1);
            }
        if (s == FKD_OK) {
            progress_finish(progress, n_ids * per_id);
            s = fkd_rec_train_writer_commit(&wr);
        } else {
            fkd_rec_train_writer_abort(&wr);
        }
    }
    fkd_image_free(&img);
    free(rec);
    free(idx);
    return s;
}

/* ---- the world as a dataset */

typedef struct {
    fkd_synth_world world;
    int per_id;
} synth_ds;

static int64_t synth_count(const fkd_dataset *ds)
{
    const synth_ds *s = ds->impl;
    return s->world.n_train * s->per_id;
}

static int32_t synth_label(const fkd_dataset *ds, int64_t i)
{
    return (int32_t)(i / ((const synth_ds *)ds->impl)->per_id);
}

static int32_t synth_identities(const fkd_dataset *ds)
{
    return (int32_t)((const synth_ds *)ds->impl)->world.n_train;
}

static fkd_status synth_load(const fkd_dataset *ds, int64_t i, fkd_image *out)
{
    const synth_ds *s = ds->impl;
    if (i < 0 || i >= synth_count(ds))
        return FKD_FAIL(FKD_ERR_ARG, "%s: image %" PRId64 " outside 0..%" PRId64, ds->source, i, synth_count(ds) - 1);
    memset(out, 0, sizeof *out);
    return fkd_synth_render(&s->world, i / s->per_id, (uint32_t)(i % s->per_id), NULL, out);
}

static void synth_free(fkd_dataset *ds)
{
    free(ds->impl);
}

static const fkd_dataset_ops synth_ops = {"synth", synth_count, synth_label, synth_identities, synth_load, synth_free};

fkd_status fkd_synth_dataset_open(fkd_dataset *ds, const fkd_synth_world *w, int per_id)
{
    memset(ds, 0, sizeof *ds);
    FKD_TRY(fkd_synth_world_check(w));
    if (w->n_train <= 0 || w->n_train > INT32_MAX)
        return FKD_FAIL(FKD_ERR_ARG, "synth: a dataset needs 1..2^31-1 training identities, got %" PRId64, w->n_train);
    if (per_id <= 0) return FKD_FAIL(FKD_ERR_ARG, "synth: images per identity must be positive, got %d", per_id);
    synth_ds *s = malloc(sizeof *s);
    char source[96];
    snprintf(source, sizeof source, "synth(seed %" PRIu64 ", %" PRId64 " identities x %d)", w->seed, w->n_train, per_id);
    ds->source = strdup(source);
    if (!s || !ds->source) {
        free(s);
        free(ds->source);
        ds->source = NULL;
        return FKD_FAIL(FKD_ERR_NOMEM, "synth: out of memory");
    }
    s->world = *w;
    s->per_id = per_id;
    ds->impl = s;
    ds->ops = &synth_ops;
    return FKD_OK;
}
