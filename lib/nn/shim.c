#include "nn/shim.h"

#include <assert.h>
#include <dnnl.h>
#include <stdlib.h>
#include <string.h>

/* Legend: md = memory descriptor, pd = primitive descriptor, prim = primitive. */

struct fkd_md {
    dnnl_memory_desc_t md;
};

typedef struct md_node {
    fkd_md md;
    struct md_node *next;
} md_node;

struct fkd_mem {
    dnnl_memory_t mem;
    const fkd_md *md;
    void *buf;   /* owned buffer, or NULL for views and edges */
    size_t bytes;
    struct fkd_mem *next;
};

struct fkd_pd {
    dnnl_primitive_desc_t pd;
    fkd_md mds[FKD_ARG__COUNT]; /* what the pd chose, per argument (zero md when unused) */
    struct fkd_pd *next;
};

/* Arguments bound to a primitive: one per fkd_arg plus the scratchpad. */
#define PRIM_MAX_ARGS (FKD_ARG__COUNT + 1)

struct fkd_prim {
    dnnl_primitive_t prim;
    const_dnnl_primitive_desc_t pd;
    dnnl_primitive_desc_t owned_pd; /* reorders own theirs */
    dnnl_exec_arg_t args[PRIM_MAX_ARGS];
    int nargs;
    dnnl_memory_t scratch; /* view of the shared scratchpad, bound at finalize */
    struct fkd_prim *next;
};

struct fkd_shim {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    dnnl_primitive_attr_t attr;       /* user-mode scratchpad */
    dnnl_primitive_attr_t attr_accum; /* user-mode scratchpad + sum post-op (dst += src) */
    md_node *mds;
    fkd_mem *mems;
    fkd_pd *pds;
    fkd_prim *prims;
    void *scratch_buf;
    bool finalized;
};

static const int dnnl_arg_of[FKD_ARG__COUNT] = {
    [FKD_ARG_SRC] = DNNL_ARG_SRC,
    [FKD_ARG_SRC_1] = DNNL_ARG_SRC_1,
    [FKD_ARG_DST] = DNNL_ARG_DST,
    [FKD_ARG_WEIGHTS] = DNNL_ARG_WEIGHTS,
    [FKD_ARG_BIAS] = DNNL_ARG_BIAS,
    [FKD_ARG_MEAN] = DNNL_ARG_MEAN,
    [FKD_ARG_VARIANCE] = DNNL_ARG_VARIANCE,
    [FKD_ARG_SCALE] = DNNL_ARG_SCALE,
    [FKD_ARG_SHIFT] = DNNL_ARG_SHIFT,
    [FKD_ARG_DIFF_SRC] = DNNL_ARG_DIFF_SRC,
    [FKD_ARG_DIFF_DST] = DNNL_ARG_DIFF_DST,
    [FKD_ARG_DIFF_WEIGHTS] = DNNL_ARG_DIFF_WEIGHTS,
    [FKD_ARG_DIFF_BIAS] = DNNL_ARG_DIFF_BIAS,
    [FKD_ARG_DIFF_SCALE] = DNNL_ARG_DIFF_SCALE,
    [FKD_ARG_DIFF_SHIFT] = DNNL_ARG_DIFF_SHIFT,
};
static_assert(sizeof dnnl_arg_of / sizeof dnnl_arg_of[0] == FKD_ARG__COUNT,
              "every fkd_arg maps to a DNNL_ARG");

const char *fkd_dnnl_status_str(int dnnl_status)
{
    switch ((dnnl_status_t)dnnl_status) {
    case dnnl_success: return "success";
    case dnnl_out_of_memory: return "out of memory";
    case dnnl_invalid_arguments: return "invalid arguments";
    case dnnl_unimplemented: return "unimplemented";
    case dnnl_iterator_ends: return "iterator ends";
    case dnnl_runtime_error: return "runtime error";
    case dnnl_not_required: return "not required";
    }
    return "unknown oneDNN status";
}

fkd_status fkd_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                     const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                     float *c, int64_t ldc)
{
    FKD_DNNL_CHECK(dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a, lda, b,
                              ldb, beta, c, ldc));
    return FKD_OK;
}

