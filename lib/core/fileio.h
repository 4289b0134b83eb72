/* Whole-file reads and crash-safe writes.
 *
 * Every output facekd writes (checkpoints, caches, reports, images, exports) goes
 * through fkd_atomic_*: the data is written to "<path>.tmp.<pid>", fsync'ed and renamed
 * over <path> (then the folder is fsync'ed), so a crash leaves either the old file or the
 * new one, never half of one. */
#ifndef FKD_CORE_FILEIO_H
#define FKD_CORE_FILEIO_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/status.h"

/* Reads a whole file into a malloc'ed buffer (NUL-terminated for convenience; the
 * terminator is not counted in *size). */
fkd_status fkd_file_read_all(const char *path, uint8_t **data, size_t *size);

/* Writes `size` bytes to `path` atomically. */
fkd_status fkd_atomic_write(const char *path, const void *data, size_t size);

/* Streaming variant: open, fwrite to ->fp, then commit (fsync + rename) or abort
 * (remove the temporary). Always call one of commit/abort after a successful open. */
typedef struct {
    FILE *fp;
    char *path;
    char *tmp_path;
} fkd_atomic_file;

fkd_status fkd_atomic_open(fkd_atomic_file *f, const char *path);
fkd_status fkd_atomic_commit(fkd_atomic_file *f);
void fkd_atomic_abort(fkd_atomic_file *f);

/* Removes the temporaries ("<name>.tmp.<pid>") that writers killed before commit or
 * abort (SIGKILL, power loss) left in `dir`: only those whose process no longer exists.
 * *removed (may be NULL) receives how many went. */
fkd_status fkd_atomic_cleanup_dir(const char *dir, int *removed);

/* Where facekd keeps files it can make again (rendered synthetic benchmarks, teacher
 * caches): $FACEKD_CACHE, else $XDG_CACHE_HOME/facekd, else $HOME/.cache/facekd. */
const char *fkd_cache_dir(void);

/* Creates a directory and its parents (like mkdir -p). */
fkd_status fkd_mkdir_p(const char *path);

#endif
