/* facekd: the command-line tool. Dispatches to one subcommand per file. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "core/status.h"
#include "train/trainer.h"

typedef struct {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
} command;

static const command commands[] = {
#define FKD__COMMAND_ENTRY(name, summary) {#name, summary, fkd_cmd_##name},
    FKD_COMMAND_LIST(FKD__COMMAND_ENTRY)
#undef FKD__COMMAND_ENTRY
};

static void usage(FILE *out)
{
    fprintf(out, "usage: facekd COMMAND [options]   (facekd COMMAND --help for details)\n\n"
                 "facekd distills face-recognition models on CPUs (oneDNN).\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
}

int fkd_cli_fail(void)
{
    fprintf(stderr, "facekd: %s\n", fkd_last_error());
    return 1;
}

int fkd_cli_int(const char *flag, const char *text, int64_t lo, int64_t hi, int64_t *out)
{
    char *end = NULL;
    errno = 0;
    long long v = text ? strtoll(text, &end, 10) : 0;
    if (!text || errno || end == text || *end || v < lo || v > hi) {
        FKD_FAIL(FKD_ERR_ARG, "%s: need an integer in %lld..%lld, got '%s'", flag, (long long)lo, (long long)hi,
                 text ? text : "");
        return -1;
    }
    *out = v;
    return 0;
}

int fkd_cli_precision(const char *command, const char *text, fkd_precision *out)
{
    bool bf16 = text && strcmp(text, "bf16") == 0;
    if (!bf16 && !(text && strcmp(text, "fp32") == 0)) {
        FKD_FAIL(FKD_ERR_ARG, "--precision: need fp32 or bf16, got '%s'", text ? text : "");
        return -1;
    }
    *out = bf16 ? fkd_train_precision(command, "--precision", true) : FKD_PREC_F32;
    return 0;
}

int fkd_cli_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) return 1;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) return fkd_cmd_version(1, argv + 1);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "facekd: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
