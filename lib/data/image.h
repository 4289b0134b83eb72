/* Images in memory and the JPEG (libjpeg-turbo) / PNG (libpng) codecs.
 * Pixels are 8-bit interleaved RGB (channels = 3), row-major, no padding. */
#ifndef FKD_DATA_IMAGE_H
#define FKD_DATA_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct {
    int width, height, channels; /* channels is 3 (RGB) for decoded images */
    uint8_t *pixels;             /* width*height*channels bytes, owned */
} fkd_image;

/* Decodes JPEG or PNG bytes (detected by signature) to RGB (grey and RGBA converted).
 * `what` names the source in error messages ("train.rec record 17"). */
fkd_status fkd_image_decode(const uint8_t *bytes, size_t size, const char *what, fkd_image *out);
fkd_status fkd_image_load(const char *path, fkd_image *out);
/* Encodes RGB to JPEG (quality 1..100) or PNG into a malloc'ed buffer. */
fkd_status fkd_image_encode_jpeg(const fkd_image *img, int quality, uint8_t **bytes, size_t *size);
fkd_status fkd_image_encode_png(const fkd_image *img, uint8_t **bytes, size_t *size);
/* Writes a PNG file atomically (temporary name, fsync, rename). */
fkd_status fkd_image_save_png(const fkd_image *img, const char *path);
void fkd_image_free(fkd_image *img);

#endif
