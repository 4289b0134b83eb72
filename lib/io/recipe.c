/* Recipes: the schema table and everything it drives (validation, defaults, the resolved
 * YAML, the markdown reference). The YAML tree itself lives in io/yamltree.c. */
#include "io/recipe.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/fileio.h"

#define FKD__RECIPE_MSG_CAP 800
#define FKD__RECIPE_PATH_CAP 512
/* extends chains longer than this are certainly a mistake (cycles are caught earlier). */
#define FKD__RECIPE_MAX_EXTENDS 16

_Static_assert(sizeof(fkd_recipe_optim_kind) == sizeof(int), "enum fields are written as int");

/* ---- the schema ------------------------------------------------------------------------ */

#define FKD__RECIPE_NAME(name, text) text,
static const char *const source_names[] = {FKD_SOURCE_LIST(FKD__RECIPE_NAME) NULL};
static const char *const sampler_names[] = {FKD_SAMPLER_LIST(FKD__RECIPE_NAME) NULL};
static const char *const bench_names[] = {FKD_BENCH_SYNTH_LIST(FKD__RECIPE_NAME) NULL};
static const char *const arch_names[] = {FKD_ARCH_LIST(FKD__RECIPE_NAME) NULL};
static const char *const precision_names[] = {FKD_PRECISION_LIST(FKD__RECIPE_NAME) NULL};
static const char *const head_names[] = {FKD_HEAD_LIST(FKD__RECIPE_NAME) NULL};
static const char *const mining_names[] = {FKD_MINING_LIST(FKD__RECIPE_NAME) NULL};
static const char *const optim_names[] = {FKD_OPTIM_LIST(FKD__RECIPE_NAME) NULL};
static const char *const schedule_names[] = {FKD_SCHEDULE_LIST(FKD__RECIPE_NAME) NULL};
#undef FKD__RECIPE_NAME

typedef enum {
    T_SECTION, /* a mapping of further keys */
    T_LIST,    /* a list of mappings: aux = item size, aux2 = offset of the count */
    T_BOOL,
    T_INT,     /* int64_t */
    T_FLOAT,   /* double; NaN when unset */
    T_STRING,  /* char *, malloc'ed; NULL when unset */
    T_PATH,    /* char *, made absolute */
    T_ENUM,    /* int index into names; -1 when unset */
    T_FLOATS,  /* double[aux] inline */
    T_INTS,    /* int64_t * malloc'ed, count (size_t) at offset aux */
} field_type;

enum {
    F_REQUIRED = 1u, /* no default: the key must be given */
    F_OPEN = 2u,     /* list items keep unknown keys for their owner (method parameters) */
    F_LOADER = 4u,   /* handled by the loader before validation (extends) */
};

typedef struct {
    const char *path; /* "optimizer.lr"; keys of list items are "distill[].weight" */
    field_type type;
    const char *def;  /* default as YAML text; NULL = none */
    double min, max;
    const char *const *names; /* T_ENUM: allowed words */
    size_t offset;    /* in fkd_recipe, or in the item struct under a "[]" path */
    size_t aux, aux2;
    const char *when; /* "optimizer.type=adamw": the key only applies then */
    unsigned flags;
    const char *doc;
} field;

#define R(m) offsetof(fkd_recipe, m)
#define B(m) offsetof(fkd_recipe_bench, m)
#define M(m) offsetof(fkd_recipe_method, m)
/* Bounds used for counts that only need to be positive and sane. */
#define BIG 1e12

