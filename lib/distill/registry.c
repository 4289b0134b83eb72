/* The distiller registry (a table generated from one list) and the instance wrapper that
 * checks what the trainer passes against what a method declared it needs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "distill/distiller.h"

/* One line per method: X(name) refers to `const fkd_distill_method fkd__distill_<name>`,
 * defined in lib/distill/<name>.c. The order is the order of --list and of messages. */
#define FKD__DISTILL_METHODS(X) \
    X(kd)                       \
    X(darkrank)                 \
    X(sp)                       \
    X(cckd)                     \
    X(rkd)                      \
    X(l2)                       \
    X(cosine)                   \
    X(shrinkteanet)             \
    X(triplet)                  \
    X(margin)                   \
    X(ekd)                      \
    X(fitnet)

#define FKD__DISTILL_DECLARE(name) extern const fkd_distill_method fkd__distill_##name;
FKD__DISTILL_METHODS(FKD__DISTILL_DECLARE)
#undef FKD__DISTILL_DECLARE

static const fkd_distill_method *const methods[] = {
#define FKD__DISTILL_ENTRY(name) &fkd__distill_##name,
    FKD__DISTILL_METHODS(FKD__DISTILL_ENTRY)
#undef FKD__DISTILL_ENTRY
};

#define N_METHODS ((int)(sizeof methods / sizeof methods[0]))

int fkd_distill_method_count(void) { return N_METHODS; }

const fkd_distill_method *fkd_distill_method_at(int i)
{
    return i >= 0 && i < N_METHODS ? methods[i] : NULL;
}

fkd_status fkd_distill_method_find(const char *name, const fkd_distill_method **out)
{
    *out = NULL;
    for (int i = 0; i < N_METHODS; i++) {
        if (name && strcmp(methods[i]->name, name) == 0) {
            *out = methods[i];
            return FKD_OK;
        }
    }
    char known[512];
    size_t len = 0;
    known[0] = '\0';
    for (int i = 0; i < N_METHODS && len < sizeof known; i++)
        len += (size_t)snprintf(known + len, sizeof known - len, "%s%s", i ? ", " : "",
                                methods[i]->name);
    return FKD_FAIL(FKD_ERR_NOTFOUND, "unknown distillation method \"%s\" (known: %s)",
                    name ? name : "(none)", known);
}

fkd_status fkd_distiller_create(fkd_distiller **out, const char *method,
                                fkd_distill_options *opts, const fkd_distill_context *ctx)
{
    *out = NULL;
    const char *scope = opts && opts->scope ? opts->scope : "distill";
    const fkd_distill_method *m;
    fkd_status st = fkd_distill_method_find(method, &m);
    if (st != FKD_OK) return FKD_WRAP(st, "%s: ", scope);
    if (ctx->max_batch < 1 || ctx->d_s < 1 || ctx->d_t < 1 || ctx->classes < 0)
        return FKD_FAIL(FKD_ERR_ARG,
                        "%s: method %s: bad context (max_batch %lld, d_s %lld, d_t %lld, "
                        "classes %lld)",
                        scope, m->name, (long long)ctx->max_batch, (long long)ctx->d_s,
                        (long long)ctx->d_t, (long long)ctx->classes);
    fkd_distill_options none;
    if (!opts) {
        fkd_distill_options_init(&none, scope, NULL, 0);
        opts = &none;
    }
    opts->method = m->name;

    fkd_distiller *d = calloc(1, sizeof *d);
    if (!d) return FKD_FAIL(FKD_ERR_NOMEM, "%s: method %s: out of memory", scope, m->name);
    d->method = m;
    d->ctx = *ctx;
    d->needs.flags = m->needs;
    st = m->create(&d->state, &d->needs, opts, ctx);
    if (st == FKD_OK) st = fkd_distill_options_done(opts);
    if (st != FKD_OK) {
        fkd_distiller_free(d);
        return st;
    }
    *out = d;
    return FKD_OK;
}

