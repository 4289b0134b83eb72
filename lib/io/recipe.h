/* Recipes: the YAML files that describe a training or distillation run.
 *
 * One schema table in recipe.c lists every key (path, type, default, range or allowed
 * values, meaning). It drives validation, defaults, the resolved recipe written to the run
 * folder and the reference in docs/RECIPES.md (`facekd recipe --doc`).
 *
 *     fkd_recipe r;
 *     const char *sets[] = {"optimizer.lr=0.05", "distill[0].weight=2"};
 *     if (fkd_recipe_load(&r, "recipes/distill/ekd.yaml", sets, 2) != FKD_OK)
 *         return fkd_cli_fail();     // "ekd.yaml:14:7: distill[0].T: expected a number, got "four""
 *     ... r.optim.lr, r.data.eval[i].bin, r.distill[j].method ...
 *     fkd_recipe_save(&r, "runs/x/recipe.yaml");
 *     fkd_recipe_free(&r);
 *
 * Loading: the file is parsed strictly (io/yamltree.h), `extends: base.yaml` chains are
 * merged (maps recursively, scalars and lists replaced), `--set` assignments are applied,
 * and the tree is checked against the schema: an unknown key, a wrong type or an
 * out-of-range value is an error naming file:line:column and the key path. Paths written in
 * a recipe are relative to that recipe's folder; paths given with --set and default paths
 * are relative to the current directory; the loaded recipe holds absolute paths.
 *
 * Distillation methods keep their own parameters: each distill[] item has the common keys
 * `method` and `weight`; every other key is left for the method's distiller, which reads
 * them with the fkd_recipe_param_* getters and then calls fkd_recipe_params_done() so that a
 * key no one read is an error rather than silently ignored.
 */
#ifndef FKD_IO_RECIPE_H
#define FKD_IO_RECIPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "io/yamltree.h"

/* Enumerated keys: X(C name, recipe spelling). The schema's allowed values come from the
 * same lists, so the C enums and the accepted words cannot drift apart. */
#define FKD_SOURCE_LIST(X) X(FKD_SOURCE_SYNTH, "synth") X(FKD_SOURCE_FOLDER, "folder") X(FKD_SOURCE_RECORDIO, "recordio")
#define FKD_SAMPLER_LIST(X) X(FKD_RECIPE_SAMPLER_RANDOM, "random") X(FKD_RECIPE_SAMPLER_PK, "pk")
#define FKD_BENCH_SYNTH_LIST(X)                                                                  \
    X(FKD_RECIPE_BENCH_LFW, "synth-lfw") X(FKD_RECIPE_BENCH_CFP_FP, "synth-cfp-fp")                         \
    X(FKD_RECIPE_BENCH_CPLFW, "synth-cplfw") X(FKD_RECIPE_BENCH_AGEDB, "synth-agedb")                        \
    X(FKD_RECIPE_BENCH_CALFW, "synth-calfw")
#define FKD_ARCH_LIST(X)                                                                         \
    X(FKD_RECIPE_ARCH_MBF, "mbf") X(FKD_RECIPE_ARCH_RESNET18, "resnet18") X(FKD_RECIPE_ARCH_IRESNET18, "iresnet18")    \
    X(FKD_RECIPE_ARCH_MBF_LARGE, "mbf_large") X(FKD_RECIPE_ARCH_IRESNET34, "iresnet34") X(FKD_RECIPE_ARCH_IRESNET50, "iresnet50") X(FKD_RECIPE_ARCH_IRESNET100, "iresnet100")
#define FKD_PRECISION_LIST(X) X(FKD_RECIPE_PRECISION_FP32, "fp32") X(FKD_RECIPE_PRECISION_BF16, "bf16")
#define FKD_HEAD_LIST(X)                                                                         \
    X(FKD_HEAD_SOFTMAX, "softmax") X(FKD_HEAD_L_SOFTMAX, "l-softmax") X(FKD_HEAD_SPHEREFACE, "sphereface") \
    X(FKD_HEAD_NORM_SOFTMAX, "norm-softmax") X(FKD_HEAD_COSFACE, "cosface") X(FKD_HEAD_ARCFACE, "arcface") \
    X(FKD_HEAD_COMBINED, "combined") X(FKD_HEAD_CONTRASTIVE, "contrastive") X(FKD_HEAD_TRIPLET, "triplet")   \
    X(FKD_HEAD_NONE, "none")
#define FKD_OPTIM_LIST(X) X(FKD_RECIPE_OPTIM_SGD, "sgd") X(FKD_RECIPE_OPTIM_ADAMW, "adamw")
#define FKD_SCHEDULE_LIST(X)                                                                     \
    X(FKD_RECIPE_SCHEDULE_POLY, "poly") X(FKD_RECIPE_SCHEDULE_STEP, "step") X(FKD_RECIPE_SCHEDULE_COSINE, "cosine")    \
    X(FKD_RECIPE_SCHEDULE_CONSTANT, "constant")

