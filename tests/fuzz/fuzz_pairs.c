/* Fuzz target: LFW-style pairs.txt (fkd_pairs_load in lib/data/folder.c).
 *
 * The loader checks that each image exists, so the target gives it a root holding
 * A/A_0001.jpg … A/A_0009.jpg and the same for B (empty files, made once in a temporary
 * folder and removed at exit); the seeds name those images. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/fileio.h"
#include "data/folder.h"
#include "tests/support/fuzz_file.h"

static char pairs_root[64];

static void remove_root(void)
{
    char path[128];
    for (char id = 'A'; id <= 'B'; id++) {
        for (int n = 1; n <= 9; n++) {
            snprintf(path, sizeof path, "%s/%c/%c_%04d.jpg", pairs_root, id, id, n);
            unlink(path);
        }
        snprintf(path, sizeof path, "%s/%c", pairs_root, id);
        rmdir(path);
    }
    rmdir(pairs_root);
}

static int make_root(void)
{
    snprintf(pairs_root, sizeof pairs_root, "/tmp/fkd_fuzz_pairs_XXXXXX");
    if (!mkdtemp(pairs_root)) return -1;
    atexit(remove_root);
    char path[128];
    for (char id = 'A'; id <= 'B'; id++) {
        snprintf(path, sizeof path, "%s/%c", pairs_root, id);
        if (fkd_mkdir_p(path) != FKD_OK) return -1;
        for (int n = 1; n <= 9; n++) {
            snprintf(path, sizeof path, "%s/%c/%c_%04d.jpg", pairs_root, id, id, n);
            if (fkd_atomic_write(path, "", 0) != FKD_OK) return -1;
        }
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!pairs_root[0] && make_root() != 0) abort(); /* the harness itself is broken */
    fuzz_file f;
    if (fuzz_file_open(&f, data, size) != 0) return 0;
    fkd_pairs p;
    if (fkd_pairs_load(&p, f.path, pairs_root) == FKD_OK) {
        if (p.n_pairs < 1 || p.n_folds < 1) abort();
        for (int64_t i = 0; i < 2 * p.n_pairs; i++)
            if (!p.paths[i] || !p.paths[i][0]) abort();
    }
    fkd_pairs_free(&p); /* the caller frees, after a failure too (as fkd_bench_open_pairs does) */
    fuzz_file_close(&f);
    return 0;
}