static const field schema[] = {
    {"extends", T_PATH, NULL, 0, 0, NULL, 0, 0, 0, NULL, F_LOADER,
     "base recipe whose settings this file extends (relative to this file); maps merge key by key, "
     "scalars and lists replace"},
    {"name", T_STRING, NULL, 0, 0, NULL, R(name), 0, 0, NULL, 0,
     "run name (default: the recipe's file name without .yaml)"},
    {"seed", T_INT, "1", 0, 9007199254740991.0, NULL, R(seed), 0, 0, NULL, 0,
     "seed for initialisation, sampling and augmentation"},
    {"output", T_PATH, NULL, 0, 0, NULL, R(output), 0, 0, NULL, 0,
     "run folder: resolved recipe, logs, checkpoints, reports (default: runs/NAME)"},
    {"epochs", T_INT, "0", 0, 1e6, NULL, R(epochs), 0, 0, NULL, 0,
     "passes over the training set (give epochs or steps)"},
    {"steps", T_INT, "0", 0, BIG, NULL, R(steps), 0, 0, NULL, 0, "optimizer steps (give epochs or steps)"},
    {"batch_size", T_INT, "128", 1, 65536, NULL, R(batch_size), 0, 0, NULL, 0, "images per step"},
    {"eval_every", T_INT, "2000", 0, BIG, NULL, R(eval_every), 0, 0, NULL, 0,
     "steps between evaluations (0: only at the end)"},
    {"checkpoint_every", T_INT, "2000", 0, BIG, NULL, R(checkpoint_every), 0, 0, NULL, 0,
     "steps between checkpoints (0: only at the end)"},
    {"log_every", T_INT, "50", 1, BIG, NULL, R(log_every), 0, 0, NULL, 0, "steps between log lines"},
    {"threads", T_INT, "0", 0, 4096, NULL, R(threads), 0, 0, NULL, 0,
     "OpenMP threads (0: OMP_NUM_THREADS or all cores)"},
    {"deterministic", T_BOOL, "false", 0, 0, NULL, R(deterministic), 0, 0, NULL, 0,
     "bit-reproducible runs on any core count: a fixed thread count (threads, or 1) and one loader thread; slower"},
    {"skip_nonfinite", T_BOOL, "false", 0, 0, NULL, R(skip_nonfinite), 0, 0, NULL, 0,
     "skip a batch whose loss or gradient is NaN or Inf (a warning each time; the run stops after 10 in a "
     "row) instead of stopping at the first"},

    {"data", T_SECTION, NULL, 0, 0, NULL, 0, 0, 0, NULL, 0, "training data and evaluation benchmarks"},
    {"data.source", T_ENUM, "synth", 0, 0, source_names, R(data.source), 0, 0, NULL, 0,
     "training images: the built-in synthetic face world, an image folder (one folder per identity) "
     "or insightface RecordIO"},
    {"data.path", T_PATH, NULL, 0, 0, NULL, R(data.path), 0, 0, "data.source=folder|recordio", 0,
     "image folder, or the .rec file (its .idx beside it); required for folder and recordio"},
    {"data.synth", T_SECTION, NULL, 0, 0, NULL, 0, 0, 0, "data.source=synth", 0, "synthetic face world"},
    {"data.synth.seed", T_INT, "1", 0, 9007199254740991.0, NULL, R(data.synth.seed), 0, 0, NULL, 0,
     "seed of the world (identities and their images)"},
    {"data.synth.identities", T_INT, "1000", 2, 10000000, NULL, R(data.synth.identities), 0, 0, NULL, 0,
     "training identities"},
    {"data.synth.images_per_identity", T_INT, "50", 1, 100000, NULL, R(data.synth.images_per_identity), 0, 0,
     NULL, 0, "images per identity (image indices 0..n-1, each rendered when a batch needs it)"},
    {"data.sampler", T_SECTION, NULL, 0, 0, NULL, 0, 0, 0, NULL, 0, "how batches are drawn"},
    {"data.sampler.kind", T_ENUM, "random", 0, 0, sampler_names, R(data.sampler.kind), 0, 0, NULL, 0,
     "random images, or pk: p identities x k images each (EKD, triplet, contrastive)"},
    {"data.sampler.p", T_INT, "32", 1, 65536, NULL, R(data.sampler.p), 0, 0, "data.sampler.kind=pk", 0,
     "identities per batch (p x k must equal batch_size)"},
    {"data.sampler.k", T_INT, "4", 1, 65536, NULL, R(data.sampler.k), 0, 0, "data.sampler.kind=pk", 0,
     "images per identity in a batch"},
    {"data.flip", T_BOOL, "true", 0, 0, NULL, R(data.flip), 0, 0, NULL, 0, "random horizontal flips"},
    {"data.resize", T_BOOL, "false", 0, 0, NULL, R(data.resize), 0, 0, NULL, 0,
     "resize images that are not 112x112 (bilinear) instead of failing"},
    {"data.workers", T_INT, "2", 1, 64, NULL, R(data.workers), 0, 0, NULL, 0,
     "loader threads decoding or rendering ahead of training (they share the cores with the model's threads)"},
    {"data.eval", T_LIST, "[]", 0, 0, NULL, R(data.eval), sizeof(fkd_recipe_bench), R(data.n_eval), NULL, 0,
     "verification benchmarks evaluated every eval_every steps"},
    {"data.eval[].name", T_STRING, NULL, 0, 0, NULL, B(name), 0, 0, NULL, F_REQUIRED,
     "benchmark name in logs and tables (unique)"},
    {"data.eval[].bin", T_PATH, NULL, 0, 0, NULL, B(bin), 0, 0, NULL, 0, "insightface verification .bin file"},
    {"data.eval[].synth", T_ENUM, NULL, 0, 0, bench_names, B(synth), 0, 0, NULL, 0,
     "built-in synthetic benchmark shaped like the named one"},
    {"data.eval[].pairs", T_PATH, NULL, 0, 0, NULL, B(pairs), 0, 0, NULL, 0, "LFW-style pair list (needs root)"},
    {"data.eval[].root", T_PATH, NULL, 0, 0, NULL, B(root), 0, 0, NULL, 0, "image folder of the pair list"},

    {"model", T_SECTION, NULL, 0, 0, NULL, 0, 0, 0, NULL, 0, "the model being trained (the student)"},
    {"model.arch", T_ENUM, "mbf", 0, 0, arch_names, R(model.arch), 0, 0, NULL, 0, "architecture"},
    {"model.embedding_size", T_INT, "512", 2, 8192, NULL, R(model.embedding_size), 0, 0, NULL, 0,
     "embedding dimension"},
    {"model.width", T_INT, "0", 0, 1024, NULL, R(model.width), 0, 0, NULL, 0,
     "base width: 0 = the architecture's (64); e.g. 16 for a quick narrow model"},
    {"model.precision", T_ENUM, "fp32", 0, 0, precision_names, R(model.precision), 0, 0, NULL, 0,
     "compute precision (bf16 keeps fp32 master weights; fp32 with a warning on CPUs without AVX-512)"},
    {"model.weights", T_PATH, NULL, 0, 0, NULL, R(model.weights), 0, 0, NULL, 0,
     "initial weights (.safetensors); random initialisation when left out. Class centres (head.weight) "
     "of the same shape in the file start the head too"},
    {"model.sync_bn", T_BOOL, "false", 0, 0, NULL, R(model.sync_bn), 0, 0, NULL, 0,
     "under mpirun: batch-norm statistics (and their gradients) over the global batch of every rank "
     "instead of each rank's own batch (docs/MPI.md); in one process the same statistics either way"},
    {"model.direct_conv", T_BOOL, "false", 0, 0, NULL, R(model.direct_conv), 0, 0, NULL, 0,
     "fp32: direct 3x3 convolutions instead of Winograd's: less memory (no Winograd workspace), slower "
     "training steps (docs/ENGINE.md, Memory)"},
    {"model.keep_activations", T_BOOL, "false", 0, 0, NULL, R(model.keep_activations), 0, 0, NULL, 0,
     "keep the batch-norm and PReLU outputs a training step otherwise recomputes before backward: "
     "faster steps, more memory (MobileFaceNet bf16, batch 32: ~6 % faster, 555 -> 693 MB; "
     "IResNet-18 fp32, batch 128: 5.3 -> 6.6 GB, more than PyTorch's 6.4; docs/PERFORMANCE.md)"},

    {"head", T_SECTION, NULL, 0, 0, NULL, 0, 0, 0, NULL, 0,
     "loss on labels; margin family: true-class logit s*(cos(m1*theta + m2) - m3)"},
    {"head.loss", T_ENUM, "arcface", 0, 0, head_names, R(head.loss), 0, 0, NULL, 0,
     "loss preset; none: no loss on labels (e.g. with the margin distiller, which brings its own)"},
    {"head.s", T_FLOAT, NULL, 0.001, 1024, NULL, R(head.s), 0, 0, NULL, 0, "scale (default: the preset's)"},
    {"head.m1", T_FLOAT, NULL, 0, 10, NULL, R(head.m1), 0, 0, NULL, 0,
     "multiplicative angular margin (default: the preset's)"},
    {"head.m2", T_FLOAT, NULL, 0, 3.14159, NULL, R(head.m2), 0, 0, NULL, 0,
     "additive angular margin, radians (default: the preset's)"},
    {"head.m3", T_FLOAT, NULL, 0, 2, NULL, R(head.m3), 0, 0, NULL, 0,
     "additive cosine margin (default: the preset's)"},
    {"head.margin", T_FLOAT, NULL, 0, 100, NULL, R(head.margin), 0, 0, "head.loss=contrastive|triplet", 0,
     "distance margin (default: the preset's)"},
    {"head.easy_margin", T_BOOL, "false", 0, 0, NULL, R(head.easy_margin), 0, 0, NULL, 0,
     "ArcFace: no margin where cos(theta) <= 0 (insightface's easy_margin)"},
    {"head.straight_through", T_BOOL, "false", 0, 0, NULL, R(head.straight_through), 0, 0, NULL, 0,
     "ArcFace: pass the gradient as if no margin were applied (newer arcface_torch); default exact"},
    {"head.intra", T_FLOAT, "0", 0, 100, NULL, R(head.intra), 0, 0, NULL, 0,
     "weight of the ArcFace paper's intra-loss, mean theta_y / pi"},
    {"head.inter", T_FLOAT, "0", 0, 100, NULL, R(head.inter), 0, 0, NULL, 0,
     "weight of the ArcFace paper's inter-loss, minus the mean inter-centre angle / pi"},
    {"head.triplet", T_SECTION, NULL, 0, 0, NULL, 0, 0, 0, "head.loss=triplet", 0, "triplet loss options"},
    {"head.triplet.mining", T_ENUM, "semi-hard", 0, 0, mining_names, R(head.triplet.mining), 0, 0, NULL, 0,
     "triplets inside a batch: all, hard (hardest positive and negative), semi-hard (FaceNet)"},
    {"head.triplet.normalize", T_BOOL, "true", 0, 0, NULL, R(head.triplet.normalize), 0, 0, NULL, 0,
     "L2-normalise embeddings before the squared distances"},
    {"head.center", T_SECTION, NULL, 0, 0, NULL, 0, 0, 0, NULL, 0, "center loss added to the head (Wen et al.)"},
    {"head.center.lambda", T_FLOAT, "0", 0, 1e6, NULL, R(head.center.lambda), 0, 0, NULL, 0,
     "weight of the center loss (0: off)"},
    {"head.center.alpha", T_FLOAT, "0.5", 0, 1, NULL, R(head.center.alpha), 0, 0, NULL, 0,
     "learning rate of the class centres"},

    {"optimizer", T_SECTION, NULL, 0, 0, NULL, 0, 0, 0, NULL, 0, "optimizer"},
    {"optimizer.type", T_ENUM, "sgd", 0, 0, optim_names, R(optim.kind), 0, 0, NULL, 0, "algorithm"},
    {"optimizer.lr", T_FLOAT, "0.1", 0, 100, NULL, R(optim.lr), 0, 0, NULL, 0,
     "peak learning rate (reached after warmup)"},
    {"optimizer.momentum", T_FLOAT, "0.9", 0, 1, NULL, R(optim.momentum), 0, 0, "optimizer.type=sgd", 0,
     "momentum"},
    {"optimizer.nesterov", T_BOOL, "false", 0, 0, NULL, R(optim.nesterov), 0, 0, "optimizer.type=sgd", 0,
     "Nesterov momentum"},
    {"optimizer.betas", T_FLOATS, "[0.9, 0.999]", 0, 1, NULL, R(optim.betas), 2, 0, "optimizer.type=adamw", 0,
     "moment decay rates [beta1, beta2]"},
    {"optimizer.eps", T_FLOAT, "1e-8", 0, 1, NULL, R(optim.eps), 0, 0, "optimizer.type=adamw", 0,
     "denominator guard"},
    {"optimizer.weight_decay", T_FLOAT, "0.0005", 0, 1, NULL, R(optim.weight_decay), 0, 0, NULL, 0,
     "weight decay (decoupled for adamw)"},

    {"schedule", T_SECTION, NULL, 0, 0, NULL, 0, 0, 0, NULL, 0, "learning-rate schedule"},
    {"schedule.type", T_ENUM, "poly", 0, 0, schedule_names, R(schedule.kind), 0, 0, NULL, 0,
     "poly: lr*(1-t/T)^power; step: lr*gamma at each milestone; cosine; constant"},
    {"schedule.power", T_FLOAT, "2", 0, 100, NULL, R(schedule.power), 0, 0, "schedule.type=poly", 0,
     "exponent of the polynomial decay"},
    {"schedule.warmup_steps", T_INT, "0", 0, BIG, NULL, R(schedule.warmup_steps), 0, 0, NULL, 0,
     "linear warmup from 0, in steps"},
    {"schedule.warmup_epochs", T_INT, "0", 0, 1000, NULL, R(schedule.warmup_epochs), 0, 0, NULL, 0,
     "linear warmup from 0, in epochs (not together with warmup_steps)"},
    {"schedule.milestones", T_INTS, "[]", 1, BIG, NULL, R(schedule.milestones), R(schedule.n_milestones), 0,
     "schedule.type=step", 0, "increasing steps (epochs when `epochs` is set) where lr is multiplied by gamma"},
    {"schedule.gamma", T_FLOAT, "0.1", 0, 1, NULL, R(schedule.gamma), 0, 0, "schedule.type=step", 0,
     "factor applied at each milestone"},

    {"teacher", T_SECTION, NULL, 0, 0, NULL, 0, 0, 0, NULL, 0, "the teacher (distillation recipes)"},
    {"teacher.model", T_PATH, NULL, 0, 0, NULL, R(teacher.model), 0, 0, NULL, 0,
     ".safetensors (weights and class centres) or .onnx; required when distill is not empty"},
    {"teacher.arch", T_ENUM, NULL, 0, 0, arch_names, R(teacher.arch), 0, 0, NULL, 0,
     "architecture of a .safetensors teacher (default: from the file's metadata)"},
    {"teacher.precision", T_ENUM, "fp32", 0, 0, precision_names, R(teacher.precision), 0, 0, NULL, 0,
     "the teacher's compute precision (bf16: bf16 weights and activations, outputs read as fp32; fp32 with a "
     "warning on CPUs without AVX-512)"},
    {"teacher.direct_conv", T_BOOL, "false", 0, 0, NULL, R(teacher.direct_conv), 0, 0, NULL, 0,
     "fp32: direct 3x3 convolutions instead of Winograd's: less memory (no Winograd workspace), slower "
     "teacher forward (docs/ENGINE.md, Memory)"},
    {"teacher.cache", T_BOOL, "true", 0, 0, NULL, R(teacher.cache), 0, 0, NULL, 0,
     "cache teacher outputs on disk when the methods only read its embedding and logits"},
    {"teacher.cache_dir", T_PATH, NULL, 0, 0, NULL, R(teacher.cache_dir), 0, 0, NULL, 0,
     "folder of the teacher cache, shared between runs (default: $FACEKD_CACHE or ~/.cache/facekd)"},

    {"distill", T_LIST, "[]", 0, 0, NULL, R(distill), sizeof(fkd_recipe_method), R(n_distill), NULL, F_OPEN,
     "distillation methods, summed with their weights; each item's other keys are the method's "
     "parameters (see below)"},
    {"distill[].method", T_STRING, NULL, 0, 0, NULL, M(method), 0, 0, NULL, F_REQUIRED,
     "kd, fitnet, darkrank, sp, cckd, rkd, shrinkteanet, triplet, margin, ekd, l2 or cosine"},
    {"distill[].weight", T_FLOAT, NULL, 0, 1e6, NULL, M(weight), 0, 0, NULL, 0,
     "weight of the method's loss (default: the method's own)"},
};
#define N_FIELDS (sizeof schema / sizeof schema[0])

