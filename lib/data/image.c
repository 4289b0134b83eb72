/* JPEG (libjpeg-turbo) and PNG (libpng) codecs behind lib/data/image.h.
 *
 * Both libraries report fatal errors through a callback that must not return; each codec
 * here longjmps back to its entry point, frees what it allocated and turns the library's
 * message into an FKD_FAIL naming the source. Corrupt or truncated data therefore ends in
 * FKD_ERR_FORMAT, never in exit() (libjpeg's default) or a crash. */
#include "data/image.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

#include "core/fileio.h"

/* Larger images than this are refused before any allocation: a corrupt header must not
 * ask for gigabytes. Face crops are 112x112; real photos stay far below this. */
#define FKD_IMAGE_MAX_SIDE 16384

void fkd_image_free(fkd_image *img)
{
    if (!img) return;
    free(img->pixels);
    img->pixels = NULL;
    img->width = img->height = img->channels = 0;
}

static fkd_status check_rgb_image(const fkd_image *img, const char *who)
{
    if (!img || !img->pixels || img->channels != 3 || img->width <= 0 || img->height <= 0 ||
        img->width > FKD_IMAGE_MAX_SIDE || img->height > FKD_IMAGE_MAX_SIDE)
        return FKD_FAIL(FKD_ERR_ARG, "%s: need an RGB image (channels 3, sides 1..%d), got %dx%dx%d", who,
                        FKD_IMAGE_MAX_SIDE, img ? img->width : 0, img ? img->height : 0, img ? img->channels : 0);
    return FKD_OK;
}

/* ---------------------------------------------------------------- JPEG */

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
} jpeg_error;

static void jpeg_error_exit(j_common_ptr cinfo)
{
    jpeg_error *err = (jpeg_error *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, err->message);
    longjmp(err->jump, 1);
}

/* Warnings are silent except a premature end of data: libjpeg would fill the missing
 * rows with grey and succeed, which would hide a truncated record. */
static void jpeg_emit_message(j_common_ptr cinfo, int level)
{
    jpeg_error *err = (jpeg_error *)cinfo->err;
    if (level < 0) {
        cinfo->err->num_warnings++;
        if (cinfo->err->msg_code == JWRN_JPEG_EOF) {
            (*cinfo->err->format_message)(cinfo, err->message);
            longjmp(err->jump, 1);
        }
    }
}

