/* Distillers: pluggable knowledge-distillation losses, registered by name.
 *
 * A distiller turns what the teacher and the student produced for the same batch into a
 * scalar loss and the gradient of that loss w.r.t. the student's tensors. Distillers are
 * pure math on plain fp32 row-major arrays: they never see the engine. The trainer runs
 * the student forward, calls every distiller of the recipe, sums weight_i · loss_i, adds
 * the gradients they returned into the student graph and backpropagates:
 *
 *     fkd_distill_option items[] = {{"T", "4", "recipe.yaml:14:7", false}};
 *     fkd_distill_options opts;
 *     fkd_distill_options_init(&opts, "distill[0]", items, 1);
 *     fkd_distill_context ctx = {.max_batch = 128, .d_s = 512, .d_t = 512,
 *                                .classes = 1000, .scale = 64};
 *     fkd_distiller *kd;
 *     FKD_TRY(fkd_distiller_create(&kd, "kd", &opts, &ctx));  // fails on unknown keys
 *     // kd->needs.flags says which inputs to fill: here embeddings and both centres.
 *     for (each step) {
 *         fkd_distill_inputs in = {.batch = b, .student_emb = e_s, .teacher_emb = e_t,
 *                                  .student_centres = w_s, .teacher_centres = w_t};
 *         fkd_distill_outputs out = {.grad_scale = weight, .d_student_emb = d_e_s,
 *                                    .d_student_centres = d_w_s};
 *         double loss;
 *         FKD_TRY(fkd_distiller_forward(kd, &in, &out, &loss));  // d_e_s += weight·∂loss/∂e_s
 *     }
 *     fkd_distiller_free(kd);
 *
 * Shapes (legend: b = batch of this step ≤ max_batch, d_s/d_t = student/teacher embedding
 * sizes, C = classes of the training set, c·h·w = a feature tap's per-sample size):
 *   student_emb (b, d_s), teacher_emb (b, d_t)          raw embeddings, not normalised
 *   student_centres (C, d_s), teacher_centres (C, d_t)  the heads' class centres (rows)
 *   student_logits (b, C)                               the student head's output
 *   labels (b)                                          class indices in [0, C)
 *   student_tap (b, c_s, h_s, w_s), teacher_tap (b, c_t, h_t, w_t)  plain NCHW
 *
 * Gradients ACCUMULATE (+=) into the buffers the caller provides, multiplied by
 * out->grad_scale: pass the recipe weight to have the distiller add weight·∂loss/∂x straight
 * into the student's gradient buffers, or 1 to get the weight-free gradient. The returned
 * loss is always weight-free. Zeroing is the caller's job, in one place.
 *
 * A distiller allocates every buffer in create (for max_batch); forward allocates
 * nothing. Large products go through fkd_sgemm, loops over the batch through OpenMP.
 * An instance is not re-entrant: one forward at a time.
 *
 * Adding a method: write lib/distill/<name>.c defining
 *     const fkd_distill_method fkd__distill_<name> = {...};
 * and add X(<name>) to FKD__DISTILL_METHODS in lib/distill/registry.c. See DISTILL.md.
 */
#ifndef FKD_DISTILL_DISTILLER_H
#define FKD_DISTILL_DISTILLER_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "nn/graph.h" /* fkd_param, for methods with trainable parameters */

/* ---- options: a method's parameters as (key, value text, place) ---------------------- */

/* One parameter as written in the recipe. The recipe module fills key/value/place; the
 * getters set `read`. The strings are borrowed: they must outlive the create call only. */
typedef struct {
    const char *key;   /* "T" */
    const char *value; /* the scalar's text: "4", "[0.1, 0.01]", "true", "stage3" */
    const char *place; /* "recipe.yaml:14:7" (where the value starts), or NULL */
    bool read;         /* set by a getter; keys the trainer owns (weight) come in as true */
} fkd_distill_option;

#define FKD_DISTILL_MAX_KNOWN 32

