/* Inside the graph: nodes, values, parameters and the op interface (internal to lib/nn).
 *
 * An op is a struct of functions (fkd__op). Adding one:
 *   1. a value in fkd__op_kind before FKD__OP_COUNT, its name in op_names (graph.c);
 *   2. lib/nn/op_<name>.c with the public builder (validates, computes the output shape,
 *      declares parameters with fkd__param_declare) and the fkd__op table;
 *   3. the table in graph.c's `ops[]` — static_asserts catch a half-added op.
 *
 * build() runs at finalize in node order: it sees the layouts its inputs were produced in,
 * chooses its own through oneDNN, creates its primitives and appends them to n->fwd /
 * n->bwd. forward()/backward() are optional: without them the step lists run in order.
 * Ops never call oneDNN themselves; they go through lib/nn/shim.h.
 */
#ifndef FKD_NN_OP_H
#define FKD_NN_OP_H

#include "nn/graph.h"
#include "nn/shim.h"

typedef enum {
    FKD__OP_INPUT = 0,
    FKD__OP_CONV,
    FKD__OP_BATCHNORM,
    FKD__OP_PRELU,
    FKD__OP_ADD,
    FKD__OP_FLATTEN,
    FKD__OP_LINEAR,
    FKD__OP_DROPOUT,
    FKD__OP_COUNT
} fkd__op_kind;

/* One step of a node: a oneDNN primitive; or a host kernel `host(ctx)` (facekd's own
 * kernels, `label` names it for fkd_graph_kernels); or (prim and host NULL) dst += src over
 * two fp32 memories of the same layout (gradient accumulation, OpenMP). Memories, not
 * pointers: backward temporaries get their buffer only at the end of finalize. */
typedef struct {
    fkd_prim *prim;
    fkd_mem *dst, *src;
    fkd_status (*host)(void *ctx);
    void *ctx;
    const char *label;
    /* A weight copy (fkd__param_as): in INFER graphs it runs only when the parameters may
     * have changed (*seen != g->weights_version); TRAIN graphs run it every time. */
    uint64_t *seen;
} fkd__step;

/* Host loops over fewer elements than this run on one thread (no OpenMP region). */
#define FKD__PARALLEL_MIN 32768

/* Steps run in order. */
typedef struct {
    fkd__step *items;
    int count, cap;
} fkd__steps;

typedef struct {
    int ndims;
    int64_t dims[4];  /* plain shape: (N, C, H, W) or (N, F) */
    int producer;     /* node index */
    fkd_mem *data;    /* in the producer's layout */
    /* INFER graphs with fusion: the value whose buffer this one uses (itself when it has its
     * own): a folded batch norm's output is its convolution's, a fused add's output is the
     * residual it was added into (fuse.c). Follow it with fkd__value_root. */
    int alias;
    /* false when the buffer is shared with other values once this one's last consumer has
     * run (not readable after forward): INFER graphs' intermediate values, and in TRAIN
     * graphs the recomputed ones. Inputs, taps and outputs are kept. */
    bool kept;
    /* TRAIN graphs: not kept for backward; a consumer's backward that needs the value
     * recomputes it from its producer's inputs into a temporary (fkd__saved_input). */
    bool recomputed;
    /* TRAIN graphs: a batch norm's output that the fused batch norm + PReLU never stores
     * (no data, no gradient). */
    bool unstored;
    fkd_mem *grad;    /* same layout as data; TRAIN graphs only */
    /* TRAIN graphs: the gradient buffer is shared with values whose gradients live at other
     * times of the backward pass (from the last consumer's backward to the producer's);
     * inputs, taps and outputs own theirs (add_grad and read_input_grad need them). */
    bool grad_shared;
    /* A shared gradient that its only consumer's backward writes whole (fkd__dx_target):
     * it needs no zeroing before that backward (the others are zeroed there). */
    bool grad_overwritten;
    /* Nobody reads this gradient (a graph input without config.input_grad): consumers may
     * skip computing it (build_weighted drops backward-data). */
    bool no_grad;
    int consumers;    /* input slots that read this value (a node reading it twice counts 2) */
    /* Edges: a buffer-less plain memory pointed at the caller's array, with reorders
     * (NULL when data is already plain: plain copies are memcpy). */
    fkd_mem *edge;
    fkd_prim *to_plain, *grad_from_plain;
} fkd__value;

