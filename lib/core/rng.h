/* Deterministic random numbers: a counter-free 64-bit generator (SplitMix64 seeding
 * xoshiro256**) so every stream is reproducible from (seed, stream id). */
#ifndef FKD_CORE_RNG_H
#define FKD_CORE_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4];
} fkd_rng;

/* Seeds a generator from a seed and a stream id (e.g. identity, image index). */
void fkd_rng_seed(fkd_rng *rng, uint64_t seed, uint64_t stream);
uint64_t fkd_rng_u64(fkd_rng *rng);
/* Uniform in [0, 1). */
double fkd_rng_uniform(fkd_rng *rng);
/* Standard normal (Box-Muller). */
double fkd_rng_normal(fkd_rng *rng);
/* Uniform integer in [0, n). */
uint64_t fkd_rng_below(fkd_rng *rng, uint64_t n);
/* Mixes words into one 64-bit hash (for keys, seeds). */
uint64_t fkd_hash_mix(uint64_t a, uint64_t b);

#endif
