/* Grouped convolution with 2, 4 or 8 channels per group (MobileFaceNet's second layer:
 * groups = width, 2 channels each), facekd's own kernels on nChw16c data.
 *
 * Why: oneDNN 2.6 has no blocked kernel for it and runs x64:gemm:jit on plain NCHW data
 * (im2col per group, plain output, so the next batch norm falls to ncsp_bnorm): at width 16,
 * batch 32 this one layer took ~70 % of a single-thread MobileFaceNet training step.
 *
 * In an nChw16c block the k channels of a group are k adjacent lanes, so with k-aligned
 * lane groups and perm_j(c) = (c & ~(k-1)) | ((c + j) & (k-1)):
 *   forward        y[c]  = b[c] + Σ_{kh,kw} Σ_j Wl_j[c] · x[perm_j(c)]
 *   backward data  dx[c] += Σ_{kh,kw} Σ_j Bl_j[c] · dy[perm_-j(c)]   (scattered from y's pixels)
 *   backward wts   dWl_j[c] += Σ_{n,oh,ow} dy[c] · x[perm_j(c)],  db[c] += Σ dy[c]
 * with the lane weights Wl_j[c] = W[g][o][(o + j) mod k] (c = g·k + o) and
 * Bl_j[c] = Wl_j[perm_-j(c)], rebuilt from the fp32 master weights each forward (a few KB).
 * Weights stay plain (G, k, k, K, K): param_read/write need no reorder.
 *
 * Two implementations of these sums, chosen at build: the AVX-512 kernels ("grouped_conv:
 * avx512", the second half of this file: K = 3, stride 1 or 2, on CPUs with AVX-512) and
 * the generic ones ("grouped_conv:host", GCC vector extensions, any CPU and shape, and the
 * reference the tests hold the fast ones to). docs/GROUPED_CONV.md has the design and the
 * measurements.
 *
 * Generic threads: forward over output rows; backward (data and weights in one pass over
 * dy) over (image, channel block) planes: each thread owns its dx planes (no races) and
 * has its own dW/db accumulators. Both implementations allocate at build only (nothing
 * allocates after finalize).
 *
 * Element types: in bf16 graphs x, y, dy and dx are bf16 nChw16c (the layers around it
 * stay on oneDNN's bf16 kernels, no reorders, half the activation memory); every sum is
 * fp32 inside: a bf16 pixel widens to fp32 exactly (its bits are the fp32's top half),
 * results round to bf16 once, to nearest even (vcvtneps2bf16 where the CPU has
 * avx512_bf16, else the same rounding in integers). Output rows and dx planes are summed in
 * a per-thread fp32 scratch and rounded when complete (dx collects up to K·K taps per
 * pixel: one rounding, not K·K); the AVX-512 backward gathers each dx pixel whole in
 * registers instead, so it needs a row, not a plane. Weights, biases and their gradients are fp32 in every
 * graph (the masters). fp32 graphs run the same code without the conversions. */
#include "nn/conv_grouped.h"

