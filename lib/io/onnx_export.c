/* ONNX export (see onnx_export.h): the graph's nodes (nn/graph_walk.h) → NodeProtos,
 * parameters (plain PyTorch layout) → initializers, with batch norms folded into the
 * convolution or linear layer they follow when that layer feeds nothing else. Every
 * allocation of the message tree goes into one pool freed at the end. */
#include "io/onnx_export.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "facekd.h"
#include "io/onnx.pb-c.h"
#include "io/onnx_import.h"
#include "nn/fold.h"
#include "nn/graph_walk.h"

typedef struct {
    void **items;
    int n, cap;
    bool failed;
} pool;

static void *pool_alloc(pool *p, size_t size)
{
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 256;
        void **items = realloc(p->items, (size_t)cap * sizeof *items);
        if (!items) {
            p->failed = true;
            return NULL;
        }
        p->items = items;
        p->cap = cap;
    }
    void *m = calloc(1, size ? size : 1);
    if (!m) {
        p->failed = true;
        return NULL;
    }
    p->items[p->n++] = m;
    return m;
}

static char *pool_str(pool *p, const char *s)
{
    char *d = pool_alloc(p, strlen(s) + 1);
    if (d) strcpy(d, s);
    return d;
}

static void pool_free(pool *p)
{
    for (int i = 0; i < p->n; i++) free(p->items[i]);
    free(p->items);
}

typedef struct {
    pool pool;
    fkd_graph *g;
    fkd_graph_node_info *nodes;
    int n_nodes;
    int *producer;  /* value → node */
    int *consumers; /* value → readers (+1 for the embedding) */
    int *folded_into; /* batchnorm node → the conv/linear node it folds into, else -1 */
    int *alias;     /* value → the value whose ONNX tensor it is */
    char **names;   /* value → ONNX name */
    Onnx__NodeProto **onnx_nodes;
    size_t n_onnx;
    Onnx__TensorProto **inits;
    size_t n_inits;
} exporter;

static int resolve(const exporter *e, int v)
{
    while (e->alias[v] != v) v = e->alias[v];
    return v;
}

/* ---- message builders (pool-owned) ------------------------------------------------------ */

/* An attribute of `type` named `name`; the caller sets its value. */
static Onnx__AttributeProto *attr_new(exporter *e, const char *name, Onnx__AttributeProto__AttributeType type)
{
    Onnx__AttributeProto *a = pool_alloc(&e->pool, sizeof *a);
    if (!a) return NULL;
    onnx__attribute_proto__init(a);
    a->name = pool_str(&e->pool, name);
    a->has_type = 1;
    a->type = type;
    return a;
}

