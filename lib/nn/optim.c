/* SGD and AdamW over fkd_param lists (semantics in optim.h). */
#include "nn/optim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Below this many elements a tensor is updated by one thread: spawning costs more. */
#define OPTIM_PARALLEL_MIN 32768

/* Up to two state tensors per parameter (SGD momentum: 1, AdamW: 2). */
#define OPTIM_MAX_SLOTS 2

typedef struct {
    fkd_param *param;
    bool decay;                    /* weight decay applies under the policy */
    float *state[OPTIM_MAX_SLOTS]; /* (storage) each, NULL when unused */
} optim_entry;

struct fkd_optim {
    fkd_optim_config cfg;
    int n_slots; /* state tensors per parameter */
    int n_entries;
    optim_entry *entries;
    int64_t step;
    size_t total_storage; /* elements updated per step */
    /* The state table for checkpoints: n_entries · n_slots tensors, then "step". */
    int n_states;
    fkd_optim_state *states;
};

static const char *const optim_kind_names[] = {
    [FKD_OPTIM_SGD] = "sgd", [FKD_OPTIM_ADAMW] = "adamw"};
static const char *const decay_policy_names[] = {
    [FKD_DECAY_ALL] = "all", [FKD_DECAY_NO_BN_PRELU] = "no_bn_prelu"};
_Static_assert(sizeof optim_kind_names / sizeof optim_kind_names[0] == FKD_OPTIM_KIND_COUNT,
               "one name per kind");
_Static_assert(sizeof decay_policy_names / sizeof decay_policy_names[0] == FKD_DECAY_POLICY_COUNT,
               "one name per decay policy");
/* State tensor suffixes per kind, PyTorch's state_dict names. */
static const char *const slot_names[FKD_OPTIM_KIND_COUNT][OPTIM_MAX_SLOTS] = {
    [FKD_OPTIM_SGD] = {"momentum_buffer", NULL},
    [FKD_OPTIM_ADAMW] = {"exp_avg", "exp_avg_sq"},
};

fkd_optim_config fkd_optim_sgd_defaults(void)
{
    fkd_optim_config c;
    memset(&c, 0, sizeof c);
    c.kind = FKD_OPTIM_SGD;
    c.momentum = 0.9f;
    c.weight_decay = 5e-4f;
    c.decay_policy = FKD_DECAY_ALL;
    return c;
}

fkd_optim_config fkd_optim_adamw_defaults(void)
{
    fkd_optim_config c;
    memset(&c, 0, sizeof c);
    c.kind = FKD_OPTIM_ADAMW;
    c.beta1 = 0.9f;
    c.beta2 = 0.999f;
    c.eps = 1e-8f;
    c.weight_decay = 0.01f;
    c.decay_policy = FKD_DECAY_ALL;
    return c;
}

/* Index of `name` in a table of `n` names, or -1 with the error recorded. */
static int parse_name(const char *what, const char *const *names, int n, const char *name)
{
    char choices[128] = "";
    for (int i = 0; i < n; i++) {
        if (strcmp(name, names[i]) == 0) return i;
        size_t l = strlen(choices);
        snprintf(choices + l, sizeof choices - l, i ? ", %s" : "%s", names[i]);
    }
    FKD_FAIL(FKD_ERR_ARG, "unknown %s '%s' (%s)", what, name, choices);
    return -1;
}

const char *fkd_optim_kind_name(fkd_optim_kind kind)
{
    return (unsigned)kind < FKD_OPTIM_KIND_COUNT ? optim_kind_names[kind] : "?";
}

const char *fkd_decay_policy_name(fkd_decay_policy policy)
{
    return (unsigned)policy < FKD_DECAY_POLICY_COUNT ? decay_policy_names[policy] : "?";
}

fkd_status fkd_optim_kind_parse(const char *name, fkd_optim_kind *kind)
{
    int i = parse_name("optimizer", optim_kind_names, FKD_OPTIM_KIND_COUNT, name);
    if (i >= 0) *kind = (fkd_optim_kind)i;
    return i >= 0 ? FKD_OK : FKD_ERR_ARG;
}

fkd_status fkd_decay_policy_parse(const char *name, fkd_decay_policy *policy)
{
    int i = parse_name("weight decay policy", decay_policy_names, FKD_DECAY_POLICY_COUNT, name);
    if (i >= 0) *policy = (fkd_decay_policy)i;
    return i >= 0 ? FKD_OK : FKD_ERR_ARG;
}

