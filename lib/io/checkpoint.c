#include "io/checkpoint.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PREFIX_HEAD "head."
#define PREFIX_OPTIM "optim."

/* Head parameters and optimizer state as extra tensors of the model file; names are
 * owned here, data points at the caller's memory. */
typedef struct {
    fkd_st_entry *entries;
    char **names;
    int64_t *flat_dims; /* optimizer state is flat: its shape is its element count */
    int count;
} extra_list;

static void extra_free(extra_list *l)
{
    for (int i = 0; l->names && i < l->count; i++) free(l->names[i]);
    free(l->names);
    free(l->entries);
    free(l->flat_dims);
}

/* `prefix` + `name`, unless `name` already starts with `prefix`: the margin head names its
 * class centres "head.weight", and the file must hold "head.weight", not "head.head.weight". */
static const char *own_prefix(const char *prefix, const char *name)
{
    return strncmp(name, prefix, strlen(prefix)) == 0 ? "" : prefix;
}

static fkd_status extra_add(extra_list *l, const char *prefix, const char *name, fkd_st_dtype dtype, int ndims,
                            const int64_t *dims, const void *data)
{
    prefix = own_prefix(prefix, name);
    size_t len = strlen(prefix) + strlen(name) + 1;
    char *full = malloc(len);
    if (!full) return FKD_FAIL(FKD_ERR_NOMEM, "checkpoint: out of memory");
    snprintf(full, len, "%s%s", prefix, name);
    l->names[l->count] = full;
    l->entries[l->count++] = (fkd_st_entry){full, dtype, ndims, dims, data};
    return FKD_OK;
}

static fkd_status collect_extra(extra_list *l, const fkd_checkpoint *ck)
{
    int n_optim = ck->optim ? fkd_optim_state_count(ck->optim) : 0;
    size_t cap = (size_t)(ck->head_count + n_optim) + 1;
    l->entries = calloc(cap, sizeof *l->entries);
    l->names = calloc(cap, sizeof *l->names);
    l->flat_dims = calloc(cap, sizeof *l->flat_dims);
    if (!l->entries || !l->names || !l->flat_dims) return FKD_FAIL(FKD_ERR_NOMEM, "checkpoint: out of memory");
    for (int i = 0; i < ck->head_count; i++) {
        const fkd_param *p = &ck->head_params[i];
        FKD_TRY(extra_add(l, PREFIX_HEAD, p->name, FKD_ST_F32, p->ndims, p->dims, p->data));
    }
    for (int i = 0; i < n_optim; i++) {
        fkd_optim_state st;
        FKD_TRY(fkd_optim_state_get(ck->optim, i, &st));
        l->flat_dims[i] = (int64_t)st.count;
        fkd_st_dtype dtype = st.dtype == FKD_OPTIM_STATE_I64 ? FKD_ST_I64 : FKD_ST_F32;
        FKD_TRY(extra_add(l, PREFIX_OPTIM, st.name, dtype, 1, &l->flat_dims[i], st.data));
    }
    return FKD_OK;
}

fkd_status fkd_checkpoint_save(const char *path, const fkd_checkpoint *ck)
{
    extra_list l = {0};
    fkd_status s = collect_extra(&l, ck);
    char step[32], epoch[32];
    snprintf(step, sizeof step, "%lld", (long long)ck->step);
    snprintf(epoch, sizeof epoch, "%lld", (long long)ck->epoch);
    fkd_st_meta meta[2 + FKD_CHECKPOINT_MAX_EXTRA_META] = {{"step", step}, {"epoch", epoch}};
    int n_meta = 2;
    for (int i = 0; i < ck->extra_count && i < FKD_CHECKPOINT_MAX_EXTRA_META; i++) meta[n_meta++] = ck->extra[i];
    if (s == FKD_OK) s = fkd_model_save_with(ck->model, path, &ck->meta, l.entries, l.count, meta, n_meta);
    extra_free(&l);
    return s;
}

fkd_status fkd_checkpoint_load_params(const fkd_safetensors *st, const char *prefix, fkd_param *params,
                                      int count)
{
    for (int i = 0; i < count; i++) {
        char name[512];
        snprintf(name, sizeof name, "%s%s", own_prefix(prefix, params[i].name), params[i].name);
        const fkd_st_tensor *t = fkd_safetensors_find(st, name);
        if (!t) return FKD_FAIL(FKD_ERR_FORMAT, "%s: tensor '%s' is missing", st->path, name);
        if (t->numel != params[i].numel)
            return FKD_FAIL(FKD_ERR_FORMAT, "%s: tensor '%s' has %lld elements, expected %lld", st->path,
                            name, (long long)t->numel, (long long)params[i].numel);
        fkd_st_tensor_to_f32(t, params[i].data);
    }
    return FKD_OK;
}

static fkd_status load_optim(const fkd_safetensors *st, fkd_optim *o)
{
    int n = fkd_optim_state_count(o);
    for (int i = 0; i < n; i++) {
        fkd_optim_state entry;
        FKD_TRY(fkd_optim_state_get(o, i, &entry));
        char name[512];
        snprintf(name, sizeof name, PREFIX_OPTIM "%s", entry.name);
        const fkd_st_tensor *t = fkd_safetensors_find(st, name);
        if (!t) return FKD_FAIL(FKD_ERR_FORMAT, "%s: optimizer tensor '%s' is missing", st->path, name);
        fkd_st_dtype want = entry.dtype == FKD_OPTIM_STATE_I64 ? FKD_ST_I64 : FKD_ST_F32;
        if (t->dtype != want || (size_t)t->numel != entry.count)
            return FKD_FAIL(FKD_ERR_FORMAT, "%s: optimizer tensor '%s' is %s[%lld], expected %s[%zu]",
                            st->path, name, fkd_st_dtype_name(t->dtype), (long long)t->numel,
                            fkd_st_dtype_name(want), entry.count);
        FKD_TRY(fkd_optim_state_load(o, entry.name, entry.dtype, t->data, entry.count));
    }
    return FKD_OK;
}

static fkd_status meta_int(const fkd_safetensors *st, const char *key, int64_t *out)
{
    const char *v = fkd_safetensors_meta(st, key);
    if (!v) return FKD_FAIL(FKD_ERR_FORMAT, "%s: metadata '%s' is missing (not a facekd checkpoint?)", st->path, key);
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < 0)
        return FKD_FAIL(FKD_ERR_FORMAT, "%s: metadata '%s' is not a count: '%s'", st->path, key, v);
    *out = x;
    return FKD_OK;
}

fkd_status fkd_checkpoint_load(const char *path, fkd_checkpoint *ck)
{
    fkd_safetensors st;
    FKD_TRY(fkd_safetensors_read(&st, path));
    fkd_status s = fkd_model_load_tensors(ck->model, &st);
    if (s == FKD_OK) s = fkd_checkpoint_load_params(&st, PREFIX_HEAD, ck->head_params, ck->head_count);
    if (s == FKD_OK && ck->optim) s = load_optim(&st, ck->optim);
    if (s == FKD_OK) s = meta_int(&st, "step", &ck->step);
    if (s == FKD_OK) s = meta_int(&st, "epoch", &ck->epoch);
    if (s == FKD_OK) s = fkd_model_meta_from(&st, &ck->meta);
    fkd_safetensors_free(&st);
    return s;
}
