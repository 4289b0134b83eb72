/* Subcommands of the facekd tool: one file per command, each `int fkd_cmd_<name>(argc, argv)`
 * returning the process exit code (argv[0] is the command name). */
#ifndef FKD_CLI_COMMANDS_H
#define FKD_CLI_COMMANDS_H

#include <stdint.h>

#include "nn/graph.h"

/* X(name, one-line summary). Add a line here and a lib/cli/cmd_<name>.c file. */
#define FKD_COMMAND_LIST(X)                                                                  \
    X(train, "train a model and its head from labels, as a YAML recipe says")                 \
    X(distill, "train a student against a teacher with distillation losses (recipe)")          \
    X(compare, "train and evaluate a teacher and student recipes into one comparison table")    \
    X(eval, "verification accuracy (insightface protocol), TAR@FAR, ROC of a model")          \
    X(embed, "embeddings of images, a folder or a .npy batch, written as .npy")               \
    X(export, "export a model to ONNX (batch norm folded, dynamic batch) and check it")       \
    X(info, "describe an architecture or a model file (parameters, MACs, tensors, check)")    \
    X(synth, "render synthetic face benchmarks, training sets and previews")                  \
    X(bench, "measure model speed (train/infer, fp32/bf16) or data decoding speed (images/s)") \
    X(plot, "draw columns of a CSV log (loss, lr, accuracy vs step) as a PNG line plot")      \
    X(recipe, "check a recipe and print it resolved; --doc prints the recipe reference")      \
    X(viz, "train each margin preset with a 2-d embedding and draw features and class centres") \
    X(version, "print the version and the oneDNN build facekd runs on")

#define FKD__COMMAND_DECL(name, summary) int fkd_cmd_##name(int argc, char **argv);
FKD_COMMAND_LIST(FKD__COMMAND_DECL)
#undef FKD__COMMAND_DECL

/* Prints "facekd: <last error>" to stderr and returns exit code 1 (2 for usage errors). */
int fkd_cli_fail(void);
/* Parses a whole decimal integer in [lo, hi] given for option `flag`. On failure records
 * "FLAG: need an integer in LO..HI, got 'TEXT'" (fkd_last_error) and returns -1; else 0. */
int fkd_cli_int(const char *flag, const char *text, int64_t lo, int64_t hi, int64_t *out);
/* Parses --precision's value ("fp32" or "bf16") for `command` ("facekd eval"): bf16 where
 * this CPU runs it, else fp32 with a warning (fkd_train_precision). On a bad value records
 * the error and returns -1; else 0. */
int fkd_cli_precision(const char *command, const char *text, fkd_precision *out);
/* True when argv holds -h or --help. */
int fkd_cli_wants_help(int argc, char **argv);

#endif
