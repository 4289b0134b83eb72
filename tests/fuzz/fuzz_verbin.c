/* Fuzz target: insightface verification .bin pickles (lib/data/verbin.c). The images
 * inside are not decoded here (fuzz_image covers the decoders). */
#include <stdlib.h>

#include "data/verbin.h"
#include "tests/support/fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_file f;
    if (fuzz_file_open(&f, data, size) != 0) return 0;
    fkd_verbin set;
    if (fkd_verbin_load(f.path, &set) == FKD_OK) {
        /* Every image must lie inside memory the set owns: read its first and last byte. */
        volatile uint8_t sink = 0;
        for (int64_t i = 0; i < 2 * set.n_pairs; i++)
            if (set.sizes[i]) sink ^= set.images[i][0] ^ set.images[i][set.sizes[i] - 1];
        for (int64_t i = 0; i < set.n_pairs; i++) sink ^= (uint8_t)set.issame[i];
        (void)sink;
    }
    fkd_verbin_free(&set);
    fuzz_file_close(&f);
    return 0;
}