_Static_assert(offsetof(fkd_recipe_method, node) == 0, "F_OPEN items start with their node");

#undef R
#undef B
#undef M

/* The key of a field (after its last dot) and whether its parent is `scope`. */
static const char *field_key(const field *f)
{
    const char *dot = strrchr(f->path, '.');
    return dot ? dot + 1 : f->path;
}

static bool in_scope(const field *f, const char *scope)
{
    const char *key = field_key(f);
    size_t n = strlen(scope);
    if (key == f->path) return n == 0;
    return (size_t)(key - 1 - f->path) == n && strncmp(f->path, scope, n) == 0;
}

static const field *find_field(const char *path)
{
    for (size_t i = 0; i < N_FIELDS; i++)
        if (strcmp(schema[i].path, path) == 0) return &schema[i];
    return NULL;
}

static const field *find_in_scope(const char *scope, const char *key)
{
    for (size_t i = 0; i < N_FIELDS; i++)
        if (in_scope(&schema[i], scope) && strcmp(field_key(&schema[i]), key) == 0) return &schema[i];
    return NULL;
}

const char *fkd_recipe_enum_name(const char *key_path, int value)
{
    const field *f = find_field(key_path);
    if (!f || f->type != T_ENUM || value < 0) return "?";
    for (int i = 0; f->names[i]; i++)
        if (i == value) return f->names[i];
    return "?";
}

/* ---- messages ---------------------------------------------------------------------------- */

static fkd_status fail_where(const char *where, const char *path, const char *fmt, va_list ap)
{
    char msg[FKD__RECIPE_MSG_CAP];
    vsnprintf(msg, sizeof msg, fmt, ap);
    return FKD_FAIL(FKD_ERR_FORMAT, "%s%s: %s", where, path, msg);
}

/* "file:line:col: path: message" at a node's value (or key). */
static fkd_status __attribute__((format(printf, 4, 5)))
fail_at(const fkd_yaml_node *n, bool at_key, const char *path, const char *fmt, ...)
{
    char where[FKD__RECIPE_PATH_CAP];
    fkd_yaml_where(n, at_key, where, sizeof where);
    va_list ap;
    va_start(ap, fmt);
    fkd_status s = fail_where(where, path, fmt, ap);
    va_end(ap);
    return s;
}

/* The same at the node found under `path` in the recipe tree, or naming only the file. */
static fkd_status __attribute__((format(printf, 3, 4)))
fail_path(const fkd_recipe *r, const char *path, const char *fmt, ...)
{
    char where[FKD__RECIPE_PATH_CAP];
    const fkd_yaml_node *n = fkd_yaml_find(r->tree, path);
    if (n)
        fkd_yaml_where(n, false, where, sizeof where);
    else
        snprintf(where, sizeof where, "%s: ", r->path);
    va_list ap;
    va_start(ap, fmt);
    fkd_status s = fail_where(where, path, fmt, ap);
    va_end(ap);
    return s;
}

/* How a node reads in "got ..." messages. */
static const char *describe(const fkd_yaml_node *n, char *buf, size_t cap)
{
    if (n->kind == FKD_YAML_MAP) return "a mapping";
    if (n->kind == FKD_YAML_LIST) return "a list";
    if (fkd_yaml_is_null(n)) return n->text[0] ? "null" : "nothing";
    snprintf(buf, cap, "\"%.60s%s\"", n->text, strlen(n->text) > 60 ? "..." : "");
    return buf;
}

/* ---- scalars ------------------------------------------------------------------------------ */

static fkd_status expect(const fkd_yaml_node *n, const char *path, const char *what)
{
    char buf[80];
    return fail_at(n, false, path, "expected %s, got %s", what, describe(n, buf, sizeof buf));
}

/* Numbers are plain scalars made of digits, sign, point and exponent: no hex, inf or nan. */
static bool number_text(const fkd_yaml_node *n, const char *chars)
{
    return n->kind == FKD_YAML_SCALAR && !n->quoted && n->text[0] && strspn(n->text, chars) == strlen(n->text);
}

/* The shortest text that reads back as exactly the same double; whole numbers in full. */
static void format_double(double v, char *buf, size_t cap)
{
    if (v == floor(v) && fabs(v) < 1e15) {
        snprintf(buf, cap, "%.0f", v);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return;
    }
}

static fkd_status check_range(const fkd_yaml_node *n, const char *path, double v, double min, double max)
{
    if (v >= min && v <= max) return FKD_OK;
    char lo[32], hi[32];
    format_double(min, lo, sizeof lo);
    format_double(max, hi, sizeof hi);
    if (isinf(max)) return fail_at(n, false, path, "must be at least %s, got %s", lo, n->text);
    return fail_at(n, false, path, "must be between %s and %s, got %s", lo, hi, n->text);
}

static fkd_status scalar_float(const fkd_yaml_node *n, const char *path, double min, double max, double *out)
{
    if (!number_text(n, "0123456789+-.eE")) return expect(n, path, "a number");
    char *end;
    errno = 0;
    double v = strtod(n->text, &end);
    if (*end || !isfinite(v) || errno == ERANGE) return expect(n, path, "a number");
    FKD_TRY(check_range(n, path, v, min, max));
    *out = v;
    return FKD_OK;
}

