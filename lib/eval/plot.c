/* Plot renderer; see plot.h. Everything is drawn on an RGB canvas (fkd_image):
 * lines through a per-series coverage buffer (max of the pixel coverages of its segments,
 * so joints are not drawn twice), points and text blended directly. */
#include "eval/plot.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/font.h"

#define MARGIN 12
#define TICK_MAJOR 6
#define TICK_MINOR 3
#define TITLE_SCALE 2
#define LEGEND_ROW 14
#define LEGEND_SAMPLE 26
#define MAX_TICKS 64

static const uint8_t palette[FKD_PLOT_N_PALETTE + 2][3] = {
    {31, 119, 180}, {255, 127, 14}, {44, 160, 44},  {214, 39, 40}, {148, 103, 189}, {140, 86, 75},
    {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}, {0, 0, 0},     {150, 150, 150},
};
static const uint8_t white[3] = {255, 255, 255}, grid_rgb[3] = {232, 232, 232}, ink_rgb[3] = {34, 34, 34},
                     frame_rgb[3] = {0, 0, 0}, legend_border[3] = {170, 170, 170};

void fkd_plot_color(int index, uint8_t rgb[3])
{
    if (index < 0) index = 0;
    if (index > FKD_PLOT_GREY) index %= FKD_PLOT_N_PALETTE;
    memcpy(rgb, palette[index], 3);
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

fkd_status fkd_plot_init(fkd_plot *p, int width, int height, const char *title, const char *xlabel,
                         const char *ylabel)
{
    memset(p, 0, sizeof(*p));
    if (width < 160 || height < 160 || width > 8192 || height > 8192)
        return FKD_FAIL(FKD_ERR_ARG, "plot: size %dx%d (160..8192)", width, height);
    p->width = width;
    p->height = height;
    p->x_min = p->x_max = p->y_min = p->y_max = NAN;
    p->title = dup_or_null(title);
    p->xlabel = dup_or_null(xlabel);
    p->ylabel = dup_or_null(ylabel);
    if ((title && !p->title) || (xlabel && !p->xlabel) || (ylabel && !p->ylabel)) {
        fkd_plot_free(p);
        return FKD_FAIL(FKD_ERR_NOMEM, "plot: labels");
    }
    return FKD_OK;
}

void fkd_plot_free(fkd_plot *p)
{
    if (!p) return;
    for (int i = 0; i < p->n_series; i++) {
        free(p->series[i].label);
        free(p->series[i].x);
        free(p->series[i].y);
    }
    free(p->series);
    free(p->title);
    free(p->xlabel);
    free(p->ylabel);
    memset(p, 0, sizeof(*p));
}

void fkd_plot_set_log_x(fkd_plot *p, int on)
{
    p->log_x = on;
}

void fkd_plot_set_equal_aspect(fkd_plot *p, int on)
{
    p->equal_aspect = on;
}

void fkd_plot_set_range(fkd_plot *p, double x_min, double x_max, double y_min, double y_max)
{
    p->x_min = x_min;
    p->x_max = x_max;
    p->y_min = y_min;
    p->y_max = y_max;
}

fkd_status fkd_plot_add(fkd_plot *p, const fkd_plot_style *style, const char *label, const double *x,
                        const double *y, int n)
{
    if (n < 0) return FKD_FAIL(FKD_ERR_ARG, "plot: series '%s': %d points", label ? label : "", n);
    if (p->n_series == p->cap_series) {
        int cap = p->cap_series ? 2 * p->cap_series : 8;
        fkd_plot_series *s = realloc(p->series, sizeof(*s) * cap);
        if (!s) return FKD_FAIL(FKD_ERR_NOMEM, "plot: %d series", cap);
        p->series = s;
        p->cap_series = cap;
    }
    fkd_plot_series *s = &p->series[p->n_series];
    memset(s, 0, sizeof(*s));
    s->style = style ? *style : (fkd_plot_style){FKD_PLOT_LINE, FKD_PLOT_NEXT_COLOR, 0, 0};
    if (s->style.color < 0) s->style.color = p->next_color++ % FKD_PLOT_N_PALETTE;
    if (s->style.width <= 0) s->style.width = s->style.kind == FKD_PLOT_LINE ? 2.0 : 5.0;
    fkd_plot_color(s->style.color, s->rgb);
    s->n = n;
    s->label = dup_or_null(label);
    s->x = malloc(sizeof(double) * (n ? n : 1));
    s->y = malloc(sizeof(double) * (n ? n : 1));
    if (!s->x || !s->y || (label && !s->label)) {
        free(s->x);
        free(s->y);
        free(s->label);
        return FKD_FAIL(FKD_ERR_NOMEM, "plot: series of %d points", n);
    }
    if (n) {
        memcpy(s->x, x, sizeof(double) * n);
        memcpy(s->y, y, sizeof(double) * n);
    }
    p->n_series++;
    return FKD_OK;
}

fkd_status fkd_plot_add_circle(fkd_plot *p, double cx, double cy, double r, int color)
{
    enum { N = 241 };
    double x[N], y[N];
    for (int i = 0; i < N; i++) {
        double a = 2 * M_PI * i / (N - 1);
        x[i] = cx + r * cos(a);
        y[i] = cy + r * sin(a);
    }
    fkd_plot_style st = {FKD_PLOT_LINE, color, 1.5, 0};
    return fkd_plot_add(p, &st, NULL, x, y, N);
}

/* ---- coordinates and ticks ---- */

static int usable(const fkd_plot *p, double x, double y)
{
    return isfinite(x) && isfinite(y) && (!p->log_x || x > 0);
}

static double tx(const fkd_plot *p, double x)
{
    return p->log_x ? log10(x) : x;
}

void fkd_plot_map(const fkd_plot *p, double x, double y, double *px, double *py)
{
    *px = p->left + (tx(p, x) - p->vx0) / (p->vx1 - p->vx0) * (p->right - p->left);
    *py = p->bottom - (y - p->vy0) / (p->vy1 - p->vy0) * (p->bottom - p->top);
}

typedef struct {
    int n;
    double v[MAX_TICKS]; /* in view units (log10 on a log axis) */
    int major[MAX_TICKS];
    char label[MAX_TICKS][24];
} ticks;

static double nice_step(double range, int target)
{
    double raw = range / (target > 1 ? target : 1), mag = pow(10, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
}

static void linear_ticks(double v0, double v1, int target, ticks *t)
{
    double step = nice_step(v1 - v0, target);
    int decimals = (int)fmax(0, -floor(log10(step) + 1e-9));
    t->n = 0;
    for (double k = ceil(v0 / step - 1e-9); k * step <= v1 + step * 1e-9 && t->n < MAX_TICKS; k++) {
        double v = k * step;
        t->v[t->n] = v;
        t->major[t->n] = 1;
        snprintf(t->label[t->n], sizeof(t->label[0]), "%.*f", decimals, fabs(v) < step * 1e-9 ? 0.0 : v);
        t->n++;
    }
}

/* Decades get labels (1e-6 ... 1e-1, 1, 10, 100, 1e3 ...), 2..9 times a decade minor ticks;
 * with more than 12 decades only every second/third decade is labelled. */
static void log_ticks(double v0, double v1, ticks *t)
{
    int k0 = (int)ceil(v0 - 1e-9), k1 = (int)floor(v1 + 1e-9);
    int every = (k1 - k0) > 24 ? 4 : (k1 - k0) > 12 ? 2 : 1;
    t->n = 0;
    for (int k = (int)floor(v0); k <= k1 && t->n < MAX_TICKS; k++) {
        if (k >= k0 && t->n < MAX_TICKS) {
            t->v[t->n] = k;
            t->major[t->n] = 1;
            if (k % every != 0) t->label[t->n][0] = 0;
            else if (k >= 0 && k <= 2) snprintf(t->label[t->n], sizeof(t->label[0]), "%d", (int)pow(10, k));
            else snprintf(t->label[t->n], sizeof(t->label[0]), "1e%d", k);
            t->n++;
        }
        for (int m = 2; m <= 9 && t->n < MAX_TICKS; m++) {
            double v = k + log10(m);
            if (v < v0 - 1e-9 || v > v1 + 1e-9 || every > 1) continue;
            t->v[t->n] = v;
            t->major[t->n] = 0;
            t->label[t->n][0] = 0;
            t->n++;
        }
    }
    /* a range inside one decade has no decade tick: label the 2..9 ticks instead */
    int majors = 0;
    for (int i = 0; i < t->n; i++) majors += t->major[i];
    if (majors == 0)
        for (int i = 0; i < t->n; i++) snprintf(t->label[i], sizeof(t->label[0]), "%g", pow(10, t->v[i]));
}

/* Data ranges with explicit limits applied; padded by 3% where taken from the data. */
static void data_range(fkd_plot *p)
{
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int s = 0; s < p->n_series; s++)
        for (int i = 0; i < p->series[s].n; i++) {
            double x = p->series[s].x[i], y = p->series[s].y[i];
            if (!usable(p, x, y)) continue;
            x = tx(p, x);
            x0 = fmin(x0, x);
            x1 = fmax(x1, x);
            y0 = fmin(y0, y);
            y1 = fmax(y1, y);
        }
    if (!(x0 <= x1)) x0 = 0, x1 = 1;
    if (!(y0 <= y1)) y0 = 0, y1 = 1;
    if (p->log_x) {
        x0 = floor(x0 + 1e-9);
        x1 = ceil(x1 - 1e-9);
    } else {
        double pad = (x1 - x0) * 0.03;
        x0 -= pad;
        x1 += pad;
    }
    double pad = (y1 - y0) * 0.03;
    y0 -= pad;
    y1 += pad;
    if (isfinite(p->x_min) && (!p->log_x || p->x_min > 0)) x0 = tx(p, p->x_min);
    if (isfinite(p->x_max) && (!p->log_x || p->x_max > 0)) x1 = tx(p, p->x_max);
    if (isfinite(p->y_min)) y0 = p->y_min;
    if (isfinite(p->y_max)) y1 = p->y_max;
    if (!(x1 > x0)) x0 -= 0.5, x1 = x0 + 1;
    if (!(y1 > y0)) y0 -= 0.5, y1 = y0 + 1;
    p->vx0 = x0, p->vx1 = x1, p->vy0 = y0, p->vy1 = y1;
}

static int max_label_width(const ticks *t)
{
    int w = 0;
    for (int i = 0; i < t->n; i++) w = (int)fmax(w, fkd_font_text_width(t->label[i], 1));
    return w;
}

/* Same data units per pixel on both axes, around the centre of the current ranges. */
static void equalise(fkd_plot *p)
{
    double ux = (p->vx1 - p->vx0) / (p->right - p->left), uy = (p->vy1 - p->vy0) / (p->bottom - p->top);
    double u = fmax(ux, uy), cx = 0.5 * (p->vx0 + p->vx1), cy = 0.5 * (p->vy0 + p->vy1);
    p->vx0 = cx - 0.5 * u * (p->right - p->left), p->vx1 = cx + 0.5 * u * (p->right - p->left);
    p->vy0 = cy - 0.5 * u * (p->bottom - p->top), p->vy1 = cy + 0.5 * u * (p->bottom - p->top);
}

/* The left margin holds the y tick labels, whose width depends on the y range, which
 * (with equal aspect) depends on the plot width: two passes with a margin that only
 * grows settle it; the area is then fixed, so equal aspect stays exact. */
static void layout(fkd_plot *p, ticks *xt, ticks *yt)
{
    data_range(p);
    const double dx0 = p->vx0, dx1 = p->vx1, dy0 = p->vy0, dy1 = p->vy1;
    p->top = MARGIN + (p->title ? FKD_FONT_LINE * TITLE_SCALE + 6 : 4);
    p->bottom = p->height - 1 - MARGIN - FKD_FONT_LINE - TICK_MAJOR - 2 - (p->xlabel ? FKD_FONT_LINE + 4 : 0);
    p->right = p->width - 1 - MARGIN - 12;
    p->left = 0;
    for (int pass = 0; pass < 2; pass++) {
        linear_ticks(p->vy0, p->vy1, (p->bottom - p->top) / 45, yt);
        int left = MARGIN + (p->ylabel ? FKD_FONT_LINE + 6 : 0) + max_label_width(yt) + TICK_MAJOR + 4;
        if (left > p->left) p->left = left;
        if (p->equal_aspect) {
            p->vx0 = dx0, p->vx1 = dx1, p->vy0 = dy0, p->vy1 = dy1;
            equalise(p);
        }
    }
    linear_ticks(p->vy0, p->vy1, (p->bottom - p->top) / 45, yt);
    if (p->log_x) log_ticks(p->vx0, p->vx1, xt);
    else linear_ticks(p->vx0, p->vx1, (p->right - p->left) / 90, xt);
}

/* ---- pixels ---- */

static void blend(fkd_image *img, int x, int y, const uint8_t rgb[3], double a)
{
    if (x < 0 || y < 0 || x >= img->width || y >= img->height || a <= 0) return;
    uint8_t *px = img->pixels + ((size_t)y * img->width + x) * 3;
    if (a > 1) a = 1;
    for (int c = 0; c < 3; c++) px[c] = (uint8_t)lrint(px[c] + (rgb[c] - px[c]) * a);
}

static void fill_rect(fkd_image *img, int x0, int y0, int x1, int y1, const uint8_t rgb[3])
{
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) blend(img, x, y, rgb, 1.0);
}

