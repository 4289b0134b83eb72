/* facekd train RECIPE [--set key.path=value]... [--resume] */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/runargs.h"
#include "core/log.h"
#include "dist/dist.h"
#include "io/recipe.h"
#include "train/distill.h"
#include "train/trainer.h"

static volatile sig_atomic_t stop_signal = 0;

static void on_stop_signal(int sig)
{
    stop_signal = sig;
    fkd_train_stop_requested = 1;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: facekd train RECIPE [--set key.path=value]... [--resume]\n\n"
            "Trains a model and its head from labels as the YAML recipe says (docs/RECIPES.md).\n"
            "The run folder (recipe key `output`) receives recipe.yaml, log.csv, eval.csv,\n"
            "checkpoint.safetensors, model.safetensors, results.md/csv, roc.png and curves.\n\n"
            "  --set K=V   override a recipe key (repeatable), e.g. --set optimizer.lr=0.05\n"
            "  --resume    continue from the run folder's checkpoint.safetensors\n\n"
            "Ctrl-C (SIGINT) or SIGTERM finishes the current step, writes a checkpoint and exits\n"
            "with 130 or 143; run the same command with --resume to continue. A second Ctrl-C stops\n"
            "at once, keeping the last checkpoint written.\n");
}

/* Shared by train and distill: parses RECIPE, --set and --resume. */
int fkd_cli_parse_run_args(int argc, char **argv, const char **recipe, const char **sets, size_t *n_sets, int *resume)
{
    *recipe = NULL;
    *n_sets = 0;
    *resume = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--set") == 0 && i + 1 < argc) {
            sets[(*n_sets)++] = argv[++i];
        } else if (strncmp(argv[i], "--set=", 6) == 0) {
            sets[(*n_sets)++] = argv[i] + 6;
        } else if (strcmp(argv[i], "--resume") == 0) {
            *resume = 1;
        } else if (argv[i][0] == '-' || *recipe) {
            fprintf(stderr, "facekd %s: unexpected argument '%s'\n", argv[0], argv[i]);
            return 2;
        } else {
            *recipe = argv[i];
        }
    }
    if (!*recipe) {
        fprintf(stderr, "facekd %s: a recipe file is required (see --help)\n", argv[0]);
        return 2;
    }
    return 0;
}

int fkd_cli_run_exit_code(fkd_status s)
{
    if (s == FKD_OK) return 0;
    fprintf(stderr, "facekd: %s\n", fkd_last_error());
    if (s == FKD_ERR_INTERRUPTED) return stop_signal == SIGTERM ? 143 : 130;
    return 1;
}

void fkd_cli_install_stop_handlers(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    /* SA_RESTART: a signal must not turn a write or fsync under way into an EINTR error.
     * SA_RESETHAND: a second Ctrl-C stops at once (the last checkpoint stays intact). */
    sa.sa_flags = SA_RESTART | SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* Under mpirun (several ranks) a failure on any rank ends the whole job with that rank's
 * message: the others would otherwise wait forever in their next reduction. A stop
 * request is the exception: every rank stops at the same step (the trainer agrees on it)
 * after rank 0 has written the checkpoint, so they leave together and rank 0 alone
 * says so. */
static int run_exit_code(fkd_status s)
{
    if (s != FKD_OK && s != FKD_ERR_INTERRUPTED && fkd_dist_world() > 1) fkd_dist_fail(fkd_last_error(), 1);
    int rc;
    if (fkd_dist_is_root())
        rc = fkd_cli_run_exit_code(s);
    else
        rc = s == FKD_OK ? 0 : (stop_signal == SIGTERM ? 143 : 130);
    fkd_dist_finalize();
    return rc;
}

int fkd_cli_run_recipe(int argc, char **argv, bool distill)
{
    const char *recipe_path, *sets[argc > 0 ? argc : 1];
    size_t n_sets;
    int resume;
    int rc = fkd_cli_parse_run_args(argc, argv, &recipe_path, sets, &n_sets, &resume);
    if (rc) return rc;
    /* One process: a world of one rank. Under mpirun (facekd built with MPI=1): every rank
     * trains on its slice of each global batch; rank 0 alone logs and writes (docs/MPI.md). */
    fkd_status s = fkd_dist_init();
    if (s != FKD_OK) return fkd_cli_fail();
    if (!fkd_dist_is_root() && fkd_log_get_level() < FKD_LOG_WARN) fkd_log_set_level(FKD_LOG_WARN);
    fkd_recipe r;
    s = fkd_recipe_load(&r, recipe_path, sets, n_sets);
    if (s != FKD_OK) return run_exit_code(s);
    fkd_cli_install_stop_handlers();
    s = fkd_run_recipe(&r, resume, distill);
    fkd_recipe_free(&r);
    return run_exit_code(s);
}

int fkd_cmd_train(int argc, char **argv)
{
    if (fkd_cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    return fkd_cli_run_recipe(argc, argv, false);
}
