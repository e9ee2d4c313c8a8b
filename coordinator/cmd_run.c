/*
 * cmd_run.c - `mke run CONFIG` (the main job) and `mke resume RUN`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "coord.h"
#include "notify.h"
#include "util.h"

/* Options shared by run and resume. Returns the index of the first
 * positional argument's slot filled in *pos, or -1 on a usage error. */
static int parse_opts(const char *cmd, int argc, char **argv, struct coord_opts *o, const char **pos)
{
	memset(o, 0, sizeof *o);
	*pos = NULL;
	int quiet = 0, json = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		int has = i + 1 < argc;
		if (strcmp(a, "--ranks") == 0 && has) {
			long n;
			if (parse_long(argv[++i], &n) != 0 || n < 1 || n > 4096) {
				fprintf(stderr, "error: --ranks must be a number from 1 to 4096, not '%s'\n", argv[i]);
				return -1;
			}
			o->ranks = (int)n;
		} else if (strcmp(a, "--redis") == 0 && has) {
			o->redis_url = argv[++i];
			if (strchr(o->redis_url, '@')) {
				fprintf(stderr, "error: --redis must not carry a password (argv is visible to every "
						"user); set MKE_REDIS_PASSWORD or the config's pipeline.redis_password\n");
				return -1;
			}
		} else if (strcmp(a, "--run-dir") == 0 && has) {
			o->run_dir = argv[++i];
		} else if (strcmp(a, "--db") == 0 && has) {
			o->db_path = argv[++i];
		} else if (strcmp(a, "--launcher") == 0 && has) {
			o->launcher = argv[++i];
			if (strcmp(o->launcher, "mpirun") != 0 && strcmp(o->launcher, "srun") != 0) {
				fprintf(stderr, "error: --launcher must be mpirun or srun, not '%s'\n", o->launcher);
				return -1;
			}
		} else if (strcmp(a, "--hostfile") == 0 && has) {
			o->hostfile = argv[++i];
		} else if (strcmp(a, "--setting") == 0 && has) {
			o->setting = argv[++i];
		} else if (strcmp(a, "--max-restarts") == 0 && has) {
			long n;
			if (parse_long(argv[++i], &n) != 0 || n < 0 || n > 100) {
				fprintf(stderr, "error: --max-restarts must be a number from 0 to 100\n");
				return -1;
			}
			o->max_restarts = n == 0 ? -1 : (int)n;
		} else if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0) {
			quiet = 1;
		} else if (strcmp(a, "--json") == 0) {
			json = 1;
		} else if (strcmp(a, "--notify") == 0 && has) {
			o->notify_url = argv[++i];
			if (notify_check_url("--notify", o->notify_url) != 0)
				return -1;
		} else if (a[0] == '-') {
			fprintf(stderr, "error: unknown or incomplete option '%s'\n", a);
			cmd_usage(cmd, 1);
			return -1;
		} else if (!*pos) {
			*pos = a;
		} else {
			fprintf(stderr, "error: unexpected argument '%s'\n", a);
			return -1;
		}
	}
	if (!*pos) {
		cmd_usage(cmd, 1);
		return -1;
	}
	if (quiet && json) {
		fprintf(stderr, "error: --quiet and --json contradict each other (--json prints only JSON "
				"on stdout already); drop one\n");
		return -1;
	}
	o->output = json ? PROGRESS_JSON : quiet ? PROGRESS_QUIET : PROGRESS_TEXT;
	/* a webhook URL often holds a token: $MKE_NOTIFY_URL keeps it out of argv */
	const char *env = getenv("MKE_NOTIFY_URL");
	if (!o->notify_url && env && *env) {
		o->notify_url = env;
		if (notify_check_url("MKE_NOTIFY_URL", env) != 0)
			return -1;
	}
	if (o->hostfile && o->launcher && strcmp(o->launcher, "srun") == 0) {
		fprintf(stderr, "error: --hostfile is for --launcher mpirun; srun takes its nodes from "
				"the Slurm allocation\n");
		return -1;
	}
	return 0;
}

int cmd_run(int argc, char **argv)
{
	struct coord_opts o;
	const char *config;
	if (parse_opts("run", argc, argv, &o, &config) != 0)
		return 2;
	int rc = coord_run_new(config, &o, NULL);
	return rc == 0 ? 0 : rc == 3 ? 3 : 1;
}

int cmd_resume(int argc, char **argv)
{
	struct coord_opts o;
	const char *run;
	if (parse_opts("resume", argc, argv, &o, &run) != 0)
		return 2;
	int rc = coord_resume(run, &o);
	return rc == 0 ? 0 : rc == 3 ? 3 : 1;
}
