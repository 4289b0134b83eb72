#include "train/trainer.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "core/fileio.h"
#include "core/log.h"
#include "data/dataset.h"
#include "dist/dist.h"
#include "dist/grad_sync.h"
#include "eval/bench.h"
#include "eval/report.h"
#include "facekd.h"
#include "heads/margin.h"
#include "train/label_loss.h"
#include "io/checkpoint.h"
#include "io/model.h"
#include "nn/arch.h"
#include "nn/optim.h"
#include "nn/schedule.h"
#include "nn/shim.h"
#include "train/runlog.h"

volatile sig_atomic_t fkd_train_stop_requested = 0;

#define PATH_CAP 4096
/* Room for the run folder's own file names after it. */
#define RUN_DIR_CAP (PATH_CAP - 64)

struct fkd_trainer {
    const fkd_recipe *r;
    fkd_train_hook hook;
    char run_dir[RUN_DIR_CAP];
    char log_path[PATH_CAP], eval_path[PATH_CAP], ckpt_path[PATH_CAP];

    fkd_dataset ds;
    fkd_loader *loader;
    int loader_workers; /* data.workers, or 1 when deterministic */
    int batch;
    int64_t steps_per_epoch, total_steps, step;
    int64_t ckpt_step; /* step of the checkpoint on disk; -1 before the first */

    fkd_graph *g;
    fkd_value emb;
    int dim;
    const char *arch;
    fkd_label_loss *loss;    /* the head: loss on labels */
    const char *head_name;   /* its first term's name */
    const char *label_terms[FKD_LABEL_LOSS_MAX_TERMS];
    int n_label_terms;
    fkd_optim *optim;
    fkd_schedule schedule;

    fkd_bench *benches;
    int n_benches;

    float *embedding;   /* (B, d) this step's embedding */
    float *d_embedding; /* (B, d) dL/d embedding */
    float *d_hook;      /* (B, d) the hook's part of dL/d embedding */
    float *margins;     /* (B) per-sample margins from the hook */
    fkd_param *extra_params; /* the hook's trainable parameters (owned by the hook) */
    int n_extra;
    fkd_param *saved;        /* head and hook parameters, as checkpoints store them */
    int n_saved;

    /* Data parallel (lib/dist): every rank runs the same steps on its slice of each global
     * batch; rank 0 alone writes files and draws progress. */
    int rank, world;
    bool root;
    fkd_grad_sync *grad_sync;
    int64_t fail_at_step; /* FACEKD_TEST_FAIL_AT_STEP: the last rank fails there (tests) */
};

const char *fkd_trainer_run_dir(const fkd_trainer *t) { return t->run_dir; }

fkd_graph *fkd_trainer_graph(fkd_trainer *t, fkd_value *embedding)
{
    if (embedding) *embedding = t->emb;
    return t->g;
}

fkd_margin_head *fkd_trainer_head(fkd_trainer *t) { return fkd_label_loss_margin_head(t->loss); }
int fkd_trainer_classes(const fkd_trainer *t) { return t->ds.ops->identities(&t->ds); }
const fkd_dataset *fkd_trainer_dataset(const fkd_trainer *t) { return &t->ds; }
int fkd_trainer_batch(const fkd_trainer *t) { return t->batch; }
int64_t fkd_trainer_step(const fkd_trainer *t) { return t->step; }

static fkd_status open_dataset(fkd_trainer *t)
{
    const fkd_recipe_data *d = &t->r->data;
    switch (d->source) {
    case FKD_SOURCE_SYNTH:
        return fkd_dataset_open_synth(&t->ds, (uint64_t)d->synth.seed, (int32_t)d->synth.identities,
                                      d->synth.images_per_identity);
    case FKD_SOURCE_FOLDER:
    case FKD_SOURCE_RECORDIO:
        return fkd_dataset_open(&t->ds, d->path);
    }
    return FKD_FAIL(FKD_ERR_ARG, "%s: data.source: unknown source", t->r->path);
}

static fkd_status open_loader(fkd_trainer *t)
{
    const fkd_recipe *r = t->r;
    fkd_loader_options o;
    fkd_loader_options_default(&o);
    o.seed = (uint64_t)r->seed;
    o.flip = r->data.flip;
    o.resize = r->data.resize;
    o.workers = t->loader_workers = r->deterministic ? 1 : (int)r->data.workers;
    if (o.depth < 2 * o.workers) o.depth = 2 * o.workers;
    o.start_step = t->step;
    o.rank = t->rank;
    o.world = t->world;
    if (r->data.sampler.kind == FKD_RECIPE_SAMPLER_PK) {
        o.sampler = FKD_SAMPLER_PK;
        o.p_identities = (int)r->data.sampler.p;
        o.k_images = (int)r->data.sampler.k;
    } else {
        o.sampler = FKD_SAMPLER_SHUFFLE;
        o.batch_size = (int)r->batch_size;
    }
    FKD_TRY(fkd_loader_create(&t->loader, &t->ds, &o));
    t->batch = fkd_loader_batch_size(t->loader);
    t->steps_per_epoch = fkd_loader_steps_per_epoch(t->loader);
    if (t->steps_per_epoch <= 0)
        return FKD_FAIL(FKD_ERR_ARG, "%s: the training set (%lld images) is smaller than one batch (%d)", r->path,
                        (long long)t->ds.ops->count(&t->ds), t->batch);
    t->total_steps = r->steps > 0 ? r->steps : r->epochs * t->steps_per_epoch;
    return FKD_OK;
}

