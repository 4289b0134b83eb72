/* Batch norm + PReLU passes on nChw16c data (bnact.h), AVX-512 only: a CPU without it
 * never gets here (fkd__bnact_available; the graph keeps oneDNN's two ops).
 *
 * Threads: the apply passes over (image, channel block) planes, the reductions over
 * channel blocks (each block's sums in one thread, images in order).
 * Per pixel (16 channels) the forward is ~15 instructions: memory bound on two cores. GCC's
 * generic vector code took ~37 here (bf16 widening and narrowing in 256-bit halves), so the
 * loops are written with intrinsics. */
#include "nn/bnact.h"

#include <immintrin.h>
#include <math.h>

#define AVX512 __attribute__((target("avx512f")))
#define INLINE_AVX512 static inline __attribute__((always_inline, target("avx512f")))

bool fkd__bnact_available(void)
{
    return __builtin_cpu_supports("avx512f");
}

/* Pixel `pix` of an nChw16c buffer, fp32 or bf16 (widened exactly: a bf16's bits are the
 * top half of the fp32's). */
INLINE_AVX512 __m512 load_pixel(const void *base, size_t pix, bool bf16)
{
    if (bf16) {
        __m512i h = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)base + pix));
        return _mm512_castsi512_ps(_mm512_slli_epi32(h, 16));
    }
    return _mm512_loadu_ps((const float *)base + pix * 16);
}

/* Stores v as pixel `pix`; bf16 rounds to nearest even and keeps NaN (quiet), as oneDNN's
 * conversion does. */
INLINE_AVX512 void store_pixel(void *base, size_t pix, __m512 v, bool bf16)
{
    if (!bf16) {
        _mm512_storeu_ps((float *)base + pix * 16, v);
        return;
    }
    __m512i u = _mm512_castps_si512(v), hi = _mm512_srli_epi32(u, 16);
    __m512i odd = _mm512_and_si512(hi, _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), odd), 16);
    __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(hi, _mm512_set1_epi32(0x40)));
    _mm256_storeu_si256((__m256i *)base + pix, _mm512_cvtepi32_epi16(r));
}

/* One channel block's per-lane constants. */
typedef struct {
    __m512 mean, inv, gamma, beta, alpha;
} lanes;

INLINE_AVX512 lanes block_lanes(const fkd__bnact_params *p, int64_t cb)
{
    float inv[16];
    for (int i = 0; i < 16; i++) inv[i] = 1.0f / sqrtf(p->var[cb * 16 + i] + p->eps);
    return (lanes){.mean = _mm512_loadu_ps(p->mean + cb * 16), .inv = _mm512_loadu_ps(inv),
                   .gamma = _mm512_loadu_ps(p->gamma + cb * 16), .beta = _mm512_loadu_ps(p->beta + cb * 16),
                   .alpha = _mm512_loadu_ps(p->alpha + cb * 16)};
}

/* x̂ and z = γ x̂ + β of one pixel. */
INLINE_AVX512 __m512 normalized(const lanes *l, __m512 x)
{
    return _mm512_mul_ps(_mm512_sub_ps(x, l->mean), l->inv);
}

INLINE_AVX512 __m512 affine(const lanes *l, __m512 xh)
{
    return _mm512_fmadd_ps(xh, l->gamma, l->beta);
}

/* The lanes where z ≤ 0 (PReLU's slope α applies). */
INLINE_AVX512 __mmask16 negative(__m512 z)
{
    return _mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_LE_OQ);
}

/* ---- statistics --------------------------------------------------------------------------- */

/* Σ (x − k), Σ (x − k)² over a plane of hw pixels from pixel p0 (four accumulators: one
 * would be bound by the adds' latency). */
