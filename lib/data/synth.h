/* The synthetic face world: procedural identities rendered as 112x112 RGB face crops.
 *
 * An identity is a vector of FKD_SYNTH_N_PARAMS continuous parameters (standard normal
 * draws, clamped to +-3) from (world seed, identity id): head and jaw shape, skin tone,
 * eyes, brows, nose, mouth, ears, hairline, hair style and colour, moles, freckles, beard,
 * base age. A fraction of identities are look-alikes: another identity's vector plus small
 * noise. Each image (identity, image index) adds nuisance drawn from its own random
 * stream: pose (yaw up to profile, pitch, roll), alignment jitter, expression, light,
 * background clutter, occluders, blur, noise, JPEG artefacts and an age drift. Everything
 * is a pure function of (seed, identity, image index, overrides).
 *
 * Identities [0, n_train) are the training identities; benchmarks draw theirs from
 * separate blocks at FKD_SYNTH_HELDOUT_BASE and above, never used in training.
 *
 *   fkd_synth_world w;
 *   fkd_synth_world_default(&w, 7, 1000);
 *   fkd_image img = {0};
 *   FKD_TRY(fkd_synth_render(&w, 42, 0, NULL, &img));   (identity 42, its image 0)
 *   fkd_image_free(&img);
 */
#ifndef FKD_DATA_SYNTH_H
#define FKD_DATA_SYNTH_H

#include <stdbool.h>
#include <stdint.h>

#include "core/status.h"
#include "data/image.h"

#define FKD_SYNTH_SIZE 112

/* The identity parameters, in vector order. X(name, description) */
#define FKD_SYNTH_PARAM_LIST(X)                                      \
    X(HEAD_WIDTH, "head width")                                      \
    X(HEAD_HEIGHT, "head height")                                    \
    X(HEAD_DEPTH, "head depth (visible in profile)")                 \
    X(JAW_TAPER, "jaw narrowing towards the chin")                   \
    X(CHIN_LENGTH, "lower-face length")                              \
    X(CHEEK_WIDTH, "cheekbone width")                                \
    X(SKIN_TONE, "skin lightness")                                   \
    X(SKIN_WARMTH, "skin hue, pink to yellow")                       \
    X(SKIN_TEXTURE, "skin texture noise")                            \
    X(EYE_SPACING, "distance between the eyes")                      \
    X(EYE_HEIGHT, "eye line height")                                 \
    X(EYE_WIDTH, "eye width")                                        \
    X(EYE_OPENING, "eye opening")                                    \
    X(EYE_TILT, "eye tilt")                                          \
    X(IRIS_HUE, "iris colour, brown to blue/green")                  \
    X(IRIS_LIGHTNESS, "iris lightness")                              \
    X(IRIS_SIZE, "iris size")                                        \
    X(BROW_HEIGHT, "brow height above the eyes")                     \
    X(BROW_THICKNESS, "brow thickness")                              \
    X(BROW_ARCH, "brow arch")                                        \
    X(BROW_LENGTH, "brow length")                                    \
    X(BROW_TILT, "brow tilt")                                        \
    X(NOSE_LENGTH, "nose length")                                    \
    X(NOSE_WIDTH, "nose width")                                      \
    X(NOSE_PROTRUSION, "nose protrusion (profile)")                  \
    X(MOUTH_HEIGHT, "mouth height")                                  \
    X(MOUTH_WIDTH, "mouth width")                                    \
    X(LIP_THICKNESS, "lip thickness")                                \
    X(LIP_COLOUR, "lip colour")                                      \
    X(MOUTH_CURVE, "resting mouth curve")                            \
    X(EAR_SIZE, "ear size")                                          \
    X(EAR_HEIGHT, "ear height")                                      \
    X(EAR_PROTRUSION, "ear protrusion")                              \
    X(HAIRLINE, "hairline height")                                   \
    X(HAIRLINE_SHAPE, "hairline shape: fringe to receding corners")  \
    X(HAIR_VOLUME, "hair volume")                                    \
    X(HAIR_LENGTH, "hair length")                                    \
    X(HAIR_PART, "hair parting side")                                \
    X(HAIR_LIGHTNESS, "hair lightness")                              \
    X(HAIR_RED, "hair redness")                                      \
    X(BEARD, "beard density")                                        \
    X(BEARD_EXTENT, "beard extent: moustache to full")               \
    X(FRECKLES, "freckle density")                                   \
    X(MOLE1_X, "first mole: across")                                 \
    X(MOLE1_Y, "first mole: down")                                   \
    X(MOLE2_X, "second mole: across")                                \
    X(MOLE2_Y, "second mole: down")                                  \
    X(MOLES, "mole visibility")                                      \
    X(BLUSH, "cheek redness")                                        \
    X(ASYMMETRY, "left/right asymmetry")                             \
    X(BASE_AGE, "age at image drift 0")                              \
    X(AGEING, "how strongly age shows (greying, wrinkles, recession)")