#define FKD__RECIPE_ENUM(name, text) name,
typedef enum { FKD_SOURCE_LIST(FKD__RECIPE_ENUM) } fkd_data_source;
typedef enum { FKD_SAMPLER_LIST(FKD__RECIPE_ENUM) } fkd_recipe_sampler;
/* FKD_RECIPE_BENCH_NONE: the benchmark is not a synthetic one. */
typedef enum { FKD_RECIPE_BENCH_NONE = -1, FKD_BENCH_SYNTH_LIST(FKD__RECIPE_ENUM) } fkd_recipe_bench_synth;
/* FKD_RECIPE_ARCH_UNSET: teacher.arch not given (read from the model file). */
typedef enum { FKD_RECIPE_ARCH_UNSET = -1, FKD_ARCH_LIST(FKD__RECIPE_ENUM) } fkd_recipe_arch;
typedef enum { FKD_PRECISION_LIST(FKD__RECIPE_ENUM) } fkd_recipe_precision;
typedef enum { FKD_HEAD_LIST(FKD__RECIPE_ENUM) } fkd_head_loss;
typedef enum { FKD_OPTIM_LIST(FKD__RECIPE_ENUM) } fkd_recipe_optim_kind;
typedef enum { FKD_SCHEDULE_LIST(FKD__RECIPE_ENUM) } fkd_recipe_schedule_kind;
#undef FKD__RECIPE_ENUM

/* The recipe spelling of an enumerated value ("adamw"), for logs and reports. */
const char *fkd_recipe_enum_name(const char *key_path, int value);

/* One evaluation benchmark: exactly one of bin, synth or pairs (+ root) is set. */
typedef struct {
    char *name;
    char *bin;             /* insightface verification .bin, or NULL */
    fkd_recipe_bench_synth synth; /* built-in synthetic benchmark, or FKD_RECIPE_BENCH_NONE */
    char *pairs;           /* LFW-style pair list, or NULL */
    char *root;            /* image folder the pair list refers to (with pairs) */
} fkd_recipe_bench;

typedef struct {
    fkd_data_source source;
    char *path; /* image folder or RecordIO prefix/file (folder, recordio); NULL for synth */
    struct {
        int64_t seed, identities;
        int64_t images_per_identity; /* image indices 0..n-1 per identity */
    } synth;
    struct {
        fkd_recipe_sampler kind;
        int64_t p, k; /* pk: identities per batch, images per identity (p*k = batch_size) */
    } sampler;
    bool flip;
    bool resize;    /* resize images that are not 112x112 (bilinear) instead of failing */
    int64_t workers; /* loader prefetch threads */
    fkd_recipe_bench *eval;
    size_t n_eval;
} fkd_recipe_data;

typedef struct {
    fkd_recipe_arch arch;
    int64_t embedding_size;
    int64_t width;  /* base width; 0 = the architecture's (narrow models for quick runs) */
    fkd_recipe_precision precision;
    char *weights; /* initial weights (.safetensors) or NULL */
    bool sync_bn;  /* batch-norm statistics over every MPI rank (lib/dist) */
    bool direct_conv; /* no Winograd convolutions (less memory, slower fp32) */
    bool keep_activations; /* keep what training would recompute (faster, more memory) */
} fkd_recipe_model;

/* Margin-softmax family: true-class logit s*(cos(m1*theta + m2) - m3). Parameters left out
 * of the recipe are NaN: the head uses its preset's published value. */
#define FKD_MINING_LIST(X) X(FKD_RECIPE_MINING_ALL, "all") X(FKD_RECIPE_MINING_HARD, "hard") X(FKD_RECIPE_MINING_SEMIHARD, "semi-hard")
#define FKD__RECIPE_ENUM2(name, text) name,
typedef enum { FKD_MINING_LIST(FKD__RECIPE_ENUM2) } fkd_recipe_mining;
#undef FKD__RECIPE_ENUM2

typedef struct {
    fkd_head_loss loss;
    double s, m1, m2, m3;
    double margin;          /* contrastive / triplet margin, NaN = preset */
    bool easy_margin;       /* ArcFace: no margin where cos theta <= 0 */
    bool straight_through;  /* ArcFace: arcface_torch's newer gradient (see docs/LOSSES.md) */
    double intra, inter;    /* ArcFace paper's intra-loss (L5) and inter-loss (L6) weights */
    struct {
        fkd_recipe_mining mining;
        bool normalize;
    } triplet;
    struct {
        double lambda, alpha; /* center loss weight (0 = off) and centre update rate */
    } center;
} fkd_recipe_head;

typedef struct {
    fkd_recipe_optim_kind kind;
    double lr, momentum, weight_decay;
    bool nesterov;
    double betas[2], eps;
} fkd_recipe_optim;

