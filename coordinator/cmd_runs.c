/*
 * cmd_runs.c - `mke runs`: every run this machine can see, newest first; and
 * the one place that knows where a run's database is (run_open), which
 * status, export and cancel share.
 *
 * The coordinator puts a run's database at --db FILE, else $MKE_DB, else
 * $MKE_RUNS/RUN/mke.db ($MKE_RUNS defaults to ./runs). A reader therefore
 * looks in the same places: --db alone when given; otherwise $MKE_DB (a
 * database several runs share) and every run directory under $MKE_RUNS.
 * Databases are opened read-only: the coordinator is the only writer and may
 * be writing right now (WAL mode lets readers in).
 */
#include <cJSON.h>
#include <ctype.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cmd.h"
#include "store.h"
#include "util.h"

static const char *runs_root(void)
{
	const char *root = getenv("MKE_RUNS");
	return root && *root ? root : "runs";
}

static const char *env_db(void)
{
	const char *db = getenv("MKE_DB");
	return db && *db ? db : NULL;
}

void fmt_time(char *buf, size_t n, long long ms)
{
	if (ms <= 0) {
		snprintf(buf, n, "-");
		return;
	}
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	localtime_r(&t, &tm);
	strftime(buf, n, "%Y-%m-%d %H:%M:%S", &tm);
}


/* ---- the scan ------------------------------------------------------------- */

static int add_run(void *arg, const struct store_run *r)
{
	struct run_list *l = arg;
	struct run_entry *e;
	l->v = xrealloc(l->v, sizeof *l->v * (size_t)(l->n + 1));
	e = &l->v[l->n++];
	memset(e, 0, sizeof *e);
	e->id = xstrdup(r->id);
	e->name = xstrdup(r->name ? r->name : r->id);
	e->error = r->error ? xstrdup(r->error) : NULL;
	e->status = (int)r->status;
	e->phase = (int)r->phase;
	e->created_ms = r->created_ms;
	e->started_ms = r->started_ms;
	e->ended_ms = r->ended_ms;
	return 0;
}

/* Append the runs of one database; a database that cannot be read is
 * reported (by store_open) and skipped. */
static void scan_db(struct run_list *l, const char *path)
{
	struct store *db = store_open(path, STORE_READONLY);
	if (!db)
		return;
	int first = l->n;
	store_runs_each(db, add_run, l);
	for (int i = first; i < l->n; i++)
		l->v[i].db_path = xstrdup(path);
	store_close(db);
}

static int newest_first(const void *a, const void *b)
{
	const struct run_entry *x = a, *y = b;
	if (x->created_ms != y->created_ms)
		return x->created_ms > y->created_ms ? -1 : 1;
	return -strcmp(x->id, y->id);
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int run_list_scan(const char *db_opt, struct run_list *l)
{
	memset(l, 0, sizeof *l);
	if (db_opt) {
		if (access(db_opt, F_OK) != 0)
			return mke_error("no database '%s'", db_opt);
		scan_db(l, db_opt);
		return 0;
	}
	struct stat shared = {0};
	const char *edb = env_db();
	if (edb && stat(edb, &shared) == 0)
		scan_db(l, edb);
	const char *root = runs_root();
	DIR *d = opendir(root);
	if (d) {
		char **names = NULL;
		int nn = 0;
		struct dirent *de;
		while ((de = readdir(d))) {
			if (de->d_name[0] == '.')
				continue;
			names = xrealloc(names, sizeof *names * (size_t)(nn + 1));
			names[nn++] = xstrdup(de->d_name);
		}
		closedir(d);
		qsort(names, (size_t)nn, sizeof *names, by_name);
		for (int i = 0; i < nn; i++) {
			char *path = xasprintf("%s/%s/mke.db", root, names[i]);
			struct stat st;
			/* the shared database may also sit in a run directory */
			if (stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
			    !(edb && st.st_dev == shared.st_dev && st.st_ino == shared.st_ino))
				scan_db(l, path);
			free(path);
			free(names[i]);
		}
		free(names);
	}
	if (l->n > 1)
		qsort(l->v, (size_t)l->n, sizeof *l->v, newest_first);
	return 0;
}

void run_list_release(struct run_list *l)
{
	for (int i = 0; i < l->n; i++) {
		free(l->v[i].id);
		free(l->v[i].name);
		free(l->v[i].db_path);
		free(l->v[i].error);
	}
	free(l->v);
	memset(l, 0, sizeof *l);
}

/* ---- finding one run ----------------------------------------------------------- */

static int valid_run_id(const char *s)
{
	if (!*s || strlen(s) > 64)
		return 0;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '.' && *s != '_' && *s != '-')
			return 0;
	return 1;
}