typedef struct fkd__node {
    fkd__op_kind op;
    char *name;
    int inputs[2];
    int n_inputs;
    int output;       /* value id */
    int first_param;  /* index into g->params, n_params of them */
    int n_params;
    void *state;      /* op-private: attributes and what build() made; freed with free() */
    /* INFER-graph fusion (fuse.c), -1 / false when none:
     *   fold_bn   conv: the batch-norm node folded into its weights and bias;
     *   residual  conv: the value its sum post-op adds (its buffer is the conv's dst);
     *   absorbed_by  batch norm / add: the conv node that computes this one's output
     *                (this node has no steps).
     * TRAIN-graph fusion (fuse.c, op_batchnorm.c), -1 when none:
     *   fused_prelu  batch norm: the PReLU node reading its output, computed together
     *                (bnact.h) by this node's steps;
     *   absorbed_by  that PReLU: this batch norm node (the PReLU has no steps). */
    int fold_bn, residual, absorbed_by, fused_prelu;
    fkd__steps fwd, bwd;
} fkd__node;

typedef enum { FKD__INIT_ZERO = 0, FKD__INIT_ONE, FKD__INIT_CONST, FKD__INIT_UNIFORM } fkd__init;

/* What the engine keeps beside a public fkd_param. */
typedef struct {
    fkd__init init;
    float init_value;  /* CONST: the value; UNIFORM: the bound b of U(-b, b) */
    uint64_t copy_seen; /* weights_version its compute copy was made at (fkd__param_as) */
    const fkd_md *plain;
    fkd_mem *data, *grad;   /* engine layout */
    fkd_mem *edge;          /* plain, buffer-less, NULL when the engine layout is plain */
    fkd_prim *to_plain, *from_plain, *grad_to_plain;
} fkd__param_impl;

struct fkd_graph {
    fkd_graph_config cfg;
    fkd_dtype dtype;  /* the one place the compute type is chosen (from cfg.precision) */
    fkd_shim *shim;
    fkd__node *nodes;
    int n_nodes, cap_nodes;
    fkd__value *values;
    int n_values, cap_values;
    fkd_param *params;
    fkd__param_impl *pimpl;
    int n_params, cap_params;
    struct fkd__tap { char *name; int value; } *taps;
    int n_taps, cap_taps;
    int *last_use;    /* per value: index of the last consuming node (INT_MAX: kept) */
    int *grad_until;  /* per value: the last consuming node (INT_MAX: own gradient buffer) */
    int building;     /* node being built */
    /* Buffers that live only part of a step, planned by lifetime into one arena at finalize
     * (graph.c, "the arena"): shared activations (INFER graphs, recomputed TRAIN values),
     * shared gradients, backward temporaries and the primitives' scratchpads. Times: node
     * i's forward is i, its backward 2N - 1 - i (N nodes); a span is live over
     * [first, last]. The memories are buffer-less until the arena exists. */
    struct fkd__span {
        fkd_mem *mem;     /* or NULL and steps: the scratchpad of their primitives, which run
                           * one after another and share it */
        const fkd__steps *steps;
        size_t bytes, offset;
        int first, last;
    } *spans;
    int n_spans, cap_spans;
    /* The node being built: its first span, and the temporaries fkd__bwd_temp may reuse
     * (spans [reuse_at, reuse_end), after fkd__bwd_temps_alternative). */
    int node_first_span, reuse_at, reuse_end;
    /* Memories over a span's buffer with another descriptor (fkd__mem_view). */
    struct fkd__view { fkd_mem *mem, *base; } *views;
    int n_views, cap_views;
    size_t arena_bytes;
    size_t arena_live; /* the most span bytes live at one time (the arena's lower bound) */
    void *arena;
    bool finalized, training;
    double *node_seconds; /* profiling (fkd_graph_set_profiling): per node, forward then backward */
    bool broken;      /* finalize failed half-way: only fkd_graph_free is allowed */
    uint64_t step;    /* dropout mask stream for the next training forward */
    /* Bumped whenever parameters may change outside the optimizer's step: param_write,
     * fkd_graph_params (it hands out writable pointers), initialisation. */
    uint64_t weights_version;
    int64_t macs;     /* per image, conv + linear */
    /* Host-step contexts made at finalize (batch-norm folding), freed with the graph. */
    void **owned;
    int n_owned, cap_owned;
};

