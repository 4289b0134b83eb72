/* Prefetching loader: a planner (under the lock, in step order) decides each batch's images
 * and flips; worker threads fill whole batches into ring slots outside the lock; the
 * consumer takes slots in step order. Shapes: a slot's images are (B, 3, 112, 112). */
#include "data/loader.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"

#define SLOT_FLOATS ((size_t)3 * FKD_FACE_SIZE * FKD_FACE_SIZE)
/* Stream ids that separate the loader's random streams from each other. */
#define STREAM_BATCH 0x6c6f616465720001ull

typedef enum { SLOT_FREE = 0, SLOT_FILLING, SLOT_READY } slot_state;

typedef struct {
    slot_state state;
    fkd_batch batch;
    fkd_status status;  /* a worker's failure, delivered to the consumer */
    char message[1024];
} slot;

struct fkd_loader {
    const fkd_dataset *ds;
    fkd_loader_options o;
    int batch_size;
    int64_t n_images;
    int64_t steps_per_epoch;

    /* Planner state (guarded by mu; only ever moves forward in step order). */
    int64_t *perm, perm_n, perm_epoch; /* this epoch's order of images (SHUFFLE) or identities (PK) */
    int64_t n_ids;         /* identities that have images */
    int64_t *id_first;     /* (n_ids + 1) CSR offsets into id_images */
    int64_t *id_images;    /* (n_images) image indices grouped by identity */
    int64_t *pick;         /* scratch for drawing K of an identity's images */

    slot *slots;
    int depth;
    int64_t next_claim, next_consume;
    int held;              /* slot the consumer holds, -1 when none */
    fkd_status failed;
    char failed_message[1024];
    pthread_mutex_t mu;
    pthread_cond_t cv_free, cv_ready;
    atomic_bool stop;
    pthread_t *threads;
    int n_threads;
};

void fkd_loader_options_default(fkd_loader_options *o)
{
    memset(o, 0, sizeof *o);
    o->sampler = FKD_SAMPLER_SHUFFLE;
    o->batch_size = 64;
    o->p_identities = 16;
    o->k_images = 4;
    o->world = 1;
    o->flip = true;
    o->workers = 2;
    o->depth = 4;
}

/* ---- sampling ------------------------------------------------------------------------------ */

static void shuffle(int64_t *a, int64_t n, fkd_rng *r)
{
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)fkd_rng_below(r, (uint64_t)i + 1);
        int64_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

/* The epoch's order: a permutation of 0..perm_n-1 seeded by (seed, epoch). */
static void plan_epoch(fkd_loader *l, int64_t epoch)
{
    if (l->perm_epoch == epoch) return;
    for (int64_t i = 0; i < l->perm_n; i++) l->perm[i] = i;
    fkd_rng r;
    fkd_rng_seed(&r, l->o.seed, (uint64_t)epoch);
    shuffle(l->perm, l->perm_n, &r);
    l->perm_epoch = epoch;
}

