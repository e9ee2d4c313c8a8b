/*
 * store.c - the run database over SQLite (see store.h; docs/database.md).
 *
 * Owns the one sqlite3 connection of the coordinator and the cache of its
 * prepared statements. Three rules keep it honest:
 *
 *   - every statement is a constant SQL string with bound parameters
 *     (bindf() below), so no value ever becomes SQL text;
 *   - every sqlite call is checked and reported with this file's line and
 *     sqlite3_errmsg (FAIL / PREP / BIND / STEP);
 *   - single-row statements are cached and reset after each use; walks
 *     (the _each functions) prepare their own, so a callback may call back
 *     into the store without resetting the statement it is inside.
 *
 * WAL mode lets readers (`mke status`) run beside the one writer;
 * synchronous=NORMAL is durable across process crashes (the WAL is synced at
 * checkpoints), which is what a resumable run needs.
 */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "util.h"

#define STORE_CACHE 64

struct store {
	sqlite3 *db;
	char *path;
	int readonly;
	int depth;                 /* open transaction levels */
	int ncache;
	struct {
		const char *sql;   /* identity: the address of a constant string */
		sqlite3_stmt *st;
	} cache[STORE_CACHE];
};

/* ------------------------------------------------------------------------ */
/* Names.                                                                    */

static const char *const run_status_names[RUN_NSTATUS] = {
	"created", "running", "done", "failed", "cancelled",
};
static const char *const run_phase_names[PHASE_N] = {
	"created", "teacher", "shard", "label", "student", "eval", "done",
};
static const char *const phase_status_names[PHASE_NSTATUS] = {
	"running", "done", "failed", "cancelled",
};

static int name_index(const char *const *names, int n, const char *s)
{
	for (int i = 0; s && i < n; i++)
		if (strcmp(names[i], s) == 0)
			return i;
	return -1;
}

const char *run_status_name(enum run_status s)
{
	return (unsigned)s < RUN_NSTATUS ? run_status_names[s] : NULL;
}

int run_status_from_name(const char *s)
{
	return name_index(run_status_names, RUN_NSTATUS, s);
}

const char *run_phase_name(enum run_phase p)
{
	return (unsigned)p < PHASE_N ? run_phase_names[p] : NULL;
}

int run_phase_from_name(const char *s)
{
	return name_index(run_phase_names, PHASE_N, s);
}

const char *phase_status_name(enum phase_status s)
{
	return (unsigned)s < PHASE_NSTATUS ? phase_status_names[s] : NULL;
}

int phase_status_from_name(const char *s)
{
	return name_index(phase_status_names, PHASE_NSTATUS, s);
}

/* ------------------------------------------------------------------------ */
/* Checked sqlite calls.                                                     */

static int64_t now_ms(void)
{
	return (int64_t)floor(wall_seconds() * 1000.0);
}

static int store_fail(struct store *s, const char *file, int line, const char *what)
{
	return mke_error("%s:%d: sqlite '%s': %s: %s", file, line, s->path, what,
			 s->db ? sqlite3_errmsg(s->db) : "no connection");
}
#define FAIL(s, what) store_fail((s), __FILE__, __LINE__, (what))

/* A cached statement for sql (a constant string), reset and unbound. */
static sqlite3_stmt *stmt_get(struct store *s, const char *sql, const char *file, int line)
{
	for (int i = 0; i < s->ncache; i++) {
		if (s->cache[i].sql == sql) {
			sqlite3_stmt *st = s->cache[i].st;
			sqlite3_reset(st);
			sqlite3_clear_bindings(st);
			return st;
		}
	}
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
		store_fail(s, file, line, "prepare");
		return NULL;
	}
	if (s->ncache < STORE_CACHE) {
		s->cache[s->ncache].sql = sql;
		s->cache[s->ncache].st = st;
		s->ncache++;
	} else {
		/* never expected: more distinct statements than slots */
		mke_warn("%s:%d: store statement cache is full", file, line);
	}
	return st;
}
#define PREP(s, sql) stmt_get((s), (sql), __FILE__, __LINE__)

/* An uncached statement for a walk; the caller finalizes it. */
static sqlite3_stmt *stmt_new(struct store *s, const char *sql, const char *file, int line)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
		store_fail(s, file, line, "prepare");
		return NULL;
	}
	return st;
}
#define PREP_WALK(s, sql) stmt_new((s), (sql), __FILE__, __LINE__)

/* Release a statement from PREP or PREP_WALK. */
static void stmt_done(struct store *s, sqlite3_stmt *st)
{
	if (!st)
		return;
	for (int i = 0; i < s->ncache; i++) {
		if (s->cache[i].st == st) {
			sqlite3_reset(st);
			return;
		}
	}
	sqlite3_finalize(st);
}

/*
 * Bind parameters 1..n from fmt, one letter each:
 *   t  const char *   (NULL binds NULL)
 *   i  int
 *   l  int64_t
 *   z  int64_t        (0 binds NULL: "unknown" timestamps)
 *   N  int64_t        (negative binds NULL: "unknown" counts and ranks)
 *   d  double         (NaN binds NULL)
 */
