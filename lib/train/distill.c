#include "train/distill.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "dist/dist.h"
#include "distill/distiller.h"
#include "heads/margin.h"
#include "io/model.h"
#include "io/model_any.h"
#include "io/safetensors.h"
#include "train/teacher_cache.h"
#include "core/fileio.h"

#define MAX_METHODS FKD_TRAIN_MAX_TERMS
#define MAX_OPTIONS 32

/* One method of the recipe with its options (text and place, borrowed from the recipe
 * tree) and the buffers for its taps. */
typedef struct {
    fkd_distiller *d;
    double weight;
    char term_name[64];
    fkd_distill_option options[MAX_OPTIONS];
    char places[MAX_OPTIONS][256];
    char list_text[MAX_OPTIONS][512]; /* list values as "[a, b]" */
    int n_options;
    fkd_value student_tap, teacher_tap; /* -1 when unused */
    float *student_tap_buf, *d_student_tap, *teacher_tap_buf;
} method_slot;

struct fkd_distill_run {
    const fkd_recipe *r;
    fkd_safetensors teacher_file; /* .safetensors teachers */
    bool onnx;                    /* an .onnx teacher (no class centres) */
    fkd_graph *teacher;
    fkd_value teacher_emb;
    int d_t, d_s, classes, batch;
    float *teacher_centres;  /* (C, d_t) "head.weight" of the teacher file, or NULL */
    float *teacher_out;      /* (B, d_t) */
    int64_t *labels;         /* (B) */
    method_slot methods[MAX_METHODS];
    int n_methods;
    fkd_param *params;       /* every method's trainable parameters, concatenated */
    int n_params;
    fkd_graph *student;      /* borrowed from the trainer (for tap callbacks) */
    fkd_teacher_cache *cache; /* the teacher's embeddings by image and flip, or NULL */
    fkd_precision teacher_precision; /* what teacher.precision runs as on this CPU */
};

void fkd_distill_run_free(fkd_distill_run *d)
{
    if (!d) return;
    for (int i = 0; i < d->n_methods; i++) {
        method_slot *m = &d->methods[i];
        fkd_distiller_free(m->d);
        free(m->student_tap_buf);
        free(m->d_student_tap);
        free(m->teacher_tap_buf);
    }
    fkd_teacher_cache_close(d->cache);
    fkd_graph_free(d->teacher);
    fkd_safetensors_free(&d->teacher_file);
    free(d->teacher_centres);
    free(d->teacher_out);
    free(d->labels);
    free(d->params);
    free(d);
}

/* The recipe's method map as distiller options: every key but method/weight, with the
 * value's text and its place "file:line:col". */
static fkd_status method_options(const fkd_recipe *r, size_t index, method_slot *m)
{
    const fkd_recipe_method *rm = &r->distill[index];
    const fkd_yaml_node *node = rm->node;
    m->n_options = 0;
    for (size_t i = 0; node && i < node->n; i++) {
        const fkd_yaml_node *item = node->items[i];
        if (!strcmp(item->key, "method") || !strcmp(item->key, "weight")) continue;
        if (m->n_options == MAX_OPTIONS)
            return FKD_FAIL(FKD_ERR_ARG, "%s: distill[%zu]: more than %d parameters", r->path, index, MAX_OPTIONS);
        if (item->kind != FKD_YAML_SCALAR && item->kind != FKD_YAML_LIST)
            return FKD_FAIL(FKD_ERR_ARG, "%s:%d:%d: distill[%zu].%s: expected a value or a list", item->src, item->line,
                            item->col, index, item->key);
        fkd_distill_option *o = &m->options[m->n_options];
        snprintf(m->places[m->n_options], sizeof m->places[0], "%s:%d:%d", item->src, item->line, item->col);
        o->key = item->key;
        o->place = m->places[m->n_options];
        o->read = false;
        if (item->kind == FKD_YAML_SCALAR) {
            o->value = item->text;
        } else {
            /* A list of scalars ("[0.1, 0.01]") as the text the getters parse. */
            char *buf = m->list_text[m->n_options];
            size_t len = (size_t)snprintf(buf, 512, "[");
            for (size_t k = 0; k < item->n && len < 500; k++)
                len += (size_t)snprintf(buf + len, 512 - len, "%s%s", k ? ", " : "",
                                        item->items[k]->text ? item->items[k]->text : "");
            snprintf(buf + len, 512 - len, "]");
            o->value = buf;
        }
        m->n_options++;
    }
    return FKD_OK;
}

