#include "io/model.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/arch.h"

fkd_status fkd_model_save(fkd_graph *g, const char *path, const fkd_model_meta *meta)
{
    return fkd_model_save_with(g, path, meta, NULL, 0, NULL, 0);
}

fkd_status fkd_model_save_with(fkd_graph *g, const char *path, const fkd_model_meta *meta,
                               const fkd_st_entry *extra, int n_extra, const fkd_st_meta *extra_meta,
                               int n_extra_meta)
{
    fkd_param *params;
    int count;
    FKD_TRY(fkd_graph_params(g, &params, &count));
    int64_t total = 0;
    for (int i = 0; i < count; i++) total += params[i].numel;
    fkd_st_entry *entries = calloc((size_t)(count + n_extra) + 1, sizeof *entries);
    fkd_st_meta *kv = calloc((size_t)n_extra_meta + 5, sizeof *kv);
    float *plain = malloc(((size_t)total + 1) * sizeof *plain);
    fkd_status s = FKD_OK;
    if (!entries || !kv || !plain) s = FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory saving %d tensors", path, count);
    float *at = plain;
    for (int i = 0; s == FKD_OK && i < count; i++) {
        s = fkd_graph_param_read(g, i, at);
        entries[i] = (fkd_st_entry){params[i].name, FKD_ST_F32, params[i].ndims, params[i].dims, at};
        at += params[i].numel;
    }
    for (int i = 0; s == FKD_OK && i < n_extra; i++) entries[count + i] = extra[i];
    char emb[24], width[24], blocks[64];
    snprintf(emb, sizeof emb, "%d", meta->embedding_size);
    snprintf(width, sizeof width, "%d", meta->width);
    snprintf(blocks, sizeof blocks, "%d,%d,%d,%d", meta->blocks[0], meta->blocks[1], meta->blocks[2],
             meta->blocks[3]);
    int n_kv = 0;
    if (s == FKD_OK) {
        kv[n_kv++] = (fkd_st_meta){"architecture", (char *)meta->architecture};
        kv[n_kv++] = (fkd_st_meta){"embedding_size", emb};
        kv[n_kv++] = (fkd_st_meta){"producer", (char *)meta->producer};
        if (meta->width > 0) kv[n_kv++] = (fkd_st_meta){"width", width};
        if (meta->blocks[0] > 0) kv[n_kv++] = (fkd_st_meta){"blocks", blocks};
        for (int i = 0; i < n_extra_meta; i++) kv[n_kv++] = extra_meta[i];
        /* A duplicated key would make the reader's choice ambiguous. */
        for (int i = 0; i < n_kv && s == FKD_OK; i++)
            for (int j = 0; j < i && s == FKD_OK; j++)
                if (strcmp(kv[i].key, kv[j].key) == 0)
                    s = FKD_FAIL(FKD_ERR_ARG, "%s: metadata key '%s' given twice", path, kv[i].key);
    }
    if (s == FKD_OK) s = fkd_safetensors_write(path, entries, count + n_extra, kv, n_kv);
    free(entries);
    free(kv);
    free(plain);
    return s;
}

/* "v0,v1,..." with exactly n positive integers ≤ 2^20 (n = 1 for a single number). */
static fkd_status parse_ints(const fkd_safetensors *st, const char *key, const char *text, int *out, int n)
{
    const char *p = text;
    for (int i = 0; i < n; i++) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || v < 1 || v > 1 << 20 || *end != (i + 1 < n ? ',' : 0))
            return FKD_FAIL(FKD_ERR_FORMAT, "%s: __metadata__ %s \"%s\" is not %s", st->path, key, text,
                            n > 1 ? "positive integers separated by commas" : "a positive integer");
        out[i] = (int)v;
        p = end + 1;
    }
    return FKD_OK;
}

fkd_status fkd_model_meta_from(const fkd_safetensors *st, fkd_model_meta *meta)
{
    memset(meta, 0, sizeof *meta);
    const char *a = fkd_safetensors_meta(st, "architecture");
    const char *p = fkd_safetensors_meta(st, "producer");
    const char *e = fkd_safetensors_meta(st, "embedding_size");
    const char *w = fkd_safetensors_meta(st, "width");
    const char *b = fkd_safetensors_meta(st, "blocks");
    if (a) snprintf(meta->architecture, sizeof meta->architecture, "%s", a);
    if (p) snprintf(meta->producer, sizeof meta->producer, "%s", p);
    if (e) FKD_TRY(parse_ints(st, "embedding_size", e, &meta->embedding_size, 1));
    if (w) FKD_TRY(parse_ints(st, "width", w, &meta->width, 1));
    if (b) FKD_TRY(parse_ints(st, "blocks", b, meta->blocks, 4));
    return FKD_OK;
}

fkd_status fkd_model_resolve_arch(const fkd_safetensors *st, const char *arch, const char **resolved)
{
    const char *file_arch = fkd_safetensors_meta(st, "architecture");
    if (!arch && !file_arch)
        return FKD_FAIL(FKD_ERR_ARG, "%s: no architecture in __metadata__; name one (--arch)", st->path);
    const fkd_arch *a = fkd_arch_find(arch ? arch : file_arch);
    if (!a) return FKD_WRAP(FKD_ERR_NOTFOUND, "%s: ", st->path);
    if (arch && file_arch) {
        const fkd_arch *f = fkd_arch_find(file_arch);
        if (f != a)
            return FKD_FAIL(FKD_ERR_ARG, "%s: the file's architecture is '%s', not '%s'", st->path, file_arch,
                            arch);
    }
    *resolved = a->name;
    return FKD_OK;
}

