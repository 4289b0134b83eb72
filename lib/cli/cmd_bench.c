/* facekd bench: images per second of a model (a training step or inference, lib/nn/perf.h)
 * or of the data path (decoding + normalising on one thread, and through the prefetching
 * loader). Only measured numbers are printed. */
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
#include "nn/peak.h"
#include "nn/perf.h"
#include "nn/shim.h"

static void bench_usage(void)
{
    printf("usage: facekd bench --arch A [--mode infer|train] [--precision fp32|bf16] [--batch N]\n"
           "                    [--threads T] [--width W] [--steps S] [--warmup S] [--unfused]\n"
           "                    [--direct-conv] [--keep-activations] [--peak] [--profile] [--json]\n"
           "       facekd bench --peak [--threads T] [--json]\n"
           "       facekd bench --data PATH|synth [--images N] [--workers W] [--batch B] [--resize]\n\n"
           "With --arch, measures a model on 112x112 inputs: an inference forward (INFER graph) or\n"
           "a training step (forward + backward + SGD; the head and loss are not included), the\n"
           "median of S timed steps after the warm-up: images/s, GFLOP/s (2 x MACs per image,\n"
           "x3 for training), the fraction of the machine's nominal peak, peak memory, and the\n"
           "1-minute load average before and after (other work on the machine).\n"
           "  --arch A        iresnet50, r18, mbf, ... (facekd info lists them)\n"
           "  --mode M        infer (default) or train\n"
           "  --precision P   fp32 (default) or bf16\n"
           "  --batch N       images per step (default 32)\n"
           "  --threads T     OpenMP threads (default: OMP_NUM_THREADS or all cores)\n"
           "  --width W       base width (default the architecture's, 64)\n"
           "  --steps S       timed steps (default 10); --warmup S untimed steps (default 3)\n"
           "  --unfused       every node its own op, for comparisons: inference without\n"
           "                  batch-norm folding and fused residual adds, training without\n"
           "                  the fused batch norm + PReLU passes\n"
           "  --direct-conv   fp32 without Winograd convolutions (inference: less memory)\n"
           "  --keep-activations  training: keep the batch-norm and PReLU outputs that are\n"
           "                  otherwise recomputed before backward (faster, more memory)\n"
           "  --peak          also measure the machine's arithmetic peak (below) and give the\n"
           "                  model's GFLOP/s as a fraction of it\n"
           "  --profile       then S more steps, timing each node: where the step's time goes,\n"
           "                  by op, pass (fwd/bwd) and kernels, slowest first\n"
           "  --json          one JSON object instead of text (and one for the profile)\n\n"
           "With --peak alone, measures the arithmetic peak this machine delivers on T threads:\n"
           "a register-only loop of fp32 FMAs and of bf16 dot products (avx512_bf16), best of\n"
           "three runs (AMX tiles are not measured). The nominal peak assumes two 512-bit FMA\n"
           "units at the listed clock; many CPUs differ (docs/PERFORMANCE.md).\n\n"
           "With --data, measures how fast facekd reads a dataset, in images per second:\n"
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

/* Usage errors print the message and count as bad. */
static int parse_int(const char *flag, const char *text, int64_t lo, int64_t hi, int64_t *out)
{
    if (fkd_cli_int(flag, text, lo, hi, out) == 0) return 0;
    fprintf(stderr, "facekd bench: %s\n", fkd_last_error());
    return -1;
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

static void print_model(const fkd_perf_config *c, const fkd_perf_result *r, bool json)
{
    const char *mode = c->train ? "train" : "infer", *prec = c->precision == FKD_PREC_BF16 ? "bf16" : "fp32";
    if (json) {
        printf("{\"arch\": \"%s\", \"width\": %d, \"mode\": \"%s\", \"precision\": \"%s\", "
               "\"batch\": %d, \"threads\": %d, \"isa\": \"%s\", \"parameters\": %" PRId64
               ", \"macs_per_image\": %" PRId64 ", \"finalize_s\": %.3f, \"step_median_s\": %.6f, "
               "\"step_min_s\": %.6f, \"images_per_s\": %.3f, \"gflops\": %.3f, \"peak_gflops\": %.1f, "
               "\"peak_fraction\": %.4f, \"peak_rss_mb\": %.1f, \"load_before\": %.2f, "
               "\"load_after\": %.2f, \"steps\": %d, \"unfused\": %s, \"direct_conv\": %s, \"keep_activations\": %s, "
               "\"measured_peak_gflops\": %.1f, \"measured_peak_fraction\": %.4f}\n",
               c->arch, c->width ? c->width : 64, mode, prec, c->batch, r->threads, r->isa, r->parameters,
               r->macs, r->finalize_s, r->step_median_s, r->step_min_s, r->images_per_s, r->gflops,
               r->peak_gflops, r->peak_fraction, r->peak_rss_mb, r->load_before, r->load_after, c->steps,
               c->unfused ? "true" : "false", c->direct_conv ? "true" : "false",
               c->keep_activations ? "true" : "false", r->measured_peak_gflops,
               r->measured_peak_fraction);
        return;
    }
    printf("model      %s (width %d), %s%s%s%s, %s, batch %d, %d threads, oneDNN ISA %s\n", c->arch,
           c->width ? c->width : 64, mode, c->unfused ? " unfused" : "", c->direct_conv ? " direct-conv" : "",
           c->keep_activations ? " keep-activations" : "", prec, c->batch, r->threads, r->isa);
    printf("size       %.2f M parameters, %.3f G MACs per image; graph built in %.2f s\n",
           r->parameters / 1e6, r->macs / 1e9, r->finalize_s);
    printf("speed      %.1f img/s (median of %d steps: %.1f ms; fastest %.1f ms)\n", r->images_per_s, c->steps,
           r->step_median_s * 1e3, r->step_min_s * 1e3);
    printf("work       %.1f GFLOP/s = %.1f %% of a nominal %.0f GFLOP/s (%d threads x %.2f GHz)\n", r->gflops,
           100 * r->peak_fraction, r->peak_gflops, r->threads, r->clock_ghz);
    if (r->measured_peak_gflops > 0)
        printf("           = %.1f %% of a measured %.0f GFLOP/s (%s peak on %d threads, bench --peak)\n",
               100 * r->measured_peak_fraction, r->measured_peak_gflops, prec, r->threads);
    printf("memory     %.0f MB peak resident\n", r->peak_rss_mb);
    printf("load       %.2f before, %.2f after (1-minute load average; %d threads asked)\n", r->load_before,
           r->load_after, r->threads);
}

static int bench_peak(int threads, bool json)
{
    fkd_peak p;
    if (fkd_peak_measure(threads, 1.5, &p) != FKD_OK) return fkd_cli_fail();
    if (json) {
        printf("{\"threads\": %d, \"isa\": \"%s\", \"fp32_gflops\": %.1f, \"fp32_kernel\": \"%s\", "
               "\"bf16_gflops\": %.1f, \"bf16_kernel\": \"%s\"}\n",
               p.threads, fkd_shim_isa(), p.fp32_gflops, p.fp32_kernel, p.bf16_gflops, p.bf16_kernel);
        return 0;
    }
    printf("peak       %d threads, oneDNN ISA %s (register-only loops, best of 3)\n", p.threads, fkd_shim_isa());
    printf("fp32       %.1f GFLOP/s (%s)\n", p.fp32_gflops, p.fp32_kernel);
    if (p.bf16_gflops > 0) printf("bf16       %.1f GFLOP/s (%s)\n", p.bf16_gflops, p.bf16_kernel);
    else printf("bf16       no bf16 dot-product instructions on this CPU\n");
    return 0;
}

/* The profile as a table (text) or a JSON array of rows, times per step. */
static void print_profile(const fkd_perf_config *c, const fkd_perf_result *r, bool json)
{
    double graph = 0;
    for (int i = 0; i < r->profile_rows; i++) graph += r->profile[i].seconds / c->steps;
    if (!json) {
        printf("profile    %d steps with a wait after each node: %.1f ms per step, of which the graph's "
               "nodes %.1f ms (the rest: inputs%s)\n",
               c->steps, r->profile_step_s * 1e3, graph * 1e3, c->train ? ", gradients' zeroing, SGD" : "");
        printf("   ms/step   share  nodes  op          pass  kernels\n");
    }
    for (int i = 0; i < r->profile_rows; i++) {
        const fkd_graph_profile_row *row = &r->profile[i];
        double ms = row->seconds / c->steps * 1e3;
        const char *pass = row->backward ? "bwd" : "fwd";
        if (json)
            printf("%s{\"op\": \"%s\", \"pass\": \"%s\", \"kernels\": \"%s\", \"nodes\": %d, \"ms_per_step\": %.3f}",
                   i ? ", " : "", row->op, pass, row->kernels, row->nodes, ms);
        else
            printf("%10.1f  %5.1f%%  %5d  %-10s  %-4s  %s\n", ms, 100 * ms / (r->profile_step_s * 1e3), row->nodes,
                   row->op, pass, row->kernels);
    }
}

static int bench_model(const fkd_perf_config *c, bool json)
{
    fkd_perf_result r;
    if (fkd_perf_run(c, &r) != FKD_OK) return fkd_cli_fail();
    print_model(c, &r, json);
    if (c->profile) {
        if (json) printf("{\"profile_step_s\": %.6f, \"rows\": [", r.profile_step_s);
        print_profile(c, &r, json);
        if (json) printf("]}\n");
    }
    fkd_perf_result_free(&r);
    return 0;
}

int fkd_cmd_bench(int argc, char **argv)
{
    if (fkd_cli_wants_help(argc, argv)) {
        bench_usage();
        return 0;
    }
    const char *data = NULL, *mode = "infer", *precision = "fp32";
    int64_t n = 2000, workers = 2, batch = 0, threads = 0, width = 0, steps = 10, warmup = 3;
    bool resize = false, json = false;
    fkd_perf_config pc = fkd_perf_defaults();
    pc.arch = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (strcmp(a, "--data") == 0 && v) data = argv[++i];
        else if (strcmp(a, "--images") == 0) bad = parse_int(a, v, 1, 100000000, &n), i++;
        else if (strcmp(a, "--workers") == 0) bad = parse_int(a, v, 1, 64, &workers), i++;
        else if (strcmp(a, "--batch") == 0) bad = parse_int(a, v, 1, 4096, &batch), i++;
        else if (strcmp(a, "--resize") == 0) resize = true;
        else if (strcmp(a, "--arch") == 0 && v) pc.arch = argv[++i];
        else if (strcmp(a, "--mode") == 0 && v) mode = argv[++i];
        else if (strcmp(a, "--precision") == 0 && v) precision = argv[++i];
        else if (strcmp(a, "--threads") == 0) bad = parse_int(a, v, 1, 1024, &threads), i++;
        else if (strcmp(a, "--width") == 0) bad = parse_int(a, v, 1, 4096, &width), i++;
        else if (strcmp(a, "--steps") == 0) bad = parse_int(a, v, 1, 100000, &steps), i++;
        else if (strcmp(a, "--warmup") == 0) bad = parse_int(a, v, 0, 100000, &warmup), i++;
        else if (strcmp(a, "--json") == 0) json = true;
        else if (strcmp(a, "--unfused") == 0) pc.unfused = true;
        else if (strcmp(a, "--direct-conv") == 0) pc.direct_conv = true;
        else if (strcmp(a, "--keep-activations") == 0) pc.keep_activations = true;
        else if (strcmp(a, "--peak") == 0) pc.measure_peak = true;
        else if (strcmp(a, "--profile") == 0) pc.profile = true;
        else {
            fprintf(stderr, "facekd bench: unknown or incomplete option '%s' (see facekd bench --help)\n", a);
            return 2;
        }
        if (bad) return 2;
    }
    if (data && (pc.arch || pc.measure_peak)) {
        fprintf(stderr, "facekd bench: --data measures the data path; --arch and --peak measure models and the CPU: "
                        "give one\n");
        return 2;
    }
    if (pc.arch) {
        bool train = strcmp(mode, "train") == 0, bf16 = strcmp(precision, "bf16") == 0;
        if (!train && strcmp(mode, "infer") != 0) {
            fprintf(stderr, "facekd bench: --mode must be infer or train, not '%s'\n", mode);
            return 2;
        }
        if (!bf16 && strcmp(precision, "fp32") != 0) {
            fprintf(stderr, "facekd bench: --precision must be fp32 or bf16, not '%s'\n", precision);
            return 2;
        }
        pc.train = train;
        pc.precision = bf16 ? FKD_PREC_BF16 : FKD_PREC_F32;
        pc.batch = batch ? (int)batch : 32;
        pc.threads = (int)threads;
        pc.width = (int)width;
        pc.steps = (int)steps;
        pc.warmup = (int)warmup;
        return bench_model(&pc, json);
    }
    if (pc.measure_peak) return bench_peak((int)threads, json);
    if (!data) {
        fprintf(stderr, "facekd bench: --arch A, --peak or --data PATH|synth is required\n");
        return 2;
    }
    if (!batch) batch = 64;
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
