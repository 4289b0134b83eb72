#include "train/compare.h"

#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/fileio.h"
#include "core/log.h"
#include "eval/bench.h"
#include "eval/report.h"
#include "io/model_any.h"
#include "io/recipe.h"
#include "io/yamltree.h"
#include "train/distill.h"
#include "train/runlog.h"
#include "train/trainer.h"

#define MAX_ROWS 32
#define MAX_BENCHES 16
#define PATH_CAP 4096
#define MAX_TEACHER_STAGES 4

typedef struct {
    char label[128];
    char recipe[PATH_CAP]; /* "" for the teacher row */
    char model[PATH_CAP];
} compare_row;

typedef struct {
    char name[128], output[PATH_CAP];
    /* recipes that train the teacher when it is missing, run in order (e.g. a softmax
     * warm start, then ArcFace from its weights); the last one writes the teacher */
    char teacher_recipes[MAX_TEACHER_STAGES][PATH_CAP];
    int n_teacher_stages;
    double far;
    bool flip; /* insightface's flip test (default on) */
    compare_row rows[MAX_ROWS + 1]; /* rows[0] is the teacher */
    int n_rows;
    fkd_bench benches[MAX_BENCHES];
    int n_benches;
} compare_set;

/* "set.yaml:4:3: key: what" (fkd_yaml_where ends in ": "). */
static fkd_status where_fail(const fkd_yaml_node *n, const char *what)
{
    char at[PATH_CAP + 32];
    return FKD_FAIL(FKD_ERR_ARG, "%s%s%s%s", fkd_yaml_where(n, true, at, sizeof at), n->key ? n->key : "",
                    n->key ? ": " : "", what);
}

/* A path written in the set file, relative to the file's folder. */
static fkd_status set_path(const fkd_yaml_node *n, const char *dir, char *out)
{
    if (n->kind != FKD_YAML_SCALAR || !n->text || !*n->text) return where_fail(n, "expected a path");
    int len = n->text[0] == '/' ? snprintf(out, PATH_CAP, "%s", n->text) : snprintf(out, PATH_CAP, "%s/%s", dir, n->text);
    return len < PATH_CAP ? FKD_OK : where_fail(n, "path too long");
}

static fkd_status parse_bench(compare_set *c, const fkd_yaml_node *item, const char *dir)
{
    if (item->kind != FKD_YAML_MAP) return where_fail(item, "expected {name, bin|synth|pairs+root}");
    if (c->n_benches == MAX_BENCHES) return where_fail(item, "too many benchmarks");
    const fkd_yaml_node *name = fkd_yaml_get(item, "name"), *bin = fkd_yaml_get(item, "bin"),
                        *synth = fkd_yaml_get(item, "synth"), *pairs = fkd_yaml_get(item, "pairs"),
                        *root = fkd_yaml_get(item, "root"), *seed = fkd_yaml_get(item, "seed");
    for (size_t i = 0; i < item->n; i++) {
        const char *k = item->items[i]->key;
        if (strcmp(k, "name") && strcmp(k, "bin") && strcmp(k, "synth") && strcmp(k, "pairs") && strcmp(k, "root") &&
            strcmp(k, "seed"))
            return where_fail(item->items[i], "unknown key (known: name, bin, synth, seed, pairs, root)");
    }
    if (!name || !name->text) return where_fail(item, "a benchmark needs a name");
    if ((bin != NULL) + (synth != NULL) + (pairs != NULL) != 1) return where_fail(item, "give exactly one of bin, synth or pairs");
    char path[PATH_CAP], root_path[PATH_CAP];
    fkd_bench *b = &c->benches[c->n_benches];
    fkd_status s;
    if (bin) {
        FKD_TRY(set_path(bin, dir, path));
        s = fkd_bench_open_bin(b, name->text, path);
    } else if (pairs) {
        if (!root) return where_fail(item, "pairs needs root (the image folder)");
        FKD_TRY(set_path(pairs, dir, path));
        FKD_TRY(set_path(root, dir, root_path));
        s = fkd_bench_open_pairs(b, name->text, path, root_path);
    } else {
        uint64_t world = seed && seed->text ? strtoull(seed->text, NULL, 10) : 1;
        s = fkd_bench_open_synth(b, synth->text ? synth->text : "", world, NULL);
        if (s == FKD_OK) {
            free(b->name);
            b->name = strdup(name->text);
            if (!b->name) s = FKD_FAIL(FKD_ERR_NOMEM, "out of memory");
        }
    }
    if (s != FKD_OK) return s;
    c->n_benches++;
    return FKD_OK;
}

