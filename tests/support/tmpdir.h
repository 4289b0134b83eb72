/* A scratch directory per test program, removed with everything in it. */
#ifndef FKD_TESTS_TMPDIR_H
#define FKD_TESTS_TMPDIR_H

#include <stddef.h>

/* Creates /tmp/fkd_<tag>_XXXXXX; the path goes to dir (size >= 64). 0 on success. */
int fkd_test_tmpdir_make(char *dir, size_t size, const char *tag);
/* Removes the directory tree (rm -rf). 0 on success. */
int fkd_test_tmpdir_remove(const char *dir);
/* dir + "/" + name into out. */
void fkd_test_tmpdir_path(char *out, size_t size, const char *dir, const char *name);

#endif
