/*
 * cmd_submit.c - `mke submit CONFIG --scheduler slurm|mpirun ...`: write a
 * batch script that runs `mke run CONFIG --ranks N*R` and hand it to the
 * scheduler.
 *
 * Every option is checked before anything is written, and every problem is
 * reported (not just the first). Values that reach the script's shell are
 * single-quoted; values that go into #SBATCH lines (which the shell never
 * reads, but sbatch does, line by line) must match a plain character set, so
 * no newline or quote can smuggle in a directive or a command. The
 * scheduler itself (sbatch, or sh for the mpirun script) is started with an
 * argv array, never through a shell command line.
 *
 * slurm: the script is deploy/slurm/mke.sbatch.in with its @NAME@s replaced
 * (found through $MKE_SBATCH_TEMPLATE, else <bin>/../deploy/slurm/,
 * <bin>/../../deploy/slurm/ or <bin>/../share/mke/); `sbatch --parsable
 * SCRIPT` prints the job id. The coordinator records $SLURM_JOB_ID itself
 * (the run database has one writer).
 * The batch step starts the ranks with srun (--mpi=pmix), or with
 * --launcher mpirun with Open MPI's mpirun, which reads the allocation itself
 * (for a Slurm without PMIx support).
 * mpirun: a /bin/sh script started in its own session in the background, its
 * output in SCRIPT.log; the pid is printed.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cmd.h"
#include "config.h"
#include "util.h"

#define MAX_MODULES 32

struct submit {
	const char *config, *scheduler, *time, *partition, *account, *hostfile, *run_dir, *db, *out, *redis;
	const char *launcher;   /* slurm: how the batch step starts the ranks (srun, mpirun) */
	const char *modules[MAX_MODULES];
	int nmodules;
	long nodes, ntasks;
	int dry_run;
};

/* A growing string. */
struct buf {
	char *s;
	size_t n, cap;
};

static void buf_add(struct buf *b, const char *s, size_t n)
{
	if (b->n + n + 1 > b->cap) {
		b->cap = (b->n + n + 1) * 2;
		b->s = xrealloc(b->s, b->cap);
	}
	memcpy(b->s + b->n, s, n);
	b->n += n;
	b->s[b->n] = '\0';
}

