/* insightface verification .bin: a small pickle virtual machine for exactly the opcodes
 * that (list of bytes, list of bools) produces under Python 2 and 3, and a writer.
 * Opcode values follow CPython's Lib/pickletools.py. */
#include "data/verbin.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"

enum {
    OP_MARK = '(', OP_STOP = '.', OP_BININT = 'J', OP_BININT1 = 'K', OP_BININT2 = 'M', OP_NONE = 'N',
    OP_REDUCE = 'R', OP_BINSTRING = 'T', OP_SHORT_BINSTRING = 'U', OP_BINUNICODE = 'X', OP_APPEND = 'a',
    OP_GLOBAL = 'c', OP_APPENDS = 'e', OP_BINGET = 'h', OP_LONG_BINGET = 'j', OP_LIST = 'l',
    OP_BINPUT = 'q', OP_LONG_BINPUT = 'r', OP_TUPLE = 't', OP_EMPTY_LIST = ']', OP_EMPTY_TUPLE = ')',
    OP_BINBYTES = 'B', OP_SHORT_BINBYTES = 'C', OP_PROTO = 0x80, OP_TUPLE1 = 0x85, OP_TUPLE2 = 0x86,
    OP_TUPLE3 = 0x87, OP_NEWTRUE = 0x88, OP_NEWFALSE = 0x89, OP_SHORT_BINUNICODE = 0x8c,
    OP_BINUNICODE8 = 0x8d, OP_BINBYTES8 = 0x8e, OP_STACK_GLOBAL = 0x93, OP_MEMOIZE = 0x94, OP_FRAME = 0x95,
};

#define NUMPY_HINT                                                                                         \
    "this .bin stores numpy objects; facekd reads lists of encoded image bytes. If the arrays hold "       \
    "JPEG/PNG bytes, convert it with: /usr/bin/python3 -c \"import pickle,sys; "                         \
    "b,s=pickle.load(open(sys.argv[1],'rb'),encoding='bytes'); "                                       \
    "pickle.dump(([bytes(memoryview(x).tobytes()) for x in b],[bool(v) for v in s]),open(sys.argv[2],'wb'),protocol=4)\" " \
    "IN.bin OUT.bin (arrays of pixels must first be encoded to JPEG or PNG)"

typedef enum { T_BYTES, T_STR, T_LIST, T_TUPLE, T_BOOL, T_INT, T_NONE, T_GLOBAL } obj_type;

static const char *type_name(obj_type t)
{
    static const char *names[] = {"bytes", "str", "list", "tuple", "bool", "int", "None", "global"};
    return names[t];
}

typedef struct {
    obj_type type;
    const uint8_t *data, *data2; /* bytes/str; GLOBAL: module (data) and name (data2) */
    size_t size, size2;
    int64_t ival;
    int64_t *items; /* list/tuple: object ids */
    int64_t n_items, cap;
} obj;

typedef struct {
    const char *path;
    const uint8_t *buf;
    size_t size, pos, op_pos;
    int op;
    obj *objs;
    int64_t n_objs, objs_cap;
    int64_t *stack, n_stack, stack_cap;
    int64_t *marks, n_marks, marks_cap;
    int64_t *memo, memo_cap; /* object id + 1 per memo slot; 0 = empty */
    int64_t memo_next;       /* MEMOIZE's next slot (len(memo)) */
    fkd_verbin *set;
} vm;

static fkd_status grow_i64(vm *m, int64_t **a, int64_t *cap, int64_t need)
{
    if (need <= *cap) return FKD_OK;
    int64_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    int64_t *p = realloc(*a, (size_t)c * sizeof *p);
    if (!p) return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", m->path);
    *a = p;
    *cap = c;
    return FKD_OK;
}

static fkd_status bad(vm *m, const char *what)
{
    return FKD_FAIL(FKD_ERR_FORMAT, "%s: pickle opcode 0x%02x ('%c') at byte offset %zu: %s", m->path, m->op,
                    m->op >= 32 && m->op < 127 ? m->op : '?', m->op_pos, what);
}