/* ---- shim ------------------------------------------------------------------------------ */

fkd_status fkd_shim_create(fkd_shim **out)
{
    *out = NULL;
    fkd_shim *s = calloc(1, sizeof *s);
    if (!s) return FKD_FAIL(FKD_ERR_NOMEM, "oneDNN shim: out of memory");
    *out = s;
    FKD_DNNL_CHECK(dnnl_engine_create(&s->engine, dnnl_cpu, 0));
    FKD_DNNL_CHECK(dnnl_stream_create(&s->stream, s->engine, dnnl_stream_default_flags));
    FKD_DNNL_CHECK(dnnl_primitive_attr_create(&s->attr));
    FKD_DNNL_CHECK(dnnl_primitive_attr_set_scratchpad_mode(s->attr, dnnl_scratchpad_mode_user));
    FKD_DNNL_CHECK(dnnl_primitive_attr_clone(&s->attr_accum, s->attr));
    dnnl_post_ops_t ops;
    FKD_DNNL_CHECK(dnnl_post_ops_create(&ops));
    dnnl_status_t st = dnnl_post_ops_append_sum(ops, 1.0f);
    if (st == dnnl_success) st = dnnl_primitive_attr_set_post_ops(s->attr_accum, ops);
    dnnl_post_ops_destroy(ops);
    FKD_DNNL_CHECK(st);
    return FKD_OK;
}

void fkd_shim_free(fkd_shim *s)
{
    if (!s) return;
    for (fkd_prim *p = s->prims, *next; p; p = next) {
        next = p->next;
        if (p->prim) dnnl_primitive_destroy(p->prim);
        if (p->owned_pd) dnnl_primitive_desc_destroy(p->owned_pd);
        if (p->scratch) dnnl_memory_destroy(p->scratch);
        free(p);
    }
    for (fkd_pd *p = s->pds, *next; p; p = next) {
        next = p->next;
        if (p->pd) dnnl_primitive_desc_destroy(p->pd);
        free(p);
    }
    for (fkd_mem *m = s->mems, *next; m; m = next) {
        next = m->next;
        if (m->mem) dnnl_memory_destroy(m->mem);
        free(m->buf);
        free(m);
    }
    for (md_node *m = s->mds, *next; m; m = next) {
        next = m->next;
        free(m);
    }
    free(s->scratch_buf);
    if (s->attr) dnnl_primitive_attr_destroy(s->attr);
    if (s->attr_accum) dnnl_primitive_attr_destroy(s->attr_accum);
    if (s->stream) dnnl_stream_destroy(s->stream);
    if (s->engine) dnnl_engine_destroy(s->engine);
    free(s);
}

/* ---- memory descriptors ---------------------------------------------------------------- */

static fkd_status md_new(fkd_shim *s, fkd_md **out)
{
    md_node *n = calloc(1, sizeof *n);
    if (!n) return FKD_FAIL(FKD_ERR_NOMEM, "oneDNN shim: out of memory");
    n->next = s->mds;
    s->mds = n;
    *out = &n->md;
    return FKD_OK;
}

static dnnl_data_type_t dnnl_dt(fkd_dtype dt)
{
    return dt == FKD_DT_BF16 ? dnnl_bf16 : dnnl_f32;
}

const char *fkd_shim_isa(void)
{
    switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx2: return "avx2";
    default: return "sse41 or older";
    }
}

int fkd_shim_flops_per_cycle(bool bf16)
{
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    if (bf16 && isa == dnnl_cpu_isa_avx512_core_amx) return 1024;
    if (bf16 && isa == dnnl_cpu_isa_avx512_core_bf16) return 128;
    if (isa == dnnl_cpu_isa_avx512_core_amx || isa == dnnl_cpu_isa_avx512_core_bf16 ||
        isa == dnnl_cpu_isa_avx512_core_vnni || isa == dnnl_cpu_isa_avx512_core)
        return 64;
    return isa == dnnl_cpu_isa_avx2 ? 32 : 16;
}

