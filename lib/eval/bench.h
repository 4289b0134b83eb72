/* Verification benchmarks: an insightface .bin (lfw.bin, cfp_fp.bin, the synthetic
 * synth-*.bin) or an LFW-style pairs.txt over an image folder, evaluated through a model
 * with insightface's protocol (flip test, 10 folds) and the ROC statistics beside it. */
#ifndef FKD_EVAL_BENCH_H
#define FKD_EVAL_BENCH_H

#include <stdint.h>

#include "data/folder.h"
#include "data/verbin.h"
#include "eval/embed.h"
#include "eval/verify.h"

typedef struct {
    char *name;       /* "lfw", "synth-cfp-fp", … (column name in reports) */
    int64_t n_pairs;
    uint8_t *issame;  /* (n_pairs) */
    int n_folds;      /* 10, insightface's */
    fkd_verbin bin;   /* when read from a .bin */
    fkd_pairs pairs;  /* when read from pairs.txt */
    int is_pairs;
} fkd_bench;

fkd_status fkd_bench_open_bin(fkd_bench *b, const char *name, const char *path);
fkd_status fkd_bench_open_pairs(fkd_bench *b, const char *name, const char *pairs_txt, const char *root);
/* A built-in synthetic benchmark ("synth-lfw", ...) of world `seed`, rendered once into
 * `cache_dir` (NULL: fkd_cache_dir()/synth) as a .bin and read from there. */
fkd_status fkd_bench_open_synth(fkd_bench *b, const char *name, uint64_t seed, const char *cache_dir);
/* Safe on a zeroed or half-opened benchmark. */
void fkd_bench_free(fkd_bench *b);

/* Image i (0 .. 2 n_pairs − 1) of the benchmark as a normalised slot (fkd_image_source). */
fkd_status fkd_bench_image(void *bench, int64_t i, bool flip, float *slot);

/* Embeds every image (and, with `flip`, its mirror) and runs insightface's test().
 * `embeddings`, when not NULL, receives a malloc'ed (2 n_pairs, d) array of the
 * flip-summed raw embeddings (caller frees) for ROC plots; `dim` their width. */
fkd_status fkd_bench_evaluate(fkd_bench *b, const fkd_embed_config *config, bool flip, fkd_verify_result *res,
                              float **embeddings, int *dim);

#endif
