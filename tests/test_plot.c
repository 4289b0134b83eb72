/* eval/plot: rendered pictures checked for real properties — the PNG decodes (with
 * libpng directly, independent of the writer) to the rendered size and pixels, series
 * colours lie where the data maps, the legend holds text and avoids the curves, log-axis
 * ticks sit at the decades, equal aspect keeps circles round. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/font.h"
#include "eval/plot.h"
#include "tests/support/tmpdir.h"

static char dir[64];

static int setup(void **state)
{
    (void)state;
    return fkd_test_tmpdir_make(dir, sizeof(dir), "test_plot");
}

static int teardown(void **state)
{
    (void)state;
    return fkd_test_tmpdir_remove(dir);
}

static const uint8_t *px(const fkd_image *img, int x, int y)
{
    assert_true(x >= 0 && y >= 0 && x < img->width && y < img->height);
    return img->pixels + ((size_t)y * img->width + x) * 3;
}

static int is_rgb(const fkd_image *img, int x, int y, const uint8_t rgb[3])
{
    return !memcmp(px(img, x, y), rgb, 3);
}

static int count_rgb(const fkd_image *img, int x0, int y0, int x1, int y1, const uint8_t rgb[3])
{
    int n = 0;
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) n += is_rgb(img, x, y, rgb);
    return n;
}

/* Decodes an 8-bit RGB PNG with libpng. */
static void read_png(const char *path, fkd_image *img)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    assert_true(png && info);
    if (setjmp(png_jmpbuf(png))) fail_msg("%s: libpng could not decode it", path);
    png_init_io(png, fp);
    png_read_info(png, info);
    img->width = (int)png_get_image_width(png, info);
    img->height = (int)png_get_image_height(png, info);
    img->channels = 3;
    assert_int_equal(png_get_bit_depth(png, info), 8);
    assert_int_equal(png_get_color_type(png, info), PNG_COLOR_TYPE_RGB);
    img->pixels = malloc((size_t)img->width * img->height * 3);
    for (int y = 0; y < img->height; y++) png_read_row(png, img->pixels + (size_t)y * img->width * 3, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    fclose(fp);
}

static const uint8_t black[3] = {0, 0, 0}, white[3] = {255, 255, 255}, ink[3] = {34, 34, 34};

/* Two flat ROC-like curves on a log axis: TAR 0.5 and 0.8 over FAR 1e-6..1. */
static void roc_plot(fkd_plot *p)
{
    enum { N = 50 };
    double far[N], a[N], b[N];
    for (int i = 0; i < N; i++) {
        far[i] = pow(10, -6 + 6.0 * i / (N - 1));
        a[i] = 0.5;
        b[i] = 0.8;
    }
    assert_int_equal(fkd_plot_init(p, 640, 480, "ROC", "FAR", "TAR"), FKD_OK);
    fkd_plot_set_log_x(p, 1);
    fkd_plot_set_range(p, 1e-6, 1, 0, 1);
    assert_int_equal(fkd_plot_add(p, NULL, "student", far, a, N), FKD_OK);
    assert_int_equal(fkd_plot_add(p, NULL, "teacher", far, b, N), FKD_OK);
}

static void test_png_roundtrip_and_lines(void **state)
{
    (void)state;
    fkd_plot p;
    fkd_image img, back;
    roc_plot(&p);
    char path[128];
    fkd_test_tmpdir_path(path, sizeof(path), dir, "roc.png");
    assert_int_equal(fkd_plot_save_png(&p, path), FKD_OK);
    assert_int_equal(fkd_plot_render(&p, &img), FKD_OK);
    read_png(path, &back);
    assert_int_equal(back.width, 640);
    assert_int_equal(back.height, 480);
    assert_memory_equal(back.pixels, img.pixels, (size_t)640 * 480 * 3); /* lossless, deterministic */
    fkd_image loaded; /* and through facekd's own codec */
    assert_int_equal(fkd_image_load(path, &loaded), FKD_OK);
    assert_int_equal(loaded.width, 640);
    assert_memory_equal(loaded.pixels, img.pixels, (size_t)640 * 480 * 3);
    fkd_image_free(&loaded);

    /* each series is drawn in its palette colour along y = const; a 2-px line covers the
     * pixel rows within 0.5 px of its centre fully (coverage = 1 + 0.5 - distance) */
    uint8_t c0[3], c1[3];
    fkd_plot_color(0, c0);
    fkd_plot_color(1, c1);
    const double xs[] = {2e-6, 1e-4, 3e-3, 0.5};
    for (int i = 0; i < 4; i++) {
        double x, y;
        fkd_plot_map(&p, xs[i], 0.5, &x, &y);
        assert_true(count_rgb(&img, (int)x, (int)y - 1, (int)x, (int)y + 1, c0) >= 1);
        /* and nowhere near the other curve's height */
        double y8;
        fkd_plot_map(&p, xs[i], 0.8, &x, &y8);
        assert_true(count_rgb(&img, (int)x, (int)y8 - 1, (int)x, (int)y8 + 1, c1) >= 1);
        assert_int_equal(count_rgb(&img, (int)x, (int)y8 - 1, (int)x, (int)y8 + 1, c0), 0);
        /* halfway between the curves: background or grid only */
        const uint8_t *mid = px(&img, (int)x, (int)((y + y8) / 2));
        assert_true(mid[0] == mid[1] && mid[1] == mid[2] && mid[0] > 200);
    }
    /* lines are clipped: nothing of either colour left of the plot area */
    assert_int_equal(count_rgb(&img, 0, 0, p.left - 1, img.height - 1, c0), 0);
    fkd_image_free(&img);
    free(back.pixels);
    fkd_plot_free(&p);
}