fkd_precision fkd_train_precision(const char *recipe_path, const char *key, bool bf16)
{
    const char *isa = fkd_shim_isa();
    if (bf16 && !fkd_shim_bf16_ok()) {
        FKD_WARN("%s: %s: bf16 needs AVX-512 and oneDNN runs %s on this CPU: running fp32 instead", recipe_path,
                 key, isa);
        return FKD_PREC_F32;
    }
    /* avx512_core without _bf16 converts and multiplies in fp32 (oneDNN's emulation):
     * correct, slower than fp32. */
    const char *how = !bf16                                   ? ""
                      : strcmp(isa, "avx512_core_amx") == 0  ? ", AMX tiles"
                      : strcmp(isa, "avx512_core_bf16") == 0 ? ", AVX-512 bf16 dot products (no AMX)"
                                                             : ", emulated bf16 (no bf16 instructions: slower than fp32)";
    FKD_INFO("%s: %s on oneDNN's %s kernels%s", key, bf16 ? "bf16" : "fp32", isa, how);
    return bf16 ? FKD_PREC_BF16 : FKD_PREC_F32;
}

fkd_graph_config fkd_trainer_graph_config(const fkd_recipe *r, int batch)
{
    /* bf16 keeps fp32 master weights, gradients, optimizer and loss (lib/nn). */
    fkd_precision precision =
        fkd_train_precision(r->path, "model.precision", r->model.precision == FKD_RECIPE_PRECISION_BF16);
    return (fkd_graph_config){.batch = batch, .mode = FKD_GRAPH_TRAIN, .precision = precision,
                              .seed = (uint64_t)r->seed, .sync_bn = r->model.sync_bn,
                              .direct_conv = r->model.direct_conv, .keep_activations = r->model.keep_activations};
}

static fkd_status build_model(fkd_trainer *t)
{
    const fkd_recipe *r = t->r;
    fkd_graph_config gc = fkd_trainer_graph_config(r, t->batch);
    fkd_status s = fkd_graph_create(&t->g, &gc);
    if (s != FKD_OK) return FKD_WRAP(s, "%s: model.precision: ", r->path);
    fkd_value x = fkd_graph_input(t->g, "input", 3, 112, 112);
    if (x < 0) return (fkd_status)x;
    t->arch = fkd_recipe_enum_name("model.arch", r->model.arch);
    fkd_arch_opts opts = {.num_features = (int)r->model.embedding_size, .width = (int)r->model.width};
    FKD_TRY(fkd_arch_build(t->g, t->arch, &opts, x, &t->emb));
    FKD_TRY(fkd_graph_finalize(t->g));
    if (r->model.weights) FKD_TRY(fkd_model_load(t->g, r->model.weights));
    int ndims, dims[4];
    FKD_TRY(fkd_graph_shape(t->g, t->emb, &ndims, dims));
    t->dim = dims[1];
    t->embedding = malloc(sizeof(float) * (size_t)t->batch * t->dim);
    t->d_embedding = malloc(sizeof(float) * (size_t)t->batch * t->dim);
    t->d_hook = malloc(sizeof(float) * (size_t)t->batch * t->dim);
    t->margins = malloc(sizeof(float) * (size_t)t->batch);
    if (!t->embedding || !t->d_embedding || !t->d_hook || !t->margins)
        return FKD_FAIL(FKD_ERR_NOMEM, "trainer: out of memory");
    return FKD_OK;
}

/* model.weights that carry class centres of the same shape (the model.safetensors of an
 * earlier run on the same identities) start the head too, so fine-tuning keeps the
 * centres its features were trained against; any other file leaves the random start. */
static fkd_status load_head_start(fkd_trainer *t, const char *path)
{
    fkd_safetensors st;
    FKD_TRY(fkd_safetensors_read(&st, path));
    fkd_param *params;
    int count, loaded = 0;
    fkd_status s = fkd_label_loss_params(t->loss, &params, &count);
    for (int i = 0; s == FKD_OK && i < count; i++) {
        const fkd_st_tensor *w = fkd_safetensors_find(&st, params[i].name);
        if (!w || w->numel != params[i].numel) continue;
        fkd_st_tensor_to_f32(w, params[i].data);
        loaded++;
    }
    if (s == FKD_OK && loaded) FKD_INFO("head: %d of %d tensors from %s", loaded, count, path);
    fkd_safetensors_free(&st);
    return s;
}

