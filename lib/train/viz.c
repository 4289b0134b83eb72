#include "train/viz.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "core/log.h"
#include "data/synth.h"
#include "eval/embed.h"
#include "heads/margin.h"
#include "io/model.h"
#include "io/recipe.h"
#include "train/trainer.h"

#define PATH_CAP 4096
#define PICTURE_SIZE 480
#define GRID_COLUMNS 3
#define EMBED_BATCH 16

void fkd_viz_options_default(fkd_viz_options *o)
{
    memset(o, 0, sizeof *o);
    static const char *const presets[] = {"softmax", "l-softmax", "sphereface", "norm-softmax", "cosface", "arcface"};
    o->n_presets = (int)(sizeof presets / sizeof presets[0]);
    for (int i = 0; i < o->n_presets; i++) o->presets[i] = presets[i];
    o->out = "viz";
    o->steps = 150;
    o->pretrain_steps = 300;
    o->identities = 8;
    o->images_per_identity = 40;
    o->heldout = 10;
    o->seed = 1;
    o->width = 16;
    o->batch = 16;
    o->lr = 0.02;
}

/* The base recipe every preset loads; head.loss, name and output come as overrides.
 * One thread: on the loaded 2-core machine two threads spent most of their time in
 * OpenMP's barrier wait (measured, mbf width 8, batch 16: 3-12 img/s with two threads,
 * 6.8 with passive waiting, 19 with one). */
static fkd_status write_base_recipe(const fkd_viz_options *o, const char *path)
{
    char text[2048];
    int n = snprintf(text, sizeof text,
                     "# facekd viz: one short training per loss preset; head.loss, name and output are\n"
                     "# set per preset (as with --set).\n"
                     "seed: %lld\n"
                     "steps: %lld\n"
                     "batch_size: %d\n"
                     "log_every: 10\n"
                     "eval_every: 0\n"
                     "checkpoint_every: 0\n"
                     "threads: 1\n"
                     "data:\n"
                     "  source: synth\n"
                     "  synth: {seed: %lld, identities: %d, images_per_identity: %d}\n"
                     "model: {arch: mbf, embedding_size: 2, width: %d}\n"
                     "optimizer: {type: adamw, lr: %.17g, weight_decay: 0.0005}\n"
                     "schedule: {type: poly, power: 2}\n",
                     (long long)o->seed, (long long)o->steps, o->batch, (long long)o->seed, o->identities,
                     o->images_per_identity, o->width, o->lr);
    if (n < 0 || (size_t)n >= sizeof text) return FKD_FAIL(FKD_ERR_ARG, "viz: base recipe too long");
    return fkd_atomic_write(path, text, (size_t)n);
}

/* The margin parameters the trainer uses for this recipe: the preset, then the recipe's
 * explicit s, m1, m2, m3 (NaN = the preset's). */
static fkd_status recipe_margin(const fkd_recipe *r, fkd_margin_params *p)
{
    FKD_TRY(fkd_margin_params_preset(p, fkd_recipe_enum_name("head.loss", r->head.loss)));
    const double given[4] = {r->head.s, r->head.m1, r->head.m2, r->head.m3};
    double *target[4] = {&p->s, &p->m1, &p->m2, &p->m3};
    for (int i = 0; i < 4; i++)
        if (!isnan(given[i])) *target[i] = given[i];
    return FKD_OK;
}

/* Held-out image i: identity i / heldout, image index images_per_identity + i % heldout. */
typedef struct {
    fkd_synth_world world;
    int heldout, first_index;
    uint8_t scratch[FKD_SYNTH_SIZE * FKD_SYNTH_SIZE * 3];
} heldout_source;

static fkd_status heldout_image(void *ctx, int64_t i, bool flip, float *slot)
{
    heldout_source *h = ctx;
    (void)flip; /* only plain passes are requested */
    return fkd_synth_render_nchw(&h->world, i / h->heldout, (uint32_t)(h->first_index + i % h->heldout), NULL,
                                 h->scratch, slot);
}