static int bindf(struct store *s, sqlite3_stmt *st, const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = SQLITE_OK;
	for (int i = 0; fmt[i] && rc == SQLITE_OK; i++) {
		int k = i + 1;
		switch (fmt[i]) {
		case 't': {
			const char *v = va_arg(ap, const char *);
			rc = v ? sqlite3_bind_text(st, k, v, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(st, k);
			break;
		}
		case 'i':
			rc = sqlite3_bind_int64(st, k, va_arg(ap, int));
			break;
		case 'l':
			rc = sqlite3_bind_int64(st, k, va_arg(ap, int64_t));
			break;
		case 'z': {
			int64_t v = va_arg(ap, int64_t);
			rc = v ? sqlite3_bind_int64(st, k, v) : sqlite3_bind_null(st, k);
			break;
		}
		case 'N': {
			int64_t v = va_arg(ap, int64_t);
			rc = v >= 0 ? sqlite3_bind_int64(st, k, v) : sqlite3_bind_null(st, k);
			break;
		}
		case 'd': {
			double v = va_arg(ap, double);
			rc = isnan(v) ? sqlite3_bind_null(st, k) : sqlite3_bind_double(st, k, v);
			break;
		}
		default:
			va_end(ap);
			return mke_error("%s:%d: bindf: bad format letter '%c'", file, line, fmt[i]);
		}
	}
	va_end(ap);
	if (rc != SQLITE_OK)
		return store_fail(s, file, line, "bind");
	return 0;
}
#define BIND(s, st, ...) bindf((s), (st), __FILE__, __LINE__, __VA_ARGS__)

/* Step a statement that returns no rows; releases it either way. */
static int step_done(struct store *s, sqlite3_stmt *st, const char *file, int line, const char *what)
{
	int rc = sqlite3_step(st);
	int ret = 0;
	if (rc != SQLITE_DONE)
		ret = store_fail(s, file, line, what);
	stmt_done(s, st);
	return ret;
}
#define STEP(s, st, what) step_done((s), (st), __FILE__, __LINE__, (what))

/* A statement without parameters or rows (PRAGMA, BEGIN, ...). */
static int exec_const(struct store *s, const char *sql, const char *file, int line)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
		return store_fail(s, file, line, sql);
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		;
	int ret = rc == SQLITE_DONE ? 0 : store_fail(s, file, line, sql);
	sqlite3_finalize(st);
	return ret;
}
#define EXEC(s, sql) exec_const((s), (sql), __FILE__, __LINE__)

/* The first column of the first row of a constant query, as text (caller frees). */
static char *query_text(struct store *s, const char *sql, const char *file, int line)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
		store_fail(s, file, line, sql);
		return NULL;
	}
	char *out = NULL;
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		const unsigned char *t = sqlite3_column_text(st, 0);
		out = xstrdup(t ? (const char *)t : "");
	} else if (rc == SQLITE_DONE) {
		out = xstrdup("");
	} else {
		store_fail(s, file, line, sql);
	}
	sqlite3_finalize(st);
	return out;
}

static const char *col_text(sqlite3_stmt *st, int i)
{
	return (const char *)sqlite3_column_text(st, i);
}

static int64_t col_int(sqlite3_stmt *st, int i)
{
	return sqlite3_column_int64(st, i);
}

/* Finish a walk: SQLITE_DONE is success, anything else is reported. */
static int walk_end(struct store *s, sqlite3_stmt *st, int rc, int stop, const char *file, int line)
{
	int ret = stop;
	if (!stop && rc != SQLITE_DONE)
		ret = store_fail(s, file, line, "step");
	stmt_done(s, st);
	return ret;
}
#define WALK_END(s, st, rc, stop) walk_end((s), (st), (rc), (stop), __FILE__, __LINE__)

/* ------------------------------------------------------------------------ */
/* Transactions.                                                             */

int store_begin(struct store *s)
{
	if (EXEC(s, s->depth == 0 ? "BEGIN IMMEDIATE" : "SAVEPOINT mke_sp") != 0)
		return -1;
	s->depth++;
	return 0;
}

int store_commit(struct store *s)
{
	if (s->depth <= 0)
		return mke_error("store '%s': commit without a transaction", s->path);
	if (s->depth == 1) {
		if (EXEC(s, "COMMIT") != 0) {
			EXEC(s, "ROLLBACK");
			s->depth = 0;
			return -1;
		}
	} else if (EXEC(s, "RELEASE mke_sp") != 0) {
		return -1;
	}
	s->depth--;
	return 0;
}

int store_rollback(struct store *s)
{
	if (s->depth <= 0)
		return mke_error("store '%s': rollback without a transaction", s->path);
	int rc;
	if (s->depth == 1)
		rc = EXEC(s, "ROLLBACK");
	else
		rc = EXEC(s, "ROLLBACK TO mke_sp") || EXEC(s, "RELEASE mke_sp") ? -1 : 0;
	s->depth--;
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Opening and migrations.                                                   */

int store_schema_latest(void)
{
	int n = 0;
	while (store_migrations[n].name)
		n++;
	return n;
}

int store_schema_version(struct store *s)
{
	static const char sql[] = "SELECT coalesce(max(version), 0) FROM schema_migrations";
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
		sqlite3_finalize(st);
		return 0; /* no table: nothing applied */
	}
	int v = -1;
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int(st, 0);
	else
		FAIL(s, "reading the schema version");
	sqlite3_finalize(st);
	return v;
}

