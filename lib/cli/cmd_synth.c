/* facekd synth: render the synthetic face world's benchmarks, training sets and previews. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/commands.h"
#include "core/fileio.h"
#include "core/log.h"
#include "data/image.h"
#include "data/synth.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: facekd synth [options]\n\n"
            "Renders the synthetic face world (docs/SYNTH.md).\n\n"
            "  --seed S               world seed (default 1)\n"
            "  --identities N         training identities (default 1000)\n"
            "  --images-per-id K      images per training identity (default 20)\n"
            "  --lookalikes F         share of look-alike identities (default 0.1)\n"
            "  --preview FILE.png     grid of identities (rows) x images (columns)\n"
            "  --rows R --cols C      preview grid size (default 8 x 8)\n"
            "  --preview-bench NAME   preview NAME's pairs instead (rows of pairs; red frame = different)\n"
            "  --bench-speed          render images for a few seconds on this thread, print img/s\n");
}

static int parse_i64(const char *flag, const char *v, int64_t lo, int64_t hi, int64_t *out)
{
    char *end;
    errno = 0;
    long long x = v ? strtoll(v, &end, 10) : 0;
    if (!v || errno || *end || end == v || x < lo || x > hi) {
        FKD_FAIL(FKD_ERR_ARG, "%s: need an integer in %lld..%lld, got '%s'", flag, (long long)lo, (long long)hi,
                 v ? v : "");
        return -1;
    }
    *out = x;
    return 0;
}

static int parse_f(const char *flag, const char *v, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double x = v ? strtod(v, &end) : 0;
    if (!v || errno || *end || end == v || !(x >= lo && x <= hi)) {
        FKD_FAIL(FKD_ERR_ARG, "%s: need a number in %g..%g, got '%s'", flag, lo, hi, v ? v : "");
        return -1;
    }
    *out = x;
    return 0;
}

/* Copies a 112x112 tile into the grid at (row, col), with an optional frame colour. */
static void put_tile(fkd_image *grid, const fkd_image *tile, int x0, int y0)
{
    for (int y = 0; y < tile->height; y++)
        memcpy(grid->pixels + ((size_t)(y0 + y) * grid->width + x0) * 3, tile->pixels + (size_t)y * tile->width * 3,
               (size_t)tile->width * 3);
}

static void frame_tile(fkd_image *grid, int x0, int y0, int w, int h, const uint8_t rgb[3])
{
    for (int y = y0 - 1; y <= y0 + h; y++)
        for (int x = x0 - 1; x <= x0 + w; x++) {
            if (x < 0 || y < 0 || x >= grid->width || y >= grid->height) continue;
            if (x >= x0 && x < x0 + w && y >= y0 && y < y0 + h) continue;
            memcpy(grid->pixels + ((size_t)y * grid->width + x) * 3, rgb, 3);
        }
}

#define GAP 4

static fkd_status preview_grid(const fkd_synth_world *w, const char *path, int rows, int cols, const char *bench)
{
    fkd_synth_pair *pairs = NULL;
    int64_t n_pairs = 0;
    if (bench) {
        FKD_TRY(fkd_synth_bench_pairs(w, bench, &pairs, &n_pairs));
        cols = cols / 2 * 2;
        if (cols < 2) cols = 2;
    }
    const int T = FKD_SYNTH_SIZE;
    fkd_image grid = {cols * (T + GAP) + GAP, rows * (T + GAP) + GAP, 3, NULL};
    grid.pixels = malloc((size_t)grid.width * grid.height * 3);
    fkd_image tile = {0};
    fkd_status s = FKD_OK;
    if (!grid.pixels) {
        free(pairs);
        return FKD_FAIL(FKD_ERR_NOMEM, "%s: cannot allocate the preview", path);
    }
    memset(grid.pixels, 255, (size_t)grid.width * grid.height * 3);
    for (int r = 0; r < rows && s == FKD_OK; r++)
        for (int c = 0; c < cols && s == FKD_OK; c++) {
            int x0 = GAP + c * (T + GAP), y0 = GAP + r * (T + GAP);
            if (bench) {
                /* pairs spread over the whole set: positives and negatives alternate */
                int64_t k = ((int64_t)r * (cols / 2) + c / 2) * 7919 % n_pairs;
                const fkd_synth_pair *p = &pairs[k];
                s = fkd_synth_render(w, p->identity[c % 2], p->index[c % 2], &p->ov[c % 2], &tile);
                if (s == FKD_OK) {
                    put_tile(&grid, &tile, x0, y0);
                    static const uint8_t green[3] = {0, 170, 0}, red[3] = {220, 0, 0};
                    frame_tile(&grid, x0, y0, T, T, p->same ? green : red);
                }
            } else {
                s = fkd_synth_render(w, r, (uint32_t)c, NULL, &tile);
                if (s == FKD_OK) put_tile(&grid, &tile, x0, y0);
            }
        }
    if (s == FKD_OK) s = fkd_image_save_png(&grid, path);
    fkd_image_free(&tile);
    fkd_image_free(&grid);
    free(pairs);
    if (s == FKD_OK) FKD_INFO("wrote %s (%d x %d images)", path, rows, cols);
    return s;
}

