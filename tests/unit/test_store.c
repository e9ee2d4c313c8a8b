/*
 * test_store.c - the run database on a temporary file: migrations, WAL,
 * every table written and read back, idempotent reopen, read-only access
 * beside the writer, refusal of a newer schema, integrity_check.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store.h"
#include "test.h"
#include "util.h"

static char tmpdir[64];
static char dbpath[128];

/* One text value from a raw sqlite3 connection (as another process would see it). */
static char *raw_query(const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	char *out = NULL;
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
		sqlite3_stmt *st = NULL;
		if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
		    sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
			out = xstrdup((const char *)sqlite3_column_text(st, 0));
		sqlite3_finalize(st);
	}
	sqlite3_close(db);
	return out ? out : xstrdup("(none)");
}

static void test_open_and_migrate(void)
{
	struct store *s = store_open(dbpath, 0);
	CHECK(s != NULL);
	if (!s)
		return;
	CHECK(store_schema_latest() >= 1);
	CHECK(store_schema_version(s) == store_schema_latest());
	CHECK(store_integrity_check(s) == 0);
	store_close(s);
	char *jm = raw_query(dbpath, "PRAGMA journal_mode");
	CHECK_MSG(strcmp(jm, "wal") == 0, "journal_mode %s", jm);
	free(jm);
	char *uv = raw_query(dbpath, "PRAGMA user_version");
	char want[16];
	snprintf(want, sizeof(want), "%d", store_schema_latest());
	CHECK(strcmp(uv, want) == 0);
	free(uv);
	char *name = raw_query(dbpath, "SELECT name FROM schema_migrations WHERE version = 1");
	CHECK(strcmp(name, "001_init.sql") == 0);
	free(name);
	struct stat st;
	CHECK(stat(dbpath, &st) == 0 && (st.st_mode & 0777) == 0600);
}

static void test_reopen_is_idempotent(void)
{
	for (int i = 0; i < 3; i++) {
		struct store *s = store_open(dbpath, 0);
		CHECK(s && store_schema_version(s) == store_schema_latest());
		store_close(s);
	}
	char *n = raw_query(dbpath, "SELECT count(*) FROM schema_migrations");
	char want[16];
	snprintf(want, sizeof(want), "%d", store_schema_latest());
	CHECK(strcmp(n, want) == 0);
	free(n);
}

static int collect_runs(void *arg, const struct store_run *r)
{
	char *buf = arg;
	strcat(buf, r->id);
	strcat(buf, ",");
	return 0;
}