static void draw_text(fkd_image *img, int x, int y, const char *s, int scale, const uint8_t rgb[3], int vertical)
{
    /* (x, y) is the top-left of the text; vertical text reads bottom to top and (x, y) is
     * its bottom-left */
    for (int i = 0; s[i]; i++) {
        const uint8_t *g = fkd_font_glyph((unsigned char)s[i]);
        int ox = i * FKD_FONT_ADVANCE * scale;
        for (int r = 0; r < FKD_FONT_H; r++)
            for (int c = 0; c < FKD_FONT_W; c++) {
                if (!(g[r] >> (FKD_FONT_W - 1 - c) & 1)) continue;
                for (int dy = 0; dy < scale; dy++)
                    for (int dx = 0; dx < scale; dx++) {
                        int gx = ox + c * scale + dx, gy = r * scale + dy;
                        if (vertical) blend(img, x + gy, y - gx, rgb, 1.0);
                        else blend(img, x + gx, y + gy, rgb, 1.0);
                    }
            }
    }
}

/* Coverage of a segment of half-width hw at the pixels near it, max-combined into cov
 * (the plot area, row-major). s0 is the arc length at (x0, y0), for dashes. */
static void segment_coverage(float *cov, const fkd_plot *p, double x0, double y0, double x1, double y1, double hw,
                             int dashed, double s0)
{
    int w = p->right - p->left + 1;
    double dx = x1 - x0, dy = y1 - y0, len2 = dx * dx + dy * dy, reach = hw + 1;
    int ax = (int)floor(fmin(x0, x1) - reach), bx = (int)ceil(fmax(x0, x1) + reach);
    int ay = (int)floor(fmin(y0, y1) - reach), by = (int)ceil(fmax(y0, y1) + reach);
    if (ax < p->left) ax = p->left;
    if (ay < p->top) ay = p->top;
    if (bx > p->right) bx = p->right;
    if (by > p->bottom) by = p->bottom;
    for (int y = ay; y <= by; y++)
        for (int x = ax; x <= bx; x++) {
            double px = x + 0.5, py = y + 0.5;
            double t = len2 > 0 ? ((px - x0) * dx + (py - y0) * dy) / len2 : 0;
            t = t < 0 ? 0 : t > 1 ? 1 : t;
            double ex = x0 + t * dx - px, ey = y0 + t * dy - py;
            double c = hw + 0.5 - sqrt(ex * ex + ey * ey);
            if (c <= 0) continue;
            if (dashed && fmod(s0 + t * sqrt(len2), 12.0) > 7.0) continue;
            float *dst = &cov[(size_t)(y - p->top) * w + (x - p->left)];
            if (c > 1) c = 1;
            if (c > *dst) *dst = (float)c;
        }
}