static void buf_puts(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

/* ' ' + s single-quoted for sh ('it'\''s'). */
static void buf_quoted(struct buf *b, const char *s)
{
	buf_puts(b, " '");
	for (const char *p = s; *p; p++) {
		if (*p == '\'')
			buf_puts(b, "'\\''");
		else
			buf_add(b, p, 1);
	}
	buf_puts(b, "'");
}

/* Only characters from set (plus alphanumerics), not empty. */
static int plain(const char *s, const char *set)
{
	if (!*s)
		return 0;
	for (const char *p = s; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr(set, *p))
			return 0;
	return 1;
}

/* No control characters (a newline in a path would end a script line). */
static int printable(const char *s)
{
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return 0;
	return 1;
}

/* An absolute form of path (which need not exist yet). Caller frees. */
static char *absolute(const char *path)
{
	char *r = realpath(path, NULL);
	if (r)
		return r;
	if (path[0] == '/')
		return xstrdup(path);
	char cwd[PATH_MAX];
	if (!getcwd(cwd, sizeof cwd))
		return xstrdup(path);
	return xasprintf("%s/%s", cwd, path);
}

static char *self_path(void)
{
	char buf[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
	if (n <= 0)
		return xstrdup("mke");
	buf[n] = '\0';
	return xstrdup(buf);
}

static int parse_count(const char *opt, const char *v, long *out)
{
	if (parse_long(v, out) != 0 || *out < 1 || *out > 4096) {
		fprintf(stderr, "error: %s must be a positive number (at most 4096), not '%s'\n", opt, v);
		return -1;
	}
	return 0;
}

/* Parse and check everything; returns the number of problems reported. */
static int parse(int argc, char **argv, struct submit *s)
{
	int bad = 0;
	memset(s, 0, sizeof *s);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		int has = i + 1 < argc;
		const char **slot = NULL;
		if (strcmp(a, "--scheduler") == 0)
			slot = &s->scheduler;
		else if (strcmp(a, "--time") == 0 || strcmp(a, "-t") == 0)
			slot = &s->time;
		else if (strcmp(a, "--partition") == 0 || strcmp(a, "-p") == 0)
			slot = &s->partition;
		else if (strcmp(a, "--account") == 0 || strcmp(a, "-A") == 0)
			slot = &s->account;
		else if (strcmp(a, "--hostfile") == 0)
			slot = &s->hostfile;
		else if (strcmp(a, "--run-dir") == 0)
			slot = &s->run_dir;
		else if (strcmp(a, "--db") == 0)
			slot = &s->db;
		else if (strcmp(a, "--redis") == 0)
			slot = &s->redis;
		else if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0)
			slot = &s->out;
		else if (strcmp(a, "--launcher") == 0)
			slot = &s->launcher;
		if (slot) {
			if (!has) {
				fprintf(stderr, "error: %s needs a value\n", a);
				bad++;
				continue;
			}
			if (*slot) {
				fprintf(stderr, "error: %s is given twice\n", a);
				bad++;
			}
			*slot = argv[++i];
		} else if (strcmp(a, "--nodes") == 0 || strcmp(a, "-N") == 0) {
			if (!has || parse_count("--nodes", argv[++i], &s->nodes) != 0) {
				if (!has)
					fprintf(stderr, "error: --nodes needs a value\n");
				s->nodes = -1;
				bad++;
			}
		} else if (strcmp(a, "--ntasks-per-node") == 0) {
			if (!has || parse_count("--ntasks-per-node", argv[++i], &s->ntasks) != 0) {
				if (!has)
					fprintf(stderr, "error: --ntasks-per-node needs a value\n");
				s->ntasks = -1;
				bad++;
			}
		} else if (strcmp(a, "--module") == 0) {
			if (!has) {
				fprintf(stderr, "error: --module needs a value\n");
				bad++;
			} else if (s->nmodules == MAX_MODULES) {
				fprintf(stderr, "error: at most %d --module options\n", MAX_MODULES);
				bad++;
				i++;
			} else {
				s->modules[s->nmodules++] = argv[++i];
			}
		} else if (strcmp(a, "--dry-run") == 0 || strcmp(a, "-n") == 0) {
			s->dry_run = 1;
		} else if (a[0] == '-') {
			fprintf(stderr, "error: unknown option '%s'; see 'mke submit --help'\n", a);
			bad++;
		} else if (!s->config) {
			s->config = a;
		} else {
			fprintf(stderr, "error: unexpected argument '%s' (one CONFIG only)\n", a);
			bad++;
		}
	}

	if (!s->config) {
		fprintf(stderr, "error: mke submit needs a CONFIG (a run config, e.g. deploy/examples/twomoon.json)\n");
		bad++;
	}
	int slurm = 0;
	if (!s->scheduler) {
		fprintf(stderr, "error: --scheduler slurm|mpirun is required\n");
		bad++;
	} else if (strcmp(s->scheduler, "slurm") == 0) {
		slurm = 1;
	} else if (strcmp(s->scheduler, "mpirun") != 0) {
		fprintf(stderr, "error: --scheduler must be slurm or mpirun, not '%s'\n", s->scheduler);
		bad++;
		s->scheduler = NULL;
	}
	if (s->nodes == 0) {
		fprintf(stderr, "error: --nodes N is required\n");
		bad++;
	}
	if (s->ntasks == 0) {
		fprintf(stderr, "error: --ntasks-per-node R is required\n");
		bad++;
	}
	if (s->nodes > 0 && s->ntasks > 0 && s->nodes * s->ntasks > 4096) {
		fprintf(stderr, "error: --nodes %ld x --ntasks-per-node %ld is %ld ranks; 'mke run' takes at most 4096\n",
			s->nodes, s->ntasks, s->nodes * s->ntasks);
		bad++;
	}
	if (s->scheduler && slurm && s->hostfile) {
		fprintf(stderr, "error: --hostfile is for --scheduler mpirun; Slurm picks the nodes "
				"(use --partition, or drop --hostfile)\n");
		bad++;
	}
	if (s->launcher && strcmp(s->launcher, "srun") != 0 && strcmp(s->launcher, "mpirun") != 0) {
		fprintf(stderr, "error: --launcher must be srun or mpirun, not '%s'\n", s->launcher);
		bad++;
	}
	if (s->scheduler && !slurm) {
		const char *slurm_only[] = {"--time", s->time, "--partition", s->partition, "--account", s->account,
					    "--launcher", s->launcher};
		for (int k = 0; k < 8; k += 2)
			if (slurm_only[k + 1]) {
				fprintf(stderr, "error: %s is for --scheduler slurm; mpirun has no %s (drop it)\n",
					slurm_only[k], slurm_only[k] + 2);
				bad++;
			}
		if (s->nodes > 1 && !s->hostfile) {
			fprintf(stderr, "error: --nodes %ld with --scheduler mpirun needs --hostfile naming the nodes\n",
				s->nodes);
			bad++;
		}
	}
	if (s->time && !(isdigit((unsigned char)s->time[0]) && plain(s->time, ":-"))) {
		fprintf(stderr, "error: --time must be a Slurm time (MIN, HH:MM:SS or D-HH:MM:SS), not '%s'\n", s->time);
		bad++;
	}
	if (s->partition && !plain(s->partition, "_.,-")) {
		fprintf(stderr, "error: --partition '%s' has characters a partition name cannot have\n", s->partition);
		bad++;
	}
	if (s->account && !plain(s->account, "_.-")) {
		fprintf(stderr, "error: --account '%s' has characters an account name cannot have\n", s->account);
		bad++;
	}
	for (int k = 0; k < s->nmodules; k++)
		if (!plain(s->modules[k], "_.+/-")) {
			fprintf(stderr, "error: --module '%s' is not a module name (letters, digits, _ . + / -)\n",
				s->modules[k]);
			bad++;
		}
	if (s->redis && strchr(s->redis, '@')) {
		fprintf(stderr, "error: --redis must not carry a password (it would be in the script); set "
				"MKE_REDIS_PASSWORD or the config's pipeline.redis_password\n");
		bad++;
	}
	const char *paths[] = {"CONFIG", s->config, "--hostfile", s->hostfile, "--run-dir", s->run_dir,
			       "--db", s->db, "-o", s->out, "--redis", s->redis};
	for (int k = 0; k < 12; k += 2)
		if (paths[k + 1] && !printable(paths[k + 1])) {
			fprintf(stderr, "error: %s has a control character (a newline?); rename it\n", paths[k]);
			bad++;
		}
	if (s->hostfile && access(s->hostfile, R_OK) != 0) {
		fprintf(stderr, "error: --hostfile '%s': %s\n", s->hostfile, strerror(errno));
		bad++;
	}
	return bad;
}