static void test_runs_and_phases(void)
{
	struct store *s = store_open(dbpath, 0);
	if (!s) {
		CHECK(s != NULL);
		return;
	}
	struct store_run r = {0};
	r.id = "run-a";
	r.name = "twomoon";
	r.config = "{\"name\":\"twomoon\"}";
	r.config_path = "/cfg/twomoon.json";
	r.host = "node1";
	r.git_rev = "abc123";
	r.run_dir = "/runs/run-a";
	CHECK(store_run_create(s, &r) == 0);
	capture_begin();
	int dup = store_run_create(s, &r);
	char *msg = capture_end();
	CHECK(dup == -1 && strstr(msg, "run 'run-a' already exists") != NULL);
	free(msg);
	/* values are data, never SQL */
	struct store_run evil = {0};
	evil.id = "x'); DROP TABLE runs; --";
	evil.config = "{}";
	CHECK(store_run_create(s, &evil) == 0);

	struct store_run got;
	CHECK(store_run_get(s, "run-a", &got) == 1);
	CHECK(strcmp(got.name, "twomoon") == 0 && strcmp(got.config_path, "/cfg/twomoon.json") == 0);
	CHECK(got.status == RUN_CREATED && got.phase == PHASE_CREATED && got.created_ms > 0);
	CHECK(got.started_ms == 0 && got.slurm_job_id == NULL);
	store_run_release(&got);
	CHECK(store_run_get(s, "nope", &got) == 0);

	CHECK(store_phase_begin(s, "run-a", PHASE_TEACHER) == 0);
	CHECK(store_phase_end(s, "run-a", PHASE_TEACHER, PHASE_OK, "acc 0.68") == 0);
	CHECK(store_phase_begin(s, "run-a", PHASE_LABEL) == 0);
	CHECK(store_phase_end(s, "run-a", PHASE_LABEL, PHASE_FAILED, "redis went away") == 0);
	CHECK(store_phase_begin(s, "run-a", PHASE_LABEL) == 0); /* resume */
	capture_begin();
	int bad1 = store_phase_end(s, "run-a", PHASE_EVAL, PHASE_OK, NULL);
	int bad2 = store_phase_begin(s, "run-a", PHASE_DONE);
	int bad3 = store_run_set_phase(s, "ghost", PHASE_LABEL);
	msg = capture_end();
	CHECK(bad1 == -1 && bad2 == -1 && bad3 == -1);
	CHECK(strstr(msg, "phase 'eval' of run 'run-a' was never begun") != NULL);
	CHECK(strstr(msg, "no run 'ghost'") != NULL);
	free(msg);
	CHECK(store_run_get(s, "run-a", &got) == 1);
	CHECK(got.status == RUN_RUNNING && got.phase == PHASE_LABEL && got.started_ms > 0);
	int64_t started = got.started_ms;
	store_run_release(&got);
	CHECK(store_run_set_slurm_job(s, "run-a", "12345") == 0);
	CHECK(store_run_set_status(s, "run-a", RUN_FAILED, "label: 3 shards dead") == 0);
	CHECK(store_run_get(s, "run-a", &got) == 1);
	CHECK(got.status == RUN_FAILED && got.ended_ms >= started);
	CHECK(got.error && strcmp(got.error, "label: 3 shards dead") == 0);
	CHECK(got.slurm_job_id && strcmp(got.slurm_job_id, "12345") == 0);
	store_run_release(&got);
	CHECK(store_run_set_status(s, "run-a", RUN_RUNNING, NULL) == 0); /* resume */
	CHECK(store_run_get(s, "run-a", &got) == 1);
	CHECK(got.started_ms == started && got.ended_ms == 0 && got.error == NULL);
	store_run_release(&got);

	store_close(s);

	s = store_open(dbpath, 0);
	CHECK(s != NULL);
	if (!s)
		return;
	char ids[256] = "";
	CHECK(store_runs_each(s, collect_runs, ids) == 0);
	CHECK(strstr(ids, "run-a,") != NULL && strstr(ids, "DROP TABLE") != NULL);
	store_close(s);
}

struct phases {
	int n;
	enum run_phase p[8];
	int attempts[8];
	enum phase_status st[8];
};

static int collect_phases(void *arg, const struct store_phase *p)
{
	struct phases *ph = arg;
	if (ph->n < 8) {
		ph->p[ph->n] = p->phase;
		ph->attempts[ph->n] = p->attempts;
		ph->st[ph->n] = p->status;
		ph->n++;
	}
	return 0;
}

static void test_phases_walk(void)
{
	struct store *s = store_open(dbpath, 0);
	if (!s) {
		CHECK(s != NULL);
		return;
	}
	struct phases ph = {0};
	CHECK(store_phases_each(s, "run-a", collect_phases, &ph) == 0);
	CHECK(ph.n == 2);
	CHECK(ph.p[0] == PHASE_TEACHER && ph.st[0] == PHASE_OK && ph.attempts[0] == 1);
	CHECK(ph.p[1] == PHASE_LABEL && ph.st[1] == PHASE_RUNNING && ph.attempts[1] == 2);
	CHECK(strcmp(run_phase_name(PHASE_STUDENT), "student") == 0);
	CHECK(run_status_from_name("cancelled") == RUN_CANCELLED);
	CHECK(phase_status_from_name("bogus") == -1);
	store_close(s);
}