static int apply_migration(struct store *s, int version, const struct store_migration *m)
{
	size_t len = 0;
	for (int i = 0; m->lines[i]; i++)
		len += strlen(m->lines[i]);
	char *text = xmalloc(len + 1), *p = text;
	for (int i = 0; m->lines[i]; i++) {
		size_t n = strlen(m->lines[i]);
		memcpy(p, m->lines[i], n);
		p += n;
	}
	*p = '\0';
	int ret = 0;
	const char *sql = text;
	while (sql && *sql) {
		sqlite3_stmt *st = NULL;
		const char *tail = NULL;
		if (sqlite3_prepare_v2(s->db, sql, -1, &st, &tail) != SQLITE_OK) {
			mke_error("%s:%d: sqlite '%s': migration '%s': %s (near '%.60s')", __FILE__,
				  __LINE__, s->path, m->name, sqlite3_errmsg(s->db), sql);
			ret = -1;
			break;
		}
		if (st) {
			int rc;
			while ((rc = sqlite3_step(st)) == SQLITE_ROW)
				;
			if (rc != SQLITE_DONE) {
				mke_error("%s:%d: sqlite '%s': migration '%s': %s (in '%.60s')",
					  __FILE__, __LINE__, s->path, m->name, sqlite3_errmsg(s->db),
					  sqlite3_sql(st));
				ret = -1;
			}
			sqlite3_finalize(st);
			if (ret)
				break;
		}
		sql = tail;
	}
	free(text);
	if (ret)
		return -1;
	static const char ins[] =
		"INSERT INTO schema_migrations (version, name, applied_ms) VALUES (?, ?, ?)";
	sqlite3_stmt *st = PREP(s, ins);
	if (!st || BIND(s, st, "itl", version, m->name, now_ms()) != 0) {
		stmt_done(s, st);
		return -1;
	}
	return STEP(s, st, "recording a migration");
}

static int migrate(struct store *s)
{
	int latest = store_schema_latest();
	for (int i = 0; i < latest; i++) {
		long v;
		char num[16];
		size_t n = strspn(store_migrations[i].name, "0123456789");
		snprintf(num, sizeof(num), "%.*s", (int)(n < 15 ? n : 15), store_migrations[i].name);
		if (parse_long(num, &v) != 0 || v != i + 1)
			return mke_error("store: migration '%s' is out of sequence: expected "
					 "number %03d", store_migrations[i].name, i + 1);
	}
	if (store_begin(s) != 0)
		return -1;
	if (EXEC(s, "CREATE TABLE IF NOT EXISTS schema_migrations ("
		    "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ms INTEGER NOT NULL)"))
		goto fail;
	int have = store_schema_version(s);
	if (have < 0)
		goto fail;
	if (have > latest) {
		mke_error("database '%s' has schema version %d, newer than this mke knows (%d): "
			  "use a newer mke", s->path, have, latest);
		goto fail;
	}
	for (int i = have; i < latest; i++)
		if (apply_migration(s, i + 1, &store_migrations[i]) != 0)
			goto fail;
	if (have < latest) {
		/* a constant from our own table, not a value from outside */
		char pragma[48];
		snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d", latest);
		if (EXEC(s, pragma) != 0)
			goto fail;
	}
	return store_commit(s);
fail:
	store_rollback(s);
	return -1;
}

struct store *store_open(const char *path, unsigned flags)
{
	if (!path || !*path) {
		mke_error("store: no database path given");
		return NULL;
	}
	int ro = (flags & STORE_READONLY) != 0;
	int mem = strcmp(path, ":memory:") == 0;
	if (!ro && !mem) {
		/* the config may hold secrets: create the file private */
		int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (fd < 0) {
			mke_error("cannot create database '%s': %s", path, strerror(errno));
			return NULL;
		}
		close(fd);
	} else if (ro && access(path, R_OK) != 0) {
		mke_error("cannot read database '%s': %s", path, strerror(errno));
		return NULL;
	}
	struct store *s = xcalloc(1, sizeof(*s));
	s->path = xstrdup(path);
	s->readonly = ro;
	int oflags = ro ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
	if (sqlite3_open_v2(path, &s->db, oflags, NULL) != SQLITE_OK) {
		FAIL(s, "open");
		store_close(s);
		return NULL;
	}
	sqlite3_extended_result_codes(s->db, 1);
	if (sqlite3_busy_timeout(s->db, 5000) != SQLITE_OK) {
		FAIL(s, "busy_timeout");
		store_close(s);
		return NULL;
	}
	char *fk = NULL, *jm = NULL;
	if (EXEC(s, "PRAGMA foreign_keys = ON") != 0)
		goto fail;
	fk = query_text(s, "PRAGMA foreign_keys", __FILE__, __LINE__);
	if (!fk || strcmp(fk, "1") != 0) {
		mke_error("store '%s': this SQLite cannot enforce foreign keys", path);
		goto fail;
	}
	if (!ro) {
		jm = query_text(s, "PRAGMA journal_mode = WAL", __FILE__, __LINE__);
		if (!jm)
			goto fail;
		if (strcmp(jm, "wal") != 0 && !(mem && strcmp(jm, "memory") == 0)) {
			mke_error("store '%s': cannot use WAL mode (journal mode stays '%s'): keep "
				  "the database on a local filesystem, not NFS/Lustre", path, jm);
			goto fail;
		}
		if (EXEC(s, "PRAGMA synchronous = NORMAL") != 0 || migrate(s) != 0)
			goto fail;
	} else {
		int v = store_schema_version(s), latest = store_schema_latest();
		if (v != latest) {
			mke_error("database '%s' has schema version %d but this mke expects %d: %s",
				  path, v, latest, v > latest ? "use a newer mke"
							  : "open it once for writing to migrate it");
			goto fail;
		}
	}
	free(fk);
	free(jm);
	return s;
fail:
	free(fk);
	free(jm);
	store_close(s);
	return NULL;
}

void store_close(struct store *s)
{
	if (!s)
		return;
	if (s->depth > 0 && s->db) {
		mke_warn("store '%s': closing with an open transaction; rolling it back", s->path);
		EXEC(s, "ROLLBACK");
	}
	for (int i = 0; i < s->ncache; i++)
		sqlite3_finalize(s->cache[i].st);
	if (s->db && sqlite3_close(s->db) != SQLITE_OK)
		FAIL(s, "close");
	free(s->path);
	free(s);
}