static fkd_status md_by_tag(fkd_shim *s, const fkd_md **out, int ndims, const int64_t *dims,
                            fkd_dtype dt, dnnl_format_tag_t tag)
{
    static const dnnl_format_tag_t plain[6] = {dnnl_format_tag_undef, dnnl_a, dnnl_ab, dnnl_abc,
                                               dnnl_abcd, dnnl_abcde};
    if (ndims < 1 || ndims > 5)
        return FKD_FAIL(FKD_ERR_ARG, "oneDNN shim: %d dimensions (1..5 supported)", ndims);
    fkd_md *md = NULL;
    FKD_TRY(md_new(s, &md));
    dnnl_dims_t d;
    for (int i = 0; i < ndims; i++) d[i] = dims[i];
    FKD_DNNL_CHECK(dnnl_memory_desc_init_by_tag(&md->md, ndims, d, dnnl_dt(dt),
                                                tag == dnnl_format_tag_undef ? plain[ndims] : tag));
    *out = md;
    return FKD_OK;
}

fkd_status fkd_shim_md_plain(fkd_shim *s, const fkd_md **out, int ndims, const int64_t *dims,
                             fkd_dtype dt)
{
    return md_by_tag(s, out, ndims, dims, dt, dnnl_format_tag_undef);
}

fkd_status fkd_shim_md_any(fkd_shim *s, const fkd_md **out, int ndims, const int64_t *dims,
                           fkd_dtype dt)
{
    return md_by_tag(s, out, ndims, dims, dt, dnnl_format_tag_any);
}

fkd_status fkd_shim_md_blocked16(fkd_shim *s, const fkd_md **out, const int64_t dims[4], fkd_dtype dt)
{
    return md_by_tag(s, out, 4, dims, dt, dnnl_nChw16c);
}

fkd_status fkd_shim_md_reshape(fkd_shim *s, const fkd_md **out, const fkd_md *md, int ndims,
                               const int64_t *dims)
{
    fkd_md *r = NULL;
    FKD_TRY(md_new(s, &r));
    dnnl_dims_t d;
    for (int i = 0; i < ndims; i++) d[i] = dims[i];
    FKD_DNNL_CHECK(dnnl_memory_desc_reshape(&r->md, &md->md, ndims, d));
    *out = r;
    return FKD_OK;
}

fkd_status fkd_shim_md_as(fkd_shim *s, const fkd_md **out, const fkd_md *md, fkd_dtype dt)
{
    fkd_md *copy = NULL;
    FKD_TRY(md_new(s, &copy));
    copy->md = md->md;
    /* Blocked layouts keep their strides in elements: only the element type changes. */
    copy->md.data_type = dnnl_dt(dt);
    *out = copy;
    return FKD_OK;
}

fkd_dtype fkd_shim_md_dtype(const fkd_md *md)
{
    return md->md.data_type == dnnl_bf16 ? FKD_DT_BF16 : FKD_DT_F32;
}

bool fkd_shim_bf16_ok(void)
{
    /* oneDNN 2.6 runs bf16 on avx512_core (emulated dot products) and up. */
    return (dnnl_get_effective_cpu_isa() & dnnl_cpu_isa_avx512_core) == dnnl_cpu_isa_avx512_core;
}

bool fkd_shim_md_equal(const fkd_md *a, const fkd_md *b)
{
    return dnnl_memory_desc_equal(&a->md, &b->md) != 0;
}

bool fkd_shim_md_is_blocked(const fkd_md *md)
{
    return md->md.format_kind == dnnl_blocked;
}

size_t fkd_shim_md_bytes(const fkd_md *md)
{
    return dnnl_memory_desc_get_size(&md->md);
}

/* ---- memory ---------------------------------------------------------------------------- */

/* Registers a memory over `buf` (NULL: no buffer yet); takes ownership of `buf` when
 * `owned`, also on failure. */
