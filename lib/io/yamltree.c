#include "io/yamltree.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "core/fileio.h"

/* Deeper nesting than any recipe needs; the limit keeps hostile input off the stack. */
#define FKD__YAML_MAX_DEPTH 64
#define FKD__YAML_PATH_CAP 512

/* ---- nodes ---------------------------------------------------------------------------- */

static fkd_yaml_node *node_new(fkd_yaml_kind kind, const char *src, int line, int col)
{
    fkd_yaml_node *n = calloc(1, sizeof *n);
    if (!n) return NULL;
    n->kind = kind;
    n->src = strdup(src);
    if (!n->src) {
        free(n);
        return NULL;
    }
    n->line = n->key_line = line;
    n->col = n->key_col = col;
    return n;
}

void fkd_yaml_free(fkd_yaml_node *node)
{
    if (!node) return;
    for (size_t i = 0; i < node->n; i++) fkd_yaml_free(node->items[i]);
    free(node->items);
    free(node->key);
    free(node->text);
    free(node->src);
    free(node);
}

static bool node_push(fkd_yaml_node *parent, fkd_yaml_node *child)
{
    if (parent->n == parent->cap) {
        size_t cap = parent->cap ? 2 * parent->cap : 8;
        fkd_yaml_node **items = realloc(parent->items, cap * sizeof *items);
        if (!items) return false;
        parent->items = items;
        parent->cap = cap;
    }
    parent->items[parent->n++] = child;
    return true;
}

fkd_yaml_node *fkd_yaml_get(const fkd_yaml_node *map, const char *key)
{
    if (!map || map->kind != FKD_YAML_MAP) return NULL;
    for (size_t i = 0; i < map->n; i++)
        if (strcmp(map->items[i]->key, key) == 0) return map->items[i];
    return NULL;
}

fkd_yaml_node *fkd_yaml_take(fkd_yaml_node *map, const char *key)
{
    if (!map || map->kind != FKD_YAML_MAP) return NULL;
    for (size_t i = 0; i < map->n; i++) {
        if (strcmp(map->items[i]->key, key) != 0) continue;
        fkd_yaml_node *n = map->items[i];
        memmove(map->items + i, map->items + i + 1, (map->n - i - 1) * sizeof *map->items);
        map->n--;
        return n;
    }
    return NULL;
}

const char *fkd_yaml_where(const fkd_yaml_node *node, bool at_key, char *buf, size_t cap)
{
    int line = at_key ? node->key_line : node->line, col = at_key ? node->key_col : node->col;
    if (line > 0)
        snprintf(buf, cap, "%s:%d:%d: ", node->src, line, col);
    else
        snprintf(buf, cap, "%s: ", node->src);
    return buf;
}

/* Over-long paths are cut with "..." at the end; they only appear in messages. */
static void path_cut(char *buf, size_t cap, int written)
{
    if (written >= 0 && (size_t)written < cap) return;
    if (cap >= 4) memcpy(buf + cap - 4, "...", 4);
}

void fkd_yaml_path_key(char *buf, size_t cap, const char *parent, const char *key)
{
    path_cut(buf, cap, parent[0] ? snprintf(buf, cap, "%s.%s", parent, key) : snprintf(buf, cap, "%s", key));
}

void fkd_yaml_path_index(char *buf, size_t cap, const char *parent, size_t index)
{
    path_cut(buf, cap, snprintf(buf, cap, "%s[%zu]", parent, index));
}

bool fkd_yaml_is_null(const fkd_yaml_node *node)
{
    if (node->kind != FKD_YAML_SCALAR || node->quoted) return false;
    const char *t = node->text;
    return !t[0] || !strcmp(t, "~") || !strcmp(t, "null") || !strcmp(t, "Null") || !strcmp(t, "NULL");
}

/* ---- parsing -------------------------------------------------------------------------- */

typedef struct {
    yaml_parser_t parser;
    const char *src;
    bool positions;
} reader;

/* "src:line:col: " for a libyaml mark (1-based), or "src: " without positions. */
static const char *mark_where(const reader *r, yaml_mark_t mark, char *buf, size_t cap)
{
    if (r->positions)
        snprintf(buf, cap, "%s:%zu:%zu: ", r->src, mark.line + 1, mark.column + 1);
    else
        snprintf(buf, cap, "%s: ", r->src);
    return buf;
}