int store_integrity_check(struct store *s)
{
	sqlite3_stmt *st = PREP_WALK(s, "PRAGMA integrity_check");
	if (!st)
		return -1;
	int rc, rows = 0, bad = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *t = col_text(st, 0);
		rows++;
		if (!t || strcmp(t, "ok") != 0) {
			if (bad++ < 5)
				mke_error("store '%s': integrity_check: %s", s->path, t ? t : "?");
		}
	}
	if (WALK_END(s, st, rc, 0) != 0)
		return -1;
	st = PREP_WALK(s, "PRAGMA foreign_key_check");
	if (!st)
		return -1;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (bad++ < 5)
			mke_error("store '%s': foreign_key_check: table '%s' row %lld has no '%s'",
				  s->path, col_text(st, 0), (long long)col_int(st, 1), col_text(st, 2));
	}
	if (WALK_END(s, st, rc, 0) != 0)
		return -1;
	return bad || rows == 0 ? -1 : 0;
}

/* ------------------------------------------------------------------------ */
/* Runs.                                                                     */

static int changed_one(struct store *s, const char *what, const char *id)
{
	if (sqlite3_changes(s->db) != 1)
		return mke_error("store '%s': %s: no run '%s'", s->path, what, id);
	return 0;
}

int store_run_create(struct store *s, const struct store_run *r)
{
	static const char sql[] =
		"INSERT INTO runs (id, name, config, config_path, status, phase, created_ms, host, "
		"git_rev, run_dir, slurm_job_id) VALUES (?, ?, ?, ?, 'created', 'created', ?, ?, ?, "
		"?, ?)";
	if (!r || !r->id || !*r->id)
		return mke_error("store: a run needs an id");
	sqlite3_stmt *st = PREP(s, sql);
	if (!st)
		return -1;
	if (BIND(s, st, "ttttltttt", r->id, r->name ? r->name : r->id,
		 r->config ? r->config : "{}", r->config_path, now_ms(), r->host, r->git_rev,
		 r->run_dir, r->slurm_job_id) != 0) {
		stmt_done(s, st);
		return -1;
	}
	int rc = sqlite3_step(st);
	int ext = sqlite3_extended_errcode(s->db);
	int ret = 0;
	if (rc != SQLITE_DONE) {
		if (ext == SQLITE_CONSTRAINT_PRIMARYKEY || ext == SQLITE_CONSTRAINT_UNIQUE)
			ret = mke_error("store '%s': run '%s' already exists", s->path, r->id);
		else
			ret = FAIL(s, "inserting a run");
	}
	stmt_done(s, st);
	return ret;
}

#define RUN_COLUMNS                                                                     \
	"id, name, config, config_path, status, phase, created_ms, started_ms, ended_ms, " \
	"host, git_rev, run_dir, slurm_job_id, error"

/* A view of the current row (strings owned by the statement). */
static void run_from_row(sqlite3_stmt *st, struct store_run *r)
{
	memset(r, 0, sizeof(*r));
	r->id = (char *)col_text(st, 0);
	r->name = (char *)col_text(st, 1);
	r->config = (char *)col_text(st, 2);
	r->config_path = (char *)col_text(st, 3);
	int v = run_status_from_name(col_text(st, 4));
	r->status = v < 0 ? RUN_CREATED : (enum run_status)v;
	v = run_phase_from_name(col_text(st, 5));
	r->phase = v < 0 ? PHASE_CREATED : (enum run_phase)v;
	r->created_ms = col_int(st, 6);
	r->started_ms = col_int(st, 7);
	r->ended_ms = col_int(st, 8);
	r->host = (char *)col_text(st, 9);
	r->git_rev = (char *)col_text(st, 10);
	r->run_dir = (char *)col_text(st, 11);
	r->slurm_job_id = (char *)col_text(st, 12);
	r->error = (char *)col_text(st, 13);
}

static char *dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

int store_run_get(struct store *s, const char *id, struct store_run *out)
{
	static const char sql[] = "SELECT " RUN_COLUMNS " FROM runs WHERE id = ?";
	memset(out, 0, sizeof(*out));
	sqlite3_stmt *st = PREP(s, sql);
	if (!st)
		return -1;
	if (BIND(s, st, "t", id) != 0) {
		stmt_done(s, st);
		return -1;
	}
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		struct store_run v;
		run_from_row(st, &v);
		*out = v;
		out->id = dup_or_null(v.id);
		out->name = dup_or_null(v.name);
		out->config = dup_or_null(v.config);
		out->config_path = dup_or_null(v.config_path);
		out->host = dup_or_null(v.host);
		out->git_rev = dup_or_null(v.git_rev);
		out->run_dir = dup_or_null(v.run_dir);
		out->slurm_job_id = dup_or_null(v.slurm_job_id);
		out->error = dup_or_null(v.error);
		stmt_done(s, st);
		return 1;
	}
	int ret = rc == SQLITE_DONE ? 0 : FAIL(s, "reading a run");
	stmt_done(s, st);
	return ret;
}

void store_run_release(struct store_run *r)
{
	if (!r)
		return;
	free(r->id);
	free(r->name);
	free(r->config);
	free(r->config_path);
	free(r->host);
	free(r->git_rev);
	free(r->run_dir);
	free(r->slurm_job_id);
	free(r->error);
	memset(r, 0, sizeof(*r));
}