static fkd_status tap_shape(void *user, bool teacher, const char *name, fkd_distill_tap_shape *shape)
{
    fkd_distill_run *d = user;
    fkd_graph *g = teacher ? d->teacher : d->student;
    fkd_value v = fkd_graph_find(g, name);
    if (v < 0)
        return FKD_FAIL(FKD_ERR_NOTFOUND, "the %s has no tap '%s' (taps: embedding, stage1..stage4, node names)",
                        teacher ? "teacher" : "student", name);
    int ndims, dims[4];
    FKD_TRY(fkd_graph_shape(g, v, &ndims, dims));
    *shape = (fkd_distill_tap_shape){dims[1], ndims == 4 ? dims[2] : 1, ndims == 4 ? dims[3] : 1};
    return FKD_OK;
}

static fkd_status alloc_tap(fkd_graph *g, fkd_value v, float **buf)
{
    int ndims, dims[4];
    FKD_TRY(fkd_graph_shape(g, v, &ndims, dims));
    size_t n = (size_t)dims[0] * dims[1] * (ndims == 4 ? (size_t)dims[2] * dims[3] : 1);
    *buf = calloc(n, sizeof **buf);
    return *buf ? FKD_OK : FKD_FAIL(FKD_ERR_NOMEM, "distillation: out of memory for a tap");
}

fkd_graph_config fkd_distill_teacher_graph_config(const fkd_recipe *r, int batch)
{
    /* A bf16 teacher: bf16 weights and activations in the INFER graph, its outputs read as
     * fp32 (every loss stays fp32). */
    fkd_precision precision =
        fkd_train_precision(r->path, "teacher.precision", r->teacher.precision == FKD_RECIPE_PRECISION_BF16);
    return (fkd_graph_config){.batch = batch, .mode = FKD_GRAPH_INFER, .precision = precision,
                              .direct_conv = r->teacher.direct_conv};
}

static fkd_status build_teacher(fkd_distill_run *d, int batch)
{
    const fkd_recipe *r = d->r;
    const char *arch = r->teacher.arch == FKD_RECIPE_ARCH_UNSET ? NULL : fkd_recipe_enum_name("teacher.arch", r->teacher.arch);
    fkd_graph_config gc = fkd_distill_teacher_graph_config(r, batch);
    d->teacher_precision = gc.precision;
    fkd_status s = d->onnx ? fkd_model_open_any(r->teacher.model, arch, &gc, &d->teacher, &d->teacher_emb)
                           : fkd_model_open(&d->teacher, &d->teacher_file, arch, &gc, &d->teacher_emb);
    if (s != FKD_OK) return FKD_WRAP(s, "teacher: ");
    int ndims, dims[4];
    FKD_TRY(fkd_graph_shape(d->teacher, d->teacher_emb, &ndims, dims));
    d->d_t = dims[1];
    d->teacher_out = malloc(sizeof(float) * (size_t)batch * d->d_t);
    d->labels = malloc(sizeof(int64_t) * (size_t)batch);
    if (!d->teacher_out || !d->labels) return FKD_FAIL(FKD_ERR_NOMEM, "teacher: out of memory");
    /* An ONNX teacher has no class centres: methods that need them say so at create. */
    const fkd_st_tensor *w = d->onnx ? NULL : fkd_safetensors_find(&d->teacher_file, "head.weight");
    if (w) {
        if (w->ndims != 2 || w->dims[1] != d->d_t || w->dims[0] != d->classes)
            return FKD_FAIL(FKD_ERR_FORMAT,
                            "%s: head.weight is %lldx%lld, expected %dx%d (the training set's identities x the teacher's "
                            "embedding size): was the teacher trained on this data?",
                            d->teacher_file.path, (long long)w->dims[0], (long long)(w->ndims > 1 ? w->dims[1] : 0),
                            d->classes, d->d_t);
        d->teacher_centres = malloc(sizeof(float) * (size_t)w->numel);
        if (!d->teacher_centres) return FKD_FAIL(FKD_ERR_NOMEM, "teacher: out of memory");
        fkd_st_tensor_to_f32(w, d->teacher_centres);
    }
    return FKD_OK;
}