#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* One pixel's 16 channels as a vector: GCC lowers the lane permutations to vpermps on
 * AVX-512 and to shuffles elsewhere; the pixel loops are compiled for both (target_clones,
 * chosen at load time from the CPU's features). Every fp32 pixel here is 64-byte aligned,
 * every bf16 pixel 32-byte.
 * The vector helpers are static and inlined: the psABI note about passing 64-byte vectors
 * without AVX-512 concerns calls across objects, which never happen here. */
#pragma GCC diagnostic ignored "-Wpsabi"
typedef float v16 __attribute__((vector_size(64)));
typedef int v16i __attribute__((vector_size(64)));
typedef unsigned v16u __attribute__((vector_size(64)));
typedef uint16_t v16h __attribute__((vector_size(32))); /* one pixel of bf16 */

#if defined(__clang__)
/* clang (only the fuzz build uses it) refuses 64-byte vector arguments in a "default"
 * clone: there the whole file is compiled for AVX-512, which the fuzzing machine has. */
#pragma clang attribute push(__attribute__((target("avx512f"))), apply_to = function)
#define FKD__CLONES
#define FKD__CLANG_AVX512_PUSHED
#endif

/* Lane permutation by a mask vector: GCC's __builtin_shuffle; clang (the fuzz build) has
 * no variable-mask shuffle builtin, so it gets the plain per-lane definition. */
#if defined(__clang__)
static inline v16 permute16(v16 v, v16i m)
{
    v16 r;
    for (int i = 0; i < 16; i++) r[i] = v[m[i] & 15];
    return r;
}
#else
#define permute16(v, m) __builtin_shuffle((v), (m))
#endif
#ifndef FKD__CLONES
#define FKD__CLONES __attribute__((target_clones("avx512f", "default")))
#endif

/* fp32 → bf16 for n (a multiple of 16) values: src 64-byte, dst 32-byte aligned. */
typedef void (*narrow_fn)(uint16_t *dst, const float *src, size_t n);

struct fkd__grouped {
    int n, cb, h, w, oh, ow, kern, stride, pad, k, threads;
    bool bf16;                  /* x, y, dy, dx bf16 (bf16 graphs), else fp32 */
    fkd_mem *x, *y, *dy, *dx;   /* dy, dx NULL in INFER graphs */
    bool fresh_dx;              /* dx holds nothing to keep: written, not accumulated (a
                                 * temporary, or x's gradient that only this node adds to,
                                 * zero until now) */
    narrow_fn narrow;           /* bf16 graphs: this CPU's fastest rounding */
    float *scratch;             /* bf16 graphs, per thread: an output row, a dx plane (TRAIN) */
    size_t scratch_per_thread;
    const float *weight, *bias; /* plain master copies (bias NULL without one) */
    float *dweight, *dbias;     /* their gradients (TRAIN) */
    float *wl, *bl;             /* lane weights [k][cb][K][K][16], forward and backward-data */
    float *acc;                 /* per thread: dWl [k][cb][K][K][16], then db [cb·16] */
    v16i fmask[8], bmask[8];    /* lane permutations perm_j and perm_-j, j < k */
    size_t acc_per_thread;
    /* The AVX-512 kernels (below; fast_fits and the CPU, chosen at build): */
    bool fast;
    int wst_x, wst_d;           /* staged row widths in pixels: x padded (forward, weights
                                 * pass), dy dilated by the stride and padded (data pass) */
    float *stage;               /* per thread: x ring [K][k][wst_x][16], a row
                                 * [max(OW, W)][16], dy ring [K][k][wst_d][16] (TRAIN) */
    size_t stage_per_thread;
    int chunks;                 /* backward: the images in this many chunks, each (cb, chunk)
                                 * with its own dW, db partial: a thread-count-free sum */
    float *partial;             /* [cb][chunk]: dWl [k][K][K][16], db [16] */
    void (*store_row)(void *dst, const float *row, int n); /* an fp32 row to y or dx */
};

bool fkd__conv_grouped_fits(int in_c, int out_c, int groups)
{
    if (groups < 2 || in_c != out_c || in_c % 16) return false;
    int k = in_c / groups;
    return k == 2 || k == 4 || k == 8;
}

static inline int perm(int c, int j, int k)
{
    return (c & ~(k - 1)) | ((c + j) & (k - 1));
}

static size_t lane_size(const fkd__grouped *c)
{
    return (size_t)c->k * c->cb * c->kern * c->kern * 16;
}

/* Index of lane weight (j, cb, kh, kw, lane 0). */
static size_t lane_at(const fkd__grouped *c, int j, int cb, int kh, int kw)
{
    return ((((size_t)j * c->cb + cb) * c->kern + kh) * c->kern + kw) * 16;
}

/* Index of W[g][o][i][kh][kw] in the plain (G, k, k, K, K) weight for lane (cb, l, j). */
static size_t plain_at(const fkd__grouped *c, int cb, int l, int j, int kh, int kw)
{
    int ch = cb * 16 + l, g = ch / c->k, o = ch % c->k, i = (o + j) % c->k;
    return ((((size_t)g * c->k + o) * c->k + i) * c->kern + kh) * c->kern + kw;
}

static void lane_weights(fkd__grouped *c)
{
    for (int j = 0; j < c->k; j++)
        for (int cb = 0; cb < c->cb; cb++)
            for (int kh = 0; kh < c->kern; kh++)
                for (int kw = 0; kw < c->kern; kw++) {
                    float *wl = c->wl + lane_at(c, j, cb, kh, kw);
                    for (int l = 0; l < 16; l++) wl[l] = c->weight[plain_at(c, cb, l, j, kh, kw)];
                }
    for (int j = 0; j < c->k; j++)
        for (size_t at = 0; at < lane_size(c) / (size_t)c->k; at += 16) {
            const float *wl = c->wl + (size_t)j * (lane_size(c) / c->k) + at;
            float *bl = c->bl + (size_t)j * (lane_size(c) / c->k) + at;
            for (int l = 0; l < 16; l++) bl[l] = wl[perm(l, c->k - j, c->k)];
        }
}


/* Kernel taps [k0, k1) of output position o that fall inside an input of `size`. */
static inline void tap_range(const fkd__grouped *c, int o, int size, int *k0, int *k1)
{
    int first = o * c->stride - c->pad;
    *k0 = first < 0 ? -first : 0;
    *k1 = size - first < c->kern ? size - first : c->kern;
}

/* Offset (in pixels) of the input tap (kh, kw) of output pixel (oh, ow). */
static inline size_t tap_pixel(const fkd__grouped *c, int oh, int ow, int kh, int kw)
{
    return (size_t)(oh * c->stride - c->pad + kh) * c->w + (size_t)(ow * c->stride - c->pad + kw);
}

/* acc += Σ_j wl_j · v[mask_j] with the k lane-weight vectors `stride` floats apart. */
static inline __attribute__((always_inline)) v16 mix(v16 acc, v16 v, const float *wl, size_t stride, int k,
                                                     const v16i *masks)
{
    for (int j = 0; j < k; j++) acc += *(const v16 *)(wl + (size_t)j * stride) * permute16(v, masks[j]);
    return acc;
}

/* Pixel `pix` of an nChw16c buffer, fp32 or bf16 (widened: its bits are the fp32's top half). */
static inline __attribute__((always_inline)) v16 load_pixel(const void *base, size_t pix, bool bf16)
{
    if (bf16) return (v16)(__builtin_convertvector(((const v16h *)base)[pix], v16u) << 16);
    return ((const v16 *)base)[pix];
}

/* fp32 → bf16 rounding to nearest even, NaN kept (quiet): oneDNN's conversion in integers. */
FKD__CLONES static void narrow_int(uint16_t *dst, const float *src, size_t n)
{
    for (size_t i = 0; i < n; i += 16) {
        v16 f = *(const v16 *)(src + i);
        v16u u = (v16u)f, nan = (v16u)(f != f);
        v16u r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
        r = (r & ~nan) | (((u >> 16) | 0x40u) & nan);
        *(v16h *)(dst + i) = __builtin_convertvector(r, v16h);
    }
}

/* The same in one instruction per 16 values (which also flushes denormals to zero). */
__attribute__((target("avx512f,avx512bf16"))) static void narrow_avx512bf16(uint16_t *dst, const float *src, size_t n)
{
    for (size_t i = 0; i < n; i += 16)
        _mm256_store_si256((__m256i *)(dst + i), (__m256i)_mm512_cvtneps_pbh(_mm512_load_ps(src + i)));
}

/* bf16 → fp32 (exact) for n values, aligned as for narrowing. */
FKD__CLONES static void widen(float *dst, const uint16_t *src, size_t n)
{
    for (size_t i = 0; i < n; i += 16) *(v16 *)(dst + i) = load_pixel(src, i / 16, true);
}

/* OpenMP threads for a pass: at most as many as at build (the per-thread buffers). */
static int thread_count(const fkd__grouped *c)
{
    int threads = omp_get_max_threads();
    return threads < c->threads ? threads : c->threads;
}

/* This thread's scratch (bf16 graphs). */
static float *thread_scratch(const fkd__grouped *c)
{
    return c->scratch + (size_t)omp_get_thread_num() * c->scratch_per_thread;
}

/* Output row (n, cb, oh): OW fp32 pixels into yrow. */
static inline __attribute__((always_inline)) void forward_row(const fkd__grouped *c, const void *x, float *yrow, int n,
                                                              int cb, int oh, bool bf16)
{
    size_t stride = lane_size(c) / (size_t)c->k, xp = (size_t)(n * c->cb + cb) * c->h * c->w;
    int kh0, kh1;
    tap_range(c, oh, c->h, &kh0, &kh1);
    for (int ow = 0; ow < c->ow; ow++) {
        v16 acc = {0};
        if (c->bias) acc = *(const v16 *)(c->bias + cb * 16);
        int kw0, kw1;
        tap_range(c, ow, c->w, &kw0, &kw1);
        for (int kh = kh0; kh < kh1; kh++)
            for (int kw = kw0; kw < kw1; kw++)
                acc = mix(acc, load_pixel(x, xp + tap_pixel(c, oh, ow, kh, kw), bf16),
                          c->wl + lane_at(c, 0, cb, kh, kw), stride, c->k, c->fmask);
        *(v16 *)(yrow + (size_t)ow * 16) = acc;
    }
}

FKD__CLONES static void forward_row_f32(const fkd__grouped *c, const void *x, float *yrow, int n, int cb, int oh)
{
    forward_row(c, x, yrow, n, cb, oh, false);
}

FKD__CLONES static void forward_row_bf16(const fkd__grouped *c, const void *x, float *yrow, int n, int cb, int oh)
{
    forward_row(c, x, yrow, n, cb, oh, true);
}

/* (N, C, H, W) → (N, C, OH, OW); bf16 rows are summed in the thread's scratch, then rounded. */
static fkd_status grouped_forward(void *ctx)
{
    fkd__grouped *c = ctx;
    lane_weights(c);
    const void *x = fkd_shim_mem_data(c->x);
    void *y = fkd_shim_mem_data(c->y);
    size_t row = (size_t)c->ow * 16;
    int rows = c->n * c->cb * c->oh;
#pragma omp parallel for schedule(static) num_threads(thread_count(c))
    for (int r = 0; r < rows; r++) {
        int oh = r % c->oh, cb = (r / c->oh) % c->cb, n = r / (c->oh * c->cb);
        if (!c->bf16) {
            forward_row_f32(c, x, (float *)y + (size_t)r * row, n, cb, oh);
            continue;
        }
        float *sum = thread_scratch(c);
        forward_row_bf16(c, x, sum, n, cb, oh);
        c->narrow((uint16_t *)y + (size_t)r * row, sum, row);
    }
    return FKD_OK;
}

/* One (image, channel block) plane of the backward: dx (scattered from each output pixel's
 * taps into dxp, the plane's fp32 sums) and this thread's dW, db lane accumulators, reading
 * dy once. */
static inline __attribute__((always_inline)) void backward_plane(const fkd__grouped *c, const void *x, const void *dy,
                                                                 float *dxp, float *dwl, float *db, int n, int cb,
                                                                 bool bf16)
{
    size_t stride = lane_size(c) / (size_t)c->k, xp = (size_t)(n * c->cb + cb) * c->h * c->w;
    size_t dyp = (size_t)(n * c->cb + cb) * c->oh * c->ow;
    for (int oh = 0, kh0, kh1; oh < c->oh; oh++) {
        tap_range(c, oh, c->h, &kh0, &kh1);
        for (int ow = 0, kw0, kw1; ow < c->ow; ow++) {
            v16 g = load_pixel(dy, dyp + (size_t)oh * c->ow + ow, bf16);
            *(v16 *)(db + cb * 16) += g;
            tap_range(c, ow, c->w, &kw0, &kw1);
            for (int kh = kh0; kh < kh1; kh++)
                for (int kw = kw0; kw < kw1; kw++) {
                    size_t pix = tap_pixel(c, oh, ow, kh, kw), at = lane_at(c, 0, cb, kh, kw);
                    v16 *d = (v16 *)(dxp + pix * 16), v = load_pixel(x, xp + pix, bf16);
                    *d = mix(*d, g, c->bl + at, stride, c->k, c->bmask);
                    for (int j = 0; j < c->k; j++)
                        *(v16 *)(dwl + at + (size_t)j * stride) += g * permute16(v, c->fmask[j]);
                }
        }
    }
}

FKD__CLONES static void backward_plane_f32(const fkd__grouped *c, const void *x, const void *dy, float *dxp,
                                           float *dwl, float *db, int n, int cb)
{
    backward_plane(c, x, dy, dxp, dwl, db, n, cb, false);
}

FKD__CLONES static void backward_plane_bf16(const fkd__grouped *c, const void *x, const void *dy, float *dxp,
                                            float *dwl, float *db, int n, int cb)
{
    backward_plane(c, x, dy, dxp, dwl, db, n, cb, true);
}

/* dW, db += the lane sums in c->acc (dWl [k][cb][K][K][16], then db [cb·16]). */
static void add_lane_grads(fkd__grouped *c)
{
    for (int j = 0; j < c->k; j++)
        for (int cb = 0; cb < c->cb; cb++)
            for (int kh = 0; kh < c->kern; kh++)
                for (int kw = 0; kw < c->kern; kw++) {
                    const float *a = c->acc + lane_at(c, j, cb, kh, kw);
                    for (int l = 0; l < 16; l++) c->dweight[plain_at(c, cb, l, j, kh, kw)] += a[l];
                }
    if (c->dbias)
        for (int ch = 0; ch < c->cb * 16; ch++) c->dbias[ch] += c->acc[lane_size(c) + ch];
}

/* dx (accumulated, or written when fresh), dW += Σ dy · x, db += Σ dy (per-thread lane
 * accumulators, summed after). A bf16 dx plane is summed in the thread's fp32 scratch
 * (from the plane's old values when accumulating) and rounded once. */
static fkd_status grouped_backward(void *ctx)
{
    fkd__grouped *c = ctx;
    const void *x = fkd_shim_mem_data(c->x), *dy = fkd_shim_mem_data(c->dy);
    void *dx = fkd_shim_mem_data(c->dx);
    size_t lanes = lane_size(c), plane = (size_t)c->h * c->w * 16;
    int threads = thread_count(c);
    memset(c->acc, 0, (size_t)threads * c->acc_per_thread * sizeof *c->acc);
    int planes = c->n * c->cb;
#pragma omp parallel num_threads(threads)
    {
        float *dwl = c->acc + (size_t)omp_get_thread_num() * c->acc_per_thread, *db = dwl + lanes;
#pragma omp for schedule(static)
        for (int p = 0; p < planes; p++) {
            if (!c->bf16) {
                float *dxp = (float *)dx + (size_t)p * plane;
                if (c->fresh_dx) memset(dxp, 0, plane * sizeof *dxp);
                backward_plane_f32(c, x, dy, dxp, dwl, db, p / c->cb, p % c->cb);
                continue;
            }
            uint16_t *dxh = (uint16_t *)dx + (size_t)p * plane;
            float *sum = thread_scratch(c);
            if (c->fresh_dx) memset(sum, 0, plane * sizeof *sum);
            else widen(sum, dxh, plane);
            backward_plane_bf16(c, x, dy, sum, dwl, db, p / c->cb, p % c->cb);
            c->narrow(dxh, sum, plane);
        }
    }
    for (int t = 1; t < threads; t++)
        for (size_t i = 0; i < c->acc_per_thread; i++) c->acc[i] += c->acc[(size_t)t * c->acc_per_thread + i];
    add_lane_grads(c);
    return FKD_OK;
}

/* ---- AVX-512 kernels ------------------------------------------------------------------
 * The same sums, register-blocked, for K = 3, stride 1 or 2, padding ≤ 2 (fast_fits), on
 * CPUs with AVX-512 (chosen at build with __builtin_cpu_supports; the code above stays the
 * fallback, and fkd__conv_grouped_force_generic picks it for tests).
 *
 * Staged rows: a thread widens (bf16) and permutes each input row it needs once into a ring
 * of K rows (slot = row mod K), k copies [k][width][16], copy j = P_j(row), with zero
 * pixels where the padding is. Every tap then reads a staged pixel as it is: no bounds
 * checks, no edge path, no permutation per tap (k − 1 per staged pixel instead of
 * K·K·(k − 1) per output pixel).
 *
 * Forward, row (n, cb, oh): y[ow] = b + Σ_kh Σ_j Σ_kw Wl_j[kh][kw] ⊙ X_j[kh][ow·S + kw]
 * (X_j[kh] the staged copy j of input row oh·S − P + kh), ROW_BLOCK output pixels at a time
 * in registers: per (kh, j) the three lane-weight vectors of kw = 0..2 are loaded once and
 * each staged pixel once, feeding the (up to 3) outputs it belongs to.
 * Backward, per (image, channel block) plane, two passes:
 *   data:    dx as a gather, a stride-1 forward of dy dilated by S (zeros between its
 *            pixels and rows; zero rows skipped) with the kernel turned around:
 *              dx[ih][iw] = Σ_kh Σ_j Σ_kw' Bl_j[kh][K−1−kw'] ⊙ D_−j[ih + P − kh][iw + kw']
 *            (D_−j the staged copy of dy's row (ih + P − kh) / S with K − 1 − P leading
 *            zeros), each dx pixel complete in registers: written or added once, rounded
 *            once, no scatter and no fp32 plane;
 *   weights: dWl_j[kh][kw] += Σ_ow dy[ow] ⊙ X_j[kh][ow·S + kw], the 3k sums of a row and kh
 *            in registers (k ≤ 8: 24 of 32), added to the work item's partial per row.
 * The backward's work items are (channel block, chunk of images) with a partial each,
 * summed in a fixed order after: dW does not depend on the thread count. */
#define FKD__AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))
#define FKD__AVX512_INLINE static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512dq,avx512vl")))

enum {
    FAST_KERN = 3,   /* the kernel size the fast path handles */
    ROW_BLOCK = 14,  /* output pixels in registers: 14 sums + 3 weights + 1 pixel of 32 zmm */
    FAST_CHUNKS = 8, /* at most this many image chunks per channel block in the backward */
    PREFETCH_ROWS = 3, /* staging prefetches its source this many rows ahead */
};

static bool force_generic;

void fkd__conv_grouped_force_generic(bool on)
{
    force_generic = on;
}

static bool fast_fits(const fkd__grouped *c)
{
    return !force_generic && c->kern == FAST_KERN && (c->stride == 1 || c->stride == 2) && c->pad >= 0 &&
           c->pad < FAST_KERN && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
}

/* Pixel `pix` of an nChw16c buffer (bf16 pixels 32 bytes, fp32 ones 64). */
static const void *pixels(const void *base, size_t pix, bool bf16)
{
    return (const char *)base + pix * (bf16 ? 32 : 64);
}

FKD__AVX512_INLINE __m512 fast_load(const void *base, size_t pix, bool bf16)
{
    if (bf16)
        return _mm512_castsi512_ps(
            _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_load_si256((const __m256i *)base + pix)), 16));
    return _mm512_load_ps((const float *)base + pix * 16);
}