static void draw_line_series(fkd_image *img, float *cov, const fkd_plot *p, const fkd_plot_series *s)
{
    int w = p->right - p->left + 1, h = p->bottom - p->top + 1;
    memset(cov, 0, sizeof(float) * (size_t)w * h);
    double arc = 0, hw = 0.5 * s->style.width;
    for (int i = 1; i < s->n; i++) {
        if (!usable(p, s->x[i - 1], s->y[i - 1]) || !usable(p, s->x[i], s->y[i])) continue;
        double x0, y0, x1, y1;
        fkd_plot_map(p, s->x[i - 1], s->y[i - 1], &x0, &y0);
        fkd_plot_map(p, s->x[i], s->y[i], &x1, &y1);
        /* segments far outside the area are skipped; the coverage loop clips the rest */
        if (fmax(x0, x1) < p->left - 2 || fmin(x0, x1) > p->right + 2 || fmax(y0, y1) < p->top - 2 ||
            fmin(y0, y1) > p->bottom + 2)
            continue;
        segment_coverage(cov, p, x0, y0, x1, y1, hw, s->style.dashed, arc);
        arc += hypot(x1 - x0, y1 - y0);
    }
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            if (cov[(size_t)y * w + x] > 0) blend(img, p->left + x, p->top + y, s->rgb, cov[(size_t)y * w + x]);
}

