/* Fuzz target: recipe YAML (lib/io/yamltree.c, lib/io/recipe.c).
 *
 * Input: recipe YAML, optionally followed by a NUL byte and NUL-separated `--set`
 * assignments ("optimizer.lr=0.1"). The YAML is parsed as a bare tree, then loaded as a
 * recipe with the assignments (schema checks, enum and range checks, `extends`
 * resolution). A recipe that loads must emit as YAML again and that YAML must load to
 * the same resolved recipe text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/fuzz_file.h"
#include "io/recipe.h"
#include "io/yamltree.h"

static void check_round_trip(const fkd_recipe *r)
{
    char *yaml = NULL;
    if (fkd_recipe_emit(r, &yaml) != FKD_OK) {
        fprintf(stderr, "a loaded recipe does not emit: %s\n", fkd_last_error());
        abort();
    }
    fuzz_file f;
    if (fuzz_file_open(&f, (const uint8_t *)yaml, strlen(yaml)) == 0) {
        fkd_recipe again;
        if (fkd_recipe_load(&again, f.path, NULL, 0) != FKD_OK) {
            fprintf(stderr, "an emitted recipe does not load: %s\n%s", fkd_last_error(), yaml);
            abort();
        }
        char *yaml2 = NULL;
        if (fkd_recipe_emit(&again, &yaml2) != FKD_OK || strcmp(yaml, yaml2) != 0) {
            fprintf(stderr, "emit(load(emit(r))) differs from emit(r):\n%s---\n%s", yaml, yaml2 ? yaml2 : "");
            abort();
        }
        free(yaml2);
        fkd_recipe_free(&again);
        fuzz_file_close(&f);
    }
    free(yaml);
}

#define MAX_SETS 8

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t yaml_size = nul ? (size_t)(nul - data) : size;
    fkd_yaml_node *root = NULL;
    if (fkd_yaml_parse((const char *)data, yaml_size, "fuzz.yaml", true, &root) == FKD_OK) fkd_yaml_free(root);

    /* The assignments, NUL-terminated in a copy of the tail. */
    char *tail = NULL;
    const char *sets[MAX_SETS];
    size_t n_sets = 0;
    if (nul) {
        size_t n = size - yaml_size - 1;
        tail = malloc(n + 1);
        if (!tail) return 0;
        memcpy(tail, nul + 1, n);
        tail[n] = 0;
        for (char *p = tail; p <= tail + n && n_sets < MAX_SETS; p += strlen(p) + 1) sets[n_sets++] = p;
    }
    fuzz_file f;
    if (fuzz_file_open(&f, data, yaml_size) == 0) {
        fkd_recipe r;
        if (fkd_recipe_load(&r, f.path, sets, n_sets) == FKD_OK) {
            check_round_trip(&r);
            fkd_recipe_free(&r);
        }
        fuzz_file_close(&f);
    }
    free(tail);
    return 0;
}