/* What one preset's run leaves for the picture. */
typedef struct {
    float *x;       /* (n, 2) held-out features */
    int32_t *label; /* (n) */
    int64_t n;
    float *w;       /* (classes, 2) class centres */
    float *bias;    /* (classes) or NULL */
    int classes;
} viz_result;

static void viz_result_free(viz_result *v)
{
    free(v->x);
    free(v->label);
    free(v->w);
    free(v->bias);
    memset(v, 0, sizeof *v);
}

/* A 2-column tensor of model.safetensors copied out, or NULL data when absent. */
static fkd_status read_tensor(const fkd_safetensors *st, const char *name, int64_t rows, int64_t cols, float **out)
{
    *out = NULL;
    const fkd_st_tensor *t = fkd_safetensors_find(st, name);
    if (!t) return FKD_OK;
    int64_t want = rows * cols;
    if (t->numel != want)
        return FKD_FAIL(FKD_ERR_FORMAT, "%s: %s: expected %lld values, got %lld", st->path, name, (long long)want,
                        (long long)t->numel);
    *out = malloc(sizeof(float) * (size_t)want);
    if (!*out) return FKD_FAIL(FKD_ERR_NOMEM, "viz: out of memory");
    fkd_st_tensor_to_f32(t, *out);
    return FKD_OK;
}

/* Embeds the held-out images with the run's model.safetensors and reads its centres. */
static fkd_status embed_heldout(const fkd_viz_options *o, const char *model_path, viz_result *v)
{
    fkd_safetensors st = {0};
    fkd_graph *g = NULL;
    fkd_value emb = -1;
    heldout_source *src = calloc(1, sizeof *src);
    fkd_status s = src ? fkd_safetensors_read(&st, model_path) : FKD_FAIL(FKD_ERR_NOMEM, "viz: out of memory");
    fkd_graph_config gc = {.batch = EMBED_BATCH, .mode = FKD_GRAPH_INFER, .precision = FKD_PREC_F32};
    if (s == FKD_OK) s = fkd_model_open(&g, &st, NULL, &gc, &emb);
    fkd_embed_config ec = {.graph = g, .embedding = emb, .input = "input"};
    int dim = 0;
    if (s == FKD_OK) s = fkd_embed_dim(&ec, &dim);
    if (s == FKD_OK && dim != 2) s = FKD_FAIL(FKD_ERR_FORMAT, "%s: embedding size %d, viz needs 2", model_path, dim);
    v->classes = o->identities;
    v->n = (int64_t)o->identities * o->heldout;
    if (s == FKD_OK) {
        v->x = malloc(sizeof(float) * 2 * (size_t)v->n);
        v->label = malloc(sizeof(int32_t) * (size_t)v->n);
        if (!v->x || !v->label) s = FKD_FAIL(FKD_ERR_NOMEM, "viz: out of memory");
    }
    if (s == FKD_OK) {
        fkd_synth_world_default(&src->world, (uint64_t)o->seed, o->identities);
        src->heldout = o->heldout;
        src->first_index = o->images_per_identity;
        for (int64_t i = 0; i < v->n; i++) v->label[i] = (int32_t)(i / o->heldout);
        s = fkd_embed_images(&ec, v->n, heldout_image, src, false, v->x);
    }
    if (s == FKD_OK) s = read_tensor(&st, "head.weight", v->classes, 2, &v->w);
    if (s == FKD_OK && !v->w) s = FKD_FAIL(FKD_ERR_FORMAT, "%s: no head.weight (class centres)", model_path);
    if (s == FKD_OK) s = read_tensor(&st, "head.bias", v->classes, 1, &v->bias);
    fkd_graph_free(g);
    fkd_safetensors_free(&st);
    free(src);
    return s;
}

/* Held-out accuracy of the head's own decision without margin (argmax of W·x + b, or of
 * cos θ when centres are normalised), and the mean angle between a feature and its
 * class centre, in degrees. */
