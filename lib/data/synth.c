/* The synthetic world's identities and benchmark pairs (rendering: synth_render.c). */
#include "data/synth.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"

static const char *const param_names[] = {
#define FKD__SYNTH_PARAM_NAME(name, text) #name,
    FKD_SYNTH_PARAM_LIST(FKD__SYNTH_PARAM_NAME)
#undef FKD__SYNTH_PARAM_NAME
};
static const char *const param_texts[] = {
#define FKD__SYNTH_PARAM_TEXT(name, text) text,
    FKD_SYNTH_PARAM_LIST(FKD__SYNTH_PARAM_TEXT)
#undef FKD__SYNTH_PARAM_TEXT
};
_Static_assert(sizeof param_names / sizeof param_names[0] == FKD_SYNTH_N_PARAMS, "param names");
_Static_assert(FKD_SYNTH_N_PARAMS >= 40, "an identity has at least 40 parameters");

/* Random-stream tags, so identity draws, look-alike choices and images never share one. */
enum { STREAM_IDENTITY = 0x1d, STREAM_LOOKALIKE = 0x1a, STREAM_BENCH = 0xbe };

const char *fkd_synth_param_name(int i)
{
    return i >= 0 && i < FKD_SYNTH_N_PARAMS ? param_names[i] : "?";
}

const char *fkd_synth_param_text(int i)
{
    return i >= 0 && i < FKD_SYNTH_N_PARAMS ? param_texts[i] : "?";
}

void fkd_synth_world_default(fkd_synth_world *w, uint64_t seed, int64_t n_train)
{
    memset(w, 0, sizeof *w);
    w->seed = seed;
    w->n_train = n_train;
    w->lookalike_fraction = 0.1f;
    w->lookalike_sigma = 0.3f;
    w->pose = w->expression = w->light = w->occlusion = w->degradation = w->age_drift = w->clutter = 1.0f;
}

fkd_status fkd_synth_world_check(const fkd_synth_world *w)
{
    if (w->n_train < 0 || w->n_train > FKD_SYNTH_HELDOUT_BASE)
        return FKD_FAIL(FKD_ERR_ARG, "synth: training identities %lld outside 0..2^40", (long long)w->n_train);
    if (!(w->lookalike_fraction >= 0 && w->lookalike_fraction < 1))
        return FKD_FAIL(FKD_ERR_ARG, "synth: look-alike fraction %g outside [0, 1)", w->lookalike_fraction);
    if (!(w->lookalike_sigma >= 0 && w->lookalike_sigma <= 3))
        return FKD_FAIL(FKD_ERR_ARG, "synth: look-alike sigma %g outside [0, 3]", w->lookalike_sigma);
    const float levels[] = {w->pose, w->expression, w->light, w->occlusion, w->degradation, w->age_drift, w->clutter};
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++)
        if (!(levels[i] >= 0 && levels[i] <= 4))
            return FKD_FAIL(FKD_ERR_ARG, "synth: nuisance level %g outside [0, 4]", levels[i]);
    return FKD_OK;
}

/* The first id of the block `identity` belongs to: 0 for training ids, else its
 * benchmark block. Look-alikes stay inside their block, so held-out sets never borrow a
 * training face. */
static int64_t block_start(int64_t identity)
{
    if (identity < FKD_SYNTH_HELDOUT_BASE) return 0;
    return FKD_SYNTH_HELDOUT_BASE + (identity - FKD_SYNTH_HELDOUT_BASE) / FKD_SYNTH_BLOCK * FKD_SYNTH_BLOCK;
}

int64_t fkd_synth_lookalike_of(const fkd_synth_world *w, int64_t identity)
{
    int64_t start = block_start(identity);
    if (identity <= start || w->lookalike_fraction <= 0) return -1;
    fkd_rng r;
    fkd_rng_seed(&r, fkd_hash_mix(w->seed, STREAM_LOOKALIKE), (uint64_t)identity);
    if (fkd_rng_uniform(&r) >= w->lookalike_fraction) return -1;
    /* The original is one of the 64 ids before it: always earlier, so chains end. */
    int64_t span = identity - start < 64 ? identity - start : 64;
    return identity - 1 - (int64_t)fkd_rng_below(&r, (uint64_t)span);
}

static void fresh_identity(const fkd_synth_world *w, int64_t identity, float *p)
{
    fkd_rng r;
    fkd_rng_seed(&r, fkd_hash_mix(w->seed, STREAM_IDENTITY), (uint64_t)identity);
    for (int i = 0; i < FKD_SYNTH_N_PARAMS; i++) {
        double z = fkd_rng_normal(&r);
        p[i] = (float)(z < -3 ? -3 : z > 3 ? 3 : z);
    }
}