static fkd_status build_head(fkd_trainer *t)
{
    int classes = t->ds.ops->identities(&t->ds);
    if (classes < 2)
        return FKD_FAIL(FKD_ERR_ARG, "%s: %d identit%s; the %s head needs at least 2", t->ds.source, classes,
                        classes == 1 ? "y" : "ies", fkd_recipe_enum_name("head.loss", t->r->head.loss));
    FKD_TRY(fkd_label_loss_create(&t->loss, &t->r->head, t->r->path, classes, t->dim, t->batch, (uint64_t)t->r->seed));
    t->n_label_terms = fkd_label_loss_terms(t->loss, t->label_terms);
    t->head_name = fkd_recipe_enum_name("head.loss", t->r->head.loss);
    return t->r->model.weights ? load_head_start(t, t->r->model.weights) : FKD_OK;
}

/* Every trained parameter list: the model's, the head's and the hook's. Returns the
 * number of lists, or a negative status. */
static int collect_params(fkd_trainer *t, fkd_param **lists, int *counts)
{
    fkd_status s = fkd_graph_params(t->g, &lists[0], &counts[0]);
    if (s == FKD_OK) s = fkd_label_loss_params(t->loss, &lists[1], &counts[1]);
    if (s != FKD_OK) return (int)s;
    lists[2] = t->extra_params;
    counts[2] = t->n_extra;
    return t->n_extra > 0 ? 3 : 2;
}

/* What checkpoints store besides the model: the head's parameters, then the hook's
 * (distillation regressors and adapters, under their own names). */
static fkd_status collect_saved(fkd_trainer *t)
{
    fkd_param *head;
    int n_head;
    FKD_TRY(fkd_label_loss_params(t->loss, &head, &n_head));
    t->saved = calloc((size_t)(n_head + t->n_extra) + 1, sizeof *t->saved);
    if (!t->saved) return FKD_FAIL(FKD_ERR_NOMEM, "trainer: out of memory");
    memcpy(t->saved, head, sizeof *head * (size_t)n_head);
    if (t->n_extra) memcpy(t->saved + n_head, t->extra_params, sizeof *head * (size_t)t->n_extra);
    t->n_saved = n_head + t->n_extra;
    return FKD_OK;
}

static fkd_status build_optimizer(fkd_trainer *t)
{
    FKD_TRY(collect_saved(t));
    const fkd_recipe *r = t->r;
    fkd_optim_config oc = r->optim.kind == FKD_RECIPE_OPTIM_ADAMW ? fkd_optim_adamw_defaults() : fkd_optim_sgd_defaults();
    oc.weight_decay = (float)r->optim.weight_decay;
    if (r->optim.kind == FKD_RECIPE_OPTIM_ADAMW) {
        oc.beta1 = (float)r->optim.betas[0];
        oc.beta2 = (float)r->optim.betas[1];
        oc.eps = (float)r->optim.eps;
    } else {
        oc.momentum = (float)r->optim.momentum;
        oc.nesterov = r->optim.nesterov;
    }
    fkd_param *lists[3];
    int counts[3];
    int n_lists = collect_params(t, lists, counts);
    if (n_lists < 0) return (fkd_status)n_lists;
    FKD_TRY(fkd_optim_create(&t->optim, &oc, lists, counts, n_lists));

    const fkd_recipe_schedule *rs = &r->schedule;
    fkd_schedule *s = &t->schedule;
    fkd_schedule_kind kind;
    FKD_TRY(fkd_schedule_kind_parse(fkd_recipe_enum_name("schedule.type", rs->kind), &kind));
    *s = fkd_schedule_defaults(kind);
    s->base_lr = r->optim.lr;
    s->total_steps = t->total_steps;
    s->power = rs->power;
    s->gamma = rs->gamma;
    s->warmup_steps = rs->warmup_steps + rs->warmup_epochs * t->steps_per_epoch;
    if (rs->n_milestones > FKD_SCHEDULE_MAX_MILESTONES)
        return FKD_FAIL(FKD_ERR_ARG, "%s: schedule.milestones: at most %d", r->path, FKD_SCHEDULE_MAX_MILESTONES);
    s->n_milestones = (int)rs->n_milestones;
    for (size_t i = 0; i < rs->n_milestones; i++)
        s->milestones[i] = r->epochs > 0 ? rs->milestones[i] * t->steps_per_epoch : rs->milestones[i];
    return fkd_schedule_check(s);
}

static fkd_status open_benchmarks(fkd_trainer *t)
{
    const fkd_recipe_data *d = &t->r->data;
    t->benches = calloc(d->n_eval + 1, sizeof *t->benches);
    if (!t->benches) return FKD_FAIL(FKD_ERR_NOMEM, "trainer: out of memory");
    for (size_t i = 0; i < d->n_eval; i++) {
        const fkd_recipe_bench *b = &d->eval[i];
        fkd_status s;
        if (b->pairs)
            s = fkd_bench_open_pairs(&t->benches[i], b->name, b->pairs, b->root);
        else if (b->synth != FKD_RECIPE_BENCH_NONE)
            s = fkd_bench_open_synth(&t->benches[i], fkd_recipe_enum_name("data.eval[].synth", b->synth),
                                     (uint64_t)d->synth.seed, NULL);
        else
            s = fkd_bench_open_bin(&t->benches[i], b->name, b->bin);
        if (s != FKD_OK) return FKD_WRAP(s, "%s: data.eval[%zu]: ", t->r->path, i);
        t->n_benches++;
    }
    return FKD_OK;
}