static void summarise(const viz_result *v, const fkd_margin_params *p, double *accuracy, double *angle)
{
    int64_t correct = 0;
    double angle_sum = 0;
    for (int64_t i = 0; i < v->n; i++) {
        const float *x = v->x + 2 * i;
        double xn = hypot(x[0], x[1]), best = -INFINITY;
        int arg = -1;
        for (int j = 0; j < v->classes; j++) {
            const float *w = v->w + 2 * j;
            double wn = hypot(w[0], w[1]), dot = (double)w[0] * x[0] + (double)w[1] * x[1];
            double score = p->w_norm ? dot / (wn > 0 ? wn : 1) : dot;
            if (v->bias) score += v->bias[j];
            if (score > best) best = score, arg = j;
            if (j == v->label[i]) {
                double c = dot / (wn * xn > 0 ? wn * xn : 1);
                angle_sum += acos(c > 1 ? 1 : c < -1 ? -1 : c) * 180 / M_PI;
            }
        }
        correct += arg == v->label[i];
    }
    *accuracy = v->n ? (double)correct / (double)v->n : 0;
    *angle = v->n ? angle_sum / (double)v->n : 0;
}

fkd_status fkd_viz_picture(fkd_plot *p, int size, const char *title, const float *x, const int32_t *labels,
                           int64_t n, const float *w, int classes, bool normalise)
{
    FKD_TRY(fkd_plot_init(p, size, size, title, "feature 1", "feature 2"));
    fkd_plot_set_equal_aspect(p, 1);
    double radius = 1;
    for (int64_t i = 0; !normalise && i < n; i++) {
        double r = hypot(x[2 * i], x[2 * i + 1]);
        if (isfinite(r) && r > radius) radius = r;
    }
    double *px = malloc(sizeof(double) * (size_t)(n + 1)), *py = malloc(sizeof(double) * (size_t)(n + 1));
    fkd_status s = px && py ? FKD_OK : FKD_FAIL(FKD_ERR_NOMEM, "viz: out of memory");
    /* Unit circle first, so points and centres draw over it. */
    if (s == FKD_OK) s = fkd_plot_add_circle(p, 0, 0, 1, FKD_PLOT_GREY);
    for (int c = 0; s == FKD_OK && c < classes; c++) {
        int m = 0;
        for (int64_t i = 0; i < n; i++) {
            if (labels[i] != c) continue;
            double a = x[2 * i], b = x[2 * i + 1], r = normalise ? hypot(a, b) : 1;
            px[m] = r > 0 ? a / r : a;
            py[m] = r > 0 ? b / r : b;
            m++;
        }
        fkd_plot_style points = {FKD_PLOT_POINTS, c, 6, 0};
        if (m) s = fkd_plot_add(p, &points, NULL, px, py, m);
        double wn = hypot(w[2 * c], w[2 * c + 1]), len = 1.15 * radius;
        double lx[2] = {0, wn > 0 ? len * w[2 * c] / wn : 0}, ly[2] = {0, wn > 0 ? len * w[2 * c + 1] / wn : 0};
        fkd_plot_style line = {FKD_PLOT_LINE, c, 2, 1};
        if (s == FKD_OK) s = fkd_plot_add(p, &line, NULL, lx, ly, 2);
    }
    double lim = 1.2 * radius;
    fkd_plot_set_range(p, -lim, lim, -lim, lim);
    free(px);
    free(py);
    if (s != FKD_OK) fkd_plot_free(p);
    return s;
}

/* "cosface s=64 m3=0.35": the preset and the parameters that differ from plain softmax
 * (short enough for the picture's width). */
static void margin_title(const char *preset, const fkd_margin_params *p, char *out, size_t size)
{
    int n = snprintf(out, size, "%s", preset);
    if (p->s != 1) n += snprintf(out + n, size - (size_t)n, " s=%g", p->s);
    if (p->m1 != 1) n += snprintf(out + n, size - (size_t)n, " m1=%g", p->m1);
    if (p->m2 != 0) n += snprintf(out + n, size - (size_t)n, " m2=%g", p->m2);
    if (p->m3 != 0) snprintf(out + n, size - (size_t)n, " m3=%g", p->m3);
}

