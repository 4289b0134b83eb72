/* The engine's graph: built once, run many times, on oneDNN (2.x C API).
 *
 * Life cycle
 *   fkd_graph_create()            configuration: batch, train/infer, precision, threads
 *   fkd_graph_input(), _conv(), … add nodes in topological order; each returns the id of
 *                                 its output value (>= 0) or a negative fkd_status
 *   fkd_graph_tap()               names a value for losses ("embedding", "stage1"...)
 *   fkd_graph_finalize()          creates every primitive, reorder and buffer
 *   loop: fkd_graph_set_input() → fkd_graph_forward() → fkd_graph_read() →
 *         fkd_graph_zero_grad() → fkd_graph_add_grad() → fkd_graph_backward() →
 *         optimizer on fkd_graph_params()
 *   fkd_graph_free()
 *
 * No step allocates. Inside the graph tensors live in the layouts oneDNN chooses
 * (format_tag_any); plain NCHW / (N, features) only at the edges (set_input, read,
 * add_grad, param_read/param_write).
 *
 * Shapes: values are 4-D (N, C, H, W) after input/conv/bn/prelu/add, and 2-D (N, F)
 * after flatten/linear. Batch norm and PReLU accept either.
 *
 * Parameter names are the PyTorch state_dict keys: a node named "layer1.0.conv1" owns
 * "layer1.0.conv1.weight"; batch norm "bn1" owns bn1.weight, bn1.bias (trainable) and
 * bn1.running_mean, bn1.running_var (buffers); PReLU "prelu" owns prelu.weight (C).
 */
#ifndef FKD_NN_GRAPH_H
#define FKD_NN_GRAPH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef enum { FKD_PREC_F32 = 0, FKD_PREC_BF16 } fkd_precision;
typedef enum { FKD_GRAPH_TRAIN = 0, FKD_GRAPH_INFER } fkd_graph_mode;

typedef struct {
    int batch;               /* fixed batch size N */
    fkd_graph_mode mode;     /* TRAIN keeps what backward needs; INFER may fold/fuse */
    fkd_precision precision; /* compute precision; master weights are always fp32 */
    uint64_t seed;           /* dropout masks */
    /* TRAIN graphs under mpirun: batch norm in training mode takes its statistics over the
     * batches of every rank (sums reduced through lib/dist in forward, and the sums of its
     * gradient in backward), as one process with the global batch would. */
    bool sync_bn;
    /* INFER graphs fold batch norm into the convolution or linear layer before it and fuse
     * residual adds into a convolution; TRAIN graphs run a batch norm and the PReLU after it
     * as one pass on AVX-512 CPUs (docs/ENGINE.md); true runs every node as its own op
     * (for checks and benchmarks). */
    bool unfused;
    /* fp32 graphs (INFER and TRAIN) run dense 3×3 stride-1 convolutions on multiples of 16
     * channels with oneDNN's Winograd F(4×4, 3×3) kernels (forward, and in TRAIN graphs
     * backward-data and backward-weights too; 1.3–2x the direct kernels' speed on
     * AVX-512; a different rounding, docs/ENGINE.md); true keeps direct convolutions. */
    bool direct_conv;
    /* TRAIN graphs keep every value backward reads, except what is cheaper to recompute: a
     * PReLU's or batch norm's output read only by convolutions (IResNet's bn1 → conv1,
     * bn2 → prelu → conv2) is recomputed from its input right before the convolutions'
     * backward, bit-identical (docs/ENGINE.md, "Memory"); true keeps those too (one
     * elementwise pass per recomputed value less per step, more memory). */
    bool keep_activations;
    /* TRAIN graphs compute dL/d(input) (fkd_graph_read_input_grad) only when true: a
     * training step does not need it, and the first convolution's backward-data pass
     * (IResNet-18 at batch 32: ~100 ms of a 3 s step, and a 25 MB temporary) is skipped. */
    bool input_grad;
} fkd_graph_config;

typedef struct fkd_graph fkd_graph;
typedef int fkd_value; /* id of a value in a graph; negative = an fkd_status error */

fkd_status fkd_graph_create(fkd_graph **out, const fkd_graph_config *config);
/* Safe on NULL and on a half-built graph. */
void fkd_graph_free(fkd_graph *g);

