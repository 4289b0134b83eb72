/* facekd compare SET.yaml [--rerun] */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/runargs.h"
#include "train/compare.h"

int fkd_cmd_compare(int argc, char **argv)
{
    if (fkd_cli_wants_help(argc, argv)) {
        printf("usage: facekd compare SET.yaml [--rerun]\n\n"
               "Trains (or reuses) a teacher and a list of student recipes, evaluates every model\n"
               "on the same benchmarks and writes compare.md, compare.csv (rows: teacher, each run;\n"
               "columns: 10-fold accuracy, TAR@FAR and EKD's view, the student's TPR at the\n"
               "teacher's threshold) and roc_<benchmark>.png. The set file's keys: docs/COMPARE.md.\n\n"
               "  --rerun   train every run again even when its model.safetensors exists\n");
        return 0;
    }
    const char *set = NULL;
    int rerun = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--rerun")) {
            rerun = 1;
        } else if (argv[i][0] == '-' || set) {
            fprintf(stderr, "facekd compare: unexpected argument '%s' (see --help)\n", argv[i]);
            return 2;
        } else {
            set = argv[i];
        }
    }
    if (!set) {
        fprintf(stderr, "facekd compare: a set file is required (see --help)\n");
        return 2;
    }
    fkd_cli_install_stop_handlers();
    return fkd_cli_run_exit_code(fkd_compare_run(set, rerun));
}
