/*
 * coord.c - see coord.h.
 */
#include "coord.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "manifest.h"
#include "notify.h"
#include "shard.h"
#include "util.h"

#ifndef MKE_GIT_REV
#define MKE_GIT_REV "unknown"
#endif

#define POLL_BLOCK_MS 100
#define REAP_EVERY_S 0.5
/* A cancelled run waits this long for its workers to see the cancel in Redis
 * and stop; then (Redis down, a rank stuck) the job is stopped by signal. */
#define CANCEL_WAIT_S 15.0

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
	got_signal = sig;
}

static int64_t now_ms(void)
{
	return (int64_t)(wall_seconds() * 1000.0);
}

char *coord_default_db(const char *db_opt, const char *run_dir)
{
	if (db_opt)
		return xstrdup(db_opt);
	const char *env = getenv("MKE_DB");
	if (env && *env)
		return xstrdup(env);
	return xasprintf("%s/mke.db", run_dir);
}

static char *self_dir(void)
{
	char buf[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
	if (n <= 0)
		return xstrdup(".");
	buf[n] = '\0';
	return path_dirname(buf);
}

static char *make_run_id(const char *name)
{
	char clean[40];
	size_t k = 0;
	for (const char *p = name; *p && k < sizeof clean - 1; p++)
		clean[k++] = (isalnum((unsigned char)*p) || *p == '-' || *p == '_' || *p == '.') ? *p : '_';
	clean[k] = '\0';
	time_t t = time(NULL);
	struct tm tm;
	gmtime_r(&t, &tm);
	char ts[32];
	strftime(ts, sizeof ts, "%Y%m%d-%H%M%S", &tm);
	unsigned r = (unsigned)(getpid() ^ (unsigned)(wall_seconds() * 1e6)) & 0xffff;
	return xasprintf("%s-%s-%04x", clean, ts, r);
}

/* ---- the worker job ---------------------------------------------------------- */

/* Launch `mpirun -np N mke-worker ...` with an argv array (no shell). The
 * child dies with the coordinator (PR_SET_PDEATHSIG), so a killed coordinator
 * leaves no orphaned job behind; `mke resume` starts a fresh one. */
static int job_start(struct coord *co)
{
	char *dir = self_dir();
	const char *wenv = getenv("MKE_WORKER");
	char *worker = wenv && *wenv ? xstrdup(wenv) : xasprintf("%s/mke-worker", dir);
	free(dir);
	int srun = co->o.launcher && strcmp(co->o.launcher, "srun") == 0;
	const char *mpirun = getenv(srun ? "MKE_SRUN" : "MKE_MPIRUN");
	if (!mpirun || !*mpirun)
		mpirun = srun ? "srun" : "mpirun";
	char np[16];
	snprintf(np, sizeof np, "%d", co->o.ranks);
	const char *argv[40];
	int a = 0;
	argv[a++] = mpirun;
	if (srun) {
		/* srun exports the whole environment (MKE_REDIS_PASSWORD included)
		 * to the tasks of the allocation; PMIx wires up MPI_Init */
		argv[a++] = "--ntasks";
		argv[a++] = np;
		argv[a++] = "--mpi=pmix";
		argv[a++] = "--kill-on-bad-exit=1";
	} else {
		/* the ranks share the node's cores with the coordinator and Redis:
		 * a rank waiting in a collective yields its core instead of spinning
		 * (an explicit OMPI_MCA_mpi_yield_when_idle wins) */
		setenv("OMPI_MCA_mpi_yield_when_idle", "1", 0);
		argv[a++] = "-np";
		argv[a++] = np;
		argv[a++] = "--oversubscribe";
		argv[a++] = "--bind-to";
		argv[a++] = "none";
		if (co->o.hostfile) {
			argv[a++] = "--hostfile";
			argv[a++] = co->o.hostfile;
		}
		if (geteuid() == 0)
			argv[a++] = "--allow-run-as-root";
		if (co->password) {
			argv[a++] = "-x";
			argv[a++] = "MKE_REDIS_PASSWORD"; /* the name only: the value travels in the environment */
		}
	}
	/* MKE_MPIRUN_ARGS: extra launcher options, split at blanks (no shell, no quoting) */
	const char *extra_env = getenv("MKE_MPIRUN_ARGS");
	char *extra = xstrdup(extra_env ? extra_env : ""), *save = NULL;
	char *t = strtok_r(extra, " \t", &save);
	for (; t && a < 24; t = strtok_r(NULL, " \t", &save))
		argv[a++] = t;
	if (t)
		mke_warn("MKE_MPIRUN_ARGS has too many words; those from '%s' on are ignored", t);
	argv[a++] = worker;
	argv[a++] = "--run";
	argv[a++] = co->run_id;
	argv[a++] = "--run-dir";
	argv[a++] = co->run_dir;
	argv[a++] = "--config";
	argv[a++] = co->config_copy;
	argv[a++] = "--redis";
	argv[a++] = co->redis_url;
	if (co->o.setting) {
		argv[a++] = "--setting";
		argv[a++] = co->o.setting;
	}
	argv[a] = NULL;
	char *log = xasprintf("%s/worker.log", co->run_dir);
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		free(worker);
		free(log);
		free(extra);
		return mke_error("cannot fork the worker job: %s", strerror(errno));
	}
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(127);
		if (co->password)
			setenv("MKE_REDIS_PASSWORD", co->password, 1);
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0640);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		setpgid(0, 0);
		execvp(argv[0], (char *const *)argv);
		fprintf(stderr, "error: cannot run '%s': %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	co->job = pid;
	progress_clear(&co->prog);
	mke_info("run %s: worker job started (%s -np %d, pid %ld, log %s)", co->run_id, mpirun, co->o.ranks,
		 (long)pid, log);
	cJSON *ev = cJSON_CreateObject();
	cJSON_AddNumberToObject(ev, "pid", (double)pid);
	cJSON_AddNumberToObject(ev, "ranks", co->o.ranks);
	cJSON_AddStringToObject(ev, "launcher", srun ? "srun" : "mpirun");
	cJSON_AddNumberToObject(ev, "restarts", co->restarts);
	cJSON_AddStringToObject(ev, "log", log);
	progress_event(&co->prog, "job", ev);
	char *payload = xasprintf("{\"pid\":%ld,\"ranks\":%d,\"restarts\":%d}", (long)pid, co->o.ranks,
				  co->restarts);
	store_event_add(co->db, co->run_id, now_ms(), "job_start", -1, payload, NULL);
	free(payload);
	free(worker);
	free(log);
	free(extra);
	return 0;
}

