#include "data/synth_bench.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/fileio.h"
#include "data/verbin.h"

fkd_status fkd_synth_bench_write(const fkd_synth_world *w, const char *name, const char *path, fkd_progress *progress)
{
    fkd_synth_pair *pairs = NULL;
    int64_t n_pairs = 0;
    FKD_TRY(fkd_synth_bench_pairs(w, name, &pairs, &n_pairs));
    uint8_t **images = calloc((size_t)(2 * n_pairs), sizeof *images);
    size_t *sizes = calloc((size_t)(2 * n_pairs), sizeof *sizes);
    bool *issame = calloc((size_t)n_pairs, sizeof *issame);
    fkd_status s = images && sizes && issame ? FKD_OK : FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", name);
    fkd_image img = {0};
    for (int64_t p = 0; s == FKD_OK && p < n_pairs; p++) {
        issame[p] = pairs[p].same;
        for (int k = 0; s == FKD_OK && k < 2; k++) {
            s = fkd_synth_render(w, pairs[p].identity[k], pairs[p].index[k], &pairs[p].ov[k], &img);
            if (s == FKD_OK)
                s = fkd_image_encode_jpeg(&img, FKD_SYNTH_BENCH_JPEG_QUALITY, &images[2 * p + k], &sizes[2 * p + k]);
            if (s == FKD_OK && progress) fkd_progress_update(progress, progress->done + 1, NULL);
        }
    }
    if (s == FKD_OK) s = fkd_verbin_write(path, (const uint8_t *const *)images, sizes, issame, n_pairs, 4);
    fkd_image_free(&img);
    for (int64_t i = 0; images && i < 2 * n_pairs; i++) free(images[i]);
    free(images);
    free(sizes);
    free(issame);
    free(pairs);
    return s;
}

fkd_status fkd_synth_bench_cached(uint64_t seed, const char *name, const char *cache_dir, char *path, size_t cap)
{
    const fkd_synth_bench_info *info = fkd_synth_bench_find(name);
    if (!info) return FKD_FAIL(FKD_ERR_NOTFOUND, "unknown synthetic benchmark '%s'", name);
    int n = snprintf(path, cap, "%s/%s-s%llu.bin", cache_dir, info->name, (unsigned long long)seed);
    if (n < 0 || (size_t)n >= cap) return FKD_FAIL(FKD_ERR_ARG, "%s: cache path too long", cache_dir);
    struct stat st;
    if (stat(path, &st) == 0) return FKD_OK;
    FKD_TRY(fkd_mkdir_p(cache_dir));
    fkd_synth_world w;
    /* Benchmarks use held-out identities: the training size does not change them. */
    fkd_synth_world_default(&w, seed, 0);
    fkd_progress progress;
    char label[128];
    snprintf(label, sizeof label, "rendering %s", info->name);
    fkd_progress_start(&progress, label, 2 * (int64_t)info->n_folds * (info->pos_per_fold + info->neg_per_fold), 1);
    FKD_TRY(fkd_synth_bench_write(&w, info->name, path, &progress));
    fkd_progress_finish(&progress, progress.done, NULL);
    return FKD_OK;
}
