/* The synthetic benchmarks as insightface verification files: each pair's two images
 * rendered, JPEG-encoded (quality 95, as insightface's .bin files hold JPEGs) and written
 * with fkd_verbin_write, so evaluation reads them through the real .bin reader. */
#ifndef FKD_DATA_SYNTH_BENCH_H
#define FKD_DATA_SYNTH_BENCH_H

#include "core/log.h"
#include "data/synth.h"

#define FKD_SYNTH_BENCH_JPEG_QUALITY 95

/* Writes benchmark `name` ("synth-lfw", ...) of world `w` to `path` (atomically).
 * `progress` (may be NULL) advances by one per image. */
fkd_status fkd_synth_bench_write(const fkd_synth_world *w, const char *name, const char *path, fkd_progress *progress);

/* The cached file of benchmark `name` for world seed `seed` in `cache_dir`
 * ("<cache_dir>/synth-lfw-s<seed>.bin"), written first when it is missing. */
fkd_status fkd_synth_bench_cached(uint64_t seed, const char *name, const char *cache_dir, char *path, size_t cap);

#endif
