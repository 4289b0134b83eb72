/* Shared by `facekd train` and `facekd distill`: arguments, stop signals, exit codes. */
#ifndef FKD_CLI_RUNARGS_H
#define FKD_CLI_RUNARGS_H

#include <stdbool.h>
#include <stddef.h>

#include "core/status.h"

/* RECIPE [--set K=V]... [--resume]; `sets` must hold argc entries. Returns 0 or the
 * usage exit code (2) after printing why. */
int fkd_cli_parse_run_args(int argc, char **argv, const char **recipe, const char **sets, size_t *n_sets, int *resume);
/* SIGINT/SIGTERM ask the trainer to checkpoint and stop (fkd_train_stop_requested). */
void fkd_cli_install_stop_handlers(void);
/* 0 on success; prints the error and returns 130 (SIGINT) / 143 (SIGTERM) for an
 * interrupted run, 1 otherwise. */
int fkd_cli_run_exit_code(fkd_status s);

/* facekd train / facekd distill: parses the arguments, loads the recipe, trains (with the
 * distillation hook when `distill`) and returns the exit code. */
int fkd_cli_run_recipe(int argc, char **argv, bool distill);

#endif
