/* facekd recipe: check a recipe (print it resolved) or print the recipe reference. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "io/recipe.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: facekd recipe check FILE [--set KEY.PATH=VALUE]...\n"
                 "       facekd recipe --doc\n\n"
                 "check  validates FILE (extends merged, --set applied) and prints the resolved recipe:\n"
                 "       every key with its value, defaults filled in, absolute paths.\n"
                 "--doc  prints the recipe reference (docs/RECIPES.md) in markdown.\n\n"
                 "--set overrides any key; list items are distill[0].weight or distill.0.weight;\n"
                 "values are read as YAML (--set schedule.milestones=[8,14]).\n");
}

static int print_and_free(fkd_status s, char *text)
{
    if (s != FKD_OK) return fkd_cli_fail();
    fputs(text, stdout);
    free(text);
    return 0;
}

int fkd_cmd_recipe(int argc, char **argv)
{
    if (fkd_cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "--doc") == 0) {
        char *md = NULL;
        fkd_status s = fkd_recipe_doc(&md);
        return print_and_free(s, md);
    }
    if (argc < 3 || strcmp(argv[1], "check") != 0) {
        usage(stderr);
        return 2;
    }
    const char *file = NULL;
    const char **sets = calloc((size_t)argc, sizeof *sets);
    size_t n_sets = 0;
    if (!sets) {
        fprintf(stderr, "facekd: out of memory\n");
        return 1;
    }
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--set") == 0 && i + 1 < argc)
            sets[n_sets++] = argv[++i];
        else if (strncmp(argv[i], "--set=", 6) == 0)
            sets[n_sets++] = argv[i] + 6;
        else if (argv[i][0] != '-' && !file)
            file = argv[i];
        else {
            fprintf(stderr, "facekd recipe: unexpected argument '%s'\n\n", argv[i]);
            usage(stderr);
            free(sets);
            return 2;
        }
    }
    if (!file) {
        usage(stderr);
        free(sets);
        return 2;
    }
    fkd_recipe r;
    fkd_status s = fkd_recipe_load(&r, file, sets, n_sets);
    free(sets);
    if (s != FKD_OK) return fkd_cli_fail();
    char *yaml = NULL;
    s = fkd_recipe_emit(&r, &yaml);
    fkd_recipe_free(&r);
    return print_and_free(s, yaml);
}
