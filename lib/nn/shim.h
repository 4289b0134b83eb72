/* The one place that calls oneDNN. Every oneDNN call in facekd goes through this module
 * (lib/nn/shim.c); FKD_DNNL_CHECK records the failing call and the place. */
#ifndef FKD_NN_SHIM_H
#define FKD_NN_SHIM_H

#include <stdbool.h>
#include <stdint.h>

#include "core/status.h"

/* Wraps a dnnl_status_t-returning expression (only inside lib/nn/shim*.c):
 *   FKD_DNNL_CHECK(dnnl_memory_create(&m, &md, engine, DNNL_MEMORY_ALLOCATE));
 * On failure records "oneDNN: <call> failed: <status>" with file:line and returns
 * FKD_ERR_DNNL from the enclosing function. */
#define FKD_DNNL_CHECK(call)                                                           \
    do {                                                                               \
        dnnl_status_t fkd__ds = (call);                                                \
        if (fkd__ds != dnnl_success)                                                   \
            return fkd__fail(FKD_ERR_DNNL, __FILE__, __LINE__, "oneDNN: %s failed: %s", \
                             #call, fkd_dnnl_status_str(fkd__ds));                     \
    } while (0)

const char *fkd_dnnl_status_str(int dnnl_status);

/* Row-major single-precision GEMM on oneDNN's JIT kernels (OpenMP threads):
 *   C (m×n) = alpha · op(A) · op(B) + beta · C,
 * op(X) = X or Xᵀ by trans_a/trans_b; lda/ldb/ldc are row strides in elements. */
fkd_status fkd_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                     const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                     float *c, int64_t ldc);

#endif
