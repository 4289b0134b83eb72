/* A YAML document as a tree of nodes that remember where they came from.
 *
 * The recipe loader (io/recipe.h) reads YAML through this module: libyaml's event parser
 * builds the tree, strictly (duplicate keys, tabs in indentation, anchors, aliases, tags
 * and multi-document streams are errors naming file, line and column), and every node
 * keeps its source and position so later checks can point at the exact place. The tree
 * can be deep-merged (`extends`), edited by key path (`--set`) and written back as YAML
 * with libyaml's emitter.
 *
 * Key paths are written `data.eval[1].bin`: map keys joined by dots, list indices in
 * brackets. Assignments (fkd_yaml_set) also accept the shell-friendly `data.eval.1.bin`.
 */
#ifndef FKD_IO_YAMLTREE_H
#define FKD_IO_YAMLTREE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/status.h"

typedef enum { FKD_YAML_SCALAR, FKD_YAML_MAP, FKD_YAML_LIST } fkd_yaml_kind;

typedef struct fkd_yaml_node {
    fkd_yaml_kind kind;
    char *key;          /* key in the parent mapping; NULL for list items and the root */
    char *text;         /* scalar text; NULL for maps and lists */
    bool quoted;        /* scalar written quoted or as a block: a string whatever it reads */
    char *src;          /* file name, or "--set k=v" for values given on the command line */
    int line, col;      /* 1-based position of the value; 0 when it has none (--set) */
    int key_line, key_col; /* position of the key (same as line/col when there is no key) */
    bool used;          /* set by readers that consumed the node (see unknown-key checks) */
    struct fkd_yaml_node **items; /* map entries or list items, in document order */
    size_t n, cap;
} fkd_yaml_node;

/* Parses one YAML document held in `text` (`len` bytes). `src` names it in messages; with
 * `positions` false (command-line values) messages and nodes carry no line/column.
 * *root is NULL when the document is empty. The caller owns the tree (fkd_yaml_free). */
fkd_status fkd_yaml_parse(const char *text, size_t len, const char *src, bool positions,
                          fkd_yaml_node **root);

/* Reads and parses a file; an empty file or one holding only comments gives *root NULL. */
fkd_status fkd_yaml_load_file(const char *path, fkd_yaml_node **root);

/* Frees a node and its children; NULL is fine. */
void fkd_yaml_free(fkd_yaml_node *node);

/* The value under `key` in a map, or NULL (also when `map` is NULL or not a map). */
fkd_yaml_node *fkd_yaml_get(const fkd_yaml_node *map, const char *key);

/* Removes the entry `key` from a map and returns it (the caller owns it), or NULL. */
fkd_yaml_node *fkd_yaml_take(fkd_yaml_node *map, const char *key);

/* The node at key path `path` ("data.eval[1].bin" or "data.eval.1.bin"), or NULL. */
fkd_yaml_node *fkd_yaml_find(const fkd_yaml_node *root, const char *path);

/* Deep merge for `extends`: `over` is laid over `base`. Maps merge key by key,
 * recursively; scalars and lists in `over` replace those in `base`. Consumes `over`.
 * Returns the merged tree (`base`, changed in place, unless one side is not a map). */
fkd_yaml_node *fkd_yaml_merge(fkd_yaml_node *base, fkd_yaml_node *over);

/* Applies one command-line assignment "key.path=value" to the map `root`. The value is
 * parsed as YAML (a scalar, or a flow list/map such as [10, 20]). Missing map keys are
 * created; a list index equal to the list's length appends an item. Messages start with
 * "--set <assignment>: ". */
fkd_status fkd_yaml_set(fkd_yaml_node *root, const char *assignment);

/* Writes "src:line:col: " (or "src: " when the node has no position) for the node's value
 * (`at_key` false) or its key (`at_key` true) into buf. Returns buf. */
const char *fkd_yaml_where(const fkd_yaml_node *node, bool at_key, char *buf, size_t cap);

/* Appends ".key" (or "key" at the root) or "[index]" to a key path held in buf. */
void fkd_yaml_path_key(char *buf, size_t cap, const char *parent, const char *key);
void fkd_yaml_path_index(char *buf, size_t cap, const char *parent, size_t index);

/* True when a plain scalar spells YAML null ("", "~", "null", "Null", "NULL"). */
bool fkd_yaml_is_null(const fkd_yaml_node *node);

/* A YAML writer on libyaml's emitter (block style, unlimited width). Calls after a failed
 * one do nothing; fkd_yaml_writer_finish reports the first failure. */
typedef struct fkd_yaml_writer fkd_yaml_writer;

fkd_status fkd_yaml_writer_new(fkd_yaml_writer **w);
/* Opens / closes a block mapping (FKD_YAML_MAP) or list (FKD_YAML_LIST). In a mapping,
 * write the key with fkd_yaml_writer_scalar, then the value. */
void fkd_yaml_writer_begin(fkd_yaml_writer *w, fkd_yaml_kind kind);
void fkd_yaml_writer_end(fkd_yaml_writer *w, fkd_yaml_kind kind);
/* A scalar; `quoted` forces double quotes (strings that must not read as anything else). */
void fkd_yaml_writer_scalar(fkd_yaml_writer *w, const char *text, bool quoted);
/* A whole subtree as it was read (quoted scalars stay quoted). */
void fkd_yaml_writer_node(fkd_yaml_writer *w, const fkd_yaml_node *node);
/* Ends the document, hands the text to *yaml (malloc'ed, NUL-terminated) and frees w. */
fkd_status fkd_yaml_writer_finish(fkd_yaml_writer *w, char **yaml);
/* Frees a writer without producing text; NULL is fine. */
void fkd_yaml_writer_free(fkd_yaml_writer *w);

#endif