static fkd_status new_obj(vm *m, obj_type t, int64_t *id)
{
    if (m->n_objs == m->objs_cap) {
        int64_t c = m->objs_cap ? m->objs_cap * 2 : 256;
        obj *p = realloc(m->objs, (size_t)c * sizeof *p);
        if (!p) return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", m->path);
        m->objs = p;
        m->objs_cap = c;
    }
    memset(&m->objs[m->n_objs], 0, sizeof(obj));
    m->objs[m->n_objs].type = t;
    *id = m->n_objs++;
    return FKD_OK;
}

static fkd_status push(vm *m, int64_t id)
{
    FKD_TRY(grow_i64(m, &m->stack, &m->stack_cap, m->n_stack + 1));
    m->stack[m->n_stack++] = id;
    return FKD_OK;
}

static fkd_status push_new(vm *m, obj_type t, int64_t *id)
{
    FKD_TRY(new_obj(m, t, id));
    return push(m, *id);
}

/* The stack above the innermost mark. */
static int64_t stack_floor(const vm *m) { return m->n_marks ? m->marks[m->n_marks - 1] : 0; }

static fkd_status pop(vm *m, int64_t *id)
{
    if (m->n_stack <= stack_floor(m)) return bad(m, "stack underflow");
    *id = m->stack[--m->n_stack];
    return FKD_OK;
}

static fkd_status top(vm *m, int64_t *id)
{
    if (m->n_stack <= stack_floor(m)) return bad(m, "empty stack");
    *id = m->stack[m->n_stack - 1];
    return FKD_OK;
}

static fkd_status take(vm *m, size_t n, const uint8_t **p)
{
    if (n > m->size - m->pos)
        return FKD_FAIL(FKD_ERR_FORMAT, "%s: pickle opcode 0x%02x at byte offset %zu: needs %zu bytes, file ends %zu bytes later",
                        m->path, m->op, m->op_pos, n, m->size - m->pos);
    *p = m->buf + m->pos;
    m->pos += n;
    return FKD_OK;
}

static fkd_status arg_uint(vm *m, int bytes, uint64_t *v)
{
    const uint8_t *p;
    FKD_TRY(take(m, (size_t)bytes, &p));
    *v = 0;
    for (int i = bytes - 1; i >= 0; i--) *v = *v << 8 | p[i];
    return FKD_OK;
}

/* bytes/str objects point into the file: no copy. */
static fkd_status op_string(vm *m, obj_type t, int len_bytes)
{
    uint64_t n;
    FKD_TRY(arg_uint(m, len_bytes, &n));
    if (len_bytes == 4 && m->op == OP_BINSTRING && n > INT32_MAX) return bad(m, "negative length");
    const uint8_t *p;
    FKD_TRY(take(m, (size_t)n, &p));
    int64_t id;
    FKD_TRY(push_new(m, t, &id));
    m->objs[id].data = p;
    m->objs[id].size = (size_t)n;
    return FKD_OK;
}

static fkd_status list_append(vm *m, int64_t list, int64_t item)
{
    obj *o = &m->objs[list];
    FKD_TRY(grow_i64(m, &o->items, &o->cap, o->n_items + 1));
    o->items[o->n_items++] = item;
    return FKD_OK;
}

static fkd_status op_appends(vm *m)
{
    if (!m->n_marks) return bad(m, "no MARK before APPENDS");
    int64_t mark = m->marks[--m->n_marks];
    if (mark < 1 || mark > m->n_stack) return bad(m, "no list below the MARK");
    int64_t list = m->stack[mark - 1];
    if (m->objs[list].type != T_LIST) return bad(m, "APPENDS to something that is not a list");
    for (int64_t i = mark; i < m->n_stack; i++) FKD_TRY(list_append(m, list, m->stack[i]));
    m->n_stack = mark;
    return FKD_OK;
}

/* Builds a list or tuple of the top `n` items (n < 0: everything above the innermost mark,
 * which is then removed). */