static fkd_status next_event(reader *r, yaml_event_t *ev)
{
    if (yaml_parser_parse(&r->parser, ev)) return FKD_OK;
    yaml_parser_t *p = &r->parser;
    char at[FKD__YAML_PATH_CAP];
    if (p->error == YAML_MEMORY_ERROR) return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", r->src);
    mark_where(r, p->problem_mark, at, sizeof at);
    if (p->context)
        return FKD_FAIL(FKD_ERR_FORMAT, "%sYAML syntax error: %s (%s)", at,
                        p->problem ? p->problem : "unknown problem", p->context);
    return FKD_FAIL(FKD_ERR_FORMAT, "%sYAML syntax error: %s", at, p->problem ? p->problem : "unknown problem");
}

static fkd_status reject_decorations(reader *r, const yaml_event_t *ev, const char *path)
{
    const yaml_char_t *anchor = NULL, *tag = NULL;
    if (ev->type == YAML_SCALAR_EVENT) {
        anchor = ev->data.scalar.anchor;
        tag = ev->data.scalar.tag;
    } else if (ev->type == YAML_SEQUENCE_START_EVENT) {
        anchor = ev->data.sequence_start.anchor;
        tag = ev->data.sequence_start.tag;
    } else if (ev->type == YAML_MAPPING_START_EVENT) {
        anchor = ev->data.mapping_start.anchor;
        tag = ev->data.mapping_start.tag;
    }
    char at[FKD__YAML_PATH_CAP];
    const char *sep = path[0] ? ": " : "";
    if (anchor)
        return FKD_FAIL(FKD_ERR_FORMAT, "%s%s%sanchors (&%s) are not supported; use extends to share settings",
                        mark_where(r, ev->start_mark, at, sizeof at), path, sep, (const char *)anchor);
    if (tag)
        return FKD_FAIL(FKD_ERR_FORMAT, "%s%s%stags (%s) are not supported",
                        mark_where(r, ev->start_mark, at, sizeof at), path, sep, (const char *)tag);
    return FKD_OK;
}

static fkd_status nomem(const reader *r) { return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", r->src); }

/* Builds the node that starts with event `ev` (which this function deletes). */
static fkd_status parse_node(reader *r, yaml_event_t *ev, const char *path, int depth, fkd_yaml_node **out);

static fkd_status parse_children(reader *r, fkd_yaml_node *node, const char *path, int depth)
{
    char at[FKD__YAML_PATH_CAP], child_path[FKD__YAML_PATH_CAP];
    bool is_map = node->kind == FKD_YAML_MAP;
    for (;;) {
        yaml_event_t ev;
        FKD_TRY(next_event(r, &ev));
        if (ev.type == YAML_SEQUENCE_END_EVENT || ev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&ev);
            return FKD_OK;
        }
        char *key = NULL;
        yaml_mark_t key_mark = ev.start_mark;
        if (is_map) {
            if (ev.type != YAML_SCALAR_EVENT) {
                mark_where(r, ev.start_mark, at, sizeof at);
                yaml_event_delete(&ev);
                return FKD_FAIL(FKD_ERR_FORMAT, "%s%s%smapping keys must be plain words", at, path,
                                path[0] ? ": " : "");
            }
            fkd_status s = reject_decorations(r, &ev, path);
            if (s != FKD_OK) {
                yaml_event_delete(&ev);
                return s;
            }
            key = strndup((const char *)ev.data.scalar.value, ev.data.scalar.length);
            yaml_event_delete(&ev);
            if (!key) return nomem(r);
            fkd_yaml_path_key(child_path, sizeof child_path, path, key);
            const fkd_yaml_node *first = fkd_yaml_get(node, key);
            if (first) {
                free(key);
                mark_where(r, key_mark, at, sizeof at);
                if (r->positions)
                    return FKD_FAIL(FKD_ERR_FORMAT, "%s%s: duplicate key (first defined at line %d)", at,
                                    child_path, first->key_line);
                return FKD_FAIL(FKD_ERR_FORMAT, "%s%s: duplicate key", at, child_path);
            }
            fkd_status sv = next_event(r, &ev);
            if (sv != FKD_OK) {
                free(key);
                return sv;
            }
        } else {
            fkd_yaml_path_index(child_path, sizeof child_path, path, node->n);
        }
        fkd_yaml_node *child = NULL;
        fkd_status s = parse_node(r, &ev, child_path, depth + 1, &child);
        if (s != FKD_OK) {
            free(key);
            return s;
        }
        child->key = key;
        if (key && r->positions) {
            child->key_line = (int)key_mark.line + 1;
            child->key_col = (int)key_mark.column + 1;
        }
        if (!node_push(node, child)) {
            fkd_yaml_free(child);
            return nomem(r);
        }
    }
}