static fkd_status scalar_int(const fkd_yaml_node *n, const char *path, double min, double max, int64_t *out)
{
    if (!number_text(n, "0123456789+-")) return expect(n, path, "an integer");
    char *end;
    errno = 0;
    long long v = strtoll(n->text, &end, 10);
    if (*end || errno == ERANGE) return expect(n, path, "an integer");
    FKD_TRY(check_range(n, path, (double)v, min, max));
    *out = v;
    return FKD_OK;
}

static fkd_status scalar_bool(const fkd_yaml_node *n, const char *path, bool *out)
{
    static const char *const yes[] = {"true", "True", "TRUE"}, *const no[] = {"false", "False", "FALSE"};
    if (n->kind == FKD_YAML_SCALAR && !n->quoted)
        for (int i = 0; i < 3; i++) {
            if (strcmp(n->text, yes[i]) == 0) return *out = true, FKD_OK;
            if (strcmp(n->text, no[i]) == 0) return *out = false, FKD_OK;
        }
    return expect(n, path, "true or false");
}

static fkd_status scalar_string(const fkd_yaml_node *n, const char *path, const char **out)
{
    if (n->kind != FKD_YAML_SCALAR || fkd_yaml_is_null(n)) return expect(n, path, "a string");
    *out = n->text;
    return FKD_OK;
}

static fkd_status scalar_enum(const fkd_yaml_node *n, const char *path, const char *const *names, int *out)
{
    char list[FKD__RECIPE_MSG_CAP] = "", buf[80];
    if (n->kind == FKD_YAML_SCALAR && !fkd_yaml_is_null(n))
        for (int i = 0; names[i]; i++)
            if (strcmp(n->text, names[i]) == 0) return *out = i, FKD_OK;
    for (int i = 0; names[i]; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", names[i]);
    return fail_at(n, false, path, "expected one of %s; got %s", list, describe(n, buf, sizeof buf));
}

/* A list of numbers: each item checked, messages name the item ("betas[1]"). */
static fkd_status scalar_floats(const fkd_yaml_node *n, const char *path, size_t want, double min, double max,
                                double *out)
{
    char item[FKD__RECIPE_PATH_CAP];
    if (n->kind != FKD_YAML_LIST) return expect(n, path, "a list of numbers");
    if (want && n->n != want)
        return fail_at(n, false, path, "expected a list of %zu numbers, got %zu", want, n->n);
    for (size_t i = 0; i < n->n; i++) {
        fkd_yaml_path_index(item, sizeof item, path, i);
        FKD_TRY(scalar_float(n->items[i], item, min, max, &out[i]));
    }
    return FKD_OK;
}

/* ---- paths -------------------------------------------------------------------------------- */

/* Removes "." and "dir/.." components of an absolute path in place (lexically: the
 * recipe names files that may not exist yet, so realpath cannot be used). */
static void normalize_path(char *path)
{
    char *out = path;
    const char *in = path;
    while (*in) {
        while (*in == '/') in++;
        size_t n = strcspn(in, "/");
        if (n == 0) break;
        if (n == 1 && in[0] == '.') {
            /* drop */
        } else if (n == 2 && in[0] == '.' && in[1] == '.') {
            while (out > path && *--out != '/') {}
        } else {
            *out++ = '/';
            memmove(out, in, n);
            out += n;
        }
        in += n;
    }
    if (out == path) *out++ = '/';
    *out = '\0';
}

/* Paths written in a file are relative to its folder; others (--set, defaults) to the
 * current directory. The result is absolute, normalized and malloc'ed. */
static char *resolve_path(const fkd_yaml_node *n, const char *text)
{
    if (text[0] == '/') {
        char *out = strdup(text);
        if (out) normalize_path(out);
        return out;
    }
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) return NULL;
    const char *src = n && n->line > 0 ? n->src : "";
    const char *slash = strrchr(src, '/');
    size_t dir_len = slash ? (size_t)(slash - src) : 0;
    char *out = NULL;
    int len;
    if (!slash)
        len = asprintf(&out, "%s/%s", cwd, text);
    else if (src[0] == '/')
        len = asprintf(&out, "%.*s/%s", (int)dir_len, src, text);
    else
        len = asprintf(&out, "%s/%.*s/%s", cwd, (int)dir_len, src, text);
    if (len < 0) return NULL;
    normalize_path(out);
    return out;
}

/* ---- filling the struct from the tree ------------------------------------------------------ */

static bool when_holds(const fkd_recipe *r, const field *f, char *cond_key, size_t cap, const char **value_now)
{
    const char *eq = strchr(f->when, '=');
    snprintf(cond_key, cap, "%.*s", (int)(eq - f->when), f->when);
    const field *c = find_field(cond_key);
    int v = *(const int *)((const char *)r + c->offset);
    *value_now = v >= 0 ? c->names[v] : "unset";
    const char *alt = eq + 1;
    size_t n = strlen(*value_now);
    while (*alt) {
        size_t len = strcspn(alt, "|");
        if (len == n && strncmp(alt, *value_now, n) == 0) return true;
        alt += len + (alt[len] == '|');
    }
    return false;
}

static fkd_status read_leaf(const field *f, const fkd_yaml_node *n, const char *path, char *base)
{
    void *dst = base + f->offset;
    switch (f->type) {
    case T_BOOL: return scalar_bool(n, path, dst);
    case T_INT: return scalar_int(n, path, f->min, f->max, dst);
    case T_FLOAT: return scalar_float(n, path, f->min, f->max, dst);
    case T_ENUM: return scalar_enum(n, path, f->names, dst);
    case T_FLOATS: return scalar_floats(n, path, f->aux, f->min, f->max, dst);
    case T_STRING:
    case T_PATH: {
        const char *text = NULL;
        FKD_TRY(scalar_string(n, path, &text));
        char **s = dst;
        free(*s);
        *s = f->type == T_PATH ? resolve_path(n, text) : strdup(text);
        return *s ? FKD_OK : FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", path);
    }
    case T_INTS: {
        if (n->kind != FKD_YAML_LIST) return expect(n, path, "a list of integers");
        int64_t **v = dst;
        size_t *count = (size_t *)(base + f->aux);
        free(*v);
        *count = 0;
        *v = calloc(n->n ? n->n : 1, sizeof **v);
        if (!*v) return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", path);
        char item[FKD__RECIPE_PATH_CAP];
        for (size_t i = 0; i < n->n; i++, (*count)++) {
            fkd_yaml_path_index(item, sizeof item, path, i);
            FKD_TRY(scalar_int(n->items[i], item, f->min, f->max, &(*v)[i]));
        }
        return FKD_OK;
    }
    case T_SECTION:
    case T_LIST: break;
    }
    return FKD_FAIL(FKD_ERR_ARG, "%s: not a value key", path);
}

static void set_unset(const field *f, char *base)
{
    if (f->type == T_FLOAT) *(double *)(base + f->offset) = NAN;
    if (f->type == T_ENUM) *(int *)(base + f->offset) = -1;
}

static fkd_status fill_default(const field *f, const char *path, char *base)
{
    if (!f->def) {
        set_unset(f, base);
        return FKD_OK;
    }
    fkd_yaml_node *n;
    FKD_TRY(fkd_yaml_parse(f->def, strlen(f->def), "schema default", false, &n));
    fkd_status s = n ? read_leaf(f, n, path, base) : FKD_FAIL(FKD_ERR_ARG, "%s: empty default", path);
    fkd_yaml_free(n);
    return s;
}

static fkd_status unknown_key(const fkd_yaml_node *n, const char *scope, const char *path)
{
    char keys[FKD__RECIPE_MSG_CAP] = "";
    for (size_t i = 0; i < N_FIELDS; i++) {
        if (!in_scope(&schema[i], scope) || (schema[i].flags & F_LOADER)) continue;
        snprintf(keys + strlen(keys), sizeof keys - strlen(keys), "%s%s", keys[0] ? ", " : "",
                 field_key(&schema[i]));
    }
    return fail_at(n, true, path, "unknown key (expected one of: %s)", keys);
}

static fkd_status fill_scope(fkd_recipe *r, fkd_yaml_node *map, const char *scope, const char *path, char *base,
                             bool open, const fkd_yaml_node *anchor);