static fkd_status mem_new(fkd_shim *s, fkd_mem **out, const fkd_md *md, void *buf, bool owned)
{
    fkd_mem *m = calloc(1, sizeof *m);
    if (!m) {
        if (owned) free(buf);
        return FKD_FAIL(FKD_ERR_NOMEM, "oneDNN shim: out of memory");
    }
    m->next = s->mems;
    s->mems = m;
    m->md = md;
    m->bytes = fkd_shim_md_bytes(md);
    m->buf = owned ? buf : NULL;
    *out = m;
    FKD_DNNL_CHECK(dnnl_memory_create(&m->mem, &md->md, s->engine, buf ? buf : DNNL_MEMORY_NONE));
    return FKD_OK;
}

fkd_status fkd_shim_mem(fkd_shim *s, fkd_mem **out, const fkd_md *md)
{
    size_t bytes = (fkd_shim_md_bytes(md) + 63) / 64 * 64;
    if (bytes == 0) bytes = 64;
    void *buf = aligned_alloc(64, bytes);
    if (!buf) return FKD_FAIL(FKD_ERR_NOMEM, "oneDNN shim: cannot allocate %zu bytes", bytes);
    memset(buf, 0, bytes);
    return mem_new(s, out, md, buf, true);
}

fkd_status fkd_shim_mem_view(fkd_shim *s, fkd_mem **out, const fkd_md *md, fkd_mem *base)
{
    size_t bytes = fkd_shim_md_bytes(md);
    void *data = fkd_shim_mem_data(base);
    if (bytes > base->bytes || !data)
        return FKD_FAIL(FKD_ERR_ARG, "oneDNN shim: view of %zu bytes over a %zu-byte buffer",
                        bytes, base->bytes);
    return mem_new(s, out, md, data, false);
}

fkd_status fkd_shim_mem_wrap(fkd_shim *s, fkd_mem **out, const fkd_md *md, void *data)
{
    if (!data) return FKD_FAIL(FKD_ERR_ARG, "oneDNN shim: wrapping a NULL buffer");
    return mem_new(s, out, md, data, false);
}

fkd_status fkd_shim_mem_edge(fkd_shim *s, fkd_mem **out, const fkd_md *md)
{
    return mem_new(s, out, md, NULL, false);
}

fkd_status fkd_shim_mem_set_handle(fkd_mem *m, void *data)
{
    FKD_DNNL_CHECK(dnnl_memory_set_data_handle(m->mem, data));
    return FKD_OK;
}

void *fkd_shim_mem_data(const fkd_mem *m)
{
    void *p = NULL;
    if (dnnl_memory_get_data_handle(m->mem, &p) != dnnl_success) return NULL;
    return p;
}

const fkd_md *fkd_shim_mem_md(const fkd_mem *m) { return m->md; }
size_t fkd_shim_mem_bytes(const fkd_mem *m) { return m->bytes; }

/* ---- primitive descriptors ------------------------------------------------------------- */

static const dnnl_memory_desc_t *raw(const fkd_md *md) { return md ? &md->md : NULL; }

/* Creates a pd from an op descriptor with attributes `attr` and records the layout chosen
 * for each argument. */
static fkd_status pd_create_attr(fkd_shim *s, fkd_pd **out, const void *op_desc, const fkd_pd *hint,
                                 const_dnnl_primitive_attr_t attr)
{
    fkd_pd *p = calloc(1, sizeof *p);
    if (!p) return FKD_FAIL(FKD_ERR_NOMEM, "oneDNN shim: out of memory");
    p->next = s->pds;
    s->pds = p;
    FKD_DNNL_CHECK(dnnl_primitive_desc_create(&p->pd, op_desc, attr, s->engine, hint ? hint->pd : NULL));
    for (int a = 0; a < FKD_ARG__COUNT; a++) {
        const dnnl_memory_desc_t *md =
            dnnl_primitive_desc_query_md(p->pd, dnnl_query_exec_arg_md, dnnl_arg_of[a]);
        if (md) p->mds[a].md = *md;
    }
    *out = p;
    return FKD_OK;
}

static fkd_status pd_create(fkd_shim *s, fkd_pd **out, const void *op_desc, const fkd_pd *hint)
{
    return pd_create_attr(s, out, op_desc, hint, s->attr);
}