static double thread_cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Renders for about three seconds of wall time. The machine may be shared, so the rate is
 * reported per second of this thread's CPU time (one core) as well as per wall second. */
static fkd_status bench_speed(const fkd_synth_world *w)
{
    fkd_image img = {0};
    double t0 = fkd_now(), c0 = thread_cpu_seconds();
    int64_t n = 0;
    while (fkd_now() - t0 < 3.0) {
        for (int i = 0; i < 100; i++, n++)
            FKD_TRY(fkd_synth_render(w, n % 997, (uint32_t)(n / 997), NULL, &img));
    }
    double dt = fkd_now() - t0, dc = thread_cpu_seconds() - c0;
    fkd_image_free(&img);
    printf("synth: %" PRId64 " images, %.2f s CPU on one thread: %.0f img/s per core (%.0f img/s wall clock)\n", n,
           dc, n / dc, n / dt);
    return FKD_OK;
}

int fkd_cmd_synth(int argc, char **argv)
{
    if (fkd_cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    int64_t seed = 1, identities = 1000, per_id = 20, rows = 8, cols = 8;
    double lookalikes = 0.1;
    const char *preview = NULL, *preview_bench = NULL;
    int speed = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (strcmp(a, "--seed") == 0) rc = parse_i64(a, v, 0, INT64_MAX, &seed), i++;
        else if (strcmp(a, "--identities") == 0) rc = parse_i64(a, v, 1, INT64_C(1) << 40, &identities), i++;
        else if (strcmp(a, "--images-per-id") == 0) rc = parse_i64(a, v, 1, 1 << 20, &per_id), i++;
        else if (strcmp(a, "--lookalikes") == 0) rc = parse_f(a, v, 0, 0.95, &lookalikes), i++;
        else if (strcmp(a, "--rows") == 0) rc = parse_i64(a, v, 1, 64, &rows), i++;
        else if (strcmp(a, "--cols") == 0) rc = parse_i64(a, v, 1, 64, &cols), i++;
        else if (strcmp(a, "--preview") == 0 && v) preview = v, i++;
        else if (strcmp(a, "--preview-bench") == 0 && v) preview_bench = v, i++;
        else if (strcmp(a, "--bench-speed") == 0) speed = 1;
        else {
            fprintf(stderr, "facekd synth: unknown or incomplete option '%s'\n\n", a);
            usage(stderr);
            return 2;
        }
        if (rc) return fkd_cli_fail();
    }
    fkd_synth_world w;
    fkd_synth_world_default(&w, (uint64_t)seed, identities);
    w.lookalike_fraction = (float)lookalikes;
    if (fkd_synth_world_check(&w) != FKD_OK) return fkd_cli_fail();
    if (!preview && !speed) {
        usage(stderr);
        return 2;
    }
    if (preview && preview_grid(&w, preview, (int)rows, (int)cols, preview_bench) != FKD_OK) return fkd_cli_fail();
    if (speed && bench_speed(&w) != FKD_OK) return fkd_cli_fail();
    (void)per_id;
    return 0;
}