static fkd_status fill_list(fkd_recipe *r, const field *f, fkd_yaml_node *list, const char *path, char *base)
{
    if (list->kind != FKD_YAML_LIST) return expect(list, path, "a list");
    char *items = calloc(list->n ? list->n : 1, f->aux);
    if (!items) return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", path);
    /* Published before filling so fkd_recipe_free releases a half-filled list. */
    *(char **)(base + f->offset) = items;
    *(size_t *)(base + f->aux2) = list->n;
    char item_scope[FKD__RECIPE_PATH_CAP], item_path[FKD__RECIPE_PATH_CAP];
    snprintf(item_scope, sizeof item_scope, "%s[]", f->path);
    for (size_t i = 0; i < list->n; i++) {
        fkd_yaml_node *item = list->items[i];
        fkd_yaml_path_index(item_path, sizeof item_path, path, i);
        if (item->kind != FKD_YAML_MAP) return expect(item, item_path, "a mapping");
        char *ib = items + i * f->aux;
        if (f->flags & F_OPEN) *(fkd_yaml_node **)ib = item;
        FKD_TRY(fill_scope(r, item, item_scope, item_path, ib, f->flags & F_OPEN, item));
    }
    return FKD_OK;
}

static fkd_status fill_scope(fkd_recipe *r, fkd_yaml_node *map, const char *scope, const char *path, char *base,
                             bool open, const fkd_yaml_node *anchor)
{
    char child[FKD__RECIPE_PATH_CAP], cond[FKD__RECIPE_PATH_CAP];
    for (size_t i = 0; map && i < map->n; i++) {
        const fkd_yaml_node *n = map->items[i];
        const field *f = find_in_scope(scope, n->key);
        fkd_yaml_path_key(child, sizeof child, path, n->key);
        if (f && (f->flags & F_LOADER))
            return fail_at(n, true, child, "can only be given in a recipe file, not with --set");
        if (!f && !open) return unknown_key(n, scope, child);
    }
    for (size_t i = 0; i < N_FIELDS; i++) {
        const field *f = &schema[i];
        if (!in_scope(f, scope) || (f->flags & F_LOADER)) continue;
        fkd_yaml_path_key(child, sizeof child, path, field_key(f));
        fkd_yaml_node *n = fkd_yaml_get(map, field_key(f));
        const char *now;
        if (n) {
            n->used = true;
            if (f->when && !when_holds(r, f, cond, sizeof cond, &now))
                return fail_at(n, true, child, "only used when %s is %s (it is %s)", cond, strchr(f->when, '=') + 1,
                               now);
        }
        if (f->type == T_SECTION) {
            if (n && n->kind != FKD_YAML_MAP) return expect(n, child, "a mapping");
            FKD_TRY(fill_scope(r, n, f->path, child, base, false, n ? n : anchor));
        } else if (f->type == T_LIST) {
            if (n) FKD_TRY(fill_list(r, f, n, child, base));
        } else if (n) {
            FKD_TRY(read_leaf(f, n, child, base));
        } else if (f->flags & F_REQUIRED) {
            return fail_at(anchor, false, path, "missing key '%s'", field_key(f));
        } else {
            FKD_TRY(fill_default(f, child, base));
        }
    }
    return FKD_OK;
}

/* ---- checks across keys --------------------------------------------------------------------- */