/* teacher_recipe: one path, or a list of them run in order. */
static fkd_status parse_teacher_recipes(compare_set *c, const fkd_yaml_node *n, const char *dir)
{
    if (n->kind == FKD_YAML_SCALAR) {
        c->n_teacher_stages = 1;
        return set_path(n, dir, c->teacher_recipes[0]);
    }
    if (n->kind != FKD_YAML_LIST || n->n == 0) return where_fail(n, "expected a recipe path or a list of them");
    if (n->n > MAX_TEACHER_STAGES) return where_fail(n, "too many teacher recipes (at most 4)");
    for (size_t k = 0; k < n->n; k++) FKD_TRY(set_path(n->items[k], dir, c->teacher_recipes[k]));
    c->n_teacher_stages = (int)n->n;
    return FKD_OK;
}

static fkd_status parse_set(compare_set *c, const fkd_yaml_node *root, const char *dir)
{
    if (!root || root->kind != FKD_YAML_MAP) return FKD_FAIL(FKD_ERR_FORMAT, "%s: a compare set is a YAML map", dir);
    c->far = 1e-3;
    c->flip = true;
    snprintf(c->rows[0].label, sizeof c->rows[0].label, "teacher");
    c->n_rows = 1;
    for (size_t i = 0; i < root->n; i++) {
        const fkd_yaml_node *n = root->items[i];
        if (!strcmp(n->key, "name") && n->text) {
            snprintf(c->name, sizeof c->name, "%s", n->text);
        } else if (!strcmp(n->key, "output")) {
            FKD_TRY(set_path(n, dir, c->output));
        } else if (!strcmp(n->key, "teacher")) {
            FKD_TRY(set_path(n, dir, c->rows[0].model));
        } else if (!strcmp(n->key, "teacher_label") && n->text) {
            snprintf(c->rows[0].label, sizeof c->rows[0].label, "%s", n->text);
        } else if (!strcmp(n->key, "teacher_recipe")) {
            FKD_TRY(parse_teacher_recipes(c, n, dir));
        } else if (!strcmp(n->key, "far") && n->text) {
            char *end;
            c->far = strtod(n->text, &end);
            if (*end || !(c->far > 0 && c->far < 1)) return where_fail(n, "expected a number in (0, 1)");
        } else if (!strcmp(n->key, "flip")) {
            if (n->kind != FKD_YAML_SCALAR || !n->text || (strcmp(n->text, "true") && strcmp(n->text, "false")))
                return where_fail(n, "expected true or false");
            c->flip = !strcmp(n->text, "true");
        } else if (!strcmp(n->key, "benchmarks") && n->kind == FKD_YAML_LIST) {
            for (size_t k = 0; k < n->n; k++) FKD_TRY(parse_bench(c, n->items[k], dir));
        } else if (!strcmp(n->key, "runs") && n->kind == FKD_YAML_LIST) {
            for (size_t k = 0; k < n->n; k++) {
                const fkd_yaml_node *item = n->items[k], *label = fkd_yaml_get(item, "label"),
                                    *recipe = fkd_yaml_get(item, "recipe");
                if (item->kind != FKD_YAML_MAP || !recipe) return where_fail(item, "expected {label, recipe}");
                if (c->n_rows > MAX_ROWS) return where_fail(item, "too many runs");
                compare_row *row = &c->rows[c->n_rows++];
                FKD_TRY(set_path(recipe, dir, row->recipe));
                snprintf(row->label, sizeof row->label, "%s", label && label->text ? label->text : recipe->text);
            }
        } else {
            return where_fail(n, "unknown key (known: name, output, teacher, teacher_label, teacher_recipe, far, "
                                 "flip, benchmarks, runs)");
        }
    }
    if (!c->output[0]) return FKD_FAIL(FKD_ERR_ARG, "output: the compare set needs an output folder");
    if (!c->rows[0].model[0]) return FKD_FAIL(FKD_ERR_ARG, "teacher: the compare set needs the teacher's model file");
    if (c->n_benches == 0) return FKD_FAIL(FKD_ERR_ARG, "benchmarks: the compare set needs at least one");
    if (c->n_rows < 2) return FKD_FAIL(FKD_ERR_ARG, "runs: the compare set needs at least one student recipe");
    return FKD_OK;
}

static bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Trains (or distills) one recipe unless its model exists; row->model is its result. */
static fkd_status run_recipe(const char *recipe_path, bool rerun, char *model_out)
{
    /* compare evaluates every model itself: the runs skip their own evaluations */
    const char *sets[] = {"data.eval=[]"};
    fkd_recipe r;
    FKD_TRY(fkd_recipe_load(&r, recipe_path, sets, 1));
    snprintf(model_out, PATH_CAP, "%s/model.safetensors", r.output);
    fkd_status s = FKD_OK;
    if (!rerun && file_exists(model_out)) {
        FKD_INFO("%s: %s exists, not trained again (--rerun to train)", r.name, model_out);
    } else {
        s = fkd_run_recipe(&r, false, r.n_distill > 0);
    }
    fkd_recipe_free(&r);
    return s;
}

/* Per (row, benchmark): the verification result and the pair distances. */
typedef struct {
    fkd_verify_result res;
    double *dist;
} cell;

static fkd_status evaluate_row(compare_set *c, int row, cell *cells)
{
    fkd_graph *g = NULL;
    fkd_value emb;
    fkd_graph_config gc = {.batch = 64, .mode = FKD_GRAPH_INFER, .precision = FKD_PREC_F32};
    fkd_status s = fkd_model_open_any(c->rows[row].model, NULL, &gc, &g, &emb);
    fkd_progress progress;
    fkd_embed_config ec = {.graph = g, .embedding = emb, .input = "input", .progress = &progress};
    for (int b = 0; s == FKD_OK && b < c->n_benches; b++) {
        char label[256];
        snprintf(label, sizeof label, "eval %s on %s", c->rows[row].label, c->benches[b].name);
        fkd_progress_start(&progress, label, (c->flip ? 4 : 2) * c->benches[b].n_pairs, 1);
        float *e = NULL;
        int dim = 0;
        cell *x = &cells[row * MAX_BENCHES + b];
        s = fkd_bench_evaluate(&c->benches[b], &ec, c->flip, &x->res, &e, &dim);
        if (s == FKD_OK) fkd_progress_finish(&progress, progress.done, NULL);
        if (s == FKD_OK && !(x->dist = malloc(sizeof(double) * (size_t)c->benches[b].n_pairs)))
            s = FKD_FAIL(FKD_ERR_NOMEM, "compare: out of memory");
        if (s == FKD_OK) fkd_verify_pair_distances(x->dist, e, (int)c->benches[b].n_pairs, dim);
        free(e);
    }
    fkd_graph_free(g);
    return s;
}

static int far_index(double far)
{
    for (int k = 0; k < FKD_VERIFY_N_FAR; k++)
        if (fabs(fkd_verify_far_targets[k] - far) < 1e-12) return k;
    return -1;
}