static dnnl_prop_kind_t fwd_kind(bool training)
{
    return training ? dnnl_forward_training : dnnl_forward_inference;
}

static dnnl_alg_kind_t conv_alg(bool winograd)
{
    return winograd ? dnnl_convolution_winograd : dnnl_convolution_direct;
}

fkd_status fkd_shim_conv_fwd_pd(fkd_shim *s, fkd_pd **out, bool training, const fkd_md *src,
                                const fkd_md *weights, const fkd_md *bias, const fkd_md *dst,
                                int stride, int padding, bool sum, bool winograd)
{
    dnnl_convolution_desc_t d;
    dnnl_dims_t st = {stride, stride}, pad = {padding, padding};
    FKD_DNNL_CHECK(dnnl_convolution_forward_desc_init(&d, fwd_kind(training), conv_alg(winograd),
                                                      raw(src), raw(weights), raw(bias), raw(dst),
                                                      st, pad, pad));
    /* attr_accum: the user-mode scratchpad and a sum post-op of scale 1. */
    return pd_create_attr(s, out, &d, NULL, sum ? s->attr_accum : s->attr);
}

fkd_status fkd_shim_conv_bwd_data_pd(fkd_shim *s, fkd_pd **out, const fkd_md *diff_src,
                                     const fkd_md *weights, const fkd_md *diff_dst, int stride,
                                     int padding, const fkd_pd *hint, bool winograd)
{
    dnnl_convolution_desc_t d;
    dnnl_dims_t st = {stride, stride}, pad = {padding, padding};
    FKD_DNNL_CHECK(dnnl_convolution_backward_data_desc_init(&d, conv_alg(winograd),
                                                            raw(diff_src), raw(weights),
                                                            raw(diff_dst), st, pad, pad));
    return pd_create(s, out, &d, hint);
}

fkd_status fkd_shim_conv_bwd_weights_pd(fkd_shim *s, fkd_pd **out, const fkd_md *src,
                                        const fkd_md *diff_weights, const fkd_md *diff_bias,
                                        const fkd_md *diff_dst, int stride, int padding,
                                        const fkd_pd *hint, bool winograd)
{
    dnnl_convolution_desc_t d;
    dnnl_dims_t st = {stride, stride}, pad = {padding, padding};
    FKD_DNNL_CHECK(dnnl_convolution_backward_weights_desc_init(
        &d, conv_alg(winograd), raw(src), raw(diff_weights), raw(diff_bias), raw(diff_dst),
        st, pad, pad));
    return pd_create(s, out, &d, hint);
}

static unsigned bnorm_flags(bool global_stats)
{
    return dnnl_use_scale | dnnl_use_shift | (global_stats ? dnnl_use_global_stats : 0u);
}

fkd_status fkd_shim_bnorm_fwd_pd(fkd_shim *s, fkd_pd **out, bool training, const fkd_md *data,
                                 float eps, bool global_stats)
{
    dnnl_batch_normalization_desc_t d;
    FKD_DNNL_CHECK(dnnl_batch_normalization_forward_desc_init(&d, fwd_kind(training), raw(data),
                                                              eps, bnorm_flags(global_stats)));
    return pd_create(s, out, &d, NULL);
}

fkd_status fkd_shim_bnorm_bwd_pd(fkd_shim *s, fkd_pd **out, const fkd_md *diff_data,
                                 const fkd_md *data, float eps, bool global_stats,
                                 const fkd_pd *hint)
{
    dnnl_batch_normalization_desc_t d;
    FKD_DNNL_CHECK(dnnl_batch_normalization_backward_desc_init(
        &d, dnnl_backward, raw(diff_data), raw(data), eps, bnorm_flags(global_stats)));
    return pd_create(s, out, &d, hint);
}

fkd_status fkd_shim_prelu_fwd_pd(fkd_shim *s, fkd_pd **out, bool training, const fkd_md *data,
                                 const fkd_md *weights)
{
    dnnl_prelu_desc_t d;
    FKD_DNNL_CHECK(dnnl_prelu_forward_desc_init(&d, fwd_kind(training), raw(data), raw(weights)));
    return pd_create(s, out, &d, NULL);
}