static fkd_status op_collect(vm *m, obj_type t, int64_t n)
{
    int64_t from;
    if (n < 0) {
        if (!m->n_marks) return bad(m, "no MARK");
        from = m->marks[--m->n_marks];
    } else {
        if (m->n_stack - stack_floor(m) < n) return bad(m, "stack underflow");
        from = m->n_stack - n;
    }
    int64_t id;
    FKD_TRY(new_obj(m, t, &id));
    for (int64_t i = from; i < m->n_stack; i++) FKD_TRY(list_append(m, id, m->stack[i]));
    m->n_stack = from;
    return push(m, id);
}

static fkd_status memo_put(vm *m, uint64_t slot)
{
    int64_t id;
    FKD_TRY(top(m, &id));
    if (slot > (uint64_t)(m->size + 16)) return bad(m, "memo index larger than the file could use");
    int64_t need = (int64_t)slot + 1;
    int64_t old = m->memo_cap;
    FKD_TRY(grow_i64(m, &m->memo, &m->memo_cap, need));
    for (int64_t i = old; i < m->memo_cap; i++) m->memo[i] = 0;
    m->memo[slot] = id + 1;
    return FKD_OK;
}

static fkd_status memo_get(vm *m, uint64_t slot)
{
    if ((int64_t)slot >= m->memo_cap || m->memo[slot] == 0) return bad(m, "memo slot never stored");
    return push(m, m->memo[slot] - 1);
}

static bool is_numpy(const obj *g) { return g->size >= 5 && memcmp(g->data, "numpy", 5) == 0; }

static bool global_is(const obj *g, const char *module, const char *name)
{
    return g->size == strlen(module) && memcmp(g->data, module, g->size) == 0 && g->size2 == strlen(name) &&
           memcmp(g->data2, name, g->size2) == 0;
}

static fkd_status make_global(vm *m, const uint8_t *mod, size_t mod_n, const uint8_t *name, size_t name_n)
{
    int64_t id;
    FKD_TRY(push_new(m, T_GLOBAL, &id));
    obj *g = &m->objs[id];
    g->data = mod;
    g->size = mod_n;
    g->data2 = name;
    g->size2 = name_n;
    if (is_numpy(g))
        return FKD_FAIL(FKD_ERR_UNSUPPORTED, "%s: byte offset %zu: %.*s.%.*s: %s", m->path, m->op_pos, (int)mod_n,
                        (const char *)mod, (int)name_n, (const char *)name, NUMPY_HINT);
    return FKD_OK;
}

static fkd_status op_global(vm *m)
{
    /* Two newline-terminated lines: module, name. */
    const uint8_t *mod = m->buf + m->pos, *nl1 = memchr(mod, '\n', m->size - m->pos);
    if (!nl1) return bad(m, "unterminated module name");
    const uint8_t *name = nl1 + 1, *nl2 = memchr(name, '\n', (size_t)(m->buf + m->size - name));
    if (!nl2) return bad(m, "unterminated global name");
    m->pos = (size_t)(nl2 + 1 - m->buf);
    return make_global(m, mod, (size_t)(nl1 - mod), name, (size_t)(nl2 - name));
}

static fkd_status op_stack_global(vm *m)
{
    int64_t name = 0, mod = 0;
    FKD_TRY(pop(m, &name));
    FKD_TRY(pop(m, &mod));
    if (m->objs[name].type != T_STR || m->objs[mod].type != T_STR) return bad(m, "module and name must be str");
    return make_global(m, m->objs[mod].data, m->objs[mod].size, m->objs[name].data, m->objs[name].size);
}

/* UTF-8 text of code points < 256 back to bytes: Python 3 writes bytes under protocol 2
 * as _codecs.encode(bytes.decode('latin1'), 'latin1'). */