static int collect_params(void *arg, const char *k, const char *v)
{
	char *buf = arg;
	strcat(buf, k);
	strcat(buf, "=");
	strcat(buf, v);
	strcat(buf, ";");
	return 0;
}

static void test_params(void)
{
	struct store *s = store_open(dbpath, 0);
	if (!s) {
		CHECK(s != NULL);
		return;
	}
	CHECK(store_param_set(s, "run-a", "teacher.epochs", "50") == 0);
	CHECK(store_param_set(s, "run-a", "ranks", "4") == 0);
	CHECK(store_param_set(s, "run-a", "ranks", "8") == 0);
	char buf[256] = "";
	CHECK(store_params_each(s, "run-a", collect_params, buf) == 0);
	CHECK(strcmp(buf, "ranks=8;teacher.epochs=50;") == 0);
	capture_begin();
	int rc = store_param_set(s, "no-such-run", "k", "v"); /* foreign key */
	char *msg = capture_end();
	CHECK(rc == -1 && strstr(msg, "FOREIGN KEY") != NULL && strstr(msg, "store.c:") != NULL);
	free(msg);
	store_close(s);
}

struct shardsum {
	int n;
	int64_t ids[32];
	enum shard_state st[32];
	char sha[65];
	char worker[64];
	int attempts;
};

static int collect_shards(void *arg, const struct store_shard *sh)
{
	struct shardsum *ss = arg;
	if (ss->n < 32) {
		ss->ids[ss->n] = sh->shard_id;
		ss->st[ss->n] = sh->state;
		ss->n++;
	}
	if (sh->sha256)
		snprintf(ss->sha, sizeof(ss->sha), "%s", sh->sha256);
	if (sh->worker)
		snprintf(ss->worker, sizeof(ss->worker), "%s", sh->worker);
	ss->attempts = sh->attempts;
	return 0;
}

static void test_shards(void)
{
	struct store *s = store_open(dbpath, 0);
	if (!s) {
		CHECK(s != NULL);
		return;
	}
	struct store_shard sh[10];
	memset(sh, 0, sizeof(sh));
	for (int i = 0; i < 10; i++) {
		sh[i].shard_id = i;
		sh[i].first_row = i * 64;
		sh[i].row_count = 64;
		sh[i].state = SHARD_NEW;
	}
	size_t added = 0;
	CHECK(store_shard_add(s, "run-a", sh, 10, &added) == 0 && added == 10);
	CHECK(store_shard_add(s, "run-a", sh, 10, &added) == 0 && added == 0);

	char sha[65];
	sha256_hex("labels", 6, sha);
	struct store_shard_change c = {0};
	c.shard_id = 3;
	c.attempts = -1;
	c.state = SHARD_READY;
	CHECK(store_shard_update(s, "run-a", &c) == 1);
	c.state = SHARD_LEASED;
	c.attempts = 1;
	c.worker = "n1:7:r2";
	CHECK(store_shard_update(s, "run-a", &c) == 1);
	c.state = SHARD_DONE;
	c.attempts = -1;
	c.worker = NULL;
	c.sha256 = sha;
	c.path = "/runs/run-a/labels/000003.npy";
	CHECK(store_shard_update(s, "run-a", &c) == 1);
	CHECK(store_shard_update(s, "run-a", &c) == 0); /* delivered twice, counted once */

	/* a transition the table forbids is ignored (with a warning) unless reconciling */
	struct store_shard_change j = {0};
	j.shard_id = 4;
	j.attempts = -1;
	j.state = SHARD_DONE;
	j.sha256 = sha;
	j.path = "/p";
	capture_begin();
	int rc = store_shard_update(s, "run-a", &j);
	int rc_unknown = store_shard_update(s, "run-a", &(struct store_shard_change){
		.shard_id = 77, .attempts = -1, .state = SHARD_READY});
	char *msg = capture_end();
	CHECK(rc == 0 && strstr(msg, "new -> done is not allowed") != NULL);
	CHECK(rc_unknown == 0 && strstr(msg, "no shard 77") != NULL);
	free(msg);
	j.reconcile = 1;
	j.attempts = 2;
	CHECK(store_shard_update(s, "run-a", &j) == 1);
	/* the coordinator rejects shard 4's file: done -> delayed clears the digest */
	struct store_shard_change rej = {0};
	rej.shard_id = 4;
	rej.attempts = -1;
	rej.state = SHARD_DELAYED;
	rej.error = "sha256 mismatch";
	CHECK(store_shard_update(s, "run-a", &rej) == 1);
	/* a bad digest is refused by the schema */
	struct store_shard_change bad = {0};
	bad.shard_id = 5;
	bad.attempts = -1;
	bad.state = SHARD_DONE;
	bad.sha256 = "short";
	bad.reconcile = 1;
	capture_begin();
	rc = store_shard_update(s, "run-a", &bad);
	msg = capture_end();
	CHECK(rc == -1 && strstr(msg, "CHECK constraint") != NULL);
	free(msg);

	long counts[SHARD_NSTATES];
	CHECK(store_shard_counts(s, "run-a", counts) == 0);
	CHECK(counts[SHARD_NEW] == 8 && counts[SHARD_DONE] == 1 && counts[SHARD_DELAYED] == 1);
	struct shardsum ss = {0};
	CHECK(store_shards_each(s, "run-a", SHARD_DONE, collect_shards, &ss) == 0);
	CHECK(ss.n == 1 && ss.ids[0] == 3 && strcmp(ss.sha, sha) == 0);
	CHECK(strcmp(ss.worker, "n1:7:r2") == 0 && ss.attempts == 1);
	memset(&ss, 0, sizeof(ss));
	CHECK(store_shards_each(s, "run-a", SHARD_DELAYED, collect_shards, &ss) == 0);
	CHECK(ss.n == 1 && ss.ids[0] == 4 && ss.sha[0] == '\0' && ss.attempts == 2);
	memset(&ss, 0, sizeof(ss));
	CHECK(store_shards_each(s, "run-a", -1, collect_shards, &ss) == 0);
	CHECK(ss.n == 10 && ss.ids[0] == 0 && ss.ids[9] == 9);
	store_close(s);
}