/* Stop the job's process group: SIGTERM, then SIGKILL after a grace period. */
static void job_stop(struct coord *co)
{
	if (co->job <= 0)
		return;
	kill(-co->job, SIGTERM);
	kill(co->job, SIGTERM);
	for (int i = 0; i < 100; i++) {
		int st;
		if (waitpid(co->job, &st, WNOHANG) == co->job) {
			co->job = 0;
			return;
		}
		usleep(50000);
	}
	kill(-co->job, SIGKILL);
	kill(co->job, SIGKILL);
	waitpid(co->job, NULL, 0);
	co->job = 0;
}

/* Remove temp files a killed rank left in the labels directory (the job is
 * not running when this is called, so no write is in flight). */
static void sweep_temp_files(struct coord *co)
{
	char *dir = xasprintf("%s/labels", co->run_dir);
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;
	while (d && (e = readdir(d))) {
		if (!strstr(e->d_name, ".tmp."))
			continue;
		char *p = xasprintf("%s/%s", dir, e->d_name);
		if (unlink(p) == 0)
			n++;
		free(p);
	}
	if (d)
		closedir(d);
	if (n)
		mke_info("run %s: removed %d partial file(s) left by a killed rank", co->run_id, n);
	free(dir);
}

/* ---- events -------------------------------------------------------------------- */

static void record_shard(struct coord *co, const struct queue_msg *m)
{
	struct store_shard_change ch = {
		.shard_id = m->shard,
		.state = m->to,
		.attempts = m->attempt,
		.worker = m->worker,
		.sha256 = m->sha256,
		.path = m->path,
		.error = m->error,
		.ts_ms = m->ts_ms,
	};
	if (m->to == SHARD_DONE) {
		/* an ack is recorded only when the file is there with that digest */
		if (!m->path || !m->sha256 || queue_verify_file(m->path, m->sha256) != 0) {
			queue_reject(&co->q, m->shard, "pseudo-label file missing or digest mismatch");
			return;
		}
		store_artifact_add(co->db, co->run_id, m->path, "pseudo_labels", m->sha256, -1);
		/* late acks of the label phase must not count as models */
		if (co->phase == PHASE_LABEL && co->prog.total > 0 && co->prog.done < co->prog.total) {
			co->prog.done++;
			co->prog.dirty = 1;
		}
	}
	store_shard_update(co->db, co->run_id, &ch);
}