/* A method's parameter list. `scope` prefixes every message ("distill[2]" gives
 * "recipe.yaml:14:7: distill[2].T: expected a number, got \"four\""). The getters record
 * every key they were asked for, so fkd_distill_options_done() can list the known keys. */
typedef struct {
    const char *scope;
    const char *method; /* set by fkd_distiller_create() for messages */
    fkd_distill_option *items;
    int count;
    const char *known[FKD_DISTILL_MAX_KNOWN]; /* keys asked for, in order */
    int n_known;
} fkd_distill_options;

/* Points `o` at items[0..count) (borrowed; NULL/0 for "no parameters"). */
void fkd_distill_options_init(fkd_distill_options *o, const char *scope,
                              fkd_distill_option *items, int count);

/* A closed, open or half-open interval for float parameters. */
typedef struct {
    double lo, hi;
    bool lo_open, hi_open;
} fkd_distill_range;

#define FKD_DISTILL_ANY ((fkd_distill_range){-INFINITY, INFINITY, true, true})
#define FKD_DISTILL_POSITIVE ((fkd_distill_range){0.0, INFINITY, true, true})  /* (0, inf) */
#define FKD_DISTILL_NONNEG ((fkd_distill_range){0.0, INFINITY, false, true})   /* [0, inf) */
#define FKD_DISTILL_UNIT ((fkd_distill_range){0.0, 1.0, false, false})         /* [0, 1] */

/* Typed getters. Each looks `key` up (first match), marks it read, parses the value text
 * and checks the range; when the key is absent *out gets `def` (not range-checked: the
 * method's own default). Errors (FKD_ERR_ARG) read
 *     recipe.yaml:14:7: distill[2].T: expected a number, got "four"
 *     recipe.yaml:14:7: distill[2].T: -1 is out of range (0, inf)
 * Numbers are decimal (strtod syntax, finite); integers are whole decimal numbers;
 * booleans are true/false, yes/no, on/off (any case). */
fkd_status fkd_distill_opt_float(fkd_distill_options *o, const char *key, double def,
                                 fkd_distill_range range, double *out);
fkd_status fkd_distill_opt_int(fkd_distill_options *o, const char *key, int64_t def,
                               int64_t lo, int64_t hi, int64_t *out);
fkd_status fkd_distill_opt_bool(fkd_distill_options *o, const char *key, bool def, bool *out);
/* A list of numbers: "[0.1, 0.01]", "0.1, 0.01" or one number. Between min_n and max_n
 * elements, each in `range`. Absent: copies def[0..n_def). *n gets the count. */
fkd_status fkd_distill_opt_floats(fkd_distill_options *o, const char *key, const double *def,
                                  int n_def, int min_n, int max_n, fkd_distill_range range,
                                  double *out, int *n);
/* A word (tap names): non-empty, at most cap-1 characters, copied into out[cap]. */
fkd_status fkd_distill_opt_string(fkd_distill_options *o, const char *key, const char *def,
                                  char *out, size_t cap);
/* Records a create-time error that is not about one key, prefixed with the scope and the
 * method ("distill[2]: l2: needs equal embedding sizes, ..."); returns `status`. */
