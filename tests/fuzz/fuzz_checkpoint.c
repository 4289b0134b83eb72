/* Fuzz target: training checkpoints and model files (lib/io/checkpoint.c, lib/io/model.c
 * over lib/io/safetensors.c) — what `--resume`, `model.weights` and a teacher file go
 * through after the safetensors parser: tensor lookup by name, shape checks against a
 * graph, layout copies into the engine, optimizer state, metadata integers.
 *
 * A small network is built once (conv 3x3 → batch norm → PReLU → flatten → linear, 3x8x8
 * input, with an SGD-momentum optimizer and a 4x8 head matrix); each input is loaded into
 * it as a checkpoint, then its metadata is resolved as a model file's.
 *
 * FUZZ_WRITE_SEED=<path> in the environment makes the first call write a valid checkpoint
 * of this network to <path> instead (scripts/fuzz_seeds.py runs it for the seed). */
#include <stdlib.h>
#include <string.h>

#include "io/checkpoint.h"
#include "io/model.h"
#include "nn/optim.h"
#include "tests/support/fuzz_file.h"

typedef struct {
    fkd_graph *g;
    fkd_optim *optim;
    float head_data[4 * 8];
    fkd_param head;
} ck_net;

static int ck_net_build(ck_net *n)
{
    fkd_graph_config gc = {.batch = 1, .mode = FKD_GRAPH_TRAIN, .precision = FKD_PREC_F32, .seed = 1};
    if (fkd_graph_create(&n->g, &gc) != FKD_OK) return -1;
    fkd_value x = fkd_graph_input(n->g, "input", 3, 8, 8);
    x = fkd_graph_conv(n->g, "conv", x, 4, 3, 1, 1, 1, false);
    x = fkd_graph_batchnorm(n->g, "bn", x, 1e-5f, 0.1f);
    x = fkd_graph_prelu(n->g, "prelu", x);
    x = fkd_graph_flatten(n->g, "flat", x);
    x = fkd_graph_linear(n->g, "fc", x, 8, true);
    if (x < 0 || fkd_graph_finalize(n->g) != FKD_OK) return -1;
    n->head = (fkd_param){.name = "weight", .ndims = 2, .dims = {4, 8}, .numel = 32, .data = n->head_data,
                          .storage = 32, .trainable = true};
    fkd_param *lists[1];
    int counts[1];
    fkd_optim_config oc = fkd_optim_sgd_defaults();
    if (fkd_graph_params(n->g, &lists[0], &counts[0]) != FKD_OK) return -1;
    return fkd_optim_create(&n->optim, &oc, lists, counts, 1) == FKD_OK ? 0 : -1;
}

static fkd_checkpoint ck_parts(ck_net *n)
{
    fkd_checkpoint ck = {.model = n->g, .optim = n->optim, .head_params = &n->head, .head_count = 1, .step = 6};
    strcpy(ck.meta.architecture, "mbf");
    ck.meta.embedding_size = 8;
    strcpy(ck.meta.producer, "fuzz_checkpoint seed");
    return ck;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static ck_net net;
    if (!net.g && ck_net_build(&net) != 0) abort(); /* the harness itself is broken */
    const char *seed = getenv("FUZZ_WRITE_SEED");
    if (seed && *seed) {
        fkd_checkpoint ck = ck_parts(&net);
        if (fkd_checkpoint_save(seed, &ck) != FKD_OK) abort();
        setenv("FUZZ_WRITE_SEED", "", 1);
    }

    fuzz_file f;
    if (fuzz_file_open(&f, data, size) != 0) return 0;
    fkd_checkpoint ck = ck_parts(&net);
    (void)fkd_checkpoint_load(f.path, &ck);
    fuzz_file_close(&f);

    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);
    fkd_safetensors st;
    if (fkd_safetensors_parse(&st, "fuzz.safetensors", buf, size) == FKD_OK) {
        const char *arch;
        fkd_model_meta meta;
        (void)fkd_model_resolve_arch(&st, NULL, &arch);
        (void)fkd_model_meta_from(&st, &meta);
    }
    fkd_safetensors_free(&st);
    return 0;
}