typedef struct {
    fkd_recipe_schedule_kind kind;
    double power;
    int64_t warmup_steps, warmup_epochs;
    int64_t *milestones; /* step schedule: steps (or epochs when `epochs` is set) */
    size_t n_milestones;
    double gamma;
} fkd_recipe_schedule;

typedef struct {
    char *model; /* .safetensors (with class centres) or .onnx; NULL without a teacher */
    fkd_recipe_arch arch;
    fkd_recipe_precision precision;
    bool direct_conv; /* no Winograd convolutions (less memory, slower fp32) */
    bool cache;
    char *cache_dir;
} fkd_recipe_teacher;

/* One distillation method. `node` is the item's map in the recipe tree; its keys other
 * than method/weight are the method's parameters, read with fkd_recipe_param_*. */
typedef struct {
    fkd_yaml_node *node; /* must stay the first member (the schema relies on it) */
    char *method;
    double weight; /* NaN when not given: the method's own default applies */
    size_t index;  /* position in distill[], for messages */
} fkd_recipe_method;

typedef struct {
    char *name;
    int64_t seed;
    char *output; /* run folder */
    int64_t epochs, steps; /* exactly one is non-zero */
    int64_t batch_size;
    int64_t eval_every, checkpoint_every, log_every; /* in steps; 0 = only at the end */
    int64_t threads; /* 0 = OMP_NUM_THREADS or all cores */
    bool deterministic;
    bool skip_nonfinite; /* skip batches with a non-finite loss or gradient */
    fkd_recipe_data data;
    fkd_recipe_model model;
    fkd_recipe_head head;
    fkd_recipe_optim optim;
    fkd_recipe_schedule schedule;
    fkd_recipe_teacher teacher;
    fkd_recipe_method *distill;
    size_t n_distill;

    char *path;          /* the recipe file as given */
    fkd_yaml_node *tree; /* the merged tree (owns the method parameter nodes) */
} fkd_recipe;

/* Loads, merges (extends), overrides (`sets`: n_sets strings "key.path=value") and
 * validates a recipe. On failure *r is left empty (fkd_recipe_free is still safe). */
fkd_status fkd_recipe_load(fkd_recipe *r, const char *path, const char *const *sets, size_t n_sets);

/* Frees everything a recipe owns; safe on a zeroed or half-loaded recipe. */
void fkd_recipe_free(fkd_recipe *r);

/* The resolved recipe as YAML (every key, defaults filled in, absolute paths); loading
 * that text again gives the same recipe. *yaml is malloc'ed. */
fkd_status fkd_recipe_emit(const fkd_recipe *r, char **yaml);

/* Writes the resolved recipe to `path` atomically. */
fkd_status fkd_recipe_save(const fkd_recipe *r, const char *path);

/* The markdown reference (docs/RECIPES.md), generated from the schema. *markdown is
 * malloc'ed. */
fkd_status fkd_recipe_doc(char **markdown);

/* The example recipes shown in the reference's introduction. */
extern const char fkd_recipe_example_train[];
extern const char fkd_recipe_example_distill[];

/* Method weight: the recipe's `weight`, or `method_default` when it was left out. */
double fkd_recipe_method_weight(const fkd_recipe_method *m, double method_default);

/* Typed getters for a method's parameters. A missing key gives the default; a present one
 * must have the right type and lie in [min, max] (no bound: ±INFINITY, INT64_MIN/MAX),
 * otherwise the error reads "file:line:col: distill[2].T: expected a number, got "four"".
 * Each getter marks its key as read. */
fkd_status fkd_recipe_param_float(const fkd_recipe_method *m, const char *key, double def, double min,
                                  double max, double *out);
fkd_status fkd_recipe_param_int(const fkd_recipe_method *m, const char *key, int64_t def, int64_t min,
                                int64_t max, int64_t *out);
fkd_status fkd_recipe_param_bool(const fkd_recipe_method *m, const char *key, bool def, bool *out);
/* `choices`: NULL-terminated allowed words, or NULL for any string. *out points into the
 * recipe (or is `def`). */
fkd_status fkd_recipe_param_string(const fkd_recipe_method *m, const char *key, const char *def,
                                   const char *const *choices, const char **out);
/* A list of numbers; *out is malloc'ed (a copy of `def` when the key is missing). */
fkd_status fkd_recipe_param_floats(const fkd_recipe_method *m, const char *key, const double *def, size_t n_def,
                                   double min, double max, double **out, size_t *n);
/* A list of strings (tap names, say); *out is a malloc'ed array of pointers into the recipe
 * (or into `def` when the key is missing); free the array only. */
fkd_status fkd_recipe_param_strings(const fkd_recipe_method *m, const char *key, const char *const *def,
                                    size_t n_def, const char ***out, size_t *n);
/* Fails on the first parameter key no getter has read: "…: distill[1].tau: unknown
 * parameter of method kd". Call after reading every parameter. */
fkd_status fkd_recipe_params_done(const fkd_recipe_method *m);

#endif