static fkd_checkpoint checkpoint_parts(fkd_trainer *t, bool with_optim)
{
    fkd_checkpoint ck = {.model = t->g, .optim = with_optim ? t->optim : NULL, .step = t->step};
    ck.head_params = t->saved;
    ck.head_count = t->n_saved;
    snprintf(ck.meta.architecture, sizeof ck.meta.architecture, "%s", t->arch);
    ck.meta.embedding_size = t->dim;
    ck.meta.width = (int)t->r->model.width; /* so eval, embed and info rebuild a narrow model */
    snprintf(ck.meta.producer, sizeof ck.meta.producer, "facekd %s train %s", FKD_VERSION, t->r->name);
    ck.epoch = t->steps_per_epoch ? t->step / t->steps_per_epoch : 0;
    ck.extra[ck.extra_count++] = (fkd_st_meta){"head", (char *)t->head_name};
    return ck;
}

/* Rank 0 writes; every rank knows the step of the checkpoint on disk. */
static fkd_status save_checkpoint(fkd_trainer *t)
{
    if (t->root) {
        fkd_checkpoint ck = checkpoint_parts(t, true);
        FKD_TRY(fkd_checkpoint_save(t->ckpt_path, &ck));
    }
    t->ckpt_step = t->step;
    return FKD_OK;
}

/* Before the first step, where a full disk can still be caught: a fresh run writes its
 * starting checkpoint (step 0), which proves the folder takes one; then there must be room
 * for about two more (the next checkpoint is written beside the current one before it
 * replaces it; the final model is smaller than a checkpoint). */
static fkd_status check_room(fkd_trainer *t, bool resume)
{
    if (!resume) FKD_TRY(save_checkpoint(t));
    if (!t->root) return FKD_OK;
    struct stat st;
    struct statvfs vfs;
    if (stat(t->ckpt_path, &st) != 0 || statvfs(t->run_dir, &vfs) != 0) return FKD_OK;
    double avail = (double)vfs.f_bavail * (double)vfs.f_frsize, need = 2.0 * (double)st.st_size;
    if (avail < need)
        return FKD_FAIL(FKD_ERR_IO, "%s: %.1f MB free, but the run needs about %.1f MB more (the next checkpoint "
                        "beside this one, then the final model)", t->run_dir, avail / 1e6, need / 1e6);
    return FKD_OK;
}

static fkd_status start_logs(fkd_trainer *t, bool resume)
{
    char header[1024];
    int n = snprintf(header, sizeof header, "step,epoch,lr,loss");
    for (int i = 0; i < t->n_label_terms; i++) n += snprintf(header + n, sizeof header - (size_t)n, ",%s", t->label_terms[i]);
    for (int i = 0; i < t->hook.n_terms; i++) n += snprintf(header + n, sizeof header - (size_t)n, ",%s", t->hook.names[i]);
    snprintf(header + n, sizeof header - (size_t)n, ",images_per_s,loader_wait_ms");
    int64_t keep = resume ? t->step : -1;
    FKD_TRY(fkd_runlog_start(t->log_path, header, keep));
    /* eval.csv is wide and numeric: a column group per benchmark, the accuracy column
     * named after the benchmark (accuracy.png and `facekd plot` read it). */
    n = snprintf(header, sizeof header, "step");
    for (int i = 0; i < t->n_benches; i++)
        n += snprintf(header + n, sizeof header - (size_t)n, ",%s,%s_std,%s_tar_far_1e-3,%s_eer,%s_auc,%s_xnorm",
                      t->benches[i].name, t->benches[i].name, t->benches[i].name, t->benches[i].name,
                      t->benches[i].name, t->benches[i].name);
    return fkd_runlog_start(t->eval_path, header, keep);
}

/* Gradient averaging over the ranks, and the same starting weights everywhere: rank 0's
 * parameters and buffers are broadcast (a resumed run then loads the same checkpoint on
 * every rank). Nothing to do in one process. */
static fkd_status start_data_parallel(fkd_trainer *t)
{
    if (t->world == 1) return FKD_OK;
    if (t->r->head.center.lambda > 0)
        return FKD_FAIL(FKD_ERR_UNSUPPORTED, "%s: head.center: the center loss moves its centres from each rank's "
                        "batch, so they would differ between ranks; not supported under mpirun", t->r->path);
    fkd_param *lists[3];
    int counts[3];
    int n_lists = collect_params(t, lists, counts);
    if (n_lists < 0) return (fkd_status)n_lists;
    for (int l = 0; l < n_lists; l++)
        for (int i = 0; i < counts[l]; i++) FKD_TRY(fkd_dist_broadcast_f32(lists[l][i].data, lists[l][i].storage));
    return fkd_grad_sync_create(&t->grad_sync, lists, counts, n_lists, FKD_GRAD_SYNC_BUCKET_BYTES);
}

