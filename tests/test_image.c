/* Image codecs: PNG and JPEG round trips, and corrupt or truncated data giving clean
 * errors that name the source. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/fileio.h"
#include "data/image.h"

/* A smooth colour gradient with a disc: compressible enough that JPEG stays close. */
static fkd_image make_test_image(int w, int h)
{
    fkd_image img = {w, h, 3, malloc((size_t)w * h * 3)};
    assert_non_null(img.pixels);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = img.pixels + ((size_t)y * w + x) * 3;
            int d2 = (x - w / 2) * (x - w / 2) + (y - h / 2) * (y - h / 2);
            p[0] = (uint8_t)(x * 255 / (w - 1));
            p[1] = (uint8_t)(y * 255 / (h - 1));
            p[2] = d2 < (w / 4) * (w / 4) ? 200 : 40;
        }
    return img;
}

static void test_png_round_trip_is_exact(void **state)
{
    (void)state;
    fkd_image img = make_test_image(112, 96);
    uint8_t *bytes;
    size_t size;
    assert_int_equal(fkd_image_encode_png(&img, &bytes, &size), FKD_OK);
    fkd_image back;
    assert_int_equal(fkd_image_decode(bytes, size, "mem.png", &back), FKD_OK);
    assert_int_equal(back.width, 112);
    assert_int_equal(back.height, 96);
    assert_int_equal(back.channels, 3);
    assert_memory_equal(back.pixels, img.pixels, (size_t)112 * 96 * 3);
    free(bytes);
    fkd_image_free(&back);
    fkd_image_free(&img);
}

static void test_jpeg_round_trip_is_close(void **state)
{
    (void)state;
    fkd_image img = make_test_image(112, 112);
    uint8_t *bytes;
    size_t size;
    assert_int_equal(fkd_image_encode_jpeg(&img, 95, &bytes, &size), FKD_OK);
    assert_true(bytes[0] == 0xFF && bytes[1] == 0xD8);
    fkd_image back;
    assert_int_equal(fkd_image_decode(bytes, size, "mem.jpg", &back), FKD_OK);
    assert_int_equal(back.width, 112);
    assert_int_equal(back.height, 112);
    double se = 0;
    size_t n = (size_t)112 * 112 * 3;
    for (size_t i = 0; i < n; i++) {
        double d = (double)back.pixels[i] - img.pixels[i];
        se += d * d;
    }
    /* Quality 95 with 4:2:0 chroma on a sharp-edged disc: RMS error a few grey levels. */
    double rmse = sqrt(se / n);
    assert_true(rmse < 6.0);
    /* Lower quality compresses more. */
    uint8_t *small;
    size_t small_size;
    assert_int_equal(fkd_image_encode_jpeg(&img, 20, &small, &small_size), FKD_OK);
    assert_true(small_size < size);
    free(small);
    free(bytes);
    fkd_image_free(&back);
    fkd_image_free(&img);
}

static void expect_format_error(const uint8_t *bytes, size_t size, const char *what, const char *kind)
{
    fkd_image out = {0};
    assert_int_equal(fkd_image_decode(bytes, size, what, &out), FKD_ERR_FORMAT);
    assert_null(out.pixels);
    assert_non_null(strstr(fkd_last_error(), what));
    if (kind) assert_non_null(strstr(fkd_last_error(), kind));
}

static void test_truncated_and_corrupt_data_fail_cleanly(void **state)
{
    (void)state;
    fkd_image img = make_test_image(64, 64);
    uint8_t *jpg, *png;
    size_t jpg_size, png_size;
    assert_int_equal(fkd_image_encode_jpeg(&img, 90, &jpg, &jpg_size), FKD_OK);
    assert_int_equal(fkd_image_encode_png(&img, &png, &png_size), FKD_OK);

    /* Truncated at several points, header included. */
    const double cuts[] = {0.01, 0.3, 0.6, 0.95};
    for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
        size_t n = (size_t)(jpg_size * cuts[c]);
        if (n < 3) n = 3;
        expect_format_error(jpg, n, "train.rec record 17", "JPEG");
        n = (size_t)(png_size * cuts[c]);
        if (n < 8) n = 8;
        expect_format_error(png, n, "faces/a/1.png", "PNG");
    }
    /* Garbage after a valid signature. */
    uint8_t *bad = malloc(jpg_size);
    memcpy(bad, jpg, jpg_size);
    for (size_t i = 3; i < jpg_size; i++) bad[i] = (uint8_t)(i * 37);
    expect_format_error(bad, jpg_size, "bad.jpg", "JPEG");
    free(bad);
    bad = malloc(png_size);
    memcpy(bad, png, png_size);
    for (size_t i = 20; i < png_size; i++) bad[i] ^= 0x5a; /* breaks IHDR CRC and data */
    expect_format_error(bad, png_size, "bad.png", "PNG");
    free(bad);
    /* Neither format, and nothing at all. */
    const uint8_t text[] = "GIF89a not supported";
    expect_format_error(text, sizeof text, "x.gif", "not a JPEG or PNG");
    expect_format_error(text, 0, "empty.jpg", "empty");
    free(jpg);
    free(png);
    fkd_image_free(&img);
}

static void test_save_and_load_png_file(void **state)
{
    (void)state;
    char path[] = "/tmp/fkd_test_image_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    fkd_image img = make_test_image(40, 30);
    assert_int_equal(fkd_image_save_png(&img, path), FKD_OK);
    fkd_image back;
    assert_int_equal(fkd_image_load(path, &back), FKD_OK);
    assert_memory_equal(back.pixels, img.pixels, 40 * 30 * 3);
    fkd_image_free(&back);
    /* A file that is not an image: the error names the path. */
    assert_int_equal(fkd_atomic_write(path, "hello", 5), FKD_OK);
    assert_int_equal(fkd_image_load(path, &back), FKD_ERR_FORMAT);
    assert_non_null(strstr(fkd_last_error(), path));
    unlink(path);
    assert_int_equal(fkd_image_load(path, &back), FKD_ERR_IO);
    /* Bad arguments to the encoders. */
    uint8_t *bytes;
    size_t size;
    assert_int_equal(fkd_image_encode_jpeg(&img, 0, &bytes, &size), FKD_ERR_ARG);
    img.channels = 4;
    assert_int_equal(fkd_image_encode_png(&img, &bytes, &size), FKD_ERR_ARG);
    img.channels = 3;
    fkd_image_free(&img);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_png_round_trip_is_exact),
        cmocka_unit_test(test_jpeg_round_trip_is_close),
        cmocka_unit_test(test_truncated_and_corrupt_data_fail_cleanly),
        cmocka_unit_test(test_save_and_load_png_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
