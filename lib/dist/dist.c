#include "dist/dist.h"

#include <stdio.h>

#ifdef FKD_MPI
#include <mpi.h>

#include "core/log.h"

/* MPI counts are int: longer buffers go in pieces of this many elements. */
#define PIECE ((size_t)1 << 30)

static int rank = 0, world = 1;
static bool joined = false;
static MPI_Request pending[FKD_DIST_MAX_PENDING];
static int n_pending = 0;
/* Seconds spent in reductions, waits and barriers (waiting for the slowest rank included). */
static double mpi_seconds = 0;

double fkd_dist_seconds(void) { return mpi_seconds; }

static fkd_status mpi_fail(int rc, const char *call)
{
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, text, &len);
    return FKD_FAIL(FKD_ERR_IO, "MPI: %s on rank %d of %d: %.*s", call, rank, world, len, text);
}

#define MPI_TRY(call, name)                                                                                  \
    do {                                                                                                     \
        int rc_ = (call);                                                                                    \
        if (rc_ != MPI_SUCCESS) return mpi_fail(rc_, name);                                                  \
    } while (0)

fkd_status fkd_dist_init(void)
{
    int done = 0;
    MPI_Initialized(&done);
    if (!done) {
        int provided;
        MPI_TRY(MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
        joined = true;
    }
    /* Errors come back as codes (and then as fkd_status messages) instead of aborting
     * inside MPI with its own text. */
    MPI_TRY(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    MPI_TRY(MPI_Comm_rank(MPI_COMM_WORLD, &rank), "MPI_Comm_rank");
    MPI_TRY(MPI_Comm_size(MPI_COMM_WORLD, &world), "MPI_Comm_size");
    return FKD_OK;
}

int fkd_dist_rank(void) { return rank; }
int fkd_dist_world(void) { return world; }
bool fkd_dist_has_mpi(void) { return true; }

static fkd_status allreduce(void *buf, size_t n, MPI_Datatype type, size_t elem)
{
    if (world == 1) return FKD_OK;
    double start = fkd_now();
    for (size_t at = 0; at < n; at += PIECE) {
        int count = (int)(n - at < PIECE ? n - at : PIECE);
        MPI_TRY(MPI_Allreduce(MPI_IN_PLACE, (char *)buf + at * elem, count, type, MPI_SUM, MPI_COMM_WORLD),
                "MPI_Allreduce");
    }
    mpi_seconds += fkd_now() - start;
    return FKD_OK;
}

fkd_status fkd_dist_allreduce_f32(float *buf, size_t n) { return allreduce(buf, n, MPI_FLOAT, sizeof *buf); }
fkd_status fkd_dist_allreduce_f64(double *buf, size_t n) { return allreduce(buf, n, MPI_DOUBLE, sizeof *buf); }

fkd_status fkd_dist_allreduce_f32_start(float *buf, size_t n)
{
    if (world == 1) return FKD_OK;
    for (size_t at = 0; at < n; at += PIECE) {
        if (n_pending == FKD_DIST_MAX_PENDING)
            return FKD_FAIL(FKD_ERR_ARG, "dist: more than %d reductions under way", FKD_DIST_MAX_PENDING);
        int count = (int)(n - at < PIECE ? n - at : PIECE);
        MPI_TRY(MPI_Iallreduce(MPI_IN_PLACE, buf + at, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD,
                               &pending[n_pending]),
                "MPI_Iallreduce");
        n_pending++;
    }
    return FKD_OK;
}

fkd_status fkd_dist_wait_all(void)
{
    int n = n_pending;
    n_pending = 0;
    if (n == 0) return FKD_OK;
    double start = fkd_now();
    MPI_TRY(MPI_Waitall(n, pending, MPI_STATUSES_IGNORE), "MPI_Waitall");
    mpi_seconds += fkd_now() - start;
    return FKD_OK;
}

fkd_status fkd_dist_broadcast_f32(float *buf, size_t n)
{
    if (world == 1) return FKD_OK;
    for (size_t at = 0; at < n; at += PIECE) {
        int count = (int)(n - at < PIECE ? n - at : PIECE);
        MPI_TRY(MPI_Bcast(buf + at, count, MPI_FLOAT, 0, MPI_COMM_WORLD), "MPI_Bcast");
    }
    return FKD_OK;
}

fkd_status fkd_dist_barrier(void)
{
    if (world == 1) return FKD_OK;
    double start = fkd_now();
    MPI_TRY(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
    mpi_seconds += fkd_now() - start;
    return FKD_OK;
}

void fkd_dist_fail(const char *message, int exit_code)
{
    if (world == 1) return;
    fprintf(stderr, "facekd: rank %d of %d failed: %s\nfacekd: ending the job (MPI_Abort)\n", rank, world, message);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, exit_code);
}

void fkd_dist_finalize(void)
{
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (joined && !finalized) MPI_Finalize();
}

#else /* one-rank world */

fkd_status fkd_dist_init(void) { return FKD_OK; }
int fkd_dist_rank(void) { return 0; }
int fkd_dist_world(void) { return 1; }
bool fkd_dist_has_mpi(void) { return false; }
fkd_status fkd_dist_allreduce_f32(float *buf, size_t n) { (void)buf, (void)n; return FKD_OK; }
fkd_status fkd_dist_allreduce_f64(double *buf, size_t n) { (void)buf, (void)n; return FKD_OK; }
fkd_status fkd_dist_allreduce_f32_start(float *buf, size_t n) { (void)buf, (void)n; return FKD_OK; }
fkd_status fkd_dist_wait_all(void) { return FKD_OK; }
fkd_status fkd_dist_broadcast_f32(float *buf, size_t n) { (void)buf, (void)n; return FKD_OK; }
fkd_status fkd_dist_barrier(void) { return FKD_OK; }
double fkd_dist_seconds(void) { return 0; }
void fkd_dist_fail(const char *message, int exit_code) { (void)message, (void)exit_code; }
void fkd_dist_finalize(void) {}

#endif

bool fkd_dist_is_root(void) { return fkd_dist_rank() == 0; }