fkd_status fkd_trainer_create(fkd_trainer **out, const fkd_recipe *r, bool resume, const fkd_train_hook *hook)
{
    *out = NULL;
    fkd_trainer *t = calloc(1, sizeof *t);
    if (!t) return FKD_FAIL(FKD_ERR_NOMEM, "trainer: out of memory");
    t->r = r;
    t->ckpt_step = -1;
    if (hook) t->hook = *hook;
    t->rank = fkd_dist_rank();
    t->world = fkd_dist_world();
    t->root = t->rank == 0;
    const char *fail_at = getenv("FACEKD_TEST_FAIL_AT_STEP");
    t->fail_at_step = fail_at ? strtoll(fail_at, NULL, 10) : 0;
    /* deterministic: a fixed thread count (1 unless `threads` says), so oneDNN's reductions
     * and the loader repeat bit for bit whatever the machine's core count. */
    if (r->threads > 0 || r->deterministic) omp_set_num_threads(r->threads > 0 ? (int)r->threads : 1);
    if (strlen(r->output) >= RUN_DIR_CAP) {
        free(t);
        return FKD_FAIL(FKD_ERR_ARG, "%s: output: path too long", r->path);
    }
    snprintf(t->run_dir, sizeof t->run_dir, "%s", r->output);
    snprintf(t->log_path, sizeof t->log_path, "%s/log.csv", r->output);
    snprintf(t->eval_path, sizeof t->eval_path, "%s/eval.csv", r->output);
    snprintf(t->ckpt_path, sizeof t->ckpt_path, "%s/checkpoint.safetensors", r->output);

    char recipe_out[PATH_CAP];
    snprintf(recipe_out, sizeof recipe_out, "%s/recipe.yaml", r->output);
    fkd_status s = FKD_OK;
    int stale = 0;
    if (t->root) s = fkd_mkdir_p(r->output);
    if (s == FKD_OK && t->root) s = fkd_atomic_cleanup_dir(r->output, &stale);
    if (stale) FKD_INFO("%s: removed %d temporary file(s) left by an interrupted run", r->output, stale);
    /* Writing the resolved recipe first also proves the folder is writable. */
    if (s == FKD_OK && t->root) s = fkd_recipe_save(r, recipe_out);
    if (s == FKD_OK) s = open_dataset(t);
    if (s == FKD_OK) s = open_benchmarks(t);
    fkd_checkpoint ck = {0};
    if (s == FKD_OK && resume) {
        /* The step decides where the loader starts, so read it before building. */
        fkd_safetensors st;
        s = fkd_safetensors_read(&st, t->ckpt_path);
        const char *step = s == FKD_OK ? fkd_safetensors_meta(&st, "step") : NULL;
        if (s == FKD_OK && !step) s = FKD_FAIL(FKD_ERR_FORMAT, "%s: no step in its metadata", t->ckpt_path);
        if (s == FKD_OK) t->step = strtoll(step, NULL, 10);
        fkd_safetensors_free(&st);
        if (s != FKD_OK) FKD_WRAP(s, "--resume: ");
    }
    if (s == FKD_OK) s = open_loader(t);
    if (s == FKD_OK) s = build_model(t);
    if (s == FKD_OK) s = build_head(t);
    if (s == FKD_OK && t->hook.init) s = t->hook.init(&t->hook, t, &t->extra_params, &t->n_extra);
    if (s == FKD_OK) s = build_optimizer(t);
    if (s == FKD_OK) s = start_data_parallel(t);
    if (s == FKD_OK && resume) {
        ck = checkpoint_parts(t, true);
        s = fkd_checkpoint_load(t->ckpt_path, &ck);
        if (s == FKD_OK) FKD_INFO("resuming %s at step %lld", r->name, (long long)ck.step);
        t->ckpt_step = t->step;
    }
    if (s == FKD_OK && t->root) s = start_logs(t, resume);
    if (s == FKD_OK) s = check_room(t, resume);
    if (s != FKD_OK) {
        fkd_trainer_free(t);
        return s;
    }
    FKD_INFO("%s: %s (%d-d) on %s, %s head, %lld identities, batch %d, %lld steps (%lld per epoch)", r->name,
             t->arch, t->dim, t->ds.source, t->head_name, (long long)t->ds.ops->identities(&t->ds), t->batch,
             (long long)t->total_steps, (long long)t->steps_per_epoch);
    if (t->world > 1)
        FKD_INFO("data parallel: %d ranks x batch %d = global batch %d%s", t->world, t->batch, t->world * t->batch,
                 r->model.sync_bn ? ", batch norm synchronised" : ", batch norm per rank");
    *out = t;
    return FKD_OK;
}

void fkd_trainer_free(fkd_trainer *t)
{
    if (!t) return;
    fkd_loader_free(t->loader);
    fkd_dataset_free(&t->ds);
    fkd_optim_free(t->optim);
    fkd_grad_sync_free(t->grad_sync);
    fkd_label_loss_free(t->loss);
    fkd_graph_free(t->g);
    for (int i = 0; i < t->n_benches; i++) fkd_bench_free(&t->benches[i]);
    free(t->benches);
    free(t->embedding);
    free(t->d_embedding);
    free(t->d_hook);
    free(t->margins);
    free(t->saved);
    free(t);
}