/* Fills slot s's indices, labels and flips for this rank's step `step`. */
static void plan_batch(fkd_loader *l, slot *s, int64_t step)
{
    fkd_batch *b = &s->batch;
    const int64_t epoch = step / l->steps_per_epoch, t = step % l->steps_per_epoch;
    const int world = l->o.world, rank = l->o.rank, B = l->batch_size;
    /* The batch stream: flips, and PK's K-of-M draws. SHUFFLE and SEQUENTIAL: one stream
     * per global step, this rank's draws after the rank*B of the ranks before it, so that
     * N ranks x B images see the flips of one process x N*B. PK: one stream per rank and
     * step (its draws per image vary). With one rank both are the stream of the step. */
    fkd_rng r;
    bool pk = l->o.sampler == FKD_SAMPLER_PK;
    fkd_rng_seed(&r, fkd_hash_mix(l->o.seed, STREAM_BATCH), (uint64_t)(pk ? step * world + rank : step));
    for (int64_t j = 0; !pk && j < (int64_t)rank * B; j++) fkd_rng_uniform(&r);
    b->step = step;
    b->epoch = epoch;
    switch (l->o.sampler) {
    case FKD_SAMPLER_SHUFFLE:
        plan_epoch(l, epoch);
        b->n = B;
        for (int j = 0; j < B; j++) b->indices[j] = l->perm[(t * world + rank) * B + j];
        break;
    case FKD_SAMPLER_PK: {
        plan_epoch(l, epoch);
        const int P = l->o.p_identities, K = l->o.k_images;
        b->n = P * K;
        for (int p = 0; p < P; p++) {
            int64_t id = l->perm[(t * world + rank) * P + p];
            const int64_t *imgs = l->id_images + l->id_first[id];
            int64_t m = l->id_first[id + 1] - l->id_first[id];
            int64_t *out = b->indices + (int64_t)p * K;
            if (m >= K) { /* K distinct images: a partial Fisher-Yates over a copy */
                memcpy(l->pick, imgs, (size_t)m * sizeof *imgs);
                for (int k = 0; k < K; k++) {
                    int64_t j = k + (int64_t)fkd_rng_below(&r, (uint64_t)(m - k));
                    int64_t tmp = l->pick[k];
                    l->pick[k] = l->pick[j];
                    l->pick[j] = tmp;
                    out[k] = l->pick[k];
                }
            } else {
                for (int k = 0; k < K; k++) out[k] = imgs[fkd_rng_below(&r, (uint64_t)m)];
            }
        }
        break;
    }
    case FKD_SAMPLER_SEQUENTIAL: {
        int64_t first = (t * world + rank) * (int64_t)B;
        int64_t n = l->n_images - first < B ? l->n_images - first : B;
        b->n = (int)n;
        for (int64_t j = 0; j < n; j++) b->indices[j] = first + j;
        break;
    }
    }
    for (int j = 0; j < b->n; j++) {
        b->labels[j] = l->ds->ops->label(l->ds, b->indices[j]);
        /* One draw per image in every sampler so flips do not shift with the settings. */
        bool flip = fkd_rng_uniform(&r) < 0.5;
        b->flipped[j] = l->o.flip && l->o.sampler != FKD_SAMPLER_SEQUENTIAL && flip;
    }
}

/* ---- workers ------------------------------------------------------------------------------- */

static fkd_status fill(fkd_loader *l, fkd_batch *b)
{
    for (int j = 0; j < b->n; j++) {
        if (atomic_load(&l->stop)) return FKD_ERR_INTERRUPTED;
        FKD_TRY(fkd_dataset_load_nchw(l->ds, b->indices[j], b->flipped[j], l->o.resize, b->images + j * SLOT_FLOATS));
    }
    return FKD_OK;
}

static void *worker(void *arg)
{
    fkd_loader *l = arg;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!atomic_load(&l->stop) && l->slots[l->next_claim % l->depth].state != SLOT_FREE)
            pthread_cond_wait(&l->cv_free, &l->mu);
        if (atomic_load(&l->stop)) break;
        int64_t step = l->next_claim++;
        slot *s = &l->slots[step % l->depth];
        s->state = SLOT_FILLING;
        plan_batch(l, s, step);
        pthread_mutex_unlock(&l->mu);

        fkd_clear_error();
        s->status = fill(l, &s->batch);
        if (s->status != FKD_OK) snprintf(s->message, sizeof s->message, "%s", fkd_last_error());

        pthread_mutex_lock(&l->mu);
        s->state = SLOT_READY;
        pthread_cond_broadcast(&l->cv_ready);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

/* ---- public -------------------------------------------------------------------------------- */

static fkd_status check_options(const fkd_loader_options *o)
{
    if (o->world < 1 || o->rank < 0 || o->rank >= o->world)
        return FKD_FAIL(FKD_ERR_ARG, "loader: rank %d of world %d", o->rank, o->world);
    if (o->workers < 1 || o->workers > 64) return FKD_FAIL(FKD_ERR_ARG, "loader: workers %d outside 1..64", o->workers);
    if (o->depth < o->workers || o->depth > 256)
        return FKD_FAIL(FKD_ERR_ARG, "loader: depth %d must be in workers (%d)..256", o->depth, o->workers);
    if (o->sampler == FKD_SAMPLER_PK) {
        if (o->p_identities < 1 || o->k_images < 1 || (int64_t)o->p_identities * o->k_images > 65536)
            return FKD_FAIL(FKD_ERR_ARG, "loader: P=%d identities x K=%d images per batch is out of range", o->p_identities,
                            o->k_images);
    } else if (o->sampler == FKD_SAMPLER_SHUFFLE || o->sampler == FKD_SAMPLER_SEQUENTIAL) {
        if (o->batch_size < 1 || o->batch_size > 65536)
            return FKD_FAIL(FKD_ERR_ARG, "loader: batch size %d outside 1..65536", o->batch_size);
    } else {
        return FKD_FAIL(FKD_ERR_ARG, "loader: unknown sampler %d", (int)o->sampler);
    }
    return FKD_OK;
}