int store_run_set_status(struct store *s, const char *id, enum run_status st_, const char *error)
{
	static const char running[] =
		"UPDATE runs SET status = 'running', started_ms = coalesce(started_ms, ?), "
		"ended_ms = NULL, error = NULL WHERE id = ?";
	static const char ended[] =
		"UPDATE runs SET status = ?, ended_ms = ?, error = ? WHERE id = ?";
	static const char plain[] = "UPDATE runs SET status = ? WHERE id = ?";
	const char *name = run_status_name(st_);
	if (!name)
		return mke_error("store: bad run status %d", (int)st_);
	sqlite3_stmt *st;
	int rc;
	if (st_ == RUN_RUNNING) {
		st = PREP(s, running);
		rc = st ? BIND(s, st, "lt", now_ms(), id) : -1;
	} else if (st_ == RUN_CREATED) {
		st = PREP(s, plain);
		rc = st ? BIND(s, st, "tt", name, id) : -1;
	} else {
		st = PREP(s, ended);
		rc = st ? BIND(s, st, "tltt", name, now_ms(), error, id) : -1;
	}
	if (rc != 0) {
		stmt_done(s, st);
		return -1;
	}
	if (STEP(s, st, "setting a run's status") != 0)
		return -1;
	return changed_one(s, "setting the status", id);
}

int store_run_set_phase(struct store *s, const char *id, enum run_phase ph)
{
	static const char sql[] = "UPDATE runs SET phase = ? WHERE id = ?";
	const char *name = run_phase_name(ph);
	if (!name)
		return mke_error("store: bad run phase %d", (int)ph);
	sqlite3_stmt *st = PREP(s, sql);
	if (!st || BIND(s, st, "tt", name, id) != 0) {
		stmt_done(s, st);
		return -1;
	}
	if (STEP(s, st, "setting a run's phase") != 0)
		return -1;
	return changed_one(s, "setting the phase", id);
}

int store_run_set_slurm_job(struct store *s, const char *id, const char *job_id)
{
	static const char sql[] = "UPDATE runs SET slurm_job_id = ? WHERE id = ?";
	sqlite3_stmt *st = PREP(s, sql);
	if (!st || BIND(s, st, "tt", job_id, id) != 0) {
		stmt_done(s, st);
		return -1;
	}
	if (STEP(s, st, "setting a run's slurm job") != 0)
		return -1;
	return changed_one(s, "setting the slurm job id", id);
}

int store_runs_each(struct store *s, store_run_cb cb, void *arg)
{
	sqlite3_stmt *st = PREP_WALK(s, "SELECT " RUN_COLUMNS " FROM runs "
					"ORDER BY created_ms DESC, id DESC");
	if (!st)
		return -1;
	int rc, stop = 0;
	while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct store_run r;
		run_from_row(st, &r);
		stop = cb(arg, &r);
	}
	return WALK_END(s, st, rc, stop);
}

/* ------------------------------------------------------------------------ */
/* Params.                                                                   */

int store_param_set(struct store *s, const char *run, const char *key, const char *value)
{
	static const char sql[] =
		"INSERT INTO params (run_id, key, value) VALUES (?, ?, ?) "
		"ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value";
	if (!key || !*key)
		return mke_error("store: a param needs a key");
	sqlite3_stmt *st = PREP(s, sql);
	if (!st || BIND(s, st, "ttt", run, key, value ? value : "") != 0) {
		stmt_done(s, st);
		return -1;
	}
	return STEP(s, st, "setting a param");
}

int store_params_each(struct store *s, const char *run, store_param_cb cb, void *arg)
{
	sqlite3_stmt *st = PREP_WALK(s, "SELECT key, value FROM params WHERE run_id = ? ORDER BY key");
	if (!st)
		return -1;
	if (BIND(s, st, "t", run) != 0) {
		stmt_done(s, st);
		return -1;
	}
	int rc, stop = 0;
	while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW)
		stop = cb(arg, col_text(st, 0), col_text(st, 1));
	return WALK_END(s, st, rc, stop);
}

/* ------------------------------------------------------------------------ */
/* Phases.                                                                   */

int store_phase_begin(struct store *s, const char *run, enum run_phase ph)
{
	static const char sql[] =
		"INSERT INTO phases (run_id, phase, status, started_ms, attempts) "
		"VALUES (?, ?, 'running', ?, 1) ON CONFLICT (run_id, phase) DO UPDATE SET "
		"status = 'running', started_ms = excluded.started_ms, ended_ms = NULL, "
		"detail = NULL, attempts = attempts + 1";
	if (ph < PHASE_TEACHER || ph > PHASE_EVAL)
		return mke_error("store: '%s' is not a phase that runs",
				 run_phase_name(ph) ? run_phase_name(ph) : "?");
	if (store_begin(s) != 0)
		return -1;
	sqlite3_stmt *st = PREP(s, sql);
	if (!st || BIND(s, st, "ttl", run, run_phase_name(ph), now_ms()) != 0) {
		stmt_done(s, st);
		goto fail;
	}
	if (STEP(s, st, "beginning a phase") != 0 || store_run_set_phase(s, run, ph) != 0 ||
	    store_run_set_status(s, run, RUN_RUNNING, NULL) != 0)
		goto fail;
	return store_commit(s);
fail:
	store_rollback(s);
	return -1;
}