/* One optimisation step on `batch`: forward, head (+ hook terms), backward, update.
 * terms[0] is the head loss, terms[1..] the hook's weighted terms. */
static fkd_status train_step(fkd_trainer *t, const fkd_batch *batch, double lr, double *terms, double *total)
{
    FKD_TRY(fkd_graph_set_training(t->g, true));
    FKD_TRY(fkd_graph_set_input(t->g, "input", batch->images));
    FKD_TRY(fkd_graph_forward(t->g));
    FKD_TRY(fkd_graph_read(t->g, t->emb, t->embedding));
    FKD_TRY(fkd_graph_zero_grad(t->g));
    fkd_label_loss_zero_grad(t->loss);
    for (int i = 0; i < t->n_extra; i++)
        if (t->extra_params[i].grad) memset(t->extra_params[i].grad, 0, t->extra_params[i].storage * sizeof(float));
    size_t n_emb = (size_t)batch->n * t->dim;
    bool use_margins = false;
    if (t->hook.step) {
        memset(t->d_hook, 0, n_emb * sizeof(float));
        FKD_TRY(t->hook.step(t->hook.ctx, t, batch, t->embedding, t->d_hook, t->margins, &use_margins,
                             terms + t->n_label_terms));
    }
    if (use_margins && !fkd_label_loss_margin_head(t->loss))
        return FKD_FAIL(FKD_ERR_ARG, "%s: per-sample margins need a margin head, not head.loss %s", t->r->path,
                        t->head_name);
    FKD_TRY(fkd_label_loss_forward(t->loss, t->embedding, batch->labels, use_margins ? t->margins : NULL, batch->n,
                                   terms, t->d_embedding));
    if (t->hook.step)
        for (size_t k = 0; k < n_emb; k++) t->d_embedding[k] += t->d_hook[k];
    /* The mean over ranks (the loss of the global batch), before the finiteness check so
     * that every rank takes the same way. */
    int n_terms = t->n_label_terms + t->hook.n_terms;
    FKD_TRY(fkd_dist_allreduce_f64(terms, (size_t)n_terms));
    *total = 0;
    for (int i = 0; i < n_terms; i++) {
        terms[i] /= t->world;
        *total += terms[i];
    }
    /* Steps are numbered from 1 in messages, as in log.csv. */
    for (int i = 0; i < n_terms; i++)
        if (!isfinite(terms[i]))
            return FKD_FAIL(FKD_ERR_NUMERIC, "step %lld: loss term '%s' is %g", (long long)t->step + 1,
                            i < t->n_label_terms ? t->label_terms[i] : t->hook.names[i - t->n_label_terms], terms[i]);
    FKD_TRY(fkd_graph_add_grad(t->g, t->emb, t->d_embedding));
    FKD_TRY(fkd_graph_backward(t->g));
    if (t->grad_sync) FKD_TRY(fkd_grad_sync_run(t->grad_sync));
    fkd_param *lists[3];
    int counts[3];
    int n_lists = collect_params(t, lists, counts);
    if (n_lists < 0) return (fkd_status)n_lists;
    /* After averaging: a non-finite gradient on any rank is one on every rank. */
    fkd_status s = fkd_params_check_finite(lists, counts, n_lists);
    if (s != FKD_OK) return FKD_WRAP(s, "step %lld: ", (long long)t->step + 1);
    FKD_TRY(fkd_optim_step(t->optim, (float)lr));
    return fkd_label_loss_after_step(t->loss, t->embedding, batch->labels, batch->n);
}

/* Evaluates every benchmark (flip test), appends a row to eval.csv; the final call also
 * writes results.md/csv and roc.png. */
static fkd_status evaluate(fkd_trainer *t, bool final)
{
    if (t->n_benches == 0) return FKD_OK;
    fkd_progress progress;
    int64_t images = 0;
    for (int i = 0; i < t->n_benches; i++) images += 4 * t->benches[i].n_pairs;
    fkd_progress_start(&progress, "evaluation", images, 1);
    fkd_embed_config ec = {.graph = t->g, .embedding = t->emb, .input = "input", .progress = &progress};
    fkd_report report = {0};
    fkd_status s = final ? fkd_report_init(&report, "model") : FKD_OK;
    float **emb = calloc((size_t)t->n_benches, sizeof *emb);
    char *row = malloc(64 + 96 * (size_t)t->n_benches);
    if (s == FKD_OK && (!emb || !row)) s = FKD_FAIL(FKD_ERR_NOMEM, "evaluation: out of memory");
    int len = row ? sprintf(row, "%lld", (long long)t->step) : 0;
    for (int i = 0; s == FKD_OK && i < t->n_benches; i++) {
        fkd_verify_result res;
        fkd_bench *b = &t->benches[i];
        s = fkd_bench_evaluate(b, &ec, true, &res, final ? &emb[i] : NULL, NULL);
        if (s != FKD_OK) break;
        len += sprintf(row + len, ",%.4f,%.4f,%.4f,%.4f,%.4f,%.3f", 100 * res.accuracy_mean, 100 * res.accuracy_std,
                       100 * res.tar[2], 100 * res.eer, 100 * res.auc, res.xnorm);
        FKD_INFO("step %lld  %-14s accuracy %.2f ± %.2f  TAR@FAR=1e-3 %.2f  EER %.2f", (long long)t->step, b->name,
                 100 * res.accuracy_mean, 100 * res.accuracy_std, 100 * res.tar[2], 100 * res.eer);
        if (final)
            s = fkd_report_add_verify(&report, t->r->name, b->name, &res,
                                      FKD_REPORT_ACCURACY | FKD_REPORT_TAR | FKD_REPORT_EER | FKD_REPORT_AUC |
                                          FKD_REPORT_XNORM);
    }
    if (s == FKD_OK) fkd_progress_finish(&progress, progress.done, NULL);
    if (s == FKD_OK) s = fkd_runlog_append(t->eval_path, "%s", row);
    char path[PATH_CAP];
    snprintf(path, sizeof path, "%s/results.md", t->run_dir);
    if (s == FKD_OK && final) s = fkd_report_write_markdown(&report, path);
    snprintf(path, sizeof path, "%s/results.csv", t->run_dir);
    if (s == FKD_OK && final) s = fkd_report_write_csv(&report, path);
    snprintf(path, sizeof path, "%s/roc.png", t->run_dir);
    if (s == FKD_OK && final) s = fkd_runlog_plot_bench_roc(path, t->r->name, t->benches, t->n_benches, emb, t->dim);
    if (final) fkd_report_free(&report);
    for (int i = 0; emb && i < t->n_benches; i++) free(emb[i]);
    free(emb);
    free(row);
    return s;
}