/* Replace every @NAME@ of tmpl from the table; an unknown @NAME@ is an error. */
static char *fill(const char *tmpl, const char *const *vars, int nvars, const char *tmpl_path)
{
	struct buf b = {0};
	const char *p = tmpl;
	while (*p) {
		const char *at = strchr(p, '@');
		if (!at) {
			buf_puts(&b, p);
			break;
		}
		buf_add(&b, p, (size_t)(at - p));
		const char *end = strchr(at + 1, '@');
		int k = 0;
		if (end)
			for (; k < nvars; k += 2)
				if (strlen(vars[k]) == (size_t)(end - at - 1) && memcmp(vars[k], at + 1, (size_t)(end - at - 1)) == 0)
					break;
		if (!end || k >= nvars) {
			int len = end ? (int)(end - at + 1) : 1;
			mke_error("template '%s': unknown placeholder '%.*s'; fix the template", tmpl_path, len, at);
			free(b.s);
			return NULL;
		}
		buf_puts(&b, vars[k + 1]);
		p = end + 1;
	}
	return b.s ? b.s : xstrdup("");
}

static char *find_template(char **path_out)
{
	const char *env = getenv("MKE_SBATCH_TEMPLATE");
	char *self = self_path();
	char *dir = path_dirname(self);
	/* bin/mke in the tree, build-san/bin/mke (sanitized), PREFIX/bin/mke */
	char *cands[4] = {env && *env ? xstrdup(env) : NULL,
			  xasprintf("%s/../deploy/slurm/mke.sbatch.in", dir),
			  xasprintf("%s/../../deploy/slurm/mke.sbatch.in", dir),
			  xasprintf("%s/../share/mke/mke.sbatch.in", dir)};
	char *text = NULL;
	for (int k = 0; k < 4 && !text; k++) {
		size_t len;
		if (cands[k] && access(cands[k], R_OK) == 0 && (text = read_file(cands[k], &len)))
			*path_out = xstrdup(cands[k]);
	}
	if (!text)
		mke_error("cannot find the sbatch template mke.sbatch.in next to '%s'; set MKE_SBATCH_TEMPLATE "
			  "to deploy/slurm/mke.sbatch.in", self);
	for (int k = 0; k < 4; k++)
		free(cands[k]);
	free(self);
	free(dir);
	return text;
}