static fkd_status create_method(fkd_distill_run *d, size_t index, fkd_margin_head *head)
{
    const fkd_recipe *r = d->r;
    method_slot *m = &d->methods[d->n_methods];
    m->student_tap = m->teacher_tap = -1;
    FKD_TRY(method_options(r, index, m));
    char scope[32];
    snprintf(scope, sizeof scope, "distill[%zu]", index);
    fkd_distill_options opts;
    fkd_distill_options_init(&opts, scope, m->options, m->n_options);
    fkd_distill_context ctx = {.max_batch = d->batch, .d_s = d->d_s, .d_t = d->d_t, .classes = d->classes,
                               .scale = head ? fkd_margin_head_config(head)->s : 0, .seed = (uint64_t)r->seed + index,
                               .tap_shape = tap_shape, .tap_user = d};
    fkd_status s = fkd_distiller_create(&m->d, r->distill[index].method, &opts, &ctx);
    if (s != FKD_OK) return FKD_WRAP(s, "%s: ", r->path);
    d->n_methods++;
    unsigned needs = m->d->needs.flags;
    if ((needs & (FKD_DISTILL_NEED_TEACHER_CENTRES | FKD_DISTILL_GIVES_MARGINS)) && !d->teacher_centres)
        return FKD_FAIL(FKD_ERR_FORMAT, "%s: distill[%zu] (%s) needs the teacher's class centres, and %s has no head.weight",
                        r->path, index, m->d->method->name, r->teacher.model);
    if ((needs & (FKD_DISTILL_NEED_STUDENT_CENTRES | FKD_DISTILL_GIVES_MARGINS)) && !head)
        return FKD_FAIL(FKD_ERR_ARG, "%s: distill[%zu] (%s) needs a margin head (class centres), not head.loss %s",
                        r->path, index, m->d->method->name, fkd_recipe_enum_name("head.loss", r->head.loss));
    if (needs & FKD_DISTILL_NEED_STUDENT_LOGITS)
        return FKD_FAIL(FKD_ERR_UNSUPPORTED, "%s: distill[%zu] (%s) reads the student head's logits, which this trainer "
                        "does not pass", r->path, index, m->d->method->name);
    if (needs & FKD_DISTILL_NEED_STUDENT_TAP) {
        m->student_tap = fkd_graph_find(d->student, m->d->needs.student_tap);
        FKD_TRY(alloc_tap(d->student, m->student_tap, &m->student_tap_buf));
        FKD_TRY(alloc_tap(d->student, m->student_tap, &m->d_student_tap));
    }
    if (needs & FKD_DISTILL_NEED_TEACHER_TAP) {
        m->teacher_tap = fkd_graph_find(d->teacher, m->d->needs.teacher_tap);
        FKD_TRY(alloc_tap(d->teacher, m->teacher_tap, &m->teacher_tap_buf));
    }
    double weight = r->distill[index].weight;
    m->weight = isnan(weight) ? fkd_distiller_default_weight(m->d) : weight;
    snprintf(m->term_name, sizeof m->term_name, "%s", m->d->method->name);
    /* MarginDistillation: the student's centres are the teacher's, frozen. */
    if (needs & FKD_DISTILL_GIVES_MARGINS) FKD_TRY(fkd_margin_head_set_centers(head, d->teacher_centres, true));
    return FKD_OK;
}

/* Collects every method's trainable parameters into one list for the optimizer. */
static fkd_status collect_params(fkd_distill_run *d)
{
    int total = 0;
    for (int i = 0; i < d->n_methods; i++) {
        fkd_param *p;
        total += fkd_distiller_params(d->methods[i].d, &p);
    }
    if (total == 0) return FKD_OK;
    d->params = calloc((size_t)total, sizeof *d->params);
    if (!d->params) return FKD_FAIL(FKD_ERR_NOMEM, "distillation: out of memory");
    for (int i = 0; i < d->n_methods; i++) {
        fkd_param *p;
        int n = fkd_distiller_params(d->methods[i].d, &p);
        memcpy(d->params + d->n_params, p, sizeof *p * (size_t)n);
        d->n_params += n;
    }
    return FKD_OK;
}