int store_phase_end(struct store *s, const char *run, enum run_phase ph, enum phase_status st_,
		    const char *detail)
{
	static const char sql[] =
		"UPDATE phases SET status = ?, ended_ms = ?, detail = ? WHERE run_id = ? AND phase = ?";
	if (st_ == PHASE_RUNNING || !phase_status_name(st_))
		return mke_error("store: a phase must end as done, failed or cancelled");
	if (!run_phase_name(ph))
		return mke_error("store: bad run phase %d", (int)ph);
	sqlite3_stmt *st = PREP(s, sql);
	if (!st || BIND(s, st, "tlttt", phase_status_name(st_), now_ms(), detail, run,
			run_phase_name(ph)) != 0) {
		stmt_done(s, st);
		return -1;
	}
	if (STEP(s, st, "ending a phase") != 0)
		return -1;
	if (sqlite3_changes(s->db) != 1)
		return mke_error("store '%s': phase '%s' of run '%s' was never begun", s->path,
				 run_phase_name(ph), run);
	return 0;
}

int store_phases_each(struct store *s, const char *run, store_phase_cb cb, void *arg)
{
	sqlite3_stmt *st = PREP_WALK(s,
		"SELECT phase, status, started_ms, ended_ms, attempts, detail FROM phases "
		"WHERE run_id = ? ORDER BY CASE phase WHEN 'teacher' THEN 1 WHEN 'shard' THEN 2 "
		"WHEN 'label' THEN 3 WHEN 'student' THEN 4 WHEN 'eval' THEN 5 ELSE 6 END");
	if (!st)
		return -1;
	if (BIND(s, st, "t", run) != 0) {
		stmt_done(s, st);
		return -1;
	}
	int rc, stop = 0;
	while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct store_phase p;
		int v = run_phase_from_name(col_text(st, 0));
		p.phase = v < 0 ? PHASE_CREATED : (enum run_phase)v;
		v = phase_status_from_name(col_text(st, 1));
		p.status = v < 0 ? PHASE_RUNNING : (enum phase_status)v;
		p.started_ms = col_int(st, 2);
		p.ended_ms = col_int(st, 3);
		p.attempts = (int)col_int(st, 4);
		p.detail = col_text(st, 5);
		stop = cb(arg, &p);
	}
	return WALK_END(s, st, rc, stop);
}

/* ------------------------------------------------------------------------ */
/* Shards.                                                                   */

int store_shard_add(struct store *s, const char *run, const struct store_shard *sh, size_t n,
		    size_t *added)
{
	static const char sql[] =
		"INSERT INTO shards (run_id, shard_id, first_row, row_count, state, attempts, "
		"updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?) "
		"ON CONFLICT (run_id, shard_id) DO NOTHING";
	size_t count = 0;
	if (store_begin(s) != 0)
		return -1;
	int64_t now = now_ms();
	for (size_t i = 0; i < n; i++) {
		const char *state = shard_state_name(sh[i].state);
		if (!state) {
			mke_error("store: shard %lld has a bad state", (long long)sh[i].shard_id);
			goto fail;
		}
		sqlite3_stmt *st = PREP(s, sql);
		if (!st || BIND(s, st, "tllltil", run, sh[i].shard_id, sh[i].first_row,
				sh[i].row_count, state, sh[i].attempts, now) != 0) {
			stmt_done(s, st);
			goto fail;
		}
		if (STEP(s, st, "adding a shard") != 0)
			goto fail;
		count += (size_t)sqlite3_changes(s->db);
	}
	if (store_commit(s) != 0)
		return -1;
	if (added)
		*added = count;
	return 0;
fail:
	store_rollback(s);
	return -1;
}

int store_shard_update(struct store *s, const char *run, const struct store_shard_change *c)
{
	static const char get[] = "SELECT state FROM shards WHERE run_id = ? AND shard_id = ?";
	static const char set[] =
		"UPDATE shards SET state = ?1, "
		"attempts = coalesce(?2, attempts), "
		"worker = coalesce(?3, worker), "
		"sha256 = CASE WHEN ?10 THEN NULL ELSE coalesce(?4, sha256) END, "
		"path = CASE WHEN ?10 THEN NULL ELSE coalesce(?5, path) END, "
		"error = coalesce(?6, error), "
		"leased_ms = CASE WHEN ?1 = 'leased' THEN ?7 ELSE leased_ms END, "
		"done_ms = CASE WHEN ?1 = 'done' THEN ?7 WHEN ?10 THEN NULL ELSE done_ms END, "
		"updated_ms = ?7 "
		"WHERE run_id = ?8 AND shard_id = ?9";
	const char *to = shard_state_name(c->state);
	if (!to)
		return mke_error("store: shard %lld: bad state %d", (long long)c->shard_id,
				 (int)c->state);
	sqlite3_stmt *st = PREP(s, get);
	if (!st || BIND(s, st, "tl", run, c->shard_id) != 0) {
		stmt_done(s, st);
		return -1;
	}
	int rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		int ret = rc == SQLITE_DONE ? 0 : FAIL(s, "reading a shard");
		stmt_done(s, st);
		if (ret == 0)
			mke_warn("store: run '%s' has no shard %lld; change to '%s' ignored", run,
				 (long long)c->shard_id, to);
		return ret;
	}
	int from = shard_state_from_name(col_text(st, 0));
	stmt_done(s, st);
	if (from == SHARD_DONE && c->state == SHARD_DONE)
		return 0; /* counted once */
	if (!c->reconcile && (from < 0 || !shard_state_can_advance((enum shard_state)from, c->state))) {
		mke_warn("store: run '%s' shard %lld: transition %s -> %s is not allowed; ignored "
			 "(reconcile with the queue)", run, (long long)c->shard_id,
			 from < 0 ? "?" : shard_state_name((enum shard_state)from), to);
		return 0;
	}
	int leaving_done = from == SHARD_DONE && c->state != SHARD_DONE;
	st = PREP(s, set);
	if (!st || BIND(s, st, "tNttttltli", to, (int64_t)c->attempts, c->worker, c->sha256,
			c->path, c->error, c->ts_ms ? c->ts_ms : now_ms(), run, c->shard_id,
			leaving_done) != 0) {
		stmt_done(s, st);
		return -1;
	}
	if (STEP(s, st, "updating a shard") != 0)
		return -1;
	return sqlite3_changes(s->db) == 1;
}

