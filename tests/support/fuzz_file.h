/* Fuzz targets and their regression test: giving an input a file name.
 *
 * Several parsers take a path (they mmap or read whole files). fuzz_file_open() puts the
 * bytes in an anonymous in-memory file (memfd) and hands back "/proc/self/fd/N", so a
 * run touches no disk and leaves nothing behind. */
#ifndef FKD_TESTS_SUPPORT_FUZZ_FILE_H
#define FKD_TESTS_SUPPORT_FUZZ_FILE_H

#include <stddef.h>
#include <stdint.h>

#define FUZZ_PATH_CAP 64

typedef struct {
    int fd;
    char path[FUZZ_PATH_CAP];
} fuzz_file;

/* Returns 0, or -1 when the memfd could not be made (the target then skips the input). */
int fuzz_file_open(fuzz_file *f, const uint8_t *data, size_t size);
void fuzz_file_close(fuzz_file *f);

#endif
