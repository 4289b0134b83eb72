/* facekd plot: columns of a CSV log (training loss, learning rate, accuracy per step, ...)
 * drawn as lines into a PNG. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "core/status.h"
#include "eval/csvtable.h"
#include "eval/plot.h"

static const char usage_text[] =
    "usage: facekd plot LOG.csv --y COL[,COL...] [options]\n"
    "\n"
    "Draws columns of a CSV file (a header row of names, then numbers) as lines against\n"
    "another column and writes a PNG.\n"
    "\n"
    "  --y COLS         columns to draw, comma-separated (one line and legend entry each)\n"
    "  --x COL          the x column (default: the first column)\n"
    "  -o, --out FILE   output PNG (default: LOG without .csv, then _<first y>.png)\n"
    "  --title TEXT     title (default: the y columns)\n"
    "  --xlabel TEXT    x axis label (default: the x column)\n"
    "  --ylabel TEXT    y axis label (default: none)\n"
    "  --log-x          log10 x axis\n"
    "  --size WxH       image size in pixels (default 800x480)\n";

static int parse_size(const char *s, int *w, int *h)
{
    char *end;
    errno = 0;
    long a = strtol(s, &end, 10);
    if (errno || end == s || *end != 'x') return -1;
    const char *t = end + 1;
    long b = strtol(t, &end, 10);
    if (errno || end == t || *end) return -1;
    if (a < 160 || b < 160 || a > 8192 || b > 8192) return -1;
    *w = (int)a;
    *h = (int)b;
    return 0;
}

typedef struct {
    const char *csv, *x, *ys, *out, *title, *xlabel, *ylabel;
    int log_x, width, height;
} options;

static int parse_args(int argc, char **argv, options *o)
{
    memset(o, 0, sizeof(*o));
    o->width = 800;
    o->height = 480;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = !strcmp(a, "--x")                        ? &o->x
                            : !strcmp(a, "--y")                      ? &o->ys
                            : !strcmp(a, "-o") || !strcmp(a, "--out") ? &o->out
                            : !strcmp(a, "--title")                  ? &o->title
                            : !strcmp(a, "--xlabel")                 ? &o->xlabel
                            : !strcmp(a, "--ylabel")                 ? &o->ylabel
                                                                     : NULL;
        if (slot || !strcmp(a, "--size")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "facekd plot: %s needs a value\n", a);
                return 2;
            }
            if (slot) {
                *slot = argv[++i];
            } else if (parse_size(argv[++i], &o->width, &o->height)) {
                fprintf(stderr, "facekd plot: --size '%s': expected WxH, each 160..8192\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(a, "--log-x")) {
            o->log_x = 1;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "facekd plot: unknown option '%s'\n\n%s", a, usage_text);
            return 2;
        } else if (!o->csv) {
            o->csv = a;
        } else {
            fprintf(stderr, "facekd plot: more than one input file ('%s', '%s')\n", o->csv, a);
            return 2;
        }
    }
    if (!o->csv || !o->ys) {
        fprintf(stderr, "facekd plot: need LOG.csv and --y\n\n%s", usage_text);
        return 2;
    }
    return 0;
}

/* "<csv without .csv>_<first y column>.png" */
static char *default_out(const char *csv, const char *ys)
{
    size_t n = strlen(csv), first = strcspn(ys, ",");
    if (n > 4 && !strcmp(csv + n - 4, ".csv")) n -= 4;
    char *out = malloc(n + first + 6);
    if (out) sprintf(out, "%.*s_%.*s.png", (int)n, csv, (int)first, ys);
    return out;
}

/* "loss,lr" -> "loss, lr" (malloc'ed) */
static char *spaced_list(const char *list)
{
    char *out = malloc(2 * strlen(list) + 1);
    if (!out) return NULL;
    size_t n = 0;
    for (const char *c = list; *c; c++) {
        out[n++] = *c;
        if (*c == ',') out[n++] = ' ';
    }
    out[n] = 0;
    return out;
}

static fkd_status draw(const options *o, const fkd_csv_table *t, const char *out)
{
    int xc = o->x ? fkd_csv_table_column(t, o->x) : 0;
    if (xc < 0 || t->n_cols == 0) return FKD_FAIL(FKD_ERR_ARG, "%s: no column '%s'", o->csv, o->x ? o->x : "");
    double *x = malloc(sizeof(double) * (t->n_rows + 1)), *y = malloc(sizeof(double) * (t->n_rows + 1));
    char *ys = strdup(o->ys), *title = spaced_list(o->ys);
    fkd_plot p;
    fkd_status s = x && y && ys && title ? fkd_plot_init(&p, o->width, o->height, o->title ? o->title : title,
                                                         o->xlabel ? o->xlabel : t->names[xc], o->ylabel)
                                         : FKD_FAIL(FKD_ERR_NOMEM, "%s: %d rows", o->csv, t->n_rows);
    free(title);
    if (s != FKD_OK) {
        free(x);
        free(y);
        free(ys);
        return s;
    }
    fkd_plot_set_log_x(&p, o->log_x);
    fkd_csv_table_get(t, xc, x);
    char *save = NULL;
    for (char *name = strtok_r(ys, ",", &save); name && s == FKD_OK; name = strtok_r(NULL, ",", &save)) {
        int yc = fkd_csv_table_column(t, name);
        if (yc < 0) {
            s = FKD_FAIL(FKD_ERR_ARG, "%s: no column '%s'", o->csv, name);
            break;
        }
        fkd_csv_table_get(t, yc, y);
        s = fkd_plot_add(&p, NULL, name, x, y, t->n_rows);
    }
    if (s == FKD_OK) s = fkd_plot_save_png(&p, out);
    fkd_plot_free(&p);
    free(x);
    free(y);
    free(ys);
    return s;
}

int fkd_cmd_plot(int argc, char **argv)
{
    if (fkd_cli_wants_help(argc, argv)) {
        fputs(usage_text, stdout);
        return 0;
    }
    options o;
    int rc = parse_args(argc, argv, &o);
    if (rc) return rc;
    fkd_csv_table t;
    if (fkd_csv_table_load(o.csv, &t) != FKD_OK) return fkd_cli_fail();
    char *out = o.out ? strdup(o.out) : default_out(o.csv, o.ys);
    fkd_status s = out ? draw(&o, &t, out) : FKD_FAIL(FKD_ERR_NOMEM, "plot: output name");
    if (s == FKD_OK) printf("%s\n", out);
    free(out);
    fkd_csv_table_free(&t);
    return s == FKD_OK ? 0 : fkd_cli_fail();
}
