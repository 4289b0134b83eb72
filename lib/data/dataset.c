/* Dataset table implementations (folder, RecordIO) and the image -> NCHW slot step. */
#include "data/dataset.h"
#include "data/synth.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/folder.h"
#include "data/recordio.h"

/* ---- image -> normalised NCHW -------------------------------------------------------------- */

/* Bilinear sample with half-pixel centres (what OpenCV's INTER_LINEAR and PyTorch's
 * align_corners=False do), edges clamped. */
static void resize_bilinear(const fkd_image *img, uint8_t *dst /* (112, 112, 3) */)
{
    const int S = FKD_FACE_SIZE, W = img->width, H = img->height;
    float sx = (float)W / S, sy = (float)H / S;
    for (int y = 0; y < S; y++) {
        float fy = (y + 0.5f) * sy - 0.5f;
        if (fy < 0) fy = 0;
        int y0 = (int)fy, y1 = y0 + 1 < H ? y0 + 1 : H - 1;
        float wy = fy - y0;
        for (int x = 0; x < S; x++) {
            float fx = (x + 0.5f) * sx - 0.5f;
            if (fx < 0) fx = 0;
            int x0 = (int)fx, x1 = x0 + 1 < W ? x0 + 1 : W - 1;
            float wx = fx - x0;
            for (int c = 0; c < 3; c++) {
                const uint8_t *p = img->pixels;
                float top = p[(y0 * W + x0) * 3 + c] * (1 - wx) + p[(y0 * W + x1) * 3 + c] * wx;
                float bot = p[(y1 * W + x0) * 3 + c] * (1 - wx) + p[(y1 * W + x1) * 3 + c] * wx;
                float v = top * (1 - wy) + bot * wy + 0.5f;
                dst[(y * S + x) * 3 + c] = (uint8_t)(v > 255 ? 255 : v);
            }
        }
    }
}

fkd_status fkd_image_to_nchw(const fkd_image *img, bool flip, bool resize, const char *what, float *slot)
{
    const int S = FKD_FACE_SIZE;
    if (img->channels != 3 || !img->pixels || img->width <= 0 || img->height <= 0)
        return FKD_FAIL(FKD_ERR_FORMAT, "%s: expected an RGB image, got %d channels", what, img->channels);
    const uint8_t *px = img->pixels;
    uint8_t *resized = NULL;
    if (img->width != S || img->height != S) {
        if (!resize)
            return FKD_FAIL(FKD_ERR_FORMAT, "%s: image is %dx%d, expected %dx%d aligned faces (set the recipe's "
                            "data.resize to resize)", what, img->width, img->height, S, S);
        resized = malloc((size_t)S * S * 3);
        if (!resized) return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", what);
        resize_bilinear(img, resized);
        px = resized;
    }
    /* slot: (3, 112, 112); HWC -> CHW, mirrored columns when flip. */
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < S; y++) {
            float *row = slot + ((size_t)c * S + y) * S;
            const uint8_t *src = px + (size_t)y * S * 3 + c;
            for (int x = 0; x < S; x++) {
                int sx = flip ? S - 1 - x : x;
                row[x] = ((float)src[sx * 3] - 127.5f) / 127.5f;
            }
        }
    free(resized);
    return FKD_OK;
}

fkd_status fkd_dataset_load_nchw(const fkd_dataset *ds, int64_t i, bool flip, bool resize, float *slot)
{
    fkd_image img = {0};
    FKD_TRY(ds->ops->load(ds, i, &img));
    char what[600];
    snprintf(what, sizeof what, "%s: image %" PRId64, ds->source ? ds->source : ds->ops->name, i);
    fkd_status s = fkd_image_to_nchw(&img, flip, resize, what, slot);
    fkd_image_free(&img);
    return s;
}

/* ---- folder --------------------------------------------------------------------------------- */

static int64_t folder_count(const fkd_dataset *ds) { return ((const fkd_folder *)ds->impl)->n_images; }
static int32_t folder_label(const fkd_dataset *ds, int64_t i) { return ((const fkd_folder *)ds->impl)->labels[i]; }
static int32_t folder_identities(const fkd_dataset *ds) { return ((const fkd_folder *)ds->impl)->n_identities; }

static fkd_status folder_load(const fkd_dataset *ds, int64_t i, fkd_image *out)
{
    return fkd_image_load(((const fkd_folder *)ds->impl)->paths[i], out);
}

static void folder_free(fkd_dataset *ds)
{
    fkd_folder_free(ds->impl);
    free(ds->impl);
}

static const fkd_dataset_ops folder_ops = {"folder", folder_count, folder_label, folder_identities, folder_load,
                                           folder_free};

/* ---- RecordIO -------------------------------------------------------------------------------- */

static int64_t rec_count(const fkd_dataset *ds) { return ((const fkd_recordio *)ds->impl)->n_images; }
static int32_t rec_label(const fkd_dataset *ds, int64_t i) { return ((const fkd_recordio *)ds->impl)->labels[i]; }
static int32_t rec_identities(const fkd_dataset *ds) { return (int32_t)((const fkd_recordio *)ds->impl)->n_identities; }

