/*
 * cmd.h - the mke command table. Every subcommand is one file
 * coordinator/cmd_NAME.c with one handler `int cmd_NAME(int argc, char **argv)`
 * (argv[0] is the subcommand's name); `mke help` and `mke NAME --help` come
 * from the table's one-line help and each command's usage text.
 */
#ifndef MKE_CMD_H
#define MKE_CMD_H

#include <stddef.h>

#include "meter.h"

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
int cmd_run(int argc, char **argv);
int cmd_submit(int argc, char **argv);
int cmd_resume(int argc, char **argv);
int cmd_shard(int argc, char **argv);
int cmd_split(int argc, char **argv);
int cmd_runs(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_cancel(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_gen(int argc, char **argv);

/*
 * Finding runs (cmd_runs.c), shared by runs, status, export and cancel.
 * A run's database is --db FILE, else $MKE_DB, else $MKE_RUNS/RUN/mke.db
 * ($MKE_RUNS defaults to ./runs), as the coordinator places it.
 */
struct store;
struct store_run;

/* One run found by a scan; every string is owned by the list. */
struct run_entry {
	char *id, *name, *db_path, *error;
	int status, phase;                   /* enum run_status, enum run_phase */
	long long created_ms, started_ms, ended_ms;
};
struct run_list {
	struct run_entry *v;
	int n;
};
/* Every run in --db FILE (db_opt), or else in $MKE_DB and every
 * $MKE_RUNS/RUN/mke.db, newest first. A database that cannot be opened is
 * reported and skipped. Returns 0 or -1; run_list_release() always. */
int run_list_scan(const char *db_opt, struct run_list *l);
void run_list_release(struct run_list *l);

/* Open the database that holds run (NULL: the newest run) read-only and
 * read its row. A unique prefix of a run id is accepted. Returns 0 with *db
 * (store_close), *db_path (free) and *r (store_run_release) set, or -1 after
 * reporting why (no such run: "error: no run 'x' in 'runs/x/mke.db'"). */
int run_open(const char *run, const char *db_opt, struct store **db, char **db_path,
	     struct store_run *r);
/* "2026-11-25 15:11:08" in local time ("-" for 0); durations are
 * fmt_duration of common/meter.h. */
void fmt_time(char *buf, size_t n, long long ms);

/*
 * A run's result (cmd_status.c): the latest test accuracy and rectification
 * of every variant, grouped by kind ("mm_student/81" is kind mm_student,
 * seed 81) with mean and sample std over the seeds. Fractions in [0,1];
 * NaN where there is no value.
 */
struct kind_result {
	char *kind;
	int n_acc, n_rect;
	double acc_mean, acc_std, rect_mean, rect_std;
};
struct run_result {
	struct kind_result teacher;          /* kind "teacher" */
	double pseudo_label_accuracy;
	char metric[16];                     /* what test_accuracy measures: "accuracy",
						"mIoU" (segment) or "mAP" (multilabel) */
	struct kind_result *kinds;           /* students, in the paper's order */
	int nkinds;
};
int run_result_load(struct store *db, const char *run, struct run_result *res);
void run_result_release(struct run_result *res);
/* The student with the best mean test accuracy among those trained on
 * pseudo-labels (not the *_sup upper bound), or NULL. */
const struct kind_result *run_result_best(const struct run_result *res);

#endif