static fkd_status check_eval(const fkd_recipe *r)
{
    char p[FKD__RECIPE_PATH_CAP];
    for (size_t i = 0; i < r->data.n_eval; i++) {
        const fkd_recipe_bench *b = &r->data.eval[i];
        fkd_yaml_path_index(p, sizeof p, "data.eval", i);
        int kinds = (b->bin != NULL) + (b->synth != FKD_RECIPE_BENCH_NONE) + (b->pairs != NULL);
        if (kinds != 1)
            return fail_path(r, p, "give exactly one of bin, synth or pairs (got %d)", kinds);
        if (b->pairs && !b->root) return fail_path(r, p, "pairs needs root (the image folder)");
        if (b->root && !b->pairs) return fail_path(r, p, "root is only used with pairs");
        for (size_t j = 0; j < i; j++)
            if (strcmp(r->data.eval[j].name, b->name) == 0) {
                snprintf(p, sizeof p, "data.eval[%zu].name", i);
                return fail_path(r, p, "benchmark name '%s' is already used by data.eval[%zu]", b->name, j);
            }
    }
    return FKD_OK;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static fkd_status check_recipe(const fkd_recipe *r)
{
    if (r->epochs == 0 && r->steps == 0) return fail_path(r, "steps", "give epochs or steps (the training length)");
    if (r->epochs > 0 && r->steps > 0) return fail_path(r, "steps", "give epochs or steps, not both");
    if (r->data.source != FKD_SOURCE_SYNTH && !r->data.path)
        return fail_path(r, "data.source", "%s needs data.path", source_names[r->data.source]);
    if (r->data.sampler.kind == FKD_RECIPE_SAMPLER_PK && r->data.sampler.p * r->data.sampler.k != r->batch_size)
        return fail_path(r, "data.sampler", "p x k = %" PRId64 " x %" PRId64 " = %" PRId64 " must equal batch_size (%" PRId64 ")",
                         r->data.sampler.p, r->data.sampler.k, r->data.sampler.p * r->data.sampler.k, r->batch_size);
    FKD_TRY(check_eval(r));
    if (r->schedule.warmup_steps > 0 && r->schedule.warmup_epochs > 0)
        return fail_path(r, "schedule.warmup_epochs", "give warmup_steps or warmup_epochs, not both");
    for (size_t i = 1; i < r->schedule.n_milestones; i++)
        if (r->schedule.milestones[i] <= r->schedule.milestones[i - 1]) {
            char p[64];
            snprintf(p, sizeof p, "schedule.milestones[%zu]", i);
            return fail_path(r, p, "milestones must increase (%" PRId64 " after %" PRId64 ")",
                             r->schedule.milestones[i], r->schedule.milestones[i - 1]);
        }
    if (r->teacher.model && !ends_with(r->teacher.model, ".safetensors") && !ends_with(r->teacher.model, ".onnx"))
        return fail_path(r, "teacher.model", "expected a .safetensors or .onnx file");
    if (r->n_distill > 0 && !r->teacher.model)
        return fail_path(r, "distill", "distillation needs a teacher: set teacher.model");
    return FKD_OK;
}

/* name defaults to the file name without its extension; output to runs/<name>. */
static fkd_status fill_derived(fkd_recipe *r)
{
    if (!r->name) {
        const char *base = strrchr(r->path, '/');
        base = base ? base + 1 : r->path;
        size_t n = strcspn(base, ".");
        r->name = strndup(base, n ? n : strlen(base));
        if (!r->name) return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", r->path);
    }
    if (!r->output) {
        char *rel;
        if (asprintf(&rel, "runs/%s", r->name) < 0) return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", r->path);
        r->output = resolve_path(NULL, rel);
        free(rel);
        if (!r->output) return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", r->path);
    }
    for (size_t i = 0; i < r->n_distill; i++) r->distill[i].index = i;
    return FKD_OK;
}

/* ---- loading: extends chains, --set ------------------------------------------------------- */

typedef struct {
    char *real[FKD__RECIPE_MAX_EXTENDS];
    char *shown[FKD__RECIPE_MAX_EXTENDS];
    int n;
} extends_chain;

static fkd_status load_chain(const char *path, extends_chain *chain, fkd_yaml_node **out)
{
    *out = NULL;
    fkd_yaml_node *tree;
    FKD_TRY(fkd_yaml_load_file(path, &tree));
    if (!tree) return FKD_FAIL(FKD_ERR_FORMAT, "%s: empty recipe", path);
    if (tree->kind != FKD_YAML_MAP) {
        char buf[80];
        fkd_status s = FKD_FAIL(FKD_ERR_FORMAT, "%s:%d:%d: a recipe is a mapping of keys to values, got %s", path,
                                tree->line, tree->col, describe(tree, buf, sizeof buf));
        fkd_yaml_free(tree);
        return s;
    }
    fkd_yaml_node *ext = fkd_yaml_take(tree, "extends");
    if (!ext) {
        *out = tree;
        return FKD_OK;
    }
    fkd_status s = FKD_OK;
    const char *text = NULL;
    char *base_path = NULL, *real = NULL;
    s = scalar_string(ext, "extends", &text);
    if (s == FKD_OK) {
        const char *slash = strrchr(path, '/');
        if (text[0] == '/' || !slash)
            base_path = strdup(text);
        else if (asprintf(&base_path, "%.*s/%s", (int)(slash - path), path, text) < 0)
            base_path = NULL;
        if (!base_path) s = FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", path);
    }
    if (s == FKD_OK && !(real = realpath(base_path, NULL)))
        s = fail_at(ext, false, "extends", "cannot open %s: %s", base_path, strerror(errno));
    for (int i = 0; s == FKD_OK && i < chain->n; i++) {
        /* The first recipe's real path is NULL when realpath failed on it (a file
         * deleted since, a memfd): a cycle through it still ends at the depth limit. */
        if (!chain->real[i] || strcmp(chain->real[i], real) != 0) continue;
        char cycle[FKD__RECIPE_MSG_CAP] = "";
        for (int j = i; j < chain->n; j++)
            snprintf(cycle + strlen(cycle), sizeof cycle - strlen(cycle), "%s -> ", chain->shown[j]);
        snprintf(cycle + strlen(cycle), sizeof cycle - strlen(cycle), "%s", base_path);
        s = fail_at(ext, false, "extends", "cycle: %s", cycle);
    }
    if (s == FKD_OK && chain->n == FKD__RECIPE_MAX_EXTENDS)
        s = fail_at(ext, false, "extends", "more than %d recipes extend each other", FKD__RECIPE_MAX_EXTENDS);
    fkd_yaml_node *base = NULL;
    if (s == FKD_OK) {
        chain->real[chain->n] = real;
        chain->shown[chain->n] = base_path;
        chain->n++;
        real = base_path = NULL; /* owned by the chain now */
        s = load_chain(chain->shown[chain->n - 1], chain, &base);
    }
    free(real);
    free(base_path);
    fkd_yaml_free(ext);
    if (s != FKD_OK) {
        fkd_yaml_free(tree);
        return s;
    }
    *out = fkd_yaml_merge(base, tree);
    return FKD_OK;
}

static fkd_status load_tree(const char *path, const char *const *sets, size_t n_sets, fkd_yaml_node **out)
{
    extends_chain chain = {.n = 0};
    fkd_status s = FKD_OK;
    chain.real[0] = realpath(path, NULL);
    chain.shown[0] = strdup(path);
    chain.n = 1;
    if (!chain.shown[0]) s = FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", path);
    if (s == FKD_OK) s = load_chain(path, &chain, out);
    for (int i = 0; i < chain.n; i++) {
        free(chain.real[i]);
        free(chain.shown[i]);
    }
    for (size_t i = 0; s == FKD_OK && i < n_sets; i++) {
        if (strncmp(sets[i], "extends", 7) == 0 && strchr(".[=", sets[i][7]))
            s = FKD_FAIL(FKD_ERR_ARG, "--set %s: extends can only be given in a recipe file", sets[i]);
        else
            s = fkd_yaml_set(*out, sets[i]);
    }
    if (s != FKD_OK) {
        fkd_yaml_free(*out);
        *out = NULL;
    }
    return s;
}

fkd_status fkd_recipe_load(fkd_recipe *r, const char *path, const char *const *sets, size_t n_sets)
{
    memset(r, 0, sizeof *r);
    fkd_status s = load_tree(path, sets, n_sets, &r->tree);
    if (s == FKD_OK && !(r->path = strdup(path))) s = FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", path);
    if (s == FKD_OK) s = fill_scope(r, r->tree, "", "", (char *)r, false, r->tree);
    if (s == FKD_OK) s = fill_derived(r);
    if (s == FKD_OK) s = check_recipe(r);
    if (s != FKD_OK) fkd_recipe_free(r);
    return s;
}

static void free_scope(const char *scope, char *base)
{
    char item_scope[FKD__RECIPE_PATH_CAP];
    for (size_t i = 0; i < N_FIELDS; i++) {
        const field *f = &schema[i];
        if (!in_scope(f, scope) || (f->flags & F_LOADER)) continue;
        void *dst = base + f->offset;
        if (f->type == T_SECTION) free_scope(f->path, base);
        if (f->type == T_STRING || f->type == T_PATH || f->type == T_INTS) {
            free(*(void **)dst);
            *(void **)dst = NULL;
        }
        if (f->type == T_LIST) {
            char *items = *(char **)dst;
            size_t n = *(size_t *)(base + f->aux2);
            snprintf(item_scope, sizeof item_scope, "%s[]", f->path);
            for (size_t j = 0; items && j < n; j++) free_scope(item_scope, items + j * f->aux);
            free(items);
            *(char **)dst = NULL;
        }
    }
}

void fkd_recipe_free(fkd_recipe *r)
{
    if (!r) return;
    free_scope("", (char *)r);
    fkd_yaml_free(r->tree);
    free(r->path);
    memset(r, 0, sizeof *r);
}

/* ---- writing the resolved recipe ---------------------------------------------------------- */

static bool is_unset(const field *f, const char *base)
{
    const void *dst = base + f->offset;
    if (f->type == T_STRING || f->type == T_PATH) return *(char *const *)dst == NULL;
    if (f->type == T_FLOAT) return isnan(*(const double *)dst);
    if (f->type == T_ENUM) return *(const int *)dst < 0;
    return false;
}

/* Strings that would read back as null are quoted; so are those other YAML readers would
 * take for a number or a boolean, so the saved recipe means the same to them. */
static void write_string(fkd_yaml_writer *w, const char *s)
{
    static const char *const words[] = {"true", "false", "yes", "no", "on", "off", NULL};
    fkd_yaml_node probe = {.kind = FKD_YAML_SCALAR, .text = (char *)s};
    bool quote = fkd_yaml_is_null(&probe) || (number_text(&probe, "0123456789+-.eE") && strpbrk(s, "0123456789"));
    for (int i = 0; words[i] && !quote; i++) quote = strcasecmp(s, words[i]) == 0;
    fkd_yaml_writer_scalar(w, s, quote);
}

static void write_value(fkd_yaml_writer *w, const field *f, const char *base)
{
    const void *dst = base + f->offset;
    char buf[64];
    switch (f->type) {
    case T_BOOL: fkd_yaml_writer_scalar(w, *(const bool *)dst ? "true" : "false", false); break;
    case T_INT:
        snprintf(buf, sizeof buf, "%" PRId64, *(const int64_t *)dst);
        fkd_yaml_writer_scalar(w, buf, false);
        break;
    case T_FLOAT:
        format_double(*(const double *)dst, buf, sizeof buf);
        fkd_yaml_writer_scalar(w, buf, false);
        break;
    case T_STRING:
    case T_PATH: write_string(w, *(char *const *)dst); break;
    case T_ENUM: fkd_yaml_writer_scalar(w, f->names[*(const int *)dst], false); break;
    case T_FLOATS:
        fkd_yaml_writer_begin(w, FKD_YAML_LIST);
        for (size_t i = 0; i < f->aux; i++) {
            format_double(((const double *)dst)[i], buf, sizeof buf);
            fkd_yaml_writer_scalar(w, buf, false);
        }
        fkd_yaml_writer_end(w, FKD_YAML_LIST);
        break;
    case T_INTS:
        fkd_yaml_writer_begin(w, FKD_YAML_LIST);
        for (size_t i = 0; i < *(const size_t *)(base + f->aux); i++) {
            snprintf(buf, sizeof buf, "%" PRId64, (*(int64_t *const *)dst)[i]);
            fkd_yaml_writer_scalar(w, buf, false);
        }
        fkd_yaml_writer_end(w, FKD_YAML_LIST);
        break;
    case T_SECTION:
    case T_LIST: break;
    }
}

static void write_scope(fkd_yaml_writer *w, const fkd_recipe *r, const char *scope, const char *base,
                        const fkd_yaml_node *open_node)
{
    char cond[FKD__RECIPE_PATH_CAP], item_scope[FKD__RECIPE_PATH_CAP];
    const char *now;
    for (size_t i = 0; i < N_FIELDS; i++) {
        const field *f = &schema[i];
        if (!in_scope(f, scope) || (f->flags & F_LOADER) || is_unset(f, base)) continue;
        if (f->when && !when_holds(r, f, cond, sizeof cond, &now)) continue;
        fkd_yaml_writer_scalar(w, field_key(f), false);
        if (f->type == T_SECTION) {
            fkd_yaml_writer_begin(w, FKD_YAML_MAP);
            write_scope(w, r, f->path, base, NULL);
            fkd_yaml_writer_end(w, FKD_YAML_MAP);
        } else if (f->type == T_LIST) {
            const char *items = *(char *const *)(base + f->offset);
            size_t n = *(const size_t *)(base + f->aux2);
            snprintf(item_scope, sizeof item_scope, "%s[]", f->path);
            fkd_yaml_writer_begin(w, FKD_YAML_LIST);
            for (size_t j = 0; j < n; j++) {
                const char *ib = items + j * f->aux;
                fkd_yaml_writer_begin(w, FKD_YAML_MAP);
                write_scope(w, r, item_scope, ib, (f->flags & F_OPEN) ? *(fkd_yaml_node *const *)ib : NULL);
                fkd_yaml_writer_end(w, FKD_YAML_MAP);
            }
            fkd_yaml_writer_end(w, FKD_YAML_LIST);
        } else {
            write_value(w, f, base);
        }
    }
    /* Method parameters, as written (the schema does not know them). */
    for (size_t i = 0; open_node && i < open_node->n; i++) {
        const fkd_yaml_node *p = open_node->items[i];
        if (find_in_scope(scope, p->key)) continue;
        fkd_yaml_writer_scalar(w, p->key, false);
        fkd_yaml_writer_node(w, p);
    }
}

fkd_status fkd_recipe_emit(const fkd_recipe *r, char **yaml)
{
    fkd_yaml_writer *w;
    FKD_TRY(fkd_yaml_writer_new(&w));
    fkd_yaml_writer_begin(w, FKD_YAML_MAP);
    write_scope(w, r, "", (const char *)r, NULL);
    fkd_yaml_writer_end(w, FKD_YAML_MAP);
    return fkd_yaml_writer_finish(w, yaml);
}

fkd_status fkd_recipe_save(const fkd_recipe *r, const char *path)
{
    char *yaml;
    FKD_TRY(fkd_recipe_emit(r, &yaml));
    fkd_status s = fkd_atomic_write(path, yaml, strlen(yaml));
    free(yaml);
    return s;
}

/* ---- method parameters -------------------------------------------------------------------- */

double fkd_recipe_method_weight(const fkd_recipe_method *m, double method_default)
{
    return isnan(m->weight) ? method_default : m->weight;
}

/* The parameter node (marked read) and its key path, or NULL when absent. */
static fkd_yaml_node *param(const fkd_recipe_method *m, const char *key, char *path, size_t cap)
{
    char item[64];
    snprintf(item, sizeof item, "distill[%zu]", m->index);
    fkd_yaml_path_key(path, cap, item, key);
    fkd_yaml_node *n = fkd_yaml_get(m->node, key);
    if (n) n->used = true;
    return n;
}

fkd_status fkd_recipe_param_float(const fkd_recipe_method *m, const char *key, double def, double min, double max,
                                  double *out)
{
    char path[FKD__RECIPE_PATH_CAP];
    const fkd_yaml_node *n = param(m, key, path, sizeof path);
    *out = def;
    return n ? scalar_float(n, path, min, max, out) : FKD_OK;
}

fkd_status fkd_recipe_param_int(const fkd_recipe_method *m, const char *key, int64_t def, int64_t min,
                                int64_t max, int64_t *out)
{
    char path[FKD__RECIPE_PATH_CAP];
    const fkd_yaml_node *n = param(m, key, path, sizeof path);
    *out = def;
    return n ? scalar_int(n, path, (double)min, (double)max, out) : FKD_OK;
}

fkd_status fkd_recipe_param_bool(const fkd_recipe_method *m, const char *key, bool def, bool *out)
{
    char path[FKD__RECIPE_PATH_CAP];
    const fkd_yaml_node *n = param(m, key, path, sizeof path);
    *out = def;
    return n ? scalar_bool(n, path, out) : FKD_OK;
}

fkd_status fkd_recipe_param_string(const fkd_recipe_method *m, const char *key, const char *def,
                                   const char *const *choices, const char **out)
{
    char path[FKD__RECIPE_PATH_CAP];
    const fkd_yaml_node *n = param(m, key, path, sizeof path);
    *out = def;
    if (!n) return FKD_OK;
    if (!choices) return scalar_string(n, path, out);
    int i;
    FKD_TRY(scalar_enum(n, path, choices, &i));
    *out = choices[i];
    return FKD_OK;
}

fkd_status fkd_recipe_param_floats(const fkd_recipe_method *m, const char *key, const double *def, size_t n_def,
                                   double min, double max, double **out, size_t *n_out)
{
    char path[FKD__RECIPE_PATH_CAP];
    const fkd_yaml_node *n = param(m, key, path, sizeof path);
    *out = NULL;
    *n_out = 0;
    size_t count = n ? n->n : n_def;
    double *v = calloc(count ? count : 1, sizeof *v);
    if (!v) return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", path);
    fkd_status s = FKD_OK;
    if (n)
        s = scalar_floats(n, path, 0, min, max, v);
    else if (n_def)
        memcpy(v, def, n_def * sizeof *v);
    if (s != FKD_OK) {
        free(v);
        return s;
    }
    *out = v;
    *n_out = count;
    return FKD_OK;
}

fkd_status fkd_recipe_param_strings(const fkd_recipe_method *m, const char *key, const char *const *def,
                                    size_t n_def, const char ***out, size_t *n_out)
{
    char path[FKD__RECIPE_PATH_CAP], item[FKD__RECIPE_PATH_CAP];
    const fkd_yaml_node *n = param(m, key, path, sizeof path);
    *out = NULL;
    *n_out = 0;
    if (n && n->kind != FKD_YAML_LIST) return expect(n, path, "a list of strings");
    size_t count = n ? n->n : n_def;
    const char **v = calloc(count ? count : 1, sizeof *v);
    if (!v) return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < count; i++) {
        if (!n) {
            v[i] = def[i];
            continue;
        }
        fkd_yaml_path_index(item, sizeof item, path, i);
        fkd_status s = scalar_string(n->items[i], item, &v[i]);
        if (s != FKD_OK) {
            free(v);
            return s;
        }
    }
    *out = v;
    *n_out = count;
    return FKD_OK;
}