/* The student phase trains nvariants x nseeds models, one after the other. */
static void progress_models(struct coord *co)
{
	co->prog.done = 0;
	co->prog.total = (long)co->c.nvariants * co->c.nseeds;
}

/* A train_loss metric of variant ("teacher", "mm_student/81") at an
 * optimizer step: which model trains and at which epoch. The worker sends
 * one at epoch 1 and then every max(epochs / 200, 1) epochs, at step epoch x
 * steps-per-epoch; a fresh model's first metric gives steps-per-epoch, a
 * resumed one's first two (their gap is that many epochs). */
static void progress_epoch(struct coord *co, const char *variant, int64_t step)
{
	struct progress *p = &co->prog;
	long epochs = 0;
	if (strcmp(variant, "teacher") == 0) {
		epochs = co->c.teacher_train.epochs;
	} else {
		size_t klen = strcspn(variant, "/");
		for (int v = 0; v < co->c.nvariants; v++) {
			const char *name = variant_name(co->c.variants[v].kind);
			if (name && strlen(name) == klen && strncmp(name, variant, klen) == 0)
				epochs = co->c.variants[v].train.epochs;
		}
	}
	if (strcmp(p->item, variant) != 0) {
		snprintf(p->item, sizeof p->item, "%s", variant);
		co->first_step = (long)step;
		co->spe = co->resumed ? 0 : (long)step;
	} else if (co->spe == 0 && step > co->first_step) {
		long every = epochs / 200 > 0 ? epochs / 200 : 1;
		co->spe = (long)(step - co->first_step) / every;
	}
	p->epochs = epochs > 0 ? epochs : -1;
	p->epoch = co->spe > 0 && epochs > 0 ? (long)step / co->spe : -1;
	if (p->epoch > epochs)
		p->epoch = epochs;
	p->dirty = 1;
}

static void begin_phase(struct coord *co, enum run_phase ph)
{
	if (co->phase >= ph)
		return;
	if (co->phase >= PHASE_TEACHER && co->phase < PHASE_DONE)
		store_phase_end(co->db, co->run_id, co->phase, PHASE_OK, NULL);
	co->phase = ph;
	if (ph < PHASE_DONE)
		store_phase_begin(co->db, co->run_id, ph);
	else
		store_run_set_phase(co->db, co->run_id, PHASE_DONE);
	progress_phase(&co->prog, run_phase_name(ph));
	if (ph == PHASE_STUDENT)
		progress_models(co);
}

static int on_event(void *arg, const char *id, const char *json, size_t len)
{
	struct coord *co = arg;
	struct queue_msg m;
	char err[256] = "";
	if (queue_msg_parse(&m, json, len, err, sizeof err) != 0) {
		mke_warn("run %s: ignoring a malformed event %s: %s", co->run_id, id, err);
		store_event_add(co->db, co->run_id, now_ms(), "bad_event", -1, err, id);
		return 0;
	}
	const char *kind = "event";
	switch (m.type) {
	case QMSG_METRIC: {
		struct store_metric sm = {.variant = m.variant, .key = m.key, .step = m.step,
					  .value = m.value, .ts_ms = m.ts_ms};
		store_metric_add(co->db, co->run_id, &sm, 1);
		if (m.variant && strcmp(m.key, "train_loss") == 0)
			progress_epoch(co, m.variant, m.step);
		kind = NULL;
		break;
	}
	case QMSG_PROGRESS:
		kind = "progress";
		if (strcmp(m.phase, "student") == 0 && m.total > 0) {
			co->prog.done = (long)m.done;
			co->prog.total = (long)m.total;
			co->prog.epoch = -1;
			co->prog.dirty = 1;
		}
		if (strcmp(m.phase, "teacher") == 0 && m.done == m.total)
			co->teacher_ready = 1;
		else if (strcmp(m.phase, "student") == 0 && m.done == m.total)
			co->student_done = 1;
		else if (strcmp(m.phase, "eval") == 0 && m.done == m.total)
			co->eval_done = 1;
		break;
	case QMSG_SHARD:
		record_shard(co, &m);
		kind = NULL;
		break;
	case QMSG_LOG:
		kind = "log";
		break;
	case QMSG_HELLO:
		kind = "hello";
		break;
	case QMSG_BYE:
		kind = "bye";
		break;
	}
	if (kind)
		store_event_add(co->db, co->run_id, m.ts_ms, kind, m.rank, json, id);
	queue_msg_release(&m);
	return 0;
}

