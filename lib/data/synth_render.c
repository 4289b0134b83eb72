/* Rendering a synthetic face: a 2.5-D model rasterised with analytic anti-aliasing.
 *
 * The head is an ellipsoid (A, B, C semi-axes, pixels) rotated by yaw, pitch and roll and
 * projected orthographically; a 2-D warp below the head centre narrows the jaw and sets
 * the chin length. Skin, hair cap, beard and freckles are shaded per pixel by casting the
 * pixel's ray onto the ellipsoid (exact, one quadratic), which also gives the surface
 * normal for Lambert lighting and the head-space point that decides hair / beard / skin.
 * Facial features sit at (longitude, latitude) on the ellipsoid: their projected
 * positions move and foreshorten with pose, and a feature whose rotated normal faces away
 * is hidden. Features are ellipses and parabolic strokes whose coverage comes from the
 * signed distance to their edge (clamp(0.5 - d)), so edges are anti-aliased without
 * supersampling. Pixel (x, y) covers [x, x+1) x [y, y+1); its centre is (x+0.5, y+0.5).
 *
 * Canvas: (112, 112, 3) floats in [0, 1], linear-ish sRGB values.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "data/synth.h"

#define S FKD_SYNTH_SIZE
#define DEG ((float)M_PI / 180.0f)

typedef struct {
    float px[S * S * 3];
} canvas;

static inline float maxf(float a, float b)
{
    return a > b ? a : b;
}

static inline float minf(float a, float b)
{
    return a < b ? a : b;
}

/* Written as two selects so the compiler emits maxss/minss, not branches (coverage and
 * noisy pixels make branches unpredictable). */
static inline float clampf(float x, float lo, float hi)
{
    x = x > lo ? x : lo;
    return x < hi ? x : hi;
}

static inline float lerpf(float a, float b, float t)
{
    return a + (b - a) * t;
}

static inline float smooth01(float x)
{
    x = clampf(x, 0, 1);
    return x * x * (3 - 2 * x);
}

/* Maps a z-unit parameter to [lo, hi] through a logistic, so +-3 sigma stays inside. */
static inline float pmap(const float *z, int i, float lo, float hi)
{
    return lo + (hi - lo) / (1.0f + expf(-1.2f * z[i]));
}

static inline void blend(float *p, const float c[3], float a)
{
    p[0] += a * (c[0] - p[0]);
    p[1] += a * (c[1] - p[1]);
    p[2] += a * (c[2] - p[2]);
}