fkd_status fkd_recipe_params_done(const fkd_recipe_method *m)
{
    char path[FKD__RECIPE_PATH_CAP], item[64];
    snprintf(item, sizeof item, "distill[%zu]", m->index);
    for (size_t i = 0; i < m->node->n; i++) {
        const fkd_yaml_node *n = m->node->items[i];
        if (n->used) continue;
        fkd_yaml_path_key(path, sizeof path, item, n->key);
        return fail_at(n, true, path, "unknown parameter of method %s", m->method);
    }
    return FKD_OK;
}

/* ---- the reference (docs/RECIPES.md) ------------------------------------------------------ */

const char fkd_recipe_example_train[] =
    "# Train MobileFaceNet with ArcFace on the synthetic face world.\n"
    "name: mbf_arcface_synth\n"
    "steps: 4000\n"
    "batch_size: 128\n"
    "eval_every: 1000\n"
    "data:\n"
    "  source: synth\n"
    "  synth: {identities: 1000, images_per_identity: 40}\n"
    "  eval:\n"
    "    - {name: lfw, synth: synth-lfw}\n"
    "    - {name: cfp_fp, synth: synth-cfp-fp}\n"
    "model: {arch: mbf, embedding_size: 512}\n"
    "head: {loss: arcface, s: 64, m2: 0.5}\n"
    "optimizer: {type: sgd, lr: 0.1, momentum: 0.9, weight_decay: 0.0005}\n"
    "schedule: {type: poly, power: 2, warmup_steps: 200}\n";

const char fkd_recipe_example_distill[] =
    "# Distill an arcface_torch ResNet-50 into MobileFaceNet on MS1M (RecordIO) with EKD + KD.\n"
    "name: r50_to_mbf_ekd\n"
    "epochs: 20\n"
    "batch_size: 128\n"
    "data:\n"
    "  source: recordio\n"
    "  path: /data/ms1m-retinaface/train.rec\n"
    "  sampler: {kind: pk, p: 32, k: 4}\n"
    "  eval:\n"
    "    - {name: lfw, bin: /data/ms1m-retinaface/lfw.bin}\n"
    "    - {name: agedb_30, bin: /data/ms1m-retinaface/agedb_30.bin}\n"
    "model: {arch: mbf}\n"
    "head: {loss: arcface}\n"
    "schedule: {type: poly, warmup_epochs: 1}\n"
    "teacher:\n"
    "  model: ../models/ms1mv3_arcface_r50.safetensors\n"
    "  cache_dir: /tmp/facekd-cache\n"
    "distill:\n"
    "  - method: ekd\n"
    "    fars: [1.0e-1, 1.0e-2, 1.0e-3, 1.0e-4, 1.0e-5, 1.0e-6]\n"
    "    hard_negatives: 2000\n"
    "  - method: kd\n"
    "    weight: 0.5\n"
    "    T: 4\n";