/* Ingest what the stream holds, in transactions with the cursor. */
static int ingest(struct coord *co, int block_ms)
{
	for (int round = 0; round < 64; round++) {
		if (store_begin(co->db) != 0)
			return -1;
		int gap = 0;
		int n = queue_events_read(&co->q, co->cursor, round == 0 ? block_ms : 0, 500, on_event, co, &gap);
		if (n > 0)
			store_cursor_set(co->db, co->run_id, "events", co->cursor);
		if (store_commit(co->db) != 0)
			return -1;
		if (gap)
			mke_warn("run %s: events were trimmed before they were read; shard states are reconciled at the end",
				 co->run_id);
		if (n < 500)
			return n < 0 ? -1 : 0;
	}
	return 0;
}

/* ---- the shard phase --------------------------------------------------------- */

/* Cut the validated unlabeled set into shards, record them, push the
 * unfinished ones (a resumed run pushes only those) and seal the queue. */
static int do_shard(struct coord *co)
{
	begin_phase(co, PHASE_SHARD);
	/* every row is decoded once to count the good ones; nothing decoded is
	   kept (cache budget 0), so memory does not grow with the set */
	struct dataset u;
	if (dataset_open(&u, &co->c, co->c.unlabeled, co->c.nmod, 0) != 0)
		return -1;
	int rows = u.n, quarantined = u.nbad + u.nquarantined;
	dataset_release(&u);
	char *detail = NULL;
	if (shard_rows(co->db, &co->q, co->run_id, rows, quarantined, co->c.pipeline.shard_size,
		       &co->nshards, &detail) != 0)
		return -1;
	store_phase_end(co->db, co->run_id, PHASE_SHARD, PHASE_OK, detail);
	progress_clear(&co->prog);
	mke_info("run %s: %s", co->run_id, detail);
	free(detail);
	co->sharded = 1;
	co->phase = PHASE_LABEL; /* the shard phase is ended above, with its detail */
	store_phase_begin(co->db, co->run_id, PHASE_LABEL);
	progress_phase(&co->prog, "label");
	long counts[SHARD_NSTATES];
	if (store_shard_counts(co->db, co->run_id, counts) == 0) {
		co->prog.done = counts[SHARD_DONE];
		co->prog.total = co->nshards;
		co->prog.dirty = 1;
	}
	return 0;
}

/* Record the run's model files (teacher and students) with their digests. */
static void record_models(struct coord *co)
{
	char *dir = xasprintf("%s/students", co->run_dir);
	char *teacher = xasprintf("%s/teacher.safetensors", co->run_dir);
	DIR *d = opendir(dir);
	struct dirent *e;
	const char *kind = "teacher";
	char *path = xstrdup(teacher);
	for (;;) {
		size_t len;
		char *buf = read_file(path, &len);
		if (buf) {
			char sha[65];
			sha256_hex(buf, len, sha);
			store_artifact_add(co->db, co->run_id, path, kind, sha, (int64_t)len);
			free(buf);
		}
		free(path);
		path = NULL;
		kind = "student";
		while (d && (e = readdir(d))) {
			size_t n = strlen(e->d_name);
			if (n > 12 && strcmp(e->d_name + n - 12, ".safetensors") == 0) {
				path = xasprintf("%s/%s", dir, e->d_name);
				break;
			}
		}
		if (!path)
			break;
	}
	if (d)
		closedir(d);
	free(dir);
	free(teacher);
}

/* ---- the drive loop ------------------------------------------------------------ */

