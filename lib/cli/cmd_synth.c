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
#include "data/synth_baseline.h"
#include "data/synth_export.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: facekd synth [--out DIR --bench NAME|all] [--train-folder DIR] [--train-rec PREFIX]\n"
            "                    [--preview FILE.png] [--baseline NAME|all] [--bench-speed] [options]\n\n"
            "Renders the synthetic face world (docs/SYNTH.md).\n\n"
            "  --out DIR              directory for benchmark .bin files\n"
            "  --bench NAME|all       synth-lfw, synth-cfp-fp, synth-cplfw, synth-agedb, synth-calfw\n"
            "                         (or lfw, cfp-fp, ...), written as DIR/synth_<name>.bin\n"
            "  --train-folder DIR     training set as DIR/<identity>/<index>.jpg\n"
            "  --train-rec PREFIX     training set as PREFIX.rec + PREFIX.idx (insightface RecordIO)\n"
            "  --identities N         training identities written (default 1000)\n"
            "  --images-per-id K      images per training identity (default 20)\n"
            "  --seed S               world seed (default 1)\n"
            "  --lookalikes F         share of look-alike identities (default 0.1)\n"
            "  --preview FILE.png     grid of identities (rows) x images (columns)\n"
            "  --rows R --cols C      preview grid size (default 8 x 8)\n"
            "  --preview-bench NAME   preview NAME's pairs instead (green frame same, red different)\n"
            "  --baseline NAME|all    non-learned pixel-cosine and linear (WCCN) baselines, 10-fold accuracy\n"
            "  --bench-speed          render for 3 s on one thread and print images/s\n");
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

/* Runs `fn` on one benchmark or on all of them ("all"). */
static fkd_status for_benches(const char *which, fkd_status (*fn)(const fkd_synth_world *, const char *, void *),
                              const fkd_synth_world *w, void *ctx)
{
    if (strcmp(which, "all") != 0) {
        if (!fkd_synth_bench_find(which)) return FKD_FAIL(FKD_ERR_ARG, "--bench/--baseline: unknown benchmark '%s'", which);
        return fn(w, fkd_synth_bench_find(which)->name, ctx);
    }
    for (int i = 0; i < fkd_synth_bench_count(); i++) FKD_TRY(fn(w, fkd_synth_bench_get(i)->name, ctx));
    return FKD_OK;
}

static fkd_status write_one_bench(const fkd_synth_world *w, const char *name, void *ctx)
{
    fkd_progress p;
    FKD_TRY(fkd_synth_write_bench(w, name, ctx, &p));
    FKD_INFO("wrote %s/%s", (const char *)ctx, fkd_synth_bench_find(name)->file);
    return FKD_OK;
}

static fkd_status baseline_one(const fkd_synth_world *w, const char *name, void *ctx)
{
    fkd_baseline_result r[FKD_BASELINE_N_FEATURES];
    FKD_TRY(fkd_baseline_run(w, name, ctx, r));
    for (int k = 0; k < FKD_BASELINE_N_FEATURES; k++)
        if (r[k].feature)
            printf("| %-13s | %-7s | %6.2f%% +- %.2f |\n", name, r[k].feature, 100 * r[k].mean, 100 * r[k].std);
    fflush(stdout);
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
    const char *preview = NULL, *preview_bench = NULL, *out = NULL, *bench = NULL, *baseline = NULL;
    const char *train_folder = NULL, *train_rec = NULL;
    int speed = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        const char **str = NULL;
        if (strcmp(a, "--seed") == 0) rc = fkd_cli_int(a, v, 0, INT64_MAX, &seed), i++;
        else if (strcmp(a, "--identities") == 0) rc = fkd_cli_int(a, v, 1, INT64_C(1) << 24, &identities), i++;
        else if (strcmp(a, "--images-per-id") == 0) rc = fkd_cli_int(a, v, 1, 1 << 20, &per_id), i++;
        else if (strcmp(a, "--lookalikes") == 0) rc = parse_f(a, v, 0, 0.95, &lookalikes), i++;
        else if (strcmp(a, "--rows") == 0) rc = fkd_cli_int(a, v, 1, 64, &rows), i++;
        else if (strcmp(a, "--cols") == 0) rc = fkd_cli_int(a, v, 1, 64, &cols), i++;
        else if (strcmp(a, "--bench-speed") == 0) speed = 1;
        else if (strcmp(a, "--preview") == 0) str = &preview;
        else if (strcmp(a, "--preview-bench") == 0) str = &preview_bench;
        else if (strcmp(a, "--out") == 0) str = &out;
        else if (strcmp(a, "--bench") == 0) str = &bench;
        else if (strcmp(a, "--baseline") == 0) str = &baseline;
        else if (strcmp(a, "--train-folder") == 0) str = &train_folder;
        else if (strcmp(a, "--train-rec") == 0) str = &train_rec;
        else {
            fprintf(stderr, "facekd synth: unknown option '%s'\n\n", a);
            usage(stderr);
            return 2;
        }
        if (str) {
            if (!v) {
                fprintf(stderr, "facekd synth: %s needs a value\n", a);
                return 2;
            }
            *str = v;
            i++;
        }
        if (rc) return fkd_cli_fail();
    }
    if ((bench != NULL) != (out != NULL)) {
        fprintf(stderr, "facekd synth: --bench and --out go together\n");
        return 2;
    }
    if (!preview && !speed && !bench && !baseline && !train_folder && !train_rec) {
        usage(stderr);
        return 2;
    }
    fkd_synth_world w;
    fkd_synth_world_default(&w, (uint64_t)seed, identities);
    w.lookalike_fraction = (float)lookalikes;
    if (fkd_synth_world_check(&w) != FKD_OK) return fkd_cli_fail();
    if (preview && preview_grid(&w, preview, (int)rows, (int)cols, preview_bench) != FKD_OK) return fkd_cli_fail();
    if (bench && for_benches(bench, write_one_bench, &w, (void *)out) != FKD_OK) return fkd_cli_fail();
    fkd_progress p;
    if (train_folder) {
        if (fkd_synth_write_folder(&w, identities, (int)per_id, train_folder, &p) != FKD_OK) return fkd_cli_fail();
        FKD_INFO("wrote %s (%lld identities x %lld images)", train_folder, (long long)identities, (long long)per_id);
    }
    if (train_rec) {
        if (fkd_synth_write_recordio(&w, identities, (int)per_id, train_rec, &p) != FKD_OK) return fkd_cli_fail();
        FKD_INFO("wrote %s.rec/.idx (%lld identities x %lld images)", train_rec, (long long)identities,
                 (long long)per_id);
    }
    if (baseline) {
        /* WCCN is fitted on (up to) 500 training identities x 8 images, never on benchmarks */
        fkd_baseline_wccn m;
        int fit_ids = identities < 500 ? (int)identities : 500;
        if (fkd_baseline_wccn_fit(&w, fit_ids, 8, &m) != FKD_OK) return fkd_cli_fail();
        printf("| benchmark     | feature | accuracy (10 folds) |\n|---|---|---|\n");
        fkd_status s = for_benches(baseline, baseline_one, &w, &m);
        fkd_baseline_wccn_free(&m);
        if (s != FKD_OK) return fkd_cli_fail();
    }
    if (speed && bench_speed(&w) != FKD_OK) return fkd_cli_fail();
    return 0;
}