static fkd_status parse_node(reader *r, yaml_event_t *ev, const char *path, int depth, fkd_yaml_node **out)
{
    char at[FKD__YAML_PATH_CAP];
    *out = NULL;
    fkd_status s = reject_decorations(r, ev, path);
    if (s == FKD_OK && ev->type == YAML_ALIAS_EVENT)
        s = FKD_FAIL(FKD_ERR_FORMAT, "%s%s%saliases (*%s) are not supported; use extends to share settings",
                     mark_where(r, ev->start_mark, at, sizeof at), path, path[0] ? ": " : "",
                     (const char *)ev->data.alias.anchor);
    if (s == FKD_OK && depth > FKD__YAML_MAX_DEPTH)
        s = FKD_FAIL(FKD_ERR_FORMAT, "%s%s: nested deeper than %d levels",
                     mark_where(r, ev->start_mark, at, sizeof at), path, FKD__YAML_MAX_DEPTH);
    if (s != FKD_OK) {
        yaml_event_delete(ev);
        return s;
    }
    fkd_yaml_kind kind = ev->type == YAML_SCALAR_EVENT          ? FKD_YAML_SCALAR
                         : ev->type == YAML_SEQUENCE_START_EVENT ? FKD_YAML_LIST
                                                                 : FKD_YAML_MAP;
    int line = r->positions ? (int)ev->start_mark.line + 1 : 0;
    int col = r->positions ? (int)ev->start_mark.column + 1 : 0;
    fkd_yaml_node *n = node_new(kind, r->src, line, col);
    if (!n) {
        yaml_event_delete(ev);
        return nomem(r);
    }
    if (kind == FKD_YAML_SCALAR) {
        n->text = strndup((const char *)ev->data.scalar.value, ev->data.scalar.length);
        n->quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
        yaml_event_delete(ev);
        if (!n->text) {
            fkd_yaml_free(n);
            return nomem(r);
        }
    } else {
        yaml_event_delete(ev);
        s = parse_children(r, n, path, depth);
        if (s != FKD_OK) {
            fkd_yaml_free(n);
            return s;
        }
    }
    *out = n;
    return FKD_OK;
}

/* Expects an event of type `want`; anything else is reported as `problem`. */
static fkd_status expect_event(reader *r, yaml_event_type_t want, yaml_event_t *ev, const char *problem)
{
    FKD_TRY(next_event(r, ev));
    if (ev->type == want) return FKD_OK;
    char at[FKD__YAML_PATH_CAP];
    mark_where(r, ev->start_mark, at, sizeof at);
    yaml_event_delete(ev);
    return FKD_FAIL(FKD_ERR_FORMAT, "%s%s", at, problem);
}

static fkd_status parse_stream(reader *r, fkd_yaml_node **root)
{
    yaml_event_t ev;
    FKD_TRY(expect_event(r, YAML_STREAM_START_EVENT, &ev, "expected the start of a YAML stream"));
    yaml_event_delete(&ev);
    FKD_TRY(next_event(r, &ev));
    if (ev.type == YAML_STREAM_END_EVENT) {
        yaml_event_delete(&ev);
        return FKD_OK; /* empty document: *root stays NULL */
    }
    yaml_event_delete(&ev); /* DOCUMENT-START */
    FKD_TRY(next_event(r, &ev));
    FKD_TRY(parse_node(r, &ev, "", 0, root));
    FKD_TRY(expect_event(r, YAML_DOCUMENT_END_EVENT, &ev, "expected the end of the document"));
    yaml_event_delete(&ev);
    FKD_TRY(expect_event(r, YAML_STREAM_END_EVENT, &ev,
                         "more than one YAML document ('---'); a recipe is one document"));
    yaml_event_delete(&ev);
    return FKD_OK;
}

fkd_status fkd_yaml_parse(const char *text, size_t len, const char *src, bool positions, fkd_yaml_node **root)
{
    *root = NULL;
    reader r = {.src = src, .positions = positions};
    if (!yaml_parser_initialize(&r.parser)) return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", src);
    yaml_parser_set_input_string(&r.parser, (const unsigned char *)text, len);
    fkd_status s = parse_stream(&r, root);
    yaml_parser_delete(&r.parser);
    if (s != FKD_OK) {
        fkd_yaml_free(*root);
        *root = NULL;
    }
    return s;
}