/* `sbatch --parsable SCRIPT`; the job id (before any ";cluster") into id. */
static int run_sbatch(const char *script, char *id, size_t n)
{
	const char *sbatch = getenv("MKE_SBATCH");
	if (!sbatch || !*sbatch)
		sbatch = "sbatch";
	int fds[2];
	if (pipe(fds) != 0)
		return mke_error("cannot make a pipe for sbatch: %s", strerror(errno));
	pid_t pid = fork();
	if (pid < 0) {
		close(fds[0]);
		close(fds[1]);
		return mke_error("cannot fork sbatch: %s", strerror(errno));
	}
	if (pid == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		close(fds[1]);
		const char *argv[] = {sbatch, "--parsable", script, NULL};
		execvp(argv[0], (char *const *)argv);
		fprintf(stderr, "error: cannot run '%s': %s; is Slurm installed here? (--dry-run writes the "
				"script only)\n", sbatch, strerror(errno));
		_exit(127);
	}
	close(fds[1]);
	size_t got = 0;
	ssize_t r;
	while (got + 1 < n && (r = read(fds[0], id + got, n - 1 - got)) > 0)
		got += (size_t)r;
	id[got] = '\0';
	char sink[256];
	while (read(fds[0], sink, sizeof sink) > 0)
		;
	close(fds[0]);
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return mke_error("sbatch failed (%s %d) for '%s'; see its message above",
				 WIFEXITED(st) ? "exit status" : "signal",
				 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), script);
	id[strcspn(id, ";\r\n")] = '\0';
	if (!*id || !plain(id, "_"))
		return mke_error("sbatch printed no job id for '%s' (got '%s')", script, id);
	return 0;
}

/* Start `sh SCRIPT` in its own session, output to SCRIPT.log. */
static int run_background(const char *script, const char *log, pid_t *out)
{
	pid_t pid = fork();
	if (pid < 0)
		return mke_error("cannot fork: %s", strerror(errno));
	if (pid == 0) {
		setsid();
		int in = open("/dev/null", O_RDONLY);
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0640);
		if (in >= 0) {
			dup2(in, 0);
			close(in);
		}
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		signal(SIGHUP, SIG_IGN);
		const char *argv[] = {"/bin/sh", script, NULL};
		execv(argv[0], (char *const *)argv);
		fprintf(stderr, "error: cannot run /bin/sh: %s\n", strerror(errno));
		_exit(127);
	}
	*out = pid;
	return 0;
}

