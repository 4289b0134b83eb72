/* A small line and scatter plot renderer to PNG, for ROC curves, training curves and
 * embedding pictures.
 *
 *   fkd_plot p;
 *   FKD_TRY(fkd_plot_init(&p, 800, 560, "ROC on lfw", "FAR", "TAR"));
 *   fkd_plot_set_log_x(&p, 1);
 *   fkd_plot_set_range(&p, 1e-6, 1, NAN, 1);     // NAN: from the data
 *   fkd_plot_add(&p, NULL, "teacher", far, tar, n);  // NULL style: line, next colour
 *   fkd_status s = fkd_plot_save_png(&p, "run/roc_lfw.png");
 *   fkd_plot_free(&p);
 *
 * Features: axes with ticks, tick labels and axis labels in a built-in 5x7 font; log10 x
 * axis (decade ticks with labels, minor ticks 2..9); light grid; anti-aliased lines of any
 * width (solid or dashed) clipped to the plot area; scatter points; a legend placed in the
 * corner of the plot area that covers the fewest drawn pixels; equal aspect for
 * embedding pictures (a circle stays round). */
#ifndef FKD_EVAL_PLOT_H
#define FKD_EVAL_PLOT_H

#include <stdint.h>

#include "core/status.h"
#include "data/image.h"

typedef enum { FKD_PLOT_LINE = 0, FKD_PLOT_POINTS } fkd_plot_kind;

/* Colours: palette indices 0..9 (tab10-like), then black and grey; -1 = next palette
 * colour. Larger indices wrap around the 10 palette colours. */
#define FKD_PLOT_N_PALETTE 10
#define FKD_PLOT_BLACK 10
#define FKD_PLOT_GREY 11
#define FKD_PLOT_NEXT_COLOR (-1)

typedef struct {
    fkd_plot_kind kind;
    int color;    /* palette index or FKD_PLOT_NEXT_COLOR */
    double width; /* line width, or point diameter, in pixels (<= 0: 2 for lines, 5 for points) */
    int dashed;
} fkd_plot_style;

typedef struct {
    fkd_plot_style style;
    uint8_t rgb[3];
    char *label; /* NULL: not in the legend */
    int n;
    double *x, *y; /* (n) copies of the data */
} fkd_plot_series;

typedef struct {
    int width, height;
    char *title, *xlabel, *ylabel;
    int log_x;
    int equal_aspect;
    double x_min, x_max, y_min, y_max; /* NAN: from the data */
    int n_series, cap_series, next_color;
    fkd_plot_series *series;
    /* layout of the last render, in pixels: plot area [left, right] x [top, bottom];
     * the view range (log10 units on x when log_x); the legend box (w = 0: none) */
    int left, right, top, bottom;
    double vx0, vx1, vy0, vy1;
    int legend_x, legend_y, legend_w, legend_h;
} fkd_plot;

/* width, height >= 160. Labels may be NULL. */
fkd_status fkd_plot_init(fkd_plot *p, int width, int height, const char *title, const char *xlabel,
                         const char *ylabel);
void fkd_plot_free(fkd_plot *p);

void fkd_plot_set_log_x(fkd_plot *p, int on);
/* Same data units per pixel on both axes (the wider range wins). */
void fkd_plot_set_equal_aspect(fkd_plot *p, int on);
/* Axis limits; NAN leaves a limit to the data. */
void fkd_plot_set_range(fkd_plot *p, double x_min, double x_max, double y_min, double y_max);

/* Adds a series (data copied). style NULL: a 2-pixel line in the next palette colour.
 * Non-finite points (and x <= 0 on a log axis) are skipped; lines break there. */
fkd_status fkd_plot_add(fkd_plot *p, const fkd_plot_style *style, const char *label, const double *x,
                        const double *y, int n);
/* A circle of radius r around (cx, cy) as a 1.5-pixel line, not in the legend. */
fkd_status fkd_plot_add_circle(fkd_plot *p, double cx, double cy, double r, int color);

/* The RGB of a palette index (see above). */
void fkd_plot_color(int index, uint8_t rgb[3]);

/* Renders into img (allocated here, RGB; free with fkd_image_free) and records the
 * layout in p. */
fkd_status fkd_plot_render(fkd_plot *p, fkd_image *img);
/* Renders and writes a PNG atomically. */
fkd_status fkd_plot_save_png(fkd_plot *p, const char *path);

/* Data to pixel coordinates with the layout of the last render. */
void fkd_plot_map(const fkd_plot *p, double x, double y, double *px, double *py);

#endif