/* ---- building (before finalize) ---------------------------------------------------- */
fkd_value fkd_graph_input(fkd_graph *g, const char *name, int channels, int height, int width);
/* 2-D convolution, square kernel. groups = in_channels = out_channels is depthwise.
 * weight (out_c, in_c/groups, k, k), bias (out_c) when `bias`. */
fkd_value fkd_graph_conv(fkd_graph *g, const char *name, fkd_value x, int out_channels,
                         int kernel, int stride, int padding, int groups, bool bias);
/* BatchNorm2d on 4-D values, BatchNorm1d on 2-D values. PyTorch semantics: training
 * normalises with batch statistics (biased variance) and updates running statistics
 * with `momentum` using the unbiased variance; eval uses running statistics. */
fkd_value fkd_graph_batchnorm(fkd_graph *g, const char *name, fkd_value x, float eps, float momentum);
/* Per-channel PReLU, weight (C), initialised to 0.25 as in PyTorch. */
fkd_value fkd_graph_prelu(fkd_graph *g, const char *name, fkd_value x);
fkd_value fkd_graph_add(fkd_graph *g, const char *name, fkd_value a, fkd_value b);
fkd_value fkd_graph_flatten(fkd_graph *g, const char *name, fkd_value x);
/* y = x W^T + b, W (out, in). */
fkd_value fkd_graph_linear(fkd_graph *g, const char *name, fkd_value x, int out_features, bool bias);
/* Inverted dropout (scale 1/(1-p) in training, identity in eval). */
fkd_value fkd_graph_dropout(fkd_graph *g, const char *name, fkd_value x, float p);

/* Names `v` for readers: "embedding", "stage1".."stage4", or anything. Every node's output
 * is also reachable by its node name. */
fkd_status fkd_graph_tap(fkd_graph *g, const char *tap_name, fkd_value v);
/* Marks a parameter as not trained (arcface_torch's features.weight, frozen at 1). */
fkd_status fkd_graph_freeze(fkd_graph *g, const char *param_name);

/* Creates primitives and buffers; initialises parameters (kaiming-uniform like PyTorch's
 * defaults for conv/linear, BN weight 1 / bias 0, PReLU 0.25) from config->seed.
 * After a failure the graph can only be freed. */
fkd_status fkd_graph_finalize(fkd_graph *g);

/* ---- running (after finalize) ------------------------------------------------------ */
/* Train mode: batch statistics + dropout; eval mode: running statistics, no dropout.
 * Only meaningful for TRAIN graphs; INFER graphs are always in eval mode. */
fkd_status fkd_graph_set_training(fkd_graph *g, bool training);
/* Dropout masks are a function of (config seed, node, step). Each training forward uses
 * the current step and then advances it; set it to resume a run or to repeat a mask. */
fkd_status fkd_graph_set_step(fkd_graph *g, uint64_t step);
/* Copies a plain NCHW fp32 batch (N, C, H, W) into the input named `name`. */
fkd_status fkd_graph_set_input(fkd_graph *g, const char *name, const float *nchw);
fkd_status fkd_graph_forward(fkd_graph *g);
/* Finds a tap or node output by name; negative status when missing (error recorded). */
fkd_value fkd_graph_find(fkd_graph *g, const char *name);
/* Plain shape of a value: ndims 2 (N, F) or 4 (N, C, H, W). */
fkd_status fkd_graph_shape(const fkd_graph *g, fkd_value v, int *ndims, int dims[4]);
/* Copies a value out in plain layout (NCHW or (N, F)). INFER graphs keep only inputs,
 * taps and outputs (values nothing consumes): other values share activation buffers and
 * reading them fails — tap them before finalize. TRAIN graphs keep every value but the
 * recomputed ones (config.keep_activations), which fail the same way. */
fkd_status fkd_graph_read(fkd_graph *g, fkd_value v, float *out);
/* Zeroes every parameter gradient and every value gradient. */
fkd_status fkd_graph_zero_grad(fkd_graph *g);
/* Accumulates a plain-layout gradient dL/dv into value v (several taps may receive one). */
fkd_status fkd_graph_add_grad(fkd_graph *g, fkd_value v, const float *grad);
/* Backpropagates from all gradients added since zero_grad (or since the previous
 * backward: each backward consumes the value gradients it starts from); parameter and
 * input gradients accumulate across backward calls until zero_grad, so micro-batches
 * can be summed. TRAIN graphs only. */
