#include "core/rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t fkd_hash_mix(uint64_t a, uint64_t b)
{
    uint64_t x = a ^ (b * 0xD6E8FEB86659FD93ull);
    return splitmix64(&x);
}

void fkd_rng_seed(fkd_rng *rng, uint64_t seed, uint64_t stream)
{
    uint64_t x = fkd_hash_mix(seed, stream);
    for (int i = 0; i < 4; i++) rng->s[i] = splitmix64(&x);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t fkd_rng_u64(fkd_rng *rng)
{
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double fkd_rng_uniform(fkd_rng *rng) { return (double)(fkd_rng_u64(rng) >> 11) * 0x1.0p-53; }

double fkd_rng_normal(fkd_rng *rng)
{
    double u1 = fkd_rng_uniform(rng), u2 = fkd_rng_uniform(rng);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

uint64_t fkd_rng_below(fkd_rng *rng, uint64_t n)
{
    /* Lemire's nearly-divisionless method is overkill here; modulo bias is < 2^-40 for
     * the n used (identities, images). */
    return n ? fkd_rng_u64(rng) % n : 0;
}