static inline uint32_t hash32(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

/* Per-pixel texture noise reads a fixed 256x256 table of hashes (filled once) at an
 * offset chosen by the salt: a table lookup instead of two hashes per pixel. */
static uint8_t noise_table[256 * 256];
static pthread_once_t noise_once = PTHREAD_ONCE_INIT;

/* Triangular sensor noise, read as one contiguous window per image. */
#define TRI_NOISE_LEN (1 << 17)
static int16_t tri_noise[TRI_NOISE_LEN];

static void noise_table_fill(void)
{
    for (uint32_t i = 0; i < 256 * 256; i++) noise_table[i] = (uint8_t)(hash32(i * 0x9E3779B1U + 0x5bd1e995U) >> 24);
    for (uint32_t i = 0; i < TRI_NOISE_LEN; i++)
        tri_noise[i] = (int16_t)((int)(hash32(i ^ 0xA511E9B3U) >> 24) + (int)(hash32(i + 0x3C6EF372U) >> 24) - 255);
}

/* Uniform [0, 1) noise at integer cell (a, b) for a salt. */
static inline float cell_noise(int32_t a, int32_t b, uint32_t salt)
{
    uint32_t h = hash32(salt);
    uint32_t x = ((uint32_t)a + h) & 255, y = ((uint32_t)b + (h >> 8)) & 255;
    return noise_table[y * 256 + x] * (1.0f / 256.0f);
}

static inline int lo_pix(float v)
{
    int i = (int)floorf(v);
    return i < 0 ? 0 : i > S ? S : i;
}

static inline int hi_pix(float v)
{
    int i = (int)ceilf(v);
    return i < 0 ? 0 : i > S ? S : i;
}

/* ---------------------------------------------------------------- 2-D primitives */

typedef struct {
    float cx, cy, rx, ry, angle;
    float ring;  /* > 0: only a band this many pixels wide inside the edge */
    float shade; /* colour multiplied by 1 + shade * v (v = -1 top .. 1 bottom) */
} ellipse;

/* Anti-aliased coverage of an ellipse at a point in its local unit frame (u, v), given the
 * radii: signed distance ~ (f - 1) / |grad f| with f = u^2 + v^2. */
static inline float ellipse_cover(float u, float v, float rx, float ry)
{
    float f = u * u + v * v;
    float gx = u / rx, gy = v / ry;
    float g = 2.0f * sqrtf(gx * gx + gy * gy);
    if (g < 1e-6f) return 1.0f;
    return clampf(0.5f - (f - 1.0f) / g, 0, 1);
}

/* Roots of p x^2 + q x + r = t (p > 0) as a pixel-index span [*x0, *x1) of centres
 * x + 0.5 - cx inside; false when empty. */
static bool quad_span(float p, float q, float r, float t, float cx, int *x0, int *x1)
{
    float disc = q * q - 4 * p * (r - t);
    if (disc <= 0) return false;
    float sq = sqrtf(disc), lo = (-q - sq) / (2 * p), hi = (-q + sq) / (2 * p);
    *x0 = (int)ceilf(cx + lo - 0.5f);
    *x1 = (int)floorf(cx + hi - 0.5f) + 1;
    if (*x0 < 0) *x0 = 0;
    if (*x1 > S) *x1 = S;
    return *x0 < *x1;
}

static void draw_ellipse(canvas *c, const ellipse *e, const float col[3], float alpha)
{
    if (alpha <= 0 || e->rx <= 0.05f || e->ry <= 0.05f) return;
    float cs = cosf(e->angle), sn = sinf(e->angle);
    float by = sqrtf(e->rx * e->rx * sn * sn + e->ry * e->ry * cs * cs) + 1.5f;
    int y0 = lo_pix(e->cy - by), y1 = hi_pix(e->cy + by);
    float irx = 1.0f / e->rx, iry = 1.0f / e->ry;
    float irx2 = e->ring > 0 ? 1.0f / maxf(e->rx - e->ring, 0.3f) : 0;
    float iry2 = e->ring > 0 ? 1.0f / maxf(e->ry - e->ring, 0.3f) : 0;
    /* Per row f(dx) = u^2 + v^2 is a quadratic in dx: its level sets give the span worth
     * visiting (the fringe, f <= f_out) and the solid middle (f <= f_in, coverage 1). */
    float rmin = minf(e->rx, e->ry);
    float f_out = (1.0f + 2.0f / rmin) * (1.0f + 2.0f / rmin);
    float s_in = 1.0f - 0.75f / rmin;
    float f_in = e->ring > 0 || s_in <= 0 ? -1.0f : s_in * s_in;
    float a1 = cs * irx, b1 = -sn * iry;
    float p2 = a1 * a1 + b1 * b1;
    for (int y = y0; y < y1; y++) {
        float dy = y + 0.5f - e->cy;
        float a0 = dy * sn * irx, b0 = dy * cs * iry;
        float q = 2 * (a1 * a0 + b1 * b0), r = a0 * a0 + b0 * b0;
        int x0, x1, i0 = 0, i1 = 0;
        if (!quad_span(p2, q, r, f_out, e->cx, &x0, &x1)) continue;
        if (f_in > 0 && !quad_span(p2, q, r, f_in, e->cx, &i0, &i1)) i0 = i1 = 0;
        for (int x = x0; x < x1; x++) {
            float dx = x + 0.5f - e->cx;
            float lx = dx * cs + dy * sn, ly = -dx * sn + dy * cs;
            float u = lx * irx, v = ly * iry;
            float cov = x >= i0 && x < i1 ? 1.0f : ellipse_cover(u, v, e->rx, e->ry);
            if (cov <= 0) continue;
            if (e->ring > 0) cov *= 1.0f - ellipse_cover(lx * irx2, ly * iry2, 1.0f / irx2, 1.0f / iry2);
            float a = cov * alpha;
            if (a <= 0) continue;
            float *p = &c->px[(y * S + x) * 3];
            if (e->shade != 0) {
                float m = 1.0f + e->shade * v;
                float sc[3] = {col[0] * m, col[1] * m, col[2] * m};
                blend(p, sc, a);
            } else {
                blend(p, col, a);
            }
        }
    }
}

/* A thick parabolic stroke: in its frame (origin at the centre, x along `angle`),
 * the curve y = k x^2 for |x| <= half_len, half-thickness t tapering by `taper` at the
 * ends. Distance to the curve ~ |y - k x^2| / sqrt(1 + (2 k x)^2). */
typedef struct {
    float cx, cy, angle, half_len, k, t, taper;
} stroke;

static void draw_stroke(canvas *c, const stroke *s, const float col[3], float alpha)
{
    if (alpha <= 0 || s->half_len <= 0.05f || s->t <= 0.02f) return;
    float cs = cosf(s->angle), sn = sinf(s->angle);
    float bend = fabsf(s->k) * s->half_len * s->half_len;
    /* bounding box of the rotated rectangle holding the curve and its fringe */
    float ex = s->half_len + 1.5f, ey = s->t + bend + 1.5f;
    float bx = fabsf(cs) * ex + fabsf(sn) * ey, by = fabsf(sn) * ex + fabsf(cs) * ey;
    int x0 = lo_pix(s->cx - bx), x1 = hi_pix(s->cx + bx), y0 = lo_pix(s->cy - by), y1 = hi_pix(s->cy + by);
    float reach_y = s->t + 1.0f;
    float inv_l = 1.0f / s->half_len;
    for (int y = y0; y < y1; y++) {
        float dy = y + 0.5f - s->cy;
        for (int x = x0; x < x1; x++) {
            float dx = x + 0.5f - s->cx;
            float lx = dx * cs + dy * sn, ly = -dx * sn + dy * cs;
            float along = s->half_len - fabsf(lx) + 0.5f;
            if (along <= 0) continue;
            float off = fabsf(ly - s->k * lx * lx);
            if (off > reach_y + fabsf(2.0f * s->k * lx) * reach_y) continue;
            float slope = 2.0f * s->k * lx;
            float d = off / sqrtf(1.0f + slope * slope);
            float q = lx * inv_l;
            float t = s->t * (1.0f - s->taper * q * q);
            float cov = clampf(t - d + 0.5f, 0, 1) * clampf(along, 0, 1);
            if (cov > 0) blend(&c->px[(y * S + x) * 3], col, cov * alpha);
        }
    }
}

/* ---------------------------------------------------------------- the head model */

typedef struct {
    float R[9];          /* head -> view rotation, row-major */
    float A, B, C;       /* head semi-axes, pixels */
    float cx, cy;        /* projected head centre, image pixels */
    float taper, chin;   /* jaw narrowing at the chin, lower-face vertical scale */
    float light[3];      /* unit vector towards the light, view space */
    float ambient, diffuse;
} head;

typedef struct {
    float x, y;   /* image position */
    float facing; /* view-space z of the unit normal: > 0 faces the camera */
} proj;

/* The 2-D jaw warp (applied after projection): below the centre, x is pulled towards the
 * centre line and y stretched by the chin scale. */
static inline void jaw_warp(const head *h, float *x, float *y)
{
    float dy = *y - h->cy;
    if (dy <= 0) return;
    dy *= h->chin;
    float t = dy / h->B;
    *x = h->cx + (*x - h->cx) * (1.0f - h->taper * clampf(t * t, 0, 1.2f));
    *y = h->cy + dy;
}

static inline void rotate(const float R[9], const float v[3], float out[3])
{
    out[0] = R[0] * v[0] + R[1] * v[1] + R[2] * v[2];
    out[1] = R[3] * v[0] + R[4] * v[1] + R[5] * v[2];
    out[2] = R[6] * v[0] + R[7] * v[1] + R[8] * v[2];
}

/* A head-space point with its outward normal, projected. */
static proj project_point(const head *h, const float P[3], const float n[3])
{
    float v[3], nv[3];
    rotate(h->R, P, v);
    rotate(h->R, n, nv);
    float nn = sqrtf(nv[0] * nv[0] + nv[1] * nv[1] + nv[2] * nv[2]);
    proj p = {h->cx + v[0], h->cy + v[1], nn > 0 ? nv[2] / nn : 0};
    jaw_warp(h, &p.x, &p.y);
    return p;
}

/* Surface point at longitude `th` (0 = front, + to the image right) and latitude `ph`
 * (+ downwards), lifted `lift` pixels along the normal. */
static proj surface(const head *h, float th, float ph, float lift)
{
    float st = sinf(th), ct = cosf(th), sp = sinf(ph), cp = cosf(ph);
    float n[3] = {st * cp / h->A, sp / h->B, ct * cp / h->C};
    float nl = sqrtf(n[0] * n[0] + n[1] * n[1] + n[2] * n[2]);
    n[0] /= nl, n[1] /= nl, n[2] /= nl;
    float P[3] = {h->A * st * cp + lift * n[0], h->B * sp + lift * n[1], h->C * ct * cp + lift * n[2]};
    return project_point(h, P, n);
}

/* Lambert shading for a view-space normal. */
static inline float shade_normal(const head *h, float nx, float ny, float nz)
{
    float d = nx * h->light[0] + ny * h->light[1] + nz * h->light[2];
    return h->ambient + h->diffuse * (d > 0 ? d : 0);
}

/* Shade of a feature at a projected surface point: its facing stands in for the normal's
 * z; the x/y parts come from the point's offset from the head centre. */
static float shade_at(const head *h, proj p)
{
    float nx = (p.x - h->cx) / h->A, ny = (p.y - h->cy) / h->B;
    float nz = sqrtf(maxf(1.0f - nx * nx - ny * ny, 0.0f));
    return shade_normal(h, clampf(nx, -1, 1), clampf(ny, -1, 1), nz);
}

/* Visibility weight from facing: hidden behind the head below 0, fully shown from 0.2. */
static inline float visible(float facing)
{
    return smooth01(facing * 5.0f);
}

/* A stroke through three projected points (end, middle, end): the chord gives position,
 * angle and length, the middle's offset from the chord the curvature. */
static stroke stroke_through(proj a, proj m, proj b, float t, float taper)
{
    stroke s;
    float dx = b.x - a.x, dy = b.y - a.y;
    float len = sqrtf(dx * dx + dy * dy);
    s.cx = 0.5f * (a.x + b.x);
    s.cy = 0.5f * (a.y + b.y);
    s.angle = atan2f(dy, dx);
    s.half_len = 0.5f * len;
    float ox = m.x - s.cx, oy = m.y - s.cy;
    float dev = len > 1e-3f ? (-ox * dy + oy * dx) / len : 0; /* + is below the chord */
    /* y = dev (1 - x^2 / L^2) passes through both ends and the middle: put the stroke's
     * centre on the middle point and bend back towards the chord. */
    s.cx += -sinf(s.angle) * dev;
    s.cy += cosf(s.angle) * dev;
    s.k = s.half_len > 0.3f ? -dev / (s.half_len * s.half_len) : 0;
    s.t = t;
    s.taper = taper;
    return s;
}

/* The visible longitude range: features are clipped there so a half-turned mouth or brow
 * shortens instead of wrapping round the head. yaw > 0 turns the face to the image right. */
static inline float clamp_lon(float th, float yaw)
{
    float lim = 1.45f;
    return clampf(th, -lim - yaw, lim - yaw);
}

/* An ellipsoid attached to the head (head-space centre o, semi-axes ax), prepared for
 * casting view rays. A view pixel at offset (xv, yv) from the head centre is the ray
 * q(z) = s + z r in head space, s = R^T (xv, yv, 0) - o, r = R^T e_z; it meets the
 * ellipsoid where qa z^2 + b z + cc = 0 with qa = sum r^2/a^2, b = 2 sum s r/a^2,
 * cc = sum s^2/a^2 - 1. Along a row, b is linear and cc quadratic in xv, so the
 * discriminant D = b^2 - 4 qa cc is a quadratic in xv: its roots bound the row's span and
 * D / |grad D| is the signed distance used for anti-aliased coverage. */
typedef struct {
    float o[3], ia2[3]; /* centre, 1 / axis^2 */
    float r[3];
    float qa;
    float bx, by;       /* db/dxv, db/dyv (constants) */
    float cxx, cxy, cyy; /* second-order terms of cc: cxx xv^2 + cxy xv yv + cyy yv^2 */
    float cx0, cy0, b0, c0; /* terms from o: cc = ... + cx0 xv + cy0 yv + c0, b = ... + b0 */
} cast;

static void cast_init(cast *e, const head *h, const float o[3], const float ax[3])
{
    const float *R = h->R;
    memset(e, 0, sizeof *e);
    for (int i = 0; i < 3; i++) {
        e->o[i] = o[i];
        e->ia2[i] = 1.0f / (ax[i] * ax[i]);
        e->r[i] = R[6 + i];
    }
    e->c0 = -1;
    for (int i = 0; i < 3; i++) {
        float w = e->ia2[i], ri = e->r[i], px = R[i], py = R[3 + i];
        e->qa += ri * ri * w;
        e->bx += 2 * px * ri * w;
        e->by += 2 * py * ri * w;
        e->b0 += -2 * o[i] * ri * w;
        e->cxx += px * px * w;
        e->cxy += 2 * px * py * w;
        e->cyy += py * py * w;
        e->cx0 += -2 * px * o[i] * w;
        e->cy0 += -2 * py * o[i] * w;
        e->c0 += o[i] * o[i] * w;
    }
}

/* One row of a cast: D(xv) = d2 xv^2 + d1 xv + d0, and the pieces of its gradient. */
typedef struct {
    float yv, b_at0, c_at0, c_x; /* b = b_at0 + bx xv; cc = c_at0 + c_x xv + cxx xv^2 */
    float d2, d1, d0;
    float d_solid; /* D above this means coverage 1 anywhere on the row's span */
} cast_row;

static void cast_row_init(const cast *e, float yv, cast_row *row)
{
    row->yv = yv;
    row->b_at0 = e->b0 + e->by * yv;
    row->c_at0 = e->c0 + e->cy0 * yv + e->cyy * yv * yv;
    row->c_x = e->cx0 + e->cxy * yv;
    row->d2 = e->bx * e->bx - 4 * e->qa * e->cxx;
    row->d1 = 2 * row->b_at0 * e->bx - 4 * e->qa * row->c_x;
    row->d0 = row->b_at0 * row->b_at0 - 4 * e->qa * row->c_at0;
}

/* The xv interval where D >= -margin * |grad| roughly: roots of D widened by `pad`.
 * Returns false when the row misses the ellipsoid. */
static bool cast_row_span(const cast_row *row, float pad, float *lo, float *hi)
{
    if (row->d2 >= 0) return false; /* an ellipsoid's silhouette is bounded */
    float disc = row->d1 * row->d1 - 4 * row->d2 * row->d0;
    float mid = -row->d1 / (2 * row->d2);
    if (disc <= 0) {
        /* a row grazing the top or bottom: still cover the antialiased fringe */
        *lo = mid - pad;
        *hi = mid + pad;
        return row->d0 - row->d1 * row->d1 / (4 * row->d2) > -fabsf(row->d1) * pad - 1e-3f;
    }
    float half = sqrtf(disc) / (2 * -row->d2);
    *lo = mid - half - pad;
    *hi = mid + half + pad;
    return true;
}

/* grad D at xv on the row (linear in xv). */
static inline void cast_grad(const cast *e, const cast_row *row, float xv, float bb, float *gx, float *gy)
{
    *gx = 2 * bb * e->bx - 4 * e->qa * (row->c_x + 2 * e->cxx * xv);
    *gy = 2 * bb * e->by - 4 * e->qa * (e->cy0 + 2 * e->cyy * row->yv + e->cxy * xv);
}

/* |grad D| is largest at an end of the span (it is linear in xv): above half of that, the
 * coverage 0.5 + D / |grad D| is 1 and the gradient need not be computed. */
static void cast_row_solid(const cast *e, cast_row *row, float lo, float hi)
{
    float g = 0;
    for (int k = 0; k < 2; k++) {
        float xv = k ? hi : lo, gx, gy;
        cast_grad(e, row, xv, row->b_at0 + e->bx * xv, &gx, &gy);
        g = maxf(g, sqrtf(gx * gx + gy * gy));
    }
    row->d_solid = 0.5f * g;
}

/* Coverage at xv on the row; *b and *D return the ray's b and discriminant. */
static inline float cast_cover(const cast *e, const cast_row *row, float xv, float *b, float *D)
{
    float bb = row->b_at0 + e->bx * xv;
    float cc = row->c_at0 + xv * (row->c_x + e->cxx * xv);
    float d = bb * bb - 4 * e->qa * cc;
    *b = bb;
    *D = d;
    if (d >= row->d_solid) return 1.0f;
    float gx, gy;
    cast_grad(e, row, xv, bb, &gx, &gy);
    float g2 = gx * gx + gy * gy;
    if (g2 < 1e-12f) return d > 0 ? 1.0f : 0.0f;
    return clampf(0.5f + d / sqrtf(g2), 0, 1);
}

/* ---------------------------------------------------------------- the face */

typedef struct {
    /* nuisance, per image */
    float yaw, pitch, roll, scale, tx, ty;
    float smile, mouth_open, brow_raise, eye_open, gaze_x, gaze_y;
    float light_az, light_el, ambient, exposure, tint[3];
    float bg0[3], bg1[3], cloth[3];
    int clutter;
    int glasses;  /* 0 none, 1 clear, 2 sunglasses */
    float glasses_col[3];
    bool mask, hand;
    float mask_col[3];
    float blur, noise;
    int jpeg_quality; /* 0: none */
    float age;
} nuisance;

static float rng_range(fkd_rng *r, float lo, float hi)
{
    return lo + (hi - lo) * (float)fkd_rng_uniform(r);
}

static void rng_colour(fkd_rng *r, float *c, float lo, float hi)
{
    for (int i = 0; i < 3; i++) c[i] = rng_range(r, lo, hi);
}

static void sample_nuisance(const fkd_synth_world *w, const float *z, const fkd_synth_override *ov, fkd_rng *r,
                            nuisance *n)
{
    /* Pose: a wide yaw spread (heavy tail to profile), small pitch and roll. */
    float yaw = (float)fkd_rng_normal(r) * 22.0f * w->pose;
    if (fkd_rng_uniform(r) < 0.1 * w->pose) yaw = rng_range(r, -85, 85);
    if (ov && ov->set_yaw) {
        float m = rng_range(r, ov->yaw_min, ov->yaw_max);
        yaw = fkd_rng_uniform(r) < 0.5 ? -m : m;
    }
    n->yaw = clampf(yaw, -90, 90) * DEG;
    n->pitch = clampf((float)fkd_rng_normal(r) * 8.0f * w->pose, -25, 25) * DEG;
    n->roll = clampf((float)fkd_rng_normal(r) * 5.0f * w->pose, -20, 20) * DEG;
    /* Alignment error of a landmark detector: a few percent of scale, a few pixels. */
    n->scale = 1.0f + clampf((float)fkd_rng_normal(r) * 0.05f * w->pose, -0.15f, 0.15f);
    n->tx = (float)fkd_rng_normal(r) * 2.5f * w->pose;
    n->ty = (float)fkd_rng_normal(r) * 2.5f * w->pose;

    float e = w->expression;
    n->smile = clampf((float)fkd_rng_uniform(r) * 1.3f - 0.3f, -0.3f, 1.0f) * e;
    n->mouth_open = fkd_rng_uniform(r) < 0.3 * e ? rng_range(r, 0, 1) : 0;
    n->brow_raise = (float)fkd_rng_normal(r) * 0.5f * e;
    n->eye_open = fkd_rng_uniform(r) < 0.05 * e ? rng_range(r, 0.05f, 0.3f) : 1.0f - rng_range(r, 0, 0.3f) * e;
    n->gaze_x = (float)fkd_rng_normal(r) * 0.25f * e;
    n->gaze_y = (float)fkd_rng_normal(r) * 0.15f * e;

    float l = w->light;
    n->light_az = (float)fkd_rng_normal(r) * 35.0f * l * DEG;
    n->light_el = (20.0f + (float)fkd_rng_normal(r) * 20.0f * l) * DEG;
    n->ambient = clampf(0.55f - rng_range(r, 0, 0.3f) * l, 0.15f, 0.9f);
    n->exposure = 1.0f + (float)fkd_rng_normal(r) * 0.15f * l;
    for (int i = 0; i < 3; i++) n->tint[i] = 1.0f + (float)fkd_rng_normal(r) * 0.06f * l;

    rng_colour(r, n->bg0, 0.1f, 0.9f);
    rng_colour(r, n->bg1, 0.1f, 0.9f);
    rng_colour(r, n->cloth, 0.05f, 0.8f);
    n->clutter = (int)fkd_rng_below(r, 6) * (w->clutter > 0);

    float o = w->occlusion;
    double g = fkd_rng_uniform(r);
    n->glasses = g < 0.12 * o ? 1 : g < 0.17 * o ? 2 : 0;
    rng_colour(r, n->glasses_col, 0.0f, 0.5f);
    n->mask = fkd_rng_uniform(r) < 0.05 * o;
    rng_colour(r, n->mask_col, 0.3f, 1.0f);
    n->hand = fkd_rng_uniform(r) < 0.04 * o;

    float d = w->degradation;
    n->blur = fkd_rng_uniform(r) < 0.35 * d ? rng_range(r, 0.2f, 1.0f) : 0;
    n->noise = rng_range(r, 0, 0.025f) * d;
    n->jpeg_quality = fkd_rng_uniform(r) < 0.25 * d ? (int)rng_range(r, 15, 75) : 0;

    float base_age = pmap(z, FKD_SYNTH_BASE_AGE, 18, 70);
    n->age = base_age + (float)fkd_rng_normal(r) * 3.0f * w->age_drift;
    if (ov && ov->set_age) n->age = base_age + ov->age_delta;
    n->age = clampf(n->age, 12, 90);
}

/* Identity colours and shapes that several draw steps share. */
typedef struct {
    float skin[3], hair[3], lip[3], iris[3], beard[3];
    float grey;   /* hair greying 0..1 */
    float wrinkle;
} looks;

static void identity_looks(const float *z, const nuisance *n, looks *k)
{
    /* Skin: interpolate dark brown .. light along tone, then warm/cool. */
    float tone = pmap(z, FKD_SYNTH_SKIN_TONE, 0, 1);
    static const float dark[3] = {0.30f, 0.19f, 0.13f}, mid[3] = {0.72f, 0.52f, 0.40f},
                       light[3] = {0.95f, 0.80f, 0.70f};
    for (int i = 0; i < 3; i++)
        k->skin[i] = tone < 0.5f ? lerpf(dark[i], mid[i], tone * 2) : lerpf(mid[i], light[i], tone * 2 - 1);
    float warm = pmap(z, FKD_SYNTH_SKIN_WARMTH, -0.06f, 0.06f);
    k->skin[0] += 0.5f * fabsf(warm);
    k->skin[1] += warm * 0.5f;
    k->skin[2] -= warm;
    float ageing = pmap(z, FKD_SYNTH_AGEING, 0.5f, 1.5f);
    float oldness = clampf((n->age - 30.0f) / 50.0f, 0, 1) * ageing;
    k->grey = smooth01(oldness * 1.2f - 0.2f);
    k->wrinkle = smooth01(oldness);
    /* Hair: black .. blond along lightness, red along redness, grey with age. */
    float hl = pmap(z, FKD_SYNTH_HAIR_LIGHTNESS, 0.03f, 0.75f);
    float red = pmap(z, FKD_SYNTH_HAIR_RED, 0, 1);
    float hair[3] = {hl * (1.0f + 0.5f * red), hl * (0.85f - 0.1f * red), hl * (0.6f - 0.3f * red)};
    for (int i = 0; i < 3; i++) k->hair[i] = clampf(lerpf(hair[i], 0.75f, k->grey), 0, 1);
    for (int i = 0; i < 3; i++) k->beard[i] = k->hair[i] * 0.9f;
    float lc = pmap(z, FKD_SYNTH_LIP_COLOUR, 0, 1);
    k->lip[0] = k->skin[0] * (0.75f + 0.15f * lc);
    k->lip[1] = k->skin[1] * (0.55f - 0.1f * lc);
    k->lip[2] = k->skin[2] * (0.6f);
    float ih = pmap(z, FKD_SYNTH_IRIS_HUE, 0, 1), il = pmap(z, FKD_SYNTH_IRIS_LIGHTNESS, 0.08f, 0.55f);
    /* brown (0) .. green (0.5) .. blue (1) */
    k->iris[0] = il * lerpf(0.9f, 0.35f, ih);
    k->iris[1] = il * lerpf(0.55f, 0.85f, ih < 0.5f ? ih * 2 : 2 - ih * 2 + 0.5f);
    k->iris[2] = il * lerpf(0.3f, 1.3f, ih);
}

static void draw_background(canvas *c, const nuisance *n, fkd_rng *r)
{
    for (int y = 0; y < S; y++) {
        float t = (float)y / (S - 1);
        float col[3];
        for (int i = 0; i < 3; i++) col[i] = lerpf(n->bg0[i], n->bg1[i], t);
        float *row = &c->px[y * S * 3];
        for (int x = 0; x < S; x++) {
            row[x * 3 + 0] = col[0];
            row[x * 3 + 1] = col[1];
            row[x * 3 + 2] = col[2];
        }
    }
    /* Clutter: shapes of other things behind the head (shelves, windows, people). */
    for (int i = 0; i < n->clutter; i++) {
        float col[3];
        rng_colour(r, col, 0.05f, 0.95f);
        if (fkd_rng_uniform(r) < 0.5) {
            ellipse e = {rng_range(r, 0, S), rng_range(r, 0, S), rng_range(r, 3, 22), rng_range(r, 3, 22),
                         rng_range(r, 0, 3.14f), 0, rng_range(r, -0.3f, 0.3f)};
            draw_ellipse(c, &e, col, rng_range(r, 0.4f, 1));
        } else {
            stroke s = {rng_range(r, 0, S), rng_range(r, 0, S), rng_range(r, 0, 3.14f), rng_range(r, 6, 40), 0,
                        rng_range(r, 1, 7), 0};
            draw_stroke(c, &s, col, rng_range(r, 0.4f, 1));
        }
    }
}

/* Hair mass behind and above the head, and long hair falling to the shoulders. */
static void draw_hair_volume(canvas *c, const head *h, const float *z, const looks *k)
{
    float vol = pmap(z, FKD_SYNTH_HAIR_VOLUME, 0.0f, 0.25f);
    float len = pmap(z, FKD_SYNTH_HAIR_LENGTH, 0, 1);
    float hairline = pmap(z, FKD_SYNTH_HAIRLINE, 0, 1);
    if (len > 0.55f) {
        /* long hair: a tall mass behind the head, towards the back in profile */
        float P[3] = {0, h->B * (0.1f + 0.5f * (len - 0.55f)), -0.35f * h->C}, nrm[3] = {0, 0, -1};
        proj p = project_point(h, P, nrm);
        ellipse e = {p.x, p.y, h->A * (1.15f + vol), h->B * (0.8f + 0.9f * (len - 0.55f)), 0, 0, 0.15f};
        float col[3] = {k->hair[0] * 0.8f, k->hair[1] * 0.8f, k->hair[2] * 0.8f};
        draw_ellipse(c, &e, col, 1.0f);
    }
    if (vol < 0.02f && hairline > 0.8f) return; /* near-bald: no mass above the skull */
    cast e;
    float o[3] = {0, -h->B * (0.12f + 0.3f * vol), -0.08f * h->C};
    float ax[3] = {h->A * (1.02f + vol), h->B * (0.85f + vol), h->C * (1.02f + vol)};
    cast_init(&e, h, o, ax);
    float reach = maxf(maxf(ax[0], ax[1]), ax[2]) * 1.3f;
    int y0 = lo_pix(h->cy - reach), y1 = hi_pix(h->cy + 0.3f * h->B);
    for (int y = y0; y < y1; y++) {
        float yv = y + 0.5f - h->cy, lo, hi;
        cast_row row;
        cast_row_init(&e, yv, &row);
        if (!cast_row_span(&row, 2.0f, &lo, &hi)) continue;
        cast_row_solid(&e, &row, lo, hi);
        int x0 = lo_pix(h->cx + lo), x1 = hi_pix(h->cx + hi);
        for (int x = x0; x < x1; x++) {
            float xv = x + 0.5f - h->cx, b, D;
            float cov = cast_cover(&e, &row, xv, &b, &D);
            if (cov <= 0) continue;
            /* strands: a streak pattern along x, shaded darker towards the bottom */
            float streak = 0.85f + 0.15f * cell_noise(x / 2, 0, 77);
            float sh = (0.7f + 0.3f * clampf(-yv / h->B, 0, 1)) * streak;
            float col[3] = {k->hair[0] * sh, k->hair[1] * sh, k->hair[2] * sh};
            blend(&c->px[(y * S + x) * 3], col, cov);
        }
    }
}

static void draw_ears(canvas *c, const head *h, const float *z, const looks *k, bool front)
{
    float size = pmap(z, FKD_SYNTH_EAR_SIZE, 0.8f, 1.25f);
    float ey = pmap(z, FKD_SYNTH_EAR_HEIGHT, -0.05f, 0.2f);
    float out = pmap(z, FKD_SYNTH_EAR_PROTRUSION, 0.0f, 0.12f);
    for (int side = -1; side <= 1; side += 2) {
        float P[3] = {side * h->A * (0.97f + out), h->B * ey, -0.05f * h->C};
        float n[3] = {(float)side, 0, 0.25f};
        proj p = project_point(h, P, n);
        bool is_front = p.facing > 0.45f;
        if (is_front != front) continue;
        float w = h->A * 0.13f * size * (0.35f + 0.65f * fabsf(p.facing));
        float sh = shade_at(h, p) * 0.92f;
        float col[3] = {k->skin[0] * sh, k->skin[1] * sh, k->skin[2] * sh};
        ellipse e = {p.x, p.y, w, h->B * 0.2f * size, 0, 0, -0.1f};
        draw_ellipse(c, &e, col, 1);
        if (front) { /* the ear's hollow */
            float inner[3] = {col[0] * 0.7f, col[1] * 0.65f, col[2] * 0.65f};
            ellipse in = {p.x - side * 0.15f * w, p.y, w * 0.45f, h->B * 0.1f * size, 0, 0, 0};
            draw_ellipse(c, &in, inner, 0.8f);
        }
    }
}

/* Skin, hair cap, beard, freckles: every pixel of the head's silhouette. */
static void draw_head(canvas *c, const head *h, const float *z, const looks *k, uint32_t salt)
{
    cast e;
    float o[3] = {0, 0, 0}, ax[3] = {h->A, h->B, h->C};
    cast_init(&e, h, o, ax);
    float hairline = pmap(z, FKD_SYNTH_HAIRLINE, -0.72f, -0.38f);
    float hl_shape = pmap(z, FKD_SYNTH_HAIRLINE_SHAPE, -0.6f, 0.6f);
    float part = pmap(z, FKD_SYNTH_HAIR_PART, -0.3f, 0.3f);
    float ageing = pmap(z, FKD_SYNTH_AGEING, 0.5f, 1.5f);
    /* recession with age: the hairline climbs, corners first */
    float recede = clampf((k->wrinkle - 0.3f) * 0.3f * ageing, 0, 0.3f);
    float beard = pmap(z, FKD_SYNTH_BEARD, -0.8f, 1.0f);
    float beard_ext = pmap(z, FKD_SYNTH_BEARD_EXTENT, 0, 1);
    float freckles = pmap(z, FKD_SYNTH_FRECKLES, -0.9f, 0.35f);
    float texture = pmap(z, FKD_SYNTH_SKIN_TEXTURE, 0.0f, 0.08f);
    float cheek = pmap(z, FKD_SYNTH_CHEEK_WIDTH, -0.08f, 0.08f);
    float bald = pmap(z, FKD_SYNTH_HAIR_VOLUME, 0, 1) < 0.12f && pmap(z, FKD_SYNTH_HAIRLINE, 0, 1) > 0.8f;
    float iA = 1.0f / h->A, iB = 1.0f / h->B, iC = 1.0f / h->C;
    float reach = maxf(h->A, maxf(h->B, h->C)) * 1.05f;
    int y0 = lo_pix(h->cy - reach), y1 = hi_pix(h->cy + reach * h->chin);
    uint32_t salt_tex = salt + 1, salt_beard = salt + 2, salt_hair = salt + 3;
    float sh = 1, freckle = 1, hair_w = 0, beard_w = 0;
    for (int y = y0; y < y1; y++) {
        /* undo the jaw warp for this row */
        float yy = y + 0.5f - h->cy;
        float yv = yy, squeeze = 1.0f;
        if (yy > 0) {
            yv = yy / h->chin;
            float t = yv / h->B;
            squeeze = 1.0f - h->taper * clampf(t * t, 0, 1.2f);
            /* cheekbones: wider just below the eyes */
            squeeze += cheek * expf(-(t - 0.25f) * (t - 0.25f) * 30.0f);
        }
        float inv_sq = 1.0f / squeeze, lo, hi;
        cast_row row;
        cast_row_init(&e, yv, &row);
        if (!cast_row_span(&row, 2.0f, &lo, &hi)) continue;
        cast_row_solid(&e, &row, lo, hi);
        int x0 = lo_pix(h->cx + lo * squeeze), x1 = hi_pix(h->cx + hi * squeeze);
        for (int x = x0; x < x1; x++) {
            float xv = (x + 0.5f - h->cx) * inv_sq;
            float b, D;
            float cov = cast_cover(&e, &row, xv, &b, &D);
            if (cov <= 0) continue;
            /* The surface point, its shading and the hair / beard / freckle weights vary
             * slowly: computed on even columns (and the first), reused on odd ones. */
            if ((x & 1) == 0 || x == x0) {
                float zr = (-b + sqrtf(maxf(D, 0))) / (2 * e.qa);
                float q[3];
                for (int i = 0; i < 3; i++) q[i] = xv * h->R[i] + yv * h->R[3 + i] + zr * e.r[i];
                float u[3] = {q[0] * iA, q[1] * iB, q[2] * iC};
                float nh[3] = {u[0] * iA, u[1] * iB, u[2] * iC}, nv[3];
                rotate(h->R, nh, nv);
                float nl = 1.0f / sqrtf(nv[0] * nv[0] + nv[1] * nv[1] + nv[2] * nv[2]);
                sh = shade_normal(h, nv[0] * nl, nv[1] * nl, nv[2] * nl);
                /* freckles across nose and cheeks */
                freckle = 1.0f;
                if (freckles > 0 && u[1] > -0.2f && u[1] < 0.45f && u[2] > 0.3f) {
                    int fx = (int)(u[0] * 28.0f + 100), fy = (int)(u[1] * 28.0f + 100);
                    if (cell_noise(fx, fy, salt) < freckles * 0.5f) freckle = 0.88f;
                }
                /* hair cap above the hairline (a parting and corner shape), on the sides
                 * above the ears, and over the back of the head */
                hair_w = 0;
                if (!bald && u[1] < 0.4f) {
                    float hl = hairline - recede + hl_shape * u[0] * u[0] +
                               0.08f * fabsf(u[0] - part) * (u[1] < -0.5f);
                    hair_w = smooth01((hl - u[1]) * 12.0f);
                    float side = smooth01((fabsf(u[0]) - 0.88f) * 10.0f) * smooth01((0.05f - u[1]) * 8.0f);
                    float back = smooth01((-u[2] + 0.05f) * 6.0f) * smooth01((0.35f - u[1]) * 6.0f);
                    hair_w = maxf(hair_w, maxf(side, back));
                }
                /* beard: moustache first, then chin and jaw as the extent grows */
                beard_w = 0;
                if (beard > 0 && u[2] > -0.1f && u[1] > 0.3f) {
                    float mous = smooth01((u[1] - 0.38f) * 20.0f) * smooth01((0.5f - u[1]) * 20.0f) *
                                 smooth01((0.3f - fabsf(u[0])) * 10.0f);
                    float chin = smooth01((u[1] - 0.55f + 0.25f * beard_ext) * 10.0f) *
                                 smooth01((0.35f + 0.6f * beard_ext - fabsf(u[0])) * 8.0f);
                    beard_w = minf(beard, 1.0f) * maxf(mous, chin * beard_ext * 1.3f);
                }
            }
            float tex = freckle * (1.0f + texture * (cell_noise(x, y, salt_tex) - 0.5f));
            float bw = beard_w > 0 ? clampf(beard_w * (0.6f + 0.4f * cell_noise(x, y, salt_beard)), 0, 1) : 0;
            float strand = 0.9f + 0.2f * cell_noise(x / 2, y, salt_hair);
            float col[3];
            for (int i = 0; i < 3; i++) {
                float v = lerpf(k->skin[i] * tex, k->beard[i], bw);
                v = lerpf(v, k->hair[i] * strand, hair_w);
                col[i] = v * sh;
            }
            blend(&c->px[(y * S + x) * 3], col, cov);
        }
    }
}

static void draw_features(canvas *c, const head *h, const float *z, const looks *k, const nuisance *n)
{
    float yaw = n->yaw;
    float asym = pmap(z, FKD_SYNTH_ASYMMETRY, -0.05f, 0.05f);
    /* ---- cheeks blush and moles */
    float blush = pmap(z, FKD_SYNTH_BLUSH, 0, 0.35f);
    for (int side = -1; side <= 1; side += 2) {
        proj p = surface(h, side * 0.55f, 0.3f, 0);
        float v = visible(p.facing);
        float col[3] = {k->skin[0] * 1.05f, k->skin[1] * 0.75f, k->skin[2] * 0.75f};
        ellipse e = {p.x, p.y, h->A * 0.2f * maxf(p.facing, 0.1f), h->B * 0.12f, 0, 0, 0};
        draw_ellipse(c, &e, col, blush * v * shade_at(h, p));
    }
    float moles = pmap(z, FKD_SYNTH_MOLES, -1.0f, 1.0f);
    for (int m = 0; m < 2 && moles > 0; m++) {
        float th = pmap(z, m ? FKD_SYNTH_MOLE2_X : FKD_SYNTH_MOLE1_X, -0.9f, 0.9f);
        float ph = pmap(z, m ? FKD_SYNTH_MOLE2_Y : FKD_SYNTH_MOLE1_Y, -0.5f, 0.75f);
        if (m == 1 && moles < 0.5f) break;
        proj p = surface(h, th, ph, 0);
        float col[3] = {k->skin[0] * 0.45f, k->skin[1] * 0.35f, k->skin[2] * 0.3f};
        float r = h->A * 0.035f * (0.8f + moles);
        ellipse e = {p.x, p.y, r * maxf(p.facing, 0.2f), r, 0, 0, 0};
        draw_ellipse(c, &e, col, visible(p.facing) * 0.9f);
    }
    /* ---- wrinkles with age: forehead lines and nasolabial folds */
    if (k->wrinkle > 0.05f) {
        float col[3] = {k->skin[0] * 0.6f, k->skin[1] * 0.5f, k->skin[2] * 0.45f};
        for (int i = 0; i < 3; i++) {
            float ph = -0.42f - 0.09f * i;
            proj a = surface(h, clamp_lon(-0.45f, yaw), ph, 0), m = surface(h, clamp_lon(0, yaw), ph - 0.02f, 0),
                 b = surface(h, clamp_lon(0.45f, yaw), ph, 0);
            stroke s = stroke_through(a, m, b, 0.45f, 0.8f);
            draw_stroke(c, &s, col, k->wrinkle * 0.45f * visible(m.facing));
        }
        for (int side = -1; side <= 1; side += 2) {
            proj a = surface(h, side * 0.2f, 0.25f, 2), m = surface(h, side * 0.3f, 0.42f, 0),
                 b = surface(h, side * 0.3f, 0.6f, 0);
            stroke s = stroke_through(a, m, b, 0.55f, 0.7f);
            draw_stroke(c, &s, col, k->wrinkle * 0.5f * visible(m.facing));
        }
    }
    /* ---- eyes */
    float spacing = pmap(z, FKD_SYNTH_EYE_SPACING, 0.42f, 0.62f);
    float eye_ph = pmap(z, FKD_SYNTH_EYE_HEIGHT, -0.22f, -0.02f);
    float eye_w = pmap(z, FKD_SYNTH_EYE_WIDTH, 0.15f, 0.24f) * (1.0f - 0.08f * k->wrinkle);
    float eye_h = pmap(z, FKD_SYNTH_EYE_OPENING, 0.06f, 0.12f) * n->eye_open;
    float eye_tilt = pmap(z, FKD_SYNTH_EYE_TILT, -0.2f, 0.2f);
    float iris_r = pmap(z, FKD_SYNTH_IRIS_SIZE, 0.5f, 0.7f);
    float brow_gap = pmap(z, FKD_SYNTH_BROW_HEIGHT, 0.09f, 0.2f) + 0.04f * n->brow_raise;
    float brow_t = pmap(z, FKD_SYNTH_BROW_THICKNESS, 0.6f, 2.6f);
    float brow_arch = pmap(z, FKD_SYNTH_BROW_ARCH, 0.0f, 0.08f);
    float brow_len = pmap(z, FKD_SYNTH_BROW_LENGTH, 0.2f, 0.34f);
    float brow_tilt = pmap(z, FKD_SYNTH_BROW_TILT, -0.06f, 0.06f);
    float brow_col[3];
    for (int i = 0; i < 3; i++) brow_col[i] = lerpf(k->hair[i], 0.1f, 0.3f);
    static const float white[3] = {0.93f, 0.92f, 0.9f}, black[3] = {0.03f, 0.03f, 0.03f};
    for (int side = -1; side <= 1; side += 2) {
        float th = side * (spacing + asym * side);
        proj p = surface(h, th, eye_ph, 0);
        float v = visible(p.facing - 0.05f);
        if (v <= 0) continue;
        float sh = shade_at(h, p);
        float fx = maxf(p.facing, 0.05f);
        float rx = h->A * eye_w * fx, ry = h->B * eye_h;
        float ang = atan2f(surface(h, th + 0.05f, eye_ph, 0).y - p.y, surface(h, th + 0.05f, eye_ph, 0).x - p.x) +
                    side * eye_tilt;
        float socket[3] = {k->skin[0] * 0.75f * sh, k->skin[1] * 0.68f * sh, k->skin[2] * 0.68f * sh};
        ellipse so = {p.x, p.y - ry * 0.3f, rx * 1.35f, ry * 1.9f + 1.0f, ang, 0, -0.2f};
        draw_ellipse(c, &so, socket, 0.45f * v);
        float wcol[3] = {white[0] * sh, white[1] * sh, white[2] * sh};
        ellipse sc = {p.x, p.y, rx, ry, ang, 0, 0.1f};
        draw_ellipse(c, &sc, wcol, v);
        /* iris and pupil, shifted by gaze and by yaw (eyeballs turn with the head) */
        float ir = h->B * 0.11f * iris_r;
        float gx = n->gaze_x * rx, gy = n->gaze_y * ry;
        float icol[3] = {k->iris[0] * sh, k->iris[1] * sh, k->iris[2] * sh};
        ellipse iris = {p.x + gx, p.y + gy, ir * fx, minf(ir, ry * 1.1f), ang, 0, 0.3f};
        draw_ellipse(c, &iris, icol, v);
        ellipse pupil = {iris.cx, iris.cy, ir * 0.45f * fx, minf(ir * 0.45f, ry), ang, 0, 0};
        draw_ellipse(c, &pupil, black, v);
        /* eyelids: re-cover what lies outside the opening with skin, then the lash line */
        float lid[3] = {k->skin[0] * 0.85f * sh, k->skin[1] * 0.8f * sh, k->skin[2] * 0.8f * sh};
        stroke up = {p.x - sinf(ang) * -ry * 1.6f, p.y + cosf(ang) * -ry * 1.6f, ang, rx * 1.05f, 0.35f / rx, ry * 0.75f,
                     0.3f};
        draw_stroke(c, &up, lid, v);
        stroke dn = {p.x - sinf(ang) * ry * 1.6f, p.y + cosf(ang) * ry * 1.6f, ang, rx * 1.05f, -0.3f / rx, ry * 0.7f,
                     0.3f};
        draw_stroke(c, &dn, lid, v);
        stroke lash = {p.x - sinf(ang) * -ry * 0.85f, p.y + cosf(ang) * -ry * 0.85f, ang, rx * 1.0f, 0.25f / rx, 0.7f,
                       0.5f};
        draw_stroke(c, &lash, black, 0.75f * v);
        /* brow: three surface points, arched */
        float bph = eye_ph - brow_gap;
        float bth0 = th - side * brow_len * 0.45f, bth1 = th + side * brow_len * 0.6f;
        proj a = surface(h, clamp_lon(bth0, yaw), bph + brow_tilt, 1);
        proj m = surface(h, clamp_lon(th + side * 0.05f, yaw), bph - brow_arch, 1);
        proj b = surface(h, clamp_lon(bth1, yaw), bph - brow_tilt * 0.5f + 0.03f, 1);
        stroke br = stroke_through(a, m, b, brow_t * (0.5f + 0.5f * fx), 0.6f);
        draw_stroke(c, &br, brow_col, 0.9f * visible(m.facing));
    }
    /* ---- nose: bridge to a lifted tip, its shadow side, the tip and the nostrils */
    float nose_len = pmap(z, FKD_SYNTH_NOSE_LENGTH, 0.3f, 0.46f) * (1.0f + 0.05f * k->wrinkle);
    float nose_w = pmap(z, FKD_SYNTH_NOSE_WIDTH, 0.09f, 0.15f);
    float nose_out = pmap(z, FKD_SYNTH_NOSE_PROTRUSION, 0.16f, 0.3f) * h->C;
    {
        float ph0 = eye_ph + 0.02f, ph1 = eye_ph + nose_len;
        proj b0 = surface(h, 0, ph0, nose_out * 0.2f), tip = surface(h, 0, ph1, nose_out);
        proj mid = surface(h, 0, 0.5f * (ph0 + ph1), nose_out * 0.6f);
        float sh = shade_at(h, tip);
        float side_light = h->light[0];
        float body[3] = {k->skin[0] * sh, k->skin[1] * sh, k->skin[2] * sh};
        stroke st = stroke_through(b0, mid, tip, h->A * nose_w * 0.5f, -0.6f);
        draw_stroke(c, &st, body, 1.0f);
        /* the side away from the light */
        float shadow[3] = {body[0] * 0.7f, body[1] * 0.65f, body[2] * 0.65f};
        float off = (side_light >= 0 ? -1.0f : 1.0f) * h->A * nose_w * 0.45f;
        stroke ss = st;
        ss.cx += cosf(yaw) * off;
        ss.t *= 0.6f;
        draw_stroke(c, &ss, shadow, 0.35f + 0.3f * fabsf(side_light));
        float tipc[3] = {body[0] * 1.05f, body[1] * 1.02f, body[2] * 1.02f};
        ellipse te = {tip.x, tip.y, h->A * nose_w * 0.75f, h->B * 0.06f, st.angle - (float)M_PI / 2, 0, 0.25f};
        draw_ellipse(c, &te, tipc, 1.0f);
        float dark[3] = {body[0] * 0.35f, body[1] * 0.3f, body[2] * 0.3f};
        for (int side = -1; side <= 1; side += 2) {
            proj nos = surface(h, side * nose_w * 0.65f, ph1 + 0.04f, nose_out * 0.35f);
            float v = visible(nos.facing);
            ellipse ne = {nos.x, nos.y, h->A * nose_w * 0.3f * maxf(nos.facing, 0.1f), h->B * 0.025f, 0, 0, 0};
            draw_ellipse(c, &ne, dark, 0.8f * v);
        }
    }
    /* ---- mouth: upper lip, lower lip, the line between (or an open mouth) */
    float mouth_ph = pmap(z, FKD_SYNTH_MOUTH_HEIGHT, 0.52f, 0.66f);
    float mouth_w = pmap(z, FKD_SYNTH_MOUTH_WIDTH, 0.25f, 0.4f) * (1.0f + 0.15f * n->smile);
    float lip_t = pmap(z, FKD_SYNTH_LIP_THICKNESS, 0.8f, 2.4f) * (1.0f - 0.3f * k->wrinkle);
    float curve = pmap(z, FKD_SYNTH_MOUTH_CURVE, -0.04f, 0.04f) + 0.07f * n->smile;
    {
        proj l = surface(h, clamp_lon(-mouth_w, yaw), mouth_ph - curve, 0);
        proj m = surface(h, clamp_lon(0, yaw), mouth_ph, 0);
        proj r = surface(h, clamp_lon(mouth_w, yaw), mouth_ph - curve, 0);
        float v = visible(m.facing + 0.1f);
        float sh = shade_at(h, m);
        float lip[3] = {k->lip[0] * sh, k->lip[1] * sh, k->lip[2] * sh};
        stroke line = stroke_through(l, m, r, 0.55f, 0.4f);
        float gap = n->mouth_open * h->B * 0.1f;
        if (gap > 0.5f) {
            static const float inside[3] = {0.18f, 0.05f, 0.05f};
            ellipse open = {line.cx, line.cy + gap * 0.5f, line.half_len * 0.85f, gap, line.angle, 0, 0};
            draw_ellipse(c, &open, inside, v);
        }
        stroke up = line;
        up.cy -= lip_t * 0.9f;
        up.t = lip_t * 0.8f;
        up.taper = 0.7f;
        draw_stroke(c, &up, lip, 0.9f * v);
        stroke lo = line;
        lo.cy += lip_t * 1.1f + gap;
        lo.t = lip_t;
        lo.taper = 0.8f;
        lo.k *= 0.6f;
        float lipl[3] = {lip[0] * 1.08f, lip[1] * 1.05f, lip[2] * 1.05f};
        draw_stroke(c, &lo, lipl, 0.9f * v);
        float dark[3] = {lip[0] * 0.4f, lip[1] * 0.3f, lip[2] * 0.3f};
        line.cy += gap * 0.2f;
        draw_stroke(c, &line, dark, 0.8f * v);
    }
}

static void draw_occluders(canvas *c, const head *h, const float *z, const nuisance *n, fkd_rng *r,
                           const looks *k)
{
    float spacing = pmap(z, FKD_SYNTH_EYE_SPACING, 0.42f, 0.62f);
    float eye_ph = pmap(z, FKD_SYNTH_EYE_HEIGHT, -0.22f, -0.02f);
    if (n->mask) {
        /* a surgical mask from the bridge of the nose to under the chin */
        proj m = surface(h, clamp_lon(0, n->yaw), 0.42f, h->C * 0.1f);
        float w = h->A * 0.85f * (0.55f + 0.45f * fabsf(cosf(n->yaw)));
        ellipse e = {m.x, m.y, w, h->B * 0.45f, n->roll, 0, 0.15f};
        draw_ellipse(c, &e, n->mask_col, 1.0f);
        float fold[3] = {n->mask_col[0] * 0.8f, n->mask_col[1] * 0.8f, n->mask_col[2] * 0.8f};
        for (int i = -1; i <= 1; i++) {
            stroke pleat = {m.x, m.y + i * h->B * 0.12f, n->roll, w * 0.8f, 0, 0.5f, 0.3f};
            draw_stroke(c, &pleat, fold, 0.6f);
        }
    }
    if (n->glasses) {
        proj e[2];
        float tint[3] = {0.05f, 0.05f, 0.08f};
        for (int s = 0; s < 2; s++) {
            e[s] = surface(h, (s ? 1 : -1) * spacing, eye_ph, h->C * 0.08f);
            float v = visible(e[s].facing + 0.1f);
            float rx = h->A * 0.24f * maxf(e[s].facing, 0.1f), ry = h->B * 0.12f;
            ellipse lens = {e[s].x, e[s].y, rx, ry, 0, 0, 0};
            if (n->glasses == 2) draw_ellipse(c, &lens, tint, 0.88f * v);
            lens.ring = 1.3f;
            draw_ellipse(c, &lens, n->glasses_col, v);
        }
        proj mid = surface(h, 0, eye_ph - 0.02f, h->C * 0.1f);
        stroke bridge = stroke_through(e[0], mid, e[1], 0.7f, 0);
        bridge.half_len *= 0.45f;
        draw_stroke(c, &bridge, n->glasses_col, 0.9f);
    }
    if (n->hand) {
        /* a hand resting against a cheek or the chin, in the person's skin tone */
        float side = fkd_rng_uniform(r) < 0.5 ? -1.0f : 1.0f;
        proj p = surface(h, side * rng_range(r, 0.2f, 0.8f), rng_range(r, 0.4f, 0.9f), 0);
        float sh = 0.9f;
        float col[3] = {k->skin[0] * sh, k->skin[1] * sh, k->skin[2] * sh};
        float ang = rng_range(r, -1.2f, 1.2f) - (float)M_PI / 2;
        ellipse palm = {p.x, p.y + h->B * 0.35f, h->A * 0.4f, h->B * 0.32f, ang + (float)M_PI / 2, 0, -0.15f};
        draw_ellipse(c, &palm, col, 1.0f);
        for (int f = 0; f < 4; f++) {
            float off = (f - 1.5f) * h->A * 0.13f;
            stroke fin = {p.x + cosf(ang + (float)M_PI / 2) * off + cosf(ang) * h->B * 0.15f,
                          p.y + h->B * 0.1f + sinf(ang + (float)M_PI / 2) * off + sinf(ang) * h->B * 0.15f, ang,
                          h->B * 0.2f, 0, h->A * 0.055f, 0.2f};
            draw_stroke(c, &fin, col, 1.0f);
            float crease[3] = {col[0] * 0.75f, col[1] * 0.7f, col[2] * 0.7f};
            stroke edge = fin;
            edge.t = 0.5f;
            edge.cx += cosf(ang + (float)M_PI / 2) * h->A * 0.06f;
            edge.cy += sinf(ang + (float)M_PI / 2) * h->A * 0.06f;
            draw_stroke(c, &edge, crease, 0.5f);
        }
    }
}

/* Separable [a, 1-2a, a] blur with a in [0, 1/3], edges clamped. */
static void blur3(canvas *c, float a, float *tmp)
{
    float m = 1.0f - 2.0f * a;
    const int W = S * 3;
    for (int y = 0; y < S; y++) {
        const float *row = &c->px[y * W];
        float *t = &tmp[y * W];
        for (int ch = 0; ch < 3; ch++) {
            t[ch] = a * (row[ch] + row[3 + ch]) + m * row[ch];
            t[W - 3 + ch] = a * (row[W - 6 + ch] + row[W - 3 + ch]) + m * row[W - 3 + ch];
        }
        for (int i = 3; i < W - 3; i++) t[i] = a * (row[i - 3] + row[i + 3]) + m * row[i];
    }
    for (int y = 0; y < S; y++) {
        const float *up = &tmp[(y > 0 ? y - 1 : 0) * W], *mid = &tmp[y * W], *dn = &tmp[(y < S - 1 ? y + 1 : y) * W];
        float *out = &c->px[y * W];
        for (int i = 0; i < W; i++) out[i] = a * (up[i] + dn[i]) + m * mid[i];
    }
}

static fkd_status finish_image(canvas *c, const nuisance *n, fkd_rng *r, uint8_t *out, float *tmp)
{
    if (n->blur > 0) {
        blur3(c, clampf(n->blur, 0, 1) * 0.3f, tmp);
        if (n->blur > 0.7f) blur3(c, 0.25f, tmp);
    }
    float gain[3] = {n->exposure * n->tint[0], n->exposure * n->tint[1], n->exposure * n->tint[2]};
    /* Sensor noise: a window of a fixed table of triangular noise (the sum of two 8-bit
     * uniforms minus 255, std 104) at a random offset, scaled to the image's level. */
    float amp = n->noise * (1.0f / 104.0f) * 255.0f;
    const int16_t *tri = tri_noise + fkd_rng_below(r, TRI_NOISE_LEN - S * S * 3);
    const float g0 = gain[0] * 255.0f, g1 = gain[1] * 255.0f, g2 = gain[2] * 255.0f;
    for (int i = 0; i < S * S; i++) {
        const float *p = &c->px[i * 3];
        const int16_t *t = &tri[i * 3];
        uint8_t *o = &out[i * 3];
        o[0] = (uint8_t)clampf(p[0] * g0 + amp * t[0] + 0.5f, 0, 255.0f);
        o[1] = (uint8_t)clampf(p[1] * g1 + amp * t[1] + 0.5f, 0, 255.0f);
        o[2] = (uint8_t)clampf(p[2] * g2 + amp * t[2] + 0.5f, 0, 255.0f);
    }
    if (n->jpeg_quality > 0) {
        fkd_image img = {S, S, 3, out};
        uint8_t *bytes;
        size_t size;
        FKD_TRY(fkd_image_encode_jpeg(&img, n->jpeg_quality, &bytes, &size));
        fkd_image back;
        fkd_status s = fkd_image_decode(bytes, size, "synth JPEG round trip", &back);
        free(bytes);
        FKD_TRY(s);
        memcpy(out, back.pixels, (size_t)S * S * 3);
        fkd_image_free(&back);
    }
    return FKD_OK;
}

static void setup_head(head *h, const float *z, const nuisance *n)
{
    float sc = n->scale;
    float age_sag = 0.04f * n->age / 80.0f;
    h->A = pmap(z, FKD_SYNTH_HEAD_WIDTH, 30, 37) * sc;
    h->B = pmap(z, FKD_SYNTH_HEAD_HEIGHT, 40, 48) * sc;
    h->C = h->A * pmap(z, FKD_SYNTH_HEAD_DEPTH, 1.1f, 1.3f);
    h->taper = pmap(z, FKD_SYNTH_JAW_TAPER, 0.15f, 0.45f) - age_sag;
    h->chin = pmap(z, FKD_SYNTH_CHIN_LENGTH, 0.95f, 1.12f) + age_sag * 0.5f;
    float cy = cosf(n->yaw), sy = sinf(n->yaw), cp = cosf(n->pitch), sp = sinf(n->pitch);
    float cr = cosf(n->roll), sr = sinf(n->roll);
    /* R = Rz(roll) Rx(pitch) Ry(yaw); yaw > 0 turns the face to the image right */
    float Ry[9] = {cy, 0, sy, 0, 1, 0, -sy, 0, cy};
    float Rx[9] = {1, 0, 0, 0, cp, -sp, 0, sp, cp};
    float Rz[9] = {cr, -sr, 0, sr, cr, 0, 0, 0, 1};
    float T[9];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            T[i * 3 + j] = 0;
            for (int k = 0; k < 3; k++) T[i * 3 + j] += Rx[i * 3 + k] * Ry[k * 3 + j];
        }
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            h->R[i * 3 + j] = 0;
            for (int k = 0; k < 3; k++) h->R[i * 3 + j] += Rz[i * 3 + k] * T[k * 3 + j];
        }
    /* Alignment centres the face, not the skull: turned heads shift back so the features
     * stay near the middle, as a landmark-based crop would place them. */
    h->cx = 56.0f + n->tx - 0.45f * h->C * sy;
    h->cy = 54.0f + n->ty + 0.15f * h->B * sp;
    float la = n->light_az, le = n->light_el;
    h->light[0] = sinf(la) * cosf(le);
    h->light[1] = -sinf(le);
    h->light[2] = cosf(la) * cosf(le);
    h->ambient = n->ambient;
    h->diffuse = 1.0f - n->ambient * 0.6f;
}