static fkd_status write_report(compare_set *c, cell *cells)
{
    int k = far_index(c->far);
    if (k < 0) return FKD_FAIL(FKD_ERR_ARG, "far: %g is not one of 1e-1 ... 1e-6", c->far);
    fkd_report rep;
    FKD_TRY(fkd_report_init(&rep, "method"));
    fkd_status s = FKD_OK;
    char col[256];
    for (int r = 0; s == FKD_OK && r < c->n_rows; r++) {
        for (int b = 0; s == FKD_OK && b < c->n_benches; b++) {
            const cell *x = &cells[r * MAX_BENCHES + b];
            const cell *teacher = &cells[b];
            s = fkd_report_set_mean_std(&rep, c->rows[r].label, c->benches[b].name, x->res.accuracy_mean,
                                        x->res.accuracy_std);
            snprintf(col, sizeof col, "%s TAR@FAR=%g", c->benches[b].name, c->far);
            if (s == FKD_OK) s = fkd_report_set_percent(&rep, c->rows[r].label, col, x->res.tar[k]);
            /* EKD's view: this model's TPR at the teacher's threshold for that FAR. */
            double thr = teacher->res.tar_threshold[k], tpr = NAN, far = NAN;
            if (s == FKD_OK)
                s = fkd_verify_rates_at_thresholds(x->dist, c->benches[b].issame, (int)c->benches[b].n_pairs, &thr, 1,
                                                   &tpr, &far);
            snprintf(col, sizeof col, "%s TPR@teacher's T(%g)", c->benches[b].name, c->far);
            if (s == FKD_OK) s = fkd_report_set_percent(&rep, c->rows[r].label, col, tpr);
        }
    }
    char path[PATH_CAP + 32];
    snprintf(path, sizeof path, "%s/compare.md", c->output);
    if (s == FKD_OK) s = fkd_report_write_markdown(&rep, path);
    snprintf(path, sizeof path, "%s/compare.csv", c->output);
    if (s == FKD_OK) s = fkd_report_write_csv(&rep, path);
    fkd_report_free(&rep);
    for (int b = 0; s == FKD_OK && b < c->n_benches; b++) {
        const char *labels[MAX_ROWS + 1];
        const double *dist[MAX_ROWS + 1];
        const uint8_t *issame[MAX_ROWS + 1];
        int64_t n_pairs[MAX_ROWS + 1];
        for (int r = 0; r < c->n_rows; r++) {
            labels[r] = c->rows[r].label;
            dist[r] = cells[r * MAX_BENCHES + b].dist;
            issame[r] = c->benches[b].issame;
            n_pairs[r] = c->benches[b].n_pairs;
        }
        snprintf(path, sizeof path, "%s/roc_%s.png", c->output, c->benches[b].name);
        char title[256];
        snprintf(title, sizeof title, "%s: %s", c->name, c->benches[b].name);
        s = fkd_runlog_plot_roc(path, title, c->n_rows, labels, dist, issame, n_pairs);
    }
    return s;
}

fkd_status fkd_compare_run(const char *set_path, bool rerun)
{
    compare_set *c = calloc(1, sizeof *c);
    cell *cells = calloc((MAX_ROWS + 1) * MAX_BENCHES, sizeof *cells);
    fkd_yaml_node *root = NULL;
    fkd_status s = c && cells ? FKD_OK : FKD_FAIL(FKD_ERR_NOMEM, "compare: out of memory");
    char dir[PATH_CAP];
    snprintf(dir, sizeof dir, "%s", set_path);
    if (s == FKD_OK) s = fkd_yaml_load_file(set_path, &root);
    if (s == FKD_OK) {
        s = parse_set(c, root, dirname(dir));
    }
    if (s == FKD_OK) s = fkd_mkdir_p(c->output);
    if (s == FKD_OK && !file_exists(c->rows[0].model)) {
        if (c->n_teacher_stages == 0)
            s = FKD_FAIL(FKD_ERR_NOTFOUND, "%s: teacher %s does not exist (train it, or give teacher_recipe)", set_path,
                         c->rows[0].model);
        char trained[PATH_CAP] = "";
        for (int k = 0; s == FKD_OK && k < c->n_teacher_stages; k++) s = run_recipe(c->teacher_recipes[k], rerun, trained);
        if (s == FKD_OK && strcmp(trained, c->rows[0].model) != 0 && !file_exists(c->rows[0].model))
            s = FKD_FAIL(FKD_ERR_ARG, "%s: teacher_recipe writes %s, not the teacher %s", set_path, trained,
                         c->rows[0].model);
    }
    for (int r = 1; s == FKD_OK && r < c->n_rows; r++) s = run_recipe(c->rows[r].recipe, rerun, c->rows[r].model);
    for (int r = 0; s == FKD_OK && r < c->n_rows; r++) s = evaluate_row(c, r, cells);
    if (s == FKD_OK) s = write_report(c, cells);
    if (s == FKD_OK) {
        char path[PATH_CAP + 32];
        snprintf(path, sizeof path, "%s/compare.md", c->output);
        uint8_t *text;
        size_t size;
        if (fkd_file_read_all(path, &text, &size) == FKD_OK) {
            printf("%s\n", (char *)text);
            free(text);
        }
        FKD_INFO("compare: %s/compare.md, compare.csv, roc_<benchmark>.png", c->output);
    }
    for (int i = 0; cells && i < (MAX_ROWS + 1) * MAX_BENCHES; i++) free(cells[i].dist);
    for (int b = 0; c && b < c->n_benches; b++) fkd_bench_free(&c->benches[b]);
    fkd_yaml_free(root);
    free(cells);
    free(c);
    return s;
}