/* Copies `tile` into `grid` at (x0, y0). */
static void blit(fkd_image *grid, const fkd_image *tile, int x0, int y0)
{
    for (int y = 0; y < tile->height && y0 + y < grid->height; y++) {
        int w = tile->width < grid->width - x0 ? tile->width : grid->width - x0;
        memcpy(grid->pixels + ((size_t)(y0 + y) * grid->width + x0) * 3, tile->pixels + (size_t)y * tile->width * 3,
               (size_t)w * 3);
    }
}

/* Trains run OUT/runs/<run> from the base recipe with head.loss = `loss`, `steps` steps,
 * starting from `weights` when not NULL; *mp receives the head's margin parameters. */
static fkd_status train_one(const fkd_viz_options *o, const char *base, const char *run, const char *loss,
                            int64_t steps, const char *weights, fkd_margin_params *mp)
{
    char name[96], output[PATH_CAP], head[96], steps_set[64], weights_set[PATH_CAP];
    snprintf(name, sizeof name, "name=viz-%s", run);
    snprintf(output, sizeof output, "output=%s/runs/%s", o->out, run);
    snprintf(head, sizeof head, "head.loss=%s", loss);
    snprintf(steps_set, sizeof steps_set, "steps=%lld", (long long)steps);
    snprintf(weights_set, sizeof weights_set, "model.weights=%s", weights ? weights : "");
    const char *sets[5 + FKD_VIZ_MAX_SETS] = {name, output, head, steps_set, weights_set};
    size_t n = weights ? 5 : 4;
    for (int i = 0; i < o->n_sets; i++) sets[n++] = o->sets[i];
    fkd_recipe r;
    FKD_TRY(fkd_recipe_load(&r, base, sets, n));
    fkd_trainer *t = NULL;
    fkd_status s = recipe_margin(&r, mp);
    if (s == FKD_OK) s = fkd_trainer_create(&t, &r, false, NULL);
    if (s == FKD_OK) s = fkd_trainer_run(t);
    fkd_trainer_free(t);
    fkd_recipe_free(&r);
    return s;
}

/* Trains one preset (from the shared pre-trained model when there is one), embeds its
 * held-out images, writes OUT/<preset>.png and renders the picture into `tile`. */
static fkd_status run_preset(const fkd_viz_options *o, const char *base, const char *preset, const char *weights,
                             FILE *table, fkd_image *tile)
{
    char path[PATH_CAP], title[160];
    fkd_margin_params mp;
    double start = fkd_now();
    fkd_status s = train_one(o, base, preset, preset, o->steps, weights, &mp);
    double seconds = fkd_now() - start;
    viz_result v = {0};
    snprintf(path, sizeof path, "%s/runs/%s/model.safetensors", o->out, preset);
    if (s == FKD_OK) s = embed_heldout(o, path, &v);
    margin_title(preset, &mp, title, sizeof title);
    fkd_plot p;
    if (s == FKD_OK) s = fkd_viz_picture(&p, PICTURE_SIZE, title, v.x, v.label, v.n, v.w, v.classes, mp.x_norm);
    if (s == FKD_OK) {
        s = fkd_plot_render(&p, tile);
        snprintf(path, sizeof path, "%s/%s.png", o->out, preset);
        if (s == FKD_OK) s = fkd_image_save_png(tile, path);
        fkd_plot_free(&p);
    }
    if (s == FKD_OK) {
        double accuracy, angle;
        summarise(&v, &mp, &accuracy, &angle);
        fprintf(table, "%s,%g,%g,%g,%g,%s,%lld,%.1f,%.4f,%.2f\n", preset, mp.s, mp.m1, mp.m2, mp.m3,
                mp.x_norm ? "unit circle" : "raw", (long long)o->steps, seconds, accuracy, angle);
        FKD_INFO("viz: %s: %.1f s, held-out accuracy %.1f%%, mean angle to own centre %.1f deg; %s", preset, seconds,
                 100 * accuracy, angle, path);
    }
    viz_result_free(&v);
    return s == FKD_OK ? FKD_OK : FKD_WRAP(s, "viz %s: ", preset);
}