/* The job exited: returns 1 to go on (restarted), 0 when the run is over. */
static int job_exited(struct coord *co, int status)
{
	co->job = 0;
	co->job_status = status;
	progress_clear(&co->prog);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	if (co->cancelled)
		return 0;
	char what[64];
	if (WIFSIGNALED(status))
		snprintf(what, sizeof what, "killed by signal %d", WTERMSIG(status));
	else
		snprintf(what, sizeof what, "exit status %d", WEXITSTATUS(status));
	char *payload = xasprintf("{\"status\":\"%s\",\"restarts\":%d}", what, co->restarts);
	store_event_add(co->db, co->run_id, now_ms(), "job_exit", -1, payload, NULL);
	free(payload);
	if (co->restarts >= co->o.max_restarts) {
		mke_error("run %s: the worker job failed (%s) after %d restarts; see %s/worker.log", co->run_id,
			  what, co->restarts, co->run_dir);
		return 0;
	}
	co->restarts++;
	sweep_temp_files(co);
	mke_warn("run %s: the worker job died (%s); restarting it (%d of %d) from the last checkpoints",
		 co->run_id, what, co->restarts, co->o.max_restarts);
	/* leases of the dead ranks expire and are redelivered; nothing done is lost */
	return job_start(co) == 0 ? 1 : 0;
}

static void check_label_done(struct coord *co)
{
	if (co->phase != PHASE_LABEL)
		return;
	struct queue_counts qc;
	if (queue_counts(&co->q, &qc) != 0)
		return;
	if (qc.sealed && qc.ready == 0 && qc.leased == 0 && qc.delayed == 0) {
		char *detail = xasprintf("%ld done, %ld dead", qc.done, qc.dead);
		store_phase_end(co->db, co->run_id, PHASE_LABEL, qc.dead ? PHASE_FAILED : PHASE_OK, detail);
		free(detail);
		progress_tick(&co->prog, 1);
		co->phase = PHASE_STUDENT;
		store_phase_begin(co->db, co->run_id, PHASE_STUDENT);
		progress_phase(&co->prog, "student");
		progress_models(co);
	}
}

static int drive(struct coord *co)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	store_run_set_status(co->db, co->run_id, RUN_RUNNING, NULL);
	if (co->phase < PHASE_TEACHER) {
		begin_phase(co, PHASE_TEACHER);
	} else {
		store_phase_begin(co->db, co->run_id, co->phase);
		progress_phase(&co->prog, run_phase_name(co->phase));
	}
	if (job_start(co) != 0)
		return -1;
	int rc = 0;
	for (;;) {
		if (ingest(co, POLL_BLOCK_MS) != 0)
			usleep(100000);
		if (got_signal && !co->cancelled) {
			co->cancelled = 1;
			co->cancel_reason = xasprintf("coordinator received signal %d", (int)got_signal);
			co->cancel_t0 = now_seconds();
			queue_cancel(&co->q, co->cancel_reason);
		}
		if (!co->cancelled) {
			char *reason = NULL;
			if (queue_cancelled(&co->q, &reason) == 1) {
				co->cancelled = 1;
				co->cancel_reason = reason ? reason : xstrdup("cancelled");
				co->cancel_t0 = now_seconds();
				progress_clear(&co->prog);
				mke_info("run %s: cancelled (%s); waiting for the workers to stop", co->run_id,
					 co->cancel_reason);
			} else {
				free(reason);
			}
		}
		if (co->teacher_ready && !co->sharded && !co->cancelled) {
			if (co->phase < PHASE_TEACHER)
				begin_phase(co, PHASE_TEACHER);
			if (do_shard(co) != 0) {
				rc = -1;
				break;
			}
		}
		if (now_seconds() - co->last_reap > REAP_EVERY_S) {
			queue_reap(&co->q, NULL, NULL);
			co->last_reap = now_seconds();
		}
		check_label_done(co);
		if (co->student_done && co->phase == PHASE_STUDENT)
			begin_phase(co, PHASE_EVAL);
		progress_tick(&co->prog, 0);
		int st;
		if (co->job > 0 && waitpid(co->job, &st, WNOHANG) == co->job) {
			if (job_exited(co, st))
				continue;
			break;
		}
		if (co->cancelled && now_seconds() - co->cancel_t0 > CANCEL_WAIT_S) {
			progress_clear(&co->prog);
			mke_warn("run %s: the workers did not stop within %.0f s of the cancel; "
				 "stopping the job", co->run_id, CANCEL_WAIT_S);
			break;
		}
	}
	ingest(co, 0);
	progress_clear(&co->prog);
	if (co->cancelled) {
		job_stop(co);
		store_phase_end(co->db, co->run_id, co->phase, PHASE_CANCELLED, co->cancel_reason);
		store_run_set_status(co->db, co->run_id, RUN_CANCELLED, co->cancel_reason);
		mke_info("run %s: cancelled", co->run_id);
		return 3;
	}
	if (rc == 0 && co->eval_done && WIFEXITED(co->job_status) && WEXITSTATUS(co->job_status) == 0) {
		record_models(co);
		begin_phase(co, PHASE_DONE);
		store_run_set_status(co->db, co->run_id, RUN_DONE, NULL);
		mke_info("run %s: done", co->run_id);
		return 0;
	}
	job_stop(co);
	const char *why = rc != 0 ? "the coordinator failed" : "the worker job failed";
	store_phase_end(co->db, co->run_id, co->phase, PHASE_FAILED, why);
	store_run_set_status(co->db, co->run_id, RUN_FAILED, why);
	return -1;
}