fkd_status fkd_shim_prelu_bwd_pd(fkd_shim *s, fkd_pd **out, const fkd_md *data,
                                 const fkd_md *weights, const fkd_md *diff_data,
                                 const fkd_md *diff_weights, const fkd_pd *hint)
{
    dnnl_prelu_desc_t d;
    FKD_DNNL_CHECK(dnnl_prelu_backward_desc_init(&d, raw(data), raw(weights), raw(diff_data),
                                                 raw(diff_weights)));
    return pd_create(s, out, &d, hint);
}

fkd_status fkd_shim_ip_fwd_pd(fkd_shim *s, fkd_pd **out, bool training, const fkd_md *src,
                              const fkd_md *weights, const fkd_md *bias, const fkd_md *dst)
{
    dnnl_inner_product_desc_t d;
    FKD_DNNL_CHECK(dnnl_inner_product_forward_desc_init(&d, fwd_kind(training), raw(src),
                                                        raw(weights), raw(bias), raw(dst)));
    return pd_create(s, out, &d, NULL);
}

fkd_status fkd_shim_ip_bwd_data_pd(fkd_shim *s, fkd_pd **out, const fkd_md *diff_src,
                                   const fkd_md *weights, const fkd_md *diff_dst,
                                   const fkd_pd *hint)
{
    dnnl_inner_product_desc_t d;
    FKD_DNNL_CHECK(dnnl_inner_product_backward_data_desc_init(&d, raw(diff_src), raw(weights),
                                                              raw(diff_dst)));
    return pd_create(s, out, &d, hint);
}

fkd_status fkd_shim_ip_bwd_weights_pd(fkd_shim *s, fkd_pd **out, const fkd_md *src,
                                      const fkd_md *diff_weights, const fkd_md *diff_bias,
                                      const fkd_md *diff_dst, const fkd_pd *hint)
{
    dnnl_inner_product_desc_t d;
    FKD_DNNL_CHECK(dnnl_inner_product_backward_weights_desc_init(
        &d, raw(src), raw(diff_weights), raw(diff_bias), raw(diff_dst)));
    return pd_create(s, out, &d, hint);
}

fkd_status fkd_shim_add_pd(fkd_shim *s, fkd_pd **out, const fkd_md *src0, const fkd_md *src1,
                           const fkd_md *dst)
{
    dnnl_binary_desc_t d;
    FKD_DNNL_CHECK(dnnl_binary_desc_init(&d, dnnl_binary_add, raw(src0), raw(src1), raw(dst)));
    return pd_create(s, out, &d, NULL);
}

const fkd_md *fkd_shim_pd_md(const fkd_pd *pd, fkd_arg arg)
{
    return &pd->mds[arg];
}

static const char *impl_str(const_dnnl_primitive_desc_t pd)
{
    const char *name = NULL;
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &name) != dnnl_success || !name)
        return "unknown";
    return name;
}

const char *fkd_shim_pd_impl(const fkd_pd *pd) { return impl_str(pd->pd); }

/* ---- primitives ------------------------------------------------------------------------ */

static fkd_status prim_new(fkd_shim *s, fkd_prim **out)
{
    if (s->finalized)
        return FKD_FAIL(FKD_ERR_ARG, "oneDNN shim: primitive created after finalize");
    fkd_prim *p = calloc(1, sizeof *p);
    if (!p) return FKD_FAIL(FKD_ERR_NOMEM, "oneDNN shim: out of memory");
    p->next = s->prims;
    s->prims = p;
    *out = p;
    return FKD_OK;
}

fkd_status fkd_shim_prim(fkd_shim *s, fkd_prim **out, const fkd_pd *pd)
{
    fkd_prim *p = NULL;
    FKD_TRY(prim_new(s, &p));
    p->pd = pd->pd;
    FKD_DNNL_CHECK(dnnl_primitive_create(&p->prim, pd->pd));
    *out = p;
    return FKD_OK;
}

