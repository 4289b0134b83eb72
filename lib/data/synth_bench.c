#include "data/synth_bench.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "data/synth_export.h"

fkd_status fkd_synth_bench_cached(uint64_t seed, const char *name, const char *cache_dir, char *path, size_t cap)
{
    const fkd_synth_bench_info *info = fkd_synth_bench_find(name);
    if (!info) return FKD_FAIL(FKD_ERR_NOTFOUND, "unknown synthetic benchmark '%s'", name);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/s%llu", cache_dir, (unsigned long long)seed);
    int n = snprintf(path, cap, "%s/%s", dir, info->file);
    if (n < 0 || (size_t)n >= cap) return FKD_FAIL(FKD_ERR_ARG, "%s: cache path too long", cache_dir);
    struct stat st;
    if (stat(path, &st) == 0) return FKD_OK;
    fkd_synth_world w;
    /* Benchmarks use held-out identities: the training size does not change them. */
    fkd_synth_world_default(&w, seed, 0);
    fkd_progress progress; /* started and finished by the writer, labelled with the file */
    return fkd_synth_write_bench(&w, info->name, dir, &progress);
}
