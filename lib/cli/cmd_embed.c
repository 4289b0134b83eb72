/* facekd embed --model M [--arch A] --input (IMAGE | DIR | FILE.npy) --out OUT.npy [--flip] [--batch N]
 *              [--precision fp32|bf16] */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "cli/commands.h"
#include "core/fileio.h"
#include "data/dataset.h"
#include "data/image.h"
#include "eval/embed.h"
#include "io/model_any.h"
#include "io/npy.h"

#define FACE_FLOATS (3 * 112 * 112)

static void usage(FILE *out)
{
    fprintf(out,
            "usage: facekd embed --model M [--arch A] --input IN --out OUT.npy [--flip] [--batch N]\n"
            "                    [--precision P]\n\n"
            "Writes the model's embeddings as a NumPy .npy file (float32, N x d), rows in input order.\n\n"
            "  --input IMAGE     one .jpg/.jpeg/.png (112x112 RGB; other sizes are resized)\n"
            "  --input DIR       every image in DIR and its sub-folders, sorted by path;\n"
            "                    the paths are written to OUT.npy.txt, one per row\n"
            "  --input F.npy     float32 (N, 3, 112, 112), already normalised ((x-127.5)/127.5, RGB)\n"
            "  --flip            flip test: embedding of the image plus that of its mirror (raw sum)\n"
            "  --batch N         images per forward pass (default 32)\n"
            "  --precision P     fp32 (default) or bf16 (bf16 weights and activations; falls back to\n"
            "                    fp32 with a warning on CPUs without AVX-512)\n");
}

typedef struct {
    char **paths;
    int64_t n, cap;
    const float *tensor; /* .npy input (n, 3, 112, 112) */
} embed_input;

static int is_image_name(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot && (!strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg") || !strcasecmp(dot, ".png"));
}

static fkd_status add_path(embed_input *in, const char *path)
{
    if (in->n == in->cap) {
        int64_t cap = in->cap ? 2 * in->cap : 256;
        char **p = realloc(in->paths, sizeof *p * (size_t)cap);
        if (!p) return FKD_FAIL(FKD_ERR_NOMEM, "out of memory listing images");
        in->paths = p;
        in->cap = cap;
    }
    in->paths[in->n] = strdup(path);
    if (!in->paths[in->n]) return FKD_FAIL(FKD_ERR_NOMEM, "out of memory listing images");
    in->n++;
    return FKD_OK;
}

static int compare_strings(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static fkd_status scan_dir(embed_input *in, const char *dir, int depth)
{
    if (depth > 16) return FKD_FAIL(FKD_ERR_ARG, "%s: folders nested too deep", dir);
    DIR *d = opendir(dir);
    if (!d) return FKD_FAIL(FKD_ERR_IO, "%s: cannot open folder", dir);
    fkd_status s = FKD_OK;
    struct dirent *e;
    while (s == FKD_OK && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st) != 0) continue;
        if (S_ISDIR(st.st_mode))
            s = scan_dir(in, path, depth + 1);
        else if (is_image_name(e->d_name))
            s = add_path(in, path);
    }
    closedir(d);
    return s;
}

static fkd_status embed_source(void *ctx, int64_t i, bool flip, float *slot)
{
    embed_input *in = ctx;
    if (in->tensor) {
        const float *src = in->tensor + (size_t)i * FACE_FLOATS;
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < 112; y++)
                for (int x = 0; x < 112; x++)
                    slot[(c * 112 + y) * 112 + x] = src[(c * 112 + y) * 112 + (flip ? 111 - x : x)];
        return FKD_OK;
    }
    fkd_image img = {0};
    fkd_status s = fkd_image_load(in->paths[i], &img);
    if (s == FKD_OK) s = fkd_image_to_nchw(&img, flip, true, in->paths[i], slot);
    fkd_image_free(&img);
    return s;
}

/* The row order of a folder input, for the user to join embeddings with files. */
static fkd_status write_path_list(const embed_input *in, const char *out)
{
    char path[4096];
    snprintf(path, sizeof path, "%s.txt", out);
    size_t total = 0;
    for (int64_t i = 0; i < in->n; i++) total += strlen(in->paths[i]) + 1;
    char *text = malloc(total + 1), *at = text;
    if (!text) return FKD_FAIL(FKD_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < in->n; i++) at += sprintf(at, "%s\n", in->paths[i]);
    fkd_status s = fkd_atomic_write(path, text, total);
    free(text);
    return s;
}

