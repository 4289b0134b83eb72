#include "core/fileio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

fkd_status fkd_file_read_all(const char *path, uint8_t **data, size_t *size)
{
    *data = NULL;
    *size = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) return FKD_FAIL(FKD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(fp);
        return FKD_FAIL(FKD_ERR_IO, "%s: not a regular file", path);
    }
    size_t n = (size_t)st.st_size;
    uint8_t *buf = malloc(n + 1);
    if (!buf) {
        fclose(fp);
        return FKD_FAIL(FKD_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, n + 1);
    }
    size_t got = fread(buf, 1, n, fp);
    int read_error = ferror(fp);
    fclose(fp);
    if (got != n || read_error) {
        free(buf);
        return FKD_FAIL(FKD_ERR_IO, "%s: read %zu of %zu bytes", path, got, n);
    }
    buf[n] = 0;
    *data = buf;
    *size = n;
    return FKD_OK;
}

fkd_status fkd_atomic_open(fkd_atomic_file *f, const char *path)
{
    memset(f, 0, sizeof *f);
    size_t len = strlen(path);
    f->path = malloc(len + 1);
    f->tmp_path = malloc(len + 32);
    if (!f->path || !f->tmp_path) {
        free(f->path);
        free(f->tmp_path);
        return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", path);
    }
    memcpy(f->path, path, len + 1);
    snprintf(f->tmp_path, len + 32, "%s.tmp.%ld", path, (long)getpid());
    f->fp = fopen(f->tmp_path, "wb");
    if (!f->fp) {
        fkd_status s = FKD_FAIL(FKD_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
        free(f->path);
        free(f->tmp_path);
        memset(f, 0, sizeof *f);
        return s;
    }
    return FKD_OK;
}

void fkd_atomic_abort(fkd_atomic_file *f)
{
    if (f->fp) fclose(f->fp);
    if (f->tmp_path) remove(f->tmp_path);
    free(f->path);
    free(f->tmp_path);
    memset(f, 0, sizeof *f);
}

/* A rename survives a power cut only once its directory is synced too. Best effort: some
 * file systems refuse fsync on a directory, and the data itself is already safe. */
static void sync_parent_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char dir[4096] = ".";
    if (slash == path) {
        snprintf(dir, sizeof dir, "/");
    } else if (slash) {
        size_t len = (size_t)(slash - path);
        if (len >= sizeof dir) return;
        memcpy(dir, path, len);
        dir[len] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    (void)fsync(fd);
    close(fd);
}

fkd_status fkd_atomic_commit(fkd_atomic_file *f)
{
    fkd_status s = FKD_OK;
    if (fflush(f->fp) != 0 || ferror(f->fp) || fsync(fileno(f->fp)) != 0)
        s = FKD_FAIL(FKD_ERR_IO, "%s: write failed: %s", f->path, strerror(errno));
    if (fclose(f->fp) != 0 && s == FKD_OK)
        s = FKD_FAIL(FKD_ERR_IO, "%s: close failed: %s", f->path, strerror(errno));
    f->fp = NULL;
    if (s == FKD_OK && rename(f->tmp_path, f->path) != 0)
        s = FKD_FAIL(FKD_ERR_IO, "%s: rename failed: %s", f->path, strerror(errno));
    if (s != FKD_OK)
        remove(f->tmp_path);
    else
        sync_parent_dir(f->path);
    free(f->path);
    free(f->tmp_path);
    memset(f, 0, sizeof *f);
    return s;
}

fkd_status fkd_atomic_write(const char *path, const void *data, size_t size)
{
    fkd_atomic_file f;
    FKD_TRY(fkd_atomic_open(&f, path));
    if (size && fwrite(data, 1, size, f.fp) != size) {
        fkd_status s = FKD_FAIL(FKD_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        fkd_atomic_abort(&f);
        return s;
    }
    return fkd_atomic_commit(&f);
}

/* The pid of a temporary's writer, or 0 when `name` is not "<something>.tmp.<digits>". */
static long temporary_owner(const char *name)
{
    const char *tag = strstr(name, ".tmp.");
    if (!tag || tag == name) return 0;
    for (;;) {
        const char *next = strstr(tag + 1, ".tmp.");
        if (!next) break;
        tag = next;
    }
    const char *digits = tag + 5;
    if (!*digits || strspn(digits, "0123456789") != strlen(digits) || strlen(digits) > 9) return 0;
    return strtol(digits, NULL, 10);
}

fkd_status fkd_atomic_cleanup_dir(const char *dir, int *removed)
{
    if (removed) *removed = 0;
    DIR *d = opendir(dir);
    if (!d) return FKD_FAIL(FKD_ERR_IO, "%s: cannot list: %s", dir, strerror(errno));
    fkd_status s = FKD_OK;
    struct dirent *e;
    while (s == FKD_OK && (e = readdir(d)) != NULL) {
        long pid = temporary_owner(e->d_name);
        /* A live writer (this process or another run in the same folder) keeps its file. */
        if (pid <= 0 || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        char path[4096];
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path) continue;
        if (remove(path) != 0)
            s = FKD_FAIL(FKD_ERR_IO, "%s: cannot remove a stale temporary: %s", path, strerror(errno));
        else if (removed)
            (*removed)++;
    }
    closedir(d);
    return s;
}

fkd_status fkd_mkdir_p(const char *path)
{
    char buf[4096];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof buf) return FKD_FAIL(FKD_ERR_ARG, "bad directory path '%s'", path);
    memcpy(buf, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char saved = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return FKD_FAIL(FKD_ERR_IO, "%s: cannot create directory: %s", buf, strerror(errno));
            buf[i] = saved;
        }
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return FKD_FAIL(FKD_ERR_IO, "%s: not a directory", path);
    return FKD_OK;
}

const char *fkd_cache_dir(void)
{
    static _Thread_local char dir[4096];
    const char *env = getenv("FACEKD_CACHE");
    if (env && *env) return env;
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (xdg && *xdg)
        snprintf(dir, sizeof dir, "%s/facekd", xdg);
    else
        snprintf(dir, sizeof dir, "%s/.cache/facekd", home && *home ? home : "/tmp");
    return dir;
}
