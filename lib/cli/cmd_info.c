/* facekd info: what an architecture or a model file holds. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "io/model.h"
#include "io/model_any.h"
#include "nn/arch.h"

static const char usage_text[] =
    "usage: facekd info --arch NAME [--num-features N] [--width W] [--json]\n"
    "       facekd info --model FILE.safetensors [--arch NAME] [--json]\n"
    "\n"
    "--arch alone describes an architecture: stage blocks, parameters, multiply-accumulates\n"
    "of one 112x112 image, taps and their shapes. Architectures: iresnet18 (r18, resnet18),\n"
    "iresnet34 (r34), iresnet50 (r50), iresnet100 (r100), mbf (mobilefacenet), mbf_large.\n"
    "\n"
    "--model lists a safetensors file's metadata and tensors and checks it against its\n"
    "architecture (the file's __metadata__ \"architecture\", or --arch when the file has none):\n"
    "every parameter and buffer present with the right shape and finite values.\n"
    "Exit status 1 when the file is unreadable or does not match.\n"
    "\n"
    "  --num-features N  embedding size for --arch (default 512)\n"
    "  --width W         base width for --arch (default 64; narrow test variants)\n"
    "  --json            one JSON object on stdout instead of text\n";

static void json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

/* 43590848 → "43,590,848" */
static const char *grouped(int64_t v, char buf[32])
{
    char raw[24];
    int n = snprintf(raw, sizeof raw, "%" PRId64, v), k = 0;
    for (int i = 0; i < n; i++) {
        if (i > 0 && raw[i - 1] != '-' && (n - i) % 3 == 0) buf[k++] = ',';
        buf[k++] = raw[i];
    }
    buf[k] = 0;
    return buf;
}

static void print_dims(const int64_t *dims, int ndims, int json)
{
    printf(json ? "[" : "(");
    for (int d = 0; d < ndims; d++) printf("%s%" PRId64, d ? ", " : "", dims[d]);
    printf(json ? "]" : ")");
}

static const char *const tap_names[] = {"stage1", "stage2", "stage3", "stage4", "embedding"};
enum { N_TAPS = 5 };

static int info_arch(const char *name, int num_features, int width, int json)
{
    const fkd_arch *a = fkd_arch_find(name);
    if (!a) return fkd_cli_fail();
    fkd_graph_config cfg = {.batch = 1, .mode = FKD_GRAPH_INFER, .precision = FKD_PREC_F32};
    fkd_graph *g = NULL;
    fkd_arch_opts opts = {.num_features = num_features, .width = width};
    fkd_value emb;
    int64_t params = 0, macs = 0;
    int64_t tap_dims[N_TAPS][4];
    int tap_nd[N_TAPS];
    fkd_status s = fkd_graph_create(&g, &cfg);
    fkd_value x = s == FKD_OK ? fkd_graph_input(g, "input", 3, 112, 112) : (fkd_value)s;
    s = x < 0 ? (fkd_status)x : fkd_arch_build(g, a->name, &opts, x, &emb);
    if (s == FKD_OK) s = fkd_graph_count(g, &params, &macs);
    for (int t = 0; t < N_TAPS && s == FKD_OK; t++) {
        fkd_value v = fkd_graph_find(g, tap_names[t]);
        int dims[4];
        s = v < 0 ? (fkd_status)v : fkd_graph_shape(g, v, &tap_nd[t], dims);
        /* drop the batch dimension */
        for (int d = 1; s == FKD_OK && d < tap_nd[t]; d++) tap_dims[t][d - 1] = dims[d];
        tap_nd[t]--;
    }
    fkd_graph_free(g);
    if (s != FKD_OK) return fkd_cli_fail();
    int nf = num_features > 0 ? num_features : 512;
    if (json) {
        printf("{\"architecture\": ");
        json_string(a->name);
        printf(", \"family\": ");
        json_string(a->family);
        printf(", \"aliases\": ");
        json_string(a->aliases);
        printf(", \"blocks\": [%d, %d, %d, %d], \"embedding_size\": %d, \"width\": %d, \"input\": [3, 112, 112], "
               "\"parameters\": %" PRId64 ", \"macs\": %" PRId64 ", \"taps\": {",
               a->blocks[0], a->blocks[1], a->blocks[2], a->blocks[3], nf, width > 0 ? width : 64, params, macs);
        for (int t = 0; t < N_TAPS; t++) {
            printf("%s\"%s\": ", t ? ", " : "", tap_names[t]);
            print_dims(tap_dims[t], tap_nd[t], 1);
        }
        printf("}}\n");
        return 0;
    }
    char b1[32], b2[32];
    printf("architecture  %s — %s\n", a->name, a->description);
    if (a->aliases[0]) printf("aliases       %s\n", a->aliases);
    printf("family        %s, blocks per stage %d %d %d %d%s\n", a->family, a->blocks[0], a->blocks[1], a->blocks[2],
           a->blocks[3], width > 0 && width != 64 ? " (narrow)" : "");
    printf("input         3 x 112 x 112, embedding %d\n", nf);
    printf("parameters    %s (BN running statistics not counted)\n", grouped(params, b1));
    printf("MACs          %.2f G per image (%s; convolutions and linear layers)\n", macs / 1e9, grouped(macs, b2));
    printf("taps         ");
    for (int t = 0; t < N_TAPS; t++) {
        printf(" %s ", tap_names[t]);
        print_dims(tap_dims[t], tap_nd[t], 0);
    }
    printf("\n");
    return 0;
}

