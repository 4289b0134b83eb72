#include "io/checkpoint.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PREFIX_HEAD "head."
#define PREFIX_OPTIM "optim."

/* The tensors of one save, collected before a single write. Names and plain copies are
 * owned here; data pointers may also point at caller memory (head params, optim state). */
typedef struct {
    fkd_st_entry *entries;
    char **names;
    int count, cap;
    float *plain; /* model parameters in PyTorch layout, one block */
} entry_list;

static fkd_status entry_add(entry_list *l, const char *prefix, const char *name, fkd_st_dtype dtype,
                            int ndims, const int64_t *dims, const void *data)
{
    if (l->count == l->cap) {
        int cap = l->cap ? 2 * l->cap : 256;
        fkd_st_entry *e = realloc(l->entries, (size_t)cap * sizeof *e);
        if (!e) return FKD_FAIL(FKD_ERR_NOMEM, "checkpoint: out of memory");
        l->entries = e;
        char **n = realloc(l->names, (size_t)cap * sizeof *n);
        if (!n) return FKD_FAIL(FKD_ERR_NOMEM, "checkpoint: out of memory");
        l->names = n;
        l->cap = cap;
    }
    size_t len = strlen(prefix) + strlen(name) + 1;
    char *full = malloc(len);
    if (!full) return FKD_FAIL(FKD_ERR_NOMEM, "checkpoint: out of memory");
    snprintf(full, len, "%s%s", prefix, name);
    l->names[l->count] = full;
    l->entries[l->count] = (fkd_st_entry){full, dtype, ndims, dims, data};
    l->count++;
    return FKD_OK;
}

static void entry_list_free(entry_list *l)
{
    for (int i = 0; i < l->count; i++) free(l->names[i]);
    free(l->names);
    free(l->entries);
    free(l->plain);
}

static fkd_status add_model(entry_list *l, fkd_graph *g, const char *path)
{
    fkd_param *params;
    int count;
    FKD_TRY(fkd_graph_params(g, &params, &count));
    int64_t total = 0;
    for (int i = 0; i < count; i++) total += params[i].numel;
    l->plain = malloc(((size_t)total + 1) * sizeof *l->plain);
    if (!l->plain) return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory saving %d tensors", path, count);
    float *at = l->plain;
    for (int i = 0; i < count; i++) {
        FKD_TRY(fkd_graph_param_read(g, i, at));
        FKD_TRY(entry_add(l, "", params[i].name, FKD_ST_F32, params[i].ndims, params[i].dims, at));
        at += params[i].numel;
    }
    return FKD_OK;
}

/* Optimizer state tensors are flat: their shape is their element count. */
static fkd_status add_optim(entry_list *l, fkd_optim *o, int64_t *flat_dims)
{
    int n = fkd_optim_state_count(o);
    for (int i = 0; i < n; i++) {
        fkd_optim_state st;
        FKD_TRY(fkd_optim_state_get(o, i, &st));
        flat_dims[i] = (int64_t)st.count;
        fkd_st_dtype dtype = st.dtype == FKD_OPTIM_STATE_I64 ? FKD_ST_I64 : FKD_ST_F32;
        FKD_TRY(entry_add(l, PREFIX_OPTIM, st.name, dtype, 1, &flat_dims[i], st.data));
    }
    return FKD_OK;
}

fkd_status fkd_checkpoint_save(const char *path, const fkd_checkpoint *ck)
{
    entry_list l = {0};
    int n_optim = ck->optim ? fkd_optim_state_count(ck->optim) : 0;
    int64_t *flat_dims = calloc((size_t)n_optim + 1, sizeof *flat_dims);
    fkd_status s = flat_dims ? FKD_OK : FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", path);
    if (s == FKD_OK) s = add_model(&l, ck->model, path);
    for (int i = 0; s == FKD_OK && i < ck->head_count; i++) {
        const fkd_param *p = &ck->head_params[i];
        s = entry_add(&l, PREFIX_HEAD, p->name, FKD_ST_F32, p->ndims, p->dims, p->data);
    }
    if (s == FKD_OK && ck->optim) s = add_optim(&l, ck->optim, flat_dims);

    char emb[24], step[32], epoch[32];
    snprintf(emb, sizeof emb, "%d", ck->meta.embedding_size);
    snprintf(step, sizeof step, "%lld", (long long)ck->step);
    snprintf(epoch, sizeof epoch, "%lld", (long long)ck->epoch);
    fkd_st_meta meta[5 + FKD_CHECKPOINT_MAX_EXTRA_META] = {
        {"architecture", (char *)ck->meta.architecture},
        {"embedding_size", emb},
        {"producer", (char *)ck->meta.producer},
        {"step", step},
        {"epoch", epoch},
    };
    int n_meta = 5;
    for (int i = 0; i < ck->extra_count && i < FKD_CHECKPOINT_MAX_EXTRA_META; i++) meta[n_meta++] = ck->extra[i];
    if (s == FKD_OK) s = fkd_safetensors_write(path, l.entries, l.count, meta, n_meta);
    entry_list_free(&l);
    free(flat_dims);
    return s;
}

fkd_status fkd_checkpoint_load_params(const fkd_safetensors *st, const char *prefix, fkd_param *params,
                                      int count)
{
    for (int i = 0; i < count; i++) {
        char name[512];
        snprintf(name, sizeof name, "%s%s", prefix, params[i].name);
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
