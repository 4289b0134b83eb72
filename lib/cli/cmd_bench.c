/* facekd bench: images per second of the data path (decoding + normalising on one thread,
 * and through the prefetching loader). Only measured numbers are printed. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "core/log.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "data/synth.h"
#include "data/verbin.h"

static void bench_usage(void)
{
    printf("usage: facekd bench --data PATH|synth [--images N] [--workers W] [--batch B] [--resize]\n\n"
           "Measures how fast facekd reads a dataset, in images per second:\n"
           "  decode   decode + normalise to NCHW on one thread\n"
           "  loader   the prefetching loader with W worker threads (shuffled batches of B)\n"
           "  render   (--data synth) render + normalise synthetic faces on one thread\n"
           "PATH is an image folder, an insightface train.rec (its .idx beside it), or a\n"
           "verification .bin (decode only). Not a timed test: numbers depend on the machine.\n\n"
           "  --images N   images to read in each measurement (default 2000)\n"
           "  --workers W  loader threads (default 2)\n"
           "  --batch B    loader batch size (default 64)\n"
           "  --resize     resize images that are not 112x112 (else they are an error)\n");
}

static int parse_int(const char *flag, const char *text, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = text ? strtol(text, &end, 10) : 0;
    if (!text || errno || *end || end == text || v < lo || v > hi) {
        fprintf(stderr, "facekd bench: %s needs an integer in %ld..%ld\n", flag, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

/* Decode + normalise of n images on this thread, cycling through the dataset. */
static fkd_status bench_decode(const fkd_dataset *ds, long n, bool resize, double *rate)
{
    float *slot = malloc((size_t)3 * FKD_FACE_SIZE * FKD_FACE_SIZE * sizeof *slot);
    if (!slot) return FKD_FAIL(FKD_ERR_NOMEM, "bench: out of memory");
    int64_t count = ds->ops->count(ds);
    double t0 = fkd_now();
    fkd_status s = FKD_OK;
    for (long i = 0; i < n && s == FKD_OK; i++) s = fkd_dataset_load_nchw(ds, i % count, false, resize, slot);
    *rate = n / (fkd_now() - t0);
    free(slot);
    return s;
}

static fkd_status bench_loader(const fkd_dataset *ds, long n, int workers, int batch, bool resize, double *rate,
                               long *images)
{
    fkd_loader_options o;
    fkd_loader_options_default(&o);
    o.batch_size = batch;
    o.workers = workers;
    o.depth = workers * 2;
    o.resize = resize;
    fkd_loader *l;
    FKD_TRY(fkd_loader_create(&l, ds, &o));
    double t0 = fkd_now();
    fkd_status s = FKD_OK;
    *images = 0;
    while (*images < n && s == FKD_OK) {
        const fkd_batch *b;
        s = fkd_loader_next(l, &b);
        if (s == FKD_OK) *images += b->n;
    }
    *rate = *images / (fkd_now() - t0);
    fkd_loader_free(l);
    return s;
}

/* A verification .bin: decode + normalise its images (cycled). */
static fkd_status bench_verbin(const char *path, long n, bool resize, double *rate, int64_t *pairs)
{
    fkd_verbin set;
    fkd_status s = fkd_verbin_load(path, &set);
    float *slot = malloc((size_t)3 * FKD_FACE_SIZE * FKD_FACE_SIZE * sizeof *slot);
    if (s == FKD_OK && !slot) s = FKD_FAIL(FKD_ERR_NOMEM, "bench: out of memory");
    double t0 = fkd_now();
    for (long i = 0; i < n && s == FKD_OK; i++) {
        int64_t k = i % (2 * set.n_pairs);
        char what[600];
        snprintf(what, sizeof what, "%s: image %" PRId64, path, k);
        fkd_image img = {0};
        s = fkd_image_decode(set.images[k], set.sizes[k], what, &img);
        if (s == FKD_OK) s = fkd_image_to_nchw(&img, false, resize, what, slot);
        fkd_image_free(&img);
    }
    *rate = n / (fkd_now() - t0);
    *pairs = set.n_pairs;
    free(slot);
    fkd_verbin_free(&set);
    return s;
}