/* libyaml reports a tab in indentation as "found character that cannot start any token";
 * name the real problem instead. Tabs after the indentation are left to the parser. */
static fkd_status check_tabs(const char *text, size_t len, const char *path)
{
    int line = 1;
    bool in_indent = true;
    for (size_t i = 0, col = 1; i < len; i++, col++) {
        if (text[i] == '\n') {
            line++;
            col = 0;
            in_indent = true;
        } else if (text[i] == '\t' && in_indent) {
            return FKD_FAIL(FKD_ERR_FORMAT, "%s:%d:%zu: tab character in indentation; YAML indents with spaces",
                            path, line, col);
        } else if (text[i] != ' ') {
            in_indent = false;
        }
    }
    return FKD_OK;
}

fkd_status fkd_yaml_load_file(const char *path, fkd_yaml_node **root)
{
    *root = NULL;
    uint8_t *data;
    size_t size;
    FKD_TRY(fkd_file_read_all(path, &data, &size));
    fkd_status s = check_tabs((const char *)data, size, path);
    if (s == FKD_OK) s = fkd_yaml_parse((const char *)data, size, path, true, root);
    free(data);
    return s;
}

/* ---- merging and paths ----------------------------------------------------------------- */

fkd_yaml_node *fkd_yaml_merge(fkd_yaml_node *base, fkd_yaml_node *over)
{
    if (!base || base->kind != FKD_YAML_MAP || over->kind != FKD_YAML_MAP) {
        fkd_yaml_free(base);
        return over;
    }
    for (size_t i = 0; i < over->n; i++) {
        fkd_yaml_node *o = over->items[i];
        over->items[i] = NULL;
        for (size_t j = 0; j < base->n; j++) {
            if (strcmp(base->items[j]->key, o->key) != 0) continue;
            char *key = o->key;
            int key_line = o->key_line, key_col = o->key_col;
            o->key = NULL;
            fkd_yaml_node *b = base->items[j];
            free(b->key);
            b->key = NULL;
            fkd_yaml_node *m = fkd_yaml_merge(b, o);
            free(m->key);
            m->key = key;
            m->key_line = key_line;
            m->key_col = key_col;
            base->items[j] = m;
            o = NULL;
            break;
        }
        /* A key new to `base` is appended; node_push only fails without memory, and then
         * the entry is dropped with its subtree rather than leaking it. */
        if (o && !node_push(base, o)) fkd_yaml_free(o);
    }
    over->n = 0;
    fkd_yaml_free(over);
    return base;
}

/* Splits the next segment off a key path: a map key, or a list index written `[3]` or
 * (after a dot) `3`. Returns false on a malformed path. */
typedef struct {
    char key[FKD__YAML_PATH_CAP];
    long index; /* >= 0 for a list index, -1 for a key */
} path_seg;

static bool is_digits(const char *s, size_t n)
{
    if (n == 0 || n > 9) return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9') return false;
    return true;
}

static bool next_seg(const char **p, path_seg *seg)
{
    const char *s = *p;
    if (*s == '.') s++;
    if (*s == '[') {
        const char *end = strchr(s, ']');
        if (!end || !is_digits(s + 1, (size_t)(end - s - 1))) return false;
        seg->index = strtol(s + 1, NULL, 10);
        seg->key[0] = '\0';
        *p = end + 1;
        return **p == '\0' || **p == '.' || **p == '[';
    }
    size_t n = strcspn(s, ".[");
    if (n == 0 || n >= sizeof seg->key) return false;
    seg->index = is_digits(s, n) ? strtol(s, NULL, 10) : -1;
    memcpy(seg->key, s, n);
    seg->key[n] = '\0';
    *p = s + n;
    return true;
}

fkd_yaml_node *fkd_yaml_find(const fkd_yaml_node *root, const char *path)
{
    const fkd_yaml_node *n = root;
    const char *p = path;
    path_seg seg;
    while (n && *p) {
        if (!next_seg(&p, &seg)) return NULL;
        if (seg.index >= 0)
            n = n->kind == FKD_YAML_LIST && (size_t)seg.index < n->n ? n->items[seg.index] : NULL;
        else
            n = fkd_yaml_get(n, seg.key);
    }
    return (fkd_yaml_node *)n;
}

static fkd_status set_fail(const char *assignment, const char *fmt, const char *what)
{
    char msg[FKD__YAML_PATH_CAP];
    snprintf(msg, sizeof msg, fmt, what);
    return FKD_FAIL(FKD_ERR_ARG, "--set %s: %s", assignment, msg);
}