static void test_legend_has_text_and_avoids_curves(void **state)
{
    (void)state;
    fkd_plot p;
    fkd_image img;
    roc_plot(&p);
    assert_int_equal(fkd_plot_render(&p, &img), FKD_OK);
    assert_true(p.legend_w > 0);
    /* inside the plot area */
    assert_true(p.legend_x > p.left && p.legend_x + p.legend_w < p.right);
    assert_true(p.legend_y > p.top && p.legend_y + p.legend_h < p.bottom);
    /* the curves are at TAR 0.5 and 0.8; the free band is above 0.8 (top) — the legend
     * must sit there, clear of both lines */
    double x, y8;
    fkd_plot_map(&p, 1e-3, 0.8, &x, &y8);
    assert_true(p.legend_y + p.legend_h < y8 - 2);
    /* two rows of text: "student" and "teacher" are 7 glyphs, each row must have ink */
    int rows_with_ink = 0;
    for (int r = 0; r < 2; r++) {
        int y0 = p.legend_y + 6 + r * 14;
        rows_with_ink += count_rgb(&img, p.legend_x, y0, p.legend_x + p.legend_w - 1, y0 + FKD_FONT_H - 1, ink) > 20;
    }
    assert_int_equal(rows_with_ink, 2);
    /* and a sample of each series colour */
    uint8_t c1[3];
    fkd_plot_color(1, c1);
    assert_true(count_rgb(&img, p.legend_x, p.legend_y, p.legend_x + p.legend_w - 1, p.legend_y + p.legend_h - 1,
                          c1) >= 20);
    fkd_image_free(&img);
    fkd_plot_free(&p);
}

static void test_log_axis_ticks_at_decades(void **state)
{
    (void)state;
    fkd_plot p;
    fkd_image img;
    roc_plot(&p);
    assert_int_equal(fkd_plot_render(&p, &img), FKD_OK);
    int major_row = p.bottom + 6, minor_row = p.bottom + 2; /* major ticks 6 px, minor 3 px */
    /* the decades 1e-6..1 split the width in six equal parts */
    for (int k = -6; k <= 0; k++) {
        double x, y;
        fkd_plot_map(&p, pow(10, k), 0, &x, &y);
        assert_true(fabs(x - (p.left + (k + 6) / 6.0 * (p.right - p.left))) < 1e-9);
        int xi = (int)lrint(x);
        assert_true(is_rgb(&img, xi, major_row, black));
        /* a label under each decade tick */
        assert_true(count_rgb(&img, xi - 12, major_row + 3, xi + 12, major_row + 3 + FKD_FONT_H, ink) > 5);
    }
    for (int k = -6; k < 0; k++) {
        double x2, x15, y;
        fkd_plot_map(&p, 2 * pow(10, k), 0, &x2, &y);
        fkd_plot_map(&p, 1.5 * pow(10, k), 0, &x15, &y);
        assert_true(is_rgb(&img, (int)lrint(x2), minor_row, black));  /* minor tick */
        assert_true(is_rgb(&img, (int)lrint(x2), major_row, white));  /* ... short */
        assert_true(is_rgb(&img, (int)lrint(x15), minor_row, white)); /* no tick at 1.5 */
    }
    fkd_image_free(&img);
    fkd_plot_free(&p);
}

static void test_log_axis_inside_one_decade_labels_minor_ticks(void **state)
{
    (void)state;
    fkd_plot p;
    fkd_image img;
    const double x[] = {2, 8}, y[] = {0, 1};
    assert_int_equal(fkd_plot_init(&p, 400, 240, NULL, NULL, NULL), FKD_OK);
    fkd_plot_set_log_x(&p, 1);
    fkd_plot_set_range(&p, 2, 8, NAN, NAN);
    assert_int_equal(fkd_plot_add(&p, NULL, NULL, x, y, 2), FKD_OK);
    assert_int_equal(fkd_plot_render(&p, &img), FKD_OK);
    /* no decade inside 2..8: the 2..8 ticks carry labels ("5" under x = 5) */
    double x5, y0;
    fkd_plot_map(&p, 5, 0, &x5, &y0);
    int label_row = p.bottom + 6 + 4;
    assert_true(count_rgb(&img, (int)x5 - 4, label_row, (int)x5 + 4, label_row + FKD_FONT_H, ink) >= 8);
    fkd_image_free(&img);
    fkd_plot_free(&p);
}