/* The teacher cache, when the recipe allows it and no method reads a teacher tap: the
 * teacher's output is then a function of (image, flip) alone. */
static fkd_status open_cache(fkd_distill_run *d, fkd_trainer *t)
{
    if (!d->r->teacher.cache) return FKD_OK;
    for (int i = 0; i < d->n_methods; i++)
        if (d->methods[i].teacher_tap >= 0) {
            FKD_INFO("teacher cache: not used (%s reads the teacher's %s)", d->methods[i].term_name,
                     d->methods[i].d->needs.teacher_tap);
            return FKD_OK;
        }
    char dir[4096];
    if (d->r->teacher.cache_dir)
        snprintf(dir, sizeof dir, "%s", d->r->teacher.cache_dir);
    else
        snprintf(dir, sizeof dir, "%s/teacher", fkd_cache_dir());
    bool hit;
    /* Under mpirun rank 0 computes a missing cache while the others wait, then they open
     * the same file by path (a folder shared by every machine, or one copy each). */
    if (!fkd_dist_is_root()) FKD_TRY(fkd_dist_barrier());
    fkd_status s = fkd_teacher_cache_open(&d->cache, dir, d->r->teacher.model, fkd_trainer_dataset(t),
                                          d->r->data.resize, d->teacher_precision, d->teacher, d->teacher_emb, &hit);
    if (s == FKD_OK && fkd_dist_is_root()) s = fkd_dist_barrier();
    return s;
}

static fkd_status hook_init(fkd_train_hook *hook, fkd_trainer *t, fkd_param **extra, int *n_extra)
{
    fkd_distill_run *d = hook->ctx;
    fkd_value emb;
    d->student = fkd_trainer_graph(t, &emb);
    int ndims, dims[4];
    FKD_TRY(fkd_graph_shape(d->student, emb, &ndims, dims));
    d->d_s = dims[1];
    d->batch = fkd_trainer_batch(t);
    d->classes = fkd_trainer_classes(t);
    FKD_TRY(build_teacher(d, d->batch));
    for (size_t i = 0; i < d->r->n_distill; i++) FKD_TRY(create_method(d, i, fkd_trainer_head(t)));
    FKD_TRY(collect_params(d));
    FKD_TRY(open_cache(d, t));
    hook->n_terms = d->n_methods;
    for (int i = 0; i < d->n_methods; i++) hook->names[i] = d->methods[i].term_name;
    *extra = d->params;
    *n_extra = d->n_params;
    FKD_INFO("distilling from %s (%d-d teacher) with %d method(s)", d->r->teacher.model, d->d_t, d->n_methods);
    return FKD_OK;
}