/* Text or JSON listing of the file; then the architecture check. */
static void list_model(const fkd_safetensors *st, int json)
{
    int64_t elements = 0;
    int per_dtype[FKD_ST_DTYPE_COUNT] = {0};
    for (int i = 0; i < st->count; i++) {
        elements += st->tensors[i].numel;
        per_dtype[st->tensors[i].dtype]++;
    }
    if (json) {
        printf("{\"file\": ");
        json_string(st->path);
        printf(", \"bytes\": %zu, \"metadata\": {", st->size);
        for (int i = 0; i < st->meta_count; i++) {
            printf("%s", i ? ", " : "");
            json_string(st->meta[i].key);
            printf(": ");
            json_string(st->meta[i].value);
        }
        printf("}, \"elements\": %" PRId64 ", \"tensors\": [", elements);
        for (int i = 0; i < st->count; i++) {
            printf("%s{\"name\": ", i ? ", " : "");
            json_string(st->tensors[i].name);
            printf(", \"dtype\": \"%s\", \"shape\": ", fkd_st_dtype_name(st->tensors[i].dtype));
            print_dims(st->tensors[i].dims, st->tensors[i].ndims, 1);
            printf("}");
        }
        printf("]");
        return;
    }
    char b[32];
    printf("file          %s (%s bytes)\n", st->path, grouped((int64_t)st->size, b));
    for (int i = 0; i < st->meta_count; i++)
        printf("%s %s = %s\n", i ? "             " : "metadata     ", st->meta[i].key, st->meta[i].value);
    printf("tensors       %d, %s elements:", st->count, grouped(elements, b));
    for (int d = 0; d < FKD_ST_DTYPE_COUNT; d++)
        if (per_dtype[d]) printf(" %s %d", fkd_st_dtype_name((fkd_st_dtype)d), per_dtype[d]);
    printf("\n");
    for (int i = 0; i < st->count; i++) {
        printf("  %-56s %-4s ", st->tensors[i].name, fkd_st_dtype_name(st->tensors[i].dtype));
        print_dims(st->tensors[i].dims, st->tensors[i].ndims, 0);
        printf("\n");
    }
}

/* Tensors of the file that the architecture does not use. */
static int count_ignored(fkd_graph *g, const fkd_safetensors *st)
{
    fkd_param *p;
    int n, ignored = 0;
    if (fkd_graph_params(g, &p, &n) != FKD_OK) return -1;
    for (int i = 0; i < st->count; i++) {
        int used = 0;
        for (int k = 0; k < n && !used; k++) used = strcmp(p[k].name, st->tensors[i].name) == 0;
        ignored += !used;
    }
    return ignored;
}

/* An ONNX file: what the importer read and built. */
static int info_onnx(const char *path, const char *arch, int json)
{
    fkd_graph_config cfg = {.batch = 1, .mode = FKD_GRAPH_INFER, .precision = FKD_PREC_F32};
    fkd_graph *g = NULL;
    fkd_value emb;
    fkd_model_any_info info;
    int64_t params = 0;
    fkd_status s = fkd_model_open_any_info(path, arch, &cfg, &g, &emb, &info);
    if (s == FKD_OK) s = fkd_graph_count(g, &params, NULL);
    fkd_graph_free(g);
    if (s != FKD_OK) return fkd_cli_fail();
    const fkd_onnx_info *o = &info.onnx;
    if (json) {
        printf("{\"file\": ");
        json_string(path);
        printf(", \"format\": \"onnx\", \"input\": ");
        json_string(o->input_name);
        printf(", \"opset\": %" PRId64 ", \"producer\": ", o->opset);
        json_string(o->producer);
        printf(", \"embedding_size\": %d, \"parameters\": %" PRId64 ", \"onnx_nodes\": %d, \"engine_nodes\": %d"
               ", \"self_normalising\": %s, \"check\": \"ok\"}\n",
               o->embedding_size, params, o->onnx_nodes, o->engine_nodes, o->self_normalising ? "true" : "false");
        return 0;
    }
    char b[32];
    printf("file          %s (ONNX, opset %" PRId64 ", produced by %s)\n", path, o->opset,
           o->producer[0] ? o->producer : "?");
    printf("input         %s, %dx%dx%d%s\n", o->input_name, o->channels, o->height, o->width,
           o->self_normalising ? " (the graph normalises its input itself)" : ", (x - 127.5) / 127.5 RGB");
    if (o->architecture[0]) printf("architecture  %s\n", o->architecture);
    printf("nodes         %d in the file, %d in the engine graph (%d folded)\n", o->onnx_nodes, o->engine_nodes, o->folded);
    printf("check         ok: embedding %d, %s parameters after folding\n", o->embedding_size, grouped(params, b));
    return 0;
}

