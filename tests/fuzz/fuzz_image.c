/* Fuzz target: JPEG and PNG decoding (lib/data/image.c over libjpeg-turbo and libpng). */
#include "data/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fkd_image img;
    if (fkd_image_decode(data, size, "fuzz image", &img) == FKD_OK) {
        /* Touch the last pixel: the buffer must hold width*height*3 bytes. */
        volatile uint8_t last = img.pixels[(size_t)img.width * img.height * img.channels - 1];
        (void)last;
        fkd_image_free(&img);
    }
    return 0;
}