/* PK: the identities that have images, and each one's images (CSR). */
static fkd_status group_identities(fkd_loader *l)
{
    const fkd_dataset *ds = l->ds;
    int32_t n_labels = ds->ops->identities(ds);
    int64_t *count = calloc((size_t)n_labels + 1, sizeof *count);
    if (!count) return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", ds->source);
    for (int64_t i = 0; i < l->n_images; i++) {
        int32_t y = ds->ops->label(ds, i);
        if (y < 0 || y >= n_labels) {
            free(count);
            return FKD_FAIL(FKD_ERR_FORMAT, "%s: image %" PRId64 " has label %d outside [0, %d)", ds->source, i, y,
                            n_labels);
        }
        count[y]++;
    }
    int64_t max_m = 0;
    for (int32_t y = 0; y < n_labels; y++) {
        l->n_ids += count[y] > 0;
        if (count[y] > max_m) max_m = count[y];
    }
    l->id_first = malloc((size_t)(l->n_ids + 1) * sizeof *l->id_first);
    l->id_images = malloc((size_t)l->n_images * sizeof *l->id_images);
    l->pick = malloc((size_t)max_m * sizeof *l->pick + 1);
    int64_t *slot_of = malloc(((size_t)n_labels + 1) * sizeof *slot_of);
    fkd_status s = FKD_OK;
    if (!l->id_first || !l->id_images || !l->pick || !slot_of) {
        s = FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", ds->source);
    } else {
        int64_t k = 0, at = 0;
        for (int32_t y = 0; y < n_labels; y++) {
            slot_of[y] = -1;
            if (!count[y]) continue;
            l->id_first[k] = at;
            slot_of[y] = at;
            at += count[y];
            k++;
        }
        l->id_first[k] = at;
        for (int64_t i = 0; i < l->n_images; i++) l->id_images[slot_of[ds->ops->label(ds, i)]++] = i;
    }
    free(slot_of);
    free(count);
    return s;
}

static fkd_status setup(fkd_loader *l)
{
    const fkd_loader_options *o = &l->o;
    const char *src = l->ds->source ? l->ds->source : l->ds->ops->name;
    int64_t per_step;
    if (o->sampler == FKD_SAMPLER_PK) {
        FKD_TRY(group_identities(l));
        l->perm_n = l->n_ids;
        per_step = (int64_t)o->p_identities * o->world;
        l->steps_per_epoch = l->n_ids / per_step;
        if (l->steps_per_epoch < 1)
            return FKD_FAIL(FKD_ERR_ARG, "%s: %" PRId64 " identities with images, a step needs P=%d x world=%d", src,
                            l->n_ids, o->p_identities, o->world);
    } else if (o->sampler == FKD_SAMPLER_SHUFFLE) {
        l->perm_n = l->n_images;
        per_step = (int64_t)o->batch_size * o->world;
        l->steps_per_epoch = l->n_images / per_step;
        if (l->steps_per_epoch < 1)
            return FKD_FAIL(FKD_ERR_ARG, "%s: %" PRId64 " images, fewer than one batch of %d x world %d", src,
                            l->n_images, o->batch_size, o->world);
    } else {
        int64_t batches = (l->n_images + o->batch_size - 1) / o->batch_size;
        l->steps_per_epoch = (batches - o->rank + o->world - 1) / o->world;
        if (l->steps_per_epoch < 1)
            return FKD_FAIL(FKD_ERR_ARG, "%s: %" PRId64 " batches leave rank %d of %d nothing", src, batches, o->rank,
                            o->world);
    }
    if (l->perm_n) {
        l->perm = malloc((size_t)l->perm_n * sizeof *l->perm);
        if (!l->perm) return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", src);
    }
    l->perm_epoch = -1;
    if (o->start_step < 0) return FKD_FAIL(FKD_ERR_ARG, "%s: negative start step", src);
    l->next_claim = l->next_consume = o->start_step;
    l->depth = o->depth;
    l->slots = calloc((size_t)l->depth, sizeof *l->slots);
    if (!l->slots) return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", src);
    const size_t B = (size_t)l->batch_size;
    for (int i = 0; i < l->depth; i++) {
        fkd_batch *b = &l->slots[i].batch;
        b->images = malloc(B * SLOT_FLOATS * sizeof *b->images);
        b->labels = malloc(B * sizeof *b->labels);
        b->indices = malloc(B * sizeof *b->indices);
        b->flipped = malloc(B);
        if (!b->images || !b->labels || !b->indices || !b->flipped)
            return FKD_FAIL(FKD_ERR_NOMEM, "loader: cannot allocate %d batches of %zu images", l->depth, B);
    }
    return FKD_OK;
}