fkd_status fkd_yaml_set(fkd_yaml_node *root, const char *assignment)
{
    char src[FKD__YAML_PATH_CAP + 8], done[FKD__YAML_PATH_CAP] = "";
    snprintf(src, sizeof src, "--set %s", assignment);
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment) return set_fail(assignment, "%sexpected KEY.PATH=VALUE", "");
    size_t path_len = (size_t)(eq - assignment);
    if (path_len >= FKD__YAML_PATH_CAP) return set_fail(assignment, "%skey path too long", "");
    char path[FKD__YAML_PATH_CAP];
    memcpy(path, assignment, path_len);
    path[path_len] = '\0';

    fkd_yaml_node *value = NULL;
    FKD_TRY(fkd_yaml_parse(eq + 1, strlen(eq + 1), src, false, &value));
    if (!value) {
        value = node_new(FKD_YAML_SCALAR, src, 0, 0);
        if (value) value->text = strdup("");
        if (!value || !value->text) {
            fkd_yaml_free(value);
            return FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", src);
        }
    }

    /* Walk the path; `slot` is where the final value goes. */
    fkd_yaml_node *parent = root;
    const char *p = path;
    path_seg seg;
    fkd_status s = FKD_OK;
    for (;;) {
        if (!next_seg(&p, &seg)) {
            s = set_fail(assignment, "%smalformed key path (write a.b[0].c or a.b.0.c)", "");
            break;
        }
        bool last = *p == '\0';
        char here[FKD__YAML_PATH_CAP];
        bool by_index = seg.index >= 0 && parent->kind == FKD_YAML_LIST;
        if (by_index)
            fkd_yaml_path_index(here, sizeof here, done, (size_t)seg.index);
        else
            fkd_yaml_path_key(here, sizeof here, done, seg.key);
        if (seg.index >= 0 && !by_index && parent->kind != FKD_YAML_MAP) {
            s = set_fail(assignment, "%s is not a list or a mapping", done[0] ? done : "the recipe");
            break;
        }
        if (seg.index >= 0 && parent->kind == FKD_YAML_MAP && seg.key[0] == '\0') {
            s = set_fail(assignment, "%s is a mapping, not a list", done[0] ? done : "the recipe");
            break;
        }
        if (!by_index && parent->kind != FKD_YAML_MAP) {
            s = set_fail(assignment, "%s is not a mapping", done[0] ? done : "the recipe");
            break;
        }
        fkd_yaml_node **slot = NULL;
        if (by_index) {
            if ((size_t)seg.index > parent->n) {
                char msg[FKD__YAML_PATH_CAP];
                snprintf(msg, sizeof msg, "%s has %zu items; index %ld is past its end", done, parent->n, seg.index);
                s = set_fail(assignment, "%s", msg);
                break;
            }
            if ((size_t)seg.index < parent->n) slot = &parent->items[seg.index];
        } else {
            for (size_t i = 0; i < parent->n; i++)
                if (strcmp(parent->items[i]->key, seg.key) == 0) slot = &parent->items[i];
        }
        if (!slot) { /* new map entry or appended list item */
            /* An intermediate node is a list when the path goes on with an index. */
            const char *peek = p;
            path_seg next;
            bool list = !last && next_seg(&peek, &next) && next.index >= 0;
            fkd_yaml_node *fresh = last ? value : node_new(list ? FKD_YAML_LIST : FKD_YAML_MAP, src, 0, 0);
            if (!fresh || !node_push(parent, fresh)) {
                if (fresh != value) fkd_yaml_free(fresh);
                s = FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", src);
                break;
            }
            if (last) value = NULL;
            if (!by_index && !(fresh->key = strdup(seg.key))) {
                s = FKD_FAIL(FKD_ERR_NOMEM, "%s: out of memory", src);
                break;
            }
            slot = &parent->items[parent->n - 1];
        } else if (last) {
            fkd_yaml_node *old = *slot;
            value->key = old->key;
            old->key = NULL;
            fkd_yaml_free(old);
            *slot = value;
            value = NULL;
        }
        if (last) break;
        parent = *slot;
        memcpy(done, here, sizeof done);
    }
    fkd_yaml_free(value);
    return s;
}

/* ---- writing --------------------------------------------------------------------------- */

struct fkd_yaml_writer {
    yaml_emitter_t emitter;
    char *buf;
    size_t len, cap;
    bool failed;
};