/* A staged row [k][width][16]: copy j holds P_j(src[i]) at pixel lead + i·dil for the
 * n_src pixels of src (those that land inside the row), zero elsewhere (src permuted by
 * masks[j], dilated by dil, after lead zero pixels). */
FKD__AVX512_INLINE void stage_row(float *out, int width, const void *src, int n_src, int lead, int dil, int k,
                                  const v16i *masks, bool bf16)
{
    __m512i perm[8];
    for (int j = 1; j < k; j++) perm[j] = _mm512_load_si512(&masks[j]);
    int end = lead + (n_src - 1) * dil + 1; /* one past the last src pixel */
    if (end > width) end = width;
    /* the zeros: the padding, and (dilated rows: everything first) the gaps between pixels;
     * plain ranges, no test per pixel (that cost more than the copy) */
    int gaps_from = dil > 1 ? end : lead;
    for (int j = 0; j < k; j++) {
        float *row = out + (size_t)j * width * 16;
        for (int p = 0; p < gaps_from; p++) _mm512_store_ps(row + (size_t)p * 16, _mm512_setzero_ps());
        for (int p = end > gaps_from ? end : gaps_from; p < width; p++) _mm512_store_ps(row + (size_t)p * 16, _mm512_setzero_ps());
    }
    /* src comes from memory a row at a time: ask for the row PREFETCH_ROWS ahead, a cache
     * line per 64 bytes read (hardware prefetchers stop at 4 KB pages, a few rows) */
    size_t pixel_bytes = bf16 ? 32 : 64, ahead = PREFETCH_ROWS * (size_t)n_src * pixel_bytes;
    for (int i = 0, p = lead; p < end; i++, p += dil) {
        if ((i * pixel_bytes) % 64 == 0) _mm_prefetch((const char *)src + ahead + i * pixel_bytes, _MM_HINT_T0);
        __m512 v = fast_load(src, (size_t)i, bf16);
        _mm512_store_ps(out + (size_t)p * 16, v);
        for (int j = 1; j < k; j++) _mm512_store_ps(out + ((size_t)j * width + p) * 16, _mm512_permutexvar_ps(perm[j], v));
    }
}

