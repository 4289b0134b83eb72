#include "eval/bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/dataset.h"
#include "core/fileio.h"
#include "data/image.h"
#include "data/synth_bench.h"

#define N_FOLDS 10

static fkd_status bench_set_name(fkd_bench *b, const char *name, int64_t n_pairs)
{
    b->name = strdup(name);
    b->n_pairs = n_pairs;
    b->n_folds = N_FOLDS;
    b->issame = malloc((size_t)n_pairs + 1);
    if (!b->name || !b->issame) return FKD_FAIL(FKD_ERR_NOMEM, "benchmark %s: out of memory", name);
    if (n_pairs < N_FOLDS)
        return FKD_FAIL(FKD_ERR_FORMAT, "benchmark %s: %lld pairs, need at least %d for 10 folds", name,
                        (long long)n_pairs, N_FOLDS);
    return FKD_OK;
}

fkd_status fkd_bench_open_bin(fkd_bench *b, const char *name, const char *path)
{
    memset(b, 0, sizeof *b);
    fkd_status s = fkd_verbin_load(path, &b->bin);
    if (s == FKD_OK) s = bench_set_name(b, name, b->bin.n_pairs);
    for (int64_t i = 0; s == FKD_OK && i < b->n_pairs; i++) b->issame[i] = b->bin.issame[i];
    if (s != FKD_OK) fkd_bench_free(b);
    return s;
}

fkd_status fkd_bench_open_pairs(fkd_bench *b, const char *name, const char *pairs_txt, const char *root)
{
    memset(b, 0, sizeof *b);
    b->is_pairs = 1;
    fkd_status s = fkd_pairs_load(&b->pairs, pairs_txt, root);
    if (s == FKD_OK) s = bench_set_name(b, name, b->pairs.n_pairs);
    for (int64_t i = 0; s == FKD_OK && i < b->n_pairs; i++) b->issame[i] = b->pairs.issame[i];
    if (s != FKD_OK) fkd_bench_free(b);
    return s;
}

fkd_status fkd_bench_open_synth(fkd_bench *b, const char *name, uint64_t seed, const char *cache_dir)
{
    memset(b, 0, sizeof *b);
    char dir[4096], path[4096];
    if (!cache_dir) {
        snprintf(dir, sizeof dir, "%s/synth", fkd_cache_dir());
        cache_dir = dir;
    }
    const fkd_synth_bench_info *info = fkd_synth_bench_find(name);
    if (!info) return FKD_FAIL(FKD_ERR_NOTFOUND, "unknown synthetic benchmark '%s'", name);
    FKD_TRY(fkd_synth_bench_cached(seed, info->name, cache_dir, path, sizeof path));
    return fkd_bench_open_bin(b, info->name, path);
}

void fkd_bench_free(fkd_bench *b)
{
    if (b->is_pairs)
        fkd_pairs_free(&b->pairs);
    else
        fkd_verbin_free(&b->bin);
    free(b->name);
    free(b->issame);
    memset(b, 0, sizeof *b);
}

fkd_status fkd_bench_image(void *bench, int64_t i, bool flip, float *slot)
{
    fkd_bench *b = bench;
    fkd_image img = {0};
    char what[512];
    fkd_status s;
    if (b->is_pairs) {
        snprintf(what, sizeof what, "%s", b->pairs.paths[i]);
        s = fkd_image_load(b->pairs.paths[i], &img);
    } else {
        snprintf(what, sizeof what, "%s image %lld", b->bin.path, (long long)i);
        s = fkd_image_decode(b->bin.images[i], b->bin.sizes[i], what, &img);
    }
    /* Benchmarks are aligned 112×112 crops; anything else is resized (insightface's
     * eval reads them at whatever size they were stored and resizes too). */
    if (s == FKD_OK) s = fkd_image_to_nchw(&img, flip, true, what, slot);
    fkd_image_free(&img);
    return s;
}

fkd_status fkd_bench_evaluate(fkd_bench *b, const fkd_embed_config *config, bool flip, fkd_verify_result *res,
                              float **embeddings, int *dim)
{
    int d;
    FKD_TRY(fkd_embed_dim(config, &d));
    int64_t n = 2 * b->n_pairs;
    float *emb = malloc((size_t)n * d * sizeof *emb);
    float *emb_flip = flip ? malloc((size_t)n * d * sizeof *emb_flip) : NULL;
    fkd_status s = emb && (emb_flip || !flip) ? FKD_OK
                                             : FKD_FAIL(FKD_ERR_NOMEM, "benchmark %s: out of memory", b->name);
    if (s == FKD_OK) s = fkd_embed_images(config, n, fkd_bench_image, b, false, emb);
    if (s == FKD_OK && flip) s = fkd_embed_images(config, n, fkd_bench_image, b, true, emb_flip);
    if (s == FKD_OK) s = fkd_verify_flip_pairs(emb, emb_flip, b->issame, (int)b->n_pairs, d, b->n_folds, res);
    if (s == FKD_OK && embeddings) {
        for (size_t k = 0; flip && k < (size_t)n * d; k++) emb[k] += emb_flip[k];
        *embeddings = emb;
        emb = NULL;
        if (dim) *dim = d;
    }
    free(emb);
    free(emb_flip);
    return s;
}
