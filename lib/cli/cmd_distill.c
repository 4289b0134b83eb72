/* facekd distill RECIPE [--set key.path=value]... [--resume] */
#include <stdio.h>

#include "cli/commands.h"
#include "cli/runargs.h"
#include "distill/distiller.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: facekd distill RECIPE [--set key.path=value]... [--resume]\n\n"
            "Trains a student against a teacher as the recipe says: the head loss on labels plus\n"
            "every method of its `distill:` list, each weighted (docs/DISTILL.md, docs/RECIPES.md).\n"
            "The teacher (teacher.model) is a facekd model file with its class centres, e.g. the\n"
            "model.safetensors of a `facekd train` run. Everything `facekd train` writes is written\n"
            "too, with a log.csv column per loss term.\n\n"
            "  --set K=V   override a recipe key (repeatable), e.g. --set distill[0].weight=2\n"
            "  --resume    continue from the run folder's checkpoint.safetensors\n\n"
            "methods:\n");
    for (int i = 0; i < fkd_distill_method_count(); i++) {
        const fkd_distill_method *m = fkd_distill_method_at(i);
        fprintf(out, "  %-13s %s\n", m->name, m->summary);
    }
}

int fkd_cmd_distill(int argc, char **argv)
{
    if (fkd_cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    return fkd_cli_run_recipe(argc, argv, true);
}