typedef enum {
#define FKD__SYNTH_PARAM_ENUM(name, text) FKD_SYNTH_##name,
    FKD_SYNTH_PARAM_LIST(FKD__SYNTH_PARAM_ENUM)
#undef FKD__SYNTH_PARAM_ENUM
    FKD_SYNTH_N_PARAMS
} fkd_synth_param;

/* Name ("HEAD_WIDTH") and description of parameter i. */
const char *fkd_synth_param_name(int i);
const char *fkd_synth_param_text(int i);

/* Benchmark identities live at FKD_SYNTH_HELDOUT_BASE + block * FKD_SYNTH_BLOCK; a
 * look-alike's original is always in its own block (training or the same benchmark block). */
#define FKD_SYNTH_HELDOUT_BASE (INT64_C(1) << 40)
#define FKD_SYNTH_BLOCK (INT64_C(1) << 20)

typedef struct {
    uint64_t seed;
    int64_t n_train;           /* training identities [0, n_train) */
    float lookalike_fraction;  /* share of identities derived from an earlier one (0.1) */
    float lookalike_sigma;     /* noise added to the original's vector, in z units (0.3) */
    /* Nuisance levels, multipliers of the default spreads (1 = default, 0 = none). */
    float pose, expression, light, occlusion, degradation, age_drift, clutter;
} fkd_synth_world;

void fkd_synth_world_default(fkd_synth_world *w, uint64_t seed, int64_t n_train);
fkd_status fkd_synth_world_check(const fkd_synth_world *w);

/* Per-image overrides that benchmarks use to shape their pairs. */
typedef struct {
    bool set_yaw;
    float yaw_min, yaw_max; /* |yaw| in degrees, drawn uniformly; the sign is random */
    bool set_age;
    float age_delta;        /* years added to the identity's base age */
} fkd_synth_override;

/* The identity's parameters (z units). Deterministic from (world seed, identity). */
void fkd_synth_identity(const fkd_synth_world *w, int64_t identity, float params[FKD_SYNTH_N_PARAMS]);
/* The identity this one is a look-alike of, or -1. */
int64_t fkd_synth_lookalike_of(const fkd_synth_world *w, int64_t identity);

/* Renders (identity, image index) into `out` (112x112 RGB; pixels allocated when NULL,
 * else reused and must hold 112*112*3 bytes). `ov` may be NULL. */
fkd_status fkd_synth_render(const fkd_synth_world *w, int64_t identity, uint32_t index,
                            const fkd_synth_override *ov, fkd_image *out);
/* The same image as a (3, 112, 112) float slot, (x - 127.5) / 127.5 of the uint8 image.
 * `scratch` holds 112*112*3 bytes. */
fkd_status fkd_synth_render_nchw(const fkd_synth_world *w, int64_t identity, uint32_t index,
                                 const fkd_synth_override *ov, uint8_t *scratch, float *slot);

/* ---------------------------------------------------------------- benchmarks */

typedef struct {
    int64_t identity[2];
    uint32_t index[2];
    fkd_synth_override ov[2];
    bool same;
    int fold;
} fkd_synth_pair;

typedef struct {
    const char *name;        /* "synth-lfw" */
    const char *file;        /* "synth_lfw.bin" */
    const char *description;
    int n_folds, pos_per_fold, neg_per_fold;
} fkd_synth_bench_info;

/* The benchmarks: synth-lfw, synth-cfp-fp, synth-cplfw, synth-agedb, synth-calfw. */
int fkd_synth_bench_count(void);
const fkd_synth_bench_info *fkd_synth_bench_get(int i);
/* Looks a benchmark up by name ("synth-lfw" or "lfw"); NULL when unknown. */
const fkd_synth_bench_info *fkd_synth_bench_find(const char *name);

/* Fills a malloc'ed array of the benchmark's pairs in fold order (each fold: its positive
 * pairs, then its negative pairs), like insightface's .bin files. */
fkd_status fkd_synth_bench_pairs(const fkd_synth_world *w, const char *name, fkd_synth_pair **pairs,
                                 int64_t *n_pairs);
/* The first identity id of the benchmark's held-out range (all its ids are >= it, and
 * below the next benchmark's). */
int64_t fkd_synth_bench_identity_base(int bench_index);

#endif