int cmd_submit(int argc, char **argv)
{
	struct submit s;
	if (parse(argc, argv, &s) != 0) {
		fprintf(stderr, "see 'mke submit --help'\n");
		return 2;
	}
	struct run_config c;
	memset(&c, 0, sizeof c);
	if (config_load(&c, s.config) != 0)
		return 2;
	if (!c.unlabeled || !c.test) {
		mke_error("config '%s': 'mke run' needs data.unlabeled and data.test", s.config);
		config_release(&c);
		return 2;
	}
	int slurm = strcmp(s.scheduler, "slurm") == 0;
	if (s.nodes > 1 && !s.redis && !c.pipeline.redis_url)
		mke_warn("with --nodes %ld the workers on other nodes cannot reach the run's private Redis "
			 "(a unix socket on the first node); give --redis redis://HOST:PORT or pipeline.redis_url",
			 s.nodes);
	char job_name[64] = "mke-";
	for (const char *p = c.name ? c.name : "run"; *p && strlen(job_name) < sizeof job_name - 1; p++) {
		size_t k = strlen(job_name);
		job_name[k] = (isalnum((unsigned char)*p) || strchr("_.-", *p)) ? *p : '_';
		job_name[k + 1] = '\0';
	}
	config_release(&c);

	/* where the script goes */
	char *dir;
	if (s.run_dir) {
		dir = absolute(s.run_dir);
	} else {
		const char *root = getenv("MKE_RUNS");
		char ts[32];
		time_t t = time(NULL);
		struct tm tm;
		gmtime_r(&t, &tm);
		strftime(ts, sizeof ts, "%Y%m%d-%H%M%S", &tm);
		char *d = xasprintf("%s/submit-%s-%ld", root && *root ? root : "runs", ts, (long)getpid());
		dir = absolute(d);
		free(d);
	}
	char *script = s.out ? absolute(s.out)
			     : xasprintf("%s/%s", dir, slurm ? "mke.sbatch" : "mke-run.sh");
	char *script_dir = path_dirname(script);
	int rc = 1;
	char *text = NULL, *tmpl = NULL, *tmpl_path = NULL, *self = self_path();
	if (mkdir_p(script_dir, 0750) != 0)
		goto out;

	char ranks[32], nodes[32], ntasks[32];
	snprintf(ranks, sizeof ranks, "%ld", s.nodes * s.ntasks);
	snprintf(nodes, sizeof nodes, "%ld", s.nodes);
	snprintf(ntasks, sizeof ntasks, "%ld", s.ntasks);
	struct buf mke = {0}, cfg = {0}, args = {0}, mods = {0}, extra = {0};
	buf_quoted(&mke, self);
	char *abs_cfg = absolute(s.config);
	buf_quoted(&cfg, abs_cfg);
	free(abs_cfg);
	buf_puts(&args, "");
	if (s.run_dir) {
		buf_puts(&args, " --run-dir");
		buf_quoted(&args, dir);
	}
	if (s.db) {
		char *d = absolute(s.db);
		buf_puts(&args, " --db");
		buf_quoted(&args, d);
		free(d);
	}
	if (s.redis) {
		buf_puts(&args, " --redis");
		buf_quoted(&args, s.redis);
	}
	if (s.hostfile) {
		char *h = absolute(s.hostfile);
		buf_puts(&args, " --hostfile");
		buf_quoted(&args, h);
		free(h);
	}
	buf_puts(&mods, "");
	for (int k = 0; k < s.nmodules; k++) {
		buf_puts(&mods, "module load");
		buf_quoted(&mods, s.modules[k]);
		buf_puts(&mods, "\n");
	}
	buf_puts(&extra, "");
	if (s.time) {
		buf_puts(&extra, "#SBATCH --time=");
		buf_puts(&extra, s.time);
		buf_puts(&extra, "\n");
	}
	if (s.partition) {
		buf_puts(&extra, "#SBATCH --partition=");
		buf_puts(&extra, s.partition);
		buf_puts(&extra, "\n");
	}
	if (s.account) {
		buf_puts(&extra, "#SBATCH --account=");
		buf_puts(&extra, s.account);
		buf_puts(&extra, "\n");
	}
	if (!strpbrk(script_dir, " \t%")) {
		/* sbatch reads the line as is: only a path without blanks or % */
		buf_puts(&extra, "#SBATCH --output=");
		buf_puts(&extra, script_dir);
		buf_puts(&extra, "/slurm-%j.out\n");
	}
	if (slurm) {
		if (!(tmpl = find_template(&tmpl_path)))
			goto out_bufs;
		const char *vars[] = {"JOB_NAME", job_name, "NODES", nodes, "NTASKS_PER_NODE", ntasks,
				      "SBATCH_EXTRA", extra.s, "MODULES", mods.s, "MKE", mke.s + 1, "CONFIG", cfg.s + 1,
				      "RANKS", ranks, "RUN_ARGS", args.s,
				      "LAUNCHER", s.launcher ? s.launcher : "srun"};
		if (!(text = fill(tmpl, vars, (int)(sizeof vars / sizeof vars[0]), tmpl_path)))
			goto out_bufs;
	} else {
		text = xasprintf("#!/bin/sh\n"
				 "# mke-run.sh - written by `mke submit --scheduler mpirun`: the coordinator\n"
				 "# runs here and starts %s worker ranks with mpirun (plus MKE_MPIRUN_ARGS,\n"
				 "# split at blanks; --hostfile is passed on).\n"
				 "%s"
				 "set -eu\n"
				 "exec%s run%s --ranks %s --launcher mpirun%s\n",
				 ranks, mods.s, mke.s, cfg.s, ranks, args.s);
	}
	if (write_file_atomic(script, text, strlen(text), 0750) != 0)
		goto out_bufs;
	if (s.dry_run) {
		fputs(text, stdout);
		fprintf(stderr, "script %s (not submitted: --dry-run)\n", script);
		rc = 0;
	} else if (slurm) {
		char id[128];
		if (run_sbatch(script, id, sizeof id) == 0) {
			printf("job %s\n  script %s\n", id, script);
			rc = 0;
		}
	} else {
		char *log = xasprintf("%s.log", script);
		pid_t pid = 0;
		if (run_background(script, log, &pid) == 0) {
			printf("pid %ld\n  script %s\n  log %s\n", (long)pid, script, log);
			rc = 0;
		}
		free(log);
	}
out_bufs:
	free(mke.s);
	free(cfg.s);
	free(args.s);
	free(mods.s);
	free(extra.s);
out:
	free(text);
	free(tmpl);
	free(tmpl_path);
	free(self);
	free(dir);
	free(script);
	free(script_dir);
	return rc;
}