static fkd_status latin1_bytes(vm *m, const obj *s, int64_t out_id)
{
    uint8_t *b = malloc(s->size ? s->size : 1);
    if (!b) return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", m->path);
    size_t n = 0;
    for (size_t i = 0; i < s->size; i++) {
        uint8_t c = s->data[i];
        if (c < 0x80) {
            b[n++] = c;
        } else if ((c & 0xfe) == 0xc2 && i + 1 < s->size && (s->data[i + 1] & 0xc0) == 0x80) {
            b[n++] = (uint8_t)((c & 0x03) << 6 | (s->data[i + 1] & 0x3f));
            i++;
        } else {
            free(b);
            return bad(m, "latin1 text holds a character above U+00FF");
        }
    }
    fkd_verbin *set = m->set;
    uint8_t **owned = realloc(set->owned, (size_t)(set->n_owned + 1) * sizeof *owned);
    if (!owned) {
        free(b);
        return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", m->path);
    }
    set->owned = owned;
    set->owned[set->n_owned++] = b;
    m->objs[out_id].data = b;
    m->objs[out_id].size = n;
    return FKD_OK;
}

static fkd_status op_reduce(vm *m)
{
    int64_t args = 0, fn = 0;
    FKD_TRY(pop(m, &args));
    FKD_TRY(pop(m, &fn));
    const obj *g = &m->objs[fn], *a = &m->objs[args];
    if (g->type != T_GLOBAL || a->type != T_TUPLE) return bad(m, "REDUCE needs a global and a tuple");
    int64_t id;
    if (global_is(g, "_codecs", "encode") && a->n_items == 2 && m->objs[a->items[0]].type == T_STR &&
        m->objs[a->items[1]].type == T_STR && m->objs[a->items[1]].size == 6 &&
        memcmp(m->objs[a->items[1]].data, "latin1", 6) == 0) {
        int64_t text = a->items[0];
        FKD_TRY(push_new(m, T_BYTES, &id));
        return latin1_bytes(m, &m->objs[text], id);
    }
    if ((global_is(g, "__builtin__", "bytes") || global_is(g, "builtins", "bytes")) && a->n_items == 0)
        return push_new(m, T_BYTES, &id);
    return FKD_FAIL(FKD_ERR_UNSUPPORTED, "%s: pickle opcode REDUCE at byte offset %zu: call of %.*s.%.*s is not part of a "
                    "verification .bin", m->path, m->op_pos, (int)g->size, (const char *)g->data, (int)g->size2,
                    (const char *)g->data2);
}

static fkd_status push_int(vm *m, obj_type t, int64_t v)
{
    int64_t id;
    FKD_TRY(push_new(m, t, &id));
    m->objs[id].ival = v;
    return FKD_OK;
}