static void bind_raw(fkd_prim *p, int arg, dnnl_memory_t mem)
{
    for (int i = 0; i < p->nargs; i++) {
        if (p->args[i].arg == arg) {
            p->args[i].memory = mem;
            return;
        }
    }
    p->args[p->nargs].arg = arg;
    p->args[p->nargs].memory = mem;
    p->nargs++;
}

fkd_status fkd_shim_prim_bind(fkd_prim *p, fkd_arg arg, fkd_mem *m)
{
    if (arg < 0 || arg >= FKD_ARG__COUNT)
        return FKD_FAIL(FKD_ERR_ARG, "oneDNN shim: bad argument %d", (int)arg);
    bind_raw(p, dnnl_arg_of[arg], m->mem);
    return FKD_OK;
}

fkd_status fkd_shim_reorder(fkd_shim *s, fkd_prim **out, fkd_mem *src, fkd_mem *dst,
                            bool accumulate)
{
    fkd_prim *p = NULL;
    FKD_TRY(prim_new(s, &p));
    FKD_DNNL_CHECK(dnnl_reorder_primitive_desc_create(&p->owned_pd, &src->md->md, s->engine,
                                                      &dst->md->md, s->engine,
                                                      accumulate ? s->attr_accum : s->attr));
    p->pd = p->owned_pd;
    FKD_DNNL_CHECK(dnnl_primitive_create(&p->prim, p->owned_pd));
    bind_raw(p, DNNL_ARG_FROM, src->mem);
    bind_raw(p, DNNL_ARG_TO, dst->mem);
    *out = p;
    return FKD_OK;
}

const char *fkd_shim_prim_impl(const fkd_prim *p) { return impl_str(p->pd); }

size_t fkd_shim_prim_scratch_bytes(const fkd_prim *p)
{
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(p->pd, dnnl_query_scratchpad_md, 0);
    return md ? dnnl_memory_desc_get_size(md) : 0;
}

/* Binds a scratchpad memory over `buf` to p. */
static fkd_status bind_scratch(fkd_shim *s, fkd_prim *p, void *buf)
{
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(p->pd, dnnl_query_scratchpad_md, 0);
    FKD_DNNL_CHECK(dnnl_memory_create(&p->scratch, md, s->engine, buf));
    bind_raw(p, DNNL_ARG_SCRATCHPAD, p->scratch);
    return FKD_OK;
}

fkd_status fkd_shim_prim_set_scratch(fkd_shim *s, fkd_prim *p, void *buf)
{
    if (p->scratch || fkd_shim_prim_scratch_bytes(p) == 0 || !buf)
        return FKD_FAIL(FKD_ERR_ARG, "oneDNN shim: %s: scratchpad bound twice, not needed or NULL",
                        fkd_shim_prim_impl(p));
    return bind_scratch(s, p, buf);
}

fkd_status fkd_shim_finalize(fkd_shim *s)
{
    size_t most = 0;
    for (fkd_prim *p = s->prims; p; p = p->next) {
        size_t bytes = p->scratch ? 0 : fkd_shim_prim_scratch_bytes(p);
        if (bytes > most) most = bytes;
    }
    if (most) {
        size_t rounded = (most + 63) / 64 * 64;
        s->scratch_buf = aligned_alloc(64, rounded);
        if (!s->scratch_buf)
            return FKD_FAIL(FKD_ERR_NOMEM, "oneDNN shim: cannot allocate a %zu-byte scratchpad", most);
    }
    for (fkd_prim *p = s->prims; p; p = p->next)
        if (!p->scratch && fkd_shim_prim_scratch_bytes(p)) FKD_TRY(bind_scratch(s, p, s->scratch_buf));
    s->finalized = true;
    return FKD_OK;
}

fkd_status fkd_shim_run(fkd_shim *s, fkd_prim *p)
{
    FKD_DNNL_CHECK(dnnl_primitive_execute(p->prim, s->stream, p->nargs, p->args));
    return FKD_OK;
}

fkd_status fkd_shim_wait(fkd_shim *s)
{
    FKD_DNNL_CHECK(dnnl_stream_wait(s->stream));
    return FKD_OK;
}