/* One (kh, j) for B output pixels at stride S (constants once inlined: the loops unroll and
 * acc stays in registers): acc[b] += Σ_kw w[kw] ⊙ row[b·S + kw], each staged pixel read
 * for the (up to 3) outputs it feeds (GCC makes the reads the FMAs' memory operands). */
FKD__AVX512_INLINE void taps_block(__m512 *acc, const float *row, const __m512 *w, int B, int S)
{
#pragma GCC unroll 32
    for (int p = 0; p < (B - 1) * S + FAST_KERN; p++) {
        __m512 v = _mm512_load_ps(row + (size_t)p * 16);
#pragma GCC unroll 3
        for (int kw = 0; kw < FAST_KERN; kw++) {
            int d = p - kw;
            if (d >= 0 && d % S == 0 && d / S < B) acc[d / S] = _mm512_fmadd_ps(w[kw], v, acc[d / S]);
        }
    }
}

/* An output row's taps: `rows` kernel rows, each a staged row (copy j at + j·stage_j) and
 * its lane weights (kw at + kw·weight_kw, j at + j·weight_j; weight_kw = −16 turns the
 * kernel around for the data pass). */
typedef struct {
    int rows, k;
    const float *stage[FAST_KERN], *weight[FAST_KERN];
    size_t stage_j, weight_j;
    ptrdiff_t weight_kw;
} row_taps;

