/* ONNX import (see onnx_import.h): ModelProto → symbols (constants and computed values)
 * → layers with their weights, folding as it goes → an inference fkd_graph.
 *
 * Three passes over the file's nodes, which ONNX stores in topological order:
 *   1. symbols: every initializer, the graph input and every node output, with how many
 *      times each is consumed (a layer may absorb what follows only if that is its one
 *      consumer);
 *   2. nodes in order: constant nodes are evaluated on the host; the others become
 *      layers (conv, batch norm, prelu, add, flatten, linear, affine) holding plain
 *      PyTorch-layout weights, or fold into the layer before them;
 *   3. layers → engine nodes, finalize, parameters written with fkd_graph_param_write.
 * Shapes are static: the batch is the configured one, whatever the file declares.
 */
#include "io/onnx_import.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "core/log.h"
#include "io/onnx.pb-c.h"
#include "nn/fold.h"

#define MAX_DIMS 8
/* Constants larger than this (elements) are refused before allocation. */
#define MAX_NUMEL (INT64_C(1) << 31)
/* The engine's per-channel scale-shift is its batch norm with mean 0 and variance
 * 1 − 2⁻¹⁰, eps 2⁻¹⁰: variance + eps is exactly 1 in fp32, so y = γ x + β exactly. */
#define AFFINE_EPS (1.0f / 1024.0f)

static const char *str(const char *s)
{
    return s ? s : "";
}

/* ---- symbols ------------------------------------------------------------------------- */

/* A named ONNX value: a constant (host data, float or integer) or a layer's output. */
typedef struct {
    const char *name;
    int uses;      /* node inputs and graph outputs reading it */
    bool defined;
    bool is_const;
    /* constant */
    const Onnx__TensorProto *init; /* initializer not yet converted */
    int ndims;
    int64_t dims[MAX_DIMS];
    int64_t numel;
    bool integer;  /* data in ival, else fval */
    float *fval;
    int64_t *ival;
    /* value */
    int layer;
} sym;

typedef enum { L_INPUT, L_CONV, L_BN, L_PRELU, L_ADD, L_FLATTEN, L_LINEAR, L_AFFINE } layer_kind;

/* One engine node to be. Weights in PyTorch's plain layout:
 *   conv   w (O, I/G, K, K), b (O) or NULL      linear  w (O, I), b (O) or NULL
 *   bn     w = γ, b = β, mean, var (C)          prelu   w = slope (C)
 *   affine w = scale, b = shift (C): y = w_c x + b_c */
typedef struct {
    layer_kind kind;
    char *name;
    int in[2], n_in;
    int ndims;
    int64_t dims[4];
    int uses;
    int out_c, kernel, stride, pad, groups;
    float eps;
    float *w, *b, *mean, *var;
    fkd_value v;
} layer;

typedef struct {
    const char *path;
    const Onnx__ModelProto *model;
    const Onnx__GraphProto *graph;
    int64_t opset;
    int batch;
    sym *syms;
    int n_syms;
    layer *layers;
    int n_layers, cap_layers;
    int folded;
    bool self_normalising;
} ctx;

