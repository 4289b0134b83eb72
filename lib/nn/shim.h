/* The one place that calls oneDNN. Every oneDNN call in facekd goes through this module
 * (lib/nn/shim.c); FKD_DNNL_CHECK records the failing call and the place.
 *
 * The shim wraps oneDNN's 2.x objects in opaque handles that the graph and the ops use
 * without seeing a oneDNN type:
 *   fkd_md    a memory descriptor (shape, data type, layout — possibly "any")
 *   fkd_mem   a buffer with its descriptor (64-byte aligned, zero-filled)
 *   fkd_pd    a primitive descriptor (what oneDNN chose: layouts, implementation)
 *   fkd_prim  a primitive with its arguments bound, ready to run
 * Every object belongs to the fkd_shim that created it and is freed by fkd_shim_free()
 * (so a half-built graph frees cleanly). Scratchpads are in user mode: the caller may give
 * a primitive its own (fkd_shim_prim_set_scratch: the graph plans them by lifetime with its
 * other buffers); one buffer, sized for the largest of the others, is shared by the rest
 * (they run one after another) and is bound by fkd_shim_finalize(). Nothing here allocates
 * after finalize.
 */
#ifndef FKD_NN_SHIM_H
#define FKD_NN_SHIM_H

#include <stdbool.h>
#include <stddef.h>
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

/* The instruction set oneDNN's kernels use on this CPU ("avx512_core_amx", "avx512_core_bf16",
 * "avx512_core", "avx2", ...), and its nominal floating-point operations per cycle per core
 * (FMA = 2) for fp32 or bf16 dot products: AMX tiles 1024, AVX-512 bf16 128 / fp32 64,
 * AVX2 32, SSE 16. Nominal: two 512-bit FMA units, as Intel's server cores. */
const char *fkd_shim_isa(void);
int fkd_shim_flops_per_cycle(bool bf16);

/* ---- objects ------------------------------------------------------------------------- */
typedef struct fkd_shim fkd_shim;
typedef struct fkd_md fkd_md;
typedef struct fkd_mem fkd_mem;
typedef struct fkd_pd fkd_pd;
typedef struct fkd_prim fkd_prim;

/* Element type of activations and weights inside a primitive. */
typedef enum { FKD_DT_F32 = 0, FKD_DT_BF16 } fkd_dtype;

/* Primitive arguments (mapped to DNNL_ARG_*). */
typedef enum {
    FKD_ARG_SRC = 0,
    FKD_ARG_SRC_1,
    FKD_ARG_DST,
    FKD_ARG_WEIGHTS,
    FKD_ARG_BIAS,
    FKD_ARG_MEAN,
    FKD_ARG_VARIANCE,
    FKD_ARG_SCALE,
    FKD_ARG_SHIFT,
    FKD_ARG_DIFF_SRC,
    FKD_ARG_DIFF_DST,
    FKD_ARG_DIFF_WEIGHTS,
    FKD_ARG_DIFF_BIAS,
    FKD_ARG_DIFF_SCALE,
    FKD_ARG_DIFF_SHIFT,
    FKD_ARG__COUNT
} fkd_arg;

/* CPU engine and in-order stream; threads come from OpenMP (OMP_NUM_THREADS). */
fkd_status fkd_shim_create(fkd_shim **out);
/* Frees every object created through `s`. Safe on NULL. */
void fkd_shim_free(fkd_shim *s);

/* ---- memory descriptors ---------------------------------------------------------------- */
/* Plain row-major layout (a, ab, abcd, abcde by ndims), ndims 1..5. */
fkd_status fkd_shim_md_plain(fkd_shim *s, const fkd_md **out, int ndims, const int64_t *dims,
                             fkd_dtype dt);
/* "Let the primitive choose" (format_tag_any). */
fkd_status fkd_shim_md_any(fkd_shim *s, const fkd_md **out, int ndims, const int64_t *dims,
                           fkd_dtype dt);