/* Executes one opcode; *stop set at STOP. */
static fkd_status step(vm *m, bool *stop)
{
    uint64_t v;
    int64_t id = 0, item = 0;
    m->op_pos = m->pos;
    m->op = m->buf[m->pos++];
    switch (m->op) {
    case OP_PROTO:
        FKD_TRY(arg_uint(m, 1, &v));
        if (v < 2 || v > 5) return bad(m, "protocol outside 2..5");
        return FKD_OK;
    case OP_FRAME: /* frames only group opcodes for buffering; the content follows inline */
        FKD_TRY(arg_uint(m, 8, &v));
        if (v > m->size - m->pos) return bad(m, "frame runs past the end of the file");
        return FKD_OK;
    case OP_MEMOIZE:
        FKD_TRY(memo_put(m, (uint64_t)m->memo_next));
        m->memo_next++;
        return FKD_OK;
    case OP_BINPUT:
    case OP_LONG_BINPUT:
        FKD_TRY(arg_uint(m, m->op == OP_BINPUT ? 1 : 4, &v));
        return memo_put(m, v);
    case OP_BINGET:
    case OP_LONG_BINGET:
        FKD_TRY(arg_uint(m, m->op == OP_BINGET ? 1 : 4, &v));
        return memo_get(m, v);
    case OP_SHORT_BINSTRING: return op_string(m, T_BYTES, 1);
    case OP_BINSTRING: return op_string(m, T_BYTES, 4);
    case OP_SHORT_BINBYTES: return op_string(m, T_BYTES, 1);
    case OP_BINBYTES: return op_string(m, T_BYTES, 4);
    case OP_BINBYTES8: return op_string(m, T_BYTES, 8);
    case OP_SHORT_BINUNICODE: return op_string(m, T_STR, 1);
    case OP_BINUNICODE: return op_string(m, T_STR, 4);
    case OP_BINUNICODE8: return op_string(m, T_STR, 8);
    case OP_EMPTY_LIST: return push_new(m, T_LIST, &id);
    case OP_EMPTY_TUPLE: return push_new(m, T_TUPLE, &id);
    case OP_APPEND:
        FKD_TRY(pop(m, &item));
        FKD_TRY(top(m, &id));
        if (m->objs[id].type != T_LIST) return bad(m, "APPEND to something that is not a list");
        return list_append(m, id, item);
    case OP_APPENDS: return op_appends(m);
    case OP_MARK:
        FKD_TRY(grow_i64(m, &m->marks, &m->marks_cap, m->n_marks + 1));
        m->marks[m->n_marks++] = m->n_stack;
        return FKD_OK;
    case OP_LIST: return op_collect(m, T_LIST, -1);
    case OP_TUPLE: return op_collect(m, T_TUPLE, -1);
    case OP_TUPLE1: return op_collect(m, T_TUPLE, 1);
    case OP_TUPLE2: return op_collect(m, T_TUPLE, 2);
    case OP_TUPLE3: return op_collect(m, T_TUPLE, 3);
    case OP_NEWTRUE: return push_int(m, T_BOOL, 1);
    case OP_NEWFALSE: return push_int(m, T_BOOL, 0);
    case OP_NONE: return push_new(m, T_NONE, &id);
    case OP_BININT1:
    case OP_BININT2:
        FKD_TRY(arg_uint(m, m->op == OP_BININT1 ? 1 : 2, &v));
        return push_int(m, T_INT, (int64_t)v);
    case OP_BININT:
        FKD_TRY(arg_uint(m, 4, &v));
        return push_int(m, T_INT, (int64_t)(int32_t)(uint32_t)v);
    case OP_GLOBAL: return op_global(m);
    case OP_STACK_GLOBAL: return op_stack_global(m);
    case OP_REDUCE: return op_reduce(m);
    case OP_STOP: *stop = true; return FKD_OK;
    default: return bad(m, "opcode not expected in a verification .bin (a pickle of (list of bytes, list of bools))");
    }
}

/* (bins, issame) -> the set. */
static fkd_status extract(vm *m)
{
    if (m->n_marks) return FKD_FAIL(FKD_ERR_FORMAT, "%s: pickle ends with an open MARK", m->path);
    if (m->n_stack != 1) return FKD_FAIL(FKD_ERR_FORMAT, "%s: pickle leaves %" PRId64 " objects, expected 1", m->path, m->n_stack);
    const obj *t = &m->objs[m->stack[0]];
    if ((t->type != T_TUPLE && t->type != T_LIST) || t->n_items != 2)
        return FKD_FAIL(FKD_ERR_FORMAT, "%s: top object is a %s of %" PRId64 " items, expected (bins, issame_list)",
                        m->path, type_name(t->type), t->n_items);
    const obj *bins = &m->objs[t->items[0]], *same = &m->objs[t->items[1]];
    if (bins->type != T_LIST || same->type != T_LIST)
        return FKD_FAIL(FKD_ERR_FORMAT, "%s: expected (list, list), found (%s, %s)", m->path, type_name(bins->type),
                        type_name(same->type));
    if (bins->n_items != 2 * same->n_items || same->n_items == 0)
        return FKD_FAIL(FKD_ERR_FORMAT, "%s: %" PRId64 " images for %" PRId64 " pairs (expected 2 per pair, at least one pair)",
                        m->path, bins->n_items, same->n_items);
    fkd_verbin *set = m->set;
    set->n_pairs = same->n_items;
    set->images = malloc((size_t)bins->n_items * sizeof *set->images);
    set->sizes = malloc((size_t)bins->n_items * sizeof *set->sizes);
    set->issame = malloc((size_t)same->n_items * sizeof *set->issame);
    if (!set->images || !set->sizes || !set->issame) return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", m->path);
    for (int64_t i = 0; i < bins->n_items; i++) {
        const obj *b = &m->objs[bins->items[i]];
        if (b->type != T_BYTES)
            return FKD_FAIL(FKD_ERR_FORMAT, "%s: image %" PRId64 " is a %s, expected bytes", m->path, i, type_name(b->type));
        set->images[i] = b->data;
        set->sizes[i] = b->size;
    }
    for (int64_t i = 0; i < same->n_items; i++) {
        const obj *b = &m->objs[same->items[i]];
        if ((b->type != T_BOOL && b->type != T_INT) || b->ival < 0 || b->ival > 1)
            return FKD_FAIL(FKD_ERR_FORMAT, "%s: issame[%" PRId64 "] is a %s, expected a bool", m->path, i, type_name(b->type));
        set->issame[i] = b->ival == 1;
    }
    return FKD_OK;
}