typedef struct {
    /* Creates layouts, buffers and primitives (at finalize). */
    fkd_status (*build)(fkd_graph *g, fkd__node *n);
    /* Optional: NULL runs n->fwd. */
    fkd_status (*forward)(fkd_graph *g, fkd__node *n);
    /* Optional: NULL runs n->bwd. */
    fkd_status (*backward)(fkd_graph *g, fkd__node *n);
    /* Optional (producers): appends to `steps` what recomputes the node's output into
     * `dst` (its layout) from its inputs, bit-identical to the forward. */
    fkd_status (*recompute)(fkd_graph *g, fkd__node *n, fkd__steps *steps, fkd_mem *dst);
    /* Optional (consumers): true when build() reads the input's data for backward through
     * fkd__saved_input, so the input may be recomputed instead of kept. */
    bool (*input_recomputable)(const fkd_graph *g, const fkd__node *n);
    /* Optional: releases what n->state points to (the state itself is freed after);
     * must be safe when build() never ran or stopped half-way. */
    void (*free)(fkd__node *n);
} fkd__op;

extern const fkd__op fkd__op_input, fkd__op_conv, fkd__op_batchnorm, fkd__op_prelu,
    fkd__op_add, fkd__op_flatten, fkd__op_linear, fkd__op_dropout;

const char *fkd__op_name(fkd__op_kind op);
/* Attributes kept in op-private state, for graph_walk.c. */
void fkd__conv_attrs(const fkd__node *n, int *kernel, int *stride, int *padding, int *groups);
float fkd__batchnorm_eps(const fkd__node *n);

/* ---- shared inside lib/nn -------------------------------------------------------------- */
/* Grows an array of `size`-byte elements to hold at least `need` (new slots zeroed). */
fkd_status fkd__grow(void **items, int *cap, int need, size_t size);
/* FKD_ERR_ARG naming `what` unless the graph is finalized. */
fkd_status fkd__need_finalized(const fkd_graph *g, const char *what);
/* params.c, called by finalize: plain-layout edges of every parameter (after the builds),
 * then the initial values (after the shim is finalized). */
fkd_status fkd__params_build_edges(fkd_graph *g);
fkd_status fkd__params_init(fkd_graph *g);

/* ---- used by builders (before finalize) ------------------------------------------------ */
/* Checks that the graph is still open and the inputs exist; adds a node with `state`
 * (taken over, also on failure) and its output value of the given plain shape.
 * Returns the output value id or a negative status naming the node. */
fkd_value fkd__node_add(fkd_graph *g, fkd__op_kind op, const char *name, const int *inputs,
                        int n_inputs, void *state, int ndims, const int64_t *dims);
/* Validates a builder call before the node exists: names the op and node in errors. */
fkd_status fkd__check_inputs(fkd_graph *g, fkd__op_kind op, const char *name, const int *inputs,
                             int n_inputs);
/* Declares the next parameter of the node just added ("<node>.<suffix>"). */
fkd_status fkd__param_declare(fkd_graph *g, const char *suffix, int ndims, const int64_t *dims,
                              fkd__init init, float init_value, bool is_buffer, bool decay);

/* ---- used by build() ------------------------------------------------------------------- */
/* Gives the node's output value its layout: allocates data (and grad in TRAIN graphs);
 * in INFER graphs a value that is not kept gets a shared activation block. */
fkd_status fkd__value_alloc(fkd_graph *g, int value, const fkd_md *md);
/* Gives a parameter its engine layout `md`; `plain` is the same dims in plain layout
 * (NULL: plain PyTorch dims; grouped conv weights and PReLU weights have more dims inside
 * the engine than in the state_dict). param_read/param_write convert with reorders. */
