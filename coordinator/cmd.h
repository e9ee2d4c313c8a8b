/*
 * cmd.h - the mke command table. Every subcommand is one file
 * coordinator/cmd_NAME.c with one handler `int cmd_NAME(int argc, char **argv)`
 * (argv[0] is the subcommand's name); `mke help` and `mke NAME --help` come
 * from the table's one-line help and each command's usage text.
 */
#ifndef MKE_CMD_H
#define MKE_CMD_H

struct cmd {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *help;   /* one line for `mke help` */
	const char *usage;  /* full text for `mke NAME --help` */
};

extern const struct cmd mke_commands[];
const struct cmd *cmd_find(const char *name);
/* Print a command's usage to out; returns 0. */
int cmd_usage(const char *name, int to_stderr);
/* True when argv holds -h or --help. */
int wants_help(int argc, char **argv);

int cmd_help(int argc, char **argv);
int cmd_experiment(int argc, char **argv);

#endif