/* out[ow] = (init ? init[ow] : bias) + the taps for ow in [ow, end), B at a time; returns
 * the first ow left (fewer than B). init may be out itself (accumulation). */
FKD__AVX512_INLINE int conv_blocks(float *out, const float *init, __m512 bias, const row_taps *t, int ow, int end,
                                   int B, int S)
{
    for (; ow + B <= end; ow += B) {
        __m512 acc[ROW_BLOCK];
#pragma GCC unroll 16
        for (int b = 0; b < B; b++) acc[b] = init ? _mm512_load_ps(init + (size_t)(ow + b) * 16) : bias;
        for (int r = 0; r < t->rows; r++)
            for (int j = 0; j < t->k; j++) {
                const float *wp = t->weight[r] + (size_t)j * t->weight_j;
                const __m512 w[FAST_KERN] = {_mm512_load_ps(wp), _mm512_load_ps(wp + t->weight_kw),
                                             _mm512_load_ps(wp + 2 * t->weight_kw)};
                taps_block(acc, t->stage[r] + (size_t)j * t->stage_j + (size_t)ow * S * 16, w, B, S);
            }
#pragma GCC unroll 16
        for (int b = 0; b < B; b++) _mm512_store_ps(out + (size_t)(ow + b) * 16, acc[b]);
    }
    return ow;
}

/* A row of n output pixels at stride S: blocks of ROW_BLOCK, the rest in 8, 4, 2, 1. */
FKD__AVX512_INLINE void conv_row(float *out, const float *init, __m512 bias, const row_taps *t, int n, int S)
{
    int ow = conv_blocks(out, init, bias, t, 0, n, ROW_BLOCK, S);
    ow = conv_blocks(out, init, bias, t, ow, n, 8, S);
    ow = conv_blocks(out, init, bias, t, ow, n, 4, S);
    ow = conv_blocks(out, init, bias, t, ow, n, 2, S);
    conv_blocks(out, init, bias, t, ow, n, 1, S);
}

FKD__AVX512 static void conv_row_s1(float *out, const float *init, __m512 bias, const row_taps *t, int n)
{
    conv_row(out, init, bias, t, n, 1);
}

FKD__AVX512 static void conv_row_s2(float *out, const float *init, __m512 bias, const row_taps *t, int n)
{
    conv_row(out, init, bias, t, n, 2);
}

/* dw[j][kw] += Σ_ow dy[ow] ⊙ stage[j][ow·S + kw] over a row of n output pixels (dw's j at
 * + j·dw_j, kw at + kw·16), the 3k sums in registers for the whole row. */
FKD__AVX512_INLINE void weight_row(float *dw, size_t dw_j, const void *dy, const float *stage, size_t stage_j, int n,
                                   int S, int k, bool bf16)
{
    __m512 acc[8][FAST_KERN];
#pragma GCC unroll 8
    for (int j = 0; j < k; j++)
#pragma GCC unroll 3
        for (int kw = 0; kw < FAST_KERN; kw++) acc[j][kw] = _mm512_setzero_ps();
    for (int ow = 0; ow < n; ow++) {
        __m512 d = fast_load(dy, (size_t)ow, bf16);
        const float *st = stage + (size_t)ow * S * 16;
#pragma GCC unroll 8
        for (int j = 0; j < k; j++)
#pragma GCC unroll 3
            for (int kw = 0; kw < FAST_KERN; kw++)
                acc[j][kw] = _mm512_fmadd_ps(d, _mm512_load_ps(st + (size_t)j * stage_j + kw * 16), acc[j][kw]);
    }
#pragma GCC unroll 8
    for (int j = 0; j < k; j++)
#pragma GCC unroll 3
        for (int kw = 0; kw < FAST_KERN; kw++) {
            float *at = dw + (size_t)j * dw_j + kw * 16;
            _mm512_store_ps(at, _mm512_add_ps(_mm512_load_ps(at), acc[j][kw]));
        }
}

/* weight_row with k and the element type as constants (the sums' array in registers). */
FKD__AVX512 static void weight_row_any(float *dw, size_t dw_j, const void *dy, const float *stage, size_t stage_j,
                                       int n, int S, int k, bool bf16)
{
    if (k == 2 && !bf16) weight_row(dw, dw_j, dy, stage, stage_j, n, S, 2, false);
    else if (k == 2) weight_row(dw, dw_j, dy, stage, stage_j, n, S, 2, true);
    else if (k == 4 && !bf16) weight_row(dw, dw_j, dy, stage, stage_j, n, S, 4, false);
    else if (k == 4) weight_row(dw, dw_j, dy, stage, stage_j, n, S, 4, true);
    else if (!bf16) weight_row(dw, dw_j, dy, stage, stage_j, n, S, 8, false);
    else weight_row(dw, dw_j, dy, stage, stage_j, n, S, 8, true);
}