static void draw_disc(fkd_image *img, double cx, double cy, double r, const uint8_t rgb[3], double alpha,
                      const int clip[4])
{
    int ax = (int)floor(cx - r - 1), bx = (int)ceil(cx + r + 1), ay = (int)floor(cy - r - 1), by = (int)ceil(cy + r + 1);
    for (int y = ay; y <= by; y++)
        for (int x = ax; x <= bx; x++) {
            if (clip && (x < clip[0] || x > clip[1] || y < clip[2] || y > clip[3])) continue;
            double c = r + 0.5 - hypot(x + 0.5 - cx, y + 0.5 - cy);
            if (c > 0) blend(img, x, y, rgb, alpha * (c > 1 ? 1 : c));
        }
}

static void draw_points_series(fkd_image *img, const fkd_plot *p, const fkd_plot_series *s)
{
    const int clip[4] = {p->left, p->right, p->top, p->bottom};
    for (int i = 0; i < s->n; i++) {
        if (!usable(p, s->x[i], s->y[i])) continue;
        double px, py;
        fkd_plot_map(p, s->x[i], s->y[i], &px, &py);
        draw_disc(img, px, py, 0.5 * s->style.width, s->rgb, 0.85, clip);
    }
}

/* ---- axes, legend ---- */

static void draw_axes(fkd_image *img, const fkd_plot *p, const ticks *xt, const ticks *yt, int grid)
{
    double w = p->right - p->left, h = p->bottom - p->top;
    for (int i = 0; i < xt->n; i++) {
        int x = (int)lrint(p->left + (xt->v[i] - p->vx0) / (p->vx1 - p->vx0) * w);
        if (x < p->left || x > p->right) continue;
        if (grid) {
            if (xt->major[i]) fill_rect(img, x, p->top, x, p->bottom, grid_rgb);
            continue;
        }
        fill_rect(img, x, p->bottom + 1, x, p->bottom + (xt->major[i] ? TICK_MAJOR : TICK_MINOR), frame_rgb);
        int tw = fkd_font_text_width(xt->label[i], 1);
        int lx = x - tw / 2;
        if (lx + tw > p->width - 2) lx = p->width - 2 - tw;
        draw_text(img, lx, p->bottom + TICK_MAJOR + 4, xt->label[i], 1, ink_rgb, 0);
    }
    for (int i = 0; i < yt->n; i++) {
        int y = (int)lrint(p->bottom - (yt->v[i] - p->vy0) / (p->vy1 - p->vy0) * h);
        if (y < p->top || y > p->bottom) continue;
        if (grid) {
            fill_rect(img, p->left, y, p->right, y, grid_rgb);
            continue;
        }
        fill_rect(img, p->left - TICK_MAJOR, y, p->left - 1, y, frame_rgb);
        int tw = fkd_font_text_width(yt->label[i], 1);
        draw_text(img, p->left - TICK_MAJOR - 4 - tw, y - FKD_FONT_CAP / 2, yt->label[i], 1, ink_rgb, 0);
    }
    if (grid) return;
    fill_rect(img, p->left, p->top, p->right, p->top, frame_rgb);
    fill_rect(img, p->left, p->bottom, p->right, p->bottom, frame_rgb);
    fill_rect(img, p->left, p->top, p->left, p->bottom, frame_rgb);
    fill_rect(img, p->right, p->top, p->right, p->bottom, frame_rgb);
    if (p->title) {
        int tw = fkd_font_text_width(p->title, TITLE_SCALE);
        draw_text(img, (p->left + p->right - tw) / 2, MARGIN, p->title, TITLE_SCALE, ink_rgb, 0);
    }
    if (p->xlabel) {
        int tw = fkd_font_text_width(p->xlabel, 1);
        draw_text(img, (p->left + p->right - tw) / 2, p->height - 1 - MARGIN - FKD_FONT_H, p->xlabel, 1, ink_rgb, 0);
    }
    if (p->ylabel) {
        int tw = fkd_font_text_width(p->ylabel, 1);
        draw_text(img, MARGIN, (p->top + p->bottom + tw) / 2, p->ylabel, 1, ink_rgb, 1);
    }
}