static void test_scatter_equal_aspect(void **state)
{
    (void)state;
    fkd_plot p;
    fkd_image img;
    assert_int_equal(fkd_plot_init(&p, 420, 300, "2-D features", "x1", "x2"), FKD_OK);
    fkd_plot_set_equal_aspect(&p, 1);
    const double x[] = {0.9, -0.7}, y[] = {0.1, -0.6};
    fkd_plot_style dots = {FKD_PLOT_POINTS, 3, 7, 0};
    assert_int_equal(fkd_plot_add(&p, &dots, "class 3", x, y, 2), FKD_OK);
    const double cx[] = {0, 1}, cy[] = {0, 0};
    fkd_plot_style ray = {FKD_PLOT_LINE, 3, 2, 0};
    assert_int_equal(fkd_plot_add(&p, &ray, NULL, cx, cy, 2), FKD_OK);
    assert_int_equal(fkd_plot_add_circle(&p, 0, 0, 1, FKD_PLOT_GREY), FKD_OK);
    assert_int_equal(fkd_plot_render(&p, &img), FKD_OK);
    double ox, oy, ex, ey, nx, ny;
    fkd_plot_map(&p, 0, 0, &ox, &oy);
    fkd_plot_map(&p, 1, 0, &ex, &ey);
    fkd_plot_map(&p, 0, 1, &nx, &ny);
    assert_true(fabs((ex - ox) - (oy - ny)) < 1e-9); /* one unit is as many pixels on x as on y */
    /* the unit circle passes through its top and its left: a 1.5-px grey line, blended
     * over white by coverage, leaves a neutral pixel darker than background and grid */
    uint8_t c3[3];
    fkd_plot_color(3, c3);
    double wx, wy;
    fkd_plot_map(&p, -1, 0, &wx, &wy);
    const int at[2][2] = {{(int)nx, (int)ny}, {(int)wx, (int)wy}};
    for (int k = 0; k < 2; k++) {
        int darkest = 255;
        for (int dy = -1; dy <= 1; dy++)
            for (int dx = -1; dx <= 1; dx++) {
                const uint8_t *q = px(&img, at[k][0] + dx, at[k][1] + dy);
                assert_true(q[0] == q[1] && q[1] == q[2]);
                if (q[0] < darkest) darkest = q[0];
            }
        assert_true(darkest < 200);
    }
    /* a point's centre is the class colour at 85% over white */
    double qx, qy;
    fkd_plot_map(&p, -0.7, -0.6, &qx, &qy);
    const uint8_t *c = px(&img, (int)qx, (int)qy);
    for (int k = 0; k < 3; k++) assert_int_equal(c[k], (int)lrint(255 + (c3[k] - 255) * 0.85));
    /* only the labelled series is in the legend: one row */
    assert_int_equal(p.legend_h, 6 + 14 + 2);
    fkd_image_free(&img);
    fkd_plot_free(&p);
}

static void test_bad_input(void **state)
{
    (void)state;
    fkd_plot p;
    assert_int_equal(fkd_plot_init(&p, 100, 480, NULL, NULL, NULL), FKD_ERR_ARG);
    assert_non_null(strstr(fkd_last_error(), "100x480"));
    fkd_plot_free(&p); /* safe on a failed init */
    fkd_plot_free(NULL);
    roc_plot(&p);
    /* NaN, infinities and x <= 0 on the log axis are skipped, not drawn, not fatal */
    const double x[] = {NAN, 0, -1, 1e-3, INFINITY}, y[] = {0.2, 0.2, 0.2, NAN, 0.2};
    assert_int_equal(fkd_plot_add(&p, NULL, "bad", x, y, 5), FKD_OK);
    char path[128];
    fkd_test_tmpdir_path(path, sizeof(path), dir, "no/such/dir/roc.png");
    assert_int_not_equal(fkd_plot_save_png(&p, path), FKD_OK);
    assert_non_null(strstr(fkd_last_error(), "no/such/dir/roc.png"));
    fkd_plot_free(&p);
}

static void test_font_covers_printable_ascii(void **state)
{
    (void)state;
    /* every printable glyph but space has ink, and no two letters/digits are identical */
    for (int c = 33; c <= 126; c++) {
        const uint8_t *g = fkd_font_glyph(c);
        int bits = 0;
        for (int r = 0; r < FKD_FONT_H; r++) {
            assert_true(g[r] < 32);
            bits += g[r];
        }
        assert_true(bits > 0);
        for (int d = 33; d < c; d++) assert_memory_not_equal(g, fkd_font_glyph(d), FKD_FONT_H);
    }
    assert_ptr_equal(fkd_font_glyph(200), fkd_font_glyph('?'));
    assert_int_equal(fkd_font_text_width("abc", 2), (3 * 6 - 1) * 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_png_roundtrip_and_lines),
        cmocka_unit_test(test_legend_has_text_and_avoids_curves),
        cmocka_unit_test(test_log_axis_ticks_at_decades),
        cmocka_unit_test(test_log_axis_inside_one_decade_labels_minor_ticks),
        cmocka_unit_test(test_scatter_equal_aspect),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_font_covers_printable_ascii),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
