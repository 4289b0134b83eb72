/* Scratch directories for tests; see tmpdir.h. */
#include "tests/support/tmpdir.h"

#include <stdio.h>
#include <stdlib.h>

int fkd_test_tmpdir_make(char *dir, size_t size, const char *tag)
{
    if (snprintf(dir, size, "/tmp/fkd_%s_XXXXXX", tag) >= (int)size) return -1;
    return mkdtemp(dir) ? 0 : -1;
}

int fkd_test_tmpdir_remove(const char *dir)
{
    char cmd[512];
    if (snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir) >= (int)sizeof(cmd)) return -1;
    return system(cmd) == 0 ? 0 : -1;
}

void fkd_test_tmpdir_path(char *out, size_t size, const char *dir, const char *name)
{
    snprintf(out, size, "%s/%s", dir, name);
}
