#include "train_fixture.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/fileio.h"
#include "data/image.h"
#include "data/synth.h"
#include "data/verbin.h"
#include "eval/csvtable.h"
#include "io/safetensors.h"

fkd_status fkd_test_write_synth_bin(const char *path, uint64_t seed, int n_pairs)
{
    fkd_synth_world w;
    fkd_synth_world_default(&w, seed, 10);
    const int n_images = 2 * n_pairs;
    uint8_t **images = calloc((size_t)n_images, sizeof *images);
    size_t *sizes = calloc((size_t)n_images, sizeof *sizes);
    bool *issame = calloc((size_t)n_pairs, sizeof *issame);
    fkd_status s = images && sizes && issame ? FKD_OK : FKD_FAIL(FKD_ERR_NOMEM, "test bin: out of memory");
    fkd_image img = {0};
    for (int i = 0; s == FKD_OK && i < n_pairs; i++) {
        /* Pair i: identity base+i with itself (even i) or with identity base+i+1 (odd i). */
        issame[i] = i % 2 == 0;
        int64_t id[2] = {FKD_SYNTH_HELDOUT_BASE + i, FKD_SYNTH_HELDOUT_BASE + i + (issame[i] ? 0 : 1)};
        for (int k = 0; s == FKD_OK && k < 2; k++) {
            s = fkd_synth_render(&w, id[k], (uint32_t)k, NULL, &img);
            if (s == FKD_OK) s = fkd_image_encode_png(&img, &images[2 * i + k], &sizes[2 * i + k]);
        }
    }
    fkd_image_free(&img);
    if (s == FKD_OK) s = fkd_verbin_write(path, (const uint8_t *const *)images, sizes, issame, n_pairs, 4);
    for (int i = 0; images && i < n_images; i++) free(images[i]);
    free(images);
    free(sizes);
    free(issame);
    return s;
}

int fkd_test_write_text(char *path, const char *dir, const char *name, const char *text)
{
    snprintf(path, 4096, "%s/%s", dir, name);
    return fkd_atomic_write(path, text, strlen(text)) == FKD_OK ? 0 : -1;
}

int fkd_test_csv_column(const char *path, const char *name, double **values)
{
    *values = NULL;
    fkd_csv_table t = {0};
    if (fkd_csv_table_load(path, &t) != FKD_OK) return -1;
    int col = fkd_csv_table_column(&t, name), n = t.n_rows;
    if (col < 0) {
        FKD_FAIL(FKD_ERR_NOTFOUND, "%s: no column '%s'", path, name);
        n = -1;
    } else if (!(*values = malloc(sizeof(double) * (size_t)(n + 1)))) {
        n = -1;
    } else {
        fkd_csv_table_get(&t, col, *values);
    }
    fkd_csv_table_free(&t);
    return n;
}

/* Largest |a - b| over one pair of tensors of equal shape. */
static double tensor_diff(const fkd_st_tensor *ta, const fkd_st_tensor *tb)
{
    float *a = malloc(sizeof(float) * (size_t)(ta->numel + 1)), *b = malloc(sizeof(float) * (size_t)(tb->numel + 1));
    double worst = a && b ? 0 : INFINITY;
    if (a && b) {
        fkd_st_tensor_to_f32(ta, a);
        fkd_st_tensor_to_f32(tb, b);
        for (int64_t k = 0; k < ta->numel; k++) {
            double d = fabs((double)a[k] - (double)b[k]);
            if (!(d <= worst)) worst = d; /* NaN counts as the worst */
        }
    }
    free(a);
    free(b);
    return worst;
}

double fkd_test_safetensors_diff(const char *a, const char *b, const char *only, char *worst, size_t worst_size)
{
    fkd_safetensors sa = {0}, sb = {0};
    double result = -1;
    snprintf(worst, worst_size, "unreadable file");
    if (fkd_safetensors_read(&sa, a) != FKD_OK || fkd_safetensors_read(&sb, b) != FKD_OK) goto done;
    if (!only && sa.count != sb.count) {
        snprintf(worst, worst_size, "%d vs %d tensors", sa.count, sb.count);
        goto done;
    }
    result = only && !fkd_safetensors_find(&sa, only) ? -1 : 0;
    snprintf(worst, worst_size, result < 0 ? "no tensor '%s'" : "(none)", only ? only : "");
    for (int i = 0; i < sa.count; i++) {
        const fkd_st_tensor *ta = &sa.tensors[i], *tb = fkd_safetensors_find(&sb, ta->name);
        if (only && strcmp(ta->name, only) != 0) continue;
        if (!tb || tb->numel != ta->numel || tb->ndims != ta->ndims) {
            snprintf(worst, worst_size, "%s: missing or reshaped in %s", ta->name, b);
            result = -1;
            break;
        }
        double d = tensor_diff(ta, tb);
        if (!(d <= result)) {
            result = d;
            snprintf(worst, worst_size, "%s", ta->name);
        }
    }
done:
    fkd_safetensors_free(&sa);
    fkd_safetensors_free(&sb);
    return result;
}

int fkd_test_file_nonempty(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && st.st_size > 0;
}

double fkd_test_mean(const double *values, int from, int to)
{
    double sum = 0;
    for (int i = from; i < to; i++) sum += values[i];
    return sum / (to - from);
}