static fkd_status rec_load(const fkd_dataset *ds, int64_t i, fkd_image *out)
{
    const fkd_recordio *r = ds->impl;
    uint8_t *buf = NULL;
    size_t cap = 0;
    fkd_rec_payload p;
    int32_t label;
    fkd_status s = fkd_recordio_read_image(r, i, &buf, &cap, &p, &label);
    if (s == FKD_OK) {
        char what[600];
        snprintf(what, sizeof what, "%s: record %" PRIu64, r->rec_path, r->image_keys[i]);
        s = fkd_image_decode(p.data, p.data_size, what, out);
    }
    free(buf);
    return s;
}

static void rec_free(fkd_dataset *ds)
{
    fkd_recordio_close(ds->impl);
    free(ds->impl);
}

static const fkd_dataset_ops rec_ops = {"recordio", rec_count, rec_label, rec_identities, rec_load, rec_free};

/* ---- opening --------------------------------------------------------------------------------- */

/* Starts a dataset: zeroed impl of impl_size bytes, the ops, the source name. On failure
 * the dataset is left freed. */
static fkd_status attach(fkd_dataset *ds, const fkd_dataset_ops *ops, size_t impl_size, const char *source)
{
    memset(ds, 0, sizeof *ds);
    ds->ops = ops;
    ds->impl = calloc(1, impl_size);
    ds->source = strdup(source);
    if (ds->impl && ds->source) return FKD_OK;
    fkd_dataset_free(ds);
    return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", source);
}

fkd_status fkd_dataset_open_folder(fkd_dataset *ds, const char *root)
{
    FKD_TRY(attach(ds, &folder_ops, sizeof(fkd_folder), root));
    fkd_status s = fkd_folder_open(ds->impl, root);
    if (s != FKD_OK) fkd_dataset_free(ds);
    return s;
}

fkd_status fkd_dataset_open_recordio(fkd_dataset *ds, const char *rec_path, const char *idx_path)
{
    FKD_TRY(attach(ds, &rec_ops, sizeof(fkd_recordio), rec_path));
    fkd_status s = fkd_recordio_open(ds->impl, rec_path, idx_path);
    if (s == FKD_OK) s = fkd_recordio_labels(ds->impl);
    if (s != FKD_OK) fkd_dataset_free(ds);
    return s;
}

/* ---- the synthetic face world: image i is (identity i / K, index i % K) ---- */

typedef struct {
    fkd_synth_world world;
    int64_t images_per_identity; /* K */
} synth_set;

static int64_t synth_count(const fkd_dataset *ds)
{
    const synth_set *s = ds->impl;
    return s->world.n_train * s->images_per_identity;
}

static int32_t synth_label(const fkd_dataset *ds, int64_t i)
{
    const synth_set *s = ds->impl;
    return (int32_t)(i / s->images_per_identity);
}

static int32_t synth_identities(const fkd_dataset *ds)
{
    const synth_set *s = ds->impl;
    return (int32_t)s->world.n_train;
}

static fkd_status synth_load(const fkd_dataset *ds, int64_t i, fkd_image *out)
{
    const synth_set *s = ds->impl;
    memset(out, 0, sizeof *out);
    return fkd_synth_render(&s->world, i / s->images_per_identity, (uint32_t)(i % s->images_per_identity), NULL, out);
}

static void synth_free(fkd_dataset *ds) { free(ds->impl); }

static const fkd_dataset_ops synth_ops = {"synth", synth_count, synth_label, synth_identities, synth_load,
                                          synth_free};

fkd_status fkd_dataset_open_synth(fkd_dataset *ds, uint64_t seed, int32_t identities, int64_t images_per_identity)
{
    memset(ds, 0, sizeof *ds);
    if (identities < 2 || images_per_identity < 1)
        return FKD_FAIL(FKD_ERR_ARG, "synth: need at least 2 identities and 1 image each (got %d x %lld)", identities,
                        (long long)images_per_identity);
    FKD_TRY(attach(ds, &synth_ops, sizeof(synth_set), "synth"));
    synth_set *s = ds->impl;
    fkd_synth_world_default(&s->world, seed, identities);
    s->images_per_identity = images_per_identity;
    fkd_status st = fkd_synth_world_check(&s->world);
    if (st != FKD_OK) fkd_dataset_free(ds);
    return st;
}

fkd_status fkd_dataset_open(fkd_dataset *ds, const char *path)
{
    memset(ds, 0, sizeof *ds);
    /* "synth": the default synthetic world (recipes choose its size with data.synth.*). */
    if (strcmp(path, "synth") == 0)
        return fkd_dataset_open_synth(ds, FKD_SYNTH_DEFAULT_SEED, FKD_SYNTH_DEFAULT_IDENTITIES,
                                      FKD_SYNTH_DEFAULT_IMAGES_PER_IDENTITY);
    struct stat st;
    if (stat(path, &st) != 0) return FKD_FAIL(FKD_ERR_NOTFOUND, "%s: no such file or directory", path);
    if (S_ISDIR(st.st_mode)) return fkd_dataset_open_folder(ds, path);
    size_t n = strlen(path);
    if (n >= 4 && strcmp(path + n - 4, ".rec") == 0) return fkd_dataset_open_recordio(ds, path, NULL);
    return FKD_FAIL(FKD_ERR_ARG, "%s: not a dataset (expected an image folder or an insightface .rec file)", path);
}

void fkd_dataset_free(fkd_dataset *ds)
{
    if (!ds) return;
    if (ds->ops && ds->ops->free && ds->impl) ds->ops->free(ds);
    free(ds->source);
    memset(ds, 0, sizeof *ds);
}