/* A thread's stage: the x ring, an output row, the dy ring (TRAIN). */
static float *stage_out_row(const fkd__grouped *c, float *stage)
{
    return stage + (size_t)FAST_KERN * c->k * c->wst_x * 16;
}

static float *dy_ring(const fkd__grouped *c, float *stage)
{
    return stage_out_row(c, stage) + (size_t)(c->ow > c->w ? c->ow : c->w) * 16;
}

/* Output row oh's kernel rows [kh0, kh1) (inside the input; returns kh0) and their input
 * rows staged in the x ring, from *next (the first row not staged yet in this plane) on;
 * fills t with the rows and the lane weights `lanes`. */
FKD__AVX512_INLINE int stage_x_rows(const fkd__grouped *c, float *stage, const void *xplane, int *next, int oh,
                                     int cb, const float *lanes, row_taps *t)
{
    int kh0, kh1, top = oh * c->stride - c->pad;
    tap_range(c, oh, c->h, &kh0, &kh1);
    size_t slot = (size_t)c->k * c->wst_x * 16;
    for (int ih = *next > top + kh0 ? *next : top + kh0; ih < top + kh1; ih++)
        stage_row(stage + (size_t)(ih % FAST_KERN) * slot, c->wst_x,
                  pixels(xplane, (size_t)ih * c->w, c->bf16), c->w, c->pad, 1, c->k, c->fmask, c->bf16);
    if (top + kh1 > *next) *next = top + kh1;
    *t = (row_taps){.rows = kh1 > kh0 ? kh1 - kh0 : 0, .k = c->k, .stage_j = (size_t)c->wst_x * 16,
                    .weight_j = lane_size(c) / (size_t)c->k, .weight_kw = 16};
    for (int r = 0; r < t->rows; r++) {
        t->stage[r] = stage + (size_t)((top + kh0 + r) % FAST_KERN) * slot;
        t->weight[r] = lanes + lane_at(c, 0, cb, kh0 + r, 0);
    }
    return kh0;
}

FKD__AVX512 static void fast_row(float *out, const float *init, __m512 bias, const row_taps *t, int n, int stride)
{
    if (stride == 1) conv_row_s1(out, init, bias, t, n);
    else conv_row_s2(out, init, bias, t, n);
}

/* A finished fp32 row of n pixels (the thread's scratch) to its place in y or dx, with
 * streaming stores: MobileFaceNet's 51 MB outputs do not stay in cache, and a streaming
 * store skips reading each line before writing it. bf16 rows round to nearest even:
 * vcvtneps2bf16 where the CPU has it, else narrow_int's rounding in integers (NaN kept,
 * quiet). The plane functions end with an sfence (streaming stores are weakly ordered). */
FKD__AVX512 static void store_row_f32(void *dst, const float *row, int n)
{
    for (int i = 0; i < n; i++) _mm512_stream_ps((float *)dst + (size_t)i * 16, _mm512_load_ps(row + (size_t)i * 16));
}

__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16"))) static void
store_row_bf16_hw(void *dst, const float *row, int n)
{
    for (int i = 0; i < n; i++)
        _mm256_stream_si256((__m256i *)dst + i, (__m256i)_mm512_cvtneps_pbh(_mm512_load_ps(row + (size_t)i * 16)));
}

/* CPUs without avx512_bf16: the generic kernels' integer rounding, with plain stores. */
static void store_row_bf16_int(void *dst, const float *row, int n)
{
    narrow_int(dst, row, (size_t)n * 16);
}

/* Forward of plane (n, cb) (x's H×W pixels to y's OH×OW). */
FKD__AVX512 static void fast_forward_plane(const fkd__grouped *c, const void *x, void *y, float *stage, size_t plane,
                                           int cb)
{
    const void *xplane = pixels(x, plane * c->h * c->w, c->bf16);
    float *row = stage_out_row(c, stage);
    __m512 bias = c->bias ? _mm512_load_ps(c->bias + cb * 16) : _mm512_setzero_ps();
    int next = 0;
    for (int oh = 0; oh < c->oh; oh++) {
        row_taps t;
        stage_x_rows(c, stage, xplane, &next, oh, cb, c->wl, &t);
        fast_row(row, NULL, bias, &t, c->ow, c->stride);
        c->store_row((char *)y + (plane * c->oh + oh) * c->ow * (c->bf16 ? 32 : 64), row, c->ow);
    }
    _mm_sfence();
}

static fkd_status fast_forward(void *ctx)
{
    fkd__grouped *c = ctx;
    lane_weights(c);
    const void *x = fkd_shim_mem_data(c->x);
    void *y = fkd_shim_mem_data(c->y);
    int planes = c->n * c->cb;
#pragma omp parallel for schedule(static) num_threads(thread_count(c))
    for (int p = 0; p < planes; p++)
        fast_forward_plane(c, x, y, c->stage + (size_t)omp_get_thread_num() * c->stage_per_thread, (size_t)p,
                           p % c->cb);
    return FKD_OK;
}