void fkd_synth_identity(const fkd_synth_world *w, int64_t identity, float params[FKD_SYNTH_N_PARAMS])
{
    /* Walk back the look-alike chain to a fresh identity, then add each link's noise on
     * the way forward (iteratively: chains are short but unbounded in principle). */
    enum { MAX_CHAIN = 256 };
    int64_t chain[MAX_CHAIN];
    int n = 0;
    int64_t id = identity;
    while (n < MAX_CHAIN) {
        chain[n++] = id;
        int64_t parent = fkd_synth_lookalike_of(w, id);
        if (parent < 0) break;
        id = parent;
    }
    fresh_identity(w, chain[n - 1], params);
    for (int k = n - 2; k >= 0; k--) {
        fkd_rng r;
        fkd_rng_seed(&r, fkd_hash_mix(w->seed, STREAM_LOOKALIKE + 1), (uint64_t)chain[k]);
        for (int i = 0; i < FKD_SYNTH_N_PARAMS; i++) {
            float z = params[i] + w->lookalike_sigma * (float)fkd_rng_normal(&r);
            params[i] = z < -3 ? -3 : z > 3 ? 3 : z;
        }
    }
}

/* ---------------------------------------------------------------- benchmarks */

typedef enum { NEG_RANDOM, NEG_LOOKALIKE } neg_kind;
typedef enum { POSE_FRONTAL, POSE_FRONTAL_PROFILE, POSE_MIXED } pose_kind;

typedef struct {
    fkd_synth_bench_info info;
    pose_kind pose;
    float age_gap; /* years between the two images of a pair (0: natural drift) */
    neg_kind neg;
} bench_def;

/* Shapes follow the real sets: LFW 6,000 pairs in 10 folds of 300 + 300, CFP-FP 7,000
 * (350 + 350 per fold), CPLFW / AgeDB-30 / CALFW 6,000 each. */
static const bench_def benches[] = {
    {{"synth-lfw", "synth_lfw.bin", "mostly frontal, random negatives", 10, 300, 300}, POSE_FRONTAL, 0, NEG_RANDOM},
    {{"synth-cfp-fp", "synth_cfp_fp.bin", "frontal vs profile (|yaw| 60-90 deg)", 10, 350, 350},
     POSE_FRONTAL_PROFILE, 0, NEG_RANDOM},
    {{"synth-cplfw", "synth_cplfw.bin", "pose variation, look-alike negatives", 10, 300, 300}, POSE_MIXED, 0,
     NEG_LOOKALIKE},
    {{"synth-agedb", "synth_agedb.bin", "30-year age gaps, random negatives", 10, 300, 300}, POSE_FRONTAL, 30,
     NEG_RANDOM},
    {{"synth-calfw", "synth_calfw.bin", "age gaps, look-alike negatives", 10, 300, 300}, POSE_FRONTAL, 20,
     NEG_LOOKALIKE},
};
#define N_BENCHES ((int)(sizeof benches / sizeof benches[0]))
/* Each benchmark gets 16 blocks (one per fold); the ids used per fold are well inside. */
#define BLOCKS_PER_BENCH 16
#define IDS_PER_FOLD 200

int fkd_synth_bench_count(void)
{
    return N_BENCHES;
}

const fkd_synth_bench_info *fkd_synth_bench_get(int i)
{
    return i >= 0 && i < N_BENCHES ? &benches[i].info : NULL;
}

static int bench_index(const char *name)
{
    for (int i = 0; i < N_BENCHES; i++)
        if (strcmp(name, benches[i].info.name) == 0 || strcmp(name, benches[i].info.name + 6) == 0) return i;
    return -1;
}

const fkd_synth_bench_info *fkd_synth_bench_find(const char *name)
{
    int i = bench_index(name);
    return i < 0 ? NULL : &benches[i].info;
}

int64_t fkd_synth_bench_identity_base(int bench)
{
    return FKD_SYNTH_HELDOUT_BASE + (int64_t)bench * BLOCKS_PER_BENCH * FKD_SYNTH_BLOCK;
}

static void pose_override(pose_kind pose, int which, fkd_rng *r, fkd_synth_override *ov)
{
    ov->set_yaw = true;
    switch (pose) {
    case POSE_FRONTAL: /* LFW is mostly frontal: small yaws, a few up to 30 degrees */
        ov->yaw_min = 0;
        ov->yaw_max = fkd_rng_uniform(r) < 0.85 ? 12 : 30;
        break;
    case POSE_FRONTAL_PROFILE:
        ov->yaw_min = which == 0 ? 0 : 60;
        ov->yaw_max = which == 0 ? 10 : 90;
        break;
    case POSE_MIXED: /* CPLFW: one near-frontal, one turned well away */
        ov->yaw_min = which == 0 ? 0 : 35;
        ov->yaw_max = which == 0 ? 20 : 80;
        break;
    }
}