static Onnx__AttributeProto *attr_ints(exporter *e, const char *name, const int64_t *v, size_t n)
{
    Onnx__AttributeProto *a = attr_new(e, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    int64_t *ints = pool_alloc(&e->pool, n * sizeof *ints);
    if (!a || !ints) return NULL;
    memcpy(ints, v, n * sizeof *ints);
    a->ints = ints;
    a->n_ints = n;
    return a;
}

static Onnx__AttributeProto *attr_int(exporter *e, const char *name, int64_t v)
{
    Onnx__AttributeProto *a = attr_new(e, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    if (a) a->has_i = 1, a->i = v;
    return a;
}

static Onnx__AttributeProto *attr_float(exporter *e, const char *name, float v)
{
    Onnx__AttributeProto *a = attr_new(e, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    if (a) a->has_f = 1, a->f = v;
    return a;
}

/* An initializer "<node>.<suffix>" holding `data` (copied), returned by name. */
static const char *initializer(exporter *e, const char *node, const char *suffix, const float *data, int ndims,
                               const int64_t *dims)
{
    Onnx__TensorProto *t = pool_alloc(&e->pool, sizeof *t);
    int64_t *d = pool_alloc(&e->pool, (size_t)ndims * sizeof *d);
    char name[300];
    snprintf(name, sizeof name, "%s.%s", node, suffix);
    int64_t numel = 1;
    for (int i = 0; i < ndims; i++) numel *= dims[i];
    uint8_t *raw = pool_alloc(&e->pool, (size_t)numel * sizeof(float));
    if (!t || !d || !raw) return NULL;
    onnx__tensor_proto__init(t);
    memcpy(d, dims, (size_t)ndims * sizeof *d);
    memcpy(raw, data, (size_t)numel * sizeof(float)); /* little-endian hosts: the ONNX byte order */
    t->dims = d;
    t->n_dims = (size_t)ndims;
    t->has_data_type = 1;
    t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    t->name = pool_str(&e->pool, name);
    t->has_raw_data = 1;
    t->raw_data.data = raw;
    t->raw_data.len = (size_t)numel * sizeof(float);
    e->inits[e->n_inits++] = t;
    return t->name;
}

/* A node reading `inputs` (names) and writing value `out`'s tensor. */
static Onnx__NodeProto *node(exporter *e, const char *op, const char *name, const char *const *inputs, int n_in,
                             int out, Onnx__AttributeProto **attrs, int n_attrs)
{
    Onnx__NodeProto *n = pool_alloc(&e->pool, sizeof *n);
    char **in = pool_alloc(&e->pool, (size_t)n_in * sizeof *in);
    char **outs = pool_alloc(&e->pool, sizeof *outs);
    Onnx__AttributeProto **at = pool_alloc(&e->pool, (size_t)n_attrs * sizeof *at);
    if (!n || !in || !outs || !at) return NULL;
    onnx__node_proto__init(n);
    n->op_type = pool_str(&e->pool, op);
    n->name = pool_str(&e->pool, name);
    for (int i = 0; i < n_in; i++) in[i] = (char *)inputs[i];
    n->input = in;
    n->n_input = (size_t)n_in;
    outs[0] = e->names[resolve(e, out)];
    n->output = outs;
    n->n_output = 1;
    for (int i = 0; i < n_attrs; i++) {
        if (!attrs[i]) return NULL;
        at[i] = attrs[i];
    }
    n->attribute = at;
    n->n_attribute = (size_t)n_attrs;
    e->onnx_nodes[e->n_onnx++] = n;
    return n;
}

static Onnx__ValueInfoProto *value_info(exporter *e, const char *name, int ndims, const int64_t *dims)
{
    Onnx__ValueInfoProto *vi = pool_alloc(&e->pool, sizeof *vi);
    Onnx__TypeProto *t = pool_alloc(&e->pool, sizeof *t);
    Onnx__TypeProto__Tensor *tt = pool_alloc(&e->pool, sizeof *tt);
    Onnx__TensorShapeProto *sh = pool_alloc(&e->pool, sizeof *sh);
    Onnx__TensorShapeProto__Dimension **dv = pool_alloc(&e->pool, (size_t)ndims * sizeof *dv);
    if (!vi || !t || !tt || !sh || !dv) return NULL;
    onnx__value_info_proto__init(vi);
    onnx__type_proto__init(t);
    onnx__type_proto__tensor__init(tt);
    onnx__tensor_shape_proto__init(sh);
    for (int i = 0; i < ndims; i++) {
        dv[i] = pool_alloc(&e->pool, sizeof *dv[i]);
        if (!dv[i]) return NULL;
        onnx__tensor_shape_proto__dimension__init(dv[i]);
        if (i == 0) { /* the batch: symbolic, any size */
            dv[i]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            dv[i]->dim_param = pool_str(&e->pool, "batch");
        } else {
            dv[i]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            dv[i]->dim_value = dims[i];
        }
    }
    sh->dim = dv;
    sh->n_dim = (size_t)ndims;
    tt->has_elem_type = 1;
    tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    tt->shape = sh;
    t->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    t->tensor_type = tt;
    vi->name = pool_str(&e->pool, name);
    vi->type = t;
    return vi;
}

/* ---- the graph ---------------------------------------------------------------------------- */

/* Parameter `k` of node `ni` in plain layout (pool-owned). */
static float *param(exporter *e, const fkd_graph_node_info *ni, int k, int64_t *numel)
{
    fkd_param *params;
    int count;
    if (fkd_graph_params(e->g, &params, &count) != FKD_OK || ni->first_param + k >= count) return NULL;
    const fkd_param *p = &params[ni->first_param + k];
    float *d = pool_alloc(&e->pool, (size_t)p->numel * sizeof *d);
    if (!d || fkd_graph_param_read(e->g, ni->first_param + k, d) != FKD_OK) return NULL;
    if (numel) *numel = p->numel;
    return d;
}

/* Conv or linear node `i`, with the batch norm that folds into it (when any): weight and
 * bias initializers, the bias zeros when the layer has none. */
static fkd_status weighted(exporter *e, int i, const int64_t *wdims, int wnd, const char **wn, const char **bn)
{
    const fkd_graph_node_info *ni = &e->nodes[i];
    int64_t wnum, O = wdims[0];
    float *w = param(e, ni, 0, &wnum);
    float *b = ni->n_params == 2 ? param(e, ni, 1, NULL) : pool_alloc(&e->pool, (size_t)O * sizeof(float));
    if (!w || !b) return FKD_FAIL(FKD_ERR_NOMEM, "onnx export: %s: reading parameters failed", ni->name);
    int fold = -1;
    for (int k = 0; k < e->n_nodes; k++)
        if (e->folded_into[k] == i) fold = k;
    if (fold >= 0) {
        const fkd_graph_node_info *bn_i = &e->nodes[fold];
        float *gamma = param(e, bn_i, 0, NULL), *beta = param(e, bn_i, 1, NULL), *mean = param(e, bn_i, 2, NULL),
              *var = param(e, bn_i, 3, NULL);
        if (!gamma || !beta || !mean || !var)
            return FKD_FAIL(FKD_ERR_NOMEM, "onnx export: %s: reading parameters failed", bn_i->name);
        float *s = pool_alloc(&e->pool, (size_t)O * sizeof *s), *t = pool_alloc(&e->pool, (size_t)O * sizeof *t);
        if (!s || !t) return FKD_FAIL(FKD_ERR_NOMEM, "onnx export: out of memory");
        fkd_bn_scale_shift(gamma, beta, mean, var, bn_i->eps, O, s, t);
        fkd_fold_scale_shift(w, b, O, wnum / O, s, t, w, b);
    }
    const int64_t bdims[1] = {O};
    *wn = initializer(e, ni->name, "weight", w, wnd, wdims);
    *bn = initializer(e, ni->name, "bias", b, 1, bdims);
    if (!*wn || !*bn) return FKD_FAIL(FKD_ERR_NOMEM, "onnx export: out of memory");
    return FKD_OK;
}

static fkd_status emit_node(exporter *e, int i)
{
    const fkd_graph_node_info *ni = &e->nodes[i];
    const char *op = ni->op;
    int nd, dims[4];
    FKD_TRY(fkd_graph_shape(e->g, ni->n_inputs ? ni->inputs[0] : ni->output, &nd, dims));
    const char *x = ni->n_inputs ? e->names[resolve(e, ni->inputs[0])] : NULL;
    int64_t C = dims[1];
    const char *wn, *bn;
    if (!strcmp(op, "input") || !strcmp(op, "dropout") || e->folded_into[i] >= 0) return FKD_OK;
    if (!strcmp(op, "conv")) {
        const int64_t wdims[4] = {ni->out_channels, C / ni->groups, ni->kernel, ni->kernel};
        FKD_TRY(weighted(e, i, wdims, 4, &wn, &bn));
        const int64_t k[2] = {ni->kernel, ni->kernel}, s[2] = {ni->stride, ni->stride}, one[2] = {1, 1};
        const int64_t p[4] = {ni->padding, ni->padding, ni->padding, ni->padding};
        Onnx__AttributeProto *at[5] = {attr_ints(e, "kernel_shape", k, 2), attr_ints(e, "strides", s, 2),
                                       attr_ints(e, "pads", p, 4), attr_ints(e, "dilations", one, 2),
                                       attr_int(e, "group", ni->groups)};
        const char *in[3] = {x, wn, bn};
        if (!node(e, "Conv", ni->name, in, 3, ni->output, at, 5)) goto nomem;
        return FKD_OK;
    }
    if (!strcmp(op, "linear")) {
        int ond, odims[4];
        FKD_TRY(fkd_graph_shape(e->g, ni->output, &ond, odims));
        const int64_t wdims[2] = {odims[1], C};
        FKD_TRY(weighted(e, i, wdims, 2, &wn, &bn));
        Onnx__AttributeProto *at[1] = {attr_int(e, "transB", 1)};
        const char *in[3] = {x, wn, bn};
        if (!node(e, "Gemm", ni->name, in, 3, ni->output, at, 1)) goto nomem;
        return FKD_OK;
    }
    if (!strcmp(op, "batchnorm")) {
        const char *suffix[4] = {"weight", "bias", "running_mean", "running_var"};
        const char *in[5] = {x};
        const int64_t cdims[1] = {C};
        for (int k = 0; k < 4; k++) {
            float *d = param(e, ni, k, NULL);
            if (!d || !(in[k + 1] = initializer(e, ni->name, suffix[k], d, 1, cdims))) goto nomem;
        }
        Onnx__AttributeProto *at[1] = {attr_float(e, "epsilon", ni->eps)};
        if (!node(e, "BatchNormalization", ni->name, in, 5, ni->output, at, 1)) goto nomem;
        return FKD_OK;
    }
    if (!strcmp(op, "prelu")) {
        /* (C, 1, 1) broadcasts over (N, C, H, W) by ONNX's right-aligned rules; (C) over (N, C) */
        const int64_t sdims[3] = {C, 1, 1};
        float *d = param(e, ni, 0, NULL);
        const char *in[2] = {x, d ? initializer(e, ni->name, "weight", d, nd == 4 ? 3 : 1, sdims) : NULL};
        if (!in[1] || !node(e, "PRelu", ni->name, in, 2, ni->output, NULL, 0)) goto nomem;
        return FKD_OK;
    }
    if (!strcmp(op, "add")) {
        const char *in[2] = {x, e->names[resolve(e, ni->inputs[1])]};
        if (!node(e, "Add", ni->name, in, 2, ni->output, NULL, 0)) goto nomem;
        return FKD_OK;
    }
    if (!strcmp(op, "flatten")) {
        Onnx__AttributeProto *at[1] = {attr_int(e, "axis", 1)};
        if (!node(e, "Flatten", ni->name, &x, 1, ni->output, at, 1)) goto nomem;
        return FKD_OK;
    }
    return FKD_FAIL(FKD_ERR_UNSUPPORTED, "onnx export: node '%s': op %s has no ONNX export", ni->name, op);
nomem:
    return FKD_FAIL(FKD_ERR_NOMEM, "onnx export: node '%s': out of memory", ni->name);
}

/* Folding, aliases and names of every value. */
static fkd_status plan(exporter *e, fkd_value embedding)
{
    int n_values = 0;
    for (int i = 0; i < e->n_nodes; i++)
        if (e->nodes[i].output + 1 > n_values) n_values = e->nodes[i].output + 1;
    if (embedding < 0 || embedding >= n_values) return FKD_FAIL(FKD_ERR_ARG, "onnx export: embedding value %d does not exist", embedding);
    e->producer = pool_alloc(&e->pool, (size_t)n_values * sizeof(int));
    e->consumers = pool_alloc(&e->pool, (size_t)n_values * sizeof(int));
    e->alias = pool_alloc(&e->pool, (size_t)n_values * sizeof(int));
    e->names = pool_alloc(&e->pool, (size_t)n_values * sizeof(char *));
    e->folded_into = pool_alloc(&e->pool, (size_t)e->n_nodes * sizeof(int));
    if (e->pool.failed) return FKD_FAIL(FKD_ERR_NOMEM, "onnx export: out of memory");
    for (int v = 0; v < n_values; v++) e->alias[v] = v;
    for (int i = 0; i < e->n_nodes; i++) {
        e->producer[e->nodes[i].output] = i;
        e->folded_into[i] = -1;
        for (int k = 0; k < e->nodes[i].n_inputs; k++) e->consumers[e->nodes[i].inputs[k]]++;
    }
    e->consumers[embedding]++;
    for (int i = 0; i < e->n_nodes; i++) {
        const fkd_graph_node_info *ni = &e->nodes[i];
        if (!strcmp(ni->op, "dropout")) e->alias[ni->output] = ni->inputs[0];
        if (strcmp(ni->op, "batchnorm") != 0) continue;
        int v = ni->inputs[0], p = e->producer[v];
        const char *pop = e->nodes[p].op;
        if (e->consumers[v] == 1 && (!strcmp(pop, "conv") || !strcmp(pop, "linear"))) {
            e->folded_into[i] = p;
            e->alias[ni->output] = v;
        }
    }
    for (int v = 0; v < n_values; v++) {
        if (e->alias[v] != v) continue;
        const fkd_graph_node_info *p = &e->nodes[e->producer[v]];
        e->names[v] = pool_str(&e->pool, !strcmp(p->op, "input") ? "input" : p->name);
    }
    int emb = resolve(e, embedding);
    e->names[emb] = pool_str(&e->pool, "embedding");
    if (e->pool.failed) return FKD_FAIL(FKD_ERR_NOMEM, "onnx export: out of memory");
    return FKD_OK;
}

/* IR version that goes with an opset (the ONNX versioning table). */
static int64_t ir_for(int opset)
{
    return opset <= 9 ? 4 : opset == 10 ? 5 : opset == 11 ? 6 : opset <= 14 ? 7 : 8;
}

static fkd_status write_model(exporter *e, fkd_value embedding, const char *path, const fkd_onnx_export_opts *o, int opset)
{
    int nd, in_dims[4], out_dims[4], ond;
    int input = -1;
    for (int i = 0; i < e->n_nodes; i++)
        if (!strcmp(e->nodes[i].op, "input")) {
            if (input >= 0) return FKD_FAIL(FKD_ERR_UNSUPPORTED, "onnx export: the graph has more than one input");
            input = e->nodes[i].output;
        }
    if (input < 0) return FKD_FAIL(FKD_ERR_ARG, "onnx export: the graph has no input");
    FKD_TRY(fkd_graph_shape(e->g, input, &nd, in_dims));
    FKD_TRY(fkd_graph_shape(e->g, embedding, &ond, out_dims));
    if (ond != 2) return FKD_FAIL(FKD_ERR_ARG, "onnx export: the embedding is %d-D, not (N, F)", ond);
    const int64_t id[4] = {in_dims[0], in_dims[1], in_dims[2], in_dims[3]}, od[2] = {out_dims[0], out_dims[1]};
    Onnx__ValueInfoProto *vin = value_info(e, "input", 4, id), *vout = value_info(e, "embedding", 2, od);

    char version[64], emb_size[32];
    snprintf(version, sizeof version, "facekd %s", FKD_VERSION);
    snprintf(emb_size, sizeof emb_size, "%d", out_dims[1]);
    const char *kv[16][2] = {{"architecture", o->architecture ? o->architecture : ""},
                             {"embedding_size", emb_size},
                             {"preprocessing", FKD_ONNX_PREPROCESSING},
                             {"producer", o->producer ? o->producer : version}};
    int n_kv = 4;
    for (int i = 0; i < o->n_meta && n_kv < 16; i++, n_kv++) {
        kv[n_kv][0] = o->meta[i][0];
        kv[n_kv][1] = o->meta[i][1];
    }
    Onnx__StringStringEntryProto **props = pool_alloc(&e->pool, (size_t)n_kv * sizeof *props);
    for (int i = 0; props && i < n_kv; i++) {
        props[i] = pool_alloc(&e->pool, sizeof *props[i]);
        if (!props[i]) break;
        onnx__string_string_entry_proto__init(props[i]);
        props[i]->key = pool_str(&e->pool, kv[i][0]);
        props[i]->value = pool_str(&e->pool, kv[i][1]);
    }
    Onnx__OperatorSetIdProto opset_id = ONNX__OPERATOR_SET_ID_PROTO__INIT, *opsets[1] = {&opset_id};
    opset_id.domain = "";
    opset_id.has_version = 1;
    opset_id.version = opset;
    Onnx__GraphProto graph = ONNX__GRAPH_PROTO__INIT;
    Onnx__ValueInfoProto *ins[1] = {vin}, *outs[1] = {vout};
    graph.name = o->architecture && o->architecture[0] ? (char *)o->architecture : "facekd";
    graph.node = e->onnx_nodes;
    graph.n_node = e->n_onnx;
    graph.initializer = e->inits;
    graph.n_initializer = e->n_inits;
    graph.input = ins;
    graph.n_input = 1;
    graph.output = outs;
    graph.n_output = 1;
    Onnx__ModelProto model = ONNX__MODEL_PROTO__INIT;
    model.has_ir_version = 1;
    model.ir_version = ir_for(opset);
    model.opset_import = opsets;
    model.n_opset_import = 1;
    model.producer_name = "facekd";
    model.producer_version = FKD_VERSION;
    model.graph = &graph;
    model.metadata_props = props;
    model.n_metadata_props = (size_t)n_kv;
    if (e->pool.failed || !vin || !vout) return FKD_FAIL(FKD_ERR_NOMEM, "onnx export: out of memory");
    size_t size = onnx__model_proto__get_packed_size(&model);
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return FKD_FAIL(FKD_ERR_NOMEM, "onnx export: out of memory (%zu bytes)", size);
    onnx__model_proto__pack(&model, buf);
    fkd_status st = fkd_atomic_write(path, buf, size);
    free(buf);
    return st;
}

fkd_status fkd_onnx_export(fkd_graph *g, fkd_value embedding, const char *path, const fkd_onnx_export_opts *opts)
{
    fkd_onnx_export_opts defaults = {0};
    const fkd_onnx_export_opts *o = opts ? opts : &defaults;
    int opset = o->opset ? o->opset : 13;
    if (opset < 9 || opset > 17) return FKD_FAIL(FKD_ERR_ARG, "onnx export: opset %d (9 to 17)", opset);
    exporter e = {.g = g};
    fkd_status st = fkd_graph_node_count(g, &e.n_nodes);
    if (st != FKD_OK) return st;
    e.nodes = pool_alloc(&e.pool, (size_t)e.n_nodes * sizeof *e.nodes);
    e.onnx_nodes = pool_alloc(&e.pool, (size_t)e.n_nodes * sizeof *e.onnx_nodes);
    e.inits = pool_alloc(&e.pool, (size_t)e.n_nodes * 4 * sizeof *e.inits);
    if (e.pool.failed) st = FKD_FAIL(FKD_ERR_NOMEM, "onnx export: out of memory");
    for (int i = 0; i < e.n_nodes && st == FKD_OK; i++) st = fkd_graph_node_at(g, i, &e.nodes[i]);
    if (st == FKD_OK) st = plan(&e, embedding);
    for (int i = 0; i < e.n_nodes && st == FKD_OK; i++) st = emit_node(&e, i);
    if (st == FKD_OK) st = write_model(&e, embedding, path, o, opset);
    pool_free(&e.pool);
    if (st != FKD_OK) return FKD_WRAP(st, "%s: ", path);
    return FKD_OK;
}

fkd_status fkd_onnx_check_roundtrip(fkd_graph *native, fkd_value embedding, const char *onnx_path, uint64_t seed,
                                    double *max_abs)
{
    int nd, xd[4], ed[4], input = -1, n_nodes;
    FKD_TRY(fkd_graph_node_count(native, &n_nodes));
    for (int i = 0; i < n_nodes && input < 0; i++) {
        fkd_graph_node_info ni;
        FKD_TRY(fkd_graph_node_at(native, i, &ni));
        if (!strcmp(ni.op, "input")) input = ni.output;
    }
    if (input < 0) return FKD_FAIL(FKD_ERR_ARG, "onnx check: the graph has no input");
    FKD_TRY(fkd_graph_shape(native, input, &nd, xd));
    FKD_TRY(fkd_graph_shape(native, embedding, &nd, ed));
    fkd_graph_config cfg = {.batch = xd[0], .mode = FKD_GRAPH_INFER};
    fkd_graph *imported;
    fkd_value emb2;
    FKD_TRY(fkd_onnx_import(&imported, onnx_path, &cfg, &emb2, NULL));
    size_t nx = (size_t)xd[0] * xd[1] * xd[2] * xd[3], ne = (size_t)ed[0] * ed[1];
    float *x = malloc(nx * sizeof *x), *a = malloc(ne * sizeof *a), *b = malloc(ne * sizeof *b);
    fkd_status st = x && a && b ? FKD_OK : FKD_FAIL(FKD_ERR_NOMEM, "onnx check: out of memory");
    fkd_rng rng;
    fkd_rng_seed(&rng, seed, 0x0aa7);
    for (size_t i = 0; st == FKD_OK && i < nx; i++) x[i] = (float)(2.0 * fkd_rng_uniform(&rng) - 1.0);
    if (st == FKD_OK) st = fkd_graph_set_input(native, "input", x);
    if (st == FKD_OK) st = fkd_graph_forward(native);
    if (st == FKD_OK) st = fkd_graph_read(native, embedding, a);
    if (st == FKD_OK) st = fkd_graph_set_input(imported, "input", x);
    if (st == FKD_OK) st = fkd_graph_forward(imported);
    if (st == FKD_OK) st = fkd_graph_read(imported, emb2, b);
    double m = 0;
    for (size_t i = 0; st == FKD_OK && i < ne; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= m)) m = d; /* NaN propagates */
    }
    *max_abs = m;
    free(x);
    free(a);
    free(b);
    fkd_graph_free(imported);
    return st;
}