fkd_status fkd_viz_run(const fkd_viz_options *o)
{
    if (o->n_presets < 1 || o->n_presets > FKD_VIZ_MAX_PRESETS)
        return FKD_FAIL(FKD_ERR_ARG, "viz: 1 to %d presets (got %d)", FKD_VIZ_MAX_PRESETS, o->n_presets);
    if (o->identities < 2 || o->identities > 64 || o->heldout < 1 || o->images_per_identity < 1 || o->steps < 1)
        return FKD_FAIL(FKD_ERR_ARG, "viz: need 2..64 identities, >= 1 training and held-out image, >= 1 step");
    if (o->n_sets > FKD_VIZ_MAX_SETS) return FKD_FAIL(FKD_ERR_ARG, "viz: at most %d --set", FKD_VIZ_MAX_SETS);
    /* A misspelt preset fails now, not after the pre-training. */
    for (int i = 0; i < o->n_presets; i++) {
        fkd_margin_params check;
        fkd_status s = fkd_margin_params_preset(&check, o->presets[i]);
        if (s != FKD_OK) return FKD_WRAP(s, "viz --presets: ");
    }
    char base[PATH_CAP], path[PATH_CAP];
    FKD_TRY(fkd_mkdir_p(o->out));
    snprintf(base, sizeof base, "%s/viz.yaml", o->out);
    FKD_TRY(write_base_recipe(o, base));

    snprintf(path, sizeof path, "%s/viz.csv", o->out);
    fkd_atomic_file table_file;
    FKD_TRY(fkd_atomic_open(&table_file, path));
    FILE *table = table_file.fp;
    fprintf(table, "preset,s,m1,m2,m3,features,steps,seconds,heldout_accuracy,mean_angle_deg\n");

    int rows = (o->n_presets + GRID_COLUMNS - 1) / GRID_COLUMNS;
    int cols = o->n_presets < GRID_COLUMNS ? o->n_presets : GRID_COLUMNS;
    fkd_image grid = {PICTURE_SIZE * cols, PICTURE_SIZE * rows, 3, NULL};
    grid.pixels = malloc((size_t)grid.width * grid.height * 3);
    fkd_status s = grid.pixels ? FKD_OK : FKD_FAIL(FKD_ERR_NOMEM, "viz: out of memory");
    if (s == FKD_OK) memset(grid.pixels, 255, (size_t)grid.width * grid.height * 3);
    /* The shared start: a plain softmax run every preset continues from (margin heads
     * trained from scratch on 2-d features collapse every centre onto one direction). */
    char pretrained[PATH_CAP];
    snprintf(pretrained, sizeof pretrained, "%s/runs/pretrain/model.safetensors", o->out);
    if (s == FKD_OK && o->pretrain_steps > 0) {
        FKD_INFO("viz: pre-training %lld steps with softmax", (long long)o->pretrain_steps);
        fkd_margin_params unused;
        s = train_one(o, base, "pretrain", "softmax", o->pretrain_steps, NULL, &unused);
        if (s != FKD_OK) s = FKD_WRAP(s, "viz pretrain: ");
    }
    for (int i = 0; s == FKD_OK && i < o->n_presets; i++) {
        FKD_INFO("viz: preset %d/%d: %s", i + 1, o->n_presets, o->presets[i]);
        fkd_image tile = {0};
        s = run_preset(o, base, o->presets[i], o->pretrain_steps > 0 ? pretrained : NULL, table, &tile);
        if (s == FKD_OK) blit(&grid, &tile, PICTURE_SIZE * (i % GRID_COLUMNS), PICTURE_SIZE * (i / GRID_COLUMNS));
        fkd_image_free(&tile);
    }
    snprintf(path, sizeof path, "%s/grid.png", o->out);
    if (s == FKD_OK) s = fkd_image_save_png(&grid, path);
    fkd_image_free(&grid);
    if (s == FKD_OK) s = fkd_atomic_commit(&table_file);
    else fkd_atomic_abort(&table_file);
    if (s == FKD_OK) FKD_INFO("viz: done; %s and %s/viz.csv", path, o->out);
    return s;
}