static const char doc_intro[] =
    "# Recipes\n\n"
    "A recipe is a YAML file describing one run of `facekd train` or `facekd distill`: data, model,\n"
    "loss, optimizer, schedule and, for distillation, the teacher and the methods. This page is\n"
    "generated from the schema in `lib/io/recipe.c` by `facekd recipe --doc`; a test checks that\n"
    "the committed file equals the generated text, so edit the schema, not this file.\n\n"
    "## A training recipe\n\n```yaml\n";

static const char doc_rules[] =
    "## Commands\n\n"
    "| command | what it does |\n"
    "|---|---|\n"
    "| `facekd recipe check FILE [--set KEY.PATH=VALUE]...` | validate a recipe and print it resolved |\n"
    "| `facekd recipe --doc` | print this reference |\n"
    "| `facekd train FILE [--set ...]`, `facekd distill FILE [--set ...]` | run a recipe; the resolved "
    "recipe is saved as `OUTPUT/recipe.yaml` |\n\n"
    "## How a recipe is read\n\n"
    "- **Strict.** An unknown key, a value of the wrong type, a value out of range or a key that\n"
    "  does not apply (e.g. `optimizer.betas` with `optimizer.type: sgd`) is an error naming\n"
    "  `file:line:column` and the key path, e.g.\n"
    "  `r.yaml:14:7: distill[2].T: expected a number, got \"four\"`. Duplicate keys, tabs in the\n"
    "  indentation, several documents in one file and an empty file are errors too. Anchors\n"
    "  (`&a`), aliases (`*a`) and tags (`!!str`) are rejected: share settings with `extends`.\n"
    "- **Types.** Numbers and booleans (`true`/`false`) are plain scalars: a quoted `\"4\"` is a\n"
    "  string, not a number. Strings may be plain or quoted.\n"
    "- **Defaults.** Every key not given takes the default below; the resolved recipe shows\n"
    "  them all.\n"
    "- **Paths** written in a recipe are relative to that recipe's folder; paths given with\n"
    "  `--set` and default paths are relative to the current directory. Files are not opened\n"
    "  while the recipe is read: a missing data file is reported by the part that reads it.\n"
    "- **`extends: base.yaml`** reads the base recipe first (relative to the extending file)\n"
    "  and lays this file over it: mappings merge key by key, recursively; scalars and lists\n"
    "  replace the base's. Bases may extend further bases; a cycle is an error naming the chain.\n"
    "- **`--set key.path=value`** (repeatable) overrides any key after `extends` is merged. The\n"
    "  value is read as YAML: `--set optimizer.lr=0.05`, `--set schedule.milestones=[8,14]`,\n"
    "  `--set 'distill[0].weight=2'`. List items are addressed as `distill[0]`, the same\n"
    "  spelling error messages use; `distill.0.weight` is accepted too (no quoting needed in a\n"
    "  shell). An index equal to the list's length appends an item (`--set distill.1.method=kd`).\n"
    "  Errors in a value start with the assignment: `--set head.s=abc: head.s: expected a number,\n"
    "  got \"abc\"`.\n"
    "- **The resolved recipe** (every key, defaults filled in, absolute paths, no `extends`) is\n"
    "  saved in the run folder as `recipe.yaml`, and printed by `facekd recipe check FILE`.\n"
    "  Loading it again gives the same recipe.\n\n"
    "## Keys\n\n"
    "| key | type | default | allowed | meaning |\n"
    "|---|---|---|---|---|\n";

static const char doc_methods[] =
    "\n## Distillation methods\n\n"
    "Each `distill` item names a `method`, an optional `weight` and the method's parameters.\n"
    "The methods check their own parameters when the run starts (same `file:line:col: key path`\n"
    "messages); a parameter no method reads is an error. Defaults as published with each method\n"
    "(the method's source file in `lib/distill/` is authoritative):\n\n"
    "| method | parameters (default) |\n"
    "|---|---|\n"
    "| `kd` | `T` temperature |\n"
    "| `fitnet` | `student_tap`, `teacher_tap`; weight 100 |\n"
    "| `darkrank` | `alpha`, `beta`, `list_length` |\n"
    "| `sp` | `tap` |\n"
    "| `cckd` | `gamma`, `order` |\n"
    "| `rkd` | `distance_weight` (25), `angle_weight` (50) |\n"
    "| `shrinkteanet` | `taps` |\n"
    "| `triplet` | `m_min` (0.2), `m_max` (0.5), `mining` |\n"
    "| `margin` | `m_min` (0.2), `m_max` (0.5), `s` (64) |\n"
    "| `ekd` | `fars` ([1e-1 … 1e-6]), `momentum` (0.99), `temperature` (0.01), `pos_weight` (0.02), "
    "`neg_weight` (0.01), `hard_negatives` (2000), `s` (64), `m` (0.4) |\n"
    "| `l2` | — |\n"
    "| `cosine` | — |\n";

typedef struct {
    char *buf;
    size_t len, cap;
    bool failed;
} strbuf;

static void __attribute__((format(printf, 2, 3))) sb_printf(strbuf *b, const char *fmt, ...)
{
    for (int attempt = 0; attempt < 2 && !b->failed; attempt++) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->buf ? b->buf + b->len : NULL, b->buf ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = true;
            return;
        }
        if (b->buf && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap : 8192;
        while (cap <= b->len + (size_t)n) cap *= 2;
        char *grown = realloc(b->buf, cap);
        if (!grown) b->failed = true;
        else {
            b->buf = grown;
            b->cap = cap;
        }
    }
}

static const char *type_doc(const field *f, char *buf, size_t cap)
{
    switch (f->type) {
    case T_SECTION: return "mapping";
    case T_LIST: return "list of mappings";
    case T_BOOL: return "boolean";
    case T_INT: return "integer";
    case T_FLOAT: return "number";
    case T_STRING: return "string";
    case T_PATH: return "path";
    case T_ENUM: return "word";
    case T_FLOATS: snprintf(buf, cap, "list of %zu numbers", f->aux); return buf;
    case T_INTS: return "list of integers";
    }
    return "?";
}

static void doc_row(strbuf *b, const field *f)
{
    char type[32], lo[32], hi[32];
    sb_printf(b, "| `%s` | %s | ", f->path, type_doc(f, type, sizeof type));
    if (f->flags & F_REQUIRED)
        sb_printf(b, "required");
    else if (f->def && f->type != T_SECTION)
        sb_printf(b, "`%s`", f->def);
    else
        sb_printf(b, "—");
    sb_printf(b, " | ");
    if (f->type == T_ENUM) {
        for (int i = 0; f->names[i]; i++) sb_printf(b, "%s`%s`", i ? ", " : "", f->names[i]);
    } else if (f->type == T_INT || f->type == T_FLOAT || f->type == T_FLOATS || f->type == T_INTS) {
        format_double(f->min, lo, sizeof lo);
        format_double(f->max, hi, sizeof hi);
        if (isinf(f->max))
            sb_printf(b, "≥ %s", lo);
        else
            sb_printf(b, "%s … %s", lo, hi);
    }
    sb_printf(b, " | %s", f->doc);
    if (f->when) {
        const char *eq = strchr(f->when, '=');
        sb_printf(b, ". Only when `%.*s` is ", (int)(eq - f->when), f->when);
        for (const char *alt = eq + 1; *alt;) {
            size_t len = strcspn(alt, "|");
            sb_printf(b, "%s`%.*s`", alt == eq + 1 ? "" : " or ", (int)len, alt);
            alt += len + (alt[len] == '|');
        }
    }
    sb_printf(b, " |\n");
}

fkd_status fkd_recipe_doc(char **markdown)
{
    strbuf b = {0};
    *markdown = NULL;
    sb_printf(&b, "%s%s```\n\n## A distillation recipe\n\n```yaml\n%s```\n\n%s", doc_intro, fkd_recipe_example_train,
              fkd_recipe_example_distill, doc_rules);
    for (size_t i = 0; i < N_FIELDS; i++) doc_row(&b, &schema[i]);
    sb_printf(&b, "%s", doc_methods);
    if (b.failed) {
        free(b.buf);
        return FKD_FAIL(FKD_ERR_NOMEM, "recipe reference: out of memory");
    }
    *markdown = b.buf;
    return FKD_OK;
}
