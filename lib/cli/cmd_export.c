/* facekd export: a student checkpoint as an ONNX file for ONNX Runtime. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "io/model.h"
#include "io/onnx_export.h"
#include "io/onnx_import.h"

static const char usage_text[] =
    "usage: facekd export --model M.safetensors --onnx OUT.onnx [--opset N] [--arch NAME]\n"
    "\n"
    "Writes the model as ONNX: batch norm folded into the convolutions and the embedding\n"
    "layer, PReLU kept, a dynamic batch dimension, input \"input\" (N, 3, 112, 112) RGB\n"
    "normalised as (x - 127.5) / 127.5, output \"embedding\" (N, F), metadata architecture,\n"
    "embedding_size, preprocessing, producer. The file is then imported back and run on\n"
    "a random batch beside the native model: exit status 1 when the embeddings differ by\n"
    "more than 1e-4.\n"
    "\n"
    "  --opset N    ONNX opset, 9 to 17 (default 13)\n"
    "  --arch NAME  architecture when the checkpoint's metadata has none\n";

/* Round-trip tolerance on the embeddings (fp32; folding changes the rounding). */
#define EXPORT_TOL 1e-4

int fkd_cmd_export(int argc, char **argv)
{
    if (fkd_cli_wants_help(argc, argv)) {
        fputs(usage_text, stdout);
        return 0;
    }
    const char *model = NULL, *out = NULL, *arch = NULL;
    int opset = 13;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_value = i + 1 < argc;
        if (!strcmp(a, "--model") && has_value) model = argv[++i];
        else if (!strcmp(a, "--onnx") && has_value) out = argv[++i];
        else if (!strcmp(a, "--arch") && has_value) arch = argv[++i];
        else if (!strcmp(a, "--opset") && has_value) {
            char *end;
            const char *v = argv[++i];
            long n = strtol(v, &end, 10);
            if (!*v || *end || n < 9 || n > 17) {
                fprintf(stderr, "facekd export: --opset needs an integer from 9 to 17, got '%s'\n", v);
                return 2;
            }
            opset = (int)n;
        } else {
            fprintf(stderr, "facekd export: unknown option or missing value: '%s'\n\n%s", a, usage_text);
            return 2;
        }
    }
    if (!model || !out) {
        fprintf(stderr, "facekd export: give --model FILE.safetensors and --onnx OUT.onnx\n\n%s", usage_text);
        return 2;
    }
    fkd_safetensors st;
    if (fkd_safetensors_read(&st, model) != FKD_OK) return fkd_cli_fail();
    const char *resolved = NULL;
    fkd_model_meta meta;
    fkd_graph *g = NULL;
    fkd_value emb;
    /* batch 2: the round-trip check runs two different images */
    fkd_graph_config cfg = {.batch = 2, .mode = FKD_GRAPH_INFER};
    fkd_status s = fkd_model_resolve_arch(&st, arch, &resolved);
    if (s == FKD_OK) s = fkd_model_meta_from(&st, &meta);
    if (s == FKD_OK) s = fkd_model_open(&g, &st, resolved, &cfg, &emb);
    fkd_safetensors_free(&st);
    char width[16], blocks[64];
    const char *extra[2][2] = {{"width", width}, {"blocks", blocks}};
    fkd_onnx_export_opts opts = {.opset = opset, .architecture = resolved, .meta = extra};
    if (s == FKD_OK && meta.width > 0) {
        snprintf(width, sizeof width, "%d", meta.width);
        opts.n_meta = 1;
    }
    if (s == FKD_OK && meta.blocks[0] > 0) {
        snprintf(blocks, sizeof blocks, "%d,%d,%d,%d", meta.blocks[0], meta.blocks[1], meta.blocks[2], meta.blocks[3]);
        if (opts.n_meta == 0) extra[0][0] = "blocks", extra[0][1] = blocks;
        opts.n_meta++;
    }
    if (s == FKD_OK) s = fkd_onnx_export(g, emb, out, &opts);
    double diff = 0;
    if (s == FKD_OK) s = fkd_onnx_check_roundtrip(g, emb, out, 20261123, &diff);
    int nd = 0, dims[4] = {0};
    if (s == FKD_OK) s = fkd_graph_shape(g, emb, &nd, dims);
    fkd_graph_free(g);
    if (s != FKD_OK) return fkd_cli_fail();
    printf("wrote %s: %s, embedding %d, opset %d, dynamic batch\n", out, resolved, dims[1], opset);
    printf("round trip: max |embedding difference| %.2e (tolerance %.0e) %s\n", diff, EXPORT_TOL,
           diff <= EXPORT_TOL ? "ok" : "FAILED");
    if (!(diff <= EXPORT_TOL)) {
        fprintf(stderr, "facekd: %s: the exported model does not reproduce the native embeddings\n", out);
        return 1;
    }
    return 0;
}
