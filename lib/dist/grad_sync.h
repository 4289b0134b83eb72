/* Gradient averaging for data-parallel training: after each rank's backward, every
 * trainable parameter's gradient becomes the mean over ranks, so that every rank's
 * optimizer applies the same update to the same weights.
 *
 * Gradients are copied into buckets of about `bucket_bytes` (fp32, in parameter order),
 * each bucket's sum is started (non-blocking MPI_Iallreduce) as soon as it is filled,
 * the next bucket is packed meanwhile, and the sums come back scaled by 1/world. The
 * packing buffer holds one copy of all gradients.
 *
 * The head's class centres are parameters like any other: every rank holds all of them
 * (no partial FC), and their gradients are averaged here too. */
#ifndef FKD_DIST_GRAD_SYNC_H
#define FKD_DIST_GRAD_SYNC_H

#include <stddef.h>

#include "core/status.h"
#include "nn/graph.h"

#define FKD_GRAD_SYNC_BUCKET_BYTES ((size_t)8 << 20)

typedef struct fkd_grad_sync fkd_grad_sync;

/* Remembers the parameters of `n_lists` lists (pointers into them must stay valid);
 * parameters without a gradient (buffers) are left out. */
fkd_status fkd_grad_sync_create(fkd_grad_sync **out, fkd_param *const *lists, const int *counts, int n_lists,
                                size_t bucket_bytes);
/* Averages every gradient over the ranks (nothing to do in a one-rank world). */
fkd_status fkd_grad_sync_run(fkd_grad_sync *gs);
/* Seconds spent in fkd_grad_sync_run since creation, and its calls. */
double fkd_grad_sync_seconds(const fkd_grad_sync *gs, long *calls);
/* Safe on NULL. */
void fkd_grad_sync_free(fkd_grad_sync *gs);

#endif