/* Pixels in a box that are neither background nor grid: what a legend there would hide. */
static long ink_in(const fkd_image *img, int x0, int y0, int w, int h)
{
    long n = 0;
    for (int y = y0; y < y0 + h; y++)
        for (int x = x0; x < x0 + w; x++) {
            const uint8_t *px = img->pixels + ((size_t)y * img->width + x) * 3;
            n += memcmp(px, white, 3) && memcmp(px, grid_rgb, 3);
        }
    return n;
}

static void draw_legend(fkd_image *img, fkd_plot *p)
{
    int rows = 0, text_w = 0;
    for (int i = 0; i < p->n_series; i++) {
        if (!p->series[i].label) continue;
        rows++;
        text_w = (int)fmax(text_w, fkd_font_text_width(p->series[i].label, 1));
    }
    p->legend_w = 0;
    if (!rows) return;
    int w = 8 + LEGEND_SAMPLE + 6 + text_w + 8, h = 6 + rows * LEGEND_ROW + 2, inset = 8;
    if (w > p->right - p->left - 2 * inset || h > p->bottom - p->top - 2 * inset) return;
    /* corners in order of preference: top right, bottom right, top left, bottom left */
    const int cx[4] = {p->right - inset - w, p->right - inset - w, p->left + inset + 1, p->left + inset + 1};
    const int cy[4] = {p->top + inset + 1, p->bottom - inset - h, p->top + inset + 1, p->bottom - inset - h};
    int best = 0;
    long best_ink = -1;
    for (int c = 0; c < 4; c++) {
        long ink = ink_in(img, cx[c], cy[c], w, h);
        if (best_ink < 0 || ink < best_ink) best_ink = ink, best = c;
    }
    int x0 = cx[best], y0 = cy[best];
    p->legend_x = x0, p->legend_y = y0, p->legend_w = w, p->legend_h = h;
    fill_rect(img, x0, y0, x0 + w - 1, y0 + h - 1, white);
    fill_rect(img, x0, y0, x0 + w - 1, y0, legend_border);
    fill_rect(img, x0, y0 + h - 1, x0 + w - 1, y0 + h - 1, legend_border);
    fill_rect(img, x0, y0, x0, y0 + h - 1, legend_border);
    fill_rect(img, x0 + w - 1, y0, x0 + w - 1, y0 + h - 1, legend_border);
    int row = 0;
    for (int i = 0; i < p->n_series; i++) {
        const fkd_plot_series *s = &p->series[i];
        if (!s->label) continue;
        int ty = y0 + 6 + row * LEGEND_ROW, mid = ty + FKD_FONT_CAP / 2;
        if (s->style.kind == FKD_PLOT_LINE) {
            int t = (int)fmax(1, lrint(s->style.width));
            for (int x = x0 + 8; x < x0 + 8 + LEGEND_SAMPLE; x++) {
                if (s->style.dashed && (x - x0 - 8) % 12 > 7) continue;
                fill_rect(img, x, mid - t / 2, x, mid - t / 2 + t - 1, s->rgb);
            }
        } else {
            draw_disc(img, x0 + 8 + LEGEND_SAMPLE / 2.0, mid + 0.5, fmax(2.5, 0.5 * s->style.width), s->rgb, 1.0, NULL);
        }
        draw_text(img, x0 + 8 + LEGEND_SAMPLE + 6, ty, s->label, 1, ink_rgb, 0);
        row++;
    }
}

