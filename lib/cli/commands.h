/* Subcommands of the facekd tool: one file per command, each `int fkd_cmd_<name>(argc, argv)`
 * returning the process exit code (argv[0] is the command name). */
#ifndef FKD_CLI_COMMANDS_H
#define FKD_CLI_COMMANDS_H

/* X(name, one-line summary). Add a line here and a lib/cli/cmd_<name>.c file. */
#define FKD_COMMAND_LIST(X) \
    X(version, "print the version and the oneDNN build facekd runs on") \
    X(info, "describe an architecture or a model file (parameters, MACs, tensors, check)") \
    X(export, "write a student checkpoint as ONNX (dynamic batch, BN folded) and check it")

#define FKD__COMMAND_DECL(name, summary) int fkd_cmd_##name(int argc, char **argv);
FKD_COMMAND_LIST(FKD__COMMAND_DECL)
#undef FKD__COMMAND_DECL

/* Prints "facekd: <last error>" to stderr and returns exit code 1 (2 for usage errors). */
int fkd_cli_fail(void);
/* True when argv holds -h or --help. */
int fkd_cli_wants_help(int argc, char **argv);

#endif