INLINE_AVX512 void stats_body(const void *x, size_t p0, int64_t hw, bool bf16, __m512 k, float *sum, float *sq)
{
    __m512 s[4], q[4];
    for (int j = 0; j < 4; j++) s[j] = q[j] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 4 <= hw; i += 4)
        for (int j = 0; j < 4; j++) {
            __m512 d = _mm512_sub_ps(load_pixel(x, p0 + (size_t)(i + j), bf16), k);
            s[j] = _mm512_add_ps(s[j], d);
            q[j] = _mm512_fmadd_ps(d, d, q[j]);
        }
    for (; i < hw; i++) {
        __m512 d = _mm512_sub_ps(load_pixel(x, p0 + (size_t)i, bf16), k);
        s[0] = _mm512_add_ps(s[0], d);
        q[0] = _mm512_fmadd_ps(d, d, q[0]);
    }
    _mm512_storeu_ps(sum, _mm512_add_ps(_mm512_add_ps(s[0], s[1]), _mm512_add_ps(s[2], s[3])));
    _mm512_storeu_ps(sq, _mm512_add_ps(_mm512_add_ps(q[0], q[1]), _mm512_add_ps(q[2], q[3])));
}

/* Each entry point below calls its always-inline body with a constant bf16: one loop per
 * element type, no test per pixel. */
AVX512 static void plane_stats(const void *x, size_t p0, int64_t hw, bool bf16, const float *k, float *sum, float *sq)
{
    if (bf16)
        stats_body(x, p0, hw, true, _mm512_loadu_ps(k), sum, sq);
    else
        stats_body(x, p0, hw, false, _mm512_loadu_ps(k), sum, sq);
}

AVX512 static void first_pixel(const void *x, size_t pix, bool bf16, float *out)
{
    _mm512_storeu_ps(out, load_pixel(x, pix, bf16));
}

void fkd__bnact_stats(const fkd__bnact_shape *s, const void *x, float *mean, float *var)
{
    int64_t blocks = s->c / 16, m = s->n * s->hw;
#pragma omp parallel for schedule(static)
    for (int64_t cb = 0; cb < blocks; cb++) {
        float k[16], sum[16], sq[16];
        double s1[16] = {0}, s2[16] = {0};
        first_pixel(x, (size_t)(cb * s->hw), s->bf16, k);
        for (int64_t n = 0; n < s->n; n++) {
            plane_stats(x, (size_t)((n * blocks + cb) * s->hw), s->hw, s->bf16, k, sum, sq);
            for (int i = 0; i < 16; i++) {
                s1[i] += sum[i];
                s2[i] += sq[i];
            }
        }
        for (int i = 0; i < 16; i++) {
            double d = s1[i] / (double)m, v = s2[i] / (double)m - d * d;
            mean[cb * 16 + i] = (float)(k[i] + d);
            var[cb * 16 + i] = (float)(v > 0 ? v : 0);
        }
    }
}

/* ---- forward ------------------------------------------------------------------------------ */

INLINE_AVX512 void forward_body(const fkd__bnact_params *p, int64_t cb, const void *x, void *y, size_t p0,
                                int64_t hw, bool bf16)
{
    lanes l = block_lanes(p, cb);
    for (int64_t i = 0; i < hw; i++) {
        size_t px = p0 + (size_t)i;
        __m512 z = affine(&l, normalized(&l, load_pixel(x, px, bf16)));
        store_pixel(y, px, _mm512_mask_mul_ps(z, negative(z), z, l.alpha), bf16);
    }
}

AVX512 static void plane_forward(const fkd__bnact_params *p, int64_t cb, const void *x, void *y, size_t p0,
                                 int64_t hw, bool bf16)
{
    if (bf16)
        forward_body(p, cb, x, y, p0, hw, true);
    else
        forward_body(p, cb, x, y, p0, hw, false);
}

void fkd__bnact_forward(const fkd__bnact_shape *s, const fkd__bnact_params *p, const void *x, void *y)
{
    int64_t blocks = s->c / 16;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < s->n; n++)
        for (int64_t cb = 0; cb < blocks; cb++)
            plane_forward(p, cb, x, y, (size_t)((n * blocks + cb) * s->hw), s->hw, s->bf16);
}

/* ---- backward ----------------------------------------------------------------------------- */