/* ---- setup and teardown --------------------------------------------------------- */

static int connect_redis(struct coord *co)
{
	if (!co->o.redis_url && !co->c.pipeline.redis_url) {
		char *dir = xasprintf("%s/redis", co->run_dir);
		if (mkdir_p(dir, 0700) != 0) {
			free(dir);
			return -1;
		}
		/* a server left by a killed coordinator is stopped by its pid first */
		char *pidfile = xasprintf("%s/redis.pid", dir);
		FILE *f = fopen(pidfile, "r");
		if (f) {
			long pid = 0;
			if (fscanf(f, "%ld", &pid) == 1 && pid > 1)
				redis_server_kill_pid((pid_t)pid, 3000);
			fclose(f);
		}
		free(pidfile);
		struct redis_server_opts so = {.dir = dir, .password = co->password, .appendonly = 1};
		int rc = redis_server_start(&co->srv, &so);
		free(dir);
		if (rc != 0)
			return -1;
		co->own_redis = 1;
		co->redis_url = xasprintf("unix://%s", co->srv.socket_path);
	} else {
		co->redis_url = xstrdup(co->o.redis_url ? co->o.redis_url : co->c.pipeline.redis_url);
	}
	struct redis_conn_opts ro = {.password = co->password, .stop = &got_signal};
	if (redis_conn_open(&co->rc, co->redis_url, &ro) != 0)
		return -1;
	struct queue_opts qo;
	queue_opts_default(&qo);
	qo.lease_ms = co->c.pipeline.lease_ms;
	qo.max_attempts = co->c.pipeline.max_attempts;
	if (queue_init(&co->q, &co->rc, co->run_id, &qo) != 0)
		return -1;
	/* the URL (never the password) lets `mke cancel` and `mke status` find the queue */
	store_param_set(co->db, co->run_id, "redis_url", co->redis_url);
	return 0;
}

static void coord_release(struct coord *co)
{
	if (co->job > 0)
		job_stop(co);
	if (co->run_dir)
		sweep_temp_files(co);
	if (co->q.rc) {
		if (co->own_redis)
			queue_purge(&co->q);
		queue_release(&co->q);
	}
	if (co->rc.ctx)
		redis_conn_close(&co->rc);
	if (co->own_redis) {
		redis_server_stop(&co->srv, 5000);
		redis_server_release(&co->srv);
	}
	if (co->db)
		store_close(co->db);
	config_release(&co->c);
	free(co->run_id);
	free(co->run_dir);
	free(co->db_path);
	free(co->config_copy);
	free(co->redis_url);
	free(co->cancel_reason);
}

static void defaults(struct coord *co, const struct coord_opts *o)
{
	memset(co, 0, sizeof *co);
	co->o = *o;
	if (co->o.ranks <= 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		co->o.ranks = n > 0 ? (int)n : 1;
	}
	if (co->o.max_restarts == 0)
		co->o.max_restarts = 3;
	else if (co->o.max_restarts < 0)
		co->o.max_restarts = 0;
	strcpy(co->cursor, "0-0");
	co->phase = PHASE_CREATED;
	progress_init(&co->prog, o->output);
}