fkd_status fkd__param_alloc(fkd_graph *g, int param, const fkd_md *md, const fkd_md *plain);
/* A memory holding `have`'s data in layout (and element type) `want`: `have` itself, or a
 * persistent buffer filled by a reorder appended to `steps` (bf16 copies of fp32 master
 * weights, run each forward). */
fkd_status fkd__mem_as(fkd_graph *g, fkd__steps *steps, fkd_mem *have, const fkd_md *want,
                       fkd_mem **out);
/* The same for parameter `param`'s master data (a bf16 copy for bf16 primitives): in INFER
 * graphs the copy is remade only after the parameters may have changed. */
fkd_status fkd__param_as(fkd_graph *g, fkd__steps *steps, int param, const fkd_md *want, fkd_mem **out);
/* The same for value `v`'s data (backward may read the copy). */
fkd_status fkd__value_as(fkd_graph *g, fkd__steps *steps, int v, const fkd_md *want,
                         fkd_mem **out);
/* Another descriptor over `base`'s buffer (which may get it only at the end of finalize). */
fkd_status fkd__mem_view(fkd_graph *g, fkd_mem **out, const fkd_md *md, fkd_mem *base);
/* Backward-only buffers: they live while node `n`'s backward runs (in INFER graphs, which
 * have no backward, while its forward runs), planned in the arena with every other buffer
 * by lifetime. Outputs of primitives only: oneDNN writes every
 * element, layout padding included.
 *   fkd__bwd_temp   a buffer of layout `md`;
 *   fkd__grad_as    value v's gradient in layout `want` (the gradient itself, or a temp
 *                   filled by a reorder appended to `steps`);
 *   fkd__bwd_as     the same for any memory (weights, saved inputs). */
fkd_status fkd__bwd_temp(fkd_graph *g, fkd__node *n, const fkd_md *md, fkd_mem **out);
/* The steps built next never run with the node's steps built so far (batch norm's eval
 * and training backward): their temporaries reuse the earlier ones' bytes, in order. */
void fkd__bwd_temps_alternative(fkd_graph *g);
fkd_status fkd__grad_as(fkd_graph *g, fkd__node *n, fkd__steps *steps, int v, const fkd_md *want,
                        fkd_mem **out);
fkd_status fkd__bwd_as(fkd_graph *g, fkd__node *n, fkd__steps *steps, fkd_mem *have,
                       const fkd_md *want, fkd_mem **out);
/* Where node n's backward writes dL/d(input value v) of layout `md`: v's gradient itself when
 * n's backward is the first to reach it (the gradient is shared, zero until then, and n is
 * v's last consumer in node order, reading it once: the zeroing is skipped and n writes it
 * whole; consumers whose backward runs later add to it), saving a temporary and an
 * accumulation pass; else a temporary, and the accumulation into v's gradient is appended
 * to `steps` after the caller's primitive (call fkd__dx_done after appending the primitive). */
fkd_status fkd__dx_target(fkd_graph *g, fkd__node *n, int v, const fkd_md *md, fkd_mem **out);
fkd_status fkd__dx_done(fkd_graph *g, fkd__steps *steps, int v, fkd_mem *dx);
/* Appends "v's gradient += src" to steps, as a copy when n's backward reaches the gradient
 * first (as for fkd__dx_target). */
fkd_status fkd__grad_pass(fkd_graph *g, fkd__node *n, fkd__steps *steps, fkd_mem *src, int v);
/* For an op whose backward hands its output gradient dy to input v unchanged (the residual
 * add): makes v's gradient dy's buffer, so that the hand-over costs nothing, and sets
 * *aliased; else leaves *aliased false and the caller appends fkd__grad_pass. `sharing` is
 * -1, or another input of n already given dy's buffer this way: v then joins only when no
 * addition into v's gradient can reach `sharing`'s before its last read. */