int store_shard_counts(struct store *s, const char *run, long counts[SHARD_NSTATES])
{
	for (int i = 0; i < SHARD_NSTATES; i++)
		counts[i] = 0;
	sqlite3_stmt *st = PREP_WALK(s, "SELECT state, count(*) FROM shards WHERE run_id = ? "
					"GROUP BY state");
	if (!st)
		return -1;
	if (BIND(s, st, "t", run) != 0) {
		stmt_done(s, st);
		return -1;
	}
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		int v = shard_state_from_name(col_text(st, 0));
		if (v >= 0)
			counts[v] = (long)col_int(st, 1);
	}
	return WALK_END(s, st, rc, 0);
}

int store_shards_each(struct store *s, const char *run, int state, store_shard_cb cb, void *arg)
{
	sqlite3_stmt *st = PREP_WALK(s,
		"SELECT shard_id, first_row, row_count, state, attempts, worker, leased_ms, done_ms, "
		"sha256, path, error, updated_ms FROM shards WHERE run_id = ?1 "
		"AND (?2 IS NULL OR state = ?2) ORDER BY shard_id");
	if (!st)
		return -1;
	const char *filter = state >= 0 ? shard_state_name((enum shard_state)state) : NULL;
	if (state >= 0 && !filter) {
		stmt_done(s, st);
		return mke_error("store: bad shard state %d", state);
	}
	if (BIND(s, st, "tt", run, filter) != 0) {
		stmt_done(s, st);
		return -1;
	}
	int rc, stop = 0;
	while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct store_shard sh;
		sh.shard_id = col_int(st, 0);
		sh.first_row = col_int(st, 1);
		sh.row_count = col_int(st, 2);
		int v = shard_state_from_name(col_text(st, 3));
		sh.state = v < 0 ? SHARD_NEW : (enum shard_state)v;
		sh.attempts = (int)col_int(st, 4);
		sh.worker = col_text(st, 5);
		sh.leased_ms = col_int(st, 6);
		sh.done_ms = col_int(st, 7);
		sh.sha256 = col_text(st, 8);
		sh.path = col_text(st, 9);
		sh.error = col_text(st, 10);
		sh.updated_ms = col_int(st, 11);
		stop = cb(arg, &sh);
	}
	return WALK_END(s, st, rc, stop);
}

/* ------------------------------------------------------------------------ */
/* Metrics.                                                                  */

int store_metric_add(struct store *s, const char *run, const struct store_metric *m, size_t n)
{
	static const char sql[] =
		"INSERT INTO metrics (run_id, variant, key, step, value, is_nan, ts_ms) "
		"VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, variant, key, step) DO UPDATE "
		"SET value = excluded.value, is_nan = excluded.is_nan, ts_ms = excluded.ts_ms";
	if (store_begin(s) != 0)
		return -1;
	int64_t now = now_ms();
	for (size_t i = 0; i < n; i++) {
		if (!m[i].key || !*m[i].key) {
			mke_error("store: metric %zu of run '%s' has no key", i, run);
			goto fail;
		}
		sqlite3_stmt *st = PREP(s, sql);
		if (!st || BIND(s, st, "tttldil", run, m[i].variant ? m[i].variant : "", m[i].key,
				m[i].step, m[i].value, isnan(m[i].value) ? 1 : 0,
				m[i].ts_ms ? m[i].ts_ms : now) != 0) {
			stmt_done(s, st);
			goto fail;
		}
		if (STEP(s, st, "adding a metric") != 0)
			goto fail;
	}
	return store_commit(s);
fail:
	store_rollback(s);
	return -1;
}

static void metric_from_row(sqlite3_stmt *st, struct store_metric *m)
{
	m->variant = col_text(st, 0);
	m->key = col_text(st, 1);
	m->step = col_int(st, 2);
	m->value = col_int(st, 4) || sqlite3_column_type(st, 3) == SQLITE_NULL
			   ? NAN
			   : sqlite3_column_double(st, 3);
	m->ts_ms = col_int(st, 5);
}

static int metrics_walk(struct store *s, sqlite3_stmt *st, store_metric_cb cb, void *arg)
{
	int rc, stop = 0;
	while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct store_metric m;
		metric_from_row(st, &m);
		stop = cb(arg, &m);
	}
	return WALK_END(s, st, rc, stop);
}

int store_metrics_each(struct store *s, const char *run, const char *variant, const char *key,
		       store_metric_cb cb, void *arg)
{
	sqlite3_stmt *st = PREP_WALK(s,
		"SELECT variant, key, step, value, is_nan, ts_ms FROM metrics WHERE run_id = ?1 "
		"AND (?2 IS NULL OR variant = ?2) AND (?3 IS NULL OR key = ?3) "
		"ORDER BY variant, key, step");
	if (!st)
		return -1;
	if (BIND(s, st, "ttt", run, variant, key) != 0) {
		stmt_done(s, st);
		return -1;
	}
	return metrics_walk(s, st, cb, arg);
}