/* The n-th look-alike (identity, original) pair of a block, scanning ids in order. */
static fkd_status next_lookalike(const fkd_synth_world *w, int64_t block, int64_t *cursor, int64_t *a, int64_t *b)
{
    for (int64_t tries = 0; tries < FKD_SYNTH_BLOCK / 2; tries++) {
        int64_t id = block + IDS_PER_FOLD + (*cursor)++;
        int64_t parent = fkd_synth_lookalike_of(w, id);
        if (parent >= 0) {
            *a = id;
            *b = parent;
            return FKD_OK;
        }
    }
    return FKD_FAIL(FKD_ERR_ARG, "synth: no look-alikes found (look-alike fraction %g)", w->lookalike_fraction);
}

fkd_status fkd_synth_bench_pairs(const fkd_synth_world *w, const char *name, fkd_synth_pair **pairs,
                                 int64_t *n_pairs)
{
    *pairs = NULL;
    *n_pairs = 0;
    int bi = bench_index(name);
    if (bi < 0) return FKD_FAIL(FKD_ERR_ARG, "synth: unknown benchmark '%s'", name);
    const bench_def *b = &benches[bi];
    if (b->neg == NEG_LOOKALIKE && w->lookalike_fraction <= 0)
        return FKD_FAIL(FKD_ERR_ARG, "synth: %s needs look-alikes (look-alike fraction is 0)", b->info.name);
    int per_fold = b->info.pos_per_fold + b->info.neg_per_fold;
    int64_t n = (int64_t)b->info.n_folds * per_fold;
    fkd_synth_pair *p = calloc((size_t)n, sizeof *p);
    if (!p) return FKD_FAIL(FKD_ERR_NOMEM, "synth: %s: cannot allocate %lld pairs", b->info.name, (long long)n);
    fkd_rng r;
    fkd_rng_seed(&r, fkd_hash_mix(w->seed, STREAM_BENCH), (uint64_t)bi);
    for (int f = 0; f < b->info.n_folds; f++) {
        /* Folds use disjoint identity blocks, like LFW's folds use disjoint people. */
        int64_t block = fkd_synth_bench_identity_base(bi) + (int64_t)f * FKD_SYNTH_BLOCK;
        int64_t cursor = 0;
        for (int k = 0; k < per_fold; k++) {
            fkd_synth_pair *q = &p[(int64_t)f * per_fold + k];
            q->fold = f;
            q->same = k < b->info.pos_per_fold;
            if (q->same) {
                q->identity[0] = q->identity[1] = block + k % IDS_PER_FOLD;
            } else if (b->neg == NEG_LOOKALIKE) {
                fkd_status s = next_lookalike(w, block, &cursor, &q->identity[0], &q->identity[1]);
                if (s != FKD_OK) {
                    free(p);
                    return s;
                }
            } else {
                int64_t i0 = (int64_t)fkd_rng_below(&r, IDS_PER_FOLD);
                int64_t i1 = (i0 + 1 + (int64_t)fkd_rng_below(&r, IDS_PER_FOLD - 1)) % IDS_PER_FOLD;
                q->identity[0] = block + i0;
                q->identity[1] = block + i1;
            }
            /* Image indices unique per pair, so no image appears twice in a benchmark. */
            q->index[0] = (uint32_t)(2 * k);
            q->index[1] = (uint32_t)(2 * k + 1);
            for (int j = 0; j < 2; j++) {
                pose_override(b->pose, j, &r, &q->ov[j]);
                if (b->age_gap > 0) {
                    q->ov[j].set_age = true;
                    /* Centred gap with a little spread: the two images are gap +- 3 years apart. */
                    float jitter = (float)(fkd_rng_uniform(&r) * 6 - 3);
                    q->ov[j].age_delta = (j == 0 ? -0.5f : 0.5f) * (b->age_gap + jitter);
                }
            }
            /* Which side is the profile / the older image alternates. */
            if (fkd_rng_uniform(&r) < 0.5) {
                fkd_synth_override t = q->ov[0];
                q->ov[0] = q->ov[1];
                q->ov[1] = t;
            }
        }
    }
    *pairs = p;
    *n_pairs = n;
    return FKD_OK;
}