fkd_status fkd_verbin_load(const char *path, fkd_verbin *set)
{
    memset(set, 0, sizeof *set);
    size_t n = strlen(path) + 1;
    set->path = malloc(n);
    if (!set->path) return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", path);
    memcpy(set->path, path, n);
    FKD_TRY(fkd_file_read_all(path, &set->file, &set->file_size));
    vm m = {.path = path, .buf = set->file, .size = set->file_size, .set = set};
    fkd_status s = FKD_OK;
    bool stop = false;
    if (m.size < 2 || m.buf[0] != OP_PROTO)
        s = FKD_FAIL(FKD_ERR_FORMAT, "%s: not a pickle of protocol 2 or later (first byte 0x%02x)", path,
                     m.size ? m.buf[0] : 0);
    while (s == FKD_OK && !stop) {
        if (m.pos >= m.size) {
            s = FKD_FAIL(FKD_ERR_FORMAT, "%s: pickle truncated at byte offset %zu (no STOP)", path, m.pos);
            break;
        }
        s = step(&m, &stop);
    }
    if (s == FKD_OK) s = extract(&m);
    for (int64_t i = 0; i < m.n_objs; i++) free(m.objs[i].items);
    free(m.objs);
    free(m.stack);
    free(m.marks);
    free(m.memo);
    return s;
}

void fkd_verbin_free(fkd_verbin *set)
{
    if (!set) return;
    for (int64_t i = 0; i < set->n_owned; i++) free(set->owned[i]);
    free(set->owned);
    free(set->images);
    free(set->sizes);
    free(set->issame);
    free(set->file);
    free(set->path);
    memset(set, 0, sizeof *set);
}

/* ---- writer -------------------------------------------------------------------------------- */

typedef struct {
    uint8_t *buf;
    size_t size, cap;
    size_t frame_start; /* protocol 4: where the open frame's opcodes begin (after its header) */
    int protocol;
    uint32_t memo;
    bool failed;
} pbuf;

static void put(pbuf *b, const void *data, size_t n)
{
    if (b->failed) return;
    if (b->size + n > b->cap) {
        size_t c = b->cap ? b->cap : 1 << 16;
        while (c < b->size + n) c *= 2;
        uint8_t *p = realloc(b->buf, c);
        if (!p) {
            b->failed = true;
            return;
        }
        b->buf = p;
        b->cap = c;
    }
    memcpy(b->buf + b->size, data, n);
    b->size += n;
}

static void put_op(pbuf *b, uint8_t op) { put(b, &op, 1); }

static void put_le(pbuf *b, uint64_t v, int bytes)
{
    uint8_t t[8];
    for (int i = 0; i < bytes; i++) t[i] = (uint8_t)(v >> (8 * i));
    put(b, t, (size_t)bytes);
}

/* Protocol 4 frames: the header (FRAME + 8-byte length) is reserved when a frame opens
 * and filled when it closes; a frame closes once it passes 64 KiB, as CPython's do. */