fkd_status fkd_plot_render(fkd_plot *p, fkd_image *img)
{
    memset(img, 0, sizeof(*img));
    ticks xt, yt;
    layout(p, &xt, &yt);
    if (p->right - p->left < 20 || p->bottom - p->top < 20)
        return FKD_FAIL(FKD_ERR_ARG, "plot '%s': %dx%d leaves no room for the plot area", p->title ? p->title : "",
                        p->width, p->height);
    size_t npx = (size_t)p->width * p->height;
    size_t ncov = (size_t)(p->right - p->left + 1) * (p->bottom - p->top + 1);
    img->pixels = malloc(npx * 3);
    float *cov = malloc(sizeof(float) * ncov);
    if (!img->pixels || !cov) {
        free(cov);
        fkd_image_free(img);
        return FKD_FAIL(FKD_ERR_NOMEM, "plot: %dx%d canvas", p->width, p->height);
    }
    img->width = p->width;
    img->height = p->height;
    img->channels = 3;
    memset(img->pixels, 255, npx * 3);
    draw_axes(img, p, &xt, &yt, 1);
    for (int i = 0; i < p->n_series; i++) {
        if (p->series[i].style.kind == FKD_PLOT_LINE) draw_line_series(img, cov, p, &p->series[i]);
        else draw_points_series(img, p, &p->series[i]);
    }
    free(cov);
    draw_axes(img, p, &xt, &yt, 0);
    draw_legend(img, p);
    return FKD_OK;
}

fkd_status fkd_plot_save_png(fkd_plot *p, const char *path)
{
    fkd_image img;
    FKD_TRY(fkd_plot_render(p, &img));
    fkd_status s = fkd_image_save_png(&img, path);
    fkd_image_free(&img);
    return s;
}