/* The error for a non-finite loss or gradient (the last error): adds what is left on disk. */
static fkd_status nonfinite_failure(const fkd_trainer *t, int skipped_in_row)
{
    char why[1024]; /* a copy: the new message is formatted into the buffer this came from */
    snprintf(why, sizeof why, "%s", fkd_last_error());
    char skipped[96] = "";
    if (skipped_in_row > 0)
        snprintf(skipped, sizeof skipped, " (%d batches in a row skipped by skip_nonfinite)", skipped_in_row);
    if (t->ckpt_step < 0)
        return FKD_FAIL(FKD_ERR_NUMERIC, "%s%s; no checkpoint was written yet", why, skipped);
    return FKD_FAIL(FKD_ERR_NUMERIC, "%s%s; the last good checkpoint is %s (step %lld)", why, skipped, t->ckpt_path,
                    (long long)t->ckpt_step);
}

static bool every(int64_t step, int64_t interval) { return interval > 0 && step % interval == 0; }

/* Whether a stop was requested on any rank: a signal may reach the ranks at different
 * steps, and all must stop at the same one. */
static fkd_status stop_requested(bool *stop)
{
    double flag = fkd_train_stop_requested ? 1 : 0;
    FKD_TRY(fkd_dist_allreduce_f64(&flag, 1));
    *stop = flag > 0;
    return FKD_OK;
}

/* log.csv's row after `step` (rank 0); images/s over the window count every rank's;
 * loader_wait_ms: the window's mean time per step spent waiting for the next batch. */
static fkd_status log_row(fkd_trainer *t, double lr, double total, const double *terms, int64_t window_steps,
                          double seconds, double wait_seconds)
{
    double ips = (double)(window_steps * t->batch * t->world) / (seconds > 0 ? seconds : 1e-9);
    char cols[512];
    int n = 0;
    for (int i = 0; i < t->n_label_terms + t->hook.n_terms; i++)
        n += snprintf(cols + n, sizeof cols - (size_t)n, ",%.6f", terms[i]);
    return fkd_runlog_append(t->log_path, "%lld,%lld,%.8g,%.6f%s,%.1f,%.2f", (long long)t->step,
                             (long long)(t->step / t->steps_per_epoch), lr, total, cols, ips,
                             1e3 * wait_seconds / (double)(window_steps > 0 ? window_steps : 1));
}

/* The end of the loop (rank 0): how long training waited for data. A loader that cannot
 * keep up is on the critical path: say so and what to change. */
static void report_loader_wait(const fkd_trainer *t, int64_t steps, double seconds, double wait_seconds)
{
    double share = seconds > 0 ? wait_seconds / seconds : 0;
    const char *advice = share > 0.1 ? " — the loader is on the critical path: raise data.workers, lower threads, or "
                                       "use a faster source (docs/TRAINING.md, Threads)"
                                     : "";
    FKD_INFO("%s: waited %.1f ms per step for data (%.1f%% of the training loop, %d loader threads)%s", t->r->name,
             1e3 * wait_seconds / (double)steps, 100 * share, t->loader_workers,
             advice);
}

/* Under mpirun: the share of the training loop spent in MPI (rank 0's view; waiting for
 * slower ranks included) and the gradient averaging's part of it. */
static void report_communication(const fkd_trainer *t, int64_t steps, double seconds, double mpi_seconds)
{
    long calls;
    double grads = fkd_grad_sync_seconds(t->grad_sync, &calls);
    FKD_INFO("data parallel: %.2f steps/s; MPI %.1f ms per step (%.1f%% of the step), of which gradient averaging "
             "%.1f ms (packing and scaling included)",
             (double)steps / seconds, 1e3 * mpi_seconds / (double)steps, 100 * mpi_seconds / seconds,
             calls ? 1e3 * grads / (double)calls : 0.0);
}