int fkd_cmd_embed(int argc, char **argv)
{
    if (fkd_cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    const char *model = NULL, *arch = NULL, *input = NULL, *out = NULL;
    int flip = 0, batch = 32;
    fkd_precision precision = FKD_PREC_F32;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_value = i + 1 < argc;
        if (!strcmp(a, "--model") && has_value) model = argv[++i];
        else if (!strcmp(a, "--arch") && has_value) arch = argv[++i];
        else if (!strcmp(a, "--input") && has_value) input = argv[++i];
        else if (!strcmp(a, "--out") && has_value) out = argv[++i];
        else if (!strcmp(a, "--batch") && has_value) batch = atoi(argv[++i]);
        else if (!strcmp(a, "--flip")) flip = 1;
        else if (!strcmp(a, "--precision") && has_value) {
            if (fkd_cli_precision("facekd embed", argv[++i], &precision) != 0) return fkd_cli_fail() + 1;
        }
        else {
            fprintf(stderr, "facekd embed: unexpected argument '%s' (see --help)\n", a);
            return 2;
        }
    }
    if (!model || !input || !out) {
        fprintf(stderr, "facekd embed: --model, --input and --out are required (see --help)\n");
        return 2;
    }
    if (batch < 1 || batch > 4096) {
        fprintf(stderr, "facekd embed: --batch must be 1..4096\n");
        return 2;
    }
    embed_input in = {0};
    fkd_npy_array tensor = {0};
    struct stat st;
    fkd_status s = FKD_OK;
    size_t len = strlen(input);
    if (stat(input, &st) != 0) {
        s = FKD_FAIL(FKD_ERR_IO, "%s: no such file or folder", input);
    } else if (S_ISDIR(st.st_mode)) {
        s = scan_dir(&in, input, 0);
        if (s == FKD_OK && in.n == 0) s = FKD_FAIL(FKD_ERR_NOTFOUND, "%s: no .jpg/.jpeg/.png images", input);
        if (s == FKD_OK) qsort(in.paths, (size_t)in.n, sizeof *in.paths, compare_strings);
    } else if (len > 4 && !strcasecmp(input + len - 4, ".npy")) {
        s = fkd_npy_read(input, FKD_NPY_F32, &tensor);
        if (s == FKD_OK && (tensor.info.ndims != 4 || tensor.info.dims[1] != 3 || tensor.info.dims[2] != 112 ||
                            tensor.info.dims[3] != 112))
            s = FKD_FAIL(FKD_ERR_FORMAT, "%s: expected shape (N, 3, 112, 112) float32", input);
        in.tensor = tensor.data;
        in.n = s == FKD_OK ? tensor.info.dims[0] : 0;
    } else {
        s = add_path(&in, input);
    }
    fkd_graph *g = NULL;
    fkd_value emb = -1;
    fkd_graph_config gc = {.batch = batch, .mode = FKD_GRAPH_INFER, .precision = precision};
    if (s == FKD_OK) s = fkd_model_open_any(model, arch, &gc, &g, &emb);
    fkd_progress progress;
    fkd_progress_start(&progress, "embed", flip ? 2 * in.n : in.n, 1);
    fkd_embed_config ec = {.graph = g, .embedding = emb, .input = "input", .progress = in.n > 256 ? &progress : NULL};
    int dim = 0;
    float *result = NULL, *mirrored = NULL;
    if (s == FKD_OK) s = fkd_embed_dim(&ec, &dim);
    if (s == FKD_OK && !(result = malloc(sizeof(float) * (size_t)(in.n * dim + 1))))
        s = FKD_FAIL(FKD_ERR_NOMEM, "out of memory for %lld embeddings", (long long)in.n);
    if (s == FKD_OK && flip && !(mirrored = malloc(sizeof(float) * (size_t)(in.n * dim + 1))))
        s = FKD_FAIL(FKD_ERR_NOMEM, "out of memory for %lld embeddings", (long long)in.n);
    if (s == FKD_OK) s = fkd_embed_images(&ec, in.n, embed_source, &in, false, result);
    if (s == FKD_OK && flip) s = fkd_embed_images(&ec, in.n, embed_source, &in, true, mirrored);
    for (size_t k = 0; s == FKD_OK && flip && k < (size_t)(in.n * dim); k++) result[k] += mirrored[k];
    if (s == FKD_OK && ec.progress) fkd_progress_finish(&progress, progress.done, NULL);
    int64_t dims[2] = {in.n, dim};
    if (s == FKD_OK) s = fkd_npy_write(out, FKD_NPY_F32, result, 2, dims);
    if (s == FKD_OK && S_ISDIR(st.st_mode)) s = write_path_list(&in, out);
    if (s == FKD_OK) fprintf(stderr, "wrote %s: %lld x %d float32\n", out, (long long)in.n, dim);
    free(result);
    free(mirrored);
    fkd_graph_free(g);
    fkd_npy_free(&tensor);
    for (int64_t i = 0; i < in.n && in.paths; i++) free(in.paths[i]);
    free(in.paths);
    return s == FKD_OK ? 0 : fkd_cli_fail();
}
