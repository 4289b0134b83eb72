/* facekd eval --model M [--arch A] (--bench FILE.bin | --pairs FILE --root DIR | --synth NAME)...
 *             [--out DIR] [--batch N] [--precision fp32|bf16] [--no-flip] [--json] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "core/fileio.h"
#include "core/log.h"
#include "eval/bench.h"
#include "eval/report.h"
#include "io/model_any.h"
#include "train/runlog.h"

#define MAX_BENCHES 32

static void usage(FILE *out)
{
    fprintf(out,
            "usage: facekd eval --model M [--arch A] BENCH... [--out DIR] [--batch N] [--precision P]\n"
            "                   [--no-flip] [--json]\n\n"
            "Verification accuracy with insightface's protocol (flip test, squared L2 distance,\n"
            "thresholds 0..4 step 0.01, 10 contiguous folds), plus TAR at FAR 1e-1..1e-6 where\n"
            "there are enough negative pairs, EER, AUC and XNorm.\n\n"
            "  --model M         model file (.safetensors, or .onnx such as insightface's w600k_r50.onnx)\n"
            "  --arch A          architecture when the file has no metadata (iresnet50, mbf, ...)\n"
            "  --bench F.bin     insightface verification set (lfw.bin, cfp_fp.bin, ...)\n"
            "  --pairs F --root D  LFW-style pairs.txt over an image folder\n"
            "  --synth NAME      built-in synthetic benchmark (synth-lfw, synth-cfp-fp, synth-cplfw,\n"
            "                    synth-agedb, synth-calfw), rendered once to a cached .bin\n"
            "                    ($FACEKD_CACHE or ~/.cache/facekd/synth)\n"
            "  --synth-seed S    seed of the synthetic world (default 1, as recipes)\n"
            "  --out DIR         write results.md, results.csv and roc.png there\n"
            "  --batch N         images per forward pass (default 32)\n"
            "  --precision P     fp32 (default) or bf16 (bf16 weights and activations; falls back to\n"
            "                    fp32 with a warning on CPUs without AVX-512)\n"
            "  --no-flip         skip the flip test\n"
            "  --json            print the results as JSON instead of a table\n");
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* "lfw" from ".../lfw.bin". */
static void bench_name_from_path(const char *path, char *name, size_t cap)
{
    snprintf(name, cap, "%s", base_name(path));
    char *dot = strrchr(name, '.');
    if (dot && dot != name) *dot = '\0';
}

static void print_json(const fkd_bench *benches, const fkd_verify_result *res, int n)
{
    printf("{\n  \"benchmarks\": [\n");
    for (int i = 0; i < n; i++) {
        const fkd_verify_result *v = &res[i];
        printf("    {\"name\": \"%s\", \"pairs\": %d, \"accuracy\": %.6f, \"accuracy_std\": %.6f, "
               "\"eer\": %.6f, \"auc\": %.6f, \"xnorm\": %.4f, \"tar_at_far\": {",
               benches[i].name, v->n_pairs, v->accuracy_mean, v->accuracy_std, v->eer, v->auc, v->xnorm);
        for (int k = 0; k < FKD_VERIFY_N_FAR; k++) {
            printf("%s\"%g\": ", k ? ", " : "", fkd_verify_far_targets[k]);
            if (v->tar[k] == v->tar[k])
                printf("%.6f", v->tar[k]);
            else
                printf("null");
        }
        printf("}}%s\n", i + 1 < n ? "," : "");
    }
    printf("  ]\n}\n");
}