typedef struct {
    canvas c;
    float tmp[S * S * 3];
} render_buffers;

fkd_status fkd_synth_render(const fkd_synth_world *w, int64_t identity, uint32_t index,
                            const fkd_synth_override *ov, fkd_image *out)
{
    if (identity < 0) return FKD_FAIL(FKD_ERR_ARG, "synth: negative identity %lld", (long long)identity);
    bool owned = false;
    if (!out->pixels) {
        out->pixels = malloc((size_t)S * S * 3);
        if (!out->pixels) return FKD_FAIL(FKD_ERR_NOMEM, "synth: cannot allocate an image");
        owned = true;
    }
    out->width = out->height = S;
    out->channels = 3;
    /* 300 KB of float buffers on the stack: renders allocate nothing and any thread may
     * render (thread stacks are 8 MB by default). */
    render_buffers bufs, *buf = &bufs;
    pthread_once(&noise_once, noise_table_fill);
    float z[FKD_SYNTH_N_PARAMS];
    fkd_synth_identity(w, identity, z);
    fkd_rng r;
    fkd_rng_seed(&r, fkd_hash_mix(w->seed, (uint64_t)identity), index);
    nuisance n;
    sample_nuisance(w, z, ov, &r, &n);
    looks k;
    identity_looks(z, &n, &k);
    head h;
    setup_head(&h, z, &n);
    uint32_t salt = (uint32_t)fkd_hash_mix(w->seed, (uint64_t)identity);

    canvas *c = &buf->c;
    draw_background(c, &n, &r);
    /* neck and shoulders */
    {
        float sh = 0.75f;
        float neck[3] = {k.skin[0] * sh, k.skin[1] * sh, k.skin[2] * sh};
        stroke ns = {h.cx + 0.2f * h.C * sinf(n.yaw), h.cy + h.B * 1.25f, (float)M_PI / 2, h.B * 0.4f, 0,
                     h.A * 0.55f, 0};
        draw_stroke(c, &ns, neck, 1.0f);
        ellipse cl = {h.cx, h.cy + h.B * 2.0f, h.A * 2.3f, h.B * 0.75f, 0, 0, 0.2f};
        draw_ellipse(c, &cl, n.cloth, 1.0f);
    }
    draw_hair_volume(c, &h, z, &k);
    draw_ears(c, &h, z, &k, false);
    draw_head(c, &h, z, &k, salt);
    draw_ears(c, &h, z, &k, true);
    draw_features(c, &h, z, &k, &n);
    draw_occluders(c, &h, z, &n, &r, &k);
    fkd_status s = finish_image(c, &n, &r, out->pixels, buf->tmp);
    if (s != FKD_OK && owned) fkd_image_free(out);
    return s;
}

fkd_status fkd_synth_render_nchw(const fkd_synth_world *w, int64_t identity, uint32_t index,
                                 const fkd_synth_override *ov, uint8_t *scratch, float *slot)
{
    fkd_image img = {S, S, 3, scratch};
    FKD_TRY(fkd_synth_render(w, identity, index, ov, &img));
    for (int ch = 0; ch < 3; ch++)
        for (int i = 0; i < S * S; i++) slot[ch * S * S + i] = ((float)scratch[i * 3 + ch] - 127.5f) / 127.5f;
    return FKD_OK;
}