static fkd_status check_config(const fkd_optim_config *c)
{
    if ((unsigned)c->kind >= FKD_OPTIM_KIND_COUNT)
        return FKD_FAIL(FKD_ERR_ARG, "optimizer: unknown kind %d", (int)c->kind);
    const char *k = optim_kind_names[c->kind];
    if ((unsigned)c->decay_policy >= FKD_DECAY_POLICY_COUNT)
        return FKD_FAIL(FKD_ERR_ARG, "optimizer %s: unknown weight decay policy %d", k,
                        (int)c->decay_policy);
    if (!(c->weight_decay >= 0) || !isfinite(c->weight_decay))
        return FKD_FAIL(FKD_ERR_ARG, "optimizer %s: weight_decay must be >= 0, not %g", k,
                        c->weight_decay);
    if (c->kind == FKD_OPTIM_SGD) {
        if (!(c->momentum >= 0 && c->momentum < 1))
            return FKD_FAIL(FKD_ERR_ARG, "optimizer sgd: momentum must be in [0, 1), not %g",
                            c->momentum);
        if (c->nesterov && c->momentum == 0)
            return FKD_FAIL(FKD_ERR_ARG, "optimizer sgd: nesterov needs momentum > 0");
    } else {
        if (!(c->beta1 >= 0 && c->beta1 < 1) || !(c->beta2 >= 0 && c->beta2 < 1))
            return FKD_FAIL(FKD_ERR_ARG, "optimizer adamw: betas must be in [0, 1), not (%g, %g)",
                            c->beta1, c->beta2);
        if (!(c->eps > 0) || !isfinite(c->eps))
            return FKD_FAIL(FKD_ERR_ARG, "optimizer adamw: eps must be positive, not %g", c->eps);
    }
    return FKD_OK;
}

static bool is_trained(const fkd_param *p) { return p->trainable && p->grad != NULL; }

/* Checks the lists and counts the trained parameters. */
static fkd_status count_trained(fkd_param *const lists[], const int counts[], int n_lists, int *n)
{
    if (n_lists < 0 || (n_lists > 0 && (!lists || !counts)))
        return FKD_FAIL(FKD_ERR_ARG, "optimizer: bad parameter lists (%d lists)", n_lists);
    *n = 0;
    for (int l = 0; l < n_lists; l++) {
        if (counts[l] < 0 || (counts[l] > 0 && !lists[l]))
            return FKD_FAIL(FKD_ERR_ARG, "optimizer: parameter list %d: bad count %d or NULL list",
                            l, counts[l]);
        for (int i = 0; i < counts[l]; i++) {
            const fkd_param *p = &lists[l][i];
            if (!is_trained(p)) continue;
            if (!p->data || !p->name)
                return FKD_FAIL(FKD_ERR_ARG,
                                "optimizer: parameter list %d entry %d has no data or name", l, i);
            (*n)++;
        }
    }
    return FKD_OK;
}

void fkd_optim_free(fkd_optim *o)
{
    if (!o) return;
    if (o->entries) {
        for (int e = 0; e < o->n_entries; e++)
            for (int s = 0; s < OPTIM_MAX_SLOTS; s++) free(o->entries[e].state[s]);
    }
    if (o->states) {
        for (int i = 0; i < o->n_states; i++) free((char *)o->states[i].name);
    }
    free(o->entries);
    free(o->states);
    free(o);
}

/* Fills the checkpoint table: one row per state tensor, then "step". */
static fkd_status build_state_table(fkd_optim *o)
{
    o->n_states = 0;
    o->states = calloc((size_t)o->n_entries * (size_t)o->n_slots + 1, sizeof *o->states);
    if (!o->states) return FKD_FAIL(FKD_ERR_NOMEM, "optimizer: cannot allocate the state table");
    for (int e = 0; e < o->n_entries; e++) {
        const fkd_param *p = o->entries[e].param;
        for (int s = 0; s < o->n_slots; s++) {
            const char *suffix = slot_names[o->cfg.kind][s];
            size_t len = strlen(p->name) + 1 + strlen(suffix) + 1;
            char *name = malloc(len);
            if (!name) return FKD_FAIL(FKD_ERR_NOMEM, "optimizer: cannot allocate state names");
            snprintf(name, len, "%s.%s", p->name, suffix);
            o->states[o->n_states++] =
                (fkd_optim_state){name, FKD_OPTIM_STATE_F32, o->entries[e].state[s], p->storage, p};
        }
    }
    char *step_name = strdup("step");
    if (!step_name) return FKD_FAIL(FKD_ERR_NOMEM, "optimizer: cannot allocate state names");
    o->states[o->n_states++] = (fkd_optim_state){step_name, FKD_OPTIM_STATE_I64, &o->step, 1, NULL};
    return FKD_OK;
}