struct metsum {
	int n;
	char line[16][64];
};

static int collect_metrics(void *arg, const struct store_metric *m)
{
	struct metsum *ms = arg;
	if (ms->n < 16)
		snprintf(ms->line[ms->n++], 64, "%s/%s@%lld=%g", m->variant, m->key,
			 (long long)m->step, m->value);
	return 0;
}

static void test_metrics(void)
{
	struct store *s = store_open(dbpath, 0);
	if (!s) {
		CHECK(s != NULL);
		return;
	}
	struct store_metric m[] = {
		{"teacher", "loss", 1, 0.9, 0},
		{"teacher", "loss", 2, 0.5, 0},
		{"mm_student", "loss", 1, 1.2, 0},
		{"mm_student", "loss", 2, NAN, 0},
		{"mm_student", "acc", 2, 0.83, 0},
		{NULL, "agreement", 0, 0.7, 1700000000000LL},
	};
	CHECK(store_metric_add(s, "run-a", m, sizeof(m) / sizeof(m[0])) == 0);
	struct store_metric again = {"teacher", "loss", 2, 0.4, 0}; /* a redone step replaces */
	CHECK(store_metric_add(s, "run-a", &again, 1) == 0);
	struct metsum ms = {0};
	CHECK(store_metrics_each(s, "run-a", "teacher", "loss", collect_metrics, &ms) == 0);
	CHECK(ms.n == 2 && strcmp(ms.line[1], "teacher/loss@2=0.4") == 0);
	memset(&ms, 0, sizeof(ms));
	CHECK(store_metrics_each(s, "run-a", NULL, "loss", collect_metrics, &ms) == 0);
	CHECK(ms.n == 4 && strcmp(ms.line[1], "mm_student/loss@2=nan") == 0);
	memset(&ms, 0, sizeof(ms));
	CHECK(store_metrics_latest(s, "run-a", collect_metrics, &ms) == 0);
	CHECK(ms.n == 4);
	CHECK(strcmp(ms.line[0], "/agreement@0=0.7") == 0);
	CHECK(strcmp(ms.line[1], "mm_student/acc@2=0.83") == 0);
	CHECK(strcmp(ms.line[3], "teacher/loss@2=0.4") == 0);
	/* a batch with one bad row writes nothing */
	struct store_metric bad[] = {{"x", "k", 1, 1, 0}, {"x", "", 2, 2, 0}};
	capture_begin();
	int rc = store_metric_add(s, "run-a", bad, 2);
	char *msg = capture_end();
	CHECK(rc == -1 && strstr(msg, "has no key") != NULL);
	free(msg);
	memset(&ms, 0, sizeof(ms));
	CHECK(store_metrics_each(s, "run-a", "x", NULL, collect_metrics, &ms) == 0 && ms.n == 0);
	store_close(s);
}

