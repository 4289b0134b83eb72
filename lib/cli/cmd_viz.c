/* facekd viz --out DIR [--presets a,b,...] [--steps N] [--identities K] [--seed S] ... */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/runargs.h"
#include "train/trainer.h"
#include "train/viz.h"

static void usage(FILE *out)
{
    fkd_viz_options d;
    fkd_viz_options_default(&d);
    fprintf(out,
            "usage: facekd viz --out DIR [--presets a,b,...] [--steps N] [--identities K] [--seed S]\n"
            "                  [--pretrain N] [--images N] [--heldout N] [--width W] [--batch B]\n"
            "                  [--lr LR] [--set K=V]...\n\n"
            "What each margin does, in two dimensions: a narrow MobileFaceNet with a 2-d embedding\n"
            "is pre-trained briefly with softmax on a few synthetic identities, then each loss preset\n"
            "trains on from there; held-out images of those identities are embedded and drawn with\n"
            "the class centres (docs/VIZ.md). Writes DIR/<preset>.png, DIR/grid.png, DIR/viz.csv\n"
            "(held-out accuracy, angles), DIR/viz.yaml (the base recipe) and the run folders\n"
            "DIR/runs/pretrain/ and DIR/runs/<preset>/.\n\n"
            "  --out DIR          output folder (required)\n"
            "  --presets LIST     head.loss presets, comma-separated (default softmax,l-softmax,\n"
            "                     sphereface,norm-softmax,cosface,arcface)\n"
            "  --steps N          training steps per preset (default %lld)\n"
            "  --pretrain N       shared softmax pre-training steps, 0 = none (default %lld)\n"
            "  --identities K     synthetic identities (default %d)\n"
            "  --images N         training images per identity (default %d)\n"
            "  --heldout N        held-out images per identity in the picture (default %d)\n"
            "  --seed S           world and training seed (default %lld)\n"
            "  --width W          model.width of the mbf model (default %d)\n"
            "  --batch B          batch size (default %d)\n"
            "  --lr LR            peak learning rate, adamw with poly decay (default %g)\n"
            "  --set K=V          any other recipe override, for every preset (e.g. --set head.s=16)\n",
            (long long)d.steps, (long long)d.pretrain_steps, d.identities, d.images_per_identity, d.heldout, (long long)d.seed, d.width, d.batch,
            d.lr);
}

/* A whole-string integer in [min, max]. */
static int parse_int(const char *flag, const char *text, int64_t min, int64_t max, int64_t *out)
{
    return fkd_cli_int(flag, text, min, max, out);
}

static int parse_presets(char *list, fkd_viz_options *o)
{
    o->n_presets = 0;
    for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (o->n_presets == FKD_VIZ_MAX_PRESETS) return -1;
        o->presets[o->n_presets++] = tok;
    }
    return o->n_presets > 0 ? 0 : -1;
}

int fkd_cmd_viz(int argc, char **argv)
{
    if (fkd_cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    fkd_viz_options o;
    fkd_viz_options_default(&o);
    o.out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t n = 0;
        int bad = !v;
        if (v) i++;
        if (bad) {
        } else if (!strcmp(a, "--out")) {
            o.out = v;
        } else if (!strcmp(a, "--presets")) {
            bad = parse_presets(argv[i], &o);
        } else if (!strcmp(a, "--steps")) {
            bad = parse_int(a, v, 1, 1000000, &n);
            o.steps = n;
        } else if (!strcmp(a, "--pretrain")) {
            bad = parse_int(a, v, 0, 1000000, &n);
            o.pretrain_steps = n;
        } else if (!strcmp(a, "--identities")) {
            bad = parse_int(a, v, 2, 64, &n);
            o.identities = (int)n;
        } else if (!strcmp(a, "--images")) {
            bad = parse_int(a, v, 1, 100000, &n);
            o.images_per_identity = (int)n;
        } else if (!strcmp(a, "--heldout")) {
            bad = parse_int(a, v, 1, 10000, &n);
            o.heldout = (int)n;
        } else if (!strcmp(a, "--seed")) {
            bad = parse_int(a, v, 0, 9007199254740991LL, &n);
            o.seed = n;
        } else if (!strcmp(a, "--width")) {
            bad = parse_int(a, v, 1, 1024, &n);
            o.width = (int)n;
        } else if (!strcmp(a, "--batch")) {
            bad = parse_int(a, v, 1, 65536, &n);
            o.batch = (int)n;
        } else if (!strcmp(a, "--lr")) {
            char *end;
            o.lr = strtod(v, &end);
            bad = end == v || *end || !(o.lr > 0);
        } else if (!strcmp(a, "--set")) {
            bad = o.n_sets == FKD_VIZ_MAX_SETS;
            if (!bad) o.sets[o.n_sets++] = v;
        } else {
            fprintf(stderr, "facekd viz: unexpected argument '%s' (see --help)\n", a);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "facekd viz: bad or missing value for %s (see --help)\n", a);
            return 2;
        }
    }
    if (!o.out) {
        fprintf(stderr, "facekd viz: --out DIR is required (see --help)\n");
        return 2;
    }
    fkd_cli_install_stop_handlers();
    return fkd_cli_run_exit_code(fkd_viz_run(&o));
}