fkd_status fkd_optim_create(fkd_optim **out, const fkd_optim_config *config,
                            fkd_param *const lists[], const int counts[], int n_lists)
{
    *out = NULL;
    FKD_TRY(check_config(config));
    int n;
    FKD_TRY(count_trained(lists, counts, n_lists, &n));
    fkd_optim *o = calloc(1, sizeof *o);
    if (!o) return FKD_FAIL(FKD_ERR_NOMEM, "optimizer: out of memory");
    o->cfg = *config;
    o->n_slots = config->kind == FKD_OPTIM_ADAMW ? 2 : config->momentum > 0 ? 1 : 0;
    o->entries = calloc(n > 0 ? (size_t)n : 1, sizeof *o->entries);
    fkd_status s = FKD_OK;
    if (!o->entries) {
        s = FKD_FAIL(FKD_ERR_NOMEM, "optimizer: out of memory");
        goto fail;
    }
    for (int l = 0; l < n_lists; l++) {
        for (int i = 0; i < counts[l]; i++) {
            fkd_param *p = &lists[l][i];
            if (!is_trained(p)) continue;
            optim_entry *e = &o->entries[o->n_entries++];
            e->param = p;
            e->decay =
                config->weight_decay > 0 && (config->decay_policy == FKD_DECAY_ALL || p->decay);
            o->total_storage += p->storage;
            for (int k = 0; k < o->n_slots; k++) {
                e->state[k] = calloc(p->storage ? p->storage : 1, sizeof(float));
                if (!e->state[k]) {
                    s = FKD_FAIL(FKD_ERR_NOMEM,
                                 "optimizer: cannot allocate state for '%s' (%zu floats)", p->name,
                                 p->storage);
                    goto fail;
                }
            }
        }
    }
    s = build_state_table(o);
    if (s != FKD_OK) goto fail;
    *out = o;
    return FKD_OK;
fail:
    fkd_optim_free(o);
    return s;
}

/* ---- updates ------------------------------------------------------------------------- */

/* SGD on n elements. buf is NULL for momentum 0; `first` is PyTorch's "no buffer yet". */
static void sgd_update(float *restrict w, const float *restrict g, float *restrict buf, size_t n,
                       float lr, float wd, float momentum, bool nesterov, bool first)
{
#pragma omp for schedule(static) nowait
    for (size_t i = 0; i < n; i++) {
        float d = g[i] + wd * w[i];
        if (buf) {
            float b = first ? d : momentum * buf[i] + d;
            buf[i] = b;
            d = nesterov ? d + momentum * b : b;
        }
        w[i] -= lr * d;
    }
}

/* AdamW on n elements; step_size = lr / (1 - β1^t), bc2_sqrt = sqrt(1 - β2^t). */
static void adamw_update(float *restrict w, const float *restrict g, float *restrict m,
                         float *restrict v, size_t n, float decay_factor, float beta1, float beta2,
                         float eps, float step_size, float bc2_sqrt)
{
#pragma omp for schedule(static) nowait
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        float wi = w[i] * decay_factor;
        float mi = beta1 * m[i] + (1.0f - beta1) * gi;
        float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        w[i] = wi - step_size * mi / (sqrtf(vi) / bc2_sqrt + eps);
    }
}

fkd_status fkd_optim_step(fkd_optim *o, float lr)
{
    if (!(lr >= 0) || !isfinite(lr))
        return FKD_FAIL(FKD_ERR_ARG, "optimizer step: learning rate %g", lr);
    const fkd_optim_config *c = &o->cfg;
    bool first = o->step == 0;
    int64_t t = ++o->step;
    /* Scalars as PyTorch computes them: in double, then used as float. */
    double bc1 = 1.0 - pow((double)c->beta1, (double)t);
    float step_size = (float)((double)lr / bc1);
    float bc2_sqrt = (float)sqrt(1.0 - pow((double)c->beta2, (double)t));
    bool parallel = o->total_storage >= OPTIM_PARALLEL_MIN;
#pragma omp parallel if (parallel)
    for (int e = 0; e < o->n_entries; e++) {
        const optim_entry *en = &o->entries[e];
        fkd_param *p = en->param;
        float wd = en->decay ? c->weight_decay : 0.0f;
        if (c->kind == FKD_OPTIM_SGD)
            sgd_update(p->data, p->grad, en->state[0], p->storage, lr, wd, c->momentum, c->nesterov,
                       first);
        else
            adamw_update(p->data, p->grad, en->state[0], en->state[1], p->storage,
                         (float)(1.0 - (double)lr * wd), c->beta1, c->beta2, c->eps, step_size,
                         bc2_sqrt);
    }
    return FKD_OK;
}

int64_t fkd_optim_steps(const fkd_optim *o) { return o->step; }

int fkd_optim_param_count(const fkd_optim *o) { return o->n_entries; }

/* ---- state ---------------------------------------------------------------------------- */

int fkd_optim_state_count(const fkd_optim *o) { return o->n_states; }

