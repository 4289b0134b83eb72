/* Fuzz target: .npy (lib/io/npy.c): the header parser on bytes, then whole-file reads
 * asking for each of the types callers ask for. */
#include "tests/support/fuzz_file.h"
#include "io/npy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fkd_npy_info info;
    (void)fkd_npy_parse_header("fuzz.npy", data, size, &info);
    fuzz_file f;
    if (fuzz_file_open(&f, data, size) != 0) return 0;
    static const fkd_npy_dtype wants[] = {FKD_NPY_F32, FKD_NPY_F64, FKD_NPY_I64};
    for (size_t i = 0; i < sizeof wants / sizeof wants[0]; i++) {
        fkd_npy_array a;
        if (fkd_npy_read(f.path, wants[i], &a) == FKD_OK) fkd_npy_free(&a);
    }
    fuzz_file_close(&f);
    return 0;
}