/* FKD_ERR_ARG naming the first missing input, or FKD_OK. */
static fkd_status check_inputs(const fkd_distiller *d, const fkd_distill_inputs *in,
                               const fkd_distill_outputs *out)
{
    static const struct {
        unsigned flag;
        size_t offset;
        const char *what;
    } inputs[] = {
        {FKD_DISTILL_NEED_STUDENT_EMB, offsetof(fkd_distill_inputs, student_emb), "student_emb"},
        {FKD_DISTILL_NEED_TEACHER_EMB, offsetof(fkd_distill_inputs, teacher_emb), "teacher_emb"},
        {FKD_DISTILL_NEED_STUDENT_CENTRES, offsetof(fkd_distill_inputs, student_centres),
         "student_centres"},
        {FKD_DISTILL_NEED_TEACHER_CENTRES, offsetof(fkd_distill_inputs, teacher_centres),
         "teacher_centres"},
        {FKD_DISTILL_NEED_STUDENT_LOGITS, offsetof(fkd_distill_inputs, student_logits),
         "student_logits"},
        {FKD_DISTILL_NEED_LABELS, offsetof(fkd_distill_inputs, labels), "labels"},
        {FKD_DISTILL_NEED_STUDENT_TAP, offsetof(fkd_distill_inputs, student_tap), "student_tap"},
        {FKD_DISTILL_NEED_TEACHER_TAP, offsetof(fkd_distill_inputs, teacher_tap), "teacher_tap"},
    };
    const char *name = d->method->name;
    if (in->batch < 1 || in->batch > d->ctx.max_batch)
        return FKD_FAIL(FKD_ERR_ARG, "distiller %s: batch %lld outside [1, %lld]", name,
                        (long long)in->batch, (long long)d->ctx.max_batch);
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        const void *p = *(const void *const *)((const char *)in + inputs[i].offset);
        if ((d->needs.flags & inputs[i].flag) && !p)
            return FKD_FAIL(FKD_ERR_ARG, "distiller %s: needs %s, got NULL", name,
                            inputs[i].what);
    }
    if (d->needs.flags & FKD_DISTILL_NEED_LABELS) {
        for (int64_t i = 0; i < in->batch; i++)
            if (in->labels[i] < 0 || in->labels[i] >= d->ctx.classes)
                return FKD_FAIL(FKD_ERR_ARG, "distiller %s: label %lld of sample %lld "
                                "outside [0, %lld)", name, (long long)in->labels[i],
                                (long long)i, (long long)d->ctx.classes);
    }
    if (out && (d->needs.flags & FKD_DISTILL_GIVES_MARGINS) && !out->margins)
        return FKD_FAIL(FKD_ERR_ARG, "distiller %s: gives margins, got no margins buffer",
                        name);
    return FKD_OK;
}

fkd_status fkd_distiller_forward(fkd_distiller *d, const fkd_distill_inputs *in,
                                 const fkd_distill_outputs *out, double *loss)
{
    *loss = 0.0;
    FKD_TRY(check_inputs(d, in, out));
    FKD_TRY(d->method->forward(d->state, in, out, loss));
    if (!isfinite(*loss))
        return FKD_FAIL(FKD_ERR_NUMERIC, "distiller %s: loss is %g at step %lld",
                        d->method->name, *loss, (long long)in->step);
    return FKD_OK;
}

int fkd_distiller_state_tensors(fkd_distiller *d, fkd_distill_tensor *tensors, int max)
{
    if (!d || !d->method->state_tensors) return 0;
    return d->method->state_tensors(d->state, tensors, max);
}

double fkd_distiller_default_weight(const fkd_distiller *d)
{
    return d->method->default_weight > 0 ? d->method->default_weight : 1.0;
}

int fkd_distiller_params(fkd_distiller *d, fkd_param **params)
{
    *params = NULL;
    if (!d || !d->method->params) return 0;
    return d->method->params(d->state, params);
}

void fkd_distiller_free(fkd_distiller *d)
{
    if (!d) return;
    if (d->method && d->method->free) d->method->free(d->state);
    free(d);
}