static fkd_status decode_jpeg(const uint8_t *bytes, size_t size, const char *what, fkd_image *out)
{
    struct jpeg_decompress_struct cinfo;
    jpeg_error err;
    /* Written after setjmp and read after longjmp: must be volatile. */
    uint8_t *volatile pixels = NULL;
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = jpeg_error_exit;
    err.pub.emit_message = jpeg_emit_message;
    err.message[0] = 0;
    if (setjmp(err.jump)) {
        jpeg_destroy_decompress(&cinfo);
        free(pixels);
        return FKD_FAIL(FKD_ERR_FORMAT, "%s: corrupt JPEG: %s", what, err.message);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, bytes, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    if (cinfo.image_width == 0 || cinfo.image_height == 0 || cinfo.image_width > FKD_IMAGE_MAX_SIDE ||
        cinfo.image_height > FKD_IMAGE_MAX_SIDE) {
        snprintf(err.message, sizeof err.message, "image size %ux%u outside 1..%d", cinfo.image_width,
                 cinfo.image_height, FKD_IMAGE_MAX_SIDE);
        longjmp(err.jump, 1);
    }
    cinfo.out_color_space = JCS_RGB; /* grey and YCbCr converted; CMYK fails in start */
    jpeg_start_decompress(&cinfo);
    if (cinfo.output_components != 3) {
        snprintf(err.message, sizeof err.message, "%d output components, want 3", cinfo.output_components);
        longjmp(err.jump, 1);
    }
    size_t stride = (size_t)cinfo.output_width * 3;
    pixels = malloc(stride * cinfo.output_height);
    if (!pixels) {
        jpeg_destroy_decompress(&cinfo);
        return FKD_FAIL(FKD_ERR_NOMEM, "%s: cannot allocate %ux%u pixels", what, cinfo.output_width,
                        cinfo.output_height);
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = pixels + stride * cinfo.output_scanline;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);
    out->width = (int)cinfo.output_width;
    out->height = (int)cinfo.output_height;
    out->channels = 3;
    out->pixels = pixels;
    jpeg_destroy_decompress(&cinfo);
    return FKD_OK;
}

fkd_status fkd_image_encode_jpeg(const fkd_image *img, int quality, uint8_t **bytes, size_t *size)
{
    *bytes = NULL;
    *size = 0;
    FKD_TRY(check_rgb_image(img, "JPEG encoder"));
    if (quality < 1 || quality > 100) return FKD_FAIL(FKD_ERR_ARG, "JPEG encoder: quality %d outside 1..100", quality);
    struct jpeg_compress_struct cinfo;
    jpeg_error err;
    /* jpeg_mem_dest mallocs (and grows) the buffer through &mem; its address escapes,
     * so it is read from memory after a longjmp. */
    unsigned char *mem = NULL;
    unsigned long buf_size = 0;
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = jpeg_error_exit;
    err.pub.emit_message = jpeg_emit_message;
    if (setjmp(err.jump)) {
        jpeg_destroy_compress(&cinfo);
        free(mem);
        return FKD_FAIL(FKD_ERR_FORMAT, "JPEG encoder: %s", err.message);
    }
    jpeg_create_compress(&cinfo);
    jpeg_mem_dest(&cinfo, &mem, &buf_size);
    cinfo.image_width = (JDIMENSION)img->width;
    cinfo.image_height = (JDIMENSION)img->height;
    cinfo.input_components = 3;
    cinfo.in_color_space = JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    size_t stride = (size_t)img->width * 3;
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = img->pixels + stride * cinfo.next_scanline;
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    *bytes = mem;
    *size = buf_size;
    return FKD_OK;
}

/* ---------------------------------------------------------------- PNG */

typedef struct {
    jmp_buf jump;
    char message[256];
    /* memory source */
    const uint8_t *src;
    size_t src_size, src_pos;
    /* memory sink */
    uint8_t *dst;
    size_t dst_size, dst_cap;
} png_io;

static void png_on_error(png_structp png, png_const_charp msg)
{
    png_io *io = png_get_error_ptr(png);
    snprintf(io->message, sizeof io->message, "%s", msg);
    longjmp(io->jump, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg; /* benign (e.g. unknown chunks, sRGB profile notes) */
}

static void png_read_mem(png_structp png, png_bytep data, size_t length)
{
    png_io *io = png_get_io_ptr(png);
    if (length > io->src_size - io->src_pos) png_error(png, "truncated data");
    memcpy(data, io->src + io->src_pos, length);
    io->src_pos += length;
}

static void png_write_mem(png_structp png, png_bytep data, size_t length)
{
    png_io *io = png_get_io_ptr(png);
    if (io->dst_size + length > io->dst_cap) {
        size_t cap = io->dst_cap ? io->dst_cap : 4096;
        while (cap < io->dst_size + length) cap *= 2;
        uint8_t *grown = realloc(io->dst, cap);
        if (!grown) png_error(png, "out of memory");
        io->dst = grown;
        io->dst_cap = cap;
    }
    memcpy(io->dst + io->dst_size, data, length);
    io->dst_size += length;
}

static void png_flush_mem(png_structp png)
{
    (void)png;
}

static fkd_status decode_png(const uint8_t *bytes, size_t size, const char *what, fkd_image *out)
{
    png_io io = {.src = bytes, .src_size = size};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &io, png_on_error, png_on_warning);
    if (!png) return FKD_FAIL(FKD_ERR_NOMEM, "%s: cannot create a PNG reader", what);
    png_infop volatile info = NULL;
    uint8_t *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(io.jump)) {
        png_infop i = info;
        png_destroy_read_struct(&png, i ? &i : NULL, NULL);
        free(pixels);
        free(rows);
        return FKD_FAIL(FKD_ERR_FORMAT, "%s: corrupt PNG: %s", what, io.message);
    }
    info = png_create_info_struct(png);
    if (!info) png_error(png, "cannot create info struct");
    png_set_user_limits(png, FKD_IMAGE_MAX_SIDE, FKD_IMAGE_MAX_SIDE);
    png_set_read_fn(png, &io, png_read_mem);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    /* Everything to 8-bit RGB: palette and low bit depths expanded, 16 bits stripped,
     * grey replicated, alpha dropped (face crops carry none worth compositing). */
    png_set_expand(png);
    png_set_strip_16(png);
    png_set_gray_to_rgb(png);
    png_set_strip_alpha(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if (png_get_channels(png, info) != 3 || png_get_rowbytes(png, info) != (size_t)w * 3)
        png_error(png, "cannot convert to 8-bit RGB");
    pixels = malloc((size_t)w * h * 3);
    rows = malloc(sizeof(png_bytep) * h);
    if (!pixels || !rows) png_error(png, "out of memory");
    for (png_uint_32 y = 0; y < h; y++) rows[y] = pixels + (size_t)y * w * 3;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    png_infop i = info;
    png_destroy_read_struct(&png, &i, NULL);
    free(rows);
    out->width = (int)w;
    out->height = (int)h;
    out->channels = 3;
    out->pixels = pixels;
    return FKD_OK;
}

fkd_status fkd_image_encode_png(const fkd_image *img, uint8_t **bytes, size_t *size)
{
    *bytes = NULL;
    *size = 0;
    FKD_TRY(check_rgb_image(img, "PNG encoder"));
    png_io io = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &io, png_on_error, png_on_warning);
    if (!png) return FKD_FAIL(FKD_ERR_NOMEM, "PNG encoder: cannot create a writer");
    png_infop volatile info = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(io.jump)) {
        png_infop i = info;
        png_destroy_write_struct(&png, i ? &i : NULL);
        free(rows);
        free(io.dst);
        return FKD_FAIL(FKD_ERR_FORMAT, "PNG encoder: %s", io.message);
    }
    info = png_create_info_struct(png);
    if (!info) png_error(png, "cannot create info struct");
    png_set_write_fn(png, &io, png_write_mem, png_flush_mem);
    png_set_IHDR(png, info, (png_uint_32)img->width, (png_uint_32)img->height, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    rows = malloc(sizeof(png_bytep) * (size_t)img->height);
    if (!rows) png_error(png, "out of memory");
    for (int y = 0; y < img->height; y++) rows[y] = img->pixels + (size_t)y * img->width * 3;
    png_set_rows(png, info, rows);
    png_write_png(png, info, PNG_TRANSFORM_IDENTITY, NULL);
    png_infop i = info;
    png_destroy_write_struct(&png, &i);
    free(rows);
    *bytes = io.dst;
    *size = io.dst_size;
    return FKD_OK;
}