static int count_artifacts(void *arg, const struct store_artifact *a)
{
	int *n = arg;
	if (strcmp(a->kind, "checkpoint") == 0 && a->bytes == 4096 && a->sha256)
		n[0]++;
	if (strcmp(a->kind, "report") == 0 && a->bytes == -1 && !a->sha256)
		n[1]++;
	return 0;
}

static int count_events(void *arg, const struct store_event *e)
{
	int *n = arg;
	n[0]++;
	if (e->rank == -1)
		n[1]++;
	return n[0] == 2 ? 5 : 0; /* stop early: the walk returns 5 */
}

static void test_artifacts_events_cursors(void)
{
	struct store *s = store_open(dbpath, 0);
	if (!s) {
		CHECK(s != NULL);
		return;
	}
	char sha[65];
	sha256_hex("ckpt", 4, sha);
	CHECK(store_artifact_add(s, "run-a", "ckpt/step100.safetensors", "checkpoint", sha, 4096) == 0);
	CHECK(store_artifact_add(s, "run-a", "report.md", "report", NULL, -1) == 0);
	CHECK(store_artifact_add(s, "run-a", "report.md", "report", NULL, -1) == 0);
	int na[2] = {0, 0};
	CHECK(store_artifacts_each(s, "run-a", count_artifacts, na) == 0);
	CHECK(na[0] == 1 && na[1] == 1);

	CHECK(store_event_add(s, "run-a", 0, "phase", -1, "{\"phase\":\"label\"}", NULL) == 1);
	CHECK(store_event_add(s, "run-a", 0, "log", 3, "{\"text\":\"hi\"}", "1700-0") == 1);
	CHECK(store_event_add(s, "run-a", 0, "log", 3, "{\"text\":\"hi\"}", "1700-0") == 0);
	CHECK(store_event_add(s, "run-a", 0, "log", 3, NULL, "1700-1") == 1);
	int ne[2] = {0, 0};
	CHECK(store_events_each(s, "run-a", 0, count_events, ne) == 5);
	CHECK(ne[0] == 2 && ne[1] == 1);

	/* an ingest batch and its cursor commit together, or not at all */
	char last[64];
	CHECK(store_cursor_get(s, "run-a", "events", last, sizeof(last)) == 0);
	CHECK(store_begin(s) == 0);
	CHECK(store_event_add(s, "run-a", 0, "log", 0, NULL, "1800-0") == 1);
	CHECK(store_cursor_set(s, "run-a", "events", "1800-0") == 0);
	CHECK(store_rollback(s) == 0);
	CHECK(store_cursor_get(s, "run-a", "events", last, sizeof(last)) == 0);
	CHECK(store_begin(s) == 0);
	CHECK(store_event_add(s, "run-a", 0, "log", 0, NULL, "1800-0") == 1);
	CHECK(store_begin(s) == 0); /* nested: a savepoint */
	CHECK(store_cursor_set(s, "run-a", "events", "1800-0") == 0);
	CHECK(store_commit(s) == 0);
	CHECK(store_commit(s) == 0);
	CHECK(store_cursor_get(s, "run-a", "events", last, sizeof(last)) == 1);
	CHECK(strcmp(last, "1800-0") == 0);
	CHECK(store_cursor_set(s, "run-a", "events", "1900-3") == 0);
	CHECK(store_cursor_get(s, "run-a", "events", last, sizeof(last)) == 1);
	CHECK(strcmp(last, "1900-3") == 0);
	store_close(s);
}