/* The synthetic world (seed 1, 1000 training identities): render + normalise on this
 * thread, identities in turn. */
static fkd_status bench_synth(long n, double *rate)
{
    fkd_synth_world w;
    fkd_synth_world_default(&w, 1, 1000);
    uint8_t *scratch = malloc((size_t)3 * FKD_FACE_SIZE * FKD_FACE_SIZE);
    float *slot = malloc((size_t)3 * FKD_FACE_SIZE * FKD_FACE_SIZE * sizeof *slot);
    fkd_status s = scratch && slot ? FKD_OK : FKD_FAIL(FKD_ERR_NOMEM, "bench: out of memory");
    double t0 = fkd_now();
    for (long i = 0; i < n && s == FKD_OK; i++)
        s = fkd_synth_render_nchw(&w, i % w.n_train, (uint32_t)(i / w.n_train), NULL, scratch, slot);
    *rate = n / (fkd_now() - t0);
    free(scratch);
    free(slot);
    return s;
}

int fkd_cmd_bench(int argc, char **argv)
{
    if (fkd_cli_wants_help(argc, argv)) {
        bench_usage();
        return 0;
    }
    const char *data = NULL;
    long n = 2000, workers = 2, batch = 64;
    bool resize = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (strcmp(a, "--data") == 0 && v) data = argv[++i];
        else if (strcmp(a, "--images") == 0) bad = parse_int(a, v, 1, 100000000, &n), i++;
        else if (strcmp(a, "--workers") == 0) bad = parse_int(a, v, 1, 64, &workers), i++;
        else if (strcmp(a, "--batch") == 0) bad = parse_int(a, v, 1, 4096, &batch), i++;
        else if (strcmp(a, "--resize") == 0) resize = true;
        else {
            fprintf(stderr, "facekd bench: unknown or incomplete option '%s' (see facekd bench --help)\n", a);
            return 2;
        }
        if (bad) return 2;
    }
    if (!data) {
        fprintf(stderr, "facekd bench: --data PATH|synth is required\n");
        return 2;
    }
    double rate = 0;
    if (strcmp(data, "synth") == 0) {
        if (bench_synth(n, &rate) != FKD_OK) return fkd_cli_fail();
        printf("data    synth (synthetic faces, seed 1, 1000 identities)\n");
        printf("render  %.0f img/s  (%ld images, 1 thread, render + normalise)\n", rate, n);
        return 0;
    }
    size_t len = strlen(data);
    if (len >= 4 && strcmp(data + len - 4, ".bin") == 0) {
        int64_t pairs;
        if (bench_verbin(data, n, resize, &rate, &pairs) != FKD_OK) return fkd_cli_fail();
        printf("data    %s (verification .bin, %" PRId64 " pairs)\n", data, pairs);
        printf("decode  %.0f img/s  (%ld images, 1 thread, decode + normalise)\n", rate, n);
        return 0;
    }
    fkd_dataset ds;
    if (fkd_dataset_open(&ds, data) != FKD_OK) return fkd_cli_fail();
    printf("data    %s (%s, %" PRId64 " images, %d identities)\n", data, ds.ops->name, ds.ops->count(&ds),
           ds.ops->identities(&ds));
    fflush(stdout);
    int rc = 0;
    long got;
    if (bench_decode(&ds, n, resize, &rate) != FKD_OK) {
        rc = fkd_cli_fail();
    } else {
        printf("decode  %.0f img/s  (%ld images, 1 thread, decode + normalise)\n", rate, n);
        fflush(stdout);
        if (bench_loader(&ds, n, (int)workers, (int)batch, resize, &rate, &got) != FKD_OK)
            rc = fkd_cli_fail();
        else
            printf("loader  %.0f img/s  (%ld images, %ld workers, batch %ld, flip on)\n", rate, got, workers, batch);
    }
    fkd_dataset_free(&ds);
    return rc;
}