/* 1 and db, r set when path holds run; 0 when it does not; -1 on error. */
static int try_db(const char *path, const char *run, struct store **db, struct store_run *r)
{
	if (access(path, F_OK) != 0)
		return 0;
	struct store *s = store_open(path, STORE_READONLY);
	if (!s)
		return -1;
	int got = store_run_get(s, run, r);
	if (got != 1) {
		store_close(s);
		return got;
	}
	*db = s;
	return 1;
}

int run_open(const char *run, const char *db_opt, struct store **db, char **db_path,
	     struct store_run *r)
{
	*db = NULL;
	*db_path = NULL;
	memset(r, 0, sizeof *r);
	if (run && !valid_run_id(run))
		return mke_error("'%s' is not a run id (letters, digits, '.', '_', '-'); see 'mke runs'",
				 run);
	/* the places a run's database can be, in the coordinator's order */
	const char *cand[2];
	char *in_root = NULL;
	int nc = 0;
	if (db_opt) {
		cand[nc++] = db_opt;
	} else {
		if (env_db())
			cand[nc++] = env_db();
		if (run)
			cand[nc++] = in_root = xasprintf("%s/%s/mke.db", runs_root(), run);
	}
	int rc = -1;
	for (int i = 0; run && i < nc; i++) {
		int got = try_db(cand[i], run, db, r);
		if (got < 0)
			goto out;
		if (got == 1) {
			*db_path = xstrdup(cand[i]);
			rc = 0;
			goto out;
		}
	}
	/* the newest run, or a unique prefix of an id */
	struct run_list l;
	if (run_list_scan(db_opt, &l) != 0) {
		run_list_release(&l);
		goto out;
	}
	int match = -1, nmatch = 0;
	size_t plen = run ? strlen(run) : 0;
	for (int i = 0; i < l.n; i++) {
		if (run && strncmp(l.v[i].id, run, plen) != 0)
			continue;
		if (match < 0)
			match = i;
		nmatch++;
		if (!run)
			break;
	}
	if (nmatch > 1) {
		fprintf(stderr, "error: run '%s' is ambiguous; it could be:\n", run);
		for (int i = 0, k = 0; i < l.n && k < 10; i++)
			if (strncmp(l.v[i].id, run, plen) == 0 && ++k)
				fprintf(stderr, "  %s\n", l.v[i].id);
	} else if (match < 0 && !run) {
		if (db_opt)
			mke_error("no runs in '%s'; start one with 'mke run CONFIG'", db_opt);
		else
			mke_error("no runs in '%s'%s%s%s; start one with 'mke run CONFIG'", runs_root(),
				  env_db() ? " or '" : "", env_db() ? env_db() : "", env_db() ? "'" : "");
	} else if (match < 0) {
		if (nc == 2)
			mke_error("no run '%s' in '%s' or '%s'; see 'mke runs'", run, cand[0], cand[1]);
		else
			mke_error("no run '%s' in '%s'; see 'mke runs'", run, cand[0]);
	} else {
		int got = try_db(l.v[match].db_path, l.v[match].id, db, r);
		if (got == 1) {
			*db_path = xstrdup(l.v[match].db_path);
			rc = 0;
		} else if (got == 0) {
			mke_error("run '%s' vanished from '%s'", l.v[match].id, l.v[match].db_path);
		}
	}
	run_list_release(&l);
out:
	free(in_root);
	return rc;
}

/* ---- mke runs ------------------------------------------------------------------ */

static double run_seconds(const struct run_entry *e)
{
	if (e->started_ms <= 0)
		return -1;
	long long end = e->ended_ms > 0 ? e->ended_ms : (long long)(wall_seconds() * 1000.0);
	if (e->status != RUN_RUNNING && e->ended_ms <= 0)
		return -1;
	return (double)(end - e->started_ms) / 1000.0;
}

static void iso_utc(char *buf, size_t n, long long ms)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void add_ms(cJSON *o, const char *key, long long ms)
{
	if (ms > 0)
		cJSON_AddNumberToObject(o, key, (double)ms);
	else
		cJSON_AddNullToObject(o, key);
}

/* The result of a done run, loaded from its database (kept open across runs
 * that share it). */
struct result_cache {
	struct store *db;
	char *path;
};

static int load_result(struct result_cache *c, const struct run_entry *e, struct run_result *res)
{
	if (!c->path || strcmp(c->path, e->db_path) != 0) {
		store_close(c->db);
		free(c->path);
		c->db = store_open(e->db_path, STORE_READONLY);
		c->path = xstrdup(e->db_path);
	}
	if (!c->db)
		return -1;
	return run_result_load(c->db, e->id, res);
}