fkd_status fkd_optim_state_get(const fkd_optim *o, int i, fkd_optim_state *entry)
{
    if (i < 0 || i >= o->n_states)
        return FKD_FAIL(FKD_ERR_ARG, "optimizer state: index %d out of range (%d tensors)", i,
                        o->n_states);
    *entry = o->states[i];
    return FKD_OK;
}

fkd_status fkd_optim_state_load(fkd_optim *o, const char *name, fkd_optim_state_dtype dtype,
                                const void *data, size_t count)
{
    for (int i = 0; i < o->n_states; i++) {
        const fkd_optim_state *s = &o->states[i];
        if (strcmp(s->name, name) != 0) continue;
        if (dtype != s->dtype)
            return FKD_FAIL(FKD_ERR_FORMAT, "optimizer state '%s': expected %s, got %s", name,
                            s->dtype == FKD_OPTIM_STATE_F32 ? "float32" : "int64",
                            dtype == FKD_OPTIM_STATE_F32 ? "float32" : "int64");
        if (count != s->count)
            return FKD_FAIL(FKD_ERR_FORMAT, "optimizer state '%s': expected %zu elements, got %zu",
                            name, s->count, count);
        if (s->dtype == FKD_OPTIM_STATE_I64 && *(const int64_t *)data < 0)
            return FKD_FAIL(FKD_ERR_FORMAT, "optimizer state '%s': negative step %lld", name,
                            (long long)*(const int64_t *)data);
        memcpy(s->data, data,
               count * (s->dtype == FKD_OPTIM_STATE_F32 ? sizeof(float) : sizeof(int64_t)));
        return FKD_OK;
    }
    return FKD_FAIL(FKD_ERR_NOTFOUND, "optimizer state '%s': no such tensor in this %s optimizer",
                    name, optim_kind_names[o->cfg.kind]);
}

/* ---- gradients ------------------------------------------------------------------------ */

static double sum_squares(const float *g, size_t n)
{
    double acc = 0;
#pragma omp parallel for reduction(+ : acc) schedule(static) if (n >= OPTIM_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) acc += (double)g[i] * g[i];
    return acc;
}

fkd_status fkd_params_grad_norm(fkd_param *const lists[], const int counts[], int n_lists,
                                double *norm)
{
    int n;
    FKD_TRY(count_trained(lists, counts, n_lists, &n));
    double acc = 0;
    for (int l = 0; l < n_lists; l++)
        for (int i = 0; i < counts[l]; i++)
            if (is_trained(&lists[l][i])) acc += sum_squares(lists[l][i].grad, lists[l][i].storage);
    *norm = sqrt(acc);
    return FKD_OK;
}

fkd_status fkd_params_clip_grad_norm(fkd_param *const lists[], const int counts[], int n_lists,
                                     double max_norm, double *norm)
{
    if (!(max_norm > 0))
        return FKD_FAIL(FKD_ERR_ARG, "clip_grad_norm: max_norm must be positive, not %g", max_norm);
    double total;
    FKD_TRY(fkd_params_grad_norm(lists, counts, n_lists, &total));
    if (norm) *norm = total;
    if (!isfinite(total)) {
        fkd_status s = fkd_params_check_finite(lists, counts, n_lists);
        return s != FKD_OK ? s
                           : FKD_FAIL(FKD_ERR_NUMERIC, "clip_grad_norm: gradient norm overflows");
    }
    double coef = max_norm / (total + 1e-6);
    if (coef >= 1.0) return FKD_OK;
    float scale = (float)coef;
    for (int l = 0; l < n_lists; l++) {
        for (int i = 0; i < counts[l]; i++) {
            fkd_param *p = &lists[l][i];
            if (!is_trained(p)) continue;
#pragma omp parallel for schedule(static) if (p->storage >= OPTIM_PARALLEL_MIN)
            for (size_t k = 0; k < p->storage; k++) p->grad[k] *= scale;
        }
    }
    return FKD_OK;
}

fkd_status fkd_params_check_finite(fkd_param *const lists[], const int counts[], int n_lists)
{
    int n;
    FKD_TRY(count_trained(lists, counts, n_lists, &n));
    for (int l = 0; l < n_lists; l++) {
        for (int i = 0; i < counts[l]; i++) {
            const fkd_param *p = &lists[l][i];
            if (!is_trained(p)) continue;
            int bad = 0;
#pragma omp parallel for reduction(| : bad) schedule(static) if (p->storage >= OPTIM_PARALLEL_MIN)
            for (size_t k = 0; k < p->storage; k++) bad |= !isfinite(p->grad[k]);
            if (!bad) continue;
            size_t k = 0;
            while (isfinite(p->grad[k])) k++;
            return FKD_FAIL(FKD_ERR_NUMERIC,
                            "gradient of '%s' is not finite (element %zu of %zu is %g)", p->name, k,
                            p->storage, p->grad[k]);
        }
    }
    return FKD_OK;
}