fkd_status fkd_graph_backward(fkd_graph *g);
/* dL/d(input) in plain NCHW (for gradient checks and input-gradient taps); needs
 * config.input_grad. */
fkd_status fkd_graph_read_input_grad(fkd_graph *g, const char *name, float *out);

/* oneDNN's implementations behind a node, for checking that nothing runs on reference
 * code: "forward: brgconv:avx512_core; backward: jit:avx512_core, ..." (reorders
 * included; training-mode primitives for TRAIN graphs). Truncated to `cap`. */
fkd_status fkd_graph_kernels(fkd_graph *g, const char *node_name, char *buf, size_t cap);

/* Where a step's time goes (facekd bench --profile). While profiling is on, forward and
 * backward wait for each node's kernels to finish and add the node's time to its total
 * (the waits cost a little: oneDNN's CPU primitives already run to completion). */
fkd_status fkd_graph_set_profiling(fkd_graph *g, bool on);
typedef struct {
    const char *op;     /* "conv", "batchnorm", ... */
    bool backward;      /* the pass */
    char kernels[192];  /* the kernels of that pass, as fkd_graph_kernels names them */
    int nodes;          /* nodes with this op, pass and kernels */
    double seconds;     /* their time since profiling was switched on */
} fkd_graph_profile_row;
/* The totals grouped by (op, pass, kernels), most time first; *rows (malloc'd, the
 * caller frees it) may be NULL when count is 0. */
fkd_status fkd_graph_profile(const fkd_graph *g, fkd_graph_profile_row **rows, int *count);

/* ---- parameters ---------------------------------------------------------------------- */
typedef struct {
    const char *name;  /* state_dict key, e.g. "layer1.0.bn1.running_mean" */
    int ndims;
    int64_t dims[4];   /* PyTorch shape */
    int64_t numel;     /* product of dims */
    float *data;       /* fp32 master copy, in the engine's layout (may be blocked/padded) */
    float *grad;       /* same layout as data; NULL for buffers */
    size_t storage;    /* elements in data/grad, including layout padding (zeros) */
    bool trainable;    /* false for buffers and frozen parameters */
    bool decay;        /* weight decay applies (false for BN and PReLU by default) */
    bool is_buffer;    /* running statistics: saved, never trained */
} fkd_param;

/* The graph's parameters and buffers, in node order. Valid until fkd_graph_free(). */
fkd_status fkd_graph_params(fkd_graph *g, fkd_param **params, int *count);
/* Copies a parameter to/from PyTorch's plain layout (numel floats). */
fkd_status fkd_graph_param_read(fkd_graph *g, int index, float *plain);
fkd_status fkd_graph_param_write(fkd_graph *g, int index, const float *plain);
/* Copies a parameter's gradient to PyTorch's plain layout (TRAIN graphs, not buffers). */
fkd_status fkd_graph_param_read_grad(fkd_graph *g, int index, float *plain);
/* Parameters (excluding buffers, including frozen ones) and multiply-accumulates of one
 * image for conv and linear nodes. */
fkd_status fkd_graph_count(const fkd_graph *g, int64_t *parameters, int64_t *macs);

/* Where a finalized graph's activation memory goes (bytes of the engine's own buffers;
 * parameters, weight copies and oneDNN's own allocations not included). */
typedef struct {
    size_t kept;       /* values with their own buffer: what a TRAIN graph keeps for backward
                        * (every value but the recomputed ones), an INFER graph's inputs,
                        * taps and outputs */
    size_t gradients;  /* own gradient buffers (TRAIN: inputs, taps, outputs) */
    size_t arena;      /* one buffer planned by lifetime: shared activations (INFER,
                        * recomputed TRAIN values), shared gradients, backward temporaries,
                        * the primitives' scratchpads */
    size_t arena_live; /* the most of those bytes live at one moment: arena's lower bound */
    int recomputed;    /* TRAIN values recomputed for backward instead of kept */
} fkd_graph_memory;
fkd_status fkd_graph_memory_use(const fkd_graph *g, fkd_graph_memory *out);

#endif
