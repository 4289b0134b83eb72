/* Fuzz target: safetensors (lib/io/safetensors.c).
 *
 * A file that parses is then used as callers use it: every tensor found by name and
 * converted to fp32, every metadata key looked up. */
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);
    fkd_safetensors st;
    if (fkd_safetensors_parse(&st, "fuzz.safetensors", buf, size) == FKD_OK) {
        for (int i = 0; i < st.count; i++) {
            const fkd_st_tensor *t = fkd_safetensors_find(&st, st.tensors[i].name);
            if (t != &st.tensors[i] && (!t || strcmp(t->name, st.tensors[i].name) != 0)) abort();
            float *out = malloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1));
            if (out) fkd_st_tensor_to_f32(t, out);
            free(out);
        }
        for (int i = 0; i < st.meta_count; i++)
            if (!fkd_safetensors_meta(&st, st.meta[i].key)) abort();
    }
    fkd_safetensors_free(&st);
    return 0;
}