/* `mke status` reads while the coordinator holds the database open. */
static void test_readonly_beside_writer(void)
{
	struct store *w = store_open(dbpath, 0);
	struct store *r = store_open(dbpath, STORE_READONLY);
	CHECK(w && r);
	if (!w || !r) {
		store_close(w);
		store_close(r);
		return;
	}
	CHECK(store_begin(w) == 0);
	CHECK(store_param_set(w, "run-a", "live", "1") == 0);
	char buf[256] = "";
	CHECK(store_params_each(r, "run-a", collect_params, buf) == 0);
	CHECK(strstr(buf, "live=") == NULL); /* not committed yet */
	CHECK(store_commit(w) == 0);
	buf[0] = '\0';
	CHECK(store_params_each(r, "run-a", collect_params, buf) == 0);
	CHECK(strstr(buf, "live=1") != NULL);
	capture_begin();
	int rc = store_param_set(r, "run-a", "x", "y");
	char *msg = capture_end();
	CHECK(rc == -1 && strstr(msg, "readonly") != NULL);
	free(msg);
	CHECK(store_integrity_check(r) == 0);
	store_close(r);
	store_close(w);
}

static void test_newer_schema_refused(void)
{
	char path[160];
	snprintf(path, sizeof(path), "%s/newer.db", tmpdir);
	struct store *s = store_open(path, 0);
	CHECK(s != NULL);
	store_close(s);
	sqlite3 *db = NULL;
	CHECK(sqlite3_open(path, &db) == SQLITE_OK);
	CHECK(sqlite3_exec(db, "INSERT INTO schema_migrations VALUES (99, '099_future.sql', 0)",
			   NULL, NULL, NULL) == SQLITE_OK);
	sqlite3_close(db);
	capture_begin();
	s = store_open(path, 0);
	struct store *r = store_open(path, STORE_READONLY);
	char missing[160];
	snprintf(missing, sizeof(missing), "%s/absent.db", tmpdir);
	struct store *m = store_open(missing, STORE_READONLY);
	char *msg = capture_end();
	CHECK(s == NULL && r == NULL && m == NULL);
	CHECK(strstr(msg, "schema version 99, newer than this mke") != NULL);
	CHECK(strstr(msg, "use a newer mke") != NULL);
	CHECK(strstr(msg, "absent.db") != NULL);
	free(msg);
}

static void test_memory_db(void)
{
	struct store *s = store_open(":memory:", 0);
	CHECK(s != NULL);
	if (!s)
		return;
	struct store_run r = {0};
	r.id = "m";
	CHECK(store_run_create(s, &r) == 0);
	CHECK(store_integrity_check(s) == 0);
	store_close(s);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

int main(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/mke-test-store-XXXXXX");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(dbpath, sizeof(dbpath), "%s/run.db", tmpdir);
	RUN(test_open_and_migrate);
	RUN(test_reopen_is_idempotent);
	RUN(test_runs_and_phases);
	RUN(test_phases_walk);
	RUN(test_params);
	RUN(test_shards);
	RUN(test_metrics);
	RUN(test_artifacts_events_cursors);
	RUN(test_readonly_beside_writer);
	RUN(test_newer_schema_refused);
	RUN(test_memory_db);
	/* the whole file is still sound */
	struct store *s = store_open(dbpath, 0);
	if (!s || store_integrity_check(s) != 0) {
		printf("FAIL final integrity_check\n");
		test_failed++;
	}
	store_close(s);
	nftw(tmpdir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	return test_summary();
}