/* Σ dz, Σ dz x̂, Σ_{z ≤ 0} dy z over one plane, added to out[0..48). */
INLINE_AVX512 void sums_body(const lanes *l, const void *x, const void *dy, size_t p0, int64_t hw, bool bf16,
                             float *out)
{
    __m512 a = _mm512_setzero_ps(), b = a, c = a;
    for (int64_t i = 0; i < hw; i++) {
        size_t px = p0 + (size_t)i;
        __m512 xh = normalized(l, load_pixel(x, px, bf16)), g = load_pixel(dy, px, bf16);
        __m512 z = affine(l, xh);
        __mmask16 neg = negative(z);
        __m512 dz = _mm512_mask_mul_ps(g, neg, g, l->alpha);
        a = _mm512_add_ps(a, dz);
        b = _mm512_fmadd_ps(dz, xh, b);
        c = _mm512_mask3_fmadd_ps(g, z, c, neg);
    }
    _mm512_storeu_ps(out, a);
    _mm512_storeu_ps(out + 16, b);
    _mm512_storeu_ps(out + 32, c);
}

AVX512 static void plane_sums(const fkd__bnact_params *p, int64_t cb, const void *x, const void *dy, size_t p0,
                              int64_t hw, bool bf16, float *out)
{
    lanes l = block_lanes(p, cb);
    if (bf16)
        sums_body(&l, x, dy, p0, hw, true, out);
    else
        sums_body(&l, x, dy, p0, hw, false, out);
}

void fkd__bnact_backward_sums(const fkd__bnact_shape *s, const fkd__bnact_params *p, const void *x,
                              const void *dy, double *sums)
{
    int64_t blocks = s->c / 16, c = s->c;
#pragma omp parallel for schedule(static)
    for (int64_t cb = 0; cb < blocks; cb++) {
        double acc[48] = {0};
        float part[48];
        for (int64_t n = 0; n < s->n; n++) {
            plane_sums(p, cb, x, dy, (size_t)((n * blocks + cb) * s->hw), s->hw, s->bf16, part);
            for (int i = 0; i < 48; i++) acc[i] += part[i];
        }
        for (int k = 0; k < 3; k++)
            for (int i = 0; i < 16; i++) sums[k * c + cb * 16 + i] = acc[k * 16 + i];
    }
}

INLINE_AVX512 void dx_body(const fkd__bnact_params *p, int64_t cb, const void *x, const void *dy, void *dx,
                           size_t p0, int64_t hw, bool bf16, const float *mean_dz, const float *mean_dzx)
{
    lanes l = block_lanes(p, cb);
    __m512 scale = _mm512_mul_ps(l.gamma, l.inv);
    __m512 mdz = _mm512_loadu_ps(mean_dz + cb * 16), mdzx = _mm512_loadu_ps(mean_dzx + cb * 16);
    for (int64_t i = 0; i < hw; i++) {
        size_t px = p0 + (size_t)i;
        __m512 xh = normalized(&l, load_pixel(x, px, bf16)), g = load_pixel(dy, px, bf16);
        __m512 dz = _mm512_mask_mul_ps(g, negative(affine(&l, xh)), g, l.alpha);
        /* γ/σ (dz − mean_dz − x̂ mean_dzx) */
        __m512 d = _mm512_fnmadd_ps(xh, mdzx, _mm512_sub_ps(dz, mdz));
        store_pixel(dx, px, _mm512_mul_ps(scale, d), bf16);
    }
}

AVX512 static void plane_dx(const fkd__bnact_params *p, int64_t cb, const void *x, const void *dy, void *dx,
                            size_t p0, int64_t hw, bool bf16, const float *mean_dz, const float *mean_dzx)
{
    if (bf16)
        dx_body(p, cb, x, dy, dx, p0, hw, true, mean_dz, mean_dzx);
    else
        dx_body(p, cb, x, dy, dx, p0, hw, false, mean_dz, mean_dzx);
}

void fkd__bnact_backward_dx(const fkd__bnact_shape *s, const fkd__bnact_params *p, const void *x,
                            const void *dy, const float *mean_dz, const float *mean_dzx, void *dx)
{
    int64_t blocks = s->c / 16;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < s->n; n++)
        for (int64_t cb = 0; cb < blocks; cb++)
            plane_dx(p, cb, x, dy, dx, (size_t)((n * blocks + cb) * s->hw), s->hw, s->bf16, mean_dz, mean_dzx);
}