/* The data pass of plane (n, cb): dx's rows gathered from dy's staged rows. */
FKD__AVX512 static void fast_data_plane(const fkd__grouped *c, const void *dy, void *dx, float *stage, size_t plane,
                                        int cb)
{
    const void *dyplane = pixels(dy, plane * c->oh * c->ow, c->bf16);
    float *ring = dy_ring(c, stage), *row = stage_out_row(c, stage);
    size_t slot = (size_t)c->k * c->wst_d * 16;
    int next = 0;
    for (int ih = 0; ih < c->h; ih++) {
        /* dy rows reaching ih: oh·S = ih + P − kh for kh < K, inside [0, OH) */
        int last = (ih + c->pad) / c->stride < c->oh ? (ih + c->pad) / c->stride : c->oh - 1;
        for (int oh = next; oh <= last; oh++)
            stage_row(ring + (size_t)(oh % FAST_KERN) * slot, c->wst_d, pixels(dyplane, (size_t)oh * c->ow, c->bf16),
                      c->ow, FAST_KERN - 1 - c->pad, c->stride, c->k, c->bmask, c->bf16);
        if (last + 1 > next) next = last + 1;
        row_taps t = {.k = c->k, .stage_j = (size_t)c->wst_d * 16, .weight_j = lane_size(c) / (size_t)c->k,
                      .weight_kw = -16};
        for (int kh = 0; kh < FAST_KERN; kh++) {
            int d = ih + c->pad - kh;
            if (d < 0 || d % c->stride || d / c->stride >= c->oh) continue;
            t.stage[t.rows] = ring + (size_t)(d / c->stride % FAST_KERN) * slot;
            t.weight[t.rows++] = c->bl + lane_at(c, 0, cb, kh, FAST_KERN - 1);
        }
        void *out = (char *)dx + ((plane * c->h + ih) * c->w) * (c->bf16 ? 32 : 64); /* dx's row */
        if (!c->fresh_dx) /* the sums start from dx's values */
            for (int iw = 0; iw < c->w; iw++) _mm512_store_ps(row + (size_t)iw * 16, fast_load(out, (size_t)iw, c->bf16));
        fast_row(row, c->fresh_dx ? NULL : row, _mm512_setzero_ps(), &t, c->w, 1);
        c->store_row(out, row, c->w);
    }
    _mm_sfence();
}

/* The weights pass of plane (n, cb): part (dWl [k][K][K][16], db [16]) += its sums. */
FKD__AVX512 static void fast_weights_plane(const fkd__grouped *c, const void *x, const void *dy, float *stage,
                                           float *part, size_t plane, int cb)
{
    const void *xplane = pixels(x, plane * c->h * c->w, c->bf16);
    const size_t part_j = (size_t)FAST_KERN * FAST_KERN * 16;
    float *db = part + (size_t)c->k * part_j;
    int next = 0;
    for (int oh = 0; oh < c->oh; oh++) {
        row_taps t;
        int kh0 = stage_x_rows(c, stage, xplane, &next, oh, cb, c->wl, &t);
        const void *dyrow = pixels(dy, (plane * c->oh + oh) * c->ow, c->bf16);
        __m512 even = _mm512_load_ps(db), odd = _mm512_setzero_ps(); /* two chains of adds */
        int ow = 0;
        for (; ow + 1 < c->ow; ow += 2) {
            even = _mm512_add_ps(even, fast_load(dyrow, (size_t)ow, c->bf16));
            odd = _mm512_add_ps(odd, fast_load(dyrow, (size_t)ow + 1, c->bf16));
        }
        if (ow < c->ow) even = _mm512_add_ps(even, fast_load(dyrow, (size_t)ow, c->bf16));
        _mm512_store_ps(db, _mm512_add_ps(even, odd));
        for (int r = 0; r < t.rows; r++)
            weight_row_any(part + (size_t)(kh0 + r) * FAST_KERN * 16, part_j, dyrow, t.stage[r], t.stage_j, c->ow,
                           c->stride, c->k, c->bf16);
    }
}

/* Work item (cb, chunk): for each image of the chunk the data pass, then the weights pass
 * (dy's plane still in cache), into the item's partial. */
static void fast_backward_item(const fkd__grouped *c, const void *x, const void *dy, void *dx, float *stage, int item)
{
    int cb = item / c->chunks, chunk = item % c->chunks;
    size_t part_size = (size_t)c->k * FAST_KERN * FAST_KERN * 16 + 16;
    float *part = c->partial + (size_t)item * part_size;
    memset(part, 0, part_size * sizeof *part);
    for (int n = chunk * c->n / c->chunks; n < (chunk + 1) * c->n / c->chunks; n++) {
        size_t plane = (size_t)n * c->cb + cb;
        fast_data_plane(c, dy, dx, stage, plane, cb);
        fast_weights_plane(c, x, dy, stage, part, plane, cb);
    }
}

/* dx (written when fresh, else added to), dW, db += the partials summed in item order. */
static fkd_status fast_backward(void *ctx)
{
    fkd__grouped *c = ctx;
    const void *x = fkd_shim_mem_data(c->x), *dy = fkd_shim_mem_data(c->dy);
    void *dx = fkd_shim_mem_data(c->dx);
    int items = c->cb * c->chunks;
#pragma omp parallel for schedule(static) num_threads(thread_count(c))
    for (int i = 0; i < items; i++)
        fast_backward_item(c, x, dy, dx, c->stage + (size_t)omp_get_thread_num() * c->stage_per_thread, i);
    size_t part_size = (size_t)c->k * FAST_KERN * FAST_KERN * 16 + 16, taps = (size_t)FAST_KERN * FAST_KERN * 16;
    memset(c->acc, 0, c->acc_per_thread * sizeof *c->acc);
    for (int cb = 0; cb < c->cb; cb++)
        for (int chunk = 0; chunk < c->chunks; chunk++) {
            const float *part = c->partial + ((size_t)cb * c->chunks + chunk) * part_size;
            for (int j = 0; j < c->k; j++)
                for (size_t i = 0; i < taps; i++) c->acc[lane_at(c, j, cb, 0, 0) + i] += part[(size_t)j * taps + i];
            for (int l = 0; l < 16; l++) c->acc[lane_size(c) + (size_t)cb * 16 + l] += part[(size_t)c->k * taps + l];
        }
    add_lane_grads(c);
    return FKD_OK;
}

void fkd__conv_grouped_free(fkd__grouped *c)
{
    if (!c) return;
    free(c->wl);
    free(c->bl);
    free(c->acc);
    free(c->scratch);
    free(c->stage);
    free(c->partial);
    free(c);
}