fkd_status fkd__grad_alias(fkd_graph *g, fkd__node *n, int v, int sharing, bool *aliased);
/* What node n's backward reads as input value v's data, given `fwd_src`, what its forward
 * read (v's data or a kept copy in another layout): fwd_src itself, or, when v is
 * recomputed and fwd_src is its data, a backward temporary that steps appended to
 * `steps` fill with v's producer's recompute. */
fkd_status fkd__saved_input(fkd_graph *g, fkd__node *n, fkd__steps *steps, int v, fkd_mem *fwd_src,
                            fkd_mem **out);
fkd_status fkd__steps_add(fkd__steps *steps, fkd_prim *p);
/* Appends a host kernel; it runs after the primitives before it have finished. */
fkd_status fkd__steps_add_host(fkd__steps *steps, fkd_status (*host)(void *ctx), void *ctx,
                               const char *label);
/* Appends dst += src: a host loop when the layouts agree, a reorder with a sum post-op
 * otherwise. */
fkd_status fkd__accumulate(fkd_graph *g, fkd__steps *steps, fkd_mem *src, fkd_mem *dst);
fkd_status fkd__steps_run(fkd_graph *g, const fkd__steps *steps);
/* Conv and linear share one shape: y = op(x, W) + b. Given their primitive descriptors
 * (backward ones NULL in INFER graphs), allocates the output and the weight/bias
 * parameters (params first_param, first_param + 1 when n_params == 2), and appends
 *   forward:  [reorder x] op
 *   backward: [reorder dy] backward-data → dx += ; backward-weights → dW +=, db +=
 * (the backward-weights primitive, or the op's own pass). */
/* A weighted node's own backward-weights pass, used instead of a bwd_weights primitive:
 * appends dW += f(x, dy) to steps, x_saved being the forward's input as backward reads it
 * (op_conv.c's global depthwise convolution, conv_global_dw.c). */
typedef fkd_status (*fkd__weights_pass)(fkd_graph *g, fkd__node *n, fkd__steps *steps, fkd_mem *x_saved);
/* bwd_weights NULL in a TRAIN graph: weights_pass builds that pass. */
fkd_status fkd__build_weighted(fkd_graph *g, fkd__node *n, const fkd_pd *fwd,
                               const fkd_pd *bwd_data, const fkd_pd *bwd_weights,
                               const fkd_md *weight_plain, fkd__weights_pass weights_pass);

/* ---- INFER-graph fusion (fuse.c) ------------------------------------------------------- */
/* Plans batch-norm folding and sum post-ops at finalize, before any build: sets fold_bn,
 * residual, absorbed and value aliases. Needs g->last_use (raw, before merging aliases),
 * the consumer counts and `kept`. */
fkd_status fkd__plan_fusion(fkd_graph *g);
int fkd__value_root(const fkd_graph *g, int v);
/* For a conv node with fold_bn >= 0 whose master weight (and bias) parameters are
 * already allocated in plain fp32 layout `w_plain`: appends to n->fwd a host step that
 * computes W' = s·W, b' = s·b + t from the batch norm's parameters (fold.h), only when the
 * parameters may have changed since it last ran (weights_version), and reorders W' into a
 * graph-private memory of layout `want` (NULL: W' stays plain fp32). The master parameters
 * are never changed (saving and export read them). */
fkd_status fkd__fold_build(fkd_graph *g, fkd__node *n, const fkd_md *w_plain, const fkd_md *want,
                           fkd_mem **w_out, fkd_mem **b_out);

/* TRAIN graphs (unless config.unfused): marks each batch norm whose output only a PReLU
 * reads, untapped, for the fused batch norm + PReLU (fused_prelu, absorbed_by). The batch
 * norm's build may still decline it (a layout bnact.h does not cover); it then clears both. */
void fkd__plan_train_fusion(fkd_graph *g);
/* op_batchnorm.c: the fused pair's output again, into dst (the PReLU's recompute). */
fkd_status fkd__bnact_recompute(fkd_graph *g, fkd__node *bn, fkd__steps *steps, fkd_mem *dst);

/* Plain descriptor of a value's shape in the graph's compute type. */
fkd_status fkd__value_plain_md(fkd_graph *g, int v, const fkd_md **out);

#endif