int store_metrics_latest(struct store *s, const char *run, store_metric_cb cb, void *arg)
{
	sqlite3_stmt *st = PREP_WALK(s,
		"SELECT m.variant, m.key, m.step, m.value, m.is_nan, m.ts_ms FROM metrics m "
		"WHERE m.run_id = ?1 AND m.step = (SELECT max(step) FROM metrics x "
		"WHERE x.run_id = m.run_id AND x.variant = m.variant AND x.key = m.key) "
		"ORDER BY m.variant, m.key");
	if (!st)
		return -1;
	if (BIND(s, st, "t", run) != 0) {
		stmt_done(s, st);
		return -1;
	}
	return metrics_walk(s, st, cb, arg);
}

/* ------------------------------------------------------------------------ */
/* Artifacts.                                                                */

int store_artifact_add(struct store *s, const char *run, const char *path, const char *kind,
		       const char *sha256, int64_t bytes)
{
	static const char sql[] =
		"INSERT INTO artifacts (run_id, path, kind, sha256, bytes, created_ms) "
		"VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, path) DO UPDATE SET "
		"kind = excluded.kind, sha256 = excluded.sha256, bytes = excluded.bytes, "
		"created_ms = excluded.created_ms";
	if (!path || !*path || !kind || !*kind)
		return mke_error("store: an artifact needs a path and a kind");
	sqlite3_stmt *st = PREP(s, sql);
	if (!st || BIND(s, st, "ttttNl", run, path, kind, sha256, bytes, now_ms()) != 0) {
		stmt_done(s, st);
		return -1;
	}
	return STEP(s, st, "adding an artifact");
}

int store_artifacts_each(struct store *s, const char *run, store_artifact_cb cb, void *arg)
{
	sqlite3_stmt *st = PREP_WALK(s, "SELECT path, kind, sha256, bytes, created_ms FROM "
					"artifacts WHERE run_id = ? ORDER BY created_ms, path");
	if (!st)
		return -1;
	if (BIND(s, st, "t", run) != 0) {
		stmt_done(s, st);
		return -1;
	}
	int rc, stop = 0;
	while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct store_artifact a;
		a.path = col_text(st, 0);
		a.kind = col_text(st, 1);
		a.sha256 = col_text(st, 2);
		a.bytes = sqlite3_column_type(st, 3) == SQLITE_NULL ? -1 : col_int(st, 3);
		a.created_ms = col_int(st, 4);
		stop = cb(arg, &a);
	}
	return WALK_END(s, st, rc, stop);
}

/* ------------------------------------------------------------------------ */
/* Events and cursors.                                                       */

int store_event_add(struct store *s, const char *run, int64_t ts_ms, const char *kind, int rank,
		    const char *payload, const char *source_id)
{
	static const char sql[] =
		"INSERT INTO events (run_id, ts_ms, kind, rank, payload, source_id) "
		"VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, source_id) DO NOTHING";
	if (!kind || !*kind)
		return mke_error("store: an event needs a kind");
	sqlite3_stmt *st = PREP(s, sql);
	if (!st || BIND(s, st, "tltNtt", run, ts_ms ? ts_ms : now_ms(), kind, (int64_t)rank,
			payload, source_id) != 0) {
		stmt_done(s, st);
		return -1;
	}
	if (STEP(s, st, "adding an event") != 0)
		return -1;
	return sqlite3_changes(s->db) == 1;
}

int store_events_each(struct store *s, const char *run, int64_t since_ms, store_event_cb cb,
		      void *arg)
{
	sqlite3_stmt *st = PREP_WALK(s, "SELECT id, ts_ms, kind, rank, payload, source_id FROM "
					"events WHERE run_id = ? AND ts_ms >= ? ORDER BY ts_ms, id");
	if (!st)
		return -1;
	if (BIND(s, st, "tl", run, since_ms) != 0) {
		stmt_done(s, st);
		return -1;
	}
	int rc, stop = 0;
	while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct store_event e;
		e.id = col_int(st, 0);
		e.ts_ms = col_int(st, 1);
		e.kind = col_text(st, 2);
		e.rank = sqlite3_column_type(st, 3) == SQLITE_NULL ? -1 : (int)col_int(st, 3);
		e.payload = col_text(st, 4);
		e.source_id = col_text(st, 5);
		stop = cb(arg, &e);
	}
	return WALK_END(s, st, rc, stop);
}

int store_cursor_get(struct store *s, const char *run, const char *stream, char *out, size_t len)
{
	static const char sql[] =
		"SELECT last_id FROM stream_cursors WHERE run_id = ? AND stream = ?";
	sqlite3_stmt *st = PREP(s, sql);
	if (!st || BIND(s, st, "tt", run, stream) != 0) {
		stmt_done(s, st);
		return -1;
	}
	int rc = sqlite3_step(st);
	int ret;
	if (rc == SQLITE_ROW) {
		const char *t = col_text(st, 0);
		snprintf(out, len, "%s", t ? t : "");
		ret = 1;
	} else {
		ret = rc == SQLITE_DONE ? 0 : FAIL(s, "reading a stream cursor");
	}
	stmt_done(s, st);
	return ret;
}

int store_cursor_set(struct store *s, const char *run, const char *stream, const char *last_id)
{
	static const char sql[] =
		"INSERT INTO stream_cursors (run_id, stream, last_id, updated_ms) VALUES (?, ?, ?, ?) "
		"ON CONFLICT (run_id, stream) DO UPDATE SET last_id = excluded.last_id, "
		"updated_ms = excluded.updated_ms";
	if (!stream || !*stream || !last_id || !*last_id)
		return mke_error("store: a stream cursor needs a stream and an id");
	sqlite3_stmt *st = PREP(s, sql);
	if (!st || BIND(s, st, "tttl", run, stream, last_id, now_ms()) != 0) {
		stmt_done(s, st);
		return -1;
	}
	return STEP(s, st, "saving a stream cursor");
}