/* (N, C, H, W) in oneDNN's nChw16c: channel blocks of 16 innermost (facekd's own kernels). */
fkd_status fkd_shim_md_blocked16(fkd_shim *s, const fkd_md **out, const int64_t dims[4], fkd_dtype dt);
/* The same layout read with other dims of the same element count: only for plain layouts
 * (used by flatten to view (N, C·H·W) as (N, C, H, W)). */
fkd_status fkd_shim_md_reshape(fkd_shim *s, const fkd_md **out, const fkd_md *md, int ndims,
                               const int64_t *dims);
bool fkd_shim_md_equal(const fkd_md *a, const fkd_md *b);
/* The same layout with another element type (fp32 master copies of bf16 weights). */
fkd_status fkd_shim_md_as(fkd_shim *s, const fkd_md **out, const fkd_md *md, fkd_dtype dt);
fkd_dtype fkd_shim_md_dtype(const fkd_md *md);
/* True when oneDNN has bf16 kernels on this CPU (AVX-512 and up; native with avx512_bf16
 * or AMX, emulated on plain AVX-512). */
bool fkd_shim_bf16_ok(void);
/* A plain or blocked layout (strides over dims): reorders go both ways. False for opaque
 * ones (Winograd weights), which reorders can only write. */
bool fkd_shim_md_is_blocked(const fkd_md *md);
/* Bytes a buffer of this layout needs, including blocking padding. */
size_t fkd_shim_md_bytes(const fkd_md *md);

/* ---- memory ---------------------------------------------------------------------------- */
/* A zero-filled, 64-byte aligned buffer owned by the shim. */
fkd_status fkd_shim_mem(fkd_shim *s, fkd_mem **out, const fkd_md *md);
/* A memory over a buffer the caller owns and keeps alive (≥ fkd_shim_md_bytes(md)). */
fkd_status fkd_shim_mem_wrap(fkd_shim *s, fkd_mem **out, const fkd_md *md, void *data);
/* Another descriptor over `base`'s buffer (md must fit in it). */
fkd_status fkd_shim_mem_view(fkd_shim *s, fkd_mem **out, const fkd_md *md, fkd_mem *base);
/* A memory without a buffer: the caller points it at its own array with
 * fkd_shim_mem_set_handle() before each use (plain arrays at the graph's edges). */
fkd_status fkd_shim_mem_edge(fkd_shim *s, fkd_mem **out, const fkd_md *md);
fkd_status fkd_shim_mem_set_handle(fkd_mem *m, void *data);
void *fkd_shim_mem_data(const fkd_mem *m);
const fkd_md *fkd_shim_mem_md(const fkd_mem *m);
size_t fkd_shim_mem_bytes(const fkd_mem *m);

/* ---- primitive descriptors ------------------------------------------------------------- */
/* Descriptors may be "any" where oneDNN allows it; query the choice with fkd_shim_pd_md.
 * `training` selects forward_training (keeps what backward needs) over forward_inference.
 * Backward descriptors take their forward descriptor as the hint. Convolution weights are
 * (O, I, K, K), or (G, O/G, I/G, K, K) when grouped. */
/* `sum`: a sum post-op, dst = conv(src) + bias + dst (a residual add fused in; dst holds
 * the residual when the primitive runs). `winograd`: oneDNN's Winograd algorithm instead of
 * direct convolution (fp32 3×3 stride 1; fails with FKD_ERR_DNNL where unimplemented; its
 * weights take an opaque layout for inference, see fkd_shim_md_is_blocked; blocked
 * OIhw16i16o for training, transformed inside each run). The backward descriptors take the
 * same flag (oneDNN's Winograd backward-data and backward-weights kernels). */
fkd_status fkd_shim_conv_fwd_pd(fkd_shim *s, fkd_pd **out, bool training, const fkd_md *src,
                                const fkd_md *weights, const fkd_md *bias, const fkd_md *dst,
                                int stride, int padding, bool sum, bool winograd);
fkd_status fkd_shim_conv_bwd_data_pd(fkd_shim *s, fkd_pd **out, const fkd_md *diff_src,
                                     const fkd_md *weights, const fkd_md *diff_dst, int stride,
                                     int padding, const fkd_pd *hint, bool winograd);