static void format_shape(char *out, size_t size, int ndims, const int64_t *dims)
{
    size_t len = (size_t)snprintf(out, size, "[");
    for (int d = 0; d < ndims && len < size; d++)
        len += (size_t)snprintf(out + len, size - len, "%s%lld", d ? ", " : "", (long long)dims[d]);
    if (len < size) snprintf(out + len, size - len, "]");
}

/* Same rank and extents. */
static int same_shape(const fkd_param *p, const fkd_st_tensor *t)
{
    if (p->ndims != t->ndims) return 0;
    for (int d = 0; d < p->ndims; d++)
        if (p->dims[d] != t->dims[d]) return 0;
    return 1;
}

fkd_status fkd_model_load_tensors(fkd_graph *g, const fkd_safetensors *st)
{
    fkd_param *params;
    int count;
    FKD_TRY(fkd_graph_params(g, &params, &count));
    /* Check everything before writing anything, so a bad file leaves the graph as it was. */
    int64_t largest = 0;
    for (int i = 0; i < count; i++) {
        const fkd_st_tensor *t = fkd_safetensors_find(st, params[i].name);
        if (!t) return FKD_FAIL(FKD_ERR_FORMAT, "%s: tensor '%s' is missing", st->path, params[i].name);
        if (t->dtype == FKD_ST_I64)
            return FKD_FAIL(FKD_ERR_FORMAT, "%s: tensor '%s': dtype I64, expected a float dtype (F32, F16, BF16, F64)",
                            st->path, params[i].name);
        if (!same_shape(&params[i], t)) {
            char want[96], got[96];
            format_shape(want, sizeof want, params[i].ndims, params[i].dims);
            format_shape(got, sizeof got, t->ndims, t->dims);
            return FKD_FAIL(FKD_ERR_FORMAT, "%s: tensor '%s': shape %s, the architecture needs %s", st->path,
                            params[i].name, got, want);
        }
        if (params[i].numel > largest) largest = params[i].numel;
    }
    float *plain = malloc(((size_t)largest + 1) * sizeof *plain);
    if (!plain) return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory loading", st->path);
    fkd_status s = FKD_OK;
    /* Pass 1 rejects non-finite weights (a NaN would only surface steps later as a NaN
     * loss); pass 2 writes. */
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < count && s == FKD_OK; i++) {
            fkd_st_tensor_to_f32(fkd_safetensors_find(st, params[i].name), plain);
            if (pass == 1) {
                s = fkd_graph_param_write(g, i, plain);
                continue;
            }
            for (int64_t k = 0; k < params[i].numel; k++)
                if (!isfinite(plain[k])) {
                    s = FKD_FAIL(FKD_ERR_NUMERIC, "%s: tensor '%s': element %lld is not finite (%g)", st->path,
                                 params[i].name, (long long)k, plain[k]);
                    break;
                }
        }
    }
    free(plain);
    return s;
}

fkd_status fkd_model_load(fkd_graph *g, const char *path)
{
    fkd_safetensors st;
    FKD_TRY(fkd_safetensors_read(&st, path));
    fkd_status s = fkd_model_load_tensors(g, &st);
    fkd_safetensors_free(&st);
    return s;
}

/* Build options from the metadata; the embedding size, when the metadata has none, from
 * the rows of the architecture's embedding weight (converted files without metadata
 * still open with --arch). */
static fkd_status options_from(const fkd_safetensors *st, const fkd_arch *arch, fkd_model_meta *meta,
                               fkd_arch_opts *opts)
{
    FKD_TRY(fkd_model_meta_from(st, meta));
    opts->width = meta->width;
    opts->blocks = meta->blocks[0] > 0 ? meta->blocks : NULL;
    opts->num_features = meta->embedding_size;
    if (opts->num_features > 0) return FKD_OK;
    const fkd_st_tensor *w = fkd_safetensors_find(st, arch->embedding_weight);
    if (!w || w->ndims != 2 || w->dims[0] < 1 || w->dims[0] > 1 << 20)
        return FKD_FAIL(FKD_ERR_FORMAT, "%s: tensor '%s' is missing or not 2-D: not an %s model", st->path,
                        arch->embedding_weight, arch->name);
    opts->num_features = (int)w->dims[0];
    return FKD_OK;
}

fkd_status fkd_model_open(fkd_graph **out, const fkd_safetensors *st, const char *arch,
                          const fkd_graph_config *config, fkd_value *embedding)
{
    *out = NULL;
    const char *name;
    FKD_TRY(fkd_model_resolve_arch(st, arch, &name));
    const fkd_arch *a = fkd_arch_find(name);
    fkd_arch_opts opts = {0};
    fkd_model_meta meta; /* owns the blocks opts points to */
    FKD_TRY(options_from(st, a, &meta, &opts));
    fkd_graph *g;
    FKD_TRY(fkd_graph_create(&g, config));
    fkd_value x = fkd_graph_input(g, "input", 3, 112, 112);
    fkd_status s = x < 0 ? (fkd_status)x : FKD_OK;
    if (s == FKD_OK) s = fkd_arch_build(g, name, &opts, x, embedding);
    if (s == FKD_OK) s = fkd_graph_finalize(g);
    if (s == FKD_OK) s = fkd_model_load_tensors(g, st);
    if (s != FKD_OK) {
        fkd_graph_free(g);
        return s;
    }
    *out = g;
    return FKD_OK;
}