fkd_status fkd_loader_create(fkd_loader **out, const fkd_dataset *ds, const fkd_loader_options *o)
{
    *out = NULL;
    FKD_TRY(check_options(o));
    fkd_loader *l = calloc(1, sizeof *l);
    if (!l) return FKD_FAIL(FKD_ERR_NOMEM, "loader: out of memory");
    l->ds = ds;
    l->o = *o;
    l->held = -1;
    l->n_images = ds->ops->count(ds);
    l->batch_size = o->sampler == FKD_SAMPLER_PK ? o->p_identities * o->k_images : o->batch_size;
    atomic_init(&l->stop, false);
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv_free, NULL);
    pthread_cond_init(&l->cv_ready, NULL);
    fkd_status s = l->n_images > 0 ? setup(l)
                                   : FKD_FAIL(FKD_ERR_FORMAT, "%s: the dataset is empty", ds->source ? ds->source : "dataset");
    if (s == FKD_OK) {
        l->threads = calloc((size_t)o->workers, sizeof *l->threads);
        if (!l->threads) s = FKD_FAIL(FKD_ERR_NOMEM, "loader: out of memory");
    }
    for (int i = 0; s == FKD_OK && i < o->workers; i++) {
        if (pthread_create(&l->threads[i], NULL, worker, l) != 0)
            s = FKD_FAIL(FKD_ERR_IO, "loader: cannot start worker thread %d", i);
        else
            l->n_threads++;
    }
    if (s != FKD_OK) {
        fkd_loader_free(l);
        return s;
    }
    *out = l;
    return FKD_OK;
}

fkd_status fkd_loader_next(fkd_loader *l, const fkd_batch **batch)
{
    *batch = NULL;
    pthread_mutex_lock(&l->mu);
    if (l->held >= 0) {
        l->slots[l->held].state = SLOT_FREE;
        l->held = -1;
        pthread_cond_broadcast(&l->cv_free);
    }
    if (l->failed == FKD_OK) {
        slot *s = &l->slots[l->next_consume % l->depth];
        while (!(s->state == SLOT_READY && s->batch.step == l->next_consume)) pthread_cond_wait(&l->cv_ready, &l->mu);
        if (s->status != FKD_OK) {
            /* The loader stops at the first failure: later batches would skip an image. */
            l->failed = s->status;
            memcpy(l->failed_message, s->message, sizeof l->failed_message);
            atomic_store(&l->stop, true);
            pthread_cond_broadcast(&l->cv_free);
        } else {
            l->held = (int)(l->next_consume % l->depth);
            l->next_consume++;
            *batch = &s->batch;
        }
    }
    fkd_status st = l->failed;
    pthread_mutex_unlock(&l->mu);
    if (st != FKD_OK) return FKD_FAIL(st, "%s", l->failed_message);
    return FKD_OK;
}

int64_t fkd_loader_steps_per_epoch(const fkd_loader *l) { return l->steps_per_epoch; }
int fkd_loader_batch_size(const fkd_loader *l) { return l->batch_size; }

void fkd_loader_free(fkd_loader *l)
{
    if (!l) return;
    pthread_mutex_lock(&l->mu);
    atomic_store(&l->stop, true);
    pthread_cond_broadcast(&l->cv_free);
    pthread_cond_broadcast(&l->cv_ready);
    pthread_mutex_unlock(&l->mu);
    for (int i = 0; i < l->n_threads; i++) pthread_join(l->threads[i], NULL);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv_free);
    pthread_cond_destroy(&l->cv_ready);
    for (int i = 0; l->slots && i < l->depth; i++) {
        fkd_batch *b = &l->slots[i].batch;
        free(b->images);
        free(b->labels);
        free(b->indices);
        free(b->flipped);
    }
    free(l->slots);
    free(l->threads);
    free(l->perm);
    free(l->id_first);
    free(l->id_images);
    free(l->pick);
    free(l);
}
