/* Architectures by name: a table of the IResNet family (teachers, and the ResNet-18
 * student) and MobileFaceNet (students), built into an fkd_graph with arcface_torch's
 * module names, so arcface_torch state_dict keys are facekd's parameter names.
 *
 *   fkd_value x = fkd_graph_input(g, "input", 3, 112, 112);
 *   fkd_value emb;
 *   FKD_TRY(fkd_arch_build(g, "iresnet50", NULL, x, &emb));   // taps stage1..4, embedding
 */
#ifndef FKD_NN_ARCH_H
#define FKD_NN_ARCH_H

#include "nn/graph.h"

/* Zero / NULL fields take the architecture's defaults (arcface_torch's). */
typedef struct {
    int num_features;  /* embedding size; 0 = 512 */
    int width;         /* base width; 0 = 64. Narrow variants (tests) use e.g. 8 */
    const int *blocks; /* 4 per-stage block counts; NULL = the architecture's own */
    float dropout;     /* before fc (IResNet only); 0 = none, as arcface_torch */
} fkd_arch_opts;

typedef struct fkd_arch fkd_arch;
struct fkd_arch {
    const char *name;        /* canonical: "iresnet50", "mbf" */
    const char *aliases;     /* space-separated other names ("r50") */
    const char *family;      /* "iresnet" or "mobilefacenet" */
    const char *description; /* one line for `facekd info` */
    int blocks[4];           /* default per-stage block counts */
    int scale;               /* MobileFaceNet channel scale (2 for mbf); 0 for IResNet */
    const char *embedding_weight; /* the (num_features, in) weight: its rows are the embedding size */
    fkd_status (*build)(fkd_graph *g, const fkd_arch *arch, const fkd_arch_opts *opts, fkd_value input,
                        fkd_value *embedding);
};

/* By name or alias; NULL (and an error listing the known names) when unknown. */
const fkd_arch *fkd_arch_find(const char *name);
/* The table, for listings: index 0 .. fkd_arch_count()-1. */
int fkd_arch_count(void);
const fkd_arch *fkd_arch_at(int index);
/* Adds the architecture's nodes after `input` (3 × 112 × 112) and its taps; `opts` may
 * be NULL. */
fkd_status fkd_arch_build(fkd_graph *g, const char *name, const fkd_arch_opts *opts, fkd_value input,
                          fkd_value *embedding);

/* For builders: evaluates a graph call, returns its status from the caller when it is
 * negative, else stores the value in `dst`. */
#define FKD_VALUE_TRY(dst, expr)                                                   \
    do {                                                                           \
        fkd_value fkd__v = (expr);                                                 \
        if (fkd__v < 0) return (fkd_status)fkd__v;                                 \
        (dst) = fkd__v;                                                            \
    } while (0)

/* Batch norm constants of both families (PyTorch defaults, as arcface_torch). */
#define FKD_ARCH_BN_EPS 1e-5f
#define FKD_ARCH_BN_MOMENTUM 0.1f

#endif