static void frame_open(pbuf *b)
{
    put_op(b, OP_FRAME);
    put_le(b, 0, 8);
    b->frame_start = b->size;
}

static void frame_close(pbuf *b)
{
    if (b->failed) return;
    uint64_t n = b->size - b->frame_start;
    for (int i = 0; i < 8; i++) b->buf[b->frame_start - 8 + i] = (uint8_t)(n >> (8 * i));
}

static void frame_check(pbuf *b)
{
    if (b->protocol >= 4 && !b->failed && b->size - b->frame_start >= 65536) {
        frame_close(b);
        frame_open(b);
    }
}

static void memoize(pbuf *b)
{
    if (b->protocol >= 4) {
        put_op(b, OP_MEMOIZE);
    } else if (b->memo < 256) {
        put_op(b, OP_BINPUT);
        put_le(b, b->memo, 1);
    } else {
        put_op(b, OP_LONG_BINPUT);
        put_le(b, b->memo, 4);
    }
    b->memo++;
}

static void put_bytes(pbuf *b, const uint8_t *data, size_t n)
{
    if (b->protocol >= 4) {
        put_op(b, n < 256 ? OP_SHORT_BINBYTES : OP_BINBYTES);
    } else {
        put_op(b, n < 256 ? OP_SHORT_BINSTRING : OP_BINSTRING); /* Python 2 str */
    }
    put_le(b, n, n < 256 ? 1 : 4);
    put(b, data, n);
    memoize(b);
}

/* A list the way CPython writes it: EMPTY_LIST, memo, then batches of up to 1000 items
 * (MARK ... APPENDS, or a lone APPEND for a batch of one). item(i) writes item i. */
typedef struct {
    const uint8_t *const *images;
    const size_t *sizes;
    const bool *issame;
} list_src;

static void put_list(pbuf *b, int64_t n, const list_src *src, bool images)
{
    put_op(b, OP_EMPTY_LIST);
    memoize(b);
    for (int64_t start = 0; start < n; start += 1000) {
        int64_t end = start + 1000 < n ? start + 1000 : n;
        if (end - start > 1) put_op(b, OP_MARK);
        for (int64_t i = start; i < end; i++) {
            if (images)
                put_bytes(b, src->images[i], src->sizes[i]);
            else
                put_op(b, src->issame[i] ? OP_NEWTRUE : OP_NEWFALSE);
            frame_check(b);
        }
        put_op(b, end - start > 1 ? OP_APPENDS : OP_APPEND);
    }
}

fkd_status fkd_verbin_write(const char *path, const uint8_t *const *images, const size_t *sizes, const bool *issame,
                            int64_t n_pairs, int protocol)
{
    if (protocol != 2 && protocol != 4)
        return FKD_FAIL(FKD_ERR_ARG, "%s: pickle protocol %d; facekd writes 2 (Python 2 style) or 4", path, protocol);
    if (n_pairs <= 0) return FKD_FAIL(FKD_ERR_ARG, "%s: no pairs to write", path);
    for (int64_t i = 0; i < 2 * n_pairs; i++)
        if (sizes[i] > UINT32_MAX / 2)
            return FKD_FAIL(FKD_ERR_ARG, "%s: image %" PRId64 " is too large (%zu bytes)", path, i, sizes[i]);
    pbuf b = {.protocol = protocol};
    put_op(&b, OP_PROTO);
    put_le(&b, (uint64_t)protocol, 1);
    if (protocol >= 4) frame_open(&b);
    list_src src = {images, sizes, issame};
    put_list(&b, 2 * n_pairs, &src, true);
    put_list(&b, n_pairs, &src, false);
    put_op(&b, OP_TUPLE2);
    memoize(&b);
    put_op(&b, OP_STOP);
    if (protocol >= 4) frame_close(&b);
    fkd_status s = b.failed ? FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", path) : fkd_atomic_write(path, b.buf, b.size);
    free(b.buf);
    return s;
}
