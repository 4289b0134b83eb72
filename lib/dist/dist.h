/* Data-parallel training across processes: the only code that calls MPI.
 *
 * Built with `make MPI=1` (-DFKD_MPI, Open MPI), the functions below talk to the other
 * ranks of an `mpirun -np N facekd ...` job. Built without it, they are a one-rank world:
 * rank 0 of 1, reductions leave the buffers as they are, barriers return at once — so the
 * rest of facekd calls them unconditionally and has no #ifdefs.
 *
 * Every rank must make the same collective calls (allreduce, barrier) in the same order
 * with the same counts; the trainer keeps decisions that could differ between ranks
 * (stop requested, non-finite loss) in the per-step reduction so that they cannot.
 *
 *   fkd_dist_init()                    once, before any other call (idempotent)
 *   fkd_dist_rank(), fkd_dist_world()  this process's place
 *   fkd_dist_allreduce_*()             sum over ranks, in place
 *   fkd_dist_fail()                    ends every rank of the job after an error
 *   fkd_dist_finalize()                at a clean exit
 */
#ifndef FKD_DIST_DIST_H
#define FKD_DIST_DIST_H

#include <stdbool.h>
#include <stddef.h>

#include "core/status.h"

/* Joins the MPI job (MPI_Init_thread, funneled: only the calling thread talks to MPI).
 * Without MPI, or when already initialised, does nothing. */
fkd_status fkd_dist_init(void);
/* 0 and 1 before fkd_dist_init and in the one-rank build. */
int fkd_dist_rank(void);
int fkd_dist_world(void);
/* True on rank 0: the one rank that writes files, logs and progress. */
bool fkd_dist_is_root(void);
/* True when built with MPI=1. */
bool fkd_dist_has_mpi(void);

/* Sums `n` values over every rank, in place (all ranks receive the sum). */
fkd_status fkd_dist_allreduce_f32(float *buf, size_t n);
fkd_status fkd_dist_allreduce_f64(double *buf, size_t n);
/* Non-blocking sum in place: starts the reduction and returns; the buffer must not be
 * touched until fkd_dist_wait_all() returns. At most FKD_DIST_MAX_PENDING at once. */
#define FKD_DIST_MAX_PENDING 256
fkd_status fkd_dist_allreduce_f32_start(float *buf, size_t n);
fkd_status fkd_dist_wait_all(void);
/* Same values everywhere: rank 0's buffer is copied to every other rank. */
fkd_status fkd_dist_broadcast_f32(float *buf, size_t n);
fkd_status fkd_dist_barrier(void);
/* Seconds this rank has spent in reductions, waits and barriers so far (time waiting for
 * slower ranks included); 0 in the one-rank build. */
double fkd_dist_seconds(void);

/* After an error on this rank in a job of several: prints "facekd: rank R of N failed:
 * <message>" to stderr and aborts the whole job (MPI_Abort with `exit_code`), so the other
 * ranks do not wait forever in their next reduction. Returns only in a one-rank world. */
void fkd_dist_fail(const char *message, int exit_code);
/* Leaves the job (MPI_Finalize) at a clean exit; does nothing without MPI. */
void fkd_dist_finalize(void);

#endif
