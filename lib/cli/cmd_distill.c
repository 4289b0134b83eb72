/* facekd distill RECIPE [--set key.path=value]... [--resume] */
#include <stdio.h>

#include "cli/commands.h"
#include "cli/runargs.h"
#include "distill/distiller.h"
#include "io/recipe.h"
#include "train/distill.h"
#include "train/trainer.h"

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
    const char *recipe_path, *sets[argc > 0 ? argc : 1];
    size_t n_sets;
    int resume;
    int rc = fkd_cli_parse_run_args(argc, argv, &recipe_path, sets, &n_sets, &resume);
    if (rc) return rc;
    fkd_recipe r;
    if (fkd_recipe_load(&r, recipe_path, sets, n_sets) != FKD_OK) return fkd_cli_fail();
    fkd_cli_install_stop_handlers();
    fkd_train_hook hook;
    fkd_distill_run *run = NULL;
    fkd_trainer *t = NULL;
    fkd_status s = fkd_distill_run_create(&run, &r, &hook);
    if (s == FKD_OK) s = fkd_trainer_create(&t, &r, resume, &hook);
    if (s == FKD_OK) s = fkd_trainer_run(t);
    fkd_trainer_free(t);
    fkd_distill_run_free(run);
    fkd_recipe_free(&r);
    return fkd_cli_run_exit_code(s);
}
