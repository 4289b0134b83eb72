#include "dist/grad_sync.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "dist/dist.h"

struct fkd_grad_sync {
    fkd_param **params; /* those with a gradient */
    int n_params;
    float *packed;      /* (sum of storage) every gradient, in parameter order */
    size_t total, bucket; /* elements */
    double seconds;
    long calls;
};

fkd_status fkd_grad_sync_create(fkd_grad_sync **out, fkd_param *const *lists, const int *counts, int n_lists,
                                size_t bucket_bytes)
{
    *out = NULL;
    fkd_grad_sync *gs = calloc(1, sizeof *gs);
    int n = 0;
    for (int l = 0; l < n_lists; l++) n += counts[l];
    if (gs) gs->params = calloc((size_t)n + 1, sizeof *gs->params);
    if (!gs || !gs->params) {
        fkd_grad_sync_free(gs);
        return FKD_FAIL(FKD_ERR_NOMEM, "gradient averaging: out of memory");
    }
    for (int l = 0; l < n_lists; l++)
        for (int i = 0; i < counts[l]; i++)
            if (lists[l][i].grad) {
                gs->params[gs->n_params++] = &lists[l][i];
                gs->total += lists[l][i].storage;
            }
    gs->bucket = bucket_bytes / sizeof(float) > 0 ? bucket_bytes / sizeof(float) : 1;
    if (fkd_dist_world() > 1) {
        gs->packed = malloc(sizeof(float) * (gs->total + 1));
        if (!gs->packed) {
            double mb = 4e-6 * (double)gs->total;
            fkd_grad_sync_free(gs);
            return FKD_FAIL(FKD_ERR_NOMEM, "gradient averaging: out of memory (%.1f MB)", mb);
        }
    }
    *out = gs;
    return FKD_OK;
}

/* Starts the sum of one bucket; first waits for those under way when the bucket's
 * requests (one per 2^30 floats) would not fit beside them. */
static fkd_status start_bucket(float *buf, size_t n, int *in_flight)
{
    int requests = (int)(n >> 30) + 1;
    if (*in_flight + requests > FKD_DIST_MAX_PENDING) {
        FKD_TRY(fkd_dist_wait_all());
        *in_flight = 0;
    }
    *in_flight += requests;
    return fkd_dist_allreduce_f32_start(buf, n);
}

fkd_status fkd_grad_sync_run(fkd_grad_sync *gs)
{
    int world = fkd_dist_world();
    if (world == 1) return FKD_OK;
    double start = fkd_now();
    /* Pack in parameter order; whenever `bucket` elements are ready, start their sum. */
    size_t filled = 0, started = 0;
    int in_flight = 0;
    fkd_status s = FKD_OK;
    for (int i = 0; s == FKD_OK && i < gs->n_params; i++) {
        const fkd_param *p = gs->params[i];
        memcpy(gs->packed + filled, p->grad, p->storage * sizeof(float));
        filled += p->storage;
        if (filled - started >= gs->bucket) {
            s = start_bucket(gs->packed + started, filled - started, &in_flight);
            started = filled;
        }
    }
    if (s == FKD_OK && filled > started) s = start_bucket(gs->packed + started, filled - started, &in_flight);
    fkd_status w = fkd_dist_wait_all(); /* also after a failed start: nothing may stay pending */
    if (s == FKD_OK) s = w;
    if (s != FKD_OK) return FKD_WRAP(s, "gradient averaging: ");
    float inv = 1.0f / (float)world;
    size_t at = 0;
    for (int i = 0; i < gs->n_params; i++) {
        fkd_param *p = gs->params[i];
        for (size_t k = 0; k < p->storage; k++) p->grad[k] = gs->packed[at + k] * inv;
        at += p->storage;
    }
    gs->seconds += fkd_now() - start;
    gs->calls++;
    return FKD_OK;
}

double fkd_grad_sync_seconds(const fkd_grad_sync *gs, long *calls)
{
    if (calls) *calls = gs->calls;
    return gs->seconds;
}

void fkd_grad_sync_free(fkd_grad_sync *gs)
{
    if (!gs) return;
    free(gs->params);
    free(gs->packed);
    free(gs);
}