/* ---------------------------------------------------------------- entry points */

fkd_status fkd_image_decode(const uint8_t *bytes, size_t size, const char *what, fkd_image *out)
{
    memset(out, 0, sizeof *out);
    if (!what) what = "image";
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (size >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF)
        return decode_jpeg(bytes, size, what, out);
    if (size >= 8 && memcmp(bytes, png_sig, 8) == 0) return decode_png(bytes, size, what, out);
    if (size == 0) return FKD_FAIL(FKD_ERR_FORMAT, "%s: empty image data", what);
    return FKD_FAIL(FKD_ERR_FORMAT, "%s: not a JPEG or PNG (first bytes %02x %02x %02x, %zu bytes)", what,
                    bytes[0], size > 1 ? bytes[1] : 0, size > 2 ? bytes[2] : 0, size);
}

fkd_status fkd_image_load(const char *path, fkd_image *out)
{
    memset(out, 0, sizeof *out);
    uint8_t *data;
    size_t size;
    FKD_TRY(fkd_file_read_all(path, &data, &size));
    fkd_status s = fkd_image_decode(data, size, path, out);
    free(data);
    return s;
}

fkd_status fkd_image_save_png(const fkd_image *img, const char *path)
{
    uint8_t *bytes;
    size_t size;
    fkd_status s = fkd_image_encode_png(img, &bytes, &size);
    if (s != FKD_OK) return FKD_WRAP(s, "%s: ", path);
    s = fkd_atomic_write(path, bytes, size);
    free(bytes);
    return s;
}