fkd_status fkd_distill_options_fail(const fkd_distill_options *o, fkd_status status,
                                    const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Fails on the first key nobody read:
 *     recipe.yaml:15:7: distill[1].tau: unknown parameter of method kd (known: T, s)
 *     recipe.yaml:16:7: distill[1].T: given twice (first at recipe.yaml:14:7)
 * fkd_distiller_create() calls it after the method's create. */
fkd_status fkd_distill_options_done(const fkd_distill_options *o);

/* ---- what a distiller needs, and what the trainer tells it ---------------------------- */

/* Inputs a distiller reads (fkd_distill_needs.flags). The trainer fills exactly these
 * members of fkd_distill_inputs (and may leave the others NULL). */
enum {
    FKD_DISTILL_NEED_STUDENT_EMB = 1u << 0,     /* student_emb; grads to d_student_emb */
    FKD_DISTILL_NEED_TEACHER_EMB = 1u << 1,     /* teacher_emb */
    FKD_DISTILL_NEED_STUDENT_CENTRES = 1u << 2, /* student_centres; d_student_centres */
    FKD_DISTILL_NEED_TEACHER_CENTRES = 1u << 3, /* teacher_centres */
    FKD_DISTILL_NEED_STUDENT_LOGITS = 1u << 4,  /* student_logits; d_student_logits */
    FKD_DISTILL_NEED_LABELS = 1u << 5,          /* labels */
    FKD_DISTILL_NEED_STUDENT_TAP = 1u << 6,     /* student_tap (needs.student_tap); grads */
    FKD_DISTILL_NEED_TEACHER_TAP = 1u << 7,     /* teacher_tap (needs.teacher_tap) */
    FKD_DISTILL_GIVES_MARGINS = 1u << 8,        /* writes out->margins (b) for the head */
};

#define FKD_DISTILL_TAP_NAME_MAX 64

/* What one instance needs (method defaults plus what its parameters added, e.g. a tap). */
typedef struct {
    unsigned flags;
    char student_tap[FKD_DISTILL_TAP_NAME_MAX]; /* "stage3", when NEED_STUDENT_TAP */
    char teacher_tap[FKD_DISTILL_TAP_NAME_MAX]; /* when NEED_TEACHER_TAP */
} fkd_distill_needs;

/* Per-sample shape of a tap (a flat tensor has h = w = 1). */
typedef struct {
    int64_t c, h, w;
} fkd_distill_tap_shape;

/* Looks up a named tap of the teacher or the student (for create-time buffer sizes);
 * fails with a message naming the tap when the graph has none such. */
typedef fkd_status (*fkd_distill_tap_shape_fn)(void *user, bool teacher, const char *name,
                                               fkd_distill_tap_shape *shape);

/* What the trainer knows when it builds a distiller. */
typedef struct {
    int64_t max_batch; /* largest b forward will see */
    int64_t d_s, d_t;  /* embedding sizes */
    int64_t classes;   /* C: rows of the centres, columns of the logits (0 = no head) */
    double scale;      /* s of the ArcFace-style heads (the teacher's training s); 0 = unknown */
    uint64_t seed;     /* for methods that initialise parameters (a regressor), with core/rng */
    fkd_distill_tap_shape_fn tap_shape; /* NULL when the trainer exposes no taps */
    void *tap_user;
} fkd_distill_context;

/* ---- one step ------------------------------------------------------------------------- */

typedef struct {
    int64_t batch;                 /* b, 1 ≤ b ≤ max_batch */
    const float *student_emb;      /* (b, d_s) */
    const float *teacher_emb;      /* (b, d_t) */
    const float *student_centres;  /* (C, d_s) */
    const float *teacher_centres;  /* (C, d_t) */
    const float *student_logits;   /* (b, C) */
    const int64_t *labels;         /* (b) */
    const float *student_tap;      /* (b, c_s·h_s·w_s) */
    const float *teacher_tap;      /* (b, c_t·h_t·w_t) */
    int64_t step;                  /* optimizer steps done so far (for schedules) */
} fkd_distill_inputs;

/* Where gradients go. A NULL buffer means "not wanted" (e.g. a frozen head): the method
 * skips that gradient. A NULL fkd_distill_outputs means evaluation: loss only, and the
 * method's running state (if any) is not updated. */
typedef struct {
    float grad_scale;         /* gradients added are grad_scale·∂loss/∂x */
    float *d_student_emb;     /* (b, d_s)  += */
    float *d_student_centres; /* (C, d_s)  += */
    float *d_student_logits;  /* (b, C)    += */
    float *d_student_tap;     /* (b, c_s·h_s·w_s) += */
    float *margins;           /* (b) written (=), when the method GIVES_MARGINS */
} fkd_distill_outputs;

/* A named float array of a method's running state (EKD's thresholds, say): `data` points
 * into the state, so a checkpoint reads it to save and writes it to restore. */
typedef struct {
    const char *name;
    float *data;
    int64_t numel;
} fkd_distill_tensor;

/* ---- a method: a table of functions --------------------------------------------------- */

typedef struct fkd_distill_method {
    const char *name;    /* "kd": the recipe's `method:` value */
    const char *summary; /* one line for method listings and --help */
    unsigned needs;      /* FKD_DISTILL_NEED_* every instance needs */

    /* Reads its parameters from `opts` (every key it knows, even when absent, so the
     * unknown-key message can list them), checks them against `ctx`, allocates its state
     * for ctx->max_batch and stores it in *state. May add flags and tap names to *needs
     * (which arrives holding `needs`). On failure frees what it allocated. */
    fkd_status (*create)(void **state, fkd_distill_needs *needs, fkd_distill_options *opts,
                         const fkd_distill_context *ctx);

    /* Loss of one batch (weight-free) into *loss; gradients accumulated into `out` (see
     * fkd_distill_outputs; `out` may be NULL). Inputs were checked against the needs. */
    fkd_status (*forward)(void *state, const fkd_distill_inputs *in,
                          const fkd_distill_outputs *out, double *loss);

    /* Frees the state; safe on NULL. */
    void (*free)(void *state);

    /* Optional (NULL when the method has no running state): fills up to `max` tensors
     * and returns how many the state has. */
    int (*state_tensors)(void *state, fkd_distill_tensor *tensors, int max);

    /* Optional (NULL when the method has no trainable parameters; FitNet's regressor has):
     * points *params at the state's parameter list (owned by the state, valid until free;
     * names like "regressor.weight", plain PyTorch layout, storage = numel) and returns its
     * length. forward ACCUMULATES out->grad_scale·∂loss/∂p into each p->grad when `out` is not
     * NULL; the trainer zeroes those gradients with the student's, gives the list to the
     * optimizer and saves it in checkpoints. */
    int (*params)(void *state, fkd_param **params);

    /* Optional (0 = 1): the weight the trainer uses when the recipe gives none (FitNets'
     * feature-map regression: 100). Read it through fkd_distiller_default_weight(). */
    double default_weight;
} fkd_distill_method;

/* ---- the registry --------------------------------------------------------------------- */

int fkd_distill_method_count(void);
const fkd_distill_method *fkd_distill_method_at(int i); /* NULL when out of range */
/* Finds a method by exact name; FKD_ERR_NOTFOUND lists the known names:
 *     unknown distillation method "kdd" (known: kd, darkrank, sp, cckd, rkd, l2, cosine) */
fkd_status fkd_distill_method_find(const char *name, const fkd_distill_method **out);

/* ---- an instance ---------------------------------------------------------------------- */

typedef struct {
    const fkd_distill_method *method;
    void *state;
    fkd_distill_needs needs;
    fkd_distill_context ctx; /* copy (tap callback not kept valid beyond create) */
} fkd_distiller;

/* Finds `method`, creates it from `opts` and `ctx`, then fails on any unread option. On
 * failure *out is NULL and the message names the scope ("distill[2]") and the problem. */
fkd_status fkd_distiller_create(fkd_distiller **out, const char *method,
                                fkd_distill_options *opts, const fkd_distill_context *ctx);

/* Checks in->batch and that every input and output the needs call for is present, runs
 * the method and checks that the loss is finite (FKD_ERR_NUMERIC otherwise). */
fkd_status fkd_distiller_forward(fkd_distiller *d, const fkd_distill_inputs *in,
                                 const fkd_distill_outputs *out, double *loss);

/* The instance's running state (0 tensors when the method has none). */
int fkd_distiller_state_tensors(fkd_distiller *d, fkd_distill_tensor *tensors, int max);

/* The weight to use when the recipe gives none: the method's default_weight, or 1. */
double fkd_distiller_default_weight(const fkd_distiller *d);

/* The instance's trainable parameters (0 and *params = NULL when the method has none). */
int fkd_distiller_params(fkd_distiller *d, fkd_param **params);

/* Frees the instance; safe on NULL. */
void fkd_distiller_free(fkd_distiller *d);

#endif