/* The run ended (or could not start): the summary on stdout (a JSON "end"
 * event with --json) and to the webhook. Only a run whose status is final
 * is announced; the webhook's outcome never changes the run's. */
static void finish(struct coord *co)
{
	progress_clear(&co->prog);
	cJSON *s = co->db && co->run_id ? run_summary(co->db, co->run_id) : NULL;
	if (!s)
		return;
	const cJSON *st = cJSON_GetObjectItemCaseSensitive(s, "status");
	int final = cJSON_IsString(st) && (strcmp(st->valuestring, "done") == 0 ||
					   strcmp(st->valuestring, "failed") == 0 ||
					   strcmp(st->valuestring, "cancelled") == 0);
	if (co->o.output == PROGRESS_JSON)
		progress_event(&co->prog, "end", cJSON_Duplicate(s, 1));
	else
		run_summary_print(s, co->o.output == PROGRESS_QUIET);
	if (final && co->o.notify_url) {
		cJSON_AddStringToObject(s, "event", "run_end");
		char *body = cJSON_PrintUnformatted(s);
		if (body && notify_post(co->o.notify_url, body) == 0)
			mke_info("run %s: webhook delivered", co->run_id);
		free(body);
	}
	cJSON_Delete(s);
}

static void record_params(struct coord *co)
{
	char buf[64];
	store_param_set(co->db, co->run_id, "ranks", (snprintf(buf, sizeof buf, "%d", co->o.ranks), buf));
	store_param_set(co->db, co->run_id, "setting", co->o.setting ? co->o.setting : co->c.grid[0].name);
	store_param_set(co->db, co->run_id, "shard_size",
			(snprintf(buf, sizeof buf, "%d", co->c.pipeline.shard_size), buf));
	store_param_set(co->db, co->run_id, "seeds", (snprintf(buf, sizeof buf, "%d", co->c.nseeds), buf));
	store_param_set(co->db, co->run_id, "loss", co->c.loss == LOSS_CE ? "ce" : "double_softmax");
}

int coord_run_new(const char *config_path, const struct coord_opts *o, char **run_id_out)
{
	struct coord co;
	defaults(&co, o);
	int rc = -1;
	size_t len;
	char *text = NULL;
	if (config_load(&co.c, config_path) != 0)
		goto out;
	if (!co.c.unlabeled || !co.c.test) {
		mke_error("config '%s': 'mke run' needs data.unlabeled and data.test", config_path);
		goto out;
	}
	if (co.o.setting) {
		int found = 0;
		for (int i = 0; i < co.c.ngrid; i++)
			found |= strcmp(co.c.grid[i].name, co.o.setting) == 0;
		if (!found) {
			mke_error("config '%s' has no grid setting named '%s'", config_path, co.o.setting);
			goto out;
		}
	}
	co.password = getenv("MKE_REDIS_PASSWORD");
	if (!co.password || !*co.password)
		co.password = co.c.pipeline.redis_password;
	co.run_id = make_run_id(co.c.name);
	const char *root = getenv("MKE_RUNS");
	co.run_dir = o->run_dir ? xstrdup(o->run_dir) : xasprintf("%s/%s", root && *root ? root : "runs", co.run_id);
	if (mkdir_p(co.run_dir, 0750) != 0)
		goto out;
	char real[PATH_MAX];
	if (realpath(co.run_dir, real)) {
		free(co.run_dir);
		co.run_dir = xstrdup(real);
	}
	/* the run keeps its own copy of the config, with paths made absolute by
	 * re-anchoring: the copy is the original file, resolved from its place */
	if (!(text = read_file(config_path, &len)))
		goto out;
	char *abs_cfg = realpath(config_path, NULL);
	co.config_copy = abs_cfg ? abs_cfg : xstrdup(config_path);
	co.db_path = coord_default_db(o->db_path, co.run_dir);
	if (!(co.db = store_open(co.db_path, 0)))
		goto out;
	char host[256] = "";
	gethostname(host, sizeof host - 1);
	struct store_run r = {.id = co.run_id, .name = co.c.name, .config = text,
			      .config_path = co.config_copy, .host = host, .git_rev = MKE_GIT_REV,
			      .run_dir = co.run_dir};
	if (store_run_create(co.db, &r) != 0)
		goto out;
	record_params(&co);
	/* under Slurm (mke submit) the job id lets `mke status` name the allocation */
	const char *slurm_job = getenv("SLURM_JOB_ID");
	if (slurm_job && *slurm_job)
		store_run_set_slurm_job(co.db, co.run_id, slurm_job);
	co.created = 1;
	co.prog.run_id = co.run_id;
	if (co.o.output == PROGRESS_TEXT) {
		printf("run %s\n  dir %s\n  db  %s\n", co.run_id, co.run_dir, co.db_path);
		fflush(stdout);
	} else {
		cJSON *ev = cJSON_CreateObject();
		cJSON_AddStringToObject(ev, "dir", co.run_dir);
		cJSON_AddStringToObject(ev, "db", co.db_path);
		cJSON_AddBoolToObject(ev, "resumed", 0);
		progress_event(&co.prog, "run", ev);
	}
	if (connect_redis(&co) != 0) {
		store_run_set_status(co.db, co.run_id, RUN_FAILED, "cannot reach Redis");
		goto out;
	}
	rc = drive(&co);
	if (run_id_out)
		*run_id_out = xstrdup(co.run_id);
out:
	if (co.created)
		finish(&co);
	free(text);
	coord_release(&co);
	return rc;
}