/* The end of a finished run (rank 0): final checkpoint, model, evaluation, plots. */
static fkd_status finish_run(fkd_trainer *t)
{
    FKD_TRY(save_checkpoint(t));
    if (!t->root) return FKD_OK;
    char path[PATH_CAP];
    snprintf(path, sizeof path, "%s/model.safetensors", t->run_dir);
    fkd_checkpoint final_model = checkpoint_parts(t, false);
    FKD_TRY(fkd_checkpoint_save(path, &final_model));
    FKD_TRY(evaluate(t, true));
    const char *names[64];
    int n_names = t->n_benches < 64 ? t->n_benches : 64;
    for (int i = 0; i < n_names; i++) names[i] = t->benches[i].name;
    FKD_TRY(fkd_runlog_plot_curves(t->run_dir, names, n_names));
    FKD_INFO("%s: done; model %s", t->r->name, path);
    return FKD_OK;
}

fkd_status fkd_trainer_run(fkd_trainer *t)
{
    const fkd_recipe *r = t->r;
    double terms[FKD_TRAIN_MAX_TERMS + FKD_LABEL_LOSS_MAX_TERMS];
    fkd_progress progress;
    if (t->root) fkd_progress_start(&progress, r->name, t->total_steps, (int64_t)t->batch * t->world);
    double window_start = fkd_now(), run_start = window_start, mpi_start = fkd_dist_seconds();
    double window_wait = 0, run_wait = 0; /* seconds spent in fkd_loader_next */
    int64_t window_steps = 0, first_step = t->step;
    fkd_status s = FKD_OK;
    int skipped_in_row = 0;
    while (s == FKD_OK && t->step < t->total_steps) {
        bool stop = false;
        s = stop_requested(&stop);
        if (s == FKD_OK && stop) {
            s = save_checkpoint(t);
            /* No rank leaves before rank 0 has written it (a failing rank ends the job). */
            if (s == FKD_OK) s = fkd_dist_barrier();
            if (s == FKD_OK)
                s = FKD_FAIL(FKD_ERR_INTERRUPTED, "stopped at step %lld; checkpoint %s written; continue with --resume",
                             (long long)t->step, t->ckpt_path);
            break;
        }
        if (s != FKD_OK) break;
        const fkd_batch *batch;
        double wait_start = fkd_now();
        s = fkd_loader_next(t->loader, &batch);
        double waited = fkd_now() - wait_start;
        window_wait += waited;
        run_wait += waited;
        double lr = fkd_schedule_lr(&t->schedule, t->step), total = 0;
        if (s == FKD_OK) s = train_step(t, batch, lr, terms, &total);
        if (s == FKD_ERR_NUMERIC && r->skip_nonfinite && ++skipped_in_row <= FKD_TRAIN_MAX_SKIPS_IN_ROW) {
            /* The weights and the optimizer state are untouched: only the update is lost.
             * (Batch-norm running statistics did see the batch's forward pass.) */
            FKD_WARN("%s; batch skipped (skip_nonfinite)", fkd_last_error());
            s = FKD_OK;
        } else if (s == FKD_ERR_NUMERIC) {
            s = nonfinite_failure(t, skipped_in_row);
            break;
        } else if (s == FKD_OK) {
            skipped_in_row = 0;
        }
        if (s == FKD_OK && t->step + 1 == t->fail_at_step && t->rank == t->world - 1)
            s = FKD_FAIL(FKD_ERR_IO, "step %lld: failure injected by FACEKD_TEST_FAIL_AT_STEP (tests)",
                         (long long)t->step + 1);
        if (s != FKD_OK) break;
        t->step++;
        window_steps++;
        if (!t->root) {
            if (every(t->step, r->checkpoint_every)) s = save_checkpoint(t);
            continue;
        }
        char extra[64];
        snprintf(extra, sizeof extra, "loss %.3f", total);
        fkd_progress_update(&progress, t->step, extra);
        if (every(t->step, r->log_every) || t->step == t->total_steps) {
            double now = fkd_now();
            s = log_row(t, lr, total, terms, window_steps, now - window_start, window_wait);
            window_start = now;
            window_steps = 0;
            window_wait = 0;
        }
        if (s == FKD_OK && every(t->step, r->eval_every) && t->step < t->total_steps) s = evaluate(t, false);
        if (s == FKD_OK && every(t->step, r->checkpoint_every)) s = save_checkpoint(t);
    }
    if (t->root) fkd_progress_finish(&progress, t->step, NULL);
    if (s == FKD_OK && t->root && t->step > first_step)
        report_loader_wait(t, t->step - first_step, fkd_now() - run_start, run_wait);
    if (s == FKD_OK && t->grad_sync && t->step > first_step) report_communication(t, t->step - first_step,
                                                                                 fkd_now() - run_start,
                                                                                 fkd_dist_seconds() - mpi_start);
    return s == FKD_OK ? finish_run(t) : s;
}