static int info_model(const char *path, const char *arch, int json)
{
    if (fkd_model_format_of(path) == FKD_MODEL_ONNX) return info_onnx(path, arch, json);
    fkd_safetensors st;
    if (fkd_safetensors_read(&st, path) != FKD_OK) return fkd_cli_fail();
    list_model(&st, json);
    int code = 0;
    const char *resolved = NULL;
    if (!arch && !fkd_safetensors_meta(&st, "architecture")) {
        if (json) printf(", \"check\": \"skipped\"}\n");
        else printf("check         skipped: no architecture in __metadata__ (give --arch)\n");
    } else {
        fkd_graph_config cfg = {.batch = 1, .mode = FKD_GRAPH_INFER, .precision = FKD_PREC_F32};
        fkd_graph *g = NULL;
        fkd_value emb;
        fkd_status s = fkd_model_resolve_arch(&st, arch, &resolved);
        if (s == FKD_OK) s = fkd_model_open(&g, &st, resolved, &cfg, &emb);
        int64_t params = 0;
        int dims[4] = {0}, nd = 0;
        if (s == FKD_OK) s = fkd_graph_count(g, &params, NULL);
        if (s == FKD_OK) s = fkd_graph_shape(g, emb, &nd, dims);
        int ignored = s == FKD_OK ? count_ignored(g, &st) : 0;
        fkd_graph_free(g);
        if (s != FKD_OK) {
            if (json) {
                printf(", \"check\": \"failed\", \"error\": ");
                json_string(fkd_last_error());
                printf("}\n");
            }
            code = fkd_cli_fail();
        } else if (json) {
            printf(", \"check\": \"ok\", \"architecture\": \"%s\", \"embedding_size\": %d, \"parameters\": %" PRId64
                   ", \"ignored_tensors\": %d}\n",
                   resolved, dims[1], params, ignored);
        } else {
            char b[32];
            printf("check         ok: %s, embedding %d, %s parameters; %d tensor%s not used by the architecture\n",
                   resolved, dims[1], grouped(params, b), ignored, ignored == 1 ? "" : "s");
        }
    }
    fkd_safetensors_free(&st);
    return code;
}

static int parse_positive(const char *opt, const char *text, int *out)
{
    char *end;
    long v = strtol(text, &end, 10);
    if (*text == 0 || *end || v < 1 || v > 65536) {
        fprintf(stderr, "facekd info: %s needs a positive integer, got '%s'\n", opt, text);
        return 0;
    }
    *out = (int)v;
    return 1;
}

int fkd_cmd_info(int argc, char **argv)
{
    if (fkd_cli_wants_help(argc, argv)) {
        fputs(usage_text, stdout);
        return 0;
    }
    const char *arch = NULL, *model = NULL;
    int json = 0, num_features = 0, width = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_value = i + 1 < argc;
        if (strcmp(a, "--json") == 0) json = 1;
        else if (strcmp(a, "--arch") == 0 && has_value) arch = argv[++i];
        else if (strcmp(a, "--model") == 0 && has_value) model = argv[++i];
        else if (strcmp(a, "--num-features") == 0 && has_value) {
            if (!parse_positive(a, argv[++i], &num_features)) return 2;
        } else if (strcmp(a, "--width") == 0 && has_value) {
            if (!parse_positive(a, argv[++i], &width)) return 2;
        } else {
            fprintf(stderr, "facekd info: unknown option or missing value: '%s'\n\n%s", a, usage_text);
            return 2;
        }
    }
    if (!arch && !model) {
        fprintf(stderr, "facekd info: give --arch NAME or --model FILE\n\n%s", usage_text);
        return 2;
    }
    if (model && (num_features || width)) {
        fprintf(stderr, "facekd info: --num-features and --width apply to --arch alone\n");
        return 2;
    }
    return model ? info_model(model, arch, json) : info_arch(arch, num_features, width, json);
}