static int pick_param(void *arg, const char *key, const char *value)
{
	struct coord *co = arg;
	static char setting[256];
	if (strcmp(key, "setting") == 0 && !co->o.setting) {
		snprintf(setting, sizeof setting, "%s", value);
		co->o.setting = setting;
	}
	return 0;
}

int coord_resume(const char *run_id, const struct coord_opts *o)
{
	struct coord co;
	defaults(&co, o);
	int rc = -1;
	struct store_run r = {0};
	co.run_id = xstrdup(run_id);
	const char *root = getenv("MKE_RUNS");
	char *guess = o->run_dir ? xstrdup(o->run_dir) : xasprintf("%s/%s", root && *root ? root : "runs", run_id);
	co.db_path = coord_default_db(o->db_path, guess);
	free(guess);
	if (!(co.db = store_open(co.db_path, 0)))
		goto out;
	int got = store_run_get(co.db, run_id, &r);
	if (got <= 0) {
		if (got == 0)
			mke_error("no run '%s' in '%s'; see 'mke runs'", run_id, co.db_path);
		goto out;
	}
	if (r.status == RUN_DONE) {
		mke_info("run %s is already done", run_id);
		rc = 0;
		goto out;
	}
	co.run_dir = xstrdup(r.run_dir);
	co.config_copy = xstrdup(r.config_path);
	co.resumed = 1;
	co.prog.run_id = co.run_id;
	if (config_parse(&co.c, r.config, r.config_path) != 0)
		goto out;
	co.password = getenv("MKE_REDIS_PASSWORD");
	if (!co.password || !*co.password)
		co.password = co.c.pipeline.redis_password;
	/* pick up the setting and rank count the run was started with */
	store_params_each(co.db, run_id, pick_param, &co);
	co.phase = r.phase == PHASE_DONE ? PHASE_EVAL : r.phase;
	if (co.phase > PHASE_TEACHER)
		co.phase = PHASE_TEACHER; /* the job redoes the cheap steps; SQLite keeps what is done */
	store_cursor_get(co.db, run_id, "events", co.cursor, sizeof co.cursor);
	if (connect_redis(&co) != 0)
		goto out;
	/* a fresh private Redis has no stream: start reading from its beginning */
	if (co.own_redis)
		strcpy(co.cursor, "0-0");
	store_event_add(co.db, run_id, now_ms(), "resume", -1, NULL, NULL);
	mke_info("run %s: resuming from phase %s", run_id, run_phase_name(r.phase));
	co.created = 1;
	{
		cJSON *ev = cJSON_CreateObject();
		cJSON_AddStringToObject(ev, "dir", co.run_dir);
		cJSON_AddStringToObject(ev, "db", co.db_path);
		cJSON_AddBoolToObject(ev, "resumed", 1);
		cJSON_AddStringToObject(ev, "from_phase", run_phase_name(r.phase));
		progress_event(&co.prog, "run", ev);
	}
	rc = drive(&co);
out:
	if (co.created)
		finish(&co);
	store_run_release(&r);
	coord_release(&co);
	return rc;
}