static int write_handler(void *data, unsigned char *bytes, size_t size)
{
    fkd_yaml_writer *w = data;
    if (w->len + size + 1 > w->cap) {
        size_t cap = w->cap ? w->cap : 4096;
        while (cap < w->len + size + 1) cap *= 2;
        char *buf = realloc(w->buf, cap);
        if (!buf) return 0;
        w->buf = buf;
        w->cap = cap;
    }
    memcpy(w->buf + w->len, bytes, size);
    w->len += size;
    w->buf[w->len] = '\0';
    return 1;
}

static void emit(fkd_yaml_writer *w, yaml_event_t *ev, int initialized)
{
    if (w->failed) {
        if (initialized) yaml_event_delete(ev);
        return;
    }
    /* yaml_emitter_emit takes the event, also when it fails. */
    if (!initialized || !yaml_emitter_emit(&w->emitter, ev)) w->failed = true;
}

fkd_status fkd_yaml_writer_new(fkd_yaml_writer **out)
{
    fkd_yaml_writer *w = calloc(1, sizeof *w);
    *out = NULL;
    if (!w || !yaml_emitter_initialize(&w->emitter)) {
        free(w);
        return FKD_FAIL(FKD_ERR_NOMEM, "YAML writer: out of memory");
    }
    yaml_emitter_set_output(&w->emitter, write_handler, w);
    yaml_emitter_set_width(&w->emitter, -1);
    yaml_emitter_set_unicode(&w->emitter, 1);
    yaml_emitter_set_indent(&w->emitter, 2);
    yaml_event_t ev;
    emit(w, &ev, yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING));
    emit(w, &ev, yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1));
    *out = w;
    return FKD_OK;
}

void fkd_yaml_writer_begin(fkd_yaml_writer *w, fkd_yaml_kind kind)
{
    yaml_event_t ev;
    int ok = kind == FKD_YAML_MAP
                 ? yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE)
                 : yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE);
    emit(w, &ev, ok);
}

void fkd_yaml_writer_end(fkd_yaml_writer *w, fkd_yaml_kind kind)
{
    yaml_event_t ev;
    int ok = kind == FKD_YAML_MAP ? yaml_mapping_end_event_initialize(&ev) : yaml_sequence_end_event_initialize(&ev);
    emit(w, &ev, ok);
}

void fkd_yaml_writer_scalar(fkd_yaml_writer *w, const char *text, bool quoted)
{
    yaml_event_t ev;
    emit(w, &ev,
         yaml_scalar_event_initialize(&ev, NULL, NULL, (const yaml_char_t *)text, (int)strlen(text), 1, 1,
                                      quoted ? YAML_DOUBLE_QUOTED_SCALAR_STYLE : YAML_ANY_SCALAR_STYLE));
}

void fkd_yaml_writer_node(fkd_yaml_writer *w, const fkd_yaml_node *node)
{
    if (node->kind == FKD_YAML_SCALAR) {
        fkd_yaml_writer_scalar(w, node->text, node->quoted);
        return;
    }
    fkd_yaml_writer_begin(w, node->kind);
    for (size_t i = 0; i < node->n; i++) {
        if (node->kind == FKD_YAML_MAP) fkd_yaml_writer_scalar(w, node->items[i]->key, false);
        fkd_yaml_writer_node(w, node->items[i]);
    }
    fkd_yaml_writer_end(w, node->kind);
}

void fkd_yaml_writer_free(fkd_yaml_writer *w)
{
    if (!w) return;
    yaml_emitter_delete(&w->emitter);
    free(w->buf);
    free(w);
}

fkd_status fkd_yaml_writer_finish(fkd_yaml_writer *w, char **yaml)
{
    *yaml = NULL;
    yaml_event_t ev;
    emit(w, &ev, yaml_document_end_event_initialize(&ev, 1));
    emit(w, &ev, yaml_stream_end_event_initialize(&ev));
    if (!w->failed && !yaml_emitter_flush(&w->emitter)) w->failed = true;
    if (w->failed || !w->buf) {
        const char *problem = w->emitter.problem ? w->emitter.problem : "out of memory";
        fkd_status s = FKD_FAIL(FKD_ERR_FORMAT, "YAML writer: %s", problem);
        fkd_yaml_writer_free(w);
        return s;
    }
    *yaml = w->buf;
    w->buf = NULL;
    fkd_yaml_writer_free(w);
    return FKD_OK;
}