int cmd_runs(int argc, char **argv)
{
	const char *db_opt = NULL;
	int json = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--db") == 0 && i + 1 < argc) {
			db_opt = argv[++i];
		} else if (strcmp(argv[i], "--json") == 0) {
			json = 1;
		} else {
			fprintf(stderr, "error: %s '%s'\n",
				argv[i][0] == '-' ? "unknown or incomplete option" : "unexpected argument", argv[i]);
			cmd_usage("runs", 1);
			return 2;
		}
	}
	struct run_list l;
	if (run_list_scan(db_opt, &l) != 0) {
		run_list_release(&l);
		return 1;
	}
	struct result_cache cache = {0};
	cJSON *arr = json ? cJSON_CreateArray() : NULL;
	if (!json && l.n == 0)
		fprintf(stderr, "no runs in '%s'%s%s%s; start one with 'mke run CONFIG'\n",
			db_opt ? db_opt : runs_root(), !db_opt && env_db() ? " or '" : "",
			!db_opt && env_db() ? env_db() : "", !db_opt && env_db() ? "'" : "");
	int w = 3, wn = 4;
	for (int i = 0; i < l.n; i++) {
		if ((int)strlen(l.v[i].id) > w)
			w = (int)strlen(l.v[i].id);
		if ((int)strlen(l.v[i].name) > wn)
			wn = (int)strlen(l.v[i].name);
	}
	if (wn > 24)
		wn = 24;
	if (!json && l.n > 0)
		printf("%-*s  %-*s  %-9s  %-7s  %-19s  %8s  %s\n", w, "RUN", wn, "NAME", "STATUS", "PHASE",
		       "CREATED", "DURATION", "RESULT");
	for (int i = 0; i < l.n; i++) {
		const struct run_entry *e = &l.v[i];
		struct run_result res;
		int have = e->status == RUN_DONE && load_result(&cache, e, &res) == 0;
		const struct kind_result *best = have ? run_result_best(&res) : NULL;
		double t = have ? res.teacher.acc_mean : NAN;
		double secs = run_seconds(e);
		if (json) {
			char iso[32];
			cJSON *o = cJSON_CreateObject();
			cJSON_AddStringToObject(o, "id", e->id);
			cJSON_AddStringToObject(o, "name", e->name);
			cJSON_AddStringToObject(o, "status", run_status_name((enum run_status)e->status));
			cJSON_AddStringToObject(o, "phase", run_phase_name((enum run_phase)e->phase));
			iso_utc(iso, sizeof iso, e->created_ms);
			cJSON_AddStringToObject(o, "created", iso);
			add_ms(o, "created_ms", e->created_ms);
			add_ms(o, "started_ms", e->started_ms);
			add_ms(o, "ended_ms", e->ended_ms);
			if (secs >= 0)
				cJSON_AddNumberToObject(o, "duration_s", secs);
			else
				cJSON_AddNullToObject(o, "duration_s");
			cJSON_AddStringToObject(o, "db", e->db_path);
			if (e->error)
				cJSON_AddStringToObject(o, "error", e->error);
			else
				cJSON_AddNullToObject(o, "error");
			if (!isnan(t))
				cJSON_AddNumberToObject(o, "teacher_accuracy", t);
			else
				cJSON_AddNullToObject(o, "teacher_accuracy");
			if (best) {
				cJSON *b = cJSON_AddObjectToObject(o, "best_student");
				cJSON_AddStringToObject(b, "kind", best->kind);
				cJSON_AddNumberToObject(b, "accuracy", best->acc_mean);
				cJSON_AddNumberToObject(b, "seeds", best->n_acc);
				if (!isnan(t))
					cJSON_AddNumberToObject(b, "gain_points", 100 * (best->acc_mean - t));
			} else {
				cJSON_AddNullToObject(o, "best_student");
			}
			cJSON_AddItemToArray(arr, o);
		} else {
			char created[32], dur[32], result[256] = "";
			fmt_time(created, sizeof created, e->created_ms);
			fmt_duration(dur, sizeof dur, secs);
			if (best && !isnan(t))
				snprintf(result, sizeof result, "%s %.2f%% vs teacher %.2f%% (%+.2f)", best->kind,
					 100 * best->acc_mean, 100 * t, 100 * (best->acc_mean - t));
			else if (best)
				snprintf(result, sizeof result, "%s %.2f%%", best->kind, 100 * best->acc_mean);
			else if (e->error)
				snprintf(result, sizeof result, "%.200s", e->error);
			printf("%-*s  %-*.*s  %-9s  %-7s  %-19s  %8s  %s\n", w, e->id, wn, wn, e->name,
			       run_status_name((enum run_status)e->status),
			       run_phase_name((enum run_phase)e->phase), created, dur, result);
		}
		if (have)
			run_result_release(&res);
	}
	if (json) {
		char *s = cJSON_Print(arr);
		puts(s);
		free(s);
		cJSON_Delete(arr);
	}
	store_close(cache.db);
	free(cache.path);
	run_list_release(&l);
	return 0;
}