static fkd_status hook_step(void *ctx, fkd_trainer *t, const fkd_batch *batch, const float *embedding,
                            float *d_embedding, float *margins, bool *use_margins, double *terms)
{
    fkd_distill_run *d = ctx;
    if (d->cache) {
        FKD_TRY(fkd_teacher_cache_read(d->cache, batch->indices, batch->flipped, batch->n, d->teacher_out));
    } else {
        FKD_TRY(fkd_graph_set_input(d->teacher, "input", batch->images));
        FKD_TRY(fkd_graph_forward(d->teacher));
        FKD_TRY(fkd_graph_read(d->teacher, d->teacher_emb, d->teacher_out));
    }
    for (int i = 0; i < batch->n; i++) d->labels[i] = batch->labels[i];
    fkd_param *head_params = NULL;
    int n_head = 0;
    fkd_margin_head *head = fkd_trainer_head(t);
    if (head) FKD_TRY(fkd_margin_head_params(head, &head_params, &n_head));
    for (int k = 0; k < d->n_methods; k++) {
        method_slot *m = &d->methods[k];
        if (m->student_tap >= 0) FKD_TRY(fkd_graph_read(d->student, m->student_tap, m->student_tap_buf));
        if (m->teacher_tap >= 0) FKD_TRY(fkd_graph_read(d->teacher, m->teacher_tap, m->teacher_tap_buf));
        fkd_distill_inputs in = {.batch = batch->n,
                                 .student_emb = embedding,
                                 .teacher_emb = d->teacher_out,
                                 .student_centres = n_head ? head_params[0].data : NULL,
                                 .teacher_centres = d->teacher_centres,
                                 .labels = d->labels,
                                 .student_tap = m->student_tap_buf,
                                 .teacher_tap = m->teacher_tap_buf,
                                 .step = fkd_trainer_step(t)};
        bool gives_margins = m->d->needs.flags & FKD_DISTILL_GIVES_MARGINS;
        fkd_distill_outputs out = {.grad_scale = (float)m->weight,
                                   .d_student_emb = d_embedding,
                                   .d_student_centres = n_head && head_params[0].trainable ? head_params[0].grad : NULL,
                                   .d_student_tap = m->d_student_tap,
                                   .margins = gives_margins ? margins : NULL};
        if (m->d_student_tap) {
            int ndims, dims[4];
            FKD_TRY(fkd_graph_shape(d->student, m->student_tap, &ndims, dims));
            memset(m->d_student_tap, 0,
                   sizeof(float) * (size_t)dims[0] * dims[1] * (ndims == 4 ? (size_t)dims[2] * dims[3] : 1));
        }
        double loss;
        FKD_TRY(fkd_distiller_forward(m->d, &in, &out, &loss));
        terms[k] = m->weight * loss;
        if (gives_margins) *use_margins = true;
        if (m->d_student_tap) FKD_TRY(fkd_graph_add_grad(d->student, m->student_tap, m->d_student_tap));
    }
    return FKD_OK;
}

fkd_status fkd_distill_run_create(fkd_distill_run **out, const fkd_recipe *r, fkd_train_hook *hook)
{
    *out = NULL;
    if (!r->teacher.model) return FKD_FAIL(FKD_ERR_ARG, "%s: teacher.model: a distillation recipe needs a teacher", r->path);
    if (r->n_distill == 0) return FKD_FAIL(FKD_ERR_ARG, "%s: distill: no methods (add e.g. {method: kd})", r->path);
    if (r->n_distill > MAX_METHODS) return FKD_FAIL(FKD_ERR_ARG, "%s: distill: at most %d methods", r->path, MAX_METHODS);
    for (size_t i = 0; i < r->n_distill; i++) {
        const fkd_distill_method *method;
        fkd_status s = fkd_distill_method_find(r->distill[i].method, &method);
        if (s != FKD_OK) return FKD_WRAP(s, "%s: distill[%zu].method: ", r->path, i);
    }
    fkd_distill_run *d = calloc(1, sizeof *d);
    if (!d) return FKD_FAIL(FKD_ERR_NOMEM, "distillation: out of memory");
    d->r = r;
    d->onnx = fkd_model_format_of(r->teacher.model) == FKD_MODEL_ONNX;
    fkd_status s = d->onnx ? FKD_OK : fkd_safetensors_read(&d->teacher_file, r->teacher.model);
    if (s != FKD_OK) {
        fkd_distill_run_free(d);
        return FKD_WRAP(s, "teacher: ");
    }
    memset(hook, 0, sizeof *hook);
    hook->ctx = d;
    hook->init = hook_init;
    hook->step = hook_step;
    *out = d;
    return FKD_OK;
}

fkd_status fkd_run_recipe(const fkd_recipe *r, bool resume, bool distill)
{
    fkd_train_hook hook;
    fkd_distill_run *run = NULL;
    fkd_trainer *t = NULL;
    fkd_status s = distill ? fkd_distill_run_create(&run, r, &hook) : FKD_OK;
    if (s == FKD_OK) s = fkd_trainer_create(&t, r, resume, distill ? &hook : NULL);
    if (s == FKD_OK) s = fkd_trainer_run(t);
    fkd_trainer_free(t);
    fkd_distill_run_free(run);
    return s;
}