fkd_status fkd__conv_grouped_build(fkd_graph *g, fkd__node *n, int kernel, int stride, int padding,
                                   int groups, fkd__grouped **out)
{
    const fkd__value *xv = &g->values[n->inputs[0]], *yv = &g->values[n->output];
    int w = n->first_param, b = n->n_params == 2 ? w + 1 : -1;
    fkd__grouped *c = aligned_alloc(64, (sizeof *c + 63) / 64 * 64); /* the masks are vectors */
    if (!c) return FKD_FAIL(FKD_ERR_NOMEM, "grouped conv: out of memory");
    *out = c;
    *c = (fkd__grouped){.n = (int)xv->dims[0], .cb = (int)xv->dims[1] / 16, .h = (int)xv->dims[2],
                        .w = (int)xv->dims[3], .oh = (int)yv->dims[2], .ow = (int)yv->dims[3],
                        .kern = kernel, .stride = stride, .pad = padding,
                        .k = (int)xv->dims[1] / groups, .threads = omp_get_max_threads(),
                        .bf16 = g->dtype == FKD_DT_BF16};
    c->acc_per_thread = lane_size(c) + (size_t)c->cb * 16;
    bool train = g->cfg.mode == FKD_GRAPH_TRAIN;
    size_t row = (size_t)c->ow * 16, plane = (size_t)c->h * c->w * 16;
    c->fast = fast_fits(c);
    if (c->fast) {
        c->wst_x = (c->ow - 1) * c->stride + FAST_KERN;
        c->wst_d = c->w + FAST_KERN - 1;
        size_t rows = (size_t)FAST_KERN * c->k * 16, out_row = (size_t)(c->ow > c->w ? c->ow : c->w) * 16;
        c->stage_per_thread = rows * (size_t)(c->wst_x + (train ? c->wst_d : 0)) + out_row;
        c->chunks = c->n < FAST_CHUNKS ? c->n : FAST_CHUNKS;
        c->store_row = !c->bf16 ? store_row_f32
                       : __builtin_cpu_supports("avx512bf16") ? store_row_bf16_hw
                                                               : store_row_bf16_int;
    } else {
        c->scratch_per_thread = train && plane > row ? plane : row;
    }
    c->narrow = __builtin_cpu_supports("avx512bf16") ? narrow_avx512bf16 : narrow_int;
    for (int j = 0; j < c->k; j++)
        for (int l = 0; l < 16; l++) {
            c->fmask[j][l] = perm(l, j, c->k);
            c->bmask[j][l] = perm(l, c->k - j, c->k);
        }
    c->wl = aligned_alloc(64, lane_size(c) * sizeof *c->wl);
    c->bl = aligned_alloc(64, lane_size(c) * sizeof *c->bl);
    if (c->fast) {
        size_t parts = (size_t)c->cb * c->chunks * ((size_t)c->k * FAST_KERN * FAST_KERN * 16 + 16);
        c->stage = aligned_alloc(64, (size_t)c->threads * c->stage_per_thread * sizeof *c->stage);
        if (train) c->acc = aligned_alloc(64, c->acc_per_thread * sizeof *c->acc); /* the partials' sum */
        if (train) c->partial = aligned_alloc(64, parts * sizeof *c->partial);
        if (!c->stage || (train && (!c->acc || !c->partial))) return FKD_FAIL(FKD_ERR_NOMEM, "grouped conv: out of memory");
    } else {
        if (train) c->acc = aligned_alloc(64, (size_t)c->threads * c->acc_per_thread * sizeof *c->acc);
        if (c->bf16) c->scratch = aligned_alloc(64, (size_t)c->threads * c->scratch_per_thread * sizeof *c->scratch);
        if ((train && !c->acc) || (c->bf16 && !c->scratch)) return FKD_FAIL(FKD_ERR_NOMEM, "grouped conv: out of memory");
    }
    if (!c->wl || !c->bl) return FKD_FAIL(FKD_ERR_NOMEM, "grouped conv: out of memory");

    const fkd_md *blocked, *w_plain, *b_plain;
    const int64_t wdims[5] = {groups, c->k, c->k, kernel, kernel}, bdims[1] = {yv->dims[1]};
    FKD_TRY(fkd_shim_md_blocked16(g->shim, &blocked, yv->dims, g->dtype));
    FKD_TRY(fkd_shim_md_plain(g->shim, &w_plain, 5, wdims, FKD_DT_F32));
    FKD_TRY(fkd__value_alloc(g, n->output, blocked));
    FKD_TRY(fkd__param_alloc(g, w, w_plain, w_plain));
    c->weight = g->params[w].data;
    c->dweight = g->params[w].grad;
    if (b >= 0) {
        FKD_TRY(fkd_shim_md_plain(g->shim, &b_plain, 1, bdims, FKD_DT_F32));
        FKD_TRY(fkd__param_alloc(g, b, b_plain, NULL));
        c->bias = g->params[b].data;
        c->dbias = g->params[b].grad;
    }
    if (n->fold_bn >= 0) { /* the next batch norm folded in (fuse.c): W', b' instead */
        fkd_mem *wf, *bf;
        FKD_TRY(fkd__fold_build(g, n, w_plain, NULL, &wf, &bf));
        c->weight = fkd_shim_mem_data(wf);
        c->bias = fkd_shim_mem_data(bf);
    }
    const fkd_md *x_blocked;
    FKD_TRY(fkd_shim_md_blocked16(g->shim, &x_blocked, xv->dims, g->dtype));
    FKD_TRY(fkd__value_as(g, &n->fwd, n->inputs[0], x_blocked, &c->x));
    c->y = g->values[n->output].data;
    if (c->fast) FKD_TRY(fkd__steps_add_host(&n->fwd, fast_forward, c, "grouped_conv:avx512"));
    else FKD_TRY(fkd__steps_add_host(&n->fwd, grouped_forward, c, "grouped_conv:host"));
    if (!train) return FKD_OK;

    c->dy = g->values[n->output].grad;
    const fkd__value *x = &g->values[n->inputs[0]];
    if (fkd_shim_md_equal(fkd_shim_mem_md(x->grad), x_blocked)) {
        c->dx = x->grad;
        /* A shared gradient is zero until its consumers' backward (graph.c clears each
         * consumed one): with no other consumer this node writes it. */
        c->fresh_dx = x->consumers == 1 && x->grad_shared;
    } else {
        c->fresh_dx = true;
        FKD_TRY(fkd__bwd_temp(g, n, x_blocked, &c->dx));
    }
    if (c->fast) FKD_TRY(fkd__steps_add_host(&n->bwd, fast_backward, c, "grouped_conv_bwd:avx512"));
    else FKD_TRY(fkd__steps_add_host(&n->bwd, grouped_backward, c, "grouped_conv_bwd:host"));
    return c->dx != x->grad ? fkd__accumulate(g, &n->bwd, c->dx, x->grad) : FKD_OK;
}

#ifdef FKD__CLANG_AVX512_PUSHED
#pragma clang attribute pop
#endif