fkd_status fkd_shim_conv_bwd_weights_pd(fkd_shim *s, fkd_pd **out, const fkd_md *src,
                                        const fkd_md *diff_weights, const fkd_md *diff_bias,
                                        const fkd_md *diff_dst, int stride, int padding,
                                        const fkd_pd *hint, bool winograd);
/* Batch norm with scale and shift; `global_stats` normalises with given mean/variance. */
fkd_status fkd_shim_bnorm_fwd_pd(fkd_shim *s, fkd_pd **out, bool training, const fkd_md *data,
                                 float eps, bool global_stats);
fkd_status fkd_shim_bnorm_bwd_pd(fkd_shim *s, fkd_pd **out, const fkd_md *diff_data,
                                 const fkd_md *data, float eps, bool global_stats,
                                 const fkd_pd *hint);
fkd_status fkd_shim_prelu_fwd_pd(fkd_shim *s, fkd_pd **out, bool training, const fkd_md *data,
                                 const fkd_md *weights);
fkd_status fkd_shim_prelu_bwd_pd(fkd_shim *s, fkd_pd **out, const fkd_md *data,
                                 const fkd_md *weights, const fkd_md *diff_data,
                                 const fkd_md *diff_weights, const fkd_pd *hint);
fkd_status fkd_shim_ip_fwd_pd(fkd_shim *s, fkd_pd **out, bool training, const fkd_md *src,
                              const fkd_md *weights, const fkd_md *bias, const fkd_md *dst);
fkd_status fkd_shim_ip_bwd_data_pd(fkd_shim *s, fkd_pd **out, const fkd_md *diff_src,
                                   const fkd_md *weights, const fkd_md *diff_dst,
                                   const fkd_pd *hint);
fkd_status fkd_shim_ip_bwd_weights_pd(fkd_shim *s, fkd_pd **out, const fkd_md *src,
                                      const fkd_md *diff_weights, const fkd_md *diff_bias,
                                      const fkd_md *diff_dst, const fkd_pd *hint);
/* dst = src0 + src1 (elementwise, same dims). */
fkd_status fkd_shim_add_pd(fkd_shim *s, fkd_pd **out, const fkd_md *src0, const fkd_md *src1,
                           const fkd_md *dst);
/* The layout a descriptor chose for an argument. */
const fkd_md *fkd_shim_pd_md(const fkd_pd *pd, fkd_arg arg);
/* oneDNN's implementation name ("brgconv:avx512_core", "ref:any", ...). */
const char *fkd_shim_pd_impl(const fkd_pd *pd);

/* ---- primitives ------------------------------------------------------------------------ */
fkd_status fkd_shim_prim(fkd_shim *s, fkd_prim **out, const fkd_pd *pd);
fkd_status fkd_shim_prim_bind(fkd_prim *p, fkd_arg arg, fkd_mem *m);
/* dst = src (or dst += src when `accumulate`), converting layouts. */
fkd_status fkd_shim_reorder(fkd_shim *s, fkd_prim **out, fkd_mem *src, fkd_mem *dst,
                            bool accumulate);
const char *fkd_shim_prim_impl(const fkd_prim *p);
/* Bytes of scratchpad the primitive needs while it runs (0: none). */
size_t fkd_shim_prim_scratch_bytes(const fkd_prim *p);
/* Binds `buf` (≥ fkd_shim_prim_scratch_bytes, 64-byte aligned, owned by the caller) as the
 * primitive's scratchpad: the caller keeps it free of other data while p runs. */
fkd_status fkd_shim_prim_set_scratch(fkd_shim *s, fkd_prim *p, void *buf);
/* Allocates the shared scratchpad and binds it to every primitive without its own; call
 * once after the last primitive is created and before the first run. */
fkd_status fkd_shim_finalize(fkd_shim *s);
fkd_status fkd_shim_run(fkd_shim *s, fkd_prim *p);
/* Waits for submitted primitives before the host touches their buffers. */
fkd_status fkd_shim_wait(fkd_shim *s);

#endif
