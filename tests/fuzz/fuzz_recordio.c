/* Fuzz target: insightface RecordIO .rec + .idx (lib/data/recordio.c).
 *
 * Input layout: u16 little-endian n, then n bytes of .idx text, then the .rec bytes.
 * An archive that opens is read as the loader reads it: labels, then every image
 * record (the first 256), and each payload parsed. The whole input is also parsed as
 * one record payload. */
#include <stdlib.h>

#include "data/recordio.h"
#include "tests/support/fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fkd_rec_payload p;
    (void)fkd_recordio_parse(data, size, "fuzz payload", &p);
    if (size < 2) return 0;
    size_t idx_size = (size_t)data[0] | (size_t)data[1] << 8;
    if (idx_size > size - 2) idx_size = size - 2;
    fuzz_file idx, rec;
    if (fuzz_file_open(&idx, data + 2, idx_size) != 0) return 0;
    if (fuzz_file_open(&rec, data + 2 + idx_size, size - 2 - idx_size) != 0) {
        fuzz_file_close(&idx);
        return 0;
    }
    fkd_recordio r;
    if (fkd_recordio_open(&r, rec.path, idx.path) == FKD_OK) {
        uint8_t *buf = NULL;
        size_t cap = 0;
        for (int64_t i = 0; i < r.n_images && i < 256; i++) {
            int32_t label;
            (void)fkd_recordio_read_image(&r, i, &buf, &cap, &p, &label);
        }
        free(buf);
        (void)fkd_recordio_labels(&r);
    }
    fkd_recordio_close(&r);
    fuzz_file_close(&rec);
    fuzz_file_close(&idx);
    return 0;
}