static fkd_status node_fail(const ctx *c, const Onnx__NodeProto *n, fkd_status code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static fkd_status node_fail(const ctx *c, const Onnx__NodeProto *n, fkd_status code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *name = str(n->name)[0] ? n->name : (n->n_output ? str(n->output[0]) : "");
    return FKD_FAIL(code, "%s: node '%s' (%s): %s", c->path, name, str(n->op_type), msg);
}

static const char *dims_str(int ndims, const int64_t *dims, char *buf, size_t cap)
{
    size_t k = (size_t)snprintf(buf, cap, "(");
    for (int i = 0; i < ndims && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, i ? ", %lld" : "%lld", (long long)dims[i]);
    if (k < cap) snprintf(buf + k, cap - k, ")");
    return buf;
}

static sym *sym_find(ctx *c, const char *name)
{
    if (!name || !*name) return NULL;
    for (int i = c->n_syms - 1; i >= 0; i--)
        if (strcmp(c->syms[i].name, name) == 0) return &c->syms[i];
    return NULL;
}

static void sym_drop_data(sym *s)
{
    free(s->fval);
    free(s->ival);
    s->fval = NULL;
    s->ival = NULL;
}

/* ---- tensors ------------------------------------------------------------------------- */

static float half_to_float(uint16_t h)
{
    int sign = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v;
    if (e == 0) v = ldexp(m, -24);
    else if (e == 31) v = m ? NAN : INFINITY;
    else v = ldexp(m + 1024, e - 25);
    return (float)(sign ? -v : v);
}

/* Fills s's data from TensorProto t; `what` names it in messages. */
static fkd_status tensor_load(const ctx *c, const Onnx__TensorProto *t, const char *what, sym *s)
{
    if (t->n_dims > MAX_DIMS)
        return FKD_FAIL(FKD_ERR_UNSUPPORTED, "%s: %s: %zu dimensions (at most %d)", c->path, what, t->n_dims, MAX_DIMS);
    s->ndims = (int)t->n_dims;
    s->numel = 1;
    for (size_t i = 0; i < t->n_dims; i++) {
        if (t->dims[i] < 0 || (t->dims[i] > 0 && s->numel > MAX_NUMEL / t->dims[i]))
            return FKD_FAIL(FKD_ERR_FORMAT, "%s: %s: bad dimension %lld", c->path, what, (long long)t->dims[i]);
        s->dims[i] = t->dims[i];
        s->numel *= t->dims[i];
    }
    if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
        return FKD_FAIL(FKD_ERR_UNSUPPORTED, "%s: %s: external data files are not supported", c->path, what);
    int64_t n = s->numel;
    size_t raw = t->has_raw_data ? t->raw_data.len : 0;
    const uint8_t *rd = t->raw_data.data;
    size_t typed = 0, esize = 0;
    int dt = t->data_type;
    switch (dt) {
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: typed = t->n_float_data; esize = 4; break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: typed = t->n_double_data; esize = 8; break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16: typed = t->n_int32_data; esize = 2; break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: typed = t->n_int64_data; esize = 8; break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: typed = t->n_int32_data; esize = 4; break;
    default:
        return FKD_FAIL(FKD_ERR_UNSUPPORTED, "%s: %s: data type %d is not supported (float, double, float16, int32, int64)",
                        c->path, what, dt);
    }
    bool use_raw = t->has_raw_data;
    if (use_raw ? raw != (size_t)n * esize : typed != (size_t)n)
        return FKD_FAIL(FKD_ERR_FORMAT, "%s: %s: shape %s needs %lld values, the tensor holds %zu", c->path, what,
                        dims_str(s->ndims, s->dims, (char[96]){0}, 96), (long long)n,
                        use_raw ? raw / esize : typed);
    s->integer = dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 || dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT32;
    size_t bytes = (size_t)(n ? n : 1) * (s->integer ? sizeof(int64_t) : sizeof(float));
    void *mem = malloc(bytes);
    if (!mem) return FKD_FAIL(FKD_ERR_NOMEM, "%s: %s: out of memory (%zu bytes)", c->path, what, bytes);
    if (s->integer) s->ival = mem;
    else s->fval = mem;
    for (int64_t i = 0; i < n; i++) {
        switch (dt) {
        case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT:
            if (use_raw) memcpy(&s->fval[i], rd + 4 * i, 4);
            else s->fval[i] = t->float_data[i];
            break;
        case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: {
            double d;
            if (use_raw) memcpy(&d, rd + 8 * i, 8);
            else d = t->double_data[i];
            s->fval[i] = (float)d;
            break;
        }
        case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16: {
            uint16_t h;
            if (use_raw) memcpy(&h, rd + 2 * i, 2);
            else h = (uint16_t)t->int32_data[i];
            s->fval[i] = half_to_float(h);
            break;
        }
        case ONNX__TENSOR_PROTO__DATA_TYPE__INT64:
            if (use_raw) memcpy(&s->ival[i], rd + 8 * i, 8);
            else s->ival[i] = t->int64_data[i];
            break;
        default: { /* INT32 */
            int32_t v;
            if (use_raw) memcpy(&v, rd + 4 * i, 4);
            else v = t->int32_data[i];
            s->ival[i] = v;
        }
        }
    }
    return FKD_OK;
}

/* A constant's data, converted on first use. */
static fkd_status const_ready(const ctx *c, sym *s)
{
    if (!s->init || s->fval || s->ival) return FKD_OK;
    char what[300];
    snprintf(what, sizeof what, "initializer '%s'", s->name);
    fkd_status st = tensor_load(c, s->init, what, s);
    if (st != FKD_OK) sym_drop_data(s);
    return st;
}

static double const_at(const sym *s, int64_t i)
{
    return s->integer ? (double)s->ival[i] : (double)s->fval[i];
}

/* ---- layers -------------------------------------------------------------------------- */

static void layer_free(layer *l)
{
    free(l->name);
    free(l->w);
    free(l->b);
    free(l->mean);
    free(l->var);
}

static int64_t layer_channels(const layer *l)
{
    return l->dims[1];
}

/* Adds a layer named after node n (its name, else its first output), reading `in`. */
static fkd_status layer_add(ctx *c, const Onnx__NodeProto *n, layer_kind kind, const int *in, int n_in, int ndims,
                            const int64_t *dims, int *out)
{
    int64_t d[4]; /* `dims` and `in` may point into c->layers, which may move */
    int inputs[2];
    for (int i = 0; i < ndims; i++) d[i] = dims[i];
    for (int i = 0; i < n_in; i++) inputs[i] = in[i];
    if (c->n_layers == c->cap_layers) {
        int cap = c->cap_layers ? 2 * c->cap_layers : 64;
        layer *p = realloc(c->layers, (size_t)cap * sizeof *p);
        if (!p) return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", c->path);
        c->layers = p;
        c->cap_layers = cap;
    }
    const char *base = n ? (str(n->name)[0] ? n->name : str(n->output[0])) : "input";
    char name[256];
    snprintf(name, sizeof name, "%s", base);
    for (int i = 0, k = 1; i < c->n_layers; i++) /* unique engine node names */
        if (strcmp(c->layers[i].name, name) == 0) {
            snprintf(name, sizeof name, "%s#%d", base, k++);
            i = -1;
        }
    layer *l = &c->layers[c->n_layers];
    memset(l, 0, sizeof *l);
    l->name = strdup(name);
    if (!l->name) return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", c->path);
    l->kind = kind;
    l->n_in = n_in;
    for (int i = 0; i < n_in; i++) l->in[i] = inputs[i];
    l->ndims = ndims;
    for (int i = 0; i < ndims; i++) l->dims[i] = d[i];
    *out = c->n_layers++;
    return FKD_OK;
}

static float *floats(ctx *c, int64_t n)
{
    float *p = calloc(n > 0 ? (size_t)n : 1, sizeof *p);
    if (!p) FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", c->path);
    return p;
}

/* ---- node helpers -------------------------------------------------------------------- */

static const Onnx__AttributeProto *attr(const Onnx__NodeProto *n, const char *name)
{
    for (size_t i = 0; i < n->n_attribute; i++)
        if (strcmp(str(n->attribute[i]->name), name) == 0) return n->attribute[i];
    return NULL;
}

static int64_t attr_int(const Onnx__NodeProto *n, const char *name, int64_t def)
{
    const Onnx__AttributeProto *a = attr(n, name);
    return a && a->has_i ? a->i : def;
}

static float attr_float(const Onnx__NodeProto *n, const char *name, float def)
{
    const Onnx__AttributeProto *a = attr(n, name);
    return a && a->has_f ? a->f : def;
}

static bool has_input(const Onnx__NodeProto *n, size_t i)
{
    return i < n->n_input && str(n->input[i])[0];
}

/* Input i as a defined symbol. */
static fkd_status in_sym(ctx *c, const Onnx__NodeProto *n, size_t i, sym **out)
{
    if (!has_input(n, i)) return node_fail(c, n, FKD_ERR_FORMAT, "input %zu is missing", i);
    sym *s = sym_find(c, n->input[i]);
    if (!s || !s->defined)
        return node_fail(c, n, FKD_ERR_FORMAT, "input '%s' is not an initializer, the graph input or an earlier node's output",
                         n->input[i]);
    *out = s;
    if (s->is_const) return const_ready(c, s);
    return FKD_OK;
}

static fkd_status in_value(ctx *c, const Onnx__NodeProto *n, size_t i, int *layer_index)
{
    sym *s;
    FKD_TRY(in_sym(c, n, i, &s));
    if (s->is_const)
        return node_fail(c, n, FKD_ERR_UNSUPPORTED, "input '%s' is a constant where facekd needs a computed value", s->name);
    *layer_index = s->layer;
    return FKD_OK;
}

static fkd_status in_const(ctx *c, const Onnx__NodeProto *n, size_t i, sym **out)
{
    FKD_TRY(in_sym(c, n, i, out));
    if (!(*out)->is_const)
        return node_fail(c, n, FKD_ERR_UNSUPPORTED, "input '%s' must be a constant (an initializer or foldable)", (*out)->name);
    return FKD_OK;
}

/* Output `i` of n, for defining. */
static sym *out_sym(ctx *c, const Onnx__NodeProto *n, size_t i)
{
    return i < n->n_output ? sym_find(c, n->output[i]) : NULL;
}

static fkd_status def_value(ctx *c, const Onnx__NodeProto *n, int layer_index)
{
    sym *s = out_sym(c, n, 0);
    if (!s) return node_fail(c, n, FKD_ERR_FORMAT, "no output");
    s->defined = true;
    s->is_const = false;
    s->layer = layer_index;
    c->layers[layer_index].uses += s->uses;
    return FKD_OK;
}

/* Output 0 becomes a new constant of the given shape; data filled by the caller. */
static fkd_status def_const(ctx *c, const Onnx__NodeProto *n, bool integer, int ndims, const int64_t *dims, sym **out)
{
    sym *s = out_sym(c, n, 0);
    if (!s) return node_fail(c, n, FKD_ERR_FORMAT, "no output");
    if (ndims > MAX_DIMS) return node_fail(c, n, FKD_ERR_UNSUPPORTED, "%d dimensions", ndims);
    s->defined = true;
    s->is_const = true;
    s->integer = integer;
    s->ndims = ndims;
    s->numel = 1;
    for (int i = 0; i < ndims; i++) {
        s->dims[i] = dims[i];
        s->numel *= dims[i];
    }
    size_t bytes = (size_t)(s->numel ? s->numel : 1) * (integer ? sizeof(int64_t) : sizeof(float));
    void *p = calloc(1, bytes);
    if (!p) return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", c->path);
    if (integer) s->ival = p;
    else s->fval = p;
    *out = s;
    return FKD_OK;
}

/* Output 0 is another name for `src` (Identity, Dropout, no-op Reshape/Flatten). */
static fkd_status def_alias(ctx *c, const Onnx__NodeProto *n, sym *src)
{
    if (!src->is_const) {
        c->layers[src->layer].uses--; /* this node's read; its output's readers come next */
        return def_value(c, n, src->layer);
    }
    sym *s;
    FKD_TRY(def_const(c, n, src->integer, src->ndims, src->dims, &s));
    for (int64_t i = 0; i < s->numel; i++) {
        if (s->integer) s->ival[i] = src->ival[i];
        else s->fval[i] = src->fval[i];
    }
    return FKD_OK;
}

/* A constant operand that applies per channel of layer x: one value, or C values along
 * the channel axis ((C), (C,1,1), (1,C,1,1) on 4-D; (C), (1,C) on 2-D). Fills k[C]. */
static fkd_status channel_operand(ctx *c, const Onnx__NodeProto *n, const layer *x, const sym *s, float *k)
{
    int64_t C = layer_channels(x);
    bool ok = s->numel == 1;
    if (!ok && s->numel == C) {
        int at = -1, ones = 0;
        for (int i = 0; i < s->ndims; i++) {
            if (s->dims[i] == C && at < 0) at = i;
            else ones += s->dims[i] == 1;
        }
        int axis = x->ndims - s->ndims + at; /* right-aligned broadcasting */
        ok = ones == s->ndims - 1 && (axis == 1 || s->ndims == 1);
    }
    if (!ok) {
        char a[96], b[96];
        return node_fail(c, n, FKD_ERR_UNSUPPORTED, "constant '%s' of shape %s is not one value or per-channel for %s",
                         s->name, dims_str(s->ndims, s->dims, a, sizeof a), dims_str(x->ndims, x->dims, b, sizeof b));
    }
    for (int64_t i = 0; i < C; i++) k[i] = (float)const_at(s, s->numel == 1 ? 0 : i);
    return FKD_OK;
}

/* y = s_c x + t_c applied to layer li's output: folded into li when it is a conv, linear
 * or affine layer whose only consumer is this node; else a new affine layer. The node's
 * output is defined either way. Takes ownership of s and t. */
static fkd_status scale_shift(ctx *c, const Onnx__NodeProto *n, int li, float *s, float *t)
{
    layer *l = &c->layers[li];
    int64_t C = layer_channels(l);
    if (l->uses == 1 && (l->kind == L_CONV || l->kind == L_LINEAR || l->kind == L_AFFINE)) {
        int64_t per = 1; /* weights per output channel */
        if (l->kind == L_CONV) per = (int64_t)l->kernel * l->kernel * (c->layers[l->in[0]].dims[1] / l->groups);
        else if (l->kind == L_LINEAR) per = c->layers[l->in[0]].dims[1];
        if (!l->b) {
            l->b = floats(c, C);
            if (!l->b) {
                free(s);
                free(t);
                return FKD_ERR_NOMEM;
            }
        }
        fkd_fold_scale_shift(l->w, l->b, C, per, s, t, l->w, l->b);
        free(s);
        free(t);
        l->uses--; /* this node's use; its output's uses come next */
        c->folded++;
        return def_value(c, n, li);
    }
    int out;
    fkd_status st = layer_add(c, n, L_AFFINE, &li, 1, l->ndims, l->dims, &out); /* l is stale after this */
    if (st != FKD_OK) {
        free(s);
        free(t);
        return st;
    }
    c->layers[out].w = s;
    c->layers[out].b = t;
    return def_value(c, n, out);
}

/* ---- constant folding ---------------------------------------------------------------- */

static fkd_status op_constant(ctx *c, const Onnx__NodeProto *n)
{
    const Onnx__AttributeProto *a;
    sym *s;
    if ((a = attr(n, "value")) && a->t) {
        s = out_sym(c, n, 0);
        if (!s) return node_fail(c, n, FKD_ERR_FORMAT, "no output");
        char what[300];
        snprintf(what, sizeof what, "node '%s' (Constant) value", str(n->name));
        FKD_TRY(tensor_load(c, a->t, what, s));
        s->defined = s->is_const = true;
        return FKD_OK;
    }
    const int64_t one[1] = {1};
    if ((a = attr(n, "value_float")) && a->has_f) {
        FKD_TRY(def_const(c, n, false, 0, one, &s));
        s->fval[0] = a->f;
    } else if ((a = attr(n, "value_int")) && a->has_i) {
        FKD_TRY(def_const(c, n, true, 0, one, &s));
        s->ival[0] = a->i;
    } else if ((a = attr(n, "value_floats"))) {
        const int64_t d[1] = {(int64_t)a->n_floats};
        FKD_TRY(def_const(c, n, false, 1, d, &s));
        for (size_t i = 0; i < a->n_floats; i++) s->fval[i] = a->floats[i];
    } else if ((a = attr(n, "value_ints"))) {
        const int64_t d[1] = {(int64_t)a->n_ints};
        FKD_TRY(def_const(c, n, true, 1, d, &s));
        for (size_t i = 0; i < a->n_ints; i++) s->ival[i] = a->ints[i];
    } else {
        return node_fail(c, n, FKD_ERR_UNSUPPORTED, "needs a value, value_float(s) or value_int(s) attribute");
    }
    return FKD_OK;
}

static fkd_status op_shape(ctx *c, const Onnx__NodeProto *n)
{
    sym *x, *s;
    FKD_TRY(in_sym(c, n, 0, &x));
    int nd = x->is_const ? x->ndims : c->layers[x->layer].ndims;
    const int64_t *dims = x->is_const ? x->dims : c->layers[x->layer].dims;
    int64_t start = attr_int(n, "start", 0), end = attr_int(n, "end", nd);
    if (start < 0) start += nd;
    if (end < 0) end += nd;
    start = start < 0 ? 0 : start > nd ? nd : start;
    end = end < start ? start : end > nd ? nd : end;
    const int64_t d[1] = {end - start};
    FKD_TRY(def_const(c, n, true, 1, d, &s));
    for (int64_t i = start; i < end; i++) s->ival[i - start] = dims[i];
    return FKD_OK;
}

static fkd_status op_gather(ctx *c, const Onnx__NodeProto *n)
{
    sym *data, *idx, *s;
    FKD_TRY(in_const(c, n, 0, &data));
    FKD_TRY(in_const(c, n, 1, &idx));
    if (data->ndims != 1 || attr_int(n, "axis", 0) != 0 || !idx->integer || idx->ndims > 1)
        return node_fail(c, n, FKD_ERR_UNSUPPORTED, "only 1-D data and integer indices are folded");
    FKD_TRY(def_const(c, n, data->integer, idx->ndims, idx->dims, &s));
    for (int64_t i = 0; i < idx->numel; i++) {
        int64_t k = idx->ival[i] < 0 ? idx->ival[i] + data->numel : idx->ival[i];
        if (k < 0 || k >= data->numel)
            return node_fail(c, n, FKD_ERR_FORMAT, "index %lld outside %lld values", (long long)idx->ival[i],
                             (long long)data->numel);
        if (s->integer) s->ival[i] = data->ival[k];
        else s->fval[i] = data->fval[k];
    }
    return FKD_OK;
}

/* Unsqueeze and Squeeze: the same data under new dims (axes an attribute before opset 13,
 * an input since). */
static fkd_status op_squeeze(ctx *c, const Onnx__NodeProto *n, bool unsqueeze)
{
    sym *x, *axes_in = NULL;
    FKD_TRY(in_const(c, n, 0, &x));
    int64_t axes[MAX_DIMS];
    int n_axes = 0;
    const Onnx__AttributeProto *a = attr(n, "axes");
    if (has_input(n, 1)) {
        FKD_TRY(in_const(c, n, 1, &axes_in));
        if (!axes_in->integer || axes_in->numel > MAX_DIMS) return node_fail(c, n, FKD_ERR_FORMAT, "bad axes");
        for (int64_t i = 0; i < axes_in->numel; i++) axes[n_axes++] = axes_in->ival[i];
    } else if (a) {
        if (a->n_ints > MAX_DIMS) return node_fail(c, n, FKD_ERR_FORMAT, "bad axes");
        for (size_t i = 0; i < a->n_ints; i++) axes[n_axes++] = a->ints[i];
    }
    int nd = unsqueeze ? x->ndims + n_axes : x->ndims;
    if (nd > MAX_DIMS) return node_fail(c, n, FKD_ERR_UNSUPPORTED, "%d dimensions", nd);
    bool pick[MAX_DIMS] = {false};
    for (int i = 0; i < n_axes; i++) {
        int64_t ax = axes[i] < 0 ? axes[i] + nd : axes[i];
        if (ax < 0 || ax >= nd) return node_fail(c, n, FKD_ERR_FORMAT, "axis %lld out of range", (long long)axes[i]);
        pick[ax] = true;
    }
    int64_t dims[MAX_DIMS];
    int k = 0, out_nd = 0;
    for (int i = 0; i < nd; i++) {
        if (unsqueeze) {
            dims[out_nd++] = pick[i] ? 1 : x->dims[k++];
        } else if ((n_axes ? pick[i] : x->dims[i] == 1)) {
            if (x->dims[i] != 1) return node_fail(c, n, FKD_ERR_FORMAT, "axis %d has size %lld, not 1", i, (long long)x->dims[i]);
        } else {
            dims[out_nd++] = x->dims[i];
        }
    }
    sym *s;
    FKD_TRY(def_const(c, n, x->integer, out_nd, dims, &s));
    for (int64_t i = 0; i < s->numel; i++) {
        if (s->integer) s->ival[i] = x->ival[i];
        else s->fval[i] = x->fval[i];
    }
    return FKD_OK;
}

static fkd_status op_concat(ctx *c, const Onnx__NodeProto *n)
{
    int64_t total = 0;
    bool integer = true;
    for (size_t i = 0; i < n->n_input; i++) {
        sym *x;
        FKD_TRY(in_const(c, n, i, &x));
        if (x->ndims != 1) return node_fail(c, n, FKD_ERR_UNSUPPORTED, "only 1-D constants are concatenated");
        total += x->numel;
        integer = integer && x->integer;
    }
    sym *s;
    const int64_t d[1] = {total};
    FKD_TRY(def_const(c, n, integer, 1, d, &s));
    int64_t k = 0;
    for (size_t i = 0; i < n->n_input; i++) {
        sym *x = sym_find(c, n->input[i]);
        for (int64_t j = 0; j < x->numel; j++, k++) {
            if (integer) s->ival[k] = x->ival[j];
            else s->fval[k] = (float)const_at(x, j);
        }
    }
    return FKD_OK;
}

static fkd_status op_cast(ctx *c, const Onnx__NodeProto *n)
{
    sym *x, *s;
    FKD_TRY(in_sym(c, n, 0, &x));
    int64_t to = attr_int(n, "to", 0);
    bool integer = to == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 || to == ONNX__TENSOR_PROTO__DATA_TYPE__INT32;
    if (!x->is_const) {
        if (to == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT) return def_value(c, n, x->layer);
        return node_fail(c, n, FKD_ERR_UNSUPPORTED, "casts a computed value to type %lld (only float stays)", (long long)to);
    }
    if (!integer && to != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT && to != ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE)
        return node_fail(c, n, FKD_ERR_UNSUPPORTED, "cast to type %lld", (long long)to);
    FKD_TRY(def_const(c, n, integer, x->ndims, x->dims, &s));
    for (int64_t i = 0; i < s->numel; i++) {
        if (integer) s->ival[i] = (int64_t)const_at(x, i);
        else s->fval[i] = (float)const_at(x, i);
    }
    return FKD_OK;
}

/* Add/Sub/Mul/Div of two constants: same shape, or one of them a single value. */
static fkd_status fold_arith(ctx *c, const Onnx__NodeProto *n, char op, sym *a, sym *b)
{
    if (a->numel != b->numel && a->numel != 1 && b->numel != 1)
        return node_fail(c, n, FKD_ERR_UNSUPPORTED, "constants of %lld and %lld values", (long long)a->numel,
                         (long long)b->numel);
    const sym *big = a->numel >= b->numel ? a : b;
    bool integer = a->integer && b->integer;
    sym *s;
    FKD_TRY(def_const(c, n, integer, big->ndims, big->dims, &s));
    for (int64_t i = 0; i < s->numel; i++) {
        double x = const_at(a, a->numel == 1 ? 0 : i), y = const_at(b, b->numel == 1 ? 0 : i), r;
        switch (op) {
        case '+': r = x + y; break;
        case '-': r = x - y; break;
        case '*': r = x * y; break;
        default:
            if (y == 0 && integer) return node_fail(c, n, FKD_ERR_FORMAT, "integer division by zero");
            r = integer ? (double)((int64_t)x / (int64_t)y) : x / y;
        }
        if (integer) s->ival[i] = (int64_t)r;
        else s->fval[i] = (float)r;
    }
    return FKD_OK;
}

/* ---- value ops ----------------------------------------------------------------------- */

static fkd_status op_conv(ctx *c, const Onnx__NodeProto *n)
{
    int xi;
    sym *w, *b = NULL;
    FKD_TRY(in_value(c, n, 0, &xi));
    FKD_TRY(in_const(c, n, 1, &w));
    if (has_input(n, 2)) FKD_TRY(in_const(c, n, 2, &b));
    const layer *x = &c->layers[xi];
    char s1[96], s2[96];
    if (x->ndims != 4 || w->ndims != 4 || w->integer)
        return node_fail(c, n, FKD_ERR_UNSUPPORTED, "2-D convolutions only: input %s, weight %s",
                         dims_str(x->ndims, x->dims, s1, sizeof s1), dims_str(w->ndims, w->dims, s2, sizeof s2));
    int64_t O = w->dims[0], k = w->dims[2], G = attr_int(n, "group", 1), C = x->dims[1];
    if (w->dims[3] != k) return node_fail(c, n, FKD_ERR_UNSUPPORTED, "non-square kernel %s", dims_str(4, w->dims, s1, sizeof s1));
    if (G < 1 || C % G || O % G || w->dims[1] * G != C)
        return node_fail(c, n, FKD_ERR_FORMAT, "inconsistent shapes: input %s, weight %s, %lld groups",
                         dims_str(4, x->dims, s1, sizeof s1), dims_str(4, w->dims, s2, sizeof s2), (long long)G);
    const Onnx__AttributeProto *a;
    int64_t stride = 1, pad = 0;
    if ((a = attr(n, "kernel_shape")) && (a->n_ints != 2 || a->ints[0] != k || a->ints[1] != k))
        return node_fail(c, n, FKD_ERR_FORMAT, "kernel_shape does not match the weight %s", dims_str(4, w->dims, s1, sizeof s1));
    if ((a = attr(n, "dilations")))
        for (size_t i = 0; i < a->n_ints; i++)
            if (a->ints[i] != 1) return node_fail(c, n, FKD_ERR_UNSUPPORTED, "dilation %lld", (long long)a->ints[i]);
    if ((a = attr(n, "strides"))) {
        if (a->n_ints != 2 || a->ints[0] != a->ints[1] || a->ints[0] < 1)
            return node_fail(c, n, FKD_ERR_UNSUPPORTED, "strides must be two equal positive values");
        stride = a->ints[0];
    }
    if ((a = attr(n, "pads"))) {
        if (a->n_ints != 4 || a->ints[0] < 0)
            return node_fail(c, n, FKD_ERR_UNSUPPORTED, "pads must be four values");
        for (int i = 1; i < 4; i++)
            if (a->ints[i] != a->ints[0]) return node_fail(c, n, FKD_ERR_UNSUPPORTED, "asymmetric padding");
        pad = a->ints[0];
    }
    if ((a = attr(n, "auto_pad")) && a->has_s && a->s.len && strncmp((const char *)a->s.data, "NOTSET", a->s.len) != 0) {
        if (a->s.len == 5 && memcmp(a->s.data, "VALID", 5) == 0) pad = 0;
        else if (stride == 1 && k % 2 == 1) pad = (k - 1) / 2; /* SAME_* with a centred kernel */
        else return node_fail(c, n, FKD_ERR_UNSUPPORTED, "auto_pad SAME with stride %lld, kernel %lld", (long long)stride, (long long)k);
    }
    if (b && (b->numel != O || b->integer))
        return node_fail(c, n, FKD_ERR_FORMAT, "bias has %lld values for %lld output channels", (long long)b->numel, (long long)O);
    if (x->dims[2] + 2 * pad < k || x->dims[3] + 2 * pad < k)
        return node_fail(c, n, FKD_ERR_FORMAT, "kernel %lld larger than the padded input %s", (long long)k,
                         dims_str(4, x->dims, s1, sizeof s1));
    const int64_t dims[4] = {x->dims[0], O, (x->dims[2] + 2 * pad - k) / stride + 1, (x->dims[3] + 2 * pad - k) / stride + 1};
    int li;
    FKD_TRY(layer_add(c, n, L_CONV, &xi, 1, 4, dims, &li));
    layer *l = &c->layers[li];
    l->out_c = (int)O;
    l->kernel = (int)k;
    l->stride = (int)stride;
    l->pad = (int)pad;
    l->groups = (int)G;
    if (!(l->w = floats(c, w->numel))) return FKD_ERR_NOMEM;
    memcpy(l->w, w->fval, (size_t)w->numel * sizeof *l->w);
    if (b) {
        if (!(l->b = floats(c, O))) return FKD_ERR_NOMEM;
        memcpy(l->b, b->fval, (size_t)O * sizeof *l->b);
    }
    return def_value(c, n, li);
}

static fkd_status op_global_avg_pool(ctx *c, const Onnx__NodeProto *n)
{
    int xi;
    FKD_TRY(in_value(c, n, 0, &xi));
    const layer *x = &c->layers[xi];
    char s1[96];
    if (x->ndims != 4 || x->dims[2] != x->dims[3])
        return node_fail(c, n, FKD_ERR_UNSUPPORTED, "square feature maps only, got %s", dims_str(x->ndims, x->dims, s1, sizeof s1));
    /* A depthwise convolution with the whole map as its kernel and weights 1/(H·W): one
     * engine op, and a scale-shift after it folds in. */
    int64_t C = x->dims[1], k = x->dims[2];
    const int64_t dims[4] = {x->dims[0], C, 1, 1};
    int li;
    FKD_TRY(layer_add(c, n, L_CONV, &xi, 1, 4, dims, &li));
    layer *l = &c->layers[li];
    l->out_c = (int)C;
    l->kernel = (int)k;
    l->stride = 1;
    l->groups = (int)C;
    if (!(l->w = floats(c, C * k * k))) return FKD_ERR_NOMEM;
    for (int64_t i = 0; i < C * k * k; i++) l->w[i] = 1.0f / (float)(k * k);
    return def_value(c, n, li);
}

static fkd_status op_batchnorm(ctx *c, const Onnx__NodeProto *n)
{
    int xi;
    sym *p[4];
    FKD_TRY(in_value(c, n, 0, &xi));
    for (int i = 0; i < 4; i++) FKD_TRY(in_const(c, n, (size_t)i + 1, &p[i]));
    const layer *x = &c->layers[xi];
    if (x->ndims != 2 && x->ndims != 4) return node_fail(c, n, FKD_ERR_UNSUPPORTED, "input must be 2-D or 4-D");
    if (attr_int(n, "training_mode", 0) != 0) return node_fail(c, n, FKD_ERR_UNSUPPORTED, "training_mode = 1");
    for (size_t i = 1; i < n->n_output; i++) {
        const sym *o = out_sym(c, n, i);
        if (o && o->uses) return node_fail(c, n, FKD_ERR_UNSUPPORTED, "running statistics outputs are used (training mode)");
    }
    int64_t C = layer_channels(x);
    for (int i = 0; i < 4; i++)
        if (p[i]->numel != C || p[i]->integer)
            return node_fail(c, n, FKD_ERR_FORMAT, "inconsistent shapes: '%s' has %lld values for %lld channels", p[i]->name,
                             (long long)p[i]->numel, (long long)C);
    float eps = attr_float(n, "epsilon", 1e-5f);
    if (!(eps > 0)) return node_fail(c, n, FKD_ERR_FORMAT, "epsilon %g", eps);
    const layer *prod = x;
    if (prod->uses == 1 && (prod->kind == L_CONV || prod->kind == L_LINEAR || prod->kind == L_AFFINE)) {
        float *s = floats(c, C), *t = floats(c, C);
        if (!s || !t) {
            free(s);
            free(t);
            return FKD_ERR_NOMEM;
        }
        fkd_bn_scale_shift(p[0]->fval, p[1]->fval, p[2]->fval, p[3]->fval, eps, C, s, t);
        return scale_shift(c, n, xi, s, t);
    }
    int li;
    FKD_TRY(layer_add(c, n, L_BN, &xi, 1, x->ndims, x->dims, &li));
    layer *l = &c->layers[li];
    l->eps = eps;
    float **dst[4] = {&l->w, &l->b, &l->mean, &l->var};
    for (int i = 0; i < 4; i++) {
        if (!(*dst[i] = floats(c, C))) return FKD_ERR_NOMEM;
        memcpy(*dst[i], p[i]->fval, (size_t)C * sizeof(float));
    }
    return def_value(c, n, li);
}

/* PRelu (slope from input 1), Relu (0), LeakyRelu (alpha): the engine's PReLU. */
static fkd_status op_prelu(ctx *c, const Onnx__NodeProto *n, const char *which)
{
    int xi;
    FKD_TRY(in_value(c, n, 0, &xi));
    const layer *x = &c->layers[xi];
    if (x->ndims != 2 && x->ndims != 4) return node_fail(c, n, FKD_ERR_UNSUPPORTED, "input must be 2-D or 4-D");
    int64_t C = layer_channels(x);
    float *slope = floats(c, C);
    if (!slope) return FKD_ERR_NOMEM;
    fkd_status st = FKD_OK;
    if (which[0] == 'P') {
        sym *s;
        st = in_const(c, n, 1, &s);
        if (st == FKD_OK) st = channel_operand(c, n, x, s, slope);
    } else {
        float alpha = which[0] == 'L' ? attr_float(n, "alpha", 0.01f) : 0.0f;
        for (int64_t i = 0; i < C; i++) slope[i] = alpha;
    }
    int li = -1;
    if (st == FKD_OK) st = layer_add(c, n, L_PRELU, &xi, 1, x->ndims, x->dims, &li);
    if (st != FKD_OK) {
        free(slope);
        return st;
    }
    c->layers[li].w = slope;
    return def_value(c, n, li);
}

/* Add, Sub, Mul, Div: constants fold; value + value is the residual add; value ∘ constant
 * is a per-channel scale-shift. */
static fkd_status op_arith(ctx *c, const Onnx__NodeProto *n, char op)
{
    sym *a, *b;
    FKD_TRY(in_sym(c, n, 0, &a));
    FKD_TRY(in_sym(c, n, 1, &b));
    if (a->is_const && b->is_const) return fold_arith(c, n, op, a, b);
    if (!a->is_const && !b->is_const) {
        if (op != '+') return node_fail(c, n, FKD_ERR_UNSUPPORTED, "of two computed values (only Add is)");
        const layer *la = &c->layers[a->layer], *lb = &c->layers[b->layer];
        bool same = la->ndims == lb->ndims;
        for (int i = 0; same && i < la->ndims; i++) same = la->dims[i] == lb->dims[i];
        if (!same) {
            char s1[96], s2[96];
            return node_fail(c, n, FKD_ERR_FORMAT, "inconsistent shapes %s and %s", dims_str(la->ndims, la->dims, s1, sizeof s1),
                             dims_str(lb->ndims, lb->dims, s2, sizeof s2));
        }
        const int in[2] = {a->layer, b->layer};
        int li;
        FKD_TRY(layer_add(c, n, L_ADD, in, 2, la->ndims, la->dims, &li));
        return def_value(c, n, li);
    }
    bool value_first = !a->is_const;
    const sym *k_sym = value_first ? b : a;
    int xi = value_first ? a->layer : b->layer;
    const layer *x = &c->layers[xi];
    if (x->ndims != 2 && x->ndims != 4) return node_fail(c, n, FKD_ERR_UNSUPPORTED, "input must be 2-D or 4-D");
    if (op == '/' && !value_first) return node_fail(c, n, FKD_ERR_UNSUPPORTED, "a constant divided by a computed value");
    int64_t C = layer_channels(x);
    float *k = floats(c, C), *s = floats(c, C), *t = floats(c, C);
    fkd_status st = k && s && t ? channel_operand(c, n, x, k_sym, k) : FKD_ERR_NOMEM;
    for (int64_t i = 0; st == FKD_OK && i < C; i++) {
        switch (op) {
        case '+': s[i] = 1; t[i] = k[i]; break;
        case '-': s[i] = value_first ? 1.0f : -1.0f; t[i] = value_first ? -k[i] : k[i]; break;
        case '*': s[i] = k[i]; t[i] = 0; break;
        default: s[i] = (float)(1.0 / k[i]); t[i] = 0;
        }
    }
    free(k);
    if (st != FKD_OK) {
        free(s);
        free(t);
        return st;
    }
    return scale_shift(c, n, xi, s, t);
}

static fkd_status add_flatten(ctx *c, const Onnx__NodeProto *n, int xi, int *out)
{
    const layer *x = &c->layers[xi];
    const int64_t dims[2] = {x->dims[0], x->dims[1] * x->dims[2] * x->dims[3]};
    return layer_add(c, n, L_FLATTEN, &xi, 1, 2, dims, out);
}

static fkd_status op_flatten(ctx *c, const Onnx__NodeProto *n)
{
    sym *xs;
    FKD_TRY(in_sym(c, n, 0, &xs));
    if (xs->is_const) return node_fail(c, n, FKD_ERR_UNSUPPORTED, "of a constant");
    const layer *x = &c->layers[xs->layer];
    int64_t axis = attr_int(n, "axis", 1);
    if (axis < 0) axis += x->ndims;
    if (axis != 1) return node_fail(c, n, FKD_ERR_UNSUPPORTED, "axis %lld (only 1)", (long long)axis);
    if (x->ndims == 2) return def_alias(c, n, xs);
    int li;
    FKD_TRY(add_flatten(c, n, xs->layer, &li));
    return def_value(c, n, li);
}

static fkd_status op_reshape(ctx *c, const Onnx__NodeProto *n)
{
    sym *xs, *shape;
    FKD_TRY(in_sym(c, n, 0, &xs));
    FKD_TRY(in_const(c, n, 1, &shape));
    if (xs->is_const) return node_fail(c, n, FKD_ERR_UNSUPPORTED, "of a constant");
    const layer *x = &c->layers[xs->layer];
    if (!shape->integer || shape->ndims != 1 || shape->numel > 4 || shape->numel < 1)
        return node_fail(c, n, FKD_ERR_UNSUPPORTED, "shape '%s' must be 1-4 integers", shape->name);
    int nd = (int)shape->numel, infer = -1;
    int64_t t[4], known = 1, total = 1;
    for (int i = 0; i < x->ndims; i++) total *= x->dims[i];
    for (int i = 0; i < nd; i++) {
        t[i] = shape->ival[i];
        if (t[i] == 0 && i < x->ndims) t[i] = x->dims[i];
        if (t[i] == -1 && infer < 0) infer = i;
        else if (t[i] < 1) return node_fail(c, n, FKD_ERR_FORMAT, "bad target dimension %lld", (long long)shape->ival[i]);
        else known *= t[i];
    }
    if (infer >= 0) t[infer] = known ? total / known : 0;
    int64_t got = 1;
    for (int i = 0; i < nd; i++) got *= t[i];
    char s1[96], s2[96];
    /* insightface's exporters wire the batch as 1: (1, C·H·W) on a batch of N reads as the
     * (N, C·H·W) it means. */
    bool batch_one = nd == 2 && x->ndims == 4 && t[0] == 1 && x->dims[0] > 1 && infer == 1;
    if (batch_one) {
        t[0] = x->dims[0];
        t[1] = total / x->dims[0];
        got = total;
        FKD_WARN("%s: node '%s' (Reshape): target wired to batch 1, read as (N, -1)", c->path, str(n->name));
    }
    if (got != total)
        return node_fail(c, n, FKD_ERR_FORMAT, "inconsistent shapes: %s cannot become %s", dims_str(x->ndims, x->dims, s1, sizeof s1),
                         dims_str(nd, t, s2, sizeof s2));
    bool same = nd == x->ndims;
    for (int i = 0; same && i < nd; i++) same = t[i] == x->dims[i];
    if (same) return def_alias(c, n, xs);
    if (nd == 2 && x->ndims == 4 && t[0] == x->dims[0]) {
        int li;
        FKD_TRY(add_flatten(c, n, xs->layer, &li));
        return def_value(c, n, li);
    }
    return node_fail(c, n, FKD_ERR_UNSUPPORTED, "%s to %s (only to (N, -1))", dims_str(x->ndims, x->dims, s1, sizeof s1),
                     dims_str(nd, t, s2, sizeof s2));
}

/* Gemm (transB selects the weight's orientation, alpha/beta scale it) and MatMul with a
 * constant right operand: linear layers with weight (O, I). */
static fkd_status op_linear(ctx *c, const Onnx__NodeProto *n, bool gemm)
{
    int xi;
    sym *w, *bias = NULL;
    FKD_TRY(in_value(c, n, 0, &xi));
    FKD_TRY(in_const(c, n, 1, &w));
    if (gemm && has_input(n, 2)) FKD_TRY(in_const(c, n, 2, &bias));
    const layer *x = &c->layers[xi];
    char s1[96], s2[96];
    if (gemm && attr_int(n, "transA", 0)) return node_fail(c, n, FKD_ERR_UNSUPPORTED, "transA = 1");
    bool trans = gemm && attr_int(n, "transB", 0);
    if (x->ndims != 2 || w->ndims != 2 || w->integer || w->dims[trans ? 1 : 0] != x->dims[1])
        return node_fail(c, n, FKD_ERR_FORMAT, "inconsistent shapes: input %s, weight %s%s", dims_str(x->ndims, x->dims, s1, sizeof s1),
                         dims_str(w->ndims, w->dims, s2, sizeof s2), trans ? " (transposed)" : "");
    int64_t I = x->dims[1], O = w->dims[trans ? 0 : 1];
    float alpha = gemm ? attr_float(n, "alpha", 1.0f) : 1.0f, beta = gemm ? attr_float(n, "beta", 1.0f) : 1.0f;
    if (bias && bias->numel != O && bias->numel != 1)
        return node_fail(c, n, FKD_ERR_UNSUPPORTED, "bias '%s' with %lld values for %lld outputs", bias->name,
                         (long long)bias->numel, (long long)O);
    const int64_t dims[2] = {x->dims[0], O};
    int li;
    FKD_TRY(layer_add(c, n, L_LINEAR, &xi, 1, 2, dims, &li));
    layer *l = &c->layers[li];
    if (!(l->w = floats(c, O * I))) return FKD_ERR_NOMEM;
    for (int64_t o = 0; o < O; o++)
        for (int64_t i = 0; i < I; i++) l->w[o * I + i] = alpha * w->fval[trans ? o * I + i : i * O + o];
    if (bias) {
        if (!(l->b = floats(c, O))) return FKD_ERR_NOMEM;
        for (int64_t o = 0; o < O; o++) l->b[o] = beta * (float)const_at(bias, bias->numel == 1 ? 0 : o);
    }
    return def_value(c, n, li);
}

static fkd_status op_identity(ctx *c, const Onnx__NodeProto *n)
{
    sym *x;
    FKD_TRY(in_sym(c, n, 0, &x));
    return def_alias(c, n, x);
}

static fkd_status convert_node(ctx *c, const Onnx__NodeProto *n)
{
    const char *op = str(n->op_type), *dom = str(n->domain);
    if (n->n_output < 1 || !str(n->output[0])[0]) return node_fail(c, n, FKD_ERR_FORMAT, "no output");
    if (dom[0] && strcmp(dom, "ai.onnx") != 0)
        return node_fail(c, n, FKD_ERR_UNSUPPORTED, "operator domain '%s' (only the default ONNX domain)", dom);
    if (!strcmp(op, "Conv")) return op_conv(c, n);
    if (!strcmp(op, "BatchNormalization")) return op_batchnorm(c, n);
    if (!strcmp(op, "PRelu") || !strcmp(op, "Relu") || !strcmp(op, "LeakyRelu")) return op_prelu(c, n, op);
    if (!strcmp(op, "Add")) return op_arith(c, n, '+');
    if (!strcmp(op, "Sub")) return op_arith(c, n, '-');
    if (!strcmp(op, "Mul")) return op_arith(c, n, '*');
    if (!strcmp(op, "Div")) return op_arith(c, n, '/');
    if (!strcmp(op, "Flatten")) return op_flatten(c, n);
    if (!strcmp(op, "Reshape")) return op_reshape(c, n);
    if (!strcmp(op, "Gemm")) return op_linear(c, n, true);
    if (!strcmp(op, "MatMul")) return op_linear(c, n, false);
    if (!strcmp(op, "GlobalAveragePool")) return op_global_avg_pool(c, n);
    if (!strcmp(op, "Identity") || !strcmp(op, "Dropout")) return op_identity(c, n);
    if (!strcmp(op, "Constant")) return op_constant(c, n);
    if (!strcmp(op, "Shape")) return op_shape(c, n);
    if (!strcmp(op, "Gather")) return op_gather(c, n);
    if (!strcmp(op, "Unsqueeze")) return op_squeeze(c, n, true);
    if (!strcmp(op, "Squeeze")) return op_squeeze(c, n, false);
    if (!strcmp(op, "Concat")) return op_concat(c, n);
    if (!strcmp(op, "Cast")) return op_cast(c, n);
    return node_fail(c, n, FKD_ERR_UNSUPPORTED,
                     "unsupported op (facekd imports Conv, BatchNormalization, PRelu, Relu, LeakyRelu, Add, Sub, Mul, "
                     "Div, Flatten, Reshape, Gemm, MatMul, GlobalAveragePool, Identity, Dropout, and folds Constant, "
                     "Shape, Gather, Unsqueeze, Squeeze, Concat, Cast)");
}

/* ---- pass 1: symbols ----------------------------------------------------------------- */

static fkd_status sym_add(ctx *c, const char *name, int *cap)
{
    if (!name || !*name) return FKD_OK;
    if (sym_find(c, name)) return FKD_FAIL(FKD_ERR_FORMAT, "%s: value '%s' is defined twice", c->path, name);
    if (c->n_syms == *cap) {
        int ncap = *cap ? 2 * *cap : 256;
        sym *p = realloc(c->syms, (size_t)ncap * sizeof *p);
        if (!p) return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", c->path);
        c->syms = p;
        *cap = ncap;
    }
    memset(&c->syms[c->n_syms], 0, sizeof c->syms[0]);
    c->syms[c->n_syms++].name = name;
    return FKD_OK;
}

/* The real input: a graph input that is not an initializer (old exporters list
 * initializers as inputs too). */
static fkd_status find_input(ctx *c, const Onnx__ValueInfoProto **out)
{
    const Onnx__GraphProto *g = c->graph;
    *out = NULL;
    for (size_t i = 0; i < g->n_input; i++) {
        sym *s = sym_find(c, g->input[i]->name);
        if (s && s->init) continue;
        if (*out)
            return FKD_FAIL(FKD_ERR_UNSUPPORTED, "%s: the graph has more than one input ('%s', '%s')", c->path, str((*out)->name),
                            str(g->input[i]->name));
        *out = g->input[i];
    }
    if (!*out) return FKD_FAIL(FKD_ERR_FORMAT, "%s: the graph has no input", c->path);
    return FKD_OK;
}

static fkd_status build_symbols(ctx *c, const Onnx__ValueInfoProto **input)
{
    const Onnx__GraphProto *g = c->graph;
    int cap = 0;
    for (size_t i = 0; i < g->n_initializer; i++) {
        const char *name = g->initializer[i]->name;
        if (!str(name)[0]) return FKD_FAIL(FKD_ERR_FORMAT, "%s: initializer %zu has no name", c->path, i);
        FKD_TRY(sym_add(c, name, &cap));
        sym *s = &c->syms[c->n_syms - 1];
        s->init = g->initializer[i];
        s->defined = s->is_const = true;
    }
    FKD_TRY(find_input(c, input));
    FKD_TRY(sym_add(c, (*input)->name, &cap));
    for (size_t i = 0; i < g->n_node; i++)
        for (size_t k = 0; k < g->node[i]->n_output; k++) FKD_TRY(sym_add(c, g->node[i]->output[k], &cap));
    for (size_t i = 0; i < g->n_node; i++)
        for (size_t k = 0; k < g->node[i]->n_input; k++) {
            sym *s = sym_find(c, g->node[i]->input[k]);
            if (s) s->uses++;
        }
    for (size_t i = 0; i < g->n_output; i++) {
        sym *s = sym_find(c, g->output[i]->name);
        if (!s) return FKD_FAIL(FKD_ERR_FORMAT, "%s: graph output '%s' is not produced by any node", c->path, str(g->output[i]->name));
        s->uses++;
    }
    return FKD_OK;
}

/* C, H, W of the input from its declared type. */
static fkd_status input_shape(ctx *c, const Onnx__ValueInfoProto *in, int64_t chw[3])
{
    const Onnx__TypeProto *t = in->type;
    const Onnx__TensorShapeProto *sh =
        t && t->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE && t->tensor_type ? t->tensor_type->shape : NULL;
    if (!sh || sh->n_dim != 4)
        return FKD_FAIL(FKD_ERR_UNSUPPORTED, "%s: input '%s' is not declared as a 4-D (N, C, H, W) tensor", c->path, str(in->name));
    if (t->tensor_type->has_elem_type && t->tensor_type->elem_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT)
        return FKD_FAIL(FKD_ERR_UNSUPPORTED, "%s: input '%s' has element type %d (float only)", c->path, str(in->name),
                        t->tensor_type->elem_type);
    /* Face models take small images; the limits keep a corrupt shape from asking for
     * gigabytes of activations. */
    const int64_t most[3] = {64, 1024, 1024};
    for (int i = 0; i < 3; i++) {
        const Onnx__TensorShapeProto__Dimension *d = sh->dim[i + 1];
        chw[i] = d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE ? d->dim_value : 0;
        if (chw[i] < 1 || chw[i] > most[i])
            return FKD_FAIL(FKD_ERR_UNSUPPORTED, "%s: input '%s': dimension %d is not a fixed size from 1 to %lld", c->path,
                            str(in->name), i + 1, (long long)most[i]);
    }
    return FKD_OK;
}

/* Does the input go straight into Sub/Add/Mul/Div with a constant? */
static bool normalises_itself(ctx *c, const char *input)
{
    for (size_t i = 0; i < c->graph->n_node; i++) {
        const Onnx__NodeProto *n = c->graph->node[i];
        for (size_t k = 0; k < n->n_input; k++) {
            if (strcmp(str(n->input[k]), input) != 0) continue;
            const char *op = str(n->op_type);
            if (strcmp(op, "Sub") && strcmp(op, "Add") && strcmp(op, "Mul") && strcmp(op, "Div")) return false;
            sym *other = n->n_input == 2 ? sym_find(c, n->input[1 - k]) : NULL;
            if (!other) return false;
            if (other->init) return true;
            /* a Constant node earlier in the file */
            for (size_t j = 0; j < i; j++)
                if (!strcmp(str(c->graph->node[j]->op_type), "Constant") && c->graph->node[j]->n_output &&
                    !strcmp(str(c->graph->node[j]->output[0]), other->name))
                    return true;
            return false;
        }
    }
    return false;
}

/* ---- pass 3: the engine graph -------------------------------------------------------- */

static bool is_identity(const layer *l)
{
    for (int64_t i = 0; i < layer_channels(l); i++)
        if (fabsf(l->w[i] - 1.0f) > 1e-6f || fabsf(l->b[i]) > 1e-6f) return false;
    return true;
}

static fkd_status emit(ctx *c, fkd_graph *g, int li)
{
    layer *l = &c->layers[li];
    fkd_value x = l->n_in ? c->layers[l->in[0]].v : -1;
    switch (l->kind) {
    case L_INPUT: l->v = fkd_graph_input(g, "input", (int)l->dims[1], (int)l->dims[2], (int)l->dims[3]); break;
    case L_CONV: l->v = fkd_graph_conv(g, l->name, x, l->out_c, l->kernel, l->stride, l->pad, l->groups, l->b != NULL); break;
    case L_BN: l->v = fkd_graph_batchnorm(g, l->name, x, l->eps, 0.1f); break;
    case L_AFFINE:
        l->v = is_identity(l) ? x : fkd_graph_batchnorm(g, l->name, x, AFFINE_EPS, 0.1f);
        break;
    case L_PRELU: l->v = fkd_graph_prelu(g, l->name, x); break;
    case L_ADD: l->v = fkd_graph_add(g, l->name, x, c->layers[l->in[1]].v); break;
    case L_FLATTEN: l->v = fkd_graph_flatten(g, l->name, x); break;
    case L_LINEAR: l->v = fkd_graph_linear(g, l->name, x, (int)l->dims[1], l->b != NULL); break;
    }
    if (l->v < 0) return FKD_WRAP((fkd_status)l->v, "%s: ", c->path);
    return FKD_OK;
}

static fkd_status write_param(fkd_graph *g, fkd_param *params, int count, const char *node, const char *suffix,
                              const float *data)
{
    char name[300];
    snprintf(name, sizeof name, "%s.%s", node, suffix);
    for (int i = 0; i < count; i++)
        if (strcmp(params[i].name, name) == 0) return fkd_graph_param_write(g, i, data);
    return FKD_FAIL(FKD_ERR_NOTFOUND, "onnx import: engine parameter '%s' missing", name);
}

static fkd_status load_params(ctx *c, fkd_graph *g)
{
    fkd_param *params;
    int count;
    FKD_TRY(fkd_graph_params(g, &params, &count));
    float *zeros = NULL, *var = NULL;
    fkd_status st = FKD_OK;
    for (int i = 0; i < c->n_layers && st == FKD_OK; i++) {
        const layer *l = &c->layers[i];
        switch (l->kind) {
        case L_CONV:
        case L_LINEAR:
        case L_PRELU:
            st = write_param(g, params, count, l->name, "weight", l->w);
            if (st == FKD_OK && l->b && l->kind != L_PRELU) st = write_param(g, params, count, l->name, "bias", l->b);
            break;
        case L_BN:
        case L_AFFINE: {
            if (l->kind == L_AFFINE && is_identity(l)) break;
            int64_t C = layer_channels(l);
            free(zeros);
            free(var);
            zeros = floats(c, C);
            var = floats(c, C);
            if (!zeros || !var) {
                st = FKD_ERR_NOMEM;
                break;
            }
            for (int64_t k = 0; k < C; k++) var[k] = 1.0f - AFFINE_EPS;
            const bool bn = l->kind == L_BN;
            st = write_param(g, params, count, l->name, "weight", l->w);
            if (st == FKD_OK) st = write_param(g, params, count, l->name, "bias", l->b);
            if (st == FKD_OK) st = write_param(g, params, count, l->name, "running_mean", bn ? l->mean : zeros);
            if (st == FKD_OK) st = write_param(g, params, count, l->name, "running_var", bn ? l->var : var);
            break;
        }
        default: break;
        }
    }
    free(zeros);
    free(var);
    return st;
}

static fkd_status build_graph(ctx *c, const fkd_graph_config *config, fkd_graph **out, fkd_value *embedding,
                              int emb_layer, int *engine_nodes)
{
    fkd_graph *g = NULL;
    FKD_TRY(fkd_graph_create(&g, config));
    fkd_status st = FKD_OK;
    for (int i = 0; i < c->n_layers && st == FKD_OK; i++) st = emit(c, g, i);
    if (st == FKD_OK) st = fkd_graph_tap(g, "embedding", c->layers[emb_layer].v);
    if (st == FKD_OK) st = fkd_graph_finalize(g);
    if (st == FKD_OK) st = load_params(c, g);
    if (st != FKD_OK) {
        fkd_graph_free(g);
        return st;
    }
    int n = 0;
    for (int i = 0; i < c->n_layers; i++) n += !(c->layers[i].kind == L_AFFINE && is_identity(&c->layers[i]));
    *engine_nodes = n;
    *embedding = c->layers[emb_layer].v;
    *out = g;
    return FKD_OK;
}

/* ---- entry points -------------------------------------------------------------------- */

static void ctx_free(ctx *c)
{
    for (int i = 0; i < c->n_syms; i++) sym_drop_data(&c->syms[i]);
    free(c->syms);
    for (int i = 0; i < c->n_layers; i++) layer_free(&c->layers[i]);
    free(c->layers);
}

static fkd_status check_model(ctx *c, fkd_onnx_info *info)
{
    const Onnx__ModelProto *m = c->model;
    if (!m->graph) return FKD_FAIL(FKD_ERR_FORMAT, "%s: the model has no graph", c->path);
    c->graph = m->graph;
    c->opset = -1;
    for (size_t i = 0; i < m->n_opset_import; i++) {
        const char *d = str(m->opset_import[i]->domain);
        if (!d[0] || !strcmp(d, "ai.onnx")) c->opset = m->opset_import[i]->version;
    }
    if (c->opset < 0) return FKD_FAIL(FKD_ERR_FORMAT, "%s: no opset_import for the default ONNX domain", c->path);
    if (c->opset < 9 || c->opset > 17)
        return FKD_FAIL(FKD_ERR_UNSUPPORTED, "%s: opset %lld (facekd imports opsets 9 to 17)", c->path, (long long)c->opset);
    info->opset = c->opset;
    info->ir_version = m->ir_version;
    snprintf(info->producer, sizeof info->producer, "%s%s%s", str(m->producer_name), m->producer_version ? " " : "",
             str(m->producer_version));
    info->onnx_nodes = (int)c->graph->n_node;
    for (size_t i = 0; i < m->n_metadata_props; i++) {
        const char *k = str(m->metadata_props[i]->key), *v = str(m->metadata_props[i]->value);
        if (!strcmp(k, "architecture")) snprintf(info->architecture, sizeof info->architecture, "%s", v);
        if (!strcmp(k, "preprocessing")) snprintf(info->preprocessing, sizeof info->preprocessing, "%s", v);
    }
    return FKD_OK;
}

/* Pass 2 and the output: returns the embedding layer. */
static fkd_status convert(ctx *c, fkd_onnx_info *info, int *emb_layer)
{
    const Onnx__ValueInfoProto *input = NULL;
    int64_t chw[3];
    FKD_TRY(build_symbols(c, &input));
    FKD_TRY(input_shape(c, input, chw));
    snprintf(info->input_name, sizeof info->input_name, "%s", str(input->name));
    info->channels = (int)chw[0];
    info->height = (int)chw[1];
    info->width = (int)chw[2];
    const int64_t dims[4] = {c->batch, chw[0], chw[1], chw[2]};
    int li;
    FKD_TRY(layer_add(c, NULL, L_INPUT, NULL, 0, 4, dims, &li));
    c->self_normalising = normalises_itself(c, input->name);
    if (c->self_normalising) {
        /* back to pixels: x·127.5 + 127.5, which the graph's own Sub/Mul then fold into */
        int ai;
        FKD_TRY(layer_add(c, NULL, L_AFFINE, &li, 1, 4, dims, &ai));
        c->layers[ai].w = floats(c, chw[0]);
        c->layers[ai].b = floats(c, chw[0]);
        if (!c->layers[ai].w || !c->layers[ai].b) return FKD_ERR_NOMEM;
        for (int64_t k = 0; k < chw[0]; k++) {
            c->layers[ai].w[k] = 127.5f;
            c->layers[ai].b[k] = 127.5f;
        }
        free(c->layers[ai].name);
        c->layers[ai].name = strdup("input.pixels");
        if (!c->layers[ai].name) return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", c->path);
        li = ai;
    }
    sym *in = sym_find(c, input->name);
    in->defined = true;
    in->layer = li;
    c->layers[li].uses = in->uses;
    for (size_t i = 0; i < c->graph->n_node; i++) {
        const Onnx__NodeProto *n = c->graph->node[i];
        FKD_TRY(convert_node(c, n));
        /* constants read for the last time: free their converted data */
        for (size_t k = 0; k < n->n_input; k++) {
            sym *s = sym_find(c, n->input[k]);
            if (s && s->is_const && --s->uses == 0 && s->init) sym_drop_data(s);
        }
    }
    if (c->graph->n_output < 1) return FKD_FAIL(FKD_ERR_FORMAT, "%s: the graph has no output", c->path);
    const char *oname = str(c->graph->output[0]->name);
    snprintf(info->output_name, sizeof info->output_name, "%s", oname);
    sym *o = sym_find(c, oname);
    if (!o || !o->defined || o->is_const)
        return FKD_FAIL(FKD_ERR_FORMAT, "%s: graph output '%s' is not a computed value", c->path, oname);
    *emb_layer = o->layer;
    const layer *e = &c->layers[o->layer];
    if (e->ndims == 4) {
        FKD_TRY(add_flatten(c, NULL, o->layer, emb_layer));
        free(c->layers[*emb_layer].name);
        c->layers[*emb_layer].name = strdup("embedding.flatten");
        if (!c->layers[*emb_layer].name) return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", c->path);
    }
    info->embedding_size = (int)c->layers[*emb_layer].dims[1];
    info->folded = c->folded;
    info->self_normalising = c->self_normalising;
    return FKD_OK;
}

static fkd_status check_config(const char *path, const fkd_graph_config *config)
{
    if (!config || config->mode != FKD_GRAPH_INFER)
        return FKD_FAIL(FKD_ERR_ARG, "%s: ONNX models are imported into inference graphs only", path);
    if (config->batch < 1) return FKD_FAIL(FKD_ERR_ARG, "%s: batch must be at least 1", path);
    return FKD_OK;
}

static fkd_status parse(const char *path, const uint8_t *data, size_t size, Onnx__ModelProto **m)
{
    *m = onnx__model_proto__unpack(NULL, size, data);
    if (!*m) return FKD_FAIL(FKD_ERR_FORMAT, "%s: not an ONNX model (protobuf parsing failed on %zu bytes)", path, size);
    return FKD_OK;
}

/* Takes `m`; frees it once the layers hold their own copies of the weights, before the
 * engine allocates its own (a ResNet-50 is 174 MB in each of these). */
static fkd_status import_parsed(fkd_graph **out, const char *path, Onnx__ModelProto *m, const fkd_graph_config *config,
                                fkd_value *embedding, fkd_onnx_info *info)
{
    ctx c = {.path = path, .model = m, .batch = config->batch};
    fkd_status st = check_model(&c, info);
    int emb = -1;
    if (st == FKD_OK) st = convert(&c, info, &emb);
    onnx__model_proto__free_unpacked(m, NULL);
    for (int i = 0; i < c.n_syms; i++) sym_drop_data(&c.syms[i]);
    if (st == FKD_OK) st = build_graph(&c, config, out, embedding, emb, &info->engine_nodes);
    ctx_free(&c);
    return st;
}

fkd_status fkd_onnx_import_bytes(fkd_graph **out, const char *path, const uint8_t *data, size_t size,
                                 const fkd_graph_config *config, fkd_value *embedding, fkd_onnx_info *info)
{
    *out = NULL;
    fkd_onnx_info local;
    if (!info) info = &local;
    memset(info, 0, sizeof *info);
    Onnx__ModelProto *m;
    FKD_TRY(check_config(path, config));
    FKD_TRY(parse(path, data, size, &m));
    return import_parsed(out, path, m, config, embedding, info);
}

fkd_status fkd_onnx_import(fkd_graph **out, const char *path, const fkd_graph_config *config, fkd_value *embedding,
                           fkd_onnx_info *info)
{
    *out = NULL;
    fkd_onnx_info local;
    if (!info) info = &local;
    memset(info, 0, sizeof *info);
    uint8_t *data;
    size_t size;
    Onnx__ModelProto *m;
    FKD_TRY(check_config(path, config));
    FKD_TRY(fkd_file_read_all(path, &data, &size));
    fkd_status st = parse(path, data, size, &m);
    free(data); /* the parsed model holds its own copy */
    if (st != FKD_OK) return st;
    return import_parsed(out, path, m, config, embedding, info);
}