int fkd_cmd_eval(int argc, char **argv)
{
    if (fkd_cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    const char *model = NULL, *arch = NULL, *out_dir = NULL;
    int batch = 32, flip = 1, json = 0, n = 0;
    fkd_precision precision = FKD_PREC_F32;
    uint64_t synth_seed = 1;
    fkd_bench benches[MAX_BENCHES];
    fkd_status s = FKD_OK;
    memset(benches, 0, sizeof benches);
    for (int i = 1; s == FKD_OK && i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char name[256];
        if (n == MAX_BENCHES && (!strcmp(a, "--bench") || !strcmp(a, "--pairs") || !strcmp(a, "--synth"))) {
            s = FKD_FAIL(FKD_ERR_ARG, "at most %d benchmarks", MAX_BENCHES);
        } else if (!strcmp(a, "--model") && v) {
            model = argv[++i];
        } else if (!strcmp(a, "--arch") && v) {
            arch = argv[++i];
        } else if (!strcmp(a, "--out") && v) {
            out_dir = argv[++i];
        } else if (!strcmp(a, "--batch") && v) {
            batch = atoi(argv[++i]);
            if (batch < 1 || batch > 4096) s = FKD_FAIL(FKD_ERR_ARG, "--batch: expected 1..4096, got '%s'", v);
        } else if (!strcmp(a, "--precision") && v) {
            if (fkd_cli_precision("facekd eval", argv[++i], &precision) != 0) s = FKD_ERR_ARG;
        } else if (!strcmp(a, "--synth-seed") && v) {
            synth_seed = strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(a, "--no-flip")) {
            flip = 0;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--bench") && v) {
            bench_name_from_path(v, name, sizeof name);
            s = fkd_bench_open_bin(&benches[n], name, v);
            n += s == FKD_OK;
            i++;
        } else if (!strcmp(a, "--pairs") && v && i + 3 < argc && !strcmp(argv[i + 2], "--root")) {
            bench_name_from_path(v, name, sizeof name);
            s = fkd_bench_open_pairs(&benches[n], name, v, argv[i + 3]);
            n += s == FKD_OK;
            i += 3;
        } else if (!strcmp(a, "--synth") && v) {
            s = fkd_bench_open_synth(&benches[n], v, synth_seed, NULL);
            n += s == FKD_OK;
            i++;
        } else {
            fprintf(stderr, "facekd eval: unexpected argument '%s' (see --help)\n", a);
            for (int b = 0; b < n; b++) fkd_bench_free(&benches[b]);
            return 2;
        }
    }
    if (s == FKD_OK && !model) s = FKD_FAIL(FKD_ERR_ARG, "--model is required (see --help)");
    if (s == FKD_OK && n == 0) s = FKD_FAIL(FKD_ERR_ARG, "give at least one --bench, --pairs or --synth");

    fkd_graph *g = NULL;
    fkd_value emb = -1;
    fkd_graph_config gc = {.batch = batch, .mode = FKD_GRAPH_INFER, .precision = precision};
    if (s == FKD_OK) s = fkd_model_open_any(model, arch, &gc, &g, &emb);
    fkd_verify_result res[MAX_BENCHES];
    float *embeddings[MAX_BENCHES] = {0};
    int dim = 0;
    fkd_progress progress;
    fkd_embed_config ec = {.graph = g, .embedding = emb, .input = "input", .progress = &progress};
    for (int b = 0; s == FKD_OK && b < n; b++) {
        char label[300];
        snprintf(label, sizeof label, "eval %s", benches[b].name);
        fkd_progress_start(&progress, label, (flip ? 4 : 2) * benches[b].n_pairs, 1);
        s = fkd_bench_evaluate(&benches[b], &ec, flip, &res[b], &embeddings[b], &dim);
        if (s == FKD_OK) fkd_progress_finish(&progress, progress.done, NULL);
    }
    fkd_report report = {0};
    if (s == FKD_OK) s = fkd_report_init(&report, "model");
    for (int b = 0; s == FKD_OK && b < n; b++)
        s = fkd_report_add_verify(&report, base_name(model), benches[b].name, &res[b],
                                  FKD_REPORT_ACCURACY | FKD_REPORT_TAR | FKD_REPORT_EER | FKD_REPORT_AUC |
                                      FKD_REPORT_XNORM);
    if (s == FKD_OK && out_dir) {
        char path[4096];
        s = fkd_mkdir_p(out_dir);
        snprintf(path, sizeof path, "%s/results.md", out_dir);
        if (s == FKD_OK) s = fkd_report_write_markdown(&report, path);
        snprintf(path, sizeof path, "%s/results.csv", out_dir);
        if (s == FKD_OK) s = fkd_report_write_csv(&report, path);
        snprintf(path, sizeof path, "%s/roc.png", out_dir);
        if (s == FKD_OK) s = fkd_runlog_plot_bench_roc(path, base_name(model), benches, n, embeddings, dim);
    }
    if (s == FKD_OK) {
        if (json) {
            print_json(benches, res, n);
        } else {
            for (int b = 0; b < n; b++) {
                const fkd_verify_result *v = &res[b];
                printf("%-16s accuracy %6.2f ± %.2f   TAR@FAR=1e-3 ", benches[b].name, 100 * v->accuracy_mean,
                       100 * v->accuracy_std);
                if (v->tar[2] == v->tar[2])
                    printf("%6.2f", 100 * v->tar[2]);
                else
                    printf("  n/a ");
                printf("   EER %5.2f   AUC %6.2f   XNorm %.2f\n", 100 * v->eer, 100 * v->auc, v->xnorm);
            }
            for (int b = 0; b < n; b++)
                for (int k = 0; k < FKD_VERIFY_N_FAR; k++)
                    if (res[b].tar[k] != res[b].tar[k])
                        printf("note: %s: TAR@FAR=%g skipped (%d negative pairs, fewer than 1/FAR)\n",
                               benches[b].name, fkd_verify_far_targets[k], res[b].n_neg);
        }
    }
    fkd_report_free(&report);
    for (int b = 0; b < n; b++) {
        free(embeddings[b]);
        fkd_bench_free(&benches[b]);
    }
    fkd_graph_free(g);
    return s == FKD_OK ? 0 : fkd_cli_fail();
}
