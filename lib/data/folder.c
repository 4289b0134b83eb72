/* Image folders and LFW pairs.txt. */
#include "data/folder.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fileio.h"

typedef struct {
    char **items;
    int64_t n, cap;
} str_list;

static fkd_status str_list_add(str_list *l, const char *a, const char *b)
{
    if (l->n == l->cap) {
        int64_t c = l->cap ? l->cap * 2 : 64;
        char **p = realloc(l->items, (size_t)c * sizeof *p);
        if (!p) return FKD_FAIL(FKD_ERR_NOMEM, "out of memory listing '%s'", a);
        l->items = p;
        l->cap = c;
    }
    size_t na = strlen(a), nb = b ? strlen(b) : 0;
    char *s = malloc(na + nb + 2);
    if (!s) return FKD_FAIL(FKD_ERR_NOMEM, "out of memory listing '%s'", a);
    memcpy(s, a, na + 1);
    if (b) {
        s[na] = '/';
        memcpy(s + na + 1, b, nb + 1);
    }
    l->items[l->n++] = s;
    return FKD_OK;
}

static void str_list_free(str_list *l)
{
    for (int64_t i = 0; i < l->n; i++) free(l->items[i]);
    free(l->items);
    memset(l, 0, sizeof *l);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static bool is_image_name(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot && (strcasecmp(dot, ".jpg") == 0 || strcasecmp(dot, ".jpeg") == 0 || strcasecmp(dot, ".png") == 0);
}

/* Names in `dir` (sorted byte-wise) that are directories (want_dirs) or image files. */
static fkd_status list_dir(const char *dir, bool want_dirs, str_list *out)
{
    DIR *d = opendir(dir);
    if (!d) return FKD_FAIL(FKD_ERR_IO, "%s: cannot open directory: %s", dir, strerror(errno));
    fkd_status s = FKD_OK;
    struct dirent *e;
    size_t dir_len = strlen(dir);
    while (s == FKD_OK && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char *full = malloc(dir_len + strlen(e->d_name) + 2);
        if (!full) {
            s = FKD_FAIL(FKD_ERR_NOMEM, "out of memory listing '%s'", dir);
            break;
        }
        sprintf(full, "%s/%s", dir, e->d_name);
        struct stat st;
        bool ok = stat(full, &st) == 0;
        free(full);
        if (!ok) continue;
        if (want_dirs ? S_ISDIR(st.st_mode) : (S_ISREG(st.st_mode) && is_image_name(e->d_name)))
            s = str_list_add(out, e->d_name, NULL);
    }
    closedir(d);
    if (s == FKD_OK && out->n) qsort(out->items, (size_t)out->n, sizeof *out->items, cmp_str);
    return s;
}

fkd_status fkd_folder_open(fkd_folder *f, const char *root)
{
    memset(f, 0, sizeof *f);
    size_t n = strlen(root);
    while (n > 1 && root[n - 1] == '/') n--; /* "dir/" and "dir" name the same files */
    f->root = strndup(root, n);
    if (!f->root) return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", root);
    str_list ids = {0}, paths = {0};
    fkd_status s = list_dir(f->root, true, &ids);
    if (s == FKD_OK && ids.n == 0)
        s = FKD_FAIL(FKD_ERR_FORMAT, "%s: no identity sub-folders (an image folder holds one sub-folder per identity)",
                     f->root);
    if (s == FKD_OK && ids.n > INT32_MAX) s = FKD_FAIL(FKD_ERR_FORMAT, "%s: too many identity folders", f->root);
    int32_t *labels = NULL;
    int64_t labels_cap = 0;
    for (int64_t j = 0; j < ids.n && s == FKD_OK; j++) {
        char *dir = malloc(strlen(f->root) + strlen(ids.items[j]) + 2);
        if (!dir) {
            s = FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", f->root);
            break;
        }
        sprintf(dir, "%s/%s", f->root, ids.items[j]);
        str_list files = {0};
        s = list_dir(dir, false, &files);
        for (int64_t i = 0; i < files.n && s == FKD_OK; i++) {
            s = str_list_add(&paths, dir, files.items[i]);
            if (s == FKD_OK && paths.n > labels_cap) {
                labels_cap = paths.cap;
                int32_t *p = realloc(labels, (size_t)labels_cap * sizeof *p);
                if (!p) s = FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", f->root);
                else labels = p;
            }
            if (s == FKD_OK) labels[paths.n - 1] = (int32_t)j;
        }
        str_list_free(&files);
        free(dir);
    }
    if (s == FKD_OK && paths.n == 0)
        s = FKD_FAIL(FKD_ERR_FORMAT, "%s: no images (.jpg, .jpeg, .png) in any of its %" PRId64 " identity folders",
                     f->root, ids.n);
    f->identity_names = ids.items;
    f->n_identities = (int32_t)ids.n;
    f->paths = paths.items;
    f->n_images = paths.n;
    f->labels = labels;
    return s;
}

void fkd_folder_free(fkd_folder *f)
{
    if (!f) return;
    for (int32_t j = 0; j < f->n_identities; j++) free(f->identity_names[j]);
    for (int64_t i = 0; i < f->n_images; i++) free(f->paths[i]);
    free(f->identity_names);
    free(f->paths);
    free(f->labels);
    free(f->root);
    memset(f, 0, sizeof *f);
}

/* ---- pairs.txt -------------------------------------------------------------------------- */

/* Pairs a pairs.txt may announce: far beyond any benchmark (LFW: 10 folds x 600). */
#define PAIRS_MAX 1000000000L

static bool parse_count(const char *tok, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(tok, &end, 10);
    if (errno || *end || end == tok || v < 0) return false;
    *out = v;
    return true;
}

static fkd_status pair_path(const char *root, const char *name, long n, const char *txt, int64_t line, char **out)
{
    size_t len = strlen(root) + 2 * strlen(name) + 32;
    *out = malloc(len);
    if (!*out) return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", txt);
    snprintf(*out, len, "%s/%s/%s_%04ld.jpg", root, name, name, n);
    if (access(*out, R_OK) != 0)
        return FKD_FAIL(FKD_ERR_NOTFOUND, "%s: line %" PRId64 ": image %s: %s", txt, line, *out, strerror(errno));
    return FKD_OK;
}

fkd_status fkd_pairs_load(fkd_pairs *p, const char *pairs_txt, const char *image_root)
{
    memset(p, 0, sizeof *p);
    uint8_t *text;
    size_t size;
    FKD_TRY(fkd_file_read_all(pairs_txt, &text, &size));
    fkd_status s = FKD_OK;
    int64_t line = 0, cap = 0;
    long expected = -1;
    char *save_line = NULL;
    for (char *ln = strtok_r((char *)text, "\n", &save_line); ln && s == FKD_OK; ln = strtok_r(NULL, "\n", &save_line)) {
        line++;
        char *tok[5], *save = NULL;
        int nt = 0;
        for (char *t = strtok_r(ln, " \t\r", &save); t; t = strtok_r(NULL, " \t\r", &save)) {
            if (nt == 5) break;
            tok[nt++] = t;
        }
        if (nt == 0) continue;
        long a, b;
        if (expected < 0) { /* header: "folds pairs_per_fold" (each fold: that many same + different) */
            if (nt == 2 && parse_count(tok[0], &a) && parse_count(tok[1], &b) && a > 0 && b > 0) {
                /* The bound keeps 2·a·b from overflowing (and a within an int). */
                if (a > PAIRS_MAX / 2 / b)
                    s = FKD_FAIL(FKD_ERR_FORMAT, "%s: line %" PRId64 ": %ld folds of 2 x %ld pairs is more than %ld pairs",
                                 pairs_txt, line, a, b, PAIRS_MAX);
                p->n_folds = (int)(s == FKD_OK ? a : 0);
                expected = s == FKD_OK ? 2 * a * b : 0;
            } else if (nt == 1 && parse_count(tok[0], &a) && a > 0) {
                if (a > PAIRS_MAX)
                    s = FKD_FAIL(FKD_ERR_FORMAT, "%s: line %" PRId64 ": %ld pairs is more than %ld", pairs_txt, line, a,
                                 PAIRS_MAX);
                p->n_folds = 1;
                expected = a;
            } else {
                s = FKD_FAIL(FKD_ERR_FORMAT, "%s: line 1: expected a header \"folds pairs_per_fold\"", pairs_txt);
            }
            continue;
        }
        if (p->n_pairs == cap) {
            cap = cap ? cap * 2 : 256;
            char **np = realloc(p->paths, (size_t)(2 * cap) * sizeof *np);
            if (np) p->paths = np;
            bool *ns = realloc(p->issame, (size_t)cap * sizeof *ns);
            if (ns) p->issame = ns;
            if (!np || !ns) {
                s = FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", pairs_txt);
                break;
            }
        }
        char **pp = &p->paths[2 * p->n_pairs];
        pp[0] = pp[1] = NULL;
        if (nt == 3 && parse_count(tok[1], &a) && parse_count(tok[2], &b)) {
            p->issame[p->n_pairs++] = true;
            s = pair_path(image_root, tok[0], a, pairs_txt, line, &pp[0]);
            if (s == FKD_OK) s = pair_path(image_root, tok[0], b, pairs_txt, line, &pp[1]);
        } else if (nt == 4 && parse_count(tok[1], &a) && parse_count(tok[3], &b)) {
            p->issame[p->n_pairs++] = false;
            s = pair_path(image_root, tok[0], a, pairs_txt, line, &pp[0]);
            if (s == FKD_OK) s = pair_path(image_root, tok[2], b, pairs_txt, line, &pp[1]);
        } else {
            s = FKD_FAIL(FKD_ERR_FORMAT, "%s: line %" PRId64 ": expected \"name n1 n2\" or \"name1 n1 name2 n2\"",
                         pairs_txt, line);
        }
    }
    free(text);
    if (s == FKD_OK && expected < 0) s = FKD_FAIL(FKD_ERR_FORMAT, "%s: empty pairs list", pairs_txt);
    if (s == FKD_OK && p->n_pairs != expected)
        s = FKD_FAIL(FKD_ERR_FORMAT, "%s: header announces %ld pairs, the file lists %" PRId64, pairs_txt, expected,
                     p->n_pairs);
    return s;
}

void fkd_pairs_free(fkd_pairs *p)
{
    if (!p) return;
    for (int64_t i = 0; i < 2 * p->n_pairs; i++) free(p->paths ? p->paths[i] : NULL);
    free(p->paths);
    free(p->issame);
    memset(p, 0, sizeof *p);
}
