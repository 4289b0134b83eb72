#include "tests/support/data_files.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *fkd_test_tmpdir(const char *tag)
{
    const char *base = getenv("TMPDIR");
    char tmpl[512];
    snprintf(tmpl, sizeof tmpl, "%s/facekd-%s-XXXXXX", base && *base ? base : "/tmp", tag);
    char *d = mkdtemp(tmpl);
    return d ? strdup(d) : NULL;
}

const char *fkd_test_path(const char *dir, const char *name)
{
    static char bufs[8][1024];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof bufs[0], "%s/%s", dir, name);
    return b;
}

int fkd_test_write(const char *path, const void *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t n = size ? fwrite(data, 1, size, f) : 0;
    return fclose(f) == 0 && n == size ? 0 : -1;
}

fkd_image fkd_test_image(int w, int h, int seed)
{
    fkd_image img = {w, h, 3, malloc((size_t)w * h * 3)};
    for (int y = 0; img.pixels && y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++)
                img.pixels[((size_t)y * w + x) * 3 + c] = (uint8_t)((x * 2 + y + c * 60 + seed * 37) % 256);
    return img;
}

void fkd_test_rmtree(const char *dir)
{
    if (!dir || !strstr(dir, "facekd-")) return;
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}
