/* The synthetic benchmarks, rendered once per world seed into a cache folder as
 * insightface .bin files (fkd_synth_write_bench), so evaluation reads them through the
 * real .bin reader. */
#ifndef FKD_DATA_SYNTH_BENCH_H
#define FKD_DATA_SYNTH_BENCH_H

#include "core/log.h"
#include "data/synth.h"

/* The cached file of benchmark `name` for world seed `seed` in `cache_dir`
 * ("<cache_dir>/s<seed>/synth_lfw.bin"), written first when it is missing. */
fkd_status fkd_synth_bench_cached(uint64_t seed, const char *name, const char *cache_dir, char *path, size_t cap);

#endif
